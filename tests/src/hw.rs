//! Raw hardware access for the PC-platform guests: port I/O, MMIO, MSRs, CPUID, the TSC and the
//! interrupt flag. Each is one instruction the guest owns the machine for; the wrappers exist so
//! the guests have one audited `unsafe` each instead of many.

use core::arch::asm;

pub fn outb(port: u16, v: u8) {
    // SAFETY: an OUT to a port of the virtual PC this guest owns; it touches no guest memory.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags)) };
}

pub fn outw(port: u16, v: u16) {
    // SAFETY: as `outb`.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack, preserves_flags)) };
}

pub fn outl(port: u16, v: u32) {
    // SAFETY: as `outb`.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags)) };
}

pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: an IN from a port of the virtual PC; no guest memory.
    unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags)) };
    v
}

pub fn inw(port: u16) -> u16 {
    let v: u16;
    // SAFETY: as `inb`.
    unsafe { asm!("in ax, dx", in("dx") port, out("ax") v, options(nomem, nostack, preserves_flags)) };
    v
}

pub fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as `inb`.
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack, preserves_flags)) };
    v
}

/// A 32-bit MMIO read at physical (identity-mapped) `addr`. Addresses above 1 GiB need
/// [`crate::paging::map_low_4g`] first.
pub fn mmio_read32(addr: u64) -> u32 {
    // SAFETY: a device register or firmware table in the identity map; a volatile aligned read.
    unsafe { (addr as *const u32).read_volatile() }
}

pub fn mmio_write32(addr: u64, v: u32) {
    // SAFETY: a device register in the identity map; a volatile aligned write.
    unsafe { (addr as *mut u32).write_volatile(v) };
}

pub fn mmio_read8(addr: u64) -> u8 {
    // SAFETY: as `mmio_read32`.
    unsafe { (addr as *const u8).read_volatile() }
}

pub fn mmio_read16(addr: u64) -> u16 {
    // SAFETY: as `mmio_read32`.
    unsafe { (addr as *const u16).read_volatile() }
}

pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDMSR of an MSR the caller checked exists (CPUID); no memory.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    u64::from(hi) << 32 | u64::from(lo)
}

pub fn wrmsr(msr: u32, v: u64) {
    // SAFETY: WRMSR of an MSR the caller checked exists; the asm has no `nomem`, so it is ordered
    // with memory accesses around it (x2APIC EOI and ICR writes).
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nostack, preserves_flags))
    };
}

pub fn cpuid(leaf: u32, subleaf: u32) -> core::arch::x86_64::CpuidResult {
    core::arch::x86_64::__cpuid_count(leaf, subleaf)
}

/// The highest basic CPUID leaf.
pub fn cpuid_max() -> u32 {
    cpuid(0, 0).eax
}

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Enables interrupts.
pub fn sti() {
    // SAFETY: the guest has an IDT ([`crate::idt::install`]) before it enables interrupts.
    unsafe { asm!("sti", options(nomem, nostack)) };
}

/// Disables interrupts.
pub fn cli() {
    // SAFETY: CLI only clears RFLAGS.IF.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

/// `STI; HLT` (the HLT in the STI shadow, so an interrupt already pending wakes it rather than
/// arriving before it), then `CLI`: returns once one interrupt woke the HLT.
pub fn sti_hlt_cli() {
    // SAFETY: as `sti`; the handlers return to the instruction after the HLT. No `nomem`: the
    // handlers write memory the caller reads afterwards.
    unsafe { asm!("sti", "hlt", "cli", options(nostack)) };
}

/// Spins for `ticks` TSC ticks.
pub fn spin_ticks(ticks: u64) {
    let start = rdtsc();
    while rdtsc().wrapping_sub(start) < ticks {
        core::hint::spin_loop();
    }
}

/// Spins until `done()` or `ticks` TSC ticks passed; returns whether `done()` held.
pub fn spin_until(ticks: u64, mut done: impl FnMut() -> bool) -> bool {
    let start = rdtsc();
    loop {
        if done() {
            return true;
        }
        if rdtsc().wrapping_sub(start) >= ticks {
            return done();
        }
        core::hint::spin_loop();
    }
}

/// Like [`spin_until`] with interrupts enabled during the wait (disabled again on return).
pub fn spin_until_sti(ticks: u64, done: impl FnMut() -> bool) -> bool {
    sti();
    let r = spin_until(ticks, done);
    cli();
    r
}
