//! CPUID as Basalt shows it to a guest: the hypervisor bit and leaves, and the masked features.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::ucall::exit_count;
use basalt_guests::{guest_assert, guest_assert_eq, guest_println, ExitCounter};
use core::arch::x86_64::{__cpuid, CpuidResult};

basalt_guests::entry!(run);

fn bytes(regs: [u32; 3]) -> [u8; 12] {
    let mut out = [0u8; 12];
    for (chunk, reg) in out.chunks_mut(4).zip(regs) {
        chunk.copy_from_slice(&reg.to_le_bytes());
    }
    out
}

fn run() {
    let before = exit_count(ExitCounter::Cpuid);

    let CpuidResult { eax: max_leaf, ebx, ecx, edx } = __cpuid(0);
    let vendor = bytes([ebx, edx, ecx]);
    let vendor = core::str::from_utf8(&vendor).unwrap_or("?");
    guest_println!("vendor {vendor:?}, max basic leaf {max_leaf:#x}");
    guest_assert!(vendor == "GenuineIntel" || vendor == "AuthenticAMD", "vendor {}", vendor);

    let leaf1 = __cpuid(1);
    guest_assert!(leaf1.ecx & (1 << 31) != 0, "CPUID.1:ECX.hypervisor clear: {:#x}", leaf1.ecx);
    guest_assert!(leaf1.ecx & (1 << 5) == 0, "CPUID.1:ECX.VMX set: {:#x}", leaf1.ecx);
    guest_assert!(leaf1.ecx & (1 << 3) == 0, "CPUID.1:ECX.MONITOR set: {:#x}", leaf1.ecx);

    let hv = __cpuid(0x4000_0000);
    let signature = bytes([hv.ebx, hv.ecx, hv.edx]);
    guest_println!("hypervisor signature {:?}", core::str::from_utf8(&signature).unwrap_or("?"));
    guest_assert!(&signature == b"BasaltHVisor", "signature {:x?}", signature);
    guest_assert!(hv.eax >= 0x4000_0000, "max hypervisor leaf {:#x}", hv.eax);

    let max_ext = __cpuid(0x8000_0000).eax;
    let mut cpuids = 4;
    if max_ext >= 0x8000_0001 {
        let ext = __cpuid(0x8000_0001);
        cpuids += 1;
        guest_assert!(ext.ecx & (1 << 2) == 0, "CPUID.80000001:ECX.SVM set: {:#x}", ext.ecx);
        guest_assert!(ext.ecx & (1 << 10) == 0, "CPUID.80000001:ECX.IBS set: {:#x}", ext.ecx);
    }
    if max_ext >= 0x8000_001F {
        // SME/SEV are not offered (the SEV status MSR is not there).
        let sev = __cpuid(0x8000_001F);
        cpuids += 1;
        guest_assert!(sev.eax == 0, "CPUID.8000001F:EAX (SME/SEV) {:#x}", sev.eax);
    }

    let after = exit_count(ExitCounter::Cpuid);
    guest_println!("CPUID exits: {before} before, {after} after");
    guest_assert!(after >= before + cpuids, "CPUID exits {} -> {} for {} CPUIDs", before, after, cpuids);
    guest_assert_eq!(u32::from(&signature[..6] == b"Basalt"), 1);
}
