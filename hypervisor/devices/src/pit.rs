//! The Intel 8254 programmable interval timer (ports 0x40-0x43) and the PC's system control
//! port B (port 0x61), whose bit 0 gates channel 2 and whose bit 5 reads channel 2's OUT.
//!
//! Time: the 8254 counts a free-running 1.193182 MHz clock. The model quantises the guest TSC
//! to that clock from TSC 0 (`tick = now * PIT_HZ / tsc_hz`) and keeps, for each counting
//! channel, the tick at which its counting element was loaded; every counter value and OUT
//! level is computed from the current tick, so nothing has to run between accesses.
//!
//! As the datasheet has it, a count written at tick `w` is loaded into the counting element
//! on the next clock (`w + 1`), so in mode 0 OUT goes high `N + 1` clocks after the write.
//!
//! Modes (6 and 7 alias 2 and 3):
//! - 0 interrupt on terminal count: OUT low from the control word until the count reaches 0.
//!   Gate low suspends counting; writing the first byte of a two-byte count stops counting.
//! - 1 hardware one-shot and 5 hardware strobe: wait for a gate rising edge (channel 2 only,
//!   from port 0x61; channels 0 and 1 have their gates tied high, so never trigger).
//! - 2 rate generator, 3 square wave: periodic; gate low stops the counter (OUT high), a gate
//!   rising edge reloads it. A count written while counting takes effect at the end of the
//!   current period (the datasheet loads mode 3's at the end of the half-cycle; OSes rewrite
//!   mode 3 counts only after a control word, which restarts at once).
//! - 4 software strobe: OUT pulses low for one clock when the count reaches 0.
//!
//! Channel 0's OUT drives IRQ0: the model pulses its [`IrqLine`] at each rising edge of OUT,
//! once per period in modes 2 and 3 and once in modes 0 and 4. A VM core that advances late
//! gets one pulse for all the edges it missed (an edge-triggered PIC/IOAPIC coalesces them
//! anyway), and the model never asks for IRQ0 edges closer than [`MIN_IRQ_TICKS`] apart, so
//! a guest that programs a tiny period gets a throttled timer instead of a VM-exit storm.
//!
//! Port 0x61 lives in the same model because channel 2 is wired to it; the VM core, which
//! owns the `Pit` (it is [`Timed`]), routes port 0x61 to [`Pit::port61_read`] and
//! [`Pit::port61_write`], and ports 0x40-0x43 to the [`PortDevice`] impl (offsets 0-3).

use crate::bus::{Ctx, Effect, PortDevice, Timed};
use crate::irq::IrqLine;
use crate::time::Timebase;
use alloc::sync::Arc;
use spin::Mutex;

/// The 8254's input clock on a PC.
pub const PIT_HZ: u64 = 1_193_182;
/// The first port (channel 0); the range is 4 ports.
pub const PIT_BASE_PORT: u16 = 0x40;
/// System control port B.
pub const PORT61: u16 = 0x61;
/// The closest two IRQ0 edges the model asks for, in PIT clocks (about 50 µs, 20 kHz).
pub const MIN_IRQ_TICKS: u64 = 60;

/// A channel's counting element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counting {
    /// Not counting, holding `value` with OUT at `out`: after a control word (until a count is
    /// written), in mode 0 between the two bytes of a count, and in modes 1 and 5 until the
    /// gate triggers.
    Held { value: u16, out: bool },
    /// Counting since absolute PIT tick `start` (the clock at which the count was loaded).
    Running { start: u64 },
    /// Stopped by a low gate after `elapsed` clocks of counting.
    Paused { elapsed: u64 },
}

#[derive(Debug, Clone)]
struct Channel {
    /// 0-5.
    mode: u8,
    /// Read/write access: 1 low byte, 2 high byte, 3 low then high.
    access: u8,
    bcd: bool,
    /// The count register: the last count written (1..=65536, or 1..=10000 in BCD).
    cr: u32,
    /// The count the counting element runs with.
    n: u32,
    /// Modes 2 and 3: `cr` replaces `n` at this tick, the end of the current period.
    pending: Option<u64>,
    /// The low byte of a two-byte count, written and waiting for its high byte.
    write_lo: Option<u8>,
    /// The next read of a two-byte count gives the high byte.
    read_hi: bool,
    /// A latched count (from a latch or read-back command), kept until read.
    latch: Option<u16>,
    /// A latched status byte, read before the count.
    status: Option<u8>,
    gate: bool,
    /// A count has been written since the last control word.
    counted: bool,
    state: Counting,
}

impl Channel {
    fn new(gate: bool) -> Self {
        Channel {
            mode: 0,
            access: 3,
            bcd: false,
            cr: 0x10000,
            n: 0x10000,
            pending: None,
            write_lo: None,
            read_hi: false,
            latch: None,
            status: None,
            gate,
            counted: false,
            state: Counting::Held { value: 0, out: false },
        }
    }

    fn modulus(&self) -> u64 {
        if self.bcd {
            10_000
        } else {
            0x1_0000
        }
    }

    /// Clocks counted at tick `t`.
    fn elapsed(&self, t: u64) -> Option<u64> {
        match self.state {
            Counting::Held { .. } => None,
            Counting::Running { start } => Some(t.saturating_sub(start)),
            Counting::Paused { elapsed } => Some(elapsed),
        }
    }

    /// Apply a pending mode 2/3 reload that is due at tick `t`.
    fn settle(&mut self, t: u64) {
        if let (Some(at), Counting::Running { .. }) = (self.pending, self.state) {
            if t >= at {
                self.n = self.cr;
                self.state = Counting::Running { start: at };
                self.pending = None;
            }
        }
    }

    /// The counting element's value at tick `t`, in binary.
    fn value(&self, t: u64) -> u16 {
        let e = match (self.state, self.elapsed(t)) {
            (Counting::Held { value, .. }, _) => return value,
            (_, Some(e)) => e,
            (_, None) => 0,
        };
        let n = self.n.max(1) as u64;
        let m = self.modulus();
        let v = match self.mode {
            2 => n - e % n,
            3 => {
                let p = e % n;
                let hi_len = n.div_ceil(2);
                let q = if p < hi_len { p } else { p - hi_len };
                n.saturating_sub(2 * q) & !1
            }
            // 0, 1, 4, 5 count down through 0 and wrap.
            _ => (n % m + m - e % m) % m,
        };
        (v % m) as u16
    }

    /// The value as the guest reads it (BCD-encoded in BCD mode).
    fn read_value(&self, t: u64) -> u16 {
        let v = self.value(t);
        if self.bcd {
            to_bcd16(v)
        } else {
            v
        }
    }

    /// OUT at tick `t`.
    fn out(&self, t: u64) -> bool {
        let e = match self.state {
            Counting::Held { out, .. } => return out,
            Counting::Paused { elapsed } => {
                if matches!(self.mode, 2 | 3) {
                    return true;
                }
                elapsed
            }
            Counting::Running { start } => t.saturating_sub(start),
        };
        let n = self.n.max(1) as u64;
        match self.mode {
            0 => e >= n,
            1 => e >= n,
            2 => e % n != n - 1,
            3 => e % n < n.div_ceil(2),
            _ => e != n,
        }
    }

    /// Whether the count register has not yet been loaded into the counting element.
    fn null_count(&self, t: u64) -> bool {
        match self.state {
            _ if self.pending.is_some() => true,
            // After a control word, between the bytes of a count, and in modes 1 and 5 until
            // the trigger loads it.
            Counting::Held { .. } => true,
            Counting::Running { start } => t < start,
            Counting::Paused { .. } => false,
        }
    }

    fn status_byte(&self, t: u64) -> u8 {
        ((self.out(t) as u8) << 7)
            | ((self.null_count(t) as u8) << 6)
            | (self.access << 4)
            | (self.mode << 1)
            | self.bcd as u8
    }

    /// The first tick after `t` at which OUT rises, if it will without further writes.
    fn next_rise_after(&self, t: u64) -> Option<u64> {
        let Counting::Running { start } = self.state else { return None };
        let n = self.n.max(1) as u64;
        let single = |at: u64| (at > t).then_some(at);
        match self.mode {
            0 | 1 => single(start.saturating_add(n)),
            4 | 5 => single(start.saturating_add(n).saturating_add(1)),
            _ => {
                let k = if t >= start { (t - start) / n + 1 } else { 1 };
                Some(start.saturating_add(k.saturating_mul(n)))
            }
        }
    }

    fn control(&mut self, access: u8, mode: u8, bcd: bool, t: u64) {
        let value = self.value(t);
        self.access = access;
        self.mode = mode;
        self.bcd = bcd;
        self.write_lo = None;
        self.read_hi = false;
        self.latch = None;
        self.status = None;
        self.pending = None;
        self.counted = false;
        self.state = Counting::Held { value, out: mode != 0 };
    }

    fn latch_count(&mut self, t: u64) {
        if self.latch.is_none() {
            self.latch = Some(self.read_value(t));
        }
    }

    fn latch_status(&mut self, t: u64) {
        if self.status.is_none() {
            self.status = Some(self.status_byte(t));
        }
    }

    fn read(&mut self, t: u64) -> u8 {
        if let Some(s) = self.status.take() {
            return s;
        }
        let (v, from_latch) = match self.latch {
            Some(l) => (l, true),
            None => (self.read_value(t), false),
        };
        let (byte, done) = match self.access {
            1 => (v as u8, true),
            2 => ((v >> 8) as u8, true),
            _ => {
                let hi = self.read_hi;
                self.read_hi = !hi;
                (if hi { (v >> 8) as u8 } else { v as u8 }, hi)
            }
        };
        if from_latch && done {
            self.latch = None;
        }
        byte
    }

    fn write(&mut self, byte: u8, t: u64) {
        let raw = match self.access {
            1 => byte as u16,
            2 => (byte as u16) << 8,
            _ => match self.write_lo.take() {
                None => {
                    self.write_lo = Some(byte);
                    if self.mode == 0 {
                        // "Writing the first byte disables counting; OUT is set low at once."
                        self.state = Counting::Held { value: self.value(t), out: false };
                    }
                    return;
                }
                Some(lo) => (byte as u16) << 8 | lo as u16,
            },
        };
        self.load(raw, t);
    }

    fn load(&mut self, raw: u16, t: u64) {
        let count = if self.bcd { from_bcd16(raw) } else { raw as u32 };
        self.cr = if count == 0 { self.modulus() as u32 } else { count };
        self.counted = true;
        let running = matches!(self.state, Counting::Running { .. });
        match self.mode {
            1 | 5 => {
                // Loaded by the next trigger; a running one-shot finishes with its old count.
                if !running {
                    self.state = Counting::Held { value: self.value(t), out: true };
                }
            }
            2 | 3 if running => {
                let e = self.elapsed(t).unwrap_or(0);
                let n = self.n.max(1) as u64;
                let Counting::Running { start } = self.state else { return };
                self.pending = Some(start.saturating_add((e / n + 1).saturating_mul(n)));
            }
            _ => {
                self.n = self.cr;
                self.pending = None;
                self.state = if self.gate {
                    Counting::Running { start: t.saturating_add(1) }
                } else {
                    Counting::Paused { elapsed: 0 }
                };
            }
        }
    }

    fn set_gate(&mut self, gate: bool, t: u64) {
        let old = self.gate;
        self.gate = gate;
        if old == gate {
            return;
        }
        if gate {
            match (self.mode, self.state) {
                (0 | 4, Counting::Paused { elapsed }) => {
                    self.state = Counting::Running { start: t.saturating_sub(elapsed) }
                }
                (1 | 2 | 3 | 5, _) if self.counted => {
                    self.n = self.cr;
                    self.pending = None;
                    self.state = Counting::Running { start: t.saturating_add(1) };
                }
                _ => {}
            }
        } else if matches!(self.mode, 0 | 2 | 3 | 4) {
            if let Counting::Running { .. } = self.state {
                self.settle(t);
                let elapsed = self.elapsed(t).unwrap_or(0);
                self.pending = None;
                self.state = Counting::Paused { elapsed };
            }
        }
    }
}

fn to_bcd16(v: u16) -> u16 {
    let v = v % 10_000;
    ((v / 1000) << 12) | ((v / 100 % 10) << 8) | ((v / 10 % 10) << 4) | (v % 10)
}

/// Digit by digit; nibbles above 9 count as their value, as the counter would misread them.
fn from_bcd16(v: u16) -> u32 {
    let d = |s: u16| ((v >> s) & 0xF) as u32;
    d(12) * 1000 + d(8) * 100 + d(4) * 10 + d(0)
}

/// The 8254 PIT with port 0x61.
#[derive(Debug, Clone)]
pub struct Pit {
    tb: Timebase,
    irq: IrqLine,
    channels: [Channel; 3],
    /// Port 0x61 bits 0-3 as written (timer 2 gate, speaker data, parity and channel check
    /// enables).
    port61: u8,
    /// The tick of the next IRQ0 edge not yet delivered.
    next_irq: Option<u64>,
    /// The tick at which IRQ0 last pulsed.
    last_irq: Option<u64>,
}

impl Pit {
    /// A PIT counting the VM's TSC as `tb` gives it, with channel 0's OUT on `irq` (IRQ0 /
    /// GSI 2 through the IOAPIC interrupt source override on a PC with an APIC; the VM core
    /// decides). Channels start unprogrammed, channel 2's gate low.
    pub fn new(tb: Timebase, irq: IrqLine) -> Self {
        Pit {
            tb,
            irq,
            channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
            port61: 0,
            next_irq: None,
            last_irq: None,
        }
    }

    /// The PIT clock at guest TSC `now`.
    pub fn tick(&self, now: u64) -> u64 {
        self.tb.periods_in(now, PIT_HZ)
    }

    /// The first guest TSC at which the PIT clock reads `tick` (the inverse of [`Pit::tick`]).
    pub fn tsc_at(&self, tick: u64) -> u64 {
        let t = (tick as u128 * self.tb.tsc_hz() as u128).div_ceil(PIT_HZ as u128);
        t.min(u64::MAX as u128) as u64
    }

    /// OUT of `channel` (0-2) at `now`; `false` for a channel that does not exist.
    pub fn out(&self, channel: usize, now: u64) -> bool {
        let t = self.tick(now);
        self.channels.get(channel).is_some_and(|c| {
            let mut c = c.clone();
            c.settle(t);
            c.out(t)
        })
    }

    /// Bring every channel to `now` and pulse IRQ0 for a channel-0 edge that is due.
    fn sync(&mut self, ctx: &mut Ctx<'_>) -> u64 {
        let t = self.tick(ctx.now);
        for c in &mut self.channels {
            c.settle(t);
        }
        if self.next_irq.is_some_and(|e| e <= t) {
            self.irq.pulse(ctx.irq);
            self.last_irq = Some(t);
        }
        self.rearm(t);
        t
    }

    fn rearm(&mut self, t: u64) {
        let after = match self.last_irq {
            Some(l) => t.max(l.saturating_add(MIN_IRQ_TICKS - 1)),
            None => t,
        };
        self.next_irq = self.channels[0].next_rise_after(after);
    }

    fn write_control(&mut self, v: u8, t: u64) {
        let sc = (v >> 6) as usize;
        if sc == 3 {
            // Read-back: bit 5 clear latches counts, bit 4 clear latches status.
            for (i, c) in self.channels.iter_mut().enumerate() {
                if v & (2 << i) == 0 {
                    continue;
                }
                if v & 0x20 == 0 {
                    c.latch_count(t);
                }
                if v & 0x10 == 0 {
                    c.latch_status(t);
                }
            }
            return;
        }
        let access = (v >> 4) & 3;
        let c = &mut self.channels[sc];
        if access == 0 {
            c.latch_count(t);
            return;
        }
        let mode = match (v >> 1) & 7 {
            m @ 0..=5 => m,
            m => m & 3,
        };
        c.control(access, mode, v & 1 != 0, t);
    }

    /// Read system control port B: bits 0-3 as written, bit 4 the refresh toggle (flips with
    /// every count of channel 1's DRAM-refresh rate, 15.085 µs), bit 5 channel 2's OUT.
    pub fn port61_read(&mut self, ctx: &mut Ctx<'_>) -> u8 {
        let t = self.sync(ctx);
        let refresh = ((t / 18) & 1) as u8;
        let out2 = self.channels[2].out(t) as u8;
        (self.port61 & 0x0F) | refresh << 4 | out2 << 5
    }

    /// Write system control port B: bit 0 gates channel 2, bits 1-3 are kept.
    pub fn port61_write(&mut self, ctx: &mut Ctx<'_>, v: u8) {
        let t = self.sync(ctx);
        self.port61 = v & 0x0F;
        self.channels[2].set_gate(v & 1 != 0, t);
    }
}

impl PortDevice for Pit {
    fn read(&mut self, ctx: &mut Ctx<'_>, offset: u16, data: &mut [u8]) {
        let t = self.sync(ctx);
        // A wide access to these 8-bit ports is split by the bus into byte cycles.
        for (i, b) in data.iter_mut().enumerate() {
            *b = match offset as usize + i {
                p @ 0..=2 => self.channels[p].read(t),
                _ => 0xFF,
            };
        }
    }

    fn write(&mut self, ctx: &mut Ctx<'_>, offset: u16, data: &[u8]) -> Effect {
        let t = self.sync(ctx);
        for (i, &b) in data.iter().enumerate() {
            match offset as usize + i {
                p @ 0..=2 => self.channels[p].write(b, t),
                3 => self.write_control(b, t),
                _ => {}
            }
        }
        self.rearm(t);
        Effect::None
    }
}

/// System control port B ([`PORT61`]) of a PIT the port bus shares with the PIT's own ports
/// (channel 2's gate and OUT, the refresh toggle); one byte wide, wider accesses read the
/// other bytes as all ones and drop them on writes.
pub struct Port61(pub Arc<Mutex<Pit>>);

impl PortDevice for Port61 {
    fn read(&mut self, ctx: &mut Ctx<'_>, offset: u16, data: &mut [u8]) {
        data.fill(0xFF);
        if offset == 0 {
            if let Some(b) = data.first_mut() {
                *b = self.0.lock().port61_read(ctx);
            }
        }
    }

    fn write(&mut self, ctx: &mut Ctx<'_>, offset: u16, data: &[u8]) -> Effect {
        if let (0, Some(&b)) = (offset, data.first()) {
            self.0.lock().port61_write(ctx, b);
        }
        Effect::None
    }
}

impl Timed for Pit {
    fn deadline(&self) -> Option<u64> {
        self.next_irq.map(|t| self.tsc_at(t))
    }

    fn advance(&mut self, ctx: &mut Ctx<'_>) {
        self.sync(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::RecordingSink;

    const TSC_HZ: u64 = 2_893_123_457;
    const IRQ0: IrqLine = IrqLine::new(2);

    struct Rig {
        pit: Pit,
        sink: RecordingSink,
        now: u64,
    }

    impl Rig {
        fn new() -> Self {
            Rig { pit: Pit::new(Timebase::new(TSC_HZ), IRQ0), sink: RecordingSink::default(), now: 0 }
        }
        fn ctx(&mut self) -> (&mut Pit, Ctx<'_>) {
            (&mut self.pit, Ctx { now: self.now, vcpu: 0, irq: &mut self.sink })
        }
        fn outb(&mut self, port: u16, v: u8) {
            let (pit, mut ctx) = self.ctx();
            if port == PORT61 {
                pit.port61_write(&mut ctx, v);
            } else {
                pit.write(&mut ctx, port - PIT_BASE_PORT, &[v]);
            }
        }
        fn inb(&mut self, port: u16) -> u8 {
            let (pit, mut ctx) = self.ctx();
            if port == PORT61 {
                return pit.port61_read(&mut ctx);
            }
            let mut b = [0];
            pit.read(&mut ctx, port - PIT_BASE_PORT, &mut b);
            b[0]
        }
        fn advance(&mut self) {
            let (pit, mut ctx) = self.ctx();
            pit.advance(&mut ctx);
        }
        /// Move to PIT tick `t` (the first TSC at which it reads `t`).
        fn at_tick(&mut self, t: u64) {
            self.now = self.now.max(self.pit.tsc_at(t));
            assert_eq!(self.pit.tick(self.now), t);
        }
        fn tick(&self) -> u64 {
            self.pit.tick(self.now)
        }
        fn program(&mut self, ch: u8, mode: u8, count: u16) {
            self.outb(0x43, ch << 6 | 0x30 | mode << 1);
            self.outb(0x40 + ch as u16, count as u8);
            self.outb(0x40 + ch as u16, (count >> 8) as u8);
        }
        fn latched(&mut self, ch: u8) -> u16 {
            self.outb(0x43, ch << 6);
            let lo = self.inb(0x40 + ch as u16) as u16;
            lo | (self.inb(0x40 + ch as u16) as u16) << 8
        }
        fn status(&mut self, ch: u8) -> u8 {
            self.outb(0x43, 0xE0 | 2 << ch);
            self.inb(0x40 + ch as u16)
        }
    }

    #[test]
    fn tick_and_tsc_are_inverse() {
        let pit = Pit::new(Timebase::new(TSC_HZ), IRQ0);
        for t in [0, 1, 2, 1_193_181, 1_193_182, 123_456_789] {
            let tsc = pit.tsc_at(t);
            assert_eq!(pit.tick(tsc), t);
            assert_eq!(pit.tick(tsc - u64::from(tsc > 0)), t.saturating_sub(1));
        }
        assert_eq!(pit.tick(TSC_HZ), PIT_HZ);
    }

    #[test]
    fn status_and_null_count_follow_the_control_word_and_the_load() {
        let mut r = Rig::new();
        r.at_tick(100);
        r.outb(0x43, 0x34); // ch0, lo/hi, mode 2, binary
        assert_eq!(r.status(0), 0xF4, "OUT high, null count, lo/hi, mode 2");
        r.outb(0x40, 0xE8);
        assert_eq!(r.status(0), 0xF4, "half a count is still null");
        r.outb(0x40, 0x03);
        assert_eq!(r.status(0), 0xF4, "loaded on the next clock");
        r.at_tick(101);
        assert_eq!(r.status(0), 0xB4);
        r.outb(0x43, 0xB1); // ch2, lo/hi, mode 0, BCD
        assert_eq!(r.status(2), 0x71, "mode 0 OUT low after the control word");
        r.outb(0x43, 0x5A); // ch1, lo only, mode 5
        assert_eq!(r.status(1), 0xDA);
        r.outb(0x43, 0x2E); // ch0, hi only, mode 7 = 3
        assert_eq!(r.status(0) & 0x3F, 0x26);
        assert_eq!(r.inb(0x43), 0xFF, "the control register is write-only");
    }

    #[test]
    fn mode2_counts_n_down_to_1_and_reloads() {
        let mut r = Rig::new();
        r.at_tick(1000);
        r.program(0, 2, 1000);
        let s = 1001;
        for (k, want) in [(0, 1000), (1, 999), (500, 500), (998, 2), (999, 1), (1000, 1000), (1001, 999)] {
            r.at_tick(s + k);
            assert_eq!(r.latched(0), want, "at clock {k}");
            assert_eq!(r.pit.out(0, r.now), want != 1, "OUT at clock {k}");
        }
    }

    #[test]
    fn mode3_square_wave_counts_by_two_with_out_high_for_the_first_half() {
        let mut r = Rig::new();
        r.program(0, 3, 10);
        let s = 1;
        let vals = [10, 8, 6, 4, 2, 10, 8, 6, 4, 2, 10];
        for (k, &want) in vals.iter().enumerate() {
            r.at_tick(s + k as u64);
            assert_eq!(r.latched(0), want, "at clock {k}");
            assert_eq!(r.pit.out(0, r.now), k % 10 < 5, "OUT at clock {k}");
        }
        // Odd counts: high one clock longer.
        r.program(0, 3, 5);
        let s = r.tick() + 1;
        let outs: alloc::vec::Vec<bool> = (0..5).map(|k| r.pit.out(0, r.pit.tsc_at(s + k))).collect();
        assert_eq!(outs, [true, true, true, false, false]);
    }

    #[test]
    fn mode0_out_rises_n_plus_1_clocks_after_the_write_and_the_counter_wraps() {
        let mut r = Rig::new();
        r.at_tick(50);
        r.program(0, 0, 100);
        for (k, want, out) in [(1, 100, false), (100, 1, false), (101, 0, true), (102, 0xFFFF, true)] {
            r.at_tick(50 + k);
            assert_eq!(r.latched(0), want, "at clock {k}");
            assert_eq!(r.pit.out(0, r.now), out, "OUT at clock {k}");
        }
        // Count 0 means 65536.
        r.program(0, 0, 0);
        let s = r.tick() + 1;
        r.at_tick(s + 1);
        assert_eq!(r.latched(0), 0xFFFF);
        assert!(!r.pit.out(0, r.now));
        r.at_tick(s + 0x10000);
        assert!(r.pit.out(0, r.now));
    }

    #[test]
    fn mode0_first_byte_of_a_count_stops_counting() {
        let mut r = Rig::new();
        r.program(0, 0, 100);
        r.at_tick(200);
        assert!(r.pit.out(0, r.now));
        r.outb(0x40, 10);
        assert!(!r.pit.out(0, r.now), "OUT low at once");
        let held = r.latched(0);
        r.at_tick(300);
        assert_eq!(r.latched(0), held, "not counting between the bytes");
        r.outb(0x40, 0);
        r.at_tick(301);
        assert_eq!(r.latched(0), 10);
    }

    #[test]
    fn mode4_strobes_once() {
        let mut r = Rig::new();
        r.program(0, 4, 5);
        let outs: alloc::vec::Vec<bool> = (1..9).map(|k| r.pit.out(0, r.pit.tsc_at(k))).collect();
        assert_eq!(outs, [true, true, true, true, true, false, true, true]);
        r.at_tick(6);
        assert_eq!(r.latched(0), 0);
    }

    #[test]
    fn access_modes_and_bcd() {
        let mut r = Rig::new();
        r.outb(0x43, 0x10); // ch0, lo only, mode 0
        r.outb(0x40, 0x80);
        r.at_tick(1);
        assert_eq!(r.inb(0x40), 0x80);
        assert_eq!(r.inb(0x40), 0x80, "lo-only reads the low byte every time");
        r.outb(0x43, 0x20); // ch0, hi only, mode 0
        r.outb(0x40, 0x12);
        r.at_tick(2);
        assert_eq!(r.inb(0x40), 0x12);
        r.at_tick(3);
        assert_eq!(r.inb(0x40), 0x11, "0x1200 - 1 = 0x11FF");
        // BCD, mode 2, count 1000 decimal written as 0x1000.
        r.outb(0x43, 0x35);
        r.outb(0x40, 0x00);
        r.outb(0x40, 0x10);
        let s = r.tick() + 1;
        r.at_tick(s + 1);
        assert_eq!(r.latched(0), 0x0999);
        r.at_tick(s + 990);
        assert_eq!(r.latched(0), 0x0010);
        // BCD count 0 is 10000.
        r.outb(0x43, 0x31);
        r.outb(0x40, 0);
        r.outb(0x40, 0);
        let s = r.tick() + 1;
        r.at_tick(s + 1);
        assert_eq!(r.latched(0), 0x9999);
        r.at_tick(s + 10_000);
        assert!(r.pit.out(0, r.now));
    }

    #[test]
    fn latches_hold_until_read_and_read_back_gives_status_first() {
        let mut r = Rig::new();
        r.outb(0x61, 0x01);
        r.program(2, 2, 5000);
        r.at_tick(11);
        r.outb(0x43, 0x80); // latch ch2
        r.at_tick(500);
        r.outb(0x43, 0x80); // ignored: still latched
        assert_eq!(r.inb(0x42), (4990u16) as u8);
        r.at_tick(600);
        assert_eq!(r.inb(0x42), (4990u16 >> 8) as u8, "the latch holds across both bytes");
        let live = 5000 - (600 - 1);
        r.outb(0x43, 0x80);
        assert_eq!(r.inb(0x42) as u16 | (r.inb(0x42) as u16) << 8, live);
        // Read-back of count and status of channels 0 and 2.
        r.program(0, 3, 100);
        r.at_tick(700);
        r.outb(0x43, 0xCA);
        r.at_tick(800);
        assert_eq!(r.inb(0x42), 0xB4, "status: OUT high, not null, lo/hi, mode 2");
        let c2 = r.inb(0x42) as u16 | (r.inb(0x42) as u16) << 8;
        assert_eq!(c2, 5000 - (700 - 1));
        assert_eq!(r.inb(0x40) & 0x3F, 0x36);
        let c0 = r.inb(0x40) as u16 | (r.inb(0x40) as u16) << 8;
        assert_eq!(c0, r.pit.channels[0].clone().read_value(700));
        // Status only.
        r.outb(0x43, 0xE8);
        assert_eq!(r.inb(0x42) & 0x3F, 0x34);
        let a = r.inb(0x42);
        assert_eq!(a, (5000 - (800 - 1)) as u8, "then live count reads");
    }

    #[test]
    fn a_new_count_in_mode2_takes_effect_at_the_end_of_the_period() {
        let mut r = Rig::new();
        r.program(0, 2, 100);
        r.at_tick(51);
        r.outb(0x40, 50);
        r.outb(0x40, 0);
        assert_eq!(r.status(0) & 0x40, 0x40, "null count until the reload");
        r.at_tick(100);
        assert_eq!(r.latched(0), 1);
        r.at_tick(101);
        assert_eq!(r.latched(0), 50);
        r.at_tick(151);
        assert_eq!(r.latched(0), 50);
        assert_eq!(r.status(0) & 0x40, 0);
    }

    #[test]
    fn irq0_pulses_exactly_at_the_programmed_rate() {
        for (mode, count) in [(2u8, 11932u16), (3, 1193), (2, 0), (3, 100)] {
            let mut r = Rig::new();
            r.program(0, mode, count);
            let n = if count == 0 { 65536 } else { count as u64 };
            let start = 1;
            let mut fired = alloc::vec::Vec::new();
            while let Some(d) = r.pit.deadline() {
                if d > TSC_HZ {
                    break;
                }
                assert!(d > r.now);
                r.now = d;
                r.sink.events.clear();
                r.advance();
                assert_eq!(r.sink.events, [(2, 0, true), (2, 0, false)], "one pulse per deadline");
                fired.push(r.tick());
            }
            let expected = (PIT_HZ - start) / n;
            assert_eq!(fired.len() as u64, expected, "mode {mode} count {count}");
            for (k, &t) in fired.iter().enumerate() {
                assert_eq!(t, start + (k as u64 + 1) * n, "edge {k} on its clock");
            }
        }
    }

    #[test]
    fn irq0_fires_once_in_mode0_and_late_advances_coalesce() {
        let mut r = Rig::new();
        r.program(0, 0, 1000);
        assert_eq!(r.pit.deadline(), Some(r.pit.tsc_at(1001)));
        r.at_tick(5000);
        r.advance();
        assert_eq!(r.sink.rises(IRQ0.gsi), 1);
        assert_eq!(r.pit.deadline(), None);
        r.program(0, 2, 100);
        r.at_tick(r.tick() + 1000);
        r.advance();
        assert_eq!(r.sink.rises(IRQ0.gsi), 2, "ten missed edges give one pulse");
        let d = r.pit.deadline().unwrap();
        assert!(d > r.now);
        // No interrupt from channel 2, nor from an unprogrammed channel 0.
        let mut r = Rig::new();
        r.outb(0x61, 1);
        r.program(2, 2, 100);
        assert_eq!(r.pit.deadline(), None);
    }

    #[test]
    fn tiny_periods_are_throttled() {
        let mut r = Rig::new();
        r.program(0, 2, 2);
        let mut last = None;
        for _ in 0..50 {
            let d = r.pit.deadline().unwrap();
            r.now = d;
            r.advance();
            let t = r.tick();
            if let Some(l) = last {
                assert!(t - l >= MIN_IRQ_TICKS);
            }
            last = Some(t);
        }
    }

    /// Linux's `pit_calibrate_tsc`: gate channel 2 high, speaker off, mode 0 with a 50 ms
    /// count, then spin on port 0x61 bit 5 reading the TSC.
    #[test]
    fn a_mode0_calibration_loop_finds_the_tsc_frequency() {
        for tsc_hz in [1_000_000_000u64, 2_893_123_457, 3_700_000_000] {
            let mut r = Rig::new();
            r.pit = Pit::new(Timebase::new(tsc_hz), IRQ0);
            r.now = 12_345_678_901;
            let latch = (PIT_HZ / (1000 / 50)) as u16;
            let v = r.inb(0x61);
            r.outb(0x61, (v & !0x02) | 0x01);
            r.outb(0x43, 0xB0);
            r.outb(0x42, latch as u8);
            r.outb(0x42, (latch >> 8) as u8);
            let t1 = r.now;
            let mut spins = 0u64;
            while r.inb(0x61) & 0x20 == 0 {
                r.now += 1000 + spins % 7; // an inb costs about a microsecond
                spins += 1;
                assert!(spins < 10_000_000);
            }
            let delta = r.now - t1;
            let khz = delta / 50;
            let want = tsc_hz / 1000;
            let err = (khz as f64 - want as f64).abs() / want as f64;
            assert!(err < 0.001, "{khz} kHz for {want} kHz");
            assert_eq!(r.inb(0x61) & 0x03, 0x01, "gate kept, speaker off");
        }
    }

    /// `quick_pit_calibrate`: mode 0 from 0xFFFF, reading the MSB through the lo/hi
    /// flip-flop without latching.
    #[test]
    fn the_msb_of_a_free_running_mode0_count_falls_with_time() {
        let mut r = Rig::new();
        r.outb(0x61, 0x01);
        r.outb(0x43, 0xB0);
        r.outb(0x42, 0xFF);
        r.outb(0x42, 0xFF);
        r.inb(0x42);
        r.inb(0x42);
        let s = r.tick();
        for k in 0..50u64 {
            r.at_tick(s + 1 + k * 256);
            r.inb(0x42);
            let msb = r.inb(0x42);
            assert_eq!(msb as u64, 0xFF - k, "after {k}*256 clocks");
        }
    }

    #[test]
    fn port61_gate_controls_channel2_and_refresh_toggles() {
        let mut r = Rig::new();
        r.program(2, 0, 100);
        r.at_tick(50);
        assert_eq!(r.latched(2), 100, "gate low: loaded, not counting");
        r.outb(0x61, 0x01);
        r.at_tick(60);
        assert_eq!(r.latched(2), 90);
        r.outb(0x61, 0x00);
        r.at_tick(500);
        assert_eq!(r.latched(2), 90, "gate low suspends mode 0");
        assert_eq!(r.inb(0x61) & 0x20, 0);
        r.outb(0x61, 0x01);
        r.at_tick(590);
        assert_eq!(r.latched(2), 0);
        assert_eq!(r.inb(0x61) & 0x20, 0x20);
        // Mode 1: the gate edge triggers a one-shot, OUT low for N clocks.
        r.program(2, 1, 10);
        r.at_tick(1000);
        assert_eq!(r.inb(0x61) & 0x20, 0x20, "waiting for a trigger");
        r.outb(0x61, 0x00);
        r.outb(0x61, 0x01);
        r.at_tick(1005);
        assert_eq!(r.inb(0x61) & 0x20, 0);
        assert_eq!(r.latched(2), 6);
        r.at_tick(1011);
        assert_eq!(r.inb(0x61) & 0x20, 0x20);
        // Mode 2: gate low stops it with OUT high, the rising edge reloads.
        r.program(2, 2, 10);
        r.at_tick(1500);
        r.outb(0x61, 0x00);
        assert_eq!(r.inb(0x61) & 0x20, 0x20);
        r.outb(0x61, 0x01);
        r.at_tick(1503);
        assert_eq!(r.latched(2), 8);
        // Refresh toggles every 18 clocks; bits 6 and 7 read 0; bits 1-3 read back.
        r.outb(0x61, 0x0F);
        r.at_tick(18 * 1000);
        let a = r.inb(0x61);
        r.at_tick(18 * 1001);
        let b = r.inb(0x61);
        assert_eq!((a ^ b) & 0x10, 0x10);
        assert_eq!(a & 0xCF, 0x0F);
    }

    #[test]
    fn wide_accesses_are_byte_cycles() {
        let mut r = Rig::new();
        let (pit, mut ctx) = r.ctx();
        pit.write(&mut ctx, 3, &[0x34]);
        // outw 0x40: the low byte to channel 0, the high byte to channel 1.
        pit.write(&mut ctx, 0, &[0x10, 0x27]);
        pit.write(&mut ctx, 0, &[0x00]);
        assert_eq!(pit.channels[0].cr, 0x0010);
        assert!(pit.channels[1].write_lo == Some(0x27));
        let mut b = [0u8; 4];
        pit.read(&mut ctx, 0, &mut b);
        assert_eq!(b[3], 0xFF, "port 0x43 reads all ones");
    }
}
