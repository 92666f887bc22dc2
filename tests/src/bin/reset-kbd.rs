//! The keyboard controller's pulse-reset command (0xFE to port 0x64). The VM must reset (xtask checks Basalt's report).
//! Still running afterwards, it fails.
#![cfg_attr(target_os = "none", no_std, no_main)]

basalt_guests::entry!(run);

fn run() {
    basalt_guests::power::reset_kbd();
    basalt_guests::power::expect_stopped("the keyboard controller's pulse reset")
}
