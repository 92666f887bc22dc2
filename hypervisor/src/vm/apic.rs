//! The vCPU's local APIC in the VM core: its accesses (xAPIC MMIO, x2APIC and APIC_BASE MSRs,
//! TSC_DEADLINE), what they ask for (IPIs resolved against the other vCPUs' published
//! destination state and posted to them; level EOIs to the IOAPIC), and its timer. The model
//! itself is `basalt_devices::lapic`, private to this vCPU.

use super::vcpus::request;
use super::VmState;
use alloc::vec::Vec;
use basalt_devices::irq::{DeliveryMode, Destination, InterruptMessage};
use basalt_devices::lapic::{Action, Lapic, Mode};

/// The LAPIC timer's input clock: also the crystal CPUID leaf 0x15 reports, from which Linux
/// takes the APIC timer's rate.
pub const APIC_BUS_HZ: u64 = 25_000_000;

/// A vCPU's LAPIC at reset: APIC ID = vCPU index, vCPU 0 the bootstrap processor with its
/// LINT0 in virtual-wire (ExtINT) mode, as firmware leaves it.
pub fn new_lapic(index: u32, tsc_hz: u64, phys_bits: u8) -> Lapic {
    let mut lapic = Lapic::new(index, index == 0, basalt_devices::time::Timebase::new(tsc_hz), APIC_BUS_HZ);
    lapic.set_max_phys_bits(phys_bits);
    if index == 0 {
        lapic.firmware_lint0();
    }
    lapic
}

/// The guest's TSC now.
#[inline]
pub fn guest_now(vm: &VmState) -> u64 {
    (vm.host.now)().wrapping_add(vm.tsc_offset)
}

/// Whether guest-physical `gpa` is this vCPU's xAPIC register page.
#[inline]
pub fn is_xapic(vm: &VmState, gpa: u64) -> bool {
    vm.lapic.mode() == Mode::XApic && gpa & !0xFFF == vm.lapic.base_address()
}

/// Act on what a LAPIC access asked for, and publish the LAPIC's destination state.
pub fn after_access(vm: &mut VmState, action: Option<Action>) {
    vm.shared.vcpus[vm.vcpu as usize].publish_apic(vm.lapic.destination_state());
    match action {
        Some(Action::Ipi(msg)) => send(vm, &msg),
        Some(Action::Eoi { vector }) => {
            let messages: Vec<InterruptMessage> = {
                let mut irq = vm.shared.irq.lock();
                irq.eoi(vector);
                irq.take_messages().collect()
            };
            for m in &messages {
                send(vm, m);
            }
        }
        None => {}
    }
}

/// Deliver what the interrupt router queued (after this vCPU touched a device), and tell
/// vCPU 0 when the PIC's INTR is up (the PIC reaches the CPU through vCPU 0's LINT0).
pub fn drain_router(vm: &mut VmState) {
    let (messages, pic): (Vec<InterruptMessage>, bool) = {
        let mut irq = vm.shared.irq.lock();
        let pic = irq.pic_intr();
        if !irq.has_messages() {
            (Vec::new(), pic)
        } else {
            (irq.take_messages().collect(), pic)
        }
    };
    if pic && vm.vcpu != 0 {
        let bsp = &vm.shared.vcpus[0];
        vm.shared.kick(bsp.request(request::EVENT));
    }
    for m in &messages {
        send(vm, m);
    }
}

/// Send an interrupt message from this vCPU (an IPI it wrote, or an IOAPIC message it drained)
/// to every vCPU its destination selects: this vCPU's own LAPIC directly, the others through
/// their shared state and a kick. Lowest priority goes to the first vCPU selected. An IPI to
/// a vCPU that does not exist reaches nobody, as on a real bus.
pub fn send(vm: &mut VmState, msg: &InterruptMessage) {
    let me = vm.vcpu as usize;
    let shared = vm.shared.clone();
    for (i, target) in shared.vcpus.iter().enumerate() {
        let selected = match msg.destination {
            Destination::This => i == me,
            Destination::AllExcludingSelf => i != me,
            Destination::AllIncludingSelf => true,
            d if i == me => vm.lapic.matches(d),
            d => target.apic_matches(d),
        };
        if !selected {
            continue;
        }
        if i == me {
            vm.lapic.deliver(msg);
        } else {
            let kick = match msg.delivery {
                DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                    target.post(msg.vector, msg.level_triggered)
                }
                DeliveryMode::Nmi => target.request(request::NMI),
                DeliveryMode::Init if msg.assert => target.request(request::INIT),
                DeliveryMode::StartUp => target.sipi(msg.vector),
                _ => None,
            };
            shared.kick(kick);
        }
        if msg.delivery == DeliveryMode::LowestPriority {
            break;
        }
    }
}

/// The interrupts the CPU can take: its LAPIC's, and on vCPU 0 the PIC's through LINT0 in
/// ExtINT (virtual wire) mode or with the APIC globally disabled.
pub struct Sources<'a> {
    pub lapic: &'a mut Lapic,
    pub pic: Option<&'a spin::Mutex<basalt_devices::router::IrqRouter>>,
}

impl super::events::InterruptSource for Sources<'_> {
    #[inline]
    fn pending(&self) -> Option<u8> {
        self.lapic.pending_interrupt().or_else(|| {
            let pic = self.pic.filter(|_| self.lapic.pic_accepted())?;
            // The PIC's vector is known only at INTA; any value says "one is pending".
            pic.lock().pic_intr().then_some(0)
        })
    }
    fn acknowledge(&mut self) -> Option<u8> {
        if self.lapic.pending_interrupt().is_some() {
            return self.lapic.acknowledge();
        }
        let pic = self.pic.filter(|_| self.lapic.pic_accepted())?;
        let mut irq = pic.lock();
        irq.pic_intr().then(|| irq.pic_acknowledge())
    }
}

/// Before an entry: fire the LAPIC timer if it is due, and take the NMI and INIT the LAPIC
/// received (from itself: a self-IPI or LINT1).
#[inline]
pub fn before_entry(vm: &mut VmState) {
    // vCPU 0 keeps the VM's device clocks (PIT, RTC...) and wakes for them.
    if vm.vcpu == 0 && vm.shared.platform.deadline() != u64::MAX {
        let now = guest_now(vm);
        if now >= vm.shared.platform.deadline() {
            let shared = vm.shared.clone();
            shared.platform.advance(now, 0, &shared.irq);
            drain_router(vm);
        }
    }
    if let Some(deadline) = vm.lapic.timer_deadline() {
        let now = guest_now(vm);
        if now >= deadline {
            vm.lapic.advance_to(now);
        }
    }
    if vm.lapic.take_nmi() {
        vm.events.nmi();
    }
    if vm.lapic.take_init() {
        let _ = vm.shared.vcpus[vm.vcpu as usize].request(request::INIT);
    }
}
