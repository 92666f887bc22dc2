//! Decode one instruction and execute it against a [`Machine`].

use iced_x86::{
    Code, Decoder, DecoderError, DecoderOptions, Instruction, MemorySize, Mnemonic, OpKind, Register,
};

use crate::flags::{self, Width, CF, DF, RF, STATUS};
use crate::{
    Access, CodeSize, Emulated, Error, Fault, Gpr, Machine, PortIo, Segment, REP_ITERATIONS_PER_CALL,
};

/// Which bits of a 64-bit GPR an instruction names (SDM Vol. 1 3.4.1.1, Figure 3-5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    /// AL, CL, .., SPL, .., R15L: bits 7:0.
    Low8,
    /// AH, CH, DH, BH: bits 15:8 (only without REX).
    High8,
    Word,
    Dword,
    Qword,
}

#[derive(Clone, Copy, Debug)]
struct GprRef {
    gpr: Gpr,
    part: Part,
}

impl GprRef {
    fn width(self) -> Width {
        match self.part {
            Part::Low8 | Part::High8 => Width::Byte,
            Part::Word => Width::Word,
            Part::Dword => Width::Dword,
            Part::Qword => Width::Qword,
        }
    }

    /// The accumulator (AL/AX/EAX/RAX), or any other register, named at width `w`.
    fn sized(gpr: Gpr, w: Width) -> GprRef {
        let part = match w {
            Width::Byte => Part::Low8,
            Width::Word => Part::Word,
            Width::Dword => Part::Dword,
            Width::Qword => Part::Qword,
        };
        GprRef { gpr, part }
    }
}

/// Maps an iced-x86 register to a GPR and its part; `None` for every other register
/// (segment, control, debug, vector, RIP).
fn gpr_ref(reg: Register) -> Option<GprRef> {
    let n = reg as u32;
    let offset = |first: Register, last: Register| -> Option<usize> {
        let (first, last) = (first as u32, last as u32);
        (first..=last).contains(&n).then(|| n.wrapping_sub(first) as usize)
    };
    if let Some(i) = offset(Register::AL, Register::R15L) {
        // AL CL DL BL AH CH DH BH SPL BPL SIL DIL R8L .. R15L
        return match i {
            0..=3 => Some(GprRef { gpr: Gpr::from_index(i)?, part: Part::Low8 }),
            4..=7 => Some(GprRef { gpr: Gpr::from_index(i.wrapping_sub(4))?, part: Part::High8 }),
            _ => Some(GprRef { gpr: Gpr::from_index(i.wrapping_sub(4))?, part: Part::Low8 }),
        };
    }
    if let Some(i) = offset(Register::AX, Register::R15W) {
        return Some(GprRef { gpr: Gpr::from_index(i)?, part: Part::Word });
    }
    if let Some(i) = offset(Register::EAX, Register::R15D) {
        return Some(GprRef { gpr: Gpr::from_index(i)?, part: Part::Dword });
    }
    if let Some(i) = offset(Register::RAX, Register::R15) {
        return Some(GprRef { gpr: Gpr::from_index(i)?, part: Part::Qword });
    }
    None
}

fn read_reg<M: Machine + ?Sized>(m: &M, r: GprRef) -> u64 {
    let v = m.gpr(r.gpr);
    match r.part {
        Part::Low8 => v & 0xff,
        Part::High8 => (v >> 8) & 0xff,
        Part::Word => v & 0xffff,
        Part::Dword => v & 0xffff_ffff,
        Part::Qword => v,
    }
}

/// Writes a register part: 8- and 16-bit writes merge, 32-bit writes zero-extend to 64 bits
/// (SDM Vol. 1 3.4.1.1).
fn write_reg<M: Machine + ?Sized>(m: &mut M, r: GprRef, value: u64) {
    let old = m.gpr(r.gpr);
    let new = match r.part {
        Part::Low8 => (old & !0xff) | (value & 0xff),
        Part::High8 => (old & !0xff00) | ((value & 0xff) << 8),
        Part::Word => (old & !0xffff) | (value & 0xffff),
        Part::Dword => value & 0xffff_ffff,
        Part::Qword => value,
    };
    m.set_gpr(r.gpr, new);
}

fn segment(reg: Register) -> Option<Segment> {
    match reg {
        Register::ES => Some(Segment::Es),
        Register::CS => Some(Segment::Cs),
        Register::SS => Some(Segment::Ss),
        Register::DS => Some(Segment::Ds),
        Register::FS => Some(Segment::Fs),
        Register::GS => Some(Segment::Gs),
        _ => None,
    }
}

/// A memory operand: segment, effective address (already reduced to the address size) and
/// the address size (SDM Vol. 1 3.7.5, Vol. 2 2.1.5).
#[derive(Clone, Copy, Debug)]
struct Mem {
    seg: Segment,
    offset: u64,
    addr: Width,
}

#[derive(Clone, Copy, Debug)]
enum Operand {
    Reg(GprRef),
    Mem(Mem),
    Imm(u64),
}

/// Everything one execution needs besides the instruction.
struct Cpu<'a, M: Machine + ?Sized> {
    m: &'a mut M,
    code: CodeSize,
    instr: &'a Instruction,
}

fn canonical(address: u64, la57: bool) -> bool {
    let unused: u32 = if la57 { 64 - 57 } else { 64 - 48 };
    ((address.wrapping_shl(unused) as i64).wrapping_shr(unused) as u64) == address
}

impl<M: Machine + ?Sized> Cpu<'_, M> {
    fn unsupported(&self) -> Error {
        Error::Unsupported(self.instr.mnemonic())
    }

    /// Segment base + effective address (SDM Vol. 3 3.4). In 64-bit mode only FS and GS have
    /// a base and the address must be canonical at both ends (#SS(0) for SS, #GP(0)
    /// otherwise, SDM Vol. 1 3.3.7.1); outside it the segment check is the machine's and
    /// linear addresses wrap at 4 GiB.
    fn linear(&mut self, mem: Mem, len: usize, access: Access) -> Result<u64, Fault> {
        match self.code {
            CodeSize::Bits64 => {
                let base = match mem.seg {
                    Segment::Fs | Segment::Gs => self.m.segment_base(mem.seg),
                    _ => 0,
                };
                let first = base.wrapping_add(mem.offset);
                let last = first.wrapping_add(len as u64).wrapping_sub(1);
                let la57 = self.m.la57();
                if canonical(first, la57) && canonical(last, la57) {
                    Ok(first)
                } else if mem.seg == Segment::Ss {
                    Err(Fault::StackSegment(0))
                } else {
                    Err(Fault::GeneralProtection(0))
                }
            }
            CodeSize::Bits16 | CodeSize::Bits32 => {
                self.m.check_segment(mem.seg, mem.offset, len, access)?;
                Ok(self.m.segment_base(mem.seg).wrapping_add(mem.offset) & 0xffff_ffff)
            }
        }
    }

    fn read_mem(&mut self, mem: Mem, w: Width) -> Result<u64, Error> {
        let linear = self.linear(mem, w.bytes(), Access::Read)?;
        let mut buf = [0u8; 8];
        let bytes = buf.get_mut(..w.bytes()).ok_or(Error::Invalid)?;
        self.m.read(linear, bytes)?;
        Ok(u64::from_le_bytes(buf))
    }

    fn write_mem(&mut self, mem: Mem, w: Width, value: u64) -> Result<(), Error> {
        let linear = self.linear(mem, w.bytes(), Access::Write)?;
        let buf = value.to_le_bytes();
        let bytes = buf.get(..w.bytes()).ok_or(Error::Invalid)?;
        self.m.write(linear, bytes)?;
        Ok(())
    }

    /// The effective address of the instruction's ModRM or moffs memory operand (SDM Vol. 2
    /// 2.1.5, Tables 2-1 to 2-3): base + index * scale + displacement, reduced to the address
    /// size, which follows from the registers used (or the displacement size for moffs and
    /// disp-only forms). iced-x86 already folded RIP/EIP-relative addresses into the
    /// displacement (the decoder's IP is the guest RIP).
    fn effective_address(&self) -> Result<Mem, Error> {
        let i = self.instr;
        let mut offset = i.memory_displacement64();
        let mut addr = None;
        match i.memory_base() {
            Register::None => {}
            Register::RIP => addr = Some(Width::Qword),
            Register::EIP => addr = Some(Width::Dword),
            base => {
                let base = gpr_ref(base).ok_or_else(|| self.unsupported())?;
                addr = Some(base.width());
                offset = offset.wrapping_add(read_reg(self.m, base));
            }
        }
        if i.memory_index() != Register::None {
            let index = gpr_ref(i.memory_index()).ok_or_else(|| self.unsupported())?;
            addr = addr.or(Some(index.width()));
            let scaled = read_reg(self.m, index).wrapping_mul(u64::from(i.memory_index_scale()));
            offset = offset.wrapping_add(scaled);
        }
        let addr = match addr {
            Some(w) => w,
            None => match i.memory_displ_size() {
                2 => Width::Word,
                4 => Width::Dword,
                8 => Width::Qword,
                _ => self.code_width(),
            },
        };
        let seg = segment(i.memory_segment()).ok_or_else(|| self.unsupported())?;
        Ok(Mem { seg, offset: offset & addr.mask(), addr })
    }

    fn code_width(&self) -> Width {
        match self.code {
            CodeSize::Bits16 => Width::Word,
            CodeSize::Bits32 => Width::Dword,
            CodeSize::Bits64 => Width::Qword,
        }
    }

    fn operand(&self, n: u32) -> Result<Operand, Error> {
        if n >= self.instr.op_count() {
            return Err(self.unsupported());
        }
        match self.instr.op_kind(n) {
            OpKind::Register => {
                gpr_ref(self.instr.op_register(n)).map(Operand::Reg).ok_or_else(|| self.unsupported())
            }
            OpKind::Memory => self.effective_address().map(Operand::Mem),
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64 => {
                self.instr.try_immediate(n).map(Operand::Imm).map_err(|_| Error::Invalid)
            }
            _ => Err(self.unsupported()),
        }
    }

    /// The width of the instruction's memory operand (SDM Vol. 2 3.1.1.3 "m8" .. "m64").
    fn memory_width(&self) -> Result<Width, Error> {
        match self.instr.memory_size() {
            MemorySize::UInt8 | MemorySize::Int8 => Ok(Width::Byte),
            MemorySize::UInt16 | MemorySize::Int16 => Ok(Width::Word),
            MemorySize::UInt32 | MemorySize::Int32 => Ok(Width::Dword),
            MemorySize::UInt64 | MemorySize::Int64 => Ok(Width::Qword),
            _ => Err(self.unsupported()),
        }
    }

    fn width(&self, op: Operand) -> Result<Width, Error> {
        match op {
            Operand::Reg(r) => Ok(r.width()),
            Operand::Mem(_) => self.memory_width(),
            Operand::Imm(_) => Err(self.unsupported()),
        }
    }

    fn read(&mut self, op: Operand, w: Width) -> Result<u64, Error> {
        match op {
            Operand::Reg(r) => Ok(read_reg(self.m, r) & w.mask()),
            Operand::Mem(mem) => self.read_mem(mem, w),
            Operand::Imm(v) => Ok(v & w.mask()),
        }
    }

    fn write(&mut self, op: Operand, w: Width, value: u64) -> Result<(), Error> {
        match op {
            Operand::Reg(r) => {
                write_reg(self.m, r, value);
                Ok(())
            }
            Operand::Mem(mem) => self.write_mem(mem, w, value),
            Operand::Imm(_) => Err(self.unsupported()),
        }
    }

    /// Replaces the RFLAGS bits in `mask` with those of `value`.
    fn set_flags(&mut self, mask: u64, value: u64) {
        let old = self.m.rflags();
        self.m.set_rflags((old & !mask) | (value & mask));
    }

    /// MOV (SDM Vol. 2 "MOV"): every GPR and memory form, immediates and moffs. Flags
    /// unaffected.
    fn mov(&mut self) -> Result<(), Error> {
        let dst = self.operand(0)?;
        let src = self.operand(1)?;
        let w = self.width(dst)?;
        let v = self.read(src, w)?;
        self.write(dst, w, v)
    }

    /// MOVZX, MOVSX, MOVSXD (SDM Vol. 2): the source is read at its own width and extended
    /// to the destination's. Flags unaffected.
    fn extend(&mut self, signed: bool) -> Result<(), Error> {
        let dst = self.operand(0)?;
        let src = self.operand(1)?;
        let dw = self.width(dst)?;
        let sw = self.width(src)?;
        let v = self.read(src, sw)?;
        let v = if signed { sw.sign_extend(v) } else { v };
        self.write(dst, dw, v & dw.mask())
    }

    /// ADD, ADC, SUB, SBB, CMP, AND, OR, XOR, TEST (SDM Vol. 2 for each): all six status
    /// flags written; CMP and TEST write no operand.
    fn alu(&mut self, mnemonic: Mnemonic) -> Result<(), Error> {
        let dst = self.operand(0)?;
        let src = self.operand(1)?;
        let w = self.width(dst)?;
        let a = self.read(dst, w)?;
        let b = self.read(src, w)?;
        let carry = self.m.rflags() & CF != 0;
        let (result, f) = match mnemonic {
            Mnemonic::Add => flags::add(a, b, false, w),
            Mnemonic::Adc => flags::add(a, b, carry, w),
            Mnemonic::Sub | Mnemonic::Cmp => flags::sub(a, b, false, w),
            Mnemonic::Sbb => flags::sub(a, b, carry, w),
            Mnemonic::And | Mnemonic::Test => (a & b, flags::logic(a & b, w)),
            Mnemonic::Or => (a | b, flags::logic(a | b, w)),
            Mnemonic::Xor => (a ^ b, flags::logic(a ^ b, w)),
            _ => return Err(self.unsupported()),
        };
        if !matches!(mnemonic, Mnemonic::Cmp | Mnemonic::Test) {
            self.write(dst, w, result)?;
        }
        self.set_flags(STATUS, f);
        Ok(())
    }

    /// INC, DEC (CF unaffected), NEG (CF = source != 0), NOT (no flags) (SDM Vol. 2).
    fn unary(&mut self, mnemonic: Mnemonic) -> Result<(), Error> {
        let dst = self.operand(0)?;
        let w = self.width(dst)?;
        let a = self.read(dst, w)?;
        let (result, mask, f) = match mnemonic {
            Mnemonic::Inc => {
                let (r, f) = flags::add(a, 1, false, w);
                (r, STATUS & !CF, f)
            }
            Mnemonic::Dec => {
                let (r, f) = flags::sub(a, 1, false, w);
                (r, STATUS & !CF, f)
            }
            Mnemonic::Neg => {
                let (r, f) = flags::sub(0, a, false, w);
                (r, STATUS, f)
            }
            Mnemonic::Not => (!a & w.mask(), 0, 0),
            _ => return Err(self.unsupported()),
        };
        self.write(dst, w, result)?;
        self.set_flags(mask, f);
        Ok(())
    }

    /// XCHG (SDM Vol. 2): the memory side is written first, so a fault leaves the register.
    fn xchg(&mut self) -> Result<(), Error> {
        let a_op = self.operand(0)?;
        let b_op = self.operand(1)?;
        let w = self.width(a_op)?;
        let a = self.read(a_op, w)?;
        let b = self.read(b_op, w)?;
        if matches!(b_op, Operand::Mem(_)) {
            self.write(b_op, w, a)?;
            self.write(a_op, w, b)
        } else {
            self.write(a_op, w, b)?;
            self.write(b_op, w, a)
        }
    }

    /// CMPXCHG (SDM Vol. 2): compares the accumulator with the destination; equal: ZF = 1
    /// and DEST = SRC; not equal: ZF = 0 and the accumulator = DEST, and DEST is written back
    /// with its own value (the SDM's write cycle, as Linux KVM does). Flags as CMP.
    fn cmpxchg(&mut self) -> Result<(), Error> {
        let dst = self.operand(0)?;
        let src = self.operand(1)?;
        let w = self.width(dst)?;
        let acc = Operand::Reg(GprRef::sized(Gpr::Rax, w));
        let d = self.read(dst, w)?;
        let s = self.read(src, w)?;
        let a = self.read(acc, w)?;
        let (_, f) = flags::sub(a, d, false, w);
        if a == d {
            self.write(dst, w, s)?;
        } else {
            self.write(dst, w, d)?;
            self.write(acc, w, d)?;
        }
        self.set_flags(STATUS, f);
        Ok(())
    }

    /// BT, BTS, BTR, BTC (SDM Vol. 2 "BT"): CF = the selected bit. An immediate offset, or
    /// any offset into a register, is taken modulo the operand size; a register offset into
    /// memory is a signed bit string index that can address beyond the operand: the access is
    /// at EA + size * (offset DIV bits), reduced to the address size. OF, SF, AF, PF
    /// (undefined) and ZF are left unchanged.
    fn bit_test(&mut self, mnemonic: Mnemonic) -> Result<(), Error> {
        let dst = self.operand(0)?;
        let off = self.operand(1)?;
        let w = self.width(dst)?;
        let bits = w.bits();
        let (target, bit) = match (dst, off) {
            (_, Operand::Imm(v)) => (dst, (v as u32) & bits.wrapping_sub(1)),
            (Operand::Reg(_), Operand::Reg(r)) => (dst, (read_reg(self.m, r) as u32) & bits.wrapping_sub(1)),
            (Operand::Mem(mem), Operand::Reg(r)) => {
                let index = w.sign_extend(read_reg(self.m, r)) as i64;
                let element = index.wrapping_shr(bits.trailing_zeros());
                let displacement = (element as u64).wrapping_mul(w.bytes() as u64);
                let mem = Mem { offset: mem.offset.wrapping_add(displacement) & mem.addr.mask(), ..mem };
                (Operand::Mem(mem), (index as u32) & bits.wrapping_sub(1))
            }
            _ => return Err(self.unsupported()),
        };
        let v = self.read(target, w)?;
        let mask = 1u64.wrapping_shl(bit);
        let new = match mnemonic {
            Mnemonic::Bt => None,
            Mnemonic::Bts => Some(v | mask),
            Mnemonic::Btr => Some(v & !mask),
            Mnemonic::Btc => Some(v ^ mask),
            _ => return Err(self.unsupported()),
        };
        if let Some(new) = new {
            self.write(target, w, new)?;
        }
        self.set_flags(CF, if v & mask != 0 { CF } else { 0 });
        Ok(())
    }

    /// The string instructions (SDM Vol. 2 "MOVS", "STOS", "LODS", "INS", "OUTS", and
    /// "REP/REPE/REPZ/REPNE/REPNZ"; Vol. 1 7.3.9): one element per iteration at DS:rSI
    /// (segment overridable) and/or ES:rDI, rSI/rDI stepping by the element size, down when
    /// DF = 1, in the address size (16-bit wraps at 64 KiB; 32-bit zero-extends into the
    /// 64-bit register). With REP (F3, or F2 which acts the same on these), rCX counts down
    /// and the instruction ends when it reaches 0 (no iteration at all when it starts at 0).
    ///
    /// Runs at most [`REP_ITERATIONS_PER_CALL`] iterations; returns (iterations, finished).
    /// Registers always reflect the completed iterations, also when an iteration faults.
    fn string(
        &mut self,
        op: StringOp,
        w: Width,
        ports: Option<&mut dyn PortIo>,
    ) -> Result<(u64, bool), Error> {
        let addr = match (self.instr.op_kind(0), self.instr.op_kind(1)) {
            (OpKind::MemorySegSI | OpKind::MemoryESDI, _) | (_, OpKind::MemorySegSI | OpKind::MemoryESDI) => {
                Width::Word
            }
            (OpKind::MemorySegESI | OpKind::MemoryESEDI, _)
            | (_, OpKind::MemorySegESI | OpKind::MemoryESEDI) => Width::Dword,
            (OpKind::MemorySegRSI | OpKind::MemoryESRDI, _)
            | (_, OpKind::MemorySegRSI | OpKind::MemoryESRDI) => Width::Qword,
            _ => return Err(self.unsupported()),
        };
        let mut ports = match (op, ports) {
            (StringOp::Ins | StringOp::Outs, None) => return Err(self.unsupported()),
            (_, ports) => ports,
        };
        let (uses_si, uses_di) = match op {
            StringOp::Movs => (true, true),
            StringOp::Stos | StringOp::Ins => (false, true),
            StringOp::Lods | StringOp::Outs => (true, false),
        };
        let src_seg = if uses_si {
            segment(self.instr.memory_segment()).ok_or_else(|| self.unsupported())?
        } else {
            Segment::Ds
        };
        let rep = self.instr.has_rep_prefix() || self.instr.has_repne_prefix();
        let step =
            if self.m.rflags() & DF != 0 { (w.bytes() as u64).wrapping_neg() } else { w.bytes() as u64 };
        let (si_reg, di_reg, cx_reg) =
            (GprRef::sized(Gpr::Rsi, addr), GprRef::sized(Gpr::Rdi, addr), GprRef::sized(Gpr::Rcx, addr));
        let acc = GprRef::sized(Gpr::Rax, w);
        let port = (self.m.gpr(Gpr::Rdx) & 0xffff) as u16;
        let (mut si, mut di, mut cx) =
            (read_reg(self.m, si_reg), read_reg(self.m, di_reg), read_reg(self.m, cx_reg));
        let mut done: u64 = 0;
        let outcome = loop {
            if rep {
                if cx == 0 {
                    break Ok(true);
                }
                if done >= REP_ITERATIONS_PER_CALL {
                    break Ok(false);
                }
            } else if done == 1 {
                break Ok(true);
            }
            let src = Mem { seg: src_seg, offset: si, addr };
            let dst = Mem { seg: Segment::Es, offset: di, addr };
            let element = match op {
                StringOp::Movs => self.read_mem(src, w).and_then(|v| self.write_mem(dst, w, v)),
                StringOp::Stos => self.write_mem(dst, w, read_reg(self.m, acc)),
                StringOp::Lods => self.read_mem(src, w).map(|v| write_reg(self.m, acc, v)),
                StringOp::Ins => match ports {
                    Some(ref mut p) => self.ins(dst, w, port, &mut **p),
                    None => Err(self.unsupported()),
                },
                StringOp::Outs => match ports {
                    Some(ref mut p) => self.outs(src, w, port, &mut **p),
                    None => Err(self.unsupported()),
                },
            };
            if let Err(e) = element {
                break Err(e);
            }
            si = si.wrapping_add(step) & addr.mask();
            di = di.wrapping_add(step) & addr.mask();
            cx = cx.wrapping_sub(1) & addr.mask();
            done = done.wrapping_add(1);
        };
        if done > 0 {
            if uses_si {
                write_reg(self.m, si_reg, si);
            }
            if uses_di {
                write_reg(self.m, di_reg, di);
            }
            if rep {
                write_reg(self.m, cx_reg, cx);
            }
        }
        outcome.map(|finished| (done, finished))
    }

    /// One INS element: the destination is probed before the port is read, so that a fault
    /// does not swallow device data.
    fn ins(&mut self, dst: Mem, w: Width, port: u16, ports: &mut dyn PortIo) -> Result<(), Error> {
        let linear = self.linear(dst, w.bytes(), Access::Write)?;
        self.m.probe(linear, w.bytes(), Access::Write)?;
        let mut value = 0u32;
        ports.port_io(port, w.bytes() as u8, false, &mut value);
        self.write_mem(dst, w, u64::from(value) & w.mask())
    }

    /// One OUTS element.
    fn outs(&mut self, src: Mem, w: Width, port: u16, ports: &mut dyn PortIo) -> Result<(), Error> {
        let mut value = self.read_mem(src, w)? as u32;
        ports.port_io(port, w.bytes() as u8, true, &mut value);
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StringOp {
    Movs,
    Stos,
    Lods,
    Ins,
    Outs,
}

fn string_op(code: Code) -> Option<(StringOp, Width)> {
    Some(match code {
        Code::Movsb_m8_m8 => (StringOp::Movs, Width::Byte),
        Code::Movsw_m16_m16 => (StringOp::Movs, Width::Word),
        Code::Movsd_m32_m32 => (StringOp::Movs, Width::Dword),
        Code::Movsq_m64_m64 => (StringOp::Movs, Width::Qword),
        Code::Stosb_m8_AL => (StringOp::Stos, Width::Byte),
        Code::Stosw_m16_AX => (StringOp::Stos, Width::Word),
        Code::Stosd_m32_EAX => (StringOp::Stos, Width::Dword),
        Code::Stosq_m64_RAX => (StringOp::Stos, Width::Qword),
        Code::Lodsb_AL_m8 => (StringOp::Lods, Width::Byte),
        Code::Lodsw_AX_m16 => (StringOp::Lods, Width::Word),
        Code::Lodsd_EAX_m32 => (StringOp::Lods, Width::Dword),
        Code::Lodsq_RAX_m64 => (StringOp::Lods, Width::Qword),
        Code::Insb_m8_DX => (StringOp::Ins, Width::Byte),
        Code::Insw_m16_DX => (StringOp::Ins, Width::Word),
        Code::Insd_m32_DX => (StringOp::Ins, Width::Dword),
        Code::Outsb_DX_m8 => (StringOp::Outs, Width::Byte),
        Code::Outsw_DX_m16 => (StringOp::Outs, Width::Word),
        Code::Outsd_DX_m32 => (StringOp::Outs, Width::Dword),
        _ => return None,
    })
}

/// The RIP after an instruction of `length` bytes: IP and EIP wrap in 16- and 32-bit code
/// (SDM Vol. 1 3.5).
pub(crate) fn next_rip(rip: u64, length: u8, code: CodeSize) -> u64 {
    let next = rip.wrapping_add(u64::from(length));
    match code {
        CodeSize::Bits16 => next & 0xffff,
        CodeSize::Bits32 => next & 0xffff_ffff,
        CodeSize::Bits64 => next,
    }
}

pub(crate) fn run<M: Machine + ?Sized>(
    m: &mut M,
    bytes: &[u8],
    code: CodeSize,
    ports: Option<&mut dyn PortIo>,
) -> Result<Emulated, Error> {
    let rip = m.rip();
    let mut decoder =
        Decoder::try_with_ip(code.bits(), bytes, rip, DecoderOptions::NONE).map_err(|_| Error::Invalid)?;
    let instr = decoder.decode();
    if instr.is_invalid() {
        return Err(match decoder.last_error() {
            DecoderError::NoMoreBytes => Error::Truncated,
            _ => Error::Invalid,
        });
    }
    let length = u8::try_from(instr.len()).map_err(|_| Error::Invalid)?;
    let mnemonic = instr.mnemonic();
    let mut cpu = Cpu { m: &mut *m, code, instr: &instr };
    let (iterations, finished) = if let Some((op, w)) = string_op(instr.code()) {
        cpu.string(op, w, ports)?
    } else {
        match mnemonic {
            Mnemonic::Mov => cpu.mov()?,
            Mnemonic::Movzx => cpu.extend(false)?,
            Mnemonic::Movsx | Mnemonic::Movsxd => cpu.extend(true)?,
            Mnemonic::Add
            | Mnemonic::Adc
            | Mnemonic::Sub
            | Mnemonic::Sbb
            | Mnemonic::Cmp
            | Mnemonic::And
            | Mnemonic::Or
            | Mnemonic::Xor
            | Mnemonic::Test => cpu.alu(mnemonic)?,
            Mnemonic::Inc | Mnemonic::Dec | Mnemonic::Neg | Mnemonic::Not => cpu.unary(mnemonic)?,
            Mnemonic::Bt | Mnemonic::Bts | Mnemonic::Btr | Mnemonic::Btc => cpu.bit_test(mnemonic)?,
            Mnemonic::Xchg => cpu.xchg()?,
            Mnemonic::Cmpxchg => cpu.cmpxchg()?,
            _ => return Err(Error::Unsupported(mnemonic)),
        }
        (1, true)
    };
    if finished {
        m.set_rip(next_rip(rip, length, code));
        let rflags = m.rflags();
        if rflags & RF != 0 {
            m.set_rflags(rflags & !RF);
        }
    }
    Ok(Emulated { length, mnemonic, finished, iterations })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    /// Every iced-x86 GPR maps to the register and part it names, relying on no particular
    /// numbering beyond the AL..R15L, AX..R15W, EAX..R15D, RAX..R15 runs.
    #[test]
    fn every_gpr_maps() {
        let low8 = [
            Register::AL,
            Register::CL,
            Register::DL,
            Register::BL,
            Register::SPL,
            Register::BPL,
            Register::SIL,
            Register::DIL,
            Register::R8L,
            Register::R9L,
            Register::R10L,
            Register::R11L,
            Register::R12L,
            Register::R13L,
            Register::R14L,
            Register::R15L,
        ];
        for (i, r) in low8.iter().enumerate() {
            let g = gpr_ref(*r).unwrap();
            assert_eq!((g.gpr.index(), g.part), (i, Part::Low8), "{r:?}");
        }
        for (i, r) in [Register::AH, Register::CH, Register::DH, Register::BH].iter().enumerate() {
            let g = gpr_ref(*r).unwrap();
            assert_eq!((g.gpr.index(), g.part), (i, Part::High8), "{r:?}");
        }
        let runs = [(Register::AX, Part::Word), (Register::EAX, Part::Dword), (Register::RAX, Part::Qword)];
        for (first, part) in runs {
            for i in 0..16u32 {
                let g = gpr_ref(first + i).unwrap();
                assert_eq!((g.gpr.index(), g.part), (i as usize, part));
            }
        }
        assert_eq!(gpr_ref(Register::R15W).unwrap().gpr, Gpr::R15);
        for r in [Register::None, Register::RIP, Register::EIP, Register::ES, Register::CR0, Register::XMM0] {
            assert!(gpr_ref(r).is_none(), "{r:?}");
        }
    }

    #[test]
    fn canonical_boundaries() {
        assert!(canonical(0x0000_7fff_ffff_ffff, false));
        assert!(!canonical(0x0000_8000_0000_0000, false));
        assert!(canonical(0xffff_8000_0000_0000, false));
        assert!(canonical(0x00ff_ffff_ffff_ffff, true));
        assert!(!canonical(0x0100_0000_0000_0000, true));
    }
}
