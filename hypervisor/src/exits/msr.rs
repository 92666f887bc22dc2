//! RDMSR/WRMSR. Every MSR access exits (the bitmaps are all ones); the few MSRs a VM may use
//! are emulated here and everything else gives the guest #GP(0), as a CPU does for an MSR it
//! does not implement (SDM Vol. 2B RDMSR).

use crate::vm::{Action, VmState};
use basalt_arch::virt::{Event, VirtualCpu};

/// Basalt's scratch MSR: 64 bits a guest can write and read back (in the range reserved for
/// hypervisors, like KVM's 0x4B56_4Dxx).
pub const SCRATCH_MSR: u32 = 0x4B42_0000;
const IA32_TSC: u32 = 0x10;

fn gp<V: VirtualCpu + ?Sized>(vcpu: &mut V, vm: &mut VmState) -> Action {
    vcpu.inject(Event::Exception { vector: 13, error_code: Some(0) });
    vm.exception_queued = true;
    Action::Continue
}

pub fn read<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V, msr: u32) -> Action {
    let value = match msr {
        SCRATCH_MSR => vm.scratch_msr,
        IA32_TSC => basalt_arch::io::rdtsc(),
        _ => return gp(vcpu, vm),
    };
    let regs = vcpu.gprs();
    regs.rax = value & 0xFFFF_FFFF;
    regs.rdx = value >> 32;
    vcpu.skip_instruction();
    Action::Continue
}

pub fn write<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V, msr: u32, value: u64) -> Action {
    match msr {
        SCRATCH_MSR => vm.scratch_msr = value,
        _ => return gp(vcpu, vm),
    }
    vcpu.skip_instruction();
    Action::Continue
}
