//! The 64-bit entry from Basalt's UEFI loader (boot/uefi).
//!
//! The loader has exited boot services and jumps here in long mode with interrupts off,
//! RDI = `UEFI_HANDOFF_MAGIC`, RSI = the physical address of the `Handoff` (below 4 GiB), on a
//! stack of its own and on the firmware's identity-mapped page tables. Every one of those
//! firmware structures (page tables, GDT, stack) lives in memory that is free RAM from now on,
//! so before calling Rust this entry moves onto Basalt's own: the multiboot trampoline's boot
//! GDT and page tables (identity-mapping the first 4 GiB with 2 MiB pages), then joins its
//! long-mode path (`basalt_long_mode_entry`), which takes the boot stack and calls
//! `basalt_main`. EFER.NXE and CR0.WP are set as the multiboot path sets them.
//!
//! The loader finds this entry through the `BASALTUE` marker below, which sits in the
//! `.multiboot_header` section (first 8 KiB of the image) and holds the entry address; the
//! ELF entry point stays `_start`, the multiboot entry.

core::arch::global_asm!(
    r#"
    .section .multiboot_header, "a"
    .balign 8
basalt_uefi_marker:
    .ascii "BASALTUE"
    .quad basalt_uefi_entry

    .section .boot.text, "ax"
    .code64
    .global basalt_uefi_entry
basalt_uefi_entry:
    cli
    cld
    mov %rdi, boot_magic(%rip)
    mov %rsi, boot_info(%rip)
    mov $0xC0000080, %ecx               /* IA32_EFER */
    rdmsr
    or $0x800, %eax                     /* NXE */
    wrmsr
    mov %cr0, %rax
    or $0x10000, %rax                   /* WP */
    mov %rax, %cr0
    lea boot_pml4(%rip), %rax
    mov %rax, %cr3
    lgdt boot_gdt_ptr(%rip)
    /* Reload CS with the boot GDT's code selector and continue on the shared path. */
    lea basalt_long_mode_entry(%rip), %rax
    pushq $0x08
    push %rax
    lretq
    "#,
    options(att_syntax)
);
