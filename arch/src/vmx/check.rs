//! Segment access rights (SDM 25.4.1) and a checker for the guest state that VM entry
//! verifies (SDM 26.3.1): when an entry fails with "invalid guest state" the hardware says no
//! more, so the backend runs this over what it wrote and names the first rule broken.

use crate::virt::bits::*;
use crate::virt::Segment;

/// Access rights bit 16: the segment is unusable.
pub const AR_UNUSABLE: u32 = 1 << 16;

/// Convert the SVM-style `attrib` packing (type..P in 7:0, AVL/L/D/G in 11:8) to VMX access
/// rights (type..P in 7:0, AVL/L/D/G in 15:12, unusable in 16). A segment that is not present
/// is marked unusable.
pub fn access_rights(attrib: u16) -> u32 {
    let ar = (attrib as u32 & 0xFF) | ((attrib as u32 >> 8) & 0xF) << 12;
    if ar & (1 << 7) == 0 {
        ar | AR_UNUSABLE
    } else {
        ar
    }
}

/// The inverse of `access_rights` (an unusable segment keeps its other bits).
pub fn attrib_from_access_rights(ar: u32) -> u16 {
    ((ar & 0xFF) | ((ar >> 12) & 0xF) << 8) as u16
}

/// A guest segment as the VMCS holds it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VmxSegment {
    pub selector: u16,
    pub base: u64,
    pub limit: u32,
    pub access_rights: u32,
}

impl From<Segment> for VmxSegment {
    fn from(s: Segment) -> Self {
        VmxSegment {
            selector: s.selector,
            base: s.base,
            limit: s.limit,
            access_rights: access_rights(s.attrib),
        }
    }
}

impl VmxSegment {
    fn usable(&self) -> bool {
        self.access_rights & AR_UNUSABLE == 0
    }
    fn ty(&self) -> u32 {
        self.access_rights & 0xF
    }
    fn s(&self) -> bool {
        self.access_rights & (1 << 4) != 0
    }
    fn dpl(&self) -> u32 {
        (self.access_rights >> 5) & 3
    }
    fn present(&self) -> bool {
        self.access_rights & (1 << 7) != 0
    }
    fn l(&self) -> bool {
        self.access_rights & (1 << 13) != 0
    }
    fn db(&self) -> bool {
        self.access_rights & (1 << 14) != 0
    }
    fn g(&self) -> bool {
        self.access_rights & (1 << 15) != 0
    }
    /// Reserved bits 11:8 and 31:17 are zero (SDM 26.3.1.2).
    fn reserved_clear(&self) -> bool {
        self.access_rights & 0xFFFE_0F00 == 0
    }
    /// Limit bits 11:0 all ones unless G is 0; limit bits 31:20 zero unless G is 1.
    fn granularity_consistent(&self) -> bool {
        (self.limit & 0xFFF == 0xFFF || !self.g()) && (self.limit & 0xFFF0_0000 == 0 || self.g())
    }
}

/// The guest-state fields VM entry checks, and the settings they are checked against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestState {
    pub cr0: u64,
    pub cr4: u64,
    pub efer: u64,
    pub rflags: u64,
    pub rip: u64,
    pub cs: VmxSegment,
    pub ss: VmxSegment,
    pub ds: VmxSegment,
    pub es: VmxSegment,
    pub fs: VmxSegment,
    pub gs: VmxSegment,
    pub tr: VmxSegment,
    pub ldtr: VmxSegment,
    pub gdtr_limit: u32,
    pub idtr_limit: u32,
    pub interruptibility: u32,
    pub activity: u32,
    pub link_pointer: u64,
    pub ia32e_guest: bool,
    pub unrestricted_guest: bool,
    pub load_efer: bool,
    pub cr0_fixed0: u64,
    pub cr0_fixed1: u64,
    pub cr4_fixed0: u64,
    pub cr4_fixed1: u64,
}

const RFLAGS_VM: u64 = 1 << 17;
/// RFLAGS bits 63:22, 15, 5 and 3 are reserved zero (SDM 26.3.1.4).
const RFLAGS_RESERVED0: u64 = !0x3F_FFFF | 1 << 15 | 1 << 5 | 1 << 3;

/// The first SDM 26.3.1 rule `g` breaks, in the manual's words, or `None` if the checks modelled
/// here all pass.
pub fn check_guest_state(g: &GuestState) -> Option<&'static str> {
    // 26.3.1.1: control registers and EFER.
    let pe_pg = if g.unrestricted_guest { CR0_PE | CR0_PG } else { 0 };
    if g.cr0 & (g.cr0_fixed0 & !pe_pg) != g.cr0_fixed0 & !pe_pg {
        return Some("CR0 has a bit clear that IA32_VMX_CR0_FIXED0 requires set");
    }
    if g.cr0 & !g.cr0_fixed1 & 0xFFFF_FFFF != 0 {
        return Some("CR0 has a bit set that IA32_VMX_CR0_FIXED1 requires clear");
    }
    if g.cr0 >> 32 != 0 {
        return Some("CR0 bits 63:32 are not zero");
    }
    if g.cr0 & CR0_PG != 0 && g.cr0 & CR0_PE == 0 {
        return Some("CR0.PG set with CR0.PE clear");
    }
    if g.cr4 & g.cr4_fixed0 != g.cr4_fixed0 {
        return Some("CR4 has a bit clear that IA32_VMX_CR4_FIXED0 requires set (CR4.VMXE)");
    }
    if g.cr4 & !g.cr4_fixed1 != 0 {
        return Some("CR4 has a bit set that IA32_VMX_CR4_FIXED1 requires clear");
    }
    if g.ia32e_guest && g.cr0 & CR0_PG == 0 {
        return Some("IA-32e mode guest with CR0.PG clear");
    }
    if g.ia32e_guest && g.cr4 & CR4_PAE == 0 {
        return Some("IA-32e mode guest with CR4.PAE clear");
    }
    const CR4_PCIDE: u64 = 1 << 17;
    if !g.ia32e_guest && g.cr4 & CR4_PCIDE != 0 {
        return Some("CR4.PCIDE set outside IA-32e mode");
    }
    if g.load_efer {
        if (g.efer & EFER_LMA != 0) != g.ia32e_guest {
            return Some("EFER.LMA differs from the IA-32e mode guest entry control");
        }
        if g.cr0 & CR0_PG != 0 && (g.efer & EFER_LMA != 0) != (g.efer & EFER_LME != 0) {
            return Some("EFER.LME differs from EFER.LMA with CR0.PG set");
        }
    }

    // 26.3.1.2: segment registers.
    let v86 = g.rflags & RFLAGS_VM != 0;
    let tr = &g.tr;
    if tr.selector & 4 != 0 {
        return Some("TR selector has TI set");
    }
    if !tr.usable() {
        return Some("TR is unusable");
    }
    if !(tr.ty() == 11 || (!g.ia32e_guest && tr.ty() == 3)) {
        return Some("TR type is not a busy TSS");
    }
    if tr.s() || !tr.present() {
        return Some("TR must be a present system descriptor (S clear, P set)");
    }
    if !tr.reserved_clear() || !tr.granularity_consistent() {
        return Some("TR access rights or limit/granularity inconsistent");
    }
    let ldtr = &g.ldtr;
    if ldtr.usable()
        && (ldtr.selector & 4 != 0 || ldtr.ty() != 2 || ldtr.s() || !ldtr.present() || !ldtr.reserved_clear())
    {
        return Some("LDTR usable but not a present LDT descriptor");
    }
    if v86 {
        return None; // Virtual-8086 rules (base = selector << 4, ...) are not modelled.
    }
    let cs = &g.cs;
    let cs_types: &[u32] = if g.unrestricted_guest { &[3, 9, 11, 13, 15] } else { &[9, 11, 13, 15] };
    if !cs.usable() || !cs_types.contains(&cs.ty()) {
        return Some("CS type is not an accessed code segment");
    }
    if !cs.s() || !cs.present() || !cs.reserved_clear() {
        return Some("CS must be a present code/data descriptor (S and P set)");
    }
    if cs.ty() == 3 && cs.dpl() != 0 {
        return Some("CS type 3 (unrestricted guest) with DPL not 0");
    }
    if g.ia32e_guest && cs.l() && cs.db() {
        return Some("CS.L and CS.D/B both set in IA-32e mode");
    }
    if !cs.granularity_consistent() {
        return Some("CS limit inconsistent with CS.G");
    }
    if g.ss.usable() {
        let ss = &g.ss;
        if ss.ty() != 3 && ss.ty() != 7 {
            return Some("SS type is not a read/write accessed data segment");
        }
        if !ss.s() || !ss.present() || !ss.reserved_clear() {
            return Some("SS must be a present data descriptor");
        }
        if !ss.granularity_consistent() {
            return Some("SS limit inconsistent with SS.G");
        }
    }
    if !g.unrestricted_guest && g.ss.dpl() != (g.ss.selector & 3) as u32 {
        return Some("SS.DPL differs from SS.RPL");
    }
    if (cs.ty() == 3 || g.cr0 & CR0_PE == 0) && g.ss.dpl() != 0 {
        return Some("SS.DPL not 0 in real mode or with CS type 3");
    }
    for seg in [&g.ds, &g.es, &g.fs, &g.gs] {
        if !seg.usable() {
            continue;
        }
        if seg.ty() & 1 == 0 {
            return Some("DS/ES/FS/GS usable but not accessed");
        }
        if seg.ty() & 8 != 0 && seg.ty() & 2 == 0 {
            return Some("DS/ES/FS/GS usable code segment that is not readable");
        }
        if !seg.s() || !seg.present() || !seg.reserved_clear() {
            return Some("DS/ES/FS/GS must be present code/data descriptors");
        }
        if !seg.granularity_consistent() {
            return Some("DS/ES/FS/GS limit inconsistent with G");
        }
    }

    // 26.3.1.3: descriptor-table registers.
    if g.gdtr_limit >> 16 != 0 || g.idtr_limit >> 16 != 0 {
        return Some("GDTR/IDTR limit bits 31:16 not zero");
    }

    // 26.3.1.4: RIP and RFLAGS.
    if !(g.ia32e_guest && cs.l()) && g.rip >> 32 != 0 {
        return Some("RIP bits 63:32 set outside 64-bit mode");
    }
    if g.rflags & RFLAGS_RESERVED0 != 0 || g.rflags & RFLAGS_RESERVED1 == 0 {
        return Some("RFLAGS reserved bits wrong (bit 1 must be 1, bits 3, 5, 15, 63:22 must be 0)");
    }
    if (g.ia32e_guest || g.cr0 & CR0_PE == 0) && v86 {
        return Some("RFLAGS.VM set in IA-32e mode or real mode");
    }

    // 26.3.1.5: non-register state.
    if g.activity > 3 {
        return Some("activity state out of range");
    }
    let sti = g.interruptibility & 1 != 0;
    let mov_ss = g.interruptibility & 2 != 0;
    if sti && mov_ss {
        return Some("interruptibility: blocking by STI and by MOV SS both set");
    }
    if sti && g.rflags & RFLAGS_IF == 0 {
        return Some("interruptibility: blocking by STI with RFLAGS.IF clear");
    }
    if g.interruptibility & !0x1F != 0 {
        return Some("interruptibility-state reserved bits set");
    }
    if g.link_pointer != !0 {
        return Some("VMCS link pointer is not FFFFFFFF_FFFFFFFFH");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virt::{DescriptorTable, InitialState};

    #[test]
    fn access_rights_conversion() {
        assert_eq!(access_rights(Segment::code64(8).attrib), 0xA09B);
        assert_eq!(access_rights(Segment::data(0x10).attrib), 0xC093);
        assert_eq!(access_rights(Segment::code32(8).attrib), 0xC09B);
        assert_eq!(access_rights(Segment::real_mode(0, true).attrib), 0x009B);
        assert_eq!(access_rights(Segment::tss(0x18).attrib), 0x008B);
        assert_eq!(access_rights(Segment::null_ldt().attrib), 0x0082);
        assert_eq!(access_rights(0x0002), 0x1_0002, "not present is unusable");
        for attrib in [0x0A9B, 0x0C93, 0x008B, 0x0082] {
            assert_eq!(attrib_from_access_rights(access_rights(attrib)), attrib);
        }
    }

    /// Bochs-like fixed bits: CR0 PE, NE, PG fixed 1; CR4 VMXE fixed 1.
    fn state(init: &InitialState, unrestricted: bool) -> GuestState {
        let cr0_fixed0 = 0x8000_0021;
        let cr4_fixed0 = 0x2000;
        let pe_pg = if unrestricted { CR0_PE | CR0_PG } else { 0 };
        GuestState {
            cr0: init.cr0 | (cr0_fixed0 & !pe_pg),
            cr4: init.cr4 | cr4_fixed0,
            efer: init.efer,
            rflags: init.rflags,
            rip: init.rip,
            cs: init.cs.into(),
            ss: init.ss.into(),
            ds: init.ds.into(),
            es: init.es.into(),
            fs: init.fs.into(),
            gs: init.gs.into(),
            tr: init.tr.into(),
            ldtr: init.ldtr.into(),
            gdtr_limit: init.gdtr.limit as u32,
            idtr_limit: init.idtr.limit as u32,
            interruptibility: 0,
            activity: 0,
            link_pointer: !0,
            ia32e_guest: init.efer & EFER_LMA != 0,
            unrestricted_guest: unrestricted,
            load_efer: true,
            cr0_fixed0,
            cr0_fixed1: 0xFFFF_FFFF,
            cr4_fixed0,
            cr4_fixed1: 0x3F_FFFF,
        }
    }

    fn long() -> InitialState {
        InitialState::long_mode(0x1000, 0x8000, 0x2000, DescriptorTable { base: 0x3000, limit: 0x17 })
    }

    #[test]
    fn the_initial_states_pass() {
        assert_eq!(check_guest_state(&state(&long(), true)), None);
        assert_eq!(check_guest_state(&state(&long(), false)), None);
        assert_eq!(check_guest_state(&state(&InitialState::real_mode(0, 0x7C00, 0x7000), true)), None);
        let multiboot = InitialState::protected_mode(0x10_0000, 0x2BAD_B002, 0x1000);
        assert_eq!(check_guest_state(&state(&multiboot, true)), None);
        assert_eq!((multiboot.gprs.rax, multiboot.gprs.rbx, multiboot.rip), (0x2BAD_B002, 0x1000, 0x10_0000));
        assert_eq!(crate::virt::code_bits(multiboot.cr0, multiboot.efer, multiboot.cs.attrib), 32);
    }

    #[test]
    fn protected_mode_without_paging_needs_unrestricted_guest() {
        let g = GuestState {
            unrestricted_guest: false,
            ..state(&InitialState::protected_mode(0x10_0000, 0, 0), true)
        };
        assert_eq!(check_guest_state(&g), Some("CR0 has a bit clear that IA32_VMX_CR0_FIXED0 requires set"));
    }

    #[test]
    fn real_mode_needs_unrestricted_guest() {
        let g = GuestState {
            unrestricted_guest: false,
            ..state(&InitialState::real_mode(0, 0x7C00, 0x7000), true)
        };
        assert_eq!(check_guest_state(&g), Some("CR0 has a bit clear that IA32_VMX_CR0_FIXED0 requires set"));
    }

    #[test]
    fn each_rule_is_named() {
        let ok = state(&long(), true);
        let cases: [(GuestState, &str); 10] = [
            (GuestState { cr0: ok.cr0 & !CR0_PE, ..ok }, "CR0.PG set with CR0.PE clear"),
            (GuestState { cr4: ok.cr4 & !0x2000, ..ok }, "CR4 has a bit clear"),
            (GuestState { cr4: ok.cr4 & !CR4_PAE, ..ok }, "IA-32e mode guest with CR4.PAE clear"),
            (GuestState { ia32e_guest: false, ..ok }, "EFER.LMA differs"),
            (GuestState { efer: ok.efer & !EFER_LME, ..ok }, "EFER.LME differs"),
            (
                GuestState { tr: VmxSegment { access_rights: 0x89, ..ok.tr }, ..ok },
                "TR type is not a busy TSS",
            ),
            (GuestState { cs: VmxSegment { access_rights: 0xE09B, ..ok.cs }, ..ok }, "CS.L and CS.D/B"),
            (GuestState { ss: VmxSegment { limit: 0xFFFF_0000, ..ok.ss }, ..ok }, "SS limit inconsistent"),
            (GuestState { rflags: 0, ..ok }, "RFLAGS reserved bits"),
            (GuestState { link_pointer: 0, ..ok }, "link pointer"),
        ];
        for (g, words) in cases {
            let found = check_guest_state(&g);
            assert!(found.is_some_and(|f| f.contains(words)), "{words}: {found:?}");
        }
        let sti = GuestState { interruptibility: 1, ..ok };
        assert_eq!(check_guest_state(&sti), Some("interruptibility: blocking by STI with RFLAGS.IF clear"));
        let unusable_tr = GuestState { tr: VmxSegment { access_rights: AR_UNUSABLE | 0x8B, ..ok.tr }, ..ok };
        assert_eq!(check_guest_state(&unusable_tr), Some("TR is unusable"));
    }
}
