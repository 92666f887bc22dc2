//! The MSR table: every MSR the virtual CPUID implies reads without #GP, the writable ones
//! read back what was written, reserved bits and non-canonical addresses give #GP, the MTRRs
//! round-trip, and writing the TSC moves TSC_ADJUST by the same amount.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::idt::{self, Action, Event, Frame, GENERAL_PROTECTION};
use basalt_guests::{guest_assert, guest_assert_eq, guest_println};
use core::arch::asm;
use core::arch::x86_64::{__cpuid, __cpuid_count};

basalt_guests::entry!(run);

fn skip2(_: &Event, _: &mut Frame) -> Action {
    Action::Skip(2)
}

/// RDMSR; `None` if it raised #GP.
fn rdmsr(msr: u32) -> Option<u64> {
    let gp = idt::count(GENERAL_PROTECTION);
    let (lo, hi): (u32, u32);
    // SAFETY: RDMSR, emulated by Basalt; a #GP is skipped by the handler (EAX/EDX then 0).
    unsafe {
        asm!("rdmsr", in("ecx") msr, inout("eax") 0u32 => lo, inout("edx") 0u32 => hi, options(nostack))
    };
    (idt::count(GENERAL_PROTECTION) == gp).then_some(u64::from(hi) << 32 | u64::from(lo))
}

/// WRMSR; whether it was taken (no #GP).
fn wrmsr(msr: u32, value: u64) -> bool {
    let gp = idt::count(GENERAL_PROTECTION);
    // SAFETY: WRMSR, emulated by Basalt; a #GP is skipped by the handler.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack))
    };
    idt::count(GENERAL_PROTECTION) == gp
}

fn round_trip(msr: u32, value: u64) {
    guest_assert!(wrmsr(msr, value), "WRMSR {:#x} <- {:#x} was refused", msr, value);
    guest_assert_eq!(rdmsr(msr), Some(value));
}

fn run() {
    idt::install();
    idt::set_handler(GENERAL_PROTECTION, skip2);
    let d1 = __cpuid(1).edx;
    let e1 = __cpuid(0x8000_0001).edx;
    // What CPUID implies exists: MTRR (1 EDX[12]), PAT (16), SEP (11), MCE/MCA (7, 14),
    // SYSCALL and LM (8000_0001 EDX[11], [29]), RDTSCP ([27]), TSC_ADJUST (7 EBX[1]).
    let mut readable: [(bool, u32); 18] = [
        (true, 0x10),
        (d1 & (1 << 12) != 0, 0xFE),
        (d1 & (1 << 12) != 0, 0x2FF),
        (d1 & (1 << 12) != 0, 0x200),
        (d1 & (1 << 12) != 0, 0x250),
        (d1 & (1 << 16) != 0, 0x277),
        (d1 & (1 << 11) != 0, 0x174),
        (d1 & (1 << 11) != 0, 0x175),
        (d1 & (1 << 14) != 0, 0x179),
        (d1 & (1 << 7) != 0, 0x17A),
        (e1 & (1 << 11) != 0, 0xC000_0081),
        (e1 & (1 << 11) != 0, 0xC000_0082),
        (e1 & (1 << 11) != 0, 0xC000_0084),
        (e1 & (1 << 29) != 0, 0xC000_0100),
        (e1 & (1 << 29) != 0, 0xC000_0101),
        (e1 & (1 << 29) != 0, 0xC000_0102),
        (e1 & (1 << 27) != 0, 0xC000_0103),
        (__cpuid_count(7, 0).ebx & (1 << 1) != 0, 0x3B),
    ];
    readable.sort_unstable_by_key(|&(_, m)| m);
    let mut count = 0;
    for (offered, msr) in readable {
        if offered {
            guest_assert!(rdmsr(msr).is_some(), "MSR {:#x} is advertised but RDMSR gives #GP", msr);
            count += 1;
        }
    }

    // Round trips, and the checks on writes.
    round_trip(0xC000_0100, 0x0000_7FFF_1234_5000);
    round_trip(0xC000_0102, 0xFFFF_8000_0000_1000);
    guest_assert!(!wrmsr(0xC000_0100, 0x0000_8000_0000_0000), "a non-canonical FS base is #GP");
    guest_assert!(!wrmsr(0xC000_0082, 0x1234_0000_0000_0000), "a non-canonical LSTAR is #GP");
    round_trip(0xC000_0082, 0xFFFF_FFFF_8100_0000);
    round_trip(0xC000_0081, 0x0023_0010_0000_0000);
    round_trip(0xC000_0084, 0x4700);
    guest_assert!(!wrmsr(0xC000_0084, 1 << 40), "SFMASK bits 63:32 are reserved");
    round_trip(0x174, 0x10);
    round_trip(0x175, 0xFFFF_8000_0000_2000);
    if e1 & (1 << 27) != 0 {
        round_trip(0xC000_0103, 7);
        guest_assert!(!wrmsr(0xC000_0103, 1 << 32), "TSC_AUX bits 63:32 are reserved");
    }
    if d1 & (1 << 16) != 0 {
        guest_assert_eq!(rdmsr(0x277), Some(0x0007_0406_0007_0406));
        round_trip(0x277, 0x0007_0406_0007_0106);
        guest_assert!(!wrmsr(0x277, 0x0002_0000_0000_0000), "PAT type 2 is reserved");
    }
    if d1 & (1 << 12) != 0 {
        guest_assert_eq!(rdmsr(0xFE).map(|c| c & 0xFF), Some(8));
        round_trip(0x2FF, 0xC06);
        round_trip(0x200, 0x8000_0006);
        round_trip(0x201, 0xF_8000_0800);
        round_trip(0x268, 0x0606_0606_0505_0404);
        guest_assert!(!wrmsr(0x2FF, 0x1006), "MTRR_DEF_TYPE bit 12 is reserved");
        guest_assert!(!wrmsr(0x201, 0x801), "PHYSMASK bit 0 is reserved");
    }
    guest_assert!(!wrmsr(0xFE, 0), "MTRRCAP is read-only");
    guest_assert!(rdmsr(0xDEAD_0000).is_none(), "an unknown MSR is #GP");

    // Writing the TSC sets it, and moves TSC_ADJUST by the same amount.
    let adjust_offered = __cpuid_count(7, 0).ebx & (1 << 1) != 0;
    let before_adjust = if adjust_offered { rdmsr(0x3B).unwrap_or(0) } else { 0 };
    guest_assert!(wrmsr(0x10, 1 << 40), "WRMSR IA32_TSC");
    let tsc = rdmsr(0x10).unwrap_or(0);
    guest_assert!((1 << 40..(1 << 40) + (1 << 32)).contains(&tsc), "TSC {:#x} after writing 1 << 40", tsc);
    if adjust_offered {
        let adjust = rdmsr(0x3B).unwrap_or(0);
        guest_assert!(
            adjust.wrapping_sub(before_adjust) > 1 << 39,
            "TSC_ADJUST moved with the TSC: {:#x}",
            adjust
        );
    }
    guest_println!("{count} advertised MSRs readable; round trips, reserved bits and canonical checks hold");
}
