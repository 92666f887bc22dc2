//! Per-VM memory accounting: every host frame a VM causes to be allocated (its RAM, its VMCS or
//! VMCB, bitmaps, nested page tables) is charged to it, checked against its quota and freed
//! with it. A VM over its quota fails alone with a clear message.

use crate::frames::{FrameAllocator, FrameError};
use alloc::vec::Vec;

/// Why a VM could not get memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeError {
    /// The allocation would take the VM past its quota.
    OverQuota { quota: u64, charged: u64, requested: u64 },
    /// The machine itself has no memory left.
    Host(FrameError),
}

impl core::fmt::Display for ChargeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ChargeError::OverQuota { quota, charged, requested } => write!(
                f,
                "over its memory quota: {} KiB charged + {} KiB requested > {} KiB allowed",
                charged >> 10,
                requested >> 10,
                quota >> 10
            ),
            ChargeError::Host(e) => write!(f, "host out of memory: {e}"),
        }
    }
}

/// What a VM has been charged for.
#[derive(Debug)]
pub struct Account {
    quota: u64,
    charged: u64,
    /// Of `charged`, the heap bytes.
    heap: u64,
    allocations: Vec<(u64, usize)>,
}

impl Account {
    pub fn new(quota: u64) -> Self {
        Account { quota, charged: 0, heap: 0, allocations: Vec::new() }
    }

    /// Bytes charged so far.
    pub fn charged(&self) -> u64 {
        self.charged
    }

    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// Hold the VM to `quota` from now on (what is charged already stays charged).
    pub fn set_quota(&mut self, quota: u64) {
        self.quota = quota;
    }

    /// Allocate `pages` contiguous frames aligned to `align` from `frames`, charged to this VM.
    pub fn alloc(
        &mut self,
        frames: &mut FrameAllocator,
        pages: usize,
        align: u64,
    ) -> Result<u64, ChargeError> {
        let bytes = pages as u64 * 4096;
        if self.charged + bytes > self.quota {
            return Err(ChargeError::OverQuota {
                quota: self.quota,
                charged: self.charged,
                requested: bytes,
            });
        }
        let addr = frames.alloc_contiguous(pages, align).map_err(ChargeError::Host)?;
        self.allocations.push((addr, pages));
        self.charged += bytes;
        Ok(addr)
    }

    /// Charge `bytes` of Basalt's heap the VM holds (its device models and firmware tables,
    /// counted by `crate::heap::charged`): counted against the quota like its frames, freed
    /// with the VM.
    pub fn charge_heap(&mut self, bytes: u64) -> Result<(), ChargeError> {
        if self.charged + bytes > self.quota {
            return Err(ChargeError::OverQuota {
                quota: self.quota,
                charged: self.charged,
                requested: bytes,
            });
        }
        self.charged += bytes;
        self.heap += bytes;
        Ok(())
    }

    /// The heap bytes charged ([`Account::charge_heap`]).
    pub fn heap(&self) -> u64 {
        self.heap
    }

    /// Every allocation charged so far: (physical address, pages).
    pub fn allocations(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
        self.allocations.iter().copied()
    }

    /// Give everything back to `frames`.
    pub fn release(&mut self, frames: &mut FrameAllocator) {
        for (addr, pages) in self.allocations.drain(..) {
            // A failure here means the allocator's books and ours disagree: a Basalt bug.
            frames.free(addr, pages).expect("a VM's frames return to the allocator they came from");
        }
        self.charged = 0;
        self.heap = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use basalt_boot::{MemoryKind, MemoryMap, MemoryRegion};

    fn allocator() -> FrameAllocator {
        let mut map = MemoryMap::new();
        map.add(MemoryRegion::new(0x10_0000, 0x110_0000, MemoryKind::Usable)).unwrap();
        map.normalize().unwrap();
        FrameAllocator::new(&map, &[])
    }

    #[test]
    fn charges_refuse_past_the_quota_and_release_returns_everything() {
        let mut frames = allocator();
        let before = frames.free_bytes();
        let mut a = Account::new(64 << 10);
        a.alloc(&mut frames, 8, 4096).unwrap();
        a.alloc(&mut frames, 8, 4096).unwrap();
        assert_eq!(a.charged(), 64 << 10);
        let e = a.alloc(&mut frames, 1, 4096).unwrap_err();
        assert_eq!(e, ChargeError::OverQuota { quota: 64 << 10, charged: 64 << 10, requested: 4096 });
        assert!(e.to_string().contains("over its memory quota"));
        assert_eq!(frames.free_bytes(), before - (64 << 10));
        a.release(&mut frames);
        assert_eq!((a.charged(), frames.free_bytes()), (0, before));
    }

    #[test]
    fn heap_bytes_count_against_the_quota() {
        let mut frames = allocator();
        let mut a = Account::new(16 << 10);
        a.alloc(&mut frames, 2, 4096).unwrap();
        a.charge_heap(6 << 10).unwrap();
        assert_eq!((a.charged(), a.heap()), (14 << 10, 6 << 10));
        assert!(matches!(a.charge_heap(4 << 10), Err(ChargeError::OverQuota { .. })));
        a.release(&mut frames);
        assert_eq!((a.charged(), a.heap()), (0, 0));
    }

    #[test]
    fn host_exhaustion_is_reported_not_charged() {
        let mut frames = allocator();
        let mut a = Account::new(u64::MAX / 2);
        let e = a.alloc(&mut frames, 1 << 20, 4096).unwrap_err();
        assert!(matches!(e, ChargeError::Host(FrameError::OutOfMemory { .. })));
        assert_eq!(a.charged(), 0);
    }
}
