//! Exits that end a VM: guest-physical faults outside its memory, triple faults, failed
//! entries, exits this version does not handle. Each becomes a report naming what happened and
//! where; the hypervisor and every other VM carry on.

use crate::vm::{Action, VmOutcome, VmState};
use alloc::format;
use alloc::string::String;
use basalt_arch::virt::{EntryFailure, StateSummary};

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

pub fn shutdown(at: &StateSummary) -> Action {
    Action::Stop(VmOutcome::Failed(format!("stopped: triple fault (shutdown) at {}", state(at))))
}

pub fn entry_failed(at: &StateSummary, f: EntryFailure) -> Action {
    Action::Stop(VmOutcome::Failed(format!(
        "stopped: VM entry failed: {} (code {:#x}) with {}",
        f.reason,
        f.code,
        state(at)
    )))
}

pub fn exception(at: &StateSummary, vector: u8, error_code: Option<u32>) -> Action {
    Action::Stop(VmOutcome::Failed(format!(
        "stopped: unexpected intercepted exception {vector} (error code {error_code:?}) at {}",
        state(at)
    )))
}

pub fn unhandled(at: &StateSummary, code: u64) -> Action {
    Action::Stop(VmOutcome::Failed(format!(
        "stopped: exit {code:#x} is not handled by this version of Basalt, at {}",
        state(at)
    )))
}
