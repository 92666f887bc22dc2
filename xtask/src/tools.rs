//! Host tools the emulators need: check that they are there, install what is missing.
//!
//! Each tool maps to the Debian package that provides it. As root, missing packages are
//! installed with apt-get (that is how CI gets them on a fresh machine); otherwise the exact
//! command to run is printed and the task fails.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// Something on the host that a command needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Qemu,
    Bochs,
    BochsBios,
    VgaBios,
    GrubMkrescue,
    GrubPcModules,
    Xorriso,
    Mtools,
    Ovmf,
    /// Debian's Linux kernel with its modules (the nested platform's L1).
    LinuxImage,
    /// A static busybox (the nested platform's /init and shell).
    Busybox,
}

/// How a tool is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// An executable on `PATH`.
    Program(&'static str),
    /// A file or directory.
    Path(&'static str),
    /// A `/boot/vmlinuz-<version>` whose `/lib/modules/<version>` tree is there.
    LinuxKernel,
}

/// What building a GRUB rescue ISO needs.
pub const ISO_TOOLS: &[Tool] = &[Tool::GrubMkrescue, Tool::GrubPcModules, Tool::Xorriso, Tool::Mtools];

/// Every tool xtask knows about (for `cargo xtask setup`).
pub const ALL: &[Tool] = &[
    Tool::Qemu,
    Tool::Bochs,
    Tool::BochsBios,
    Tool::VgaBios,
    Tool::GrubMkrescue,
    Tool::GrubPcModules,
    Tool::Xorriso,
    Tool::Mtools,
    Tool::Ovmf,
    Tool::LinuxImage,
    Tool::Busybox,
];

impl Tool {
    pub fn probe(self) -> Probe {
        match self {
            Tool::Qemu => Probe::Program("qemu-system-x86_64"),
            Tool::Bochs => Probe::Program("bochs-bin"),
            Tool::BochsBios => Probe::Path("/usr/share/bochs/BIOS-bochs-latest"),
            Tool::VgaBios => Probe::Path("/usr/share/vgabios/vgabios.bin"),
            Tool::GrubMkrescue => Probe::Program("grub-mkrescue"),
            Tool::GrubPcModules => Probe::Path("/usr/lib/grub/i386-pc"),
            Tool::Xorriso => Probe::Program("xorriso"),
            Tool::Mtools => Probe::Program("mformat"),
            Tool::Ovmf => Probe::Path("/usr/share/OVMF/OVMF_CODE_4M.fd"),
            Tool::LinuxImage => Probe::LinuxKernel,
            Tool::Busybox => Probe::Program("busybox"),
        }
    }

    /// The Debian package that provides the tool.
    pub fn package(self) -> &'static str {
        match self {
            Tool::Qemu => "qemu-system-x86",
            Tool::Bochs => "bochs",
            Tool::BochsBios => "bochsbios",
            Tool::VgaBios => "vgabios",
            // grub-mkrescue itself is in grub-common, which grub-pc-bin depends on; the ISO
            // needs grub-pc-bin's i386-pc modules anyway.
            Tool::GrubMkrescue => "grub-pc-bin",
            Tool::GrubPcModules => "grub-pc-bin",
            Tool::Xorriso => "xorriso",
            Tool::Mtools => "mtools",
            Tool::Ovmf => "ovmf",
            Tool::LinuxImage => "linux-image-amd64",
            Tool::Busybox => "busybox-static",
        }
    }

    pub fn is_present(self) -> bool {
        match self.probe() {
            Probe::Program(name) => find_program(name),
            Probe::Path(path) => Path::new(path).exists(),
            Probe::LinuxKernel => crate::nested::find_linux().is_ok(),
        }
    }

    fn describe(self) -> &'static str {
        match self.probe() {
            Probe::Program(name) | Probe::Path(name) => name,
            Probe::LinuxKernel => "/boot/vmlinuz-* with /lib/modules",
        }
    }
}

/// Whether an executable file `name` is on `PATH`.
fn find_program(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(name))
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// The packages to install for the tools `is_present` says are missing, without duplicates,
/// in first-needed order.
pub fn missing_packages(tools: &[Tool], is_present: impl Fn(Tool) -> bool) -> Vec<&'static str> {
    let mut packages = Vec::new();
    for &tool in tools {
        if !is_present(tool) && !packages.contains(&tool.package()) {
            packages.push(tool.package());
        }
    }
    packages
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Makes sure every tool in `tools` is present, installing missing packages when root.
pub fn ensure(tools: &[Tool]) -> Result<()> {
    let packages = missing_packages(tools, Tool::is_present);
    if packages.is_empty() {
        return Ok(());
    }
    let missing: Vec<&str> = tools.iter().filter(|t| !t.is_present()).map(|t| t.describe()).collect();
    eprintln!("xtask: missing {}", missing.join(", "));
    if !is_root() {
        bail!("missing host tools; install them with:\n    sudo apt-get install -y {}", packages.join(" "));
    }
    eprintln!("xtask: installing {} (running as root)", packages.join(" "));
    run_checked(Command::new("apt-get").arg("update"))?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y"])
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let still: Vec<&str> = tools.iter().filter(|t| !t.is_present()).map(|t| t.describe()).collect();
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(", "));
    }
    Ok(())
}

fn run_checked(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// The targets Basalt builds for besides the host: the kernel and guests, and the UEFI loader.
/// rust-toolchain.toml lists them, but rustup adds a toolchain file's targets only when it
/// installs that toolchain itself; a machine that already has the pinned toolchain (as CI's
/// machines do) may still lack them.
pub const RUST_TARGETS: [&str; 2] = ["x86_64-unknown-none", "x86_64-unknown-uefi"];

/// The `RUST_TARGETS` missing from `rustup target list --installed` output.
pub fn missing_targets(installed: &str) -> Vec<&'static str> {
    RUST_TARGETS.iter().copied().filter(|t| !installed.lines().any(|l| l.trim() == *t)).collect()
}

/// Adds the Rust targets Basalt needs with rustup, once per xtask run.
pub fn ensure_rust_targets() -> Result<()> {
    static CHECKED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if CHECKED.get().is_some() {
        return Ok(());
    }
    let root = crate::util::workspace_root();
    let out =
        Command::new("rustup").current_dir(&root).args(["target", "list", "--installed"]).output().map_err(
            |e| {
                anyhow::anyhow!(
                    "cannot run rustup ({e}); add the targets with: rustup target add {}",
                    RUST_TARGETS.join(" ")
                )
            },
        )?;
    let missing = missing_targets(&String::from_utf8_lossy(&out.stdout));
    if !missing.is_empty() {
        eprintln!("xtask: adding Rust targets {}", missing.join(" "));
        run_checked(Command::new("rustup").current_dir(&root).args(["target", "add"]).args(&missing))?;
    }
    let _ = CHECKED.set(());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn missing_rust_targets_are_found_in_rustup_output() {
        assert_eq!(super::missing_targets("x86_64-unknown-linux-gnu\n"), super::RUST_TARGETS.to_vec());
        assert_eq!(
            super::missing_targets("x86_64-unknown-none\nx86_64-unknown-linux-gnu\n"),
            ["x86_64-unknown-uefi"]
        );
        assert!(super::missing_targets("x86_64-unknown-uefi\nx86_64-unknown-none\n").is_empty());
    }

    use super::*;

    #[test]
    fn packages_are_deduplicated_and_only_for_missing_tools() {
        let tools = [Tool::Qemu, Tool::GrubMkrescue, Tool::GrubPcModules, Tool::Mtools];
        assert!(missing_packages(&tools, |_| true).is_empty());
        assert_eq!(missing_packages(&tools, |_| false), vec!["qemu-system-x86", "grub-pc-bin", "mtools"]);
        assert_eq!(missing_packages(&tools, |t| t != Tool::GrubPcModules), vec!["grub-pc-bin"]);
    }
}
