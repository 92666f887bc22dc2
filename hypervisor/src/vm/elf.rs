//! A minimal ELF64 reader for guest images: the PT_LOAD segments and the entry point
//! (System V gABI, "Program Header"). Every offset and size is checked against the image; a
//! malformed image is an error, never an out-of-bounds read.

use alloc::vec::Vec;

/// One segment to copy into guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical load address (p_paddr).
    pub paddr: u64,
    /// Byte range of the file contents inside the image.
    pub file_offset: usize,
    pub file_size: usize,
    /// Size in memory; the part past `file_size` is zero (.bss).
    pub mem_size: u64,
}

/// A parsed guest image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImage {
    pub entry: u64,
    pub segments: Vec<Segment>,
}

/// Why an image was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfError {
    NotElf64,
    NotX86_64,
    Truncated(&'static str),
    NoLoadableSegment,
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ElfError::NotElf64 => write!(f, "not a little-endian ELF64 file"),
            ElfError::NotX86_64 => write!(f, "not an x86_64 ELF file"),
            ElfError::Truncated(what) => write!(f, "ELF file truncated ({what} outside the file)"),
            ElfError::NoLoadableSegment => write!(f, "ELF file has no loadable segment"),
        }
    }
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

const PT_LOAD: u32 = 1;

impl GuestImage {
    pub fn parse(image: &[u8]) -> Result<GuestImage, ElfError> {
        if image.get(0..4) != Some(b"\x7fELF") || image.get(4) != Some(&2) || image.get(5) != Some(&1) {
            return Err(ElfError::NotElf64);
        }
        if u16_at(image, 18) != Some(62) {
            return Err(ElfError::NotX86_64);
        }
        let entry = u64_at(image, 24).ok_or(ElfError::Truncated("header"))?;
        let phoff = u64_at(image, 32).ok_or(ElfError::Truncated("header"))? as usize;
        let phentsize = u16_at(image, 54).ok_or(ElfError::Truncated("header"))? as usize;
        let phnum = u16_at(image, 56).ok_or(ElfError::Truncated("header"))? as usize;
        if phentsize < 56 {
            return Err(ElfError::Truncated("program header entry size"));
        }
        let mut segments = Vec::new();
        for i in 0..phnum {
            let ph = phoff.checked_add(i * phentsize).ok_or(ElfError::Truncated("program header"))?;
            let field = |o: usize| u64_at(image, ph + o).ok_or(ElfError::Truncated("program header"));
            if u32_at(image, ph).ok_or(ElfError::Truncated("program header"))? != PT_LOAD {
                continue;
            }
            let (offset, paddr, file_size, mem_size) = (field(8)?, field(24)?, field(32)?, field(40)?);
            let end = offset.checked_add(file_size).ok_or(ElfError::Truncated("segment"))?;
            if end > image.len() as u64 || file_size > mem_size {
                return Err(ElfError::Truncated("segment"));
            }
            if mem_size == 0 {
                continue;
            }
            segments.push(Segment {
                paddr,
                file_offset: offset as usize,
                file_size: file_size as usize,
                mem_size,
            });
        }
        if segments.is_empty() {
            return Err(ElfError::NoLoadableSegment);
        }
        Ok(GuestImage { entry, segments })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec;

    /// A one-segment ELF64 image: `code` loaded at `paddr` with `bss` zero bytes after it.
    pub(crate) fn tiny_elf(paddr: u64, entry: u64, code: &[u8], bss: u64) -> Vec<u8> {
        let mut f = vec![0u8; 0x78];
        f[0..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes());
        f[18..20].copy_from_slice(&62u16.to_le_bytes());
        f[24..32].copy_from_slice(&entry.to_le_bytes());
        f[32..40].copy_from_slice(&0x40u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = 0x40;
        f[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        f[ph + 8..ph + 16].copy_from_slice(&0x78u64.to_le_bytes());
        f[ph + 16..ph + 24].copy_from_slice(&paddr.to_le_bytes());
        f[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
        f[ph + 32..ph + 40].copy_from_slice(&(code.len() as u64).to_le_bytes());
        f[ph + 40..ph + 48].copy_from_slice(&(code.len() as u64 + bss).to_le_bytes());
        f.extend_from_slice(code);
        f
    }

    #[test]
    fn parses_segments_and_entry() {
        let img = tiny_elf(0x10_0000, 0x10_0004, &[0x90, 0x90, 0xf4], 16);
        let g = GuestImage::parse(&img).unwrap();
        assert_eq!(g.entry, 0x10_0004);
        assert_eq!(
            g.segments,
            vec![Segment { paddr: 0x10_0000, file_offset: 0x78, file_size: 3, mem_size: 19 }]
        );
    }

    #[test]
    fn malformed_images_are_refused() {
        assert_eq!(GuestImage::parse(b"MZ\x90\x00"), Err(ElfError::NotElf64));
        let mut img = tiny_elf(0x10_0000, 0x10_0000, &[0xf4], 0);
        img[18] = 3;
        assert_eq!(GuestImage::parse(&img), Err(ElfError::NotX86_64));
        let img = tiny_elf(0x10_0000, 0x10_0000, &[0xf4], 0);
        assert_eq!(GuestImage::parse(&img[..0x79 - 1]), Err(ElfError::Truncated("segment")));
        assert!(GuestImage::parse(&img[..0x50]).is_err());
        let mut img = tiny_elf(0x10_0000, 0x10_0000, &[0xf4], 0);
        img[0x40] = 2; // PT_DYNAMIC: nothing loadable left
        assert_eq!(GuestImage::parse(&img), Err(ElfError::NoLoadableSegment));
    }
}
