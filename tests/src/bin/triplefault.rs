//! A guest that triple-faults: no IDT (limit 0), so UD2's #UD cannot be delivered, nor the
//! #GP that follows, nor the #DF: the CPU shuts down. Basalt must stop this VM alone with a
//! report (SVM SHUTDOWN intercept, VMX triple-fault exit) and run the next one.
#![cfg_attr(target_os = "none", no_std, no_main)]

basalt_guests::entry!(run);

fn run() {
    basalt_guests::guest_println!("UD2 with no IDT");
    // SAFETY: deliberately raises #UD with no IDT: a triple fault, which ends this VM.
    unsafe { core::arch::asm!("ud2", options(nomem, nostack, noreturn)) }
}
