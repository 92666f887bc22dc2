//! ACPI tables as an OS finds them: the RSDP by the BIOS-area scan (0xE0000-0xFFFFF, 16-byte
//! boundaries) with both checksums; the XSDT (and RSDT) and every table they list, and the
//! DSDT, checksummed; the MADT with one enabled local APIC per vCPU (fw_cfg's CPU count where
//! fw_cfg is there), the IOAPIC and the IRQ0 -> GSI 2 override; the FADT's PM timer counting at
//! about 3.579545 MHz (TSC-checked); a valid DSDT header.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::acpi::{self, checksum, header, rd32, rd8};
use basalt_guests::hw::{inl, rdtsc};
use basalt_guests::{apic, fwcfg, ioapic, time};
use basalt_guests::{guest_assert, guest_assert_eq, guest_println};

basalt_guests::entry!(run);

const PM_TIMER_HZ: u64 = 3_579_545;

fn sig(s: [u8; 4]) -> &'static str {
    // The signatures checked are ASCII; anything else prints as "????".
    match &s {
        b"APIC" => "APIC",
        b"FACP" => "FACP",
        b"MCFG" => "MCFG",
        b"DSDT" => "DSDT",
        b"HPET" => "HPET",
        b"WAET" => "WAET",
        b"SSDT" => "SSDT",
        _ => "????",
    }
}

fn check_table(addr: u64) {
    let (s, len) = header(addr);
    guest_assert!(len >= acpi::HEADER_LEN, "table {} at {:#x} has length {}", sig(s), addr, len);
    guest_assert!(checksum(addr, len) == 0, "table {} ({:x?}) at {:#x}: bad checksum", sig(s), s, addr);
}

fn run() {
    let rsdp = acpi::find_rsdp();
    guest_assert!(rsdp.is_some(), "no RSDP with a valid checksum in 0xE0000-0xFFFFF");
    let rsdp = rsdp.unwrap_or_else(|| unreachable!());
    guest_assert!(rsdp.addr.is_multiple_of(16), "RSDP at {:#x}", rsdp.addr);
    if rsdp.revision >= 2 {
        guest_assert!(rsdp.length >= 36, "RSDP length {}", rsdp.length);
        guest_assert!(checksum(rsdp.addr, rsdp.length) == 0, "the RSDP's extended checksum");
        guest_assert!(rsdp.xsdt != 0, "an ACPI 2.0 RSDP without an XSDT");
        guest_assert_eq!(&header(rsdp.xsdt).0, b"XSDT");
        check_table(rsdp.xsdt);
    }
    if rsdp.rsdt != 0 {
        guest_assert_eq!(&header(u64::from(rsdp.rsdt)).0, b"RSDT");
        check_table(u64::from(rsdp.rsdt));
    }
    let mut tables = 0;
    acpi::for_each_table(&rsdp, |t| {
        check_table(t);
        tables += 1;
    });

    // MADT.
    let madt = acpi::find_table(&rsdp, b"APIC");
    guest_assert!(madt.is_some(), "no MADT");
    let madt = madt.unwrap_or(0);
    guest_assert_eq!(u64::from(rd32(madt + 36)), apic::XAPIC_BASE);
    let mut ids = [0u32; 64];
    let cpus = acpi::madt_cpus(madt, &mut ids);
    match fwcfg::nb_cpus() {
        Some(n) => {
            guest_assert!(cpus == usize::from(n), "the MADT has {} enabled CPUs, fw_cfg says {}", cpus, n)
        }
        None => guest_assert!(cpus >= 1, "the MADT has no enabled CPU"),
    }
    let ids = &ids[..cpus.min(64)];
    for (i, id) in ids.iter().enumerate() {
        guest_assert!(!ids[..i].contains(id), "two MADT CPUs have APIC ID {}", id);
    }
    apic::enable();
    guest_assert!(ids.contains(&apic::id()), "the MADT lacks the BSP's APIC ID {}", apic::id());
    let mut ioapics = 0;
    acpi::for_each_madt_entry(madt, |e| {
        if e.kind == acpi::MADT_IOAPIC {
            ioapics += 1;
            guest_assert_eq!(u64::from(rd32(e.addr + 4)), ioapic::IOAPIC_BASE);
            guest_assert_eq!(rd32(e.addr + 8), 0);
            guest_assert_eq!(u32::from(rd8(e.addr + 2)), ioapic::read(ioapic::REG_ID) >> 24 & 0xF);
        }
    });
    guest_assert_eq!(ioapics, 1);
    let iso = acpi::madt_override(madt, 0);
    guest_assert!(iso.is_some_and(|(gsi, _)| gsi == 2), "IRQ0's override: {:?}, not GSI 2", iso);

    // FADT, DSDT, PM timer.
    let fadt = acpi::find_table(&rsdp, b"FACP");
    guest_assert!(fadt.is_some(), "no FADT");
    let fadt = fadt.unwrap_or(0);
    let dsdt = acpi::dsdt(fadt);
    guest_assert!(dsdt != 0, "the FADT names no DSDT");
    let (s, len) = header(dsdt);
    guest_assert_eq!(&s, b"DSDT");
    check_table(dsdt);
    guest_assert!(rd8(dsdt + 8) >= 1, "DSDT revision {}", rd8(dsdt + 8));
    guest_assert!(len > acpi::HEADER_LEN, "an empty DSDT");
    let (port, ext) = acpi::pm_timer(fadt);
    guest_assert!(port != 0, "the FADT names no PM timer");
    guest_assert_eq!(rd8(fadt + acpi::fadt::PM_TMR_LEN), 4);
    let mask: u32 = if ext { u32::MAX } else { 0xFF_FFFF };
    let tsc_hz = time::tsc_hz();
    // Each read is an exit: its sample is taken as the middle of the RDTSCs around it, over
    // 100 ms, so that even a millisecond per exit (nested KVM on TCG) stays under 1%.
    let sample = || {
        let before = rdtsc();
        let p = inl(port) & mask;
        (p, before + (rdtsc() - before) / 2)
    };
    let (p0, t0) = sample();
    let wait = time::us_to_tsc(100_000);
    let mut last = p0;
    let mut t1 = t0;
    while t1 - t0 < wait {
        let (p, t) = sample();
        guest_assert!(
            p.wrapping_sub(last) & mask < mask / 2,
            "the PM timer went back: {:#x} -> {:#x}",
            last,
            p
        );
        last = p;
        t1 = t;
    }
    let ticks = u64::from(last.wrapping_sub(p0) & mask);
    let hz = (u128::from(ticks) * u128::from(tsc_hz) / u128::from(t1 - t0)) as u64;
    guest_assert!(
        hz.abs_diff(PM_TIMER_HZ) * 20 <= PM_TIMER_HZ,
        "the PM timer at port {:#x} counts at {} Hz, not about 3579545",
        port,
        hz
    );
    guest_println!(
        "ACPI {}: RSDP at {:#x}, {} tables, {} CPUs, IOAPIC, IRQ0 -> GSI 2; PM timer {:#x} ({}-bit) at {} Hz",
        rsdp.revision,
        rsdp.addr,
        tables,
        cpus,
        port,
        if ext { 32 } else { 24 },
        hz
    );
}
