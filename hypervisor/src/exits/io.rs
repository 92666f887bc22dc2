//! Port I/O: the ucall port, Basalt's scratch register and the PC bus behaviour for ports
//! nobody decodes (reads float to all ones, writes vanish).

use crate::vm::{Action, VmOutcome, VmState};
use alloc::format;
pub use basalt_abi::SCRATCH_PORT;
use basalt_abi::{UcallKind, UcallRecord, UCALL_PORT, UCALL_RECORD_SIZE};
use basalt_arch::virt::{IoAccess, VirtualCpu};

/// What an IN from a port with no device returns (masked to the access size).
pub const UNASSIGNED_READ: u32 = 0xFFFF_FFFF;

fn mask(size: u8) -> u32 {
    match size {
        1 => 0xFF,
        2 => 0xFFFF,
        _ => 0xFFFF_FFFF,
    }
}

pub fn handle<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V, io: IoAccess) -> Action {
    if io.string {
        return super::mmio::string_io(vm, vcpu);
    }
    let m = mask(io.size);
    // Basalt's own ports first (the ucall and scratch ports: the exits tests and benchmarks
    // make), then the PIC's, then the VM's port devices.
    if !matches!(io.port, UCALL_PORT | SCRATCH_PORT) {
        if let Some(action) = device(vm, vcpu, io) {
            return action;
        }
    }
    if io.write {
        let value = vcpu.gprs().rax as u32 & m;
        match io.port {
            UCALL_PORT if io.size == 4 => return ucall(vm, vcpu, value as u64),
            UCALL_PORT => {
                return Action::Stop(VmOutcome::Failed(format!(
                    "stopped: a ucall is a 32-bit OUT of the record's address, got a {}-byte OUT",
                    io.size
                )))
            }
            SCRATCH_PORT => vm.scratch_port = (vm.scratch_port & !m) | value,
            _ => {}
        }
    } else {
        let value = match io.port {
            SCRATCH_PORT => vm.scratch_port,
            _ => UNASSIGNED_READ,
        };
        set_in(vcpu, io.size, value);
    }
    super::skip(vm, vcpu)
}

/// A port of the PIC or of the VM's port devices (UART, RTC, PIT, PM blocks, PCI, fw_cfg,
/// ...); `None` if no device decodes it.
fn device<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V, io: IoAccess) -> Option<Action> {
    if basalt_devices::router::IrqRouter::is_pic_port(io.port, io.size as usize) {
        return Some(pic(vm, vcpu, io));
    }
    let shared = vm.shared.clone();
    if !shared.platform.claims_port(io.port, io.size) {
        return None;
    }
    let mut data = (vcpu.gprs().rax as u32).to_le_bytes();
    let now = crate::vm::apic::guest_now(vm);
    let effect =
        shared.platform.port(&shared.irq, now, vm.vcpu, io.port, &mut data[..io.size as usize], io.write)?;
    if !io.write {
        set_in(vcpu, io.size, u32::from_le_bytes(data));
    }
    shared.platform.console_output(io.port, &mut |line| vm.console(format_args!("{line}")));
    crate::vm::apic::drain_router(vm);
    Some(match crate::vm::device_effect(vm, effect) {
        Action::Continue => super::skip(vm, vcpu),
        stop => stop,
    })
}

/// The PIC pair's ports (and its ELCR), in the VM's interrupt router.
#[cold]
fn pic<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V, io: IoAccess) -> Action {
    let size = io.size as usize;
    let mut data = (vcpu.gprs().rax as u32).to_le_bytes();
    {
        let mut irq = vm.shared.irq.lock();
        if io.write {
            irq.port_write(io.port, &data[..size]);
        } else {
            irq.port_read(io.port, &mut data[..size]);
        }
    }
    if !io.write {
        set_in(vcpu, io.size, u32::from_le_bytes(data));
    }
    crate::vm::apic::drain_router(vm);
    super::skip(vm, vcpu)
}

/// IN AL/AX keeps the rest of RAX; IN EAX zero-extends into RAX (SDM Vol. 1 3.4.1.1).
fn set_in<V: VirtualCpu + ?Sized>(vcpu: &mut V, size: u8, value: u32) {
    let m = mask(size);
    let regs = vcpu.gprs();
    regs.rax = match size {
        4 => value as u64,
        _ => (regs.rax & !(m as u64)) | (value & m) as u64,
    };
}

/// A ucall: the guest wrote the guest-physical address of a record.
fn ucall<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V, gpa: u64) -> Action {
    let mut bytes = [0u8; UCALL_RECORD_SIZE];
    if let Err(e) = vm.memory.read(gpa, &mut bytes) {
        return Action::Stop(VmOutcome::Failed(format!("stopped: ucall record unreadable: {e}")));
    }
    let record = UcallRecord::from_bytes(&bytes);
    let action = match record.kind() {
        Some(UcallKind::Print) => {
            vm.console(format_args!("{}", record.msg()));
            Action::Continue
        }
        Some(UcallKind::Sync) => {
            vm.console(format_args!("sync {}", record.args[0]));
            Action::Continue
        }
        Some(UcallKind::Done) => Action::Stop(VmOutcome::Passed),
        Some(UcallKind::AssertFail) => Action::Stop(VmOutcome::Failed(format!(
            "guest assertion failed at {}:{}: {} (values {:#x}, {:#x})",
            record.file(),
            record.line,
            record.msg(),
            record.args[0],
            record.args[1]
        ))),
        Some(UcallKind::RaiseInterrupt) => match u8::try_from(record.args[0]) {
            Ok(v) if v >= 32 => {
                vm.events.interrupt(v);
                Action::Continue
            }
            _ => Action::Stop(VmOutcome::Failed(format!(
                "stopped: ucall asked to raise interrupt {}, which is not a vector from 32 to 255",
                record.args[0]
            ))),
        },
        Some(UcallKind::ExitCount) => {
            let count = vm.exit_count(record.args[0]);
            // args[1] sits at offset 16 of the record.
            match vm.memory.write_u64(gpa + 16, count) {
                Ok(()) => Action::Continue,
                Err(e) => Action::Stop(VmOutcome::Failed(format!("stopped: ucall record unwritable: {e}"))),
            }
        }
        Some(UcallKind::Inject) => inject(vm, vcpu, record.args),
        Some(UcallKind::RequestNmi) => match (vm.host.request_nmi)(record.args[0]) {
            Ok(()) => Action::Continue,
            Err(why) => {
                Action::Stop(VmOutcome::Failed(format!("stopped: cannot send the NMI asked for: {why}")))
            }
        },
        None => Action::Stop(VmOutcome::Failed(format!("stopped: unknown ucall kind {}", record.kind))),
    };
    match action {
        Action::Continue => super::skip(vm, vcpu),
        stop => stop,
    }
}

/// The Inject ucall: queue the event the guest asked for (after the ucall's OUT is skipped, so
/// it arrives as if raised by the next instruction).
fn inject<V: VirtualCpu + ?Sized>(vm: &mut VmState, vcpu: &mut V, args: [u64; 4]) -> Action {
    match (args[0], u8::try_from(args[1])) {
        (basalt_abi::INJECT_NMI, _) => {
            vm.events.nmi();
            Action::Continue
        }
        (basalt_abi::INJECT_EXCEPTION, Ok(vector)) if vector < 32 && vector != 2 => {
            let error_code = (args[2] & basalt_abi::INJECT_HAS_ERROR_CODE != 0).then_some(args[2] as u32);
            if vector == 14 {
                vcpu.set_cr2(args[3]);
            }
            super::raise(vm, vector, error_code)
        }
        _ => Action::Stop(VmOutcome::Failed(format!(
            "stopped: the inject ucall asked for kind {} vector {}, which is not an exception 0-31 (but 2) or an NMI",
            args[0], args[1]
        ))),
    }
}
