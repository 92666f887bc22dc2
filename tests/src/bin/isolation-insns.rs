//! Isolation: every SVM and VMX instruction, GETSEC, MONITOR/MWAIT and XSETBV give the guest #UD
//! (VMLOAD, VMSAVE and VMRUN aimed at the host-physical addresses of Basalt's own image, where
//! a native run would read or overwrite Basalt); RDPMC gives #GP(0); INVD and WBINVD run as
//! harmless no-ops; MOV CR8 changes only the guest's own TPR. The hypervisor checks after the
//! VM that its own registers (TPR, XCR0, ...) are unchanged, and a benign VM runs next.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::idt::{self, Action, Event, Frame, GENERAL_PROTECTION, INVALID_OPCODE};
use basalt_guests::ucall::exit_count;
use basalt_guests::{guest_assert, guest_assert_eq, guest_println, ExitCounter};
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

basalt_guests::entry!(run);

/// Where Basalt's image starts in host-physical memory (hypervisor/linker.ld), and a page
/// inside it: a native VMSAVE there would overwrite Basalt's code.
const BASALT_IMAGE: u64 = 0x10_0000;
const BASALT_INSIDE: u64 = 0x20_0000;

/// The length of the instruction under test, for the fault handlers to skip it.
static LEN: AtomicU64 = AtomicU64::new(0);
/// The address a fault was taken at.
static AT: AtomicU64 = AtomicU64::new(0);

fn skip(_: &Event, frame: &mut Frame) -> Action {
    AT.store(frame.rip, Ordering::SeqCst);
    Action::Skip(LEN.load(Ordering::SeqCst))
}

/// Run one instruction given as bytes (with RAX, RCX, RDX set) and return the vector it
/// faulted with, if any. A fault must be taken at the instruction itself.
macro_rules! attempt {
    ($name:literal, $bytes:literal, $len:expr, $rax:expr, $rcx:expr) => {{
        LEN.store($len, Ordering::SeqCst);
        let (ud, gp) = (idt::count(INVALID_OPCODE), idt::count(GENERAL_PROTECTION));
        let at: u64;
        // SAFETY: the instruction either faults (#UD/#GP, skipped by the handlers) or is one
        // Basalt emulates; it changes nothing the rest of this guest relies on.
        unsafe {
            asm!(
                "lea {at}, [rip + 2f]",
                "2:",
                concat!(".byte ", $bytes),
                at = out(reg) at,
                inout("rax") $rax => _,
                inout("rcx") $rcx => _,
                inout("rdx") 0u64 => _,
                options(nostack)
            )
        };
        let vector = if idt::count(INVALID_OPCODE) != ud {
            Some(INVALID_OPCODE)
        } else if idt::count(GENERAL_PROTECTION) != gp {
            Some(GENERAL_PROTECTION)
        } else {
            None
        };
        if vector.is_some() {
            guest_assert_eq!(AT.load(Ordering::SeqCst), at);
        }
        guest_println!("{}: {}", $name, match vector { Some(6) => "#UD", Some(13) => "#GP", Some(_) => "?", None => "no fault" });
        vector
    }};
}

fn read_cr8() -> u64 {
    let v;
    // SAFETY: reading CR8 at CPL 0 has no side effects.
    unsafe { asm!("mov {}, cr8", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

fn run() {
    idt::install();
    idt::set_handler(INVALID_OPCODE, skip);
    idt::set_handler(GENERAL_PROTECTION, skip);

    // SVM instructions (APM Vol. 3): VMRUN, VMLOAD, VMSAVE at Basalt's image, then STGI, CLGI,
    // SKINIT, INVLPGA.
    for address in [BASALT_IMAGE, BASALT_INSIDE] {
        guest_assert_eq!(attempt!("VMSAVE", "0x0f,0x01,0xdb", 3, address, 0u64), Some(INVALID_OPCODE));
        guest_assert_eq!(attempt!("VMLOAD", "0x0f,0x01,0xda", 3, address, 0u64), Some(INVALID_OPCODE));
        guest_assert_eq!(attempt!("VMRUN", "0x0f,0x01,0xd8", 3, address, 0u64), Some(INVALID_OPCODE));
    }
    guest_assert_eq!(attempt!("STGI", "0x0f,0x01,0xdc", 3, 0u64, 0u64), Some(INVALID_OPCODE));
    guest_assert_eq!(attempt!("CLGI", "0x0f,0x01,0xdd", 3, 0u64, 0u64), Some(INVALID_OPCODE));
    guest_assert_eq!(attempt!("SKINIT", "0x0f,0x01,0xde", 3, BASALT_IMAGE, 0u64), Some(INVALID_OPCODE));
    guest_assert_eq!(attempt!("INVLPGA", "0x0f,0x01,0xdf", 3, 0u64, 0u64), Some(INVALID_OPCODE));

    // VMX instructions (SDM Vol. 2): memory operands at [rax], Basalt's image again.
    guest_assert_eq!(attempt!("VMXON", "0xf3,0x0f,0xc7,0x30", 4, BASALT_IMAGE, 0u64), Some(INVALID_OPCODE));
    guest_assert_eq!(attempt!("VMCLEAR", "0x66,0x0f,0xc7,0x30", 4, BASALT_IMAGE, 0u64), Some(INVALID_OPCODE));
    guest_assert_eq!(attempt!("VMPTRLD", "0x0f,0xc7,0x30", 3, BASALT_IMAGE, 0u64), Some(INVALID_OPCODE));
    guest_assert_eq!(attempt!("VMPTRST", "0x0f,0xc7,0x38", 3, BASALT_INSIDE, 0u64), Some(INVALID_OPCODE));
    guest_assert_eq!(attempt!("VMREAD", "0x0f,0x78,0xc8", 3, 0x6C14u64, 0u64), Some(INVALID_OPCODE));
    guest_assert_eq!(attempt!("VMWRITE", "0x0f,0x79,0xc1", 3, 0x6C16u64, BASALT_IMAGE), Some(INVALID_OPCODE));
    guest_assert_eq!(attempt!("VMLAUNCH", "0x0f,0x01,0xc2", 3, 0u64, 0u64), Some(INVALID_OPCODE));
    guest_assert_eq!(attempt!("VMRESUME", "0x0f,0x01,0xc3", 3, 0u64, 0u64), Some(INVALID_OPCODE));
    guest_assert_eq!(attempt!("VMXOFF", "0x0f,0x01,0xc4", 3, 0u64, 0u64), Some(INVALID_OPCODE));
    guest_assert_eq!(
        attempt!("INVEPT", "0x66,0x0f,0x38,0x80,0x08", 5, BASALT_IMAGE, 2u64),
        Some(INVALID_OPCODE)
    );
    guest_assert_eq!(
        attempt!("INVVPID", "0x66,0x0f,0x38,0x81,0x08", 5, BASALT_IMAGE, 2u64),
        Some(INVALID_OPCODE)
    );
    guest_assert_eq!(attempt!("VMFUNC", "0x0f,0x01,0xd4", 3, 0u64, 0u64), Some(INVALID_OPCODE));
    guest_assert_eq!(attempt!("GETSEC", "0x0f,0x37", 2, 0u64, 0u64), Some(INVALID_OPCODE));

    // MONITOR/MWAIT: not offered (CPUID.1:ECX.MONITOR is clear), so #UD, never a parked CPU.
    guest_assert_eq!(attempt!("MONITOR", "0x0f,0x01,0xc8", 3, 0x10_0000u64, 0u64), Some(INVALID_OPCODE));
    guest_assert_eq!(attempt!("MWAIT", "0x0f,0x01,0xc9", 3, 0u64, 0u64), Some(INVALID_OPCODE));

    // XSETBV: with CR4.OSXSAVE clear a CPU gives #UD, and Basalt owns XCR0: #UD as well.
    guest_assert_eq!(attempt!("XSETBV", "0x0f,0x01,0xd1", 3, 7u64, 0u64), Some(INVALID_OPCODE));

    // RDPMC of counter 0: the PMU is hidden, so every counter is invalid: #GP(0).
    guest_assert_eq!(attempt!("RDPMC", "0x0f,0x33", 2, 0u64, 0u64), Some(GENERAL_PROTECTION));
    guest_assert_eq!(idt::last().map(|e| e.error_code), Some(0));

    // INVD and WBINVD: no fault, and what the guest wrote just before is still there.
    let marker = 0x1DEA_F00D_0000_0001u64;
    let cell = AtomicU64::new(marker);
    guest_assert_eq!(attempt!("INVD", "0x0f,0x08", 2, 0u64, 0u64), None);
    guest_assert_eq!(attempt!("WBINVD", "0x0f,0x09", 2, 0u64, 0u64), None);
    guest_assert_eq!(cell.load(Ordering::SeqCst), marker);
    guest_assert!(exit_count(ExitCounter::Instruction) >= 4, "INVD, WBINVD, MONITOR, MWAIT exited to Basalt");

    // MOV CR8: the guest's own task priority, read back; Basalt's TPR is checked after the VM.
    guest_assert_eq!(read_cr8(), 0);
    // SAFETY: with interrupts off the TPR blocks nothing this guest waits for.
    unsafe { asm!("mov cr8, {}", in(reg) 15u64, options(nomem, nostack, preserves_flags)) };
    guest_assert_eq!(read_cr8(), 15);
}
