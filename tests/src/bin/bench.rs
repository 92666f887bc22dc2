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

/// The xAPIC's version register, read through Basalt's instruction emulation.
fn xapic_read() {
    let v = basalt_guests::apic::XAPIC_BASE + u64::from(basalt_guests::apic::VERSION);
    // SAFETY: a 32-bit load from the xAPIC page (mapped by `apic::enable`), emulated by Basalt.
    unsafe {
        asm!("mov {v:e}, dword ptr [{d}]", d = in(reg) v, v = out(reg) _, options(nostack, preserves_flags))
    };
}

const X2APIC_EOI: u32 = 0x80B;
const X2APIC_ICR: u32 = 0x830;
const TIMER_VECTOR: u8 = 0x41;
const IPI_VECTOR: u8 = 0x42;
/// How far ahead each TSC deadline is set (instructions, under -icount).
const DEADLINE_AHEAD: u64 = 5_000;

fn x2apic_eoi() {
    // SAFETY: an x2APIC EOI with nothing in service: the LAPIC ignores it.
    unsafe {
        asm!("wrmsr", in("ecx") X2APIC_EOI, in("eax") 0u32, in("edx") 0u32, options(nomem, nostack, preserves_flags))
    };
}

static FIRED_AT: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

fn on_interrupt(
    _: &basalt_guests::idt::Event,
    _: &mut basalt_guests::idt::Frame,
) -> basalt_guests::idt::Action {
    FIRED_AT.store(tsc(), core::sync::atomic::Ordering::SeqCst);
    x2apic_eoi();
    basalt_guests::idt::Action::Return
}

/// Waits with interrupts on until the handler has run; the TSC it ran at.
fn wait_fired() -> u64 {
    use core::sync::atomic::Ordering;
    // SAFETY: STI/CLI around a spin on a flag the interrupt handler sets.
    unsafe { asm!("sti", options(nomem, nostack)) };
    while FIRED_AT.load(Ordering::SeqCst) == 0 {
        core::hint::spin_loop();
    }
    // SAFETY: as above.
    unsafe { asm!("cli", options(nomem, nostack)) };
    FIRED_AT.swap(0, Ordering::SeqCst)
}

/// Latency rows: the sum over `ITERATIONS` of the TSC from the event to its handler.
fn timer_latency() -> u64 {
    use basalt_guests::hw::wrmsr;
    basalt_guests::apic::write(
        basalt_guests::apic::LVT_TIMER,
        u32::from(TIMER_VECTOR) | basalt_guests::apic::TIMER_TSC_DEADLINE,
    );
    let mut sum = 0;
    for i in 0..WARM_UP + ITERATIONS {
        let deadline = tsc() + DEADLINE_AHEAD;
        wrmsr(basalt_guests::apic::IA32_TSC_DEADLINE, deadline);
        let at = wait_fired();
        if i >= WARM_UP {
            sum += at.saturating_sub(deadline);
        }
    }
    sum
}

fn ipi_latency() -> u64 {
    let mut sum = 0;
    for i in 0..WARM_UP + ITERATIONS {
        let t0 = tsc();
        // SAFETY: a fixed self-IPI through the x2APIC ICR; its handler is installed.
        unsafe {
            asm!("sti", "wrmsr", in("ecx") X2APIC_ICR, in("eax") basalt_guests::apic::ICR_SELF | u32::from(IPI_VECTOR),
                 in("edx") 0u32, options(nomem, nostack))
        };
        let at = wait_fired();
        if i >= WARM_UP {
            sum += at - t0;
        }
    }
    sum
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
    ("xapic-read", || measure(xapic_read)),
    // From here the APIC is in x2APIC mode (see `run`).
    ("x2apic-eoi", || measure(x2apic_eoi)),
    ("timer-latency", timer_latency),
    ("ipi-latency", ipi_latency),
];

fn run() {
    basalt_guests::idt::install();
    basalt_guests::idt::set_handler(TIMER_VECTOR, on_interrupt);
    basalt_guests::idt::set_handler(IPI_VECTOR, on_interrupt);
    basalt_guests::apic::enable();
    for (name, row) in ROWS {
        if *name == "x2apic-eoi" {
            basalt_guests::apic::enable_x2apic();
        }
        let total = row();
        guest_println!("BENCH {name} total={total} iters={ITERATIONS}");
    }
}
