//! The ACPI power-management timer: a free-running 3.579545 MHz counter the guest reads at the
//! FADT's PM_TMR_BLK (a 4-byte port block). The counter is computed from the guest TSC
//! (counting from TSC 0), so nothing runs between reads.
//!
//! The timer is advertised as 24 bits wide: the FADT builder must leave TMR_VAL_EXT (flags bit
//! 8) clear, see [`PM_TIMER_EXTENDED`]. The overflow status (TMR_STS, which would set when bit
//! 23 toggles) belongs to the PM1 event block of `power`; [`PmTimer::next_msb_toggle`] tells
//! it when.

use crate::bus::{Ctx, Effect, PortDevice};
use crate::time::Timebase;

/// The PM timer's clock.
pub const PM_TIMER_HZ: u64 = 3_579_545;
/// The counter width advertised and implemented.
pub const PM_TIMER_BITS: u32 = 24;
/// The FADT's TMR_VAL_EXT flag: false, the counter is 24 bits.
pub const PM_TIMER_EXTENDED: bool = PM_TIMER_BITS == 32;
/// The length of PM_TMR_BLK (FADT PM_TMR_LEN).
pub const PM_TIMER_LEN: u16 = 4;
/// A port for it, where the VM core has no other plan (QEMU's ICH9 PMBASE 0x600 + 8).
pub const PM_TIMER_DEFAULT_PORT: u16 = 0x608;

const MASK: u64 = (1 << PM_TIMER_BITS) - 1;

/// The ACPI PM timer, a read-only [`PortDevice`] of [`PM_TIMER_LEN`] ports at whatever port
/// the VM core registers it (and names in the FADT).
#[derive(Debug, Clone)]
pub struct PmTimer {
    tb: Timebase,
}

impl PmTimer {
    pub fn new(tb: Timebase) -> Self {
        PmTimer { tb }
    }

    /// The counter at guest TSC `now`.
    pub fn value(&self, now: u64) -> u32 {
        (self.tb.periods_in(now, PM_TIMER_HZ) & MASK) as u32
    }

    /// The first guest TSC after `now` at which the counter's top bit changes (where TMR_STS
    /// sets).
    pub fn next_msb_toggle(&self, now: u64) -> u64 {
        let half = 1u64 << (PM_TIMER_BITS - 1);
        let t = self.tb.periods_in(now, PM_TIMER_HZ);
        let next = (t / half + 1).saturating_mul(half);
        let tsc = (next as u128 * self.tb.tsc_hz() as u128).div_ceil(PM_TIMER_HZ as u128);
        tsc.min(u64::MAX as u128) as u64
    }
}

impl PortDevice for PmTimer {
    fn read(&mut self, ctx: &mut Ctx<'_>, offset: u16, data: &mut [u8]) {
        let v = self.value(ctx.now).to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = v.get(offset as usize + i).copied().unwrap_or(0xFF);
        }
    }

    fn write(&mut self, _ctx: &mut Ctx<'_>, _offset: u16, _data: &[u8]) -> Effect {
        Effect::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::RecordingSink;

    fn read(t: &mut PmTimer, now: u64, offset: u16, len: usize) -> u32 {
        let mut sink = RecordingSink::default();
        let mut ctx = Ctx { now, vcpu: 0, irq: &mut sink };
        let mut b = [0u8; 4];
        t.read(&mut ctx, offset, &mut b[..len]);
        u32::from_le_bytes(b)
    }

    #[test]
    fn counts_at_3_579545_mhz_and_wraps_at_24_bits() {
        let hz = 2_400_000_000;
        let mut t = PmTimer::new(Timebase::new(hz));
        assert_eq!(read(&mut t, 0, 0, 4), 0);
        assert_eq!(read(&mut t, hz, 0, 4), PM_TIMER_HZ as u32);
        assert_eq!(read(&mut t, hz / 1000, 0, 4), 3579);
        // 2^24 / 3.579545 MHz = 4.6869 s.
        let wrap = t.next_msb_toggle(t.next_msb_toggle(0));
        assert_eq!(read(&mut t, wrap, 0, 4), 0);
        assert_eq!(read(&mut t, wrap - 1, 0, 4), 0xFF_FFFF);
        assert!((wrap as f64 / hz as f64 - 4.6869).abs() < 0.001);
        let half = t.next_msb_toggle(0);
        assert_eq!(read(&mut t, half, 0, 4), 0x80_0000);
        const { assert!(!PM_TIMER_EXTENDED) };
        // Narrow reads give the bytes of the counter; past the block, all ones.
        let now = hz * 3 + 12345;
        let v = read(&mut t, now, 0, 4);
        assert_eq!(read(&mut t, now, 0, 2), v & 0xFFFF);
        assert_eq!(read(&mut t, now, 2, 1), (v >> 16) & 0xFF);
        assert_eq!(read(&mut t, now, 3, 1), 0);
        assert_eq!(read(&mut t, now, 3, 2), 0xFF00);
        let mut sink = RecordingSink::default();
        let mut ctx = Ctx { now, vcpu: 0, irq: &mut sink };
        assert_eq!(t.write(&mut ctx, 0, &[1, 2, 3, 4]), Effect::None);
        assert_eq!(read(&mut t, now, 0, 4), v, "writes are ignored");
    }

    #[test]
    fn next_msb_toggle_is_in_the_future() {
        let t = PmTimer::new(Timebase::new(1_000_000_007));
        let mut now = 0;
        for _ in 0..10 {
            let n = t.next_msb_toggle(now);
            assert!(n > now);
            assert_ne!(t.value(n) >> 23, t.value(n - 1) >> 23);
            now = n;
        }
        assert_eq!(t.next_msb_toggle(u64::MAX), u64::MAX);
    }
}
