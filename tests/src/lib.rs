//! Guest payloads and their library.
//!
//! The guests are tiny `no_std` kernels that Basalt loads into VMs (one VM each) from multiboot
//! modules. The ABI they share with Basalt (ucall records, hypercall numbers, the scratch port
//! and MSR) lives in the dependency-free crate `basalt-abi` (`tests/abi/`), which the kernel
//! builds too; this library re-exports all of it, so guests write `basalt_guests::UcallKind`.
//! The kernel never depends on this crate.
//!
//! # Guest boot ABI (64-bit guests, the default `mode=long`)
//! - Guest RAM is guest-physical `[0, mem)` (module argument `mem=<MiB>`, default 16).
//! - The module is an ELF64 image that carries Basalt's guest-ABI note (`PT_NOTE` "Basalt",
//!   [`GUEST_ABI_NOTE_TYPE`], put there by [`entry!`] through [`multiboot_entry!`] and kept by
//!   `guest.ld`), or any ELF64 when the module names `mode=long` or `mode=real`; without
//!   either, an image with a multiboot header is started as a multiboot kernel and any other
//!   is refused. Each PT_LOAD segment is copied to its `p_paddr` (at or above
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
//! against the VM's memory, reads the record and acts on its kind. Both sides take the record
//! and its constants from `basalt-abi`.
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
pub mod acpi;
#[cfg(target_arch = "x86_64")]
pub mod apic;
#[cfg(target_arch = "x86_64")]
pub mod bare;
#[cfg(target_arch = "x86_64")]
pub mod cmos;
#[cfg(target_arch = "x86_64")]
pub mod fwcfg;
#[cfg(target_arch = "x86_64")]
pub mod hw;
#[cfg(target_arch = "x86_64")]
pub mod idt;
#[cfg(target_arch = "x86_64")]
pub mod ioapic;
#[cfg(target_arch = "x86_64")]
pub mod irqline;
#[cfg(target_arch = "x86_64")]
mod macros;
pub mod mbkernel;
pub mod multiboot;
#[cfg(target_arch = "x86_64")]
pub mod paging;
#[cfg(target_arch = "x86_64")]
pub mod pci;
#[cfg(target_arch = "x86_64")]
pub mod pic;
#[cfg(target_arch = "x86_64")]
pub mod pit;
#[cfg(target_arch = "x86_64")]
pub mod power;
#[cfg(target_arch = "x86_64")]
pub mod smp;
#[cfg(target_arch = "x86_64")]
pub mod time;
#[cfg(target_arch = "x86_64")]
pub mod ucall;

pub use basalt_abi::{
    ExitCounter, UcallKind, UcallRecord, GUEST_ABI_NOTE_NAME, GUEST_ABI_NOTE_TYPE, GUEST_ABI_VERSION,
    HC_STATS, HC_VERSION, HYPERCALL_ABI_VERSION, INJECT_EXCEPTION, INJECT_HAS_ERROR_CODE, INJECT_NMI,
    SCRATCH_MSR, SCRATCH_PORT, UCALL_FILE_LEN, UCALL_MSG_LEN, UCALL_PORT, UCALL_RECORD_SIZE,
};

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
