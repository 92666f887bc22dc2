//! A read of guest-physical memory the VM does not have: Basalt must stop the VM with a report.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::{guest_assert, guest_println};

basalt_guests::entry!(run);

/// Identity-mapped by the boot page tables, far beyond the guest's RAM.
const BEYOND_RAM: u64 = 0x3000_0000;

fn run() {
    guest_println!("reading {BEYOND_RAM:#x}, which has no memory behind it");
    // SAFETY: the guest's page tables map this address, but no guest-physical memory backs it:
    // the access is a nested page fault, and Basalt stops the VM.
    let value = unsafe { (BEYOND_RAM as *const u64).read_volatile() };
    guest_assert!(false, "the read of {:#x} returned {:#x} instead of stopping the VM", BEYOND_RAM, value);
}
