//! Moving the guest past the instruction that exited. The hardware says how long it was
//! (VMX's VM-exit instruction length, SVM's NRIPS `next_rip`, the IOIO exit's next RIP) on
//! every exit but SVM's without NRIPS (QEMU TCG): there Basalt fetches the instruction through
//! the guest's own page tables and decodes it with iced-x86, so a prefixed CPUID, RDMSR or
//! VMMCALL is skipped by its real length, never by a fixed one.

use crate::vm::walk::{read_linear, PagingMode};
use crate::vm::{Action, VmOutcome, VmState};
use alloc::format;
use basalt_arch::virt::VirtualCpu;
use iced_x86::{Decoder, DecoderOptions};

/// The length of the first instruction in `bytes` for a CPU in `bitness`-bit mode (16, 32,
/// 64), or `None` if they do not hold a whole valid instruction.
pub fn decode_length(bytes: &[u8], bitness: u32) -> Option<u64> {
    let mut decoder = Decoder::new(bitness, bytes, DecoderOptions::NONE);
    let insn = decoder.decode();
    (!insn.is_invalid()).then_some(insn.len() as u64)
}

/// The exiting instructions Basalt skips, in their plain encodings (no prefix): CPUID, RDMSR,
/// WRMSR, HLT, VMCALL, VMMCALL, INVD, WBINVD. These bytes mean the same instruction in every
/// mode, so a match gives the length without a full decode (the common case, kept cheap).
const PLAIN: [(&[u8], u64); 8] = [
    (&[0x0F, 0xA2], 2),
    (&[0x0F, 0x32], 2),
    (&[0x0F, 0x30], 2),
    (&[0xF4], 1),
    (&[0x0F, 0x01, 0xC1], 3),
    (&[0x0F, 0x01, 0xD9], 3),
    (&[0x0F, 0x08], 2),
    (&[0x0F, 0x09], 2),
];

/// The length of the instruction in `bytes` if it starts with one of the plain encodings.
#[inline]
pub fn plain_length(bytes: &[u8]) -> Option<u64> {
    PLAIN.iter().find(|(op, _)| bytes.starts_with(op)).map(|&(_, len)| len)
}

/// Skip the instruction that caused the last exit. A guest whose instruction cannot be
/// fetched or decoded (it changed its own code or page tables under the exit) is stopped.
#[inline]
pub fn skip<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V) -> Action {
    if vcpu.skip_instruction() {
        return Action::Continue;
    }
    skip_plain(vm, vcpu)
}

/// The common case without a hardware length: one of the plain encodings, found through the
/// (usually cached) walk and a 4-byte read, when it does not cross a page.
#[inline(never)]
fn skip_plain<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V) -> Action {
    let s = vcpu.summary();
    let mode = PagingMode { cr0: s.cr0, cr3: s.cr3, cr4: s.cr4, efer: s.efer };
    let linear = s.cs_base.wrapping_add(s.rip);
    if linear & 0xFFF <= 0xFFC {
        if let Ok(gpa) = vm.code_walk.translate(&vm.memory, &mode, linear) {
            if let Ok(head) = vm.memory.read_u32(gpa) {
                if let Some(len) = plain_length(&head.to_le_bytes()) {
                    vcpu.advance_rip(len);
                    return Action::Continue;
                }
            }
        }
    }
    skip_by_decoding(vm, vcpu)
}

#[cold]
#[inline(never)]
fn skip_by_decoding<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V) -> Action {
    let s = vcpu.summary();
    let mode = PagingMode { cr0: s.cr0, cr3: s.cr3, cr4: s.cr4, efer: s.efer };
    let linear = s.cs_base.wrapping_add(s.rip);
    let mut bytes = [0u8; 15];
    let fetched = match read_linear(&vm.memory, &mode, linear, &mut bytes) {
        Ok(n) => n,
        Err(e) => {
            return Action::Stop(VmOutcome::Failed(format!(
                "stopped: cannot fetch the instruction at RIP {:#x} to skip it: {e}",
                s.rip
            )))
        }
    };
    match decode_length(&bytes[..fetched], s.code_bits as u32) {
        Some(len) => {
            vcpu.advance_rip(len);
            Action::Continue
        }
        None => Action::Stop(VmOutcome::Failed(format!(
            "stopped: cannot decode the instruction at RIP {:#x} ({}-bit) to skip it: bytes {:02x?}",
            s.rip,
            s.code_bits,
            &bytes[..fetched]
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_instructions_have_their_real_length() {
        for (bytes, bits, len) in [
            (&[0x0F, 0xA2][..], 64, 2),               // CPUID
            (&[0x66, 0x0F, 0xA2], 64, 3),             // CPUID with an operand-size prefix
            (&[0x2E, 0x3E, 0xF3, 0x0F, 0xA2], 64, 5), // segment and REP prefixes
            (&[0x0F, 0x32], 64, 2),                   // RDMSR
            (&[0x48, 0x0F, 0x32], 64, 3),             // REX.W RDMSR
            (&[0x0F, 0x30], 32, 2),                   // WRMSR
            (&[0x0F, 0x01, 0xD9], 64, 3),             // VMMCALL
            (&[0x67, 0x0F, 0x01, 0xD9], 64, 4),       // VMMCALL with an address-size prefix
            (&[0x0F, 0x01, 0xC1], 16, 3),             // VMCALL in real mode
            (&[0xF4], 16, 1),                         // HLT
            (&[0x2E, 0xF4], 32, 2),                   // HLT with a CS override
            (&[0x0F, 0x09, 0x90], 64, 2),             // WBINVD, then a NOP
        ] {
            assert_eq!(decode_length(bytes, bits), Some(len), "{bytes:02x?} in {bits}-bit mode");
        }
    }

    #[test]
    fn plain_encodings_agree_with_the_decoder() {
        for (op, len) in PLAIN {
            let mut bytes = [0x90u8; 15];
            bytes[..op.len()].copy_from_slice(op);
            assert_eq!(plain_length(&bytes), Some(len));
            for bits in [16, 32, 64] {
                assert_eq!(decode_length(&bytes, bits), Some(len), "{op:02x?} in {bits}-bit mode");
            }
        }
        // A prefix is not a plain encoding: the decoder decides.
        assert_eq!(plain_length(&[0x66, 0x0F, 0xA2, 0x90]), None);
        assert_eq!(plain_length(&[0x48, 0x0F, 0x32, 0x90]), None);
    }

    #[test]
    fn garbage_and_cut_instructions_are_refused() {
        assert_eq!(decode_length(&[], 64), None);
        assert_eq!(decode_length(&[0x0F], 64), None, "cut short");
        assert_eq!(decode_length(&[0x66; 15], 64), None, "prefixes only, longer than 15 bytes");
        assert_eq!(decode_length(&[0x0F, 0x0B], 64), Some(2), "UD2 is a valid instruction");
    }
}
