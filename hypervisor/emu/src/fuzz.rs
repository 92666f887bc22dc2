//! A deterministic fuzzer for the emulator, reusable from a test (bounded, runs in CI on
//! stable) and from a cargo-fuzz harness ([`check_input`] takes the fuzzer's bytes).
//!
//! [`generate`] draws instruction bytes biased toward the supported opcodes and prefixes, a
//! code size, registers and flags; [`FuzzMachine`] is a fake guest whose memory is a small
//! ring of bytes and whose pages fault by a per-case mask. [`check`] runs one case and checks
//! the invariants the exit handler relies on: no panic (by construction), RIP advances by
//! the instruction length exactly on completion and stays on any error, nothing at all
//! changes on an undecodable or unsupported instruction, RFLAGS changes only in the status
//! flags and RF, every access is 1, 2, 4 or 8 bytes at an address valid for the mode, and
//! accesses are bounded by the iterations run.

use crate::exec::next_rip;
use crate::flags::{RF, STATUS};
use crate::{
    emulate, emulate_string_io, CodeSize, Emulated, Error, Fault, Gpr, Machine, Segment,
    REP_ITERATIONS_PER_CALL,
};

/// xorshift64* (Vigna, "An experimental exploration of Marsaglia's xorshift generators"):
/// tiny, deterministic, good enough to drive a fuzzer.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (0 is replaced, xorshift must not start at 0).
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64().checked_rem(n).unwrap_or(0)
    }

    /// True with probability 1/`n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    fn pick(&mut self, from: &[u8]) -> u8 {
        let i = self.below(from.len() as u64) as usize;
        from.get(i).copied().unwrap_or(0x90)
    }
}

/// A fake guest: registers, segment bases, a 256-byte memory ring (address modulo 256),
/// and faults on every 4 KiB page whose number modulo 64 is set in `fault_pages` (writes
/// also on those set in `read_only_pages`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuzzMachine {
    /// RAX..R15.
    pub regs: [u64; 16],
    /// RIP.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// ES, CS, SS, DS, FS, GS bases.
    pub bases: [u64; 6],
    /// The memory ring.
    pub mem: [u8; 256],
    /// Faulting pages (page number modulo 64).
    pub fault_pages: u64,
    /// Pages that fault on writes only (read-only pages, or a device that refuses writes).
    pub read_only_pages: u64,
    /// The code size, to check the addresses the emulator produces.
    pub code: CodeSize,
    /// Accesses made.
    pub accesses: u64,
    /// The first broken invariant seen by an access.
    pub violation: Option<Violation>,
}

impl FuzzMachine {
    fn access(&mut self, linear: u64, len: usize, write: bool) -> Result<(), Fault> {
        self.accesses = self.accesses.wrapping_add(1);
        if !matches!(len, 1 | 2 | 4 | 8) {
            self.violation = self.violation.or(Some(Violation::AccessSize));
        }
        let valid = match self.code {
            CodeSize::Bits64 => {
                let sign = (linear as i64).wrapping_shr(47);
                sign == 0 || sign == -1
            }
            CodeSize::Bits16 | CodeSize::Bits32 => linear <= u64::from(u32::MAX),
        };
        if !valid {
            self.violation = self.violation.or(Some(Violation::LinearAddress));
        }
        let first = linear >> 12;
        let last = linear.wrapping_add(len as u64).wrapping_sub(1) >> 12;
        let faulting = if write { self.fault_pages | self.read_only_pages } else { self.fault_pages };
        for page in [first, last] {
            if faulting & 1u64.wrapping_shl((page & 63) as u32) != 0 {
                return Err(if page & 64 != 0 {
                    Fault::GeneralProtection(0)
                } else {
                    Fault::PageFault { address: linear, error_code: u32::from(write) << 1 }
                });
            }
        }
        Ok(())
    }
}

impl Machine for FuzzMachine {
    fn gpr(&self, reg: Gpr) -> u64 {
        self.regs.get(reg.index()).copied().unwrap_or(0)
    }
    fn set_gpr(&mut self, reg: Gpr, value: u64) {
        if let Some(r) = self.regs.get_mut(reg.index()) {
            *r = value;
        }
    }
    fn rip(&self) -> u64 {
        self.rip
    }
    fn set_rip(&mut self, rip: u64) {
        self.rip = rip;
    }
    fn rflags(&self) -> u64 {
        self.rflags
    }
    fn set_rflags(&mut self, rflags: u64) {
        self.rflags = rflags;
    }
    fn segment_base(&self, seg: Segment) -> u64 {
        self.bases.get(seg.index()).copied().unwrap_or(0)
    }
    fn read(&mut self, linear: u64, buf: &mut [u8]) -> Result<(), Fault> {
        self.access(linear, buf.len(), false)?;
        for (i, b) in buf.iter_mut().enumerate() {
            let a = linear.wrapping_add(i as u64) as u8;
            *b = self.mem.get(usize::from(a)).copied().unwrap_or(0);
        }
        Ok(())
    }
    fn write(&mut self, linear: u64, data: &[u8]) -> Result<(), Fault> {
        self.access(linear, data.len(), true)?;
        for (i, b) in data.iter().enumerate() {
            let a = linear.wrapping_add(i as u64) as u8;
            if let Some(m) = self.mem.get_mut(usize::from(a)) {
                *m = *b;
            }
        }
        Ok(())
    }
}

/// One fuzz case.
#[derive(Clone, Debug)]
pub struct Case {
    /// Instruction bytes; only the first `len` are passed.
    pub bytes: [u8; 15],
    /// How many of `bytes` the emulator sees (0-15).
    pub len: u8,
    /// The code size.
    pub code: CodeSize,
    /// Whether to go through [`emulate_string_io`] (else [`emulate`]).
    pub string_io: bool,
    /// The initial guest.
    pub machine: FuzzMachine,
}

/// An invariant [`check`] found broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// An access of a size other than 1, 2, 4 or 8 bytes.
    AccessSize,
    /// A linear address outside the mode's range (non-canonical, or above 4 GiB outside
    /// 64-bit mode).
    LinearAddress,
    /// The reported length is 0, above 15 or beyond the bytes given.
    Length,
    /// RIP is not the next instruction after completion, or moved otherwise.
    Rip,
    /// RFLAGS changed outside the status flags and RF, or changed on an error.
    Flags,
    /// State changed for an instruction that was not executed.
    ChangedWithoutExecuting,
    /// More accesses than the iterations explain.
    Accesses,
    /// An unfinished REP that did not run the per-call bound.
    Iterations,
}

const PREFIXES: [u8; 11] = [0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65];
const OPCODES: [u8; 60] = [
    0x88, 0x89, 0x8a, 0x8b, 0xa0, 0xa1, 0xa2, 0xa3, 0xc6, 0xc7, 0xb0, 0xb8, 0xbc, 0x00, 0x01, 0x02, 0x03,
    0x04, 0x05, 0x08, 0x09, 0x0b, 0x10, 0x11, 0x18, 0x19, 0x20, 0x21, 0x28, 0x29, 0x30, 0x31, 0x38, 0x39,
    0x3d, 0x80, 0x81, 0x83, 0x84, 0x85, 0x86, 0x87, 0x91, 0xf6, 0xf7, 0xfe, 0xff, 0x63, 0xa4, 0xa5, 0xaa,
    0xab, 0xac, 0xad, 0x6c, 0x6d, 0x6e, 0x6f, 0x0f, 0x8c,
];
const OPCODES_0F: [u8; 14] =
    [0xb6, 0xb7, 0xbe, 0xbf, 0xa3, 0xab, 0xb3, 0xbb, 0xba, 0xb0, 0xb1, 0xa2, 0xc1, 0x20];

/// A register value: small addresses, values near a wrap, or anything.
fn value(rng: &mut XorShift) -> u64 {
    match rng.below(6) {
        0 => rng.below(0x4000),
        1 => 0xffff_u64.wrapping_sub(rng.below(16)),
        2 => 0xffff_ffff_u64.wrapping_sub(rng.below(16)),
        3 => u64::MAX.wrapping_sub(rng.below(16)),
        4 => 0x7fff_ffff_ffff_u64.wrapping_sub(rng.below(16)),
        _ => rng.next_u64(),
    }
}

/// Draws one case.
pub fn generate(rng: &mut XorShift) -> Case {
    let code = match rng.below(4) {
        0 => CodeSize::Bits16,
        1 => CodeSize::Bits32,
        _ => CodeSize::Bits64,
    };
    let mut bytes = [0u8; 15];
    let mut n = 0usize;
    let mut push = |bytes: &mut [u8; 15], b: u8| {
        if let Some(slot) = bytes.get_mut(n) {
            *slot = b;
            n = n.wrapping_add(1);
        }
    };
    for _ in 0..rng.below(4) {
        let p = rng.pick(&PREFIXES);
        push(&mut bytes, p);
    }
    if code == CodeSize::Bits64 && rng.one_in(2) {
        let rex = 0x40 | rng.below(16) as u8;
        push(&mut bytes, rex);
    }
    if rng.one_in(16) {
        let b = rng.byte();
        push(&mut bytes, b);
    } else {
        let op = rng.pick(&OPCODES);
        push(&mut bytes, op);
        if op == 0x0f {
            let op2 = rng.pick(&OPCODES_0F);
            push(&mut bytes, op2);
        }
    }
    // ModRM (often with a memory operand), SIB, displacement and immediate: random tails.
    let modrm = if rng.one_in(4) { rng.byte() } else { rng.byte() & 0xbf };
    push(&mut bytes, modrm);
    for _ in 0..15 {
        let b = if rng.one_in(3) { 0 } else { rng.byte() };
        push(&mut bytes, b);
    }
    let len = if rng.one_in(8) { rng.below(16) as u8 } else { 15 };

    let mut regs = [0u64; 16];
    for r in regs.iter_mut() {
        *r = value(rng);
    }
    if let Some(rcx) = regs.get_mut(Gpr::Rcx.index()) {
        if !rng.one_in(16) {
            *rcx = (*rcx & !0xffff_ffff) | rng.below(6);
        }
    }
    let mut bases = [0u64; 6];
    for b in bases.iter_mut() {
        *b = if rng.one_in(2) { 0 } else { value(rng) };
    }
    if code != CodeSize::Bits64 {
        for b in bases.iter_mut() {
            *b &= 0xffff_ffff;
        }
    }
    let mut mem = [0u8; 256];
    for b in mem.iter_mut() {
        *b = rng.byte();
    }
    let rip = match code {
        CodeSize::Bits16 => value(rng) & 0xffff,
        CodeSize::Bits32 => value(rng) & 0xffff_ffff,
        CodeSize::Bits64 => value(rng),
    };
    let machine = FuzzMachine {
        regs,
        rip,
        rflags: 0x2 | (rng.next_u64() & (STATUS | crate::flags::DF | RF)),
        bases,
        mem,
        fault_pages: if rng.one_in(2) { 0 } else { rng.next_u64() & rng.next_u64() },
        read_only_pages: if rng.one_in(2) { 0 } else { rng.next_u64() },
        code,
        accesses: 0,
        violation: None,
    };
    Case { bytes, len, code, string_io: rng.one_in(2), machine }
}

/// A case from arbitrary bytes (a cargo-fuzz input): the first 15 bytes are the
/// instruction, the rest seed the generator for the machine, mode and length.
pub fn case_from_input(data: &[u8]) -> Case {
    let mut seed = 0xcbf2_9ce4_8422_2325u64; // FNV-1a
    for b in data.get(15..).unwrap_or(&[]) {
        seed = (seed ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut case = generate(&mut XorShift::new(seed));
    let head = data.get(..15).unwrap_or(data);
    case.bytes = [0; 15];
    for (slot, b) in case.bytes.iter_mut().zip(head) {
        *slot = *b;
    }
    case.len = head.len() as u8;
    case
}

/// Runs one case and checks the invariants; returns the emulator's result.
pub fn check(case: &Case) -> Result<Result<Emulated, Error>, Violation> {
    let init = &case.machine;
    let mut m = init.clone();
    let bytes = case.bytes.get(..usize::from(case.len)).unwrap_or(&case.bytes);
    let mut port_reads = 0u32;
    let result = if case.string_io {
        emulate_string_io(
            &mut m,
            bytes,
            case.code,
            &mut |port: u16, size: u8, write: bool, value: &mut u32| {
                if !matches!(size, 1 | 2 | 4) {
                    port_reads = u32::MAX;
                }
                if !write {
                    port_reads = port_reads.wrapping_add(1);
                    *value = u32::from(port).wrapping_mul(0x9e37_79b9) ^ port_reads;
                }
            },
        )
    } else {
        emulate(&mut m, bytes, case.code)
    };
    if let Some(v) = m.violation {
        return Err(v);
    }
    if port_reads == u32::MAX {
        return Err(Violation::AccessSize);
    }
    match result {
        Ok(done) => {
            if done.length == 0 || done.length > 15 || usize::from(done.length) > bytes.len() {
                return Err(Violation::Length);
            }
            let want = if done.finished { next_rip(init.rip, done.length, case.code) } else { init.rip };
            if m.rip != want {
                return Err(Violation::Rip);
            }
            if !done.finished && done.iterations != REP_ITERATIONS_PER_CALL {
                return Err(Violation::Iterations);
            }
            if (m.rflags ^ init.rflags) & !(STATUS | RF) != 0 {
                return Err(Violation::Flags);
            }
            if m.accesses > done.iterations.max(1).saturating_mul(2) {
                return Err(Violation::Accesses);
            }
        }
        Err(Error::Fault(_)) => {
            if m.rip != init.rip {
                return Err(Violation::Rip);
            }
            if m.rflags != init.rflags {
                return Err(Violation::Flags);
            }
        }
        Err(Error::Invalid | Error::Truncated | Error::Unsupported(_)) => {
            if m.rip != init.rip {
                return Err(Violation::Rip);
            }
            if m.regs != init.regs || m.rflags != init.rflags || m.mem != init.mem || m.accesses != 0 {
                return Err(Violation::ChangedWithoutExecuting);
            }
        }
    }
    Ok(result)
}

/// The cargo-fuzz entry point: [`check`] on [`case_from_input`]; `Err` is a bug.
pub fn check_input(data: &[u8]) -> Result<(), Violation> {
    check(&case_from_input(data)).map(|_| ())
}
