//! The per-VM ACPI tables, built with rust-vmm's `acpi_tables`: RSDP, XSDT and RSDT, FADT,
//! FACS, MADT, MCFG and a DSDT in AML, laid out as one blob for a guest-physical base.
//!
//! # Placing the blob
//! [`build`] lays every table out for [`AcpiConfig::base`] and returns [`AcpiTables`]: the
//! bytes to copy to that address and the offset of the RSDP in them. Every pointer (RSDP to
//! XSDT and RSDT, XSDT/RSDT to FADT, MADT and MCFG, FADT to DSDT and FACS) is a guest-physical
//! address from that base. The VM core:
//! - copies [`AcpiTables::bytes`] to `base` and marks the range ACPI (reclaimable) in E820,
//! - marks the ECAM window reserved in E820 (the DSDT also reserves it as a PNP0C02 resource),
//! - tells the guest where the RSDP is: the Linux boot protocol's `acpi_rsdp_addr`, or a
//!   copy of [`AcpiTables::rsdp`] at [`RSDP_BIOS_ADDRESS`] (or anywhere [`rsdp_scannable`]
//!   accepts) for OSes that scan the BIOS area. With the default base, 0xE0000, the RSDP is
//!   already there ([`AcpiTables::rsdp_in_bios_area`]) and no copy is needed.
//!
//! # What the tables describe
//! The models of this crate at their default ports: the PM1a blocks and the PM timer of
//! [`crate::power`], the reset register (0xCF9, value 6, held by [`crate::pci`]), the ECAM
//! window and bus range of [`crate::pci`], the IOAPIC, the LAPICs, COM1, the RTC, the PIT and
//! the PICs. The i8042 is reported absent by default ([`AcpiConfig::i8042`]; see
//! [`crate::power::I8042`]).

use crate::pci::{EcamWindow, PCI_PORT_BASE, PCI_PORT_LEN};
use crate::power::{self, PM1_CNT_LEN, PM1_EVT_LEN, SLP_TYP_S5};
use acpi_tables::aml::{self, AddressSpace, AddressSpaceCacheable, EISAName, Name, IO};
use acpi_tables::facs::FACS;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace as GasSpace, GAS};
use acpi_tables::madt::{EnabledStatus, IoApic, ProcessorLocalApic};
use acpi_tables::mcfg::MCFG;
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{Aml, AmlSink};
use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;

pub const OEM_ID: [u8; 6] = *b"BASALT";
pub const OEM_TABLE_ID: [u8; 8] = *b"BASALTVM";
pub const OEM_REVISION: u32 = 1;

/// Where the RSDP copy goes for an OS that scans the BIOS area.
pub const RSDP_BIOS_ADDRESS: u64 = 0xE_0000;
/// The BIOS read-only area that is scanned on 16-byte boundaries.
pub const BIOS_SCAN_START: u64 = 0xE_0000;
pub const BIOS_SCAN_END: u64 = 0x10_0000;
/// How much of the EBDA is scanned.
pub const EBDA_SCAN_LEN: u64 = 1024;
/// The RTC CMOS index of the century byte.
pub const RTC_CENTURY_INDEX: u8 = 0x32;

/// MADT interrupt source override flags.
const MPS_INTI_CONFORMING: u16 = 0;
const MPS_INTI_ACTIVE_LOW: u16 = 0b11;
const MPS_INTI_LEVEL: u16 = 0b11 << 2;

/// IAPC_BOOT_ARCH bits.
pub const BOOT_ARCH_LEGACY_DEVICES: u16 = 1 << 0;
pub const BOOT_ARCH_8042: u16 = 1 << 1;
pub const BOOT_ARCH_VGA_NOT_PRESENT: u16 = 1 << 2;

/// Whether an OS scanning the BIOS area finds an RSDP at `addr`: a 16-byte boundary in
/// 0xE0000-0xFFFFF, or in the first KiB of the EBDA (whose base the BDA word at 0x40E gives;
/// `None` when there is none).
pub fn rsdp_scannable(addr: u64, ebda_base: Option<u64>) -> bool {
    let rsdp_len = Rsdp::len() as u64;
    let in_rom = addr >= BIOS_SCAN_START && addr + rsdp_len <= BIOS_SCAN_END;
    let in_ebda = ebda_base.is_some_and(|e| addr >= e && addr < e + EBDA_SCAN_LEN);
    addr.is_multiple_of(16) && (in_rom || in_ebda)
}

/// The IOAPIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoApicConfig {
    pub id: u8,
    pub address: u32,
    pub gsi_base: u32,
}

/// An ISA device's base port and IRQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsaDevice {
    pub port: u16,
    pub irq: u8,
}

/// The FADT's reset register: a byte port and the value to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetRegConfig {
    pub port: u16,
    pub value: u8,
}

/// What the tables describe.
#[derive(Debug, Clone)]
pub struct AcpiConfig {
    /// The guest-physical address the blob is copied to.
    pub base: u64,
    /// The vCPUs' APIC IDs; vCPU `i` gets ACPI processor UID `i`. IDs of 255 and up (and UIDs
    /// of 255 and up) get x2APIC entries.
    pub cpus: Vec<u32>,
    pub lapic_address: u32,
    pub ioapic: IoApicConfig,
    /// The GSI the PIT's IRQ 0 is wired to (2: the override every PC has).
    pub irq0_gsi: u32,
    /// The SCI's ISA IRQ; its override makes it level, active low, as ACPI expects.
    pub sci_irq: u8,
    pub pm1a_evt: u16,
    /// [`crate::power::Pm1`] covers both blocks in one range, so this is `pm1a_evt + 4`.
    pub pm1a_cnt: u16,
    pub pm_tmr: u16,
    /// Whether the PM timer counts 32 bits (TMR_VAL_EXT) rather than 24.
    pub pm_tmr_32bit: bool,
    pub reset: ResetRegConfig,
    pub ecam: EcamWindow,
    /// The PCI I/O window above the config ports (the one below, 0-0xCF7, is fixed).
    pub pci_io_window: (u16, u16),
    /// The 32-bit PCI memory window, inclusive.
    pub pci_mem32_window: (u32, u32),
    pub com1: Option<IsaDevice>,
    pub rtc: IsaDevice,
    pub pit: IsaDevice,
    /// The master and slave PIC ports; the cascade is IRQ 2.
    pub pic: (u16, u16),
    /// Whether to report an i8042 (the 8042 flag of IAPC_BOOT_ARCH).
    pub i8042: bool,
}

impl Default for AcpiConfig {
    fn default() -> Self {
        AcpiConfig {
            base: RSDP_BIOS_ADDRESS,
            cpus: alloc::vec![0],
            lapic_address: 0xFEE0_0000,
            ioapic: IoApicConfig { id: 0, address: 0xFEC0_0000, gsi_base: 0 },
            irq0_gsi: 2,
            sci_irq: power::SCI_IRQ,
            pm1a_evt: power::PM1A_EVT_PORT,
            pm1a_cnt: power::PM1A_CNT_PORT,
            pm_tmr: power::PM_TMR_PORT,
            pm_tmr_32bit: false,
            reset: ResetRegConfig { port: 0xCF9, value: 0x06 },
            ecam: EcamWindow::default(),
            pci_io_window: (0x0D00, 0xFFFF),
            pci_mem32_window: (0xC000_0000, 0xFEBF_FFFF),
            com1: Some(IsaDevice { port: 0x3F8, irq: 4 }),
            rtc: IsaDevice { port: 0x70, irq: 8 },
            pit: IsaDevice { port: 0x40, irq: 0 },
            pic: (0x20, 0xA0),
            i8042: false,
        }
    }
}

/// Why the tables could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcpiError {
    NoCpus,
    /// The blob would run past the top of the address space.
    AddressOverflow,
    /// A window's end is below its start or it covers the whole space.
    BadWindow,
}

/// The built tables.
#[derive(Debug, Clone)]
pub struct AcpiTables {
    /// Copy these to [`AcpiTables::base`].
    pub bytes: Vec<u8>,
    pub base: u64,
    /// Where the RSDP is in [`AcpiTables::bytes`].
    pub rsdp_offset: usize,
}

impl AcpiTables {
    /// The 36 bytes of the RSDP, to copy where a scanning OS finds them.
    pub fn rsdp(&self) -> &[u8] {
        &self.bytes[self.rsdp_offset..self.rsdp_offset + Rsdp::len()]
    }
    /// The RSDP's guest-physical address in the blob.
    pub fn rsdp_address(&self) -> u64 {
        self.base + self.rsdp_offset as u64
    }
    /// Whether the blob's own RSDP is already where a BIOS-area scan finds it.
    pub fn rsdp_in_bios_area(&self) -> bool {
        rsdp_scannable(self.rsdp_address(), None)
    }
}

/// The 8-bit checksum that makes `data` sum to 0.
fn checksum(data: &[u8]) -> u8 {
    0u8.wrapping_sub(data.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

fn aml_bytes(a: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    a.to_aml_bytes(&mut v);
    v
}

/// The blob under construction: each table placed at its guest address.
struct Blob {
    base: u64,
    bytes: Vec<u8>,
}

impl Blob {
    fn pad_to(&mut self, align: u64) -> Result<(), AcpiError> {
        let at = self.base.checked_add(self.bytes.len() as u64).ok_or(AcpiError::AddressOverflow)?;
        let pad = at.wrapping_neg() % align;
        at.checked_add(pad).ok_or(AcpiError::AddressOverflow)?;
        self.bytes.resize(self.bytes.len() + pad as usize, 0);
        Ok(())
    }
    fn place(&mut self, align: u64, data: &[u8]) -> Result<u64, AcpiError> {
        self.pad_to(align)?;
        let addr = self.base.checked_add(self.bytes.len() as u64).ok_or(AcpiError::AddressOverflow)?;
        addr.checked_add(data.len() as u64).ok_or(AcpiError::AddressOverflow)?;
        self.bytes.extend_from_slice(data);
        Ok(addr)
    }
}

/// IRQNoFlags(): the small ISA IRQ descriptor, which the crate does not have.
struct IrqNoFlags(u8);

impl Aml for IrqNoFlags {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        if self.0 < 16 {
            sink.byte(0x22);
            sink.word(1 << self.0);
        } else {
            aml::Interrupt::new(true, true, false, false, self.0 as u32).to_aml_bytes(sink);
        }
    }
}

fn valid_window<T: PartialOrd + Copy>(w: (T, T), min: T, max: T) -> bool {
    w.0 <= w.1 && !(w.0 == min && w.1 == max)
}

/// One ISA device under \_SB: `_HID`, `_UID` and a `_CRS` of I/O ranges and IRQs.
fn isa_device(name: &str, hid: &str, uid: u8, io: &[(u16, u8)], irqs: &[u8]) -> Vec<u8> {
    let ios: Vec<IO> = io.iter().map(|&(p, len)| IO::new(p, p, 1, len)).collect();
    let irqs: Vec<IrqNoFlags> = irqs.iter().map(|&i| IrqNoFlags(i)).collect();
    let mut res: Vec<&dyn Aml> = Vec::new();
    res.extend(ios.iter().map(|i| i as &dyn Aml));
    res.extend(irqs.iter().map(|i| i as &dyn Aml));
    let crs = aml::ResourceTemplate::new(res);
    let hid = EISAName::new(hid);
    aml_bytes(&aml::Device::new(
        name.into(),
        alloc::vec![
            &Name::new("_HID".into(), &hid),
            &Name::new("_UID".into(), &uid),
            &Name::new("_CRS".into(), &crs),
        ],
    ))
}

/// The DSDT's AML body.
fn dsdt_aml(c: &AcpiConfig) -> Vec<u8> {
    let last_bus = c.ecam.last_bus();
    let bus = AddressSpace::<u16>::new_bus_number(0, last_bus as u16);
    let cfg_io = IO::new(PCI_PORT_BASE, PCI_PORT_BASE, 1, PCI_PORT_LEN as u8);
    let io_low = AddressSpace::<u16>::new_io(0, PCI_PORT_BASE - 1, None);
    let io_high = AddressSpace::<u16>::new_io(c.pci_io_window.0, c.pci_io_window.1, None);
    let mem32 = AddressSpace::<u32>::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        c.pci_mem32_window.0,
        c.pci_mem32_window.1,
        None,
    );
    let pci_crs = aml::ResourceTemplate::new(alloc::vec![&bus, &cfg_io, &io_low, &io_high, &mem32]);
    let (hid, cid) = (EISAName::new("PNP0A08"), EISAName::new("PNP0A03"));
    let pci0 = aml_bytes(&aml::Device::new(
        "PCI0".into(),
        alloc::vec![
            &Name::new("_HID".into(), &hid),
            &Name::new("_CID".into(), &cid),
            &Name::new("_ADR".into(), &aml::ZERO),
            &Name::new("_SEG".into(), &aml::ZERO),
            &Name::new("_UID".into(), &aml::ZERO),
            &Name::new("_BBN".into(), &aml::ZERO),
            &Name::new("_CRS".into(), &pci_crs),
        ],
    ));

    // The ECAM window as a motherboard resource, so the OS trusts the MCFG.
    let ecam_len = c.ecam.len();
    let ecam_res: Box<dyn Aml> = match u32::try_from(c.ecam.base + ecam_len) {
        Ok(_) => Box::new(aml::Memory32Fixed::new(false, c.ecam.base as u32, ecam_len as u32)),
        Err(_) => Box::new(AddressSpace::<u64>::new_memory(
            AddressSpaceCacheable::NotCacheable,
            false,
            c.ecam.base,
            c.ecam.base + ecam_len - 1,
            None,
        )),
    };
    let mres_crs = aml::ResourceTemplate::new(alloc::vec![ecam_res.as_ref()]);
    let mres_hid = EISAName::new("PNP0C02");
    let mres = aml_bytes(&aml::Device::new(
        "MRES".into(),
        alloc::vec![
            &Name::new("_HID".into(), &mres_hid),
            &Name::new("_UID".into(), &aml::ZERO),
            &Name::new("_CRS".into(), &mres_crs),
        ],
    ));

    let mut sb = pci0;
    sb.extend(mres);
    if let Some(com1) = c.com1 {
        sb.extend(isa_device("COM1", "PNP0501", 1, &[(com1.port, 8)], &[com1.irq]));
    }
    sb.extend(isa_device("RTC_", "PNP0B00", 0, &[(c.rtc.port, 2)], &[c.rtc.irq]));
    sb.extend(isa_device("TIMR", "PNP0100", 0, &[(c.pit.port, 4)], &[c.pit.irq]));
    sb.extend(isa_device("PIC_", "PNP0000", 0, &[(c.pic.0, 2), (c.pic.1, 2)], &[2]));
    for i in 0..c.cpus.len() {
        let uid = i as u32;
        sb.extend(aml_bytes(&aml::Device::new(
            format!("C{:03X}", i & 0xFFF).as_str().into(),
            alloc::vec![&Name::new("_HID".into(), &"ACPI0007"), &Name::new("_UID".into(), &uid)],
        )));
    }

    let mut out = aml::Scope::raw("\\_SB_".into(), sb);
    let s5 = SLP_TYP_S5;
    let s5_pkg = aml::Package::new(alloc::vec![&s5, &s5, &aml::ZERO, &aml::ZERO]);
    out.extend(aml_bytes(&Name::new("_S5_".into(), &s5_pkg)));
    out
}

fn io_gas(port: u16, len: u8) -> GAS {
    GAS::new(GasSpace::SystemIo, len * 8, 0, AccessSize::Undefined, port as u64)
}

fn madt(c: &AcpiConfig) -> Vec<u8> {
    let mut t = Sdt::new(*b"APIC", 44, 5, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    t.write_u32(36, c.lapic_address);
    t.write_u32(40, 1); // PCAT_COMPAT: there are 8259s to mask.
    let mut x2apic = false;
    for (i, &id) in c.cpus.iter().enumerate() {
        match (u8::try_from(i), u8::try_from(id)) {
            (Ok(uid), Ok(apic_id)) if uid != 0xFF && apic_id != 0xFF => {
                t.append_slice(&aml_bytes(&ProcessorLocalApic::new(uid, apic_id, EnabledStatus::Enabled)));
            }
            _ => {
                x2apic = true;
                let mut e = [0u8; 16];
                e[0] = 9;
                e[1] = 16;
                e[4..8].copy_from_slice(&id.to_le_bytes());
                e[8..12].copy_from_slice(&1u32.to_le_bytes());
                e[12..16].copy_from_slice(&(i as u32).to_le_bytes());
                t.append_slice(&e);
            }
        }
    }
    t.append_slice(&aml_bytes(&IoApic::new(c.ioapic.id, c.ioapic.address, c.ioapic.gsi_base)));
    let iso = |source: u8, gsi: u32, flags: u16| {
        let mut e = [0u8; 10];
        e[0] = 2;
        e[1] = 10;
        e[3] = source;
        e[4..8].copy_from_slice(&gsi.to_le_bytes());
        e[8..10].copy_from_slice(&flags.to_le_bytes());
        e
    };
    t.append_slice(&iso(0, c.irq0_gsi, MPS_INTI_CONFORMING));
    t.append_slice(&iso(c.sci_irq, c.sci_irq as u32, MPS_INTI_LEVEL | MPS_INTI_ACTIVE_LOW));
    // NMI on LINT1 of every processor.
    t.append_slice(&[4, 6, 0xFF, 0, 0, 1]);
    if x2apic {
        let mut e = [0u8; 12];
        e[0] = 0x0A;
        e[1] = 12;
        e[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        e[8] = 1;
        t.append_slice(&e);
    }
    t.as_slice().to_vec()
}

/// Build the tables for `c`.
pub fn build(c: &AcpiConfig) -> Result<AcpiTables, AcpiError> {
    if c.cpus.is_empty() {
        return Err(AcpiError::NoCpus);
    }
    if !valid_window(c.pci_io_window, 0, u16::MAX) || !valid_window(c.pci_mem32_window, 0, u32::MAX) {
        return Err(AcpiError::BadWindow);
    }
    c.ecam.base.checked_add(c.ecam.len()).ok_or(AcpiError::BadWindow)?;

    let mut blob = Blob { base: c.base, bytes: Vec::new() };
    blob.pad_to(16)?;
    let rsdp_offset = blob.bytes.len();
    blob.place(16, &[0; 36])?;

    let facs = blob.place(64, &aml_bytes(&FACS::new()))?;

    let mut dsdt = Sdt::new(*b"DSDT", 36, 2, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    dsdt.append_slice(&dsdt_aml(c));
    let dsdt = blob.place(8, dsdt.as_slice())?;

    let mut f = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        .flag(Flags::SlpButton)
        .flag(Flags::FixRtc)
        .flag(Flags::ResetRegSup);
    if c.pm_tmr_32bit {
        f = f.flag(Flags::TmrValExt);
    }
    f = match u32::try_from(facs) {
        Ok(a) => f.firmware_ctrl_32(a),
        Err(_) => f.firmware_ctrl_64(facs),
    };
    f = f.dsdt_64(dsdt);
    if let Ok(a) = u32::try_from(dsdt) {
        f.dsdt = a.into();
    }
    f.sci_int = (c.sci_irq as u16).into();
    f.pm1a_evt_blk = (c.pm1a_evt as u32).into();
    f.pm1a_cnt_blk = (c.pm1a_cnt as u32).into();
    f.pm_tmr_blk = (c.pm_tmr as u32).into();
    f.pm1_evt_len = PM1_EVT_LEN;
    f.pm1_cnt_len = PM1_CNT_LEN;
    f.pm_tmr_len = 4;
    f.x_pm1a_evt_blk = io_gas(c.pm1a_evt, PM1_EVT_LEN);
    f.x_pm1a_cnt_blk = io_gas(c.pm1a_cnt, PM1_CNT_LEN);
    f.x_pm_tmr_blk = io_gas(c.pm_tmr, 4);
    // No C2 or C3.
    f.p_lvl2_lat = 0x0FFF.into();
    f.p_lvl3_lat = 0x0FFF.into();
    f.century = RTC_CENTURY_INDEX;
    let mut boot_arch = BOOT_ARCH_LEGACY_DEVICES | BOOT_ARCH_VGA_NOT_PRESENT;
    if c.i8042 {
        boot_arch |= BOOT_ARCH_8042;
    }
    f.iapc_boot_arch = boot_arch.into();
    f.reset_reg = GAS::new(GasSpace::SystemIo, 8, 0, AccessSize::ByteAccess, c.reset.port as u64);
    f.reset_value = c.reset.value;
    let fadt = blob.place(8, &aml_bytes(&f.finalize()))?;

    let madt = blob.place(8, &madt(c))?;

    let mut mcfg = MCFG::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    mcfg.add_ecam(c.ecam.base, 0, 0, c.ecam.last_bus());
    let mcfg = blob.place(8, &aml_bytes(&mcfg))?;

    let tables = [fadt, madt, mcfg];
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    for t in tables {
        xsdt.add_entry(t);
    }
    let xsdt = blob.place(8, &aml_bytes(&xsdt))?;

    // An RSDT too, for OSes that read only ACPI 1.0 tables, when everything is below 4 GiB.
    let end = c.base.saturating_add(blob.bytes.len() as u64 + 36 + 4 * tables.len() as u64 + 8);
    let rsdt = if end <= 1 << 32 {
        let mut rsdt = Sdt::new(*b"RSDT", 36, 1, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
        for t in tables {
            rsdt.append_slice(&(t as u32).to_le_bytes());
        }
        blob.place(8, rsdt.as_slice())? as u32
    } else {
        0
    };

    let mut rsdp = aml_bytes(&Rsdp::new(OEM_ID, xsdt));
    rsdp[16..20].copy_from_slice(&rsdt.to_le_bytes());
    rsdp[8] = 0;
    rsdp[8] = checksum(&rsdp[..20]);
    rsdp[32] = 0;
    rsdp[32] = checksum(&rsdp);
    blob.bytes[rsdp_offset..rsdp_offset + 36].copy_from_slice(&rsdp);

    Ok(AcpiTables { bytes: blob.bytes, base: c.base, rsdp_offset })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Parsed<'a> {
        t: &'a AcpiTables,
    }

    fn u16_at(b: &[u8], o: usize) -> u16 {
        u16::from_le_bytes([b[o], b[o + 1]])
    }
    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }
    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    impl<'a> Parsed<'a> {
        /// The table at guest address `addr`, its length from its header, checksum checked.
        fn table(&self, addr: u64) -> &'a [u8] {
            let off = (addr - self.t.base) as usize;
            let len = u32_at(&self.t.bytes, off + 4) as usize;
            let t = &self.t.bytes[off..off + len];
            assert_eq!(sum(t), 0, "checksum of {}", core::str::from_utf8(&t[..4]).unwrap());
            t
        }
        fn xsdt_entries(&self) -> Vec<&'a [u8]> {
            let rsdp = self.t.rsdp();
            let xsdt = self.table(u64_at(rsdp, 24));
            assert_eq!(&xsdt[..4], b"XSDT");
            xsdt[36..].chunks(8).map(|e| self.table(u64_at(e, 0))).collect()
        }
        fn find(&self, sig: &[u8; 4]) -> &'a [u8] {
            self.xsdt_entries().into_iter().find(|t| &t[..4] == sig).unwrap()
        }
    }

    fn cfg(cpus: Vec<u32>) -> AcpiConfig {
        AcpiConfig { cpus, ..AcpiConfig::default() }
    }

    #[test]
    fn rsdp_is_valid_and_points_at_xsdt_and_rsdt() {
        let t = build(&cfg(alloc::vec![0, 1])).unwrap();
        let p = Parsed { t: &t };
        let rsdp = t.rsdp();
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!(rsdp[15], 2, "revision 2");
        assert_eq!(sum(&rsdp[..20]), 0);
        assert_eq!(sum(rsdp), 0);
        assert_eq!(u32_at(rsdp, 20), 36);
        assert!(t.rsdp_in_bios_area());
        assert_eq!(t.rsdp_address() % 16, 0);
        let rsdt = p.table(u32_at(rsdp, 16) as u64);
        assert_eq!(&rsdt[..4], b"RSDT");
        let via_rsdt: Vec<&[u8]> = rsdt[36..].chunks(4).map(|e| p.table(u32_at(e, 0) as u64)).collect();
        assert_eq!(via_rsdt, p.xsdt_entries());
        let sigs: Vec<&[u8]> = p.xsdt_entries().iter().map(|t| &t[..4]).collect();
        assert_eq!(sigs, [b"FACP", b"APIC", b"MCFG"]);
    }

    #[test]
    fn fadt_points_at_the_devices() {
        let c = cfg(alloc::vec![0]);
        let t = build(&c).unwrap();
        let p = Parsed { t: &t };
        let f = p.find(b"FACP");
        assert_eq!(f[8], 6, "revision 6");
        assert_eq!(u16_at(f, 46), 9, "SCI_INT");
        assert_eq!(u32_at(f, 56), 0x600);
        assert_eq!(u32_at(f, 64), 0x604);
        assert_eq!(u32_at(f, 76), 0x608);
        assert_eq!((f[88], f[89], f[91]), (4, 2, 4), "PM1_EVT_LEN, PM1_CNT_LEN, PM_TMR_LEN");
        assert_eq!(f[108], 0x32, "century");
        assert_eq!(u16_at(f, 109), BOOT_ARCH_LEGACY_DEVICES | BOOT_ARCH_VGA_NOT_PRESENT);
        let flags = u32_at(f, 112);
        assert_ne!(flags & (1 << 10), 0, "RESET_REG_SUP");
        assert_eq!(flags & (1 << 20), 0, "not HW_REDUCED");
        assert_eq!(&f[116..120], &[1, 8, 0, 1], "RESET_REG: system I/O, 8 bits, byte access");
        assert_eq!(u64_at(f, 120), 0xCF9);
        assert_eq!(f[128], 6);
        // FACS (32-bit), DSDT (both).
        let facs_addr = u32_at(f, 36) as u64;
        assert_eq!(facs_addr % 64, 0);
        let facs = &t.bytes[(facs_addr - t.base) as usize..][..64];
        assert_eq!(&facs[..4], b"FACS");
        let dsdt = p.table(u64_at(f, 140));
        assert_eq!(u32_at(f, 40) as u64, u64_at(f, 140));
        assert_eq!(&dsdt[..4], b"DSDT");
        assert_eq!(dsdt[8], 2, "64-bit integers");
        // X_PM1a_EVT_BLK.
        assert_eq!(&f[148..152], &[1, 32, 0, 0]);
        assert_eq!(u64_at(f, 152), 0x600);
    }

    #[test]
    fn madt_has_each_cpu_the_ioapic_and_overrides() {
        let t = build(&cfg(alloc::vec![0, 1, 2, 6])).unwrap();
        let p = Parsed { t: &t };
        let m = p.find(b"APIC");
        assert_eq!(u32_at(m, 36), 0xFEE0_0000);
        assert_eq!(u32_at(m, 40) & 1, 1, "PCAT_COMPAT");
        let mut lapics = Vec::new();
        let mut isos = Vec::new();
        let mut ioapics = Vec::new();
        let mut nmis = Vec::new();
        let mut o = 44;
        while o < m.len() {
            let (ty, len) = (m[o], m[o + 1] as usize);
            let e = &m[o..o + len];
            match ty {
                0 => lapics.push((e[2], e[3], u32_at(e, 4))),
                1 => ioapics.push((e[2], u32_at(e, 4), u32_at(e, 8))),
                2 => isos.push((e[3], u32_at(e, 4), u16_at(e, 8))),
                4 => nmis.push((e[2], u16_at(e, 3), e[5])),
                _ => panic!("unexpected MADT entry {ty}"),
            }
            o += len;
        }
        assert_eq!(o, m.len());
        assert_eq!(lapics, [(0, 0, 1), (1, 1, 1), (2, 2, 1), (3, 6, 1)]);
        assert_eq!(ioapics, [(0, 0xFEC0_0000, 0)]);
        assert_eq!(isos, [(0, 2, 0), (9, 9, 0x000F)]);
        assert_eq!(nmis, [(0xFF, 0, 1)]);
    }

    #[test]
    fn large_apic_ids_get_x2apic_entries() {
        let t = build(&cfg(alloc::vec![0, 300])).unwrap();
        let p = Parsed { t: &t };
        let m = p.find(b"APIC");
        let x2: Vec<u32> = {
            let mut v = Vec::new();
            let mut o = 44;
            while o < m.len() {
                if m[o] == 9 {
                    v.push(u32_at(m, o + 4));
                }
                o += m[o + 1] as usize;
            }
            v
        };
        assert_eq!(x2, [300]);
    }

    #[test]
    fn mcfg_describes_the_ecam_window() {
        let mut c = cfg(alloc::vec![0]);
        c.ecam = EcamWindow { base: 0xE000_0000, buses: 16 };
        let t = build(&c).unwrap();
        let p = Parsed { t: &t };
        let m = p.find(b"MCFG");
        assert_eq!(m.len(), 36 + 8 + 16);
        assert_eq!(u64_at(m, 44), 0xE000_0000);
        assert_eq!((u16_at(m, 52), m[54], m[55]), (0, 0, 15));
    }

    #[test]
    fn dsdt_names_the_devices() {
        let t = build(&cfg(alloc::vec![0, 1])).unwrap();
        let p = Parsed { t: &t };
        let f = p.find(b"FACP");
        let dsdt = p.table(u64_at(f, 140));
        let aml = &dsdt[36..];
        assert_eq!(aml[0], 0x10, "ScopeOp");
        let has = |n: &[u8]| aml.windows(n.len()).any(|w| w == n);
        for name in [&b"PCI0"[..], b"COM1", b"RTC_", b"TIMR", b"PIC_", b"MRES", b"C000", b"C001", b"_S5_"] {
            assert!(has(name), "{}", core::str::from_utf8(name).unwrap());
        }
        // \_S5 is Package(4) { 5, 5, 0, 0 }.
        let at = aml.windows(4).position(|w| w == b"_S5_").unwrap();
        assert_eq!(&aml[at + 4..], &[0x12, 0x08, 0x04, 0x0A, 5, 0x0A, 5, 0x00, 0x00]);
        // COM1's IO(0x3F8, 0x3F8, 1, 8) and IRQNoFlags(4).
        assert!(has(&[0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08, 0x22, 0x10, 0x00]));
        // The PCI config ports.
        assert!(has(&[0x47, 0x01, 0xF8, 0x0C, 0xF8, 0x0C, 0x01, 0x08]));
    }

    #[test]
    fn tables_above_4g_drop_the_rsdt_and_bad_configs_are_refused() {
        let mut c = cfg(alloc::vec![0]);
        c.base = 0x1_0000_0000;
        let t = build(&c).unwrap();
        assert_eq!(u32_at(t.rsdp(), 16), 0);
        assert!(!t.rsdp_in_bios_area());
        let f = Parsed { t: &t }.find(b"FACP");
        assert_eq!(u32_at(f, 36), 0);
        assert_ne!(u64_at(f, 132), 0, "X_FIRMWARE_CTRL");

        assert_eq!(build(&cfg(Vec::new())).err(), Some(AcpiError::NoCpus));
        c.pci_io_window = (0x2000, 0x1000);
        assert_eq!(build(&c).err(), Some(AcpiError::BadWindow));
        let c = AcpiConfig { base: u64::MAX - 100, ..AcpiConfig::default() };
        assert_eq!(build(&c).err(), Some(AcpiError::AddressOverflow));
        // An unaligned base still gives aligned tables.
        let c = AcpiConfig { base: 0xE_0004, ..AcpiConfig::default() };
        let t = build(&c).unwrap();
        assert_eq!(t.rsdp_address() % 16, 0);
        Parsed { t: &t }.xsdt_entries();
    }

    #[test]
    fn scan_rule() {
        assert!(rsdp_scannable(0xE_0000, None));
        assert!(rsdp_scannable(0xF_FFD0, None));
        assert!(!rsdp_scannable(0xF_FFF0, None), "does not fit");
        assert!(!rsdp_scannable(0xE_0008, None));
        assert!(!rsdp_scannable(0x9_FC00, None));
        assert!(rsdp_scannable(0x9_FC00, Some(0x9_FC00)));
        assert!(!rsdp_scannable(0x9_FC00 + 1024, Some(0x9_FC00)));
    }
}
