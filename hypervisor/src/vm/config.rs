//! A VM's configuration, from its module command line (`name=cpuid mem=16 mode=long`).
//!
//! A bad configuration is an error naming the word at fault; that VM is not started, and
//! nothing else is affected.

use alloc::string::{String, ToString};
use basalt_boot::Cmdline;

/// How the vCPU starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// 64-bit mode with Basalt-built identity page tables (the guest boot ABI in `tests/`).
    Long,
    /// Real mode at 0:e_entry.
    Real,
}

/// Everything needed to create one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    pub name: String,
    /// Guest RAM in bytes.
    pub mem_bytes: u64,
    /// `mode=long|real`: Basalt's own guest boot ABI, started that way whatever else the image
    /// carries; `None`: the image decides (basalt_loader::detect).
    pub mode: Option<StartMode>,
    /// Most host memory the VM may be charged for (RAM plus every control structure).
    pub quota_bytes: u64,
    /// `time_limit=<seconds>`: the VM is stopped with a report once it has run this long
    /// (`0`: no limit). Without the word, the default the caller passes to `parse`.
    pub time_limit_s: Option<u64>,
    /// `cpus=<n>`: how many vCPUs (the first starts the others with INIT-SIPI-SIPI).
    pub vcpus: u32,
    /// `pcpus=<i>,<j>,..`: the physical CPUs (indices, 0 = the boot CPU) the vCPUs run on, one
    /// per vCPU in order; empty: the next free ones.
    pub pcpus: alloc::vec::Vec<usize>,
    /// `testdev`: the MMIO test device (vm::testdev) at its guest-physical address.
    pub test_device: bool,
    /// `debug_exit=<port>`: QEMU's isa-debug-exit at that port (4 bytes): a write of `v`
    /// ends the VM with status `(v << 1) | 1`.
    pub debug_exit: Option<u16>,
    /// `on_poweroff=stop|restart` (default stop) and `on_reset=stop|restart` (default
    /// restart, as a PC does): what the guest's ACPI S5 and resets do to its VM.
    pub on_poweroff: super::OnEnd,
    pub on_reset: super::OnEnd,
    /// `cmdline="..."`: a Linux or multiboot guest's kernel command line.
    pub cmdline: String,
}

/// The first value of `key` in a module command line (after its file path).
fn word_of<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    Cmdline::new(text).without_kernel_path().iter().find_map(|(k, v)| (k == key).then_some(v).flatten())
}

/// The VM a module is the initrd of (`initrd_of=<vm>`), if it is one: such a module is not a
/// VM itself.
pub fn initrd_of(text: &str) -> Option<&str> {
    word_of(text, "initrd_of")
}

/// The multiboot VM a module is a boot module of (`module_of=<vm>`), if it is one: such a
/// module is not a VM itself.
pub fn module_of(text: &str) -> Option<&str> {
    word_of(text, "module_of")
}

/// Whether a boot module is part of another VM (its initrd or one of its multiboot modules)
/// rather than a VM of its own.
pub fn is_part_of_a_vm(text: &str) -> bool {
    initrd_of(text).is_some() || module_of(text).is_some()
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

/// vCPUs a VM may have (`cpus=`).
pub const MAX_VCPUS: u64 = 16;

/// Default guest RAM.
pub const DEFAULT_MEM_MIB: u64 = 16;
/// Largest guest RAM this version accepts.
/// Largest guest RAM this version accepts: RAM ends below the PCI hole (the ECAM window at
/// 2816 MiB, then the IOAPIC and LAPIC); RAM above 4 GiB is not built yet.
pub const MAX_MEM_MIB: u64 = 2816;
/// Host memory a VM may use beyond its RAM, unless `quota=` says otherwise.
pub const DEFAULT_OVERHEAD_KIB: u64 = 512;
/// Longest time limit accepted (a day).
pub const MAX_TIME_LIMIT_S: u64 = 86_400;

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "bad VM configuration: {}", self.0)
    }
}

fn number(key: &str, value: Option<&str>) -> Result<u64, ConfigError> {
    value.and_then(|v| v.parse::<u64>().ok()).ok_or_else(|| {
        ConfigError(alloc::format!("{key}= needs a whole number, got {:?}", value.unwrap_or("")))
    })
}

impl VmConfig {
    /// Parse a module command line. Unknown words are errors: a typo must not silently give a
    /// VM other than the one asked for. A leading file path (QEMU and GRUB pass the module's
    /// path as its first word) is skipped. `default_time_limit_s` applies when the VM names no
    /// `time_limit=` (the kernel gives test VMs one).
    pub fn parse(text: &str, default_time_limit_s: Option<u64>) -> Result<VmConfig, ConfigError> {
        let mut time_limit_s = default_time_limit_s;
        let mut pcpus = alloc::vec::Vec::new();
        let mut vcpus = 1;
        let mut test_device = false;
        let mut debug_exit = None;
        let mut on_poweroff = super::OnEnd::Stop;
        let mut on_reset = super::OnEnd::Restart;
        let mut cmdline = String::new();
        let mut name = None;
        let mut mem_mib = DEFAULT_MEM_MIB;
        let mut mode = None;
        let mut quota_kib = None;
        for (key, value) in Cmdline::new(text).without_kernel_path().iter() {
            match key {
                "name" => match value {
                    Some(v)
                        if !v.is_empty()
                            && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
                    {
                        name = Some(v.to_string())
                    }
                    _ => {
                        return Err(ConfigError(alloc::format!(
                            "name= needs letters, digits, '-', '_' or '.', got {:?}",
                            value.unwrap_or("")
                        )))
                    }
                },
                "mem" => {
                    mem_mib = number("mem", value)?;
                    if !(2..=MAX_MEM_MIB).contains(&mem_mib) || !mem_mib.is_multiple_of(2) {
                        return Err(ConfigError(alloc::format!(
                            "mem={mem_mib}: guest RAM must be an even number of MiB from 2 to {MAX_MEM_MIB}"
                        )));
                    }
                }
                "mode" => {
                    mode = match value {
                        Some("long") => Some(StartMode::Long),
                        Some("real") => Some(StartMode::Real),
                        other => {
                            return Err(ConfigError(alloc::format!(
                                "mode= is long or real, got {:?}",
                                other.unwrap_or("")
                            )))
                        }
                    }
                }
                "quota" => quota_kib = Some(number("quota", value)?),
                "testdev" if value.is_none() => test_device = true,
                "cmdline" => cmdline = value.unwrap_or("").to_string(),
                "on_poweroff" | "on_reset" => {
                    let policy = match value {
                        Some("stop") => super::OnEnd::Stop,
                        Some("restart") => super::OnEnd::Restart,
                        other => {
                            return Err(ConfigError(alloc::format!(
                                "{key}= is stop or restart, got {:?}",
                                other.unwrap_or("")
                            )))
                        }
                    };
                    if key == "on_reset" {
                        on_reset = policy;
                    } else {
                        on_poweroff = policy;
                    }
                }
                "debug_exit" => {
                    let v = value.unwrap_or("");
                    let port = match v.strip_prefix("0x") {
                        Some(hex) => u16::from_str_radix(hex, 16).ok(),
                        None => v.parse::<u16>().ok(),
                    };
                    match port {
                        Some(p) if p <= 0xFFFC => debug_exit = Some(p),
                        _ => {
                            return Err(ConfigError(alloc::format!(
                                "debug_exit= needs a port (0xf4, or 0 to 65532), got {v:?}"
                            )))
                        }
                    }
                }
                "cpus" => {
                    let n = number("cpus", value)?;
                    if n == 0 || n > MAX_VCPUS {
                        return Err(ConfigError(alloc::format!("cpus={n}: a VM has 1 to {MAX_VCPUS} vCPUs")));
                    }
                    vcpus = n as u32;
                }
                "pcpus" => {
                    let list = value.unwrap_or("");
                    let cpus: Result<alloc::vec::Vec<usize>, _> =
                        list.split(',').map(str::parse::<usize>).collect();
                    match cpus {
                        Ok(list) => pcpus = list,
                        Err(_) => {
                            return Err(ConfigError(alloc::format!(
                                "pcpus= needs CPU numbers separated by commas, got {list:?}"
                            )))
                        }
                    }
                }
                "time_limit" => {
                    let s = number("time_limit", value)?;
                    if s > MAX_TIME_LIMIT_S {
                        return Err(ConfigError(alloc::format!(
                            "time_limit={s}: at most {MAX_TIME_LIMIT_S} seconds (0 for none)"
                        )));
                    }
                    time_limit_s = (s > 0).then_some(s);
                }
                other => return Err(ConfigError(alloc::format!("unknown word {other:?}"))),
            }
        }
        let name = name.ok_or_else(|| ConfigError("every VM needs name=<name>".into()))?;
        if !pcpus.is_empty() && pcpus.len() != vcpus as usize {
            return Err(ConfigError(alloc::format!(
                "pcpus= names {} CPU(s) for cpus={vcpus}: name one CPU per vCPU",
                pcpus.len()
            )));
        }
        if let Some(c) = pcpus.iter().enumerate().find_map(|(i, c)| pcpus[..i].contains(c).then_some(c)) {
            return Err(ConfigError(alloc::format!("pcpus= names CPU {c} twice: one vCPU per CPU")));
        }
        if test_device && mem_mib > basalt_devices::testdev::TEST_DEVICE_MAX_RAM_MIB {
            return Err(ConfigError(alloc::format!(
                "testdev with mem={mem_mib}: the test device at {:#x} needs RAM of at most {} MiB",
                basalt_devices::testdev::TEST_DEVICE_GPA,
                basalt_devices::testdev::TEST_DEVICE_MAX_RAM_MIB
            )));
        }
        let mem_bytes = mem_mib << 20;
        let quota_bytes = quota_kib.map_or(mem_bytes + (DEFAULT_OVERHEAD_KIB << 10), |k| k << 10);
        Ok(VmConfig {
            name,
            mem_bytes,
            mode,
            quota_bytes,
            time_limit_s,
            vcpus,
            pcpus,
            test_device,
            debug_exit,
            on_poweroff,
            on_reset,
            cmdline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn defaults_and_all_words() {
        let c = VmConfig::parse("name=cpuid", None).unwrap();
        assert_eq!((c.name.as_str(), c.mem_bytes, c.mode), ("cpuid", 16 << 20, None));
        assert_eq!(VmConfig::parse("name=a mode=long", None).unwrap().mode, Some(StartMode::Long));
        assert_eq!(c.quota_bytes, (16 << 20) + (512 << 10));
        assert_eq!(c.time_limit_s, None);
        let c =
            VmConfig::parse("/boot/rm name=rm mem=4 mode=real quota=8192 time_limit=3", Some(30)).unwrap();
        assert_eq!((c.mem_bytes, c.mode, c.quota_bytes), (4 << 20, Some(StartMode::Real), 8 << 20));
        assert_eq!(c.time_limit_s, Some(3));
        assert_eq!(VmConfig::parse("name=a", Some(30)).unwrap().time_limit_s, Some(30), "the default");
        assert_eq!(VmConfig::parse("name=a time_limit=0", Some(30)).unwrap().time_limit_s, None, "0: none");
        let c = VmConfig::parse("name=a cpus=1 pcpus=3", None).unwrap();
        assert_eq!(c.pcpus, [3]);
        assert_eq!(VmConfig::parse("name=a", None).unwrap().pcpus, []);
        let c = VmConfig::parse("name=a cpus=4 pcpus=4,2,1,3", None).unwrap();
        assert_eq!((c.vcpus, c.pcpus.as_slice()), (4, &[4, 2, 1, 3][..]));
        assert_eq!(VmConfig::parse("name=a cpus=2", None).unwrap().vcpus, 2);
        assert!(VmConfig::parse("name=a testdev", None).unwrap().test_device);
        assert!(!VmConfig::parse("name=a", None).unwrap().test_device);
        assert_eq!(VmConfig::parse("name=a debug_exit=0xf4", None).unwrap().debug_exit, Some(0xF4));
        assert_eq!(VmConfig::parse("name=a debug_exit=1281", None).unwrap().debug_exit, Some(0x501));
        assert_eq!(VmConfig::parse("name=a", None).unwrap().debug_exit, None);
        let c = VmConfig::parse(r#"/boot/vmlinuz name=l cmdline="console=ttyS0 quiet""#, None).unwrap();
        assert_eq!(c.cmdline, "console=ttyS0 quiet");
        assert_eq!(initrd_of("/boot/initrd.img initrd_of=l"), Some("l"));
        assert_eq!(initrd_of("name=l"), None);
        assert_eq!(module_of("/boot/m.bin alpha module_of=mb one"), Some("mb"));
        assert_eq!(module_of("name=mb"), None);
        assert!(is_part_of_a_vm("/x/initrd initrd_of=l") && is_part_of_a_vm("module_of=mb"));
        assert!(!is_part_of_a_vm("/x/cpuid name=cpuid"));
        let c = VmConfig::parse("name=a", None).unwrap();
        assert_eq!((c.on_poweroff, c.on_reset), (super::super::OnEnd::Stop, super::super::OnEnd::Restart));
        let c = VmConfig::parse("name=a on_poweroff=restart on_reset=stop", None).unwrap();
        assert_eq!((c.on_poweroff, c.on_reset), (super::super::OnEnd::Restart, super::super::OnEnd::Stop));
    }

    #[test]
    fn module_strings_drop_the_path_and_module_of() {
        assert_eq!(module_string("/boot/m.bin alpha  module_of=mb one"), "alpha one");
        assert_eq!(module_string("/work/target/m.bin module_of=mb"), "");
        assert_eq!(module_string(r#"module_of=mb k="a b" "w=c d" x=1"#), r#"k="a b" "w=c d" x=1"#);
        // A path-like word that is not first is an argument.
        assert_eq!(module_string("module_of=mb /etc/conf"), "/etc/conf");
    }

    #[test]
    fn mistakes_are_named() {
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
            ("name=a pcpus=x", "pcpus= needs CPU numbers"),
            ("name=a testdev mem=2048", "needs RAM of at most 1008 MiB"),
            ("name=a time_limit=100000", "at most 86400 seconds"),
            ("name=a debug_exit", "debug_exit= needs a port"),
            ("name=a on_reset=reboot", "on_reset= is stop or restart"),
            ("name=a debug_exit=0x10000", "debug_exit= needs a port"),
            ("name=a mem=4096", "from 2 to 2816"),
        ] {
            let e = VmConfig::parse(text, None).unwrap_err();
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
    }
}
