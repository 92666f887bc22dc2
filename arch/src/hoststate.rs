//! The registers a guest can write that neither VMX nor SVM switches for Basalt, and the check
//! that Basalt's own registers are the same after a VM as before it.
//!
//! Under partitioning a pCPU changes vCPU only when a VM starts or ends, and Basalt is
//! soft-float and never uses DR0-DR3, SYSCALL, SWAPGS or RDTSCP. So a guest's x87/SSE state,
//! DR0-DR3, DR6, CR2, KERNEL_GS_BASE, the SYSCALL MSRs and TSC_AUX stay live in the hardware
//! while its vCPU owns the CPU (zero cost per exit), are set to their reset values when the VM
//! starts ([`GuestVisible::reset`]) and scrubbed again when it ends, before Basalt's own values
//! come back ([`Switched::restore`]). Everything else Basalt relies on (CR0, CR3, CR4, EFER,
//! DR7, XCR0, the TPR, FS/GS bases, PAT) the hardware switches or the guest cannot reach; a
//! [`Snapshot`] taken before and after each VM proves it.

use crate::io::{rdmsr, wrmsr};
use alloc::vec::Vec;

const IA32_PAT: u32 = 0x277;
const IA32_EFER: u32 = 0xC000_0080;
const STAR: u32 = 0xC000_0081;
const LSTAR: u32 = 0xC000_0082;
const CSTAR: u32 = 0xC000_0083;
const SFMASK: u32 = 0xC000_0084;
const FS_BASE: u32 = 0xC000_0100;
const GS_BASE: u32 = 0xC000_0101;
const KERNEL_GS_BASE: u32 = 0xC000_0102;
const TSC_AUX: u32 = 0xC000_0103;
/// The MSRs a guest can reach (SWAPGS, RDTSCP, or natively on VMX) that no VM exit restores.
const SWITCHED_MSRS: [u32; 6] = [STAR, LSTAR, CSTAR, SFMASK, KERNEL_GS_BASE, TSC_AUX];
/// DR6 at reset (SDM 18.2.3).
pub const DR6_RESET: u64 = 0xFFFF_0FF0;
/// CR0.MP, EM, TS; CR4.OSFXSR, OSXMMEXCPT, OSXSAVE.
const CR0_MP: u64 = 1 << 1;
const CR0_EM: u64 = 1 << 2;
const CR0_TS: u64 = 1 << 3;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const CR4_OSXSAVE: u64 = 1 << 18;
/// XCR0 at reset: x87 only. Basalt keeps it so (guests cannot write it: XSETBV exits).
pub const XCR0_RESET: u64 = 1;

/// The XSAVE state components Basalt offers guests and scrubs between them: x87, SSE, AVX and
/// AVX-512 (opmask, ZMM_Hi256, Hi16_ZMM), where the CPU has them (SDM Vol. 1 13.1).
pub const XCR0_OFFERED: u64 = 0xE7;

/// An XSAVE image in the standard format (SDM Vol. 1 13.4): the legacy region with MXCSR at its
/// reset value and an all-zero header, so XRSTOR puts every component in RFBM into its initial
/// configuration. 4 KiB covers x87 to AVX-512 (2688 bytes); nothing else is ever enabled.
#[repr(C, align(64))]
struct XsaveArea([u8; 4096]);

static INIT_XSAVE: XsaveArea = {
    let mut a = [0u8; 4096];
    a[24] = 0x80;
    a[25] = 0x1F;
    XsaveArea(a)
};

/// The state components this CPU supports that Basalt offers (0 without XSAVE).
pub fn xsave_components() -> u64 {
    if !has_xsave() {
        return 0;
    }
    let d = core::arch::x86_64::__cpuid_count(0xD, 0);
    ((d.edx as u64) << 32 | d.eax as u64) & XCR0_OFFERED
}

fn xsetbv(value: u64) {
    // SAFETY: called only with CR4.OSXSAVE set (`init_this_cpu`) and a value made of
    // supported components with x87 set, which XSETBV accepts; XCR0 changes which register
    // state exists, and Basalt itself is soft-float.
    unsafe {
        core::arch::asm!("xsetbv", in("ecx") 0, in("eax") value as u32, in("edx") (value >> 32) as u32,
                         options(nomem, nostack))
    };
}

/// Make `value` the live XCR0 (a guest's, checked by the VM core against
/// [`xsave_components`]: x87 set, AVX only with SSE, the AVX-512 components together and only
/// with AVX). Basalt needs no XCR0 of its own, so the guest's stays live until the VM ends.
pub fn set_guest_xcr0(value: u64) {
    if read_cr(4) & CR4_OSXSAVE != 0 && value & 1 != 0 && value & !xsave_components() == 0 {
        xsetbv(value);
    }
}

/// Put every offered state component into its initial configuration and XCR0 back to reset.
fn reset_extended_state() {
    let all = xsave_components();
    if all == 0 || read_cr(4) & CR4_OSXSAVE == 0 {
        fxrstor(&RESET_FPU);
        return;
    }
    xsetbv(all);
    // SAFETY: a 64-byte aligned standard-format image whose header is zero (XSTATE_BV = 0,
    // XCOMP_BV = 0) and MXCSR valid; RFBM = the enabled components.
    unsafe {
        core::arch::asm!("xrstor64 [{}]", in(reg) &INIT_XSAVE, in("eax") all as u32, in("edx") (all >> 32) as u32,
                         options(nostack, preserves_flags))
    };
    xsetbv(XCR0_RESET);
}

/// An FXSAVE image (SDM Vol. 1 10.5.1): 512 bytes, 16-byte aligned.
#[repr(C, align(16))]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FxArea(pub [u8; 512]);

/// x87 and SSE state at reset, as FNINIT and the power-on values leave them: FCW 0x037F, every
/// tag empty, MXCSR 0x1F80, every register zero.
static RESET_FPU: FxArea = {
    let mut a = [0u8; 512];
    a[0] = 0x7F;
    a[1] = 0x03;
    a[24] = 0x80;
    a[25] = 0x1F;
    FxArea(a)
};

fn has_rdtscp() -> bool {
    core::arch::x86_64::__cpuid(0x8000_0000).eax >= 0x8000_0001
        && core::arch::x86_64::__cpuid(0x8000_0001).edx & (1 << 27) != 0
}

fn has_xsave() -> bool {
    core::arch::x86_64::__cpuid(1).ecx & (1 << 26) != 0
}

fn read_cr(n: u8) -> u64 {
    let v: u64;
    // SAFETY: reading a control register at CPL 0 has no side effects.
    unsafe {
        match n {
            0 => core::arch::asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)),
            2 => core::arch::asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)),
            3 => core::arch::asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)),
            _ => core::arch::asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)),
        }
    }
    v
}

fn read_dr(n: u8) -> u64 {
    let v: u64;
    // SAFETY: reading a debug register at CPL 0 has no side effects.
    unsafe {
        match n {
            0 => core::arch::asm!("mov {}, dr0", out(reg) v, options(nomem, nostack, preserves_flags)),
            1 => core::arch::asm!("mov {}, dr1", out(reg) v, options(nomem, nostack, preserves_flags)),
            2 => core::arch::asm!("mov {}, dr2", out(reg) v, options(nomem, nostack, preserves_flags)),
            3 => core::arch::asm!("mov {}, dr3", out(reg) v, options(nomem, nostack, preserves_flags)),
            6 => core::arch::asm!("mov {}, dr6", out(reg) v, options(nomem, nostack, preserves_flags)),
            _ => core::arch::asm!("mov {}, dr7", out(reg) v, options(nomem, nostack, preserves_flags)),
        }
    }
    v
}

/// Write DR0-DR3 and DR6. DR7 is left alone: it stays 0x400 in the host (VM exits load it so
/// on both backends), so the addresses written here arm no breakpoint.
fn write_debug(dr: [u64; 4], dr6: u64) {
    // SAFETY: with DR7's enable bits clear these writes arm nothing; they change no memory.
    unsafe {
        core::arch::asm!(
            "mov dr0, {}", "mov dr1, {}", "mov dr2, {}", "mov dr3, {}", "mov dr6, {}",
            in(reg) dr[0], in(reg) dr[1], in(reg) dr[2], in(reg) dr[3], in(reg) dr6,
            options(nomem, nostack, preserves_flags)
        )
    }
}

/// Write DR7 twice, first with LE (bit 8) flipped, then its own value back: no change on a
/// CPU, but QEMU's TCG (7.2) drops the instruction breakpoints it still holds for the guest's
/// DR0-DR3. Its VM exit loads DR7 without updating them, so a breakpoint a guest armed would
/// otherwise fire in the next VM at the same address (`isolation-dbloop` followed by `cpuid`
/// tripped over it once the guests' code moved). A DR7 write that changes more than the enable
/// bits makes QEMU remove and re-arm all four from DR7's value.
fn resync_dr7() {
    let dr7 = read_dr(7);
    // SAFETY: LE (local exact) only slows data breakpoints; neither write enables any
    // breakpoint the host did not already have, and no memory is touched.
    unsafe {
        core::arch::asm!(
            "mov dr7, {flipped}", "mov dr7, {dr7}",
            flipped = in(reg) dr7 ^ (1 << 8), dr7 = in(reg) dr7,
            options(nomem, nostack, preserves_flags)
        )
    }
}

fn write_cr2(v: u64) {
    // SAFETY: CR2 only reports page-fault addresses; writing it changes nothing else.
    unsafe { core::arch::asm!("mov cr2, {}", in(reg) v, options(nomem, nostack, preserves_flags)) }
}

/// XCR0 now (`None` while CR4.OSXSAVE is clear): the guest's while a VM runs on this CPU.
pub fn current_xcr0() -> Option<u64> {
    xcr0()
}

fn xcr0() -> Option<u64> {
    if read_cr(4) & CR4_OSXSAVE == 0 {
        return None;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: CR4.OSXSAVE is set, so XGETBV with ECX = 0 is defined.
    unsafe { core::arch::asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    Some((hi as u64) << 32 | lo as u64)
}

fn fxsave() -> FxArea {
    let mut area = FxArea([0; 512]);
    // SAFETY: `area` is 512 bytes, 16-byte aligned; CR4.OSFXSR is set by `init_this_cpu`.
    unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) &mut area, options(nostack, preserves_flags)) };
    area
}

fn fxrstor(area: &FxArea) {
    // SAFETY: as in `fxsave`; the image's MXCSR has no reserved bit set.
    unsafe { core::arch::asm!("fxrstor64 [{}]", in(reg) area, options(nostack, preserves_flags)) };
}

/// Caches on and x87/SSE usable for the save and restore of guest state, on the calling CPU:
/// CR0.CD and NW clear (firmware that never enabled caches, like Bochs's BIOS, leaves them set,
/// and VMX entry hands the host's CD/NW to every guest, SDM 27.3.2.1); CR0.MP set, EM and TS
/// clear; CR4.OSFXSR and OSXMMEXCPT set; where the CPU has XSAVE, CR4.OSXSAVE set with
/// XCR0 at its reset value (whatever the firmware left). Then the reset x87/SSE state.
/// Basalt itself stays soft-float: the compiler never emits these instructions.
pub fn init_this_cpu() {
    let cr0 = (read_cr(0) | CR0_MP) & !(CR0_EM | CR0_TS | CR0_CD | CR0_NW);
    let mut cr4 = read_cr(4) | CR4_OSFXSR | CR4_OSXMMEXCPT;
    if has_xsave() {
        cr4 |= CR4_OSXSAVE;
    }
    // SAFETY: these bits only enable the FPU/SSE/XSAVE instructions; nothing about memory.
    unsafe {
        core::arch::asm!("mov cr0, {}", in(reg) cr0, options(nomem, nostack, preserves_flags));
        core::arch::asm!("mov cr4, {}", in(reg) cr4, options(nomem, nostack, preserves_flags));
    }
    reset_extended_state();
}

/// The guest's value of one of the MSRs that stay live in the CPU while its vCPU runs
/// (STAR, LSTAR, CSTAR, SFMASK, KERNEL_GS_BASE, TSC_AUX where RDTSCP exists), or `None` for
/// any other MSR.
pub fn live_msr(msr: u32) -> Option<u64> {
    let known = SWITCHED_MSRS.contains(&msr) && (msr != TSC_AUX || has_rdtscp());
    // SAFETY: one of the switched MSRs, which exist on every x86_64 CPU (TSC_AUX checked).
    known.then(|| unsafe { rdmsr(msr) })
}

/// Set one of the MSRs of [`live_msr`] for the guest (its value was checked by the VM core);
/// `false` for any other MSR. Basalt uses none of them, and restores its own when the VM ends.
pub fn set_live_msr(msr: u32, value: u64) -> bool {
    if live_msr(msr).is_none() {
        return false;
    }
    // SAFETY: as in `live_msr`; the VM core refused non-canonical addresses and reserved bits.
    unsafe { wrmsr(msr, value) };
    true
}

/// The state a guest reaches and Basalt switches itself (see the module doc).
pub struct Switched {
    dr: [u64; 4],
    dr6: u64,
    cr2: u64,
    msrs: [(u32, u64); SWITCHED_MSRS.len()],
    msr_count: usize,
}

impl Switched {
    /// Basalt's values, before a VM starts.
    pub fn save() -> Self {
        let mut msrs = [(0, 0); SWITCHED_MSRS.len()];
        let mut msr_count = 0;
        let rdtscp = has_rdtscp();
        for &msr in SWITCHED_MSRS.iter().filter(|&&m| m != TSC_AUX || rdtscp) {
            // SAFETY: the SYSCALL MSRs and KERNEL_GS_BASE exist on every x86_64 CPU, TSC_AUX
            // wherever RDTSCP does (checked).
            msrs[msr_count] = (msr, unsafe { rdmsr(msr) });
            msr_count += 1;
        }
        Switched {
            dr: [read_dr(0), read_dr(1), read_dr(2), read_dr(3)],
            dr6: read_dr(6),
            cr2: read_cr(2),
            msrs,
            msr_count,
        }
    }

    /// Scrub what the guest left and put Basalt's values back, after a VM ends.
    pub fn restore(&self) {
        reset_guest_visible();
        write_debug(self.dr, self.dr6);
        write_cr2(self.cr2);
        for &(msr, value) in &self.msrs[..self.msr_count] {
            // SAFETY: the values were read from the same MSRs on this CPU by `save`.
            unsafe { wrmsr(msr, value) };
        }
    }
}

/// Put everything a guest can reach natively to its reset value: x87, SSE, AVX and AVX-512
/// (XRSTOR of the initial configuration, FXRSTOR without XSAVE), XCR0, DR0-DR3 = 0, DR6, CR2 = 0, KERNEL_GS_BASE, the SYSCALL MSRs and TSC_AUX = 0.
pub fn reset_guest_visible() {
    reset_extended_state();
    resync_dr7();
    write_debug([0; 4], DR6_RESET);
    write_cr2(0);
    let rdtscp = has_rdtscp();
    for &msr in SWITCHED_MSRS.iter().filter(|&&m| m != TSC_AUX || rdtscp) {
        // SAFETY: as in `Switched::save`; zero is the reset value of each and Basalt uses none.
        unsafe { wrmsr(msr, 0) };
    }
}

/// Basalt's own registers that no guest may change (the hardware switches them or the guest
/// cannot reach them), for a before/after comparison around each VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub dr7: u64,
    pub xcr0: Option<u64>,
    pub tpr: u32,
    pub fs_base: u64,
    pub gs_base: u64,
    pub pat: u64,
    /// Whether x87/SSE are at their reset state (Basalt keeps them so between VMs).
    pub fpu_reset: bool,
}

impl Snapshot {
    pub fn take() -> Self {
        // SAFETY: EFER, FS/GS base and PAT exist on every x86_64 CPU.
        let (efer, fs_base, gs_base, pat) =
            unsafe { (rdmsr(IA32_EFER), rdmsr(FS_BASE), rdmsr(GS_BASE), rdmsr(IA32_PAT)) };
        let fpu = fxsave();
        Snapshot {
            cr0: read_cr(0),
            cr3: read_cr(3),
            cr4: read_cr(4),
            efer,
            dr7: read_dr(7),
            xcr0: xcr0(),
            tpr: crate::apic::read(0x80),
            fs_base,
            gs_base,
            pat,
            fpu_reset: same_fpu(&fpu, &RESET_FPU),
        }
    }

    /// The registers that differ between `self` (before) and `after`, with both values.
    pub fn differences(&self, after: &Snapshot) -> Vec<alloc::string::String> {
        use alloc::format;
        let mut out = Vec::new();
        let mut cmp = |name: &str, a: u64, b: u64| {
            if a != b {
                out.push(format!("{name} {a:#x} -> {b:#x}"));
            }
        };
        cmp("CR0", self.cr0, after.cr0);
        cmp("CR3", self.cr3, after.cr3);
        cmp("CR4", self.cr4, after.cr4);
        cmp("EFER", self.efer, after.efer);
        cmp("DR7", self.dr7, after.dr7);
        cmp("XCR0", self.xcr0.unwrap_or(0), after.xcr0.unwrap_or(0));
        cmp("TPR", self.tpr as u64, after.tpr as u64);
        cmp("FS base", self.fs_base, after.fs_base);
        cmp("GS base", self.gs_base, after.gs_base);
        cmp("PAT", self.pat, after.pat);
        cmp("x87/SSE at reset", self.fpu_reset as u64, after.fpu_reset as u64);
        out
    }
}

/// Whether two FXSAVE images hold the same x87/SSE state (FCW..MXCSR, ST0-7, XMM0-15; the
/// MXCSR_MASK and the reserved and available bytes do not count).
fn same_fpu(a: &FxArea, b: &FxArea) -> bool {
    a.0[..28] == b.0[..28] && a.0[32..416] == b.0[32..416]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_image_is_fninit_state() {
        assert_eq!(u16::from_le_bytes([RESET_FPU.0[0], RESET_FPU.0[1]]), 0x037F, "FCW");
        assert_eq!(RESET_FPU.0[4], 0, "abridged tag word: all empty");
        assert_eq!(u32::from_le_bytes(RESET_FPU.0[24..28].try_into().unwrap()), 0x1F80, "MXCSR");
        assert!(RESET_FPU.0[32..416].iter().all(|&b| b == 0), "ST0-7 and XMM0-15 zero");
    }

    #[test]
    fn fpu_comparison_ignores_mxcsr_mask_and_spare_bytes() {
        let mut a = RESET_FPU;
        a.0[28] = 0xFF; // MXCSR_MASK as FXSAVE writes it
        a.0[500] = 1;
        assert!(same_fpu(&a, &RESET_FPU));
        a.0[160] = 0x42; // XMM0
        assert!(!same_fpu(&a, &RESET_FPU));
    }

    #[test]
    fn differences_name_each_register() {
        let s = Snapshot {
            cr0: 0x8000_0033,
            cr3: 0x1000,
            cr4: 0x620,
            efer: 0xD00,
            dr7: 0x400,
            xcr0: Some(1),
            tpr: 0,
            fs_base: 0,
            gs_base: 0x5000,
            pat: 0x0007_0406_0007_0406,
            fpu_reset: true,
        };
        assert!(s.differences(&s).is_empty());
        let after = Snapshot { tpr: 0xF0, xcr0: Some(7), fpu_reset: false, ..s };
        assert_eq!(
            s.differences(&after),
            ["XCR0 0x1 -> 0x7", "TPR 0x0 -> 0xf0", "x87/SSE at reset 0x1 -> 0x0"]
        );
    }
}
