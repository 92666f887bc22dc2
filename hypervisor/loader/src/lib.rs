//! Loading guests nobody here wrote: the parsing and planning half, with no hardware access.
//!
//! - [`bzimage`]: a Linux bzImage and the 64-bit boot protocol: where each piece goes in guest
//!   RAM, the bytes of `boot_params` (the zero page), and the register state to start it in.
//! - [`multiboot`]: multiboot v1 and v2 kernels (ELF32, ELF64 and the a.out kludge): their
//!   segments, entry point and the boot information structure.
//! - [`detect`]: which of those (or Basalt's own guest boot ABI) an image is for.
//! - [`config`]: the one VM configuration format (a config module, the kernel command line or
//!   a USB stick's `basalt.cfg`) and the older module-command-line words.
//! - [`memmap`]: the guest memory map both loaders take, normalised into E820 / multiboot
//!   entries, and the first-fit / highest-fit placement they share.
//!
//! Every function takes untrusted bytes: nothing panics on any input, all arithmetic on values
//! from an image is checked, and every refusal is an [`LoadError`] whose message names the
//! field and value at fault. A plan that comes back `Ok` has been checked: every piece lies in
//! usable guest RAM, no two overlap, and the alignment each protocol asks for holds. The kernel
//! copies the bytes and builds the vCPU state; it need not check again.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod bzimage;
pub mod config;
pub mod detect;
mod elf;
pub mod memmap;
pub mod multiboot;

use alloc::string::String;

/// Why an image could not be loaded: one sentence naming what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError(pub String);

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `Err(LoadError(format!(...)))`.
macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err($crate::LoadError(alloc::format!($($arg)*)))
    };
}
pub(crate) use refuse;

/// Little-endian reads that fail (with the field's name) instead of panicking past the end.
pub(crate) fn get<const N: usize>(b: &[u8], off: usize, what: &str) -> Result<[u8; N], LoadError> {
    off.checked_add(N).and_then(|end| b.get(off..end)).and_then(|s| <[u8; N]>::try_from(s).ok()).ok_or_else(
        || {
            LoadError(alloc::format!(
                "truncated: {what} at offset {off:#x} is past the end of the {}-byte image",
                b.len()
            ))
        },
    )
}

pub(crate) fn u8_at(b: &[u8], off: usize, what: &str) -> Result<u8, LoadError> {
    Ok(get::<1>(b, off, what)?[0])
}
pub(crate) fn u16_at(b: &[u8], off: usize, what: &str) -> Result<u16, LoadError> {
    Ok(u16::from_le_bytes(get(b, off, what)?))
}
pub(crate) fn u32_at(b: &[u8], off: usize, what: &str) -> Result<u32, LoadError> {
    Ok(u32::from_le_bytes(get(b, off, what)?))
}
pub(crate) fn u64_at(b: &[u8], off: usize, what: &str) -> Result<u64, LoadError> {
    Ok(u64::from_le_bytes(get(b, off, what)?))
}

/// Little-endian writes into a buffer the caller sized (the offsets are constants of the
/// formats, inside the buffer by construction; out-of-range writes are dropped, not panics).
pub(crate) fn put(b: &mut [u8], off: usize, bytes: &[u8]) {
    if let Some(dst) = off.checked_add(bytes.len()).and_then(|end| b.get_mut(off..end)) {
        dst.copy_from_slice(bytes);
    }
}
