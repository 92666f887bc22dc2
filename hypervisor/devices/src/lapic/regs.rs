//! Register indexes and bit masks of the local APIC (Intel SDM vol. 3A, chapter 11 in the
//! current numbering, "Advanced Programmable Interrupt Controller"), public so the VM core
//! can name registers in [`super::Lapic::regs`] and the virtual-APIC page.
//!
//! A register's index is its xAPIC MMIO offset divided by 16, which is also its x2APIC MSR
//! number minus 0x800. The model keeps every register at its index in a `[u32; 64]`.

/// Registers in the page (index = MMIO offset >> 4 = MSR - 0x800).
pub const ID: usize = 0x02;
pub const VERSION: usize = 0x03;
pub const TPR: usize = 0x08;
pub const APR: usize = 0x09;
pub const PPR: usize = 0x0A;
pub const EOI: usize = 0x0B;
pub const RRD: usize = 0x0C;
pub const LDR: usize = 0x0D;
pub const DFR: usize = 0x0E;
pub const SVR: usize = 0x0F;
/// First of 8 words each: bit `v % 32` of word `v / 32` is vector `v`.
pub const ISR: usize = 0x10;
pub const TMR: usize = 0x18;
pub const IRR: usize = 0x20;
pub const ESR: usize = 0x28;
pub const LVT_CMCI: usize = 0x2F;
pub const ICR_LOW: usize = 0x30;
pub const ICR_HIGH: usize = 0x31;
pub const LVT_TIMER: usize = 0x32;
pub const LVT_THERMAL: usize = 0x33;
pub const LVT_PERFMON: usize = 0x34;
pub const LVT_LINT0: usize = 0x35;
pub const LVT_LINT1: usize = 0x36;
pub const LVT_ERROR: usize = 0x37;
pub const TIMER_INITIAL: usize = 0x38;
pub const TIMER_CURRENT: usize = 0x39;
pub const TIMER_DIVIDE: usize = 0x3E;
/// x2APIC only (MSR 0x83F), write-only.
pub const SELF_IPI: usize = 0x3F;

/// Number of register slots (offsets 0x000-0x3F0).
pub const COUNT: usize = 0x40;

/// All seven LVT registers.
pub const LVTS: [usize; 7] = [LVT_TIMER, LVT_THERMAL, LVT_PERFMON, LVT_LINT0, LVT_LINT1, LVT_ERROR, LVT_CMCI];

/// Version register: version 0x14 (integrated xAPIC), max LVT entry 6 (seven LVTs: timer,
/// thermal, perfmon, LINT0, LINT1, error, CMCI). Bit 24 (EOI-broadcast suppression) is added
/// when the VM enables it.
pub const VERSION_VALUE: u32 = 0x14 | (6 << 16);
pub const VERSION_SUPPRESS_EOI_BROADCAST: u32 = 1 << 24;

/// LVT bits.
pub const LVT_MASKED: u32 = 1 << 16;
pub const LVT_VECTOR: u32 = 0xFF;
pub const LVT_DELIVERY_MODE: u32 = 7 << 8;
/// Delivery status (read-only, always idle here).
pub const LVT_DELIVERY_STATUS: u32 = 1 << 12;
pub const LVT_POLARITY: u32 = 1 << 13;
/// Remote IRR of LINT0/LINT1 (read-only).
pub const LVT_REMOTE_IRR: u32 = 1 << 14;
pub const LVT_LEVEL: u32 = 1 << 15;
pub const LVT_TIMER_MODE: u32 = 3 << 17;
pub const TIMER_ONE_SHOT: u32 = 0;
pub const TIMER_PERIODIC: u32 = 1 << 17;
pub const TIMER_TSC_DEADLINE: u32 = 2 << 17;

/// The bits software can write in each LVT (the rest are read-only or reserved).
pub fn lvt_writable(index: usize) -> u32 {
    match index {
        LVT_TIMER => LVT_VECTOR | LVT_MASKED | LVT_TIMER_MODE,
        LVT_THERMAL | LVT_PERFMON | LVT_CMCI => LVT_VECTOR | LVT_DELIVERY_MODE | LVT_MASKED,
        LVT_LINT0 | LVT_LINT1 => LVT_VECTOR | LVT_DELIVERY_MODE | LVT_POLARITY | LVT_LEVEL | LVT_MASKED,
        LVT_ERROR => LVT_VECTOR | LVT_MASKED,
        _ => 0,
    }
}

/// The bits of each LVT that are read-only (not reserved: an x2APIC WRMSR may carry them
/// without #GP; they are ignored).
pub fn lvt_read_only(index: usize) -> u32 {
    match index {
        LVT_LINT0 | LVT_LINT1 => LVT_DELIVERY_STATUS | LVT_REMOTE_IRR,
        LVT_ERROR | LVT_TIMER | LVT_THERMAL | LVT_PERFMON | LVT_CMCI => LVT_DELIVERY_STATUS,
        _ => 0,
    }
}

/// SVR bits.
pub const SVR_VECTOR: u32 = 0xFF;
pub const SVR_ENABLE: u32 = 1 << 8;
pub const SVR_FOCUS_DISABLE: u32 = 1 << 9;
pub const SVR_SUPPRESS_EOI_BROADCAST: u32 = 1 << 12;

/// ICR low bits.
pub const ICR_VECTOR: u32 = 0xFF;
pub const ICR_DELIVERY_MODE_SHIFT: u32 = 8;
pub const ICR_LOGICAL: u32 = 1 << 11;
pub const ICR_BUSY: u32 = 1 << 12;
pub const ICR_ASSERT: u32 = 1 << 14;
pub const ICR_LEVEL: u32 = 1 << 15;
pub const ICR_SHORTHAND_SHIFT: u32 = 18;
/// The ICR low bits that hold state (all but delivery status and the reserved ones).
pub const ICR_LOW_WRITABLE: u32 = 0x000C_CFFF;
/// x2APIC ICR bits that must be zero (bit 12, delivery status, is ignored as Intel does).
pub const X2APIC_ICR_RESERVED: u64 = 0xFFF0_0000 | (3 << 16) | (1 << 13);

/// Divide configuration bits (0, 1 and 3).
pub const DIVIDE_MASK: u32 = 0xB;

/// ESR bits.
pub const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
pub const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
pub const ESR_ILLEGAL_REGISTER: u32 = 1 << 7;

/// IA32_APIC_BASE bits.
pub const BASE_BSP: u64 = 1 << 8;
pub const BASE_EXTD: u64 = 1 << 10;
pub const BASE_ENABLE: u64 = 1 << 11;
/// The architectural default base.
pub const DEFAULT_BASE: u64 = 0xFEE0_0000;

/// The timer divider for a divide configuration value: 2, 4, 8, 16, 32, 64, 128 or 1.
pub fn divider(dcr: u32) -> u64 {
    let code = (dcr & 3) | ((dcr >> 1) & 4);
    1 << ((code + 1) & 7)
}

/// The x2APIC logical ID derived from an x2APIC ID: cluster in bits 31:16, one bit of 16 in
/// bits 15:0.
pub fn x2apic_ldr(id: u32) -> u32 {
    ((id >> 4) << 16) | (1 << (id & 0xF))
}
