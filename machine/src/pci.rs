//! PCI configuration mechanism #1 (ports 0xCF8/0xCFC) with the two functions firmware looks
//! for first: the i440FX host bridge (00:00.0), whose PAM registers shadow the BIOS area
//! 0xC0000-0xFFFFF in RAM, and the PIIX3 ISA bridge (00:01.0). Facts from the Intel 82441FX
//! and 82371SB datasheets; BARs, interrupt routing and the other functions come with the
//! platform issue.

use softmmu::{PhysMap, RegionId, RegionKind};

/// Above ROM (10) so shadow RAM wins where a PAM register enables it, below MMIO (20).
const PRIORITY_SHADOW: i32 = 15;

/// The first PAM register in the host bridge's configuration space.
const PAM0: usize = 0x59;

/// One PAM-controlled segment: (base, length). PAM0's high nibble covers 0xF0000-0xFFFFF;
/// PAM1-6 split 0xC0000-0xEFFFF into 16 KiB pieces, low nibble first.
fn pam_segments() -> Vec<(u64, u64)> {
    let mut v = vec![(0xf0000, 0x10000)];
    for k in 0..12u64 {
        v.push((0xc0000 + k * 0x4000, 0x4000));
    }
    v
}

/// The configuration spaces and the shadow-RAM overlays the PAM registers put in the map.
#[derive(Debug)]
pub struct PciHost {
    address: u32,
    host: [u8; 256],
    isa: [u8; 256],
    /// The overlay of each PAM segment and the attribute it was made for.
    shadow: Vec<Option<(RegionId, u8)>>,
    /// The address map changed: cached decodes and translations must go.
    pub map_changed: bool,
}

impl Default for PciHost {
    fn default() -> Self {
        Self::new()
    }
}

fn ids(space: &mut [u8; 256], vendor: u16, device: u16, class: u32, header: u8) {
    space[0..2].copy_from_slice(&vendor.to_le_bytes());
    space[2..4].copy_from_slice(&device.to_le_bytes());
    space[8..12].copy_from_slice(&(class << 8).to_le_bytes());
    space[0x0e] = header;
}

impl PciHost {
    /// The bridges in their reset state (PAM registers 0: the BIOS area reads the ROM).
    pub fn new() -> Self {
        let mut host = [0u8; 256];
        ids(&mut host, 0x8086, 0x1237, 0x06_00_00, 0);
        host[0x04] = 0x06; // memory space, bus master
        let mut isa = [0u8; 256];
        ids(&mut isa, 0x8086, 0x7000, 0x06_01_00, 0x80);
        isa[0x04] = 0x07;
        isa[0x60..0x64].copy_from_slice(&[0x80; 4]); // PIRQ routing disabled
        PciHost { address: 0, host, isa, shadow: vec![None; pam_segments().len()], map_changed: false }
    }

    /// A machine reset: configuration registers back to their power-on values and the shadow
    /// RAM overlays removed (the BIOS area reads the ROM again).
    pub fn reset(&mut self, mem: &mut PhysMap) {
        for (id, _) in self.shadow.iter_mut().filter_map(Option::take) {
            let _ = mem.remove_region(id);
        }
        let fresh = PciHost::new();
        self.address = fresh.address;
        self.host = fresh.host;
        self.isa = fresh.isa;
        self.map_changed = true;
    }

    fn space(&mut self) -> Option<&mut [u8; 256]> {
        let a = self.address;
        if a & 0x8000_0000 == 0 || (a >> 16) & 0xff != 0 {
            return None;
        }
        match (a >> 8) & 0xff {
            0x00 => Some(&mut self.host),
            0x08 => Some(&mut self.isa),
            _ => None,
        }
    }

    /// Reads port 0xCF8-0xCFF.
    pub fn read(&mut self, port: u16, size: u8) -> u32 {
        if (0xcf8..0xcfc).contains(&port) {
            return self.address >> (8 * u32::from(port - 0xcf8));
        }
        let off = (self.address & 0xfc) as usize + usize::from(port - 0xcfc);
        match self.space() {
            Some(s) => (0..usize::from(size)).fold(0, |v, k| v | u32::from(s[(off + k) & 0xff]) << (8 * k)),
            None => u32::MAX,
        }
    }

    /// Writes port 0xCF8-0xCFF; PAM changes are applied to `mem`.
    pub fn write(&mut self, port: u16, size: u8, val: u32, mem: &mut PhysMap) {
        if port == 0xcf8 && size == 4 {
            self.address = val & 0x80ff_fffc;
            return;
        }
        if port < 0xcfc {
            return;
        }
        let off = (self.address & 0xfc) as usize + usize::from(port - 0xcfc);
        let is_host = self.address & 0x8000_ff00 == 0x8000_0000;
        let Some(s) = self.space() else { return };
        for k in 0..usize::from(size) {
            let r = (off + k) & 0xff;
            // Identification registers are read-only, and neither bridge has BARs or an
            // expansion ROM: those read as zero whatever is written (so sizing finds none).
            let bar = (0x10..0x28).contains(&r) || (0x30..0x34).contains(&r);
            if r >= 0x04 && r != 0x08 && !(0x09..0x0c).contains(&r) && r != 0x0e && !bar {
                s[r] = (val >> (8 * k)) as u8;
            }
        }
        let last = off + usize::from(size) - 1;
        if is_host && off < PAM0 + 7 && last >= PAM0 {
            self.apply_pam(mem);
        }
    }

    /// The ISA IRQ that PIIX3 PIRQ route register `pirq` (0-3 for PIRQA-D, configuration
    /// 0x60-0x63 of the ISA bridge) sends that PCI interrupt to on the 8259A path, or `None`
    /// when routing is off (bit 7) or names an IRQ the PIIX3 cannot route to.
    pub fn pirq_route(&self, pirq: usize) -> Option<u8> {
        let r = *self.isa.get(0x60 + pirq)?;
        let irq = r & 0x0f;
        (r & 0x80 == 0 && matches!(irq, 3..=7 | 9..=12 | 14 | 15)).then_some(irq)
    }

    /// The attribute (RE bit 0, WE bit 1) of PAM segment `k`.
    fn pam_attr(&self, k: usize) -> u8 {
        if k == 0 {
            (self.host[PAM0] >> 4) & 3
        } else {
            let reg = self.host[PAM0 + 1 + (k - 1) / 2];
            if (k - 1).is_multiple_of(2) {
                reg & 3
            } else {
                (reg >> 4) & 3
            }
        }
    }

    /// Puts shadow RAM over the segments whose PAM attribute reads DRAM: writable RAM for
    /// read/write, read-only RAM for read-only. Write-only (2) is approximated as ROM reads
    /// with the writes lost, logged once.
    fn apply_pam(&mut self, mem: &mut PhysMap) {
        for (k, (base, len)) in pam_segments().into_iter().enumerate() {
            let attr = self.pam_attr(k);
            if self.shadow[k].map(|(_, a)| a) == Some(attr) || (self.shadow[k].is_none() && attr & 1 == 0) {
                if attr == 2 {
                    log_write_only_once();
                }
                continue;
            }
            if let Some((id, _)) = self.shadow[k].take() {
                let _ = mem.remove_region(id);
            }
            if attr & 1 != 0 {
                let kind = RegionKind::Ram { offset: base, writable: attr & 2 != 0 };
                if let Ok(id) = mem.add_region(base, len, kind, PRIORITY_SHADOW) {
                    self.shadow[k] = Some((id, attr));
                }
            }
            self.map_changed = true;
        }
    }
}

fn log_write_only_once() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| log::warn!("PAM write-only shadowing is approximated: reads come from ROM, writes are lost"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use softmmu::PhysBus;

    fn select(pci: &mut PciHost, mem: &mut PhysMap, devfn: u32, reg: u32) {
        pci.write(0xcf8, 4, 0x8000_0000 | (devfn << 8) | (reg & 0xfc), mem);
    }

    #[test]
    fn pirq_route_registers_route_to_isa_irqs() {
        let mut mem = PhysMap::pc(16 << 20).expect("map");
        let mut pci = PciHost::new();
        assert_eq!(pci.pirq_route(0), None, "routing is off at reset");
        select(&mut pci, &mut mem, 0x08, 0x60);
        pci.write(0xcfc, 4, 0x800b_0a02, &mut mem);
        assert_eq!(pci.pirq_route(0), None, "IRQ 2 cannot be a PIRQ target");
        assert_eq!(pci.pirq_route(1), Some(10));
        assert_eq!(pci.pirq_route(2), Some(11));
        assert_eq!(pci.pirq_route(3), None);
        assert_eq!(pci.pirq_route(4), None);
    }

    #[test]
    fn bridges_identify_and_absent_functions_read_all_ones() {
        let mut mem = PhysMap::pc(16 << 20).expect("map");
        let mut pci = PciHost::new();
        select(&mut pci, &mut mem, 0, 0);
        assert_eq!(pci.read(0xcfc, 4), 0x1237_8086);
        select(&mut pci, &mut mem, 8, 0);
        assert_eq!(pci.read(0xcfc, 4), 0x7000_8086);
        select(&mut pci, &mut mem, 16, 0);
        assert_eq!(pci.read(0xcfc, 4), u32::MAX);
        // BAR sizing finds nothing.
        select(&mut pci, &mut mem, 0, 0x10);
        pci.write(0xcfc, 4, u32::MAX, &mut mem);
        assert_eq!(pci.read(0xcfc, 4), 0);
    }

    #[test]
    fn pam_read_write_shadows_the_bios_area_in_ram() {
        let mut mem = PhysMap::pc(16 << 20).expect("map");
        mem.map_firmware(vec![0xaa; 0x10000]).expect("firmware");
        let mut pci = PciHost::new();
        assert_eq!(mem.read_phys(0xf0000, 1), 0xaa, "ROM at reset");
        // PAM0 = 0x30: 0xF0000-0xFFFFF reads and writes DRAM.
        select(&mut pci, &mut mem, 0, 0x58);
        pci.write(0xcfd, 1, 0x30, &mut mem);
        assert!(pci.map_changed);
        mem.write_phys(0xf0000, 1, 0x55);
        assert_eq!(mem.read_phys(0xf0000, 1), 0x55, "shadow RAM is writable");
        // PAM0 = 0x10: read-only DRAM keeps the copy and drops writes.
        pci.write(0xcfd, 1, 0x10, &mut mem);
        mem.write_phys(0xf0000, 1, 0x66);
        assert_eq!(mem.read_phys(0xf0000, 1), 0x55);
        // PAM0 = 0: the ROM again.
        pci.write(0xcfd, 1, 0x00, &mut mem);
        assert_eq!(mem.read_phys(0xf0000, 1), 0xaa);
    }
}
