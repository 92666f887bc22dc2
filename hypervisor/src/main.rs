//! The Basalt kernel binary. Everything lives in the library; this file holds only what
//! exists once per image: the entry symbol the boot trampoline calls, the panic handler and
//! the global allocator. On the host it builds as a stub so `cargo test --workspace` works.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod image {
    use basalt::heap::ChargedHeap;

    #[global_allocator]
    static HEAP: ChargedHeap = ChargedHeap::empty();

    /// Called by the boot trampoline (boot/src/entry.rs) in long mode on the boot CPU.
    #[no_mangle]
    extern "C" fn basalt_main(magic: u32, info: u32) -> ! {
        basalt::kernel::start(magic, info as u64, HEAP.heap())
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        basalt::kernel::panic(info)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("The Basalt kernel runs on bare metal: build and boot it with `cargo xtask run`.");
    std::process::exit(2);
}
