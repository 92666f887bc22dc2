//! The boot flow: from the trampoline's `basalt_main` to every CPU online and the boot summary.
//!
//! Order matters and is the whole point of this file: the loader's structures are copied into
//! a `BootInfo` before anything can overwrite them; the frame allocator is built before the heap;
//! the heap before the per-CPU tables; Basalt's own page tables before the APs start.

use crate::console::Escaped;
use crate::dispatch;
use crate::frames::FrameAllocator;
use crate::vm::host;
use crate::{mitigations, percpu};
use basalt_arch::cpu::{CpuInfo, Virtualization};
use basalt_arch::idt::{exception_name, ExceptionFrame};
use basalt_arch::paging::{self, LargePage, PhysTables, LARGE_PAGE};
use basalt_arch::spec::SpecFeatures;
use basalt_arch::{apic, gdt, idt, io, smp};
use basalt_boot::{BootInfo, FixedStr, MemoryKind, PhysRead, MAX_MODULES};
use basalt_drivers::{acpi, println, serial, timer};
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use linked_list_allocator::LockedHeap;
use log::{error, info, warn};
use spin::{Mutex, Once};

/// Heap size: per-CPU tables, stacks and (later) VM bookkeeping.
const HEAP_BYTES: usize = 16 << 20;
/// Stack of each application processor.
const AP_STACK_BYTES: usize = 256 << 10;

extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// The machine's physical memory, owned by Basalt after boot.
pub static FRAMES: Mutex<Option<FrameAllocator>> = Mutex::new(None);

/// How the kernel was asked to behave, from its command line.
#[derive(Debug, Clone, Copy, Default)]
struct Options {
    /// `test=<name>`: run one built-in test, report its verdict and end the emulator.
    test: Option<TestName>,
    /// `exit`: end the emulator (QEMU isa-debug-exit, Bochs port 0x8900) when Basalt stops.
    exit: bool,
    /// `token=<hex>`: the harness's secret for this boot, printed in the verdict line so that
    /// a verdict-like line a guest prints cannot pass for Basalt's (see [`print_verdict`]).
    token: Option<FixedStr<MAX_TOKEN>>,
}

/// Longest `token=` value, in hex digits.
const MAX_TOKEN: usize = 64;

/// What a verdict line starts with (xtask's `integration::MARKER`).
const VERDICT_MARKER: &str = "BASALT-TEST-RESULT";

/// A `token=` value: 1 to [`MAX_TOKEN`] hex digits, or `None`.
fn parse_token(value: &str) -> Option<FixedStr<MAX_TOKEN>> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    FixedStr::try_from_str(value).ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TestName {
    Boot,
    Panic,
    Exception,
    /// Run every module as a VM and report whether all of them passed.
    Guests,
    /// Run every module as a VM [`CYCLES`] times over and report whether every run passed and
    /// the free frames came back to their count before the first.
    Cycles,
}

/// How many times `test=cycles` starts and stops the VMs.
const CYCLES: usize = 20;

static OPTIONS: Once<Options> = Once::new();
static CPUS_ONLINE: AtomicUsize = AtomicUsize::new(0);
/// The APIC ID each CPU read from its own local APIC once it was up (SMT detection).
static ONLINE_APIC_IDS: Mutex<alloc::vec::Vec<u32>> = Mutex::new(alloc::vec::Vec::new());
/// The TSC rate measured at boot.
static TSC_KHZ: AtomicU64 = AtomicU64::new(0);
/// Seconds a VM may run in test mode when its configuration names no `time_limit=`.
const TEST_TIME_LIMIT_S: u64 = 60;

/// Reads physical memory through the boot identity map (first 4 GiB).
struct BootIdentity;

impl PhysRead for BootIdentity {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let Some(end) = addr.checked_add(buf.len() as u64) else { return false };
        if addr == 0 || end > 1 << 32 {
            return false;
        }
        // SAFETY: the boot trampoline identity-maps [0, 4 GiB); the range was checked above.
        unsafe { core::ptr::copy_nonoverlapping(addr as *const u8, buf.as_mut_ptr(), buf.len()) };
        true
    }
}

fn kernel_range() -> (u64, u64) {
    (core::ptr::addr_of!(__kernel_start) as u64, core::ptr::addr_of!(__kernel_end) as u64)
}

/// Boot CPU entry, called once from `basalt_main`.
pub fn start(magic: u32, info_addr: u64, heap: &'static LockedHeap) -> ! {
    basalt_drivers::pic::disable();
    serial::init(log::LevelFilter::Info, percpu::index);
    // SAFETY: `magic` and `info_addr` are the loader's EAX and EBX, passed through untouched,
    // and `BootIdentity` reads the identity-mapped first 4 GiB.
    let boot = match unsafe { BootInfo::from_multiboot(magic, info_addr, &BootIdentity) } {
        Ok(b) => b,
        Err(e) => stop(format_args!("cannot read the boot information: {e}")),
    };
    let cmdline = boot.kernel_cmdline();
    if let Some(value) = cmdline.get("log") {
        match serial::parse_level(value) {
            Some(level) => log::set_max_level(level),
            None => warn!("unknown log level {value:?}; keeping info"),
        }
    }
    let options = OPTIONS.call_once(|| Options {
        test: match cmdline.get("test") {
            Some("boot") => Some(TestName::Boot),
            Some("panic") => Some(TestName::Panic),
            Some("exception") => Some(TestName::Exception),
            Some("guests") => Some(TestName::Guests),
            Some("cycles") => Some(TestName::Cycles),
            Some(other) => stop(format_args!("unknown test {other:?} on the command line")),
            None => None,
        },
        exit: cmdline.has("exit"),
        token: cmdline.get("token").and_then(parse_token),
    });
    if let Some(value) = cmdline.get("token").filter(|_| options.token.is_none()) {
        stop(format_args!("token= must be 1 to {MAX_TOKEN} hex digits, got {:?}", value))
    }
    let (switches, bad_switch) = mitigations::Switches::parse(
        cmdline.get("mitigations"),
        cmdline.get("no_mitigation"),
        cmdline.get("smt_sharing"),
    );
    if let Some(why) = bad_switch {
        stop(format_args!("bad mitigation switch on the command line: {why}"))
    }
    idt::set_fatal_handler(fatal_exception);
    info!(
        "Basalt {} starting ({:?}), command line {:?}",
        env!("CARGO_PKG_VERSION"),
        boot.loader,
        boot.cmdline.as_str()
    );
    if boot.modules_dropped > 0 {
        error!("{}", DroppedModules(boot.modules_given()));
    }

    // Physical memory: everything usable except the kernel, the modules and the loader's info.
    let mut reserved = [(0u64, 0u64); basalt_boot::MAX_MODULES + 2];
    reserved[0] = kernel_range();
    reserved[1] = boot.loader_info;
    for (slot, m) in reserved[2..].iter_mut().zip(boot.modules.iter()) {
        *slot = (m.start, m.end);
    }
    let mut frames = FrameAllocator::new(&boot.memory, &reserved[..2 + boot.modules.len()]);
    let usable = boot.memory.usable_bytes();

    // Heap: one contiguous run of frames.
    let heap_start = match frames.alloc_contiguous(HEAP_BYTES / 4096, 4096) {
        Ok(a) => a,
        Err(e) => stop(format_args!("no memory for Basalt's heap: {e}")),
    };
    // SAFETY: the range was just taken from the frame allocator, identity-mapped, used only as heap.
    unsafe { heap.lock().init(heap_start as *mut u8, HEAP_BYTES) };

    // Basalt's own page tables: all of RAM and the 32-bit MMIO hole, identity-mapped.
    let top = boot.memory.highest_address().max(4 << 30).next_multiple_of(1 << 30);
    let exec_end = kernel_range().1.next_multiple_of(LARGE_PAGE);
    let memory = &boot.memory;
    let kind = |addr: u64| LargePage {
        executable: addr < exec_end,
        uncached: !memory
            .regions()
            .iter()
            .any(|r| r.kind == MemoryKind::Usable && r.start < addr + LARGE_PAGE && r.end > addr),
    };
    let cr3 = {
        let mut tables = PhysTables { alloc: || frames.alloc().ok() };
        match paging::build_identity_map(&mut tables, top, &kind) {
            Ok(cr3) => cr3,
            Err(_) => stop(format_args!("out of memory building the page tables")),
        }
    };
    // SAFETY: the new map identity-maps all RAM and the MMIO hole, a superset of the boot map.
    unsafe { paging::load(cr3) };
    *FRAMES.lock() = Some(frames);

    // This CPU's tables, APIC, per-CPU block.
    let cpu = CpuInfo::read();
    gdt::init_this_cpu();
    idt::init_this_cpu();
    basalt_arch::hoststate::init_this_cpu();
    apic::enable_this_cpu(cpu.x2apic);
    let bsp_apic = apic::id();
    let bsp = percpu::init_this_cpu(0, bsp_apic);
    ONLINE_APIC_IDS.lock().push(bsp_apic);
    percpu::set_online(bsp);
    dispatch::cpu_online(0, bsp_apic);
    CPUS_ONLINE.store(1, Ordering::SeqCst);
    let tsc_khz = timer::calibrate_tsc(10);
    TSC_KHZ.store(tsc_khz, Ordering::Relaxed);
    let backend = host::Backend::detect(&cpu);
    if backend.is_ok() {
        if let Err(e) = host::enable_this_cpu() {
            error!("cannot enable virtualization on the boot CPU: {e}");
        }
    }

    // Every CPU the firmware lists.
    let platform = match acpi::read_platform(boot.rsdp) {
        Ok(p) => p,
        Err(e) => stop(format_args!("cannot enumerate CPUs: {e}")),
    };
    // SAFETY: the trampoline page (0x8000) is below 1 MiB, which the frame allocator never hands out.
    unsafe { smp::install_trampoline() };
    let others = platform.processors().iter().filter(|p| p.apic_id != bsp_apic);
    for (index, p) in (1usize..).zip(others) {
        let stack: &'static mut [u8] =
            alloc::boxed::Box::leak(alloc::vec![0u8; AP_STACK_BYTES].into_boxed_slice());
        let stack_top = (stack.as_ptr() as u64 + AP_STACK_BYTES as u64) & !0xF;
        let before = CPUS_ONLINE.load(Ordering::SeqCst);
        // SAFETY: trampoline installed, cr3 identity-maps everything (and is below 4 GiB: the
        // allocator hands out low frames first), the stack is fresh.
        unsafe { smp::start_ap(p.apic_id, cr3, stack_top, ap_entry, index as u64, &timer::delay_us) };
        let deadline = io::rdtsc() + tsc_khz * 500; // 500 ms
        while CPUS_ONLINE.load(Ordering::SeqCst) == before && io::rdtsc() < deadline {
            core::hint::spin_loop();
        }
        if CPUS_ONLINE.load(Ordering::SeqCst) == before {
            error!("CPU with APIC ID {} did not come online", p.apic_id);
        }
    }

    let (free, allocated) =
        FRAMES.lock().as_ref().map_or((0, 0), |f| (f.free_bytes(), f.total_bytes() - f.free_bytes()));
    let (kernel_start, kernel_end) = kernel_range();
    let in_use = (kernel_end - kernel_start) + allocated;
    let online = CPUS_ONLINE.load(Ordering::SeqCst);
    let listed = platform.processor_count.max(1);
    print_summary(&cpu, (usable, free, in_use), tsc_khz, online, listed);
    match backend {
        Ok(b) => println!("  VM backend: {}, enabled on {}/{online} CPUs", describe(b), host::enabled_cpus()),
        Err(why) => println!("  VM backend: none ({why}): Basalt cannot run VMs here"),
    }
    decide_mitigations(&cpu, &switches);

    match options.test {
        Some(TestName::Boot) if online == listed && cpu.virtualization != Virtualization::None => {
            test_exit(true, format_args!("boot"))
        }
        Some(TestName::Boot) => {
            test_exit(false, format_args!("not every CPU came online, or no virtualization"))
        }
        Some(TestName::Guests) => {
            let (passed, total) = run_modules(&boot);
            let failed = total - passed;
            let dropped = DroppedModules(boot.modules_given());
            match (boot.modules_dropped > 0, failed > 0) {
                (true, true) => {
                    test_exit(false, format_args!("{dropped}; {failed} of {total} VMs that ran failed"))
                }
                (true, false) => test_exit(false, format_args!("{dropped}")),
                _ if total == 0 => {
                    test_exit(false, format_args!("test=guests but no guest module was given"))
                }
                (false, true) => test_exit(false, format_args!("{failed} of {total} VMs failed")),
                (false, false) => test_exit(true, format_args!("guests")),
            }
        }
        Some(TestName::Cycles) => {
            let free = || FRAMES.lock().as_ref().map_or(0, |f| f.free_bytes()) / 4096;
            let before = free();
            info!("free frames before the first start: {before}");
            let mut failed_runs = 0;
            for cycle in 1..=CYCLES {
                let (passed, total) = run_modules(&boot);
                failed_runs += total - passed + (total == 0) as usize;
                info!("free frames after start/stop cycle {cycle}: {}", free());
            }
            let after = free();
            match (failed_runs, after == before) {
                (0, true) => test_exit(true, format_args!("cycles")),
                (0, false) => test_exit(
                    false,
                    format_args!("{before} free frames before {CYCLES} start/stop cycles, {after} after"),
                ),
                (n, _) => test_exit(false, format_args!("{n} VM runs of {CYCLES} cycles failed")),
            }
        }
        Some(TestName::Panic) => panic!("test-requested panic (test=panic)"),
        Some(TestName::Exception) => {
            info!("executing UD2 (test=exception)");
            // SAFETY: deliberately raises #UD to exercise the exception path; the handler stops.
            unsafe { core::arch::asm!("ud2") };
            test_exit(false, format_args!("UD2 did not fault"))
        }
        None => {
            if boot.modules.is_empty() {
                info!("no VM configured");
            } else {
                let (passed, total) = run_modules(&boot);
                info!("every VM has stopped ({passed} of {total} passed)");
            }
            if wants_exit() {
                info!("Basalt ends (`exit` on its command line)");
            } else {
                info!("Basalt is idle: nothing runs until the machine is reset (with `exit` on its command line Basalt ends the emulator instead)");
            }
            stop_quietly()
        }
    }
}

/// Run every boot module as its own VM, one after the other on this CPU; a VM that fails or is
/// stopped does not affect the next. Returns (passed, total).
fn run_modules(boot: &BootInfo) -> (usize, usize) {
    let env = host::RunEnv {
        tsc_khz: TSC_KHZ.load(Ordering::Relaxed),
        hooks: crate::vm::HostHooks {
            request_nmi: dispatch::request_nmi,
            nmis_taken: idt::nmis_taken,
            now: io::rdtsc,
            watchdog: dispatch::watch_this_cpu,
            idle: host::idle,
            arm_at: host::arm_at,
        },
        default_time_limit_s: OPTIONS.get().and_then(|o| o.test).map(|_| TEST_TIME_LIMIT_S),
        wall_clock: wall_clock(),
    };
    dispatch::run_all(&boot.modules, env)
}

/// The host's CMOS clock as unix seconds, with the TSC it was read at.
fn wall_clock() -> Option<(u64, u64)> {
    let t = basalt_arch::cmos::read_time()?;
    let tsc = io::rdtsc();
    let days = basalt_devices::rtc::days_from_civil(t.year as i64, t.month, t.day);
    let secs = days * 86_400 + (t.hour * 3600 + t.minute * 60 + t.second) as i64;
    info!(
        "host clock: {:04}-{:02}-{:02} {:02}:{:02}:{:02} (CMOS)",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    );
    u64::try_from(secs).ok().map(|s| (s, tsc))
}

fn describe(b: host::Backend) -> alloc::string::String {
    match b {
        host::Backend::Vmx => "VMX with EPT".into(),
        host::Backend::Svm { nrips: true, asids } => alloc::format!("SVM with NPT and NRIPS, {asids} ASIDs"),
        host::Backend::Svm { nrips: false, asids } => {
            alloc::format!(
                "SVM with NPT, no NRIPS (intercepted instructions decoded to skip them), {asids} ASIDs"
            )
        }
    }
}

extern "C" fn ap_entry(index: u64) -> ! {
    let cpu = CpuInfo::read();
    gdt::init_this_cpu();
    idt::init_this_cpu();
    basalt_arch::hoststate::init_this_cpu();
    apic::enable_this_cpu(cpu.x2apic);
    let me = percpu::init_this_cpu(index as usize, apic::id());
    if host::Backend::get().is_some() {
        if let Err(e) = host::enable_this_cpu() {
            error!("cannot enable virtualization: {e}");
        }
    }
    percpu::set_online(me);
    dispatch::cpu_online(index as usize, me.apic_id);
    ONLINE_APIC_IDS.lock().push(me.apic_id);
    CPUS_ONLINE.fetch_add(1, Ordering::SeqCst);
    log::debug!("online, APIC ID {}", me.apic_id);
    dispatch::ap_loop(index as usize)
}

fn print_summary(cpu: &CpuInfo, memory: (u64, u64, u64), tsc_khz: u64, online: usize, listed: usize) {
    let (usable, free, in_use) = memory;
    let vendor = match cpu.vendor {
        basalt_arch::cpu::Vendor::Intel => "Intel",
        basalt_arch::cpu::Vendor::Amd => "AMD",
        basalt_arch::cpu::Vendor::Other => "unknown vendor",
    };
    println!("Basalt {} boot summary", env!("CARGO_PKG_VERSION"));
    println!(
        "  CPU: {} ({vendor}, family {:#x} model {:#x} stepping {})",
        cpu.brand(),
        cpu.family,
        cpu.model,
        cpu.stepping
    );
    let yn = |b: bool| if b { "yes" } else { "no" };
    match cpu.virtualization {
        Virtualization::Vmx => println!("  virtualization: VMX (Intel VT-x)"),
        Virtualization::Svm { npt, nrips, asids, avic, decode_assists, flush_by_asid } => println!(
            "  virtualization: SVM (AMD-V): NPT {}, NRIPS {}, {asids} ASIDs, flush-by-ASID {}, decode assists {}, AVIC {}",
            yn(npt),
            yn(nrips),
            yn(flush_by_asid),
            yn(decode_assists),
            yn(avic)
        ),
        Virtualization::None => println!("  virtualization: none (Basalt cannot run VMs on this CPU)"),
    }
    println!("  memory: {} MiB usable, {} MiB free after boot", usable >> 20, free >> 20);
    // Read by `cargo xtask bench`: the kernel image plus every frame it allocated (heap, page
    // tables, per-CPU VMXON region or host save area); not the modules or loader data.
    println!("  memory in use by Basalt: {} KiB", in_use >> 10);
    println!(
        "  APIC: {}, TSC {}.{:03} MHz",
        if apic::is_x2apic() { "x2APIC" } else { "xAPIC" },
        tsc_khz / 1000,
        tsc_khz % 1000
    );
    println!("  CPUs online: {online}/{listed}");
}

/// Decide the speculative-execution mitigations from the CPU's own report and the APIC IDs of
/// the CPUs that came online, print one line per decision and keep them for every VM.
fn decide_mitigations(cpu: &CpuInfo, switches: &mitigations::Switches) {
    let spec = SpecFeatures::read();
    let smt_bits = basalt_arch::spec::smt_id_bits();
    let ids = ONLINE_APIC_IDS.lock().clone();
    let profile = mitigations::CpuProfile {
        vendor: cpu.vendor,
        family: cpu.family,
        model: cpu.model,
        spec,
        smt_siblings_online: mitigations::smt_siblings(&ids, smt_bits),
    };
    let d = mitigations::decide(&profile, switches);
    let a = d.affected;
    let mut affected = alloc::string::String::new();
    for (hit, name) in [
        (a.meltdown, " Meltdown"),
        (a.l1tf, " L1TF"),
        (a.mds, " MDS"),
        (a.taa, " TAA"),
        (a.spectre_v2, " Spectre-v2"),
    ] {
        if hit {
            affected.push_str(name);
        }
    }
    let caps = match spec.arch_caps {
        Some(c) => alloc::format!("{c:#x}"),
        None => "not enumerated".into(),
    };
    println!(
        "  speculation: CPUID.7 EDX {:#010x}, 8000_0008 EBX {:#010x}, ARCH_CAPABILITIES {caps}; affected by:{}",
        spec.leaf7_edx,
        spec.ext8_ebx,
        if affected.is_empty() { " nothing" } else { &affected }
    );
    let cores = mitigations::cores(&ids, smt_bits);
    let mut layout = alloc::string::String::new();
    for (i, core) in cores.iter().enumerate() {
        let ids: alloc::vec::Vec<alloc::string::String> =
            core.iter().map(|id| alloc::format!("{id}")).collect();
        layout.push_str(if i == 0 { "" } else { ", " });
        layout.push_str(&ids.join("+"));
    }
    println!(
        "  SMT: {} thread ID bit(s) per core, APIC IDs online by core: {layout}: {}",
        smt_bits,
        if profile.smt_siblings_online { "SMT siblings online" } else { "no SMT siblings online" }
    );
    let line = |name: &str, x: mitigations::Decision| {
        println!("  mitigation {name}: {}: {}", if x.on { "on" } else { "off" }, x.reason)
    };
    line("L1D flush on VM entry", d.l1d_flush);
    line("VERW on VM entry", d.verw);
    line("IBPB between VMs", d.ibpb);
    line("SPEC_CTRL per vCPU", d.spec_ctrl);
    line("RSB fill on VM exit", d.rsb_fill);
    line("VMs on SMT siblings", d.smt_sharing);
    if let Some(w) = d.warning {
        warn!("mitigations: {w}");
    }
    let entry = d.entry(&spec, basalt_arch::spec::host_spec_ctrl(&spec));
    let guest =
        mitigations::guest_spec(&spec, &d, basalt_arch::spec::ibpb, basalt_arch::spec::flush_l1d_command);
    mitigations::ACTIVE.call_once(|| mitigations::Active {
        decisions: d,
        entry,
        guest,
        smt_bits,
        sharing: switches.smt_sharing,
    });
}

/// `<given> boot modules given, Basalt runs at most 16: modules 17-<given> were not started`.
struct DroppedModules(usize);

impl fmt::Display for DroppedModules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let given = self.0;
        write!(f, "{given} boot modules given, Basalt runs at most {MAX_MODULES}: ")?;
        match given - MAX_MODULES {
            1 => write!(f, "module {given} was not started"),
            _ => write!(f, "modules {}-{given} were not started", MAX_MODULES + 1),
        }
    }
}

/// Print the verdict line, the only line xtask takes a test's result from:
/// `BASALT-TEST-RESULT <token>: PASS` or `BASALT-TEST-RESULT <token>: FAIL: <reason>` with
/// the command line's `token=`, and without one (`cargo xtask run`, a person)
/// `BASALT-TEST-RESULT: PASS` / `BASALT-TEST-RESULT: FAIL: <reason>`. The reason is escaped,
/// so the verdict is always one line.
fn print_verdict(pass: bool, reason: fmt::Arguments<'_>) {
    let token = OPTIONS.get().and_then(|o| o.token);
    let token = token.as_ref().map_or("", |t| t.as_str());
    let space = if token.is_empty() { "" } else { " " };
    if pass {
        println!("{VERDICT_MARKER}{space}{token}: PASS");
    } else {
        println!("{VERDICT_MARKER}{space}{token}: FAIL: {}", Escaped(reason));
    }
}

/// Print the test verdict and end the emulator (see xtask's test protocol).
fn test_exit(pass: bool, reason: fmt::Arguments<'_>) -> ! {
    print_verdict(pass, reason);
    exit_emulator(pass)
}

fn exit_emulator(pass: bool) -> ! {
    serial::drain();
    // QEMU's isa-debug-exit: status = (value << 1) | 1, so 33 for pass, 35 for fail.
    io::outl(0xF4, if pass { 0x10 } else { 0x11 });
    // Bochs: the string "Shutdown" on port 0x8900.
    for b in b"Shutdown" {
        io::outb(0x8900, *b);
    }
    io::halt_forever()
}

fn wants_exit() -> bool {
    OPTIONS.get().is_some_and(|o| o.test.is_some() || o.exit)
}

/// Stop for good after a fatal boot error: report it, end the emulator in test mode.
fn stop(args: core::fmt::Arguments<'_>) -> ! {
    error!("{args}");
    if wants_exit() {
        test_exit(false, args)
    }
    io::halt_forever()
}

fn stop_quietly() -> ! {
    if wants_exit() {
        exit_emulator(true)
    }
    io::halt_forever()
}

static PANICKING: AtomicBool = AtomicBool::new(false);

/// The panic handler: stop every CPU, print where, report failure in test mode.
pub fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    if PANICKING.swap(true, Ordering::SeqCst) {
        // A second panic (on another CPU, or while panicking): just stop this CPU.
        io::halt_forever();
    }
    idt::request_stop_all();
    if apic_ready() {
        apic::nmi_all_others();
    }
    serial::force_unlock();
    println!("\nPANIC on cpu{}: {info}", percpu::index());
    if wants_exit() {
        test_exit(false, format_args!("kernel panic"))
    }
    io::halt_forever()
}

fn apic_ready() -> bool {
    CPUS_ONLINE.load(Ordering::SeqCst) > 0
}

fn fatal_exception(f: &ExceptionFrame, cr2: u64) -> ! {
    serial::force_unlock();
    println!(
        "\nEXCEPTION: {} (vector {}) on cpu{}, error code {:#x}",
        exception_name(f.vector),
        f.vector,
        percpu::index(),
        f.error_code
    );
    println!(
        "  RIP={:#018x} CS={:#06x} RFLAGS={:#010x} RSP={:#018x} SS={:#06x}",
        f.rip, f.cs, f.rflags, f.rsp, f.ss
    );
    println!("  RAX={:#018x} RBX={:#018x} RCX={:#018x} RDX={:#018x}", f.rax, f.rbx, f.rcx, f.rdx);
    println!("  RSI={:#018x} RDI={:#018x} RBP={:#018x} CR2={:#018x}", f.rsi, f.rdi, f.rbp, cr2);
    println!("  R8 ={:#018x} R9 ={:#018x} R10={:#018x} R11={:#018x}", f.r8, f.r9, f.r10, f.r11);
    println!("  R12={:#018x} R13={:#018x} R14={:#018x} R15={:#018x}", f.r12, f.r13, f.r14, f.r15);
    panic!("unhandled CPU exception {} at RIP {:#x}", exception_name(f.vector), f.rip)
}
