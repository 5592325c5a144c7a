//! Guest exceptions: what an instruction's semantics return when they fault.

/// An exception raised by an instruction, to be delivered through the IVT/IDT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Exception {
    /// The vector (0-31 for CPU exceptions).
    pub vector: u8,
    /// The error code pushed with the exception, if this vector has one.
    pub error_code: Option<u32>,
}

/// Exception vectors.
#[allow(missing_docs)]
pub mod vector {
    pub const DE: u8 = 0;
    pub const DB: u8 = 1;
    pub const NMI: u8 = 2;
    pub const BP: u8 = 3;
    pub const OF: u8 = 4;
    pub const BR: u8 = 5;
    pub const UD: u8 = 6;
    pub const NM: u8 = 7;
    pub const DF: u8 = 8;
    pub const TS: u8 = 10;
    pub const NP: u8 = 11;
    pub const SS: u8 = 12;
    pub const GP: u8 = 13;
    pub const PF: u8 = 14;
    pub const MF: u8 = 16;
    pub const AC: u8 = 17;
    pub const MC: u8 = 18;
    pub const XM: u8 = 19;
}

impl Exception {
    /// An exception without an error code.
    pub const fn new(vector: u8) -> Self {
        Exception { vector, error_code: None }
    }
    /// An exception with an error code.
    pub const fn with_code(vector: u8, code: u32) -> Self {
        Exception { vector, error_code: Some(code) }
    }
    /// #DE, divide error.
    pub const DE: Exception = Exception::new(vector::DE);
    /// #UD, invalid opcode.
    pub const UD: Exception = Exception::new(vector::UD);
    /// #BR, BOUND range exceeded.
    pub const BR: Exception = Exception::new(vector::BR);
    /// #NM, device not available.
    pub const NM: Exception = Exception::new(vector::NM);
    /// Not an exception: the instruction did not start and the CPU waits for an interrupt, a
    /// waiting x87 instruction frozen by FERR# without IGNNE# (SDM vol. 1, D.2.1).
    /// `interrupt::raise` halts the CPU with RIP at the instruction instead of delivering it;
    /// an interrupt then runs with that instruction as its return address.
    pub const FREEZE: Exception = Exception::new(0xff);
    /// #GP with an error code.
    pub const fn gp(code: u32) -> Self {
        Exception::with_code(vector::GP, code)
    }
    /// #SS with an error code.
    pub const fn ss(code: u32) -> Self {
        Exception::with_code(vector::SS, code)
    }
    /// #NP with an error code.
    pub const fn np(code: u32) -> Self {
        Exception::with_code(vector::NP, code)
    }
    /// #TS with an error code.
    pub const fn ts(code: u32) -> Self {
        Exception::with_code(vector::TS, code)
    }

    /// Contributory exceptions (SDM vol. 3, table 6-5): two in a row make a double fault.
    pub fn is_contributory(&self) -> bool {
        matches!(self.vector, vector::DE | vector::TS | vector::NP | vector::SS | vector::GP)
    }
}

/// What an instruction's execution can end in, other than completing.
pub type Result<T> = std::result::Result<T, Exception>;
