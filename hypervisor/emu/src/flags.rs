//! RFLAGS arithmetic (SDM Vol. 1 3.4.3.1, Appendix A "EFLAGS Cross-Reference").

/// Carry flag.
pub const CF: u64 = 1 << 0;
/// Parity flag: set when the low byte of the result has an even number of 1 bits.
pub const PF: u64 = 1 << 2;
/// Auxiliary carry flag: carry or borrow out of bit 3.
pub const AF: u64 = 1 << 4;
/// Zero flag.
pub const ZF: u64 = 1 << 6;
/// Sign flag.
pub const SF: u64 = 1 << 7;
/// Direction flag (SDM Vol. 1 3.4.3.2).
pub const DF: u64 = 1 << 10;
/// Overflow flag.
pub const OF: u64 = 1 << 11;
/// Resume flag (SDM Vol. 3 18.3.1.1), cleared when an instruction completes.
pub const RF: u64 = 1 << 16;
/// The six status flags the arithmetic instructions write.
pub const STATUS: u64 = CF | PF | AF | ZF | SF | OF;

/// An operand width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    Byte,
    Word,
    Dword,
    Qword,
}

impl Width {
    pub fn bytes(self) -> usize {
        match self {
            Width::Byte => 1,
            Width::Word => 2,
            Width::Dword => 4,
            Width::Qword => 8,
        }
    }

    pub fn bits(self) -> u32 {
        match self {
            Width::Byte => 8,
            Width::Word => 16,
            Width::Dword => 32,
            Width::Qword => 64,
        }
    }

    pub fn mask(self) -> u64 {
        match self {
            Width::Byte => 0xff,
            Width::Word => 0xffff,
            Width::Dword => 0xffff_ffff,
            Width::Qword => u64::MAX,
        }
    }

    pub fn sign_bit(self) -> u64 {
        match self {
            Width::Byte => 1 << 7,
            Width::Word => 1 << 15,
            Width::Dword => 1 << 31,
            Width::Qword => 1 << 63,
        }
    }

    /// `value` truncated to this width, then sign-extended to 64 bits.
    pub fn sign_extend(self, value: u64) -> u64 {
        match self {
            Width::Byte => value as u8 as i8 as i64 as u64,
            Width::Word => value as u16 as i16 as i64 as u64,
            Width::Dword => value as u32 as i32 as i64 as u64,
            Width::Qword => value,
        }
    }
}

/// ZF, SF and PF of a result of width `w`.
pub fn zsp(result: u64, w: Width) -> u64 {
    let r = result & w.mask();
    let mut f = 0;
    if r == 0 {
        f |= ZF;
    }
    if r & w.sign_bit() != 0 {
        f |= SF;
    }
    if (r as u8).count_ones() & 1 == 0 {
        f |= PF;
    }
    f
}

/// `a + b + carry` (ADD, ADC, INC): result and all six status flags (SDM Vol. 2 "ADD").
pub fn add(a: u64, b: u64, carry: bool, w: Width) -> (u64, u64) {
    let m = w.mask();
    let (a, b) = (a & m, b & m);
    let wide = u128::from(a).wrapping_add(u128::from(b)).wrapping_add(u128::from(carry));
    let r = (wide as u64) & m;
    let mut f = zsp(r, w);
    if wide > u128::from(m) {
        f |= CF;
    }
    if (a ^ r) & (b ^ r) & w.sign_bit() != 0 {
        f |= OF;
    }
    if (a ^ b ^ r) & 0x10 != 0 {
        f |= AF;
    }
    (r, f)
}

/// `a - b - borrow` (SUB, SBB, CMP, DEC, NEG): result and all six status flags (SDM Vol. 2
/// "SUB"; CF is the borrow into the top bit).
pub fn sub(a: u64, b: u64, borrow: bool, w: Width) -> (u64, u64) {
    let m = w.mask();
    let (a, b) = (a & m, b & m);
    let r = a.wrapping_sub(b).wrapping_sub(u64::from(borrow)) & m;
    let mut f = zsp(r, w);
    if u128::from(a) < u128::from(b).wrapping_add(u128::from(borrow)) {
        f |= CF;
    }
    if (a ^ b) & (a ^ r) & w.sign_bit() != 0 {
        f |= OF;
    }
    if (a ^ b ^ r) & 0x10 != 0 {
        f |= AF;
    }
    (r, f)
}

/// Flags of AND, OR, XOR and TEST (SDM Vol. 2 "AND"): CF and OF cleared, ZF/SF/PF from the
/// result, AF (undefined) cleared.
pub fn logic(result: u64, w: Width) -> u64 {
    zsp(result, w)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 8-bit ADD/SUB flags against a direct definition, for every operand pair.
    #[test]
    fn byte_add_sub_exhaustive() {
        for a in 0..=255u64 {
            for b in 0..=255u64 {
                for carry in [false, true] {
                    let c = u64::from(carry);
                    let (r, f) = add(a, b, carry, Width::Byte);
                    let sum = a + b + c;
                    let signed = i64::from(a as u8 as i8) + i64::from(b as u8 as i8) + c as i64;
                    assert_eq!(r, sum & 0xff);
                    assert_eq!(f & CF != 0, sum > 0xff);
                    assert_eq!(f & OF != 0, !(-128..=127).contains(&signed));
                    assert_eq!(f & AF != 0, (a & 0xf) + (b & 0xf) + c > 0xf);
                    assert_eq!(f & ZF != 0, r == 0);
                    assert_eq!(f & SF != 0, r & 0x80 != 0);
                    assert_eq!(f & PF != 0, r.count_ones() % 2 == 0);

                    let (r, f) = sub(a, b, carry, Width::Byte);
                    let signed = i64::from(a as u8 as i8) - i64::from(b as u8 as i8) - c as i64;
                    assert_eq!(r, a.wrapping_sub(b).wrapping_sub(c) & 0xff);
                    assert_eq!(f & CF != 0, a < b + c);
                    assert_eq!(f & OF != 0, !(-128..=127).contains(&signed));
                    assert_eq!(f & AF != 0, (a & 0xf) < (b & 0xf) + c);
                    assert_eq!(f & ZF != 0, r == 0);
                }
            }
        }
    }
}
