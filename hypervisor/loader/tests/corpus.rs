//! Broken images and configurations under `corpus/`, each refused with the message listed in
//! `corpus/EXPECTED` (`file | expected part of the message`). The files are made by
//! `regenerate` (run with `--ignored`) from the same builders the unit tests use, so they stay
//! reproducible; the test itself only reads them.

use basalt_loader::bzimage::{self, pc_memory_map, synthetic, LinuxRequest};
use basalt_loader::config::{self, Limits};
use basalt_loader::multiboot::{self, build::*};
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn refusal(name: &str, bytes: &[u8]) -> String {
    let map = pc_memory_map(64 << 20);
    if name.starts_with("bz-") {
        let req = LinuxRequest {
            memory_map: &map,
            cmdline: "",
            initrd_len: 0,
            acpi_rsdp_addr: None,
            boot_structures_len: 0,
        };
        bzimage::plan(bytes, &req).map(|_| ()).unwrap_err().0
    } else if name.starts_with("mb") || name.starts_with("elf-") {
        multiboot::plan(bytes, &map).map(|_| ()).unwrap_err().0
    } else {
        let limits = Limits { cpu_count: 4, max_vcpus: 2, default_time_limit_s: None };
        let images = |n: &str| (n == "cpuid").then_some(0);
        let (_, errors) = config::parse(std::str::from_utf8(bytes).unwrap(), &limits, &images);
        errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")
    }
}

#[test]
fn every_corpus_entry_is_refused_as_expected() {
    let expected = std::fs::read_to_string(dir().join("EXPECTED")).unwrap();
    let mut n = 0;
    for line in expected.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let (file, needle) = line.split_once(" | ").unwrap();
        let bytes = std::fs::read(dir().join(file.trim())).unwrap();
        let msg = refusal(file.trim(), &bytes);
        assert!(msg.contains(needle.trim()), "{file}: wanted {needle:?}, got {msg:?}");
        n += 1;
    }
    let files = std::fs::read_dir(dir()).unwrap().count() - 1;
    assert_eq!(n, files, "every corpus file has an EXPECTED line");
}

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    b[off..off + v.len()].copy_from_slice(v);
}

fn v2_rechecksum(b: &mut [u8], off: usize) {
    let arch = u32::from_le_bytes(b[off + 4..off + 8].try_into().unwrap());
    let len = u32::from_le_bytes(b[off + 8..off + 12].try_into().unwrap());
    let sum = 0u32.wrapping_sub(multiboot::V2_HEADER_MAGIC).wrapping_sub(arch).wrapping_sub(len);
    put(b, off + 12, &sum.to_le_bytes());
}

#[test]
#[ignore = "rewrites corpus/; run by hand after changing the generators"]
fn regenerate() {
    let mut out: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    let good = synthetic(0x020F, 4, 0x2000, 0x10_0000);
    out.push(("bz-truncated-header.bin", good[..0x1F8].to_vec(), "truncated: the boot flag"));
    let mut b = good.clone();
    put(&mut b, 0x1FE, &[0x55, 0x55]);
    out.push(("bz-bad-boot-flag.bin", b, "boot flag is 0x5555, not 0xaa55"));
    let mut b = good.clone();
    put(&mut b, 0x202, b"HdrZ");
    out.push(("bz-bad-magic.bin", b, "not \"HdrS\""));
    let mut b = good.clone();
    put(&mut b, 0x206, &0x0206u16.to_le_bytes());
    out.push(("bz-old-protocol-2.06.bin", b, "boot protocol 2.06 is older than 2.12"));
    let mut b = good.clone();
    put(&mut b, 0x236, &[0, 0]);
    out.push(("bz-no-64-bit-entry.bin", b, "lacks XLF_KERNEL_64"));
    let mut b = good.clone();
    put(&mut b, 0x211, &[0]);
    out.push(("bz-zimage.bin", b, "lacks LOADED_HIGH"));
    let mut b = good.clone();
    put(&mut b, 0x1F4, &0x1000u32.to_le_bytes());
    out.push(("bz-truncated-kernel.bin", b, "syssize says 0x10000 bytes"));
    let mut b = good.clone();
    put(&mut b, 0x1F1, &[200]);
    out.push(("bz-setup-sects-past-end.bin", b, "200 setup sectors end at"));
    let mut b = good.clone();
    put(&mut b, 0x260, &u32::MAX.to_le_bytes());
    out.push(("bz-huge-init-size.bin", b, "no room for the kernel"));
    let mut b = good.clone();
    put(&mut b, 0x230, &0x30_0000u32.to_le_bytes());
    out.push(("bz-alignment-not-power-of-two.bin", b, "kernel_alignment 0x300000 is not a power of two"));
    let mut b = good.clone();
    put(&mut b, 0x201, &[0x10]);
    out.push(("bz-short-header.bin", b, "setup header ends at 0x212"));
    let mut b = good.clone();
    put(&mut b, 0x234, &[0]);
    put(&mut b, 0x258, &0x8000_0000u64.to_le_bytes());
    out.push((
        "bz-fixed-address-outside-ram.bin",
        b,
        "non-relocatable kernel must load at pref_address 0x80000000",
    ));

    let elf32 = |segs: &[Seg<'_>], entry| {
        let mut b = elf(false, entry, segs);
        v1_header(&mut b, 0x100, 0, None);
        b
    };
    let code = [0x90u8; 64];
    let mut b = elf32(&[(0x10_0000, 0x10_0000, &code, 0)], 0x10_0000);
    b[0x108] ^= 0x40;
    out.push(("mb1-bad-checksum.bin", b, "multiboot header at 0x100: checksum"));
    let b = elf32(&[(0x10_0000, 0x10_0000, &code, 0)], 0x10_0000);
    out.push(("mb1-truncated-elf.bin", b[..b.len() - 10].to_vec(), "truncated: ELF segment 0's file bytes"));
    out.push((
        "mb1-segment-out-of-ram.bin",
        elf32(&[(0x800_0000, 0x800_0000, &code, 0)], 0x800_0000),
        "0x8000000..0x8000040 is not inside usable guest RAM",
    ));
    out.push((
        "mb1-segment-in-bios-hole.bin",
        elf32(&[(0xF_0000, 0xF_0000, &code, 0)], 0xF_0000),
        "is not inside usable guest RAM",
    ));
    out.push((
        "mb1-overlapping-segments.bin",
        elf32(&[(0x10_0000, 0x10_0000, &code, 0x1000), (0x10_0800, 0x10_0800, &code, 0)], 0x10_0000),
        "segment at 0x100800..0x100840 overlaps the segment at 0x100000..0x101040",
    ));
    out.push((
        "mb1-entry-outside.bin",
        elf32(&[(0x10_0000, 0x10_0000, &code, 0)], 0x30_0000),
        "ELF entry point 0x300000 is not inside any loadable segment",
    ));
    let mut b = elf(true, 0x10_0000, &[(0x10_0000, 0x10_0000, &code, u64::MAX - 0x1000)]);
    v1_header(&mut b, 0x100, 0, None);
    out.push(("mb1-huge-memsz.bin", b, "wraps past 2^64"));
    let mut b = elf32(&[(0x10_0000, 0x10_0000, &code, 0)], 0x10_0000);
    v1_header(&mut b, 0x100, multiboot::V1_VIDEO_MODE, None);
    out.push(("mb1-video-required.bin", b, "requires video mode information (flags bit 2)"));
    let mut b = vec![0u8; 0x2000];
    v1_header(&mut b, 0x40, multiboot::V1_AOUT_KLUDGE, Some([0x10_0040, 0x10_0080, 0, 0, 0x10_0080]));
    out.push(("mb1-aout-load-above-header.bin", b, "load_addr 0x100080 is above header_addr 0x100040"));
    let mut b = vec![0u8; 0x2000];
    v1_header(
        &mut b,
        0x40,
        multiboot::V1_AOUT_KLUDGE,
        Some([0x10_0040, 0x10_0000, 0x10_1000, 0x10_0800, 0x10_0080]),
    );
    out.push((
        "mb1-aout-bss-below-load-end.bin",
        b,
        "bss_end_addr 0x100800 is below the end of the loaded bytes 0x101000",
    ));
    let mut b = vec![0u8; 0x2000];
    v1_header(&mut b, 0x40, multiboot::V1_AOUT_KLUDGE, Some([0x10_0040, 0x10_0000, 0x10_9000, 0, 0x10_0080]));
    out.push((
        "mb1-aout-past-end-of-file.bin",
        b,
        "truncated: the a.out kludge loads file bytes 0x0..0x9000",
    ));
    let mut b = vec![0u8; 0x2000];
    v1_header(&mut b, 0x40, 0, None);
    out.push(("mb1-not-elf-no-kludge.bin", b, "not ELF and its header has no a.out kludge"));
    let mut b = vec![0u8; 0x3000];
    v1_header(&mut b, 0x2000, 0, None);
    out.push(("mb1-header-past-8k.bin", b, "no multiboot header"));

    let elf64 = |segs: &[Seg<'_>], entry, tags: &[Vec<u8>]| {
        let mut b = elf(true, entry, segs);
        v2_header(&mut b, 0x200, tags);
        b
    };
    let seg: &[Seg<'_>] = &[(0x10_0000, 0x10_0000, &code, 0)];
    let mut b = elf64(seg, 0x10_0000, &[]);
    b[0x20C] ^= 1;
    out.push(("mb2-bad-checksum.bin", b, "multiboot2 header at 0x200: checksum"));
    let mut b = elf64(seg, 0x10_0000, &[v2_tag(4, 0, &u32s(&[0]))]);
    put(&mut b, 0x208, &(16u32 + 16).to_le_bytes());
    v2_rechecksum(&mut b, 0x200);
    out.push(("mb2-no-end-tag.bin", b, "has no end tag within its header_length 0x20"));
    let mut b = elf64(seg, 0x10_0000, &[v2_tag(4, 0, &u32s(&[0]))]);
    put(&mut b, 0x214, &0x1000u32.to_le_bytes());
    out.push(("mb2-tag-size-past-header.bin", b, "size 4096 is below 8 or runs past header_length"));
    out.push((
        "mb2-framebuffer-required.bin",
        elf64(seg, 0x10_0000, &[v2_tag(5, 0, &u32s(&[640, 480, 32]))]),
        "requires a framebuffer",
    ));
    out.push((
        "mb2-efi-required.bin",
        elf64(seg, 0x10_0000, &[v2_tag(7, 0, &[])]),
        "requires EFI (tag 7 not optional)",
    ));
    out.push((
        "mb2-unknown-tag.bin",
        elf64(seg, 0x10_0000, &[v2_tag(77, 0, &[])]),
        "tag type 77, unknown and not optional",
    ));
    out.push((
        "mb2-request-unknown-info.bin",
        elf64(seg, 0x10_0000, &[v2_tag(1, 0, &u32s(&[1, 21]))]),
        "asks for boot information tag 21",
    ));
    out.push((
        "mb2-above-4g.bin",
        elf64(&[(0x1_0000_0000, 0x1_0000_0000, &code, 0)], 0x1_0000_0000, &[]),
        "is not below 4 GiB",
    ));
    let mut b = elf64(seg, 0x10_0000, &[]);
    put(&mut b, 0x204, &4u32.to_le_bytes());
    v2_rechecksum(&mut b, 0x200);
    out.push(("mb2-mips.bin", b, "architecture 4 is not i386"));
    let mut b = vec![0u8; 0x1000];
    v2_header(&mut b, 0x10, &[v2_tag(2, 0, &u32s(&[0x10_0010, 0x10_0000, 0, 0]))]);
    out.push(("mb2-address-tag-without-entry.bin", b, "no entry address tag (3)"));
    let mut b = elf(false, 0x10_0000, seg);
    let ph = 52;
    put(&mut b, ph + 16, &0x100u32.to_le_bytes()); // filesz 0x100 > memsz 0x40
    put(&mut b, ph + 20, &0x40u32.to_le_bytes());
    v1_header(&mut b, 0x100, 0, None);
    out.push(("elf-filesz-over-memsz.bin", b, "p_filesz 0x100 is larger than p_memsz 0x40"));

    out.push((
        "cfg-unknown-key.cfg",
        b"[vm a]\nkernel = cpuid\nmemroy = 16M\n".to_vec(),
        "line 3: [vm a] memroy: unknown key",
    ));
    out.push((
        "cfg-duplicate-vm.cfg",
        b"[vm a]\nkernel = cpuid\n[vm a]\nkernel = cpuid\n".to_vec(),
        "line 3: [vm a] a VM of this name is already on line 1",
    ));
    out.push((
        "cfg-shared-pcpu.cfg",
        b"[vm a]\nkernel = cpuid\npcpus = 1-2\n[vm b]\nkernel = cpuid\npcpus = 2\ncpus = 1\n".to_vec(),
        "line 6: [vm b] pcpus: CPU 2 is already VM a's (line 3)",
    ));
    out.push((
        "cfg-memory-no-suffix.cfg",
        b"[vm a]\nkernel = cpuid\nmemory = 64\n".to_vec(),
        "line 3: [vm a] memory: \"64\" is not a size with a K, M or G suffix",
    ));
    out.push((
        "cfg-missing-kernel-image.cfg",
        b"[vm a]\nkernel = /boot/nothing\n".to_vec(),
        "line 2: [vm a] kernel: there is no image \"/boot/nothing\"",
    ));
    out.push((
        "cfg-unclosed-quote.cfg",
        b"[vm a]\nkernel = cpuid\ncmdline = \"console=ttyS0\n".to_vec(),
        "line 3: [vm a] cmdline: the quoted value is not closed",
    ));
    out.push((
        "cfg-bad-section.cfg",
        b"[machine a]\nkernel = cpuid\n".to_vec(),
        "line 1: \"[machine a]\" is not a section header",
    ));

    let d = dir();
    std::fs::create_dir_all(&d).unwrap();
    for e in std::fs::read_dir(&d).unwrap().flatten() {
        std::fs::remove_file(e.path()).unwrap();
    }
    let mut expected = String::from("# file | part of the refusal it must give (see tests/corpus.rs)\n");
    for (name, bytes, needle) in &out {
        std::fs::write(d.join(name), bytes).unwrap();
        expected.push_str(&format!("{name} | {needle}\n"));
    }
    std::fs::write(d.join("EXPECTED"), expected).unwrap();
}
