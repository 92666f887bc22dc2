//! Bounded deterministic fuzzing of the PIT (with port 0x61), the RTC and the PM timer: random
//! port accesses of random widths and values at a monotonic `now`, interleaved with
//! `advance` at or past the deadline. Nothing may panic, and after every step:
//! - a deadline is never at or before the `now` the model was last brought to;
//! - the RTC's clock fields are valid for the mode (BCD digits, ranges) whenever SET is clear,
//!   and IRQ8 is high exactly when register C says IRQF;
//! - the PM timer never goes back (modulo its 24-bit wrap) and stays within 24 bits.

use std::time::Instant;

use basalt_devices::bus::{Ctx, PortDevice, Timed};
use basalt_devices::irq::{IrqLine, RecordingSink};
use basalt_devices::pit::Pit;
use basalt_devices::pmtimer::PmTimer;
use basalt_devices::rtc::Rtc;
use basalt_devices::time::Timebase;
use basalt_emu::fuzz::XorShift;

/// About 0.2 s per model in a debug build.
const STEPS: u64 = 240_000;

fn width(rng: &mut XorShift) -> usize {
    [1, 1, 1, 2, 4][rng.below(5) as usize]
}

/// A step of time: mostly short, sometimes long, rarely huge.
fn step(rng: &mut XorShift, hz: u64) -> u64 {
    match rng.below(10) {
        0..=5 => rng.below(hz / 100_000 + 1),
        6..=8 => rng.below(hz / 100 + 1),
        _ => rng.below(hz * 100),
    }
}

fn value(rng: &mut XorShift) -> u8 {
    // Bias toward the control words and values OSes use.
    match rng.below(4) {
        0 => [0x34, 0x36, 0x30, 0xB0, 0xB6, 0xC2, 0xE2, 0xDE, 0x00, 0x80, 0xFF, 0x26, 0x02]
            [rng.below(13) as usize],
        _ => rng.next_u64() as u8,
    }
}

#[test]
fn fuzz_pit() {
    let start = Instant::now();
    let mut rng = XorShift::new(0x0123_8254_0000_0001);
    let mut pulses = 0;
    for round in 0..8 {
        let hz = [1_000_000_000, 2_893_123_457, 3_000_000, 1_193_182][round % 4];
        let mut pit = Pit::new(Timebase::new(hz), IrqLine::new(2));
        let mut sink = RecordingSink::default();
        let mut now = rng.below(hz * 10);
        for _ in 0..STEPS / 8 {
            now = now.saturating_add(step(&mut rng, hz));
            let mut ctx = Ctx { now, vcpu: 0, irq: &mut sink };
            match rng.below(8) {
                0 => pit.port61_write(&mut ctx, value(&mut rng)),
                1 => {
                    let v = pit.port61_read(&mut ctx);
                    assert_eq!(v & 0xC0, 0);
                }
                2 | 3 => {
                    let mut b = vec![0; width(&mut rng)];
                    pit.read(&mut ctx, rng.below(4) as u16, &mut b);
                }
                4 => {
                    if let Some(d) = pit.deadline() {
                        now = now.max(d).saturating_add(rng.below(3) * rng.below(hz / 1000 + 1));
                        ctx.now = now;
                    }
                    pit.advance(&mut ctx);
                }
                _ => {
                    let b: Vec<u8> = (0..width(&mut rng)).map(|_| value(&mut rng)).collect();
                    pit.write(&mut ctx, rng.below(4) as u16, &b);
                }
            }
            if let Some(d) = pit.deadline() {
                assert!(d > now, "deadline {d} not after now {now}");
            }
            pulses += sink.rises(2);
            sink.events.clear();
        }
    }
    eprintln!("fuzz_pit: {STEPS} steps, {pulses} IRQ0 pulses, in {:?}", start.elapsed());
    assert!(pulses > 100);
}

/// Checks the clock fields; false when SET is set (they are RAM then).
fn check_rtc(rtc: &mut Rtc, sink: &mut RecordingSink, now: u64) -> bool {
    let mut ctx = Ctx { now, vcpu: 0, irq: sink };
    let rd = |rtc: &mut Rtc, ctx: &mut Ctx<'_>, reg: u8| {
        rtc.write(ctx, 0, &[reg]);
        let mut b = [0];
        rtc.read(ctx, 1, &mut b);
        b[0]
    };
    let b = rd(rtc, &mut ctx, 0x0B);
    if b & 0x80 != 0 {
        return false;
    }
    let f = [0u8, 2, 4, 6, 7, 8, 9, 0x32].map(|r| rd(rtc, &mut ctx, r));
    let binary = b & 0x04 != 0;
    let dec = |v: u8| {
        if binary {
            v as u32
        } else {
            assert!(v >> 4 <= 9 && v & 0xF <= 9, "bad BCD {v:#x} in {f:x?}");
            (v >> 4) as u32 * 10 + (v & 0xF) as u32
        }
    };
    assert!(dec(f[0]) <= 59 && dec(f[1]) <= 59, "{f:x?}");
    if b & 0x02 != 0 {
        assert!(dec(f[2]) <= 23, "{f:x?}");
    } else {
        assert!((1..=12).contains(&dec(f[2] & 0x7F)), "{f:x?}");
    }
    assert!((1..=7).contains(&dec(f[3])) && (1..=31).contains(&dec(f[4])), "{f:x?}");
    assert!((1..=12).contains(&dec(f[5])) && dec(f[6]) <= 99 && dec(f[7]) <= 99, "{f:x?}");
    true
}

#[test]
fn fuzz_rtc() {
    let start = Instant::now();
    let mut rng = XorShift::new(0x0123_1468_1800_0002);
    let (mut checked, mut irqs) = (0u64, 0u64);
    for round in 0..8 {
        let hz = [1_000_000_000, 2_893_123_457, 3_000_000, 32_768][round % 4];
        let unix = [0, 1_700_000_000, 4_102_444_799, 253_402_300_000][round % 4];
        let mut now = rng.below(hz * 10);
        let mut rtc = Rtc::new(Timebase::new(hz), IrqLine::new(8), unix, now);
        rtc.set_memory_size(rng.next_u64() >> rng.below(64), rng.next_u64() >> rng.below(64));
        let mut sink = RecordingSink::default();
        for _ in 0..STEPS / 8 {
            now = now.saturating_add(step(&mut rng, hz));
            let mut ctx = Ctx { now, vcpu: 0, irq: &mut sink };
            match rng.below(8) {
                0 | 1 => {
                    let mut b = vec![0; width(&mut rng)];
                    rtc.read(&mut ctx, rng.below(2) as u16, &mut b);
                }
                2 => {
                    if let Some(d) = rtc.deadline() {
                        now = now.max(d);
                        ctx.now = now;
                    }
                    rtc.advance(&mut ctx);
                }
                3 => {
                    // Index then data, the way OSes do it, into the registers mostly.
                    let reg = if rng.one_in(3) { rng.next_u64() as u8 } else { rng.below(14) as u8 };
                    rtc.write(&mut ctx, 0, &[reg, value(&mut rng)]);
                }
                _ => {
                    let b: Vec<u8> = (0..width(&mut rng)).map(|_| value(&mut rng)).collect();
                    rtc.write(&mut ctx, rng.below(2) as u16, &b);
                }
            }
            if let Some(d) = rtc.deadline() {
                assert!(d > now, "deadline {d} not after now {now}");
            }
            if rng.one_in(16) && check_rtc(&mut rtc, &mut sink, now) {
                checked += 1;
            }
            // IRQ8 follows IRQF: peek at C without clearing it is impossible, so check that a
            // high line is always explained by a read of C.
            if rng.one_in(32) {
                let high = sink.level(8).unwrap_or(false);
                let mut ctx = Ctx { now, vcpu: 0, irq: &mut sink };
                rtc.write(&mut ctx, 0, &[0x0C]);
                let mut c = [0];
                rtc.read(&mut ctx, 1, &mut c);
                assert_eq!(high, c[0] & 0x80 != 0, "IRQ8 {high} with C {:#x}", c[0]);
                irqs += high as u64;
                assert!(!sink.level(8).unwrap_or(false), "reading C lowers IRQ8");
                sink.events.clear();
            }
        }
    }
    eprintln!("fuzz_rtc: {STEPS} steps, {checked} clock checks, {irqs} IRQ8 seen, in {:?}", start.elapsed());
    assert!(checked > STEPS / 100 && irqs > 10);
}

#[test]
fn fuzz_pmtimer() {
    let mut rng = XorShift::new(0x0123_3579_5450_0003);
    for hz in [1_000_000_000u64, 2_893_123_457, 3_579_545, 1_000_000] {
        let mut t = PmTimer::new(Timebase::new(hz));
        let mut sink = RecordingSink::default();
        let mut now = 0u64;
        for _ in 0..STEPS / 4 {
            // Steps below the wrap period, so the counter's progress is unambiguous.
            now = now.saturating_add(rng.below(hz * 4));
            let mut ctx = Ctx { now, vcpu: 0, irq: &mut sink };
            if rng.one_in(4) {
                let b: Vec<u8> = (0..width(&mut rng)).map(|_| value(&mut rng)).collect();
                t.write(&mut ctx, rng.below(4) as u16, &b);
            }
            let mut b = [0u8; 4];
            t.read(&mut ctx, 0, &mut b);
            let v = u32::from_le_bytes(b);
            assert!(v < 1 << 24);
            let expect =
                (basalt_devices::time::Timebase::new(hz).periods_in(now, 3_579_545) & 0xFF_FFFF) as u32;
            assert_eq!(v, expect);
            let w = width(&mut rng);
            let off = rng.below(5 - w as u64) as u16;
            let mut part = vec![0u8; w];
            t.read(&mut ctx, off, &mut part);
            assert_eq!(part[..], b[off as usize..off as usize + w]);
            assert!(t.next_msb_toggle(now) > now || now == u64::MAX);
        }
    }
}
