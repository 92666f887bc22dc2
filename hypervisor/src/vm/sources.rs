//! Which boot modules are VMs, and what each VM loads: the one configuration format of
//! `basalt_loader::config` in both its forms.
//!
//! - A module whose first word names a `*.cfg` file (`-initrd 'basalt.cfg'`, GRUB's
//!   `module2 /boot/basalt.cfg`, the USB stick's `\basalt\basalt.cfg`) is a configuration: each
//!   of its `[vm NAME]` sections is a VM, whose `kernel` and `initrd` name other modules by
//!   their file name (with or without a directory). With a configuration, a module that has no
//!   words but its file name is an image for it, not a VM.
//! - A module with configuration words (`/boot/cpuid name=x mem=16`) is a VM of its own, its
//!   image the module itself; a module with `initrd_of=<vm>` is that VM's initrd.
//!
//! Everything is checked before anything starts; each fault is one refused VM with a message
//! naming it (and, in a file, the line and the key), and the valid VMs still start.

use super::config::VmConfig;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use basalt_loader::config::{self, Limits};

/// A VM to build: its configuration and the images it loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSource<'a> {
    pub config: VmConfig,
    pub image: &'a [u8],
    pub initrd: Option<&'a [u8]>,
    /// A multiboot kernel's modules, in boot order: each one's bytes and its string.
    pub modules: Vec<(&'a [u8], String)>,
}

/// One planned VM, or one refused: (its name, why).
pub type Planned<'a> = Result<VmSource<'a>, (String, String)>;

/// A boot module: its command line and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct ModuleView<'c, 'a> {
    pub cmdline: &'c str,
    pub bytes: &'a [u8],
}

/// The name a module's image goes by: the last component of its first word, when that word is
/// a file name (see `config::split_module_cmdline`).
fn image_name(m: &ModuleView<'_, '_>) -> Option<String> {
    config::split_module_cmdline(m.cmdline, None).0.map(String::from)
}

/// The last component of a path, with `/` or `\` (a USB stick's names) between them.
fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// A module's command line is nothing but its file name.
fn bare(m: &ModuleView<'_, '_>) -> bool {
    config::split_module_cmdline(m.cmdline, None).1.is_empty() && image_name(m).is_some()
}

/// The guest RAM an image needs at least, for the configuration's check: a bzImage's
/// `init_size` (plus its load address); 0 for an ELF kernel (its loader checks its segments
/// itself); the length of anything else (an initrd).
fn ram_needed(bytes: &[u8]) -> u64 {
    if basalt_loader::detect::is_bzimage(bytes) {
        basalt_loader::bzimage::min_ram(bytes).unwrap_or(0)
    } else if bytes.starts_with(b"\x7fELF") {
        0
    } else {
        bytes.len() as u64
    }
}

/// The VM name of a module for reports before its configuration is known.
pub fn label(cmdline: &str) -> String {
    basalt_boot::Cmdline::new(config::split_module_cmdline(cmdline, None).1)
        .get("name")
        .map_or_else(|| String::from("?"), String::from)
}

/// Every VM the modules describe, in module order (a configuration's VMs where it is).
pub fn plan<'a>(modules: &[ModuleView<'_, 'a>], limits: &Limits) -> Vec<Planned<'a>> {
    let has_config = modules.iter().any(|m| config::is_config_module(m.cmdline));
    let find = |name: &str| {
        let want = base_name(name);
        modules
            .iter()
            .find(|m| !config::is_config_module(m.cmdline) && image_name(m).as_deref() == Some(want))
    };
    let modules_for = |vm: &str| {
        modules
            .iter()
            .filter(|m| config::module_of(m.cmdline) == Some(vm))
            .map(|m| (m.bytes, config::module_string(m.cmdline)))
            .collect::<Vec<_>>()
    };
    let initrd_for =
        |vm: &str| modules.iter().find(|m| config::initrd_of(m.cmdline) == Some(vm)).map(|m| m.bytes);
    let mut out = Vec::new();
    for m in modules {
        if config::is_config_module(m.cmdline) {
            let file = image_name(m).unwrap_or_default();
            let Ok(text) = core::str::from_utf8(m.bytes) else {
                out.push(Err((file, String::from("not started: the configuration is not UTF-8 text"))));
                continue;
            };
            let images = |name: &str| find(name).map(|i| ram_needed(i.bytes));
            let (vms, errors) = config::parse(text, limits, &images);
            for e in errors {
                let name = e.vm.clone().unwrap_or_else(|| file.clone());
                out.push(Err((name, format!("not started: {file}: {e}"))));
            }
            for spec in vms {
                let image = spec.kernel.as_deref().and_then(find).map(|i| i.bytes);
                let initrd = spec.initrd.as_deref().and_then(find).map(|i| i.bytes);
                match image {
                    Some(image) => {
                        let modules = modules_for(&spec.name);
                        out.push(Ok(VmSource { config: spec.into(), image, initrd, modules }))
                    }
                    // `parse` checked it is there: only a Basalt bug gets here.
                    None => {
                        out.push(Err((spec.name, String::from("not started: its kernel image vanished"))))
                    }
                }
            }
            continue;
        }
        let part_of_a_vm = config::initrd_of(m.cmdline).is_some() || config::module_of(m.cmdline).is_some();
        if part_of_a_vm || (has_config && bare(m)) {
            continue;
        }
        match config::parse_module_words(m.cmdline, limits.default_time_limit_s, None) {
            Ok(spec) => {
                let (initrd, modules) = (initrd_for(&spec.name), modules_for(&spec.name));
                out.push(Ok(VmSource { config: spec.into(), image: m.bytes, initrd, modules }));
            }
            Err(e) => out.push(Err((label(m.cmdline), format!("not started: {e}")))),
        }
    }
    out
}

/// The same as [`plan`], for the messages only (tests).
#[cfg(test)]
fn outcomes(modules: &[ModuleView<'_, '_>]) -> Vec<String> {
    let limits = Limits { cpu_count: 4, max_vcpus: 16, default_time_limit_s: None };
    plan(modules, &limits)
        .into_iter()
        .map(|p| match p {
            Ok(s) => {
                let initrd = s.initrd.map_or(String::new(), |i| format!("+{}", i.len()));
                format!("{} {}{initrd}", s.config.name, s.image.len())
            }
            Err((name, why)) => format!("{name}: {why}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m<'a>(cmdline: &'a str, bytes: &'a [u8]) -> ModuleView<'a, 'a> {
        ModuleView { cmdline, bytes }
    }

    #[test]
    fn module_words_and_initrds() {
        let mods = [
            m("/boot/cpuid name=a mem=4", b"\x7fELF-a"),
            m("/boot/rd.img initrd_of=a", b"12345"),
            m("name=b colour=blue", b"x"),
            m("/boot/lonely", b"y"),
            m("/boot/m1 alpha module_of=a", b"mod"),
        ];
        let limits = Limits { cpu_count: 4, max_vcpus: 16, default_time_limit_s: None };
        let a = plan(&mods, &limits).into_iter().next().unwrap().unwrap();
        assert_eq!(a.modules, [(&b"mod"[..], String::from("alpha"))]);
        assert_eq!(
            outcomes(&mods),
            [
                "a 6+5",
                "b: not started: bad VM configuration: unknown word \"colour\"",
                "?: not started: bad VM configuration: every VM needs name=<name>",
            ]
        );
    }

    #[test]
    fn a_configuration_module_names_its_images() {
        let cfg = "[basalt]\ncmdline = log=debug\n[vm one]\nkernel = cpuid\nmemory = 4M\n\
                   [vm two]\nkernel = /boot/demo\ninitrd = rd.img\ncpus = 2\n\
                   [vm bad]\nkernel = cpuid\nmemroy = 4M\n[vm gone]\nkernel = nothing\n";
        let mods = [
            m("/boot/basalt.cfg", cfg.as_bytes()),
            m("/boot/cpuid", b"\x7fELF-cpuid"),
            m("demo", b"\x7fELF-demo!"),
            m("/boot/rd.img", b"ramdisk"),
            m("/boot/cpuid name=also mem=2", b"\x7fELF-cpuid"),
        ];
        let out = outcomes(&mods);
        assert_eq!(
            out,
            [
                "bad: not started: basalt.cfg: bad VM configuration: line 12: [vm bad] memroy: unknown key (keys: kernel, initrd, cmdline, memory, quota, cpus, pcpus, devices, console, on_poweroff, on_reset, on_crash, time_limit, mode)",
                "gone: not started: basalt.cfg: bad VM configuration: line 14: [vm gone] kernel: there is no image \"nothing\"",
                "one 10",
                "two 10+7",
                "also 10",
            ]
        );
        let limits = Limits { cpu_count: 4, max_vcpus: 16, default_time_limit_s: Some(9) };
        let plan = plan(&mods, &limits);
        let two = plan.iter().flatten().find(|s| s.config.name == "two").unwrap();
        assert_eq!((two.config.vcpus, two.config.mem_bytes, two.config.time_limit_s), (2, 16 << 20, Some(9)));
    }

    #[test]
    fn a_configuration_that_is_not_text_is_one_refusal() {
        assert_eq!(
            outcomes(&[m("vms.cfg", &[0xFF, 0xFE])]),
            ["vms.cfg: not started: the configuration is not UTF-8 text"]
        );
    }
}
