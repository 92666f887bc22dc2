//! A guest that switches itself from real mode to protected mode to long mode (module argument
//! `mode=real`), the way a boot loader does: GDT, CR0.PE, a far jump; page tables, CR4.PAE,
//! EFER.LME through WRMSR (emulated by Basalt), CR0.PG, a far jump to a 64-bit code segment.
//! In 64-bit mode it checks EFER.LMA through RDMSR and ends with Done; any failure on the way
//! ends in a triple fault or an AssertFail ucall.
#![cfg_attr(target_os = "none", no_std, no_main)]

basalt_guests::panic_handler!();

#[cfg(target_os = "none")]
core::arch::global_asm!(
    basalt_guests::ucall_record_macro!(),
    ".section .text.real, \"awx\"",
    ".code16",
    ".global real_start",
    "real_start:",
    "cli",
    "xor ax, ax",
    "mov ds, ax",
    "mov ss, ax",
    "mov sp, 0x7000",
    "lgdt [md_gdt_desc]",
    "mov eax, cr0",
    "or eax, 1",
    "mov cr0, eax",
    ".byte 0x66, 0xea",
    ".long md_pm32",
    ".word 0x08",
    ".code32",
    "md_pm32:",
    "mov ax, 0x10",
    "mov ds, ax",
    "mov es, ax",
    "mov ss, ax",
    "mov esp, 0x7000",
    // Page tables at 0x20000: PML4 -> PDPT 0x21000 -> PD 0x22000, 2 MiB identity pages for the
    // first 16 MiB (all of RAM).
    "mov edi, 0x20000",
    "xor eax, eax",
    "mov ecx, 3 * 1024",
    "rep stosd",
    "mov dword ptr [0x20000], 0x21003",
    "mov dword ptr [0x21000], 0x22003",
    "mov edi, 0x22000",
    "mov eax, 0x83",
    "mov ecx, 8",
    "2:",
    "mov dword ptr [edi], eax",
    "add eax, 0x200000",
    "add edi, 8",
    "loop 2b",
    "mov eax, 0x20000",
    "mov cr3, eax",
    "mov eax, cr4",
    "or eax, 0x20", // PAE
    "mov cr4, eax",
    "mov ecx, 0xC0000080",
    "rdmsr",
    "or eax, 0x100", // LME
    "wrmsr",
    "mov eax, cr0",
    "or eax, 0x80000000", // PG: long mode becomes active (EFER.LMA)
    "mov cr0, eax",
    "ljmp 0x18, offset md_long",
    ".code64",
    "md_long:",
    "mov ax, 0x10",
    "mov ds, ax",
    "mov ss, ax",
    "mov ecx, 0xC0000080",
    "rdmsr",
    "mov dword ptr [md_record + 8], eax", // args[0] = EFER (low half)
    "and eax, 0x500",                    // LME | LMA
    "cmp eax, 0x500",
    "jne 3f",
    "mov dword ptr [md_record], {done}",
    "3:",
    "lea rax, [rip + md_record]",
    "mov dx, {port}",
    "out dx, eax",
    "4:",
    "hlt",
    "jmp 4b",
    ".section .data.md, \"aw\"",
    ".balign 8",
    "md_gdt:",
    ".quad 0",
    ".quad 0x00CF9A000000FFFF", // 0x08 32-bit code
    ".quad 0x00CF92000000FFFF", // 0x10 data
    ".quad 0x00AF9A000000FFFF", // 0x18 64-bit code (L)
    "md_gdt_end:",
    ".balign 4",
    ".word 0",
    "md_gdt_desc:",
    ".word md_gdt_end - md_gdt - 1",
    ".long md_gdt",
    "basalt_ucall_record md_record, {fail}, 0x500, \"tests/src/bin/modes.rs\", \"in 64-bit mode EFER (args[0]) lacks LME|LMA (args[1])\"",
    done = const basalt_guests::UcallKind::Done as u32,
    fail = const basalt_guests::UcallKind::AssertFail as u32,
    port = const basalt_guests::UCALL_PORT,
    file_len = const basalt_guests::UCALL_FILE_LEN,
    msg_len = const basalt_guests::UCALL_MSG_LEN,
    size = const basalt_guests::UCALL_RECORD_SIZE,
);

#[cfg(not(target_os = "none"))]
fn main() {
    // The guest only runs in a Basalt VM; on the host this bin only has to build.
}
