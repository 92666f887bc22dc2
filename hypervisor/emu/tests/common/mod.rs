//! A plain-array [`Machine`] for the host tests: sparse byte memory, fault ranges and an
//! access log.

#![allow(dead_code)]

use std::collections::BTreeMap;

use basalt_emu::{Access, Fault, Gpr, Machine, Segment};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestMachine {
    pub regs: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    pub bases: [u64; 6],
    /// Bytes not present read as zero.
    pub mem: BTreeMap<u64, u8>,
    /// `[start, end)` ranges where any access faults with the given fault (a #PF reports the
    /// first faulting byte as its address).
    pub faults: Vec<(u64, u64, Fault, bool)>,
    /// Every access: (write, linear, bytes).
    pub log: Vec<(bool, u64, Vec<u8>)>,
}

impl TestMachine {
    pub fn new() -> Self {
        TestMachine { rflags: 0x2, ..Default::default() }
    }

    fn fault_at(&self, linear: u64, len: usize, write: bool) -> Option<Fault> {
        for i in 0..len as u64 {
            let a = linear.wrapping_add(i);
            for &(start, end, fault, writes_only) in &self.faults {
                if a >= start && a < end && (write || !writes_only) {
                    return Some(match fault {
                        Fault::PageFault { error_code, .. } => Fault::PageFault { address: a, error_code },
                        f => f,
                    });
                }
            }
        }
        None
    }

    pub fn bytes(&self, linear: u64, len: usize) -> Vec<u8> {
        (0..len as u64).map(|i| self.mem.get(&linear.wrapping_add(i)).copied().unwrap_or(0)).collect()
    }

    pub fn poke(&mut self, linear: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            self.mem.insert(linear.wrapping_add(i as u64), *b);
        }
    }
}

impl Machine for TestMachine {
    fn gpr(&self, reg: Gpr) -> u64 {
        self.regs[reg.index()]
    }
    fn set_gpr(&mut self, reg: Gpr, value: u64) {
        self.regs[reg.index()] = value;
    }
    fn rip(&self) -> u64 {
        self.rip
    }
    fn set_rip(&mut self, rip: u64) {
        self.rip = rip;
    }
    fn rflags(&self) -> u64 {
        self.rflags
    }
    fn set_rflags(&mut self, rflags: u64) {
        self.rflags = rflags;
    }
    fn segment_base(&self, seg: Segment) -> u64 {
        self.bases[seg.index()]
    }
    fn read(&mut self, linear: u64, buf: &mut [u8]) -> Result<(), Fault> {
        if let Some(f) = self.fault_at(linear, buf.len(), false) {
            return Err(f);
        }
        let data = self.bytes(linear, buf.len());
        buf.copy_from_slice(&data);
        self.log.push((false, linear, data));
        Ok(())
    }
    fn write(&mut self, linear: u64, data: &[u8]) -> Result<(), Fault> {
        if let Some(f) = self.fault_at(linear, data.len(), true) {
            return Err(f);
        }
        self.poke(linear, data);
        self.log.push((true, linear, data.to_vec()));
        Ok(())
    }
    fn probe(&mut self, linear: u64, len: usize, access: Access) -> Result<(), Fault> {
        match self.fault_at(linear, len, access == Access::Write) {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }
}

pub fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace().map(|b| u8::from_str_radix(b, 16).expect("hex byte")).collect()
}
