//! Basalt's UEFI loader (`BOOTX64.EFI`).
//!
//! Reads `\basalt\basalt.elf`, `\basalt\basalt.cfg` and the guest images the config names
//! from the volume it was loaded from, loads the kernel at its physical addresses and the
//! guests as boot modules, exits boot services and jumps to the kernel's
//! `basalt_uefi_entry` with RDI = `UEFI_HANDOFF_MAGIC` and RSI = the hand-off (see
//! `basalt_boot::uefi`). A bad config is reported on the console with its line number, and
//! then nothing starts.
//!
//! The parsing logic (config, ELF, memory map) lives in modules that build and unit-test on
//! the host; only `firmware` talks to UEFI. On the host the binary is a stub.
#![cfg_attr(target_os = "uefi", no_std, no_main)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

// Used by the firmware part and the tests only.
#[cfg_attr(not(any(test, target_os = "uefi")), allow(dead_code))]
mod config;
#[cfg_attr(not(any(test, target_os = "uefi")), allow(dead_code))]
mod elf;
#[cfg_attr(not(any(test, target_os = "uefi")), allow(dead_code))]
mod memory;

#[cfg(target_os = "uefi")]
mod firmware;

#[cfg(not(target_os = "uefi"))]
fn main() {
    eprintln!("basalt-uefi is a UEFI application: `cargo xtask image` builds it into target/basalt.img.");
    std::process::exit(2);
}
