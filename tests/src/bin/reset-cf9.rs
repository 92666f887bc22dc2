//! A reset through port 0xCF9 (0x02 then 0x06). The VM must reset (xtask checks Basalt's report).
//! Still running afterwards, it fails.
#![cfg_attr(target_os = "none", no_std, no_main)]

basalt_guests::entry!(run);

fn run() {
    basalt_guests::power::reset_cf9();
    basalt_guests::power::expect_stopped("the reset through port 0xCF9")
}
