//! The VM configuration: one format for a configuration module (`basalt.cfg` on the
//! multiboot path) and the USB stick's `\basalt\basalt.cfg`, and the module-command-line
//! words that describe one VM each.
//!
//! # The format
//!
//! ```text
//! # Two VMs. Comments run from '#' (outside quotes) to the end of the line.
//! [basalt]
//! cmdline    = log=info           # Basalt's own command line (read by the USB stick's loader)
//!
//! [vm web]
//! kernel     = vmlinuz            # a module / file name (a leading directory is allowed)
//! initrd     = web-initrd.img
//! cmdline    = "console=ttyS0 root=/dev/vda quiet"
//! memory     = 512M               # K, M or G (KiB/MiB/GiB); a multiple of 2 MiB, 2M..2816M
//! quota      = 520M               # host memory the VM may be charged for; default memory + 512K
//! cpus       = 1                  # vCPUs (at most Limits::max_vcpus)
//! pcpus      = 1                  # physical CPUs, a list with ranges: 1,2 or 1-3
//! devices    = debug-exit=0xf4, testdev
//! console    = yes                # this VM has the console focus (at most one VM)
//! on_poweroff = stop              # stop | restart   (default stop)
//! on_reset   = restart            #                  (default restart)
//! on_crash   = stop               #                  (default stop)
//! time_limit = 0                  # seconds, 0 = none (default: the caller's)
//!
//! [vm cpuid]; kernel = cpuid; memory = 16M; devices = testdev; mode = long
//! ```
//!
//! - A section `[vm NAME]` starts a VM; NAME is letters, digits, `-`, `_`, `.`. Every
//!   `key = value` after it, up to the next section, belongs to it. `[basalt]` holds
//!   Basalt's own settings ([`host_cmdline`]); [`parse`] skips it.
//! - Statements end at a newline or at a `;` outside quotes, so a whole configuration fits on
//!   one line; a section header may be followed by statements on its line.
//! - A value is the text after the first `=`, trimmed; or a `"double-quoted string"` in which
//!   `\"` and `\\` stand for `"` and `\` (only whitespace and a comment may follow it).
//! - Keys: `kernel` (required), `initrd`, `cmdline`, `memory` (default 16M), `quota`,
//!   `cpus` (default 1, or the number of `pcpus`), `pcpus` (default: the next free CPU),
//!   `devices` (`testdev`, `debug-exit=PORT`; ports decimal or `0x` hex; every VM has the
//!   rest of the PC, COM1 among it), `console` (`yes`/`no`, also `true`/`false`,
//!   `on`/`off`), `on_poweroff`, `on_reset`, `on_crash`, `time_limit`, and `mode` (`long`
//!   or `real`: start the image as one of Basalt's own test payloads; without it the image's
//!   format decides, basalt_loader::detect).
//!
//! [`parse`] checks the whole text before anything starts and gives back every VM without a
//! fault plus one [`ConfigError`] per fault (naming the VM, the line and the key): syntax,
//! unknown or repeated keys, bad values, repeated VM names, pCPUs shared between VMs or
//! beyond the CPU count, more than one console VM, memory over the quota or too small for
//! the kernel and initrd, images that are not there (the last two through [`Images`]).
//!
//! # Module command lines
//!
//! [`parse_module_words`] reads one VM from a module command line
//! (`name=cpuid mem=16 mode=long quota=8192 time_limit=5 cpus=2 pcpus=3,4 testdev`) into the
//! same [`VmSpec`]. [`split_module_cmdline`] recognises a first word naming the image
//! itself, as QEMU (`-initrd 'cpuid name=x'`) and GRUB (`module2 /boot/cpuid name=x`) pass it.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use basalt_boot::Cmdline;

/// How the vCPU starts (Basalt's own payloads; Linux and multiboot guests choose by format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// 64-bit mode with Basalt-built identity page tables (the guest boot ABI in `tests/`).
    Long,
    /// Real mode at 0:e_entry.
    Real,
}

/// What happens when the guest powers off, resets or crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Stop,
    Restart,
}

/// An emulated device a VM asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// Basalt's MMIO test device.
    TestDev,
    /// A port whose write ends the VM with the written value as its exit code.
    DebugExit { port: u16 },
}

/// Everything needed to create one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    pub name: String,
    /// The line of its `[vm NAME]` (1-based; 0 from module words).
    pub line: usize,
    /// The kernel image's name (`None` from module words without a leading image name: the
    /// module itself is the image).
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    /// The guest kernel's command line.
    pub cmdline: Option<String>,
    /// Guest RAM in bytes.
    pub memory_bytes: u64,
    /// Most host memory the VM may be charged for (RAM plus every control structure).
    pub quota_bytes: u64,
    /// `mode`: Basalt's own guest boot ABI in that mode; `None`: the image's format decides.
    pub mode: Option<StartMode>,
    pub cpus: u32,
    /// Physical CPUs (0 = the boot CPU), one per vCPU; empty: the next free ones.
    pub pcpus: Vec<usize>,
    pub devices: Vec<Device>,
    /// This VM has the console focus.
    pub console: bool,
    pub on_poweroff: Action,
    pub on_reset: Action,
    pub on_crash: Action,
    /// The VM is stopped with a report once it has run this long; `None`: no limit.
    pub time_limit_s: Option<u64>,
}

impl VmSpec {
    fn new(name: String, line: usize, time_limit_s: Option<u64>) -> VmSpec {
        VmSpec {
            name,
            line,
            kernel: None,
            initrd: None,
            cmdline: None,
            memory_bytes: DEFAULT_MEM_MIB << 20,
            quota_bytes: 0,
            mode: None,
            cpus: 1,
            pcpus: Vec::new(),
            devices: Vec::new(),
            console: false,
            on_poweroff: Action::Stop,
            on_reset: Action::Restart,
            on_crash: Action::Stop,
            time_limit_s,
        }
    }
    /// Whether it has the MMIO test device (the old `testdev` word).
    pub fn test_device(&self) -> bool {
        self.devices.contains(&Device::TestDev)
    }
    /// Its first pCPU, the old `VmConfig::pcpu`.
    pub fn pcpu(&self) -> Option<usize> {
        self.pcpus.first().copied()
    }
}

/// vCPUs a VM may have in this version (`cpus=` of the module words; [`Limits::max_vcpus`]
/// for files).
pub const MAX_VCPUS: u64 = 16;
/// Default guest RAM.
pub const DEFAULT_MEM_MIB: u64 = 16;
/// Largest guest RAM this version accepts: RAM ends below the PCI hole (the ECAM window at
/// 2816 MiB, then the IOAPIC and LAPIC); RAM above 4 GiB is not built yet.
pub const MAX_MEM_MIB: u64 = 2816;
/// Host memory a VM may use beyond its RAM, unless `quota` says otherwise.
pub const DEFAULT_OVERHEAD_KIB: u64 = 512;
/// Longest time limit accepted (a day).
pub const MAX_TIME_LIMIT_S: u64 = 86_400;
/// Guest RAM a VM with the test device may have: below the device at 0x3F00_0000 (the
/// kernel's `vm::testdev::TEST_DEVICE_MAX_RAM_MIB`).
pub const TEST_DEVICE_MAX_RAM_MIB: u64 = 0x3F00_0000 >> 20;
/// Largest CPU number a `pcpus` list may name (bounds `0-99999999` ranges).
pub const MAX_PCPU: usize = 4095;

/// One fault in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The VM it belongs to, when inside a section.
    pub vm: Option<String>,
    /// 1-based line; 0 for module words.
    pub line: usize,
    /// The key at fault, if one is.
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    fn words(message: String) -> ConfigError {
        ConfigError { vm: None, line: 0, key: None, message }
    }
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("bad VM configuration: ")?;
        if self.line > 0 {
            write!(f, "line {}: ", self.line)?;
        }
        if let Some(vm) = &self.vm {
            write!(f, "[vm {vm}] ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// What the caller knows about the images a configuration may name.
pub trait Images {
    /// `None`: there is no image of that name (a module's or file's name, with or without a
    /// directory, as the caller decides). `Some(bytes)`: the guest RAM the image needs at the
    /// least (e.g. [`crate::bzimage::min_ram`], the initrd's length; 0 when unknown).
    fn ram_needed(&self, name: &str) -> Option<u64>;
}

impl<F: Fn(&str) -> Option<u64>> Images for F {
    fn ram_needed(&self, name: &str) -> Option<u64> {
        self(name)
    }
}

/// The machine the configuration must fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Physical CPUs there are; `pcpus` must name CPUs below it.
    pub cpu_count: usize,
    /// vCPUs a VM may have.
    pub max_vcpus: u32,
    /// `time_limit` when a VM gives none.
    pub default_time_limit_s: Option<u64>,
}

fn valid_name(v: &str) -> bool {
    !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// `64M`, `2G`, `512K`, `1MiB`: bytes; `None` without a K/M/G suffix or on overflow.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, suffix) = s.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let shift = match suffix.trim_start().to_ascii_uppercase().as_str() {
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// `1,2`, `1-3`, `0, 2-3`: the CPU numbers in order, each once.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out: Vec<usize> = Vec::new();
    for item in s.split(',').map(str::trim) {
        let (a, b) = match item.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (item, item),
        };
        let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) else {
            return Err(format!("{item:?} is not a CPU number or range like 1-3"));
        };
        if a > b {
            return Err(format!("range {item} runs backwards"));
        }
        if b > MAX_PCPU {
            return Err(format!("CPU {b} is beyond the largest supported number {MAX_PCPU}"));
        }
        for c in a..=b {
            if out.contains(&c) {
                return Err(format!("CPU {c} is named twice"));
            }
            out.push(c);
        }
    }
    Ok(out)
}

fn parse_port(s: &str) -> Option<u16> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `testdev, debug-exit=0xf4`.
pub fn parse_devices(s: &str) -> Result<Vec<Device>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, arg) = match item.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (item, None),
        };
        let d = match (name, arg) {
            ("testdev", None) => Device::TestDev,
            ("debug-exit", Some(p)) => match parse_port(p) {
                Some(port) if port <= 0xFFFC => Device::DebugExit { port },
                _ => return Err(format!("debug-exit={p}: the port is a number up to 0xfffc")),
            },
            ("debug-exit", None) => return Err("debug-exit needs its port: debug-exit=PORT".into()),
            _ => return Err(format!("unknown device {item:?} (testdev, debug-exit=PORT)")),
        };
        if out.iter().any(|o| core::mem::discriminant(o) == core::mem::discriminant(&d)) {
            return Err(format!("device {name} is named twice"));
        }
        out.push(d);
    }
    Ok(out)
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "yes" | "true" | "on" | "1" => Some(true),
        "no" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn parse_action(s: &str) -> Option<Action> {
    match s {
        "stop" => Some(Action::Stop),
        "restart" => Some(Action::Restart),
        _ => None,
    }
}

/// One statement: its line and text, comments removed.
struct Statement<'a> {
    line: usize,
    text: &'a str,
}

/// Split at newlines and unquoted `;`, drop comments and blank statements; a section header
/// is a statement of its own, whatever follows it on the line is another.
fn statements(text: &str) -> Vec<Statement<'_>> {
    let mut out = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let mut quoted = false;
        let mut escaped = false;
        let mut start = 0;
        let mut end = raw.len();
        let mut cuts = Vec::new();
        for (j, c) in raw.char_indices() {
            if escaped {
                escaped = false;
                continue;
            }
            match c {
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                ';' if !quoted => cuts.push(j),
                '#' if !quoted => {
                    end = j;
                    break;
                }
                _ => {}
            }
        }
        cuts.retain(|&c| c < end);
        cuts.push(end);
        for cut in cuts {
            let mut piece = raw[start..cut].trim();
            start = cut + 1;
            // `[vm a] kernel = x`: the header, then the rest.
            if piece.starts_with('[') {
                if let Some(close) = piece.find(']') {
                    out.push(Statement { line, text: &piece[..=close] });
                    piece = piece[close + 1..].trim();
                }
            }
            if !piece.is_empty() {
                out.push(Statement { line, text: piece });
            }
        }
    }
    out
}

/// A value: trimmed text, or a quoted string with `\"` and `\\`.
fn value(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let Some(inner) = raw.strip_prefix('"') else { return Ok(raw.to_string()) };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('"' | '\\')) => out.push(e),
                Some(e) => {
                    out.push('\\');
                    out.push(e)
                }
                None => return Err("the quoted value is not closed".into()),
            },
            '"' => {
                let rest = chars.as_str().trim();
                if !rest.is_empty() {
                    return Err(format!("{rest:?} after the closing quote"));
                }
                return Ok(out);
            }
            c => out.push(c),
        }
    }
    Err("the quoted value is not closed".into())
}

const KEYS: [&str; 15] = [
    "kernel",
    "initrd",
    "cmdline",
    "memory",
    "quota",
    "cpus",
    "pcpus",
    "devices",
    "console",
    "on_poweroff",
    "on_reset",
    "on_crash",
    "time_limit",
    "mode",
    "name",
];

/// A VM being read, with the lines of its keys.
struct Draft {
    spec: VmSpec,
    bad: bool,
    keys: Vec<(&'static str, usize)>,
    quota: Option<u64>,
    cpus_given: bool,
}

impl Draft {
    fn line_of(&self, key: &str) -> usize {
        self.keys.iter().find(|k| k.0 == key).map_or(self.spec.line, |k| k.1)
    }
}

fn set_key(d: &mut Draft, key: &str, v: String) -> Result<(), String> {
    let s = &mut d.spec;
    match key {
        "kernel" | "initrd" => {
            if v.is_empty() {
                return Err("needs an image name".into());
            }
            *(if key == "kernel" { &mut s.kernel } else { &mut s.initrd }) = Some(v);
        }
        "cmdline" => s.cmdline = Some(v),
        "memory" => {
            let Some(b) = parse_size(&v) else {
                return Err(format!("{v:?} is not a size with a K, M or G suffix, like 64M"));
            };
            if !(2 << 20..=MAX_MEM_MIB << 20).contains(&b) || !b.is_multiple_of(2 << 20) {
                return Err(format!("{v}: guest RAM must be a multiple of 2 MiB from 2M to {MAX_MEM_MIB}M"));
            }
            s.memory_bytes = b;
        }
        "quota" => match parse_size(&v) {
            Some(b) => d.quota = Some(b),
            None => return Err(format!("{v:?} is not a size with a K, M or G suffix, like 64M")),
        },
        "cpus" => {
            let n = v.parse::<u32>().map_err(|_| format!("needs a whole number, got {v:?}"))?;
            if n == 0 {
                return Err("a VM needs at least 1 vCPU".into());
            }
            s.cpus = n;
            d.cpus_given = true;
        }
        "pcpus" => s.pcpus = parse_cpu_list(&v)?,
        "devices" => s.devices = parse_devices(&v)?,
        "console" => s.console = parse_bool(&v).ok_or_else(|| format!("is yes or no, got {v:?}"))?,
        "on_poweroff" | "on_reset" | "on_crash" => {
            let a = parse_action(&v).ok_or_else(|| format!("is stop or restart, got {v:?}"))?;
            *match key {
                "on_poweroff" => &mut s.on_poweroff,
                "on_reset" => &mut s.on_reset,
                _ => &mut s.on_crash,
            } = a;
        }
        "time_limit" => {
            let t = v.parse::<u64>().map_err(|_| format!("needs a whole number of seconds, got {v:?}"))?;
            if t > MAX_TIME_LIMIT_S {
                return Err(format!("{t}: at most {MAX_TIME_LIMIT_S} seconds (0 for none)"));
            }
            s.time_limit_s = (t > 0).then_some(t);
        }
        "mode" => {
            s.mode = match v.as_str() {
                "long" => Some(StartMode::Long),
                "real" => Some(StartMode::Real),
                _ => return Err(format!("is long or real, got {v:?}")),
            }
        }
        "name" => return Err("the name is given in the section header, [vm NAME]".into()),
        _ => return Err(format!("unknown key (keys: {})", KEYS[..14].join(", "))),
    }
    Ok(())
}

/// Read a whole configuration. Every VM with no fault comes back, in order, with one error
/// for each fault found; a VM with any fault is left out (so nothing half-configured
/// starts). A VM that clashes with an earlier one (name, pCPUs, console) is the one left out.
pub fn parse(text: &str, limits: &Limits, images: &dyn Images) -> (Vec<VmSpec>, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let mut drafts: Vec<Draft> = Vec::new();
    // Inside `[basalt]` (Basalt's own settings: see `host_cmdline`).
    let mut in_basalt = false;
    for st in statements(text) {
        if st.text == "[basalt]" {
            in_basalt = true;
            continue;
        }
        if st.text.starts_with('[') {
            in_basalt = false;
        } else if in_basalt {
            continue;
        }
        if let Some(inner) = st.text.strip_prefix('[') {
            let header = inner.strip_suffix(']').map(str::trim);
            let name = header
                .and_then(|h| h.strip_prefix("vm"))
                .filter(|n| n.starts_with([' ', '\t']))
                .map(str::trim);
            let (name, bad) = match name {
                Some(n) if valid_name(n) => (n.to_string(), false),
                Some(n) => {
                    errors.push(ConfigError {
                        vm: Some(n.to_string()),
                        line: st.line,
                        key: None,
                        message: format!("VM name {n:?} needs letters, digits, '-', '_' or '.'"),
                    });
                    (n.to_string(), true)
                }
                None => {
                    errors.push(ConfigError {
                        vm: None,
                        line: st.line,
                        key: None,
                        message: format!("{:?} is not a section header like [vm NAME]", st.text),
                    });
                    (String::from("?"), true)
                }
            };
            drafts.push(Draft {
                spec: VmSpec::new(name, st.line, limits.default_time_limit_s),
                bad,
                keys: Vec::new(),
                quota: None,
                cpus_given: false,
            });
            continue;
        }
        let Some(d) = drafts.last_mut() else {
            errors.push(ConfigError {
                vm: None,
                line: st.line,
                key: st.text.split_once('=').map(|(k, _)| k.trim().to_string()),
                message: "settings before the first [vm NAME] section".into(),
            });
            continue;
        };
        let vm = Some(d.spec.name.clone());
        let Some((key, raw)) = st.text.split_once('=') else {
            errors.push(ConfigError {
                vm,
                line: st.line,
                key: None,
                message: format!("{:?} is not key = value", st.text),
            });
            d.bad = true;
            continue;
        };
        let key = key.trim();
        let fail = |d: &mut Draft, errors: &mut Vec<ConfigError>, message: String| {
            d.bad = true;
            errors.push(ConfigError { vm: vm.clone(), line: st.line, key: Some(key.to_string()), message });
        };
        let Some(&known) = KEYS.iter().find(|k| **k == key) else {
            fail(d, &mut errors, format!("unknown key (keys: {})", KEYS[..14].join(", ")));
            continue;
        };
        if let Some(&(_, first)) = d.keys.iter().find(|k| k.0 == known) {
            fail(d, &mut errors, format!("given twice (first on line {first})"));
            continue;
        }
        d.keys.push((known, st.line));
        let r = value(raw).and_then(|v| set_key(d, known, v));
        if let Err(m) = r {
            fail(d, &mut errors, m);
        }
    }

    // Each VM on its own.
    for d in drafts.iter_mut() {
        let vm = Some(d.spec.name.clone());
        let mut fail = |d: &mut Draft, key: &str, message: String| {
            d.bad = true;
            errors.push(ConfigError {
                vm: vm.clone(),
                line: d.line_of(key),
                key: Some(key.to_string()),
                message,
            });
        };
        let s = &d.spec;
        if !d.cpus_given && !s.pcpus.is_empty() {
            d.spec.cpus = d.spec.pcpus.len() as u32;
        }
        let s = &d.spec;
        if s.cpus > limits.max_vcpus {
            let m = format!("{} vCPUs: this version runs VMs of at most {}", s.cpus, limits.max_vcpus);
            fail(d, "cpus", m);
        }
        let s = &d.spec;
        if !s.pcpus.is_empty() && s.pcpus.len() != s.cpus as usize {
            let m = format!("{} pCPUs for {} vCPUs: name one per vCPU", s.pcpus.len(), s.cpus);
            fail(d, "pcpus", m);
        }
        if let Some(c) = d.spec.pcpus.iter().find(|&&c| c >= limits.cpu_count) {
            let m = format!("CPU {c} does not exist (this machine has {})", limits.cpu_count);
            fail(d, "pcpus", m);
        }
        let mem = d.spec.memory_bytes;
        d.spec.quota_bytes = d.quota.unwrap_or(mem + (DEFAULT_OVERHEAD_KIB << 10));
        if mem > d.spec.quota_bytes {
            let m = format!("{} MiB of RAM is over the quota of {} KiB", mem >> 20, d.spec.quota_bytes >> 10);
            fail(d, "memory", m);
        }
        if d.spec.test_device() && mem > TEST_DEVICE_MAX_RAM_MIB << 20 {
            let m = format!("testdev needs RAM of at most {TEST_DEVICE_MAX_RAM_MIB} MiB");
            fail(d, "devices", m);
        }
        let mut needed = 0u64;
        match d.spec.kernel.clone() {
            None => fail(d, "kernel", "every VM needs kernel = IMAGE".into()),
            Some(k) => match images.ram_needed(&k) {
                Some(n) => needed = needed.saturating_add(n),
                None => fail(d, "kernel", format!("there is no image {k:?}")),
            },
        }
        if let Some(i) = d.spec.initrd.clone() {
            match images.ram_needed(&i) {
                Some(n) => needed = needed.saturating_add(n),
                None => fail(d, "initrd", format!("there is no image {i:?}")),
            }
        }
        if needed > mem {
            let m = format!("{} MiB is too small: the kernel and initrd need {needed:#x} bytes", mem >> 20);
            fail(d, "memory", m);
        }
    }

    // Between VMs: the later one of a clash is at fault.
    for i in 0..drafts.len() {
        let (before, rest) = drafts.split_at_mut(i);
        let d = &mut rest[0];
        let vm = Some(d.spec.name.clone());
        if let Some(o) = before.iter().find(|o| o.spec.name == d.spec.name) {
            d.bad = true;
            errors.push(ConfigError {
                vm: vm.clone(),
                line: d.spec.line,
                key: None,
                message: format!("a VM of this name is already on line {}", o.spec.line),
            });
        }
        for o in before.iter().filter(|o| !o.bad) {
            if let Some(c) = d.spec.pcpus.iter().find(|c| o.spec.pcpus.contains(c)) {
                d.bad = true;
                errors.push(ConfigError {
                    vm: vm.clone(),
                    line: d.line_of("pcpus"),
                    key: Some("pcpus".into()),
                    message: format!("CPU {c} is already VM {}'s (line {})", o.spec.name, o.line_of("pcpus")),
                });
            }
        }
        if d.spec.console {
            if let Some(o) = before.iter().find(|o| !o.bad && o.spec.console) {
                d.bad = true;
                errors.push(ConfigError {
                    vm: vm.clone(),
                    line: d.line_of("console"),
                    key: Some("console".into()),
                    message: format!(
                        "VM {} already has the console (line {})",
                        o.spec.name,
                        o.line_of("console")
                    ),
                });
            }
        }
    }
    errors.sort_by_key(|e| e.line);
    (drafts.into_iter().filter(|d| !d.bad).map(|d| d.spec).collect(), errors)
}

/// The last path component: `/boot/cpuid` -> `cpuid`.
fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Split a module's command line into the image's own name, when its first word is one, and
/// the rest (trimmed).
///
/// The first word names the image when it has no `=` and either contains a `/` (a path, the
/// name is its last component) or, with `known_images`, equals one of them (or the last
/// component of one); without `known_images` any first word without `=` that is not one of
/// the module words' flags (`testdev`) is taken as the name.
pub fn split_module_cmdline<'a>(
    cmdline: &'a str,
    known_images: Option<&[&str]>,
) -> (Option<&'a str>, &'a str) {
    let t = cmdline.trim_matches(|c: char| c.is_ascii_whitespace());
    let (first, rest) = match t.find(|c: char| c.is_ascii_whitespace()) {
        Some(i) => (&t[..i], t[i..].trim_start_matches(|c: char| c.is_ascii_whitespace())),
        None => (t, ""),
    };
    if first.is_empty() || first.contains('=') || first.starts_with('"') {
        return (None, t);
    }
    let is_image = if first.contains('/') {
        true
    } else {
        match known_images {
            Some(k) => k.iter().any(|n| *n == first || base_name(n) == first),
            None => !MODULE_FLAGS.contains(&first),
        }
    };
    if is_image {
        let name = base_name(first);
        (Some(name).filter(|n| !n.is_empty()), rest)
    } else {
        (None, t)
    }
}

/// Words of the module-command-line form that stand alone.
const MODULE_FLAGS: [&str; 1] = ["testdev"];

fn number(key: &str, value: Option<&str>) -> Result<u64, ConfigError> {
    value.and_then(|v| v.parse::<u64>().ok()).ok_or_else(|| {
        ConfigError::words(format!("{key}= needs a whole number, got {:?}", value.unwrap_or("")))
    })
}

/// A VM from a module command line (see the module docs): `name=`, `mem=` (MiB, even,
/// 2..=[`MAX_MEM_MIB`]), `mode=long|real`, `quota=` (KiB), `testdev`, `debug_exit=PORT`,
/// `cpus=` (1..=[`MAX_VCPUS`]), `pcpus=i,j,..` (one per vCPU), `time_limit=` (seconds, 0
/// none), `cmdline="..."`, `on_poweroff=`/`on_reset=`/`on_crash=` (stop|restart).
/// Unknown words are errors. A leading image name (see [`split_module_cmdline`]) becomes
/// [`VmSpec::kernel`].
pub fn parse_module_words(
    text: &str,
    default_time_limit_s: Option<u64>,
    known_images: Option<&[&str]>,
) -> Result<VmSpec, ConfigError> {
    let (image, rest) = split_module_cmdline(text, known_images);
    let mut spec = VmSpec::new(String::new(), 0, default_time_limit_s);
    spec.kernel = image.map(str::to_string);
    let mut name = None;
    let mut mem_mib = DEFAULT_MEM_MIB;
    let mut quota_kib = None;
    let err = |m: String| Err(ConfigError::words(m));
    for (key, value) in Cmdline::new(rest).iter() {
        match key {
            "name" => match value {
                Some(v) if valid_name(v) => name = Some(v.to_string()),
                _ => {
                    return err(format!(
                        "name= needs letters, digits, '-', '_' or '.', got {:?}",
                        value.unwrap_or("")
                    ))
                }
            },
            "mem" => {
                mem_mib = number("mem", value)?;
                if !(2..=MAX_MEM_MIB).contains(&mem_mib) || !mem_mib.is_multiple_of(2) {
                    return err(format!(
                        "mem={mem_mib}: guest RAM must be an even number of MiB from 2 to {MAX_MEM_MIB}"
                    ));
                }
            }
            "mode" => {
                spec.mode = match value {
                    Some("long") => Some(StartMode::Long),
                    Some("real") => Some(StartMode::Real),
                    other => return err(format!("mode= is long or real, got {:?}", other.unwrap_or(""))),
                }
            }
            "quota" => quota_kib = Some(number("quota", value)?),
            "testdev" if value.is_none() => {
                if !spec.test_device() {
                    spec.devices.push(Device::TestDev)
                }
            }
            "cmdline" => spec.cmdline = Some(value.unwrap_or("").to_string()),
            "on_poweroff" | "on_reset" | "on_crash" => {
                let Some(a) = value.and_then(parse_action) else {
                    return err(format!("{key}= is stop or restart, got {:?}", value.unwrap_or("")));
                };
                *match key {
                    "on_poweroff" => &mut spec.on_poweroff,
                    "on_reset" => &mut spec.on_reset,
                    _ => &mut spec.on_crash,
                } = a;
            }
            "debug_exit" => {
                let v = value.unwrap_or("");
                match parse_port(v) {
                    Some(port) if port <= 0xFFFC => {
                        spec.devices.retain(|d| !matches!(d, Device::DebugExit { .. }));
                        spec.devices.push(Device::DebugExit { port })
                    }
                    _ => return err(format!("debug_exit= needs a port (0xf4, or 0 to 65532), got {v:?}")),
                }
            }
            "cpus" => {
                let n = number("cpus", value)?;
                if n == 0 || n > MAX_VCPUS {
                    return err(format!("cpus={n}: a VM has 1 to {MAX_VCPUS} vCPUs"));
                }
                spec.cpus = n as u32;
            }
            "pcpus" => {
                let list = value.unwrap_or("");
                match list.split(',').map(str::parse::<usize>).collect::<Result<Vec<_>, _>>() {
                    Ok(cpus) => spec.pcpus = cpus,
                    Err(_) => {
                        return err(format!("pcpus= needs CPU numbers separated by commas, got {list:?}"))
                    }
                }
            }
            "time_limit" => {
                let s = number("time_limit", value)?;
                if s > MAX_TIME_LIMIT_S {
                    return err(format!("time_limit={s}: at most {MAX_TIME_LIMIT_S} seconds (0 for none)"));
                }
                spec.time_limit_s = (s > 0).then_some(s);
            }
            other => return err(format!("unknown word {other:?}")),
        }
    }
    let Some(name) = name else { return err("every VM needs name=<name>".into()) };
    if !spec.pcpus.is_empty() && spec.pcpus.len() != spec.cpus as usize {
        return err(format!(
            "pcpus= names {} CPU(s) for cpus={}: name one CPU per vCPU",
            spec.pcpus.len(),
            spec.cpus
        ));
    }
    if let Some(c) = spec.pcpus.iter().enumerate().find_map(|(i, c)| spec.pcpus[..i].contains(c).then_some(c))
    {
        return err(format!("pcpus= names CPU {c} twice: one vCPU per CPU"));
    }
    if spec.test_device() && mem_mib > TEST_DEVICE_MAX_RAM_MIB {
        return err(format!(
            "testdev with mem={mem_mib}: the test device at {:#x} needs RAM of at most {} MiB",
            0x3F00_0000u64, TEST_DEVICE_MAX_RAM_MIB
        ));
    }
    spec.name = name;
    spec.memory_bytes = mem_mib << 20;
    spec.quota_bytes = quota_kib.map_or(spec.memory_bytes + (DEFAULT_OVERHEAD_KIB << 10), |k| k << 10);
    Ok(spec)
}

/// The VM a module is the initrd of (`initrd_of=<vm>`), if it is one: such a module is not a
/// VM itself.
pub fn initrd_of(text: &str) -> Option<&str> {
    Cmdline::new(split_module_cmdline(text, None).1)
        .iter()
        .find_map(|(k, v)| (k == "initrd_of").then_some(v).flatten())
}

/// The multiboot VM a module is a boot module of (`module_of=<vm>`), if it is one: such a
/// module is not a VM itself.
pub fn module_of(text: &str) -> Option<&str> {
    Cmdline::new(text)
        .without_kernel_path()
        .iter()
        .find_map(|(k, v)| (k == "module_of").then_some(v).flatten())
}

/// The string a multiboot kernel gets with a `module_of=` module: the module's command line
/// without its leading file path and without the `module_of=` word, its other words as the
/// boot loader passed them (quotes kept), separated by single spaces.
pub fn module_string(text: &str) -> String {
    let mut out = String::new();
    for word in Cmdline::new(text).without_kernel_path().words() {
        if Cmdline::new(word).iter().next().is_some_and(|(k, _)| k == "module_of") {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Whether a module is a configuration file: its first word names a `*.cfg` file
/// (`-initrd 'basalt.cfg'`, `module2 /boot/basalt.cfg`).
pub fn is_config_module(cmdline: &str) -> bool {
    matches!(split_module_cmdline(cmdline, None).0, Some(n) if n.ends_with(".cfg") && n.len() > 4)
}

/// Basalt's own command line from a configuration's `[basalt]` section (`cmdline = ...`),
/// which [`parse`] skips: the USB stick's loader reads it. `Err` names the line at fault.
pub fn host_cmdline(text: &str) -> Result<Option<String>, ConfigError> {
    let mut in_basalt = false;
    let mut found = None;
    for st in statements(text) {
        if st.text.starts_with('[') {
            in_basalt = st.text == "[basalt]";
            continue;
        }
        if !in_basalt {
            continue;
        }
        let fault = |key: Option<&str>, message: String| ConfigError {
            vm: None,
            line: st.line,
            key: key.map(String::from),
            message: format!("[basalt] {message}"),
        };
        match st.text.split_once('=') {
            Some((k, v)) if k.trim() == "cmdline" => {
                found = Some(value(v).map_err(|m| fault(Some("cmdline"), m))?);
            }
            Some((k, _)) => {
                return Err(fault(Some(k.trim()), "unknown key (the [basalt] section has cmdline)".into()))
            }
            None => return Err(fault(None, format!("{:?} is not key = value", st.text))),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const LIMITS: Limits = Limits { cpu_count: 4, max_vcpus: 4, default_time_limit_s: None };

    fn images(name: &str) -> Option<u64> {
        match name {
            "vmlinuz" => Some(20 << 20),
            "initrd.img" => Some(8 << 20),
            "cpuid" | "/boot/cpuid" => Some(0),
            _ => None,
        }
    }

    fn parse_ok(text: &str) -> Vec<VmSpec> {
        let (vms, errors) = parse(text, &LIMITS, &images);
        assert!(errors.is_empty(), "{errors:?}");
        vms
    }

    #[test]
    fn a_full_file() {
        let text = "# Basalt\n\
            [vm web]\n\
            kernel = vmlinuz\n\
            initrd = initrd.img   # the root fs\n\
            cmdline = \"console=ttyS0 root=/dev/ram0 a=\\\"b c\\\" #x\"\n\
            memory = 64M\n\
            quota = 70M\n\
            pcpus = 1-2\n\
            devices = debug-exit=0xf4\n\
            console = yes\n\
            on_reset = stop\n\
            on_crash = restart\n\
            time_limit = 30\n\
            \n\
            [vm cpuid]; kernel = cpuid; memory = 2M; devices = testdev; mode = real\n";
        let vms = parse_ok(text);
        assert_eq!(vms.len(), 2);
        let w = &vms[0];
        assert_eq!(
            (w.name.as_str(), w.line, w.kernel.as_deref(), w.initrd.as_deref()),
            ("web", 2, Some("vmlinuz"), Some("initrd.img"))
        );
        assert_eq!(w.cmdline.as_deref(), Some("console=ttyS0 root=/dev/ram0 a=\"b c\" #x"));
        assert_eq!(
            (w.memory_bytes, w.quota_bytes, w.cpus, w.pcpus.as_slice()),
            (64 << 20, 70 << 20, 2, &[1, 2][..])
        );
        assert_eq!(w.devices, [Device::DebugExit { port: 0xF4 }]);
        assert_eq!(
            (w.console, w.on_poweroff, w.on_reset, w.on_crash),
            (true, Action::Stop, Action::Stop, Action::Restart)
        );
        assert_eq!(w.time_limit_s, Some(30));
        let c = &vms[1];
        assert_eq!(
            (c.line, c.memory_bytes, c.quota_bytes, c.mode, c.cpus),
            (15, 2 << 20, (2 << 20) + (512 << 10), Some(StartMode::Real), 1)
        );
        assert!(c.test_device() && c.pcpus.is_empty() && !c.console);
        assert_eq!((c.on_poweroff, c.on_reset, c.on_crash), (Action::Stop, Action::Restart, Action::Stop));
        // One line, as on a kernel command line.
        let vms = parse_ok("[vm a] kernel=cpuid; memory=4M;[vm b] kernel=/boot/cpuid");
        assert_eq!(
            (vms[0].name.as_str(), vms[1].name.as_str(), vms[1].kernel.as_deref()),
            ("a", "b", Some("/boot/cpuid"))
        );
    }

    #[test]
    fn every_fault_is_named_and_the_good_vms_stay() {
        let text = "\
kernel = x
[vm ok]
kernel = cpuid
pcpus = 0
console = yes
[vm typo]
kernel = cpuid
colour = blue
[vm dup]
kernel = cpuid
memory = 4M
memory = 8M
[vm ok]
kernel = cpuid
[vm clash]
kernel = cpuid
pcpus = 0,3
[vm beyond]
kernel = cpuid
pcpus = 7
[vm greedy]
kernel = vmlinuz
memory = 16M
[vm over]
kernel = cpuid
memory = 8M
quota = 4M
[vm missing]
kernel = nope
initrd = nada
[vm values]
kernel = cpuid
memory = 3M
cpus = many
on_crash = explode
devices = floppy
cmdline = \"open
time_limit = 100000
[vm second-console]
kernel = cpuid
console = yes
[vm bad/name]
kernel = cpuid
[vm nokernel]
memory = 4M
[vm toomany]
kernel = cpuid
cpus = 5
junk line
[vm fine]
kernel = cpuid
pcpus = 2
";
        let (vms, errors) = parse(text, &LIMITS, &images);
        let names: Vec<&str> = vms.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["ok", "fine"]);
        let want: &[(usize, Option<&str>, Option<&str>, &str)] = &[
            (1, None, Some("kernel"), "settings before the first [vm NAME]"),
            (8, Some("typo"), Some("colour"), "unknown key"),
            (12, Some("dup"), Some("memory"), "given twice (first on line 11)"),
            (13, Some("ok"), None, "a VM of this name is already on line 2"),
            (17, Some("clash"), Some("pcpus"), "CPU 0 is already VM ok's (line 4)"),
            (20, Some("beyond"), Some("pcpus"), "CPU 7 does not exist (this machine has 4)"),
            (23, Some("greedy"), Some("memory"), "16 MiB is too small"),
            (26, Some("over"), Some("memory"), "8 MiB of RAM is over the quota of 4096 KiB"),
            (29, Some("missing"), Some("kernel"), "there is no image \"nope\""),
            (30, Some("missing"), Some("initrd"), "there is no image \"nada\""),
            (33, Some("values"), Some("memory"), "multiple of 2 MiB"),
            (34, Some("values"), Some("cpus"), "needs a whole number"),
            (35, Some("values"), Some("on_crash"), "is stop or restart"),
            (36, Some("values"), Some("devices"), "unknown device \"floppy\""),
            (37, Some("values"), Some("cmdline"), "not closed"),
            (38, Some("values"), Some("time_limit"), "at most 86400 seconds"),
            (41, Some("second-console"), Some("console"), "VM ok already has the console (line 5)"),
            (42, Some("bad/name"), None, "VM name \"bad/name\" needs letters"),
            (44, Some("nokernel"), Some("kernel"), "every VM needs kernel = IMAGE"),
            (48, Some("toomany"), Some("cpus"), "5 vCPUs: this version runs VMs of at most 4"),
            (49, Some("toomany"), None, "\"junk line\" is not key = value"),
        ];
        for (line, vm, key, needle) in want {
            assert!(
                errors.iter().any(|e| e.line == *line
                    && e.vm.as_deref() == *vm
                    && e.key.as_deref() == *key
                    && e.message.contains(needle)),
                "no error ({line}, {vm:?}, {key:?}, {needle:?}) in {errors:#?}"
            );
        }
        assert_eq!(errors.len(), want.len(), "{errors:#?}");
        assert_eq!(
            errors[1].to_string(),
            "bad VM configuration: line 8: [vm typo] colour: unknown key (keys: kernel, initrd, cmdline, memory, quota, cpus, pcpus, devices, console, on_poweroff, on_reset, on_crash, time_limit, mode)"
        );
    }

    #[test]
    fn module_strings_drop_the_path_and_module_of() {
        assert_eq!(module_string("/boot/m.bin alpha  module_of=mb one"), "alpha one");
        assert_eq!(module_string("/work/target/m.bin module_of=mb"), "");
        assert_eq!(module_string(r#"module_of=mb k="a b" "w=c d" x=1"#), r#"k="a b" "w=c d" x=1"#);
        // A path-like word that is not first is an argument.
        assert_eq!(module_string("module_of=mb /etc/conf"), "/etc/conf");
        assert_eq!(module_of("/boot/m.bin alpha module_of=mb one"), Some("mb"));
        assert_eq!(module_of("name=mb"), None);
    }

    #[test]
    fn the_basalt_section_and_config_modules() {
        let text = "[basalt]\ncmdline = \"log=debug smt_sharing=allow\"\n[vm a]\nkernel = cpuid\n";
        assert_eq!(host_cmdline(text), Ok(Some("log=debug smt_sharing=allow".into())));
        assert_eq!(parse_ok(text).len(), 1, "parse skips [basalt]");
        assert_eq!(host_cmdline("[vm a]\nkernel = cpuid\ncmdline = x\n"), Ok(None));
        let e = host_cmdline("[basalt]\nlog = debug\n").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (2, Some("log")));
        assert!(e.to_string().contains("[basalt] unknown key"), "{e}");
        assert!(is_config_module("/boot/basalt.cfg"));
        assert!(is_config_module("vms.cfg"));
        assert!(!is_config_module("/boot/cpuid name=cfg"));
        assert!(!is_config_module(".cfg"));
    }

    #[test]
    fn value_parsers() {
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("1 GiB"), Some(1 << 30));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("64"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
        assert_eq!(parse_size("17179869184G"), None, "overflow");
        assert_eq!(parse_cpu_list("1,2"), Ok(vec![1, 2]));
        assert_eq!(parse_cpu_list("0, 2-4"), Ok(vec![0, 2, 3, 4]));
        assert!(parse_cpu_list("3-1").unwrap_err().contains("backwards"));
        assert!(parse_cpu_list("1,1").unwrap_err().contains("twice"));
        assert!(parse_cpu_list("0-99999999999").unwrap_err().contains("beyond"));
        assert!(parse_cpu_list("").is_err());
        assert_eq!(
            parse_devices("debug-exit=0x501 , testdev"),
            Ok(vec![Device::DebugExit { port: 0x501 }, Device::TestDev])
        );
        assert!(parse_devices("debug-exit").unwrap_err().contains("needs its port"));
        assert!(parse_devices("debug-exit=70000").unwrap_err().contains("up to 0xfffc"));
        assert!(parse_devices("testdev, testdev").unwrap_err().contains("twice"));
        assert!(parse_devices("uart").unwrap_err().contains("unknown device"));
    }

    #[test]
    fn module_cmdline_image_names() {
        assert_eq!(split_module_cmdline("cpuid name=x", None), (Some("cpuid"), "name=x"));
        assert_eq!(split_module_cmdline("/boot/cpuid name=x", None), (Some("cpuid"), "name=x"));
        assert_eq!(split_module_cmdline("  /boot/cpuid  ", None), (Some("cpuid"), ""));
        assert_eq!(split_module_cmdline("name=x testdev", None), (None, "name=x testdev"));
        assert_eq!(split_module_cmdline("testdev name=x", None), (None, "testdev name=x"));
        assert_eq!(split_module_cmdline("cpuid name=x", Some(&["other"])), (None, "cpuid name=x"));
        assert_eq!(split_module_cmdline("cpuid name=x", Some(&["/boot/cpuid"])), (Some("cpuid"), "name=x"));
        assert_eq!(split_module_cmdline("", None), (None, ""));
        let s = parse_module_words("cpuid name=x testdev", None, None).unwrap();
        assert_eq!((s.kernel.as_deref(), s.name.as_str(), s.test_device()), (Some("cpuid"), "x", true));
        let s = parse_module_words("/boot/cpuid name=x", None, Some(&["cpuid"])).unwrap();
        assert_eq!(s.kernel.as_deref(), Some("cpuid"));
        let e = parse_module_words("cpuid name=x", None, Some(&["other"])).unwrap_err();
        assert!(e.to_string().contains("unknown word \"cpuid\""), "{e}");
    }

    /// The kernel's `vm::config` tests, word for word, on [`parse_module_words`].
    #[test]
    fn module_words_as_the_kernel_reads_them() {
        let p = |t: &str, d: Option<u64>| parse_module_words(t, d, None);
        let c = p("name=cpuid", None).unwrap();
        assert_eq!((c.name.as_str(), c.memory_bytes, c.mode), ("cpuid", 16 << 20, None));
        assert_eq!(c.quota_bytes, (16 << 20) + (512 << 10));
        assert_eq!(c.time_limit_s, None);
        let c = p("/boot/rm name=rm mem=4 mode=real quota=8192 time_limit=3", Some(30)).unwrap();
        assert_eq!((c.memory_bytes, c.mode, c.quota_bytes), (4 << 20, Some(StartMode::Real), 8 << 20));
        assert_eq!(c.time_limit_s, Some(3));
        assert_eq!(p("name=a", Some(30)).unwrap().time_limit_s, Some(30), "the default");
        assert_eq!(p("name=a time_limit=0", Some(30)).unwrap().time_limit_s, None, "0: none");
        assert_eq!(p("name=a cpus=1 pcpus=3", None).unwrap().pcpu(), Some(3));
        assert_eq!(p("name=a", None).unwrap().pcpu(), None);
        assert!(p("name=a testdev", None).unwrap().test_device());
        assert!(!p("name=a", None).unwrap().test_device());
        let c = p("name=a cpus=4 pcpus=4,2,1,3", None).unwrap();
        assert_eq!((c.cpus, c.pcpus.as_slice()), (4, &[4, 2, 1, 3][..]));
        assert_eq!(p("name=a debug_exit=0xf4", None).unwrap().devices, [Device::DebugExit { port: 0xF4 }]);
        assert_eq!(p("name=a debug_exit=1281", None).unwrap().devices, [Device::DebugExit { port: 0x501 }]);
        let c = p(r#"/boot/vmlinuz name=l cmdline="console=ttyS0 quiet""#, None).unwrap();
        assert_eq!(
            (c.kernel.as_deref(), c.cmdline.as_deref()),
            (Some("vmlinuz"), Some("console=ttyS0 quiet"))
        );
        let c = p("name=a", None).unwrap();
        assert_eq!((c.on_poweroff, c.on_reset, c.on_crash), (Action::Stop, Action::Restart, Action::Stop));
        let c = p("name=a on_poweroff=restart on_reset=stop on_crash=restart", None).unwrap();
        assert_eq!((c.on_poweroff, c.on_reset, c.on_crash), (Action::Restart, Action::Stop, Action::Restart));
        assert_eq!(initrd_of("/boot/initrd.img initrd_of=l"), Some("l"));
        assert_eq!(initrd_of("name=l"), None);
        for (text, needle) in [
            ("mem=16", "needs name"),
            ("name=a mem=lots", "mem= needs a whole number"),
            ("name=a mem=3", "even number"),
            ("name=a mem=0", "even number"),
            ("name=a mode=protected", "mode= is long or real"),
            ("name=a colour=blue", "unknown word \"colour\""),
            ("name=a/b", "name= needs"),
            ("name=a time_limit=soon", "time_limit= needs a whole number"),
            ("name=a cpus=17", "cpus=17: a VM has 1 to 16 vCPUs"),
            ("name=a cpus=0", "cpus=0"),
            ("name=a pcpus=1,2", "pcpus= names 2 CPU(s) for cpus=1: name one CPU per vCPU"),
            ("name=a cpus=2 pcpus=3,3", "names CPU 3 twice"),
            ("name=a debug_exit", "debug_exit= needs a port"),
            ("name=a debug_exit=0x10000", "debug_exit= needs a port"),
            ("name=a on_reset=reboot", "on_reset= is stop or restart"),
            ("name=a mem=4096", "from 2 to 2816"),
            ("name=a pcpus=x", "pcpus= needs CPU numbers"),
            ("name=a testdev mem=2048", "needs RAM of at most 1008 MiB"),
            ("name=a time_limit=100000", "at most 86400 seconds"),
        ] {
            let e = p(text, None).unwrap_err();
            assert!(e.to_string().contains(needle), "{text}: {e}");
            assert!(e.to_string().starts_with("bad VM configuration: "), "{e}");
        }
    }
}
