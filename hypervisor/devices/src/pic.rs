//! The two 8259A PICs of a PC, the slave cascaded on the master's IR2, and the ELCR.
//!
//! Ports (absolute; [`Pic::port_read`] / [`Pic::port_write`] and the [`PortDevice`] impl take
//! the port number itself, see [`PIC_PORTS`]):
//! - 0x20 / 0x21: master command (ICW1, OCW2, OCW3; reads IRR, ISR or the poll byte) / data
//!   (ICW2-ICW4 during initialization, then OCW1, the mask; reads the mask).
//! - 0xA0 / 0xA1: the same for the slave (IRQ 8-15).
//! - 0x4D0 / 0x4D1: the edge/level control registers of the master and the slave (bit set:
//!   level). IRQ 0, 1, 2, 8 and 13 are always edge: those bits read 0 and ignore writes.
//!
//! A wider access is a run of byte accesses at consecutive ports (as the ISA bus splits it);
//! bytes at ports that are not the PIC's read all ones.
//!
//! Inputs ([`Pic::set_irq`], IRQ 0-15): an edge input latches its IRR bit on a rising edge and
//! holds it until INTA (so a device's raise-then-lower pulse is seen); a level input (ELCR bit,
//! or ICW1.LTIM for the whole chip) has its IRR bit follow the line, so a request that goes
//! away before INTA gives the spurious vector. The master's IR2 is the slave's INT output, an
//! edge input like the others: it latches when the slave gets a deliverable request (the
//! slave's INT drops during its own INTA, so a request still pending after it is a new edge)
//! and clears on the master's INTA of IR2. If the slave has nothing left at that INTA (its
//! level request went away, or it was masked) the vector is the slave's base + 7: the
//! spurious IRQ 15, with the master's IS bit 2 set, as on hardware, so the OS EOIs the
//! master. With the master in single mode (ICW1.SNGL) the slave is disconnected and IRQ 2 is
//! an ordinary master input.
//!
//! Priority: IR `(priority_add + k) & 7` has rank k, 0 the highest; rotation moves
//! `priority_add`. A request is deliverable if unmasked and of higher rank than every bit in
//! service. Special fully nested mode (ICW4.SFNM) on the master lets IR2 nest on itself, so a
//! higher-priority slave request gets through while a slave request is in service. Special
//! mask mode (OCW3) is the datasheet's: in-service bits block nothing but their own level, so
//! every unmasked level not in service is enabled.
//!
//! INTA ([`Pic::acknowledge`]) returns the vector `base | ir` of the highest deliverable
//! request and sets its IS bit (not in auto-EOI mode, which may rotate instead); with nothing
//! deliverable it returns the master's base + 7 and changes nothing (spurious IRQ 7).
//! A poll (OCW3.P, then a read of the chip) acknowledges on that chip alone and returns
//! `0x80 | ir`, or 0 with nothing to deliver.
//!
//! Power-on state: both chips initialized as a PC BIOS leaves them (vectors 0x08 and 0x70,
//! cascade on IR2, 8086 mode, normal EOI, everything edge) but with every IRQ masked, so that
//! nothing reaches a guest that never programs the PIC.

use crate::bus::{Ctx, Effect, PortDevice};

pub const PIC_MASTER_CMD: u16 = 0x20;
pub const PIC_MASTER_DATA: u16 = 0x21;
pub const PIC_SLAVE_CMD: u16 = 0xA0;
pub const PIC_SLAVE_DATA: u16 = 0xA1;
pub const ELCR_MASTER: u16 = 0x4D0;
pub const ELCR_SLAVE: u16 = 0x4D1;
/// The port ranges (base, length) the PIC pair answers.
pub const PIC_PORTS: [(u16, u16); 3] = [(PIC_MASTER_CMD, 2), (PIC_SLAVE_CMD, 2), (ELCR_MASTER, 2)];
/// The master input the slave's INT output drives.
pub const PIC_CASCADE_IRQ: u8 = 2;
/// The ELCR bits that can be set: IRQ 0 (timer), 1 (keyboard), 2 (cascade), 8 (RTC) and 13
/// (FPU) are edge on every PC.
pub const ELCR_MASTER_WRITABLE: u8 = 0xF8;
pub const ELCR_SLAVE_WRITABLE: u8 = 0xDE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InitState {
    Ready,
    Icw2,
    Icw3,
    Icw4,
}

/// One 8259A.
#[derive(Debug, Clone)]
struct Chip {
    irr: u8,
    imr: u8,
    isr: u8,
    /// Input levels (for edge detection and level IRR).
    lines: u8,
    elcr: u8,
    elcr_writable: u8,
    /// ICW1.LTIM: every input level-triggered.
    ltim: bool,
    /// ICW1.SNGL.
    single: bool,
    /// ICW1.IC4: an ICW4 follows.
    icw4_needed: bool,
    /// ICW2: the vector base (low 3 bits zero).
    base: u8,
    /// ICW3 as written (the wiring is fixed: slave on IR2).
    icw3: u8,
    /// ICW4 bits.
    auto_eoi: bool,
    sfnm: bool,
    /// The IR with the highest priority.
    priority_add: u8,
    rotate_on_auto_eoi: bool,
    special_mask: bool,
    read_isr: bool,
    poll: bool,
    init: InitState,
}

impl Chip {
    fn new(base: u8, elcr_writable: u8, icw3: u8) -> Self {
        Chip {
            irr: 0,
            imr: 0xFF,
            isr: 0,
            lines: 0,
            elcr: 0,
            elcr_writable,
            ltim: false,
            single: false,
            icw4_needed: true,
            base,
            icw3,
            auto_eoi: false,
            sfnm: false,
            priority_add: 0,
            rotate_on_auto_eoi: false,
            special_mask: false,
            read_isr: false,
            poll: false,
            init: InitState::Ready,
        }
    }

    fn level_mask(&self) -> u8 {
        if self.ltim {
            0xFF
        } else {
            self.elcr
        }
    }

    /// An input line changes.
    fn set_input(&mut self, ir: u8, level: bool) {
        let bit = 1u8 << (ir & 7);
        let was = self.lines & bit != 0;
        if level {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
        if self.level_mask() & bit != 0 {
            if level {
                self.irr |= bit;
            } else {
                self.irr &= !bit;
            }
        } else if level && !was {
            self.irr |= bit;
        }
    }

    /// The IR of highest priority in `mask`.
    fn highest(&self, mask: u8) -> Option<u8> {
        (0..8u8).map(|k| (k + self.priority_add) & 7).find(|ir| mask & (1 << ir) != 0)
    }

    fn rank(&self, ir: u8) -> u8 {
        ir.wrapping_sub(self.priority_add) & 7
    }

    /// The request this chip would present at INTA. `nest_on` is the master's cascade IR when
    /// special fully nested mode applies (that level may nest on itself).
    fn pending(&self, nest_on: Option<u8>) -> Option<u8> {
        let req = self.irr & !self.imr;
        if self.special_mask {
            return self.highest(req & !self.isr);
        }
        let ir = self.highest(req)?;
        match self.highest(self.isr) {
            None => Some(ir),
            Some(cur) if self.rank(ir) < self.rank(cur) => Some(ir),
            Some(cur) if nest_on == Some(ir) && cur == ir => Some(ir),
            Some(_) => None,
        }
    }

    /// INTA (or a poll) of `ir` on this chip.
    fn ack(&mut self, ir: u8) {
        let bit = 1u8 << ir;
        if self.level_mask() & bit == 0 {
            self.irr &= !bit;
        }
        if self.auto_eoi {
            if self.rotate_on_auto_eoi {
                self.priority_add = (ir + 1) & 7;
            }
        } else {
            self.isr |= bit;
        }
    }

    /// ICW1: start initialization.
    fn icw1(&mut self, v: u8) {
        self.icw4_needed = v & 0x01 != 0;
        self.single = v & 0x02 != 0;
        self.ltim = v & 0x08 != 0;
        self.imr = 0;
        self.isr = 0;
        // The edge sense is reset: latched edges go, level requests follow their lines, and a
        // line already high must go low and high again to request.
        self.irr = self.lines & self.level_mask();
        self.priority_add = 0;
        self.special_mask = false;
        self.read_isr = false;
        self.poll = false;
        self.auto_eoi = false;
        self.sfnm = false;
        self.rotate_on_auto_eoi = false;
        self.init = InitState::Icw2;
    }

    /// A write to the command port (A0 = 0).
    fn write_cmd(&mut self, v: u8) {
        if v & 0x10 != 0 {
            self.icw1(v);
        } else if v & 0x08 != 0 {
            // OCW3
            if v & 0x02 != 0 {
                self.read_isr = v & 0x01 != 0;
            }
            self.poll = v & 0x04 != 0;
            if v & 0x40 != 0 {
                self.special_mask = v & 0x20 != 0;
            }
        } else {
            // OCW2
            let level = v & 7;
            match v >> 5 {
                0b001 => {
                    self.non_specific_eoi();
                }
                0b011 => self.isr &= !(1 << level),
                0b101 => {
                    if let Some(ir) = self.non_specific_eoi() {
                        self.priority_add = (ir + 1) & 7;
                    }
                }
                0b100 => self.rotate_on_auto_eoi = true,
                0b000 => self.rotate_on_auto_eoi = false,
                0b111 => {
                    self.isr &= !(1 << level);
                    self.priority_add = (level + 1) & 7;
                }
                0b110 => self.priority_add = (level + 1) & 7,
                _ => {} // 0b010: no operation
            }
        }
    }

    /// Clear the highest-priority IS bit; which one it was.
    fn non_specific_eoi(&mut self) -> Option<u8> {
        let ir = self.highest(self.isr)?;
        self.isr &= !(1 << ir);
        Some(ir)
    }

    /// A write to the data port (A0 = 1).
    fn write_data(&mut self, v: u8) {
        match self.init {
            InitState::Ready => self.imr = v,
            InitState::Icw2 => {
                self.base = v & 0xF8;
                self.init = if !self.single {
                    InitState::Icw3
                } else if self.icw4_needed {
                    InitState::Icw4
                } else {
                    InitState::Ready
                };
            }
            InitState::Icw3 => {
                self.icw3 = v;
                self.init = if self.icw4_needed { InitState::Icw4 } else { InitState::Ready };
            }
            InitState::Icw4 => {
                self.auto_eoi = v & 0x02 != 0;
                self.sfnm = v & 0x10 != 0;
                self.init = InitState::Ready;
            }
        }
    }

    fn write_elcr(&mut self, v: u8) {
        self.elcr = v & self.elcr_writable;
        let level = self.level_mask();
        self.irr = (self.irr & !level) | (self.lines & level);
    }
}

/// The master/slave 8259A pair with its ELCR.
#[derive(Debug, Clone)]
pub struct Pic {
    master: Chip,
    slave: Chip,
    /// The slave's INT output as the master's IR2 last saw it (for edge detection).
    slave_out: bool,
}

impl Default for Pic {
    fn default() -> Self {
        Self::new()
    }
}

impl Pic {
    pub fn new() -> Self {
        Pic {
            master: Chip::new(0x08, ELCR_MASTER_WRITABLE, 1 << 2),
            slave: Chip::new(0x70, ELCR_SLAVE_WRITABLE, 2),
            slave_out: false,
        }
    }

    /// Back to the power-on state; input levels stay (devices still drive them).
    pub fn reset(&mut self) {
        let (m, s) = (self.master.lines, self.slave.lines);
        *self = Self::new();
        self.master.lines = m;
        self.slave.lines = s;
        self.sync();
    }

    /// Whether the slave is cascaded on the master's IR2 (the master is not in single mode).
    pub fn cascaded(&self) -> bool {
        !self.master.single
    }

    fn master_nest(&self) -> Option<u8> {
        (self.cascaded() && self.master.sfnm).then_some(PIC_CASCADE_IRQ)
    }

    /// Bring the master's cascade input up to date with the slave's INT output: an edge
    /// input latches on a rising edge (and stays latched if the output drops again: the
    /// spurious 15 case), a level input (ICW1.LTIM) follows it.
    fn sync(&mut self) {
        let out = self.slave.pending(None).is_some();
        let rose = out && !self.slave_out;
        self.slave_out = out;
        if !self.cascaded() {
            return;
        }
        let bit = 1u8 << PIC_CASCADE_IRQ;
        if self.master.level_mask() & bit != 0 {
            if out {
                self.master.irr |= bit;
            } else {
                self.master.irr &= !bit;
            }
        } else if rose {
            self.master.irr |= bit;
        }
    }

    /// Set the level of ISA IRQ `irq` (0-15; others are ignored). IRQ 2 reaches the master
    /// only in single mode; in cascade mode that input is the slave.
    pub fn set_irq(&mut self, irq: u32, level: bool) {
        match irq {
            0..=7 => {
                let ir = irq as u8;
                if ir == PIC_CASCADE_IRQ && self.cascaded() {
                    // Remember the level for single mode, but the slave drives IR2.
                    let bit = 1 << ir;
                    self.master.lines =
                        if level { self.master.lines | bit } else { self.master.lines & !bit };
                } else {
                    self.master.set_input(ir, level);
                }
            }
            8..=15 => self.slave.set_input((irq - 8) as u8, level),
            _ => return,
        }
        self.sync();
    }

    /// The INTR output: the master has a deliverable request. (With the master's IR2 latched
    /// from a slave request that has since gone, this is true and INTA gives spurious 15.)
    pub fn intr(&self) -> bool {
        self.master.pending(self.master_nest()).is_some()
    }

    /// INTA: the vector for the CPU, with IRR/ISR updated. With no deliverable request, the
    /// spurious vector (master base + 7, nothing changed).
    pub fn acknowledge(&mut self) -> u8 {
        let v = match self.master.pending(self.master_nest()) {
            None => self.master.base | 7,
            Some(ir) if ir == PIC_CASCADE_IRQ && self.cascaded() => {
                self.master.ack(ir);
                match self.slave.pending(None) {
                    Some(sir) => {
                        self.slave.ack(sir);
                        // The slave's INT drops during its INTA; a request still pending
                        // afterwards (auto-EOI) is a new edge.
                        self.slave_out = false;
                        self.slave.base | sir
                    }
                    None => self.slave.base | 7,
                }
            }
            Some(ir) => {
                self.master.ack(ir);
                self.master.base | ir
            }
        };
        self.sync();
        v
    }

    /// Registers as the guest sees them (for tests and debugging): (IRR, ISR, IMR) of the
    /// master (`slave` false) or the slave.
    pub fn registers(&self, slave: bool) -> (u8, u8, u8) {
        let c = if slave { &self.slave } else { &self.master };
        (c.irr, c.isr, c.imr)
    }

    /// Vector bases (ICW2) of the master and the slave.
    pub fn vector_bases(&self) -> (u8, u8) {
        (self.master.base, self.slave.base)
    }

    /// Whether `port` is one of the PIC pair's six.
    pub fn claims(port: u16) -> bool {
        PIC_PORTS.iter().any(|&(b, n)| port.wrapping_sub(b) < n)
    }

    fn read_byte(&mut self, port: u16) -> u8 {
        let v = match port {
            PIC_MASTER_CMD | PIC_MASTER_DATA | PIC_SLAVE_CMD | PIC_SLAVE_DATA => {
                let is_slave = port & 0x80 != 0;
                let nest = if is_slave { None } else { self.master_nest() };
                let c = if is_slave { &mut self.slave } else { &mut self.master };
                if c.poll {
                    c.poll = false;
                    match c.pending(nest) {
                        Some(ir) => {
                            c.ack(ir);
                            if is_slave {
                                self.slave_out = false;
                            }
                            0x80 | ir
                        }
                        None => 0,
                    }
                } else if port & 1 != 0 {
                    c.imr
                } else if c.read_isr {
                    c.isr
                } else {
                    c.irr
                }
            }
            ELCR_MASTER => self.master.elcr,
            ELCR_SLAVE => self.slave.elcr,
            _ => 0xFF,
        };
        self.sync();
        v
    }

    fn write_byte(&mut self, port: u16, v: u8) {
        match port {
            PIC_MASTER_CMD => {
                // Re-initializing the master forgets its latched IR2; let a slave request
                // still pending latch it again rather than wait for an edge that never comes.
                if v & 0x10 != 0 {
                    self.slave_out = false;
                }
                self.master.write_cmd(v)
            }
            PIC_MASTER_DATA => self.master.write_data(v),
            PIC_SLAVE_CMD => self.slave.write_cmd(v),
            PIC_SLAVE_DATA => self.slave.write_data(v),
            ELCR_MASTER => self.master.write_elcr(v),
            ELCR_SLAVE => self.slave.write_elcr(v),
            _ => {}
        }
        self.sync();
    }

    /// Read `data.len()` bytes starting at absolute `port`.
    pub fn port_read(&mut self, port: u16, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.read_byte(port.wrapping_add(i as u16));
        }
    }

    /// Write `data` starting at absolute `port`.
    pub fn port_write(&mut self, port: u16, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            self.write_byte(port.wrapping_add(i as u16), b);
        }
    }
}

/// `offset` is the absolute port number: the pair spans three separate ranges
/// ([`PIC_PORTS`]), so it is not one [`crate::bus::PortBus`] range; the interrupt router
/// dispatches to it (see `router`).
impl PortDevice for Pic {
    fn read(&mut self, _ctx: &mut Ctx<'_>, offset: u16, data: &mut [u8]) {
        self.port_read(offset, data);
    }
    fn write(&mut self, _ctx: &mut Ctx<'_>, offset: u16, data: &[u8]) -> Effect {
        self.port_write(offset, data);
        Effect::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(p: &mut Pic, port: u16, v: u8) {
        p.port_write(port, &[v]);
    }
    fn inb(p: &mut Pic, port: u16) -> u8 {
        let mut b = [0];
        p.port_read(port, &mut b);
        b[0]
    }
    /// Linux's init_8259A: vectors 0x30 / 0x38, cascade on IR2, 8086 mode, `aeoi` for the
    /// master's auto-EOI, then unmask everything.
    fn linux_init(p: &mut Pic, aeoi: bool) {
        out(p, 0x21, 0xFF);
        out(p, 0xA1, 0xFF);
        out(p, 0x20, 0x11);
        out(p, 0x21, 0x30);
        out(p, 0x21, 0x04);
        out(p, 0x21, if aeoi { 0x03 } else { 0x01 });
        out(p, 0xA0, 0x11);
        out(p, 0xA1, 0x38);
        out(p, 0xA1, 0x02);
        out(p, 0xA1, 0x01);
        out(p, 0x21, 0x00);
        out(p, 0xA1, 0x00);
    }
    fn pulse(p: &mut Pic, irq: u32) {
        p.set_irq(irq, true);
        p.set_irq(irq, false);
    }

    #[test]
    fn power_on_is_masked_and_quiet() {
        let mut p = Pic::new();
        assert_eq!(p.vector_bases(), (0x08, 0x70));
        assert_eq!(inb(&mut p, 0x21), 0xFF);
        assert_eq!(inb(&mut p, 0xA1), 0xFF);
        pulse(&mut p, 0);
        assert!(!p.intr());
        assert_eq!(p.acknowledge(), 0x0F);
        out(&mut p, 0x21, 0xFE);
        assert!(p.intr());
        assert_eq!(p.acknowledge(), 0x08);
    }

    #[test]
    fn init_sequence() {
        let mut p = Pic::new();
        linux_init(&mut p, false);
        assert_eq!(p.vector_bases(), (0x30, 0x38));
        assert_eq!(inb(&mut p, 0x21), 0);
        // ICW2's low 3 bits are ignored; single mode skips ICW3, no IC4 skips ICW4.
        out(&mut p, 0x20, 0x12);
        out(&mut p, 0x21, 0x47);
        out(&mut p, 0x21, 0x5A);
        assert_eq!(p.vector_bases().0, 0x40);
        assert_eq!(inb(&mut p, 0x21), 0x5A);
        // ICW1 clears the mask and the in-service bits and forgets latched edges.
        linux_init(&mut p, false);
        pulse(&mut p, 3);
        assert_eq!(p.acknowledge(), 0x33);
        pulse(&mut p, 4);
        out(&mut p, 0x21, 0x10);
        out(&mut p, 0x20, 0x11);
        assert_eq!(p.registers(false), (0, 0, 0));
        out(&mut p, 0x21, 0x30);
        out(&mut p, 0x21, 0x04);
        out(&mut p, 0x21, 0x01);
        assert!(!p.intr());
        // A line still high after ICW1 must go low and high again.
        p.set_irq(5, true);
        out(&mut p, 0x20, 0x11);
        out(&mut p, 0x21, 0x30);
        out(&mut p, 0x21, 0x04);
        out(&mut p, 0x21, 0x01);
        p.set_irq(5, true);
        assert!(!p.intr());
        p.set_irq(5, false);
        p.set_irq(5, true);
        assert_eq!(p.acknowledge(), 0x35);
    }

    #[test]
    fn priorities_across_the_cascade() {
        let mut p = Pic::new();
        linux_init(&mut p, false);
        pulse(&mut p, 5);
        pulse(&mut p, 12);
        pulse(&mut p, 1);
        pulse(&mut p, 9);
        // 1, then the slave via IR2 (9 before 12), then 5 — each nested under the previous
        // one only if of higher priority, so EOI in between.
        assert_eq!(p.acknowledge(), 0x31);
        assert!(!p.intr(), "IR2 and IR5 are below IR1 in service");
        out(&mut p, 0x20, 0x20);
        assert_eq!(p.acknowledge(), 0x39);
        assert_eq!(p.registers(false).1, 0x04);
        assert_eq!(p.registers(true).1, 0x02);
        assert!(!p.intr());
        // Non-specific EOI to the slave then the master lets IRQ 12 through.
        out(&mut p, 0xA0, 0x20);
        assert!(!p.intr(), "the master's IR2 is still in service");
        out(&mut p, 0x20, 0x20);
        assert_eq!(p.acknowledge(), 0x3C);
        out(&mut p, 0xA0, 0x64);
        out(&mut p, 0x20, 0x62);
        assert_eq!(p.acknowledge(), 0x35);
        out(&mut p, 0x20, 0x65);
        assert!(!p.intr());
        assert_eq!(p.registers(false), (0, 0, 0));
        assert_eq!(p.registers(true), (0, 0, 0));
        // A higher-priority request nests on a lower one in service.
        pulse(&mut p, 6);
        assert_eq!(p.acknowledge(), 0x36);
        pulse(&mut p, 3);
        assert_eq!(p.acknowledge(), 0x33);
        assert_eq!(p.registers(false).1, 0x48);
        // Non-specific EOI ends the highest-priority one (3).
        out(&mut p, 0x20, 0x20);
        assert_eq!(p.registers(false).1, 0x40);
    }

    #[test]
    fn masks_on_master_and_slave() {
        let mut p = Pic::new();
        linux_init(&mut p, false);
        out(&mut p, 0xA1, 0x10);
        pulse(&mut p, 12);
        assert!(!p.intr());
        out(&mut p, 0xA1, 0x00);
        out(&mut p, 0x21, 0x04);
        assert!(!p.intr());
        out(&mut p, 0x21, 0x00);
        assert_eq!(p.acknowledge(), 0x3C);
    }

    #[test]
    fn specific_eoi_and_rotation() {
        let mut p = Pic::new();
        linux_init(&mut p, false);
        pulse(&mut p, 6);
        pulse(&mut p, 4);
        assert_eq!(p.acknowledge(), 0x34);
        out(&mut p, 0x20, 0x64);
        assert_eq!(p.acknowledge(), 0x36);
        // Rotate on non-specific EOI: 6 becomes the lowest, 7 the highest.
        out(&mut p, 0x20, 0xA0);
        pulse(&mut p, 0);
        pulse(&mut p, 7);
        assert_eq!(p.acknowledge(), 0x37);
        out(&mut p, 0x20, 0x20);
        assert_eq!(p.acknowledge(), 0x30);
        out(&mut p, 0x20, 0x20);
        // Set priority: 3 lowest, so 4 highest.
        out(&mut p, 0x20, 0xC3);
        pulse(&mut p, 3);
        pulse(&mut p, 5);
        pulse(&mut p, 4);
        assert_eq!(p.acknowledge(), 0x34);
        // Rotate on specific EOI of 4: 4 becomes the lowest, 5 the highest.
        out(&mut p, 0x20, 0xE4);
        assert_eq!(p.acknowledge(), 0x35);
        out(&mut p, 0x20, 0x20);
        assert_eq!(p.acknowledge(), 0x33);
        // A non-specific EOI with nothing in service is harmless, as is rotate with none.
        out(&mut p, 0x20, 0x20);
        out(&mut p, 0x20, 0x20);
        out(&mut p, 0x20, 0xA0);
        out(&mut p, 0x20, 0x40);
        assert_eq!(p.registers(false).1, 0);
    }

    #[test]
    fn auto_eoi_and_rotate_in_auto_eoi() {
        let mut p = Pic::new();
        linux_init(&mut p, true);
        pulse(&mut p, 3);
        pulse(&mut p, 5);
        assert_eq!(p.acknowledge(), 0x33);
        assert_eq!(p.registers(false).1, 0);
        assert_eq!(p.acknowledge(), 0x35);
        out(&mut p, 0x20, 0x80);
        pulse(&mut p, 1);
        pulse(&mut p, 2 + 8);
        assert_eq!(p.acknowledge(), 0x31);
        // 1 was rotated to lowest: slave (2) now wins; rotate-in-AEOI clear stops it.
        pulse(&mut p, 0);
        assert_eq!(p.acknowledge(), 0x3A);
        assert_eq!(p.acknowledge(), 0x30);
        out(&mut p, 0x20, 0x00);
        assert!(!p.intr());
    }

    #[test]
    fn slave_auto_eoi_keeps_the_cascade_latched() {
        let mut p = Pic::new();
        linux_init(&mut p, false);
        out(&mut p, 0xA0, 0x11);
        out(&mut p, 0xA1, 0x38);
        out(&mut p, 0xA1, 0x02);
        out(&mut p, 0xA1, 0x03);
        out(&mut p, 0xA1, 0x00);
        pulse(&mut p, 9);
        pulse(&mut p, 12);
        assert_eq!(p.acknowledge(), 0x39);
        out(&mut p, 0x20, 0x20);
        assert_eq!(p.acknowledge(), 0x3C);
    }

    #[test]
    fn special_fully_nested_mode() {
        let mut p = Pic::new();
        linux_init(&mut p, false);
        pulse(&mut p, 12);
        assert_eq!(p.acknowledge(), 0x3C);
        pulse(&mut p, 9);
        assert!(!p.intr(), "IR2 in service blocks the slave without SFNM");
        let mut p = Pic::new();
        linux_init(&mut p, false);
        out(&mut p, 0x20, 0x11);
        out(&mut p, 0x21, 0x30);
        out(&mut p, 0x21, 0x04);
        out(&mut p, 0x21, 0x11);
        pulse(&mut p, 12);
        assert_eq!(p.acknowledge(), 0x3C);
        // The slave's 9 is above its 12 in service; SFNM lets IR2 nest on itself.
        pulse(&mut p, 9);
        assert!(p.intr());
        assert_eq!(p.acknowledge(), 0x39);
        assert_eq!(p.registers(true).1, 0x12);
        // But lower master levels stay blocked by IR2 in service.
        pulse(&mut p, 5);
        assert!(!p.intr());
    }

    #[test]
    fn poll_mode() {
        let mut p = Pic::new();
        linux_init(&mut p, false);
        out(&mut p, 0x20, 0x0C);
        assert_eq!(inb(&mut p, 0x20), 0x00);
        pulse(&mut p, 6);
        out(&mut p, 0x20, 0x0C);
        assert_eq!(inb(&mut p, 0x20), 0x86);
        assert_eq!(p.registers(false), (0, 0x40, 0));
        // The poll is one read only.
        assert_eq!(inb(&mut p, 0x20), 0x00);
        // Poll through the cascade: the master says 2, the slave says which.
        pulse(&mut p, 11);
        out(&mut p, 0x20, 0x0C);
        assert_eq!(inb(&mut p, 0x20), 0x82);
        out(&mut p, 0xA0, 0x0C);
        assert_eq!(inb(&mut p, 0xA0), 0x83);
        assert_eq!(p.registers(true).1, 0x08);
    }

    #[test]
    fn irr_isr_reads() {
        let mut p = Pic::new();
        linux_init(&mut p, false);
        out(&mut p, 0x21, 0xFF);
        pulse(&mut p, 4);
        pulse(&mut p, 14);
        // IRR is the default read; the master's IR2 is latched from the slave even while the
        // master masks it.
        assert_eq!(inb(&mut p, 0x20), 0x14);
        assert_eq!(inb(&mut p, 0xA0), 0x40);
        out(&mut p, 0x21, 0x00);
        // IR2 outranks IR4: the slave's 14 goes first.
        assert_eq!(p.acknowledge(), 0x3E);
        out(&mut p, 0x20, 0x0B);
        out(&mut p, 0xA0, 0x0B);
        assert_eq!(inb(&mut p, 0x20), 0x04);
        assert_eq!(inb(&mut p, 0x20), 0x04, "the select sticks");
        assert_eq!(inb(&mut p, 0xA0), 0x40);
        out(&mut p, 0x20, 0x08);
        assert_eq!(inb(&mut p, 0x20), 0x04, "OCW3 without RR keeps it");
        out(&mut p, 0x20, 0x0A);
        assert_eq!(inb(&mut p, 0x20), 0x10);
        // A word read at 0x20 reads IRR then the mask; at 0x21, the mask then all ones.
        let mut w = [0; 2];
        p.port_read(0x20, &mut w);
        assert_eq!(w, [0x10, 0x00]);
        let mut d = [0; 4];
        p.port_read(0x21, &mut d);
        assert_eq!(d, [0x00, 0xFF, 0xFF, 0xFF]);
    }

    #[test]
    fn spurious_7_when_a_level_request_goes_away() {
        let mut p = Pic::new();
        linux_init(&mut p, false);
        out(&mut p, 0x4D0, 0x20);
        p.set_irq(5, true);
        assert!(p.intr());
        p.set_irq(5, false);
        assert!(!p.intr());
        assert_eq!(p.acknowledge(), 0x37);
        assert_eq!(p.registers(false), (0, 0, 0));
        // Masking after INTR was seen gives the same.
        pulse(&mut p, 3);
        out(&mut p, 0x21, 0x08);
        assert_eq!(p.acknowledge(), 0x37);
        assert_eq!(p.registers(false).1, 0);
    }

    #[test]
    fn spurious_15_when_the_slave_request_goes_away() {
        let mut p = Pic::new();
        linux_init(&mut p, false);
        out(&mut p, 0x4D1, 0x08);
        p.set_irq(11, true);
        assert!(p.intr());
        p.set_irq(11, false);
        // The master's IR2 stays latched: INTR is up, INTA finds nothing on the slave.
        assert!(p.intr());
        assert_eq!(p.acknowledge(), 0x3F);
        assert_eq!(p.registers(false).1, 0x04, "the master's IS2 is set");
        assert_eq!(p.registers(true).1, 0x00, "the slave's IS7 is not");
        out(&mut p, 0x20, 0x62);
        assert!(!p.intr());
    }

    #[test]
    fn elcr_level_behaviour() {
        let mut p = Pic::new();
        linux_init(&mut p, false);
        out(&mut p, 0x4D0, 0xFF);
        out(&mut p, 0x4D1, 0xFF);
        assert_eq!(inb(&mut p, 0x4D0), 0xF8);
        assert_eq!(inb(&mut p, 0x4D1), 0xDE);
        out(&mut p, 0x4D0, 0x00);
        out(&mut p, 0x4D1, 0x00);
        out(&mut p, 0x4D1, 0x02);
        // Level IRQ 9: IRR follows the line, survives INTA, re-requests after EOI while high.
        p.set_irq(9, true);
        assert_eq!(p.acknowledge(), 0x39);
        assert_eq!(p.registers(true), (0x02, 0x02, 0));
        out(&mut p, 0xA0, 0x20);
        out(&mut p, 0x20, 0x20);
        assert_eq!(p.acknowledge(), 0x39);
        // The device drops the line inside its handler: no request after the EOIs.
        p.set_irq(9, false);
        out(&mut p, 0xA0, 0x20);
        out(&mut p, 0x20, 0x20);
        assert!(!p.intr());
        assert_eq!(p.registers(true).0, 0);
        // Switching a high line to level requests at once; ELCR cleared, the request stays.
        p.set_irq(10, true);
        assert_eq!(p.acknowledge(), 0x3A);
        out(&mut p, 0xA0, 0x20);
        out(&mut p, 0x20, 0x20);
        assert!(!p.intr(), "an edge that was acknowledged does not come back");
        out(&mut p, 0x4D1, 0x04);
        assert!(p.intr());
        // ICW1.LTIM makes every input level.
        let mut q = Pic::new();
        out(&mut q, 0x20, 0x19);
        out(&mut q, 0x21, 0x30);
        out(&mut q, 0x21, 0x04);
        out(&mut q, 0x21, 0x01);
        pulse(&mut q, 0);
        assert!(!q.intr());
        q.set_irq(0, true);
        assert_eq!(q.acknowledge(), 0x30);
    }

    #[test]
    fn single_mode_makes_irq2_a_plain_input() {
        let mut p = Pic::new();
        out(&mut p, 0x20, 0x13);
        out(&mut p, 0x21, 0x50);
        out(&mut p, 0x21, 0x01);
        assert_eq!(inb(&mut p, 0x21), 0);
        pulse(&mut p, 10);
        assert!(!p.intr(), "the slave is disconnected");
        pulse(&mut p, 2);
        assert_eq!(p.acknowledge(), 0x52);
    }

    #[test]
    fn special_mask_mode() {
        let mut p = Pic::new();
        linux_init(&mut p, false);
        pulse(&mut p, 3);
        assert_eq!(p.acknowledge(), 0x33);
        pulse(&mut p, 6);
        assert!(!p.intr());
        // The handler masks its own level and enters special mask mode: 6 gets through.
        out(&mut p, 0x21, 0x08);
        out(&mut p, 0x20, 0x68);
        assert!(p.intr());
        assert_eq!(p.acknowledge(), 0x36);
        out(&mut p, 0x20, 0x48);
        assert_eq!(p.registers(false).1, 0x48);
        pulse(&mut p, 7);
        assert!(!p.intr());
    }

    #[test]
    fn garbage_ports_and_widths() {
        let mut p = Pic::new();
        assert!(Pic::claims(0x20) && Pic::claims(0xA1) && Pic::claims(0x4D1));
        assert!(!Pic::claims(0x22) && !Pic::claims(0x4D2) && !Pic::claims(0x1F));
        let mut b = [0u8; 4];
        p.port_read(0xFFFE, &mut b);
        assert_eq!(b, [0xFF; 4]);
        p.port_write(0xFFFF, &[1, 2, 3]);
        p.set_irq(16, true);
        p.set_irq(u32::MAX, true);
        assert!(!p.intr());
    }
}
