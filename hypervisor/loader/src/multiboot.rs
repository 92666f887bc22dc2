//! Multiboot v1 (specification 0.6.96) and Multiboot2 (2.0) kernels.
//!
//! [`plan`] finds the header (v1: 4-byte aligned in the first 8 KiB, `0x1BADB002`; v2: 8-byte
//! aligned in the first 32 KiB, `0xE85250D6`; the checksum making the sum of the fixed fields
//! 0 mod 2^32), reads what it asks for, and works out the segments to load:
//!
//! - the a.out kludge (v1 flag bit 16, v2 address tag): `load_addr..load_end_addr` from the
//!   file at `header offset - (header_addr - load_addr)`, zeroes up to `bss_end_addr`, entry
//!   `entry_addr` (v1) or the entry address tag (v2);
//! - otherwise ELF32, or ELF64 (Multiboot2 allows it; GRUB takes it for v1 too, so does this):
//!   each `PT_LOAD` segment at its `p_paddr`, `p_memsz - p_filesz` zeroes after it, the entry
//!   `e_entry` translated from the virtual address of the segment containing it to its
//!   physical address, or the v2 entry address tag when there is one.
//!
//! Everything is checked: each segment lies in usable RAM below 4 GiB (the kernel starts in
//! 32-bit protected mode without paging), no two overlap, the entry is inside a loaded
//! segment, requirements Basalt cannot meet (v1 video mode, v2 framebuffer or EFI tags that
//! are not optional, information-request tags for structures Basalt does not build, unknown
//! required tags) are refused naming the bit or tag.
//!
//! [`MultibootPlan::boot_info`] then builds the boot information structure for a given guest
//! address, after checking it and the modules against the segments and the memory map;
//! [`MultibootPlan::place`] finds addresses for both when the caller has none in mind.
//!
//! # Starting the kernel (what the integrator builds)
//!
//! Both versions start the same way (Multiboot 0.6.96 section 3.2, Multiboot2 section 3.3):
//! 32-bit protected mode, paging off: CR0 = PE (|ET), EFER = 0; CS a flat 4 GiB 32-bit
//! read/execute code segment, DS/ES/FS/GS/SS flat 4 GiB read/write data segments (any
//! selectors, the kernel loads its own GDT before it reloads them); EFLAGS = `0x2` (IF and
//! VM clear); EIP = [`MultibootPlan::entry`]; EAX = [`MultibootPlan::magic`]; EBX = the boot
//! information's guest address; ESP undefined (the kernel sets its own), A20 on. Copy each
//! [`Segment`]'s file bytes to its address and zero the `zero_len` bytes after them.

use crate::elf;
use crate::memmap::{lower_upper_kib, normalise, MemRange, Placer, Range};
use crate::{put, refuse, u16_at, u32_at, LoadError};
use alloc::vec;
use alloc::vec::Vec;

pub const V1_HEADER_MAGIC: u32 = 0x1BAD_B002;
pub const V2_HEADER_MAGIC: u32 = 0xE852_50D6;
/// EAX at the entry.
pub const V1_BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;
pub const V2_BOOTLOADER_MAGIC: u32 = 0x36D7_6289;
/// How far into the image each header may be.
pub const V1_SEARCH: usize = 8192;
pub const V2_SEARCH: usize = 32768;

/// v1 flags: page-align modules; give memory information; give video mode information;
/// the a.out kludge fields are valid.
pub const V1_PAGE_ALIGN: u32 = 1 << 0;
pub const V1_MEMORY_INFO: u32 = 1 << 1;
pub const V1_VIDEO_MODE: u32 = 1 << 2;
pub const V1_AOUT_KLUDGE: u32 = 1 << 16;

/// Multiboot2 boot information tag types Basalt builds (information request tags may ask for
/// these without the optional flag): command line, boot loader name, module, basic memory
/// information, memory map, ACPI old / new RSDP (those two when the caller has the RSDP).
pub const V2_PROVIDED_TAGS: [u32; 7] = [1, 2, 3, 4, 6, 14, 15];

const FOUR_GIB: u64 = 1 << 32;
const PAGE: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// How the image said where its bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Elf32,
    Elf64,
    /// The header's load addresses (v1 flag bit 16, v2 address tag).
    AoutKludge,
}

/// One piece to copy: `file` bytes of the image at `addr`, then `zero_len` zero bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub addr: u64,
    pub file: core::ops::Range<usize>,
    pub zero_len: u64,
}

impl Segment {
    /// The guest-physical bytes it covers.
    pub fn range(&self) -> Range {
        Range::new(self.addr, self.addr.saturating_add(self.file.len() as u64).saturating_add(self.zero_len))
    }
}

/// What the kernel gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultibootPlan {
    pub version: Version,
    pub format: Format,
    /// Where in the image the header was.
    pub header_offset: usize,
    /// In ascending address order, none overlapping, all in RAM below 4 GiB.
    pub segments: Vec<Segment>,
    /// EIP.
    pub entry: u32,
    /// EAX.
    pub magic: u32,
    /// Modules must start on a page boundary (v1 flag bit 0, v2 module alignment tag).
    pub page_align_modules: bool,
    /// v2: the boot information tags the kernel asked for (optional or not).
    pub requested_tags: Vec<u32>,
    /// v2: an optional framebuffer tag's width, height and depth (Basalt gives none).
    pub framebuffer_hint: Option<(u32, u32, u32)>,
}

/// A module the kernel gets: `len` bytes at `start` with its command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Module<'a> {
    pub start: u64,
    pub len: u64,
    pub cmdline: &'a str,
}

/// What goes into the boot information besides the modules' places.
#[derive(Debug, Clone, Copy)]
pub struct BootInfoRequest<'a> {
    pub memory_map: &'a [MemRange],
    pub cmdline: &'a str,
    pub modules: &'a [Module<'a>],
    pub boot_loader_name: &'a str,
    /// The RSDP's bytes (20 for ACPI 1.0, 36 for 2.0+), for the v2 ACPI tags; v1 has no field.
    pub acpi_rsdp: Option<&'a [u8]>,
}

/// Where [`MultibootPlan::place`] puts the modules and the boot information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub modules: Vec<u64>,
    pub info_addr: u64,
}

/// Find a header, preferring Multiboot2 when the image has both, and plan the load.
pub fn plan(image: &[u8], memory_map: &[MemRange]) -> Result<MultibootPlan, LoadError> {
    match find_v2(image) {
        Ok(Some(off)) => plan_v2(image, off, memory_map),
        Err(e) => Err(e),
        Ok(None) => match find_v1(image)? {
            Some(off) => plan_v1(image, off, memory_map),
            None => refuse!(
                "no multiboot header: no 0x1badb002 in the first 8 KiB nor 0xe85250d6 in the first 32 KiB"
            ),
        },
    }
}

/// Plan the load as the given version only (GRUB's `multiboot` vs `multiboot2`).
pub fn plan_version(
    image: &[u8],
    version: Version,
    memory_map: &[MemRange],
) -> Result<MultibootPlan, LoadError> {
    match version {
        Version::V1 => match find_v1(image)? {
            Some(off) => plan_v1(image, off, memory_map),
            None => refuse!("no multiboot v1 header (0x1badb002) in the first 8 KiB"),
        },
        Version::V2 => match find_v2(image)? {
            Some(off) => plan_v2(image, off, memory_map),
            None => refuse!("no multiboot2 header (0xe85250d6) in the first 32 KiB"),
        },
    }
}

/// Which multiboot header the image carries (Multiboot2 first, as [`plan`] prefers it), `None`
/// when it has none; a header whose checksum is wrong (and no good one after it) is an error.
pub fn header_version(image: &[u8]) -> Result<Option<Version>, LoadError> {
    if find_v2(image)?.is_some() {
        return Ok(Some(Version::V2));
    }
    Ok(find_v1(image)?.map(|_| Version::V1))
}

/// The first v1 header with a good checksum; a magic with a bad one is an error only if no
/// good header follows.
fn find_v1(image: &[u8]) -> Result<Option<usize>, LoadError> {
    let mut bad = None;
    let end = image.len().min(V1_SEARCH);
    for off in (0..end.saturating_sub(11)).step_by(4) {
        if u32_at(image, off, "")? != V1_HEADER_MAGIC {
            continue;
        }
        let flags = u32_at(image, off + 4, "flags")?;
        let sum = u32_at(image, off + 8, "checksum")?;
        if V1_HEADER_MAGIC.wrapping_add(flags).wrapping_add(sum) == 0 {
            return Ok(Some(off));
        }
        bad.get_or_insert((off, sum));
    }
    match bad {
        Some((off, sum)) => refuse!("multiboot header at {off:#x}: checksum {sum:#010x} is wrong (magic + flags + checksum must be 0)"),
        None => Ok(None),
    }
}

fn find_v2(image: &[u8]) -> Result<Option<usize>, LoadError> {
    let mut bad = None;
    let end = image.len().min(V2_SEARCH);
    for off in (0..end.saturating_sub(15)).step_by(8) {
        if u32_at(image, off, "")? != V2_HEADER_MAGIC {
            continue;
        }
        let arch = u32_at(image, off + 4, "architecture")?;
        let len = u32_at(image, off + 8, "header_length")?;
        let sum = u32_at(image, off + 12, "checksum")?;
        if V2_HEADER_MAGIC.wrapping_add(arch).wrapping_add(len).wrapping_add(sum) == 0 {
            return Ok(Some(off));
        }
        bad.get_or_insert((off, sum));
    }
    match bad {
        Some((off, sum)) => refuse!("multiboot2 header at {off:#x}: checksum {sum:#010x} is wrong (magic + architecture + header_length + checksum must be 0)"),
        None => Ok(None),
    }
}

/// The a.out kludge's addresses, from either version's header.
struct Kludge {
    header_addr: u32,
    load_addr: u32,
    load_end_addr: u32,
    bss_end_addr: u32,
}

fn kludge_segment(image: &[u8], header_offset: usize, k: &Kludge) -> Result<Segment, LoadError> {
    let header_addr = k.header_addr as u64;
    let load_addr = if k.load_addr == u32::MAX {
        // v2: -1 means "from the start of the file".
        match header_addr.checked_sub(header_offset as u64) {
            Some(a) => a,
            None => refuse!("address tag: header_addr {header_addr:#x} is below the header's file offset {header_offset:#x}"),
        }
    } else {
        k.load_addr as u64
    };
    if load_addr > header_addr {
        refuse!("a.out kludge: load_addr {load_addr:#x} is above header_addr {header_addr:#x}");
    }
    let Some(file_start) = (header_offset as u64).checked_sub(header_addr - load_addr) else {
        refuse!(
            "a.out kludge: header_addr - load_addr = {:#x} is more than the header's file offset {header_offset:#x}",
            header_addr - load_addr
        );
    };
    let file_end = if k.load_end_addr == 0 {
        image.len() as u64
    } else {
        let end = k.load_end_addr as u64;
        if end <= load_addr {
            refuse!("a.out kludge: load_end_addr {end:#x} is not above load_addr {load_addr:#x}");
        }
        file_start + (end - load_addr)
    };
    if file_end > image.len() as u64 || file_end <= file_start {
        refuse!(
            "truncated: the a.out kludge loads file bytes {file_start:#x}..{file_end:#x}, the image is {} bytes",
            image.len()
        );
    }
    let load_end = load_addr + (file_end - file_start);
    let zero_len = match k.bss_end_addr as u64 {
        0 => 0,
        bss if bss < load_end => {
            refuse!("a.out kludge: bss_end_addr {bss:#x} is below the end of the loaded bytes {load_end:#x}")
        }
        bss => bss - load_end,
    };
    Ok(Segment { addr: load_addr, file: file_start as usize..file_end as usize, zero_len })
}

fn elf_segments(image: &[u8]) -> Result<(Format, Vec<Segment>, u64), LoadError> {
    let e = elf::parse(image)?;
    let mut segs = Vec::with_capacity(e.segments.len());
    let mut entry = None;
    for s in &e.segments {
        if s.vaddr <= e.entry && e.entry - s.vaddr < s.memsz {
            entry.get_or_insert(s.paddr.wrapping_add(e.entry - s.vaddr));
        }
        segs.push(Segment {
            addr: s.paddr,
            file: s.offset as usize..(s.offset + s.filesz) as usize,
            zero_len: s.memsz - s.filesz,
        });
    }
    let Some(entry) = entry else {
        refuse!("ELF entry point {:#x} is not inside any loadable segment", e.entry);
    };
    Ok((if e.is64 { Format::Elf64 } else { Format::Elf32 }, segs, entry))
}

/// Check the segments (RAM, below 4 GiB, apart) and the entry, and sort them.
fn finish(mut plan: MultibootPlan, entry: u64, memory_map: &[MemRange]) -> Result<MultibootPlan, LoadError> {
    let map = normalise(memory_map)?;
    let mut placer = Placer::new(&map);
    for s in &plan.segments {
        let Some(r) = Range::sized(s.addr, s.file.len() as u64)
            .and_then(|r| Range::sized(r.start, r.len().checked_add(s.zero_len)?))
        else {
            refuse!(
                "segment at {:#x} of {:#x} + {:#x} bytes wraps past 2^64",
                s.addr,
                s.file.len(),
                s.zero_len
            );
        };
        if r.end > FOUR_GIB {
            refuse!("segment {r} is not below 4 GiB (the kernel starts without paging)");
        }
        placer.claim(r, "segment")?;
    }
    plan.segments.sort_by_key(|s| s.addr);
    if !plan.segments.iter().any(|s| s.range().contains(entry)) {
        refuse!("entry point {entry:#x} is not inside a loaded segment");
    }
    plan.entry = entry as u32;
    Ok(plan)
}

fn plan_v1(image: &[u8], off: usize, memory_map: &[MemRange]) -> Result<MultibootPlan, LoadError> {
    let flags = u32_at(image, off + 4, "flags")?;
    if flags & V1_VIDEO_MODE != 0 {
        refuse!(
            "multiboot header requires video mode information (flags bit 2), which Basalt does not provide"
        );
    }
    let unknown = flags & 0xFFFF & !(V1_PAGE_ALIGN | V1_MEMORY_INFO);
    if unknown != 0 {
        refuse!("multiboot header requires features Basalt does not know (flags bits {unknown:#x})");
    }
    let (format, segments, entry) = if flags & V1_AOUT_KLUDGE != 0 {
        if off + 32 > V1_SEARCH {
            refuse!(
                "multiboot header at {off:#x} with the a.out kludge fields does not end in the first 8 KiB"
            );
        }
        let k = Kludge {
            header_addr: u32_at(image, off + 12, "header_addr")?,
            load_addr: u32_at(image, off + 16, "load_addr")?,
            load_end_addr: u32_at(image, off + 20, "load_end_addr")?,
            bss_end_addr: u32_at(image, off + 24, "bss_end_addr")?,
        };
        let entry = u32_at(image, off + 28, "entry_addr")? as u64;
        if k.load_addr == u32::MAX {
            refuse!("a.out kludge: load_addr 0xffffffff is not a v1 value");
        }
        (Format::AoutKludge, vec![kludge_segment(image, off, &k)?], entry)
    } else if elf::is_elf(image) {
        elf_segments(image)?
    } else {
        refuse!("multiboot image is not ELF and its header has no a.out kludge (flags bit 16)");
    };
    finish(
        MultibootPlan {
            version: Version::V1,
            format,
            header_offset: off,
            segments,
            entry: 0,
            magic: V1_BOOTLOADER_MAGIC,
            page_align_modules: flags & V1_PAGE_ALIGN != 0,
            requested_tags: Vec::new(),
            framebuffer_hint: None,
        },
        entry,
        memory_map,
    )
}

fn plan_v2(image: &[u8], off: usize, memory_map: &[MemRange]) -> Result<MultibootPlan, LoadError> {
    let arch = u32_at(image, off + 4, "architecture")?;
    if arch != 0 {
        refuse!("multiboot2 header architecture {arch} is not i386 protected mode (0)");
    }
    let len = u32_at(image, off + 8, "header_length")? as usize;
    if len < 24 || off + len > V2_SEARCH.min(image.len()) {
        refuse!("multiboot2 header at {off:#x}: header_length {len:#x} is too short for the end tag or runs past the first 32 KiB / the image");
    }
    let end = off + len;
    let mut at = off + 16;
    let mut kludge = None;
    let mut entry_tag = None;
    let mut page_align_modules = false;
    let mut requested_tags = Vec::new();
    let mut framebuffer_hint = None;
    let mut saw_end = false;
    while at + 8 <= end {
        let ty = u16_at(image, at, "tag type")?;
        let optional = u16_at(image, at + 2, "tag flags")? & 1 != 0;
        let size = u32_at(image, at + 4, "tag size")? as usize;
        if size < 8 || at + size > end {
            refuse!(
                "multiboot2 header tag {ty} at {at:#x}: size {size} is below 8 or runs past header_length"
            );
        }
        let need = |n: usize| -> Result<(), LoadError> {
            if size < n {
                refuse!("multiboot2 header tag {ty} at {at:#x}: size {size}, needs {n}");
            }
            Ok(())
        };
        match ty {
            0 => {
                saw_end = true;
                break;
            }
            1 => {
                for i in 0..(size - 8) / 4 {
                    let t = u32_at(image, at + 8 + 4 * i, "requested tag")?;
                    if !optional && !V2_PROVIDED_TAGS.contains(&t) {
                        refuse!("multiboot2 information request asks for boot information tag {t}, which Basalt does not provide");
                    }
                    requested_tags.push(t);
                }
            }
            2 => {
                need(24)?;
                kludge = Some(Kludge {
                    header_addr: u32_at(image, at + 8, "header_addr")?,
                    load_addr: u32_at(image, at + 12, "load_addr")?,
                    load_end_addr: u32_at(image, at + 16, "load_end_addr")?,
                    bss_end_addr: u32_at(image, at + 20, "bss_end_addr")?,
                });
            }
            3 => {
                need(12)?;
                entry_tag = Some(u32_at(image, at + 8, "entry_addr")? as u64);
            }
            4 | 10 => {} // console flags (Basalt's console is a serial port), relocatable: load as linked
            5 => {
                need(20)?;
                if !optional {
                    refuse!("multiboot2 header requires a framebuffer (tag 5 not optional), which Basalt does not provide");
                }
                framebuffer_hint = Some((
                    u32_at(image, at + 8, "width")?,
                    u32_at(image, at + 12, "height")?,
                    u32_at(image, at + 16, "depth")?,
                ));
            }
            6 => page_align_modules = true,
            7..=9 if optional => {}
            7..=9 => {
                refuse!("multiboot2 header requires EFI (tag {ty} not optional); Basalt's guests have no EFI")
            }
            _ if optional => {}
            _ => refuse!("multiboot2 header has tag type {ty}, unknown and not optional"),
        }
        at = match (at + size).checked_next_multiple_of(8) {
            Some(n) => n,
            None => refuse!("multiboot2 header tag {ty} at {at:#x}: size overflows"),
        };
    }
    if !saw_end {
        refuse!("multiboot2 header at {off:#x} has no end tag within its header_length {len:#x}");
    }
    let (format, segments, elf_entry) = match &kludge {
        Some(k) => (Format::AoutKludge, vec![kludge_segment(image, off, k)?], None),
        None if elf::is_elf(image) => {
            let (f, s, e) = elf_segments(image)?;
            (f, s, Some(e))
        }
        None => refuse!("multiboot2 image is not ELF and its header has no address tag (2)"),
    };
    let Some(entry) = entry_tag.or(elf_entry) else {
        refuse!("multiboot2 header has an address tag but no entry address tag (3)");
    };
    finish(
        MultibootPlan {
            version: Version::V2,
            format,
            header_offset: off,
            segments,
            entry: 0,
            magic: V2_BOOTLOADER_MAGIC,
            page_align_modules,
            requested_tags,
            framebuffer_hint,
        },
        entry,
        memory_map,
    )
}

impl MultibootPlan {
    fn placer(&self, map: &[MemRange]) -> Result<Placer, LoadError> {
        let mut p = Placer::new(map);
        for s in &self.segments {
            p.claim(s.range(), "segment")?;
        }
        Ok(p)
    }

    /// Boot information's alignment: 8 (v2, the tags are 8-aligned) or 4 (v1).
    pub fn info_align(&self) -> u64 {
        match self.version {
            Version::V1 => 4,
            Version::V2 => 8,
        }
    }

    /// Bytes the boot information for `req` takes.
    pub fn info_len(&self, req: &BootInfoRequest<'_>) -> Result<u64, LoadError> {
        Ok(self.build(0, req)?.len() as u64)
    }

    /// Addresses for modules of `module_lens` bytes (page aligned, lowest from 1 MiB) and for
    /// `info_len` bytes of boot information (lowest from 4 KiB, page aligned), all below
    /// 4 GiB and apart from the segments.
    pub fn place(
        &self,
        memory_map: &[MemRange],
        module_lens: &[u64],
        info_len: u64,
    ) -> Result<Layout, LoadError> {
        let map = normalise(memory_map)?;
        let mut p = self.placer(&map)?;
        let mut modules = Vec::with_capacity(module_lens.len());
        for &len in module_lens {
            modules.push(p.lowest(len.max(1), PAGE, 1 << 20, FOUR_GIB, "module")?.start);
        }
        let info_addr = p.lowest(info_len.max(1), PAGE, PAGE, FOUR_GIB, "boot information")?.start;
        Ok(Layout { modules, info_addr })
    }

    /// The boot information to copy to `addr` (EBX), after checking that it and every module
    /// are in usable RAM below 4 GiB, apart from each other and the segments, and aligned.
    pub fn boot_info(&self, addr: u64, req: &BootInfoRequest<'_>) -> Result<Vec<u8>, LoadError> {
        let map = normalise(req.memory_map)?;
        let mut p = self.placer(&map)?;
        for m in req.modules {
            let Some(r) = Range::sized(m.start, m.len.max(1)) else {
                refuse!("module at {:#x} of {:#x} bytes wraps", m.start, m.len);
            };
            if r.end > FOUR_GIB {
                refuse!("module at {r} is not below 4 GiB (its address is a 32-bit field)");
            }
            if self.page_align_modules && !m.start.is_multiple_of(PAGE) {
                refuse!("module at {:#x} is not page aligned, as the kernel's header requires", m.start);
            }
            p.claim(r, "module")?;
        }
        let bytes = self.build(addr, req)?;
        if !addr.is_multiple_of(self.info_align()) {
            refuse!("boot information at {addr:#x} is not {}-byte aligned", self.info_align());
        }
        let Some(r) = Range::sized(addr, bytes.len() as u64).filter(|r| r.end <= FOUR_GIB) else {
            refuse!("boot information at {addr:#x} of {:#x} bytes is not below 4 GiB", bytes.len());
        };
        p.claim(r, "boot information")?;
        Ok(bytes)
    }

    fn build(&self, addr: u64, req: &BootInfoRequest<'_>) -> Result<Vec<u8>, LoadError> {
        let map = normalise(req.memory_map)?;
        match self.version {
            Version::V1 => build_v1(addr, &map, req),
            Version::V2 => build_v2(&map, req, &self.requested_tags),
        }
    }
}

fn cstr(s: &str, what: &str) -> Result<Vec<u8>, LoadError> {
    if s.as_bytes().contains(&0) {
        refuse!("the {what} contains a NUL byte");
    }
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    Ok(v)
}

/// Size of `struct multiboot_info` up to and including the framebuffer fields.
pub const V1_INFO_SIZE: usize = 120;

fn build_v1(addr: u64, map: &[MemRange], req: &BootInfoRequest<'_>) -> Result<Vec<u8>, LoadError> {
    let mut b = vec![0u8; V1_INFO_SIZE];
    let here = |b: &Vec<u8>| -> Result<u32, LoadError> {
        match u32::try_from(addr + b.len() as u64) {
            Ok(a) => Ok(a),
            Err(_) => refuse!("boot information at {addr:#x} runs past 4 GiB"),
        }
    };
    let (lower, upper) = lower_upper_kib(map);
    let mut flags = 1 << 0 | 1 << 2 | 1 << 6 | 1 << 9;
    put(&mut b, 4, &lower.to_le_bytes());
    put(&mut b, 8, &upper.to_le_bytes());
    let mmap_addr = here(&b)?;
    for e in map {
        b.extend_from_slice(&20u32.to_le_bytes());
        b.extend_from_slice(&e.start.to_le_bytes());
        b.extend_from_slice(&e.len.to_le_bytes());
        b.extend_from_slice(&e.kind.e820_type().to_le_bytes());
    }
    put(&mut b, 44, &(map.len() as u32 * 24).to_le_bytes());
    put(&mut b, 48, &mmap_addr.to_le_bytes());
    let mods_addr = here(&b)?;
    b.resize(b.len() + 16 * req.modules.len(), 0);
    let cmdline_addr = here(&b)?;
    b.extend_from_slice(&cstr(req.cmdline, "kernel command line")?);
    put(&mut b, 16, &cmdline_addr.to_le_bytes());
    let name_addr = here(&b)?;
    b.extend_from_slice(&cstr(req.boot_loader_name, "boot loader name")?);
    put(&mut b, 64, &name_addr.to_le_bytes());
    for (i, m) in req.modules.iter().enumerate() {
        let s = here(&b)?;
        b.extend_from_slice(&cstr(m.cmdline, "module command line")?);
        let rec = (mods_addr - addr as u32) as usize + 16 * i;
        put(&mut b, rec, &(m.start as u32).to_le_bytes());
        put(&mut b, rec + 4, &((m.start + m.len) as u32).to_le_bytes());
        put(&mut b, rec + 8, &s.to_le_bytes());
    }
    if !req.modules.is_empty() {
        flags |= 1 << 3;
        put(&mut b, 20, &(req.modules.len() as u32).to_le_bytes());
        put(&mut b, 24, &mods_addr.to_le_bytes());
    }
    put(&mut b, 0, &(flags as u32).to_le_bytes());
    b.resize(b.len().next_multiple_of(4), 0);
    here(&b)?;
    Ok(b)
}

fn tag(b: &mut Vec<u8>, ty: u32, body: &[u8]) {
    b.extend_from_slice(&ty.to_le_bytes());
    b.extend_from_slice(&(8 + body.len() as u32).to_le_bytes());
    b.extend_from_slice(body);
    b.resize(b.len().next_multiple_of(8), 0);
}

fn build_v2(map: &[MemRange], req: &BootInfoRequest<'_>, requested: &[u32]) -> Result<Vec<u8>, LoadError> {
    let mut b = vec![0u8; 8];
    tag(&mut b, 1, &cstr(req.cmdline, "kernel command line")?);
    tag(&mut b, 2, &cstr(req.boot_loader_name, "boot loader name")?);
    for m in req.modules {
        let mut body = Vec::new();
        body.extend_from_slice(&(m.start as u32).to_le_bytes());
        body.extend_from_slice(&((m.start + m.len) as u32).to_le_bytes());
        body.extend_from_slice(&cstr(m.cmdline, "module command line")?);
        tag(&mut b, 3, &body);
    }
    let (lower, upper) = lower_upper_kib(map);
    let mut body = Vec::new();
    body.extend_from_slice(&lower.to_le_bytes());
    body.extend_from_slice(&upper.to_le_bytes());
    tag(&mut b, 4, &body);
    let mut body = Vec::new();
    body.extend_from_slice(&24u32.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    for e in map {
        body.extend_from_slice(&e.start.to_le_bytes());
        body.extend_from_slice(&e.len.to_le_bytes());
        body.extend_from_slice(&e.kind.e820_type().to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
    }
    tag(&mut b, 6, &body);
    match req.acpi_rsdp {
        Some(r) if r.len() == 20 => tag(&mut b, 14, r),
        Some(r) if r.len() >= 36 => tag(&mut b, 15, r),
        Some(r) => refuse!("the ACPI RSDP is {} bytes, neither 20 (ACPI 1.0) nor 36+ (2.0)", r.len()),
        None => {
            if requested.iter().any(|t| *t == 14 || *t == 15) {
                refuse!("the kernel asks for the ACPI RSDP tag and none was given");
            }
        }
    }
    tag(&mut b, 0, &[]);
    let total = b.len() as u32;
    put(&mut b, 0, &total.to_le_bytes());
    Ok(b)
}

/// Builders of synthetic images for the tests, the corpus and the fuzz runs.
#[doc(hidden)]
pub mod build {
    use crate::put;
    use alloc::vec;
    use alloc::vec::Vec;

    /// `(paddr, vaddr, file bytes, extra zeroes)` per segment.
    pub type Seg<'a> = (u64, u64, &'a [u8], u64);

    /// A little-endian ELF32 (i386) or ELF64 (x86-64) executable.
    pub fn elf(is64: bool, entry: u64, segs: &[Seg<'_>]) -> Vec<u8> {
        let (ehsize, phsize) = if is64 { (64, 56) } else { (52, 32) };
        let data_at = 0x1000; // leaves room for a multiboot header after the program headers
        let mut b = vec![0u8; data_at];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = if is64 { 2 } else { 1 };
        b[5] = 1;
        b[6] = 1;
        put(&mut b, 16, &2u16.to_le_bytes());
        put(&mut b, 18, &(if is64 { 0x3Eu16 } else { 3 }).to_le_bytes());
        if is64 {
            put(&mut b, 24, &entry.to_le_bytes());
            put(&mut b, 32, &(ehsize as u64).to_le_bytes());
            put(&mut b, 54, &(phsize as u16).to_le_bytes());
            put(&mut b, 56, &(segs.len() as u16).to_le_bytes());
        } else {
            put(&mut b, 24, &(entry as u32).to_le_bytes());
            put(&mut b, 28, &(ehsize as u32).to_le_bytes());
            put(&mut b, 42, &(phsize as u16).to_le_bytes());
            put(&mut b, 44, &(segs.len() as u16).to_le_bytes());
        }
        for (i, (paddr, vaddr, bytes, zero)) in segs.iter().enumerate() {
            let ph = ehsize + phsize * i;
            let off = b.len() as u64;
            b.extend_from_slice(bytes);
            let (filesz, memsz) = (bytes.len() as u64, bytes.len() as u64 + zero);
            put(&mut b, ph, &1u32.to_le_bytes());
            if is64 {
                for (o, v) in [(8, off), (16, *vaddr), (24, *paddr), (32, filesz), (40, memsz)] {
                    put(&mut b, ph + o, &v.to_le_bytes());
                }
            } else {
                for (o, v) in [(4, off), (8, *vaddr), (12, *paddr), (16, filesz), (20, memsz)] {
                    put(&mut b, ph + o, &(v as u32).to_le_bytes());
                }
            }
        }
        b
    }

    /// Write a v1 header at `off` with `flags` (and kludge fields when `kludge` is given:
    /// header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr).
    pub fn v1_header(b: &mut Vec<u8>, off: usize, flags: u32, kludge: Option<[u32; 5]>) {
        if b.len() < off + 32 {
            b.resize(off + 32, 0);
        }
        put(b, off, &super::V1_HEADER_MAGIC.to_le_bytes());
        put(b, off + 4, &flags.to_le_bytes());
        put(b, off + 8, &(0u32.wrapping_sub(super::V1_HEADER_MAGIC).wrapping_sub(flags)).to_le_bytes());
        for (i, v) in kludge.unwrap_or_default().iter().enumerate() {
            put(b, off + 12 + 4 * i, &v.to_le_bytes());
        }
    }

    /// A v2 tag: type, flags, body (padded to 8).
    pub fn v2_tag(ty: u16, flags: u16, body: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&ty.to_le_bytes());
        t.extend_from_slice(&flags.to_le_bytes());
        t.extend_from_slice(&(8 + body.len() as u32).to_le_bytes());
        t.extend_from_slice(body);
        t.resize(t.len().next_multiple_of(8), 0);
        t
    }

    pub fn u32s(v: &[u32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// Write a v2 header at `off` with `tags` (the end tag is added).
    pub fn v2_header(b: &mut Vec<u8>, off: usize, tags: &[Vec<u8>]) {
        let mut h = Vec::new();
        for t in tags {
            h.extend_from_slice(t);
        }
        h.extend_from_slice(&v2_tag(0, 0, &[]));
        let len = 16 + h.len() as u32;
        if b.len() < off + len as usize {
            b.resize(off + len as usize, 0);
        }
        put(b, off, &super::V2_HEADER_MAGIC.to_le_bytes());
        put(b, off + 4, &0u32.to_le_bytes());
        put(b, off + 8, &len.to_le_bytes());
        put(b, off + 12, &0u32.wrapping_sub(super::V2_HEADER_MAGIC).wrapping_sub(len).to_le_bytes());
        b[off + 16..off + len as usize].copy_from_slice(&h);
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;
    use crate::memmap::MemKind;

    fn map() -> Vec<MemRange> {
        crate::bzimage::pc_memory_map(64 << 20)
    }

    fn elf32_v1() -> Vec<u8> {
        let mut img = elf(
            false,
            0xC010_0010,
            &[(0x10_0000, 0xC010_0000, &[0x90; 64], 0x1000), (0x20_0000, 0xC020_0000, &[1; 8], 0)],
        );
        v1_header(&mut img, 0x200, V1_PAGE_ALIGN | V1_MEMORY_INFO, None);
        img
    }

    #[test]
    fn v1_elf32_plan_and_boot_info() {
        let img = elf32_v1();
        let p = plan(&img, &map()).unwrap();
        assert_eq!((p.version, p.format, p.header_offset), (Version::V1, Format::Elf32, 0x200));
        assert_eq!((p.entry, p.magic, p.page_align_modules), (0x10_0010, 0x2BAD_B002, true));
        assert_eq!(p.segments[0], Segment { addr: 0x10_0000, file: 0x1000..0x1040, zero_len: 0x1000 });
        assert_eq!(p.segments[1].range(), Range::new(0x20_0000, 0x20_0008));
        let mods = [Module { start: 0, len: 0x3000, cmdline: "cpuid name=x" }];
        let req0 = BootInfoRequest {
            memory_map: &map(),
            cmdline: "log=info",
            modules: &mods,
            boot_loader_name: "basalt",
            acpi_rsdp: None,
        };
        let lay = p.place(&map(), &[0x3000], p.info_len(&req0).unwrap()).unwrap();
        assert_eq!(lay, Layout { modules: vec![0x10_2000], info_addr: 0x1000 });
        let mods = [Module { start: lay.modules[0], ..mods[0] }];
        let m = map();
        let req = BootInfoRequest { modules: &mods, memory_map: &m, ..req0 };
        let b = p.boot_info(lay.info_addr, &req).unwrap();
        let r = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        assert_eq!(r(0), 1 | 4 | 8 | 64 | 512, "mem, cmdline, mods, mmap, boot loader name");
        assert_eq!((r(4), r(8)), (640, 63 << 10));
        assert_eq!((r(20), r(44)), (1, 6 * 24));
        let mmap = (r(48) - 0x1000) as usize;
        assert_eq!(r(mmap), 20);
        assert_eq!(u64::from_le_bytes(b[mmap + 4..mmap + 12].try_into().unwrap()), 0);
        assert_eq!(r(mmap + 20), 1);
        let rec = (r(24) - 0x1000) as usize;
        assert_eq!((r(rec), r(rec + 4)), (0x10_2000, 0x10_5000));
        let s = (r(rec + 8) - 0x1000) as usize;
        assert_eq!(&b[s..s + 13], b"cpuid name=x\0");
        let s = (r(16) - 0x1000) as usize;
        assert_eq!(&b[s..s + 9], b"log=info\0");
        // A module over the kernel, or not page aligned, is refused.
        let bad = [Module { start: 0x10_0000, len: 16, cmdline: "" }];
        let e = p.boot_info(0x1000, &BootInfoRequest { modules: &bad, ..req }).unwrap_err();
        assert!(e.0.contains("module at 0x100000..0x100010 overlaps the segment"), "{e}");
        let bad = [Module { start: 0x30_0010, len: 16, cmdline: "" }];
        let e = p.boot_info(0x1000, &BootInfoRequest { modules: &bad, ..req }).unwrap_err();
        assert!(e.0.contains("not page aligned"), "{e}");
        let e = p.boot_info(0x10_0800, &req).unwrap_err();
        assert!(e.0.contains("boot information at 0x100800"), "{e}");
    }

    #[test]
    fn v1_aout_kludge() {
        let mut img = vec![0u8; 0x3000];
        // The file is loaded from offset 0 at 0x100000; header at file 0x40.
        v1_header(
            &mut img,
            0x40,
            V1_AOUT_KLUDGE,
            Some([0x10_0040, 0x10_0000, 0x10_2000, 0x10_5000, 0x10_0080]),
        );
        let p = plan(&img, &map()).unwrap();
        assert_eq!(p.format, Format::AoutKludge);
        assert_eq!(p.segments, [Segment { addr: 0x10_0000, file: 0..0x2000, zero_len: 0x3000 }]);
        assert_eq!(p.entry, 0x10_0080);
        // load_end_addr 0: the rest of the file.
        v1_header(&mut img, 0x40, V1_AOUT_KLUDGE, Some([0x10_0040, 0x10_0000, 0, 0, 0x10_0080]));
        assert_eq!(plan(&img, &map()).unwrap().segments[0].file, 0..0x3000);
    }

    #[test]
    fn v2_elf64_with_tags_and_boot_info() {
        let mut img = elf(true, 0x20_0000, &[(0x20_0000, 0x20_0000, &[0xF4; 32], 0x100)]);
        v2_header(
            &mut img,
            0x400,
            &[
                v2_tag(1, 0, &u32s(&[1, 6, 4])),
                v2_tag(5, 1, &u32s(&[1024, 768, 32])),
                v2_tag(6, 0, &[]),
                v2_tag(4, 0, &u32s(&[0])),
            ],
        );
        let p = plan(&img, &map()).unwrap();
        assert_eq!(
            (p.version, p.format, p.entry, p.magic),
            (Version::V2, Format::Elf64, 0x20_0000, 0x36D7_6289)
        );
        assert_eq!(
            (p.requested_tags.as_slice(), p.framebuffer_hint, p.page_align_modules),
            (&[1, 6, 4][..], Some((1024, 768, 32)), true)
        );
        let rsdp = [0x52u8; 36];
        let mods = [Module { start: 0x40_0000, len: 100, cmdline: "initrd" }];
        let m = map();
        let req = BootInfoRequest {
            memory_map: &m,
            cmdline: "a b",
            modules: &mods,
            boot_loader_name: "basalt",
            acpi_rsdp: Some(&rsdp),
        };
        let b = p.boot_info(0x8000, &req).unwrap();
        let r = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        assert_eq!(r(0) as usize, b.len());
        let mut at = 8;
        let mut seen = Vec::new();
        while r(at) != 0 {
            assert_eq!(at % 8, 0);
            seen.push(r(at));
            if r(at) == 3 {
                assert_eq!((r(at + 8), r(at + 12)), (0x40_0000, 0x40_0064));
            }
            if r(at) == 6 {
                assert_eq!((r(at + 8), r(at + 12), r(at + 4)), (24, 0, 16 + 24 * 6));
            }
            at = (at + r(at + 4) as usize).next_multiple_of(8);
        }
        assert_eq!(r(at + 4), 8);
        assert_eq!(at + 8, b.len());
        assert_eq!(seen, [1, 2, 3, 4, 6, 15]);
    }

    #[test]
    fn v2_address_and_entry_tags() {
        let mut img = vec![0u8; 0x2000];
        v2_header(
            &mut img,
            0x8,
            &[v2_tag(2, 0, &u32s(&[0x10_0008, u32::MAX, 0, 0x10_4000])), v2_tag(3, 0, &u32s(&[0x10_0100]))],
        );
        let p = plan(&img, &map()).unwrap();
        assert_eq!(p.segments, [Segment { addr: 0x10_0000, file: 0..0x2000, zero_len: 0x2000 }]);
        assert_eq!(p.entry, 0x10_0100);
    }

    #[test]
    fn refusals_name_the_problem() {
        let m = map();
        let check = |img: &[u8], needle: &str| {
            let e = plan(img, &m).unwrap_err();
            assert!(e.0.contains(needle), "wanted {needle:?}, got {e}");
        };
        check(&[0u8; 100], "no multiboot header");
        let mut bad_sum = elf32_v1();
        bad_sum[0x208] ^= 1;
        check(&bad_sum, "checksum");
        let mut video = elf32_v1();
        v1_header(&mut video, 0x200, V1_VIDEO_MODE, None);
        check(&video, "video mode");
        let mut out = elf(false, 0x50_0000, &[(0x10_0000, 0x10_0000, &[1], 0)]);
        v1_header(&mut out, 0x200, 0, None);
        check(&out, "ELF entry point 0x500000 is not inside any loadable segment");
        let mut high = elf(false, 0x1000_0000, &[(0x1000_0000, 0x1000_0000, &[1; 16], 0)]);
        v1_header(&mut high, 0x200, 0, None);
        check(&high, "is not inside usable guest RAM");
        let mut overlap = elf(
            false,
            0x10_0000,
            &[(0x10_0000, 0x10_0000, &[1; 16], 0x1000), (0x10_0800, 0x10_0800, &[1; 16], 0)],
        );
        v1_header(&mut overlap, 0x200, 0, None);
        check(&overlap, "overlaps the segment");
        let mut fb = elf32_v1();
        v2_header(&mut fb, 0x400, &[v2_tag(5, 0, &u32s(&[0, 0, 0]))]);
        check(&fb, "requires a framebuffer");
        let mut req = elf32_v1();
        v2_header(&mut req, 0x400, &[v2_tag(1, 0, &u32s(&[8]))]);
        check(&req, "information request asks for boot information tag 8");
        let mut kl = vec![0u8; 0x100];
        v2_header(&mut kl, 0x0, &[v2_tag(2, 0, &u32s(&[0x10_0000, 0x10_0000, 0, 0]))]);
        check(&kl, "no entry address tag");
        let _ = MemKind::Ram;
    }
}
