//! The PC every VM gets, built from its configuration: the devices on its port and MMIO buses
//! (beside the LAPICs, the IOAPIC and the PIC, which the VM core and the interrupt router
//! hold), and the ACPI tables that describe them. The models are the `basalt-devices` crate's,
//! at the addresses and lines the tables give:
//!
//! | device | where | line |
//! |---|---|---|
//! | PIT 8254 and port 0x61 | 0x40-0x43, 0x61 | IRQ 0 (GSI 2) |
//! | RTC/CMOS | 0x70-0x71 | IRQ 8 |
//! | 16550 UART (COM1), Basalt's console | 0x3F8-0x3FF | IRQ 4 |
//! | i8042 (reset pulse; no keyboard) | 0x60, 0x64 | IRQ 1, 12 |
//! | ACPI PM1a event/control, PM timer | 0x600-0x605, 0x608-0x60B | SCI, IRQ 9 |
//! | PCI host bridge (mechanism 1, reset control) | 0xCF8-0xCFF | |
//! | PCI ECAM (MCFG) | 0xB000_0000, 256 MiB | |
//! | fw_cfg | 0x510-0x511 | |
//! | debug-exit (only with `debug_exit=`) | as configured, 4 bytes | |
//!
//! The ACPI tables go into guest RAM at 0xE0000, where an OS scanning the BIOS area finds the
//! RSDP.

use super::platform::{Platform, Shared};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use basalt_devices::acpi::{self, AcpiConfig, AcpiTables};
use basalt_devices::fwcfg::{FwCfg, FwCfgConfig, FW_CFG_PORT, FW_CFG_PORT_LEN};
use basalt_devices::irq::IrqLine;
use basalt_devices::pci::{EcamWindow, PciEcam, PciHost, PciPorts, PCI_PORT_BASE, PCI_PORT_LEN};
use basalt_devices::pit::{Pit, Port61, PIT_BASE_PORT, PORT61};
use basalt_devices::pmtimer::PmTimer;
use basalt_devices::power::{self, DebugExit, Pm1, I8042};
use basalt_devices::rtc::{Rtc, RTC_IRQ, RTC_PORT, RTC_PORTS};
use basalt_devices::time::Timebase;
use basalt_devices::uart::{Uart, COM1_IRQ, COM1_PORT, UART_PORTS};
use spin::Mutex;

/// The debug-exit device's width (QEMU's `isa-debug-exit,iosize=4`).
pub const DEBUG_EXIT_LEN: u16 = 4;

/// What the PC is built from.
#[derive(Debug, Clone, Copy)]
pub struct PcConfig {
    pub vcpus: u32,
    pub mem_bytes: u64,
    pub tsc_hz: u64,
    /// The host's wall clock (unix seconds) when the VM is built, its guest TSC 0.
    pub unix_secs: u64,
    pub debug_exit: Option<u16>,
}

/// A built PC: its buses and the ACPI tables to copy into its RAM.
pub struct Pc {
    pub platform: Platform,
    pub acpi: AcpiTables,
    /// The SMBIOS entry point and tables, for guest-physical `basalt_devices::smbios::SMBIOS_BASE`.
    pub smbios: alloc::vec::Vec<u8>,
}

/// Build the PC `c` describes.
pub fn build(c: &PcConfig) -> Result<Pc, String> {
    let mut p = Platform::new();
    let tb = Timebase::new(c.tsc_hz);
    let bus = |e: basalt_devices::bus::BusError| format!("the PC's buses: {e:?}");

    let pit = Arc::new(Mutex::new(Pit::new(tb, IrqLine::new(basalt_devices::router::PIT_IRQ))));
    p.add_port(PIT_BASE_PORT, 4, Box::new(Shared(pit.clone()))).map_err(bus)?;
    p.add_port(PORT61, 1, Box::new(Port61(pit.clone()))).map_err(bus)?;
    p.add_timed(pit);

    let mut rtc = Rtc::new(tb, RTC_IRQ, c.unix_secs, 0);
    let below_4g = c.mem_bytes.min(EcamWindow::default().base);
    rtc.set_memory_size(below_4g, c.mem_bytes - below_4g);
    let rtc = Arc::new(Mutex::new(rtc));
    p.add_port(RTC_PORT, RTC_PORTS, Box::new(Shared(rtc.clone()))).map_err(bus)?;
    p.add_timed(rtc);

    let uart = Arc::new(Mutex::new(Uart::new(COM1_IRQ)));
    p.add_port(COM1_PORT, UART_PORTS, Box::new(Shared(uart.clone()))).map_err(bus)?;
    p.set_console(COM1_PORT, UART_PORTS, uart);

    let (kbd_data, kbd_cmd) = I8042::new(IrqLine::new(1), IrqLine::new(12)).into_ports();
    p.add_port(power::I8042_DATA_PORT, 1, Box::new(kbd_data)).map_err(bus)?;
    p.add_port(power::I8042_CMD_PORT, 1, Box::new(kbd_cmd)).map_err(bus)?;

    let sci = IrqLine::new(power::SCI_IRQ as u32);
    p.add_port(power::PM1A_EVT_PORT, power::PM1_LEN, Box::new(Pm1::new(sci))).map_err(bus)?;
    p.add_port(power::PM_TMR_PORT, 4, Box::new(PmTimer::new(tb))).map_err(bus)?;

    let ecam = EcamWindow::default();
    let pci = Arc::new(Mutex::new(PciHost::new(ecam)));
    p.add_port(PCI_PORT_BASE, PCI_PORT_LEN, Box::new(PciPorts(pci.clone()))).map_err(bus)?;
    p.add_mmio(ecam.base, ecam.len(), Box::new(PciEcam(pci))).map_err(bus)?;

    let fw_cfg = FwCfg::new(FwCfgConfig {
        cpus: c.vcpus as u16,
        ram_bytes: c.mem_bytes,
        files: alloc::vec::Vec::new(),
    })
    .map_err(|e| format!("fw_cfg: {e:?}"))?;
    p.add_port(FW_CFG_PORT, FW_CFG_PORT_LEN, Box::new(fw_cfg)).map_err(bus)?;

    if let Some(port) = c.debug_exit {
        p.add_port(port, DEBUG_EXIT_LEN, Box::new(DebugExit::new()))
            .map_err(|_| format!("debug_exit={port:#x}: the port is another device's"))?;
    }

    let tables = acpi::build(&AcpiConfig {
        cpus: (0..c.vcpus).collect(),
        ioapic: acpi::IoApicConfig { id: c.vcpus.min(0xF) as u8, ..AcpiConfig::default().ioapic },
        ecam,
        ..AcpiConfig::default()
    })
    .map_err(|e| format!("ACPI tables: {e:?}"))?;
    let smbios_base = basalt_devices::smbios::SMBIOS_BASE;
    if tables.base + tables.bytes.len() as u64 > smbios_base {
        return Err(format!(
            "the ACPI tables ({} bytes) run into the SMBIOS tables at {smbios_base:#x}",
            tables.bytes.len()
        ));
    }
    let smbios = basalt_devices::smbios::build(&basalt_devices::smbios::SmbiosConfig::default(), smbios_base);
    Ok(Pc { platform: p, acpi: tables, smbios })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(vcpus: u32, debug_exit: Option<u16>) -> Result<Pc, String> {
        build(&PcConfig {
            vcpus,
            mem_bytes: 16 << 20,
            tsc_hz: 1_000_000_000,
            unix_secs: 1_800_000_000,
            debug_exit,
        })
    }

    #[test]
    fn every_device_is_on_its_port() {
        let pc = make(2, Some(0xF4)).unwrap();
        for (port, len) in [(0x40, 1), (0x43, 1), (0x61, 1), (0x70, 1), (0x71, 1), (0x3F8, 1), (0x3FD, 1)] {
            assert!(pc.platform.claims_port(port, len), "{port:#x}");
        }
        for port in [0x60, 0x64, 0x600, 0x604, 0x608, 0xCF8, 0xCFC, 0xCF9, 0x510, 0x511, 0xF4] {
            assert!(pc.platform.claims_port(port, 1), "{port:#x}");
        }
        assert!(pc.platform.claims_mmio(0xB000_0000, 4));
        assert!(!pc.platform.claims_port(0x80, 1), "POST port: nobody's");
        assert!(pc.acpi.rsdp_in_bios_area());
        assert!(!make(1, None).unwrap().platform.claims_port(0xF4, 1), "debug-exit only when asked for");
    }

    #[test]
    fn a_debug_exit_port_on_a_device_is_refused() {
        let e = make(1, Some(0x3F8)).err().unwrap();
        assert!(e.contains("debug_exit=0x3f8"), "{e}");
    }
}
