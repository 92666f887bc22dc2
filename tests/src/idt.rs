//! A minimal guest IDT: one stub per vector (all 256), written in assembly, that saves the
//! caller-saved registers and calls [`dispatch`]. Every exception and interrupt is counted and
//! its vector, error code, CR2 and RIP recorded in [`last`]; a handler set with [`set_handler`]
//! then says how to return ([`Action`]). Without a handler, an exception (0..32) fails the test
//! with a report, and an interrupt (32..) is only counted.
//!
//! Interrupts and exceptions arrive at CPL 0 on the current stack (no TSS, no IST): the guest
//! target has no red zone, so that is safe.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Vectors for which the CPU pushes an error code (SDM Vol. 3A, Table 6-1).
pub const fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

pub const DIVIDE_ERROR: u8 = 0;
pub const INVALID_OPCODE: u8 = 6;
pub const GENERAL_PROTECTION: u8 = 13;
pub const PAGE_FAULT: u8 = 14;

/// The stack as the common stub leaves it: the saved registers, then what the vector's stub
/// pushed (vector, error code or 0), then the CPU's interrupt frame.
#[repr(C)]
#[derive(Debug)]
pub struct Frame {
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// How to return from an exception or interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Return to the saved RIP: for a fault, retry the instruction (after fixing its cause);
    /// for an interrupt, carry on.
    Return,
    /// Skip this many bytes of the faulting instruction (the saved RIP advances by it).
    Skip(u64),
    /// Report the event as a failed assertion and stop the guest.
    Fail,
}

/// What a handler sees: the recorded event and the frame it may change.
pub type Handler = fn(&Event, &mut Frame) -> Action;

/// One exception or interrupt as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub vector: u8,
    pub error_code: u64,
    /// CR2 at the time (meaningful for #PF).
    pub cr2: u64,
    pub rip: u64,
}

/// The IDT: 256 16-byte gate descriptors as pairs of u64 (atomics: written only by `install`
/// and `set_handler`, read by the CPU).
#[repr(C, align(16))]
struct Table([AtomicU64; 512]);

static IDT: Table = Table([const { AtomicU64::new(0) }; 512]);
static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];
static COUNTS: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];
static LAST_VECTOR: AtomicU64 = AtomicU64::new(u64::MAX);
static LAST_ERROR: AtomicU64 = AtomicU64::new(0);
static LAST_CR2: AtomicU64 = AtomicU64::new(0);
static LAST_RIP: AtomicU64 = AtomicU64::new(0);

/// Code segment selector of the guest's 64-bit code (Basalt's GDT).
const CODE_SELECTOR: u16 = 0x08;
/// Each vector's stub is this many bytes long (see the assembly below).
const STUB_SIZE: u64 = 16;

/// The two u64 halves of a 64-bit interrupt gate (type 0xE, DPL 0, present, IST 0) for a
/// handler at `offset` (SDM Vol. 3A, 6.14.1).
pub const fn interrupt_gate(offset: u64, selector: u16) -> [u64; 2] {
    let low =
        (offset & 0xFFFF) | ((selector as u64) << 16) | (0x8E << 40) | (((offset >> 16) & 0xFFFF) << 48);
    [low, offset >> 32]
}

core::arch::global_asm!(
    ".section .text.basalt_isr, \"ax\"",
    ".balign 16",
    ".global basalt_isr_stubs",
    "basalt_isr_stubs:",
    ".set basalt_vec, 0",
    ".rept 256",
    ".balign 16",
    // Vectors with a CPU-pushed error code: 8, 10-14, 17, 21, 29, 30.
    ".if (basalt_vec == 8) || (basalt_vec >= 10 && basalt_vec <= 14) || (basalt_vec == 17) || (basalt_vec == 21) || (basalt_vec == 29) || (basalt_vec == 30)",
    ".else",
    "push 0",
    ".endif",
    "push basalt_vec",
    "jmp basalt_isr_common",
    ".set basalt_vec, basalt_vec + 1",
    ".endr",
    "basalt_isr_common:",
    "push rax",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    // 16 u64 on the stack since the CPU aligned RSP to 16: aligned for the call.
    "mov rdi, rsp",
    "cld",
    "call {dispatch}",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop rcx",
    "pop rax",
    "add rsp, 16",
    "iretq",
    dispatch = sym dispatch,
);

extern "C" {
    /// The first of 256 stubs, `STUB_SIZE` bytes apart.
    fn basalt_isr_stubs();
}

/// Fills the IDT with the 256 stubs and loads it. Clears the counts.
pub fn install() {
    let base = basalt_isr_stubs as *const () as u64;
    for vector in 0..256u64 {
        let [low, high] = interrupt_gate(base + vector * STUB_SIZE, CODE_SELECTOR);
        IDT.0[2 * vector as usize].store(low, Ordering::Relaxed);
        IDT.0[2 * vector as usize + 1].store(high, Ordering::Relaxed);
        COUNTS[vector as usize].store(0, Ordering::Relaxed);
    }
    load();
}

/// Loads the IDT [`install`] filled on this CPU (another vCPU of the VM shares the table, the
/// handlers and the counts).
pub fn load() {
    #[repr(C, packed)]
    struct Idtr {
        limit: u16,
        base: u64,
    }
    let idtr = Idtr { limit: (512 * 8 - 1) as u16, base: IDT.0.as_ptr() as u64 };
    // SAFETY: the IDT is a static with a valid gate for every vector, each pointing at a stub
    // that returns with IRETQ; LIDT only reads the 10-byte operand.
    unsafe { core::arch::asm!("lidt [{}]", in(reg) &idtr, options(readonly, nostack, preserves_flags)) };
}

/// Calls `handler` for `vector` from now on.
pub fn set_handler(vector: u8, handler: Handler) {
    HANDLERS[vector as usize].store(handler as usize, Ordering::SeqCst);
}

/// How many times `vector` arrived since [`install`].
pub fn count(vector: u8) -> u64 {
    COUNTS[vector as usize].load(Ordering::SeqCst)
}

/// The most recent exception or interrupt, if any.
pub fn last() -> Option<Event> {
    let vector = LAST_VECTOR.load(Ordering::SeqCst);
    (vector < 256).then(|| Event {
        vector: vector as u8,
        error_code: LAST_ERROR.load(Ordering::SeqCst),
        cr2: LAST_CR2.load(Ordering::SeqCst),
        rip: LAST_RIP.load(Ordering::SeqCst),
    })
}

fn read_cr2() -> u64 {
    let cr2: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags)) };
    cr2
}

/// Called by the common stub with the frame on the stack.
extern "C" fn dispatch(frame: &mut Frame) {
    let event = Event {
        vector: frame.vector as u8,
        error_code: frame.error_code,
        cr2: if frame.vector == u64::from(PAGE_FAULT) { read_cr2() } else { 0 },
        rip: frame.rip,
    };
    COUNTS[event.vector as usize].fetch_add(1, Ordering::SeqCst);
    LAST_VECTOR.store(u64::from(event.vector), Ordering::SeqCst);
    LAST_ERROR.store(event.error_code, Ordering::SeqCst);
    LAST_CR2.store(event.cr2, Ordering::SeqCst);
    LAST_RIP.store(event.rip, Ordering::SeqCst);

    let handler = HANDLERS[event.vector as usize].load(Ordering::SeqCst);
    let action = if handler != 0 {
        // SAFETY: HANDLERS only ever holds 0 or a `Handler` stored by `set_handler`.
        let handler: Handler = unsafe { core::mem::transmute::<usize, Handler>(handler) };
        handler(&event, frame)
    } else if event.vector < 32 {
        Action::Fail
    } else {
        Action::Return
    };
    match action {
        Action::Return => {}
        Action::Skip(n) => frame.rip += n,
        Action::Fail => crate::ucall::assert_fail(
            file!(),
            line!(),
            [event.vector.into(), event.error_code, event.rip, event.cr2],
            format_args!(
                "unexpected exception {} (error code {:#x}) at RIP {:#x}, CR2 {:#x}",
                event.vector, event.error_code, event.rip, event.cr2
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_encoding() {
        // Offset 0x1122_3344_5566_7788, selector 8: the SDM's layout.
        let [low, high] = interrupt_gate(0x1122_3344_5566_7788, 0x08);
        assert_eq!(low, 0x5566_8E00_0008_7788);
        assert_eq!(high, 0x1122_3344);
    }

    #[test]
    fn error_code_vectors() {
        let with: [u8; 10] = [8, 10, 11, 12, 13, 14, 17, 21, 29, 30];
        for v in 0..=255u8 {
            assert_eq!(has_error_code(v), with.contains(&v), "vector {v}");
        }
    }

    #[test]
    fn frame_layout_matches_the_stubs() {
        assert_eq!(core::mem::offset_of!(Frame, vector), 9 * 8);
        assert_eq!(core::mem::offset_of!(Frame, rip), 11 * 8);
        assert_eq!(core::mem::size_of::<Frame>(), 16 * 8);
    }
}
