//! `cargo xtask image`: a bootable USB-stick image for UEFI machines.
//!
//! The image is a GPT disk (protective MBR, primary and backup GPT) with one EFI System
//! Partition formatted FAT32, written in pure Rust (the `gpt` and `fatfs` crates: no root,
//! no loop devices, no mkfs). The partition holds:
//!
//! ```text
//! EFI/BOOT/BOOTX64.EFI   Basalt's UEFI loader (boot/uefi), the removable-media default path
//! basalt/basalt.elf      the kernel
//! basalt/basalt.cfg      what to boot (format: hypervisor/loader/src/config.rs, README)
//! basalt/<guest files>   the guest images the config names
//! ```
//!
//! It boots on UEFI only: there is no BIOS boot code in the protective MBR.

use crate::kernel::{self, Profile};
use crate::util::{cargo, workspace_root};
use anyhow::{bail, Context, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Size of the disk image: room for the kernel, the loader and a few guests.
pub const DISK_BYTES: u64 = 64 << 20;
/// Where `cargo xtask image` writes by default.
pub const DEFAULT_OUTPUT: &str = "target/basalt.img";
/// FAT32 needs at least 65525 clusters; 512-byte clusters give a ~62 MiB ESP about 126k.
const CLUSTER_BYTES: u32 = 512;
const SECTOR: u64 = 512;

pub const LOADER_TARGET: &str = "x86_64-unknown-uefi";
pub const LOADER_PACKAGE: &str = "basalt-uefi";

/// One file on the ESP: its path with `/` separators, and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EspFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

impl EspFile {
    pub fn new(path: &str, bytes: Vec<u8>) -> Self {
        EspFile { path: path.into(), bytes }
    }
}

/// Builds the UEFI loader (always release: it is small and runs once) and returns its path.
pub fn build_loader() -> Result<PathBuf> {
    crate::tools::ensure_rust_targets()?;
    let mut cmd = cargo();
    cmd.current_dir(workspace_root()).args([
        "build",
        "--quiet",
        "--release",
        "--package",
        LOADER_PACKAGE,
        "--bin",
        LOADER_PACKAGE,
        "--target",
        LOADER_TARGET,
    ]);
    let status = cmd.status().with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("UEFI loader build failed ({status})");
    }
    let path = workspace_root().join("target").join(LOADER_TARGET).join("release").join("basalt-uefi.efi");
    if !path.is_file() {
        bail!("the build succeeded but {} is missing", path.display());
    }
    Ok(path)
}

/// The config written when none is given: Basalt's command line and one VM per guest, named
/// after its file; with `linux`, the Linux VM of [`linux_section`] too.
pub fn default_config(cmdline: &str, guests: &[String], linux: bool) -> String {
    let mut text = format!(
        "# Basalt boot configuration (see README: \"Configuration\")\n[basalt]\ncmdline = {}\n",
        quoted(cmdline)
    );
    for file in guests {
        let name: String = Path::new(file)
            .file_stem()
            .map(|s| {
                s.to_string_lossy().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
            })
            .unwrap_or_else(|| "guest".into());
        text.push_str(&format!("[vm {name}]\nkernel = {}\n", quoted(file)));
    }
    if linux {
        text.push_str(&linux_section(LINUX_KERNEL_FILE, LINUX_INITRD_FILE));
    }
    text
}

/// A configuration value: as it is, or quoted where it has spaces, quotes, `;` or `#`.
fn quoted(value: &str) -> String {
    if value.is_empty() || value.contains([' ', '"', ';', '#', '\\']) {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        value.to_string()
    }
}

/// The names Debian's kernel and the busybox initramfs get on the stick (`--linux`).
pub const LINUX_KERNEL_FILE: &str = "vmlinuz";
pub const LINUX_INITRD_FILE: &str = "initramfs.cpio";

/// The Linux VM of `cargo xtask run --linux`, as a configuration section.
pub fn linux_section(kernel: &str, initrd: &str) -> String {
    format!(
        "[vm linux]\nkernel = {}\ninitrd = {}\nmemory = 256M\ncmdline = \"console=ttyS0\"\n",
        quoted(kernel),
        quoted(initrd)
    )
}

/// The ESP's files: loader, kernel, config and guests (each `(file name, bytes)`, put in
/// `basalt/`).
pub fn esp_files(loader: &[u8], kernel: &[u8], config: &str, guests: &[(String, Vec<u8>)]) -> Vec<EspFile> {
    let mut files = vec![
        EspFile::new("EFI/BOOT/BOOTX64.EFI", loader.to_vec()),
        EspFile::new("basalt/basalt.elf", kernel.to_vec()),
        EspFile::new("basalt/basalt.cfg", config.as_bytes().to_vec()),
    ];
    for (name, bytes) in guests {
        files.push(EspFile::new(&format!("basalt/{name}"), bytes.clone()));
    }
    files
}

/// Builds kernel and loader and writes an image with `config` (or the default config with
/// `cmdline`) and `guests` to `out`.
pub fn build_image(
    profile: Profile,
    kernel: Option<&Path>,
    config: Option<&str>,
    cmdline: &str,
    guests: &[PathBuf],
    linux: bool,
    out: &Path,
) -> Result<()> {
    let kernel = match kernel {
        Some(k) => k.to_path_buf(),
        None => kernel::build(profile)?,
    };
    let loader = build_loader()?;
    let mut guest_files = Vec::new();
    for path in guests {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("bad guest file name {}", path.display()))?
            .to_string();
        if guest_files.iter().any(|(n, _): &(String, Vec<u8>)| *n == name) {
            bail!("two guests named {name}");
        }
        let bytes = fs::read(path).with_context(|| format!("cannot read guest {}", path.display()))?;
        guest_files.push((name, bytes));
    }
    let config = match config {
        Some(text) => text.to_string(),
        None => {
            default_config(cmdline, &guest_files.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), linux)
        }
    };
    if linux {
        // Debian's kernel and the initramfs, under the names the Linux VM's section uses.
        crate::linux_guest::build()?;
        for (name, path) in [
            (LINUX_KERNEL_FILE, crate::linux_guest::kernel_path()),
            (LINUX_INITRD_FILE, crate::linux_guest::initramfs_path()),
        ] {
            let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            guest_files.push((name.to_string(), bytes));
        }
    }
    let files = esp_files(
        &fs::read(&loader).with_context(|| format!("cannot read {}", loader.display()))?,
        &fs::read(&kernel).with_context(|| format!("cannot read {}", kernel.display()))?,
        &config,
        &guest_files,
    );
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir)?;
    }
    write_image(out, &files, DISK_BYTES)
}

/// A window `[start, start + len)` of a file, for fatfs to format and fill one partition.
struct PartitionIo {
    file: File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for PartitionIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        self.file.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = self.file.read(&mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for PartitionIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "write past the end of the partition"));
        }
        self.file.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = self.file.write(&buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for PartitionIo {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) if p <= self.len => {
                self.pos = p;
                Ok(p)
            }
            _ => Err(io::Error::new(io::ErrorKind::InvalidInput, "seek outside the partition")),
        }
    }
}

/// Writes a GPT disk of `size` bytes with one FAT32 EFI System Partition holding `files`.
pub fn write_image(out: &Path, files: &[EspFile], size: u64) -> Result<()> {
    let _ = fs::remove_file(out);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    file.set_len(size)?;
    let sectors = u32::try_from(size / SECTOR - 1).unwrap_or(u32::MAX);
    gpt::mbr::ProtectiveMBR::with_lb_size(sectors).overwrite_lba0(&mut file).context("protective MBR")?;
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .create_from_device(file, None)
        .context("GPT")?;
    // Everything between the 1 MiB-aligned start and the backup GPT at the end.
    let esp_bytes = size - (2 << 20);
    let id = disk
        .add_partition("EFI System Partition", esp_bytes, gpt::partition_types::EFI, 0, None)
        .context("adding the ESP")?;
    let part = disk.partitions()[&id].clone();
    let file = disk.write().context("writing the GPT")?;
    let lb = gpt::disk::LogicalBlockSize::Lb512;
    let mut esp = PartitionIo { file, start: part.bytes_start(lb)?, len: part.bytes_len(lb)?, pos: 0 };

    let options = fatfs::FormatVolumeOptions::new()
        .fat_type(fatfs::FatType::Fat32)
        .bytes_per_cluster(CLUSTER_BYTES)
        .volume_label(*b"BASALT     ");
    fatfs::format_volume(&mut esp, options).context("formatting the ESP as FAT32")?;
    {
        let fat = fatfs::FileSystem::new(&mut esp, fatfs::FsOptions::new()).context("opening the new FAT")?;
        write_files(&fat.root_dir(), files)?;
        fat.unmount().context("closing the FAT")?;
    }
    esp.file.sync_all()?;
    Ok(())
}

fn write_files<IO: fatfs::ReadWriteSeek>(root: &fatfs::Dir<'_, IO>, files: &[EspFile]) -> Result<()> {
    for f in files {
        let (dir, name) = match f.path.rsplit_once('/') {
            Some((dir, name)) => (Some(dir), name),
            None => (None, f.path.as_str()),
        };
        let mut parent = root.clone();
        if let Some(dir) = dir {
            for part in dir.split('/') {
                parent = parent.create_dir(part).with_context(|| format!("creating {dir} on the ESP"))?;
            }
        }
        let mut out = parent.create_file(name).with_context(|| format!("creating {} on the ESP", f.path))?;
        out.truncate()?;
        out.write_all(&f.bytes).with_context(|| format!("writing {} to the ESP (is it full?)", f.path))?;
        out.flush()?;
    }
    Ok(())
}

/// What an image holds, read back (for the tests).
#[cfg(test)]
#[derive(Debug)]
pub struct ImageContents {
    /// (name, type GUID, first LBA, last LBA) of every partition.
    pub partitions: Vec<(String, String, u64, u64)>,
    /// Every file of the first partition, with `/` separators, sorted.
    pub files: Vec<EspFile>,
    pub fat_type: String,
}

/// Reads the partition table and the first partition's FAT back.
#[cfg(test)]
pub fn read_image(path: &Path) -> Result<ImageContents> {
    let disk = gpt::GptConfig::new()
        .writable(false)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .open(path)
        .with_context(|| format!("reading the GPT of {}", path.display()))?;
    let lb = gpt::disk::LogicalBlockSize::Lb512;
    let mut partitions = Vec::new();
    for p in disk.partitions().values() {
        partitions.push((p.name.clone(), p.part_type_guid.guid.to_string(), p.first_lba, p.last_lba));
    }
    let first = disk.partitions().values().next().context("no partition")?.clone();
    let file = File::open(path)?;
    let mut esp = PartitionIo { file, start: first.bytes_start(lb)?, len: first.bytes_len(lb)?, pos: 0 };
    let fat = fatfs::FileSystem::new(&mut esp, fatfs::FsOptions::new()).context("reading the FAT")?;
    let fat_type = format!("{:?}", fat.fat_type());
    let mut files = Vec::new();
    let mut stack = vec![(String::new(), fat.root_dir())];
    while let Some((prefix, dir)) = stack.pop() {
        for entry in dir.iter() {
            let entry = entry?;
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            if entry.is_dir() {
                stack.push((path, entry.to_dir()));
            } else {
                let mut bytes = Vec::new();
                entry.to_file().read_to_end(&mut bytes)?;
                files.push(EspFile { path, bytes });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(ImageContents { partitions, files, fat_type })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_lists_guests() {
        let text = default_config("log=info exit", &["demo.elf".into(), "my guest.bin".into()], true);
        assert_eq!(
            text,
            "# Basalt boot configuration (see README: \"Configuration\")\n[basalt]\n\
             cmdline = \"log=info exit\"\n[vm demo]\nkernel = demo.elf\n[vm my-guest]\nkernel = \"my guest.bin\"\n\
             [vm linux]\nkernel = vmlinuz\ninitrd = initramfs.cpio\nmemory = 256M\ncmdline = \"console=ttyS0\"\n"
        );
        // The format Basalt and its loader read.
        let limits =
            basalt_loader::config::Limits { cpu_count: 4, max_vcpus: 16, default_time_limit_s: None };
        let (vms, errors) = basalt_loader::config::parse(&text, &limits, &|_: &str| Some(0));
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<_> = vms.iter().map(|v| (v.name.as_str(), v.kernel.as_deref().unwrap())).collect();
        assert_eq!(names, [("demo", "demo.elf"), ("my-guest", "my guest.bin"), ("linux", "vmlinuz")]);
        assert_eq!(basalt_loader::config::host_cmdline(&text), Ok(Some("log=info exit".into())));
    }

    #[test]
    fn image_round_trip() {
        let dir = std::env::temp_dir().join(format!("basalt-image-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let img = dir.join("basalt.img");
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let files = esp_files(
            b"MZ loader",
            b"\x7fELF kernel",
            "[vm demo]\nkernel = demo.elf\n",
            &[("demo.elf".into(), big.clone())],
        );
        write_image(&img, &files, DISK_BYTES).unwrap();
        assert_eq!(fs::metadata(&img).unwrap().len(), DISK_BYTES);

        // Protective MBR: one partition of type 0xEE and the boot signature.
        let raw = fs::read(&img).unwrap();
        assert_eq!(&raw[510..512], &[0x55, 0xAA]);
        assert_eq!(raw[446 + 4], 0xEE);

        let contents = read_image(&img).unwrap();
        assert_eq!(contents.partitions.len(), 1);
        let (name, guid, first, last) = &contents.partitions[0];
        assert_eq!(name, "EFI System Partition");
        assert_eq!(guid.to_uppercase(), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
        assert!(*first >= 34 && *last < DISK_BYTES / SECTOR - 33, "{first}..{last}");
        assert_eq!(contents.fat_type, "Fat32");
        let mut expected = files.clone();
        expected.sort_by(|a, b| a.path.cmp(&b.path));
        let paths: Vec<&str> = contents.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["EFI/BOOT/BOOTX64.EFI", "basalt/basalt.cfg", "basalt/basalt.elf", "basalt/demo.elf"]
        );
        assert_eq!(contents.files, expected);
        assert_eq!(contents.files[3].bytes, big);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn too_big_for_the_esp() {
        let dir = std::env::temp_dir().join(format!("basalt-image-full-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let files = [EspFile::new("basalt/huge.bin", vec![1; 70 << 20])];
        let err = write_image(&dir.join("x.img"), &files, DISK_BYTES).unwrap_err();
        assert!(format!("{err:#}").contains("basalt/huge.bin"), "{err:#}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
