//! The 64-bit entry from Basalt's UEFI loader (boot/uefi).
//!
//! The loader has exited boot services and jumps here in long mode with interrupts off,
//! RDI = `UEFI_HANDOFF_MAGIC`, RSI = the physical address of the `Handoff` (below 4 GiB), on a
//! stack of its own and on the firmware's identity-mapped page tables. Every one of those
//! firmware structures (page tables, GDT, stack) lives in memory that is free RAM from now on,
//! so before calling Rust this entry moves onto Basalt's own: a boot GDT, page tables that
//! identity-map the first 4 GiB with 2 MiB pages (like the multiboot trampoline's), and the
//! boot stack. EFER.NXE and CR0.WP are set as the multiboot path sets them.
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
    mov %edi, %r12d                     /* magic */
    mov %rsi, %r13                      /* hand-off address */

    /* PML4[0] -> PDPT; PDPT[0..4] -> PD0..PD3; each PD maps 1 GiB with 2 MiB pages. */
    lea uefi_pdpt(%rip), %rax
    or $0x3, %rax
    mov %rax, uefi_pml4(%rip)
    xor %ecx, %ecx
    lea uefi_pd(%rip), %rdx
    lea uefi_pdpt(%rip), %rdi
1:  mov %rcx, %rax
    shl $12, %rax
    add %rdx, %rax
    or $0x3, %rax
    mov %rax, (%rdi,%rcx,8)
    inc %ecx
    cmp $4, %ecx
    jne 1b
    xor %ecx, %ecx
2:  mov %rcx, %rax
    shl $21, %rax
    or $0x83, %rax                      /* present, writable, 2 MiB page */
    mov %rax, (%rdx,%rcx,8)
    inc %ecx
    cmp $2048, %ecx
    jne 2b

    mov $0xC0000080, %ecx               /* IA32_EFER */
    rdmsr
    or $0x800, %eax                     /* NXE */
    wrmsr
    mov %cr0, %rax
    or $0x10000, %rax                   /* WP */
    mov %rax, %cr0
    lea uefi_pml4(%rip), %rax
    mov %rax, %cr3

    lgdt uefi_gdt_ptr(%rip)
    lea 3f(%rip), %rax
    pushq $0x08
    push %rax
    lretq
3:  mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    lea boot_stack_top(%rip), %rsp
    xor %ebp, %ebp
    mov %r12d, %edi
    mov %r13, %rsi
    call basalt_main
4:  cli
    hlt
    jmp 4b

    .section .rodata.uefi_gdt, "a"
    .balign 16
uefi_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF            /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF            /* 0x10: data */
uefi_gdt_end:
uefi_gdt_ptr:
    .short uefi_gdt_end - uefi_gdt - 1
    .quad uefi_gdt

    .section .bss.uefi_tables, "aw", @nobits
    .balign 4096
uefi_pml4:  .skip 4096
uefi_pdpt:  .skip 4096
uefi_pd:    .skip 4096 * 4
    "#,
    options(att_syntax)
);
