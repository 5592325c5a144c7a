//! The emitter abstraction of design principle 1.
//!
//! Every instruction's semantics is written once, as a function generic over [`Emit`]. The
//! interpreter tier runs it with [`crate::Concrete`], where a value is a `u64` and every method
//! acts at once; the Cranelift tier runs the same function with an emitter whose values are
//! CLIF SSA values and whose methods append instructions.
//!
//! Instructions too intricate to express as straight-line data flow (string loops, division,
//! descriptor loads, interrupt delivery, ...) are *helpers*: plain functions over a
//! [`crate::Concrete`] that the interpreter calls directly and the JIT calls out to. Helpers
//! are written against the same operand code as everything else, so nothing is written twice.

use crate::exception::Result;
use crate::flags::FlagOp;
use crate::state::{Gpr, SegReg, Width};
use crate::Concrete;

/// A general-register operand: which register, how wide, and whether it is one of AH/CH/DH/BH.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegRef {
    /// The register.
    pub gpr: Gpr,
    /// The operand width.
    pub width: Width,
    /// Bits 8-15 of the register (AH, CH, DH, BH).
    pub high8: bool,
}

/// Two-operand integer operations on values of one width. Results are truncated to the width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alu {
    /// a + b.
    Add,
    /// a - b.
    Sub,
    /// a & b.
    And,
    /// a | b.
    Or,
    /// a ^ b.
    Xor,
    /// a << b (b below the width).
    Shl,
    /// Logical a >> b (b below the width).
    Shr,
    /// Arithmetic a >> b (b below the width).
    Sar,
    /// Low half of a * b.
    Mul,
    /// High half of the signed 128-bit product of two 64-bit values (use at `Width::W64`).
    SMulHi,
}

/// `op` on concrete values: what [`Emit::alu`] computes (the interpreter's emitter and
/// constant folding in the JIT share it).
#[inline]
pub fn eval_alu(op: Alu, a: u64, b: u64, w: Width) -> u64 {
    let m = w.mask();
    let r = match op {
        Alu::Add => a.wrapping_add(b),
        Alu::Sub => a.wrapping_sub(b),
        Alu::And => a & b,
        Alu::Or => a | b,
        Alu::Xor => a ^ b,
        Alu::Shl => a.wrapping_shl(b as u32),
        Alu::Shr => (a & m).wrapping_shr(b as u32),
        Alu::Sar => (w.sext(a) as i64).wrapping_shr(b as u32) as u64,
        Alu::Mul => a.wrapping_mul(b),
        Alu::SMulHi => ((i128::from(a as i64) * i128::from(b as i64)) >> 64) as u64,
    };
    r & m
}

/// Comparisons of two 64-bit values, giving 1 or 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cmp {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Unsigned less than.
    Ult,
    /// Unsigned greater than.
    Ugt,
}

/// The lanes a packed integer operation splits a 128-bit value into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lanes {
    /// Sixteen bytes.
    B,
    /// Eight 16-bit words.
    W,
    /// Four 32-bit doublewords.
    D,
    /// Two 64-bit quadwords.
    Q,
}

impl Lanes {
    /// The width of one lane in bits.
    pub const fn bits(self) -> u32 {
        match self {
            Lanes::B => 8,
            Lanes::W => 16,
            Lanes::D => 32,
            Lanes::Q => 64,
        }
    }
}

/// Two-operand operations on 128-bit (XMM) values, each exact as a vector operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VecOp {
    /// a & b.
    And,
    /// a | b.
    Or,
    /// a ^ b.
    Xor,
    /// !a & b (PANDN's operand order).
    AndNot,
    /// Lane-wise a + b, wrapping.
    Add(Lanes),
    /// Lane-wise a - b, wrapping.
    Sub(Lanes),
    /// All ones in each lane where a == b, else zero.
    CmpEq(Lanes),
}

/// `op` on concrete values: what [`Emit::vec`] computes. The lane-wise operations work on
/// all lanes at once inside the `u128` (no carry or borrow crosses a lane: the top bit of each
/// lane is computed apart), which the interpreter needs to be quick.
#[inline]
pub fn eval_vec(op: VecOp, a: u128, b: u128) -> u128 {
    // All ones in one lane; the top bit of every lane.
    let ones = |l: Lanes| (1u128 << l.bits()) - 1;
    let top = |l: Lanes| (u128::MAX / ones(l)) << (l.bits() - 1);
    match op {
        VecOp::And => a & b,
        VecOp::Or => a | b,
        VecOp::Xor => a ^ b,
        VecOp::AndNot => !a & b,
        VecOp::Add(l) => {
            let h = top(l);
            ((a & !h).wrapping_add(b & !h)) ^ ((a ^ b) & h)
        }
        VecOp::Sub(l) => {
            let h = top(l);
            ((a | h).wrapping_sub(b & !h)) ^ ((a ^ !b) & h)
        }
        VecOp::CmpEq(l) => {
            let h = top(l);
            let x = a ^ b;
            // The top bit of a lane is set when any of its bits is.
            let nonzero = (((x & !h).wrapping_add(!h)) | x) & h;
            let zero = !nonzero & h;
            // Spread each zero lane's top bit over the lane.
            let low = zero >> (l.bits() - 1);
            low.wrapping_mul(ones(l))
        }
    }
}

/// The control registers semantics may read (for the checks that depend on them at run time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cr {
    /// CR0.
    Cr0,
    /// CR4.
    Cr4,
}

/// A helper: an instruction's semantics run on concrete values. The JIT calls it out of line.
pub type Helper = fn(&mut Concrete<'_>, &crate::insn::Insn) -> Result<()>;

/// What an instruction's semantics may ask of an execution tier.
pub trait Emit {
    /// A value: `u64` in the interpreter, an SSA value in the JIT.
    type V: Copy;
    /// A 128-bit value: `u128` in the interpreter, a 16-byte vector in the JIT.
    type X: Copy;

    /// A constant.
    fn imm(&mut self, x: u64) -> Self::V;
    /// Reads a general register (zero-extended).
    fn get_reg(&mut self, r: RegRef) -> Self::V;
    /// Writes a general register with the ISA's merge rules (32-bit writes zero the top half).
    fn set_reg(&mut self, r: RegRef, v: Self::V);
    /// Reads a segment register's selector.
    fn get_sreg(&mut self, s: SegReg) -> Self::V;

    /// A two-operand operation at a width.
    fn alu(&mut self, op: Alu, a: Self::V, b: Self::V, w: Width) -> Self::V;
    /// Sign-extends `a` from width `from` to 64 bits.
    fn sext(&mut self, a: Self::V, from: Width) -> Self::V;
    /// A comparison giving 1 or 0.
    fn cmp(&mut self, c: Cmp, a: Self::V, b: Self::V) -> Self::V;
    /// `c != 0 ? a : b`.
    fn select(&mut self, c: Self::V, a: Self::V, b: Self::V) -> Self::V;

    /// Records the arithmetic flags of an operation (computed lazily).
    fn set_flags(&mut self, op: FlagOp, w: Width, a: Self::V, b: Self::V, r: Self::V);
    /// Evaluates condition code `cc` (0-15) to 1 or 0.
    fn cond(&mut self, cc: u8) -> Self::V;
    /// The carry flag as 1 or 0.
    fn carry(&mut self) -> Self::V;
    /// The whole RFLAGS value.
    fn get_rflags(&mut self) -> Self::V;
    /// Sets the RFLAGS bits in `mask` from `v` (only for unprivileged bits: arithmetic, DF).
    fn set_rflags(&mut self, mask: u64, v: Self::V);

    /// Reads CR0 or CR4 (they may change between runs of the same translated code).
    fn get_cr(&mut self, cr: Cr) -> Self::V;

    /// Reads XMM register `n` (0-15).
    fn get_xmm(&mut self, n: usize) -> Self::X;
    /// Writes XMM register `n` (0-15).
    fn set_xmm(&mut self, n: usize, v: Self::X);
    /// A two-operand operation on 128-bit values.
    fn vec(&mut self, op: VecOp, a: Self::X, b: Self::X) -> Self::X;
    /// Reads 16 bytes at segment:offset, as two 8-byte reads at `ea` and `ea + 8` (wrapping
    /// at the address size `aw`): a fault leaves nothing changed. No alignment check.
    fn load_x(&mut self, seg: SegReg, ea: Self::V, aw: Width) -> Result<Self::X>;
    /// Writes 16 bytes at segment:offset (as [`Emit::load_x`] splits them); every check is
    /// made before any byte is written. No alignment check.
    fn store_x(&mut self, seg: SegReg, ea: Self::V, aw: Width, v: Self::X) -> Result<()>;

    /// Reads memory at segment:offset; the offset is already truncated to the address size.
    fn load(&mut self, seg: SegReg, ea: Self::V, w: Width) -> Result<Self::V>;
    /// Writes memory at segment:offset.
    fn store(&mut self, seg: SegReg, ea: Self::V, v: Self::V, w: Width) -> Result<()>;

    /// The offset of the next instruction.
    fn next_ip(&mut self) -> Self::V;
    /// Continues at offset `target` in CS instead of the next instruction. Outside 64-bit mode
    /// a target past the CS limit is #GP(0) at the branch (a fall-through to the next
    /// instruction is not checked here: its fetch faults).
    fn jump(&mut self, target: Self::V) -> Result<()>;
    /// Runs `then` when `c` is non-zero.
    fn if_then(&mut self, c: Self::V, then: impl FnOnce(&mut Self) -> Result<()>) -> Result<()>;
    /// Runs a helper: directly in the interpreter, out of line in the JIT.
    fn helper(&mut self, h: Helper, insn: &crate::insn::Insn) -> Result<()>;

    /// The address size of the current code in bits, for stack and string operations: known at
    /// translation time in both tiers.
    fn stack_width(&self) -> Width;
    /// Whether the CPU is in 64-bit mode (known at translation time).
    fn mode64(&self) -> bool;

    /// Whether nothing can observe the arithmetic flags the current instruction writes: a
    /// later instruction of the same block overwrites them before anything reads them, and
    /// nothing in between can fault (an exception handler would see them). Semantics may
    /// then skip computing them; `set_flags` is ignored. The interpreter does not analyse
    /// blocks and says false.
    fn flags_dead(&self) -> bool {
        false
    }

    /// The arithmetic flags (RFLAGS bit positions) something may read after the current
    /// instruction, under the same analysis as [`Emit::flags_dead`]; all six in the
    /// interpreter.
    fn live_flags(&self) -> u64 {
        crate::flags::ARITH
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sem::sse::lanes;

    /// The all-lanes-at-once arithmetic of `eval_vec` against lane-by-lane arithmetic, on
    /// random values biased toward equal lanes, carries and borrows.
    #[test]
    fn eval_vec_matches_lane_by_lane() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for k in 0..20_000 {
            let a = u128::from(next()) | u128::from(next()) << 64;
            let mut b = u128::from(next()) | u128::from(next()) << 64;
            match k % 4 {
                // The low half equal.
                0 => b = (a & u128::from(u64::MAX)) | (b & !u128::from(u64::MAX)),
                1 => b = a ^ (1u128 << (next() % 128)),
                2 => b = !a,
                _ => {}
            }
            for l in [Lanes::B, Lanes::W, Lanes::D, Lanes::Q] {
                let bits = l.bits();
                assert_eq!(
                    eval_vec(VecOp::Add(l), a, b),
                    lanes(a, b, bits, u64::wrapping_add),
                    "add {l:?} {a:x} {b:x}"
                );
                assert_eq!(
                    eval_vec(VecOp::Sub(l), a, b),
                    lanes(a, b, bits, u64::wrapping_sub),
                    "sub {l:?} {a:x} {b:x}"
                );
                let eq = |p: u64, q: u64| if p == q { u64::MAX } else { 0 };
                assert_eq!(eval_vec(VecOp::CmpEq(l), a, b), lanes(a, b, bits, eq), "cmpeq {l:?} {a:x} {b:x}");
                assert_eq!(eval_vec(VecOp::CmpEq(l), a, a), u128::MAX);
            }
        }
    }
}
