//! How Basalt gets the machine.
//!
//! Every boot path (multiboot1 from QEMU `-kernel` or GRUB, multiboot2 from GRUB, the UEFI
//! loader) produces one arch-neutral [`BootInfo`]: the firmware memory map, the modules with
//! their command lines, the kernel command line and the ACPI RSDP. The kernel never looks at
//! a loader's own structures after this conversion.
//!
//! Nothing here allocates: `BootInfo` is built before Basalt has a heap, so every list has a
//! fixed capacity and overflowing it is reported as an error rather than silently truncated.
#![no_std]

pub mod cmdline;
pub mod elf;
#[cfg(target_os = "none")]
mod entry;
pub mod fixed;
pub mod memmap;
pub mod multiboot1;
pub mod multiboot2;
pub mod uefi;
#[cfg(target_os = "none")]
mod uefi_entry;

pub use cmdline::Cmdline;
pub use fixed::{FixedStr, FixedVec};
pub use memmap::{MemoryKind, MemoryMap, MemoryRegion};
pub use uefi::UEFI_HANDOFF_MAGIC;

/// Multiboot1 magic value the loader leaves in EAX (Multiboot Specification 0.6.96, 3.2).
pub const MULTIBOOT1_BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;
/// Multiboot2 magic value the loader leaves in EAX (Multiboot2 Specification, 3.3).
pub const MULTIBOOT2_BOOTLOADER_MAGIC: u32 = 0x36D7_6289;

/// Most memory-map entries a `BootInfo` holds.
pub const MAX_REGIONS: usize = 128;
/// Most boot modules a `BootInfo` holds.
pub const MAX_MODULES: usize = 16;
/// Longest kernel command line kept, in bytes.
pub const MAX_CMDLINE: usize = 1024;
/// Longest module command line kept, in bytes.
pub const MAX_MODULE_CMDLINE: usize = 256;

/// Which loader handed us the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loader {
    Multiboot1,
    Multiboot2,
    Uefi,
}

/// One boot module (a guest image, an initrd, a config): physical range and command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Module {
    /// First byte, physical.
    pub start: u64,
    /// One past the last byte, physical.
    pub end: u64,
    pub cmdline: FixedStr<MAX_MODULE_CMDLINE>,
}

/// Everything Basalt needs from its loader, in one arch-neutral shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootInfo {
    pub loader: Loader,
    /// The firmware memory map, normalized (sorted, merged, no overlaps).
    pub memory: MemoryMap,
    /// The first [`MAX_MODULES`] modules the loader gave.
    pub modules: FixedVec<Module, MAX_MODULES>,
    /// How many modules the loader gave beyond the first [`MAX_MODULES`]: not kept, so never
    /// started. The kernel reports them (a test fails) instead of ignoring them silently.
    pub modules_dropped: u32,
    pub cmdline: FixedStr<MAX_CMDLINE>,
    /// Physical address of the ACPI RSDP, when the loader knew it.
    pub rsdp: Option<u64>,
    /// Physical range of the loader's own info structure (it must not be handed out before
    /// this `BootInfo` was built; afterwards it is free).
    pub loader_info: (u64, u64),
}

/// Why a loader's structure could not be turned into a `BootInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootError {
    /// EAX held neither multiboot magic value nor the UEFI loader's.
    BadMagic(u32),
    /// The loader's structure (or a pointer inside it) could not be read.
    Unreadable { addr: u64 },
    /// The loader gave no memory map at all.
    NoMemoryMap,
    /// More entries than the fixed capacity of a list.
    TooMany(&'static str),
    /// A structure was malformed (bad size, bad alignment, bad tag).
    Malformed(&'static str),
}

impl core::fmt::Display for BootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootError::BadMagic(m) => write!(f, "unknown boot loader magic {m:#x}"),
            BootError::Unreadable { addr } => write!(f, "boot information unreadable at {addr:#x}"),
            BootError::NoMemoryMap => write!(f, "the boot loader gave no memory map"),
            BootError::TooMany(what) => write!(f, "too many {what} for Basalt's boot tables"),
            BootError::Malformed(what) => write!(f, "malformed boot information: {what}"),
        }
    }
}

/// Reads physical memory for the multiboot1 parser, whose structures are chains of physical
/// pointers. The kernel reads through its identity map; host tests read from a buffer.
pub trait PhysRead {
    /// Fill `buf` from physical address `addr`; `false` if any byte is outside readable memory.
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool;
}

impl BootInfo {
    /// How many modules the loader gave, kept or not.
    pub fn modules_given(&self) -> usize {
        self.modules.len() + self.modules_dropped as usize
    }

    /// Build a `BootInfo` from the register values a multiboot loader leaves (EAX magic, EBX
    /// info pointer), whichever flavour it is, or those Basalt's UEFI loader leaves
    /// ([`UEFI_HANDOFF_MAGIC`] and the address of a [`uefi::Handoff`]).
    ///
    /// # Safety
    /// `info` must be the physical address the loader passed, identity-mapped and readable,
    /// and `mem` must read physical memory faithfully.
    pub unsafe fn from_multiboot(magic: u32, info: u64, mem: &dyn PhysRead) -> Result<Self, BootError> {
        match magic {
            MULTIBOOT1_BOOTLOADER_MAGIC => multiboot1::parse(info, mem),
            // SAFETY: forwarded from the caller.
            MULTIBOOT2_BOOTLOADER_MAGIC => unsafe { multiboot2::parse(info) },
            UEFI_HANDOFF_MAGIC => uefi::parse(info, mem),
            other => Err(BootError::BadMagic(other)),
        }
    }
}
