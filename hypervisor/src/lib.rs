//! Basalt's kernel and VMM core.
//!
//! The modules that hold logic (frame allocation, ...) build and unit-test on the host; the
//! boot flow in [`kernel`] only builds for the bare-metal target.
#![no_std]

extern crate alloc;

pub mod console;
#[cfg(target_os = "none")]
pub mod dispatch;
pub mod exits;
pub mod frames;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod kernel;
pub mod mitigations;
#[cfg(target_os = "none")]
pub mod percpu;
pub mod vm;
