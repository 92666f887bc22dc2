//! Just enough ELF for a multiboot loader: the file header and the `PT_LOAD` program headers
//! of a little-endian ELF32 (i386) or ELF64 (x86-64) executable. Hand-parsed (a page of code)
//! rather than a dependency, every offset and size checked against the file.

use crate::{refuse, u16_at, u32_at, u64_at, u8_at, LoadError};
use alloc::vec::Vec;

const PT_LOAD: u32 = 1;
/// More program headers than any kernel has; bounds the work on a hostile `e_phnum`.
pub const MAX_PHDRS: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfSegment {
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elf {
    pub is64: bool,
    pub entry: u64,
    /// The `PT_LOAD` segments with `memsz > 0`, in file order.
    pub segments: Vec<ElfSegment>,
}

pub fn is_elf(b: &[u8]) -> bool {
    b.starts_with(b"\x7fELF")
}

pub fn parse(b: &[u8]) -> Result<Elf, LoadError> {
    if !is_elf(b) {
        refuse!("not an ELF file (no \\x7fELF magic)");
    }
    let class = u8_at(b, 4, "ELF class")?;
    let data = u8_at(b, 5, "ELF data encoding")?;
    if data != 1 {
        refuse!("ELF data encoding {data} is not little-endian (1)");
    }
    let is64 = match class {
        1 => false,
        2 => true,
        c => refuse!("ELF class {c} is neither ELF32 (1) nor ELF64 (2)"),
    };
    let e_type = u16_at(b, 16, "e_type")?;
    if e_type != 2 {
        refuse!("ELF e_type {e_type} is not an executable (2)");
    }
    let machine = u16_at(b, 18, "e_machine")?;
    let want = if is64 { 0x3E } else { 3 };
    if machine != want {
        refuse!(
            "ELF{} e_machine {machine:#x} is not {}",
            if is64 { 64 } else { 32 },
            if is64 { "x86-64 (0x3e)" } else { "i386 (3)" }
        );
    }
    let (entry, phoff, phentsize, phnum) = if is64 {
        (
            u64_at(b, 24, "e_entry")?,
            u64_at(b, 32, "e_phoff")?,
            u16_at(b, 54, "e_phentsize")?,
            u16_at(b, 56, "e_phnum")?,
        )
    } else {
        (
            u32_at(b, 24, "e_entry")? as u64,
            u32_at(b, 28, "e_phoff")? as u64,
            u16_at(b, 42, "e_phentsize")?,
            u16_at(b, 44, "e_phnum")?,
        )
    };
    let min_ent = if is64 { 56 } else { 32 };
    if (phentsize as usize) < min_ent {
        refuse!("ELF e_phentsize {phentsize} is smaller than a program header ({min_ent})");
    }
    if phnum as usize > MAX_PHDRS {
        refuse!("ELF has {phnum} program headers, at most {MAX_PHDRS}");
    }
    let mut segments = Vec::new();
    for i in 0..phnum as u64 {
        let Some(off) = (i * phentsize as u64).checked_add(phoff).and_then(|o| usize::try_from(o).ok())
        else {
            refuse!("truncated: ELF program header {i} is past the end of the file");
        };
        if u32_at(b, off, "an ELF program header")? != PT_LOAD {
            continue;
        }
        let s = if is64 {
            ElfSegment {
                offset: u64_at(b, off + 8, "p_offset")?,
                vaddr: u64_at(b, off + 16, "p_vaddr")?,
                paddr: u64_at(b, off + 24, "p_paddr")?,
                filesz: u64_at(b, off + 32, "p_filesz")?,
                memsz: u64_at(b, off + 40, "p_memsz")?,
            }
        } else {
            ElfSegment {
                offset: u32_at(b, off + 4, "p_offset")? as u64,
                vaddr: u32_at(b, off + 8, "p_vaddr")? as u64,
                paddr: u32_at(b, off + 12, "p_paddr")? as u64,
                filesz: u32_at(b, off + 16, "p_filesz")? as u64,
                memsz: u32_at(b, off + 20, "p_memsz")? as u64,
            }
        };
        if s.filesz > s.memsz {
            refuse!("ELF segment {i}: p_filesz {:#x} is larger than p_memsz {:#x}", s.filesz, s.memsz);
        }
        if s.offset.checked_add(s.filesz).is_none_or(|end| end > b.len() as u64) {
            refuse!(
                "truncated: ELF segment {i}'s file bytes {:#x} + {:#x} are past the end of the {}-byte file",
                s.offset,
                s.filesz,
                b.len()
            );
        }
        if s.memsz > 0 {
            segments.push(s);
        }
    }
    if segments.is_empty() {
        refuse!("ELF has no loadable (PT_LOAD) segment");
    }
    Ok(Elf { is64, entry, segments })
}
