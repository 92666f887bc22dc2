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
    // rsi: bit 0 launched, bit 1 VERW before entry, bit 2 RSB fill after the exit.
    "push rsi",
    "push rdi",
    // HOST_RSP (0x6C14) = the slot holding the GuestGprs pointer.
    "mov rax, 0x6C14",
    "vmwrite rax, rsp",
    // ZF = not launched, CF = VERW (BT leaves ZF alone).
    "test esi, 1",
    "bt esi, 1",
    // From here on only MOVs until the branch: they keep ZF and CF.
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
    // VERW with MD_CLEAR overwrites the CPU's buffers: the last memory access before the
    // entry (Intel "Deep Dive: MDS"); it changes only ZF, after the branch on it.
    "jnz 2f",
    "jnc 4f",
    "verw word ptr [rip + {verw_selector}]",
    "4:",
    "vmlaunch",
    "jmp 3f",
    "2:",
    "jnc 5f",
    "verw word ptr [rip + {verw_selector}]",
    "5:",
    "vmresume",
    "3:",
    // Still here: the instruction failed. ZF set = VMfailValid (1), else VMfailInvalid (2).
    "mov eax, 2",
    "mov ecx, 1",
    "cmovz eax, ecx",
    "pop rdi",
    "pop rsi",
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
    // The guest's return addresses may still be in the RSB: replace them with 32 entries
    // that point at a speculation trap before Basalt's first RET (SpectreRSB).
    "test byte ptr [rsp], 4",
    "jz 8f",
    "mov eax, 16",
    "6:",
    "call 7f",
    "int3",
    "lfence",
    "7:",
    "call 9f",
    "int3",
    "lfence",
    "9:",
    "dec eax",
    "jnz 6b",
    "add rsp, 256",
    "lfence",
    "8:",
    "pop rsi",
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
    verw_selector = sym crate::spec::VERW_SELECTOR,
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
    /// Enter the guest (`flags` bit 0 launched: VMRESUME, else VMLAUNCH; bit 1 VERW; bit 2
    /// RSB fill). Returns 0 after a VM exit (the guest GPRs stored in `gprs`), 1 for
    /// VMfailValid, 2 for VMfailInvalid.
    fn basalt_vmx_enter(gprs: *mut GuestGprs, flags: u64) -> u64;
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
/// `mitigation_flags` is [`crate::spec::EntryMitigations::switch_flags`].
pub unsafe fn enter(gprs: &mut GuestGprs, launched: bool, mitigation_flags: u64) -> Entry {
    let flags = launched as u64 | (mitigation_flags << 1);
    // SAFETY: forwarded from the caller; the stub preserves every callee-saved register and
    // returns on the same stack (HOST_RSP is written just before the entry; the RSB fill's
    // 32 calls are undone by its `add rsp, 256`).
    match unsafe { basalt_vmx_enter(gprs, flags) } {
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
