//! The 8254 PIT: channel 0 as a periodic interrupt source (IRQ0) and channel 2 gated through
//! port 0x61 as a one-shot stopwatch for TSC calibration, the way Linux's `pit_calibrate_tsc`
//! uses it.

use crate::hw::{inb, outb, rdtsc};

/// The PIT's input clock.
pub const PIT_HZ: u64 = 1_193_182;
pub const CHANNEL0: u16 = 0x40;
pub const CHANNEL2: u16 = 0x42;
pub const COMMAND: u16 = 0x43;
/// NMI status and control: bit 0 gates channel 2, bit 1 drives the speaker, bit 5 reads OUT2.
pub const PORT_61: u16 = 0x61;

/// Channel 0, mode 2 (rate generator), binary, reload `count` (0 means 65536): IRQ0 every
/// `count` PIT clocks.
pub fn start_periodic(count: u16) {
    outb(COMMAND, 0x34);
    outb(CHANNEL0, count as u8);
    outb(CHANNEL0, (count >> 8) as u8);
}

/// Channel 0 in mode 0 with the longest count: it stops producing periodic interrupts (one last
/// edge comes after 55 ms; mask the line first).
pub fn stop_channel0() {
    outb(COMMAND, 0x30);
    outb(CHANNEL0, 0);
    outb(CHANNEL0, 0);
}

/// The PIT count for `hz` interrupts a second.
pub const fn count_for_hz(hz: u64) -> u16 {
    ((PIT_HZ + hz / 2) / hz) as u16
}

/// One channel 2 calibration run.
#[derive(Clone, Copy, Debug)]
pub struct Calibration {
    /// The PIT count the run waited for.
    pub latch: u16,
    /// TSC ticks from loading the count to seeing OUT2 high.
    pub tsc_delta: u64,
    /// Polls of port 0x61 in the loop.
    pub loops: u64,
    /// The shortest and the longest poll, in TSC ticks.
    pub min_poll: u64,
    pub max_poll: u64,
}

impl Calibration {
    /// The TSC rate this run measured.
    pub fn tsc_hz(&self) -> u64 {
        (u128::from(self.tsc_delta) * u128::from(PIT_HZ) / u128::from(self.latch)) as u64
    }
}

/// Linux's `pit_calibrate_tsc`: gate channel 2 on (speaker off), mode 0 with the count of `ms`
/// milliseconds, then poll port 0x61 until OUT2 (bit 5) goes high, reading the TSC around each
/// poll; the end is the middle of the last low and the first high sample.
pub fn calibrate(ms: u64) -> Calibration {
    let latch = (PIT_HZ * ms / 1000) as u16;
    outb(PORT_61, (inb(PORT_61) & !0x02) | 0x01);
    outb(COMMAND, 0xB0); // channel 2, lobyte/hibyte, mode 0, binary
    outb(CHANNEL2, latch as u8);
    // The count starts with this write: under a hypervisor, somewhere inside its exit, so the
    // start is taken as the middle of the RDTSCs around it (and each poll's sample likewise).
    let before = rdtsc();
    outb(CHANNEL2, (latch >> 8) as u8);
    let t1 = mid(before, rdtsc());
    let (mut t, mut loops, mut min_poll, mut max_poll) = (t1, 0u64, u64::MAX, 0u64);
    let end = loop {
        let before = rdtsc();
        let high = inb(PORT_61) & 0x20 != 0;
        let sample = mid(before, rdtsc());
        let delta = sample.wrapping_sub(t);
        min_poll = min_poll.min(delta);
        max_poll = max_poll.max(delta);
        if high {
            // OUT2 rose between the last two samples.
            break mid(t, sample);
        }
        t = sample;
        loops += 1;
    };
    Calibration { latch, tsc_delta: end.wrapping_sub(t1), loops, min_poll, max_poll }
}

fn mid(a: u64, b: u64) -> u64 {
    a + b.wrapping_sub(a) / 2
}
