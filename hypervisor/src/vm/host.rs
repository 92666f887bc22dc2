//! Running VMs on this machine: the backend chosen from CPUID, virtualization enabled on each
//! CPU, and a VM built from a boot module (RAM and every control structure charged to it),
//! run to its end and torn down. Kernel only: it touches physical memory and the CPU.

use super::account::{Account, ChargeError};
use super::config::VmConfig;
use super::{setup, Console, HostHooks, VmOutcome, VmState};
use crate::frames::FrameAllocator;
use crate::kernel::FRAMES;
use alloc::format;
use alloc::string::String;
use basalt_arch::cpu::{CpuInfo, Virtualization};
use basalt_arch::hoststate::{self, Snapshot, Switched};
use basalt_arch::mtrr::{memtype, Mtrrs};
use basalt_arch::nested::{self, LeafPolicy, NestedFormat};
use basalt_arch::paging::PhysTables;
use basalt_arch::virt::{FrameSource, VirtError};
use basalt_arch::{apic, idt, svm, vmx};
use basalt_boot::Module;
use core::sync::atomic::{AtomicU32, Ordering};
use spin::Once;

/// Which hardware extension runs the VMs, decided once from CPUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Vmx,
    Svm { nrips: bool, asids: u32 },
}

/// What the nested page tables may use on this machine: leaf sizes, and (EPT) the host MTRRs
/// that give each leaf its memory type.
struct NestedPaging {
    mib_pages: bool,
    gib_pages: bool,
    mtrrs: Option<Mtrrs>,
}

static BACKEND: Once<Result<Backend, &'static str>> = Once::new();
static NESTED: Once<NestedPaging> = Once::new();
static ENABLED_CPUS: AtomicU32 = AtomicU32::new(0);
static NEXT_TAG: AtomicU32 = AtomicU32::new(1);
/// The host time slice on SVM (the local APIC timer; VMX uses its preemption timer).
const SLICE_MS: u32 = 10;
static APIC_TICKS_PER_MS: Once<u32> = Once::new();

/// What a VM run needs from the kernel: the TSC rate, the machine's services and the default
/// time limit (test VMs get one).
#[derive(Debug, Clone, Copy)]
pub struct RunEnv {
    pub tsc_khz: u64,
    pub hooks: HostHooks,
    pub default_time_limit_s: Option<u64>,
}

impl Backend {
    /// The backend for this CPU, or why there is none.
    pub fn detect(cpu: &CpuInfo) -> Result<Backend, &'static str> {
        let backend = *BACKEND.call_once(|| match cpu.virtualization {
            Virtualization::Vmx => Ok(Backend::Vmx),
            Virtualization::Svm { npt: true, nrips, asids, .. } if asids > 1 => {
                Ok(Backend::Svm { nrips, asids })
            }
            Virtualization::Svm { npt: false, .. } => Err("SVM without nested paging (NPT)"),
            Virtualization::Svm { .. } => Err("SVM with no ASID for guests"),
            Virtualization::None => Err("no hardware virtualization (VMX or SVM)"),
        });
        NESTED.call_once(|| match backend {
            Ok(Backend::Vmx) => {
                // SAFETY: CPUID reported VMX, so the VMX capability MSRs exist.
                let ept = unsafe { vmx::caps::VmxCaps::read() }.ept_vpid;
                NestedPaging {
                    mib_pages: ept & vmx::caps::ept_cap::PAGE_2MB != 0,
                    gib_pages: ept & vmx::caps::ept_cap::PAGE_1GB != 0,
                    mtrrs: Some(Mtrrs::read()),
                }
            }
            // NPT: 2 MiB leaves always; the CPU applies the host MTRRs under NPT itself.
            _ => NestedPaging { mib_pages: true, gib_pages: cpu.gib_pages, mtrrs: None },
        });
        backend
    }

    /// The backend chosen on the boot CPU.
    pub fn get() -> Option<Backend> {
        BACKEND.get().and_then(|b| b.ok())
    }

    fn format(self) -> NestedFormat {
        match self {
            Backend::Vmx => NestedFormat::Ept,
            Backend::Svm { .. } => NestedFormat::Npt,
        }
    }
}

/// A vCPU on whichever backend this machine has.
enum Vcpu {
    Vmx(vmx::VmxVcpu),
    Svm(svm::SvmVcpu),
}

/// Host-owned frames (per-CPU VMXON region, SVM host save area): never freed, never charged.
struct HostFrames<'a>(&'a mut FrameAllocator);

impl FrameSource for HostFrames<'_> {
    fn alloc_zeroed(&mut self, pages: usize) -> Option<u64> {
        let addr = self.0.alloc_contiguous(pages, 4096).ok()?;
        // SAFETY: fresh frames from the allocator, identity-mapped, owned by nobody else.
        unsafe { core::ptr::write_bytes(addr as *mut u8, 0, pages * 4096) };
        Some(addr)
    }
}

/// Frames charged to one VM; remembers why the last allocation failed, for the report.
struct Charged<'a> {
    account: &'a mut Account,
    frames: &'a mut FrameAllocator,
    failure: Option<ChargeError>,
}

impl Charged<'_> {
    fn alloc(&mut self, pages: usize) -> Option<u64> {
        self.account.alloc(self.frames, pages, 4096).map_err(|e| self.failure = Some(e)).ok()
    }

    /// A report for a failed step: the charge failure behind it where there was one.
    fn explain(&self, what: &str, error: impl core::fmt::Display) -> String {
        match &self.failure {
            Some(f) => format!("{what}: {f}"),
            None => format!("{what}: {error}"),
        }
    }
}

impl FrameSource for Charged<'_> {
    fn alloc_zeroed(&mut self, pages: usize) -> Option<u64> {
        let addr = self.alloc(pages)?;
        // SAFETY: as in `HostFrames`; these frames belong to the VM's account.
        unsafe { core::ptr::write_bytes(addr as *mut u8, 0, pages * 4096) };
        Some(addr)
    }
}

/// Turn virtualization on for the calling CPU. Returns the backend used.
pub fn enable_this_cpu() -> Result<Backend, String> {
    let backend = Backend::get().ok_or_else(|| String::from("no usable virtualization backend"))?;
    let mut guard = FRAMES.lock();
    let frames = guard.as_mut().ok_or_else(|| String::from("frame allocator not ready"))?;
    let mut source = HostFrames(frames);
    match backend {
        Backend::Vmx => vmx::enable_this_cpu(&mut source),
        Backend::Svm { .. } => svm::enable_this_cpu(&mut source),
    }
    .map_err(|e: VirtError| format!("{e}"))?;
    ENABLED_CPUS.fetch_add(1, Ordering::SeqCst);
    Ok(backend)
}

/// How many CPUs have virtualization enabled.
pub fn enabled_cpus() -> u32 {
    ENABLED_CPUS.load(Ordering::SeqCst)
}

/// The bytes of a boot module (reserved from the frame allocator, identity-mapped).
fn module_bytes(m: &Module) -> &'static [u8] {
    let len = m.end.saturating_sub(m.start) as usize;
    // SAFETY: the loader placed the module there; the frame allocator never hands it out and
    // nothing writes to it, so it is immutable for the rest of the boot.
    unsafe { core::slice::from_raw_parts(m.start as *const u8, len) }
}

/// A VM's name for reports before its configuration is known.
pub fn module_label(m: &Module) -> String {
    basalt_boot::Cmdline::new(m.cmdline.as_str())
        .without_kernel_path()
        .get("name")
        .map_or_else(|| String::from("?"), String::from)
}

/// Build a VM from a boot module, run it on this CPU until it stops, free everything it used.
/// Returns the VM's name, how it ended and its exit statistics.
pub fn run_module(m: &Module, console: Console, env: &RunEnv) -> (String, VmOutcome, String) {
    let label = module_label(m);
    let config = match VmConfig::parse(m.cmdline.as_str(), env.default_time_limit_s) {
        Ok(c) => c,
        Err(e) => return (label, VmOutcome::Failed(format!("not started: {e}")), String::new()),
    };
    let Some(backend) = Backend::get() else {
        return (
            config.name,
            VmOutcome::Failed("not started: no virtualization backend".into()),
            String::new(),
        );
    };
    let mut account = Account::new(config.quota_bytes);
    let result = build_and_run(&config, backend, module_bytes(m), &mut account, console, env);
    let charged = account.charged();
    if let Some(frames) = FRAMES.lock().as_mut() {
        account.release(frames);
    }
    match result {
        Ok((outcome, stats)) => (
            config.name,
            outcome,
            format!("{stats}; {} KiB charged of {} KiB quota", charged >> 10, config.quota_bytes >> 10),
        ),
        Err(e) => (config.name, VmOutcome::Failed(format!("not started: {e}")), String::new()),
    }
}

fn build_and_run(
    config: &VmConfig,
    backend: Backend,
    image: &[u8],
    account: &mut Account,
    console: Console,
    env: &RunEnv,
) -> Result<(VmOutcome, super::stats::ExitStats), String> {
    let pages = (config.mem_bytes / 4096) as usize;
    let tag = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
    let active = crate::mitigations::ACTIVE.get();
    let entry = active.map(|a| a.entry).unwrap_or_default();
    let (memory, mut vcpu) = {
        let mut guard = FRAMES.lock();
        let frames = guard.as_mut().ok_or("frame allocator not ready")?;
        // Guest RAM: aligned so the nested tables can use large pages (1 GiB for 1 GiB guests).
        let align = if config.mem_bytes >= 1 << 30 { 1 << 30 } else { 2 << 20 };
        let ram = match account.alloc(frames, pages, align) {
            Err(super::account::ChargeError::Host(_)) if align > 2 << 20 => {
                account.alloc(frames, pages, 2 << 20)
            }
            other => other,
        }
        .map_err(|e| format!("guest RAM: {e}"))?;
        // SAFETY: the RAM was just allocated for this VM and is identity-mapped.
        unsafe { core::ptr::write_bytes(ram as *mut u8, 0, config.mem_bytes as usize) };
        let mut memory = super::memory::GuestMemory::new();
        // SAFETY: [ram, ram + size) belongs to this VM's account until `release`.
        unsafe { memory.add(super::memory::GuestRegion { gpa: 0, size: config.mem_bytes, host: ram }) };
        let init = setup::load(&memory, image, config.mode)?;

        let format = backend.format();
        let paging = NESTED.get().ok_or("nested paging not probed")?;
        let memory_type = |addr: u64, len: u64| match &paging.mtrrs {
            Some(m) => m.type_of_range(addr, len),
            None => Some(memtype::WB),
        };
        let policy = LeafPolicy {
            mib_pages: paging.mib_pages,
            gib_pages: paging.gib_pages,
            memory_type: &memory_type,
        };
        let mut source = Charged { account, frames, failure: None };
        let root = {
            let mut tables = PhysTables { alloc: || source.alloc(1) };
            nested::new_root(&mut tables).and_then(|root| {
                nested::map_range(&mut tables, root, format, 0, ram, config.mem_bytes, &policy).map(|_| root)
            })
        }
        .map_err(|_| source.explain("nested page tables", "out of memory"))?;
        let vcpu: Result<Vcpu, VirtError> = match backend {
            Backend::Vmx => {
                let vpid = (tag % 0xFFFF + 1) as u16;
                vmx::VmxVcpu::new(&mut source, root, vpid, &init, entry).map(Vcpu::Vmx)
            }
            Backend::Svm { nrips, asids } => {
                let asid = tag % (asids - 1) + 1;
                svm::SvmVcpu::new(&mut source, root, asid, &init, nrips, entry).map(Vcpu::Svm)
            }
        };
        (memory, vcpu.map_err(|e| source.explain("vCPU", e))?)
    };
    let mut state = VmState::new(config.name.clone(), memory, console);
    state.test_device = config.test_device.then(super::testdev::TestDevice::default);
    match &mut vcpu {
        Vcpu::Vmx(v) => state.on_host(v, env.hooks, config.time_limit_s, env.tsc_khz),
        Vcpu::Svm(v) => state.on_host(v, env.hooks, config.time_limit_s, env.tsc_khz),
    }
    if let Some(a) = active {
        state.guest_spec = a.guest;
        state.cpuid.expose_speculation_controls(&a.guest.view);
    }
    // The placement rule and the IBPB between VMs (crate::mitigations).
    let cpu = crate::percpu::this_cpu().ok_or("no per-CPU data")?;
    let placement = crate::mitigations::enter_vm(cpu.apic_id, tag, &cpu.last_vm).map_err(|sibling| {
        format!(
            "placement: CPU {} is an SMT sibling of CPU {sibling}, which runs another VM (smt_sharing=allow permits it)",
            cpu.apic_id
        )
    })?;
    log::info!(
        "VM {}: on CPU {} (APIC ID), {} SMT sibling(s) of its core in a guest{}",
        crate::console::Escaped(&config.name),
        cpu.apic_id,
        placement.siblings_in_guests,
        if placement.ibpb { ", IBPB issued (another VM ran here last)" } else { "" }
    );
    // Basalt's registers that no guest may change, and those it switches itself: the guest
    // starts from their reset values and Basalt gets its own back when the VM ends.
    let before = Snapshot::take();
    let switched = Switched::save();
    hoststate::reset_guest_visible();
    let svm = matches!(vcpu, Vcpu::Svm(_));
    if svm {
        // Time slices: the local APIC timer with the INTR intercept, and where another CPU is
        // online its NMI watchdog as a backstop (NMIs exit whatever the guest's RFLAGS.IF).
        let per_ms = *APIC_TICKS_PER_MS.call_once(|| apic::timer_ticks_per_ms(env.tsc_khz));
        apic::timer_periodic(idt::SLICE_VECTOR, per_ms.saturating_mul(SLICE_MS));
        (env.hooks.watchdog)(true);
    }
    // One run loop per backend, so the exit path makes no indirect calls.
    let outcome = match &mut vcpu {
        Vcpu::Vmx(v) => super::run(&mut state, v),
        Vcpu::Svm(v) => super::run(&mut state, v),
    };
    if svm {
        (env.hooks.watchdog)(false);
        apic::timer_stop();
    }
    basalt_arch::io::take_pending_interrupts();
    crate::mitigations::leave_vm(cpu.apic_id);
    drop(vcpu);
    switched.restore();
    let changed = before.differences(&Snapshot::take());
    let outcome = match (outcome, changed.is_empty()) {
        (outcome, true) => outcome,
        (VmOutcome::Passed, false) => {
            VmOutcome::Failed(format!("the guest changed Basalt's own registers: {}", changed.join(", ")))
        }
        (VmOutcome::Failed(why), false) => VmOutcome::Failed(format!(
            "{why}; and the guest changed Basalt's own registers: {}",
            changed.join(", ")
        )),
    };
    log::info!("VM {}: stats {}", crate::console::Escaped(&config.name), state.stats.report());
    Ok((outcome, state.stats))
}
