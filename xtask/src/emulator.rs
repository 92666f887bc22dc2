//! Starting an emulator: on the terminal (`cargo xtask run`) or captured under a time limit
//! (`cargo xtask test`).

use crate::util::display_command;
use anyhow::{Context, Result};
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Where the emulator writes the guest's serial port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SerialOut {
    /// To its standard output (QEMU `-serial stdio`).
    Stdout,
    /// To `Launch::serial_log` itself (Bochs `com1: mode=file`).
    File,
}

/// An emulator command ready to start.
#[derive(Clone, Debug)]
pub struct Launch {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub serial: SerialOut,
    /// The serial log: written by the emulator (`SerialOut::File`) or by us from its stdout.
    pub serial_log: PathBuf,
}

impl Launch {
    /// The command as a shell line, with a `cd` when it relies on its working directory.
    pub fn display(&self) -> String {
        let cmd = display_command(&self.program, &self.args);
        match self.serial {
            SerialOut::Stdout => cmd,
            SerialOut::File => format!("(cd {} && {cmd} </dev/null)", self.cwd.display()),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).current_dir(&self.cwd).stdin(Stdio::null());
        cmd
    }

    fn spawn(&self, mut cmd: Command) -> Result<Child> {
        cmd.spawn().with_context(|| format!("cannot start {}", self.program))
    }

    /// The emulator's own output file when its stdout is not the serial port.
    fn console_log(&self) -> PathBuf {
        self.cwd.join(format!("{}.stdout", self.program))
    }
}

/// How an emulator run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited by itself: the status code, `None` if a signal killed it.
    Exited(Option<i32>),
    /// It ran past the time limit and was killed.
    TimedOut(Duration),
    /// It printed the result marker but did not exit within the grace period; it was killed.
    KilledAfterMarker,
}

/// A captured run.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub exit: Exit,
    pub serial: String,
    pub elapsed: Duration,
    /// The emulator's own stderr, for diagnostics.
    pub stderr: String,
}

/// Runs with the serial port on the terminal. Returns the emulator's exit status.
pub fn run_interactive(launch: &Launch) -> Result<Option<i32>> {
    println!("xtask: {}", launch.display());
    match launch.serial {
        SerialOut::Stdout => {
            let status = launch.command().stdin(Stdio::inherit()).status()?;
            Ok(status.code())
        }
        SerialOut::File => {
            let _ = fs::remove_file(&launch.serial_log);
            let console = File::create(launch.console_log())?;
            let mut cmd = launch.command();
            cmd.stdout(console.try_clone()?).stderr(console);
            let mut child = launch.spawn(cmd)?;
            println!("xtask: {} console output goes to {}", launch.program, launch.console_log().display());
            let mut tail = Tail::new(&launch.serial_log);
            let stdout = std::io::stdout();
            let status = loop {
                tail.copy_new(&mut stdout.lock())?;
                if let Some(status) = child.try_wait()? {
                    break status;
                }
                sleep(Duration::from_millis(50));
            };
            tail.copy_new(&mut stdout.lock())?;
            Ok(status.code())
        }
    }
}

/// Runs with the serial port captured to the serial log, for at most `timeout`. Once the
/// serial log contains `marker`, the emulator gets `grace` to exit by itself.
pub fn run_captured(launch: &Launch, timeout: Duration, marker: &str, grace: Duration) -> Result<Outcome> {
    let _ = fs::remove_file(&launch.serial_log);
    let stderr_path = launch.cwd.join(format!("{}.stderr", launch.program));
    let mut cmd = launch.command();
    match launch.serial {
        SerialOut::Stdout => cmd.stdout(File::create(&launch.serial_log)?),
        SerialOut::File => cmd.stdout(File::create(launch.console_log())?),
    };
    cmd.stderr(File::create(&stderr_path)?);

    let start = Instant::now();
    let mut child = launch.spawn(cmd)?;
    let mut marker_seen: Option<Instant> = None;
    let mut last_check = start;
    let exit = loop {
        if let Some(status) = child.try_wait()? {
            break Exit::Exited(status.code());
        }
        let now = Instant::now();
        if now - start >= timeout {
            kill(&mut child);
            break Exit::TimedOut(timeout);
        }
        if now - last_check >= Duration::from_millis(250) {
            last_check = now;
            match marker_seen {
                None if complete_line_contains(&read_lossy(&launch.serial_log), marker) => {
                    marker_seen = Some(now);
                }
                Some(seen) if now - seen >= grace => {
                    kill(&mut child);
                    break Exit::KilledAfterMarker;
                }
                _ => {}
            }
        }
        sleep(Duration::from_millis(20));
    };
    Ok(Outcome {
        exit,
        serial: read_lossy(&launch.serial_log),
        elapsed: start.elapsed(),
        stderr: read_lossy(&stderr_path),
    })
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn read_lossy(path: &Path) -> String {
    fs::read(path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
}

/// Whether a newline-terminated line of `text` contains `needle`.
fn complete_line_contains(text: &str, needle: &str) -> bool {
    match text.rfind('\n') {
        Some(end) => text[..end].contains(needle),
        None => false,
    }
}

/// Follows a file that another process appends to.
struct Tail {
    path: PathBuf,
    offset: u64,
}

impl Tail {
    fn new(path: &Path) -> Self {
        Tail { path: path.to_path_buf(), offset: 0 }
    }

    fn copy_new(&mut self, out: &mut impl Write) -> Result<()> {
        let Ok(mut file) = File::open(&self.path) else {
            return Ok(()); // not created yet
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        out.write_all(&buf)?;
        out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_needs_a_complete_line() {
        assert!(!complete_line_contains("BASALT-TEST-RESULT: FA", "BASALT-TEST-RESULT:"));
        assert!(complete_line_contains("x\nBASALT-TEST-RESULT: PASS\n", "BASALT-TEST-RESULT:"));
        assert!(!complete_line_contains("", "x"));
    }
}
