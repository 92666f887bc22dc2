//! A VM's configuration, as the kernel uses it: read from a module command line
//! (`name=cpuid mem=16 mode=long`) or from a configuration file's `[vm NAME]` section, both
//! by the one parser in `basalt_loader::config` (format, words and messages there).
//!
//! A bad configuration is an error naming the word (or line and key) at fault; that VM is not
//! started, and nothing else is affected.

use alloc::string::String;
use basalt_loader::config::{Action, Device, VmSpec};

pub use basalt_loader::config::{StartMode, MAX_MEM_MIB, MAX_VCPUS};

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
    /// The VM is stopped with a report once it has run this long; `None`: no limit.
    pub time_limit_s: Option<u64>,
    /// vCPUs (the first starts the others with INIT-SIPI-SIPI).
    pub vcpus: u32,
    /// The physical CPUs (indices, 0 = the boot CPU) the vCPUs run on, one per vCPU in order;
    /// empty: the next free ones.
    pub pcpus: alloc::vec::Vec<usize>,
    /// The MMIO test device (vm::testdev) at its guest-physical address.
    pub test_device: bool,
    /// QEMU's isa-debug-exit at that port (4 bytes): a write of `v` ends the VM with status
    /// `(v << 1) | 1`.
    pub debug_exit: Option<u16>,
    /// What the guest's ACPI S5, its resets and its triple faults do to its VM.
    pub on_poweroff: super::OnEnd,
    pub on_reset: super::OnEnd,
    pub on_crash: super::OnEnd,
    /// A Linux or multiboot guest's kernel command line.
    pub cmdline: String,
}

/// Longest time limit accepted (a day).
pub use basalt_loader::config::MAX_TIME_LIMIT_S;

/// Why a configuration was refused (the loader's message, `bad VM configuration: ...`).
pub type ConfigError = basalt_loader::config::ConfigError;

fn on_end(a: Action) -> super::OnEnd {
    match a {
        Action::Stop => super::OnEnd::Stop,
        Action::Restart => super::OnEnd::Restart,
    }
}

impl From<VmSpec> for VmConfig {
    fn from(s: VmSpec) -> VmConfig {
        VmConfig {
            test_device: s.test_device(),
            debug_exit: s.devices.iter().find_map(|d| match d {
                Device::DebugExit { port } => Some(*port),
                Device::TestDev => None,
            }),
            name: s.name,
            mem_bytes: s.memory_bytes,
            mode: s.mode,
            quota_bytes: s.quota_bytes,
            time_limit_s: s.time_limit_s,
            vcpus: s.cpus,
            pcpus: s.pcpus,
            on_poweroff: on_end(s.on_poweroff),
            on_reset: on_end(s.on_reset),
            on_crash: on_end(s.on_crash),
            cmdline: s.cmdline.unwrap_or_default(),
        }
    }
}

impl VmConfig {
    /// Parse a module command line. Unknown words are errors: a typo must not silently give a
    /// VM other than the one asked for. A leading file path (QEMU and GRUB pass the module's
    /// path as its first word) is skipped. `default_time_limit_s` applies when the VM names no
    /// `time_limit=` (the kernel gives test VMs one).
    pub fn parse(text: &str, default_time_limit_s: Option<u64>) -> Result<VmConfig, ConfigError> {
        basalt_loader::config::parse_module_words(text, default_time_limit_s, None).map(VmConfig::from)
    }
}

#[cfg(test)]
mod tests {
    use super::super::OnEnd;

    use super::*;
    use alloc::string::ToString;

    /// The words themselves are tested in basalt-loader; here, what the kernel makes of them.
    #[test]
    fn module_words_become_the_kernels_config() {
        let c =
            VmConfig::parse("/boot/rm name=rm mem=4 mode=real quota=8192 time_limit=3", Some(30)).unwrap();
        assert_eq!(
            (c.name.as_str(), c.mem_bytes, c.mode, c.quota_bytes),
            ("rm", 4 << 20, Some(StartMode::Real), 8 << 20)
        );
        assert_eq!((c.time_limit_s, c.vcpus, c.test_device, c.debug_exit), (Some(3), 1, false, None));
        let c = VmConfig::parse(
            r#"name=l cpus=2 pcpus=2,1 testdev debug_exit=0xf4 on_crash=restart cmdline="console=ttyS0 quiet""#,
            None,
        )
        .unwrap();
        assert_eq!(
            (c.vcpus, c.pcpus.as_slice(), c.test_device, c.debug_exit),
            (2, &[2, 1][..], true, Some(0xF4))
        );
        assert_eq!((c.on_poweroff, c.on_reset, c.on_crash), (OnEnd::Stop, OnEnd::Restart, OnEnd::Restart));
        assert_eq!(c.cmdline, "console=ttyS0 quiet");
        assert_eq!(VmConfig::parse("name=a", Some(30)).unwrap().time_limit_s, Some(30));
        let e = VmConfig::parse("name=a colour=blue", None).unwrap_err();
        assert_eq!(e.to_string(), "bad VM configuration: unknown word \"colour\"");
    }
}
