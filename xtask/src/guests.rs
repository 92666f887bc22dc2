//! Building the guest payloads (`tests/`, crate `basalt-guests`) and naming them as modules.

use crate::kernel::TARGET;
use crate::util::{cargo, workspace_root};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

pub const PACKAGE: &str = "basalt-guests";

/// Guests that end with Done: each is a passing test on every platform.
pub const PASSING: &[&str] = &[
    "cpuid",
    "hlt",
    "portio",
    "msr",
    "pagefault",
    "realmode",
    "prefixed",
    "fpu",
    "tsc",
    "spec",
    "mmio",
    "stringio",
    "modes",
    "events",
    "stats",
    "msrs",
    "reinject",
    "demo",
];

/// Guests that attack the hypervisor (the `isolation-*` tests); most end stopped by Basalt.
pub const HOSTILE: &[&str] = &[
    "isolation-insns",
    "isolation-fill",
    "isolation-check",
    "spin",
    "mwait",
    "dbloop",
    "acloop",
    "nmi",
    "memprobe",
];
/// The multiboot test kernels (not guests of Basalt's boot ABI: tests/src/mbkernel.rs); their
/// tests pass them with modules (xtask/src/multiboot_guest.rs).
pub const MULTIBOOT: &[&str] = &["multiboot1", "multiboot2"];
/// Guests that are built but fail on purpose: each is part of a test that expects it to.
pub const FAILING: &[&str] = &["fail", "unmapped", "forge", "triplefault"];

/// The PC-platform guests (local APIC, IOAPIC, PIC, PIT, RTC, UART, PCI, ACPI, power): built
/// with the rest but not in the test table until Basalt's PC platform lands. Each with the
/// module words it needs beyond `name=` and how it must end: see [`PlatformEnd`].
pub const PLATFORM: &[(&str, &str, PlatformEnd)] = &[
    ("lapic-timer", "", PlatformEnd::Done),
    ("ipi", "cpus=2", PlatformEnd::Done),
    ("smp", "cpus=2", PlatformEnd::Done),
    ("smp", "cpus=4", PlatformEnd::Done),
    ("ioapic", "testdev", PlatformEnd::Done),
    ("pit-irq0", "", PlatformEnd::Done),
    ("pic-realmode", "mode=real", PlatformEnd::Done),
    ("pit-calibrate", "", PlatformEnd::Done),
    ("rtc", "", PlatformEnd::Done),
    ("uart", "", PlatformEnd::Done),
    ("pci", "", PlatformEnd::Done),
    ("acpi", "", PlatformEnd::Done),
    ("acpi", "cpus=4", PlatformEnd::Done),
    ("poweroff", "", PlatformEnd::PoweredOff),
    ("reset", "on_reset=stop", PlatformEnd::Reset),
    ("reset-cf9", "on_reset=stop", PlatformEnd::Reset),
    ("reset-kbd", "on_reset=stop", PlatformEnd::Reset),
    ("reset-restart", "", PlatformEnd::Done),
    ("debug-exit", "debug_exit=0xf4", PlatformEnd::DebugExit(0x2A)),
];

/// How a platform guest ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformEnd {
    /// A Done ucall (an assertion failure is an AssertFail).
    Done,
    /// The VM powers off (ACPI S5); still running, the guest fails.
    PoweredOff,
    /// The VM resets; still running, the guest fails.
    Reset,
    /// The VM ends through the debug-exit device with this value: status `(v << 1) | 1`.
    DebugExit(u32),
}

/// The VM name of a platform guest entry: the guest's, with `-<n>` for `cpus=<n>` (so the
/// entries of one guest differ).
pub fn platform_vm_name(guest: &str, words: &str) -> String {
    match words.split_whitespace().find_map(|w| w.strip_prefix("cpus=")) {
        Some(n) => format!("{guest}-{n}"),
        None => guest.to_string(),
    }
}

/// A platform guest entry as a module: its ELF and `name=<vm> [mode=real] <words>`.
pub fn platform_module(guest: &str, words: &str) -> (PathBuf, String) {
    let mode = if REAL_MODE.contains(&guest) { " mode=real" } else { "" };
    let words = words.split_whitespace().filter(|w| *w != "mode=real").collect::<Vec<_>>().join(" ");
    let args = format!("name={}{mode} {words}", platform_vm_name(guest, &words));
    (path(guest), args.trim_end().to_string())
}

impl PlatformEnd {
    /// What Basalt prints when VM `vm` ends this way.
    pub fn verdict(self, vm: &str) -> String {
        match self {
            PlatformEnd::Done => format!("VM {vm}: PASS"),
            PlatformEnd::PoweredOff => format!("VM {vm}: ENDED: powered off (ACPI S5)"),
            PlatformEnd::Reset => format!("VM {vm}: ENDED: reset by the guest"),
            PlatformEnd::DebugExit(v) => format!("VM {vm}: ENDED: debug-exit status {}", (v << 1) | 1),
        }
    }
}

/// The guest `cargo xtask run` boots when given none.
pub const DEMO: &str = "demo";

/// Guests that need `mode=real`.
const REAL_MODE: &[&str] = &["realmode", "acloop", "modes", "pic-realmode"];

/// Where `build` leaves guest `name` (always a release build: guests are tiny).
pub fn path(name: &str) -> PathBuf {
    workspace_root().join("target").join(TARGET).join("release").join(name)
}

/// The module command line of guest `name`: `name=<name>`, plus `mode=real` where it needs it.
pub fn module_args(name: &str) -> String {
    if name == "mmio" || name == "reinject" {
        return format!("name={name} testdev");
    }
    if REAL_MODE.contains(&name) {
        format!("name={name} mode=real")
    } else {
        format!("name={name}")
    }
}

/// Guest `name` as a multiboot module: its ELF and its command line.
pub fn module(name: &str) -> (PathBuf, String) {
    (path(name), module_args(name))
}

/// A guest ELF from anywhere as a module, named after its file.
pub fn module_for_file(file: PathBuf) -> Result<(PathBuf, String)> {
    let name = file
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
        .with_context(|| format!("{} has no file name usable as a VM name", file.display()))?
        .to_string();
    Ok((file, format!("name={name}")))
}

/// Builds every guest.
pub fn build() -> Result<()> {
    crate::tools::ensure_rust_targets()?;
    let mut cmd = cargo();
    cmd.current_dir(workspace_root()).args(["build", "--release", "--package", PACKAGE, "--target", TARGET]);
    let status = cmd.status().with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("guest build failed ({status})");
    }
    for name in all_guests() {
        if !path(name).is_file() {
            bail!("the guest build succeeded but {} is missing", path(name).display());
        }
    }
    // multiboot1 as ELF32, and the multiboot tests' module files.
    crate::multiboot_guest::build()
}

/// Every guest bin xtask uses.
fn all_guests() -> impl Iterator<Item = &'static &'static str> {
    PASSING.iter().chain(FAILING).chain(HOSTILE).chain(MULTIBOOT).chain(PLATFORM.iter().map(|(n, _, _)| n))
}

/// The 1-based number of the first line of `source` that contains `needle`.
pub fn line_of(source: &str, needle: &str) -> Option<usize> {
    source.lines().position(|line| line.contains(needle)).map(|i| i + 1)
}

/// The source file of the `fail` guest, as its `file!()` reads (relative to the workspace).
pub const FAIL_SOURCE: &str = "tests/src/bin/fail.rs";
/// The assertion in it that fails.
pub const FAIL_ASSERTION: &str = "guest_assert_eq!(1 + 1, 3)";

/// The source file of the `forge` guest.
pub const FORGE_SOURCE: &str = "tests/src/bin/forge.rs";
/// The assertion in it that fails.
pub const FORGE_ASSERTION: &str = "guest_assert!(verdict == \"PASS\"";

/// The line of the failing assertion in the `fail` guest.
pub fn fail_line() -> Result<usize> {
    assertion_line(FAIL_SOURCE, FAIL_ASSERTION)
}

/// The line of the failing assertion in the `forge` guest.
pub fn forge_line() -> Result<usize> {
    assertion_line(FORGE_SOURCE, FORGE_ASSERTION)
}

fn assertion_line(source_file: &str, assertion: &str) -> Result<usize> {
    let file = workspace_root().join(source_file);
    let source = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
    line_of(&source, assertion).with_context(|| format!("{source_file} lacks {assertion}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_command_lines() {
        assert_eq!(module_args("cpuid"), "name=cpuid");
        assert_eq!(module_args("realmode"), "name=realmode mode=real");
        assert_eq!(module_args("acloop"), "name=acloop mode=real");
        let (file, args) = module("hlt");
        assert!(file.ends_with("target/x86_64-unknown-none/release/hlt"));
        assert_eq!(args, "name=hlt");
        assert_eq!(module_for_file("/x/my-guest.elf".into()).unwrap().1, "name=my-guest");
        assert!(module_for_file("/x/my guest.elf".into()).is_err());
    }

    #[test]
    fn finds_lines() {
        assert_eq!(line_of("a\nb c\nc\n", "c"), Some(2));
        assert_eq!(line_of("a\n", "z"), None);
    }

    #[test]
    fn the_fail_guest_has_its_assertion() {
        let line = fail_line().unwrap();
        let source = std::fs::read_to_string(workspace_root().join(FAIL_SOURCE)).unwrap();
        assert!(source.lines().nth(line - 1).unwrap().trim_start().starts_with(FAIL_ASSERTION));
    }

    #[test]
    fn the_forge_guest_has_its_assertion() {
        let line = forge_line().unwrap();
        let source = std::fs::read_to_string(workspace_root().join(FORGE_SOURCE)).unwrap();
        assert!(source.lines().nth(line - 1).unwrap().trim_start().starts_with(FORGE_ASSERTION));
    }

    #[test]
    fn platform_guests() {
        for (name, words, _) in PLATFORM {
            // Real-mode guests say so in both lists.
            assert_eq!(words.contains("mode=real"), REAL_MODE.contains(name), "{name}");
        }
    }

    #[test]
    fn every_guest_has_a_source() {
        for name in all_guests() {
            assert!(workspace_root().join(format!("tests/src/bin/{name}.rs")).is_file(), "{name}");
        }
    }
}
