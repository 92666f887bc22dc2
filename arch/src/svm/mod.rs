//! AMD SVM (APM Vol. 2 chapter 15): enabling it on a CPU, one vCPU per VMCB with nested paging,
//! the world switch, and exit decoding into the arch-neutral `VmExit`.
//!
//! Works without NRIPS, decode assists, clean bits or flush-by-ASID (QEMU TCG has none of
//! them) and uses NRIPS where the CPU has it.

pub mod exit;
pub mod policy;
mod switch;
pub mod vmcb;

use crate::io::{rdmsr, wrmsr};
use crate::spec::{self, EntryMitigations};
use crate::virt::{bits::RFLAGS_IF, VmExit};
use crate::virt::{
    Event, FrameSource, GuestGprs, InitialState, InterruptedEvent, Segment, StateSummary, VirtError,
    VirtualCpu,
};
use exit::{EntryState, ExitFields};
use raw_cpuid::CpuId;
use vmcb::{exit_code, int_ctl, intercept, tlb_control, Vmcb, VmcbSegment};

/// MSR EFER and its SVME bit (APM Vol. 2 15.4).
const MSR_EFER: u32 = 0xC000_0080;
const EFER_SVME: u64 = 1 << 12;
/// MSR VM_HSAVE_PA: where VMRUN saves host state (APM Vol. 2 15.30.4).
const MSR_VM_HSAVE_PA: u32 = 0xC001_0117;
/// The guest PAT at reset: WB, WT, UC-, UC, repeated.
const GUEST_PAT: u64 = 0x0007_0406_0007_0406;
/// DR6/DR7 at reset.
const DR6_INIT: u64 = 0xFFFF_0FF0;
const DR7_INIT: u64 = 0x400;
const INTERRUPT_SHADOW: u64 = 1;

/// What this CPU's SVM offers (CPUID 8000_000Ah, 8000_0008h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SvmFeatures {
    pub nested_paging: bool,
    /// NRIPS: the VMCB's `next_rip` is written on instruction intercepts.
    pub nrips: bool,
    /// Number of ASIDs (ASID 0 is the host's; guests use 1..asids).
    pub asids: u32,
    /// MAXPHYADDR.
    pub phys_addr_bits: u8,
}

/// This CPU's SVM features, or `None` if it has no SVM.
pub fn features() -> Option<SvmFeatures> {
    let cpuid = CpuId::new();
    let svm = cpuid.get_svm_info()?;
    let phys_addr_bits =
        cpuid.get_processor_capacity_feature_info().map_or(36, |c| c.physical_address_bits());
    Some(SvmFeatures {
        nested_paging: svm.has_nested_paging(),
        nrips: svm.has_nrip(),
        asids: svm.supported_asids(),
        phys_addr_bits,
    })
}

/// Turn SVM on for this CPU: check CPUID for SVM and NPT, set EFER.SVME and give VMRUN a
/// host save area (VM_HSAVE_PA). Calling it again on the same CPU is harmless (it keeps the
/// save area it set first).
///
/// VM_CR (0xC001_0114) is not read, since Bochs lacks it; if the firmware set VM_CR.SVMDIS,
/// the EFER write does not stick (or faults) and this reports `DisabledByFirmware`.
pub fn enable_this_cpu(frames: &mut dyn FrameSource) -> Result<(), VirtError> {
    let f = features().ok_or(VirtError::Unsupported("AMD SVM (CPUID 8000_0001h ECX[2])"))?;
    if !f.nested_paging {
        return Err(VirtError::Unsupported("nested paging (CPUID 8000_000Ah EDX[0])"));
    }
    // SAFETY: EFER exists on every x86_64 CPU; setting SVME only enables the SVM instructions
    // and changes nothing about memory.
    let efer = unsafe { rdmsr(MSR_EFER) };
    if efer & EFER_SVME == 0 {
        // SAFETY: as above.
        unsafe { wrmsr(MSR_EFER, efer | EFER_SVME) };
        // SAFETY: as above.
        if unsafe { rdmsr(MSR_EFER) } & EFER_SVME == 0 {
            return Err(VirtError::DisabledByFirmware);
        }
    }
    // SAFETY: VM_HSAVE_PA exists on every CPU with SVM.
    if unsafe { rdmsr(MSR_VM_HSAVE_PA) } == 0 {
        let page = frames.alloc_zeroed(1).ok_or(VirtError::OutOfMemory)?;
        // SAFETY: `page` is a 4 KiB-aligned zeroed page that nothing else uses, for this CPU's
        // VMRUN to keep host state in.
        unsafe { wrmsr(MSR_VM_HSAVE_PA, page) };
    }
    Ok(())
}

/// One SVM virtual CPU: its VMCB, a page for the host's VMSAVE state, the I/O and MSR
/// permission maps (everything intercepted), and the guest GPRs the VMCB does not hold.
/// Pages [`SvmVcpu::new`] takes from its frame source: the VMCB, the host save area, the three
/// pages of the I/O permission map and the two of the MSR permission map (a VM's quota is
/// checked against them before it starts).
pub const VCPU_PAGES: usize = 7;

pub struct SvmVcpu {
    vmcb: &'static mut Vmcb,
    vmcb_pa: u64,
    host_save_pa: u64,
    gprs: GuestGprs,
    nrips: bool,
    phys_addr_bits: u8,
    /// The VMRUN-checked fields as they were just before the last VMRUN (a failed VMRUN
    /// overwrites the save area with host state, APM 15.5.1 and PLATFORM.md).
    entry_state: EntryState,
    /// Set after a VMEXIT_INVALID: the save area now holds host state and must never run.
    failed: Option<VmExit>,
    /// What this vCPU does around each VMRUN (checked against the CPU in `new`).
    mitigations: EntryMitigations,
    /// `mitigations.switch_flags()`, for the world switch.
    switch_flags: u64,
    /// The guest's IA32_SPEC_CTRL (live in the MSR only while the guest runs).
    guest_spec_ctrl: u64,
    /// The guest is handling an NMI: NMIs are blocked until its IRET completes. SVM keeps no
    /// such state for the guest (without vNMI), so the backend does, as KVM does: it
    /// intercepts the IRET and takes the NMI as unblocked once RIP has left that IRET.
    nmi_masked: bool,
    /// The RIP of the intercepted IRET while it has not completed yet.
    iret_at: Option<u64>,
}

fn segment(s: &Segment) -> VmcbSegment {
    VmcbSegment { selector: s.selector, attrib: s.attrib, limit: s.limit, base: s.base }
}

/// Put `init` in the VMCB's save area: the state at creation, and after INIT and SIPI.
fn load_save_area(vmcb: &mut Vmcb, init: &InitialState) {
    let s = &mut vmcb.save;
    s.es = segment(&init.es);
    s.cs = segment(&init.cs);
    s.ss = segment(&init.ss);
    s.ds = segment(&init.ds);
    s.fs = segment(&init.fs);
    s.gs = segment(&init.gs);
    s.tr = segment(&init.tr);
    s.ldtr = segment(&init.ldtr);
    s.gdtr = VmcbSegment { limit: init.gdtr.limit as u32, base: init.gdtr.base, ..Default::default() };
    s.idtr = VmcbSegment { limit: init.idtr.limit as u32, base: init.idtr.base, ..Default::default() };
    s.cpl = ((init.ss.attrib >> 5) & 3) as u8;
    s.efer = init.efer | EFER_SVME;
    s.cr0 = init.cr0;
    s.cr3 = init.cr3;
    s.cr4 = init.cr4;
    s.dr6 = DR6_INIT;
    s.dr7 = DR7_INIT;
    s.rflags = init.rflags;
    s.rip = init.rip;
    s.rsp = init.rsp;
    s.rax = init.gprs.rax;
    s.g_pat = GUEST_PAT;
}

impl SvmVcpu {
    /// A vCPU in `init`'s state whose guest-physical memory is translated by the NPT at
    /// `npt_root`, tagged with `asid` (non-zero). `nrips`: the CPU writes `next_rip` (see
    /// `features()`). `mitigations`: what to do around each VMRUN (less what this CPU lacks).
    /// Needs `enable_this_cpu` to have run on this CPU.
    pub fn new(
        frames: &mut dyn FrameSource,
        npt_root: u64,
        asid: u32,
        init: &InitialState,
        nrips: bool,
        mitigations: EntryMitigations,
    ) -> Result<SvmVcpu, VirtError> {
        let mitigations = mitigations.supported_here();
        let vmcb_pa = frames.alloc_zeroed(1).ok_or(VirtError::OutOfMemory)?;
        let host_save_pa = frames.alloc_zeroed(1).ok_or(VirtError::OutOfMemory)?;
        let iopm_pa = frames.alloc_zeroed(3).ok_or(VirtError::OutOfMemory)?;
        let msrpm_pa = frames.alloc_zeroed(2).ok_or(VirtError::OutOfMemory)?;
        // SAFETY: the frame source hands out zeroed, identity-mapped pages that nothing else
        // uses; 3 and 2 contiguous pages for the maps.
        unsafe {
            core::ptr::write_bytes(iopm_pa as *mut u8, 0xFF, 3 * 4096);
            core::ptr::write_bytes(msrpm_pa as *mut u8, 0xFF, 2 * 4096);
        }
        // SAFETY: a zeroed, 4 KiB-aligned, identity-mapped page owned by this vCPU from now on;
        // all-zero bytes are a valid `Vmcb` (integers only).
        let vmcb = unsafe { &mut *(vmcb_pa as *mut Vmcb) };

        let c = &mut vmcb.control;
        // Everything that reaches host state or another VM exits (policy.rs says what does not).
        c.intercept_misc1 = policy::MISC1;
        c.intercept_misc2 = policy::MISC2;
        c.intercept_exceptions = policy::EXCEPTIONS;
        c.iopm_base_pa = iopm_pa;
        c.msrpm_base_pa = msrpm_pa;
        c.guest_asid = asid;
        c.tlb_control = tlb_control::FLUSH_ALL;
        c.v_intr = int_ctl::V_INTR_MASKING;
        c.np_enable = 1;
        c.n_cr3 = npt_root;

        load_save_area(vmcb, init);

        let entry_state = EntryState::from_vmcb(vmcb);
        // SAFETY: `enable_this_cpu` ran on this CPU (a precondition of `new`) and the host page
        // was just allocated for this vCPU.
        unsafe { switch::save_host(host_save_pa) };
        let phys_addr_bits = features().map_or(48, |f| f.phys_addr_bits);
        Ok(SvmVcpu {
            vmcb,
            vmcb_pa,
            host_save_pa,
            gprs: init.gprs,
            nrips,
            phys_addr_bits,
            entry_state,
            failed: None,
            mitigations,
            switch_flags: mitigations.switch_flags(),
            guest_spec_ctrl: 0,
            nmi_masked: false,
            iret_at: None,
        })
    }

    /// The raw SVM exit code of the last exit (for reports).
    /// The last exit's code and information, read from the VMCB where the CPU wrote them.
    #[inline]
    fn exit_fields(&self) -> ExitFields {
        let c = &self.vmcb.control;
        ExitFields { exit_code: c.exit_code, exit_info_1: c.exit_info_1, exit_info_2: c.exit_info_2 }
    }

    pub fn last_exit_code(&self) -> u64 {
        self.vmcb.control.exit_code
    }
}

impl VirtualCpu for SvmVcpu {
    fn run(&mut self) -> VmExit {
        if let Some(failed) = self.failed {
            return failed;
        }
        self.vmcb.save.rax = self.gprs.rax;
        self.entry_state.set_save(&self.vmcb.save);
        // SAFETY: `enable_this_cpu` ran on this CPU (a precondition of `new`); the VMCB, the host
        // page and both permission maps are pages this vCPU owns; the NPT was built by the VM
        // core for this guest only; Basalt runs with IF = 0. VMRUN runs with host IF = 1 under
        // GIF = 0 so that host interrupts (the time-slice timer) exit the guest (APM 15.21.1:
        // with V_INTR_MASKING the host IF alone masks physical interrupts in the guest).
        let spec_ctrl = self.mitigations.spec_ctrl.filter(|h| h.value != self.guest_spec_ctrl);
        if let Some(_host) = spec_ctrl {
            // SAFETY: `supported_here` kept `spec_ctrl` only where the MSR exists, and
            // `set_spec_ctrl` took only its writable bits. Host code until VMRUN runs with the
            // guest's bits, which only restrict speculation further.
            unsafe { spec::write_spec_ctrl(self.guest_spec_ctrl) };
        }
        if self.mitigations.l1d_flush {
            spec::flush_l1d();
        }
        // SAFETY: as above; `switch_flags` asks only for VERW and the RSB fill, which need
        // nothing from the CPU.
        unsafe {
            switch::world_switch(&mut self.gprs, self.vmcb_pa, self.host_save_pa, true, self.switch_flags)
        };
        if let Some(host) = spec_ctrl {
            // SAFETY: as above; Basalt's own value, read from the MSR at boot.
            unsafe { spec::write_spec_ctrl(host.value) };
        }
        let c = &mut self.vmcb.control;
        if exit_code::is_invalid(c.exit_code) {
            let mut before = self.entry_state;
            before.set_control(c);
            let failure = exit::entry_failure(&before, self.phys_addr_bits);
            self.failed = Some(failure);
            return failure;
        }
        // The first VMRUN flushed this ASID's stale translations (set in `new`); later ones need not.
        c.tlb_control = tlb_control::DO_NOTHING;
        // What was injected has been delivered, or the exit cut its delivery short and
        // EXITINTINFO says so (APM 15.7.2): the VM core queues it again.
        c.event_inj = 0;
        if let Some(at) = self.iret_at {
            if self.vmcb.save.rip != at {
                // The guest's IRET ran: its NMI handler is over.
                self.nmi_masked = false;
                self.iret_at = None;
            }
        }
        let c = &mut self.vmcb.control;
        match c.exit_code {
            exit_code::VINTR => {
                c.v_intr &= !(int_ctl::V_IRQ | int_ctl::V_IGN_TPR);
                c.intercept_misc1 &= !intercept::VINTR;
            }
            exit_code::IRET => {
                // Intercepted before it executes: let it run, and ask for an exit as soon as
                // interrupts are open after it (a guest's NMI handler returns with IF as it
                // was; with IF = 0 the next exit of any kind completes the NMI window).
                c.intercept_misc1 &= !intercept::IRET;
                self.iret_at = Some(self.vmcb.save.rip);
                c.v_intr |= int_ctl::V_IRQ | int_ctl::V_IGN_TPR;
                c.intercept_misc1 |= intercept::VINTR;
                self.gprs.rax = self.vmcb.save.rax;
                return VmExit::InterruptWindow;
            }
            // The host interrupt is still pending in the local APIC (IF = 0 since the exit):
            // take it now, or the next VMRUN exits at once.
            exit_code::INTR => crate::io::take_pending_interrupts(),
            _ => {}
        }
        self.gprs.rax = self.vmcb.save.rax;
        exit::decode(self.exit_fields(), self.gprs.rcx, self.gprs.rax, self.gprs.rdx)
    }

    fn gprs(&mut self) -> &mut GuestGprs {
        &mut self.gprs
    }

    fn spec_ctrl(&self) -> Option<(u64, u64)> {
        self.mitigations.spec_ctrl.map(|h| (self.guest_spec_ctrl, h.writable))
    }

    fn set_spec_ctrl(&mut self, value: u64) {
        if let Some(host) = self.mitigations.spec_ctrl {
            self.guest_spec_ctrl = value & host.writable;
        }
    }

    fn skip_instruction(&mut self) -> bool {
        let nrips = self.nrips.then_some(self.vmcb.control.next_rip);
        match exit::next_rip(self.exit_fields(), nrips) {
            Some(next) => {
                self.vmcb.save.rip = next;
                self.vmcb.control.interrupt_shadow &= !INTERRUPT_SHADOW;
                true
            }
            None => false,
        }
    }

    fn advance_rip(&mut self, len: u64) {
        self.vmcb.save.rip = self.vmcb.save.rip.wrapping_add(len);
        self.vmcb.control.interrupt_shadow &= !INTERRUPT_SHADOW;
    }

    fn inject(&mut self, ev: Event) {
        if matches!(
            ev,
            Event::Nmi | Event::Redeliver(InterruptedEvent { kind: crate::virt::EventKind::Nmi, .. })
        ) {
            // Blocked until the handler's IRET, which must exit for Basalt to know.
            self.nmi_masked = true;
            self.iret_at = None;
            self.vmcb.control.intercept_misc1 |= intercept::IRET;
        }
        self.vmcb.control.event_inj = exit::encode_event(ev);
    }

    fn interrupted_event(&self) -> Option<InterruptedEvent> {
        exit::interrupted_event(self.vmcb.control.exit_int_info)
    }

    fn interruptible(&self) -> bool {
        self.vmcb.save.rflags & RFLAGS_IF != 0 && self.vmcb.control.interrupt_shadow & INTERRUPT_SHADOW == 0
    }

    fn set_tsc_offset(&mut self, offset: u64) {
        self.vmcb.control.tsc_offset = offset;
    }

    fn rsp(&self) -> u64 {
        self.vmcb.save.rsp
    }
    fn set_rsp(&mut self, value: u64) {
        self.vmcb.save.rsp = value;
    }
    fn rip(&self) -> u64 {
        self.vmcb.save.rip
    }
    fn set_rip(&mut self, value: u64) {
        self.vmcb.save.rip = value;
    }
    fn rflags(&self) -> u64 {
        self.vmcb.save.rflags
    }
    fn set_rflags(&mut self, value: u64) {
        self.vmcb.save.rflags = value;
    }
    fn segment_base(&self, seg: u8) -> u64 {
        let s = &self.vmcb.save;
        [s.es, s.cs, s.ss, s.ds, s.fs, s.gs].get(seg as usize).map_or(0, |g| g.base)
    }
    fn guest_msr(&self, m: u32) -> Option<u64> {
        use crate::virt::msr::*;
        let s = &self.vmcb.save;
        Some(match m {
            FS_BASE => s.fs.base,
            GS_BASE => s.gs.base,
            KERNEL_GS_BASE => s.kernel_gs_base,
            STAR => s.star,
            LSTAR => s.lstar,
            CSTAR => s.cstar,
            SFMASK => s.sfmask,
            SYSENTER_CS => s.sysenter_cs,
            SYSENTER_ESP => s.sysenter_esp,
            SYSENTER_EIP => s.sysenter_eip,
            // Not in the VMCB: live in the CPU while the guest runs.
            _ => return crate::hoststate::live_msr(m).filter(|_| m == TSC_AUX),
        })
    }

    fn set_guest_msr(&mut self, m: u32, value: u64) -> bool {
        use crate::virt::msr::*;
        let s = &mut self.vmcb.save;
        let slot = match m {
            FS_BASE => &mut s.fs.base,
            GS_BASE => &mut s.gs.base,
            KERNEL_GS_BASE => &mut s.kernel_gs_base,
            STAR => &mut s.star,
            LSTAR => &mut s.lstar,
            CSTAR => &mut s.cstar,
            SFMASK => &mut s.sfmask,
            SYSENTER_CS => &mut s.sysenter_cs,
            SYSENTER_ESP => &mut s.sysenter_esp,
            SYSENTER_EIP => &mut s.sysenter_eip,
            TSC_AUX => return crate::hoststate::set_live_msr(m, value),
            _ => return false,
        };
        *slot = value;
        true
    }

    fn set_cr2(&mut self, value: u64) {
        self.vmcb.save.cr2 = value;
        // VMRUN loads CR2 from the VMCB (APM 15.5.1), but Bochs 2.7 does not: its guest sees
        // the CPU's own CR2 (a value written natively survives exits, one written to the VMCB
        // never arrives). Write the register too; Basalt keeps no CR2 of its own while a VM
        // runs (hoststate restores it when the VM ends).
        // SAFETY: CR2 only reports page-fault addresses; writing it changes nothing else.
        unsafe { core::arch::asm!("mov cr2, {}", in(reg) value, options(nomem, nostack, preserves_flags)) };
    }

    fn efer(&self) -> u64 {
        // SVME must stay set for VMRUN; the guest's view never has it (CPUID hides SVM).
        self.vmcb.save.efer & !EFER_SVME
    }

    fn set_efer(&mut self, value: u64) {
        self.vmcb.save.efer = value | EFER_SVME;
    }

    fn request_interrupt_window(&mut self, on: bool) {
        let c = &mut self.vmcb.control;
        if on {
            c.v_intr |= int_ctl::V_IRQ | int_ctl::V_IGN_TPR;
            c.intercept_misc1 |= intercept::VINTR;
        } else if self.iret_at.is_none() {
            c.v_intr &= !(int_ctl::V_IRQ | int_ctl::V_IGN_TPR);
            c.intercept_misc1 &= !intercept::VINTR;
        }
    }

    fn flush_guest_tlb(&mut self) {
        // Flush everything on the next VMRUN (QEMU TCG has no flush-by-ASID).
        self.vmcb.control.tlb_control = tlb_control::FLUSH_ALL;
    }

    fn nmi_blocked(&self) -> bool {
        self.nmi_masked || self.vmcb.control.interrupt_shadow & INTERRUPT_SHADOW != 0
    }

    fn request_nmi_window(&mut self, on: bool) {
        let c = &mut self.vmcb.control;
        if on && !self.nmi_masked {
            // Only the shadow: the next interrupt window ends it. (While masked, the IRET
            // intercept set at injection ends it.)
            c.v_intr |= int_ctl::V_IRQ | int_ctl::V_IGN_TPR;
            c.intercept_misc1 |= intercept::VINTR;
        }
    }

    fn load_state(&mut self, init: &InitialState) {
        load_save_area(self.vmcb, init);
        self.gprs = init.gprs;
        let c = &mut self.vmcb.control;
        c.event_inj = 0;
        c.interrupt_shadow = 0;
        c.intercept_misc1 &= !intercept::IRET;
        self.nmi_masked = false;
        self.iret_at = None;
        // Every cached piece of guest state changed.
        c.tlb_control = tlb_control::FLUSH_ALL;
    }

    fn summary(&self) -> StateSummary {
        let s = &self.vmcb.save;
        StateSummary {
            rip: s.rip,
            cpl: s.cpl,
            cs_base: s.cs.base,
            code_bits: crate::virt::code_bits(s.cr0, s.efer, s.cs.attrib),
            rsp: s.rsp,
            rflags: s.rflags,
            cr0: s.cr0,
            cr3: s.cr3,
            cr4: s.cr4,
            efer: s.efer,
            cs: s.cs.selector,
        }
    }
}
