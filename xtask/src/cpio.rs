//! A cpio archive in the "newc" format (magic `070701`), the format Linux unpacks as an
//! initramfs (Documentation/driver-api/early-userspace/buffer-format.rst).
//!
//! Every entry is a 110-byte ASCII header (the magic and 13 fields of 8 hex digits), the
//! NUL-terminated name padded to a multiple of 4 bytes, then the data padded the same way; the
//! archive ends with an entry named `TRAILER!!!`. The writer is deterministic: inode numbers
//! count up from 1 in the order entries are added, owner root, modification time 0.
//! Directories are added before anything inside them (the kernel does not make missing parents).

use anyhow::{bail, Result};
use std::collections::BTreeSet;

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// An archive being built in memory.
#[derive(Default)]
pub struct Archive {
    bytes: Vec<u8>,
    next_ino: u32,
    /// Every path added so far (no leading `/`), to refuse duplicates and to add parents once.
    paths: BTreeSet<String>,
}

impl Archive {
    pub fn new() -> Self {
        Archive { bytes: Vec::new(), next_ino: 1, paths: BTreeSet::new() }
    }

    /// A directory (and its missing parents), mode 0755.
    pub fn dir(&mut self, path: &str) -> Result<()> {
        let path = normalize(path)?;
        let mut prefix = String::new();
        for part in path.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if !self.paths.contains(&prefix) {
                let name = prefix.clone();
                self.entry(&name, S_IFDIR | 0o755, 2, (0, 0), &[])?;
            }
        }
        Ok(())
    }

    /// A regular file with `mode`'s permission bits (0o755 for a program), parents made.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<()> {
        let path = self.parents(path)?;
        self.entry(&path, S_IFREG | (mode & 0o7777), 1, (0, 0), data)
    }

    /// A symbolic link to `target`, parents made.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let path = self.parents(path)?;
        self.entry(&path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node (`/dev/console` is 5:1), parents made.
    pub fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> Result<()> {
        let path = self.parents(path)?;
        self.entry(&path, S_IFCHR | (mode & 0o7777), 1, (major, minor), &[])
    }

    /// The archive with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.header(TRAILER, 0, 0, 1, (0, 0), 0);
        self.bytes
    }

    /// Makes the parent directories of `path`; returns it normalized.
    fn parents(&mut self, path: &str) -> Result<String> {
        let path = normalize(path)?;
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent)?;
        }
        Ok(path)
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) -> Result<()> {
        if !self.paths.insert(path.to_string()) {
            bail!("cpio: {path} added twice");
        }
        let Ok(size) = u32::try_from(data.len()) else {
            bail!("cpio: {path} is {} bytes, over newc's 4 GiB limit", data.len());
        };
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(path, ino, mode, nlink, rdev, size);
        self.bytes.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    fn header(&mut self, name: &str, ino: u32, mode: u32, nlink: u32, rdev: (u32, u32), size: u32) {
        let namesize = name.len() as u32 + 1;
        // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
        let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0];
        self.bytes.extend_from_slice(MAGIC.as_bytes());
        for field in fields {
            self.bytes.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

/// `path` without leading or trailing `/`; refuses empty names, `.`, `..` and NUL.
fn normalize(path: &str) -> Result<String> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty()
        || trimmed.contains('\0')
        || trimmed.split('/').any(|part| part.is_empty() || part == "." || part == "..")
    {
        bail!("cpio: bad path {path:?}");
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One parsed entry: name, mode, nlink, rdev, data.
    type Entry = (String, u32, u32, (u32, u32), Vec<u8>);

    /// A newc reader, to check the writer against the format rather than against itself.
    fn parse(mut bytes: &[u8]) -> Vec<Entry> {
        let total = bytes.len();
        let mut out = Vec::new();
        loop {
            assert_eq!((total - bytes.len()) % 4, 0, "entry not 4-byte aligned");
            assert_eq!(&bytes[..6], b"070701");
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&bytes[6 + 8 * i..14 + 8 * i]).unwrap(), 16).unwrap()
            };
            let (mode, nlink, size, rdev, namesize) =
                (field(1), field(4), field(6), (field(9), field(10)), field(11));
            assert_eq!((field(2), field(3), field(5), field(12)), (0, 0, 0, 0), "uid, gid, mtime, check");
            let name_end = 110 + namesize as usize;
            assert_eq!(bytes[name_end - 1], 0, "name is NUL-terminated");
            let name = std::str::from_utf8(&bytes[110..name_end - 1]).unwrap().to_string();
            let data_start = name_end.next_multiple_of(4);
            let data = bytes[data_start..data_start + size as usize].to_vec();
            bytes = &bytes[(data_start + size as usize).next_multiple_of(4)..];
            if name == TRAILER {
                assert!(bytes.is_empty(), "nothing after the trailer");
                return out;
            }
            out.push((name, mode, nlink, rdev, data));
        }
    }

    #[test]
    fn entries_round_trip_with_parents_first() {
        let mut a = Archive::new();
        a.file("/bin/busybox", 0o755, b"\x7fELF...").unwrap();
        a.symlink("bin/sh", "busybox").unwrap();
        a.char_device("/dev/console", 0o600, 5, 1).unwrap();
        a.file("usr/lib/x86_64-linux-gnu/libz.so.1", 0o644, b"abcde").unwrap();
        a.dir("proc").unwrap();
        let entries = parse(&a.finish());
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/busybox",
                "bin/sh",
                "dev",
                "dev/console",
                "usr",
                "usr/lib",
                "usr/lib/x86_64-linux-gnu",
                "usr/lib/x86_64-linux-gnu/libz.so.1",
                "proc"
            ]
        );
        let get = |n: &str| entries.iter().find(|e| e.0 == n).unwrap().clone();
        assert_eq!(get("bin"), ("bin".into(), 0o040755, 2, (0, 0), vec![]));
        assert_eq!(get("bin/busybox"), ("bin/busybox".into(), 0o100755, 1, (0, 0), b"\x7fELF...".to_vec()));
        assert_eq!(get("bin/sh").1, 0o120777);
        assert_eq!(get("bin/sh").4, b"busybox");
        assert_eq!(get("dev/console"), ("dev/console".into(), 0o020600, 1, (5, 1), vec![]));
        assert_eq!(get("usr/lib/x86_64-linux-gnu/libz.so.1").4, b"abcde");
    }

    #[test]
    fn the_exact_bytes_of_one_entry() {
        let mut a = Archive::new();
        a.file("a", 0o644, b"xy").unwrap();
        let bytes = a.finish();
        let expect = "070701\
                      00000001000081a4000000000000000000000001000000000000000200000000\
                      0000000000000000000000000000000200000000a\0\
                      xy\0\0";
        assert_eq!(&bytes[..expect.len()], expect.as_bytes());
        assert_eq!(bytes.len() % 4, 0);
        assert!(std::str::from_utf8(&bytes[expect.len()..]).unwrap().contains("TRAILER!!!"));
    }

    #[test]
    fn bad_and_duplicate_paths_are_refused() {
        let mut a = Archive::new();
        for bad in ["", "/", "a/../b", "./a", "a//b", "a\0b"] {
            assert!(a.file(bad, 0o644, b"").is_err(), "{bad:?}");
        }
        a.file("x/y", 0o644, b"").unwrap();
        assert!(a.file("/x/y", 0o644, b"").is_err());
        // A directory named again is fine (it exists), a file over it is not.
        a.dir("x").unwrap();
        assert!(a.file("x", 0o644, b"").is_err());
    }
}
