//! The RTC's CMOS at ports 0x70 (index) and 0x71 (data).

use crate::hw::{inb, outb};

/// CMOS register `reg`.
pub fn read(reg: u8) -> u8 {
    outb(0x70, reg);
    inb(0x71)
}

/// Writes CMOS register `reg`.
pub fn write(reg: u8, v: u8) {
    outb(0x70, reg);
    outb(0x71, v);
}
