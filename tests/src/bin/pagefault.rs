//! A guest page fault handled by the guest: a read of a page its own page tables leave
//! non-present faults with the right CR2 and error code; the handler maps the page and the
//! retried read sees the memory behind it.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::idt::{self, Action, Event, Frame, PAGE_FAULT};
use basalt_guests::paging::{split_large_page, PageTable, PRESENT, WRITABLE};
use basalt_guests::{guest_assert_eq, guest_println};
use core::sync::atomic::Ordering;

static TABLE: PageTable = PageTable::new();

basalt_guests::entry!(run);

/// The 2 MiB region we remap with 4 KiB pages (inside the 16 MiB of RAM, clear of the image).
const REGION: u64 = 0x0060_0000;
/// The page left non-present, and the address read in it.
const PAGE_INDEX: usize = 5;
const ADDRESS: u64 = REGION + PAGE_INDEX as u64 * 0x1000 + 0x10;
const VALUE: u64 = 0x5EED_F00D_CAFE_0042;

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

    split_large_page(REGION, &TABLE, |i| if i == PAGE_INDEX { WRITABLE } else { PRESENT | WRITABLE });
    let table = TABLE.0.as_ptr() as u64;
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
