//! MSRs: Basalt's 64-bit scratch MSR round-trips; an MSR Basalt forbids raises #GP(0).
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::idt::{self, Action, Event, Frame, GENERAL_PROTECTION};
use basalt_guests::ucall::exit_count;
use basalt_guests::{guest_assert, guest_assert_eq, ExitCounter, SCRATCH_MSR};
use core::arch::asm;

basalt_guests::entry!(run);

/// Basalt never allows this MSR.
const FORBIDDEN_MSR: u32 = 0xDEAD_0000;

fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDMSR of an MSR Basalt emulates or answers with #GP, which our IDT handles.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

fn wrmsr(msr: u32, value: u64) {
    // SAFETY: WRMSR of Basalt's scratch MSR, which only Basalt's emulation sees.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nomem, nostack, preserves_flags))
    };
}

/// Skips the 2-byte RDMSR (0F 32) that faulted.
fn skip_rdmsr(_: &Event, _: &mut Frame) -> Action {
    Action::Skip(2)
}

fn run() {
    idt::install();
    idt::set_handler(GENERAL_PROTECTION, skip_rdmsr);
    let before = exit_count(ExitCounter::Msr);

    for value in [0x0123_4567_89AB_CDEF, 0xFEDC_BA98_7654_3210, 0, u64::MAX] {
        wrmsr(SCRATCH_MSR, value);
        guest_assert_eq!(rdmsr(SCRATCH_MSR), value);
    }

    let rdmsr_at: u64;
    let (lo, hi): (u32, u32);
    // SAFETY: RDMSR of an MSR Basalt forbids: #GP, whose handler skips the instruction; EAX and
    // EDX keep the values we put in them. `rdmsr_at` gets the RDMSR's address.
    unsafe {
        asm!("lea {at}, [rip + 2f]", "2: rdmsr", at = out(reg) rdmsr_at, in("ecx") FORBIDDEN_MSR,
             inout("eax") 0x5A5A_5A5Au32 => lo, inout("edx") 0xA5A5_A5A5u32 => hi, options(nostack))
    };
    guest_assert_eq!(idt::count(GENERAL_PROTECTION), 1);
    let event = idt::last().unwrap_or(Event { vector: 0, error_code: u64::MAX, cr2: 0, rip: 0 });
    guest_assert_eq!(event.vector, GENERAL_PROTECTION);
    guest_assert_eq!(event.error_code, 0);
    guest_assert_eq!(event.rip, rdmsr_at);
    guest_assert_eq!((lo, hi), (0x5A5A_5A5A, 0xA5A5_A5A5));

    let after = exit_count(ExitCounter::Msr);
    guest_assert!(after >= before + 9, "MSR exits {} -> {}", before, after);
}
