//! Event injection: exceptions Basalt injects arrive through the guest's IDT with the right
//! vector, error code and CR2 (#PF), once each, and the guest carries on after its handler
//! returns; an injected NMI reaches the guest's NMI handler; INT3 gives #BP with the RIP
//! after it; an NMI raised while the guest handles one waits for the handler's IRET (NMIs
//! are blocked until then, SDM 6.7.1) and then arrives, once.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::idt::{self, Action, Event, Frame};
use basalt_guests::ucall::{inject_exception, inject_nmi};
use basalt_guests::{guest_assert_eq, guest_println};
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

basalt_guests::entry!(run);

fn resume(_: &Event, _: &mut Frame) -> Action {
    Action::Return
}

/// Ask for `vector` and return (the event the guest's handler saw, the RIP after the ucall).
fn injected(vector: u8, error_code: Option<u32>, cr2: u64) -> (Event, u64) {
    let before = idt::count(vector);
    inject_exception(vector, error_code, cr2);
    let after: u64;
    // SAFETY: reads the address of this instruction: the injected event arrives before it.
    unsafe { asm!("lea {}, [rip]", out(reg) after, options(nomem, nostack)) };
    guest_assert_eq!(idt::count(vector), before + 1);
    (idt::last().unwrap_or(Event { vector: 0xFF, error_code: 0, cr2: 0, rip: 0 }), after)
}

fn run() {
    idt::install();
    for v in [0u8, 3, 6, 13, 14, 2] {
        idt::set_handler(v, resume);
    }
    for (vector, error_code, cr2) in
        [(0u8, None, 0), (6, None, 0), (13, Some(0x18u32), 0), (14, Some(0x2), 0xDEAD_B000u64)]
    {
        let (event, after) = injected(vector, error_code, cr2);
        guest_assert_eq!(event.vector, vector);
        guest_assert_eq!(event.error_code, u64::from(error_code.unwrap_or(0)));
        if vector == 14 {
            guest_assert_eq!(event.cr2, cr2);
        }
        let _ = after;
        guest_println!(
            "injected vector {vector}: error code {:#x}, CR2 {:#x}, RIP {:#x}",
            event.error_code,
            event.cr2,
            event.rip
        );
    }

    // INT3: #BP, a trap: the saved RIP is the byte after it.
    let after: u64;
    // SAFETY: INT3 (handled, returns) then reads the address after it.
    unsafe { asm!("int3", "2:", "lea {}, [rip + 2b]", out(reg) after, options(nomem, nostack)) };
    guest_assert_eq!(idt::count(3), 1);
    guest_assert_eq!(idt::last().map(|e| e.rip), Some(after));

    // An injected NMI reaches the guest's NMI handler.
    let nmis = idt::count(2);
    inject_nmi();
    guest_assert_eq!(idt::count(2), nmis + 1);
    guest_println!("INT3 gave #BP at RIP {after:#x}; the injected NMI reached the guest");

    // An NMI raised inside the NMI handler: not nested, delivered after the handler returns.
    idt::set_handler(2, nmi_handler);
    let nmis = idt::count(2);
    inject_nmi();
    // The second NMI may arrive right after the IRET or at the next exit (SVM without vNMI
    // learns of the IRET when it completes; with IF = 0 no interrupt window follows it).
    core::hint::black_box(basalt_guests::ucall::exit_count(basalt_guests::ExitCounter::Cpuid));
    guest_assert_eq!(MAX_DEPTH.load(Ordering::SeqCst), 1);
    guest_assert_eq!(idt::count(2), nmis + 2);
    guest_assert_eq!(SEEN_IN_HANDLER.load(Ordering::SeqCst), nmis + 1);
    guest_println!("an NMI raised in the NMI handler waited for its IRET");
}

static DEPTH: AtomicU64 = AtomicU64::new(0);
static MAX_DEPTH: AtomicU64 = AtomicU64::new(0);
static RAISED: AtomicU64 = AtomicU64::new(0);
/// The NMI count the first handler saw at its end (before its IRET).
static SEEN_IN_HANDLER: AtomicU64 = AtomicU64::new(0);

fn nmi_handler(_: &Event, _: &mut Frame) -> Action {
    let depth = DEPTH.fetch_add(1, Ordering::SeqCst) + 1;
    MAX_DEPTH.fetch_max(depth, Ordering::SeqCst);
    if RAISED.fetch_add(1, Ordering::SeqCst) == 0 {
        inject_nmi();
        // Exits of other kinds: each is a chance for Basalt to inject the NMI too early.
        for _ in 0..3 {
            core::hint::black_box(basalt_guests::ucall::exit_count(basalt_guests::ExitCounter::Cpuid));
        }
        SEEN_IN_HANDLER.store(idt::count(2), Ordering::SeqCst);
    }
    DEPTH.fetch_sub(1, Ordering::SeqCst);
    Action::Return
}
