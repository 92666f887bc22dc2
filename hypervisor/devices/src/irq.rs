//! Interrupt lines and interrupt messages: what flows between the models.
//!
//! Devices own [`IrqLine`]s and set their level through an [`IrqSink`] (the VM's interrupt
//! router: the IOAPIC and the PIC behind it). An edge-triggered device pulses its line
//! (raise, then lower); a level-triggered one holds it while it needs service. The IOAPIC turns
//! lines into [`InterruptMessage`]s, as does a LAPIC for an IPI; the VM core hands each message
//! to the LAPICs it [`Destination`] selects.

/// Where a device's interrupt goes: a global system interrupt number (the IOAPIC pin; GSIs
/// 0-15 are also the ISA IRQs the PIC sees) and which of the line's sources this device is
/// (0-31), so that several devices can share one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IrqLine {
    pub gsi: u32,
    pub source: u8,
}

impl IrqLine {
    /// Source 0 of `gsi`.
    pub const fn new(gsi: u32) -> Self {
        IrqLine { gsi, source: 0 }
    }
    pub const fn shared(gsi: u32, source: u8) -> Self {
        IrqLine { gsi, source }
    }
    pub fn set(self, sink: &mut dyn IrqSink, level: bool) {
        sink.set_level(self.gsi, self.source, level);
    }
    pub fn raise(self, sink: &mut dyn IrqSink) {
        self.set(sink, true);
    }
    pub fn lower(self, sink: &mut dyn IrqSink) {
        self.set(sink, false);
    }
    /// An edge: raise then lower.
    pub fn pulse(self, sink: &mut dyn IrqSink) {
        self.raise(sink);
        self.lower(sink);
    }
}

/// What receives line levels. Lines are shared: the sink ORs the levels of every `source`
/// (0-31) of a GSI, so two devices on one line work; a source outside 0-31 is folded into it.
pub trait IrqSink {
    /// Set the level `source` drives on `gsi`. Setting the level it already has is harmless.
    fn set_level(&mut self, gsi: u32, source: u8, level: bool);
}

/// A sink that records what was set, for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordingSink {
    /// (gsi, source, level), in order.
    pub events: alloc::vec::Vec<(u32, u8, bool)>,
}

impl IrqSink for RecordingSink {
    fn set_level(&mut self, gsi: u32, source: u8, level: bool) {
        self.events.push((gsi, source, level));
    }
}

impl RecordingSink {
    /// The last level set on `gsi` by any source, if any.
    pub fn level(&self, gsi: u32) -> Option<bool> {
        self.events.iter().rev().find(|e| e.0 == gsi).map(|e| e.2)
    }
    /// How many rising edges `gsi` saw (a set to true after false or nothing).
    pub fn rises(&self, gsi: u32) -> usize {
        let mut last = false;
        let mut n = 0;
        for e in self.events.iter().filter(|e| e.0 == gsi) {
            if e.2 && !last {
                n += 1;
            }
            last = e.2;
        }
        n
    }
}

/// APIC delivery modes (IOAPIC redirection entries, ICR, LVT and MSI share the encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    Fixed = 0,
    LowestPriority = 1,
    Smi = 2,
    Nmi = 4,
    Init = 5,
    StartUp = 6,
    ExtInt = 7,
}

impl DeliveryMode {
    /// From the 3-bit field; 3 is reserved and gives `None`.
    pub fn from_bits(bits: u32) -> Option<Self> {
        Some(match bits & 7 {
            0 => DeliveryMode::Fixed,
            1 => DeliveryMode::LowestPriority,
            2 => DeliveryMode::Smi,
            4 => DeliveryMode::Nmi,
            5 => DeliveryMode::Init,
            6 => DeliveryMode::StartUp,
            7 => DeliveryMode::ExtInt,
            _ => return None,
        })
    }
}

/// Which LAPICs a message selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// One APIC ID (0xFF in xAPIC mode, 0xFFFF_FFFF in x2APIC mode: all).
    Physical(u32),
    /// A logical destination, matched against each LAPIC's LDR (flat or cluster per its DFR,
    /// or the x2APIC cluster rules).
    Logical(u32),
    /// ICR shorthands.
    This,
    AllIncludingSelf,
    AllExcludingSelf,
}

/// One interrupt on its way to LAPICs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterruptMessage {
    pub vector: u8,
    pub delivery: DeliveryMode,
    pub destination: Destination,
    /// Level-triggered (so the target's EOI must be reported back to the IOAPIC).
    pub level_triggered: bool,
    /// For INIT: level assert (true) or the INIT level de-assert that OSes send and that does
    /// nothing on modern CPUs (false).
    pub assert: bool,
}
