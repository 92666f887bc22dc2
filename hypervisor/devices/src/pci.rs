//! The PCI host bridge: configuration mechanism 1 (ports 0xCF8-0xCFF) and ECAM (MMIO), both
//! views of one configuration space.
//!
//! # Registration
//! - Ports: one [`PciPorts`] owns `0xCF8..0xD00` ([`PCI_PORT_BASE`], [`PCI_PORT_LEN`]). The
//!   reset control register at 0xCF9 sits inside the config-address dword, so the PCI device
//!   forwards byte accesses at 0xCF9 to the [`ResetControl`] it holds (writes with RST_CPU give
//!   [`Effect::Reset`]); nothing else may be registered at 0xCF9.
//! - MMIO: one [`PciEcam`] at [`EcamWindow::base`] for [`EcamWindow::len`] bytes (1 MiB a bus).
//!   The default window is [`ECAM_DEFAULT_BASE`] (0xB000_0000, as on QEMU's Q35) for 256 buses:
//!   256 MiB, up to 0xBFFF_FFFF. The VM core marks it reserved in the E820 map; the DSDT also
//!   reserves it as a motherboard resource.
//!
//! [`PciHost::new`] builds the host with the host bridge at 00:00.0; [`PciHost::into_devices`]
//! splits it into the two bus faces, sharing one locked [`PciHost`].
//!
//! # Config mechanism 1
//! CONFIG_ADDRESS (0xCF8) is a 32-bit register: only dword accesses at 0xCF8 reach it. Bit 31
//! enables, bits 23:16 bus, 15:11 device, 10:8 function, 7:2 dword; the reserved bits 30:24
//! and 1:0 read 0. Byte and word accesses to 0xCF8-0xCFB are not config-address accesses (Linux's
//! `pci_check_type1` probes this way): byte writes are dropped and reads give all ones, except
//! the byte at 0xCF9. CONFIG_DATA (0xCFC-0xCFF) takes any width at any byte offset that stays
//! in the dword; with the enable bit clear it reads all ones and drops writes.
//!
//! # Functions
//! Every absent device/function reads all ones and drops writes. A present function is a
//! [`PciFunction`]; [`ConfigSpace`] is a table-driven one (values plus a writable mask) that
//! serves the host bridge and will serve simple emulated or passed-through functions. Registers
//! a present function does not implement read 0, as the PCI spec asks of reserved registers
//! (so a 0 at 0x100 ends the extended capability list).

use crate::bus::{Ctx, Effect, MmioDevice, PortDevice};
use crate::power::ResetControl;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use spin::Mutex;

/// The first port of the config mechanism 1 range.
pub const PCI_PORT_BASE: u16 = 0xCF8;
/// The ports the PCI device owns: 0xCF8-0xCFF, the reset control register 0xCF9 included.
pub const PCI_PORT_LEN: u16 = 8;
/// Where ECAM sits by default (Q35's choice).
pub const ECAM_DEFAULT_BASE: u64 = 0xB000_0000;
/// How many buses the default window covers.
pub const ECAM_DEFAULT_BUSES: u16 = 256;
/// The bytes of ECAM space one bus takes.
pub const ECAM_BUS_SIZE: u64 = 1 << 20;
/// The bytes of config space one function has through ECAM (through mechanism 1: 256).
pub const CONFIG_SPACE_SIZE: u16 = 4096;

/// CONFIG_ADDRESS bit 31.
pub const CONFIG_ENABLE: u32 = 1 << 31;
/// The CONFIG_ADDRESS bits that hold state: enable, bus, device, function, dword.
const CONFIG_ADDRESS_MASK: u32 = CONFIG_ENABLE | 0x00FF_FFFC;

/// The host bridge's identity: Intel's Q35 DRAM controller (what OSes know as a plain host
/// bridge and what Linux's `pci_sanity_check` accepts, by class and by vendor).
pub const HOST_BRIDGE_VENDOR: u16 = 0x8086;
pub const HOST_BRIDGE_DEVICE: u16 = 0x29C0;

/// A bus/device/function address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf(u16);

impl Bdf {
    /// `None` if the device is over 31 or the function over 7.
    pub const fn new(bus: u8, device: u8, function: u8) -> Option<Bdf> {
        if device > 31 || function > 7 {
            return None;
        }
        Some(Bdf(((bus as u16) << 8) | ((device as u16) << 3) | function as u16))
    }
    /// From the 16-bit routing ID (bus << 8 | device << 3 | function).
    pub const fn from_raw(raw: u16) -> Bdf {
        Bdf(raw)
    }
    pub const fn raw(self) -> u16 {
        self.0
    }
    pub const fn bus(self) -> u8 {
        (self.0 >> 8) as u8
    }
    pub const fn device(self) -> u8 {
        ((self.0 >> 3) & 31) as u8
    }
    pub const fn function(self) -> u8 {
        (self.0 & 7) as u8
    }
}

/// One PCI function's configuration space, as the host bridge sees it. Offsets are
/// dword-aligned and below [`CONFIG_SPACE_SIZE`]; the host splits every access into dwords.
pub trait PciFunction: Send {
    /// The dword at `offset`.
    fn read_dword(&mut self, offset: u16) -> u32;
    /// Write the bytes of `value` whose bits are set in `byte_mask` (bit i: byte i) to the
    /// dword at `offset`.
    fn write_dword(&mut self, offset: u16, value: u32, byte_mask: u8) -> Effect;
}

/// A table-driven function: 256 bytes of values, a mask of the bits software may write, and a
/// mask of the bits that are write-1-to-clear (status bits). Extended space (0x100-0xFFF)
/// reads 0.
#[derive(Clone)]
pub struct ConfigSpace {
    bytes: [u8; 256],
    writable: [u8; 256],
    w1c: [u8; 256],
}

impl ConfigSpace {
    /// A type-0 header with these IDs, class code (base, sub, prog-if) and revision; nothing is
    /// writable yet and every other register is 0 (so no BARs, no capabilities, no interrupt
    /// pin).
    pub fn new(vendor: u16, device: u16, class: [u8; 3], revision: u8) -> Self {
        let mut c = ConfigSpace { bytes: [0; 256], writable: [0; 256], w1c: [0; 256] };
        c.set_u16(0x00, vendor);
        c.set_u16(0x02, device);
        c.bytes[0x08] = revision;
        c.bytes[0x09] = class[2];
        c.bytes[0x0A] = class[1];
        c.bytes[0x0B] = class[0];
        c
    }

    /// The host bridge at 00:00.0: class 06/00/00, header type 0 (single function), command
    /// memory + bus master enabled and writable along with parity/SERR, status 0, no BARs, cache
    /// line size and latency timer writable (as software expects of any function).
    pub fn host_bridge() -> Self {
        let mut c = ConfigSpace::new(HOST_BRIDGE_VENDOR, HOST_BRIDGE_DEVICE, [0x06, 0x00, 0x00], 0);
        c.set_u16(0x04, 0x0006);
        c.set_writable_u16(0x04, 0x0147);
        // Status: the error bits are write-1-to-clear (none is ever set here).
        c.set_w1c_u16(0x06, 0xF900);
        c.writable[0x0C] = 0xFF;
        c.writable[0x0D] = 0xFF;
        c
    }

    pub fn set_u8(&mut self, offset: u8, v: u8) {
        self.bytes[offset as usize] = v;
    }
    pub fn set_u16(&mut self, offset: u8, v: u16) {
        self.set_bytes(offset, &v.to_le_bytes());
    }
    pub fn set_u32(&mut self, offset: u8, v: u32) {
        self.set_bytes(offset, &v.to_le_bytes());
    }
    fn set_bytes(&mut self, offset: u8, v: &[u8]) {
        for (i, b) in v.iter().enumerate() {
            if let Some(slot) = self.bytes.get_mut(offset as usize + i) {
                *slot = *b;
            }
        }
    }
    /// Make the bits of `mask` at `offset` writable.
    pub fn set_writable_u16(&mut self, offset: u8, mask: u16) {
        for (i, b) in mask.to_le_bytes().iter().enumerate() {
            if let Some(slot) = self.writable.get_mut(offset as usize + i) {
                *slot = *b;
            }
        }
    }
    /// Make the bits of `mask` at `offset` write-1-to-clear.
    pub fn set_w1c_u16(&mut self, offset: u8, mask: u16) {
        for (i, b) in mask.to_le_bytes().iter().enumerate() {
            if let Some(slot) = self.w1c.get_mut(offset as usize + i) {
                *slot = *b;
            }
        }
    }
}

impl PciFunction for ConfigSpace {
    fn read_dword(&mut self, offset: u16) -> u32 {
        let o = (offset & !3) as usize;
        match self.bytes.get(o..o + 4) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            None => 0,
        }
    }

    fn write_dword(&mut self, offset: u16, value: u32, byte_mask: u8) -> Effect {
        let o = (offset & !3) as usize;
        if o + 4 > self.bytes.len() {
            return Effect::None;
        }
        for (i, v) in value.to_le_bytes().iter().enumerate() {
            if byte_mask & (1 << i) == 0 {
                continue;
            }
            let (w, c) = (self.writable[o + i], self.w1c[o + i]);
            let b = &mut self.bytes[o + i];
            *b = (*b & !w) | (v & w);
            *b &= !(v & c);
        }
        Effect::None
    }
}

/// Where ECAM sits and how many buses it covers (first bus 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcamWindow {
    /// Guest-physical base, 1 MiB aligned (bus 0's space).
    pub base: u64,
    /// Buses 0..buses, 1 to 256 (clamped).
    pub buses: u16,
}

impl Default for EcamWindow {
    fn default() -> Self {
        EcamWindow { base: ECAM_DEFAULT_BASE, buses: ECAM_DEFAULT_BUSES }
    }
}

impl EcamWindow {
    /// The number of buses, clamped to 1..=256.
    pub fn bus_count(&self) -> u16 {
        self.buses.clamp(1, 256)
    }
    /// The last bus number ECAM reaches.
    pub fn last_bus(&self) -> u8 {
        (self.bus_count() - 1) as u8
    }
    /// The bytes the window takes: the MMIO range to register.
    pub fn len(&self) -> u64 {
        self.bus_count() as u64 * ECAM_BUS_SIZE
    }
    /// Never empty (at least one bus).
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Why a function could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PciError {
    /// Something is already at that address.
    Occupied,
    /// The bus is past the ECAM window's last bus.
    BusOutOfRange,
}

/// The configuration space of PCI segment 0 and the state of mechanism 1.
pub struct PciHost {
    functions: BTreeMap<u16, Box<dyn PciFunction>>,
    /// CONFIG_ADDRESS, reserved bits cleared.
    address: u32,
    ecam: EcamWindow,
    reset: ResetControl,
}

impl PciHost {
    /// A host with the host bridge at 00:00.0.
    pub fn new(ecam: EcamWindow) -> Self {
        let mut h = PciHost { functions: BTreeMap::new(), address: 0, ecam, reset: ResetControl::new() };
        let bdf = Bdf::new(0, 0, 0).unwrap_or(Bdf(0));
        h.functions.insert(bdf.raw(), Box::new(ConfigSpace::host_bridge()));
        h
    }

    pub fn ecam(&self) -> EcamWindow {
        self.ecam
    }

    /// Put `function` at `bdf`. A multi-function device must set bit 7 of function 0's header
    /// type for OSes to look at functions 1-7.
    pub fn add_function(&mut self, bdf: Bdf, function: Box<dyn PciFunction>) -> Result<(), PciError> {
        if bdf.bus() > self.ecam.last_bus() {
            return Err(PciError::BusOutOfRange);
        }
        if self.functions.contains_key(&bdf.raw()) {
            return Err(PciError::Occupied);
        }
        self.functions.insert(bdf.raw(), function);
        Ok(())
    }

    /// Whether a function answers at `bdf`.
    pub fn present(&self, bdf: Bdf) -> bool {
        self.functions.contains_key(&bdf.raw())
    }

    /// The CONFIG_ADDRESS register as the guest reads it.
    pub fn config_address(&self) -> u32 {
        self.address
    }

    /// The reset control register at 0xCF9.
    pub fn reset_control(&self) -> &ResetControl {
        &self.reset
    }

    /// Read `data.len()` bytes of `bdf`'s config space from byte `offset`: all ones for an
    /// absent function or past [`CONFIG_SPACE_SIZE`].
    pub fn config_read(&mut self, bdf: Bdf, offset: u16, data: &mut [u8]) {
        data.fill(0xFF);
        let Some(f) = self.functions.get_mut(&bdf.raw()) else {
            return;
        };
        let mut cached: Option<(u16, [u8; 4])> = None;
        for (i, out) in data.iter_mut().enumerate() {
            let Some(at) = offset.checked_add(i as u16).filter(|a| *a < CONFIG_SPACE_SIZE) else {
                break;
            };
            let dword = at & !3;
            let bytes = match cached {
                Some((d, b)) if d == dword => b,
                _ => {
                    let b = f.read_dword(dword).to_le_bytes();
                    cached = Some((dword, b));
                    b
                }
            };
            *out = bytes[(at & 3) as usize];
        }
    }

    /// Write `data` to `bdf`'s config space at byte `offset`; dropped for an absent function.
    pub fn config_write(&mut self, bdf: Bdf, offset: u16, data: &[u8]) -> Effect {
        let Some(f) = self.functions.get_mut(&bdf.raw()) else {
            return Effect::None;
        };
        let mut effect = Effect::None;
        let mut i = 0usize;
        while i < data.len() {
            let Some(at) = offset.checked_add(i as u16).filter(|a| *a < CONFIG_SPACE_SIZE) else {
                break;
            };
            let dword = at & !3;
            let mut value = [0u8; 4];
            let mut mask = 0u8;
            while i < data.len() {
                let Some(a) = offset.checked_add(i as u16) else { break };
                if a & !3 != dword {
                    break;
                }
                value[(a & 3) as usize] = data[i];
                mask |= 1 << (a & 3);
                i += 1;
            }
            let e = f.write_dword(dword, u32::from_le_bytes(value), mask);
            if e != Effect::None {
                effect = e;
            }
        }
        effect
    }

    /// The function and register CONFIG_ADDRESS selects, if enabled.
    fn selected(&self) -> Option<(Bdf, u16)> {
        (self.address & CONFIG_ENABLE != 0)
            .then(|| (Bdf::from_raw((self.address >> 8) as u16), (self.address & 0xFC) as u16))
    }

    /// A port read, `offset` from 0xCF8.
    pub fn io_read(&mut self, offset: u16, data: &mut [u8]) {
        data.fill(0xFF);
        match (offset, data.len()) {
            (0, 4) => data.copy_from_slice(&self.address.to_le_bytes()),
            (1, 1) => data[0] = self.reset.read(),
            (4..=7, n) if offset as usize - 4 + n <= 4 => {
                if let Some((bdf, reg)) = self.selected() {
                    self.config_read(bdf, reg + (offset - 4), data);
                }
            }
            _ => {}
        }
    }

    /// A port write, `offset` from 0xCF8.
    pub fn io_write(&mut self, offset: u16, data: &[u8]) -> Effect {
        match (offset, data.len()) {
            (0, 4) => {
                let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                self.address = v & CONFIG_ADDRESS_MASK;
                Effect::None
            }
            (1, 1) => self.reset.write(data[0]),
            (4..=7, n) if offset as usize - 4 + n <= 4 => match self.selected() {
                Some((bdf, reg)) => self.config_write(bdf, reg + (offset - 4), data),
                None => Effect::None,
            },
            _ => Effect::None,
        }
    }

    /// The function and register an ECAM offset names, if within the window.
    fn ecam_target(&self, offset: u64) -> Option<(Bdf, u16)> {
        (offset < self.ecam.len()).then(|| (Bdf::from_raw((offset >> 12) as u16), (offset & 0xFFF) as u16))
    }

    /// An ECAM read, `offset` from the window's base.
    pub fn ecam_read(&mut self, offset: u64, data: &mut [u8]) {
        match self.ecam_target(offset) {
            Some((bdf, reg)) => self.config_read(bdf, reg, data),
            None => data.fill(0xFF),
        }
    }

    /// An ECAM write, `offset` from the window's base.
    pub fn ecam_write(&mut self, offset: u64, data: &[u8]) -> Effect {
        match self.ecam_target(offset) {
            Some((bdf, reg)) => self.config_write(bdf, reg, data),
            None => Effect::None,
        }
    }

    /// The two bus faces of this host, sharing it.
    pub fn into_devices(self) -> (PciPorts, PciEcam) {
        let shared = Arc::new(Mutex::new(self));
        (PciPorts(shared.clone()), PciEcam(shared))
    }
}

impl PortDevice for PciHost {
    fn read(&mut self, _ctx: &mut Ctx<'_>, offset: u16, data: &mut [u8]) {
        self.io_read(offset, data);
    }
    fn write(&mut self, _ctx: &mut Ctx<'_>, offset: u16, data: &[u8]) -> Effect {
        self.io_write(offset, data)
    }
}

impl MmioDevice for PciHost {
    fn read(&mut self, _ctx: &mut Ctx<'_>, offset: u64, data: &mut [u8]) {
        self.ecam_read(offset, data);
    }
    fn write(&mut self, _ctx: &mut Ctx<'_>, offset: u64, data: &[u8]) -> Effect {
        self.ecam_write(offset, data)
    }
}

/// The port face of a shared [`PciHost`]: register at [`PCI_PORT_BASE`] for [`PCI_PORT_LEN`].
#[derive(Clone)]
pub struct PciPorts(pub Arc<Mutex<PciHost>>);

/// The ECAM face of a shared [`PciHost`]: register at the window's base for its length.
#[derive(Clone)]
pub struct PciEcam(pub Arc<Mutex<PciHost>>);

impl PortDevice for PciPorts {
    fn read(&mut self, _ctx: &mut Ctx<'_>, offset: u16, data: &mut [u8]) {
        self.0.lock().io_read(offset, data);
    }
    fn write(&mut self, _ctx: &mut Ctx<'_>, offset: u16, data: &[u8]) -> Effect {
        self.0.lock().io_write(offset, data)
    }
}

impl MmioDevice for PciEcam {
    fn read(&mut self, _ctx: &mut Ctx<'_>, offset: u64, data: &mut [u8]) {
        self.0.lock().ecam_read(offset, data);
    }
    fn write(&mut self, _ctx: &mut Ctx<'_>, offset: u64, data: &[u8]) -> Effect {
        self.0.lock().ecam_write(offset, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(bus: u8, dev: u8, func: u8, reg: u8) -> u32 {
        CONFIG_ENABLE | (bus as u32) << 16 | (dev as u32) << 11 | (func as u32) << 8 | (reg as u32 & 0xFC)
    }
    fn outl(h: &mut PciHost, port: u16, v: u32) -> Effect {
        h.io_write(port - PCI_PORT_BASE, &v.to_le_bytes())
    }
    fn inl(h: &mut PciHost, port: u16) -> u32 {
        let mut b = [0; 4];
        h.io_read(port - PCI_PORT_BASE, &mut b);
        u32::from_le_bytes(b)
    }
    fn inw(h: &mut PciHost, port: u16) -> u16 {
        let mut b = [0; 2];
        h.io_read(port - PCI_PORT_BASE, &mut b);
        u16::from_le_bytes(b)
    }
    fn inb(h: &mut PciHost, port: u16) -> u8 {
        let mut b = [0; 1];
        h.io_read(port - PCI_PORT_BASE, &mut b);
        b[0]
    }
    fn outb(h: &mut PciHost, port: u16, v: u8) -> Effect {
        h.io_write(port - PCI_PORT_BASE, &[v])
    }
    fn conf1(h: &mut PciHost, bus: u8, dev: u8, func: u8, reg: u8) -> u32 {
        outl(h, 0xCF8, addr(bus, dev, func, reg));
        inl(h, 0xCFC)
    }
    fn ecam32(h: &mut PciHost, bus: u8, dev: u8, func: u8, reg: u16) -> u32 {
        let mut b = [0; 4];
        let off = (bus as u64) << 20 | (dev as u64) << 15 | (func as u64) << 12 | reg as u64;
        h.ecam_read(off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn host_bridge_identifies_itself() {
        let mut h = PciHost::new(EcamWindow::default());
        assert_eq!(conf1(&mut h, 0, 0, 0, 0x00), 0x29C0_8086);
        assert_eq!(conf1(&mut h, 0, 0, 0, 0x08) >> 8, 0x06_00_00);
        assert_eq!((conf1(&mut h, 0, 0, 0, 0x0C) >> 16) & 0xFF, 0, "header type 0, single function");
        assert_eq!(conf1(&mut h, 0, 0, 0, 0x04), 0x0000_0006);
        for bar in (0x10..0x28).step_by(4) {
            assert_eq!(conf1(&mut h, 0, 0, 0, bar), 0);
            outl(&mut h, 0xCFC, 0xFFFF_FFFF);
            assert_eq!(inl(&mut h, 0xCFC), 0, "BARs absent");
        }
        // Word and byte reads at every offset of the data port.
        outl(&mut h, 0xCF8, addr(0, 0, 0, 0));
        assert_eq!(inw(&mut h, 0xCFE), 0x29C0);
        assert_eq!(inb(&mut h, 0xCFD), 0x80);
        assert_eq!(inb(&mut h, 0xCFF), 0x29);
    }

    #[test]
    fn read_only_fields_stay_read_only() {
        let mut h = PciHost::new(EcamWindow::default());
        outl(&mut h, 0xCF8, addr(0, 0, 0, 0));
        outl(&mut h, 0xCFC, 0x1234_5678);
        assert_eq!(inl(&mut h, 0xCFC), 0x29C0_8086);
        outl(&mut h, 0xCF8, addr(0, 0, 0, 0x08));
        outl(&mut h, 0xCFC, 0);
        assert_eq!(inl(&mut h, 0xCFC) >> 8, 0x06_00_00);
        // Command: writable bits take, the rest stay 0; status stays 0.
        outl(&mut h, 0xCF8, addr(0, 0, 0, 0x04));
        outl(&mut h, 0xCFC, 0xFFFF_FFFF);
        assert_eq!(inl(&mut h, 0xCFC), 0x0000_0147);
        h.io_write(4 + 1, &[0]); // byte write to 0xCFD: command high byte.
        assert_eq!(inl(&mut h, 0xCFC), 0x0000_0047);
        // Cache line size is writable, header type is not.
        outl(&mut h, 0xCF8, addr(0, 0, 0, 0x0C));
        outl(&mut h, 0xCFC, 0xFFFF_FF10);
        assert_eq!(inl(&mut h, 0xCFC), 0x0000_FF10);
    }

    #[test]
    fn absent_functions_read_all_ones() {
        let mut h = PciHost::new(EcamWindow::default());
        for (b, d, f) in [(0, 0, 1), (0, 1, 0), (0, 31, 7), (1, 0, 0), (255, 31, 7)] {
            assert_eq!(conf1(&mut h, b, d, f, 0), 0xFFFF_FFFF);
            outl(&mut h, 0xCFC, 0);
            assert_eq!(inl(&mut h, 0xCFC), 0xFFFF_FFFF);
            assert_eq!(ecam32(&mut h, b, d, f, 0), 0xFFFF_FFFF);
        }
    }

    #[test]
    fn enable_bit_gates_the_data_port() {
        let mut h = PciHost::new(EcamWindow::default());
        outl(&mut h, 0xCF8, addr(0, 0, 0, 0) & !CONFIG_ENABLE);
        assert_eq!(inl(&mut h, 0xCFC), 0xFFFF_FFFF);
        outl(&mut h, 0xCF8, addr(0, 0, 0, 4) & !CONFIG_ENABLE);
        outl(&mut h, 0xCFC, 0);
        outl(&mut h, 0xCF8, addr(0, 0, 0, 4));
        assert_eq!(inl(&mut h, 0xCFC), 6, "a write with enable clear went nowhere");
        // Reserved bits read back 0.
        outl(&mut h, 0xCF8, 0xFFFF_FFFF);
        assert_eq!(inl(&mut h, 0xCF8), 0x80FF_FFFC);
    }

    #[test]
    fn linux_pci_check_type1_probe_succeeds() {
        let mut h = PciHost::new(EcamWindow::default());
        // pci_check_type1: a byte write to 0xCFB, save 0xCF8, write/read back 0x80000000.
        assert_eq!(outb(&mut h, 0xCFB, 0x01), Effect::None);
        let saved = inl(&mut h, 0xCF8);
        outl(&mut h, 0xCF8, 0x8000_0000);
        assert_eq!(inl(&mut h, 0xCF8), 0x8000_0000);
        // pci_sanity_check: 00:00.0 is a host bridge or an Intel device.
        let class = conf1(&mut h, 0, 0, 0, 0x08) >> 16;
        let vendor = conf1(&mut h, 0, 0, 0, 0x00) & 0xFFFF;
        assert!(class == 0x0600 || vendor == 0x8086);
        outl(&mut h, 0xCF8, saved);
        assert_eq!(inl(&mut h, 0xCF8), saved);
        // The type-2 probe (byte writes to 0xCF8 and 0xCFA, read back as bytes) must fail.
        outb(&mut h, 0xCF8, 0);
        outb(&mut h, 0xCFA, 0);
        assert_ne!((inb(&mut h, 0xCF8), inb(&mut h, 0xCFA)), (0, 0));
    }

    #[test]
    fn ecam_matches_type1() {
        let mut h = PciHost::new(EcamWindow { base: 0xE000_0000, buses: 4 });
        for reg in (0..256u16).step_by(4) {
            assert_eq!(ecam32(&mut h, 0, 0, 0, reg), conf1(&mut h, 0, 0, 0, reg as u8), "reg {reg:#x}");
        }
        assert_eq!(ecam32(&mut h, 0, 0, 0, 0x100), 0, "no extended capabilities");
        // Narrow ECAM reads.
        let mut b = [0; 2];
        h.ecam_read(2, &mut b);
        assert_eq!(u16::from_le_bytes(b), 0x29C0);
        // Past the window: all ones.
        let mut b = [0; 4];
        h.ecam_read(4 << 20, &mut b);
        assert_eq!(b, [0xFF; 4]);
        // ECAM writes land where type-1 reads them.
        h.ecam_write(0x0C, &[0x20]);
        assert_eq!(conf1(&mut h, 0, 0, 0, 0x0C) & 0xFF, 0x20);
        assert_eq!(
            h.add_function(Bdf::new(4, 0, 0).unwrap(), Box::new(ConfigSpace::host_bridge())),
            Err(PciError::BusOutOfRange)
        );
    }

    #[test]
    fn added_functions_answer_on_both_faces() {
        let mut h = PciHost::new(EcamWindow::default());
        let bdf = Bdf::new(0, 3, 0).unwrap();
        h.add_function(bdf, Box::new(ConfigSpace::new(0x1AF4, 0x1000, [0x02, 0, 0], 1))).unwrap();
        assert_eq!(h.add_function(bdf, Box::new(ConfigSpace::host_bridge())), Err(PciError::Occupied));
        assert_eq!(conf1(&mut h, 0, 3, 0, 0), 0x1000_1AF4);
        assert_eq!(ecam32(&mut h, 0, 3, 0, 8), 0x0200_0001);
        assert!(h.present(bdf));
        assert_eq!((bdf.bus(), bdf.device(), bdf.function()), (0, 3, 0));
        assert_eq!(Bdf::new(0, 32, 0), None);
    }

    #[test]
    fn cf9_goes_to_reset_control() {
        let mut h = PciHost::new(EcamWindow::default());
        assert_eq!(outb(&mut h, 0xCF9, 0x02), Effect::None);
        assert_eq!(inb(&mut h, 0xCF9), 0x02);
        assert_eq!(outb(&mut h, 0xCF9, 0x06), Effect::Reset);
        assert_eq!(outb(&mut h, 0xCF9, 0x0E), Effect::Reset);
        // A dword write to 0xCF8 is the config address, not a reset.
        assert_eq!(outl(&mut h, 0xCF8, 0x0000_0600), Effect::None);
    }
}
