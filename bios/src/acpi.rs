//! ACPI tables for direct-booted kernels, describing QEMU's pc machine devices: RSDP (2.0,
//! with an XSDT), RSDT, XSDT, FADT (revision 3), FACS, MADT, HPET and a DSDT holding `\_S5`.
//!
//! [`build`] also adds the MP tables ([`crate::mptable`]). The tables sit in [`ACPI_AREA`] bytes at the top of low RAM (marked E820 ACPI) and the RSDP
//! at [`RSDP_ADDR`] in the BIOS area that kernels scan (0xE0000-0xFFFFF).

/// Bytes reserved at the top of low RAM for the tables.
pub const ACPI_AREA: u64 = 0x1_0000;
/// Where the RSDP goes (inside the E820-reserved 0xF0000-0xFFFFF).
pub const RSDP_ADDR: u64 = 0xf_0000;

/// The local APIC's address.
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
/// The IO-APIC's address.
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// The HPET's address.
pub const HPET_ADDR: u64 = 0xfed0_0000;
/// The ACPI PM I/O blocks (PIIX4 PM at base 0x600, as QEMU's pc).
const PM1A_EVT: u32 = 0x600;
const PM1A_CNT: u32 = 0x604;
const PM_TMR: u32 = 0x608;
const GPE0: u32 = 0xafe0;
const SCI_IRQ: u16 = 9;

const OEM_ID: &[u8; 6] = b"CRANEB";
const OEM_TABLE_ID: &[u8; 8] = b"CRANEBOX";

/// Offsets of the tables in the area.
const DSDT_OFF: u64 = 0x000;
const FACS_OFF: u64 = 0x100; // 64-byte aligned, as FACS must be
const FADT_OFF: u64 = 0x200;
const MADT_OFF: u64 = 0x400;
const HPET_OFF: u64 = 0x500;
const RSDT_OFF: u64 = 0x600;
const XSDT_OFF: u64 = 0x700;

/// The value that makes `bytes` sum to zero.
pub fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// A table: the 36-byte header, then `body`, with length and checksum filled in.
fn table(sig: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(36 + body.len());
    t.extend_from_slice(sig);
    t.extend_from_slice(&((36 + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0); // checksum, below
    t.extend_from_slice(OEM_ID);
    t.extend_from_slice(OEM_TABLE_ID);
    t.extend_from_slice(&1u32.to_le_bytes()); // OEM revision
    t.extend_from_slice(b"CRNB"); // creator ID
    t.extend_from_slice(&1u32.to_le_bytes()); // creator revision
    t.extend_from_slice(body);
    t[9] = checksum(&t);
    t
}

/// A Generic Address Structure in system I/O space.
fn gas_io(bits: u8, addr: u32) -> [u8; 12] {
    let mut g = [0u8; 12];
    g[0] = 1; // SystemIO
    g[1] = bits;
    g[3] = match bits {
        8 => 1,
        16 => 2,
        _ => 3,
    };
    g[4..12].copy_from_slice(&u64::from(addr).to_le_bytes());
    g
}

/// The DSDT's AML: only `Name(\_S5, Package(4){0, 0, 0, 0})`, the sleep type PIIX4 uses for
/// soft-off (SLP_TYP 0).
pub fn dsdt() -> Vec<u8> {
    #[rustfmt::skip]
    let aml = [
        0x08,                   // NameOp
        b'_', b'S', b'5', b'_', // NameString "_S5_"
        0x12,                   // PackageOp
        0x06,                   // PkgLength: 6 bytes (itself, NumElements and four ZeroOps)
        0x04,                   // NumElements
        0x00, 0x00, 0x00, 0x00, // ZeroOp x4: SLP_TYPa, SLP_TYPb, reserved, reserved
    ];
    table(b"DSDT", 2, &aml)
}

/// The FACS (no header checksum; 64 bytes).
pub fn facs() -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[0..4].copy_from_slice(b"FACS");
    f[4..8].copy_from_slice(&64u32.to_le_bytes());
    f[32] = 2; // version
    f
}

/// The FADT, revision 3 (244 bytes), with both the 32-bit and the X_ fields.
pub fn fadt(facs_addr: u32, dsdt_addr: u32) -> Vec<u8> {
    let mut b = vec![0u8; 244 - 36];
    let mut at = |off: usize, bytes: &[u8]| b[off - 36..off - 36 + bytes.len()].copy_from_slice(bytes);
    at(36, &facs_addr.to_le_bytes());
    at(40, &dsdt_addr.to_le_bytes());
    at(46, &SCI_IRQ.to_le_bytes());
    // SMI_CMD 0: ACPI is always enabled, no handshake.
    at(56, &PM1A_EVT.to_le_bytes());
    at(64, &PM1A_CNT.to_le_bytes());
    at(76, &PM_TMR.to_le_bytes());
    at(80, &GPE0.to_le_bytes());
    at(88, &[4, 2, 0, 4, 4, 0]); // PM1_EVT_LEN, PM1_CNT_LEN, PM2_CNT_LEN, PM_TMR_LEN, GPE0/1_BLK_LEN
    at(96, &0x0fffu16.to_le_bytes()); // P_LVL2_LAT: C2 not supported
    at(98, &0x0fffu16.to_le_bytes()); // P_LVL3_LAT: C3 not supported
    at(108, &[0x32]); // CENTURY: the CMOS century register
    at(109, &3u16.to_le_bytes()); // IAPC_BOOT_ARCH: LEGACY_DEVICES | 8042
                                  // Flags: WBINVD, PROC_C1, PWR_BUTTON and SLP_BUTTON (none), RESET_REG_SUP.
    at(112, &((1u32 << 0) | (1 << 2) | (1 << 4) | (1 << 5) | (1 << 10)).to_le_bytes());
    at(116, &gas_io(8, 0xcf9));
    at(128, &[0x06]); // RESET_VALUE: CPU reset plus system reset
    at(132, &u64::from(facs_addr).to_le_bytes());
    at(140, &u64::from(dsdt_addr).to_le_bytes());
    at(148, &gas_io(32, PM1A_EVT));
    at(172, &gas_io(16, PM1A_CNT));
    at(208, &gas_io(32, PM_TMR));
    at(220, &gas_io(32, GPE0));
    table(b"FACP", 3, &b)
}

/// The MADT: one CPU, the IO-APIC, IRQ0 -> GSI 2 and the SCI (IRQ 9, level, active high), and
/// LINT1 as NMI.
pub fn madt() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&LAPIC_ADDR.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT: there are 8259s too
    b.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]); // Processor Local APIC: UID 0, APIC ID 0, enabled
    b.extend_from_slice(&[1, 12, 0, 0]); // I/O APIC id 0
    b.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes()); // GSI base
    b.extend_from_slice(&[2, 10, 0, 0]); // Interrupt Source Override: ISA IRQ 0
    b.extend_from_slice(&2u32.to_le_bytes()); // -> GSI 2
    b.extend_from_slice(&0u16.to_le_bytes()); // conforming
    b.extend_from_slice(&[2, 10, 0, SCI_IRQ as u8]);
    b.extend_from_slice(&u32::from(SCI_IRQ).to_le_bytes());
    b.extend_from_slice(&0x000du16.to_le_bytes()); // active high (01), level (11 << 2)
    b.extend_from_slice(&[4, 6, 0xff, 0, 0, 1]); // Local APIC NMI: all CPUs, flags 0, LINT1
    table(b"APIC", 1, &b)
}

/// The HPET table: one timer block at [`HPET_ADDR`].
pub fn hpet() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0x8086_a201u32.to_le_bytes()); // event timer block ID, as QEMU's
    b.extend_from_slice(&[0, 0, 0, 0]); // GAS: system memory
    b.extend_from_slice(&HPET_ADDR.to_le_bytes());
    b.push(0); // HPET number
    b.extend_from_slice(&0u16.to_le_bytes()); // minimum tick
    b.push(0); // page protection
    table(b"HPET", 1, &b)
}

/// The tables as bytes to place in guest RAM, and the RSDP's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiTables {
    /// (address, bytes) pairs.
    pub blobs: Vec<(u64, Vec<u8>)>,
    /// Where the RSDP is.
    pub rsdp_addr: u64,
}

/// Builds the tables for the area starting at `base` (ACPI_AREA bytes below the top of low RAM).
pub fn build(base: u64) -> AcpiTables {
    let a = |off: u64| (base + off) as u32;
    let entries = [a(FADT_OFF), a(MADT_OFF), a(HPET_OFF)];
    let rsdt: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
    let xsdt: Vec<u8> = entries.iter().flat_map(|e| u64::from(*e).to_le_bytes()).collect();
    let mut rsdp = Vec::with_capacity(36);
    rsdp.extend_from_slice(b"RSD PTR ");
    rsdp.push(0);
    rsdp.extend_from_slice(OEM_ID);
    rsdp.push(2); // ACPI 2.0+
    rsdp.extend_from_slice(&a(RSDT_OFF).to_le_bytes());
    rsdp.extend_from_slice(&36u32.to_le_bytes());
    rsdp.extend_from_slice(&u64::from(a(XSDT_OFF)).to_le_bytes());
    rsdp.extend_from_slice(&[0, 0, 0, 0]);
    rsdp[8] = checksum(&rsdp[..20]);
    rsdp[32] = checksum(&rsdp);
    AcpiTables {
        blobs: vec![
            (base + DSDT_OFF, dsdt()),
            (base + FACS_OFF, facs()),
            (base + FADT_OFF, fadt(a(FACS_OFF), a(DSDT_OFF))),
            (base + MADT_OFF, madt()),
            (base + HPET_OFF, hpet()),
            (base + RSDT_OFF, table(b"RSDT", 1, &rsdt)),
            (base + XSDT_OFF, table(b"XSDT", 1, &xsdt)),
            (RSDP_ADDR, rsdp),
        ],
        rsdp_addr: RSDP_ADDR,
    }
    .with_mptable()
}

impl AcpiTables {
    /// Adds the MP tables (in the same 0xF0000 area as the RSDP).
    fn with_mptable(mut self) -> Self {
        self.blobs.extend(crate::mptable::build(0x6f1, 0));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums_to_zero(b: &[u8]) -> bool {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x)) == 0
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
    }

    #[test]
    fn every_table_has_its_length_and_a_zero_checksum() {
        let t = build(0x7ff_0000);
        for (addr, bytes) in &t.blobs {
            match &bytes[..4] {
                b"_MP_" | b"PCMP" => continue, // mptable.rs checks those
                b"FACS" => assert_eq!(bytes.len(), 64),
                b"RSD " => {
                    assert!(sums_to_zero(&bytes[..20]) && sums_to_zero(bytes), "RSDP checksums");
                    assert_eq!(*addr, RSDP_ADDR);
                }
                sig => {
                    assert_eq!(u32_at(bytes, 4) as usize, bytes.len(), "{sig:?} length");
                    assert!(sums_to_zero(bytes), "{sig:?} checksum");
                }
            }
            assert!(*addr < 0x7ff_0000 + ACPI_AREA);
        }
        assert_eq!(fadt(0, 0).len(), 244);
    }

    #[test]
    fn the_xsdt_and_rsdt_point_at_fadt_madt_hpet_and_the_fadt_at_dsdt() {
        let base = 0x7ff_0000u64;
        let t = build(base);
        let at = |addr: u64| &t.blobs.iter().find(|(a, _)| *a == addr).expect("table").1;
        let rsdp = at(RSDP_ADDR);
        let xsdt = at(u64::from_le_bytes(rsdp[24..32].try_into().expect("8 bytes")));
        assert_eq!(&xsdt[..4], b"XSDT");
        let sigs: Vec<&[u8]> = (36..xsdt.len())
            .step_by(8)
            .map(|o| &at(u64::from_le_bytes(xsdt[o..o + 8].try_into().expect("8 bytes")))[..4])
            .collect();
        assert_eq!(sigs, [b"FACP", b"APIC", b"HPET"]);
        let rsdt = at(u64::from(u32_at(rsdp, 16)));
        assert_eq!(&rsdt[..4], b"RSDT");
        let fadt = at(u64::from(u32_at(rsdt, 36)));
        assert_eq!(&at(u64::from(u32_at(fadt, 40)))[..4], b"DSDT");
        assert_eq!(&at(u64::from(u32_at(fadt, 36)))[..4], b"FACS");
        assert_eq!(fadt[116], 1, "reset register in I/O space");
        assert_eq!(fadt[128], 6);
    }

    /// Runs `iasl -d` on the tables when it is installed (apt-get install acpica-tools).
    #[test]
    fn iasl_disassembles_the_tables() {
        if std::process::Command::new("iasl").arg("-v").output().is_err() {
            eprintln!("skipped: iasl is not installed (apt-get install acpica-tools)");
            return;
        }
        let dir = std::env::temp_dir().join(format!("cranebox-acpi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for (name, bytes) in
            [("dsdt.aml", dsdt()), ("facp.dat", fadt(0x1000, 0x2000)), ("apic.dat", madt()), ("hpet.dat", hpet())]
        {
            let p = dir.join(name);
            std::fs::write(&p, bytes).expect("write table");
            let out = std::process::Command::new("iasl").arg("-d").arg(&p).output().expect("run iasl");
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success(), "{name}: {text}");
            assert!(!text.contains("Error") && !text.contains("Invalid"), "{name}: {text}");
        }
    }
}
