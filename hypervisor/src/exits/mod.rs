//! One handler per exit kind, and the one dispatcher that picks it (DESIGN.md "the spine").
//!
//! A handler gets the VM's software state and the vCPU, and says whether the guest continues
//! or the VM stops (with a report). Handlers never panic on guest input: a guest's mistake
//! becomes the architecturally right fault for the guest, or stops that VM alone.

mod cpuid;
mod fault;
mod guarded;
mod hlt;
mod hypercall;
mod io;
mod length;
mod mmio;
mod msr;

pub use cpuid::{virtual_cpuid, CpuidTable, HYPERVISOR_SIGNATURE};
pub use io::{SCRATCH_PORT, UNASSIGNED_READ};
pub use msr::SCRATCH_MSR;

pub use fault::{past_time_limit, REFLECT_LOOP_LIMIT};
pub use length::{decode_length, skip};

use crate::vm::{Action, VmOutcome, VmState};
use alloc::format;
use basalt_arch::virt::{VirtualCpu, VmExit};

/// Queue hardware exception `vector` for the guest (the event queue applies the double-fault
/// rules); a triple fault stops the VM.
pub fn raise(vm: &mut VmState, vector: u8, error_code: Option<u32>) -> Action {
    match vm.events.exception(vector, error_code) {
        Ok(()) => Action::Continue,
        Err(_) => crate::vm::crashed(
            vm,
            format!("stopped: triple fault (exception {vector} while delivering a double fault)"),
        ),
    }
}

/// Handle one exit.
pub fn dispatch<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V, exit: VmExit) -> Action {
    match exit {
        VmExit::Cpuid => cpuid::handle(vm, vcpu),
        VmExit::Hlt => hlt::handle(vm, vcpu),
        VmExit::Io(access) => io::handle(vm, vcpu, access),
        VmExit::RdMsr { msr } => msr::read(vm, vcpu, msr),
        VmExit::WrMsr { msr, value } => msr::write(vm, vcpu, msr, value),
        VmExit::Hypercall => hypercall::handle(vm, vcpu),
        VmExit::ExternalInterrupt | VmExit::Preempted | VmExit::Nmi => fault::slice_end(vm),
        // The event queue injects the pending interrupt at the next entry.
        VmExit::InterruptWindow => hlt::window_opened(vm, vcpu),
        VmExit::Instruction(insn) => guarded::instruction(vm, vcpu, insn),
        VmExit::CrWrite { cr, value } => guarded::cr_write(vm, vcpu, cr, value),
        // A page the test device hid: mapped again; the guest retries, and an event whose
        // delivery touched it is delivered again (the run loop queued it).
        VmExit::NestedPageFault { gpa, .. } if vm.nested.as_ref().is_some_and(|n| n.reveal(gpa)) => {
            log::debug!(
                "VM {}: page {gpa:#x} mapped again at RIP {:#x}, cut short: {:?}",
                crate::console::Escaped(&vm.name),
                vcpu.summary().rip,
                vm.events.interrupted_event()
            );
            vm.nested_tables_changed(vcpu);
            Action::Continue
        }
        VmExit::NestedPageFault { gpa, fetch: false, .. } if mmio::is_mmio(vm, gpa) => {
            match vm.events.interrupted_event() {
                // The access was the CPU's own, delivering an event (a stack or IDT in MMIO):
                // there is no instruction to emulate.
                Some(e) => Action::Stop(VmOutcome::Failed(format!(
                    "stopped: delivering vector {} touched emulated MMIO at {gpa:#x} (a stack or IDT there is not supported)",
                    e.vector
                ))),
                None => mmio::emulate(vm, vcpu),
            }
        }
        VmExit::NestedPageFault { gpa, write, fetch } => {
            fault::nested(vm, &vcpu.summary(), gpa, write, fetch)
        }
        VmExit::Shutdown => crate::vm::crashed(vm, fault::shutdown(&vcpu.summary())),
        VmExit::EntryFailed(failure) => fault::entry_failed(&vcpu.summary(), failure),
        VmExit::Exception { vector, error_code } => {
            fault::intercepted_exception(vm, vcpu, vector, error_code)
        }
        VmExit::Unhandled { code } => fault::unhandled(&vcpu.summary(), code),
    }
}
