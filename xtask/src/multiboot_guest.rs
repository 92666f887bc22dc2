//! The multiboot test kernels' files (tests/src/mbkernel.rs): `multiboot1` repacked from the
//! ELF64 rustc writes into the ELF32 a multiboot v1 kernel is delivered as, and the two module
//! files, written from `basalt_guests::mbkernel::module_byte`; and the modules of a test VM.
//!
//! The Rust targets emit no 32-bit bare-metal ELF, so [`elf64_to_elf32`] rewrites the headers:
//! the same `PT_LOAD` segments (each below 4 GiB) at the same file offsets, so the multiboot
//! header stays where it was in the file; the section headers are dropped.

use crate::guests;
use crate::util::xtask_dir;
use anyhow::{bail, ensure, Context, Result};
use basalt_guests::mbkernel::{module_byte, CMDLINE, MEM_MIB, MODULES};
use std::path::PathBuf;

/// Where the files are written.
pub fn dir() -> PathBuf {
    xtask_dir().join("multiboot")
}

/// The ELF32 `multiboot1` kernel.
pub fn elf32_path() -> PathBuf {
    dir().join("multiboot1.elf32")
}

/// Module file `i` of [`MODULES`].
pub fn module_path(i: usize) -> PathBuf {
    dir().join(MODULES[i].file)
}

/// Write the ELF32 kernel (from the built `multiboot1`) and the module files.
pub fn build() -> Result<()> {
    std::fs::create_dir_all(dir()).with_context(|| format!("cannot create {}", dir().display()))?;
    let elf64 = guests::path("multiboot1");
    let bytes = std::fs::read(&elf64).with_context(|| format!("cannot read {}", elf64.display()))?;
    let elf32 = elf64_to_elf32(&bytes).with_context(|| format!("repacking {} as ELF32", elf64.display()))?;
    std::fs::write(elf32_path(), elf32)
        .with_context(|| format!("cannot write {}", elf32_path().display()))?;
    for (i, m) in MODULES.iter().enumerate() {
        let content: Vec<u8> = (0..m.len).map(|k| module_byte(i, k)).collect();
        std::fs::write(module_path(i), content)
            .with_context(|| format!("cannot write {}", module_path(i).display()))?;
    }
    Ok(())
}

/// The boot modules of multiboot test VM `vm` whose kernel is `kernel`: the kernel with
/// `name=`, `mem=` and the command line, then the two modules tagged `module_of=<vm>`.
pub fn modules(vm: &str, kernel: PathBuf) -> Vec<(PathBuf, String)> {
    let mut out = vec![(kernel, format!("name={vm} mem={MEM_MIB} cmdline=\"{CMDLINE}\""))];
    for (i, m) in MODULES.iter().enumerate() {
        let args = format!("{} module_of={vm} {}", m.words_before, m.words_after);
        out.push((module_path(i), args.trim().to_string()));
    }
    out
}

fn get<const N: usize>(b: &[u8], at: usize) -> Result<[u8; N]> {
    b.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .with_context(|| format!("truncated ELF: {N} bytes at {at:#x} are past its end"))
}
fn u16_at(b: &[u8], at: usize) -> Result<u16> {
    Ok(u16::from_le_bytes(get(b, at)?))
}
fn u32_at(b: &[u8], at: usize) -> Result<u32> {
    Ok(u32::from_le_bytes(get(b, at)?))
}
fn u64_at(b: &[u8], at: usize) -> Result<u64> {
    Ok(u64::from_le_bytes(get(b, at)?))
}

const PT_LOAD: u32 = 1;
const EHSIZE32: usize = 52;
const PHSIZE32: usize = 32;

/// A little-endian x86-64 executable as an i386 one with the same loadable segments.
pub fn elf64_to_elf32(b: &[u8]) -> Result<Vec<u8>> {
    ensure!(
        b.starts_with(b"\x7fELF") && b.get(4) == Some(&2) && b.get(5) == Some(&1),
        "not a little-endian ELF64"
    );
    ensure!(u16_at(b, 16)? == 2 && u16_at(b, 18)? == 0x3E, "not an x86-64 executable");
    let entry = u64_at(b, 24)?;
    let (phoff, phentsize, phnum) =
        (u64_at(b, 32)? as usize, u16_at(b, 54)? as usize, u16_at(b, 56)? as usize);
    ensure!(phentsize >= 56, "e_phentsize {phentsize} is below 56");
    let mut loads = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(b, ph)? != PT_LOAD {
            continue;
        }
        let seg = [
            u64_at(b, ph + 8)?,        // offset
            u64_at(b, ph + 16)?,       // vaddr
            u64_at(b, ph + 24)?,       // paddr
            u64_at(b, ph + 32)?,       // filesz
            u64_at(b, ph + 40)?,       // memsz
            u32_at(b, ph + 4)? as u64, // flags
            u64_at(b, ph + 48)?,       // align
        ];
        let [offset, vaddr, paddr, filesz, memsz, _, _] = seg;
        for (what, end) in [("p_vaddr", vaddr.checked_add(memsz)), ("p_paddr", paddr.checked_add(memsz))] {
            if end.is_none_or(|e| e > 1 << 32) {
                bail!(
                    "segment {i}'s {what} {:#x} + {memsz:#x} is not below 4 GiB",
                    if what == "p_vaddr" { vaddr } else { paddr }
                );
            }
        }
        ensure!(
            offset.checked_add(filesz).is_some_and(|e| e <= b.len() as u64),
            "segment {i}'s file bytes are past the end of the file"
        );
        loads.push(seg);
    }
    ensure!(!loads.is_empty(), "no PT_LOAD segment");
    ensure!(entry < 1 << 32, "entry point {entry:#x} is not below 4 GiB");
    let headers = EHSIZE32 + PHSIZE32 * loads.len();
    // The first file byte a segment loads: everything before it is headers, rewritten.
    let first = loads.iter().filter(|s| s[3] > 0).map(|s| s[0] as usize).min().unwrap_or(headers);
    ensure!(
        first >= headers,
        "the ELF32 headers ({headers:#x} bytes) would overwrite a segment's file bytes at {first:#x}"
    );
    let end = loads.iter().map(|s| (s[0] + s[3]) as usize).max().unwrap_or(0).max(headers);
    let mut out = b[..end.min(b.len())].to_vec();
    out.resize(end, 0);
    out[..first.min(end)].fill(0);
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 1; // ELFCLASS32
    out[5] = 1; // little-endian
    out[6] = 1; // EV_CURRENT
    let mut put = |at: usize, v: &[u8]| out[at..at + v.len()].copy_from_slice(v);
    put(16, &2u16.to_le_bytes()); // ET_EXEC
    put(18, &3u16.to_le_bytes()); // EM_386
    put(20, &1u32.to_le_bytes());
    put(24, &(entry as u32).to_le_bytes());
    put(28, &(EHSIZE32 as u32).to_le_bytes());
    put(40, &(EHSIZE32 as u16).to_le_bytes());
    put(42, &(PHSIZE32 as u16).to_le_bytes());
    put(44, &(loads.len() as u16).to_le_bytes());
    for (i, [offset, vaddr, paddr, filesz, memsz, flags, align]) in loads.iter().enumerate() {
        let ph = EHSIZE32 + PHSIZE32 * i;
        put(ph, &PT_LOAD.to_le_bytes());
        for (k, v) in [offset, vaddr, paddr, filesz, memsz, flags, align].into_iter().enumerate() {
            put(ph + 4 + 4 * k, &(*v as u32).to_le_bytes());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_loader::multiboot::{self, build::*, Format};

    fn map() -> Vec<basalt_loader::memmap::MemRange> {
        basalt_loader::bzimage::pc_memory_map(64 << 20)
    }

    #[test]
    fn an_elf64_kernel_becomes_the_same_elf32_kernel() {
        let mut img = elf(
            true,
            0x10_0010,
            &[(0x10_0000, 0x10_0000, &[0x90; 64], 0x1000), (0x20_0000, 0x20_0000, &[1; 8], 0)],
        );
        v1_header(&mut img, 0x1000, multiboot::V1_PAGE_ALIGN, None);
        let before = multiboot::plan(&img, &map()).unwrap();
        assert_eq!(before.format, Format::Elf64);
        let out = elf64_to_elf32(&img).unwrap();
        let after = multiboot::plan(&out, &map()).unwrap();
        assert_eq!(after.format, Format::Elf32);
        assert_eq!(
            (after.segments, after.entry, after.header_offset),
            (before.segments, before.entry, before.header_offset)
        );
        // The multiboot header is where it was, the file no longer than its segments.
        assert_eq!(&out[0x1000..0x1010], &img[0x1000..0x1010]);
        assert_eq!(out.len(), 0x1000 + 64 + 8);
        // Nothing the loader crate would refuse is made: no ELF64 magic class left.
        assert_eq!(out[4], 1);
    }

    #[test]
    fn what_cannot_be_elf32_is_refused() {
        let high = elf(true, 0x1_0000_0000, &[(0x1_0000_0000, 0x1_0000_0000, &[0x90; 16], 0)]);
        let e = elf64_to_elf32(&high).unwrap_err().to_string();
        assert!(e.contains("is not below 4 GiB"), "{e}");
        let e = elf64_to_elf32(&elf(false, 0x10_0000, &[(0x10_0000, 0x10_0000, &[1], 0)])).unwrap_err();
        assert!(e.to_string().contains("not a little-endian ELF64"));
        let mut cut = elf(true, 0x10_0000, &[(0x10_0000, 0x10_0000, &[1; 16], 0)]);
        cut.truncate(0x1008);
        assert!(elf64_to_elf32(&cut).unwrap_err().to_string().contains("past the end"));
    }

    #[test]
    fn module_command_lines() {
        let m = modules("mb", PathBuf::from("/k"));
        assert_eq!(m[0].1, format!("name=mb mem={MEM_MIB} cmdline=\"{CMDLINE}\""));
        assert_eq!(m[1].1, "alpha module_of=mb one");
        assert_eq!(m[2].1, "module_of=mb beta two three");
        assert!(m[1].0.ends_with("target/xtask/multiboot/multiboot-module-a.bin"));
    }
}
