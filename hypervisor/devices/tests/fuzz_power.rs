//! Bounded deterministic fuzzing of the power models: PM1 (status, enable, control), the
//! i8042, the reset registers and debug-exit, with random accesses of every width and offset.
//! Nothing panics; SCI_EN always reads 1 and SLP_EN 0; the SCI follows STS & EN; PowerOff comes
//! exactly from SLP_EN with the S5 type; the i8042 resets exactly on a reset pulse; debug-exit
//! returns the written value.

use basalt_devices::bus::{Ctx, Effect, PortDevice};
use basalt_devices::irq::{IrqLine, IrqSink};
use basalt_devices::power::*;
use basalt_emu::fuzz::XorShift;
use std::time::Instant;

const ITERATIONS: u64 = 200_000;

#[derive(Default)]
struct Levels([bool; 16]);
impl IrqSink for Levels {
    fn set_level(&mut self, gsi: u32, _source: u8, level: bool) {
        self.0[gsi as usize & 15] = level;
    }
}

fn random_bytes(rng: &mut XorShift, w: usize) -> Vec<u8> {
    (0..w).map(|_| rng.next_u64() as u8).collect()
}

#[test]
fn fuzz_pm1() {
    let start = Instant::now();
    let mut rng = XorShift::new(0x5_C0FF);
    let mut pm = Pm1::new(IrqLine::new(9));
    let mut levels = Levels::default();
    let mut poweroffs = 0;
    for _ in 0..ITERATIONS {
        let w = [1usize, 2, 4][rng.below(3) as usize];
        let off = rng.below(7) as u16;
        let mut ctx = Ctx { now: 0, vcpu: 0, irq: &mut levels };
        match rng.below(4) {
            0 => {
                let mut buf = vec![0u8; w];
                pm.read(&mut ctx, off, &mut buf);
            }
            1 => pm.set_status(&mut ctx, rng.next_u64() as u16),
            _ => {
                let mut data = random_bytes(&mut rng, w);
                if rng.one_in(4) && off as usize + w > 5 && off <= 5 {
                    // Aim at PM1_CNT's high byte with SLP_EN and a chosen SLP_TYP.
                    let typ = if rng.one_in(2) { SLP_TYP_S5 } else { rng.below(8) as u8 };
                    data[5 - off as usize] = (typ << 2) | 0x20 | (data[5 - off as usize] & 0xC0);
                }
                let hi = (5usize.checked_sub(off as usize)).filter(|i| *i < w).map(|i| data[i]);
                let expect = match hi {
                    Some(h) if h & 0x20 != 0 && (h >> 2) & 7 == SLP_TYP_S5 => Effect::PowerOff,
                    _ => Effect::None,
                };
                let got = pm.write(&mut ctx, off, &data);
                if hi.is_some() && got == Effect::None && expect == Effect::PowerOff {
                    panic!("missed S5");
                }
                // With only the low byte written SLP_TYP comes from before; check what we can.
                if hi.is_some() {
                    assert_eq!(got, expect, "write {data:x?} at {off}");
                }
                if got == Effect::PowerOff {
                    poweroffs += 1;
                }
            }
        }
        let mut cnt = [0u8; 2];
        let mut ctx = Ctx { now: 0, vcpu: 0, irq: &mut levels };
        pm.read(&mut ctx, 4, &mut cnt);
        let cnt = u16::from_le_bytes(cnt);
        assert_eq!(cnt & PM1_CNT_SCI_EN, PM1_CNT_SCI_EN);
        assert_eq!(cnt & PM1_CNT_SLP_EN, 0);
        assert_eq!(pm.sci_asserted(), pm.status() & pm.enable() != 0);
        assert_eq!(levels.0[9], pm.sci_asserted());
    }
    println!("fuzz_pm1: {ITERATIONS} accesses in {:?}, {poweroffs} power-offs", start.elapsed());
    assert!(poweroffs > 0);
}

#[test]
fn fuzz_i8042_and_resets() {
    let start = Instant::now();
    let mut rng = XorShift::new(0x8042);
    let (mut data, mut cmd) = I8042::new(IrqLine::new(1), IrqLine::new(12)).into_ports();
    let mut levels = Levels::default();
    let mut last_cmd = 0u8;
    let mut resets = 0;
    let mut rcr = ResetControl::new();
    let mut reg = ResetRegister::new(0x06);
    let mut dbg = DebugExit::new();
    for _ in 0..ITERATIONS {
        let mut ctx = Ctx { now: 0, vcpu: 0, irq: &mut levels };
        let v = rng.next_u64() as u8;
        match rng.below(8) {
            0 => {
                // Commands, avoiding most resets so the rest gets exercised.
                let c = if v >= 0xF0 && !rng.one_in(16) { v | 1 } else { v };
                let e = cmd.write(&mut ctx, 0, &[c]);
                assert_eq!(e == Effect::Reset, c >= 0xF0 && c & 1 == 0, "command {c:#x}");
                resets += (e == Effect::Reset) as u32;
                last_cmd = c;
            }
            1 => {
                let d = if last_cmd == 0xD1 && !rng.one_in(8) { v | 1 } else { v };
                let e = data.write(&mut ctx, 0, &[d]);
                assert_eq!(e == Effect::Reset, last_cmd == 0xD1 && d & 1 == 0);
                resets += (e == Effect::Reset) as u32;
                last_cmd = 0;
            }
            2 | 3 => {
                let mut b = [0u8; 1];
                let p = if rng.one_in(2) { &mut data } else { &mut cmd };
                p.read(&mut ctx, 0, &mut b);
            }
            4 => {
                // Odd widths and offsets are ignored or read all ones.
                let mut b = [0u8; 4];
                let w = 1 + rng.below(4) as usize;
                cmd.read(&mut ctx, 1 + rng.below(3) as u16, &mut b[..w]);
                assert!(b[..w].iter().all(|x| *x == 0xFF));
                assert_eq!(data.write(&mut ctx, 1, &[v]), Effect::None);
            }
            5 => {
                let e = rcr.write(v);
                assert_eq!(e == Effect::Reset, v & 4 != 0);
                assert_eq!(rcr.read() & !0x0A, 0);
            }
            6 => {
                let w = 1 + rng.below(2) as usize;
                let e = reg.write(&mut ctx, 0, &[v, v][..w]);
                assert_eq!(e == Effect::Reset, w == 1 && v == 6);
            }
            _ => {
                let w = [1usize, 2, 4][rng.below(3) as usize];
                let bytes = random_bytes(&mut rng, w);
                let mut le = [0u8; 4];
                le[..w].copy_from_slice(&bytes);
                assert_eq!(
                    dbg.write(&mut ctx, rng.below(4) as u16, &bytes),
                    Effect::DebugExit(u32::from_le_bytes(le))
                );
            }
        }
        let mut st = [0u8];
        let mut ctx = Ctx { now: 0, vcpu: 0, irq: &mut levels };
        cmd.read(&mut ctx, 0, &mut st);
        assert_eq!(st[0] & I8042_STR_IBF, 0, "input is taken at once");
        if st[0] & I8042_STR_OBF == 0 {
            assert!(!levels.0[1] && !levels.0[12], "no interrupt without output");
        }
    }
    println!("fuzz_i8042: {ITERATIONS} accesses in {:?}, {resets} resets", start.elapsed());
    assert!(resets > 0);
}
