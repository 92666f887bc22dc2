//! Ending the VM the ways a PC offers: ACPI S5 (SLP_TYPa from the DSDT's `\_S5` package, with
//! SLP_EN, into PM1a_CNT), the FADT's reset register, port 0xCF9 and the keyboard controller's
//! pulse-reset command; and the debug-exit port. Each guest that uses one expects the VM to be
//! gone afterwards: [`expect_stopped`] fails the test if it is still running.

use crate::acpi;
use crate::hw::{inb, outb, outl, outw};

/// PM1_CNT: SLP_TYP at bits 10-12, SLP_EN bit 13.
pub const SLP_EN: u16 = 1 << 13;
pub const RESET_CONTROL: u16 = 0xCF9;
pub const KBD_STATUS: u16 = 0x64;
pub const KBD_PULSE_RESET: u8 = 0xFE;

/// The FADT (needs the RSDP and the table; fails the test otherwise).
pub fn fadt() -> u64 {
    let fadt = acpi::find_rsdp().and_then(|r| acpi::find_table(&r, b"FACP"));
    crate::guest_assert!(fadt.is_some(), "no FADT (RSDP in 0xE0000-0xFFFFF, then XSDT/RSDT)");
    fadt.unwrap_or(0)
}

/// ACPI S5: `SLP_TYPa << 10 | SLP_EN` into PM1a_CNT. Returns the value written.
pub fn s5() -> u16 {
    let fadt = fadt();
    let dsdt = acpi::dsdt(fadt);
    let types = acpi::s5_sleep_types(dsdt);
    crate::guest_assert!(types.is_some(), "the DSDT at {:#x} has no \\_S5 package", dsdt);
    let (slp_typ_a, _) = types.unwrap_or((0, 0));
    let port = acpi::pm1a_cnt(fadt);
    crate::guest_assert!(port != 0, "the FADT has no PM1a_CNT block");
    let value = (u16::from(slp_typ_a & 7) << 10) | SLP_EN;
    crate::guest_println!("S5: SLP_TYPa {slp_typ_a} from \\_S5, writing {value:#x} to PM1a_CNT at {port:#x}");
    outw(port, value);
    value
}

/// The FADT's reset register (I/O or memory space), with its reset value.
pub fn reset_register() {
    let fadt = fadt();
    let reg = acpi::reset_register(fadt);
    crate::guest_assert!(reg.is_some(), "the FADT has no reset register (RESET_REG_SUP clear)");
    let (gas, value) = reg.unwrap_or_else(|| unreachable!());
    crate::guest_println!("reset: writing {value:#x} to the FADT reset register {gas:x?}");
    match gas.space {
        1 => outb(gas.address as u16, value),
        0 => {
            crate::paging::map_low_4g();
            // SAFETY: the FADT's reset register, a device register in the identity map.
            unsafe { (gas.address as *mut u8).write_volatile(value) }
        }
        s => crate::guest_assert!(false, "reset register in address space {}", s),
    }
}

/// Port 0xCF9: system reset (bit 1) with a full reset (bit 2), as 0x02 then 0x06.
pub fn reset_cf9() {
    crate::guest_println!("reset: 0x06 to port 0xCF9");
    outb(RESET_CONTROL, 0x02);
    outb(RESET_CONTROL, 0x06);
}

/// The keyboard controller's pulse-reset command, once its input buffer is empty.
pub fn reset_kbd() {
    crate::guest_println!("reset: 0xFE to the keyboard controller");
    crate::hw::spin_until(crate::time::us_to_tsc(10_000), || inb(KBD_STATUS) & 0x02 == 0);
    outb(KBD_STATUS, KBD_PULSE_RESET);
}

/// The debug-exit device's port (QEMU's isa-debug-exit default): the VM ends with status
/// `(value << 1) | 1`.
pub const DEBUG_EXIT_PORT: u16 = 0xF4;

pub fn debug_exit(value: u32) {
    outl(DEBUG_EXIT_PORT, value);
}

/// After an action that ends the VM: wait 100 ms, then fail the test, the VM still running.
pub fn expect_stopped(what: &str) -> ! {
    crate::time::delay_us(100_000);
    crate::ucall::assert_fail(
        file!(),
        line!(),
        [0; 4],
        format_args!("the VM is still running 100 ms after {what}"),
    )
}
