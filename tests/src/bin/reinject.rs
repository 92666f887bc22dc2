//! Re-injection of an event whose delivery an exit cut short (IDT-vectoring information on
//! VMX, EXITINTINFO on SVM). The test device (module argument `testdev`) hides one RAM page
//! until the next nested fault on it; the guest hides the page its stack or its IDT is on and
//! then takes an event, so the CPU's own pushes or IDT read fault half-way through delivery.
//! Basalt maps the page again and delivers the same event again: the handler runs exactly
//! once, with the right vector, error code and return RIP, and Basalt counts the redelivery.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::idt::{self, Action, Event, Frame};
use basalt_guests::ucall::{exit_count, raise_interrupt};
use basalt_guests::{guest_assert_eq, guest_println, ExitCounter};
use core::arch::asm;

basalt_guests::entry!(run);

/// The test device's unmap register.
const UNMAP: u64 = 0x3F00_0000 + 0x118;
const VECTOR: u8 = 0x41;

fn resume(_: &Event, _: &mut Frame) -> Action {
    Action::Return
}

/// The guest-physical (= linear, identity-mapped) address of this vCPU's IDT.
fn idt_base() -> u64 {
    let mut idtr = [0u8; 10];
    // SAFETY: SIDT writes the 10-byte IDTR to our buffer.
    unsafe { asm!("sidt [{}]", in(reg) idtr.as_mut_ptr(), options(nostack, preserves_flags)) };
    u64::from_le_bytes(idtr[2..10].try_into().unwrap_or([0; 8]))
}

/// Hide the page at `page`, then enable interrupts for one instruction: the pending interrupt
/// is delivered with the page gone. Returns the RIP the interrupt should return to.
fn hide_then_sti(page: u64) -> u64 {
    let resume_at: u64;
    // SAFETY: the MMIO write goes to the test device (emulated; no stack use), STI; NOP lets
    // the pending interrupt in after the NOP, and its handler returns; CLI restores IF = 0.
    unsafe {
        asm!(
            "mov [{unmap}], {page}",
            "lea {out}, [rip + 2f]",
            "sti",
            "nop",
            "2:",
            "cli",
            unmap = in(reg) UNMAP,
            page = in(reg) page,
            out = out(reg) resume_at,
            options(nostack)
        )
    };
    resume_at
}

/// Hide the page at `page`, then INT3: the #BP's delivery meets the missing page. Returns the
/// address after the INT3 (a trap's return RIP).
fn hide_then_int3(page: u64) -> u64 {
    let after: u64;
    // SAFETY: as above; INT3 is handled by `resume` and returns to the next instruction.
    unsafe {
        asm!(
            "mov [{unmap}], {page}",
            "int3",
            "2:",
            "lea {out}, [rip + 2b]",
            unmap = in(reg) UNMAP,
            page = in(reg) page,
            out = out(reg) after,
            options(nostack)
        )
    };
    after
}

fn stack_page() -> u64 {
    let rsp: u64;
    // SAFETY: reads RSP.
    unsafe { asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags)) };
    // The first push of a delivery goes below RSP (the red zone is not used in the kernel code
    // model the guests build with, and `hide_*` leave the stack alone).
    (rsp - 8) & !0xFFF
}

fn run() {
    idt::install();
    idt::set_handler(VECTOR, resume);
    idt::set_handler(3, resume);
    let redelivered = exit_count(ExitCounter::Redelivered);

    // An external interrupt whose delivery pushes onto a missing stack page.
    raise_interrupt(VECTOR);
    let resume_at = hide_then_sti(stack_page());
    guest_assert_eq!(idt::count(VECTOR), 1);
    guest_assert_eq!(idt::last().map(|e| (e.vector, e.rip)), Some((VECTOR, resume_at)));
    let after_stack = exit_count(ExitCounter::Redelivered);

    // The same, with the IDT's page missing: the gate read faults.
    raise_interrupt(VECTOR);
    let resume_at = hide_then_sti((idt_base() + 16 * VECTOR as u64) & !0xFFF);
    guest_assert_eq!(idt::count(VECTOR), 2);
    guest_assert_eq!(idt::last().map(|e| (e.vector, e.rip)), Some((VECTOR, resume_at)));
    let after_idt = exit_count(ExitCounter::Redelivered);

    // A software exception (INT3, a trap): delivered again with its instruction length, so
    // the handler sees the RIP after the INT3, once.
    let after = hide_then_int3(stack_page());
    guest_assert_eq!(idt::count(3), 1);
    guest_assert_eq!(idt::last().map(|e| (e.vector, e.rip)), Some((3, after)));
    let after_int3 = exit_count(ExitCounter::Redelivered);

    // Each interrupt's delivery was cut short by the missing page and delivered again (at
    // least once: a delivery may touch the page more than once). An INT3 cut short is either
    // delivered again with its length (VMX) or, its RIP still at the INT3, runs again (SVM):
    // either way once, as checked above.
    guest_assert_eq!(after_stack > redelivered, true);
    guest_assert_eq!(after_idt > after_stack, true);
    guest_assert_eq!(after_int3 >= after_idt, true);
    guest_println!(
        "interrupt through a missing stack page, interrupt through a missing IDT page and INT3 through a missing stack page: each delivered once, {} redeliveries",
        after_int3 - redelivered
    );
}
