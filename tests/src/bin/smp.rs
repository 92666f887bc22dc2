//! Starting the other vCPUs: the BSP reads the CPUs from the ACPI MADT (cross-checked with
//! fw_cfg's CPU count where fw_cfg is there), starts each AP the MADT lists with INIT-SIPI-SIPI
//! and counts the ones that arrive; each AP reports its APIC ID from CPUID and from its local
//! APIC. Run with `cpus=2` and `cpus=4`.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::hw::{rdmsr, spin_until};
use basalt_guests::{acpi, apic, fwcfg, idt, smp, time};
use basalt_guests::{guest_assert, guest_assert_eq, guest_println};
use core::sync::atomic::{AtomicU32, Ordering};

basalt_guests::entry!(run);

const MAX_CPUS: usize = 16;
const NONE: u32 = u32::MAX;

static CPUID_IDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(NONE) }; MAX_CPUS];
static LAPIC_IDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(NONE) }; MAX_CPUS];
static BSP_FLAGS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(NONE) }; MAX_CPUS];
static ARRIVED: AtomicU32 = AtomicU32::new(0);

fn ap(index: usize) {
    apic::enable();
    if index < MAX_CPUS {
        CPUID_IDS[index].store(apic::cpuid_apic_id(), Ordering::SeqCst);
        LAPIC_IDS[index].store(apic::id(), Ordering::SeqCst);
        BSP_FLAGS[index].store((rdmsr(apic::IA32_APIC_BASE) & apic::BASE_BSP != 0).into(), Ordering::SeqCst);
    }
    ARRIVED.fetch_add(1, Ordering::SeqCst);
}

fn run() {
    idt::install();
    apic::enable();
    let rsdp = acpi::find_rsdp();
    guest_assert!(rsdp.is_some(), "no RSDP in 0xE0000-0xFFFFF");
    let rsdp = rsdp.unwrap_or_else(|| unreachable!());
    let madt = acpi::find_table(&rsdp, b"APIC");
    guest_assert!(madt.is_some(), "no MADT");
    let madt = madt.unwrap_or(0);
    let mut ids = [0u32; MAX_CPUS];
    let cpus = acpi::madt_cpus(madt, &mut ids);
    guest_assert!((1..=MAX_CPUS).contains(&cpus), "the MADT lists {} enabled CPUs", cpus);
    if let Some(n) = fwcfg::nb_cpus() {
        guest_assert_eq!(usize::from(n), cpus);
    }
    let ids = &ids[..cpus];

    let bsp = apic::id();
    guest_assert_eq!(bsp, apic::cpuid_apic_id());
    guest_assert!(rdmsr(apic::IA32_APIC_BASE) & apic::BASE_BSP != 0, "IA32_APIC_BASE.BSP is set on the BSP");
    guest_assert!(ids.contains(&bsp), "the MADT lists the BSP's APIC ID {}", bsp);

    smp::set_entry(ap);
    for &id in ids.iter().filter(|&&id| id != bsp) {
        let before = ARRIVED.load(Ordering::SeqCst);
        smp::init_sipi_sipi(id, 0);
        let ok = spin_until(time::us_to_tsc(2_000_000), || ARRIVED.load(Ordering::SeqCst) > before);
        guest_assert!(ok, "the AP with APIC ID {} did not start within 2 s of its INIT-SIPI-SIPI", id);
    }
    // No more than that (a second SIPI starts nothing twice), even after a while.
    time::delay_us(10_000);
    let arrived = ARRIVED.load(Ordering::SeqCst) as usize;
    guest_assert_eq!(arrived + 1, cpus);
    guest_assert_eq!(smp::started() as usize, arrived);

    let mut seen = [bsp; MAX_CPUS];
    for i in 1..cpus {
        let cpuid = CPUID_IDS[i].load(Ordering::SeqCst);
        let lapic = LAPIC_IDS[i].load(Ordering::SeqCst);
        guest_assert!(cpuid == lapic, "AP {}: CPUID says APIC ID {}, its local APIC {}", i, cpuid, lapic);
        guest_assert!(ids.contains(&lapic), "AP {}'s APIC ID {} is not in the MADT", i, lapic);
        guest_assert!(!seen[..i].contains(&lapic), "two CPUs have APIC ID {}", lapic);
        guest_assert_eq!(BSP_FLAGS[i].load(Ordering::SeqCst), 0);
        seen[i] = lapic;
    }
    guest_println!("{cpus} CPUs (MADT, fw_cfg {:?}): APIC IDs {:?}", fwcfg::nb_cpus(), &seen[..cpus]);
}
