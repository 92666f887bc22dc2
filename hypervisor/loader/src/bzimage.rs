//! A Linux bzImage and the 64-bit boot protocol (Linux `Documentation/arch/x86/boot.rst`,
//! `zero-page.rst`; offsets as in `arch/x86/include/uapi/asm/bootparam.h`).
//!
//! [`plan`] reads the setup header at `0x1F1`, refuses what Basalt cannot start (no `0xAA55`
//! boot flag, no `HdrS`, protocol older than 2.12, no 64-bit entry, a zImage), and places each
//! piece in the guest memory map the caller gives:
//!
//! - the protected-mode kernel (the file after its `(setup_sects + 1) * 512` bytes of real-mode
//!   setup) at `pref_address` when that is free RAM, else (relocatable kernels only) at the
//!   lowest `kernel_alignment`-aligned address from 1 MiB with room for `init_size` bytes,
//!   the memory the kernel uses in place before it has read the memory map;
//! - the zero page, the command line and, if asked for, a page-aligned block for the
//!   integrator's GDT and page tables, low in RAM (first fit from 4 KiB);
//! - the initrd as high as it can go, page aligned, below `initrd_addr_max + 1`, the top of
//!   RAM and 4 GiB (unless `XLF_CAN_BE_LOADED_ABOVE_4G`).
//!
//! and builds the 4096 bytes of `boot_params`: zeroes, the image's setup header copied to
//! `0x1F1`, `type_of_loader = 0xFF`, `CAN_USE_HEAP` with `heap_end_ptr`, the command line and
//! initrd addresses (with their `ext_` high halves), the E820 table from the memory map and
//! `acpi_rsdp_addr`.
//!
//! # Starting the kernel (what the integrator builds)
//!
//! Copy [`LinuxPlan::kernel_file`] of the image to [`LinuxPlan::kernel`]`.start` (the bytes
//! after it up to [`LinuxPlan::kernel_reserved`]`.end` need not be zeroed: the kernel
//! decompresses there), [`LinuxPlan::boot_params`] to `boot_params_addr`,
//! [`LinuxPlan::cmdline`] (NUL included) to `cmdline_addr` and the initrd to
//! [`LinuxPlan::initrd`]. Then the vCPU starts, per the 64-bit boot protocol:
//!
//! - 64-bit mode: CR0.PE|PG, CR4.PAE, EFER.LME|LMA, RIP = [`LinuxPlan::entry64`]
//!   (load address + `0x200`);
//! - paging on, with page tables that identity-map at least every range in
//!   [`LinuxPlan::identity_map`] (the kernel's `init_size` region, the zero page, the command
//!   line; Basalt adds the initrd and the boot structures). 2 MiB pages over
//!   [`LinuxPlan::identity_map_2m`] are enough; the tables themselves can go in
//!   [`LinuxPlan::boot_structures`];
//! - a GDT with flat 4 GiB descriptors: `__BOOT_CS` = selector `0x10` (64-bit code,
//!   execute/read) and `__BOOT_DS` = `0x18` (data, read/write); CS = `0x10`,
//!   DS = ES = SS = `0x18` (FS/GS may be the same);
//! - RSI = `boot_params_addr`; RFLAGS = `0x2` (interrupts off); the other GPRs 0 (RSP need
//!   not point anywhere, the kernel sets its own stack before it pushes anything).

use crate::memmap::{align_up, normalise, ram_top, MemKind, MemRange, Placer, Range};
use crate::{put, refuse, u16_at, u32_at, u64_at, u8_at, LoadError};
use alloc::vec;
use alloc::vec::Vec;

/// Where the setup header starts.
pub const SETUP_HEADER_OFFSET: usize = 0x1F1;
/// `HdrS`.
pub const HDRS_MAGIC: u32 = 0x5372_6448;
/// Oldest boot protocol with `xloadflags` (so with a declared 64-bit entry).
pub const MIN_PROTOCOL: u16 = 0x020C;
/// `loadflags` bits.
pub const LOADED_HIGH: u8 = 1 << 0;
pub const CAN_USE_HEAP: u8 = 1 << 7;
/// `xloadflags` bits.
pub const XLF_KERNEL_64: u16 = 1 << 0;
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
/// The zero page's size.
pub const BOOT_PARAMS_SIZE: usize = 4096;
/// Offset of the 64-bit entry from the load address.
pub const ENTRY64_OFFSET: u64 = 0x200;
/// `heap_end_ptr` Basalt writes: the end of a setup heap at `0xE000` in the real-mode
/// segment, minus `0x200`, as boot.rst asks. Unused by the 64-bit entry, set because the
/// protocol says a loader that sets `CAN_USE_HEAP` gives it.
pub const HEAP_END_PTR: u16 = 0xE000 - 0x200;
/// Where the E820 table and its count live in the zero page, and its size.
pub const E820_ENTRIES_OFFSET: usize = 0x1E8;
pub const E820_TABLE_OFFSET: usize = 0x2D0;
pub const E820_MAX: usize = 128;
/// Where the copied setup header must stop (`edd_mbr_sig_buffer` follows).
const SETUP_HEADER_LIMIT: usize = 0x290;
/// End of the last field this module reads (`init_size`, protocol 2.10+).
const SETUP_HEADER_MIN_END: usize = 0x264;

const FOUR_GIB: u64 = 1 << 32;
const PAGE: u64 = 4096;

/// The fields of the setup header the loader uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupHeader {
    /// Sectors of real-mode setup code after the boot sector (0 in the image means 4).
    pub setup_sects: u32,
    /// The protected-mode code's size in 16-byte paragraphs.
    pub syssize: u32,
    /// Boot protocol, `0x020F` for 2.15.
    pub version: u16,
    pub loadflags: u8,
    pub kernel_alignment: u32,
    pub relocatable_kernel: bool,
    pub pref_address: u64,
    pub init_size: u32,
    pub initrd_addr_max: u32,
    pub cmdline_size: u32,
    pub xloadflags: u16,
    /// One past the header's last byte in the image (`0x202 + image[0x201]`).
    pub header_end: usize,
}

impl SetupHeader {
    /// Bytes before the protected-mode kernel: the boot sector and the setup sectors.
    pub fn setup_len(&self) -> usize {
        (self.setup_sects as usize + 1) * 512
    }
}

/// Read and check the setup header.
pub fn parse_header(image: &[u8]) -> Result<SetupHeader, LoadError> {
    let boot_flag = u16_at(image, 0x1FE, "the boot flag")?;
    if boot_flag != 0xAA55 {
        refuse!("not a Linux kernel: boot flag is {boot_flag:#06x}, not 0xaa55");
    }
    let magic = u32_at(image, 0x202, "the HdrS magic")?;
    if magic != HDRS_MAGIC {
        refuse!("not a bzImage: setup header magic is {magic:#010x}, not \"HdrS\" (0x53726448)");
    }
    let version = u16_at(image, 0x206, "the boot protocol version")?;
    if version < MIN_PROTOCOL {
        refuse!(
            "boot protocol {}.{:02} is older than 2.12, the first with a 64-bit entry (xloadflags)",
            version >> 8,
            version & 0xFF
        );
    }
    let header_end = 0x202 + u8_at(image, 0x201, "the setup header length")? as usize;
    if !(SETUP_HEADER_MIN_END..=SETUP_HEADER_LIMIT).contains(&header_end) {
        refuse!(
            "setup header ends at {header_end:#x} (jump byte at 0x201), outside {SETUP_HEADER_MIN_END:#x}..={SETUP_HEADER_LIMIT:#x} for protocol 2.12+"
        );
    }
    if header_end > image.len() {
        refuse!("truncated: the setup header ends at {header_end:#x}, the image is {} bytes", image.len());
    }
    let setup_sects = match u8_at(image, 0x1F1, "setup_sects")? {
        0 => 4,
        n => n as u32,
    };
    let h = SetupHeader {
        setup_sects,
        syssize: u32_at(image, 0x1F4, "syssize")?,
        version,
        loadflags: u8_at(image, 0x211, "loadflags")?,
        kernel_alignment: u32_at(image, 0x230, "kernel_alignment")?,
        relocatable_kernel: u8_at(image, 0x234, "relocatable_kernel")? != 0,
        xloadflags: u16_at(image, 0x236, "xloadflags")?,
        cmdline_size: u32_at(image, 0x238, "cmdline_size")?,
        pref_address: u64_at(image, 0x258, "pref_address")?,
        init_size: u32_at(image, 0x260, "init_size")?,
        initrd_addr_max: u32_at(image, 0x22C, "initrd_addr_max")?,
        header_end,
    };
    if h.xloadflags & XLF_KERNEL_64 == 0 {
        refuse!("kernel has no 64-bit entry point (xloadflags {:#x} lacks XLF_KERNEL_64)", h.xloadflags);
    }
    if h.loadflags & LOADED_HIGH == 0 {
        refuse!(
            "a zImage (loadflags {:#x} lacks LOADED_HIGH): only bzImages load at 1 MiB and up",
            h.loadflags
        );
    }
    if h.setup_len() >= image.len() {
        refuse!(
            "truncated: {} setup sectors end at {:#x}, the image is {} bytes, with no kernel after them",
            h.setup_sects,
            h.setup_len(),
            image.len()
        );
    }
    let payload = (image.len() - h.setup_len()) as u64;
    if (h.syssize as u64) * 16 > align_up(payload, 16).unwrap_or(u64::MAX) {
        refuse!(
            "truncated: syssize says {:#x} bytes of protected-mode kernel, the image has {payload:#x} after the setup",
            h.syssize as u64 * 16
        );
    }
    if h.relocatable_kernel && !h.kernel_alignment.is_power_of_two() {
        refuse!("kernel_alignment {:#x} is not a power of two", h.kernel_alignment);
    }
    Ok(h)
}

/// What the caller knows about the VM.
#[derive(Debug, Clone, Copy)]
pub struct LinuxRequest<'a> {
    /// The guest's physical address space (see [`crate::memmap`]); also becomes the E820 table.
    pub memory_map: &'a [MemRange],
    /// The kernel command line (without a NUL).
    pub cmdline: &'a str,
    /// The initrd's length in bytes; 0 for none.
    pub initrd_len: u64,
    /// Where the ACPI RSDP is, for `acpi_rsdp_addr` (0 in the zero page when `None`).
    pub acpi_rsdp_addr: Option<u64>,
    /// Bytes the integrator wants for its GDT and page tables, placed low and page aligned;
    /// 0 for none (then it must find room itself, outside [`LinuxPlan::pieces`]).
    pub boot_structures_len: u64,
}

/// Where everything goes. Every range is inside usable RAM and apart from the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxPlan {
    pub header: SetupHeader,
    /// Where the protected-mode kernel's file bytes go.
    pub kernel: Range,
    /// Which bytes of the image those are.
    pub kernel_file: core::ops::Range<usize>,
    /// The kernel's load address up to `max(init_size, file bytes)`, page-rounded: kept free
    /// of everything else.
    pub kernel_reserved: Range,
    /// RIP: load address + 0x200.
    pub entry64: u64,
    /// RSI.
    pub boot_params_addr: u64,
    /// The zero page's 4096 bytes.
    pub boot_params: Vec<u8>,
    pub cmdline_addr: u64,
    /// The command line and its NUL.
    pub cmdline: Vec<u8>,
    pub initrd: Option<Range>,
    pub boot_structures: Option<Range>,
    /// The normalised memory map written as E820.
    pub e820: Vec<MemRange>,
}

impl LinuxPlan {
    /// Every placed piece with its name (the kernel as its reserved span).
    pub fn pieces(&self) -> Vec<(Range, &'static str)> {
        let mut v = vec![
            (self.kernel_reserved, "kernel"),
            (Range::new(self.boot_params_addr, self.boot_params_addr + BOOT_PARAMS_SIZE as u64), "zero page"),
            (Range::new(self.cmdline_addr, self.cmdline_addr + self.cmdline.len() as u64), "command line"),
        ];
        v.extend(self.initrd.map(|r| (r, "initrd")));
        v.extend(self.boot_structures.map(|r| (r, "boot structures")));
        v
    }

    /// Ranges the initial page tables must identity-map: every piece.
    pub fn identity_map(&self) -> Vec<Range> {
        self.pieces().into_iter().map(|p| p.0).collect()
    }

    /// [`Self::identity_map`] widened to 2 MiB boundaries, sorted and merged: what a 2 MiB-page
    /// identity map must cover.
    pub fn identity_map_2m(&self) -> Vec<Range> {
        const TWO_MIB: u64 = 2 << 20;
        let mut v: Vec<Range> = self
            .identity_map()
            .into_iter()
            .map(|r| Range::new(r.start & !(TWO_MIB - 1), align_up(r.end, TWO_MIB).unwrap_or(u64::MAX)))
            .collect();
        v.sort_unstable();
        let mut out: Vec<Range> = Vec::new();
        for r in v {
            match out.last_mut() {
                Some(l) if r.start <= l.end => l.end = l.end.max(r.end),
                _ => out.push(r),
            }
        }
        out
    }
}

/// Parse `image` and place it and its companions in `req.memory_map`.
pub fn plan(image: &[u8], req: &LinuxRequest<'_>) -> Result<LinuxPlan, LoadError> {
    let h = parse_header(image)?;
    let map = normalise(req.memory_map)?;
    let top = ram_top(&map);
    let above_4g = h.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G != 0;
    let reach = if above_4g { u64::MAX } else { FOUR_GIB };
    let mut placer = Placer::new(&map);

    let kernel_file = h.setup_len()..image.len();
    let file_len = kernel_file.len() as u64;
    let reserved_len = align_up(file_len.max(h.init_size as u64), PAGE).unwrap_or(u64::MAX);
    let kernel_reserved = if h.relocatable_kernel {
        let align = (h.kernel_alignment as u64).max(PAGE);
        let at_pref = Range::sized(h.pref_address, reserved_len)
            .filter(|r| r.start.is_multiple_of(align) && r.end <= reach)
            .and_then(|r| placer.clone().claim(r, "kernel").ok());
        match at_pref {
            Some(r) => placer.claim(r, "kernel")?,
            None => placer.lowest(reserved_len, align, 1 << 20, reach, "kernel")?,
        }
    } else {
        let Some(r) = Range::sized(h.pref_address, reserved_len) else {
            refuse!("kernel at pref_address {:#x} + init_size {reserved_len:#x} wraps", h.pref_address);
        };
        placer.claim(r, "kernel").map_err(|e| {
            LoadError(alloc::format!(
                "non-relocatable kernel must load at pref_address {:#x}: {e}",
                h.pref_address
            ))
        })?
    };
    let kernel = Range::new(kernel_reserved.start, kernel_reserved.start + file_len);

    let cmdline_len = req.cmdline.len() as u64;
    if req.cmdline.as_bytes().contains(&0) {
        refuse!("the command line contains a NUL byte");
    }
    if cmdline_len > h.cmdline_size as u64 {
        refuse!("command line is {cmdline_len} bytes, the kernel's cmdline_size allows {}", h.cmdline_size);
    }
    let boot_params_addr = placer.lowest(BOOT_PARAMS_SIZE as u64, PAGE, PAGE, reach, "zero page")?.start;
    let cmdline_addr = placer.lowest(cmdline_len + 1, 16, PAGE, reach, "command line")?.start;
    let boot_structures = match req.boot_structures_len {
        0 => None,
        n => Some(placer.lowest(
            align_up(n, PAGE).unwrap_or(u64::MAX),
            PAGE,
            PAGE,
            FOUR_GIB,
            "boot structures",
        )?),
    };
    let initrd = match req.initrd_len {
        0 => None,
        n => {
            let limit = (h.initrd_addr_max as u64 + 1).min(top).min(reach);
            Some(placer.highest(n, PAGE, limit, "initrd")?)
        }
    };

    let mut bp = vec![0u8; BOOT_PARAMS_SIZE];
    bp[SETUP_HEADER_OFFSET..h.header_end].copy_from_slice(&image[SETUP_HEADER_OFFSET..h.header_end]);
    put(&mut bp, 0x210, &[0xFF]); // type_of_loader: undefined
    put(&mut bp, 0x211, &[h.loadflags | CAN_USE_HEAP]);
    put(&mut bp, 0x224, &HEAP_END_PTR.to_le_bytes());
    put(&mut bp, 0x226, &[0, 0]); // ext_loader_ver, ext_loader_type
    put(&mut bp, 0x214, &(kernel.start as u32).to_le_bytes()); // code32_start
    put(&mut bp, 0x228, &(cmdline_addr as u32).to_le_bytes());
    put(&mut bp, 0x0C8, &((cmdline_addr >> 32) as u32).to_le_bytes());
    let (rd_addr, rd_len) = initrd.map_or((0, 0), |r| (r.start, r.len()));
    put(&mut bp, 0x218, &(rd_addr as u32).to_le_bytes());
    put(&mut bp, 0x21C, &(rd_len as u32).to_le_bytes());
    put(&mut bp, 0x0C0, &((rd_addr >> 32) as u32).to_le_bytes());
    put(&mut bp, 0x0C4, &((rd_len >> 32) as u32).to_le_bytes());
    put(&mut bp, 0x23C, &0u32.to_le_bytes()); // hardware_subarch: a PC
    put(&mut bp, 0x240, &0u64.to_le_bytes()); // hardware_subarch_data
    put(&mut bp, 0x250, &0u64.to_le_bytes()); // setup_data: no list
    put(&mut bp, 0x070, &req.acpi_rsdp_addr.unwrap_or(0).to_le_bytes());
    if map.len() > E820_MAX {
        refuse!("memory map has {} entries, the zero page holds {E820_MAX}", map.len());
    }
    put(&mut bp, E820_ENTRIES_OFFSET, &[map.len() as u8]);
    for (i, e) in map.iter().enumerate() {
        let off = E820_TABLE_OFFSET + 20 * i;
        put(&mut bp, off, &e.start.to_le_bytes());
        put(&mut bp, off + 8, &e.len.to_le_bytes());
        put(&mut bp, off + 16, &e.kind.e820_type().to_le_bytes());
    }

    let mut cmdline = Vec::with_capacity(req.cmdline.len() + 1);
    cmdline.extend_from_slice(req.cmdline.as_bytes());
    cmdline.push(0);
    Ok(LinuxPlan {
        entry64: kernel.start + ENTRY64_OFFSET,
        header: h,
        kernel,
        kernel_file,
        kernel_reserved,
        boot_params_addr,
        boot_params: bp,
        cmdline_addr,
        cmdline,
        initrd,
        boot_structures,
        e820: map,
    })
}

/// RAM (bytes) the image needs at the least: its `init_size` region above 1 MiB (what a
/// configuration's "memory too small for the kernel" check can use).
pub fn min_ram(image: &[u8]) -> Result<u64, LoadError> {
    let h = parse_header(image)?;
    let file_len = (image.len() - h.setup_len()) as u64;
    Ok((1 << 20) + align_up(file_len.max(h.init_size as u64), PAGE).unwrap_or(u64::MAX))
}

/// A synthetic bzImage for tests: a setup header of protocol `version`, `setup_sects` setup
/// sectors, and `payload` bytes of kernel. Public for the fuzz tests and the corpus.
#[doc(hidden)]
pub fn synthetic(version: u16, setup_sects: u8, payload: usize, init_size: u32) -> Vec<u8> {
    let sects = if setup_sects == 0 { 4 } else { setup_sects as usize };
    let mut img = vec![0u8; (sects + 1) * 512 + payload];
    put(&mut img, 0x1F1, &[setup_sects]);
    put(&mut img, 0x1F4, &(payload.div_ceil(16) as u32).to_le_bytes());
    put(&mut img, 0x1FE, &0xAA55u16.to_le_bytes());
    put(&mut img, 0x200, &[0xEB, (0x26C - 0x202) as u8]);
    put(&mut img, 0x202, &HDRS_MAGIC.to_le_bytes());
    put(&mut img, 0x206, &version.to_le_bytes());
    put(&mut img, 0x211, &[LOADED_HIGH]);
    put(&mut img, 0x22C, &0x7FFF_FFFFu32.to_le_bytes());
    put(&mut img, 0x230, &0x20_0000u32.to_le_bytes());
    put(&mut img, 0x234, &[1]);
    put(&mut img, 0x236, &(XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G).to_le_bytes());
    put(&mut img, 0x238, &2048u32.to_le_bytes());
    put(&mut img, 0x258, &0x100_0000u64.to_le_bytes());
    put(&mut img, 0x260, &init_size.to_le_bytes());
    for (i, b) in img[(sects + 1) * 512..].iter_mut().enumerate() {
        *b = i as u8;
    }
    img
}

/// The standard PC map for `ram` bytes of RAM: RAM with the BIOS area, and MMIO windows
/// (ECAM at 0xB000_0000, IOAPIC 0xFEC0_0000, LAPIC 0xFEE0_0000) reserved. For tests.
#[doc(hidden)]
pub fn pc_memory_map(ram: u64) -> Vec<MemRange> {
    vec![
        MemRange::new(0, ram, MemKind::Ram),
        MemRange::new(0xA0000, 0x60000, MemKind::Reserved),
        MemRange::new(0xB000_0000, 0x1000_0000, MemKind::Reserved),
        MemRange::new(0xFEC0_0000, 0x1000, MemKind::Reserved),
        MemRange::new(0xFEE0_0000, 0x1000, MemKind::Reserved),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    fn req<'a>(map: &'a [MemRange], cmdline: &'a str, initrd_len: u64) -> LinuxRequest<'a> {
        LinuxRequest {
            memory_map: map,
            cmdline,
            initrd_len,
            acpi_rsdp_addr: Some(0xE0000),
            boot_structures_len: 0x6000,
        }
    }

    fn le32(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    #[test]
    fn plans_a_relocatable_kernel_at_pref_address() {
        let img = synthetic(0x020F, 0, 0x30000, 0x80_0000);
        let map = pc_memory_map(256 << 20);
        let p = plan(&img, &req(&map, "console=ttyS0 root=/dev/vda", 0x12345)).unwrap();
        assert_eq!(p.header.setup_sects, 4);
        assert_eq!(p.kernel_file, 5 * 512..img.len());
        assert_eq!(p.kernel, Range::new(0x100_0000, 0x103_0000));
        assert_eq!(p.kernel_reserved, Range::new(0x100_0000, 0x180_0000));
        assert_eq!(p.entry64, 0x100_0200);
        assert_eq!(p.boot_params_addr, 0x1000);
        assert_eq!(p.cmdline_addr, 0x2000);
        assert_eq!(p.boot_structures, Some(Range::new(0x3000, 0x9000)));
        assert_eq!(p.initrd, Some(Range::new(0x0FFE_D000, 0x0FFE_D000 + 0x12345)));
        assert_eq!(p.cmdline, b"console=ttyS0 root=/dev/vda\0");
        let bp = &p.boot_params;
        assert_eq!(bp.len(), 4096);
        assert_eq!(bp[0x1F1..0x210], img[0x1F1..0x210], "header copied");
        assert_eq!((bp[0x210], bp[0x211]), (0xFF, LOADED_HIGH | CAN_USE_HEAP));
        assert_eq!(u16::from_le_bytes([bp[0x224], bp[0x225]]), 0xDE00);
        assert_eq!((le32(bp, 0x228), le32(bp, 0xC8)), (0x2000, 0));
        assert_eq!((le32(bp, 0x218), le32(bp, 0x21C)), (0x0FFE_D000, 0x12345));
        assert_eq!(u64::from_le_bytes(bp[0x70..0x78].try_into().unwrap()), 0xE0000);
        assert_eq!(bp[0x1E8], 6, "RAM, BIOS hole, RAM, ECAM, IOAPIC, LAPIC");
        let e = |i: usize| {
            let o = 0x2D0 + 20 * i;
            (
                u64::from_le_bytes(bp[o..o + 8].try_into().unwrap()),
                u64::from_le_bytes(bp[o + 8..o + 16].try_into().unwrap()),
                le32(bp, o + 16),
            )
        };
        assert_eq!(e(0), (0, 0xA0000, 1));
        assert_eq!(e(1), (0xA0000, 0x60000, 2));
        assert_eq!(e(2), (0x100000, (256 << 20) - 0x100000, 1));
        assert_eq!(e(5), (0xFEE0_0000, 0x1000, 2));
        assert!(bp[0x2D0 + 20 * 6..].iter().all(|&b| b == 0), "nothing after the table");
        assert_eq!(p.identity_map_2m()[0], Range::new(0, 0x20_0000));
        assert!(p.identity_map_2m().iter().any(|r| r.contains_range(&p.kernel_reserved)));
    }

    #[test]
    fn relocates_when_pref_address_is_taken_and_respects_initrd_addr_max() {
        let mut img = synthetic(0x020C, 2, 0x1000, 0x40_0000);
        put(&mut img, 0x258, &0x4000_0000u64.to_le_bytes()); // pref beyond RAM
        put(&mut img, 0x22C, &0x3FF_FFFFu32.to_le_bytes()); // initrd below 64 MiB
        let map = pc_memory_map(128 << 20);
        let p = plan(&img, &req(&map, "", 0x2000)).unwrap();
        assert_eq!(p.kernel.start, 0x20_0000, "lowest 2 MiB-aligned address from 1 MiB");
        assert_eq!(p.initrd, Some(Range::new(0x3FF_E000, 0x400_0000)));
        // Not relocatable: pref_address or nothing.
        put(&mut img, 0x234, &[0]);
        let e = plan(&img, &req(&map, "", 0)).unwrap_err();
        assert!(e.0.contains("non-relocatable kernel must load at pref_address 0x40000000"), "{e}");
    }

    #[test]
    fn refusals_name_the_problem() {
        let good = synthetic(0x020F, 4, 0x1000, 0x10000);
        let map = pc_memory_map(64 << 20);
        let check = |img: &[u8], r: &LinuxRequest<'_>, needle: &str| {
            let e = plan(img, r).unwrap_err();
            assert!(e.0.contains(needle), "wanted {needle:?}, got {e}");
        };
        let r = req(&map, "", 0);
        check(&good[..0x200], &r, "truncated: the HdrS magic");
        let mut old = good.clone();
        put(&mut old, 0x206, &0x020Bu16.to_le_bytes());
        check(&old, &r, "boot protocol 2.11 is older than 2.12");
        let mut no64 = good.clone();
        put(&mut no64, 0x236, &[0, 0]);
        check(&no64, &r, "lacks XLF_KERNEL_64");
        let long = String::from_utf8(vec![b'x'; 2049]).unwrap();
        check(
            &good,
            &req(&map, &long, 0),
            "command line is 2049 bytes, the kernel's cmdline_size allows 2048",
        );
        check(&good, &req(&map, "", 1 << 30), "no room for the initrd");
        let big = synthetic(0x020F, 4, 0x1000, 16 << 20);
        check(&big, &req(&pc_memory_map(8 << 20), "", 0), "no room for the kernel");
    }

    /// Debian's kernel, when this machine has one: parses, plans, and its header says 2.15.
    #[test]
    fn a_real_kernel_when_present() {
        extern crate std;
        let Ok(dir) = std::fs::read_dir("/boot") else { return };
        for entry in dir.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with("vmlinuz-") {
                continue;
            }
            let Ok(img) = std::fs::read(entry.path()) else { continue };
            let map = pc_memory_map(512 << 20);
            let p = plan(&img, &req(&map, "console=ttyS0", 8 << 20)).unwrap();
            assert!(p.header.version >= MIN_PROTOCOL);
            assert!(p.kernel_reserved.start.is_multiple_of(p.header.kernel_alignment as u64));
            assert!(min_ram(&img).unwrap() < 512 << 20);
        }
    }
}
