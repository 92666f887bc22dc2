//! The guest side of the ucall ABI: fill the record, OUT its address to [`UCALL_PORT`]. Without
//! Basalt (QEMU booted the guest itself) the same calls use COM1 and isa-debug-exit ([`crate::bare`]).

use crate::{write_cut, ExitCounter, UcallKind, UcallRecord, UCALL_PORT};
use core::cell::UnsafeCell;
use core::fmt;
use core::panic::Location;

/// The one record every ucall goes through, in guest memory (identity-mapped, so its address is
/// its guest-physical address; guests link at 1 MiB, well below 4 GiB).
struct RecordCell(UnsafeCell<UcallRecord>);

// SAFETY: guests run on one vCPU and a ucall runs to completion before the next starts (the
// interrupt and exception handlers of `idt` make a ucall only to stop the guest), so the record
// is never used by two ucalls at once.
unsafe impl Sync for RecordCell {}

static RECORD: RecordCell = RecordCell(UnsafeCell::new(UcallRecord::empty()));

/// Makes one ucall and returns the record's `args` as Basalt left them.
/// Without Basalt (a guest QEMU booted directly) it goes to [`crate::bare::ucall`] instead.
pub fn ucall(kind: UcallKind, file: &str, line: u32, args: [u64; 4], msg: fmt::Arguments<'_>) -> [u64; 4] {
    if !crate::bare::under_basalt() {
        return crate::bare::ucall(kind, file, line, args, msg);
    }
    let mut record = UcallRecord::new(kind, file, line, "", args);
    record.msg_len = write_cut(&mut record.msg, msg) as u16;
    let ptr = RECORD.0.get();
    // SAFETY: `ptr` points to the static record, which no other ucall uses now (see RecordCell).
    unsafe { ptr.write_volatile(record) };
    let address = ptr as usize as u32;
    // SAFETY: a 32-bit OUT to the ucall port. Basalt reads the record and may write its `args`
    // before it resumes us; the asm has no `nomem`, so the compiler keeps the write above
    // before it and the read below after it.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") UCALL_PORT, in("eax") address, options(nostack, preserves_flags))
    };
    // SAFETY: as above; Basalt is done with the record once the OUT completes.
    unsafe { core::ptr::addr_of!((*ptr).args).read_volatile() }
}

/// Prints `msg` on Basalt's console (see [`crate::guest_println!`]).
#[track_caller]
pub fn print(msg: fmt::Arguments<'_>) {
    let at = Location::caller();
    ucall(UcallKind::Print, at.file(), at.line(), [0; 4], msg);
}

/// A checkpoint: Basalt prints `n` and resumes the guest.
#[track_caller]
pub fn sync(n: u64) {
    let at = Location::caller();
    ucall(UcallKind::Sync, at.file(), at.line(), [n, 0, 0, 0], format_args!("sync {n}"));
}

/// Tells Basalt the test passed. Basalt stops the VM; if it ever resumes us, we halt.
#[track_caller]
pub fn done() -> ! {
    let at = Location::caller();
    ucall(UcallKind::Done, at.file(), at.line(), [0; 4], format_args!("done"));
    halt_forever()
}

/// Makes external interrupt `vector` (32..=255) pending for this vCPU; it arrives once RFLAGS.IF
/// is set.
#[track_caller]
pub fn raise_interrupt(vector: u8) {
    let at = Location::caller();
    ucall(UcallKind::RaiseInterrupt, at.file(), at.line(), [u64::from(vector), 0, 0, 0], format_args!(""));
}

/// The number of exits of kind `counter` this vCPU took so far (the ucall itself is an I/O exit).
#[track_caller]
pub fn exit_count(counter: ExitCounter) -> u64 {
    let at = Location::caller();
    ucall(UcallKind::ExitCount, at.file(), at.line(), [counter as u64, 0, 0, 0], format_args!(""))[1]
}

/// Reports a failed assertion at `file:line` and stops. Basalt stops the VM on AssertFail.
pub fn assert_fail(file: &str, line: u32, args: [u64; 4], msg: fmt::Arguments<'_>) -> ! {
    ucall(UcallKind::AssertFail, file, line, args, msg);
    halt_forever()
}

/// What the panic handler of every guest ([`crate::entry!`]) does: report the panic as a failed
/// assertion at its location.
pub fn report_panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let (file, line) = info.location().map_or(("<unknown>", 0), |l| (l.file(), l.line()));
    assert_fail(file, line, [0; 4], format_args!("panicked: {}", info.message()))
}

/// Halts with interrupts off, for good.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: CLI and HLT only stop this vCPU; they touch no memory.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// Asks Basalt to have another CPU send an NMI to this vCPU's CPU in `delay_us` microseconds.
#[track_caller]
pub fn request_nmi(delay_us: u64) {
    let at = Location::caller();
    ucall(UcallKind::RequestNmi, at.file(), at.line(), [delay_us, 0, 0, 0], format_args!(""));
}

/// Has Basalt inject exception `vector` (with `error_code` where given, and CR2 = `cr2` for a
/// #PF) at the next entry, as if the CPU raised it right after this ucall.
#[track_caller]
pub fn inject_exception(vector: u8, error_code: Option<u32>, cr2: u64) {
    let at = Location::caller();
    let code = error_code.map_or(0, |c| crate::INJECT_HAS_ERROR_CODE | u64::from(c));
    ucall(
        UcallKind::Inject,
        at.file(),
        at.line(),
        [crate::INJECT_EXCEPTION, u64::from(vector), code, cr2],
        format_args!(""),
    );
}

/// Has Basalt inject an NMI at the next entry.
#[track_caller]
pub fn inject_nmi() {
    let at = Location::caller();
    ucall(UcallKind::Inject, at.file(), at.line(), [crate::INJECT_NMI, 2, 0, 0], format_args!(""));
}
