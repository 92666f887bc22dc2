//! Time for the PC-platform guests: the TSC rate (from CPUID 0x15/0x16 as Basalt reports it, or
//! measured with the PIT where the CPU does not say, as in bare QEMU with an AMD model) and
//! conversions.

use crate::hw::{cpuid, cpuid_max, rdtsc};
use core::sync::atomic::{AtomicU64, Ordering};

static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// Where a TSC rate came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// CPUID 0x15: crystal (ECX) * EBX / EAX.
    Cpuid15,
    /// CPUID 0x16 EAX (MHz).
    Cpuid16,
    /// A PIT channel 2 calibration.
    Pit,
}

/// The TSC rate CPUID 0x15 gives (crystal clock * ratio), if it gives one.
pub fn cpuid_tsc_hz() -> Option<(u64, Source)> {
    if cpuid_max() < 0x15 {
        return None;
    }
    let l = cpuid(0x15, 0);
    if l.eax != 0 && l.ebx != 0 && l.ecx != 0 {
        return Some((u64::from(l.ecx) * u64::from(l.ebx) / u64::from(l.eax), Source::Cpuid15));
    }
    if cpuid_max() >= 0x16 && cpuid(0x16, 0).eax != 0 {
        return Some((u64::from(cpuid(0x16, 0).eax) * 1_000_000, Source::Cpuid16));
    }
    None
}

/// The core crystal clock (CPUID 0x15 ECX), the rate of the local APIC timer where it is given.
pub fn crystal_hz() -> Option<u64> {
    (cpuid_max() >= 0x15 && cpuid(0x15, 0).ecx != 0).then(|| u64::from(cpuid(0x15, 0).ecx))
}

/// The TSC rate and its source: CPUID where it says, else the best of three 10 ms PIT runs.
pub fn tsc_hz_source() -> (u64, Source) {
    if let Some(r) = cpuid_tsc_hz() {
        return r;
    }
    (pit_tsc_hz(), Source::Pit)
}

/// The TSC rate measured with PIT channel 2: the run with the shortest longest poll of three.
pub fn pit_tsc_hz() -> u64 {
    let mut best = crate::pit::calibrate(10);
    for _ in 0..2 {
        let c = crate::pit::calibrate(10);
        if c.max_poll < best.max_poll {
            best = c;
        }
    }
    best.tsc_hz()
}

/// The TSC rate (cached).
pub fn tsc_hz() -> u64 {
    let hz = TSC_HZ.load(Ordering::Relaxed);
    if hz != 0 {
        return hz;
    }
    let hz = tsc_hz_source().0;
    TSC_HZ.store(hz, Ordering::Relaxed);
    hz
}

/// TSC ticks in `us` microseconds.
pub fn us_to_tsc(us: u64) -> u64 {
    (u128::from(us) * u128::from(tsc_hz()) / 1_000_000) as u64
}

/// Microseconds in `ticks` TSC ticks.
pub fn tsc_to_us(ticks: u64) -> u64 {
    (u128::from(ticks) * 1_000_000 / u128::from(tsc_hz())) as u64
}

/// Spins for `us` microseconds.
pub fn delay_us(us: u64) {
    crate::hw::spin_ticks(us_to_tsc(us));
}

/// The TSC now.
pub fn now() -> u64 {
    rdtsc()
}
