//! The host local APIC, in xAPIC (MMIO) or x2APIC (MSR) mode (SDM Vol. 3A ch. 11).
//!
//! The mode is chosen once on the bootstrap CPU (x2APIC when CPUID offers it) and every other
//! CPU follows. Register offsets are the xAPIC MMIO offsets; x2APIC uses MSR 0x800 + offset/16.

use crate::io::{rdmsr, wrmsr};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const IA32_APIC_BASE: u32 = 0x1B;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;

/// Register offsets (xAPIC MMIO; SDM Table 11-1).
pub mod reg {
    pub const ID: u32 = 0x20;
    pub const VERSION: u32 = 0x30;
    pub const EOI: u32 = 0xB0;
    pub const SPURIOUS: u32 = 0xF0;
    pub const ICR_LOW: u32 = 0x300;
    pub const ICR_HIGH: u32 = 0x310;
    pub const LVT_TIMER: u32 = 0x320;
    pub const TIMER_INITIAL: u32 = 0x380;
    pub const TIMER_CURRENT: u32 = 0x390;
    pub const TIMER_DIVIDE: u32 = 0x3E0;
}

/// ICR delivery modes and flags (SDM Figure 11-12).
pub mod icr {
    pub const FIXED: u32 = 0 << 8;
    pub const NMI: u32 = 4 << 8;
    pub const INIT: u32 = 5 << 8;
    pub const STARTUP: u32 = 6 << 8;
    pub const DELIVERY_PENDING: u32 = 1 << 12;
    pub const ASSERT: u32 = 1 << 14;
    pub const LEVEL: u32 = 1 << 15;
    pub const ALL_EXCLUDING_SELF: u32 = 3 << 18;
}

static X2APIC: AtomicBool = AtomicBool::new(false);
static XAPIC_BASE: AtomicU64 = AtomicU64::new(0xFEE0_0000);

/// Whether the host APIC runs in x2APIC mode.
pub fn is_x2apic() -> bool {
    X2APIC.load(Ordering::Relaxed)
}

/// Physical base of the xAPIC MMIO page.
pub fn xapic_base() -> u64 {
    XAPIC_BASE.load(Ordering::Relaxed)
}

/// Enable this CPU's local APIC, in x2APIC mode when `x2apic` (decided by the BSP).
pub fn enable_this_cpu(x2apic: bool) {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU; setting EN (and EXTD, only when CPUID
    // reported x2APIC) is the architectural way to enable the APIC (SDM 11.4.3, 10.12.1).
    unsafe {
        let mut base = rdmsr(IA32_APIC_BASE);
        XAPIC_BASE.store(base & 0x000F_FFFF_FFFF_F000, Ordering::Relaxed);
        base |= APIC_BASE_ENABLE;
        if x2apic {
            base |= APIC_BASE_X2APIC;
        }
        wrmsr(IA32_APIC_BASE, base);
    }
    X2APIC.store(x2apic, Ordering::Relaxed);
    // Software-enable with the spurious vector; mask the timer until someone programs it.
    write(reg::SPURIOUS, 0x100 | crate::idt::SPURIOUS_VECTOR as u32);
    write(reg::LVT_TIMER, 1 << 16);
}

/// Read an APIC register.
pub fn read(offset: u32) -> u32 {
    if is_x2apic() {
        // SAFETY: x2APIC mode is on, so MSRs 0x800-0x8FF are the APIC's registers.
        unsafe { rdmsr(0x800 + (offset >> 4)) as u32 }
    } else {
        // SAFETY: the xAPIC page is identity-mapped uncached; offsets are from `reg`.
        unsafe { ((xapic_base() + offset as u64) as *const u32).read_volatile() }
    }
}

/// Write an APIC register.
pub fn write(offset: u32, value: u32) {
    if is_x2apic() {
        // SAFETY: as in `read`.
        unsafe { wrmsr(0x800 + (offset >> 4), value as u64) }
    } else {
        // SAFETY: as in `read`.
        unsafe { ((xapic_base() + offset as u64) as *mut u32).write_volatile(value) }
    }
}

/// This CPU's APIC ID.
pub fn id() -> u32 {
    if is_x2apic() {
        read(reg::ID)
    } else {
        read(reg::ID) >> 24
    }
}

/// Signal end of interrupt.
pub fn eoi() {
    write(reg::EOI, 0);
}

/// Send an IPI: `command` is the ICR low word (mode, vector, flags), `dest` an APIC ID.
pub fn send_ipi(dest: u32, command: u32) {
    if is_x2apic() {
        // SAFETY: x2APIC mode; the ICR is one 64-bit MSR (SDM 10.12.9).
        unsafe { wrmsr(0x830, ((dest as u64) << 32) | command as u64) }
    } else {
        write(reg::ICR_HIGH, dest << 24);
        write(reg::ICR_LOW, command);
        while read(reg::ICR_LOW) & icr::DELIVERY_PENDING != 0 {
            core::hint::spin_loop();
        }
    }
}

/// Send an NMI to every other CPU (used to stop the machine on a panic).
pub fn nmi_all_others() {
    send_ipi(0, icr::NMI | icr::ASSERT | icr::ALL_EXCLUDING_SELF);
}

/// LVT timer mode bits (SDM 10.5.4).
const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;
/// Divide configuration 0b1011: divide by 1.
const DIVIDE_BY_1: u32 = 0b1011;

/// Local APIC timer ticks per millisecond, measured against the TSC (`tsc_khz` ticks a ms).
pub fn timer_ticks_per_ms(tsc_khz: u64) -> u32 {
    write(reg::TIMER_DIVIDE, DIVIDE_BY_1);
    write(reg::LVT_TIMER, LVT_MASKED);
    write(reg::TIMER_INITIAL, u32::MAX);
    let start = crate::io::rdtsc();
    while crate::io::rdtsc().wrapping_sub(start) < tsc_khz {
        core::hint::spin_loop();
    }
    let left = read(reg::TIMER_CURRENT);
    write(reg::TIMER_INITIAL, 0);
    (u32::MAX - left).max(1)
}

/// Fire `vector` on this CPU every `ticks` timer ticks (divide by 1) until [`timer_stop`].
pub fn timer_periodic(vector: u8, ticks: u32) {
    write(reg::TIMER_DIVIDE, DIVIDE_BY_1);
    write(reg::LVT_TIMER, LVT_PERIODIC | vector as u32);
    write(reg::TIMER_INITIAL, ticks.max(1));
}

/// Fire `vector` on this CPU once, after `ticks` timer ticks (divide by 1).
pub fn timer_oneshot(vector: u8, ticks: u32) {
    write(reg::TIMER_DIVIDE, DIVIDE_BY_1);
    write(reg::LVT_TIMER, vector as u32);
    write(reg::TIMER_INITIAL, ticks.max(1));
}

/// Stop and mask this CPU's local APIC timer.
pub fn timer_stop() {
    write(reg::LVT_TIMER, LVT_MASKED);
    write(reg::TIMER_INITIAL, 0);
}
