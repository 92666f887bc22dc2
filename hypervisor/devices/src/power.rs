//! Power and reset: the ACPI PM1a event and control blocks, the ACPI reset register, the
//! reset control register at 0xCF9, a minimal i8042 keyboard controller and QEMU's
//! isa-debug-exit.
//!
//! # Registration (the defaults match [`crate::acpi::AcpiConfig::default`])
//! | model | ports | effects |
//! | --- | --- | --- |
//! | [`Pm1`] | [`PM1A_EVT_PORT`] (0x600) for [`PM1_LEN`] (6): PM1_STS, PM1_EN, PM1_CNT | [`Effect::PowerOff`] on SLP_EN with SLP_TYP = [`SLP_TYP_S5`]; raises the SCI |
//! | [`ResetControl`] | inside the PCI device at 0xCF9 ([`crate::pci::PciPorts`]) | [`Effect::Reset`] |
//! | [`ResetRegister`] | any free port, for a FADT RESET_REG that is not 0xCF9 | [`Effect::Reset`] |
//! | [`I8042`] | [`I8042_DATA_PORT`] (0x60) for 1 and [`I8042_CMD_PORT`] (0x64) for 1, one model behind both (see [`I8042Port`]) | [`Effect::Reset`] on command 0xFE |
//! | [`DebugExit`] | [`DEBUG_EXIT_PORT`] (0xF4) for [`DEBUG_EXIT_SIZE`] (4), or as configured | [`Effect::DebugExit`] |
//!
//! The FADT's RESET_REG defaults to 0xCF9 with value 0x06 (what QEMU's Q35 does), so the ACPI
//! reset path and Linux's `reboot=pci` path end in the same register.

use crate::bus::{Ctx, Effect, PortDevice};
use crate::irq::IrqLine;
use alloc::sync::Arc;
use spin::Mutex;

/// The PM1a event block's default port (the PM1a control block follows at +4, as on ICH9).
pub const PM1A_EVT_PORT: u16 = 0x600;
/// The PM1a control block's default port.
pub const PM1A_CNT_PORT: u16 = PM1A_EVT_PORT + 4;
/// The PM timer's default port (a model of its own, `pmtimer.rs`).
pub const PM_TMR_PORT: u16 = PM1A_EVT_PORT + 8;
/// The ports [`Pm1`] takes: PM1_STS (2), PM1_EN (2), PM1_CNT (2).
pub const PM1_LEN: u16 = 6;
/// PM1_EVT_LEN and PM1_CNT_LEN for the FADT.
pub const PM1_EVT_LEN: u8 = 4;
pub const PM1_CNT_LEN: u8 = 2;

/// The SLP_TYP value for S5 (soft off): the DSDT's `\_S5` package carries it.
pub const SLP_TYP_S5: u8 = 5;

/// PM1_STS / PM1_EN bits.
pub const PM1_TMR: u16 = 1 << 0;
pub const PM1_BM_STS: u16 = 1 << 4;
pub const PM1_GBL: u16 = 1 << 5;
pub const PM1_PWRBTN: u16 = 1 << 8;
pub const PM1_SLPBTN: u16 = 1 << 9;
pub const PM1_RTC: u16 = 1 << 10;
pub const PM1_PCIEXP_WAKE: u16 = 1 << 14;
pub const PM1_WAK_STS: u16 = 1 << 15;
/// The status bits this model keeps (the rest read 0).
const PM1_STS_MASK: u16 = PM1_TMR | PM1_BM_STS | PM1_GBL | PM1_PWRBTN | PM1_SLPBTN | PM1_RTC | PM1_WAK_STS;
/// The enable bits this model keeps.
const PM1_EN_MASK: u16 = PM1_TMR | PM1_GBL | PM1_PWRBTN | PM1_SLPBTN | PM1_RTC | PM1_PCIEXP_WAKE;

/// PM1_CNT bits.
pub const PM1_CNT_SCI_EN: u16 = 1 << 0;
pub const PM1_CNT_BM_RLD: u16 = 1 << 1;
pub const PM1_CNT_GBL_RLS: u16 = 1 << 2;
pub const PM1_CNT_SLP_TYP_SHIFT: u16 = 10;
pub const PM1_CNT_SLP_TYP_MASK: u16 = 7 << PM1_CNT_SLP_TYP_SHIFT;
pub const PM1_CNT_SLP_EN: u16 = 1 << 13;

/// The SCI's ISA IRQ by default.
pub const SCI_IRQ: u8 = 9;

/// The ACPI PM1a event and control blocks, contiguous: offsets 0-1 PM1_STS (write 1 to clear),
/// 2-3 PM1_EN, 4-5 PM1_CNT. There is no SMI_CMD: the machine is always in ACPI mode, so
/// SCI_EN reads 1 and cannot be cleared. The SCI is level: held while any enabled status bit is
/// set.
pub struct Pm1 {
    sts: u16,
    en: u16,
    /// SLP_TYP and BM_RLD as last written.
    cnt: u16,
    sci: IrqLine,
    sci_level: bool,
}

impl Pm1 {
    pub fn new(sci: IrqLine) -> Self {
        Pm1 { sts: 0, en: 0, cnt: PM1_CNT_SCI_EN, sci, sci_level: false }
    }

    pub fn status(&self) -> u16 {
        self.sts
    }
    pub fn enable(&self) -> u16 {
        self.en
    }
    pub fn control(&self) -> u16 {
        self.cnt
    }
    /// Whether the SCI is asserted.
    pub fn sci_asserted(&self) -> bool {
        self.sci_level
    }

    /// Set status bits from elsewhere: [`PM1_TMR`] from the PM timer's carry, [`PM1_PWRBTN`]
    /// when the host asks the guest to shut down, [`PM1_RTC`] from the RTC alarm.
    pub fn set_status(&mut self, ctx: &mut Ctx<'_>, bits: u16) {
        self.sts |= bits & PM1_STS_MASK;
        self.update_sci(ctx);
    }

    /// A press of the fixed power button: the guest's ACPI driver sees PWRBTN_STS (if it
    /// enabled PWRBTN_EN) and shuts down in order.
    pub fn press_power_button(&mut self, ctx: &mut Ctx<'_>) {
        self.set_status(ctx, PM1_PWRBTN);
    }

    fn update_sci(&mut self, ctx: &mut Ctx<'_>) {
        let level = self.sts & self.en != 0 && self.cnt & PM1_CNT_SCI_EN != 0;
        if level != self.sci_level {
            self.sci_level = level;
            self.sci.set(ctx.irq, level);
        }
    }

    fn regs(&self) -> [u8; 6] {
        let mut r = [0; 6];
        r[0..2].copy_from_slice(&self.sts.to_le_bytes());
        r[2..4].copy_from_slice(&self.en.to_le_bytes());
        r[4..6].copy_from_slice(&self.cnt.to_le_bytes());
        r
    }
}

impl PortDevice for Pm1 {
    fn read(&mut self, _ctx: &mut Ctx<'_>, offset: u16, data: &mut [u8]) {
        let r = self.regs();
        for (i, b) in data.iter_mut().enumerate() {
            *b = r.get(offset as usize + i).copied().unwrap_or(0xFF);
        }
    }

    fn write(&mut self, ctx: &mut Ctx<'_>, offset: u16, data: &[u8]) -> Effect {
        // Fold the access into the three 16-bit registers, each with its byte mask.
        let mut vals = [0u16; 3];
        let mut masks = [0u16; 3];
        for (i, b) in data.iter().enumerate() {
            let at = offset as usize + i;
            if at >= 6 {
                break;
            }
            let shift = (at & 1) * 8;
            vals[at / 2] |= (*b as u16) << shift;
            masks[at / 2] |= 0xFF << shift;
        }
        let mut effect = Effect::None;
        if masks[0] != 0 {
            self.sts &= !(vals[0] & masks[0]);
        }
        if masks[1] != 0 {
            self.en = (self.en & !masks[1]) | (vals[1] & masks[1] & PM1_EN_MASK);
        }
        if masks[2] != 0 {
            let v = vals[2] & masks[2];
            let keep = PM1_CNT_BM_RLD | PM1_CNT_SLP_TYP_MASK;
            self.cnt = (self.cnt & !(masks[2] & keep)) | (v & keep) | PM1_CNT_SCI_EN;
            if v & PM1_CNT_SLP_EN != 0 {
                let slp_typ = (self.cnt & PM1_CNT_SLP_TYP_MASK) >> PM1_CNT_SLP_TYP_SHIFT;
                if slp_typ == SLP_TYP_S5 as u16 {
                    effect = Effect::PowerOff;
                }
                // Other sleep types are not offered (no \_S1-\_S4): nothing happens.
            }
        }
        self.update_sci(ctx);
        effect
    }
}

/// The reset control register (Intel's RST_CNT at 0xCF9): bit 1 SYS_RST (hard reset), bit 2
/// RST_CPU (a write with it set resets), bit 3 FULL_RST. 0x06 and 0x0E reset; 0x02 (what Linux
/// writes first) only arms the kind of reset. It lives inside [`crate::pci::PciHost`].
#[derive(Debug, Clone, Default)]
pub struct ResetControl {
    value: u8,
}

pub const RST_CNT_SYS_RST: u8 = 1 << 1;
pub const RST_CNT_RST_CPU: u8 = 1 << 2;
pub const RST_CNT_FULL_RST: u8 = 1 << 3;

impl ResetControl {
    pub fn new() -> Self {
        ResetControl { value: 0 }
    }
    pub fn read(&self) -> u8 {
        self.value
    }
    pub fn write(&mut self, v: u8) -> Effect {
        self.value = v & (RST_CNT_SYS_RST | RST_CNT_FULL_RST);
        if v & RST_CNT_RST_CPU != 0 {
            self.value = 0;
            Effect::Reset
        } else {
            Effect::None
        }
    }
}

/// A one-byte ACPI reset register (the FADT's RESET_REG in system I/O space): writing
/// `value` resets, anything else is ignored; reads give all ones.
#[derive(Debug, Clone)]
pub struct ResetRegister {
    value: u8,
}

impl ResetRegister {
    pub fn new(value: u8) -> Self {
        ResetRegister { value }
    }
    pub fn value(&self) -> u8 {
        self.value
    }
}

impl PortDevice for ResetRegister {
    fn read(&mut self, _ctx: &mut Ctx<'_>, _offset: u16, data: &mut [u8]) {
        data.fill(0xFF);
    }
    fn write(&mut self, _ctx: &mut Ctx<'_>, offset: u16, data: &[u8]) -> Effect {
        if offset == 0 && data.len() == 1 && data[0] == self.value {
            Effect::Reset
        } else {
            Effect::None
        }
    }
}

/// QEMU's isa-debug-exit default in this project's tests: port 0xF4, 4 bytes.
pub const DEBUG_EXIT_PORT: u16 = 0xF4;
pub const DEBUG_EXIT_SIZE: u16 = 4;

/// QEMU's isa-debug-exit: a write of `v` (little-endian, any width within the range) at any
/// offset asks the VM core to stop with status `(v << 1) | 1`. Register it at its port for its
/// size (QEMU's `iobase` and `iosize`). Reads give all ones.
#[derive(Debug, Clone, Default)]
pub struct DebugExit;

impl DebugExit {
    pub fn new() -> Self {
        DebugExit
    }
    /// The exit status QEMU reports for a written value.
    pub fn status(value: u32) -> u64 {
        ((value as u64) << 1) | 1
    }
}

impl PortDevice for DebugExit {
    fn read(&mut self, _ctx: &mut Ctx<'_>, _offset: u16, data: &mut [u8]) {
        data.fill(0xFF);
    }
    fn write(&mut self, _ctx: &mut Ctx<'_>, _offset: u16, data: &[u8]) -> Effect {
        let mut v = [0u8; 4];
        for (d, s) in v.iter_mut().zip(data) {
            *d = *s;
        }
        Effect::DebugExit(u32::from_le_bytes(v))
    }
}

pub const I8042_DATA_PORT: u16 = 0x60;
pub const I8042_CMD_PORT: u16 = 0x64;

/// i8042 status register bits.
pub const I8042_STR_OBF: u8 = 1 << 0;
pub const I8042_STR_IBF: u8 = 1 << 1;
pub const I8042_STR_SYS: u8 = 1 << 2;
pub const I8042_STR_CMD: u8 = 1 << 3;
pub const I8042_STR_KEYLOCK: u8 = 1 << 4;
pub const I8042_STR_AUXDATA: u8 = 1 << 5;
pub const I8042_STR_TIMEOUT: u8 = 1 << 6;

/// Controller command byte (CTR) bits.
pub const I8042_CTR_KBDINT: u8 = 1 << 0;
pub const I8042_CTR_AUXINT: u8 = 1 << 1;
pub const I8042_CTR_SYS: u8 = 1 << 2;
pub const I8042_CTR_KBDDIS: u8 = 1 << 4;
pub const I8042_CTR_AUXDIS: u8 = 1 << 5;
pub const I8042_CTR_XLATE: u8 = 1 << 6;

/// What the next write to the data port means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataWrite {
    Device,
    Ctr,
    OutputPort,
    KbdLoopback,
    AuxLoopback,
    Aux,
}

/// A minimal i8042 keyboard controller with no keyboard and no mouse attached.
///
/// It answers what a firmware or an OS asks of the controller itself: the status register,
/// self-test (0xAA gives 0x55), the interface tests (0xAB, 0xA9 give 0), reading and writing the
/// command byte (0x20, 0x60), enabling and disabling the ports (0xAD/0xAE, 0xA7/0xA8), the
/// loopbacks (0xD2, 0xD3), the output port (0xD0, 0xD1: bit 0 clear resets) and the reset
/// pulses (0xF0-0xFF with bit 0 clear, 0xFE being the usual one) which give
/// [`Effect::Reset`]. A byte sent to the keyboard (or to the mouse with 0xD4) finds no device:
/// the controller answers 0xFF with the timeout bit, as a real one does, so a driver's probe
/// fails at once instead of waiting.
///
/// The ACPI tables report the controller absent by default (no 8042 flag in IAPC_BOOT_ARCH, no
/// PNP0303 in the DSDT): Linux then prints "PNP: No PS/2 controller found" and never probes
/// the ports, while the reset pulse stays available to its `reboot=kbd` path and to other
/// guests.
pub struct I8042 {
    ctr: u8,
    status: u8,
    out: u8,
    output_port: u8,
    pending: DataWrite,
    kbd_irq: IrqLine,
    aux_irq: IrqLine,
    kbd_level: bool,
    aux_level: bool,
}

impl I8042 {
    /// The controller after firmware: system flag set, translation on, interrupts off.
    pub fn new(kbd_irq: IrqLine, aux_irq: IrqLine) -> Self {
        I8042 {
            ctr: I8042_CTR_SYS | I8042_CTR_XLATE,
            status: I8042_STR_SYS | I8042_STR_KEYLOCK,
            out: 0,
            // Reset line high (not in reset), A20 on.
            output_port: 0x03,
            pending: DataWrite::Device,
            kbd_irq,
            aux_irq,
            kbd_level: false,
            aux_level: false,
        }
    }

    /// Split into the two port faces sharing this controller.
    pub fn into_ports(self) -> (I8042Port, I8042Port) {
        let shared = Arc::new(Mutex::new(self));
        (I8042Port { ctl: shared.clone(), command: false }, I8042Port { ctl: shared, command: true })
    }

    pub fn command_byte(&self) -> u8 {
        self.ctr
    }

    pub fn status(&self) -> u8 {
        self.status
    }

    /// A read of the data port (0x60): the output buffer, emptied.
    pub fn read_data(&mut self, ctx: &mut Ctx<'_>) -> u8 {
        self.status &= !(I8042_STR_OBF | I8042_STR_AUXDATA | I8042_STR_TIMEOUT);
        self.update_irqs(ctx);
        self.out
    }

    /// A read of the status port (0x64).
    pub fn read_status(&self) -> u8 {
        self.status
    }

    fn push(&mut self, ctx: &mut Ctx<'_>, v: u8, aux: bool, timeout: bool) {
        self.out = v;
        self.status &= !(I8042_STR_AUXDATA | I8042_STR_TIMEOUT);
        self.status |= I8042_STR_OBF;
        if aux {
            self.status |= I8042_STR_AUXDATA;
        }
        if timeout {
            self.status |= I8042_STR_TIMEOUT;
        }
        self.update_irqs(ctx);
    }

    fn update_irqs(&mut self, ctx: &mut Ctx<'_>) {
        let full = self.status & I8042_STR_OBF != 0;
        let aux = self.status & I8042_STR_AUXDATA != 0;
        let kbd_level = full && !aux && self.ctr & I8042_CTR_KBDINT != 0;
        let aux_level = full && aux && self.ctr & I8042_CTR_AUXINT != 0;
        if kbd_level != self.kbd_level {
            self.kbd_level = kbd_level;
            self.kbd_irq.set(ctx.irq, kbd_level);
        }
        if aux_level != self.aux_level {
            self.aux_level = aux_level;
            self.aux_irq.set(ctx.irq, aux_level);
        }
    }

    /// A write to the command port (0x64).
    pub fn write_command(&mut self, ctx: &mut Ctx<'_>, cmd: u8) -> Effect {
        self.status |= I8042_STR_CMD;
        self.pending = DataWrite::Device;
        match cmd {
            0x20 => self.push(ctx, self.ctr, false, false),
            0x60 => self.pending = DataWrite::Ctr,
            0xA7 => self.ctr |= I8042_CTR_AUXDIS,
            0xA8 => self.ctr &= !I8042_CTR_AUXDIS,
            0xA9 | 0xAB => self.push(ctx, 0x00, false, false),
            0xAA => {
                self.status |= I8042_STR_SYS;
                self.push(ctx, 0x55, false, false);
            }
            0xAD => self.ctr |= I8042_CTR_KBDDIS,
            0xAE => self.ctr &= !I8042_CTR_KBDDIS,
            0xC0 => self.push(ctx, 0x00, false, false),
            0xD0 => self.push(ctx, self.output_port, false, false),
            0xD1 => self.pending = DataWrite::OutputPort,
            0xD2 => self.pending = DataWrite::KbdLoopback,
            0xD3 => self.pending = DataWrite::AuxLoopback,
            0xD4 => self.pending = DataWrite::Aux,
            // Pulse output lines: bit 0 clear pulses the reset line.
            0xF0..=0xFF if cmd & 1 == 0 => return Effect::Reset,
            _ => {}
        }
        self.update_irqs(ctx);
        Effect::None
    }

    /// A write to the data port (0x60).
    pub fn write_data(&mut self, ctx: &mut Ctx<'_>, v: u8) -> Effect {
        self.status &= !I8042_STR_CMD;
        let pending = core::mem::replace(&mut self.pending, DataWrite::Device);
        match pending {
            DataWrite::Ctr => {
                self.ctr = v & !0x88;
                self.status = (self.status & !I8042_STR_SYS) | (v & I8042_CTR_SYS);
                self.update_irqs(ctx);
            }
            DataWrite::OutputPort => {
                self.output_port = v | 0x01;
                if v & 1 == 0 {
                    return Effect::Reset;
                }
            }
            DataWrite::KbdLoopback => self.push(ctx, v, false, false),
            DataWrite::AuxLoopback => self.push(ctx, v, true, false),
            // No mouse: the controller times out.
            DataWrite::Aux => self.push(ctx, 0xFF, true, true),
            // No keyboard: the controller times out. Writing to the keyboard enables it.
            DataWrite::Device => {
                self.ctr &= !I8042_CTR_KBDDIS;
                self.push(ctx, 0xFF, false, true);
            }
        }
        Effect::None
    }
}

/// One port of a shared [`I8042`]: the data face at 0x60, the command face at 0x64, each
/// registered for one byte. Wider accesses use their first byte; the rest read all ones.
#[derive(Clone)]
pub struct I8042Port {
    ctl: Arc<Mutex<I8042>>,
    command: bool,
}

impl PortDevice for I8042Port {
    fn read(&mut self, ctx: &mut Ctx<'_>, offset: u16, data: &mut [u8]) {
        data.fill(0xFF);
        if offset != 0 {
            return;
        }
        let mut c = self.ctl.lock();
        if let Some(b) = data.first_mut() {
            *b = if self.command { c.read_status() } else { c.read_data(ctx) };
        }
    }
    fn write(&mut self, ctx: &mut Ctx<'_>, offset: u16, data: &[u8]) -> Effect {
        let (0, Some(&v)) = (offset, data.first()) else {
            return Effect::None;
        };
        let mut c = self.ctl.lock();
        if self.command {
            c.write_command(ctx, v)
        } else {
            c.write_data(ctx, v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::RecordingSink;

    fn ctx(sink: &mut RecordingSink) -> Ctx<'_> {
        Ctx { now: 0, vcpu: 0, irq: sink }
    }

    #[test]
    fn s5_powers_off_and_other_sleep_types_do_nothing() {
        let mut sink = RecordingSink::default();
        let mut c = ctx(&mut sink);
        let mut pm = Pm1::new(IrqLine::new(9));
        let mut b = [0; 2];
        pm.read(&mut c, 4, &mut b);
        assert_eq!(u16::from_le_bytes(b) & PM1_CNT_SCI_EN, 1, "always in ACPI mode");
        // Linux writes SLP_TYP first, then SLP_TYP | SLP_EN.
        let typ = (SLP_TYP_S5 as u16) << PM1_CNT_SLP_TYP_SHIFT;
        assert_eq!(pm.write(&mut c, 4, &(typ | 1).to_le_bytes()), Effect::None);
        assert_eq!(pm.write(&mut c, 4, &(typ | PM1_CNT_SLP_EN | 1).to_le_bytes()), Effect::PowerOff);
        // SLP_EN reads 0; SCI_EN stays.
        pm.read(&mut c, 4, &mut b);
        assert_eq!(u16::from_le_bytes(b), typ | 1);
        let s3 = 3 << PM1_CNT_SLP_TYP_SHIFT;
        assert_eq!(pm.write(&mut c, 4, &(s3 | PM1_CNT_SLP_EN).to_le_bytes()), Effect::None);
        // A byte write of the high byte (SLP_EN | SLP_TYP=5) alone also powers off.
        assert_eq!(pm.write(&mut c, 5, &[((typ | PM1_CNT_SLP_EN) >> 8) as u8]), Effect::PowerOff);
        // As a dword over EN and CNT.
        let dword = ((typ | PM1_CNT_SLP_EN) as u32) << 16;
        assert_eq!(pm.write(&mut c, 2, &dword.to_le_bytes()), Effect::PowerOff);
    }

    #[test]
    fn status_is_write_one_to_clear_and_drives_the_sci() {
        let mut sink = RecordingSink::default();
        let mut pm = Pm1::new(IrqLine::new(9));
        {
            let mut c = ctx(&mut sink);
            pm.press_power_button(&mut c);
            assert!(!pm.sci_asserted(), "not enabled yet");
            pm.write(&mut c, 2, &PM1_PWRBTN.to_le_bytes());
            assert!(pm.sci_asserted());
            let mut b = [0; 4];
            pm.read(&mut c, 0, &mut b);
            assert_eq!(u32::from_le_bytes(b), (PM1_PWRBTN as u32) << 16 | PM1_PWRBTN as u32);
            pm.write(&mut c, 0, &PM1_TMR.to_le_bytes());
            assert!(pm.sci_asserted(), "clearing another bit leaves it");
            pm.write(&mut c, 0, &PM1_PWRBTN.to_le_bytes());
            assert!(!pm.sci_asserted());
            assert_eq!(pm.status(), 0);
        }
        assert_eq!(sink.rises(9), 1);
        assert_eq!(sink.level(9), Some(false));
    }

    #[test]
    fn reset_paths_reset() {
        let mut r = ResetControl::new();
        assert_eq!(r.write(0x02), Effect::None);
        assert_eq!(r.read(), 0x02);
        assert_eq!(r.write(0x06), Effect::Reset);
        assert_eq!(r.write(0x0E), Effect::Reset);
        assert_eq!(r.write(0x08), Effect::None);

        let mut sink = RecordingSink::default();
        let mut c = ctx(&mut sink);
        let mut reg = ResetRegister::new(0x06);
        assert_eq!(reg.write(&mut c, 0, &[0x05]), Effect::None);
        assert_eq!(reg.write(&mut c, 0, &[0x06]), Effect::Reset);

        let mut kbc = I8042::new(IrqLine::new(1), IrqLine::new(12));
        assert_eq!(kbc.write_command(&mut c, 0xFE), Effect::Reset);
        assert_eq!(kbc.write_command(&mut c, 0xFF), Effect::None);
        assert_eq!(kbc.write_command(&mut c, 0xD1), Effect::None);
        assert_eq!(kbc.write_data(&mut c, 0x02), Effect::Reset);
    }

    #[test]
    fn i8042_answers_the_controller_commands() {
        let mut sink = RecordingSink::default();
        let (mut data, mut cmd) = I8042::new(IrqLine::new(1), IrqLine::new(12)).into_ports();
        let mut c = ctx(&mut sink);
        let inb = |c: &mut Ctx<'_>, p: &mut I8042Port| {
            let mut b = [0];
            p.read(c, 0, &mut b);
            b[0]
        };
        assert_eq!(inb(&mut c, &mut cmd) & I8042_STR_OBF, 0, "empty at start");
        // Linux's i8042_controller_check + selftest.
        cmd.write(&mut c, 0, &[0xAA]);
        assert_eq!(inb(&mut c, &mut cmd) & I8042_STR_OBF, I8042_STR_OBF);
        assert_eq!(inb(&mut c, &mut data), 0x55);
        assert_eq!(inb(&mut c, &mut cmd) & I8042_STR_OBF, 0);
        // Read, write, read back the command byte.
        cmd.write(&mut c, 0, &[0x20]);
        assert_eq!(inb(&mut c, &mut data), I8042_CTR_SYS | I8042_CTR_XLATE);
        cmd.write(&mut c, 0, &[0x60]);
        data.write(&mut c, 0, &[0x47]);
        cmd.write(&mut c, 0, &[0x20]);
        assert_eq!(inb(&mut c, &mut data), 0x47);
        // Loopback on the aux port, with IRQ 12 (AUXINT is bit 1 of 0x47).
        cmd.write(&mut c, 0, &[0xD3]);
        data.write(&mut c, 0, &[0x5A]);
        let st = inb(&mut c, &mut cmd);
        assert_eq!(st & (I8042_STR_OBF | I8042_STR_AUXDATA), I8042_STR_OBF | I8042_STR_AUXDATA);
        assert_eq!(inb(&mut c, &mut data), 0x5A);
        // A keyboard command: no keyboard, the controller times out with an interrupt.
        data.write(&mut c, 0, &[0xF2]);
        let st = inb(&mut c, &mut cmd);
        assert_eq!(st & (I8042_STR_OBF | I8042_STR_TIMEOUT), I8042_STR_OBF | I8042_STR_TIMEOUT);
        assert_eq!(inb(&mut c, &mut data), 0xFF);
        assert_eq!(cmd.write(&mut c, 0, &[0xFE]), Effect::Reset);
        assert_eq!(sink.rises(12), 1);
        assert_eq!(sink.rises(1), 2, "the self test output came before KBDINT was set");
    }

    #[test]
    fn debug_exit_values() {
        let mut sink = RecordingSink::default();
        let mut c = ctx(&mut sink);
        let mut d = DebugExit::new();
        assert_eq!(d.write(&mut c, 0, &0x10u32.to_le_bytes()), Effect::DebugExit(0x10));
        assert_eq!(d.write(&mut c, 0, &[0x11]), Effect::DebugExit(0x11));
        assert_eq!(d.write(&mut c, 2, &0xBEEFu16.to_le_bytes()), Effect::DebugExit(0xBEEF));
        assert_eq!(DebugExit::status(0x10), 33);
        assert_eq!(DebugExit::status(0x11), 35);
        let mut b = [0; 4];
        d.read(&mut c, 0, &mut b);
        assert_eq!(b, [0xFF; 4]);
    }
}
