//! CPUID: a coherent virtual CPU. The host's answers pass through, except what a VM cannot use
//! here (VMX/SVM, MONITOR, the local APIC and x2APIC, XSAVE and what needs it, performance
//! counters, the host's topology) and Basalt's own hypervisor leaves 0x4000_0000.. (SDM Vol. 2A
//! CPUID; the 0x4000_0000 range is reserved for hypervisors).

use crate::vm::{Action, VmState};
use basalt_arch::virt::VirtualCpu;

/// The hypervisor vendor signature in leaf 0x4000_0000 EBX, ECX, EDX.
pub const HYPERVISOR_SIGNATURE: &[u8; 12] = b"BasaltHVisor";
/// Highest hypervisor leaf.
const MAX_HV_LEAF: u32 = 0x4000_0001;

mod bit {
    // Leaf 1 ECX
    pub const MONITOR: u32 = 1 << 3;
    pub const VMX: u32 = 1 << 5;
    pub const SMX: u32 = 1 << 6;
    pub const PDCM: u32 = 1 << 15;
    pub const X2APIC: u32 = 1 << 21;
    pub const TSC_DEADLINE: u32 = 1 << 24;
    pub const XSAVE: u32 = 1 << 26;
    pub const OSXSAVE: u32 = 1 << 27;
    pub const AVX: u32 = 1 << 28;
    pub const HYPERVISOR: u32 = 1 << 31;
    // Leaf 1 EDX
    pub const APIC: u32 = 1 << 9;
    pub const HTT: u32 = 1 << 28;
    // Leaf 7.0 EBX: AVX2 and the AVX-512 family need XSAVE state Basalt does not expose yet.
    pub const LEAF7_EBX_XSAVE_DEPENDENT: u32 = (1 << 5)
        | (1 << 16)
        | (1 << 17)
        | (1 << 21)
        | (1 << 26)
        | (1 << 27)
        | (1 << 28)
        | (1 << 30)
        | (1 << 31);
    // Leaf 0x8000_0001 ECX
    pub const SVM: u32 = 1 << 2;
    pub const EXTAPIC: u32 = 1 << 3;
    pub const TOPOEXT: u32 = 1 << 22;
}

/// The virtual CPUID answer for `leaf`/`subleaf`, given how the host answers. Pure, so the
/// whole virtual CPU model is unit-tested.
pub fn virtual_cpuid(leaf: u32, subleaf: u32, host: &dyn Fn(u32, u32) -> [u32; 4]) -> [u32; 4] {
    match leaf {
        0x4000_0000 => {
            let s = HYPERVISOR_SIGNATURE;
            let word = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
            [MAX_HV_LEAF, word(0), word(4), word(8)]
        }
        0x4000_0001..=0x4FFF_FFFF => [0; 4],
        _ => {
            let max_basic = host(0, 0)[0];
            let max_ext = host(0x8000_0000, 0)[0];
            let in_range = if leaf >= 0x8000_0000 { leaf <= max_ext } else { leaf <= max_basic };
            if !in_range {
                return [0; 4];
            }
            let [mut a, mut b, mut c, mut d] = host(leaf, subleaf);
            match leaf {
                1 => {
                    c &= !(bit::MONITOR
                        | bit::VMX
                        | bit::SMX
                        | bit::PDCM
                        | bit::X2APIC
                        | bit::TSC_DEADLINE
                        | bit::XSAVE
                        | bit::OSXSAVE
                        | bit::AVX);
                    c |= bit::HYPERVISOR;
                    d &= !(bit::APIC | bit::HTT);
                    // One logical processor, initial APIC ID 0.
                    b &= 0x0000_FFFF;
                }
                // MONITOR/MWAIT, thermal/power, performance monitoring, XSAVE, cache/topology
                // enumeration of the host, SVM features: nothing a VM here can use.
                4 | 5 | 6 | 0xA | 0xB | 0xD | 0x1F | 0x8000_000A | 0x8000_001E => {
                    [a, b, c, d] = [0; 4];
                }
                7 if subleaf == 0 => {
                    b &= !bit::LEAF7_EBX_XSAVE_DEPENDENT;
                    c = 0;
                    d = 0;
                }
                7 => [a, b, c, d] = [0; 4],
                0x8000_0001 => c &= !(bit::SVM | bit::EXTAPIC | bit::TOPOEXT),
                // The speculation controls come from the VM's `GuestSpec` (see
                // `CpuidTable::expose_speculation_controls`), never straight from the host.
                0x8000_0008 => b &= !crate::mitigations::EXT8_EBX_SPEC_BITS,
                _ => {}
            }
            [a, b, c, d]
        }
    }
}

fn host_cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// Basic leaves answered from the table: 0..BASIC_LEAVES.
const BASIC_LEAVES: usize = 0x20;
/// Extended leaves answered from the table: 0x8000_0000..0x8000_0000 + EXT_LEAVES.
const EXT_LEAVES: usize = 0x22;

/// Whether the answer to `leaf` is the same for every subleaf (ECX), so a table entry made with
/// subleaf 0 answers it. Leaves 4, 7, 0xB, 0xD, 0x1F, 0x8000_001D and others enumerate
/// subleaves: those come from the table only for subleaf 0.
const fn subleaf_independent(leaf: u32) -> bool {
    matches!(leaf, 0..=3 | 5 | 6 | 0xA | 0x8000_0000..=0x8000_0008 | 0x8000_000A | 0x8000_001E | 0x8000_001F)
}

/// A VM's CPUID answers, computed once when the VM is made (DESIGN.md: no decoding or host
/// queries on the exit path when the answer cannot change). Leaves outside the table, and
/// subleaves other than 0 of leaves that have them, are computed by [`virtual_cpuid`] on the
/// exit.
pub struct CpuidTable {
    /// EAX, EBX, ECX, EDX as the 64-bit register values the guest gets (zero-extended).
    basic: [[u64; 4]; BASIC_LEAVES],
    ext: [[u64; 4]; EXT_LEAVES],
}

impl CpuidTable {
    /// The table for this host CPU.
    pub fn new() -> Self {
        Self::with_host(&host_cpuid)
    }

    /// The table for a host that answers like `host` (tests).
    pub fn with_host(host: &dyn Fn(u32, u32) -> [u32; 4]) -> Self {
        let widen = |a: [u32; 4]| a.map(u64::from);
        let mut t = CpuidTable { basic: [[0; 4]; BASIC_LEAVES], ext: [[0; 4]; EXT_LEAVES] };
        for (leaf, answer) in (0u32..).zip(t.basic.iter_mut()) {
            *answer = widen(virtual_cpuid(leaf, 0, host));
        }
        for (leaf, answer) in (0x8000_0000u32..).zip(t.ext.iter_mut()) {
            *answer = widen(virtual_cpuid(leaf, 0, host));
        }
        t
    }

    /// Advertise the speculation controls of `view` (crate::mitigations::GuestSpec) in leaf 7
    /// EDX and leaf 0x8000_0008 EBX, where the host has those leaves.
    pub fn expose_speculation_controls(&mut self, view: &basalt_arch::spec::SpecFeatures) {
        use crate::mitigations::{EXT8_EBX_SPEC_BITS, LEAF7_EDX_SPEC_BITS};
        if self.basic[0][0] >= 7 {
            let d = &mut self.basic[7][3];
            *d = (*d & !u64::from(LEAF7_EDX_SPEC_BITS)) | u64::from(view.leaf7_edx & LEAF7_EDX_SPEC_BITS);
        }
        if self.ext[0][0] >= 0x8000_0008 {
            let b = &mut self.ext[8][1];
            *b = (*b & !u64::from(EXT8_EBX_SPEC_BITS)) | u64::from(view.ext8_ebx & EXT8_EBX_SPEC_BITS);
        }
    }

    /// The answer for `leaf`/`subleaf`, from the table where it holds it.
    #[inline]
    pub fn lookup(&self, leaf: u32, subleaf: u32) -> [u64; 4] {
        let answer = match self.basic.get(leaf as usize) {
            Some(a) => Some(a),
            None => self.ext.get(leaf.wrapping_sub(0x8000_0000) as usize),
        };
        match answer {
            Some(a) if subleaf == 0 || subleaf_independent(leaf) => *a,
            _ => virtual_cpuid(leaf, subleaf, &host_cpuid).map(u64::from),
        }
    }
}

impl Default for CpuidTable {
    fn default() -> Self {
        Self::new()
    }
}

pub fn handle<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V) -> Action {
    let regs = vcpu.gprs();
    [regs.rax, regs.rbx, regs.rcx, regs.rdx] = vm.cpuid.lookup(regs.rax as u32, regs.rcx as u32);
    super::skip(vm, vcpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_host(leaf: u32, _sub: u32) -> [u32; 4] {
        match leaf {
            0 => [0xD, 0x756E_6547, 0x6C65_746E, 0x4965_6E69],
            1 => [0x50654, 0x0402_0800, !bit::HYPERVISOR, 0xFFFF_FFFF],
            7 => [0, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF],
            0xB => [1, 2, 0x100, 3],
            0x8000_0000 => [0x8000_0008, 0, 0, 0],
            0x8000_0001 => [0, 0, 0xFFFF_FFFF, 0xFFFF_FFFF],
            _ => [0x11, 0x22, 0x33, 0x44],
        }
    }

    #[test]
    fn hypervisor_leaf_has_basalt_signature() {
        let [a, b, c, d] = virtual_cpuid(0x4000_0000, 0, &fake_host);
        assert_eq!(a, MAX_HV_LEAF);
        let mut sig = [0u8; 12];
        sig[0..4].copy_from_slice(&b.to_le_bytes());
        sig[4..8].copy_from_slice(&c.to_le_bytes());
        sig[8..12].copy_from_slice(&d.to_le_bytes());
        assert_eq!(&sig, b"BasaltHVisor");
        assert_eq!(virtual_cpuid(0x4000_0005, 0, &fake_host), [0; 4]);
    }

    #[test]
    fn features_the_vm_cannot_use_are_masked_and_hypervisor_bit_set() {
        let [_, b, c, d] = virtual_cpuid(1, 0, &fake_host);
        assert_ne!(c & bit::HYPERVISOR, 0);
        for masked in [bit::VMX, bit::MONITOR, bit::X2APIC, bit::XSAVE, bit::AVX] {
            assert_eq!(c & masked, 0, "{masked:#x}");
        }
        assert_eq!(d & (bit::APIC | bit::HTT), 0);
        assert_eq!(b >> 16, 0, "one logical CPU, APIC ID 0");
        assert_eq!(virtual_cpuid(0x8000_0001, 0, &fake_host)[2] & bit::SVM, 0);
        assert_eq!(virtual_cpuid(7, 0, &fake_host)[1] & (1 << 5), 0, "AVX2 hidden");
        assert_eq!(virtual_cpuid(0xB, 0, &fake_host), [0; 4], "host topology hidden");
    }

    #[test]
    fn the_table_answers_like_virtual_cpuid() {
        let t = CpuidTable::with_host(&fake_host);
        for leaf in (0..0x30).chain(0x4000_0000..0x4000_0003).chain(0x8000_0000..0x8000_0030) {
            for subleaf in [0, 1, 7] {
                let want = if subleaf == 0 || subleaf_independent(leaf) {
                    virtual_cpuid(leaf, 0, &fake_host)
                } else {
                    virtual_cpuid(leaf, subleaf, &host_cpuid)
                };
                assert_eq!(t.lookup(leaf, subleaf), want.map(u64::from), "leaf {leaf:#x} subleaf {subleaf}");
            }
        }
        // Subleaf 1 of leaf 7 is not the table's subleaf 0 answer.
        assert_eq!(t.lookup(7, 1), virtual_cpuid(7, 1, &host_cpuid).map(u64::from));
    }

    #[test]
    fn speculation_controls_come_only_from_the_guest_view() {
        use basalt_arch::spec::{ext8, leaf7, SpecFeatures};
        let mut t = CpuidTable::with_host(&fake_host);
        assert_eq!(t.lookup(7, 0)[3], 0, "leaf 7 EDX hidden by default");
        let view = SpecFeatures {
            leaf7_edx: leaf7::EDX_MD_CLEAR | leaf7::EDX_SPEC_CTRL | (1 << 4),
            ext8_ebx: ext8::EBX_IBPB,
            ..Default::default()
        };
        t.expose_speculation_controls(&view);
        assert_eq!(
            t.lookup(7, 0)[3],
            u64::from(leaf7::EDX_MD_CLEAR | leaf7::EDX_SPEC_CTRL),
            "only speculation bits"
        );
        let host8 = virtual_cpuid(0x8000_0008, 0, &fake_host)[1];
        assert_eq!(host8 & crate::mitigations::EXT8_EBX_SPEC_BITS, 0, "the host's bits never pass");
        assert_eq!(t.lookup(0x8000_0008, 0)[1], u64::from(host8 | ext8::EBX_IBPB));
    }

    #[test]
    fn vendor_passes_through_and_out_of_range_leaves_are_zero() {
        assert_eq!(virtual_cpuid(0, 0, &fake_host), fake_host(0, 0));
        assert_eq!(virtual_cpuid(0xE, 0, &fake_host), [0; 4]);
        assert_eq!(virtual_cpuid(0x8000_0009, 0, &fake_host), [0; 4]);
        assert_eq!(virtual_cpuid(0x8000_0002, 0, &fake_host), [0x11, 0x22, 0x33, 0x44]);
    }
}
