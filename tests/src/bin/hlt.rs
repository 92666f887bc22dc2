//! HLT and interrupt injection: an interrupt raised through a ucall arrives once the guest
//! enables interrupts, wakes it from HLT, and execution resumes after the HLT.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::idt;
use basalt_guests::ucall::{exit_count, raise_interrupt};
use basalt_guests::{guest_assert, guest_assert_eq, ExitCounter};
use core::arch::asm;

basalt_guests::entry!(run);

const VECTOR: u8 = 0x40;

/// Enables interrupts and halts in the STI shadow, so a pending interrupt arrives only once the
/// HLT has executed; returns the address of the instruction after the HLT.
fn sti_hlt() -> u64 {
    let after: u64;
    // SAFETY: STI; HLT with our IDT installed: the interrupt's handler returns to the next
    // instruction. Interrupts are disabled again before we return.
    unsafe { asm!("lea {}, [rip + 2f]", "sti", "hlt", "2: cli", out(reg) after, options(nostack)) };
    after
}

fn run() {
    idt::install();
    let hlt_before = exit_count(ExitCounter::Hlt);

    // Interrupts are off: the raised interrupt stays pending until STI.
    raise_interrupt(VECTOR);
    guest_assert_eq!(idt::count(VECTOR), 0);
    let after_hlt = sti_hlt();
    guest_assert_eq!(idt::count(VECTOR), 1);
    let event = idt::last().map_or((0, 0), |e| (e.vector, e.rip));
    guest_assert_eq!(event.0, VECTOR);
    // The interrupt was taken after the HLT, not before it: execution resumed after HLT.
    guest_assert_eq!(event.1, after_hlt);

    let hlt_after = exit_count(ExitCounter::Hlt);
    guest_assert!(hlt_after > hlt_before, "HLT exits {} -> {}", hlt_before, hlt_after);

    // Again: a second interrupt wakes a second HLT.
    raise_interrupt(VECTOR);
    let after_hlt = sti_hlt();
    guest_assert_eq!(idt::count(VECTOR), 2);
    guest_assert_eq!(idt::last().map_or(0, |e| e.rip), after_hlt);
    guest_assert!(exit_count(ExitCounter::Hlt) > hlt_after);
}
