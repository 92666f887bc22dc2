//! Bounded deterministic fuzzing of the multiboot planner and boot information builders:
//! mutated ELF32 / ELF64 / a.out-kludge images with v1 and v2 headers, and random bytes.
//! Never a panic (nor in the image classification of `detect`); every plan satisfies its invariants, and so does every boot information
//! structure built for it.

mod common;
use basalt_loader::memmap::Range;
use basalt_loader::multiboot::{self, build::*, BootInfoRequest, Module, MultibootPlan, Version};
use common::*;

fn bases() -> Vec<(Vec<u8>, Vec<usize>)> {
    let code = [0x90u8; 48];
    let mut out = Vec::new();
    // ELF32 + v1: ELF header fields and the program headers are hot.
    let mut b =
        elf(false, 0x10_0000, &[(0x10_0000, 0x10_0000, &code, 0x100), (0x20_0000, 0x20_0000, &code, 0)]);
    v1_header(&mut b, 0x200, multiboot::V1_PAGE_ALIGN, None);
    let elf32_hot = vec![4, 5, 16, 18, 24, 28, 42, 44, 52, 56, 60, 64, 68, 72, 84, 88, 92, 96, 100, 0x204];
    out.push((b, elf32_hot));
    // ELF64 + v2 with tags.
    let mut b = elf(true, 0x10_0000, &[(0x10_0000, 0x10_0000, &code, 0x2000)]);
    v2_header(
        &mut b,
        0x400,
        &[v2_tag(1, 0, &u32s(&[1, 6])), v2_tag(6, 0, &[]), v2_tag(5, 1, &u32s(&[0, 0, 0]))],
    );
    let elf64_hot = vec![
        4, 24, 32, 54, 56, 64, 72, 80, 88, 96, 104, 0x404, 0x408, 0x410, 0x412, 0x414, 0x418, 0x420, 0x424,
    ];
    out.push((b, elf64_hot));
    // a.out kludge, v1 and v2.
    let mut b = vec![0u8; 0x1800];
    v1_header(
        &mut b,
        0x40,
        multiboot::V1_AOUT_KLUDGE,
        Some([0x10_0040, 0x10_0000, 0x10_1000, 0x10_3000, 0x10_0080]),
    );
    out.push((b, vec![0x44, 0x4C, 0x50, 0x54, 0x58, 0x5C]));
    let mut b = vec![0u8; 0x1800];
    v2_header(
        &mut b,
        0x8,
        &[v2_tag(2, 0, &u32s(&[0x10_0008, u32::MAX, 0, 0x10_4000])), v2_tag(3, 0, &u32s(&[0x10_0100]))],
    );
    out.push((b, vec![0xC, 0x10, 0x18, 0x1C, 0x20, 0x24, 0x28, 0x2C, 0x30, 0x34, 0x38]));
    out
}

fn check_plan(img: &[u8], map_ram: &[Range], p: &MultibootPlan) -> Result<(), String> {
    let mut pieces = Vec::new();
    for s in &p.segments {
        let r = s.range();
        if r.is_empty()
            || !in_ram(map_ram, &r)
            || r.end > 1 << 32
            || s.file.end > img.len()
            || s.file.start > s.file.end
        {
            return Err(format!("segment {r} / file {:?} bad", s.file));
        }
        pieces.push((r, "segment"));
    }
    disjoint(&pieces)?;
    if !p.segments.iter().any(|s| s.range().contains(p.entry as u64)) {
        return Err(format!("entry {:#x} outside", p.entry));
    }
    let want = if p.version == Version::V1 { 0x2BAD_B002 } else { 0x36D7_6289 };
    if p.magic != want {
        return Err("magic".into());
    }
    Ok(())
}

#[test]
fn fuzz_multiboot() {
    let mut rng = XorShift::new(0x0003_B007);
    let bases = bases();
    let (mut ok, mut refused, mut infos) = (0u32, 0u32, 0u32);
    for i in 0..5000u32 {
        let (mut img, hot) = if i % 16 == 15 {
            ((0..rng.below(0x1000)).map(|_| rng.next_u64() as u8).collect(), Vec::new())
        } else {
            bases[rng.below(bases.len() as u64) as usize].clone()
        };
        mutate(&mut rng, &mut img, &hot);
        // The classification never panics, and refuses only with a reason.
        if let Err(e) = basalt_loader::detect::classify(&img, false) {
            assert!(!e.0.is_empty());
        }
        let map = memory_map(&mut rng);
        let ram = usable(&map);
        let p = match multiboot::plan(&img, &map) {
            Ok(p) => p,
            Err(e) => {
                refused += 1;
                assert!(!e.0.is_empty());
                continue;
            }
        };
        ok += 1;
        if let Err(e) = check_plan(&img, &ram, &p) {
            panic!("case {i}: {e}");
        }
        let lens: Vec<u64> = (0..rng.below(3)).map(|_| rng.below(0x10000) + 1).collect();
        let cmdlines = ["", "name=x", "a b c"];
        let mut modules: Vec<Module<'_>> = lens
            .iter()
            .map(|&len| Module { start: 0, len, cmdline: cmdlines[rng.below(3) as usize] })
            .collect();
        let rsdp = [0u8; 36];
        let first = modules.clone();
        let req = BootInfoRequest {
            memory_map: &map,
            cmdline: "console=ttyS0",
            modules: &first,
            boot_loader_name: "basalt",
            acpi_rsdp: rng.one_in(2).then_some(&rsdp[..]),
        };
        let Ok(len) = p.info_len(&req) else { continue };
        let Ok(layout) = p.place(&map, &lens, len) else { continue };
        for (m, a) in modules.iter_mut().zip(&layout.modules) {
            m.start = if rng.one_in(8) { rng.below(1 << 26) } else { *a };
        }
        let addr = if rng.one_in(8) { rng.below(1 << 26) } else { layout.info_addr };
        let req = BootInfoRequest { modules: &modules, ..req };
        let Ok(info) = p.boot_info(addr, &req) else { continue };
        infos += 1;
        let info_r = Range::new(addr, addr + info.len() as u64);
        let mut pieces: Vec<(Range, &str)> = p.segments.iter().map(|s| (s.range(), "segment")).collect();
        pieces.push((info_r, "info"));
        for m in &modules {
            pieces.push((Range::new(m.start, m.start + m.len), "module"));
            assert!(!p.page_align_modules || m.start.is_multiple_of(4096), "case {i}: module alignment");
        }
        for (r, name) in &pieces {
            assert!(in_ram(&ram, r), "case {i}: {name} {r} not in RAM");
        }
        disjoint(&pieces).unwrap_or_else(|e| panic!("case {i}: {e}"));
        if p.version == Version::V2 {
            assert!(addr.is_multiple_of(8) && info.len().is_multiple_of(8), "case {i}: v2 alignment");
            assert_eq!(
                u32::from_le_bytes(info[..4].try_into().unwrap()) as usize,
                info.len(),
                "case {i}: total_size"
            );
        }
    }
    assert!(ok > 300 && refused > 300 && infos > 200, "ok {ok} refused {refused} infos {infos}");
}
