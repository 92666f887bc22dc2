//! The kernel image as the loader needs it: the ELF64 reader shared with the VM core
//! (`basalt_boot::elf`), plus the loader's own rule that the kernel lies below 4 GiB, where
//! the multiboot-style boot page tables reach.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use basalt_boot::elf::ElfImage;
pub use basalt_boot::elf::Segment;

/// The kernel's loadable segments, lowest address first, each checked to lie below 4 GiB.
pub fn load_segments(elf: &[u8]) -> Result<Vec<Segment>, String> {
    let image = ElfImage::parse(elf).map_err(|e| format!("{e}"))?;
    let mut segments: Vec<Segment> = image.segments().collect();
    if let Some(i) = segments.iter().position(|s| s.end() > 1 << 32) {
        return Err(format!("segment {i} is not below 4 GiB"));
    }
    segments.sort_by_key(|s| s.paddr);
    Ok(segments)
}

/// The bytes of `seg` in the file (`seg` came from `load_segments` on the same file).
pub fn file_bytes<'a>(elf: &'a [u8], seg: &Segment) -> &'a [u8] {
    &elf[seg.offset as usize..(seg.offset + seg.file_size) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_segments_sorted_and_below_4_gib() {
        let mut buf = [0u8; 256];
        let n = basalt_boot::elf::write_minimal(&mut buf, 0x10_0000, 0x10_0000, &[0xf4; 8], 8);
        let segs = load_segments(&buf[..n]).unwrap();
        assert_eq!((segs.len(), segs[0].paddr, segs[0].mem_size), (1, 0x10_0000, 16));
        assert_eq!(file_bytes(&buf[..n], &segs[0]), &[0xf4; 8]);
        let n = basalt_boot::elf::write_minimal(&mut buf, 0xFFFF_F000, 0xFFFF_F000, &[0xf4; 8], 0x2000);
        assert!(load_segments(&buf[..n]).unwrap_err().contains("4 GiB"));
        assert!(load_segments(b"MZ").unwrap_err().contains("ELF64"));
    }
}
