//! CPUID: reports exactly what is implemented and nothing more. When a feature lands (paging
//! modes, x87, SSE, the APIC), its bit is turned on here and nowhere else.

/// The processor signature (family 6, model 0x0f, stepping 1), also in EDX after reset.
pub const SIGNATURE: u32 = 0x0000_06f1;

/// Leaf 1 EDX bits that are implemented.
pub mod edx1 {
    /// The x87 FPU on the chip.
    pub const FPU: u32 = 1;
    /// 4 MiB pages (CR4.PSE).
    pub const PSE: u32 = 1 << 3;
    /// RDTSC and CR4.TSD.
    pub const TSC: u32 = 1 << 4;
    /// RDMSR/WRMSR.
    pub const MSR: u32 = 1 << 5;
    /// PAE paging.
    pub const PAE: u32 = 1 << 6;
    /// CMPXCHG8B.
    pub const CX8: u32 = 1 << 8;
    /// The local APIC (xAPIC; the machine provides it on the bus).
    pub const APIC: u32 = 1 << 9;
    /// SYSENTER/SYSEXIT.
    pub const SEP: u32 = 1 << 11;
    /// Global pages (CR4.PGE).
    pub const MTRR: u32 = 1 << 12;
    pub const PGE: u32 = 1 << 13;
    /// CMOVcc (and FCMOV when the x87 is present).
    pub const CMOV: u32 = 1 << 15;
    pub const PAT: u32 = 1 << 16;
    /// 36-bit physical addresses in 4 MiB pages.
    pub const PSE36: u32 = 1 << 17;
    /// CLFLUSH.
    pub const CLFSH: u32 = 1 << 19;
    /// FXSAVE/FXRSTOR and CR4.OSFXSR.
    pub const FXSR: u32 = 1 << 24;
    /// SSE.
    pub const SSE: u32 = 1 << 25;
    /// SSE2.
    pub const SSE2: u32 = 1 << 26;
    /// MMX (the MMX registers alias the x87 register file).
    pub const MMX: u32 = 1 << 23;
}

/// Leaf 1 ECX bits that are implemented.
pub mod ecx1 {
    /// SSE3.
    pub const SSE3: u32 = 1 << 0;
    /// PCLMULQDQ.
    pub const PCLMULQDQ: u32 = 1 << 1;
    /// SSSE3.
    pub const SSSE3: u32 = 1 << 9;
    /// SSE4.1.
    pub const SSE41: u32 = 1 << 19;
    /// SSE4.2.
    pub const SSE42: u32 = 1 << 20;
    /// POPCNT.
    pub const POPCNT: u32 = 1 << 23;
    /// XSAVE/XRSTOR/XSETBV/XGETBV and CR4.OSXSAVE.
    pub const XSAVE: u32 = 1 << 26;
    /// CR4.OSXSAVE, reported from CR4 by the CPUID instruction (not in `LEAF1_ECX`).
    pub const OSXSAVE: u32 = 1 << 27;
    /// CMPXCHG16B.
    pub const CX16: u32 = 1 << 13;
    /// Process-context identifiers (CR4.PCIDE).
    pub const PCID: u32 = 1 << 17;
    /// The APIC timer's TSC-deadline mode (IA32_TSC_DEADLINE).
    pub const TSC_DEADLINE: u32 = 1 << 24;
}

/// Leaf 7 (subleaf 0) EBX bits that are implemented.
pub mod ebx7 {
    /// Supervisor-mode execution prevention.
    pub const SMEP: u32 = 1 << 7;
    /// INVPCID.
    pub const INVPCID: u32 = 1 << 10;
    /// Supervisor-mode access prevention (and STAC/CLAC).
    pub const SMAP: u32 = 1 << 20;
}

/// Leaf 0x8000_0001 EDX bits that are implemented.
pub mod edx81 {
    /// SYSCALL/SYSRET.
    pub const SYSCALL: u32 = 1 << 11;
    /// The no-execute page bit (EFER.NXE).
    pub const NX: u32 = 1 << 20;
    /// 1 GiB pages.
    pub const PAGE1GB: u32 = 1 << 26;
    /// Long mode.
    pub const LM: u32 = 1 << 29;
}

/// What leaf 1 reports in EDX.
pub const LEAF1_EDX: u32 = edx1::FPU
    | edx1::PSE
    | edx1::TSC
    | edx1::MSR
    | edx1::PAE
    | edx1::CX8
    | edx1::APIC
    | edx1::SEP
    | edx1::PGE
    | edx1::MTRR
    | edx1::PAT
    | edx1::CMOV
    | edx1::PSE36
    | edx1::CLFSH
    | edx1::FXSR
    | edx1::SSE
    | edx1::SSE2
    | edx1::MMX;
/// What leaf 1 reports in ECX.
pub const LEAF1_ECX: u32 = ecx1::SSE3
    | ecx1::SSSE3
    | ecx1::CX16
    | ecx1::PCID
    | ecx1::SSE41
    | ecx1::SSE42
    | ecx1::POPCNT
    | ecx1::XSAVE
    | ecx1::TSC_DEADLINE;
/// Leaf 0xD subleaf 1 EAX: XSAVEOPT.
pub const LEAF_D1_EAX: u32 = 1;
/// What leaf 7 reports in EBX.
pub const LEAF7_EBX: u32 = ebx7::SMEP | ebx7::INVPCID | ebx7::SMAP;
/// What leaf 0x8000_0001 reports in EDX.
pub const LEAF81_EDX: u32 = edx81::SYSCALL | edx81::NX | edx81::PAGE1GB | edx81::LM;
/// What leaf 0x8000_0001 reports in ECX: LAHF/SAHF in 64-bit mode.
pub const LEAF81_ECX: u32 = 1;

/// The TSC's rate: one tick per nanosecond of virtual time.
pub const TSC_HZ: u32 = 1_000_000_000;
/// The core crystal clock leaf 0x15 reports: the local APIC timer's input clock.
const CRYSTAL_HZ: u32 = 1_000_000_000;

const VENDOR: &[u8; 12] = b"GenuineIntel";
const BRAND: &[u8; 48] = b"cranebox x86-64 CPU (interpreter)\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

fn le(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// CPUID leaf `leaf`, subleaf `sub`: (EAX, EBX, ECX, EDX). Leaves that are not reported read
/// as zeros.
pub fn cpuid(leaf: u32, sub: u32) -> (u32, u32, u32, u32) {
    const MAX_BASIC: u32 = 0x16;
    const MAX_EXT: u32 = 0x8000_0008;
    match leaf {
        0 => (MAX_BASIC, le(&VENDOR[0..4]), le(&VENDOR[8..12]), le(&VENDOR[4..8])),
        // EBX: CLFLUSH line size 8 * 8 bytes, one logical processor.
        1 => (SIGNATURE, 8 << 8 | 1 << 16, LEAF1_ECX, LEAF1_EDX),
        7 if sub == 0 => (0, LEAF7_EBX, 0, 0),
        // XSAVE: x87 and SSE state, 576 bytes (the CPUID helper reports EBX for the
        // current XCR0, which is the same size for every value XCR0 may take here).
        0xd if sub == 0 => {
            let size = crate::sem::xsave::AREA_SIZE;
            (crate::sem::xsave::XCR0_SUPPORTED as u32, size, size, 0)
        }
        0xd if sub == 1 => (LEAF_D1_EAX, 0, 0, 0),
        // The TSC counts virtual nanoseconds: 1 GHz, as the core crystal clock (which is also
        // the local APIC timer's input, SDM vol. 3 11.5.4: devices/apic.rs counts at 1 GHz)
        // times 1 (leaf 0x15), and a 1000 MHz base and maximum frequency on a 100 MHz bus
        // (leaf 0x16). Linux then takes both as known instead of calibrating them.
        0x15 => (1, TSC_HZ / CRYSTAL_HZ, CRYSTAL_HZ, 0),
        0x16 => (TSC_HZ / 1_000_000, TSC_HZ / 1_000_000, 100, 0),
        0x8000_0000 => (MAX_EXT, 0, 0, 0),
        0x8000_0001 => (0, 0, LEAF81_ECX, LEAF81_EDX),
        0x8000_0002..=0x8000_0004 => {
            let b = &BRAND[(leaf - 0x8000_0002) as usize * 16..];
            (le(&b[0..]), le(&b[4..]), le(&b[8..]), le(&b[12..]))
        }
        // Address sizes: 40 physical bits (the page walker's MAXPHYADDR), 48 linear.
        0x8000_0008 => (u32::from(softmmu::paging::DEFAULT_MAXPHYADDR) | 48 << 8, 0, 0, 0),
        _ => (0, 0, 0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_and_brand_read_back_as_strings() {
        let (max, b, c, d) = cpuid(0, 0);
        assert!(max >= 1);
        let mut v = Vec::new();
        for r in [b, d, c] {
            v.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&v, b"GenuineIntel");
        let mut brand = Vec::new();
        for leaf in 0x8000_0002..=0x8000_0004 {
            let (a, b, c, d) = cpuid(leaf, 0);
            for r in [a, b, c, d] {
                brand.extend_from_slice(&r.to_le_bytes());
            }
        }
        assert!(brand.starts_with(b"cranebox"));
    }

    #[test]
    fn no_unimplemented_unit_is_advertised() {
        let (_, _, ecx, edx) = cpuid(1, 0);
        // MCA, MCE, ACPI thermal, DS, PBE are not implemented.
        for bit in [7, 14, 21, 22, 31] {
            assert_eq!(edx & (1 << bit), 0, "leaf 1 EDX bit {bit}");
        }
        // MONITOR, FMA, MOVBE, OSXSAVE (dynamic), AVX, F16C, RDRAND.
        for bit in [3, 12, 22, 27, 28, 29, 30] {
            assert_eq!(ecx & (1 << bit), 0, "leaf 1 ECX bit {bit}");
        }
        // XSAVE manages x87 and SSE only; no XSAVEC/XGETBV1/XSAVES.
        assert_eq!(cpuid(0xd, 0), (3, 576, 576, 0));
        assert_eq!(cpuid(0xd, 1).0, 1);
        // The TSC's frequency: crystal * EBX / EAX, and the base frequency in MHz.
        let (a, b, c, _) = cpuid(0x15, 0);
        assert_eq!(u64::from(c) * u64::from(b) / u64::from(a), 1_000_000_000);
        assert_eq!(cpuid(0x16, 0).0, 1000);
        assert!(cpuid(0, 0).0 >= 0x16);
        // Leaves between are not implemented and read as zeros (no topology, cache or
        // power-management enumeration, no SGX or trace).
        for leaf in [2, 3, 4, 5, 6, 8, 9, 0xa, 0xb, 0xe, 0xf, 0x10, 0x11, 0x12, 0x13, 0x14] {
            assert_eq!(cpuid(leaf, 0), (0, 0, 0, 0), "leaf {leaf:#x}");
        }
        // Leaf 7: no FSGSBASE, BMI, AVX2, RDSEED, ...
        let (_, b7, c7, d7) = cpuid(7, 0);
        assert_eq!(b7 & !(ebx7::SMEP | ebx7::INVPCID | ebx7::SMAP), 0);
        assert_eq!((c7, d7), (0, 0));
    }
}
