//! RDMSR/WRMSR. Every MSR access exits (the bitmaps are all ones); the few MSRs a VM may use
//! are emulated here and everything else gives the guest #GP(0), as a CPU does for an MSR it
//! does not implement (SDM Vol. 2B RDMSR). The speculation controls (IA32_SPEC_CTRL,
//! IA32_PRED_CMD, IA32_FLUSH_CMD, IA32_ARCH_CAPABILITIES) exist where the guest's CPUID says
//! so (crate::mitigations::GuestSpec); SPEC_CTRL is emulated and loaded by the backend around
//! each entry, so the guest's value is live only while the guest runs.

use crate::vm::{apic, Action, VmState};
use basalt_arch::virt::bits::{CR0_PG, EFER_LMA, EFER_LME, EFER_NXE};
use basalt_arch::virt::{msr, VirtualCpu};
use basalt_devices::lapic;

pub use basalt_abi::SCRATCH_MSR;
const IA32_TSC: u32 = 0x10;
const IA32_EFER: u32 = 0xC000_0080;
const EFER_SCE: u64 = 1 << 0;
/// The EFER bits a guest may write: SCE, LME, LMA (ignored, the CPU owns it), NXE. SVME and the
/// rest are reserved for a guest whose CPUID offers no SVM (SDM Vol. 3A 2.2.1, APM 3.1.7).
const EFER_WRITABLE: u64 = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;

use basalt_arch::spec::{
    FLUSH_CMD_L1D, IA32_ARCH_CAPABILITIES, IA32_FLUSH_CMD, IA32_PRED_CMD, IA32_SPEC_CTRL, PRED_CMD_IBPB,
};

const IA32_TSC_ADJUST: u32 = 0x3B;

/// Whether the guest's CPUID offers IA32_TSC_ADJUST (leaf 7 EBX[1]).
fn tsc_adjust_offered(vm: &VmState) -> bool {
    vm.cpuid.lookup(7, 0)[1] & (1 << 1) != 0
}

/// MSRs that hold a linear address: a non-canonical value is #GP (SDM Vol. 4 Table 2-2).
fn is_address_msr(m: u32) -> bool {
    matches!(
        m,
        msr::FS_BASE
            | msr::GS_BASE
            | msr::KERNEL_GS_BASE
            | msr::LSTAR
            | msr::CSTAR
            | msr::SYSENTER_ESP
            | msr::SYSENTER_EIP
    )
}

/// Canonical for 48-bit linear addresses (CPUID hides LA57).
fn canonical(a: u64) -> bool {
    ((a as i64) << 16 >> 16) as u64 == a
}

/// AMD's SYSCFG and NB_CFG: Linux reads SYSCFG for its MTRR setup and writes NB_CFG as each
/// CPU comes online. Basalt shows neither a memory encryption nor a northbridge to configure:
/// both read 0 and take writes without effect (as KVM does), on AMD only.
const AMD_SYSCFG: u32 = 0xC001_0010;
const AMD_NB_CFG: u32 = 0xC001_001F;

/// IA32_BIOS_SIGN_ID on Intel: the microcode revision (bits 63:32) after a CPUID. Linux
/// writes 0, runs CPUID and reads it back; Basalt reports revision 1 (as KVM's default does)
/// and ignores the write.
const IA32_BIOS_SIGN_ID: u32 = 0x8B;
const MICROCODE_REVISION: u64 = 1 << 32;

/// Whether the guest sees an AMD CPU (CPUID vendor "AuthenticAMD").
fn amd(vm: &VmState) -> bool {
    let [_, ebx, ecx, edx] = vm.cpuid.lookup(0, 0);
    (ebx, edx, ecx) == (0x6874_7541, 0x6974_6E65, 0x444D_4163)
}

fn gp<V: VirtualCpu + ?Sized>(_vcpu: &mut V, vm: &mut VmState) -> Action {
    super::raise(vm, 13, Some(0))
}

pub fn read<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V, msr: u32) -> Action {
    let value = match msr {
        SCRATCH_MSR => vm.scratch_msr,
        lapic::MSR_APIC_BASE => vm.lapic.apic_base(),
        lapic::MSR_TSC_DEADLINE => {
            let now = apic::guest_now(vm);
            vm.lapic.tsc_deadline(now)
        }
        lapic::MSR_X2APIC_FIRST..=lapic::MSR_X2APIC_LAST => {
            let now = apic::guest_now(vm);
            match vm.lapic.msr_read(now, msr) {
                Ok(value) => value,
                Err(_) => return gp(vcpu, vm),
            }
        }
        IA32_TSC => apic::guest_now(vm),
        AMD_SYSCFG | AMD_NB_CFG if amd(vm) => 0,
        IA32_BIOS_SIGN_ID if !amd(vm) => MICROCODE_REVISION,
        IA32_EFER => vcpu.efer(),
        IA32_TSC_ADJUST if tsc_adjust_offered(vm) => vm.tsc_adjust,
        m if vm.msrs.holds(m) => vm.msrs.read(m).unwrap_or(0),
        // The speculation controls (crate::mitigations::GuestSpec): readable exactly where the
        // guest's CPUID advertises them; PRED_CMD and FLUSH_CMD are write-only (SDM Vol. 4
        // Table 2-2).
        IA32_SPEC_CTRL => match vcpu.spec_ctrl() {
            Some((value, _)) => value,
            None => return gp(vcpu, vm),
        },
        IA32_ARCH_CAPABILITIES => match vm.guest_spec.view.arch_caps {
            Some(value) => value,
            None => return gp(vcpu, vm),
        },
        m => match vcpu.guest_msr(m) {
            Some(value) => value,
            None => return gp(vcpu, vm),
        },
    };
    let regs = vcpu.gprs();
    regs.rax = value & 0xFFFF_FFFF;
    regs.rdx = value >> 32;
    super::skip(vm, vcpu)
}

pub fn write<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V, msr: u32, value: u64) -> Action {
    match msr {
        SCRATCH_MSR => vm.scratch_msr = value,
        lapic::MSR_APIC_BASE => {
            if vm.lapic.set_apic_base(value, true).is_err() {
                return gp(vcpu, vm);
            }
            apic::after_access(vm, None);
        }
        lapic::MSR_TSC_DEADLINE => {
            let now = apic::guest_now(vm);
            vm.lapic.set_tsc_deadline(now, value);
        }
        lapic::MSR_X2APIC_FIRST..=lapic::MSR_X2APIC_LAST => {
            let now = apic::guest_now(vm);
            match vm.lapic.msr_write(now, msr, value) {
                Ok(action) => apic::after_access(vm, action),
                Err(_) => return gp(vcpu, vm),
            }
        }
        // A write of the TSC moves TSC_ADJUST by the same amount (SDM 17.17.3).
        AMD_SYSCFG | AMD_NB_CFG if amd(vm) => {}
        IA32_BIOS_SIGN_ID if !amd(vm) => {}
        IA32_TSC => {
            let offset = value.wrapping_sub((vm.host.now)());
            vm.tsc_adjust = vm.tsc_adjust.wrapping_add(offset.wrapping_sub(vm.tsc_offset));
            vm.tsc_offset = offset;
            vcpu.set_tsc_offset(offset);
        }
        IA32_TSC_ADJUST if tsc_adjust_offered(vm) => {
            vm.tsc_offset = vm.tsc_offset.wrapping_add(value.wrapping_sub(vm.tsc_adjust));
            vm.tsc_adjust = value;
            vcpu.set_tsc_offset(vm.tsc_offset);
        }
        m if vm.msrs.holds(m) => {
            if vm.msrs.write(m, value).is_err() {
                return gp(vcpu, vm);
            }
        }
        m if is_address_msr(m) && !canonical(value) => return gp(vcpu, vm),
        m if matches!(m, msr::SFMASK | msr::TSC_AUX) && value >> 32 != 0 => return gp(vcpu, vm),
        m if vcpu.guest_msr(m).is_some() => {
            if !vcpu.set_guest_msr(m, value) {
                return gp(vcpu, vm);
            }
        }
        IA32_EFER => {
            let old = vcpu.efer();
            let paging = vcpu.summary().cr0 & CR0_PG != 0;
            if value & !EFER_WRITABLE != 0 || (paging && (value ^ old) & EFER_LME != 0) {
                return gp(vcpu, vm);
            }
            vcpu.set_efer((value & !EFER_LMA) | (old & EFER_LMA));
        }
        // A bit the CPU does not implement is #GP, as on the CPU itself.
        IA32_SPEC_CTRL => match vcpu.spec_ctrl() {
            Some((_, writable)) if value & !writable == 0 => vcpu.set_spec_ctrl(value),
            _ => return gp(vcpu, vm),
        },
        IA32_PRED_CMD => match vm.guest_spec.ibpb {
            Some(ibpb) if value & !PRED_CMD_IBPB == 0 => {
                if value != 0 {
                    ibpb()
                }
            }
            _ => return gp(vcpu, vm),
        },
        IA32_FLUSH_CMD => match vm.guest_spec.flush_l1d {
            Some(flush) if value & !FLUSH_CMD_L1D == 0 => {
                if value != 0 {
                    flush()
                }
            }
            _ => return gp(vcpu, vm),
        },
        _ => return gp(vcpu, vm),
    }
    super::skip(vm, vcpu)
}
