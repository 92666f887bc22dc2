//! An access to emulated MMIO (today the test device, `vm::testdev`): the nested page tables
//! map nothing there, so the access exits as a nested page fault; Basalt fetches the
//! instruction at RIP through the guest's page tables, and `basalt-emu` decodes and executes
//! it against the guest's registers, its RAM and the device. A fault while emulating is
//! delivered to the guest (#PF with CR2 and the error code, #GP, #SS); an instruction that
//! cannot be decoded or is not supported gives #UD and one log line with its bytes. This path
//! is `#[cold]`: CPUID, MSR and port exits never pay for it.

use super::raise;
use crate::vm::walk::{read_linear, translate, PagingMode, WalkError};
use crate::vm::{Action, VmOutcome, VmState};
use alloc::format;
use basalt_arch::virt::{GuestGprs, VirtualCpu};
use basalt_devices::testdev::{TestDevice, TEST_DEVICE_GPA};
use basalt_emu::{CodeSize, Error, Fault, Gpr, Machine, Segment};

/// The guest as the emulator sees it: its registers through the vCPU, its memory through its
/// page tables, guest RAM and the device.
struct Guest<'a, V: VirtualCpu + ?Sized> {
    vm: &'a mut VmState,
    vcpu: &'a mut V,
    /// The GPRs the emulator works on (written back to the vCPU afterwards, also after a
    /// fault: a REP string instruction stopped by one keeps its progress).
    regs: GuestGprs,
    mode: PagingMode,
    cpl: u8,
    /// A guest-physical address that is neither RAM nor a device: the VM stops.
    unmapped: Option<u64>,
}

fn gpr_slot(g: &mut GuestGprs, reg: Gpr) -> Option<&mut u64> {
    Some(match reg {
        Gpr::Rax => &mut g.rax,
        Gpr::Rcx => &mut g.rcx,
        Gpr::Rdx => &mut g.rdx,
        Gpr::Rbx => &mut g.rbx,
        Gpr::Rsp => return None,
        Gpr::Rbp => &mut g.rbp,
        Gpr::Rsi => &mut g.rsi,
        Gpr::Rdi => &mut g.rdi,
        Gpr::R8 => &mut g.r8,
        Gpr::R9 => &mut g.r9,
        Gpr::R10 => &mut g.r10,
        Gpr::R11 => &mut g.r11,
        Gpr::R12 => &mut g.r12,
        Gpr::R13 => &mut g.r13,
        Gpr::R14 => &mut g.r14,
        Gpr::R15 => &mut g.r15,
    })
}

impl<V: VirtualCpu + ?Sized> Guest<'_, V> {
    /// Translate one access that stays in a page; #PF for a non-present entry (error code:
    /// P = 0, W/R, U/S from the CPL; SDM Figure 6-11).
    fn physical(&mut self, linear: u64, write: bool) -> Result<u64, Fault> {
        translate(&self.vm.memory, &self.mode, linear).map_err(|e| match e {
            WalkError::NotPresent { .. } | WalkError::TableOutsideRam { .. } => Fault::PageFault {
                address: linear,
                error_code: ((write as u32) << 1) | (((self.cpl == 3) as u32) << 2),
            },
        })
    }

    fn access(&mut self, linear: u64, buf: &mut [u8], write: bool) -> Result<(), Fault> {
        // Split at a page boundary; each piece is translated on its own.
        let first = ((0x1000 - (linear & 0xFFF)) as usize).min(buf.len());
        let (a, b) = buf.split_at_mut(first);
        for (at, piece) in [(linear, a), (linear.wrapping_add(first as u64), b)] {
            if piece.is_empty() {
                continue;
            }
            let gpa = self.physical(at, write)?;
            if crate::vm::apic::is_xapic(self.vm, gpa) {
                let now = crate::vm::apic::guest_now(self.vm);
                let offset = gpa & 0xFFF;
                if write {
                    let action = self.vm.lapic.mmio_write(now, offset, piece);
                    crate::vm::apic::after_access(self.vm, action);
                } else {
                    self.vm.lapic.mmio_read(now, offset, piece);
                }
                continue;
            }
            let ioapic = self.vm.shared.irq.lock().claims_mmio(gpa, piece.len());
            if ioapic {
                let mut irq = self.vm.shared.irq.lock();
                if write {
                    irq.mmio_write(gpa, piece);
                } else {
                    irq.mmio_read(gpa, piece);
                }
                drop(irq);
                crate::vm::apic::drain_router(self.vm);
                continue;
            }
            let shared = self.vm.shared.clone();
            if shared.platform.claims_mmio(gpa, piece.len() as u64) {
                let now = crate::vm::apic::guest_now(self.vm);
                // MMIO devices ask nothing of the VM (no power or reset registers in MMIO).
                let _ = shared.platform.mmio(&shared.irq, now, self.vm.vcpu, gpa, piece, write);
                crate::vm::apic::drain_router(self.vm);
                continue;
            }
            let on_device = TestDevice::contains(gpa, piece.len());
            let done = match (&self.vm.test_device, on_device) {
                (Some(dev), true) if write => {
                    // Its interrupt registers drive lines of the VM's interrupt router.
                    let mut irq = self.vm.shared.irq.lock();
                    let mut ctx = basalt_devices::bus::Ctx { now: 0, vcpu: self.vm.vcpu, irq: &mut *irq };
                    basalt_devices::bus::MmioDevice::write(
                        &mut *dev.lock(),
                        &mut ctx,
                        gpa - TEST_DEVICE_GPA,
                        piece,
                    );
                    drop(irq);
                    crate::vm::apic::drain_router(self.vm);
                    true
                }
                (Some(dev), true) => {
                    dev.lock().read(gpa - TEST_DEVICE_GPA, piece);
                    true
                }
                _ if write => self.vm.memory.write(gpa, piece).is_ok(),
                _ => self.vm.memory.read(gpa, piece).is_ok(),
            };
            if !done {
                self.unmapped = Some(gpa);
                return Err(Fault::GeneralProtection(0));
            }
        }
        Ok(())
    }
}

impl<V: VirtualCpu + ?Sized> Machine for Guest<'_, V> {
    fn gpr(&self, reg: Gpr) -> u64 {
        match reg {
            Gpr::Rsp => self.vcpu.rsp(),
            _ => {
                let mut g = self.regs;
                gpr_slot(&mut g, reg).map_or(0, |v| *v)
            }
        }
    }
    fn set_gpr(&mut self, reg: Gpr, value: u64) {
        match gpr_slot(&mut self.regs, reg) {
            Some(slot) => *slot = value,
            None => self.vcpu.set_rsp(value),
        }
    }
    fn rip(&self) -> u64 {
        self.vcpu.rip()
    }
    fn set_rip(&mut self, rip: u64) {
        self.vcpu.set_rip(rip)
    }
    fn rflags(&self) -> u64 {
        self.vcpu.rflags()
    }
    fn set_rflags(&mut self, rflags: u64) {
        self.vcpu.set_rflags(rflags)
    }
    fn segment_base(&self, seg: Segment) -> u64 {
        self.vcpu.segment_base(seg.index() as u8)
    }
    fn read(&mut self, linear: u64, buf: &mut [u8]) -> Result<(), Fault> {
        self.access(linear, buf, false)
    }
    fn write(&mut self, linear: u64, data: &[u8]) -> Result<(), Fault> {
        let mut copy = [0u8; 16];
        let n = data.len().min(16);
        copy[..n].copy_from_slice(&data[..n]);
        self.access(linear, &mut copy[..n], true)
    }
}

/// Whether a nested page fault at `gpa` is emulated MMIO of this VM: its vCPU's xAPIC page,
/// the IOAPIC, the test device.
pub fn is_mmio(vm: &VmState, gpa: u64) -> bool {
    if crate::vm::apic::is_xapic(vm, gpa) || (vm.test_device.is_some() && TestDevice::contains(gpa, 1)) {
        return true;
    }
    let ioapic = vm.shared.irq.lock().claims_mmio(gpa, 1);
    ioapic || vm.shared.platform.claims_mmio(gpa, 1)
}

/// Emulate the instruction that touched MMIO.
#[cold]
#[inline(never)]
pub fn emulate<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V) -> Action {
    emulate_with(vm, vcpu, false)
}

/// Emulate a string port I/O instruction (INS/OUTS, with REP and DF) through the same code:
/// each element is one access to the VM's ports (the scratch port keeps its value, unassigned
/// ports read all ones and ignore writes; a ucall is never a string OUT).
#[cold]
#[inline(never)]
pub fn string_io<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V) -> Action {
    emulate_with(vm, vcpu, true)
}

fn emulate_with<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V, string_io: bool) -> Action {
    let s = vcpu.summary();
    let mode = PagingMode { cr0: s.cr0, cr3: s.cr3, cr4: s.cr4, efer: s.efer };
    let mut bytes = [0u8; 15];
    let fetched = match read_linear(&vm.memory, &mode, s.cs_base.wrapping_add(s.rip), &mut bytes) {
        Ok(n) => n,
        Err(e) => {
            return Action::Stop(VmOutcome::Failed(format!(
                "stopped: cannot fetch the instruction at RIP {:#x} that touched MMIO: {e}",
                s.rip
            )))
        }
    };
    let code = match s.code_bits {
        64 => CodeSize::Bits64,
        32 => CodeSize::Bits32,
        _ => CodeSize::Bits16,
    };
    let regs = *vcpu.gprs();
    let mut scratch = vm.scratch_port;
    let mut ucall_by_string = false;
    // String I/O reaches the PIC and the VM's port devices as single accesses would.
    let shared = vm.shared.clone();
    let (now, me) = (crate::vm::apic::guest_now(vm), vm.vcpu);
    let mut effect = basalt_devices::bus::Effect::None;
    let mut device_port = None;
    let mut guest = Guest { vm, vcpu, regs, mode, cpl: s.cpl, unmapped: None };
    let result = if string_io {
        let mut port_io = |port: u16, size: u8, write: bool, value: &mut u32| {
            let m = match size {
                1 => 0xFF,
                2 => 0xFFFF,
                _ => u32::MAX,
            };
            let len = size as usize;
            let mut data = value.to_le_bytes();
            match (port, write) {
                (super::io::SCRATCH_PORT, true) => scratch = (scratch & !m) | (*value & m),
                (super::io::SCRATCH_PORT, false) => *value = scratch & m,
                (basalt_abi::UCALL_PORT, _) => ucall_by_string = true,
                _ if basalt_devices::router::IrqRouter::is_pic_port(port, len) => {
                    let mut irq = shared.irq.lock();
                    if write {
                        irq.port_write(port, &data[..len]);
                    } else {
                        irq.port_read(port, &mut data[..len]);
                        *value = u32::from_le_bytes(data) & m;
                    }
                    device_port = Some(port);
                }
                _ if shared.platform.claims_port(port, size) => {
                    let e = shared.platform.port(&shared.irq, now, me, port, &mut data[..len], write);
                    if !write {
                        *value = u32::from_le_bytes(data) & m;
                    }
                    if effect == basalt_devices::bus::Effect::None {
                        effect = e.unwrap_or(basalt_devices::bus::Effect::None);
                    }
                    device_port = Some(port);
                }
                (_, false) => *value = super::io::UNASSIGNED_READ & m,
                (_, true) => {}
            }
        };
        basalt_emu::emulate_string_io(&mut guest, &bytes[..fetched], code, &mut port_io)
    } else {
        basalt_emu::emulate(&mut guest, &bytes[..fetched], code)
    };
    let (unmapped, regs) = (guest.unmapped, guest.regs);
    *vcpu.gprs() = regs;
    vm.scratch_port = scratch;
    if let Some(port) = device_port {
        shared.platform.console_output(port, &mut |line| vm.console(format_args!("{line}")));
        crate::vm::apic::drain_router(vm);
        if let stop @ Action::Stop(_) = crate::vm::device_effect(vm, effect) {
            return stop;
        }
    }
    if ucall_by_string {
        return Action::Stop(VmOutcome::Failed(format!(
            "stopped: a ucall is a 32-bit OUT of the record's address, got a string OUTS at RIP {:#x}",
            s.rip
        )));
    }
    let unmap = vm.test_device.as_ref().and_then(|d| d.lock().take_unmap());
    if let (Some(gpa), Some(nested)) = (unmap, vm.nested.clone()) {
        if let Err(why) = nested.hide(gpa) {
            return Action::Stop(VmOutcome::Failed(format!(
                "stopped: the test device's unmap of {gpa:#x}: {why}"
            )));
        }
        vm.nested_tables_changed(vcpu);
    }
    match (result, unmapped) {
        (_, Some(gpa)) => Action::Stop(VmOutcome::Failed(format!(
            "stopped: guest-physical address {gpa:#x} is not mapped (an emulated access at RIP {:#x})",
            s.rip
        ))),
        (Ok(_), None) => Action::Continue,
        (Err(Error::Fault(f)), None) => {
            if let Fault::PageFault { address, .. } = f {
                vcpu.set_cr2(address);
            }
            raise(vm, f.vector(), f.error_code())
        }
        (Err(e), None) => {
            log::warn!(
                "VM {}: #UD for an instruction at RIP {:#x} that Basalt had to emulate and cannot ({e:?}): bytes {:02x?}",
                crate::console::Escaped(&vm.name),
                s.rip,
                &bytes[..fetched]
            );
            raise(vm, 6, None)
        }
    }
}
