//! VMCALL/VMMCALL: Basalt's hypercall interface. RAX holds the call number and receives the
//! result; an unknown number returns -1 (all ones) and the guest carries on.

use crate::vm::{Action, VmState};
pub use basalt_abi::HC_VERSION;
use basalt_abi::{HC_STATS, HYPERCALL_ABI_VERSION};
use basalt_arch::virt::VirtualCpu;

pub fn handle<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V) -> Action {
    let regs = vcpu.gprs();
    regs.rax = match regs.rax {
        HC_VERSION => HYPERCALL_ABI_VERSION,
        HC_STATS => {
            log::info!("VM {}: stats {}", crate::console::Escaped(&vm.name), vm.stats.report());
            0
        }
        _ => u64::MAX,
    };
    super::skip(vm, vcpu)
}
