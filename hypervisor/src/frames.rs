//! Physical frame allocator: 4 KiB frames out of the usable RAM of the boot memory map.
//!
//! No heap: the free memory is a sorted list of disjoint, non-touching page-aligned ranges
//! of fixed capacity ([`MAX_RANGES`]), merged again on free. A second list remembers what the
//! allocator owns at all, so freeing memory it never handed out is caught, as is a double
//! free. Frames are not zeroed; that is the caller's job.

use basalt_boot::{FixedVec, MemoryKind, MemoryMap};
use core::fmt;

/// Size of one frame.
pub const FRAME_SIZE: u64 = 4096;
/// Nothing below this is ever handed out (real-mode IVT, BDA, EBDA, VGA, BIOS ROMs).
pub const LOW_MEMORY_END: u64 = 0x10_0000;
/// Most disjoint free ranges the allocator tracks.
pub const MAX_RANGES: usize = 512;

/// Why an allocation or a free failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// No free run of `requested_pages` frames (with the requested alignment) exists.
    /// A request for 0 pages is also reported this way.
    OutOfMemory { requested_pages: usize },
    /// The frame at this address is already free.
    DoubleFree(u64),
    /// This address is not memory the allocator owns (or is not frame-aligned).
    NotOwned(u64),
    /// The free list is full: the memory exists but cannot be tracked in [`MAX_RANGES`]
    /// ranges without splitting one more.
    TooFragmented,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::OutOfMemory { requested_pages } => {
                write!(f, "out of physical memory ({requested_pages} pages requested)")
            }
            FrameError::DoubleFree(addr) => write!(f, "frame {addr:#x} freed twice"),
            FrameError::NotOwned(addr) => {
                write!(f, "frame {addr:#x} is not memory the frame allocator owns")
            }
            FrameError::TooFragmented => f.write_str("physical memory too fragmented to track"),
        }
    }
}

/// `[start, end)`, both frame-aligned, `start < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: u64,
    end: u64,
}

impl Range {
    const fn len(&self) -> u64 {
        self.end - self.start
    }
}

const fn align_up(x: u64, align: u64) -> Option<u64> {
    match x.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

const fn align_down(x: u64, align: u64) -> u64 {
    x & !(align - 1)
}

/// The physical frame allocator.
#[derive(Debug, Clone)]
pub struct FrameAllocator {
    /// What the allocator manages; fixed after construction.
    owned: FixedVec<Range, MAX_RANGES>,
    /// What is free now: sorted, disjoint, never touching (touching ranges are merged).
    free: FixedVec<Range, MAX_RANGES>,
    total: u64,
    free_bytes: u64,
    lost: u64,
}

impl FrameAllocator {
    /// An allocator that owns nothing (every allocation fails).
    pub const fn empty() -> Self {
        Self { owned: FixedVec::new(), free: FixedVec::new(), total: 0, free_bytes: 0, lost: 0 }
    }

    /// Manage the [`MemoryKind::Usable`] memory of `map`, minus every range in `reserved`
    /// (`(start, end)`, end exclusive: the kernel image, modules, the loader's info structure,
    /// the SMP trampoline page, ...) and minus everything below 1 MiB. Usable ranges are
    /// shrunk inward to whole frames, reserved ranges grown outward. Any non-usable region of
    /// `map` wins over a usable one it overlaps, even if `map` is not normalized.
    ///
    /// If the result needs more than [`MAX_RANGES`] ranges, the excess memory is left unused
    /// (see [`lost_bytes`](Self::lost_bytes)); it is never handed out.
    pub fn new(map: &MemoryMap, reserved: &[(u64, u64)]) -> Self {
        let mut this = Self::empty();
        for r in map.regions().iter().filter(|r| r.kind == MemoryKind::Usable) {
            let start = align_up(r.start.max(LOW_MEMORY_END), FRAME_SIZE);
            let end = align_down(r.end, FRAME_SIZE);
            if let Some(start) = start.filter(|&s| s < end) {
                this.add_owned(Range { start, end });
            }
        }
        let not_usable = map.regions().iter().filter(|r| r.kind != MemoryKind::Usable);
        for (start, end) in not_usable.map(|r| (r.start, r.end)).chain(reserved.iter().copied()) {
            if start < end {
                let end = align_up(end, FRAME_SIZE).unwrap_or(u64::MAX);
                this.remove_owned(align_down(start, FRAME_SIZE), end);
            }
        }
        this.free = this.owned;
        this.total = this.owned.iter().map(Range::len).sum();
        this.free_bytes = this.total;
        this
    }

    /// Insert into `owned`, keeping it sorted and merging overlapping or touching ranges.
    fn add_owned(&mut self, mut r: Range) {
        // Absorb every existing range that overlaps or touches `r`.
        let mut i = 0;
        while i < self.owned.len() {
            let o = self.owned[i];
            if o.start <= r.end && r.start <= o.end {
                r = Range { start: r.start.min(o.start), end: r.end.max(o.end) };
                self.owned.remove(i);
            } else {
                i += 1;
            }
        }
        let at = self.owned.iter().position(|o| o.start > r.start).unwrap_or(self.owned.len());
        if self.owned.insert(at, r).is_err() {
            self.lost += r.len();
        }
    }

    /// Cut `[start, end)` (frame-aligned, `end` may be `u64::MAX`) out of `owned`.
    fn remove_owned(&mut self, start: u64, end: u64) {
        let mut i = 0;
        while i < self.owned.len() {
            let o = self.owned[i];
            if o.end <= start || end <= o.start {
                i += 1;
            } else if start <= o.start && o.end <= end {
                self.owned.remove(i);
            } else if start <= o.start {
                self.owned[i].start = end;
                i += 1;
            } else if o.end <= end {
                self.owned[i].end = start;
                i += 1;
            } else {
                // The hole is strictly inside: split.
                self.owned[i].end = start;
                let upper = Range { start: end, end: o.end };
                if self.owned.insert(i + 1, upper).is_err() {
                    self.lost += upper.len();
                }
                i += 2;
            }
        }
    }

    /// One frame; its address is frame-aligned. Not zeroed.
    pub fn alloc(&mut self) -> Result<u64, FrameError> {
        self.alloc_contiguous(1, FRAME_SIZE)
    }

    /// `pages` physically contiguous frames starting at a multiple of `align` (at least
    /// [`FRAME_SIZE`]; a non-power-of-two alignment is rounded up to the next power of two).
    /// Lowest fitting address first. Not zeroed.
    pub fn alloc_contiguous(&mut self, pages: usize, align: u64) -> Result<u64, FrameError> {
        let oom = FrameError::OutOfMemory { requested_pages: pages };
        let size = (pages as u64).checked_mul(FRAME_SIZE).filter(|&s| s > 0).ok_or(oom)?;
        let align = align.max(FRAME_SIZE).checked_next_power_of_two().ok_or(oom)?;
        let mut needed_split = false;
        for i in 0..self.free.len() {
            let r = self.free[i];
            let Some(start) = align_up(r.start, align) else {
                continue;
            };
            let Some(end) = start.checked_add(size).filter(|&e| e <= r.end) else {
                continue;
            };
            match (start > r.start, end < r.end) {
                (false, false) => {
                    self.free.remove(i);
                }
                (false, true) => self.free[i].start = end,
                (true, false) => self.free[i].end = start,
                (true, true) => {
                    if self.free.insert(i + 1, Range { start: end, end: r.end }).is_err() {
                        needed_split = true;
                        continue;
                    }
                    self.free[i].end = start;
                }
            }
            self.free_bytes -= size;
            return Ok(start);
        }
        Err(if needed_split { FrameError::TooFragmented } else { oom })
    }

    /// Give back `pages` frames starting at `addr` (as returned by an allocation; a run may
    /// also be freed piecewise). Freeing 0 pages does nothing.
    ///
    /// Errors, with nothing changed: [`FrameError::NotOwned`] if `addr` is not frame-aligned
    /// or the run is not entirely memory this allocator manages, [`FrameError::DoubleFree`]
    /// (with the first already-free frame) if any of it is already free,
    /// [`FrameError::TooFragmented`] if the free list has no room for a new range.
    pub fn free(&mut self, addr: u64, pages: usize) -> Result<(), FrameError> {
        if !addr.is_multiple_of(FRAME_SIZE) {
            return Err(FrameError::NotOwned(addr));
        }
        if pages == 0 {
            return Ok(());
        }
        let end = (pages as u64)
            .checked_mul(FRAME_SIZE)
            .and_then(|size| addr.checked_add(size))
            .ok_or(FrameError::NotOwned(addr))?;
        if !self.owned.iter().any(|o| o.start <= addr && end <= o.end) {
            let first_foreign = (addr..end)
                .step_by(FRAME_SIZE as usize)
                .find(|&f| !self.owned.iter().any(|o| o.start <= f && f < o.end))
                .unwrap_or(addr);
            return Err(FrameError::NotOwned(first_foreign));
        }
        // First free range that ends after `addr`: the only one that can overlap or follow.
        let next = self.free.iter().position(|r| r.end > addr).unwrap_or(self.free.len());
        if let Some(r) = self.free.get(next).filter(|r| r.start < end) {
            return Err(FrameError::DoubleFree(r.start.max(addr)));
        }
        let merge_prev = next > 0 && self.free[next - 1].end == addr;
        let merge_next = next < self.free.len() && self.free[next].start == end;
        match (merge_prev, merge_next) {
            (true, true) => {
                self.free[next - 1].end = self.free[next].end;
                self.free.remove(next);
            }
            (true, false) => self.free[next - 1].end = end,
            (false, true) => self.free[next].start = addr,
            (false, false) => {
                self.free.insert(next, Range { start: addr, end }).map_err(|_| FrameError::TooFragmented)?
            }
        }
        self.free_bytes += end - addr;
        Ok(())
    }

    /// Bytes free now.
    pub fn free_bytes(&self) -> u64 {
        self.free_bytes
    }

    /// Bytes managed in all (free or allocated).
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Usable bytes left unmanaged because they did not fit in [`MAX_RANGES`] ranges.
    pub fn lost_bytes(&self) -> u64 {
        self.lost
    }

    /// The free ranges `(start, end)`, ascending.
    pub fn free_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.free.iter().map(|r| (r.start, r.end))
    }

    /// The managed ranges `(start, end)`, ascending.
    pub fn owned_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.owned.iter().map(|r| (r.start, r.end))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use basalt_boot::MemoryRegion;
    use std::collections::BTreeSet;
    use std::vec::Vec;

    const MIB: u64 = 0x10_0000;

    fn map(regions: &[(u64, u64, MemoryKind)]) -> MemoryMap {
        let mut m = MemoryMap::new();
        for &(s, e, k) in regions {
            m.add(MemoryRegion::new(s, e, k)).unwrap();
        }
        m.normalize().unwrap();
        m
    }

    /// A small PC: low RAM, a hole, 1 MiB..16 MiB usable with ACPI at the top, a 4 GiB+ bank.
    fn pc() -> MemoryMap {
        map(&[
            (0, 0x9_fc00, MemoryKind::Usable),
            (0x9_fc00, 0xa_0000, MemoryKind::Reserved),
            (0xf_0000, MIB, MemoryKind::Reserved),
            (MIB, 15 * MIB, MemoryKind::Usable),
            (15 * MIB, 16 * MIB, MemoryKind::AcpiReclaimable),
            (0x1_0000_0000, 0x1_0000_0000 + 2 * MIB, MemoryKind::Usable),
        ])
    }

    fn drain(fa: &mut FrameAllocator) -> Vec<u64> {
        let mut frames = Vec::new();
        loop {
            match fa.alloc() {
                Ok(f) => frames.push(f),
                Err(e) => {
                    assert_eq!(e, FrameError::OutOfMemory { requested_pages: 1 });
                    return frames;
                }
            }
        }
    }

    #[test]
    fn reserved_and_low_memory_never_handed_out() {
        // Kernel image (unaligned ends), a module, the loader info, and a reserved range that
        // covers a whole usable bank.
        let reserved = [(MIB + 0x123, 3 * MIB - 5), (5 * MIB, 6 * MIB), (7 * MIB + 8, 7 * MIB + 96)];
        let mut fa = FrameAllocator::new(&pc(), &reserved);
        let expected_total = (15 * MIB - 3 * MIB) - MIB - FRAME_SIZE + 2 * MIB;
        assert_eq!(fa.total_bytes(), expected_total);
        assert_eq!(fa.free_bytes(), expected_total);

        let frames = drain(&mut fa);
        assert_eq!(frames.len() as u64 * FRAME_SIZE, expected_total);
        assert_eq!(fa.free_bytes(), 0);
        let unique: BTreeSet<u64> = frames.iter().copied().collect();
        assert_eq!(unique.len(), frames.len(), "a frame was handed out twice");
        for &f in &frames {
            assert_eq!(f % FRAME_SIZE, 0);
            assert!(f >= LOW_MEMORY_END, "{f:#x} is below 1 MiB");
            for &(s, e) in &reserved {
                assert!(f + FRAME_SIZE <= s || f >= e, "{f:#x} overlaps reserved {s:#x}..{e:#x}");
            }
            assert!(!(15 * MIB..0x1_0000_0000).contains(&f), "{f:#x} is ACPI memory");
            assert!(f + FRAME_SIZE <= 0x1_0000_0000 + 2 * MIB);
        }
        // Lowest first.
        assert_eq!(frames[0], 3 * MIB);
    }

    #[test]
    fn low_megabyte_excluded_even_when_usable() {
        let mut fa = FrameAllocator::new(&map(&[(0, 2 * MIB, MemoryKind::Usable)]), &[]);
        assert_eq!(fa.total_bytes(), MIB);
        assert!(drain(&mut fa).iter().all(|&f| f >= MIB));

        let mut fa = FrameAllocator::new(&map(&[(0, 0xa_0000, MemoryKind::Usable)]), &[]);
        assert_eq!(fa.total_bytes(), 0);
        assert_eq!(fa.alloc(), Err(FrameError::OutOfMemory { requested_pages: 1 }));
    }

    #[test]
    fn usable_rounded_inward_and_overlaps_respected() {
        // Unaligned usable edges, and a non-normalized map where reserved overlaps usable.
        let mut m = MemoryMap::new();
        m.add(MemoryRegion::new(MIB + 1, 2 * MIB - 1, MemoryKind::Usable)).unwrap();
        m.add(MemoryRegion::new(4 * MIB, 8 * MIB, MemoryKind::Usable)).unwrap();
        m.add(MemoryRegion::new(6 * MIB, 7 * MIB, MemoryKind::BadMemory)).unwrap();
        let fa = FrameAllocator::new(&m, &[]);
        let owned: Vec<_> = fa.owned_ranges().collect();
        assert_eq!(owned, [(MIB + FRAME_SIZE, 2 * MIB - FRAME_SIZE), (4 * MIB, 6 * MIB), (7 * MIB, 8 * MIB)]);
    }

    #[test]
    fn exhaustion_is_out_of_memory() {
        let mut fa = FrameAllocator::new(&map(&[(MIB, MIB + 4 * FRAME_SIZE, MemoryKind::Usable)]), &[]);
        assert_eq!(fa.alloc_contiguous(5, FRAME_SIZE), Err(FrameError::OutOfMemory { requested_pages: 5 }));
        assert_eq!(fa.alloc_contiguous(4, FRAME_SIZE), Ok(MIB));
        assert_eq!(fa.alloc(), Err(FrameError::OutOfMemory { requested_pages: 1 }));
        assert_eq!(fa.alloc_contiguous(0, FRAME_SIZE), Err(FrameError::OutOfMemory { requested_pages: 0 }));
        assert_eq!(
            fa.alloc_contiguous(usize::MAX, FRAME_SIZE),
            Err(FrameError::OutOfMemory { requested_pages: usize::MAX })
        );
    }

    #[test]
    fn alignment_honoured() {
        let mut fa = FrameAllocator::new(&map(&[(MIB, 64 * MIB, MemoryKind::Usable)]), &[]);
        let a = fa.alloc().unwrap();
        assert_eq!(a, MIB);
        let big = fa.alloc_contiguous(512, 2 * MIB).unwrap();
        assert_eq!(big % (2 * MIB), 0);
        assert_eq!(big, 2 * MIB);
        // Non-power-of-two alignment rounds up (12 KiB -> 16 KiB).
        let odd = fa.alloc_contiguous(1, 3 * FRAME_SIZE).unwrap();
        assert_eq!(odd % (4 * FRAME_SIZE), 0);
        // The gap left below the 2 MiB block is still handed out.
        let next = fa.alloc().unwrap();
        assert!(next > a && next < 2 * MIB);
        for align in [FRAME_SIZE, 8 * FRAME_SIZE, MIB, 4 * MIB] {
            let p = fa.alloc_contiguous(3, align).unwrap();
            assert_eq!(p % align, 0, "align {align:#x}");
        }
        // An alignment no range can satisfy.
        assert_eq!(fa.alloc_contiguous(1, 1 << 40), Err(FrameError::OutOfMemory { requested_pages: 1 }));
        assert_eq!(fa.alloc_contiguous(1, u64::MAX), Err(FrameError::OutOfMemory { requested_pages: 1 }));
    }

    #[test]
    fn free_and_realloc() {
        let mut fa = FrameAllocator::new(&pc(), &[]);
        let total = fa.total_bytes();
        let a = fa.alloc().unwrap();
        let run = fa.alloc_contiguous(16, FRAME_SIZE).unwrap();
        let b = fa.alloc().unwrap();
        assert_eq!(fa.free_bytes(), total - 18 * FRAME_SIZE);
        fa.free(run, 16).unwrap();
        assert_eq!(fa.alloc_contiguous(16, FRAME_SIZE), Ok(run));
        // Free piecewise, out of order; everything merges back into the original ranges.
        for i in (0..16u64).rev().filter(|i| i % 2 == 0) {
            fa.free(run + i * FRAME_SIZE, 1).unwrap();
        }
        for i in (1..16).step_by(2) {
            fa.free(run + i * FRAME_SIZE, 1).unwrap();
        }
        fa.free(b, 1).unwrap();
        fa.free(a, 1).unwrap();
        assert_eq!(fa.free_bytes(), total);
        assert_eq!(fa.free_ranges().collect::<Vec<_>>(), fa.owned_ranges().collect::<Vec<_>>());
        assert_eq!(fa.alloc(), Ok(a));
        assert_eq!(fa.free(a, 0), Ok(()));
    }

    #[test]
    fn double_free_detected() {
        let mut fa = FrameAllocator::new(&pc(), &[]);
        let run = fa.alloc_contiguous(4, FRAME_SIZE).unwrap();
        fa.free(run, 4).unwrap();
        let before = fa.free_bytes();
        assert_eq!(fa.free(run, 1), Err(FrameError::DoubleFree(run)));
        assert_eq!(fa.free(run + 2 * FRAME_SIZE, 1), Err(FrameError::DoubleFree(run + 2 * FRAME_SIZE)));

        // Partly allocated, partly free.
        let x = fa.alloc_contiguous(2, FRAME_SIZE).unwrap();
        assert_eq!(fa.free(x, 3), Err(FrameError::DoubleFree(x + 2 * FRAME_SIZE)));
        fa.free(x, 2).unwrap();
        assert_eq!(fa.free_bytes(), before);
    }

    #[test]
    fn foreign_memory_rejected() {
        let reserved = [(2 * MIB, 3 * MIB)];
        let mut fa = FrameAllocator::new(&pc(), &reserved);
        let free = fa.free_bytes();
        let _ = fa.alloc_contiguous(16, FRAME_SIZE).unwrap();
        assert_eq!(fa.free(0x1000, 1), Err(FrameError::NotOwned(0x1000)));
        assert_eq!(fa.free(2 * MIB, 1), Err(FrameError::NotOwned(2 * MIB)));
        assert_eq!(fa.free(15 * MIB, 1), Err(FrameError::NotOwned(15 * MIB)));
        // Straddling the end of owned memory names the first foreign frame.
        assert_eq!(fa.free(2 * MIB - FRAME_SIZE, 2), Err(FrameError::NotOwned(2 * MIB)));
        assert_eq!(fa.free(MIB + 12, 1), Err(FrameError::NotOwned(MIB + 12)));
        assert_eq!(fa.free(!0xfff_u64, 2), Err(FrameError::NotOwned(!0xfff_u64)));
        assert_eq!(fa.free_bytes(), free - 16 * FRAME_SIZE);
    }

    #[test]
    fn fragmentation_is_reported() {
        let mut fa = FrameAllocator::new(&map(&[(MIB, MIB + 4096 * FRAME_SIZE, MemoryKind::Usable)]), &[]);
        let frames = drain(&mut fa);
        assert_eq!(frames.len(), 4096);
        // Free every other frame: each becomes its own range, until the list is full.
        for (i, &f) in frames.iter().step_by(2).enumerate() {
            let r = fa.free(f, 1);
            if i < MAX_RANGES {
                r.unwrap();
            } else {
                assert_eq!(r, Err(FrameError::TooFragmented));
                break;
            }
        }
        assert_eq!(fa.free_bytes(), MAX_RANGES as u64 * FRAME_SIZE);
        // Freeing a neighbour still works: it merges instead of needing a new range.
        fa.free(frames[1], 1).unwrap();
        // A split that needs a new range fails as TooFragmented, not OutOfMemory.
        let mut fa = FrameAllocator::new(&map(&[(MIB, MIB + 4096 * FRAME_SIZE, MemoryKind::Usable)]), &[]);
        let frames = drain(&mut fa);
        for &f in frames.iter().skip(1).step_by(4).take(MAX_RANGES - 1) {
            fa.free(f, 1).unwrap();
        }
        fa.free(frames[frames.len() - 41], 32).unwrap();
        assert_eq!(fa.free_ranges().count(), MAX_RANGES);
        assert_eq!(fa.alloc_contiguous(1, 8 * FRAME_SIZE), Err(FrameError::TooFragmented));
    }

    #[test]
    fn too_many_owned_ranges_are_dropped_not_handed_out() {
        let mut reserved = Vec::new();
        for i in 0..(MAX_RANGES as u64 + 10) {
            reserved.push((MIB + (2 * i + 1) * FRAME_SIZE, MIB + (2 * i + 2) * FRAME_SIZE));
        }
        let mut fa = FrameAllocator::new(&map(&[(MIB, 64 * MIB, MemoryKind::Usable)]), &reserved);
        // Each cut leaves a one-frame range below it; the cut that needs range 513 keeps
        // its lower frame and gives up everything above.
        assert_eq!(fa.owned_ranges().count(), MAX_RANGES);
        assert_eq!(fa.total_bytes(), MAX_RANGES as u64 * FRAME_SIZE);
        assert_eq!(fa.lost_bytes(), 63 * MIB - 2 * MAX_RANGES as u64 * FRAME_SIZE);
        let frames = drain(&mut fa);
        for f in frames {
            assert!(!reserved.iter().any(|&(s, e)| s <= f && f < e));
        }
    }

    #[test]
    fn display() {
        use std::string::ToString;
        assert_eq!(
            FrameError::OutOfMemory { requested_pages: 3 }.to_string(),
            "out of physical memory (3 pages requested)"
        );
        assert_eq!(FrameError::DoubleFree(0x1000).to_string(), "frame 0x1000 freed twice");
        assert!(FrameError::NotOwned(0x2000).to_string().contains("0x2000"));
        assert!(!FrameError::TooFragmented.to_string().is_empty());
    }
}
