//! A multiboot v1 kernel (delivered as ELF32, see xtask/src/multiboot_guest.rs): its header asks
//! for page-aligned modules and memory information, and it checks what Basalt gives it
//! (basalt_guests::mbkernel): EAX, the memory sizes and map, the command line, the modules and
//! the boot loader name.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::mbkernel::Version;
#[cfg(target_os = "none")]
use basalt_guests::mbkernel::{V1_CHECKSUM, V1_FLAGS, V1_MAGIC};

basalt_guests::multiboot_kernel!(Version::V1);

// The header: magic, flags (no a.out kludge: the ELF's segments say where it loads), checksum.
#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".pushsection .multiboot_header, \"a\"",
    ".balign 4",
    ".long {magic}",
    ".long {flags}",
    ".long {checksum}",
    ".popsection",
    magic = const V1_MAGIC,
    flags = const V1_FLAGS,
    checksum = const V1_CHECKSUM,
);
