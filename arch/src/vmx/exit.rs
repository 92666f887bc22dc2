//! VM-exit decoding (SDM Vol. 3C 28.2, Appendix C) and VM-instruction errors (SDM 31.4), as
//! pure functions over the values read from the VMCS, so they are unit-tested on the host.

use crate::virt::{EntryFailure, Event, EventKind, Instruction, InterruptedEvent, IoAccess, VmExit};

/// Basic exit reasons (SDM Appendix C).
pub mod reason {
    pub const EXCEPTION_OR_NMI: u32 = 0;
    pub const EXTERNAL_INTERRUPT: u32 = 1;
    pub const TRIPLE_FAULT: u32 = 2;
    pub const INTERRUPT_WINDOW: u32 = 7;
    pub const NMI_WINDOW: u32 = 8;
    pub const CPUID: u32 = 10;
    pub const GETSEC: u32 = 11;
    pub const HLT: u32 = 12;
    pub const INVD: u32 = 13;
    pub const RDPMC: u32 = 15;
    pub const VMCALL: u32 = 18;
    pub const VMCLEAR: u32 = 19;
    pub const VMXON: u32 = 27;
    pub const CR_ACCESS: u32 = 28;
    pub const IO_INSTRUCTION: u32 = 30;
    pub const RDMSR: u32 = 31;
    pub const WRMSR: u32 = 32;
    pub const INVALID_GUEST_STATE: u32 = 33;
    pub const MSR_LOADING: u32 = 34;
    pub const MWAIT: u32 = 36;
    pub const MONITOR: u32 = 39;
    pub const MACHINE_CHECK: u32 = 41;
    pub const EPT_VIOLATION: u32 = 48;
    pub const INVEPT: u32 = 50;
    pub const PREEMPTION_TIMER: u32 = 52;
    pub const INVVPID: u32 = 53;
    pub const WBINVD: u32 = 54;
    pub const XSETBV: u32 = 55;
    pub const VMFUNC: u32 = 59;
}

/// Exit reason bit 31: the VM entry failed (SDM 28.2.1).
pub const EXIT_REASON_ENTRY_FAILURE: u32 = 1 << 31;

/// Interruption-information fields (VM-exit, IDT-vectoring and VM-entry; SDM 25.8.3, 25.9.2).
pub mod intr {
    pub const VECTOR_MASK: u32 = 0xFF;
    pub const TYPE_SHIFT: u32 = 8;
    pub const TYPE_MASK: u32 = 7 << TYPE_SHIFT;
    pub const TYPE_EXTERNAL: u32 = 0;
    pub const TYPE_NMI: u32 = 2 << TYPE_SHIFT;
    pub const TYPE_HARDWARE_EXCEPTION: u32 = 3 << TYPE_SHIFT;
    pub const TYPE_SOFTWARE_INTERRUPT: u32 = 4 << TYPE_SHIFT;
    pub const TYPE_PRIVILEGED_SOFTWARE_EXCEPTION: u32 = 5 << TYPE_SHIFT;
    pub const TYPE_SOFTWARE_EXCEPTION: u32 = 6 << TYPE_SHIFT;
    pub const DELIVER_ERROR_CODE: u32 = 1 << 11;
    pub const VALID: u32 = 1 << 31;
}

/// What an exit left in the VMCS's read-only fields (and the guest registers WRMSR needs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit reason (basic reason in bits 15:0, entry failure in bit 31).
    pub reason: u32,
    pub qualification: u64,
    pub guest_physical: u64,
    pub interruption_info: u32,
    pub interruption_error: u32,
    /// Guest RCX, RAX and RDX at the exit (RDMSR/WRMSR operands).
    pub rcx: u64,
    pub rax: u64,
    pub rdx: u64,
    /// For a CR-access exit that is a MOV to CR: the source register's value.
    pub cr_source: u64,
}

/// A control-register access exit (SDM Table 28-3): the CR number, and the general-purpose
/// register (0 = RAX ... 15 = R15) a MOV to CR reads; `None` for MOV from CR, CLTS and LMSW.
pub fn mov_to_cr(qualification: u64) -> Option<(u8, u8)> {
    let access_type = (qualification >> 4) & 3;
    (access_type == 0).then_some(((qualification & 0xF) as u8, ((qualification >> 8) & 0xF) as u8))
}

/// The event an exit cut short, from the IDT-vectoring information and error code (SDM
/// 25.9.3), with the VM-exit instruction length for software events (SDM 28.2.5).
pub fn interrupted_event(vectoring: u32, error: u32, instruction_len: u32) -> Option<InterruptedEvent> {
    if vectoring & intr::VALID == 0 {
        return None;
    }
    let kind = match vectoring & intr::TYPE_MASK {
        intr::TYPE_NMI => EventKind::Nmi,
        intr::TYPE_HARDWARE_EXCEPTION => EventKind::Exception,
        intr::TYPE_SOFTWARE_INTERRUPT => EventKind::SoftwareInterrupt,
        intr::TYPE_PRIVILEGED_SOFTWARE_EXCEPTION => EventKind::PrivilegedSoftwareException,
        intr::TYPE_SOFTWARE_EXCEPTION => EventKind::SoftwareException,
        _ => EventKind::External,
    };
    let software = matches!(
        kind,
        EventKind::SoftwareInterrupt | EventKind::PrivilegedSoftwareException | EventKind::SoftwareException
    );
    Some(InterruptedEvent {
        kind,
        vector: vectoring as u8,
        error_code: (vectoring & intr::DELIVER_ERROR_CODE != 0).then_some(error),
        instruction_len: if software { instruction_len as u8 } else { 0 },
    })
}

/// The VM-entry interruption-information field, error code (if any) and instruction length
/// (software events only) that inject `ev` (SDM 25.8.3).
pub fn encode_event(ev: Event) -> (u32, Option<u32>, u32) {
    match ev {
        Event::Exception { vector, error_code } => {
            let deliver = if error_code.is_some() { intr::DELIVER_ERROR_CODE } else { 0 };
            (intr::VALID | intr::TYPE_HARDWARE_EXCEPTION | deliver | vector as u32, error_code, 0)
        }
        Event::Interrupt { vector } => (intr::VALID | intr::TYPE_EXTERNAL | vector as u32, None, 0),
        Event::Nmi => (intr::VALID | intr::TYPE_NMI | 2, None, 0),
        Event::Redeliver(e) => {
            let ty = match e.kind {
                EventKind::External => intr::TYPE_EXTERNAL,
                EventKind::Nmi => intr::TYPE_NMI,
                EventKind::Exception => intr::TYPE_HARDWARE_EXCEPTION,
                EventKind::SoftwareInterrupt => intr::TYPE_SOFTWARE_INTERRUPT,
                EventKind::PrivilegedSoftwareException => intr::TYPE_PRIVILEGED_SOFTWARE_EXCEPTION,
                EventKind::SoftwareException => intr::TYPE_SOFTWARE_EXCEPTION,
            };
            let deliver = if e.error_code.is_some() { intr::DELIVER_ERROR_CODE } else { 0 };
            (intr::VALID | ty | deliver | e.vector as u32, e.error_code, e.instruction_len as u32)
        }
    }
}

/// The I/O exit qualification (SDM Table 28-5): size-1 in bits 2:0, IN in bit 3, string in
/// bit 4, REP in bit 5, port in bits 31:16.
pub fn decode_io(qualification: u64) -> IoAccess {
    IoAccess {
        port: (qualification >> 16) as u16,
        size: (qualification & 7) as u8 + 1,
        write: qualification & (1 << 3) == 0,
        string: qualification & (1 << 4) != 0,
        rep: qualification & (1 << 5) != 0,
    }
}

/// The basic reason's words for a failed VM entry (exit reason bit 31, SDM 26.8).
pub fn entry_failure_reason(basic: u32) -> &'static str {
    match basic {
        reason::INVALID_GUEST_STATE => "VM entry failure: invalid guest state",
        reason::MSR_LOADING => "VM entry failure: MSR loading",
        reason::MACHINE_CHECK => "VM entry failure: machine-check event",
        _ => "VM entry failure",
    }
}

/// Decode one exit into the arch-neutral `VmExit`.
pub fn decode(info: &ExitInfo) -> VmExit {
    let basic = info.reason & 0xFFFF;
    if info.reason & EXIT_REASON_ENTRY_FAILURE != 0 {
        return VmExit::EntryFailed(EntryFailure { code: basic as u64, reason: entry_failure_reason(basic) });
    }
    match basic {
        reason::CPUID => VmExit::Cpuid,
        reason::HLT => VmExit::Hlt,
        reason::IO_INSTRUCTION => VmExit::Io(decode_io(info.qualification)),
        reason::RDMSR => VmExit::RdMsr { msr: info.rcx as u32 },
        reason::WRMSR => VmExit::WrMsr {
            msr: info.rcx as u32,
            value: (info.rdx & 0xFFFF_FFFF) << 32 | (info.rax & 0xFFFF_FFFF),
        },
        reason::VMCALL => VmExit::Hypercall,
        reason::VMCLEAR..=reason::VMXON | reason::INVEPT | reason::INVVPID | reason::VMFUNC => {
            VmExit::Instruction(Instruction::Virtualization)
        }
        reason::GETSEC => VmExit::Instruction(Instruction::Getsec),
        reason::INVD => VmExit::Instruction(Instruction::Invd),
        reason::WBINVD => VmExit::Instruction(Instruction::Wbinvd),
        reason::RDPMC => VmExit::Instruction(Instruction::Rdpmc),
        reason::MONITOR => VmExit::Instruction(Instruction::Monitor),
        reason::MWAIT => VmExit::Instruction(Instruction::Mwait),
        reason::XSETBV => VmExit::Instruction(Instruction::Xsetbv),
        reason::CR_ACCESS => match mov_to_cr(info.qualification) {
            Some((cr @ (0 | 4), _)) => VmExit::CrWrite { cr, value: info.cr_source },
            _ => VmExit::Unhandled { code: basic as u64 },
        },
        // Qualification bit 1: data write, bit 2: instruction fetch (SDM Table 28-7).
        reason::EPT_VIOLATION => VmExit::NestedPageFault {
            gpa: info.guest_physical,
            write: info.qualification & (1 << 1) != 0,
            fetch: info.qualification & (1 << 2) != 0,
        },
        reason::TRIPLE_FAULT => VmExit::Shutdown,
        reason::EXTERNAL_INTERRUPT => VmExit::ExternalInterrupt,
        reason::INTERRUPT_WINDOW | reason::NMI_WINDOW => VmExit::InterruptWindow,
        reason::PREEMPTION_TIMER => VmExit::Preempted,
        reason::EXCEPTION_OR_NMI => {
            let info_ = info.interruption_info;
            if info_ & intr::VALID != 0 && info_ & intr::TYPE_MASK == intr::TYPE_NMI {
                // A host NMI (NMI exiting): the backend hands it to the host's handler.
                VmExit::Nmi
            } else {
                VmExit::Exception {
                    vector: (info_ & intr::VECTOR_MASK) as u8,
                    error_code: (info_ & intr::DELIVER_ERROR_CODE != 0).then_some(info.interruption_error),
                }
            }
        }
        _ => VmExit::Unhandled { code: basic as u64 },
    }
}

/// The VM-instruction error numbers in the manual's words (SDM Vol. 3C 31.4, Table 31-1).
pub fn instruction_error(number: u64) -> &'static str {
    match number {
        1 => "VMCALL executed in VMX root operation",
        2 => "VMCLEAR with invalid physical address",
        3 => "VMCLEAR with VMXON pointer",
        4 => "VMLAUNCH with non-clear VMCS",
        5 => "VMRESUME with non-launched VMCS",
        6 => "VMRESUME after VMXOFF",
        7 => "VM entry with invalid control field(s)",
        8 => "VM entry with invalid host-state field(s)",
        9 => "VMPTRLD with invalid physical address",
        10 => "VMPTRLD with VMXON pointer",
        11 => "VMPTRLD with incorrect VMCS revision identifier",
        12 => "VMREAD/VMWRITE from/to unsupported VMCS component",
        13 => "VMWRITE to read-only VMCS component",
        15 => "VMXON executed in VMX root operation",
        16 => "VM entry with invalid executive-VMCS pointer",
        17 => "VM entry with non-launched executive VMCS",
        18 => "VM entry with executive-VMCS pointer not VMXON pointer",
        19 => "VMCALL with non-clear VMCS",
        20 => "VMCALL with invalid VM-exit control fields",
        22 => "VMCALL with incorrect MSEG revision identifier",
        23 => "VMXOFF under dual-monitor treatment of SMIs and SMM",
        24 => "VMCALL with invalid SMM-monitor features",
        25 => "VM entry with invalid VM-execution control fields in executive VMCS",
        26 => "VM entry with events blocked by MOV SS",
        28 => "invalid operand to INVEPT/INVVPID",
        _ => "unknown VM-instruction error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(reason: u32) -> ExitInfo {
        ExitInfo { reason, ..ExitInfo::default() }
    }

    #[test]
    fn simple_exits() {
        assert_eq!(decode(&exit(10)), VmExit::Cpuid);
        assert_eq!(decode(&exit(12)), VmExit::Hlt);
        assert_eq!(decode(&exit(18)), VmExit::Hypercall);
        assert_eq!(decode(&exit(2)), VmExit::Shutdown);
        assert_eq!(decode(&exit(1)), VmExit::ExternalInterrupt);
        assert_eq!(decode(&exit(7)), VmExit::InterruptWindow);
        assert_eq!(decode(&exit(52)), VmExit::Preempted);
        assert_eq!(decode(&exit(49)), VmExit::Unhandled { code: 49 });
        for reason in [19, 20, 21, 22, 23, 24, 25, 26, 27, 50, 53, 59] {
            assert_eq!(decode(&exit(reason)), VmExit::Instruction(Instruction::Virtualization), "{reason}");
        }
        assert_eq!(decode(&exit(13)), VmExit::Instruction(Instruction::Invd));
        assert_eq!(decode(&exit(54)), VmExit::Instruction(Instruction::Wbinvd));
        assert_eq!(decode(&exit(15)), VmExit::Instruction(Instruction::Rdpmc));
        assert_eq!(decode(&exit(36)), VmExit::Instruction(Instruction::Mwait));
        assert_eq!(decode(&exit(39)), VmExit::Instruction(Instruction::Monitor));
        assert_eq!(decode(&exit(55)), VmExit::Instruction(Instruction::Xsetbv));
        // MOV CR4, RBX (type 0, CR 4, register 3); MOV RAX, CR3 (type 1) is not a write.
        let e =
            ExitInfo { reason: 28, qualification: 4 | (3 << 8), cr_source: 0x2020, ..ExitInfo::default() };
        assert_eq!(decode(&e), VmExit::CrWrite { cr: 4, value: 0x2020 });
        assert_eq!(mov_to_cr(4 | (3 << 8)), Some((4, 3)));
        assert_eq!(mov_to_cr(3 | (1 << 4)), None);
        assert_eq!(decode(&exit(49)), VmExit::Unhandled { code: 49 });
    }

    #[test]
    fn io_qualification() {
        // OUT DX, AL to 0x3F8.
        assert_eq!(
            decode_io(0x03F8_0000),
            IoAccess { port: 0x3F8, size: 1, write: true, string: false, rep: false }
        );
        // IN EAX, DX from 0xCFC.
        assert_eq!(
            decode_io(0x0CFC_0000 | 3 | 1 << 3),
            IoAccess { port: 0xCFC, size: 4, write: false, string: false, rep: false }
        );
        // REP OUTSW to 0x1F0.
        assert_eq!(
            decode_io(0x01F0_0000 | 1 | 1 << 4 | 1 << 5),
            IoAccess { port: 0x1F0, size: 2, write: true, string: true, rep: true }
        );
        let e = ExitInfo { reason: 30, qualification: 0x00F4_0000 | 3, ..ExitInfo::default() };
        assert_eq!(
            decode(&e),
            VmExit::Io(IoAccess { port: 0xF4, size: 4, write: true, string: false, rep: false })
        );
    }

    #[test]
    fn msr_exits() {
        let e = ExitInfo { reason: 31, rcx: 0xFFFF_FFFF_C000_0080, ..ExitInfo::default() };
        assert_eq!(decode(&e), VmExit::RdMsr { msr: 0xC000_0080 });
        let e = ExitInfo {
            reason: 32,
            rcx: 0x1B,
            rax: 0xDEAD_BEEF_FEE0_0900,
            rdx: 0xAAAA_AAAA_0000_0001,
            ..ExitInfo::default()
        };
        assert_eq!(decode(&e), VmExit::WrMsr { msr: 0x1B, value: 0x1_FEE0_0900 });
    }

    #[test]
    fn ept_violation() {
        let e =
            ExitInfo { reason: 48, qualification: 0b010, guest_physical: 0xFEE0_0030, ..ExitInfo::default() };
        assert_eq!(decode(&e), VmExit::NestedPageFault { gpa: 0xFEE0_0030, write: true, fetch: false });
        let e = ExitInfo { reason: 48, qualification: 0b100, guest_physical: 0x1000, ..ExitInfo::default() };
        assert_eq!(decode(&e), VmExit::NestedPageFault { gpa: 0x1000, write: false, fetch: true });
    }

    #[test]
    fn exceptions_and_nmis() {
        let e = ExitInfo {
            reason: 0,
            interruption_info: intr::VALID | intr::TYPE_HARDWARE_EXCEPTION | intr::DELIVER_ERROR_CODE | 13,
            interruption_error: 0x18,
            ..ExitInfo::default()
        };
        assert_eq!(decode(&e), VmExit::Exception { vector: 13, error_code: Some(0x18) });
        let e =
            ExitInfo { reason: 0, interruption_info: intr::VALID | intr::TYPE_HARDWARE_EXCEPTION | 6, ..e };
        assert_eq!(decode(&e), VmExit::Exception { vector: 6, error_code: None });
        let e = ExitInfo { reason: 0, interruption_info: intr::VALID | intr::TYPE_NMI | 2, ..e };
        assert_eq!(decode(&e), VmExit::Nmi);
    }

    #[test]
    fn interrupted_events_are_redelivered_as_they_were() {
        assert_eq!(interrupted_event(14 | intr::TYPE_HARDWARE_EXCEPTION, 0, 0), None, "not valid");
        let pf = intr::VALID | intr::TYPE_HARDWARE_EXCEPTION | intr::DELIVER_ERROR_CODE | 14;
        let e = interrupted_event(pf, 2, 3).unwrap();
        assert_eq!(
            e,
            InterruptedEvent {
                kind: EventKind::Exception,
                vector: 14,
                error_code: Some(2),
                instruction_len: 0
            }
        );
        assert_eq!(encode_event(Event::Redeliver(e)), (pf, Some(2), 0));
        // INT 0x80 (2 bytes): the length travels with it so the pushed RIP is past the INT.
        let int80 = intr::VALID | intr::TYPE_SOFTWARE_INTERRUPT | 0x80;
        let e = interrupted_event(int80, 0, 2).unwrap();
        assert_eq!((e.kind, e.instruction_len), (EventKind::SoftwareInterrupt, 2));
        assert_eq!(encode_event(Event::Redeliver(e)), (int80, None, 2));
        let int3 = intr::VALID | intr::TYPE_SOFTWARE_EXCEPTION | 3;
        assert_eq!(encode_event(Event::Redeliver(interrupted_event(int3, 0, 1).unwrap())), (int3, None, 1));
        assert_eq!(
            encode_event(Event::Interrupt { vector: 0x30 }),
            (intr::VALID | intr::TYPE_EXTERNAL | 0x30, None, 0)
        );
    }

    #[test]
    fn entry_failures() {
        for (basic, words) in [(33, "invalid guest state"), (34, "MSR loading"), (41, "machine-check")] {
            match decode(&exit(EXIT_REASON_ENTRY_FAILURE | basic)) {
                VmExit::EntryFailed(f) => {
                    assert_eq!(f.code, basic as u64);
                    assert!(f.reason.contains(words), "{}", f.reason);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn instruction_errors() {
        assert_eq!(instruction_error(7), "VM entry with invalid control field(s)");
        assert_eq!(instruction_error(8), "VM entry with invalid host-state field(s)");
        assert_eq!(instruction_error(4), "VMLAUNCH with non-clear VMCS");
        assert_eq!(instruction_error(5), "VMRESUME with non-launched VMCS");
        assert_eq!(instruction_error(11), "VMPTRLD with incorrect VMCS revision identifier");
        assert_eq!(instruction_error(26), "VM entry with events blocked by MOV SS");
        assert_eq!(instruction_error(99), "unknown VM-instruction error");
    }
}
