//! The ABI between Basalt and its guests, in one place both sides build: the kernel
//! (`hypervisor/`) and the guest payloads (`tests/`, crate `basalt-guests`, which re-exports all
//! of it). No dependencies and no `unsafe`, so the kernel takes nothing from its test payloads
//! and the two sides can never disagree on a number or a layout.
//!
//! - Ucall: the guest fills a [`UcallRecord`] in its own memory and writes the record's
//!   guest-physical address (below 4 GiB) with a 32-bit `OUT` to [`UCALL_PORT`]. Basalt
//!   validates the address against the VM's memory, reads the record
//!   ([`UcallRecord::from_bytes`]) and acts on its [`UcallKind`].
//! - Hypercalls (VMCALL on Intel, VMMCALL on AMD): RAX holds the call number and receives the
//!   result; [`HC_VERSION`] returns [`HYPERCALL_ABI_VERSION`], an unknown number all ones.
//! - Scratch registers for guests to test exits against: the port [`SCRATCH_PORT`] (32 bits)
//!   and the MSR [`SCRATCH_MSR`] (64 bits).
#![no_std]
#![cfg_attr(not(test), forbid(unsafe_code))]

/// Hypercall `HC_VERSION` (RAX = 0): returns Basalt's hypercall ABI version.
pub const HC_VERSION: u64 = 0;
/// Hypercall `HC_STATS` (RAX = 1): Basalt prints this vCPU's statistics line on its console
/// (`VM <name>: stats ...`, see the README) and returns 0.
pub const HC_STATS: u64 = 1;
/// What [`HC_VERSION`] returns: major << 16 | minor.
pub const HYPERCALL_ABI_VERSION: u64 = 1 << 16;

/// A 32-bit read/write register for guests to test port I/O of every size against.
pub const SCRATCH_PORT: u16 = 0x00E4;

/// Basalt's scratch MSR: 64 bits a guest can write and read back (in the range reserved for
/// hypervisors, like KVM's 0x4B56_4Dxx).
pub const SCRATCH_MSR: u32 = 0x4B42_0000;

/// The port a 32-bit OUT of a ucall record's guest-physical address goes to.
pub const UCALL_PORT: u16 = 0x00E0;

/// The ELF note that marks an image as a guest of Basalt's own boot ABI (the one in
/// `tests/src/lib.rs`: started at its ELF `e_entry` in 64-bit mode with Basalt's page tables).
/// Basalt starts such an image that way even when it also carries a multiboot header (every
/// test guest does, to boot bare in QEMU); an image with a multiboot header and without the
/// note is started as a multiboot kernel. The note lies in a `PT_NOTE` segment: name
/// [`GUEST_ABI_NOTE_NAME`] (NUL-terminated, padded to 4 bytes), type [`GUEST_ABI_NOTE_TYPE`],
/// and a 4-byte descriptor holding [`GUEST_ABI_VERSION`] (little-endian).
pub const GUEST_ABI_NOTE_NAME: &str = "Basalt";
/// The note's type: "BG" (Basalt guest) and 1.
pub const GUEST_ABI_NOTE_TYPE: u32 = 0x4247_0001;
/// The guest boot ABI's version the note carries.
pub const GUEST_ABI_VERSION: u32 = 1;

/// What a ucall asks for.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UcallKind {
    /// Print `msg` on Basalt's console.
    Print = 1,
    /// A guest assertion failed at `file:line`: `msg` says what, `args` carry the values. The VM
    /// stops and counts as failed.
    AssertFail = 2,
    /// The guest finished its test successfully. The VM stops and counts as passed.
    Done = 3,
    /// A checkpoint: Basalt prints `args[0]` and resumes the guest.
    Sync = 4,
    /// Make external interrupt `args[0]` (32..=255) pending for this vCPU; it is delivered when
    /// the guest can take it (RFLAGS.IF set), like a self-IPI.
    RaiseInterrupt = 5,
    /// Ask Basalt for the number of exits of kind `args[0]` this vCPU took so far (see
    /// [`ExitCounter`]); Basalt writes the count into `args[1]` of the record before resuming.
    ExitCount = 6,
    /// Ask Basalt to have another CPU send an NMI to the CPU this vCPU runs on, `args[0]`
    /// microseconds from now (a test that host NMIs reach Basalt, not the guest).
    RequestNmi = 7,
    /// Have Basalt inject an event at the next entry, as if the CPU raised it: `args[0]` the
    /// kind ([`INJECT_EXCEPTION`] or [`INJECT_NMI`]), `args[1]` the vector, `args[2]` the
    /// error code (bit 32 set: the exception has one), `args[3]` CR2 for a #PF.
    Inject = 8,
}

impl UcallKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => UcallKind::Print,
            2 => UcallKind::AssertFail,
            3 => UcallKind::Done,
            4 => UcallKind::Sync,
            5 => UcallKind::RaiseInterrupt,
            6 => UcallKind::ExitCount,
            7 => UcallKind::RequestNmi,
            8 => UcallKind::Inject,
            _ => return None,
        })
    }
}

/// [`UcallKind::Inject`] kinds.
pub const INJECT_EXCEPTION: u64 = 0;
pub const INJECT_NMI: u64 = 1;
/// [`UcallKind::Inject`] `args[2]` bit: the exception pushes the error code in bits 31:0.
pub const INJECT_HAS_ERROR_CODE: u64 = 1 << 32;

/// Exit kinds a guest can ask the count of with [`UcallKind::ExitCount`].
#[repr(u64)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCounter {
    Cpuid = 0,
    Hlt = 1,
    Io = 2,
    Msr = 3,
    Hypercall = 4,
    /// Exits for host NMIs that arrived while the guest ran.
    Nmi = 5,
    /// NMIs Basalt's own handler took on this vCPU's CPU since the VM started.
    HostNmi = 6,
    /// Exits for instructions Basalt does not let a guest run (SVM/VMX instructions, INVD,
    /// WBINVD, MONITOR/MWAIT, XSETBV, RDPMC).
    Instruction = 7,
    /// Events Basalt delivered again because an exit cut their delivery short.
    Redelivered = 8,
}

/// Capacity of the file name in a record.
pub const UCALL_FILE_LEN: usize = 96;
/// Capacity of the message in a record.
pub const UCALL_MSG_LEN: usize = 192;

/// One ucall, in guest memory. Plain data, no pointers: the hypervisor reads it as bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UcallRecord {
    pub kind: u32,
    pub line: u32,
    pub args: [u64; 4],
    pub file_len: u16,
    pub msg_len: u16,
    pub _reserved: u32,
    pub file: [u8; UCALL_FILE_LEN],
    pub msg: [u8; UCALL_MSG_LEN],
}

/// Size of a record in guest memory.
pub const UCALL_RECORD_SIZE: usize = core::mem::size_of::<UcallRecord>();

impl UcallRecord {
    pub const fn empty() -> Self {
        UcallRecord {
            kind: 0,
            line: 0,
            args: [0; 4],
            file_len: 0,
            msg_len: 0,
            _reserved: 0,
            file: [0; UCALL_FILE_LEN],
            msg: [0; UCALL_MSG_LEN],
        }
    }

    /// Build a record (guest side); file and message are cut to their capacity.
    pub fn new(kind: UcallKind, file: &str, line: u32, msg: &str, args: [u64; 4]) -> Self {
        let mut r = UcallRecord::empty();
        r.kind = kind as u32;
        r.line = line;
        r.args = args;
        r.file_len = copy_cut(&mut r.file, file) as u16;
        r.msg_len = copy_cut(&mut r.msg, msg) as u16;
        r
    }

    /// Parse a record from the bytes read out of guest memory (hypervisor side). Lengths are
    /// clamped to the capacities, so a hostile record cannot make the reader overrun.
    pub fn from_bytes(bytes: &[u8; UCALL_RECORD_SIZE]) -> Self {
        let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let mut r = UcallRecord::empty();
        r.kind = u32_at(0);
        r.line = u32_at(4);
        for (i, a) in r.args.iter_mut().enumerate() {
            *a = u64_at(8 + 8 * i);
        }
        r.file_len = u16_at(40).min(UCALL_FILE_LEN as u16);
        r.msg_len = u16_at(42).min(UCALL_MSG_LEN as u16);
        r.file.copy_from_slice(&bytes[48..48 + UCALL_FILE_LEN]);
        r.msg.copy_from_slice(&bytes[48 + UCALL_FILE_LEN..48 + UCALL_FILE_LEN + UCALL_MSG_LEN]);
        r
    }

    /// The kind, if it is one Basalt knows.
    pub fn kind(&self) -> Option<UcallKind> {
        UcallKind::from_u32(self.kind)
    }

    /// The source file (invalid UTF-8 shows as "?").
    pub fn file(&self) -> &str {
        core::str::from_utf8(&self.file[..self.file_len as usize]).unwrap_or("?")
    }

    /// The message (invalid UTF-8 shows as "?").
    pub fn msg(&self) -> &str {
        core::str::from_utf8(&self.msg[..self.msg_len as usize]).unwrap_or("?")
    }
}

fn copy_cut(dst: &mut [u8], s: &str) -> usize {
    let mut n = s.len().min(dst.len());
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_layout_is_fixed() {
        assert_eq!(UCALL_RECORD_SIZE, 48 + UCALL_FILE_LEN + UCALL_MSG_LEN);
        assert_eq!(core::mem::offset_of!(UcallRecord, file_len), 40);
        assert_eq!(core::mem::offset_of!(UcallRecord, file), 48);
    }

    #[test]
    fn record_round_trips_through_bytes() {
        let r = UcallRecord::new(UcallKind::AssertFail, "tests/src/bin/fail.rs", 42, "1 == 2", [1, 2, 0, 0]);
        // SAFETY: UcallRecord is repr(C) plain data with no padding holes that matter here.
        let bytes: [u8; UCALL_RECORD_SIZE] = unsafe { core::mem::transmute(r) };
        let back = UcallRecord::from_bytes(&bytes);
        assert_eq!(back, r);
        assert_eq!(back.kind(), Some(UcallKind::AssertFail));
        assert_eq!(back.file(), "tests/src/bin/fail.rs");
        assert_eq!((back.line, back.msg(), back.args[1]), (42, "1 == 2", 2));
    }

    #[test]
    fn hostile_lengths_are_clamped_and_unknown_kinds_rejected() {
        let mut bytes = [0u8; UCALL_RECORD_SIZE];
        bytes[0] = 99;
        bytes[40] = 0xFF;
        bytes[41] = 0xFF;
        bytes[42] = 0xFF;
        bytes[43] = 0xFF;
        let r = UcallRecord::from_bytes(&bytes);
        assert_eq!(r.kind(), None);
        assert_eq!(r.file().len(), UCALL_FILE_LEN);
        assert_eq!(r.msg().len(), UCALL_MSG_LEN);
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        let long = "é".repeat(200);
        let r = UcallRecord::new(UcallKind::Print, &long, 1, &long, [0; 4]);
        assert!(r.file().chars().all(|c| c == 'é'));
        assert_eq!(r.file().len(), 96);
    }

    #[test]
    fn numbers_guests_rely_on_are_fixed() {
        assert_eq!(UCALL_PORT, 0xE0);
        assert_eq!((HC_VERSION, HYPERCALL_ABI_VERSION), (0, 0x1_0000));
        assert_eq!((SCRATCH_PORT, SCRATCH_MSR), (0xE4, 0x4B42_0000));
        assert_eq!(UcallKind::from_u32(UcallKind::RequestNmi as u32), Some(UcallKind::RequestNmi));
        assert_eq!(UcallKind::from_u32(0), None);
    }
}
