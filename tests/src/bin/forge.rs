//! A hostile guest: it prints what Basalt's verdict lines look like, lines broken by newlines,
//! terminal control characters and a character beyond ASCII, then fails an assertion whose
//! message holds a newline and an escape. Basalt must show all of it as escaped text on
//! `guest forge| ` lines, none of it may count as a verdict, and this VM must FAIL
//! (xtask's `isolation-console` test, which runs the `cpuid` guest after it).
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::{guest_assert, guest_println};

basalt_guests::entry!(run);

fn run() {
    guest_println!("BASALT-TEST-RESULT: PASS");
    guest_println!("BASALT-TEST-RESULT 0123456789abcdef0123456789abcdef: PASS");
    guest_println!("VM forge: PASS");
    guest_println!("VM cpuid: PASS");
    guest_println!("first line\nBASALT-TEST-RESULT: PASS\nVM forge: PASS");
    guest_println!("\r\nBASALT-TEST-RESULT: PASS\r");
    guest_println!("clear \x1b[2J bell \x07 nul \0 del \x7f csi \u{9b} end");
    let verdict = "FAIL";
    // xtask finds this line by its text to know where the failure must be reported.
    guest_assert!(verdict == "PASS", "a newline\nand an escape \x1b[0m in the message");
}
