//! Isolation, second half: after `isolation-fill` ran on the same CPU, every register a guest
//! can write natively is at its architectural reset value: x87 (FCW 0x037F, empty tags),
//! XMM0-15 zero (and YMM0-15 where AVX is offered), MXCSR 0x1F80, DR0-DR3 zero, DR6 0xFFFF0FF0, CR2 and CR8 zero,
//! KERNEL_GS_BASE and TSC_AUX zero, XCR0 = 1 where the guest can read it, the scratch MSR
//! zero. Also what the boot ABI promises: CR0, CR4 and EFER as documented, EFER.SVME hidden.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::idt::{self, Action, Event, Frame, GENERAL_PROTECTION};
use basalt_guests::{guest_assert, guest_assert_eq, guest_println, SCRATCH_MSR};
use core::arch::asm;

basalt_guests::entry!(run);

const IA32_EFER: u32 = 0xC000_0080;

#[repr(C, align(16))]
struct FxArea([u8; 512]);

fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: an MSR Basalt emulates for this VM.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

fn skip_mov_cr4(_: &Event, _: &mut Frame) -> Action {
    Action::Skip(3)
}

fn run() {
    idt::install();
    let mut fx = FxArea([0xAA; 512]);
    // SAFETY: FXSAVE into a 16-byte aligned 512-byte buffer of ours (CR4.OSFXSR is set).
    unsafe { asm!("fxsave64 [{}]", in(reg) &mut fx, options(nostack, preserves_flags)) };
    let word = |at: usize| u16::from_le_bytes([fx.0[at], fx.0[at + 1]]);
    guest_assert_eq!(word(0), 0x037F);
    guest_assert_eq!(word(2), 0);
    guest_assert_eq!(fx.0[4], 0);
    guest_assert_eq!(u32::from_le_bytes(fx.0[24..28].try_into().unwrap()), 0x1F80);
    for (i, chunk) in fx.0[32..160].chunks(16).enumerate() {
        guest_assert!(chunk[..10].iter().all(|&b| b == 0), "ST{} is zero", i);
    }
    for (i, chunk) in fx.0[160..416].chunks(16).enumerate() {
        guest_assert!(chunk.iter().all(|&b| b == 0), "XMM{} is zero", i);
    }
    guest_println!("x87, XMM0-15 and MXCSR are at reset");

    let (dr0, dr1, dr2, dr3, dr6, cr2, cr8): (u64, u64, u64, u64, u64, u64, u64);
    // SAFETY: reads of debug and control registers.
    unsafe {
        asm!(
            "mov {0}, dr0", "mov {1}, dr1", "mov {2}, dr2", "mov {3}, dr3", "mov {4}, dr6",
            "mov {5}, cr2", "mov {6}, cr8",
            out(reg) dr0, out(reg) dr1, out(reg) dr2, out(reg) dr3, out(reg) dr6, out(reg) cr2,
            out(reg) cr8, options(nomem, nostack, preserves_flags)
        );
    }
    guest_assert_eq!([dr0, dr1, dr2, dr3], [0u64; 4]);
    guest_assert_eq!(dr6, 0xFFFF_0FF0);
    guest_assert_eq!(cr2, 0);
    guest_assert_eq!(cr8, 0);
    guest_println!("DR0-DR3, DR6, CR2 and CR8 are at reset");

    let leaf7 = core::arch::x86_64::__cpuid_count(7, 0);
    if leaf7.ebx & 1 != 0 {
        let kernel_gs: u64;
        // SAFETY: CR4.FSGSBASE enables RDGSBASE; SWAPGS twice leaves GS as it was.
        unsafe {
            asm!(
                "mov {t}, cr4", "bts {t}, 16", "mov cr4, {t}",
                "swapgs", "rdgsbase {k}", "swapgs",
                t = out(reg) _, k = out(reg) kernel_gs,
                options(nomem, nostack)
            );
        }
        guest_assert_eq!(kernel_gs, 0);
    }
    let ext = core::arch::x86_64::__cpuid(0x8000_0001);
    if ext.edx & (1 << 27) != 0 {
        let aux: u32;
        // SAFETY: RDTSCP reads the TSC and TSC_AUX.
        unsafe {
            asm!("rdtscp", out("ecx") aux, out("eax") _, out("edx") _, options(nomem, nostack, preserves_flags))
        };
        guest_assert_eq!(aux, 0);
    }
    guest_assert_eq!(rdmsr(SCRATCH_MSR), 0);

    // XCR0: where CPUID offers XSAVE, CR4.OSXSAVE sticks and XGETBV must show the reset XCR0;
    // where it does not, setting it faults (#GP).
    idt::set_handler(GENERAL_PROTECTION, skip_mov_cr4);
    let gp = idt::count(GENERAL_PROTECTION);
    let cr4: u64;
    // SAFETY: MOV CR4 with OSXSAVE (3 bytes, skipped by the handler if it faults).
    unsafe {
        asm!("mov {t}, cr4", "bts {t}, 18", "mov cr4, {t}", "mov {t}, cr4", t = out(reg) cr4, options(nomem, nostack))
    };
    if cr4 & (1 << 18) != 0 {
        let (lo, hi): (u32, u32);
        // SAFETY: CR4.OSXSAVE is set, so XGETBV is defined.
        unsafe { asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
        guest_assert_eq!((u64::from(hi) << 32) | u64::from(lo), 1);
        guest_println!("XCR0 is at reset");
        if core::arch::x86_64::__cpuid(1).ecx & (1 << 28) != 0 {
            let mut ymm = [[0xAAu8; 32]; 16];
            let y = ymm.as_mut_ptr();
            // SAFETY: XCR0 = 7 as CPUID offers it, then stores of YMM0-15 into our buffer.
            unsafe {
                asm!(
                    "xor ecx, ecx", "xor edx, edx", "mov eax, 7", "xsetbv",
                    "vmovdqu [{y}], ymm0", "vmovdqu [{y} + 32], ymm1", "vmovdqu [{y} + 64], ymm2",
                    "vmovdqu [{y} + 96], ymm3", "vmovdqu [{y} + 128], ymm4", "vmovdqu [{y} + 160], ymm5",
                    "vmovdqu [{y} + 192], ymm6", "vmovdqu [{y} + 224], ymm7", "vmovdqu [{y} + 256], ymm8",
                    "vmovdqu [{y} + 288], ymm9", "vmovdqu [{y} + 320], ymm10", "vmovdqu [{y} + 352], ymm11",
                    "vmovdqu [{y} + 384], ymm12", "vmovdqu [{y} + 416], ymm13", "vmovdqu [{y} + 448], ymm14",
                    "vmovdqu [{y} + 480], ymm15",
                    y = in(reg) y, out("eax") _, out("ecx") _, out("edx") _, options(nostack)
                );
            }
            for (i, reg) in ymm.iter().enumerate() {
                guest_assert!(reg.iter().all(|&b| b == 0), "YMM{} is zero", i);
            }
            guest_println!("YMM0-15 are at reset");
        }
    } else {
        guest_assert_eq!(idt::count(GENERAL_PROTECTION), gp + 1);
        guest_println!("CR4.OSXSAVE refused with #GP");
    }

    // The boot ABI (tests/src/lib.rs): CR0 = PE|MP|ET|NE|WP|PG (caches on), EFER = LME|LMA|NXE.
    let cr0: u64;
    // SAFETY: reading CR0.
    unsafe { asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack, preserves_flags)) };
    guest_assert_eq!(cr0, 0x8001_0033);
    guest_assert_eq!(rdmsr(IA32_EFER), 0xD00);
}
