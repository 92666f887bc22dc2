//! Bounded deterministic fuzzing of the local APIC: random sequences of MMIO and MSR
//! accesses, APIC_BASE and TSC_DEADLINE writes, deliveries, acknowledges and EOIs, LINT
//! edges, INIT, page round trips and timer advances with a monotonic guest TSC. Checks that
//! nothing panics and that the invariants the VM core relies on hold after every step.

use basalt_devices::bus::{Ctx, Timed};
use basalt_devices::irq::{DeliveryMode, Destination, InterruptMessage, RecordingSink};
use basalt_devices::lapic::{regs, Action, Lapic, Lvt, Mode};
use basalt_devices::time::Timebase;
use basalt_emu::fuzz::XorShift;

const SEEDS: u64 = 48;
const STEPS: usize = 4_000;

/// Offsets of the implemented registers, to bias accesses toward them.
const OFFSETS: [u64; 27] = [
    0x20, 0x30, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0, 0x100, 0x170, 0x180, 0x200, 0x270, 0x280,
    0x2F0, 0x300, 0x310, 0x320, 0x330, 0x340, 0x350, 0x360, 0x370, 0x380, 0x3E0,
];

fn value(rng: &mut XorShift) -> u64 {
    match rng.below(8) {
        0 => 0,
        1 => rng.below(0x100),
        2 => rng.below(0x100) | (rng.below(8) << 8) | (rng.below(4) << 17),
        3 => 0x1FF,
        4 => 0x1_0000 | rng.below(0x100),
        5 => rng.below(4) << 17 | (0x20 + rng.below(0xE0)),
        6 => rng.below(2000),
        _ => rng.next_u64() & if rng.one_in(4) { !0 } else { 0xFFFF_FFFF },
    }
}

fn destination(rng: &mut XorShift) -> Destination {
    let id = match rng.below(4) {
        0 => 0xFF,
        1 => 0xFFFF_FFFF,
        2 => rng.below(4) as u32,
        _ => rng.next_u64() as u32,
    };
    match rng.below(5) {
        0 => Destination::Physical(id),
        1 => Destination::Logical(id),
        2 => Destination::This,
        3 => Destination::AllIncludingSelf,
        _ => Destination::AllExcludingSelf,
    }
}

fn message(rng: &mut XorShift) -> InterruptMessage {
    let delivery = loop {
        if let Some(m) = DeliveryMode::from_bits(rng.below(8) as u32) {
            break m;
        }
    };
    InterruptMessage {
        vector: rng.next_u64() as u8,
        delivery: if rng.one_in(2) { DeliveryMode::Fixed } else { delivery },
        destination: destination(rng),
        level_triggered: rng.one_in(3),
        assert: !rng.one_in(5),
    }
}

/// The vectors set in the 8-word bitmap at `first`, lowest first.
fn bits(l: &Lapic, first: usize) -> impl Iterator<Item = u8> + '_ {
    (0..8).flat_map(move |w| {
        let mut word = l.regs()[first + w];
        core::iter::from_fn(move || {
            (word != 0).then(|| {
                let b = word.trailing_zeros();
                word &= word - 1;
                (w as u32 * 32 + b) as u8
            })
        })
    })
}

/// Program the timer as a guest would: software-enable, a divider, an unmasked vector in a
/// random mode, then an initial count or a TSC deadline.
fn program_timer(l: &mut Lapic, rng: &mut XorShift, now: u64) {
    let mode = rng.below(3) as u32;
    let lvt = (mode << 17) | (0x20 + rng.below(0xE0) as u32);
    let dcr = [0, 1, 2, 3, 8, 9, 0xA, 0xB][rng.below(8) as usize];
    let span = if rng.one_in(4) { 1 << 32 } else { 5_000 };
    let count = 1 + rng.below(span - 1) as u32;
    let regs = [(0xF0, 0x1FF), (0x3E0, dcr), (0x320, lvt), (0x380, count)];
    for (off, v) in regs {
        match l.mode() {
            Mode::XApic => {
                l.mmio_write(now, off, &v.to_le_bytes());
            }
            Mode::X2Apic => {
                l.msr_write(now, 0x800 + (off as u32 >> 4), v as u64).unwrap();
            }
            Mode::Disabled => return,
        }
    }
    if mode == 2 {
        l.set_tsc_deadline(now, now + rng.below(1_000_000));
    }
}

fn check(l: &Lapic, now: u64) {
    let r = l.regs();
    // No vector 0-15 ever in IRR, ISR or TMR.
    for first in [regs::IRR, regs::ISR, regs::TMR] {
        assert_eq!(r[first] & 0xFFFF, 0, "vectors 0-15 in {first:#x}");
    }
    // ISR holds at most one vector per priority class (each acknowledge is above PPR).
    let mut classes = 0u32;
    for v in bits(l, regs::ISR) {
        let c = 1 << (v >> 4);
        assert_eq!(classes & c, 0, "two in-service vectors in class {:x}", v >> 4);
        classes |= c;
    }
    // PPR is the SDM function of TPR and the highest ISR vector.
    let tpr = r[regs::TPR];
    assert!(tpr <= 0xFF);
    let isrv = bits(l, regs::ISR).last().unwrap_or(0) as u32;
    let ppr = if tpr & 0xF0 >= isrv & 0xF0 { tpr } else { isrv & 0xF0 };
    assert_eq!(r[regs::PPR], ppr);
    // A pending interrupt is in IRR, above PPR, and only when software-enabled.
    if let Some(v) = l.pending_interrupt() {
        assert!(l.irr(v) && v >= 16);
        assert!((v & 0xF0) as u32 > ppr & 0xF0);
        assert!(l.software_enabled());
    }
    // Read-only registers.
    assert_eq!(r[regs::VERSION] & 0xFF_FFFF, 0x06_0014);
    assert_eq!(r[regs::ICR_LOW] & regs::ICR_BUSY, 0);
    if l.mode() == Mode::XApic {
        assert_eq!(r[regs::DFR] & 0x0FFF_FFFF, 0x0FFF_FFFF);
        assert_eq!(r[regs::ID] & 0x00FF_FFFF, 0);
    }
    if l.mode() == Mode::X2Apic {
        assert_eq!(r[regs::LDR], regs::x2apic_ldr(r[regs::ID]));
    }
    if !l.software_enabled() && l.mode() != Mode::Disabled {
        for i in regs::LVTS {
            assert_ne!(r[i] & regs::LVT_MASKED, 0, "LVT {i:#x} unmasked while disabled");
        }
    }
    // After being brought up to `now`, an armed timer expires in the future.
    if let Some(d) = l.deadline() {
        assert!(d > now, "deadline {d} not after {now}");
        assert!(l.mode() != Mode::Disabled);
    }
    if l.mode() == Mode::Disabled {
        assert_eq!(l.pending_interrupt(), None);
        assert!(!l.matches(Destination::Physical(0xFF)));
    }
}

fn run(seed: u64) {
    let mut rng = XorShift::new(seed);
    let id = if rng.one_in(2) { seed as u32 & 3 } else { rng.next_u64() as u32 };
    // A TSC at least as fast as the timer clock, so a started count always lies ahead.
    let bus = [1_000_000_000, 25_000_000, 100_000_000][rng.below(3) as usize];
    let tsc = bus * (1 + rng.below(4)) + rng.below(1_000_000);
    let mut l = Lapic::new(id, seed & 1 == 0, Timebase::new(tsc), bus);
    if rng.one_in(2) {
        l.set_suppress_eoi_broadcast_supported(true);
    }
    l.set_max_phys_bits(32 + rng.below(21) as u8);
    let mut now: u64 = rng.below(1 << 40);
    let mut sink = RecordingSink::default();
    for _ in 0..STEPS {
        match rng.below(21) {
            0 | 1 => {
                let mut data = [0u8; 8];
                let len = [1, 2, 4, 4, 8][rng.below(5) as usize];
                let off = if rng.one_in(4) {
                    rng.below(0x1100)
                } else {
                    OFFSETS[rng.below(OFFSETS.len() as u64) as usize] + rng.below(2) * rng.below(16)
                };
                l.mmio_read(now, off, &mut data[..len]);
                if l.mode() != Mode::XApic {
                    assert!(data[..len].iter().all(|&b| b == 0xFF));
                }
            }
            2..=4 => {
                let off = if rng.one_in(5) {
                    rng.below(0x1100)
                } else {
                    OFFSETS[rng.below(OFFSETS.len() as u64) as usize]
                };
                let v = (value(&mut rng) as u32).to_le_bytes();
                let len = if rng.one_in(6) { rng.below(5) as usize } else { 4 };
                let before = l.mode();
                if let Some(a) = l.mmio_write(now, off, &v[..len]) {
                    assert_eq!(before, Mode::XApic);
                    check_action(&a);
                }
            }
            5 | 6 => {
                let span = if rng.one_in(8) { 0x200 } else { 0x40 };
                let msr = 0x800 + rng.below(span) as u32;
                if rng.one_in(2) {
                    if l.msr_read(now, msr).is_ok() {
                        assert_eq!(l.mode(), Mode::X2Apic);
                    }
                } else {
                    if let Ok(a) = l.msr_write(now, msr, value(&mut rng)) {
                        assert_eq!(l.mode(), Mode::X2Apic);
                        if let Some(a) = a {
                            check_action(&a);
                        }
                    }
                }
            }
            7 => {
                let base = [0xFEE0_0000u64, 0xFEC0_0000, 0x1_0000_0000, 0x8000_0000][rng.below(4) as usize];
                let flags = [0, 0x800, 0xC00, 0x400, 0x900, 0xD00, 0x100][rng.below(7) as usize];
                let junk = if rng.one_in(8) { 1u64 << rng.below(64) } else { 0 };
                let before = l.mode();
                if l.set_apic_base(base | flags | junk, !rng.one_in(4)).is_err() {
                    assert_eq!(l.mode(), before, "a refused write changes nothing");
                }
            }
            8 => {
                let d = match rng.below(4) {
                    0 => 0,
                    1 => now.saturating_sub(rng.below(1000)),
                    2 => now + rng.below(100_000),
                    _ => rng.next_u64(),
                };
                l.set_tsc_deadline(now, d);
                let got = l.tsc_deadline(now);
                assert!(got == 0 || got > now);
            }
            9 | 10 => {
                let m = message(&mut rng);
                let _ = l.matches(m.destination);
                l.deliver(&m);
            }
            11 => {
                if let Some(v) = l.acknowledge() {
                    assert!(l.isr(v) && v >= 16);
                }
            }
            12 => {
                let a = match l.mode() {
                    Mode::XApic => l.mmio_write(now, 0xB0, &[0; 4]),
                    Mode::X2Apic => l.msr_write(now, 0x80B, 0).unwrap(),
                    Mode::Disabled => None,
                };
                if let Some(a) = a {
                    assert!(matches!(a, Action::Eoi { .. }));
                }
            }
            13 | 14 => {
                let before: [u32; 8] = core::array::from_fn(|i| l.regs()[regs::IRR + i]);
                now = now.saturating_add(match rng.below(4) {
                    0 => rng.below(16),
                    1 => rng.below(10_000),
                    2 => rng.below(10_000_000),
                    _ => l.deadline().map_or(0, |d| d - now),
                });
                if rng.one_in(2) {
                    l.advance_to(now);
                } else {
                    let mut ctx = Ctx { now, vcpu: 0, irq: &mut sink };
                    l.advance(&mut ctx);
                }
                // One advance adds at most the timer vector (and the error vector, for an
                // illegal timer vector).
                let timer = l.regs()[regs::LVT_TIMER] as u8;
                let error = l.regs()[regs::LVT_ERROR] as u8;
                for v in bits(&l, regs::IRR) {
                    let was = before[v as usize >> 5] & (1 << (v & 31)) != 0;
                    assert!(was || v == timer || v == error, "advance set {v:#x}");
                }
            }
            15 => match rng.below(4) {
                0 => l.raise_lint0(),
                1 => l.raise_lint1(),
                2 => l.local_interrupt(
                    [Lvt::Timer, Lvt::Thermal, Lvt::Perfmon, Lvt::Error, Lvt::Cmci][rng.below(5) as usize],
                ),
                _ => l.set_tpr(rng.next_u64() as u8),
            },
            16 => {
                let _ = (l.take_nmi(), l.take_init(), l.take_sipi(), l.take_extint());
                let _ = (l.lint0_mode(), l.pic_accepted(), l.has_pending());
            }
            17 => {
                if rng.one_in(8) {
                    l.reset_init();
                } else if rng.one_in(2) {
                    l.enter_virtual_wire();
                }
            }
            18 => {
                // A page round trip keeps every register.
                let mut page = [0u32; 1024];
                l.fill_page(now, &mut page);
                let regs_before = *l.regs();
                let count = page[regs::TIMER_CURRENT * 4];
                l.load_page(now, &page);
                assert_eq!(*l.regs(), regs_before);
                let mut again = [0u32; 1024];
                l.fill_page(now, &mut again);
                assert_eq!(again[regs::TIMER_CURRENT * 4], count);
            }
            19 => program_timer(&mut l, &mut rng, now),
            _ => {
                let count = l.timer_current_count(now);
                assert!(count <= l.regs()[regs::TIMER_INITIAL]);
            }
        }
        check(&l, now);
    }
}

fn check_action(a: &Action) {
    match a {
        Action::Ipi(m) => {
            if matches!(m.delivery, DeliveryMode::Fixed | DeliveryMode::LowestPriority) {
                assert!(m.vector >= 16, "illegal vector sent");
            }
            assert!(m.delivery != DeliveryMode::ExtInt);
        }
        Action::Eoi { vector } => assert!(*vector >= 16),
    }
}

#[test]
fn fuzz_lapic() {
    for seed in 1..=SEEDS {
        run(seed);
    }
}
