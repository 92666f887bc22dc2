//! Bounded deterministic fuzzing of the 16550A: random register accesses of random widths and
//! values, random console input and output draining. Nothing may panic, and after every step
//! the output never exceeds its bound, the receive FIFO holds what it can, the interrupt line
//! is low without OUT2 or in loopback, and IIR's identification is one the 16550A has.

use std::time::Instant;

use basalt_devices::bus::{Ctx, PortDevice};
use basalt_devices::irq::RecordingSink;
use basalt_devices::uart::{Uart, COM1_IRQ, OUTPUT_LIMIT, RX_FIFO_LEN};
use basalt_emu::fuzz::XorShift;

/// About 0.4 s in a debug build.
const STEPS: u64 = 350_000;

#[test]
fn fuzz_uart() {
    let start = Instant::now();
    let mut rng = XorShift::new(0x0123_1655_0a00_0004);
    let mut uart = Uart::new(COM1_IRQ);
    let mut sink = RecordingSink::default();
    let mut taken = 0u64;
    for i in 0..STEPS {
        let mut ctx = Ctx { now: i, vcpu: 0, irq: &mut sink };
        let width = [1, 1, 1, 2, 4][rng.below(5) as usize];
        let reg = rng.below(8) as u16;
        match rng.below(10) {
            0..=3 => {
                let mut b = vec![0; width];
                uart.read(&mut ctx, reg, &mut b);
            }
            4..=7 => {
                // Mostly THR writes with DLAB clear, so the output bound is exercised.
                let (reg, v) =
                    if rng.one_in(2) { (0, rng.next_u64() as u8) } else { (reg, rng.next_u64() as u8) };
                let b: Vec<u8> = (0..width).map(|k| if k == 0 { v } else { rng.next_u64() as u8 }).collect();
                uart.write(&mut ctx, reg, &b);
            }
            8 => {
                let n = rng.below(24) as usize;
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                uart.push_input(&mut sink, &bytes);
            }
            _ => {}
        }
        assert!(uart.input_space() <= RX_FIFO_LEN);
        let mcr = uart.modem_control();
        let line = sink.level(COM1_IRQ.gsi).unwrap_or(false);
        if mcr & 0x08 == 0 || mcr & 0x10 != 0 {
            assert!(!line, "line high with MCR {mcr:#x}");
        }
        if rng.one_in(64) {
            // Peek at IIR and LSR with DLAB-independent offsets.
            let mut ctx = Ctx { now: i, vcpu: 0, irq: &mut sink };
            let mut b = [0u8; 1];
            uart.read(&mut ctx, 5, &mut b);
            assert_eq!(b[0] & 0x60, 0x60, "THRE and TEMT always");
            assert_eq!(b[0] & 0x9C, 0, "no parity, framing, break errors");
            uart.read(&mut ctx, 2, &mut b);
            assert!(matches!(b[0] & 0x3F, 0x01 | 0x06 | 0x04 | 0x0C | 0x02 | 0x00), "IIR {:#x}", b[0]);
            assert!(matches!(b[0] & 0xC0, 0x00 | 0xC0));
        }
        if sink.events.len() > 1024 {
            sink.events.drain(..1000);
        }
        let pending = uart.take_output();
        assert!(pending.len() <= OUTPUT_LIMIT);
        taken += pending.len() as u64;
        // Draining every step never fills the buffer: now and then, overfill it on purpose.
        if rng.one_in(1000) {
            for _ in 0..OUTPUT_LIMIT + 5 {
                let mut ctx = Ctx { now: i, vcpu: 0, irq: &mut sink };
                uart.write(&mut ctx, 3, &[0x03]);
                uart.write(&mut ctx, 4, &[0x00]);
                uart.write(&mut ctx, 0, b"x");
            }
            assert_eq!(uart.take_output().len(), OUTPUT_LIMIT);
            assert!(uart.output_dropped() >= 5);
        }
    }
    eprintln!("fuzz_uart: {STEPS} steps, {taken} bytes out, in {:?}", start.elapsed());
}
