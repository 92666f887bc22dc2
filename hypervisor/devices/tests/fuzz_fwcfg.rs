//! Bounded deterministic fuzzing of fw_cfg: random selectors (mostly known keys), reads of
//! every width at both ports, stray writes. Nothing panics, nothing has an effect, and every
//! item reads as its bytes then zeros, from wherever the selection left it.

use basalt_devices::bus::{Ctx, Effect, PortDevice};
use basalt_devices::fwcfg::{FwCfg, FwCfgConfig, FW_CFG_FILE_DIR, FW_CFG_WRITE};
use basalt_devices::irq::IrqSink;
use basalt_emu::fuzz::XorShift;
use std::time::Instant;

const ITERATIONS: u64 = 1_000_000;

struct NoIrq;
impl IrqSink for NoIrq {
    fn set_level(&mut self, _gsi: u32, _source: u8, _level: bool) {}
}

#[test]
fn fuzz_fw_cfg() {
    let start = Instant::now();
    let mut rng = XorShift::new(0xF3_C0F6);
    let files: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("etc/file{i}"), (0..(i * 37 + 3)).map(|b| b as u8 ^ i as u8).collect()))
        .collect();
    let config = FwCfgConfig { cpus: 8, ram_bytes: 1 << 30, files };
    let mut dev = FwCfg::new(config).unwrap();
    let known: Vec<u16> = vec![0, 1, 3, 5, 0xF, FW_CFG_FILE_DIR, 0x20, 0x21, 0x22, 0x23, 0x24];
    let items: Vec<(u16, Vec<u8>)> = known.iter().map(|&k| (k, dev.item(k).unwrap().to_vec())).collect();
    let mut sink = NoIrq;
    let mut ctx = Ctx { now: 0, vcpu: 0, irq: &mut sink };
    // The model: the selected item's bytes (empty for an unknown key) and the offset.
    let mut selected: Vec<u8> = b"QEMU".to_vec();
    let mut offset = 0usize;

    for _ in 0..ITERATIONS {
        match rng.below(8) {
            0 | 1 => {
                let key = if rng.one_in(4) {
                    rng.next_u64() as u16
                } else {
                    known[rng.below(known.len() as u64) as usize]
                        | if rng.one_in(8) { FW_CFG_WRITE } else { 0 }
                };
                assert_eq!(dev.write(&mut ctx, 0, &key.to_le_bytes()), Effect::None);
                selected = items
                    .iter()
                    .find(|i| i.0 == key & !FW_CFG_WRITE)
                    .map(|i| i.1.clone())
                    .unwrap_or_default();
                offset = 0;
            }
            2 => {
                // Stray writes: byte writes, odd offsets, wide writes. Ignored (a 2-byte write at
                // 0 is a select, which option 0 covers).
                let w = [1usize, 4][rng.below(2) as usize];
                let off = rng.below(2) as u16;
                let buf = rng.next_u64().to_le_bytes();
                assert_eq!(dev.write(&mut ctx, off, &buf[..w]), Effect::None);
            }
            _ => {
                let w = [1usize, 1, 1, 2, 4][rng.below(5) as usize];
                let mut buf = [0u8; 4];
                dev.read(&mut ctx, rng.below(2) as u16, &mut buf[..w]);
                for b in &buf[..w] {
                    let expect = selected.get(offset).copied();
                    assert_eq!(*b, expect.unwrap_or(0));
                    if expect.is_some() {
                        offset += 1;
                    }
                }
            }
        }
    }
    println!("fuzz_fwcfg: {ITERATIONS} accesses in {:?}", start.elapsed());
}
