//! RDMSR/WRMSR. Every MSR access exits (the bitmaps are all ones); the few MSRs a VM may use
//! are emulated here and everything else gives the guest #GP(0), as a CPU does for an MSR it
//! does not implement (SDM Vol. 2B RDMSR).

use crate::vm::{Action, VmState};
use basalt_arch::virt::bits::{CR0_PG, EFER_LMA, EFER_LME, EFER_NXE};
use basalt_arch::virt::VirtualCpu;

pub use basalt_abi::SCRATCH_MSR;
const IA32_TSC: u32 = 0x10;
const IA32_EFER: u32 = 0xC000_0080;
const EFER_SCE: u64 = 1 << 0;
/// The EFER bits a guest may write: SCE, LME, LMA (ignored, the CPU owns it), NXE. SVME and the
/// rest are reserved for a guest whose CPUID offers no SVM (SDM Vol. 3A 2.2.1, APM 3.1.7).
const EFER_WRITABLE: u64 = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;

fn gp<V: VirtualCpu + ?Sized>(_vcpu: &mut V, vm: &mut VmState) -> Action {
    super::raise(vm, 13, Some(0))
}

pub fn read<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V, msr: u32) -> Action {
    let value = match msr {
        SCRATCH_MSR => vm.scratch_msr,
        IA32_TSC => (vm.host.now)().wrapping_add(vm.tsc_offset),
        IA32_EFER => vcpu.efer(),
        _ => return gp(vcpu, vm),
    };
    let regs = vcpu.gprs();
    regs.rax = value & 0xFFFF_FFFF;
    regs.rdx = value >> 32;
    super::skip(vm, vcpu)
}

pub fn write<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V, msr: u32, value: u64) -> Action {
    match msr {
        SCRATCH_MSR => vm.scratch_msr = value,
        IA32_EFER => {
            let old = vcpu.efer();
            let paging = vcpu.summary().cr0 & CR0_PG != 0;
            if value & !EFER_WRITABLE != 0 || (paging && (value ^ old) & EFER_LME != 0) {
                return gp(vcpu, vm);
            }
            vcpu.set_efer((value & !EFER_LMA) | (old & EFER_LMA));
        }
        _ => return gp(vcpu, vm),
    }
    super::skip(vm, vcpu)
}
