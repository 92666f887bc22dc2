//! Interprocessor interrupts: self-IPIs (the ICR's self shorthand, and the x2APIC SELF_IPI MSR
//! where CPUID offers x2APIC), fixed IPIs between two vCPUs in physical and logical (flat)
//! destination mode, and NMIs through the ICR, each counted on the CPU that took it. Needs
//! `cpus=2`: it starts vCPU 1 with INIT-SIPI-SIPI first.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::apic::{self, ICR_FIXED, ICR_LOGICAL, ICR_NMI, ICR_SELF};
use basalt_guests::hw::{cli, spin_until, spin_until_sti, sti_hlt_cli};
use basalt_guests::idt::{self, Action, Event, Frame};
use basalt_guests::{acpi, smp, time};
use basalt_guests::{guest_assert, guest_assert_eq, guest_println};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

basalt_guests::entry!(run);

const V_SELF: u8 = 0x50;
const V_TO_AP: u8 = 0x51;
const V_TO_BSP: u8 = 0x52;
const V_LOGICAL: u8 = 0x53;
const V_X2_SELF: u8 = 0x54;
const NMI: u8 = 2;
/// Logical IDs (flat model): bit 0 the BSP, bit 1 the AP.
const LOGICAL_BSP: u32 = 1;
const LOGICAL_AP: u32 = 2;
const WAIT_US: u64 = 100_000;

static BSP_ID: AtomicU32 = AtomicU32::new(0);
/// Per CPU (0 the BSP, 1 the AP), per vector 0x50 + i, and [8] NMIs.
static GOT: [[AtomicU64; 9]; 2] = [const { [const { AtomicU64::new(0) }; 9] }; 2];
/// What the AP sends the BSP when it wakes: 0 nothing, else an ICR low half.
static AP_REQUEST: AtomicU32 = AtomicU32::new(0);
static AP_READY: AtomicU32 = AtomicU32::new(0);

fn cpu() -> usize {
    usize::from(apic::id() != BSP_ID.load(Ordering::SeqCst))
}

fn slot(vector: u8) -> usize {
    if vector == NMI {
        8
    } else {
        usize::from(vector - V_SELF)
    }
}

fn got(cpu: usize, vector: u8) -> u64 {
    GOT[cpu][slot(vector)].load(Ordering::SeqCst)
}

fn on_ipi(e: &Event, _: &mut Frame) -> Action {
    GOT[cpu()][slot(e.vector)].fetch_add(1, Ordering::SeqCst);
    if e.vector != NMI {
        apic::eoi();
    }
    Action::Return
}

fn ap(_: usize) {
    apic::enable();
    apic::write(apic::DFR, 0xFFFF_FFFF);
    apic::write(apic::LDR, LOGICAL_AP << 24);
    AP_READY.store(1, Ordering::SeqCst);
    loop {
        sti_hlt_cli();
        let request = AP_REQUEST.swap(0, Ordering::SeqCst);
        if request != 0 {
            apic::send_ipi(BSP_ID.load(Ordering::SeqCst), request);
        }
    }
}

/// Waits (interrupts on) for `cpu` to have taken `n` of `vector`.
fn wait_for(cpu: usize, vector: u8, n: u64, what: &str) {
    let ok = spin_until_sti(time::us_to_tsc(WAIT_US), || got(cpu, vector) >= n);
    guest_assert!(ok, "{}: CPU {} took {} of vector {:#x}, not {}", what, cpu, got(cpu, vector), vector, n);
}

/// Checks that after a while the counts of `vector` are still `bsp` and `ap`: nothing extra.
fn settle(vector: u8, bsp: u64, ap: u64, what: &str) {
    spin_until_sti(time::us_to_tsc(2_000), || false);
    guest_assert!(
        got(0, vector) == bsp && got(1, vector) == ap,
        "{}: vector {:#x} reached the BSP {} times and the AP {} times, not {} and {}",
        what,
        vector,
        got(0, vector),
        got(1, vector),
        bsp,
        ap
    );
}

fn run() {
    idt::install();
    for v in [V_SELF, V_TO_AP, V_TO_BSP, V_LOGICAL, V_X2_SELF, NMI] {
        idt::set_handler(v, on_ipi);
    }
    apic::enable();
    let bsp = apic::id();
    BSP_ID.store(bsp, Ordering::SeqCst);

    // Self-IPIs through the ICR's shorthand: each one arrives, once.
    for n in 1..=3 {
        apic::send_ipi(0, ICR_SELF | ICR_FIXED | u32::from(V_SELF));
        wait_for(0, V_SELF, n, "self IPI (ICR shorthand)");
    }
    settle(V_SELF, 3, 0, "self IPI");

    // The AP: the MADT's second CPU (vCPU 1), else APIC ID 1.
    let mut ids = [0u32; 2];
    let n = acpi::find_rsdp()
        .and_then(|r| acpi::find_table(&r, b"APIC"))
        .map_or(0, |madt| acpi::madt_cpus(madt, &mut ids));
    let ap_id = if n >= 2 { ids.into_iter().find(|&id| id != bsp).unwrap_or(1) } else { bsp + 1 };
    guest_assert!(n == 0 || n >= 2, "the MADT lists {} CPU: this test needs cpus=2", n);
    smp::set_entry(ap);
    let started = smp::start_ap(ap_id, 2_000_000);
    guest_assert!(started, "vCPU 1 (APIC ID {}) did not start from INIT-SIPI-SIPI", ap_id);
    let ready = spin_until(time::us_to_tsc(WAIT_US), || AP_READY.load(Ordering::SeqCst) != 0);
    guest_assert!(ready, "vCPU 1 started but did not set up its APIC");

    // Physical destination: BSP -> AP, then AP -> BSP (what the AP does on waking).
    AP_REQUEST.store(ICR_FIXED | u32::from(V_TO_BSP), Ordering::SeqCst);
    apic::send_ipi(ap_id, ICR_FIXED | u32::from(V_TO_AP));
    wait_for(1, V_TO_AP, 1, "fixed IPI to the AP, physical");
    wait_for(0, V_TO_BSP, 1, "fixed IPI from the AP to the BSP, physical");
    settle(V_TO_AP, 0, 1, "fixed IPI to the AP");
    settle(V_TO_BSP, 1, 0, "fixed IPI to the BSP");

    // Logical destination, flat model.
    apic::write(apic::DFR, 0xFFFF_FFFF);
    apic::write(apic::LDR, LOGICAL_BSP << 24);
    apic::send_ipi(LOGICAL_AP, ICR_LOGICAL | u32::from(V_LOGICAL));
    wait_for(1, V_LOGICAL, 1, "logical IPI to the AP");
    settle(V_LOGICAL, 0, 1, "logical IPI to the AP");
    apic::send_ipi(LOGICAL_BSP, ICR_LOGICAL | u32::from(V_LOGICAL));
    wait_for(0, V_LOGICAL, 1, "logical IPI to the BSP (itself)");
    settle(V_LOGICAL, 1, 1, "logical IPI to the BSP");
    apic::send_ipi(LOGICAL_BSP | LOGICAL_AP, ICR_LOGICAL | u32::from(V_LOGICAL));
    wait_for(1, V_LOGICAL, 2, "logical IPI to both");
    wait_for(0, V_LOGICAL, 2, "logical IPI to both");
    settle(V_LOGICAL, 2, 2, "logical IPI to both");

    // NMIs: BSP -> AP through the ICR, then the AP's reply.
    AP_REQUEST.store(ICR_NMI, Ordering::SeqCst);
    apic::send_ipi(ap_id, ICR_NMI);
    wait_for(1, NMI, 1, "NMI to the AP");
    // The NMI woke the AP's HLT; it sends its NMI to us.
    let ok = spin_until(time::us_to_tsc(WAIT_US), || got(0, NMI) >= 1);
    guest_assert!(ok, "the AP's NMI through the ICR did not reach the BSP (interrupts off: NMIs need none)");
    settle(NMI, 1, 1, "NMIs");
    cli();

    // x2APIC: the SELF_IPI MSR, and the ICR's shorthand as one 64-bit MSR write.
    if apic::has_x2apic() {
        apic::enable_x2apic();
        guest_assert!(apic::x2apic_mode(), "IA32_APIC_BASE.EXTD does not stick");
        guest_assert_eq!(apic::id(), bsp);
        basalt_guests::hw::wrmsr(apic::X2APIC_SELF_IPI, u64::from(V_X2_SELF));
        wait_for(0, V_X2_SELF, 1, "x2APIC SELF_IPI");
        apic::send_ipi(0, ICR_SELF | u32::from(V_X2_SELF));
        wait_for(0, V_X2_SELF, 2, "x2APIC ICR self shorthand");
        settle(V_X2_SELF, 2, 0, "x2APIC self IPIs");
        guest_println!("self, physical, logical and NMI IPIs, and x2APIC self IPIs, arrive once each");
    } else {
        guest_println!("self, physical, logical and NMI IPIs arrive once each (no x2APIC on this CPU)");
    }
}
