//! Speculative-execution mitigations, decided once at boot from what the CPU reports (vendor,
//! family, model, CPUID, IA32_ARCH_CAPABILITIES) and from the APIC IDs of the CPUs that are
//! really online, never from a firmware flag. Pure, so every decision is host-tested over a
//! table of real CPU profiles.
//!
//! Which CPUs are affected follows the Linux kernel's arch/x86/kernel/cpu/common.c
//! (`cpu_vuln_whitelist`, `cpu_set_bug_bits`) and bugs.c; the bits are the SDM's (Vol. 4
//! Table 2-2 IA32_ARCH_CAPABILITIES, Vol. 2A CPUID leaf 7) and the APM's (Vol. 3 E.4.7).

use alloc::vec::Vec;
use basalt_arch::cpu::Vendor;
use basalt_arch::spec::{arch_cap, ext8, leaf7, EntryMitigations, SpecCtrlHost, SpecFeatures};
use core::sync::atomic::{AtomicU32, Ordering};
use spin::{Mutex, Once};

/// What Basalt knows about the boot CPU and its siblings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuProfile {
    pub vendor: Vendor,
    /// Family and model as CPUID.1 reports them with the extended fields folded in.
    pub family: u8,
    pub model: u8,
    pub spec: SpecFeatures,
    /// Some core has more than one of its logical processors online (from their APIC IDs).
    pub smt_siblings_online: bool,
}

/// The command-line switches (`mitigations=off`, `no_mitigation=<list>`, `smt_sharing=allow`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Switches {
    /// `mitigations=off`: every mitigation off (measurements only).
    pub all_off: bool,
    pub no_l1d_flush: bool,
    pub no_verw: bool,
    pub no_ibpb: bool,
    pub no_spec_ctrl: bool,
    pub no_rsb_fill: bool,
    /// `smt_sharing=allow`: VMs may run on SMT siblings of one core at the same time.
    pub smt_sharing: bool,
}

/// The names `no_mitigation=` takes, comma-separated.
pub const MITIGATION_NAMES: [&str; 5] = ["l1d_flush", "verw", "ibpb", "spec_ctrl", "rsb_fill"];

impl Switches {
    /// From the values of `mitigations=`, `no_mitigation=` and `smt_sharing=`. Returns the
    /// switches and the first unknown word, if any.
    pub fn parse(
        mitigations: Option<&str>,
        no: Option<&str>,
        smt: Option<&str>,
    ) -> (Switches, Option<&'static str>) {
        let mut s = Switches { all_off: mitigations == Some("off"), ..Default::default() };
        let mut unknown = None;
        if mitigations.is_some_and(|m| m != "off" && m != "auto") {
            unknown = Some("mitigations= takes off or auto");
        }
        for word in no.unwrap_or("").split(',').filter(|w| !w.is_empty()) {
            match word {
                "l1d_flush" => s.no_l1d_flush = true,
                "verw" => s.no_verw = true,
                "ibpb" => s.no_ibpb = true,
                "spec_ctrl" => s.no_spec_ctrl = true,
                "rsb_fill" => s.no_rsb_fill = true,
                _ => unknown = Some("no_mitigation= takes l1d_flush, verw, ibpb, spec_ctrl, rsb_fill"),
            }
        }
        match smt {
            Some("allow") => s.smt_sharing = true,
            Some("deny") | None => {}
            Some(_) => unknown = Some("smt_sharing= takes allow or deny"),
        }
        (s, unknown)
    }
}

/// Whether one mitigation is applied, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub on: bool,
    pub reason: &'static str,
}

const fn on(reason: &'static str) -> Decision {
    Decision { on: true, reason }
}
const fn off(reason: &'static str) -> Decision {
    Decision { on: false, reason }
}

/// What the CPU is affected by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Affected {
    /// Rogue Data Cache Load (Meltdown), the root of L1TF.
    pub meltdown: bool,
    /// L1 Terminal Fault (Foreshadow-NG: a guest reads the L1D through a non-present PTE).
    pub l1tf: bool,
    /// Microarchitectural Data Sampling.
    pub mds: bool,
    /// TSX Asynchronous Abort.
    pub taa: bool,
    /// Branch Target Injection and its return-stack variants.
    pub spectre_v2: bool,
}

/// Every decision, for the boot lines and the vCPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decisions {
    pub affected: Affected,
    pub l1d_flush: Decision,
    pub verw: Decision,
    pub ibpb: Decision,
    pub spec_ctrl: Decision,
    pub rsb_fill: Decision,
    /// Whether two VMs may run on SMT siblings of one core at the same time.
    pub smt_sharing: Decision,
    /// A warning about what the decisions leave open, if any.
    pub warning: Option<&'static str>,
}

/// Intel family 6 models, as Linux's intel-family.h names them.
mod intel {
    pub const CORE_YONAH: u8 = 0x0E;
    pub const ATOM_BONNELL: u8 = 0x1C;
    pub const ATOM_BONNELL_MID: u8 = 0x26;
    pub const ATOM_SALTWELL_MID: u8 = 0x27;
    pub const ATOM_SALTWELL_TABLET: u8 = 0x35;
    pub const ATOM_SALTWELL: u8 = 0x36;
    pub const ATOM_SILVERMONT: u8 = 0x37;
    pub const ATOM_SILVERMONT_MID: u8 = 0x4A;
    pub const ATOM_AIRMONT: u8 = 0x4C;
    pub const ATOM_SILVERMONT_D: u8 = 0x4D;
    pub const XEON_PHI_KNL: u8 = 0x57;
    pub const ATOM_AIRMONT_MID: u8 = 0x5A;
    pub const ATOM_GOLDMONT: u8 = 0x5C;
    pub const ATOM_GOLDMONT_D: u8 = 0x5F;
    pub const ATOM_AIRMONT_NP: u8 = 0x75;
    pub const ATOM_GOLDMONT_PLUS: u8 = 0x7A;
    pub const XEON_PHI_KNM: u8 = 0x85;
}

/// Bits of Linux's `cpu_vuln_whitelist` that matter here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Whitelist {
    no_speculation: bool,
    no_meltdown: bool,
    no_l1tf: bool,
    no_mds: bool,
}

fn whitelist(vendor: Vendor, family: u8, model: u8) -> Whitelist {
    use intel::*;
    let none = Whitelist::default();
    let no_spec = Whitelist { no_speculation: true, no_meltdown: true, no_l1tf: true, no_mds: true };
    match vendor {
        // In-order CPUs: family 4 and 5, and the first Atoms.
        _ if family <= 5 => no_spec,
        Vendor::Intel if family == 6 => match model {
            ATOM_SALTWELL | ATOM_SALTWELL_TABLET | ATOM_SALTWELL_MID | ATOM_BONNELL | ATOM_BONNELL_MID => {
                no_spec
            }
            // Silvermont, Airmont and Xeon Phi: no L1TF; MDS only through the store buffer.
            ATOM_SILVERMONT | ATOM_SILVERMONT_D | ATOM_SILVERMONT_MID | ATOM_AIRMONT | XEON_PHI_KNL
            | XEON_PHI_KNM | ATOM_AIRMONT_MID | ATOM_AIRMONT_NP => Whitelist { no_l1tf: true, ..none },
            ATOM_GOLDMONT | ATOM_GOLDMONT_D | ATOM_GOLDMONT_PLUS => {
                Whitelist { no_l1tf: true, no_mds: true, ..none }
            }
            CORE_YONAH => none,
            _ => none,
        },
        // Every AMD CPU: no Meltdown, hence no L1TF; no MDS.
        Vendor::Amd => Whitelist { no_meltdown: true, no_l1tf: true, no_mds: true, ..none },
        _ => none,
    }
}

/// What `profile` is affected by (Linux `cpu_set_bug_bits`).
pub fn affected(p: &CpuProfile) -> Affected {
    let w = whitelist(p.vendor, p.family, p.model);
    if w.no_speculation {
        return Affected::default();
    }
    let caps = p.spec.caps();
    let meltdown = !w.no_meltdown && caps & arch_cap::RDCL_NO == 0;
    Affected {
        meltdown,
        l1tf: meltdown && !w.no_l1tf,
        mds: !w.no_mds && caps & arch_cap::MDS_NO == 0,
        taa: p.vendor == Vendor::Intel
            && caps & arch_cap::TAA_NO == 0
            && (p.spec.has_rtm() || caps & arch_cap::TSX_CTRL_MSR != 0),
        spectre_v2: true,
    }
}

/// Decide every mitigation for `p` under `s`.
pub fn decide(p: &CpuProfile, s: &Switches) -> Decisions {
    let a = affected(p);
    let f = &p.spec;
    let caps = f.caps();
    let switched_off = |own: bool| -> Option<Decision> {
        if s.all_off {
            Some(off("mitigations=off on the command line"))
        } else if own {
            Some(off("turned off by no_mitigation= on the command line"))
        } else {
            None
        }
    };

    let l1d_flush = switched_off(s.no_l1d_flush).unwrap_or(if !a.l1tf {
        off(if !a.meltdown { "not affected by L1TF (no Meltdown: vendor, model or ARCH_CAPABILITIES.RDCL_NO)" } else { "not affected by L1TF (this model)" })
    } else if caps & arch_cap::SKIP_L1DFL_VMENTRY != 0 {
        off("affected by L1TF, but ARCH_CAPABILITIES.SKIP_L1DFL_VMENTRY: no flush needed on VM entry")
    } else if !f.has_flush_l1d() {
        on("affected by L1TF: the CPU has no FLUSH_L1D, so a software flush (reading 64 KiB, every line) before every VM entry")
    } else if p.smt_siblings_online {
        on("affected by L1TF: IA32_FLUSH_CMD before every VM entry; SMT siblings are online")
    } else {
        on("affected by L1TF: IA32_FLUSH_CMD before every VM entry; no SMT sibling online")
    });

    let verw = switched_off(s.no_verw).unwrap_or(if !a.mds && !a.taa {
        off("not affected by MDS or TAA (vendor, model or ARCH_CAPABILITIES.MDS_NO/TAA_NO, no TSX)")
    } else if !f.has_md_clear() {
        off("affected by MDS/TAA and NOT MITIGATED: the CPU has no MD_CLEAR (VERW does not clear; a microcode update adds it)")
    } else if l1d_flush.on && f.has_flush_l1d() {
        off("affected by MDS/TAA: the L1D flush before every entry clears the buffers too (MD_CLEAR)")
    } else {
        on("affected by MDS/TAA: VERW as the last memory access before every VM entry (MD_CLEAR)")
    });

    let ibpb = switched_off(s.no_ibpb).unwrap_or(if !a.spectre_v2 {
        off("not affected by Spectre v2 (no speculation)")
    } else if !f.has_ibpb() {
        off("not available: the CPU has no IBPB (CPUID.(7,0):EDX[26], Fn8000_0008_EBX[12])")
    } else {
        on("IA32_PRED_CMD when a CPU starts a vCPU of another VM than the one it ran last")
    });

    let spec_ctrl = switched_off(s.no_spec_ctrl).unwrap_or(if !f.has_spec_ctrl() {
        off("not available: the CPU has no IA32_SPEC_CTRL, guests see none")
    } else {
        on("per vCPU: the guest's value is live only while it runs, Basalt's is restored on every exit")
    });

    let rsb_fill = switched_off(s.no_rsb_fill).unwrap_or(if !a.spectre_v2 {
        off("not affected by Spectre v2 (no speculation)")
    } else {
        on("affected by Spectre v2: 32 RSB entries overwritten after every exit, before Basalt's first RET")
    });

    let smt_sharing = if s.smt_sharing {
        on("smt_sharing=allow: VMs may run on SMT siblings of one core")
    } else {
        off("two VMs never run on SMT siblings of one core at the same time")
    };
    let warning = if s.smt_sharing && (a.l1tf || a.mds) {
        Some("smt_sharing=allow on a CPU affected by L1TF/MDS: a VM can read what a VM on its sibling thread touches")
    } else if p.smt_siblings_online && (a.l1tf || a.mds) && !s.all_off {
        Some("SMT siblings are online on a CPU affected by L1TF/MDS: the flush on entry does not cover a sibling thread (turn SMT off in the firmware for full protection)")
    } else if s.all_off {
        Some("mitigations=off: guests are NOT protected from each other's and Basalt's data through side channels")
    } else {
        None
    };
    Decisions { affected: a, l1d_flush, verw, ibpb, spec_ctrl, rsb_fill, smt_sharing, warning }
}

impl Decisions {
    /// What each vCPU does around its world switch; `host_spec_ctrl` is Basalt's own
    /// IA32_SPEC_CTRL as read at boot.
    pub fn entry(&self, spec: &SpecFeatures, host_spec_ctrl: u64) -> EntryMitigations {
        EntryMitigations {
            l1d_flush: self.l1d_flush.on,
            verw: self.verw.on,
            rsb_fill: self.rsb_fill.on,
            spec_ctrl: self
                .spec_ctrl
                .on
                .then(|| SpecCtrlHost { value: host_spec_ctrl, writable: spec.spec_ctrl_bits() }),
        }
    }
}

/// The IA32_ARCH_CAPABILITIES bits a guest sees: what the CPU is not affected by and how its
/// predictors behave. Bits that enumerate MSRs Basalt does not offer (TSX_CTRL 7, FB_CLEAR_CTRL
/// 18, ...) and SKIP_L1DFL_VMENTRY (3, for a hypervisor the guest cannot be) are hidden.
pub const GUEST_ARCH_CAPS: u64 = arch_cap::RDCL_NO
    | arch_cap::IBRS_ALL
    | arch_cap::RSBA
    | arch_cap::SSB_NO
    | arch_cap::MDS_NO
    | arch_cap::PSCHANGE_MC_NO
    | arch_cap::TAA_NO
    | (1 << 13) // SBDR_SSDP_NO
    | (1 << 14) // FBSDP_NO
    | (1 << 15) // PSDP_NO
    | arch_cap::PBRSB_NO;

/// What a guest sees of the speculation controls, built so that CPUID and the MSRs agree: an
/// MSR is readable or writable exactly where the guest's CPUID advertises it.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuestSpec {
    /// The guest's CPUID.(7,0):EDX speculation bits, Fn8000_0008_EBX speculation bits and
    /// IA32_ARCH_CAPABILITIES.
    pub view: SpecFeatures,
    /// Issue an IBPB for a guest's IA32_PRED_CMD write (where the guest has PRED_CMD).
    pub ibpb: Option<fn()>,
    /// Flush the L1D for a guest's IA32_FLUSH_CMD write (where the guest has FLUSH_CMD).
    pub flush_l1d: Option<fn()>,
}

/// CPUID.(7,0):EDX bits a guest may see, where the host has them.
const GUEST_LEAF7_EDX: u32 = leaf7::EDX_MD_CLEAR | leaf7::EDX_FLUSH_L1D | leaf7::EDX_ARCH_CAPABILITIES;
/// Those that need IA32_SPEC_CTRL virtualized.
const GUEST_LEAF7_EDX_SPEC_CTRL: u32 = leaf7::EDX_SPEC_CTRL | leaf7::EDX_STIBP | leaf7::EDX_SSBD;
/// Fn8000_0008_EBX: IBPB alone (PRED_CMD), and those that need IA32_SPEC_CTRL virtualized.
const GUEST_EXT8_EBX: u32 = ext8::EBX_IBPB;
const GUEST_EXT8_EBX_SPEC_CTRL: u32 = ext8::EBX_IBRS | ext8::EBX_STIBP | ext8::EBX_SSBD;

/// The guest's view of `host` under `d`: the host's bits, less SPEC_CTRL (and Intel's IBPB,
/// which shares its bit) where SPEC_CTRL is not virtualized.
pub fn guest_spec(host: &SpecFeatures, d: &Decisions, ibpb: fn(), flush_l1d: fn()) -> GuestSpec {
    let spec_ctrl = d.spec_ctrl.on;
    let leaf7_mask = GUEST_LEAF7_EDX | if spec_ctrl { GUEST_LEAF7_EDX_SPEC_CTRL } else { 0 };
    let ext8_mask = GUEST_EXT8_EBX | if spec_ctrl { GUEST_EXT8_EBX_SPEC_CTRL } else { 0 };
    let view = SpecFeatures {
        leaf7_ebx: host.leaf7_ebx,
        leaf7_edx: host.leaf7_edx & leaf7_mask,
        ext8_ebx: host.ext8_ebx & ext8_mask,
        arch_caps: host.arch_caps.map(|c| c & GUEST_ARCH_CAPS),
    };
    GuestSpec {
        ibpb: view.has_ibpb().then_some(ibpb),
        flush_l1d: view.has_flush_l1d().then_some(flush_l1d),
        view,
    }
}

/// The speculation-control bits of CPUID.(7,0):EDX and Fn8000_0008_EBX that [`GuestSpec`]
/// decides (every other bit of those words is the CPUID code's business).
pub const LEAF7_EDX_SPEC_BITS: u32 = GUEST_LEAF7_EDX | GUEST_LEAF7_EDX_SPEC_CTRL;
pub const EXT8_EBX_SPEC_BITS: u32 = GUEST_EXT8_EBX | GUEST_EXT8_EBX_SPEC_CTRL | ext8::EBX_VIRT_SSBD;

/// The decisions of this boot, for every VM Basalt builds.
#[derive(Debug, Clone, Copy)]
pub struct Active {
    pub decisions: Decisions,
    /// What each vCPU does around its world switch.
    pub entry: EntryMitigations,
    /// What each guest sees of the speculation controls.
    pub guest: GuestSpec,
    /// The APIC ID bits that number a thread within its core.
    pub smt_bits: u8,
    pub sharing: bool,
}

/// Set once at boot (kernel.rs), read when a VM is built.
pub static ACTIVE: Once<Active> = Once::new();

/// Every CPU in a guest now: its APIC ID and its VM (the placement rule's input).
static RUNNING: Mutex<Vec<(u32, u32)>> = Mutex::new(Vec::new());

/// Where a VM starts on a CPU: the placement rule, and an IBPB when the CPU last ran a vCPU of
/// another VM. `last_vm` is the CPU's record of the VM it ran last (0: none). Returns the
/// placement report, or the sibling that forbids it.
pub fn enter_vm(cpu: u32, vm: u32, last_vm: &AtomicU32) -> Result<Placement, u32> {
    let Some(active) = ACTIVE.get() else { return Ok(Placement { siblings_in_guests: 0, ibpb: false }) };
    let mut running = RUNNING.lock();
    if let Some(sibling) = placement_conflict(cpu, vm, &running, active.smt_bits, active.sharing) {
        return Err(sibling);
    }
    let core = |id: u32| id.checked_shr(active.smt_bits as u32).unwrap_or(0);
    let siblings_in_guests =
        running.iter().filter(|&&(other, _)| other != cpu && core(other) == core(cpu)).count();
    running.retain(|&(other, _)| other != cpu);
    running.push((cpu, vm));
    drop(running);
    let previous = last_vm.swap(vm, Ordering::Relaxed);
    let ibpb = active.decisions.ibpb.on && previous != vm;
    if ibpb {
        basalt_arch::spec::ibpb();
    }
    Ok(Placement { siblings_in_guests, ibpb })
}

/// The CPU `cpu` no longer runs a guest.
pub fn leave_vm(cpu: u32) {
    RUNNING.lock().retain(|&(other, _)| other != cpu);
}

/// What [`enter_vm`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Sibling threads of this CPU's core that are running a guest (of the same VM, or of
    /// another where `smt_sharing=allow`).
    pub siblings_in_guests: usize,
    /// Whether an IBPB was issued.
    pub ibpb: bool,
}

/// Whether any core has two of `apic_ids` (the CPUs online), given that the low `smt_bits`
/// bits of an APIC ID number the thread within its core.
pub fn smt_siblings(apic_ids: &[u32], smt_bits: u8) -> bool {
    sibling_pairs(apic_ids, smt_bits).next().is_some()
}

/// Every pair of `apic_ids` that are threads of one core.
pub fn sibling_pairs(apic_ids: &[u32], smt_bits: u8) -> impl Iterator<Item = (u32, u32)> + '_ {
    let core = move |id: u32| id.checked_shr(smt_bits as u32).unwrap_or(0);
    apic_ids.iter().enumerate().flat_map(move |(i, &a)| {
        apic_ids[i + 1..].iter().filter(move |&&b| core(a) == core(b)).map(move |&b| (a, b))
    })
}

/// The placement rule: a CPU with APIC ID `cpu` may start VM `vm` unless a sibling thread of
/// its core runs another VM (`running`: APIC ID and VM of every CPU in a guest) and sharing
/// is not allowed. Returns the sibling that forbids it.
pub fn placement_conflict(
    cpu: u32,
    vm: u32,
    running: &[(u32, u32)],
    smt_bits: u8,
    sharing: bool,
) -> Option<u32> {
    if sharing {
        return None;
    }
    let core = |id: u32| id.checked_shr(smt_bits as u32).unwrap_or(0);
    running
        .iter()
        .find(|&&(other, other_vm)| other != cpu && core(other) == core(cpu) && other_vm != vm)
        .map(|r| r.0)
}

/// The APIC IDs of `ids` grouped by core, for the boot line: "0+1, 2+3" for two cores.
pub fn cores(ids: &[u32], smt_bits: u8) -> Vec<Vec<u32>> {
    let mut sorted: Vec<u32> = ids.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<Vec<u32>> = Vec::new();
    for id in sorted {
        let core = id.checked_shr(smt_bits as u32).unwrap_or(0);
        match out.last_mut() {
            Some(last) if last[0].checked_shr(smt_bits as u32).unwrap_or(0) == core => last.push(id),
            _ => out.push(alloc::vec![id]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MITIGATION_CPUID: u32 = leaf7::EDX_SPEC_CTRL
        | leaf7::EDX_STIBP
        | leaf7::EDX_SSBD
        | leaf7::EDX_FLUSH_L1D
        | leaf7::EDX_MD_CLEAR;

    fn intel(model: u8, leaf7_edx: u32, arch_caps: Option<u64>, rtm: bool, smt: bool) -> CpuProfile {
        let edx = leaf7_edx | if arch_caps.is_some() { leaf7::EDX_ARCH_CAPABILITIES } else { 0 };
        CpuProfile {
            vendor: Vendor::Intel,
            family: 6,
            model,
            spec: SpecFeatures {
                leaf7_ebx: if rtm { leaf7::EBX_RTM } else { 0 },
                leaf7_edx: edx,
                ext8_ebx: 0,
                arch_caps,
            },
            smt_siblings_online: smt,
        }
    }

    fn amd(family: u8, model: u8, ext8_ebx: u32, smt: bool) -> CpuProfile {
        CpuProfile {
            vendor: Vendor::Amd,
            family,
            model,
            spec: SpecFeatures { leaf7_ebx: 0, leaf7_edx: 0, ext8_ebx, arch_caps: None },
            smt_siblings_online: smt,
        }
    }

    /// One row: a profile and the expected (L1D flush, VERW, IBPB, SPEC_CTRL, RSB fill).
    struct Row {
        name: &'static str,
        cpu: CpuProfile,
        want: [bool; 5],
        l1tf: bool,
        mds: bool,
    }

    fn table() -> Vec<Row> {
        let zen_bits = ext8::EBX_IBPB | ext8::EBX_IBRS | ext8::EBX_STIBP | ext8::EBX_SSBD;
        let cascade_caps =
            arch_cap::RDCL_NO | arch_cap::IBRS_ALL | arch_cap::SKIP_L1DFL_VMENTRY | arch_cap::MDS_NO;
        alloc::vec![
            // Skylake client (0x5E) with current microcode and Hyper-Threading on: L1TF and
            // MDS; the L1D flush also clears the buffers, so no separate VERW.
            Row {
                name: "Skylake client, SMT",
                cpu: intel(0x5E, MITIGATION_CPUID, None, true, true),
                want: [true, false, true, true, true],
                l1tf: true,
                mds: true
            },
            // The same without MD_CLEAR/FLUSH_L1D microcode: the software L1D flush; MDS not
            // mitigated (VERW does not clear without MD_CLEAR).
            Row {
                name: "Skylake client, old microcode",
                cpu: intel(0x5E, 0, None, true, false),
                want: [true, false, false, false, true],
                l1tf: true,
                mds: true
            },
            // The L1D flush turned off on the command line: VERW takes over MDS.
            Row {
                name: "Skylake-X, no SMT",
                cpu: intel(0x55, MITIGATION_CPUID, Some(0), false, false),
                want: [true, false, true, true, true],
                l1tf: true,
                mds: true
            },
            // Cascade Lake: RDCL_NO, MDS_NO, SKIP_L1DFL_VMENTRY; TSX without TAA_NO: VERW.
            Row {
                name: "Cascade Lake, TSX",
                cpu: intel(0x55, MITIGATION_CPUID, Some(cascade_caps), true, true),
                want: [false, true, true, true, true],
                l1tf: false,
                mds: false
            },
            // Cascade Lake with TAA_NO (or TSX off): nothing to clear.
            Row {
                name: "Cascade Lake, TAA_NO",
                cpu: intel(0x55, MITIGATION_CPUID, Some(cascade_caps | arch_cap::TAA_NO), true, true),
                want: [false, false, true, true, true],
                l1tf: false,
                mds: false
            },
            // Ice Lake server: ARCH_CAPABILITIES says RDCL_NO and MDS_NO, no TSX.
            Row {
                name: "Ice Lake",
                cpu: intel(
                    0x6A,
                    MITIGATION_CPUID,
                    Some(arch_cap::RDCL_NO | arch_cap::MDS_NO | arch_cap::IBRS_ALL),
                    false,
                    true
                ),
                want: [false, false, true, true, true],
                l1tf: false,
                mds: false
            },
            // Goldmont Atom: neither L1TF nor MDS by model (no ARCH_CAPABILITIES needed).
            Row {
                name: "Atom Goldmont",
                cpu: intel(0x5C, leaf7::EDX_SPEC_CTRL, None, false, false),
                want: [false, false, true, true, true],
                l1tf: false,
                mds: false
            },
            // Silvermont: no L1TF, but MDS (store buffer); with MD_CLEAR, VERW.
            Row {
                name: "Atom Silvermont",
                cpu: intel(0x37, leaf7::EDX_MD_CLEAR, None, false, false),
                want: [false, true, false, false, true],
                l1tf: false,
                mds: true
            },
            // Bonnell: in-order, not affected by anything.
            Row {
                name: "Atom Bonnell",
                cpu: intel(0x1C, 0, None, false, true),
                want: [false, false, false, false, false],
                l1tf: false,
                mds: false
            },
            // AMD Zen 2 (family 0x17 model 0x31) with SMT: not affected by L1TF or MDS.
            Row {
                name: "Zen 2, SMT",
                cpu: amd(0x17, 0x31, zen_bits, true),
                want: [false, false, true, true, true],
                l1tf: false,
                mds: false
            },
            // Zen 1 (EPYC 7001) as QEMU models it, without the IBPB/IBRS bits.
            Row {
                name: "Zen 1, no IBPB",
                cpu: amd(0x17, 0x01, 0, false),
                want: [false, false, false, false, true],
                l1tf: false,
                mds: false
            },
            // AMD with IBPB but no SPEC_CTRL bit (early Zen microcode).
            Row {
                name: "Zen 1, IBPB only",
                cpu: amd(0x17, 0x01, ext8::EBX_IBPB, false),
                want: [false, false, true, false, true],
                l1tf: false,
                mds: false
            },
        ]
    }

    #[test]
    fn each_cpu_profile_gets_its_decisions() {
        for row in table() {
            let d = decide(&row.cpu, &Switches::default());
            let got = [d.l1d_flush.on, d.verw.on, d.ibpb.on, d.spec_ctrl.on, d.rsb_fill.on];
            assert_eq!(got, row.want, "{}: {d:?}", row.name);
            assert_eq!(
                (d.affected.l1tf, d.affected.mds || d.affected.taa),
                (row.l1tf, row.mds || row.want[1]),
                "{}",
                row.name
            );
            assert!(!d.smt_sharing.on, "{}", row.name);
        }
    }

    #[test]
    fn arch_capabilities_bits_change_the_l1tf_and_mds_decisions() {
        let base = intel(0x9E, MITIGATION_CPUID, Some(0), false, false);
        let d = decide(&base, &Switches::default());
        assert!(d.affected.l1tf && d.l1d_flush.on && !d.verw.on, "{d:?}");
        let with = |caps| CpuProfile { spec: SpecFeatures { arch_caps: Some(caps), ..base.spec }, ..base };
        let d = decide(&with(arch_cap::SKIP_L1DFL_VMENTRY), &Switches::default());
        assert!(d.affected.l1tf && !d.l1d_flush.on, "{d:?}");
        assert!(d.verw.on, "without the flush VERW clears the buffers: {d:?}");
        assert!(d.l1d_flush.reason.contains("SKIP_L1DFL_VMENTRY"));
        let d = decide(&with(arch_cap::RDCL_NO), &Switches::default());
        assert!(!d.affected.meltdown && !d.affected.l1tf && !d.l1d_flush.on && d.verw.on, "{d:?}");
        let d = decide(&with(arch_cap::RDCL_NO | arch_cap::MDS_NO), &Switches::default());
        assert!(!d.l1d_flush.on && !d.verw.on, "{d:?}");
        // TSX brings TAA back unless TAA_NO.
        let tsx = CpuProfile {
            spec: SpecFeatures {
                leaf7_ebx: leaf7::EBX_RTM,
                ..with(arch_cap::RDCL_NO | arch_cap::MDS_NO).spec
            },
            ..base
        };
        assert!(decide(&tsx, &Switches::default()).verw.on);
    }

    #[test]
    fn smt_siblings_and_sharing_change_the_warning() {
        let affected = intel(0x5E, MITIGATION_CPUID, None, false, true);
        let d = decide(&affected, &Switches::default());
        assert!(d.l1d_flush.on && d.l1d_flush.reason.contains("SMT siblings are online"));
        assert!(d.warning.is_some_and(|w| w.contains("sibling thread")), "{d:?}");
        let alone = CpuProfile { smt_siblings_online: false, ..affected };
        assert_eq!(decide(&alone, &Switches::default()).warning, None);
        let sharing = Switches { smt_sharing: true, ..Default::default() };
        let d = decide(&alone, &sharing);
        assert!(d.smt_sharing.on && d.warning.is_some_and(|w| w.contains("smt_sharing=allow")));
        // AMD with SMT: nothing to warn about.
        assert_eq!(decide(&amd(0x17, 0x31, 0, true), &Switches::default()).warning, None);
    }

    #[test]
    fn command_line_switches_turn_each_off() {
        let cpu = intel(0x5E, MITIGATION_CPUID, Some(arch_cap::SKIP_L1DFL_VMENTRY), true, false);
        let d = decide(&cpu, &Switches::default());
        assert!(!d.l1d_flush.on && d.verw.on && d.ibpb.on && d.spec_ctrl.on && d.rsb_fill.on);
        let (s, bad) = Switches::parse(None, Some("verw,rsb_fill"), None);
        assert_eq!(bad, None);
        let d = decide(&cpu, &s);
        assert!(!d.verw.on && !d.rsb_fill.on && d.ibpb.on && d.spec_ctrl.on);
        assert!(d.verw.reason.contains("no_mitigation="));
        let (s, _) = Switches::parse(Some("off"), None, None);
        let d = decide(&cpu, &s);
        assert!([d.l1d_flush, d.verw, d.ibpb, d.spec_ctrl, d.rsb_fill]
            .iter()
            .all(|x| !x.on && x.reason.contains("mitigations=off")));
        assert!(d.warning.is_some_and(|w| w.contains("NOT protected")));
        assert!(Switches::parse(Some("maybe"), None, None).1.is_some());
        assert!(Switches::parse(None, Some("l1d_flush,bogus"), None).1.is_some());
        assert!(Switches::parse(None, None, Some("allow")).0.smt_sharing);
        let (all, _) = Switches::parse(None, Some(&MITIGATION_NAMES.join(",")), None);
        assert!(all.no_l1d_flush && all.no_verw && all.no_ibpb && all.no_spec_ctrl && all.no_rsb_fill);
    }

    #[test]
    fn entry_mitigations_follow_the_decisions() {
        let cpu = intel(0x55, MITIGATION_CPUID, Some(arch_cap::SKIP_L1DFL_VMENTRY), false, false);
        let d = decide(&cpu, &Switches::default());
        let e = d.entry(&cpu.spec, 0);
        assert!(!e.l1d_flush && e.verw && e.rsb_fill);
        assert_eq!(e.spec_ctrl, Some(SpecCtrlHost { value: 0, writable: 0b111 }));
        let (s, _) = Switches::parse(Some("off"), None, None);
        assert_eq!(decide(&cpu, &s).entry(&cpu.spec, 0), EntryMitigations::default());
    }

    #[test]
    fn siblings_come_from_the_apic_ids_online() {
        // Two cores with two threads each, all online.
        assert!(smt_siblings(&[0, 1, 2, 3], 1));
        // One thread of each core online (SMT "off" by taking the siblings offline).
        assert!(!smt_siblings(&[0, 2, 4, 6], 1));
        // No SMT level in the topology: every APIC ID is its own core.
        assert!(!smt_siblings(&[0, 1, 2, 3], 0));
        assert_eq!(sibling_pairs(&[0, 1, 4, 5, 6], 1).collect::<Vec<_>>(), [(0, 1), (4, 5)]);
        assert_eq!(cores(&[3, 0, 2, 1], 1), [alloc::vec![0, 1], alloc::vec![2, 3]]);
        assert_eq!(cores(&[0, 1], 0), [alloc::vec![0], alloc::vec![1]]);
    }

    #[test]
    fn vms_are_not_placed_on_siblings_unless_allowed() {
        // CPU 1 runs VM 7; CPU 0 (its sibling) may not start VM 8, but may run VM 7's vCPU.
        let running = [(1, 7)];
        assert_eq!(placement_conflict(0, 8, &running, 1, false), Some(1));
        assert_eq!(placement_conflict(0, 7, &running, 1, false), None);
        assert_eq!(placement_conflict(0, 8, &running, 1, true), None);
        // CPU 2 is on another core.
        assert_eq!(placement_conflict(2, 8, &running, 1, false), None);
        // Without SMT, APIC IDs 0 and 1 are two cores.
        assert_eq!(placement_conflict(0, 8, &running, 0, false), None);
    }

    fn nothing() {}

    #[test]
    fn the_guest_sees_the_controls_the_host_has_and_spec_ctrl_only_when_virtualized() {
        let cpu = intel(
            0x55,
            MITIGATION_CPUID,
            Some(arch_cap::RDCL_NO | arch_cap::TSX_CTRL_MSR | arch_cap::SKIP_L1DFL_VMENTRY),
            false,
            false,
        );
        let d = decide(&cpu, &Switches::default());
        let g = guest_spec(&cpu.spec, &d, nothing, nothing);
        assert_eq!(g.view.leaf7_edx, MITIGATION_CPUID | leaf7::EDX_ARCH_CAPABILITIES);
        assert_eq!(g.view.arch_caps, Some(arch_cap::RDCL_NO), "MSR-enumerating bits hidden");
        assert!(g.ibpb.is_some() && g.flush_l1d.is_some() && g.view.has_spec_ctrl());
        // SPEC_CTRL not virtualized: Intel's IBRS/IBPB bit goes, and with it PRED_CMD.
        let (s, _) = Switches::parse(None, Some("spec_ctrl"), None);
        let g = guest_spec(&cpu.spec, &decide(&cpu, &s), nothing, nothing);
        assert!(!g.view.has_spec_ctrl() && g.ibpb.is_none() && g.flush_l1d.is_some());
        // AMD keeps IBPB, which has a bit of its own; VIRT_SSBD is never offered.
        let zen = amd(0x17, 0x31, ext8::EBX_IBPB | ext8::EBX_IBRS | ext8::EBX_VIRT_SSBD, true);
        let g = guest_spec(&zen.spec, &decide(&zen, &s), nothing, nothing);
        assert_eq!((g.view.ext8_ebx, g.ibpb.is_some(), g.view.arch_caps), (ext8::EBX_IBPB, true, None));
        let g = guest_spec(&zen.spec, &decide(&zen, &Switches::default()), nothing, nothing);
        assert_eq!(g.view.ext8_ebx, ext8::EBX_IBPB | ext8::EBX_IBRS);
        // A CPU without any: nothing for the guest.
        let bare = amd(0x17, 0x01, 0, false);
        let g = guest_spec(&bare.spec, &decide(&bare, &Switches::default()), nothing, nothing);
        assert!(
            g.ibpb.is_none()
                && g.flush_l1d.is_none()
                && !g.view.has_spec_ctrl()
                && g.view.arch_caps.is_none()
        );
    }
}
