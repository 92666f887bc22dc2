//! The TSC: each VM's starts near zero (offsetting), never goes back across exits (RDTSC,
//! RDTSCP and RDMSR of IA32_TSC agree), and its rate is in CPUID 0x15/0x16, so a guest need
//! not calibrate it.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::{guest_assert, guest_assert_eq, guest_println};
use core::arch::asm;
use core::arch::x86_64::__cpuid;

basalt_guests::entry!(run);

const IA32_TSC: u32 = 0x10;

fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the (offset) time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn rdmsr_tsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDMSR of IA32_TSC, which Basalt emulates.
    unsafe { asm!("rdmsr", in("ecx") IA32_TSC, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    u64::from(hi) << 32 | u64::from(lo)
}

fn run() {
    let first = rdtsc();
    guest_assert!(__cpuid(0).eax >= 0x16, "CPUID reaches leaf 0x16");
    let l15 = __cpuid(0x15);
    guest_assert!(l15.eax != 0 && l15.ebx != 0 && l15.ecx != 0, "leaf 0x15 gives the TSC ratio");
    let hz = u64::from(l15.ecx) * u64::from(l15.ebx) / u64::from(l15.eax);
    let mhz = u64::from(__cpuid(0x16).eax);
    guest_assert_eq!(mhz, hz / 1_000_000);
    // Near zero: less than a second of this TSC since the VM started.
    guest_assert!(first < hz, "the first TSC read {} is not below one second ({} Hz)", first, hz);

    let mut last = first;
    for _ in 0..500 {
        let a = rdtsc();
        let m = rdmsr_tsc();
        let b = rdtsc();
        guest_assert!(last <= a && a <= m && m <= b, "TSC went back: {} {} {} {}", last, a, m, b);
        last = b;
    }
    let ext = __cpuid(0x8000_0001);
    if ext.edx & (1 << 27) != 0 {
        let (lo, hi): (u32, u32);
        // SAFETY: RDTSCP reads the TSC and TSC_AUX.
        unsafe { asm!("rdtscp", out("eax") lo, out("edx") hi, out("ecx") _, options(nomem, nostack)) };
        let t = u64::from(hi) << 32 | u64::from(lo);
        guest_assert!(t >= last, "RDTSCP {} is before {}", t, last);
    }
    guest_println!("TSC {first} at start, {hz} Hz from CPUID 0x15, monotonic over 500 exits");
}
