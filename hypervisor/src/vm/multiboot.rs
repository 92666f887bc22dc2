//! Booting a multiboot v1 (0.6.96) or Multiboot2 kernel as the specifications define: the
//! loader crate plans the kernel's segments (ELF32, ELF64 or the a.out kludge), places its
//! modules and the boot information structure in the VM's RAM and builds that structure
//! (memory sizes and map, command line, modules with their strings, boot loader name, and for
//! v2 the ACPI RSDP); this module copies the pieces in and returns the start state:
//! 32-bit protected mode, paging off, EAX = the boot loader's magic, EBX = the boot
//! information's guest-physical address ([`InitialState::protected_mode`]).
//!
//! The memory map is the one Linux's E820 gets (vm/linux.rs: RAM, the BIOS area
//! 0x9F000..0x100000 reserved) with the ACPI tables' place marked ACPI (type 3) inside it.

use super::memory::GuestMemory;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use basalt_arch::virt::InitialState;
use basalt_loader::memmap::{MemKind, MemRange};
use basalt_loader::multiboot::{self, BootInfoRequest, Format, Module, Version};

/// The boot loader name the kernel gets.
pub const BOOT_LOADER_NAME: &str = "Basalt";

/// A boot module for the kernel: its bytes and its string (see `config::module_string`).
#[derive(Debug, Clone, Copy)]
pub struct BootModule<'a> {
    pub bytes: &'a [u8],
    pub string: &'a str,
}

/// The VM's ACPI tables: where they are (for the memory map) and the RSDP's bytes (for the
/// Multiboot2 ACPI tag).
#[derive(Debug, Clone, Copy)]
pub struct AcpiPlace<'a> {
    pub base: u64,
    pub len: u64,
    pub rsdp: &'a [u8],
}

/// What was loaded: vCPU 0's first state and one line saying what it is.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub state: InitialState,
    pub summary: String,
}

/// The guest's physical memory map: RAM below `mem_bytes`, the BIOS area reserved, the ACPI
/// tables ACPI (the loader crate gives each byte the strongest kind that covers it).
pub fn memory_map(mem_bytes: u64, acpi: &AcpiPlace<'_>) -> Vec<MemRange> {
    let mut map = super::linux::memory_map(mem_bytes);
    map.push(MemRange::new(acpi.base, acpi.len, MemKind::Acpi));
    map
}

/// Load the multiboot kernel `image` with `cmdline` and `modules` into `mem`.
pub fn load(
    mem: &GuestMemory,
    image: &[u8],
    cmdline: &str,
    modules: &[BootModule<'_>],
    acpi: &AcpiPlace<'_>,
) -> Result<Loaded, String> {
    let refused = |e: basalt_loader::LoadError| format!("multiboot image: {e}");
    let map = memory_map(mem.size(), acpi);
    let plan = multiboot::plan(image, &map).map_err(refused)?;
    let mut mods: Vec<Module<'_>> =
        modules.iter().map(|m| Module { start: 0, len: m.bytes.len() as u64, cmdline: m.string }).collect();
    let first = BootInfoRequest {
        memory_map: &map,
        cmdline,
        modules: &mods,
        boot_loader_name: BOOT_LOADER_NAME,
        acpi_rsdp: Some(acpi.rsdp),
    };
    let info_len = plan.info_len(&first).map_err(refused)?;
    let lens: Vec<u64> = mods.iter().map(|m| m.len).collect();
    let layout = plan.place(&map, &lens, info_len).map_err(refused)?;
    for (m, at) in mods.iter_mut().zip(&layout.modules) {
        m.start = *at;
    }
    let request = BootInfoRequest {
        memory_map: &map,
        cmdline,
        modules: &mods,
        boot_loader_name: BOOT_LOADER_NAME,
        acpi_rsdp: Some(acpi.rsdp),
    };
    let info = plan.boot_info(layout.info_addr, &request).map_err(refused)?;

    let oops = |what: &str| format!("multiboot image: the {what} does not fit in the VM's RAM");
    for s in &plan.segments {
        mem.write(s.addr, &image[s.file.clone()]).map_err(|_| oops("kernel"))?;
        mem.zero(s.addr + s.file.len() as u64, s.zero_len).map_err(|_| oops("kernel"))?;
    }
    for (m, module) in mods.iter().zip(modules) {
        mem.write(m.start, module.bytes).map_err(|_| oops("module"))?;
    }
    mem.write(layout.info_addr, &info).map_err(|_| oops("boot information"))?;

    let version = match plan.version {
        Version::V1 => "multiboot v1",
        Version::V2 => "multiboot2",
    };
    let format = match plan.format {
        Format::Elf32 => "ELF32",
        Format::Elf64 => "ELF64",
        Format::AoutKludge => "a.out kludge",
    };
    let summary = format!(
        "{version} kernel ({format}, {} segment(s)), entry {:#x}, boot information at {:#x}, {} module(s)",
        plan.segments.len(),
        plan.entry,
        layout.info_addr,
        mods.len()
    );
    Ok(Loaded {
        state: InitialState::protected_mode(plan.entry, plan.magic, layout.info_addr as u32),
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::memory::tests::host_backed;
    use alloc::vec;
    use basalt_loader::multiboot::build::*;

    const MEM: u64 = 16 << 20;
    const RSDP: [u8; 36] = [0x52; 36];

    fn acpi() -> AcpiPlace<'static> {
        AcpiPlace { base: 0xE0000, len: 0x1234, rsdp: &RSDP }
    }

    fn r32(mem: &GuestMemory, gpa: u64) -> u32 {
        mem.read_u32(gpa).unwrap()
    }

    fn cstr(mem: &GuestMemory, gpa: u64) -> String {
        let mut out = Vec::new();
        let mut b = [0u8];
        for a in gpa.. {
            mem.read(a, &mut b).unwrap();
            if b[0] == 0 {
                break;
            }
            out.push(b[0]);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_map_is_linuxs_with_the_acpi_tables() {
        let m = basalt_loader::memmap::normalise(&memory_map(MEM, &acpi())).unwrap();
        let kinds: Vec<(u64, u64, MemKind)> = m.iter().map(|r| (r.start, r.len, r.kind)).collect();
        assert_eq!(
            kinds,
            [
                (0, 0x9F000, MemKind::Ram),
                (0x9F000, 0xE0000 - 0x9F000, MemKind::Reserved),
                (0xE0000, 0x1234, MemKind::Acpi),
                (0xE1234, 0x100000 - 0xE1234, MemKind::Reserved),
                (0x100000, MEM - 0x100000, MemKind::Ram),
            ]
        );
    }

    #[test]
    fn a_v1_elf32_kernel_gets_its_segments_modules_and_boot_information() {
        let mut img = elf(false, 0x10_0010, &[(0x10_0000, 0x10_0000, &[0x90; 64], 0x2000)]);
        v1_header(&mut img, 0x200, multiboot::V1_PAGE_ALIGN | multiboot::V1_MEMORY_INFO, None);
        let mut ram = vec![0xAAu8; MEM as usize];
        let mem = host_backed(&mut ram, 0);
        let a = [7u8; 100];
        let b: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let modules = [BootModule { bytes: &a, string: "alpha one" }, BootModule { bytes: &b, string: "" }];
        let loaded = load(&mem, &img, "the kernel's words", &modules, &acpi()).unwrap();
        let s = loaded.state;
        assert_eq!((s.rip, s.gprs.rax, s.cr0, s.efer), (0x10_0010, 0x2BAD_B002, 0x31, 0));
        assert!(loaded.summary.starts_with("multiboot v1 kernel (ELF32, 1 segment(s)), entry 0x100010"));
        // The segment and its zeroed bss.
        assert_eq!(mem.read_u64(0x10_0000).unwrap(), 0x9090_9090_9090_9090);
        assert_eq!(mem.read_u64(0x10_2038).unwrap(), 0);
        let info = s.gprs.rbx;
        assert_eq!(r32(&mem, info), 1 | 4 | 8 | 64 | 512, "mem, cmdline, mods, mmap, boot loader name");
        assert_eq!((r32(&mem, info + 4), r32(&mem, info + 8)), (636, (15 << 10)));
        assert_eq!(cstr(&mem, r32(&mem, info + 16) as u64), "the kernel's words");
        assert_eq!(cstr(&mem, r32(&mem, info + 64) as u64), "Basalt");
        assert_eq!(r32(&mem, info + 20), 2);
        let mods = r32(&mem, info + 24) as u64;
        let (start, end) = (r32(&mem, mods) as u64, r32(&mem, mods + 4) as u64);
        assert_eq!((start % 4096, end - start), (0, 100));
        assert!(start >= 0x10_2040, "after the kernel's bss");
        assert_eq!(cstr(&mem, r32(&mem, mods + 8) as u64), "alpha one");
        let mut got = vec![0u8; 5000];
        mem.read(r32(&mem, mods + 16) as u64, &mut got).unwrap();
        assert_eq!(got, b);
        assert_eq!(cstr(&mem, r32(&mem, mods + 24) as u64), "");
        // Five map entries of 24 bytes; the usable RAM is all but the BIOS area.
        assert_eq!(r32(&mem, info + 44), 5 * 24);
        let mmap = r32(&mem, info + 48) as u64;
        let usable: u64 = (0..5)
            .filter(|i| r32(&mem, mmap + 24 * i + 20) == 1)
            .map(|i| mem.read_u64(mmap + 24 * i + 12).unwrap())
            .sum();
        assert_eq!(usable, MEM - (0x10_0000 - 0x9F000));
        // Loading again (a restart) gives the same.
        let again = load(&mem, &img, "the kernel's words", &modules, &acpi()).unwrap();
        assert_eq!(again.state, s);
    }

    #[test]
    fn a_v2_elf64_kernel_gets_the_rsdp() {
        let mut img = elf(true, 0x20_0000, &[(0x20_0000, 0x20_0000, &[0xF4; 32], 0)]);
        v2_header(&mut img, 0x400, &[v2_tag(1, 0, &u32s(&[1, 2, 3, 4, 6, 15])), v2_tag(6, 0, &[])]);
        let mut ram = vec![0u8; MEM as usize];
        let mem = host_backed(&mut ram, 0);
        let m = [BootModule { bytes: b"module", string: "m" }];
        let s = load(&mem, &img, "a b", &m, &acpi()).unwrap().state;
        assert_eq!((s.rip, s.gprs.rax), (0x20_0000, 0x36D7_6289));
        let info = s.gprs.rbx;
        assert_eq!(info % 8, 0);
        let total = r32(&mem, info) as u64;
        let mut at = info + 8;
        let mut seen = Vec::new();
        while r32(&mem, at) != 0 {
            let (ty, size) = (r32(&mem, at), r32(&mem, at + 4) as u64);
            seen.push(ty);
            match ty {
                1 => assert_eq!(cstr(&mem, at + 8), "a b"),
                2 => assert_eq!(cstr(&mem, at + 8), "Basalt"),
                3 => assert_eq!(cstr(&mem, at + 16), "m"),
                4 => assert_eq!((r32(&mem, at + 8), r32(&mem, at + 12)), (636, 15 << 10)),
                15 => {
                    let mut rsdp = [0u8; 36];
                    mem.read(at + 8, &mut rsdp).unwrap();
                    assert_eq!(rsdp, RSDP);
                }
                _ => {}
            }
            at = (at + size).next_multiple_of(8);
        }
        assert_eq!(at + 8, info + total);
        assert_eq!(seen, [1, 2, 3, 4, 6, 15]);
    }

    #[test]
    fn refusals_say_multiboot() {
        let mut img = elf(false, 0x10_0000, &[(0x10_0000, 0x10_0000, &[0x90; 16], 0)]);
        v1_header(&mut img, 0x200, 1 << 2, None);
        let mut ram = vec![0u8; 4 << 20];
        let mem = host_backed(&mut ram, 0);
        let e = load(&mem, &img, "", &[], &acpi()).unwrap_err();
        assert!(e.starts_with("multiboot image: ") && e.contains("video mode"), "{e}");
        let big = vec![0u8; 8 << 20];
        let mut img = elf(false, 0x10_0000, &[(0x10_0000, 0x10_0000, &[0x90; 16], 0)]);
        v1_header(&mut img, 0x200, 0, None);
        let e = load(&mem, &img, "", &[BootModule { bytes: &big, string: "" }], &acpi()).unwrap_err();
        assert!(e.contains("no room for the module"), "{e}");
    }
}
