//! Running without Basalt: a guest booted directly by QEMU through its multiboot header (see
//! [`crate::multiboot`]) reports on COM1 and ends through QEMU's isa-debug-exit device instead
//! of making ucalls.
//!
//! Whether Basalt is there: a guest that came in at its 64-bit entry was started by Basalt (only
//! Basalt's boot ABI starts a guest there), so it asks nothing and under Basalt no ucall costs an
//! extra exit. One that came in through the multiboot trampoline asks CPUID: Basalt sets the
//! hypervisor bit (`CPUID.1:ECX[31]`) and answers leaf 0x4000_0000 with "BasaltHVisor".

use crate::{write_cut, UcallKind, UCALL_MSG_LEN};
use core::arch::asm;
use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};

/// Basalt's hypervisor vendor signature in CPUID leaf 0x4000_0000 EBX, ECX, EDX.
pub const BASALT_SIGNATURE: &[u8; 12] = b"BasaltHVisor";
/// `CPUID.1:ECX[31]`: a hypervisor is present.
pub const CPUID_HYPERVISOR: u32 = 1 << 31;
/// COM1's base port.
pub const COM1: u16 = 0x3F8;
/// QEMU's isa-debug-exit port (`-device isa-debug-exit,iobase=0xf4,iosize=4`): QEMU exits with
/// status (value << 1) | 1.
pub const DEBUG_EXIT_PORT: u16 = 0xF4;
/// Written to [`DEBUG_EXIT_PORT`] when the test passed: QEMU exits with 33.
pub const EXIT_PASSED: u32 = 0x10;
/// Written to [`DEBUG_EXIT_PORT`] when the test failed: QEMU exits with 35.
pub const EXIT_FAILED: u32 = 0x11;

/// Whether CPUID leaves 1 (its ECX) and 0x4000_0000 (EBX, ECX, EDX) say Basalt.
pub fn cpuid_says_basalt(leaf1_ecx: u32, hypervisor_leaf: [u32; 3]) -> bool {
    let mut signature = [0u8; 12];
    for (chunk, reg) in signature.chunks_mut(4).zip(hypervisor_leaf) {
        chunk.copy_from_slice(&reg.to_le_bytes());
    }
    leaf1_ecx & CPUID_HYPERVISOR != 0 && &signature == BASALT_SIGNATURE
}

const UNKNOWN: u8 = 0;
const BASALT: u8 = 1;
const BARE: u8 = 2;
static HOST: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Whether the guest runs under Basalt (see the module docs).
pub fn under_basalt() -> bool {
    if !crate::multiboot::entered() {
        return true;
    }
    match HOST.load(Ordering::Relaxed) {
        BASALT => true,
        BARE => false,
        _ => {
            let leaf1 = core::arch::x86_64::__cpuid(1).ecx;
            let hv = core::arch::x86_64::__cpuid(0x4000_0000);
            let basalt = cpuid_says_basalt(leaf1, [hv.ebx, hv.ecx, hv.edx]);
            HOST.store(if basalt { BASALT } else { BARE }, Ordering::Relaxed);
            basalt
        }
    }
}

fn outb(port: u16, v: u8) {
    // SAFETY: an OUT to a legacy PC port (COM1) of the machine this guest owns; no memory.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags)) };
}

fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: an IN from COM1's line status register; no memory, no side effects.
    unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags)) };
    v
}

static SERIAL_READY: AtomicU8 = AtomicU8::new(0);

/// COM1, programmed 115200 8N1 on first use.
struct Com1;

impl Com1 {
    fn get() -> Com1 {
        if SERIAL_READY.swap(1, Ordering::Relaxed) == 0 {
            outb(COM1 + 1, 0x00); // no interrupts
            outb(COM1 + 3, 0x80); // DLAB: the divisor follows
            outb(COM1, 0x01); // divisor 1: 115200 baud
            outb(COM1 + 1, 0x00);
            outb(COM1 + 3, 0x03); // 8 data bits, no parity, 1 stop bit
            outb(COM1 + 2, 0xC7); // FIFOs on and cleared
            outb(COM1 + 4, 0x03); // DTR, RTS
        }
        Com1
    }

    fn byte(&mut self, b: u8) {
        // Wait for the transmit holding register to empty (LSR bit 5).
        while inb(COM1 + 5) & 0x20 == 0 {
            core::hint::spin_loop();
        }
        outb(COM1, b);
    }
}

impl fmt::Write for Com1 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.byte(b'\r');
            }
            self.byte(b);
        }
        Ok(())
    }
}

/// Writes one line on COM1.
pub fn println(args: fmt::Arguments<'_>) {
    let mut com1 = Com1::get();
    let _ = fmt::Write::write_fmt(&mut com1, args);
    let _ = fmt::Write::write_str(&mut com1, "\n");
}

/// Ends the QEMU run with `value` written to isa-debug-exit; halts if there is no such device.
pub fn exit(value: u32) -> ! {
    // SAFETY: a 32-bit OUT to the debug-exit port; QEMU exits, or nothing listens there.
    unsafe {
        asm!("out dx, eax", in("dx") DEBUG_EXIT_PORT, in("eax") value, options(nomem, nostack, preserves_flags))
    };
    crate::ucall::halt_forever()
}

/// What a ucall does without Basalt: Print and Sync print on COM1, Done and AssertFail end the
/// QEMU run (AssertFail with the report Basalt would print), ExitCount is 0 (there are no
/// exits), RaiseInterrupt fails (it needs Basalt).
pub fn ucall(
    kind: UcallKind,
    file: &str,
    line: u32,
    mut args: [u64; 4],
    msg: fmt::Arguments<'_>,
) -> [u64; 4] {
    match kind {
        UcallKind::Print => println(msg),
        UcallKind::Sync => println(format_args!("sync {}", args[0])),
        UcallKind::Done => exit(EXIT_PASSED),
        UcallKind::AssertFail => {
            // The message as Basalt would see it: cut to the record's capacity.
            let mut text = [0u8; UCALL_MSG_LEN];
            let n = write_cut(&mut text, msg);
            let text = core::str::from_utf8(&text[..n]).unwrap_or("?");
            println(format_args!(
                "guest assertion failed at {file}:{line}: {text} (values {:#x}, {:#x})",
                args[0], args[1]
            ));
            exit(EXIT_FAILED)
        }
        UcallKind::RaiseInterrupt | UcallKind::RequestNmi | UcallKind::Inject => {
            println(format_args!("guest assertion failed at {file}:{line}: {kind:?} needs Basalt"));
            exit(EXIT_FAILED)
        }
        UcallKind::ExitCount => args[1] = 0,
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(s: &[u8; 12]) -> [u32; 3] {
        let word = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
        [word(0), word(4), word(8)]
    }

    #[test]
    fn basalt_is_the_hypervisor_bit_and_the_signature() {
        assert!(cpuid_says_basalt(CPUID_HYPERVISOR | 1, regs(b"BasaltHVisor")));
        assert!(!cpuid_says_basalt(0, regs(b"BasaltHVisor")), "no hypervisor bit");
        assert!(!cpuid_says_basalt(CPUID_HYPERVISOR, regs(b"TCGTCGTCGTCG")), "another hypervisor");
        assert!(!cpuid_says_basalt(CPUID_HYPERVISOR, [0; 3]), "no hypervisor leaves");
    }
}
