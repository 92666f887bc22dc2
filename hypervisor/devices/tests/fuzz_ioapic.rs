//! Bounded deterministic fuzz of the IOAPIC and the router's line sharing: random MMIO
//! accesses (biased toward meaningful register writes), pin changes and EOIs, checking after
//! every step the invariants the VM core relies on.

use std::time::Instant;

use basalt_devices::ioapic::*;
use basalt_devices::irq::{DeliveryMode, Destination, InterruptMessage, IrqSink};
use basalt_devices::router::{ioapic_pin_for, IrqRouter, ACTIVE_LOW_GSIS, ROUTER_INPUTS};
use basalt_emu::fuzz::XorShift;

/// About 0.5 s in a debug build.
const STEPS: u64 = 60_000;

fn is_level(e: u64) -> bool {
    e & RTE_LEVEL != 0 && (e >> RTE_DELIVERY_SHIFT) & 7 <= 1
}

fn asserted(io: &Ioapic, pin: usize) -> bool {
    io.pin_level(pin) != (io.entry(pin) & RTE_ACTIVE_LOW != 0)
}

/// `m` is what entry `e` sends.
fn matches(e: u64, m: &InterruptMessage) -> bool {
    let dest = (e >> RTE_DEST_SHIFT) as u32;
    let destination =
        if e & RTE_DEST_LOGICAL != 0 { Destination::Logical(dest) } else { Destination::Physical(dest) };
    m.vector == e as u8
        && Some(m.delivery) == DeliveryMode::from_bits((e >> RTE_DELIVERY_SHIFT) as u32)
        && m.delivery != DeliveryMode::StartUp
        && m.destination == destination
        && m.level_triggered == is_level(e)
        && m.assert
}

fn random_entry_low(rng: &mut XorShift) -> u32 {
    let mut v = (0x30 + rng.below(4) as u32) | ((rng.below(8) as u32) << 8);
    for bit in [11, 13, 15, 16] {
        if rng.one_in(2) {
            v |= 1 << bit;
        }
    }
    if rng.one_in(8) {
        v = rng.next_u64() as u32;
    }
    v
}

fn check_static(io: &mut Ioapic, step: u64) {
    for pin in 0..IOAPIC_PINS {
        let e = io.entry(pin);
        assert_eq!(
            e & !(RTE_WRITABLE | RTE_REMOTE_IRR),
            0,
            "step {step}: RO/reserved bits in pin {pin}: {e:#x}"
        );
        if e & RTE_REMOTE_IRR != 0 {
            assert!(is_level(e), "step {step}: remote IRR on edge pin {pin}: {e:#x}");
        }
    }
    assert_eq!(io.read_register(REG_VERSION), IOAPIC_VERSION);
    assert_eq!(io.read_register(REG_ARBITRATION), io.read_register(REG_ID));
    assert_eq!(io.read_register(REG_ID) & !0x0F00_0000, 0);
}

#[test]
fn fuzz_ioapic() {
    let start = Instant::now();
    let mut rng = XorShift::new(0x10a9_1c00_0000_0001);
    let mut io = Ioapic::new(0);
    let mut sent = 0u64;
    let mut selected = 0u8;
    for step in 0..STEPS {
        let before: Vec<u64> = (0..IOAPIC_PINS).map(|p| io.entry(p)).collect();
        let was_asserted: Vec<bool> = (0..IOAPIC_PINS).map(|p| asserted(&io, p)).collect();
        // Which pins may send in this step, and why.
        let mut may_send = [false; IOAPIC_PINS];
        match rng.below(100) {
            0..=29 => {
                let pin = rng.below(IOAPIC_PINS as u64 + 2) as usize;
                let level = rng.one_in(2);
                io.set_pin(pin, level);
                if pin < IOAPIC_PINS {
                    may_send[pin] = true;
                }
            }
            30..=54 => {
                let pin = rng.below(IOAPIC_PINS as u64) as u8;
                let high = rng.one_in(4);
                let reg = REG_REDIR_BASE + 2 * pin + high as u8;
                io.mmio_write(IOREGSEL, &[reg, 0, 0, 0]);
                let v = if high { (rng.below(256) as u32) << 24 } else { random_entry_low(&mut rng) };
                io.mmio_write(IOWIN, &v.to_le_bytes());
                selected = reg;
                may_send[pin as usize] = true;
            }
            55..=69 => {
                let vector = if rng.one_in(8) { rng.next_u64() as u8 } else { 0x30 + rng.below(4) as u8 };
                if rng.one_in(2) {
                    io.eoi(vector);
                } else {
                    io.mmio_write(IOAPIC_EOI, &[vector, 0, 0, 0]);
                }
                for (p, &e) in before.iter().enumerate() {
                    may_send[p] = e & RTE_REMOTE_IRR != 0 && e as u8 == vector;
                }
            }
            70..=89 => {
                // Garbage accesses anywhere in the page, any width.
                let off = rng.below(IOAPIC_MMIO_SIZE + 16);
                let len = [1, 2, 4, 8, 3][rng.below(5) as usize];
                let mut buf = vec![0u8; len];
                if rng.one_in(2) {
                    io.mmio_read(off, &mut buf);
                } else {
                    for b in buf.iter_mut() {
                        *b = rng.next_u64() as u8;
                    }
                    if off == IOREGSEL {
                        selected = buf[0];
                    }
                    io.mmio_write(off, &buf);
                    if off == IOWIN && len >= 4 {
                        if let Some(n) = selected.checked_sub(REG_REDIR_BASE).map(|n| n as usize / 2) {
                            if n < IOAPIC_PINS {
                                may_send[n] = true;
                            }
                        }
                    }
                    if off == IOAPIC_EOI {
                        for (p, &e) in before.iter().enumerate() {
                            may_send[p] = e & RTE_REMOTE_IRR != 0 && e as u8 == buf[0];
                        }
                    }
                }
            }
            90..=98 => {
                let reg = rng.below(0x48) as u8;
                io.mmio_write(IOREGSEL, &[reg]);
                selected = reg;
                let mut d = [0u8; 4];
                io.mmio_read(IOWIN, &mut d);
                assert_eq!(u32::from_le_bytes(d), io.read_register(reg));
            }
            _ => {
                io.reset();
                selected = 0;
            }
        }
        let msgs: Vec<InterruptMessage> = io.take_messages().collect();
        assert!(msgs.len() <= IOAPIC_PINS);
        // Each message comes from a distinct pin allowed to send, unmasked, whose entry it
        // matches; a level one is asserted and now holds remote IRR; an edge one saw its line
        // rise in this step (or a register write, which never makes an edge, did not send it).
        let mut used = [false; IOAPIC_PINS];
        for m in &msgs {
            let pin = (0..IOAPIC_PINS)
                .find(|&p| {
                    let e = io.entry(p);
                    may_send[p]
                        && !used[p]
                        && e & RTE_MASKED == 0
                        && matches(e, m)
                        && if is_level(e) {
                            asserted(&io, p) && e & RTE_REMOTE_IRR != 0
                        } else {
                            asserted(&io, p)
                                && !was_asserted[p]
                                && before[p] & RTE_ACTIVE_LOW == e & RTE_ACTIVE_LOW
                        }
                })
                .unwrap_or_else(|| panic!("step {step}: unexpected {m:?}"));
            used[pin] = true;
            sent += 1;
        }
        // A deliverable level entry has been sent: asserted, unmasked, valid mode => remote IRR.
        for p in 0..IOAPIC_PINS {
            let e = io.entry(p);
            if is_level(e) && e & RTE_MASKED == 0 && asserted(&io, p) {
                assert_ne!(e & RTE_REMOTE_IRR, 0, "step {step}: pin {p} asserted but not sent: {e:#x}");
            }
        }
        check_static(&mut io, step);
    }
    eprintln!("fuzz_ioapic: {STEPS} steps, {sent} messages in {:?}", start.elapsed());
    assert!(sent > STEPS / 50, "only {sent} messages");
}

#[test]
fn fuzz_router_lines() {
    let mut rng = XorShift::new(0x10a9_1c00_0000_0002);
    let mut r = IrqRouter::default();
    let mut shadow = [0u32; ROUTER_INPUTS];
    for _ in 0..40_000 {
        let input = rng.below(ROUTER_INPUTS as u64 + 4) as u32;
        let source = rng.below(40) as u8;
        let level = rng.one_in(2);
        r.set_level(input, source, level);
        if let Some(m) = shadow.get_mut(input as usize) {
            if level {
                *m |= 1 << (source & 31);
            } else {
                *m &= !(1 << (source & 31));
            }
        }
        for i in 0..ROUTER_INPUTS as u32 {
            assert_eq!(r.line_level(i), shadow[i as usize] != 0);
            if let Some(pin) = ioapic_pin_for(i) {
                // The wire: the line's assertion, inverted on the active-low pins (the SCI).
                let active_low = ACTIVE_LOW_GSIS & (1 << i) != 0;
                assert_eq!(r.ioapic().pin_level(pin), (shadow[i as usize] != 0) != active_low);
            }
        }
        assert!(!r.ioapic().pin_level(0), "nothing drives pin 0");
        // Everything is masked after power-on: nothing is sent, and the PIC is quiet.
        assert!(!r.has_messages());
        assert!(!r.pic_intr());
    }
}
