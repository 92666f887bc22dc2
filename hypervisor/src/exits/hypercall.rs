//! VMCALL/VMMCALL: Basalt's hypercall interface. RAX holds the call number and receives the
//! result; an unknown number returns -1 (all ones) and the guest carries on.

use crate::vm::{Action, VmState};
use basalt_arch::virt::VirtualCpu;

/// `HC_VERSION`: returns Basalt's hypercall ABI version (major << 16 | minor).
pub const HC_VERSION: u64 = 0;
const ABI_VERSION: u64 = 1 << 16;

pub fn handle<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V) -> Action {
    let regs = vcpu.gprs();
    regs.rax = match regs.rax {
        HC_VERSION => ABI_VERSION,
        _ => u64::MAX,
    };
    super::skip(vm, vcpu)
}
