//! The firmware memory map as a `BootInfo` memory map.
//!
//! OVMF reports well over a hundred descriptors, more than `MAX_REGIONS`, but most of them
//! become `Usable` once boot services are gone; touching regions of one kind are merged while
//! converting, without allocating (this runs after ExitBootServices).

use basalt_boot::uefi::memory_kind_from_uefi;
use basalt_boot::{BootError, MemoryMap, MemoryRegion};

/// Convert `(uefi type, physical start, page count)` descriptors, sorted by address, into a
/// normalized memory map.
pub fn convert(descriptors: impl Iterator<Item = (u32, u64, u64)>) -> Result<MemoryMap, BootError> {
    let mut map = MemoryMap::new();
    let mut pending: Option<MemoryRegion> = None;
    for (typ, start, pages) in descriptors {
        let region =
            MemoryRegion::from_base_len(start, pages.saturating_mul(4096), memory_kind_from_uefi(typ));
        pending = match pending {
            Some(p) if p.kind == region.kind && p.end == region.start => {
                Some(MemoryRegion { end: region.end, ..p })
            }
            Some(p) => {
                map.add(p)?;
                Some(region)
            }
            None => Some(region),
        };
    }
    if let Some(p) = pending {
        map.add(p)?;
    }
    if map.is_empty() {
        return Err(BootError::NoMemoryMap);
    }
    map.normalize()?;
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_boot::MemoryKind::*;

    #[test]
    fn merges_and_maps_types() {
        let descriptors = [
            (7, 0, 0xA0),          // conventional
            (6, 0xA0000, 0x60),    // runtime data
            (2, 0x100000, 0x100),  // loader data
            (4, 0x200000, 0x100),  // boot-services data
            (7, 0x300000, 0x1000), // conventional
            (9, 0x1300000, 0x10),  // ACPI reclaim
            (10, 0x1310000, 0x10), // ACPI NVS
            (8, 0x1320000, 0x1),   // unusable
            (11, 0xFEC00000, 0x1), // MMIO
        ];
        let map = convert(descriptors.into_iter()).unwrap();
        let got: std::vec::Vec<_> = map.regions().iter().map(|r| (r.start, r.end, r.kind)).collect();
        assert_eq!(
            got,
            [
                (0, 0xA0000, Usable),
                (0xA0000, 0x100000, Reserved),
                (0x100000, 0x1300000, Usable),
                (0x1300000, 0x1310000, AcpiReclaimable),
                (0x1310000, 0x1320000, AcpiNvs),
                (0x1320000, 0x1321000, BadMemory),
                (0xFEC00000, 0xFEC01000, Reserved),
            ]
        );
    }

    #[test]
    fn many_descriptors_fit_after_merging() {
        let descriptors = (0..1000u64).map(|i| (if i % 2 == 0 { 3 } else { 4 }, i * 4096, 1));
        let map = convert(descriptors).unwrap();
        assert_eq!(map.len(), 1);
        assert!(convert(core::iter::empty()).is_err());
    }
}
