//! Bounded deterministic fuzzing of the configuration parsers: a good file mutated byte by
//! byte and line by line, texts built from the format's own tokens, and random bytes. Never
//! a panic; every VM that comes back is valid on its own and alongside the others.

mod common;
use basalt_loader::config::{self, Limits, VmSpec};
use common::*;

const GOOD: &str =
    "# test\n[vm web]\nkernel = vmlinuz\ninitrd = rd\ncmdline = \"console=ttyS0 a=\\\"b\\\"\"\n\
memory = 64M\nquota = 80M\npcpus = 1-2\ndevices = debug-exit=0xf4\nconsole = yes\non_reset = stop\n\
time_limit = 30\n[vm t]; kernel = cpuid; memory = 2M; devices = testdev; mode = real; pcpus = 3\n";

const TOKENS: [&str; 40] = [
    "[vm a]",
    "[vm b]",
    "[vm a",
    "[vm]",
    "\n",
    "\n",
    ";",
    "#",
    "=",
    " ",
    "\"",
    "\\",
    "kernel",
    "initrd",
    "cmdline",
    "memory",
    "quota",
    "cpus",
    "pcpus",
    "devices",
    "console",
    "on_crash",
    "time_limit",
    "mode",
    "cpuid",
    "vmlinuz",
    "16M",
    "2G",
    "0",
    "1-3",
    "0,2",
    "18446744073709551615",
    "99999999999999G",
    "testdev",
    "debug-exit=0x501",
    "[basalt]",
    "yes",
    "restart",
    "real",
    "é",
];

fn images(n: &str) -> Option<u64> {
    match n {
        "vmlinuz" => Some(24 << 20),
        "rd" | "cpuid" => Some(0),
        _ => None,
    }
}

fn check(vms: &[VmSpec], limits: &Limits) {
    for (i, v) in vms.iter().enumerate() {
        assert!(!v.name.is_empty() && v.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
        assert!(
            v.memory_bytes >= 2 << 20 && v.memory_bytes <= 4 << 30 && v.memory_bytes.is_multiple_of(2 << 20)
        );
        assert!(v.memory_bytes <= v.quota_bytes, "{v:?}");
        assert!(v.cpus >= 1 && v.cpus <= limits.max_vcpus);
        assert!(v.pcpus.is_empty() || v.pcpus.len() == v.cpus as usize);
        assert!(v.pcpus.iter().all(|&c| c < limits.cpu_count));
        let k = v.kernel.as_deref().expect("a kernel");
        let need = images(k).unwrap() + v.initrd.as_deref().map_or(0, |n| images(n).unwrap());
        assert!(need <= v.memory_bytes);
        for o in &vms[..i] {
            assert_ne!(o.name, v.name);
            assert!(!o.pcpus.iter().any(|c| v.pcpus.contains(c)), "{o:?} {v:?}");
            assert!(!(o.console && v.console));
        }
    }
}

#[test]
fn fuzz_config() {
    let mut rng = XorShift::new(0x000C_0F16);
    let limits = Limits { cpu_count: 4, max_vcpus: 2, default_time_limit_s: Some(5) };
    let (vms, errors) = config::parse(GOOD, &limits, &images);
    assert!(errors.is_empty() && vms.len() == 2, "{errors:?}");
    let mut accepted = 0;
    for i in 0..6000u32 {
        let text = match i % 4 {
            0 | 1 => {
                let mut b = GOOD.as_bytes().to_vec();
                mutate(&mut rng, &mut b, &[]);
                String::from_utf8_lossy(&b).into_owned()
            }
            2 => (0..rng.below(40)).map(|_| TOKENS[rng.below(TOKENS.len() as u64) as usize]).collect(),
            _ => {
                let b: Vec<u8> = (0..rng.below(200)).map(|_| rng.next_u64() as u8).collect();
                String::from_utf8_lossy(&b).into_owned()
            }
        };
        let (vms, _) = config::parse(&text, &limits, &images);
        accepted += vms.len();
        check(&vms, &limits);
        // The module-word form and the image-name split take anything too.
        let words = text.replace('\n', " ");
        let (name, rest) =
            config::split_module_cmdline(&words, if i % 2 == 0 { None } else { Some(&["cpuid"]) });
        assert!(name.is_none_or(|n| !n.is_empty() && !n.contains('/')));
        assert!(words.contains(rest));
        if let Ok(v) = config::parse_module_words(&words, None, None) {
            assert!(v.memory_bytes >= 2 << 20 && v.memory_bytes <= 2816 << 20 && !v.name.is_empty());
            assert!(v.cpus >= 1 && v.cpus <= 16);
            assert!(v.pcpus.is_empty() || v.pcpus.len() == v.cpus as usize);
        }
        // Basalt's own section: a value or a named fault, never a panic.
        if let Err(e) = config::host_cmdline(&text) {
            assert!(e.line >= 1 && e.message.starts_with("[basalt]"), "{e:?}");
        }
    }
    assert!(accepted > 1000, "accepted {accepted}");
}
