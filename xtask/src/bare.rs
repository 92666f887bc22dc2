//! `cargo xtask bare GUEST`: boots one 64-bit guest directly in QEMU TCG (`-kernel`, through its
//! multiboot header), without Basalt, on QEMU's own PC device models, to check a platform
//! guest against real models before Basalt's exist. The guest prints on COM1 (this terminal)
//! and ends through isa-debug-exit: status 33 passed, 35 failed; a poweroff or (with
//! `-no-reboot`) reset is status 0, the debug-exit guest's is (value << 1) | 1.

use crate::{guests, qemu};
use anyhow::{Context, Result};
use std::process::{Command, ExitCode};

/// QEMU's arguments for `guest` with `smp` CPUs on machine `machine` (q35 or pc). pc-testdev
/// gives the ioapic guest its interrupt lines.
pub fn qemu_args(guest: &std::path::Path, smp: u32, machine: &str) -> Vec<String> {
    let smp = smp.to_string();
    let guest = guest.display().to_string();
    [
        "-accel",
        "tcg",
        "-M",
        machine,
        "-cpu",
        qemu::TCG_EPYC,
        "-smp",
        &smp,
        "-m",
        "512",
        "-kernel",
        &guest,
        "-serial",
        "stdio",
        "-display",
        "none",
        "-monitor",
        "none",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=4",
        "-device",
        "pc-testdev",
        "-no-reboot",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub fn run(name: &str, smp: u32, machine: &str) -> Result<ExitCode> {
    guests::build()?;
    let args = qemu_args(&guests::path(name), smp, machine);
    println!("xtask: qemu-system-x86_64 {}", args.join(" "));
    let status = Command::new("qemu-system-x86_64").args(&args).status().context("cannot run QEMU")?;
    match status.code() {
        Some(code) => println!("\nxtask: QEMU exited with status {code} ({})", qemu::describe_status(code)),
        None => println!("\nxtask: QEMU was killed by a signal"),
    }
    Ok(if status.code() == Some(33) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    #[test]
    fn args() {
        let a = super::qemu_args(std::path::Path::new("/g/smp"), 4, "q35").join(" ");
        assert!(a.contains("-M q35 ") && a.contains("-smp 4 ") && a.contains("-kernel /g/smp "));
        assert!(a.contains("pc-testdev") && a.ends_with("-no-reboot"));
    }
}
