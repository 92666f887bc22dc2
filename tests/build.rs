//! Links every guest bin with `guest.ld` (64-bit guests at 1 MiB), except the real-mode ones
//! (`realmode`, `acloop`), which link at 0x8000 with `realmode.ld`, and the multiboot test
//! kernels, which link at 1 MiB with `multiboot.ld`. Only for the guest target: on the host the bins are
//! ordinary stubs.

use std::path::Path;

/// The bins that start in real mode (`mode=real`).
const REAL_MODE: &[&str] = &["realmode", "acloop", "modes", "pic-realmode"];
/// The multiboot test kernels, linked with `multiboot.ld` (no guest-ABI note).
const MULTIBOOT: &[&str] = &["multiboot1", "multiboot2"];

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=guest.ld");
    println!("cargo:rerun-if-changed=realmode.ld");
    println!("cargo:rerun-if-changed=multiboot.ld");
    println!("cargo:rerun-if-changed=src/bin");
    if std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default() != "none" {
        return;
    }
    println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
    println!("cargo:rustc-link-arg-bins=-zmax-page-size=0x1000");
    let bins = Path::new(&dir).join("src/bin");
    let entries = std::fs::read_dir(&bins).expect("tests/src/bin exists");
    for entry in entries {
        let path = entry.expect("readable tests/src/bin").path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else { continue };
        if path.extension().is_some_and(|e| e == "rs") {
            let script = if REAL_MODE.contains(&name) {
                "realmode.ld"
            } else if MULTIBOOT.contains(&name) {
                "multiboot.ld"
            } else {
                "guest.ld"
            };
            println!("cargo:rustc-link-arg-bin={name}=-T{dir}/{script}");
        }
    }
}
