//! FPU, SSE, AVX and XSAVE: where the CPU has XSAVE the guest sees it with a coherent leaf 0xD,
//! CPUID's OSXSAVE bit follows its CR4, invalid XSETBVs give #GP and a valid one becomes its
//! XCR0. Then x87, XMM (and where offered the full YMM) registers filled with patterns come
//! through thousands of exits of every kind and injected interrupts bit for bit.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::idt::{self, Action, Event, Frame, GENERAL_PROTECTION};
use basalt_guests::ucall::raise_interrupt;
use basalt_guests::{guest_assert, guest_assert_eq, guest_println};
use core::arch::asm;
use core::arch::x86_64::{__cpuid, __cpuid_count};

basalt_guests::entry!(run);

const SCRATCH_MSR: u32 = 0x4B42_0000;
const SCRATCH_PORT: u16 = 0xE4;
const VECTOR: u8 = 0x41;
const ROUNDS: u64 = 2000;

#[repr(C, align(32))]
struct Vectors([u64; 64]);

/// 16 registers of 256 bits, each quadword distinct.
static PATTERN: Vectors = {
    let mut p = [0u64; 64];
    let mut i = 0;
    while i < 64 {
        p[i] = 0xA5A5_0000_0000_0000 | (i as u64) << 32 | (0x1234_5678 ^ (i as u64 * 0x0101_0101));
        i += 1;
    }
    Vectors(p)
};

/// Eight doubles for the x87 stack (normal numbers: exact through the 80-bit registers).
static X87: [u64; 8] = [
    0x4000_0000_0000_0001,
    0x4010_0000_0000_0002,
    0xC020_0000_0000_0003,
    0x3FF0_0000_0000_0004,
    0x4050_0000_0000_0005,
    0xC060_0000_0000_0006,
    0x4070_0000_0000_0007,
    0x4080_0000_0000_0008,
];

fn skip3(_: &Event, _: &mut Frame) -> Action {
    Action::Skip(3)
}

fn xgetbv() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV of XCR0 with CR4.OSXSAVE set.
    unsafe { asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    u64::from(hi) << 32 | u64::from(lo)
}

/// XSETBV; returns whether it raised #GP (the handler skips its 3 bytes).
fn xsetbv(index: u32, value: u64) -> bool {
    let gp = idt::count(GENERAL_PROTECTION);
    // SAFETY: XSETBV with CR4.OSXSAVE set: Basalt checks it and either gives #GP (skipped by
    // the handler) or makes it this guest's XCR0.
    unsafe {
        asm!("xsetbv", in("ecx") index, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack))
    };
    idt::count(GENERAL_PROTECTION) != gp
}

/// One round of exits: CPUID, a port write, an MSR read, the version hypercall.
fn exits(amd: bool) {
    // SAFETY: each instruction exits to Basalt, which emulates it for this VM only.
    unsafe {
        asm!("mov {t}, rbx", "cpuid", "mov rbx, {t}", t = out(reg) _, inout("eax") 0u32 => _, out("ecx") _,
             out("edx") _, options(nostack));
        asm!("out dx, eax", in("dx") SCRATCH_PORT, in("eax") 7u32, options(nostack, nomem));
        asm!("rdmsr", in("ecx") SCRATCH_MSR, out("eax") _, out("edx") _, options(nostack, nomem));
        if amd {
            asm!("vmmcall", inout("rax") 0u64 => _, options(nostack));
        } else {
            asm!("vmcall", inout("rax") 0u64 => _, options(nostack));
        }
    }
}

fn run() {
    idt::install();
    idt::set_handler(GENERAL_PROTECTION, skip3);
    let amd = __cpuid(0).ebx == u32::from_le_bytes(*b"Auth");
    let leaf1 = __cpuid(1).ecx;
    let xsave = leaf1 & (1 << 26) != 0;
    let mut avx = false;
    if xsave {
        guest_assert_eq!(leaf1 & (1 << 27), 0);
        // SAFETY: setting CR4.OSXSAVE, which CPUID offers.
        unsafe {
            asm!("mov {t}, cr4", "bts {t}, 18", "mov cr4, {t}", t = out(reg) _, options(nomem, nostack))
        };
        guest_assert!(__cpuid(1).ecx & (1 << 27) != 0, "CPUID.1:ECX.OSXSAVE follows CR4");
        guest_assert_eq!(xgetbv(), 1);
        let d = __cpuid_count(0xD, 0);
        let offered = u64::from(d.edx) << 32 | u64::from(d.eax);
        guest_assert_eq!(offered & 3, 3);
        guest_assert_eq!(offered & !0xE7, 0);
        avx = leaf1 & (1 << 28) != 0;
        guest_assert_eq!(avx, offered & 4 != 0);
        guest_assert!(xsetbv(0, 0), "XCR0 without x87 is refused");
        guest_assert!(xsetbv(0, 1 << 9), "a component CPUID does not offer is refused");
        guest_assert!(xsetbv(1, 1), "XCR1 is not writable");
        if avx {
            guest_assert!(xsetbv(0, 5), "AVX without SSE is refused");
        }
        guest_assert_eq!(xgetbv(), 1);
        let xcr0 = if avx { 7 } else { 3 };
        guest_assert!(!xsetbv(0, xcr0), "a valid XCR0 is taken");
        guest_assert_eq!(xgetbv(), xcr0);
        let size = __cpuid_count(0xD, 0).ebx;
        guest_assert_eq!(size, if avx { 832 } else { 576 });
        guest_println!("XSAVE offered: components {offered:#x}, XCR0 {xcr0:#x}, area {size} bytes");
    }

    let p = PATTERN.0.as_ptr();
    let x = X87.as_ptr();
    // SAFETY: loads of our static patterns into the vector and x87 registers: this guest's
    // own state (its Rust code is soft-float and never touches them).
    unsafe {
        if avx {
            asm!(
                "vmovdqa ymm0, [{p}]", "vmovdqa ymm1, [{p} + 32]", "vmovdqa ymm2, [{p} + 64]",
                "vmovdqa ymm3, [{p} + 96]", "vmovdqa ymm4, [{p} + 128]", "vmovdqa ymm5, [{p} + 160]",
                "vmovdqa ymm6, [{p} + 192]", "vmovdqa ymm7, [{p} + 224]", "vmovdqa ymm8, [{p} + 256]",
                "vmovdqa ymm9, [{p} + 288]", "vmovdqa ymm10, [{p} + 320]", "vmovdqa ymm11, [{p} + 352]",
                "vmovdqa ymm12, [{p} + 384]", "vmovdqa ymm13, [{p} + 416]", "vmovdqa ymm14, [{p} + 448]",
                "vmovdqa ymm15, [{p} + 480]",
                p = in(reg) p, options(nostack, readonly),
            );
        } else {
            asm!(
                "movdqa xmm0, [{p}]", "movdqa xmm1, [{p} + 32]", "movdqa xmm2, [{p} + 64]",
                "movdqa xmm3, [{p} + 96]", "movdqa xmm4, [{p} + 128]", "movdqa xmm5, [{p} + 160]",
                "movdqa xmm6, [{p} + 192]", "movdqa xmm7, [{p} + 224]", "movdqa xmm8, [{p} + 256]",
                "movdqa xmm9, [{p} + 288]", "movdqa xmm10, [{p} + 320]", "movdqa xmm11, [{p} + 352]",
                "movdqa xmm12, [{p} + 384]", "movdqa xmm13, [{p} + 416]", "movdqa xmm14, [{p} + 448]",
                "movdqa xmm15, [{p} + 480]",
                p = in(reg) p, options(nostack, readonly),
            );
        }
        asm!(
            "fninit",
            "fld qword ptr [{x}]", "fld qword ptr [{x} + 8]", "fld qword ptr [{x} + 16]",
            "fld qword ptr [{x} + 24]", "fld qword ptr [{x} + 32]", "fld qword ptr [{x} + 40]",
            "fld qword ptr [{x} + 48]", "fld qword ptr [{x} + 56]",
            x = in(reg) x, options(nostack, readonly),
        );
    }

    for round in 0..ROUNDS {
        exits(amd);
        if round % 100 == 0 {
            raise_interrupt(VECTOR);
            // SAFETY: STI; HLT: the raised interrupt wakes us; interrupts go off again after.
            unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
        }
    }
    guest_assert_eq!(idt::count(VECTOR), ROUNDS / 100);

    let mut got = Vectors([0; 64]);
    let mut x87 = [0u64; 8];
    let g = got.0.as_mut_ptr();
    let y = x87.as_mut_ptr();
    // SAFETY: stores of the registers into our own buffers, then pops of the x87 stack.
    unsafe {
        if avx {
            asm!(
                "vmovdqa [{g}], ymm0", "vmovdqa [{g} + 32], ymm1", "vmovdqa [{g} + 64], ymm2",
                "vmovdqa [{g} + 96], ymm3", "vmovdqa [{g} + 128], ymm4", "vmovdqa [{g} + 160], ymm5",
                "vmovdqa [{g} + 192], ymm6", "vmovdqa [{g} + 224], ymm7", "vmovdqa [{g} + 256], ymm8",
                "vmovdqa [{g} + 288], ymm9", "vmovdqa [{g} + 320], ymm10", "vmovdqa [{g} + 352], ymm11",
                "vmovdqa [{g} + 384], ymm12", "vmovdqa [{g} + 416], ymm13", "vmovdqa [{g} + 448], ymm14",
                "vmovdqa [{g} + 480], ymm15",
                g = in(reg) g, options(nostack),
            );
        } else {
            asm!(
                "movdqa [{g}], xmm0", "movdqa [{g} + 32], xmm1", "movdqa [{g} + 64], xmm2",
                "movdqa [{g} + 96], xmm3", "movdqa [{g} + 128], xmm4", "movdqa [{g} + 160], xmm5",
                "movdqa [{g} + 192], xmm6", "movdqa [{g} + 224], xmm7", "movdqa [{g} + 256], xmm8",
                "movdqa [{g} + 288], xmm9", "movdqa [{g} + 320], xmm10", "movdqa [{g} + 352], xmm11",
                "movdqa [{g} + 384], xmm12", "movdqa [{g} + 416], xmm13", "movdqa [{g} + 448], xmm14",
                "movdqa [{g} + 480], xmm15",
                g = in(reg) g, options(nostack),
            );
        }
        asm!(
            "fstp qword ptr [{y} + 56]", "fstp qword ptr [{y} + 48]", "fstp qword ptr [{y} + 40]",
            "fstp qword ptr [{y} + 32]", "fstp qword ptr [{y} + 24]", "fstp qword ptr [{y} + 16]",
            "fstp qword ptr [{y} + 8]", "fstp qword ptr [{y}]",
            y = in(reg) y, options(nostack),
        );
    }
    let quads = if avx { 4 } else { 2 };
    for reg in 0..16 {
        for q in 0..quads {
            let i = reg * 4 + q;
            guest_assert_eq!(got.0[i], PATTERN.0[i]);
        }
    }
    for i in 0..8 {
        guest_assert_eq!(x87[i], X87[i]);
    }
    let kind = if avx { "YMM0-15" } else { "XMM0-15" };
    guest_println!("x87 and {kind} intact after {ROUNDS} rounds of exits and {} interrupts", ROUNDS / 100);
}
