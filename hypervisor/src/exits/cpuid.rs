//! CPUID: a coherent virtual CPU. The host's answers pass through, except what a VM cannot use
//! here (VMX/SVM, MONITOR, the local APIC and x2APIC, XSAVE and what needs it, performance
//! counters, the host's topology) and Basalt's own hypervisor leaves 0x4000_0000.. (SDM Vol. 2A
//! CPUID; the 0x4000_0000 range is reserved for hypervisors).

use crate::vm::{Action, VmState};
use basalt_arch::hoststate::XCR0_OFFERED;
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
    pub const FMA: u32 = 1 << 12;
    pub const F16C: u32 = 1 << 29;
    pub const XSAVE: u32 = 1 << 26;
    pub const OSXSAVE: u32 = 1 << 27;
    pub const AVX: u32 = 1 << 28;
    pub const HYPERVISOR: u32 = 1 << 31;
    // Leaf 1 EDX
    pub const APIC: u32 = 1 << 9;
    pub const HTT: u32 = 1 << 28;
    /// Debug store, ACPI thermal control (IA32_THERM_* MSRs), thermal monitor, pending break
    /// enable: power and thermal hardware no VM here has (Linux's thermal code reads
    /// IA32_THERM_INTERRUPT when it sees ACPI and TM).
    pub const LEAF1_EDX_THERMAL: u32 = (1 << 21) | (1 << 22) | (1 << 29) | (1 << 31);
    /// Leaf 1 ECX: 64-bit DS area, CPL-qualified DS, Enhanced SpeedStep, TM2.
    pub const LEAF1_ECX_THERMAL: u32 = (1 << 2) | (1 << 4) | (1 << 7) | (1 << 8);
    // Leaf 7.0 EBX: AVX2 and the AVX-512 family need XSAVE state Basalt does not expose yet.
    /// Leaf 7 EBX: AVX2 (needs AVX state), and the AVX-512 family (needs its three XSAVE
    /// components): F, DQ, IFMA, PF, ER, CD, BW, VL.
    pub const AVX2: u32 = 1 << 5;
    pub const LEAF7_EBX_AVX512: u32 =
        (1 << 16) | (1 << 17) | (1 << 21) | (1 << 26) | (1 << 27) | (1 << 28) | (1 << 30) | (1 << 31);
    // Leaf 0x8000_0001 ECX
    pub const SVM: u32 = 1 << 2;
    pub const EXTAPIC: u32 = 1 << 3;
    /// Instruction-based sampling (a PMU feature; the PMU is hidden).
    pub const IBS: u32 = 1 << 10;
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
            let xcr0 = offered_xcr0(host);
            let [mut a, mut b, mut c, mut d] = host(leaf, subleaf);
            match leaf {
                1 => {
                    c &= !(bit::MONITOR
                        | bit::VMX
                        | bit::SMX
                        | bit::PDCM
                        | bit::X2APIC
                        | bit::TSC_DEADLINE
                        | bit::OSXSAVE
                        | bit::LEAF1_ECX_THERMAL);
                    if xcr0 == 0 {
                        c &= !bit::XSAVE;
                    }
                    if xcr0 & XCR0_AVX == 0 {
                        c &= !(bit::AVX | bit::FMA | bit::F16C);
                    }
                    c |= bit::HYPERVISOR;
                    d &= !(bit::APIC | bit::HTT | bit::LEAF1_EDX_THERMAL);
                    // One logical processor, initial APIC ID 0.
                    b &= 0x0000_FFFF;
                }
                // MONITOR/MWAIT, thermal/power, performance monitoring, XSAVE, cache/topology
                // enumeration of the host, SVM features, IBS, SME/SEV memory encryption: nothing
                // a VM here can use (Linux's decompressor reads MSR_AMD64_SEV when 0x8000_001F
                // offers SEV, and that MSR is not offered).
                4 | 5 | 6 | 0xA | 0xB | 0x1F | 0x8000_000A | 0x8000_001B | 0x8000_001E | 0x8000_001F => {
                    [a, b, c, d] = [0; 4];
                }
                0xD => [a, b, c, d] = xsave_leaf(subleaf, xcr0, host),
                7 if subleaf == 0 => {
                    if xcr0 & XCR0_AVX == 0 {
                        b &= !bit::AVX2;
                    }
                    if xcr0 & XCR0_AVX512 != XCR0_AVX512 {
                        b &= !bit::LEAF7_EBX_AVX512;
                    }
                    c = 0;
                    d = 0;
                }
                7 => [a, b, c, d] = [0; 4],
                0x8000_0001 => c &= !(bit::SVM | bit::EXTAPIC | bit::IBS | bit::TOPOEXT),
                // The speculation controls come from the VM's `GuestSpec` (see
                // `CpuidTable::expose_speculation_controls`), never straight from the host.
                0x8000_0008 => b &= !crate::mitigations::EXT8_EBX_SPEC_BITS,
                _ => {}
            }
            [a, b, c, d]
        }
    }
}

/// XCR0's AVX bit and its three AVX-512 components (SDM Vol. 1 13.1).
const XCR0_AVX: u64 = 1 << 2;
const XCR0_AVX512: u64 = 0x7 << 5;

/// The XSAVE state components the virtual CPU offers: those of x87, SSE, AVX and AVX-512 the
/// host has, as a consistent set (SSE with x87, AVX with SSE, AVX-512 whole and with AVX);
/// 0 without XSAVE.
pub fn offered_xcr0(host: &dyn Fn(u32, u32) -> [u32; 4]) -> u64 {
    if host(0, 0)[0] < 0xD || host(1, 0)[2] & bit::XSAVE == 0 {
        return 0;
    }
    let [eax, _, _, edx] = host(0xD, 0);
    let mut xcr0 = ((edx as u64) << 32 | eax as u64) & XCR0_OFFERED;
    if xcr0 & 3 != 3 {
        return 0;
    }
    if xcr0 & XCR0_AVX == 0 || xcr0 & XCR0_AVX512 != XCR0_AVX512 {
        xcr0 &= !XCR0_AVX512;
    }
    xcr0
}

/// Leaf 0xD for the offered components (SDM Vol. 1 13.2): subleaf 0 the supported XCR0 bits,
/// the size of the enabled ones (EBX, live: see `dynamic`) and of all offered (ECX); subleaf 1
/// XSAVEOPT, XSAVEC and XGETBV with ECX = 1 where the host has them (no XSAVES: no IA32_XSS);
/// subleaf i the size and offset of each offered component i.
fn xsave_leaf(subleaf: u32, xcr0: u64, host: &dyn Fn(u32, u32) -> [u32; 4]) -> [u32; 4] {
    if xcr0 == 0 {
        return [0; 4];
    }
    match subleaf {
        0 => {
            let all = (2..64)
                .filter(|i| xcr0 & (1 << i) != 0)
                .map(|i| {
                    let [size, offset, _, _] = host(0xD, i);
                    offset + size
                })
                .fold(512 + 64, u32::max);
            [xcr0 as u32, host(0xD, 0)[1], all, (xcr0 >> 32) as u32]
        }
        1 => {
            let [eax, ebx, _, _] = host(0xD, 1);
            [eax & 0x7, ebx, 0, 0]
        }
        i if i < 64 && xcr0 & (1 << i) != 0 && i >= 2 => {
            let [eax, ebx, ecx, _] = host(0xD, i);
            [eax, ebx, ecx & 0x2, 0]
        }
        _ => [0; 4],
    }
}

/// The size of an XSAVEC area holding the components of `xcr0` (SDM Vol. 1 13.4.3): the
/// legacy area and header, then each enabled component from 2 up, 64-byte aligned where
/// CPUID.(0xD, i).ECX[1] says so.
pub fn compacted_size(xcr0: u64, host: &dyn Fn(u32, u32) -> [u32; 4]) -> u32 {
    (2..63u32).filter(|i| xcr0 & (1 << i) != 0).fold(512 + 64, |at, i| {
        let [size, _, ecx, _] = host(0xD, i);
        let start = if ecx & 2 != 0 { (at + 63) & !63 } else { at };
        start + size
    })
}

/// The parts of an answer that follow the guest's own state, patched in at the exit: the
/// OSXSAVE bit mirrors the guest's CR4.OSXSAVE (leaf 1 ECX[27]), and the XSAVE area sizes of
/// leaf 0xD follow its XCR0, which is the live one while it runs.
#[cold]
fn dynamic<V: VirtualCpu + ?Sized>(answer: &mut [u64; 4], leaf: u32, subleaf: u32, vcpu: &V) {
    match leaf {
        1 if vcpu.summary().cr4 & CR4_OSXSAVE != 0 && answer[2] & bit::XSAVE as u64 != 0 => {
            answer[2] |= bit::OSXSAVE as u64;
        }
        0xD if subleaf == 0 && answer[0] != 0 => answer[1] = host_cpuid(0xD, 0)[1] as u64,
        // The compacted size (XSAVEC) of what XCR0 enables, computed (Bochs reports the
        // standard size there, which Linux then finds inconsistent with the components).
        0xD if subleaf == 1 && answer[0] != 0 => {
            let xcr0 = basalt_arch::hoststate::current_xcr0().unwrap_or(1);
            answer[1] = compacted_size(xcr0, &host_cpuid) as u64;
        }
        _ => {}
    }
}

const CR4_OSXSAVE: u64 = 1 << 18;

/// CPUID leaf 0xB subleaf `subleaf` for x2APIC ID `id` in a package of `vcpus` single-thread
/// cores (SDM Vol. 2A CPUID): level 0 SMT (1 thread, shift 0), level 1 core (shift enough for
/// every vCPU), then invalid levels.
fn topology_leaf(subleaf: u32, id: u32, vcpus: u32) -> [u64; 4] {
    let core_shift = 32 - vcpus.max(1).saturating_sub(1).leading_zeros();
    let [a, b, c] = match subleaf {
        0 => [0, 1, 1 << 8],
        1 => [core_shift, vcpus, 1 | (2 << 8)],
        n => [0, 0, n & 0xFF],
    };
    [a as u64, b as u64, c as u64, id as u64]
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
    matches!(
        leaf,
        0..=3 | 5 | 6 | 0xA | 0x15 | 0x16 | 0x8000_0000..=0x8000_0008 | 0x8000_000A | 0x8000_001B | 0x8000_001E | 0x8000_001F
    )
}

/// A VM's CPUID answers, computed once when the VM is made (DESIGN.md: no decoding or host
/// queries on the exit path when the answer cannot change). Leaves outside the table, and
/// subleaves other than 0 of leaves that have them, are computed by [`virtual_cpuid`] on the
/// exit.
pub struct CpuidTable {
    /// EAX, EBX, ECX, EDX as the 64-bit register values the guest gets (zero-extended).
    basic: [[u64; 4]; BASIC_LEAVES],
    ext: [[u64; 4]; EXT_LEAVES],
    /// This vCPU's APIC ID and the VM's vCPU count (leaf 0xB), once set.
    topology: Option<(u32, u32)>,
}

impl CpuidTable {
    /// The table for this host CPU.
    pub fn new() -> Self {
        Self::with_host(&host_cpuid)
    }

    /// The table for a host that answers like `host` (tests).
    pub fn with_host(host: &dyn Fn(u32, u32) -> [u32; 4]) -> Self {
        let widen = |a: [u32; 4]| a.map(u64::from);
        let mut t = CpuidTable { basic: [[0; 4]; BASIC_LEAVES], ext: [[0; 4]; EXT_LEAVES], topology: None };
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
    /// Report a TSC of `khz` (invariant where the host's is): CPUID 0x15 (a 25 MHz crystal,
    /// which is also the local APIC timer's input clock, and the ratio `khz`/25000, so TSC =
    /// 1000 * khz Hz, SDM Vol. 2A CPUID) and 0x16 (base and maximum MHz, a 100 MHz bus),
    /// raising the maximum basic leaf to 0x16 where the host's is lower. A guest then needs no
    /// calibration against a timer.
    pub fn set_tsc_khz(&mut self, khz: u64) {
        if khz == 0 || khz > u32::MAX as u64 {
            return;
        }
        let mhz = khz / 1000;
        let crystal = crate::vm::apic::APIC_BUS_HZ;
        self.basic[0x15] = [crystal / 1000, khz, crystal, 0];
        self.basic[0x16] = [mhz, mhz, 100, 0];
        self.basic[0][0] = self.basic[0][0].max(0x16);
    }

    /// The virtual local APIC and the VM's topology: leaf 1 offers the APIC, x2APIC and the
    /// TSC-deadline timer and gives this vCPU's initial APIC ID; leaf 0xB describes `vcpus`
    /// cores of one thread each in one package, with x2APIC ID `apic_id`.
    pub fn set_topology(&mut self, apic_id: u32, vcpus: u32) {
        let l1 = &mut self.basic[1];
        l1[1] = (l1[1] & 0x00FF_FFFF) | ((apic_id as u64 & 0xFF) << 24);
        l1[2] |= (bit::X2APIC | bit::TSC_DEADLINE) as u64;
        l1[3] |= bit::APIC as u64;
        self.topology = Some((apic_id, vcpus.max(1)));
        if self.basic[0][0] >= 0xB {
            self.basic[0xB] = topology_leaf(0, apic_id, vcpus);
        }
    }

    #[inline]
    pub fn lookup(&self, leaf: u32, subleaf: u32) -> [u64; 4] {
        if leaf == 0xB && subleaf != 0 {
            if let Some((id, n)) = self.topology.filter(|_| self.basic[0][0] >= 0xB) {
                return topology_leaf(subleaf, id, n);
            }
        }
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
    let (leaf, subleaf) = (regs.rax as u32, regs.rcx as u32);
    let mut answer = vm.cpuid.lookup(leaf, subleaf);
    if leaf == 1 || leaf == 0xD {
        dynamic(&mut answer, leaf, subleaf, vcpu);
        if leaf == 1 && vm.lapic.mode() == basalt_devices::lapic::Mode::Disabled {
            // A globally disabled APIC is absent from CPUID (SDM 10.4.3).
            answer[3] &= !(bit::APIC as u64);
        }
    }
    let regs = vcpu.gprs();
    [regs.rax, regs.rbx, regs.rcx, regs.rdx] = answer;
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
    fn topology_leaf_describes_the_vms_vcpus() {
        assert_eq!(topology_leaf(0, 3, 4), [0, 1, 0x100, 3]);
        assert_eq!(topology_leaf(1, 3, 4), [2, 4, 0x201, 3]);
        assert_eq!(topology_leaf(1, 0, 1), [0, 1, 0x201, 0]);
        assert_eq!(topology_leaf(1, 2, 3), [2, 3, 0x201, 2]);
        assert_eq!(topology_leaf(2, 2, 3), [0, 0, 2, 2]);
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
        assert_eq!(d & bit::LEAF1_EDX_THERMAL, 0, "no ACPI thermal control or thermal monitor");
        assert_eq!(c & bit::LEAF1_ECX_THERMAL, 0, "no SpeedStep or TM2");
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

    /// A Skylake-X-like host: XSAVE with x87, SSE, AVX, AVX-512 and PKRU (SDM Table 13-1 sizes
    /// and offsets).
    fn xsave_host(leaf: u32, sub: u32) -> [u32; 4] {
        match (leaf, sub) {
            (0, _) => [0xD, 0x756E_6547, 0x6C65_746E, 0x4965_6E69],
            (1, _) => [0x50654, 0, bit::XSAVE | bit::OSXSAVE | bit::AVX | bit::FMA, 0],
            (7, 0) => [0, bit::AVX2 | bit::LEAF7_EBX_AVX512 | 1, 0, 0],
            (0xD, 0) => [0x2E7, 0xA88, 0xA88, 0],
            (0xD, 1) => [0xF, 0x988, 0, 0],
            (0xD, 2) => [256, 576, 0, 0],
            (0xD, 5) => [64, 1088, 0, 0],
            (0xD, 6) => [512, 1152, 0, 0],
            (0xD, 7) => [1024, 1664, 0, 0],
            (0xD, 9) => [8, 2688, 0, 0],
            (0x8000_0000, _) => [0x8000_0008, 0, 0, 0],
            _ => [0; 4],
        }
    }

    #[test]
    fn xsave_is_offered_for_x87_sse_avx_and_avx512_only() {
        assert_eq!(offered_xcr0(&xsave_host), 0xE7);
        let [_, _, c, _] = virtual_cpuid(1, 0, &xsave_host);
        assert_ne!(c & bit::XSAVE, 0);
        assert_ne!(c & bit::AVX, 0);
        assert_eq!(c & bit::OSXSAVE, 0, "OSXSAVE follows the guest's CR4, not the host's");
        assert_eq!(virtual_cpuid(7, 0, &xsave_host)[1] & bit::LEAF7_EBX_AVX512, bit::LEAF7_EBX_AVX512);
        let [a, _, c, d] = virtual_cpuid(0xD, 0, &xsave_host);
        assert_eq!((a, c, d), (0xE7, 2688, 0), "PKRU not offered; the area ends after Hi16_ZMM");
        assert_eq!(virtual_cpuid(0xD, 1, &xsave_host)[0], 0x7, "no XSAVES");
        // x87, SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM compacted: 576 + 256 + 64 + 512 + 1024.
        assert_eq!(compacted_size(0xE7, &xsave_host), 2432);
        assert_eq!(compacted_size(0x7, &xsave_host), 832);
        assert_eq!(compacted_size(0x3, &xsave_host), 576);
        assert_eq!(virtual_cpuid(0xD, 2, &xsave_host), [256, 576, 0, 0]);
        assert_eq!(virtual_cpuid(0xD, 9, &xsave_host), [0; 4], "PKRU hidden");
        // Only part of AVX-512: none of it, and no AVX-512 CPUID bits.
        let partial = |leaf, sub| match (leaf, sub) {
            (0xD, 0) => [0x27, 0x340, 0x380, 0],
            other => xsave_host(other.0, other.1),
        };
        assert_eq!(offered_xcr0(&partial), 0x7);
        assert_eq!(virtual_cpuid(7, 0, &partial)[1] & bit::LEAF7_EBX_AVX512, 0);
        assert_eq!(virtual_cpuid(0xD, 0, &partial)[2], 832);
        // No XSAVE at all: no AVX either.
        let none = |leaf, sub| match leaf {
            1 => [0x50654, 0, bit::AVX, 0],
            _ => xsave_host(leaf, sub),
        };
        assert_eq!(offered_xcr0(&none), 0);
        assert_eq!(virtual_cpuid(1, 0, &none)[2] & (bit::AVX | bit::XSAVE), 0);
        assert_eq!(virtual_cpuid(0xD, 0, &none), [0; 4]);
    }

    #[test]
    fn the_tsc_rate_is_reported_in_leaves_0x15_and_0x16() {
        let mut t = CpuidTable::with_host(&fake_host);
        t.set_tsc_khz(2_116_269);
        assert_eq!(t.lookup(0, 0)[0], 0x16, "the maximum basic leaf covers 0x16");
        let [den, num, crystal, _] = t.lookup(0x15, 0);
        assert_eq!(crystal * num / den, 2_116_269_000, "TSC Hz = crystal * numerator / denominator");
        assert_eq!(t.lookup(0x16, 0)[..3], [2116, 2116, 100]);
        assert_eq!(t.lookup(0x15, 3), t.lookup(0x15, 0), "no subleaves");
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
