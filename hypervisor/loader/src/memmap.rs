//! The guest-physical memory map the loaders take from the caller, and the placement of pieces
//! in it.
//!
//! The caller lists what the VM's physical address space holds: its RAM and whatever is not
//! RAM (the ACPI tables, the legacy BIOS/VGA area `0xA0000..0x100000`, the LAPIC, IOAPIC and
//! ECAM MMIO windows...). Entries may overlap: [`normalise`] gives every byte the strongest
//! kind that covers it (anything beats [`MemKind::Ram`]), so a caller may say "RAM 0..256 MiB"
//! and then "reserved 0xA0000..0x100000" without splitting the RAM itself.

use crate::{refuse, LoadError};
use alloc::vec::Vec;

/// What a guest-physical range holds; the numbers are the E820 types (multiboot uses the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemKind {
    /// Usable RAM (E820 type 1): the only kind the loaders place anything in.
    Ram = 1,
    /// Reserved (type 2): MMIO windows, the BIOS area.
    Reserved = 2,
    /// ACPI tables the guest may reclaim after reading them (type 3).
    Acpi = 3,
    /// ACPI NVS (type 4).
    Nvs = 4,
    /// Unusable / bad memory (type 5).
    Unusable = 5,
}

impl MemKind {
    /// The E820 / multiboot type number.
    pub fn e820_type(self) -> u32 {
        self as u32
    }
    /// Which kind wins where two entries overlap: any non-RAM kind over RAM, then the
    /// higher number.
    fn strength(self) -> u32 {
        self as u32
    }
}

/// One entry of the caller's map: `len` bytes from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemRange {
    pub start: u64,
    pub len: u64,
    pub kind: MemKind,
}

impl MemRange {
    pub const fn new(start: u64, len: u64, kind: MemKind) -> MemRange {
        MemRange { start, len, kind }
    }
    /// One past the last byte (saturating: a range is refused by [`normalise`] if it wraps).
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

/// A half-open guest-physical range `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    pub const fn new(start: u64, end: u64) -> Range {
        Range { start, end }
    }
    /// `start..start+len`, `None` if it wraps.
    pub fn sized(start: u64, len: u64) -> Option<Range> {
        Some(Range { start, end: start.checked_add(len)? })
    }
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
    pub fn overlaps(&self, o: &Range) -> bool {
        !self.is_empty() && !o.is_empty() && self.start < o.end && o.start < self.end
    }
    pub fn contains_range(&self, o: &Range) -> bool {
        self.start <= o.start && o.end <= self.end
    }
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }
}

impl core::fmt::Display for Range {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#x}..{:#x}", self.start, self.end)
    }
}

/// Most entries a map may have (what the zero page's E820 table holds).
pub const MAX_ENTRIES: usize = 128;

/// The map sorted, without overlaps or empty entries, neighbours of one kind merged, each
/// byte of the strongest kind any entry gave it. Refused: a range that wraps past 2^64, or
/// more than [`MAX_ENTRIES`] entries before or after.
pub fn normalise(map: &[MemRange]) -> Result<Vec<MemRange>, LoadError> {
    if map.len() > MAX_ENTRIES {
        refuse!("memory map has {} entries, at most {MAX_ENTRIES}", map.len());
    }
    let mut points: Vec<u64> = Vec::with_capacity(map.len() * 2);
    for r in map {
        if r.start.checked_add(r.len).is_none() {
            refuse!("memory map entry {:#x} + {:#x} wraps past the top of the address space", r.start, r.len);
        }
        if r.len > 0 {
            points.push(r.start);
            points.push(r.end());
        }
    }
    points.sort_unstable();
    points.dedup();
    let mut out: Vec<MemRange> = Vec::new();
    for w in points.windows(2) {
        let (a, b) = (w[0], w[1]);
        let kind = map
            .iter()
            .filter(|r| r.start <= a && b <= r.end() && r.len > 0)
            .map(|r| r.kind)
            .max_by_key(|k| k.strength());
        let Some(kind) = kind else { continue };
        match out.last_mut() {
            Some(last) if last.kind == kind && last.end() == a => last.len += b - a,
            _ => out.push(MemRange::new(a, b - a, kind)),
        }
    }
    if out.len() > MAX_ENTRIES {
        refuse!("memory map normalises to {} entries, at most {MAX_ENTRIES}", out.len());
    }
    Ok(out)
}

/// One past the last byte of RAM (0 without RAM).
pub fn ram_top(map: &[MemRange]) -> u64 {
    map.iter().filter(|r| r.kind == MemKind::Ram).map(MemRange::end).max().unwrap_or(0)
}

/// KiB of RAM from 0 up to the first hole, capped at 640 KiB, and from 1 MiB up to the first
/// hole: multiboot's `mem_lower` / `mem_upper`.
pub fn lower_upper_kib(map: &[MemRange]) -> (u32, u32) {
    let contiguous_from = |from: u64| {
        let mut end = from;
        while let Some(r) = map.iter().find(|r| r.kind == MemKind::Ram && r.start <= end && end < r.end()) {
            end = r.end();
        }
        end - from
    };
    let lower = contiguous_from(0).min(640 << 10) >> 10;
    let upper = (contiguous_from(1 << 20) >> 10).min(u32::MAX as u64);
    (lower as u32, upper as u32)
}

/// Places the pieces of a guest in usable RAM, each one apart from the others.
#[derive(Debug, Clone)]
pub(crate) struct Placer {
    ram: Vec<Range>,
    taken: Vec<(Range, &'static str)>,
}

pub(crate) fn align_up(v: u64, align: u64) -> Option<u64> {
    if align <= 1 {
        return Some(v);
    }
    v.checked_add(align - 1).map(|x| x & !(align - 1))
}

impl Placer {
    /// From a map already [`normalise`]d.
    pub fn new(map: &[MemRange]) -> Placer {
        let ram =
            map.iter().filter(|r| r.kind == MemKind::Ram).map(|r| Range::new(r.start, r.end())).collect();
        Placer { ram, taken: Vec::new() }
    }

    /// Take exactly `r` for `what`: refused if any byte of it is not RAM or already taken.
    pub fn claim(&mut self, r: Range, what: &'static str) -> Result<Range, LoadError> {
        if r.is_empty() {
            refuse!("{what} at {r} is empty");
        }
        if !self.ram.iter().any(|ram| ram.contains_range(&r)) {
            refuse!("{what} at {r} is not inside usable guest RAM");
        }
        if let Some((o, name)) = self.taken.iter().find(|(o, _)| o.overlaps(&r)) {
            refuse!("{what} at {r} overlaps the {name} at {o}");
        }
        self.taken.push((r, what));
        Ok(r)
    }

    /// Free gaps (RAM minus what is taken), ascending.
    fn gaps(&self) -> Vec<Range> {
        let mut taken: Vec<Range> = self.taken.iter().map(|t| t.0).collect();
        taken.sort_unstable();
        let mut out = Vec::new();
        for ram in &self.ram {
            let mut cur = ram.start;
            for t in taken.iter().filter(|t| t.overlaps(ram)) {
                if t.start > cur {
                    out.push(Range::new(cur, t.start));
                }
                cur = cur.max(t.end);
            }
            if cur < ram.end {
                out.push(Range::new(cur, ram.end));
            }
        }
        out
    }

    /// The lowest `len` bytes, `align`ed (a power of two), inside `min..max_end`.
    pub fn lowest(
        &mut self,
        len: u64,
        align: u64,
        min: u64,
        max_end: u64,
        what: &'static str,
    ) -> Result<Range, LoadError> {
        for g in self.gaps() {
            let Some(start) = align_up(g.start.max(min), align) else { continue };
            let Some(r) = Range::sized(start, len) else { continue };
            if r.end <= g.end && r.end <= max_end && len > 0 {
                return self.claim(r, what);
            }
        }
        refuse!("no room for the {what} ({len:#x} bytes, aligned to {align:#x}) in guest RAM between {min:#x} and {max_end:#x}")
    }

    /// The highest `len` bytes, `align`ed (a power of two), ending at or below `max_end`.
    pub fn highest(
        &mut self,
        len: u64,
        align: u64,
        max_end: u64,
        what: &'static str,
    ) -> Result<Range, LoadError> {
        for g in self.gaps().into_iter().rev() {
            let end = g.end.min(max_end);
            let Some(start) = end.checked_sub(len) else { continue };
            let start = start & !(align.max(1) - 1);
            if start >= g.start && len > 0 {
                return self.claim(Range::new(start, start + len), what);
            }
        }
        refuse!(
            "no room for the {what} ({len:#x} bytes, aligned to {align:#x}) in guest RAM below {max_end:#x}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MemKind::*;

    #[test]
    fn normalise_splits_ram_around_holes_and_merges() {
        let m = normalise(&[
            MemRange::new(0, 16 << 20, Ram),
            MemRange::new(0xA0000, 0x60000, Reserved),
            MemRange::new(16 << 20, 16 << 20, Ram),
            MemRange::new(0, 0, Acpi),
        ])
        .unwrap();
        assert_eq!(
            m,
            [
                MemRange::new(0, 0xA0000, Ram),
                MemRange::new(0xA0000, 0x60000, Reserved),
                MemRange::new(0x100000, (32 << 20) - 0x100000, Ram)
            ]
        );
        assert_eq!(lower_upper_kib(&m), (640, (31 << 10)));
        assert!(normalise(&[MemRange::new(u64::MAX, 2, Ram)]).unwrap_err().0.contains("wraps"));
    }

    #[test]
    fn placer_lowest_highest_and_claims() {
        let m =
            normalise(&[MemRange::new(0, 8 << 20, Ram), MemRange::new(0x9F000, 0x61000, Reserved)]).unwrap();
        let mut p = Placer::new(&m);
        assert_eq!(p.claim(Range::new(0x100000, 0x200000), "kernel").unwrap().start, 0x100000);
        assert!(p.claim(Range::new(0x1ff000, 0x201000), "x").unwrap_err().0.contains("overlaps the kernel"));
        assert!(p.claim(Range::new(0x9E000, 0xA0000), "x").unwrap_err().0.contains("not inside usable"));
        assert_eq!(p.lowest(0x1000, 0x1000, 0x1000, u64::MAX, "a").unwrap().start, 0x1000);
        assert_eq!(p.highest(0x1800, 0x1000, u64::MAX, "b").unwrap(), Range::new(0x7FE000, 0x7FF800));
        assert_eq!(p.highest(0x1000, 0x1000, 0x150000, "c").unwrap().start, 0x9E000);
        assert!(p.lowest(16 << 20, 1, 0, u64::MAX, "big").unwrap_err().0.contains("no room for the big"));
    }
}
