//! The PC a guest expects, as plain state machines: no hardware access, no `unsafe`, no
//! globals. Each model is driven by the VM core through the traits in [`bus`], raises
//! interrupts through [`irq::IrqSink`] and keeps time from guest TSC values passed in,
//! so every model builds, is unit-tested and is fuzzed on the host.
//!
//! Conventions every model follows:
//! - Time is the VM's guest TSC (`now`), a `u64` that never goes back; each model that keeps
//!   time is built with the VM's [`time::Timebase`] and converts from it. A model with a timer
//!   says when it next needs [`bus::Timed::advance`] through [`bus::Timed::deadline`]; the VM
//!   core arms a host timer for the nearest one. Models never poll.
//! - Garbage in any register never panics and never breaks the model's invariants: arithmetic
//!   is checked or wrapping, indexes are bounded, divisions guard zero.
//! - Reads of bytes a model does not implement return all ones; writes to them are ignored.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod acpi;
pub mod bus;
pub mod fwcfg;
pub mod ioapic;
pub mod irq;
pub mod lapic;
pub mod pci;
pub mod pic;
pub mod pit;
pub mod pmtimer;
pub mod power;
pub mod router;
pub mod rtc;
pub mod smbios;
pub mod testdev;
pub mod time;
pub mod uart;
