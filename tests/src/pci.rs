//! PCI configuration space: mechanism 1 (0xCF8 address, 0xCFC data) and ECAM (memory-mapped,
//! at the MCFG's base).

use crate::hw::{inl, mmio_read32, outl};

pub const CONFIG_ADDRESS: u16 = 0xCF8;
pub const CONFIG_DATA: u16 = 0xCFC;

/// The mechanism-1 address of `bus:dev.func` register `reg` (dword-aligned).
pub const fn address(bus: u8, dev: u8, func: u8, reg: u8) -> u32 {
    0x8000_0000 | (bus as u32) << 16 | (dev as u32) << 11 | (func as u32) << 8 | (reg as u32 & 0xFC)
}

/// A dword of configuration space through mechanism 1.
pub fn read(bus: u8, dev: u8, func: u8, reg: u8) -> u32 {
    outl(CONFIG_ADDRESS, address(bus, dev, func, reg));
    inl(CONFIG_DATA)
}

/// A dword of configuration space through ECAM at `base`, whose first bus is `first_bus`.
pub fn ecam_read(base: u64, first_bus: u8, bus: u8, dev: u8, func: u8, reg: u16) -> u32 {
    crate::paging::map_low_4g();
    let offset = (u64::from(bus - first_bus) << 20) | u64::from(dev) << 15 | u64::from(func) << 12;
    mmio_read32(base + offset + u64::from(reg & 0xFFC))
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses() {
        assert_eq!(super::address(0, 0, 0, 0), 0x8000_0000);
        assert_eq!(super::address(1, 31, 7, 0x0B), 0x8001_FF08);
    }
}
