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

/// A PD entry flag: caching disabled (for the MMIO hole below 4 GiB).
pub const CACHE_DISABLE: u64 = 1 << 4;
/// A PD entry flag: write-through.
pub const WRITE_THROUGH: u64 = 1 << 3;
/// A PD entry flag: a 2 MiB page.
pub const LARGE: u64 = 1 << 7;

static HIGH_PDS: [PageTable; 3] = [PageTable::new(), PageTable::new(), PageTable::new()];
static HIGH_MAPPED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Extends the boot ABI's identity map from 1 GiB to 4 GiB (2 MiB pages, [3 GiB, 4 GiB)
/// uncached), so the guest reaches the local APIC (0xFEE00000), the IOAPIC (0xFEC00000), PCI
/// ECAM and firmware tables wherever they lie below 4 GiB. Idempotent; the other vCPUs share
/// the tables (they run on the same CR3).
pub fn map_low_4g() {
    if HIGH_MAPPED.swap(true, Ordering::SeqCst) {
        return;
    }
    let pml4 = (read_cr3() & ADDRESS_MASK) as *const u64;
    // SAFETY: the boot ABI's PML4 is identity-mapped guest memory; entry 0 names the PDPT.
    let pdpt = unsafe { (pml4.read_volatile() & ADDRESS_MASK) as *mut u64 };
    for (i, pd) in HIGH_PDS.iter().enumerate() {
        let gib = (i as u64 + 1) << 30;
        let cache = if i == 2 { CACHE_DISABLE | WRITE_THROUGH } else { 0 };
        for (j, entry) in pd.0.iter().enumerate() {
            entry.store((gib + ((j as u64) << 21)) | PRESENT | WRITABLE | LARGE | cache, Ordering::SeqCst);
        }
        // SAFETY: PDPT entries 1..4 are unused by the boot ABI (it maps only the first GiB);
        // they now name our PDs, which identity-map the next three GiB.
        unsafe { pdpt.add(i + 1).write_volatile(pd.0.as_ptr() as u64 | PRESENT | WRITABLE) };
    }
    flush_tlb();
}
