//! The whole-guest figure of `cargo xtask bench`: a small guest that does some work an OS
//! does (page faults handled in the guest, port I/O, timer reads) and reports, through one
//! Print, the TSC ticks (instructions under QEMU icount) from its first to its last TSC read:
//! `BENCH workload total=<ticks> iters=<page faults>`.
//!
//! The work: a 2 MiB region remapped with 4 KiB pages (the pagefault guest's technique); each
//! round unmaps one page, flushes it, touches it, and the #PF handler maps it back. Every 16th
//! round writes the scratch port (an I/O exit); every round reads the TSC.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::idt::{self, Action, Event, Frame, PAGE_FAULT};
use basalt_guests::paging::{invlpg, split_large_page, PageTable, PRESENT, WRITABLE};
use basalt_guests::{guest_assert_eq, guest_println, SCRATCH_PORT};
use core::arch::asm;
use core::sync::atomic::Ordering;

basalt_guests::entry!(run);

/// Page faults taken (one per round).
const ROUNDS: u64 = 4096;
/// The 2 MiB region remapped with 4 KiB pages (inside 16 MiB of RAM, clear of the image).
const REGION: u64 = 0x0060_0000;

static TABLE: PageTable = PageTable::new();

fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: LFENCE and RDTSC only read the time-stamp counter.
    unsafe { asm!("lfence", "rdtsc", "lfence", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

fn out32(port: u16, v: u32) {
    // SAFETY: a 32-bit OUT to Basalt's scratch port; no memory is touched.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags)) };
}

/// The #PF handler: map the faulting page back.
fn map_page(event: &Event, _: &mut Frame) -> Action {
    let index = ((event.cr2 - REGION) >> 12) as usize & 511;
    TABLE.0[index].fetch_or(PRESENT, Ordering::SeqCst);
    Action::Return
}

fn run() {
    idt::install();
    idt::set_handler(PAGE_FAULT, map_page);
    split_large_page(REGION, &TABLE, |_| PRESENT | WRITABLE);

    let start = rdtsc();
    let mut last = start;
    let mut sum = 0u64;
    for round in 0..ROUNDS {
        let index = (round * 7) as usize & 511;
        let va = REGION + index as u64 * 0x1000 + (round & 0xFF8);
        TABLE.0[index].fetch_and(!PRESENT, Ordering::SeqCst);
        invlpg(va);
        // SAFETY: `va` is in the region; the access faults once and the handler maps it back.
        unsafe { (va as *mut u64).write_volatile(round) };
        if round % 16 == 0 {
            out32(SCRATCH_PORT, round as u32);
        }
        let now = rdtsc();
        sum = sum.wrapping_add(now - last);
        last = now;
    }
    let total = rdtsc() - start;
    guest_assert_eq!(idt::count(PAGE_FAULT), ROUNDS);
    guest_assert_eq!(sum <= total, true);
    guest_println!("BENCH workload total={total} iters={ROUNDS}");
}
