//! The IOAPIC at [`IOAPIC_BASE`]: its index/data window, version and redirection entries.

use crate::hw::{mmio_read32, mmio_write32};

pub const IOAPIC_BASE: u64 = 0xFEC0_0000;
const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
pub const REG_ID: u32 = 0x00;
pub const REG_VERSION: u32 = 0x01;

/// Redirection entry bits (low half).
pub const DELIVERY_STATUS: u64 = 1 << 12;
pub const ACTIVE_LOW: u64 = 1 << 13;
pub const REMOTE_IRR: u64 = 1 << 14;
pub const LEVEL: u64 = 1 << 15;
pub const MASKED: u64 = 1 << 16;

pub fn read(reg: u32) -> u32 {
    crate::paging::map_low_4g();
    mmio_write32(IOAPIC_BASE + IOREGSEL, reg);
    mmio_read32(IOAPIC_BASE + IOWIN)
}

pub fn write(reg: u32, v: u32) {
    crate::paging::map_low_4g();
    mmio_write32(IOAPIC_BASE + IOREGSEL, reg);
    mmio_write32(IOAPIC_BASE + IOWIN, v);
}

/// The number of pins (version register bits 16-23 plus one).
pub fn pins() -> u32 {
    ((read(REG_VERSION) >> 16) & 0xFF) + 1
}

/// Redirection entry `pin`, both halves.
pub fn entry(pin: u32) -> u64 {
    let low = read(0x10 + 2 * pin);
    let high = read(0x11 + 2 * pin);
    u64::from(high) << 32 | u64::from(low)
}

/// Writes redirection entry `pin` (high half first, so the entry is never live half-written).
pub fn set_entry(pin: u32, v: u64) {
    write(0x11 + 2 * pin, (v >> 32) as u32);
    write(0x10 + 2 * pin, v as u32);
}

/// A fixed, physical-destination entry for `vector` to APIC ID `dest`.
pub const fn fixed(vector: u8, dest: u32, level: bool, masked: bool) -> u64 {
    (vector as u64) | ((dest as u64) << 56) | if level { LEVEL } else { 0 } | if masked { MASKED } else { 0 }
}

/// Masks pin `pin`, leaving the rest of its entry.
pub fn mask(pin: u32) {
    set_entry(pin, entry(pin) | MASKED);
}

/// Unmasks pin `pin`.
pub fn unmask(pin: u32) {
    set_entry(pin, entry(pin) & !MASKED);
}
