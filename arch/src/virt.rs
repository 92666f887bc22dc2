//! The arch-neutral face of hardware virtualization: what both backends (VMX in `vmx`, SVM in
//! `svm`) take and return. Code above `arch` sees only these types and never names a VMCS field
//! or a VMCB offset.

/// Guest general-purpose registers that the world switch saves and restores. RSP and RIP live
/// in the VMCS/VMCB; RAX also lives in the VMCB on SVM, and the SVM backend keeps the two in step
/// so that this struct is always the truth above `arch`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestGprs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

/// A segment register as loaded into the guest. `attrib` uses the SVM VMCB packing (APM Vol. 2
/// 15.5.1): type[3:0], S[4], DPL[6:5], P[7], AVL[8], L[9], D/B[10], G[11]. The VMX backend
/// converts to its access-rights layout (type..P in bits 7:0, AVL..G in bits 15:12, unusable 16).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Segment {
    pub selector: u16,
    pub attrib: u16,
    pub limit: u32,
    pub base: u64,
}

impl Segment {
    /// A 64-bit ring-0 code segment (type 0xB execute/read accessed, S, P, L, G).
    pub const fn code64(selector: u16) -> Self {
        Segment { selector, attrib: 0x0A9B, limit: 0xFFFF_FFFF, base: 0 }
    }
    /// A flat 32-bit ring-0 code segment (type 0xB, S, P, D/B, G).
    pub const fn code32(selector: u16) -> Self {
        Segment { selector, attrib: 0x0C9B, limit: 0xFFFF_FFFF, base: 0 }
    }
    /// A flat ring-0 data segment (type 3 read/write accessed, S, P, D/B, G).
    pub const fn data(selector: u16) -> Self {
        Segment { selector, attrib: 0x0C93, limit: 0xFFFF_FFFF, base: 0 }
    }
    /// A real-mode segment: base = selector << 4, 64 KiB limit, data/code type 3 or 0xB.
    pub const fn real_mode(selector: u16, code: bool) -> Self {
        Segment {
            selector,
            attrib: if code { 0x009B } else { 0x0093 },
            limit: 0xFFFF,
            base: (selector as u64) << 4,
        }
    }
    /// A busy 64-bit TSS (type 0xB, P) as VM entry requires for TR (SDM 26.3.1.2).
    pub const fn tss(selector: u16) -> Self {
        Segment { selector, attrib: 0x008B, limit: 0x67, base: 0 }
    }
    /// An LDT selector marked unusable/null (type 2, P clear).
    pub const fn null_ldt() -> Self {
        Segment { selector: 0, attrib: 0x0082, limit: 0xFFFF, base: 0 }
    }
}

/// A descriptor-table register (GDTR/IDTR).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DescriptorTable {
    pub base: u64,
    pub limit: u16,
}

/// Everything a vCPU's state is at its first entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InitialState {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub rip: u64,
    pub rsp: u64,
    pub rflags: u64,
    pub cs: Segment,
    pub ds: Segment,
    pub es: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub ss: Segment,
    pub tr: Segment,
    pub ldtr: Segment,
    pub gdtr: DescriptorTable,
    pub idtr: DescriptorTable,
    pub gprs: GuestGprs,
}

/// CR0/CR4/EFER bits used to describe guest modes (SDM Vol. 3A 2.5, 2.2.1).
pub mod bits {
    pub const CR0_PE: u64 = 1 << 0;
    pub const CR0_MP: u64 = 1 << 1;
    pub const CR0_ET: u64 = 1 << 4;
    pub const CR0_NE: u64 = 1 << 5;
    pub const CR0_WP: u64 = 1 << 16;
    pub const CR0_PG: u64 = 1 << 31;
    pub const CR4_PAE: u64 = 1 << 5;
    pub const CR4_OSFXSR: u64 = 1 << 9;
    pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
    pub const EFER_LME: u64 = 1 << 8;
    pub const EFER_LMA: u64 = 1 << 10;
    pub const EFER_NXE: u64 = 1 << 11;
    pub const RFLAGS_RESERVED1: u64 = 1 << 1;
    pub const RFLAGS_IF: u64 = 1 << 9;
}

impl InitialState {
    /// 64-bit mode with paging: CS = `code64` selector 0x08, data 0x10, TR 0x18 (a busy TSS
    /// descriptor need not exist in the guest GDT for VM entry, only in the VMCS/VMCB).
    pub fn long_mode(rip: u64, rsp: u64, cr3: u64, gdtr: DescriptorTable) -> Self {
        use bits::*;
        InitialState {
            cr0: CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG,
            cr3,
            cr4: CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT,
            efer: EFER_LME | EFER_LMA | EFER_NXE,
            rip,
            rsp,
            rflags: RFLAGS_RESERVED1,
            cs: Segment::code64(0x08),
            ds: Segment::data(0x10),
            es: Segment::data(0x10),
            fs: Segment::data(0x10),
            gs: Segment::data(0x10),
            ss: Segment::data(0x10),
            tr: Segment::tss(0x18),
            ldtr: Segment::null_ldt(),
            gdtr,
            idtr: DescriptorTable { base: 0, limit: 0 },
            gprs: GuestGprs::default(),
        }
    }

    /// 32-bit protected mode with paging off, as multiboot v1 and v2 start a kernel (Multiboot
    /// 0.6.96 section 3.2, Multiboot2 section 3.3): CR0 = PE|ET|NE, EFER = 0, CS a flat 4 GiB
    /// 32-bit code segment (selector 0x08), DS/ES/FS/GS/SS flat 4 GiB data segments (0x10),
    /// EFLAGS = 0x2, EIP = `eip`, EAX = `eax` (the boot loader's magic), EBX = `ebx` (the boot
    /// information's address), ESP 0 (the kernel sets its own). The selectors name no GDT
    /// entry (GDTR and IDTR are empty: the kernel loads its own tables before it reloads a
    /// segment register or enables interrupts); TR is a busy 32-bit TSS as VM entry requires.
    /// With CR0.PG clear it needs unrestricted guest on VMX, as real mode does.
    ///
    /// The specifications leave CR0's other bits undefined; NE is set, as in `real_mode`: VMX
    /// runs every guest with NE (CR0_FIXED0) and owns the bit, so with NE clear in the guest's
    /// view a kernel that sets NE in the same MOV to CR0 that turns paging on (a whole CR0
    /// value, as many 32-bit entries write) would need the IA-32e mode switch emulated.
    pub fn protected_mode(eip: u32, eax: u32, ebx: u32) -> Self {
        use bits::*;
        InitialState {
            cr0: CR0_PE | CR0_ET | CR0_NE,
            cr3: 0,
            cr4: 0,
            efer: 0,
            rip: eip as u64,
            rsp: 0,
            rflags: RFLAGS_RESERVED1,
            cs: Segment::code32(0x08),
            ds: Segment::data(0x10),
            es: Segment::data(0x10),
            fs: Segment::data(0x10),
            gs: Segment::data(0x10),
            ss: Segment::data(0x10),
            tr: Segment::tss(0),
            ldtr: Segment::null_ldt(),
            gdtr: DescriptorTable { base: 0, limit: 0 },
            idtr: DescriptorTable { base: 0, limit: 0 },
            gprs: GuestGprs { rax: eax as u64, rbx: ebx as u64, ..GuestGprs::default() },
        }
    }

    /// Real mode at `cs:ip` (needs unrestricted guest on VMX).
    pub fn real_mode(cs: u16, ip: u16, sp: u16) -> Self {
        use bits::*;
        InitialState {
            cr0: CR0_ET | CR0_NE,
            cr3: 0,
            cr4: 0,
            efer: 0,
            rip: ip as u64,
            rsp: sp as u64,
            rflags: RFLAGS_RESERVED1,
            cs: Segment::real_mode(cs, true),
            ds: Segment::real_mode(0, false),
            es: Segment::real_mode(0, false),
            fs: Segment::real_mode(0, false),
            gs: Segment::real_mode(0, false),
            ss: Segment::real_mode(0, false),
            tr: Segment { selector: 0, attrib: 0x008B, limit: 0xFFFF, base: 0 },
            ldtr: Segment::null_ldt(),
            gdtr: DescriptorTable { base: 0, limit: 0xFFFF },
            idtr: DescriptorTable { base: 0, limit: 0x3FF },
            gprs: GuestGprs::default(),
        }
    }
}

/// A port I/O exit (IN/OUT and their string forms). For a non-string OUT the data is in the
/// low `size` bytes of RAX; for IN the handler writes them there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoAccess {
    pub port: u16,
    /// 1, 2 or 4 bytes.
    pub size: u8,
    pub write: bool,
    pub string: bool,
    pub rep: bool,
}

/// What went wrong on a VM entry, decoded into words (SDM 26.2-26.3 / APM 15.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryFailure {
    /// The raw code (VM-instruction error number, VMX basic exit reason, or SVM exit code).
    pub code: u64,
    /// Which check failed, in the manual's words ("invalid guest state: CR0.PG set with PE clear").
    pub reason: &'static str,
}

/// Why the guest stopped running, arch-neutral (DESIGN.md "the spine").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmExit {
    /// CPUID: leaf in RAX, subleaf in RCX; the handler writes RAX..RDX and skips the instruction.
    Cpuid,
    /// HLT.
    Hlt,
    /// IN/OUT.
    Io(IoAccess),
    /// RDMSR of ECX; the handler writes EDX:EAX or injects #GP.
    RdMsr { msr: u32 },
    /// WRMSR of ECX with EDX:EAX.
    WrMsr { msr: u32, value: u64 },
    /// VMCALL (VMX) or VMMCALL (SVM).
    Hypercall,
    /// A guest-physical access the nested page tables do not map (EPT violation / #NPF).
    NestedPageFault { gpa: u64, write: bool, fetch: bool },
    /// An exception the backend intercepts (#DB, #AC and #MC; see each backend's policy). The
    /// guest has not seen it: the VM core reflects it or stops the VM.
    Exception { vector: u8, error_code: Option<u32> },
    /// A host interrupt arrived while the guest ran; the backend has handed it to the host.
    ExternalInterrupt,
    /// A host NMI arrived while the guest ran; the backend has handed it to the host.
    Nmi,
    /// The time slice ended (VMX preemption timer; on SVM the host slice timer is an
    /// `ExternalInterrupt`): re-enter, or stop a VM past its time limit.
    Preempted,
    /// An instruction Basalt never lets a guest execute natively (it would reach host state or
    /// another VM); the VM core gives the architectural answer (see [`Instruction`]).
    Instruction(Instruction),
    /// A MOV to CR0 or CR4 that changes a bit Basalt owns (VMX guest/host masks): the VM core
    /// checks it and writes it back with [`VirtualCpu::set_cr`], or injects #GP.
    CrWrite { cr: u8, value: u64 },
    /// The guest waits for an interrupt it can take (interrupt-window exit).
    InterruptWindow,
    /// Triple fault / shutdown: the guest is dead.
    Shutdown,
    /// The VM entry itself failed.
    EntryFailed(EntryFailure),
    /// An exit this version of Basalt does not handle; the raw code is reported.
    Unhandled { code: u64 },
}

/// An intercepted instruction (see [`VmExit::Instruction`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instruction {
    /// An SVM or VMX instruction (VMRUN, VMLOAD, VMSAVE, CLGI, STGI, SKINIT, INVLPGA, VMXON,
    /// VMPTRLD, VMREAD, INVEPT, ...): Basalt offers no nested virtualization, so #UD.
    Virtualization,
    /// INVD: would drop dirty cache lines of memory that is not the guest's.
    Invd,
    /// WBINVD: flushes every cache of the machine.
    Wbinvd,
    /// MONITOR / MWAIT: could park the CPU with interrupts off; CPUID does not offer them.
    Monitor,
    Mwait,
    /// XSETBV: would set the host's XCR0.
    Xsetbv,
    /// RDPMC: would read the host's performance counters; the PMU is hidden.
    Rdpmc,
    /// GETSEC (SMX), which CPUID does not offer.
    Getsec,
}

/// How an event is delivered (SDM 25.8.3 interruption types / APM 15.20 EVENTINJ types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    External,
    Nmi,
    /// A hardware exception (faults and traps the CPU raises).
    Exception,
    /// INT n.
    SoftwareInterrupt,
    /// INT1 (ICEBP).
    PrivilegedSoftwareException,
    /// INT3 and INTO.
    SoftwareException,
}

/// An event whose delivery a VM exit cut short (IDT-vectoring information / EXITINTINFO): it
/// must be delivered again at the next entry, exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterruptedEvent {
    pub kind: EventKind,
    pub vector: u8,
    pub error_code: Option<u32>,
    /// The length of the instruction behind a software event (INT n, INT3, INTO, INT1): the
    /// CPU needs it to push the return RIP; 0 for other kinds.
    pub instruction_len: u8,
}

/// An event to inject at the next VM entry (SDM 26.6 / APM 15.20). The VM core injects at
/// most one per entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A hardware exception (#GP = 13, #UD = 6, ...) with its error code where it has one.
    Exception { vector: u8, error_code: Option<u32> },
    /// An external interrupt with this vector (the guest must be interruptible).
    Interrupt { vector: u8 },
    /// A non-maskable interrupt (vector 2).
    Nmi,
    /// An event the last exit interrupted, delivered again as it was.
    Redeliver(InterruptedEvent),
}

/// Where the backends get the host memory they need (VMCS/VMCB, bitmaps, nested tables):
/// zeroed, physically contiguous pages, identity-mapped. The VM core charges each to its VM.
pub trait FrameSource {
    /// `pages` zeroed contiguous 4 KiB pages aligned to 4 KiB, or `None` (the VM's quota or the
    /// machine's memory is exhausted).
    fn alloc_zeroed(&mut self, pages: usize) -> Option<u64>;
}

/// Why a backend could not do what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtError {
    /// The CPU lacks something the backend needs (named).
    Unsupported(&'static str),
    /// The firmware locked the extension off (IA32_FEATURE_CONTROL, VM_CR.SVMDIS).
    DisabledByFirmware,
    /// A VMX instruction failed (VM-instruction error number where valid).
    InstructionFailed { instruction: &'static str, error: u64 },
    /// No memory for a control structure.
    OutOfMemory,
}

impl core::fmt::Display for VirtError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VirtError::Unsupported(what) => write!(f, "this CPU lacks {what}"),
            VirtError::DisabledByFirmware => write!(f, "virtualization is disabled by the firmware"),
            VirtError::InstructionFailed { instruction, error } => {
                write!(f, "{instruction} failed (VM-instruction error {error})")
            }
            VirtError::OutOfMemory => write!(f, "out of memory for virtualization structures"),
        }
    }
}

/// A short picture of a vCPU for reports when a VM is stopped, and for fetching the
/// instruction at RIP (CS base and the code size: 16, 32 or 64 bits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateSummary {
    pub rip: u64,
    /// The current privilege level.
    pub cpl: u8,
    pub cs_base: u64,
    pub code_bits: u8,
    pub rsp: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub cs: u16,
}

/// One virtual CPU on one backend. A vCPU is only ever run and touched by the physical CPU that
/// created it (its VMCS is current there; its VMCB is used only there).
pub trait VirtualCpu {
    /// Enter the guest and run until the next exit.
    fn run(&mut self) -> VmExit;
    /// The guest's general-purpose registers (valid between `run`s).
    fn gprs(&mut self) -> &mut GuestGprs;
    /// Move RIP past the instruction that caused the last exit (CPUID, HLT, IN/OUT, RDMSR,
    /// WRMSR, VMCALL/VMMCALL, INVD, WBINVD, MOV CR), clearing any STI/MOV-SS interrupt shadow,
    /// if the hardware said how long it was; `false` if it did not (SVM without NRIPS, but for
    /// IOIO, whose EXITINFO2 is the next RIP): then the VM core decodes it and calls
    /// [`VirtualCpu::advance_rip`].
    fn skip_instruction(&mut self) -> bool;
    /// Move RIP forward by `len` bytes, clearing any STI/MOV-SS interrupt shadow.
    fn advance_rip(&mut self, len: u64);
    /// Queue an event for the next entry, replacing nothing: the VM core calls it at most once
    /// per entry, and the backend forgets it once the entry has delivered it.
    fn inject(&mut self, event: Event);
    /// The event whose delivery the last exit cut short, if any (the VM core queues it again).
    fn interrupted_event(&self) -> Option<InterruptedEvent>;
    /// Whether the guest can take an external interrupt now (RFLAGS.IF set, no STI/MOV-SS
    /// shadow). Whether an event is already queued is the VM core's business.
    fn interruptible(&self) -> bool;
    /// Ask for an exit as soon as the guest becomes interruptible (interrupt window).
    fn request_interrupt_window(&mut self, on: bool);
    /// Whether an NMI cannot be injected now: the guest is still handling one (NMIs are
    /// blocked until its IRET) or is in an STI/MOV SS shadow.
    fn nmi_blocked(&self) -> bool;
    /// Ask for an exit as soon as an NMI can be injected (NMI window).
    fn request_nmi_window(&mut self, on: bool);
    /// Registers for a report.
    fn summary(&self) -> StateSummary;
    /// Drop the guest's cached translations (after the VM core changed its nested page tables):
    /// they are gone before the next entry.
    fn flush_guest_tlb(&mut self);
    /// Replace the whole architectural state with `init`, dropping any event being injected:
    /// what INIT followed by a start-up IPI does to an application processor.
    fn load_state(&mut self, init: &InitialState);
    /// RSP, RIP and RFLAGS, which live in the VMCS/VMCB (for the instruction emulator).
    fn rsp(&self) -> u64;
    fn set_rsp(&mut self, value: u64);
    fn rip(&self) -> u64;
    fn set_rip(&mut self, value: u64);
    fn rflags(&self) -> u64;
    fn set_rflags(&mut self, value: u64);
    /// The base of segment register `seg` (0 ES, 1 CS, 2 SS, 3 DS, 4 FS, 5 GS).
    fn segment_base(&self, seg: u8) -> u64;
    /// The guest's value of an MSR the backend keeps for it (in the VMCS/VMCB, or live in the
    /// CPU while it runs): FS_BASE, GS_BASE, KERNEL_GS_BASE, STAR, LSTAR, CSTAR, SFMASK,
    /// SYSENTER_CS/ESP/EIP, TSC_AUX. `None` for any other MSR.
    fn guest_msr(&self, msr: u32) -> Option<u64>;
    /// Set one of [`VirtualCpu::guest_msr`]'s MSRs (checked by the VM core); `false` if the
    /// backend does not keep `msr`.
    fn set_guest_msr(&mut self, msr: u32, value: u64) -> bool;
    /// Set the guest's CR2 before Basalt injects a #PF (SDM 6.15: CR2 holds the address).
    fn set_cr2(&mut self, value: u64);
    /// Add `offset` (wrapping) to the TSC the guest reads with RDTSC and RDTSCP (VMX TSC
    /// offsetting, SVM TSC_OFFSET).
    fn set_tsc_offset(&mut self, offset: u64);
    /// The guest's EFER as the guest sees it (SVM hides the SVME bit VMRUN needs).
    fn efer(&self) -> u64;
    /// Set the guest's EFER after the VM core checked the WRMSR.
    fn set_efer(&mut self, value: u64);
    /// The guest's IA32_SPEC_CTRL and the bits it may write, where this vCPU virtualizes the
    /// MSR (`None`: the guest has no SPEC_CTRL, reads and writes get #GP).
    fn spec_ctrl(&self) -> Option<(u64, u64)>;
    /// Set the guest's IA32_SPEC_CTRL (after the VM core checked the bits): the backend loads
    /// it before each entry and Basalt's own value after each exit.
    fn set_spec_ctrl(&mut self, value: u64);
    /// Write CR0 or CR4 after a checked [`VmExit::CrWrite`] (the value the guest sees; the
    /// backend adds the bits it owns). Backends that never report `CrWrite` ignore it.
    fn set_cr(&mut self, cr: u8, value: u64) {
        let _ = (cr, value);
    }
    /// The guest's DR6 bits to set before a #DB is reflected (VMX reports them in the exit
    /// qualification and leaves DR6 alone; SVM has already updated the VMCB's DR6).
    fn reflect_debug_status(&mut self) {}
}

/// The code size (16, 32 or 64 bits) of a CPU with these CR0 and EFER values and a CS whose
/// attributes are in the SVM packing ([`Segment::attrib`]: L in bit 9, D in bit 10).
pub fn code_bits(cr0: u64, efer: u64, cs_attrib: u16) -> u8 {
    if efer & bits::EFER_LMA != 0 && cs_attrib & (1 << 9) != 0 {
        64
    } else if cr0 & bits::CR0_PE == 0 || cs_attrib & (1 << 10) == 0 {
        16
    } else {
        32
    }
}

/// MSR numbers the backends keep for the guest (SDM Vol. 4 Table 2-2).
pub mod msr {
    pub const SYSENTER_CS: u32 = 0x174;
    pub const SYSENTER_ESP: u32 = 0x175;
    pub const SYSENTER_EIP: u32 = 0x176;
    pub const STAR: u32 = 0xC000_0081;
    pub const LSTAR: u32 = 0xC000_0082;
    pub const CSTAR: u32 = 0xC000_0083;
    pub const SFMASK: u32 = 0xC000_0084;
    pub const FS_BASE: u32 = 0xC000_0100;
    pub const GS_BASE: u32 = 0xC000_0101;
    pub const KERNEL_GS_BASE: u32 = 0xC000_0102;
    pub const TSC_AUX: u32 = 0xC000_0103;
}
