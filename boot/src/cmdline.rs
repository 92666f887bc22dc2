//! The kernel command line: `flag key=value key="a quoted value"`.
//!
//! Words are separated by ASCII whitespace. A word is either `key=value` (split at the first
//! `=`) or a bare `flag`. A double quote starts a run in which whitespace does not end the
//! word, so `key="a b"` is one word with value `a b`; the quotes around a whole value (or a
//! whole flag) are removed, quotes elsewhere are kept verbatim, and there are no escapes. A
//! word quoted whole (`"key=a b"`, as GRUB passes an argument with spaces) is `key` with value
//! `a b`. An unterminated quote runs to the end of the line.

use crate::fixed::FixedStr;
use crate::{BootError, BootInfo, MAX_CMDLINE};

/// A parsed view of a command line; borrows the text, allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cmdline<'a> {
    text: &'a str,
}

impl<'a> Cmdline<'a> {
    pub const fn new(text: &'a str) -> Self {
        Self { text }
    }

    /// The text it was made from.
    pub const fn as_str(&self) -> &'a str {
        self.text
    }

    /// Every word, in order, as `(key, Some(value))` or `(flag, None)`.
    pub fn iter(&self) -> CmdlineIter<'a> {
        CmdlineIter { rest: self.text }
    }

    /// Every word as written, quotes kept (`key="a b"` is one word), in order.
    pub fn words(&self) -> impl Iterator<Item = &'a str> {
        let mut rest = self.text;
        core::iter::from_fn(move || {
            let (word, after) = next_word(rest)?;
            rest = after;
            Some(word)
        })
    }

    /// The value of the last `key=value` word for `key` (later words override earlier ones);
    /// `None` if `key` never appears with a value. `key=` gives `Some("")`.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.iter().filter(|&(k, _)| k == key).filter_map(|(_, v)| v).last()
    }

    /// Whether `flag` appears at all, bare (`flag`) or with a value (`flag=...`).
    pub fn has(&self, flag: &str) -> bool {
        self.iter().any(|(k, _)| k == flag)
    }

    /// The command line without a leading kernel path.
    ///
    /// GRUB puts the kernel's path first (`/boot/basalt log=info`), QEMU's `-kernel` puts only
    /// the `-append` text. A first word that contains `/` and no `=` is taken to be that path
    /// and dropped; surrounding whitespace is trimmed.
    pub fn without_kernel_path(&self) -> Cmdline<'a> {
        Cmdline::new(strip_kernel_path(self.text))
    }
}

impl<'a> IntoIterator for Cmdline<'a> {
    type Item = (&'a str, Option<&'a str>);
    type IntoIter = CmdlineIter<'a>;
    fn into_iter(self) -> CmdlineIter<'a> {
        self.iter()
    }
}

/// Iterator over the words of a [`Cmdline`].
#[derive(Debug, Clone)]
pub struct CmdlineIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for CmdlineIter<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        let (word, rest) = next_word(self.rest)?;
        self.rest = rest;
        // A word quoted whole, `"key=a b"`, is `key="a b"`: GRUB writes a module argument
        // that holds spaces that way (grub.cfg's `cmdline="a b"` reaches us as `"cmdline=a b"`).
        let word = match word.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
            Some(inner) if !inner.contains('"') => inner,
            _ => word,
        };
        Some(match word.split_once('=') {
            Some((key, value)) => (unquote(key), Some(unquote(value))),
            None => (unquote(word), None),
        })
    }
}

/// Split off the first word (quote-aware); `None` when only whitespace is left.
fn next_word(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(|c: char| c.is_ascii_whitespace());
    if s.is_empty() {
        return None;
    }
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_ascii_whitespace() && !quoted => return Some((&s[..i], &s[i..])),
            _ => {}
        }
    }
    Some((s, ""))
}

/// Remove the quotes around a whole value; an unterminated leading quote is removed alone.
fn unquote(s: &str) -> &str {
    match s.strip_prefix('"') {
        Some(inner) => inner.strip_suffix('"').unwrap_or(inner),
        None => s,
    }
}

/// `text` without a leading kernel path word (see [`Cmdline::without_kernel_path`]), trimmed.
pub fn strip_kernel_path(text: &str) -> &str {
    let trimmed = text.trim_matches(|c: char| c.is_ascii_whitespace());
    match next_word(trimmed) {
        Some((first, rest)) if first.contains('/') && !first.contains('=') => {
            rest.trim_start_matches(|c: char| c.is_ascii_whitespace())
        }
        _ => trimmed,
    }
}

/// What a loader parser stores as `BootInfo::cmdline`: the loader's text without the leading
/// kernel path; `TooMany` if what is left is longer than [`MAX_CMDLINE`].
pub fn kernel_cmdline(raw: &str) -> Result<FixedStr<MAX_CMDLINE>, BootError> {
    FixedStr::try_from_str(strip_kernel_path(raw))
        .map_err(|_| BootError::TooMany("bytes in the kernel command line"))
}

impl BootInfo {
    /// The kernel command line (already without the kernel path), parsed.
    pub fn kernel_cmdline(&self) -> Cmdline<'_> {
        Cmdline::new(self.cmdline.as_str())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn words(s: &str) -> Vec<(&str, Option<&str>)> {
        Cmdline::new(s).iter().collect()
    }

    #[test]
    fn keys_and_flags() {
        assert_eq!(
            words("  log=info  quiet\tsmp=4 "),
            [("log", Some("info")), ("quiet", None), ("smp", Some("4"))]
        );
        assert_eq!(words(""), []);
        assert_eq!(words("   "), []);
        let c = Cmdline::new("log=info quiet empty= a=b=c");
        assert_eq!(c.get("log"), Some("info"));
        assert_eq!(c.get("quiet"), None);
        assert_eq!(c.get("empty"), Some(""));
        assert_eq!(c.get("a"), Some("b=c"));
        assert_eq!(c.get("missing"), None);
        assert!(c.has("quiet"));
        assert!(c.has("log"));
        assert!(!c.has("loud"));
        assert!(!c.has("info"));
    }

    #[test]
    fn last_occurrence_wins() {
        let c = Cmdline::new("log=info log=debug quiet log=trace");
        assert_eq!(c.get("log"), Some("trace"));
        // A later bare flag of the same name does not erase an earlier value.
        assert_eq!(Cmdline::new("log=warn log").get("log"), Some("warn"));
    }

    #[test]
    fn quotes() {
        assert_eq!(
            words(r#"guest="linux console=ttyS0" x=1 "bare flag""#),
            [("guest", Some("linux console=ttyS0")), ("x", Some("1")), ("bare flag", None)]
        );
        assert_eq!(Cmdline::new(r#"k="""#).get("k"), Some(""));
        // Quotes inside a value are kept; whitespace inside them still does not split.
        assert_eq!(words(r#"k=a"b c"d e"#), [("k", Some(r#"a"b c"d"#)), ("e", None)]);
        // Unterminated: the rest of the line.
        assert_eq!(words(r#"a=1 b="x y"#), [("a", Some("1")), ("b", Some("x y"))]);
        assert_eq!(words("x=\"é ü\""), [("x", Some("é ü"))]);
        // A word quoted whole, as GRUB passes `cmdline="console=ttyS0 quiet"` on.
        assert_eq!(
            words(r#"name=l "cmdline=console=ttyS0 quiet" x"#),
            [("name", Some("l")), ("cmdline", Some("console=ttyS0 quiet")), ("x", None)]
        );
    }

    #[test]
    fn words_as_written() {
        let c = Cmdline::new(r#"  a=1  k="x y"	"w=q r" bare "#);
        assert_eq!(c.words().collect::<Vec<_>>(), ["a=1", r#"k="x y""#, r#""w=q r""#, "bare"]);
        assert_eq!(Cmdline::new(" ").words().count(), 0);
    }

    #[test]
    fn leading_path() {
        assert_eq!(strip_kernel_path("/boot/basalt log=info"), "log=info");
        assert_eq!(strip_kernel_path("  /boot/basalt   log=info quiet "), "log=info quiet");
        assert_eq!(strip_kernel_path("/boot/basalt"), "");
        assert_eq!(strip_kernel_path("target/x86_64-unknown-none/debug/basalt smp=2"), "smp=2");
        // QEMU -append only: nothing to strip.
        assert_eq!(strip_kernel_path("log=info quiet"), "log=info quiet");
        // A path-like value is an argument, not the kernel path.
        assert_eq!(strip_kernel_path("root=/dev/sda quiet"), "root=/dev/sda quiet");
        assert_eq!(strip_kernel_path("quiet /not/first"), "quiet /not/first");
        assert_eq!(strip_kernel_path(""), "");
        assert_eq!(Cmdline::new("/boot/basalt a=1").without_kernel_path().get("a"), Some("1"));
        assert!(!Cmdline::new("/boot/basalt").without_kernel_path().has("/boot/basalt"));
    }

    #[test]
    fn stored_cmdline() {
        assert_eq!(kernel_cmdline("/boot/basalt log=info").unwrap(), "log=info");
        let long = std::format!("/boot/basalt {}", "x".repeat(MAX_CMDLINE));
        assert!(kernel_cmdline(&long).is_ok());
        let too_long = std::format!("/boot/basalt {}y", "x".repeat(MAX_CMDLINE));
        assert_eq!(kernel_cmdline(&too_long), Err(BootError::TooMany("bytes in the kernel command line")));
    }
}
