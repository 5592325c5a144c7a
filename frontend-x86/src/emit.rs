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
    /// Lane-wise signed a + b, saturating.
    AddSatS(Lanes),
    /// Lane-wise unsigned a + b, saturating.
    AddSatU(Lanes),
    /// Lane-wise signed a - b, saturating.
    SubSatS(Lanes),
    /// Lane-wise unsigned a - b, saturating.
    SubSatU(Lanes),
    /// All ones in each lane where a > b as signed integers, else zero.
    CmpGt(Lanes),
    /// Lane-wise signed maximum.
    MaxS(Lanes),
    /// Lane-wise signed minimum.
    MinS(Lanes),
    /// Lane-wise unsigned maximum.
    MaxU(Lanes),
    /// Lane-wise unsigned minimum.
    MinU(Lanes),
    /// Lane-wise unsigned (a + b + 1) >> 1, without overflow.
    AvgU(Lanes),
    /// Lane-wise a * b, the low half of the product.
    MulLo(Lanes),
    /// The lanes of the low halves of a and b interleaved: a0, b0, a1, b1, ...
    UnpackLo(Lanes),
    /// The lanes of the high halves of a and b interleaved.
    UnpackHi(Lanes),
    /// PSHUFD: doubleword k of the result is doubleword `(imm >> 2k) & 3` of b (a is unused).
    ShufD(u8),
    /// PSHUFLW: words 0-3 shuffled as [`VecOp::ShufD`] does doublewords, words 4-7 kept (of b;
    /// a is unused).
    ShufLoW(u8),
    /// PSHUFHW: words 4-7 shuffled among themselves, words 0-3 kept (of b; a is unused).
    ShufHiW(u8),
    /// Each lane of b shifted left by the count; zero from the lane width on (a is unused).
    ShlImm(Lanes, u8),
    /// Each lane of b shifted right logically by the count; zero from the lane width on.
    ShrImm(Lanes, u8),
    /// Each lane of b shifted right arithmetically by the count; sign bits from the lane width
    /// on.
    SarImm(Lanes, u8),
}

/// The top bit of every lane.
#[inline(always)]
fn top_bits(l: Lanes) -> u128 {
    (u128::MAX / (u128::MAX >> (128 - l.bits()))) << (l.bits() - 1)
}

/// Lane-wise a + b, wrapping (`h` the top bit of every lane): no carry crosses a lane, the
/// top bits being added apart.
#[inline(always)]
fn add(a: u128, b: u128, h: u128) -> u128 {
    ((a & !h).wrapping_add(b & !h)) ^ ((a ^ b) & h)
}

/// Lane-wise a - b, wrapping (`h` the top bit of every lane).
#[inline(always)]
fn sub(a: u128, b: u128, h: u128) -> u128 {
    ((a | h).wrapping_sub(b & !h)) ^ ((a ^ !b) & h)
}

/// Each lane's top bit in `m` (the only bits set) spread over its lane.
#[inline(always)]
fn spread(m: u128, l: Lanes) -> u128 {
    // A lane of 100..0 less 1 is 011..1: no borrow leaves the lane.
    m.wrapping_sub(m >> (l.bits() - 1)) | m
}

/// The top bit of each lane where a > b as signed integers: the sign of b - a, corrected
/// where the subtraction overflowed.
#[inline(always)]
fn gt_s(a: u128, b: u128, l: Lanes) -> u128 {
    let h = top_bits(l);
    let d = sub(b, a, h);
    (d ^ ((b ^ a) & (b ^ d))) & h
}

/// The top bit of each lane where a > b as unsigned integers: the borrow out of b - a.
#[inline(always)]
fn gt_u(a: u128, b: u128, l: Lanes) -> u128 {
    let h = top_bits(l);
    let d = sub(b, a, h);
    ((!b & a) | (!(b ^ a) & d)) & h
}

/// The lanes of `x` where `m` is all ones, of `y` where it is zero.
#[inline(always)]
fn pick(m: u128, x: u128, y: u128) -> u128 {
    (x & m) | (y & !m)
}

/// `r` with the lanes whose top bit is set in `overflow` replaced by the signed bound on the
/// side of `a`'s sign (0x80.. when negative, 0x7f.. when not).
#[inline(always)]
fn saturate(r: u128, overflow: u128, a: u128, l: Lanes) -> u128 {
    let h = top_bits(l);
    let bound = spread(a & h, l) ^ !h;
    pick(spread(overflow, l), bound, r)
}

/// The four `bits`-bit lanes of `v` from lane `from` on shuffled among themselves by `imm`'s
/// 2-bit selectors (PSHUFD, PSHUFLW, PSHUFHW); the other lanes kept.
#[inline(always)]
fn shuffle4(v: u128, bits: u32, from: u32, imm: u8) -> u128 {
    let lane = u128::MAX >> (128 - bits);
    let field = (u128::MAX >> (128 - 4 * bits)) << (from * bits);
    (0..4).fold(v & !field, |r, k| {
        let sel = u32::from(imm >> (2 * k)) & 3;
        r | ((v >> ((from + sel) * bits)) & lane) << ((from + k) * bits)
    })
}

/// `count` repeated in every lane of `l` (`count` fits one lane).
#[inline]
fn splat(l: Lanes, count: u128) -> u128 {
    let ones = u128::MAX >> (128 - l.bits());
    (u128::MAX / ones) * count
}

impl VecOp {
    /// For the operations that only move bytes (the interleaves and shuffles): where each byte
    /// of the result comes from, as an index into the 32 bytes of a then b. Cranelift's
    /// `shuffle` takes this mask as it is; the interpreter gathers through it.
    pub fn byte_sources(self) -> Option<[u8; 16]> {
        // Lane j of imm's four 2-bit selectors.
        let sel = |imm: u8, j: usize| (usize::from(imm) >> (2 * j)) & 3;
        let (lane, pick): (usize, [usize; 8]) = match self {
            // Output lane j is lane j / 2 (of the chosen half) of a (even j) or b (odd j).
            VecOp::UnpackLo(l) | VecOp::UnpackHi(l) => {
                let s = l.bits() as usize / 8;
                let half = if matches!(self, VecOp::UnpackHi(_)) { 8 } else { 0 };
                return Some(std::array::from_fn(|k| {
                    let j = k / s;
                    (16 * (j % 2) + half + (j / 2) * s + k % s) as u8
                }));
            }
            VecOp::ShufD(imm) => (4, std::array::from_fn(|j| sel(imm, j & 3))),
            VecOp::ShufLoW(imm) => (2, std::array::from_fn(|j| if j < 4 { sel(imm, j) } else { j })),
            VecOp::ShufHiW(imm) => (2, std::array::from_fn(|j| if j < 4 { j } else { 4 + sel(imm, j - 4) })),
            _ => return None,
        };
        // A shuffle of b's lanes of `lane` bytes: output lane j is lane pick[j].
        Some(std::array::from_fn(|k| (16 + pick[k / lane] * lane + k % lane) as u8))
    }
}

/// `op` on concrete values: what [`Emit::vec`] computes. The lane-wise operations work on
/// all lanes at once inside the `u128` (no carry or borrow crosses a lane: the top bit of each
/// lane is computed apart; saturation, compares and min/max from each lane's carry, borrow or
/// overflow bit spread over the lane), which the interpreter needs to be quick: each is a few
/// nanoseconds, 2-4 times quicker than the lane-by-lane loops the helpers had (PMULLW, the
/// interleaves and the shuffles stay lane by lane, 2.5-4 ns). Inlined always: the
/// interpreter's per-operation functions then keep only their own arm.
#[inline(always)]
pub fn eval_vec(op: VecOp, a: u128, b: u128) -> u128 {
    // All ones in one lane; the top bit of every lane.
    let ones = |l: Lanes| (1u128 << l.bits()) - 1;
    let top = top_bits;
    match op {
        VecOp::And => a & b,
        VecOp::Or => a | b,
        VecOp::Xor => a ^ b,
        VecOp::AndNot => !a & b,
        VecOp::Add(l) => add(a, b, top(l)),
        VecOp::Sub(l) => sub(a, b, top(l)),
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
        // The saturating operations: the wrapping result, and where a lane carried, borrowed
        // or overflowed (its top bit), the bound instead.
        VecOp::AddSatU(l) => {
            let h = top(l);
            let s = add(a, b, h);
            s | spread(((a & b) | ((a | b) & !s)) & h, l)
        }
        VecOp::SubSatU(l) => {
            let h = top(l);
            let d = sub(a, b, h);
            d & !spread(((!a & b) | (!(a ^ b) & d)) & h, l)
        }
        VecOp::AddSatS(l) => {
            let h = top(l);
            let s = add(a, b, h);
            saturate(s, !(a ^ b) & (a ^ s) & h, a, l)
        }
        VecOp::SubSatS(l) => {
            let h = top(l);
            let d = sub(a, b, h);
            saturate(d, (a ^ b) & (a ^ d) & h, a, l)
        }
        VecOp::CmpGt(l) => spread(gt_s(a, b, l), l),
        VecOp::MaxS(l) => pick(spread(gt_s(a, b, l), l), a, b),
        VecOp::MinS(l) => pick(spread(gt_s(a, b, l), l), b, a),
        VecOp::MaxU(l) => pick(spread(gt_u(a, b, l), l), a, b),
        VecOp::MinU(l) => pick(spread(gt_u(a, b, l), l), b, a),
        // (a | b) - ((a ^ b) >> 1) lane by lane, which never borrows across lanes.
        VecOp::AvgU(l) => (a | b).wrapping_sub((a ^ b) >> 1 & !top(l)),
        VecOp::MulLo(l) => crate::sem::sse::lanes(a, b, l.bits(), u64::wrapping_mul),
        // The moves of bytes: what `VecOp::byte_sources` says (checked against it in the
        // tests), computed directly.
        VecOp::UnpackLo(l) => crate::sem::sse::interleave(a, b, l.bits(), false, 128),
        VecOp::UnpackHi(l) => crate::sem::sse::interleave(a, b, l.bits(), true, 128),
        VecOp::ShufD(imm) => shuffle4(b, 32, 0, imm),
        VecOp::ShufLoW(imm) => shuffle4(b, 16, 0, imm),
        VecOp::ShufHiW(imm) => shuffle4(b, 16, 4, imm),
        VecOp::ShlImm(l, n) if u32::from(n) < l.bits() => (b << n) & splat(l, (ones(l) << n) & ones(l)),
        VecOp::ShrImm(l, n) if u32::from(n) < l.bits() => (b >> n) & splat(l, ones(l) >> n),
        VecOp::ShlImm(..) | VecOp::ShrImm(..) => 0,
        VecOp::SarImm(l, n) => {
            let n = u32::from(n).min(l.bits() - 1);
            // The logical shift, then each negative lane's top n bits set.
            let shr = (b >> n) & splat(l, ones(l) >> n);
            let neg = (b & top(l)) >> (l.bits() - 1);
            shr | neg.wrapping_mul((ones(l) << (l.bits() - n)) & ones(l))
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
    /// The carry flag as INC/DEC's carry-in (they keep CF), for `set_flags`: the JIT may leave
    /// it in the CPU state when nothing reads it afterwards (see [`Emit::live_flags`]); the
    /// value is then only a placeholder.
    fn carry_in(&mut self) -> Self::V {
        self.carry()
    }
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
            check_new_ops(a, b, (next() & 0xff) as u8);
        }
    }

    /// The saturating, compare-greater, min/max, average, multiply, interleave, shuffle and
    /// immediate-shift operations against lane-by-lane arithmetic (`sse::lanes`,
    /// `sse::interleave`, `sse::shift_by`, which the MMX forms use) and word-by-word shuffles.
    fn check_new_ops(a: u128, b: u128, imm: u8) {
        use crate::sem::sse::{interleave, shift_by, sx};
        use iced_x86::Mnemonic as M;
        let sat_s = |v: i64, bits: u32| {
            let max = (1i64 << (bits - 1)) - 1;
            v.clamp(-max - 1, max) as u64
        };
        for (bits, l) in [(8, Lanes::B), (16, Lanes::W)] {
            let umax = (1u64 << bits) - 1;
            type Reference<'a> = &'a dyn Fn(u64, u64) -> u64;
            let cases: [(VecOp, Reference<'_>); 6] = [
                (VecOp::AddSatS(l), &|x, y| sat_s(sx(x, bits) + sx(y, bits), bits)),
                (VecOp::SubSatS(l), &|x, y| sat_s(sx(x, bits) - sx(y, bits), bits)),
                (VecOp::AddSatU(l), &|x, y| (x + y).min(umax)),
                (VecOp::SubSatU(l), &|x, y| x.saturating_sub(y)),
                (VecOp::AvgU(l), &|x, y| (x + y + 1) >> 1),
                (VecOp::MulLo(l), &|x, y| x.wrapping_mul(y)),
            ];
            for (op, f) in cases {
                assert_eq!(eval_vec(op, a, b), lanes(a, b, bits, f), "{op:?} {a:x} {b:x}");
            }
        }
        for (bits, l) in [(8, Lanes::B), (16, Lanes::W), (32, Lanes::D), (64, Lanes::Q)] {
            let gt = |x: u64, y: u64| if sx(x, bits) > sx(y, bits) { u64::MAX } else { 0 };
            let smax = |x: u64, y: u64| if sx(x, bits) > sx(y, bits) { x } else { y };
            let smin = |x: u64, y: u64| if sx(x, bits) < sx(y, bits) { x } else { y };
            assert_eq!(eval_vec(VecOp::CmpGt(l), a, b), lanes(a, b, bits, gt), "pcmpgt {l:?}");
            assert_eq!(eval_vec(VecOp::MaxS(l), a, b), lanes(a, b, bits, smax), "maxs {l:?}");
            assert_eq!(eval_vec(VecOp::MinS(l), a, b), lanes(a, b, bits, smin), "mins {l:?}");
            assert_eq!(eval_vec(VecOp::MaxU(l), a, b), lanes(a, b, bits, u64::max), "maxu {l:?}");
            assert_eq!(eval_vec(VecOp::MinU(l), a, b), lanes(a, b, bits, u64::min), "minu {l:?}");
            assert_eq!(eval_vec(VecOp::UnpackLo(l), a, b), interleave(a, b, bits, false, 128), "unpackl {l:?}");
            assert_eq!(eval_vec(VecOp::UnpackHi(l), a, b), interleave(a, b, bits, true, 128), "unpackh {l:?}");
        }
        let shifts = [
            (M::Psllw, VecOp::ShlImm(Lanes::W, imm)),
            (M::Pslld, VecOp::ShlImm(Lanes::D, imm)),
            (M::Psllq, VecOp::ShlImm(Lanes::Q, imm)),
            (M::Psrlw, VecOp::ShrImm(Lanes::W, imm)),
            (M::Psrld, VecOp::ShrImm(Lanes::D, imm)),
            (M::Psrlq, VecOp::ShrImm(Lanes::Q, imm)),
            (M::Psraw, VecOp::SarImm(Lanes::W, imm)),
            (M::Psrad, VecOp::SarImm(Lanes::D, imm)),
        ];
        for (m, op) in shifts {
            for n in [imm, imm & 7, imm & 15, imm & 31, imm & 63] {
                let op = match op {
                    VecOp::ShlImm(l, _) => VecOp::ShlImm(l, n),
                    VecOp::ShrImm(l, _) => VecOp::ShrImm(l, n),
                    VecOp::SarImm(l, _) => VecOp::SarImm(l, n),
                    o => o,
                };
                assert_eq!(eval_vec(op, a, b), shift_by(m, b, u64::from(n)), "{op:?} {b:x}");
            }
        }
        // The byte moves against their masks, which the JIT's shuffles take.
        for op in [
            VecOp::UnpackLo(Lanes::B),
            VecOp::UnpackHi(Lanes::W),
            VecOp::UnpackLo(Lanes::D),
            VecOp::UnpackHi(Lanes::Q),
            VecOp::ShufD(imm),
            VecOp::ShufLoW(imm),
            VecOp::ShufHiW(imm),
        ] {
            let (x, y) = (a.to_le_bytes(), b.to_le_bytes());
            let m = op.byte_sources().unwrap_or([0; 16]);
            let gathered = m.map(|k| if k < 16 { x[usize::from(k)] } else { y[usize::from(k & 15)] });
            assert_eq!(eval_vec(op, a, b), u128::from_le_bytes(gathered), "{op:?} by its byte sources");
        }
        // The shuffles, word by word against the selectors.
        let word = |v: u128, bits: u32, k: u32| (v >> (bits * k)) & (u128::MAX >> (128 - bits));
        let sel = |k: u32| u32::from(imm >> (2 * k)) & 3;
        let d = (0..4).fold(0, |r, k| r | word(b, 32, sel(k)) << (32 * k));
        assert_eq!(eval_vec(VecOp::ShufD(imm), a, b), d, "pshufd {imm:x} {b:x}");
        let lw = (0..4).fold(b & !u128::from(u64::MAX), |r, k| r | word(b, 16, sel(k)) << (16 * k));
        assert_eq!(eval_vec(VecOp::ShufLoW(imm), a, b), lw, "pshuflw {imm:x} {b:x}");
        let hw = (0..4).fold(b & u128::from(u64::MAX), |r, k| r | word(b, 16, 4 + sel(k)) << (16 * (4 + k)));
        assert_eq!(eval_vec(VecOp::ShufHiW(imm), a, b), hw, "pshufhw {imm:x} {b:x}");
    }
}
