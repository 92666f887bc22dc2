//! Guest text on Basalt's console: data, never control.
//!
//! A guest chooses every byte of what it prints (ucall Print, its assertion messages), so
//! nothing of it may reach the serial port as-is: a newline would let it start a line that
//! looks like Basalt's own (`VM x: PASS`, a test verdict), and escape sequences, BEL or NUL
//! would drive whatever terminal reads the log. [`Escaped`] writes text with every byte
//! outside printable ASCII spelled out, and every guest console line is printed as one line
//!
//! ```text
//! guest <vmname>| <escaped text>
//! ```
//!
//! [`GUEST_LINE_PREFIX`] starts no line that Basalt prints of its own (its log lines start
//! with `[LEVEL cpuN]`, its reports with `VM `, `BASALT-TEST-RESULT`, `PANIC`, `EXCEPTION`
//! or two spaces), so a reader of the log (xtask) tells guest lines from Basalt's by their
//! first bytes.
//!
//! Escaping writes in chunks straight to the output: no allocation, so it can run on the
//! ucall path.

use core::fmt::{self, Write};

/// What every line of guest text starts with; the VM's name and [`GUEST_LINE_SEPARATOR`]
/// follow.
pub const GUEST_LINE_PREFIX: &str = "guest ";
/// Between the VM's name and the guest's text.
pub const GUEST_LINE_SEPARATOR: &str = "| ";

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` to `out` escaped: printable ASCII (0x20..=0x7E) except `\` as itself; `\`
/// as `\\`; newline, carriage return and tab as `\n`, `\r`, `\t`; every other byte (control
/// characters, DEL, and each byte of a character beyond ASCII) as `\xHH`, lowercase hex.
pub fn write_escaped(out: &mut dyn Write, bytes: &[u8]) -> fmt::Result {
    let mut plain_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let hex: [u8; 4];
        let escape: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x20..=0x7E => continue,
            _ => {
                hex = [b'\\', b'x', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xF)]];
                &hex
            }
        };
        write_ascii(out, &bytes[plain_from..i])?;
        write_ascii(out, escape)?;
        plain_from = i + 1;
    }
    write_ascii(out, &bytes[plain_from..])
}

/// Writes bytes known to be printable ASCII.
fn write_ascii(out: &mut dyn Write, ascii: &[u8]) -> fmt::Result {
    if ascii.is_empty() {
        return Ok(());
    }
    // Only printable ASCII reaches here, which is always valid UTF-8.
    out.write_str(core::str::from_utf8(ascii).map_err(|_| fmt::Error)?)
}

/// A `fmt::Write` that escapes everything written through it before passing it on.
pub struct EscapingWriter<'a>(pub &'a mut dyn Write);

impl Write for EscapingWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_escaped(self.0, s.as_bytes())
    }
}

/// Displays guest text escaped (see [`write_escaped`]): `Escaped(text)` for a `&str`, a
/// `String` or `format_args!(..)`, anything `Display`.
pub struct Escaped<T>(pub T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(EscapingWriter(f), "{}", self.0)
    }
}

/// Displays raw bytes escaped, for text that need not be UTF-8.
pub struct EscapedBytes<'a>(pub &'a [u8]);

impl fmt::Display for EscapedBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0)
    }
}

/// One guest console line as Basalt prints it (without the newline):
/// `guest <vm>| <text>`, the VM's name and the text both escaped.
pub struct GuestLine<'a, T> {
    pub vm: &'a str,
    pub text: T,
}

impl<T: fmt::Display> fmt::Display for GuestLine<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{GUEST_LINE_PREFIX}{}{GUEST_LINE_SEPARATOR}{}", Escaped(self.vm), Escaped(&self.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::String;

    fn escape(bytes: &[u8]) -> String {
        format!("{}", EscapedBytes(bytes))
    }

    #[test]
    fn printable_ascii_stays() {
        let all: alloc::vec::Vec<u8> = (0x20..=0x7E).filter(|&b| b != b'\\').collect();
        assert_eq!(escape(&all).as_bytes(), &all[..]);
        assert_eq!(escape(b""), "");
        assert_eq!(escape(b"VM cpuid: PASS"), "VM cpuid: PASS");
    }

    #[test]
    fn backslash_and_whitespace_controls() {
        assert_eq!(escape(b"a\\b"), "a\\\\b");
        assert_eq!(escape(b"one\ntwo\rthree\tfour"), "one\\ntwo\\rthree\\tfour");
        assert_eq!(escape(b"\\n"), "\\\\n", "a literal backslash-n stays distinguishable from a newline");
    }

    #[test]
    fn every_other_byte_is_hex() {
        assert_eq!(escape(b"\x1b[2J"), "\\x1b[2J");
        assert_eq!(escape(b"\x07\x00\x7f"), "\\x07\\x00\\x7f");
        assert_eq!(escape(&[0x80, 0xff, 0x0b, 0x0c]), "\\x80\\xff\\x0b\\x0c");
        for b in (0u8..0x20).chain(0x7F..=0xFF).filter(|b| !b"\n\r\t".contains(b)) {
            assert_eq!(escape(&[b]), format!("\\x{b:02x}"));
        }
    }

    #[test]
    fn output_is_one_line_of_printable_ascii() {
        let all: alloc::vec::Vec<u8> = (0..=255).collect();
        let out = escape(&all);
        assert!(out.bytes().all(|b| (0x20..=0x7E).contains(&b)), "{out}");
    }

    #[test]
    fn utf8_text_is_escaped_per_byte() {
        assert_eq!(format!("{}", Escaped("caf\u{e9}")), "caf\\xc3\\xa9");
        assert_eq!(format!("{}", Escaped(format_args!("{}\n{}", 1, "x\x1b"))), "1\\nx\\x1b");
    }

    #[test]
    fn guest_lines() {
        let line = GuestLine { vm: "forge", text: format_args!("ok\nBASALT-TEST-RESULT: PASS\x07") };
        assert_eq!(format!("{line}"), "guest forge| ok\\nBASALT-TEST-RESULT: PASS\\x07");
        let odd = GuestLine { vm: "a\nb", text: "" };
        assert_eq!(format!("{odd}"), "guest a\\nb| ");
        assert!(format!("{line}").starts_with(GUEST_LINE_PREFIX));
    }
}
