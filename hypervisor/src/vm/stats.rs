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

/// The most frequent keys (MSR numbers, ports, MMIO pages) of one kind of exit: the first
/// `TOP` distinct keys counted each, the rest together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Top {
    keys: [u64; TOP],
    counts: [u64; TOP],
    len: usize,
    other: u64,
}

/// How many distinct keys each `Top` keeps.
pub const TOP: usize = 8;

impl Top {
    #[inline]
    pub fn add(&mut self, key: u64) {
        let len = self.len.min(TOP);
        if let Some(i) = self.keys[..len].iter().position(|&k| k == key) {
            self.counts[i] += 1;
        } else if len < TOP {
            self.keys[len] = key;
            self.counts[len] = 1;
            self.len = len + 1;
        } else {
            self.other += 1;
        }
    }

    /// The counted keys, most frequent first.
    pub fn sorted(&self) -> ([(u64, u64); TOP], usize) {
        let mut v = [(0, 0); TOP];
        let len = self.len.min(TOP);
        for (slot, (&k, &c)) in v.iter_mut().zip(self.keys.iter().zip(&self.counts)).take(len) {
            *slot = (k, c);
        }
        v[..len].sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        (v, len)
    }
}

/// Events injected into the guest, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Injected {
    pub exceptions: u64,
    pub nmis: u64,
    pub interrupts: u64,
    /// Events an exit cut short, delivered again.
    pub redelivered: u64,
}

/// The statistics of one vCPU (seed: per-vCPU statistics instead of debugfs): exits by kind,
/// the MSRs, ports and MMIO pages behind them, time in the guest and in Basalt (TSC ticks),
/// injected events by kind. Counting is a few increments on the exit path; names and sorting
/// happen only when printing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExitStats {
    counts: [u64; NAMES.len()],
    pub msrs: Top,
    pub ports: Top,
    pub mmio_pages: Top,
    /// TSC ticks spent in the guest (from entry to exit) and in Basalt (exit to next entry).
    pub guest_ticks: u64,
    pub basalt_ticks: u64,
    pub injected: Injected,
}

impl ExitStats {
    #[inline]
    pub fn count(&mut self, exit: &VmExit) {
        self.counts[ExitKind::of(exit) as usize] += 1;
        match *exit {
            VmExit::RdMsr { msr } | VmExit::WrMsr { msr, .. } => self.msrs.add(msr as u64),
            VmExit::Io(io) => self.ports.add(io.port as u64),
            VmExit::NestedPageFault { gpa, .. } => self.mmio_pages.add(gpa & !0xFFF),
            _ => {}
        }
    }

    /// Count an injected event.
    #[inline]
    pub fn injected(&mut self, event: &basalt_arch::virt::Event) {
        use basalt_arch::virt::Event;
        let i = &mut self.injected;
        match event {
            Event::Exception { .. } => i.exceptions += 1,
            Event::Nmi => i.nmis += 1,
            Event::Interrupt { .. } => i.interrupts += 1,
            Event::Redeliver(_) => i.redelivered += 1,
        }
    }

    /// The whole picture in one parseable line: `key=value` fields separated by spaces, lists
    /// as `key=k:count,k:count` in hex keys (`-` when empty).
    pub fn report(&self) -> Report<'_> {
        Report(self)
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

/// See [`ExitStats::report`].
pub struct Report<'a>(&'a ExitStats);

fn top(f: &mut core::fmt::Formatter<'_>, name: &str, t: &Top) -> core::fmt::Result {
    let (keys, len) = t.sorted();
    write!(f, " {name}=")?;
    if len == 0 {
        return write!(f, "-");
    }
    for (i, (k, c)) in keys[..len].iter().enumerate() {
        write!(f, "{}{k:#x}:{c}", if i > 0 { "," } else { "" })?;
    }
    if t.other > 0 {
        write!(f, ",other:{}", t.other)?;
    }
    Ok(())
}

impl core::fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = self.0;
        write!(f, "exits={}", s.total())?;
        for (name, n) in NAMES.iter().zip(s.counts) {
            if n > 0 {
                write!(f, " {name}={n}")?;
            }
        }
        let i = &s.injected;
        write!(
            f,
            " guest_ticks={} basalt_ticks={} injected_exceptions={} injected_nmis={} injected_interrupts={} redelivered={}",
            s.guest_ticks, s.basalt_ticks, i.exceptions, i.nmis, i.interrupts, i.redelivered
        )?;
        top(f, "msrs", &s.msrs)?;
        top(f, "ports", &s.ports)?;
        top(f, "mmio_pages", &s.mmio_pages)
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
        assert_eq!(
            s.report().to_string(),
            "exits=4 cpuid=2 io=1 msr=1 guest_ticks=0 basalt_ticks=0 injected_exceptions=0 injected_nmis=0 \
             injected_interrupts=0 redelivered=0 msrs=0x1:1 ports=0xe0:1 mmio_pages=-"
        );
    }

    #[test]
    fn top_keys_are_sorted_and_the_rest_counted_together() {
        let mut t = Top::default();
        for k in [5, 7, 7, 7, 5, 9] {
            t.add(k);
        }
        for k in 100..110 {
            t.add(k);
        }
        let (v, len) = t.sorted();
        assert_eq!(len, TOP);
        assert_eq!(v[..3], [(7, 3), (5, 2), (9, 1)]);
        assert_eq!(t.other, 5, "keys beyond the first {TOP} distinct ones");
        let mut s = ExitStats::default();
        s.injected(&basalt_arch::virt::Event::Nmi);
        s.injected(&basalt_arch::virt::Event::Interrupt { vector: 0x40 });
        assert_eq!((s.injected.nmis, s.injected.interrupts), (1, 1));
    }
}
