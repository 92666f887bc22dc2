//! Integration tests: boot the kernel with `test=<name>` and judge its serial output.

use crate::emulator::{self, Exit, Outcome};
use crate::platform::{Platform, Vm};
use crate::tests_table::{Expect, IntegrationTest};
use crate::util::{last_lines, xtask_dir};
use crate::{bochs, qemu};
use anyhow::Result;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// The line prefix with which the kernel reports a test's result.
pub const MARKER: &str = "BASALT-TEST-RESULT: ";

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

/// The first result marker in the serial output.
pub fn find_marker(serial: &str) -> Option<Reported> {
    serial.lines().find_map(|line| {
        let rest = line.trim_end_matches('\r').split_once(MARKER)?.1.trim();
        if rest == "PASS" {
            Some(Reported::Pass)
        } else {
            let reason = rest.strip_prefix("FAIL")?;
            let reason = reason.strip_prefix(':').unwrap_or(reason).trim();
            Some(Reported::Fail(reason.to_string()))
        }
    })
}

fn describe_exit(exit: Exit) -> String {
    match exit {
        Exit::Exited(Some(code)) => format!("status {code}"),
        Exit::Exited(None) => "a signal".into(),
        Exit::TimedOut(t) => format!("timeout after {}s", t.as_secs()),
        Exit::KilledAfterMarker => "killed after the result marker".into(),
    }
}

/// Judges one run: `Ok` if it passed, or the reason it failed.
pub fn check(test: &IntegrationTest, serial: &str, exit: Exit) -> Result<(), String> {
    let unwanted: Vec<String> = test
        .must_not_contain
        .iter()
        .filter(|needle| serial.contains(needle.as_str()))
        .map(|needle| format!("{needle:?}"))
        .collect();
    if !unwanted.is_empty() {
        return Err(format!("serial output contains {}", unwanted.join(", ")));
    }
    if test.expect == Expect::Stalls {
        return check_stall(test, serial, exit);
    }
    let Some(reported) = find_marker(serial) else {
        return Err(match exit {
            Exit::TimedOut(t) => format!("no result marker (timeout after {}s)", t.as_secs()),
            Exit::Exited(Some(code)) => {
                format!("emulator exited with status {code} and no result marker")
            }
            other => format!("emulator ended by {} and no result marker", describe_exit(other)),
        });
    };
    match (test.expect, &reported) {
        (Expect::Pass, Reported::Fail(reason)) => {
            return Err(format!("expected PASS, kernel reported FAIL: {reason}"));
        }
        (Expect::Fail, Reported::Pass) => {
            return Err("expected FAIL, kernel reported PASS".into());
        }
        (Expect::Stalls, _) => unreachable!("handled by check_stall"),
        _ => {}
    }
    let missing: Vec<String> = test
        .must_contain
        .iter()
        .filter(|needle| !serial.contains(needle.as_str()))
        .map(|needle| format!("{needle:?}"))
        .collect();
    if !missing.is_empty() {
        return Err(format!("serial output lacks {}", missing.join(", ")));
    }
    if !test.platform.is_bochs() {
        let expected = match reported {
            Reported::Pass => QEMU_PASS_STATUS,
            Reported::Fail(_) => QEMU_FAIL_STATUS,
        };
        if exit != Exit::Exited(Some(expected)) {
            return Err(format!(
                "result marker printed, but QEMU ended by {} (expected status {expected})",
                describe_exit(exit)
            ));
        }
    }
    // Bochs's exit status is always 1; if the kernel printed its result but Bochs did not shut
    // down, the result still stands.
    Ok(())
}

/// Judges an `Expect::Stalls` run: every expected text, then no end of its own.
fn check_stall(test: &IntegrationTest, serial: &str, exit: Exit) -> Result<(), String> {
    let missing: Vec<String> = test
        .must_contain
        .iter()
        .filter(|needle| !serial.contains(needle.as_str()))
        .map(|needle| format!("{needle:?}"))
        .collect();
    if !missing.is_empty() {
        return Err(format!("serial output lacks {} ({})", missing.join(", "), describe_exit(exit)));
    }
    if find_marker(serial).is_some() {
        return Err("expected a stop before any test result, but one was reported".into());
    }
    match exit {
        Exit::KilledAfterMarker => Ok(()),
        other => Err(format!(
            "expected it to wait after the last expected text; it ended by {}",
            describe_exit(other)
        )),
    }
}

/// The line whose appearance starts the grace period: the result marker, or for a run
/// expected to stall, the last text it must print.
fn stop_marker(test: &IntegrationTest) -> &str {
    match (test.expect, test.must_contain.last()) {
        (Expect::Stalls, Some(last)) => last,
        _ => MARKER,
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
        Platform::QemuSvm | Platform::Kvm | Platform::Uefi => qemu::launch(vm),
    }
}

fn run_one(test: &IntegrationTest, kernel: &Path) -> Result<Outcome> {
    let kernel = if test.platform == Platform::Uefi {
        // The kernel, the loader, the test's guests and its basalt.cfg on a fresh disk image.
        let img = work_dir(test).join("basalt.img");
        let guests: Vec<_> = test.modules.iter().map(|(path, _)| path.clone()).collect();
        crate::image::build_image(
            crate::kernel::Profile::Release,
            Some(kernel),
            test.uefi_config.as_deref(),
            &test.cmdline,
            &guests,
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
        cmdline: test.cmdline.clone(),
        modules: test.modules.clone(),
        work_dir: work_dir(test),
    };
    let launch = launch(&vm)?;
    emulator::run_captured(&launch, test.timeout, stop_marker(test), GRACE_AFTER_MARKER)
}

fn print_tail(label: &str, text: &str, lines: usize) {
    let tail = last_lines(text, lines);
    if tail.is_empty() {
        println!("    ({label} is empty)");
    }
    for line in tail {
        println!("    {line}");
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

/// Runs `tests` one after another (they are CPU-bound, and Bochs instances must not overlap).
/// `kernel` is the ELF, or the reason there is none. Returns (passed, failed).
pub fn run_all(tests: &[IntegrationTest], kernel: Result<&Path, &str>) -> (u64, u64) {
    let (mut passed, mut failed) = (0, 0);
    for test in tests {
        print!("{} ... ", test.full_name());
        let _ = std::io::stdout().flush();
        let kernel = match kernel {
            Ok(kernel) => kernel,
            Err(why) => {
                println!("FAILED ({why})");
                failed += 1;
                continue;
            }
        };
        match run_one(test, kernel) {
            Err(err) => {
                println!("FAILED ({err:#})");
                failed += 1;
            }
            Ok(outcome) => match check(test, &outcome.serial, outcome.exit) {
                Ok(()) => {
                    println!("ok ({:.1}s)", outcome.elapsed.as_secs_f64());
                    passed += 1;
                }
                Err(reason) => {
                    println!("FAILED ({reason})");
                    println!("    --- last serial lines ({}):", work_dir(test).join("serial.log").display());
                    print_tail("serial output", &outcome.serial, TAIL_LINES);
                    let stderr = useful_stderr(&outcome.stderr);
                    if !stderr.trim().is_empty() {
                        println!("    --- emulator stderr:");
                        print_tail("stderr", &stderr, 10);
                    }
                    failed += 1;
                }
            },
        }
    }
    (passed, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(platform: Platform, expect: Expect) -> IntegrationTest {
        IntegrationTest::new(platform, "t", "test=t")
            .expect(expect)
            .must_contain(&["CPUs online: 2/2", "virtualization: VMX"])
    }

    const GOOD: &str = "boot\nCPUs online: 2/2\nvirtualization: VMX\nBASALT-TEST-RESULT: PASS\n";

    #[test]
    fn markers() {
        assert_eq!(find_marker("x\nBASALT-TEST-RESULT: PASS\r\n"), Some(Reported::Pass));
        assert_eq!(find_marker("BASALT-TEST-RESULT: FAIL: no SVM\n"), Some(Reported::Fail("no SVM".into())));
        assert_eq!(find_marker("BASALT-TEST-RESULT: FAIL\n"), Some(Reported::Fail(String::new())));
        assert_eq!(find_marker("[cpu0] BASALT-TEST-RESULT: PASS\n"), Some(Reported::Pass));
        assert_eq!(find_marker("BASALT-TEST-RESULT: MAYBE\n"), None);
        assert_eq!(find_marker("nothing here"), None);
    }

    #[test]
    fn pass_on_bochs_ignores_exit_status() {
        let t = test(Platform::BochsVmx, Expect::Pass);
        assert_eq!(check(&t, GOOD, Exit::Exited(Some(1))), Ok(()));
        assert_eq!(check(&t, GOOD, Exit::KilledAfterMarker), Ok(()));
    }

    #[test]
    fn pass_on_qemu_needs_matching_status() {
        let t = test(Platform::QemuSvm, Expect::Pass);
        assert_eq!(check(&t, GOOD, Exit::Exited(Some(33))), Ok(()));
        let err = check(&t, GOOD, Exit::Exited(Some(35))).unwrap_err();
        assert!(err.contains("expected status 33"), "{err}");
        assert!(check(&t, GOOD, Exit::KilledAfterMarker).is_err());
    }

    #[test]
    fn expected_failure() {
        let mut t = test(Platform::QemuSvm, Expect::Fail);
        t.must_contain = vec!["panicked at".into()];
        let serial = "panicked at hypervisor/src/main.rs:3:5\nBASALT-TEST-RESULT: FAIL: panic\n";
        assert_eq!(check(&t, serial, Exit::Exited(Some(35))), Ok(()));
        assert_eq!(
            check(&t, GOOD, Exit::Exited(Some(33))).unwrap_err(),
            "expected FAIL, kernel reported PASS"
        );
    }

    #[test]
    fn unexpected_failure_reports_reason() {
        let t = test(Platform::BochsSvm, Expect::Pass);
        let serial = "BASALT-TEST-RESULT: FAIL: VMRUN failed\n";
        assert_eq!(
            check(&t, serial, Exit::Exited(Some(1))).unwrap_err(),
            "expected PASS, kernel reported FAIL: VMRUN failed"
        );
    }

    #[test]
    fn missing_substrings() {
        let t = test(Platform::BochsVmx, Expect::Pass);
        let serial = "CPUs online: 1/2\nvirtualization: VMX\nBASALT-TEST-RESULT: PASS\n";
        assert_eq!(
            check(&t, serial, Exit::Exited(Some(1))).unwrap_err(),
            "serial output lacks \"CPUs online: 2/2\""
        );
    }

    #[test]
    fn missing_marker() {
        let t = test(Platform::QemuSvm, Expect::Pass);
        let serial = "CPUs online: 2/2\nvirtualization: VMX\n";
        assert_eq!(
            check(&t, serial, Exit::TimedOut(Duration::from_secs(60))).unwrap_err(),
            "no result marker (timeout after 60s)"
        );
        assert_eq!(
            check(&t, serial, Exit::Exited(Some(0))).unwrap_err(),
            "emulator exited with status 0 and no result marker"
        );
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
        assert_eq!(stop_marker(&t), "not started");
        let serial = "error: line 3: bad\nBasalt was not started\n";
        assert_eq!(check(&t, serial, Exit::KilledAfterMarker), Ok(()));
        assert!(check(&t, serial, Exit::Exited(Some(0))).unwrap_err().contains("expected it to wait"));
        assert!(check(&t, "line 3: bad\n", Exit::TimedOut(Duration::from_secs(60)))
            .unwrap_err()
            .contains("lacks"));
        let started = format!("{serial}boot summary\n");
        assert!(check(&t, &started, Exit::KilledAfterMarker)
            .unwrap_err()
            .contains("contains \"boot summary\""));
        let reported = format!("{serial}BASALT-TEST-RESULT: PASS\n");
        assert!(check(&t, &reported, Exit::KilledAfterMarker).is_err());
        assert_eq!(stop_marker(&test(Platform::QemuSvm, Expect::Pass)), MARKER);
    }

    #[test]
    fn filter() {
        let all = crate::tests_table::all();
        let n = all.len();
        assert_eq!(select(all.clone(), None).len(), n);
        assert!(select(all.clone(), Some("vmx")).iter().all(|t| t.platform == Platform::BochsVmx));
        assert_eq!(select(all.clone(), Some("svm: panic")).len(), 1);
        let cpuid = select(all, Some(": cpuid"));
        assert_eq!(
            cpuid.iter().map(|t| t.full_name()).collect::<Vec<_>>(),
            ["svm: cpuid", "svm-nrips: cpuid", "vmx: cpuid"]
        );
    }
}
