//! The MSRs Basalt keeps in software for a guest, with the architectural checks on writes
//! (SDM Vol. 3A 11.11 MTRRs, 11.12 PAT, 15.3 machine check; Vol. 4 Table 2-2): a guest can
//! program them and reads back what it wrote; a reserved bit or an invalid memory type is
//! #GP. Pure, so the rules are host-tested. (The memory types are reported, not applied: guest
//! memory is write-back under EPT/NPT, from the host's MTRRs.)

pub const IA32_MTRRCAP: u32 = 0xFE;
pub const IA32_MCG_CAP: u32 = 0x179;
pub const IA32_MCG_STATUS: u32 = 0x17A;
pub const IA32_MISC_ENABLE: u32 = 0x1A0;
pub const IA32_MTRR_PHYSBASE0: u32 = 0x200;
pub const IA32_MTRR_PHYSMASK7: u32 = 0x20F;
pub const IA32_PAT: u32 = 0x277;
pub const IA32_MTRR_DEF_TYPE: u32 = 0x2FF;
/// The fixed-range MTRRs: 64K_00000, 16K_80000, 16K_A0000, 4K_C0000 .. 4K_F8000.
pub const FIXED_MTRRS: [u32; 11] =
    [0x250, 0x258, 0x259, 0x268, 0x269, 0x26A, 0x26B, 0x26C, 0x26D, 0x26E, 0x26F];
/// Variable-range MTRR pairs offered.
pub const VARIABLE_MTRRS: usize = 8;
/// IA32_MTRRCAP: 8 variable ranges, fixed ranges, write combining; no SMRR.
pub const MTRRCAP: u64 = VARIABLE_MTRRS as u64 | (1 << 8) | (1 << 10);
/// The PAT at reset (WB, WT, UC-, UC, twice).
pub const PAT_RESET: u64 = 0x0007_0406_0007_0406;
/// IA32_MISC_ENABLE: fast strings (bit 0) on, the only bit a guest may change.
pub const MISC_ENABLE_RESET: u64 = 1;

/// Why a write is refused: the guest gets #GP(0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved;

/// A valid MTRR memory type: UC 0, WC 1, WT 4, WP 5, WB 6 (SDM Table 11-8).
fn mtrr_type(t: u64) -> bool {
    matches!(t, 0 | 1 | 4 | 5 | 6)
}

/// A valid PAT entry: UC 0, WC 1, WT 4, WP 5, WB 6, UC- 7 (SDM Table 11-10).
fn pat_type(t: u64) -> bool {
    matches!(t, 0 | 1 | 4 | 5 | 6 | 7)
}

fn bytes_valid(value: u64, valid: fn(u64) -> bool) -> bool {
    (0..8).all(|i| valid((value >> (i * 8)) & 0xFF))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestMsrs {
    pub pat: u64,
    pub mtrr_def_type: u64,
    pub mtrr_fixed: [u64; 11],
    pub mtrr_var: [(u64, u64); VARIABLE_MTRRS],
    pub misc_enable: u64,
    /// Bits of a physical address the guest may name (CPUID 8000_0008h EAX[7:0]).
    pub phys_bits: u8,
}

impl GuestMsrs {
    /// Every MSR at its reset value (MTRRs disabled, SDM 11.11.2.1).
    pub fn new(phys_bits: u8) -> Self {
        GuestMsrs {
            pat: PAT_RESET,
            mtrr_def_type: 0,
            mtrr_fixed: [0; 11],
            mtrr_var: [(0, 0); VARIABLE_MTRRS],
            misc_enable: MISC_ENABLE_RESET,
            phys_bits: phys_bits.clamp(36, 52),
        }
    }

    fn above_phys(&self) -> u64 {
        !((1u64 << self.phys_bits) - 1)
    }

    /// The value of `msr`, or `None` if this table does not hold it.
    pub fn read(&self, msr: u32) -> Option<u64> {
        Some(match msr {
            IA32_MTRRCAP => MTRRCAP,
            IA32_MCG_CAP | IA32_MCG_STATUS => 0,
            IA32_MISC_ENABLE => self.misc_enable,
            IA32_PAT => self.pat,
            IA32_MTRR_DEF_TYPE => self.mtrr_def_type,
            IA32_MTRR_PHYSBASE0..=IA32_MTRR_PHYSMASK7 => {
                let (base, mask) = self.mtrr_var[((msr - IA32_MTRR_PHYSBASE0) / 2) as usize];
                if msr.is_multiple_of(2) {
                    base
                } else {
                    mask
                }
            }
            _ => self.mtrr_fixed[FIXED_MTRRS.iter().position(|&m| m == msr)?],
        })
    }

    /// Whether this table holds `msr`.
    pub fn holds(&self, msr: u32) -> bool {
        self.read(msr).is_some()
    }

    /// Write `msr` with the architectural checks: `Err` is #GP(0) for the guest.
    pub fn write(&mut self, msr: u32, value: u64) -> Result<(), Reserved> {
        let ok = match msr {
            IA32_MTRRCAP | IA32_MCG_CAP => false,
            IA32_MCG_STATUS => value == 0,
            IA32_MISC_ENABLE => value & !1 == self.misc_enable & !1,
            IA32_PAT => bytes_valid(value, pat_type),
            // Type in bits 7:0, FE bit 10, E bit 11 (SDM Figure 11-7).
            IA32_MTRR_DEF_TYPE => value & !0xCFF == 0 && mtrr_type(value & 0xFF),
            IA32_MTRR_PHYSBASE0..=IA32_MTRR_PHYSMASK7 => {
                if msr.is_multiple_of(2) {
                    // Type in 7:0, reserved 11:8 and above MAXPHYADDR (Figure 11-8).
                    mtrr_type(value & 0xFF) && value & 0xF00 == 0 && value & self.above_phys() == 0
                } else {
                    // Valid bit 11, reserved 10:0 and above MAXPHYADDR.
                    value & 0x7FF == 0 && value & self.above_phys() == 0
                }
            }
            _ if FIXED_MTRRS.contains(&msr) => bytes_valid(value, mtrr_type),
            _ => false,
        };
        if !ok {
            return Err(Reserved);
        }
        match msr {
            IA32_MCG_STATUS => {}
            IA32_MISC_ENABLE => self.misc_enable = value,
            IA32_PAT => self.pat = value,
            IA32_MTRR_DEF_TYPE => self.mtrr_def_type = value,
            IA32_MTRR_PHYSBASE0..=IA32_MTRR_PHYSMASK7 => {
                let pair = &mut self.mtrr_var[((msr - IA32_MTRR_PHYSBASE0) / 2) as usize];
                if msr.is_multiple_of(2) {
                    pair.0 = value
                } else {
                    pair.1 = value
                }
            }
            _ => {
                if let Some(i) = FIXED_MTRRS.iter().position(|&m| m == msr) {
                    self.mtrr_fixed[i] = value;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_values_and_round_trips() {
        let mut m = GuestMsrs::new(39);
        assert_eq!(m.read(IA32_PAT), Some(PAT_RESET));
        assert_eq!(m.read(IA32_MTRRCAP), Some(0x508));
        assert_eq!(m.read(IA32_MTRR_DEF_TYPE), Some(0));
        assert_eq!(m.read(0x1234), None);
        m.write(IA32_MTRR_DEF_TYPE, 0xC06).unwrap();
        m.write(0x200, 0x8000_0000 | 6).unwrap();
        m.write(0x201, 0x7F_C000_0000 | 0x800).unwrap();
        m.write(0x250, 0x0606_0606_0606_0606).unwrap();
        m.write(IA32_PAT, 0x0007_0406_0007_0106).unwrap();
        assert_eq!(m.read(IA32_MTRR_DEF_TYPE), Some(0xC06));
        assert_eq!(m.read(0x200), Some(0x8000_0006));
        assert_eq!(m.read(0x201), Some(0x7F_C000_0800));
        assert_eq!(m.read(0x250), Some(0x0606_0606_0606_0606));
        assert_eq!(m.read(IA32_PAT), Some(0x0007_0406_0007_0106));
    }

    #[test]
    fn reserved_bits_and_invalid_types_are_refused() {
        let mut m = GuestMsrs::new(39);
        for (msr, value) in [
            (IA32_MTRRCAP, 0),
            (IA32_MCG_CAP, 1),
            (IA32_MCG_STATUS, 1),
            (IA32_MISC_ENABLE, 1 << 22),
            (IA32_PAT, 0x0007_0406_0007_0402), // type 2 is reserved
            (IA32_MTRR_DEF_TYPE, 0x1006),      // bit 12 reserved
            (IA32_MTRR_DEF_TYPE, 0x803),       // type 3 reserved
            (0x200, 0x100 | 6),                // reserved bit 8
            (0x200, (1 << 39) | 6),            // above MAXPHYADDR
            (0x201, 0x801),                    // reserved bit 0
            (0x268, 0x0606_0606_0606_0602),    // type 2 in a fixed range
        ] {
            assert_eq!(m.write(msr, value), Err(Reserved), "{msr:#x} <- {value:#x}");
        }
        assert_eq!(m.read(IA32_PAT), Some(PAT_RESET), "a refused write changes nothing");
        assert_eq!(m.write(IA32_MISC_ENABLE, 0), Ok(()), "fast strings may be turned off");
        assert_eq!(m.write(IA32_MCG_STATUS, 0), Ok(()));
    }
}
