//! The guest's macros: printing, assertions and the entry point.

/// Prints a formatted line on Basalt's console through a Print ucall.
#[macro_export]
macro_rules! guest_println {
    ($($arg:tt)*) => {
        $crate::ucall::print(::core::format_args!($($arg)*))
    };
}

/// Like `assert!`: on failure sends AssertFail with this file, line and the expression text,
/// then stops the guest.
#[macro_export]
macro_rules! guest_assert {
    ($cond:expr $(,)?) => {
        if !$cond {
            $crate::ucall::assert_fail(
                ::core::file!(),
                ::core::line!(),
                [0; 4],
                ::core::format_args!("{}", ::core::stringify!($cond)),
            )
        }
    };
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            $crate::ucall::assert_fail(
                ::core::file!(),
                ::core::line!(),
                [0; 4],
                ::core::format_args!("{}: {}", ::core::stringify!($cond), ::core::format_args!($($arg)+)),
            )
        }
    };
}

/// Like `assert_eq!`: on failure sends AssertFail with this file and line, the text
/// `left == right` and the two values in `args[0]` and `args[1]` (Basalt prints them), then stops
/// the guest. Values that are not [`crate::AssertArg`]s (integers, bool, char), like tuples, go
/// in as 0 and are written out in the text instead: `left == right (left L, right R)`.
#[macro_export]
macro_rules! guest_assert_eq {
    ($left:expr, $right:expr $(,)?) => {
        match (&$left, &$right) {
            (left, right) => {
                if !(*left == *right) {
                    #[allow(unused_imports)]
                    use $crate::{ArgViaAssertArg as _, ArgViaFallback as _};
                    let (l, r) = (&$crate::ArgProbe(left), &$crate::ArgProbe(right));
                    let args = [l.arg(), r.arg(), 0, 0];
                    let (file, line) = (::core::file!(), ::core::line!());
                    let (ls, rs) = (::core::stringify!($left), ::core::stringify!($right));
                    if l.is_arg() && r.is_arg() {
                        $crate::ucall::assert_fail(file, line, args, ::core::format_args!("{} == {}", ls, rs))
                    } else {
                        $crate::ucall::assert_fail(
                            file,
                            line,
                            args,
                            ::core::format_args!("{} == {} (left {:?}, right {:?})", ls, rs, left, right),
                        )
                    }
                }
            }
        }
    };
}

/// The panic handler of a guest: reports the panic through an AssertFail ucall. [`entry!`]
/// includes it; a guest without `entry!` (the real-mode one) names it itself.
#[macro_export]
macro_rules! panic_handler {
    () => {
        #[cfg(target_os = "none")]
        #[panic_handler]
        fn panic(info: &::core::panic::PanicInfo<'_>) -> ! {
            $crate::ucall::report_panic(info)
        }
    };
}

/// The entry point of a 64-bit guest: `entry!(run)` gives the guest a `_start` that switches
/// to a 64 KiB stack in .bss and calls `run`, then sends Done when `run` returns; and the
/// panic handler; and the multiboot header and trampoline ([`crate::multiboot_entry!`]) with
/// which QEMU boots the same ELF without Basalt. On the host it expands to a `main` stub instead.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[cfg(target_os = "none")]
        ::core::arch::global_asm!(
            ".section .bss.basalt_stack, \"aw\", @nobits",
            ".balign 16",
            "basalt_stack_bottom:",
            ".skip 65536",
            "basalt_stack_top:",
            ".section .text.basalt_entry, \"ax\"",
            ".global _start",
            "_start:",
            "lea rsp, [rip + basalt_stack_top]",
            "xor ebp, ebp",
            "call {main}",
            "ud2",
            main = sym __basalt_guest_main,
        );

        #[cfg(target_os = "none")]
        extern "C" fn __basalt_guest_main() -> ! {
            $main();
            $crate::ucall::done()
        }

        $crate::multiboot_entry!();
        $crate::panic_handler!();

        #[cfg(not(target_os = "none"))]
        fn main() {
            // The guest only runs in a Basalt VM; on the host this bin only has to build.
            let _: fn() = $main;
        }
    };
}

/// The assembler macro `basalt_ucall_record label, kind, arg1, "file", "message"` for guests
/// written in assembly (the real-mode ones): it lays out one [`crate::UcallRecord`] at `label`
/// (kind, line 0, args `[0, arg1, 0, 0]`, the file and message texts), and fails to assemble
/// if the texts overrun the record. Put `basalt_guests::ucall_record_macro!()` first in the
/// guest's `global_asm!` and pass the `file_len`, `msg_len` and `size` consts it names.
#[macro_export]
macro_rules! ucall_record_macro {
    () => {
        concat!(
            ".macro basalt_ucall_record label, kind, arg1, file, msg\n",
            ".balign 8\n",
            "\\label:\n",
            ".long \\kind\n",
            ".long 0\n",
            ".quad 0, \\arg1, 0, 0\n",
            ".short 2f - 1f, 4f - 3f\n",
            ".long 0\n",
            "1:\n",
            ".ascii \"\\file\"\n",
            "2:\n",
            ".skip {file_len} - (2b - 1b)\n",
            "3:\n",
            ".ascii \"\\msg\"\n",
            "4:\n",
            ".skip {msg_len} - (4b - 3b)\n",
            ".org \\label + {size}\n",
            ".endm\n",
        )
    };
}
