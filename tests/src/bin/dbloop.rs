//! Isolation: a #DB loop with no progress (the benign-exception loop behind CVE-2015-8104). An
//! instruction breakpoint on the first instruction of the guest's own #DB handler makes every
//! #DB delivery raise the next #DB before the handler runs one instruction. Basalt intercepts
//! #DB (so the CPU cannot loop inside the guest without an exit), reflects it, sees no
//! progress, and stops the VM; the next VM runs.
//!
//! (A data breakpoint on the stack slot the #DB frame is pushed to is the other classic
//! trigger; QEMU 7.2 TCG aborts on a watchpoint hit during event delivery in an SVM guest, so
//! this guest uses the instruction breakpoint, which loops the same way.)
#![cfg_attr(target_os = "none", no_std, no_main)]

basalt_guests::entry!(run);

fn run() {
    basalt_guests::idt::install();
    basalt_guests::guest_println!("arming an instruction breakpoint on the #DB handler");
    // SAFETY: reads the #DB gate of our IDT, puts an execute breakpoint (DR7 L0, R/W 00, LEN
    // 00) on its handler and single-steps one instruction: the #DB that follows, and every
    // delivery after it, faults on the handler's first instruction. This never returns.
    unsafe {
        core::arch::asm!(
            "cli",
            "sub rsp, 16",
            "sidt [rsp]",
            "mov rax, [rsp + 2]", // IDT base
            "add rsp, 16",
            "movzx ecx, word ptr [rax + 16]", // gate 1: offset 15:0
            "movzx edx, word ptr [rax + 22]", // offset 31:16
            "shl rdx, 16",
            "or rcx, rdx",
            "mov edx, dword ptr [rax + 24]", // offset 63:32
            "shl rdx, 32",
            "or rcx, rdx",
            "mov dr0, rcx",
            "mov rcx, 0x1",
            "mov dr7, rcx",
            "pushfq",
            "or qword ptr [rsp], 0x100", // TF: #DB after the next instruction
            "popfq",
            "nop",
            "2:",
            "jmp 2b",
            options(noreturn)
        )
    }
}
