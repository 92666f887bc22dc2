//! `\basalt\basalt.cfg`: what the loader boots.
//!
//! Line-based; `#` starts a comment (to the end of the line); blank lines are ignored.
//!
//! ```text
//! # kernel command line (default: log=info)
//! cmdline = log=info
//! # one line per VM: vm <name> <file> [mem=<MiB>] [mode=long|real]
//! vm demo demo.elf mem=64 mode=long
//! ```
//!
//! A `vm` file is relative to `\basalt\` on the EFI System Partition unless it starts with
//! `\` or `/` (either separator works). `mem` defaults to [`DEFAULT_MEM_MIB`]; without `mode`
//! the image decides how it starts (Basalt's test guests in long mode, multiboot kernels as
//! such), as on the multiboot path. Every mistake is an error with its line number; the loader starts nothing then.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// Guest memory when a `vm` line gives no `mem=`.
pub const DEFAULT_MEM_MIB: u32 = 16;
/// Most guest memory (the VM core's limit, hypervisor/src/vm/config.rs on main).
pub const MAX_MEM_MIB: u32 = 4096;
/// Kernel command line when the config has no `cmdline` line.
pub const DEFAULT_CMDLINE: &str = "log=info";
/// Longest VM name (it must fit, with the rest, in a module command line).
pub const MAX_NAME: usize = 64;

/// The CPU mode a guest starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Long,
    Real,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Long => "long",
            Mode::Real => "real",
        }
    }
}

/// One `vm` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmEntry {
    pub name: String,
    /// The file as written in the config.
    pub file: String,
    pub mem_mib: u32,
    /// `mode=`: Basalt's guest boot ABI in that mode; without it the image decides (a guest
    /// carrying Basalt's guest-ABI note starts in long mode, a multiboot kernel as one).
    pub mode: Option<Mode>,
    /// 1-based line number, for error messages.
    pub line: usize,
}

impl VmEntry {
    /// The file's path on the ESP, with `\` separators and a leading `\`.
    pub fn esp_path(&self) -> String {
        esp_path(&self.file)
    }

    /// The boot module's command line: the form the multiboot path uses.
    pub fn module_cmdline(&self) -> String {
        match self.mode {
            Some(mode) => format!("name={} mem={} mode={}", self.name, self.mem_mib, mode.as_str()),
            None => format!("name={} mem={}", self.name, self.mem_mib),
        }
    }
}

/// `file` as an absolute ESP path: relative names live in `\basalt\`.
pub fn esp_path(file: &str) -> String {
    let file = file.replace('/', "\\");
    if file.starts_with('\\') {
        file
    } else {
        format!("\\basalt\\{file}")
    }
}

/// The parsed config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub cmdline: String,
    pub vms: Vec<VmEntry>,
}

/// A config mistake and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "basalt.cfg line {}: {}", self.line, self.message)
    }
}

fn err(line: usize, message: impl Into<String>) -> ConfigError {
    ConfigError { line, message: message.into() }
}

/// Parse the whole config text.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let mut cmdline: Option<String> = None;
    let mut vms: Vec<VmEntry> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let key = content.split(|c: char| c.is_whitespace() || c == '=').next().unwrap_or("");
        match key {
            "cmdline" => {
                let rest = content["cmdline".len()..].trim_start();
                let Some(value) = rest.strip_prefix('=') else {
                    return Err(err(line, "expected `cmdline = <kernel command line>`"));
                };
                if cmdline.is_some() {
                    return Err(err(line, "a second `cmdline` line"));
                }
                cmdline = Some(value.trim().to_string());
            }
            "vm" => {
                let vm = parse_vm(line, content["vm".len()..].trim())?;
                if vms.iter().any(|v| v.name == vm.name) {
                    return Err(err(line, format!("a second VM named {:?}", vm.name)));
                }
                vms.push(vm);
            }
            other => return Err(err(line, format!("unknown key {other:?} (expected `cmdline` or `vm`)"))),
        }
    }
    Ok(Config { cmdline: cmdline.unwrap_or_else(|| DEFAULT_CMDLINE.to_string()), vms })
}

fn parse_vm(line: usize, rest: &str) -> Result<VmEntry, ConfigError> {
    let mut words = rest.split_whitespace();
    let usage = "expected `vm <name> <file> [mem=<MiB>] [mode=long|real]`";
    let name = words.next().ok_or_else(|| err(line, format!("vm line without a name: {usage}")))?;
    let valid_name = name.len() <= MAX_NAME
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.is_empty();
    if !valid_name {
        return Err(err(
            line,
            format!("bad VM name {name:?} (letters, digits, - and _, at most {MAX_NAME})"),
        ));
    }
    let file = match words.next() {
        Some(f) if !f.contains('=') => f,
        _ => return Err(err(line, format!("vm {name} has no file: {usage}"))),
    };
    if file.len() > 200 || !file.chars().all(|c| c.is_ascii_graphic()) {
        return Err(err(line, format!("bad file name {file:?}")));
    }
    let mut vm = VmEntry {
        name: name.to_string(),
        file: file.to_string(),
        mem_mib: DEFAULT_MEM_MIB,
        mode: None,
        line,
    };
    for word in words {
        match word.split_once('=') {
            Some(("mem", value)) => {
                vm.mem_mib = match value.parse::<u32>() {
                    Ok(n) if (2..=MAX_MEM_MIB).contains(&n) && n % 2 == 0 => n,
                    _ => {
                        return Err(err(
                            line,
                            format!("bad number in mem={value} (an even number of MiB, 2 to {MAX_MEM_MIB})"),
                        ))
                    }
                };
            }
            Some(("mode", "long")) => vm.mode = Some(Mode::Long),
            Some(("mode", "real")) => vm.mode = Some(Mode::Real),
            Some(("mode", value)) => return Err(err(line, format!("bad mode={value} (long or real)"))),
            _ => return Err(err(line, format!("unknown vm option {word:?} (mem=<MiB> or mode=long|real)"))),
        }
    }
    Ok(vm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_config() {
        let text = "# Basalt\n\ncmdline = log=debug test=boot   # trailing comment\n\
                    vm demo demo.elf mem=32 mode=real\n  vm other /guests/x.bin\n";
        let config = parse(text).unwrap();
        assert_eq!(config.cmdline, "log=debug test=boot");
        assert_eq!(config.vms.len(), 2);
        let demo = &config.vms[0];
        assert_eq!(
            (demo.name.as_str(), demo.file.as_str(), demo.mem_mib, demo.mode, demo.line),
            ("demo", "demo.elf", 32, Some(Mode::Real), 4)
        );
        assert_eq!(demo.module_cmdline(), "name=demo mem=32 mode=real");
        assert_eq!(demo.esp_path(), "\\basalt\\demo.elf");
        let other = &config.vms[1];
        assert_eq!((other.mem_mib, other.mode, other.line), (DEFAULT_MEM_MIB, None, 5));
        assert_eq!(other.module_cmdline(), format!("name=other mem={DEFAULT_MEM_MIB}"));
        assert_eq!(other.esp_path(), "\\guests\\x.bin");
    }

    #[test]
    fn defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.cmdline, DEFAULT_CMDLINE);
        assert!(config.vms.is_empty());
        assert_eq!(parse("cmdline=").unwrap().cmdline, "");
    }

    fn error(text: &str) -> ConfigError {
        parse(text).unwrap_err()
    }

    #[test]
    fn errors_carry_the_line_number() {
        let e = error("cmdline = log=info\n\nbogus = 1\n");
        assert_eq!(e.line, 3);
        assert_eq!(e.to_string(), "basalt.cfg line 3: unknown key \"bogus\" (expected `cmdline` or `vm`)");
        assert_eq!(error("# x\nvm demo\n").line, 2);
        assert!(error("vm demo\n").message.contains("has no file"));
        assert!(error("vm demo mem=3\n").message.contains("has no file"));
        assert!(error("vm\n").message.contains("without a name"));
        assert!(error("vm demo d.elf mem=lots\n").message.contains("bad number in mem=lots"));
        assert!(error("vm demo d.elf mem=0\n").message.contains("bad number"));
        assert!(error("vm demo d.elf mem=3\n").message.contains("bad number"));
        assert!(error("vm demo d.elf mem=8192\n").message.contains("bad number"));
        assert!(error("vm demo d.elf mode=protected\n").message.contains("bad mode=protected"));
        assert!(error("vm demo d.elf cpus=2\n").message.contains("unknown vm option"));
        assert!(error("vm d$mo d.elf\n").message.contains("bad VM name"));
        assert!(error("vm a x\nvm a y\n").message.contains("second VM"));
        assert!(error("cmdline log=info\n").message.contains("expected `cmdline ="));
        assert!(error("cmdline = a\ncmdline = b\n").message.contains("second `cmdline`"));
    }

    #[test]
    fn module_cmdline_fits() {
        let name = "n".repeat(MAX_NAME);
        let vm = parse(&format!("vm {name} f mem={MAX_MEM_MIB}\n")).unwrap().vms.remove(0);
        assert!(vm.module_cmdline().len() <= basalt_boot::MAX_MODULE_CMDLINE);
    }
}
