//! The Motorola MC146818 real-time clock and its CMOS RAM, at ports 0x70 (index, with bit 7
//! the NMI mask) and 0x71 (data), IRQ8.
//!
//! Time: the VM core gives the host's time as unix seconds at a guest TSC `now0`; the clock's
//! 32.768 kHz divider chain is phase-locked to that instant (updates at `now0 + k` seconds)
//! and the model keeps the guest's time as seconds at a second index of that divider, so
//! every register is computed from `now` and nothing runs between accesses. A guest that sets
//! the clock (SET in register B, write the fields, clear SET) moves its own time only: the
//! difference from the host is [`Rtc::guest_offset`]. Time is civil UTC-less seconds (no leap
//! seconds), years 0-9999; daylight saving (DSE) is kept as a bit and not applied, and the day
//! of week is computed from the date (a guest's write to it is kept only while SET is set).
//!
//! Register A: UIP is set for the 244 µs (8 divider cycles) before each update; a divider
//! field other than 010 stops the clock and the periodic interrupt, and going back to 010
//! starts the divider so the first update comes 500 ms later, as the datasheet has it. The
//! flags in register C are set whether or not their interrupts are enabled (so a guest can
//! poll), IRQF and the IRQ8 level follow `PF & PIE | AF & AIE | UF & UIE`, and reading C
//! clears them all and lowers IRQ8.
//!
//! CMOS bytes 0x0E-0x7F are RAM, except the memory-size bytes the VM core sets with
//! [`Rtc::set_memory_size`] (QEMU's layout, which SeaBIOS and OVMF read) and the century at
//! 0x32, which is a clock field here.

use crate::bus::{Ctx, Effect, PortDevice, Timed};
use crate::irq::IrqLine;
use crate::time::Timebase;

pub const RTC_PORT: u16 = 0x70;
pub const RTC_PORTS: u16 = 2;
pub const RTC_IRQ: IrqLine = IrqLine::new(8);
/// The CMOS century byte (the FADT's CENTURY field).
pub const CMOS_CENTURY: u8 = 0x32;

const SECONDS: usize = 0x00;
const SECONDS_ALARM: usize = 0x01;
const MINUTES: usize = 0x02;
const MINUTES_ALARM: usize = 0x03;
const HOURS: usize = 0x04;
const HOURS_ALARM: usize = 0x05;
const DAY_OF_WEEK: usize = 0x06;
const DAY: usize = 0x07;
const MONTH: usize = 0x08;
const YEAR: usize = 0x09;
const REG_A: usize = 0x0A;
const REG_B: usize = 0x0B;
const REG_C: usize = 0x0C;
const REG_D: usize = 0x0D;
const CENTURY: usize = CMOS_CENTURY as usize;

const A_UIP: u8 = 0x80;
const B_SET: u8 = 0x80;
const B_PIE: u8 = 0x40;
const B_AIE: u8 = 0x20;
const B_UIE: u8 = 0x10;
const B_DM_BINARY: u8 = 0x04;
const B_24H: u8 = 0x02;
const C_IRQF: u8 = 0x80;
const C_PF: u8 = 0x40;
const C_AF: u8 = 0x20;
const C_UF: u8 = 0x10;
const D_VRT: u8 = 0x80;

/// The divider chain's rate.
const DIV_HZ: i128 = 32_768;
/// Cycles before an update during which UIP is set (244 µs).
const UIP_CYCLES: i128 = 8;
const DAY_SECS: i64 = 86_400;
/// The latest time the clock shows: 9999-12-31 23:59:59.
const MAX_SECS: i64 = 253_402_300_799;
/// The earliest: 0000-01-01 00:00:00.
const MIN_SECS: i64 = -62_167_219_200;

/// Days since 1970-01-01 of the proleptic Gregorian date `y-m-d` (`m` 1-12, `d` 1-31).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    // Count from 0000-03-01 so the leap day ends a year; eras are 400-year cycles.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date `(year, month 1-12, day 1-31)` of `days` since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A broken-down time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 1 (Sunday) to 7.
    pub weekday: u32,
}

impl DateTime {
    pub fn from_secs(secs: i64) -> Self {
        let days = secs.div_euclid(DAY_SECS);
        let sod = secs.rem_euclid(DAY_SECS) as u32;
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            hour: sod / 3600,
            minute: sod / 60 % 60,
            second: sod % 60,
            // 1970-01-01 was a Thursday (5).
            weekday: ((days + 4).rem_euclid(7) + 1) as u32,
        }
    }

    pub fn to_secs(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * DAY_SECS
            + (self.hour * 3600 + self.minute * 60 + self.second) as i64
    }
}

fn to_bcd(v: u32) -> u8 {
    let v = v % 100;
    (((v / 10) << 4) | (v % 10)) as u8
}

fn from_bcd(b: u8) -> u32 {
    (b >> 4) as u32 * 10 + (b & 0xF) as u32
}

/// The MC146818 RTC with 128 bytes of CMOS.
#[derive(Debug, Clone)]
pub struct Rtc {
    tb: Timebase,
    irq: IrqLine,
    /// Registers A and B, the alarm bytes, RAM; the time bytes only while SET is set.
    cmos: [u8; 128],
    index: u8,
    nmi_disabled: bool,
    /// The guest TSC at which the divider chain counted 0 (a second boundary).
    origin: i128,
    /// The host's time: unix seconds at guest TSC `host_now0`.
    host_secs0: i64,
    host_now0: u64,
    /// The guest's time is `base_secs` at divider second `base_idx` (and frozen there while
    /// the clock is stopped or SET).
    base_secs: i64,
    base_idx: i64,
    /// PF, AF and UF of register C.
    flags: u8,
    /// The TSC up to which flags are current.
    synced: u64,
    line: bool,
}

impl Rtc {
    /// An RTC on `irq` (normally [`RTC_IRQ`]) whose clock reads `unix_secs` at guest TSC
    /// `now0`, with register A at 0x26 (running, 1024 Hz periodic rate) and B at 0x02 (24-hour,
    /// BCD), as firmware leaves them.
    pub fn new(tb: Timebase, irq: IrqLine, unix_secs: u64, now0: u64) -> Self {
        let host = (unix_secs.min(MAX_SECS as u64)) as i64;
        let mut cmos = [0u8; 128];
        cmos[REG_A] = 0x26;
        cmos[REG_B] = B_24H;
        Rtc {
            tb,
            irq,
            cmos,
            index: 0,
            nmi_disabled: false,
            origin: now0 as i128,
            host_secs0: host,
            host_now0: now0,
            base_secs: host,
            base_idx: 0,
            flags: 0,
            synced: now0,
            line: false,
        }
    }

    /// Set the memory-size bytes from the VM's RAM below and above 4 GiB (QEMU's convention):
    /// 0x15-0x16 base memory in KiB (at most 640), 0x17-0x18 and 0x30-0x31 KiB above 1 MiB (at
    /// most 0xFFFF), 0x34-0x35 64 KiB blocks between 16 MiB and 4 GiB, 0x5B-0x5D 64 KiB blocks
    /// above 4 GiB; and the standard checksum of 0x10-0x2D at 0x2E-0x2F.
    pub fn set_memory_size(&mut self, below_4g: u64, above_4g: u64) {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        let base = (below_4g / KIB).min(640);
        let ext = (below_4g.saturating_sub(MIB) / KIB).min(0xFFFF);
        let high = (below_4g.saturating_sub(16 * MIB) / (64 * KIB)).min(0xFFFF);
        let above = (above_4g / (64 * KIB)).min(0xFF_FFFF);
        let mut put = |at: usize, v: u64, n: usize| {
            for i in 0..n {
                self.cmos[at + i] = (v >> (8 * i)) as u8;
            }
        };
        put(0x15, base, 2);
        put(0x17, ext, 2);
        put(0x30, ext, 2);
        put(0x34, high, 2);
        put(0x5B, above, 3);
        let sum: u16 = self.cmos[0x10..=0x2D].iter().map(|&b| b as u16).sum();
        self.cmos[0x2E] = (sum >> 8) as u8;
        self.cmos[0x2F] = sum as u8;
    }

    /// Whether the guest masked NMIs through port 0x70 bit 7.
    pub fn nmi_disabled(&self) -> bool {
        self.nmi_disabled
    }

    /// The guest's clock at `now`, in seconds since 1970.
    pub fn guest_secs(&self, now: u64) -> i64 {
        self.secs(now)
    }

    /// How far the guest set its clock from the host's, in seconds.
    pub fn guest_offset(&self, now: u64) -> i64 {
        let host = self.host_secs0
            + (self.tb.periods_in(now.saturating_sub(self.host_now0), 1)).min(i64::MAX as u64 / 2) as i64;
        self.secs(now) - host
    }

    fn running(&self) -> bool {
        (self.cmos[REG_A] >> 4) & 7 == 2
    }

    /// Whether the clock updates: the divider runs and SET is clear.
    fn live(&self) -> bool {
        self.running() && self.cmos[REG_B] & B_SET == 0
    }

    fn cycles(&self, now: u64) -> i128 {
        ((now as i128 - self.origin) * DIV_HZ).div_euclid(self.tb.tsc_hz() as i128)
    }

    fn second_idx(&self, now: u64) -> i64 {
        self.cycles(now).div_euclid(DIV_HZ) as i64
    }

    /// The first guest TSC at which the divider has counted `cycles`.
    fn tsc_at_cycle(&self, cycles: i128) -> u64 {
        let hz = self.tb.tsc_hz() as i128;
        let t = self.origin + (cycles * hz + DIV_HZ - 1).div_euclid(DIV_HZ);
        t.clamp(0, u64::MAX as i128) as u64
    }

    fn secs(&self, now: u64) -> i64 {
        if self.live() {
            self.base_secs.saturating_add(self.second_idx(now) - self.base_idx).clamp(MIN_SECS, MAX_SECS)
        } else {
            self.base_secs
        }
    }

    /// Freeze the guest's time at `now` as the new base.
    fn rebase(&mut self, now: u64) {
        self.base_secs = self.secs(now);
        self.base_idx = self.second_idx(now);
    }

    /// Periodic-interrupt period in divider cycles, if any.
    fn period(&self) -> Option<i128> {
        match self.cmos[REG_A] & 0x0F {
            0 => None,
            1 => Some(128),
            2 => Some(256),
            rs => Some(1 << (rs - 1)),
        }
    }

    fn binary(&self) -> bool {
        self.cmos[REG_B] & B_DM_BINARY != 0
    }

    fn encode(&self, v: u32) -> u8 {
        if self.binary() {
            v as u8
        } else {
            to_bcd(v)
        }
    }

    fn decode(&self, b: u8) -> u32 {
        if self.binary() {
            b as u32
        } else {
            from_bcd(b)
        }
    }

    fn encode_hour(&self, h: u32) -> u8 {
        if self.cmos[REG_B] & B_24H != 0 {
            self.encode(h)
        } else {
            let h12 = if h.is_multiple_of(12) { 12 } else { h % 12 };
            self.encode(h12) | if h >= 12 { 0x80 } else { 0 }
        }
    }

    fn decode_hour(&self, b: u8) -> u32 {
        if self.cmos[REG_B] & B_24H != 0 {
            self.decode(b)
        } else {
            let h12 = self.decode(b & 0x7F);
            h12 % 12 + if b & 0x80 != 0 { 12 } else { 0 }
        }
    }

    /// The clock fields as the guest reads them, for the time `secs`.
    fn field(&self, reg: usize, secs: i64) -> u8 {
        let t = DateTime::from_secs(secs);
        let year = t.year.rem_euclid(10_000) as u32;
        match reg {
            SECONDS => self.encode(t.second),
            MINUTES => self.encode(t.minute),
            HOURS => self.encode_hour(t.hour),
            DAY_OF_WEEK => self.encode(t.weekday),
            DAY => self.encode(t.day),
            MONTH => self.encode(t.month),
            YEAR => self.encode(year % 100),
            _ => self.encode(year / 100),
        }
    }

    fn is_clock_field(reg: usize) -> bool {
        matches!(reg, SECONDS | MINUTES | HOURS | DAY_OF_WEEK | DAY | MONTH | YEAR | CENTURY)
    }

    /// Put the clock at `secs` into the CMOS time bytes.
    fn store_fields(&mut self, secs: i64) {
        for reg in [SECONDS, MINUTES, HOURS, DAY_OF_WEEK, DAY, MONTH, YEAR, CENTURY] {
            self.cmos[reg] = self.field(reg, secs);
        }
    }

    /// The time the CMOS time bytes say, garbage clamped into a valid date.
    fn parse_fields(&self) -> i64 {
        let year =
            (self.decode(self.cmos[CENTURY]).min(99) * 100 + self.decode(self.cmos[YEAR]).min(99)) as i64;
        let month = self.decode(self.cmos[MONTH]).clamp(1, 12);
        let t = DateTime {
            year,
            month,
            day: self.decode(self.cmos[DAY]).clamp(1, days_in_month(year, month)),
            hour: self.decode_hour(self.cmos[HOURS]).min(23),
            minute: self.decode(self.cmos[MINUTES]).min(59),
            second: self.decode(self.cmos[SECONDS]).min(59),
            weekday: 1,
        };
        t.to_secs()
    }

    /// The alarm as (hour, minute, second) of the day, each `None` for "don't care"; `None`
    /// for an alarm that can never match (a value out of range).
    fn alarm(&self) -> Option<[Option<u32>; 3]> {
        let field = |reg: usize, max: u32, hour: bool| -> Option<Option<u32>> {
            let b = self.cmos[reg];
            if b & 0xC0 == 0xC0 {
                return Some(None);
            }
            let v = if hour { self.decode_hour(b) } else { self.decode(b) };
            (v <= max).then_some(Some(v))
        };
        Some([
            field(HOURS_ALARM, 23, true)?,
            field(MINUTES_ALARM, 59, false)?,
            field(SECONDS_ALARM, 59, false)?,
        ])
    }

    /// The first time after `after` (seconds) the alarm matches.
    fn next_alarm(&self, after: i64) -> Option<i64> {
        let [ah, am, asec] = self.alarm()?;
        let day = after.div_euclid(DAY_SECS) * DAY_SECS;
        let from = after.rem_euclid(DAY_SECS) + 1;
        for d in 0..2i64 {
            let lo = if d == 0 { from } else { 0 };
            for h in 0..24i64 {
                if ah.is_some_and(|a| a as i64 != h) || (h + 1) * 3600 <= lo {
                    continue;
                }
                for m in 0..60i64 {
                    let start = h * 3600 + m * 60;
                    if am.is_some_and(|a| a as i64 != m) || start + 59 < lo {
                        continue;
                    }
                    let s = match asec {
                        Some(s) => s as i64,
                        None => (lo - start).max(0),
                    };
                    if start + s >= lo {
                        return Some(day + d * DAY_SECS + start + s);
                    }
                }
            }
        }
        None
    }

    fn irqf(&self) -> bool {
        self.flags & self.cmos[REG_B] & (B_PIE | B_AIE | B_UIE) != 0
    }

    fn update_line(&mut self, ctx: &mut Ctx<'_>) {
        let level = self.irqf();
        if level != self.line {
            self.line = level;
            self.irq.set(ctx.irq, level);
        }
    }

    /// Set the flags for what happened between the last sync and `ctx.now`.
    fn sync(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        if now > self.synced {
            let (ca, cb) = (self.cycles(self.synced), self.cycles(now));
            if self.running() {
                if let Some(p) = self.period() {
                    if cb.div_euclid(p) > ca.div_euclid(p) {
                        self.flags |= C_PF;
                    }
                }
            }
            if self.live() {
                let (ia, ib) = (ca.div_euclid(DIV_HZ) as i64, cb.div_euclid(DIV_HZ) as i64);
                if ib > ia {
                    self.flags |= C_UF;
                    let before = self.secs(self.synced);
                    let last = self.secs(now);
                    if self.next_alarm(before).is_some_and(|s| s <= last) {
                        self.flags |= C_AF;
                    }
                }
            }
            self.synced = now;
        }
        self.update_line(ctx);
    }

    fn read_reg(&mut self, now: u64, reg: usize) -> u8 {
        match reg {
            REG_A => {
                let uip = self.live() && self.cycles(now).rem_euclid(DIV_HZ) >= DIV_HZ - UIP_CYCLES;
                (self.cmos[REG_A] & !A_UIP) | if uip { A_UIP } else { 0 }
            }
            REG_C => {
                let v = self.flags | if self.irqf() { C_IRQF } else { 0 };
                self.flags = 0;
                v
            }
            REG_D => D_VRT,
            r if Self::is_clock_field(r) && self.cmos[REG_B] & B_SET == 0 => self.field(r, self.secs(now)),
            r => self.cmos[r & 0x7F],
        }
    }

    fn write_reg(&mut self, now: u64, reg: usize, v: u8) {
        match reg {
            REG_A => {
                let was = self.running();
                self.rebase(now);
                self.cmos[REG_A] = v & !A_UIP;
                if !was && self.running() {
                    // The divider starts: the first update is half a second away.
                    self.origin = now as i128 - (self.tb.tsc_hz() / 2) as i128;
                    self.base_idx = self.second_idx(now);
                }
            }
            REG_B => {
                let old = self.cmos[REG_B];
                let mut v = v;
                if v & B_SET != 0 {
                    // Setting SET clears UIE and stops updates.
                    v &= !B_UIE;
                    if old & B_SET == 0 {
                        let secs = self.secs(now);
                        self.rebase(now);
                        self.cmos[REG_B] = v;
                        self.store_fields(secs);
                    }
                } else if old & B_SET != 0 {
                    self.cmos[REG_B] = v;
                    self.base_secs = self.parse_fields();
                    self.base_idx = self.second_idx(now);
                }
                self.cmos[REG_B] = v;
            }
            REG_C | REG_D => {}
            r if Self::is_clock_field(r) && self.cmos[REG_B] & B_SET == 0 => {
                // Takes effect at once: the other fields keep the time they show now.
                let secs = self.secs(now);
                self.store_fields(secs);
                self.cmos[r] = v;
                self.base_secs = self.parse_fields();
                self.base_idx = self.second_idx(now);
            }
            r => self.cmos[r & 0x7F] = v,
        }
    }
}

impl PortDevice for Rtc {
    fn read(&mut self, ctx: &mut Ctx<'_>, offset: u16, data: &mut [u8]) {
        self.sync(ctx);
        for (i, b) in data.iter_mut().enumerate() {
            *b = match offset as usize + i {
                1 => self.read_reg(ctx.now, self.index as usize),
                // The index register is write-only.
                _ => 0xFF,
            };
        }
        self.update_line(ctx);
    }

    fn write(&mut self, ctx: &mut Ctx<'_>, offset: u16, data: &[u8]) -> Effect {
        self.sync(ctx);
        for (i, &b) in data.iter().enumerate() {
            match offset as usize + i {
                0 => {
                    self.index = b & 0x7F;
                    self.nmi_disabled = b & 0x80 != 0;
                }
                1 => self.write_reg(ctx.now, self.index as usize, b),
                _ => {}
            }
        }
        self.update_line(ctx);
        Effect::None
    }
}

impl Timed for Rtc {
    fn deadline(&self) -> Option<u64> {
        if self.line {
            // IRQ8 is already up; nothing changes until the guest reads register C.
            return None;
        }
        let b = self.cmos[REG_B];
        let c = self.cycles(self.synced);
        let mut next: Option<i128> = None;
        // Only events after the last sync (a clock pinned at year 9999 would compute an alarm
        // in the past).
        let mut consider = |cyc: i128| {
            if cyc > c {
                next = Some(next.map_or(cyc, |n| n.min(cyc)));
            }
        };
        if b & B_PIE != 0 && self.running() {
            if let Some(p) = self.period() {
                consider((c.div_euclid(p) + 1) * p);
            }
        }
        if self.live() {
            if b & B_UIE != 0 {
                consider((c.div_euclid(DIV_HZ) + 1) * DIV_HZ);
            }
            if b & B_AIE != 0 {
                if let Some(s) = self.next_alarm(self.secs(self.synced)) {
                    let idx = self.base_idx as i128 + (s - self.base_secs) as i128;
                    consider(idx * DIV_HZ);
                }
            }
        }
        next.map(|cyc| self.tsc_at_cycle(cyc))
    }

    fn advance(&mut self, ctx: &mut Ctx<'_>) {
        self.sync(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::RecordingSink;

    const HZ: u64 = 2_000_000_000;
    /// 2023-11-14 22:13:20 UTC, a Tuesday.
    const T0: u64 = 1_700_000_000;
    const NOW0: u64 = 5 * HZ;

    struct Rig {
        rtc: Rtc,
        sink: RecordingSink,
        now: u64,
    }

    impl Rig {
        fn new() -> Self {
            Rig {
                rtc: Rtc::new(Timebase::new(HZ), RTC_IRQ, T0, NOW0),
                sink: RecordingSink::default(),
                now: NOW0,
            }
        }
        fn read(&mut self, reg: u8) -> u8 {
            let mut ctx = Ctx { now: self.now, vcpu: 0, irq: &mut self.sink };
            self.rtc.write(&mut ctx, 0, &[reg]);
            let mut b = [0];
            self.rtc.read(&mut ctx, 1, &mut b);
            b[0]
        }
        fn write(&mut self, reg: u8, v: u8) {
            let mut ctx = Ctx { now: self.now, vcpu: 0, irq: &mut self.sink };
            self.rtc.write(&mut ctx, 0, &[reg, v]);
        }
        fn advance(&mut self) {
            let mut ctx = Ctx { now: self.now, vcpu: 0, irq: &mut self.sink };
            self.rtc.advance(&mut ctx);
        }
        fn fields(&mut self) -> [u8; 8] {
            [0, 2, 4, 6, 7, 8, 9, 0x32].map(|r| self.read(r))
        }
        fn line(&self) -> bool {
            self.sink.level(RTC_IRQ.gsi).unwrap_or(false)
        }
    }

    #[test]
    fn civil_dates_round_trip_through_leap_years_and_centuries() {
        for (y, m, d, days) in [
            (1970, 1, 1, 0),
            (1969, 12, 31, -1),
            (2000, 1, 1, 10957),
            (2000, 2, 29, 11016),
            (2000, 3, 1, 11017),
            (2100, 2, 28, 47540),
            (2100, 3, 1, 47541),
            (1900, 2, 28, -25509),
            (1900, 3, 1, -25508),
            (2024, 2, 29, 19782),
            (2038, 1, 19, 24855),
            (1, 1, 1, -719162),
            (9999, 12, 31, 2932896),
        ] {
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
            assert_eq!(civil_from_days(days), (y, m, d));
        }
        let mut prev = civil_from_days(-800_000);
        for days in -799_999..800_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            if d != 1 {
                assert_eq!((y, m, d - 1), prev);
            }
            prev = (y, m, d);
        }
        assert!(is_leap(2000) && !is_leap(2100) && !is_leap(1900) && is_leap(2024) && !is_leap(2023));
    }

    #[test]
    fn a_known_time_in_bcd_binary_24_and_12_hours() {
        let mut r = Rig::new();
        assert_eq!(r.fields(), [0x20, 0x13, 0x22, 0x03, 0x14, 0x11, 0x23, 0x20]);
        r.write(0x0B, 0x00); // 12-hour BCD
        assert_eq!(r.read(4), 0x80 | 0x10, "10 PM");
        r.write(0x0B, 0x04); // 12-hour binary
        assert_eq!(r.read(4), 0x80 | 10);
        r.write(0x0B, 0x06); // 24-hour binary
        assert_eq!(r.fields(), [20, 13, 22, 3, 14, 11, 23, 20]);
        // Midnight and noon in 12-hour mode.
        let mut r = Rig::new();
        r.now += 2 * 3600 * HZ - 13 * 60 * HZ - 20 * HZ; // 2023-11-15 00:00:00
        r.write(0x0B, 0x00);
        assert_eq!(r.read(4), 0x12, "12 AM");
        assert_eq!(r.read(7), 0x15);
        assert_eq!(r.read(6), 0x04, "Wednesday");
        r.now += 12 * 3600 * HZ;
        assert_eq!(r.read(4), 0x92, "12 PM");
        r.now += 3600 * HZ;
        assert_eq!(r.read(4), 0x81, "1 PM");
    }

    #[test]
    fn the_clock_advances_with_the_tsc_and_uip_precedes_each_update() {
        let mut r = Rig::new();
        r.now = NOW0 + HZ - 1;
        assert_eq!(r.read(0), 0x20);
        assert_eq!(r.read(0x0A), 0x26 | 0x80, "UIP just before the update");
        r.now = NOW0 + HZ;
        assert_eq!(r.read(0), 0x21);
        assert_eq!(r.read(0x0A), 0x26);
        let uip_start = NOW0 + 2 * HZ - HZ * 8 / 32_768;
        r.now = uip_start - 1;
        assert_eq!(r.read(0x0A) & 0x80, 0);
        r.now = uip_start + 1;
        assert_eq!(r.read(0x0A) & 0x80, 0x80, "244 µs before");
        r.now = NOW0 + 40 * HZ;
        assert_eq!(&r.fields()[..3], &[0x00, 0x14, 0x22]);
        // A year later, through a leap day.
        let mut r = Rig::new();
        r.now = NOW0 + 366 * 86_400 * HZ;
        assert_eq!(r.fields(), [0x20, 0x13, 0x22, 0x05, 0x14, 0x11, 0x24, 0x20]);
        assert_eq!(r.rtc.guest_offset(r.now), 0);
    }

    #[test]
    fn register_c_clears_on_read_and_lowers_irq8() {
        let mut r = Rig::new();
        r.now = NOW0 + HZ / 100;
        assert_eq!(r.read(0x0C), 0x40, "PF set without PIE: polled");
        assert_eq!(r.read(0x0C), 0x00);
        r.now = NOW0 + HZ + 1;
        assert_eq!(r.read(0x0C), 0x50, "PF and UF");
        r.write(0x0B, 0x02 | 0x10); // UIE
        r.now += HZ;
        r.advance();
        assert!(r.line());
        assert_eq!(r.read(0x0C), 0xD0);
        assert!(!r.line());
        assert_eq!(r.read(0x0D), 0x80);
        r.write(0x0C, 0xFF);
        r.write(0x0D, 0x00);
        assert_eq!(r.read(0x0D), 0x80, "C and D are read-only");
        // Enabling an interrupt whose flag is already set raises at once.
        r.write(0x0B, 0x02);
        r.now += HZ;
        r.advance();
        assert!(!r.line());
        r.write(0x0B, 0x12);
        assert!(r.line());
        assert_eq!(r.read(0x0C) & 0x90, 0x90);
    }

    #[test]
    fn periodic_interrupt_at_the_rate_of_register_a() {
        for (rs, hz) in [(6u8, 1024u64), (3, 8192), (15, 2), (1, 256), (2, 128), (0xA, 64)] {
            let mut r = Rig::new();
            r.write(0x0A, 0x20 | rs);
            r.write(0x0B, 0x02 | 0x40);
            let end = NOW0 + HZ;
            let mut n = 0;
            while let Some(d) = r.rtc.deadline() {
                assert!(d > r.now);
                if d > end {
                    break;
                }
                r.now = d;
                r.advance();
                assert!(r.line());
                assert_eq!(r.rtc.deadline(), None, "nothing more until C is read");
                assert_eq!(r.read(0x0C) & 0xC0, 0xC0);
                n += 1;
            }
            assert_eq!(n, hz, "rate select {rs}");
        }
        // Rate 0 or a stopped divider: none.
        let mut r = Rig::new();
        r.write(0x0A, 0x20);
        r.write(0x0B, 0x42);
        assert_eq!(r.rtc.deadline(), None);
        r.write(0x0A, 0x66);
        assert_eq!(r.rtc.deadline(), None);
    }

    #[test]
    fn update_ended_interrupt_once_a_second_on_the_boundary() {
        let mut r = Rig::new();
        r.write(0x0B, 0x12);
        for k in 1..=5 {
            let d = r.rtc.deadline().unwrap();
            assert_eq!(d, NOW0 + k * HZ);
            r.now = d;
            r.advance();
            assert_eq!(r.read(0x0C) & 0x90, 0x90);
            assert_eq!(r.read(0), 0x20 + k as u8);
        }
    }

    #[test]
    fn alarm_with_exact_and_dont_care_fields() {
        let mut r = Rig::new();
        // 22:13:25.
        r.write(1, 0x25);
        r.write(3, 0x13);
        r.write(5, 0x22);
        r.write(0x0B, 0x22);
        assert_eq!(r.rtc.deadline(), Some(NOW0 + 5 * HZ));
        r.now = NOW0 + 5 * HZ;
        r.advance();
        assert!(r.line());
        assert_eq!(r.read(0x0C), 0xF0, "IRQF, AF, UF, and PF from the running periodic rate");
        // Every minute at second 0: hours and minutes don't care.
        r.write(3, 0xC0);
        r.write(5, 0xFF);
        r.write(1, 0x00);
        r.read(0x0C);
        let d = r.rtc.deadline().unwrap();
        assert_eq!(d, NOW0 + 40 * HZ, "22:14:00");
        r.now = d;
        r.advance();
        assert_eq!(r.read(0x0C) & 0xA0, 0xA0);
        assert_eq!(r.rtc.deadline(), Some(NOW0 + 100 * HZ));
        // Every second.
        r.write(1, 0xC0);
        assert_eq!(r.rtc.deadline(), Some(NOW0 + 41 * HZ));
        // An impossible alarm never fires, and a polled AF appears without AIE.
        r.write(1, 0x61);
        assert_eq!(r.rtc.deadline(), None);
        r.write(0x0B, 0x02);
        r.write(1, 0x45);
        r.write(3, 0x13);
        r.write(5, 0x22);
        r.read(0x0C);
        r.now = NOW0 + 100 * HZ; // past 22:13:45 by a minute: AF was set on the way
        assert_eq!(r.read(0x0C) & 0x20, 0, "alarm 22:13:45 already passed before 22:14:00");
        r.now = NOW0 + (86_400 + 24) * HZ;
        assert_eq!(r.read(0x0C) & 0x20, 0, "tomorrow 22:13:44");
        r.now += HZ;
        assert_eq!(r.read(0x0C) & 0x20, 0x20, "tomorrow 22:13:45, polled");
    }

    #[test]
    fn set_freezes_the_clock_and_clearing_it_applies_the_guest_time() {
        let mut r = Rig::new();
        r.now = NOW0 + HZ / 2;
        r.write(0x0B, 0x82 | 0x10);
        assert_eq!(r.read(0x0B), 0x82, "SET clears UIE");
        assert_eq!(r.read(0x0A) & 0x80, 0);
        // Linux's mc146818_set_time, BCD: 1999-12-31 23:59:58.
        for (reg, v) in [(0, 0x58), (2, 0x59), (4, 0x23), (7, 0x31), (8, 0x12), (9, 0x99), (0x32, 0x19)] {
            r.write(reg, v);
        }
        r.now += 10 * HZ;
        assert_eq!(r.read(0), 0x58, "no updates while SET");
        r.write(0x0B, 0x02);
        r.now += HZ; // the next whole second of the divider, plus half
        assert_eq!(r.fields(), [0x59, 0x59, 0x23, 0x06, 0x31, 0x12, 0x99, 0x19]);
        r.now += HZ;
        assert_eq!(r.fields(), [0x00, 0x00, 0x00, 0x07, 0x01, 0x01, 0x00, 0x20], "Y2K");
        let host = T0 as i64 + 12;
        assert_eq!(r.rtc.guest_secs(r.now), DateTime::from_secs(946_684_800).to_secs());
        assert_eq!(r.rtc.guest_offset(r.now), 946_684_800 - host);
        // Garbage while SET becomes a valid time.
        r.write(0x0B, 0x82);
        for (reg, v) in [(0, 0xFF), (2, 0x7A), (4, 0x99), (7, 0x00), (8, 0x13), (9, 0xAA), (0x32, 0xFF)] {
            r.write(reg, v);
        }
        assert_eq!(r.read(0), 0xFF, "RAM while SET");
        r.write(0x0B, 0x02);
        let f = r.fields();
        assert!(f.iter().all(|b| b >> 4 <= 9 && b & 0xF <= 9), "{f:x?}");
        // A write with SET clear takes effect at once.
        r.write(9, 0x30);
        assert_eq!(r.read(9), 0x30);
    }

    #[test]
    fn divider_reset_stops_the_clock_and_restarts_half_a_second_later() {
        let mut r = Rig::new();
        r.now = NOW0 + HZ / 4;
        r.write(0x0A, 0x70);
        r.read(0x0C);
        r.now += 5 * HZ;
        assert_eq!(r.read(0), 0x20, "stopped");
        assert_eq!(r.read(0x0C) & 0x50, 0, "no periodic or update flags while stopped");
        r.write(0x0A, 0x26);
        r.now += HZ / 2 - 1;
        assert_eq!(r.read(0), 0x20);
        r.now += 1;
        assert_eq!(r.read(0), 0x21, "first update 500 ms after the restart");
    }

    #[test]
    fn nvram_index_nmi_bit_and_memory_sizes() {
        let mut r = Rig::new();
        for i in 0x0E..0x80u8 {
            r.write(i | 0x80, i ^ 0x5A);
        }
        assert!(r.rtc.nmi_disabled());
        r.write(0x0E, 0x0E ^ 0x5A);
        assert!(!r.rtc.nmi_disabled());
        for i in 0x0E..0x80u8 {
            if i != 0x32 {
                assert_eq!(r.read(i), i ^ 0x5A, "byte {i:#x}");
            }
        }
        let mut ctx = Ctx { now: r.now, vcpu: 0, irq: &mut r.sink };
        let mut b = [0];
        r.rtc.read(&mut ctx, 0, &mut b);
        assert_eq!(b[0], 0xFF, "the index port is write-only");
        // 3.5 GiB below 4 GiB, 4 GiB above.
        r.rtc.set_memory_size(3584 << 20, 4 << 30);
        let w = |r: &mut Rig, at: u8| r.read(at) as u32 | (r.read(at + 1) as u32) << 8;
        assert_eq!(w(&mut r, 0x15), 640);
        assert_eq!(w(&mut r, 0x17), 0xFFFF);
        assert_eq!(w(&mut r, 0x30), 0xFFFF);
        assert_eq!(w(&mut r, 0x34), (3584 - 16) * 16);
        assert_eq!(w(&mut r, 0x5B) | (r.read(0x5D) as u32) << 16, 4 * 1024 * 16);
        let sum: u32 = (0x10..=0x2D).map(|i| r.read(i) as u32).sum();
        assert_eq!((r.read(0x2E) as u32) << 8 | r.read(0x2F) as u32, sum, "big-endian checksum");
        // Small VMs.
        r.rtc.set_memory_size(8 << 20, 0);
        assert_eq!(w(&mut r, 0x17), 7 * 1024);
        assert_eq!(w(&mut r, 0x34), 0);
    }
}
