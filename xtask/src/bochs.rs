//! Bochs: a GRUB multiboot2 ISO, a headless configuration, and the command that runs it.
//!
//! Everything lives in the VM's work directory (`target/xtask/<name>/`):
//! `iso/` (the ISO's tree), `basalt.iso`, `basalt.bxrc`, `cont.rc`, `serial.log`,
//! `bochs.log` and `bochs.stdout`.

use crate::emulator::{Launch, SerialOut};
use crate::platform::Vm;
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::Path;
use std::process::Command;

/// GRUB modules built into the ISO's core image.
const GRUB_MODULES: &str = "multiboot2 multiboot normal iso9660 biosdisk";

/// Quotes one kernel command-line word for grub.cfg, where needed.
fn grub_word(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_=.,:/+@%".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The words of `args` as grub.cfg words. A `key="a b"` word is one word for GRUB (its quotes
/// dropped: GRUB hands an argument with spaces on as `"key=a b"`, which Basalt reads back).
fn grub_args(args: &str) -> String {
    let mut words = Vec::new();
    let (mut word, mut quoted) = (String::new(), false);
    for c in args.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words.iter().map(|w| format!(" {}", grub_word(w))).collect()
}

/// grub.cfg: boot `/boot/basalt` at once with `cmdline`; `modules` are (name under /boot,
/// arguments).
pub fn grub_cfg(cmdline: &str, modules: &[(String, String)]) -> String {
    let mut cfg = String::from("set timeout=0\nset default=0\n\nmenuentry \"Basalt\" {\n");
    cfg += &format!("    multiboot2 /boot/basalt{}\n", grub_args(cmdline));
    // GRUB 2 gives a multiboot2 module only the words after its file, so the path comes
    // again as the first word: Basalt then sees what QEMU's -initrd passes, the file name
    // first (a configuration's images are found by it).
    for (name, args) in modules {
        cfg += &format!("    module2 /boot/{name} /boot/{name}{}\n", grub_args(args));
    }
    cfg += "    boot\n}\n";
    cfg
}

/// The headless Bochs configuration of PLATFORM.md, with paths relative to the work directory.
pub fn bxrc(cpu_model: &str, smp: u32, mem_mb: u32) -> String {
    format!(
        "\
display_library: rfb, options=\"timeout=0\"
romimage: file=/usr/share/bochs/BIOS-bochs-latest, options=fastboot
vgaromimage: file=/usr/share/vgabios/vgabios.bin
cpu: model={cpu_model}, count={smp}, ips=50000000, reset_on_triple_fault=0
megs: {mem_mb}
ata0-master: type=cdrom, path=basalt.iso, status=inserted
boot: cdrom
com1: enabled=1, mode=file, dev=serial.log
sound: driver=dummy
speaker: enabled=0
clock: sync=none
panic: action=fatal
error: action=report
log: bochs.log
"
    )
}

/// Bochs's own log in the work directory (`log:` in [`bxrc`]).
pub const LOG_FILE: &str = "bochs.log";

/// What Bochs logs when Basalt ends it by writing "Shutdown" to port 0x8900: in bochs.log
/// `00098296544p[UNMAP ] >>PANIC<< Shutdown port: shutdown requested`, and on stderr
/// `Bochs is exiting with the following message:` then `[UNMAP ] Shutdown port: shutdown requested`.
pub const SHUTDOWN_MESSAGE: &str = "Shutdown port: shutdown requested";

/// The stderr line after which Bochs prints why it is exiting.
const EXIT_MESSAGE_HEADER: &str = "Bochs is exiting with the following message:";

/// How a Bochs run ended, by its own account. Its exit status is always 1, so this is how a
/// test tells "Basalt ended it" from "Bochs gave up" (a triple fault of Basalt itself with
/// `reset_on_triple_fault=0` is a Bochs panic: `>>PANIC<< exception(): 3rd (13) exception
/// with no resolution`; with `panic: action=fatal` every panic ends Bochs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BochsEnd {
    /// Basalt's shutdown request (port 0x8900).
    Shutdown,
    /// Bochs stopped for another reason: the line that says why, quoted from its output.
    Died(String),
    /// Neither is in its output (it was killed, or left no log).
    Unknown,
}

/// Reads how Bochs ended from its stderr (the exit message) and its log file (`>>PANIC<<`
/// and `FATAL` lines; Bochs's error-level lines, which report failed VM entries and the like
/// and do not end it, are not a reason).
pub fn how_it_ended(stderr: &str, log: &str) -> BochsEnd {
    let mut lines = stderr.lines();
    if lines.by_ref().any(|l| l.trim() == EXIT_MESSAGE_HEADER) {
        if let Some(message) = lines.map(str::trim).find(|l| !l.is_empty() && !l.starts_with("====")) {
            return judge_line(message);
        }
    }
    log.lines()
        .filter(|l| l.contains(">>PANIC<<") || l.contains("FATAL"))
        .map(|l| judge_line(l.trim()))
        .next()
        .unwrap_or(BochsEnd::Unknown)
}

fn judge_line(line: &str) -> BochsEnd {
    if line.contains(SHUTDOWN_MESSAGE) {
        BochsEnd::Shutdown
    } else {
        BochsEnd::Died(line.to_string())
    }
}

/// Debugger commands: run, then quit when the simulation stops.
pub const CONT_RC: &str = "continue\nquit\n";

/// Builds the ISO and the configuration files, and returns how to start Bochs.
pub fn prepare(vm: &Vm) -> Result<Launch> {
    let Some(model) = vm.platform.bochs_cpu_model() else {
        bail!("{} is not a Bochs platform", vm.platform);
    };
    let dir = &vm.work_dir;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let iso_root = dir.join("iso");
    if iso_root.exists() {
        fs::remove_dir_all(&iso_root)?;
    }
    let boot = iso_root.join("boot");
    fs::create_dir_all(boot.join("grub"))?;
    copy(&vm.kernel, &boot.join("basalt"))?;

    let mut modules = Vec::new();
    for (path, args) in &vm.modules {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("module path {} has no usable file name", path.display()))?
            .to_string();
        if name == "basalt" || name == "grub" {
            bail!("module file name {name} clashes with Basalt's own files in /boot");
        }
        // The same file may be several modules (one image, several VMs): copy it once.
        let target = boot.join(&name);
        if !target.exists() {
            copy(path, &target)?;
        } else if fs::read(path)? != fs::read(&target)? {
            bail!("two different module files are named {name}");
        }
        modules.push((name, args.clone()));
    }
    fs::write(boot.join("grub/grub.cfg"), grub_cfg(&vm.cmdline, &modules))?;

    let iso = dir.join("basalt.iso");
    let _ = fs::remove_file(&iso);
    let output = Command::new("grub-mkrescue")
        .current_dir(dir)
        .arg(format!("--install-modules={GRUB_MODULES}"))
        .args(["--locales=", "--fonts=", "--themes=", "-o", "basalt.iso", "iso/"])
        .output()
        .context("cannot run grub-mkrescue")?;
    if !output.status.success() || !iso.is_file() {
        bail!("grub-mkrescue failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    }

    fs::write(dir.join("basalt.bxrc"), bxrc(model, vm.smp, vm.mem_mb))?;
    fs::write(dir.join("cont.rc"), CONT_RC)?;
    for stale in ["serial.log", LOG_FILE] {
        let _ = fs::remove_file(dir.join(stale));
    }
    Ok(Launch {
        program: "bochs-bin".into(),
        args: ["-q", "-f", "basalt.bxrc", "-rc", "cont.rc"].map(String::from).to_vec(),
        cwd: dir.clone(),
        serial: SerialOut::File,
        serial_log: vm.serial_log(),
    })
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .map(drop)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHUTDOWN_STDERR: &str = "00000000000i[      ] using log file bochs.log
========================================================================
Bochs is exiting with the following message:
[UNMAP ] Shutdown port: shutdown requested
========================================================================
";

    #[test]
    fn basalts_shutdown_request() {
        assert_eq!(how_it_ended(SHUTDOWN_STDERR, ""), BochsEnd::Shutdown);
        let log = "00087440011i[APIC0 ] allocate APIC id=0\n\
                   00090000000e[CPU0  ] VMLAUNCH: invalid guest state\n\
                   00098296544p[UNMAP ] >>PANIC<< Shutdown port: shutdown requested\n\
                   00098296544i[SIM   ] quit_sim called with exit code 1\n";
        assert_eq!(how_it_ended("", log), BochsEnd::Shutdown);
        assert_eq!(how_it_ended(SHUTDOWN_STDERR, log), BochsEnd::Shutdown);
    }

    #[test]
    fn bochs_dying_is_quoted() {
        let stderr = "========================================================================
Bochs is exiting with the following message:
[CPU0  ] exception(): 3rd (13) exception with no resolution
========================================================================
";
        assert_eq!(
            how_it_ended(stderr, ""),
            BochsEnd::Died("[CPU0  ] exception(): 3rd (13) exception with no resolution".into())
        );
        let log = "00012345678e[CPU0  ] interrupt(): gate descriptor is not valid sys seg\n\
                   00012345679p[CPU0  ] >>PANIC<< exception(): 3rd (13) exception with no resolution\n";
        assert_eq!(
            how_it_ended("", log),
            BochsEnd::Died(
                "00012345679p[CPU0  ] >>PANIC<< exception(): 3rd (13) exception with no resolution".into()
            )
        );
        let fatal = "00000000000p[      ] >>PANIC<< ROM: couldn't open ROM image file\n";
        assert!(matches!(how_it_ended("", fatal), BochsEnd::Died(l) if l.contains("ROM image")));
    }

    #[test]
    fn no_word_from_bochs() {
        assert_eq!(how_it_ended("", ""), BochsEnd::Unknown);
        let log = "00090000000e[CPU0  ] VMLAUNCH: invalid guest state\n";
        assert_eq!(how_it_ended("00000000000i[PLUGIN] loaded\n", log), BochsEnd::Unknown);
    }

    #[test]
    fn grub_cfg_without_modules() {
        assert_eq!(
            grub_cfg("log=info test=boot", &[]),
            "set timeout=0\nset default=0\n\nmenuentry \"Basalt\" {\n    \
             multiboot2 /boot/basalt log=info test=boot\n    boot\n}\n"
        );
    }

    #[test]
    fn grub_cfg_with_modules_and_quoting() {
        let cfg =
            grub_cfg("msg=it's", &[("guest.elf".into(), "a=1 b".into()), ("disk".into(), String::new())]);
        assert!(cfg.contains("    multiboot2 /boot/basalt 'msg=it'\\''s'\n"));
        assert!(cfg.contains(
            "    module2 /boot/guest.elf /boot/guest.elf a=1 b\n    module2 /boot/disk /boot/disk\n    boot\n"
        ));
        let linux = grub_cfg("", &[("vmlinuz".into(), r#"name=l cmdline="console=ttyS0 quiet""#.into())]);
        assert!(
            linux.contains("    module2 /boot/vmlinuz /boot/vmlinuz name=l 'cmdline=console=ttyS0 quiet'\n"),
            "{linux}"
        );
        assert_eq!(grub_cfg("", &[]).lines().nth(4), Some("    multiboot2 /boot/basalt"));
    }

    #[test]
    fn bxrc_has_the_headless_recipe() {
        let rc = bxrc("ryzen", 2, 512);
        for line in [
            "display_library: rfb, options=\"timeout=0\"",
            "romimage: file=/usr/share/bochs/BIOS-bochs-latest, options=fastboot",
            "vgaromimage: file=/usr/share/vgabios/vgabios.bin",
            "cpu: model=ryzen, count=2, ips=50000000, reset_on_triple_fault=0",
            "megs: 512",
            "ata0-master: type=cdrom, path=basalt.iso, status=inserted",
            "boot: cdrom",
            "com1: enabled=1, mode=file, dev=serial.log",
            "sound: driver=dummy",
            "speaker: enabled=0",
            "clock: sync=none",
            "panic: action=fatal",
            "error: action=report",
            "log: bochs.log",
        ] {
            assert!(rc.lines().any(|l| l == line), "missing {line:?} in\n{rc}");
        }
    }
}
