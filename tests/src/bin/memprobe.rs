//! A fresh VM's RAM: zero wherever Basalt loaded nothing (not the guest image, not the boot
//! structures and stack of the boot ABI, not the firmware tables at 0xE0000-0xFFFFF), then
//! filled with a marker before the guest ends, so that a VM started after it on the same CPU
//! (test `isolation-memory`, two of these in a row) proves Basalt zeroed what it reused.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::{fwcfg, guest_assert, guest_println};

basalt_guests::entry!(run);

/// What the guest writes over its free RAM before it ends.
const MARK: u64 = 0x4D45_4D50_524F_4245; // "MEMPROBE"

extern "C" {
    static __basalt_bss_end: u8;
}

/// The ranges the boot ABI leaves alone: below the structures' end (0x8000) Basalt's GDT and
/// page tables, [0x70000, 0x80000) the stack, [0xE0000, 0x100000) the ACPI and SMBIOS
/// tables, from 1 MiB the image up to its .bss end.
fn free_ranges(ram: u64, image_end: u64) -> [(u64, u64); 3] {
    [(0x8000, 0x7_0000), (0x8_0000, 0xE_0000), (image_end.next_multiple_of(4096), ram)]
}

fn run() {
    let ram = fwcfg::ram_size().unwrap_or(0);
    guest_assert!((4 << 20..=1 << 30).contains(&ram), "RAM size from fw_cfg: {:#x}", ram);
    // A linker symbol: only its address is taken.
    let image_end = core::ptr::addr_of!(__basalt_bss_end) as u64;
    let mut checked = 0u64;
    for (start, end) in free_ranges(ram, image_end) {
        let mut at = start;
        while at < end {
            // SAFETY: identity-mapped guest RAM below 1 GiB that nothing of this guest uses
            // (see `free_ranges`): read as plain memory.
            let v = unsafe { core::ptr::read_volatile(at as *const u64) };
            guest_assert!(v == 0, "RAM at {:#x} is {:#x}, not zero", at, v);
            at += 8;
        }
        checked += end - start;
    }
    guest_println!("{} KiB of free RAM read zero (of {} KiB)", checked >> 10, ram >> 10);
    for (start, end) in free_ranges(ram, image_end) {
        let mut at = start;
        while at < end {
            // SAFETY: as above; the marker is this guest's to leave behind.
            unsafe { core::ptr::write_volatile(at as *mut u64, MARK ^ at) };
            at += 8;
        }
    }
    guest_println!("and now holds markers");
}
