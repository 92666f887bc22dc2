//! The RTC/CMOS at 0x70/0x71: the time read in BCD and binary (register B DM bit) and in 24-hour
//! and 12-hour form, each read after UIP (register A bit 7) clears and twice until two reads
//! agree; a plausible date (year 2024..=2100); the same time in every format; and the seconds
//! advancing once about 1.1 s (TSC-timed) pass.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::hw::rdtsc;
use basalt_guests::{acpi, time};
use basalt_guests::{guest_assert, guest_println};

basalt_guests::entry!(run);

const REG_A: u8 = 0x0A;
const REG_B: u8 = 0x0B;
const UIP: u8 = 0x80;
const B_24H: u8 = 0x02;
const B_BINARY: u8 = 0x04;
const B_SET: u8 = 0x80;
/// Seconds, minutes, hours, day of month, month, year.
const TIME_REGS: [u8; 6] = [0x00, 0x02, 0x04, 0x07, 0x08, 0x09];

use basalt_guests::cmos::{read as cmos_read, write as cmos_write};

/// Waits for UIP to clear (an update takes under 2 ms; allow 20).
fn wait_uip_clear() {
    let ok = basalt_guests::hw::spin_until(time::us_to_tsc(20_000), || cmos_read(REG_A) & UIP == 0);
    guest_assert!(ok, "RTC register A's UIP stayed set for 20 ms");
}

/// The time registers as the RTC gives them: after UIP clears, read until two reads agree.
fn read_raw() -> [u8; 6] {
    let mut last = [0xFFu8; 6];
    for _ in 0..10 {
        wait_uip_clear();
        let now = TIME_REGS.map(cmos_read);
        if now == last {
            return now;
        }
        last = now;
    }
    guest_assert!(false, "the RTC never read the same twice");
    last
}

fn from_bcd(v: u8, what: &str) -> u8 {
    guest_assert!(v & 0xF <= 9 && v >> 4 <= 9, "{} {:#x} is not BCD", what, v);
    (v >> 4) * 10 + (v & 0xF)
}

/// The raw registers in format `b` (register B) as seconds, minutes, hours (24h), day, month,
/// year, checking the format's own rules.
fn decode(raw: [u8; 6], b: u8) -> [u8; 6] {
    let names = ["seconds", "minutes", "hours", "day", "month", "year"];
    let mut out = [0u8; 6];
    for i in 0..6 {
        let mut v = raw[i];
        let pm = i == 2 && b & B_24H == 0 && v & 0x80 != 0;
        if i == 2 && b & B_24H == 0 {
            v &= 0x7F;
        }
        v = if b & B_BINARY != 0 { v } else { from_bcd(v, names[i]) };
        if i == 2 && b & B_24H == 0 {
            guest_assert!((1..=12).contains(&v), "12-hour hours {} (raw {:#x})", v, raw[2]);
            v = v % 12 + if pm { 12 } else { 0 };
        }
        out[i] = v;
    }
    out
}

fn format_name(b: u8) -> &'static str {
    match b & (B_24H | B_BINARY) {
        0 => "BCD 12h",
        B_24H => "BCD 24h",
        B_BINARY => "binary 12h",
        _ => "binary 24h",
    }
}

/// The time in format `fmt` (register B's DM and 24/12 bits).
fn read_in(orig_b: u8, fmt: u8) -> [u8; 6] {
    let b = (orig_b & !(B_24H | B_BINARY | B_SET)) | fmt;
    cmos_write(REG_B, b);
    guest_assert!(
        cmos_read(REG_B) & (B_24H | B_BINARY) == fmt,
        "register B does not keep {}",
        format_name(fmt)
    );
    decode(read_raw(), b)
}

fn run() {
    let orig_b = cmos_read(REG_B);
    guest_assert!(orig_b & B_SET == 0, "register B has SET ({:#x}): the clock is stopped", orig_b);
    let century_reg = acpi::find_rsdp()
        .and_then(|r| acpi::find_table(&r, b"FACP"))
        .map(|f| acpi::rd8(f + acpi::fadt::CENTURY))
        .filter(|&c| c != 0)
        .unwrap_or(0x32);

    // Every format: the same time (retrying a read that straddled a second).
    let formats = [B_24H | B_BINARY, B_24H, B_BINARY, 0];
    let mut reference = [0u8; 6];
    let mut consistent = false;
    for _ in 0..3 {
        reference = read_in(orig_b, formats[0]);
        let all = formats.map(|f| read_in(orig_b, f));
        let again = read_in(orig_b, formats[0]);
        if again == reference {
            for (f, t) in formats.iter().zip(all) {
                guest_assert!(
                    t == reference,
                    "{} reads {:?}, binary 24h {:?} (s m h D M Y)",
                    format_name(*f),
                    t,
                    reference
                );
            }
            consistent = true;
            break;
        }
    }
    guest_assert!(consistent, "the RTC time moved during every comparison of the formats");

    // The century: BCD like the rest in BCD mode.
    cmos_write(REG_B, (orig_b & !(B_BINARY | B_SET)) | B_24H);
    let century = from_bcd(cmos_read(century_reg), "century");
    let [s, m, h, day, month, yy] = reference;
    let year = u32::from(century) * 100 + u32::from(yy);
    guest_assert!((2024..=2100).contains(&year), "year {} (century register {:#x})", year, century_reg);
    guest_assert!((1..=12).contains(&month), "month {}", month);
    guest_assert!((1..=31).contains(&day), "day {}", day);
    guest_assert!(h <= 23 && m <= 59 && s <= 59, "time {}:{}:{}", h, m, s);

    // The seconds advance: about 1.1 s later, by 1 (or 2, had the first read come just
    // before a tick).
    cmos_write(REG_B, (orig_b & !B_SET) | B_BINARY | B_24H);
    let s0 = read_raw()[0];
    let (start, wait) = (rdtsc(), time::us_to_tsc(1_100_000));
    let mut uip_seen = 0u32;
    while rdtsc() - start < wait {
        if cmos_read(REG_A) & UIP != 0 {
            uip_seen += 1;
        }
        time::delay_us(100);
    }
    let s1 = read_raw()[0];
    cmos_write(REG_B, orig_b);
    let advanced = (s1 + 60 - s0) % 60;
    guest_assert!(advanced == 1 || advanced == 2, "after 1.1 s the seconds went from {} to {}", s0, s1);
    guest_println!(
        "RTC {year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}, the same in BCD/binary and 12h/24h; \
         seconds {s0} -> {s1} in 1.1 s (UIP seen in {uip_seen} polls)"
    );
}
