//! The 8259 PIC pair and the PIT from real mode (`mode=real`), the way a BIOS-era OS uses them:
//! ICW1-ICW4 (IRQ0-7 at vector 8, IRQ8-15 at 0x70), only IRQ0 unmasked, PIT channel 0 in mode
//! 2 at 100 Hz, IRQ0 through the real-mode IVT with an EOI each. Counts [`TICKS`] ticks, each
//! waking one HLT (the first may come before the first HLT runs), and checks the master's ISR is clear at the end (every EOI took). Done
//! through a ucall record; AssertFail with args (ticks, HLT wakes, ISR) otherwise.
#![cfg_attr(target_os = "none", no_std, no_main)]

basalt_guests::panic_handler!();

/// IRQ0 ticks to count.
pub const TICKS: u16 = 5;

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
    "mov ss, ax",
    "mov sp, 0x7000",
    // IVT[8] = 0:pr_irq0.
    "mov word ptr [8 * 4], offset pr_irq0",
    "mov word ptr [8 * 4 + 2], 0",
    // ICW1: edge, cascade, ICW4 needed.
    "mov al, 0x11",
    "out 0x20, al",
    "out 0xA0, al",
    // ICW2: vector bases.
    "mov al, 0x08",
    "out 0x21, al",
    "mov al, 0x70",
    "out 0xA1, al",
    // ICW3: slave on IRQ2, slave identity 2.
    "mov al, 0x04",
    "out 0x21, al",
    "mov al, 0x02",
    "out 0xA1, al",
    // ICW4: 8086 mode.
    "mov al, 0x01",
    "out 0x21, al",
    "out 0xA1, al",
    // OCW1: only IRQ0.
    "mov al, 0xFE",
    "out 0x21, al",
    "mov al, 0xFF",
    "out 0xA1, al",
    // The mask reads back.
    "in al, 0x21",
    "cmp al, 0xFE",
    "jne 5f",
    // PIT channel 0, mode 2, 11932 (100 Hz: each tick taken before the next, everywhere).
    "mov al, 0x34",
    "out 0x43, al",
    "mov ax, 11932",
    "out 0x40, al",
    "mov al, ah",
    "out 0x40, al",
    "xor cx, cx",
    "sti",
    "2:",
    "hlt",
    "inc cx",
    "cmp word ptr [pr_ticks], {ticks}",
    "jb 2b",
    "cli",
    // Mask IRQ0 again, read the master's ISR (OCW3 0x0B).
    "mov al, 0xFF",
    "out 0x21, al",
    "mov al, 0x0B",
    "out 0x20, al",
    "in al, 0x20",
    "xor ah, ah",
    "mov word ptr [pr_record + 24], ax",
    "mov word ptr [pr_record + 16], cx",
    "mov dx, word ptr [pr_ticks]",
    "mov word ptr [pr_record + 8], dx",
    // HLT wakes: one per tick, or one fewer when the first tick was already pending at the
    // STI (it is taken at the HLT's boundary, before the HLT runs, as under KVM's interrupt
    // window: the handler returns to the HLT).
    "mov bx, cx",
    "inc bx",
    "cmp cx, dx",
    "je 7f",
    "cmp bx, dx",
    "jne 5f",
    "7:",
    "cmp dx, {ticks}",
    "jne 5f",
    "test al, al",
    "jnz 5f",
    "mov dword ptr [pr_record], {done}",
    "5:",
    "mov eax, offset pr_record",
    "mov dx, {port}",
    "out dx, eax",
    "6:",
    "cli",
    "hlt",
    "jmp 6b",
    "pr_irq0:",
    "push ax",
    "inc word ptr cs:[pr_ticks]",
    "mov al, 0x20",
    "out 0x20, al",
    "pop ax",
    "iret",
    ".section .data.pr, \"aw\"",
    ".balign 2",
    "pr_ticks:",
    ".word 0",
    "basalt_ucall_record pr_record, {fail}, 0, \"tests/src/bin/pic-realmode.rs\", \"IRQ0 ticks (args[0]), HLT wakes (args[1]) or the master ISR (args[2]) are off\"",
    ".code64",
    ticks = const TICKS,
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
