//! Booting a 64-bit guest without Basalt, from the same ELF: a multiboot (v1) header with the
//! a.out kludge and a 32-bit trampoline that builds what Basalt's guest boot ABI gives (see the
//! crate docs) and jumps to the guest's 64-bit `_start`.
//!
//! QEMU's `-kernel` loads multiboot v1 images only, and an ELF64 one only through the a.out
//! kludge (flags bit 16): the header names where the image loads (`load_addr` to
//! `load_end_addr` from the file, zeroes to `bss_end_addr`) and the 32-bit entry point. QEMU
//! enters there in 32-bit protected mode, paging off, EAX = [`BOOTLOADER_MAGIC`]. Basalt ignores
//! the header and starts the vCPU at the ELF's `e_entry`, the 64-bit `_start`, as before.
//!
//! The same macro puts Basalt's guest-ABI note in the image (`basalt_abi::GUEST_ABI_NOTE_*`,
//! section `.note.basalt`, a `PT_NOTE` segment in `guest.ld`): the note is what tells Basalt to
//! start the image at its 64-bit entry rather than as the multiboot kernel its header describes.
//!
//! [`entry!`](crate::entry!) includes the header and trampoline
//! ([`multiboot_entry!`](crate::multiboot_entry!)), so every 64-bit guest boots both ways;
//! `guest.ld` places the `.multiboot` section first (the header must lie in the file's first
//! 8 KiB) and defines the load and bss end symbols.

use core::sync::atomic::{AtomicU32, Ordering};

/// The header's magic.
pub const MAGIC: u32 = 0x1BAD_B002;
/// Flags bit 16: the header's address fields are valid (the a.out kludge).
pub const FLAG_ADDRESSES: u32 = 1 << 16;
/// The header's flags: addresses only (no memory map, no video mode, no module alignment).
pub const FLAGS: u32 = FLAG_ADDRESSES;
/// magic + flags + checksum = 0 (mod 2^32).
pub const CHECKSUM: u32 = 0u32.wrapping_sub(MAGIC.wrapping_add(FLAGS));
/// What a multiboot loader leaves in EAX.
pub const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;

/// The guest boot ABI's structures, as Basalt builds them (hypervisor/src/vm/setup.rs).
pub const GDT_ADDR: u32 = 0x500;
pub const PML4_ADDR: u32 = 0x1000;
pub const PDPT_ADDR: u32 = 0x2000;
pub const PD_ADDR: u32 = 0x3000;
pub const STACK_TOP: u32 = 0x8_0000;
/// Null, 64-bit code (selector 0x08), data (0x10).
pub const GDT: [u64; 3] = [0, 0x00AF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF];
pub const CODE_SELECTOR: u16 = 0x08;
pub const DATA_SELECTOR: u16 = 0x10;
/// A table entry: present, writable.
pub const TABLE_FLAGS: u32 = 0x3;
/// A PD entry: present, writable, 2 MiB page.
pub const LARGE_PAGE_FLAGS: u32 = 0x83;
/// CR0 = PE | MP | ET | NE | WP | PG.
pub const CR0: u32 = (1 << 0) | (1 << 1) | (1 << 4) | (1 << 5) | (1 << 16) | (1 << 31);
/// CR4 = PAE | OSFXSR | OSXMMEXCPT.
pub const CR4: u32 = (1 << 5) | (1 << 9) | (1 << 10);
/// IA32_EFER and its bits LME | NXE (the CPU sets LMA when paging goes on).
pub const EFER_MSR: u32 = 0xC000_0080;
pub const EFER: u32 = (1 << 8) | (1 << 11);

/// Set to 1 by the trampoline: the guest came in through the multiboot header, not through
/// Basalt's 64-bit entry.
pub static ENTERED: AtomicU32 = AtomicU32::new(0);

/// Whether the guest was booted through its multiboot header (by QEMU `-kernel`).
pub fn entered() -> bool {
    ENTERED.load(Ordering::Relaxed) != 0
}

/// The multiboot header and the 32-bit trampoline to `_start`, in section `.multiboot`.
/// [`entry!`](crate::entry!) includes it; a guest with its own `_start` can name it itself.
#[macro_export]
macro_rules! multiboot_entry {
    () => {
        #[cfg(target_os = "none")]
        ::core::arch::global_asm!(
            // Basalt's guest-ABI note (basalt_abi::GUEST_ABI_NOTE_*): Basalt starts this image
            // at its 64-bit e_entry, not as the multiboot kernel the header below describes.
            ".pushsection .note.basalt, \"a\", @note",
            ".balign 4",
            ".long basalt_guest_note_name_end - basalt_guest_note_name",
            ".long 4",
            ".long {note_type}",
            "basalt_guest_note_name:",
            ".asciz \"Basalt\"",
            "basalt_guest_note_name_end:",
            ".balign 4",
            ".long {abi_version}",
            ".popsection",
            ".pushsection .multiboot, \"ax\"",
            ".balign 4",
            "basalt_multiboot_header:",
            ".long {magic}",
            ".long {flags}",
            ".long {checksum}",
            ".long basalt_multiboot_header",
            ".long __basalt_load_start",
            ".long __basalt_load_end",
            ".long __basalt_bss_end",
            ".long basalt_multiboot_entry",
            ".balign 8",
            "basalt_multiboot_gdt:",
            ".quad {gdt0}, {gdt1}, {gdt2}",
            "basalt_multiboot_gdtr:",
            ".word 3 * 8 - 1",
            ".long {gdt_addr}",
            "basalt_multiboot_idtr:",
            ".word 0",
            ".long 0",
            ".code32",
            ".global basalt_multiboot_entry",
            "basalt_multiboot_entry:",
            "cli",
            "cld",
            "movl ${stack_top}, %esp",
            "pushl $2",
            "popfl",
            "movl $1, {entered}",
            // The GDT at 0x500.
            "movl $basalt_multiboot_gdt, %esi",
            "movl ${gdt_addr}, %edi",
            "movl $6, %ecx",
            "rep movsl",
            "lgdtl basalt_multiboot_gdtr",
            "lidtl basalt_multiboot_idtr",
            // PML4[0] -> PDPT, PDPT[0] -> PD, PD: 512 2 MiB pages over [0, 1 GiB).
            "movl ${pml4}, %edi",
            "xorl %eax, %eax",
            "movl $3 * 4096 / 4, %ecx",
            "rep stosl",
            "movl ${pdpt} + {table_flags}, {pml4}",
            "movl ${pd} + {table_flags}, {pdpt}",
            "movl ${pd}, %edi",
            "movl ${large_page_flags}, %eax",
            "1:",
            "movl %eax, (%edi)",
            "addl $0x200000, %eax",
            "addl $8, %edi",
            "cmpl ${pd} + 4096, %edi",
            "jb 1b",
            "movl ${cr4}, %eax",
            "movl %eax, %cr4",
            "movl ${pml4}, %eax",
            "movl %eax, %cr3",
            "movl ${efer_msr}, %ecx",
            "rdmsr",
            "orl ${efer}, %eax",
            "wrmsr",
            "movl ${cr0}, %eax",
            "movl %eax, %cr0",
            "ljmpl ${code}, $basalt_multiboot_long",
            ".code64",
            "basalt_multiboot_long:",
            "movl ${data}, %eax",
            "movw %ax, %ds",
            "movw %ax, %es",
            "movw %ax, %fs",
            "movw %ax, %gs",
            "movw %ax, %ss",
            "movl ${stack_top}, %esp",
            "jmp _start",
            ".popsection",
            note_type = const $crate::GUEST_ABI_NOTE_TYPE,
            abi_version = const $crate::GUEST_ABI_VERSION,
            magic = const $crate::multiboot::MAGIC,
            flags = const $crate::multiboot::FLAGS,
            checksum = const $crate::multiboot::CHECKSUM,
            gdt0 = const $crate::multiboot::GDT[0],
            gdt1 = const $crate::multiboot::GDT[1],
            gdt2 = const $crate::multiboot::GDT[2],
            gdt_addr = const $crate::multiboot::GDT_ADDR,
            stack_top = const $crate::multiboot::STACK_TOP,
            entered = sym $crate::multiboot::ENTERED,
            pml4 = const $crate::multiboot::PML4_ADDR,
            pdpt = const $crate::multiboot::PDPT_ADDR,
            pd = const $crate::multiboot::PD_ADDR,
            table_flags = const $crate::multiboot::TABLE_FLAGS,
            large_page_flags = const $crate::multiboot::LARGE_PAGE_FLAGS,
            cr0 = const $crate::multiboot::CR0,
            cr4 = const $crate::multiboot::CR4,
            efer_msr = const $crate::multiboot::EFER_MSR,
            efer = const $crate::multiboot::EFER,
            code = const $crate::multiboot::CODE_SELECTOR,
            data = const $crate::multiboot::DATA_SELECTOR,
            options(att_syntax),
        );
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checksum_and_flags() {
        assert_eq!(MAGIC.wrapping_add(FLAGS).wrapping_add(CHECKSUM), 0);
        assert_eq!(FLAGS, 0x0001_0000);
        assert_eq!(CHECKSUM, 0xE451_4FFE);
    }

    #[test]
    fn the_note_names_basalt() {
        // The name is spelled out in the macro's assembly.
        assert_eq!(crate::GUEST_ABI_NOTE_NAME, "Basalt");
    }

    #[test]
    fn boot_state_matches_basalts() {
        // The values Basalt's InitialState::long_mode and setup.rs use.
        assert_eq!(CR0, 0x8001_0033);
        assert_eq!(CR4, 0x620);
        assert_eq!(EFER, 0x900);
        assert_eq!(GDT[CODE_SELECTOR as usize / 8], 0x00AF_9A00_0000_FFFF);
        assert_eq!((PML4_ADDR, PDPT_ADDR, PD_ADDR, STACK_TOP), (0x1000, 0x2000, 0x3000, 0x80000));
    }
}
