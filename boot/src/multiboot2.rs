//! Multiboot2: GRUB's `multiboot2`.
//!
//! The boot information (MBI) is one contiguous, 8-byte aligned block of tags, read in place
//! with the `multiboot2` crate. Because that crate asserts (panics) on some malformed tags,
//! the tag chain is checked here first, so a bad MBI is an error rather than a panic.
//!
//! # The RSDP lives inside the MBI
//! The ACPI tags hold a *copy* of the RSDP, not its address. [`parse`] returns the physical
//! address of that copy (the tag's payload) as `BootInfo::rsdp`, so the MBI, which is
//! `BootInfo::loader_info`, must stay reserved (not handed to the frame allocator) until ACPI
//! has been read through it.

use crate::cmdline::kernel_cmdline;
use crate::fixed::{FixedStr, FixedVec};
use crate::memmap::{MemoryKind, MemoryMap, MemoryRegion};
use crate::{BootError, BootInfo, Loader, Module, MAX_MODULES};
use multiboot2::{BootInformation, BootInformationHeader};

const TAG_END: u32 = 0;
const TAG_CMDLINE: u32 = 1;
const TAG_MODULE: u32 = 3;
const TAG_BASIC_MEMINFO: u32 = 4;
const TAG_MMAP: u32 = 6;
const TAG_ACPI_V1: u32 = 14;
const TAG_ACPI_V2: u32 = 15;

/// Size of a multiboot2 memory map entry (base, length, type, reserved).
const MMAP_ENTRY_SIZE: u32 = 24;
/// Offset of the RSDP copy inside an ACPI tag (after the type and size words).
const RSDP_OFFSET_IN_TAG: u64 = 8;
/// Size of an ACPI 1.0 RSDP.
const RSDP_V1_LEN: u32 = 20;
/// Size of an ACPI 2.0+ RSDP.
const RSDP_V2_LEN: u32 = 36;

/// Build a [`BootInfo`] from the multiboot2 boot information at physical address `info`.
///
/// Memory comes from the memory map tag, or the basic memory information tag when there is
/// none (the EFI memory map tag is not used); the RSDP from the ACPI 2.0 tag, else the ACPI
/// 1.0 tag (see the module docs: it points into the MBI).
///
/// # Safety
/// `info` must be the address the loader passed in EBX, identity-mapped, readable for the
/// MBI's `total_size` bytes, and not modified while this runs.
pub unsafe fn parse(info: u64) -> Result<BootInfo, BootError> {
    if info == 0 {
        return Err(BootError::Unreadable { addr: 0 });
    }
    if !info.is_multiple_of(8) {
        return Err(BootError::Malformed("multiboot2 information is not 8-byte aligned"));
    }
    let ptr = info as usize as *const u8;
    // SAFETY: the caller guarantees the MBI is readable at `info`, and it starts with its
    // `total_size` (u32, aligned since `info` is 8-byte aligned).
    let total_size = unsafe { ptr.cast::<u32>().read() };
    // SAFETY: the caller guarantees `total_size` bytes are readable at `info` and unchanging.
    let bytes = unsafe { core::slice::from_raw_parts(ptr, total_size as usize) };
    validate(bytes)?;
    // SAFETY: same memory as `bytes`, which was just checked to be a well-formed tag chain.
    let mbi = unsafe { BootInformation::load(ptr.cast::<BootInformationHeader>()) }
        .map_err(|_| BootError::Malformed("multiboot2 information rejected by the parser"))?;

    let mut memory = MemoryMap::new();
    if let Some(tag) = mbi.memory_map_tag() {
        for area in tag.memory_areas() {
            let kind = MemoryKind::from_multiboot(u32::from(area.typ()));
            memory.add(MemoryRegion::from_base_len(area.start_address(), area.size(), kind))?;
        }
    }
    if memory.is_empty() {
        if let Some(basic) = mbi.basic_memory_info_tag() {
            let lower = u64::from(basic.memory_lower()) * 1024;
            let upper = u64::from(basic.memory_upper()) * 1024;
            memory.add(MemoryRegion::new(0, lower, MemoryKind::Usable))?;
            memory.add(MemoryRegion::new(0x10_0000, 0x10_0000 + upper, MemoryKind::Usable))?;
        }
    }
    if memory.is_empty() {
        return Err(BootError::NoMemoryMap);
    }
    memory.normalize()?;

    let mut modules = FixedVec::new();
    let mut modules_dropped = 0u32;
    for tag in mbi.module_tags() {
        if modules.len() == MAX_MODULES {
            // Counted, not parsed: it will not run, so its contents cannot stop the boot.
            modules_dropped = modules_dropped.saturating_add(1);
            continue;
        }
        let (start, end) = (u64::from(tag.start_address()), u64::from(tag.end_address()));
        if end < start {
            return Err(BootError::Malformed("multiboot2 module ends before it starts"));
        }
        let text = tag.cmdline().map_err(|_| BootError::Malformed("multiboot2 module command line"))?;
        let cmdline =
            FixedStr::try_from_str(text).map_err(|_| BootError::TooMany("bytes in a module command line"))?;
        modules.push(Module { start, end, cmdline }).map_err(|_| BootError::TooMany("modules"))?;
    }

    let cmdline = match mbi.command_line_tag() {
        Some(tag) => kernel_cmdline(
            tag.cmdline().map_err(|_| BootError::Malformed("multiboot2 kernel command line"))?,
        )?,
        None => FixedStr::new(),
    };

    let rsdp_v2 = mbi.rsdp_v2_tag().map(|tag| tag as *const _ as usize as u64);
    let rsdp_v1 = mbi.rsdp_v1_tag().map(|tag| tag as *const _ as usize as u64);
    let rsdp = rsdp_v2.or(rsdp_v1).map(|tag| tag + RSDP_OFFSET_IN_TAG);

    Ok(BootInfo {
        loader: Loader::Multiboot2,
        memory,
        modules,
        modules_dropped,
        cmdline,
        rsdp,
        loader_info: (info, info + u64::from(total_size)),
    })
}

fn u32_at(bytes: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]])
}

/// Check everything the `multiboot2` crate would otherwise assert on: the header, that the
/// tags chain exactly up to an end tag that closes the MBI, and the sizes of the tags
/// [`parse`] reads.
fn validate(bytes: &[u8]) -> Result<(), BootError> {
    let total = bytes.len();
    if total < 16 || !total.is_multiple_of(8) {
        return Err(BootError::Malformed("multiboot2 total_size"));
    }
    let mut off = 8;
    loop {
        if total - off < 8 {
            return Err(BootError::Malformed("multiboot2 tags run past total_size"));
        }
        let typ = u32_at(bytes, off);
        let size = u32_at(bytes, off + 4) as usize;
        if size < 8 || size > total - off {
            return Err(BootError::Malformed("multiboot2 tag size"));
        }
        let tag_ok = match typ {
            TAG_END => {
                if size != 8 || off + 8 != total {
                    return Err(BootError::Malformed("multiboot2 end tag is not last"));
                }
                return Ok(());
            }
            TAG_MODULE => size >= 16,
            TAG_BASIC_MEMINFO => size == 16,
            TAG_MMAP => {
                size >= 16
                    && u32_at(bytes, off + 8) == MMAP_ENTRY_SIZE
                    && (size - 16).is_multiple_of(MMAP_ENTRY_SIZE as usize)
            }
            // The crate views these as fixed-size structs padded to 8 bytes.
            TAG_ACPI_V1 => {
                (8 + RSDP_V1_LEN as usize..=32).contains(&size) && bytes[off + 8..off + 16] == *b"RSD PTR "
            }
            TAG_ACPI_V2 => {
                (8 + RSDP_V2_LEN as usize..=48).contains(&size) && bytes[off + 8..off + 16] == *b"RSD PTR "
            }
            // A command line tag of just a header has no NUL: the crate reports that as an
            // error, which `parse` turns into `Malformed`.
            TAG_CMDLINE => true,
            _ => true,
        };
        if !tag_ok {
            return Err(BootError::Malformed("multiboot2 tag contents"));
        }
        // `total` is a multiple of 8 and `off + size <= total`, so this stays in bounds.
        off = (off + size).next_multiple_of(8);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::multiboot1::tests::FakeMem;
    use crate::{MAX_MODULES, MULTIBOOT2_BOOTLOADER_MAGIC};
    use std::vec::Vec;

    /// Builds an MBI: tags are appended, padded to 8 bytes; `finish` adds the end tag and
    /// returns it in a `u64` buffer so it is 8-byte aligned.
    struct Mbi {
        bytes: Vec<u8>,
    }

    impl Mbi {
        fn new() -> Self {
            Self { bytes: std::vec![0; 8] }
        }

        fn tag(mut self, typ: u32, payload: &[u8]) -> Self {
            self.raw_tag(typ, (8 + payload.len()) as u32, payload);
            self
        }

        fn raw_tag(&mut self, typ: u32, size: u32, payload: &[u8]) {
            self.bytes.extend_from_slice(&typ.to_le_bytes());
            self.bytes.extend_from_slice(&size.to_le_bytes());
            self.bytes.extend_from_slice(payload);
            while !self.bytes.len().is_multiple_of(8) {
                self.bytes.push(0);
            }
        }

        fn cmdline(self, s: &str) -> Self {
            let mut p = s.as_bytes().to_vec();
            p.push(0);
            self.tag(TAG_CMDLINE, &p)
        }

        fn module(self, start: u32, end: u32, s: &str) -> Self {
            let mut p = Vec::new();
            p.extend_from_slice(&start.to_le_bytes());
            p.extend_from_slice(&end.to_le_bytes());
            p.extend_from_slice(s.as_bytes());
            p.push(0);
            self.tag(TAG_MODULE, &p)
        }

        fn mmap(self, areas: &[(u64, u64, u32)]) -> Self {
            let mut p = Vec::new();
            p.extend_from_slice(&MMAP_ENTRY_SIZE.to_le_bytes());
            p.extend_from_slice(&0u32.to_le_bytes());
            for &(base, len, typ) in areas {
                p.extend_from_slice(&base.to_le_bytes());
                p.extend_from_slice(&len.to_le_bytes());
                p.extend_from_slice(&typ.to_le_bytes());
                p.extend_from_slice(&0u32.to_le_bytes());
            }
            self.tag(TAG_MMAP, &p)
        }

        fn basic_meminfo(self, lower: u32, upper: u32) -> Self {
            let mut p = Vec::new();
            p.extend_from_slice(&lower.to_le_bytes());
            p.extend_from_slice(&upper.to_le_bytes());
            self.tag(TAG_BASIC_MEMINFO, &p)
        }

        fn rsdp_v1(self, rsdt: u32) -> Self {
            let mut p = std::vec![0u8; RSDP_V1_LEN as usize];
            p[..8].copy_from_slice(b"RSD PTR ");
            p[9..15].copy_from_slice(b"BASALT");
            p[16..20].copy_from_slice(&rsdt.to_le_bytes());
            self.tag(TAG_ACPI_V1, &p)
        }

        fn rsdp_v2(self, xsdt: u64) -> Self {
            let mut p = std::vec![0u8; RSDP_V2_LEN as usize];
            p[..8].copy_from_slice(b"RSD PTR ");
            p[15] = 2;
            p[20..24].copy_from_slice(&RSDP_V2_LEN.to_le_bytes());
            p[24..32].copy_from_slice(&xsdt.to_le_bytes());
            self.tag(TAG_ACPI_V2, &p)
        }

        fn finish(mut self) -> Vec<u64> {
            self.raw_tag(TAG_END, 8, &[]);
            self.finish_raw()
        }

        /// Without adding an end tag; total_size = the bytes so far.
        fn finish_raw(mut self) -> Vec<u64> {
            let total = self.bytes.len() as u32;
            self.bytes[..4].copy_from_slice(&total.to_le_bytes());
            while !self.bytes.len().is_multiple_of(8) {
                self.bytes.push(0);
            }
            self.bytes.chunks(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect()
        }
    }

    fn addr(buf: &[u64]) -> u64 {
        buf.as_ptr() as usize as u64
    }

    fn parse_buf(buf: &[u64]) -> Result<BootInfo, BootError> {
        // SAFETY: `buf` is a live, 8-byte aligned buffer holding the whole MBI (its
        // total_size never exceeds the buffer in these tests).
        unsafe { parse(addr(buf)) }
    }

    /// The bytes of `buf` as a byte slice, to find things by offset.
    fn offset_of_tag(buf: &[u64], typ: u32) -> u64 {
        let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut off = 8;
        loop {
            let t = u32_at(&bytes, off);
            if t == typ {
                return off as u64;
            }
            assert_ne!(t, TAG_END, "no tag {typ}");
            off = (off + u32_at(&bytes, off + 4) as usize).next_multiple_of(8);
        }
    }

    fn grub_like() -> Vec<u64> {
        Mbi::new()
            .cmdline("/boot/basalt log=info smp=4")
            .tag(2, b"GRUB 2.12\0")
            .module(0x20_0000, 0x28_0000, "/guests/linux console=ttyS0")
            .module(0x30_0000, 0x30_0800, "")
            .basic_meminfo(639, 2_000_000)
            .mmap(&[
                (0, 0x9fc00, 1),
                (0x9fc00, 0x400, 2),
                (0x10_0000, 0x7ee_0000, 1),
                (0x7fe_0000, 0x2_0000, 3),
                (0x8000_0000, 0x1000, 4),
                (0x8000_1000, 0x1000, 5),
                (0x8000_2000, 0x1000, 7),
                (0x1_0000_0000, 0x1_0000_0000, 1),
            ])
            .rsdp_v1(0x7fe_1000)
            .rsdp_v2(0x7fe_2000)
            .finish()
    }

    #[test]
    fn parses_grub_like_mbi() {
        let buf = grub_like();
        let info = parse_buf(&buf).unwrap();
        assert_eq!(info.loader, Loader::Multiboot2);
        assert_eq!(info.cmdline, "log=info smp=4");
        assert_eq!(info.kernel_cmdline().get("smp"), Some("4"));
        let total = (buf.len() * 8) as u64;
        assert_eq!(info.loader_info, (addr(&buf), addr(&buf) + total));

        let regions: Vec<_> = info.memory.regions().iter().map(|r| (r.start, r.end, r.kind)).collect();
        assert_eq!(
            regions,
            [
                (0, 0x9fc00, MemoryKind::Usable),
                (0x9fc00, 0xa0000, MemoryKind::Reserved),
                (0x10_0000, 0x7fe_0000, MemoryKind::Usable),
                (0x7fe_0000, 0x800_0000, MemoryKind::AcpiReclaimable),
                (0x8000_0000, 0x8000_1000, MemoryKind::AcpiNvs),
                (0x8000_1000, 0x8000_2000, MemoryKind::BadMemory),
                (0x8000_2000, 0x8000_3000, MemoryKind::Reserved),
                (0x1_0000_0000, 0x2_0000_0000, MemoryKind::Usable),
            ]
        );

        assert_eq!((info.modules.len(), info.modules_dropped), (2, 0));
        assert_eq!((info.modules[0].start, info.modules[0].end), (0x20_0000, 0x28_0000));
        assert_eq!(info.modules[0].cmdline, "/guests/linux console=ttyS0");
        assert_eq!((info.modules[1].start, info.modules[1].end), (0x30_0000, 0x30_0800));
        assert_eq!(info.modules[1].cmdline, "");

        // The v2 copy is preferred, and it is the copy inside the MBI.
        let rsdp = info.rsdp.unwrap();
        assert_eq!(rsdp, addr(&buf) + offset_of_tag(&buf, TAG_ACPI_V2) + 8);
        assert!(rsdp >= info.loader_info.0 && rsdp + u64::from(RSDP_V2_LEN) <= info.loader_info.1);
        // SAFETY: `rsdp` points into `buf`, checked just above.
        let sig = unsafe { core::slice::from_raw_parts(rsdp as usize as *const u8, 8) };
        assert_eq!(sig, b"RSD PTR ");
    }

    #[test]
    fn through_from_multiboot() {
        let buf = grub_like();
        let unused = FakeMem { base: 0, bytes: Vec::new() };
        // SAFETY: `buf` is a live MBI; the multiboot2 path does not use `mem`.
        let info =
            unsafe { BootInfo::from_multiboot(MULTIBOOT2_BOOTLOADER_MAGIC, addr(&buf), &unused) }.unwrap();
        assert_eq!(info, parse_buf(&buf).unwrap());
        // SAFETY: a bad magic is rejected before anything is read.
        let bad = unsafe { BootInfo::from_multiboot(0x36d7_6288, addr(&buf), &unused) };
        assert_eq!(bad, Err(BootError::BadMagic(0x36d7_6288)));
    }

    #[test]
    fn rsdp_v1_only_and_none() {
        let buf = Mbi::new().mmap(&[(0, 0x1000_0000, 1)]).rsdp_v1(0xe_0000).finish();
        let info = parse_buf(&buf).unwrap();
        assert_eq!(info.rsdp, Some(addr(&buf) + offset_of_tag(&buf, TAG_ACPI_V1) + 8));
        assert_eq!(info.cmdline, "");
        assert!(info.modules.is_empty());

        let buf = Mbi::new().mmap(&[(0, 0x1000_0000, 1)]).finish();
        assert_eq!(parse_buf(&buf).unwrap().rsdp, None);
    }

    #[test]
    fn basic_meminfo_fallback() {
        let buf = Mbi::new().cmdline("quiet").basic_meminfo(640, 1024).finish();
        let info = parse_buf(&buf).unwrap();
        assert_eq!(info.memory.usable_bytes(), (640 + 1024) * 1024);
        assert_eq!(info.memory.highest_address(), 0x10_0000 + 1024 * 1024);
        assert_eq!(info.cmdline, "quiet");

        let buf = Mbi::new().cmdline("quiet").finish();
        assert_eq!(parse_buf(&buf), Err(BootError::NoMemoryMap));
    }

    #[test]
    fn bad_pointers() {
        // SAFETY: rejected before anything is read.
        assert_eq!(unsafe { parse(0) }, Err(BootError::Unreadable { addr: 0 }));
        let buf = grub_like();
        // SAFETY: rejected for its alignment before anything is read.
        let misaligned = unsafe { parse(addr(&buf) + 4) };
        assert_eq!(misaligned, Err(BootError::Malformed("multiboot2 information is not 8-byte aligned")));
    }

    #[test]
    fn truncated_or_malformed_mbi() {
        // No end tag: total_size stops right after the memory map.
        let buf = Mbi::new().mmap(&[(0, 0x1000_0000, 1)]).finish_raw();
        assert_eq!(parse_buf(&buf), Err(BootError::Malformed("multiboot2 tags run past total_size")));

        // total_size cuts the last tag short.
        let mut buf = grub_like();
        let total = (buf.len() * 8 - 16) as u32;
        buf[0] = u64::from(total);
        assert_eq!(parse_buf(&buf), Err(BootError::Malformed("multiboot2 tag size")));

        // total_size too small or not a multiple of 8.
        let mut buf = grub_like();
        buf[0] = 8;
        assert_eq!(parse_buf(&buf), Err(BootError::Malformed("multiboot2 total_size")));
        buf[0] = 27;
        assert_eq!(parse_buf(&buf), Err(BootError::Malformed("multiboot2 total_size")));

        // A tag smaller than its own header.
        let mut m = Mbi::new();
        m.raw_tag(TAG_MMAP, 4, &[]);
        assert_eq!(parse_buf(&m.finish()), Err(BootError::Malformed("multiboot2 tag size")));

        // An end tag in the middle.
        let mut m = Mbi::new();
        m.raw_tag(TAG_END, 8, &[]);
        let buf = m.mmap(&[(0, 0x1000, 1)]).finish();
        assert_eq!(parse_buf(&buf), Err(BootError::Malformed("multiboot2 end tag is not last")));

        // A memory map whose entries are not 24 bytes.
        let mut m = Mbi::new();
        let mut p = Vec::new();
        p.extend_from_slice(&20u32.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend_from_slice(&[0; 20]);
        m.raw_tag(TAG_MMAP, 8 + p.len() as u32, &p);
        assert_eq!(parse_buf(&m.finish()), Err(BootError::Malformed("multiboot2 tag contents")));

        // A memory map with a partial entry.
        let mut m = Mbi::new();
        let mut p = Vec::new();
        p.extend_from_slice(&24u32.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend_from_slice(&[0; 30]);
        m.raw_tag(TAG_MMAP, 8 + p.len() as u32, &p);
        assert_eq!(parse_buf(&m.finish()), Err(BootError::Malformed("multiboot2 tag contents")));

        // A truncated RSDP tag and one without the signature.
        let mut m = Mbi::new().mmap(&[(0, 0x1000, 1)]);
        m.raw_tag(TAG_ACPI_V2, 24, b"RSD PTR \0\0\0\0\0\0\0\0");
        assert_eq!(parse_buf(&m.finish()), Err(BootError::Malformed("multiboot2 tag contents")));
        let m = Mbi::new().mmap(&[(0, 0x1000, 1)]).tag(TAG_ACPI_V1, &[0; 20]);
        assert_eq!(parse_buf(&m.finish()), Err(BootError::Malformed("multiboot2 tag contents")));

        // A module tag too short for its addresses.
        let m = Mbi::new().mmap(&[(0, 0x1000, 1)]).tag(TAG_MODULE, &[0; 4]);
        assert_eq!(parse_buf(&m.finish()), Err(BootError::Malformed("multiboot2 tag contents")));

        // Strings without a NUL or not UTF-8.
        let m = Mbi::new().mmap(&[(0, 0x1000, 1)]).tag(TAG_CMDLINE, b"abc");
        assert_eq!(parse_buf(&m.finish()), Err(BootError::Malformed("multiboot2 kernel command line")));
        let m = Mbi::new().mmap(&[(0, 0x1000, 1)]).tag(TAG_CMDLINE, b"a\xffc\0");
        assert_eq!(parse_buf(&m.finish()), Err(BootError::Malformed("multiboot2 kernel command line")));
        let m = Mbi::new()
            .mmap(&[(0, 0x1000, 1)])
            .module(0x1000, 0x2000, "ok")
            .tag(TAG_MODULE, b"\0\0\0\0\0\0\0\0abc");
        assert_eq!(parse_buf(&m.finish()), Err(BootError::Malformed("multiboot2 module command line")));

        // A module that ends before it starts.
        let m = Mbi::new().mmap(&[(0, 0x1000, 1)]).module(0x2000, 0x1000, "");
        assert_eq!(
            parse_buf(&m.finish()),
            Err(BootError::Malformed("multiboot2 module ends before it starts"))
        );
    }

    #[test]
    fn capacities() {
        // Modules beyond the capacity are counted, not parsed (this one's command line is too
        // long to keep), and the kernel command line after them is still read.
        let long = "x".repeat(crate::MAX_MODULE_CMDLINE + 1);
        let mut m = Mbi::new().mmap(&[(0, 0x1000_0000, 1)]);
        for i in 0..MAX_MODULES as u32 + 3 {
            let text = if i == MAX_MODULES as u32 + 1 { long.as_str() } else { "m" };
            m = m.module(0x100_0000 + i * 0x1000, 0x100_1000 + i * 0x1000, text);
        }
        let info = parse_buf(&m.cmdline("/boot/basalt test=guests").finish()).unwrap();
        assert_eq!((info.modules.len(), info.modules_dropped), (MAX_MODULES, 3));
        assert_eq!(info.modules_given(), MAX_MODULES + 3);
        assert_eq!(info.modules[MAX_MODULES - 1].start, 0x100_0000 + (MAX_MODULES as u64 - 1) * 0x1000);
        assert_eq!(info.cmdline, "test=guests");

        let long = "x".repeat(crate::MAX_MODULE_CMDLINE + 1);
        let m = Mbi::new().mmap(&[(0, 0x1000_0000, 1)]).module(0x1000, 0x2000, &long);
        assert_eq!(parse_buf(&m.finish()), Err(BootError::TooMany("bytes in a module command line")));

        let long = std::format!("/boot/basalt {}", "x".repeat(crate::MAX_CMDLINE + 1));
        let m = Mbi::new().mmap(&[(0, 0x1000_0000, 1)]).cmdline(&long);
        assert_eq!(parse_buf(&m.finish()), Err(BootError::TooMany("bytes in the kernel command line")));

        let areas: Vec<_> = (0..=crate::MAX_REGIONS as u64).map(|i| (i * 0x2000, 0x1000, 1)).collect();
        let m = Mbi::new().mmap(&areas);
        assert_eq!(parse_buf(&m.finish()), Err(BootError::TooMany("memory regions")));
    }
}
