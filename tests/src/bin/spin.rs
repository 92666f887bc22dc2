//! Isolation: a guest that spins with interrupts off (`cli; jmp .`) never exits on its own.
//! Basalt's time slices still end (VMX preemption timer, SVM host timer interrupt), and the
//! VM's time limit stops it; the next VM runs.
#![cfg_attr(target_os = "none", no_std, no_main)]

basalt_guests::entry!(run);

fn run() {
    basalt_guests::guest_println!("spinning with interrupts off");
    // SAFETY: CLI and a jump to itself: this vCPU spins until Basalt stops it.
    unsafe { core::arch::asm!("cli", "2:", "jmp 2b", options(nomem, nostack, noreturn)) }
}
