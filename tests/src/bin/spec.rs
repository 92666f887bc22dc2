//! The speculation controls as a guest sees them: CPUID and the MSRs agree. IA32_SPEC_CTRL
//! reads and writes only where CPUID advertises it (Intel CPUID.(7,0):EDX[26,27,31], AMD
//! Fn8000_0008_EBX[14,15,24]) and takes only the advertised bits; IA32_PRED_CMD (EDX[26] or
//! EBX[12]) and IA32_FLUSH_CMD (EDX[28]) are write-only commands; IA32_ARCH_CAPABILITIES
//! (EDX[29]) is read-only. Everything not advertised is #GP, as on a CPU without it.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::idt::{self, Action, Event, Frame, GENERAL_PROTECTION};
use basalt_guests::{guest_assert, guest_assert_eq, guest_println};
use core::arch::asm;
use core::arch::x86_64::{__cpuid, __cpuid_count};

basalt_guests::entry!(run);

const IA32_SPEC_CTRL: u32 = 0x48;
const IA32_PRED_CMD: u32 = 0x49;
const IA32_ARCH_CAPABILITIES: u32 = 0x10A;
const IA32_FLUSH_CMD: u32 = 0x10B;

/// RDMSR and WRMSR are both 2 bytes (0F 32, 0F 30): the #GP handler skips the one that faulted.
fn skip_msr_insn(_: &Event, _: &mut Frame) -> Action {
    Action::Skip(2)
}

/// RDMSR, or `None` if it raised #GP.
fn rdmsr(msr: u32) -> Option<u64> {
    let before = idt::count(GENERAL_PROTECTION);
    let (lo, hi): (u32, u32);
    // SAFETY: RDMSR of a speculation-control MSR: Basalt emulates it or raises #GP, which the
    // handler skips.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nostack)) };
    (idt::count(GENERAL_PROTECTION) == before).then_some((u64::from(hi) << 32) | u64::from(lo))
}

/// WRMSR; whether it completed without #GP.
fn wrmsr(msr: u32, value: u64) -> bool {
    let before = idt::count(GENERAL_PROTECTION);
    // SAFETY: as in `rdmsr`; the values only restrict the guest's own speculation.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack))
    };
    idt::count(GENERAL_PROTECTION) == before
}

fn run() {
    idt::install();
    idt::set_handler(GENERAL_PROTECTION, skip_msr_insn);
    let edx7 = if __cpuid(0).eax >= 7 { __cpuid_count(7, 0).edx } else { 0 };
    let ebx8 = if __cpuid(0x8000_0000).eax >= 0x8000_0008 { __cpuid(0x8000_0008).ebx } else { 0 };
    guest_println!("CPUID.7 EDX {edx7:#010x}, 8000_0008 EBX {ebx8:#010x}");
    guest_assert!(ebx8 & (1 << 25) == 0, "VIRT_SSBD advertised without VIRT_SPEC_CTRL: {:#x}", ebx8);

    // SPEC_CTRL: each advertised bit sticks, any other bit is #GP.
    let bit = |set: bool, v: u64| if set { v } else { 0 };
    let spec_bits = bit(edx7 & (1 << 26) != 0 || ebx8 & (1 << 14) != 0, 1)
        | bit(edx7 & (1 << 27) != 0 || ebx8 & (1 << 15) != 0, 2)
        | bit(edx7 & (1 << 31) != 0 || ebx8 & (1 << 24) != 0, 4);
    let spec_ctrl = spec_bits != 0;
    let value = rdmsr(IA32_SPEC_CTRL);
    guest_println!("SPEC_CTRL advertised bits {spec_bits:#x}: read {value:?}");
    guest_assert_eq!(value.is_some(), spec_ctrl);
    if spec_ctrl {
        guest_assert_eq!(value, Some(0));
        for b in [1u64, 2, 4].into_iter().filter(|b| spec_bits & b != 0) {
            guest_assert!(wrmsr(IA32_SPEC_CTRL, b), "SPEC_CTRL bit {:#x} refused", b);
            guest_assert_eq!(rdmsr(IA32_SPEC_CTRL), Some(b));
        }
        let reserved = !spec_bits & 0x7 | 1 << 40;
        guest_assert!(!wrmsr(IA32_SPEC_CTRL, reserved), "SPEC_CTRL took {:#x}", reserved);
        guest_assert!(wrmsr(IA32_SPEC_CTRL, 0), "SPEC_CTRL 0 refused");
        guest_assert_eq!(rdmsr(IA32_SPEC_CTRL), Some(0));
    } else {
        guest_assert!(!wrmsr(IA32_SPEC_CTRL, 0), "SPEC_CTRL written without CPUID");
    }

    // PRED_CMD: write-only; IBPB where advertised.
    let ibpb = edx7 & (1 << 26) != 0 || ebx8 & (1 << 12) != 0;
    guest_assert_eq!(wrmsr(IA32_PRED_CMD, 1), ibpb);
    guest_assert!(rdmsr(IA32_PRED_CMD).is_none(), "PRED_CMD readable");
    guest_assert!(!wrmsr(IA32_PRED_CMD, 2), "PRED_CMD took a reserved bit");

    // FLUSH_CMD: write-only; L1D_FLUSH where advertised.
    let flush = edx7 & (1 << 28) != 0;
    guest_assert_eq!(wrmsr(IA32_FLUSH_CMD, 1), flush);
    guest_assert!(rdmsr(IA32_FLUSH_CMD).is_none(), "FLUSH_CMD readable");

    // ARCH_CAPABILITIES: read-only where advertised.
    let caps = rdmsr(IA32_ARCH_CAPABILITIES);
    guest_println!("PRED_CMD {ibpb}, FLUSH_CMD {flush}, ARCH_CAPABILITIES {caps:?}");
    guest_assert_eq!(caps.is_some(), edx7 & (1 << 29) != 0);
    guest_assert!(!wrmsr(IA32_ARCH_CAPABILITIES, 0), "ARCH_CAPABILITIES writable");
    guest_println!("speculation controls coherent");
}
