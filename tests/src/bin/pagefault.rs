//! A guest page fault handled by the guest: a read of a page its own page tables leave
//! non-present faults with the right CR2 and error code; the handler maps the page and the
//! retried read sees the memory behind it.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::idt::{self, Action, Event, Frame, PAGE_FAULT};
use basalt_guests::{guest_assert_eq, guest_println};
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

basalt_guests::entry!(run);

/// The 2 MiB region we remap with 4 KiB pages (inside the 16 MiB of RAM, clear of the image).
const REGION: u64 = 0x0060_0000;
/// The page left non-present, and the address read in it.
const PAGE_INDEX: usize = 5;
const ADDRESS: u64 = REGION + PAGE_INDEX as u64 * 0x1000 + 0x10;
const VALUE: u64 = 0x5EED_F00D_CAFE_0042;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const ADDRESS_MASK: u64 = 0x000F_FFFF_FFFF_F000;

/// A page table: its entries are atomics because the #PF handler changes one.
#[repr(C, align(4096))]
struct PageTable([AtomicU64; 512]);

static TABLE: PageTable = PageTable([const { AtomicU64::new(0) }; 512]);

fn read_cr3() -> u64 {
    let cr3: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack, preserves_flags)) };
    cr3
}

fn flush_tlb() {
    // SAFETY: rewriting CR3 with its own value only flushes the (non-global) TLB entries.
    unsafe { asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack, preserves_flags)) };
}

/// The PD entry (in Basalt's identity-mapping tables) that maps guest-virtual `va`.
fn pd_entry(va: u64) -> *mut u64 {
    let pml4 = (read_cr3() & ADDRESS_MASK) as *const u64;
    // SAFETY: the tables are identity-mapped guest memory Basalt built (boot ABI); the indices
    // are below 512.
    unsafe {
        let pdpt = (pml4.add((va >> 39) as usize & 511).read_volatile() & ADDRESS_MASK) as *const u64;
        let pd = (pdpt.add((va >> 30) as usize & 511).read_volatile() & ADDRESS_MASK) as *mut u64;
        pd.add((va >> 21) as usize & 511)
    }
}

fn map_page(_: &Event, _: &mut Frame) -> Action {
    TABLE.0[PAGE_INDEX].fetch_or(PRESENT, Ordering::SeqCst);
    // The page was not present, so no TLB holds it: retry the read.
    Action::Return
}

fn run() {
    idt::install();
    idt::set_handler(PAGE_FAULT, map_page);

    // Through the 2 MiB identity page, before the remap.
    let target = ADDRESS as *mut u64;
    // SAFETY: ADDRESS is in guest RAM that nothing else uses.
    unsafe { target.write_volatile(VALUE) };

    for (i, entry) in TABLE.0.iter().enumerate() {
        let flags = if i == PAGE_INDEX { WRITABLE } else { PRESENT | WRITABLE };
        entry.store((REGION + i as u64 * 0x1000) | flags, Ordering::SeqCst);
    }
    let pde = pd_entry(REGION);
    let table = TABLE.0.as_ptr() as u64;
    // SAFETY: replaces the 2 MiB mapping of REGION (unused memory) by our table, which maps the
    // same frames except one.
    unsafe { pde.write_volatile(table | PRESENT | WRITABLE) };
    flush_tlb();
    guest_println!("PD entry for {REGION:#x} now points to the page table at {table:#x}");

    // SAFETY: faults once (non-present page); the handler maps it and the read is retried.
    let seen = unsafe { target.read_volatile() };
    guest_assert_eq!(idt::count(PAGE_FAULT), 1);
    let event = idt::last().unwrap_or(Event { vector: 0, error_code: u64::MAX, cr2: 0, rip: 0 });
    guest_assert_eq!(event.cr2, ADDRESS);
    // Not present, read, supervisor: error code 0.
    guest_assert_eq!(event.error_code, 0);
    guest_assert_eq!(seen, VALUE);
}
