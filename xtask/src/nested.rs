//! `nested-svm`: Basalt under Linux KVM's nested SVM, itself inside QEMU TCG.
//!
//! Three levels, one boot for every test:
//! - L0: `qemu-system-x86_64 -accel tcg -cpu EPYC` on this machine (SVM with NPT, emulated),
//!   booting Debian's packaged Linux kernel (linux-image-amd64) with an initramfs built here;
//! - L1: that Linux. Its /init (busybox-static's sh) loads irqbypass, ccp, kvm and kvm-amd
//!   (`nested=1`) from the same kernel package, then runs one inner
//!   `qemu-system-x86_64 -accel kvm -cpu host` (Debian's binary, every library `ldd` names and
//!   the dynamic loader, the firmware for `-kernel`, all in the initramfs) per guest test;
//! - L2: Basalt, which finds SVM with NPT as KVM offers it to a guest, and runs the test's
//!   guests (L3) as today's `svm` tests do.
//!
//! Each inner run's serial log and stderr reach L1's console between markers carrying a token
//! fresh for this outer boot; [`split`] cuts the console into runs and each run is judged by
//! `integration::check` with the inner boot's own token, exactly as a direct QEMU run.

use crate::cpio::Archive;
use crate::emulator::{self, Exit, Launch, SerialOut};
use crate::integration::{self, fresh_token, Observed};
use crate::platform::{Platform, Vm};
use crate::qemu;
use crate::tests_table::IntegrationTest;
use crate::util::{display_command, last_lines, shell_quote, xtask_dir};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What every marker line of the L1 console starts with: `BASALT-NESTED <token> <what> ...`.
pub const MARKER: &str = "BASALT-NESTED";

/// The kvm-amd module and, found in modules.dep, what it needs (irqbypass, ccp, kvm).
const KVM_MODULE: &str = "kvm-amd";

/// The applets /init uses, as links to busybox.
const APPLETS: &[&str] =
    &["sh", "mount", "insmod", "cat", "echo", "timeout", "poweroff", "cut", "dmesg", "grep"];

/// Firmware the inner QEMU needs for `-kernel` on the default PC machine with `-vga none
/// -nic none`, from Debian's seabios and qemu-system-data packages.
const FIRMWARE: &[&str] = &[
    "/usr/share/seabios/bios-256k.bin",
    "/usr/share/qemu/linuxboot_dma.bin",
    "/usr/share/qemu/multiboot_dma.bin",
    "/usr/share/qemu/kvmvapic.bin",
];

/// The L0 machine: AMD EPYC with SVM (the `svm` platform's CPU), 2 CPUs (the inner runs of
/// 2 and 3 vCPUs need more than one to be quick), 2 GiB (the initramfs unpacks to ~55 MB,
/// an inner VM has 512 MiB).
const L0_SMP: &str = "2";
const L0_MEM: &str = "2G";

/// L1 Linux's command line: the console on COM1, quiet (errors only, so the kernel's lines do
/// not land inside an inner run's output), powered off on panic.
const L1_CMDLINE: &str = "console=ttyS0 loglevel=3 panic=-1 mitigations=off";

/// How long L0 and L1 Linux may take to boot before the first inner run, on top of the runs'
/// own time limits.
const BOOT_ALLOWANCE: Duration = Duration::from_secs(120);

/// Debian's Linux kernel image and its module tree.
#[derive(Clone, Debug)]
pub struct Linux {
    pub version: String,
    pub vmlinuz: PathBuf,
    pub modules: PathBuf,
}

/// The newest `/boot/vmlinuz-<version>` that has `/lib/modules/<version>/modules.dep`.
pub fn find_linux() -> Result<Linux> {
    let mut versions: Vec<String> = std::fs::read_dir("/boot")
        .context("cannot read /boot")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("vmlinuz-").map(String::from))
        .filter(|v| Path::new("/lib/modules").join(v).join("modules.dep").exists())
        .collect();
    versions.sort_by_key(|v| version_key(v));
    let Some(version) = versions.pop() else {
        bail!("no /boot/vmlinuz-* with its /lib/modules tree (install linux-image-amd64)");
    };
    Ok(Linux {
        vmlinuz: PathBuf::from(format!("/boot/vmlinuz-{version}")),
        modules: PathBuf::from(format!("/lib/modules/{version}")),
        version,
    })
}

/// A version like 6.1.0-57-amd64 as its numbers, for ordering (6.1.0-9 before 6.1.0-57).
fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect()
}

/// The module files (paths relative to the module tree) to load, in order, for `module`:
/// its dependencies from `modules.dep` (which lists them so that each needs only those after
/// it, as modprobe reads them), then the module itself.
pub fn load_order(modules_dep: &str, module: &str) -> Result<Vec<String>> {
    let is_module = |path: &str| {
        let file = path.rsplit('/').next().unwrap_or(path);
        file.strip_prefix(module).is_some_and(|rest| rest.starts_with(".ko"))
    };
    let line = modules_dep
        .lines()
        .find(|l| l.split_once(':').is_some_and(|(path, _)| is_module(path)))
        .with_context(|| format!("{module} is not in modules.dep"))?;
    let (path, deps) = line.split_once(':').expect("found by its ':'");
    let mut order: Vec<String> = deps.split_whitespace().rev().map(String::from).collect();
    order.push(path.to_string());
    Ok(order)
}

/// The files `ldd` says a program needs, the dynamic loader included (the vDSO has no file).
/// A static program ("not a dynamic executable") needs none.
pub fn ldd_files(output: &str) -> Result<Vec<PathBuf>> {
    if output.contains("not a dynamic executable") || output.contains("statically linked") {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = match line.split_once("=>") {
            Some((name, target)) => {
                let target = target.trim();
                if target.starts_with("not found") {
                    bail!("ldd: {} not found", name.trim());
                }
                target.split_whitespace().next().unwrap_or("")
            }
            None => line.split_whitespace().next().unwrap_or(""),
        };
        // `linux-vdso.so.1 (0x...)` has no file, and neither has `=> (0x...)` on old glibc.
        if path.starts_with('/') {
            files.push(PathBuf::from(path));
        }
    }
    if files.is_empty() {
        bail!("ldd printed no libraries: {output:?}");
    }
    Ok(files)
}

fn ldd(program: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(program).output().context("cannot run ldd")?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    ldd_files(&text).with_context(|| format!("libraries of {}", program.display()))
}

/// `name` on PATH, resolved.
pub fn which(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} is not on PATH"))
}

/// Where a guest file goes in the initramfs (one copy per distinct host file).
fn guest_path(file: &Path) -> String {
    format!("/guests/{}", file.file_name().map(|n| n.to_string_lossy()).unwrap_or_default())
}

/// Basalt's image inside L1.
const BASALT: &str = "/basalt";
/// The firmware directory inside L1 (`-L`).
const FW_DIR: &str = "/fw";
/// The inner QEMU inside L1.
const INNER_QEMU: &str = "/usr/bin/qemu-system-x86_64";

/// One inner boot: the test it belongs to and the token on its kernel command line.
pub struct InnerRun<'a> {
    pub test: &'a IntegrationTest,
    pub token: String,
}

/// The inner QEMU's arguments for `run`: the `nested-svm` platform's (`-accel kvm -cpu host`),
/// with the paths inside L1.
pub fn inner_args(run: &InnerRun) -> Result<Vec<String>> {
    let test = run.test;
    let vm = Vm {
        platform: Platform::NestedSvm,
        kernel: PathBuf::from(BASALT),
        smp: test.smp,
        mem_mb: test.mem_mb,
        cmdline: format!("{} token={}", test.cmdline, run.token),
        modules: test
            .modules
            .iter()
            .map(|(path, args)| (PathBuf::from(guest_path(path)), args.clone()))
            .collect(),
        work_dir: PathBuf::from("/tmp"),
    };
    let mut args: Vec<String> = ["-L", FW_DIR, "-vga", "none", "-nic", "none"].map(String::from).to_vec();
    args.extend(qemu::args(&vm)?);
    Ok(args)
}

/// L1's /init: mount, load kvm-amd with nested=1, run every inner QEMU under a time limit,
/// print each one's serial log and stderr between markers, power off.
pub fn init_script(token: &str, modules: &[String], runs: &[InnerRun]) -> Result<String> {
    let mut s = String::new();
    let m = format!("{MARKER} {token}");
    s.push_str("#!/bin/sh\nexport PATH=/bin:/usr/bin\n");
    s.push_str("mount -t proc proc /proc\nmount -t sysfs sys /sys\nmount -t devtmpfs dev /dev\n");
    s.push_str("mount -t tmpfs tmp /tmp\n");
    let _ = writeln!(s, "echo \"{m} info L1 Linux $(cut -d' ' -f1 /proc/uptime) s after its start\"");
    for module in modules {
        let file = module.rsplit('/').next().unwrap_or(module);
        let params = if file.starts_with(KVM_MODULE) { " nested=1" } else { "" };
        let _ = writeln!(s, "insmod /lib/modules/{file}{params} || echo \"{m} info insmod {file} failed\"");
    }
    let _ = writeln!(
        s,
        "p=/sys/module/kvm_amd/parameters; echo \"{m} info kvm_amd nested=$(cat $p/nested) npt=$(cat $p/npt) \
         nrips=$(cat $p/nrips) avic=$(cat $p/avic) vgif=$(cat $p/vgif)\""
    );
    let _ = writeln!(s, "[ -c /dev/kvm ] || echo \"{m} info no /dev/kvm: KVM did not load\"");
    // `timeout -s KILL` exits 137 when it had to kill; the log says what QEMU printed by then.
    // A run killed with not one byte of output is L1's KVM stuck in KVM_RUN before Basalt's
    // first line (seen now and then under TCG, on any test): it runs once more, and says so.
    let _ = writeln!(
        s,
        "run() {{ n=$1; t=$2; shift 2\n\
         \x20 a=$(cut -d' ' -f1 /proc/uptime)\n\
         \x20 timeout -s KILL \"$t\" \"$@\" </dev/null >/tmp/serial 2>/tmp/stderr; rc=$?\n\
         \x20 if [ $rc = 137 ] && [ ! -s /tmp/serial ]; then\n\
         \x20   echo \"{m} info $n: killed after $t s with no output at all (L1 stuck in KVM_RUN): run again\"\n\
         \x20   timeout -s KILL \"$t\" \"$@\" </dev/null >/tmp/serial 2>/tmp/stderr; rc=$?\n\
         \x20 fi\n\
         \x20 b=$(cut -d' ' -f1 /proc/uptime)\n\
         \x20 echo \"{m} begin $n\"; cat /tmp/serial; echo\n\
         \x20 echo \"{m} stderr $n\"; cat /tmp/stderr; echo\n\
         \x20 echo \"{m} end $n status=$rc start=$a end=$b\"\n\
         }}"
    );
    for run in runs {
        let mut words =
            vec![run.test.name.clone(), run.test.timeout.as_secs().to_string(), INNER_QEMU.into()];
        words.extend(inner_args(run)?);
        let _ = writeln!(s, "run {}", words.iter().map(|w| shell_quote(w)).collect::<Vec<_>>().join(" "));
    }
    // KVM's own complaints about the guest (rejected VMCBs and the like), for the record.
    let _ =
        writeln!(s, "dmesg | grep -i -E 'kvm|svm' | while read -r l; do echo \"{m} info dmesg $l\"; done");
    let _ = writeln!(s, "echo \"{m} done\"\npoweroff -f");
    Ok(s)
}

/// Everything the initramfs holds, as (path inside, host file), plus the generated /init.
fn build_initramfs(
    linux: &Linux,
    kernel: &Path,
    script: &str,
    modules: &[String],
    tests: &[&IntegrationTest],
) -> Result<Vec<u8>> {
    let mut a = Archive::new();
    for dir in ["proc", "sys", "dev", "tmp", "bin", "usr/bin"] {
        a.dir(dir)?;
    }
    a.char_device("dev/console", 0o600, 5, 1)?;
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let busybox = which("busybox")?;
    a.file("bin/busybox", 0o755, &read(&busybox)?)?;
    for applet in APPLETS {
        a.symlink(&format!("bin/{applet}"), "busybox")?;
    }
    a.file("init", 0o755, script.as_bytes())?;
    for module in modules {
        let file = module.rsplit('/').next().unwrap_or(module);
        if !file.ends_with(".ko") {
            bail!(
                "{file} is compressed; the nested initramfs takes the uncompressed modules of Debian 12's \
                 linux-image-amd64"
            );
        }
        a.file(&format!("lib/modules/{file}"), 0o644, &read(&linux.modules.join(module))?)?;
    }
    let qemu = which("qemu-system-x86_64")?;
    a.file(INNER_QEMU, 0o755, &read(&qemu)?)?;
    // The libraries and loader at the paths ldd resolved them to; the loader finds them there
    // through its built-in multiarch directories.
    let mut libs: BTreeSet<PathBuf> = ldd(&qemu)?.into_iter().collect();
    libs.extend(ldd(&busybox)?);
    for lib in &libs {
        a.file(&lib.to_string_lossy(), 0o755, &read(lib)?)?;
    }
    for fw in FIRMWARE {
        let name = Path::new(fw).file_name().expect("a file name").to_string_lossy();
        a.file(&format!("{FW_DIR}/{name}"), 0o644, &read(Path::new(fw))?)?;
    }
    a.file(BASALT, 0o755, &read(kernel)?)?;
    let mut guests = BTreeSet::new();
    for test in tests {
        for (path, _) in &test.modules {
            if guests.insert(guest_path(path)) {
                a.file(&guest_path(path), 0o755, &read(path)?)?;
            }
        }
    }
    Ok(a.finish())
}

/// One inner run as L1's console showed it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Segment {
    pub name: String,
    pub serial: String,
    pub stderr: String,
    /// The inner QEMU's exit status (137: killed at its time limit); `None` if its end
    /// marker never came.
    pub status: Option<i32>,
    /// Seconds of L1 time it ran.
    pub seconds: Option<f64>,
}

/// What the L1 console held: the inner runs, and the `info` lines.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Console {
    pub runs: Vec<Segment>,
    pub info: Vec<String>,
    pub done: bool,
}

/// Cuts L1's console into the inner runs. Only lines that start with `BASALT-NESTED <token> `
/// are markers; between `begin` and `stderr` is the run's serial log, between `stderr` and
/// `end` its stderr (each with the blank line /init adds so a marker starts a line).
pub fn split(console: &str, token: &str) -> Console {
    enum Part {
        Outside,
        Serial,
        Stderr,
    }
    let prefix = format!("{MARKER} {token} ");
    let mut out = Console::default();
    let mut part = Part::Outside;
    for line in console.lines().map(|l| l.trim_end_matches('\r')) {
        let Some(rest) = line.strip_prefix(&prefix) else {
            let text = format!("{line}\n");
            match (&part, out.runs.last_mut()) {
                (Part::Serial, Some(run)) => run.serial.push_str(&text),
                (Part::Stderr, Some(run)) => run.stderr.push_str(&text),
                _ => {}
            }
            continue;
        };
        let (what, args) = rest.split_once(' ').unwrap_or((rest, ""));
        match what {
            "info" => out.info.push(args.to_string()),
            "begin" => {
                out.runs.push(Segment { name: args.to_string(), ..Segment::default() });
                part = Part::Serial;
            }
            "stderr" => part = Part::Stderr,
            "end" => {
                if let Some(run) = out.runs.last_mut() {
                    let field = |key: &str| {
                        args.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                    };
                    run.status = field("status").and_then(|v| v.parse().ok());
                    let time = |key| field(key).and_then(|v| v.parse::<f64>().ok());
                    run.seconds = time("start").zip(time("end")).map(|(a, b)| b - a);
                }
                part = Part::Outside;
            }
            "done" => out.done = true,
            _ => {}
        }
    }
    out
}

/// An inner run's end as `integration::check` reads QEMU's: its exit status, or killed at the
/// time limit (`timeout -s KILL` exits 137).
fn exit_of(segment: &Segment, limit: Duration) -> Exit {
    match segment.status {
        Some(137) => Exit::TimedOut(limit),
        Some(code) => Exit::Exited(Some(code)),
        None => Exit::Exited(None),
    }
}

/// L0's QEMU command.
fn outer_launch(linux: &Linux, initramfs: &Path, work_dir: &Path) -> Launch {
    let args = [
        // One TCG thread for L0's two CPUs: with multi-threaded TCG, L1 Linux now and then hung
        // for minutes inside KVM_RUN (soft lockups on CPU 0 in the inner QEMU, at a different
        // inner run each time, with Basalt commits old and new alike); round-robin TCG has
        // not hung in our runs and costs little, the inner runs being sequential.
        "-accel",
        "tcg,thread=single",
        "-cpu",
        qemu::TCG_EPYC,
        "-smp",
        L0_SMP,
        "-m",
        L0_MEM,
        "-kernel",
        &linux.vmlinuz.to_string_lossy(),
        "-initrd",
        &initramfs.to_string_lossy(),
        "-append",
        L1_CMDLINE,
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-nic",
        "none",
        "-no-reboot",
    ]
    .map(String::from)
    .to_vec();
    Launch {
        program: "qemu-system-x86_64".into(),
        args,
        cwd: work_dir.to_path_buf(),
        serial: SerialOut::Stdout,
        serial_log: work_dir.join("serial.log"),
    }
}

/// Runs every `nested-svm` test in one L0 boot and prints one line per test, as
/// `integration::run_all` does. Returns (passed, failed).
pub fn run_all(tests: &[IntegrationTest], kernel: Result<&Path, &str>) -> (u64, u64) {
    if tests.is_empty() {
        return (0, 0);
    }
    let kernel = match kernel {
        Ok(kernel) => kernel,
        Err(why) => return fail_all(tests, why),
    };
    match run_nested(tests, kernel) {
        Ok(counts) => counts,
        Err(err) => fail_all(tests, &format!("{err:#}")),
    }
}

fn fail_all(tests: &[IntegrationTest], why: &str) -> (u64, u64) {
    let text: String = tests.iter().map(|test| integration::failed_line(test, why)).collect();
    integration::emit(&text);
    (0, tests.len() as u64)
}

fn run_nested(tests: &[IntegrationTest], kernel: &Path) -> Result<(u64, u64)> {
    let started = Instant::now();
    let linux = find_linux()?;
    let work_dir = xtask_dir().join("nested-svm");
    std::fs::create_dir_all(&work_dir)?;
    let dep = std::fs::read_to_string(linux.modules.join("modules.dep"))
        .with_context(|| format!("cannot read {}/modules.dep", linux.modules.display()))?;
    let modules = load_order(&dep, KVM_MODULE)?;
    let token = fresh_token();
    let runs: Vec<InnerRun> = tests.iter().map(|test| InnerRun { test, token: fresh_token() }).collect();
    let script = init_script(&token, &modules, &runs)?;
    let refs: Vec<&IntegrationTest> = tests.iter().collect();
    let initramfs = build_initramfs(&linux, kernel, &script, &modules, &refs)?;
    let initramfs_path = work_dir.join("initramfs.cpio");
    std::fs::write(&initramfs_path, &initramfs)?;
    std::fs::write(work_dir.join("init"), &script)?;
    let launch = outer_launch(&linux, &initramfs_path, &work_dir);
    println!(
        "xtask: nested: L0 QEMU TCG boots Linux {} (initramfs {} MiB, {} inner runs): {}",
        linux.version,
        initramfs.len() >> 20,
        runs.len(),
        display_command(&launch.program, &launch.args)
    );
    // Room for two of the silent runs to be run again.
    let retries = 2 * tests.iter().map(|t| t.timeout).max().unwrap_or_default();
    let limit =
        BOOT_ALLOWANCE + retries + tests.iter().map(|t| t.timeout + Duration::from_secs(5)).sum::<Duration>();
    let done = format!("{MARKER} {token} done");
    let outcome = emulator::run_captured(&launch, limit, &done, Duration::from_secs(10))?;
    let console = split(&outcome.serial, &token);
    for info in &console.info {
        println!("xtask: nested: {info}");
    }
    let (mut passed, mut failed) = (0, 0);
    for run in &runs {
        let test = run.test;
        let Some(segment) = console.runs.iter().find(|s| s.name == test.name) else {
            integration::emit(&integration::failed_line(
                test,
                &format!("no output from its inner run: L0 ended by {:?} before it", outcome.exit),
            ));
            failed += 1;
            continue;
        };
        let log = work_dir.join(format!("{}.serial.log", test.name));
        let _ = std::fs::write(&log, &segment.serial);
        let verdict = integration::check(
            test,
            &Observed {
                token: &run.token,
                serial: &segment.serial,
                exit: exit_of(segment, test.timeout),
                bochs: None,
            },
        );
        let elapsed = Duration::from_secs_f64(segment.seconds.unwrap_or(0.0).max(0.0));
        let (ok, text) = integration::report(test, &verdict, elapsed, &segment.serial, &segment.stderr, &log);
        integration::emit(&text);
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    let inner: f64 = console.runs.iter().filter_map(|s| s.seconds).sum();
    println!(
        "xtask: nested: {} inner runs took {inner:.1} s of L1 time; the whole nested set took {:.1} s \
         (initramfs, L0 boot, L1 Linux and the runs)",
        console.runs.len(),
        started.elapsed().as_secs_f64()
    );
    if !console.done {
        let mut text = format!(
            "xtask: nested: L1 did not finish ({}); last console lines ({}):\n",
            match outcome.exit {
                Exit::TimedOut(t) => format!("killed after {} s", t.as_secs()),
                other => format!("{other:?}"),
            },
            launch.serial_log.display()
        );
        for line in last_lines(&outcome.serial, 20) {
            text.push_str(&format!("    {line}\n"));
        }
        integration::emit(&text);
    }
    Ok((passed, failed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests_table::Expect;

    const DEP: &str = "kernel/arch/x86/kvm/kvm.ko: kernel/virt/lib/irqbypass.ko\n\
        kernel/arch/x86/kvm/kvm-intel.ko: kernel/arch/x86/kvm/kvm.ko kernel/virt/lib/irqbypass.ko\n\
        kernel/arch/x86/kvm/kvm-amd.ko: kernel/drivers/crypto/ccp/ccp.ko kernel/arch/x86/kvm/kvm.ko kernel/virt/lib/irqbypass.ko\n\
        kernel/drivers/crypto/ccp/ccp.ko:\n";

    #[test]
    fn modules_load_after_their_dependencies() {
        assert_eq!(
            load_order(DEP, "kvm-amd").unwrap(),
            [
                "kernel/virt/lib/irqbypass.ko",
                "kernel/arch/x86/kvm/kvm.ko",
                "kernel/drivers/crypto/ccp/ccp.ko",
                "kernel/arch/x86/kvm/kvm-amd.ko"
            ]
        );
        assert_eq!(load_order(DEP, "ccp").unwrap(), ["kernel/drivers/crypto/ccp/ccp.ko"]);
        // `kvm` is not `kvm-amd`'s prefix match, and compressed names are found too.
        assert_eq!(
            load_order(DEP, "kvm").unwrap(),
            ["kernel/virt/lib/irqbypass.ko", "kernel/arch/x86/kvm/kvm.ko"]
        );
        assert_eq!(
            load_order("a/kvm-amd.ko.xz: a/kvm.ko.xz\n", "kvm-amd").unwrap(),
            ["a/kvm.ko.xz", "a/kvm-amd.ko.xz"]
        );
        assert!(load_order(DEP, "kvm-hygon").is_err());
    }

    #[test]
    fn ldd_output_gives_the_files() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f7e)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f7d)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f7f)\n";
        assert_eq!(
            ldd_files(out).unwrap(),
            [
                "/lib/x86_64-linux-gnu/libz.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
        assert!(ldd_files("\tnot a dynamic executable\n").unwrap().is_empty());
        assert!(ldd_files("\tlibfoo.so.1 => not found\n").unwrap_err().to_string().contains("libfoo.so.1"));
        assert!(ldd_files("").is_err());
    }

    const T: &str = "0a1b";

    #[test]
    fn the_console_splits_into_runs() {
        let console = "[    0.000000] Linux version 6.1\r\n\
            BASALT-NESTED 0a1b info kvm_amd nested=1 npt=Y\r\n\
            BASALT-NESTED 0a1b begin cpuid\r\n\
            boot\r\r\n\
            BASALT-NESTED 0a1b: PASS\r\n\
            \r\n\
            BASALT-NESTED 0a1b stderr cpuid\r\n\
            qemu: warning\r\n\
            \r\n\
            BASALT-NESTED 0a1b end cpuid status=33 start=3.50 end=5.25\r\n\
            guest x| BASALT-NESTED 0a1b begin forged\r\n\
            BASALT-NESTED ffff begin other-token\r\n\
            BASALT-NESTED 0a1b begin hung\r\n\
            half a li";
        let c = split(console, T);
        assert_eq!(c.info, ["kvm_amd nested=1 npt=Y"]);
        assert!(!c.done);
        assert_eq!(c.runs.len(), 2);
        assert_eq!(
            c.runs[0],
            Segment {
                name: "cpuid".into(),
                serial: "boot\nBASALT-NESTED 0a1b: PASS\n\n".into(),
                stderr: "qemu: warning\n\n".into(),
                status: Some(33),
                seconds: Some(1.75),
            }
        );
        assert_eq!(c.runs[1].name, "hung");
        assert_eq!(c.runs[1].serial, "half a li\n");
        assert_eq!(c.runs[1].status, None);
        assert!(split("BASALT-NESTED 0a1b done\n", T).done);
        assert_eq!(exit_of(&c.runs[0], Duration::from_secs(60)), Exit::Exited(Some(33)));
        let killed = Segment { status: Some(137), ..Segment::default() };
        assert_eq!(exit_of(&killed, Duration::from_secs(60)), Exit::TimedOut(Duration::from_secs(60)));
    }

    #[test]
    fn a_split_run_is_judged_like_a_direct_one() {
        let test = IntegrationTest::new(Platform::NestedSvm, "cpuid", "log=info test=guests")
            .must_contain(&["VM cpuid: PASS"]);
        let console = "BASALT-NESTED 0a1b begin cpuid\n\
            VM cpuid: PASS\r\n\
            BASALT-TEST-RESULT 5eb0: PASS\r\n\
            BASALT-NESTED 0a1b end cpuid status=33 start=1 end=2\n";
        let c = split(console, T);
        let run = &c.runs[0];
        let observe =
            |token| Observed { token, serial: &run.serial, exit: exit_of(run, test.timeout), bochs: None };
        assert_eq!(integration::check(&test, &observe("5eb0")), Ok(()));
        assert!(integration::check(&test, &observe("5eb1")).is_err());
        let fail = IntegrationTest { expect: Expect::Fail, ..test.clone() };
        assert!(integration::check(&fail, &observe("5eb0")).is_err());
    }

    #[test]
    fn the_init_script_runs_each_test_under_kvm() {
        let test = IntegrationTest::new(Platform::NestedSvm, "side-by-side", "log=info test=guests")
            .smp(3)
            .module("/w/target/x86_64-unknown-none/release/cpuid", "name=nowhere pcpus=7");
        let runs = [InnerRun { test: &test, token: "77".into() }];
        let script = init_script(T, &load_order(DEP, "kvm-amd").unwrap(), &runs).unwrap();
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(script.contains("insmod /lib/modules/irqbypass.ko ||"));
        assert!(script.contains("insmod /lib/modules/kvm-amd.ko nested=1 ||"));
        assert!(script.find("kvm.ko ").unwrap() < script.find("kvm-amd.ko ").unwrap());
        let run = script.lines().find(|l| l.starts_with("run side-by-side")).unwrap();
        assert_eq!(
            run,
            "run side-by-side 60 /usr/bin/qemu-system-x86_64 -L /fw -vga none -nic none -accel kvm -cpu host \
             -smp 3 -m 512 -kernel /basalt -append 'log=info test=guests token=77' \
             -initrd '/guests/cpuid name=nowhere pcpus=7' -display none -serial stdio -monitor none \
             -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=4"
        );
        assert!(script.ends_with("echo \"BASALT-NESTED 0a1b done\"\npoweroff -f\n"));
        assert!(script.contains("run again"));
        // The shell reads it (syntax only).
        let check = std::process::Command::new("sh").args(["-n", "-c", &script]).output().unwrap();
        assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    }

    #[test]
    fn versions_sort_by_number() {
        let mut v = vec!["6.1.0-57-amd64", "6.1.0-9-amd64", "6.12.1-amd64"];
        v.sort_by_key(|v| version_key(v));
        assert_eq!(v, ["6.1.0-9-amd64", "6.1.0-57-amd64", "6.12.1-amd64"]);
    }
}
