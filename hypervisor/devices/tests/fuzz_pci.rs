//! Bounded deterministic fuzzing of the PCI host through both faces: random CONFIG_ADDRESS
//! values, data-port accesses of every width and offset, ECAM accesses of 1-8 bytes anywhere
//! near the window. Nothing panics, absent functions always read all ones, the host bridge's
//! read-only identity never changes, the reserved CONFIG_ADDRESS bits stay 0, ECAM and
//! mechanism 1 agree, and the only effect is a reset from the 0xCF9 byte.

use basalt_devices::bus::{Ctx, Effect, MmioDevice, PortDevice};
use basalt_devices::irq::IrqSink;
use basalt_devices::pci::{Bdf, ConfigSpace, EcamWindow, PciHost, CONFIG_ENABLE};
use basalt_emu::fuzz::XorShift;
use std::time::Instant;

const ITERATIONS: u64 = 150_000;

struct NoIrq;
impl IrqSink for NoIrq {
    fn set_level(&mut self, _gsi: u32, _source: u8, _level: bool) {}
}

fn width(rng: &mut XorShift, max: u64) -> usize {
    [1usize, 2, 4, 8][rng.below(max) as usize]
}

#[test]
fn fuzz_pci_host() {
    let start = Instant::now();
    let mut rng = XorShift::new(0x9C1_C0F1);
    let ecam = EcamWindow { base: 0xB000_0000, buses: 4 };
    let mut host = PciHost::new(ecam);
    let extra = Bdf::new(0, 2, 0).unwrap();
    host.add_function(extra, Box::new(ConfigSpace::new(0x1AF4, 0x1041, [0x02, 0, 0], 1))).unwrap();
    let (mut ports, mut mmio) = host.into_devices();
    let mut sink = NoIrq;
    let mut ctx = Ctx { now: 0, vcpu: 0, irq: &mut sink };
    let mut resets = 0u64;

    for i in 0..ITERATIONS {
        ctx.now = i;
        match rng.below(6) {
            // CONFIG_ADDRESS: mostly enabled, mostly low buses and small device numbers.
            0 => {
                let mut v = rng.next_u64() as u32;
                if !rng.one_in(4) {
                    v = CONFIG_ENABLE | (v & 0x03_1FFF);
                }
                assert_eq!(ports.write(&mut ctx, 0, &v.to_le_bytes()), Effect::None);
            }
            1 | 2 => {
                let w = width(&mut rng, 3);
                let off = rng.below(9) as u16;
                let mut buf = [0u8; 8];
                if rng.one_in(2) {
                    ports.read(&mut ctx, off, &mut buf[..w]);
                } else {
                    for b in buf.iter_mut() {
                        *b = rng.next_u64() as u8;
                    }
                    match ports.write(&mut ctx, off, &buf[..w]) {
                        Effect::None => {}
                        Effect::Reset => {
                            assert_eq!((off, w), (1, 1), "only the 0xCF9 byte resets");
                            assert_ne!(buf[0] & 4, 0);
                            resets += 1;
                        }
                        e => panic!("unexpected {e:?}"),
                    }
                }
            }
            _ => {
                let w = width(&mut rng, 4);
                let off = if rng.one_in(8) { rng.next_u64() } else { rng.below(ecam.len() + 0x1000) };
                let mut buf = [0u8; 8];
                if rng.one_in(2) {
                    mmio.read(&mut ctx, off, &mut buf[..w]);
                    let absent = off >= ecam.len() || {
                        let bdf = Bdf::from_raw((off >> 12) as u16);
                        bdf != extra && bdf.raw() != 0
                    };
                    if absent {
                        assert!(buf[..w].iter().all(|b| *b == 0xFF), "absent at {off:#x}");
                    }
                } else {
                    for b in buf.iter_mut() {
                        *b = rng.next_u64() as u8;
                    }
                    assert_eq!(mmio.write(&mut ctx, off, &buf[..w]), Effect::None);
                }
            }
        }

        // Invariants, checked on the shared host directly.
        let mut h = ports.0.lock();
        assert_eq!(h.config_address() & 0x7F00_0003, 0, "reserved CONFIG_ADDRESS bits");
        let mut id = [0u8; 4];
        h.config_read(Bdf::new(0, 0, 0).unwrap(), 0, &mut id);
        assert_eq!(u32::from_le_bytes(id), 0x29C0_8086);
        let mut class = [0u8; 4];
        h.config_read(Bdf::new(0, 0, 0).unwrap(), 8, &mut class);
        assert_eq!(u32::from_le_bytes(class) >> 8, 0x06_00_00);
        let absent = Bdf::new(rng.below(4) as u8, 3 + rng.below(29) as u8, rng.below(8) as u8).unwrap();
        let mut v = [0u8; 4];
        h.config_read(absent, (rng.below(1024) * 4) as u16, &mut v);
        assert_eq!(v, [0xFF; 4]);
        let reg = (rng.below(64) * 4) as u16;
        let (mut a, mut b) = ([0u8; 4], [0u8; 4]);
        h.config_read(extra, reg, &mut a);
        h.ecam_read((extra.raw() as u64) << 12 | reg as u64, &mut b);
        assert_eq!(a, b);
    }
    let elapsed = start.elapsed();
    println!("fuzz_pci: {ITERATIONS} accesses in {elapsed:?}, {resets} resets");
    assert!(resets > 0, "the fuzzer reached 0xCF9");
}
