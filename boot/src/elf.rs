//! Just enough ELF64 to load an image: the header's entry point and the PT_LOAD program
//! headers (System V ABI, ELF-64 Object File Format 1.5). One reader for every loader in
//! Basalt: the UEFI loader loading the kernel, the VM core loading guest images.
//!
//! Every offset and size is checked against the file when the image is parsed: a malformed
//! image is an error, never an out-of-bounds read. Nothing allocates.

const PT_LOAD: u32 = 1;
const EM_X86_64: u16 = 62;
const PHDR_SIZE: usize = 56;

/// One loadable segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Physical load address (p_paddr).
    pub paddr: u64,
    /// Offset of the file bytes in the image.
    pub offset: u64,
    pub file_size: u64,
    /// Size in memory; the bytes past `file_size` are zero (.bss).
    pub mem_size: u64,
}

impl Segment {
    /// One past the last byte in memory.
    pub fn end(&self) -> u64 {
        self.paddr + self.mem_size
    }
}

/// Why an image was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfError {
    NotElf64,
    NotX86_64,
    /// The header or the program header table runs past the end of the file.
    Truncated,
    /// Program header `n`'s bytes lie outside the file, or it is larger in the file than in memory.
    BadSegment(usize),
    /// Two loadable segments overlap in memory.
    Overlap,
    NoLoadableSegment,
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ElfError::NotElf64 => write!(f, "not a little-endian ELF64 file"),
            ElfError::NotX86_64 => write!(f, "not an x86_64 ELF file"),
            ElfError::Truncated => write!(f, "truncated ELF file (headers past its end)"),
            ElfError::BadSegment(n) => write!(f, "segment {n} does not fit the file"),
            ElfError::Overlap => write!(f, "loadable segments overlap"),
            ElfError::NoLoadableSegment => write!(f, "no loadable segment"),
        }
    }
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o.checked_add(2)?)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o.checked_add(4)?)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o.checked_add(8)?)?.try_into().ok()?))
}

/// A parsed, validated ELF64 image.
#[derive(Debug, Clone, Copy)]
pub struct ElfImage<'a> {
    bytes: &'a [u8],
    pub entry: u64,
    phoff: usize,
    phentsize: usize,
    phnum: usize,
}

impl<'a> ElfImage<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ElfError> {
        if bytes.get(0..4) != Some(b"\x7fELF".as_slice())
            || bytes.get(4) != Some(&2)
            || bytes.get(5) != Some(&1)
        {
            return Err(ElfError::NotElf64);
        }
        if u16_at(bytes, 18) != Some(EM_X86_64) {
            return Err(ElfError::NotX86_64);
        }
        let image = ElfImage {
            bytes,
            entry: u64_at(bytes, 24).ok_or(ElfError::Truncated)?,
            phoff: u64_at(bytes, 32).ok_or(ElfError::Truncated)? as usize,
            phentsize: u16_at(bytes, 54).ok_or(ElfError::Truncated)? as usize,
            phnum: u16_at(bytes, 56).ok_or(ElfError::Truncated)? as usize,
        };
        let table = image.phentsize.checked_mul(image.phnum).and_then(|n| n.checked_add(image.phoff));
        if image.phentsize < PHDR_SIZE || table.is_none_or(|end| end > bytes.len()) {
            return Err(ElfError::Truncated);
        }
        for i in 0..image.phnum {
            if let Some(s) = image.segment(i) {
                let in_file = s.offset.checked_add(s.file_size).is_some_and(|e| e <= bytes.len() as u64);
                if !in_file || s.file_size > s.mem_size || s.paddr.checked_add(s.mem_size).is_none() {
                    return Err(ElfError::BadSegment(i));
                }
            }
        }
        let mut segments = image.segments();
        if segments.next().is_none() {
            return Err(ElfError::NoLoadableSegment);
        }
        for (i, a) in image.segments().enumerate() {
            if image.segments().skip(i + 1).any(|b| a.paddr < b.end() && b.paddr < a.end()) {
                return Err(ElfError::Overlap);
            }
        }
        Ok(image)
    }

    /// Program header `i` if it is a non-empty PT_LOAD (the table was checked to be in the file).
    fn segment(&self, i: usize) -> Option<Segment> {
        let ph = self.phoff + i * self.phentsize;
        if u32_at(self.bytes, ph)? != PT_LOAD {
            return None;
        }
        let s = Segment {
            offset: u64_at(self.bytes, ph + 8)?,
            paddr: u64_at(self.bytes, ph + 24)?,
            file_size: u64_at(self.bytes, ph + 32)?,
            mem_size: u64_at(self.bytes, ph + 40)?,
        };
        (s.mem_size > 0).then_some(s)
    }

    /// The loadable segments, in file order.
    pub fn segments(&self) -> impl Iterator<Item = Segment> + 'a {
        let image = *self;
        (0..self.phnum).filter_map(move |i| image.segment(i))
    }

    /// The bytes of `seg` in the file.
    pub fn file_bytes(&self, seg: &Segment) -> &'a [u8] {
        &self.bytes[seg.offset as usize..(seg.offset + seg.file_size) as usize]
    }
}

/// Write a minimal x86_64 ELF64 image into `buf`: one PT_LOAD with `code` at `paddr` followed by
/// `bss` zero bytes, entry `entry`. Returns its length. For tests of the loaders.
pub fn write_minimal(buf: &mut [u8], paddr: u64, entry: u64, code: &[u8], bss: u64) -> usize {
    let data = 64 + PHDR_SIZE;
    let len = data + code.len();
    let b = &mut buf[..len];
    b.fill(0);
    b[0..4].copy_from_slice(b"\x7fELF");
    (b[4], b[5], b[6]) = (2, 1, 1);
    b[16..18].copy_from_slice(&2u16.to_le_bytes());
    b[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
    b[24..32].copy_from_slice(&entry.to_le_bytes());
    b[32..40].copy_from_slice(&64u64.to_le_bytes());
    b[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
    b[56..58].copy_from_slice(&1u16.to_le_bytes());
    let ph = 64;
    b[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
    b[ph + 8..ph + 16].copy_from_slice(&(data as u64).to_le_bytes());
    b[ph + 16..ph + 24].copy_from_slice(&paddr.to_le_bytes());
    b[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
    b[ph + 32..ph + 40].copy_from_slice(&(code.len() as u64).to_le_bytes());
    b[ph + 40..ph + 48].copy_from_slice(&(code.len() as u64 + bss).to_le_bytes());
    b[data..].copy_from_slice(code);
    len
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// An ELF64 with the given (paddr, file size, memory size) PT_LOADs and one PT_NOTE.
    fn make_elf(segs: &[(u64, u64, u64)]) -> Vec<u8> {
        let phnum = segs.len() + 1;
        let data_off = 64 + PHDR_SIZE * phnum;
        let mut elf = vec![0u8; data_off];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        elf[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
        let mut off = data_off as u64;
        for (i, &(paddr, filesz, memsz)) in segs.iter().enumerate() {
            let ph = 64 + PHDR_SIZE * i;
            elf[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            elf[ph + 8..ph + 16].copy_from_slice(&off.to_le_bytes());
            elf[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
            elf[ph + 32..ph + 40].copy_from_slice(&filesz.to_le_bytes());
            elf[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
            off += filesz;
        }
        let note = 64 + PHDR_SIZE * segs.len();
        elf[note..note + 4].copy_from_slice(&4u32.to_le_bytes());
        let total: u64 = segs.iter().map(|s| s.1).sum();
        elf.extend((0..total).map(|b| b as u8));
        elf
    }

    #[test]
    fn segments_in_file_order_with_their_bytes() {
        let elf = make_elf(&[(0x200000, 0x10, 0x20), (0x100000, 0x30, 0x1000)]);
        let img = ElfImage::parse(&elf).unwrap();
        let segs: Vec<Segment> = img.segments().collect();
        assert_eq!(segs.len(), 2, "the PT_NOTE is skipped");
        assert_eq!((segs[1].paddr, segs[1].mem_size, segs[1].end()), (0x100000, 0x1000, 0x101000));
        assert_eq!(img.file_bytes(&segs[0]).len(), 0x10);
        assert_eq!(img.file_bytes(&segs[1])[0], 0x10, "the second segment's bytes follow the first's");
    }

    #[test]
    fn minimal_image_round_trips() {
        let mut buf = [0u8; 256];
        let n = write_minimal(&mut buf, 0x10_0000, 0x10_0004, &[0x90, 0xf4], 6);
        let img = ElfImage::parse(&buf[..n]).unwrap();
        assert_eq!(img.entry, 0x10_0004);
        let s = img.segments().next().unwrap();
        assert_eq!((s.paddr, s.file_size, s.mem_size), (0x10_0000, 2, 8));
        assert_eq!(img.file_bytes(&s), &[0x90, 0xf4]);
    }

    #[test]
    fn malformed_files_are_refused() {
        assert_eq!(ElfImage::parse(b"MZ").unwrap_err(), ElfError::NotElf64);
        let mut elf = make_elf(&[(0x100000, 0x10, 0x20)]);
        elf.truncate(elf.len() - 1);
        assert_eq!(ElfImage::parse(&elf).unwrap_err(), ElfError::BadSegment(0));
        let elf = make_elf(&[(0x100000, 0x10, 0x2000), (0x101000, 0x10, 0x10)]);
        assert_eq!(ElfImage::parse(&elf).unwrap_err(), ElfError::Overlap);
        assert_eq!(ElfImage::parse(&make_elf(&[])).unwrap_err(), ElfError::NoLoadableSegment);
        let mut elf = make_elf(&[(0x100000, 0x10, 0x20)]);
        elf[18] = 3;
        assert_eq!(ElfImage::parse(&elf).unwrap_err(), ElfError::NotX86_64);
        let elf = make_elf(&[(0x100000, 0x10, 0x8)]);
        assert_eq!(ElfImage::parse(&elf).unwrap_err(), ElfError::BadSegment(0), "file size > memory size");
        let mut elf = make_elf(&[(0x100000, 0x10, 0x20)]);
        elf[56] = 200; // 200 program headers: the table runs past the file
        assert_eq!(ElfImage::parse(&elf).unwrap_err(), ElfError::Truncated);
        assert!(ElfImage::parse(&elf[..40]).is_err());
    }
}
