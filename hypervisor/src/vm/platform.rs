//! A VM's PC platform beyond the interrupt router (which `vcpus::VmShared::irq` holds): its
//! port and MMIO buses, built once from the configuration, and the devices that keep time.
//! Devices raise lines into a buffer during an access or an advance, applied to the router
//! once the device's and the bus's locks are released, so the router's lock never nests with
//! theirs.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use basalt_devices::bus::{Ctx, Effect, MmioBus, MmioDevice, PortBus, PortDevice, Timed};
use basalt_devices::irq::{IrqSink, RecordingSink};
use basalt_devices::router::IrqRouter;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;

/// A device shared between a bus and the timed list: the bus calls it through this.
pub struct Shared<T: ?Sized>(pub Arc<Mutex<T>>);

impl<T: PortDevice + ?Sized> PortDevice for Shared<T> {
    fn read(&mut self, ctx: &mut Ctx<'_>, offset: u16, data: &mut [u8]) {
        self.0.lock().read(ctx, offset, data)
    }
    fn write(&mut self, ctx: &mut Ctx<'_>, offset: u16, data: &[u8]) -> Effect {
        self.0.lock().write(ctx, offset, data)
    }
}

impl<T: MmioDevice + ?Sized> MmioDevice for Shared<T> {
    fn read(&mut self, ctx: &mut Ctx<'_>, offset: u64, data: &mut [u8]) {
        self.0.lock().read(ctx, offset, data)
    }
    fn write(&mut self, ctx: &mut Ctx<'_>, offset: u64, data: &[u8]) -> Effect {
        self.0.lock().write(ctx, offset, data)
    }
}

/// One console line out (escaped by the console as guest text), and the buffer emptied.
fn emit(line: &mut Vec<u8>, out: &mut dyn FnMut(&str)) {
    out(&alloc::string::String::from_utf8_lossy(line));
    line.clear();
}

/// Apply the line changes an access or advance recorded, in order.
pub fn apply(lines: RecordingSink, irq: &Mutex<IrqRouter>) {
    if lines.events.is_empty() {
        return;
    }
    let mut router = irq.lock();
    for (gsi, source, level) in lines.events {
        router.set_level(gsi, source, level);
    }
}

/// A timed device, as the platform advances it.
pub type TimedDevice = Arc<Mutex<dyn Timed + Send>>;

/// The buses and timed devices of one VM.
#[derive(Default)]
pub struct Platform {
    pub ports: Mutex<PortBus>,
    pub mmio: Mutex<MmioBus>,
    timed: Vec<TimedDevice>,
    /// The port ranges of `ports` (fixed once built), to ask without its lock.
    port_ranges: basalt_devices::bus::RangeTable,
    /// The nearest deadline of the timed devices (guest TSC; u64::MAX: none), kept current
    /// after every access and advance so the exit path reads one atomic.
    next: AtomicU64,
    /// The UART whose output is the VM's console.
    console: Option<ConsoleUart>,
}

/// The UART behind a VM's console lines, and the line it is part-way through.
struct ConsoleUart {
    base: u16,
    len: u16,
    uart: Arc<Mutex<basalt_devices::uart::Uart>>,
    line: Mutex<Vec<u8>>,
}

/// The longest console line; a longer one is cut into lines of this length.
pub const CONSOLE_LINE_MAX: usize = 512;

impl Platform {
    pub fn new() -> Self {
        Platform { next: AtomicU64::new(u64::MAX), ..Default::default() }
    }

    /// Add a port device (and, if it keeps time, to the timed list).
    pub fn add_port(
        &mut self,
        base: u16,
        len: u16,
        dev: Box<dyn PortDevice>,
    ) -> Result<(), basalt_devices::bus::BusError> {
        self.port_ranges.insert(base as u64, len as u64, 0)?;
        self.ports.get_mut().add(base, len, dev)
    }

    /// Whether a device decodes an access of `len` bytes at `port`.
    #[inline]
    pub fn claims_port(&self, port: u16, len: u8) -> bool {
        self.port_ranges.lookup(port as u64, len as u64).is_some()
    }

    pub fn add_mmio(
        &mut self,
        base: u64,
        len: u64,
        dev: Box<dyn MmioDevice>,
    ) -> Result<(), basalt_devices::bus::BusError> {
        self.mmio.get_mut().add(base, len, dev)
    }

    pub fn add_timed(&mut self, dev: TimedDevice) {
        self.timed.push(dev);
        self.refresh();
    }

    /// Make the UART at ports `base..base + len` the VM's console.
    pub fn set_console(&mut self, base: u16, len: u16, uart: Arc<Mutex<basalt_devices::uart::Uart>>) {
        self.console = Some(ConsoleUart { base, len, uart, line: Mutex::new(Vec::new()) });
    }

    /// After an access at `port`: what the console UART sent, as whole lines to `out` (without
    /// the newline; carriage returns dropped). A partial line waits for the rest.
    pub fn console_output(&self, port: u16, out: &mut dyn FnMut(&str)) {
        let Some(c) = &self.console else { return };
        if port < c.base || port >= c.base + c.len {
            return;
        }
        let bytes = c.uart.lock().take_output();
        if bytes.is_empty() {
            return;
        }
        let mut line = c.line.lock();
        for b in bytes {
            match b {
                b'\n' => emit(&mut line, out),
                b'\r' => {}
                b => {
                    line.push(b);
                    if line.len() >= CONSOLE_LINE_MAX {
                        emit(&mut line, out);
                    }
                }
            }
        }
    }

    /// The console's partial line, if any (when the VM ends).
    pub fn flush_console(&self, out: &mut dyn FnMut(&str)) {
        if let Some(c) = &self.console {
            let mut line = c.line.lock();
            if !line.is_empty() {
                emit(&mut line, out);
            }
        }
    }

    /// The guest TSC by which the timed devices next need `advance`.
    #[inline]
    pub fn deadline(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    /// Recompute the nearest deadline (after an access that may have changed one).
    pub fn refresh(&self) {
        let next = self.timed.iter().filter_map(|d| d.lock().deadline()).min().unwrap_or(u64::MAX);
        self.next.store(next, Ordering::Relaxed);
    }

    /// Fire what is due at guest TSC `now` into the router.
    pub fn advance(&self, now: u64, vcpu: u32, irq: &Mutex<IrqRouter>) {
        let mut lines = RecordingSink::default();
        for d in &self.timed {
            let mut d = d.lock();
            if d.deadline().is_some_and(|t| t <= now) {
                d.advance(&mut Ctx { now, vcpu, irq: &mut lines });
            }
        }
        self.refresh();
        apply(lines, irq);
    }

    /// A port access through the bus; `None` if no device holds it.
    pub fn port(
        &self,
        irq: &Mutex<IrqRouter>,
        now: u64,
        vcpu: u32,
        port: u16,
        data: &mut [u8],
        write: bool,
    ) -> Option<Effect> {
        self.access(irq, now, vcpu, |ctx| {
            let mut bus = self.ports.lock();
            if write {
                bus.write(ctx, port, data)
            } else {
                bus.read(ctx, port, data).then_some(Effect::None)
            }
        })
    }

    /// Whether an MMIO access of `len` bytes at `gpa` is a bus device's.
    pub fn claims_mmio(&self, gpa: u64, len: u64) -> bool {
        self.mmio.lock().claims(gpa, len)
    }

    /// An MMIO access through the bus; `None` if no device holds it.
    pub fn mmio(
        &self,
        irq: &Mutex<IrqRouter>,
        now: u64,
        vcpu: u32,
        gpa: u64,
        data: &mut [u8],
        write: bool,
    ) -> Option<Effect> {
        self.access(irq, now, vcpu, |ctx| {
            let mut bus = self.mmio.lock();
            if write {
                bus.write(ctx, gpa, data)
            } else {
                bus.read(ctx, gpa, data).then_some(Effect::None)
            }
        })
    }

    /// One bus access: the lines it raises are applied to the router after the bus's and the
    /// device's locks are released, and the timed devices' deadline is recomputed.
    fn access(
        &self,
        irq: &Mutex<IrqRouter>,
        now: u64,
        vcpu: u32,
        on_bus: impl FnOnce(&mut Ctx<'_>) -> Option<Effect>,
    ) -> Option<Effect> {
        let mut lines = RecordingSink::default();
        let effect = on_bus(&mut Ctx { now, vcpu, irq: &mut lines });
        apply(lines, irq);
        if effect.is_some() && !self.timed.is_empty() {
            self.refresh();
        }
        effect
    }
}
