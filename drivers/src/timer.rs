//! Time on the host: the TSC, calibrated once against the 8254 PIT (channel 2, gated through
//! port 0x61), and busy-wait delays built on it.

use basalt_arch::io::{inb, outb, rdtsc};
use core::sync::atomic::{AtomicU64, Ordering};

/// The PIT's input clock (Hz).
pub const PIT_HZ: u64 = 1_193_182;

static TSC_KHZ: AtomicU64 = AtomicU64::new(0);

/// Measure the TSC frequency over `ms` milliseconds of PIT channel 2; returns kHz.
pub fn calibrate_tsc(ms: u64) -> u64 {
    let ticks = (PIT_HZ * ms / 1000) as u16;
    // Gate channel 2 off, speaker off.
    let gate = inb(0x61) & !0x03;
    outb(0x61, gate);
    // Channel 2, lobyte/hibyte, mode 0 (interrupt on terminal count), binary.
    outb(0x43, 0b1011_0000);
    outb(0x42, ticks as u8);
    outb(0x42, (ticks >> 8) as u8);
    // Start counting: raise the gate.
    outb(0x61, gate | 0x01);
    let start = rdtsc();
    // OUT2 (port 0x61 bit 5) goes high at terminal count.
    while inb(0x61) & 0x20 == 0 {
        core::hint::spin_loop();
    }
    let end = rdtsc();
    outb(0x61, gate);
    let khz = (end - start) / ms.max(1);
    TSC_KHZ.store(khz.max(1), Ordering::Relaxed);
    khz
}

/// The calibrated TSC frequency in kHz (0 before calibration).
pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed)
}

/// Busy-wait at least `us` microseconds.
pub fn delay_us(us: u64) {
    let khz = tsc_khz().max(1_000);
    let end = rdtsc() + us * khz / 1000;
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}
