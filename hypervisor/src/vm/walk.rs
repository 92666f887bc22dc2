//! The guest's own page tables, walked in software (SDM Vol. 3A 4.3-4.5): a guest-linear
//! address to a guest-physical one, for fetching the instruction behind an exit when the
//! hardware gives no length. Every table read goes through checked guest memory; a table
//! outside guest RAM, or a non-present entry, is an error, never a host access.
//!
//! Modes: paging off (linear = physical), 32-bit paging (4 KiB pages, 4 MiB pages with
//! CR4.PSE), PAE paging and 4-level paging (2 MiB and 1 GiB pages). 5-level paging is not
//! offered to guests (CPUID hides LA57).

use super::memory::GuestMemory;
use basalt_arch::virt::bits::{CR0_PE, CR0_PG, CR4_PAE, EFER_LMA};

const CR4_PSE: u64 = 1 << 4;
const PRESENT: u64 = 1;
const PAGE_SIZE_BIT: u64 = 1 << 7;
/// Physical-address bits of an entry (bits 51:12).
const ADDRESS: u64 = 0x000F_FFFF_FFFF_F000;

/// The registers that decide the paging mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PagingMode {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

/// Why a linear address has no guest-physical one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkError {
    /// An entry on the way is not present: a #PF for the guest (at this level, 1 = the PTE).
    NotPresent { level: u8 },
    /// A paging structure lies outside guest RAM.
    TableOutsideRam { gpa: u64 },
}

impl core::fmt::Display for WalkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WalkError::NotPresent { level } => write!(f, "not present at paging level {level}"),
            WalkError::TableOutsideRam { gpa } => {
                write!(f, "a paging structure at {gpa:#x} is outside guest RAM")
            }
        }
    }
}

/// The paging-structure entries one walk read: where, how wide, and what they held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Path {
    entries: [(u64, u64); 4],
    len: usize,
    wide: bool,
}

impl Path {
    fn entry(&mut self, mem: &GuestMemory, gpa: u64, wide: bool) -> Result<u64, WalkError> {
        let value = if wide { mem.read_u64(gpa) } else { mem.read_u32(gpa).map(u64::from) }
            .map_err(|_| WalkError::TableOutsideRam { gpa })?;
        self.entries[self.len] = (gpa, value);
        self.len += 1;
        self.wide = wide;
        Ok(value)
    }

    /// Whether every entry still holds what the walk read (then the walk would give the same
    /// result: it is a function of CR3, the mode and these entries alone).
    #[inline]
    fn unchanged(&self, mem: &GuestMemory) -> bool {
        let entries = &self.entries[..self.len.min(4)];
        if self.wide {
            entries.iter().all(|&(gpa, value)| mem.read_u64(gpa) == Ok(value))
        } else {
            entries.iter().all(|&(gpa, value)| mem.read_u32(gpa).map(u64::from) == Ok(value))
        }
    }
}

/// The guest-physical address of guest-linear `la` under `mode`.
pub fn translate(mem: &GuestMemory, mode: &PagingMode, la: u64) -> Result<u64, WalkError> {
    walk(mem, mode, la, &mut Path::default())
}

fn walk(mem: &GuestMemory, mode: &PagingMode, la: u64, path: &mut Path) -> Result<u64, WalkError> {
    let mut entry32 = |mem: &GuestMemory, gpa: u64| path.entry(mem, gpa, false);
    if mode.cr0 & CR0_PG == 0 || mode.cr0 & CR0_PE == 0 {
        return Ok(la & 0xFFFF_FFFF);
    }
    if mode.cr4 & CR4_PAE == 0 {
        // 32-bit paging: PD at CR3[31:12], 10 + 10 + 12 bits.
        let la = la & 0xFFFF_FFFF;
        let pde = entry32(mem, (mode.cr3 & 0xFFFF_F000) + ((la >> 22) << 2))?;
        if pde & PRESENT == 0 {
            return Err(WalkError::NotPresent { level: 2 });
        }
        if pde & PAGE_SIZE_BIT != 0 && mode.cr4 & CR4_PSE != 0 {
            // A 4 MiB page: bits 31:22 from the PDE, 39:32 from PDE bits 20:13.
            let high = ((pde >> 13) & 0xFF) << 32;
            return Ok(high | (pde & 0xFFC0_0000) | (la & 0x3F_FFFF));
        }
        let pte = entry32(mem, (pde & 0xFFFF_F000) + (((la >> 12) & 0x3FF) << 2))?;
        if pte & PRESENT == 0 {
            return Err(WalkError::NotPresent { level: 1 });
        }
        return Ok((pte & 0xFFFF_F000) | (la & 0xFFF));
    }
    let (mut table, levels) = if mode.efer & EFER_LMA != 0 {
        (mode.cr3 & ADDRESS, 4u8)
    } else {
        // PAE: four PDPTEs at CR3[31:5].
        let pdpte = path.entry(mem, (mode.cr3 & 0xFFFF_FFE0) + (((la >> 30) & 3) << 3), true)?;
        if pdpte & PRESENT == 0 {
            return Err(WalkError::NotPresent { level: 3 });
        }
        (pdpte & ADDRESS, 2u8)
    };
    for level in (1..=levels).rev() {
        let shift = 12 + 9 * (level as u32 - 1);
        let entry = path.entry(mem, table + (((la >> shift) & 0x1FF) << 3), true)?;
        if entry & PRESENT == 0 {
            return Err(WalkError::NotPresent { level });
        }
        // A large page at the PDPT (1 GiB) or PD (2 MiB) level.
        if (level == 2 || level == 3) && entry & PAGE_SIZE_BIT != 0 {
            let size = 1u64 << shift;
            return Ok((entry & ADDRESS & !(size - 1)) | (la & (size - 1)));
        }
        table = entry & ADDRESS;
    }
    Ok(table | (la & 0xFFF))
}

/// The last translation and the entries it came from. A hit needs the same mode and CR3, the
/// same linear page, and every entry of the walk unchanged in guest memory, so it is always
/// the answer a new walk would give (the guest's TLB flushes do not matter: nothing stale is
/// ever used). The exit path without NRIPS fetches the instruction at RIP through it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TranslationCache {
    last: Option<(PagingMode, u64, Path, u64)>,
}

impl TranslationCache {
    /// As [`translate`], reusing the last walk where it still holds.
    #[inline]
    pub fn translate(&mut self, mem: &GuestMemory, mode: &PagingMode, la: u64) -> Result<u64, WalkError> {
        if let Some((m, page, path, gpa_page)) = &self.last {
            if m == mode && *page == la >> 12 && path.unchanged(mem) {
                return Ok(gpa_page | (la & 0xFFF));
            }
        }
        let mut path = Path::default();
        let gpa = walk(mem, mode, la, &mut path)?;
        self.last = Some((*mode, la >> 12, path, gpa & !0xFFF));
        Ok(gpa)
    }
}

/// Read up to `buf.len()` bytes at guest-linear `la`, page by page. Returns how many bytes
/// could be read (fewer if a later page is not mapped), or the error for the first page.
pub fn read_linear(
    mem: &GuestMemory,
    mode: &PagingMode,
    la: u64,
    buf: &mut [u8],
) -> Result<usize, WalkError> {
    let mut done = 0;
    while done < buf.len() {
        let at = la.wrapping_add(done as u64);
        let gpa = match translate(mem, mode, at) {
            Ok(gpa) => gpa,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        let n = ((0x1000 - (at & 0xFFF)) as usize).min(buf.len() - done);
        match mem.read(gpa, &mut buf[done..done + n]) {
            Ok(()) => done += n,
            Err(_) if done == 0 => return Err(WalkError::TableOutsideRam { gpa }),
            Err(_) => break,
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::memory::tests::host_backed;
    use alloc::vec;
    use basalt_arch::virt::bits::{CR0_PE, EFER_LME};

    const LONG: PagingMode =
        PagingMode { cr0: CR0_PE | CR0_PG, cr3: 0x1000, cr4: CR4_PAE, efer: EFER_LME | EFER_LMA };

    #[test]
    fn paging_off_is_identity() {
        let mut ram = vec![0u8; 0x10000];
        let m = host_backed(&mut ram, 0);
        let real = PagingMode::default();
        assert_eq!(translate(&m, &real, 0x1234), Ok(0x1234));
    }

    #[test]
    fn four_level_with_4k_2m_and_1g_pages() {
        let mut ram = vec![0u8; 0x10000];
        let m = host_backed(&mut ram, 0);
        // PML4[0] -> PDPT 0x2000; PDPT[0] -> PD 0x3000; PDPT[1] = 1 GiB page at 0x4000_0000.
        m.write_u64(0x1000, 0x2000 | 3).unwrap();
        m.write_u64(0x2000, 0x3000 | 3).unwrap();
        m.write_u64(0x2008, 0x4000_0000 | 0x83).unwrap();
        // PD[0] -> PT 0x4000; PD[1] = 2 MiB page at 0x60_0000.
        m.write_u64(0x3000, 0x4000 | 3).unwrap();
        m.write_u64(0x3008, 0x60_0000 | 0x83).unwrap();
        // PT[5] -> 0x9000; PT[6] not present.
        m.write_u64(0x4000 + 5 * 8, 0x9000 | 3).unwrap();
        assert_eq!(translate(&m, &LONG, 0x5123), Ok(0x9123));
        assert_eq!(translate(&m, &LONG, 0x6000), Err(WalkError::NotPresent { level: 1 }));
        assert_eq!(translate(&m, &LONG, 0x20_1234), Ok(0x60_1234));
        assert_eq!(translate(&m, &LONG, 0x4123_4567), Ok(0x4123_4567));
        assert_eq!(translate(&m, &LONG, 0x80_0000_0000), Err(WalkError::NotPresent { level: 4 }));
        // A table outside RAM is refused, not read.
        m.write_u64(0x3010, 0xFFFF_0000 | 3).unwrap();
        assert_eq!(translate(&m, &LONG, 0x40_0000), Err(WalkError::TableOutsideRam { gpa: 0xFFFF_0000 }));
    }

    #[test]
    fn thirty_two_bit_and_pae() {
        let mut ram = vec![0u8; 0x10000];
        let m = host_backed(&mut ram, 0);
        let pg32 = PagingMode { cr0: CR0_PE | CR0_PG, cr3: 0x1000, cr4: CR4_PSE, efer: 0 };
        // PD[1] = 4 MiB page at 0x80_0000; PD[0] -> PT 0x2000, PT[3] -> 0x7000.
        m.write(0x1004, &(0x80_0000u32 | 0x83).to_le_bytes()).unwrap();
        m.write(0x1000, &(0x2000u32 | 3).to_le_bytes()).unwrap();
        m.write(0x200C, &(0x7000u32 | 3).to_le_bytes()).unwrap();
        assert_eq!(translate(&m, &pg32, 0x40_1234), Ok(0x80_1234));
        assert_eq!(translate(&m, &pg32, 0x3456), Ok(0x7456));
        let pae = PagingMode { cr0: CR0_PE | CR0_PG, cr3: 0x3000, cr4: CR4_PAE, efer: 0 };
        // PDPTE[0] -> PD 0x4000; PD[0] -> PT 0x5000; PT[1] -> 0x8000; PD[1] = 2 MiB at 0x20_0000.
        m.write_u64(0x3000, 0x4000 | 1).unwrap();
        m.write_u64(0x4000, 0x5000 | 3).unwrap();
        m.write_u64(0x4008, 0x20_0000 | 0x83).unwrap();
        m.write_u64(0x5008, 0x8000 | 3).unwrap();
        assert_eq!(translate(&m, &pae, 0x1ABC), Ok(0x8ABC));
        assert_eq!(translate(&m, &pae, 0x20_0010), Ok(0x20_0010));
        assert_eq!(translate(&m, &pae, 0x4000_0000), Err(WalkError::NotPresent { level: 3 }));
    }

    #[test]
    fn the_cache_answers_like_a_walk_and_notices_changed_entries() {
        let mut ram = vec![0u8; 0x10000];
        let m = host_backed(&mut ram, 0);
        m.write_u64(0x1000, 0x2000 | 3).unwrap();
        m.write_u64(0x2000, 0x3000 | 3).unwrap();
        m.write_u64(0x3000, 0x4000 | 3).unwrap();
        m.write_u64(0x4000 + 8, 0x9000 | 3).unwrap();
        let mut cache = TranslationCache::default();
        assert_eq!(cache.translate(&m, &LONG, 0x1010), Ok(0x9010));
        assert_eq!(cache.translate(&m, &LONG, 0x1020), Ok(0x9020), "a hit");
        // The guest remaps the page (no TLB flush seen by Basalt): the cache must follow.
        m.write_u64(0x4000 + 8, 0xA000 | 3).unwrap();
        assert_eq!(cache.translate(&m, &LONG, 0x1020), Ok(0xA020));
        // An upper-level entry changes: also noticed.
        m.write_u64(0x3000, 0x5000 | 3).unwrap();
        m.write_u64(0x5000 + 8, 0xB000 | 3).unwrap();
        assert_eq!(cache.translate(&m, &LONG, 0x1020), Ok(0xB020));
        // Another CR3 or mode is another walk.
        let other = PagingMode { cr3: 0x6000, ..LONG };
        assert_eq!(cache.translate(&m, &other, 0x1020), Err(WalkError::NotPresent { level: 4 }));
        assert_eq!(cache.translate(&m, &PagingMode::default(), 0x1020), Ok(0x1020));
    }

    #[test]
    fn reads_across_a_page_boundary_stop_at_an_unmapped_page() {
        let mut ram = vec![0u8; 0x10000];
        let m = host_backed(&mut ram, 0);
        m.write_u64(0x1000, 0x2000 | 3).unwrap();
        m.write_u64(0x2000, 0x3000 | 3).unwrap();
        m.write_u64(0x3000, 0x4000 | 3).unwrap();
        m.write_u64(0x4000, 0x9000 | 3).unwrap(); // page 0 -> 0x9000, page 1 not present
        m.write(0x9FFE, &[0xAA, 0xBB]).unwrap();
        let mut buf = [0u8; 15];
        assert_eq!(read_linear(&m, &LONG, 0xFFE, &mut buf), Ok(2));
        assert_eq!(&buf[..2], &[0xAA, 0xBB]);
        assert_eq!(read_linear(&m, &LONG, 0x1000, &mut buf), Err(WalkError::NotPresent { level: 1 }));
    }
}
