//! The world switch (APM Vol. 2 15.5 VMRUN, 15.5.2 VMSAVE/VMLOAD, 15.17 GIF).
//!
//! VMRUN saves and restores only part of the host (CS/SS/DS/ES, GDTR/IDTR, CR0/3/4, EFER,
//! RFLAGS, RIP, RSP, RAX); the rest that VMLOAD/VMSAVE covers (FS, GS and their bases, TR,
//! LDTR, KernelGsBase, STAR/LSTAR/CSTAR/SFMASK, SYSENTER_*) is saved to a host page with
//! `vmsave` once when the vCPU is created ([`save_host`]: Basalt never changes them after boot,
//! and a vCPU only runs on the CPU that created it) and reloaded after every exit, so Basalt's
//! per-CPU GS base survives. Everything runs with GIF clear: no interrupt or NMI is taken
//! between the guest's `vmload` and the host's.

use crate::virt::GuestGprs;

core::arch::global_asm!(
    ".pushsection .text.basalt_svm_world_switch, \"ax\"",
    ".global basalt_svm_world_switch",
    ".p2align 4",
    // rdi = &mut GuestGprs, rsi = guest VMCB PA, rdx = host VMSAVE page PA, rcx = set IF,
    // r8 = mitigation flags (bit 0 VERW before VMRUN, bit 1 RSB fill after #VMEXIT).
    "basalt_svm_world_switch:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push r8",
    "push rdx",
    "push rdi",
    "clgi",
    // With V_INTR_MASKING the host's IF at VMRUN decides whether a physical interrupt exits
    // the guest (INTR intercept); GIF = 0 keeps it pending until the host is whole again.
    "test rcx, rcx",
    "jz 2f",
    "sti",
    "2:",
    "mov rax, rsi",
    // CF = VERW wanted; the MOVs and VMLOAD below leave the flags alone.
    "bt r8, 0",
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
    "vmload rax",
    // VERW with MD_CLEAR overwrites the store, fill and load buffers: the last memory access
    // before the guest runs, so nothing of Basalt's is left in them (Intel "Deep Dive: MDS").
    "jnc 3f",
    "verw word ptr [rip + {verw_selector}]",
    "3:",
    "vmrun rax",
    // #VMEXIT (or a failed VMRUN): RAX = guest VMCB PA, RSP = host RSP, GIF = 0.
    "vmsave rax",
    // The guest's return addresses may still be in the RSB: replace them with 32 entries
    // that point at a speculation trap before Basalt's first RET (RAX is free: the guest's
    // lives in the VMCB). Stack: gprs pointer, host save PA, flags.
    "test byte ptr [rsp + 16], 2",
    "jz 6f",
    "mov eax, 16",
    "4:",
    "call 5f",
    "int3",
    "lfence",
    "5:",
    "call 7f",
    "int3",
    "lfence",
    "7:",
    "dec eax",
    "jnz 4b",
    "add rsp, 256",
    "lfence",
    "6:",
    "push rdi",
    "mov rdi, [rsp + 8]",
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
    "pop qword ptr [rdi + 40]",
    "add rsp, 8",
    "pop rax",
    "vmload rax",
    "add rsp, 8",
    "cli",
    "stgi",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".popsection",
    verw_selector = sym crate::spec::VERW_SELECTOR,
);

extern "sysv64" {
    fn basalt_svm_world_switch(
        gprs: *mut GuestGprs,
        guest_vmcb: u64,
        host_save: u64,
        host_if: u64,
        flags: u64,
    );
}

/// Save this CPU's host state that VMRUN does not (FS, GS, TR, LDTR, KernelGsBase, the
/// SYSCALL and SYSENTER MSRs) into `host_save`, for every later exit to reload.
///
/// # Safety
/// EFER.SVME is set on this CPU and `host_save` is a 4 KiB-aligned page this vCPU owns.
pub(super) unsafe fn save_host(host_save: u64) {
    // SAFETY: forwarded to the caller; VMSAVE only writes the page at RAX.
    unsafe { core::arch::asm!("vmsave rax", in("rax") host_save, options(nostack)) };
}

/// Run the guest of `guest_vmcb` until its next #VMEXIT, guest GPRs (but RAX and RSP, which
/// live in the VMCB) loaded from and saved back to `gprs`.
///
/// # Safety
/// EFER.SVME is set and VM_HSAVE_PA is valid on this CPU; `guest_vmcb` and `host_save` are the
/// physical (= virtual) addresses of 4 KiB-aligned pages this vCPU owns, `host_save` filled by
/// [`save_host`] on this CPU; the VMCB describes a
/// guest whose nested page tables map only memory the guest may own. Host IF is 0.
/// `flags` is [`crate::spec::EntryMitigations::switch_flags`].
pub(super) unsafe fn world_switch(
    gprs: &mut GuestGprs,
    guest_vmcb: u64,
    host_save: u64,
    host_if: bool,
    flags: u64,
) {
    // SAFETY: forwarded to the caller; the routine preserves every callee-saved register and
    // the host's VMSAVE state, and returns with IF = 0 and GIF = 1 as it found them. The RSB
    // fill's 32 calls are undone by its `add rsp, 256` before anything else uses the stack.
    unsafe { basalt_svm_world_switch(gprs, guest_vmcb, host_save, host_if as u64, flags) }
}
