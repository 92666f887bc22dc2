//! Instructions with prefixes are skipped by their real length: CPUID with segment, operand-
//! size and REP prefixes, RDMSR/WRMSR with REX.W, and the hypercall with an address-size
//! prefix. Each is followed by a MOV that must run; a skip by a fixed length would land inside
//! the instruction and run garbage. On SVM without NRIPS Basalt decodes the instruction; on
//! VMX and with NRIPS the hardware gives the length.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::ucall::exit_count;
use basalt_guests::{
    guest_assert_eq, guest_println, ExitCounter, HC_VERSION, HYPERCALL_ABI_VERSION, SCRATCH_MSR,
};
use core::arch::asm;

basalt_guests::entry!(run);

const MARK: u64 = 0x5EC0_0D00;

/// Whether the CPU is AMD's (the hypercall is VMMCALL there, VMCALL on Intel).
fn amd() -> bool {
    core::arch::x86_64::__cpuid(0).ebx == u32::from_le_bytes(*b"Auth")
}

fn run() {
    let amd = amd();
    // Exit counts show each instruction ran once: a skip that lands on the opcode after a
    // prefix runs it again.
    let cpuid_exits = exit_count(ExitCounter::Cpuid);
    let msr_exits = exit_count(ExitCounter::Msr);
    let hypercalls = exit_count(ExitCounter::Hypercall);
    let (ebx, after): (u64, u64);
    // SAFETY: CPUID leaf 0 with CS, DS, operand-size and REP prefixes (6 bytes), then a MOV.
    unsafe {
        asm!(
            "mov {t}, rbx",
            "xor eax, eax",
            ".byte 0x2e, 0x3e, 0x66, 0xf3, 0x0f, 0xa2",
            "mov {after}, {mark}",
            "xchg {t}, rbx",
            t = out(reg) ebx, after = out(reg) after, mark = const MARK,
            out("rax") _, out("rcx") _, out("rdx") _,
            options(nostack)
        )
    };
    guest_assert_eq!(ebx as u32, u32::from_le_bytes(if amd { *b"Auth" } else { *b"Genu" }));
    guest_assert_eq!(after, MARK);
    guest_assert_eq!(exit_count(ExitCounter::Cpuid) - cpuid_exits, 1);
    guest_println!("prefixed CPUID skipped by its length");

    let (lo, hi, after): (u32, u32, u64);
    // SAFETY: WRMSR and RDMSR of Basalt's scratch MSR with REX.W (3 bytes each), then MOVs.
    unsafe {
        asm!(
            ".byte 0x48, 0x0f, 0x30",
            "xor eax, eax",
            "xor edx, edx",
            ".byte 0x48, 0x0f, 0x32",
            "mov {after}, {mark}",
            after = out(reg) after, mark = const MARK,
            inout("ecx") SCRATCH_MSR => _, inout("eax") 0x1234_5678u32 => lo, inout("edx") 0x9ABCu32 => hi,
            options(nostack)
        )
    };
    guest_assert_eq!((lo, hi), (0x1234_5678, 0x9ABC));
    guest_assert_eq!(after, MARK);
    guest_assert_eq!(exit_count(ExitCounter::Msr) - msr_exits, 2);
    guest_println!("REX.W RDMSR and WRMSR skipped by their length");

    let (version, after): (u64, u64);
    // SAFETY: the version hypercall (RAX = 0) with an address-size prefix (4 bytes), then a MOV.
    unsafe {
        if amd {
            asm!(".byte 0x67, 0x0f, 0x01, 0xd9", "mov {after}, {mark}", after = out(reg) after, mark = const MARK,
                 inout("rax") HC_VERSION => version, options(nostack))
        } else {
            asm!(".byte 0x67, 0x0f, 0x01, 0xc1", "mov {after}, {mark}", after = out(reg) after, mark = const MARK,
                 inout("rax") HC_VERSION => version, options(nostack))
        }
    };
    guest_assert_eq!(version, HYPERCALL_ABI_VERSION);
    guest_assert_eq!(after, MARK);
    guest_assert_eq!(exit_count(ExitCounter::Hypercall) - hypercalls, 1);
    guest_println!("prefixed hypercall skipped by its length");
}
