//! Just enough ELF64 to load Basalt's kernel: the header and the PT_LOAD program headers
//! (System V ABI, ELF-64 Object File Format 1.5).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

const PT_LOAD: u32 = 1;
const EM_X86_64: u16 = 62;

/// One loadable segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Physical load address.
    pub paddr: u64,
    /// Offset of the file bytes in the ELF.
    pub offset: u64,
    pub filesz: u64,
    /// Size in memory (the bytes past `filesz` are zero).
    pub memsz: u64,
}

impl Segment {
    pub fn end(&self) -> u64 {
        self.paddr + self.memsz
    }
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// The loadable segments of a little-endian x86_64 ELF64, checked against the file size.
pub fn load_segments(elf: &[u8]) -> Result<Vec<Segment>, String> {
    if elf.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err("not an ELF file".into());
    }
    if elf.get(4) != Some(&2) || elf.get(5) != Some(&1) || u16_at(elf, 18) != Some(EM_X86_64) {
        return Err("not a little-endian x86_64 ELF64 file".into());
    }
    let truncated = || String::from("truncated ELF header");
    let phoff = u64_at(elf, 32).ok_or_else(truncated)? as usize;
    let phentsize = u16_at(elf, 54).ok_or_else(truncated)? as usize;
    let phnum = u16_at(elf, 56).ok_or_else(truncated)? as usize;
    if phentsize < 56 {
        return Err(format!("program header entries of {phentsize} bytes"));
    }
    let mut segments = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let bad = || format!("program header {i} is outside the file");
        if u32_at(elf, ph).ok_or_else(bad)? != PT_LOAD {
            continue;
        }
        let seg = Segment {
            offset: u64_at(elf, ph + 8).ok_or_else(bad)?,
            paddr: u64_at(elf, ph + 24).ok_or_else(bad)?,
            filesz: u64_at(elf, ph + 32).ok_or_else(bad)?,
            memsz: u64_at(elf, ph + 40).ok_or_else(bad)?,
        };
        let file_end = seg.offset.checked_add(seg.filesz);
        if file_end.is_none_or(|e| e > elf.len() as u64) || seg.filesz > seg.memsz {
            return Err(format!("segment {i} is larger than the file"));
        }
        if seg.paddr.checked_add(seg.memsz).is_none_or(|e| e > 1 << 32) {
            return Err(format!("segment {i} is not below 4 GiB"));
        }
        if seg.memsz > 0 {
            segments.push(seg);
        }
    }
    if segments.is_empty() {
        return Err("no loadable segment".into());
    }
    segments.sort_by_key(|s| s.paddr);
    if segments.windows(2).any(|w| w[0].end() > w[1].paddr) {
        return Err("loadable segments overlap".into());
    }
    Ok(segments)
}

/// The bytes of `seg` in the file.
pub fn file_bytes<'a>(elf: &'a [u8], seg: &Segment) -> &'a [u8] {
    &elf[seg.offset as usize..(seg.offset + seg.filesz) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with the given (paddr, filesz, memsz) PT_LOAD segments and one PT_NOTE.
    pub fn make_elf(segs: &[(u64, u64, u64)]) -> Vec<u8> {
        let phnum = segs.len() + 1;
        let data_off = 64 + 56 * phnum;
        let mut elf = vec![0u8; data_off];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
        let mut off = data_off as u64;
        for (i, &(paddr, filesz, memsz)) in segs.iter().enumerate() {
            let ph = 64 + 56 * i;
            elf[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            elf[ph + 8..ph + 16].copy_from_slice(&off.to_le_bytes());
            elf[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
            elf[ph + 32..ph + 40].copy_from_slice(&filesz.to_le_bytes());
            elf[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
            off += filesz;
        }
        let note = 64 + 56 * segs.len();
        elf[note..note + 4].copy_from_slice(&4u32.to_le_bytes());
        let total: u64 = segs.iter().map(|s| s.1).sum();
        elf.extend((0..total).map(|b| b as u8));
        elf
    }

    #[test]
    fn segments_sorted_and_checked() {
        let elf = make_elf(&[(0x200000, 0x10, 0x20), (0x100000, 0x30, 0x1000)]);
        let segs = load_segments(&elf).unwrap();
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].paddr, 0x100000);
        assert_eq!(segs[0].memsz, 0x1000);
        assert_eq!(file_bytes(&elf, &segs[1]).len(), 0x10);
        // The 0x100000 segment is the second in the file: its bytes start after the first 0x10.
        assert_eq!(file_bytes(&elf, &segs[0])[0], 0x10);
    }

    #[test]
    fn bad_files() {
        assert!(load_segments(b"MZ").is_err());
        let mut elf = make_elf(&[(0x100000, 0x10, 0x20)]);
        elf.truncate(elf.len() - 1);
        assert_eq!(load_segments(&elf).unwrap_err(), "segment 0 is larger than the file");
        let elf = make_elf(&[(0x100000, 0x10, 0x2000), (0x101000, 0x10, 0x10)]);
        assert_eq!(load_segments(&elf).unwrap_err(), "loadable segments overlap");
        let elf = make_elf(&[(0xFFFF_F000, 0x10, 0x2000)]);
        assert!(load_segments(&elf).unwrap_err().contains("4 GiB"));
        let elf = make_elf(&[]);
        assert_eq!(load_segments(&elf).unwrap_err(), "no loadable segment");
        let mut elf = make_elf(&[(0x100000, 0x10, 0x20)]);
        elf[18] = 3;
        assert!(load_segments(&elf).is_err());
    }
}
