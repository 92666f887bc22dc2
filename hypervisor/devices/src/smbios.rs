//! The per-VM SMBIOS tables (DMTF DSP0134 3.x): a 64-bit (`_SM3_`) entry point and the
//! structures an OS reads at boot to name the machine: BIOS information (type 0), system
//! information (type 1) and the end of table (type 127).
//!
//! The VM core copies [`build`]'s bytes to [`SMBIOS_BASE`], inside the BIOS area (reserved in
//! the guest's E820) where an OS without EFI scans for the entry point on 16-byte boundaries
//! (Linux's `dmi_scan_machine` reads 0xF0000-0xFFFFF). Without them Linux logs "DMI not
//! present or invalid".

use alloc::vec::Vec;

/// Where the entry point goes (16-byte aligned, in the 0xF0000-0xFFFFF scan range).
pub const SMBIOS_BASE: u64 = 0xF_0000;
/// The entry point's length; the structure table follows it.
pub const ENTRY_POINT_LEN: usize = 0x18;

/// What the tables say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmbiosConfig<'a> {
    pub vendor: &'a str,
    pub product: &'a str,
    pub version: &'a str,
    /// The BIOS release date, `mm/dd/yyyy` as the specification asks.
    pub bios_date: &'a str,
    /// The system UUID (type 1).
    pub uuid: [u8; 16],
}

impl Default for SmbiosConfig<'_> {
    fn default() -> Self {
        SmbiosConfig {
            vendor: "Basalt",
            product: "Basalt VM",
            version: env!("CARGO_PKG_VERSION"),
            bios_date: "12/01/2026",
            uuid: [0; 16],
        }
    }
}

/// One structure: its formatted area (after the 4-byte header) and its strings.
fn structure(out: &mut Vec<u8>, ty: u8, handle: u16, formatted: &[u8], strings: &[&str]) {
    out.push(ty);
    out.push(4 + formatted.len() as u8);
    out.extend_from_slice(&handle.to_le_bytes());
    out.extend_from_slice(formatted);
    for s in strings {
        // Strings are ASCII without NULs; anything else would end the set early.
        out.extend(s.bytes().filter(|b| *b != 0));
        out.push(0);
    }
    if strings.is_empty() {
        out.push(0);
    }
    out.push(0);
}

/// The entry point and the structure table for a guest-physical `base`: the bytes to copy
/// there.
pub fn build(c: &SmbiosConfig<'_>, base: u64) -> Vec<u8> {
    let mut table = Vec::new();
    // Type 0, BIOS information (SMBIOS 3.x length 0x1A): vendor 1, version 2, start segment
    // 0xE800, date 3, ROM size 64 KiB, characteristics "not supported" (bit 3), extension
    // byte 2 bit 4 (a virtual machine), release 1.0, no embedded controller.
    let mut bios = Vec::new();
    bios.extend_from_slice(&[1, 2]);
    bios.extend_from_slice(&0xE800u16.to_le_bytes());
    bios.extend_from_slice(&[3, 0]);
    bios.extend_from_slice(&(1u64 << 3).to_le_bytes());
    bios.extend_from_slice(&[0, 1 << 4, 1, 0, 0xFF, 0xFF]);
    bios.extend_from_slice(&0u16.to_le_bytes());
    structure(&mut table, 0, 0, &bios, &[c.vendor, c.version, c.bios_date]);
    // Type 1, system information (length 0x1B): manufacturer 1, product 2, version 3, no
    // serial, the UUID, woken by the power switch (6), no SKU or family.
    let mut system = alloc::vec![1, 2, 3, 0];
    system.extend_from_slice(&c.uuid);
    system.extend_from_slice(&[6, 0, 0]);
    structure(&mut table, 1, 1, &system, &[c.vendor, c.product, c.version]);
    structure(&mut table, 127, 2, &[], &[]);

    let mut out = Vec::with_capacity(ENTRY_POINT_LEN + table.len());
    out.extend_from_slice(b"_SM3_");
    out.push(0); // checksum, below
    out.push(ENTRY_POINT_LEN as u8);
    out.extend_from_slice(&[3, 0, 0, 1, 0]); // version 3.0.0, entry point revision 1, reserved
    out.extend_from_slice(&(table.len() as u32).to_le_bytes());
    out.extend_from_slice(&(base + ENTRY_POINT_LEN as u64).to_le_bytes());
    let sum = out.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    out[5] = 0u8.wrapping_sub(sum);
    out.extend_from_slice(&table);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    /// The structures of a table as (type, length, strings).
    fn walk(table: &[u8]) -> Vec<(u8, u8, Vec<String>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 4 <= table.len() {
            let (ty, len) = (table[at], table[at + 1]);
            let mut s = at + len as usize;
            let mut strings = Vec::new();
            loop {
                let end = s + table[s..].iter().position(|b| *b == 0).unwrap();
                if end == s {
                    // The set's end; with no strings the set is two NULs.
                    s = if strings.is_empty() { end + 2 } else { end + 1 };
                    break;
                }
                strings.push(String::from_utf8(table[s..end].to_vec()).unwrap());
                s = end + 1;
            }
            out.push((ty, len, strings));
            at = s;
            if ty == 127 {
                assert_eq!(at, table.len(), "nothing after the end-of-table structure");
            }
        }
        out
    }

    #[test]
    fn entry_point_and_structures() {
        let b = build(&SmbiosConfig::default(), SMBIOS_BASE);
        assert_eq!(&b[..5], b"_SM3_");
        assert_eq!(b[..ENTRY_POINT_LEN].iter().fold(0u8, |a, x| a.wrapping_add(*x)), 0, "checksum");
        assert_eq!((b[6], b[7], b[8]), (0x18, 3, 0));
        let max = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
        let addr = u64::from_le_bytes(b[16..24].try_into().unwrap());
        assert_eq!((addr, max), (SMBIOS_BASE + 0x18, b.len() - ENTRY_POINT_LEN));
        let s = walk(&b[ENTRY_POINT_LEN..]);
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].0, s[0].1), (0, 0x1A));
        assert_eq!(s[0].2, ["Basalt", env!("CARGO_PKG_VERSION"), "12/01/2026"]);
        assert_eq!((s[1].0, s[1].1), (1, 0x1B));
        assert_eq!(s[1].2, ["Basalt", "Basalt VM", env!("CARGO_PKG_VERSION")]);
        assert_eq!((s[2].0, s[2].1, s[2].2.len()), (127, 4, 0));
    }

    #[test]
    fn strings_with_nuls_cannot_end_a_set_early() {
        let c = SmbiosConfig { vendor: "a\0b", ..SmbiosConfig::default() };
        let b = build(&c, SMBIOS_BASE);
        assert_eq!(walk(&b[ENTRY_POINT_LEN..])[0].2[0], "ab");
    }
}
