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
    pub mode: StartMode,
    /// Most host memory the VM may be charged for (RAM plus every control structure).
    pub quota_bytes: u64,
}

/// Default guest RAM.
pub const DEFAULT_MEM_MIB: u64 = 16;
/// Largest guest RAM this version accepts.
pub const MAX_MEM_MIB: u64 = 4096;
/// Host memory a VM may use beyond its RAM, unless `quota=` says otherwise.
pub const DEFAULT_OVERHEAD_KIB: u64 = 512;

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
    /// path as its first word) is skipped.
    pub fn parse(text: &str) -> Result<VmConfig, ConfigError> {
        let mut name = None;
        let mut mem_mib = DEFAULT_MEM_MIB;
        let mut mode = StartMode::Long;
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
                        Some("long") => StartMode::Long,
                        Some("real") => StartMode::Real,
                        other => {
                            return Err(ConfigError(alloc::format!(
                                "mode= is long or real, got {:?}",
                                other.unwrap_or("")
                            )))
                        }
                    }
                }
                "quota" => quota_kib = Some(number("quota", value)?),
                other => return Err(ConfigError(alloc::format!("unknown word {other:?}"))),
            }
        }
        let name = name.ok_or_else(|| ConfigError("every VM needs name=<name>".into()))?;
        let mem_bytes = mem_mib << 20;
        let quota_bytes = quota_kib.map_or(mem_bytes + (DEFAULT_OVERHEAD_KIB << 10), |k| k << 10);
        Ok(VmConfig { name, mem_bytes, mode, quota_bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn defaults_and_all_words() {
        let c = VmConfig::parse("name=cpuid").unwrap();
        assert_eq!((c.name.as_str(), c.mem_bytes, c.mode), ("cpuid", 16 << 20, StartMode::Long));
        assert_eq!(c.quota_bytes, (16 << 20) + (512 << 10));
        let c = VmConfig::parse("/boot/rm name=rm mem=4 mode=real quota=8192").unwrap();
        assert_eq!((c.mem_bytes, c.mode, c.quota_bytes), (4 << 20, StartMode::Real, 8 << 20));
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
        ] {
            let e = VmConfig::parse(text).unwrap_err();
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
    }
}
