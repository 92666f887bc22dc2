//! What the fuzz runs share: byte mutations and random memory maps, driven by basalt-emu's
//! deterministic XorShift so a failure replays from its seed.
#![allow(dead_code)]

pub use basalt_emu::fuzz::XorShift;
use basalt_loader::memmap::{normalise, MemKind, MemRange, Range};

/// Values that sit on the edges parsers get wrong.
const EDGES: [u64; 10] = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF, 0x1_0000_0000, u64::MAX];

/// Mutate `b` a few times: random bytes, edge values at `hot` offsets (fields the parser
/// reads), truncation and growth.
pub fn mutate(rng: &mut XorShift, b: &mut Vec<u8>, hot: &[usize]) {
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 | 1 if !b.is_empty() => {
                let i = rng.below(b.len() as u64) as usize;
                b[i] = rng.next_u64() as u8;
            }
            2 if !hot.is_empty() => {
                let off = hot[rng.below(hot.len() as u64) as usize];
                let v =
                    EDGES[rng.below(EDGES.len() as u64) as usize].wrapping_add(rng.below(3)).wrapping_sub(1);
                let width = [1usize, 2, 4, 8][rng.below(4) as usize];
                for (k, byte) in v.to_le_bytes().iter().take(width).enumerate() {
                    if let Some(x) = b.get_mut(off + k) {
                        *x = *byte;
                    }
                }
            }
            3 if !b.is_empty() => {
                let n = rng.below(b.len() as u64 + 1) as usize;
                b.truncate(n);
            }
            4 => {
                let n = rng.below(64) as usize;
                b.extend((0..n).map(|_| rng.next_u64() as u8));
            }
            _ if !b.is_empty() => {
                let i = rng.below(b.len() as u64) as usize;
                b[i] ^= 1 << rng.below(8);
            }
            _ => {}
        }
    }
}

/// A PC-like map of random size with a few random reserved windows.
pub fn memory_map(rng: &mut XorShift) -> Vec<MemRange> {
    let ram = [2u64 << 20, 16 << 20, 64 << 20, 256 << 20, 3 << 30, 6 << 30][rng.below(6) as usize];
    let mut m = basalt_loader::bzimage::pc_memory_map(ram);
    for _ in 0..rng.below(4) {
        let start = rng.below(ram.max(1)) & !0xFFF;
        let len = (rng.below(16 << 20) + 1) & !0xFFF;
        let kind = [MemKind::Reserved, MemKind::Acpi, MemKind::Nvs, MemKind::Unusable][rng.below(4) as usize];
        m.push(MemRange::new(start, len.max(0x1000), kind));
    }
    m
}

/// Usable RAM of a map.
pub fn usable(map: &[MemRange]) -> Vec<Range> {
    normalise(map)
        .unwrap()
        .iter()
        .filter(|r| r.kind == MemKind::Ram)
        .map(|r| Range::new(r.start, r.end()))
        .collect()
}

pub fn in_ram(ram: &[Range], r: &Range) -> bool {
    ram.iter().any(|x| x.contains_range(r))
}

/// No two of `pieces` overlap.
pub fn disjoint(pieces: &[(Range, &str)]) -> Result<(), String> {
    for (i, a) in pieces.iter().enumerate() {
        for b in &pieces[i + 1..] {
            if a.0.overlaps(&b.0) {
                return Err(format!("{} {} overlaps {} {}", a.1, a.0, b.1, b.0));
            }
        }
    }
    Ok(())
}
