//! Host devices Basalt drives itself: the serial console behind `log`, the PIT used to
//! calibrate the TSC, and the ACPI tables that enumerate CPUs.
#![no_std]

pub mod acpi;
pub mod pic;
pub mod serial;
pub mod timer;
