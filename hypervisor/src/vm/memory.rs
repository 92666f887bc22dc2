//! Guest memory: the one way Basalt touches a guest's RAM.
//!
//! Every access names a guest-physical range and is checked against the VM's map before any
//! host pointer is formed; an address outside it is an error value, never a host access. The
//! backing is host-physical memory, identity-mapped, owned by the VM.

use alloc::vec::Vec;

/// One contiguous piece of guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestRegion {
    pub gpa: u64,
    pub size: u64,
    /// Host address of the first byte (identity-mapped host-physical).
    pub host: u64,
}

/// A guest-physical access outside the VM's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfRange {
    pub gpa: u64,
    pub len: u64,
}

impl core::fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "guest-physical range {:#x}+{:#x} is not guest RAM", self.gpa, self.len)
    }
}

/// A VM's RAM map.
/// Cloning shares the same RAM (every vCPU of a VM holds the map).
#[derive(Debug, Default, Clone)]
pub struct GuestMemory {
    regions: Vec<GuestRegion>,
}

impl GuestMemory {
    pub fn new() -> Self {
        GuestMemory { regions: Vec::new() }
    }

    /// Add a region.
    ///
    /// # Safety
    /// `host..host + size` must be memory owned by this VM for as long as this map lives.
    pub unsafe fn add(&mut self, region: GuestRegion) {
        self.regions.push(region);
    }

    pub fn regions(&self) -> &[GuestRegion] {
        &self.regions
    }

    /// Total guest RAM in bytes.
    pub fn size(&self) -> u64 {
        self.regions.iter().map(|r| r.size).sum()
    }

    /// The host address of `[gpa, gpa + len)` if it lies inside one region.
    #[inline]
    fn host_range(&self, gpa: u64, len: u64) -> Result<u64, OutOfRange> {
        let end = gpa.checked_add(len).ok_or(OutOfRange { gpa, len })?;
        // Most VMs have one region: check it without a loop.
        if let Some(r) = self.regions.first() {
            if gpa >= r.gpa && end <= r.gpa + r.size {
                return Ok(r.host + (gpa - r.gpa));
            }
        }
        self.regions
            .iter()
            .find(|r| gpa >= r.gpa && end <= r.gpa + r.size)
            .map(|r| r.host + (gpa - r.gpa))
            .ok_or(OutOfRange { gpa, len })
    }

    /// Whether `gpa` is guest RAM.
    pub fn contains(&self, gpa: u64) -> bool {
        self.host_range(gpa, 1).is_ok()
    }

    /// Copy guest memory out.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let host = self.host_range(gpa, buf.len() as u64)?;
        // SAFETY: the range was checked to lie inside a region this VM owns (`add`'s contract).
        unsafe { core::ptr::copy_nonoverlapping(host as *const u8, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copy into guest memory.
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        let host = self.host_range(gpa, data.len() as u64)?;
        // SAFETY: as in `read`; guest RAM is plain bytes, any value is valid.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), host as *mut u8, data.len()) };
        Ok(())
    }

    /// Fill guest memory with zeroes.
    pub fn zero(&self, gpa: u64, len: u64) -> Result<(), OutOfRange> {
        let host = self.host_range(gpa, len)?;
        // SAFETY: as in `write`.
        unsafe { core::ptr::write_bytes(host as *mut u8, 0, len as usize) };
        Ok(())
    }

    #[inline]
    pub fn read_u64(&self, gpa: u64) -> Result<u64, OutOfRange> {
        let host = self.host_range(gpa, 8)?;
        // SAFETY: as in `read`; any 8 bytes are a valid u64, alignment is not required.
        Ok(unsafe { (host as *const u64).read_unaligned() })
    }

    /// The 4 bytes at `gpa` (an instruction's first bytes).
    #[inline]
    pub fn read_u32(&self, gpa: u64) -> Result<u32, OutOfRange> {
        let host = self.host_range(gpa, 4)?;
        // SAFETY: as in `read_u64`.
        Ok(unsafe { (host as *const u32).read_unaligned() })
    }

    pub fn write_u64(&self, gpa: u64, value: u64) -> Result<(), OutOfRange> {
        self.write(gpa, &value.to_le_bytes())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec;

    /// Guest memory over a host buffer (the buffer must outlive the map).
    pub(crate) fn host_backed(buf: &mut [u8], gpa: u64) -> GuestMemory {
        let mut m = GuestMemory::new();
        // SAFETY: the test keeps `buf` alive for as long as it uses the map.
        unsafe { m.add(GuestRegion { gpa, size: buf.len() as u64, host: buf.as_mut_ptr() as u64 }) };
        m
    }

    #[test]
    fn accesses_inside_work_and_outside_are_refused() {
        let mut buf = vec![0u8; 8192];
        let m = host_backed(&mut buf, 0x10_0000);
        m.write_u64(0x10_0ff8, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(m.read_u64(0x10_0ff8).unwrap(), 0x1122_3344_5566_7788);
        assert!(m.contains(0x10_1fff) && !m.contains(0x10_2000) && !m.contains(0xF_FFFF));
        assert_eq!(m.read_u64(0x10_1ffc), Err(OutOfRange { gpa: 0x10_1ffc, len: 8 }));
        assert!(m.write(0xF_FFFF, &[1, 2]).is_err());
        assert!(m.read(u64::MAX - 2, &mut [0u8; 8]).is_err(), "wrapping ranges are refused");
        assert_eq!(m.size(), 8192);
        m.zero(0x10_0ff8, 8).unwrap();
        assert_eq!(m.read_u64(0x10_0ff8).unwrap(), 0);
    }
}
