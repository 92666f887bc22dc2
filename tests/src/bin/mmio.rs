//! MMIO emulation against Basalt's test device (module argument `testdev`; device at
//! 0x3F00_0000, 64 bytes of scratch at offset 0, a read-only ID at 0x100, a write counter at
//! 0x108). Every form is checked against the same instruction run natively on ordinary RAM:
//! values and flags must agree bit for bit (AF aside where the SDM leaves it undefined).
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::idt::{self, Action, Event, Frame, INVALID_OPCODE, PAGE_FAULT};
use basalt_guests::{guest_assert, guest_assert_eq, guest_println};
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

basalt_guests::entry!(run);

const DEV: u64 = 0x3F00_0000;
const ID: u64 = 0x4F49_4D4D_544C_5342;
/// CF, PF, AF, ZF, SF, OF.
const STATUS: u64 = 0x8D5;
const AF: u64 = 0x10;

#[repr(C, align(64))]
struct Ram([u8; 64]);
static mut RAM: Ram = Ram([0; 64]);

fn ram() -> u64 {
    core::ptr::addr_of_mut!(RAM) as u64
}

fn dev_u64(off: u64) -> u64 {
    // SAFETY: a read of the test device (emulated by Basalt).
    unsafe { ((DEV + off) as *const u64).read_volatile() }
}
fn set_dev_u64(off: u64, v: u64) {
    // SAFETY: a write to the test device's scratch (emulated by Basalt).
    unsafe { ((DEV + off) as *mut u64).write_volatile(v) }
}
fn ram_u64(off: u64) -> u64 {
    // SAFETY: our own static buffer.
    unsafe { ((ram() + off) as *const u64).read_volatile() }
}
fn set_ram_u64(off: u64, v: u64) {
    // SAFETY: our own static buffer.
    unsafe { ((ram() + off) as *mut u64).write_volatile(v) }
}

/// Runs `$insn` (an instruction with a memory operand `[{m}]` and register operand `{r}`) on
/// RAM natively and on the device emulated, from the same start values; returns (ram result,
/// ram flags, device result, device flags, register after ram, register after device).
macro_rules! both {
    ($insn:literal, $start:expr, $reg:expr) => {{
        let mut out = [0u64; 6];
        for (i, base) in [ram(), DEV].into_iter().enumerate() {
            // SAFETY: writes of our buffer or of the device's scratch, then the instruction on
            // it; PUSHFQ/POP read the flags. Interrupts are off.
            unsafe {
                ((base) as *mut u64).write_volatile($start);
                let (flags, reg): (u64, u64);
                asm!(
                    "xor eax, eax", // a known flags state: ZF=1 PF=1, others 0
                    $insn,
                    "pushfq",
                    "pop {f}",
                    m = in(reg) base, r = inout(reg) $reg => reg, f = out(reg) flags,
                    out("rax") _,
                );
                out[i * 2] = ((base) as *const u64).read_volatile();
                out[i * 2 + 1] = flags & STATUS;
                out[4 + i] = reg;
            }
        }
        out
    }};
}

fn check(name: &str, r: [u64; 6], af_defined: bool) {
    let mask = if af_defined { u64::MAX } else { !AF };
    guest_assert_eq!(r[2], r[0]);
    guest_assert_eq!(r[3] & mask, r[1] & mask);
    guest_assert_eq!(r[5], r[4]);
    guest_println!("{name}: value {:#x} flags {:#x}", r[2], r[3]);
}

static UD: AtomicU64 = AtomicU64::new(0);

fn skip_ud(_: &Event, _: &mut Frame) -> Action {
    UD.fetch_add(1, Ordering::SeqCst);
    Action::Skip(4)
}

fn run() {
    idt::install();
    idt::set_handler(INVALID_OPCODE, skip_ud);

    // MOV of every width, loads and stores, and the read-only ID and write counter.
    guest_assert_eq!(dev_u64(0x100), ID);
    set_dev_u64(0, 0x1122_3344_5566_7788);
    guest_assert_eq!(dev_u64(0), 0x1122_3344_5566_7788);
    let (b, w, d): (u64, u64, u64);
    // SAFETY: stores and loads of the device's scratch of each width.
    unsafe {
        asm!(
            "mov byte ptr [{m} + 1], 0xAB",
            "mov word ptr [{m} + 2], 0xCDEF",
            "mov dword ptr [{m} + 8], 0x89ABCDEF",
            "movzx {b:e}, byte ptr [{m} + 1]",
            "movsx {w}, word ptr [{m} + 2]",
            "movsxd {d}, dword ptr [{m} + 8]",
            m = in(reg) DEV, b = out(reg) b, w = out(reg) w, d = out(reg) d,
            options(nostack)
        );
    }
    guest_assert_eq!(b, 0xAB);
    guest_assert_eq!(w, 0xFFFF_FFFF_FFFF_CDEF);
    guest_assert_eq!(d, 0xFFFF_FFFF_89AB_CDEF);
    guest_assert_eq!(dev_u64(0), 0x1122_3344_CDEF_AB88);
    guest_println!("MOV, MOVZX, MOVSX, MOVSXD of every width");

    // ALU forms against native execution on RAM.
    check("ADD", both!("add qword ptr [{m}], {r}", 0x7FFF_FFFF_FFFF_FFFF, 1u64), true);
    check("SUB", both!("sub dword ptr [{m}], {r:e}", 5, 7u64), true);
    check("CMP", both!("cmp byte ptr [{m}], {r:l}", 0x80, 1u64), true);
    check("AND", both!("and qword ptr [{m}], {r}", 0xF0F0, 0x0FF0u64), false);
    check("OR", both!("or word ptr [{m}], {r:x}", 0x8000, 0x0001u64), false);
    check("XOR", both!("xor qword ptr [{m}], {r}", u64::MAX, u64::MAX), false);
    check("TEST", both!("test dword ptr [{m}], {r:e}", 0x8000_0000, 0x8000_0000u64), false);
    check("INC", both!("inc qword ptr [{m}]\n mov {r}, {r}", u64::MAX, 0u64), true);
    check("DEC", both!("dec byte ptr [{m}]\n mov {r}, {r}", 0, 0u64), true);
    check("NEG", both!("neg qword ptr [{m}]\n mov {r}, {r}", 1, 0u64), true);
    check("NOT", both!("not dword ptr [{m}]\n mov {r}, {r}", 0x1234_5678, 0u64), true);
    check("ADD reg, mem", both!("add {r}, qword ptr [{m}]", 0xFFFF_FFFF, 1u64), true);
    check("BTS", both!("bts qword ptr [{m}], {r}", 0, 63u64), false);
    check("BTR", both!("btr qword ptr [{m}], {r}", u64::MAX, 5u64), false);
    check("XCHG", both!("xchg qword ptr [{m}], {r}", 0xAAAA, 0x5555u64), true);
    // CMPXCHG: RAX (0 after the XOR) against the memory; equal -> stores {r}.
    check("CMPXCHG equal", both!("cmpxchg qword ptr [{m}], {r}", 0, 0x77u64), true);
    check("CMPXCHG not equal", both!("cmpxchg qword ptr [{m}], {r}", 9, 0x77u64), true);

    // REP MOVSB RAM -> device, REP STOSD, REP MOVSQ device -> RAM, and DF = 1.
    for i in 0..8 {
        set_ram_u64(i * 8, 0x0101_0101_0101_0101 * (i + 1));
    }
    // SAFETY: string copies between our buffer and the device's 64-byte scratch.
    unsafe {
        asm!("cld", "rep movsb", inout("rsi") ram() => _, inout("rdi") DEV => _, inout("rcx") 64u64 => _, options(nostack));
    }
    for i in 0..8 {
        guest_assert_eq!(dev_u64(i * 8), 0x0101_0101_0101_0101 * (i + 1));
    }
    // SAFETY: as above.
    unsafe {
        asm!("rep stosd", inout("rdi") DEV + 32 => _, inout("rcx") 4u64 => _, in("eax") 0xFEED_F00Du32, options(nostack));
        asm!("rep movsq", inout("rsi") DEV => _, inout("rdi") ram() => _, inout("rcx") 8u64 => _, options(nostack));
    }
    guest_assert_eq!(ram_u64(32), 0xFEED_F00D_FEED_F00D);
    guest_assert_eq!(ram_u64(0), 0x0101_0101_0101_0101);
    let (rsi, rdi, rcx): (u64, u64, u64);
    // SAFETY: a backwards MOVSQ of 2 quadwords from the device to our buffer, then CLD.
    unsafe {
        asm!("std", "rep movsq", "cld",
             inout("rsi") DEV + 8 => rsi, inout("rdi") ram() + 56 => rdi, inout("rcx") 2u64 => rcx, options(nostack));
    }
    guest_assert_eq!((rsi, rdi - ram(), rcx), (DEV - 8, 40, 0));
    guest_assert_eq!(ram_u64(56), 0x0202_0202_0202_0202);
    guest_assert_eq!(ram_u64(48), 0x0101_0101_0101_0101);
    guest_println!("REP MOVS and STOS both ways, DF = 0 and 1");

    // An instruction the emulator does not support on MMIO: #UD for the guest, and it goes on.
    // SAFETY: MOVDQU xmm0, [DEV] (4 bytes: F3 0F 6F 00); the handler skips it.
    unsafe { asm!(".byte 0xf3, 0x0f, 0x6f, 0x00", in("rax") DEV, options(nostack)) };
    guest_assert_eq!(UD.load(Ordering::SeqCst), 1);
    guest_assert_eq!(idt::count(PAGE_FAULT), 0);
    let mut writes = 0u32;
    // SAFETY: a read of the device's write counter.
    unsafe {
        asm!("mov {w:e}, dword ptr [{m} + 0x108]", m = in(reg) DEV, w = out(reg) writes, options(nostack))
    };
    guest_assert!(writes > 20, "the device counted {} writes", writes);
    guest_println!("unsupported form gave #UD; the device took {writes} writes");
}
