//! Per-vCPU statistics: after 3 port writes, 2 MSR reads and a few CPUIDs the guest asks for
//! its statistics line (hypercall HC_STATS); the test checks Basalt's line names the port, the
//! MSR and their counts, the time in the guest and in Basalt, and the injected events.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::{HC_STATS, SCRATCH_MSR, SCRATCH_PORT};
use core::arch::asm;

basalt_guests::entry!(run);

fn amd() -> bool {
    core::arch::x86_64::__cpuid(0).ebx == u32::from_le_bytes(*b"Auth")
}

fn run() {
    let amd = amd();
    // SAFETY: port writes to the scratch port and reads of the scratch MSR, both emulated.
    unsafe {
        for _ in 0..3 {
            asm!("out dx, eax", in("dx") SCRATCH_PORT, in("eax") 1u32, options(nomem, nostack));
        }
        for _ in 0..2 {
            asm!("rdmsr", in("ecx") SCRATCH_MSR, out("eax") _, out("edx") _, options(nomem, nostack));
        }
    }
    basalt_guests::ucall::raise_interrupt(0x40);
    basalt_guests::idt::install();
    // SAFETY: STI; NOP; CLI: the raised interrupt is injected and handled (counted) by our IDT.
    unsafe { asm!("sti", "nop", "cli", options(nomem, nostack)) };
    let r: u64;
    // SAFETY: the statistics hypercall; Basalt prints a line and returns 0 in RAX.
    unsafe {
        if amd {
            asm!("vmmcall", inout("rax") HC_STATS => r, options(nostack));
        } else {
            asm!("vmcall", inout("rax") HC_STATS => r, options(nostack));
        }
    }
    basalt_guests::guest_assert_eq!(r, 0);
}
