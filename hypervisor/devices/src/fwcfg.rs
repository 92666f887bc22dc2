//! QEMU's fw_cfg, the traditional I/O interface (no DMA): how a firmware or a guest learns the
//! machine's shape and fetches named blobs.
//!
//! # Registration
//! One [`FwCfg`] at [`FW_CFG_PORT`] (0x510) for [`FW_CFG_PORT_LEN`] (2), as QEMU's x86
//! machines have it: a 16-bit write at 0x510 selects an item (and rewinds it), each byte read
//! (at 0x511, or at 0x510) gives the next byte of the selected item, 0 past its end. Byte writes
//! (the old data-write interface) are ignored, as is the DMA port 0x514 (not registered; the
//! ID item says there is no DMA). No [`Effect`] ever comes of it.
//!
//! # Items
//! | key | item |
//! | --- | --- |
//! | 0x0000 | signature "QEMU" |
//! | 0x0001 | ID, u32 LE: bit 0 (traditional interface) |
//! | 0x0003 | RAM size, u64 LE |
//! | 0x0005 | NB_CPUS, u16 LE |
//! | 0x000F | MAX_CPUS, u16 LE |
//! | 0x0019 | the file directory: u32 BE count, then per file u32 BE size, u16 BE key, u16 reserved, 56-byte NUL-padded name |
//! | 0x0020.. | the files, sorted by name |
//!
//! Any other key reads as an empty item (0s). The write bit (0x4000) of a selector is ignored.

use crate::bus::{Ctx, Effect, PortDevice};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

pub const FW_CFG_PORT: u16 = 0x510;
pub const FW_CFG_PORT_LEN: u16 = 2;

pub const FW_CFG_SIGNATURE: u16 = 0x0000;
pub const FW_CFG_ID: u16 = 0x0001;
pub const FW_CFG_RAM_SIZE: u16 = 0x0003;
pub const FW_CFG_NB_CPUS: u16 = 0x0005;
pub const FW_CFG_MAX_CPUS: u16 = 0x000F;
pub const FW_CFG_FILE_DIR: u16 = 0x0019;
pub const FW_CFG_FILE_FIRST: u16 = 0x0020;
/// The selector bit that asks for write access (not offered).
pub const FW_CFG_WRITE: u16 = 0x4000;
/// The ID item's bit for the traditional interface.
pub const FW_CFG_VERSION: u32 = 1 << 0;
/// The longest file name, the NUL not counted.
pub const FW_CFG_MAX_NAME: usize = 55;
/// How many files fit below the write bit.
pub const FW_CFG_MAX_FILES: usize = (FW_CFG_WRITE - FW_CFG_FILE_FIRST) as usize;

/// What the device is built from.
#[derive(Debug, Clone, Default)]
pub struct FwCfgConfig {
    pub cpus: u16,
    pub ram_bytes: u64,
    /// Named items ("etc/..." by QEMU's convention), each readable through the directory.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FwCfgError {
    /// A file name is empty, over [`FW_CFG_MAX_NAME`] bytes or holds a NUL.
    BadName(String),
    /// Two files have the same name.
    Duplicate(String),
    /// More than [`FW_CFG_MAX_FILES`] files.
    TooManyFiles,
    /// A file is 4 GiB or more.
    TooLarge(String),
}

/// The fw_cfg device.
pub struct FwCfg {
    /// (key, bytes), sorted by key.
    items: Vec<(u16, Vec<u8>)>,
    selected: usize,
    offset: usize,
}

impl FwCfg {
    pub fn new(config: FwCfgConfig) -> Result<Self, FwCfgError> {
        let mut files = config.files;
        files.sort_by(|a, b| a.0.cmp(&b.0));
        if files.len() > FW_CFG_MAX_FILES {
            return Err(FwCfgError::TooManyFiles);
        }
        for (i, (name, bytes)) in files.iter().enumerate() {
            if name.is_empty() || name.len() > FW_CFG_MAX_NAME || name.contains('\0') {
                return Err(FwCfgError::BadName(name.clone()));
            }
            if i > 0 && files[i - 1].0 == *name {
                return Err(FwCfgError::Duplicate(name.clone()));
            }
            if u32::try_from(bytes.len()).is_err() {
                return Err(FwCfgError::TooLarge(name.clone()));
            }
        }
        let mut dir = Vec::with_capacity(4 + files.len() * 64);
        dir.extend_from_slice(&(files.len() as u32).to_be_bytes());
        for (i, (name, bytes)) in files.iter().enumerate() {
            dir.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            dir.extend_from_slice(&(FW_CFG_FILE_FIRST + i as u16).to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut n = [0u8; 56];
            n[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&n);
        }
        let mut items = vec![
            (FW_CFG_SIGNATURE, b"QEMU".to_vec()),
            (FW_CFG_ID, FW_CFG_VERSION.to_le_bytes().to_vec()),
            (FW_CFG_RAM_SIZE, config.ram_bytes.to_le_bytes().to_vec()),
            (FW_CFG_NB_CPUS, config.cpus.to_le_bytes().to_vec()),
            (FW_CFG_MAX_CPUS, config.cpus.to_le_bytes().to_vec()),
            (FW_CFG_FILE_DIR, dir),
        ];
        for (i, (_, bytes)) in files.into_iter().enumerate() {
            items.push((FW_CFG_FILE_FIRST + i as u16, bytes));
        }
        items.sort_by_key(|i| i.0);
        let mut dev = FwCfg { items, selected: usize::MAX, offset: 0 };
        dev.select(FW_CFG_SIGNATURE);
        Ok(dev)
    }

    /// Select the item `key` and rewind it.
    pub fn select(&mut self, key: u16) {
        let key = key & !FW_CFG_WRITE;
        self.selected = self.items.binary_search_by_key(&key, |i| i.0).unwrap_or(usize::MAX);
        self.offset = 0;
    }

    /// The next byte of the selected item; 0 past its end or for an unknown key.
    pub fn read_byte(&mut self) -> u8 {
        let b = self.items.get(self.selected).and_then(|i| i.1.get(self.offset)).copied();
        match b {
            Some(b) => {
                self.offset += 1;
                b
            }
            None => 0,
        }
    }

    /// The bytes of item `key`, if present.
    pub fn item(&self, key: u16) -> Option<&[u8]> {
        self.items.binary_search_by_key(&key, |i| i.0).ok().map(|i| self.items[i].1.as_slice())
    }
}

impl PortDevice for FwCfg {
    fn read(&mut self, _ctx: &mut Ctx<'_>, _offset: u16, data: &mut [u8]) {
        for b in data.iter_mut() {
            *b = self.read_byte();
        }
    }

    fn write(&mut self, _ctx: &mut Ctx<'_>, offset: u16, data: &[u8]) -> Effect {
        if let (0, &[lo, hi]) = (offset, data) {
            self.select(u16::from_le_bytes([lo, hi]));
        }
        Effect::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::RecordingSink;
    use alloc::string::ToString;

    fn dev() -> FwCfg {
        FwCfg::new(FwCfgConfig {
            cpus: 4,
            ram_bytes: 0x1_2000_0000,
            files: vec![
                ("etc/e820".to_string(), vec![1, 2, 3]),
                ("etc/acpi/tables".to_string(), vec![0xAB; 300]),
            ],
        })
        .unwrap()
    }

    fn read_item(d: &mut FwCfg, key: u16, len: usize) -> Vec<u8> {
        let mut sink = RecordingSink::default();
        let mut c = Ctx { now: 0, vcpu: 0, irq: &mut sink };
        d.write(&mut c, 0, &key.to_le_bytes());
        (0..len)
            .map(|_| {
                let mut b = [0];
                d.read(&mut c, 1, &mut b);
                b[0]
            })
            .collect()
    }

    #[test]
    fn signature_id_cpus_ram() {
        let mut d = dev();
        assert_eq!(read_item(&mut d, FW_CFG_SIGNATURE, 4), b"QEMU");
        assert_eq!(read_item(&mut d, FW_CFG_ID, 4), [1, 0, 0, 0], "traditional, no DMA");
        assert_eq!(read_item(&mut d, FW_CFG_NB_CPUS, 2), [4, 0]);
        assert_eq!(read_item(&mut d, FW_CFG_MAX_CPUS, 2), [4, 0]);
        let ram = read_item(&mut d, FW_CFG_RAM_SIZE, 8);
        assert_eq!(u64::from_le_bytes(ram.try_into().unwrap()), 0x1_2000_0000);
        // Past the end and unknown keys: 0.
        assert_eq!(read_item(&mut d, FW_CFG_SIGNATURE, 6), b"QEMU\0\0");
        assert_eq!(read_item(&mut d, 0x0002, 16), [0; 16]);
        assert_eq!(read_item(&mut d, 0x8000, 4), [0; 4]);
        // Reselecting rewinds.
        assert_eq!(read_item(&mut d, FW_CFG_SIGNATURE, 2), b"QE");
        assert_eq!(read_item(&mut d, FW_CFG_SIGNATURE, 2), b"QE");
    }

    #[test]
    fn file_directory_parses() {
        let mut d = dev();
        let count = u32::from_be_bytes(read_item(&mut d, FW_CFG_FILE_DIR, 4).try_into().unwrap());
        assert_eq!(count, 2);
        let dir = read_item(&mut d, FW_CFG_FILE_DIR, 4 + 64 * 2);
        let mut found = Vec::new();
        for e in dir[4..].chunks(64) {
            let size = u32::from_be_bytes(e[0..4].try_into().unwrap());
            let key = u16::from_be_bytes(e[4..6].try_into().unwrap());
            let name_len = e[8..].iter().position(|b| *b == 0).unwrap();
            let name = core::str::from_utf8(&e[8..8 + name_len]).unwrap().to_string();
            found.push((name, size, key));
        }
        assert_eq!(found, [("etc/acpi/tables".to_string(), 300, 0x20), ("etc/e820".to_string(), 3, 0x21)]);
        assert_eq!(read_item(&mut d, 0x21, 4), [1, 2, 3, 0]);
        assert_eq!(read_item(&mut d, 0x20 | FW_CFG_WRITE, 300), [0xAB; 300]);
    }

    #[test]
    fn bad_configs_are_refused() {
        let long = "x".repeat(56);
        let c =
            |files: Vec<(String, Vec<u8>)>| FwCfg::new(FwCfgConfig { cpus: 1, ram_bytes: 0, files }).err();
        assert_eq!(c(vec![(long.clone(), vec![])]), Some(FwCfgError::BadName(long)));
        assert_eq!(c(vec![(String::new(), vec![])]), Some(FwCfgError::BadName(String::new())));
        assert_eq!(
            c(vec![("a".to_string(), vec![]), ("a".to_string(), vec![1])]),
            Some(FwCfgError::Duplicate("a".to_string()))
        );
        assert_eq!(c(vec![("x".repeat(55), vec![])]), None);
    }
}
