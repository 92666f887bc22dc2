//! Nested page tables for guests: AMD NPT (APM Vol. 2 15.25, the long-mode page-table format
//! with every level marked user) and Intel EPT (SDM Vol. 3C 29.3). One builder, two encodings;
//! 2 MiB leaves where both addresses and the remaining length allow, 4 KiB leaves elsewhere.

use crate::paging::{OutOfTables, TableMemory};

/// Which hardware reads the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NestedFormat {
    Npt,
    Ept,
}

const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;
const LARGE: u64 = 2 << 20;

/// EPT entry bits (SDM Table 29-2..29-6).
pub mod ept {
    pub const READ: u64 = 1 << 0;
    pub const WRITE: u64 = 1 << 1;
    pub const EXECUTE: u64 = 1 << 2;
    /// Memory type write-back in a leaf's bits 5:3.
    pub const MEMTYPE_WB: u64 = 6 << 3;
    pub const LARGE_PAGE: u64 = 1 << 7;
    /// EPTP: write-back paging-structure memory type, 4-level walk (SDM 25.6.11).
    pub const EPTP_WB_4LEVEL: u64 = 6 | (3 << 3);
}

/// NPT entry bits: the long-mode page-table format; nested walks are user accesses, so U is
/// set at every level (APM 15.25.5).
pub mod npt {
    pub const PRESENT: u64 = 1 << 0;
    pub const WRITE: u64 = 1 << 1;
    pub const USER: u64 = 1 << 2;
    pub const LARGE_PAGE: u64 = 1 << 7;
}

impl NestedFormat {
    fn table_entry(self, next: u64) -> u64 {
        match self {
            NestedFormat::Npt => next | npt::PRESENT | npt::WRITE | npt::USER,
            NestedFormat::Ept => next | ept::READ | ept::WRITE | ept::EXECUTE,
        }
    }
    fn leaf(self, hpa: u64, large: bool) -> u64 {
        match self {
            NestedFormat::Npt => {
                hpa | npt::PRESENT | npt::WRITE | npt::USER | if large { npt::LARGE_PAGE } else { 0 }
            }
            NestedFormat::Ept => {
                hpa | ept::READ
                    | ept::WRITE
                    | ept::EXECUTE
                    | ept::MEMTYPE_WB
                    | if large { ept::LARGE_PAGE } else { 0 }
            }
        }
    }
    fn present(self, entry: u64) -> bool {
        match self {
            NestedFormat::Npt => entry & npt::PRESENT != 0,
            NestedFormat::Ept => entry & (ept::READ | ept::WRITE | ept::EXECUTE) != 0,
        }
    }
}

/// A fresh, empty root table.
pub fn new_root(mem: &mut dyn TableMemory) -> Result<u64, OutOfTables> {
    mem.alloc_table().ok_or(OutOfTables)
}

/// Map guest-physical `[gpa, gpa + len)` to host-physical `[hpa, hpa + len)` (all 4 KiB aligned).
pub fn map_range(
    mem: &mut dyn TableMemory,
    root: u64,
    format: NestedFormat,
    gpa: u64,
    hpa: u64,
    len: u64,
) -> Result<(), OutOfTables> {
    debug_assert!(gpa.is_multiple_of(4096) && hpa.is_multiple_of(4096) && len.is_multiple_of(4096));
    let mut off = 0;
    while off < len {
        let (g, h) = (gpa + off, hpa + off);
        let pdpt = next(mem, format, root, (g >> 39) & 511)?;
        let pd = next(mem, format, pdpt, (g >> 30) & 511)?;
        if g % LARGE == 0 && h % LARGE == 0 && len - off >= LARGE {
            mem.write(pd, ((g >> 21) & 511) as usize, format.leaf(h, true));
            off += LARGE;
        } else {
            let pt = next(mem, format, pd, (g >> 21) & 511)?;
            mem.write(pt, ((g >> 12) & 511) as usize, format.leaf(h, false));
            off += 4096;
        }
    }
    Ok(())
}

fn next(mem: &mut dyn TableMemory, format: NestedFormat, table: u64, index: u64) -> Result<u64, OutOfTables> {
    let e = mem.read(table, index as usize);
    if format.present(e) {
        return Ok(e & ADDR_MASK);
    }
    let t = mem.alloc_table().ok_or(OutOfTables)?;
    mem.write(table, index as usize, format.table_entry(t));
    Ok(t)
}

/// Translate a guest-physical address by walking the tables (tests and reports).
pub fn translate(mem: &dyn TableMemory, root: u64, format: NestedFormat, gpa: u64) -> Option<u64> {
    let mut table = root;
    for (level, shift) in [(4, 39u32), (3, 30), (2, 21), (1, 12)] {
        let e = mem.read(table, ((gpa >> shift) & 511) as usize);
        if !format.present(e) {
            return None;
        }
        let large = e & (1 << 7) != 0;
        if level == 1 || (level == 2 && large) {
            let page = if level == 2 { LARGE } else { 4096 };
            return Some((e & ADDR_MASK & !(page - 1)) | (gpa & (page - 1)));
        }
        table = e & ADDR_MASK;
    }
    None
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Host {
        next: u64,
        mem: HashMap<(u64, usize), u64>,
        tables: usize,
    }
    impl TableMemory for Host {
        fn alloc_table(&mut self) -> Option<u64> {
            self.tables += 1;
            self.next += 4096;
            Some(0x4000_0000 + self.next)
        }
        fn read(&self, t: u64, i: usize) -> u64 {
            *self.mem.get(&(t, i)).unwrap_or(&0)
        }
        fn write(&mut self, t: u64, i: usize, e: u64) {
            self.mem.insert((t, i), e);
        }
    }

    #[test]
    fn both_formats_translate_large_and_small_pages() {
        for format in [NestedFormat::Npt, NestedFormat::Ept] {
            let mut m = Host::default();
            let root = new_root(&mut m).unwrap();
            // 16 MiB at GPA 0 -> HPA 0x1_0000_0000 (2 MiB leaves), plus 12 KiB at an odd place.
            map_range(&mut m, root, format, 0, 0x1_0000_0000, 16 << 20).unwrap();
            map_range(&mut m, root, format, 0x10_0000_3000, 0x2345_6000, 0x3000).unwrap();
            assert_eq!(translate(&m, root, format, 0x1234), Some(0x1_0000_1234));
            assert_eq!(translate(&m, root, format, (16 << 20) - 1), Some(0x1_0000_0000 + (16 << 20) - 1));
            assert_eq!(translate(&m, root, format, 16 << 20), None);
            assert_eq!(translate(&m, root, format, 0x10_0000_4010), Some(0x2345_7010));
            assert_eq!(translate(&m, root, format, 0x10_0000_6000), None);
            // root + PDPT + PD for the 16 MiB; a second PD and a PT for the small range (64 GiB up).
            assert_eq!(m.tables, 5);
        }
    }

    #[test]
    fn encodings_follow_the_manuals() {
        let npt_leaf = NestedFormat::Npt.leaf(0x20_0000, true);
        assert_eq!(npt_leaf & 0xFFF, npt::PRESENT | npt::WRITE | npt::USER | npt::LARGE_PAGE);
        let ept_leaf = NestedFormat::Ept.leaf(0x20_0000, true);
        assert_eq!(ept_leaf & 0xFFF, 0b111 | (6 << 3) | (1 << 7));
        let ept_small = NestedFormat::Ept.leaf(0x3000, false);
        assert_eq!(ept_small & 0xFFF, 0b111 | (6 << 3));
        assert_eq!(NestedFormat::Ept.table_entry(0x5000), 0x5007);
        assert_eq!(NestedFormat::Npt.table_entry(0x5000), 0x5007);
    }
}
