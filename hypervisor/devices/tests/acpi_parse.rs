//! The generated ACPI blob read back by the `acpi` crate, the way an OS reads tables from
//! guest memory: the handler "maps" guest-physical addresses into the blob.

use acpi::address::AddressSpace;
use acpi::fadt::Fadt;
use acpi::madt::{Madt, MadtEntry};
use acpi::mcfg::Mcfg;
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use basalt_devices::acpi::{build, AcpiConfig};
use basalt_devices::pci::EcamWindow;
use std::ptr::NonNull;
use std::sync::Arc;

/// Guest memory holding only the blob.
#[derive(Clone)]
struct Blob {
    base: usize,
    bytes: Arc<Vec<u8>>,
}

impl AcpiHandler for Blob {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let off = physical_address.checked_sub(self.base).expect("below the blob");
        assert!(off + size <= self.bytes.len(), "past the blob: {physical_address:#x}+{size:#x}");
        let ptr = NonNull::new(self.bytes.as_ptr().wrapping_add(off) as *mut T).unwrap();
        // SAFETY: `ptr` points at `size` readable bytes of the blob, which `self.bytes` (cloned
        // into the mapping) keeps alive; the acpi crate's table types are packed, so any
        // alignment is fine.
        unsafe { PhysicalMapping::new(physical_address, ptr, size, size, self.clone()) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

fn parse(config: &AcpiConfig) -> (AcpiTables<Blob>, Blob) {
    let t = build(config).unwrap();
    let blob = Blob { base: t.base as usize, bytes: Arc::new(t.bytes.clone()) };
    // SAFETY: the RSDP address lies in the blob the handler maps.
    let tables = unsafe { AcpiTables::from_rsdp(blob.clone(), t.rsdp_address() as usize) }.unwrap();
    (tables, blob)
}

#[test]
fn acpi_crate_accepts_every_table() {
    let config = AcpiConfig { cpus: vec![0, 1, 2, 3], ..AcpiConfig::default() };
    let (tables, _) = parse(&config);
    let sigs: Vec<String> = tables.headers().map(|h| h.signature.as_str().to_string()).collect();
    assert_eq!(sigs, ["FACP", "APIC", "MCFG"]);
    for h in tables.headers() {
        assert_eq!(h.oem_id(), "BASALT");
    }

    let fadt = tables.find_table::<Fadt>().unwrap();
    let fadt = fadt.get();
    fadt.validate().unwrap();
    let sci = fadt.sci_interrupt;
    assert_eq!(sci, 9);
    let evt = fadt.pm1a_event_block().unwrap();
    assert_eq!((evt.address_space, evt.bit_width, evt.address), (AddressSpace::SystemIo, 32, 0x600));
    let cnt = fadt.pm1a_control_block().unwrap();
    assert_eq!((cnt.address_space, cnt.bit_width, cnt.address), (AddressSpace::SystemIo, 16, 0x604));
    let tmr = fadt.pm_timer_block().unwrap().unwrap();
    assert_eq!((tmr.address_space, tmr.address), (AddressSpace::SystemIo, 0x608));
    let reset = fadt.reset_register().unwrap();
    assert_eq!((reset.address_space, reset.bit_width, reset.address), (AddressSpace::SystemIo, 8, 0xCF9));
    assert_eq!(fadt.reset_value, 6);
    let flags = fadt.flags;
    assert!(flags.supports_system_reset_via_fadt());
    assert!(!flags.system_is_hw_reduced_acpi());
    let boot_arch = fadt.iapc_boot_arch;
    assert!(boot_arch.legacy_devices_are_accessible());
    assert!(!boot_arch.motherboard_implements_8042());
    assert_eq!(fadt.century, 0x32);
    assert!(fadt.facs_address().unwrap() % 64 == 0);

    let madt = tables.find_table::<Madt>().unwrap();
    assert!(madt.get().supports_8259());
    let mut lapics = Vec::new();
    let mut overrides = Vec::new();
    let mut ioapics = Vec::new();
    let mut nmi = Vec::new();
    for e in madt.get().entries() {
        match e {
            MadtEntry::LocalApic(l) => lapics.push((l.processor_id, l.apic_id, { l.flags })),
            MadtEntry::IoApic(i) => ioapics.push(({ i.io_apic_address }, { i.global_system_interrupt_base })),
            MadtEntry::InterruptSourceOverride(o) => {
                overrides.push((o.irq, { o.global_system_interrupt }, { o.flags }))
            }
            MadtEntry::LocalApicNmi(n) => nmi.push((n.processor_id, n.nmi_line)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(lapics, [(0, 0, 1), (1, 1, 1), (2, 2, 1), (3, 3, 1)]);
    assert_eq!(ioapics, [(0xFEC0_0000, 0)]);
    assert_eq!(overrides, [(0, 2, 0), (9, 9, 0xF)]);
    assert_eq!(nmi, [(0xFF, 1)]);

    let mcfg = tables.find_table::<Mcfg>().unwrap();
    let entries: Vec<(u64, u16, u8, u8)> = mcfg
        .get()
        .entries()
        .iter()
        .map(|e| (e.base_address, e.pci_segment_group, e.bus_number_start, e.bus_number_end))
        .collect();
    assert_eq!(entries, [(0xB000_0000, 0, 0, 255)]);

    let dsdt = tables.dsdt().unwrap();
    assert!(dsdt.length > 100);
}

#[test]
fn dsdt_header_is_valid_aml() {
    let config = AcpiConfig { ecam: EcamWindow { base: 0xE000_0000, buses: 8 }, ..AcpiConfig::default() };
    let (tables, blob) = parse(&config);
    let dsdt = tables.dsdt().unwrap();
    // The AML stream starts right after the 36-byte header, with the \_SB scope.
    let off = dsdt.address - blob.base;
    let header = &blob.bytes[off - 36..off];
    assert_eq!(&header[..4], b"DSDT");
    assert_eq!(u32::from_le_bytes(header[4..8].try_into().unwrap()), dsdt.length + 36);
    let whole = &blob.bytes[off - 36..off + dsdt.length as usize];
    assert_eq!(whole.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
    assert_eq!(&blob.bytes[off..off + 1], &[0x10]);
}
