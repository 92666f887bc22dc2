//! The deterministic fuzz run (stable Rust, bounded, part of `cargo test`) and the corpus
//! replay. A cargo-fuzz harness calls `basalt_emu::fuzz::check_input` with its bytes.

use std::time::Instant;

use basalt_emu::fuzz::{check, generate, Case, XorShift};
use basalt_emu::{CodeSize, Error};

/// Iterations of the bounded run: about 1 s in a debug build on one core.
const ITERATIONS: u64 = 200_000;

fn run_checked(case: &Case, what: &str) -> Result<basalt_emu::Emulated, Error> {
    match check(case) {
        Ok(result) => result,
        Err(v) => panic!("{what}: {v:?} for {case:#x?}"),
    }
}

#[test]
fn fuzz_bounded() {
    let start = Instant::now();
    let mut rng = XorShift::new(0x5eed_ba5a_17e3_0001);
    let (mut ok, mut faults, mut unsupported, mut invalid) = (0u64, 0u64, 0u64, 0u64);
    for i in 0..ITERATIONS {
        let case = generate(&mut rng);
        match run_checked(&case, &format!("iteration {i}")) {
            Ok(_) => ok += 1,
            Err(Error::Fault(_)) => faults += 1,
            Err(Error::Unsupported(_)) => unsupported += 1,
            Err(Error::Invalid | Error::Truncated) => invalid += 1,
        }
    }
    eprintln!(
        "fuzz: {ITERATIONS} cases in {:?}: {ok} emulated, {faults} faulted, {unsupported} unsupported, \
         {invalid} invalid or truncated",
        start.elapsed()
    );
    // The generator must reach the executor, not just the decoder's error paths.
    assert!(ok > ITERATIONS / 5, "only {ok} cases emulated");
    assert!(faults > ITERATIONS / 50, "only {faults} cases faulted");
}

/// Every line of `corpus/*.hex` is `<16|32|64> <hex bytes>`; each is run against several
/// generated machines (with and without the port callout), checking the invariants.
#[test]
fn corpus_replays() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut lines = 0;
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "hex")) {
        let text = std::fs::read_to_string(path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap().trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let code = CodeSize::from_bits(words.next().unwrap().parse().unwrap()).unwrap();
            let bytes: Vec<u8> = words.map(|b| u8::from_str_radix(b, 16).unwrap()).collect();
            assert!(bytes.len() <= 15, "{}:{}: longer than 15 bytes", path.display(), n + 1);
            lines += 1;
            let mut rng = XorShift::new(0xc0ff_ee00 + n as u64);
            for seed in 0..16 {
                let mut case = generate(&mut rng);
                case.code = code;
                case.machine.code = code;
                case.bytes = [0; 15];
                case.bytes[..bytes.len()].copy_from_slice(&bytes);
                case.len = bytes.len() as u8;
                case.string_io = seed % 2 == 0;
                let _ = run_checked(&case, &format!("{}:{} seed {seed}", path.display(), n + 1));
            }
        }
    }
    assert!(lines >= 20, "corpus has only {lines} inputs");
}

#[test]
fn fuzz_input_entry_point_is_total() {
    let mut rng = XorShift::new(7);
    for len in 0..64 {
        let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if let Err(v) = basalt_emu::fuzz::check_input(&data) {
            panic!("{v:?} for input {data:02x?}");
        }
    }
}
