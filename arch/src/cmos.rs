//! The host's real-time clock (the MC146818 CMOS at ports 0x70/0x71), read once at boot so
//! each VM's RTC can start from the host's date.

use crate::io::{inb, outb};

/// The host's wall-clock time as the CMOS gives it (UTC by PC convention on the machines we
/// run on: QEMU and Bochs keep it so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallTime {
    pub year: u32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

const REG_A: u8 = 0x0A;
const REG_B: u8 = 0x0B;
const UIP: u8 = 0x80;
const B_24H: u8 = 0x02;
const B_BINARY: u8 = 0x04;
/// Where PCs keep the century (the FADT's CENTURY field names it; 0x32 by convention).
const CENTURY: u8 = 0x32;

fn read(reg: u8) -> u8 {
    // Bit 7 of the index keeps NMIs enabled as the firmware left them (clear).
    outb(0x70, reg & 0x7F);
    inb(0x71)
}

fn raw() -> [u8; 7] {
    [read(0x00), read(0x02), read(0x04), read(0x07), read(0x08), read(0x09), read(CENTURY)]
}

/// Decode one CMOS reading (seconds, minutes, hours, day, month, year, century) in the format
/// register B gives; `None` if a field is out of range (no RTC, or garbage).
pub fn decode(r: [u8; 7], reg_b: u8) -> Option<WallTime> {
    let bcd = reg_b & B_BINARY == 0;
    let num = |b: u8| -> Option<u32> {
        if !bcd {
            return Some(b as u32);
        }
        let (hi, lo) = (b >> 4, b & 0xF);
        (hi < 10 && lo < 10).then_some(hi as u32 * 10 + lo as u32)
    };
    let pm = reg_b & B_24H == 0 && r[2] & 0x80 != 0;
    let mut hour = num(r[2] & 0x7F)?;
    if reg_b & B_24H == 0 {
        // 12-hour: 12 AM is 0, 12 PM is 12.
        hour = (hour % 12) + if pm { 12 } else { 0 };
    }
    let year2 = num(r[5])?;
    let century = num(r[6]).filter(|c| (19..=99).contains(c)).unwrap_or(if year2 < 70 { 20 } else { 19 });
    let t = WallTime {
        year: century * 100 + year2,
        month: num(r[4])?,
        day: num(r[3])?,
        hour,
        minute: num(r[1])?,
        second: num(r[0])?,
    };
    let ok = (1..=12).contains(&t.month)
        && (1..=31).contains(&t.day)
        && t.hour < 24
        && t.minute < 60
        && t.second < 60
        && year2 < 100;
    ok.then_some(t)
}

/// Read the host's CMOS clock: after an update-in-progress clears, until two readings agree.
/// `None` if it never settles or reads nonsense (a machine without a CMOS RTC).
pub fn read_time() -> Option<WallTime> {
    let mut last = None;
    for _ in 0..1000 {
        // An update takes under 2 ms; each register read is a few microseconds.
        let mut settled = false;
        for _ in 0..100_000 {
            if read(REG_A) & UIP == 0 {
                settled = true;
                break;
            }
        }
        if !settled {
            return None;
        }
        let r = raw();
        if last == Some(r) {
            return decode(r, read(REG_B));
        }
        last = Some(r);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcd_24h_and_binary_12h() {
        let t = decode([0x59, 0x30, 0x23, 0x31, 0x12, 0x26, 0x20], B_24H).unwrap();
        assert_eq!(t, WallTime { year: 2026, month: 12, day: 31, hour: 23, minute: 30, second: 59 });
        // Binary, 12-hour: 12 AM is hour 0, 11 PM is 23.
        let t = decode([1, 2, 12, 2, 1, 27, 20], B_BINARY).unwrap();
        assert_eq!((t.year, t.hour), (2027, 0));
        let t = decode([1, 2, 0x80 | 11, 2, 1, 27, 20], B_BINARY).unwrap();
        assert_eq!(t.hour, 23);
        // A century byte that is not BCD: years below 70 are taken as 20xx.
        assert_eq!(decode([0, 0, 0, 1, 1, 0x26, 0xFF], B_24H).unwrap().year, 2026);
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(decode([0xFF; 7], B_24H), None);
        assert_eq!(decode([0, 0, 0, 0, 1, 0x26, 0x20], B_24H), None, "day 0");
        assert_eq!(decode([0, 0, 0x24, 1, 1, 0x26, 0x20], B_24H), None, "hour 24");
    }
}
