//! Starting the VM's other vCPUs (APs): an INIT-SIPI-SIPI sequence sends each to a real-mode
//! trampoline at `vector * 0x1000` ([`TRAMPOLINE`]), which loads its own GDT, turns on long
//! mode with the boot ABI's page tables (CR3 = 0x1000, the BSP's) and jumps to 64-bit code in
//! the guest image; there the AP takes a ticket (its index, 1 for the first AP), switches to its
//! own 16 KiB stack, loads the shared IDT and calls the function given to [`set_entry`] with its
//! index. The APs share the guest's statics; they must not make ucalls (one record) or print.

use crate::apic::{self, ICR_ASSERT, ICR_INIT, ICR_LEVEL, ICR_STARTUP};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// Where the trampoline is copied: page 8, SIPI vector 8 (free in both boot paths: below the
/// stack at 0x80000, above the boot ABI's GDT and page tables).
pub const TRAMPOLINE: u64 = 0x8000;
pub const SIPI_VECTOR: u8 = (TRAMPOLINE >> 12) as u8;
/// The most APs the stacks provide for.
pub const MAX_APS: usize = 15;
pub const AP_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
pub struct Stacks([[u8; AP_STACK_SIZE]; MAX_APS + 1]);

/// Stack `i` (for AP `i`, 1-based; 0 unused) tops at `AP_STACKS + (i + 1) * AP_STACK_SIZE`.
#[no_mangle]
static mut BASALT_AP_STACKS: Stacks = Stacks([[0; AP_STACK_SIZE]; MAX_APS + 1]);
/// The next AP's index minus one.
#[no_mangle]
static BASALT_AP_TICKET: AtomicU32 = AtomicU32::new(0);
/// APs that reached Rust.
static STARTED: AtomicU32 = AtomicU32::new(0);
static ENTRY: AtomicUsize = AtomicUsize::new(0);

/// What an AP runs (its 1-based index). Returning halts it.
pub type ApEntry = fn(usize);

#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".section .rodata.basalt_trampoline, \"a\"",
    ".balign 16",
    ".global basalt_trampoline_start",
    ".global basalt_trampoline_end",
    "basalt_trampoline_start:",
    ".code16",
    "cli",
    "cld",
    "mov ax, cs",
    "mov ds, ax",
    // lgdt [disp16] (0F 01 /2, ModRM 0x16), DS = CS: the GDTR inside the copy.
    ".byte 0x0f, 0x01, 0x16",
    ".word basalt_tr_gdtr - basalt_trampoline_start",
    "mov eax, {cr4}",
    "mov cr4, eax",
    "mov eax, {pml4}",
    "mov cr3, eax",
    "mov ecx, {efer_msr}",
    "rdmsr",
    "or eax, {efer}",
    "wrmsr",
    "mov eax, {cr0}",
    "mov cr0, eax",
    // A far jump to the 64-bit code segment, 32-bit offset: long mode from real mode.
    ".byte 0x66, 0xea",
    ".long {base} + (basalt_tr_long - basalt_trampoline_start)",
    ".word {code}",
    ".code64",
    "basalt_tr_long:",
    "movabs rax, offset basalt_ap_long",
    "jmp rax",
    ".balign 8",
    "basalt_tr_gdt:",
    ".quad {gdt0}, {gdt1}, {gdt2}",
    "basalt_tr_gdtr:",
    ".word 3 * 8 - 1",
    ".long {base} + (basalt_tr_gdt - basalt_trampoline_start)",
    "basalt_trampoline_end:",
    ".section .text.basalt_ap, \"ax\"",
    "basalt_ap_long:",
    "mov eax, {data}",
    "mov ds, ax",
    "mov es, ax",
    "mov fs, ax",
    "mov gs, ax",
    "mov ss, ax",
    "mov eax, 1",
    "lock xadd dword ptr [rip + BASALT_AP_TICKET], eax",
    "inc eax",
    "cmp eax, {max}",
    "ja 3f",
    "mov edi, eax",
    "inc eax",
    "imul eax, eax, {stack_size}",
    "lea rsp, [rip + BASALT_AP_STACKS]",
    "add rsp, rax",
    "xor ebp, ebp",
    "call {main}",
    "3:",
    "cli",
    "hlt",
    "jmp 3b",
    base = const TRAMPOLINE,
    cr4 = const crate::multiboot::CR4,
    cr0 = const crate::multiboot::CR0,
    pml4 = const crate::multiboot::PML4_ADDR,
    efer_msr = const crate::multiboot::EFER_MSR,
    efer = const crate::multiboot::EFER,
    code = const crate::multiboot::CODE_SELECTOR,
    data = const crate::multiboot::DATA_SELECTOR,
    gdt0 = const crate::multiboot::GDT[0],
    gdt1 = const crate::multiboot::GDT[1],
    gdt2 = const crate::multiboot::GDT[2],
    max = const MAX_APS,
    stack_size = const AP_STACK_SIZE,
    main = sym ap_main,
);

#[cfg(target_os = "none")]
extern "C" {
    static basalt_trampoline_start: u8;
    static basalt_trampoline_end: u8;
}

/// Where an AP enters Rust, on its own stack (called from the trampoline's assembly only).
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
extern "C" fn ap_main(index: usize) -> ! {
    crate::idt::load();
    STARTED.fetch_add(1, Ordering::SeqCst);
    let entry = ENTRY.load(Ordering::SeqCst);
    if entry != 0 {
        // SAFETY: ENTRY only ever holds 0 or an `ApEntry` stored by `set_entry`.
        let entry: ApEntry = unsafe { core::mem::transmute::<usize, ApEntry>(entry) };
        entry(index);
    }
    crate::ucall::halt_forever()
}

/// Sets what the APs run from now on.
pub fn set_entry(entry: ApEntry) {
    ENTRY.store(entry as usize, Ordering::SeqCst);
}

/// How many APs reached Rust so far.
pub fn started() -> u32 {
    STARTED.load(Ordering::SeqCst)
}

/// Copies the trampoline to [`TRAMPOLINE`] (idempotent).
pub fn install_trampoline() {
    #[cfg(target_os = "none")]
    {
        // SAFETY: the trampoline's bytes are in .rodata between the two symbols; page 8 of
        // guest RAM is unused by the boot ABI and this guest (see TRAMPOLINE).
        unsafe {
            let start = core::ptr::addr_of!(basalt_trampoline_start);
            let len = core::ptr::addr_of!(basalt_trampoline_end) as usize - start as usize;
            core::ptr::copy_nonoverlapping(start, TRAMPOLINE as *mut u8, len);
        }
    }
}

/// Sends INIT, then two STARTUP IPIs for the trampoline, to `dest` (an APIC ID) or with
/// `shorthand` ([`apic::ICR_ALL_BUT_SELF`]; 0 for none), with the MP spec's waits shortened
/// (INIT 1 ms, 200 us between the SIPIs): virtual CPUs need none.
pub fn init_sipi_sipi(dest: u32, shorthand: u32) {
    install_trampoline();
    apic::send_ipi(dest, shorthand | ICR_INIT | ICR_ASSERT | ICR_LEVEL);
    crate::time::delay_us(1000);
    for _ in 0..2 {
        apic::send_ipi(dest, shorthand | ICR_STARTUP | ICR_ASSERT | u32::from(SIPI_VECTOR));
        crate::time::delay_us(200);
    }
}

/// Starts the AP with APIC ID `dest` and waits (up to `timeout_us`) for it to reach Rust.
/// Returns whether it did.
pub fn start_ap(dest: u32, timeout_us: u64) -> bool {
    let before = started();
    init_sipi_sipi(dest, 0);
    crate::hw::spin_until(crate::time::us_to_tsc(timeout_us), || started() > before)
}
