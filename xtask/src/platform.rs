//! The machines Basalt runs on, and one VM configuration to run on them.

use crate::tools::{Tool, ISO_TOOLS};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    /// QEMU TCG, `-cpu EPYC`: AMD SVM with NPT, without NRIPS.
    QemuSvm,
    /// Bochs, `corei7_skylake_x`: Intel VMX with EPT.
    BochsVmx,
    /// Bochs, `ryzen`: AMD SVM with NPT and NRIPS.
    BochsSvm,
    /// QEMU on the host's KVM (`cargo xtask run --kvm`, `cargo xtask test --kvm`; needs a
    /// /dev/kvm that offers VMX or SVM to its guests).
    Kvm,
    /// QEMU `-accel kvm -cpu host` inside Linux KVM (nested SVM) inside QEMU TCG `-cpu EPYC`:
    /// `cargo xtask test --nested` (xtask/src/nested.rs).
    NestedSvm,
    /// QEMU TCG `-cpu EPYC` on q35 with OVMF, booting the `cargo xtask image` disk from a USB
    /// stick through Basalt's UEFI loader. `Vm::kernel` is the disk image.
    Uefi,
}

impl Platform {
    /// The name printed before a test (`svm: cpuid`): what the platform's CPU offers.
    pub fn name(self) -> &'static str {
        match self {
            Platform::QemuSvm => "svm",
            Platform::BochsVmx => "vmx",
            Platform::BochsSvm => "svm-nrips",
            Platform::Kvm => "kvm",
            Platform::NestedSvm => "nested-svm",
            Platform::Uefi => "uefi",
        }
    }

    pub fn is_bochs(self) -> bool {
        self.bochs_cpu_model().is_some()
    }

    /// The `cpu: model=` of a Bochs platform.
    pub fn bochs_cpu_model(self) -> Option<&'static str> {
        match self {
            Platform::BochsVmx => Some("corei7_skylake_x"),
            Platform::BochsSvm => Some("ryzen"),
            Platform::QemuSvm | Platform::Kvm | Platform::NestedSvm | Platform::Uefi => None,
        }
    }

    /// What must be installed to run a kernel on this platform.
    pub fn required_tools(self) -> Vec<Tool> {
        if self.is_bochs() {
            let mut tools = vec![Tool::Bochs, Tool::BochsBios, Tool::VgaBios];
            tools.extend_from_slice(ISO_TOOLS);
            tools
        } else if self == Platform::Uefi {
            vec![Tool::Qemu, Tool::Ovmf]
        } else if self == Platform::NestedSvm {
            vec![Tool::Qemu, Tool::LinuxImage, Tool::Busybox]
        } else {
            vec![Tool::Qemu]
        }
    }

    /// How long an integration test may run before it counts as hung.
    pub fn default_timeout(self) -> Duration {
        if self.is_bochs() {
            Duration::from_secs(180)
        } else {
            Duration::from_secs(60)
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One VM to start: the kernel, its command line and modules, and the machine around it.
#[derive(Clone, Debug)]
pub struct Vm {
    pub platform: Platform,
    /// The kernel ELF; for `Platform::Uefi`, the disk image (kernel, config and guests inside).
    pub kernel: PathBuf,
    pub smp: u32,
    pub mem_mb: u32,
    pub cmdline: String,
    /// Multiboot modules: a file and its command line.
    pub modules: Vec<(PathBuf, String)>,
    /// Where the ISO, Bochs configuration and logs go.
    pub work_dir: PathBuf,
}

impl Vm {
    pub fn serial_log(&self) -> PathBuf {
        self.work_dir.join("serial.log")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_the_virtualization() {
        let names: Vec<String> = [Platform::QemuSvm, Platform::BochsSvm, Platform::BochsVmx]
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(names, ["svm", "svm-nrips", "vmx"]);
    }
}
