//! Running VMs on this machine: the backend chosen from CPUID, virtualization enabled on each
//! CPU, and a VM built from a boot module (RAM and every control structure charged to it),
//! run to its end and torn down. Kernel only: it touches physical memory and the CPU.

use super::account::{Account, ChargeError};
use super::config::{StartMode, VmConfig};
use super::multiboot::{AcpiPlace, BootModule};
use super::sources::VmSource;
use super::vcpus::VmShared;
use super::{setup, Console, HostHooks, VmOutcome, VmState};
use crate::frames::FrameAllocator;
use crate::kernel::FRAMES;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use basalt_arch::cpu::{CpuInfo, Virtualization};
use basalt_arch::hoststate::{self, Snapshot, Switched};
use basalt_arch::mtrr::{memtype, Mtrrs};
use basalt_arch::nested::{self, LeafPolicy, NestedFormat};
use basalt_arch::paging::PhysTables;
use basalt_arch::virt::InitialState;
use basalt_arch::virt::{FrameSource, VirtError};
use basalt_arch::{apic, idt, svm, vmx};
use basalt_boot::Module;
use basalt_devices::smbios::SMBIOS_BASE;
use basalt_loader::detect::{self, ImageKind};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use spin::Mutex;
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
    /// The host's wall clock at boot: (unix seconds, TSC then); `None` without a CMOS RTC.
    pub wall_clock: Option<(u64, u64)>,
}

impl RunEnv {
    /// The host's wall clock now, in unix seconds (the epoch without a CMOS RTC).
    fn unix_now(&self) -> u64 {
        let Some((secs, tsc)) = self.wall_clock else { return 0 };
        let elapsed = (self.hooks.now)().saturating_sub(tsc) / (self.tsc_khz.max(1) * 1000);
        secs + elapsed
    }
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

    /// Host pages one vCPU's control structures take.
    fn vcpu_pages(self) -> usize {
        match self {
            Backend::Vmx => vmx::VCPU_PAGES,
            Backend::Svm { .. } => svm::VCPU_PAGES,
        }
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
pub fn module_bytes(m: &Module) -> &'static [u8] {
    let len = m.end.saturating_sub(m.start) as usize;
    // SAFETY: the loader placed the module there; the frame allocator never hands it out and
    // nothing writes to it, so it is immutable for the rest of the boot.
    unsafe { core::slice::from_raw_parts(m.start as *const u8, len) }
}

/// Load a VM's image into its RAM as basalt_loader::detect classifies it: a Linux bzImage
/// through the boot protocol, a guest of Basalt's boot ABI (the note, or `mode=`), or a
/// multiboot kernel with its modules. Returns vCPU 0's first state.
fn load_image(
    memory: &super::memory::GuestMemory,
    config: &VmConfig,
    src: &VmSource<'_>,
    acpi: &basalt_devices::acpi::AcpiTables,
) -> Result<InitialState, String> {
    let image = src.image;
    match detect::classify(image, config.mode.is_some()).map_err(|e| format!("{e}"))? {
        ImageKind::Linux => {
            super::linux::load(memory, image, src.initrd, &config.cmdline, acpi.rsdp_address())
        }
        ImageKind::BasaltGuest => setup::load(memory, image, config.mode.unwrap_or(StartMode::Long)),
        ImageKind::Multiboot(_) => {
            let modules: Vec<BootModule<'_>> =
                src.modules.iter().map(|(bytes, string)| BootModule { bytes, string }).collect();
            let place = AcpiPlace { base: acpi.base, len: acpi.bytes.len() as u64, rsdp: acpi.rsdp() };
            let loaded = super::multiboot::load(memory, image, &config.cmdline, &modules, &place)?;
            log::info!("VM {}: {}", crate::console::Escaped(&config.name), loaded.summary);
            Ok(loaded.state)
        }
    }
}

/// A VM built by the first of its CPUs and run by all of them, one vCPU each. Everything here
/// is fixed once built except the locked account and notes; what the vCPUs share while they
/// run is in `shared` (atomics).
pub struct BuiltVm {
    pub config: VmConfig,
    pub shared: Arc<VmShared>,
    memory: super::memory::GuestMemory,
    nested_root: u64,
    /// vCPU 0's first state (the others wait for a start-up IPI).
    boot_state: InitialState,
    account: Mutex<Account>,
    tag: u32,
    env: RunEnv,
    backend: Backend,
    test_device: Option<Arc<Mutex<basalt_devices::testdev::TestDevice>>>,
    /// Findings a vCPU made as it ended (Basalt registers a guest changed), for the report.
    notes: Mutex<Vec<String>>,
    /// Each vCPU's statistics line, by index.
    stats: Mutex<Vec<String>>,
    /// RAM pages the test device hid (not present in the nested tables until their next
    /// nested fault).
    hidden: Mutex<Vec<u64>>,
    /// Its configuration and boot modules (image, initrd, multiboot modules), loaded again
    /// when the VM restarts.
    source: VmSource<'static>,
    /// The ACPI tables at their guest-physical base and the SMBIOS tables at SMBIOS_BASE,
    /// copied again when the VM restarts.
    acpi: basalt_devices::acpi::AcpiTables,
    smbios: Vec<u8>,
}

impl BuiltVm {
    /// Make the page at `gpa` present or not in this VM's nested tables (tables split for it
    /// are charged to the VM).
    fn set_present(&self, gpa: u64, present: bool) -> Result<(), String> {
        let mut guard = FRAMES.lock();
        let frames = guard.as_mut().ok_or("frame allocator not ready")?;
        let mut account = self.account.lock();
        let mut source = Charged { account: &mut account, frames, failure: None };
        let mut tables = PhysTables { alloc: || source.alloc(1) };
        match nested::set_page_present(
            &mut tables,
            self.nested_root,
            self.backend.format(),
            gpa & !0xFFF,
            present,
        ) {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("{gpa:#x} is not mapped")),
            Err(_) => Err(source.explain("nested page tables", "out of memory")),
        }
    }
}

impl super::NestedControl for BuiltVm {
    fn hide(&self, gpa: u64) -> Result<(), String> {
        if !self.memory.contains(gpa) {
            return Err(format!("{gpa:#x} is not guest RAM"));
        }
        let mut hidden = self.hidden.lock();
        if !hidden.contains(&(gpa & !0xFFF)) {
            self.set_present(gpa, false)?;
            hidden.push(gpa & !0xFFF);
        }
        Ok(())
    }

    fn restart(&self) -> Result<InitialState, String> {
        // Hidden pages come back (the test device's unmap does not outlive a reset).
        for gpa in core::mem::take(&mut *self.hidden.lock()) {
            self.set_present(gpa, true)?;
        }
        self.memory.zero(0, self.memory.size()).map_err(|_| String::from("the VM's RAM"))?;
        self.memory.write(self.acpi.base, &self.acpi.bytes).map_err(|_| String::from("the ACPI tables"))?;
        self.memory.write(SMBIOS_BASE, &self.smbios).map_err(|_| String::from("the SMBIOS tables"))?;
        let init = load_image(&self.memory, &self.config, &self.source, &self.acpi)?;
        self.shared.reset_irq();
        Ok(init)
    }

    fn boot_state(&self) -> Option<InitialState> {
        Some(self.boot_state)
    }

    fn reveal(&self, gpa: u64) -> bool {
        let mut hidden = self.hidden.lock();
        match hidden.iter().position(|&p| p == gpa & !0xFFF) {
            Some(i) => {
                hidden.swap_remove(i);
                self.set_present(gpa, true).is_ok()
            }
            None => false,
        }
    }
}

/// How a VM ended, reported by the last of its vCPUs.
pub struct Ended {
    pub name: String,
    pub outcome: VmOutcome,
    pub stats: String,
}

/// Build the VM a boot module describes: its RAM (zeroed, the image loaded), its nested page
/// tables, and what its vCPUs share; every frame charged to it. `Err` is (name, report).
pub fn build_vm(src: &VmSource<'static>, env: &RunEnv) -> Result<Arc<BuiltVm>, (String, String)> {
    let config = src.config.clone();
    let Some(backend) = Backend::get() else {
        return Err((config.name, "not started: no virtualization backend".into()));
    };
    // Built first with no limit, so that a VM whose quota is too small is told exactly what
    // it needs (its RAM, its nested tables, its vCPUs' control structures); then held to it.
    let mut account = Account::new(u64::MAX);
    // The device models and the firmware tables live on Basalt's heap: what building them
    // left allocated is charged to the VM.
    let (pc, device_bytes) = crate::heap::charged(|| {
        super::pc::build(&super::pc::PcConfig {
            vcpus: config.vcpus,
            mem_bytes: config.mem_bytes,
            tsc_hz: env.tsc_khz * 1000,
            unix_secs: env.unix_now(),
            debug_exit: config.debug_exit,
        })
    });
    let pc = match pc {
        Ok(pc) => pc,
        Err(e) => return Err((config.name, format!("not started: {e}"))),
    };
    // Cannot fail: the account has no limit yet.
    let _ = account.charge_heap(device_bytes);
    match build_memory(&config, backend, src, &mut account, &pc.acpi, &pc.smbios) {
        Ok((memory, nested_root, boot_state))
            if account.charged() + vcpus_bytes(&config, backend) > config.quota_bytes =>
        {
            let _ = (memory, nested_root, boot_state);
            let ram = config.mem_bytes;
            let devices = account.heap();
            let tables = account.charged() - ram - devices;
            let vcpus = vcpus_bytes(&config, backend);
            if let Some(frames) = FRAMES.lock().as_mut() {
                release_zeroed(&mut account, frames);
            }
            Err((
                config.name,
                format!(
                    "not started: it needs {} KiB of host memory (RAM {} KiB, nested page tables {} KiB, device models and firmware tables {} KiB, {} vCPU control structures {} KiB) but its quota is {} KiB",
                    (ram + tables + devices + vcpus).div_ceil(1024),
                    ram >> 10,
                    tables >> 10,
                    devices.div_ceil(1024),
                    config.vcpus,
                    vcpus >> 10,
                    config.quota_bytes >> 10
                ),
            ))
        }
        Ok((memory, nested_root, boot_state)) => {
            account.set_quota(config.quota_bytes);
            let tag = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
            let tsc_offset = 0u64.wrapping_sub((env.hooks.now)());
            let shared = Arc::new(VmShared::with_platform(
                config.name.clone(),
                config.vcpus,
                tsc_offset,
                crate::dispatch::kick,
                pc.platform,
            ));
            let test_device = config
                .test_device
                .then(|| Arc::new(Mutex::new(basalt_devices::testdev::TestDevice::default())));
            let stats = Mutex::new(alloc::vec![String::new(); config.vcpus as usize]);
            Ok(Arc::new(BuiltVm {
                config,
                shared,
                memory,
                nested_root,
                boot_state,
                account: Mutex::new(account),
                tag,
                env: *env,
                backend,
                test_device,
                notes: Mutex::new(Vec::new()),
                stats,
                hidden: Mutex::new(Vec::new()),
                source: src.clone(),
                acpi: pc.acpi,
                smbios: pc.smbios,
            }))
        }
        Err(e) => {
            if let Some(frames) = FRAMES.lock().as_mut() {
                release_zeroed(&mut account, frames);
            }
            Err((config.name, format!("not started: {e}")))
        }
    }
}

/// Give a VM's frames back zeroed: no frame leaves a VM with its data in it.
fn release_zeroed(account: &mut Account, frames: &mut FrameAllocator) {
    for (addr, pages) in account.allocations() {
        // SAFETY: the VM's own frames (identity-mapped); nothing of the VM runs on them any
        // more and nothing else holds them until `release` gives them back.
        unsafe { core::ptr::write_bytes(addr as *mut u8, 0, pages * 4096) };
    }
    account.release(frames);
}

/// What the control structures of a VM's vCPUs take (charged as each vCPU starts).
fn vcpus_bytes(config: &VmConfig, backend: Backend) -> u64 {
    config.vcpus as u64 * backend.vcpu_pages() as u64 * 4096
}

/// Guest RAM with the image in it, and the nested page tables that map it.
fn build_memory(
    config: &VmConfig,
    backend: Backend,
    src: &VmSource<'_>,
    account: &mut Account,
    acpi: &basalt_devices::acpi::AcpiTables,
    smbios: &[u8],
) -> Result<(super::memory::GuestMemory, u64, InitialState), String> {
    let pages = (config.mem_bytes / 4096) as usize;
    let mut guard = FRAMES.lock();
    let frames = guard.as_mut().ok_or("frame allocator not ready")?;
    // Guest RAM: aligned so the nested tables can use large pages (1 GiB for 1 GiB guests).
    let align = if config.mem_bytes >= 1 << 30 { 1 << 30 } else { 2 << 20 };
    let ram = match account.alloc(frames, pages, align) {
        Err(super::account::ChargeError::Host(_)) if align > 2 << 20 => account.alloc(frames, pages, 2 << 20),
        other => other,
    }
    .map_err(|e| format!("guest RAM: {e}"))?;
    // SAFETY: the RAM was just allocated for this VM and is identity-mapped.
    unsafe { core::ptr::write_bytes(ram as *mut u8, 0, config.mem_bytes as usize) };
    let mut memory = super::memory::GuestMemory::new();
    // SAFETY: [ram, ram + size) belongs to this VM's account until `release`.
    unsafe { memory.add(super::memory::GuestRegion { gpa: 0, size: config.mem_bytes, host: ram }) };
    // The ACPI tables in RAM, at the base the RSDP scan finds; then the image.
    memory
        .write(acpi.base, &acpi.bytes)
        .map_err(|_| format!("the ACPI tables at {:#x} do not fit in the VM's RAM", acpi.base))?;
    memory
        .write(SMBIOS_BASE, smbios)
        .map_err(|_| String::from("the SMBIOS tables do not fit in the VM's RAM"))?;
    let init = load_image(&memory, config, src, acpi)?;

    let format = backend.format();
    let paging = NESTED.get().ok_or("nested paging not probed")?;
    let memory_type = |addr: u64, len: u64| match &paging.mtrrs {
        Some(m) => m.type_of_range(addr, len),
        None => Some(memtype::WB),
    };
    let policy =
        LeafPolicy { mib_pages: paging.mib_pages, gib_pages: paging.gib_pages, memory_type: &memory_type };
    let mut source = Charged { account, frames, failure: None };
    let root = {
        let mut tables = PhysTables { alloc: || source.alloc(1) };
        nested::new_root(&mut tables).and_then(|root| {
            nested::map_range(&mut tables, root, format, 0, ram, config.mem_bytes, &policy).map(|_| root)
        })
    }
    .map_err(|_| source.explain("nested page tables", "out of memory"))?;
    Ok((memory, root, init))
}

/// Run vCPU `index` of `vm` on this CPU until the VM stops. The last vCPU to end frees the VM
/// and returns how it ended.
pub fn run_vcpu(vm: &Arc<BuiltVm>, index: u32, console: Console) -> Option<Ended> {
    let me = &vm.shared.vcpus[index as usize];
    if let Some(cpu) = crate::percpu::this_cpu() {
        me.place(cpu.apic_id);
    }
    if index != 0 {
        // Application processors start waiting for INIT-SIPI-SIPI from vCPU 0.
        me.set_mode(super::vcpus::Mode::WaitForSipi);
    }
    if let Err(why) = run_vcpu_here(vm, index, console) {
        let what = if index == 0 { "not started" } else { "stopped: a vCPU could not start" };
        vm.shared.stop(VmOutcome::Failed(format!("{what}: vCPU {index}: {why}")));
    }
    if !vm.shared.vcpu_ended(index) {
        return None;
    }
    // The last one out: nothing runs on this VM's memory or tables any more. They are zeroed
    // as they are taken back, so no frame leaves a VM with its data (and the next VM gets
    // them zeroed again when it is built).
    let charged = vm.account.lock().charged();
    if let Some(frames) = FRAMES.lock().as_mut() {
        release_zeroed(&mut vm.account.lock(), frames);
    }
    let notes = core::mem::take(&mut *vm.notes.lock());
    let outcome = match (vm.shared.outcome(), notes.is_empty()) {
        (Some(outcome), true) => outcome,
        (None, true) => VmOutcome::Failed("stopped with no outcome (a Basalt bug)".into()),
        (Some(VmOutcome::Failed(why)), false) => {
            VmOutcome::Failed(format!("{why}; and {}", notes.join("; ")))
        }
        (_, false) => VmOutcome::Failed(notes.join("; ")),
    };
    let stats = vm.stats.lock().join(" | ");
    Some(Ended {
        name: vm.config.name.clone(),
        outcome,
        stats: format!("{stats}; {} KiB charged of {} KiB quota", charged >> 10, vm.config.quota_bytes >> 10),
    })
}

fn run_vcpu_here(vm: &Arc<BuiltVm>, index: u32, console: Console) -> Result<(), String> {
    let config = &vm.config;
    let env = &vm.env;
    let active = crate::mitigations::ACTIVE.get();
    let entry = active.map(|a| a.entry).unwrap_or_default();
    // Application processors get their real state from the start-up IPI.
    let init = if index == 0 { vm.boot_state } else { InitialState::real_mode(0, 0, 0) };
    let mut vcpu = {
        let mut guard = FRAMES.lock();
        let frames = guard.as_mut().ok_or("frame allocator not ready")?;
        let mut account = vm.account.lock();
        let charged = account.charged();
        let mut source = Charged { account: &mut account, frames, failure: None };
        // One TLB tag per vCPU.
        let tag = vm.tag.wrapping_mul(crate::vm::config::MAX_VCPUS as u32).wrapping_add(index);
        let vcpu: Result<Vcpu, VirtError> = match vm.backend {
            Backend::Vmx => {
                let vpid = (tag % 0xFFFF + 1) as u16;
                vmx::VmxVcpu::new(&mut source, vm.nested_root, vpid, &init, entry).map(Vcpu::Vmx)
            }
            Backend::Svm { nrips, asids } => {
                let asid = tag % (asids - 1) + 1;
                svm::SvmVcpu::new(&mut source, vm.nested_root, asid, &init, nrips, entry).map(Vcpu::Svm)
            }
        };
        let vcpu = vcpu.map_err(|e| source.explain("vCPU", e))?;
        let taken = account.charged() - charged;
        if taken != vm.backend.vcpu_pages() as u64 * 4096 {
            // The quota check at build time counted on VCPU_PAGES: a Basalt bug to report.
            return Err(format!(
                "vCPU {index}: its control structures took {taken} bytes, not the {} pages its VM was checked for",
                vm.backend.vcpu_pages()
            ));
        }
        vcpu
    };
    let mut state = VmState::new(config.name.clone(), vm.memory.clone(), console);
    state.shared = vm.shared.clone();
    state.vcpu = index;
    state.test_device = vm.test_device.clone();
    state.nested = Some(vm.clone());
    state.on_poweroff = config.on_poweroff;
    state.on_reset = config.on_reset;
    state.on_crash = config.on_crash;
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
    let placement = crate::mitigations::enter_vm(cpu.apic_id, vm.tag, &cpu.last_vm).map_err(|sibling| {
        format!(
            "placement: CPU {} is an SMT sibling of CPU {sibling}, which runs another VM (smt_sharing=allow permits it)",
            cpu.apic_id
        )
    })?;
    log::info!(
        "VM {}: vCPU {index} on CPU {} (APIC ID), {} SMT sibling(s) of its core in a guest{}",
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
    slice_ticks(env);
    apic::timer_stop();
    let svm = matches!(vcpu, Vcpu::Svm(_));
    let slice = env.tsc_khz.saturating_mul(SLICE_MS as u64);
    // SVM's slices are the host timer; VMX's its preemption timer.
    state.slice_ticks = if svm { slice } else { 0 };
    state.idle_ticks = slice;
    if svm {
        // Time slices: the local APIC timer with the INTR intercept (armed before each entry,
        // `arm_timer`), and where another CPU is online its NMI watchdog as a backstop (NMIs
        // exit whatever the guest's RFLAGS.IF).
        (env.hooks.watchdog)(true);
    }
    // One run loop per backend, so the exit path makes no indirect calls.
    match &mut vcpu {
        Vcpu::Vmx(v) => super::run(&mut state, v),
        Vcpu::Svm(v) => super::run(&mut state, v),
    };
    // What the guest's console UART sent after its last newline.
    vm.shared.platform.flush_console(&mut |line| state.console(format_args!("{line}")));
    if svm {
        (env.hooks.watchdog)(false);
    }
    apic::timer_stop();
    basalt_arch::io::take_pending_interrupts();
    crate::mitigations::leave_vm(cpu.apic_id);
    drop(vcpu);
    switched.restore();
    let changed = before.differences(&Snapshot::take());
    if !changed.is_empty() {
        vm.notes.lock().push(format!("the guest changed Basalt's own registers: {}", changed.join(", ")));
    }
    let name = crate::console::Escaped(&config.name);
    if config.vcpus == 1 {
        log::info!("VM {name}: stats {}", state.stats.report());
    } else {
        log::info!("VM {name}: vCPU {index} stats {}", state.stats.report());
    }
    if let Some(line) = vm.stats.lock().get_mut(index as usize) {
        *line = format!("{}", state.stats);
    }
    Ok(())
}

/// Local APIC timer ticks per millisecond.
fn slice_ticks(env: &RunEnv) -> u32 {
    TSC_KHZ.store(env.tsc_khz, Ordering::Relaxed);
    *APIC_TICKS_PER_MS.call_once(|| apic::timer_ticks_per_ms(env.tsc_khz))
}

static TSC_KHZ: AtomicU64 = AtomicU64::new(0);

/// The `arm_at` service of the VM core: this CPU's local APIC timer fires once at host TSC
/// `at` (`now` is the TSC now). On SVM it ends time slices (with the INTR intercept); on both
/// backends it brings a vCPU out of its guest or its sleep for a device's deadline.
pub fn arm_at(at: u64, now: u64) {
    let khz = TSC_KHZ.load(Ordering::Relaxed).max(1);
    let per_ms = APIC_TICKS_PER_MS.get().copied().unwrap_or(1_000) as u64;
    let ticks = (at.saturating_sub(now) as u128 * per_ms as u128 / khz as u128).min(u32::MAX as u128) as u32;
    apic::timer_oneshot(idt::SLICE_VECTOR, ticks);
}

/// What a halted vCPU does: sleep until a host interrupt (a kick, or the timer `arm_at` set).
pub fn idle() {
    x86_64::instructions::interrupts::enable_and_hlt();
    x86_64::instructions::interrupts::disable();
}
