//! Intel VMX (SDM Vol. 3C chapters 24-31): VMXON, one VMCS per vCPU with EPT, VPID and
//! unrestricted guest, the world switch, and exit decoding into the arch-neutral `VmExit`.
//!
//! The pure parts (control computation in `caps`, exit decoding in `exit`, access rights and
//! the guest-state checker in `check`) are unit-tested on the host; the rest runs on the target.
//!
//! A `VmxVcpu` is tied to the CPU that created it: its VMCS was made current there and is only
//! ever loaded there (SDM 24.1: a VMCS must be VMCLEARed before it moves to another CPU).
//! Call `run` and every other method on that CPU only, after `enable_this_cpu` there.

pub mod caps;
pub mod check;
pub mod exit;
pub mod switch;

use core::marker::PhantomData;

use x86::bits64::vmx as insn;
use x86::vmx::vmcs::{control, guest, host, ro};
use x86::vmx::VmFail;

use crate::io::{rdmsr, wrmsr};
use crate::nested::ept::EPTP_WB_4LEVEL;
use crate::spec::{self, EntryMitigations};
use crate::virt::bits::*;
use crate::virt::{
    EntryFailure, Event, FrameSource, GuestGprs, InitialState, InterruptedEvent, StateSummary, VirtError,
    VirtualCpu, VmExit,
};
use caps::{compute_controls, ept_cap, msr, proc1, Controls, VmxCaps};
use check::{GuestState, VmxSegment};
use exit::{intr, ExitInfo};

const FEATURE_CONTROL_LOCK: u64 = 1 << 0;
const FEATURE_CONTROL_VMX_OUTSIDE_SMX: u64 = 1 << 2;
const CR4_VMXE: u64 = 1 << 13;
const IA32_SYSENTER_CS: u32 = 0x174;
const IA32_SYSENTER_ESP: u32 = 0x175;
const IA32_SYSENTER_EIP: u32 = 0x176;
const IA32_EFER: u32 = 0xC000_0080;
const IA32_FS_BASE: u32 = 0xC000_0100;
const IA32_GS_BASE: u32 = 0xC000_0101;
/// Guest interruptibility state: blocking by STI (bit 0) and by MOV SS (bit 1) (SDM 25.4.2).
const BLOCKING_STI_MOVSS: u64 = 3;
/// Interruptibility state: blocking by NMI (SDM Table 25-3).
const BLOCKING_NMI: u64 = 8;
/// Exceptions that exit (exception bitmap): #DB and #AC, whose delivery can loop inside the CPU
/// without an exit (CVE-2015-8104, CVE-2015-5307), and #MC, which belongs to the host.
const EXCEPTION_BITMAP: u64 = (1 << 1) | (1 << 17) | (1 << 18);
/// CR4 bits of features the virtual CPU never offers (CPUID hides them), owned by Basalt
/// through the guest/host mask so that setting one exits and gets #GP: UMIP 11, LA57 12,
/// VMXE 13, SMXE 14, PKE 22, CET 23, PKS 24. (OSXSAVE is the guest's: XSAVE is offered where
/// the CPU has it, and where it does not the fixed-1 bits already refuse OSXSAVE.)
pub const CR4_HIDDEN: u64 = (1 << 11) | (1 << 12) | (1 << 13) | (1 << 14) | (0x7 << 22);
/// CR0.NW and CR0.CD: never forced on a guest, whatever a capability MSR's fixed-0 bits say
/// (the boot ABI promises caches enabled). VM entry leaves them as the host has them (SDM
/// 27.3.2.1), so `hoststate::init_this_cpu` turns the host's caches on.
const CR0_CD_NW: u64 = (1 << 29) | (1 << 30);
/// DR6 bits a #DB exit qualification reports (B0-B3, BD, BS; SDM Table 28-1).
const DR6_EXIT_BITS: u64 = 0x600F;

fn read_cr0() -> u64 {
    let v;
    // SAFETY: reading CR0 at CPL 0 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}
fn read_cr3() -> u64 {
    let v;
    // SAFETY: reading CR3 at CPL 0 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}
fn read_cr4() -> u64 {
    let v;
    // SAFETY: reading CR4 at CPL 0 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// The VM-instruction error of the current VMCS, 0 where none can be read.
fn instruction_error_number() -> u64 {
    // SAFETY: VMREAD in VMX operation; with no current VMCS it fails and we report 0.
    unsafe { insn::vmread(ro::VM_INSTRUCTION_ERROR) }.unwrap_or(0)
}

fn failed(instruction: &'static str, fail: VmFail) -> VirtError {
    let error = match fail {
        VmFail::VmFailValid => instruction_error_number(),
        VmFail::VmFailInvalid => 0,
    };
    VirtError::InstructionFailed { instruction, error }
}

/// Turn VMX operation on for the calling CPU (SDM 24.7): check CPUID, IA32_FEATURE_CONTROL,
/// apply the CR0/CR4 fixed bits, set CR4.VMXE and execute VMXON on a fresh VMXON region.
pub fn enable_this_cpu(frames: &mut dyn FrameSource) -> Result<(), VirtError> {
    let vmx = raw_cpuid::CpuId::new().get_feature_info().is_some_and(|f| f.has_vmx());
    if !vmx {
        return Err(VirtError::Unsupported("VMX"));
    }
    // SAFETY: CPUID says VMX exists, so IA32_FEATURE_CONTROL does too (SDM 24.7).
    let fc = unsafe { rdmsr(msr::IA32_FEATURE_CONTROL) };
    if fc & FEATURE_CONTROL_LOCK != 0 {
        if fc & FEATURE_CONTROL_VMX_OUTSIDE_SMX == 0 {
            return Err(VirtError::DisabledByFirmware);
        }
    } else {
        // SAFETY: the MSR is unlocked; enabling VMX outside SMX and locking changes nothing else.
        unsafe {
            wrmsr(msr::IA32_FEATURE_CONTROL, fc | FEATURE_CONTROL_LOCK | FEATURE_CONTROL_VMX_OUTSIDE_SMX)
        };
    }
    // SAFETY: VMX is supported (checked above).
    let caps = unsafe { VmxCaps::read() };
    let cr0 = (read_cr0() | caps.cr0_fixed0) & caps.cr0_fixed1;
    let cr4 = (read_cr4() | caps.cr4_fixed0 | CR4_VMXE) & caps.cr4_fixed1;
    // SAFETY: the fixed-1 bits of a running long-mode kernel (PE, PG, NE) and CR4.VMXE change
    // no translation and no memory Basalt uses.
    unsafe {
        core::arch::asm!("mov cr0, {}", in(reg) cr0, options(nostack, preserves_flags));
        core::arch::asm!("mov cr4, {}", in(reg) cr4, options(nostack, preserves_flags));
    }
    let region = frames.alloc_zeroed(1).ok_or(VirtError::OutOfMemory)?;
    // SAFETY: `region` is a fresh identity-mapped zeroed page owned by this CPU's VMX from now on.
    unsafe { (region as *mut u32).write_volatile(caps.revision_id()) };
    // SAFETY: CR4.VMXE is set, the fixed bits hold and `region` is a VMXON region (SDM 24.11.5).
    unsafe { insn::vmxon(region) }.map_err(|e| failed("VMXON", e))
}

/// Proof that some VMCS is current on this CPU, so VMREAD/VMWRITE are defined.
struct Vmcs(PhantomData<*const ()>);

impl Vmcs {
    /// # Safety
    /// VMX operation is on and a VMCS is current on this CPU.
    unsafe fn assume() -> Self {
        Vmcs(PhantomData)
    }
    fn read(&self, field: u32) -> u64 {
        // SAFETY: a VMCS is current (type invariant); an unsupported field fails and reads as 0.
        unsafe { insn::vmread(field) }.unwrap_or(0)
    }
    fn write(&self, field: u32, value: u64) -> Result<(), VirtError> {
        // SAFETY: a VMCS is current (type invariant); VMWRITE touches only the VMCS.
        unsafe { insn::vmwrite(field, value) }.map_err(|e| failed("VMWRITE", e))
    }
    fn write_segment(&self, fields: [u32; 4], seg: VmxSegment) -> Result<(), VirtError> {
        self.write(fields[0], seg.selector as u64)?;
        self.write(fields[1], seg.base)?;
        self.write(fields[2], seg.limit as u64)?;
        self.write(fields[3], seg.access_rights as u64)
    }
    fn read_segment(&self, fields: [u32; 4]) -> VmxSegment {
        VmxSegment {
            selector: self.read(fields[0]) as u16,
            base: self.read(fields[1]),
            limit: self.read(fields[2]) as u32,
            access_rights: self.read(fields[3]) as u32,
        }
    }
}

/// VMCS fields of one guest segment: selector, base, limit, access rights.
mod seg {
    use super::guest::*;
    pub const ES: [u32; 4] = [ES_SELECTOR, ES_BASE, ES_LIMIT, ES_ACCESS_RIGHTS];
    pub const CS: [u32; 4] = [CS_SELECTOR, CS_BASE, CS_LIMIT, CS_ACCESS_RIGHTS];
    pub const SS: [u32; 4] = [SS_SELECTOR, SS_BASE, SS_LIMIT, SS_ACCESS_RIGHTS];
    pub const DS: [u32; 4] = [DS_SELECTOR, DS_BASE, DS_LIMIT, DS_ACCESS_RIGHTS];
    pub const FS: [u32; 4] = [FS_SELECTOR, FS_BASE, FS_LIMIT, FS_ACCESS_RIGHTS];
    pub const GS: [u32; 4] = [GS_SELECTOR, GS_BASE, GS_LIMIT, GS_ACCESS_RIGHTS];
    pub const TR: [u32; 4] = [TR_SELECTOR, TR_BASE, TR_LIMIT, TR_ACCESS_RIGHTS];
    pub const LDTR: [u32; 4] = [LDTR_SELECTOR, LDTR_BASE, LDTR_LIMIT, LDTR_ACCESS_RIGHTS];
}

/// The base of the TSS that `tr` selects in the GDT at `gdt_base` (a 16-byte system descriptor).
///
/// # Safety
/// `gdt_base + tr` holds a valid TSS descriptor (the one loaded into TR).
unsafe fn tss_base(gdt_base: u64, tr: u16) -> u64 {
    let desc = (gdt_base + (tr & !7) as u64) as *const u64;
    // SAFETY: forwarded from the caller; the GDT is identity-mapped.
    let (low, high) = unsafe { (desc.read_unaligned(), desc.add(1).read_unaligned()) };
    ((low >> 16) & 0xFF_FFFF) | ((low >> 56) & 0xFF) << 24 | (high & 0xFFFF_FFFF) << 32
}

/// Flush every EPT- and VPID-tagged translation (INVEPT/INVVPID all-context) where supported,
/// so a new VM never sees a dead VM's mappings cached under the same EPTP or VPID.
fn flush_all_contexts(caps: &VmxCaps) {
    let descriptor = [0u64; 2];
    if caps.ept_vpid & ept_cap::INVEPT != 0 && caps.ept_vpid & ept_cap::INVEPT_ALL_CONTEXT != 0 {
        // SAFETY: INVEPT type 2 (all-context) in VMX root operation; it only drops cached
        // translations. The descriptor is ignored for this type but must be readable.
        unsafe { core::arch::asm!("invept {}, [{}]", in(reg) 2u64, in(reg) &descriptor, options(nostack)) };
    }
    if caps.ept_vpid & ept_cap::INVVPID != 0 && caps.ept_vpid & ept_cap::INVVPID_ALL_CONTEXT != 0 {
        // SAFETY: INVVPID type 2 (all-context), as above.
        unsafe { core::arch::asm!("invvpid {}, [{}]", in(reg) 2u64, in(reg) &descriptor, options(nostack)) };
    }
}

/// One virtual CPU on VMX: its VMCS and the guest GPRs the VMCS does not hold.
/// Pages [`VmxVcpu::new`] takes from its frame source: the VMCS, the two I/O bitmaps, the MSR
/// bitmap and the virtual-APIC page (a VM's quota is checked against them before it starts).
pub const VCPU_PAGES: usize = 5;

pub struct VmxVcpu {
    vmcs: u64,
    gprs: GuestGprs,
    launched: bool,
    controls: Controls,
    caps: VmxCaps,
    /// The CR0 bits VM entry forces to 1 (the fixed-0 bits less what unrestricted guest frees).
    cr0_forced: u64,
    /// What the last exit interrupted (IDT-vectoring information, error code, instruction length).
    vectoring: (u32, u32, u32),
    /// The last exit's qualification (DR6 bits of a #DB).
    qualification: u64,
    /// What this vCPU does around each VM entry (checked against the CPU in `new`).
    mitigations: EntryMitigations,
    /// `mitigations.switch_flags()`, for the world switch.
    switch_flags: u64,
    /// The guest's IA32_SPEC_CTRL (live in the MSR only while the guest runs).
    guest_spec_ctrl: u64,
}

/// Load `init` as the guest state (SDM 25.4), with the CR0/CR4 read shadows and the IA-32e
/// mode entry control that go with it, and no event or blocking pending: the state at VM
/// creation, and after INIT and SIPI.
fn write_guest_state(
    v: &Vmcs,
    caps: &VmxCaps,
    cr0_fixed0: u64,
    init: &InitialState,
) -> Result<(), VirtError> {
    v.write(control::CR0_READ_SHADOW, init.cr0)?;
    v.write(control::CR4_READ_SHADOW, init.cr4)?;
    let entry = v.read(control::VMENTRY_CONTROLS) as u32 & !caps::entry::IA32E_MODE_GUEST;
    let ia32e = if init.efer & EFER_LMA != 0 { caps::entry::IA32E_MODE_GUEST } else { 0 };
    v.write(control::VMENTRY_CONTROLS, (entry | ia32e) as u64)?;
    v.write(control::VMENTRY_INTERRUPTION_INFO_FIELD, 0)?;
    v.write(guest::CR0, (init.cr0 | cr0_fixed0) & caps.cr0_fixed1)?;
    v.write(guest::CR3, init.cr3)?;
    v.write(guest::CR4, (init.cr4 | caps.cr4_fixed0) & caps.cr4_fixed1)?;
    v.write(guest::IA32_EFER_FULL, init.efer)?;
    v.write(guest::DR7, 0x400)?;
    v.write(guest::IA32_DEBUGCTL_FULL, 0)?;
    v.write(guest::RSP, init.rsp)?;
    v.write(guest::RIP, init.rip)?;
    v.write(guest::RFLAGS, init.rflags | RFLAGS_RESERVED1)?;
    v.write_segment(seg::ES, init.es.into())?;
    v.write_segment(seg::CS, init.cs.into())?;
    v.write_segment(seg::SS, init.ss.into())?;
    v.write_segment(seg::DS, init.ds.into())?;
    v.write_segment(seg::FS, init.fs.into())?;
    v.write_segment(seg::GS, init.gs.into())?;
    let mut ldtr: VmxSegment = init.ldtr.into();
    ldtr.access_rights |= check::AR_UNUSABLE;
    v.write_segment(seg::LDTR, ldtr)?;
    v.write_segment(seg::TR, init.tr.into())?;
    v.write(guest::GDTR_BASE, init.gdtr.base)?;
    v.write(guest::GDTR_LIMIT, init.gdtr.limit as u64)?;
    v.write(guest::IDTR_BASE, init.idtr.base)?;
    v.write(guest::IDTR_LIMIT, init.idtr.limit as u64)?;
    v.write(guest::IA32_SYSENTER_CS, 0)?;
    v.write(guest::IA32_SYSENTER_ESP, 0)?;
    v.write(guest::IA32_SYSENTER_EIP, 0)?;
    v.write(guest::INTERRUPTIBILITY_STATE, 0)?;
    v.write(guest::ACTIVITY_STATE, 0)?;
    v.write(guest::PENDING_DBG_EXCEPTIONS, 0)?;
    v.write(guest::LINK_PTR_FULL, !0)?;

    Ok(())
}

impl VmxVcpu {
    /// Create a vCPU on the calling CPU (which must have run `enable_this_cpu`): allocate and
    /// fill its VMCS (controls, host state, guest state from `init`), its I/O and MSR bitmaps
    /// (all ones: every port and MSR access exits), with `ept_root` as the EPT PML4 and `vpid`
    /// (non-zero) tagging its TLB entries, and `mitigations` around each entry (less what this
    /// CPU lacks). The VMCS stays current on this CPU.
    pub fn new(
        frames: &mut dyn FrameSource,
        ept_root: u64,
        vpid: u16,
        init: &InitialState,
        mitigations: EntryMitigations,
    ) -> Result<VmxVcpu, VirtError> {
        let mitigations = mitigations.supported_here();
        if read_cr4() & CR4_VMXE == 0 {
            return Err(VirtError::Unsupported("VMX operation on this CPU (enable_this_cpu first)"));
        }
        if vpid == 0 {
            return Err(VirtError::Unsupported("VPID 0 (VPIDs for guests start at 1)"));
        }
        // SAFETY: CR4.VMXE is set, so this CPU supports VMX.
        let caps = unsafe { VmxCaps::read() };
        let controls = compute_controls(&caps, init.efer & EFER_LMA != 0)?;

        let vmcs = frames.alloc_zeroed(1).ok_or(VirtError::OutOfMemory)?;
        let io_bitmaps = frames.alloc_zeroed(2).ok_or(VirtError::OutOfMemory)?;
        let msr_bitmap = frames.alloc_zeroed(1).ok_or(VirtError::OutOfMemory)?;
        // The TPR shadow: the guest's CR8 lives here (VTPR at offset 0x80), zero at reset.
        let virtual_apic = frames.alloc_zeroed(1).ok_or(VirtError::OutOfMemory)?;
        // SAFETY: the three allocations are fresh, zeroed, identity-mapped and ours alone.
        unsafe {
            (vmcs as *mut u32).write_volatile(caps.revision_id());
            core::ptr::write_bytes(io_bitmaps as *mut u8, 0xFF, 2 * 4096);
            core::ptr::write_bytes(msr_bitmap as *mut u8, 0xFF, 4096);
        }
        // SAFETY: VMX operation is on; `vmcs` is a VMCS region with this CPU's revision id.
        unsafe { insn::vmclear(vmcs) }.map_err(|e| failed("VMCLEAR", e))?;
        // SAFETY: as above; the region was just cleared.
        unsafe { insn::vmptrld(vmcs) }.map_err(|e| failed("VMPTRLD", e))?;
        // SAFETY: VMPTRLD succeeded, so `vmcs` is current on this CPU.
        let v = unsafe { Vmcs::assume() };

        // VM-execution, exit and entry controls (SDM 25.6-25.8).
        v.write(control::PINBASED_EXEC_CONTROLS, controls.pin as u64)?;
        v.write(control::PRIMARY_PROCBASED_EXEC_CONTROLS, controls.proc1 as u64)?;
        v.write(control::SECONDARY_PROCBASED_EXEC_CONTROLS, controls.proc2 as u64)?;
        v.write(control::VMEXIT_CONTROLS, controls.exit as u64)?;
        v.write(control::VMENTRY_CONTROLS, controls.entry as u64)?;
        v.write(control::EXCEPTION_BITMAP, EXCEPTION_BITMAP)?;
        v.write(control::VIRT_APIC_ADDR_FULL, virtual_apic)?;
        v.write(control::TPR_THRESHOLD, 0)?;
        v.write(control::PAGE_FAULT_ERR_CODE_MASK, 0)?;
        v.write(control::PAGE_FAULT_ERR_CODE_MATCH, 0)?;
        v.write(control::CR3_TARGET_COUNT, 0)?;
        v.write(control::VMEXIT_MSR_STORE_COUNT, 0)?;
        v.write(control::VMEXIT_MSR_LOAD_COUNT, 0)?;
        v.write(control::VMENTRY_MSR_LOAD_COUNT, 0)?;
        v.write(control::VMENTRY_INTERRUPTION_INFO_FIELD, 0)?;
        v.write(control::IO_BITMAP_A_ADDR_FULL, io_bitmaps)?;
        v.write(control::IO_BITMAP_B_ADDR_FULL, io_bitmaps + 4096)?;
        if controls.proc1 & proc1::USE_MSR_BITMAPS != 0 {
            v.write(control::MSR_BITMAPS_ADDR_FULL, msr_bitmap)?;
        }
        v.write(control::EPTP_FULL, ept_root | EPTP_WB_4LEVEL)?;
        v.write(control::VPID, vpid as u64)?;
        if controls.preemption_timer() {
            v.write(guest::VMX_PREEMPTION_TIMER_VALUE, caps.watchdog_ticks() as u64)?;
        }

        // CR0/CR4: the fixed bits applied to what the guest runs with, the guest's own values in
        // the read shadows, and the fixed bits owned by the host (SDM 25.6.6).
        let pe_pg = if controls.unrestricted_guest() { CR0_PE | CR0_PG } else { 0 };
        let cr0_fixed0 = caps.cr0_fixed0 & !pe_pg & !CR0_CD_NW;
        let cr0_mask = (cr0_fixed0 | !caps.cr0_fixed1) & 0xFFFF_FFFF;
        let cr4_mask = (caps.cr4_fixed0 | !caps.cr4_fixed1 | CR4_HIDDEN) & 0xFFFF_FFFF;
        v.write(control::CR0_GUEST_HOST_MASK, cr0_mask)?;
        v.write(control::CR4_GUEST_HOST_MASK, cr4_mask)?;

        // Host state (SDM 26.2.3), loaded on every VM exit.
        let cr4 = read_cr4();
        v.write(host::CR0, read_cr0())?;
        v.write(host::CR3, read_cr3())?;
        v.write(host::CR4, cr4)?;
        let (cs, ss, ds, es, fs, gs, tr): (u16, u16, u16, u16, u16, u16, u16);
        // SAFETY: reading segment selectors and TR has no side effects.
        unsafe {
            core::arch::asm!(
                "mov {0:x}, cs", "mov {1:x}, ss", "mov {2:x}, ds", "mov {3:x}, es",
                "mov {4:x}, fs", "mov {5:x}, gs", "str {6:x}",
                out(reg) cs, out(reg) ss, out(reg) ds, out(reg) es, out(reg) fs, out(reg) gs, out(reg) tr,
                options(nomem, nostack, preserves_flags)
            );
        }
        // Host selectors must have RPL and TI clear (SDM 26.2.3); Basalt's all do.
        v.write(host::CS_SELECTOR, (cs & !7) as u64)?;
        v.write(host::SS_SELECTOR, (ss & !7) as u64)?;
        v.write(host::DS_SELECTOR, (ds & !7) as u64)?;
        v.write(host::ES_SELECTOR, (es & !7) as u64)?;
        v.write(host::FS_SELECTOR, (fs & !7) as u64)?;
        v.write(host::GS_SELECTOR, (gs & !7) as u64)?;
        v.write(host::TR_SELECTOR, (tr & !7) as u64)?;
        let gdt = x86_64::instructions::tables::sgdt();
        let idt = x86_64::instructions::tables::sidt();
        v.write(host::GDTR_BASE, gdt.base.as_u64())?;
        v.write(host::IDTR_BASE, idt.base.as_u64())?;
        // SAFETY: TR holds this CPU's TSS selector, whose descriptor is in the loaded GDT.
        v.write(host::TR_BASE, unsafe { tss_base(gdt.base.as_u64(), tr) })?;
        // SAFETY: these architectural MSRs exist on every CPU with VMX.
        let (fs_base, gs_base, sysenter_cs, sysenter_esp, sysenter_eip, efer) = unsafe {
            (
                rdmsr(IA32_FS_BASE),
                rdmsr(IA32_GS_BASE),
                rdmsr(IA32_SYSENTER_CS),
                rdmsr(IA32_SYSENTER_ESP),
                rdmsr(IA32_SYSENTER_EIP),
                rdmsr(IA32_EFER),
            )
        };
        v.write(host::FS_BASE, fs_base)?;
        v.write(host::GS_BASE, gs_base)?;
        v.write(host::IA32_SYSENTER_CS, sysenter_cs)?;
        v.write(host::IA32_SYSENTER_ESP, sysenter_esp)?;
        v.write(host::IA32_SYSENTER_EIP, sysenter_eip)?;
        v.write(host::IA32_EFER_FULL, efer)?;
        v.write(host::RIP, switch::exit_stub())?;

        write_guest_state(&v, &caps, cr0_fixed0, init)?;

        flush_all_contexts(&caps);
        Ok(VmxVcpu {
            vmcs,
            gprs: init.gprs,
            launched: false,
            controls,
            caps,
            cr0_forced: cr0_fixed0,
            vectoring: (0, 0, 0),
            qualification: 0,
            mitigations,
            switch_flags: mitigations.switch_flags(),
            guest_spec_ctrl: 0,
        })
    }

    /// The value of general-purpose register `index` (SDM Table 28-3 numbering; RSP is in the VMCS).
    fn gpr(&self, v: &Vmcs, index: u8) -> u64 {
        let g = &self.gprs;
        match index {
            0 => g.rax,
            1 => g.rcx,
            2 => g.rdx,
            3 => g.rbx,
            4 => v.read(guest::RSP),
            5 => g.rbp,
            6 => g.rsi,
            7 => g.rdi,
            8 => g.r8,
            9 => g.r9,
            10 => g.r10,
            11 => g.r11,
            12 => g.r12,
            13 => g.r13,
            14 => g.r14,
            _ => g.r15,
        }
    }

    /// Turn primary processor-based control `bit` on or off in the VMCS.
    fn set_proc1(&mut self, bit: u32, on: bool) {
        let v = self.current();
        if on {
            self.controls.proc1 |= bit;
        } else {
            self.controls.proc1 &= !bit;
        }
        let _ = v.write(control::PRIMARY_PROCBASED_EXEC_CONTROLS, self.controls.proc1 as u64);
    }

    /// Make this vCPU's VMCS current (another vCPU on this CPU may have loaded its own).
    fn current(&self) -> Vmcs {
        // SAFETY: VMX operation is on (the vCPU was created on this CPU, see the module doc).
        let now = unsafe { insn::vmptrst() }.unwrap_or(!0);
        if now != self.vmcs {
            // SAFETY: `self.vmcs` is this vCPU's VMCS, initialised and only used on this CPU.
            // A failure leaves no VMCS current; the next entry reports VMfailInvalid.
            let _ = unsafe { insn::vmptrld(self.vmcs) };
        }
        // SAFETY: the VMCS was made current just above.
        unsafe { Vmcs::assume() }
    }

    /// The guest state VM entry checks, read back from the VMCS.
    fn guest_state(&self, v: &Vmcs) -> GuestState {
        GuestState {
            cr0: v.read(guest::CR0),
            cr4: v.read(guest::CR4),
            efer: v.read(guest::IA32_EFER_FULL),
            rflags: v.read(guest::RFLAGS),
            rip: v.read(guest::RIP),
            cs: v.read_segment(seg::CS),
            ss: v.read_segment(seg::SS),
            ds: v.read_segment(seg::DS),
            es: v.read_segment(seg::ES),
            fs: v.read_segment(seg::FS),
            gs: v.read_segment(seg::GS),
            tr: v.read_segment(seg::TR),
            ldtr: v.read_segment(seg::LDTR),
            gdtr_limit: v.read(guest::GDTR_LIMIT) as u32,
            idtr_limit: v.read(guest::IDTR_LIMIT) as u32,
            interruptibility: v.read(guest::INTERRUPTIBILITY_STATE) as u32,
            activity: v.read(guest::ACTIVITY_STATE) as u32,
            link_pointer: v.read(guest::LINK_PTR_FULL),
            ia32e_guest: v.read(control::VMENTRY_CONTROLS) as u32 & caps::entry::IA32E_MODE_GUEST != 0,
            unrestricted_guest: self.controls.unrestricted_guest(),
            load_efer: v.read(control::VMENTRY_CONTROLS) as u32 & caps::entry::LOAD_IA32_EFER != 0,
            cr0_fixed0: self.caps.cr0_fixed0,
            cr0_fixed1: self.caps.cr0_fixed1,
            cr4_fixed0: self.caps.cr4_fixed0,
            cr4_fixed1: self.caps.cr4_fixed1,
        }
    }
}

/// Move the guest's RIP forward by `len`, clearing blocking by STI and MOV SS.
fn advance(v: &Vmcs, len: u64) {
    let rip = v.read(guest::RIP).wrapping_add(len);
    let _ = v.write(guest::RIP, rip);
    let blocking = v.read(guest::INTERRUPTIBILITY_STATE);
    if blocking & BLOCKING_STI_MOVSS != 0 {
        let _ = v.write(guest::INTERRUPTIBILITY_STATE, blocking & !BLOCKING_STI_MOVSS);
    }
}

impl Drop for VmxVcpu {
    /// VMCLEAR before the VMCS page goes back to the allocator: the CPU may cache a current or
    /// launched VMCS and write it back to memory at any time until it is cleared (SDM 25.11.1),
    /// which would corrupt whatever the page holds next.
    fn drop(&mut self) {
        // SAFETY: VMX operation is on (this vCPU exists only on a CPU where it is) and `vmcs`
        // is this vCPU's VMCS region.
        let _ = unsafe { insn::vmclear(self.vmcs) };
    }
}

impl VirtualCpu for VmxVcpu {
    fn run(&mut self) -> VmExit {
        let v = self.current();
        let spec_ctrl = self.mitigations.spec_ctrl.filter(|h| h.value != self.guest_spec_ctrl);
        if let Some(_host) = spec_ctrl {
            // SAFETY: `supported_here` kept `spec_ctrl` only where the MSR exists, and
            // `set_spec_ctrl` took only its writable bits. Host code until the entry runs with
            // the guest's bits, which only restrict speculation further.
            unsafe { spec::write_spec_ctrl(self.guest_spec_ctrl) };
        }
        if self.mitigations.l1d_flush {
            spec::flush_l1d();
        }
        // SAFETY: VMX is on, our VMCS is current with host state pointing HOST_RIP at the exit
        // stub (set in `new`), and `launched` tracks its launch state; VERW and the RSB fill
        // need nothing from the CPU.
        let entry = unsafe { switch::enter(&mut self.gprs, self.launched, self.switch_flags) };
        if let Some(host) = spec_ctrl {
            // SAFETY: as above; Basalt's own value, read from the MSR at boot.
            unsafe { spec::write_spec_ctrl(host.value) };
        }
        match entry {
            switch::Entry::FailValid => {
                let code = v.read(ro::VM_INSTRUCTION_ERROR);
                return VmExit::EntryFailed(EntryFailure { code, reason: exit::instruction_error(code) });
            }
            switch::Entry::FailInvalid => {
                return VmExit::EntryFailed(EntryFailure {
                    code: 0,
                    reason: "VMLAUNCH/VMRESUME failed with no current VMCS (VMfailInvalid)",
                });
            }
            switch::Entry::Exited => {}
        }
        let reason = v.read(ro::EXIT_REASON) as u32;
        if reason & exit::EXIT_REASON_ENTRY_FAILURE != 0 {
            let failure = exit::decode(&ExitInfo { reason, ..ExitInfo::default() });
            if reason & 0xFFFF == exit::reason::INVALID_GUEST_STATE {
                if let Some(rule) = check::check_guest_state(&self.guest_state(&v)) {
                    return VmExit::EntryFailed(EntryFailure {
                        code: exit::reason::INVALID_GUEST_STATE as u64,
                        reason: rule,
                    });
                }
            }
            return failure;
        }
        self.launched = true;
        let basic = reason & 0xFFFF;
        let qualification = v.read(ro::EXIT_QUALIFICATION);
        self.qualification = qualification;
        let info = ExitInfo {
            reason,
            qualification,
            guest_physical: if basic == exit::reason::EPT_VIOLATION {
                v.read(ro::GUEST_PHYSICAL_ADDR_FULL)
            } else {
                0
            },
            interruption_info: v.read(ro::VMEXIT_INTERRUPTION_INFO) as u32,
            interruption_error: v.read(ro::VMEXIT_INTERRUPTION_ERR_CODE) as u32,
            rcx: self.gprs.rcx,
            rax: self.gprs.rax,
            rdx: self.gprs.rdx,
            cr_source: match exit::mov_to_cr(qualification) {
                Some((_, gpr)) if basic == exit::reason::CR_ACCESS => self.gpr(&v, gpr),
                _ => 0,
            },
        };
        // An event whose delivery the exit interrupted (SDM 28.2.4): the VM core queues it
        // again. The entry that delivered what was injected cleared the entry field itself.
        let vectoring = v.read(ro::IDT_VECTORING_INFO) as u32;
        self.vectoring = if vectoring & intr::VALID != 0 {
            (vectoring, v.read(ro::IDT_VECTORING_ERR_CODE) as u32, v.read(ro::VMEXIT_INSTRUCTION_LEN) as u32)
        } else {
            (0, 0, 0)
        };
        let decoded = exit::decode(&info);
        match decoded {
            VmExit::ExternalInterrupt | VmExit::Nmi if info.interruption_info & intr::VALID != 0 => {
                // Acknowledged on exit (or an NMI that exited): nobody else sees it unless the
                // host's handler runs now.
                // SAFETY: the host IDT has a handler for every vector its APIC delivers (and NMI).
                unsafe { switch::deliver_to_host((info.interruption_info & intr::VECTOR_MASK) as u8) };
            }
            // A new slice: the saved timer value ran out.
            VmExit::Preempted if self.controls.saves_preemption_timer() => {
                let _ = v.write(guest::VMX_PREEMPTION_TIMER_VALUE, self.caps.watchdog_ticks() as u64);
            }
            _ => {}
        }
        decoded
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
        let v = self.current();
        let len = v.read(ro::VMEXIT_INSTRUCTION_LEN);
        advance(&v, len);
        true
    }

    fn advance_rip(&mut self, len: u64) {
        advance(&self.current(), len);
    }

    fn inject(&mut self, event: Event) {
        let v = self.current();
        let (info, error_code, len) = exit::encode_event(event);
        if let Some(code) = error_code {
            let _ = v.write(control::VMENTRY_EXCEPTION_ERR_CODE, code as u64);
        }
        if len != 0 {
            let _ = v.write(control::VMENTRY_INSTRUCTION_LEN, len as u64);
        }
        let _ = v.write(control::VMENTRY_INTERRUPTION_INFO_FIELD, info as u64);
    }

    fn interrupted_event(&self) -> Option<InterruptedEvent> {
        let (info, error, len) = self.vectoring;
        exit::interrupted_event(info, error, len)
    }

    fn efer(&self) -> u64 {
        self.current().read(guest::IA32_EFER_FULL)
    }

    fn set_efer(&mut self, value: u64) {
        let _ = self.current().write(guest::IA32_EFER_FULL, value);
    }

    fn set_cr(&mut self, cr: u8, value: u64) {
        let v = self.current();
        let (field, shadow, forced, allowed) = match cr {
            0 => (guest::CR0, control::CR0_READ_SHADOW, self.cr0_forced, self.caps.cr0_fixed1),
            4 => {
                (guest::CR4, control::CR4_READ_SHADOW, self.caps.cr4_fixed0 | CR4_VMXE, self.caps.cr4_fixed1)
            }
            _ => return,
        };
        let _ = v.write(shadow, value);
        let _ = v.write(field, (value | forced) & allowed);
    }

    fn set_tsc_offset(&mut self, offset: u64) {
        let _ = self.current().write(control::TSC_OFFSET_FULL, offset);
    }

    fn rsp(&self) -> u64 {
        self.current().read(guest::RSP)
    }
    fn set_rsp(&mut self, value: u64) {
        let _ = self.current().write(guest::RSP, value);
    }
    fn rip(&self) -> u64 {
        self.current().read(guest::RIP)
    }
    fn set_rip(&mut self, value: u64) {
        let _ = self.current().write(guest::RIP, value);
    }
    fn rflags(&self) -> u64 {
        self.current().read(guest::RFLAGS)
    }
    fn set_rflags(&mut self, value: u64) {
        let _ = self.current().write(guest::RFLAGS, value);
    }
    fn segment_base(&self, seg: u8) -> u64 {
        let field =
            [guest::ES_BASE, guest::CS_BASE, guest::SS_BASE, guest::DS_BASE, guest::FS_BASE, guest::GS_BASE];
        field.get(seg as usize).map_or(0, |&f| self.current().read(f))
    }
    fn guest_msr(&self, m: u32) -> Option<u64> {
        use crate::virt::msr::*;
        let field = match m {
            FS_BASE => guest::FS_BASE,
            GS_BASE => guest::GS_BASE,
            SYSENTER_CS => guest::IA32_SYSENTER_CS,
            SYSENTER_ESP => guest::IA32_SYSENTER_ESP,
            SYSENTER_EIP => guest::IA32_SYSENTER_EIP,
            // Not in the VMCS: live in the CPU while the guest runs (hoststate switches them).
            _ => return crate::hoststate::live_msr(m),
        };
        Some(self.current().read(field))
    }

    fn set_guest_msr(&mut self, m: u32, value: u64) -> bool {
        use crate::virt::msr::*;
        let field = match m {
            FS_BASE => guest::FS_BASE,
            GS_BASE => guest::GS_BASE,
            SYSENTER_CS => guest::IA32_SYSENTER_CS,
            SYSENTER_ESP => guest::IA32_SYSENTER_ESP,
            SYSENTER_EIP => guest::IA32_SYSENTER_EIP,
            _ => return crate::hoststate::set_live_msr(m, value),
        };
        self.current().write(field, value).is_ok()
    }

    fn set_cr2(&mut self, value: u64) {
        // SAFETY: the guest's CR2 is the live one while its vCPU owns this CPU (hoststate
        // switches it at VM start and end); writing it has no other effect.
        unsafe { core::arch::asm!("mov cr2, {}", in(reg) value, options(nomem, nostack, preserves_flags)) };
    }

    fn reflect_debug_status(&mut self) {
        // A #DB that exits leaves DR6 as it was (SDM 27.1); the guest's DR6 is the live one.
        let bits = self.qualification & DR6_EXIT_BITS;
        let dr6: u64;
        // SAFETY: DR6 is this vCPU's own while it owns the CPU (hoststate switches it at VM
        // start and end); reading and writing it has no other effect.
        unsafe {
            core::arch::asm!("mov {}, dr6", out(reg) dr6, options(nomem, nostack, preserves_flags));
            core::arch::asm!("mov dr6, {}", in(reg) (dr6 & !0xF) | bits, options(nomem, nostack, preserves_flags));
        }
    }

    fn interruptible(&self) -> bool {
        let v = self.current();
        v.read(guest::RFLAGS) & RFLAGS_IF != 0
            && v.read(guest::INTERRUPTIBILITY_STATE) & BLOCKING_STI_MOVSS == 0
    }

    fn request_interrupt_window(&mut self, on: bool) {
        self.set_proc1(proc1::INTERRUPT_WINDOW_EXITING, on);
    }

    fn flush_guest_tlb(&mut self) {
        // All contexts: simple, and rare (a test device's unmap); Basalt's own mappings are not
        // EPT-tagged, so nothing of the host is lost.
        flush_all_contexts(&self.caps);
    }

    fn nmi_blocked(&self) -> bool {
        self.current().read(guest::INTERRUPTIBILITY_STATE) & (BLOCKING_STI_MOVSS | BLOCKING_NMI) != 0
    }

    fn request_nmi_window(&mut self, on: bool) {
        // NMI-window exiting exists only with virtual NMIs (SDM 25.6.2), which `compute_controls`
        // takes where the CPU has them; without, the NMI waits for the next exit.
        if self.controls.pin & caps::pin::VIRTUAL_NMIS != 0 {
            self.set_proc1(proc1::NMI_WINDOW_EXITING, on);
        }
    }

    fn load_state(&mut self, init: &InitialState) {
        let v = self.current();
        // A VMCS field the CPU refuses leaves the state invalid; the next entry reports it.
        let _ = write_guest_state(&v, &self.caps, self.cr0_forced, init);
        self.gprs = init.gprs;
    }

    fn summary(&self) -> StateSummary {
        let v = self.current();
        let cr0_mask = v.read(control::CR0_GUEST_HOST_MASK);
        let cr4_mask = v.read(control::CR4_GUEST_HOST_MASK);
        let cs_ar = v.read(guest::CS_ACCESS_RIGHTS) as u32;
        // VMX access rights: L in bit 13, D/B in bit 14 (SDM Table 25-2); code_bits takes the
        // SVM packing (bits 9 and 10).
        let cs_attrib = ((cs_ar >> 4) & 0x600) as u16;
        let efer = v.read(guest::IA32_EFER_FULL);
        let cr0 = v.read(guest::CR0);
        StateSummary {
            rip: v.read(guest::RIP),
            // SS.DPL is the CPL (SDM 25.4.1).
            cpl: ((v.read(guest::SS_ACCESS_RIGHTS) >> 5) & 3) as u8,
            cs_base: v.read(guest::CS_BASE),
            code_bits: crate::virt::code_bits(cr0, efer, cs_attrib),
            rsp: v.read(guest::RSP),
            rflags: v.read(guest::RFLAGS),
            cr0: v.read(guest::CR0) & !cr0_mask | v.read(control::CR0_READ_SHADOW) & cr0_mask,
            cr3: v.read(guest::CR3),
            cr4: v.read(guest::CR4) & !cr4_mask | v.read(control::CR4_READ_SHADOW) & cr4_mask,
            efer: v.read(guest::IA32_EFER_FULL),
            cs: v.read(guest::CS_SELECTOR) as u16,
        }
    }
}
