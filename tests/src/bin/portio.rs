//! Port I/O of every size against Basalt's 32-bit scratch register at 0xE4, and the all-ones
//! read of a port nothing decodes.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::ucall::exit_count;
use basalt_guests::{guest_assert, guest_assert_eq, ExitCounter, SCRATCH_PORT as SCRATCH};
use core::arch::asm;

basalt_guests::entry!(run);

const UNASSIGNED: u16 = 0x2F0;

fn out8(port: u16, v: u8) {
    // SAFETY: port I/O to the scratch port, which only Basalt decodes; no memory is touched.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags)) };
}
fn out16(port: u16, v: u16) {
    // SAFETY: as in out8.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack, preserves_flags)) };
}
fn out32(port: u16, v: u32) {
    // SAFETY: as in out8.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags)) };
}
fn in8(port: u16) -> u8 {
    let v: u8;
    // SAFETY: a port read; no memory is touched.
    unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags)) };
    v
}
fn in16(port: u16) -> u16 {
    let v: u16;
    // SAFETY: as in in8.
    unsafe { asm!("in ax, dx", in("dx") port, out("ax") v, options(nomem, nostack, preserves_flags)) };
    v
}
fn in32(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as in in8.
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack, preserves_flags)) };
    v
}

fn run() {
    let before = exit_count(ExitCounter::Io);

    out32(SCRATCH, 0x1122_3344);
    guest_assert_eq!(in32(SCRATCH), 0x1122_3344);
    guest_assert_eq!(in16(SCRATCH), 0x3344);
    guest_assert_eq!(in8(SCRATCH), 0x44);

    // A write of n bytes updates the low n bytes only.
    out8(SCRATCH, 0xAA);
    guest_assert_eq!(in8(SCRATCH), 0xAA);
    guest_assert_eq!(in16(SCRATCH), 0x33AA);
    guest_assert_eq!(in32(SCRATCH), 0x1122_33AA);

    out16(SCRATCH, 0xBEEF);
    guest_assert_eq!(in16(SCRATCH), 0xBEEF);
    guest_assert_eq!(in8(SCRATCH), 0xEF);
    guest_assert_eq!(in32(SCRATCH), 0x1122_BEEF);

    out32(SCRATCH, 0xFFFF_0000);
    guest_assert_eq!(in32(SCRATCH), 0xFFFF_0000);

    // Nothing answers at 0x2F0: the bus reads all ones, and writes go nowhere.
    guest_assert_eq!(in8(UNASSIGNED), 0xFF);
    guest_assert_eq!(in16(UNASSIGNED), 0xFFFF);
    guest_assert_eq!(in32(UNASSIGNED), 0xFFFF_FFFF);
    out32(UNASSIGNED, 0);
    guest_assert_eq!(in32(UNASSIGNED), 0xFFFF_FFFF);
    guest_assert_eq!(in32(SCRATCH), 0xFFFF_0000);

    // 20 port accesses above, each one exit (the ucalls are I/O exits too).
    let after = exit_count(ExitCounter::Io);
    guest_assert!(after >= before + 20, "I/O exits {} -> {}", before, after);
}
