//! Which boot protocol a VM's image is for, decided in this order:
//!
//! 1. a Linux bzImage (`HdrS` at 0x202): the 64-bit boot protocol ([`crate::bzimage`]);
//! 2. a guest of Basalt's own boot ABI (tests/src/lib.rs): the VM's configuration names
//!    `mode=long` or `mode=real`, or the image is an ELF carrying Basalt's guest-ABI note
//!    (`PT_NOTE` "Basalt" of type [`basalt_abi::GUEST_ABI_NOTE_TYPE`]);
//! 3. a multiboot v2 or v1 kernel: a header with a good checksum in the first 32 KiB (v2) or
//!    8 KiB (v1) ([`crate::multiboot`]).
//!
//! Basalt's test guests carry a multiboot v1 header too (so QEMU's `-kernel` boots them bare),
//! which is why the note comes before the header. Anything else is refused, naming what the
//! image lacks.

use crate::multiboot::{self, Version};
use crate::{refuse, u16_at, u32_at, u64_at, u8_at, LoadError};
use basalt_abi::{GUEST_ABI_NOTE_NAME, GUEST_ABI_NOTE_TYPE};

/// What an image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// A Linux bzImage.
    Linux,
    /// A guest of Basalt's boot ABI (the test guests).
    BasaltGuest,
    /// A multiboot kernel of this version.
    Multiboot(Version),
}

const PT_NOTE: u32 = 4;

/// Whether `image` is a bzImage: the setup header's "HdrS" magic at 0x202.
pub fn is_bzimage(image: &[u8]) -> bool {
    image.get(0x202..0x206) == Some(b"HdrS")
}

/// Classify `image`; `test_abi_named`: the VM's configuration names `mode=` (the test ABI).
pub fn classify(image: &[u8], test_abi_named: bool) -> Result<ImageKind, LoadError> {
    if is_bzimage(image) {
        return Ok(ImageKind::Linux);
    }
    if test_abi_named || has_guest_abi_note(image) {
        return Ok(ImageKind::BasaltGuest);
    }
    if let Some(v) = multiboot::header_version(image)? {
        return Ok(ImageKind::Multiboot(v));
    }
    let headers = "no multiboot header (0x1badb002 in the first 8 KiB, 0xe85250d6 in the first 32 KiB)";
    if crate::elf::is_elf(image) {
        refuse!(
            "not a guest image Basalt can start: an ELF file with {headers} and without Basalt's guest-ABI note (PT_NOTE \"{GUEST_ABI_NOTE_NAME}\", which basalt_guests::entry! adds); name mode=long or mode=real to start it under Basalt's guest boot ABI"
        );
    }
    let first = image.iter().take(4).map(|b| alloc::format!("{b:02x}")).collect::<alloc::vec::Vec<_>>();
    refuse!(
        "not a guest image Basalt can start: not a Linux bzImage (no \"HdrS\" at 0x202), not an ELF file (it starts {}), and {headers}",
        if first.is_empty() { alloc::string::String::from("empty") } else { first.join(" ") }
    );
}

/// Whether `image` is an ELF32 or ELF64 file with Basalt's guest-ABI note in a `PT_NOTE`
/// segment. Anything malformed on the way is simply no note.
pub fn has_guest_abi_note(image: &[u8]) -> bool {
    find_note(image).unwrap_or(false)
}

fn find_note(b: &[u8]) -> Result<bool, LoadError> {
    if !crate::elf::is_elf(b) || u8_at(b, 5, "")? != 1 {
        return Ok(false);
    }
    let is64 = match u8_at(b, 4, "")? {
        1 => false,
        2 => true,
        _ => return Ok(false),
    };
    let (phoff, phentsize, phnum) = if is64 {
        (u64_at(b, 32, "")?, u16_at(b, 54, "")? as u64, u16_at(b, 56, "")?)
    } else {
        (u32_at(b, 28, "")? as u64, u16_at(b, 42, "")? as u64, u16_at(b, 44, "")?)
    };
    if phentsize < if is64 { 56 } else { 32 } {
        return Ok(false);
    }
    for i in 0..(phnum as usize).min(crate::elf::MAX_PHDRS) as u64 {
        let Some(ph) = (i * phentsize).checked_add(phoff).and_then(|o| usize::try_from(o).ok()) else {
            return Ok(false);
        };
        if u32_at(b, ph, "")? != PT_NOTE {
            continue;
        }
        let (offset, size, align) = if is64 {
            (u64_at(b, ph + 8, "")?, u64_at(b, ph + 32, "")?, u64_at(b, ph + 48, "")?)
        } else {
            (u32_at(b, ph + 4, "")? as u64, u32_at(b, ph + 16, "")? as u64, u32_at(b, ph + 28, "")? as u64)
        };
        let Some(notes) = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(size).ok())
            .and_then(|(o, n)| b.get(o..o.checked_add(n)?))
        else {
            continue;
        };
        if notes_hold_ours(notes, if align == 8 { 8 } else { 4 }) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Walk the notes of one segment (`namesz`, `descsz`, `type`, name and descriptor each padded
/// to `align`) looking for Basalt's.
fn notes_hold_ours(notes: &[u8], align: usize) -> bool {
    let mut at = 0usize;
    while at + 12 <= notes.len() {
        let (Ok(namesz), Ok(descsz), Ok(ty)) =
            (u32_at(notes, at, ""), u32_at(notes, at + 4, ""), u32_at(notes, at + 8, ""))
        else {
            return false;
        };
        let name_at = at + 12;
        let Some(desc_at) =
            (namesz as usize).checked_next_multiple_of(align).and_then(|n| n.checked_add(name_at))
        else {
            return false;
        };
        let name = notes.get(name_at..name_at.saturating_add(namesz as usize));
        let ours = name.is_some_and(|n| n.strip_suffix(b"\0") == Some(GUEST_ABI_NOTE_NAME.as_bytes()));
        if ours && ty == GUEST_ABI_NOTE_TYPE {
            return true;
        }
        let Some(next) =
            (descsz as usize).checked_next_multiple_of(align).and_then(|n| n.checked_add(desc_at))
        else {
            return false;
        };
        at = next;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multiboot::build::*;
    use alloc::vec::Vec;

    /// An ELF64 or ELF32 with one PT_LOAD and, when `note` is given, a PT_NOTE over those bytes
    /// (appended after the segment).
    fn with_note(is64: bool, note: Option<&[u8]>) -> Vec<u8> {
        let mut img = elf(is64, 0x10_0000, &[(0x10_0000, 0x10_0000, &[0x90; 16], 0)]);
        let Some(note) = note else { return img };
        let off = img.len();
        img.extend_from_slice(note);
        let (ehsize, phsize) = if is64 { (64, 56) } else { (52, 32) };
        let ph = ehsize + phsize;
        let put = |img: &mut Vec<u8>, at: usize, v: &[u8]| img[at..at + v.len()].copy_from_slice(v);
        put(&mut img, ph, &PT_NOTE.to_le_bytes());
        if is64 {
            put(&mut img, 56, &2u16.to_le_bytes());
            put(&mut img, ph + 8, &(off as u64).to_le_bytes());
            put(&mut img, ph + 32, &(note.len() as u64).to_le_bytes());
            put(&mut img, ph + 48, &4u64.to_le_bytes());
        } else {
            put(&mut img, 44, &2u16.to_le_bytes());
            put(&mut img, ph + 4, &(off as u32).to_le_bytes());
            put(&mut img, ph + 16, &(note.len() as u32).to_le_bytes());
            put(&mut img, ph + 28, &4u32.to_le_bytes());
        }
        img
    }

    fn note(name: &[u8], ty: u32) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&(name.len() as u32).to_le_bytes());
        n.extend_from_slice(&4u32.to_le_bytes());
        n.extend_from_slice(&ty.to_le_bytes());
        n.extend_from_slice(name);
        n.resize(n.len().next_multiple_of(4), 0);
        n.extend_from_slice(&1u32.to_le_bytes());
        n
    }

    #[test]
    fn the_note_makes_a_basalt_guest_even_with_a_multiboot_header() {
        let ours = note(b"Basalt\0", GUEST_ABI_NOTE_TYPE);
        for is64 in [true, false] {
            let mut img = with_note(is64, Some(&ours));
            assert!(has_guest_abi_note(&img));
            v1_header(&mut img, 0x200, 0, None);
            assert_eq!(classify(&img, false), Ok(ImageKind::BasaltGuest));
        }
        // Behind another note (a GNU build ID).
        let mut two = note(b"GNU\0", 3);
        two.extend_from_slice(&ours);
        assert!(has_guest_abi_note(&with_note(true, Some(&two))));
        // Another owner's note, or ours with another type, is not the mark.
        assert!(!has_guest_abi_note(&with_note(true, Some(&note(b"Basal\0", GUEST_ABI_NOTE_TYPE)))));
        assert!(!has_guest_abi_note(&with_note(true, Some(&note(b"Basalt\0", 1)))));
        assert!(!has_guest_abi_note(&with_note(true, None)));
        // Truncated: no note, no panic.
        let img = with_note(true, Some(&ours));
        for n in 0..img.len() {
            let _ = has_guest_abi_note(&img[..n]);
        }
    }

    #[test]
    fn multiboot_kernels_linux_and_mode_words() {
        let mut v1 = with_note(false, None);
        v1_header(&mut v1, 0x200, 0, None);
        assert_eq!(classify(&v1, false), Ok(ImageKind::Multiboot(Version::V1)));
        assert_eq!(classify(&v1, true), Ok(ImageKind::BasaltGuest), "mode= names the test ABI");
        let mut v2 = with_note(true, None);
        v2_header(&mut v2, 0x400, &[]);
        v1_header(&mut v2, 0x200, 0, None);
        assert_eq!(classify(&v2, false), Ok(ImageKind::Multiboot(Version::V2)), "v2 first");
        let bz = crate::bzimage::synthetic(0x020F, 4, 0x2000, 0x10_0000);
        assert_eq!(classify(&bz, true), Ok(ImageKind::Linux));
        // A plain ELF64 is a test guest only when mode= says so.
        let plain = with_note(true, None);
        assert_eq!(classify(&plain, true), Ok(ImageKind::BasaltGuest));
    }

    #[test]
    fn anything_else_is_refused_naming_what_it_lacks() {
        let e = classify(&with_note(true, None), false).unwrap_err().0;
        assert!(e.contains("an ELF file with no multiboot header"), "{e}");
        assert!(e.contains("name mode=long or mode=real"), "{e}");
        let e = classify(b"BSLT module text", false).unwrap_err().0;
        assert!(
            e.contains("not a Linux bzImage (no \"HdrS\" at 0x202), not an ELF file (it starts 42 53 4c 54)"),
            "{e}"
        );
        assert!(classify(&[], false).unwrap_err().0.contains("it starts empty"));
        let mut bad = with_note(false, None);
        v1_header(&mut bad, 0x200, 0, None);
        bad[0x208] ^= 1;
        assert!(classify(&bad, false).unwrap_err().0.contains("checksum"));
    }
}
