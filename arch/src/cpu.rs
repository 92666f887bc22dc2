//! What this CPU is and which virtualization extension it offers (SDM Vol. 2A CPUID; APM
//! Vol. 3 CPUID Fn8000_000A for SVM).

use raw_cpuid::CpuId;

/// The CPU's vendor, as far as Basalt cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Intel,
    Amd,
    Other,
}

/// The hardware virtualization extension this CPU offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Virtualization {
    /// Intel VT-x.
    Vmx,
    /// AMD-V, with the SVM feature leaf's key bits.
    Svm {
        npt: bool,
        nrips: bool,
        asids: u32,
        avic: bool,
        decode_assists: bool,
        flush_by_asid: bool,
    },
    None,
}

/// A summary of this CPU, read once at boot.
#[derive(Debug, Clone)]
pub struct CpuInfo {
    pub vendor: Vendor,
    pub brand: [u8; 48],
    pub brand_len: usize,
    pub family: u8,
    pub model: u8,
    pub stepping: u8,
    pub virtualization: Virtualization,
    pub x2apic: bool,
    pub tsc_deadline: bool,
    pub invariant_tsc: bool,
    pub gib_pages: bool,
    pub xsave: bool,
    /// Running under another hypervisor (CPUID.1:ECX[31]).
    pub nested: bool,
}

impl CpuInfo {
    /// Read this CPU's identification.
    pub fn read() -> Self {
        let cpuid = CpuId::new();
        let vendor = match cpuid.get_vendor_info() {
            Some(v) if v.as_str() == "GenuineIntel" => Vendor::Intel,
            Some(v) if v.as_str() == "AuthenticAMD" => Vendor::Amd,
            _ => Vendor::Other,
        };
        let mut brand = [0u8; 48];
        let mut brand_len = 0;
        if let Some(b) = cpuid.get_processor_brand_string() {
            let s = b.as_str().trim();
            brand_len = s.len().min(48);
            brand[..brand_len].copy_from_slice(&s.as_bytes()[..brand_len]);
        }
        let fi = cpuid.get_feature_info();
        let ext = cpuid.get_extended_processor_and_feature_identifiers();
        let has_vmx = fi.as_ref().is_some_and(|f| f.has_vmx());
        let has_svm = ext.as_ref().is_some_and(|e| e.has_svm());
        let virtualization = if has_vmx {
            Virtualization::Vmx
        } else if has_svm {
            let svm = cpuid.get_svm_info();
            Virtualization::Svm {
                npt: svm.as_ref().is_some_and(|s| s.has_nested_paging()),
                nrips: svm.as_ref().is_some_and(|s| s.has_nrip()),
                asids: svm.as_ref().map_or(0, |s| s.supported_asids()),
                avic: svm.as_ref().is_some_and(|s| s.has_avic()),
                decode_assists: svm.as_ref().is_some_and(|s| s.has_decode_assists()),
                flush_by_asid: svm.as_ref().is_some_and(|s| s.has_flush_by_asid()),
            }
        } else {
            Virtualization::None
        };
        CpuInfo {
            vendor,
            brand,
            brand_len,
            family: fi.as_ref().map_or(0, |f| f.family_id()),
            model: fi.as_ref().map_or(0, |f| f.model_id()),
            stepping: fi.as_ref().map_or(0, |f| f.stepping_id()),
            virtualization,
            x2apic: fi.as_ref().is_some_and(|f| f.has_x2apic()),
            tsc_deadline: fi.as_ref().is_some_and(|f| f.has_tsc_deadline()),
            xsave: fi.as_ref().is_some_and(|f| f.has_xsave()),
            nested: fi.as_ref().is_some_and(|f| f.has_hypervisor()),
            invariant_tsc: cpuid.get_advanced_power_mgmt_info().is_some_and(|p| p.has_invariant_tsc()),
            gib_pages: ext.as_ref().is_some_and(|e| e.has_1gib_pages()),
        }
    }

    /// The brand string ("AMD EPYC Processor").
    pub fn brand(&self) -> &str {
        core::str::from_utf8(&self.brand[..self.brand_len]).unwrap_or("?")
    }
}
