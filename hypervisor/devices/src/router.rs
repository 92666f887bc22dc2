//! The VM's interrupt router: the IOAPIC and the 8259 pair behind one [`IrqSink`], wired as on
//! a PC with the ACPI MADT facts Linux expects.
//!
//! # Inputs
//!
//! A device's [`crate::irq::IrqLine::gsi`] names a router input, 0 to [`ROUTER_INPUTS`] - 1.
//! Inputs 0-15 are the ISA IRQs; 16-23 are GSIs 16-23 (PCI INTx). Each input is the OR of its
//! 32 sources. The wiring ([`ioapic_pin_for`], [`pic_irq_for`]):
//!
//! | input   | PIC          | IOAPIC pin |
//! |---------|--------------|------------|
//! | 0 (PIT) | IRQ 0        | 2 (the MADT override IRQ0 -> GSI 2, [`ISA_OVERRIDES`]) |
//! | 1, 3-15 | IRQ n        | n          |
//! | 2       | IR2 (used only if the guest puts the master in single mode: it is the cascade) | none |
//! | 16-23   | none         | n          |
//!
//! IOAPIC pin 0 has no input: the PIC's INTR output is not wired to it (virtual-wire mode B is
//! not modelled, as in KVM). The PIC reaches a CPU through the LAPIC's LINT0 in ExtINT mode
//! instead (virtual-wire mode A): [`IrqRouter::pic_intr`] and [`IrqRouter::pic_acknowledge`].
//!
//! Every input is wired active-high: an asserted line is a high IOAPIC pin, so the guest must
//! program polarity "high" (IOAPIC polarity bit 0). The ACPI tables have to say so: ISA IRQs
//! without an override are "conforming" (edge, high) which is right; the SCI needs an override
//! with [`SCI_OVERRIDE_FLAGS`] (level, active high) because ACPI's default for it is active
//! low; PCI GSIs 16-23 must be declared level, active high in the DSDT (_PRT / link _CRS),
//! since the PCI default is active low. A line declared active-low would read as asserted
//! while idle.
//!
//! # How the VM core drives it
//!
//! The router is one object under one lock: the IOAPIC MMIO and the PIC ports are *not* put
//! on the [`crate::bus::PortBus`] / [`crate::bus::MmioBus`], because a device access on those
//! buses gets the router as its `ctx.irq` and so must not be inside it. On a port exit the VM
//! core first asks [`IrqRouter::port_read`] / [`IrqRouter::port_write`] (they return `false`
//! when the access is not the PIC's: [`crate::pic::PIC_PORTS`], 0x20-0x21, 0xA0-0xA1,
//! 0x4D0-0x4D1, whole access inside one range), then the port bus; on an MMIO exit it asks
//! [`IrqRouter::mmio_read`] / [`IrqRouter::mmio_write`] (`[ioapic_base, +0x1000)`), then the
//! MMIO bus. After anything that can change the router — one of those accesses, a device
//! access or timer advance that had the router as `ctx.irq`, an [`IrqRouter::eoi`] — it takes
//! [`IrqRouter::take_messages`] and delivers each to the LAPICs its destination selects, and,
//! if a LAPIC's LINT0 is unmasked ExtINT, checks [`IrqRouter::pic_intr`] and at injection
//! gets the vector from [`IrqRouter::pic_acknowledge`] (also for an IOAPIC message with
//! delivery mode ExtINT). When a LAPIC EOIs a vector whose TMR bit is set (a level-triggered
//! message) it calls [`IrqRouter::eoi`] unless the guest suppressed the EOI broadcast; the
//! guest then writes the IOAPIC EOI register itself, which arrives as an MMIO write.

use crate::ioapic::{Ioapic, IOAPIC_DEFAULT_BASE, IOAPIC_MMIO_SIZE, IOAPIC_PINS};
use crate::irq::{InterruptMessage, IrqSink};
use crate::pic::{Pic, PIC_PORTS};

/// Router inputs (the IOAPIC's pins; the first [`ISA_IRQS`] also reach the PIC).
pub const ROUTER_INPUTS: usize = IOAPIC_PINS;
/// ISA IRQs, the inputs that reach the PIC.
pub const ISA_IRQS: u32 = 16;
/// The PIT's ISA IRQ and the GSI (IOAPIC pin) it arrives on.
pub const PIT_IRQ: u32 = 0;
pub const PIT_GSI: u32 = 2;
/// The PIC input taken by the slave.
pub const CASCADE_IRQ: u32 = 2;

/// MADT interrupt source override flags (MPS INTI flags): polarity in bits 0-1 (0 conforming,
/// 1 high, 3 low), trigger mode in bits 2-3 (0 conforming, 1 edge, 3 level).
pub const ISO_CONFORMING: u16 = 0;
/// The flags for the SCI's override: level-triggered, active high.
pub const SCI_OVERRIDE_FLAGS: u16 = 0b1101;

/// One MADT interrupt source override (bus 0, ISA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsaOverride {
    pub irq: u8,
    pub gsi: u32,
    pub flags: u16,
}

/// The overrides this wiring needs in every MADT. (Add one for the SCI with
/// [`SCI_OVERRIDE_FLAGS`]: its IRQ is the PM device's configuration, not the router's.)
pub const ISA_OVERRIDES: [IsaOverride; 1] =
    [IsaOverride { irq: PIT_IRQ as u8, gsi: PIT_GSI, flags: ISO_CONFORMING }];

/// The GSI an ISA IRQ arrives on (the override table applied).
pub const fn gsi_for_isa_irq(irq: u32) -> u32 {
    if irq == PIT_IRQ {
        PIT_GSI
    } else {
        irq
    }
}

/// The IOAPIC pin router input `input` drives, if any.
pub const fn ioapic_pin_for(input: u32) -> Option<usize> {
    match input {
        PIT_IRQ => Some(PIT_GSI as usize),
        CASCADE_IRQ => None,
        i if (i as usize) < ROUTER_INPUTS => Some(i as usize),
        _ => None,
    }
}

/// The PIC IRQ router input `input` drives, if any.
pub const fn pic_irq_for(input: u32) -> Option<u32> {
    if input < ISA_IRQS {
        Some(input)
    } else {
        None
    }
}

/// The IOAPIC and the PIC pair, fed from per-input source masks.
#[derive(Debug, Clone)]
pub struct IrqRouter {
    ioapic: Ioapic,
    ioapic_base: u64,
    pic: Pic,
    /// Bit s of `sources[i]`: source s asserts input i.
    sources: [u32; ROUTER_INPUTS],
}

/// The GSIs wired active-low to the IOAPIC, as the MADT's overrides describe them: the SCI
/// (level, active low). A device's line says whether it asserts its interrupt; on these pins
/// the wire is low while it does, so an IOAPIC entry programmed as the MADT says (active low)
/// sees it asserted exactly then, and an idle SCI is a high wire.
pub const ACTIVE_LOW_GSIS: u32 = 1 << crate::power::SCI_IRQ;

impl Default for IrqRouter {
    fn default() -> Self {
        Self::new(IOAPIC_DEFAULT_BASE, 0)
    }
}

impl IrqRouter {
    /// A router with its IOAPIC at `ioapic_base` with APIC ID `ioapic_id`.
    pub fn new(ioapic_base: u64, ioapic_id: u8) -> Self {
        IrqRouter {
            ioapic: Ioapic::new(ioapic_id),
            ioapic_base,
            pic: Pic::new(),
            sources: [0; ROUTER_INPUTS],
        }
        .with_idle_wires()
    }

    /// Both chips to their power-on state (a VM reset); the lines stay as devices drive them.
    pub fn reset(&mut self) {
        self.ioapic.reset();
        self.pic.reset();
        for pin in 0..ROUTER_INPUTS {
            let wire = self.wire(pin as u32, self.sources[pin] != 0);
            self.ioapic.set_pin(pin, wire);
        }
    }

    fn with_idle_wires(mut self) -> Self {
        for pin in 0..ROUTER_INPUTS {
            if ACTIVE_LOW_GSIS & (1 << pin) != 0 {
                self.ioapic.set_pin(pin, true);
            }
        }
        self
    }

    /// The IOAPIC wire level of `gsi` when its line is `asserted` (see [`ACTIVE_LOW_GSIS`]).
    fn wire(&self, gsi: u32, asserted: bool) -> bool {
        asserted != (gsi < 32 && ACTIVE_LOW_GSIS & (1 << gsi) != 0)
    }

    pub fn ioapic(&self) -> &Ioapic {
        &self.ioapic
    }
    pub fn ioapic_mut(&mut self) -> &mut Ioapic {
        &mut self.ioapic
    }
    pub fn ioapic_base(&self) -> u64 {
        self.ioapic_base
    }
    pub fn pic(&self) -> &Pic {
        &self.pic
    }
    pub fn pic_mut(&mut self) -> &mut Pic {
        &mut self.pic
    }

    /// The level of router input `input` (the OR of its sources; false out of range).
    pub fn line_level(&self, input: u32) -> bool {
        self.sources.get(input as usize).is_some_and(|&s| s != 0)
    }

    /// The IOAPIC's queued messages, oldest first.
    pub fn take_messages(&mut self) -> alloc::vec::Drain<'_, InterruptMessage> {
        self.ioapic.take_messages()
    }

    pub fn has_messages(&self) -> bool {
        self.ioapic.has_messages()
    }

    /// A LAPIC's EOI broadcast for a level-triggered `vector`.
    pub fn eoi(&mut self, vector: u8) {
        self.ioapic.eoi(vector);
    }

    /// The PIC's INTR output.
    pub fn pic_intr(&self) -> bool {
        self.pic.intr()
    }

    /// INTA to the PIC: the vector to inject.
    pub fn pic_acknowledge(&mut self) -> u8 {
        self.pic.acknowledge()
    }

    /// Whether an access of `len` bytes at `port` is the PIC's.
    pub fn claims_port(&self, port: u16, len: usize) -> bool {
        Self::is_pic_port(port, len)
    }

    /// Whether an access of `len` bytes at `port` is the PIC's (the ports are fixed: no need to
    /// hold the router's lock to ask).
    pub fn is_pic_port(port: u16, len: usize) -> bool {
        PIC_PORTS.iter().any(|&(b, n)| port >= b && (port as usize - b as usize) + len <= n as usize)
            && len > 0
    }

    /// Whether an access of `len` bytes at `gpa` is the IOAPIC's.
    pub fn claims_mmio(&self, gpa: u64, len: usize) -> bool {
        gpa.checked_sub(self.ioapic_base)
            .and_then(|off| off.checked_add(len as u64))
            .is_some_and(|end| end <= IOAPIC_MMIO_SIZE)
            && len > 0
    }

    /// A port read; `false` if the access is not the PIC's (data untouched).
    pub fn port_read(&mut self, port: u16, data: &mut [u8]) -> bool {
        if !self.claims_port(port, data.len()) {
            return false;
        }
        self.pic.port_read(port, data);
        true
    }

    /// A port write; `false` if the access is not the PIC's.
    pub fn port_write(&mut self, port: u16, data: &[u8]) -> bool {
        if !self.claims_port(port, data.len()) {
            return false;
        }
        self.pic.port_write(port, data);
        true
    }

    /// An MMIO read; `false` if the access is not the IOAPIC's (data untouched).
    pub fn mmio_read(&mut self, gpa: u64, data: &mut [u8]) -> bool {
        if !self.claims_mmio(gpa, data.len()) {
            return false;
        }
        self.ioapic.mmio_read(gpa - self.ioapic_base, data);
        true
    }

    /// An MMIO write; `false` if the access is not the IOAPIC's. Take the messages after it.
    pub fn mmio_write(&mut self, gpa: u64, data: &[u8]) -> bool {
        if !self.claims_mmio(gpa, data.len()) {
            return false;
        }
        self.ioapic.mmio_write(gpa - self.ioapic_base, data);
        true
    }
}

impl IrqSink for IrqRouter {
    fn set_level(&mut self, gsi: u32, source: u8, level: bool) {
        let Some(mask) = self.sources.get_mut(gsi as usize) else { return };
        let was = *mask != 0;
        let bit = 1u32 << (source & 31);
        if level {
            *mask |= bit;
        } else {
            *mask &= !bit;
        }
        let now = *mask != 0;
        if now == was {
            return;
        }
        if let Some(irq) = pic_irq_for(gsi) {
            self.pic.set_irq(irq, now);
        }
        if let Some(pin) = ioapic_pin_for(gsi) {
            let wire = self.wire(gsi, now);
            self.ioapic.set_pin(pin, wire);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sci_is_wired_active_low_as_the_madt_says() {
        let mut r = IrqRouter::default();
        // GSI 9 programmed as the MADT override says: level, active low, vector 0x39.
        program(&mut r, 9, 0x39 | (1 << 15) | (1 << 13), 0);
        assert!(msgs(&mut r).is_empty(), "an idle SCI is not an interrupt");
        r.set_level(9, 0, true);
        let m = msgs(&mut r);
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].vector, 0x39);
        r.set_level(9, 0, false);
        r.reset();
        program(&mut r, 9, 0x39 | (1 << 15) | (1 << 13), 0);
        assert!(msgs(&mut r).is_empty(), "idle again after a reset");
    }
    use crate::irq::{DeliveryMode, Destination, IrqLine};
    use alloc::vec::Vec;

    const BASE: u64 = IOAPIC_DEFAULT_BASE;

    fn ioapic_write(r: &mut IrqRouter, reg: u8, v: u32) {
        assert!(r.mmio_write(BASE, &[reg, 0, 0, 0]));
        assert!(r.mmio_write(BASE + 0x10, &v.to_le_bytes()));
    }
    fn program(r: &mut IrqRouter, pin: u8, low: u32, dest: u8) {
        ioapic_write(r, 0x11 + 2 * pin, (dest as u32) << 24);
        ioapic_write(r, 0x10 + 2 * pin, low);
    }
    fn msgs(r: &mut IrqRouter) -> Vec<InterruptMessage> {
        r.take_messages().collect()
    }
    fn pic_init(r: &mut IrqRouter) {
        for (port, v) in [(0x20, 0x11), (0x21, 0x30), (0x21, 0x04), (0x21, 0x01), (0x21, 0x00)] {
            assert!(r.port_write(port, &[v]));
        }
        for (port, v) in [(0xA0, 0x11), (0xA1, 0x38), (0xA1, 0x02), (0xA1, 0x01), (0xA1, 0x00)] {
            assert!(r.port_write(port, &[v]));
        }
    }

    #[test]
    fn wiring_constants() {
        assert_eq!(gsi_for_isa_irq(0), 2);
        assert_eq!(gsi_for_isa_irq(4), 4);
        assert_eq!(ioapic_pin_for(0), Some(2));
        assert_eq!(ioapic_pin_for(2), None);
        assert_eq!(ioapic_pin_for(9), Some(9));
        assert_eq!(ioapic_pin_for(23), Some(23));
        assert_eq!(ioapic_pin_for(24), None);
        assert_eq!(pic_irq_for(15), Some(15));
        assert_eq!(pic_irq_for(16), None);
        for o in ISA_OVERRIDES {
            assert_eq!(ioapic_pin_for(o.irq as u32), Some(o.gsi as usize));
        }
        // Every ISA IRQ but the cascade reaches the IOAPIC pin its GSI names.
        for irq in (0..ISA_IRQS).filter(|&i| i != CASCADE_IRQ) {
            assert_eq!(ioapic_pin_for(irq), Some(gsi_for_isa_irq(irq) as usize));
        }
    }

    #[test]
    fn irq0_reaches_pic_irq0_and_ioapic_pin2() {
        let mut r = IrqRouter::default();
        pic_init(&mut r);
        program(&mut r, 2, 0x30, 0);
        program(&mut r, 0, 0x31, 0);
        let pit = IrqLine::new(PIT_IRQ);
        pit.pulse(&mut r);
        let m = msgs(&mut r);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].vector, 0x30);
        assert_eq!(m[0].destination, Destination::Physical(0));
        assert!(r.pic_intr());
        assert_eq!(r.pic_acknowledge(), 0x30);
        assert!(!r.ioapic().pin_level(0));
    }

    #[test]
    fn isa_and_pci_inputs() {
        let mut r = IrqRouter::default();
        pic_init(&mut r);
        program(&mut r, 4, 0x34, 1);
        program(&mut r, 18, 0x52 | (1 << 15), 1);
        IrqLine::new(4).pulse(&mut r);
        assert_eq!(msgs(&mut r)[0].vector, 0x34);
        assert_eq!(r.pic_acknowledge(), 0x34);
        IrqLine::new(18).raise(&mut r);
        let m = msgs(&mut r);
        assert_eq!(m[0].vector, 0x52);
        assert!(m[0].level_triggered);
        assert_eq!(m[0].delivery, DeliveryMode::Fixed);
        assert!(!r.pic_intr(), "GSI 18 is not the PIC's");
        r.eoi(0x52);
        assert_eq!(msgs(&mut r).len(), 1, "still asserted: delivered again");
        IrqLine::new(18).lower(&mut r);
        r.eoi(0x52);
        assert!(msgs(&mut r).is_empty());
        // Input 2 reaches neither chip in cascade mode; out-of-range inputs are ignored.
        program(&mut r, 2, 0x30, 0);
        IrqLine::new(2).raise(&mut r);
        IrqLine::new(24).raise(&mut r);
        IrqLine::new(u32::MAX).raise(&mut r);
        assert!(msgs(&mut r).is_empty());
        assert!(!r.pic_intr());
        assert!(r.line_level(2));
        assert!(!r.line_level(24));
    }

    #[test]
    fn shared_lines_stay_up_until_every_source_drops() {
        let mut r = IrqRouter::default();
        pic_init(&mut r);
        assert!(r.port_write(0x4D1, &[0x08]));
        program(&mut r, 11, 0x4B | (1 << 15), 0);
        let a = IrqLine::shared(11, 0);
        let b = IrqLine::shared(11, 5);
        a.raise(&mut r);
        b.raise(&mut r);
        assert_eq!(msgs(&mut r).len(), 1);
        a.lower(&mut r);
        assert!(r.line_level(11));
        r.eoi(0x4B);
        assert_eq!(msgs(&mut r).len(), 1, "b still holds the line");
        assert_eq!(r.pic_acknowledge(), 0x3B);
        // Source 37 folds onto source 5.
        IrqLine::shared(11, 37).lower(&mut r);
        assert!(!r.line_level(11));
        r.eoi(0x4B);
        assert!(msgs(&mut r).is_empty());
        // The PIC's level IRQ 11 dropped too: after EOI nothing is pending.
        assert!(r.port_write(0xA0, &[0x20]));
        assert!(r.port_write(0x20, &[0x20]));
        assert!(!r.pic_intr());
        // Setting a level again is harmless.
        a.lower(&mut r);
        a.lower(&mut r);
        assert!(!r.line_level(11));
    }

    #[test]
    fn access_claims() {
        let mut r = IrqRouter::new(0xFEC0_1000, 7);
        assert!(r.claims_port(0x20, 1) && r.claims_port(0x20, 2) && r.claims_port(0x4D1, 1));
        assert!(!r.claims_port(0x21, 2) && !r.claims_port(0x20, 4) && !r.claims_port(0x20, 0));
        assert!(!r.claims_port(0x40, 1) && !r.claims_port(0xFFFF, 1));
        let mut d = [0u8; 4];
        assert!(!r.port_read(0x60, &mut d));
        assert!(!r.port_write(0x21, &[0, 0]));
        assert!(r.claims_mmio(0xFEC0_1000, 4) && r.claims_mmio(0xFEC0_1FFC, 4));
        assert!(!r.claims_mmio(0xFEC0_1FFE, 4) && !r.claims_mmio(0xFEC0_0FFC, 4));
        assert!(!r.claims_mmio(u64::MAX, 8) && !r.claims_mmio(0xFEC0_1000, 0));
        assert!(!r.mmio_read(0xFEC0_0000, &mut d));
        assert!(r.mmio_write(0xFEC0_1000, &[0, 0, 0, 0]));
        assert!(r.mmio_read(0xFEC0_1010, &mut d));
        assert_eq!(u32::from_le_bytes(d), 7 << 24);
        // The EOI register through the router.
        assert!(r.mmio_write(0xFEC0_1040, &[0x30, 0, 0, 0]));
    }

    #[test]
    fn reset_keeps_lines_and_masks_everything() {
        let mut r = IrqRouter::default();
        pic_init(&mut r);
        program(&mut r, 10, 0x49 | (1 << 15), 0);
        IrqLine::new(10).raise(&mut r);
        assert_eq!(msgs(&mut r).len(), 1);
        r.reset();
        assert!(!r.has_messages());
        assert!(!r.pic_intr());
        assert!(r.line_level(10));
        program(&mut r, 10, 0x49 | (1 << 15), 0);
        assert_eq!(msgs(&mut r).len(), 1, "the line is still asserted after the reset");
    }
}
