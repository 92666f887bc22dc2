//! QEMU's fw_cfg, I/O-port interface: selector at 0x510 (16-bit), data at 0x511 (bytes).

use crate::hw::{inb, outw};

pub const SELECTOR: u16 = 0x510;
pub const DATA: u16 = 0x511;
pub const KEY_SIGNATURE: u16 = 0x00;
/// The RAM size in bytes, 64-bit little-endian.
pub const KEY_RAM_SIZE: u16 = 0x03;
/// The number of CPUs, 16-bit little-endian.
pub const KEY_NB_CPUS: u16 = 0x05;

/// Reads `buf.len()` bytes of item `key`.
pub fn read(key: u16, buf: &mut [u8]) {
    outw(SELECTOR, key);
    for b in buf {
        *b = inb(DATA);
    }
}

/// Whether fw_cfg answers with its "QEMU" signature.
pub fn present() -> bool {
    let mut sig = [0u8; 4];
    read(KEY_SIGNATURE, &mut sig);
    &sig == b"QEMU"
}

/// The CPU count fw_cfg gives, if fw_cfg is there.
pub fn nb_cpus() -> Option<u16> {
    if !present() {
        return None;
    }
    let mut n = [0u8; 2];
    read(KEY_NB_CPUS, &mut n);
    Some(u16::from_le_bytes(n))
}

/// The RAM size fw_cfg gives, if fw_cfg is there.
pub fn ram_size() -> Option<u64> {
    if !present() {
        return None;
    }
    let mut n = [0u8; 8];
    read(KEY_RAM_SIZE, &mut n);
    Some(u64::from_le_bytes(n))
}
