//! PCI: a mechanism-1 scan of bus 0 and of every bus the MCFG names finds exactly one function,
//! 00:00.0, a host bridge (class 06/00); absent functions read all ones; ECAM reads at the
//! MCFG's base agree with mechanism 1. (Bare QEMU has more devices: there only 00:00.0 is
//! required.)
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::{acpi, bare, pci};
use basalt_guests::{guest_assert, guest_assert_eq, guest_println};

basalt_guests::entry!(run);

fn run() {
    let rsdp = acpi::find_rsdp();
    guest_assert!(rsdp.is_some(), "no RSDP");
    let rsdp = rsdp.unwrap_or_else(|| unreachable!());
    let mcfg = acpi::find_table(&rsdp, b"MCFG");
    guest_assert!(mcfg.is_some() || !bare::under_basalt(), "no MCFG");
    let mut ecam = [(0u64, 0u16, 0u8, 0u8); 4];
    let n = mcfg.map_or(0, |m| acpi::mcfg_allocations(m, &mut ecam));
    guest_assert!(mcfg.is_none() || n >= 1, "the MCFG has no allocation");
    let ecam = &ecam[..n.min(4)];
    let (base, segment, first, last) = ecam.first().copied().unwrap_or((0, 0, 0, 0));
    guest_assert!(ecam.is_empty() || (segment == 0 && first == 0), "MCFG: segment {} bus {}", segment, first);

    // Buses: 0, and those the MCFG covers (at most 8 here: short on slow emulators).
    let last_bus = if ecam.is_empty() { 0 } else { last.min(first.saturating_add(7)) };
    let mut found = 0;
    for bus in 0..=last_bus {
        for dev in 0..32u8 {
            for func in 0..8u8 {
                let id = pci::read(bus, dev, func, 0);
                if !ecam.is_empty() {
                    let e = pci::ecam_read(base, first, bus, dev, func, 0);
                    guest_assert!(
                        e == id,
                        "{:02x}:{:02x}.{}: ECAM reads {:#x}, mechanism 1 {:#x}",
                        bus,
                        dev,
                        func,
                        e,
                        id
                    );
                }
                if id & 0xFFFF == 0xFFFF {
                    guest_assert!(
                        id == 0xFFFF_FFFF,
                        "absent {:02x}:{:02x}.{} reads {:#x}",
                        bus,
                        dev,
                        func,
                        id
                    );
                    if func == 0 {
                        break;
                    }
                    continue;
                }
                found += 1;
                let class = pci::read(bus, dev, func, 8);
                let header = pci::read(bus, dev, func, 0x0C) >> 16 & 0xFF;
                if bare::under_basalt() || (bus, dev, func) == (0, 0, 0) {
                    guest_println!(
                        "{bus:02x}:{dev:02x}.{func}: {:04x}:{:04x} class {:06x}",
                        id & 0xFFFF,
                        id >> 16,
                        class >> 8
                    );
                }
                if (bus, dev, func) == (0, 0, 0) {
                    guest_assert!(
                        class >> 16 == 0x0600,
                        "00:00.0 has class {:#x}, not a host bridge (06/00)",
                        class >> 8
                    );
                    for reg in (0..0x40).step_by(4) {
                        if !ecam.is_empty() {
                            guest_assert_eq!(
                                pci::ecam_read(base, first, 0, 0, 0, reg),
                                pci::read(0, 0, 0, reg as u8)
                            );
                        }
                    }
                } else {
                    guest_assert!(
                        !bare::under_basalt(),
                        "an unexpected function {:02x}:{:02x}.{}",
                        bus,
                        dev,
                        func
                    );
                }
                if func == 0 && header & 0x80 == 0 {
                    break;
                }
            }
        }
    }
    guest_assert!(pci::read(0, 0, 0, 0) & 0xFFFF != 0xFFFF, "no 00:00.0");
    if bare::under_basalt() {
        guest_assert_eq!(found, 1);
    }
    guest_println!("PCI: {found} function(s) on buses 0..={last_bus}, ECAM at {base:#x} agrees");
}
