//! Whether this machine's KVM can run Basalt: `-accel kvm -cpu host` gives a guest VMX or SVM
//! only where the CPU has it (a `vmx` or `svm` flag in /proc/cpuinfo) and kvm_intel or
//! kvm_amd is loaded with `nested` on. Checked before `--kvm` builds or starts anything.

use std::path::Path;

/// What the machine shows: the facts [`judge`] decides from.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub dev_kvm: bool,
    /// /proc/cpuinfo.
    pub cpuinfo: String,
    /// The loaded KVM modules (/sys/module/kvm*), e.g. `kvm`, `kvm_amd`, `kvm_pvm`.
    pub modules: Vec<String>,
    /// `/sys/module/kvm_intel/parameters/nested`, if there.
    pub intel_nested: Option<String>,
    /// `/sys/module/kvm_amd/parameters/nested`, if there.
    pub amd_nested: Option<String>,
}

impl Facts {
    pub fn of_this_machine() -> Facts {
        let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string());
        let mut modules: Vec<String> = std::fs::read_dir("/sys/module")
            .map(|dir| {
                dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n == "kvm" || n.starts_with("kvm_"))
                    .collect()
            })
            .unwrap_or_default();
        modules.sort();
        Facts {
            dev_kvm: Path::new("/dev/kvm").exists(),
            cpuinfo: read("/proc/cpuinfo").unwrap_or_default(),
            modules,
            intel_nested: read("/sys/module/kvm_intel/parameters/nested"),
            amd_nested: read("/sys/module/kvm_amd/parameters/nested"),
        }
    }
}

/// Whether a CPU flag is in /proc/cpuinfo's `flags` lines.
fn has_flag(cpuinfo: &str, flag: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_once(':').is_some_and(|(_, flags)| flags.split_whitespace().any(|f| f == flag)))
}

fn is_on(value: &Option<String>) -> bool {
    matches!(value.as_deref(), Some("Y" | "y" | "1"))
}

/// `Ok("VMX" | "SVM")` when KVM can give Basalt that extension, else one line saying why not.
pub fn judge(facts: &Facts) -> Result<&'static str, String> {
    if !facts.dev_kvm {
        return Err("--kvm: this machine has no /dev/kvm, so no KVM to run Basalt on; use the default \
                    QEMU TCG platform, or `cargo xtask test --nested` for Basalt under KVM inside QEMU"
            .into());
    }
    let modules = if facts.modules.is_empty() { "none".to_string() } else { facts.modules.join(", ") };
    let (ext, module, nested) = if has_flag(&facts.cpuinfo, "vmx") {
        ("VMX", "kvm_intel", &facts.intel_nested)
    } else if has_flag(&facts.cpuinfo, "svm") {
        ("SVM", "kvm_amd", &facts.amd_nested)
    } else {
        return Err(format!(
            "--kvm: /dev/kvm exists (KVM modules loaded: {modules}) but this CPU has no VMX or SVM (no vmx or \
             svm flag in /proc/cpuinfo), so KVM cannot offer either to a guest and Basalt would find no \
             virtualization; use `cargo xtask test --nested` (Basalt under KVM inside QEMU TCG) instead"
        ));
    };
    match nested {
        None => Err(format!(
            "--kvm: the CPU has {ext} but {module} is not loaded (KVM modules loaded: {modules}); load it with \
             `modprobe {module} nested=1`"
        )),
        Some(value) if !is_on(nested) => Err(format!(
            "--kvm: {module} is loaded with nested={value}, so guests get no {ext}; reload it with \
             `modprobe -r {module} && modprobe {module} nested=1`"
        )),
        Some(_) => Ok(ext),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(flags: &str) -> Facts {
        Facts {
            dev_kvm: true,
            cpuinfo: format!(
                "processor\t: 0\nflags\t\t: fpu {flags} sse2\n\nprocessor\t: 1\nflags\t\t: fpu {flags}\n"
            ),
            modules: vec!["kvm".into(), "kvm_pvm".into()],
            ..Facts::default()
        }
    }

    #[test]
    fn this_kind_of_machine_is_refused_with_the_reason() {
        let err = judge(&facts("hypervisor")).unwrap_err();
        assert!(err.contains("no VMX or SVM"), "{err}");
        assert!(err.contains("kvm, kvm_pvm"), "{err}");
        assert!(!err.contains('\n'));
        let none = Facts { dev_kvm: false, ..facts("vmx") };
        assert!(judge(&none).unwrap_err().contains("no /dev/kvm"));
        // A flag that merely contains the letters is not the flag.
        assert!(judge(&facts("svm_lock vmxx")).is_err());
    }

    #[test]
    fn nested_must_be_on() {
        let mut f = facts("vmx");
        assert!(judge(&f).unwrap_err().contains("kvm_intel is not loaded"));
        f.intel_nested = Some("N".into());
        assert!(judge(&f).unwrap_err().contains("nested=N"));
        f.intel_nested = Some("Y".into());
        assert_eq!(judge(&f), Ok("VMX"));
        let mut f = facts("svm npt");
        f.amd_nested = Some("1".into());
        assert_eq!(judge(&f), Ok("SVM"));
        f.amd_nested = Some("0".into());
        assert!(judge(&f).unwrap_err().contains("kvm_amd is loaded with nested=0"));
    }
}
