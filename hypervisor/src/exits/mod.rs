//! One handler per exit kind, and the one dispatcher that picks it (DESIGN.md "the spine").
//!
//! A handler gets the VM's software state and the vCPU, and says whether the guest continues
//! or the VM stops (with a report). Handlers never panic on guest input: a guest's mistake
//! becomes the architecturally right fault for the guest, or stops that VM alone.

mod cpuid;
mod fault;
mod hlt;
mod hypercall;
mod io;
mod msr;

pub use cpuid::{virtual_cpuid, CpuidTable, HYPERVISOR_SIGNATURE};
pub use io::{SCRATCH_PORT, UNASSIGNED_READ};
pub use msr::SCRATCH_MSR;

use crate::vm::{Action, VmState};
use basalt_arch::virt::{VirtualCpu, VmExit};

/// Handle one exit.
pub fn dispatch<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V, exit: VmExit) -> Action {
    match exit {
        VmExit::Cpuid => cpuid::handle(vm, vcpu),
        VmExit::Hlt => hlt::handle(vm, vcpu),
        VmExit::Io(access) => io::handle(vm, vcpu, access),
        VmExit::RdMsr { msr } => msr::read(vm, vcpu, msr),
        VmExit::WrMsr { msr, value } => msr::write(vm, vcpu, msr, value),
        VmExit::Hypercall => hypercall::handle(vm, vcpu),
        VmExit::ExternalInterrupt | VmExit::Preempted => Action::Continue,
        VmExit::InterruptWindow => {
            vcpu.request_interrupt_window(false);
            Action::Continue
        }
        VmExit::NestedPageFault { gpa, write, fetch } => {
            fault::nested(vm, &vcpu.summary(), gpa, write, fetch)
        }
        VmExit::Shutdown => fault::shutdown(&vcpu.summary()),
        VmExit::EntryFailed(failure) => fault::entry_failed(&vcpu.summary(), failure),
        VmExit::Exception { vector, error_code } => fault::exception(&vcpu.summary(), vector, error_code),
        VmExit::Unhandled { code } => fault::unhandled(&vcpu.summary(), code),
    }
}
