//! Time as device models see it: the guest TSC and its rate.

/// The rate of a VM's TSC, from which every model derives its own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timebase {
    /// Guest TSC ticks per second (never zero: [`Timebase::new`] makes it at least 1).
    tsc_hz: u64,
}

impl Timebase {
    pub fn new(tsc_hz: u64) -> Self {
        Timebase { tsc_hz: tsc_hz.max(1) }
    }

    pub fn tsc_hz(&self) -> u64 {
        self.tsc_hz
    }

    /// TSC ticks in `count` periods of a clock of `hz` (rounded down, saturating).
    pub fn ticks_for(&self, count: u64, hz: u64) -> u64 {
        let hz = hz.max(1) as u128;
        let t = count as u128 * self.tsc_hz as u128 / hz;
        t.min(u64::MAX as u128) as u64
    }

    /// Whole periods of a clock of `hz` that fit in `ticks` TSC ticks (rounded down).
    pub fn periods_in(&self, ticks: u64, hz: u64) -> u64 {
        let t = ticks as u128 * hz as u128 / self.tsc_hz as u128;
        t.min(u64::MAX as u128) as u64
    }

    /// TSC ticks in `ns` nanoseconds.
    pub fn ticks_for_ns(&self, ns: u64) -> u64 {
        self.ticks_for(ns, 1_000_000_000)
    }

    /// Nanoseconds in `ticks` TSC ticks.
    pub fn ns_in(&self, ticks: u64) -> u64 {
        self.periods_in(ticks, 1_000_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_down_and_never_overflow() {
        let tb = Timebase::new(2_000_000_000);
        assert_eq!(tb.ticks_for(1_193_182, 1_193_182), 2_000_000_000);
        assert_eq!(tb.periods_in(2_000_000_000, 1_193_182), 1_193_182);
        assert_eq!(tb.ticks_for_ns(1_000), 2_000);
        assert_eq!(tb.ns_in(3), 1);
        assert_eq!(tb.ticks_for(u64::MAX, 1), u64::MAX);
        assert_eq!(Timebase::new(0).tsc_hz(), 1);
        assert_eq!(tb.ticks_for(5, 0), 10_000_000_000);
    }
}
