//! The x86 instruction emulator Basalt runs when a guest touches an emulated MMIO range or
//! executes a string port I/O instruction (INS/OUTS).
//!
//! One call decodes one instruction with iced-x86 (the caller fetched the bytes) and executes
//! it against a [`Machine`]: a callout trait for the guest's registers, segment bases and its
//! guest-linear memory. The caller translates linear addresses (its own page walk, which
//! produces #PF with CR2 and the error code) and routes each access to RAM or to a device.
//! There is no hardware access and no `unsafe` here; every input, however malformed, ends in
//! a value: the crate denies indexing, unchecked arithmetic, `unwrap` and `panic!`.
//!
//! # Contract
//! - On `Ok`, the instruction has retired: registers, RFLAGS and memory are updated and RIP
//!   moved past it (masked to the code size, SDM Vol. 1 3.5), unless [`Emulated::finished`] is
//!   false (a REP string instruction stopped after [`REP_ITERATIONS_PER_CALL`] iterations:
//!   RIP still points at it, exactly as after an interrupt between iterations, SDM Vol. 2
//!   "REP/REPE/REPZ/REPNE/REPNZ"; the caller resumes the guest, which executes it again, or
//!   calls again).
//! - On `Err`, RIP is unchanged. A fault from [`Machine::read`]/[`Machine::write`] (or from
//!   the canonical check, SDM Vol. 1 3.3.7.1) is returned as [`Error::Fault`] before any
//!   register or flag of that instruction (that iteration, for REP) is written: memory is
//!   written before registers, so the guest sees precise faults.
//! - RF is cleared on completion (SDM Vol. 3 18.3.1.1); a set TF (single-step #DB) is the
//!   caller's to deliver.
//! - Segment limits and rights are not checked here; a caller that needs them implements
//!   [`Machine::check_segment`]. Alignment checking (#AC) is not emulated.
//!
//! # Supported instructions (SDM Vol. 2)
//! MOV (all widths, moffs, r/m imm; general-purpose registers only), MOVZX, MOVSX, MOVSXD,
//! MOVS, STOS, LODS (REP, DF), AND, OR, XOR, ADD, ADC, SUB, SBB, CMP, TEST, INC, DEC, NEG,
//! NOT, BT, BTS, BTR, BTC, XCHG, CMPXCHG (LOCK accepted: the caller serialises), and through
//! [`emulate_string_io`] INS and OUTS. Anything else is [`Error::Unsupported`].
//!
//! Flags are exact for every flag the SDM defines. Where the SDM leaves a flag undefined the
//! choice is fixed and documented: AF is cleared by AND/OR/XOR/TEST; BT* leave OF, SF, AF
//! and PF unchanged.
#![no_std]
#![forbid(unsafe_code)]
#![deny(
    missing_docs,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

mod exec;
mod flags;
pub mod fuzz;

pub use iced_x86::Mnemonic;

/// How many iterations of a REP string instruction one call runs at most before it returns
/// with [`Emulated::finished`] false and RIP still on the instruction. Bounds the time one
/// exit spends in Basalt (a guest can load RCX with 2^64-1) while keeping exits for a 4 KiB
/// `rep stosb` to a handful.
pub const REP_ITERATIONS_PER_CALL: u64 = 1024;

/// A general-purpose register, numbered as in the ModRM/REX encoding (SDM Vol. 2 2.1.5,
/// Table 2-2). Sub-registers (EAX, AX, AL, AH) are handled by the emulator; the [`Machine`]
/// only stores the full 64-bit registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum Gpr {
    Rax = 0,
    Rcx,
    Rdx,
    Rbx,
    Rsp,
    Rbp,
    Rsi,
    Rdi,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

impl Gpr {
    /// All sixteen, in encoding order.
    pub const ALL: [Gpr; 16] = [
        Gpr::Rax,
        Gpr::Rcx,
        Gpr::Rdx,
        Gpr::Rbx,
        Gpr::Rsp,
        Gpr::Rbp,
        Gpr::Rsi,
        Gpr::Rdi,
        Gpr::R8,
        Gpr::R9,
        Gpr::R10,
        Gpr::R11,
        Gpr::R12,
        Gpr::R13,
        Gpr::R14,
        Gpr::R15,
    ];

    /// The register with encoding number `index` (0-15).
    pub fn from_index(index: usize) -> Option<Gpr> {
        Gpr::ALL.get(index).copied()
    }

    /// The encoding number (0-15), for indexing a `[u64; 16]` register file.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A segment register (SDM Vol. 3 3.4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Segment {
    Es,
    Cs,
    Ss,
    Ds,
    Fs,
    Gs,
}

impl Segment {
    /// The register's number in instruction encodings (ES 0, CS 1, SS 2, DS 3, FS 4, GS 5;
    /// SDM Vol. 2 Table 3-6).
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// The code size of the instruction being emulated: the D flag of CS, or CS.L in IA-32e mode
/// (SDM Vol. 3 5.2.1). Real mode and virtual-8086 mode are 16-bit; compatibility mode is 16-
/// or 32-bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CodeSize {
    /// 16-bit code: real mode, virtual-8086 mode, 16-bit protected or compatibility mode.
    Bits16,
    /// 32-bit protected or compatibility mode.
    Bits32,
    /// 64-bit mode.
    Bits64,
}

impl CodeSize {
    /// From a bitness of 16, 32 or 64.
    pub fn from_bits(bits: u32) -> Option<CodeSize> {
        match bits {
            16 => Some(CodeSize::Bits16),
            32 => Some(CodeSize::Bits32),
            64 => Some(CodeSize::Bits64),
            _ => None,
        }
    }

    /// 16, 32 or 64.
    pub fn bits(self) -> u32 {
        match self {
            CodeSize::Bits16 => 16,
            CodeSize::Bits32 => 32,
            CodeSize::Bits64 => 64,
        }
    }
}

/// An exception the guest must get (SDM Vol. 3 6.15). The caller injects it as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// #PF (vector 14): CR2 and the error code come from the caller's page walk.
    PageFault {
        /// The faulting linear address, for CR2.
        address: u64,
        /// The page-fault error code (SDM Vol. 3 Figure 6-11).
        error_code: u32,
    },
    /// #GP (vector 13) with its error code (0 for a non-canonical address).
    GeneralProtection(u32),
    /// #SS (vector 12) with its error code (0 for a non-canonical SS-relative address).
    StackSegment(u32),
    /// #UD (vector 6).
    InvalidOpcode,
}

impl Fault {
    /// The exception vector (SDM Vol. 3 Table 6-1).
    pub fn vector(self) -> u8 {
        match self {
            Fault::PageFault { .. } => 14,
            Fault::GeneralProtection(_) => 13,
            Fault::StackSegment(_) => 12,
            Fault::InvalidOpcode => 6,
        }
    }

    /// The error code pushed with the exception, if it has one.
    pub fn error_code(self) -> Option<u32> {
        match self {
            Fault::PageFault { error_code, .. } => Some(error_code),
            Fault::GeneralProtection(code) | Fault::StackSegment(code) => Some(code),
            Fault::InvalidOpcode => None,
        }
    }
}

/// Why an instruction was not emulated. RIP is unchanged in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The bytes do not encode a valid instruction in this code size (SDM Vol. 2 2.4, Vol. 3
    /// 6.15 #UD): inject #UD.
    Invalid,
    /// The bytes end inside the instruction. The caller fetched fewer than the instruction
    /// needs (at most 15, SDM Vol. 2 2.3.11): fetch the rest (it may cross a page) and call
    /// again, or inject the fault that fetch raises.
    Truncated,
    /// A valid instruction outside the supported set: inject #UD and log one line with the
    /// bytes and this mnemonic.
    Unsupported(Mnemonic),
    /// The instruction faulted: inject this exception.
    Fault(Fault),
}

impl From<Fault> for Error {
    fn from(fault: Fault) -> Error {
        Error::Fault(fault)
    }
}

/// A successful emulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Emulated {
    /// The instruction's length in bytes (1-15).
    pub length: u8,
    /// Its mnemonic, for statistics and logs.
    pub mnemonic: Mnemonic,
    /// False only for a REP string instruction stopped after [`REP_ITERATIONS_PER_CALL`]
    /// iterations with its count not yet zero: RIP was left on the instruction.
    pub finished: bool,
    /// String iterations run by this call (0 for a REP with RCX = 0; 1 for every
    /// non-string instruction).
    pub iterations: u64,
}

/// An access to guest memory, for [`Machine::check_segment`] and [`Machine::probe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// A data read.
    Read,
    /// A data write.
    Write,
}

/// The guest state and memory one instruction needs: implemented by the vCPU exit handler
/// over its VMCS/VMCB and saved registers, and by tests over plain arrays.
pub trait Machine {
    /// The full 64-bit value of a general-purpose register.
    fn gpr(&self, reg: Gpr) -> u64;
    /// Sets the full 64-bit register; the emulator has already merged 8/16-bit writes and
    /// zero-extended 32-bit writes (SDM Vol. 1 3.4.1.1).
    fn set_gpr(&mut self, reg: Gpr, value: u64);
    /// The guest RIP (the address of the instruction being emulated).
    fn rip(&self) -> u64;
    /// Sets the guest RIP.
    fn set_rip(&mut self, rip: u64);
    /// The guest RFLAGS.
    fn rflags(&self) -> u64;
    /// Sets the guest RFLAGS; only CF, PF, AF, ZF, SF, OF and RF ever change.
    fn set_rflags(&mut self, rflags: u64);
    /// The base address of a segment (the descriptor cache's base). In 64-bit mode only FS
    /// and GS are asked (the others are treated as 0, SDM Vol. 3 3.4.4).
    fn segment_base(&self, seg: Segment) -> u64;
    /// Reads `buf.len()` (1, 2, 4 or 8) bytes of guest-linear memory at `linear`: the caller
    /// translates, checks permissions and routes to RAM or a device. A page-crossing access
    /// is the caller's to split.
    fn read(&mut self, linear: u64, buf: &mut [u8]) -> Result<(), Fault>;
    /// Writes `data` (1, 2, 4 or 8 bytes) to guest-linear memory at `linear`.
    fn write(&mut self, linear: u64, data: &[u8]) -> Result<(), Fault>;

    /// Checks an access of `len` bytes at `offset` into `seg` outside 64-bit mode against the
    /// segment's limit and type (SDM Vol. 3 5.3, 5.4): return #GP(0), or #SS(0) for SS. The
    /// default checks nothing (flat segments).
    fn check_segment(&self, seg: Segment, offset: u64, len: usize, access: Access) -> Result<(), Fault> {
        let _ = (seg, offset, len, access);
        Ok(())
    }

    /// Checks that an access would succeed without performing it. Called before INS reads
    /// its port, so that a faulting destination does not consume device data (the guest
    /// re-executes INS after the fault is handled). The default reports success.
    fn probe(&mut self, linear: u64, len: usize, access: Access) -> Result<(), Fault> {
        let _ = (linear, len, access);
        Ok(())
    }

    /// True when 5-level paging (CR4.LA57) makes linear addresses 57 bits wide; otherwise 48
    /// (SDM Vol. 1 3.3.7.1, canonical addressing).
    fn la57(&self) -> bool {
        false
    }
}

/// A port I/O callout for [`emulate_string_io`]: `(port, size in bytes (1, 2 or 4), write,
/// value)`. A read stores the value read in the low `size` bytes of `value`; a write finds
/// the value to write there.
pub trait PortIo {
    /// Performs one port access.
    fn port_io(&mut self, port: u16, size: u8, write: bool, value: &mut u32);
}

impl<F: FnMut(u16, u8, bool, &mut u32)> PortIo for F {
    fn port_io(&mut self, port: u16, size: u8, write: bool, value: &mut u32) {
        self(port, size, write, value)
    }
}

/// Decodes the one instruction at the start of `bytes` as code of `code_size` located at the
/// machine's RIP, and executes it. String port I/O (INS, OUTS) is [`Error::Unsupported`]
/// here: it goes through [`emulate_string_io`].
///
/// `#[cold]`: only MMIO and string I/O exits come here (DESIGN.md), never the CPUID/MSR path.
#[cold]
pub fn emulate<M: Machine + ?Sized>(
    machine: &mut M,
    bytes: &[u8],
    code_size: CodeSize,
) -> Result<Emulated, Error> {
    exec::run(machine, bytes, code_size, None)
}

/// As [`emulate`], and also executes INS and OUTS (SDM Vol. 2 "INS", "OUTS") with REP and
/// DF, performing each port access through `port_io`. The I/O permission checks (CPL/IOPL
/// and the TSS bitmap) are done by the processor before the exit (SDM Vol. 3 26.1.1), so
/// none is done here.
#[cold]
pub fn emulate_string_io<M: Machine + ?Sized, P: PortIo>(
    machine: &mut M,
    bytes: &[u8],
    code_size: CodeSize,
    port_io: &mut P,
) -> Result<Emulated, Error> {
    exec::run(machine, bytes, code_size, Some(port_io))
}
