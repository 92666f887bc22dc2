//! Running VMs side by side (DESIGN.md "the run model is partitioning"): the boot CPU keeps the
//! console and hands each VM to a free application processor, which owns it until it ends;
//! with no other CPU online the boot CPU runs the VMs itself, one after another. The rules of
//! placement are in `vm::placement` (host-tested); this file is their kernel side: the CPUs'
//! mailboxes, the application processors' work loop, and the boot CPU's loop, which also
//! serves NMI requests and the NMI watchdog for CPUs that run SVM guests.
//!
//! Cross-CPU state is atomics and one small lock per mailbox; no CPU ever touches another's
//! VMCS or VMCB (each VM is built, run and torn down on the CPU it was given).

use crate::console::{Escaped, GuestLine};
use crate::vm::config::VmConfig;
use crate::vm::host::{self, BuiltVm, RunEnv};
use crate::vm::placement::{self, Want};
use crate::vm::VmOutcome;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use basalt_arch::{apic, idt, io};
use basalt_boot::Module;
use basalt_drivers::println;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use log::info;
use spin::Mutex;

/// CPUs Basalt schedules VMs on (indices 0..MAX_CPUS).
pub const MAX_CPUS: usize = 64;
/// The watchdog's period: how often the helper CPU sends an NMI to a CPU that runs an SVM guest.
const WATCHDOG_MS: u32 = 50;

/// Each online CPU's APIC ID, by index (u32::MAX: not online).
static APIC_IDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(u32::MAX) }; MAX_CPUS];
/// The CPU that serves NMI requests and the watchdog (APIC ID; u32::MAX: none, one CPU only).
static HELPER: AtomicU32 = AtomicU32::new(u32::MAX);
/// A request to the helper: (target APIC ID + 1) << 32 | delay in microseconds; 0 = none.
static NMI_REQUEST: AtomicU64 = AtomicU64::new(0);
/// The CPUs the helper's watchdog sends NMIs to, by index.
static WATCHED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// The TSC rate, for the helper's delays and timer.
static TSC_KHZ: AtomicU64 = AtomicU64::new(0);

/// Work handed to a CPU (one per CPU's mailbox: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Job {
    /// Build this VM and run its vCPU 0 here; its other vCPUs go to `cpus[1..]`.
    Build { module: Module, env: RunEnv, cpus: Vec<usize> },
    /// Run vCPU `index` of a VM another CPU built (on `cpus`).
    Vcpu { vm: Arc<BuiltVm>, index: u32, cpus: Vec<usize> },
}

/// A VM that ended, for the boot CPU to report.
struct Done {
    cpus: Vec<usize>,
    name: String,
    outcome: VmOutcome,
    stats: String,
}

static JOBS: [Mutex<Option<Job>>; MAX_CPUS] = [const { Mutex::new(None) }; MAX_CPUS];
static DONE: Mutex<Vec<Done>> = Mutex::new(Vec::new());

/// Record that the calling CPU, index `index`, is online with APIC ID `apic_id`.
pub fn cpu_online(index: usize, apic_id: u32) {
    if let Some(slot) = APIC_IDS.get(index) {
        slot.store(apic_id, Ordering::Release);
    }
}

fn online() -> usize {
    APIC_IDS.iter().take_while(|a| a.load(Ordering::Acquire) != u32::MAX).count()
}

fn wake(apic_id: u32) {
    apic::send_ipi(apic_id, apic::icr::FIXED | apic::icr::ASSERT | idt::WAKE_VECTOR as u32);
}

/// The `request_nmi` service of the VM core: the helper CPU sends an NMI to this CPU after
/// `delay_us` microseconds.
pub fn request_nmi(delay_us: u64) -> Result<(), &'static str> {
    let helper = HELPER.load(Ordering::Acquire);
    if helper == u32::MAX || helper == apic::id() {
        return Err("no other CPU is online to send it");
    }
    let request = ((apic::id() as u64 + 1) << 32) | delay_us.min(u32::MAX as u64);
    if NMI_REQUEST.compare_exchange(0, request, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return Err("another NMI request is still pending");
    }
    wake(helper);
    Ok(())
}

/// Start or stop the helper's NMI watchdog over this CPU. NMIs always exit a guest (both
/// backends intercept them), so even a guest that blocks maskable interrupts where the CPU
/// honours its RFLAGS.IF over the host's (Bochs 2.7's SVM ignores V_INTR_MASKING) gives its
/// CPU back and meets its time limit. Returns whether a helper exists.
pub fn watch_this_cpu(on: bool) -> bool {
    let helper = HELPER.load(Ordering::Acquire);
    if helper == u32::MAX || helper == apic::id() {
        return false;
    }
    WATCHED[crate::percpu::index() % MAX_CPUS].store(on, Ordering::Release);
    wake(helper);
    true
}

/// The kick of the VM core (vm::vcpus): make the CPU with this APIC ID leave its guest or its
/// sleep and look at its requests.
pub fn kick(apic_id: u32) {
    if apic_id != apic::id() {
        wake(apic_id);
    }
}

/// Whatever a vCPU's guest prints is one escaped `guest <name>| ...` line (crate::console).
fn console_for(name: String) -> crate::vm::Console {
    alloc::boxed::Box::new(move |text| println!("{}", GuestLine { vm: &name, text }))
}

/// Do one job on this CPU; `Some` when it ended a VM (this CPU ran its last vCPU).
fn run_job(job: Job) -> Option<Done> {
    match job {
        Job::Build { module, env, cpus } => match host::build_vm(&module, &env) {
            Ok(vm) => {
                for (index, &cpu) in cpus.iter().enumerate().skip(1) {
                    let job = Job::Vcpu { vm: vm.clone(), index: index as u32, cpus: cpus.clone() };
                    *JOBS[cpu].lock() = Some(job);
                    wake(APIC_IDS[cpu].load(Ordering::Acquire));
                }
                let ended = host::run_vcpu(&vm, 0, console_for(vm.config.name.clone()));
                ended.map(|e| Done { cpus, name: e.name, outcome: e.outcome, stats: e.stats })
            }
            Err((name, why)) => {
                Some(Done { cpus, name, outcome: VmOutcome::Failed(why), stats: String::new() })
            }
        },
        Job::Vcpu { vm, index, cpus } => {
            let ended = host::run_vcpu(&vm, index, console_for(vm.config.name.clone()));
            ended.map(|e| Done { cpus, name: e.name, outcome: e.outcome, stats: e.stats })
        }
    }
}

/// What an application processor does once it is up: sleep until woken, do the job in its
/// mailbox, report a VM that ended to the boot CPU, sleep again.
pub fn ap_loop(index: usize) -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        let job = JOBS.get(index).and_then(|j| j.lock().take());
        match job {
            Some(job) => {
                if let Some(done) = run_job(job) {
                    DONE.lock().push(done);
                    wake(APIC_IDS[0].load(Ordering::Acquire));
                }
            }
            // Interrupts are off from the check to the STI: a wake-up sent in between is
            // taken right after the STI and ends the HLT.
            None => x86_64::instructions::interrupts::enable_and_hlt(),
        }
    }
}

/// Print how a VM ended; returns whether it passed.
fn report(done: &Done) -> bool {
    let name = Escaped(&done.name);
    let passed = match &done.outcome {
        VmOutcome::Passed => {
            println!("VM {name}: PASS");
            true
        }
        // Not a failure: the guest ended its VM itself (power-off, reset, debug-exit).
        VmOutcome::Ended(how) => {
            println!("VM {name}: ENDED: {}", Escaped(how));
            true
        }
        // A report can quote the guest (its assertion's message and file): escaped.
        VmOutcome::Failed(report) => {
            println!("VM {name}: FAIL: {}", Escaped(report));
            false
        }
    };
    if !done.stats.is_empty() {
        info!("VM {name}: exits {}", done.stats);
    }
    passed
}

/// The helper's work on the boot CPU between dispatches: NMI requests, the watchdog's NMIs,
/// then sleep until something happens (a VM ended, a request, the watchdog's timer).
fn serve_and_sleep(cpus: usize, watchdog_on: &mut bool) {
    let khz = TSC_KHZ.load(Ordering::Relaxed);
    let request = NMI_REQUEST.swap(0, Ordering::AcqRel);
    if request != 0 {
        let target = (request >> 32) as u32 - 1;
        let ticks = (request & 0xFFFF_FFFF) * khz / 1000;
        let start = io::rdtsc();
        while io::rdtsc().wrapping_sub(start) < ticks {
            core::hint::spin_loop();
        }
        apic::send_ipi(target, apic::icr::NMI | apic::icr::ASSERT);
    }
    let watched = (1..cpus).filter(|&c| WATCHED[c].load(Ordering::Acquire));
    let mut any = false;
    for c in watched {
        any = true;
        apic::send_ipi(APIC_IDS[c].load(Ordering::Acquire), apic::icr::NMI | apic::icr::ASSERT);
    }
    if any != *watchdog_on {
        *watchdog_on = any;
        if any {
            apic::timer_periodic(
                idt::SLICE_VECTOR,
                apic::timer_ticks_per_ms(khz).saturating_mul(WATCHDOG_MS),
            );
        } else {
            apic::timer_stop();
        }
    }
    if DONE.lock().is_empty() && NMI_REQUEST.load(Ordering::Acquire) == 0 {
        x86_64::instructions::interrupts::enable_and_hlt();
        x86_64::instructions::interrupts::disable();
    }
}

/// Run every boot module as a VM: on the application processors side by side, or on this CPU
/// one after another if it is alone. A VM that fails, is refused or is stopped does not
/// affect the others. Returns (passed, total).
pub fn run_all(all_modules: &[Module], env: RunEnv) -> (usize, usize) {
    TSC_KHZ.store(env.tsc_khz, Ordering::Relaxed);
    host::set_modules(all_modules);
    // A Linux VM's initrd and a multiboot VM's modules are modules of their own, not VMs.
    let modules: Vec<Module> = all_modules
        .iter()
        .filter(|m| !crate::vm::config::is_part_of_a_vm(m.cmdline.as_str()))
        .copied()
        .collect();
    let modules = modules.as_slice();
    let cpus = online().max(1);
    let mut passed = 0;
    let wants: Vec<Want> = modules
        .iter()
        .map(|m| match VmConfig::parse(m.cmdline.as_str(), None) {
            Ok(c) if !c.pcpus.is_empty() => Want::Cpus(c.pcpus),
            Ok(c) => Want::Any(c.vcpus as usize),
            // A bad configuration is reported by the CPU that tries to build the VM.
            _ => Want::Any(1),
        })
        .collect();
    let mut pending: Vec<(usize, Want)> = Vec::new();
    for (i, checked) in placement::check(&wants, cpus).into_iter().enumerate() {
        match checked {
            Ok(want) => pending.push((i, want)),
            Err(why) => {
                let name = host::module_label(&modules[i]);
                println!("VM {}: FAIL: not started: {}", Escaped(name), Escaped(why));
            }
        }
    }
    if cpus == 1 {
        for (index, _) in pending {
            let module = modules[index];
            info!("VM {}: starting on CPU 0", Escaped(host::module_label(&module)));
            if let Some(done) = run_job(Job::Build { module, env, cpus: alloc::vec![0] }) {
                passed += report(&done) as usize;
            }
        }
        return (passed, modules.len());
    }
    HELPER.store(APIC_IDS[0].load(Ordering::Acquire), Ordering::Release);
    let mut busy = alloc::vec![false; cpus];
    busy[0] = true;
    let mut watchdog_on = false;
    loop {
        let mut i = 0;
        while i < pending.len() {
            let index = pending[i].0;
            let reserved: Vec<usize> = pending
                .iter()
                .filter(|(j, _)| *j != index)
                .flat_map(|(_, w)| match w {
                    Want::Cpus(list) => list.clone(),
                    Want::Any(_) => Vec::new(),
                })
                .collect();
            match placement::pick(&pending[i].1, &busy, &reserved) {
                Some(given) => {
                    for &c in &given {
                        busy[c] = true;
                    }
                    let module = modules[index];
                    let label = host::module_label(&module);
                    match given.as_slice() {
                        [one] => info!("VM {}: starting on CPU {one}", Escaped(label)),
                        many => info!("VM {}: starting on CPUs {many:?} (one per vCPU)", Escaped(label)),
                    }
                    let first = given[0];
                    *JOBS[first].lock() = Some(Job::Build { module, env, cpus: given });
                    wake(APIC_IDS[first].load(Ordering::Acquire));
                    pending.remove(i);
                }
                None => i += 1,
            }
        }
        let ended: Vec<Done> = core::mem::take(&mut *DONE.lock());
        for done in &ended {
            for &c in &done.cpus {
                busy[c] = false;
            }
            passed += report(done) as usize;
        }
        if pending.is_empty() && busy[1..].iter().all(|b| !b) {
            break;
        }
        if ended.is_empty() {
            serve_and_sleep(cpus, &mut watchdog_on);
        }
    }
    if watchdog_on {
        apic::timer_stop();
    }
    (passed, modules.len())
}
