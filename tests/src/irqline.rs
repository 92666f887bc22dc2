//! Driving an interrupt line from the guest, for the IOAPIC tests: under Basalt through the
//! MMIO test device's interrupt registers (the VM needs `testdev`), in bare QEMU through
//! `-device pc-testdev` (a byte written to port 0x2000 + irq sets ISA line irq's level).

use crate::hw::{mmio_write32, outb};

/// Basalt's MMIO test device (hypervisor/src/vm/testdev.rs).
pub const TESTDEV_BASE: u64 = 0x3F00_0000;
/// A 4-byte write of `gsi | level << 8` sets the level the device drives on `gsi`.
pub const TESTDEV_IRQ_LEVEL: u64 = 0x110;
/// A 4-byte write of `gsi` pulses the line (an edge).
pub const TESTDEV_IRQ_PULSE: u64 = 0x114;
/// QEMU's pc-testdev interrupt lines.
pub const PC_TESTDEV_IRQ_PORT: u16 = 0x2000;

/// Sets the level on `gsi` (true: asserted).
pub fn set_level(gsi: u8, asserted: bool) {
    if crate::bare::under_basalt() {
        mmio_write32(TESTDEV_BASE + TESTDEV_IRQ_LEVEL, u32::from(gsi) | u32::from(asserted) << 8);
    } else {
        outb(PC_TESTDEV_IRQ_PORT + u16::from(gsi), u8::from(asserted));
    }
}

/// One edge on `gsi`: asserted, then deasserted.
pub fn pulse(gsi: u8) {
    if crate::bare::under_basalt() {
        mmio_write32(TESTDEV_BASE + TESTDEV_IRQ_PULSE, u32::from(gsi));
    } else {
        outb(PC_TESTDEV_IRQ_PORT + u16::from(gsi), 1);
        outb(PC_TESTDEV_IRQ_PORT + u16::from(gsi), 0);
    }
}
