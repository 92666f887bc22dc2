//! The multiboot test kernels (`src/bin/multiboot1.rs`, `src/bin/multiboot2.rs`): what they
//! share with xtask (the VM's RAM, the command line and the modules the tests pass), the
//! parsers of the multiboot v1 and v2 boot information, the checks, and the entry
//! ([`multiboot_kernel!`](crate::multiboot_kernel!)).
//!
//! Unlike the other guests these are not guests of Basalt's boot ABI: they carry no guest-ABI
//! note (`multiboot.ld` links them, without `entry!`), so Basalt starts them as multiboot
//! kernels, in 32-bit protected mode with paging off, EAX = the boot loader's magic and EBX =
//! the boot information's address. The 32-bit entry saves those (and CR0 and EFLAGS as it
//! found them), builds its own page tables in its .bss (the boot information and the modules
//! sit in low RAM, where the boot ABI's tables would go), switches to long mode and calls the
//! test, which makes ucalls like any guest. Having passed once, a kernel spoils its boot
//! information and first module and resets its VM: the second boot must pass the same checks
//! (Basalt's restart loads a multiboot kernel again, modules and boot information included).
//!
//! `multiboot1` is delivered as ELF32: xtask repacks the ELF64 rustc writes (its PT_LOAD
//! segments, all below 4 GiB) into an ELF32 file (xtask/src/multiboot_guest.rs).

/// `mem=` of the test VMs, in MiB.
pub const MEM_MIB: u64 = 64;
/// The kernel command line the tests pass (`cmdline="..."`) and the kernels must get, exactly.
pub const CMDLINE: &str = "mb.test=1 hello multiboot world";
/// The boot loader name Basalt gives.
pub const BOOT_LOADER_NAME: &str = "Basalt";

/// One module the tests pass: its file (xtask writes it from [`module_byte`]), the words
/// around `module_of=<vm>` on its module command line, and the string the kernel must get.
#[derive(Debug, Clone, Copy)]
pub struct TestModule {
    pub file: &'static str,
    pub len: usize,
    pub words_before: &'static str,
    pub words_after: &'static str,
    pub string: &'static str,
}

/// The two modules, in boot order: `module_of=` in the middle of the words and first.
pub const MODULES: [TestModule; 2] = [
    TestModule {
        file: "multiboot-module-a.bin",
        len: 100,
        words_before: "alpha",
        words_after: "one",
        string: "alpha one",
    },
    TestModule {
        file: "multiboot-module-b.bin",
        len: 5000,
        words_before: "",
        words_after: "beta two three",
        string: "beta two three",
    },
];

/// Byte `offset` of module `index`'s file: a tag (`BSLTMOD` and `A`, `B`...), then a pattern.
pub fn module_byte(index: usize, offset: usize) -> u8 {
    match offset {
        0..7 => b"BSLTMOD"[offset],
        7 => b'A' + index as u8,
        _ => ((offset * 7 + index * 13) % 251) as u8,
    }
}

/// The multiboot v1 header flags of `multiboot1`: modules page aligned, memory information.
pub const V1_FLAGS: u32 = (1 << 0) | (1 << 1);
pub const V1_MAGIC: u32 = 0x1BAD_B002;
pub const V1_CHECKSUM: u32 = 0u32.wrapping_sub(V1_MAGIC.wrapping_add(V1_FLAGS));
pub const V2_MAGIC: u32 = 0xE852_50D6;
/// What EAX holds at the entry.
pub const V1_BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;
pub const V2_BOOTLOADER_MAGIC: u32 = 0x36D7_6289;

/// The BIOS area Basalt reserves in the map (the ACPI tables are inside it).
pub const BIOS_AREA: (u64, u64) = (0x9_F000, 0x10_0000);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn bootloader_magic(self) -> u32 {
        match self {
            Version::V1 => V1_BOOTLOADER_MAGIC,
            Version::V2 => V2_BOOTLOADER_MAGIC,
        }
    }
}

/// Guest-physical memory as the parsers read it.
pub trait Phys {
    /// Fill `out` from `addr`; false where that is not memory.
    fn read(&self, addr: u64, out: &mut [u8]) -> bool;

    fn u32(&self, addr: u64) -> Option<u32> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b).then(|| u32::from_le_bytes(b))
    }

    fn u64(&self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b).then(|| u64::from_le_bytes(b))
    }
}

/// A NUL-terminated string of at most `N` bytes, copied out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Text<N> {
    fn read(p: &impl Phys, addr: u64) -> Result<Self, &'static str> {
        let mut t = Text { bytes: [0; N], len: 0 };
        loop {
            let mut b = [0u8];
            if !p.read(addr + t.len as u64, &mut b) {
                return Err("a string runs out of memory");
            }
            if b[0] == 0 {
                return Ok(t);
            }
            if t.len == N {
                return Err("a string is longer than the parser keeps");
            }
            t.bytes[t.len] = b[0];
            t.len += 1;
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or("<not UTF-8>")
    }
}

/// One memory map entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub len: u64,
    pub kind: u32,
}

/// One module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleInfo {
    pub start: u64,
    pub end: u64,
    pub string: Text<64>,
}

pub const MAX_REGIONS: usize = 16;
pub const MAX_MODULES: usize = 4;

/// What the boot information said.
#[derive(Debug, Clone, Copy)]
pub struct BootInfo {
    pub version: Version,
    /// v1: the flags word.
    pub flags: Option<u32>,
    /// mem_lower, mem_upper (KiB).
    pub mem: Option<(u32, u32)>,
    pub map: [Region; MAX_REGIONS],
    pub map_len: usize,
    pub cmdline: Option<Text<256>>,
    pub loader: Option<Text<64>>,
    pub modules: [Option<ModuleInfo>; MAX_MODULES],
    pub module_count: usize,
    /// v2: the ACPI RSDP tag's bytes and their length (20 or 36).
    pub rsdp: Option<([u8; 36], usize)>,
    /// v2: the total size the structure gives.
    pub total_size: u32,
}

impl BootInfo {
    fn new(version: Version) -> Self {
        BootInfo {
            version,
            flags: None,
            mem: None,
            map: [Region::default(); MAX_REGIONS],
            map_len: 0,
            cmdline: None,
            loader: None,
            modules: [None; MAX_MODULES],
            module_count: 0,
            rsdp: None,
            total_size: 0,
        }
    }

    fn push_region(&mut self, r: Region) -> Result<(), &'static str> {
        if self.map_len == MAX_REGIONS {
            return Err("more memory map entries than the parser keeps");
        }
        self.map[self.map_len] = r;
        self.map_len += 1;
        Ok(())
    }

    fn push_module(&mut self, m: ModuleInfo) -> Result<(), &'static str> {
        if self.module_count == MAX_MODULES {
            return Err("more modules than the parser keeps");
        }
        self.modules[self.module_count] = Some(m);
        self.module_count += 1;
        Ok(())
    }

    pub fn regions(&self) -> &[Region] {
        &self.map[..self.map_len]
    }

    pub fn modules(&self) -> impl Iterator<Item = &ModuleInfo> {
        self.modules.iter().flatten()
    }
}

const MISSING: &str = "the boot information runs out of memory";

/// Parse a multiboot v1 `struct multiboot_info` at `addr`.
pub fn parse_v1(p: &impl Phys, addr: u64) -> Result<BootInfo, &'static str> {
    let r = |off: u64| p.u32(addr + off).ok_or(MISSING);
    let mut info = BootInfo::new(Version::V1);
    let flags = r(0)?;
    info.flags = Some(flags);
    if flags & (1 << 0) != 0 {
        info.mem = Some((r(4)?, r(8)?));
    }
    if flags & (1 << 2) != 0 {
        info.cmdline = Some(Text::read(p, r(16)? as u64)?);
    }
    if flags & (1 << 3) != 0 {
        let (count, at) = (r(20)?, r(24)? as u64);
        for i in 0..count as u64 {
            let rec = at + 16 * i;
            let (start, end) = (p.u32(rec).ok_or(MISSING)?, p.u32(rec + 4).ok_or(MISSING)?);
            let string = Text::read(p, p.u32(rec + 8).ok_or(MISSING)? as u64)?;
            info.push_module(ModuleInfo { start: start as u64, end: end as u64, string })?;
        }
    }
    if flags & (1 << 6) != 0 {
        let (len, at) = (r(44)? as u64, r(48)? as u64);
        let mut off = 0;
        while off < len {
            // Each entry: size (not counting itself), base, length, type.
            let size = p.u32(at + off).ok_or(MISSING)? as u64;
            let e = at + off + 4;
            let start = p.u64(e).ok_or(MISSING)?;
            let rlen = p.u64(e + 8).ok_or(MISSING)?;
            let kind = p.u32(e + 16).ok_or(MISSING)?;
            info.push_region(Region { start, len: rlen, kind })?;
            if size < 20 {
                return Err("a v1 memory map entry's size is below 20");
            }
            off += size + 4;
        }
    }
    if flags & (1 << 9) != 0 {
        info.loader = Some(Text::read(p, r(64)? as u64)?);
    }
    Ok(info)
}

/// Parse a Multiboot2 boot information structure at `addr` (8-byte aligned tags after
/// `total_size` and a reserved word, ending with tag 0).
pub fn parse_v2(p: &impl Phys, addr: u64) -> Result<BootInfo, &'static str> {
    if !addr.is_multiple_of(8) {
        return Err("the Multiboot2 boot information is not 8-byte aligned");
    }
    let mut info = BootInfo::new(Version::V2);
    info.total_size = p.u32(addr).ok_or(MISSING)?;
    let end = addr + info.total_size as u64;
    let mut at = addr + 8;
    loop {
        if at + 8 > end {
            return Err("the tags run past total_size without an end tag");
        }
        let ty = p.u32(at).ok_or(MISSING)?;
        let size = p.u32(at + 4).ok_or(MISSING)? as u64;
        if size < 8 || at + size > end {
            return Err("a tag's size is below 8 or runs past total_size");
        }
        let body = at + 8;
        match ty {
            0 => {
                if size != 8 {
                    return Err("the end tag's size is not 8");
                }
                break;
            }
            1 => info.cmdline = Some(Text::read(p, body)?),
            2 => info.loader = Some(Text::read(p, body)?),
            3 => {
                let (start, end) = (p.u32(body).ok_or(MISSING)?, p.u32(body + 4).ok_or(MISSING)?);
                let string = Text::read(p, body + 8)?;
                info.push_module(ModuleInfo { start: start as u64, end: end as u64, string })?;
            }
            4 => info.mem = Some((p.u32(body).ok_or(MISSING)?, p.u32(body + 4).ok_or(MISSING)?)),
            6 => {
                let entry_size = p.u32(body).ok_or(MISSING)? as u64;
                if entry_size < 24 {
                    return Err("the memory map tag's entry_size is below 24");
                }
                let mut e = body + 8;
                while e + entry_size <= at + size {
                    let start = p.u64(e).ok_or(MISSING)?;
                    let len = p.u64(e + 8).ok_or(MISSING)?;
                    let kind = p.u32(e + 16).ok_or(MISSING)?;
                    info.push_region(Region { start, len, kind })?;
                    e += entry_size;
                }
            }
            14 | 15 => {
                let len = (size - 8).min(36) as usize;
                let mut b = [0u8; 36];
                if !p.read(body, &mut b[..len]) {
                    return Err(MISSING);
                }
                info.rsdp = Some((b, len));
            }
            _ => {}
        }
        at = (at + size).next_multiple_of(8);
    }
    Ok(info)
}

/// A check that failed: what, and the value found against the one wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    pub what: &'static str,
    pub got: u64,
    pub want: u64,
}

fn expect(what: &'static str, got: u64, want: u64) -> Result<(), Mismatch> {
    ensure(what, got == want, got, want)
}

/// `ok`, or a [`Mismatch`] carrying `got` and `want` as the report's values.
fn ensure(what: &'static str, ok: bool, got: u64, want: u64) -> Result<(), Mismatch> {
    if ok {
        Ok(())
    } else {
        Err(Mismatch { what, got, want })
    }
}

/// Check the boot information against what the test passed: a VM of `ram` bytes, the ACPI
/// RSDP at `rsdp_addr` (found by the BIOS-area scan), [`CMDLINE`] and [`MODULES`].
pub fn verify(info: &BootInfo, ram: u64, rsdp_addr: u64, p: &impl Phys) -> Result<(), Mismatch> {
    if let Some(flags) = info.flags {
        let want = 1 | 1 << 2 | 1 << 3 | 1 << 6 | 1 << 9;
        expect("v1 flags: mem, cmdline, mods, mmap, boot loader name", (flags & want) as u64, want as u64)?;
    }
    let cmdline = info.cmdline.ok_or(Mismatch { what: "a command line", got: 0, want: 1 })?;
    ensure(
        "the command line is the one passed (length)",
        cmdline.as_bytes() == CMDLINE.as_bytes(),
        cmdline.as_bytes().len() as u64,
        CMDLINE.len() as u64,
    )?;
    let loader = info.loader.ok_or(Mismatch { what: "a boot loader name", got: 0, want: 1 })?;
    ensure(
        "the boot loader name (length)",
        loader.as_bytes() == BOOT_LOADER_NAME.as_bytes(),
        loader.as_bytes().len() as u64,
        BOOT_LOADER_NAME.len() as u64,
    )?;

    // Memory: what the map says against the VM's RAM.
    let (lower, upper) = info.mem.ok_or(Mismatch { what: "mem_lower/mem_upper", got: 0, want: 1 })?;
    expect("mem_lower (KiB)", lower as u64, BIOS_AREA.0 >> 10)?;
    expect("mem_upper (KiB)", upper as u64, (ram - BIOS_AREA.1) >> 10)?;
    let map = info.regions();
    let usable: u64 = map.iter().filter(|r| r.kind == 1).map(|r| r.len).sum();
    expect("usable RAM in the map (bytes)", usable, ram - (BIOS_AREA.1 - BIOS_AREA.0))?;
    let has = |start: u64, len: u64| map.iter().any(|r| (r.start, r.len, r.kind) == (start, len, 1));
    ensure("a RAM entry 0..0x9f000 (entries)", has(0, BIOS_AREA.0), map.len() as u64, 0)?;
    ensure(
        "a RAM entry from 1 MiB to the end of RAM (entries)",
        has(BIOS_AREA.1, ram - BIOS_AREA.1),
        map.len() as u64,
        0,
    )?;
    for (i, r) in map.iter().enumerate() {
        if let Some(next) = map.get(i + 1) {
            ensure(
                "map entries ascending and apart (next start, end)",
                next.start >= r.start + r.len,
                next.start,
                r.start + r.len,
            )?;
        }
        let in_bios = r.start < BIOS_AREA.1 && BIOS_AREA.0 < r.start + r.len;
        ensure("no RAM in the BIOS area (entry start, length)", !(r.kind == 1 && in_bios), r.start, r.len)?;
    }
    let acpi = map.iter().any(|r| r.kind == 3 && r.start <= rsdp_addr && rsdp_addr + 36 <= r.start + r.len);
    ensure("an ACPI (type 3) entry holding the RSDP (RSDP)", acpi, rsdp_addr, 0)?;

    // The modules: count, place, string and every byte.
    expect("module count", info.module_count as u64, MODULES.len() as u64)?;
    for (i, (m, want)) in info.modules().zip(&MODULES).enumerate() {
        expect("module length", m.end - m.start, want.len as u64)?;
        ensure("module start page aligned (start)", m.start.is_multiple_of(4096), m.start, 0)?;
        ensure(
            "module string as passed (module index)",
            m.string.as_bytes() == want.string.as_bytes(),
            i as u64,
            0,
        )?;
        let mut chunk = [0u8; 256];
        for off in (0..want.len).step_by(chunk.len()) {
            let n = chunk.len().min(want.len - off);
            ensure(
                "module bytes readable (address)",
                p.read(m.start + off as u64, &mut chunk[..n]),
                m.start + off as u64,
                0,
            )?;
            for (k, b) in chunk[..n].iter().enumerate() {
                expect("module byte (value)", *b as u64, module_byte(i, off + k) as u64)?;
            }
        }
    }

    if info.version == Version::V2 {
        let (rsdp, len) = info.rsdp.ok_or(Mismatch { what: "an ACPI RSDP tag", got: 0, want: 1 })?;
        expect("the RSDP tag's length", len as u64, 36)?;
        let mut real = [0u8; 36];
        ensure("the RSDP readable (address)", p.read(rsdp_addr, &mut real), rsdp_addr, 0)?;
        ensure("the RSDP tag holds the RSDP's bytes (RSDP)", rsdp == real, rsdp_addr, 0)?;
    }
    Ok(())
}

/// What the 32-bit entry found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryState {
    pub eax: u32,
    pub ebx: u32,
    pub cr0: u32,
    pub eflags: u32,
}

#[cfg(target_arch = "x86_64")]
pub use entry::*;

#[cfg(target_arch = "x86_64")]
mod entry {
    use super::*;
    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicU32, Ordering};

    /// EAX, EBX, CR0 and EFLAGS as the 32-bit entry found them.
    pub static ENTRY_EAX: AtomicU32 = AtomicU32::new(0);
    pub static ENTRY_EBX: AtomicU32 = AtomicU32::new(0);
    pub static ENTRY_CR0: AtomicU32 = AtomicU32::new(0);
    pub static ENTRY_EFLAGS: AtomicU32 = AtomicU32::new(0);

    /// The kernel's own PML4, PDPT and PD (identity map of the first GiB, 2 MiB pages), in
    /// its .bss: written by the 32-bit entry before paging is on.
    #[repr(C, align(4096))]
    pub struct BootTables(pub UnsafeCell<[u64; 3 * 512]>);
    // SAFETY: only the 32-bit entry writes the tables, before any Rust code runs.
    unsafe impl Sync for BootTables {}
    pub static BOOT_TABLES: BootTables = BootTables(UnsafeCell::new([0; 3 * 512]));

    pub fn entry_state() -> EntryState {
        EntryState {
            eax: ENTRY_EAX.load(Ordering::Relaxed),
            ebx: ENTRY_EBX.load(Ordering::Relaxed),
            cr0: ENTRY_CR0.load(Ordering::Relaxed),
            eflags: ENTRY_EFLAGS.load(Ordering::Relaxed),
        }
    }

    /// Guest-physical memory through the kernel's identity map of the first GiB.
    pub struct Identity;

    impl Phys for Identity {
        fn read(&self, addr: u64, out: &mut [u8]) -> bool {
            let Some(end) = addr.checked_add(out.len() as u64) else { return false };
            if addr == 0 || end > 1 << 30 {
                return false;
            }
            for (i, b) in out.iter_mut().enumerate() {
                *b = crate::hw::mmio_read8(addr + i as u64);
            }
            true
        }
    }

    /// The test: the entry state, then the boot information against what the test passed.
    pub fn run(version: Version) {
        let e = entry_state();
        crate::guest_println!(
            "entered with EAX {:#x}, EBX {:#x}, CR0 {:#x}, EFLAGS {:#x}",
            e.eax,
            e.ebx,
            e.cr0,
            e.eflags
        );
        crate::guest_assert_eq!(e.eax, version.bootloader_magic());
        crate::guest_assert!(e.cr0 & 0x8000_0001 == 1, "CR0 {:#x} at entry: PE set, PG clear", e.cr0);
        crate::guest_assert!(
            e.eflags & (1 << 9 | 1 << 17) == 0,
            "EFLAGS {:#x} at entry: IF, VM clear",
            e.eflags
        );
        let info = match version {
            Version::V1 => parse_v1(&Identity, e.ebx as u64),
            Version::V2 => parse_v2(&Identity, e.ebx as u64),
        };
        let info = match info {
            Ok(i) => i,
            Err(why) => {
                crate::ucall::assert_fail(file!(), line!(), [e.ebx as u64, 0, 0, 0], format_args!("{why}"))
            }
        };
        if let Some(c) = info.cmdline {
            crate::guest_println!("cmdline {:?}", c.as_str());
        }
        if let Some(l) = info.loader {
            crate::guest_println!("boot loader {:?}", l.as_str());
        }
        if let Some((lower, upper)) = info.mem {
            crate::guest_println!("mem_lower {lower} KiB, mem_upper {upper} KiB");
        }
        for r in info.regions() {
            crate::guest_println!("map {:#x}..{:#x} type {}", r.start, r.start + r.len, r.kind);
        }
        for m in info.modules() {
            crate::guest_println!("module {:#x}..{:#x} {:?}", m.start, m.end, m.string.as_str());
        }
        let ram = crate::fwcfg::ram_size().unwrap_or(0);
        crate::guest_assert_eq!(ram, MEM_MIB << 20);
        let Some(rsdp) = crate::acpi::find_rsdp() else {
            crate::ucall::assert_fail(file!(), line!(), [0; 4], format_args!("no RSDP in the BIOS area"))
        };
        if let Some((bytes, len)) = info.rsdp {
            crate::guest_println!(
                "ACPI RSDP tag of {len} bytes, OEM {:?}",
                core::str::from_utf8(&bytes[9..15])
            );
        }
        if let Err(m) = verify(&info, ram, rsdp.addr, &Identity) {
            crate::ucall::assert_fail(file!(), line!(), [m.got, m.want, 0, 0], format_args!("{}", m.what));
        }
        let which = match version {
            Version::V1 => "multiboot v1",
            Version::V2 => "multiboot2",
        };
        crate::guest_println!(
            "{which}: magic, memory map, command line, modules and boot loader name as passed"
        );
        restart_once(e.ebx as u64, info.modules().next().map_or(0, |m| m.start));
    }

    /// CMOS NVRAM byte marking the first boot (the VM's RTC keeps it over a reset).
    const NVRAM_MARK: u8 = 0x41;
    const FIRST_BOOT: u8 = 0xB2;
    static RAM_MARK: AtomicU32 = AtomicU32::new(7);

    /// The first boot spoils its boot information and first module, marks CMOS and RAM and
    /// resets the VM (port 0xCF9; `on_reset=restart` is the default): the checks then pass
    /// again only if the restart loaded the kernel, its modules and the boot information
    /// anew. The second boot clears the mark and ends.
    fn restart_once(info: u64, module: u64) {
        crate::guest_assert!(
            RAM_MARK.load(Ordering::SeqCst) == 7,
            "the kernel's data survived the reset: it was not loaded again"
        );
        if crate::cmos::read(NVRAM_MARK) != FIRST_BOOT {
            crate::guest_println!("first boot: spoiling the boot information and module 0, then a reset");
            crate::cmos::write(NVRAM_MARK, FIRST_BOOT);
            RAM_MARK.store(0xDEAD, Ordering::SeqCst);
            crate::hw::mmio_write32(info, 0xFFFF_FFFF);
            crate::hw::mmio_write32(module, !crate::hw::mmio_read32(module));
            crate::power::reset_cf9();
            crate::power::expect_stopped("the reset")
        }
        crate::cmos::write(NVRAM_MARK, 0);
        crate::guest_println!("second boot: kernel, modules and boot information loaded again");
    }
}

/// A multiboot test kernel's 32-bit entry, long-mode switch and panic handler:
/// `multiboot_kernel!(Version::V1)`. The bin supplies its header in section
/// `.multiboot_header` (`multiboot.ld` puts it first). On the host: a `main` stub.
#[macro_export]
macro_rules! multiboot_kernel {
    ($version:expr) => {
        #[cfg(target_os = "none")]
        ::core::arch::global_asm!(
            ".pushsection .bss.basalt_mbk_stack, \"aw\", @nobits",
            ".balign 16",
            ".skip 65536",
            "basalt_mbk_stack_top:",
            ".popsection",
            ".pushsection .rodata.basalt_mbk, \"a\"",
            ".balign 8",
            "basalt_mbk_gdt:",
            ".quad 0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF",
            "basalt_mbk_gdtr:",
            ".word 3 * 8 - 1",
            ".long basalt_mbk_gdt",
            ".popsection",
            ".pushsection .text.basalt_mbk_entry, \"ax\"",
            ".code32",
            ".global basalt_mbk_entry",
            "basalt_mbk_entry:",
            "cli",
            "cld",
            "movl %eax, {eax}",
            "movl %ebx, {ebx}",
            "movl $basalt_mbk_stack_top, %esp",
            "pushfl",
            "popl %eax",
            "movl %eax, {eflags}",
            "movl %cr0, %eax",
            "movl %eax, {cr0}",
            // PML4[0] -> PDPT, PDPT[0] -> PD, PD: 512 2 MiB pages over [0, 1 GiB).
            "movl ${tables}, %edi",
            "leal 4096 + 3(%edi), %eax",
            "movl %eax, (%edi)",
            "leal 8192 + 3(%edi), %eax",
            "movl %eax, 4096(%edi)",
            "addl $8192, %edi",
            "movl $0x83, %eax",
            "xorl %ecx, %ecx",
            "1:",
            "movl %eax, (%edi,%ecx,8)",
            "addl $0x200000, %eax",
            "incl %ecx",
            "cmpl $512, %ecx",
            "jb 1b",
            "movl $0x620, %eax", // PAE | OSFXSR | OSXMMEXCPT
            "movl %eax, %cr4",
            "movl ${tables}, %eax",
            "movl %eax, %cr3",
            "movl $0xC0000080, %ecx",
            "rdmsr",
            "orl $0x900, %eax", // LME | NXE
            "wrmsr",
            "movl $0x80010033, %eax", // PE | MP | ET | NE | WP | PG
            "movl %eax, %cr0",
            "lgdtl basalt_mbk_gdtr",
            "ljmpl $0x08, $basalt_mbk_long",
            ".code64",
            "basalt_mbk_long:",
            "movl $0x10, %eax",
            "movw %ax, %ds",
            "movw %ax, %es",
            "movw %ax, %fs",
            "movw %ax, %gs",
            "movw %ax, %ss",
            "leaq basalt_mbk_stack_top(%rip), %rsp",
            "xorl %ebp, %ebp",
            "call {main}",
            "ud2",
            ".popsection",
            eax = sym $crate::mbkernel::ENTRY_EAX,
            ebx = sym $crate::mbkernel::ENTRY_EBX,
            cr0 = sym $crate::mbkernel::ENTRY_CR0,
            eflags = sym $crate::mbkernel::ENTRY_EFLAGS,
            tables = sym $crate::mbkernel::BOOT_TABLES,
            main = sym __basalt_mbk_main,
            options(att_syntax),
        );

        #[cfg(target_os = "none")]
        extern "C" fn __basalt_mbk_main() -> ! {
            $crate::mbkernel::run($version);
            $crate::ucall::done()
        }

        $crate::panic_handler!();

        #[cfg(not(target_os = "none"))]
        fn main() {
            // The kernel only runs in a Basalt VM; on the host this bin only has to build.
            let _ = $version;
        }
    };
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use basalt_loader::memmap::{MemKind, MemRange};
    use basalt_loader::multiboot::{self, build::*, BootInfoRequest, Module};
    use std::vec;
    use std::vec::Vec;

    const RAM: u64 = MEM_MIB << 20;
    const RSDP_AT: u64 = 0xE0000;

    /// A VM's RAM as a buffer.
    struct Buf(Vec<u8>);

    impl Phys for Buf {
        fn read(&self, addr: u64, out: &mut [u8]) -> bool {
            match self.0.get(addr as usize..addr as usize + out.len()) {
                Some(s) => {
                    out.copy_from_slice(s);
                    true
                }
                None => false,
            }
        }
    }

    /// What Basalt builds (hypervisor/src/vm/multiboot.rs), with the loader crate, for a
    /// kernel of `version`: returns the RAM and the boot information's address.
    fn boot(version: Version, cmdline: &str, strings: [&str; 2]) -> (Buf, u64) {
        let mut img = elf(false, 0x10_0000, &[(0x10_0000, 0x10_0000, &[0x90; 64], 0x1_0000)]);
        match version {
            Version::V1 => v1_header(&mut img, 0x200, V1_FLAGS, None),
            Version::V2 => {
                v2_header(&mut img, 0x400, &[v2_tag(1, 0, &u32s(&[1, 2, 3, 4, 6, 15])), v2_tag(6, 0, &[])])
            }
        }
        let map = [
            MemRange::new(0, RAM, MemKind::Ram),
            MemRange::new(BIOS_AREA.0, BIOS_AREA.1 - BIOS_AREA.0, MemKind::Reserved),
            MemRange::new(RSDP_AT, 0x1000, MemKind::Acpi),
        ];
        let plan = multiboot::plan(&img, &map).unwrap();
        let mut ram = vec![0u8; RAM as usize];
        let mut rsdp = [0u8; 36];
        rsdp[..8].copy_from_slice(b"RSD PTR ");
        rsdp[9..15].copy_from_slice(b"BASALT");
        ram[RSDP_AT as usize..RSDP_AT as usize + 36].copy_from_slice(&rsdp);
        let mut mods: Vec<Module<'_>> = MODULES
            .iter()
            .zip(strings)
            .map(|(m, s)| Module { start: 0, len: m.len as u64, cmdline: s })
            .collect();
        let req = BootInfoRequest {
            memory_map: &map,
            cmdline,
            modules: &mods,
            boot_loader_name: "Basalt",
            acpi_rsdp: Some(&rsdp),
        };
        let len = plan.info_len(&req).unwrap();
        let lens: Vec<u64> = mods.iter().map(|m| m.len).collect();
        let lay = plan.place(&map, &lens, len).unwrap();
        for (m, at) in mods.iter_mut().zip(&lay.modules) {
            m.start = *at;
        }
        for (i, m) in mods.iter().enumerate() {
            for k in 0..m.len as usize {
                ram[m.start as usize + k] = module_byte(i, k);
            }
        }
        let req = BootInfoRequest {
            memory_map: &map,
            cmdline,
            modules: &mods,
            boot_loader_name: "Basalt",
            acpi_rsdp: Some(&rsdp),
        };
        let info = plan.boot_info(lay.info_addr, &req).unwrap();
        ram[lay.info_addr as usize..lay.info_addr as usize + info.len()].copy_from_slice(&info);
        (Buf(ram), lay.info_addr)
    }

    fn parse(version: Version, p: &Buf, at: u64) -> BootInfo {
        match version {
            Version::V1 => parse_v1(p, at).unwrap(),
            Version::V2 => parse_v2(p, at).unwrap(),
        }
    }

    #[test]
    fn what_basalt_builds_passes_both_versions() {
        for v in [Version::V1, Version::V2] {
            let (ram, at) = boot(v, CMDLINE, [MODULES[0].string, MODULES[1].string]);
            let info = parse(v, &ram, at);
            assert_eq!(info.cmdline.unwrap().as_str(), CMDLINE);
            assert_eq!(info.regions().len(), 5);
            assert_eq!(info.module_count, 2);
            assert_eq!(verify(&info, RAM, RSDP_AT, &ram), Ok(()), "{v:?}");
        }
    }

    #[test]
    fn each_difference_is_caught() {
        for v in [Version::V1, Version::V2] {
            let (ram, at) = boot(v, "mb.test=1 hello", [MODULES[0].string, MODULES[1].string]);
            let e = verify(&parse(v, &ram, at), RAM, RSDP_AT, &ram).unwrap_err();
            assert_eq!(e.what, "the command line is the one passed (length)");
            let (ram, at) = boot(v, CMDLINE, [MODULES[0].string, "beta two"]);
            let e = verify(&parse(v, &ram, at), RAM, RSDP_AT, &ram).unwrap_err();
            assert_eq!((e.what, e.got), ("module string as passed (module index)", 1));
            let (mut ram, at) = boot(v, CMDLINE, [MODULES[0].string, MODULES[1].string]);
            let m = parse(v, &ram, at).modules[1].unwrap();
            ram.0[m.start as usize + 4999] ^= 1;
            let e = verify(&parse(v, &ram, at), RAM, RSDP_AT, &ram).unwrap_err();
            assert_eq!(e.what, "module byte (value)");
            let e = verify(&parse(v, &ram, at), RAM + (2 << 20), RSDP_AT, &ram).unwrap_err();
            assert_eq!(e.what, "mem_upper (KiB)");
            let e = verify(&parse(v, &ram, at), RAM, 0x9000, &ram).unwrap_err();
            assert_eq!(e.what, "an ACPI (type 3) entry holding the RSDP (RSDP)");
        }
    }

    #[test]
    fn module_words_and_contents() {
        for m in MODULES {
            let words: Vec<&str> =
                m.words_before.split_whitespace().chain(m.words_after.split_whitespace()).collect();
            assert_eq!(words.join(" "), m.string);
            assert!(m.len > 8);
        }
        assert_eq!((module_byte(0, 0), module_byte(1, 7)), (b'B', b'B'));
        assert_eq!(V1_MAGIC.wrapping_add(V1_FLAGS).wrapping_add(V1_CHECKSUM), 0);
        assert!(!CMDLINE.contains(['"', '\'', ',', '\\', '$']) && CMDLINE.contains(' '));
    }

    #[test]
    fn broken_structures_are_errors() {
        let (ram, at) = boot(Version::V2, CMDLINE, [MODULES[0].string, MODULES[1].string]);
        assert!(parse_v2(&ram, at + 4).is_err());
        let mut cut = ram.0.clone();
        cut[at as usize..at as usize + 4].copy_from_slice(&16u32.to_le_bytes());
        assert!(parse_v2(&Buf(cut), at).is_err());
        assert!(parse_v1(&Buf(vec![0xFF; 8]), 0).is_err());
    }
}
