//! Booting an unmodified Linux bzImage through its 64-bit boot protocol
//! (Documentation/arch/x86/boot.rst): the loader crate plans where the kernel, the zero page,
//! the command line and the initrd go in the VM's RAM and fills in `boot_params` with the E820
//! map and the RSDP's address; this module copies the pieces in and builds what the protocol
//! asks of the CPU at entry: 64-bit mode, an identity map of what was loaded, a GDT with flat
//! `__BOOT_CS` (0x10) and `__BOOT_DS` (0x18), interrupts off and RSI at the zero page.

use super::memory::GuestMemory;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use basalt_arch::virt::{DescriptorTable, InitialState, Segment};
use basalt_loader::bzimage::{self, LinuxRequest};
use basalt_loader::memmap::{MemKind, MemRange};

/// The boot structures (placed by the plan, page aligned): GDT page, PML4, PDPT and four page
/// directories mapping the first 4 GiB with 2 MiB pages.
const BOOT_STRUCTURES_LEN: u64 = 7 * 4096;
/// The legacy BIOS area, reserved in the E820 map (the ACPI tables sit at 0xE0000 in it).
const BIOS_AREA: (u64, u64) = (0x9_F000, 0x10_0000);

/// The guest's physical memory map: RAM below `mem_bytes` but the BIOS area; the ACPI tables
/// are inside that area (Linux finds them through `acpi_rsdp_addr` or the BIOS-area scan).
pub fn memory_map(mem_bytes: u64) -> alloc::vec::Vec<MemRange> {
    vec![
        MemRange::new(0, mem_bytes, MemKind::Ram),
        MemRange::new(BIOS_AREA.0, BIOS_AREA.1 - BIOS_AREA.0, MemKind::Reserved),
    ]
}

/// Load `kernel` (with `initrd` and `cmdline`) into `mem` and return vCPU 0's first state.
pub fn load(
    mem: &GuestMemory,
    kernel: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
    rsdp: u64,
) -> Result<InitialState, String> {
    let mut map = memory_map(mem.size());
    // The PCI ECAM window the MCFG describes, reserved in E820 as firmware does: Linux then
    // takes MMCONFIG at once (otherwise "PCI: not using MMCONFIG" until the DSDT is read).
    let ecam = basalt_devices::pci::EcamWindow::default();
    map.push(MemRange::new(ecam.base, ecam.len(), MemKind::Reserved));
    let plan = bzimage::plan(
        kernel,
        &LinuxRequest {
            memory_map: &map,
            cmdline,
            initrd_len: initrd.map_or(0, |i| i.len() as u64),
            acpi_rsdp_addr: Some(rsdp),
            boot_structures_len: BOOT_STRUCTURES_LEN,
        },
    )
    .map_err(|e| format!("Linux image: {e}"))?;
    let oops = |what: &str| format!("Linux image: the {what} does not fit in the VM's RAM");
    mem.write(plan.kernel.start, &kernel[plan.kernel_file.clone()]).map_err(|_| oops("kernel"))?;
    mem.write(plan.boot_params_addr, &plan.boot_params).map_err(|_| oops("zero page"))?;
    mem.write(plan.cmdline_addr, &plan.cmdline).map_err(|_| oops("command line"))?;
    if let (Some(bytes), Some(at)) = (initrd, plan.initrd) {
        mem.write(at.start, bytes).map_err(|_| oops("initrd"))?;
    }
    let at =
        plan.boot_structures.ok_or_else(|| String::from("Linux image: no room for the boot structures"))?;
    let (gdt, pml4, pdpt, pd) = (at.start, at.start + 0x1000, at.start + 0x2000, at.start + 0x3000);
    // null, null, __BOOT_CS (0x10: 64-bit code), __BOOT_DS (0x18: flat data).
    for (i, d) in [0u64, 0, 0x00AF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF].iter().enumerate() {
        mem.write_u64(gdt + 8 * i as u64, *d).map_err(|_| oops("GDT"))?;
    }
    mem.zero(pml4, 6 * 4096).map_err(|_| oops("page tables"))?;
    mem.write_u64(pml4, pdpt | 0x3).map_err(|_| oops("page tables"))?;
    for g in 0..4u64 {
        mem.write_u64(pdpt + 8 * g, (pd + g * 4096) | 0x3).map_err(|_| oops("page tables"))?;
        for i in 0..512u64 {
            let phys = (g << 30) | (i << 21);
            mem.write_u64(pd + g * 4096 + 8 * i, phys | 0x83).map_err(|_| oops("page tables"))?;
        }
    }
    let mut s =
        InitialState::long_mode(plan.entry64, 0, pml4, DescriptorTable { base: gdt, limit: 4 * 8 - 1 });
    s.cs = Segment::code64(0x10);
    for seg in [&mut s.ds, &mut s.es, &mut s.ss, &mut s.fs, &mut s.gs] {
        *seg = Segment::data(0x18);
    }
    s.gprs.rsi = plan.boot_params_addr;
    Ok(s)
}
