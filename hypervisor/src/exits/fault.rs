//! Exits that end a VM: guest-physical faults outside its memory, triple faults, failed
//! entries, exits this version does not handle. Each becomes a report naming what happened and
//! where; the hypervisor and every other VM carry on.

use crate::vm::stats::ExitKind;
use crate::vm::{Action, Reflected, VmOutcome, VmState};
use alloc::format;
use alloc::string::String;
use basalt_arch::virt::{EntryFailure, EventKind, StateSummary, VirtualCpu};

fn state(s: &StateSummary) -> String {
    format!(
        "RIP {:#x} RSP {:#x} RFLAGS {:#x} CS {:#x} CR0 {:#x} CR3 {:#x} CR4 {:#x} EFER {:#x}",
        s.rip, s.rsp, s.rflags, s.cs, s.cr0, s.cr3, s.cr4, s.efer
    )
}

pub fn nested(vm: &mut VmState, at: &StateSummary, gpa: u64, write: bool, fetch: bool) -> Action {
    let access = if fetch {
        "instruction fetch"
    } else if write {
        "write"
    } else {
        "read"
    };
    let what = if vm.memory.contains(gpa) {
        "hit a nested page fault inside guest RAM (a Basalt bug)"
    } else {
        "is not mapped"
    };
    Action::Stop(VmOutcome::Failed(format!(
        "stopped: guest-physical address {gpa:#x} {what} ({access}) at {}",
        state(at)
    )))
}

/// The report of a triple fault (shutdown); the VM's `on_crash` decides what follows.
pub fn shutdown(at: &StateSummary) -> String {
    format!("stopped: triple fault (shutdown) at {}", state(at))
}

pub fn entry_failed(at: &StateSummary, f: EntryFailure) -> Action {
    Action::Stop(VmOutcome::Failed(format!(
        "stopped: VM entry failed: {} (code {:#x}) with {}",
        f.reason,
        f.code,
        state(at)
    )))
}

pub fn unhandled(at: &StateSummary, code: u64) -> Action {
    Action::Stop(VmOutcome::Failed(format!(
        "stopped: exit {code:#x} is not handled by this version of Basalt, at {}",
        state(at)
    )))
}

/// How many times in a row the same exception may be reflected at the same RIP, with no other
/// exit in between, before Basalt calls it a loop (a guest that handles #DB or #AC makes
/// progress long before this).
pub const REFLECT_LOOP_LIMIT: u32 = 1000;

/// An exception the backend intercepted (#DB, #AC, #MC): reflect #DB and #AC into the guest,
/// unless its delivery loops; a machine check stops the VM.
pub fn intercepted_exception<V: VirtualCpu + ?Sized>(
    vm: &mut VmState,
    vcpu: &mut V,
    vector: u8,
    error_code: Option<u32>,
) -> Action {
    if let Some(stop) = past_time_limit(vm) {
        return stop;
    }
    let at = vcpu.summary();
    if vector == 18 {
        return Action::Stop(VmOutcome::Failed(format!(
            "stopped: machine check (#MC) while the guest ran, at {}",
            state(&at)
        )));
    }
    let name = basalt_arch::idt::exception_name(vector as u64);
    if let Some(e) = vm.events.interrupted_event() {
        if e.kind == EventKind::Exception && e.vector == vector {
            return Action::Stop(VmOutcome::Failed(format!(
                "stopped: exception delivery loop: {name} raised while delivering {name}, at {}",
                state(&at)
            )));
        }
    }
    // Exits the guest caused: time-slice ends (host timer, preemption timer, host NMIs) do not
    // count as progress.
    let s = &vm.stats;
    let exits =
        s.total() - s.get(ExitKind::ExternalInterrupt) - s.get(ExitKind::Preempted) - s.get(ExitKind::Nmi);
    let r = &mut vm.reflected;
    if r.vector == vector && r.rip == at.rip && r.at_exit + 1 == exits {
        r.times += 1;
    } else {
        *r = Reflected { vector, rip: at.rip, at_exit: exits, times: 1 };
    }
    r.at_exit = exits;
    if r.times >= REFLECT_LOOP_LIMIT {
        return Action::Stop(VmOutcome::Failed(format!(
            "stopped: exception loop: {name} delivered {REFLECT_LOOP_LIMIT} times in a row at RIP {:#x} with no progress, at {}",
            at.rip,
            state(&at)
        )));
    }
    if vector == 1 {
        vcpu.reflect_debug_status();
    }
    super::raise(vm, vector, error_code)
}

/// The stop for a VM that ran past its time limit, checked when a time slice ends (and on the
/// exits a looping guest makes).
pub fn past_time_limit(vm: &VmState) -> Option<Action> {
    let limit = vm.time_limit?;
    ((vm.host.now)() > limit.deadline).then(|| {
        Action::Stop(VmOutcome::Failed(format!("stopped: time limit of {} s reached", limit.seconds)))
    })
}

/// A time slice ended (preemption timer, host timer interrupt or NMI): go on, unless the VM is
/// past its time limit.
pub fn slice_end(vm: &VmState) -> Action {
    past_time_limit(vm).unwrap_or(Action::Continue)
}
