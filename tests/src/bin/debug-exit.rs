//! The debug-exit device (QEMU's isa-debug-exit at port 0xF4): a 32-bit write of [`VALUE`]
//! ends the VM with status `(VALUE << 1) | 1` (0x55 = 85; neither the pass nor the fail status
//! of the bare runtime). Still running afterwards, it fails.
#![cfg_attr(target_os = "none", no_std, no_main)]

basalt_guests::entry!(run);

pub const VALUE: u32 = 0x2A;

fn run() {
    basalt_guests::power::debug_exit(VALUE);
    basalt_guests::power::expect_stopped("the debug-exit write")
}
