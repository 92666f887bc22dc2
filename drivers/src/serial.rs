//! The serial console (COM1, 16550) and the `log` backend that writes to it.
//!
//! Lines from different CPUs never interleave: the whole line is written under one lock. The
//! panic path may take the port even if a stopped CPU held the lock.

use core::fmt::Write;
use log::{Level, LevelFilter, Log, Metadata, Record};
use spin::{Mutex, Once};
use uart_16550::backend::PioBackend;
use uart_16550::{BaudRate, Config, Uart16550};

const COM1: u16 = 0x3F8;

static PORT: Mutex<Option<SerialPort>> = Mutex::new(None);

/// COM1 as a `fmt::Write`: bytes go out as they are (no CR added before LF), except backspace
/// and DEL, which become BS, space, BS (what the console has always sent).
struct SerialPort(Uart16550<PioBackend>);

impl Write for SerialPort {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &byte in s.as_bytes() {
            match byte {
                8 | 0x7F => self.0.send_bytes_exact(&[8, b' ', 8]),
                _ => self.0.send_bytes_exact(&[byte]),
            }
        }
        Ok(())
    }
}

/// Program COM1 (38400 8N1, FIFOs on with a 14-byte trigger, DTR/RTS/OUT2; Bochs starts it
/// with 5-bit characters) and install the logger.
pub fn init(level: LevelFilter, cpu_index: fn() -> usize) {
    // SAFETY: COM1 is the standard PC serial port at 0x3F8, driven only through this module.
    let mut port =
        unsafe { Uart16550::new_port(COM1) }.expect("COM1's eight registers fit in the port space");
    // A machine without a UART at COM1 fails the scratch-register check: keep the port anyway
    // (its writes go nowhere), as before.
    let _ = port.init(Config { baud_rate: BaudRate::Baud38400, ..Config::DEFAULT });
    *PORT.lock() = Some(SerialPort(port));
    CPU_INDEX.call_once(|| cpu_index);
    log::set_max_level(level);
    // A second call (a test that re-initializes) keeps the first logger: that is fine.
    let _ = log::set_logger(&LOGGER);
}

/// Write formatted text to the console (no level, no prefix).
pub fn write_fmt(args: core::fmt::Arguments<'_>) {
    if let Some(port) = PORT.lock().as_mut() {
        let _ = port.write_fmt(args);
    }
}

/// Take the console for the panic path, even if a CPU stopped while holding it.
pub fn force_unlock() {
    if PORT.is_locked() {
        // SAFETY: called only once every other CPU is being stopped; a half-written line is
        // better than a silent panic.
        unsafe { PORT.force_unlock() };
    }
}

/// Wait until the UART has sent every byte (LSR.TEMT), so nothing is lost when the emulator
/// is ended right after the last line (Bochs drops a half-sent FIFO).
pub fn drain() {
    for _ in 0..1_000_000 {
        if basalt_arch::io::inb(COM1 + 5) & 0x40 != 0 {
            return;
        }
        core::hint::spin_loop();
    }
}

/// Print to the serial console like `print!`.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::serial::write_fmt(format_args!($($arg)*)) };
}

/// Print a line to the serial console like `println!`.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::serial::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

/// How the logger learns which CPU is printing.
static CPU_INDEX: Once<fn() -> usize> = Once::new();

struct SerialLogger;
static LOGGER: SerialLogger = SerialLogger;

impl Log for SerialLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let cpu = CPU_INDEX.get().map_or(0, |f| f());
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        write_fmt(format_args!("[{level} cpu{cpu}] {}\n", record.args()));
    }

    fn flush(&self) {}
}

/// Parse a `log=` command-line value.
pub fn parse_level(value: &str) -> Option<LevelFilter> {
    match value {
        "off" => Some(LevelFilter::Off),
        "error" => Some(LevelFilter::Error),
        "warn" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_parse() {
        assert_eq!(parse_level("debug"), Some(LevelFilter::Debug));
        assert_eq!(parse_level("trace"), Some(LevelFilter::Trace));
        assert_eq!(parse_level("loud"), None);
    }
}
