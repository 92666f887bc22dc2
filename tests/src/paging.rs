//! The guest's own page tables: finding the PD entry of an address in the identity map the boot
//! ABI gives, replacing a 2 MiB page by a table of 4 KiB pages the guest controls, and flushing.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

pub const PRESENT: u64 = 1 << 0;
pub const WRITABLE: u64 = 1 << 1;
const ADDRESS_MASK: u64 = 0x000F_FFFF_FFFF_F000;

/// A 4 KiB page table. Its entries are atomics because a #PF handler changes them.
#[repr(C, align(4096))]
pub struct PageTable(pub [AtomicU64; 512]);

impl PageTable {
    pub const fn new() -> Self {
        PageTable([const { AtomicU64::new(0) }; 512])
    }
}

impl Default for PageTable {
    fn default() -> Self {
        Self::new()
    }
}

pub fn read_cr3() -> u64 {
    let cr3: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack, preserves_flags)) };
    cr3
}

/// Flush the (non-global) TLB entries by rewriting CR3 with its own value.
pub fn flush_tlb() {
    // SAFETY: rewriting CR3 with its own value only flushes the non-global TLB entries.
    unsafe { asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack, preserves_flags)) };
}

/// Drop the TLB entry of `va`.
pub fn invlpg(va: u64) {
    // SAFETY: INVLPG only drops a TLB entry.
    unsafe { asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) };
}

/// The PD entry (in the boot ABI's identity-mapping tables) that maps guest-virtual `va`.
pub fn pd_entry(va: u64) -> *mut u64 {
    let pml4 = (read_cr3() & ADDRESS_MASK) as *const u64;
    // SAFETY: the tables are identity-mapped guest memory Basalt built (boot ABI); the indices
    // are below 512.
    unsafe {
        let pdpt = (pml4.add((va >> 39) as usize & 511).read_volatile() & ADDRESS_MASK) as *const u64;
        let pd = (pdpt.add((va >> 30) as usize & 511).read_volatile() & ADDRESS_MASK) as *mut u64;
        pd.add((va >> 21) as usize & 511)
    }
}

/// Map the 2 MiB region at `region` (identity, unused by anything else) through `table`: entry
/// `i` maps the region's page `i` with `flags(i)`. Flushes the TLB.
pub fn split_large_page(region: u64, table: &'static PageTable, flags: impl Fn(usize) -> u64) {
    for (i, entry) in table.0.iter().enumerate() {
        entry.store((region + i as u64 * 0x1000) | flags(i), Ordering::SeqCst);
    }
    // SAFETY: replaces the identity 2 MiB mapping of `region`, which the caller does not use
    // otherwise, by `table`, which maps the same frames.
    unsafe { pd_entry(region).write_volatile(table.0.as_ptr() as u64 | PRESENT | WRITABLE) };
    flush_tlb();
}
