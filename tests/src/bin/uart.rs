//! The 16550 UART at 0x3F8: the scratch register; loopback (MCR bit 4) echoing THR to RBR with
//! LSR.DR and the modem lines looped (Linux's probe); FIFO detection (IIR bits 6-7 after FCR);
//! interrupt-driven output: THRE interrupts (IER bit 1, MCR OUT2) on IRQ4 through the IOAPIC,
//! IIR reading 0x02 (THR empty) once, then 0x01, one interrupt per byte sent.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::hw::{inb, outb, spin_until, spin_until_sti};
use basalt_guests::idt::{self, Action, Event, Frame};
use basalt_guests::{acpi, apic, ioapic, time};
use basalt_guests::{guest_assert, guest_assert_eq, guest_println};
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

basalt_guests::entry!(run);

const BASE: u16 = 0x3F8;
const THR: u16 = BASE;
const RBR: u16 = BASE;
const IER: u16 = BASE + 1;
const IIR: u16 = BASE + 2;
const FCR: u16 = BASE + 2;
const LCR: u16 = BASE + 3;
const MCR: u16 = BASE + 4;
const LSR: u16 = BASE + 5;
const MSR: u16 = BASE + 6;
const SCR: u16 = BASE + 7;
const LSR_DR: u8 = 0x01;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;
const MCR_NORMAL: u8 = 0x03; // DTR, RTS
const MCR_OUT2: u8 = 0x08;
const MCR_LOOP: u8 = 0x10;
const VECTOR: u8 = 0x44;
const MESSAGE: &[u8] = b"uart: interrupt-driven output\r\n";

static IRQS: AtomicU64 = AtomicU64::new(0);
/// The IIR the handler read first.
static FIRST_IIR: AtomicU8 = AtomicU8::new(0);

fn on_irq4(_: &Event, _: &mut Frame) -> Action {
    // Reading IIR with THR empty as the source clears that interrupt.
    let iir = inb(IIR);
    if IRQS.fetch_add(1, Ordering::SeqCst) == 0 {
        FIRST_IIR.store(iir, Ordering::SeqCst);
    }
    apic::eoi();
    Action::Return
}

fn ms(n: u64) -> u64 {
    time::us_to_tsc(n * 1000)
}

/// 115200 8N1, FIFOs on, no interrupts: what the bare runtime expects of COM1.
fn restore() {
    outb(IER, 0);
    outb(LCR, 0x80);
    outb(BASE, 1);
    outb(BASE + 1, 0);
    outb(LCR, 0x03);
    outb(FCR, 0xC7);
    outb(MCR, MCR_NORMAL);
}

fn drain() {
    while inb(LSR) & LSR_DR != 0 {
        inb(RBR);
    }
}

fn run() {
    idt::install();
    idt::set_handler(VECTOR, on_irq4);
    apic::enable();
    // Let what was printed so far leave the transmitter.
    spin_until(ms(50), || inb(LSR) & LSR_TEMT != 0);
    restore();

    // Scratch.
    for v in [0x5A, 0xA5, 0x00] {
        outb(SCR, v);
        guest_assert_eq!(inb(SCR), v);
    }

    // Loopback: bytes come back with LSR.DR; the modem lines loop (DTR->DSR, RTS->CTS,
    // OUT1->RI, OUT2->DCD). Checked after leaving loopback, so a failure prints.
    outb(FCR, 0x07);
    outb(MCR, MCR_LOOP | 0x0A); // loop, OUT2, RTS: Linux's autoconfig probe
    let msr_probe = inb(MSR) & 0xF0;
    outb(MCR, MCR_LOOP | 0x0F);
    let msr_all = inb(MSR) & 0xF0;
    drain();
    let mut echoed = [0u8; 4];
    let mut dr_before = 0u8;
    let mut dr_after = 0u8;
    let bytes = [0x55u8, 0xAA, 0x00, b'B'];
    for (i, &b) in bytes.iter().enumerate() {
        outb(THR, b);
        spin_until(ms(20), || inb(LSR) & LSR_DR != 0);
        dr_before |= (inb(LSR) & LSR_DR) << i;
        echoed[i] = inb(RBR);
        dr_after |= (inb(LSR) & LSR_DR) << i;
    }
    outb(MCR, MCR_NORMAL);
    drain();
    guest_assert_eq!(msr_probe, 0x90);
    guest_assert_eq!(msr_all, 0xF0);
    guest_assert!(dr_before == 0xF, "loopback: LSR.DR not set for bytes {:#x}", !dr_before & 0xF);
    guest_assert!(dr_after == 0, "loopback: LSR.DR still set after reading bytes {:#x}", dr_after);
    guest_assert!(echoed == bytes, "loopback echoed {:x?}, not {:x?}", echoed, bytes);

    // FIFO detection: IIR bits 6-7 are 11 with the FIFOs on, 00 with them off.
    outb(FCR, 0x00);
    let iir_off = inb(IIR) & 0xC0;
    outb(FCR, 0x07);
    let iir_on = inb(IIR) & 0xC0;
    guest_assert_eq!(iir_on, 0xC0);
    guest_assert_eq!(iir_off, 0x00);

    // Interrupt-driven output through the IOAPIC.
    let madt = acpi::find_rsdp().and_then(|r| acpi::find_table(&r, b"APIC"));
    let gsi = madt.map_or(4, |m| acpi::isa_gsi(m, 4));
    guest_assert_eq!(inb(IIR) & 0x0F, 0x01);
    ioapic::set_entry(gsi, ioapic::fixed(VECTOR, apic::id(), false, false));
    outb(MCR, MCR_NORMAL | MCR_OUT2);
    outb(IER, 0x02);
    // THR is empty: the interrupt is pending at once. IIR says so (0x02), then, read, clears.
    let ok = spin_until(ms(20), || inb(LSR) & LSR_THRE != 0);
    guest_assert!(ok, "THR not empty");
    let iir = inb(IIR) & 0x0F;
    let iir_again = inb(IIR) & 0x0F;
    guest_assert_eq!(iir, 0x02);
    guest_assert_eq!(iir_again, 0x01);
    // Re-arm: toggling IER.THRE with THR empty raises it again, now for the handler.
    outb(IER, 0);
    outb(IER, 0x02);
    let ok = spin_until_sti(ms(50), || IRQS.load(Ordering::SeqCst) >= 1);
    guest_assert!(ok, "no THRE interrupt on IRQ4 (GSI {})", gsi);
    guest_assert_eq!(FIRST_IIR.load(Ordering::SeqCst) & 0x0F, 0x02);
    guest_assert_eq!(inb(IIR) & 0x0F, 0x01);
    // One byte per THRE interrupt.
    for (i, &b) in MESSAGE.iter().enumerate() {
        outb(THR, b);
        let want = i as u64 + 2;
        let ok = spin_until_sti(ms(50), || IRQS.load(Ordering::SeqCst) >= want);
        if !ok {
            restore();
        }
        guest_assert!(ok, "no THRE interrupt after byte {} ({} interrupts)", i, IRQS.load(Ordering::SeqCst));
    }
    spin_until_sti(ms(5), || false);
    let irqs = IRQS.load(Ordering::SeqCst);
    ioapic::mask(gsi);
    restore();
    guest_assert_eq!(irqs, MESSAGE.len() as u64 + 1);
    guest_println!("16550: scratch, loopback, FIFOs and {irqs} THRE interrupts on GSI {gsi}");
}
