//! A real-mode guest (module argument `mode=real`): 16-bit code at 0x8000 sums 1..=10, and
//! sends Done through a ucall record it keeps in its own memory (AssertFail if the sum is off).
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
    "mov es, ax",
    // Sum 1..=10 with LOOP.
    "mov cx, 10",
    "2:",
    "add ax, cx",
    "loop 2b",
    "mov word ptr [real_record + 8], ax", // args[0] = the sum
    "cmp ax, 55",
    "jne 3f",
    "mov dword ptr [real_record], {done}",
    "3:",
    // The record's guest-physical address, with a 32-bit OUT (0x66 prefix in 16-bit code).
    "mov eax, offset real_record",
    "mov dx, {port}",
    "out dx, eax",
    "4:",
    "hlt",
    "jmp 4b",
    // A ucall record (see UcallRecord): AssertFail until the code above makes it Done.
    ".section .data.real_record, \"aw\"",
    "basalt_ucall_record real_record, {fail}, 55, \"tests/src/bin/realmode.rs\", \"real-mode sum of 1..=10 (args[0]) is not 55 (args[1])\"",
    ".code64",
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
