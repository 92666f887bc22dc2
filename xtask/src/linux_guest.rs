//! The Linux guest of the tests and of `cargo xtask run --linux`: Debian's packaged kernel
//! (linux-image-amd64, unmodified) with an initramfs built here in Rust (xtask/src/cpio.rs):
//! busybox-static and an /init that reports what it sees and powers the VM off through ACPI.

use crate::cpio::Archive;
use crate::util::xtask_dir;
use anyhow::{Context, Result};
use std::path::PathBuf;

/// What /init prints first (a `guest linux| ` line on Basalt's console).
pub const INIT_MARKER: &str = "BASALT-LINUX: init running";

/// The applets /init uses, as links to busybox.
const APPLETS: &[&str] = &["sh", "mount", "echo", "cat", "grep", "cut", "poweroff", "sleep", "date"];

/// /init: read the TSC first (the benchmark's end point), mount the pseudo file systems, report
/// the CPUs, the clock, the TSC and the uptime, power off.
const INIT: &str = "#!/bin/sh
export PATH=/bin
TSC=$(tsc)
mount -t proc proc /proc
mount -t sysfs sys /sys
echo \"BASALT-LINUX: init running, $(grep -c ^processor /proc/cpuinfo) CPU(s), clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)\"
echo \"BASALT-LINUX: tsc $TSC\"
echo \"BASALT-LINUX: date $(date -u +%Y-%m-%d)\"
echo \"BASALT-LINUX: uptime $(cut -d' ' -f1 /proc/uptime) s\"
poweroff -f
";

/// What building and booting it needs installed: Debian's kernel and a static busybox.
pub const TOOLS: &[crate::tools::Tool] = &[crate::tools::Tool::LinuxImage, crate::tools::Tool::Busybox];

/// What /init prints of the date Linux read from the VM's RTC (the host's date): the marker
/// with this year, `BASALT-LINUX: date 2026-`.
pub fn date_marker() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("BASALT-LINUX: date {}-", year_of(secs / 86_400))
}

/// The proleptic Gregorian year of day `days` since 1970-01-01.
fn year_of(days: u64) -> i64 {
    // Howard Hinnant's civil_from_days, the year only.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(month <= 2)
}

/// Where the initramfs is written.
pub fn initramfs_path() -> PathBuf {
    xtask_dir().join("linux-guest").join("initramfs.cpio")
}

/// Debian's kernel image (a placeholder path where none is installed: the run then says so).
pub fn kernel_path() -> PathBuf {
    crate::nested::find_linux()
        .map_or_else(|_| PathBuf::from("/boot/vmlinuz (install linux-image-amd64)"), |l| l.vmlinuz)
}

/// Write the initramfs.
pub fn build() -> Result<()> {
    let mut a = Archive::new();
    for dir in ["proc", "sys", "dev", "bin"] {
        a.dir(dir)?;
    }
    a.char_device("dev/console", 0o600, 5, 1)?;
    let busybox = crate::nested::which("busybox")?;
    let bytes = std::fs::read(&busybox).with_context(|| format!("cannot read {}", busybox.display()))?;
    a.file("bin/busybox", 0o755, &bytes)?;
    for applet in APPLETS {
        a.symlink(&format!("bin/{applet}"), "busybox")?;
    }
    a.file("bin/tsc", 0o755, &tsc_program())?;
    a.file("init", 0o755, INIT.as_bytes())?;
    let path = initramfs_path();
    std::fs::create_dir_all(path.parent().expect("a directory"))?;
    std::fs::write(&path, a.finish()).with_context(|| format!("cannot write {}", path.display()))
}

/// /bin/tsc: a static x86_64 Linux program that prints the TSC in decimal and exits (busybox
/// has no RDTSC). Under QEMU's `-icount shift=0` the TSC counts executed instructions, which is
/// how `cargo xtask bench` times the boot to /init. 70 bytes of code in a one-segment ELF.
pub fn tsc_program() -> Vec<u8> {
    #[rustfmt::skip]
    let code: &[u8] = &[
        0x0f, 0x31,                         // rdtsc
        0x48, 0xc1, 0xe2, 0x20,             // shl rdx, 32
        0x48, 0x09, 0xd0,                   // or rax, rdx
        0x48, 0x8d, 0x74, 0x24, 0xff,       // lea rsi, [rsp - 1]
        0xc6, 0x06, 0x0a,                   // mov byte [rsi], '\n'
        0xb9, 0x0a, 0x00, 0x00, 0x00,       // mov ecx, 10
        // digit:
        0x31, 0xd2,                         // xor edx, edx
        0x48, 0xf7, 0xf1,                   // div rcx
        0x80, 0xc2, 0x30,                   // add dl, '0'
        0x48, 0xff, 0xce,                   // dec rsi
        0x88, 0x16,                         // mov [rsi], dl
        0x48, 0x85, 0xc0,                   // test rax, rax
        0x75, 0xee,                         // jnz digit
        0x48, 0x89, 0xe2,                   // mov rdx, rsp
        0x48, 0x29, 0xf2,                   // sub rdx, rsi      (length, with the newline)
        0xbf, 0x01, 0x00, 0x00, 0x00,       // mov edi, 1        (stdout)
        0xb8, 0x01, 0x00, 0x00, 0x00,       // mov eax, 1        (write)
        0x0f, 0x05,                         // syscall
        0xb8, 0x3c, 0x00, 0x00, 0x00,       // mov eax, 60       (exit)
        0x31, 0xff,                         // xor edi, edi
        0x0f, 0x05,                         // syscall
    ];
    const BASE: u64 = 0x40_0000;
    const HEADERS: u64 = 64 + 56;
    let mut elf = Vec::new();
    // ELF header: 64-bit, little-endian, executable, x86_64, one program header.
    elf.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&(BASE + HEADERS).to_le_bytes()); // e_entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for v in [64u16, 56, 1, 64, 0, 0] {
        elf.extend_from_slice(&v.to_le_bytes()); // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
    }
    // PT_LOAD, R+X, the whole file at BASE.
    let size = HEADERS + code.len() as u64;
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&5u32.to_le_bytes());
    for v in [0, BASE, BASE, size, size, 0x1000u64] {
        elf.extend_from_slice(&v.to_le_bytes()); // offset, vaddr, paddr, filesz, memsz, align
    }
    elf.extend_from_slice(code);
    elf
}

/// The two modules of a Linux VM named `name`: the kernel with its configuration words and
/// command line, and the initramfs for it (see [`build`]).
pub fn modules(name: &str, words: &str) -> Vec<(PathBuf, String)> {
    vec![
        (kernel_path(), format!("name={name} {words} cmdline=\"console=ttyS0\"")),
        (initramfs_path(), format!("initrd_of={name}")),
    ]
}

/// Whether a test boots the Linux guest.
pub fn used_by(modules: &[(PathBuf, String)]) -> bool {
    modules.iter().any(|(p, _)| *p == initramfs_path())
}

#[cfg(test)]
mod tests {
    #[test]
    fn years() {
        assert_eq!(super::year_of(0), 1970);
        assert_eq!(super::year_of(20_454), 2026, "2026-01-01");
        assert_eq!(super::year_of(20_453), 2025, "2025-12-31");
        assert_eq!(super::year_of(11_016), 2000, "2000-02-29");
    }

    /// The program runs here too (an x86_64 Linux machine) and prints a number.
    #[test]
    fn tsc_program_prints_the_tsc() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("basalt-tsc-{}", std::process::id()));
        std::fs::write(&path, super::tsc_program()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = std::process::Command::new(&path).output().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.ends_with('\n'), "{text:?}");
        let tsc: u64 = text.trim().parse().unwrap();
        assert!(tsc > 1000, "{tsc}");
    }
}
