//! Guest payloads and their library.
//!
//! The guests are tiny `no_std` kernels that Basalt loads into VMs (one VM each) from multiboot
//! modules. This library is also the ABI both sides share: the hypervisor depends on it for the
//! ucall record format, so the two can never disagree.
//!
//! # Guest boot ABI (64-bit guests, the default `mode=long`)
//! - Guest RAM is guest-physical `[0, mem)` (module argument `mem=<MiB>`, default 16).
//! - The module is an ELF64 image; each PT_LOAD segment is copied to its `p_paddr` (at or above
//!   1 MiB, inside RAM) and the vCPU starts at `e_entry`. Guests link at 1 MiB.
//! - Basalt builds, in guest RAM: a GDT at 0x500 (null, 64-bit code 0x08, data 0x10), page
//!   tables at 0x1000 (PML4), 0x2000 (PDPT), 0x3000 (PD) identity-mapping guest-virtual
//!   `[0, 1 GiB)` with 2 MiB pages, read/write/execute. Guest-virtual addresses past RAM therefore
//!   reach guest-physical addresses with no memory behind them: an access there is a nested
//!   page fault, and Basalt stops the VM with a report.
//! - Start state: 64-bit mode, CR0 = PE|MP|ET|NE|WP|PG, CR4 = PAE|OSFXSR|OSXMMEXCPT, EFER =
//!   LME|LMA|NXE, RFLAGS = 0x2 (interrupts off), RSP = 0x80000, no IDT (IDTR limit 0).
//! - `mode=real`: real mode at CS:IP = 0:`e_entry` (below 64 KiB), SP = 0x7000, same RAM.
//!
//! # Without Basalt
//! A 64-bit guest's ELF also boots directly in QEMU (`-kernel`): its multiboot header and
//! 32-bit trampoline ([`multiboot`]) build the same start state, and the runtime then prints on
//! COM1 and ends through isa-debug-exit instead of making ucalls ([`bare`]).
//!
//! # Ucall: how a guest talks to the hypervisor
//! The guest fills a [`UcallRecord`] in its own memory and writes the record's guest-physical
//! address (below 4 GiB) with a 32-bit `OUT` to [`UCALL_PORT`]. Basalt validates the address
//! against the VM's memory, reads the record and acts on its kind.
//!
//! # The guest runtime
//! Besides the ABI, the library is the runtime of the guest payloads in `src/bin/`:
//! [`ucall`] (print, sync, done, interrupts, exit counts), the [`guest_assert!`] family,
//! [`idt`] (a minimal exception and interrupt table), and [`entry!`], which gives a guest its
//! `_start`, stack and panic handler. The runtime compiles on the host too (every bin has a
//! host `main` stub so `cargo test --workspace` builds them); it only runs in a guest.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

use core::fmt;

#[cfg(target_arch = "x86_64")]
pub mod bare;
#[cfg(target_arch = "x86_64")]
pub mod idt;
#[cfg(target_arch = "x86_64")]
mod macros;
pub mod multiboot;
#[cfg(target_arch = "x86_64")]
pub mod paging;
#[cfg(target_arch = "x86_64")]
pub mod ucall;

/// The port a 32-bit OUT of a ucall record's guest-physical address goes to.
pub const UCALL_PORT: u16 = 0x00E0;

/// What a ucall asks for.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UcallKind {
    /// Print `msg` on Basalt's console.
    Print = 1,
    /// A guest assertion failed at `file:line`: `msg` says what, `args` carry the values. The VM
    /// stops and counts as failed.
    AssertFail = 2,
    /// The guest finished its test successfully. The VM stops and counts as passed.
    Done = 3,
    /// A checkpoint: Basalt prints `args[0]` and resumes the guest.
    Sync = 4,
    /// Make external interrupt `args[0]` (32..=255) pending for this vCPU; it is delivered when
    /// the guest can take it (RFLAGS.IF set), like a self-IPI.
    RaiseInterrupt = 5,
    /// Ask Basalt for the number of exits of kind `args[0]` this vCPU took so far (see
    /// [`ExitCounter`]); Basalt writes the count into `args[1]` of the record before resuming.
    ExitCount = 6,
    /// Ask Basalt to have another CPU send an NMI to the CPU this vCPU runs on, `args[0]`
    /// microseconds from now (a test that host NMIs reach Basalt, not the guest).
    RequestNmi = 7,
}

impl UcallKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => UcallKind::Print,
            2 => UcallKind::AssertFail,
            3 => UcallKind::Done,
            4 => UcallKind::Sync,
            5 => UcallKind::RaiseInterrupt,
            6 => UcallKind::ExitCount,
            7 => UcallKind::RequestNmi,
            _ => return None,
        })
    }
}

/// Exit kinds a guest can ask the count of with [`UcallKind::ExitCount`].
#[repr(u64)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCounter {
    Cpuid = 0,
    Hlt = 1,
    Io = 2,
    Msr = 3,
    Hypercall = 4,
    /// Exits for host NMIs that arrived while the guest ran.
    Nmi = 5,
    /// NMIs Basalt's own handler took on this vCPU's CPU since the VM started.
    HostNmi = 6,
    /// Exits for instructions Basalt does not let a guest run (SVM/VMX instructions, INVD,
    /// WBINVD, MONITOR/MWAIT, XSETBV, RDPMC).
    Instruction = 7,
}

/// Capacity of the file name in a record.
pub const UCALL_FILE_LEN: usize = 96;
/// Capacity of the message in a record.
pub const UCALL_MSG_LEN: usize = 192;

/// One ucall, in guest memory. Plain data, no pointers: the hypervisor reads it as bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UcallRecord {
    pub kind: u32,
    pub line: u32,
    pub args: [u64; 4],
    pub file_len: u16,
    pub msg_len: u16,
    pub _reserved: u32,
    pub file: [u8; UCALL_FILE_LEN],
    pub msg: [u8; UCALL_MSG_LEN],
}

/// Size of a record in guest memory.
pub const UCALL_RECORD_SIZE: usize = core::mem::size_of::<UcallRecord>();

impl UcallRecord {
    pub const fn empty() -> Self {
        UcallRecord {
            kind: 0,
            line: 0,
            args: [0; 4],
            file_len: 0,
            msg_len: 0,
            _reserved: 0,
            file: [0; UCALL_FILE_LEN],
            msg: [0; UCALL_MSG_LEN],
        }
    }

    /// Build a record (guest side); file and message are cut to their capacity.
    pub fn new(kind: UcallKind, file: &str, line: u32, msg: &str, args: [u64; 4]) -> Self {
        let mut r = UcallRecord::empty();
        r.kind = kind as u32;
        r.line = line;
        r.args = args;
        r.file_len = copy_cut(&mut r.file, file) as u16;
        r.msg_len = copy_cut(&mut r.msg, msg) as u16;
        r
    }

    /// Parse a record from the bytes read out of guest memory (hypervisor side). Lengths are
    /// clamped to the capacities, so a hostile record cannot make the reader overrun.
    pub fn from_bytes(bytes: &[u8; UCALL_RECORD_SIZE]) -> Self {
        let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let mut r = UcallRecord::empty();
        r.kind = u32_at(0);
        r.line = u32_at(4);
        for (i, a) in r.args.iter_mut().enumerate() {
            *a = u64_at(8 + 8 * i);
        }
        r.file_len = u16_at(40).min(UCALL_FILE_LEN as u16);
        r.msg_len = u16_at(42).min(UCALL_MSG_LEN as u16);
        r.file.copy_from_slice(&bytes[48..48 + UCALL_FILE_LEN]);
        r.msg.copy_from_slice(&bytes[48 + UCALL_FILE_LEN..48 + UCALL_FILE_LEN + UCALL_MSG_LEN]);
        r
    }

    /// The kind, if it is one Basalt knows.
    pub fn kind(&self) -> Option<UcallKind> {
        UcallKind::from_u32(self.kind)
    }

    /// The source file (invalid UTF-8 shows as "?").
    pub fn file(&self) -> &str {
        core::str::from_utf8(&self.file[..self.file_len as usize]).unwrap_or("?")
    }

    /// The message (invalid UTF-8 shows as "?").
    pub fn msg(&self) -> &str {
        core::str::from_utf8(&self.msg[..self.msg_len as usize]).unwrap_or("?")
    }
}

fn copy_cut(dst: &mut [u8], s: &str) -> usize {
    let mut n = s.len().min(dst.len());
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
    n
}

/// Formats `args` into `dst`, cutting the text on a character boundary where it does not fit.
/// Returns the number of bytes written.
pub fn write_cut(dst: &mut [u8], args: fmt::Arguments<'_>) -> usize {
    struct Cut<'a> {
        buf: &'a mut [u8],
        len: usize,
    }
    impl fmt::Write for Cut<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let room = self.buf.len() - self.len;
            let mut n = s.len().min(room);
            while !s.is_char_boundary(n) {
                n -= 1;
            }
            self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            // Stop formatting once the buffer is full.
            if n < s.len() {
                Err(fmt::Error)
            } else {
                Ok(())
            }
        }
    }
    let mut cut = Cut { buf: dst, len: 0 };
    let _ = fmt::Write::write_fmt(&mut cut, args);
    cut.len
}

/// A value an assertion can carry in a ucall record's `args`.
pub trait AssertArg {
    fn as_arg(&self) -> u64;
}

macro_rules! assert_arg_as {
    ($($t:ty),*) => {
        $(impl AssertArg for $t {
            fn as_arg(&self) -> u64 {
                *self as u64
            }
        })*
    };
}
assert_arg_as!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize, bool, char);

impl<T: AssertArg + ?Sized> AssertArg for &T {
    fn as_arg(&self) -> u64 {
        (**self).as_arg()
    }
}

/// How `guest_assert_eq!` puts a value in `args`: `(&ArgProbe(&v)).arg()` is `v.as_arg()` where
/// `v` is an [`AssertArg`], and 0 for any other type (autoref specialization: the method found
/// first without an extra `&` wins).
#[doc(hidden)]
pub struct ArgProbe<'a, T: ?Sized>(pub &'a T);

#[doc(hidden)]
pub trait ArgViaAssertArg {
    fn arg(&self) -> u64;
    fn is_arg(&self) -> bool;
}

impl<T: AssertArg + ?Sized> ArgViaAssertArg for ArgProbe<'_, T> {
    fn arg(&self) -> u64 {
        self.0.as_arg()
    }
    fn is_arg(&self) -> bool {
        true
    }
}

#[doc(hidden)]
pub trait ArgViaFallback {
    fn arg(&self) -> u64;
    fn is_arg(&self) -> bool;
}

impl<T: ?Sized> ArgViaFallback for &ArgProbe<'_, T> {
    fn arg(&self) -> u64 {
        0
    }
    fn is_arg(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_layout_is_fixed() {
        assert_eq!(UCALL_RECORD_SIZE, 48 + UCALL_FILE_LEN + UCALL_MSG_LEN);
        assert_eq!(core::mem::offset_of!(UcallRecord, file_len), 40);
        assert_eq!(core::mem::offset_of!(UcallRecord, file), 48);
    }

    #[test]
    fn record_round_trips_through_bytes() {
        let r = UcallRecord::new(UcallKind::AssertFail, "tests/src/bin/fail.rs", 42, "1 == 2", [1, 2, 0, 0]);
        // SAFETY: UcallRecord is repr(C) plain data with no padding holes that matter here.
        let bytes: [u8; UCALL_RECORD_SIZE] = unsafe { core::mem::transmute(r) };
        let back = UcallRecord::from_bytes(&bytes);
        assert_eq!(back, r);
        assert_eq!(back.kind(), Some(UcallKind::AssertFail));
        assert_eq!(back.file(), "tests/src/bin/fail.rs");
        assert_eq!((back.line, back.msg(), back.args[1]), (42, "1 == 2", 2));
    }

    #[test]
    fn hostile_lengths_are_clamped_and_unknown_kinds_rejected() {
        let mut bytes = [0u8; UCALL_RECORD_SIZE];
        bytes[0] = 99;
        bytes[40] = 0xFF;
        bytes[41] = 0xFF;
        bytes[42] = 0xFF;
        bytes[43] = 0xFF;
        let r = UcallRecord::from_bytes(&bytes);
        assert_eq!(r.kind(), None);
        assert_eq!(r.file().len(), UCALL_FILE_LEN);
        assert_eq!(r.msg().len(), UCALL_MSG_LEN);
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        let long = "é".repeat(200);
        let r = UcallRecord::new(UcallKind::Print, &long, 1, &long, [0; 4]);
        assert!(r.file().chars().all(|c| c == 'é'));
        assert_eq!(r.file().len(), 96);
    }

    #[test]
    fn formatting_is_cut_to_the_buffer() {
        let mut buf = [0u8; 8];
        assert_eq!(write_cut(&mut buf, format_args!("{} + {}", 1, 2)), 5);
        assert_eq!(&buf[..5], b"1 + 2");
        let mut buf = [0u8; 5];
        assert_eq!(write_cut(&mut buf, format_args!("ab{}", "éééé")), 4);
        assert_eq!(&buf[..4], "abé".as_bytes());
    }

    #[test]
    fn assert_args() {
        assert_eq!((-1i8).as_arg(), u64::MAX);
        assert_eq!(true.as_arg(), 1);
        assert_eq!((&&7u16).as_arg(), 7);
        #[allow(unused_imports)]
        use crate::{ArgViaAssertArg as _, ArgViaFallback as _};
        // The `&` is what guest_assert_eq! writes: the fallback needs it to be found.
        #[allow(clippy::needless_borrow)]
        let signed = (&ArgProbe(&-2i32)).arg();
        assert_eq!(signed, (-2i64) as u64);
        assert_eq!((&ArgProbe(&(1u8, 2u8))).arg(), 0);
        assert!(!(&ArgProbe(&(1u8, 2u8))).is_arg());
        #[allow(clippy::needless_borrow)]
        let is_arg = (&ArgProbe(&3u8)).is_arg();
        assert!(is_arg);
    }
}
