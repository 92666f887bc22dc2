//! The micro-benchmarks of `cargo xtask bench`: for each row, the TSC around `ITERATIONS` round
//! trips of one exiting instruction, after a warm-up. Under QEMU `-icount shift=0` the TSC
//! counts executed instructions (guest and Basalt), so the numbers repeat exactly; under Bochs
//! with `clock: sync=none` too.
//!
//! Each row is reported as one Print line, `BENCH <row> total=<tsc ticks> iters=<n>`, and the
//! row `empty` is the same loop around no instruction at all: xtask subtracts it. To add a row,
//! add one line to `ROWS` (and the row's description to xtask's `bench::ROWS`).
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::{guest_println, SCRATCH_MSR, SCRATCH_PORT};
use core::arch::asm;
use core::arch::x86_64::__cpuid;

basalt_guests::entry!(run);

/// Round trips measured per row.
const ITERATIONS: u64 = 1000;
/// Round trips run before measuring (first-time paths: TCG translation, TLB, lazy state).
const WARM_UP: u64 = 50;

/// The TSC, after every earlier instruction has completed (LFENCE before RDTSC, SDM Vol. 2B).
#[inline(always)]
fn tsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: LFENCE and RDTSC only read the time-stamp counter.
    unsafe { asm!("lfence", "rdtsc", "lfence", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// TSC ticks for `ITERATIONS` calls of `op`, after `WARM_UP` calls. `op` is inlined into the
/// loop, so every row (and the empty one) has the same loop around it.
#[inline(always)]
fn measure(mut op: impl FnMut()) -> u64 {
    for _ in 0..WARM_UP {
        op();
    }
    let start = tsc();
    for _ in 0..ITERATIONS {
        op();
    }
    tsc() - start
}

fn empty() {
    // SAFETY: an empty asm statement: only keeps the loop from being optimised away.
    unsafe { asm!("", options(nomem, nostack, preserves_flags)) };
}

fn cpuid() {
    // SAFETY: CPUID leaf 0 has no side effects (it exits to Basalt, which answers it). RBX is
    // LLVM's, so it is saved in another register around the CPUID.
    unsafe {
        asm!("mov {rbx}, rbx", "cpuid", "mov rbx, {rbx}", rbx = out(reg) _, inout("eax") 0u32 => _,
             inout("ecx") 0u32 => _, out("edx") _, options(nomem, nostack, preserves_flags))
    };
}

fn vmcall() {
    // SAFETY: VMCALL with RAX = 0 (HC_VERSION) exits to Basalt, which writes RAX.
    unsafe { asm!("vmcall", inout("rax") 0u64 => _, options(nomem, nostack, preserves_flags)) };
}

fn vmmcall() {
    // SAFETY: as in `vmcall`, the AMD instruction.
    unsafe { asm!("vmmcall", inout("rax") 0u64 => _, options(nomem, nostack, preserves_flags)) };
}

fn pio_out() {
    // SAFETY: a 32-bit OUT to Basalt's scratch port; no memory is touched.
    unsafe {
        asm!("out dx, eax", in("dx") SCRATCH_PORT, in("eax") 0x1234_5678u32,
             options(nomem, nostack, preserves_flags))
    };
}

fn pio_in() {
    // SAFETY: a 32-bit IN from Basalt's scratch port.
    unsafe {
        asm!("in eax, dx", in("dx") SCRATCH_PORT, out("eax") _, options(nomem, nostack, preserves_flags))
    };
}

fn msr_read() {
    // SAFETY: RDMSR of Basalt's scratch MSR, which it emulates.
    unsafe {
        asm!("rdmsr", in("ecx") SCRATCH_MSR, out("eax") _, out("edx") _, options(nomem, nostack, preserves_flags))
    };
}

fn msr_write() {
    // SAFETY: WRMSR of Basalt's scratch MSR, which only Basalt's emulation sees.
    unsafe {
        asm!("wrmsr", in("ecx") SCRATCH_MSR, in("eax") 1u32, in("edx") 0u32,
             options(nomem, nostack, preserves_flags))
    };
}

/// The MMIO test device (module argument `testdev`).
const DEV: u64 = 0x3F00_0000;

fn mmio_write() {
    // SAFETY: a 32-bit store to the test device's scratch, emulated by Basalt.
    unsafe {
        asm!("mov dword ptr [{d}], {v:e}", d = in(reg) DEV, v = in(reg) 7u32, options(nostack, preserves_flags))
    };
}

fn mmio_read() {
    // SAFETY: a 32-bit load from the test device's scratch, emulated by Basalt.
    unsafe {
        asm!("mov {v:e}, dword ptr [{d}]", d = in(reg) DEV, v = out(reg) _, options(nostack, preserves_flags))
    };
}

fn irq() {
    basalt_guests::ucall::raise_interrupt(0x40);
    // SAFETY: STI; NOP; CLI: the raised interrupt arrives after the NOP, through our IDT.
    unsafe { asm!("sti", "nop", "cli", options(nomem, nostack)) };
}

/// Whether this CPU is an Intel one (CPUID vendor): VMCALL there, VMMCALL on AMD.
fn intel() -> bool {
    let r = __cpuid(0);
    (r.ebx, r.edx, r.ecx)
        == (u32::from_le_bytes(*b"Genu"), u32::from_le_bytes(*b"ineI"), u32::from_le_bytes(*b"ntel"))
}

/// One benchmark row: its name in the `BENCH` line, and the ticks it took.
type Row = (&'static str, fn() -> u64);

/// The rows, in table order. `empty` first: the loop itself, subtracted from the others.
const ROWS: &[Row] = &[
    ("empty", || measure(empty)),
    ("cpuid", || measure(cpuid)),
    ("hypercall", || if intel() { measure(vmcall) } else { measure(vmmcall) }),
    ("pio-out", || measure(pio_out)),
    ("pio-in", || measure(pio_in)),
    ("msr-read", || measure(msr_read)),
    ("msr-write", || measure(msr_write)),
    ("mmio-write", || measure(mmio_write)),
    ("mmio-read", || measure(mmio_read)),
    ("irq", || measure(irq)),
];

fn run() {
    basalt_guests::idt::install();
    for (name, row) in ROWS {
        let total = row();
        guest_println!("BENCH {name} total={total} iters={ITERATIONS}");
    }
}
