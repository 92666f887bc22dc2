//! Integration tests: boot the kernel with `test=<name>` and judge its serial output.

use crate::bochs::BochsEnd;
use crate::emulator::{self, Exit, Outcome};
use crate::platform::{Platform, Vm};
use crate::tests_table::{Expect, IntegrationTest};
use crate::util::{last_lines, xtask_dir};
use crate::{bochs, qemu};
use anyhow::Result;
use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the kernel's verdict line starts with. With `token=<hex>` on its command line (every
/// test run) the line is `BASALT-TEST-RESULT <token>: PASS` or
/// `BASALT-TEST-RESULT <token>: FAIL: <reason>`; without one (`cargo xtask run`), the same
/// without ` <token>`.
pub const MARKER: &str = "BASALT-TEST-RESULT";

/// What every line of guest text starts with (`guest <vm>| <escaped text>`); the kernel's
/// `console::GUEST_LINE_PREFIX` (hypervisor/src/console.rs, checked by a test here).
pub const GUEST_LINE_PREFIX: &str = "guest ";

/// QEMU's exit status for isa-debug-exit value 0x10 (pass) and 0x11 (fail).
const QEMU_PASS_STATUS: i32 = (0x10 << 1) | 1;
const QEMU_FAIL_STATUS: i32 = (0x11 << 1) | 1;

/// How long an emulator may keep running after the kernel printed its result.
const GRACE_AFTER_MARKER: Duration = Duration::from_secs(5);

/// Serial lines shown under a failed test.
const TAIL_LINES: usize = 40;

/// What the kernel reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reported {
    Pass,
    Fail(String),
}

/// A fresh secret for one boot: 128 random bits in hex, for `token=` on the kernel command
/// line. Guests see only their own RAM, never the kernel command line, so they cannot print
/// a verdict line with it.
pub fn fresh_token() -> String {
    let mut bytes = [0u8; 16];
    let urandom = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if urandom.is_err() {
        // RandomState's keys come from the OS's randomness, and differ per instance.
        for (i, chunk) in bytes.chunks_mut(8).enumerate() {
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
            hasher.write_u32(std::process::id());
            hasher.write_usize(i);
            chunk.copy_from_slice(&hasher.finish().to_le_bytes());
        }
    }
    bytes.iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

/// The start of this boot's verdict line: `BASALT-TEST-RESULT <token>: `.
pub fn verdict_prefix(token: &str) -> String {
    format!("{MARKER} {token}: ")
}

/// The kernel's verdict: the first line that STARTS with this boot's [`verdict_prefix`].
/// A verdict with another token or none, or one inside a line (a guest's `guest <vm>| ...`
/// line, a log line), is not Basalt's verdict for this run and is ignored.
pub fn find_marker(serial: &str, token: &str) -> Option<Reported> {
    let prefix = verdict_prefix(token);
    serial.lines().find_map(|line| {
        let rest = line.trim_end_matches('\r').strip_prefix(&prefix)?.trim();
        if rest == "PASS" {
            Some(Reported::Pass)
        } else {
            let reason = rest.strip_prefix("FAIL")?;
            let reason = reason.strip_prefix(':').unwrap_or(reason).trim();
            Some(Reported::Fail(reason.to_string()))
        }
    })
}

/// Whether a serial line is guest text (`guest <vm>| ...`) rather than Basalt's own.
pub fn is_guest_line(line: &str) -> bool {
    line.starts_with(GUEST_LINE_PREFIX)
}

/// Basalt's own lines of the serial log (every line but the guests'), newline-separated.
pub fn basalt_lines(serial: &str) -> String {
    serial
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !is_guest_line(l))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The guests' lines of the serial log, newline-separated.
pub fn guest_lines(serial: &str) -> String {
    serial
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| is_guest_line(l))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn describe_exit(exit: Exit) -> String {
    match exit {
        Exit::Exited(Some(code)) => format!("status {code}"),
        Exit::Exited(None) => "a signal".into(),
        Exit::TimedOut(t) => format!("timeout after {}s", t.as_secs()),
        Exit::KilledAfterMarker => "killed after the result marker".into(),
    }
}

/// Everything one run left to judge.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// The `token=` this boot was given.
    pub token: &'a str,
    pub serial: &'a str,
    pub exit: Exit,
    /// On Bochs, how it ended according to its own log; `None` on QEMU.
    pub bochs: Option<BochsEnd>,
}

/// The needles of `needles` that `text` lacks (`want = true`) or has (`want = false`), quoted.
fn needles(needles: &[String], text: &str, want: bool) -> Vec<String> {
    needles.iter().filter(|n| text.contains(n.as_str()) != want).map(|n| format!("{n:?}")).collect()
}

/// What is known about a way Bochs ends by itself, for the report.
fn bochs_hint(platform: Platform, line: &str) -> &'static str {
    if platform == Platform::BochsSvm && line.contains("exception with no resolution") {
        // Bochs 2.7's triple-fault path calls only its VMX exit (VMexit_TripleFault), never
        // the SVM SHUTDOWN intercept Basalt sets, so a guest's triple fault ends Bochs.
        " (a guest triple fault: Bochs 2.7 does not implement the SVM SHUTDOWN intercept)"
    } else {
        ""
    }
}

/// The first of `needles` that does not appear in `text` after the previous one, if any.
fn out_of_order<'a>(needles: &'a [String], text: &str) -> Option<&'a str> {
    let mut from = 0;
    for n in needles {
        match text[from..].find(n.as_str()) {
            Some(at) => from += at + n.len(),
            None => return Some(n),
        }
    }
    None
}

/// Judges one run: `Ok` if it passed, or the reason it failed. `must_contain`,
/// `must_contain_in_order` and `must_not_contain` look at Basalt's own lines only,
/// `guest_must_contain` at the guests' lines, `serial_must_not_contain` at every byte of the
/// serial log.
pub fn check(test: &IntegrationTest, run: &Observed) -> Result<(), String> {
    let basalt = basalt_lines(run.serial);
    let mut unwanted = needles(&test.must_not_contain, &basalt, false);
    unwanted.extend(needles(&test.serial_must_not_contain, run.serial, false));
    if !unwanted.is_empty() {
        return Err(format!("serial output contains {}", unwanted.join(", ")));
    }
    if test.expect == Expect::Stalls {
        return check_stall(test, run);
    }
    if test.expect == Expect::Ends {
        return check_end(test, run, &basalt);
    }
    let bochs_death = match &run.bochs {
        Some(BochsEnd::Died(line)) => {
            format!("; Bochs ended by itself: {line:?}{}", bochs_hint(test.platform, line))
        }
        _ => String::new(),
    };
    let Some(reported) = find_marker(run.serial, run.token) else {
        return Err(match run.exit {
            Exit::TimedOut(t) => format!("no result marker (timeout after {}s){bochs_death}", t.as_secs()),
            Exit::Exited(Some(code)) => {
                format!("emulator exited with status {code} and no result marker{bochs_death}")
            }
            other => format!("emulator ended by {} and no result marker{bochs_death}", describe_exit(other)),
        });
    };
    match (test.expect, &reported) {
        (Expect::Pass, Reported::Fail(reason)) => {
            return Err(format!("expected PASS, kernel reported FAIL: {reason}"));
        }
        (Expect::Fail, Reported::Pass) => {
            return Err("expected FAIL, kernel reported PASS".into());
        }
        (Expect::Stalls | Expect::Ends, _) => unreachable!("handled by check_stall and check_end"),
        _ => {}
    }
    let mut missing = needles(&test.must_contain, &basalt, true);
    missing.extend(
        needles(&test.guest_must_contain, &guest_lines(run.serial), true)
            .iter()
            .map(|n| format!("guest line {n}")),
    );
    if !missing.is_empty() {
        return Err(format!("serial output lacks {}", missing.join(", ")));
    }
    if let Some(late) = out_of_order(&test.must_contain_in_order, &basalt) {
        return Err(format!(
            "serial output lacks {late:?} after the lines before it in must_contain_in_order"
        ));
    }
    if !test.platform.is_bochs() {
        let expected = match reported {
            Reported::Pass => QEMU_PASS_STATUS,
            Reported::Fail(_) => QEMU_FAIL_STATUS,
        };
        if run.exit != Exit::Exited(Some(expected)) {
            return Err(format!(
                "result marker printed, but QEMU ended by {} (expected status {expected})",
                describe_exit(run.exit)
            ));
        }
        return Ok(());
    }
    // Bochs's exit status is always 1: its log says whether Basalt ended it (port 0x8900).
    // Killed by the harness after the marker (Bochs did not shut down in the grace period)
    // the printed result still stands.
    match (run.exit, &run.bochs) {
        (Exit::KilledAfterMarker, _) => Ok(()),
        (Exit::Exited(_), Some(BochsEnd::Shutdown)) => Ok(()),
        (Exit::Exited(_), Some(BochsEnd::Died(line))) => {
            Err(format!("result marker printed, but then Bochs ended by itself: {line:?}"))
        }
        (exit, _) => Err(format!(
            "result marker printed, but Bochs ended by {} without Basalt's shutdown request \
             (no {:?} in its log)",
            describe_exit(exit),
            bochs::SHUTDOWN_MESSAGE
        )),
    }
}

/// Judges an `Expect::Ends` run: every expected text, no verdict, and QEMU ended by Basalt
/// with the success status.
fn check_end(test: &IntegrationTest, run: &Observed, basalt: &str) -> Result<(), String> {
    if find_marker(run.serial, run.token).is_some() {
        return Err("a result marker was printed outside a test mode".into());
    }
    let missing = needles(&test.must_contain, basalt, true);
    if !missing.is_empty() {
        return Err(format!("serial output lacks {}", missing.join(", ")));
    }
    if run.exit != Exit::Exited(Some(QEMU_PASS_STATUS)) {
        return Err(format!(
            "QEMU ended by {}, not by Basalt's exit (status {QEMU_PASS_STATUS})",
            describe_exit(run.exit)
        ));
    }
    Ok(())
}

/// Judges an `Expect::Stalls` run: every expected text, then no end of its own.
fn check_stall(test: &IntegrationTest, run: &Observed) -> Result<(), String> {
    let missing = needles(&test.must_contain, &basalt_lines(run.serial), true);
    if !missing.is_empty() {
        return Err(format!("serial output lacks {} ({})", missing.join(", "), describe_exit(run.exit)));
    }
    if run.serial.lines().any(|l| l.trim_end_matches('\r').starts_with(MARKER)) {
        return Err("expected a stop before any test result, but one was reported".into());
    }
    match run.exit {
        Exit::KilledAfterMarker => Ok(()),
        other => Err(format!(
            "expected it to wait after the last expected text; it ended by {}",
            describe_exit(other)
        )),
    }
}

/// The line whose appearance starts the grace period: the result marker, or for a run
/// expected to stall, the last text it must print.
fn stop_marker(test: &IntegrationTest, token: &str) -> String {
    match (test.expect, test.must_contain.last()) {
        (Expect::Stalls, Some(last)) => last.clone(),
        _ => verdict_prefix(token),
    }
}

/// The tests whose `<platform>: <name>` contains `filter`.
pub fn select(tests: Vec<IntegrationTest>, filter: Option<&str>) -> Vec<IntegrationTest> {
    tests.into_iter().filter(|t| filter.is_none_or(|f| t.full_name().contains(f))).collect()
}

/// Where a test keeps its ISO and logs.
pub fn work_dir(test: &IntegrationTest) -> std::path::PathBuf {
    xtask_dir().join(format!("{}-{}", test.platform, test.name))
}

fn launch(vm: &Vm) -> Result<emulator::Launch> {
    match vm.platform {
        Platform::BochsVmx | Platform::BochsSvm => bochs::prepare(vm),
        Platform::NestedSvm => anyhow::bail!("nested-svm runs inside L1 Linux (nested::run_all)"),
        Platform::QemuSvm | Platform::Kvm | Platform::Uefi => qemu::launch(vm),
    }
}

/// One finished run: what the emulator did, the token the boot was given, and on Bochs how
/// its log says it ended.
struct Finished {
    outcome: Outcome,
    token: String,
    bochs: Option<BochsEnd>,
}

fn run_one(test: &IntegrationTest, kernel: &Path) -> Result<Finished> {
    // A fresh token per boot: a verdict line from an earlier run, or one a guest made up,
    // cannot carry it.
    let token = fresh_token();
    let cmdline = format!("{} token={token}", test.cmdline);
    let kernel = if test.platform == Platform::Uefi {
        // The kernel, the loader, the test's guests and its basalt.cfg on a fresh disk image.
        let img = work_dir(test).join("basalt.img");
        let guests: Vec<_> = test.modules.iter().map(|(path, _)| path.clone()).collect();
        // A test's own basalt.cfg gets this boot's command line (with its token) unless it
        // has a [basalt] section of its own.
        let config = test.uefi_config.as_ref().map(|c| {
            if c.contains("[basalt]") {
                c.clone()
            } else {
                format!("[basalt]\ncmdline = \"{cmdline}\"\n{c}")
            }
        });
        crate::image::build_image(
            crate::kernel::Profile::Release,
            Some(kernel),
            config.as_deref(),
            &cmdline,
            &guests,
            false,
            &img,
        )?;
        img
    } else {
        kernel.to_path_buf()
    };
    let vm = Vm {
        platform: test.platform,
        kernel,
        smp: test.smp,
        mem_mb: test.mem_mb,
        cmdline,
        modules: test.modules.clone(),
        work_dir: work_dir(test),
    };
    let launch = launch(&vm)?;
    let outcome =
        emulator::run_captured(&launch, test.timeout, &stop_marker(test, &token), GRACE_AFTER_MARKER)?;
    let bochs = test.platform.is_bochs().then(|| {
        let log = std::fs::read(vm.work_dir.join(bochs::LOG_FILE)).unwrap_or_default();
        bochs::how_it_ended(&outcome.stderr, &String::from_utf8_lossy(&log))
    });
    Ok(Finished { outcome, token, bochs })
}

fn push_tail(out: &mut String, label: &str, text: &str, lines: usize) {
    let tail = last_lines(text, lines);
    if tail.is_empty() {
        let _ = writeln!(out, "    ({label} is empty)");
    }
    for line in tail {
        let _ = writeln!(out, "    {line}");
    }
}

/// The emulator's stderr without QEMU's warnings about CPUID bits TCG cannot emulate and
/// without Bochs's info-level lines (`00000000000i[PLUGIN] ...`).
fn useful_stderr(stderr: &str) -> String {
    let bochs_info = |line: &str| {
        let rest = line.trim_start_matches(|c: char| c.is_ascii_digit());
        rest.len() < line.len() && rest.starts_with("i[")
    };
    stderr
        .lines()
        .filter(|line| !line.contains("TCG doesn't support requested feature"))
        .filter(|line| !bochs_info(line))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// A test's whole report: `<name> ... ok (<seconds>s)`, or `... FAILED (<reason>)` with the
/// last serial lines (from `log`) and the emulator's useful stderr. Returns whether it passed
/// and the text, which is printed at once so that lines of tests running side by side never mix.
pub fn report(
    test: &IntegrationTest,
    verdict: &Result<(), String>,
    elapsed: Duration,
    serial: &str,
    stderr: &str,
    log: &Path,
) -> (bool, String) {
    let mut out = format!("{} ... ", test.full_name());
    let passed = match verdict {
        Ok(()) => {
            let _ = match &test.known_failure {
                Some(why) => {
                    writeln!(out, "ok ({:.1}s; known failure, as expected: {why})", elapsed.as_secs_f64())
                }
                None => writeln!(out, "ok ({:.1}s)", elapsed.as_secs_f64()),
            };
            true
        }
        Err(reason) => {
            let _ = match &test.known_failure {
                Some(why) => writeln!(out, "FAILED ({reason}; expected the known failure: {why})"),
                None => writeln!(out, "FAILED ({reason})"),
            };
            let _ = writeln!(out, "    --- last serial lines ({}):", log.display());
            push_tail(&mut out, "serial output", serial, TAIL_LINES);
            let stderr = useful_stderr(stderr);
            if !stderr.trim().is_empty() {
                let _ = writeln!(out, "    --- emulator stderr:");
                push_tail(&mut out, "stderr", &stderr, 10);
            }
            false
        }
    };
    (passed, out)
}

/// A test's report when it could not run: `<name> ... FAILED (<why>)`.
pub fn failed_line(test: &IntegrationTest, why: &str) -> String {
    format!("{} ... FAILED ({why})\n", test.full_name())
}

/// Prints a block of lines in one write (see `report`).
pub fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Runs one test and returns whether it passed and its report. `kernel` is the ELF, or the
/// reason there is none.
fn run_and_report(test: &IntegrationTest, kernel: Result<&Path, &str>) -> (bool, String) {
    let kernel = match kernel {
        Ok(kernel) => kernel,
        Err(why) => return (false, failed_line(test, why)),
    };
    match run_one(test, kernel) {
        Err(err) => (false, failed_line(test, &format!("{err:#}"))),
        Ok(Finished { outcome, token, bochs }) => {
            let verdict =
                check(test, &Observed { token: &token, serial: &outcome.serial, exit: outcome.exit, bochs });
            let log = work_dir(test).join("serial.log");
            report(test, &verdict, outcome.elapsed, &outcome.serial, &outcome.stderr, &log)
        }
    }
}

/// Runs `tests` one after another (they are CPU-bound) and prints each one's report when it
/// ends. Returns (passed, failed).
pub fn run_all(tests: &[IntegrationTest], kernel: Result<&Path, &str>) -> (u64, u64) {
    let (mut passed, mut failed) = (0, 0);
    for test in tests {
        let (ok, text) = run_and_report(test, kernel);
        emit(&text);
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    (passed, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "5eb0c0ffee";

    fn test(platform: Platform, expect: Expect) -> IntegrationTest {
        IntegrationTest::new(platform, "t", "test=t")
            .expect(expect)
            .must_contain(&["CPUs online: 2/2", "virtualization: VMX"])
    }

    const GOOD: &str = "boot\nCPUs online: 2/2\nvirtualization: VMX\nBASALT-TEST-RESULT 5eb0c0ffee: PASS\n";

    fn qemu(serial: &str, exit: Exit) -> Observed<'_> {
        Observed { token: TOKEN, serial, exit, bochs: None }
    }

    fn bochs(serial: &str, exit: Exit, end: BochsEnd) -> Observed<'_> {
        Observed { token: TOKEN, serial, exit, bochs: Some(end) }
    }

    #[test]
    fn markers() {
        let t = TOKEN;
        assert_eq!(find_marker("x\nBASALT-TEST-RESULT 5eb0c0ffee: PASS\r\n", t), Some(Reported::Pass));
        assert_eq!(
            find_marker("BASALT-TEST-RESULT 5eb0c0ffee: FAIL: no SVM\n", t),
            Some(Reported::Fail("no SVM".into()))
        );
        assert_eq!(
            find_marker("BASALT-TEST-RESULT 5eb0c0ffee: FAIL\n", t),
            Some(Reported::Fail(String::new()))
        );
        assert_eq!(find_marker("BASALT-TEST-RESULT 5eb0c0ffee: MAYBE\n", t), None);
        assert_eq!(find_marker("nothing here", t), None);
        // Not at the start of a line, another token, no token: not this boot's verdict.
        assert_eq!(find_marker("[cpu0] BASALT-TEST-RESULT 5eb0c0ffee: PASS\n", t), None);
        assert_eq!(find_marker(" BASALT-TEST-RESULT 5eb0c0ffee: PASS\n", t), None);
        assert_eq!(find_marker("BASALT-TEST-RESULT 5eb0c0ffef: PASS\n", t), None);
        assert_eq!(find_marker("BASALT-TEST-RESULT 5eb0c0ffee0: PASS\n", t), None);
        assert_eq!(find_marker("BASALT-TEST-RESULT: PASS\n", t), None);
        assert_eq!(find_marker("guest x| BASALT-TEST-RESULT 5eb0c0ffee: PASS\n", t), None);
        // The first real one counts.
        let two = "BASALT-TEST-RESULT 5eb0c0ffee: FAIL: first\nBASALT-TEST-RESULT 5eb0c0ffee: PASS\n";
        assert_eq!(find_marker(two, t), Some(Reported::Fail("first".into())));
    }

    #[test]
    fn tokens_are_fresh_hex() {
        let (a, b) = (fresh_token(), fresh_token());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
        assert_eq!(verdict_prefix("ab"), "BASALT-TEST-RESULT ab: ");
    }

    #[test]
    fn guest_prefix_matches_the_kernel() {
        let source = std::fs::read_to_string(crate::util::workspace_root().join("hypervisor/src/console.rs"))
            .expect("hypervisor/src/console.rs");
        let decl = format!("pub const GUEST_LINE_PREFIX: &str = {GUEST_LINE_PREFIX:?};");
        assert!(source.contains(&decl), "the kernel's guest line prefix is not {GUEST_LINE_PREFIX:?}");
    }

    #[test]
    fn pass_on_bochs_needs_basalts_shutdown() {
        let t = test(Platform::BochsVmx, Expect::Pass);
        assert_eq!(check(&t, &bochs(GOOD, Exit::Exited(Some(1)), BochsEnd::Shutdown)), Ok(()));
        // Killed by the harness after the verdict (the grace period): the verdict stands.
        assert_eq!(check(&t, &bochs(GOOD, Exit::KilledAfterMarker, BochsEnd::Unknown)), Ok(()));
        let err = check(&t, &bochs(GOOD, Exit::Exited(Some(1)), BochsEnd::Unknown)).unwrap_err();
        assert!(err.contains("without Basalt's shutdown request"), "{err}");
        assert!(err.contains("Shutdown port: shutdown requested"), "{err}");
        let died = BochsEnd::Died("[CPU0  ] exception(): 3rd (13) exception with no resolution".into());
        let err = check(&t, &bochs(GOOD, Exit::Exited(Some(1)), died.clone())).unwrap_err();
        assert!(err.contains("Bochs ended by itself"), "{err}");
        assert!(err.contains("3rd (13) exception with no resolution"), "{err}");
        // No verdict and Bochs died: the reason quotes Bochs.
        let serial = "CPUs online: 2/2\nvirtualization: VMX\n";
        let err = check(&t, &bochs(serial, Exit::Exited(Some(1)), died)).unwrap_err();
        assert!(err.starts_with("emulator exited with status 1 and no result marker"), "{err}");
        assert!(err.contains("3rd (13) exception"), "{err}");
        assert!(!err.contains("SHUTDOWN intercept"), "the SVM hint is for Bochs's SVM only: {err}");
        let svm = test(Platform::BochsSvm, Expect::Pass);
        let err = check(
            &svm,
            &bochs(
                serial,
                Exit::Exited(Some(1)),
                BochsEnd::Died("[CPU0  ] exception(): 3rd (13) exception with no resolution".into()),
            ),
        )
        .unwrap_err();
        assert!(err.contains("Bochs 2.7 does not implement the SVM SHUTDOWN intercept"), "{err}");
        assert!(check(&t, &bochs(GOOD, Exit::TimedOut(Duration::from_secs(9)), BochsEnd::Unknown)).is_err());
    }

    #[test]
    fn pass_on_qemu_needs_matching_status() {
        let t = test(Platform::QemuSvm, Expect::Pass);
        assert_eq!(check(&t, &qemu(GOOD, Exit::Exited(Some(33)))), Ok(()));
        let err = check(&t, &qemu(GOOD, Exit::Exited(Some(35)))).unwrap_err();
        assert!(err.contains("expected status 33"), "{err}");
        assert!(check(&t, &qemu(GOOD, Exit::KilledAfterMarker)).is_err());
    }

    #[test]
    fn expected_failure() {
        let mut t = test(Platform::QemuSvm, Expect::Fail);
        t.must_contain = vec!["panicked at".into()];
        let serial = "panicked at hypervisor/src/main.rs:3:5\nBASALT-TEST-RESULT 5eb0c0ffee: FAIL: panic\n";
        assert_eq!(check(&t, &qemu(serial, Exit::Exited(Some(35)))), Ok(()));
        assert_eq!(
            check(&t, &qemu(GOOD, Exit::Exited(Some(33)))).unwrap_err(),
            "expected FAIL, kernel reported PASS"
        );
    }

    #[test]
    fn unexpected_failure_reports_reason() {
        let t = test(Platform::BochsSvm, Expect::Pass);
        let serial = "BASALT-TEST-RESULT 5eb0c0ffee: FAIL: VMRUN failed\n";
        assert_eq!(
            check(&t, &bochs(serial, Exit::Exited(Some(1)), BochsEnd::Shutdown)).unwrap_err(),
            "expected PASS, kernel reported FAIL: VMRUN failed"
        );
    }

    #[test]
    fn missing_substrings() {
        let t = test(Platform::BochsVmx, Expect::Pass);
        let serial = "CPUs online: 1/2\nvirtualization: VMX\nBASALT-TEST-RESULT 5eb0c0ffee: PASS\n";
        assert_eq!(
            check(&t, &bochs(serial, Exit::Exited(Some(1)), BochsEnd::Shutdown)).unwrap_err(),
            "serial output lacks \"CPUs online: 2/2\""
        );
    }

    #[test]
    fn missing_marker() {
        let t = test(Platform::QemuSvm, Expect::Pass);
        let serial = "CPUs online: 2/2\nvirtualization: VMX\n";
        assert_eq!(
            check(&t, &qemu(serial, Exit::TimedOut(Duration::from_secs(60)))).unwrap_err(),
            "no result marker (timeout after 60s)"
        );
        assert_eq!(
            check(&t, &qemu(serial, Exit::Exited(Some(0)))).unwrap_err(),
            "emulator exited with status 0 and no result marker"
        );
    }

    /// What a hostile guest may leave in the serial log (forge.rs prints these, escaped; here
    /// they are even raw), around Basalt's real verdict.
    fn forged_log(verdict: &str) -> String {
        format!(
            "[INFO  cpu0] VM forge: starting\n\
             guest forge| BASALT-TEST-RESULT: PASS\n\
             guest forge| BASALT-TEST-RESULT 5eb0c0ffee: PASS\n\
             guest forge| VM forge: PASS\n\
             guest forge| VM cpuid: PASS\n\
             guest forge| first line\\nBASALT-TEST-RESULT: PASS\\nVM forge: PASS\n\
             BASALT-TEST-RESULT: PASS\n\
             BASALT-TEST-RESULT 0123456789abcdef: PASS\n\
             [INFO  cpu0] BASALT-TEST-RESULT 5eb0c0ffee: PASS\n\
             VM forge: FAIL: guest assertion failed at tests/src/bin/forge.rs:20: no\n\
             [INFO  cpu0] VM cpuid: starting\n\
             guest cpuid| vendor \"GenuineIntel\"\n\
             VM cpuid: PASS\n\
             {verdict}"
        )
    }

    #[test]
    fn forged_verdicts_do_not_count() {
        let isolation = crate::tests_table::isolation_console(Platform::QemuSvm, 20);
        let serial = forged_log("BASALT-TEST-RESULT 5eb0c0ffee: FAIL: 1 of 2 VMs failed\n");
        let guest_text: Vec<&str> = isolation.guest_must_contain.iter().map(String::as_str).collect();
        let t = IntegrationTest::new(Platform::QemuSvm, "forge", "test=guests")
            .expect(Expect::Fail)
            .must_contain(&[
                "VM forge: FAIL: guest assertion failed at tests/src/bin/forge.rs:20",
                "VM cpuid: PASS",
            ])
            .must_not_contain(&["VM forge: PASS", "VM cpuid: FAIL"])
            .guest_must_contain(&guest_text[2..4]);
        assert_eq!(find_marker(&serial, TOKEN), Some(Reported::Fail("1 of 2 VMs failed".into())));
        assert_eq!(check(&t, &qemu(&serial, Exit::Exited(Some(35)))), Ok(()));
        // The forgeries do not make it pass.
        let pass = IntegrationTest { expect: Expect::Pass, ..t.clone() };
        assert_eq!(
            check(&pass, &qemu(&serial, Exit::Exited(Some(35)))).unwrap_err(),
            "expected PASS, kernel reported FAIL: 1 of 2 VMs failed"
        );
        // Without Basalt's verdict, there is none.
        let silent = forged_log("");
        let err = check(&t, &qemu(&silent, Exit::TimedOut(Duration::from_secs(60)))).unwrap_err();
        assert_eq!(err, "no result marker (timeout after 60s)");
        // A guest line is never Basalt's: "VM forge: PASS" there does not satisfy must_contain.
        let wants_forge_pass = t.clone().must_contain(&["VM forge: PASS"]);
        assert_eq!(
            check(&wants_forge_pass, &qemu(&serial, Exit::Exited(Some(35)))).unwrap_err(),
            "serial output lacks \"VM forge: PASS\""
        );
        // Guest text is found only on guest lines.
        let wants_guest = t.clone().guest_must_contain(&["VM cpuid: PASS\n", "guest nobody| "]);
        let err = check(&wants_guest, &qemu(&serial, Exit::Exited(Some(35)))).unwrap_err();
        assert_eq!(err, "serial output lacks guest line \"guest nobody| \"");
    }

    #[test]
    fn must_not_contain_looks_at_basalts_lines_and_raw_bytes_everywhere() {
        let t = test(Platform::QemuSvm, Expect::Pass).must_not_contain(&["VM demo: FAIL"]);
        let guest_says = format!("guest x| VM demo: FAIL\n{GOOD}");
        assert_eq!(check(&t, &qemu(&guest_says, Exit::Exited(Some(33)))), Ok(()));
        let basalt_says = format!("VM demo: FAIL: x\n{GOOD}");
        assert!(check(&t, &qemu(&basalt_says, Exit::Exited(Some(33)))).unwrap_err().contains("contains"));
        let raw = t.serial_must_not_contain(&["\u{1b}"]);
        let escape = format!("guest x| clear \u{1b}[2J\n{GOOD}");
        assert_eq!(
            check(&raw, &qemu(&escape, Exit::Exited(Some(33)))).unwrap_err(),
            "serial output contains \"\\u{1b}\""
        );
        assert_eq!(check(&raw, &qemu(GOOD, Exit::Exited(Some(33)))), Ok(()));
    }

    #[test]
    fn lines_are_split_by_whose_they_are() {
        let serial = "[INFO  cpu0] a\r\nguest v| b\nVM v: PASS\n";
        assert_eq!(basalt_lines(serial), "[INFO  cpu0] a\nVM v: PASS\n");
        assert_eq!(guest_lines(serial), "guest v| b\n");
        assert!(is_guest_line("guest v| b") && !is_guest_line(" guest v| b"));
    }

    #[test]
    fn lines_in_order() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let text = "VM a: starting\nVM b: starting\nVM b: PASS\nVM a: FAIL\n";
        assert_eq!(out_of_order(&v(&["VM a: starting", "VM b: PASS", "VM a: FAIL"]), text), None);
        assert_eq!(out_of_order(&v(&["VM a: FAIL", "VM b: PASS"]), text), Some("VM b: PASS"));
        assert_eq!(out_of_order(&v(&[]), text), None);
    }

    #[test]
    fn stderr_noise_is_dropped() {
        let stderr = "qemu-system-x86_64: warning: TCG doesn't support requested feature: x\n\
                      00000000000i[PLUGIN] loaded plugin libbx_serial.so\n\
                      [UNMAP ] Shutdown port: shutdown requested\n\
                      00001234567e[CPU0  ] VMLAUNCH: invalid guest state\n";
        assert_eq!(
            useful_stderr(stderr),
            "[UNMAP ] Shutdown port: shutdown requested\n\
             00001234567e[CPU0  ] VMLAUNCH: invalid guest state\n"
        );
    }

    #[test]
    fn stalls() {
        let t = IntegrationTest::new(Platform::Uefi, "t", "test=t")
            .expect(Expect::Stalls)
            .must_contain(&["line 3: bad", "not started"])
            .must_not_contain(&["boot summary"]);
        assert_eq!(stop_marker(&t, TOKEN), "not started");
        let serial = "error: line 3: bad\nBasalt was not started\n";
        assert_eq!(check(&t, &qemu(serial, Exit::KilledAfterMarker)), Ok(()));
        assert!(check(&t, &qemu(serial, Exit::Exited(Some(0)))).unwrap_err().contains("expected it to wait"));
        assert!(check(&t, &qemu("line 3: bad\n", Exit::TimedOut(Duration::from_secs(60))))
            .unwrap_err()
            .contains("lacks"));
        let started = format!("{serial}boot summary\n");
        assert!(check(&t, &qemu(&started, Exit::KilledAfterMarker))
            .unwrap_err()
            .contains("contains \"boot summary\""));
        let reported = format!("{serial}BASALT-TEST-RESULT: PASS\n");
        assert!(check(&t, &qemu(&reported, Exit::KilledAfterMarker)).is_err());
        assert_eq!(
            stop_marker(&test(Platform::QemuSvm, Expect::Pass), TOKEN),
            "BASALT-TEST-RESULT 5eb0c0ffee: "
        );
    }

    #[test]
    fn ends() {
        let t = IntegrationTest::new(Platform::QemuSvm, "t", "exit")
            .expect(Expect::Ends)
            .must_contain(&["stopped"]);
        let serial = "VM demo: PASS\nevery VM has stopped\n";
        assert_eq!(check(&t, &qemu(serial, Exit::Exited(Some(QEMU_PASS_STATUS)))), Ok(()));
        assert!(check(&t, &qemu(serial, Exit::TimedOut(Duration::from_secs(60))))
            .unwrap_err()
            .contains("not by Basalt"));
        assert!(check(&t, &qemu("boot\n", Exit::Exited(Some(QEMU_PASS_STATUS))))
            .unwrap_err()
            .contains("lacks"));
        let marked = format!("{serial}BASALT-TEST-RESULT {TOKEN}: PASS\n");
        assert!(check(&t, &qemu(&marked, Exit::Exited(Some(QEMU_PASS_STATUS))))
            .unwrap_err()
            .contains("marker"));
    }

    #[test]
    fn filter() {
        let all = crate::tests_table::all();
        let n = all.len();
        assert_eq!(select(all.clone(), None).len(), n);
        assert!(select(all.clone(), Some("vmx")).iter().all(|t| t.platform == Platform::BochsVmx));
        assert_eq!(select(all.clone(), Some("svm: panic")).len(), 1);
        let cpuid = select(all.clone(), Some(": cpuid"));
        assert_eq!(
            cpuid.iter().map(|t| t.full_name()).collect::<Vec<_>>(),
            ["svm: cpuid", "svm-nrips: cpuid", "vmx: cpuid", "nested-svm: cpuid"]
        );
        let isolation = select(all, Some(": isolation-console"));
        assert_eq!(
            isolation.iter().map(|t| t.full_name()).collect::<Vec<_>>(),
            [
                "svm: isolation-console",
                "svm-nrips: isolation-console",
                "vmx: isolation-console",
                "nested-svm: isolation-console"
            ]
        );
    }
}
