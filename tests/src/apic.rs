//! The local APIC, in xAPIC (MMIO at [`XAPIC_BASE`]) or x2APIC (MSRs 0x800+) mode: register
//! access, enabling, EOI, IPIs and the timer. The mode is per CPU and read from IA32_APIC_BASE
//! on each access, so a CPU in x2APIC mode and one in xAPIC mode can share this code.

use crate::hw::{cpuid, mmio_read32, mmio_write32, outb, rdmsr, wrmsr};

pub const XAPIC_BASE: u64 = 0xFEE0_0000;
pub const IA32_APIC_BASE: u32 = 0x1B;
/// IA32_APIC_BASE bits: this CPU is the BSP, x2APIC mode, the APIC is enabled.
pub const BASE_BSP: u64 = 1 << 8;
pub const BASE_EXTD: u64 = 1 << 10;
pub const BASE_EN: u64 = 1 << 11;
pub const IA32_TSC_DEADLINE: u32 = 0x6E0;
/// The x2APIC self-IPI MSR.
pub const X2APIC_SELF_IPI: u32 = 0x83F;

pub const ID: u32 = 0x20;
pub const VERSION: u32 = 0x30;
pub const TPR: u32 = 0x80;
pub const EOI: u32 = 0xB0;
pub const LDR: u32 = 0xD0;
pub const DFR: u32 = 0xE0;
pub const SVR: u32 = 0xF0;
pub const ISR: u32 = 0x100;
pub const TMR: u32 = 0x180;
pub const IRR: u32 = 0x200;
pub const ESR: u32 = 0x280;
pub const ICR_LOW: u32 = 0x300;
pub const ICR_HIGH: u32 = 0x310;
pub const LVT_TIMER: u32 = 0x320;
pub const LVT_LINT0: u32 = 0x350;
pub const LVT_LINT1: u32 = 0x360;
pub const LVT_ERROR: u32 = 0x370;
pub const TIMER_INITIAL: u32 = 0x380;
pub const TIMER_CURRENT: u32 = 0x390;
pub const TIMER_DIVIDE: u32 = 0x3E0;

/// The spurious vector `enable` programs.
pub const SPURIOUS_VECTOR: u8 = 0xFF;
pub const SVR_ENABLE: u32 = 1 << 8;
pub const LVT_MASKED: u32 = 1 << 16;
pub const TIMER_ONE_SHOT: u32 = 0;
pub const TIMER_PERIODIC: u32 = 1 << 17;
pub const TIMER_TSC_DEADLINE: u32 = 2 << 17;

/// ICR delivery modes and flags.
pub const ICR_FIXED: u32 = 0;
pub const ICR_NMI: u32 = 4 << 8;
pub const ICR_INIT: u32 = 5 << 8;
pub const ICR_STARTUP: u32 = 6 << 8;
pub const ICR_LOGICAL: u32 = 1 << 11;
pub const ICR_PENDING: u32 = 1 << 12;
pub const ICR_ASSERT: u32 = 1 << 14;
pub const ICR_LEVEL: u32 = 1 << 15;
pub const ICR_SELF: u32 = 1 << 18;
pub const ICR_ALL: u32 = 2 << 18;
pub const ICR_ALL_BUT_SELF: u32 = 3 << 18;

/// CPUID.1:ECX bits: x2APIC, TSC-deadline timer.
pub const CPUID_X2APIC: u32 = 1 << 21;
pub const CPUID_TSC_DEADLINE: u32 = 1 << 24;

pub fn has_x2apic() -> bool {
    cpuid(1, 0).ecx & CPUID_X2APIC != 0
}

pub fn has_tsc_deadline() -> bool {
    cpuid(1, 0).ecx & CPUID_TSC_DEADLINE != 0
}

/// Whether this CPU's APIC is in x2APIC mode.
pub fn x2apic_mode() -> bool {
    rdmsr(IA32_APIC_BASE) & BASE_EXTD != 0
}

/// Reads register `offset` (the xAPIC MMIO offset; in x2APIC mode MSR 0x800 + offset / 16).
pub fn read(offset: u32) -> u32 {
    if x2apic_mode() {
        rdmsr(0x800 + (offset >> 4)) as u32
    } else {
        mmio_read32(XAPIC_BASE + u64::from(offset))
    }
}

/// Writes register `offset` (see [`read`]).
pub fn write(offset: u32, v: u32) {
    if x2apic_mode() {
        wrmsr(0x800 + (offset >> 4), u64::from(v));
    } else {
        mmio_write32(XAPIC_BASE + u64::from(offset), v);
    }
}

/// Masks both 8259s, so that nothing reaches the CPU through LINT0 (ExtINT) behind the APIC's
/// back (a BIOS leaves the PIT's IRQ0 unmasked there).
pub fn mask_pic() {
    outb(0x21, 0xFF);
    outb(0xA1, 0xFF);
}

/// Maps the APIC, masks the 8259s and LINT0, and software-enables this CPU's APIC (spurious
/// vector [`SPURIOUS_VECTOR`], TPR 0). Keeps the mode the CPU is in.
pub fn enable() {
    crate::paging::map_low_4g();
    mask_pic();
    let base = rdmsr(IA32_APIC_BASE);
    if base & BASE_EN == 0 {
        wrmsr(IA32_APIC_BASE, base | BASE_EN);
    }
    write(SVR, SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
    write(TPR, 0);
    write(LVT_LINT0, LVT_MASKED);
    write(LVT_TIMER, LVT_MASKED);
}

/// Switches this CPU's APIC to x2APIC mode (needs [`has_x2apic`]).
pub fn enable_x2apic() {
    let base = rdmsr(IA32_APIC_BASE);
    wrmsr(IA32_APIC_BASE, base | BASE_EN | BASE_EXTD);
}

/// This CPU's APIC ID (8 bits in xAPIC mode, 32 in x2APIC mode).
pub fn id() -> u32 {
    if x2apic_mode() {
        read(ID)
    } else {
        read(ID) >> 24
    }
}

/// The initial APIC ID CPUID.1:EBX[31:24] reports.
pub fn cpuid_apic_id() -> u32 {
    cpuid(1, 0).ebx >> 24
}

pub fn eoi() {
    write(EOI, 0);
}

/// Sends an IPI: `low` is the ICR's low half (vector, delivery mode, flags, shorthand), `dest`
/// the destination APIC ID or logical set. In xAPIC mode waits for the delivery status to clear.
pub fn send_ipi(dest: u32, low: u32) {
    if x2apic_mode() {
        wrmsr(0x830, u64::from(dest) << 32 | u64::from(low));
    } else {
        write(ICR_HIGH, dest << 24);
        write(ICR_LOW, low);
        while read(ICR_LOW) & ICR_PENDING != 0 {
            core::hint::spin_loop();
        }
    }
}

/// The divide configuration register's encoding of divisor `div` (1, 2, 4, ..., 128).
pub const fn divide_encoding(div: u32) -> u32 {
    match div {
        1 => 0b1011,
        2 => 0b0000,
        4 => 0b0001,
        8 => 0b0010,
        16 => 0b0011,
        32 => 0b1000,
        64 => 0b1001,
        _ => 0b1010, // 128
    }
}

/// Programs the timer: LVT (vector, mode, masked or not), divisor, then the initial count
/// (which starts it; 0 stops it). For TSC-deadline mode write [`IA32_TSC_DEADLINE`] instead.
pub fn timer_start(vector: u8, mode: u32, masked: bool, div: u32, initial: u32) {
    write(LVT_TIMER, u32::from(vector) | mode | if masked { LVT_MASKED } else { 0 });
    write(TIMER_DIVIDE, divide_encoding(div));
    write(TIMER_INITIAL, initial);
}

/// Stops the timer and masks its LVT entry.
pub fn timer_stop() {
    write(TIMER_INITIAL, 0);
    write(LVT_TIMER, LVT_MASKED);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divide_encodings_are_the_sdms() {
        let enc: [u32; 8] = [0b1011, 0, 1, 2, 3, 8, 9, 10];
        for (i, e) in enc.iter().enumerate() {
            assert_eq!(divide_encoding(1 << i), *e);
        }
    }
}
