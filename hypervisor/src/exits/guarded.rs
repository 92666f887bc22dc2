//! Instructions and control-register writes Basalt never lets a guest run natively (each
//! backend's intercept policy): the guest gets what a CPU without the feature gives it, and
//! nothing outside the guest changes.
//!
//! - SVM and VMX instructions, GETSEC, MONITOR/MWAIT: #UD. The virtual CPUID offers none of
//!   SVM, VMX, SMX or MONITOR, and a CPU without them raises #UD (SDM Vol. 2 and APM Vol. 3
//!   for each instruction).
//! - XSETBV: checked as the SDM says, then the guest's XCR0 is live while the VM runs.
//! - RDPMC: #GP(0). The virtual CPU has no performance counters (CPUID leaf 0xA is zero), so
//!   every counter index is invalid.
//! - INVD and WBINVD: done, as nothing: guest memory is ordinary write-back RAM that Basalt
//!   keeps coherent, and INVD would throw away other VMs' and Basalt's dirty cache lines.
//! - MOV to CR4 setting a bit of a feature the virtual CPUID hides, or a reserved bit: #GP(0).
//!   MOV to CR0 is checked as the SDM says (MOV CR, Vol. 2B) and written.

use super::raise;
use crate::vm::{Action, VmOutcome, VmState};
use alloc::format;
use basalt_arch::virt::{bits::CR0_PE, bits::CR0_PG, Instruction, VirtualCpu};

const UD: u8 = 6;
const GP: u8 = 13;

pub fn instruction<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V, insn: Instruction) -> Action {
    match insn {
        Instruction::Virtualization | Instruction::Getsec | Instruction::Monitor | Instruction::Mwait => {
            raise(vm, UD, None)
        }
        Instruction::Xsetbv => xsetbv(vm, vcpu),
        Instruction::Rdpmc => raise(vm, GP, Some(0)),
        Instruction::Invd | Instruction::Wbinvd => super::skip(vm, vcpu),
    }
}

/// XSETBV (SDM Vol. 2D XSETBV): #UD without CR4.OSXSAVE; #GP(0) outside ring 0, for an XCR
/// other than XCR0, or for an XCR0 the virtual CPU does not allow (x87 clear, a component it
/// does not offer, AVX without SSE, AVX-512 partly or without AVX). A valid value becomes the
/// live XCR0 while the VM runs.
fn xsetbv<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V) -> Action {
    let s = vcpu.summary();
    if s.cr4 & CR4_OSXSAVE == 0 {
        return raise(vm, UD, None);
    }
    let g = vcpu.gprs();
    let (index, value) = (g.rcx as u32, (g.rdx & 0xFFFF_FFFF) << 32 | (g.rax & 0xFFFF_FFFF));
    let [eax, _, _, edx] = vm.cpuid.lookup(0xD, 0);
    let offered = edx << 32 | eax;
    let avx512 = value & XCR0_AVX512;
    let valid = s.cpl == 0
        && index == 0
        && value & 1 != 0
        && value & !offered == 0
        && !(value & XCR0_AVX != 0 && value & XCR0_SSE == 0)
        && (avx512 == 0 || (avx512 == XCR0_AVX512 && value & XCR0_AVX != 0));
    if !valid {
        return raise(vm, GP, Some(0));
    }
    basalt_arch::hoststate::set_guest_xcr0(value);
    super::skip(vm, vcpu)
}

const XCR0_SSE: u64 = 1 << 1;
const XCR0_AVX: u64 = 1 << 2;
const XCR0_AVX512: u64 = 0x7 << 5;
const CR4_OSXSAVE: u64 = 1 << 18;

/// CR4 bits a guest may set whatever CPUID says: VME, PVI, TSD, DE, PSE, PAE, MCE, PGE, PCE,
/// OSFXSR, OSXMMEXCPT (bits 0-10).
const CR4_BASE: u64 = 0x7FF;
const CR4_FSGSBASE: u64 = 1 << 16;
const CR4_PCIDE: u64 = 1 << 17;
const CR4_SMEP: u64 = 1 << 20;
const CR4_SMAP: u64 = 1 << 21;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;

/// The CR4 bits the virtual CPU offers, from its CPUID (SDM Vol. 3A 2.5).
pub fn cr4_allowed(vm: &VmState) -> u64 {
    let leaf1 = vm.cpuid.lookup(1, 0);
    let leaf7 = vm.cpuid.lookup(7, 0);
    let mut allowed = CR4_BASE;
    for (present, bit) in [
        (leaf7[1] & 1 != 0, CR4_FSGSBASE),
        (leaf1[2] & (1 << 17) != 0, CR4_PCIDE),
        (leaf1[2] & (1 << 26) != 0, CR4_OSXSAVE),
        (leaf7[1] & (1 << 7) != 0, CR4_SMEP),
        (leaf7[1] & (1 << 20) != 0, CR4_SMAP),
    ] {
        if present {
            allowed |= bit;
        }
    }
    allowed
}

pub fn cr_write<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V, cr: u8, value: u64) -> Action {
    let valid = match cr {
        4 => value & !cr4_allowed(vm) == 0,
        0 => {
            let old = vcpu.summary().cr0;
            if (value ^ old) & CR0_PG != 0 {
                // Entering or leaving paging through a CR0 write that also changes a bit Basalt
                // owns would need the IA-32e mode switch emulated: not built yet.
                return Action::Stop(VmOutcome::Failed(format!(
                    "stopped: MOV to CR0 {old:#x} -> {value:#x} toggles paging together with a Basalt-owned bit, which this version does not emulate"
                )));
            }
            value >> 32 == 0
                && !(value & CR0_NW != 0 && value & CR0_CD == 0)
                && !(value & CR0_PG != 0 && value & CR0_PE == 0)
        }
        _ => false,
    };
    if !valid {
        return raise(vm, GP, Some(0));
    }
    vcpu.set_cr(cr, value);
    super::skip(vm, vcpu)
}
