//! `\basalt\basalt.cfg`: what the loader boots, in Basalt's one configuration format
//! (basalt_loader::config, the README's "Configuration"): a `[basalt]` section with Basalt's
//! own `cmdline`, and one `[vm NAME]` section per VM whose `kernel` and `initrd` name files.
//!
//! ```text
//! [basalt]
//! cmdline = log=info
//! [vm demo]
//! kernel = demo.elf
//! memory = 64M
//! ```
//!
//! The loader reads only what it needs to load: Basalt's command line and the files the VMs
//! name. It hands Basalt the configuration itself as a module (`basalt.cfg`) and each file as
//! a module named by its path, and Basalt checks the configuration as a whole, as it does on
//! the multiboot path: a VM with a fault is refused with its line and key, the others start.
//! A file is relative to `\basalt\` on the EFI System Partition unless it starts with `\` or
//! `/` (either separator works).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use basalt_loader::config;

/// Kernel command line when the config has no `[basalt]` cmdline.
pub const DEFAULT_CMDLINE: &str = "log=info";
/// The configuration module's command line: the name Basalt knows a configuration by.
pub const CONFIG_MODULE: &str = "/basalt/basalt.cfg";

/// What the loader must do for a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Basalt's command line.
    pub cmdline: String,
    /// The files the VMs name (kernels and initrds), as written, each once, in order.
    pub files: Vec<String>,
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

/// The module command line of a file: its ESP path with `/`, whose last component is the
/// name the configuration's `kernel`/`initrd` match.
pub fn module_cmdline(file: &str) -> String {
    esp_path(file).replace('\\', "/")
}

/// Read a configuration: `Err` only for Basalt's own section (without its command line
/// Basalt cannot start); faults in VM sections are Basalt's to report.
pub fn plan(text: &str) -> Result<Plan, String> {
    let cmdline = config::host_cmdline(text).map_err(|e| {
        let key = e.key.map(|k| format!(" {k}:")).unwrap_or_default();
        format!("basalt.cfg line {}:{key} {}", e.line, e.message)
    })?;
    // Every image a VM without a fault names; the limits are Basalt's to apply.
    let limits = config::Limits {
        cpu_count: config::MAX_PCPU + 1,
        max_vcpus: config::MAX_VCPUS as u32,
        default_time_limit_s: None,
    };
    let (vms, _) = config::parse(text, &limits, &|_: &str| Some(0));
    let mut files: Vec<String> = Vec::new();
    for file in vms.iter().flat_map(|v| v.kernel.iter().chain(v.initrd.iter())) {
        if !files.contains(file) {
            files.push(file.clone());
        }
    }
    Ok(Plan { cmdline: cmdline.unwrap_or_else(|| DEFAULT_CMDLINE.to_string()), files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_cmdline() {
        let text = "# Basalt\n[basalt]\ncmdline = \"log=debug test=boot\"\n\
                    [vm demo]\nkernel = demo.elf\nmemory = 32M\nmode = real\n\
                    [vm other]; kernel = /guests/x.bin; initrd = rd.img\n[vm again]; kernel = demo.elf\n\
                    [vm broken]; kernel = y.elf; memroy = 4M\n";
        let plan = plan(text).unwrap();
        assert_eq!(plan.cmdline, "log=debug test=boot");
        assert_eq!(plan.files, ["demo.elf", "/guests/x.bin", "rd.img"], "the broken VM's file is not read");
        assert_eq!(esp_path("demo.elf"), "\\basalt\\demo.elf");
        assert_eq!(esp_path("/guests/x.bin"), "\\guests\\x.bin");
        assert_eq!(module_cmdline("demo.elf"), "/basalt/demo.elf");
        assert!(config::is_config_module(CONFIG_MODULE));
        assert_eq!(config::split_module_cmdline(&module_cmdline("sub\\x.elf"), None).0, Some("x.elf"));
    }

    #[test]
    fn defaults_and_the_faults_that_stop_the_loader() {
        assert_eq!(plan("").unwrap(), Plan { cmdline: DEFAULT_CMDLINE.into(), files: Vec::new() });
        assert_eq!(
            plan("[basalt]\ncmdline = \"open\n").unwrap_err(),
            "basalt.cfg line 2: cmdline: [basalt] the quoted value is not closed"
        );
        assert!(plan("[basalt]\nlog = x\n").unwrap_err().contains("line 2: log: [basalt] unknown key"));
    }
}
