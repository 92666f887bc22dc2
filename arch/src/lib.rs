//! x86_64 hardware, no policy.
//!
//! CPU identification, MSRs, Basalt's own page tables, GDT/TSS/IDT with exception entry
//! stubs, the local APIC (xAPIC and x2APIC) and the SMP trampoline. Everything that touches
//! the hardware is `unsafe` inside this crate behind safe functions; the logic that can be
//! checked on the host (table encodings, descriptor layouts) is unit-tested there.
#![no_std]

extern crate alloc;

pub mod apic;
pub mod cmos;
pub mod cpu;
pub mod gdt;
pub mod hoststate;
pub mod idt;
pub mod io;
pub mod mtrr;
pub mod nested;
pub mod paging;
pub mod smp;
pub mod spec;
pub mod svm;
pub mod virt;
pub mod vmx;
