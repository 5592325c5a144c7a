//! The Intel MultiProcessor Specification 1.4 tables: the "_MP_" floating pointer and a
//! configuration table for one CPU, the ISA bus, the IO-APIC and the ISA IRQ routing (IRQ0 on
//! pin 2, the SCI level-triggered), for kernels that look for them instead of (or before) ACPI.

use crate::acpi::{checksum, IOAPIC_ADDR, LAPIC_ADDR};

/// Where the floating pointer goes (16-byte aligned, in the scanned 0xF0000-0xFFFFF area).
pub const FLOATING_ADDR: u64 = 0xf_0040;
/// Where the configuration table goes.
pub const CONFIG_ADDR: u64 = 0xf_0100;

/// The floating pointer and the configuration table as (address, bytes) pairs.
pub fn build(cpu_signature: u32, cpu_features: u32) -> Vec<(u64, Vec<u8>)> {
    let mut entries = Vec::new();
    let mut count = 0u16;
    // Processor: APIC id 0, version 0x14, enabled and bootstrap.
    entries.extend_from_slice(&[0, 0, 0x14, 3]);
    entries.extend_from_slice(&cpu_signature.to_le_bytes());
    entries.extend_from_slice(&cpu_features.to_le_bytes());
    entries.extend_from_slice(&[0; 8]);
    count += 1;
    entries.extend_from_slice(&[1, 0]); // Bus 0: ISA
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[2, 0, 0x11, 1]); // IO-APIC id 0, version 0x11, usable
    entries.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    count += 1;
    // ExtINT from the 8259 on pin 0, then the ISA IRQs.
    entries.extend_from_slice(&[3, 3, 0, 0, 0, 0, 0, 0]);
    count += 1;
    for irq in 0u8..16 {
        if irq == 2 {
            continue; // the cascade
        }
        let pin = if irq == 0 { 2 } else { irq };
        let flags: u8 = if irq == 9 { 0x0d } else { 0 }; // SCI: active high, level
        entries.extend_from_slice(&[3, 0, flags, 0, 0, irq, 0, pin]);
        count += 1;
    }
    // Local interrupts on every CPU: ExtINT on LINT0, NMI on LINT1.
    entries.extend_from_slice(&[4, 3, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let mut config = Vec::new();
    config.extend_from_slice(b"PCMP");
    config.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    config.push(4); // spec revision 1.4
    config.push(0); // checksum, below
    config.extend_from_slice(b"CRANEBOX");
    config.extend_from_slice(b"PC          ");
    config.extend_from_slice(&[0; 6]); // OEM table pointer and size
    config.extend_from_slice(&count.to_le_bytes());
    config.extend_from_slice(&LAPIC_ADDR.to_le_bytes());
    config.extend_from_slice(&[0; 4]); // extended table length, checksum, reserved
    config.extend_from_slice(&entries);
    config[7] = checksum(&config);

    let mut fp = Vec::with_capacity(16);
    fp.extend_from_slice(b"_MP_");
    fp.extend_from_slice(&(CONFIG_ADDR as u32).to_le_bytes());
    fp.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]); // 1 paragraph, rev 1.4, checksum, features
    fp[10] = checksum(&fp);
    vec![(FLOATING_ADDR, fp), (CONFIG_ADDR, config)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_structures_sum_to_zero_and_the_counts_match() {
        let t = build(0x6f1, 0);
        let (fp, config) = (&t[0].1, &t[1].1);
        assert_eq!(fp.len(), 16);
        assert_eq!(fp.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        assert_eq!(config.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        assert_eq!(usize::from(u16::from_le_bytes([config[4], config[5]])), config.len());
        let count = u16::from_le_bytes([config[34], config[35]]);
        // 1 CPU (20 bytes), then 8-byte entries.
        assert_eq!(config.len(), 44 + 20 + (usize::from(count) - 1) * 8);
        assert_eq!(u32::from_le_bytes([fp[4], fp[5], fp[6], fp[7]]) as u64, CONFIG_ADDR);
        assert!(t[1].0 + config.len() as u64 <= 0x10_0000);
    }
}
