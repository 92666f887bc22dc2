//! Basalt's MMIO test device, for VMs whose configuration says `testdev`: a 4 KiB range at
//! guest-physical [`TEST_DEVICE_GPA`] with known register semantics, so a guest can check the
//! instruction emulator form by form. A pure state machine, host-tested.
//!
//! - Offsets 0x000-0x03F: 64 bytes of scratch, read and written at any width and alignment,
//!   like RAM.
//! - Offset 0x100: an 8-byte read-only identification value, [`TEST_DEVICE_ID`]; writes ignored.
//! - Offset 0x108: a 4-byte counter of the writes the device took.
//! - Offset 0x110: interrupt line level. A 4-byte write of `gsi | level << 8` sets the level
//!   the device drives on GSI `gsi` (bit 8: 1 asserted, 0 deasserted), so a guest can test
//!   its interrupt controllers' edge and level paths. Reads give the last value written.
//! - Offset 0x114: interrupt pulse. A 4-byte write of `gsi` raises and lowers that line (one
//!   edge).
//! - Offset 0x118: unmap. An 8-byte write of a guest-physical address asks the VM core to
//!   make that RAM page not present until the next nested fault on it, so that delivering an
//!   event through a stack or IDT on that page exits half-way (the re-injection path). Reads
//!   give the last address written.
//! - Everything else reads as all ones and ignores writes.

/// Where the device sits (below 1 GiB, so the guests' identity map reaches it, above any RAM
/// a `testdev` VM may have).
pub const TEST_DEVICE_GPA: u64 = 0x3F00_0000;
/// Its size.
pub const TEST_DEVICE_SIZE: u64 = 0x1000;
/// What offset 0x100 reads.
pub const TEST_DEVICE_ID: u64 = 0x4F49_4D4D_544C_5342; // "BSLTMMIO"
/// The largest RAM (MiB) a VM with the test device may have.
pub const TEST_DEVICE_MAX_RAM_MIB: u64 = TEST_DEVICE_GPA >> 20;

use crate::bus::{Ctx, Effect, MmioDevice};
use crate::irq::IrqLine;

/// The highest GSI the interrupt registers drive (the IOAPIC's pins).
pub const TEST_DEVICE_MAX_GSI: u32 = 23;
/// Which source of a shared line the test device is (crate::irq).
pub const TEST_DEVICE_IRQ_SOURCE: u8 = 31;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDevice {
    scratch: [u8; 64],
    writes: u32,
    line: u32,
    unmap: u64,
    unmap_pending: bool,
}

impl Default for TestDevice {
    fn default() -> Self {
        TestDevice { scratch: [0; 64], writes: 0, line: 0, unmap: 0, unmap_pending: false }
    }
}

impl TestDevice {
    /// Whether `gpa..gpa+len` lies inside the device.
    pub fn contains(gpa: u64, len: usize) -> bool {
        gpa >= TEST_DEVICE_GPA && gpa.saturating_add(len as u64) <= TEST_DEVICE_GPA + TEST_DEVICE_SIZE
    }

    /// Read `buf.len()` bytes at device offset `offset`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            let at = offset.wrapping_add(i as u64);
            *b = match at {
                0..=0x3F => self.scratch[at as usize],
                0x100..=0x107 => TEST_DEVICE_ID.to_le_bytes()[(at - 0x100) as usize],
                0x108..=0x10B => self.writes.to_le_bytes()[(at - 0x108) as usize],
                0x110..=0x113 => self.line.to_le_bytes()[(at - 0x110) as usize],
                0x118..=0x11F => self.unmap.to_le_bytes()[(at - 0x118) as usize],
                _ => 0xFF,
            };
        }
    }

    /// The interrupt registers: which line to drive how, for a write of `data` at `offset`
    /// (`Some((gsi, Some(level)))` to set a level, `Some((gsi, None))` to pulse).
    fn line_write(&mut self, offset: u64, data: &[u8]) -> Option<(u32, Option<bool>)> {
        let value = u32::from_le_bytes(<[u8; 4]>::try_from(data).ok()?);
        let gsi = value & 0xFF;
        if gsi > TEST_DEVICE_MAX_GSI {
            return None;
        }
        match offset {
            0x110 => {
                self.line = value & 0x1FF;
                Some((gsi, Some(value & 0x100 != 0)))
            }
            0x114 => Some((gsi, None)),
            _ => None,
        }
    }

    /// The page the guest asked to unmap, once (offset 0x118).
    pub fn take_unmap(&mut self) -> Option<u64> {
        core::mem::take(&mut self.unmap_pending).then_some(self.unmap)
    }

    /// Write `data` at device offset `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if let (0x118, Ok(bytes)) = (offset, <[u8; 8]>::try_from(data)) {
            self.unmap = u64::from_le_bytes(bytes);
            self.unmap_pending = true;
        }
        self.writes = self.writes.wrapping_add(1);
        for (i, &b) in data.iter().enumerate() {
            let at = offset.wrapping_add(i as u64);
            if at <= 0x3F {
                self.scratch[at as usize] = b;
            }
        }
    }
}

impl MmioDevice for TestDevice {
    fn read(&mut self, _: &mut Ctx<'_>, offset: u64, data: &mut [u8]) {
        TestDevice::read(self, offset, data)
    }

    fn write(&mut self, ctx: &mut Ctx<'_>, offset: u64, data: &[u8]) -> Effect {
        TestDevice::write(self, offset, data);
        match self.line_write(offset, data) {
            Some((gsi, Some(level))) => IrqLine::shared(gsi, TEST_DEVICE_IRQ_SOURCE).set(ctx.irq, level),
            Some((gsi, None)) => IrqLine::shared(gsi, TEST_DEVICE_IRQ_SOURCE).pulse(ctx.irq),
            None => {}
        }
        Effect::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::RecordingSink;

    #[test]
    fn the_interrupt_registers_drive_lines() {
        let mut d = TestDevice::default();
        let mut sink = RecordingSink::default();
        let mut ctx = Ctx { now: 0, vcpu: 0, irq: &mut sink };
        MmioDevice::write(&mut d, &mut ctx, 0x110, &(10u32 | 1 << 8).to_le_bytes());
        MmioDevice::write(&mut d, &mut ctx, 0x114, &11u32.to_le_bytes());
        MmioDevice::write(&mut d, &mut ctx, 0x110, &10u32.to_le_bytes());
        // Out of range, or the wrong width: nothing.
        MmioDevice::write(&mut d, &mut ctx, 0x110, &(24u32 | 1 << 8).to_le_bytes());
        MmioDevice::write(&mut d, &mut ctx, 0x114, &[11]);
        let mut c = [0u8; 4];
        MmioDevice::read(&mut d, &mut ctx, 0x110, &mut c);
        assert_eq!(u32::from_le_bytes(c), 10);
        let s = TEST_DEVICE_IRQ_SOURCE;
        assert_eq!(sink.events, [(10, s, true), (11, s, true), (11, s, false), (10, s, false)]);
    }

    #[test]
    fn an_unmap_request_is_taken_once() {
        let mut d = TestDevice::default();
        assert_eq!(d.take_unmap(), None);
        d.write(0x118, &0x12_3000u64.to_le_bytes());
        d.write(0x118, &[1, 2, 3, 4]);
        assert_eq!(d.take_unmap(), Some(0x12_3000), "an 8-byte write only");
        assert_eq!(d.take_unmap(), None);
    }

    #[test]
    fn scratch_id_counter_and_the_rest() {
        let mut d = TestDevice::default();
        d.write(0, &0x1122_3344_5566_7788u64.to_le_bytes());
        d.write(3, &[0xAB]);
        let mut b = [0u8; 8];
        d.read(0, &mut b);
        assert_eq!(u64::from_le_bytes(b), 0x1122_3344_AB66_7788);
        d.read(0x100, &mut b);
        assert_eq!(u64::from_le_bytes(b), TEST_DEVICE_ID);
        d.write(0x100, &[0; 8]);
        d.read(0x100, &mut b);
        assert_eq!(u64::from_le_bytes(b), TEST_DEVICE_ID, "read-only");
        let mut c = [0u8; 4];
        d.read(0x108, &mut c);
        assert_eq!(u32::from_le_bytes(c), 3);
        d.read(0x200, &mut c);
        assert_eq!(c, [0xFF; 4]);
        // An access that runs off the scratch into unassigned offsets.
        d.write(0x3E, &[1, 2, 3, 4]);
        d.read(0x3E, &mut c);
        assert_eq!(c, [1, 2, 0xFF, 0xFF]);
        assert!(TestDevice::contains(TEST_DEVICE_GPA + 0xFF8, 8));
        assert!(!TestDevice::contains(TEST_DEVICE_GPA + 0xFFC, 8));
        assert!(!TestDevice::contains(TEST_DEVICE_GPA - 1, 1));
    }
}
