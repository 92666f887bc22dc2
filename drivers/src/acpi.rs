//! ACPI tables on the host: find the RSDP and read the MADT's processor and IOAPIC entries
//! (ACPI 6.5, 5.2.5 and 5.2.12), through the `acpi` crate.

use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use core::ptr::NonNull;

/// Basalt runs identity-mapped, so an ACPI "mapping" is the physical address itself.
#[derive(Clone, Copy, Debug)]
pub struct IdentityMapped;

impl AcpiHandler for IdentityMapped {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let ptr = NonNull::new(physical_address as *mut T).expect("ACPI asked to map address 0");
        // SAFETY: all physical memory Basalt reads is identity-mapped; the acpi crate only maps
        // ranges that the firmware's tables point at.
        unsafe { PhysicalMapping::new(physical_address, ptr, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// Most CPUs Basalt manages.
pub const MAX_CPUS: usize = 64;

/// One usable processor from the MADT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Processor {
    pub apic_id: u32,
    pub uid: u32,
}

/// What Basalt needs from the MADT.
#[derive(Debug, Clone)]
pub struct Platform {
    pub processors: [Processor; MAX_CPUS],
    pub processor_count: usize,
    /// Processors listed but not usable (disabled and not online-capable, or beyond MAX_CPUS).
    pub processors_skipped: usize,
    pub local_apic_address: u64,
    pub ioapic_address: Option<u64>,
}

impl Platform {
    pub fn processors(&self) -> &[Processor] {
        &self.processors[..self.processor_count]
    }
}

/// Why the platform could not be enumerated.
#[derive(Debug)]
pub enum AcpiError {
    NoRsdp,
    Tables(acpi::AcpiError),
}

impl core::fmt::Display for AcpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AcpiError::NoRsdp => write!(f, "no ACPI RSDP found"),
            AcpiError::Tables(e) => write!(f, "ACPI tables unreadable: {e:?}"),
        }
    }
}

/// Read the MADT, starting from the RSDP the loader gave, or searching the BIOS areas.
pub fn read_platform(rsdp: Option<u64>) -> Result<Platform, AcpiError> {
    // SAFETY: the RSDP address comes from the loader (or the BIOS search, which only reads the
    // EBDA and 0xE0000-0xFFFFF); all of it is identity-mapped.
    let tables = unsafe {
        match rsdp {
            Some(addr) => AcpiTables::from_rsdp(IdentityMapped, addr as usize),
            None => AcpiTables::search_for_rsdp_bios(IdentityMapped),
        }
    }
    .map_err(|e| match e {
        acpi::AcpiError::NoValidRsdp => AcpiError::NoRsdp,
        other => AcpiError::Tables(other),
    })?;
    let madt = tables.find_table::<Madt>().map_err(AcpiError::Tables)?;
    let mut platform = Platform {
        processors: [Processor { apic_id: 0, uid: 0 }; MAX_CPUS],
        processor_count: 0,
        processors_skipped: 0,
        local_apic_address: madt.get().local_apic_address as u64,
        ioapic_address: None,
    };
    let add = |p: &mut Platform, apic_id: u32, uid: u32, flags: u32| {
        // Bit 0: enabled; bit 1: online capable (ACPI 6.5 Table 5.23).
        if flags & 0b11 == 0 || p.processor_count == MAX_CPUS {
            p.processors_skipped += 1;
        } else if !p.processors().iter().any(|q| q.apic_id == apic_id) {
            p.processors[p.processor_count] = Processor { apic_id, uid };
            p.processor_count += 1;
        }
    };
    for entry in madt.get().entries() {
        match entry {
            MadtEntry::LocalApic(e) => add(&mut platform, e.apic_id as u32, e.processor_id as u32, e.flags),
            MadtEntry::LocalX2Apic(e) => add(&mut platform, e.x2apic_id, e.processor_uid, e.flags),
            MadtEntry::IoApic(e) if platform.ioapic_address.is_none() => {
                platform.ioapic_address = Some(e.io_apic_address as u64)
            }
            MadtEntry::LocalApicAddressOverride(e) => platform.local_apic_address = e.local_apic_address,
            _ => {}
        }
    }
    Ok(platform)
}
