//! An 82093AA-style I/O APIC with 24 pins, version 0x20 (with the EOI register).
//!
//! Memory map, from the base (0xFEC0_0000 by default, [`IOAPIC_MMIO_SIZE`] bytes):
//! - 0x00 IOREGSEL: the index of the register IOWIN shows (8 bits; bytes 1-3 read 0).
//! - 0x10 IOWIN: the selected register, 32 bits. Only a 4-byte (or wider: the low 4 bytes count)
//!   write at 0x10 writes it; narrower reads give the bytes of the register.
//! - 0x40 EOI: a write of a vector ends the level-triggered interrupts with that vector, as
//!   the LAPIC's EOI broadcast does (OSes use it with directed EOI).
//!
//! Everything else reads all ones and ignores writes.
//!
//! Registers: 0x00 ID (bits 24-27 writable), 0x01 version (RO: 0x0017_0020, max redirection
//! entry 23, version 0x20), 0x02 arbitration (RO, the ID), 0x10 + 2n / 0x11 + 2n the low and
//! high halves of redirection entry n. An unimplemented register reads all ones.
//!
//! Pins: [`Ioapic::set_pin`] gives a pin's input level (the wire, before polarity). The
//! entry's polarity bit says which level is asserted (0: high). Edge entries send one message
//! per rising edge of the asserted level while unmasked (an edge on a masked pin is lost, as
//! the datasheet says). Level entries send while the line is asserted, unmasked and remote IRR
//! is clear, and set remote IRR; [`Ioapic::eoi`] clears it and sends again if the line is still
//! asserted. NMI, INIT, SMI and ExtINT entries are treated as edge whatever their trigger bit
//! (the datasheet requires edge for them), so remote IRR is only ever set on Fixed and
//! lowest-priority level entries. Reserved delivery modes (3 and 6) send nothing. Rewriting an
//! entry as edge clears its remote IRR (Linux's EOI fallback for IOAPICs without an EOI
//! register relies on it). Changing an entry's polarity is not an edge.
//!
//! Messages queue inside the model; the VM core takes them with [`Ioapic::take_messages`]
//! after every access, pin change and EOI. Delivery status always reads idle: messages are
//! accepted the moment they are queued.

use crate::bus::{Ctx, Effect, MmioDevice};
use crate::irq::{DeliveryMode, Destination, InterruptMessage};
use alloc::vec::Vec;

/// Where the IOAPIC sits unless the configuration says otherwise.
pub const IOAPIC_DEFAULT_BASE: u64 = 0xFEC0_0000;
/// Bytes of MMIO space the IOAPIC claims.
pub const IOAPIC_MMIO_SIZE: u64 = 0x1000;
/// Redirection entries (pins).
pub const IOAPIC_PINS: usize = 24;
/// The version register's value: max redirection entry 23 in bits 16-23, version 0x20.
pub const IOAPIC_VERSION: u32 = ((IOAPIC_PINS as u32 - 1) << 16) | 0x20;

/// MMIO offsets.
pub const IOREGSEL: u64 = 0x00;
pub const IOWIN: u64 = 0x10;
pub const IOAPIC_EOI: u64 = 0x40;

/// Register indexes.
pub const REG_ID: u8 = 0x00;
pub const REG_VERSION: u8 = 0x01;
pub const REG_ARBITRATION: u8 = 0x02;
pub const REG_REDIR_BASE: u8 = 0x10;

/// Redirection entry bits.
pub const RTE_VECTOR: u64 = 0xFF;
pub const RTE_DELIVERY_SHIFT: u32 = 8;
pub const RTE_DEST_LOGICAL: u64 = 1 << 11;
pub const RTE_DELIVERY_STATUS: u64 = 1 << 12;
pub const RTE_ACTIVE_LOW: u64 = 1 << 13;
pub const RTE_REMOTE_IRR: u64 = 1 << 14;
pub const RTE_LEVEL: u64 = 1 << 15;
pub const RTE_MASKED: u64 = 1 << 16;
pub const RTE_DEST_SHIFT: u32 = 56;
/// The bits a guest write can change: vector, delivery mode, destination mode, polarity,
/// trigger mode, mask and destination. Delivery status and remote IRR are read-only; the
/// reserved bits 17-55 read 0.
pub const RTE_WRITABLE: u64 = 0xFF00_0000_0001_AFFF;

/// The most messages kept waiting for [`Ioapic::take_messages`]; one access queues at most
/// [`IOAPIC_PINS`], so this only bites a VM core that never drains. Further messages are
/// dropped and counted in [`Ioapic::dropped`].
pub const MAX_QUEUED: usize = 256;

/// The I/O APIC.
#[derive(Debug, Clone)]
pub struct Ioapic {
    /// The ID register's 4-bit APIC ID.
    id: u8,
    ioregsel: u8,
    redir: [u64; IOAPIC_PINS],
    /// Input level of each pin (bit n: pin n), before polarity.
    wires: u32,
    queue: Vec<InterruptMessage>,
    dropped: u64,
}

impl Default for Ioapic {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Ioapic {
    /// An IOAPIC with APIC ID `id` (low 4 bits), all entries masked.
    pub fn new(id: u8) -> Self {
        Ioapic {
            id: id & 0xF,
            ioregsel: 0,
            redir: [RTE_MASKED; IOAPIC_PINS],
            wires: 0,
            queue: Vec::new(),
            dropped: 0,
        }
    }

    /// Power-on state: every entry masked and zero, IOREGSEL 0, the ID kept (firmware set it
    /// from the MADT's value, which a reset does not change). Pin levels stay: devices still
    /// drive them. Queued messages are dropped.
    pub fn reset(&mut self) {
        self.ioregsel = 0;
        self.redir = [RTE_MASKED; IOAPIC_PINS];
        self.queue.clear();
    }

    pub fn id(&self) -> u8 {
        self.id
    }

    /// Redirection entry `pin` as the guest reads it (0 for a pin out of range).
    pub fn entry(&self, pin: usize) -> u64 {
        self.redir.get(pin).copied().unwrap_or(0)
    }

    /// The input level of `pin` (false out of range).
    pub fn pin_level(&self, pin: usize) -> bool {
        pin < IOAPIC_PINS && self.wires & (1 << pin) != 0
    }

    /// Messages dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The queued messages, oldest first; the queue keeps its allocation.
    pub fn take_messages(&mut self) -> alloc::vec::Drain<'_, InterruptMessage> {
        self.queue.drain(..)
    }

    /// Whether messages wait.
    pub fn has_messages(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Set the input level of `pin`; pins out of range are ignored.
    pub fn set_pin(&mut self, pin: usize, level: bool) {
        if pin >= IOAPIC_PINS {
            return;
        }
        let bit = 1u32 << pin;
        let was = self.asserted(pin);
        if level {
            self.wires |= bit;
        } else {
            self.wires &= !bit;
        }
        let now = self.asserted(pin);
        let e = self.redir[pin];
        if is_level(e) {
            if now {
                self.service_level(pin);
            }
        } else if now && !was && e & RTE_MASKED == 0 {
            self.send(pin);
        }
    }

    /// End of interrupt for `vector` (the LAPIC's EOI broadcast or the EOI register): clear
    /// remote IRR on every level entry with that vector and send again where the line is still
    /// asserted and the entry unmasked.
    pub fn eoi(&mut self, vector: u8) {
        for pin in 0..IOAPIC_PINS {
            let e = self.redir[pin];
            if e & RTE_REMOTE_IRR != 0 && (e & RTE_VECTOR) as u8 == vector {
                self.redir[pin] = e & !RTE_REMOTE_IRR;
                self.service_level(pin);
            }
        }
    }

    /// Read register `index` (what IOWIN shows with IOREGSEL = `index`).
    pub fn read_register(&self, index: u8) -> u32 {
        match index {
            REG_ID => (self.id as u32) << 24,
            REG_VERSION => IOAPIC_VERSION,
            REG_ARBITRATION => (self.id as u32) << 24,
            i if i >= REG_REDIR_BASE && ((i - REG_REDIR_BASE) as usize) < 2 * IOAPIC_PINS => {
                let n = (i - REG_REDIR_BASE) as usize;
                let e = self.redir[n / 2];
                if n & 1 == 0 {
                    e as u32
                } else {
                    (e >> 32) as u32
                }
            }
            _ => u32::MAX,
        }
    }

    /// Write register `index`. A write that unmasks an asserted level pin (or otherwise makes
    /// a level entry deliverable) sends.
    pub fn write_register(&mut self, index: u8, value: u32) {
        match index {
            REG_ID => self.id = ((value >> 24) & 0xF) as u8,
            i if i >= REG_REDIR_BASE && ((i - REG_REDIR_BASE) as usize) < 2 * IOAPIC_PINS => {
                let n = (i - REG_REDIR_BASE) as usize;
                let pin = n / 2;
                let old = self.redir[pin];
                let merged = if n & 1 == 0 {
                    (old & !0xFFFF_FFFF) | value as u64
                } else {
                    (old & 0xFFFF_FFFF) | ((value as u64) << 32)
                };
                let ro = old & (RTE_REMOTE_IRR | RTE_DELIVERY_STATUS);
                let mut e = (merged & RTE_WRITABLE) | ro;
                if !is_level(e) {
                    e &= !RTE_REMOTE_IRR;
                }
                self.redir[pin] = e;
                if is_level(e) {
                    self.service_level(pin);
                }
            }
            _ => {}
        }
    }

    /// Whether `pin`'s line is at its entry's active level.
    fn asserted(&self, pin: usize) -> bool {
        let high = self.wires & (1 << pin) != 0;
        high != (self.redir[pin] & RTE_ACTIVE_LOW != 0)
    }

    /// Send for a level entry if the line is asserted, the entry unmasked and remote IRR clear.
    fn service_level(&mut self, pin: usize) {
        let e = self.redir[pin];
        if is_level(e) && e & (RTE_MASKED | RTE_REMOTE_IRR) == 0 && self.asserted(pin) && self.send(pin) {
            self.redir[pin] |= RTE_REMOTE_IRR;
        }
    }

    /// Queue the message for `pin`'s entry; false (nothing sent) for a reserved delivery mode
    /// or a full queue.
    fn send(&mut self, pin: usize) -> bool {
        let e = self.redir[pin];
        let Some(delivery) = DeliveryMode::from_bits((e >> RTE_DELIVERY_SHIFT) as u32) else {
            return false;
        };
        if delivery == DeliveryMode::StartUp {
            return false;
        }
        if self.queue.len() >= MAX_QUEUED {
            self.dropped = self.dropped.wrapping_add(1);
            return false;
        }
        let dest = (e >> RTE_DEST_SHIFT) as u32 & 0xFF;
        self.queue.push(InterruptMessage {
            vector: (e & RTE_VECTOR) as u8,
            delivery,
            destination: if e & RTE_DEST_LOGICAL != 0 {
                Destination::Logical(dest)
            } else {
                Destination::Physical(dest)
            },
            level_triggered: is_level(e),
            assert: true,
        });
        true
    }

    /// Read `data.len()` bytes at `offset` from the base. No side effects.
    pub fn mmio_read(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let at = offset.wrapping_add(i as u64);
            let dword = match at & !3 {
                IOREGSEL => Some(self.ioregsel as u32),
                IOWIN => Some(self.read_register(self.ioregsel)),
                _ => None,
            };
            *b = dword.map_or(0xFF, |d| (d >> ((at & 3) * 8)) as u8);
        }
    }

    /// Write `data` at `offset` from the base.
    pub fn mmio_write(&mut self, offset: u64, data: &[u8]) {
        let Some(&low) = data.first() else { return };
        match offset {
            IOREGSEL => self.ioregsel = low,
            IOWIN if data.len() >= 4 => {
                let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                self.write_register(self.ioregsel, v);
            }
            IOAPIC_EOI => self.eoi(low),
            _ => {}
        }
    }
}

/// Whether an entry behaves as level-triggered: the trigger bit set and a delivery mode that
/// has remote IRR (Fixed or lowest priority).
fn is_level(e: u64) -> bool {
    e & RTE_LEVEL != 0 && matches!((e >> RTE_DELIVERY_SHIFT) & 7, 0 | 1)
}

impl MmioDevice for Ioapic {
    fn read(&mut self, _ctx: &mut Ctx<'_>, offset: u64, data: &mut [u8]) {
        self.mmio_read(offset, data);
    }
    fn write(&mut self, _ctx: &mut Ctx<'_>, offset: u64, data: &[u8]) -> Effect {
        self.mmio_write(offset, data);
        Effect::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn sel(io: &mut Ioapic, reg: u8) {
        io.mmio_write(IOREGSEL, &[reg, 0, 0, 0]);
    }
    fn rd(io: &mut Ioapic, reg: u8) -> u32 {
        sel(io, reg);
        let mut d = [0; 4];
        io.mmio_read(IOWIN, &mut d);
        u32::from_le_bytes(d)
    }
    fn wr(io: &mut Ioapic, reg: u8, v: u32) {
        sel(io, reg);
        io.mmio_write(IOWIN, &v.to_le_bytes());
    }
    /// Program entry `pin` with low/high halves as Linux does: high first, then low.
    fn program(io: &mut Ioapic, pin: u8, low: u32, high: u32) {
        wr(io, 0x11 + 2 * pin, high);
        wr(io, 0x10 + 2 * pin, low);
    }
    fn msgs(io: &mut Ioapic) -> Vec<InterruptMessage> {
        io.take_messages().collect()
    }
    const LEVEL: u32 = 1 << 15;
    const MASK: u32 = 1 << 16;
    const LOW: u32 = 1 << 13;

    #[test]
    fn register_table() {
        let mut io = Ioapic::new(3);
        assert_eq!(rd(&mut io, 0), 3 << 24);
        assert_eq!(rd(&mut io, 1), 0x0017_0020);
        assert_eq!(rd(&mut io, 2), 3 << 24);
        wr(&mut io, 0, 0xFFFF_FFFF);
        assert_eq!(rd(&mut io, 0), 0x0F00_0000);
        assert_eq!(io.id(), 0xF);
        wr(&mut io, 1, 0);
        wr(&mut io, 2, 0);
        assert_eq!(rd(&mut io, 1), 0x0017_0020);
        assert_eq!(rd(&mut io, 2), 0x0F00_0000);
        // Every entry starts masked; the last is 0x3E/0x3F, 0x40 is past the table.
        for pin in 0..24u8 {
            assert_eq!(rd(&mut io, 0x10 + 2 * pin), MASK);
            assert_eq!(rd(&mut io, 0x11 + 2 * pin), 0);
        }
        assert_eq!(rd(&mut io, 0x40), u32::MAX);
        assert_eq!(rd(&mut io, 0x03), u32::MAX);
        assert_eq!(rd(&mut io, 0xFF), u32::MAX);
        // Writable bits only; delivery status, remote IRR and reserved bits stay 0.
        wr(&mut io, 0x10, 0xFFFF_FFFF);
        assert_eq!(rd(&mut io, 0x10), 0x0001_AFFF);
        wr(&mut io, 0x11, 0xFFFF_FFFF);
        assert_eq!(rd(&mut io, 0x11), 0xFF00_0000);
        assert_eq!(io.entry(0), 0xFF00_0000_0001_AFFF);
        // IOREGSEL reads back, its upper bytes are 0; other offsets read all ones.
        sel(&mut io, 0x2A);
        let mut d = [0; 4];
        io.mmio_read(IOREGSEL, &mut d);
        assert_eq!(d, [0x2A, 0, 0, 0]);
        io.mmio_read(0x20, &mut d);
        assert_eq!(d, [0xFF; 4]);
        io.mmio_read(IOAPIC_EOI, &mut d);
        assert_eq!(d, [0xFF; 4]);
    }

    #[test]
    fn odd_widths_never_panic_and_narrow_window_writes_are_ignored() {
        let mut io = Ioapic::new(0);
        sel(&mut io, 0x10);
        io.mmio_write(IOWIN, &[0x30]);
        io.mmio_write(IOWIN, &[0x30, 0]);
        assert_eq!(rd(&mut io, 0x10), MASK);
        let mut b = [0u8; 1];
        io.mmio_read(IOWIN + 2, &mut b);
        assert_eq!(b, [1]);
        let mut q = [0u8; 8];
        sel(&mut io, 1);
        io.mmio_read(IOWIN, &mut q);
        assert_eq!(q, [0x20, 0, 0x17, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        io.mmio_read(u64::MAX - 2, &mut q);
        io.mmio_write(u64::MAX, &[1, 2, 3, 4, 5, 6, 7, 8]);
        io.mmio_write(IOWIN, &[]);
        io.mmio_read(0, &mut []);
        // Byte write to IOREGSEL selects.
        io.mmio_write(IOREGSEL, &[1]);
        let mut d = [0; 4];
        io.mmio_read(IOWIN, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x0017_0020);
    }

    #[test]
    fn edge_sends_once_per_rising_edge() {
        let mut io = Ioapic::new(0);
        program(&mut io, 4, 0x31, 0x0200_0000);
        assert!(msgs(&mut io).is_empty());
        io.set_pin(4, true);
        let m = msgs(&mut io);
        assert_eq!(
            m,
            vec![InterruptMessage {
                vector: 0x31,
                delivery: DeliveryMode::Fixed,
                destination: Destination::Physical(2),
                level_triggered: false,
                assert: true,
            }]
        );
        io.set_pin(4, true);
        assert!(msgs(&mut io).is_empty());
        io.set_pin(4, false);
        assert!(msgs(&mut io).is_empty());
        io.set_pin(4, true);
        io.set_pin(4, false);
        io.set_pin(4, true);
        assert_eq!(msgs(&mut io).len(), 2);
        // Edge entries never take remote IRR; an EOI does nothing.
        assert_eq!(io.entry(4) & RTE_REMOTE_IRR, 0);
        io.eoi(0x31);
        assert!(msgs(&mut io).is_empty());
    }

    #[test]
    fn edge_while_masked_is_lost() {
        let mut io = Ioapic::new(0);
        program(&mut io, 1, 0x41 | MASK, 0);
        io.set_pin(1, true);
        io.set_pin(1, false);
        io.set_pin(1, true);
        program(&mut io, 1, 0x41, 0);
        assert!(msgs(&mut io).is_empty());
        io.set_pin(1, false);
        io.set_pin(1, true);
        assert_eq!(msgs(&mut io).len(), 1);
    }

    #[test]
    fn level_remote_irr_and_eoi_redelivery() {
        let mut io = Ioapic::new(0);
        program(&mut io, 16, 0x51 | LEVEL | (1 << 11) | (1 << 8), 0x0F00_0000);
        io.set_pin(16, true);
        let m = msgs(&mut io);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].destination, Destination::Logical(0x0F));
        assert_eq!(m[0].delivery, DeliveryMode::LowestPriority);
        assert!(m[0].level_triggered);
        assert_ne!(io.entry(16) & RTE_REMOTE_IRR, 0);
        // Remote IRR is read-only: a write does not clear it, nor can it set it elsewhere.
        wr(&mut io, 0x30, 0x51 | LEVEL | (1 << 11) | (1 << 8));
        assert_ne!(io.entry(16) & RTE_REMOTE_IRR, 0);
        wr(&mut io, 0x32, 0x52 | LEVEL | (1 << 14));
        assert_eq!(io.entry(17) & RTE_REMOTE_IRR, 0);
        // Still asserted: nothing until the EOI, then once more.
        io.set_pin(16, true);
        assert!(msgs(&mut io).is_empty());
        io.eoi(0x50);
        assert!(msgs(&mut io).is_empty());
        io.eoi(0x51);
        assert_eq!(msgs(&mut io).len(), 1);
        assert_ne!(io.entry(16) & RTE_REMOTE_IRR, 0);
        // The line drops: the EOI clears remote IRR and nothing more is sent.
        io.set_pin(16, false);
        io.eoi(0x51);
        assert!(msgs(&mut io).is_empty());
        assert_eq!(io.entry(16) & RTE_REMOTE_IRR, 0);
        // The EOI register does the same as eoi().
        io.set_pin(16, true);
        assert_eq!(msgs(&mut io).len(), 1);
        io.mmio_write(IOAPIC_EOI, &0x51u32.to_le_bytes());
        assert_eq!(msgs(&mut io).len(), 1);
    }

    #[test]
    fn eoi_clears_every_level_entry_with_the_vector() {
        let mut io = Ioapic::new(0);
        program(&mut io, 10, 0x60 | LEVEL, 0);
        program(&mut io, 11, 0x60 | LEVEL, 0);
        io.set_pin(10, true);
        io.set_pin(11, true);
        assert_eq!(msgs(&mut io).len(), 2);
        io.set_pin(11, false);
        io.eoi(0x60);
        assert_eq!(msgs(&mut io).len(), 1);
        assert_ne!(io.entry(10) & RTE_REMOTE_IRR, 0);
        assert_eq!(io.entry(11) & RTE_REMOTE_IRR, 0);
    }

    #[test]
    fn masking_and_unmasking_level() {
        let mut io = Ioapic::new(0);
        program(&mut io, 9, 0x49 | LEVEL | MASK, 0);
        io.set_pin(9, true);
        assert!(msgs(&mut io).is_empty());
        assert_eq!(io.entry(9) & RTE_REMOTE_IRR, 0);
        wr(&mut io, 0x22, 0x49 | LEVEL);
        assert_eq!(msgs(&mut io).len(), 1);
        // Masking with remote IRR set keeps it; EOI while masked sends nothing; unmasking sends.
        wr(&mut io, 0x22, 0x49 | LEVEL | MASK);
        io.eoi(0x49);
        assert!(msgs(&mut io).is_empty());
        wr(&mut io, 0x22, 0x49 | LEVEL);
        assert_eq!(msgs(&mut io).len(), 1);
        // A line that dropped while masked does not send on unmask.
        wr(&mut io, 0x22, 0x49 | LEVEL | MASK);
        io.eoi(0x49);
        io.set_pin(9, false);
        wr(&mut io, 0x22, 0x49 | LEVEL);
        assert!(msgs(&mut io).is_empty());
    }

    #[test]
    fn switching_to_edge_clears_remote_irr() {
        let mut io = Ioapic::new(0);
        program(&mut io, 5, 0x45 | LEVEL, 0);
        io.set_pin(5, true);
        assert_eq!(msgs(&mut io).len(), 1);
        wr(&mut io, 0x1A, 0x45 | MASK);
        assert_eq!(io.entry(5) & RTE_REMOTE_IRR, 0);
        wr(&mut io, 0x1A, 0x45 | LEVEL);
        assert_eq!(msgs(&mut io).len(), 1);
    }

    #[test]
    fn polarity() {
        let mut io = Ioapic::new(0);
        // Active low, level: asserted while the wire is low.
        program(&mut io, 20, 0x70 | LEVEL | LOW, 0);
        assert_eq!(msgs(&mut io).len(), 1);
        io.eoi(0x70);
        assert_eq!(msgs(&mut io).len(), 1);
        io.set_pin(20, true);
        io.eoi(0x70);
        assert!(msgs(&mut io).is_empty());
        // Active low, edge: a falling wire is the edge; changing polarity is not.
        program(&mut io, 21, 0x71 | LOW, 0);
        assert!(msgs(&mut io).is_empty());
        io.set_pin(21, true);
        assert!(msgs(&mut io).is_empty());
        io.set_pin(21, false);
        assert_eq!(msgs(&mut io)[0].vector, 0x71);
    }

    #[test]
    fn delivery_modes() {
        let mut io = Ioapic::new(0);
        for (pin, mode) in [(0u8, 3u32), (1, 6)] {
            program(&mut io, pin, 0x30 | (mode << 8), 0);
            io.set_pin(pin as usize, true);
        }
        // Reserved modes send nothing, even as level entries, and take no remote IRR.
        program(&mut io, 2, 0x30 | (3 << 8) | LEVEL, 0);
        io.set_pin(2, true);
        assert!(msgs(&mut io).is_empty());
        assert_eq!(io.entry(2) & RTE_REMOTE_IRR, 0);
        // NMI programmed level is treated as edge: one message, no remote IRR.
        program(&mut io, 3, (4 << 8) | LEVEL, 0);
        io.set_pin(3, true);
        let m = msgs(&mut io);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].delivery, DeliveryMode::Nmi);
        assert!(!m[0].level_triggered);
        assert_eq!(io.entry(3) & RTE_REMOTE_IRR, 0);
        for (pin, mode, dm) in
            [(6u8, 2u32, DeliveryMode::Smi), (7, 5, DeliveryMode::Init), (8, 7, DeliveryMode::ExtInt)]
        {
            program(&mut io, pin, mode << 8, 0xFF00_0000);
            io.set_pin(pin as usize, true);
            let m = msgs(&mut io);
            assert_eq!(m.len(), 1);
            assert_eq!(m[0].delivery, dm);
            assert_eq!(m[0].destination, Destination::Physical(0xFF));
        }
    }

    #[test]
    fn reset_masks_everything_and_keeps_the_id() {
        let mut io = Ioapic::new(5);
        program(&mut io, 0, 0x30 | LEVEL, 0);
        io.set_pin(0, true);
        io.reset();
        assert!(!io.has_messages());
        assert_eq!(io.entry(0), RTE_MASKED);
        assert_eq!(io.id(), 5);
        assert!(io.pin_level(0));
        io.set_pin(99, true);
        assert!(!io.pin_level(99));
    }
}
