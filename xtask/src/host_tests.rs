//! Host unit tests: `cargo test --workspace` on the host target, with its results counted.

use crate::util::{cargo, workspace_root};
use anyhow::{Context, Result};
use std::io::{BufRead, BufReader};
use std::process::Stdio;

/// Passed and failed test counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
    }
}

/// Parses a libtest summary line:
/// `test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s`.
pub fn parse_result_line(line: &str) -> Option<Counts> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_verdict, fields) = rest.split_once(". ")?;
    let mut counts = Counts::default();
    let mut found = false;
    for field in fields.split(';') {
        let mut words = field.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match what {
            "passed" => counts.passed = n,
            "failed" => counts.failed = n,
            _ => continue,
        }
        found = true;
    }
    found.then_some(counts)
}

/// Sums every summary line of a `cargo test` output.
#[cfg(test)]
pub fn count_results(output: &str) -> Counts {
    let mut total = Counts::default();
    for counts in output.lines().filter_map(parse_result_line) {
        total += counts;
    }
    total
}

/// Runs the host tests, streaming their output. A run that fails without any failed test
/// (a build error) counts as one failure.
pub fn run() -> Result<Counts> {
    let mut cmd = cargo();
    cmd.current_dir(workspace_root()).args(["test", "--workspace", "--no-fail-fast"]).stdout(Stdio::piped());
    println!("xtask: cargo test --workspace --no-fail-fast");
    let mut child = cmd.spawn().context("cannot run cargo test")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut total = Counts::default();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(counts) = parse_result_line(&line) {
            total += counts;
        }
    }
    let status = child.wait()?;
    if !status.success() && total.failed == 0 {
        println!("host tests: FAILED (cargo test ended with {status} and no failing test: a build error?)");
        total.failed += 1;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_line() {
        assert_eq!(
            parse_result_line(
                "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.02s"
            ),
            Some(Counts { passed: 12, failed: 0 })
        );
    }

    #[test]
    fn failed_line() {
        assert_eq!(
            parse_result_line(
                "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.50s"
            ),
            Some(Counts { passed: 3, failed: 2 })
        );
    }

    #[test]
    fn other_lines_are_ignored() {
        assert_eq!(parse_result_line("test foo ... ok"), None);
        assert_eq!(parse_result_line("running 3 tests"), None);
        assert_eq!(parse_result_line("test result: garbage"), None);
    }

    #[test]
    fn sums_all_binaries_and_doc_tests() {
        let output = "\
running 2 tests
test a ... ok
test b ... ok

test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

running 0 tests

test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

   Doc-tests basalt_arch

running 4 tests
test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.31s
";
        assert_eq!(count_results(output), Counts { passed: 5, failed: 1 });
    }
}
