//! HLT: the vCPU waits for an interrupt. With one pending it resumes at once and takes it; in a
//! VM of several vCPUs it sleeps on its pCPU until another CPU posts it an interrupt, an NMI,
//! INIT or the VM's stop (whatever its RFLAGS.IF: a `cli; hlt` vCPU still wakes for NMI and
//! INIT); a lone vCPU that can never be woken (interrupts masked, or no source of interrupts
//! in this VM) stops its VM with a report instead of hanging a physical CPU forever.

use crate::vm::{Action, VmOutcome, VmState};
use alloc::format;
use basalt_arch::virt::VirtualCpu;

pub fn handle<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V) -> Action {
    let rip = vcpu.summary().rip;
    if let Action::Stop(outcome) = super::skip(vm, vcpu) {
        return Action::Stop(outcome);
    }
    let if_set = vcpu.interruptible();
    if vm.events.has_interrupt() || (if_set && vm.interrupt_waiting()) {
        // Delivered before the next entry if the guest can take it (see `Vm::run`).
        return Action::Continue;
    }
    // Something can wake it: another vCPU (NMI, INIT, IPIs), or its timer.
    if vm.shared.vcpus.len() > 1 || (if_set && vm.next_deadline() != u64::MAX) {
        vm.shared.vcpus[vm.vcpu as usize].set_mode(crate::vm::vcpus::Mode::Halted);
        return Action::Continue;
    }
    let reason = if if_set {
        "no device of this VM can send it an interrupt"
    } else {
        "interrupts are disabled, so nothing can wake it"
    };
    Action::Stop(VmOutcome::Failed(format!("stopped: vCPU halted at RIP {rip:#x} and {reason}")))
}

/// The guest can take an interrupt again. Stopped at a HLT, it was in the interrupt shadow of
/// an STI (`sti; hlt`, the idle loop of every OS): on a CPU the shadow covers the HLT, which
/// runs, and the interrupt then wakes it and returns after it. So the HLT is completed here
/// before the interrupt is injected: the guest wakes once, as on hardware, instead of taking
/// the interrupt before its HLT and sleeping through to the next one.
#[cold]
pub fn window_opened<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V) -> Action {
    let if_set = vcpu.interruptible();
    if !(vm.events.has_interrupt() || (if_set && vm.interrupt_waiting())) {
        return Action::Continue;
    }
    let s = vcpu.summary();
    let mode = crate::vm::walk::PagingMode { cr0: s.cr0, cr3: s.cr3, cr4: s.cr4, efer: s.efer };
    let mut byte = [0u8; 1];
    let fetched = crate::vm::walk::read_linear(&vm.memory, &mode, s.cs_base.wrapping_add(s.rip), &mut byte);
    if fetched == Ok(1) && byte[0] == HLT_OPCODE {
        vcpu.advance_rip(1);
    }
    Action::Continue
}

/// HLT's one-byte encoding.
const HLT_OPCODE: u8 = 0xF4;
