//! The UEFI hand-off: how the UEFI loader (boot/uefi) passes a [`BootInfo`] to the kernel.
//!
//! The loader jumps to `basalt_uefi_entry` (boot/src/uefi_entry.rs) in long mode with
//! RDI = [`UEFI_HANDOFF_MAGIC`] and RSI = the physical address of a [`Handoff`], below 4 GiB.
//! `Handoff` is plain old data with a `repr(C)` layout (integers and byte arrays only, no
//! implicit padding), so the kernel can copy it from memory the loader wrote without trusting
//! that two different compilations (x86_64-unknown-uefi and x86_64-unknown-none) laid out
//! Rust's own `BootInfo` the same way, and validate every field before turning it back into a
//! `BootInfo`.
//!
//! The kernel finds nothing of the loader except this structure: the memory map inside it
//! was taken at ExitBootServices, and `loader_info` covers the structure itself, so the frame
//! allocator does not hand it out while it is being copied.

use crate::fixed::{FixedStr, FixedVec};
use crate::memmap::{MemoryKind, MemoryMap, MemoryRegion};
use crate::{
    BootError, BootInfo, Loader, Module, PhysRead, MAX_CMDLINE, MAX_MODULES, MAX_MODULE_CMDLINE, MAX_REGIONS,
};

/// What the UEFI loader leaves in RDI ("BASA"): not a multiboot magic, so `from_multiboot`
/// can tell the three boot paths apart by this one register.
pub const UEFI_HANDOFF_MAGIC: u32 = 0x4241_5341;

/// First bytes of a [`Handoff`].
pub const HANDOFF_SIGNATURE: [u8; 8] = *b"BASALTBI";
/// Layout version of [`Handoff`]; bump on any change.
pub const HANDOFF_VERSION: u32 = 2;

/// The marker the kernel image carries in its `.multiboot_header` section (in the first
/// 8 KiB of the first loadable segment, 8-byte aligned) so the UEFI loader can find the
/// 64-bit entry point without a symbol table: 8 signature bytes, then the entry address as
/// a little-endian u64.
pub const UEFI_ENTRY_SIGNATURE: [u8; 8] = *b"BASALTUE";

/// One memory-map entry of a [`Handoff`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandoffRegion {
    pub start: u64,
    pub end: u64,
    /// [`kind_to_u32`] of the region's [`MemoryKind`].
    pub kind: u32,
    pub reserved: u32,
}

/// One module of a [`Handoff`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandoffModule {
    pub start: u64,
    pub end: u64,
    pub cmdline_len: u32,
    pub reserved: u32,
    pub cmdline: [u8; MAX_MODULE_CMDLINE],
}

/// The boot information as the UEFI loader writes it to memory.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
    pub signature: [u8; 8],
    pub version: u32,
    /// `size_of::<Handoff>()` as the loader saw it.
    pub size: u32,
    pub region_count: u32,
    /// How many modules the loader was given (version 2): the first `MAX_MODULES` of them are
    /// in `modules`, the rest were not loaded and become [`BootInfo::modules_dropped`].
    pub module_count: u32,
    pub cmdline_len: u32,
    /// 1 when `rsdp` is valid.
    pub has_rsdp: u32,
    pub rsdp: u64,
    pub regions: [HandoffRegion; MAX_REGIONS],
    pub modules: [HandoffModule; MAX_MODULES],
    pub cmdline: [u8; MAX_CMDLINE],
}

/// Size of a [`Handoff`] in bytes.
pub const HANDOFF_SIZE: usize = core::mem::size_of::<Handoff>();

/// The `BootInfo` memory kind for a UEFI memory type (UEFI 2.10, 7.2.3 `EFI_MEMORY_TYPE`):
/// loader code/data, boot-services code/data and conventional memory are free once boot
/// services have exited; ACPI reclaim and NVS keep their meaning; unusable memory is bad;
/// everything else (runtime services, MMIO, reserved, persistent, unaccepted) is reserved.
pub const fn memory_kind_from_uefi(typ: u32) -> MemoryKind {
    match typ {
        1..=4 | 7 => MemoryKind::Usable,
        8 => MemoryKind::BadMemory,
        9 => MemoryKind::AcpiReclaimable,
        10 => MemoryKind::AcpiNvs,
        _ => MemoryKind::Reserved,
    }
}

/// The wire value of a memory kind.
pub const fn kind_to_u32(kind: MemoryKind) -> u32 {
    match kind {
        MemoryKind::Usable => 0,
        MemoryKind::AcpiReclaimable => 1,
        MemoryKind::AcpiNvs => 2,
        MemoryKind::Reserved => 3,
        MemoryKind::BadMemory => 4,
    }
}

/// The memory kind of a wire value.
pub const fn kind_from_u32(value: u32) -> Option<MemoryKind> {
    match value {
        0 => Some(MemoryKind::Usable),
        1 => Some(MemoryKind::AcpiReclaimable),
        2 => Some(MemoryKind::AcpiNvs),
        3 => Some(MemoryKind::Reserved),
        4 => Some(MemoryKind::BadMemory),
        _ => None,
    }
}

impl Handoff {
    /// An empty hand-off (no regions, no modules).
    pub const fn new() -> Self {
        const REGION: HandoffRegion = HandoffRegion { start: 0, end: 0, kind: 0, reserved: 0 };
        const MODULE: HandoffModule =
            HandoffModule { start: 0, end: 0, cmdline_len: 0, reserved: 0, cmdline: [0; MAX_MODULE_CMDLINE] };
        Handoff {
            signature: HANDOFF_SIGNATURE,
            version: HANDOFF_VERSION,
            size: HANDOFF_SIZE as u32,
            region_count: 0,
            module_count: 0,
            cmdline_len: 0,
            has_rsdp: 0,
            rsdp: 0,
            regions: [REGION; MAX_REGIONS],
            modules: [MODULE; MAX_MODULES],
            cmdline: [0; MAX_CMDLINE],
        }
    }

    /// Fill `self` from `info` (the loader side). Everything in a `BootInfo` fits by
    /// construction: the capacities are the same constants.
    pub fn encode(&mut self, info: &BootInfo) {
        *self = Handoff::new();
        for (slot, r) in self.regions.iter_mut().zip(info.memory.regions()) {
            *slot = HandoffRegion { start: r.start, end: r.end, kind: kind_to_u32(r.kind), reserved: 0 };
        }
        self.region_count = info.memory.len() as u32;
        for (slot, m) in self.modules.iter_mut().zip(info.modules.iter()) {
            let text = m.cmdline.as_str().as_bytes();
            slot.start = m.start;
            slot.end = m.end;
            slot.cmdline_len = text.len() as u32;
            slot.cmdline[..text.len()].copy_from_slice(text);
        }
        self.module_count = info.modules_given() as u32;
        let text = info.cmdline.as_str().as_bytes();
        self.cmdline_len = text.len() as u32;
        self.cmdline[..text.len()].copy_from_slice(text);
        if let Some(rsdp) = info.rsdp {
            self.has_rsdp = 1;
            self.rsdp = rsdp;
        }
    }

    /// The hand-off as bytes, for writing it to memory.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: `Handoff` is `repr(C)` of integers and byte arrays with no implicit padding
        // (checked by a test), so all `HANDOFF_SIZE` bytes are initialized.
        unsafe { core::slice::from_raw_parts(self as *const Handoff as *const u8, HANDOFF_SIZE) }
    }

    fn as_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_bytes`; and every bit pattern is a valid `Handoff`.
        unsafe { core::slice::from_raw_parts_mut(self as *mut Handoff as *mut u8, HANDOFF_SIZE) }
    }

    /// Validate the hand-off and turn it into a `BootInfo` that says it lives at `addr`.
    pub fn decode(&self, addr: u64) -> Result<BootInfo, BootError> {
        if self.signature != HANDOFF_SIGNATURE {
            return Err(BootError::Malformed("UEFI hand-off signature"));
        }
        if self.version != HANDOFF_VERSION || self.size as usize != HANDOFF_SIZE {
            return Err(BootError::Malformed("UEFI hand-off version (loader and kernel do not match)"));
        }
        let regions =
            self.regions.get(..self.region_count as usize).ok_or(BootError::TooMany("memory regions"))?;
        let kept = (self.module_count as usize).min(MAX_MODULES);
        let modules = &self.modules[..kept];
        let mut memory = MemoryMap::new();
        for r in regions {
            let kind = kind_from_u32(r.kind).ok_or(BootError::Malformed("UEFI hand-off memory kind"))?;
            if r.end < r.start {
                return Err(BootError::Malformed("UEFI hand-off memory region"));
            }
            memory.add(MemoryRegion::new(r.start, r.end, kind))?;
        }
        if memory.is_empty() {
            return Err(BootError::NoMemoryMap);
        }
        memory.normalize()?;
        let mut mods = FixedVec::<Module, MAX_MODULES>::new();
        for m in modules {
            if m.end < m.start {
                return Err(BootError::Malformed("UEFI hand-off module range"));
            }
            let text = m
                .cmdline
                .get(..m.cmdline_len as usize)
                .and_then(|b| core::str::from_utf8(b).ok())
                .ok_or(BootError::Malformed("UEFI hand-off module command line"))?;
            let cmdline =
                FixedStr::try_from_str(text).map_err(|_| BootError::TooMany("module command line"))?;
            // Cannot fail: at most MAX_MODULES were taken above.
            let _ = mods.push(Module { start: m.start, end: m.end, cmdline });
        }
        let text = self
            .cmdline
            .get(..self.cmdline_len as usize)
            .and_then(|b| core::str::from_utf8(b).ok())
            .ok_or(BootError::Malformed("UEFI hand-off command line"))?;
        Ok(BootInfo {
            loader: Loader::Uefi,
            memory,
            modules: mods,
            modules_dropped: self.module_count - kept as u32,
            cmdline: crate::cmdline::kernel_cmdline(text)?,
            rsdp: (self.has_rsdp == 1).then_some(self.rsdp),
            loader_info: (addr, addr + (HANDOFF_SIZE as u64).next_multiple_of(4096)),
        })
    }
}

impl Default for Handoff {
    fn default() -> Self {
        Self::new()
    }
}

/// Copy the hand-off from physical address `addr` and validate it (the kernel side).
pub fn parse(addr: u64, mem: &dyn PhysRead) -> Result<BootInfo, BootError> {
    let mut handoff = Handoff::new();
    if !addr.is_multiple_of(8) || !mem.read(addr, handoff.as_bytes_mut()) {
        return Err(BootError::Unreadable { addr });
    }
    handoff.decode(addr)
}

/// Find the 64-bit UEFI entry address in the first bytes of a kernel image's first loadable
/// segment (see [`UEFI_ENTRY_SIGNATURE`]).
pub fn find_uefi_entry(segment: &[u8]) -> Option<u64> {
    let window = &segment[..segment.len().min(8192)];
    window.chunks_exact(8).enumerate().find_map(|(i, chunk)| {
        if chunk != UEFI_ENTRY_SIGNATURE {
            return None;
        }
        let bytes = window.get((i + 1) * 8..(i + 2) * 8)?;
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    struct Buf {
        base: u64,
        bytes: Vec<u8>,
    }

    impl PhysRead for Buf {
        fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
            let Some(off) = addr.checked_sub(self.base) else { return false };
            match self.bytes.get(off as usize..off as usize + buf.len()) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    true
                }
                None => false,
            }
        }
    }

    fn sample() -> BootInfo {
        let mut memory = MemoryMap::new();
        memory.add(MemoryRegion::new(0, 0xA0000, MemoryKind::Usable)).unwrap();
        memory.add(MemoryRegion::new(0x100000, 0x2000_0000, MemoryKind::Usable)).unwrap();
        memory.add(MemoryRegion::new(0x1F00_0000, 0x1F10_0000, MemoryKind::AcpiNvs)).unwrap();
        memory.normalize().unwrap();
        let mut modules = FixedVec::new();
        modules
            .push(Module {
                start: 0x300000,
                end: 0x301234,
                cmdline: FixedStr::try_from_str("name=demo mem=64 mode=long").unwrap(),
            })
            .unwrap();
        BootInfo {
            loader: Loader::Uefi,
            memory,
            modules,
            modules_dropped: 0,
            cmdline: FixedStr::try_from_str("log=info test=boot").unwrap(),
            rsdp: Some(0x1FF7_E014),
            loader_info: (0, 0),
        }
    }

    #[test]
    fn no_implicit_padding() {
        assert_eq!(core::mem::size_of::<HandoffRegion>(), 24);
        assert_eq!(core::mem::size_of::<HandoffModule>(), 24 + MAX_MODULE_CMDLINE);
        assert_eq!(
            HANDOFF_SIZE,
            40 + 24 * MAX_REGIONS + (24 + MAX_MODULE_CMDLINE) * MAX_MODULES + MAX_CMDLINE
        );
    }

    #[test]
    fn round_trip_through_memory() {
        let info = sample();
        let mut h = Handoff::new();
        h.encode(&info);
        let mem = Buf { base: 0x7000_0000, bytes: h.as_bytes().to_vec() };
        let back = parse(0x7000_0000, &mem).unwrap();
        assert_eq!(back.loader_info, (0x7000_0000, 0x7000_0000 + 12288));
        assert_eq!(BootInfo { loader_info: (0, 0), ..back }, info);
    }

    #[test]
    fn modules_beyond_the_capacity_travel_as_a_count() {
        // The loader keeps the first MAX_MODULES and counts the rest.
        let mut info = sample();
        while info.modules.len() < MAX_MODULES {
            let mut m = info.modules[0];
            m.start += 0x10000 * info.modules.len() as u64;
            m.end = m.start + 0x1000;
            info.modules.push(m).unwrap();
        }
        info.modules_dropped = 3;
        let mut h = Handoff::new();
        h.encode(&info);
        assert_eq!(h.module_count, MAX_MODULES as u32 + 3);
        let back = h.decode(0).unwrap();
        assert_eq!((back.modules.len(), back.modules_dropped, back.modules_given()), (MAX_MODULES, 3, 19));
        assert_eq!(BootInfo { loader_info: (0, 0), ..back }, info);
        let mut all = h;
        all.module_count = u32::MAX;
        assert_eq!(all.decode(0).unwrap().modules_dropped, u32::MAX - MAX_MODULES as u32);
    }

    #[test]
    fn rejects_garbage() {
        let info = sample();
        let mut h = Handoff::new();
        h.encode(&info);
        let mem = Buf { base: 0x1000, bytes: h.as_bytes().to_vec() };
        assert_eq!(parse(0x1008, &mem), Err(BootError::Unreadable { addr: 0x1008 }));
        let mut bad = h;
        bad.signature[0] = b'X';
        assert!(bad.decode(0).is_err());
        let mut bad = h;
        bad.version = 7;
        assert!(bad.decode(0).is_err());
        let mut bad = h;
        bad.region_count = MAX_REGIONS as u32 + 1;
        assert_eq!(bad.decode(0), Err(BootError::TooMany("memory regions")));
        let mut bad = h;
        bad.regions[0].kind = 9;
        assert!(bad.decode(0).is_err());
        let mut bad = h;
        bad.modules[0].cmdline[0] = 0xFF;
        assert!(bad.decode(0).is_err());
        let mut bad = h;
        bad.region_count = 0;
        assert_eq!(bad.decode(0), Err(BootError::NoMemoryMap));
    }

    #[test]
    fn from_multiboot_accepts_the_uefi_magic() {
        let mut h = Handoff::new();
        h.encode(&sample());
        let mem = Buf { base: 0x5000, bytes: h.as_bytes().to_vec() };
        // SAFETY: the UEFI path reads only through `mem`.
        let info = unsafe { BootInfo::from_multiboot(UEFI_HANDOFF_MAGIC, 0x5000, &mem) }.unwrap();
        assert_eq!(info.loader, Loader::Uefi);
    }

    #[test]
    fn uefi_memory_types() {
        use MemoryKind::*;
        let kinds: Vec<MemoryKind> = (0..16).map(memory_kind_from_uefi).collect();
        assert_eq!(
            kinds,
            [
                Reserved,
                Usable,
                Usable,
                Usable,
                Usable,
                Reserved,
                Reserved,
                Usable,
                BadMemory,
                AcpiReclaimable,
                AcpiNvs,
                Reserved,
                Reserved,
                Reserved,
                Reserved,
                Reserved
            ]
        );
    }

    #[test]
    fn entry_marker() {
        let mut seg = std::vec![0u8; 64];
        assert_eq!(find_uefi_entry(&seg), None);
        seg[24..32].copy_from_slice(&UEFI_ENTRY_SIGNATURE);
        seg[32..40].copy_from_slice(&0x10_2345u64.to_le_bytes());
        assert_eq!(find_uefi_entry(&seg), Some(0x10_2345));
        // Truncated after the signature: nothing.
        assert_eq!(find_uefi_entry(&seg[..36]), None);
    }
}
