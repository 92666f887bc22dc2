//! The local APIC timer: its rate (the core crystal clock of CPUID 0x15 where that is given),
//! the current count falling, the divide configuration, and one-shot, periodic and TSC-deadline
//! modes each firing at the programmed deadline (RDTSC-checked: never before it, and within
//! [`LATE_TICKS`] after it), with one HLT wake per expiry.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::apic::{self, TIMER_CURRENT, TIMER_ONE_SHOT, TIMER_PERIODIC, TIMER_TSC_DEADLINE};
use basalt_guests::hw::{rdmsr, rdtsc, spin_until, spin_until_sti, sti_hlt_cli, wrmsr};
use basalt_guests::idt::{self, Action, Event, Frame};
use basalt_guests::time::{self, Source};
use basalt_guests::{bare, guest_assert, guest_assert_eq, guest_println};
use core::sync::atomic::{AtomicU64, Ordering};

basalt_guests::entry!(run);

const VECTOR: u8 = 0x40;
/// Deadlines: 10 ms, above the exit latency of every platform (about 1 ms under nested KVM on
/// TCG), short enough for Bochs.
const ONE_SHOT_US: u64 = 10_000;
const PERIOD_US: u64 = 10_000;
const PERIODS: usize = 5;
/// How late an expiry may be seen (generous: the emulators' hosts are shared, and nested KVM
/// on TCG takes milliseconds per exit).
const LATE_US: u64 = 10_000;

static FIRED: AtomicU64 = AtomicU64::new(0);
static FIRED_AT: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];

fn on_timer(_: &Event, _: &mut Frame) -> Action {
    let t = rdtsc();
    let n = FIRED.fetch_add(1, Ordering::SeqCst) as usize;
    if let Some(slot) = FIRED_AT.get(n) {
        slot.store(t, Ordering::SeqCst);
    }
    apic::eoi();
    Action::Return
}

fn fired() -> u64 {
    FIRED.load(Ordering::SeqCst)
}

fn fired_at(n: usize) -> u64 {
    FIRED_AT[n].load(Ordering::SeqCst)
}

fn reset() {
    FIRED.store(0, Ordering::SeqCst);
}

/// The current count and the TSC it was read at: the middle of the RDTSCs around the read
/// (a read that exits to the hypervisor takes a while; its sample is somewhere inside).
fn sample() -> (u32, u64) {
    let before = rdtsc();
    let count = apic::read(TIMER_CURRENT);
    let after = rdtsc();
    (count, before + (after - before) / 2)
}

/// The timer's count rate at divisor `div`, measured against the TSC over `us` microseconds
/// (long enough that where inside its exit a read samples the count does not matter: an exit
/// costs up to a millisecond on an emulator).
fn measure_rate(div: u32, tsc_hz: u64, us: u64) -> u64 {
    apic::timer_start(VECTOR, TIMER_ONE_SHOT, true, div, u32::MAX);
    let (c0, t0) = sample();
    spin_until(time::us_to_tsc(us), || false);
    let (c1, t1) = sample();
    apic::timer_stop();
    guest_assert!(c1 < c0, "the current count falls (divide {}): {:#x} then {:#x}", div, c0, c1);
    (u128::from(c0 - c1) * u128::from(tsc_hz) / u128::from(t1 - t0)) as u64
}

/// How late an expiry may come, in TSC ticks: [`LATE_US`] plus 50 exits of this platform (an
/// expiry takes a few exits to reach the handler; under nested KVM on TCG one costs about a
/// millisecond, and a HLT wake there goes through L1's scheduler too).
static LATE_TICKS: AtomicU64 = AtomicU64::new(0);

/// The cheapest of a few CPUID round trips (each one exit under a hypervisor), in TSC ticks.
fn exit_cost() -> u64 {
    (0..8)
        .map(|_| {
            let t = rdtsc();
            let _ = basalt_guests::hw::cpuid(0, 0);
            rdtsc() - t
        })
        .min()
        .unwrap_or(0)
}

/// Checks expiry `n` at `at` against a deadline `expected` TSC ticks after `t0`.
fn check_deadline(what: &str, n: usize, t0: u64, expected: u64, slack: u64) {
    let elapsed = fired_at(n).wrapping_sub(t0);
    let late = LATE_TICKS.load(Ordering::SeqCst);
    guest_assert!(
        elapsed + slack >= expected,
        "{} expiry {} came early: {} TSC ticks after the start, deadline {}",
        what,
        n + 1,
        elapsed,
        expected
    );
    guest_assert!(
        elapsed <= expected + late,
        "{} expiry {} came late: {} TSC ticks after the start, deadline {} (+{} ticks allowed)",
        what,
        n + 1,
        elapsed,
        expected,
        late
    );
}

/// HLTs until `n` expiries arrived; returns the HLT wakes.
fn hlt_until(n: u64) -> u64 {
    let mut wakes = 0;
    while fired() < n {
        sti_hlt_cli();
        wakes += 1;
        guest_assert!(wakes <= 4 * n, "{} HLT wakes for {} expiries", wakes, fired());
    }
    wakes
}

fn run() {
    idt::install();
    idt::set_handler(VECTOR, on_timer);
    apic::enable();
    let (tsc_hz, tsc_source) = time::tsc_hz_source();
    LATE_TICKS.store(time::us_to_tsc(LATE_US) + 50 * exit_cost(), Ordering::SeqCst);

    // The rate: the crystal clock where CPUID 0x15 gives one (Linux programs the timer from
    // it), else what we measure.
    let measured = measure_rate(1, tsc_hz, 50_000);
    let (timer_hz, exact) = match time::crystal_hz() {
        Some(crystal) => {
            guest_assert!(
                measured.abs_diff(crystal) * 50 <= crystal,
                "the APIC timer counts at {} Hz, not at the crystal clock of CPUID 0x15, {} Hz",
                measured,
                crystal
            );
            (crystal, tsc_source == Source::Cpuid15)
        }
        None => (measured, false),
    };
    guest_println!("TSC {tsc_hz} Hz ({tsc_source:?}), APIC timer {timer_hz} Hz (measured {measured})");
    // With both rates from CPUID the conversion is exact; a measured one is good to 1%.
    let slack_of = |ticks: u64| if exact { ticks / 1000 } else { ticks / 100 };

    // The divide configuration.
    for div in [2, 16, 128] {
        let rate = measure_rate(div, tsc_hz, 50_000);
        guest_assert!(
            (rate * u64::from(div)).abs_diff(measured) * 20 <= measured,
            "divide by {}: the timer counts at {} Hz, undivided at {} Hz",
            div,
            rate,
            measured
        );
    }

    // One-shot, waiting with interrupts on.
    let ticks = timer_hz * ONE_SHOT_US / 1_000_000;
    let expected = ticks * tsc_hz / timer_hz;
    reset();
    let t0 = rdtsc();
    apic::timer_start(VECTOR, TIMER_ONE_SHOT, false, 1, ticks as u32);
    let ok = spin_until_sti(time::us_to_tsc(100_000), || fired() >= 1);
    guest_assert!(ok, "the one-shot timer ({} ticks) did not fire within 100 ms", ticks);
    check_deadline("one-shot", 0, t0, expected, slack_of(expected));
    guest_assert_eq!(apic::read(TIMER_CURRENT), 0);
    spin_until_sti(2 * expected, || false);
    guest_assert_eq!(fired(), 1);

    // One-shot, waiting in HLT: one wake.
    reset();
    let t0 = rdtsc();
    apic::timer_start(VECTOR, TIMER_ONE_SHOT, false, 1, ticks as u32);
    let wakes = hlt_until(1);
    guest_assert_eq!(wakes, 1);
    check_deadline("one-shot (HLT)", 0, t0, expected, slack_of(expected));

    // Periodic: N expiries in N periods, one HLT wake each, the count reloaded.
    let ticks = timer_hz * PERIOD_US / 1_000_000;
    let period = ticks * tsc_hz / timer_hz;
    reset();
    let t0 = rdtsc();
    apic::timer_start(VECTOR, TIMER_PERIODIC, false, 1, ticks as u32);
    let wakes = hlt_until(PERIODS as u64);
    let current = apic::read(TIMER_CURRENT);
    apic::timer_stop();
    guest_assert_eq!(wakes, PERIODS as u64);
    guest_assert!(current != 0 && u64::from(current) <= ticks, "periodic: the count reloads ({})", current);
    for n in 0..PERIODS {
        let expected = (n as u64 + 1) * period;
        check_deadline("periodic", n, t0, expected, slack_of(expected));
    }

    // TSC-deadline.
    if !apic::has_tsc_deadline() {
        guest_assert!(!bare::under_basalt(), "CPUID.1:ECX[24] (TSC-deadline timer) is clear");
        guest_println!("no TSC-deadline timer on this CPU: skipped");
        return;
    }
    apic::write(apic::LVT_TIMER, u32::from(VECTOR) | TIMER_TSC_DEADLINE);
    reset();
    let deadline = rdtsc() + time::us_to_tsc(ONE_SHOT_US);
    wrmsr(apic::IA32_TSC_DEADLINE, deadline);
    let wakes = hlt_until(1);
    guest_assert_eq!(wakes, 1);
    guest_assert!(
        fired_at(0) >= deadline,
        "TSC-deadline: fired at {} before the deadline {}",
        fired_at(0),
        deadline
    );
    guest_assert!(
        fired_at(0) <= deadline + LATE_TICKS.load(Ordering::SeqCst),
        "TSC-deadline: fired at {}, deadline {}",
        fired_at(0),
        deadline
    );
    guest_assert_eq!(rdmsr(apic::IA32_TSC_DEADLINE), 0);
    // Disarmed by writing 0: nothing fires.
    let deadline = rdtsc() + time::us_to_tsc(ONE_SHOT_US);
    wrmsr(apic::IA32_TSC_DEADLINE, deadline);
    wrmsr(apic::IA32_TSC_DEADLINE, 0);
    spin_until_sti(2 * time::us_to_tsc(ONE_SHOT_US), || false);
    guest_assert_eq!(fired(), 1);
    // A deadline already past fires at once.
    wrmsr(apic::IA32_TSC_DEADLINE, rdtsc() - 1);
    let ok = spin_until_sti(LATE_TICKS.load(Ordering::SeqCst), || fired() == 2);
    guest_assert!(ok, "a TSC deadline in the past did not fire");
    apic::timer_stop();
    guest_println!("one-shot, periodic and TSC-deadline timers fire on time");
}
