//! Isolation: MONITOR/MWAIT with interrupts off, again and again. Neither may park the CPU:
//! each gives #UD (CPUID offers no MONITOR), the handler steps over it, and the loop goes on
//! until the VM's time limit stops it; the next VM runs.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::idt::{self, Action, Event, Frame, INVALID_OPCODE};

basalt_guests::entry!(run);

fn skip(_: &Event, _: &mut Frame) -> Action {
    Action::Skip(3)
}

fn run() {
    idt::install();
    idt::set_handler(INVALID_OPCODE, skip);
    basalt_guests::guest_println!("MONITOR/MWAIT in a loop with interrupts off");
    loop {
        // SAFETY: MONITOR on our own stack and MWAIT (3 bytes each), interrupts off; both fault
        // with #UD, which the handler skips.
        unsafe {
            core::arch::asm!(
                "cli", "mov rax, rsp", "xor ecx, ecx", "xor edx, edx", ".byte 0x0f, 0x01, 0xc8",
                "xor eax, eax", ".byte 0x0f, 0x01, 0xc9",
                out("rax") _, out("rcx") _, out("rdx") _, options(nostack)
            )
        };
    }
}
