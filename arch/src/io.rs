//! Port I/O and MSR access: the smallest wrappers over the instructions.

use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;

/// Write one byte to an I/O port.
pub fn outb(port: u16, value: u8) {
    // SAFETY: Basalt owns the machine's I/O space; callers name ports of devices they drive.
    unsafe { Port::new(port).write(value) }
}

/// Read one byte from an I/O port.
pub fn inb(port: u16) -> u8 {
    // SAFETY: as in `outb`.
    unsafe { Port::new(port).read() }
}

/// Write a 32-bit value to an I/O port.
pub fn outl(port: u16, value: u32) {
    // SAFETY: as in `outb`.
    unsafe { Port::new(port).write(value) }
}

/// Read a model-specific register.
///
/// # Safety
/// The MSR must exist on this CPU (a missing one raises #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    // SAFETY: forwarded to the caller.
    unsafe { Msr::new(msr).read() }
}

/// Write a model-specific register.
///
/// # Safety
/// The MSR must exist and the value must not break memory safety (EFER, PAT, ...).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { Msr::new(msr).write(value) }
}

/// Read the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects and is not disabled by Basalt (CR4.TSD clear).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Stop this CPU for good: interrupts off, HLT forever (NMIs return into the loop).
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Open the interrupt window for one instruction and close it again: every host interrupt
/// pending at the local APIC is delivered to Basalt's IDT now (a VM exit left it pending).
pub fn take_pending_interrupts() {
    // SAFETY: Basalt's IDT has a handler for every vector (idt.rs), each of which returns; STI
    // takes effect after the NOP, so the interrupts arrive between the NOP and the CLI.
    unsafe { core::arch::asm!("sti", "nop", "cli", options(nomem, nostack)) };
}
