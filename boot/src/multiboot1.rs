//! Multiboot1 (Multiboot Specification 0.6.96): QEMU `-kernel` and GRUB's `multiboot`.
//!
//! The info structure is a chain of 32-bit physical pointers (command line, module list,
//! memory map, strings), so everything is read through a [`PhysRead`] and copied into the
//! [`BootInfo`]; nothing here keeps a pointer into the loader's memory.

use crate::cmdline::kernel_cmdline;
use crate::fixed::{FixedStr, FixedVec};
use crate::memmap::{MemoryKind, MemoryMap, MemoryRegion};
use crate::{BootError, BootInfo, Loader, Module, PhysRead, MAX_CMDLINE, MAX_MODULES, MAX_MODULE_CMDLINE};

/// Size of the 0.6.96 info structure, up to and including the framebuffer fields. It is what
/// `BootInfo::loader_info` covers; the memory map, module list and strings it points to live
/// elsewhere and are fully copied by [`parse`].
pub const INFO_SIZE: u64 = 116;

/// `flags` bit: `mem_lower` / `mem_upper` are valid.
pub const FLAG_MEMORY: u32 = 1 << 0;
/// `flags` bit: `cmdline` is valid.
pub const FLAG_CMDLINE: u32 = 1 << 2;
/// `flags` bit: `mods_count` / `mods_addr` are valid.
pub const FLAG_MODS: u32 = 1 << 3;
/// `flags` bit: `mmap_length` / `mmap_addr` are valid.
pub const FLAG_MMAP: u32 = 1 << 6;

// Field offsets in the info structure.
const OFF_FLAGS: usize = 0;
const OFF_MEM_LOWER: usize = 4;
const OFF_MEM_UPPER: usize = 8;
const OFF_CMDLINE: usize = 16;
const OFF_MODS_COUNT: usize = 20;
const OFF_MODS_ADDR: usize = 24;
const OFF_MMAP_LENGTH: usize = 44;
const OFF_MMAP_ADDR: usize = 48;
/// The prefix of the structure this parser reads.
const READ_SIZE: usize = 52;

/// One module list entry: `mod_start`, `mod_end`, `string`, reserved.
const MODULE_ENTRY_SIZE: u64 = 16;
/// Smallest memory map entry `size` (not counting the size field): base, length, type.
const MMAP_ENTRY_MIN: u32 = 20;
/// Longest raw kernel command line read (path included); what is stored is capped at
/// [`MAX_CMDLINE`] once the path is dropped.
const RAW_CMDLINE_MAX: usize = 2 * MAX_CMDLINE;
/// Strings are read in chunks of this many bytes.
const CHUNK: usize = 64;

/// Build a [`BootInfo`] from the multiboot1 info structure at physical address `info`.
///
/// Uses the memory map (flag bit 6) when there is one, otherwise `mem_lower`/`mem_upper`
/// (bit 0), otherwise fails with [`BootError::NoMemoryMap`]. `rsdp` is always `None`:
/// multiboot1 does not pass it, the kernel searches the BIOS areas itself.
pub fn parse(info: u64, mem: &dyn PhysRead) -> Result<BootInfo, BootError> {
    if info == 0 {
        return Err(BootError::Unreadable { addr: 0 });
    }
    let mut raw = [0u8; READ_SIZE];
    read(mem, info, &mut raw)?;
    let field = |off: usize| u32::from_le_bytes([raw[off], raw[off + 1], raw[off + 2], raw[off + 3]]);
    let flags = field(OFF_FLAGS);

    let mut memory = MemoryMap::new();
    if flags & FLAG_MMAP != 0 {
        parse_mmap(mem, u64::from(field(OFF_MMAP_ADDR)), field(OFF_MMAP_LENGTH), &mut memory)?;
    }
    if memory.is_empty() && flags & FLAG_MEMORY != 0 {
        // mem_lower: KiB from 0 (at most 640); mem_upper: KiB from 1 MiB up to the first hole.
        let lower = u64::from(field(OFF_MEM_LOWER)) * 1024;
        let upper = u64::from(field(OFF_MEM_UPPER)) * 1024;
        memory.add(MemoryRegion::new(0, lower, MemoryKind::Usable))?;
        memory.add(MemoryRegion::new(0x10_0000, 0x10_0000 + upper, MemoryKind::Usable))?;
    }
    if memory.is_empty() {
        return Err(BootError::NoMemoryMap);
    }
    memory.normalize()?;

    let mut modules = FixedVec::new();
    let mut modules_dropped = 0;
    if flags & FLAG_MODS != 0 {
        modules_dropped =
            parse_modules(mem, u64::from(field(OFF_MODS_ADDR)), field(OFF_MODS_COUNT), &mut modules)?;
    }

    let mut cmdline = FixedStr::new();
    let cmdline_addr = u64::from(field(OFF_CMDLINE));
    if flags & FLAG_CMDLINE != 0 && cmdline_addr != 0 {
        let mut buf = [0u8; RAW_CMDLINE_MAX];
        let text = read_cstr(mem, cmdline_addr, &mut buf, "bytes in the kernel command line")?;
        cmdline = kernel_cmdline(text)?;
    }

    Ok(BootInfo {
        loader: Loader::Multiboot1,
        memory,
        modules,
        modules_dropped,
        cmdline,
        rsdp: None,
        loader_info: (info, info + INFO_SIZE),
    })
}

fn read(mem: &dyn PhysRead, addr: u64, buf: &mut [u8]) -> Result<(), BootError> {
    if addr.checked_add(buf.len() as u64).is_none() || !mem.read(addr, buf) {
        return Err(BootError::Unreadable { addr });
    }
    Ok(())
}

fn parse_mmap(mem: &dyn PhysRead, addr: u64, length: u32, memory: &mut MemoryMap) -> Result<(), BootError> {
    let end = addr + u64::from(length);
    let mut at = addr;
    while at < end {
        if end - at < 4 + u64::from(MMAP_ENTRY_MIN) {
            return Err(BootError::Malformed("multiboot1 memory map ends inside an entry"));
        }
        let mut entry = [0u8; 24];
        read(mem, at, &mut entry)?;
        let size = u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]);
        if size < MMAP_ENTRY_MIN {
            return Err(BootError::Malformed("multiboot1 memory map entry too small"));
        }
        let base = u64::from_le_bytes([
            entry[4], entry[5], entry[6], entry[7], entry[8], entry[9], entry[10], entry[11],
        ]);
        let len = u64::from_le_bytes([
            entry[12], entry[13], entry[14], entry[15], entry[16], entry[17], entry[18], entry[19],
        ]);
        let typ = u32::from_le_bytes([entry[20], entry[21], entry[22], entry[23]]);
        memory.add(MemoryRegion::from_base_len(base, len, MemoryKind::from_multiboot(typ)))?;
        at += 4 + u64::from(size);
    }
    Ok(())
}

/// Reads the first [`MAX_MODULES`] of the `count` module entries at `addr` into `modules`
/// and returns how many were left out (their entries are not read at all).
fn parse_modules(
    mem: &dyn PhysRead,
    addr: u64,
    count: u32,
    modules: &mut FixedVec<Module, MAX_MODULES>,
) -> Result<u32, BootError> {
    let kept = count.min(MAX_MODULES as u32);
    for i in 0..u64::from(kept) {
        let mut entry = [0u8; MODULE_ENTRY_SIZE as usize];
        read(mem, addr + i * MODULE_ENTRY_SIZE, &mut entry)?;
        let word =
            |off: usize| u32::from_le_bytes([entry[off], entry[off + 1], entry[off + 2], entry[off + 3]]);
        let (start, end, string) = (u64::from(word(0)), u64::from(word(4)), u64::from(word(8)));
        if end < start {
            return Err(BootError::Malformed("multiboot1 module ends before it starts"));
        }
        let mut cmdline = FixedStr::new();
        if string != 0 {
            let mut buf = [0u8; MAX_MODULE_CMDLINE + 1];
            let text = read_cstr(mem, string, &mut buf, "bytes in a module command line")?;
            // Cannot fail: `buf` leaves room for at most MAX_MODULE_CMDLINE bytes before the NUL.
            cmdline = FixedStr::try_from_str(text)
                .map_err(|_| BootError::TooMany("bytes in a module command line"))?;
        }
        // Cannot fail: at most MAX_MODULES entries are read.
        modules.push(Module { start, end, cmdline }).map_err(|_| BootError::TooMany("modules"))?;
    }
    Ok(count - kept)
}

/// Read the NUL-terminated string at `addr` into `buf`; `TooMany(what)` if there is no NUL
/// within `buf.len()` bytes, `Malformed` if it is not UTF-8.
fn read_cstr<'b>(
    mem: &dyn PhysRead,
    addr: u64,
    buf: &'b mut [u8],
    what: &'static str,
) -> Result<&'b str, BootError> {
    let mut filled = 0;
    while filled < buf.len() {
        let chunk = CHUNK.min(buf.len() - filled);
        let at = addr.checked_add(filled as u64).ok_or(BootError::Unreadable { addr })?;
        let dst = &mut buf[filled..filled + chunk];
        if !mem.read(at, dst) {
            // The string may end right before unreadable memory: go byte by byte.
            for (i, byte) in dst.iter_mut().enumerate() {
                let at = at + i as u64;
                read(mem, at, core::slice::from_mut(byte))?;
                if *byte == 0 {
                    break;
                }
            }
        }
        if let Some(nul) = buf[filled..filled + chunk].iter().position(|&b| b == 0) {
            let len = filled + nul;
            return core::str::from_utf8(&buf[..len])
                .map_err(|_| BootError::Malformed("multiboot1 string is not UTF-8"));
        }
        filled += chunk;
    }
    Err(BootError::TooMany(what))
}

#[cfg(test)]
pub(crate) mod tests {
    extern crate std;
    use super::*;
    use crate::{MULTIBOOT1_BOOTLOADER_MAGIC, MULTIBOOT2_BOOTLOADER_MAGIC};
    use std::vec;
    use std::vec::Vec;

    /// Physical memory for tests: `bytes` seen at physical address `base`.
    pub(crate) struct FakeMem {
        pub base: u64,
        pub bytes: Vec<u8>,
    }

    impl PhysRead for FakeMem {
        fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
            let Some(off) = addr.checked_sub(self.base) else {
                return false;
            };
            let Some(src) = usize::try_from(off).ok().and_then(|off| self.bytes.get(off..off + buf.len()))
            else {
                return false;
            };
            buf.copy_from_slice(src);
            true
        }
    }

    const BASE: u64 = 0x9_0000;
    const INFO: usize = 0x100;
    const MMAP: usize = 0x200;
    const MODS: usize = 0x400;
    const STRINGS: usize = 0x500;

    fn put32(mem: &mut FakeMem, off: usize, v: u32) {
        mem.bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn put64(mem: &mut FakeMem, off: usize, v: u64) {
        mem.bytes[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }

    fn put_str(mem: &mut FakeMem, off: usize, s: &str) -> u32 {
        mem.bytes[off..off + s.len()].copy_from_slice(s.as_bytes());
        mem.bytes[off + s.len()] = 0;
        (BASE + off as u64) as u32
    }

    fn phys(off: usize) -> u32 {
        (BASE + off as u64) as u32
    }

    /// Memory map entries, as (size field, base, len, type).
    fn put_mmap(mem: &mut FakeMem, entries: &[(u32, u64, u64, u32)]) -> u32 {
        let mut at = MMAP;
        for &(size, base, len, typ) in entries {
            put32(mem, at, size);
            put64(mem, at + 4, base);
            put64(mem, at + 12, len);
            put32(mem, at + 20, typ);
            at += 4 + size as usize;
        }
        (at - MMAP) as u32
    }

    /// A GRUB-like info structure: cmdline with the kernel path, a memory map with an odd
    /// entry size, two modules.
    fn grub_like() -> FakeMem {
        let mut mem = FakeMem { base: BASE, bytes: vec![0xAA; 0x1000] };
        mem.bytes[INFO..INFO + INFO_SIZE as usize].fill(0);
        let len = put_mmap(
            &mut mem,
            &[
                (20, 0, 0x9fc00, 1),
                (20, 0x9fc00, 0x400, 2),
                (24, 0xf0000, 0x10000, 2),
                (20, 0x10_0000, 0x7ee_0000, 1),
                (20, 0x7fe_0000, 0x2_0000, 3),
                (20, 0xfffc_0000, 0x4_0000, 4),
                (20, 0x1_0000_0000, 0x1000, 5),
                (20, 0x1_0000_1000, 0, 1),
            ],
        );
        let cmdline = put_str(&mut mem, STRINGS, "/boot/basalt log=debug guest=\"linux quiet\"");
        let m0 = put_str(&mut mem, STRINGS + 0x100, "/guests/linux.bzImage console=ttyS0");
        put32(&mut mem, INFO + OFF_FLAGS, FLAG_MEMORY | FLAG_CMDLINE | FLAG_MODS | FLAG_MMAP | (1 << 9));
        put32(&mut mem, INFO + OFF_MEM_LOWER, 639);
        put32(&mut mem, INFO + OFF_MEM_UPPER, 130_000);
        put32(&mut mem, INFO + OFF_CMDLINE, cmdline);
        put32(&mut mem, INFO + OFF_MODS_COUNT, 2);
        put32(&mut mem, INFO + OFF_MODS_ADDR, phys(MODS));
        put32(&mut mem, INFO + OFF_MMAP_LENGTH, len);
        put32(&mut mem, INFO + OFF_MMAP_ADDR, phys(MMAP));
        put32(&mut mem, MODS, 0x20_0000);
        put32(&mut mem, MODS + 4, 0x28_0000);
        put32(&mut mem, MODS + 8, m0);
        put32(&mut mem, MODS + 16, 0x30_0000);
        put32(&mut mem, MODS + 20, 0x30_1000);
        put32(&mut mem, MODS + 24, 0);
        mem
    }

    fn info_addr() -> u64 {
        BASE + INFO as u64
    }

    #[test]
    fn parses_grub_like_info() {
        let mem = grub_like();
        let info = parse(info_addr(), &mem).unwrap();
        assert_eq!(info.loader, Loader::Multiboot1);
        assert_eq!(info.rsdp, None);
        assert_eq!(info.loader_info, (info_addr(), info_addr() + INFO_SIZE));
        assert_eq!(info.cmdline, "log=debug guest=\"linux quiet\"");
        assert_eq!(info.kernel_cmdline().get("guest"), Some("linux quiet"));

        let regions: Vec<_> = info.memory.regions().iter().map(|r| (r.start, r.end, r.kind)).collect();
        assert_eq!(
            regions,
            [
                (0, 0x9fc00, MemoryKind::Usable),
                (0x9fc00, 0xa0000, MemoryKind::Reserved),
                (0xf0000, 0x10_0000, MemoryKind::Reserved),
                (0x10_0000, 0x7fe_0000, MemoryKind::Usable),
                (0x7fe_0000, 0x800_0000, MemoryKind::AcpiReclaimable),
                (0xfffc_0000, 0x1_0000_0000, MemoryKind::AcpiNvs),
                (0x1_0000_0000, 0x1_0000_1000, MemoryKind::BadMemory),
            ]
        );

        assert_eq!((info.modules.len(), info.modules_dropped), (2, 0));
        assert_eq!(info.modules[0].start, 0x20_0000);
        assert_eq!(info.modules[0].end, 0x28_0000);
        assert_eq!(info.modules[0].cmdline, "/guests/linux.bzImage console=ttyS0");
        assert_eq!(info.modules[1].start, 0x30_0000);
        assert_eq!(info.modules[1].cmdline, "");
    }

    #[test]
    fn through_from_multiboot() {
        let mem = grub_like();
        // SAFETY: the multiboot1 path reads only through `mem`.
        let info =
            unsafe { BootInfo::from_multiboot(MULTIBOOT1_BOOTLOADER_MAGIC, info_addr(), &mem) }.unwrap();
        assert_eq!(info.loader, Loader::Multiboot1);
        // SAFETY: a bad magic is rejected before anything is read.
        let bad = unsafe { BootInfo::from_multiboot(0x1234_5678, info_addr(), &mem) };
        assert_eq!(bad, Err(BootError::BadMagic(0x1234_5678)));
        assert_ne!(MULTIBOOT2_BOOTLOADER_MAGIC, MULTIBOOT1_BOOTLOADER_MAGIC);
    }

    #[test]
    fn qemu_like_fallback_to_mem_fields() {
        let mut mem = grub_like();
        put32(&mut mem, INFO + OFF_FLAGS, FLAG_MEMORY | FLAG_CMDLINE);
        let cmd = put_str(&mut mem, STRINGS, "smp=2");
        put32(&mut mem, INFO + OFF_CMDLINE, cmd);
        let info = parse(info_addr(), &mem).unwrap();
        let regions: Vec<_> = info.memory.regions().iter().map(|r| (r.start, r.end, r.kind)).collect();
        assert_eq!(
            regions,
            [
                (0, 639 * 1024, MemoryKind::Usable),
                (0x10_0000, 0x10_0000 + 130_000 * 1024, MemoryKind::Usable)
            ]
        );
        assert!(info.modules.is_empty());
        assert_eq!(info.cmdline, "smp=2");

        // An empty mmap also falls back.
        put32(&mut mem, INFO + OFF_FLAGS, FLAG_MEMORY | FLAG_MMAP);
        put32(&mut mem, INFO + OFF_MMAP_LENGTH, 0);
        assert_eq!(parse(info_addr(), &mem).unwrap().memory.usable_bytes(), (639 + 130_000) * 1024);
    }

    #[test]
    fn no_memory_information() {
        let mut mem = grub_like();
        put32(&mut mem, INFO + OFF_FLAGS, FLAG_CMDLINE);
        assert_eq!(parse(info_addr(), &mem), Err(BootError::NoMemoryMap));
    }

    #[test]
    fn unreadable_pointers() {
        let mem = grub_like();
        assert_eq!(parse(0, &mem), Err(BootError::Unreadable { addr: 0 }));
        assert_eq!(parse(0x10, &mem), Err(BootError::Unreadable { addr: 0x10 }));
        // The structure runs past the end of readable memory.
        let end = BASE + mem.bytes.len() as u64 - 8;
        assert_eq!(parse(end, &mem), Err(BootError::Unreadable { addr: end }));

        let mut bad = grub_like();
        put32(&mut bad, INFO + OFF_MMAP_ADDR, 0x10);
        assert_eq!(parse(info_addr(), &bad), Err(BootError::Unreadable { addr: 0x10 }));

        let mut bad = grub_like();
        put32(&mut bad, INFO + OFF_MODS_ADDR, 0xdead_0000);
        assert_eq!(parse(info_addr(), &bad), Err(BootError::Unreadable { addr: 0xdead_0000 }));

        let mut bad = grub_like();
        put32(&mut bad, INFO + OFF_CMDLINE, 0xdead_0000);
        assert_eq!(parse(info_addr(), &bad), Err(BootError::Unreadable { addr: 0xdead_0000 }));
    }

    #[test]
    fn string_at_the_end_of_memory() {
        let mut mem = grub_like();
        let len = mem.bytes.len();
        let at = put_str(&mut mem, len - 6, "smp=4");
        put32(&mut mem, INFO + OFF_CMDLINE, at);
        assert_eq!(parse(info_addr(), &mem).unwrap().cmdline, "smp=4");
        // Not terminated before memory ends.
        mem.bytes[len - 1] = b'x';
        assert_eq!(parse(info_addr(), &mem), Err(BootError::Unreadable { addr: BASE + len as u64 }));
    }

    #[test]
    fn malformed_and_oversized() {
        let mut mem = grub_like();
        put_mmap(&mut mem, &[(12, 0, 0x1000, 1)]);
        assert_eq!(
            parse(info_addr(), &mem),
            Err(BootError::Malformed("multiboot1 memory map entry too small"))
        );

        let mut mem = grub_like();
        put32(&mut mem, INFO + OFF_MMAP_LENGTH, 24 + 10);
        assert_eq!(
            parse(info_addr(), &mem),
            Err(BootError::Malformed("multiboot1 memory map ends inside an entry"))
        );

        let mut mem = grub_like();
        put32(&mut mem, MODS + 4, 0x10_0000);
        assert_eq!(
            parse(info_addr(), &mem),
            Err(BootError::Malformed("multiboot1 module ends before it starts"))
        );

        // Module command line of exactly the capacity fits; one more byte does not.
        let mut mem = grub_like();
        let s = "m".repeat(MAX_MODULE_CMDLINE);
        put_str(&mut mem, STRINGS + 0x100, &s);
        assert_eq!(parse(info_addr(), &mem).unwrap().modules[0].cmdline.len(), MAX_MODULE_CMDLINE);
        let s = "m".repeat(MAX_MODULE_CMDLINE + 1);
        put_str(&mut mem, STRINGS + 0x100, &s);
        assert_eq!(parse(info_addr(), &mem), Err(BootError::TooMany("bytes in a module command line")));

        let mut mem = grub_like();
        mem.bytes[STRINGS + 3] = 0xff;
        assert_eq!(parse(info_addr(), &mem), Err(BootError::Malformed("multiboot1 string is not UTF-8")));
    }

    #[test]
    fn modules_beyond_the_capacity_are_counted_not_read() {
        let mut mem = grub_like();
        // Entries 2..MAX_MODULES are valid; the ones after them overlap the strings and would
        // not parse: they must not be read.
        for i in 2..MAX_MODULES {
            put32(&mut mem, MODS + 16 * i, 0x40_0000 + 0x1000 * i as u32);
            put32(&mut mem, MODS + 16 * i + 4, 0x40_1000 + 0x1000 * i as u32);
            put32(&mut mem, MODS + 16 * i + 8, 0);
        }
        put32(&mut mem, INFO + OFF_MODS_COUNT, MAX_MODULES as u32 + 4);
        let info = parse(info_addr(), &mem).unwrap();
        assert_eq!((info.modules.len(), info.modules_dropped), (MAX_MODULES, 4));
        assert_eq!(info.modules_given(), MAX_MODULES + 4);
        assert_eq!(info.modules[MAX_MODULES - 1].start, 0x40_0000 + 0x1000 * (MAX_MODULES as u64 - 1));
        // The command line is still read, so the kernel can report the dropped ones.
        assert_eq!(info.cmdline, "log=debug guest=\"linux quiet\"");

        put32(&mut mem, INFO + OFF_MODS_COUNT, u32::MAX);
        let info = parse(info_addr(), &mem).unwrap();
        assert_eq!(info.modules_dropped, u32::MAX - MAX_MODULES as u32);

        put32(&mut mem, INFO + OFF_MODS_COUNT, MAX_MODULES as u32);
        assert_eq!(parse(info_addr(), &mem).unwrap().modules_dropped, 0);
        assert_eq!(parse(info_addr(), &grub_like()).unwrap().modules_dropped, 0);
    }

    #[test]
    fn long_kernel_cmdline() {
        let mut mem = FakeMem { base: BASE, bytes: vec![0; 0x2000] };
        let mut text = std::string::String::from("/boot/basalt ");
        text.push_str(&"k".repeat(MAX_CMDLINE));
        let at = put_str(&mut mem, 0x800, &text);
        put32(&mut mem, INFO + OFF_FLAGS, FLAG_MEMORY | FLAG_CMDLINE);
        put32(&mut mem, INFO + OFF_MEM_UPPER, 1024);
        put32(&mut mem, INFO + OFF_CMDLINE, at);
        assert_eq!(parse(info_addr(), &mem).unwrap().cmdline.len(), MAX_CMDLINE);
        text.push('k');
        put_str(&mut mem, 0x800, &text);
        assert_eq!(parse(info_addr(), &mem), Err(BootError::TooMany("bytes in the kernel command line")));
    }
}
