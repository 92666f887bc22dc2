//! Nested page tables for guests: AMD NPT (APM Vol. 2 15.25, the long-mode page-table format
//! with every level marked user) and Intel EPT (SDM Vol. 3C 29.3). One builder, two encodings;
//! the largest leaf (1 GiB where the CPU has it, 2 MiB, else 4 KiB) that both addresses, the
//! remaining length and the host memory type allow. EPT leaves carry the memory type the host
//! MTRRs give their range (see `mtrr`); a range of mixed types is mapped with smaller leaves.

use crate::paging::{OutOfTables, TableMemory};

/// Which hardware reads the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NestedFormat {
    Npt,
    Ept,
}

const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;
const LARGE: u64 = 2 << 20;
const HUGE: u64 = 1 << 30;

/// Which leaves the CPU allows and what memory type a host range has.
pub struct LeafPolicy<'a> {
    /// 2 MiB leaves (EPT: IA32_VMX_EPT_VPID_CAP bit 16; NPT: always).
    pub mib_pages: bool,
    /// 1 GiB leaves (EPT: IA32_VMX_EPT_VPID_CAP bit 17; NPT: CPUID Page1GB).
    pub gib_pages: bool,
    /// The memory type of host-physical `[addr, addr + len)` if it is one type, else `None`.
    /// Only EPT uses it; under NPT the CPU applies the host MTRRs itself.
    pub memory_type: &'a dyn Fn(u64, u64) -> Option<u8>,
}

/// Every host range write-back, 2 MiB leaves at most (host tests, and NPT).
pub const WRITE_BACK: LeafPolicy<'static> =
    LeafPolicy { mib_pages: true, gib_pages: false, memory_type: &|_, _| Some(6) };

/// EPT entry bits (SDM Table 29-2..29-6).
pub mod ept {
    pub const READ: u64 = 1 << 0;
    pub const WRITE: u64 = 1 << 1;
    pub const EXECUTE: u64 = 1 << 2;
    /// Memory type write-back in a leaf's bits 5:3.
    pub const MEMTYPE_WB: u64 = 6 << 3;
    /// Shift of a leaf's memory type (bits 5:3).
    pub const MEMTYPE_SHIFT: u32 = 3;
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
    fn leaf(self, hpa: u64, large: bool, memory_type: u8) -> u64 {
        match self {
            NestedFormat::Npt => {
                hpa | npt::PRESENT | npt::WRITE | npt::USER | if large { npt::LARGE_PAGE } else { 0 }
            }
            NestedFormat::Ept => {
                hpa | ept::READ
                    | ept::WRITE
                    | ept::EXECUTE
                    | ((memory_type as u64 & 7) << ept::MEMTYPE_SHIFT)
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
    policy: &LeafPolicy<'_>,
) -> Result<(), OutOfTables> {
    debug_assert!(gpa.is_multiple_of(4096) && hpa.is_multiple_of(4096) && len.is_multiple_of(4096));
    let fits = |g: u64, h: u64, left: u64, size: u64| {
        g.is_multiple_of(size) && h.is_multiple_of(size) && left >= size
    };
    let mut off = 0;
    while off < len {
        let (g, h, left) = (gpa + off, hpa + off, len - off);
        let pdpt = next(mem, format, root, (g >> 39) & 511)?;
        if policy.gib_pages && fits(g, h, left, HUGE) {
            if let Some(t) = (policy.memory_type)(h, HUGE) {
                mem.write(pdpt, ((g >> 30) & 511) as usize, format.leaf(h, true, t));
                off += HUGE;
                continue;
            }
        }
        let pd = next(mem, format, pdpt, (g >> 30) & 511)?;
        if policy.mib_pages && fits(g, h, left, LARGE) {
            if let Some(t) = (policy.memory_type)(h, LARGE) {
                mem.write(pd, ((g >> 21) & 511) as usize, format.leaf(h, true, t));
                off += LARGE;
                continue;
            }
        }
        let pt = next(mem, format, pd, (g >> 21) & 511)?;
        // One page always has one type; `None` here would be a broken policy: take UC.
        let t = (policy.memory_type)(h, 4096).unwrap_or(0);
        mem.write(pt, ((g >> 12) & 511) as usize, format.leaf(h, false, t));
        off += 4096;
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

/// Make the 4 KiB page at `gpa` present or not present, keeping its host address and memory
/// type: a larger leaf over it is first split into 512 smaller ones that map the same (so the
/// rest of the range is unchanged). Returns `Ok(false)` if `gpa` is not mapped at all. The
/// caller flushes the guest's TLB (INVEPT / a VMCB TLB flush) before the change counts.
pub fn set_page_present(
    mem: &mut dyn TableMemory,
    root: u64,
    format: NestedFormat,
    gpa: u64,
    present: bool,
) -> Result<bool, OutOfTables> {
    let mut table = root;
    for (level, shift) in [(4u32, 39u32), (3, 30), (2, 21)] {
        let index = ((gpa >> shift) & 511) as usize;
        let e = mem.read(table, index);
        if level == 4 || e & (1 << 7) == 0 {
            if !format.present(e) {
                return Ok(false);
            }
            table = e & ADDR_MASK;
            continue;
        }
        // A large leaf: split it into 512 leaves of the next size with the same attributes.
        let child = mem.alloc_table().ok_or(OutOfTables)?;
        let size = if level == 3 { LARGE } else { 4096 };
        let base = e & ADDR_MASK & !((size << 9) - 1);
        let attrs = e & !ADDR_MASK & if level == 3 { !0 } else { !(1 << 7) };
        for i in 0..512u64 {
            mem.write(child, i as usize, (base + i * size) | attrs);
        }
        mem.write(table, index, format.table_entry(child));
        table = child;
    }
    let index = ((gpa >> 12) & 511) as usize;
    let e = mem.read(table, index);
    // A page made not present keeps its address and type with the permission bits cleared,
    // so making it present again restores exactly what was there.
    let perms = match format {
        NestedFormat::Npt => npt::PRESENT,
        NestedFormat::Ept => ept::READ | ept::WRITE | ept::EXECUTE,
    };
    let all = match format {
        NestedFormat::Npt => npt::PRESENT | npt::WRITE | npt::USER,
        NestedFormat::Ept => ept::READ | ept::WRITE | ept::EXECUTE,
    };
    if e & ADDR_MASK == 0 && !format.present(e) {
        return Ok(false);
    }
    mem.write(table, index, if present { e | all } else { e & !perms });
    Ok(true)
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
        if level == 1 || (level <= 3 && large) {
            let page = match level {
                3 => HUGE,
                2 => LARGE,
                _ => 4096,
            };
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
            map_range(&mut m, root, format, 0, 0x1_0000_0000, 16 << 20, &WRITE_BACK).unwrap();
            map_range(&mut m, root, format, 0x10_0000_3000, 0x2345_6000, 0x3000, &WRITE_BACK).unwrap();
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
    fn gib_leaves_where_allowed_and_mixed_memory_types_split() {
        // 2 GiB at GPA 0 -> HPA 1 GiB: two 1 GiB leaves, no PD at all.
        let mut m = Host::default();
        let root = new_root(&mut m).unwrap();
        let gib = LeafPolicy { mib_pages: true, gib_pages: true, memory_type: &|_, _| Some(6) };
        map_range(&mut m, root, NestedFormat::Ept, 0, 1 << 30, 2 << 30, &gib).unwrap();
        assert_eq!(m.tables, 2, "root and PDPT only");
        assert_eq!(translate(&m, root, NestedFormat::Ept, (1 << 30) + 0x1234), Some((2 << 30) + 0x1234));
        let pdpt = m.read(root, 0) & ADDR_MASK;
        assert_eq!(m.read(pdpt, 1) & 0xFF, 0b111 | (6 << 3) | (1 << 7));

        // A host range with one UC page in its second 2 MiB: that 2 MiB is split into 4 KiB
        // pages with their own types; the rest stays large and write-back.
        let mut m = Host::default();
        let root = new_root(&mut m).unwrap();
        let uc_page = 0x20_3000u64;
        let types = move |h: u64, len: u64| {
            if (h..h + len).contains(&uc_page) {
                if len == 4096 {
                    Some(0)
                } else {
                    None
                }
            } else {
                Some(6)
            }
        };
        let mixed = LeafPolicy { mib_pages: true, gib_pages: true, memory_type: &types };
        map_range(&mut m, root, NestedFormat::Ept, 0, 0, 4 << 20, &mixed).unwrap();
        assert_eq!(m.tables, 4, "root, PDPT, PD and one PT");
        let pt_entry = |gpa: u64| {
            let pdpt = m.read(root, 0) & ADDR_MASK;
            let pd = m.read(pdpt, 0) & ADDR_MASK;
            let pt = m.read(pd, 1) & ADDR_MASK;
            m.read(pt, ((gpa >> 12) & 511) as usize)
        };
        assert_eq!((pt_entry(0x20_3000) >> 3) & 7, 0, "the UC page");
        assert_eq!((pt_entry(0x20_4000) >> 3) & 7, 6);
        assert_eq!(translate(&m, root, NestedFormat::Ept, 0x30_0010), Some(0x30_0010));
    }

    #[test]
    fn one_page_goes_and_comes_back_and_its_neighbours_stay() {
        for format in [NestedFormat::Npt, NestedFormat::Ept] {
            let mut m = Host::default();
            let root = new_root(&mut m).unwrap();
            let gib = LeafPolicy { mib_pages: true, gib_pages: true, memory_type: &|_, _| Some(6) };
            map_range(&mut m, root, format, 0, 1 << 30, 1 << 30, &gib).unwrap();
            let page = 0x20_5000;
            assert_eq!(set_page_present(&mut m, root, format, page, false), Ok(true));
            assert_eq!(translate(&m, root, format, page + 0x10), None);
            for gpa in [page - 4096, page + 4096, 0, 0x3FFF_F000, 0x40_0000] {
                assert_eq!(translate(&m, root, format, gpa), Some((1 << 30) + gpa), "{gpa:#x}");
            }
            assert_eq!(set_page_present(&mut m, root, format, page, true), Ok(true));
            assert_eq!(translate(&m, root, format, page + 0x10), Some((1 << 30) + page + 0x10));
            // The split leaves keep the memory type (EPT) and a 4 KiB leaf has no large bit.
            let pdpt = m.read(root, 0) & ADDR_MASK;
            let pd = m.read(pdpt, 0) & ADDR_MASK;
            assert_ne!(m.read(pd, 2) & (1 << 7), 0, "a split 1 GiB leaf gives 2 MiB leaves");
            let pt = m.read(pd, 1) & ADDR_MASK;
            assert_eq!(m.read(pt, 5), format.leaf((1 << 30) + page, false, 6));
            assert_eq!(m.tables, 4, "root, PDPT, the PD and the PT from the splits");
            assert_eq!(set_page_present(&mut m, root, format, 2 << 30, false), Ok(false), "not mapped");
        }
    }

    #[test]
    fn encodings_follow_the_manuals() {
        let npt_leaf = NestedFormat::Npt.leaf(0x20_0000, true, 6);
        assert_eq!(npt_leaf & 0xFFF, npt::PRESENT | npt::WRITE | npt::USER | npt::LARGE_PAGE);
        let ept_leaf = NestedFormat::Ept.leaf(0x20_0000, true, 6);
        assert_eq!(ept_leaf & 0xFFF, 0b111 | (6 << 3) | (1 << 7));
        let ept_small = NestedFormat::Ept.leaf(0x3000, false, 6);
        assert_eq!(ept_small & 0xFFF, 0b111 | (6 << 3));
        assert_eq!(NestedFormat::Ept.leaf(0x3000, false, 0) & 0x38, 0, "UC");
        assert_eq!(NestedFormat::Ept.table_entry(0x5000), 0x5007);
        assert_eq!(NestedFormat::Npt.table_entry(0x5000), 0x5007);
    }
}
