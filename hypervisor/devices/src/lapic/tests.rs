//! Host tests against the SDM's description of the local APIC.

use super::*;

/// 2 GHz TSC, 1 GHz bus: one bus cycle is 2 TSC ticks.
const TSC_HZ: u64 = 2_000_000_000;
const BUS_HZ: u64 = 1_000_000_000;

fn lapic() -> Lapic {
    Lapic::new(1, true, Timebase::new(TSC_HZ), BUS_HZ)
}

/// Software-enabled, xAPIC.
fn enabled() -> Lapic {
    let mut l = lapic();
    wr(&mut l, 0, 0xF0, 0x1FF);
    l
}

/// Software-enabled, x2APIC, ID 0x123.
fn x2() -> Lapic {
    let mut l = Lapic::new(0x123, false, Timebase::new(TSC_HZ), BUS_HZ);
    l.set_apic_base(0xFEE0_0C00, true).unwrap();
    l.msr_write(0, 0x80F, 0x1FF).unwrap();
    l
}

fn rd(l: &mut Lapic, now: u64, off: u64) -> u32 {
    let mut b = [0; 4];
    l.mmio_read(now, off, &mut b);
    u32::from_le_bytes(b)
}

fn wr(l: &mut Lapic, now: u64, off: u64, v: u32) -> Option<Action> {
    l.mmio_write(now, off, &v.to_le_bytes())
}

fn fixed(vector: u8, level: bool) -> InterruptMessage {
    InterruptMessage {
        vector,
        delivery: DeliveryMode::Fixed,
        destination: Destination::Physical(1),
        level_triggered: level,
        assert: true,
    }
}

fn msg(delivery: DeliveryMode, vector: u8) -> InterruptMessage {
    InterruptMessage {
        vector,
        delivery,
        destination: Destination::Physical(1),
        level_triggered: false,
        assert: true,
    }
}

fn ipi(a: Option<Action>) -> InterruptMessage {
    match a {
        Some(Action::Ipi(m)) => m,
        other => panic!("expected an IPI, got {other:?}"),
    }
}

#[test]
fn reset_values() {
    let mut l = lapic();
    assert_eq!(l.apic_base(), 0xFEE0_0900);
    assert_eq!(l.mode(), Mode::XApic);
    assert_eq!(l.base_address(), 0xFEE0_0000);
    assert!(l.is_bsp());
    let ap = Lapic::new(2, false, Timebase::new(TSC_HZ), BUS_HZ);
    assert_eq!(ap.apic_base(), 0xFEE0_0800);
    let table: &[(u64, u32)] = &[
        (0x20, 0x0100_0000),
        (0x30, 0x0006_0014),
        (0x80, 0),
        (0x90, 0),
        (0xA0, 0),
        (0xB0, 0),
        (0xC0, 0),
        (0xD0, 0),
        (0xE0, 0xFFFF_FFFF),
        (0xF0, 0xFF),
        (0x100, 0),
        (0x180, 0),
        (0x200, 0),
        (0x280, 0),
        (0x2F0, 0x1_0000),
        (0x300, 0),
        (0x310, 0),
        (0x320, 0x1_0000),
        (0x330, 0x1_0000),
        (0x340, 0x1_0000),
        (0x350, 0x1_0000),
        (0x360, 0x1_0000),
        (0x370, 0x1_0000),
        (0x380, 0),
        (0x390, 0),
        (0x3E0, 0),
    ];
    for &(off, v) in table {
        assert_eq!(rd(&mut l, 0, off), v, "offset {off:#x}");
    }
    // Reserved slots, bytes 4-15 of a slot, beyond the page and SELF_IPI in xAPIC: all ones.
    for off in [0x00, 0x10, 0x40, 0x70, 0x290, 0x2E0, 0x3A0, 0x3F0, 0x400, 0xFF0, 0x24] {
        assert_eq!(rd(&mut l, 0, off), 0xFFFF_FFFF, "offset {off:#x}");
    }
    assert!(!l.software_enabled());
    assert_eq!(l.lint0_mode(), Lint0Mode::Masked);
    assert_eq!(Timed::deadline(&l), None);
    assert_eq!(l.msr_read(0, 0x802), Err(Gp));
}

#[test]
fn partial_and_odd_reads_return_the_bytes_they_cover() {
    let mut l = lapic();
    let mut b = [0u8; 1];
    l.mmio_read(0, 0x23, &mut b);
    assert_eq!(b, [0x01]);
    let mut b = [0u8; 2];
    l.mmio_read(0, 0x31, &mut b);
    assert_eq!(b, [0x00, 0x06]);
    // Straddling the register's end: the rest reads all ones.
    let mut b = [0u8; 4];
    l.mmio_read(0, 0x32, &mut b);
    assert_eq!(b, [0x06, 0x00, 0xFF, 0xFF]);
    let mut b = [0u8; 8];
    l.mmio_read(0, 0xF0, &mut b);
    assert_eq!(b, [0xFF, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
    let mut b = [0u8; 8];
    l.mmio_read(0, u64::MAX - 3, &mut b);
    assert_eq!(b, [0xFF; 8]);
    l.mmio_read(0, 0, &mut []);
}

#[test]
fn writes_must_be_aligned_dwords() {
    let mut l = enabled();
    assert_eq!(l.mmio_write(0, 0x80, &[0x50]), None);
    assert_eq!(l.mmio_write(0, 0x80, &[0x50, 0]), None);
    assert_eq!(l.mmio_write(0, 0x80, &[0x50, 0, 0, 0, 0, 0, 0, 0]), None);
    assert_eq!(l.mmio_write(0, 0x81, &[0x50, 0, 0, 0]), None);
    assert_eq!(l.mmio_write(0, 0x84, &[0x50, 0, 0, 0]), None);
    assert_eq!(l.mmio_write(0, 0x1000, &[0x50, 0, 0, 0]), None);
    assert_eq!(l.mmio_write(0, u64::MAX, &[0x50, 0, 0, 0]), None);
    assert_eq!(l.tpr(), 0);
    wr(&mut l, 0, 0x80, 0x50);
    assert_eq!(l.tpr(), 0x50);
}

#[test]
fn read_only_reserved_and_masked_bits() {
    let mut l = lapic();
    // Read-only registers ignore writes.
    for off in [0x30, 0x90, 0xA0, 0xC0, 0x100, 0x180, 0x200, 0x390] {
        wr(&mut l, 0, off, 0xFFFF_FFFF);
    }
    assert_eq!(rd(&mut l, 0, 0x30), 0x0006_0014);
    assert_eq!(rd(&mut l, 0, 0xA0), 0);
    assert_eq!(rd(&mut l, 0, 0x100), 0);
    assert_eq!(rd(&mut l, 0, 0x200), 0);
    assert_eq!(rd(&mut l, 0, 0x390), 0);
    // ID: bits 31:24 writable; LDR 31:24; DFR 31:28 (the rest read as ones); TPR 7:0.
    wr(&mut l, 0, 0x20, 0x05FF_FFFF);
    assert_eq!(rd(&mut l, 0, 0x20), 0x0500_0000);
    assert_eq!(l.apic_id(), 5);
    wr(&mut l, 0, 0xD0, 0x12FF_FFFF);
    assert_eq!(rd(&mut l, 0, 0xD0), 0x1200_0000);
    wr(&mut l, 0, 0xE0, 0);
    assert_eq!(rd(&mut l, 0, 0xE0), 0x0FFF_FFFF);
    wr(&mut l, 0, 0x80, 0xFFFF_FFFF);
    assert_eq!(rd(&mut l, 0, 0x80), 0xFF);
    // SVR: vector, enable, focus; bit 12 only with EOI-broadcast suppression offered.
    wr(&mut l, 0, 0xF0, 0xFFFF_FFFF);
    assert_eq!(rd(&mut l, 0, 0xF0), 0x3FF);
    l.set_suppress_eoi_broadcast_supported(true);
    assert_eq!(rd(&mut l, 0, 0x30), 0x0106_0014);
    wr(&mut l, 0, 0xF0, 0xFFFF_FFFF);
    assert_eq!(rd(&mut l, 0, 0xF0), 0x13FF);
    // LVT writable bits, delivery status and remote IRR never set.
    let lvts: &[(u64, u32)] = &[
        (0x320, 0x7_00FF),
        (0x330, 0x1_07FF),
        (0x340, 0x1_07FF),
        (0x350, 0x1_A7FF),
        (0x360, 0x1_A7FF),
        (0x370, 0x1_00FF),
        (0x2F0, 0x1_07FF),
    ];
    for &(off, mask) in lvts {
        wr(&mut l, 0, off, 0xFFFF_FFFF);
        assert_eq!(rd(&mut l, 0, off), mask, "LVT {off:#x}");
    }
    // Divide: bits 0, 1, 3. ICR high 31:24; ICR low without delivery status.
    wr(&mut l, 0, 0x3E0, 0xFFFF_FFFF);
    assert_eq!(rd(&mut l, 0, 0x3E0), 0xB);
    wr(&mut l, 0, 0x310, 0xFFFF_FFFF);
    assert_eq!(rd(&mut l, 0, 0x310), 0xFF00_0000);
    wr(&mut l, 0, 0x300, 0x0000_50FF | ICR_BUSY);
    assert_eq!(rd(&mut l, 0, 0x300) & ICR_BUSY, 0);
}

#[test]
fn software_disable_masks_the_lvts_and_keeps_them_masked() {
    let mut l = lapic();
    // Software-disabled at reset: an LVT cannot be unmasked.
    wr(&mut l, 0, 0x350, 0x700);
    assert_eq!(rd(&mut l, 0, 0x350), 0x1_0700);
    wr(&mut l, 0, 0xF0, 0x1FF);
    wr(&mut l, 0, 0x350, 0x700);
    wr(&mut l, 0, 0x320, 0x40);
    assert_eq!(rd(&mut l, 0, 0x350), 0x700);
    assert_eq!(l.lint0_mode(), Lint0Mode::ExtInt);
    // IRR and ISR survive a software disable; nothing is offered while disabled.
    l.deliver(&fixed(0x40, false));
    l.deliver(&fixed(0x30, false));
    assert_eq!(l.acknowledge(), Some(0x40));
    wr(&mut l, 0, 0xF0, 0xFF);
    for off in [0x320, 0x330, 0x340, 0x350, 0x360, 0x370, 0x2F0] {
        assert_ne!(rd(&mut l, 0, off) & LVT_MASKED, 0);
    }
    assert!(l.irr(0x30) && l.isr(0x40));
    assert_eq!(l.pending_interrupt(), None);
    // Fixed interrupts are dropped while software-disabled; NMI/INIT/SIPI are not.
    l.deliver(&fixed(0x50, false));
    assert!(!l.irr(0x50));
    l.deliver(&msg(DeliveryMode::Nmi, 0));
    l.deliver(&msg(DeliveryMode::Init, 0));
    l.deliver(&msg(DeliveryMode::StartUp, 0x9A));
    assert!(l.take_nmi() && l.take_init());
    assert_eq!(l.take_sipi(), Some(0x9A));
    assert!(!l.take_nmi() && !l.take_init());
    assert_eq!(l.take_sipi(), None);
    wr(&mut l, 0, 0xF0, 0x1FF);
    assert_eq!(l.pending_interrupt(), None, "0x30 is below the in-service 0x40");
    assert_eq!(wr(&mut l, 0, 0xB0, 0), None);
    assert_eq!(l.pending_interrupt(), Some(0x30));
}

#[test]
fn apic_base_transitions() {
    let mut l = lapic();
    // Reserved bits: 0-7, 9, above MAXPHYADDR, EXTD without x2APIC support.
    for bad in [0xFEE0_0901, 0xFEE0_0B00, 1 << 52, 0xFEE0_0D00] {
        assert_eq!(l.set_apic_base(bad, false), Err(Gp), "{bad:#x}");
    }
    l.set_max_phys_bits(36);
    assert_eq!(l.set_apic_base(0x10_FEE0_0900, true), Err(Gp));
    // EXTD without EN is invalid; disabled -> x2APIC directly is not allowed.
    assert_eq!(l.set_apic_base(0xFEE0_0500, true), Err(Gp));
    assert_eq!(l.apic_base(), 0xFEE0_0900);
    // Relocation.
    l.set_apic_base(0x0_F000_0900, false).unwrap();
    assert_eq!(l.base_address(), 0xF000_0000);
    l.set_apic_base(0xFEE0_0900, false).unwrap();

    // State is kept by xAPIC -> x2APIC; the ID becomes the x2APIC ID, the LDR derived.
    let mut l = Lapic::new(0x23, true, Timebase::new(TSC_HZ), BUS_HZ);
    wr(&mut l, 0, 0xF0, 0x1FF);
    wr(&mut l, 0, 0x80, 0x20);
    wr(&mut l, 0, 0xD0, 0x0100_0000);
    l.set_apic_base(0xFEE0_0D00, true).unwrap();
    assert_eq!(l.mode(), Mode::X2Apic);
    assert_eq!(l.msr_read(0, 0x802), Ok(0x23));
    assert_eq!(l.msr_read(0, 0x80D), Ok(0x2_0008));
    assert_eq!(l.msr_read(0, 0x808), Ok(0x20));
    assert_eq!(l.msr_read(0, 0x80F), Ok(0x1FF));
    let mut b = [0; 4];
    l.mmio_read(0, 0x20, &mut b);
    assert_eq!(b, [0xFF; 4], "no MMIO in x2APIC mode");
    // x2APIC -> xAPIC is #GP; x2APIC -> disabled resets all but the ID.
    assert_eq!(l.set_apic_base(0xFEE0_0900, true), Err(Gp));
    l.deliver(&fixed(0x40, false));
    l.deliver(&msg(DeliveryMode::Nmi, 0));
    l.set_apic_base(0xFEE0_0100, true).unwrap();
    assert_eq!(l.mode(), Mode::Disabled);
    assert!(!l.matches(Destination::Physical(0x23)));
    assert!(!l.take_nmi());
    l.deliver(&fixed(0x50, false));
    assert_eq!(l.msr_read(0, 0x808), Err(Gp));
    l.mmio_read(0, 0x20, &mut b);
    assert_eq!(b, [0xFF; 4], "no MMIO while disabled");
    assert_eq!(l.lint0_mode(), Lint0Mode::Direct);
    l.set_apic_base(0xFEE0_0900, true).unwrap();
    assert_eq!(rd(&mut l, 0, 0x20), 0x2300_0000);
    assert_eq!(rd(&mut l, 0, 0x80), 0);
    assert_eq!(rd(&mut l, 0, 0xF0), 0xFF);
    assert_eq!(rd(&mut l, 0, 0xD0), 0);
    assert!(!l.irr(0x40) && !l.irr(0x50));
    // xAPIC -> disabled keeps a written xAPIC ID.
    wr(&mut l, 0, 0x20, 0x0700_0000);
    l.set_apic_base(0xFEE0_0000, true).unwrap();
    l.set_apic_base(0xFEE0_0800, true).unwrap();
    assert_eq!(l.apic_id(), 7);
    assert!(!l.is_bsp());
}

#[test]
fn init_resets_all_but_the_id() {
    let mut l = enabled();
    wr(&mut l, 0, 0x20, 0x0900_0000);
    wr(&mut l, 0, 0x80, 0x30);
    wr(&mut l, 0, 0xD0, 0x0100_0000);
    wr(&mut l, 0, 0x320, 0x2_0040);
    wr(&mut l, 0, 0x380, 1000);
    l.deliver(&fixed(0x40, true));
    l.acknowledge();
    l.deliver(&fixed(0x50, false));
    l.deliver(&msg(DeliveryMode::StartUp, 0x10));
    l.reset_init();
    assert_eq!(rd(&mut l, 0, 0x20), 0x0900_0000);
    assert_eq!(rd(&mut l, 0, 0x80), 0);
    assert_eq!(rd(&mut l, 0, 0xD0), 0);
    assert_eq!(rd(&mut l, 0, 0xF0), 0xFF);
    assert_eq!(rd(&mut l, 0, 0x320), 0x1_0000);
    assert_eq!(rd(&mut l, 0, 0x380), 0);
    assert!(!l.irr(0x50) && !l.isr(0x40) && !l.tmr(0x40));
    assert_eq!(Timed::deadline(&l), None);
    assert_eq!(l.apic_base(), 0xFEE0_0900);
    assert_eq!(l.take_sipi(), Some(0x10), "SIPI is left to the core");

    let mut l = x2();
    l.reset_init();
    assert_eq!(l.mode(), Mode::X2Apic);
    assert_eq!(l.msr_read(0, 0x802), Ok(0x123));
    assert_eq!(l.msr_read(0, 0x80D), Ok(0x12_0008));
    assert_eq!(l.msr_read(0, 0x80F), Ok(0xFF));
}

#[test]
fn ppr_follows_tpr_and_isr() {
    let mut l = enabled();
    let ppr = |l: &mut Lapic| rd(l, 0, 0xA0);
    wr(&mut l, 0, 0x80, 0x35);
    assert_eq!(ppr(&mut l), 0x35);
    l.deliver(&fixed(0x61, false));
    assert_eq!(l.acknowledge(), Some(0x61));
    // ISRV class 6 > TPR class 3: PPR = ISRV & 0xF0.
    assert_eq!(ppr(&mut l), 0x60);
    wr(&mut l, 0, 0x80, 0x6F);
    // Same class: TPR wins (>=) with its low bits.
    assert_eq!(ppr(&mut l), 0x6F);
    wr(&mut l, 0, 0x80, 0x7A);
    assert_eq!(ppr(&mut l), 0x7A);
    wr(&mut l, 0, 0x80, 0x00);
    assert_eq!(ppr(&mut l), 0x60);
    wr(&mut l, 0, 0xB0, 0);
    assert_eq!(ppr(&mut l), 0);
    assert_eq!(l.ppr(), 0);
    // CR8 view.
    l.set_tpr(0x90);
    assert_eq!(ppr(&mut l), 0x90);
    assert_eq!(l.tpr() >> 4, 9);
}

#[test]
fn priority_selection_and_isr_nesting() {
    let mut l = enabled();
    for v in [0x31, 0x45, 0x41, 0x90, 0x2F] {
        l.deliver(&fixed(v, false));
    }
    // TPR class 9 blocks everything up to 0x9F.
    wr(&mut l, 0, 0x80, 0x90);
    assert_eq!(l.pending_interrupt(), None);
    assert_eq!(l.acknowledge(), None);
    wr(&mut l, 0, 0x80, 0x40);
    assert_eq!(l.pending_interrupt(), Some(0x90));
    wr(&mut l, 0, 0x80, 0);
    // Highest first; a same-class vector waits for the EOI of the one in service.
    assert_eq!(l.acknowledge(), Some(0x90));
    assert_eq!(l.pending_interrupt(), None);
    l.deliver(&fixed(0xA1, false));
    assert_eq!(l.acknowledge(), Some(0xA1), "a higher class nests");
    assert_eq!(rd(&mut l, 0, 0x100 + 0x50), 1 << 1, "ISR word 5 holds 0xA1");
    assert_eq!(rd(&mut l, 0, 0x100 + 0x40), 1 << 16, "ISR word 4 holds 0x90");
    // EOI retires the highest ISR bit first.
    wr(&mut l, 0, 0xB0, 0);
    assert!(!l.isr(0xA1) && l.isr(0x90));
    wr(&mut l, 0, 0xB0, 0);
    assert!(!l.isr(0x90));
    assert_eq!(l.acknowledge(), Some(0x45));
    assert_eq!(l.pending_interrupt(), None, "0x41 is the same class as 0x45");
    wr(&mut l, 0, 0xB0, 0);
    assert_eq!(l.acknowledge(), Some(0x41));
    wr(&mut l, 0, 0xB0, 0);
    assert_eq!(l.acknowledge(), Some(0x31));
    wr(&mut l, 0, 0xB0, 0);
    assert_eq!(l.acknowledge(), Some(0x2F));
    wr(&mut l, 0, 0xB0, 0);
    assert_eq!(l.acknowledge(), None);
    // EOI with nothing in service does nothing.
    assert_eq!(wr(&mut l, 0, 0xB0, 0), None);
    // IRR is readable.
    l.deliver(&fixed(0xFF, false));
    assert_eq!(rd(&mut l, 0, 0x270), 1 << 31);
}

#[test]
fn illegal_vectors_are_refused_and_reported() {
    let mut l = enabled();
    for v in [0u8, 5, 15] {
        l.deliver(&fixed(v, false));
        l.deliver(&InterruptMessage { delivery: DeliveryMode::LowestPriority, ..fixed(v, false) });
    }
    for w in 0..8 {
        assert_eq!(rd(&mut l, 0, 0x200 + w * 0x10), 0);
    }
    // The ESR shows errors only after a write, and a write clears them.
    assert_eq!(rd(&mut l, 0, 0x280), 0);
    wr(&mut l, 0, 0x280, 0);
    assert_eq!(rd(&mut l, 0, 0x280), ESR_RECEIVE_ILLEGAL_VECTOR);
    wr(&mut l, 0, 0x280, 0);
    assert_eq!(rd(&mut l, 0, 0x280), 0);
    // Sending an illegal vector: send illegal vector, nothing sent.
    wr(&mut l, 0, 0x310, 0x0100_0000);
    assert_eq!(wr(&mut l, 0, 0x300, 0x0000_4005), None);
    assert_eq!(wr(&mut l, 0, 0x300, 0x0000_410F), None);
    wr(&mut l, 0, 0x280, 0);
    assert_eq!(rd(&mut l, 0, 0x280), ESR_SEND_ILLEGAL_VECTOR);
    // NMI/INIT/SIPI carry no vector check.
    assert!(wr(&mut l, 0, 0x300, 0x0000_4400).is_some());
    // An error with the error LVT unmasked raises its vector.
    wr(&mut l, 0, 0x370, 0xFE);
    l.deliver(&fixed(3, false));
    assert_eq!(l.pending_interrupt(), Some(0xFE));
    assert!(!l.tmr(0xFE));
    // A timer LVT with an illegal vector: received illegal vector when it fires.
    let mut l = enabled();
    wr(&mut l, 0, 0x320, 0x08);
    wr(&mut l, 0, 0x380, 10);
    l.advance_to(1000);
    wr(&mut l, 0, 0x280, 0);
    assert_eq!(rd(&mut l, 0, 0x280), ESR_RECEIVE_ILLEGAL_VECTOR);
    assert_eq!(l.pending_interrupt(), None);
}

#[test]
fn level_eoi_reports_to_the_ioapic_unless_suppressed() {
    let mut l = enabled();
    l.deliver(&fixed(0x60, true));
    l.deliver(&fixed(0x50, false));
    assert!(l.tmr(0x60) && !l.tmr(0x50));
    assert_eq!(rd(&mut l, 0, 0x180 + 0x30), 1);
    assert_eq!(l.acknowledge(), Some(0x60));
    assert_eq!(wr(&mut l, 0, 0xB0, 0), Some(Action::Eoi { vector: 0x60 }));
    assert_eq!(l.acknowledge(), Some(0x50));
    assert_eq!(wr(&mut l, 0, 0xB0, 0), None);
    // An edge delivery of the same vector clears its TMR bit.
    l.deliver(&fixed(0x60, false));
    assert!(!l.tmr(0x60));
    l.acknowledge();
    assert_eq!(wr(&mut l, 0, 0xB0, 0), None);
    // SVR bit 12 is ignored unless offered...
    wr(&mut l, 0, 0xF0, 0x11FF);
    l.deliver(&fixed(0x70, true));
    l.acknowledge();
    assert_eq!(wr(&mut l, 0, 0xB0, 0), Some(Action::Eoi { vector: 0x70 }));
    // ...and suppresses the broadcast when it is.
    l.set_suppress_eoi_broadcast_supported(true);
    wr(&mut l, 0, 0xF0, 0x11FF);
    l.deliver(&fixed(0x70, true));
    l.acknowledge();
    assert_eq!(wr(&mut l, 0, 0xB0, 0), None);
    assert!(!l.isr(0x70));
    // In x2APIC mode too.
    let mut l = x2();
    l.deliver(&fixed(0x80, true));
    l.acknowledge();
    assert_eq!(l.msr_write(0, 0x80B, 0), Ok(Some(Action::Eoi { vector: 0x80 })));
}

#[test]
fn physical_and_logical_matching() {
    let mut l = enabled();
    wr(&mut l, 0, 0x20, 0x0300_0000);
    assert!(l.matches(Destination::Physical(3)));
    assert!(l.matches(Destination::Physical(0xFF)));
    assert!(!l.matches(Destination::Physical(4)));
    assert!(!l.matches(Destination::Physical(0x103)));
    for d in [Destination::This, Destination::AllIncludingSelf, Destination::AllExcludingSelf] {
        assert!(l.matches(d));
    }
    // Flat: LDR bit set in the MDA.
    wr(&mut l, 0, 0xD0, 0x0400_0000);
    assert!(l.matches(Destination::Logical(0x04)));
    assert!(l.matches(Destination::Logical(0x0C)));
    assert!(!l.matches(Destination::Logical(0x03)));
    assert!(!l.matches(Destination::Logical(0)));
    assert!(l.matches(Destination::Logical(0xFF)));
    // Cluster: cluster 2, member bit 1.
    wr(&mut l, 0, 0xE0, 0x0FFF_FFFF);
    wr(&mut l, 0, 0xD0, 0x2200_0000);
    assert!(l.matches(Destination::Logical(0x22)));
    assert!(l.matches(Destination::Logical(0x23)));
    assert!(!l.matches(Destination::Logical(0x21)));
    assert!(!l.matches(Destination::Logical(0x32)));
    assert!(l.matches(Destination::Logical(0xFF)));
    // An LDR of 0 matches no logical destination but the broadcast.
    wr(&mut l, 0, 0xD0, 0);
    assert!(!l.matches(Destination::Logical(0x0F)));
    wr(&mut l, 0, 0xE0, 0xFFFF_FFFF);
    assert!(!l.matches(Destination::Logical(0xFE)));

    // x2APIC: 32-bit physical IDs, broadcast 0xFFFFFFFF, cluster logical from the ID.
    let l = x2();
    assert!(l.matches(Destination::Physical(0x123)));
    assert!(l.matches(Destination::Physical(0xFFFF_FFFF)));
    assert!(!l.matches(Destination::Physical(0x23)));
    assert!(!l.matches(Destination::Physical(0xFF)));
    assert!(l.matches(Destination::Logical(0x12_0008)));
    assert!(l.matches(Destination::Logical(0x12_FFFF)));
    assert!(!l.matches(Destination::Logical(0x12_0007)));
    assert!(!l.matches(Destination::Logical(0x13_0008)));
    assert!(l.matches(Destination::Logical(0xFFFF_FFFF)));
}

#[test]
fn icr_encodings() {
    let mut l = enabled();
    wr(&mut l, 0, 0x310, 0x0500_0000);
    // Fixed, physical, no shorthand.
    let m = ipi(wr(&mut l, 0, 0x300, 0x0000_4031));
    assert_eq!(
        m,
        InterruptMessage {
            vector: 0x31,
            delivery: DeliveryMode::Fixed,
            destination: Destination::Physical(5),
            level_triggered: false,
            assert: true,
        }
    );
    assert_eq!(rd(&mut l, 0, 0x300), 0x0000_4031, "delivery status idle");
    // Logical.
    let m = ipi(wr(&mut l, 0, 0x300, 0x0000_4831));
    assert_eq!(m.destination, Destination::Logical(5));
    // Lowest priority, level-triggered.
    let m = ipi(wr(&mut l, 0, 0x300, 0x0000_C132));
    assert_eq!(m.delivery, DeliveryMode::LowestPriority);
    assert!(m.level_triggered);
    // Every shorthand; the destination field is then ignored.
    for (sh, dest) in
        [(1, Destination::This), (2, Destination::AllIncludingSelf), (3, Destination::AllExcludingSelf)]
    {
        let m = ipi(wr(&mut l, 0, 0x300, 0x0000_4840 | (sh << 18)));
        assert_eq!(m.destination, dest);
    }
    // SMI, NMI, INIT assert, INIT de-assert, STARTUP.
    assert_eq!(ipi(wr(&mut l, 0, 0x300, 0x0000_4200)).delivery, DeliveryMode::Smi);
    let m = ipi(wr(&mut l, 0, 0x300, 0x0000_4400));
    assert_eq!(m.delivery, DeliveryMode::Nmi);
    let m = ipi(wr(&mut l, 0, 0x300, 0x0000_C500));
    assert_eq!((m.delivery, m.assert), (DeliveryMode::Init, true));
    let m = ipi(wr(&mut l, 0, 0x300, 0x000C_8500));
    assert_eq!((m.delivery, m.assert), (DeliveryMode::Init, false));
    assert_eq!(m.destination, Destination::AllExcludingSelf);
    let m = ipi(wr(&mut l, 0, 0x300, 0x0000_4500));
    assert!(m.assert, "edge INIT asserts");
    let m = ipi(wr(&mut l, 0, 0x300, 0x0000_4608));
    assert_eq!((m.delivery, m.vector), (DeliveryMode::StartUp, 0x08));
    // Reserved mode 3 and ExtINT send nothing.
    assert_eq!(wr(&mut l, 0, 0x300, 0x0000_4340), None);
    assert_eq!(wr(&mut l, 0, 0x300, 0x0000_4740), None);
    // Writing the high half sends nothing.
    assert_eq!(wr(&mut l, 0, 0x310, 0x0100_0000), None);

    // A delivered INIT de-assert does nothing; an assert pends.
    l.deliver(&InterruptMessage { assert: false, ..msg(DeliveryMode::Init, 0) });
    assert!(!l.take_init());
    l.deliver(&msg(DeliveryMode::ExtInt, 0));
    assert!(l.take_extint() && !l.take_extint());
    l.deliver(&msg(DeliveryMode::Smi, 0));
    assert!(!l.has_pending());
}

#[test]
fn x2apic_msr_rules() {
    let mut l = lapic();
    // Not in x2APIC mode: every x2APIC MSR is #GP.
    assert_eq!(l.msr_read(0, 0x808), Err(Gp));
    assert_eq!(l.msr_write(0, 0x808, 0), Err(Gp));
    let mut l = x2();
    assert_eq!(l.msr_read(0, 0x803), Ok(0x0006_0014));
    // Absent: APR, RRD, DFR, ICR high, reserved slots, the rest of 0x840-0x8FF, outside.
    for msr in [0x800, 0x801, 0x804, 0x809, 0x80C, 0x80E, 0x829, 0x831, 0x83A, 0x840, 0x8FF, 0x900, 0x7FF] {
        assert_eq!(l.msr_read(0, msr), Err(Gp), "read {msr:#x}");
        assert_eq!(l.msr_write(0, msr, 0), Err(Gp), "write {msr:#x}");
    }
    // Write-only.
    assert_eq!(l.msr_read(0, 0x80B), Err(Gp));
    assert_eq!(l.msr_read(0, 0x83F), Err(Gp));
    // Read-only.
    for msr in [0x802, 0x803, 0x80A, 0x80D, 0x810, 0x817, 0x818, 0x820, 0x827, 0x839] {
        assert_eq!(l.msr_write(0, msr, 0), Err(Gp), "write {msr:#x}");
        assert!(l.msr_read(0, msr).is_ok(), "read {msr:#x}");
    }
    // EOI and ESR accept only 0.
    assert_eq!(l.msr_write(0, 0x80B, 1), Err(Gp));
    assert_eq!(l.msr_write(0, 0x828, 1), Err(Gp));
    assert_eq!(l.msr_write(0, 0x80B, 0), Ok(None));
    assert_eq!(l.msr_write(0, 0x828, 0), Ok(None));
    // Reserved bits.
    let bad: &[(u32, u64)] = &[
        (0x808, 0x100),
        (0x808, 1 << 32),
        (0x80F, 0x400),
        (0x80F, 0x1000),
        (0x832, 0x8_0000),
        (0x832, 0x6_0000),
        (0x833, 0x800),
        (0x835, 0x4_0000),
        (0x837, 0x700),
        (0x82F, 0x2000),
        (0x83E, 0x4),
        (0x83F, 0x100),
        (0x838, 1 << 32),
        (0x830, 1 << 13),
        (0x830, 1 << 16),
        (0x830, 1 << 20),
    ];
    for &(msr, v) in bad {
        assert_eq!(l.msr_write(0, msr, v), Err(Gp), "{msr:#x} <- {v:#x}");
    }
    // Read-only LVT bits are tolerated and ignored.
    assert_eq!(l.msr_write(0, 0x835, 0x1_5700), Ok(None));
    assert_eq!(l.msr_read(0, 0x835), Ok(0x1_0700));
    // TPR, SVR with focus and vector, divide, timer.
    l.msr_write(0, 0x808, 0x45).unwrap();
    assert_eq!(l.msr_read(0, 0x808), Ok(0x45));
    assert_eq!(l.msr_read(0, 0x80A), Ok(0x45));
    l.msr_write(0, 0x80F, 0x3FF).unwrap();
    assert_eq!(l.msr_read(0, 0x80F), Ok(0x3FF));
    l.set_suppress_eoi_broadcast_supported(true);
    l.msr_write(0, 0x80F, 0x11FF).unwrap();
    assert_eq!(l.msr_read(0, 0x803), Ok(0x0106_0014));
    l.msr_write(0, 0x83E, 0xB).unwrap();
    assert_eq!(l.msr_read(0, 0x83E), Ok(0xB));
    // ICR: one 64-bit register; the destination is 32 bits; bit 12 is ignored.
    let m = ipi(l.msr_write(0, 0x830, 0x0000_0456_0000_1841).unwrap());
    assert_eq!(m.destination, Destination::Logical(0x456));
    assert_eq!(m.vector, 0x41);
    assert_eq!(l.msr_read(0, 0x830), Ok(0x0000_0456_0000_0841));
    let m = ipi(l.msr_write(0, 0x830, 0xFFFF_FFFF_0000_0030).unwrap());
    assert_eq!(m.destination, Destination::Physical(0xFFFF_FFFF));
    assert_eq!(l.msr_write(0, 0x830, 0x0000_000F), Ok(None));
    // SELF_IPI.
    let m = ipi(l.msr_write(0, 0x83F, 0x77).unwrap());
    assert_eq!(
        m,
        InterruptMessage {
            vector: 0x77,
            delivery: DeliveryMode::Fixed,
            destination: Destination::This,
            level_triggered: false,
            assert: true,
        }
    );
    assert_eq!(l.msr_write(0, 0x83F, 0x0F), Ok(None));
    l.msr_write(0, 0x828, 0).unwrap();
    assert_eq!(l.msr_read(0, 0x828), Ok(ESR_SEND_ILLEGAL_VECTOR as u64));
    // IRR/ISR/TMR words.
    l.deliver(&fixed(0x41, true));
    assert_eq!(l.msr_read(0, 0x822), Ok(2));
    assert_eq!(l.msr_read(0, 0x81A), Ok(2));
    l.msr_write(0, 0x808, 0).unwrap();
    l.acknowledge();
    assert_eq!(l.msr_read(0, 0x812), Ok(2));
}

/// (divide configuration value, divider) for all eight encodings.
const DIVIDERS: [(u32, u64); 8] =
    [(0x0, 2), (0x1, 4), (0x2, 8), (0x3, 16), (0x8, 32), (0x9, 64), (0xA, 128), (0xB, 1)];

#[test]
fn one_shot_timer_in_every_divider() {
    for (dcr, div) in DIVIDERS {
        assert_eq!(divider(dcr), div);
        let mut l = enabled();
        let t0 = 1_000;
        wr(&mut l, t0, 0x3E0, dcr);
        wr(&mut l, t0, 0x320, 0x40);
        wr(&mut l, t0, 0x380, 1000);
        let ticks = 1000 * div * 2;
        assert_eq!(Timed::deadline(&l), Some(t0 + ticks), "div {div}");
        assert_eq!(rd(&mut l, t0, 0x390), 1000);
        // One count per `div` bus cycles = 2 * div ticks.
        assert_eq!(rd(&mut l, t0 + 2 * div - 1, 0x390), 1000);
        assert_eq!(rd(&mut l, t0 + 2 * div, 0x390), 999);
        assert_eq!(rd(&mut l, t0 + ticks / 2, 0x390), 500);
        assert_eq!(rd(&mut l, t0 + ticks - 1, 0x390), 1);
        assert!(!l.irr(0x40));
        l.advance_to(t0 + ticks);
        assert!(l.irr(0x40));
        assert_eq!(rd(&mut l, t0 + ticks, 0x390), 0);
        assert_eq!(Timed::deadline(&l), None);
        assert_eq!(rd(&mut l, t0 + ticks, 0x380), 1000);
        // Re-arm by writing the initial count again.
        wr(&mut l, t0 + ticks + 5, 0x380, 10);
        assert_eq!(Timed::deadline(&l), Some(t0 + ticks + 5 + 10 * div * 2));
    }
}

#[test]
fn timer_with_an_uneven_clock_ratio() {
    // 2.1 GHz TSC, 25 MHz crystal: 84 ticks per bus cycle.
    let mut l = Lapic::new(0, true, Timebase::new(2_100_000_000), 25_000_000);
    wr(&mut l, 0, 0xF0, 0x1FF);
    wr(&mut l, 0, 0x3E0, 0xB);
    wr(&mut l, 0, 0x320, 0x2_0040);
    wr(&mut l, 0, 0x380, 25_000);
    assert_eq!(Timed::deadline(&l), Some(2_100_000));
    assert_eq!(rd(&mut l, 1_050_000, 0x390), 12_500);
    // 1 GHz TSC, 3 GHz bus: three counts per tick.
    let mut l = Lapic::new(0, true, Timebase::new(1_000_000_000), 3_000_000_000);
    wr(&mut l, 0, 0xF0, 0x1FF);
    wr(&mut l, 0, 0x3E0, 0xB);
    wr(&mut l, 0, 0x320, 0x2_0040);
    wr(&mut l, 0, 0x380, 2);
    // 2 counts are 0.67 ticks: rounded down to 0, the period is kept at one tick.
    assert_eq!(Timed::deadline(&l), Some(0));
    l.advance_to(0);
    assert!(l.irr(0x40));
    assert_eq!(Timed::deadline(&l), Some(1));
    l.advance_to(1_000);
    assert_eq!(Timed::deadline(&l), Some(1_001));
}

#[test]
fn periodic_timer_keeps_its_phase() {
    let mut l = enabled();
    wr(&mut l, 0, 0x3E0, 0x0); // divide by 2: a count is 4 ticks.
    wr(&mut l, 100, 0x320, 0x2_0040);
    wr(&mut l, 100, 0x380, 250); // period 1000 ticks.
    assert_eq!(Timed::deadline(&l), Some(1_100));
    // The core is late by 37 ticks: one interrupt, the next expiry stays on the phase.
    l.advance_to(1_137);
    assert!(l.irr(0x40));
    assert_eq!(Timed::deadline(&l), Some(2_100));
    assert_eq!(rd(&mut l, 1_137, 0x390), 250 - 37 / 4);
    assert_eq!(l.acknowledge(), Some(0x40));
    wr(&mut l, 1_200, 0xB0, 0);
    // Exactly one IRR set per expiry.
    let mut fired = 0;
    for k in 2..50u64 {
        let at = 100 + k * 1_000;
        l.advance_to(at - 1);
        assert!(!l.irr(0x40));
        l.advance_to(at);
        assert!(l.irr(0x40));
        assert_eq!(l.acknowledge(), Some(0x40));
        wr(&mut l, at, 0xB0, 0);
        fired += 1;
        assert_eq!(Timed::deadline(&l), Some(at + 1_000));
    }
    assert_eq!(fired, 48);
    // Many periods missed: they coalesce into one IRR bit, the phase is kept.
    l.advance_to(100 + 49 * 1_000 + 10 * 1_000 + 500);
    assert!(l.irr(0x40));
    assert_eq!(Timed::deadline(&l), Some(100 + 60 * 1_000));
    // Reading the current count between advances computes it, it is never stored.
    assert_eq!(rd(&mut l, 100 + 59 * 1_000 + 600, 0x390), 250 - 600 / 4);
    // Writing 0 stops it.
    wr(&mut l, 60_000, 0x380, 0);
    assert_eq!(Timed::deadline(&l), None);
    assert_eq!(rd(&mut l, 60_000, 0x390), 0);
}

#[test]
fn masked_timer_counts_without_interrupts() {
    let mut l = enabled();
    wr(&mut l, 0, 0x3E0, 0xB); // divide by 1: a count is 2 ticks.
    wr(&mut l, 0, 0x320, 0x3_0040); // periodic, masked
    wr(&mut l, 0, 0x380, 500); // period 1000 ticks
    assert_eq!(Timed::deadline(&l), None, "masked: no host timer needed");
    assert_eq!(rd(&mut l, 2_500, 0x390), 250);
    l.advance_to(5_000);
    assert!(!l.irr(0x40));
    // Unmasking keeps the phase.
    wr(&mut l, 5_200, 0x320, 0x2_0040);
    assert_eq!(Timed::deadline(&l), Some(6_000));
    l.advance_to(6_000);
    assert!(l.irr(0x40));
    // One-shot, masked, runs down to 0.
    let mut l = enabled();
    wr(&mut l, 0, 0x3E0, 0xB);
    wr(&mut l, 0, 0x320, 0x1_0040);
    wr(&mut l, 0, 0x380, 100);
    assert_eq!(rd(&mut l, 100, 0x390), 50);
    assert_eq!(rd(&mut l, 200, 0x390), 0);
    wr(&mut l, 300, 0x320, 0x40);
    assert!(!l.irr(0x40));
    assert_eq!(Timed::deadline(&l), None);
}

#[test]
fn mode_changes_and_divider_changes() {
    let mut l = enabled();
    wr(&mut l, 0, 0x3E0, 0xB);
    wr(&mut l, 0, 0x320, 0x40);
    wr(&mut l, 0, 0x380, 1000); // expires at 2000
                                // One-shot -> periodic: the count runs on, then reloads.
    wr(&mut l, 500, 0x320, 0x2_0040);
    assert_eq!(Timed::deadline(&l), Some(2_000));
    l.advance_to(2_000);
    assert_eq!(Timed::deadline(&l), Some(4_000));
    // Periodic -> one-shot: the current period ends, nothing follows.
    wr(&mut l, 2_500, 0x320, 0x40);
    l.advance_to(4_000);
    assert_eq!(Timed::deadline(&l), None);
    // A divider change keeps the counts left, at the new rate from now on.
    wr(&mut l, 10_000, 0x380, 1000); // 2000 ticks
    wr(&mut l, 11_000, 0x3E0, 0x0); // 500 left, now 4 ticks each
    assert_eq!(rd(&mut l, 11_000, 0x390), 500);
    assert_eq!(Timed::deadline(&l), Some(13_000));
    // Into TSC-deadline mode: disarmed, initial count cleared, its writes ignored.
    wr(&mut l, 12_000, 0x320, 0x4_0040);
    assert_eq!(Timed::deadline(&l), None);
    assert_eq!(rd(&mut l, 12_000, 0x380), 0);
    wr(&mut l, 12_000, 0x380, 5);
    assert_eq!(rd(&mut l, 12_000, 0x380), 0);
    assert_eq!(rd(&mut l, 12_000, 0x390), 0);
    l.set_tsc_deadline(12_000, 20_000);
    assert_eq!(l.tsc_deadline(12_000), 20_000);
    // Out of TSC-deadline mode: the deadline is dropped.
    wr(&mut l, 13_000, 0x320, 0x40);
    assert_eq!(l.tsc_deadline(13_000), 0);
    assert_eq!(Timed::deadline(&l), None);
    // IA32_TSC_DEADLINE writes are ignored outside TSC-deadline mode.
    l.set_tsc_deadline(13_000, 30_000);
    assert_eq!(Timed::deadline(&l), None);
    // Reserved timer mode 3 counts as one-shot in xAPIC mode.
    wr(&mut l, 14_000, 0x320, 0x6_0040);
    wr(&mut l, 14_000, 0x380, 10);
    assert_eq!(Timed::deadline(&l), Some(14_040));
    l.advance_to(14_040);
    assert_eq!(Timed::deadline(&l), None);
}

#[test]
fn tsc_deadline_timer() {
    let mut l = enabled();
    wr(&mut l, 0, 0x320, 0x4_0040);
    assert_eq!(l.tsc_deadline(0), 0);
    l.set_tsc_deadline(100, 5_000);
    assert_eq!(Timed::deadline(&l), Some(5_000));
    assert_eq!(l.tsc_deadline(4_999), 5_000);
    l.advance_to(4_999);
    assert!(!l.irr(0x40));
    l.advance_to(5_000);
    assert!(l.irr(0x40));
    // Fired: disarmed, the MSR reads 0.
    assert_eq!(l.tsc_deadline(5_000), 0);
    assert_eq!(Timed::deadline(&l), None);
    l.acknowledge();
    // Re-arm, then disarm with 0.
    l.set_tsc_deadline(6_000, 7_000);
    l.set_tsc_deadline(6_500, 0);
    l.advance_to(8_000);
    assert!(!l.irr(0x40));
    // A deadline in the past fires at once.
    l.set_tsc_deadline(9_000, 10);
    assert!(l.irr(0x40));
    assert_eq!(Timed::deadline(&l), None);
    // Masked: the deadline passes without an interrupt.
    let mut l = enabled();
    wr(&mut l, 0, 0x320, 0x5_0040);
    l.set_tsc_deadline(0, 100);
    assert_eq!(Timed::deadline(&l), None);
    l.advance_to(200);
    assert_eq!(l.tsc_deadline(200), 0);
    assert!(!l.irr(0x40));
    // The Timed trait drives it as well.
    let mut l = enabled();
    wr(&mut l, 0, 0x320, 0x4_0050);
    l.set_tsc_deadline(0, 100);
    let mut sink = crate::irq::RecordingSink::default();
    let mut ctx = Ctx { now: 150, vcpu: 0, irq: &mut sink };
    Timed::advance(&mut l, &mut ctx);
    assert_eq!(l.pending_interrupt(), Some(0x50));
    assert!(sink.events.is_empty());
}

#[test]
fn timer_in_x2apic_mode() {
    let mut l = x2();
    l.msr_write(0, 0x83E, 0xB).unwrap();
    l.msr_write(0, 0x832, 0x2_0040).unwrap();
    l.msr_write(0, 0x838, 100).unwrap();
    assert_eq!(l.msr_read(50, 0x839), Ok(75));
    assert_eq!(l.msr_read(50, 0x838), Ok(100));
    assert_eq!(Timed::deadline(&l), Some(200));
    assert_eq!(l.msr_read(250, 0x839), Ok(75));
    assert!(l.irr(0x40));
}

#[test]
fn lint_pins_and_virtual_wire() {
    let mut l = enabled();
    assert_eq!(l.lint0_mode(), Lint0Mode::Masked);
    assert!(!l.pic_accepted());
    l.raise_lint0();
    l.raise_lint1();
    assert!(!l.has_pending());
    l.enter_virtual_wire();
    assert_eq!(l.lint0_mode(), Lint0Mode::ExtInt);
    assert!(l.pic_accepted());
    assert_eq!(rd(&mut l, 0, 0x350), 0x700);
    assert_eq!(rd(&mut l, 0, 0x360), 0x400);
    l.raise_lint0();
    assert!(l.take_extint());
    l.raise_lint1();
    assert!(l.take_nmi());
    // LINT0 as a fixed local interrupt.
    wr(&mut l, 0, 0x350, 0x0000_0033);
    assert_eq!(l.lint0_mode(), Lint0Mode::Local);
    assert!(!l.pic_accepted());
    l.raise_lint0();
    assert_eq!(l.pending_interrupt(), Some(0x33));
    // Other local sources by their LVT.
    wr(&mut l, 0, 0x340, 0x400);
    l.local_interrupt(Lvt::Perfmon);
    assert!(l.take_nmi());
    wr(&mut l, 0, 0x330, 0x1_0044);
    l.local_interrupt(Lvt::Thermal);
    assert!(!l.irr(0x44));
    wr(&mut l, 0, 0x2F0, 0x45);
    l.local_interrupt(Lvt::Cmci);
    assert!(l.irr(0x45));
    // Globally disabled: the pins are the CPU's INTR and NMI.
    l.set_apic_base(0xFEE0_0000, false).unwrap();
    assert_eq!(l.lint0_mode(), Lint0Mode::Direct);
    assert!(l.pic_accepted());
    l.raise_lint0();
    l.raise_lint1();
    assert!(l.take_extint() && l.take_nmi());
    assert_eq!(l.pending_interrupt(), None);
}

#[test]
fn page_round_trip() {
    let mut l = enabled();
    wr(&mut l, 0, 0x80, 0x20);
    wr(&mut l, 0, 0xD0, 0x0200_0000);
    wr(&mut l, 0, 0x3E0, 0xB);
    wr(&mut l, 0, 0x320, 0x2_0040);
    wr(&mut l, 0, 0x380, 1_000);
    l.deliver(&fixed(0x60, true));
    l.acknowledge();
    l.deliver(&fixed(0x51, false));
    let mut page = [0u32; 1024];
    l.fill_page(500, &mut page);
    assert_eq!(page[0x8 * 4], 0x20);
    assert_eq!(page[0x39 * 4], 750);
    assert_eq!(page[0x39 * 4 + 1], 0);
    assert_eq!(page[(regs::ISR + 3) * 4], 1);
    assert_eq!(l.regs()[regs::PPR], 0x60);

    let mut m = enabled();
    m.load_page(10_000, &page);
    assert_eq!(m.regs()[..0x39], l.regs()[..0x39]);
    assert_eq!(m.regs()[0x3A..], l.regs()[0x3A..]);
    assert_eq!(rd(&mut m, 10_000, 0x390), 750);
    assert_eq!(Timed::deadline(&m), Some(11_500));
    assert_eq!(wr(&mut m, 10_000, 0xB0, 0), Some(Action::Eoi { vector: 0x60 }));
    assert_eq!(m.acknowledge(), Some(0x51));
    // Garbage in the page is masked to what the registers can hold.
    let mut junk = [0xFFFF_FFFFu32; 1024];
    junk[regs::SVR * 4] = 0x1FF;
    m.load_page(20_000, &junk);
    assert_eq!(m.regs()[regs::IRR] & 0xFFFF, 0);
    assert_eq!(m.regs()[regs::VERSION], 0x0006_0014);
    assert_eq!(m.regs()[regs::LVT_TIMER], 0x7_00FF);
    assert_eq!(m.regs()[regs::ICR_LOW] & ICR_BUSY, 0);
}
