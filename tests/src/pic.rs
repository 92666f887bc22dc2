//! The 8259 PIC pair, master at 0x20/0x21 and slave at 0xA0/0xA1.

use crate::hw::outb;

pub const MASTER_CMD: u16 = 0x20;
pub const MASTER_DATA: u16 = 0x21;
pub const SLAVE_CMD: u16 = 0xA0;
pub const SLAVE_DATA: u16 = 0xA1;
/// The non-specific EOI command (OCW2).
pub const EOI: u8 = 0x20;

/// ICW1-ICW4: edge-triggered, cascaded (slave on IRQ2), 8086 mode; IRQ0-7 at `master_base`,
/// IRQ8-15 at `slave_base`; then the masks (bit set: masked).
pub fn init(master_base: u8, slave_base: u8, master_mask: u8, slave_mask: u8) {
    outb(MASTER_CMD, 0x11); // ICW1: ICW4 follows, cascade, edge
    outb(SLAVE_CMD, 0x11);
    outb(MASTER_DATA, master_base); // ICW2: vector base
    outb(SLAVE_DATA, slave_base);
    outb(MASTER_DATA, 0x04); // ICW3: slave on IRQ2
    outb(SLAVE_DATA, 0x02); // ICW3: cascade identity 2
    outb(MASTER_DATA, 0x01); // ICW4: 8086 mode
    outb(SLAVE_DATA, 0x01);
    outb(MASTER_DATA, master_mask);
    outb(SLAVE_DATA, slave_mask);
}

/// EOI for `irq` (both chips for IRQ8-15).
pub fn eoi(irq: u8) {
    if irq >= 8 {
        outb(SLAVE_CMD, EOI);
    }
    outb(MASTER_CMD, EOI);
}
