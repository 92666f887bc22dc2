//! VMX capability MSRs and the VM-execution, VM-exit and VM-entry control words computed from
//! them (SDM Vol. 3D Appendix A, Vol. 3C 25.6-25.8). The computation is a pure function of the
//! MSR values, so it is unit-tested on the host.

use crate::virt::VirtError;

/// Capability MSR numbers (SDM Vol. 4 Table 2-2).
pub mod msr {
    pub const IA32_FEATURE_CONTROL: u32 = 0x3A;
    pub const IA32_VMX_BASIC: u32 = 0x480;
    pub const IA32_VMX_PINBASED_CTLS: u32 = 0x481;
    pub const IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
    pub const IA32_VMX_EXIT_CTLS: u32 = 0x483;
    pub const IA32_VMX_ENTRY_CTLS: u32 = 0x484;
    pub const IA32_VMX_MISC: u32 = 0x485;
    pub const IA32_VMX_CR0_FIXED0: u32 = 0x486;
    pub const IA32_VMX_CR0_FIXED1: u32 = 0x487;
    pub const IA32_VMX_CR4_FIXED0: u32 = 0x488;
    pub const IA32_VMX_CR4_FIXED1: u32 = 0x489;
    pub const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48B;
    pub const IA32_VMX_EPT_VPID_CAP: u32 = 0x48C;
    pub const IA32_VMX_TRUE_PINBASED_CTLS: u32 = 0x48D;
    pub const IA32_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48E;
    pub const IA32_VMX_TRUE_EXIT_CTLS: u32 = 0x48F;
    pub const IA32_VMX_TRUE_ENTRY_CTLS: u32 = 0x490;
}

/// IA32_VMX_BASIC bit 55: the TRUE_ control MSRs exist and report which default-1 controls
/// may be 0 (SDM A.1).
pub const BASIC_TRUE_CTLS: u64 = 1 << 55;

/// Pin-based VM-execution controls (SDM Table 25-5).
pub mod pin {
    pub const EXTERNAL_INTERRUPT_EXITING: u32 = 1 << 0;
    pub const NMI_EXITING: u32 = 1 << 3;
    pub const VIRTUAL_NMIS: u32 = 1 << 5;
    pub const PREEMPTION_TIMER: u32 = 1 << 6;
    pub const POSTED_INTERRUPTS: u32 = 1 << 7;
}

/// Primary processor-based VM-execution controls (SDM Table 25-6).
pub mod proc1 {
    pub const INTERRUPT_WINDOW_EXITING: u32 = 1 << 2;
    pub const NMI_WINDOW_EXITING: u32 = 1 << 22;
    pub const USE_TSC_OFFSETTING: u32 = 1 << 3;
    pub const HLT_EXITING: u32 = 1 << 7;
    pub const MWAIT_EXITING: u32 = 1 << 10;
    pub const RDPMC_EXITING: u32 = 1 << 11;
    pub const CR3_LOAD_EXITING: u32 = 1 << 15;
    pub const CR3_STORE_EXITING: u32 = 1 << 16;
    pub const CR8_LOAD_EXITING: u32 = 1 << 19;
    pub const CR8_STORE_EXITING: u32 = 1 << 20;
    pub const USE_TPR_SHADOW: u32 = 1 << 21;
    pub const UNCONDITIONAL_IO_EXITING: u32 = 1 << 24;
    pub const USE_IO_BITMAPS: u32 = 1 << 25;
    pub const USE_MSR_BITMAPS: u32 = 1 << 28;
    pub const MONITOR_EXITING: u32 = 1 << 29;
    pub const ACTIVATE_SECONDARY: u32 = 1 << 31;
}

/// Secondary processor-based VM-execution controls (SDM Table 25-7).
pub mod proc2 {
    pub const ENABLE_EPT: u32 = 1 << 1;
    pub const ENABLE_RDTSCP: u32 = 1 << 3;
    pub const ENABLE_VPID: u32 = 1 << 5;
    pub const WBINVD_EXITING: u32 = 1 << 6;
    pub const UNRESTRICTED_GUEST: u32 = 1 << 7;
    pub const ENABLE_INVPCID: u32 = 1 << 12;
}

/// VM-exit controls (SDM Table 25-13).
pub mod exit {
    pub const SAVE_DEBUG_CONTROLS: u32 = 1 << 2;
    pub const HOST_ADDRESS_SPACE_SIZE: u32 = 1 << 9;
    pub const ACK_INTERRUPT_ON_EXIT: u32 = 1 << 15;
    pub const SAVE_IA32_EFER: u32 = 1 << 20;
    pub const LOAD_IA32_EFER: u32 = 1 << 21;
    pub const SAVE_PREEMPTION_TIMER: u32 = 1 << 22;
}

/// VM-entry controls (SDM Table 25-15).
pub mod entry {
    pub const LOAD_DEBUG_CONTROLS: u32 = 1 << 2;
    pub const IA32E_MODE_GUEST: u32 = 1 << 9;
    pub const LOAD_IA32_EFER: u32 = 1 << 15;
}

/// IA32_VMX_EPT_VPID_CAP bits (SDM A.10).
pub mod ept_cap {
    pub const WALK_4LEVEL: u64 = 1 << 6;
    pub const PAGE_2MB: u64 = 1 << 16;
    pub const PAGE_1GB: u64 = 1 << 17;
    pub const MEMTYPE_WB: u64 = 1 << 14;
    pub const INVEPT: u64 = 1 << 20;
    pub const INVEPT_ALL_CONTEXT: u64 = 1 << 26;
    pub const INVVPID: u64 = 1 << 32;
    pub const INVVPID_ALL_CONTEXT: u64 = 1 << 42;
}

/// The watchdog's length in TSC cycles (the preemption timer counts down once every
/// 2^IA32_VMX_MISC[4:0] of them): ~6 ms at 3 GHz, ~0.5 s under Bochs (1 tick per instruction).
pub const WATCHDOG_TSC_CYCLES: u64 = 1 << 24;

/// The capability MSR values the control computation needs. `pinbased`, `procbased`, `exit`
/// and `entry` hold the TRUE_ variants where IA32_VMX_BASIC bit 55 says they exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VmxCaps {
    pub basic: u64,
    pub pinbased: u64,
    pub procbased: u64,
    pub procbased2: u64,
    pub exit: u64,
    pub entry: u64,
    pub misc: u64,
    pub ept_vpid: u64,
    pub cr0_fixed0: u64,
    pub cr0_fixed1: u64,
    pub cr4_fixed0: u64,
    pub cr4_fixed1: u64,
}

impl VmxCaps {
    /// Read every capability MSR of this CPU, choosing the TRUE_ control MSRs where they exist.
    ///
    /// # Safety
    /// The CPU must support VMX (CPUID.1:ECX.VMX), or the reads raise #GP.
    pub unsafe fn read() -> Self {
        use crate::io::rdmsr;
        use msr::*;
        // SAFETY: the caller guarantees VMX support, so every IA32_VMX_* MSR read here exists;
        // the secondary/EPT MSRs are read only where the primary controls allow them (A.3.3).
        unsafe {
            let basic = rdmsr(IA32_VMX_BASIC);
            let t = basic & BASIC_TRUE_CTLS != 0;
            let procbased = rdmsr(if t { IA32_VMX_TRUE_PROCBASED_CTLS } else { IA32_VMX_PROCBASED_CTLS });
            let secondary = (procbased >> 32) as u32 & proc1::ACTIVATE_SECONDARY != 0;
            let procbased2 = if secondary { rdmsr(IA32_VMX_PROCBASED_CTLS2) } else { 0 };
            let ept_vpid = if (procbased2 >> 32) as u32 & (proc2::ENABLE_EPT | proc2::ENABLE_VPID) != 0 {
                rdmsr(IA32_VMX_EPT_VPID_CAP)
            } else {
                0
            };
            VmxCaps {
                basic,
                pinbased: rdmsr(if t { IA32_VMX_TRUE_PINBASED_CTLS } else { IA32_VMX_PINBASED_CTLS }),
                procbased,
                procbased2,
                exit: rdmsr(if t { IA32_VMX_TRUE_EXIT_CTLS } else { IA32_VMX_EXIT_CTLS }),
                entry: rdmsr(if t { IA32_VMX_TRUE_ENTRY_CTLS } else { IA32_VMX_ENTRY_CTLS }),
                misc: rdmsr(IA32_VMX_MISC),
                ept_vpid,
                cr0_fixed0: rdmsr(IA32_VMX_CR0_FIXED0),
                cr0_fixed1: rdmsr(IA32_VMX_CR0_FIXED1),
                cr4_fixed0: rdmsr(IA32_VMX_CR4_FIXED0),
                cr4_fixed1: rdmsr(IA32_VMX_CR4_FIXED1),
            }
        }
    }

    /// The VMCS/VMXON revision identifier (IA32_VMX_BASIC[30:0]).
    pub fn revision_id(&self) -> u32 {
        self.basic as u32 & 0x7FFF_FFFF
    }

    /// The preemption-timer value that lasts about `WATCHDOG_TSC_CYCLES`.
    pub fn watchdog_ticks(&self) -> u32 {
        let rate = (self.misc & 0x1F) as u32;
        (WATCHDOG_TSC_CYCLES >> rate).clamp(1, u32::MAX as u64) as u32
    }
}

/// A control word's name for each bit Basalt may require, for `VirtError::Unsupported`.
type Names = &'static [(u32, &'static str)];

/// One control word from its capability MSR (SDM A.3.1): the allowed-0 settings (low half, a
/// bit set there must be 1) are forced on, the allowed-1 settings (high half) limit what can be
/// set. `desired` bits are taken where allowed; a `required` bit that is not allowed names the
/// missing feature.
pub fn adjust(cap: u64, desired: u32, required: u32, names: Names) -> Result<u32, VirtError> {
    let must_be_1 = cap as u32;
    let may_be_1 = (cap >> 32) as u32;
    let missing = required & !may_be_1;
    if missing != 0 {
        let bit = 1u32 << missing.trailing_zeros();
        let name = names.iter().find(|(b, _)| *b == bit).map_or("a required VMX control", |(_, n)| *n);
        return Err(VirtError::Unsupported(name));
    }
    Ok((desired | required | must_be_1) & may_be_1)
}

/// The control words of one VMCS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Controls {
    pub pin: u32,
    pub proc1: u32,
    pub proc2: u32,
    pub exit: u32,
    pub entry: u32,
}

impl Controls {
    pub fn preemption_timer(&self) -> bool {
        self.pin & pin::PREEMPTION_TIMER != 0
    }
    /// Whether the preemption timer keeps counting across exits (its value is saved on exit).
    pub fn saves_preemption_timer(&self) -> bool {
        self.exit & exit::SAVE_PREEMPTION_TIMER != 0
    }
    pub fn unrestricted_guest(&self) -> bool {
        self.proc2 & proc2::UNRESTRICTED_GUEST != 0
    }
    pub fn ia32e_guest(&self) -> bool {
        self.entry & entry::IA32E_MODE_GUEST != 0
    }
}

/// Compute every control word for a guest whose initial EFER.LMA is `long_mode`.
///
/// Required (isolation: whatever reaches host state exits, or the guest has its own copy):
/// external-interrupt and NMI exiting (host interrupts and NMIs always reach Basalt); TSC
/// offsetting (each VM's TSC starts near zero); HLT,
/// RDPMC, MONITOR and MWAIT exiting; a TPR shadow (the guest's CR8 is its own, never the
/// host's TPR); I/O bitmaps (or unconditional I/O exiting); secondary controls with EPT, VPID,
/// unrestricted guest and WBINVD exiting; on exit: host address-space size, save/load EFER,
/// save debug controls and acknowledge interrupt; on entry: load EFER and debug controls.
/// Desired where available: the preemption-timer watchdog and saving its value on exit (so a
/// slice spans exits), MSR bitmaps (without them every RDMSR/WRMSR exits, which is what
/// Basalt's all-ones bitmap asks for anyway), RDTSCP and INVPCID for the guest.
pub fn compute_controls(caps: &VmxCaps, long_mode: bool) -> Result<Controls, VirtError> {
    let pin = adjust(
        caps.pinbased,
        pin::PREEMPTION_TIMER | pin::VIRTUAL_NMIS,
        pin::EXTERNAL_INTERRUPT_EXITING | pin::NMI_EXITING,
        &[(pin::EXTERNAL_INTERRUPT_EXITING, "external-interrupt exiting"), (pin::NMI_EXITING, "NMI exiting")],
    )?;

    let may = (caps.procbased >> 32) as u32;
    let io = if may & proc1::USE_IO_BITMAPS != 0 {
        proc1::USE_IO_BITMAPS
    } else {
        proc1::UNCONDITIONAL_IO_EXITING
    };
    let proc1 = adjust(
        caps.procbased,
        proc1::USE_MSR_BITMAPS,
        proc1::HLT_EXITING
            | io
            | proc1::USE_TSC_OFFSETTING
            | proc1::ACTIVATE_SECONDARY
            | proc1::RDPMC_EXITING
            | proc1::MWAIT_EXITING
            | proc1::MONITOR_EXITING
            | proc1::USE_TPR_SHADOW,
        &[
            (proc1::HLT_EXITING, "HLT exiting"),
            (proc1::USE_TSC_OFFSETTING, "TSC offsetting"),
            (proc1::UNCONDITIONAL_IO_EXITING, "I/O exiting"),
            (proc1::ACTIVATE_SECONDARY, "secondary processor-based controls"),
            (proc1::RDPMC_EXITING, "RDPMC exiting"),
            (proc1::MWAIT_EXITING, "MWAIT exiting"),
            (proc1::MONITOR_EXITING, "MONITOR exiting"),
            (proc1::USE_TPR_SHADOW, "TPR shadow"),
        ],
    )?;
    // With EPT, CR3 accesses need no exits, and with the TPR shadow CR8 accesses need none;
    // these are default-1 only without TRUE_ MSRs.
    let no_exit = proc1::CR3_LOAD_EXITING
        | proc1::CR3_STORE_EXITING
        | proc1::CR8_LOAD_EXITING
        | proc1::CR8_STORE_EXITING;
    let proc1 = proc1 & !(no_exit & !(caps.procbased as u32));

    let proc2 = adjust(
        caps.procbased2,
        proc2::ENABLE_RDTSCP | proc2::ENABLE_INVPCID,
        proc2::ENABLE_EPT | proc2::ENABLE_VPID | proc2::UNRESTRICTED_GUEST | proc2::WBINVD_EXITING,
        &[
            (proc2::ENABLE_EPT, "EPT"),
            (proc2::ENABLE_VPID, "VPID"),
            (proc2::UNRESTRICTED_GUEST, "unrestricted guest"),
            (proc2::WBINVD_EXITING, "WBINVD exiting"),
        ],
    )?;
    if caps.ept_vpid & ept_cap::WALK_4LEVEL == 0 {
        return Err(VirtError::Unsupported("EPT 4-level page walk"));
    }
    if caps.ept_vpid & ept_cap::MEMTYPE_WB == 0 {
        return Err(VirtError::Unsupported("EPT write-back paging structures"));
    }

    let exit = adjust(
        caps.exit,
        if pin & pin::PREEMPTION_TIMER != 0 { exit::SAVE_PREEMPTION_TIMER } else { 0 },
        exit::SAVE_DEBUG_CONTROLS
            | exit::HOST_ADDRESS_SPACE_SIZE
            | exit::ACK_INTERRUPT_ON_EXIT
            | exit::SAVE_IA32_EFER
            | exit::LOAD_IA32_EFER,
        &[
            (exit::SAVE_DEBUG_CONTROLS, "save debug controls on exit"),
            (exit::HOST_ADDRESS_SPACE_SIZE, "64-bit host (host address-space size)"),
            (exit::ACK_INTERRUPT_ON_EXIT, "acknowledge interrupt on exit"),
            (exit::SAVE_IA32_EFER, "save IA32_EFER on exit"),
            (exit::LOAD_IA32_EFER, "load IA32_EFER on exit"),
        ],
    )?;

    let ia32e = if long_mode { entry::IA32E_MODE_GUEST } else { 0 };
    let entry = adjust(
        caps.entry,
        0,
        entry::LOAD_IA32_EFER | entry::LOAD_DEBUG_CONTROLS | ia32e,
        &[
            (entry::LOAD_IA32_EFER, "load IA32_EFER on entry"),
            (entry::LOAD_DEBUG_CONTROLS, "load debug controls on entry"),
            (entry::IA32E_MODE_GUEST, "IA-32e mode guest"),
        ],
    )?;
    // IA-32e mode guest is never default-1, but make "set iff LMA" hold whatever the MSR says.
    let entry = if long_mode { entry } else { entry & !entry::IA32E_MODE_GUEST };

    Ok(Controls { pin, proc1, proc2, exit, entry })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// allowed-0 in the low half, allowed-1 in the high half.
    fn cap(must: u32, may: u32) -> u64 {
        (may as u64) << 32 | must as u64
    }

    /// A Skylake-like CPU with the TRUE_ MSRs (defaults that may be 0 reported as 0).
    fn skylake() -> VmxCaps {
        VmxCaps {
            basic: BASIC_TRUE_CTLS | 4,
            pinbased: cap(0x16, 0x7F),
            procbased: cap(0x0401_E172 & !(proc1::CR3_LOAD_EXITING | proc1::CR3_STORE_EXITING), 0xFFF9_FFFE),
            procbased2: cap(0, 0x0033_FFFF),
            exit: cap(0x0003_6DFB & !(exit::SAVE_IA32_EFER), 0x01FF_FFFF),
            entry: cap(0x0000_11FB, 0x0000_FFFF),
            misc: 5,
            ept_vpid: ept_cap::WALK_4LEVEL | ept_cap::MEMTYPE_WB | ept_cap::INVEPT,
            ..VmxCaps::default()
        }
    }

    #[test]
    fn allowed_0_bits_are_forced_on_and_allowed_1_bits_limit() {
        assert_eq!(adjust(cap(0b0001, 0b1111), 0b0100, 0, &[]), Ok(0b0101));
        assert_eq!(adjust(cap(0b0001, 0b0011), 0b0100, 0, &[]), Ok(0b0001), "desired but not allowed");
        assert_eq!(adjust(cap(0, 0b0011), 0, 0b0010, &[]), Ok(0b0010));
    }

    #[test]
    fn a_missing_required_feature_is_named() {
        assert_eq!(adjust(cap(0, 0b0011), 0, 0b0100, &[(0b0100, "EPT")]), Err(VirtError::Unsupported("EPT")));
        let mut caps = skylake();
        caps.procbased2 &= !((proc2::ENABLE_EPT as u64) << 32);
        assert_eq!(compute_controls(&caps, false), Err(VirtError::Unsupported("EPT")));
        let mut caps = skylake();
        caps.procbased2 &= !((proc2::UNRESTRICTED_GUEST as u64) << 32);
        assert_eq!(compute_controls(&caps, false), Err(VirtError::Unsupported("unrestricted guest")));
        let mut caps = skylake();
        caps.procbased &= !((proc1::HLT_EXITING as u64) << 32);
        assert_eq!(compute_controls(&caps, false), Err(VirtError::Unsupported("HLT exiting")));
        let mut caps = skylake();
        caps.ept_vpid = 0;
        assert_eq!(compute_controls(&caps, false), Err(VirtError::Unsupported("EPT 4-level page walk")));
    }

    #[test]
    fn skylake_controls() {
        let c = compute_controls(&skylake(), true).unwrap();
        assert!(c.preemption_timer());
        assert!(c.unrestricted_guest());
        assert!(c.ia32e_guest());
        assert_eq!(c.pin & pin::POSTED_INTERRUPTS, 0);
        assert_ne!(c.pin & pin::EXTERNAL_INTERRUPT_EXITING, 0);
        assert_ne!(c.proc1 & proc1::USE_IO_BITMAPS, 0);
        assert_eq!(c.proc1 & proc1::UNCONDITIONAL_IO_EXITING, 0);
        assert_eq!(c.proc1 & (proc1::CR3_LOAD_EXITING | proc1::CR3_STORE_EXITING), 0);
        assert_ne!(c.exit & exit::SAVE_IA32_EFER, 0);
        assert_ne!(c.entry & entry::LOAD_IA32_EFER, 0);
        let real = compute_controls(&skylake(), false).unwrap();
        assert!(!real.ia32e_guest());
    }

    #[test]
    fn without_true_msrs_default_1_cr3_exiting_stays() {
        let mut caps = skylake();
        caps.basic = 4;
        caps.procbased |= (proc1::CR3_LOAD_EXITING | proc1::CR3_STORE_EXITING) as u64;
        let c = compute_controls(&caps, false).unwrap();
        assert_ne!(c.proc1 & proc1::CR3_LOAD_EXITING, 0, "an allowed-0 bit stays set");
    }

    #[test]
    fn io_falls_back_to_unconditional_exiting() {
        let mut caps = skylake();
        caps.procbased &= !((proc1::USE_IO_BITMAPS as u64) << 32);
        let c = compute_controls(&caps, false).unwrap();
        assert_ne!(c.proc1 & proc1::UNCONDITIONAL_IO_EXITING, 0);
    }

    #[test]
    fn everything_that_reaches_the_host_exits() {
        let c = compute_controls(&skylake(), true).unwrap();
        for (word, bit, name) in [
            (c.pin, pin::EXTERNAL_INTERRUPT_EXITING, "external-interrupt exiting"),
            (c.pin, pin::NMI_EXITING, "NMI exiting"),
            (c.proc1, proc1::HLT_EXITING, "HLT"),
            (c.proc1, proc1::RDPMC_EXITING, "RDPMC"),
            (c.proc1, proc1::MWAIT_EXITING, "MWAIT"),
            (c.proc1, proc1::MONITOR_EXITING, "MONITOR"),
            (c.proc1, proc1::USE_TPR_SHADOW, "TPR shadow"),
            (c.proc1, proc1::USE_IO_BITMAPS, "I/O bitmaps"),
            (c.proc2, proc2::WBINVD_EXITING, "WBINVD"),
            (c.exit, exit::SAVE_DEBUG_CONTROLS, "save debug controls"),
            (c.exit, exit::SAVE_PREEMPTION_TIMER, "save preemption timer"),
            (c.entry, entry::LOAD_DEBUG_CONTROLS, "load debug controls"),
        ] {
            assert_ne!(word & bit, 0, "{name}");
        }
        assert_eq!(
            c.proc1 & (proc1::CR8_LOAD_EXITING | proc1::CR8_STORE_EXITING),
            0,
            "CR8 goes to the TPR shadow"
        );
    }

    #[test]
    fn interrupt_and_nmi_exiting_are_required() {
        let mut caps = skylake();
        caps.pinbased &= !((pin::NMI_EXITING as u64) << 32);
        assert_eq!(compute_controls(&caps, false), Err(VirtError::Unsupported("NMI exiting")));
        let mut caps = skylake();
        caps.pinbased &= !((pin::EXTERNAL_INTERRUPT_EXITING as u64) << 32);
        assert_eq!(compute_controls(&caps, false), Err(VirtError::Unsupported("external-interrupt exiting")));
        let mut caps = skylake();
        caps.procbased &= !((proc1::USE_TPR_SHADOW as u64) << 32);
        assert_eq!(compute_controls(&caps, false), Err(VirtError::Unsupported("TPR shadow")));
    }

    #[test]
    fn no_preemption_timer_is_fine() {
        let mut caps = skylake();
        caps.pinbased &= !((pin::PREEMPTION_TIMER as u64) << 32);
        assert!(!compute_controls(&caps, false).unwrap().preemption_timer());
    }

    #[test]
    fn watchdog_scales_with_misc_rate() {
        let mut caps = skylake();
        caps.misc = 5;
        assert_eq!(caps.watchdog_ticks(), (WATCHDOG_TSC_CYCLES >> 5) as u32);
        caps.misc = 0;
        assert_eq!(caps.watchdog_ticks(), WATCHDOG_TSC_CYCLES as u32);
        assert_eq!(caps.revision_id(), 4);
    }
}
