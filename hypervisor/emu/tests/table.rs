//! A table of encodings with their initial state and expected results (registers, RFLAGS,
//! memory, RIP, errors), across 16-, 32- and 64-bit code. Encodings come from GNU as.

mod common;

use basalt_emu::{
    emulate, emulate_string_io, CodeSize, Error, Fault, Gpr, Mnemonic, Segment, REP_ITERATIONS_PER_CALL,
};
use common::{hex, TestMachine};
use CodeSize::{Bits16, Bits32, Bits64};
use Gpr::*;

const CF: u64 = 1;
const PF: u64 = 1 << 2;
const AF: u64 = 1 << 4;
const ZF: u64 = 1 << 6;
const SF: u64 = 1 << 7;
const DF: u64 = 1 << 10;
const OF: u64 = 1 << 11;

const PF_W: Fault = Fault::PageFault { address: 0, error_code: 0x7 };

struct Case {
    name: &'static str,
    code: CodeSize,
    bytes: Vec<u8>,
    init: TestMachine,
    regs: Vec<(Gpr, u64)>,
    flags: Option<u64>,
    mem: Vec<(u64, Vec<u8>)>,
    err: Option<Error>,
    rip: Option<u64>,
    unfinished: bool,
    iterations: Option<u64>,
    no_write: bool,
    io: bool,
    port_in: Vec<u32>,
    ports: Vec<(u16, u8, bool, u32)>,
}

fn case(name: &'static str, code: CodeSize, bytes: &str) -> Case {
    let mut init = TestMachine::new();
    init.rip = match code {
        Bits16 => 0x100,
        _ => 0x1000,
    };
    Case {
        name,
        code,
        bytes: hex(bytes),
        init,
        regs: vec![],
        flags: None,
        mem: vec![],
        err: None,
        rip: None,
        unfinished: false,
        iterations: None,
        no_write: false,
        io: false,
        port_in: vec![],
        ports: vec![],
    }
}

impl Case {
    fn reg(mut self, r: Gpr, v: u64) -> Self {
        self.init.regs[r.index()] = v;
        self
    }
    fn flags(mut self, f: u64) -> Self {
        self.init.rflags = 0x2 | f;
        self
    }
    fn rip(mut self, rip: u64) -> Self {
        self.init.rip = rip;
        self
    }
    fn seg(mut self, s: Segment, base: u64) -> Self {
        let i = [Segment::Es, Segment::Cs, Segment::Ss, Segment::Ds, Segment::Fs, Segment::Gs]
            .iter()
            .position(|&x| x == s)
            .unwrap();
        self.init.bases[i] = base;
        self
    }
    fn at(mut self, addr: u64, bytes: &str) -> Self {
        self.init.poke(addr, &hex(bytes));
        self
    }
    /// Any access to `[start, start + len)` faults; `writes_only` lets reads through.
    fn fault(mut self, start: u64, len: u64, f: Fault, writes_only: bool) -> Self {
        self.init.faults.push((start, start + len, f, writes_only));
        self
    }
    fn want(mut self, r: Gpr, v: u64) -> Self {
        self.regs.push((r, v));
        self
    }
    fn want_flags(mut self, f: u64) -> Self {
        self.flags = Some(0x2 | f);
        self
    }
    fn want_mem(mut self, addr: u64, bytes: &str) -> Self {
        self.mem.push((addr, hex(bytes)));
        self
    }
    fn want_err(mut self, e: Error) -> Self {
        self.err = Some(e);
        self
    }
    fn want_rip(mut self, rip: u64) -> Self {
        self.rip = Some(rip);
        self
    }
    fn unfinished(mut self) -> Self {
        self.unfinished = true;
        self
    }
    fn iterations(mut self, n: u64) -> Self {
        self.iterations = Some(n);
        self
    }
    fn no_write(mut self) -> Self {
        self.no_write = true;
        self
    }
    fn io(mut self, port_in: &[u32]) -> Self {
        self.io = true;
        self.port_in = port_in.to_vec();
        self
    }
    fn want_port(mut self, port: u16, size: u8, write: bool, value: u32) -> Self {
        self.ports.push((port, size, write, value));
        self
    }

    fn run(&self) {
        let name = self.name;
        let mut m = self.init.clone();
        let mut port_log = vec![];
        let mut port_in = self.port_in.iter().copied();
        let result = if self.io {
            emulate_string_io(
                &mut m,
                &self.bytes,
                self.code,
                &mut |port: u16, size: u8, write: bool, value: &mut u32| {
                    if !write {
                        *value = port_in.next().unwrap_or(0xffff_ffff);
                    }
                    port_log.push((port, size, write, *value));
                },
            )
        } else {
            emulate(&mut m, &self.bytes, self.code)
        };
        let advanced = {
            let next = self.init.rip.wrapping_add(self.bytes.len() as u64);
            match self.code {
                Bits16 => next & 0xffff,
                Bits32 => next & 0xffff_ffff,
                Bits64 => next,
            }
        };
        match (self.err, result) {
            (Some(want), got) => {
                assert_eq!(got, Err(want), "{name}: result");
                assert_eq!(m.rip, self.rip.unwrap_or(self.init.rip), "{name}: RIP must not move on error");
            }
            (None, Err(e)) => panic!("{name}: unexpected {e:?}"),
            (None, Ok(done)) => {
                assert_eq!(usize::from(done.length), self.bytes.len(), "{name}: length");
                assert_eq!(done.finished, !self.unfinished, "{name}: finished");
                let want_rip = self.rip.unwrap_or(if self.unfinished { self.init.rip } else { advanced });
                assert_eq!(m.rip, want_rip, "{name}: RIP");
                if let Some(n) = self.iterations {
                    assert_eq!(done.iterations, n, "{name}: iterations");
                }
            }
        }
        let mut regs = self.init.regs;
        for &(r, v) in &self.regs {
            regs[r.index()] = v;
        }
        for r in Gpr::ALL {
            assert_eq!(m.regs[r.index()], regs[r.index()], "{name}: {r:?} = {:#x}", m.regs[r.index()]);
        }
        assert_eq!(m.rflags, self.flags.unwrap_or(self.init.rflags), "{name}: RFLAGS {:#x}", m.rflags);
        for (addr, bytes) in &self.mem {
            assert_eq!(&m.bytes(*addr, bytes.len()), bytes, "{name}: memory at {addr:#x}");
        }
        if self.no_write {
            assert!(m.log.iter().all(|(w, ..)| !w), "{name}: wrote {:?}", m.log);
        }
        assert_eq!(port_log, self.ports, "{name}: port accesses");
    }
}

const ONES: u64 = u64::MAX;

fn cases() -> Vec<Case> {
    vec![
        // ---- MOV, 64-bit code: widths, merging and zero-extension (SDM Vol. 1 3.4.1.1) ----
        case("mov [rax], ebx", Bits64, "89 18")
            .reg(Rax, 0x2000)
            .reg(Rbx, 0x1122_3344_5566_7788)
            .at(0x2004, "99")
            .want_mem(0x2000, "88 77 66 55 99"),
        case("mov ecx, [rax] zero-extends", Bits64, "8b 08")
            .reg(Rax, 0x2000)
            .reg(Rcx, ONES)
            .at(0x2000, "78 56 34 12")
            .want(Rcx, 0x1234_5678)
            .no_write(),
        case("mov cx, [rax] merges", Bits64, "66 8b 08")
            .reg(Rax, 0x2000)
            .reg(Rcx, ONES)
            .at(0x2000, "78 56")
            .want(Rcx, 0xffff_ffff_ffff_5678),
        case("mov cl, [rax] merges", Bits64, "8a 08")
            .reg(Rax, 0x2000)
            .reg(Rcx, ONES)
            .at(0x2000, "78")
            .want(Rcx, 0xffff_ffff_ffff_ff78),
        case("mov ch, [rax] is bits 15:8", Bits64, "8a 28")
            .reg(Rax, 0x2000)
            .reg(Rcx, ONES)
            .at(0x2000, "78")
            .want(Rcx, 0xffff_ffff_ffff_78ff),
        case("mov sil, [rax] with REX", Bits64, "40 8a 30")
            .reg(Rax, 0x2000)
            .reg(Rsi, ONES)
            .at(0x2000, "78")
            .want(Rsi, 0xffff_ffff_ffff_ff78),
        case("mov r8b, [rax]", Bits64, "44 8a 00").reg(Rax, 0x2000).at(0x2000, "78").want(R8, 0x78),
        case("mov ah, bl", Bits64, "88 dc").reg(Rax, 0x1111).reg(Rbx, 0x42).want(Rax, 0x4211),
        case("mov r9, [rax+rcx*8+0x10]", Bits64, "4c 8b 4c c8 10")
            .reg(Rax, 0x2000)
            .reg(Rcx, 2)
            .at(0x2020, "01 02 03 04 05 06 07 08")
            .want(R9, 0x0807_0605_0403_0201),
        case("mov qword [rax], -1 sign-extends imm32", Bits64, "48 c7 00 ff ff ff ff")
            .reg(Rax, 0x2000)
            .want_mem(0x2000, "ff ff ff ff ff ff ff ff"),
        case("mov byte [rax], imm8", Bits64, "c6 00 5a")
            .reg(Rax, 0x2000)
            .at(0x2001, "99")
            .want_mem(0x2000, "5a 99"),
        case("mov word [rax], imm16", Bits64, "66 c7 00 34 12").reg(Rax, 0x2000).want_mem(0x2000, "34 12"),
        case("mov [rax], r15w", Bits64, "66 44 89 38")
            .reg(Rax, 0x2000)
            .reg(R15, 0xaaaa_bbbb)
            .want_mem(0x2000, "bb bb"),
        case("mov rax, imm64", Bits64, "48 b8 88 77 66 55 44 33 22 11").want(Rax, 0x1122_3344_5566_7788),
        case("mov eax, moffs64", Bits64, "a1 00 30 00 00 00 00 00 00")
            .reg(Rax, ONES)
            .at(0x3000, "ef be ad de")
            .want(Rax, 0xdead_beef),
        case("mov moffs64, al", Bits64, "a2 00 30 00 00 00 00 00 00").reg(Rax, 0xab).want_mem(0x3000, "ab"),
        case("mov eax, moffs64 non-canonical: #GP(0)", Bits64, "a1 88 77 66 55 44 33 22 11")
            .want_err(Error::Fault(Fault::GeneralProtection(0))),
        case("mov rax, [rip+0x100] is relative to the next RIP", Bits64, "48 8b 05 00 01 00 00")
            .at(0x1107, "01 00 00 00 00 00 00 80")
            .want(Rax, 0x8000_0000_0000_0001),
        case("mov eax, fs:[rbx] adds the FS base", Bits64, "64 8b 03")
            .seg(Segment::Fs, 0x10_0000)
            .reg(Rbx, 0x10)
            .at(0x10_0010, "01 02 03 04")
            .want(Rax, 0x0403_0201),
        case("add qword gs:[rax], 1 adds the GS base", Bits64, "65 48 83 00 01")
            .seg(Segment::Gs, 0x7000_0000)
            .reg(Rax, 0x2000)
            .at(0x7000_2000, "ff 00 00 00 00 00 00 00")
            .want_mem(0x7000_2000, "00 01 00 00 00 00 00 00")
            .want_flags(PF | AF),
        case("ds: base is ignored in 64-bit mode", Bits64, "3e 8b 03")
            .seg(Segment::Ds, 0x5000)
            .reg(Rbx, 0x2000)
            .at(0x2000, "2a")
            .want(Rax, 0x2a),
        case("mov edx, [eax+ecx*2] with 0x67 wraps at 4 GiB", Bits64, "67 8b 14 48")
            .reg(Rax, 0xffff_ffff_0000_1000)
            .reg(Rcx, 0x10)
            .at(0x1020, "07")
            .want(Rdx, 7),
        case("xchg eax, eax zero-extends in 64-bit mode", Bits64, "87 c0")
            .reg(Rax, 0xffff_ffff_1234_5678)
            .want(Rax, 0x1234_5678),
        // ---- MOVZX, MOVSX, MOVSXD ----
        case("movzx eax, byte [rax]", Bits64, "0f b6 00").reg(Rax, 0x2000).at(0x2000, "80").want(Rax, 0x80),
        case("movzx ecx, word [rax]", Bits64, "0f b7 08")
            .reg(Rax, 0x2000)
            .reg(Rcx, ONES)
            .at(0x2000, "01 80")
            .want(Rcx, 0x8001),
        case("movsx rax, byte [rbx]", Bits64, "48 0f be 03")
            .reg(Rbx, 0x2000)
            .at(0x2000, "80")
            .want(Rax, 0xffff_ffff_ffff_ff80),
        case("movsx ecx, word [rbx]", Bits64, "0f bf 0b")
            .reg(Rbx, 0x2000)
            .reg(Rcx, ONES)
            .at(0x2000, "00 80")
            .want(Rcx, 0xffff_8000),
        case("movsxd rax, dword [rbx]", Bits64, "48 63 03")
            .reg(Rbx, 0x2000)
            .at(0x2000, "00 00 00 80")
            .want(Rax, 0xffff_ffff_8000_0000),
        // ---- ALU flags (SDM Vol. 2 for each) ----
        case("add [rax], ebx: carry out, zero", Bits64, "01 18")
            .reg(Rax, 0x2000)
            .reg(Rbx, 1)
            .at(0x2000, "ff ff ff ff")
            .want_mem(0x2000, "00 00 00 00")
            .want_flags(CF | PF | AF | ZF),
        case("add byte [rax], 0x7f: signed overflow", Bits64, "80 00 7f")
            .reg(Rax, 0x2000)
            .at(0x2000, "01")
            .want_mem(0x2000, "80")
            .want_flags(AF | SF | OF),
        case("add al, 0xff", Bits64, "04 ff").reg(Rax, 1).want(Rax, 0).want_flags(CF | PF | AF | ZF),
        case("adc [rax], ebx with CF", Bits64, "11 18")
            .flags(CF)
            .reg(Rax, 0x2000)
            .reg(Rbx, 1)
            .at(0x2000, "fe ff ff ff")
            .want_mem(0x2000, "00 00 00 00")
            .want_flags(CF | PF | AF | ZF),
        case("sub [rax], ecx: borrow", Bits64, "29 08")
            .reg(Rax, 0x2000)
            .reg(Rcx, 1)
            .want_mem(0x2000, "ff ff ff ff")
            .want_flags(CF | PF | AF | SF),
        case("sub ax, 0x8000: overflow", Bits64, "66 2d 00 80")
            .want(Rax, 0x8000)
            .want_flags(CF | PF | SF | OF),
        case("sbb [rax], ebx with CF", Bits64, "19 18")
            .flags(CF)
            .reg(Rax, 0x2000)
            .reg(Rbx, 5)
            .at(0x2000, "05 00 00 00")
            .want_mem(0x2000, "ff ff ff ff")
            .want_flags(CF | PF | AF | SF),
        case("cmp byte [rax], 5: equal, no write", Bits64, "80 38 05")
            .flags(CF | SF)
            .reg(Rax, 0x2000)
            .at(0x2000, "05")
            .want_flags(PF | ZF)
            .no_write(),
        case("cmp [rax], rbx: signed overflow", Bits64, "48 39 18")
            .reg(Rax, 0x2000)
            .reg(Rbx, 1)
            .at(0x2000, "00 00 00 00 00 00 00 80")
            .want_flags(PF | AF | OF)
            .no_write(),
        case("and [rax], ecx clears CF, OF and AF", Bits64, "21 08")
            .flags(CF | OF | AF | ZF)
            .reg(Rax, 0x2000)
            .reg(Rcx, 0x0ff0_0ff0)
            .at(0x2000, "f0 f0 f0 f0")
            .want_mem(0x2000, "f0 00 f0 00")
            .want_flags(PF),
        case("or word [rax], 0x8000", Bits64, "66 81 08 00 80")
            .reg(Rax, 0x2000)
            .want_mem(0x2000, "00 80")
            .want_flags(PF | SF),
        case("xor [rax], rax", Bits64, "48 31 00")
            .reg(Rax, 0x2000)
            .at(0x2000, "00 20 00 00 00 00 00 00")
            .want_mem(0x2000, "00 00 00 00 00 00 00 00")
            .want_flags(PF | ZF),
        case("test byte [rax], 0x80: no write", Bits64, "f6 00 80")
            .flags(CF | OF)
            .reg(Rax, 0x2000)
            .at(0x2000, "7f")
            .want_flags(PF | ZF)
            .no_write(),
        case("inc dword [rax] leaves CF", Bits64, "ff 00")
            .flags(CF)
            .reg(Rax, 0x2000)
            .at(0x2000, "ff ff ff 7f")
            .want_mem(0x2000, "00 00 00 80")
            .want_flags(CF | PF | AF | SF | OF),
        case("dec byte [rax] leaves CF clear", Bits64, "fe 08")
            .reg(Rax, 0x2000)
            .want_mem(0x2000, "ff")
            .want_flags(PF | AF | SF),
        case("dec byte [rax] leaves CF set", Bits64, "fe 08")
            .flags(CF)
            .reg(Rax, 0x2000)
            .at(0x2000, "01")
            .want_mem(0x2000, "00")
            .want_flags(CF | PF | ZF),
        case("neg dword [rax] of 0: CF clear", Bits64, "f7 18")
            .flags(CF)
            .reg(Rax, 0x2000)
            .want_mem(0x2000, "00 00 00 00")
            .want_flags(PF | ZF),
        case("neg dword [rax] of 1", Bits64, "f7 18")
            .reg(Rax, 0x2000)
            .at(0x2000, "01 00 00 00")
            .want_mem(0x2000, "ff ff ff ff")
            .want_flags(CF | PF | AF | SF),
        case("neg byte [rax] of 0x80 overflows", Bits64, "f6 18")
            .reg(Rax, 0x2000)
            .at(0x2000, "80")
            .want_mem(0x2000, "80")
            .want_flags(CF | SF | OF),
        case("not qword [rax]: flags unchanged", Bits64, "48 f7 10")
            .flags(CF | ZF)
            .reg(Rax, 0x2000)
            .at(0x2000, "0f 00 00 00 00 00 00 00")
            .want_mem(0x2000, "f0 ff ff ff ff ff ff ff"),
        // ---- BT family (SDM Vol. 2 "BT") ----
        case("bt dword [rax], 3: only CF", Bits64, "0f ba 20 03")
            .flags(ZF | SF)
            .reg(Rax, 0x2000)
            .at(0x2000, "08")
            .want_flags(CF | ZF | SF)
            .no_write(),
        case("bts [rax], ecx=35 addresses the next dword", Bits64, "0f ab 08")
            .flags(CF)
            .reg(Rax, 0x2000)
            .reg(Rcx, 35)
            .want_mem(0x2000, "00 00 00 00 08 00 00 00")
            .want_flags(0),
        case("btr [rax], cx=-1 addresses the word below", Bits64, "66 0f b3 08")
            .reg(Rax, 0x2000)
            .reg(Rcx, 0xffff)
            .at(0x1ffe, "ff ff")
            .want_mem(0x1ffe, "ff 7f")
            .want_flags(CF),
        case("bt [rax], rcx=-65 addresses two qwords below", Bits64, "48 0f a3 08")
            .reg(Rax, 0x2000)
            .reg(Rcx, (-65i64) as u64)
            .at(0x1ff0, "00 00 00 00 00 00 00 80")
            .want_flags(CF),
        case("btc qword [rax], 63", Bits64, "48 0f ba 38 3f")
            .flags(CF)
            .reg(Rax, 0x2000)
            .want_mem(0x2000, "00 00 00 00 00 00 00 80")
            .want_flags(0),
        case("bt eax, ecx: register offset modulo 32", Bits64, "0f a3 c8")
            .reg(Rax, 0x8000_0000)
            .reg(Rcx, 63)
            .want_flags(CF),
        // ---- XCHG, CMPXCHG ----
        case("xchg [rax], ecx", Bits64, "87 08")
            .reg(Rax, 0x2000)
            .reg(Rcx, 0xffff_ffff_aabb_ccdd)
            .at(0x2000, "11 22 33 44")
            .want_mem(0x2000, "dd cc bb aa")
            .want(Rcx, 0x4433_2211),
        case("lock xchg [rax], ecx", Bits64, "f0 87 08")
            .reg(Rax, 0x2000)
            .reg(Rcx, 7)
            .at(0x2000, "01 00 00 00")
            .want_mem(0x2000, "07 00 00 00")
            .want(Rcx, 1),
        case("lock cmpxchg [rbx], ecx: equal", Bits64, "f0 0f b1 0b")
            .reg(Rax, 0xffff_ffff_0000_0005)
            .reg(Rbx, 0x2000)
            .reg(Rcx, 9)
            .at(0x2000, "05 00 00 00")
            .want_mem(0x2000, "09 00 00 00")
            .want_flags(PF | ZF),
        case("cmpxchg [rbx], rcx: not equal loads RAX", Bits64, "48 0f b1 0b")
            .reg(Rax, 1)
            .reg(Rbx, 0x2000)
            .reg(Rcx, 9)
            .at(0x2000, "03 00 00 00 00 00 00 00")
            .want_mem(0x2000, "03 00 00 00 00 00 00 00")
            .want(Rax, 3)
            .want_flags(CF | AF | SF),
        case("cmpxchg [rbx], ecx: not equal zero-extends RAX", Bits64, "0f b1 0b")
            .reg(Rax, 0xffff_ffff_0000_0001)
            .reg(Rbx, 0x2000)
            .at(0x2000, "03 00 00 00")
            .want(Rax, 3)
            .want_flags(CF | AF | SF),
        // ---- MOVS, STOS, LODS (SDM Vol. 2, "REP") ----
        case("rep movsb, DF=0", Bits64, "f3 a4")
            .reg(Rsi, 0x2000)
            .reg(Rdi, 0x3000)
            .reg(Rcx, 4)
            .at(0x2000, "01 02 03 04 05")
            .want_mem(0x3000, "01 02 03 04 00")
            .want(Rsi, 0x2004)
            .want(Rdi, 0x3004)
            .want(Rcx, 0)
            .iterations(4),
        case("rep movsd, DF=1", Bits64, "f3 a5")
            .flags(DF)
            .reg(Rsi, 0x2004)
            .reg(Rdi, 0x3004)
            .reg(Rcx, 2)
            .at(0x2000, "01 02 03 04 05 06 07 08")
            .want_mem(0x3000, "01 02 03 04 05 06 07 08")
            .want(Rsi, 0x1ffc)
            .want(Rdi, 0x2ffc)
            .want(Rcx, 0),
        case("rep movsq, DF=1", Bits64, "f3 48 a5")
            .flags(DF)
            .reg(Rsi, 0x2008)
            .reg(Rdi, 0x3008)
            .reg(Rcx, 2)
            .at(0x2000, "01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10")
            .want_mem(0x3000, "01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10")
            .want(Rsi, 0x1ff8)
            .want(Rdi, 0x2ff8)
            .want(Rcx, 0),
        case("rep stosq", Bits64, "f3 48 ab")
            .reg(Rax, 0x1122_3344_5566_7788)
            .reg(Rdi, 0x3000)
            .reg(Rcx, 3)
            .want_mem(0x3000, "88 77 66 55 44 33 22 11 88 77 66 55 44 33 22 11 88 77 66 55 44 33 22 11")
            .want(Rdi, 0x3018)
            .want(Rcx, 0),
        case("rep stosb with RCX=0 does nothing", Bits64, "f3 aa")
            .reg(Rdi, 0x3000)
            .reg(Rax, 0x55)
            .want_mem(0x3000, "00")
            .iterations(0)
            .no_write(),
        case("movsb without REP ignores RCX", Bits64, "a4")
            .reg(Rsi, 0x2000)
            .reg(Rdi, 0x3000)
            .reg(Rcx, 5)
            .at(0x2000, "aa")
            .want_mem(0x3000, "aa")
            .want(Rsi, 0x2001)
            .want(Rdi, 0x3001)
            .iterations(1),
        case("addr32 rep stosb: EDI and ECX wrap and zero-extend", Bits64, "67 f3 aa")
            .reg(Rax, 0x77)
            .reg(Rdi, 0xdead_0000_ffff_fffe)
            .reg(Rcx, 0xffff_ffff_0000_0003)
            .want_mem(0xffff_fffe, "77 77")
            .want_mem(0, "77")
            .want(Rdi, 1)
            .want(Rcx, 0),
        case("lodsb merges AL", Bits64, "ac")
            .reg(Rax, 0x1100)
            .reg(Rsi, 0x2000)
            .at(0x2000, "42")
            .want(Rax, 0x1142)
            .want(Rsi, 0x2001)
            .no_write(),
        case("rep movsb faulting mid-way keeps RIP and the done part", Bits64, "f3 a4")
            .reg(Rsi, 0x2000)
            .reg(Rdi, 0x3000)
            .reg(Rcx, 4)
            .at(0x2000, "01 02 03 04")
            .fault(0x3002, 2, PF_W, true)
            .want_err(Error::Fault(Fault::PageFault { address: 0x3002, error_code: 7 }))
            .want_mem(0x3000, "01 02 00 00")
            .want(Rsi, 0x2002)
            .want(Rdi, 0x3002)
            .want(Rcx, 2),
        case("rep stosb beyond the per-call bound keeps RIP", Bits64, "f3 aa")
            .reg(Rdi, 0x3000)
            .reg(Rcx, 2000)
            .unfinished()
            .iterations(REP_ITERATIONS_PER_CALL)
            .want(Rdi, 0x3000 + REP_ITERATIONS_PER_CALL)
            .want(Rcx, 2000 - REP_ITERATIONS_PER_CALL),
        // ---- INS, OUTS ----
        case("rep insw, DF=0", Bits64, "66 f3 6d")
            .io(&[0x1111, 0x2222, 0x3333])
            .reg(Rdx, 0x1f0)
            .reg(Rdi, 0x3000)
            .reg(Rcx, 3)
            .want_mem(0x3000, "11 11 22 22 33 33")
            .want(Rdi, 0x3006)
            .want(Rcx, 0)
            .want_port(0x1f0, 2, false, 0x1111)
            .want_port(0x1f0, 2, false, 0x2222)
            .want_port(0x1f0, 2, false, 0x3333),
        case("rep outsb, DF=1", Bits64, "f3 6e")
            .io(&[])
            .flags(DF)
            .reg(Rdx, 0x3f8)
            .reg(Rsi, 0x2002)
            .reg(Rcx, 3)
            .at(0x2000, "61 62 63")
            .want(Rsi, 0x1fff)
            .want(Rcx, 0)
            .want_port(0x3f8, 1, true, 0x63)
            .want_port(0x3f8, 1, true, 0x62)
            .want_port(0x3f8, 1, true, 0x61),
        case("es: outsd in 32-bit code", Bits32, "26 6f")
            .io(&[])
            .seg(Segment::Es, 0x10000)
            .reg(Rdx, 0x80)
            .reg(Rsi, 0x10)
            .at(0x10010, "04 03 02 01")
            .want(Rsi, 0x14)
            .want_port(0x80, 4, true, 0x0102_0304),
        case("insb faulting does not read the port", Bits64, "6c")
            .io(&[0x99])
            .reg(Rdi, 0x3000)
            .fault(0x3000, 1, PF_W, true)
            .want_err(Error::Fault(Fault::PageFault { address: 0x3000, error_code: 7 })),
        case("insb through emulate() is unsupported", Bits64, "6c")
            .want_err(Error::Unsupported(Mnemonic::Insb)),
        // ---- faults from the machine and the canonical check ----
        case("read fault propagates", Bits64, "8b 00")
            .reg(Rax, 0x2000)
            .fault(0x2000, 0x1000, Fault::PageFault { address: 0, error_code: 0 }, false)
            .want_err(Error::Fault(Fault::PageFault { address: 0x2000, error_code: 0 })),
        case("the whole access reaches the machine", Bits64, "8b 00")
            .reg(Rax, 0x2ffe)
            .fault(0x3000, 0x1000, Fault::PageFault { address: 0, error_code: 0 }, false)
            .want_err(Error::Fault(Fault::PageFault { address: 0x3000, error_code: 0 })),
        case("write fault propagates", Bits64, "89 18")
            .reg(Rax, 0x2000)
            .reg(Rbx, 5)
            .fault(0x2000, 4, PF_W, true)
            .want_err(Error::Fault(Fault::PageFault { address: 0x2000, error_code: 7 }))
            .want_mem(0x2000, "00 00 00 00"),
        case("add with a faulting write leaves the flags", Bits64, "01 18")
            .flags(CF)
            .reg(Rax, 0x2000)
            .reg(Rbx, 1)
            .fault(0x2000, 4, Fault::GeneralProtection(0), true)
            .want_err(Error::Fault(Fault::GeneralProtection(0))),
        case("xchg with a faulting write leaves the register", Bits64, "87 08")
            .reg(Rax, 0x2000)
            .reg(Rcx, 7)
            .at(0x2000, "01 00 00 00")
            .fault(0x2000, 4, PF_W, true)
            .want_err(Error::Fault(Fault::PageFault { address: 0x2000, error_code: 7 })),
        case("non-canonical address: #GP(0)", Bits64, "8b 00")
            .reg(Rax, 0x0000_8000_0000_0000)
            .want_err(Error::Fault(Fault::GeneralProtection(0))),
        case("non-canonical via RBP: #SS(0)", Bits64, "8b 45 00")
            .reg(Rbp, 0x0000_8000_0000_0000)
            .want_err(Error::Fault(Fault::StackSegment(0))),
        case("access ending non-canonical: #GP(0)", Bits64, "48 8b 03")
            .reg(Rbx, 0x7fff_ffff_fffc)
            .want_err(Error::Fault(Fault::GeneralProtection(0))),
        // ---- outside the supported set, undecodable, truncated ----
        case("cpuid is unsupported", Bits64, "0f a2").want_err(Error::Unsupported(Mnemonic::Cpuid)),
        case("mov rax, cr0 is unsupported", Bits64, "0f 20 c0").want_err(Error::Unsupported(Mnemonic::Mov)),
        case("mov [rax], ds is unsupported", Bits64, "8c 18").want_err(Error::Unsupported(Mnemonic::Mov)),
        case("xadd is unsupported", Bits64, "0f c1 08").want_err(Error::Unsupported(Mnemonic::Xadd)),
        case("truncated opcode", Bits64, "8b").want_err(Error::Truncated),
        case("truncated immediate", Bits64, "48 c7 00 ff").want_err(Error::Truncated),
        case("no bytes", Bits64, "").want_err(Error::Truncated),
        case("lock mov is invalid", Bits64, "f0 89 18").want_err(Error::Invalid),
        case("ff /7 is invalid", Bits64, "ff ff").want_err(Error::Invalid),
        // ---- 32-bit code ----
        case("32: mov eax, [ebx+4] adds the DS base", Bits32, "8b 43 04")
            .seg(Segment::Ds, 0x10000)
            .reg(Rbx, 0x100)
            .at(0x10104, "44 33 22 11")
            .want(Rax, 0x1122_3344),
        case("32: linear addresses wrap at 4 GiB", Bits32, "8b 03")
            .seg(Segment::Ds, 0xffff_f000)
            .reg(Rbx, 0x2000)
            .at(0x1000, "05")
            .want(Rax, 5),
        case("32: rep movsw, DF=0, DS and ES bases", Bits32, "66 f3 a5")
            .seg(Segment::Ds, 0x10000)
            .seg(Segment::Es, 0x20000)
            .reg(Rsi, 0x100)
            .reg(Rdi, 0x200)
            .reg(Rcx, 2)
            .at(0x10100, "01 02 03 04")
            .want_mem(0x20200, "01 02 03 04")
            .want(Rsi, 0x104)
            .want(Rdi, 0x204)
            .want(Rcx, 0),
        case("32: mov [ebx], ax with 0x66", Bits32, "66 89 03")
            .reg(Rbx, 0x2000)
            .reg(Rax, 0xaabb_ccdd)
            .want_mem(0x2000, "dd cc 00"),
        case("32: mov eax, [bx+si] with 0x67", Bits32, "67 8b 00")
            .reg(Rbx, 0xffff_0010)
            .reg(Rsi, 0xffff_0020)
            .at(0x30, "09")
            .want(Rax, 9),
        case("32: EIP wraps", Bits32, "8b 03").rip(0xffff_fffe).reg(Rbx, 0x2000).want_rip(0),
        case("32: sub byte [ebx], 1 sets AF on a nibble borrow", Bits32, "80 2b 01")
            .reg(Rbx, 0x2000)
            .at(0x2000, "10")
            .want_mem(0x2000, "0f")
            .want_flags(AF | PF),
        // ---- 16-bit code (real mode) ----
        case("16: mov ax, [bx+si+2]", Bits16, "8b 40 02")
            .seg(Segment::Ds, 0x10000)
            .reg(Rbx, 0x10)
            .reg(Rsi, 0x20)
            .reg(Rax, 0xffff_0000)
            .at(0x10032, "34 12")
            .want(Rax, 0xffff_1234),
        case("16: mov [bp], al uses SS", Bits16, "88 46 00")
            .seg(Segment::Ss, 0x20000)
            .reg(Rbp, 0x40)
            .reg(Rax, 0x5a)
            .want_mem(0x20040, "5a"),
        case("16: mov ax, [bp+si] uses SS", Bits16, "8b 02")
            .seg(Segment::Ss, 0x20000)
            .reg(Rbp, 0x40)
            .reg(Rsi, 0x2)
            .at(0x20042, "cd ab")
            .want(Rax, 0xabcd),
        case("16: rep stosb, DI wraps at 64 KiB and merges", Bits16, "f3 aa")
            .seg(Segment::Es, 0x30000)
            .reg(Rax, 0x77)
            .reg(Rdi, 0xabcd_0000_0000_ffff)
            .reg(Rcx, 0x1_0002)
            .want_mem(0x3ffff, "77")
            .want_mem(0x30000, "77")
            .want(Rdi, 0xabcd_0000_0000_0001)
            .want(Rcx, 0x1_0000),
        case("16: rep stosw, DF=1", Bits16, "f3 ab")
            .flags(DF)
            .reg(Rax, 0xbeef)
            .reg(Rdi, 0x10)
            .reg(Rcx, 2)
            .want_mem(0x0e, "ef be ef be")
            .want(Rdi, 0x0c)
            .want(Rcx, 0),
        case("16: mov eax, [bx] with 0x66", Bits16, "66 8b 07")
            .reg(Rbx, 0x8)
            .at(0x8, "01 02 03 04")
            .want(Rax, 0x0403_0201),
        case("16: es: override", Bits16, "26 8b 07")
            .seg(Segment::Es, 0x40000)
            .seg(Segment::Ds, 0x50000)
            .reg(Rbx, 0x8)
            .at(0x40008, "02 01")
            .want(Rax, 0x0102),
        case("16: IP wraps", Bits16, "8b 07").rip(0xfffe).want_rip(0),
    ]
}

#[test]
fn table() {
    let cases = cases();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    for c in &cases {
        c.run();
    }
}

#[test]
fn rep_resumes_where_it_stopped() {
    let mut m = TestMachine::new();
    m.rip = 0x1000;
    m.regs[Rdi.index()] = 0x3000;
    m.regs[Rcx.index()] = 2000;
    m.regs[Rax.index()] = 0xab;
    let bytes = hex("f3 aa");
    let first = emulate(&mut m, &bytes, Bits64).unwrap();
    assert!(!first.finished);
    assert_eq!(m.rip, 0x1000);
    let second = emulate(&mut m, &bytes, Bits64).unwrap();
    assert!(second.finished);
    assert_eq!(first.iterations + second.iterations, 2000);
    assert_eq!(m.rip, 0x1002);
    assert_eq!(m.regs[Rcx.index()], 0);
    assert_eq!(m.regs[Rdi.index()], 0x3000 + 2000);
    assert!(m.bytes(0x3000, 2000).iter().all(|&b| b == 0xab));
    assert_eq!(m.bytes(0x3000 + 2000, 1), [0]);
}

#[test]
fn rf_is_cleared_on_completion() {
    let mut m = TestMachine::new();
    m.rflags = 0x2 | (1 << 16);
    m.regs[Rax.index()] = 0x2000;
    emulate(&mut m, &hex("8b 00"), Bits64).unwrap();
    assert_eq!(m.rflags, 0x2);
}
