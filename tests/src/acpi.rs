//! Finding and reading the ACPI tables the way an OS does: the RSDP by scanning the BIOS area
//! (0xE0000-0xFFFFF, 16-byte boundaries), then the XSDT (or RSDT), checksums, and the fields of
//! the MADT, FADT, MCFG and the DSDT's `\_S5` package the platform tests need.

use crate::hw::mmio_read8;

pub const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// Where the BIOS-area scan looks.
pub const SCAN_START: u64 = 0xE_0000;
pub const SCAN_END: u64 = 0x10_0000;
pub const HEADER_LEN: u32 = 36;

pub fn rd8(a: u64) -> u8 {
    mmio_read8(a)
}
pub fn rd16(a: u64) -> u16 {
    u16::from_le_bytes([rd8(a), rd8(a + 1)])
}
pub fn rd32(a: u64) -> u32 {
    u32::from(rd16(a)) | u32::from(rd16(a + 2)) << 16
}
pub fn rd64(a: u64) -> u64 {
    u64::from(rd32(a)) | u64::from(rd32(a + 4)) << 32
}

/// The byte sum of `[addr, addr + len)` (0 for a valid checksum).
pub fn checksum(addr: u64, len: u32) -> u8 {
    (0..u64::from(len)).fold(0u8, |s, i| s.wrapping_add(rd8(addr + i)))
}

fn signature_at(addr: u64, sig: &[u8]) -> bool {
    sig.iter().enumerate().all(|(i, &b)| rd8(addr + i as u64) == b)
}

/// The RSDP: where it is and what it says.
#[derive(Clone, Copy, Debug)]
pub struct Rsdp {
    pub addr: u64,
    pub revision: u8,
    pub rsdt: u32,
    /// 0 before ACPI 2.0 (revision 0).
    pub xsdt: u64,
    /// The extended length (20 for revision 0).
    pub length: u32,
}

/// Scans the BIOS area for the RSDP: the first 16-byte-aligned "RSD PTR " whose first 20 bytes
/// sum to 0. Maps the first 4 GiB first (tables may lie anywhere below 4 GiB).
pub fn find_rsdp() -> Option<Rsdp> {
    crate::paging::map_low_4g();
    let mut a = SCAN_START;
    while a < SCAN_END {
        if signature_at(a, RSDP_SIGNATURE) && checksum(a, 20) == 0 {
            let revision = rd8(a + 15);
            let (xsdt, length) = if revision >= 2 { (rd64(a + 24), rd32(a + 20)) } else { (0, 20) };
            return Some(Rsdp { addr: a, revision, rsdt: rd32(a + 16), xsdt, length });
        }
        a += 16;
    }
    None
}

/// A table's signature and length.
pub fn header(addr: u64) -> ([u8; 4], u32) {
    ([rd8(addr), rd8(addr + 1), rd8(addr + 2), rd8(addr + 3)], rd32(addr + 4))
}

/// The tables the root table lists: the XSDT's where there is one, else the RSDT's. Calls `f`
/// with each table's address.
pub fn for_each_table(rsdp: &Rsdp, mut f: impl FnMut(u64)) {
    let (root, width) = if rsdp.xsdt != 0 { (rsdp.xsdt, 8) } else { (u64::from(rsdp.rsdt), 4) };
    let (_, len) = header(root);
    let n = (len.saturating_sub(HEADER_LEN)) / width;
    for i in 0..n {
        let at = root + u64::from(HEADER_LEN) + u64::from(i * width);
        f(if width == 8 { rd64(at) } else { u64::from(rd32(at)) });
    }
}

/// The first listed table with signature `sig`.
pub fn find_table(rsdp: &Rsdp, sig: &[u8; 4]) -> Option<u64> {
    let mut found = None;
    for_each_table(rsdp, |t| {
        if found.is_none() && &header(t).0 == sig {
            found = Some(t);
        }
    });
    found
}

/// One MADT entry: its type, length and address.
#[derive(Clone, Copy, Debug)]
pub struct MadtEntry {
    pub kind: u8,
    pub len: u8,
    pub addr: u64,
}

pub const MADT_LAPIC: u8 = 0;
pub const MADT_IOAPIC: u8 = 1;
pub const MADT_ISO: u8 = 2;
pub const MADT_X2APIC: u8 = 9;

/// Calls `f` with each MADT entry (entries start at offset 44).
pub fn for_each_madt_entry(madt: u64, mut f: impl FnMut(MadtEntry)) {
    let (_, len) = header(madt);
    let mut at = madt + 44;
    while at + 2 <= madt + u64::from(len) {
        let e = MadtEntry { kind: rd8(at), len: rd8(at + 1), addr: at };
        if e.len < 2 {
            return;
        }
        f(e);
        at += u64::from(e.len);
    }
}

/// The APIC IDs of the enabled Processor Local APIC (and x2APIC) entries, into `ids`; returns
/// how many there are (may exceed `ids.len()`).
pub fn madt_cpus(madt: u64, ids: &mut [u32]) -> usize {
    let mut n = 0;
    for_each_madt_entry(madt, |e| {
        let (id, flags) = match e.kind {
            MADT_LAPIC => (u32::from(rd8(e.addr + 3)), rd32(e.addr + 4)),
            MADT_X2APIC => (rd32(e.addr + 4), rd32(e.addr + 8)),
            _ => return,
        };
        if flags & 1 != 0 {
            if let Some(slot) = ids.get_mut(n) {
                *slot = id;
            }
            n += 1;
        }
    });
    n
}

/// The interrupt source override for ISA IRQ `source`: (GSI, MPS INTI flags).
pub fn madt_override(madt: u64, source: u8) -> Option<(u32, u16)> {
    let mut found = None;
    for_each_madt_entry(madt, |e| {
        if e.kind == MADT_ISO && rd8(e.addr + 2) == 0 && rd8(e.addr + 3) == source {
            found = Some((rd32(e.addr + 4), rd16(e.addr + 8)));
        }
    });
    found
}

/// The GSI ISA IRQ `irq` arrives on: its override's, else `irq` itself.
pub fn isa_gsi(madt: u64, irq: u8) -> u32 {
    madt_override(madt, irq).map_or(u32::from(irq), |(gsi, _)| gsi)
}

/// A Generic Address Structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gas {
    /// 0 memory, 1 I/O.
    pub space: u8,
    pub bit_width: u8,
    pub bit_offset: u8,
    pub access_size: u8,
    pub address: u64,
}

pub fn gas(at: u64) -> Gas {
    Gas {
        space: rd8(at),
        bit_width: rd8(at + 1),
        bit_offset: rd8(at + 2),
        access_size: rd8(at + 3),
        address: rd64(at + 4),
    }
}

/// FADT offsets (ACPI 6.x, 5.2.9).
pub mod fadt {
    pub const DSDT: u64 = 40;
    pub const PM1A_CNT_BLK: u64 = 64;
    pub const PM_TMR_BLK: u64 = 76;
    pub const PM_TMR_LEN: u64 = 91;
    pub const CENTURY: u64 = 108;
    pub const FLAGS: u64 = 112;
    pub const RESET_REG: u64 = 116;
    pub const RESET_VALUE: u64 = 128;
    pub const X_DSDT: u64 = 140;
    pub const X_PM1A_CNT_BLK: u64 = 172;
    pub const X_PM_TMR_BLK: u64 = 208;
    /// Flags: the PM timer is 32 bits wide (else 24).
    pub const TMR_VAL_EXT: u32 = 1 << 8;
    /// Flags: RESET_REG is supported.
    pub const RESET_REG_SUP: u32 = 1 << 10;
}

/// A FADT field that is there: `offset + size` within the table's length.
fn fadt_has(fadt: u64, offset: u64, size: u64) -> bool {
    offset + size <= u64::from(header(fadt).1)
}

/// The I/O port of a FADT block: the X_ GAS where present (and in I/O space), else the 32-bit
/// field.
fn fadt_port(fadt: u64, x_offset: u64, offset: u64) -> u16 {
    if fadt_has(fadt, x_offset, 12) {
        let g = gas(fadt + x_offset);
        if g.address != 0 && g.space == 1 {
            return g.address as u16;
        }
    }
    rd32(fadt + offset) as u16
}

/// The PM timer's port and whether it is 32 bits wide.
pub fn pm_timer(fadt: u64) -> (u16, bool) {
    (fadt_port(fadt, fadt::X_PM_TMR_BLK, fadt::PM_TMR_BLK), rd32(fadt + fadt::FLAGS) & fadt::TMR_VAL_EXT != 0)
}

/// PM1a_CNT's port.
pub fn pm1a_cnt(fadt: u64) -> u16 {
    fadt_port(fadt, fadt::X_PM1A_CNT_BLK, fadt::PM1A_CNT_BLK)
}

/// The DSDT's address: X_DSDT where present and set, else DSDT.
pub fn dsdt(fadt: u64) -> u64 {
    if fadt_has(fadt, fadt::X_DSDT, 8) && rd64(fadt + fadt::X_DSDT) != 0 {
        rd64(fadt + fadt::X_DSDT)
    } else {
        u64::from(rd32(fadt + fadt::DSDT))
    }
}

/// The reset register and value, where the FADT says it has one.
pub fn reset_register(fadt: u64) -> Option<(Gas, u8)> {
    (fadt_has(fadt, fadt::RESET_VALUE, 1) && rd32(fadt + fadt::FLAGS) & fadt::RESET_REG_SUP != 0)
        .then(|| (gas(fadt + fadt::RESET_REG), rd8(fadt + fadt::RESET_VALUE)))
}

/// An AML integer at `at`: ZeroOp, OneOp, OnesOp or a Byte/Word/DWord prefix. Returns the
/// value and its length.
fn aml_integer(at: u64) -> Option<(u64, u64)> {
    match rd8(at) {
        0x00 => Some((0, 1)),
        0x01 => Some((1, 1)),
        0xFF => Some((u64::MAX, 1)),
        0x0A => Some((u64::from(rd8(at + 1)), 2)),
        0x0B => Some((u64::from(rd16(at + 1)), 3)),
        0x0C => Some((u64::from(rd32(at + 1)), 5)),
        _ => None,
    }
}

/// SLP_TYPa and SLP_TYPb from the DSDT's `Name (_S5, Package () { a, b, ... })`: the AML
/// `08 [5C] 5F 53 35 5F 12 <PkgLength> <NumElements> <a> <b>`.
pub fn s5_sleep_types(dsdt: u64) -> Option<(u8, u8)> {
    let (_, len) = header(dsdt);
    let end = dsdt + u64::from(len);
    let mut at = dsdt + u64::from(HEADER_LEN);
    while at + 4 < end {
        if signature_at(at, b"_S5_") {
            let name_op = rd8(at - 1) == 0x08 || (rd8(at - 1) == b'\\' && rd8(at - 2) == 0x08);
            if name_op && rd8(at + 4) == 0x12 {
                let pkg = at + 5;
                let follow = u64::from(rd8(pkg) >> 6);
                let elements = pkg + 1 + follow + 1;
                let (a, alen) = aml_integer(elements)?;
                let b = aml_integer(elements + alen).map_or(0, |(b, _)| b);
                return Some((a as u8, b as u8));
            }
        }
        at += 1;
    }
    None
}

/// The MCFG's allocations: (ECAM base, segment, first bus, last bus), into `out`; returns the
/// count.
pub fn mcfg_allocations(mcfg: u64, out: &mut [(u64, u16, u8, u8)]) -> usize {
    let (_, len) = header(mcfg);
    let n = (len.saturating_sub(44) / 16) as usize;
    for (i, slot) in out.iter_mut().enumerate().take(n) {
        let e = mcfg + 44 + 16 * i as u64;
        *slot = (rd64(e), rd16(e + 8), rd8(e + 10), rd8(e + 11));
    }
    n
}
