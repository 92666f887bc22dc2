//! Starting application processors: the real-mode trampoline and INIT-SIPI-SIPI
//! (SDM Vol. 3A 8.4.4.1, "Typical BSP Initialization Sequence").
//!
//! The trampoline is assembled here, copied to a fixed page below 1 MiB (the SIPI vector is
//! that page number) and walks real mode -> protected mode -> long mode with the BSP's page
//! tables, then calls `entry(arg)` on the stack the BSP chose. The BSP starts one AP at a time
//! and passes each its parameters in the trampoline page.

use crate::apic::{self, icr};

/// Physical address the trampoline runs at; the page must be reserved from the allocator.
pub const TRAMPOLINE_ADDR: u64 = 0x8000;

core::arch::global_asm!(
    r#"
    .section .rodata.ap_trampoline, "a"
    .balign 16
    .global basalt_ap_trampoline_start
    .global basalt_ap_trampoline_end
    .global basalt_ap_params
basalt_ap_trampoline_start:
    .code16
    cli
    cld
    xor %ax, %ax
    mov %ax, %ds
    lgdtl (ap_gdt_ptr - basalt_ap_trampoline_start + 0x8000)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $(ap_protected - basalt_ap_trampoline_start + 0x8000)

    .code32
ap_protected:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov (basalt_ap_params - basalt_ap_trampoline_start + 0x8000), %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx
    rdmsr
    or $0x900, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax
    mov %eax, %cr0
    ljmp $0x18, $(ap_long - basalt_ap_trampoline_start + 0x8000)

    .code64
ap_long:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $(basalt_ap_params - basalt_ap_trampoline_start + 0x8000), %rbx
    mov 8(%rbx), %rsp
    mov 24(%rbx), %rdi
    mov 16(%rbx), %rax
    xor %ebp, %ebp
    call *%rax
1:  cli
    hlt
    jmp 1b

    .balign 16
ap_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF            /* 0x08: 32-bit code */
    .quad 0x00CF92000000FFFF            /* 0x10: data */
    .quad 0x00AF9A000000FFFF            /* 0x18: 64-bit code */
ap_gdt_end:
ap_gdt_ptr:
    .short ap_gdt_end - ap_gdt - 1
    .long ap_gdt - basalt_ap_trampoline_start + 0x8000
    .balign 8
basalt_ap_params:
    .quad 0                             /* +0  cr3 (below 4 GiB) */
    .quad 0                             /* +8  stack top */
    .quad 0                             /* +16 entry */
    .quad 0                             /* +24 argument */
basalt_ap_trampoline_end:
    .text
    "#,
    options(att_syntax)
);

extern "C" {
    static basalt_ap_trampoline_start: u8;
    static basalt_ap_trampoline_end: u8;
    static basalt_ap_params: u8;
}

/// What an AP runs once it is in long mode.
pub type ApEntry = extern "C" fn(arg: u64) -> !;

/// Copy the trampoline to [`TRAMPOLINE_ADDR`].
///
/// # Safety
/// The trampoline page must be identity-mapped, writable and owned by nobody else.
pub unsafe fn install_trampoline() {
    // Both symbols delimit the assembled trampoline in .rodata.
    let (start, end) =
        (core::ptr::addr_of!(basalt_ap_trampoline_start), core::ptr::addr_of!(basalt_ap_trampoline_end));
    let len = end as usize - start as usize;
    assert!(len <= 4096, "the AP trampoline must fit one page");
    // SAFETY: source is our .rodata, destination the reserved page (caller's contract).
    unsafe { core::ptr::copy_nonoverlapping(start, TRAMPOLINE_ADDR as *mut u8, len) };
}

/// Start the AP with `apic_id`: it will run `entry(arg)` on `stack_top` with page tables
/// `cr3`. Returns once the SIPIs are sent; the caller waits for the AP to check in.
/// `delay_us` busy-waits the given number of microseconds.
///
/// # Safety
/// The trampoline must be installed, `cr3` must identity-map the kernel and the trampoline
/// (and lie below 4 GiB), and `stack_top` must be a stack nobody else uses.
pub unsafe fn start_ap(
    apic_id: u32,
    cr3: u64,
    stack_top: u64,
    entry: ApEntry,
    arg: u64,
    delay_us: &dyn Fn(u64),
) {
    assert!(cr3 < (1 << 32), "the AP trampoline loads CR3 from 32-bit code");
    // SAFETY: the parameter block lies inside the trampoline page just copied.
    unsafe {
        let offset = core::ptr::addr_of!(basalt_ap_params) as u64
            - core::ptr::addr_of!(basalt_ap_trampoline_start) as u64;
        let params = (TRAMPOLINE_ADDR + offset) as *mut u64;
        params.write_volatile(cr3);
        params.add(1).write_volatile(stack_top);
        params.add(2).write_volatile(entry as usize as u64);
        params.add(3).write_volatile(arg);
    }
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    apic::send_ipi(apic_id, icr::INIT | icr::ASSERT | icr::LEVEL);
    delay_us(10_000);
    let vector = (TRAMPOLINE_ADDR >> 12) as u32;
    for _ in 0..2 {
        apic::send_ipi(apic_id, icr::STARTUP | vector);
        delay_us(200);
    }
}
