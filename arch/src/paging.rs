//! Basalt's own page tables: an identity map of physical memory (SDM Vol. 3A 4.5).
//!
//! Basalt runs identity-mapped: virtual = physical for everything it touches. The loader's
//! trampoline maps only the first 4 GiB; this builds the map Basalt keeps, covering all of RAM
//! with 2 MiB pages, non-executable outside the kernel image and uncached where there is no
//! RAM (the APIC, the IOAPIC, PCI MMIO). The builder is pure: it writes table entries through
//! [`TableMemory`], so it is tested on the host.

/// Page-table entry bits (SDM Vol. 3A Table 4-15..4-19).
pub mod flags {
    pub const PRESENT: u64 = 1 << 0;
    pub const WRITABLE: u64 = 1 << 1;
    pub const WRITE_THROUGH: u64 = 1 << 3;
    pub const CACHE_DISABLE: u64 = 1 << 4;
    pub const HUGE: u64 = 1 << 7;
    pub const NO_EXECUTE: u64 = 1 << 63;
}

/// Size of one large page.
pub const LARGE_PAGE: u64 = 2 << 20;
const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;

/// Where the builder gets zeroed table frames and how it writes entries.
pub trait TableMemory {
    /// A fresh, zeroed 4 KiB frame (physical address), or `None` when memory is exhausted.
    fn alloc_table(&mut self) -> Option<u64>;
    /// Read entry `index` of the table at physical `table`.
    fn read(&self, table: u64, index: usize) -> u64;
    /// Write entry `index` of the table at physical `table`.
    fn write(&mut self, table: u64, index: usize, entry: u64);
}

/// How one 2 MiB page of the identity map is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LargePage {
    pub executable: bool,
    pub uncached: bool,
}

/// The identity map ran out of table frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfTables;

/// Build an identity map of `[0, top)` with 2 MiB pages; `kind(addr)` says how each is mapped.
/// Returns the PML4's physical address (the CR3 value).
pub fn build_identity_map(
    mem: &mut dyn TableMemory,
    top: u64,
    kind: &dyn Fn(u64) -> LargePage,
) -> Result<u64, OutOfTables> {
    let pml4 = mem.alloc_table().ok_or(OutOfTables)?;
    let mut addr = 0;
    while addr < top {
        let pdpt = next_table(mem, pml4, (addr >> 39) as usize & 511)?;
        let pd = next_table(mem, pdpt, (addr >> 30) as usize & 511)?;
        let k = kind(addr);
        let mut entry = addr | flags::PRESENT | flags::WRITABLE | flags::HUGE;
        if !k.executable {
            entry |= flags::NO_EXECUTE;
        }
        if k.uncached {
            entry |= flags::CACHE_DISABLE | flags::WRITE_THROUGH;
        }
        mem.write(pd, (addr >> 21) as usize & 511, entry);
        addr += LARGE_PAGE;
    }
    Ok(pml4)
}

fn next_table(mem: &mut dyn TableMemory, table: u64, index: usize) -> Result<u64, OutOfTables> {
    let entry = mem.read(table, index);
    if entry & flags::PRESENT != 0 {
        return Ok(entry & ADDR_MASK);
    }
    let next = mem.alloc_table().ok_or(OutOfTables)?;
    mem.write(table, index, next | flags::PRESENT | flags::WRITABLE);
    Ok(next)
}

/// Walk a 4-level table built by [`build_identity_map`]: the final 2 MiB entry for `addr`.
pub fn lookup(mem: &dyn TableMemory, pml4: u64, addr: u64) -> Option<u64> {
    let mut table = pml4;
    for shift in [39u32, 30] {
        let e = mem.read(table, (addr >> shift) as usize & 511);
        if e & flags::PRESENT == 0 {
            return None;
        }
        table = e & ADDR_MASK;
    }
    let e = mem.read(table, (addr >> 21) as usize & 511);
    (e & flags::PRESENT != 0).then_some(e)
}

/// The identity map's tables written straight into physical memory (kernel only).
pub struct PhysTables<F: FnMut() -> Option<u64>> {
    pub alloc: F,
}

impl<F: FnMut() -> Option<u64>> TableMemory for PhysTables<F> {
    fn alloc_table(&mut self) -> Option<u64> {
        let frame = (self.alloc)()?;
        // SAFETY: the frame was just handed to us by the frame allocator and is identity-mapped
        // by the boot tables (it lies below 4 GiB: the allocator hands out low memory first).
        unsafe { core::ptr::write_bytes(frame as *mut u8, 0, 4096) };
        Some(frame)
    }
    fn read(&self, table: u64, index: usize) -> u64 {
        // SAFETY: `table` is a frame this builder allocated; index < 512.
        unsafe { (table as *const u64).add(index).read_volatile() }
    }
    fn write(&mut self, table: u64, index: usize, entry: u64) {
        // SAFETY: as in `read`.
        unsafe { (table as *mut u64).add(index).write_volatile(entry) }
    }
}

/// Switch this CPU to the page tables at `pml4`.
///
/// # Safety
/// The tables must map everything the kernel uses at the same addresses as now.
pub unsafe fn load(pml4: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { core::arch::asm!("mov cr3, {}", in(reg) pml4, options(nostack)) };
}

/// The page tables this CPU uses now.
pub fn current() -> u64 {
    let cr3: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack)) };
    cr3 & ADDR_MASK
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::HashMap;

    struct HostTables {
        next: u64,
        mem: HashMap<(u64, usize), u64>,
        limit: usize,
        allocated: usize,
    }
    impl TableMemory for HostTables {
        fn alloc_table(&mut self) -> Option<u64> {
            if self.allocated == self.limit {
                return None;
            }
            self.allocated += 1;
            self.next += 4096;
            Some(self.next)
        }
        fn read(&self, table: u64, index: usize) -> u64 {
            *self.mem.get(&(table, index)).unwrap_or(&0)
        }
        fn write(&mut self, table: u64, index: usize, entry: u64) {
            self.mem.insert((table, index), entry);
        }
    }

    fn host(limit: usize) -> HostTables {
        HostTables { next: 0x10_0000, mem: HashMap::new(), limit, allocated: 0 }
    }

    #[test]
    fn identity_map_covers_range_with_requested_attributes() {
        let mut m = host(100);
        let kind = |a: u64| LargePage { executable: a < 4 * LARGE_PAGE, uncached: a >= 0xC000_0000 };
        let top = 6u64 << 30;
        let pml4 = build_identity_map(&mut m, top, &kind).unwrap();
        // 1 PML4 + 1 PDPT + 6 PDs.
        assert_eq!(m.allocated, 8);
        for addr in [0u64, 0x20_0000, 0x7FE0_0000, 0xFEE0_0000, (6u64 << 30) - LARGE_PAGE] {
            let e = lookup(&m, pml4, addr).expect("mapped");
            assert_eq!(e & ADDR_MASK & !(LARGE_PAGE - 1), addr, "identity at {addr:#x}");
            assert_ne!(e & flags::HUGE, 0);
            assert_eq!(e & flags::NO_EXECUTE == 0, addr < 4 * LARGE_PAGE);
            assert_eq!(e & flags::CACHE_DISABLE != 0, addr >= 0xC000_0000);
        }
        assert_eq!(lookup(&m, pml4, top), None);
    }

    #[test]
    fn running_out_of_frames_is_an_error() {
        let mut m = host(3);
        let kind = |_| LargePage { executable: false, uncached: false };
        assert_eq!(build_identity_map(&mut m, 4 << 30, &kind), Err(OutOfTables));
    }
}
