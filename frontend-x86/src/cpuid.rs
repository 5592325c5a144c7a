//! CPUID: reports exactly what is implemented and nothing more.

/// The processor signature (family 6, model 0x0f, stepping 1), also in EDX after reset.
pub const SIGNATURE: u32 = 0x0000_06f1;
