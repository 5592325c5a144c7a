//! RFLAGS with lazily computed arithmetic flags (design principle 5).
//!
//! An arithmetic instruction records its operation, operands and result instead of computing
//! six flags; most of them are overwritten before anything reads them. The flags are computed
//! when read. ADC/SBB need no stored carry-in: it is recovered from `r - a - b`.

use crate::Width;

/// Carry.
pub const CF: u64 = 1 << 0;
/// Reserved, always one.
pub const FIXED1: u64 = 1 << 1;
/// Parity of the low byte.
pub const PF: u64 = 1 << 2;
/// Auxiliary (BCD) carry.
pub const AF: u64 = 1 << 4;
/// Zero.
pub const ZF: u64 = 1 << 6;
/// Sign.
pub const SF: u64 = 1 << 7;
/// Trap (single step).
pub const TF: u64 = 1 << 8;
/// Interrupt enable.
pub const IF: u64 = 1 << 9;
/// Direction.
pub const DF: u64 = 1 << 10;
/// Overflow.
pub const OF: u64 = 1 << 11;
/// I/O privilege level (two bits).
pub const IOPL: u64 = 3 << 12;
/// Nested task.
pub const NT: u64 = 1 << 14;
/// Resume.
pub const RF: u64 = 1 << 16;
/// Virtual-8086 mode.
pub const VM: u64 = 1 << 17;
/// Alignment check / SMAP override.
pub const AC: u64 = 1 << 18;
/// Virtual interrupt flag.
pub const VIF: u64 = 1 << 19;
/// Virtual interrupt pending.
pub const VIP: u64 = 1 << 20;
/// CPUID available.
pub const ID: u64 = 1 << 21;
/// The six arithmetic flags.
pub const ARITH: u64 = CF | PF | AF | ZF | SF | OF;
/// Every flag a program can ever set on this CPU.
pub const ALL: u64 = ARITH | TF | IF | DF | IOPL | NT | RF | VM | AC | VIF | VIP | ID;

/// The operation whose result defines the lazy arithmetic flags. `repr(u8)`: the JIT stores
/// the discriminant into [`LazyFlags`] directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FlagOp {
    /// Flags are not lazy: the stored bits are authoritative.
    None,
    /// `r = a + b`.
    Add,
    /// `r = a + b + CF`.
    Adc,
    /// `r = a - b` (also CMP, NEG with a = 0).
    Sub,
    /// `r = a - b - CF`.
    Sbb,
    /// AND/OR/XOR/TEST: CF = OF = AF = 0.
    Logic,
    /// `r = a + 1`; `b` holds the carry flag from before, which INC keeps.
    Inc,
    /// `r = a - 1`; `b` holds the carry flag from before, which DEC keeps.
    Dec,
    /// `r = a << b` (SHL/SAL by a count `b` of 1-31 (1-63 for 64 bits)): CF is the last bit
    /// shifted out, OF = MSB(r) xor CF, AF = 0.
    Shl,
    /// `r = a >> b` logically (SHR, count 1-63): CF the last bit out, OF as the last one-bit
    /// step leaves it (the original sign for a count of one), AF = 0.
    Shr,
    /// `r = a >> b` arithmetically (SAR, count 1-63): CF the last bit out, OF = AF = 0.
    Sar,
    /// IMUL with a truncated result `r`; `b` is 1 when the product did not fit: CF = OF = b,
    /// AF = 0, SF/ZF/PF from `r` (the SDM leaves those four undefined).
    Mul,
}

/// RFLAGS: the stored bits plus an optional pending arithmetic operation. `repr(C)` with its
/// field offsets public ([`LazyFlags::OFFSETS`]): compiled code keeps a pending operation in
/// host registers and stores it here when it leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct LazyFlags {
    bits: u64,
    op: FlagOp,
    w: Width,
    a: u64,
    b: u64,
    r: u64,
}

#[inline]
fn parity(v: u64) -> bool {
    (v as u8).count_ones().is_multiple_of(2)
}

/// SF, ZF and PF of a result of width `w`, for the helpers that compute flags eagerly.
#[inline]
pub fn szp(r: u64, w: Width) -> u64 {
    let mut f = 0;
    if r & w.mask() == 0 {
        f |= ZF;
    }
    if r & w.sign() != 0 {
        f |= SF;
    }
    if parity(r) {
        f |= PF;
    }
    f
}

/// Where [`LazyFlags`]' fields are, for code that writes a pending operation directly.
#[derive(Clone, Copy, Debug)]
pub struct LazyOffsets {
    /// `FlagOp` discriminant (u8).
    pub op: usize,
    /// `Width` discriminant (u8).
    pub w: usize,
    /// First operand (u64, masked to the width).
    pub a: usize,
    /// Second operand (u64, masked to the width).
    pub b: usize,
    /// Result (u64, masked to the width).
    pub r: usize,
}

impl LazyFlags {
    /// The field offsets.
    pub const OFFSETS: LazyOffsets = LazyOffsets {
        op: std::mem::offset_of!(LazyFlags, op),
        w: std::mem::offset_of!(LazyFlags, w),
        a: std::mem::offset_of!(LazyFlags, a),
        b: std::mem::offset_of!(LazyFlags, b),
        r: std::mem::offset_of!(LazyFlags, r),
    };

    /// Flags with the given value and nothing lazy.
    pub const fn new(bits: u64) -> Self {
        LazyFlags { bits: bits | FIXED1, op: FlagOp::None, w: Width::W8, a: 0, b: 0, r: 0 }
    }

    /// The stored bits; the arithmetic ones are stale while an operation is pending. For the
    /// system flags (IF, DF, TF, IOPL, VM, ...), which are never lazy.
    #[inline]
    pub fn raw_bits(&self) -> u64 {
        self.bits
    }

    /// The full RFLAGS value.
    #[inline]
    pub fn get(&self) -> u64 {
        if self.op == FlagOp::None {
            self.bits
        } else {
            (self.bits & !ARITH) | self.compute()
        }
    }

    /// Sets RFLAGS outright (bit 1 forced on).
    #[inline]
    pub fn set(&mut self, v: u64) {
        self.bits = (v & ALL) | FIXED1;
        self.op = FlagOp::None;
    }

    /// Sets the flags in `mask` to the bits of `v`, keeping the others.
    #[inline]
    pub fn set_masked(&mut self, mask: u64, v: u64) {
        let cur = self.get();
        self.set((cur & !mask) | (v & mask));
    }

    /// Records an arithmetic operation whose result defines all six arithmetic flags.
    #[inline]
    pub fn set_lazy(&mut self, op: FlagOp, w: Width, a: u64, b: u64, r: u64) {
        let m = w.mask();
        self.op = op;
        self.w = w;
        self.a = a & m;
        self.b = b & m;
        self.r = r & m;
    }

    /// Sets one flag bit (`flag` is a single mask such as [`CF`]).
    #[inline]
    pub fn set_flag(&mut self, flag: u64, on: bool) {
        let cur = self.get();
        self.set(if on { cur | flag } else { cur & !flag });
    }

    #[inline]
    fn carry(&self) -> bool {
        let (a, b, r, m) = (self.a, self.b, self.r, self.w.mask());
        match self.op {
            FlagOp::None => self.bits & CF != 0,
            FlagOp::Add => r < a,
            FlagOp::Adc => {
                if r.wrapping_sub(a).wrapping_sub(b) & m != 0 {
                    r <= a
                } else {
                    r < a
                }
            }
            FlagOp::Sub => a < b,
            FlagOp::Sbb => {
                if a.wrapping_sub(b).wrapping_sub(r) & m != 0 {
                    a <= b
                } else {
                    a < b
                }
            }
            FlagOp::Logic => false,
            FlagOp::Inc | FlagOp::Dec => b != 0,
            FlagOp::Shl => {
                let bits = self.w.bits() as u64;
                b <= bits && (a >> (bits - b)) & 1 != 0
            }
            FlagOp::Shr => (1..=64).contains(&b) && (a >> (b - 1)) & 1 != 0,
            FlagOp::Sar => b >= 1 && (self.w.sext(a) as i64 >> (b - 1).min(63)) & 1 != 0,
            FlagOp::Mul => b != 0,
        }
    }

    fn compute(&self) -> u64 {
        let (a, b, r) = (self.a, self.b, self.r);
        let sign = self.w.sign();
        let mut f = 0;
        if self.carry() {
            f |= CF;
        }
        if parity(r) {
            f |= PF;
        }
        if r == 0 {
            f |= ZF;
        }
        if r & sign != 0 {
            f |= SF;
        }
        let (af, of) = match self.op {
            FlagOp::None => return self.bits & ARITH,
            FlagOp::Add | FlagOp::Adc => ((a ^ b ^ r) & 0x10 != 0, (a ^ r) & (b ^ r) & sign != 0),
            FlagOp::Sub | FlagOp::Sbb => ((a ^ b ^ r) & 0x10 != 0, (a ^ b) & (a ^ r) & sign != 0),
            FlagOp::Logic => (false, false),
            FlagOp::Inc => (r & 0xf == 0, r == sign),
            FlagOp::Dec => (a & 0xf == 0, a == sign),
            FlagOp::Shl => (false, (r & sign != 0) != self.carry()),
            FlagOp::Shr => (false, ((1..=64).contains(&b) && (a >> (b - 1)) & sign != 0) != (r & sign != 0)),
            FlagOp::Sar => (false, false),
            FlagOp::Mul => (false, b != 0),
        };
        if af {
            f |= AF;
        }
        if of {
            f |= OF;
        }
        f
    }

    /// CF, without computing the other flags.
    #[inline]
    pub fn cf(&self) -> bool {
        self.carry()
    }

    /// ZF, without computing the other flags.
    #[inline]
    pub fn zf(&self) -> bool {
        if self.op == FlagOp::None {
            self.bits & ZF != 0
        } else {
            self.r == 0
        }
    }

    /// Evaluates condition code `cc` (0-15: O, NO, B, AE, E, NE, BE, A, S, NS, P, NP, L, GE,
    /// LE, G) as used by Jcc, SETcc and CMOVcc.
    #[inline]
    pub fn cond(&self, cc: u8) -> bool {
        let v = match cc >> 1 {
            0 => self.get() & OF != 0,
            1 => self.cf(),
            2 => self.zf(),
            3 => self.cf() || self.zf(),
            4 => self.get() & SF != 0,
            5 => self.get() & PF != 0,
            6 => {
                let f = self.get();
                (f & SF != 0) != (f & OF != 0)
            }
            _ => {
                let f = self.get();
                f & ZF != 0 || ((f & SF != 0) != (f & OF != 0))
            }
        };
        v != (cc & 1 != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags_of(op: FlagOp, w: Width, a: u64, b: u64, r: u64) -> u64 {
        let mut f = LazyFlags::new(0);
        f.set_lazy(op, w, a, b, r);
        f.get() & ARITH
    }

    #[test]
    fn add_sets_carry_overflow_and_aux_as_the_sdm_defines() {
        assert_eq!(flags_of(FlagOp::Add, Width::W8, 0xff, 1, 0), CF | ZF | AF | PF);
        assert_eq!(flags_of(FlagOp::Add, Width::W8, 0x7f, 1, 0x80), OF | SF | AF);
        assert_eq!(flags_of(FlagOp::Add, Width::W16, 0x8000, 0x8000, 0), CF | OF | ZF | PF);
    }

    #[test]
    fn adc_recovers_the_carry_in_from_the_result() {
        // 0xff + 0xff + 1 = 0x1ff: carry out, result 0xff.
        assert_eq!(flags_of(FlagOp::Adc, Width::W8, 0xff, 0xff, 0xff) & CF, CF);
        // 5 + 0xff + 1 = 0x105: result equals a, carry out.
        assert_eq!(flags_of(FlagOp::Adc, Width::W8, 5, 0xff, 5) & CF, CF);
        // 5 + 0xff + 0 = 0x104.
        assert_eq!(flags_of(FlagOp::Adc, Width::W8, 5, 0xff, 4) & CF, CF);
        // 5 + 1 + 1 = 7: no carry.
        assert_eq!(flags_of(FlagOp::Adc, Width::W8, 5, 1, 7) & CF, 0);
    }

    #[test]
    fn sbb_borrow_accounts_for_the_carry_in() {
        // 5 - 5 - 1 = -1: borrow.
        assert_eq!(flags_of(FlagOp::Sbb, Width::W8, 5, 5, 0xff) & CF, CF);
        // 5 - 5 - 0 = 0: no borrow.
        assert_eq!(flags_of(FlagOp::Sbb, Width::W8, 5, 5, 0) & (CF | ZF), ZF);
    }

    #[test]
    fn inc_and_dec_keep_the_old_carry() {
        assert_eq!(flags_of(FlagOp::Inc, Width::W8, 0x7f, 1, 0x80), CF | OF | SF | AF);
        assert_eq!(flags_of(FlagOp::Dec, Width::W8, 0x80, 0, 0x7f), OF | AF);
    }

    #[test]
    fn conditions_follow_the_flags() {
        let mut f = LazyFlags::new(0);
        f.set_lazy(FlagOp::Sub, Width::W32, 1, 2, 1u64.wrapping_sub(2));
        assert!(f.cond(0x2)); // B
        assert!(f.cond(0xc)); // L
        assert!(!f.cond(0x4)); // E
        assert!(f.cond(0x6)); // BE
        assert!(!f.cond(0xf)); // G
    }
}
