//! Isolation: an #AC delivery loop (the benign-exception loop of CVE-2015-5307). The guest
//! starts in real mode (`mode=real`), enters 32-bit protected mode with CR0.AM set, and drops
//! to ring 3 with EFLAGS.AC on a misaligned stack; its #AC gate leads to ring-3 code, so
//! delivering #AC pushes onto that stack and raises #AC again, forever, without an exit unless
//! the hypervisor intercepts #AC. Basalt does, sees #AC raised while delivering #AC, and stops
//! the VM; the next VM runs. Should the loop not happen, the ring-3 handler reports it.
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
    "lgdt [ac_gdt_desc]",
    "mov eax, cr0",
    "or eax, 0x40001", // PE | AM
    "mov cr0, eax",
    // A 32-bit far jump to the ring-0 code segment.
    ".byte 0x66, 0xea",
    ".long ac_pm32",
    ".word 0x08",
    ".code32",
    "ac_pm32:",
    "mov ax, 0x10",
    "mov ds, ax",
    "mov es, ax",
    "mov ss, ax",
    "mov esp, 0x7000",
    // The #AC gate (vector 17): a 32-bit interrupt gate to ring-3 code (selector 0x1B).
    "mov eax, offset ac_handler",
    "mov word ptr [ac_idt + 17 * 8], ax",
    "shr eax, 16",
    "mov word ptr [ac_idt + 17 * 8 + 6], ax",
    "mov word ptr [ac_idt + 17 * 8 + 2], 0x1b",
    "mov word ptr [ac_idt + 17 * 8 + 4], 0xee00",
    "lidt [ac_idt_desc]",
    // To ring 3: SS 0x23, ESP misaligned, EFLAGS = AC | IOPL 3 | 2, CS 0x1B.
    "push 0x23",
    "push 0x7001",
    "push 0x43002",
    "push 0x1b",
    "mov eax, offset ac_user",
    "push eax",
    "iretd",
    "ac_user:",
    "push eax", // misaligned at CPL 3 with AC: #AC
    "jmp ac_user",
    // Reached only if #AC delivery did not loop: report it (IOPL 3 allows the OUT).
    "ac_handler:",
    "mov eax, offset ac_record",
    "mov dx, {port}",
    "out dx, eax",
    "2:",
    "jmp 2b",
    ".section .data.ac, \"aw\"",
    ".balign 8",
    "ac_gdt:",
    ".quad 0",
    ".quad 0x00CF9A000000FFFF", // 0x08 ring-0 code
    ".quad 0x00CF92000000FFFF", // 0x10 ring-0 data
    ".quad 0x00CFFA000000FFFF", // 0x18 ring-3 code
    ".quad 0x00CFF2000000FFFF", // 0x20 ring-3 data
    "ac_gdt_end:",
    ".balign 8",
    "ac_idt:",
    ".skip 18 * 8",
    "ac_idt_end:",
    ".balign 4",
    ".word 0",
    "ac_gdt_desc:",
    ".word ac_gdt_end - ac_gdt - 1",
    ".long ac_gdt",
    ".balign 4",
    ".word 0",
    "ac_idt_desc:",
    ".word ac_idt_end - ac_idt - 1",
    ".long ac_idt",
    "basalt_ucall_record ac_record, {fail}, 0, \"tests/src/bin/acloop.rs\", \"#AC delivery did not loop: the ring-3 #AC handler ran\"",
    ".code64",
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
