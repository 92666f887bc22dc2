//! Bounded deterministic fuzzing of the bzImage planner: mutated good images and random
//! bytes, random memory maps, initrd sizes and command lines. Never a panic; every plan that
//! comes back satisfies the placement invariants.

mod common;
use basalt_loader::bzimage::{self, synthetic, LinuxPlan, LinuxRequest};
use common::*;

const HOT: [usize; 16] = [
    0x1F1, 0x1F4, 0x1FE, 0x201, 0x202, 0x206, 0x211, 0x22C, 0x230, 0x234, 0x236, 0x238, 0x258, 0x25C, 0x260,
    0x264,
];

fn check(image: &[u8], req: &LinuxRequest<'_>, p: &LinuxPlan) -> Result<(), String> {
    let ram = usable(req.memory_map);
    let pieces = p.pieces();
    for (r, name) in &pieces {
        if r.is_empty() || !in_ram(&ram, r) {
            return Err(format!("{name} {r} is not in usable RAM"));
        }
    }
    disjoint(&pieces)?;
    let h = &p.header;
    if !p.kernel_reserved.contains_range(&p.kernel) || p.kernel.len() != p.kernel_file.len() as u64 {
        return Err("kernel bytes outside its reserved span".into());
    }
    if p.kernel_reserved.len() < h.init_size as u64 || p.kernel_file.end != image.len() {
        return Err("reserved span shorter than init_size".into());
    }
    if h.relocatable_kernel && !p.kernel_reserved.start.is_multiple_of(h.kernel_alignment as u64) {
        return Err(format!(
            "kernel at {:#x} not aligned to {:#x}",
            p.kernel_reserved.start, h.kernel_alignment
        ));
    }
    if !h.relocatable_kernel && p.kernel_reserved.start != h.pref_address {
        return Err("fixed kernel moved".into());
    }
    if p.entry64 != p.kernel.start + 0x200
        || p.boot_params.len() != 4096
        || !p.boot_params_addr.is_multiple_of(4096)
    {
        return Err("entry / zero page".into());
    }
    if let Some(rd) = p.initrd {
        if !rd.start.is_multiple_of(4096)
            || rd.end > h.initrd_addr_max as u64 + 1
            || rd.len() != req.initrd_len
        {
            return Err(format!("initrd {rd} misplaced (max {:#x})", h.initrd_addr_max));
        }
    }
    if p.cmdline.last() != Some(&0) || p.cmdline.len() > h.cmdline_size as usize + 1 {
        return Err("command line".into());
    }
    if p.boot_params[0x210] != 0xFF || p.boot_params[0x1E8] as usize != p.e820.len() {
        return Err("zero page fields".into());
    }
    Ok(())
}

#[test]
fn fuzz_bzimage() {
    let mut rng = XorShift::new(0x00B2_1A6E);
    let bases = [
        synthetic(0x020F, 0, 0x800, 0x4000),
        synthetic(0x020C, 7, 0x100, 0x40_0000),
        synthetic(0x020A, 1, 16, 0),
    ];
    let (mut ok, mut refused) = (0u32, 0u32);
    for i in 0..20_000u32 {
        let mut img = if i % 16 == 15 {
            (0..rng.below(0x600)).map(|_| rng.next_u64() as u8).collect()
        } else {
            bases[rng.below(bases.len() as u64) as usize].clone()
        };
        mutate(&mut rng, &mut img, &HOT);
        let map = memory_map(&mut rng);
        let cmdline = "x".repeat(rng.below(3000) as usize);
        let req = LinuxRequest {
            memory_map: &map,
            cmdline: &cmdline,
            initrd_len: [0, 1, 0x1234, 8 << 20, u64::MAX / 2][rng.below(5) as usize],
            acpi_rsdp_addr: rng.one_in(2).then_some(0xE0000),
            boot_structures_len: rng.below(0x10000),
        };
        match bzimage::plan(&img, &req) {
            Ok(p) => {
                ok += 1;
                if let Err(e) = check(&img, &req, &p) {
                    panic!("case {i}: {e}");
                }
            }
            Err(e) => {
                refused += 1;
                assert!(!e.0.is_empty());
            }
        }
    }
    assert!(ok > 300 && refused > 300, "ok {ok} refused {refused}: the mutations should reach both");
}
