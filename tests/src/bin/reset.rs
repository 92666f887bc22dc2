//! The FADT's reset register (RESET_REG with RESET_VALUE). The VM must reset (xtask checks Basalt's report).
//! Still running afterwards, it fails.
#![cfg_attr(target_os = "none", no_std, no_main)]

basalt_guests::entry!(run);

fn run() {
    basalt_guests::power::reset_register();
    basalt_guests::power::expect_stopped("the FADT reset register write")
}
