//! A reset restarts the VM (`on_reset=restart`, the default): the first boot marks CMOS NVRAM
//! byte 0x40 and RAM, then resets through port 0xCF9; the second boot finds the CMOS mark (the
//! RTC keeps its memory over a reset, as a PC's does) and fresh RAM (the image loaded again),
//! clears the mark and passes. RAM still marked after the reset fails.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::{guest_assert, guest_println};
use core::sync::atomic::{AtomicU32, Ordering};

basalt_guests::entry!(run);

const NVRAM_MARK: u8 = 0x40;
const FIRST_BOOT: u8 = 0xB1;
static RAM_MARK: AtomicU32 = AtomicU32::new(7);

use basalt_guests::cmos::{read as cmos_read, write as cmos_write};

fn run() {
    let mark = cmos_read(NVRAM_MARK);
    guest_assert!(
        RAM_MARK.load(Ordering::SeqCst) == 7,
        "RAM survived the reset: the image was not loaded again"
    );
    if mark != FIRST_BOOT {
        guest_println!("first boot: marking CMOS and RAM, then resetting through 0xCF9");
        cmos_write(NVRAM_MARK, FIRST_BOOT);
        RAM_MARK.store(0xDEAD, Ordering::SeqCst);
        basalt_guests::power::reset_cf9();
        basalt_guests::power::expect_stopped("the reset")
    }
    cmos_write(NVRAM_MARK, 0);
    guest_println!("second boot: the CMOS mark survived the reset, RAM is fresh");
}
