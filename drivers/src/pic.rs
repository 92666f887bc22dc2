//! The legacy 8259 PIC pair. Basalt uses the local APIC; the BIOS leaves the PIT's IRQ 0
//! unmasked on the master PIC at vector 8 (#DF's vector), so the PICs are moved to vectors
//! 0x20-0x2F and every line is masked before anything can deliver an interrupt.

use basalt_arch::io::{inb, outb};

const MASTER_CMD: u16 = 0x20;
const MASTER_DATA: u16 = 0x21;
const SLAVE_CMD: u16 = 0xA0;
const SLAVE_DATA: u16 = 0xA1;

/// Remap both PICs above the exception vectors and mask all their lines.
pub fn disable() {
    // ICW1: edge, cascade, ICW4 needed.
    outb(MASTER_CMD, 0x11);
    outb(SLAVE_CMD, 0x11);
    // ICW2: vector offsets.
    outb(MASTER_DATA, 0x20);
    outb(SLAVE_DATA, 0x28);
    // ICW3: slave on IRQ 2.
    outb(MASTER_DATA, 0x04);
    outb(SLAVE_DATA, 0x02);
    // ICW4: 8086 mode.
    outb(MASTER_DATA, 0x01);
    outb(SLAVE_DATA, 0x01);
    // OCW1: mask everything.
    outb(MASTER_DATA, 0xFF);
    outb(SLAVE_DATA, 0xFF);
    let _ = inb(MASTER_DATA);
}
