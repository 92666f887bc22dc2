//! Small helpers shared by the other modules: the workspace root, command display.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// `target/xtask`, where xtask keeps ISOs, Bochs configurations and serial logs.
pub fn xtask_dir() -> PathBuf {
    workspace_root().join("target").join("xtask")
}

/// The cargo that runs us (`$CARGO`), or `cargo` from `PATH`.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Quotes one word for a POSIX shell, only where it needs quoting.
pub fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_=.,:/+@%".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A command line as it could be pasted into a shell.
pub fn display_command(program: &str, args: &[String]) -> String {
    std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `n` lines of `text`, without carriage returns.
pub fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("log=info"), "log=info");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(
            display_command("qemu", &["-append".into(), "log=info test=boot".into()]),
            "qemu -append 'log=info test=boot'"
        );
    }

    #[test]
    fn tail() {
        assert_eq!(last_lines("a\r\nb\nc\n", 2), vec!["b", "c"]);
        assert_eq!(last_lines("a", 5), vec!["a"]);
        assert!(last_lines("", 5).is_empty());
    }
}
