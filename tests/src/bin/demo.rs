//! The demo guest `cargo xtask run` boots: a banner and the first ten primes, through ucalls.
#![cfg_attr(target_os = "none", no_std, no_main)]

use basalt_guests::guest_println;

basalt_guests::entry!(run);

fn is_prime(n: u32) -> bool {
    n >= 2 && (2..n).take_while(|d| d * d <= n).all(|d| !n.is_multiple_of(d))
}

fn run() {
    guest_println!("Hello from a Basalt guest! Running in 64-bit mode at {:#x}.", run as *const () as usize);
    let mut primes = [0u32; 10];
    let mut found = 0;
    let mut n = 2;
    while found < primes.len() {
        if is_prime(n) {
            primes[found] = n;
            found += 1;
        }
        n += 1;
    }
    guest_println!("The first ten primes: {:?}", primes);
    guest_println!("Goodbye.");
}
