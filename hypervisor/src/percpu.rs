//! Per-CPU data, reached through the GS base (IA32_GS_BASE points at this CPU's `PerCpu`).

use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

const IA32_GS_BASE: u32 = 0xC000_0101;

/// What each CPU knows about itself. Other CPUs read only the atomics.
#[repr(C)]
pub struct PerCpu {
    /// Must stay first: `index()` reads it at GS:0.
    pub index: usize,
    pub apic_id: u32,
    pub online: AtomicBool,
    /// The VM whose vCPU this CPU ran last (0: none), for the IBPB between VMs.
    pub last_vm: AtomicU32,
}

/// Install this CPU's per-CPU block. Call once per CPU, before `index()`.
pub fn init_this_cpu(index: usize, apic_id: u32) -> &'static PerCpu {
    let block: &'static PerCpu = Box::leak(Box::new(PerCpu {
        index,
        apic_id,
        online: AtomicBool::new(false),
        last_vm: AtomicU32::new(0),
    }));
    // SAFETY: IA32_GS_BASE exists on every x86_64 CPU; Basalt never uses GS otherwise.
    unsafe { basalt_arch::io::wrmsr(IA32_GS_BASE, block as *const PerCpu as u64) };
    block
}

/// This CPU's index (0 = the boot CPU), or 0 before per-CPU data exists.
pub fn index() -> usize {
    // SAFETY: reading IA32_GS_BASE is side-effect free.
    let base = unsafe { basalt_arch::io::rdmsr(IA32_GS_BASE) };
    if base == 0 {
        return 0;
    }
    // SAFETY: a non-zero GS base was installed by `init_this_cpu` and points at a leaked PerCpu.
    unsafe { (*(base as *const PerCpu)).index }
}

/// Mark this CPU online (the BSP waits for this after starting an AP).
pub fn set_online(block: &PerCpu) {
    block.online.store(true, Ordering::Release);
}

/// This CPU's block (after `init_this_cpu`).
pub fn this_cpu() -> Option<&'static PerCpu> {
    // SAFETY: reading IA32_GS_BASE is side-effect free.
    let base = unsafe { basalt_arch::io::rdmsr(IA32_GS_BASE) };
    // SAFETY: a non-zero GS base was installed by `init_this_cpu` and points at a leaked PerCpu.
    (base != 0).then(|| unsafe { &*(base as *const PerCpu) })
}
