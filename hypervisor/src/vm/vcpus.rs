//! What the vCPUs of one VM share, and the only state another CPU touches (DESIGN.md "three
//! kinds of state"): per vCPU its mode, its request bits, a SIPI vector and interrupts posted to
//! it; per VM the stop decision. All atomics: no CPU ever reads or writes another vCPU's VMCS or
//! VMCB, it posts here and kicks.
//!
//! The kick protocol is KVM's vcpu-requests pattern: a sender sets the request (or posts the
//! interrupt) first and then reads the target's mode; the target sets its mode first and then
//! reads its requests. Both are sequentially consistent, so at least one of them sees the
//! other: either the target finds the request before it enters (or sleeps), or the sender
//! finds it in the guest or halted and sends the kick IPI, which makes it exit (host interrupts
//! always exit a guest) or ends its HLT (it sleeps with `sti; hlt`).

use super::VmOutcome;
use alloc::string::String;
use alloc::vec::Vec;
use basalt_devices::ioapic::IOAPIC_DEFAULT_BASE;
use basalt_devices::irq::Destination;
use basalt_devices::lapic::{destination_matches, Mode as LapicMode};
use basalt_devices::router::IrqRouter;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::SeqCst};
use spin::Mutex;

/// Request bits (`VcpuShared::request`).
pub mod request {
    /// An interrupt was posted (see `VcpuShared::post`).
    pub const EVENT: u32 = 1 << 0;
    /// An NMI.
    pub const NMI: u32 = 1 << 1;
    /// An INIT signal.
    pub const INIT: u32 = 1 << 2;
    /// A start-up IPI (its vector is in `VcpuShared::take_sipi`).
    pub const SIPI: u32 = 1 << 3;
    /// The VM is stopping: leave the guest and end.
    pub const STOP: u32 = 1 << 4;
    /// The VM's nested page tables changed: flush the guest TLB before entering.
    pub const TLB_FLUSH: u32 = 1 << 5;
    /// The VM restarted (another vCPU reset it): start again as the bootstrap processor.
    pub const RESTART: u32 = 1 << 6;
}

/// Where a vCPU is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Not placed yet, or in Basalt handling an exit.
    Outside = 0,
    /// Entering or running the guest (host interrupts off until the guest runs).
    InGuest = 1,
    /// Halted (HLT) and sleeping on its pCPU until an event or its timer.
    Halted = 2,
    /// An application processor after INIT, waiting for a start-up IPI.
    WaitForSipi = 3,
    /// Ended; nothing reaches it any more.
    Stopped = 4,
}

impl Mode {
    fn from_u8(v: u8) -> Mode {
        match v {
            1 => Mode::InGuest,
            2 => Mode::Halted,
            3 => Mode::WaitForSipi,
            4 => Mode::Stopped,
            _ => Mode::Outside,
        }
    }
}

/// One vCPU as the others see it.
#[derive(Debug)]
pub struct VcpuShared {
    /// Its index in the VM (0: the bootstrap processor).
    pub index: u32,
    /// Its (virtual) APIC ID.
    pub apic_id: u32,
    /// The APIC ID of the physical CPU it runs on (u32::MAX until placed): kicks go there.
    host_apic: AtomicU32,
    mode: AtomicU8,
    requests: AtomicU32,
    /// A received start-up vector, plus 0x100 while valid.
    sipi: AtomicU32,
    /// Fixed interrupts posted by other vCPUs and devices, merged into the LAPIC by the owner.
    irr: [AtomicU64; 4],
    /// Their trigger modes (1: level).
    tmr: [AtomicU64; 4],
    /// The LAPIC's destination state as its owner last published it (its ID, LDR and DFR
    /// registers and its mode), so other CPUs match IPI and IOAPIC destinations without
    /// touching it.
    apic_mode: AtomicU8,
    apic_id_reg: AtomicU32,
    ldr: AtomicU32,
    dfr: AtomicU32,
}

impl VcpuShared {
    pub fn new(index: u32, apic_id: u32) -> Self {
        VcpuShared {
            index,
            apic_id,
            host_apic: AtomicU32::new(u32::MAX),
            mode: AtomicU8::new(Mode::Outside as u8),
            requests: AtomicU32::new(0),
            sipi: AtomicU32::new(0),
            irr: [const { AtomicU64::new(0) }; 4],
            tmr: [const { AtomicU64::new(0) }; 4],
            apic_mode: AtomicU8::new(LapicMode::XApic as u8),
            apic_id_reg: AtomicU32::new(apic_id << 24),
            ldr: AtomicU32::new(0),
            dfr: AtomicU32::new(u32::MAX),
        }
    }

    /// The owner publishes its LAPIC's destination state (after any access that may change it).
    pub fn publish_apic(&self, (mode, id, ldr, dfr): (LapicMode, u32, u32, u32)) {
        self.apic_id_reg.store(id, SeqCst);
        self.ldr.store(ldr, SeqCst);
        self.dfr.store(dfr, SeqCst);
        self.apic_mode.store(mode as u8, SeqCst);
    }

    /// Whether `dest` selects this vCPU's LAPIC, as last published.
    pub fn apic_matches(&self, dest: Destination) -> bool {
        let mode = match self.apic_mode.load(SeqCst) {
            0 => LapicMode::Disabled,
            1 => LapicMode::XApic,
            _ => LapicMode::X2Apic,
        };
        let (id, ldr, dfr) = (self.apic_id_reg.load(SeqCst), self.ldr.load(SeqCst), self.dfr.load(SeqCst));
        destination_matches(mode, id, ldr, dfr, dest)
    }

    pub fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(SeqCst))
    }

    /// Set by the owner only.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, SeqCst);
    }

    /// The owner is back from its guest. A plain store suffices: a sender that still sees
    /// `InGuest` sends a kick that costs one spurious exit, and the owner looks at its
    /// requests again (after a sequentially consistent `set_mode(InGuest)`) before it enters.
    #[inline]
    pub fn leave_guest(&self) {
        self.mode.store(Mode::Outside as u8, core::sync::atomic::Ordering::Release);
    }

    /// The owner records the physical CPU it runs on.
    pub fn place(&self, host_apic: u32) {
        self.host_apic.store(host_apic, SeqCst);
    }

    /// Whether a sender must kick this vCPU's pCPU after changing its requests: it is in the
    /// guest or asleep.
    fn needs_kick(&self) -> Option<u32> {
        match self.mode() {
            Mode::InGuest | Mode::Halted | Mode::WaitForSipi => {
                Some(self.host_apic.load(SeqCst)).filter(|&a| a != u32::MAX)
            }
            Mode::Outside | Mode::Stopped => None,
        }
    }

    /// Set request bits; returns the pCPU to kick, if one must be.
    #[must_use]
    pub fn request(&self, bits: u32) -> Option<u32> {
        if self.mode() == Mode::Stopped {
            return None;
        }
        self.requests.fetch_or(bits, SeqCst);
        self.needs_kick()
    }

    /// Post fixed interrupt `vector` (level-triggered if `level`); returns the pCPU to kick.
    #[must_use]
    pub fn post(&self, vector: u8, level: bool) -> Option<u32> {
        let (word, bit) = (vector as usize / 64, 1u64 << (vector % 64));
        if level {
            self.tmr[word].fetch_or(bit, SeqCst);
        } else {
            self.tmr[word].fetch_and(!bit, SeqCst);
        }
        self.irr[word].fetch_or(bit, SeqCst);
        self.request(request::EVENT)
    }

    /// Record a start-up IPI's vector (the first one since the last take wins, as a CPU in
    /// wait-for-SIPI acts on the first) and request it; returns the pCPU to kick.
    #[must_use]
    pub fn sipi(&self, vector: u8) -> Option<u32> {
        let _ = self.sipi.compare_exchange(0, 0x100 | vector as u32, SeqCst, SeqCst);
        self.request(request::SIPI)
    }

    /// The owner takes its pending requests.
    pub fn take_requests(&self) -> u32 {
        self.requests.swap(0, SeqCst)
    }

    /// Whether any request is pending (the owner checks before it sleeps or enters).
    pub fn has_requests(&self) -> bool {
        self.requests.load(SeqCst) != 0
    }

    /// The owner takes the posted interrupts: (IRR, TMR) bitmaps.
    pub fn take_posted(&self) -> ([u64; 4], [u64; 4]) {
        let mut irr = [0; 4];
        let mut tmr = [0; 4];
        for i in 0..4 {
            irr[i] = self.irr[i].swap(0, SeqCst);
            tmr[i] = self.tmr[i].load(SeqCst) & irr[i];
        }
        (irr, tmr)
    }

    /// The owner takes the start-up vector.
    pub fn take_sipi(&self) -> Option<u8> {
        let v = self.sipi.swap(0, SeqCst);
        (v & 0x100 != 0).then_some(v as u8)
    }
}

/// A VM as its vCPUs share it.
pub struct VmShared {
    pub name: String,
    pub vcpus: Vec<VcpuShared>,
    /// The guest TSC is the host's plus this (wrapping), the same on every vCPU.
    pub tsc_offset: u64,
    stopping: AtomicBool,
    outcome: Mutex<Option<VmOutcome>>,
    /// vCPUs that have not ended yet.
    active: AtomicU32,
    /// Sends the kick IPI to a physical CPU (its APIC ID); a no-op in host tests.
    kick: fn(u32),
    /// The VM's IOAPIC and PIC pair, behind one lock; devices raise lines into it.
    pub irq: Mutex<IrqRouter>,
    /// Its buses and timed devices.
    pub platform: super::platform::Platform,
}

impl VmShared {
    /// A VM of `vcpus` vCPUs with APIC IDs 0, 1, 2...
    pub fn new(name: String, vcpus: u32, tsc_offset: u64, kick: fn(u32)) -> Self {
        Self::with_platform(name, vcpus, tsc_offset, kick, super::platform::Platform::new())
    }

    /// A VM with the devices of `platform`.
    pub fn with_platform(
        name: String,
        vcpus: u32,
        tsc_offset: u64,
        kick: fn(u32),
        platform: super::platform::Platform,
    ) -> Self {
        VmShared {
            name,
            vcpus: (0..vcpus).map(|i| VcpuShared::new(i, i)).collect(),
            tsc_offset,
            stopping: AtomicBool::new(false),
            outcome: Mutex::new(None),
            active: AtomicU32::new(vcpus),
            kick,
            // The IOAPIC's ID follows the vCPUs' APIC IDs (as the MADT says).
            irq: Mutex::new(IrqRouter::new(IOAPIC_DEFAULT_BASE, vcpus.min(0xF) as u8)),
            platform,
        }
    }

    /// Put the IOAPIC and the PIC pair back at reset (a restart).
    pub fn reset_irq(&self) {
        self.irq.lock().reset();
    }

    /// Send the kick a request or post asked for.
    pub fn kick(&self, target: Option<u32>) {
        if let Some(apic) = target {
            (self.kick)(apic);
        }
    }

    /// Whether the VM is stopping.
    pub fn stopping(&self) -> bool {
        self.stopping.load(SeqCst)
    }

    /// Stop the VM: the first outcome given is the VM's; every vCPU is asked to end.
    pub fn stop(&self, outcome: VmOutcome) {
        {
            let mut o = self.outcome.lock();
            if o.is_none() {
                *o = Some(outcome);
            }
        }
        self.stopping.store(true, SeqCst);
        for v in &self.vcpus {
            self.kick(v.request(request::STOP));
        }
    }

    /// A vCPU ended; true for the last one (which reports the VM and frees it).
    pub fn vcpu_ended(&self, index: u32) -> bool {
        if let Some(v) = self.vcpus.get(index as usize) {
            v.set_mode(Mode::Stopped);
        }
        self.active.fetch_sub(1, SeqCst) == 1
    }

    /// How the VM ended (once it has).
    pub fn outcome(&self) -> Option<VmOutcome> {
        self.outcome.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicU32 as Counter;

    static KICKS: Counter = Counter::new(0);
    fn count_kick(_apic: u32) {
        KICKS.fetch_add(1, SeqCst);
    }

    #[test]
    fn a_sender_kicks_only_a_vcpu_in_the_guest_or_asleep() {
        let v = VcpuShared::new(1, 1);
        assert_eq!(v.post(0x40, false), None, "not placed");
        v.place(7);
        assert_eq!(v.post(0x41, false), None, "outside the guest: it checks before entry");
        v.set_mode(Mode::InGuest);
        assert_eq!(v.post(0x42, true), Some(7));
        v.set_mode(Mode::Halted);
        assert_eq!(v.request(request::NMI), Some(7));
        assert_eq!(v.take_requests(), request::EVENT | request::NMI);
        assert!(!v.has_requests());
        let (irr, tmr) = v.take_posted();
        assert_eq!(irr[1], 0b111);
        assert_eq!(tmr[1], 0b100, "only 0x42 is level-triggered");
        assert_eq!(v.take_posted().0, [0; 4], "taken once");
        v.set_mode(Mode::Stopped);
        assert_eq!(v.request(request::NMI), None);
        assert!(!v.has_requests(), "nothing reaches a stopped vCPU");
    }

    #[test]
    fn the_first_sipi_wins_until_taken() {
        let v = VcpuShared::new(1, 1);
        let _ = v.sipi(0x10);
        let _ = v.sipi(0x20);
        assert_eq!(v.take_requests(), request::SIPI);
        assert_eq!(v.take_sipi(), Some(0x10));
        assert_eq!(v.take_sipi(), None);
        let _ = v.sipi(0x00);
        assert_eq!(v.take_sipi(), Some(0x00), "vector 0 is a vector");
    }

    #[test]
    fn the_first_stop_is_the_outcome_and_every_vcpu_is_asked() {
        let vm = VmShared::new("t".into(), 3, 0, count_kick);
        for (i, v) in vm.vcpus.iter().enumerate() {
            v.place(i as u32);
        }
        vm.vcpus[1].set_mode(Mode::Halted);
        vm.vcpus[2].set_mode(Mode::InGuest);
        let before = KICKS.load(SeqCst);
        vm.stop(VmOutcome::Failed("first".into()));
        vm.stop(VmOutcome::Passed);
        assert!(vm.stopping());
        assert_eq!(vm.outcome(), Some(VmOutcome::Failed("first".into())));
        assert!(KICKS.load(SeqCst) - before >= 2, "the halted and the running vCPU were kicked");
        assert!(vm.vcpus.iter().all(|v| v.take_requests() & request::STOP != 0));
        assert!(!vm.vcpu_ended(2));
        assert!(!vm.vcpu_ended(0));
        assert!(vm.vcpu_ended(1), "the last one out");
        assert_eq!(vm.vcpus[1].mode(), Mode::Stopped);
    }
}
