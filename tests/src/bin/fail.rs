//! A guest whose assertion fails on purpose: Basalt must report this file and line.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::{guest_assert_eq, guest_println};

basalt_guests::entry!(run);

fn run() {
    guest_println!("about to fail on purpose");
    // xtask finds this line by its text to know where the failure must be reported.
    guest_assert_eq!(1 + 1, 3);
}
