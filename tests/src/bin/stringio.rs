//! String port I/O (INS/OUTS with REP and the direction flag) through Basalt's instruction
//! emulator, against the scratch port 0xE4 (a 32-bit register; narrower writes replace its low
//! bytes) and an unassigned port (reads all ones).
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::{guest_assert_eq, guest_println, SCRATCH_PORT};
use core::arch::asm;

basalt_guests::entry!(run);

const UNASSIGNED: u16 = 0x2F0;

fn scratch() -> u32 {
    let v: u32;
    // SAFETY: IN EAX from the scratch port, emulated by Basalt.
    unsafe { asm!("in eax, dx", in("dx") SCRATCH_PORT, out("eax") v, options(nomem, nostack)) };
    v
}

fn run() {
    let bytes = [0x11u8, 0x22, 0x33, 0x44];
    let (rsi, rcx): (u64, u64);
    // SAFETY: REP OUTSB of our 4 bytes to the scratch port.
    unsafe {
        asm!("cld", "rep outsb", in("dx") SCRATCH_PORT, inout("rsi") bytes.as_ptr() => rsi,
             inout("rcx") 4u64 => rcx, options(nostack, readonly))
    };
    guest_assert_eq!((rsi - bytes.as_ptr() as u64, rcx), (4, 0));
    guest_assert_eq!(scratch() & 0xFF, 0x44);

    let dwords = [0xAABB_CCDDu32, 0x0102_0304];
    // SAFETY: REP OUTSD of our 2 doublewords.
    unsafe {
        asm!("rep outsd", in("dx") SCRATCH_PORT, inout("rsi") dwords.as_ptr() => _,
             inout("rcx") 2u64 => _, options(nostack, readonly))
    };
    guest_assert_eq!(scratch(), 0x0102_0304);

    let mut words = [0u16; 4];
    let rdi: u64;
    // SAFETY: REP INSW of 3 words into our buffer.
    unsafe {
        asm!("rep insw", in("dx") SCRATCH_PORT, inout("rdi") words.as_mut_ptr() => rdi,
             inout("rcx") 3u64 => _, options(nostack))
    };
    guest_assert_eq!(words, [0x0304, 0x0304, 0x0304, 0]);
    guest_assert_eq!(rdi - words.as_ptr() as u64, 6);

    let mut floating = [0u8; 5];
    // SAFETY: REP INSB of 5 bytes from an unassigned port.
    unsafe {
        asm!("rep insb", in("dx") UNASSIGNED, inout("rdi") floating.as_mut_ptr() => _,
             inout("rcx") 5u64 => _, options(nostack))
    };
    guest_assert_eq!(floating, [0xFF; 5]);

    // DF = 1: from the last byte backwards, so the first byte is written last.
    let last = bytes.as_ptr().wrapping_add(3);
    let rsi: u64;
    // SAFETY: STD; REP OUTSB of our 4 bytes backwards; CLD.
    unsafe {
        asm!("std", "rep outsb", "cld", in("dx") SCRATCH_PORT, inout("rsi") last => rsi,
             inout("rcx") 4u64 => _, options(nostack, readonly))
    };
    guest_assert_eq!(scratch() & 0xFF, 0x11);
    guest_assert_eq!(rsi, bytes.as_ptr() as u64 - 1);
    guest_println!("REP OUTSB/OUTSD/INSW/INSB, forwards and backwards");
}
