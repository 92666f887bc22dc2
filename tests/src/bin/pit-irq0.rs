//! The PIT's IRQ0 through the IOAPIC: the MADT's interrupt source override sends ISA IRQ0 to
//! GSI 2; with that pin programmed and channel 0 in mode 2 at 100 Hz, interrupts arrive at about
//! 100 Hz (TSC-checked, generous bounds).
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::hw::{rdtsc, spin_until_sti};
use basalt_guests::idt::{self, Action, Event, Frame};
use basalt_guests::{acpi, apic, ioapic, pit, time};
use basalt_guests::{guest_assert, guest_assert_eq, guest_println};
use core::sync::atomic::{AtomicU64, Ordering};

basalt_guests::entry!(run);

const VECTOR: u8 = 0x30;
/// 100 Hz: slow enough that each tick is taken before the next on every platform (an exit costs
/// about a millisecond under nested KVM on TCG).
const HZ: u64 = 100;
const TICKS: u64 = 10;

static COUNT: AtomicU64 = AtomicU64::new(0);
static FIRST: AtomicU64 = AtomicU64::new(0);
static LAST: AtomicU64 = AtomicU64::new(0);

fn on_tick(_: &Event, _: &mut Frame) -> Action {
    let t = rdtsc();
    if COUNT.fetch_add(1, Ordering::SeqCst) == 0 {
        FIRST.store(t, Ordering::SeqCst);
    }
    LAST.store(t, Ordering::SeqCst);
    apic::eoi();
    Action::Return
}

fn run() {
    idt::install();
    idt::set_handler(VECTOR, on_tick);
    apic::enable();
    let tsc_hz = time::tsc_hz();
    let madt = acpi::find_rsdp().and_then(|r| acpi::find_table(&r, b"APIC"));
    guest_assert!(madt.is_some(), "no MADT");
    let madt = madt.unwrap_or(0);
    let iso = acpi::madt_override(madt, 0);
    guest_assert!(iso.is_some(), "the MADT has no interrupt source override for IRQ0");
    let (gsi, flags) = iso.unwrap_or((0, 0));
    guest_assert_eq!(gsi, 2);
    // MPS INTI flags: polarity bits 0-1, trigger bits 2-3 (0 conforms: ISA, high and edge).
    let active_low = flags & 3 == 3;
    let level = (flags >> 2) & 3 == 3;
    guest_assert!(!level, "IRQ0's override says level-triggered (flags {:#x})", flags);

    let mut entry = ioapic::fixed(VECTOR, apic::id(), false, false);
    if active_low {
        entry |= ioapic::ACTIVE_LOW;
    }
    pit::start_periodic(pit::count_for_hz(HZ));
    ioapic::set_entry(gsi, entry);
    let timeout = time::us_to_tsc(TICKS * 1_000_000 / HZ * 5);
    let ok = spin_until_sti(timeout, || COUNT.load(Ordering::SeqCst) > TICKS);
    ioapic::mask(gsi);
    pit::stop_channel0();
    let count = COUNT.load(Ordering::SeqCst);
    guest_assert!(ok, "{} PIT interrupts on GSI {} in {} ms, wanted {}", count, gsi, 5 * TICKS, TICKS + 1);
    // From the first to the last: count - 1 periods.
    let periods = count - 1;
    let us = (LAST.load(Ordering::SeqCst) - FIRST.load(Ordering::SeqCst)) * 1_000_000 / tsc_hz;
    let expected = periods * 1_000_000 / HZ;
    guest_assert!(
        us * 4 >= expected * 3 && us <= expected * 2,
        "{} PIT periods took {} us, expected about {} us",
        periods,
        us,
        expected
    );
    guest_println!("IRQ0 -> GSI {gsi}: {periods} periods of the 100 Hz PIT in {us} us");
}
