//! The part of the loader that talks to UEFI: files, pages, the configuration table, exiting
//! boot services and the jump to the kernel.

use crate::{config, elf, memory};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use basalt_boot::uefi::{find_uefi_entry, Handoff, HANDOFF_SIZE, UEFI_HANDOFF_MAGIC};
use basalt_boot::{BootInfo, FixedStr, FixedVec, Loader, Module, MAX_CMDLINE, MAX_MODULES};
use core::time::Duration;
use uefi::boot::{self, AllocateType, MemoryType};
use uefi::fs::FileSystem;
use uefi::mem::memory_map::{MemoryMap as _, MemoryMapMut as _};
use uefi::table::cfg::ConfigTableEntry;
use uefi::{entry, println, CString16, Status};

const KERNEL_PATH: &str = "\\basalt\\basalt.elf";
const CONFIG_PATH: &str = "\\basalt\\basalt.cfg";
/// Everything the kernel must read is allocated below 4 GiB: its boot map covers only that.
const BELOW_4G: u64 = 0xFFFF_FFFF;
/// The stack the loader switches to for the jump (the kernel moves to its own at once).
const STACK_BYTES: usize = 256 << 10;
const PAGE: u64 = 4096;

/// What is left to do once every file is loaded: nothing of it lives on the heap, because
/// the heap is gone after ExitBootServices.
struct Launch {
    entry: u64,
    handoff_addr: u64,
    stack_top: u64,
    modules: FixedVec<Module, MAX_MODULES>,
    /// Files of basalt.cfg beyond what fits in MAX_MODULES: not loaded, counted for the kernel.
    modules_dropped: u32,
    cmdline: FixedStr<MAX_CMDLINE>,
    rsdp: Option<u64>,
}

#[entry]
fn main() -> Status {
    // The firmware's 5-minute watchdog would reset a machine that waits at an error.
    let _ = boot::set_watchdog_timer(0, 0x10000, None);
    println!("basalt-uefi: Basalt's UEFI loader {}", env!("CARGO_PKG_VERSION"));
    match prepare() {
        Ok(launch) => start(launch),
        Err(message) => {
            println!("basalt-uefi: error: {message}");
            println!("basalt-uefi: Basalt was not started. Press a key to return to the firmware.");
            wait_for_key();
            Status::LOAD_ERROR
        }
    }
}

fn wait_for_key() {
    let event = uefi::system::with_stdin(|stdin| {
        let _ = stdin.reset(false);
        stdin.wait_for_key_event().ok()
    });
    match event {
        Some(event) => {
            let _ = boot::wait_for_event(&[event]);
        }
        None => loop {
            boot::stall(Duration::from_secs(1));
        },
    }
}

fn read(fs: &mut FileSystem, path: &str) -> Result<Vec<u8>, String> {
    let name = CString16::try_from(path).map_err(|_| format!("bad file name {path}"))?;
    fs.read(uefi::fs::Path::new(&name)).map_err(|e| match e {
        uefi::fs::Error::Io(io) if io.uefi_error.status() == Status::NOT_FOUND => {
            format!("{path} does not exist")
        }
        uefi::fs::Error::Io(io) => format!("cannot read {path}: {:?}", io.uefi_error.status()),
        other => format!("cannot read {path}: {other}"),
    })
}

/// `bytes` rounded up to whole pages.
fn pages(bytes: u64) -> usize {
    bytes.div_ceil(PAGE) as usize
}

/// Pages of LOADER_DATA below 4 GiB; returns their physical (identity-mapped) address.
fn alloc_below_4g(bytes: u64, what: &str) -> Result<u64, String> {
    boot::allocate_pages(AllocateType::MaxAddress(BELOW_4G), MemoryType::LOADER_DATA, pages(bytes).max(1))
        .map(|p| p.as_ptr() as u64)
        .map_err(|e| format!("no memory below 4 GiB for {what} ({bytes} bytes): {:?}", e.status()))
}

/// Copy `bytes` to physical `addr` and zero the rest up to `len`.
///
/// # Safety
/// `[addr, addr + len)` must be pages this loader allocated, identity-mapped (UEFI on x86_64
/// identity-maps all memory), and `bytes.len() <= len`.
unsafe fn place(addr: u64, len: u64, bytes: &[u8]) {
    // SAFETY: forwarded from the caller; the allocation cannot overlap `bytes`, which lives
    // in pool memory the firmware handed out separately.
    unsafe {
        core::ptr::write_bytes(addr as *mut u8, 0, len as usize);
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len());
    }
}

fn prepare() -> Result<Launch, String> {
    let sfs = boot::get_image_file_system(boot::image_handle())
        .map_err(|e| format!("cannot open the volume the loader came from: {:?}", e.status()))?;
    let mut fs = FileSystem::new(sfs);

    let text = read(&mut fs, CONFIG_PATH)?;
    let text = core::str::from_utf8(&text).map_err(|_| format!("{CONFIG_PATH} is not UTF-8 text"))?;
    let plan = config::plan(text)?;
    let cmdline = basalt_boot::cmdline::kernel_cmdline(&plan.cmdline)
        .map_err(|_| format!("basalt.cfg: the cmdline is longer than {MAX_CMDLINE} bytes"))?;
    // The configuration is a module too; Basalt runs at most MAX_MODULES modules: the files
    // beyond are counted and handed over as a number, so the kernel reports them (and a test
    // fails) instead of never hearing of them.
    let files = &plan.files[..plan.files.len().min(MAX_MODULES - 1)];
    let modules_dropped = (plan.files.len() - files.len()) as u32;
    if modules_dropped > 0 {
        println!(
            "basalt-uefi: basalt.cfg names {} files, Basalt takes at most {} beside the configuration: files {}-{} are not loaded",
            plan.files.len(),
            MAX_MODULES - 1,
            MAX_MODULES,
            plan.files.len()
        );
    }

    // Every file first. A file that is missing is not loaded: Basalt refuses its VM ("there
    // is no image"), and the others start.
    let mut images: Vec<(String, Vec<u8>)> = Vec::new();
    for file in files {
        let path = config::esp_path(file);
        match read(&mut fs, &path) {
            Ok(bytes) if !bytes.is_empty() => images.push((config::module_cmdline(file), bytes)),
            Ok(_) => println!("basalt-uefi: {path} is empty: not loaded"),
            Err(e) => println!("basalt-uefi: {e}: not loaded"),
        }
    }
    images.insert(0, (String::from(config::CONFIG_MODULE), text.as_bytes().to_vec()));
    let kernel = read(&mut fs, KERNEL_PATH)?;
    let segments = elf::load_segments(&kernel).map_err(|e| format!("{KERNEL_PATH}: {e}"))?;
    let entry = find_uefi_entry(elf::file_bytes(&kernel, &segments[0])).ok_or_else(|| {
        format!("{KERNEL_PATH} has no UEFI entry marker (BASALTUE): not a Basalt kernel, or too old")
    })?;
    load_kernel(&kernel, &segments)?;
    println!("basalt-uefi: kernel {KERNEL_PATH} loaded, entry {entry:#x}");

    let mut modules = FixedVec::new();
    for (name, bytes) in &images {
        let len = bytes.len() as u64;
        let start = alloc_below_4g(len, name)?;
        // SAFETY: `start` is a fresh allocation of `len` bytes rounded up to pages.
        unsafe { place(start, len, bytes) };
        let cmdline = FixedStr::try_from_str(name)
            .map_err(|_| format!("basalt.cfg: the file name {name} is too long for a module"))?;
        // Cannot fail: at most MAX_MODULES modules are taken above.
        let _ = modules.push(Module { start, end: start + len, cmdline });
        println!("basalt-uefi: {name} ({len} bytes) at {start:#x}");
    }

    let rsdp = uefi::system::with_config_table(|table| {
        let find = |guid| table.iter().find(|e| e.guid == guid).map(|e| e.address as u64);
        find(ConfigTableEntry::ACPI2_GUID).or_else(|| find(ConfigTableEntry::ACPI_GUID))
    });
    if rsdp.is_none() {
        println!("basalt-uefi: warning: the firmware lists no ACPI RSDP");
    }
    let handoff_addr = alloc_below_4g(HANDOFF_SIZE as u64, "the boot information")?;
    let stack_top = alloc_below_4g(STACK_BYTES as u64, "the hand-off stack")? + STACK_BYTES as u64;
    Ok(Launch { entry, handoff_addr, stack_top, modules, modules_dropped, cmdline, rsdp })
}

/// Allocate the kernel's physical range, `[first segment, end of last)`, and load it.
fn load_kernel(kernel: &[u8], segments: &[elf::Segment]) -> Result<(), String> {
    let first = segments[0].paddr & !(PAGE - 1);
    let end = segments[segments.len() - 1].end().next_multiple_of(PAGE);
    boot::allocate_pages(AllocateType::Address(first), MemoryType::LOADER_DATA, pages(end - first)).map_err(
        |e| {
            format!(
                "the firmware owns the memory the kernel must be loaded at ({first:#x}..{end:#x}): {:?}",
                e.status()
            )
        },
    )?;
    for seg in segments {
        // SAFETY: the whole range of every segment was allocated above.
        unsafe { place(seg.paddr, seg.mem_size, elf::file_bytes(kernel, seg)) };
    }
    Ok(())
}

/// Exit boot services, write the hand-off and jump to the kernel.
fn start(launch: Launch) -> ! {
    println!("basalt-uefi: starting Basalt (command line {:?})", launch.cmdline.as_str());
    // SAFETY: nothing of boot services is used after this: no allocation, no console, no
    // protocol (the file system was closed when `prepare` returned).
    let mut map = unsafe { boot::exit_boot_services(None) };
    map.sort();
    let descriptors = map.entries().map(|d| (d.ty.0, d.phys_start, d.page_count));
    let Ok(memory) = memory::convert(descriptors) else {
        // No console any more: nothing better to do than stop.
        halt()
    };
    let info = BootInfo {
        loader: Loader::Uefi,
        memory,
        modules: launch.modules,
        modules_dropped: launch.modules_dropped,
        cmdline: launch.cmdline,
        rsdp: launch.rsdp,
        loader_info: (launch.handoff_addr, launch.handoff_addr + HANDOFF_SIZE as u64),
    };
    let handoff = launch.handoff_addr as *mut Handoff;
    // SAFETY: `handoff_addr` is a fresh allocation of HANDOFF_SIZE bytes, page-aligned,
    // identity-mapped; LOADER_DATA stays ours after ExitBootServices.
    unsafe {
        handoff.write(Handoff::new());
        (*handoff).encode(&info);
    }
    // SAFETY: the kernel was loaded at its physical addresses and `entry` is its 64-bit UEFI
    // entry; the stack is ours; RDI/RSI carry the hand-off as `basalt_uefi_entry` expects.
    unsafe {
        core::arch::asm!(
            "cli",
            "mov rsp, {stack}",
            "xor ebp, ebp",
            "jmp {entry}",
            stack = in(reg) launch.stack_top,
            entry = in(reg) launch.entry,
            in("rdi") u64::from(UEFI_HANDOFF_MAGIC),
            in("rsi") launch.handoff_addr,
            options(noreturn)
        )
    }
}

fn halt() -> ! {
    loop {
        // SAFETY: stopping the CPU with interrupts off is all that is left to do.
        unsafe { core::arch::asm!("cli", "hlt") };
    }
}
