//! The Linux guest of the tests and of `cargo xtask run --linux`: Debian's packaged kernel
//! (linux-image-amd64, unmodified) with an initramfs built here in Rust (xtask/src/cpio.rs):
//! busybox-static and an /init that reports what it sees and powers the VM off through ACPI.

use crate::cpio::Archive;
use crate::util::xtask_dir;
use anyhow::{Context, Result};
use std::path::PathBuf;

/// What /init prints first (a `guest linux| ` line on Basalt's console).
pub const INIT_MARKER: &str = "BASALT-LINUX: init running";

/// The applets /init uses, as links to busybox.
const APPLETS: &[&str] = &["sh", "mount", "echo", "cat", "grep", "cut", "poweroff", "sleep"];

/// /init: mount the pseudo file systems, report the CPUs, the clock and the uptime, power off.
const INIT: &str = "#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
echo \"BASALT-LINUX: init running, $(grep -c ^processor /proc/cpuinfo) CPU(s), clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)\"
echo \"BASALT-LINUX: uptime $(cut -d' ' -f1 /proc/uptime) s\"
poweroff -f
";

/// What building and booting it needs installed: Debian's kernel and a static busybox.
pub const TOOLS: &[crate::tools::Tool] = &[crate::tools::Tool::LinuxImage, crate::tools::Tool::Busybox];

/// Where the initramfs is written.
pub fn initramfs_path() -> PathBuf {
    xtask_dir().join("linux-guest").join("initramfs.cpio")
}

/// Debian's kernel image (a placeholder path where none is installed: the run then says so).
pub fn kernel_path() -> PathBuf {
    crate::nested::find_linux()
        .map_or_else(|_| PathBuf::from("/boot/vmlinuz (install linux-image-amd64)"), |l| l.vmlinuz)
}

/// Write the initramfs.
pub fn build() -> Result<()> {
    let mut a = Archive::new();
    for dir in ["proc", "sys", "dev", "bin"] {
        a.dir(dir)?;
    }
    a.char_device("dev/console", 0o600, 5, 1)?;
    let busybox = crate::nested::which("busybox")?;
    let bytes = std::fs::read(&busybox).with_context(|| format!("cannot read {}", busybox.display()))?;
    a.file("bin/busybox", 0o755, &bytes)?;
    for applet in APPLETS {
        a.symlink(&format!("bin/{applet}"), "busybox")?;
    }
    a.file("init", 0o755, INIT.as_bytes())?;
    let path = initramfs_path();
    std::fs::create_dir_all(path.parent().expect("a directory"))?;
    std::fs::write(&path, a.finish()).with_context(|| format!("cannot write {}", path.display()))
}

/// The two modules of a Linux VM named `name`: the kernel with its configuration words and
/// command line, and the initramfs for it (see [`build`]).
pub fn modules(name: &str, words: &str) -> Vec<(PathBuf, String)> {
    vec![
        (kernel_path(), format!("name={name} {words} cmdline=\"console=ttyS0\"")),
        (initramfs_path(), format!("initrd_of={name}")),
    ]
}

/// Whether a test boots the Linux guest.
pub fn used_by(modules: &[(PathBuf, String)]) -> bool {
    modules.iter().any(|(p, _)| *p == initramfs_path())
}
