//! Putting a guest image into a fresh VM's RAM and choosing the vCPU's first state, as the guest
//! boot ABI in `tests/src/lib.rs` describes.

use super::config::StartMode;
use super::memory::GuestMemory;
use alloc::format;
use alloc::string::String;
use basalt_arch::virt::{DescriptorTable, InitialState};
use basalt_boot::elf::ElfImage;

/// Guest-physical layout of the structures Basalt builds for a 64-bit guest.
pub const GDT_GPA: u64 = 0x500;
pub const PML4_GPA: u64 = 0x1000;
pub const PDPT_GPA: u64 = 0x2000;
pub const PD_GPA: u64 = 0x3000;
pub const STACK_TOP_GPA: u64 = 0x8_0000;
/// Real-mode guests start with this stack pointer.
pub const REAL_MODE_SP: u16 = 0x7000;
/// Guest images may not load below this address (Basalt's structures live there).
pub const LOAD_FLOOR: u64 = 0x8000;

/// Copy the image's segments into guest RAM and return the vCPU's first state.
pub fn load(mem: &GuestMemory, image_bytes: &[u8], mode: StartMode) -> Result<InitialState, String> {
    let image = ElfImage::parse(image_bytes).map_err(|e| format!("guest image: {e}"))?;
    for s in image.segments() {
        let end = s.end();
        if s.paddr < LOAD_FLOOR || !mem.contains(s.paddr) || !mem.contains(end - 1) {
            return Err(format!(
                "guest image segment {:#x}..{:#x} is outside guest RAM {:#x}..{:#x}",
                s.paddr,
                end,
                LOAD_FLOOR,
                mem.size()
            ));
        }
        mem.write(s.paddr, image.file_bytes(&s)).map_err(|e| format!("{e}"))?;
        mem.zero(s.paddr + s.file_size, s.mem_size - s.file_size).map_err(|e| format!("{e}"))?;
    }
    match mode {
        StartMode::Long => {
            build_long_mode_structures(mem).map_err(|e| format!("{e}"))?;
            let gdtr = DescriptorTable { base: GDT_GPA, limit: 3 * 8 - 1 };
            Ok(InitialState::long_mode(image.entry, STACK_TOP_GPA, PML4_GPA, gdtr))
        }
        StartMode::Real => {
            if image.entry > 0xFFFF {
                return Err(format!("real-mode entry {:#x} is not below 64 KiB", image.entry));
            }
            Ok(InitialState::real_mode(0, image.entry as u16, REAL_MODE_SP))
        }
    }
}

/// The GDT and identity page tables of the guest boot ABI: guest-virtual [0, 1 GiB) -> the
/// same guest-physical addresses, 2 MiB pages, present/writable.
fn build_long_mode_structures(mem: &GuestMemory) -> Result<(), super::memory::OutOfRange> {
    // null, 64-bit code (0x08), data (0x10)
    for (i, d) in [0u64, 0x00AF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF].iter().enumerate() {
        mem.write_u64(GDT_GPA + 8 * i as u64, *d)?;
    }
    mem.zero(PML4_GPA, 3 * 4096)?;
    mem.write_u64(PML4_GPA, PDPT_GPA | 0x3)?;
    mem.write_u64(PDPT_GPA, PD_GPA | 0x3)?;
    for i in 0..512u64 {
        mem.write_u64(PD_GPA + 8 * i, (i << 21) | 0x83)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::memory::tests::host_backed;
    use alloc::vec;
    use alloc::vec::Vec;

    fn tiny_elf(paddr: u64, entry: u64, code: &[u8], bss: u64) -> Vec<u8> {
        let mut buf = vec![0u8; 256];
        let n = basalt_boot::elf::write_minimal(&mut buf, paddr, entry, code, bss);
        buf.truncate(n);
        buf
    }

    #[test]
    fn long_mode_guest_gets_its_image_tables_and_state() {
        let mut ram = vec![0xAAu8; 4 << 20];
        let mem = host_backed(&mut ram, 0);
        let img = tiny_elf(0x10_0000, 0x10_0000, &[0x0f, 0xa2, 0xf4], 4);
        let st = load(&mem, &img, StartMode::Long).unwrap();
        assert_eq!((st.rip, st.rsp, st.cr3), (0x10_0000, STACK_TOP_GPA, PML4_GPA));
        let mut code = [0u8; 8];
        mem.read(0x10_0000, &mut code).unwrap();
        assert_eq!(code, [0x0f, 0xa2, 0xf4, 0, 0, 0, 0, 0xAA], "bss zeroed, nothing past it touched");
        assert_eq!(mem.read_u64(PD_GPA + 8).unwrap(), 0x20_0083);
        assert_eq!(mem.read_u64(GDT_GPA + 8).unwrap(), 0x00AF_9A00_0000_FFFF);
        assert_eq!(st.efer & basalt_arch::virt::bits::EFER_LMA, basalt_arch::virt::bits::EFER_LMA);
    }

    #[test]
    fn images_outside_ram_or_over_our_structures_are_refused() {
        let mut ram = vec![0u8; 2 << 20];
        let mem = host_backed(&mut ram, 0);
        let beyond = tiny_elf(0x20_0000, 0x20_0000, &[0xf4], 0);
        assert!(load(&mem, &beyond, StartMode::Long).unwrap_err().contains("outside guest RAM"));
        let low = tiny_elf(0x1000, 0x1000, &[0xf4], 0);
        assert!(load(&mem, &low, StartMode::Long).unwrap_err().contains("outside guest RAM"));
        let high_entry = tiny_elf(0x10_0000, 0x10_0000, &[0xf4], 0);
        assert!(load(&mem, &high_entry, StartMode::Real).unwrap_err().contains("below 64 KiB"));
        let rm = tiny_elf(0x8000, 0x8000, &[0xf4], 0);
        let st = load(&mem, &rm, StartMode::Real).unwrap();
        assert_eq!((st.rip, st.rsp, st.cs.selector), (0x8000, REAL_MODE_SP as u64, 0));
    }
}
