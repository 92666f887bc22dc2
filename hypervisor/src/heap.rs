//! The kernel heap, with per-VM accounting (the KVM lesson: every allocation made for a VM is
//! charged to it). [`ChargedHeap`] is the global allocator: the linked-list heap, and while a
//! CPU runs inside [`charged`] the bytes it allocates (less those it frees) are counted for
//! that CPU, so the code that builds a VM's device models and firmware tables learns what they
//! hold and charges it to the VM's account. Outside `charged` the only cost is one atomic load.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use linked_list_allocator::LockedHeap;

/// CPUs counted apart (indices as `percpu::index`).
const CPUS: usize = crate::dispatch::MAX_CPUS;

/// How many CPUs are inside `charged` now (0: nothing to count).
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static COUNTING: [AtomicBool; CPUS] = [const { AtomicBool::new(false) }; CPUS];
static NET: [AtomicI64; CPUS] = [const { AtomicI64::new(0) }; CPUS];

/// The global allocator: a [`LockedHeap`] that counts for [`charged`].
pub struct ChargedHeap(LockedHeap);

impl ChargedHeap {
    pub const fn empty() -> Self {
        ChargedHeap(LockedHeap::empty())
    }

    /// The heap itself (the kernel gives it its memory at boot).
    pub fn heap(&'static self) -> &'static LockedHeap {
        &self.0
    }

    fn count(&self, bytes: i64) {
        if ACTIVE.load(Ordering::Relaxed) == 0 {
            return;
        }
        let cpu = crate::percpu::index();
        if cpu < CPUS && COUNTING[cpu].load(Ordering::Relaxed) {
            NET[cpu].fetch_add(bytes, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is forwarded to `LockedHeap`, a correct allocator; the counting touches
// only atomics.
unsafe impl GlobalAlloc for ChargedHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            self.count(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.count(-(layout.size() as i64));
        // SAFETY: forwarded: `ptr` came from `alloc` with `layout`.
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

/// Run `f` on this CPU and return, with its result, the heap bytes it left allocated (what
/// it allocated less what it freed; interrupts on this CPU that allocate would be counted too,
/// and Basalt's interrupt handlers do not allocate).
pub fn charged<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let cpu = crate::percpu::index().min(CPUS - 1);
    NET[cpu].store(0, Ordering::Relaxed);
    COUNTING[cpu].store(true, Ordering::Relaxed);
    ACTIVE.fetch_add(1, Ordering::AcqRel);
    let r = f();
    COUNTING[cpu].store(false, Ordering::Relaxed);
    ACTIVE.fetch_sub(1, Ordering::AcqRel);
    (r, NET[cpu].load(Ordering::Relaxed).max(0) as u64)
}
