//! The BIOS memory map (INT 15h E820) that direct-booted kernels receive.
//!
//! It is derived from softmmu's [`PcLayout`], the same description the physical address map
//! is built from, so the two cannot disagree.

use softmmu::PcLayout;

/// Usable RAM.
pub const E820_RAM: u32 = 1;
/// Reserved: not RAM the OS may use.
pub const E820_RESERVED: u32 = 2;
/// ACPI tables, reclaimable after they are read.
pub const E820_ACPI: u32 = 3;

/// Where the extended BIOS data area starts: the last KiB below 640 KiB.
pub const EBDA_BASE: u64 = 0x9_fc00;
/// The end of conventional memory.
pub const LOW_RAM_END: u64 = 0xa_0000;
/// The system BIOS area that the firmware owns on a PC.
pub const BIOS_AREA: u64 = 0xf_0000;
const ONE_MIB: u64 = 1 << 20;
/// The window below 1 MiB where the end of a firmware image appears.
const ISA_WINDOW: u64 = 0x2_0000;
const FOUR_GIB: u64 = 1 << 32;

/// One E820 entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// [`E820_RAM`], [`E820_RESERVED`] or [`E820_ACPI`].
    pub kind: u32,
}

impl E820Entry {
    /// The 20-byte form of the entry in boot_params and the multiboot memory map.
    pub fn to_bytes(self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..16].copy_from_slice(&self.size.to_le_bytes());
        b[16..20].copy_from_slice(&self.kind.to_le_bytes());
        b
    }
}

/// The memory map of a PC with `layout`'s RAM and a firmware image of `firmware_len` bytes
/// ending at 4 GiB (0 when the machine has none).
pub fn memory_map(layout: PcLayout, firmware_len: u64) -> Vec<E820Entry> {
    // A firmware image of 128 KiB or more covers 0xE0000-0xFFFFF (softmmu maps its last
    // 128 KiB there); otherwise the BIOS area is the last 64 KiB.
    let bios_area = if firmware_len >= ISA_WINDOW { ONE_MIB - ISA_WINDOW } else { BIOS_AREA };
    let mut map = vec![
        E820Entry { addr: 0, size: EBDA_BASE.min(layout.below_4g), kind: E820_RAM },
        E820Entry { addr: EBDA_BASE, size: LOW_RAM_END - EBDA_BASE, kind: E820_RESERVED },
        E820Entry { addr: bios_area, size: ONE_MIB - bios_area, kind: E820_RESERVED },
    ];
    if layout.below_4g > ONE_MIB {
        map.push(E820Entry { addr: ONE_MIB, size: layout.below_4g - ONE_MIB, kind: E820_RAM });
    }
    if firmware_len > 0 {
        map.push(E820Entry { addr: FOUR_GIB - firmware_len, size: firmware_len, kind: E820_RESERVED });
    }
    if layout.above_4g > 0 {
        map.push(E820Entry { addr: PcLayout::HIGH_RAM_BASE, size: layout.above_4g, kind: E820_RAM });
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_machine_has_low_ram_and_one_block_above_1m() {
        let m = memory_map(PcLayout::for_ram(128 << 20), 0);
        assert_eq!(m[0], E820Entry { addr: 0, size: 0x9fc00, kind: E820_RAM });
        assert_eq!(m[3], E820Entry { addr: 0x10_0000, size: (128 << 20) - 0x10_0000, kind: E820_RAM });
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn big_machine_splits_at_the_pci_hole_like_the_address_map() {
        let ram = 4u64 << 30;
        let layout = PcLayout::for_ram(ram);
        let m = memory_map(layout, 256 << 10);
        let total: u64 = m.iter().filter(|e| e.kind == E820_RAM).map(|e| e.size).sum();
        // Everything but the EBDA and 640K-1M is usable.
        assert_eq!(total, ram - (ONE_MIB - EBDA_BASE));
        assert!(m.contains(&E820Entry { addr: 0xfffc_0000, size: 256 << 10, kind: E820_RESERVED }));
        assert!(m.contains(&E820Entry { addr: 1 << 32, size: layout.above_4g, kind: E820_RAM }));
    }
}
