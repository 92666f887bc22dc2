//! Per-vCPU exit statistics: how many exits of each kind a vCPU took. Counting is one array
//! increment on the exit path; the names are only looked at when printing.

use basalt_arch::virt::VmExit;

/// Exit kinds counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum ExitKind {
    Cpuid,
    Hlt,
    Io,
    Msr,
    Hypercall,
    NestedPageFault,
    Exception,
    ExternalInterrupt,
    Preempted,
    InterruptWindow,
    Nmi,
    Instruction,
    CrWrite,
    Other,
}

const NAMES: [&str; 14] = [
    "cpuid",
    "hlt",
    "io",
    "msr",
    "hypercall",
    "npf",
    "exception",
    "extint",
    "preempted",
    "intwindow",
    "nmi",
    "insn",
    "cr",
    "other",
];

impl ExitKind {
    pub fn of(exit: &VmExit) -> ExitKind {
        match exit {
            VmExit::Cpuid => ExitKind::Cpuid,
            VmExit::Hlt => ExitKind::Hlt,
            VmExit::Io(_) => ExitKind::Io,
            VmExit::RdMsr { .. } | VmExit::WrMsr { .. } => ExitKind::Msr,
            VmExit::Hypercall => ExitKind::Hypercall,
            VmExit::NestedPageFault { .. } => ExitKind::NestedPageFault,
            VmExit::Exception { .. } => ExitKind::Exception,
            VmExit::ExternalInterrupt => ExitKind::ExternalInterrupt,
            VmExit::Preempted => ExitKind::Preempted,
            VmExit::InterruptWindow => ExitKind::InterruptWindow,
            VmExit::Nmi => ExitKind::Nmi,
            VmExit::Instruction(_) => ExitKind::Instruction,
            VmExit::CrWrite { .. } => ExitKind::CrWrite,
            VmExit::Shutdown | VmExit::EntryFailed(_) | VmExit::Unhandled { .. } => ExitKind::Other,
        }
    }
}

/// Exit counters of one vCPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExitStats {
    counts: [u64; NAMES.len()],
}

impl ExitStats {
    pub fn count(&mut self, exit: &VmExit) {
        self.counts[ExitKind::of(exit) as usize] += 1;
    }

    pub fn get(&self, kind: ExitKind) -> u64 {
        self.counts[kind as usize]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl core::fmt::Display for ExitStats {
    /// `total 7: cpuid 3, io 4` (kinds with no exits left out).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "total {}", self.total())?;
        let mut sep = ":";
        for (name, n) in NAMES.iter().zip(self.counts) {
            if n > 0 {
                write!(f, "{sep} {name} {n}")?;
                sep = ",";
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use basalt_arch::virt::IoAccess;

    #[test]
    fn counts_by_kind_and_prints_only_what_happened() {
        let mut s = ExitStats::default();
        s.count(&VmExit::Cpuid);
        s.count(&VmExit::Cpuid);
        s.count(&VmExit::Io(IoAccess { port: 0xE0, size: 4, write: true, string: false, rep: false }));
        s.count(&VmExit::WrMsr { msr: 1, value: 2 });
        assert_eq!((s.get(ExitKind::Cpuid), s.get(ExitKind::Msr), s.total()), (2, 1, 4));
        assert_eq!(s.to_string(), "total 4: cpuid 2, io 1, msr 1");
    }
}
