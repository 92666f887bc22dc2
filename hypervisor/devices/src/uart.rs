//! A National Semiconductor 16550A UART: eight ports (COM1 at 0x3F8, IRQ4 by default).
//!
//! The line is a host console, not a wire: the transmitter is instantly empty (a byte written
//! to THR goes straight to a bounded output buffer the VM core drains with
//! [`Uart::take_output`]), and the host pushes received bytes with [`Uart::push_input`] into
//! the 16-byte receive FIFO (one byte holding register while FIFOs are off). Baud rate, word
//! length, parity and break are kept as registers and otherwise ignored; there are never
//! parity, framing or break errors. The modem inputs read as a connected peer (CTS, DSR, DCD
//! asserted, RI not) except in loopback, where they follow the modem-control outputs.
//!
//! Interrupts, as the datasheet ranks them in IIR: receiver line status (OE with ELSI),
//! received data (ERBFI: the FIFO at its trigger level, IIR 0x04, or holding fewer bytes,
//! reported at once as the character timeout 0x0C since the model has no clock to wait four
//! character times by), THR empty (ETBEI: set when a write to THR has gone out and when ETBEI
//! is enabled while THR is empty; cleared by reading IIR while it is the one reported or by a
//! THR write) and modem status (EDSSI with a delta bit). The interrupt line is the pending
//! interrupt gated by MCR OUT2, as the PC wires it; in loopback OUT2 is disconnected from its
//! pin, so the line stays low.

use crate::bus::{Ctx, Effect, PortDevice};
use crate::irq::{IrqLine, IrqSink};
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// COM1.
pub const COM1_PORT: u16 = 0x3F8;
pub const COM1_IRQ: IrqLine = IrqLine::new(4);
/// COM2.
pub const COM2_PORT: u16 = 0x2F8;
pub const COM2_IRQ: IrqLine = IrqLine::new(3);
/// Ports a UART occupies.
pub const UART_PORTS: u16 = 8;
/// The receive FIFO.
pub const RX_FIFO_LEN: usize = 16;
/// The bound of the output buffer.
pub const OUTPUT_LIMIT: usize = 4096;

const IER_RDA: u8 = 0x01;
const IER_THRE: u8 = 0x02;
const IER_RLS: u8 = 0x04;
const IER_MS: u8 = 0x08;

const LCR_DLAB: u8 = 0x80;

const MCR_DTR: u8 = 0x01;
const MCR_RTS: u8 = 0x02;
const MCR_OUT1: u8 = 0x04;
const MCR_OUT2: u8 = 0x08;
const MCR_LOOP: u8 = 0x10;

const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;
/// OE, PE, FE, BI: cleared by reading LSR.
const LSR_ERRORS: u8 = 0x1E;

const MSR_CTS: u8 = 0x10;
const MSR_DSR: u8 = 0x20;
const MSR_RI: u8 = 0x40;
const MSR_DCD: u8 = 0x80;
const MSR_TERI: u8 = 0x04;

/// IIR interrupt identifications.
const IIR_NONE: u8 = 0x01;
const IIR_RLS: u8 = 0x06;
const IIR_RDA: u8 = 0x04;
const IIR_TIMEOUT: u8 = 0x0C;
const IIR_THRE: u8 = 0x02;
const IIR_MS: u8 = 0x00;
const IIR_FIFO: u8 = 0xC0;

/// A 16550A.
#[derive(Debug, Clone)]
pub struct Uart {
    irq: IrqLine,
    ier: u8,
    lcr: u8,
    mcr: u8,
    /// OE (the only error the model produces); DR, THRE and TEMT are computed.
    lsr_errors: u8,
    /// Delta bits 0-3 of MSR; the status bits 4-7 are computed.
    msr_delta: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    fifo_enabled: bool,
    /// FCR bits 7-6: receive trigger level 1, 4, 8 or 14.
    trigger: u8,
    /// FCR bit 3, kept.
    dma_mode: bool,
    rx: VecDeque<u8>,
    /// The last byte read from RBR, which RBR keeps showing while empty.
    last_rx: u8,
    /// THR-empty interrupt source pending.
    thr_pending: bool,
    output: Vec<u8>,
    dropped: u64,
    line: bool,
}

impl Uart {
    /// A UART in its reset state raising `irq` (e.g. [`COM1_IRQ`]).
    pub fn new(irq: IrqLine) -> Self {
        Uart {
            irq,
            ier: 0,
            lcr: 0,
            mcr: 0,
            lsr_errors: 0,
            msr_delta: 0,
            scr: 0,
            dll: 0x0C,
            dlm: 0,
            fifo_enabled: false,
            trigger: 1,
            dma_mode: false,
            rx: VecDeque::with_capacity(RX_FIFO_LEN),
            last_rx: 0,
            thr_pending: false,
            output: Vec::new(),
            dropped: 0,
            line: false,
        }
    }

    /// The bytes the guest transmitted since the last call (at most [`OUTPUT_LIMIT`]).
    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.output)
    }

    /// Whether [`Uart::take_output`] has something.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Bytes the guest transmitted that were dropped because the output buffer was full.
    pub fn output_dropped(&self) -> u64 {
        self.dropped
    }

    /// How many bytes [`Uart::push_input`] can take now without an overrun; a console feeds
    /// at most this many and tries again after the guest reads (when this grows).
    pub fn input_space(&self) -> usize {
        self.rx_capacity().saturating_sub(self.rx.len())
    }

    /// Bytes from the host console arrive on the receive line. What does not fit in the FIFO
    /// is an overrun: OE is set and the byte is lost (in non-FIFO mode it replaces the one in
    /// the holding register, as the 16450 does). Ignored in loopback, where the receiver
    /// listens to the transmitter.
    pub fn push_input(&mut self, irq: &mut dyn IrqSink, bytes: &[u8]) {
        if self.mcr & MCR_LOOP == 0 {
            for &b in bytes {
                self.receive(b);
            }
        }
        self.update_line(irq);
    }

    /// The modem-control outputs as MCR has them (for a console that cares about DTR/RTS).
    pub fn modem_control(&self) -> u8 {
        self.mcr
    }

    /// The divisor latch (115200 / divisor is the baud rate the guest asked for).
    pub fn divisor(&self) -> u16 {
        u16::from_le_bytes([self.dll, self.dlm])
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo_enabled {
            RX_FIFO_LEN
        } else {
            1
        }
    }

    fn receive(&mut self, b: u8) {
        if self.rx.len() >= self.rx_capacity() {
            self.lsr_errors |= LSR_OE;
            if !self.fifo_enabled {
                self.rx.clear();
                self.rx.push_back(b);
            }
        } else {
            self.rx.push_back(b);
        }
    }

    fn transmit(&mut self, b: u8) {
        if self.mcr & MCR_LOOP != 0 {
            self.receive(b);
        } else if self.output.len() < OUTPUT_LIMIT {
            self.output.push(b);
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
        // The byte goes out at once: THR is empty again, which is a THRE interrupt.
        self.thr_pending = true;
    }

    /// The modem-status inputs (MSR bits 4-7).
    fn modem_inputs(&self) -> u8 {
        if self.mcr & MCR_LOOP != 0 {
            let m = self.mcr;
            (if m & MCR_RTS != 0 { MSR_CTS } else { 0 })
                | (if m & MCR_DTR != 0 { MSR_DSR } else { 0 })
                | (if m & MCR_OUT1 != 0 { MSR_RI } else { 0 })
                | (if m & MCR_OUT2 != 0 { MSR_DCD } else { 0 })
        } else {
            MSR_CTS | MSR_DSR | MSR_DCD
        }
    }

    fn lsr(&self) -> u8 {
        let dr = if self.rx.is_empty() { 0 } else { LSR_DR };
        dr | self.lsr_errors | LSR_THRE | LSR_TEMT
    }

    /// The highest-priority pending interrupt's IIR identification.
    fn pending(&self) -> u8 {
        if self.ier & IER_RLS != 0 && self.lsr_errors & LSR_ERRORS != 0 {
            IIR_RLS
        } else if self.ier & IER_RDA != 0 && !self.rx.is_empty() {
            if self.fifo_enabled && self.rx.len() < self.trigger as usize {
                IIR_TIMEOUT
            } else {
                IIR_RDA
            }
        } else if self.ier & IER_THRE != 0 && self.thr_pending {
            IIR_THRE
        } else if self.ier & IER_MS != 0 && self.msr_delta != 0 {
            IIR_MS
        } else {
            IIR_NONE
        }
    }

    fn update_line(&mut self, irq: &mut dyn IrqSink) {
        let level = self.pending() != IIR_NONE && self.mcr & (MCR_OUT2 | MCR_LOOP) == MCR_OUT2;
        if level != self.line {
            self.line = level;
            self.irq.set(irq, level);
        }
    }

    fn read_reg(&mut self, reg: u16) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match reg {
            0 if dlab => self.dll,
            0 => {
                if let Some(b) = self.rx.pop_front() {
                    self.last_rx = b;
                }
                self.last_rx
            }
            1 if dlab => self.dlm,
            1 => self.ier,
            2 => {
                let id = self.pending();
                if id == IIR_THRE {
                    self.thr_pending = false;
                }
                id | if self.fifo_enabled { IIR_FIFO } else { 0 }
            }
            3 => self.lcr,
            4 => self.mcr,
            5 => {
                let v = self.lsr();
                self.lsr_errors &= !LSR_ERRORS;
                v
            }
            6 => {
                let v = self.modem_inputs() | self.msr_delta;
                self.msr_delta = 0;
                v
            }
            7 => self.scr,
            _ => 0xFF,
        }
    }

    fn write_reg(&mut self, reg: u16, v: u8) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match reg {
            0 if dlab => self.dll = v,
            0 => self.transmit(v),
            1 if dlab => self.dlm = v,
            1 => {
                let v = v & 0x0F;
                let enabled = v & !self.ier;
                let disabled = self.ier & !v;
                self.ier = v;
                if enabled & IER_THRE != 0 {
                    // THR is always empty: enabling ETBEI interrupts at once.
                    self.thr_pending = true;
                } else if disabled & IER_THRE != 0 {
                    self.thr_pending = false;
                }
            }
            2 => self.write_fcr(v),
            3 => self.lcr = v,
            4 => {
                let before = self.modem_inputs();
                self.mcr = v & 0x1F;
                let after = self.modem_inputs();
                self.note_modem_change(before, after);
            }
            7 => self.scr = v,
            // LSR and MSR are read-only (LSR writes are a factory test).
            _ => {}
        }
    }

    fn note_modem_change(&mut self, before: u8, after: u8) {
        let changed = before ^ after;
        // DCTS, DDSR, DDCD on any change; TERI only when RI goes inactive.
        self.msr_delta |= (changed >> 4) & 0x0B;
        if before & MSR_RI != 0 && after & MSR_RI == 0 {
            self.msr_delta |= MSR_TERI;
        }
    }

    fn write_fcr(&mut self, v: u8) {
        let enable = v & 0x01 != 0;
        if enable != self.fifo_enabled {
            // Changing FCR0 clears both FIFOs.
            self.rx.clear();
            self.fifo_enabled = enable;
        }
        if !enable {
            // The other bits are programmed only together with FCR0.
            return;
        }
        if v & 0x02 != 0 {
            self.rx.clear();
        }
        self.dma_mode = v & 0x08 != 0;
        self.trigger = [1, 4, 8, 14][(v >> 6) as usize];
    }
}

impl PortDevice for Uart {
    fn read(&mut self, ctx: &mut Ctx<'_>, offset: u16, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.read_reg(offset.saturating_add(i as u16));
        }
        self.update_line(ctx.irq);
    }

    fn write(&mut self, ctx: &mut Ctx<'_>, offset: u16, data: &[u8]) -> Effect {
        for (i, &b) in data.iter().enumerate() {
            self.write_reg(offset.saturating_add(i as u16), b);
        }
        self.update_line(ctx.irq);
        Effect::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::RecordingSink;

    const RX: u16 = 0;
    const IER: u16 = 1;
    const IIR: u16 = 2;
    const LCR: u16 = 3;
    const MCR: u16 = 4;
    const LSR: u16 = 5;
    const MSR: u16 = 6;
    const SCR: u16 = 7;

    struct Rig {
        uart: Uart,
        sink: RecordingSink,
    }

    impl Rig {
        fn new() -> Self {
            Rig { uart: Uart::new(COM1_IRQ), sink: RecordingSink::default() }
        }
        fn inb(&mut self, reg: u16) -> u8 {
            let mut ctx = Ctx { now: 0, vcpu: 0, irq: &mut self.sink };
            let mut b = [0];
            self.uart.read(&mut ctx, reg, &mut b);
            b[0]
        }
        fn outb(&mut self, reg: u16, v: u8) {
            let mut ctx = Ctx { now: 0, vcpu: 0, irq: &mut self.sink };
            self.uart.write(&mut ctx, reg, &[v]);
        }
        fn push(&mut self, bytes: &[u8]) {
            self.uart.push_input(&mut self.sink, bytes);
        }
        fn line(&self) -> bool {
            self.sink.level(COM1_IRQ.gsi).unwrap_or(false)
        }
    }

    #[test]
    fn reset_state_and_register_table() {
        let mut r = Rig::new();
        assert_eq!(r.inb(IER), 0);
        assert_eq!(r.inb(IIR), 0x01);
        assert_eq!(r.inb(LCR), 0);
        assert_eq!(r.inb(MCR), 0);
        assert_eq!(r.inb(LSR), 0x60);
        assert_eq!(r.inb(MSR), 0xB0);
        r.outb(SCR, 0x5A);
        assert_eq!(r.inb(SCR), 0x5A);
        // DLAB switches offsets 0 and 1 to the divisor latch.
        r.outb(LCR, 0x83);
        r.outb(0, 0x01);
        r.outb(1, 0x00);
        assert_eq!(r.inb(0), 0x01);
        assert_eq!(r.inb(1), 0x00);
        r.outb(LCR, 0x03);
        assert_eq!(r.uart.divisor(), 1);
        assert_eq!(r.inb(LCR), 0x03);
        assert!(!r.uart.has_output(), "divisor writes are not output");
        r.outb(IER, 0xFF);
        assert_eq!(r.inb(IER), 0x0F, "IER bits 4-7 are 0 on a 16550A");
        r.outb(MCR, 0xFF);
        assert_eq!(r.inb(MCR), 0x1F);
        r.outb(LSR, 0);
        r.outb(MSR, 0);
        assert_eq!(r.inb(LSR) & 0x60, 0x60, "LSR and MSR are read-only");
    }

    /// The probe of Linux's `autoconfig()` and `autoconfig_16550a()` (8250_port.c), in order.
    #[test]
    fn linux_8250_autoconfig_finds_a_16550a() {
        let mut r = Rig::new();
        // Existence test through IER.
        let scratch = r.inb(IER);
        r.outb(IER, 0);
        let scratch2 = r.inb(IER) & 0x0F;
        r.outb(IER, 0x0F);
        let scratch3 = r.inb(IER) & 0x0F;
        r.outb(IER, scratch);
        assert_eq!((scratch2, scratch3), (0, 0x0F));
        // Loopback test.
        let save_mcr = r.inb(MCR);
        let save_lcr = r.inb(LCR);
        r.outb(MCR, 0x10 | 0x08 | 0x02);
        let status1 = r.inb(MSR) & 0xF0;
        r.outb(MCR, save_mcr);
        assert_eq!(status1, 0x90, "loopback RTS->CTS, OUT2->DCD");
        // FIFO detection.
        r.outb(LCR, 0xBF);
        r.outb(2, 0); // EFR on a 16650; FCR here
        r.outb(LCR, 0);
        r.outb(2, 0x01);
        assert_eq!(r.inb(IIR) >> 6, 3, "16550A");
        // autoconfig_16550a: no EFR behind DLAB or 0xBF.
        r.outb(LCR, 0x80);
        assert_ne!(r.inb(2), 0);
        r.outb(LCR, 0xBF);
        assert_ne!(r.inb(2), 0);
        // Not a National Semiconductor SuperIO.
        r.outb(LCR, 0);
        let status1 = r.inb(MCR);
        r.outb(LCR, 0xE0);
        let status2 = r.inb(2);
        assert_eq!((status1 ^ status2) & 0x10, 0);
        r.outb(LCR, 0);
        r.outb(MCR, status1 ^ 0x10);
        r.outb(LCR, 0xE0);
        let status2 = r.inb(2);
        r.outb(LCR, 0);
        r.outb(MCR, status1);
        assert_eq!((status2 ^ status1) & 0x10, 0x00, "bit 4 of IIR never follows MCR LOOP");
        // Not a TI16750.
        r.outb(LCR, 0);
        r.outb(2, 0x21);
        let s1 = r.inb(IIR) & 0xE0;
        r.outb(2, 0);
        r.outb(LCR, 0x80);
        r.outb(2, 0x21);
        let s2 = r.inb(IIR) & 0xE0;
        r.outb(2, 0);
        r.outb(LCR, 0);
        assert_eq!(s1, 0xC0);
        assert_ne!(s2, 0xE0);
        // No UUE bit.
        let iersave = r.inb(IER);
        r.outb(IER, iersave | 0x40);
        assert_eq!(r.inb(IER) & 0x40, 0);
        r.outb(IER, iersave);
        r.outb(LCR, save_lcr);
        // serial8250_startup: clear FIFOs, read the interrupt registers, LSR is not 0xFF.
        r.outb(2, 0x07);
        r.outb(2, 0);
        for reg in [LSR, RX, IIR, MSR] {
            r.inb(reg);
        }
        assert_ne!(r.inb(LSR), 0xFF);
        // The THRE re-assert test: a real 16550 raises THRE each time ETBEI is enabled.
        r.outb(MCR, 0x0B);
        r.outb(IER, 0x02);
        let iir1 = r.inb(IIR);
        r.outb(IER, 0);
        r.outb(IER, 0x02);
        let iir = r.inb(IIR);
        r.outb(IER, 0);
        assert_eq!(iir1 & 1, 0);
        assert_eq!(iir & 1, 0, "no UART_BUG_THRE");
        assert!(!r.uart.has_output());
    }

    #[test]
    fn thre_interrupt_follows_the_16550() {
        let mut r = Rig::new();
        r.outb(MCR, 0x08); // OUT2
        assert!(!r.line());
        r.outb(IER, IER_THRE);
        assert!(r.line(), "enabling ETBEI with THR empty interrupts");
        assert_eq!(r.inb(IIR), 0x02);
        assert!(!r.line(), "reading IIR cleared it");
        assert_eq!(r.inb(IIR), 0x01);
        r.outb(RX, b'a');
        assert!(r.line(), "the byte went out: THR empty again");
        r.outb(IER, IER_THRE); // already enabled: no new source, still pending from the write
        assert_eq!(r.inb(IIR), 0x02);
        r.outb(IER, 0);
        r.outb(RX, b'b');
        assert!(!r.line());
        r.outb(IER, IER_THRE);
        assert!(r.line());
        r.outb(IER, 0);
        assert!(!r.line(), "disabling ETBEI drops the source");
        r.outb(IER, IER_THRE);
        r.outb(MCR, 0);
        assert!(!r.line(), "OUT2 gates the line");
        r.outb(MCR, 0x08);
        assert!(r.line());
        assert_eq!(r.uart.take_output(), b"ab");
        assert!(r.uart.take_output().is_empty());
    }

    #[test]
    fn iir_reports_the_highest_priority_source() {
        let mut r = Rig::new();
        r.outb(2, 0x01); // FIFO, trigger 1
        r.outb(MCR, 0x08);
        r.outb(IER, 0x0F);
        // THRE pending from enabling; add modem status, received data, then an overrun.
        r.outb(MCR, 0x08 | 0x10); // loopback: inputs change -> delta bits
        r.outb(MCR, 0x08);
        assert_eq!(r.inb(IIR), 0xC2, "THRE above modem status");
        assert_eq!(r.inb(IIR), 0xC0, "then modem status");
        r.push(&[1; 17]);
        assert_eq!(r.inb(IIR), 0xC6, "line status first");
        assert_eq!(r.inb(LSR) & 0x03, 0x03, "OE and DR");
        assert_eq!(r.inb(LSR) & 0x02, 0, "LSR read clears OE");
        assert_eq!(r.inb(IIR), 0xC4, "received data");
        while r.inb(LSR) & 1 != 0 {
            r.inb(RX);
        }
        assert_eq!(r.inb(IIR), 0xC0, "modem status still pending");
        let msr = r.inb(MSR);
        assert_ne!(msr & 0x0F, 0);
        assert_eq!(r.inb(MSR) & 0x0F, 0, "MSR read clears the deltas");
        assert_eq!(r.inb(IIR), 0xC1);
        assert!(!r.line());
    }

    #[test]
    fn receive_fifo_trigger_timeout_and_overrun() {
        let mut r = Rig::new();
        r.outb(MCR, 0x08);
        r.outb(IER, IER_RDA);
        // Non-FIFO: one holding register, overrun replaces it.
        r.push(b"x");
        assert!(r.line());
        assert_eq!(r.inb(IIR), 0x04);
        r.push(b"y");
        assert_eq!(r.inb(LSR), 0x63);
        assert_eq!(r.inb(RX), b'y');
        assert!(!r.line());
        assert_eq!(r.inb(LSR), 0x60);
        assert_eq!(r.inb(RX), b'y', "RBR keeps its last byte");
        // FIFO, trigger level 8.
        r.outb(2, 0x81);
        assert_eq!(r.uart.input_space(), 16);
        r.push(b"1234");
        assert_eq!(r.inb(IIR), 0xCC, "under the trigger level: character timeout");
        r.push(b"5678");
        assert_eq!(r.inb(IIR), 0xC4);
        r.push(b"9abcdefgXYZ");
        assert_eq!(r.inb(LSR) & 0x02, 0x02, "16 fit, 3 overran");
        let mut got = Vec::new();
        while r.inb(LSR) & LSR_DR != 0 {
            got.push(r.inb(RX));
        }
        assert_eq!(got, b"123456789abcdefg");
        // FCR clears the receive FIFO.
        r.push(b"zz");
        r.outb(2, 0x83);
        assert_eq!(r.inb(LSR) & 1, 0);
        assert!(!r.line());
    }

    #[test]
    fn loopback_routes_output_and_modem_bits_back() {
        let mut r = Rig::new();
        r.outb(2, 0x01);
        r.outb(MCR, 0x10);
        assert_eq!(r.inb(MSR), 0x0B, "CTS, DSR, DCD dropped: their deltas");
        r.outb(MCR, 0x10 | 0x0F);
        assert_eq!(r.inb(MSR), 0xF0 | 0x0B, "DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD");
        r.outb(MCR, 0x10 | 0x0B);
        assert_eq!(r.inb(MSR), 0xB4, "RI went inactive: TERI");
        r.outb(MCR, 0x10 | 0x08);
        r.outb(IER, IER_RDA);
        r.outb(RX, b'L');
        assert!(!r.line(), "in loopback OUT2 does not reach the pin");
        assert_eq!(r.inb(IIR), 0xC4);
        r.push(b"ignored");
        assert_eq!(r.inb(RX), b'L');
        assert_eq!(r.inb(LSR) & 1, 0);
        assert!(!r.uart.has_output(), "loopback output does not reach the console");
        r.outb(MCR, 0x08);
        assert_eq!(r.inb(MSR) & 0xF0, 0xB0);
    }

    #[test]
    fn output_is_bounded_and_counts_what_it_drops() {
        let mut r = Rig::new();
        for i in 0..OUTPUT_LIMIT + 10 {
            r.outb(RX, i as u8);
        }
        assert_eq!(r.uart.output_dropped(), 10);
        let out = r.uart.take_output();
        assert_eq!(out.len(), OUTPUT_LIMIT);
        assert_eq!(out[5], 5);
        r.outb(RX, b'!');
        assert_eq!(r.uart.take_output(), b"!");
    }

    #[test]
    fn wide_accesses_are_byte_cycles() {
        let mut r = Rig::new();
        let mut ctx = Ctx { now: 0, vcpu: 0, irq: &mut r.sink };
        r.uart.write(&mut ctx, 6, &[0x11, 0x22, 0x33]);
        let mut b = [0u8; 4];
        r.uart.read(&mut ctx, 5, &mut b);
        assert_eq!(b, [0x60, 0xB0, 0x22, 0xFF]);
    }
}
