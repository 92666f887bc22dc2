//! What an SVM guest may run natively (APM Vol. 2 15.9-15.14, Table B-1): every intercept is
//! on unless this file opens it with a reason. One table per intercept word, so a host test can
//! check the dangerous bits, and `SvmVcpu::new` takes its words from here only.
//!
//! An intercept that is open lets the guest touch only its own state (held in the VMCB, or
//! switched by Basalt at VM start and end: see `arch::hoststate`).

use super::vmcb::intercept;

/// One intercept bit left open, and why that is safe.
#[derive(Debug, Clone, Copy)]
pub struct Opening {
    pub bit: u32,
    pub name: &'static str,
    pub reason: &'static str,
}

/// Intercept word 0x00C (`intercept_misc1`): bits Basalt leaves open.
pub const MISC1_OPEN: &[Opening] = &[
    Opening {
        bit: intercept::VINTR,
        name: "VINTR",
        reason: "set only while the VM core waits for an interrupt window",
    },
    Opening { bit: 1 << 5, name: "CR0 selective write", reason: "the guest's CR0 lives in the VMCB" },
    Opening {
        bit: 0xFF << 6,
        name: "IDTR/GDTR/LDTR/TR reads and writes",
        reason: "descriptor-table registers are the guest's own (VMCB save area)",
    },
    Opening { bit: 1 << 14, name: "RDTSC", reason: "reads the TSC, changes nothing" },
    Opening { bit: 1 << 16, name: "PUSHF", reason: "guest RFLAGS" },
    Opening {
        bit: 1 << 17,
        name: "POPF",
        reason: "guest RFLAGS; with V_INTR_MASKING the guest IF masks no host interrupt",
    },
    Opening { bit: 1 << 19, name: "RSM", reason: "#UD outside SMM, and a guest is never in SMM" },
    Opening { bit: 1 << 20, name: "IRET", reason: "guest control flow" },
    Opening { bit: 1 << 21, name: "INTn", reason: "delivered through the guest's own IDT" },
    Opening { bit: 1 << 23, name: "PAUSE", reason: "a hint; time slices bound a spinning guest" },
    Opening { bit: 1 << 25, name: "INVLPG", reason: "flushes only the guest's ASID-tagged translations" },
    Opening {
        bit: 1 << 29,
        name: "task switch",
        reason: "through the guest's own descriptors, in guest memory",
    },
    Opening { bit: 1 << 30, name: "FERR_FREEZE", reason: "legacy x87 error signalling, guest state only" },
];

/// Intercept word 0x010 (`intercept_misc2`): bits Basalt leaves open.
pub const MISC2_OPEN: &[Opening] = &[
    Opening {
        bit: 1 << 7,
        name: "RDTSCP",
        reason: "reads the TSC and TSC_AUX, which Basalt resets for each VM",
    },
    Opening { bit: 1 << 8, name: "ICEBP", reason: "raises #DB, which is intercepted" },
    Opening { bit: 1 << 12, name: "MWAIT if armed", reason: "MWAIT is intercepted unconditionally (bit 11)" },
    Opening {
        bit: 1 << 15,
        name: "EFER write trap",
        reason: "EFER writes already exit through the MSR permission map",
    },
    Opening {
        bit: 0xFFFF << 16,
        name: "CR0-15 write traps",
        reason: "the guest's control registers live in the VMCB",
    },
];

/// Exceptions intercepted (`intercept_exceptions`): #DB and #AC, whose delivery can loop
/// forever inside the CPU with no exit (CVE-2015-8104, CVE-2015-5307), and #MC, which
/// belongs to the host.
pub const EXCEPTIONS: u32 = (1 << 1) | (1 << 17) | (1 << 18);

const fn open_bits(table: &[Opening]) -> u32 {
    let mut bits = 0;
    let mut i = 0;
    while i < table.len() {
        bits |= table[i].bit;
        i += 1;
    }
    bits
}

/// `intercept_misc1`: everything but the openings.
pub const MISC1: u32 = !open_bits(MISC1_OPEN);
/// `intercept_misc2`: everything but the openings, limited to the bits the APM defines.
pub const MISC2: u32 = !open_bits(MISC2_OPEN);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every intercept that guards host state or another VM, by the APM's name.
    const MUST_EXIT_MISC1: &[(u32, &str)] = &[
        (intercept::INTR, "INTR"),
        (intercept::NMI, "NMI"),
        (intercept::SMI, "SMI"),
        (intercept::INIT, "INIT"),
        (1 << 15, "RDPMC"),
        (intercept::CPUID, "CPUID"),
        (1 << 22, "INVD"),
        (intercept::HLT, "HLT"),
        (1 << 26, "INVLPGA"),
        (intercept::IOIO_PROT, "IOIO_PROT"),
        (intercept::MSR_PROT, "MSR_PROT"),
        (intercept::SHUTDOWN, "SHUTDOWN"),
    ];
    const MUST_EXIT_MISC2: &[(u32, &str)] = &[
        (intercept::VMRUN, "VMRUN"),
        (intercept::VMMCALL, "VMMCALL"),
        (intercept::VMLOAD, "VMLOAD"),
        (intercept::VMSAVE, "VMSAVE"),
        (intercept::STGI, "STGI"),
        (intercept::CLGI, "CLGI"),
        (intercept::SKINIT, "SKINIT"),
        (1 << 9, "WBINVD"),
        (1 << 10, "MONITOR"),
        (1 << 11, "MWAIT"),
        (1 << 13, "XSETBV"),
        (1 << 14, "RDPRU"),
    ];

    #[test]
    fn every_dangerous_instruction_and_event_exits() {
        for (bit, name) in MUST_EXIT_MISC1 {
            assert_ne!(MISC1 & bit, 0, "{name} must be intercepted");
        }
        for (bit, name) in MUST_EXIT_MISC2 {
            assert_ne!(MISC2 & bit, 0, "{name} must be intercepted");
        }
        for (vector, name) in [(1, "#DB"), (17, "#AC"), (18, "#MC")] {
            assert_ne!(EXCEPTIONS & (1 << vector), 0, "{name} must be intercepted");
        }
    }

    #[test]
    fn openings_are_disjoint_from_what_must_exit_and_each_has_a_reason() {
        for o in MISC1_OPEN {
            assert!(MUST_EXIT_MISC1.iter().all(|(b, _)| b & o.bit == 0), "{} opens a guarded bit", o.name);
            assert!(!o.reason.is_empty());
        }
        for o in MISC2_OPEN {
            assert!(MUST_EXIT_MISC2.iter().all(|(b, _)| b & o.bit == 0), "{} opens a guarded bit", o.name);
            assert!(!o.reason.is_empty());
        }
        // VINTR is off at start: the VM core turns it on for an interrupt window only.
        assert_eq!(MISC1 & intercept::VINTR, 0);
    }
}
