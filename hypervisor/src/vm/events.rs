//! One event queue per vCPU, above the backends (SDM 6.7-6.15, 27.6; APM 15.20): pending
//! external interrupts (an IRR of 256 bits, highest vector first), one pending exception, and
//! the event a VM exit cut short. Before each entry [`EventQueue::next`] picks exactly one event
//! for the backend to inject, so nothing queued is overwritten or lost, and says when to ask
//! for an interrupt window.

use basalt_arch::virt::{Event, EventKind, InterruptedEvent};

/// Exception classes for the double-fault rules (SDM Vol. 3A Table 6-4 and 6-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Benign,
    Contributory,
    PageFault,
    DoubleFault,
}

fn class(vector: u8) -> Class {
    match vector {
        0 | 10 | 11 | 12 | 13 => Class::Contributory,
        14 => Class::PageFault,
        8 => Class::DoubleFault,
        _ => Class::Benign,
    }
}

/// An exception raised while another was being delivered that shuts the guest down (a triple
/// fault: a contributory exception or #PF while delivering #DF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TripleFault;

/// What the next entry needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entry {
    /// The one event to inject.
    pub inject: Option<Event>,
    /// `Some(on)`: turn the interrupt-window request on or off (it changed).
    pub window: Option<bool>,
    /// `Some(on)`: turn the NMI-window request on or off (it changed).
    pub nmi_window: Option<bool>,
}

/// Where external interrupts come from besides the queue's own IRR: the vCPU's local APIC.
pub trait InterruptSource {
    /// The vector the CPU would take now, if any (above the APIC's priority).
    fn pending(&self) -> Option<u8>;
    /// The CPU takes it (INTA): it moves to in-service.
    fn acknowledge(&mut self) -> Option<u8>;
}

/// No interrupt source (host tests).
pub struct NoSource;

impl InterruptSource for NoSource {
    fn pending(&self) -> Option<u8> {
        None
    }
    fn acknowledge(&mut self) -> Option<u8> {
        None
    }
}

impl InterruptSource for basalt_devices::lapic::Lapic {
    #[inline]
    fn pending(&self) -> Option<u8> {
        self.pending_interrupt()
    }
    fn acknowledge(&mut self) -> Option<u8> {
        basalt_devices::lapic::Lapic::acknowledge(self)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQueue {
    irr: [u64; 4],
    exception: Option<(u8, Option<u32>)>,
    nmi: bool,
    redeliver: Option<InterruptedEvent>,
    window: bool,
    nmi_window: bool,
    /// Anything to do before the next entry (kept so the exit path tests one bool).
    busy: bool,
}

impl EventQueue {
    /// Make external interrupt `vector` pending (it stays pending until injected, however
    /// many others arrive).
    pub fn interrupt(&mut self, vector: u8) {
        self.irr[vector as usize / 64] |= 1 << (vector % 64);
        self.busy = true;
    }

    /// Whether an external interrupt is pending (a halted vCPU wakes for it).
    pub fn has_interrupt(&self) -> bool {
        self.irr.iter().any(|&w| w != 0)
    }

    /// Whether a halted vCPU has something to wake for: an NMI, or an interrupt if its
    /// RFLAGS.IF is set (`if_set`).
    pub fn has_wakeup(&self, if_set: bool) -> bool {
        self.nmi || (if_set && self.has_interrupt())
    }

    fn highest_interrupt(&self) -> Option<u8> {
        (0..4)
            .rev()
            .find(|&i| self.irr[i] != 0)
            .map(|i| (i * 64 + 63 - self.irr[i].leading_zeros() as usize) as u8)
    }

    /// Make an NMI pending (one at a time, like the CPU's NMI latch).
    pub fn nmi(&mut self) {
        self.nmi = true;
        self.busy = true;
    }

    /// The event the last exit interrupted: it is delivered again at the next entry.
    #[inline]
    pub fn interrupted(&mut self, event: InterruptedEvent) {
        self.redeliver = Some(event);
        self.busy = true;
    }

    /// The event queued for redelivery, if any (for a handler that must know what the exit cut
    /// short).
    pub fn interrupted_event(&self) -> Option<InterruptedEvent> {
        self.redeliver
    }

    /// Raise a hardware exception for the next entry. If it happened while another event was
    /// being delivered, the SDM's rules decide: a contributory exception or #PF during a
    /// contributory exception or #PF becomes #DF, either during #DF is a triple fault, and
    /// otherwise the new exception is delivered and the interrupted event is not lost (an
    /// external interrupt goes back to the IRR; an exception or software event recurs when
    /// its instruction runs again).
    pub fn exception(&mut self, vector: u8, error_code: Option<u32>) -> Result<(), TripleFault> {
        let first = self.redeliver.take().and_then(|e| match e.kind {
            EventKind::External => {
                self.interrupt(e.vector);
                None
            }
            EventKind::Exception => Some(e.vector),
            _ => None,
        });
        let first = first.or(self.exception.map(|(v, _)| v));
        let (vector, error_code) = match first.map(class) {
            Some(Class::DoubleFault) if class(vector) != Class::Benign => return Err(TripleFault),
            Some(Class::Contributory) if class(vector) == Class::Contributory => (8, Some(0)),
            Some(Class::PageFault) if matches!(class(vector), Class::Contributory | Class::PageFault) => {
                (8, Some(0))
            }
            _ => (vector, error_code),
        };
        self.exception = Some((vector, error_code));
        self.busy = true;
        Ok(())
    }

    /// The event to inject at the next entry and the window changes, given whether the guest
    /// can take an external interrupt now and whether NMIs are blocked (it is still in an NMI
    /// handler, or in an STI/MOV SS shadow). The redelivered event comes first, then a raised
    /// exception, then an NMI, then the highest pending interrupt; an NMI or interrupt that
    /// cannot go now asks for its window.
    #[inline]
    pub fn next(
        &mut self,
        interruptible: impl FnOnce() -> bool,
        nmi_blocked: impl FnOnce() -> bool,
        source: &mut impl InterruptSource,
    ) -> Entry {
        let from_source = source.pending();
        if !self.busy && from_source.is_none() {
            return Entry::default();
        }
        let mut want_nmi_window = false;
        let inject = if let Some(e) = self.redeliver.take() {
            want_nmi_window = self.nmi;
            Some(Event::Redeliver(e))
        } else if let Some((vector, error_code)) = self.exception.take() {
            want_nmi_window = self.nmi;
            Some(Event::Exception { vector, error_code })
        } else if self.nmi && nmi_blocked() {
            want_nmi_window = true;
            None
        } else if core::mem::take(&mut self.nmi) {
            Some(Event::Nmi)
        } else {
            None
        };
        let mut want_window = false;
        // The queue's own interrupts (raised through a ucall) first, then the local APIC's.
        let own = self.highest_interrupt();
        let inject = match (inject, own.or(from_source)) {
            (Some(e), v) => {
                want_window = v.is_some();
                Some(e)
            }
            (None, Some(v)) if interruptible() => match own {
                Some(_) => {
                    self.irr[v as usize / 64] &= !(1 << (v % 64));
                    want_window = self.has_interrupt() || from_source.is_some();
                    Some(Event::Interrupt { vector: v })
                }
                None => source.acknowledge().map(|vector| {
                    want_window = source.pending().is_some();
                    Event::Interrupt { vector }
                }),
            },
            (None, Some(_)) => {
                want_window = true;
                None
            }
            (None, None) => None,
        };
        let window = (want_window != self.window).then_some(want_window);
        self.window = want_window;
        let nmi_window = (want_nmi_window != self.nmi_window).then_some(want_nmi_window);
        self.nmi_window = want_nmi_window;
        self.busy = self.redeliver.is_some()
            || self.exception.is_some()
            || self.nmi
            || self.has_interrupt()
            || self.window
            || self.nmi_window;
        Entry { inject, window, nmi_window }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exc(vector: u8, error_code: Option<u32>) -> Option<Event> {
        Some(Event::Exception { vector, error_code })
    }
    fn interrupted(kind: EventKind, vector: u8) -> InterruptedEvent {
        InterruptedEvent { kind, vector, error_code: None, instruction_len: 0 }
    }

    #[test]
    fn nothing_queued_injects_nothing() {
        let mut q = EventQueue::default();
        assert_eq!(q.next(|| true, || false, &mut NoSource), Entry::default());
    }

    #[test]
    fn interrupts_are_kept_and_go_highest_first() {
        let mut q = EventQueue::default();
        q.interrupt(0x40);
        q.interrupt(0x80);
        q.interrupt(0x40);
        assert!(q.has_interrupt());
        // Not interruptible: nothing injected, a window asked for once.
        assert_eq!(
            q.next(|| false, || false, &mut NoSource),
            Entry { inject: None, window: Some(true), nmi_window: None }
        );
        assert_eq!(
            q.next(|| false, || false, &mut NoSource),
            Entry { inject: None, window: None, nmi_window: None }
        );
        assert_eq!(
            q.next(|| true, || false, &mut NoSource),
            Entry { inject: Some(Event::Interrupt { vector: 0x80 }), window: None, nmi_window: None }
        );
        // The second raised interrupt was not replaced by the first.
        assert_eq!(
            q.next(|| true, || false, &mut NoSource),
            Entry { inject: Some(Event::Interrupt { vector: 0x40 }), window: Some(false), nmi_window: None }
        );
        assert!(!q.has_interrupt());
        assert_eq!(q.next(|| true, || false, &mut NoSource), Entry::default());
    }

    #[test]
    fn one_event_per_entry_redelivery_first() {
        let mut q = EventQueue::default();
        q.interrupt(0x30);
        let pf = InterruptedEvent {
            kind: EventKind::Exception,
            vector: 14,
            error_code: Some(2),
            instruction_len: 0,
        };
        q.interrupted(pf);
        let e = q.next(|| true, || false, &mut NoSource);
        assert_eq!(
            e,
            Entry { inject: Some(Event::Redeliver(pf)), window: Some(true), nmi_window: None },
            "the interrupt waits"
        );
        assert_eq!(q.next(|| true, || false, &mut NoSource).inject, Some(Event::Interrupt { vector: 0x30 }));
    }

    #[test]
    fn an_interrupted_external_interrupt_is_not_lost_to_an_exception() {
        let mut q = EventQueue::default();
        q.interrupted(interrupted(EventKind::External, 0x41));
        q.exception(1, None).unwrap();
        assert_eq!(q.next(|| true, || false, &mut NoSource).inject, exc(1, None));
        assert_eq!(q.next(|| true, || false, &mut NoSource).inject, Some(Event::Interrupt { vector: 0x41 }));
    }

    #[test]
    fn double_and_triple_fault_rules() {
        // #GP while delivering #PF: #DF.
        let mut q = EventQueue::default();
        q.interrupted(interrupted(EventKind::Exception, 14));
        q.exception(13, Some(0)).unwrap();
        assert_eq!(q.next(|| true, || false, &mut NoSource).inject, exc(8, Some(0)));
        // #PF while delivering #GP: serially, the #PF (Table 6-5). #GP while delivering #DE: #DF.
        let mut q = EventQueue::default();
        q.interrupted(interrupted(EventKind::Exception, 13));
        q.exception(14, Some(2)).unwrap();
        assert_eq!(q.next(|| true, || false, &mut NoSource).inject, exc(14, Some(2)));
        let mut q = EventQueue::default();
        q.interrupted(interrupted(EventKind::Exception, 0));
        q.exception(13, Some(0)).unwrap();
        assert_eq!(q.next(|| true, || false, &mut NoSource).inject, exc(8, Some(0)));
        // #PF while delivering #DF: triple fault.
        let mut q = EventQueue::default();
        q.interrupted(interrupted(EventKind::Exception, 8));
        assert_eq!(q.exception(14, Some(0)), Err(TripleFault));
        // #AC while delivering #AC (benign): delivered serially, the new one replaces it.
        let mut q = EventQueue::default();
        q.interrupted(interrupted(EventKind::Exception, 17));
        q.exception(17, Some(0)).unwrap();
        assert_eq!(q.next(|| true, || false, &mut NoSource).inject, exc(17, Some(0)));
        assert_eq!(q.next(|| true, || false, &mut NoSource).inject, None);
        // #GP while delivering #PF queued by a handler (no exit in between) also gives #DF.
        let mut q = EventQueue::default();
        q.exception(14, Some(0)).unwrap();
        q.exception(13, Some(0)).unwrap();
        assert_eq!(q.next(|| true, || false, &mut NoSource).inject, exc(8, Some(0)));
    }

    #[test]
    fn an_nmi_comes_after_an_exception_and_before_interrupts() {
        let mut q = EventQueue::default();
        q.interrupt(0x50);
        q.nmi();
        q.exception(6, None).unwrap();
        assert_eq!(q.next(|| true, || false, &mut NoSource).inject, exc(6, None));
        assert_eq!(q.next(|| true, || false, &mut NoSource).inject, Some(Event::Nmi));
        assert_eq!(q.next(|| true, || false, &mut NoSource).inject, Some(Event::Interrupt { vector: 0x50 }));
        assert_eq!(q.next(|| true, || false, &mut NoSource), Entry::default());
    }

    #[test]
    fn an_nmi_waits_for_its_window_while_nmis_are_blocked() {
        let mut q = EventQueue::default();
        q.nmi();
        q.interrupt(0x60);
        // Still in the guest's NMI handler: nothing for the NMI, the window asked for once; the
        // interrupt is not held up by it.
        let e = q.next(|| true, || true, &mut NoSource);
        assert_eq!(e.inject, Some(Event::Interrupt { vector: 0x60 }));
        assert_eq!(e.nmi_window, Some(true));
        assert_eq!(q.next(|| true, || true, &mut NoSource), Entry::default());
        // The handler's IRET opened the window: the NMI goes, the window request ends.
        assert_eq!(
            q.next(|| true, || false, &mut NoSource),
            Entry { inject: Some(Event::Nmi), window: None, nmi_window: Some(false) }
        );
        assert_eq!(q.next(|| true, || false, &mut NoSource), Entry::default());
    }

    #[test]
    fn software_events_are_redelivered_with_their_length() {
        let mut q = EventQueue::default();
        let int3 = InterruptedEvent {
            kind: EventKind::SoftwareException,
            vector: 3,
            error_code: None,
            instruction_len: 1,
        };
        q.interrupted(int3);
        assert_eq!(q.next(|| false, || false, &mut NoSource).inject, Some(Event::Redeliver(int3)));
    }
}
