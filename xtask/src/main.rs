//! `cargo xtask`: build, run and test Basalt.
//!
//! - `cargo xtask build [--debug]`
//! - `cargo xtask run [--bochs | --bochs-svm | --kvm] [--smp N] [--mem MB] [--debug] [--guest FILE]
//!   [-- CMDLINE...]`: boots the demo guest unless given `--guest` or `--module`
//! - `cargo xtask test [FILTER] [--host-only | --no-host] [--nested | --kvm] [--list]`
//! - `cargo xtask image [--config FILE] [--guest FILE]... [-o PATH]`: a UEFI USB-stick image.
//! - `cargo xtask run --uefi`: boot that image in QEMU with OVMF, from a USB stick.
//! - `cargo xtask setup`: install every host tool xtask knows about.
//! - `cargo xtask bench [--compare FILE] [--no-bochs]`: instruction counts of the exit paths,
//!   a whole-guest figure and the memory footprint; writes target/bench.json.

mod bare;
mod bench;
mod bochs;
mod cpio;
mod emulator;
mod guests;
mod host_tests;
mod image;
mod integration;
mod kernel;
mod kvm;
mod linux_guest;
mod multiboot_guest;
mod nested;
mod platform;
mod qemu;
mod tests_table;
mod tools;
mod util;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use kernel::Profile;
use platform::{Platform, Vm};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = "Build, run and test Basalt")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the kernel (release unless --debug) and print the ELF's path.
    Build {
        #[arg(long)]
        debug: bool,
    },
    /// Build the kernel and boot it with the serial port on this terminal.
    Run(RunArgs),
    /// Run the host unit tests, then the integration tests on the emulators.
    Test(TestArgs),
    /// Check for every host tool (QEMU, Bochs, GRUB, OVMF) and install what is missing.
    Setup,
    /// Write a bootable UEFI disk image (GPT, FAT32 ESP): loader, kernel, config, guests.
    Image(ImageArgs),
    /// Measure exit round trips in instructions (QEMU icount, Bochs), a whole guest and the
    /// memory footprint; print the table and write target/bench.json.
    Bench(BenchArgs),
    /// Boot one guest directly in QEMU TCG (no Basalt) on QEMU's PC device models; passes on
    /// the guest's Done (debug-exit status 33).
    Bare {
        /// The guest's name (a bin of tests/src/bin).
        guest: String,
        /// Number of CPUs.
        #[arg(long, default_value_t = 1)]
        smp: u32,
        /// The QEMU machine: q35 or pc.
        #[arg(long, default_value = "q35")]
        machine: String,
    },
}

#[derive(Args)]
struct BenchArgs {
    /// Also print each number's change against this earlier target/bench.json.
    #[arg(long, value_name = "FILE")]
    compare: Option<PathBuf>,
    /// Skip the Bochs (VMX) run.
    #[arg(long)]
    no_bochs: bool,
}

#[derive(Args)]
struct ImageArgs {
    /// The boot configuration to put in basalt/basalt.cfg (default: `cmdline = log=info` and
    /// one `vm` line per --guest; with neither, the built-in demo guest).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A guest image to copy into basalt/ (repeatable).
    #[arg(long = "guest", value_name = "FILE")]
    guests: Vec<PathBuf>,
    /// Where to write the image.
    #[arg(short = 'o', long = "output", value_name = "PATH", default_value = image::DEFAULT_OUTPUT)]
    output: PathBuf,
    #[command(flatten)]
    profile: ProfileArgs,
    /// Put this kernel ELF in the image instead of building one.
    #[arg(long, value_name = "ELF")]
    kernel: Option<PathBuf>,
    /// Also put the Linux VM of `cargo xtask run --linux` on the stick: Debian's kernel
    /// (linux-image-amd64) as basalt/vmlinuz, the busybox initramfs as basalt/initramfs.cpio,
    /// and its `[vm linux]` section in the default basalt.cfg.
    #[arg(long)]
    linux: bool,
}

#[derive(Args)]
struct ProfileArgs {
    /// Build the kernel with the release profile (the default).
    #[arg(long, conflicts_with = "debug")]
    release: bool,
    /// Build the kernel with the dev profile.
    #[arg(long)]
    debug: bool,
}

#[derive(Args)]
struct RunArgs {
    /// Bochs with Intel VMX (corei7_skylake_x). Default: QEMU TCG with AMD SVM (EPYC).
    #[arg(long, group = "platform")]
    bochs: bool,
    /// Bochs with AMD SVM and NRIPS (ryzen).
    #[arg(long, group = "platform")]
    bochs_svm: bool,
    /// QEMU on this machine's KVM (`-accel kvm -cpu host`; needs a /dev/kvm that offers VMX or
    /// SVM to guests, i.e. nested virtualization).
    #[arg(long, group = "platform")]
    kvm: bool,
    /// QEMU (TCG, EPYC) with OVMF, booting the `cargo xtask image` disk as a USB stick.
    #[arg(long, group = "platform")]
    uefi: bool,
    /// Number of CPUs.
    #[arg(long, default_value_t = 4)]
    smp: u32,
    /// Memory in MiB.
    #[arg(long, default_value_t = 512)]
    mem: u32,
    #[command(flatten)]
    profile: ProfileArgs,
    /// Boot this kernel ELF instead of building one.
    #[arg(long, value_name = "ELF")]
    kernel: Option<PathBuf>,
    /// A multiboot module: FILE or "FILE ARGS..." (repeatable). With modules given, the demo
    /// guest is not added.
    #[arg(long = "module", value_name = "FILE [ARGS]")]
    modules: Vec<String>,
    /// Boot this guest ELF (module `name=<file stem>`) instead of the built-in demo guest.
    #[arg(long, value_name = "FILE")]
    guest: Option<PathBuf>,
    /// Also boot Debian's Linux kernel (linux-image-amd64, unmodified) as VM `linux` with a
    /// busybox initramfs whose /init reports and powers off.
    #[arg(long)]
    linux: bool,
    /// Keep the emulator running after every VM has stopped (by default Basalt is given `exit`
    /// and the run ends with the last VM). Leave QEMU with Ctrl-A X, Bochs with Ctrl-C.
    #[arg(long)]
    stay: bool,
    /// The kernel command line (default: log=info).
    #[arg(last = true, value_name = "CMDLINE")]
    cmdline: Vec<String>,
}

#[derive(Args)]
struct TestArgs {
    /// Run only the integration tests whose "<platform>: <name>" contains FILTER.
    filter: Option<String>,
    /// Run only the host unit tests.
    #[arg(long, conflicts_with = "no_host")]
    host_only: bool,
    /// Skip the host unit tests.
    #[arg(long)]
    no_host: bool,
    /// Run only the `nested-svm` tests: Basalt under Linux KVM (nested SVM) inside QEMU TCG,
    /// one L0 boot for all of them.
    #[arg(long, conflicts_with_all = ["host_only", "kvm"])]
    nested: bool,
    /// Run the guest tests on this machine's KVM (`-accel kvm -cpu host`) instead; needs a
    /// /dev/kvm that offers VMX or SVM to guests.
    #[arg(long, conflicts_with = "host_only")]
    kvm: bool,
    /// List the selected integration tests and exit.
    #[arg(long)]
    list: bool,
    /// Test a debug build of the kernel.
    #[arg(long)]
    debug: bool,
    /// Test this kernel ELF instead of building one.
    #[arg(long, value_name = "ELF")]
    kernel: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run_cli(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_cli(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Cmd::Build { debug } => {
            let path = kernel::build(Profile::from_debug_flag(debug))?;
            println!("{}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run(args) => run(args),
        Cmd::Test(args) => test(args),
        Cmd::Image(args) => {
            let config = match &args.config {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read the config {}", path.display()))?,
                ),
                None => None,
            };
            let kernel = args.kernel.map(given_kernel).transpose()?;
            let output = util::workspace_root().join(&args.output);
            if args.linux {
                tools::ensure(linux_guest::TOOLS)?;
            }
            // With neither guests nor a config (nor Linux), the stick boots the demo guest.
            let guests = if args.guests.is_empty() && config.is_none() && !args.linux {
                guests::build()?;
                vec![guests::path(guests::DEMO)]
            } else {
                args.guests.clone()
            };
            image::build_image(
                Profile::from_debug_flag(args.profile.debug),
                kernel.as_deref(),
                config.as_deref(),
                "log=info",
                &guests,
                args.linux,
                &output,
            )?;
            println!(
                "xtask: wrote {} (UEFI only; write it to a stick with dd, see the README)",
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bare { guest, smp, machine } => bare::run(&guest, smp, &machine),
        Cmd::Bench(args) => {
            bench::run(bench::Options { compare: args.compare, bochs: !args.no_bochs })?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Setup => {
            tools::ensure(tools::ALL)?;
            println!("xtask: all host tools are present");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// An existing kernel given with --kernel, made absolute.
fn given_kernel(path: PathBuf) -> Result<PathBuf> {
    std::fs::canonicalize(&path).with_context(|| format!("no kernel at {}", path.display()))
}

fn parse_module(spec: &str) -> Result<(PathBuf, String)> {
    let (file, args) = spec.split_once(' ').unwrap_or((spec, ""));
    let file = std::fs::canonicalize(file).with_context(|| format!("no module file {file}"))?;
    Ok((file, args.trim().to_string()))
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let platform = if args.bochs {
        Platform::BochsVmx
    } else if args.bochs_svm {
        Platform::BochsSvm
    } else if args.kvm {
        Platform::Kvm
    } else if args.uefi {
        Platform::Uefi
    } else {
        Platform::QemuSvm
    };
    if platform == Platform::Kvm {
        // Before building or starting anything: say why KVM cannot run Basalt here.
        kvm_usable()?;
    }
    if args.smp == 0 {
        bail!("--smp must be at least 1");
    }
    let mut modules = args.modules.iter().map(|m| parse_module(m)).collect::<Result<Vec<_>>>()?;
    let linux = args.linux;
    if linux {
        tools::ensure(linux_guest::TOOLS)?;
        linux_guest::build()?;
        // On the stick it is a section of basalt.cfg (`image::linux_section`).
        if platform != Platform::Uefi {
            modules.extend(linux_guest::modules("linux", "mem=256"));
        }
    }
    match (args.guest, modules.is_empty() && !(linux && platform == Platform::Uefi)) {
        (Some(guest), _) => {
            let guest =
                std::fs::canonicalize(&guest).with_context(|| format!("no guest at {}", guest.display()))?;
            modules.push(guests::module_for_file(guest)?);
        }
        (None, true) => {
            guests::build()?;
            modules.push(guests::module(guests::DEMO));
        }
        (None, false) => {}
    }
    tools::ensure(&platform.required_tools())?;
    let kernel = match args.kernel {
        Some(path) => given_kernel(path)?,
        None => kernel::build(Profile::from_debug_flag(args.profile.debug))?,
    };
    println!("xtask: kernel {}", kernel.display());
    let cmdline = if args.cmdline.is_empty() { "log=info".to_string() } else { args.cmdline.join(" ") };
    let cmdline = run_cmdline(&cmdline, args.stay);
    let leave = if platform.is_bochs() { "Ctrl-C" } else { "Ctrl-A X" };
    if args.stay {
        println!("xtask: --stay: the emulator keeps running after the VMs stop; leave it with {leave}");
    } else {
        println!(
            "xtask: the run ends when every VM has stopped (--stay keeps it; {leave} leaves at any time)"
        );
    }
    let work_dir = util::xtask_dir().join(format!("run-{platform}"));
    let kernel = if platform == Platform::Uefi {
        // The guests go on the stick, one `vm` line each in the default basalt.cfg (named after
        // the file); the loader hands them to Basalt as modules.
        if modules.iter().any(|(path, args)| {
            path.file_stem().is_none_or(|stem| *args != format!("name={}", stem.to_string_lossy()))
        }) {
            bail!("--uefi takes guests as files only; for other VM settings write a basalt.cfg for `cargo xtask image --config`");
        }
        let guests: Vec<_> = modules.drain(..).map(|(path, _)| path).collect();
        let img = work_dir.join("basalt.img");
        image::build_image(Profile::Release, Some(&kernel), None, &cmdline, &guests, linux, &img)?;
        println!("xtask: image {}", img.display());
        img
    } else {
        kernel
    };
    let vm = Vm { platform, kernel, smp: args.smp, mem_mb: args.mem, cmdline, modules, work_dir };
    let launch = match platform {
        Platform::BochsVmx | Platform::BochsSvm => bochs::prepare(&vm)?,
        Platform::NestedSvm => bail!("nested-svm is a test platform only (cargo xtask test --nested)"),
        Platform::QemuSvm | Platform::Kvm | Platform::Uefi => qemu::launch(&vm)?,
    };
    let code = emulator::run_interactive(&launch)?;
    if platform.is_bochs() {
        // Bochs always exits with status 1; the serial log tells what happened.
        println!("\nxtask: bochs exited; logs in {}", vm.work_dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    match code {
        Some(code) => {
            println!("\nxtask: {}", qemu::describe_status(code));
            Ok(if code == 0 || code == 33 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        None => {
            println!("\nxtask: QEMU was killed by a signal");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The kernel command line of `cargo xtask run`: `exit` added (Basalt ends the emulator once
/// every VM has stopped) unless the user asked to stay or wrote it already.
fn run_cmdline(cmdline: &str, stay: bool) -> String {
    if stay || cmdline.split_whitespace().any(|w| w == "exit") {
        cmdline.to_string()
    } else {
        format!("{cmdline} exit")
    }
}

/// Whether this machine's KVM offers VMX or SVM to guests; the error is one line saying why not.
fn kvm_usable() -> Result<()> {
    match kvm::judge(&kvm::Facts::of_this_machine()) {
        Ok(ext) => {
            println!("xtask: KVM offers {ext} to guests (nested virtualization)");
            Ok(())
        }
        Err(why) => bail!("{why}"),
    }
}

fn test(args: TestArgs) -> Result<ExitCode> {
    if args.kvm && !args.list {
        kvm_usable()?;
    }
    let select = || {
        if args.host_only {
            Vec::new()
        } else if args.kvm {
            integration::select(tests_table::kvm_tests(), args.filter.as_deref())
        } else {
            let all = tests_table::all();
            // Everything, the nested set last; --nested: only the nested set.
            let all = if args.nested {
                all.into_iter().filter(|t| t.platform == Platform::NestedSvm).collect()
            } else {
                all
            };
            integration::select(all, args.filter.as_deref())
        }
    };
    let selected = select();
    if !args.host_only && selected.is_empty() {
        bail!("no integration test matches {:?}", args.filter.unwrap_or_default());
    }
    if args.list {
        for test in &selected {
            println!("{}", test.full_name());
        }
        return Ok(ExitCode::SUCCESS);
    }

    let mut needed = Vec::new();
    for test in &selected {
        let linux: &[tools::Tool] =
            if linux_guest::used_by(&test.modules) { linux_guest::TOOLS } else { &[] };
        for tool in test.platform.required_tools().into_iter().chain(linux.iter().copied()) {
            if !needed.contains(&tool) {
                needed.push(tool);
            }
        }
    }
    tools::ensure(&needed)?;
    // Again, now that what was missing is installed: the table names the Linux kernel it found.
    let selected = select();

    let mut total = host_tests::Counts::default();
    // --nested and --kvm are about the emulator runs; the host tests run in the plain suite.
    if !args.no_host && !args.nested && !args.kvm {
        total += host_tests::run()?;
    }
    if !selected.is_empty() {
        println!("\nxtask: integration tests");
        let kernel = match args.kernel {
            Some(path) => given_kernel(path),
            None => kernel::build(Profile::from_debug_flag(args.debug)),
        };
        let guests_built = if selected.iter().any(|t| t.needs_guests()) {
            guests::build().map_err(|err| println!("xtask: {err:#}")).is_ok()
        } else {
            true
        };
        if selected.iter().any(|t| linux_guest::used_by(&t.modules)) {
            if let Err(err) = linux_guest::build() {
                println!("xtask: the Linux guest's initramfs: {err:#}");
            }
        }
        let (runnable, unbuilt): (Vec<_>, Vec<_>) =
            selected.into_iter().partition(|t| guests_built || !t.needs_guests());
        // The nested tests share one L0 boot (xtask/src/nested.rs), after the others.
        let (nested, direct): (Vec<_>, Vec<_>) =
            runnable.into_iter().partition(|t| t.platform == Platform::NestedSvm);
        let kernel = match &kernel {
            Ok(path) => {
                println!("xtask: kernel {}", path.display());
                Ok(path.as_path())
            }
            Err(err) => {
                println!("xtask: {err:#}");
                Err("kernel build failed")
            }
        };
        // Two workers (one per core; XTASK_WORKERS=1 for one) take the tests from one queue,
        // the longest first (the Bochs Linux boot, then the nested set's one L0 boot); each
        // test's report is printed whole when it ends, and Bochs picks a free display port
        // itself, so two can run at once.
        enum Job<'a> {
            Test(&'a tests_table::IntegrationTest),
            NestedSet,
        }
        let (long, short): (Vec<_>, Vec<_>) =
            direct.iter().partition(|t| t.timeout > std::time::Duration::from_secs(300));
        let jobs =
            long.into_iter().map(Job::Test).chain([Job::NestedSet]).chain(short.into_iter().map(Job::Test));
        let queue = std::sync::Mutex::new(jobs);
        let counts = std::sync::Mutex::new((0u64, 0u64));
        let workers = std::env::var("XTASK_WORKERS").ok().and_then(|w| w.parse().ok()).unwrap_or(2usize);
        std::thread::scope(|s| {
            for _ in 0..workers.clamp(1, 2) {
                s.spawn(|| loop {
                    let Some(job) = queue.lock().expect("queue").next() else { break };
                    let (p, f) = match job {
                        Job::Test(test) => integration::run_all(std::slice::from_ref(test), kernel),
                        Job::NestedSet => nested::run_all(&nested, kernel),
                    };
                    let mut c = counts.lock().expect("counts");
                    c.0 += p;
                    c.1 += f;
                });
            }
        });
        let (passed, failed) = counts.into_inner().expect("counts");
        let (_, unbuilt_failed) = integration::run_all(&unbuilt, Err("guest build failed"));
        total.passed += passed;
        total.failed += failed + unbuilt_failed;
    }
    println!("{} passed, {} failed", total.passed, total.failed);
    Ok(if total.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_ends_with_the_vms_unless_asked_to_stay() {
        assert_eq!(super::run_cmdline("log=info", false), "log=info exit");
        assert_eq!(super::run_cmdline("log=info", true), "log=info");
        assert_eq!(super::run_cmdline("exit log=debug", false), "exit log=debug");
    }
}
