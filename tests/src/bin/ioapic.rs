//! The IOAPIC, driven by the test device's interrupt line (`testdev`; in bare QEMU
//! `-device pc-testdev`): an edge pulse delivers once; an asserted level line delivers, holds
//! Remote IRR until the EOI, is delivered again after an EOI while still asserted, and not after
//! deassert and EOI; a level line asserted while masked delivers on unmask.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::hw::spin_until_sti;
use basalt_guests::idt::{self, Action, Event, Frame};
use basalt_guests::ioapic::{self, LEVEL, MASKED, REMOTE_IRR};
use basalt_guests::{apic, irqline, time};
use basalt_guests::{guest_assert, guest_assert_eq, guest_println};
use core::sync::atomic::{AtomicU64, Ordering};

basalt_guests::entry!(run);

const GSI: u8 = 10;
const V_EDGE: u8 = 0x60;
const V_LEVEL: u8 = 0x61;
const WAIT_US: u64 = 50_000;
const SETTLE_US: u64 = 2_000;

static EDGES: AtomicU64 = AtomicU64::new(0);
static LEVELS: AtomicU64 = AtomicU64::new(0);

fn on_edge(_: &Event, _: &mut Frame) -> Action {
    EDGES.fetch_add(1, Ordering::SeqCst);
    apic::eoi();
    Action::Return
}

/// The level handler leaves the EOI to the test.
fn on_level(_: &Event, _: &mut Frame) -> Action {
    LEVELS.fetch_add(1, Ordering::SeqCst);
    Action::Return
}

fn edges() -> u64 {
    EDGES.load(Ordering::SeqCst)
}

fn levels() -> u64 {
    LEVELS.load(Ordering::SeqCst)
}

fn wait(n: u64, count: fn() -> u64, what: &str) {
    let ok = spin_until_sti(time::us_to_tsc(WAIT_US), || count() >= n);
    guest_assert!(ok, "{}: {} deliveries, not {}", what, count(), n);
    spin_until_sti(time::us_to_tsc(SETTLE_US), || false);
    guest_assert!(count() == n, "{}: {} deliveries, not {}", what, count(), n);
}

fn remote_irr() -> bool {
    ioapic::entry(u32::from(GSI)) & REMOTE_IRR != 0
}

fn run() {
    idt::install();
    idt::set_handler(V_EDGE, on_edge);
    idt::set_handler(V_LEVEL, on_level);
    apic::enable();
    let bsp = apic::id();
    let pins = ioapic::pins();
    guest_assert_eq!(pins, 24);
    let pin = u32::from(GSI);

    // The entry reads back as written.
    let entry = ioapic::fixed(V_EDGE, bsp, false, true);
    ioapic::set_entry(pin, entry);
    guest_assert_eq!(ioapic::entry(pin) & !(1 << 12), entry);

    // Edge: one pulse, one delivery.
    irqline::set_level(GSI, false);
    ioapic::set_entry(pin, ioapic::fixed(V_EDGE, bsp, false, false));
    irqline::pulse(GSI);
    wait(1, edges, "an edge pulse");
    irqline::pulse(GSI);
    wait(2, edges, "a second edge pulse");

    // Level: delivered while asserted, Remote IRR set until the EOI.
    ioapic::set_entry(pin, ioapic::fixed(V_LEVEL, bsp, true, false));
    guest_assert!(!remote_irr(), "Remote IRR set before any level interrupt");
    irqline::set_level(GSI, true);
    wait(1, levels, "an asserted level line");
    guest_assert!(remote_irr(), "Remote IRR is clear after a level interrupt was delivered, before its EOI");
    guest_assert!(
        apic::read(apic::TMR + 0x10 * u32::from(V_LEVEL / 32)) & (1 << (V_LEVEL % 32)) != 0,
        "the local APIC's TMR does not mark vector {:#x} level-triggered",
        V_LEVEL
    );
    // EOI while still asserted: delivered again.
    apic::eoi();
    wait(2, levels, "a level line still asserted at the EOI");
    guest_assert!(remote_irr(), "Remote IRR is clear after the second delivery");
    // Deassert, then EOI: no more.
    irqline::set_level(GSI, false);
    apic::eoi();
    wait(2, levels, "a deasserted level line after the EOI");
    guest_assert!(!remote_irr(), "Remote IRR is still set after deassert and EOI");

    // Masked: asserting delivers nothing until the unmask.
    ioapic::set_entry(pin, ioapic::fixed(V_LEVEL, bsp, true, true));
    irqline::set_level(GSI, true);
    wait(2, levels, "a level line asserted while masked");
    guest_assert!(!remote_irr(), "Remote IRR set on a masked pin");
    ioapic::unmask(pin);
    wait(3, levels, "a masked, asserted level line once unmasked");
    guest_assert!(remote_irr(), "Remote IRR is clear after the delivery on unmask");
    irqline::set_level(GSI, false);
    apic::eoi();
    wait(3, levels, "the line deasserted");
    guest_assert!(!remote_irr(), "Remote IRR is still set at the end");
    ioapic::set_entry(pin, MASKED | LEVEL | u64::from(V_LEVEL));
    guest_println!("IOAPIC pin {GSI}: edge, level with Remote IRR and EOI, and masking behave");
}
