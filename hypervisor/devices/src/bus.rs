//! The device bus: one trait per address space, and a range table per VM.
//!
//! A bus is built once per VM from its configuration, sorted, and never changes while the VM
//! runs. A lookup finds the device whose range holds the whole access; an access that
//! straddles two ranges or falls outside every range is not the bus's (the VM core decides:
//! port reads of nothing give all ones, MMIO outside RAM and devices stops the VM).

use crate::irq::IrqSink;
use alloc::boxed::Box;
use alloc::vec::Vec;

/// What an access asks of the VM beyond its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    /// The guest powered its VM off (ACPI S5).
    PowerOff,
    /// The guest reset its VM (ACPI reset register, port 0xCF9, keyboard controller).
    Reset,
    /// The guest wrote `value` to a debug-exit port: the VM stops with status
    /// `(value << 1) | 1`.
    DebugExit(u32),
}

/// What a device access sees of the world.
pub struct Ctx<'a> {
    /// The guest TSC now.
    pub now: u64,
    /// The index of the vCPU doing the access.
    pub vcpu: u32,
    /// Where line levels go.
    pub irq: &'a mut dyn IrqSink,
}

/// A device model with time-driven behaviour (PIT, RTC, PM timer, LAPIC timer).
pub trait Timed {
    /// The guest TSC at which [`Timed::advance`] next has something to do, if any.
    fn deadline(&self) -> Option<u64>;
    /// Bring the model up to `ctx.now`: fire what is due, raise lines.
    fn advance(&mut self, ctx: &mut Ctx<'_>);
}

/// A device in the port I/O space. `offset` is from the start of its range; `data` is 1, 2 or
/// 4 bytes, little-endian.
pub trait PortDevice: Send {
    fn read(&mut self, ctx: &mut Ctx<'_>, offset: u16, data: &mut [u8]);
    fn write(&mut self, ctx: &mut Ctx<'_>, offset: u16, data: &[u8]) -> Effect;
}

/// A device in the guest-physical MMIO space. `data` is 1 to 8 bytes, little-endian.
pub trait MmioDevice: Send {
    fn read(&mut self, ctx: &mut Ctx<'_>, offset: u64, data: &mut [u8]);
    fn write(&mut self, ctx: &mut Ctx<'_>, offset: u64, data: &[u8]) -> Effect;
}

/// Why a range could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusError {
    /// The range is empty or wraps.
    Empty,
    /// It overlaps the range of device index `with`.
    Overlap { with: usize },
}

/// A sorted, non-overlapping table of `[base, base+len)` ranges, each naming a device index.
#[derive(Debug, Clone, Default)]
pub struct RangeTable {
    ranges: Vec<(u64, u64, usize)>,
}

impl RangeTable {
    pub fn new() -> Self {
        RangeTable { ranges: Vec::new() }
    }

    /// Add `[base, base+len)` for device `index`.
    pub fn insert(&mut self, base: u64, len: u64, index: usize) -> Result<(), BusError> {
        let end = base.checked_add(len).filter(|_| len > 0).ok_or(BusError::Empty)?;
        let at = self.ranges.partition_point(|r| r.0 < base);
        if let Some(prev) = at.checked_sub(1).map(|i| self.ranges[i]) {
            if prev.0 + prev.1 > base {
                return Err(BusError::Overlap { with: prev.2 });
            }
        }
        if let Some(next) = self.ranges.get(at) {
            if next.0 < end {
                return Err(BusError::Overlap { with: next.2 });
            }
        }
        self.ranges.insert(at, (base, len, index));
        Ok(())
    }

    /// The device and offset for an access of `len` bytes at `addr`, if one range holds all of
    /// it.
    pub fn lookup(&self, addr: u64, len: u64) -> Option<(usize, u64)> {
        let at = self.ranges.partition_point(|r| r.0 <= addr).checked_sub(1)?;
        let (base, size, index) = self.ranges[at];
        let off = addr - base;
        (off.checked_add(len)? <= size).then_some((index, off))
    }
}

/// A port I/O bus.
#[derive(Default)]
pub struct PortBus {
    table: RangeTable,
    devices: Vec<Box<dyn PortDevice>>,
}

impl PortBus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, base: u16, len: u16, dev: Box<dyn PortDevice>) -> Result<(), BusError> {
        self.table.insert(base as u64, len as u64, self.devices.len())?;
        self.devices.push(dev);
        Ok(())
    }

    /// Read; `false` if no device holds the access (the caller fills all ones).
    pub fn read(&mut self, ctx: &mut Ctx<'_>, port: u16, data: &mut [u8]) -> bool {
        match self.table.lookup(port as u64, data.len() as u64) {
            Some((i, off)) => {
                self.devices[i].read(ctx, off as u16, data);
                true
            }
            None => false,
        }
    }

    /// Write; `None` if no device holds the access.
    pub fn write(&mut self, ctx: &mut Ctx<'_>, port: u16, data: &[u8]) -> Option<Effect> {
        let (i, off) = self.table.lookup(port as u64, data.len() as u64)?;
        Some(self.devices[i].write(ctx, off as u16, data))
    }
}

/// An MMIO bus.
#[derive(Default)]
pub struct MmioBus {
    table: RangeTable,
    devices: Vec<Box<dyn MmioDevice>>,
}

impl MmioBus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, base: u64, len: u64, dev: Box<dyn MmioDevice>) -> Result<(), BusError> {
        self.table.insert(base, len, self.devices.len())?;
        self.devices.push(dev);
        Ok(())
    }

    /// Whether some device holds this access.
    pub fn claims(&self, gpa: u64, len: u64) -> bool {
        self.table.lookup(gpa, len).is_some()
    }

    pub fn read(&mut self, ctx: &mut Ctx<'_>, gpa: u64, data: &mut [u8]) -> bool {
        match self.table.lookup(gpa, data.len() as u64) {
            Some((i, off)) => {
                self.devices[i].read(ctx, off, data);
                true
            }
            None => false,
        }
    }

    pub fn write(&mut self, ctx: &mut Ctx<'_>, gpa: u64, data: &[u8]) -> Option<Effect> {
        let (i, off) = self.table.lookup(gpa, data.len() as u64)?;
        Some(self.devices[i].write(ctx, off, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_refuse_overlap_and_straddling() {
        let mut t = RangeTable::new();
        t.insert(0x3F8, 8, 0).unwrap();
        t.insert(0x70, 2, 1).unwrap();
        assert_eq!(t.insert(0x3FC, 8, 2), Err(BusError::Overlap { with: 0 }));
        assert_eq!(t.insert(0x3F0, 9, 2), Err(BusError::Overlap { with: 0 }));
        assert_eq!(t.insert(0, 0, 2), Err(BusError::Empty));
        assert_eq!(t.insert(u64::MAX, 2, 2), Err(BusError::Empty));
        t.insert(0x3F0, 8, 2).unwrap();
        assert_eq!(t.lookup(0x3F8, 1), Some((0, 0)));
        assert_eq!(t.lookup(0x3FF, 1), Some((0, 7)));
        assert_eq!(t.lookup(0x3FE, 4), None);
        assert_eq!(t.lookup(0x71, 1), Some((1, 1)));
        assert_eq!(t.lookup(0x72, 1), None);
        assert_eq!(t.lookup(0, 1), None);
        assert_eq!(t.lookup(u64::MAX, 8), None);
    }
}
