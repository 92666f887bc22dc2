//! ACPI S5: SLP_TYPa from the DSDT's \\_S5 package with SLP_EN, into the FADT's PM1a_CNT. The VM must power off (xtask checks Basalt's report).
//! Still running afterwards, it fails.
#![cfg_attr(target_os = "none", no_std, no_main)]

basalt_guests::entry!(run);

fn run() {
    basalt_guests::power::s5();
    basalt_guests::power::expect_stopped("ACPI S5 through PM1a_CNT")
}
