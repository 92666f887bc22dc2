//! Isolation: a host NMI sent to the CPU that runs this guest reaches Basalt, never the guest.
//! The guest asks Basalt to have another CPU NMI this one, spins with interrupts off, and then
//! asks how many NMIs Basalt's own handler took and how many NMI exits it saw; its own NMI
//! handler must never run.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::idt;
use basalt_guests::ucall::{exit_count, request_nmi};
use basalt_guests::{guest_assert, guest_assert_eq, guest_println, ExitCounter};

basalt_guests::entry!(run);

/// How long the guest spins for the NMI, in TSC ticks (well past the 2 ms delay at any rate).
const SPIN_TICKS: u64 = 400_000_000;

fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn run() {
    idt::install();
    // SAFETY: interrupts off for the spin; an NMI is not maskable by IF anyway.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
    request_nmi(2_000);
    let start = rdtsc();
    let mut spins = 0u64;
    while rdtsc().wrapping_sub(start) < SPIN_TICKS && exit_count(ExitCounter::HostNmi) == 0 {
        for _ in 0..10_000 {
            core::hint::spin_loop();
        }
        spins += 1;
    }
    let host = exit_count(ExitCounter::HostNmi);
    let exits = exit_count(ExitCounter::Nmi);
    guest_println!("after {spins} spins: Basalt took {host} NMIs, {exits} of them as NMI exits");
    guest_assert!(host >= 1, "the NMI reached Basalt");
    guest_assert_eq!(idt::count(2), 0);
}
