//! The Virtual Machine Control Block (APM Vol. 2 Appendix B): a 4 KiB page with the control
//! area at 0x000-0x3FF (Table B-1) and the state save area at 0x400 (Table B-2).

/// A segment register in the state save area (APM Vol. 2 15.5.1, Table B-2): selector,
/// attributes packed as type[3:0] S[4] DPL[6:5] P[7] AVL[8] L[9] D/B[10] G[11], limit, base.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VmcbSegment {
    pub selector: u16,
    pub attrib: u16,
    pub limit: u32,
    pub base: u64,
}

/// The control area (APM Vol. 2 Table B-1).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ControlArea {
    /// Reads of CR0-15 in bits 15:0, writes in bits 31:16.
    pub intercept_cr: u32,
    /// Reads of DR0-15 in bits 15:0, writes in bits 31:16.
    pub intercept_dr: u32,
    /// One bit per exception vector.
    pub intercept_exceptions: u32,
    /// INTR, NMI, ..., SHUTDOWN (the `intercept::misc1` bits).
    pub intercept_misc1: u32,
    /// VMRUN, VMMCALL, ... (the `intercept::misc2` bits).
    pub intercept_misc2: u32,
    pub intercept_misc3: u32,
    _reserved_018: [u8; 0x24],
    pub pause_filter_threshold: u16,
    pub pause_filter_count: u16,
    /// Physical address of the 12 KiB I/O permission map.
    pub iopm_base_pa: u64,
    /// Physical address of the 8 KiB MSR permission map.
    pub msrpm_base_pa: u64,
    pub tsc_offset: u64,
    pub guest_asid: u32,
    /// TLB_CONTROL in bits 7:0 (the rest reserved).
    pub tlb_control: u32,
    /// V_TPR[7:0], V_IRQ[8], VGIF[9], V_INTR_PRIO[19:16], V_IGN_TPR[20], V_INTR_MASKING[24],
    /// V_INTR_VECTOR[39:32], ... (the `int_ctl` bits).
    pub v_intr: u64,
    /// INTERRUPT_SHADOW[0], GUEST_INTERRUPT_MASK[1].
    pub interrupt_shadow: u64,
    pub exit_code: u64,
    pub exit_info_1: u64,
    pub exit_info_2: u64,
    pub exit_int_info: u64,
    /// NP_ENABLE[0], SEV[1], SEV-ES[2], ...
    pub np_enable: u64,
    pub avic_apic_bar: u64,
    pub ghcb_pa: u64,
    pub event_inj: u64,
    pub n_cr3: u64,
    /// LBR_VIRTUALIZATION_ENABLE[0], VIRTUALIZED_VMSAVE_VMLOAD[1].
    pub lbr_virtualization_enable: u64,
    pub vmcb_clean: u32,
    _reserved_0c4: u32,
    /// The RIP after the intercepted instruction (NRIPS only).
    pub next_rip: u64,
    pub guest_bytes_fetched: u8,
    pub guest_instruction_bytes: [u8; 15],
    pub avic_apic_backing_page: u64,
    _reserved_0e8: u64,
    pub avic_logical_table: u64,
    pub avic_physical_table: u64,
    _reserved_100: u64,
    pub vmsa_pa: u64,
    _reserved_110: [u8; 0x400 - 0x110],
}

/// The state save area (APM Vol. 2 Table B-2), at VMCB offset 0x400.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct StateSaveArea {
    pub es: VmcbSegment,
    pub cs: VmcbSegment,
    pub ss: VmcbSegment,
    pub ds: VmcbSegment,
    pub fs: VmcbSegment,
    pub gs: VmcbSegment,
    pub gdtr: VmcbSegment,
    pub ldtr: VmcbSegment,
    pub idtr: VmcbSegment,
    pub tr: VmcbSegment,
    _reserved_0a0: [u8; 0x2B],
    pub cpl: u8,
    _reserved_0cc: u32,
    pub efer: u64,
    _reserved_0d8: [u8; 0x70],
    pub cr4: u64,
    pub cr3: u64,
    pub cr0: u64,
    pub dr7: u64,
    pub dr6: u64,
    pub rflags: u64,
    pub rip: u64,
    _reserved_180: [u8; 0x58],
    pub rsp: u64,
    pub s_cet: u64,
    pub ssp: u64,
    pub isst_addr: u64,
    pub rax: u64,
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub cr2: u64,
    _reserved_248: [u8; 0x20],
    pub g_pat: u64,
    pub dbgctl: u64,
    pub br_from: u64,
    pub br_to: u64,
    pub lastexcpfrom: u64,
    pub lastexcpto: u64,
    _reserved_298: [u8; 0xC00 - 0x298],
}

/// A whole VMCB: one 4 KiB page, 4 KiB aligned.
#[repr(C, align(4096))]
#[derive(Debug, Clone, Copy)]
pub struct Vmcb {
    pub control: ControlArea,
    pub save: StateSaveArea,
}

const _: () = assert!(core::mem::size_of::<Vmcb>() == 4096);
const _: () = assert!(core::mem::size_of::<ControlArea>() == 0x400);

/// Intercept bits of `intercept_misc1` (VMCB offset 0x00C) and `intercept_misc2` (0x010).
pub mod intercept {
    pub const INTR: u32 = 1 << 0;
    pub const NMI: u32 = 1 << 1;
    pub const SMI: u32 = 1 << 2;
    pub const INIT: u32 = 1 << 3;
    pub const VINTR: u32 = 1 << 4;
    pub const IRET: u32 = 1 << 20;
    pub const CPUID: u32 = 1 << 18;
    pub const HLT: u32 = 1 << 24;
    pub const IOIO_PROT: u32 = 1 << 27;
    pub const MSR_PROT: u32 = 1 << 28;
    pub const SHUTDOWN: u32 = 1 << 31;

    pub const VMRUN: u32 = 1 << 0;
    pub const VMMCALL: u32 = 1 << 1;
    pub const VMLOAD: u32 = 1 << 2;
    pub const VMSAVE: u32 = 1 << 3;
    pub const STGI: u32 = 1 << 4;
    pub const CLGI: u32 = 1 << 5;
    pub const SKINIT: u32 = 1 << 6;
}

/// Bits of `v_intr` (VMCB offset 0x060, APM 15.21.1).
pub mod int_ctl {
    pub const V_TPR_MASK: u64 = 0xFF;
    pub const V_IRQ: u64 = 1 << 8;
    pub const V_INTR_PRIO_SHIFT: u32 = 16;
    pub const V_IGN_TPR: u64 = 1 << 20;
    pub const V_INTR_MASKING: u64 = 1 << 24;
    pub const V_INTR_VECTOR_SHIFT: u32 = 32;
}

/// TLB_CONTROL values (VMCB offset 0x05C, APM 15.16.2).
pub mod tlb_control {
    pub const DO_NOTHING: u32 = 0;
    pub const FLUSH_ALL: u32 = 1;
    pub const FLUSH_GUEST: u32 = 3;
    pub const FLUSH_GUEST_NON_GLOBAL: u32 = 7;
}

/// EVENTINJ / EXITINTINFO layout (APM 15.20): vector[7:0], TYPE[10:8], EV[11], V[31],
/// ERRORCODE[63:32].
pub mod event {
    pub const TYPE_INTR: u64 = 0 << 8;
    pub const TYPE_NMI: u64 = 2 << 8;
    pub const TYPE_EXCEPTION: u64 = 3 << 8;
    pub const TYPE_SOFT_INT: u64 = 4 << 8;
    pub const TYPE_MASK: u64 = 7 << 8;
    pub const EV: u64 = 1 << 11;
    pub const VALID: u64 = 1 << 31;
}

/// SVM exit codes (APM Vol. 2 Appendix C).
pub mod exit_code {
    pub const EXCP_BASE: u64 = 0x40;
    pub const EXCP_LAST: u64 = 0x5F;
    pub const INTR: u64 = 0x60;
    pub const NMI: u64 = 0x61;
    pub const VINTR: u64 = 0x64;
    pub const IRET: u64 = 0x74;
    pub const CPUID: u64 = 0x72;
    pub const HLT: u64 = 0x78;
    pub const IOIO: u64 = 0x7B;
    pub const MSR: u64 = 0x7C;
    pub const SHUTDOWN: u64 = 0x7F;
    pub const SMI: u64 = 0x62;
    pub const INIT: u64 = 0x63;
    pub const RDPMC: u64 = 0x6F;
    pub const INVD: u64 = 0x76;
    pub const INVLPGA: u64 = 0x7A;
    pub const VMRUN: u64 = 0x80;
    pub const VMMCALL: u64 = 0x81;
    pub const VMLOAD: u64 = 0x82;
    pub const VMSAVE: u64 = 0x83;
    pub const STGI: u64 = 0x84;
    pub const CLGI: u64 = 0x85;
    pub const SKINIT: u64 = 0x86;
    pub const WBINVD: u64 = 0x89;
    pub const MONITOR: u64 = 0x8A;
    pub const MWAIT: u64 = 0x8B;
    pub const MWAIT_CONDITIONAL: u64 = 0x8C;
    pub const XSETBV: u64 = 0x8D;
    pub const RDPRU: u64 = 0x8E;
    pub const NPF: u64 = 0x400;
    /// VMEXIT_INVALID: the VMRUN consistency checks failed.
    pub const INVALID: u64 = u64::MAX;

    /// Whether `code` is VMEXIT_INVALID (-1). QEMU TCG stores it as the 32-bit 0xFFFF_FFFF,
    /// so only the low half is compared; no other exit code has it all ones.
    pub const fn is_invalid(code: u64) -> bool {
        code as u32 == u32::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn control_area_offsets_match_apm_table_b1() {
        assert_eq!(offset_of!(ControlArea, intercept_cr), 0x000);
        assert_eq!(offset_of!(ControlArea, intercept_dr), 0x004);
        assert_eq!(offset_of!(ControlArea, intercept_exceptions), 0x008);
        assert_eq!(offset_of!(ControlArea, intercept_misc1), 0x00C);
        assert_eq!(offset_of!(ControlArea, intercept_misc2), 0x010);
        assert_eq!(offset_of!(ControlArea, intercept_misc3), 0x014);
        assert_eq!(offset_of!(ControlArea, pause_filter_threshold), 0x03C);
        assert_eq!(offset_of!(ControlArea, pause_filter_count), 0x03E);
        assert_eq!(offset_of!(ControlArea, iopm_base_pa), 0x040);
        assert_eq!(offset_of!(ControlArea, msrpm_base_pa), 0x048);
        assert_eq!(offset_of!(ControlArea, tsc_offset), 0x050);
        assert_eq!(offset_of!(ControlArea, guest_asid), 0x058);
        assert_eq!(offset_of!(ControlArea, tlb_control), 0x05C);
        assert_eq!(offset_of!(ControlArea, v_intr), 0x060);
        assert_eq!(offset_of!(ControlArea, interrupt_shadow), 0x068);
        assert_eq!(offset_of!(ControlArea, exit_code), 0x070);
        assert_eq!(offset_of!(ControlArea, exit_info_1), 0x078);
        assert_eq!(offset_of!(ControlArea, exit_info_2), 0x080);
        assert_eq!(offset_of!(ControlArea, exit_int_info), 0x088);
        assert_eq!(offset_of!(ControlArea, np_enable), 0x090);
        assert_eq!(offset_of!(ControlArea, avic_apic_bar), 0x098);
        assert_eq!(offset_of!(ControlArea, ghcb_pa), 0x0A0);
        assert_eq!(offset_of!(ControlArea, event_inj), 0x0A8);
        assert_eq!(offset_of!(ControlArea, n_cr3), 0x0B0);
        assert_eq!(offset_of!(ControlArea, lbr_virtualization_enable), 0x0B8);
        assert_eq!(offset_of!(ControlArea, vmcb_clean), 0x0C0);
        assert_eq!(offset_of!(ControlArea, next_rip), 0x0C8);
        assert_eq!(offset_of!(ControlArea, guest_bytes_fetched), 0x0D0);
        assert_eq!(offset_of!(ControlArea, guest_instruction_bytes), 0x0D1);
        assert_eq!(offset_of!(ControlArea, avic_apic_backing_page), 0x0E0);
        assert_eq!(offset_of!(ControlArea, avic_logical_table), 0x0F0);
        assert_eq!(offset_of!(ControlArea, avic_physical_table), 0x0F8);
        assert_eq!(offset_of!(ControlArea, vmsa_pa), 0x108);
    }

    #[test]
    fn state_save_area_offsets_match_apm_table_b2() {
        let at = |off: usize| 0x400 + off;
        assert_eq!(offset_of!(Vmcb, save), 0x400);
        assert_eq!(offset_of!(Vmcb, save.es), at(0x000));
        assert_eq!(offset_of!(Vmcb, save.cs), at(0x010));
        assert_eq!(offset_of!(Vmcb, save.ss), at(0x020));
        assert_eq!(offset_of!(Vmcb, save.ds), at(0x030));
        assert_eq!(offset_of!(Vmcb, save.fs), at(0x040));
        assert_eq!(offset_of!(Vmcb, save.gs), at(0x050));
        assert_eq!(offset_of!(Vmcb, save.gdtr), at(0x060));
        assert_eq!(offset_of!(Vmcb, save.ldtr), at(0x070));
        assert_eq!(offset_of!(Vmcb, save.idtr), at(0x080));
        assert_eq!(offset_of!(Vmcb, save.tr), at(0x090));
        assert_eq!(offset_of!(Vmcb, save.cpl), at(0x0CB));
        assert_eq!(offset_of!(Vmcb, save.efer), at(0x0D0));
        assert_eq!(offset_of!(Vmcb, save.cr4), at(0x148));
        assert_eq!(offset_of!(Vmcb, save.cr3), at(0x150));
        assert_eq!(offset_of!(Vmcb, save.cr0), at(0x158));
        assert_eq!(offset_of!(Vmcb, save.dr7), at(0x160));
        assert_eq!(offset_of!(Vmcb, save.dr6), at(0x168));
        assert_eq!(offset_of!(Vmcb, save.rflags), at(0x170));
        assert_eq!(offset_of!(Vmcb, save.rip), at(0x178));
        assert_eq!(offset_of!(Vmcb, save.rsp), at(0x1D8));
        assert_eq!(offset_of!(Vmcb, save.rax), at(0x1F8));
        assert_eq!(offset_of!(Vmcb, save.star), at(0x200));
        assert_eq!(offset_of!(Vmcb, save.lstar), at(0x208));
        assert_eq!(offset_of!(Vmcb, save.cstar), at(0x210));
        assert_eq!(offset_of!(Vmcb, save.sfmask), at(0x218));
        assert_eq!(offset_of!(Vmcb, save.kernel_gs_base), at(0x220));
        assert_eq!(offset_of!(Vmcb, save.sysenter_cs), at(0x228));
        assert_eq!(offset_of!(Vmcb, save.sysenter_esp), at(0x230));
        assert_eq!(offset_of!(Vmcb, save.sysenter_eip), at(0x238));
        assert_eq!(offset_of!(Vmcb, save.cr2), at(0x240));
        assert_eq!(offset_of!(Vmcb, save.g_pat), at(0x268));
        assert_eq!(offset_of!(Vmcb, save.dbgctl), at(0x270));
        assert_eq!(offset_of!(Vmcb, save.lastexcpto), at(0x290));
        assert_eq!(core::mem::size_of::<Vmcb>(), 4096);
        assert_eq!(core::mem::align_of::<Vmcb>(), 4096);
    }
}
