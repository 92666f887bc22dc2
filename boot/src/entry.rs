//! The multiboot entry: both headers in one ELF and the 32-bit to long-mode trampoline.
//!
//! QEMU's `-kernel` loads multiboot1 only, and refuses ELF64 unless the header carries the
//! a.out kludge (flags bit 16) with explicit load addresses; GRUB's `multiboot2` command reads
//! the multiboot2 header and loads the ELF's segments. Both leave us in 32-bit protected mode
//! with paging off, EAX = magic and EBX = the physical address of the info structure
//! (Multiboot 0.6.96 3.2, Multiboot2 3.3).
//!
//! The trampoline switches to page tables that identity-map the first 4 GiB with 2 MiB pages
//! (enough to reach the kernel, the loader's structures and the local APIC; the assembler
//! builds them, so they are part of the image), enters long mode and calls
//! `basalt_main(magic, info)`, which builds Basalt's real page tables. The UEFI entry
//! (uefi_entry.rs) joins at `basalt_long_mode_entry` on the same GDT and tables.

core::arch::global_asm!(
    r#"
    .set MB1_MAGIC, 0x1BADB002
    .set MB1_FLAGS, 0x00010003          /* page-align modules, memory info, a.out kludge */
    .set MB2_MAGIC, 0xE85250D6
    .set BOOT_STACK_SIZE, 0x40000

    .section .multiboot_header, "a"
    .balign 8
mb2_header:
    .long MB2_MAGIC
    .long 0                             /* architecture: i386 protected mode */
    .long mb2_header_end - mb2_header
    .long 0x100000000 - (MB2_MAGIC + (mb2_header_end - mb2_header))
    .balign 8
    .short 0                            /* end tag */
    .short 0
    .long 8
mb2_header_end:

    .balign 4
mb1_header:
    .long MB1_MAGIC
    .long MB1_FLAGS
    .long 0x100000000 - (MB1_MAGIC + MB1_FLAGS)
    .long mb1_header                    /* header_addr */
    .long __kernel_start                /* load_addr */
    .long __load_end                    /* load_end_addr */
    .long __bss_end                     /* bss_end_addr */
    .long _start                        /* entry_addr */

    .section .boot.text, "ax"
    .code32
    .global _start
_start:
    cli
    cld
    mov %eax, boot_magic
    mov %ebx, boot_info
    mov $boot_stack_top, %esp

    /* Long mode present? CPUID 0x80000001 EDX bit 29. */
    mov $0x80000000, %eax
    cpuid
    cmp $0x80000001, %eax
    jb no_long_mode
    mov $0x80000001, %eax
    cpuid
    bt $29, %edx
    jnc no_long_mode

    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x20, %eax                      /* CR4.PAE */
    mov %eax, %cr4
    mov $0xC0000080, %ecx               /* IA32_EFER */
    rdmsr
    or $0x900, %eax                     /* LME | NXE */
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax                /* PG | WP | PE */
    mov %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $long_mode_entry

no_long_mode:
    /* Nothing to print with yet: write a marker to COM1 raw and stop. */
    mov $0x3F8, %dx
    mov $'!', %al
    out %al, %dx
3:  hlt
    jmp 3b

    .code64
    /* Both entries (this one and the UEFI one) arrive here on the boot GDT and page tables
       with boot_magic and boot_info filled in. */
    .global basalt_long_mode_entry
basalt_long_mode_entry:
long_mode_entry:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    mov $boot_stack_top, %rsp
    xor %ebp, %ebp
    mov boot_magic, %edi
    mov boot_info, %rsi
    call basalt_main
4:  cli
    hlt
    jmp 4b

    .section .rodata.boot_gdt, "a"
    .balign 16
    .global boot_gdt_ptr
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF            /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF            /* 0x10: data */
boot_gdt_end:
boot_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .data.boot_args, "aw"
    .balign 8
    .global boot_magic
    .global boot_info
boot_magic: .quad 0
boot_info:  .quad 0

    /* The boot page tables, built by the assembler: PML4[0] -> PDPT; PDPT[0..4] -> PD0..PD3;
       each PD maps 1 GiB with 2 MiB pages (present, writable, large). */
    .section .data.boot_tables, "aw"
    .balign 4096
    .global boot_pml4
boot_pml4:
    .quad boot_pdpt + 0x3
    .fill 511, 8, 0
boot_pdpt:
    .quad boot_pd + 0x3
    .quad boot_pd + 0x1003
    .quad boot_pd + 0x2003
    .quad boot_pd + 0x3003
    .fill 508, 8, 0
boot_pd:
    .set boot_page, 0
    .rept 2048
    .quad boot_page + 0x83
    .set boot_page, boot_page + 0x200000
    .endr

    .section .bss.boot_stack, "aw", @nobits
    .balign 4096
    .global boot_stack_bottom
boot_stack_bottom:
    .skip BOOT_STACK_SIZE
    .global boot_stack_top
boot_stack_top:
    .code64
    "#,
    options(att_syntax)
);
