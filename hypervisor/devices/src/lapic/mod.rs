//! The local APIC of one vCPU: xAPIC (MMIO) and x2APIC (MSR) register interfaces, interrupt
//! acceptance and priority, EOI, IPIs through the ICR, LINT0/LINT1 and the timer in one-shot,
//! periodic and TSC-deadline modes. Behaviour follows the Intel SDM vol. 3A chapter on the
//! APIC; where the SDM leaves room, the choice is the one guests are known to rely on and is
//! written down at the item.
//!
//! # State
//! Every architectural register lives at its index (MMIO offset / 16 = MSR - 0x800) in one
//! `[u32; 64]` ([`Lapic::regs`]); PPR is kept current there, the current-count register is
//! not (it is computed from `now` on each read; [`Lapic::fill_page`] writes it).
//! [`Lapic::fill_page`] and [`Lapic::load_page`] move the whole state to and from the 4 KiB
//! virtual-APIC page layout (`[u32; 1024]`, register `i` at word `i * 4`) for a backend with
//! APIC-register virtualization, or for a snapshot. What is not in the page: IA32_APIC_BASE,
//! IA32_TSC_DEADLINE, the latched-but-not-yet-visible ESR bits, the timer's phase and the
//! pending NMI/INIT/SIPI/ExtINT signals.
//!
//! # What the VM core calls, and when
//! - xAPIC MMIO exit at `base_address()..+0x1000` while `mode()` is [`Mode::XApic`]:
//!   [`Lapic::mmio_read`] / [`Lapic::mmio_write`]. x2APIC MSR exit (0x800-0x8FF):
//!   [`Lapic::msr_read`] / [`Lapic::msr_write`], injecting #GP on `Err(Gp)`. MSR 0x1B:
//!   [`Lapic::apic_base`] / [`Lapic::set_apic_base`] (then re-check `mode()` and
//!   `base_address()` to move the MMIO window). MSR 0x6E0: [`Lapic::tsc_deadline`] /
//!   [`Lapic::set_tsc_deadline`]. CR8: [`Lapic::tpr`] `>> 4` / [`Lapic::set_tpr`].
//! - A write returns an [`Action`]: for `Ipi(msg)` the core resolves `This`/`All*` relative to
//!   the sender, and for each target with `matches(msg.destination)` calls `deliver(&msg)`
//!   (for lowest priority it picks one, e.g. by lowest [`Lapic::ppr`]). For `Eoi { vector }`
//!   it tells the IOAPIC (clears Remote IRR of entries with that vector).
//! - Interrupts from the IOAPIC/MSIs: `matches` then `deliver`, as for IPIs.
//! - Before each VM entry: [`Lapic::take_init`] / [`Lapic::take_sipi`] (the core owns the
//!   wait-for-SIPI state and calls [`Lapic::reset_init`] when it processes INIT),
//!   [`Lapic::take_nmi`], then, when the guest can take an interrupt,
//!   [`Lapic::take_extint`] or [`Lapic::pic_accepted`] with the PIC's INTR (ExtINT: ask the
//!   PIC for the vector, bypassing IRR/ISR), else [`Lapic::pending_interrupt`] and, on
//!   injection, [`Lapic::acknowledge`]. If an interrupt is pending but the guest has
//!   interrupts blocked, open an interrupt window.
//! - Timer: after any call that takes `now` (every register write, APIC_BASE and
//!   TSC_DEADLINE writes, `advance`), the core re-reads [`crate::bus::Timed::deadline`] and
//!   arms its host timer for it; when that guest TSC is reached it calls
//!   [`crate::bus::Timed::advance`] (or [`Lapic::advance_to`]) and re-checks
//!   `pending_interrupt`. A masked timer reports no deadline: it keeps its phase lazily.
//! - LINT pins: [`Lapic::raise_lint0`] / [`Lapic::raise_lint1`] for an edge on the pin
//!   (LINT1 is the NMI input), [`Lapic::lint0_mode`] to know whether the PIC is wired through.

pub mod regs;
#[cfg(test)]
mod tests;

use crate::bus::{Ctx, Timed};
use crate::irq::{DeliveryMode, Destination, InterruptMessage};
use crate::time::Timebase;
pub use regs::divider;
use regs::*;

/// The MSR numbers the core routes here.
pub const MSR_APIC_BASE: u32 = 0x1B;
pub const MSR_TSC_DEADLINE: u32 = 0x6E0;
pub const MSR_X2APIC_FIRST: u32 = 0x800;
pub const MSR_X2APIC_LAST: u32 = 0x8FF;
/// The size of the xAPIC MMIO window.
pub const MMIO_SIZE: u64 = 0x1000;

/// The instruction must raise #GP(0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gp;

/// The APIC mode, from IA32_APIC_BASE bits 11 (EN) and 10 (EXTD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Globally disabled: no MMIO, no MSRs, accepts nothing; LINT0/LINT1 are the CPU's INTR and
    /// NMI pins directly.
    Disabled,
    XApic,
    X2Apic,
}

/// What a register write asks of the VM core.
///
/// There is no "timer changed" action: the core re-reads `deadline()` after every call that
/// takes `now`, which costs a few compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send this message (from an ICR or SELF_IPI write). `This`, `AllIncludingSelf` and
    /// `AllExcludingSelf` are relative to this LAPIC.
    Ipi(InterruptMessage),
    /// A level-triggered vector was EOIed and EOI broadcast is not suppressed: tell the
    /// IOAPIC.
    Eoi { vector: u8 },
}

/// How LINT0, where the PIC's INTR is wired, is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lint0Mode {
    /// The APIC is globally disabled: INTR goes straight to the CPU (PIC interrupts are
    /// taken as ExtINT).
    Direct,
    /// LVT LINT0 is unmasked in ExtINT mode (virtual wire): PIC interrupts pass through.
    ExtInt,
    /// LVT LINT0 is masked: the PIC is not heard on this vCPU.
    Masked,
    /// LVT LINT0 is unmasked in another delivery mode (fixed, NMI, ...): an edge on the pin is
    /// delivered through [`Lapic::raise_lint0`], the PIC's vector is not used.
    Local,
}

/// One of the local vector table entries, for [`Lapic::local_interrupt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lvt {
    Timer,
    Thermal,
    Perfmon,
    Lint0,
    Lint1,
    Error,
    Cmci,
}

impl Lvt {
    fn index(self) -> usize {
        match self {
            Lvt::Timer => LVT_TIMER,
            Lvt::Thermal => LVT_THERMAL,
            Lvt::Perfmon => LVT_PERFMON,
            Lvt::Lint0 => LVT_LINT0,
            Lvt::Lint1 => LVT_LINT1,
            Lvt::Error => LVT_ERROR,
            Lvt::Cmci => LVT_CMCI,
        }
    }
}

/// A running count-down (one-shot or periodic): `remaining` counts were left at TSC `start`,
/// and they run out at `expiry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Countdown {
    start: u64,
    remaining: u32,
    expiry: u64,
}

/// The local APIC of one vCPU.
#[derive(Debug, Clone)]
pub struct Lapic {
    regs: [u32; COUNT],
    apic_base: u64,
    /// The initial (x2)APIC ID, which is the x2APIC ID and the xAPIC ID after power-up.
    hw_id: u32,
    timebase: Timebase,
    bus_hz: u64,
    /// The guest's MAXPHYADDR, bounding the APIC base.
    phys_bits: u32,
    /// Whether EOI-broadcast suppression is offered (version bit 24, SVR bit 12).
    suppress_eoi_supported: bool,
    /// Errors detected since the last ESR write (the ESR shows them after the next write).
    esr_pending: u32,
    countdown: Option<Countdown>,
    /// IA32_TSC_DEADLINE; 0 = disarmed.
    tsc_deadline: u64,
    nmi: bool,
    init: bool,
    sipi: Option<u8>,
    extint: bool,
}

impl Lapic {
    /// A LAPIC after RESET: enabled at 0xFEE00000 in xAPIC mode, the BSP flag as given,
    /// software-disabled (SVR 0xFF), every LVT masked, timer stopped. `apic_id` is the initial
    /// APIC ID (xAPIC shows its low 8 bits). `bus_hz` is the timer's input clock before the
    /// divider.
    pub fn new(apic_id: u32, bsp: bool, timebase: Timebase, bus_hz: u64) -> Self {
        let mut lapic = Lapic {
            regs: [0; COUNT],
            apic_base: DEFAULT_BASE | BASE_ENABLE | if bsp { BASE_BSP } else { 0 },
            hw_id: apic_id,
            timebase,
            bus_hz: bus_hz.max(1),
            phys_bits: 52,
            suppress_eoi_supported: false,
            esr_pending: 0,
            countdown: None,
            tsc_deadline: 0,
            nmi: false,
            init: false,
            sipi: None,
            extint: false,
        };
        lapic.power_up_registers((apic_id & 0xFF) << 24);
        lapic
    }

    /// The guest's MAXPHYADDR (from its CPUID 0x80000008), which bounds the base address in
    /// IA32_APIC_BASE; bits at and above it are reserved. Default 52. Clamped to 32..=52.
    pub fn set_max_phys_bits(&mut self, bits: u8) {
        self.phys_bits = (bits as u32).clamp(32, 52);
    }

    /// Offer EOI-broadcast suppression (version bit 24; SVR bit 12 becomes writable). Only
    /// offer it with an IOAPIC that has an EOI register (version 0x20), since a guest that
    /// turns it on EOIs level interrupts there. Off by default.
    pub fn set_suppress_eoi_broadcast_supported(&mut self, supported: bool) {
        self.suppress_eoi_supported = supported;
        self.regs[VERSION] = self.version();
        if !supported {
            self.regs[SVR] &= !SVR_SUPPRESS_EOI_BROADCAST;
        }
    }

    fn version(&self) -> u32 {
        VERSION_VALUE | if self.suppress_eoi_supported { VERSION_SUPPRESS_EOI_BROADCAST } else { 0 }
    }

    /// Every register to its power-up value, with the ID register given; timer stopped.
    fn power_up_registers(&mut self, id_reg: u32) {
        self.regs = [0; COUNT];
        self.regs[ID] = id_reg;
        self.regs[VERSION] = self.version();
        self.regs[DFR] = 0xFFFF_FFFF;
        self.regs[SVR] = 0xFF;
        for i in LVTS {
            self.regs[i] = LVT_MASKED;
        }
        if self.mode() == Mode::X2Apic {
            self.regs[LDR] = x2apic_ldr(self.hw_id);
        }
        self.esr_pending = 0;
        self.countdown = None;
        self.tsc_deadline = 0;
    }

    /// The INIT signal: every register back to its power-up value except the APIC ID (and, in
    /// x2APIC mode, the LDR derived from it); IA32_APIC_BASE and the mode are kept. Pending
    /// NMI and ExtINT are dropped; pending INIT and SIPI are left for the core, which owns
    /// the wait-for-SIPI protocol.
    pub fn reset_init(&mut self) {
        self.power_up_registers(self.regs[ID]);
        self.nmi = false;
        self.extint = false;
    }

    // ----- IA32_APIC_BASE -----

    /// IA32_APIC_BASE (MSR 0x1B).
    pub fn apic_base(&self) -> u64 {
        self.apic_base
    }

    /// The guest-physical base of the xAPIC MMIO window.
    pub fn base_address(&self) -> u64 {
        self.apic_base & ((1u64 << self.phys_bits) - 1) & !0xFFF
    }

    pub fn mode(&self) -> Mode {
        mode_of(self.apic_base)
    }

    /// Whether this is the bootstrap processor (IA32_APIC_BASE bit 8).
    pub fn is_bsp(&self) -> bool {
        self.apic_base & BASE_BSP != 0
    }

    /// WRMSR IA32_APIC_BASE. #GP on reserved bits (0-7, 9, at and above MAXPHYADDR, and 10
    /// without x2APIC support), on EXTD without EN, on x2APIC -> xAPIC and on disabled ->
    /// x2APIC. Disabling resets the registers to power-up values except the ID; entering
    /// x2APIC mode makes the ID the 32-bit x2APIC ID and derives the LDR.
    pub fn set_apic_base(&mut self, value: u64, x2apic_supported: bool) -> Result<(), Gp> {
        let mut reserved = (!0u64 << self.phys_bits) | 0xFF | (1 << 9);
        if !x2apic_supported {
            reserved |= BASE_EXTD;
        }
        if value & reserved != 0 || (value & (BASE_EXTD | BASE_ENABLE)) == BASE_EXTD {
            return Err(Gp);
        }
        let old = self.mode();
        let new = mode_of(value);
        match (old, new) {
            (Mode::X2Apic, Mode::XApic) | (Mode::Disabled, Mode::X2Apic) => return Err(Gp),
            _ => {}
        }
        self.apic_base = value;
        match (old, new) {
            (Mode::XApic | Mode::X2Apic, Mode::Disabled) => {
                let id = if old == Mode::X2Apic { (self.hw_id & 0xFF) << 24 } else { self.regs[ID] };
                self.power_up_registers(id);
                self.nmi = false;
                self.extint = false;
            }
            (Mode::XApic, Mode::X2Apic) => {
                self.regs[ID] = self.hw_id;
                self.regs[LDR] = x2apic_ldr(self.hw_id);
                self.regs[DFR] = 0xFFFF_FFFF;
                self.regs[ICR_HIGH] = 0;
            }
            _ => {}
        }
        Ok(())
    }

    // ----- Register views -----

    /// The architectural registers, register `i` at MMIO offset `i * 16` (MSR `0x800 + i`).
    /// The current-count register (index 0x39) reads 0 here: it is computed from `now`.
    pub fn regs(&self) -> &[u32; 64] {
        &self.regs
    }

    /// The APIC ID as the current mode shows it (8 bits in xAPIC, 32 in x2APIC).
    pub fn apic_id(&self) -> u32 {
        match self.mode() {
            Mode::X2Apic => self.regs[ID],
            _ => self.regs[ID] >> 24,
        }
    }

    pub fn tpr(&self) -> u8 {
        self.regs[TPR] as u8
    }

    /// Set the TPR (a CR8 write sets `cr8 << 4`).
    pub fn set_tpr(&mut self, value: u8) {
        self.regs[TPR] = value as u32;
        self.update_ppr();
    }

    /// The processor priority (PPR), for lowest-priority arbitration.
    pub fn ppr(&self) -> u8 {
        self.regs[PPR] as u8
    }

    /// Whether the APIC is software-enabled (SVR bit 8) and globally enabled.
    pub fn software_enabled(&self) -> bool {
        self.mode() != Mode::Disabled && self.regs[SVR] & SVR_ENABLE != 0
    }

    /// Write the 4 KiB virtual-APIC page layout: register `i` at `page[i * 4]`, every other
    /// word 0, the current count computed at `now`.
    pub fn fill_page(&mut self, now: u64, page: &mut [u32; 1024]) {
        self.sync(now);
        page.fill(0);
        for (i, r) in self.regs.iter().enumerate() {
            page[i * 4] = *r;
        }
        page[TIMER_CURRENT * 4] = self.current_count(now);
    }

    /// Load the state from the 4 KiB page layout (as [`Lapic::fill_page`] writes it).
    /// Read-only registers (version, PPR; in x2APIC mode ID and LDR) are recomputed; the
    /// others are masked to their writable bits, vectors 0-15 are dropped from IRR/ISR/TMR, and
    /// a count-down timer is restarted at `now` with the page's current count (or stopped if
    /// it is 0 in one-shot mode). Pending signals, IA32_APIC_BASE and IA32_TSC_DEADLINE are
    /// not in the page and are kept.
    pub fn load_page(&mut self, now: u64, page: &[u32; 1024]) {
        let get = |i: usize| page[i * 4];
        let x2 = self.mode() == Mode::X2Apic;
        self.regs[ID] = if x2 { self.hw_id } else { get(ID) & 0xFF00_0000 };
        self.regs[LDR] = if x2 { x2apic_ldr(self.hw_id) } else { get(LDR) & 0xFF00_0000 };
        self.regs[DFR] = if x2 { 0xFFFF_FFFF } else { get(DFR) | 0x0FFF_FFFF };
        self.regs[TPR] = get(TPR) & 0xFF;
        self.regs[SVR] = get(SVR) & self.svr_writable();
        for w in 0..8 {
            let low = if w == 0 { !0xFFFFu32 } else { !0 };
            self.regs[ISR + w] = get(ISR + w) & low;
            self.regs[TMR + w] = get(TMR + w) & low;
            self.regs[IRR + w] = get(IRR + w) & low;
        }
        self.regs[ESR] = get(ESR) & 0xFF;
        let masked = if self.regs[SVR] & SVR_ENABLE == 0 { LVT_MASKED } else { 0 };
        for i in LVTS {
            self.regs[i] = (get(i) & lvt_writable(i)) | masked;
        }
        self.regs[ICR_LOW] = get(ICR_LOW) & ICR_LOW_WRITABLE;
        self.regs[ICR_HIGH] = if x2 { get(ICR_HIGH) } else { get(ICR_HIGH) & 0xFF00_0000 };
        self.regs[TIMER_DIVIDE] = get(TIMER_DIVIDE) & DIVIDE_MASK;
        self.regs[TIMER_INITIAL] = get(TIMER_INITIAL);
        self.update_ppr();
        self.countdown = None;
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            self.regs[TIMER_INITIAL] = 0;
        } else {
            self.tsc_deadline = 0;
            let initial = self.regs[TIMER_INITIAL];
            let current = get(TIMER_CURRENT).min(initial);
            let remaining = match (current, self.timer_mode()) {
                (0, TIMER_PERIODIC) => initial,
                (c, _) => c,
            };
            if remaining != 0 {
                self.start_countdown(now, remaining);
            }
        }
    }

    // ----- xAPIC MMIO -----

    /// A read in the xAPIC window (`offset` from its base). Each byte comes from the register
    /// whose 16-byte slot holds it: bytes 0-3 of a slot are the register, bytes 4-15 and
    /// slots without a readable register read 0xFF, as does the whole window when the APIC is
    /// not in xAPIC mode. Any width and alignment works.
    pub fn mmio_read(&mut self, now: u64, offset: u64, data: &mut [u8]) {
        self.sync(now);
        let xapic = self.mode() == Mode::XApic;
        let mut cached: Option<(usize, Option<u32>)> = None;
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = 0xFF;
            let Some(addr) = offset.checked_add(i as u64) else {
                continue;
            };
            if !xapic || addr >= MMIO_SIZE || addr & 0xF >= 4 {
                continue;
            }
            let index = (addr >> 4) as usize;
            let value = match cached {
                Some((at, v)) if at == index => v,
                _ => {
                    let v = self.read_xapic(now, index);
                    cached = Some((index, v));
                    v
                }
            };
            if let Some(v) = value {
                *byte = (v >> ((addr & 3) * 8)) as u8;
            }
        }
    }

    /// A write in the xAPIC window. Only aligned 32-bit writes at a register's offset act
    /// (narrower, wider or misaligned writes are ignored, as KVM does); writes to read-only
    /// or reserved registers are ignored.
    pub fn mmio_write(&mut self, now: u64, offset: u64, data: &[u8]) -> Option<Action> {
        if self.mode() != Mode::XApic || offset >= MMIO_SIZE || offset & 0xF != 0 {
            return None;
        }
        let bytes: [u8; 4] = data.try_into().ok()?;
        self.sync(now);
        self.write_xapic(now, (offset >> 4) as usize, u32::from_le_bytes(bytes))
    }

    fn read_xapic(&self, now: u64, index: usize) -> Option<u32> {
        Some(match index {
            ID | VERSION | TPR | APR | PPR | LDR | DFR | SVR | ESR => self.regs[index],
            ISR..=0x27 | LVT_CMCI | ICR_LOW | ICR_HIGH => self.regs[index],
            LVT_TIMER..=LVT_ERROR | TIMER_INITIAL | TIMER_DIVIDE => self.regs[index],
            RRD => 0,
            TIMER_CURRENT => self.current_count(now),
            // EOI is write-only; reads give 0 as on hardware.
            EOI => 0,
            _ => return None,
        })
    }

    fn write_xapic(&mut self, now: u64, index: usize, value: u32) -> Option<Action> {
        match index {
            ID => self.regs[ID] = value & 0xFF00_0000,
            TPR => self.set_tpr(value as u8),
            EOI => return self.eoi(),
            LDR => self.regs[LDR] = value & 0xFF00_0000,
            DFR => self.regs[DFR] = value | 0x0FFF_FFFF,
            SVR => self.write_svr(value),
            ESR => self.write_esr(),
            ICR_HIGH => self.regs[ICR_HIGH] = value & 0xFF00_0000,
            ICR_LOW => {
                self.regs[ICR_LOW] = value & ICR_LOW_WRITABLE;
                let dest = self.regs[ICR_HIGH] >> 24;
                return self.send_ipi(value, dest);
            }
            LVT_CMCI | LVT_TIMER..=LVT_ERROR => self.write_lvt(index, value),
            TIMER_INITIAL => self.write_initial_count(now, value),
            TIMER_DIVIDE => self.write_divide(now, value),
            _ => {}
        }
        None
    }

    // ----- x2APIC MSRs -----

    /// RDMSR of an x2APIC register (0x800-0x8FF). #GP outside x2APIC mode, for write-only
    /// (EOI, SELF_IPI) and absent registers (APR, RRD, DFR, ICR high 0x831, reserved).
    pub fn msr_read(&mut self, now: u64, msr: u32) -> Result<u64, Gp> {
        let index = self.x2apic_index(msr)?;
        self.sync(now);
        Ok(match index {
            ID | VERSION | TPR | PPR | LDR | SVR | ESR | LVT_CMCI => self.regs[index] as u64,
            ISR..=0x27 | LVT_TIMER..=LVT_ERROR | TIMER_INITIAL | TIMER_DIVIDE => self.regs[index] as u64,
            ICR_LOW => (self.regs[ICR_HIGH] as u64) << 32 | self.regs[ICR_LOW] as u64,
            TIMER_CURRENT => self.current_count(now) as u64,
            _ => return Err(Gp),
        })
    }

    /// WRMSR of an x2APIC register. #GP outside x2APIC mode, for read-only registers (ID,
    /// version, PPR, LDR, ISR/TMR/IRR, current count) and absent ones, for reserved bits
    /// (bits 63:32 of all but the ICR, reserved bits of TPR, SVR, LVTs, divide, ICR,
    /// SELF_IPI, LVT timer mode 3), and for a non-zero EOI or ESR write.
    pub fn msr_write(&mut self, now: u64, msr: u32, value: u64) -> Result<Option<Action>, Gp> {
        let index = self.x2apic_index(msr)?;
        if index != ICR_LOW && value >> 32 != 0 {
            return Err(Gp);
        }
        let v = value as u32;
        let check = |allowed: u32| if v & !allowed != 0 { Err(Gp) } else { Ok(()) };
        match index {
            TPR => check(0xFF)?,
            EOI | ESR => check(0)?,
            SVR => check(self.svr_writable())?,
            LVT_CMCI | LVT_TIMER..=LVT_ERROR => {
                check(lvt_writable(index) | lvt_read_only(index))?;
                if index == LVT_TIMER && v & LVT_TIMER_MODE == LVT_TIMER_MODE {
                    return Err(Gp);
                }
            }
            TIMER_INITIAL => {}
            TIMER_DIVIDE => check(DIVIDE_MASK)?,
            SELF_IPI => check(0xFF)?,
            ICR_LOW => {
                if value & X2APIC_ICR_RESERVED != 0 {
                    return Err(Gp);
                }
            }
            _ => return Err(Gp),
        }
        self.sync(now);
        Ok(match index {
            TPR => {
                self.set_tpr(v as u8);
                None
            }
            EOI => self.eoi(),
            ESR => {
                self.write_esr();
                None
            }
            SVR => {
                self.write_svr(v);
                None
            }
            LVT_CMCI | LVT_TIMER..=LVT_ERROR => {
                self.write_lvt(index, v);
                None
            }
            TIMER_INITIAL => {
                self.write_initial_count(now, v);
                None
            }
            TIMER_DIVIDE => {
                self.write_divide(now, v);
                None
            }
            SELF_IPI => self.self_ipi(v as u8),
            _ => {
                // ICR_LOW, the only index left after the checks above.
                let dest = (value >> 32) as u32;
                self.regs[ICR_LOW] = v & ICR_LOW_WRITABLE;
                self.regs[ICR_HIGH] = dest;
                self.send_ipi(v, dest)
            }
        })
    }

    fn x2apic_index(&self, msr: u32) -> Result<usize, Gp> {
        if self.mode() != Mode::X2Apic || !(MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&msr) {
            return Err(Gp);
        }
        let index = (msr - MSR_X2APIC_FIRST) as usize;
        if index < COUNT {
            Ok(index)
        } else {
            Err(Gp)
        }
    }

    // ----- Register semantics shared by both interfaces -----

    fn svr_writable(&self) -> u32 {
        SVR_VECTOR
            | SVR_ENABLE
            | SVR_FOCUS_DISABLE
            | if self.suppress_eoi_supported { SVR_SUPPRESS_EOI_BROADCAST } else { 0 }
    }

    fn write_svr(&mut self, value: u32) {
        let was_enabled = self.regs[SVR] & SVR_ENABLE != 0;
        self.regs[SVR] = value & self.svr_writable();
        if was_enabled && value & SVR_ENABLE == 0 {
            // Software disable masks every LVT (SDM "Local APIC State After It Has Been
            // Software Disabled"); IRR and ISR are kept.
            for i in LVTS {
                self.regs[i] |= LVT_MASKED;
            }
        }
    }

    /// A write to the ESR makes the errors detected since the last write visible and starts
    /// collecting anew.
    fn write_esr(&mut self) {
        self.regs[ESR] = self.esr_pending;
        self.esr_pending = 0;
    }

    fn write_lvt(&mut self, index: usize, value: u32) {
        let mut v = value & lvt_writable(index);
        if self.regs[SVR] & SVR_ENABLE == 0 {
            v |= LVT_MASKED;
        }
        if index == LVT_TIMER {
            let was_deadline = self.timer_mode() == TIMER_TSC_DEADLINE;
            let is_deadline = v & LVT_TIMER_MODE == TIMER_TSC_DEADLINE;
            if was_deadline != is_deadline {
                // Switching between TSC-deadline and the count-down modes disarms the timer
                // (SDM 11.5.4.1); between one-shot and periodic the count runs on and the new
                // mode decides what happens when it reaches 0.
                self.countdown = None;
                self.tsc_deadline = 0;
                self.regs[TIMER_INITIAL] = 0;
            }
        }
        self.regs[index] = v;
    }

    fn write_initial_count(&mut self, now: u64, value: u32) {
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            // Ignored in TSC-deadline mode.
            return;
        }
        self.regs[TIMER_INITIAL] = value;
        self.countdown = None;
        if value != 0 {
            self.start_countdown(now, value);
        }
    }

    /// A new divider applies from `now`: the counts left keep counting at the new rate.
    fn write_divide(&mut self, now: u64, value: u32) {
        let left = self.countdown.map(|_| self.current_count(now));
        self.regs[TIMER_DIVIDE] = value & DIVIDE_MASK;
        if let Some(left) = left {
            self.start_countdown(now, left);
        }
    }

    // ----- Priorities, acceptance, EOI -----

    fn update_ppr(&mut self) {
        let tpr = self.regs[TPR] & 0xFF;
        let isrv = highest(&self.regs, ISR).unwrap_or(0) as u32;
        self.regs[PPR] = if tpr & 0xF0 >= isrv & 0xF0 { tpr } else { isrv & 0xF0 };
    }

    /// The vector the CPU would take now: the highest IRR vector whose priority class is
    /// above the PPR's, when the APIC is software-enabled.
    pub fn pending_interrupt(&self) -> Option<u8> {
        if !self.software_enabled() {
            return None;
        }
        let v = highest(&self.regs, IRR)?;
        ((v & 0xF0) as u32 > self.regs[PPR] & 0xF0).then_some(v)
    }

    /// The CPU takes the pending interrupt (INTA): its vector moves from IRR to ISR. Returns
    /// it, or `None` if nothing is pending.
    pub fn acknowledge(&mut self) -> Option<u8> {
        let v = self.pending_interrupt()?;
        set_bit(&mut self.regs, IRR, v, false);
        set_bit(&mut self.regs, ISR, v, true);
        self.update_ppr();
        Some(v)
    }

    /// Whether vector `v` is set in IRR, ISR, TMR.
    pub fn irr(&self, v: u8) -> bool {
        bit(&self.regs, IRR, v)
    }
    pub fn isr(&self, v: u8) -> bool {
        bit(&self.regs, ISR, v)
    }
    pub fn tmr(&self, v: u8) -> bool {
        bit(&self.regs, TMR, v)
    }

    /// EOI: the highest ISR vector is done.
    fn eoi(&mut self) -> Option<Action> {
        let v = highest(&self.regs, ISR)?;
        set_bit(&mut self.regs, ISR, v, false);
        self.update_ppr();
        let suppressed = self.regs[SVR] & SVR_SUPPRESS_EOI_BROADCAST != 0;
        (bit(&self.regs, TMR, v) && !suppressed).then_some(Action::Eoi { vector: v })
    }

    /// Record an error in the ESR (seen after the next ESR write) and raise the error LVT.
    fn error(&mut self, bits: u32) {
        self.esr_pending |= bits;
        let lvt = self.regs[LVT_ERROR];
        if lvt & LVT_MASKED == 0 {
            let v = (lvt & LVT_VECTOR) as u8;
            if v < 16 {
                // No recursion: an illegal error vector only records itself.
                self.esr_pending |= ESR_RECEIVE_ILLEGAL_VECTOR;
            } else {
                self.accept_fixed(v, false);
            }
        }
    }

    /// A fixed interrupt arrives: IRR (and TMR for level) unless the APIC is
    /// software-disabled; vectors 0-15 only set "received illegal vector".
    fn accept_fixed(&mut self, vector: u8, level: bool) {
        if !self.software_enabled() {
            return;
        }
        if vector < 16 {
            self.error(ESR_RECEIVE_ILLEGAL_VECTOR);
            return;
        }
        set_bit(&mut self.regs, IRR, vector, true);
        set_bit(&mut self.regs, TMR, vector, level);
    }

    /// Whether a message for `dest` selects this LAPIC. Shorthands always match (the core
    /// applies them relative to the sender). A globally disabled APIC matches nothing.
    /// Physical broadcast is 0xFF in xAPIC mode and 0xFFFF_FFFF in x2APIC mode, each judged by
    /// this LAPIC's own mode: a source with 8-bit destinations (IOAPIC, MSI) that means
    /// "all" to x2APIC targets must say 0xFFFF_FFFF (the core maps it, as KVM's x2APIC
    /// broadcast quirk does). Logical xAPIC destinations use their low 8 bits.
    pub fn matches(&self, dest: Destination) -> bool {
        destination_matches(self.mode(), self.regs[ID], self.regs[LDR], self.regs[DFR], dest)
    }

    /// What another CPU needs to match destinations against this LAPIC without touching it:
    /// (mode, ID register, LDR, DFR), for [`destination_matches`].
    pub fn destination_state(&self) -> (Mode, u32, u32, u32) {
        (self.mode(), self.regs[ID], self.regs[LDR], self.regs[DFR])
    }

    /// Accept a message that [`Lapic::matches`] selected. Fixed and lowest priority set IRR
    /// (TMR for level-triggered) when software-enabled; NMI, INIT (assert only; the level
    /// de-assert does nothing), SIPI (its vector recorded) and ExtINT set pending signals;
    /// SMI is dropped (no SMM).
    pub fn deliver(&mut self, msg: &InterruptMessage) {
        if self.mode() == Mode::Disabled {
            return;
        }
        match msg.delivery {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                self.accept_fixed(msg.vector, msg.level_triggered)
            }
            DeliveryMode::Nmi => self.nmi = true,
            DeliveryMode::Init => {
                if msg.assert {
                    self.init = true;
                }
            }
            DeliveryMode::StartUp => self.sipi = Some(msg.vector),
            DeliveryMode::ExtInt => self.extint = true,
            DeliveryMode::Smi => {}
        }
    }

    /// Take the pending NMI.
    pub fn take_nmi(&mut self) -> bool {
        core::mem::take(&mut self.nmi)
    }
    /// Take the pending INIT.
    pub fn take_init(&mut self) -> bool {
        core::mem::take(&mut self.init)
    }
    /// Take the last SIPI vector received (meaningful only while the vCPU waits for SIPI).
    pub fn take_sipi(&mut self) -> Option<u8> {
        self.sipi.take()
    }
    /// Take the pending ExtINT: the core asks the PIC for the vector and injects it, outside
    /// IRR/ISR.
    pub fn take_extint(&mut self) -> bool {
        core::mem::take(&mut self.extint)
    }

    /// Whether anything is waiting for the vCPU: an NMI, INIT, SIPI, ExtINT or an interrupt
    /// above the PPR (to wake a halted vCPU).
    pub fn has_pending(&self) -> bool {
        self.nmi || self.init || self.sipi.is_some() || self.extint || self.pending_interrupt().is_some()
    }

    // ----- LINT0/LINT1 and the other local sources -----

    /// How the PIC's INTR, on LINT0, reaches this vCPU.
    pub fn lint0_mode(&self) -> Lint0Mode {
        if self.mode() == Mode::Disabled {
            return Lint0Mode::Direct;
        }
        let lvt = self.regs[LVT_LINT0];
        if lvt & LVT_MASKED != 0 {
            Lint0Mode::Masked
        } else if (lvt >> 8) & 7 == DeliveryMode::ExtInt as u32 {
            Lint0Mode::ExtInt
        } else {
            Lint0Mode::Local
        }
    }

    /// Whether the PIC's interrupts are heard here (directly or through virtual wire).
    pub fn pic_accepted(&self) -> bool {
        matches!(self.lint0_mode(), Lint0Mode::Direct | Lint0Mode::ExtInt)
    }

    /// An edge on LINT0: delivered per LVT LINT0 (ExtINT sets the pending ExtINT, as does the
    /// pin itself when the APIC is globally disabled).
    pub fn raise_lint0(&mut self) {
        if self.mode() == Mode::Disabled {
            self.extint = true;
        } else {
            self.local_interrupt(Lvt::Lint0);
        }
    }

    /// An edge on LINT1, normally programmed as the NMI input (and the CPU's NMI pin when the
    /// APIC is globally disabled).
    pub fn raise_lint1(&mut self) {
        if self.mode() == Mode::Disabled {
            self.nmi = true;
        } else {
            self.local_interrupt(Lvt::Lint1);
        }
    }

    /// A local interrupt source fires (thermal sensor, performance counter overflow, CMCI,
    /// a LINT pin, ...): delivered per its LVT unless masked. Local deliveries are edges.
    pub fn local_interrupt(&mut self, lvt: Lvt) {
        if self.mode() == Mode::Disabled {
            return;
        }
        let entry = self.regs[lvt.index()];
        if entry & LVT_MASKED != 0 {
            return;
        }
        let vector = (entry & LVT_VECTOR) as u8;
        let mode = match lvt {
            Lvt::Timer | Lvt::Error => Some(DeliveryMode::Fixed),
            _ => DeliveryMode::from_bits(entry >> 8),
        };
        match mode {
            Some(DeliveryMode::Fixed) => self.accept_fixed(vector, false),
            Some(DeliveryMode::Nmi) => self.nmi = true,
            Some(DeliveryMode::ExtInt) => self.extint = true,
            Some(DeliveryMode::Init) => self.init = true,
            _ => {}
        }
    }

    // ----- IPIs -----

    /// An ICR write (`low` as written, `dest` the destination field: 8 bits in xAPIC, 32 in
    /// x2APIC). The send completes at once, so delivery status always reads idle.
    fn send_ipi(&mut self, low: u32, dest: u32) -> Option<Action> {
        let vector = (low & ICR_VECTOR) as u8;
        // Reserved mode 3 and ExtINT (not valid in the ICR) send nothing.
        let delivery = match DeliveryMode::from_bits(low >> ICR_DELIVERY_MODE_SHIFT)? {
            DeliveryMode::ExtInt => return None,
            m => m,
        };
        if matches!(delivery, DeliveryMode::Fixed | DeliveryMode::LowestPriority) && vector < 16 {
            self.error(ESR_SEND_ILLEGAL_VECTOR);
            return None;
        }
        let destination = match (low >> ICR_SHORTHAND_SHIFT) & 3 {
            1 => Destination::This,
            2 => Destination::AllIncludingSelf,
            3 => Destination::AllExcludingSelf,
            _ if low & ICR_LOGICAL != 0 => Destination::Logical(dest),
            _ => Destination::Physical(dest),
        };
        let level_triggered = low & ICR_LEVEL != 0;
        // INIT with level 0 and trigger level is the INIT level de-assert.
        let assert = !(delivery == DeliveryMode::Init && level_triggered && low & ICR_ASSERT == 0);
        Some(Action::Ipi(InterruptMessage { vector, delivery, destination, level_triggered, assert }))
    }

    fn self_ipi(&mut self, vector: u8) -> Option<Action> {
        if vector < 16 {
            self.error(ESR_SEND_ILLEGAL_VECTOR);
            return None;
        }
        Some(Action::Ipi(InterruptMessage {
            vector,
            delivery: DeliveryMode::Fixed,
            destination: Destination::This,
            level_triggered: false,
            assert: true,
        }))
    }

    // ----- Timer -----

    fn timer_mode(&self) -> u32 {
        self.regs[LVT_TIMER] & LVT_TIMER_MODE
    }

    /// The timer divider now in effect (1 to 128).
    pub fn timer_divider(&self) -> u64 {
        divider(self.regs[TIMER_DIVIDE])
    }

    /// TSC ticks for `counts` timer counts at the current divider.
    fn ticks_for_counts(&self, counts: u64) -> u64 {
        let bus_cycles = counts.saturating_mul(self.timer_divider());
        self.timebase.ticks_for(bus_cycles, self.bus_hz)
    }

    /// Timer counts that elapse in `ticks` TSC ticks at the current divider.
    fn counts_in(&self, ticks: u64) -> u64 {
        self.timebase.periods_in(ticks, self.bus_hz) / self.timer_divider()
    }

    fn start_countdown(&mut self, now: u64, remaining: u32) {
        let expiry = now.saturating_add(self.ticks_for_counts(remaining as u64));
        self.countdown = Some(Countdown { start: now, remaining, expiry });
    }

    /// The current-count register at `now` (0 in TSC-deadline mode and when stopped).
    fn current_count(&self, now: u64) -> u32 {
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            return 0;
        }
        let Some(c) = self.countdown else {
            return 0;
        };
        if now < c.expiry {
            let done = self.counts_in(now.saturating_sub(c.start));
            return (c.remaining as u64).saturating_sub(done) as u32;
        }
        // Past expiry but not yet synced (only from `&self` callers): a periodic timer is in a
        // later period, a one-shot is at 0.
        let initial = self.regs[TIMER_INITIAL];
        if self.timer_mode() != TIMER_PERIODIC || initial == 0 {
            return 0;
        }
        let period = self.ticks_for_counts(initial as u64).max(1);
        let into = (now - c.expiry) % period;
        (initial as u64).saturating_sub(self.counts_in(into)) as u32
    }

    /// The timer's current count at `now`.
    pub fn timer_current_count(&mut self, now: u64) -> u32 {
        self.sync(now);
        self.current_count(now)
    }

    /// IA32_TSC_DEADLINE: the armed deadline, 0 when disarmed, fired, or not in TSC-deadline
    /// mode.
    pub fn tsc_deadline(&self, now: u64) -> u64 {
        if self.timer_mode() != TIMER_TSC_DEADLINE || self.tsc_deadline <= now {
            0
        } else {
            self.tsc_deadline
        }
    }

    /// WRMSR IA32_TSC_DEADLINE: arm for guest TSC `value` (0 disarms). Ignored unless the
    /// timer is in TSC-deadline mode. A deadline at or before `now` fires at once.
    pub fn set_tsc_deadline(&mut self, now: u64, value: u64) {
        self.sync(now);
        if self.mode() == Mode::Disabled || self.timer_mode() != TIMER_TSC_DEADLINE {
            return;
        }
        self.tsc_deadline = value;
        self.sync(now);
    }

    /// The timer fires: its vector into IRR unless the LVT is masked.
    fn timer_fire(&mut self) {
        self.local_interrupt(Lvt::Timer);
    }

    /// Bring the timer up to `now`: fire what expired (once, however many periods passed: a
    /// late host coalesces them as IRR would) and re-arm a periodic timer on its phase.
    fn sync(&mut self, now: u64) {
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            if self.tsc_deadline != 0 && now >= self.tsc_deadline {
                self.tsc_deadline = 0;
                self.timer_fire();
            }
            return;
        }
        let Some(c) = self.countdown else {
            return;
        };
        if now < c.expiry {
            return;
        }
        self.timer_fire();
        let initial = self.regs[TIMER_INITIAL];
        self.countdown = if self.timer_mode() == TIMER_PERIODIC && initial != 0 {
            let period = self.ticks_for_counts(initial as u64).max(1);
            let skipped = (now - c.expiry) / period;
            let start = c.expiry.saturating_add(skipped.saturating_mul(period));
            Some(Countdown { start, remaining: initial, expiry: start.saturating_add(period) })
        } else {
            None
        };
    }

    /// Bring the model up to `now` (what [`Timed::advance`] does, without a context).
    pub fn advance_to(&mut self, now: u64) {
        self.sync(now);
    }

    /// The guest TSC of the next timer interrupt, if the timer is armed and unmasked.
    pub fn timer_deadline(&self) -> Option<u64> {
        if self.mode() == Mode::Disabled || self.regs[LVT_TIMER] & LVT_MASKED != 0 {
            return None;
        }
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            (self.tsc_deadline != 0).then_some(self.tsc_deadline)
        } else {
            self.countdown.map(|c| c.expiry)
        }
    }

    /// LINT0 as ExtINT, unmasked, the rest as at reset: the BSP as a PC's firmware hands it
    /// over (and as KVM resets its BSP), so the PIC's INTR reaches the CPU before the OS
    /// touches its APIC (real-mode code, early boot).
    pub fn firmware_lint0(&mut self) {
        self.regs[LVT_LINT0] = (DeliveryMode::ExtInt as u32) << 8;
    }

    /// Put the LAPIC in virtual-wire mode as firmware leaves the BSP (MP spec 3.6.2.2):
    /// software-enabled, LINT0 ExtINT, LINT1 NMI. For a core that boots a kernel without
    /// firmware.
    pub fn enter_virtual_wire(&mut self) {
        self.write_svr(self.regs[SVR] | SVR_ENABLE);
        self.regs[LVT_LINT0] = (DeliveryMode::ExtInt as u32) << 8;
        self.regs[LVT_LINT1] = (DeliveryMode::Nmi as u32) << 8;
    }
}

/// Whether a LAPIC in `mode` whose ID, LDR and DFR registers hold `id`, `ldr` and `dfr` is
/// selected by `dest` (SDM 10.6.2): physical IDs with the broadcast of its mode, logical flat
/// and cluster per the DFR in xAPIC mode, x2APIC cluster; the shorthands select every enabled
/// LAPIC (the caller excludes the sender where it must). [`Lapic::matches`] uses it, and so
/// does the VM core on the state each vCPU publishes.
pub fn destination_matches(mode: Mode, id: u32, ldr: u32, dfr: u32, dest: Destination) -> bool {
    match (mode, dest) {
        (Mode::Disabled, _) => false,
        (_, Destination::This | Destination::AllIncludingSelf | Destination::AllExcludingSelf) => true,
        (Mode::XApic, Destination::Physical(p)) => p == 0xFF || p == id >> 24,
        (Mode::X2Apic, Destination::Physical(p)) => p == 0xFFFF_FFFF || p == id,
        (Mode::XApic, Destination::Logical(mda)) => {
            let mda = mda & 0xFF;
            let ldr = ldr >> 24;
            if mda == 0xFF {
                true
            } else if dfr >> 28 == 0xF {
                // Flat: one bit per APIC.
                mda & ldr != 0
            } else {
                // Cluster: cluster in bits 7:4, one bit of 4 in bits 3:0.
                (mda >> 4) == (ldr >> 4) && mda & ldr & 0xF != 0
            }
        }
        (Mode::X2Apic, Destination::Logical(mda)) => {
            mda == 0xFFFF_FFFF || ((mda >> 16) == (ldr >> 16) && mda & ldr & 0xFFFF != 0)
        }
    }
}

impl Timed for Lapic {
    fn deadline(&self) -> Option<u64> {
        self.timer_deadline()
    }

    fn advance(&mut self, ctx: &mut Ctx<'_>) {
        self.sync(ctx.now);
    }
}

fn mode_of(base: u64) -> Mode {
    match (base & BASE_ENABLE != 0, base & BASE_EXTD != 0) {
        (false, _) => Mode::Disabled,
        (true, false) => Mode::XApic,
        (true, true) => Mode::X2Apic,
    }
}

fn bit(regs: &[u32; COUNT], first: usize, v: u8) -> bool {
    regs[first + (v as usize >> 5)] & (1 << (v & 31)) != 0
}

fn set_bit(regs: &mut [u32; COUNT], first: usize, v: u8, on: bool) {
    let w = &mut regs[first + (v as usize >> 5)];
    if on {
        *w |= 1 << (v & 31);
    } else {
        *w &= !(1 << (v & 31));
    }
}

/// The highest vector set in the 8-word bitmap at `first`.
fn highest(regs: &[u32; COUNT], first: usize) -> Option<u8> {
    (0..8)
        .rev()
        .find(|&w| regs[first + w] != 0)
        .map(|w| (w as u32 * 32 + 31 - regs[first + w].leading_zeros()) as u8)
}
