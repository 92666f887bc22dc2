//! `cargo xtask bench`: deterministic instruction counts of Basalt's exit paths.
//!
//! Under QEMU with `-icount shift=0,sleep=off` the TSC counts executed instructions (guest and
//! Basalt together), identically from run to run; under Bochs with `clock: sync=none` it does
//! too. The `bench` guest reads the TSC around 1000 round trips of each exiting instruction and
//! prints `BENCH <row> total=<ticks> iters=<n>`; the row `empty` (the same loop with nothing
//! in it) is subtracted. The `workload` guest is a whole-guest figure, measured under Basalt and
//! booted directly by the same QEMU (its multiboot header and trampoline; no Basalt, no exits).
//! The kernel's per-VM lines give the exits by reason and the memory charged; its boot summary
//! the memory Basalt uses before any VM.
//!
//! To add a micro-benchmark: one line in the guest's `ROWS` (tests/src/bin/bench.rs) and one
//! [`Row`] in [`ROWS`] here.

use crate::emulator::{self, Exit, Launch, SerialOut};
use crate::platform::{Platform, Vm};
use crate::util::{workspace_root, xtask_dir};
use crate::{bochs, guests, integration, kernel, qemu};
use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One micro-benchmark row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// The name in the guest's `BENCH` line.
    pub key: &'static str,
    pub label: &'static str,
    /// The most instructions per round trip the issue asks for under QEMU SVM.
    pub target: Option<f64>,
    /// The path this row measures.
    pub note: &'static str,
}

/// The micro-benchmark rows, in table order.
pub const ROWS: &[Row] = &[
    Row {
        key: "cpuid",
        label: "CPUID exit",
        target: Some(100.0),
        note: "CPUID leaf 0: exit, dispatch, the VM's precomputed CPUID answer, RIP += 2, re-entry",
    },
    Row {
        key: "hypercall",
        label: "VMCALL/VMMCALL exit",
        target: None,
        note: "hypercall HC_VERSION (RAX=0): exit, dispatch, RAX = ABI version, skip, re-entry",
    },
    Row {
        key: "pio-out",
        label: "port I/O exit (OUT)",
        target: Some(150.0),
        note: "32-bit OUT to the scratch port 0xE4: IOIO exit, decode, scratch register write",
    },
    Row {
        key: "pio-in",
        label: "port I/O exit (IN)",
        target: Some(150.0),
        note: "32-bit IN from the scratch port 0xE4: IOIO exit, decode, RAX = scratch register",
    },
    Row {
        key: "msr-read",
        label: "MSR read exit",
        target: Some(120.0),
        note: "RDMSR of the scratch MSR 0x4B42_0000: MSR exit, EDX:EAX = emulated value",
    },
    Row {
        key: "msr-write",
        label: "MSR write exit",
        target: Some(120.0),
        note: "WRMSR of the scratch MSR 0x4B42_0000: MSR exit, emulated value = EDX:EAX",
    },
    Row {
        key: "mmio-write",
        label: "emulated MMIO write",
        target: Some(400.0),
        note: "32-bit MOV to the test device: nested page fault, fetch at RIP through the guest's tables, basalt-emu decode and execute, device write",
    },
    Row {
        key: "mmio-read",
        label: "emulated MMIO read",
        target: Some(400.0),
        note: "32-bit MOV from the test device: as the write, the value into EAX",
    },
    Row {
        key: "irq",
        label: "injected interrupt",
        target: None,
        note: "the RaiseInterrupt ucall (a port exit), then STI: the event queue injects the vector and the guest's handler runs and IRETs",
    },
    Row {
        key: "xapic-read",
        label: "xAPIC register read (MMIO)",
        target: Some(400.0),
        note: "32-bit MOV from the LAPIC version register: nested page fault on the APIC page, basalt-emu decode, LAPIC model read",
    },
    Row {
        key: "x2apic-eoi",
        label: "EOI through x2APIC",
        target: Some(150.0),
        note: "WRMSR 0x80B: MSR exit, LAPIC EOI (nothing in service), re-entry",
    },
    Row {
        key: "timer-latency",
        label: "LAPIC timer expiry to handler",
        target: Some(500.0),
        note: "TSC-deadline timer: from the deadline to the first instruction of the guest's handler (host timer, exit, LAPIC fire, injection); a latency, not a round trip",
    },
    Row {
        key: "ipi-latency",
        label: "IPI: ICR write to handler",
        target: Some(800.0),
        note: "a fixed self-IPI through the x2APIC ICR (WRMSR 0x830) to the handler: MSR exit, LAPIC ICR, injection at re-entry; a latency (a self-IPI: the bench VM has one vCPU)",
    },
];

/// Rows that report a latency per iteration: their total is not a loop around an instruction,
/// so the empty loop is not subtracted.
const LATENCY_ROWS: &[&str] = &["timer-latency", "ipi-latency"];

/// The guest row subtracted from every other: the measuring loop alone.
const EMPTY: &str = "empty";
/// The whole-guest row (`iters` there is the number of guest page faults).
const WORKLOAD: &str = "workload";
/// The binary size target (loaded image) and the per-VM fixed memory target.
const BINARY_TARGET_BYTES: u64 = 1 << 20;
const VM_FIXED_TARGET_KIB: f64 = 256.0;

/// QEMU's deterministic-counting flags (PLATFORM.md).
pub const ICOUNT_ARGS: &[&str] =
    &["-icount", "shift=0,sleep=off", "-seed", "1", "-rtc", "base=2024-01-01T00:00:00,clock=vm"];

/// The two backends measured, as named in the JSON keys.
const QEMU_SVM: &str = "qemu-svm";
const BOCHS_VMX: &str = "bochs-vmx";
const QEMU_BARE: &str = "qemu-bare";
/// The Linux boot rows' key.
const LINUX: &str = "linux-boot";
/// The same two runs with every speculative-execution mitigation off (`mitigations=off`).
const QEMU_SVM_OFF: &str = "qemu-svm-mitigations-off";
const BOCHS_VMX_OFF: &str = "bochs-vmx-mitigations-off";
/// The kernel command-line switch of the second runs.
pub const MITIGATIONS_OFF: &str = "mitigations=off";

/// One `BENCH` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchLine {
    pub row: String,
    pub total: u64,
    pub iters: u64,
}

/// Parses `BENCH <row> total=<n> iters=<n>` anywhere in a line (the kernel prints a VM's
/// console lines as `guest <name>| <text>`).
pub fn parse_bench_line(line: &str) -> Option<BenchLine> {
    let rest = line.trim_end_matches('\r').split_once("BENCH ")?.1;
    let mut words = rest.split_whitespace();
    let row = words.next()?.to_string();
    let (mut total, mut iters) = (None, None);
    for word in words {
        match word.split_once('=') {
            Some(("total", v)) => total = v.parse().ok(),
            Some(("iters", v)) => iters = v.parse().ok(),
            _ => {}
        }
    }
    Some(BenchLine { row, total: total?, iters: iters? })
}

/// The kernel's line after each VM: `VM <name>: exits <stats>; <n> KiB charged of <q> KiB quota`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmStats {
    pub name: String,
    /// `total 6309: cpuid 1051, io 2108`.
    pub exits: String,
    pub charged_kib: u64,
}

pub fn parse_vm_stats(line: &str) -> Option<VmStats> {
    let rest = line.trim_end_matches('\r').split_once("VM ")?.1;
    let (name, rest) = rest.split_once(": exits ")?;
    let (exits, rest) = rest.split_once("; ")?;
    let charged_kib = rest.strip_suffix(" KiB quota")?.split_once(" KiB charged of ")?.0.parse().ok()?;
    Some(VmStats { name: name.to_string(), exits: exits.to_string(), charged_kib })
}

/// `memory in use by Basalt: <n> KiB` from the boot summary.
pub fn parse_basalt_memory(serial: &str) -> Option<u64> {
    serial
        .lines()
        .find_map(|l| l.split_once("memory in use by Basalt: ")?.1.trim().strip_suffix(" KiB")?.parse().ok())
}

/// Instructions per round trip of each row: (row total − empty total) / iterations (a latency
/// row: total / iterations).
pub fn per_round_trip(lines: &[BenchLine]) -> Result<BTreeMap<String, f64>> {
    let empty = lines.iter().find(|l| l.row == EMPTY).context("no `BENCH empty` line")?;
    let mut out = BTreeMap::new();
    for l in lines.iter().filter(|l| l.row != EMPTY && l.row != WORKLOAD) {
        if l.iters != empty.iters || l.iters == 0 {
            bail!("row {} ran {} iterations, the empty loop {}", l.row, l.iters, empty.iters);
        }
        let base = if LATENCY_ROWS.contains(&l.row.as_str()) { 0.0 } else { empty.total as f64 };
        out.insert(l.row.clone(), (l.total as f64 - base) / l.iters as f64);
    }
    Ok(out)
}

/// The span of physical memory the kernel image occupies once loaded: from its lowest PT_LOAD
/// address to the end of its highest (code, data, bss and the boot stack), read with the same
/// ELF reader the loaders use. The file's own size is not a footprint: it holds debug info
/// whose size depends on the build directory.
pub fn loaded_span(bytes: &[u8]) -> Result<u64> {
    let image = basalt_boot::elf::ElfImage::parse(bytes).map_err(|e| anyhow::anyhow!("kernel ELF: {e}"))?;
    let low = image.segments().map(|s| s.paddr).min().unwrap_or(0);
    let high = image.segments().map(|s| s.end()).max().unwrap_or(0);
    Ok(high - low)
}

/// Fixed and per-GiB memory charged to a VM beyond its RAM, from two VMs of `small` and `big`
/// MiB of RAM: the overhead grows linearly in RAM (nested page tables); the fixed part is what
/// is left at zero RAM.
pub fn vm_overhead(small: (u64, u64), big: (u64, u64)) -> (f64, f64) {
    let over = |(mib, kib): (u64, u64)| kib as f64 - (mib * 1024) as f64;
    let per_mib = (over(big) - over(small)) / (big.0 - small.0) as f64;
    (over(small) - per_mib * small.0 as f64, per_mib * 1024.0)
}

/// Everything one run of `cargo xtask bench` measured, as flat `metric -> value` pairs plus
/// the exits by reason; this is what target/bench.json holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Results {
    pub metrics: BTreeMap<String, f64>,
    pub exits: BTreeMap<String, String>,
}

impl Results {
    pub fn to_json(&self) -> Value {
        let metrics: Map<String, Value> = self.metrics.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let exits: Map<String, Value> = self.exits.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        json!({ "schema": 1, "metrics": metrics, "exits": exits })
    }

    pub fn from_json(v: &Value) -> Result<Results> {
        let mut r = Results::default();
        let metrics = v.get("metrics").and_then(Value::as_object).context("no \"metrics\" object")?;
        for (k, v) in metrics {
            r.metrics.insert(k.clone(), v.as_f64().with_context(|| format!("metric {k} is not a number"))?);
        }
        if let Some(exits) = v.get("exits").and_then(Value::as_object) {
            for (k, v) in exits {
                r.exits.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
            }
        }
        Ok(r)
    }

    fn get(&self, key: &str) -> Option<f64> {
        self.metrics.get(key).copied()
    }
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Each metric's change from `old` to `new`, one line each.
pub fn compare(old: &Results, new: &Results) -> String {
    let mut out = String::new();
    for (key, &now) in &new.metrics {
        let line = match old.get(key) {
            None => format!("{key}: {} (new)", fmt_num(now)),
            Some(before) if before == now => format!("{key}: {} (unchanged)", fmt_num(now)),
            Some(before) => {
                let pct = if before != 0.0 {
                    format!(", {:+.1}%", (now - before) / before * 100.0)
                } else {
                    String::new()
                };
                let sign = if now > before { "+" } else { "" };
                format!(
                    "{key}: {} -> {} ({sign}{}{pct})",
                    fmt_num(before),
                    fmt_num(now),
                    fmt_num(now - before)
                )
            }
        };
        let _ = writeln!(out, "{line}");
    }
    for key in old.metrics.keys().filter(|k| !new.metrics.contains_key(*k)) {
        let _ = writeln!(out, "{key}: gone (was {})", fmt_num(old.metrics[key]));
    }
    out
}

fn cell(r: &Results, key: &str) -> String {
    r.get(key).map_or_else(|| "-".into(), fmt_num)
}

fn target_cell(target: Option<f64>, got: Option<f64>) -> String {
    match (target, got) {
        (None, _) => "-".into(),
        (Some(t), Some(v)) if v <= t => format!("<= {} met", fmt_num(t)),
        (Some(t), Some(v)) => format!("<= {} (+{} over)", fmt_num(t), fmt_num(v - t)),
        (Some(t), None) => format!("<= {}", fmt_num(t)),
    }
}

/// The table: one line per row, as Markdown (the README shows it as is).
pub fn table(r: &Results) -> String {
    let mut t = String::from(
        "| row | svm / QEMU | vmx / Bochs | target (QEMU) | what it measures |\n| --- | ---: | ---: | --- | --- |\n",
    );
    let mut line = |label: &str, svm: String, vmx: String, target: String, note: &str| {
        let _ = writeln!(t, "| {label} | {svm} | {vmx} | {target} | {note} |");
    };
    for row in ROWS {
        let svm = format!("{QEMU_SVM}/{}", row.key);
        line(
            row.label,
            cell(r, &svm),
            cell(r, &format!("{BOCHS_VMX}/{}", row.key)),
            target_cell(row.target, r.get(&svm)),
            row.note,
        );
    }
    let wl = format!("{QEMU_SVM}/{WORKLOAD}");
    line(
        "workload guest, under Basalt",
        cell(r, &wl),
        cell(r, &format!("{BOCHS_VMX}/{WORKLOAD}")),
        "-".into(),
        "instructions from the guest's first to last TSC read (page faults, port I/O, TSC reads)",
    );
    let bare = format!("{QEMU_BARE}/{WORKLOAD}");
    line(
        "workload guest, bare QEMU",
        cell(r, &bare),
        "-".into(),
        "-".into(),
        &bare_note(r.get(&bare), r.get(&wl)),
    );
    let linux = format!("{QEMU_SVM}/{LINUX}");
    let wall = |k: &str| {
        r.get(&format!("{k}/{LINUX}-wall-s")).map_or("-".into(), |s| format!("{s:.1} s of wall time"))
    };
    line(
        "Linux boot to /init, under Basalt",
        cell(r, &linux),
        "-".into(),
        "-".into(),
        &format!(
            "instructions from the VM's start to /init's first TSC read ({}; exits below)",
            wall(QEMU_SVM)
        ),
    );
    let bare_linux = format!("{QEMU_BARE}/{LINUX}");
    let ratio = match (r.get(&linux), r.get(&bare_linux)) {
        (Some(v), Some(b)) if b > 0.0 => format!("{:.3}x", v / b),
        _ => "-".into(),
    };
    line(
        "Linux boot to /init, bare QEMU",
        cell(r, &bare_linux),
        "-".into(),
        format!("Basalt <= 1.10x: {ratio}"),
        &format!(
            "the same kernel and initramfs booted by QEMU itself (`-kernel`, SeaBIOS included; {})",
            wall(QEMU_BARE)
        ),
    );
    let loaded = r.get("footprint/binary-loaded-bytes");
    line(
        "binary, loaded (bytes)",
        cell(r, "footprint/binary-loaded-bytes"),
        "same".into(),
        target_cell(Some(BINARY_TARGET_BYTES as f64), loaded),
        "the kernel ELF's PT_LOAD span (code, data, bss, boot stack)",
    );
    line(
        "memory before any VM (KiB)",
        cell(r, &format!("{QEMU_SVM}/basalt-memory-kib")),
        cell(r, &format!("{BOCHS_VMX}/basalt-memory-kib")),
        "-".into(),
        "kernel image + every frame Basalt allocated at boot (16 MiB heap, page tables, per-CPU pages)",
    );
    let fixed = format!("{QEMU_SVM}/vm-fixed-kib");
    line(
        "memory per VM, fixed (KiB)",
        cell(r, &fixed),
        "-".into(),
        target_cell(Some(VM_FIXED_TARGET_KIB), r.get(&fixed)),
        "charged beyond guest RAM at zero RAM: VMCB, host save page, IOPM, MSRPM, NPT root levels",
    );
    line(
        "memory per VM, per GiB of RAM (KiB)",
        cell(r, &format!("{QEMU_SVM}/vm-per-gib-kib")),
        "-".into(),
        "-".into(),
        "nested page tables per GiB of guest RAM (2 MiB pages), from VMs of 16 and 1040 MiB",
    );
    t
}

/// The exit rows with the mitigations on (Basalt's decision for the emulated CPU) and off
/// (`mitigations=off`), side by side, and what the mitigations cost per round trip.
pub fn mitigation_table(r: &Results) -> String {
    let mut t = String::from(
        "| row | svm / QEMU, on | off | cost | vmx / Bochs, on | off | cost |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let cost = |on: Option<f64>, off: Option<f64>| match (on, off) {
        (Some(a), Some(b)) => {
            let d = a - b;
            format!("{}{}", if d > 0.0 { "+" } else { "" }, fmt_num(d))
        }
        _ => "-".into(),
    };
    for row in ROWS {
        let get = |prefix: &str| r.get(&format!("{prefix}/{}", row.key));
        let (svm, svm_off, vmx, vmx_off) =
            (get(QEMU_SVM), get(QEMU_SVM_OFF), get(BOCHS_VMX), get(BOCHS_VMX_OFF));
        let num = |v: Option<f64>| v.map_or_else(|| "-".into(), fmt_num);
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.label,
            num(svm),
            num(svm_off),
            cost(svm, svm_off),
            num(vmx),
            num(vmx_off),
            cost(vmx, vmx_off)
        );
    }
    t
}

/// What one emulator run printed, with the serial log's path for errors.
struct Run {
    serial: String,
    log: PathBuf,
}

fn check_run(name: &str, launch: &Launch, outcome: emulator::Outcome, token: &str) -> Result<Run> {
    let log = launch.serial_log.clone();
    let serial = outcome.serial;
    if integration::find_marker(&serial, token) != Some(integration::Reported::Pass) {
        bail!("the {name} run did not pass ({:?}); see {}", outcome.exit, log.display());
    }
    if let Exit::TimedOut(t) = outcome.exit {
        bail!("the {name} run timed out after {}s; see {}", t.as_secs(), log.display());
    }
    Ok(Run { serial, log })
}

fn qemu_run(
    name: &str,
    kernel: &Path,
    mem_mb: u32,
    modules: Vec<(PathBuf, String)>,
    extra: &str,
) -> Result<Run> {
    let token = integration::fresh_token();
    let vm = Vm {
        platform: Platform::QemuSvm,
        kernel: kernel.to_path_buf(),
        smp: 1,
        mem_mb,
        cmdline: format!("log=info test=guests token={token} {extra}").trim_end().to_string(),
        modules,
        work_dir: xtask_dir().join(format!("bench-{name}")),
    };
    let mut launch = qemu::launch(&vm)?;
    launch.args.extend(ICOUNT_ARGS.iter().map(|s| s.to_string()));
    println!("xtask: {}", launch.display());
    let outcome = emulator::run_captured(
        &launch,
        Duration::from_secs(300),
        &integration::verdict_prefix(&token),
        Duration::from_secs(5),
    )?;
    check_run(name, &launch, outcome, &token)
}

fn bochs_run(name: &str, kernel: &Path, modules: Vec<(PathBuf, String)>, extra: &str) -> Result<Run> {
    let token = integration::fresh_token();
    let vm = Vm {
        platform: Platform::BochsVmx,
        kernel: kernel.to_path_buf(),
        smp: 1,
        mem_mb: 512,
        cmdline: format!("log=info test=guests token={token} {extra}").trim_end().to_string(),
        modules,
        work_dir: xtask_dir().join(format!("bench-{name}")),
    };
    let launch = bochs::prepare(&vm)?;
    println!("xtask: {}", launch.display());
    let outcome = emulator::run_captured(
        &launch,
        Duration::from_secs(600),
        &integration::verdict_prefix(&token),
        Duration::from_secs(5),
    )?;
    check_run(name, &launch, outcome, &token)
}

/// Reads the micro-benchmarks, the workload and the memory lines of one run into `r` under
/// `prefix`.
fn collect(prefix: &str, run: &Run, r: &mut Results) -> Result<()> {
    let lines: Vec<BenchLine> = run.serial.lines().filter_map(parse_bench_line).collect();
    if lines.is_empty() {
        bail!("no BENCH lines in {}", run.log.display());
    }
    for (row, v) in per_round_trip(&lines)? {
        r.metrics.insert(format!("{prefix}/{row}"), v);
    }
    if let Some(w) = lines.iter().find(|l| l.row == WORKLOAD) {
        r.metrics.insert(format!("{prefix}/{WORKLOAD}"), w.total as f64);
        r.metrics.insert(format!("{prefix}/{WORKLOAD}-page-faults"), w.iters as f64);
    }
    for stats in run.serial.lines().filter_map(parse_vm_stats) {
        r.exits.insert(format!("{prefix}/{}", stats.name), stats.exits);
    }
    if let Some(kib) = parse_basalt_memory(&run.serial) {
        r.metrics.insert(format!("{prefix}/basalt-memory-kib"), kib as f64);
    }
    Ok(())
}

/// The guests each run boots, with their module command lines.
fn bench_modules() -> Vec<(PathBuf, String)> {
    vec![
        (guests::path("bench"), "name=bench mem=16 testdev".into()),
        (guests::path(WORKLOAD), "name=workload mem=16".into()),
    ]
}

pub struct Options {
    pub compare: Option<PathBuf>,
    pub bochs: bool,
}

pub fn run(opts: Options) -> Result<()> {
    let previous = match &opts.compare {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let value: Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
            Some(
                Results::from_json(&value)
                    .with_context(|| format!("{} is not a bench result", path.display()))?,
            )
        }
        None => None,
    };
    let mut tools = Platform::QemuSvm.required_tools();
    if opts.bochs {
        tools.extend(Platform::BochsVmx.required_tools());
    }
    crate::tools::ensure(&tools)?;
    let kernel = kernel::build(kernel::Profile::Release)?;
    guests::build()?;
    let mut r = Results::default();

    let loaded = loaded_span(&std::fs::read(&kernel)?)?;
    r.metrics.insert("footprint/binary-loaded-bytes".into(), loaded as f64);

    let run = qemu_run("qemu-svm", &kernel, 512, bench_modules(), "")?;
    collect(QEMU_SVM, &run, &mut r)?;
    let run = qemu_run(QEMU_SVM_OFF, &kernel, 512, bench_modules(), MITIGATIONS_OFF)?;
    collect(QEMU_SVM_OFF, &run, &mut r)?;

    // Memory charged per VM: the same guest with 16 MiB and 16 MiB + 1 GiB of RAM.
    let demo = guests::path(guests::DEMO);
    let sizes = [16u64, 1040];
    let modules = sizes.iter().map(|m| (demo.clone(), format!("name=mem{m} mem={m}"))).collect();
    let run = qemu_run("footprint", &kernel, 1536, modules, "")?;
    let charged = |mib: u64| {
        run.serial
            .lines()
            .filter_map(parse_vm_stats)
            .find(|s| s.name == format!("mem{mib}"))
            .map(|s| (mib, s.charged_kib))
            .with_context(|| format!("no charged-memory line for the {mib} MiB VM in {}", run.log.display()))
    };
    let (fixed, per_gib) = vm_overhead(charged(sizes[0])?, charged(sizes[1])?);
    r.metrics.insert(format!("{QEMU_SVM}/vm-fixed-kib"), fixed);
    r.metrics.insert(format!("{QEMU_SVM}/vm-per-gib-kib"), per_gib);

    let w = bare_workload_run()?;
    r.metrics.insert(format!("{QEMU_BARE}/{WORKLOAD}"), w.total as f64);
    r.metrics.insert(format!("{QEMU_BARE}/{WORKLOAD}-page-faults"), w.iters as f64);

    linux_runs(&kernel, &mut r)?;

    if opts.bochs {
        let run = bochs_run(BOCHS_VMX, &kernel, bench_modules(), "")?;
        collect(BOCHS_VMX, &run, &mut r)?;
        let run = bochs_run(BOCHS_VMX_OFF, &kernel, bench_modules(), MITIGATIONS_OFF)?;
        collect(BOCHS_VMX_OFF, &run, &mut r)?;
    }

    println!();
    print!("{}", table(&r));
    println!();
    println!("Exit round trips with the speculative-execution mitigations on and off ({MITIGATIONS_OFF}):");
    print!("{}", mitigation_table(&r));
    println!();
    for (vm, exits) in &r.exits {
        println!("exits of {vm}: {exits}");
    }
    let out = workspace_root().join("target").join("bench.json");
    std::fs::write(&out, serde_json::to_string_pretty(&r.to_json())? + "\n")?;
    println!("xtask: wrote {}", out.display());
    if let Some(old) = previous {
        println!("\nxtask: change against {}", opts.compare.as_deref().unwrap_or(Path::new("?")).display());
        print!("{}", compare(&old, &r));
    }
    Ok(())
}

/// The note of the bare-QEMU workload row: what differs from the Basalt run, and the ratio.
/// The TSC /init read first (`BASALT-LINUX: tsc N`, a guest line under Basalt): under icount,
/// the instructions from the start of the boot to /init.
pub fn linux_tsc(serial: &str) -> Option<u64> {
    serial.lines().find_map(|l| l.split_once("BASALT-LINUX: tsc ")?.1.trim().parse().ok())
}

/// The Linux rows: Debian's kernel and the busybox initramfs (xtask/src/linux_guest.rs) boot
/// to /init under Basalt and directly in the same QEMU, one vCPU each, with icount. Under
/// Basalt the count starts at the VM's start (its TSC starts near zero), bare at QEMU's reset
/// (SeaBIOS included).
fn linux_runs(kernel: &Path, r: &mut Results) -> Result<()> {
    crate::tools::ensure(crate::linux_guest::TOOLS)?;
    crate::linux_guest::build()?;
    let started = std::time::Instant::now();
    let run = qemu_run("linux", kernel, 1024, crate::linux_guest::modules("linux", "mem=256"), "")?;
    let wall = started.elapsed().as_secs_f64();
    let tsc = linux_tsc(&run.serial)
        .with_context(|| format!("no BASALT-LINUX tsc line in {}", run.log.display()))?;
    r.metrics.insert(format!("{QEMU_SVM}/{LINUX}"), tsc as f64);
    r.metrics.insert(format!("{QEMU_SVM}/{LINUX}-wall-s"), wall);
    for stats in run.serial.lines().filter_map(parse_vm_stats) {
        r.exits.insert(format!("{QEMU_SVM}/{}", stats.name), stats.exits);
    }

    let work_dir = xtask_dir().join(format!("bench-{QEMU_BARE}-linux"));
    std::fs::create_dir_all(&work_dir)?;
    let mut args: Vec<String> = ["-accel", "tcg", "-cpu", qemu::TCG_EPYC, "-smp", "1", "-m", "512"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend([
        "-kernel".into(),
        crate::linux_guest::kernel_path().display().to_string(),
        "-initrd".into(),
        crate::linux_guest::initramfs_path().display().to_string(),
        "-append".into(),
        "console=ttyS0".into(),
    ]);
    args.extend(
        ["-serial", "stdio", "-display", "none", "-monitor", "none", "-no-reboot"]
            .iter()
            .chain(ICOUNT_ARGS)
            .map(|s| s.to_string()),
    );
    let launch = Launch {
        program: "qemu-system-x86_64".into(),
        args,
        serial: SerialOut::Stdout,
        serial_log: work_dir.join("serial.log"),
        cwd: work_dir,
    };
    println!("xtask: {}", launch.display());
    let started = std::time::Instant::now();
    let outcome = emulator::run_captured(
        &launch,
        Duration::from_secs(300),
        "BASALT-LINUX: uptime",
        Duration::from_secs(5),
    )?;
    let wall = started.elapsed().as_secs_f64();
    let tsc = linux_tsc(&outcome.serial).with_context(|| {
        format!("the bare Linux boot printed no tsc line; see {}", launch.serial_log.display())
    })?;
    r.metrics.insert(format!("{QEMU_BARE}/{LINUX}"), tsc as f64);
    r.metrics.insert(format!("{QEMU_BARE}/{LINUX}-wall-s"), wall);
    Ok(())
}

pub fn bare_note(bare: Option<f64>, basalt: Option<f64>) -> String {
    let what = "the same ELF booted by QEMU itself (multiboot header, 32-bit trampoline, COM1): no \
                exits, the page faults, port I/O and TSC reads all run natively in the emulator";
    match (bare, basalt) {
        (Some(b), Some(v)) if b > 0.0 => format!("{what}; under Basalt it takes {:.3}x these", v / b),
        _ => what.into(),
    }
}

/// The arguments of the bare-QEMU workload run: the machine of the Basalt run (CPU model, one
/// CPU, memory, counting flags) with the guest as the kernel.
pub fn bare_qemu_args(guest: &Path) -> Vec<String> {
    let mut args: Vec<String> =
        ["-accel", "tcg", "-cpu", qemu::TCG_EPYC, "-smp", "1", "-m", "512", "-kernel"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    args.push(guest.display().to_string());
    args.extend(
        [
            "-serial",
            "stdio",
            "-display",
            "none",
            "-monitor",
            "none",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=4",
            "-no-reboot",
        ]
        .iter()
        .chain(ICOUNT_ARGS)
        .map(|s| s.to_string()),
    );
    args
}

/// The workload's line from a bare-QEMU run, which must have passed: the guest's Done is
/// isa-debug-exit 0x10, QEMU's status 33.
pub fn bare_workload_line(exit: Exit, serial: &str) -> Result<BenchLine> {
    match exit {
        Exit::Exited(Some(33)) => {}
        Exit::Exited(Some(code)) => bail!("QEMU: {}", qemu::describe_status(code)),
        other => bail!("QEMU did not exit by itself: {other:?}"),
    }
    serial
        .lines()
        .filter_map(parse_bench_line)
        .find(|l| l.row == WORKLOAD)
        .context("the guest passed but printed no `BENCH workload` line")
}

/// The workload guest booted directly by QEMU, no Basalt.
fn bare_workload_run() -> Result<BenchLine> {
    let work_dir = xtask_dir().join(format!("bench-{QEMU_BARE}"));
    std::fs::create_dir_all(&work_dir)?;
    let launch = Launch {
        program: "qemu-system-x86_64".into(),
        args: bare_qemu_args(&guests::path(WORKLOAD)),
        serial: SerialOut::Stdout,
        serial_log: work_dir.join("serial.log"),
        cwd: work_dir,
    };
    println!("xtask: {}", launch.display());
    let outcome = emulator::run_captured(
        &launch,
        Duration::from_secs(120),
        &format!("BENCH {WORKLOAD}"),
        Duration::from_secs(5),
    )?;
    bare_workload_line(outcome.exit, &outcome.serial)
        .with_context(|| format!("the {QEMU_BARE} workload run failed; see {}", launch.serial_log.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERIAL: &str = "\
[INFO  cpu0] Basalt 0.1.0 starting (Multiboot1)\n\
  memory in use by Basalt: 17204 KiB\n\
guest bench| BENCH empty total=2008 iters=1000\r\n\
guest bench| BENCH cpuid total=286010 iters=1000\n\
guest bench| BENCH pio-in total=249011 iters=1000\n\
guest workload| BENCH workload total=9876543 iters=4096\n\
[INFO  cpu0] VM bench: exits total 6309: cpuid 1051, io 2108, msr 2100, hypercall 1050; 16424 KiB charged of 16896 KiB quota\n";

    #[test]
    fn linux_tsc_lines() {
        assert_eq!(
            linux_tsc("guest linux| BASALT-LINUX: init running\nguest linux| BASALT-LINUX: tsc 123456\r\n"),
            Some(123456)
        );
        assert_eq!(linux_tsc("BASALT-LINUX: tsc 42\n"), Some(42));
        assert_eq!(linux_tsc("BASALT-LINUX: tsc x\n"), None);
    }

    #[test]
    fn bench_lines() {
        assert_eq!(
            parse_bench_line("guest bench| BENCH cpuid total=286010 iters=1000\r"),
            Some(BenchLine { row: "cpuid".into(), total: 286010, iters: 1000 })
        );
        assert_eq!(parse_bench_line("BENCH cpuid total=x iters=1000"), None);
        assert_eq!(parse_bench_line("BENCH cpuid iters=1000"), None);
        assert_eq!(parse_bench_line("no bench here"), None);
        let lines: Vec<_> = SERIAL.lines().filter_map(parse_bench_line).collect();
        assert_eq!(lines.len(), 4);
        let per = per_round_trip(&lines).unwrap();
        assert_eq!(per["cpuid"], 284.002);
        assert_eq!(per["pio-in"], 247.003);
        assert!(!per.contains_key("workload") && !per.contains_key("empty"));
        assert!(per_round_trip(&lines[1..]).is_err(), "no empty row");
    }

    #[test]
    fn stats_and_memory_lines() {
        let stats: Vec<_> = SERIAL.lines().filter_map(parse_vm_stats).collect();
        assert_eq!(
            stats,
            [VmStats {
                name: "bench".into(),
                exits: "total 6309: cpuid 1051, io 2108, msr 2100, hypercall 1050".into(),
                charged_kib: 16424
            }]
        );
        assert_eq!(parse_vm_stats("VM bench: PASS"), None);
        assert_eq!(parse_basalt_memory(SERIAL), Some(17204));
        assert_eq!(parse_basalt_memory("nothing"), None);
    }

    #[test]
    fn overhead_is_split_into_fixed_and_per_gib() {
        // 40 KiB fixed, 4 KiB of tables per GiB.
        let (fixed, per_gib) = vm_overhead((16, 16 * 1024 + 40), (1040, 1040 * 1024 + 44));
        assert_eq!(per_gib, 4.0);
        assert_eq!(fixed, 40.0 - 4.0 / 64.0);
    }

    #[test]
    fn loaded_span_covers_every_segment() {
        let mut buf = [0u8; 256];
        let n = basalt_boot::elf::write_minimal(&mut buf, 0x10_0000, 0x10_0000, &[0xf4; 16], 0x3000 - 16);
        assert_eq!(loaded_span(&buf[..n]).unwrap(), 0x3000);
        assert!(loaded_span(b"not an elf").is_err());
    }

    fn sample() -> Results {
        let mut r = Results::default();
        r.metrics.insert("qemu-svm/cpuid".into(), 284.0);
        r.metrics.insert("qemu-svm/pio-in".into(), 247.5);
        r.metrics.insert("bochs-vmx/cpuid".into(), 600.0);
        r.exits.insert("qemu-svm/bench".into(), "total 3: cpuid 3".into());
        r
    }

    #[test]
    fn json_round_trip() {
        let r = sample();
        let text = serde_json::to_string_pretty(&r.to_json()).unwrap();
        let back = Results::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(Results::from_json(&json!({"metrics": {"a": "x"}})).is_err());
        assert!(Results::from_json(&json!({})).is_err());
    }

    #[test]
    fn compare_prints_each_change() {
        let old = sample();
        let mut new = sample();
        new.metrics.insert("qemu-svm/cpuid".into(), 142.0);
        new.metrics.remove("bochs-vmx/cpuid");
        new.metrics.insert("qemu-svm/msr-read".into(), 120.0);
        assert_eq!(
            compare(&old, &new),
            "qemu-svm/cpuid: 284 -> 142 (-142, -50.0%)\n\
             qemu-svm/msr-read: 120 (new)\n\
             qemu-svm/pio-in: 247.5 (unchanged)\n\
             bochs-vmx/cpuid: gone (was 600)\n"
        );
    }

    #[test]
    fn table_shows_targets_and_gaps() {
        let t = table(&sample());
        assert!(t.contains("| CPUID exit | 284 | 600 | <= 100 (+184 over) |"), "{t}");
        assert!(t.contains("| port I/O exit (IN) | 247.5 | - | <= 150 (+97.5 over) |"), "{t}");
        assert!(t.contains("| MSR read exit | - | - | <= 120 |"), "{t}");
    }

    #[test]
    fn mitigation_table_puts_on_and_off_side_by_side() {
        let mut r = sample();
        r.metrics.insert(format!("{QEMU_SVM_OFF}/cpuid"), 214.0);
        r.metrics.insert(format!("{BOCHS_VMX_OFF}/cpuid"), 531.0);
        let t = mitigation_table(&r);
        assert!(t.contains("| CPUID exit | 284 | 214 | +70 | 600 | 531 | +69 |"), "{t}");
        assert!(t.contains("| port I/O exit (IN) | 247.5 | - | - | - | - | - |"), "{t}");
    }

    #[test]
    fn bare_row_gives_the_ratio_to_basalt() {
        let mut r = sample();
        let t = table(&r);
        assert!(
            t.contains("| workload guest, bare QEMU | - | - | - | the same ELF booted by QEMU itself"),
            "{t}"
        );
        assert!(!t.contains("under Basalt it takes"), "{t}");
        r.metrics.insert("qemu-bare/workload".into(), 400_000.0);
        r.metrics.insert("qemu-svm/workload".into(), 500_000.0);
        let t = table(&r);
        assert!(t.contains("| workload guest, bare QEMU | 400000 | - | - | "), "{t}");
        assert!(t.contains("natively in the emulator; under Basalt it takes 1.250x these |"), "{t}");
        assert_eq!(bare_note(Some(0.0), Some(1.0)), bare_note(None, None));
    }

    #[test]
    fn bare_run_has_the_basalt_runs_machine() {
        let args = bare_qemu_args(Path::new("/g/workload"));
        let basalt = qemu::args(&Vm {
            platform: Platform::QemuSvm,
            kernel: "/k".into(),
            smp: 1,
            mem_mb: 512,
            cmdline: String::new(),
            modules: Vec::new(),
            work_dir: "/w".into(),
        })
        .unwrap();
        let value = |args: &[String], flag: &str| {
            args.iter().position(|a| a == flag).map(|i| args[i + 1].clone()).unwrap_or_default()
        };
        for flag in ["-accel", "-cpu", "-smp", "-m"] {
            assert_eq!(value(&args, flag), value(&basalt, flag), "{flag}");
        }
        assert_eq!(value(&args, "-kernel"), "/g/workload");
        assert_eq!(value(&args, "-device"), "isa-debug-exit,iobase=0xf4,iosize=4");
        assert!(args.ends_with(&ICOUNT_ARGS.iter().map(|s| s.to_string()).collect::<Vec<_>>()));
    }

    #[test]
    fn bare_run_must_pass_and_print_the_workload() {
        let serial = "BENCH workload total=377867 iters=4096\r\n";
        assert_eq!(
            bare_workload_line(Exit::Exited(Some(33)), serial).unwrap(),
            BenchLine { row: "workload".into(), total: 377867, iters: 4096 }
        );
        let failed = bare_workload_line(Exit::Exited(Some(35)), serial).unwrap_err();
        assert!(failed.to_string().contains("failure"), "{failed}");
        assert!(bare_workload_line(Exit::TimedOut(Duration::from_secs(1)), serial).is_err());
        assert!(bare_workload_line(Exit::Exited(Some(33)), "BENCH empty total=1 iters=1\n").is_err());
    }

    #[test]
    fn every_row_is_in_the_bench_guest() {
        let guest = std::fs::read_to_string(workspace_root().join("tests/src/bin/bench.rs")).unwrap();
        for row in ROWS.iter().map(|r| r.key).chain([EMPTY]) {
            assert!(guest.contains(&format!("(\"{row}\",")), "tests/src/bin/bench.rs lacks row {row}");
        }
    }
}
