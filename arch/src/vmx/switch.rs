//! The world switch (SDM Vol. 3C 26, 28.5): save the host's callee-saved registers, point
//! HOST_RSP at them, load the guest's GPRs, VMLAUNCH or VMRESUME; the VM exit lands on
//! `basalt_vmx_exit` (HOST_RIP) with RSP = HOST_RSP, stores the guest's GPRs and returns.
//! Also the stubs that hand an interrupt acknowledged on exit to the host's IDT.

use crate::virt::GuestGprs;

core::arch::global_asm!(
    ".text",
    ".global basalt_vmx_enter",
    "basalt_vmx_enter:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdi",
    // HOST_RSP (0x6C14) = the slot holding the GuestGprs pointer.
    "mov rax, 0x6C14",
    "vmwrite rax, rsp",
    "test rsi, rsi",
    // From here on only MOVs until the branch: they keep ZF from the TEST.
    "mov rax, [rdi + 0]",
    "mov rbx, [rdi + 8]",
    "mov rcx, [rdi + 16]",
    "mov rdx, [rdi + 24]",
    "mov rsi, [rdi + 32]",
    "mov rbp, [rdi + 48]",
    "mov r8, [rdi + 56]",
    "mov r9, [rdi + 64]",
    "mov r10, [rdi + 72]",
    "mov r11, [rdi + 80]",
    "mov r12, [rdi + 88]",
    "mov r13, [rdi + 96]",
    "mov r14, [rdi + 104]",
    "mov r15, [rdi + 112]",
    "mov rdi, [rdi + 40]",
    "jnz 2f",
    "vmlaunch",
    "jmp 3f",
    "2:",
    "vmresume",
    "3:",
    // Still here: the instruction failed. ZF set = VMfailValid (1), else VMfailInvalid (2).
    "mov eax, 2",
    "mov ecx, 1",
    "cmovz eax, ecx",
    "pop rdi",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".global basalt_vmx_exit",
    "basalt_vmx_exit:",
    "push rdi",
    "mov rdi, [rsp + 8]",
    "mov [rdi + 0], rax",
    "mov [rdi + 8], rbx",
    "mov [rdi + 16], rcx",
    "mov [rdi + 24], rdx",
    "mov [rdi + 32], rsi",
    "mov [rdi + 48], rbp",
    "mov [rdi + 56], r8",
    "mov [rdi + 64], r9",
    "mov [rdi + 72], r10",
    "mov [rdi + 80], r11",
    "mov [rdi + 88], r12",
    "mov [rdi + 96], r13",
    "mov [rdi + 104], r14",
    "mov [rdi + 112], r15",
    "pop rax",
    "mov [rdi + 40], rax",
    "pop rdi",
    "xor eax, eax",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    // 256 stubs of 4 bytes: `int N; ret; int3` (0xCD N, not the one-byte INT3 encoding).
    ".global basalt_vmx_int_stubs",
    ".balign 16",
    "basalt_vmx_int_stubs:",
    ".set basalt_vmx_vec, 0",
    ".rept 256",
    ".byte 0xCD, basalt_vmx_vec, 0xC3, 0xCC",
    ".set basalt_vmx_vec, basalt_vmx_vec + 1",
    ".endr",
);

// The offsets the assembly uses.
const _: () = {
    assert!(core::mem::offset_of!(GuestGprs, rax) == 0);
    assert!(core::mem::offset_of!(GuestGprs, rdi) == 40);
    assert!(core::mem::offset_of!(GuestGprs, rbp) == 48);
    assert!(core::mem::offset_of!(GuestGprs, r8) == 56);
    assert!(core::mem::offset_of!(GuestGprs, r15) == 112);
};

extern "C" {
    /// Enter the guest (`launched`: VMRESUME, else VMLAUNCH). Returns 0 after a VM exit (the
    /// guest GPRs stored in `gprs`), 1 for VMfailValid, 2 for VMfailInvalid.
    fn basalt_vmx_enter(gprs: *mut GuestGprs, launched: u64) -> u64;
    /// HOST_RIP: only ever reached by a VM exit.
    fn basalt_vmx_exit();
    /// `int N` stubs, 4 bytes each.
    fn basalt_vmx_int_stubs();
}

/// The address VM exits continue at (HOST_RIP).
pub fn exit_stub() -> u64 {
    basalt_vmx_exit as *const () as u64
}

/// How an entry attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// The guest ran and exited (or the entry failed with exit reason bit 31).
    Exited,
    /// VMLAUNCH/VMRESUME failed with a valid VMCS: read the VM-instruction error.
    FailValid,
    /// There is no current VMCS.
    FailInvalid,
}

/// Run the guest until its next exit.
///
/// # Safety
/// VMX operation is on, the vCPU's VMCS is current on this CPU with valid host state whose
/// HOST_RIP is `exit_stub()`, and `launched` says truly whether that VMCS has been launched.
pub unsafe fn enter(gprs: &mut GuestGprs, launched: bool) -> Entry {
    // SAFETY: forwarded from the caller; the stub preserves every callee-saved register and
    // returns on the same stack (HOST_RSP is written just before the entry).
    match unsafe { basalt_vmx_enter(gprs, launched as u64) } {
        0 => Entry::Exited,
        1 => Entry::FailValid,
        _ => Entry::FailInvalid,
    }
}

/// Deliver `vector` to the host's own IDT handler, as if the interrupt (or, for 2, the NMI)
/// had arrived now: with "acknowledge interrupt on exit" the local APIC already handed it to
/// the VM exit and nobody else will see it.
///
/// # Safety
/// The host IDT has a handler for `vector` that is safe to enter at this point.
pub unsafe fn deliver_to_host(vector: u8) {
    let stub = basalt_vmx_int_stubs as *const () as usize + 4 * vector as usize;
    // SAFETY: `stub` is one of the 256 `int N; ret` sequences above; the caller vouches for
    // the handler. The call clobbers nothing but what the C ABI allows (handlers preserve all);
    // stepping over a red zone keeps this right on targets that have one.
    unsafe {
        core::arch::asm!("sub rsp, 128", "call {stub}", "add rsp, 128", stub = in(reg) stub, clobber_abi("C"));
    }
}
