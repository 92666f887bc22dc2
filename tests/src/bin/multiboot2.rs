//! A Multiboot2 kernel (ELF64, as Multiboot2 allows): its header asks for the command line, the
//! boot loader name, modules, basic memory information, the memory map and the ACPI 2.0 RSDP
//! (information request tag, none optional) and page-aligned modules, and it checks what Basalt
//! gives it (basalt_guests::mbkernel).
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::mbkernel::Version;
#[cfg(target_os = "none")]
use basalt_guests::mbkernel::V2_MAGIC;

basalt_guests::multiboot_kernel!(Version::V2);

#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".pushsection .multiboot_header, \"a\"",
    ".balign 8",
    "mb2_header:",
    ".long {magic}",
    ".long 0", // i386 protected mode
    ".long mb2_header_end - mb2_header",
    ".long 0x100000000 - ({magic} + (mb2_header_end - mb2_header))",
    // Information request: cmdline, boot loader name, modules, basic meminfo, mmap, ACPI new.
    ".balign 8",
    ".short 1, 0",
    ".long 8 + 4 * 6",
    ".long 1, 2, 3, 4, 6, 15",
    // Module alignment.
    ".balign 8",
    ".short 6, 0",
    ".long 8",
    // End.
    ".balign 8",
    ".short 0, 0",
    ".long 8",
    "mb2_header_end:",
    ".popsection",
    magic = const V2_MAGIC,
);
