//! The arch-neutral VM: guest memory, the emulated state the exit handlers work on, one vCPU,
//! and the run loop that turns exits into handler calls. Nothing here names a VMCS or a VMCB:
//! the vCPU is any [`VirtualCpu`] (VMX, SVM, or a scripted one in the tests).

pub mod account;
pub mod apic;
pub mod config;
pub mod events;
#[cfg(target_os = "none")]
pub mod host;
pub mod linux;
pub mod memory;
pub mod msrs;
pub mod multiboot;
pub mod pc;
pub mod placement;
pub mod platform;
pub mod setup;
pub mod sources;
pub mod stats;
pub mod vcpus;
pub mod walk;

use crate::exits;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use basalt_abi::ExitCounter;
use basalt_arch::virt::VirtualCpu;
use events::EventQueue;
use memory::GuestMemory;
use spin::Mutex;
use stats::{ExitKind, ExitStats};

/// How a VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmOutcome {
    /// The guest reported success (ucall Done).
    Passed,
    /// The guest ended its VM itself without a verdict: it powered off, reset (with
    /// `on_reset=stop`), or wrote to its debug-exit port; the text says which (and the status).
    Ended(String),
    /// The guest failed an assertion, or Basalt stopped it; the text says which and where.
    Failed(String),
}

/// What a handler decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Continue,
    Stop(VmOutcome),
}

/// Where a VM's console lines go (the serial console in the kernel, a buffer in tests).
pub type Console = Box<dyn FnMut(core::fmt::Arguments<'_>) + Send>;

/// What the VM core asks of the machine it runs on (the kernel fills these in; host tests use
/// [`HostHooks::none`]).
#[derive(Debug, Clone, Copy)]
pub struct HostHooks {
    /// Have another CPU send an NMI to this CPU after this many microseconds.
    pub request_nmi: fn(u64) -> Result<(), &'static str>,
    /// How many NMIs Basalt's handler has taken on this CPU.
    pub nmis_taken: fn() -> u64,
    /// The time-stamp counter.
    pub now: fn() -> u64,
    /// Have another CPU send this CPU an NMI at regular intervals while on (a backstop time
    /// slice); false if no CPU can.
    pub watchdog: fn(bool) -> bool,
    /// Sleep until a host interrupt arrives (a kick, or the timer `arm_at` set).
    pub idle: fn(),
    /// Have this CPU's timer interrupt it at host TSC `at` (the first argument; the second
    /// is the TSC now): a guest running then exits.
    pub arm_at: fn(u64, u64),
}

impl HostHooks {
    /// No other CPU, no NMIs, the real TSC.
    pub fn none() -> Self {
        HostHooks {
            request_nmi: |_| Err("no other CPU to send it"),
            nmis_taken: || 0,
            now: basalt_arch::io::rdtsc,
            watchdog: |_| false,
            idle: || {},
            arm_at: |_, _| {},
        }
    }
}

/// Changes to a VM's nested page tables while it runs (the kernel implements it on the VM's
/// tables and frames; host tests have none).
pub trait NestedControl: Send + Sync {
    /// Make the RAM page at `gpa` not present until the next nested fault on it (the test
    /// device's unmap, to make an event's delivery exit half-way).
    fn hide(&self, gpa: u64) -> Result<(), String>;
    /// If the page at `gpa` was hidden, map it again and say so.
    fn reveal(&self, gpa: u64) -> bool;
    /// Put the VM back as it was built, for a restart: RAM zeroed with the image loaded again,
    /// the ACPI tables, the interrupt controllers at reset (the RTC keeps its time and CMOS, as
    /// a PC's does). Returns vCPU 0's first state.
    fn restart(&self) -> Result<basalt_arch::virt::InitialState, String> {
        Err("this VM cannot restart".into())
    }
    /// vCPU 0's first state.
    fn boot_state(&self) -> Option<basalt_arch::virt::InitialState> {
        None
    }
}

/// What a VM does when its guest powers it off or resets it (`on_poweroff=`, `on_reset=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnEnd {
    /// The VM stops; the report says how it ended.
    #[default]
    Stop,
    /// The VM starts again from its image, as a PC does after a reset.
    Restart,
}

/// What a device access asked of the VM (basalt_devices::bus::Effect). A power-off or reset
/// whose policy is `Restart` sets `restart_pending` (the run loop restarts the VM).
pub fn device_effect(vm: &mut VmState, effect: basalt_devices::bus::Effect) -> Action {
    use basalt_devices::bus::Effect;
    let policy = match effect {
        Effect::PowerOff => vm.on_poweroff,
        Effect::Reset => vm.on_reset,
        _ => OnEnd::Stop,
    };
    if policy == OnEnd::Restart && matches!(effect, Effect::PowerOff | Effect::Reset) {
        vm.restart_pending = true;
        return Action::Continue;
    }
    match effect {
        Effect::None => Action::Continue,
        Effect::PowerOff => Action::Stop(VmOutcome::Ended("powered off (ACPI S5)".into())),
        Effect::Reset => Action::Stop(VmOutcome::Ended("reset by the guest".into())),
        Effect::DebugExit(value) => {
            Action::Stop(VmOutcome::Ended(alloc::format!("debug-exit status {}", (value << 1) | 1)))
        }
    }
}

/// The guest crashed (a triple fault): the VM stops with `report`, or with `on_crash=restart`
/// starts again from its image as after a reset.
pub fn crashed(vm: &mut VmState, report: String) -> Action {
    if vm.on_crash == OnEnd::Restart {
        log::info!("VM {}: {}; restarting it (on_crash=restart)", crate::console::Escaped(&vm.name), report);
        vm.restart_pending = true;
        return Action::Continue;
    }
    Action::Stop(VmOutcome::Failed(report))
}

/// The time limit of a running VM, in TSC ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeLimit {
    pub seconds: u64,
    /// The TSC value past which the VM is stopped.
    pub deadline: u64,
}

/// An exception Basalt reflected into the guest, to see a guest that makes no progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reflected {
    pub vector: u8,
    pub rip: u64,
    /// The exit count when it was last reflected.
    pub at_exit: u64,
    /// How many times in a row, at this RIP, with no other exit in between.
    pub times: u32,
}

/// A VM's software state: everything the exit handlers read and change except the vCPU.
pub struct VmState {
    pub name: String,
    pub memory: GuestMemory,
    pub stats: ExitStats,
    /// Basalt's scratch port register (see `exits::SCRATCH_PORT`).
    pub scratch_port: u32,
    /// Basalt's scratch MSR (see `exits::SCRATCH_MSR`).
    pub scratch_msr: u64,
    /// Interrupts, exceptions and interrupted events waiting for an entry.
    pub events: EventQueue,
    /// The VM's CPUID answers, computed when the VM is made.
    pub cpuid: exits::CpuidTable,
    /// Stop the VM once the TSC passes this (checked when a time slice ends).
    pub time_limit: Option<TimeLimit>,
    /// The last exception reflected into the guest (exception-loop detection).
    pub reflected: Reflected,
    pub host: HostHooks,
    /// `host.nmis_taken()` when the VM started.
    pub nmis_at_start: u64,
    /// Added to the host TSC to give the guest's (wrapping): the VM's TSC starts near zero.
    pub tsc_offset: u64,
    /// The MSRs kept in software (MTRRs, PAT, MISC_ENABLE, machine check).
    pub msrs: msrs::GuestMsrs,
    /// IA32_TSC_ADJUST as the guest sees it (SDM 17.17.3).
    pub tsc_adjust: u64,
    /// The MMIO test device, where the configuration asks for it (`testdev`), shared by the
    /// VM's vCPUs.
    pub test_device: Option<Arc<Mutex<basalt_devices::testdev::TestDevice>>>,
    /// Changes to the VM's nested page tables, where the machine offers them.
    pub nested: Option<Arc<dyn NestedControl>>,
    /// What the guest's power-off, reset and triple fault do.
    pub on_poweroff: OnEnd,
    pub on_reset: OnEnd,
    pub on_crash: OnEnd,
    /// A power-off or reset asked for a restart, done before the next entry.
    pub restart_pending: bool,
    /// What this VM's vCPUs share, and this vCPU's index in it.
    pub shared: Arc<vcpus::VmShared>,
    pub vcpu: u32,
    /// This vCPU's local APIC (private to it: other CPUs post to `shared`).
    pub lapic: basalt_devices::lapic::Lapic,
    /// The host TSC at which this CPU's timer is armed (u64::MAX: not armed; 0 or any past
    /// value: it has fired).
    pub armed: u64,
    /// The time slice the host timer enforces, in TSC ticks (0: the backend has its own,
    /// VMX's preemption timer), and the longest a halted vCPU sleeps between time-limit checks.
    pub slice_ticks: u64,
    pub idle_ticks: u64,
    /// The guest-linear to guest-physical translation of the code at RIP, reused while it
    /// holds (instruction fetches without NRIPS).
    pub code_walk: walk::TranslationCache,
    /// The speculation controls the guest sees (ARCH_CAPABILITIES, PRED_CMD, FLUSH_CMD; the
    /// vCPU holds SPEC_CTRL): none until the host sets them (`crate::mitigations`).
    pub guest_spec: crate::mitigations::GuestSpec,
    console: Console,
}

impl VmState {
    pub fn new(name: String, memory: GuestMemory, console: Console) -> Self {
        VmState {
            name,
            memory,
            stats: ExitStats::default(),
            scratch_port: 0,
            scratch_msr: 0,
            events: EventQueue::default(),
            cpuid: exits::CpuidTable::new(),
            time_limit: None,
            reflected: Reflected::default(),
            host: HostHooks::none(),
            nmis_at_start: 0,
            tsc_offset: 0,
            msrs: msrs::GuestMsrs::new(
                core::arch::x86_64::__cpuid(0x8000_0000)
                    .eax
                    .checked_sub(0x8000_0007)
                    .map_or(36, |_| core::arch::x86_64::__cpuid(0x8000_0008).eax as u8),
            ),
            tsc_adjust: 0,
            test_device: None,
            nested: None,
            on_poweroff: OnEnd::Stop,
            on_reset: OnEnd::Stop,
            on_crash: OnEnd::Stop,
            restart_pending: false,
            shared: Arc::new(vcpus::VmShared::new(String::new(), 1, 0, |_| {})),
            vcpu: 0,
            lapic: apic::new_lapic(0, 1_000_000_000, 36),
            // "Passed": the first entry arms the timer (SVM: the first time slice).
            armed: 0,
            slice_ticks: 0,
            idle_ticks: 0,
            code_walk: walk::TranslationCache::default(),
            guest_spec: crate::mitigations::GuestSpec::default(),
            console,
        }
    }

    /// Use the machine's services, stop the VM after `seconds` of a TSC at `tsc_khz`, report
    /// that rate in CPUID, and give the vCPU the VM's TSC offset (its TSC started near zero).
    pub fn on_host<V: VirtualCpu + ?Sized>(
        &mut self,
        vcpu: &mut V,
        host: HostHooks,
        time_limit_s: Option<u64>,
        tsc_khz: u64,
    ) {
        self.host = host;
        self.cpuid.set_tsc_khz(tsc_khz);
        self.cpuid.set_topology(self.vcpu, self.shared.vcpus.len() as u32);
        self.tsc_offset = self.shared.tsc_offset;
        self.lapic = apic::new_lapic(self.vcpu, tsc_khz.saturating_mul(1000), self.msrs.phys_bits);
        self.shared.vcpus[self.vcpu as usize].publish_apic(self.lapic.destination_state());
        vcpu.set_tsc_offset(self.tsc_offset);
        self.nmis_at_start = (host.nmis_taken)();
        self.time_limit = time_limit_s.map(|seconds| TimeLimit {
            seconds,
            deadline: (host.now)().saturating_add(seconds.saturating_mul(tsc_khz).saturating_mul(1000)),
        });
    }

    /// The host TSC by which this vCPU must leave its guest for a timer of its own or of the
    /// VM's devices (u64::MAX: none).
    #[inline]
    pub fn next_deadline(&self) -> u64 {
        let devices = if self.vcpu == 0 { self.shared.platform.deadline() } else { u64::MAX };
        match self.lapic.timer_deadline().map_or(devices, |t| t.min(devices)) {
            u64::MAX => u64::MAX,
            guest => guest.wrapping_sub(self.tsc_offset),
        }
    }

    /// The nested page tables changed: flush this vCPU's guest TLB and have the others flush
    /// theirs before they next enter.
    pub fn nested_tables_changed<V: VirtualCpu + ?Sized>(&self, vcpu: &mut V) {
        vcpu.flush_guest_tlb();
        for (i, other) in self.shared.vcpus.iter().enumerate() {
            if i != self.vcpu as usize {
                self.shared.kick(other.request(vcpus::request::TLB_FLUSH));
            }
        }
    }

    /// Whether an external interrupt waits for this vCPU (its LAPIC's; the PIC's on vCPU 0).
    pub fn interrupt_waiting(&self) -> bool {
        self.lapic.pending_interrupt().is_some()
            || (self.vcpu == 0 && self.lapic.pic_accepted() && self.shared.irq.lock().pic_intr())
    }

    /// Print a line on the VM's console.
    pub fn console(&mut self, args: core::fmt::Arguments<'_>) {
        (self.console)(args)
    }

    /// Exits of the kind a guest asked about through the ExitCount ucall.
    pub fn exit_count(&self, counter: u64) -> u64 {
        let kind = match counter {
            c if c == ExitCounter::Cpuid as u64 => ExitKind::Cpuid,
            c if c == ExitCounter::Hlt as u64 => ExitKind::Hlt,
            c if c == ExitCounter::Io as u64 => ExitKind::Io,
            c if c == ExitCounter::Msr as u64 => ExitKind::Msr,
            c if c == ExitCounter::Hypercall as u64 => ExitKind::Hypercall,
            c if c == ExitCounter::Nmi as u64 => ExitKind::Nmi,
            c if c == ExitCounter::Instruction as u64 => ExitKind::Instruction,
            c if c == ExitCounter::Redelivered as u64 => return self.stats.injected.redelivered,
            c if c == ExitCounter::HostNmi as u64 => {
                return (self.host.nmis_taken)().wrapping_sub(self.nmis_at_start)
            }
            _ => return u64::MAX,
        };
        self.stats.get(kind)
    }
}

/// Run `vcpu` until its VM stops (this vCPU's handler stopped it, or another vCPU did). Before
/// each entry the vCPU takes what other CPUs posted to it, sleeps while it is halted or waits
/// for a start-up IPI, and the event queue picks the one event to inject (or asks for an
/// interrupt window); after each exit the event it cut short, if any, goes back into the queue.
pub fn run<V: VirtualCpu + ?Sized>(state: &mut VmState, vcpu: &mut V) -> VmOutcome {
    let shared = state.shared.clone();
    let me = &shared.vcpus[state.vcpu as usize];
    let stopped = |outcome: Option<VmOutcome>| {
        outcome.unwrap_or_else(|| VmOutcome::Failed("stopped: the VM was stopped".into()))
    };
    let mut exited_at = basalt_arch::io::rdtsc();
    loop {
        if me.has_requests() || me.mode() != vcpus::Mode::Outside {
            if let Err(stop) = between_runs(state, vcpu, me) {
                if let Some(outcome) = stop {
                    shared.stop(outcome);
                }
                return stopped(shared.outcome());
            }
        }
        // The kick protocol (vm::vcpus): in the guest first, then a last look at the requests.
        me.set_mode(vcpus::Mode::InGuest);
        if me.has_requests() {
            me.set_mode(vcpus::Mode::Outside);
            continue;
        }
        apic::before_entry(state);
        let shared_irq = &shared.irq;
        let mut sources =
            apic::Sources { lapic: &mut state.lapic, pic: (state.vcpu == 0).then_some(shared_irq) };
        let entry = state.events.next(|| vcpu.interruptible(), || vcpu.nmi_blocked(), &mut sources);
        if let Some(event) = entry.inject {
            state.stats.injected(&event);
            vcpu.inject(event);
        }
        if let Some(on) = entry.window {
            vcpu.request_interrupt_window(on);
        }
        if let Some(on) = entry.nmi_window {
            vcpu.request_nmi_window(on);
        }
        // The host timer: armed for the nearest device deadline and (SVM) the slice's end,
        // reprogrammed only when that is sooner than what is armed or the armed time passed.
        let entered_at = basalt_arch::io::rdtsc();
        let deadline = state.next_deadline();
        if deadline < state.armed || state.armed <= entered_at {
            let slice_end = match state.slice_ticks {
                0 => u64::MAX,
                t => entered_at.saturating_add(t),
            };
            state.armed = deadline.min(slice_end);
            if state.armed != u64::MAX {
                (state.host.arm_at)(state.armed, entered_at);
            }
        }
        let exit = vcpu.run();
        let now = basalt_arch::io::rdtsc();
        me.leave_guest();
        state.stats.basalt_ticks += entered_at.wrapping_sub(exited_at);
        state.stats.guest_ticks += now.wrapping_sub(entered_at);
        exited_at = now;
        if let Some(cut_short) = vcpu.interrupted_event() {
            state.events.interrupted(cut_short);
        }
        state.stats.count(&exit);
        if let Action::Stop(outcome) = exits::dispatch(state, vcpu, exit) {
            shared.stop(outcome);
            return stopped(shared.outcome());
        }
        if state.restart_pending {
            if let Err(outcome) = restart(state, vcpu) {
                shared.stop(outcome);
                return stopped(shared.outcome());
            }
        }
    }
}

/// Restart the VM its guest reset (or powered off) with a restart policy: the other vCPUs
/// get INIT and wait for a start-up IPI again, the VM's RAM and devices go back to their
/// state at build, and this vCPU starts at the image's entry with its LAPIC and events reset.
#[cold]
fn restart<V: VirtualCpu + ?Sized>(state: &mut VmState, vcpu: &mut V) -> Result<(), VmOutcome> {
    state.restart_pending = false;
    // The others stop first (INIT), and are out of the guest before its RAM is reloaded.
    let me = state.vcpu as usize;
    for (i, other) in state.shared.vcpus.iter().enumerate() {
        if i != me {
            state.shared.kick(other.request(vcpus::request::INIT));
        }
    }
    for (i, other) in state.shared.vcpus.iter().enumerate() {
        let parked = || matches!(other.mode(), vcpus::Mode::WaitForSipi | vcpus::Mode::Stopped);
        let mut spins = 0u64;
        while i != me && !parked() && !state.shared.stopping() {
            core::hint::spin_loop();
            spins += 1;
            if spins > 1 << 32 {
                return Err(VmOutcome::Failed(alloc::format!(
                    "stopped: restart after a reset: vCPU {i} did not take its INIT"
                )));
            }
        }
    }
    let nested = state.nested.clone();
    let init = nested
        .ok_or_else(|| String::from("this VM cannot restart"))
        .and_then(|n| n.restart())
        .map_err(|why| VmOutcome::Failed(alloc::format!("stopped: restart after a reset failed: {why}")))?;
    if me != 0 {
        // vCPU 0 starts again as the BSP; this application processor waits for its start-up
        // IPI, as the others do.
        state.shared.kick(state.shared.vcpus[0].request(vcpus::request::RESTART));
        let _ = state.shared.vcpus[me].request(vcpus::request::INIT);
        return Ok(());
    }
    boot_again(state, vcpu, &init);
    Ok(())
}

/// vCPU 0 starts again at the VM's first state, its LAPIC and events reset.
fn boot_again<V: VirtualCpu + ?Sized>(
    state: &mut VmState,
    vcpu: &mut V,
    init: &basalt_arch::virt::InitialState,
) {
    state.events = EventQueue::default();
    state.lapic.reset_init();
    state.lapic.firmware_lint0();
    state.shared.vcpus[0].publish_apic(state.lapic.destination_state());
    vcpu.load_state(init);
    state.shared.vcpus[0].set_mode(vcpus::Mode::Outside);
    log::info!("VM {}: restarted by its guest", crate::console::Escaped(&state.name));
}

/// Take this vCPU's requests, and sleep while it is halted or waits for SIPI. `Err`: the VM
/// ends (with this outcome, if it is this vCPU that ends it).
fn between_runs<V: VirtualCpu + ?Sized>(
    state: &mut VmState,
    vcpu: &mut V,
    me: &vcpus::VcpuShared,
) -> Result<(), Option<VmOutcome>> {
    use vcpus::{request, Mode};
    loop {
        let requests = me.take_requests();
        if requests & request::STOP != 0 {
            return Err(None);
        }
        if requests & request::EVENT != 0 {
            let (irr, tmr) = me.take_posted();
            for (word, bits) in irr.iter().enumerate() {
                let mut bits = *bits;
                while bits != 0 {
                    let bit = bits.trailing_zeros();
                    bits &= bits - 1;
                    let msg = basalt_devices::irq::InterruptMessage {
                        vector: (word as u32 * 64 + bit) as u8,
                        delivery: basalt_devices::irq::DeliveryMode::Fixed,
                        destination: basalt_devices::irq::Destination::This,
                        level_triggered: tmr[word] & (1 << bit) != 0,
                        assert: true,
                    };
                    state.lapic.deliver(&msg);
                }
            }
        }
        if requests & request::NMI != 0 {
            state.events.nmi();
        }
        if requests & request::TLB_FLUSH != 0 {
            vcpu.flush_guest_tlb();
        }
        if requests & request::INIT != 0 {
            // INIT: the vCPU stops and waits for a start-up IPI; what was pending is dropped.
            state.events = events::EventQueue::default();
            state.lapic.reset_init();
            me.publish_apic(state.lapic.destination_state());
            me.set_mode(Mode::WaitForSipi);
        }
        if requests & request::SIPI != 0 {
            let vector = me.take_sipi();
            if let (Some(vector), Mode::WaitForSipi) = (vector, me.mode()) {
                // SDM 10.4.4: the AP starts in real mode at vector:0000 (CS = vector << 8).
                vcpu.load_state(&basalt_arch::virt::InitialState::real_mode((vector as u16) << 8, 0, 0));
                me.set_mode(Mode::Outside);
            }
        }
        if requests & request::RESTART != 0 {
            if let Some(init) = state.nested.as_ref().and_then(|n| n.boot_state()) {
                boot_again(state, vcpu, &init);
            }
        }
        let sleeping = match me.mode() {
            Mode::WaitForSipi => true,
            Mode::Halted => {
                // What came due while it slept (its LAPIC timer, vCPU 0's device clocks)
                // fires now, so that it can wake it.
                apic::before_entry(state);
                let if_set = vcpu.rflags() & basalt_arch::virt::bits::RFLAGS_IF != 0;
                if state.events.has_wakeup(if_set) || (if_set && state.interrupt_waiting()) {
                    me.set_mode(Mode::Outside);
                    false
                } else {
                    true
                }
            }
            _ => false,
        };
        if !sleeping {
            return Ok(());
        }
        if let Some(Action::Stop(outcome)) = exits::past_time_limit(state) {
            return Err(Some(outcome));
        }
        // Asleep in `mode`: a sender that posts from now on sees it and kicks (vm::vcpus).
        if !me.has_requests() {
            let now = basalt_arch::io::rdtsc();
            state.armed = state.next_deadline().min(now.saturating_add(state.idle_ticks.max(1)));
            (state.host.arm_at)(state.armed, now);
            (state.host.idle)();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exits::{SCRATCH_MSR, SCRATCH_PORT};
    use alloc::sync::Arc;
    use alloc::vec;
    use alloc::vec::Vec;
    use basalt_abi::{UcallKind, UcallRecord, UCALL_PORT, UCALL_RECORD_SIZE};
    use basalt_arch::virt::{Event, GuestGprs, InterruptedEvent, IoAccess, StateSummary, VmExit};
    use spin::Mutex;

    /// One scripted step: set registers, then exit.
    type Step = (fn(&mut GuestGprs), VmExit);

    /// A vCPU that replays a script: each step sets registers, then "exits" with the given exit.
    struct Scripted {
        steps: Vec<Step>,
        next: usize,
        gprs: GuestGprs,
        rip: u64,
        rflags_if: bool,
        /// IF becomes 1 once this many steps have run (a guest's `sti`).
        if_from_step: Option<usize>,
        injected: Vec<Event>,
        window: bool,
        /// The guest's IA32_SPEC_CTRL and its writable bits, where virtualized.
        spec_ctrl: Option<(u64, u64)>,
    }

    impl Scripted {
        fn new(steps: Vec<Step>) -> Self {
            Scripted {
                steps,
                next: 0,
                gprs: GuestGprs::default(),
                rip: 0x1000,
                rflags_if: true,
                if_from_step: None,
                injected: vec![],
                window: false,
                spec_ctrl: None,
            }
        }
    }

    impl VirtualCpu for Scripted {
        fn run(&mut self) -> VmExit {
            let (set, exit) = self.steps.get(self.next).copied().expect("the VM ran past its script");
            self.next += 1;
            if self.if_from_step.is_some_and(|n| self.next >= n) {
                self.rflags_if = true;
            }
            set(&mut self.gprs);
            exit
        }
        fn gprs(&mut self) -> &mut GuestGprs {
            &mut self.gprs
        }
        fn skip_instruction(&mut self) -> bool {
            self.rip += 2;
            true
        }
        fn advance_rip(&mut self, len: u64) {
            self.rip += len;
        }
        fn inject(&mut self, event: Event) {
            self.injected.push(event);
        }
        fn interrupted_event(&self) -> Option<InterruptedEvent> {
            None
        }
        fn efer(&self) -> u64 {
            0
        }
        fn set_tsc_offset(&mut self, _: u64) {}
        fn rsp(&self) -> u64 {
            0
        }
        fn set_rsp(&mut self, _: u64) {}
        fn rip(&self) -> u64 {
            self.rip
        }
        fn set_rip(&mut self, value: u64) {
            self.rip = value;
        }
        fn rflags(&self) -> u64 {
            2 | if self.rflags_if { basalt_arch::virt::bits::RFLAGS_IF } else { 0 }
        }
        fn set_rflags(&mut self, _: u64) {}
        fn segment_base(&self, _: u8) -> u64 {
            0
        }
        fn set_cr2(&mut self, _: u64) {}
        fn guest_msr(&self, _: u32) -> Option<u64> {
            None
        }
        fn set_guest_msr(&mut self, _: u32, _: u64) -> bool {
            false
        }
        fn set_efer(&mut self, _: u64) {}
        fn spec_ctrl(&self) -> Option<(u64, u64)> {
            self.spec_ctrl
        }
        fn set_spec_ctrl(&mut self, value: u64) {
            self.spec_ctrl = self.spec_ctrl.map(|(_, writable)| (value & writable, writable));
        }
        fn interruptible(&self) -> bool {
            self.rflags_if
        }
        fn request_interrupt_window(&mut self, on: bool) {
            self.window = on;
        }
        fn summary(&self) -> StateSummary {
            StateSummary { rip: self.rip, ..Default::default() }
        }
        fn nmi_blocked(&self) -> bool {
            false
        }
        fn flush_guest_tlb(&mut self) {}
        fn request_nmi_window(&mut self, _: bool) {}
        fn load_state(&mut self, init: &basalt_arch::virt::InitialState) {
            self.rip = init.rip;
            self.gprs = init.gprs;
        }
    }

    const RECORD_GPA: u64 = 0x2000;

    fn vm_with(ram: &mut [u8]) -> (VmState, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let console: Console = Box::new(move |a| sink.lock().push(alloc::format!("{a}")));
        (VmState::new("t".into(), memory::tests::host_backed(ram, 0), console), lines)
    }

    fn put_record(vm: &VmState, r: UcallRecord) {
        // SAFETY: UcallRecord is repr(C) plain data.
        let bytes: [u8; UCALL_RECORD_SIZE] = unsafe { core::mem::transmute(r) };
        vm.memory.write(RECORD_GPA, &bytes).unwrap();
    }

    fn out(port: u16, size: u8) -> VmExit {
        VmExit::Io(IoAccess { port, size, write: true, string: false, rep: false })
    }
    fn inp(port: u16, size: u8) -> VmExit {
        VmExit::Io(IoAccess { port, size, write: false, string: false, rep: false })
    }
    fn ucall_regs(g: &mut GuestGprs) {
        g.rax = RECORD_GPA;
    }
    fn nothing(_: &mut GuestGprs) {}

    #[test]
    fn done_ucall_passes_and_cpuid_exits_are_answered_and_counted() {
        let mut ram = vec![0u8; 1 << 20];
        let (mut vm, _) = vm_with(&mut ram);
        put_record(&vm, UcallRecord::new(UcallKind::Done, "g.rs", 1, "", [0; 4]));
        fn hv_leaf(g: &mut GuestGprs) {
            g.rax = 0x4000_0000;
        }
        let mut cpu = Scripted::new(vec![(hv_leaf, VmExit::Cpuid), (ucall_regs, out(UCALL_PORT, 4))]);
        assert_eq!(run(&mut vm, &mut cpu), VmOutcome::Passed);
        assert_eq!(cpu.gprs.rbx as u32, u32::from_le_bytes(*b"Basa"));
        assert_eq!(cpu.rip, 0x1000 + 2, "CPUID skipped; the final ucall needs no skip");
        assert_eq!((vm.stats.get(ExitKind::Cpuid), vm.stats.get(ExitKind::Io)), (1, 1));
    }

    #[test]
    fn assertion_failure_reports_file_line_and_values() {
        let mut ram = vec![0u8; 1 << 20];
        let (mut vm, _) = vm_with(&mut ram);
        put_record(
            &vm,
            UcallRecord::new(UcallKind::AssertFail, "tests/src/bin/fail.rs", 12, "1 + 1 == 3", [2, 3, 0, 0]),
        );
        let mut cpu = Scripted::new(vec![(ucall_regs, out(UCALL_PORT, 4))]);
        let VmOutcome::Failed(msg) = run(&mut vm, &mut cpu) else { panic!("must fail") };
        assert_eq!(msg, "guest assertion failed at tests/src/bin/fail.rs:12: 1 + 1 == 3 (values 0x2, 0x3)");
    }

    #[test]
    fn scratch_port_keeps_the_bytes_of_each_size_and_unassigned_ports_float() {
        let mut ram = vec![0u8; 1 << 20];
        let (mut vm, _) = vm_with(&mut ram);
        put_record(&vm, UcallRecord::new(UcallKind::Done, "g.rs", 1, "", [0; 4]));
        fn v4(g: &mut GuestGprs) {
            g.rax = 0xFFFF_FFFF_1234_5678;
        }
        fn v1(g: &mut GuestGprs) {
            g.rax = 0xAB;
        }
        fn marker(g: &mut GuestGprs) {
            g.rax = 0x7777_7777_7777_0000;
        }
        let mut cpu = Scripted::new(vec![
            (v4, out(SCRATCH_PORT, 4)),
            (v1, out(SCRATCH_PORT, 1)),
            (marker, inp(SCRATCH_PORT, 2)),
        ]);
        // Run three steps by hand through dispatch to look at RAX in between.
        for _ in 0..3 {
            let exit = cpu.run();
            assert_eq!(exits::dispatch(&mut vm, &mut cpu, exit), Action::Continue);
        }
        assert_eq!(vm.scratch_port, 0x1234_56AB);
        assert_eq!(cpu.gprs.rax, 0x7777_7777_7777_56AB, "IN AX replaces only AX");
        cpu.gprs.rax = u64::MAX;
        let _ = exits::dispatch(&mut vm, &mut cpu, inp(SCRATCH_PORT, 4));
        assert_eq!(cpu.gprs.rax, 0x1234_56AB, "IN EAX zero-extends");
        let _ = exits::dispatch(&mut vm, &mut cpu, inp(0x2F0, 1));
        assert_eq!(cpu.gprs.rax & 0xFF, 0xFF);
    }

    #[test]
    fn unknown_msr_gets_gp_and_scratch_msr_round_trips() {
        let mut ram = vec![0u8; 1 << 20];
        let (mut vm, _) = vm_with(&mut ram);
        let mut cpu = Scripted::new(vec![]);
        let a = exits::dispatch(
            &mut vm,
            &mut cpu,
            VmExit::WrMsr { msr: SCRATCH_MSR, value: 0x1122_3344_5566_7788 },
        );
        assert_eq!(a, Action::Continue);
        let _ = exits::dispatch(&mut vm, &mut cpu, VmExit::RdMsr { msr: SCRATCH_MSR });
        assert_eq!((cpu.gprs.rdx, cpu.gprs.rax), (0x1122_3344, 0x5566_7788));
        let rip = cpu.rip;
        let _ = exits::dispatch(&mut vm, &mut cpu, VmExit::RdMsr { msr: 0xDEAD_0000 });
        assert_eq!(
            vm.events.next(|| true, || false, &mut crate::vm::events::NoSource).inject,
            Some(Event::Exception { vector: 13, error_code: Some(0) })
        );
        assert_eq!(cpu.rip, rip, "a faulting RDMSR is not skipped");
    }

    static GUEST_IBPBS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
    fn count_ibpb() {
        GUEST_IBPBS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    }

    #[test]
    fn speculation_msrs_exist_exactly_where_the_guest_view_has_them() {
        use basalt_arch::spec::{IA32_ARCH_CAPABILITIES, IA32_FLUSH_CMD, IA32_PRED_CMD, IA32_SPEC_CTRL};
        let gp = Some(Event::Exception { vector: 13, error_code: Some(0) });
        let mut ram = vec![0u8; 1 << 20];
        let (mut vm, _) = vm_with(&mut ram);
        let mut cpu = Scripted::new(vec![]);
        // Nothing advertised: every access is #GP.
        for exit in [
            VmExit::RdMsr { msr: IA32_SPEC_CTRL },
            VmExit::WrMsr { msr: IA32_SPEC_CTRL, value: 0 },
            VmExit::WrMsr { msr: IA32_PRED_CMD, value: 1 },
            VmExit::WrMsr { msr: IA32_FLUSH_CMD, value: 1 },
            VmExit::RdMsr { msr: IA32_ARCH_CAPABILITIES },
        ] {
            let _ = exits::dispatch(&mut vm, &mut cpu, exit);
            assert_eq!(
                vm.events.next(|| true, || false, &mut crate::vm::events::NoSource).inject,
                gp,
                "{exit:?}"
            );
        }
        // SPEC_CTRL with IBRS and SSBD, PRED_CMD and ARCH_CAPABILITIES advertised.
        cpu.spec_ctrl = Some((0, 0b101));
        vm.guest_spec.ibpb = Some(count_ibpb);
        vm.guest_spec.flush_l1d = None;
        vm.guest_spec.view.arch_caps = Some(0x21);
        let _ = exits::dispatch(&mut vm, &mut cpu, VmExit::WrMsr { msr: IA32_SPEC_CTRL, value: 0b101 });
        let _ = exits::dispatch(&mut vm, &mut cpu, VmExit::RdMsr { msr: IA32_SPEC_CTRL });
        assert_eq!(
            (cpu.gprs.rax, vm.events.next(|| true, || false, &mut crate::vm::events::NoSource).inject),
            (0b101, None)
        );
        // STIBP is not implemented: #GP, and the value stays.
        let _ = exits::dispatch(&mut vm, &mut cpu, VmExit::WrMsr { msr: IA32_SPEC_CTRL, value: 0b010 });
        assert_eq!(
            (cpu.spec_ctrl, vm.events.next(|| true, || false, &mut crate::vm::events::NoSource).inject),
            (Some((0b101, 0b101)), gp)
        );
        let _ = exits::dispatch(&mut vm, &mut cpu, VmExit::WrMsr { msr: IA32_PRED_CMD, value: 1 });
        assert_eq!(GUEST_IBPBS.load(core::sync::atomic::Ordering::Relaxed), 1);
        for bad in [
            VmExit::WrMsr { msr: IA32_PRED_CMD, value: 2 },
            VmExit::RdMsr { msr: IA32_PRED_CMD },
            VmExit::WrMsr { msr: IA32_ARCH_CAPABILITIES, value: 0 },
            VmExit::WrMsr { msr: IA32_FLUSH_CMD, value: 1 },
        ] {
            let _ = exits::dispatch(&mut vm, &mut cpu, bad);
            assert_eq!(
                vm.events.next(|| true, || false, &mut crate::vm::events::NoSource).inject,
                gp,
                "{bad:?}"
            );
        }
        let _ = exits::dispatch(&mut vm, &mut cpu, VmExit::RdMsr { msr: IA32_ARCH_CAPABILITIES });
        assert_eq!((cpu.gprs.rax, cpu.gprs.rdx), (0x21, 0));
    }

    #[test]
    fn raised_interrupt_wakes_hlt_and_is_injected_once() {
        let mut ram = vec![0u8; 1 << 20];
        let (mut vm, lines) = vm_with(&mut ram);
        put_record(&vm, UcallRecord::new(UcallKind::RaiseInterrupt, "g.rs", 1, "", [0x40, 0, 0, 0]));
        let mut cpu = Scripted::new(vec![(ucall_regs, out(UCALL_PORT, 4))]);
        let exit = cpu.run();
        assert_eq!(exits::dispatch(&mut vm, &mut cpu, exit), Action::Continue);
        assert!(vm.events.has_interrupt());
        // The guest has IF=0 until its `sti; hlt`: the first entry only asks for a window, HLT
        // with the interrupt pending resumes, and the next entry injects it, once.
        cpu.rflags_if = false;
        cpu.if_from_step = Some(1);
        cpu.steps =
            vec![(nothing, VmExit::Hlt), (print_regs, out(UCALL_PORT, 4)), (done_regs, out(UCALL_PORT, 4))];
        cpu.next = 0;
        put_record(&vm, UcallRecord::new(UcallKind::Print, "g.rs", 1, "woke", [0; 4]));
        put_record_at(&vm, DONE_GPA, UcallRecord::new(UcallKind::Done, "g.rs", 1, "", [0; 4]));
        assert_eq!(run(&mut vm, &mut cpu), VmOutcome::Passed);
        assert_eq!(cpu.injected, vec![Event::Interrupt { vector: 0x40 }]);
        assert_eq!((vm.events.has_interrupt(), cpu.window), (false, false));
        assert_eq!(lines.lock().as_slice(), ["woke"]);
        assert_eq!(vm.exit_count(ExitCounter::Hlt as u64), 1);
    }

    #[test]
    fn lapic_timer_wakes_a_halted_vcpu_once() {
        let mut ram = vec![0u8; 1 << 20];
        let (mut vm, lines) = vm_with(&mut ram);
        let now = apic::guest_now(&vm);
        for (offset, value) in [(0xF0, 0x1FFu32), (0x320, 0x40), (0x3E0, 0xB), (0x380, 250_000)] {
            // SVR enabled, LVT timer one-shot at vector 0x40, divide by 1, 250000 ticks (10 ms).
            let _ = vm.lapic.mmio_write(now, offset, &value.to_le_bytes());
        }
        assert!(vm.lapic.timer_deadline().is_some());
        // HLT before the expiry: the vCPU sleeps (the host's idle returns at once here), the
        // timer fires while it is halted, it wakes once and takes the interrupt.
        let mut cpu = Scripted::new(vec![
            (nothing, VmExit::Hlt),
            (print_regs, out(UCALL_PORT, 4)),
            (done_regs, out(UCALL_PORT, 4)),
        ]);
        put_record(&vm, UcallRecord::new(UcallKind::Print, "g.rs", 1, "woke", [0; 4]));
        put_record_at(&vm, DONE_GPA, UcallRecord::new(UcallKind::Done, "g.rs", 1, "", [0; 4]));
        assert_eq!(run(&mut vm, &mut cpu), VmOutcome::Passed);
        assert_eq!(cpu.injected, vec![Event::Interrupt { vector: 0x40 }]);
        assert_eq!(lines.lock().as_slice(), ["woke"]);
        assert_eq!(vm.lapic.timer_deadline(), None, "one-shot: fired once");
    }

    #[test]
    fn an_interrupt_window_at_a_hlt_completes_the_hlt_first() {
        let mut ram = vec![0u8; 1 << 20];
        let (mut vm, _) = vm_with(&mut ram);
        vm.memory.write(0x1000, &[0xF4]).unwrap();
        let mut cpu = Scripted::new(vec![]);
        // Nothing pending: the window changes nothing.
        assert_eq!(exits::dispatch(&mut vm, &mut cpu, VmExit::InterruptWindow), Action::Continue);
        assert_eq!(cpu.rip, 0x1000);
        // `sti; hlt` with an interrupt pending: the HLT runs, the interrupt returns after it.
        vm.events.interrupt(0x40);
        assert_eq!(exits::dispatch(&mut vm, &mut cpu, VmExit::InterruptWindow), Action::Continue);
        assert_eq!(cpu.rip, 0x1001);
        // Anywhere else the guest resumes where it was.
        vm.memory.write(0x1001, &[0x90]).unwrap();
        assert_eq!(exits::dispatch(&mut vm, &mut cpu, VmExit::InterruptWindow), Action::Continue);
        assert_eq!(cpu.rip, 0x1001);
    }

    const DONE_GPA: u64 = 0x3000;
    fn print_regs(g: &mut GuestGprs) {
        g.rax = RECORD_GPA;
    }
    fn done_regs(g: &mut GuestGprs) {
        g.rax = DONE_GPA;
    }
    fn put_record_at(vm: &VmState, gpa: u64, r: UcallRecord) {
        // SAFETY: UcallRecord is repr(C) plain data.
        let bytes: [u8; UCALL_RECORD_SIZE] = unsafe { core::mem::transmute(r) };
        vm.memory.write(gpa, &bytes).unwrap();
    }

    #[test]
    fn halting_with_nothing_to_wake_stops_the_vm_and_faults_are_reported() {
        let mut ram = vec![0u8; 1 << 20];
        let (mut vm, _) = vm_with(&mut ram);
        let mut cpu = Scripted::new(vec![(nothing, VmExit::Hlt)]);
        cpu.rflags_if = false;
        let VmOutcome::Failed(msg) = run(&mut vm, &mut cpu) else { panic!() };
        assert!(msg.contains("halted") && msg.contains("interrupts are disabled"), "{msg}");
        // A stopped VM stays stopped: each run below is a new VM on the same RAM.
        let restart = |vm: &mut VmState| vm.shared = Arc::new(vcpus::VmShared::new("t".into(), 1, 0, |_| {}));
        restart(&mut vm);
        let mut cpu = Scripted::new(vec![(
            nothing,
            VmExit::NestedPageFault { gpa: 0x3000_0000, write: false, fetch: false },
        )]);
        let VmOutcome::Failed(msg) = run(&mut vm, &mut cpu) else { panic!() };
        assert!(msg.starts_with("stopped: guest-physical address 0x30000000 is not mapped (read)"), "{msg}");
        restart(&mut vm);
        let mut cpu = Scripted::new(vec![(nothing, VmExit::Shutdown)]);
        assert!(matches!(run(&mut vm, &mut cpu), VmOutcome::Failed(m) if m.contains("triple fault")));
    }

    #[test]
    fn a_hostile_ucall_address_stops_only_this_vm() {
        let mut ram = vec![0u8; 1 << 20];
        let (mut vm, _) = vm_with(&mut ram);
        fn far(g: &mut GuestGprs) {
            g.rax = 0xFFFF_F000;
        }
        let mut cpu = Scripted::new(vec![(far, out(UCALL_PORT, 4))]);
        let VmOutcome::Failed(msg) = run(&mut vm, &mut cpu) else { panic!() };
        assert!(msg.contains("ucall record unreadable"), "{msg}");
    }
}
