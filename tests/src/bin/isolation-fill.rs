//! Isolation, first half: fill every register a guest can write natively with markers (x87
//! stack and control word, XMM0-15 (YMM0-15 and XCR0 where AVX is offered), MXCSR, DR0-DR3, DR6, CR2, CR8, KERNEL_GS_BASE through
//! SWAPGS, Basalt's scratch MSR) and end without cleaning up. `isolation-check`, run next on
//! the same CPU, must see every one at its reset value.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::{guest_println, SCRATCH_MSR};
use core::arch::asm;

basalt_guests::entry!(run);

/// The marker base: canonical, so it fits DR0-DR3, CR2 and the GS base.
const MARK: u64 = 0x0000_7EAD_BEEF_0000;

#[repr(C, align(16))]
struct Xmm([u64; 32]);

static PATTERN: Xmm = {
    let mut p = [0u64; 32];
    let mut i = 0;
    while i < 32 {
        p[i] = MARK | i as u64;
        i += 1;
    }
    Xmm(p)
};

/// Whether CPUID leaf 7 offers FSGSBASE (RDGSBASE/WRGSBASE).
pub fn has_fsgsbase() -> bool {
    core::arch::x86_64::__cpuid_count(7, 0).ebx & 1 != 0
}

fn run() {
    let p = PATTERN.0.as_ptr();
    // SAFETY: loads of a static, 16-byte aligned pattern into the vector registers, x87 pushes
    // and control-word/MXCSR writes: all this guest's own state, which it never uses again.
    unsafe {
        asm!(
            "movdqa xmm0, [{p}]", "movdqa xmm1, [{p} + 16]", "movdqa xmm2, [{p} + 32]",
            "movdqa xmm3, [{p} + 48]", "movdqa xmm4, [{p} + 64]", "movdqa xmm5, [{p} + 80]",
            "movdqa xmm6, [{p} + 96]", "movdqa xmm7, [{p} + 112]", "movdqa xmm8, [{p} + 128]",
            "movdqa xmm9, [{p} + 144]", "movdqa xmm10, [{p} + 160]", "movdqa xmm11, [{p} + 176]",
            "movdqa xmm12, [{p} + 192]", "movdqa xmm13, [{p} + 208]", "movdqa xmm14, [{p} + 224]",
            "movdqa xmm15, [{p} + 240]",
            "fld1", "fldpi", "fldl2t",
            "sub rsp, 16",
            "mov word ptr [rsp], 0x027F",
            "fldcw [rsp]",
            "mov dword ptr [rsp], 0x9F80",
            "ldmxcsr [rsp]",
            "add rsp, 16",
            p = in(reg) p,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _,
            out("xmm5") _, out("xmm6") _, out("xmm7") _, out("xmm8") _, out("xmm9") _,
            out("xmm10") _, out("xmm11") _, out("xmm12") _, out("xmm13") _, out("xmm14") _,
            out("xmm15") _,
        );
    }
    guest_println!("x87, XMM0-15 and MXCSR filled");

    // Where AVX is offered: XCR0 = x87 | SSE | AVX and the upper halves of YMM0-15 too.
    if core::arch::x86_64::__cpuid(1).ecx & (1 << 28) != 0 {
        // SAFETY: CR4.OSXSAVE and XCR0 = 7 as CPUID offers them, then loads of the static
        // pattern into YMM0-15 (this guest's own state).
        unsafe {
            asm!(
                "mov {t}, cr4", "bts {t}, 18", "mov cr4, {t}",
                "xor ecx, ecx", "xor edx, edx", "mov eax, 7", "xsetbv",
                "vmovdqu ymm0, [{p}]", "vmovdqu ymm1, [{p} + 32]", "vmovdqu ymm2, [{p} + 64]",
                "vmovdqu ymm3, [{p} + 96]", "vmovdqu ymm4, [{p} + 128]", "vmovdqu ymm5, [{p} + 160]",
                "vmovdqu ymm6, [{p} + 192]", "vmovdqu ymm7, [{p} + 224]", "vmovdqu ymm8, [{p} + 0]",
                "vmovdqu ymm9, [{p} + 32]", "vmovdqu ymm10, [{p} + 64]", "vmovdqu ymm11, [{p} + 96]",
                "vmovdqu ymm12, [{p} + 128]", "vmovdqu ymm13, [{p} + 160]", "vmovdqu ymm14, [{p} + 192]",
                "vmovdqu ymm15, [{p} + 224]",
                t = out(reg) _, p = in(reg) p, out("eax") _, out("ecx") _, out("edx") _,
                options(nostack)
            );
        }
        guest_println!("XCR0 = 7 and YMM0-15 filled");
    }

    // SAFETY: DR7 stays clear, so the debug addresses arm nothing; CR2 is only a report; CR8
    // is this guest's own TPR (it keeps interrupts off anyway).
    unsafe {
        asm!(
            "mov dr0, {a}", "mov dr1, {b}", "mov dr2, {c}", "mov dr3, {d}", "mov dr6, {e}",
            "mov cr2, {f}", "mov cr8, {g}",
            a = in(reg) MARK | 0x10, b = in(reg) MARK | 0x20, c = in(reg) MARK | 0x30,
            d = in(reg) MARK | 0x40, e = in(reg) 0xFFFF_4FF1u64, f = in(reg) MARK | 0x50,
            g = in(reg) 9u64,
            options(nomem, nostack, preserves_flags)
        );
    }
    guest_println!("DR0-DR3, DR6, CR2 and CR8 filled");

    if has_fsgsbase() {
        // SAFETY: CR4.FSGSBASE enables WRGSBASE; SWAPGS moves the marker into KERNEL_GS_BASE.
        // This guest never uses GS.
        unsafe {
            asm!(
                "mov {t}, cr4", "bts {t}, 16", "mov cr4, {t}",
                "wrgsbase {m}", "swapgs",
                t = out(reg) _, m = in(reg) MARK | 0x60,
                options(nomem, nostack)
            );
        }
        guest_println!("KERNEL_GS_BASE filled through SWAPGS");
    }

    // SAFETY: Basalt's scratch MSR, emulated by Basalt for this VM only.
    unsafe {
        asm!("wrmsr", in("ecx") SCRATCH_MSR, in("eax") 0xFEED_u32, in("edx") 0xBEEF_u32,
             options(nomem, nostack, preserves_flags))
    };
}
