//! The host's memory-type range registers (SDM Vol. 3A 12.11). EPT leaves carry a memory type
//! that replaces the MTRRs for guest accesses (SDM 29.3.7), so Basalt gives each leaf the type
//! the MTRRs give its host-physical range, and splits a leaf whose range is not of one type.
//! (NPT needs none of this: the CPU still applies the host MTRRs under it, APM 15.25.8.)

use alloc::vec::Vec;

/// Memory types (SDM Table 12-8).
pub mod memtype {
    pub const UC: u8 = 0;
    pub const WC: u8 = 1;
    pub const WT: u8 = 4;
    pub const WP: u8 = 5;
    pub const WB: u8 = 6;
}

const IA32_MTRRCAP: u32 = 0xFE;
const IA32_MTRR_DEF_TYPE: u32 = 0x2FF;
const IA32_MTRR_PHYSBASE0: u32 = 0x200;
/// Fixed-range MSRs in address order, with the size each of their 8 byte fields covers.
const FIXED: [(u32, u64, u64); 11] = [
    (0x250, 0x00000, 0x10000),
    (0x258, 0x80000, 0x4000),
    (0x259, 0xA0000, 0x4000),
    (0x268, 0xC0000, 0x1000),
    (0x269, 0xC8000, 0x1000),
    (0x26A, 0xD0000, 0x1000),
    (0x26B, 0xD8000, 0x1000),
    (0x26C, 0xE0000, 0x1000),
    (0x26D, 0xE8000, 0x1000),
    (0x26E, 0xF0000, 0x1000),
    (0x26F, 0xF8000, 0x1000),
];

/// One variable-range MTRR: addresses `a` with `a & mask == base & mask` have type `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VariableRange {
    pub base: u64,
    pub mask: u64,
    pub kind: u8,
}

/// A snapshot of the MTRRs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mtrrs {
    /// IA32_MTRR_DEF_TYPE.E: when clear, all memory is UC.
    pub enabled: bool,
    /// IA32_MTRR_DEF_TYPE.FE: the fixed ranges cover the first 1 MiB.
    pub fixed_enabled: bool,
    pub default_type: u8,
    /// The type of each fixed-range sub-range, in address order (88 of them).
    pub fixed: Vec<(u64, u64, u8)>,
    pub variable: Vec<VariableRange>,
}

impl Mtrrs {
    /// Read this CPU's MTRRs (CPUID.1:EDX.MTRR must be set, as it is on every x86_64 CPU).
    pub fn read() -> Mtrrs {
        // SAFETY: the MTRR MSRs exist on every CPU that reports MTRR in CPUID; their count and
        // the fixed-range support come from IA32_MTRRCAP.
        unsafe {
            let cap = crate::io::rdmsr(IA32_MTRRCAP);
            let def = crate::io::rdmsr(IA32_MTRR_DEF_TYPE);
            let mut fixed = Vec::new();
            if cap & (1 << 8) != 0 {
                for (msr, start, size) in FIXED {
                    let v = crate::io::rdmsr(msr);
                    for i in 0..8 {
                        fixed.push((start + i * size, size, (v >> (8 * i)) as u8));
                    }
                }
            }
            let mut variable = Vec::new();
            for n in 0..(cap & 0xFF) as u32 {
                let base = crate::io::rdmsr(IA32_MTRR_PHYSBASE0 + 2 * n);
                let mask = crate::io::rdmsr(IA32_MTRR_PHYSBASE0 + 2 * n + 1);
                if mask & (1 << 11) != 0 {
                    variable.push(VariableRange {
                        base: base & !0xFFF,
                        mask: mask & !0xFFF,
                        kind: base as u8,
                    });
                }
            }
            Mtrrs {
                enabled: def & (1 << 11) != 0,
                fixed_enabled: def & (1 << 10) != 0 && !fixed.is_empty(),
                default_type: def as u8,
                fixed,
                variable,
            }
        }
    }

    /// The memory type of one 4 KiB page (SDM 12.11.4.1 precedences: UC wins, WT beats WB,
    /// other overlaps are undefined and taken as UC).
    pub fn type_of_page(&self, addr: u64) -> u8 {
        if !self.enabled {
            return memtype::UC;
        }
        if self.fixed_enabled && addr < 0x10_0000 {
            if let Some(&(_, _, t)) = self.fixed.iter().find(|(s, len, _)| addr >= *s && addr < s + len) {
                return t;
            }
        }
        let mut found: Option<u8> = None;
        for r in self.variable.iter().filter(|r| addr & r.mask == r.base & r.mask) {
            found = Some(match (found, r.kind) {
                (None, k) => k,
                (Some(a), b) if a == b => a,
                (Some(memtype::UC), _) | (_, memtype::UC) => memtype::UC,
                (Some(memtype::WT), memtype::WB) | (Some(memtype::WB), memtype::WT) => memtype::WT,
                _ => memtype::UC,
            });
        }
        found.unwrap_or(self.default_type)
    }

    /// The memory type of `[addr, addr + len)` if it is one type throughout, else `None`.
    pub fn type_of_range(&self, addr: u64, len: u64) -> Option<u8> {
        let first = self.type_of_page(addr);
        // Type boundaries fall on 4 KiB pages; checking each page of a 1 GiB range would be slow,
        // so check the points where any MTRR could change: every page below 1 MiB (fixed
        // ranges), and for variable ranges, whether each range covers all, none or part of it.
        if addr < 0x10_0000 && self.fixed_enabled {
            let end = (addr + len).min(0x10_0000);
            if (addr..end).step_by(4096).any(|p| self.type_of_page(p) != first) {
                return None;
            }
        }
        for r in &self.variable {
            let covers = |a: u64| a & r.mask == r.base & r.mask;
            // A range whose size (lowest mask bit) is below `len` or that is not aligned to
            // this block may cover part of it: then only a page walk can tell.
            let size = 1u64 << r.mask.trailing_zeros().min(63);
            if size < len {
                let end = addr + len;
                let mut a = addr;
                while a < end {
                    if self.type_of_page(a) != first {
                        return None;
                    }
                    a += size.max(4096);
                }
            } else if covers(addr) != covers(addr + len - 1) {
                return None;
            }
        }
        Some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// What SeaBIOS/OVMF set up: WB by default, the 3-4 GiB PCI hole UC, legacy VGA UC.
    fn pc() -> Mtrrs {
        let mut fixed = Vec::new();
        for (_, start, size) in FIXED {
            for i in 0..8 {
                let a = start + i * size;
                let t = if (0xA0000..0xC0000).contains(&a) { memtype::UC } else { memtype::WB };
                fixed.push((a, size, t));
            }
        }
        Mtrrs {
            enabled: true,
            fixed_enabled: true,
            default_type: memtype::WB,
            fixed,
            variable: vec![VariableRange { base: 0xC000_0000, mask: 0xF_C000_0000, kind: memtype::UC }],
        }
    }

    #[test]
    fn page_types_follow_fixed_variable_and_default() {
        let m = pc();
        assert_eq!(m.type_of_page(0x1000), memtype::WB);
        assert_eq!(m.type_of_page(0xB8000), memtype::UC);
        assert_eq!(m.type_of_page(0x20_0000), memtype::WB);
        assert_eq!(m.type_of_page(0xFEE0_0000), memtype::UC);
        assert_eq!(m.type_of_page(0x1_0000_0000), memtype::WB);
        let off = Mtrrs { enabled: false, ..pc() };
        assert_eq!(off.type_of_page(0x20_0000), memtype::UC);
    }

    #[test]
    fn overlaps_follow_the_precedence_rules() {
        let mut m = pc();
        m.variable.push(VariableRange { base: 0, mask: 0xF_0000_0000, kind: memtype::WT });
        assert_eq!(m.type_of_page(0x20_0000), memtype::WT, "WT over the WB default");
        m.variable.push(VariableRange { base: 0, mask: 0xF_F000_0000, kind: memtype::WB });
        assert_eq!(m.type_of_page(0x20_0000), memtype::WT, "WT beats WB");
        m.variable.push(VariableRange { base: 0, mask: 0xF_FFE0_0000, kind: memtype::UC });
        assert_eq!(m.type_of_page(0x1000_0000), memtype::WT);
        assert_eq!(m.type_of_page(0x10_0000), memtype::UC, "UC beats everything");
    }

    #[test]
    fn ranges_of_one_type_and_mixed_ranges() {
        let m = pc();
        assert_eq!(m.type_of_range(0x4000_0000, 1 << 30), Some(memtype::WB));
        assert_eq!(m.type_of_range(0xC000_0000, 1 << 30), Some(memtype::UC));
        assert_eq!(m.type_of_range(0x8000_0000, 2 << 30), None, "WB then the UC hole");
        assert_eq!(m.type_of_range(0, 2 << 20), None, "legacy VGA inside the first 2 MiB");
        assert_eq!(m.type_of_range(0x20_0000, 2 << 20), Some(memtype::WB));
        let mut small = pc();
        small.variable.push(VariableRange { base: 0x4010_0000, mask: 0xF_FFFF_F000, kind: memtype::WC });
        assert_eq!(small.type_of_range(0x4000_0000, 2 << 20), None, "one WC page inside");
        assert_eq!(small.type_of_range(0x4010_0000, 4096), Some(memtype::WC));
    }
}
