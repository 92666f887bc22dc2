//! The firmware memory map, in one loader-neutral shape.

use crate::fixed::FixedVec;
use crate::{BootError, MAX_REGIONS};

/// What a range of physical memory is.
///
/// Declared from least to most restrictive: where ranges of different kinds overlap, the
/// later (more restrictive) kind wins, see [`MemoryKind::restrictiveness`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemoryKind {
    /// Free RAM.
    Usable,
    /// Holds ACPI tables; usable once they have been read.
    AcpiReclaimable,
    /// ACPI non-volatile storage; must be preserved across sleep states.
    AcpiNvs,
    /// Anything else: firmware, MMIO holes, unknown types.
    Reserved,
    /// RAM the firmware found defective.
    BadMemory,
}

impl MemoryKind {
    /// Map a multiboot1/multiboot2 (and E820) memory type: 1 usable, 3 ACPI reclaimable,
    /// 4 ACPI NVS, 5 bad memory, anything else reserved.
    pub const fn from_multiboot(typ: u32) -> Self {
        match typ {
            1 => MemoryKind::Usable,
            3 => MemoryKind::AcpiReclaimable,
            4 => MemoryKind::AcpiNvs,
            5 => MemoryKind::BadMemory,
            _ => MemoryKind::Reserved,
        }
    }

    /// Rank used to resolve overlaps: higher wins.
    /// `BadMemory > Reserved > AcpiNvs > AcpiReclaimable > Usable`.
    pub const fn restrictiveness(self) -> u8 {
        match self {
            MemoryKind::Usable => 0,
            MemoryKind::AcpiReclaimable => 1,
            MemoryKind::AcpiNvs => 2,
            MemoryKind::Reserved => 3,
            MemoryKind::BadMemory => 4,
        }
    }
}

/// A physical range `[start, end)` of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRegion {
    /// First byte, physical.
    pub start: u64,
    /// One past the last byte, physical (exclusive).
    pub end: u64,
    pub kind: MemoryKind,
}

impl MemoryRegion {
    pub const fn new(start: u64, end: u64, kind: MemoryKind) -> Self {
        Self { start, end, kind }
    }

    /// A region from a base and a length, as loaders report them; the end saturates at
    /// `u64::MAX` rather than wrapping.
    pub const fn from_base_len(base: u64, len: u64, kind: MemoryKind) -> Self {
        Self { start: base, end: base.saturating_add(len), kind }
    }

    /// Size in bytes (0 for an empty or inverted range).
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    pub const fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }
}

/// A list of at most [`MAX_REGIONS`] memory regions.
///
/// As built by [`add`](Self::add) it is whatever the loader said; after
/// [`normalize`](Self::normalize) it is sorted, without empty ranges or overlaps, and
/// adjacent ranges of one kind are merged. `BootInfo::memory` is always normalized.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryMap {
    regions: FixedVec<MemoryRegion, MAX_REGIONS>,
}

impl MemoryMap {
    pub const fn new() -> Self {
        Self { regions: FixedVec::new() }
    }

    /// Append a region as the loader reported it. Empty ranges are ignored;
    /// `TooMany("memory regions")` once the map is full.
    pub fn add(&mut self, region: MemoryRegion) -> Result<(), BootError> {
        if region.is_empty() {
            return Ok(());
        }
        self.regions.push(region).map_err(|_| BootError::TooMany("memory regions"))
    }

    /// Sort, drop empty ranges, resolve overlaps in favour of the more restrictive kind and
    /// merge touching ranges of the same kind.
    ///
    /// Resolving an overlap can split a range (a reserved hole in the middle of usable RAM
    /// turns one usable range into two), so the result can need more entries than the input;
    /// if it no longer fits, `TooMany("memory regions")` is returned and the map is unchanged.
    pub fn normalize(&mut self) -> Result<(), BootError> {
        // Every range boundary; between two consecutive boundaries the kind is constant.
        let mut points: FixedVec<u64, { 2 * MAX_REGIONS }> = FixedVec::new();
        for r in self.regions.iter().filter(|r| !r.is_empty()) {
            // Cannot fail: at most two points per region.
            let _ = points.push(r.start);
            let _ = points.push(r.end);
        }
        points.sort_unstable();

        let mut out: FixedVec<MemoryRegion, MAX_REGIONS> = FixedVec::new();
        let mut prev = None;
        for &p in points.iter() {
            let Some(start) = prev.replace(p) else {
                continue;
            };
            if start == p {
                continue;
            }
            let end = p;
            let kind = self
                .regions
                .iter()
                .filter(|r| r.start <= start && end <= r.end)
                .map(|r| r.kind)
                .max_by_key(|k| k.restrictiveness());
            let Some(kind) = kind else { continue };
            match out.last_mut() {
                Some(last) if last.end == start && last.kind == kind => last.end = end,
                _ => out
                    .push(MemoryRegion { start, end, kind })
                    .map_err(|_| BootError::TooMany("memory regions"))?,
            }
        }
        self.regions = out;
        Ok(())
    }

    /// The regions (normalized if [`normalize`](Self::normalize) was called).
    pub fn regions(&self) -> &[MemoryRegion] {
        self.regions.as_slice()
    }

    pub fn len(&self) -> usize {
        self.regions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// Bytes of [`MemoryKind::Usable`] memory (exact on a normalized map; overlaps would be
    /// counted twice otherwise).
    pub fn usable_bytes(&self) -> u64 {
        self.regions.iter().filter(|r| r.kind == MemoryKind::Usable).map(|r| r.len()).sum()
    }

    /// One past the highest byte any region (of any kind) covers; 0 for an empty map.
    pub fn highest_address(&self) -> u64 {
        self.regions.iter().map(|r| r.end).max().unwrap_or(0)
    }

    /// One past the highest usable byte; 0 if nothing is usable.
    pub fn highest_usable_address(&self) -> u64 {
        self.regions.iter().filter(|r| r.kind == MemoryKind::Usable).map(|r| r.end).max().unwrap_or(0)
    }

    /// The kind of the region containing `addr`, if any.
    pub fn kind_at(&self, addr: u64) -> Option<MemoryKind> {
        self.regions.iter().filter(|r| r.contains(addr)).map(|r| r.kind).max_by_key(|k| k.restrictiveness())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::MemoryKind::*;
    use super::*;

    fn map(regions: &[(u64, u64, MemoryKind)]) -> MemoryMap {
        let mut m = MemoryMap::new();
        for &(s, e, k) in regions {
            m.add(MemoryRegion::new(s, e, k)).unwrap();
        }
        m
    }

    fn normalized(regions: &[(u64, u64, MemoryKind)]) -> std::vec::Vec<(u64, u64, MemoryKind)> {
        let mut m = map(regions);
        m.normalize().unwrap();
        m.regions().iter().map(|r| (r.start, r.end, r.kind)).collect()
    }

    #[test]
    fn multiboot_types() {
        assert_eq!(MemoryKind::from_multiboot(1), Usable);
        assert_eq!(MemoryKind::from_multiboot(2), Reserved);
        assert_eq!(MemoryKind::from_multiboot(3), AcpiReclaimable);
        assert_eq!(MemoryKind::from_multiboot(4), AcpiNvs);
        assert_eq!(MemoryKind::from_multiboot(5), BadMemory);
        assert_eq!(MemoryKind::from_multiboot(0), Reserved);
        assert_eq!(MemoryKind::from_multiboot(12), Reserved);
    }

    #[test]
    fn sorts_and_merges_same_kind() {
        assert_eq!(
            normalized(&[(0x3000, 0x4000, Usable), (0x1000, 0x2000, Usable), (0x2000, 0x3000, Usable)]),
            [(0x1000, 0x4000, Usable)]
        );
        // Overlapping ranges of one kind merge too; a gap keeps them apart.
        assert_eq!(
            normalized(&[(0, 0x2000, Usable), (0x1000, 0x3000, Usable), (0x5000, 0x6000, Usable)]),
            [(0, 0x3000, Usable), (0x5000, 0x6000, Usable)]
        );
    }

    #[test]
    fn adjacent_different_kinds_stay_apart() {
        assert_eq!(
            normalized(&[(0, 0x1000, Usable), (0x1000, 0x2000, Reserved)]),
            [(0, 0x1000, Usable), (0x1000, 0x2000, Reserved)]
        );
    }

    #[test]
    fn drops_empty_ranges() {
        let mut m = MemoryMap::new();
        m.add(MemoryRegion::new(0x1000, 0x1000, Usable)).unwrap();
        m.add(MemoryRegion::new(0x2000, 0x1000, Usable)).unwrap();
        assert!(m.is_empty());
        assert_eq!(normalized(&[]), []);
    }

    #[test]
    fn restrictive_kind_wins_overlaps() {
        // A reserved hole inside usable RAM splits it.
        assert_eq!(
            normalized(&[(0, 0x10000, Usable), (0x4000, 0x5000, Reserved)]),
            [(0, 0x4000, Usable), (0x4000, 0x5000, Reserved), (0x5000, 0x10000, Usable)]
        );
        // Partial overlaps, in either order of reporting.
        assert_eq!(
            normalized(&[(0x2000, 0x6000, AcpiNvs), (0, 0x4000, AcpiReclaimable)]),
            [(0, 0x2000, AcpiReclaimable), (0x2000, 0x6000, AcpiNvs)]
        );
        // The full ranking.
        assert_eq!(
            normalized(&[
                (0, 0x5000, Usable),
                (0x1000, 0x5000, AcpiReclaimable),
                (0x2000, 0x5000, AcpiNvs),
                (0x3000, 0x5000, Reserved),
                (0x4000, 0x5000, BadMemory),
            ]),
            [
                (0, 0x1000, Usable),
                (0x1000, 0x2000, AcpiReclaimable),
                (0x2000, 0x3000, AcpiNvs),
                (0x3000, 0x4000, Reserved),
                (0x4000, 0x5000, BadMemory),
            ]
        );
        // A less restrictive range reported over a more restrictive one changes nothing.
        assert_eq!(
            normalized(&[(0x1000, 0x2000, BadMemory), (0, 0x3000, Reserved), (0, 0x8000, Usable)]),
            [
                (0, 0x1000, Reserved),
                (0x1000, 0x2000, BadMemory),
                (0x2000, 0x3000, Reserved),
                (0x3000, 0x8000, Usable)
            ]
        );
    }

    #[test]
    fn totals() {
        let mut m =
            map(&[(0, 0x9f000, Usable), (0x100000, 0x800000, Usable), (0xfee00000, 0xfee01000, Reserved)]);
        m.normalize().unwrap();
        assert_eq!(m.usable_bytes(), 0x9f000 + 0x700000);
        assert_eq!(m.highest_address(), 0xfee01000);
        assert_eq!(m.highest_usable_address(), 0x800000);
        assert_eq!(m.kind_at(0x200000), Some(Usable));
        assert_eq!(m.kind_at(0xa0000), None);
        assert_eq!(MemoryMap::new().highest_address(), 0);
    }

    #[test]
    fn capacity_errors() {
        let mut m = MemoryMap::new();
        for i in 0..MAX_REGIONS as u64 {
            m.add(MemoryRegion::new(i * 0x2000, i * 0x2000 + 0x1000, Usable)).unwrap();
        }
        assert_eq!(
            m.add(MemoryRegion::new(1 << 40, (1 << 40) + 1, Usable)),
            Err(BootError::TooMany("memory regions"))
        );

        // One usable range with MAX_REGIONS - 1 holes needs 2 * MAX_REGIONS - 1 entries.
        let mut m = MemoryMap::new();
        m.add(MemoryRegion::new(0, 1 << 30, Usable)).unwrap();
        for i in 1..MAX_REGIONS as u64 {
            m.add(MemoryRegion::new(i * 0x10000, i * 0x10000 + 0x1000, Reserved)).unwrap();
        }
        let before = m.clone();
        assert_eq!(m.normalize(), Err(BootError::TooMany("memory regions")));
        assert_eq!(m, before);
    }

    #[test]
    fn end_saturates() {
        let r = MemoryRegion::from_base_len(u64::MAX - 10, 100, Reserved);
        assert_eq!(r.end, u64::MAX);
        assert_eq!(r.len(), 10);
    }
}
