//! QEMU command lines.

use crate::emulator::{Launch, SerialOut};
use crate::platform::{Platform, Vm};
use anyhow::{bail, Result};
use std::path::Path;

/// The `-initrd` value that passes multiboot modules: `"file1 args,file2 args"`.
/// QEMU's AMD EPYC model without the features TCG cannot emulate. QEMU drops them anyway (and
/// warns once per CPU), so the guest sees the same CPU; naming them keeps the console clean.
pub const TCG_EPYC: &str =
    "EPYC,-rdseed,-sha-ni,-fxsr-opt,-misalignsse,-3dnowprefetch,-osvw,-topoext,-nrip-save,-xsavec";

pub fn initrd_arg(modules: &[(std::path::PathBuf, String)]) -> Result<String> {
    let mut parts = Vec::new();
    for (path, args) in modules {
        let entry =
            if args.is_empty() { path.display().to_string() } else { format!("{} {}", path.display(), args) };
        if entry.contains(',') {
            bail!("a module path or its arguments contain ',', which QEMU's -initrd cannot carry: {entry}");
        }
        parts.push(entry);
    }
    Ok(parts.join(","))
}

/// The arguments of `qemu-system-x86_64` for `vm`.
pub fn args(vm: &Vm) -> Result<Vec<String>> {
    let mut args: Vec<String> = Vec::new();
    let mut push = |words: &[&str]| args.extend(words.iter().map(|w| w.to_string()));
    match vm.platform {
        Platform::QemuSvm | Platform::Uefi => push(&["-accel", "tcg", "-cpu", TCG_EPYC]),
        Platform::Kvm => {
            if !Path::new("/dev/kvm").exists() {
                bail!("--kvm needs /dev/kvm, which this machine does not have");
            }
            // Without ARCH_CAPABILITIES: a KVM that itself runs in a VM (like our CI
            // machines) refuses QEMU's write of MSR 0x10a and QEMU aborts.
            push(&["-accel", "kvm", "-cpu", "host,-arch-capabilities"]);
        }
        // Inside L1 Linux (xtask/src/nested.rs): KVM's nested SVM, which `-cpu host` offers.
        Platform::NestedSvm => push(&["-accel", "kvm", "-cpu", "host"]),
        Platform::BochsVmx | Platform::BochsSvm => bail!("{} is not a QEMU platform", vm.platform),
    }
    let smp = vm.smp.to_string();
    let mem = vm.mem_mb.to_string();
    let kernel = vm.kernel.display().to_string();
    if vm.platform == Platform::Uefi {
        // The command line and the guests are inside the image (basalt.cfg).
        push(&["-machine", "q35", "-nodefaults", "-smp", &smp, "-m", &mem]);
        args.extend(uefi_args(&vm.kernel, &ovmf_vars(vm))?);
    } else {
        push(&["-smp", &smp, "-m", &mem, "-kernel", &kernel, "-append", &vm.cmdline]);
    }
    let mut push = |words: &[&str]| args.extend(words.iter().map(|w| w.to_string()));
    if !vm.modules.is_empty() && vm.platform != Platform::Uefi {
        let initrd = initrd_arg(&vm.modules)?;
        push(&["-initrd", &initrd]);
    }
    push(&[
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-no-reboot",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=4",
    ]);
    Ok(args)
}

/// OVMF's firmware code (read-only) and the variable store every run starts from.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// This VM's copy of the OVMF variable store.
fn ovmf_vars(vm: &Vm) -> std::path::PathBuf {
    vm.work_dir.join("OVMF_VARS.fd")
}

/// OVMF as pflash (code read-only, a private copy of the variables) and `image` as a USB
/// stick on an xHCI controller: what a PC booting Basalt from a stick looks like.
pub fn uefi_args(image: &Path, vars: &Path) -> Result<Vec<String>> {
    for path in [image, vars] {
        if path.display().to_string().contains(',') {
            bail!("QEMU's -drive cannot take a path with ',': {}", path.display());
        }
    }
    Ok([
        "-drive".to_string(),
        format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
        "-drive".into(),
        format!("if=pflash,format=raw,file={}", vars.display()),
        "-device".into(),
        "qemu-xhci,id=xhci".into(),
        "-drive".into(),
        format!("if=none,id=stick,format=raw,file={}", image.display()),
        "-device".into(),
        "usb-storage,bus=xhci.0,drive=stick".into(),
    ]
    .into())
}

pub fn launch(vm: &Vm) -> Result<Launch> {
    std::fs::create_dir_all(&vm.work_dir)?;
    if vm.platform == Platform::Uefi {
        // Fresh variables every run: no boot entries or settings left from the last one.
        std::fs::copy(OVMF_VARS, ovmf_vars(vm))
            .map_err(|e| anyhow::anyhow!("cannot copy {OVMF_VARS}: {e} (is the ovmf package installed?)"))?;
    }
    Ok(Launch {
        program: "qemu-system-x86_64".into(),
        args: args(vm)?,
        cwd: vm.work_dir.clone(),
        serial: SerialOut::Stdout,
        serial_log: vm.serial_log(),
    })
}

/// What QEMU's exit status says, given the isa-debug-exit device: (value << 1) | 1.
pub fn describe_status(code: i32) -> String {
    match code {
        33 => "kernel reported success (isa-debug-exit 0x10)".into(),
        35 => "kernel reported failure (isa-debug-exit 0x11)".into(),
        0 => {
            "QEMU exited normally (no isa-debug-exit; a triple fault with -no-reboot looks like this)".into()
        }
        c if c & 1 == 1 => format!("isa-debug-exit value {:#x}", c >> 1),
        c => format!("QEMU exited with status {c}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn vm() -> Vm {
        Vm {
            platform: Platform::QemuSvm,
            kernel: PathBuf::from("/k/basalt"),
            smp: 4,
            mem_mb: 512,
            cmdline: "log=info test=boot".into(),
            modules: vec![],
            work_dir: PathBuf::from("/tmp/x"),
        }
    }

    #[test]
    fn command_line() {
        let args = args(&vm()).unwrap().join(" ");
        assert_eq!(
            args,
            format!(
                "-accel tcg -cpu {TCG_EPYC} -smp 4 -m 512 -kernel /k/basalt -append log=info test=boot \
             -display none -serial stdio -monitor none -no-reboot \
             -device isa-debug-exit,iobase=0xf4,iosize=4"
            )
        );
    }

    #[test]
    fn uefi_command_line() {
        let mut vm = vm();
        vm.platform = Platform::Uefi;
        vm.kernel = PathBuf::from("/t/basalt.img");
        let args = args(&vm).unwrap().join(" ");
        assert_eq!(
            args,
            format!("-accel tcg -cpu {TCG_EPYC} -machine q35 -nodefaults -smp 4 -m 512 \
             -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
             -drive if=pflash,format=raw,file=/tmp/x/OVMF_VARS.fd -device qemu-xhci,id=xhci \
             -drive if=none,id=stick,format=raw,file=/t/basalt.img -device usb-storage,bus=xhci.0,drive=stick \
             -display none -serial stdio -monitor none -no-reboot \
             -device isa-debug-exit,iobase=0xf4,iosize=4")
        );
    }

    #[test]
    fn modules_become_initrd() {
        let mut vm = vm();
        vm.modules = vec![
            (PathBuf::from("/m/guest.elf"), "a=1 b".into()),
            (PathBuf::from("/m/disk.img"), String::new()),
        ];
        let args = args(&vm).unwrap();
        let i = args.iter().position(|a| a == "-initrd").unwrap();
        assert_eq!(args[i + 1], "/m/guest.elf a=1 b,/m/disk.img");
        vm.modules[1].1 = "x,y".into();
        assert!(super::args(&vm).is_err());
    }
}
