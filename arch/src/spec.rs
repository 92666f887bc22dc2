//! Speculative-execution controls: what the CPU reports about its side channels and the
//! primitives that close them (no policy: hypervisor/src/mitigations.rs decides).
//!
//! Intel: CPUID.(EAX=7,ECX=0):EDX and IA32_ARCH_CAPABILITIES (SDM Vol. 4 Table 2-2; Intel's
//! "Speculative Execution Side Channel Mitigations" and "Deep Dive" papers). AMD: CPUID
//! Fn8000_0008_EBX (APM Vol. 3 E.4.7; AMD's "Software Techniques for Managing Speculation").

use core::sync::atomic::{AtomicBool, Ordering};

/// IA32_SPEC_CTRL (SDM Vol. 4 Table 2-2, MSR 48H): IBRS, STIBP, SSBD.
pub const IA32_SPEC_CTRL: u32 = 0x48;
/// IA32_PRED_CMD (MSR 49H): write bit 0 (IBPB) for an indirect branch prediction barrier.
pub const IA32_PRED_CMD: u32 = 0x49;
/// IA32_ARCH_CAPABILITIES (MSR 10AH): read-only enumeration of what the CPU is not affected by.
pub const IA32_ARCH_CAPABILITIES: u32 = 0x10A;
/// IA32_FLUSH_CMD (MSR 10BH): write bit 0 (L1D_FLUSH) to write back and invalidate the L1D.
pub const IA32_FLUSH_CMD: u32 = 0x10B;

/// IA32_SPEC_CTRL bits.
pub mod spec_ctrl {
    /// Indirect Branch Restricted Speculation.
    pub const IBRS: u64 = 1 << 0;
    /// Single Thread Indirect Branch Predictors.
    pub const STIBP: u64 = 1 << 1;
    /// Speculative Store Bypass Disable.
    pub const SSBD: u64 = 1 << 2;
}

/// IA32_PRED_CMD bit 0: IBPB.
pub const PRED_CMD_IBPB: u64 = 1;
/// IA32_FLUSH_CMD bit 0: L1D_FLUSH.
pub const FLUSH_CMD_L1D: u64 = 1;

/// IA32_ARCH_CAPABILITIES bits (SDM Vol. 4 Table 2-2, MSR 10AH).
pub mod arch_cap {
    /// Not susceptible to Rogue Data Cache Load (Meltdown) and hence not to L1TF.
    pub const RDCL_NO: u64 = 1 << 0;
    /// Enhanced IBRS: IBRS set once protects every later mode switch.
    pub const IBRS_ALL: u64 = 1 << 1;
    /// The RSB is not used for predictions when it underflows (RSB Alternate).
    pub const RSBA: u64 = 1 << 2;
    /// A hypervisor need not flush the L1D on VM entry (the CPU or an outer VMM does).
    pub const SKIP_L1DFL_VMENTRY: u64 = 1 << 3;
    /// Not susceptible to Speculative Store Bypass.
    pub const SSB_NO: u64 = 1 << 4;
    /// Not susceptible to Microarchitectural Data Sampling.
    pub const MDS_NO: u64 = 1 << 5;
    /// Not susceptible to machine check on page size change (iTLB multihit).
    pub const PSCHANGE_MC_NO: u64 = 1 << 6;
    /// IA32_TSX_CTRL exists.
    pub const TSX_CTRL_MSR: u64 = 1 << 7;
    /// Not susceptible to TSX Asynchronous Abort.
    pub const TAA_NO: u64 = 1 << 8;
    /// Not susceptible to post-barrier RSB predictions (PBRSB).
    pub const PBRSB_NO: u64 = 1 << 24;
}

/// CPUID.(EAX=7,ECX=0) bits (SDM Vol. 2A Table 3-8).
pub mod leaf7 {
    /// EBX[11]: RTM (TSX), which TAA needs.
    pub const EBX_RTM: u32 = 1 << 11;
    /// EDX[10]: MD_CLEAR: VERW overwrites the CPU's buffers.
    pub const EDX_MD_CLEAR: u32 = 1 << 10;
    /// EDX[26]: IBRS and IBPB (IA32_SPEC_CTRL and IA32_PRED_CMD exist).
    pub const EDX_SPEC_CTRL: u32 = 1 << 26;
    /// EDX[27]: STIBP.
    pub const EDX_STIBP: u32 = 1 << 27;
    /// EDX[28]: L1D_FLUSH (IA32_FLUSH_CMD exists).
    pub const EDX_FLUSH_L1D: u32 = 1 << 28;
    /// EDX[29]: IA32_ARCH_CAPABILITIES exists.
    pub const EDX_ARCH_CAPABILITIES: u32 = 1 << 29;
    /// EDX[31]: SSBD in IA32_SPEC_CTRL.
    pub const EDX_SSBD: u32 = 1 << 31;
}

/// CPUID Fn8000_0008_EBX bits (APM Vol. 3 E.4.7; AMD "Indirect Branch Control Extension").
pub mod ext8 {
    /// [12] IBPB (PRED_CMD exists).
    pub const EBX_IBPB: u32 = 1 << 12;
    /// [14] IBRS in SPEC_CTRL.
    pub const EBX_IBRS: u32 = 1 << 14;
    /// [15] STIBP in SPEC_CTRL.
    pub const EBX_STIBP: u32 = 1 << 15;
    /// [24] SSBD in SPEC_CTRL.
    pub const EBX_SSBD: u32 = 1 << 24;
    /// [25] VIRT_SSBD (VIRT_SPEC_CTRL MSR, which Basalt does not offer guests).
    pub const EBX_VIRT_SSBD: u32 = 1 << 25;
}

/// The CPU's speculation-control enumeration, as read at boot: CPUID words and, where CPUID
/// says it exists, IA32_ARCH_CAPABILITIES.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecFeatures {
    /// CPUID.(7,0):EBX (0 where leaf 7 does not exist).
    pub leaf7_ebx: u32,
    /// CPUID.(7,0):EDX.
    pub leaf7_edx: u32,
    /// CPUID Fn8000_0008_EBX (0 where the leaf does not exist).
    pub ext8_ebx: u32,
    /// IA32_ARCH_CAPABILITIES, `None` where CPUID.(7,0):EDX[29] is clear.
    pub arch_caps: Option<u64>,
}

impl SpecFeatures {
    /// Read this CPU's enumeration. Only MSRs that CPUID advertises are read.
    pub fn read() -> Self {
        let max_basic = cpuid(0, 0)[0];
        let max_ext = cpuid(0x8000_0000, 0)[0];
        let [_, leaf7_ebx, _, leaf7_edx] = if max_basic >= 7 { cpuid(7, 0) } else { [0; 4] };
        let ext8_ebx = if max_ext >= 0x8000_0008 { cpuid(0x8000_0008, 0)[1] } else { 0 };
        let arch_caps = (leaf7_edx & leaf7::EDX_ARCH_CAPABILITIES != 0)
            // SAFETY: CPUID.(7,0):EDX[29] enumerates IA32_ARCH_CAPABILITIES; reading it has no effect.
            .then(|| unsafe { crate::io::rdmsr(IA32_ARCH_CAPABILITIES) });
        let features = SpecFeatures { leaf7_ebx, leaf7_edx, ext8_ebx, arch_caps };
        HAS_IBPB.store(features.has_ibpb(), Ordering::Relaxed);
        HAS_FLUSH_L1D.store(features.has_flush_l1d(), Ordering::Relaxed);
        features
    }

    /// The ARCH_CAPABILITIES bits (0 where the MSR does not exist).
    pub fn caps(&self) -> u64 {
        self.arch_caps.unwrap_or(0)
    }

    /// IA32_SPEC_CTRL exists: Intel IBRS/STIBP/SSBD, or AMD IBRS/STIBP/SSBD.
    pub fn has_spec_ctrl(&self) -> bool {
        self.leaf7_edx & (leaf7::EDX_SPEC_CTRL | leaf7::EDX_STIBP | leaf7::EDX_SSBD) != 0
            || self.ext8_ebx & (ext8::EBX_IBRS | ext8::EBX_STIBP | ext8::EBX_SSBD) != 0
    }

    /// The IA32_SPEC_CTRL bits this CPU implements.
    pub fn spec_ctrl_bits(&self) -> u64 {
        let intel = |bit: u32, v: u64| if self.leaf7_edx & bit != 0 { v } else { 0 };
        let amd = |bit: u32, v: u64| if self.ext8_ebx & bit != 0 { v } else { 0 };
        intel(leaf7::EDX_SPEC_CTRL, spec_ctrl::IBRS)
            | intel(leaf7::EDX_STIBP, spec_ctrl::STIBP)
            | intel(leaf7::EDX_SSBD, spec_ctrl::SSBD)
            | amd(ext8::EBX_IBRS, spec_ctrl::IBRS)
            | amd(ext8::EBX_STIBP, spec_ctrl::STIBP)
            | amd(ext8::EBX_SSBD, spec_ctrl::SSBD)
    }

    /// IA32_PRED_CMD exists (IBPB): Intel CPUID.(7,0):EDX[26], AMD Fn8000_0008_EBX[12].
    pub fn has_ibpb(&self) -> bool {
        self.leaf7_edx & leaf7::EDX_SPEC_CTRL != 0 || self.ext8_ebx & ext8::EBX_IBPB != 0
    }

    /// IA32_FLUSH_CMD exists.
    pub fn has_flush_l1d(&self) -> bool {
        self.leaf7_edx & leaf7::EDX_FLUSH_L1D != 0
    }

    /// VERW overwrites the affected buffers.
    pub fn has_md_clear(&self) -> bool {
        self.leaf7_edx & leaf7::EDX_MD_CLEAR != 0
    }

    /// TSX (RTM) is enumerated.
    pub fn has_rtm(&self) -> bool {
        self.leaf7_ebx & leaf7::EBX_RTM != 0
    }
}

fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// How many low bits of an APIC ID number the logical processor within its core (the SMT
/// level), from the CPU's topology enumeration: CPUID leaf 0BH level type 1 (SDM Vol. 3A
/// 10.9.4; AMD implements the leaf on Zen), else Fn8000_001E_EBX[15:8] threads per core (APM
/// Vol. 3 E.4.15) where TOPOEXT is enumerated, else the legacy leaf 1 EBX[23:16] logical
/// processors per package over the cores per package (Intel leaf 4 EAX[31:26], AMD
/// Fn8000_0008_ECX[7:0]).
pub fn smt_id_bits() -> u8 {
    let max_basic = cpuid(0, 0)[0];
    let max_ext = cpuid(0x8000_0000, 0)[0];
    let leaf1 = cpuid(1, 0);
    if max_basic >= 0xB {
        let [a, b, c, _] = cpuid(0xB, 0);
        if b != 0 && (c >> 8) & 0xFF == 1 {
            return (a & 0x1F) as u8;
        }
    }
    let topoext = max_ext >= 0x8000_0001 && cpuid(0x8000_0001, 0)[2] & (1 << 22) != 0;
    if topoext && max_ext >= 0x8000_001E {
        return bits_for(((cpuid(0x8000_001E, 0)[1] >> 8) & 0xFF) + 1);
    }
    let htt = leaf1[3] & (1 << 28) != 0;
    if !htt {
        return 0;
    }
    let logical = ((leaf1[1] >> 16) & 0xFF).max(1);
    let amd = cpuid(0, 0)[1] == u32::from_le_bytes(*b"Auth");
    let cores = if amd && max_ext >= 0x8000_0008 {
        (cpuid(0x8000_0008, 0)[2] & 0xFF) + 1
    } else if !amd && max_basic >= 4 {
        (cpuid(4, 0)[0] >> 26) + 1
    } else {
        logical
    };
    bits_for((logical / cores.max(1)).max(1))
}

/// The number of bits that hold values 0..n (ceil(log2(n))).
pub fn bits_for(n: u32) -> u8 {
    if n <= 1 {
        0
    } else {
        (32 - (n - 1).leading_zeros()) as u8
    }
}

/// Whether IA32_PRED_CMD and IA32_FLUSH_CMD exist, set by [`SpecFeatures::read`] (every CPU
/// of one machine enumerates the same).
static HAS_IBPB: AtomicBool = AtomicBool::new(false);
static HAS_FLUSH_L1D: AtomicBool = AtomicBool::new(false);

/// Issue an indirect branch prediction barrier (IA32_PRED_CMD.IBPB) where the CPU has one
/// ([`SpecFeatures::has_ibpb`], as read at boot); elsewhere nothing.
pub fn ibpb() {
    if HAS_IBPB.load(Ordering::Relaxed) {
        // SAFETY: CPUID enumerated IA32_PRED_CMD; the barrier changes no architectural state.
        unsafe { crate::io::wrmsr(IA32_PRED_CMD, PRED_CMD_IBPB) }
    }
}

/// Write back and invalidate the L1D (IA32_FLUSH_CMD.L1D_FLUSH) where the CPU has the command
/// ([`SpecFeatures::has_flush_l1d`], as read at boot); elsewhere nothing.
pub fn flush_l1d_command() {
    if HAS_FLUSH_L1D.load(Ordering::Relaxed) {
        flush_l1d()
    }
}

/// Flush the L1 data cache before a VM entry: IA32_FLUSH_CMD.L1D_FLUSH where the CPU has it,
/// otherwise the software sequence: touch every page of a 64 KiB buffer (so the walk does not
/// bring other lines in), then read every 64-byte line of it, which evicts everything else
/// from an L1D of at most 64 KiB (SDM-era L1TF guidance; the L1D is 32 or 48 KiB).
pub(crate) fn flush_l1d() {
    if HAS_FLUSH_L1D.load(Ordering::Relaxed) {
        // SAFETY: CPUID enumerated IA32_FLUSH_CMD; a write-back and invalidate keeps memory
        // coherent.
        unsafe { crate::io::wrmsr(IA32_FLUSH_CMD, FLUSH_CMD_L1D) }
        return;
    }
    let base = L1D_FLUSH_BUFFER.0.as_ptr();
    // SAFETY: reads only, all inside the static buffer (16 pages, then 1024 lines of 64 bytes).
    unsafe {
        core::arch::asm!(
            "xor {i:e}, {i:e}",
            "2:",
            "movzx {t:e}, byte ptr [{base} + {i}]",
            "add {i}, 4096",
            "cmp {i}, 65536",
            "jb 2b",
            "xor {i:e}, {i:e}",
            "3:",
            "movzx {t:e}, byte ptr [{base} + {i}]",
            "add {i}, 64",
            "cmp {i}, 65536",
            "jb 3b",
            base = in(reg) base, i = out(reg) _, t = out(reg) _,
            options(nostack, readonly)
        )
    }
}

/// The buffer the software L1D flush reads (never written, so all of it stays clean).
#[repr(C, align(4096))]
struct FlushBuffer([u8; 65536]);
static L1D_FLUSH_BUFFER: FlushBuffer = FlushBuffer([0; 65536]);

/// Basalt's own IA32_SPEC_CTRL (0 where the CPU has none).
pub fn host_spec_ctrl(features: &SpecFeatures) -> u64 {
    if features.has_spec_ctrl() {
        // SAFETY: CPUID enumerated IA32_SPEC_CTRL; reading it has no effect.
        unsafe { crate::io::rdmsr(IA32_SPEC_CTRL) }
    } else {
        0
    }
}

/// What a vCPU does around each world switch, decided once when it is made. All false /
/// `None` costs the exit path nothing but the tests of these fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntryMitigations {
    /// Write IA32_FLUSH_CMD.L1D_FLUSH right before the entry (L1TF).
    pub l1d_flush: bool,
    /// Execute VERW as the last memory access before VMRUN/VMRESUME (MDS, TAA: MD_CLEAR).
    pub verw: bool,
    /// Overwrite the return stack buffer with harmless entries right after the exit, before
    /// Basalt's first RET (a guest could have filled it; SpectreRSB).
    pub rsb_fill: bool,
    /// Virtualize IA32_SPEC_CTRL: the guest's value is loaded before the entry and this host
    /// value after the exit, when they differ; the bits a guest may set.
    pub spec_ctrl: Option<SpecCtrlHost>,
}

/// The host side of IA32_SPEC_CTRL virtualization.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecCtrlHost {
    /// Basalt's own value, restored on every exit where the guest's differs.
    pub value: u64,
    /// The bits the CPU implements (a guest write of any other bit gets #GP).
    pub writable: u64,
}

impl EntryMitigations {
    /// These mitigations less what this CPU cannot do (each primitive's MSR must exist), so
    /// the world switch may use them without a fault.
    pub fn supported_here(self) -> Self {
        let f = SpecFeatures::read();
        EntryMitigations {
            // Without IA32_FLUSH_CMD the flush is the software sequence.
            l1d_flush: self.l1d_flush,
            spec_ctrl: self.spec_ctrl.filter(|_| f.has_spec_ctrl()).map(|h| SpecCtrlHost {
                value: h.value & f.spec_ctrl_bits(),
                writable: h.writable & f.spec_ctrl_bits(),
            }),
            ..self
        }
    }

    /// The flags word the world-switch assembly tests: bit 0 VERW, bit 1 RSB fill.
    pub fn switch_flags(&self) -> u64 {
        (self.verw as u64) | ((self.rsb_fill as u64) << 1)
    }
}

/// Load `value` into IA32_SPEC_CTRL.
///
/// # Safety
/// The CPU has IA32_SPEC_CTRL and `value` holds only bits it implements.
pub(crate) unsafe fn write_spec_ctrl(value: u64) {
    // SAFETY: forwarded to the caller; the bits only restrict speculation.
    unsafe { crate::io::wrmsr(IA32_SPEC_CTRL, value) }
}

/// The selector VERW checks: any valid one works, its only purpose is the buffer overwrite
/// MD_CLEAR attaches to the instruction (Intel "Deep Dive: MDS", "VERW").
pub static VERW_SELECTOR: u16 = crate::gdt::KERNEL_DS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_for_counts_the_id_bits_of_n_threads() {
        assert_eq!([1, 2, 3, 4, 5, 8, 9].map(bits_for), [0, 1, 2, 2, 3, 3, 4]);
    }

    #[test]
    fn spec_ctrl_and_ibpb_come_from_either_vendors_bits() {
        let intel = SpecFeatures { leaf7_edx: leaf7::EDX_SPEC_CTRL | leaf7::EDX_SSBD, ..Default::default() };
        assert!(intel.has_spec_ctrl() && intel.has_ibpb());
        assert_eq!(intel.spec_ctrl_bits(), spec_ctrl::IBRS | spec_ctrl::SSBD);
        let amd = SpecFeatures { ext8_ebx: ext8::EBX_STIBP | ext8::EBX_IBPB, ..Default::default() };
        assert!(amd.has_spec_ctrl() && amd.has_ibpb());
        assert_eq!(amd.spec_ctrl_bits(), spec_ctrl::STIBP);
        let amd_ibpb_only = SpecFeatures { ext8_ebx: ext8::EBX_IBPB, ..Default::default() };
        assert!(!amd_ibpb_only.has_spec_ctrl() && amd_ibpb_only.has_ibpb());
        let none = SpecFeatures::default();
        assert!(!none.has_spec_ctrl() && !none.has_ibpb() && !none.has_flush_l1d());
        assert_eq!(EntryMitigations { verw: true, rsb_fill: true, ..Default::default() }.switch_flags(), 3);
    }
}
