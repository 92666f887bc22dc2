//! Pure decoding of what the VMCB says after a #VMEXIT, the instruction lengths used to skip
//! an intercepted instruction without NRIPS, and the VMRUN consistency checks (APM Vol. 2
//! 15.5.1) used to name why an entry failed. Nothing here touches the hardware.

use super::vmcb::{event, exit_code, intercept, ControlArea, Vmcb};
use crate::virt::{EntryFailure, Event, EventKind, Instruction, InterruptedEvent, IoAccess, VmExit};

/// The exit fields of the control area that decoding needs (APM Vol. 2 15.6, Appendix C).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitFields {
    pub exit_code: u64,
    pub exit_info_1: u64,
    pub exit_info_2: u64,
}

/// IOIO EXITINFO1 bits (APM Vol. 2 15.10.2, Figure 15-2).
pub mod ioio {
    /// TYPE: 1 = IN, 0 = OUT.
    pub const TYPE_IN: u64 = 1 << 0;
    pub const STR: u64 = 1 << 2;
    pub const REP: u64 = 1 << 3;
    pub const SZ8: u64 = 1 << 4;
    pub const SZ16: u64 = 1 << 5;
    pub const SZ32: u64 = 1 << 6;
}

/// #NPF EXITINFO1 bits (the #PF error code, APM Vol. 2 15.25.6).
pub mod npf {
    pub const PRESENT: u64 = 1 << 0;
    pub const WRITE: u64 = 1 << 1;
    pub const FETCH: u64 = 1 << 4;
}

/// Whether an exception vector pushes an error code (#DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP,
/// #VC, #SX): for those an exception intercept has it in EXITINFO1.
pub const fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

/// Decode an IOIO exit's EXITINFO1 (port in bits 31:16).
pub fn decode_ioio(info1: u64) -> IoAccess {
    let size = if info1 & ioio::SZ32 != 0 {
        4
    } else if info1 & ioio::SZ16 != 0 {
        2
    } else {
        1
    };
    IoAccess {
        port: (info1 >> 16) as u16,
        size,
        write: info1 & ioio::TYPE_IN == 0,
        string: info1 & ioio::STR != 0,
        rep: info1 & ioio::REP != 0,
    }
}

/// Turn an exit (other than VMEXIT_INVALID, which needs the entry state) into a `VmExit`.
/// `rcx`, `rax`, `rdx` are the guest's registers at the exit (for RDMSR/WRMSR).
pub fn decode(exit: ExitFields, rcx: u64, rax: u64, rdx: u64) -> VmExit {
    match exit.exit_code {
        exit_code::CPUID => VmExit::Cpuid,
        exit_code::HLT => VmExit::Hlt,
        exit_code::IOIO => VmExit::Io(decode_ioio(exit.exit_info_1)),
        exit_code::MSR => {
            let msr = rcx as u32;
            if exit.exit_info_1 & 1 == 0 {
                VmExit::RdMsr { msr }
            } else {
                VmExit::WrMsr { msr, value: (rdx << 32) | (rax & 0xFFFF_FFFF) }
            }
        }
        exit_code::VMMCALL => VmExit::Hypercall,
        exit_code::NPF => VmExit::NestedPageFault {
            gpa: exit.exit_info_2,
            write: exit.exit_info_1 & npf::WRITE != 0,
            fetch: exit.exit_info_1 & npf::FETCH != 0,
        },
        exit_code::SHUTDOWN => VmExit::Shutdown,
        // SMI: the host's SMM takes it once GIF is set again.
        exit_code::INTR | exit_code::SMI => VmExit::ExternalInterrupt,
        exit_code::NMI => VmExit::Nmi,
        exit_code::VMRUN
        | exit_code::VMLOAD
        | exit_code::VMSAVE
        | exit_code::STGI
        | exit_code::CLGI
        | exit_code::SKINIT
        | exit_code::INVLPGA
        | exit_code::RDPRU => VmExit::Instruction(Instruction::Virtualization),
        exit_code::INVD => VmExit::Instruction(Instruction::Invd),
        exit_code::WBINVD => VmExit::Instruction(Instruction::Wbinvd),
        exit_code::MONITOR => VmExit::Instruction(Instruction::Monitor),
        exit_code::MWAIT | exit_code::MWAIT_CONDITIONAL => VmExit::Instruction(Instruction::Mwait),
        exit_code::XSETBV => VmExit::Instruction(Instruction::Xsetbv),
        exit_code::RDPMC => VmExit::Instruction(Instruction::Rdpmc),
        exit_code::VINTR => VmExit::InterruptWindow,
        code @ exit_code::EXCP_BASE..=exit_code::EXCP_LAST => {
            let vector = (code - exit_code::EXCP_BASE) as u8;
            let error_code = has_error_code(vector).then_some(exit.exit_info_1 as u32);
            VmExit::Exception { vector, error_code }
        }
        code => VmExit::Unhandled { code },
    }
}

/// The event an exit interrupted, from EXITINTINFO (APM 15.7.2), if its valid bit is set.
pub fn interrupted_event(exit_int_info: u64) -> Option<InterruptedEvent> {
    if exit_int_info & event::VALID == 0 {
        return None;
    }
    // Software interrupts (INT n; QEMU reports INT3 this way too) and #BP/#OF (from INT3 and
    // INTO) leave RIP at their instruction when their delivery is cut short: it runs again and
    // raises them again (as KVM does without NRIPS), where injecting them would push that RIP
    // as the return address and run the instruction twice.
    let ty = exit_int_info & event::TYPE_MASK;
    if ty == event::TYPE_SOFT_INT || (ty == event::TYPE_EXCEPTION && matches!(exit_int_info as u8, 3 | 4)) {
        return None;
    }
    let kind = match exit_int_info & event::TYPE_MASK {
        event::TYPE_NMI => EventKind::Nmi,
        event::TYPE_EXCEPTION => EventKind::Exception,
        event::TYPE_SOFT_INT => EventKind::SoftwareInterrupt,
        _ => EventKind::External,
    };
    Some(InterruptedEvent {
        kind,
        vector: exit_int_info as u8,
        error_code: (exit_int_info & event::EV != 0).then_some((exit_int_info >> 32) as u32),
        instruction_len: 0,
    })
}

/// EVENTINJ for `ev` (APM 15.20). NMIs are injected with vector 2 as the APM asks.
pub fn encode_event(ev: Event) -> u64 {
    let (ty, vector, error_code) = match ev {
        Event::Exception { vector, error_code } => (event::TYPE_EXCEPTION, vector, error_code),
        Event::Interrupt { vector } => (event::TYPE_INTR, vector, None),
        Event::Nmi => (event::TYPE_NMI, 2, None),
        Event::Redeliver(e) => {
            let ty = match e.kind {
                EventKind::External => event::TYPE_INTR,
                EventKind::Nmi => event::TYPE_NMI,
                EventKind::SoftwareInterrupt => event::TYPE_SOFT_INT,
                EventKind::Exception
                | EventKind::PrivilegedSoftwareException
                | EventKind::SoftwareException => event::TYPE_EXCEPTION,
            };
            (ty, e.vector, e.error_code)
        }
    };
    let ev_bit = error_code.map_or(0, |code| event::EV | ((code as u64) << 32));
    event::VALID | ty | ev_bit | vector as u64
}

/// The RIP after the instruction that caused `exit`: NRIPS's `next_rip` where the CPU has it
/// (QEMU TCG leaves it 0), EXITINFO2 for IOIO. `None` otherwise: without NRIPS the VM core
/// decodes the instruction, since a fixed length per exit kind would be wrong for any
/// instruction with prefixes.
pub fn next_rip(exit: ExitFields, nrips_next_rip: Option<u64>) -> Option<u64> {
    if let Some(next) = nrips_next_rip.filter(|&n| n != 0) {
        return Some(next);
    }
    (exit.exit_code == exit_code::IOIO).then_some(exit.exit_info_2)
}

/// The VMCB fields the VMRUN consistency checks (APM Vol. 2 15.5.1) look at. The save-area
/// half must be captured BEFORE a VMRUN: after a failed one the save area holds host state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntryState {
    pub efer: u64,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub dr6: u64,
    pub dr7: u64,
    pub cs_attrib: u16,
    pub g_pat: u64,
    pub intercept_misc2: u32,
    pub guest_asid: u32,
    pub iopm_base_pa: u64,
    pub msrpm_base_pa: u64,
    pub event_inj: u64,
    pub np_enable: u64,
}

impl EntryState {
    /// Everything from one VMCB.
    pub fn from_vmcb(vmcb: &Vmcb) -> Self {
        let mut s = EntryState {
            efer: vmcb.save.efer,
            cr0: vmcb.save.cr0,
            cr3: vmcb.save.cr3,
            cr4: vmcb.save.cr4,
            dr6: vmcb.save.dr6,
            dr7: vmcb.save.dr7,
            cs_attrib: vmcb.save.cs.attrib,
            g_pat: vmcb.save.g_pat,
            ..Default::default()
        };
        s.set_control(&vmcb.control);
        s
    }

    /// Refresh the save-area half from the VMCB as it is about to be entered.
    #[inline]
    pub fn set_save(&mut self, save: &super::vmcb::StateSaveArea) {
        self.efer = save.efer;
        self.cr0 = save.cr0;
        self.cr3 = save.cr3;
        self.cr4 = save.cr4;
        self.dr6 = save.dr6;
        self.dr7 = save.dr7;
        self.cs_attrib = save.cs.attrib;
        self.g_pat = save.g_pat;
    }

    /// Refresh the control-area half (which a failed VMRUN does not overwrite).
    pub fn set_control(&mut self, c: &ControlArea) {
        self.intercept_misc2 = c.intercept_misc2;
        self.guest_asid = c.guest_asid;
        self.iopm_base_pa = c.iopm_base_pa;
        self.msrpm_base_pa = c.msrpm_base_pa;
        self.event_inj = c.event_inj;
        self.np_enable = c.np_enable;
    }
}

const CR0_PE: u64 = 1 << 0;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
/// CR4 bits that exist on AMD64: VME..OSXMMEXCPT (0-10), UMIP 11, LA57 12, FSGSBASE 16,
/// PCIDE 17, OSXSAVE 18, SMEP 20, SMAP 21, PKE 22, CET 23. VMXE (13) is reserved on AMD.
const CR4_DEFINED: u64 = 0x1FFF | (0xF << 20) | (7 << 16);
const EFER_LME: u64 = 1 << 8;
const EFER_SVME: u64 = 1 << 12;
/// EFER bits that exist: SCE 0, LME 8, LMA 10, NXE 11, SVME 12, LMSLE 13, FFXSR 14, TCE 15,
/// MCOMMIT 17, INTWB 18, AUTOIBRS 21.
const EFER_DEFINED: u64 = 1 | (1 << 8) | (0x3F << 10) | (3 << 17) | (1 << 21);
const SEG_L: u16 = 1 << 9;
const SEG_DB: u16 = 1 << 10;
/// IOPM is 12 KiB, MSRPM 8 KiB.
const IOPM_BYTES: u64 = 3 << 12;
const MSRPM_BYTES: u64 = 2 << 12;

/// The first VMRUN consistency check (APM Vol. 2 15.5.1 "Canonicalization and Consistency
/// Checks") that `s` violates, in the manual's words, or `None` if it passes all of them.
/// `max_phys_bits` is CPUID 8000_0008h EAX[7:0].
pub fn check_entry(s: &EntryState, max_phys_bits: u8) -> Option<&'static str> {
    let long = s.efer & EFER_LME != 0 && s.cr0 & CR0_PG != 0;
    let phys_limit = 1u64.checked_shl(max_phys_bits as u32).unwrap_or(u64::MAX);
    let event_type = s.event_inj & event::TYPE_MASK;
    let checks: [(bool, &'static str); 16] = [
        (s.efer & EFER_SVME == 0, "EFER.SVME is zero"),
        (s.cr0 & CR0_CD == 0 && s.cr0 & CR0_NW != 0, "CR0.CD is zero and CR0.NW is set"),
        (s.cr0 >> 32 != 0, "CR0[63:32] are not zero"),
        (s.cr3 >> max_phys_bits.min(52) != 0, "any MBZ bit of CR3 is set"),
        (s.cr4 & !CR4_DEFINED != 0, "any MBZ bit of CR4 is set"),
        (s.dr6 >> 32 != 0, "DR6[63:32] are not zero"),
        (s.dr7 >> 32 != 0, "DR7[63:32] are not zero"),
        (s.efer & !EFER_DEFINED != 0, "any MBZ bit of EFER is set"),
        (long && s.cr4 & CR4_PAE == 0, "EFER.LME and CR0.PG are both set and CR4.PAE is zero"),
        (long && s.cr0 & CR0_PE == 0, "EFER.LME and CR0.PG are both non-zero and CR0.PE is zero"),
        (
            long && s.cr4 & CR4_PAE != 0 && s.cs_attrib & SEG_L != 0 && s.cs_attrib & SEG_DB != 0,
            "EFER.LME, CR0.PG, CR4.PAE, CS.L, and CS.D are all non-zero",
        ),
        (s.intercept_misc2 & intercept::VMRUN == 0, "the VMRUN intercept bit is clear"),
        (
            s.msrpm_base_pa.saturating_add(MSRPM_BYTES) > phys_limit
                || s.iopm_base_pa.saturating_add(IOPM_BYTES) > phys_limit,
            "the MSRPM or IOPM extends beyond the maximum supported physical address",
        ),
        (s.guest_asid == 0, "ASID is equal to zero"),
        (
            s.event_inj & event::VALID != 0
                && (matches!(event_type >> 8, 1 | 5 | 6 | 7)
                    || (event_type == event::TYPE_EXCEPTION && s.event_inj & 0xFF == 2)),
            "illegal event injection (EVENTINJ reserved type or exception vector 2)",
        ),
        (
            s.np_enable & 1 != 0 && !pat_valid(s.g_pat),
            "nested paging is enabled and G_PAT is not a valid PAT",
        ),
    ];
    checks.iter().find(|(violated, _)| *violated).map(|(_, reason)| *reason)
}

/// Every PAT entry is a supported type (UC 0, WC 1, WT 4, WP 5, WB 6, UC- 7) with its
/// reserved bits 7:3 clear.
fn pat_valid(pat: u64) -> bool {
    pat.to_le_bytes().iter().all(|&b| matches!(b, 0 | 1 | 4 | 5 | 6 | 7))
}

/// The `EntryFailed` exit for a VMEXIT_INVALID, its reason from the state captured before the
/// VMRUN.
pub fn entry_failure(before: &EntryState, max_phys_bits: u8) -> VmExit {
    let reason = check_entry(before, max_phys_bits).unwrap_or(
        "VMEXIT_INVALID with no APM 15.5.1 check identified (segment state, or a feature this CPU lacks)",
    );
    VmExit::EntryFailed(EntryFailure { code: exit_code::INVALID, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: u64, info1: u64, info2: u64) -> ExitFields {
        ExitFields { exit_code: code, exit_info_1: info1, exit_info_2: info2 }
    }

    #[test]
    fn decodes_every_kind() {
        assert_eq!(decode(exit(0x72, 0, 0), 0, 0, 0), VmExit::Cpuid);
        assert_eq!(decode(exit(0x78, 0, 0), 0, 0, 0), VmExit::Hlt);
        assert_eq!(decode(exit(0x81, 0, 0), 0, 0, 0), VmExit::Hypercall);
        assert_eq!(decode(exit(0x7F, 0, 0), 0, 0, 0), VmExit::Shutdown);
        assert_eq!(decode(exit(0x60, 0, 0), 0, 0, 0), VmExit::ExternalInterrupt);
        assert_eq!(decode(exit(0x64, 0, 0), 0, 0, 0), VmExit::InterruptWindow);
        assert_eq!(decode(exit(0x7C, 0, 0), 0xC000_0080, 0, 0), VmExit::RdMsr { msr: 0xC000_0080 });
        assert_eq!(
            decode(exit(0x7C, 1, 0), 0xFFFF_FFFF_0000_0277, 0xFFFF_FFFF_0007_0406, 0x0007_0406),
            VmExit::WrMsr { msr: 0x277, value: 0x0007_0406_0007_0406 }
        );
        assert_eq!(
            decode(exit(0x400, npf::WRITE | npf::PRESENT, 0xFEE0_0030), 0, 0, 0),
            VmExit::NestedPageFault { gpa: 0xFEE0_0030, write: true, fetch: false }
        );
        assert_eq!(
            decode(exit(0x400, npf::FETCH, 0x1234_5000), 0, 0, 0),
            VmExit::NestedPageFault { gpa: 0x1234_5000, write: false, fetch: true }
        );
        assert_eq!(
            decode(exit(0x40 + 13, 0x18, 0), 0, 0, 0),
            VmExit::Exception { vector: 13, error_code: Some(0x18) }
        );
        assert_eq!(decode(exit(0x40 + 6, 0, 0), 0, 0, 0), VmExit::Exception { vector: 6, error_code: None });
        assert_eq!(decode(exit(0x5F, 0, 0), 0, 0, 0), VmExit::Exception { vector: 31, error_code: None });
        assert_eq!(decode(exit(0x63, 0, 0), 0, 0, 0), VmExit::Unhandled { code: 0x63 });
        assert_eq!(decode(exit(0x61, 0, 0), 0, 0, 0), VmExit::Nmi);
        for code in [0x80, 0x82, 0x83, 0x84, 0x85, 0x86, 0x7A] {
            assert_eq!(decode(exit(code, 0, 0), 0, 0, 0), VmExit::Instruction(Instruction::Virtualization));
        }
        assert_eq!(decode(exit(0x76, 0, 0), 0, 0, 0), VmExit::Instruction(Instruction::Invd));
        assert_eq!(decode(exit(0x89, 0, 0), 0, 0, 0), VmExit::Instruction(Instruction::Wbinvd));
        assert_eq!(decode(exit(0x8A, 0, 0), 0, 0, 0), VmExit::Instruction(Instruction::Monitor));
        assert_eq!(decode(exit(0x8B, 0, 0), 0, 0, 0), VmExit::Instruction(Instruction::Mwait));
        assert_eq!(decode(exit(0x8D, 0, 0), 0, 0, 0), VmExit::Instruction(Instruction::Xsetbv));
        assert_eq!(decode(exit(0x6F, 0, 0), 0, 0, 0), VmExit::Instruction(Instruction::Rdpmc));
        assert!(exit_code::is_invalid(u64::MAX));
        assert!(exit_code::is_invalid(0xFFFF_FFFF));
        assert!(!exit_code::is_invalid(0x400));
    }

    #[test]
    fn ioio_sizes_and_directions() {
        // OUT DX, AL to 0x3F8.
        let out8 = decode_ioio((0x3F8 << 16) | ioio::SZ8);
        assert_eq!(out8, IoAccess { port: 0x3F8, size: 1, write: true, string: false, rep: false });
        // IN AX, DX from 0x71.
        let in16 = decode_ioio((0x71 << 16) | ioio::SZ16 | ioio::TYPE_IN);
        assert_eq!(in16, IoAccess { port: 0x71, size: 2, write: false, string: false, rep: false });
        // OUT 0xF4, EAX.
        let out32 = decode_ioio((0xF4 << 16) | ioio::SZ32);
        assert_eq!(out32, IoAccess { port: 0xF4, size: 4, write: true, string: false, rep: false });
        // REP INSB from 0xFFFF.
        let rep_ins = decode_ioio((0xFFFF << 16) | ioio::SZ8 | ioio::TYPE_IN | ioio::STR | ioio::REP);
        assert_eq!(rep_ins, IoAccess { port: 0xFFFF, size: 1, write: false, string: true, rep: true });
        // OUTSW.
        let outs = decode_ioio((0x1F0 << 16) | ioio::SZ16 | ioio::STR);
        assert_eq!(outs, IoAccess { port: 0x1F0, size: 2, write: true, string: true, rep: false });
        assert_eq!(decode(exit(0x7B, (0x3F8 << 16) | ioio::SZ8, 0x1003), 0, 0, 0), VmExit::Io(out8));
    }

    #[test]
    fn next_rip_only_where_the_hardware_says() {
        // IOIO: EXITINFO2 is the next RIP (e.g. a 1-byte OUT DX, AL or a 2-byte OUT imm8, AL).
        assert_eq!(next_rip(exit(0x7B, 0, 0x1001), None), Some(0x1001));
        assert_eq!(next_rip(exit(0x7B, 0, 0x1002), None), Some(0x1002));
        // CPUID, MSR, HLT, VMMCALL without NRIPS: the VM core decodes.
        for code in [0x72, 0x7C, 0x78, 0x81, 0x89] {
            assert_eq!(next_rip(exit(code, 0, 0), None), None);
        }
        // NRIPS wins where the CPU has it; a zero next_rip (QEMU TCG) is ignored.
        assert_eq!(next_rip(exit(0x72, 0, 0), Some(0x1005)), Some(0x1005));
        assert_eq!(next_rip(exit(0x72, 0, 0), Some(0)), None);
    }

    #[test]
    fn interrupted_events_round_trip_through_eventinj() {
        assert_eq!(interrupted_event(0x0E | event::TYPE_EXCEPTION), None, "not valid");
        assert_eq!(interrupted_event(event::VALID | event::TYPE_EXCEPTION | 3), None, "INT3 runs again");
        assert_eq!(interrupted_event(event::VALID | event::TYPE_EXCEPTION | 4), None, "INTO runs again");
        let pf = event::VALID | event::TYPE_EXCEPTION | event::EV | (0x6 << 32) | 14;
        let e = interrupted_event(pf).unwrap();
        assert_eq!(
            e,
            InterruptedEvent {
                kind: EventKind::Exception,
                vector: 14,
                error_code: Some(6),
                instruction_len: 0
            }
        );
        assert_eq!(encode_event(Event::Redeliver(e)), pf);
        let irq = event::VALID | event::TYPE_INTR | 0x40;
        assert_eq!(interrupted_event(irq).unwrap().kind, EventKind::External);
        assert_eq!(encode_event(Event::Redeliver(interrupted_event(irq).unwrap())), irq);
        let int80 = event::VALID | event::TYPE_SOFT_INT | 0x80;
        assert_eq!(interrupted_event(int80), None, "INT n runs again");
        assert_eq!(
            encode_event(Event::Exception { vector: 6, error_code: None }),
            event::VALID | event::TYPE_EXCEPTION | 6
        );
        assert_eq!(encode_event(Event::Interrupt { vector: 0x30 }), event::VALID | 0x30);
    }

    fn good_long_mode() -> EntryState {
        EntryState {
            efer: EFER_SVME | EFER_LME | (1 << 10) | (1 << 11),
            cr0: CR0_PE | (1 << 1) | (1 << 4) | (1 << 5) | (1 << 16) | CR0_PG,
            cr3: 0x10_0000,
            cr4: CR4_PAE | (1 << 9) | (1 << 10),
            dr6: 0xFFFF_0FF0,
            dr7: 0x400,
            cs_attrib: 0x0A9B,
            g_pat: 0x0007_0406_0007_0406,
            intercept_misc2: intercept::VMRUN | intercept::VMMCALL,
            guest_asid: 1,
            iopm_base_pa: 0x20_0000,
            msrpm_base_pa: 0x20_3000,
            event_inj: 0,
            np_enable: 1,
        }
    }

    #[test]
    fn good_states_pass() {
        assert_eq!(check_entry(&good_long_mode(), 48), None);
        let real =
            EntryState { efer: EFER_SVME, cr0: 0x30, cr3: 0, cr4: 0, cs_attrib: 0x9B, ..good_long_mode() };
        assert_eq!(check_entry(&real, 48), None);
        let inject_gp =
            EntryState { event_inj: event::VALID | event::TYPE_EXCEPTION | event::EV | 13, ..real };
        assert_eq!(check_entry(&inject_gp, 48), None);
    }

    #[test]
    fn each_broken_rule_is_named() {
        let g = good_long_mode();
        let cases: [(EntryState, &str); 17] = [
            (EntryState { efer: g.efer & !EFER_SVME, ..g }, "EFER.SVME is zero"),
            (EntryState { cr0: g.cr0 | CR0_NW, ..g }, "CR0.CD is zero and CR0.NW is set"),
            (EntryState { cr0: g.cr0 | (1 << 40), ..g }, "CR0[63:32] are not zero"),
            (EntryState { cr3: g.cr3 | (1 << 60), ..g }, "any MBZ bit of CR3 is set"),
            (EntryState { cr4: g.cr4 | (1 << 13), ..g }, "any MBZ bit of CR4 is set"),
            (EntryState { dr6: 1 << 32, ..g }, "DR6[63:32] are not zero"),
            (EntryState { dr7: 1 << 33, ..g }, "DR7[63:32] are not zero"),
            (EntryState { efer: g.efer | (1 << 1), ..g }, "any MBZ bit of EFER is set"),
            (
                EntryState { cr4: g.cr4 & !CR4_PAE, ..g },
                "EFER.LME and CR0.PG are both set and CR4.PAE is zero",
            ),
            (
                EntryState { cr0: g.cr0 & !CR0_PE, ..g },
                "EFER.LME and CR0.PG are both non-zero and CR0.PE is zero",
            ),
            (
                EntryState { cs_attrib: g.cs_attrib | SEG_DB, ..g },
                "EFER.LME, CR0.PG, CR4.PAE, CS.L, and CS.D are all non-zero",
            ),
            (EntryState { intercept_misc2: intercept::VMMCALL, ..g }, "the VMRUN intercept bit is clear"),
            (
                EntryState { msrpm_base_pa: (1 << 48) - 0x1000, ..g },
                "the MSRPM or IOPM extends beyond the maximum supported physical address",
            ),
            (
                EntryState { iopm_base_pa: 1 << 50, ..g },
                "the MSRPM or IOPM extends beyond the maximum supported physical address",
            ),
            (EntryState { guest_asid: 0, ..g }, "ASID is equal to zero"),
            (
                EntryState { event_inj: event::VALID | event::TYPE_EXCEPTION | 2, ..g },
                "illegal event injection (EVENTINJ reserved type or exception vector 2)",
            ),
            (
                EntryState { g_pat: 0x0007_0406_0007_0402, ..g },
                "nested paging is enabled and G_PAT is not a valid PAT",
            ),
        ];
        for (state, reason) in cases {
            assert_eq!(check_entry(&state, 48), Some(reason), "{state:x?}");
        }
        let reserved_type = EntryState { event_inj: event::VALID | (1 << 8) | 32, ..g };
        assert!(check_entry(&reserved_type, 48).unwrap().starts_with("illegal event injection"));
        // An invalid but not-valid-marked EVENTINJ is ignored.
        assert_eq!(check_entry(&EntryState { event_inj: (1 << 8) | 32, ..g }, 48), None);
    }

    #[test]
    fn entry_failure_names_the_rule_or_says_none_matched() {
        let g = good_long_mode();
        match entry_failure(&EntryState { guest_asid: 0, ..g }, 48) {
            VmExit::EntryFailed(f) => {
                assert_eq!(f.code, u64::MAX);
                assert_eq!(f.reason, "ASID is equal to zero");
            }
            other => panic!("{other:?}"),
        }
        match entry_failure(&g, 48) {
            VmExit::EntryFailed(f) => assert!(f.reason.contains("no APM 15.5.1 check")),
            other => panic!("{other:?}"),
        }
    }
}
