//! The x87 floating-point unit (issue 5): the register stack (TOP, tags, stack overflow and
//! underflow), the control and status words, loads and stores of every format (FLD/FST/FSTP
//! m32/m64/m80/ST(i), FILD/FIST/FISTP/FISTTP m16/m32/m64, FBLD/FBSTP), the constants, FXCH,
//! FCMOVcc, FCHS/FABS, the basic operations in all their forms, FSQRT, FRNDINT, FPREM/FPREM1,
//! FSCALE, FXTRACT, the compares (FCOM/FUCOM/FICOM and popping forms, FCOMI/FUCOMI(P), FTST,
//! FXAM), the transcendentals (F2XM1, FYL2X, FYL2XP1, FSIN, FCOS, FSINCOS, FPTAN, FPATAN),
//! FINIT/FCLEX/FLDCW/FSTCW/FSTSW, FSTENV/FLDENV/FSAVE/FRSTOR, FINCSTP/FDECSTP/FFREE(P), FNOP.
//!
//! The basic operations use `rustc_apfloat` in a 67-bit significand format rounded toward zero
//! with a sticky ("round to odd") last bit, then rounded once to the precision control's
//! 24, 53 or 64 bits with the extended exponent range and the rounding control: that double
//! rounding is exact (the wide format has more than two extra bits). The transcendentals are
//! computed in 113-bit (IEEE quad) arithmetic by series and rounded once; FSIN/FCOS/FPTAN
//! reduce by the x87's own 66-bit π/2 so large arguments agree with the hardware.
//!
//! Exceptions: masked responses as the SDM gives them; unmasked IE/ZE/DE leave the destination
//! alone, unmasked OE/UE deliver the re-biased result; either way ES and B are set and the next waiting instruction raises #MF (CR0.NE) or FERR#.
//! FST/FIST to memory store nothing on an unmasked exception. Every rounded result goes
//! through `deliver`, which gives the re-biased result for an unmasked overflow or underflow
//! (the basic operations, FSQRT, FSCALE, FPREM's tiny remainders, the transcendentals).
//!
//! Every non-control instruction records FIP/FCS, FDP/FDS and FOP (the opcode's low three
//! bits and the ModR/M byte), as before the Pentium 4's optional FOP-only-on-exception mode.

use iced_x86::{CodeSize, Mnemonic, OpCodeOperandKind, OpKind, Register};
use rustc_apfloat::ieee::{Double, IeeeFloat, Semantics, Single, X87DoubleExtended};
use rustc_apfloat::{Float, FloatConvert, Round, Status, StatusAnd};

use crate::concrete::Concrete;
use crate::emit::Emit;
use crate::exception::{Exception, Result};
use crate::insn::Insn;
use crate::mem;
use crate::operand as op;
use crate::sem::Op;
use crate::state::{cr0, FpuState, SegReg, Width};

/// Status word bits.
pub mod fsw {
    /// Invalid operation.
    pub const IE: u16 = 1;
    /// Denormal operand.
    pub const DE: u16 = 2;
    /// Zero divide.
    pub const ZE: u16 = 4;
    /// Overflow.
    pub const OE: u16 = 8;
    /// Underflow.
    pub const UE: u16 = 0x10;
    /// Precision (inexact).
    pub const PE: u16 = 0x20;
    /// Stack fault.
    pub const SF: u16 = 0x40;
    /// Exception summary.
    pub const ES: u16 = 0x80;
    /// Condition codes.
    pub const C0: u16 = 0x100;
    /// C1.
    pub const C1: u16 = 0x200;
    /// C2.
    pub const C2: u16 = 0x400;
    /// C3.
    pub const C3: u16 = 0x4000;
    /// Busy.
    pub const B: u16 = 0x8000;
}

/// The QNaN floating-point indefinite: sign 1, exponent all ones, significand 0xC000...
pub const INDEFINITE: u128 = 0xffff_c000_0000_0000_0000;

type X87 = X87DoubleExtended;

/// 67-bit significands with an 18-bit exponent: the basic operations' intermediate format.
/// Its range is far beyond the x87's, so nothing they compute overflows or underflows in it
/// and an unmasked overflow or underflow can re-bias the exact result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WideS;
impl Semantics for WideS {
    const BITS: usize = 1 + 18 + 66;
    const EXP_BITS: usize = 18;
}
type Wide = IeeeFloat<WideS>;

/// IEEE quad's 113-bit significand with the same wide exponent range: the transcendentals'
/// arithmetic, and the form every result takes before its one rounding (`deliver`). Never
/// packed into bits: only the range limits differ from quad's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QS;
impl Semantics for QS {
    const BITS: usize = 128;
    const EXP_BITS: usize = 15;
    const MIN_EXP: rustc_apfloat::ExpInt = -(1 << 17) + 2;
    const MAX_EXP: rustc_apfloat::ExpInt = (1 << 17) - 1;
}
type Q = IeeeFloat<QS>;

/// Precision control 24 bits, extended exponent range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct P24S;
impl Semantics for P24S {
    const BITS: usize = 1 + 15 + 23;
    const EXP_BITS: usize = 15;
}

/// Precision control 53 bits, extended exponent range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct P53S;
impl Semantics for P53S {
    const BITS: usize = 1 + 15 + 52;
    const EXP_BITS: usize = 15;
}

/// What an 80-bit register holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// ±0.
    Zero,
    /// A denormal or pseudo-denormal.
    Denormal,
    /// A normal number.
    Normal,
    /// ±∞.
    Inf,
    /// A quiet NaN.
    QNan,
    /// A signaling NaN.
    SNan,
    /// Pseudo-NaN, pseudo-infinity, unnormal: invalid operands.
    Unsupported,
}

/// Classifies an 80-bit value.
pub fn classify(v: u128) -> Class {
    let exp = (v >> 64) as u16 & 0x7fff;
    let sig = v as u64;
    let int = sig >> 63 != 0;
    match exp {
        0 if sig == 0 => Class::Zero,
        0 => Class::Denormal,
        0x7fff if !int => Class::Unsupported,
        0x7fff if sig << 1 == 0 => Class::Inf,
        0x7fff if sig & (1 << 62) != 0 => Class::QNan,
        0x7fff => Class::SNan,
        _ if !int => Class::Unsupported,
        _ => Class::Normal,
    }
}

fn is_nan_class(c: Class) -> bool {
    matches!(c, Class::QNan | Class::SNan)
}

fn sign_of(v: u128) -> bool {
    v >> 79 & 1 != 0
}

fn reg_bits(r: &[u8; 10]) -> u128 {
    let mut b = [0u8; 16];
    b[..10].copy_from_slice(r);
    u128::from_le_bytes(b)
}

fn bits_reg(v: u128) -> [u8; 10] {
    let b = v.to_le_bytes();
    let mut r = [0u8; 10];
    r.copy_from_slice(&b[..10]);
    r
}

/// The abridged tag (FXSAVE form) expanded to the full tag word from the registers' contents
/// (SDM vol. 1, 8.1.7): 00 valid, 01 zero, 10 special, 11 empty, indexed by physical register.
pub fn full_tag_word(f: &FpuState) -> u16 {
    (0..8).fold(0u16, |acc, p| {
        let t = if f.ftw & (1 << p) == 0 {
            3
        } else {
            match classify(reg_bits(&f.st[p])) {
                Class::Zero => 1,
                Class::Normal => 0,
                _ => 2,
            }
        };
        acc | (t << (2 * p))
    })
}

/// The full tag word reduced to the abridged form: any tag but 11 is valid.
pub fn abridged_tag(tw: u16) -> u8 {
    (0..8).fold(0u8, |acc, p| if (tw >> (2 * p)) & 3 != 3 { acc | (1 << p) } else { acc })
}

/// The x87 helpers' view of the FPU state.
struct Fpu<'a>(&'a mut FpuState);

impl Fpu<'_> {
    fn top(&self) -> usize {
        usize::from((self.0.fsw >> 11) & 7)
    }
    fn set_top(&mut self, t: usize) {
        self.0.fsw = (self.0.fsw & !0x3800) | ((t as u16 & 7) << 11);
    }
    fn phys(&self, i: usize) -> usize {
        (self.top() + i) & 7
    }
    fn empty(&self, i: usize) -> bool {
        self.0.ftw & (1 << self.phys(i)) == 0
    }
    fn get(&self, i: usize) -> u128 {
        reg_bits(&self.0.st[self.phys(i)])
    }
    fn set(&mut self, i: usize, v: u128) {
        let p = self.phys(i);
        self.0.st[p] = bits_reg(v);
        self.0.ftw |= 1 << p;
    }
    fn free(&mut self, i: usize) {
        let p = self.phys(i);
        self.0.ftw &= !(1 << p);
    }
    fn pop(&mut self) {
        self.free(0);
        let t = self.top() + 1;
        self.set_top(t);
    }
    fn push(&mut self, v: u128) {
        let t = self.top().wrapping_sub(1) & 7;
        self.set_top(t);
        self.set(0, v);
    }
    fn masked(&self, flags: u16) -> bool {
        self.0.fcw & flags & 0x3f == flags & 0x3f
    }
    /// Records exception flags; with any of them unmasked, ES and B too. Returns whether all
    /// are masked (the masked response goes on).
    fn raise(&mut self, flags: u16) -> bool {
        self.0.fsw |= flags;
        if self.0.fcw & flags & 0x3f != flags & 0x3f {
            self.0.fsw |= fsw::ES | fsw::B;
            false
        } else {
            true
        }
    }
    fn set_c1(&mut self, on: bool) {
        self.0.fsw = (self.0.fsw & !fsw::C1) | if on { fsw::C1 } else { 0 };
    }
    /// Stack underflow: IE + SF, C1 = 0. Returns whether it is masked.
    fn underflow(&mut self) -> bool {
        self.set_c1(false);
        self.raise(fsw::IE | fsw::SF)
    }
    /// Stack overflow: IE + SF, C1 = 1. Returns whether it is masked.
    fn overflow(&mut self) -> bool {
        self.set_c1(true);
        self.raise(fsw::IE | fsw::SF)
    }
    fn round(&self) -> Round {
        match (self.0.fcw >> 10) & 3 {
            0 => Round::NearestTiesToEven,
            1 => Round::TowardNegative,
            2 => Round::TowardPositive,
            _ => Round::TowardZero,
        }
    }
    /// Pushes `v` or, on stack overflow, the masked response (QNaN indefinite).
    fn push_checked(&mut self, v: u128) {
        let t = self.top().wrapping_sub(1) & 7;
        if self.0.ftw & (1 << t) != 0 {
            if self.overflow() {
                self.push(INDEFINITE);
            }
        } else {
            self.set_c1(false);
            self.push(v);
        }
    }
}

fn to_x87(v: u128) -> X87 {
    X87::from_bits(v)
}

fn to_wide(v: u128) -> Wide {
    let mut lost = false;
    let r: StatusAnd<Wide> = to_x87(v).convert(&mut lost);
    r.value
}

/// Rounds `v` once to the precision control `fcw` selects and `round`: the 80-bit result,
/// its flags (OE, UE, PE; UE for a tiny result, inexact or not: the caller keeps it only when
/// it is unmasked or the result is inexact) and whether it rounded up in magnitude.
/// `inexact`: `v` is not the exact result (round to odd or a series), so the result is
/// inexact even when `v` converts exactly.
fn round_q(fcw: u16, round: Round, v: Q, inexact: bool) -> (u128, u16, bool) {
    let mut l0 = false;
    let largest: Q = match (fcw >> 8) & 3 {
        0 => IeeeFloat::<P24S>::largest().convert(&mut l0).value,
        2 => IeeeFloat::<P53S>::largest().convert(&mut l0).value,
        _ => X87::largest().convert(&mut l0).value,
    };
    let mut lost = false;
    let (r, st): (X87, Status) = match (fcw >> 8) & 3 {
        0 => {
            let StatusAnd { status, value }: StatusAnd<IeeeFloat<P24S>> = v.convert_r(round, &mut lost);
            (value.convert(&mut l0).value, status)
        }
        2 => {
            let StatusAnd { status, value }: StatusAnd<IeeeFloat<P53S>> = v.convert_r(round, &mut lost);
            (value.convert(&mut l0).value, status)
        }
        _ => {
            let StatusAnd { status, value } = v.convert_r(round, &mut lost);
            (value, status)
        }
    };
    let inexact = inexact || st.contains(Status::INEXACT);
    let mut flags = 0;
    // A magnitude past the largest finite number overflows whatever the rounding (apfloat
    // only says so when it rounds to infinity).
    if !v.is_nan() && !v.is_infinite() && (v.abs() > largest || st.contains(Status::OVERFLOW)) {
        flags |= fsw::OE | fsw::PE;
    }
    // Tiny: the rounded result is below the smallest normal number.
    let tiny = !v.is_zero() && !v.is_nan() && (r.to_bits() >> 64) & 0x7fff == 0;
    if tiny {
        flags |= fsw::UE;
    }
    if inexact {
        flags |= fsw::PE;
    }
    let back: Q = r.convert(&mut l0).value;
    let up = inexact && back.abs() > v.abs();
    (r.to_bits(), flags, up)
}

/// Delivers an operation's result `v` (exact, or `inexact` and rounding as the true result
/// does) rounded once, with OE/UE/PE and C1. The precision control applies when `pc` (the
/// basic operations and FSQRT), else 64 bits. A masked overflow or underflow gives the
/// rounded (∞, largest, denormal or zero) result; an unmasked one the result with its
/// exponent re-biased by ∓24576 to bring it into range (SDM vol. 1, 8.5.4 and 8.5.5), and
/// ES. Every x87 operation that rounds comes here.
fn deliver(f: &mut Fpu<'_>, v: Q, inexact: bool, pc: bool) -> u128 {
    let fcw = if pc { f.0.fcw } else { f.0.fcw | 0x300 };
    let round = f.round();
    let (mut bits, mut flags, mut up) = round_q(fcw, round, v, inexact);
    let unmasked = flags & (fsw::OE | fsw::UE) & !f.0.fcw;
    // Masked, underflow is reported only with a loss of accuracy; unmasked, on tininess.
    if unmasked == 0 && flags & fsw::PE == 0 {
        flags &= !fsw::UE;
    }
    if unmasked != 0 {
        let k = if unmasked & fsw::OE != 0 { -24576 } else { 24576 };
        let (b, fl, u) = round_q(fcw, round, v.scalbn(k), inexact);
        (bits, flags, up) = (b, unmasked | (fl & fsw::PE), u);
        // Still out of range after re-biasing (only FSCALE gets that far): ∞ or 0 with the
        // sign (as the host does).
        let sign = u128::from(v.is_negative()) << 79;
        if fl & fsw::OE != 0 && k < 0 {
            (bits, up) = (sign | 0x7fff_8000_0000_0000_0000, true);
        } else if fl & fsw::UE != 0 && k > 0 {
            (bits, up) = (sign, false);
        }
    }
    f.set_c1(up);
    if flags != 0 {
        f.raise(flags);
    }
    bits
}

/// A wide result computed toward zero, its last bit made sticky (round to odd): exact in Q,
/// and rounding as the exact result does to any precision of 65 bits or fewer.
fn sticky(w: StatusAnd<Wide>) -> (Q, bool) {
    let inexact = w.status.contains(Status::INEXACT);
    let mut v = w.value;
    if inexact && !v.is_nan() && !v.is_zero() {
        v = Wide::from_bits(v.to_bits() | 1);
    }
    let mut lost = false;
    (v.convert(&mut lost).value, inexact)
}

/// A pseudo-denormal passed through arithmetic comes out as the equal normal (exponent 1).
fn canon(v: u128) -> u128 {
    if (v >> 64) & 0x7fff == 0 && v as u64 >> 63 != 0 {
        v | (1 << 64)
    } else {
        v
    }
}

/// The quiet form of a NaN.
fn quiet(v: u128) -> u128 {
    v | (1 << 62)
}

/// The x87 NaN rule for two operands: a signaling NaN is IE; the result is the quieted NaN
/// with the larger significand (the first when equal), or the only NaN.
fn nan_result(a: u128, b: u128) -> (u128, u16) {
    let (ca, cb) = (classify(a), classify(b));
    let ie = if ca == Class::SNan || cb == Class::SNan { fsw::IE } else { 0 };
    let r = match (is_nan_class(ca), is_nan_class(cb)) {
        // A QNaN wins over an SNaN; two of a kind: the larger significand (SDM vol. 1,
        // table 4-7).
        (true, true) if ca != cb => {
            if ca == Class::QNan {
                a
            } else {
                b
            }
        }
        (true, true) => {
            let (sa, sb) = (a as u64, b as u64);
            if sa >= sb {
                a
            } else {
                b
            }
        }
        (true, false) => a,
        _ => b,
    };
    (quiet(r), ie)
}

/// The four basic operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

/// `a op b` with every x87 special case: returns the result bits (None: no result because an
/// unmasked exception) after recording flags.
fn arith(f: &mut Fpu<'_>, op: Arith, a: u128, b: u128, mem_denormal: bool) -> Option<u128> {
    let (ca, cb) = (classify(a), classify(b));
    if ca == Class::Unsupported || cb == Class::Unsupported {
        return f.raise(fsw::IE).then_some(INDEFINITE);
    }
    if is_nan_class(ca) || is_nan_class(cb) {
        let (r, ie) = nan_result(a, b);
        return f.raise(ie).then_some(r);
    }
    let (wa, wb) = (to_wide(a), to_wide(b));
    // Invalid combinations before the denormal check (SDM vol. 1, 4.9.1.2 priorities).
    let invalid = match op {
        Arith::Add => ca == Class::Inf && cb == Class::Inf && sign_of(a) != sign_of(b),
        Arith::Sub => ca == Class::Inf && cb == Class::Inf && sign_of(a) == sign_of(b),
        Arith::Mul => (ca == Class::Inf && cb == Class::Zero) || (ca == Class::Zero && cb == Class::Inf),
        Arith::Div => (ca == Class::Inf && cb == Class::Inf) || (ca == Class::Zero && cb == Class::Zero),
    };
    if invalid {
        return f.raise(fsw::IE).then_some(INDEFINITE);
    }
    // Zero divide ranks with the invalid operations, before the denormal operand.
    if op == Arith::Div && cb == Class::Zero && ca != Class::Inf {
        if !f.raise(fsw::ZE) {
            return None;
        }
        let s = sign_of(a) != sign_of(b);
        return Some(0x7fff_8000_0000_0000_0000u128 | if s { 1 << 79 } else { 0 });
    }
    if (ca == Class::Denormal || cb == Class::Denormal || mem_denormal) && !f.raise(fsw::DE) {
        return None;
    }
    let round = f.round();
    let r = match op {
        Arith::Add => wa.add_r(wb, round),
        Arith::Sub => wa.sub_r(wb, round),
        Arith::Mul => wa.mul_r(wb, round),
        Arith::Div => wa.div_r(wb, round),
    };
    // The wide operation is exact or rounds by less than its extra bits; round toward zero
    // there and mark stickiness, so the one real rounding below is correct.
    let wide = match op {
        Arith::Add => wa.add_r(wb, Round::TowardZero),
        Arith::Sub => wa.sub_r(wb, Round::TowardZero),
        Arith::Mul => wa.mul_r(wb, Round::TowardZero),
        Arith::Div => wa.div_r(wb, Round::TowardZero),
    };
    // An exact zero sum takes its sign from the rounding mode (IEEE 754 6.3).
    if wide.value.is_zero() && !wide.status.contains(Status::INEXACT) {
        return Some(X87::to_bits(r.value.convert(&mut false).value));
    }
    let (v, inexact) = sticky(wide);
    Some(deliver(f, v, inexact, true))
}

/// Converts a memory operand of `size` bytes to 80 bits: (value, IE, DE). m32/m64 signaling
/// NaNs stay signaling (with IE, for FLD to quiet them); denormals set DE.
fn from_mem_real(raw: u128, size: usize) -> (u128, u16) {
    let mut lost = false;
    match size {
        4 => {
            let v = Single::from_bits(raw);
            let den = (raw >> 23) & 0xff == 0 && raw & 0x7f_ffff != 0;
            if v.is_nan() {
                let s = (raw >> 31) & 1;
                let sig = ((raw & 0x7f_ffff) << 40) | (1 << 63);
                let ie = if raw & (1 << 22) == 0 { fsw::IE } else { 0 };
                return ((s << 79) | (0x7fff << 64) | sig, ie);
            }
            let r: StatusAnd<X87> = v.convert(&mut lost);
            (r.value.to_bits(), if den { fsw::DE } else { 0 })
        }
        8 => {
            let v = Double::from_bits(raw);
            let den = (raw >> 52) & 0x7ff == 0 && raw & 0xf_ffff_ffff_ffff != 0;
            if v.is_nan() {
                let s = (raw >> 63) & 1;
                let sig = ((raw & 0xf_ffff_ffff_ffff) << 11) | (1 << 63);
                let ie = if raw & (1 << 51) == 0 { fsw::IE } else { 0 };
                return ((s << 79) | (0x7fff << 64) | sig, ie);
            }
            let r: StatusAnd<X87> = v.convert(&mut lost);
            (r.value.to_bits(), if den { fsw::DE } else { 0 })
        }
        _ => (raw, 0),
    }
}

/// Converts an 80-bit value for FST m32/m64: (bits, flags, rounded up).
fn to_mem_real(f: &Fpu<'_>, v: u128, size: usize) -> (u64, u16, bool) {
    let c = classify(v);
    let s = u64::from(sign_of(v));
    match c {
        Class::Unsupported => {
            let ind = if size == 4 { 0xffc0_0000 } else { 0xfff8_0000_0000_0000 };
            return (ind, fsw::IE, false);
        }
        Class::QNan | Class::SNan => {
            let ie = if c == Class::SNan { fsw::IE } else { 0 };
            let sig = v as u64 | (1 << 62);
            let r = if size == 4 {
                (s << 31) | (0xff << 23) | ((sig >> 40) & 0x7f_ffff)
            } else {
                (s << 63) | (0x7ff << 52) | ((sig >> 11) & 0xf_ffff_ffff_ffff)
            };
            return (r, ie, false);
        }
        _ => {}
    }
    // The host does not report DE for a denormal stored to m32/m64.
    let den = 0;
    let x = to_x87(v);
    let mut lost = false;
    let round = f.round();
    let (bits, st, back): (u64, Status, X87) = if size == 4 {
        let r: StatusAnd<Single> = x.convert_r(round, &mut lost);
        (r.value.to_bits() as u64, r.status, r.value.convert(&mut false).value)
    } else {
        let r: StatusAnd<Double> = x.convert_r(round, &mut lost);
        (r.value.to_bits() as u64, r.status, r.value.convert(&mut false).value)
    };
    let mut flags = den;
    let mut l0 = false;
    let largest: X87 =
        if size == 4 { Single::largest().convert(&mut l0).value } else { Double::largest().convert(&mut l0).value };
    if st.contains(Status::OVERFLOW) || (!x.is_infinite() && x.abs() > largest) {
        flags |= fsw::OE | fsw::PE;
    }
    if st.contains(Status::UNDERFLOW) && st.contains(Status::INEXACT) {
        flags |= fsw::UE;
    }
    if st.contains(Status::INEXACT) {
        flags |= fsw::PE;
    }
    let up = st.contains(Status::INEXACT) && back.abs() > x.abs();
    (bits, flags, up)
}

/// An integer to 80 bits (exact).
fn from_int(v: i64) -> u128 {
    let r: StatusAnd<X87> = X87::from_i128(i128::from(v));
    r.value.to_bits()
}

/// An 80-bit value to a `bits`-bit integer with `round`: (value, flags, rounded up). Out of
/// range, NaN, ∞ and unsupported are IE with the integer indefinite.
fn to_int(v: u128, bits: usize, round: Round) -> (u64, u16, bool) {
    let indefinite = 1u64 << (bits - 1);
    let c = classify(v);
    if matches!(c, Class::Unsupported | Class::QNan | Class::SNan | Class::Inf) {
        return (indefinite, fsw::IE, false);
    }
    // The host does not report DE for a denormal stored as an integer.
    let den = 0;
    let x = to_x87(v);
    let r = x.round_to_integral(round);
    let max = 1i128 << (bits - 1);
    let mut exact = false;
    let i = r.value.to_i128_r(128, Round::TowardZero, &mut exact).value;
    if i < -max || i >= max {
        return (indefinite, fsw::IE | den, false);
    }
    let inexact = r.status.contains(Status::INEXACT);
    let up = inexact && r.value.abs() > x.abs();
    (i as u64 & ((1u128 << bits) - 1) as u64, den | if inexact { fsw::PE } else { 0 }, up)
}

/// The x87 instruction `i` resolves to, or None when it is not one.
pub fn resolve(i: &Insn) -> Option<Op> {
    use Mnemonic::*;
    Some(Op::Helper(match i.mnemonic() {
        Fninit | Finit => control,
        Fnclex | Fclex => control,
        Fldcw | Fnstcw | Fstcw | Fnstsw | Fstsw | Fincstp | Fdecstp | Ffree | Ffreep | Fnop => control,
        Fld | Fild | Fld1 | Fldz | Fldpi | Fldl2e | Fldl2t | Fldlg2 | Fldln2 => load,
        Fst | Fstp | Fist | Fistp | Fisttp => store,
        Fxch => fxch,
        Fcmovb | Fcmove | Fcmovbe | Fcmovu | Fcmovnb | Fcmovne | Fcmovnbe | Fcmovnu => fcmov,
        Fchs | Fabs => sign_op,
        Fadd | Faddp | Fiadd | Fsub | Fsubp | Fisub | Fsubr | Fsubrp | Fisubr | Fmul | Fmulp | Fimul | Fdiv | Fdivp
        | Fidiv | Fdivr | Fdivrp | Fidivr => binary,
        Fsqrt | Frndint => unary,
        Fcom | Fcomp | Fcompp | Fucom | Fucomp | Fucompp | Ficom | Ficomp | Ftst | Fcomi | Fcomip | Fucomi
        | Fucomip => compare,
        Fxam => fxam,
        Fnstenv | Fstenv | Fldenv | Fnsave | Fsave | Frstor => env,
        Fprem | Fprem1 | Fscale => two_st,
        Fxtract => fxtract,
        Fbld => fbld,
        Fbstp => fbstp,
        F2xm1 => f2xm1,
        Fsin | Fcos | Fsincos | Fptan => trig,
        Fpatan => fpatan,
        Fyl2x | Fyl2xp1 => fyl2x,
        _ => return None,
    }))
}

/// #NM with CR0.EM or CR0.TS; for waiting instructions a pending unmasked exception first.
fn check(c: &mut Concrete<'_>, waiting: bool) -> Result<()> {
    if c.cpu.cr0 & (cr0::EM | cr0::TS) != 0 {
        return Err(Exception::NM);
    }
    if waiting {
        crate::sem::mmx::pending_x87(c)?;
    } else {
        crate::sem::mmx::no_wait_x87(c);
    }
    Ok(())
}

/// ST(i) of a register operand.
fn st_index(r: Register) -> Option<usize> {
    (r.is_st()).then(|| (r as usize).wrapping_sub(Register::ST0 as usize) & 7)
}

/// The x87 last-instruction opcode (SDM vol. 1, 8.1.8): the low three bits of the D8-DF
/// opcode byte, then the ModR/M byte. The decoder keeps no bytes, so the ModR/M byte is put
/// together again from the opcode table (register forms, and the reg field of memory forms)
/// and the memory operand's address parts.
fn fop(i: &Insn) -> u16 {
    let oc = i.op_code();
    let op = oc.op_code() as u16;
    if oc.op_code_len() == 2 {
        // D8-DF and a register-form ModR/M byte, ST(i) in its low three bits.
        let sti = (0..i.op_count())
            .find(|&k| oc.op_kind(k) == OpCodeOperandKind::sti_opcode)
            .and_then(|k| st_index(i.op_register(k)))
            .unwrap_or(0) as u16;
        (op & 0x7ff) + sti
    } else {
        let reg = oc.group_index().clamp(0, 7) as u16;
        ((op & 7) << 8) | (reg << 3) | modrm_mem(i)
    }
}

/// The mod and rm fields of a memory operand's ModR/M byte. Exact for every encoding but one
/// with a SIB byte where none is needed (a base and no index, not rSP/R12), which no assembler
/// emits: that is recorded as the form without SIB.
fn modrm_mem(i: &Insn) -> u16 {
    use Register::*;
    let (base, index) = (i.memory_base(), i.memory_index());
    let disp = i.memory_displ_size();
    let md = |has_base: bool| -> u16 {
        match disp {
            _ if !has_base => 0,
            0 => 0,
            1 => 1 << 6,
            _ => 2 << 6,
        }
    };
    if i.mem.is_some_and(|m| m.addr == Width::W16) {
        let rm = match (base, index) {
            (BX, SI) => 0,
            (BX, DI) => 1,
            (BP, SI) => 2,
            (BP, DI) => 3,
            (SI, None) => 4,
            (DI, None) => 5,
            (BP, None) => 6,
            (BX, None) => 7,
            _ => return 6,
        };
        return md(true) | rm;
    }
    if matches!(base, RIP | EIP) {
        return 5;
    }
    let sib = index != None || base.number() & 7 == 4 || (base == None && i.code_size() == CodeSize::Code64);
    let rm = if sib {
        4
    } else if base == None {
        5
    } else {
        base.number() as u16 & 7
    };
    md(base != None) | rm
}

/// Records the last instruction (FIP/FCS/FOP) and data (FDP/FDS) pointers: every x87
/// instruction but the control ones (FNINIT, FNCLEX, FLDCW, FNSTCW, FNSTSW, FNSTENV, FLDENV,
/// FNSAVE, FRSTOR), which do not call this.
fn note(c: &mut Concrete<'_>, i: &Insn, data: Option<(SegReg, u64)>) {
    let f = &mut c.cpu.fpu;
    f.fip = i.ip();
    f.fop = fop(i);
    f.fcs = c.cpu.seg[SegReg::Cs as usize].selector;
    if let Some((s, ea)) = data {
        f.fdp = ea;
        f.fds = c.cpu.seg[s as usize].selector;
    }
}

/// Reads an x87 memory operand of `size` bytes (up to 10): (raw bits, segment, offset).
fn read_mem(c: &mut Concrete<'_>, i: &Insn, size: usize) -> Result<(u128, SegReg, u64)> {
    let seg = op::mem_seg(i);
    let ea = op::ea(c, i);
    let aw = op::addr_width(i, c.mode64());
    let v = match size {
        2 => u128::from(mem::read(c.cpu, c.bus, seg, ea, Width::W16)?),
        4 => u128::from(mem::read(c.cpu, c.bus, seg, ea, Width::W32)?),
        8 => u128::from(mem::read(c.cpu, c.bus, seg, ea, Width::W64)?),
        10 => {
            let lo = mem::read(c.cpu, c.bus, seg, ea, Width::W64)?;
            let hi = mem::read(c.cpu, c.bus, seg, ea.wrapping_add(8) & aw.mask(), Width::W16)?;
            u128::from(lo) | (u128::from(hi) << 64)
        }
        _ => return Err(Exception::UD),
    };
    Ok((v, seg, ea))
}

/// Writes an x87 memory operand, checking every byte's page before writing any.
fn write_mem(c: &mut Concrete<'_>, seg: SegReg, ea: u64, aw: Width, size: usize, v: u128) -> Result<()> {
    match size {
        2 => mem::write(c.cpu, c.bus, seg, ea, Width::W16, v as u64),
        4 => mem::write(c.cpu, c.bus, seg, ea, Width::W32, v as u64),
        8 => mem::write(c.cpu, c.bus, seg, ea, Width::W64, v as u64),
        10 => {
            let hi_ea = ea.wrapping_add(8) & aw.mask();
            let lin = mem::seg_linear(c.cpu, seg, hi_ea, 2, mem::AccessKind::Write)?;
            mem::translate(c.cpu, c.bus, lin, mem::AccessKind::Write)?;
            let lin = mem::seg_linear(c.cpu, seg, ea, 8, mem::AccessKind::Write)?;
            mem::translate(c.cpu, c.bus, lin, mem::AccessKind::Write)?;
            mem::write(c.cpu, c.bus, seg, ea, Width::W64, v as u64)?;
            mem::write(c.cpu, c.bus, seg, hi_ea, Width::W16, (v >> 64) as u64)
        }
        _ => Err(Exception::UD),
    }
}

fn mem_size(i: &Insn) -> usize {
    i.memory_size().size()
}

/// FNINIT, FNCLEX, FLDCW, FNSTCW, FNSTSW, FINCSTP, FDECSTP, FFREE(P), FNOP.
pub fn control(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use Mnemonic::*;
    let m = i.mnemonic();
    // FINIT/FCLEX/FSTCW/FSTSW are FWAIT + the no-wait form in one instruction for iced.
    let waiting = matches!(m, Fldcw | Fincstp | Fdecstp | Ffree | Ffreep | Fnop | Finit | Fclex | Fstcw | Fstsw);
    check(c, waiting)?;
    match m {
        Fninit | Finit => {
            let f = &mut c.cpu.fpu;
            f.fcw = 0x037f;
            f.fsw = 0;
            f.ftw = 0;
            f.fop = 0;
            f.fip = 0;
            f.fcs = 0;
            f.fdp = 0;
            f.fds = 0;
        }
        Fnclex | Fclex => c.cpu.fpu.fsw &= !0x80ff,
        Fldcw => {
            let (v, _, _) = read_mem(c, i, 2)?;
            c.cpu.fpu.fcw = v as u16 | 0x40;
            // Unmasking a raised flag makes it pending (ES), masking all clears ES.
            let f = &mut c.cpu.fpu;
            if f.fsw & !f.fcw & 0x3f != 0 {
                f.fsw |= fsw::ES | fsw::B;
            } else {
                f.fsw &= !(fsw::ES | fsw::B);
            }
        }
        Fnstcw | Fstcw => {
            let v = c.cpu.fpu.fcw;
            op::write(c, i, 0, Width::W16, u64::from(v))?;
        }
        Fnstsw | Fstsw => {
            let v = c.cpu.fpu.fsw;
            op::write(c, i, 0, Width::W16, u64::from(v))?;
        }
        Fincstp | Fdecstp => {
            let mut f = Fpu(&mut c.cpu.fpu);
            let t = if m == Fincstp { f.top() + 1 } else { f.top() + 7 };
            f.set_top(t);
            f.set_c1(false);
            note(c, i, None);
        }
        Ffree | Ffreep => {
            let n = st_index(i.op_register(0)).ok_or(Exception::UD)?;
            let mut f = Fpu(&mut c.cpu.fpu);
            f.free(n);
            if m == Ffreep {
                let t = f.top() + 1;
                f.set_top(t);
            }
            note(c, i, None);
        }
        _ => note(c, i, None),
    }
    crate::sem::mmx::ferr_follows_es(c);
    Ok(())
}

/// A constant's 80-bit value, adjusted for the rounding control as the hardware does: the
/// stored constants are rounded to nearest; π, log2(e), log10(2), ln(2) round down under RC
/// down/zero, log2(10) rounds up under RC up.
fn constant(m: Mnemonic, rc: u16) -> u128 {
    use Mnemonic::*;
    let down = rc == 1 || rc == 3;
    match m {
        Fld1 => 0x3fff_8000_0000_0000_0000,
        Fldz => 0,
        Fldpi => 0x4000_c90f_daa2_2168_c235 - u128::from(down),
        Fldl2e => 0x3fff_b8aa_3b29_5c17_f0bc - u128::from(down),
        Fldl2t => 0x4000_d49a_784b_cd1b_8afe + u128::from(rc == 2),
        Fldlg2 => 0x3ffd_9a20_9a84_fbcf_f799 - u128::from(down),
        Fldln2 => 0x3ffe_b172_17f7_d1cf_79ac - u128::from(down),
        _ => 0,
    }
}

/// FLD (m32/m64/m80/ST(i)), FILD, and the constants.
pub fn load(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use Mnemonic::*;
    check(c, true)?;
    let m = i.mnemonic();
    let mut data = None;
    let mut flags = 0;
    let v = if i.op_count() == 0 {
        constant(m, (c.cpu.fpu.fcw >> 10) & 3)
    } else if i.op_kind(0) == OpKind::Register {
        let n = st_index(i.op_register(0)).ok_or(Exception::UD)?;
        let f = Fpu(&mut c.cpu.fpu);
        if f.empty(n) {
            let mut f = Fpu(&mut c.cpu.fpu);
            if f.underflow() {
                f.push_checked(INDEFINITE);
            }
            note(c, i, None);
            return Ok(());
        }
        f.get(n)
    } else {
        let size = mem_size(i);
        let (raw, seg, ea) = read_mem(c, i, size)?;
        data = Some((seg, ea));
        if m == Fild {
            let bits = 8 * size as u32;
            from_int(((raw as u64) << (64 - bits)) as i64 >> (64 - bits))
        } else {
            let (v, fl) = from_mem_real(raw, size);
            flags = fl;
            if fl & fsw::IE != 0 {
                quiet(v)
            } else {
                v
            }
        }
    };
    let mut f = Fpu(&mut c.cpu.fpu);
    if flags != 0 && !f.raise(flags) {
        note(c, i, data);
        return Ok(());
    }
    f.push_checked(v);
    note(c, i, data);
    Ok(())
}

/// FST/FSTP (m32/m64/m80/ST(i)), FIST/FISTP (m16/m32/m64), FISTTP.
pub fn store(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use Mnemonic::*;
    check(c, true)?;
    let m = i.mnemonic();
    let pop = matches!(m, Fstp | Fistp | Fisttp);
    let f = Fpu(&mut c.cpu.fpu);
    let empty = f.empty(0);
    let v = f.get(0);
    if i.op_kind(0) == OpKind::Register {
        let n = st_index(i.op_register(0)).ok_or(Exception::UD)?;
        let mut f = Fpu(&mut c.cpu.fpu);
        if empty {
            if !f.underflow() {
                note(c, i, None);
                return Ok(());
            }
            f.set(n, INDEFINITE);
        } else {
            f.set_c1(false);
            f.set(n, v);
        }
        if pop {
            f.pop();
        }
        note(c, i, None);
        return Ok(());
    }
    let size = mem_size(i);
    if !matches!(size, 2 | 4 | 8 | 10) {
        return Err(Exception::UD);
    }
    let seg = op::mem_seg(i);
    let ea = op::ea(c, i);
    let aw = op::addr_width(i, c.mode64());
    let round = Fpu(&mut c.cpu.fpu).round();
    let (bits, flags, up) = if empty {
        let ind: u128 = match (m, size) {
            (Fst | Fstp, 4) => 0xffc0_0000,
            (Fst | Fstp, 8) => 0xfff8_0000_0000_0000,
            (Fst | Fstp, _) => INDEFINITE,
            (_, s) => 1u128 << (8 * s - 1),
        };
        (ind, fsw::IE | fsw::SF, false)
    } else {
        match (m, size) {
            (Fst | Fstp, 10) => (v, 0, false),
            (Fst | Fstp, s) => {
                let (b, fl, up) = to_mem_real(&Fpu(&mut c.cpu.fpu), v, s);
                (u128::from(b), fl, up)
            }
            (Fisttp, s) => {
                let (b, fl, up) = to_int(v, 8 * s, Round::TowardZero);
                (u128::from(b), fl, up)
            }
            (_, s) => {
                let (b, fl, up) = to_int(v, 8 * s, round);
                (u128::from(b), fl, up)
            }
        }
    };
    // Masked or not decides whether anything is written; the write's faults come first.
    let f = Fpu(&mut c.cpu.fpu);
    // Unmasked IE/DE/OE/UE store nothing (a re-biased result does not fit m32/m64); PE alone
    // does not stop the store.
    let store_it = f.masked(flags & !fsw::PE);
    if store_it {
        write_mem(c, seg, ea, aw, size, bits)?;
    }
    let mut f = Fpu(&mut c.cpu.fpu);
    if empty {
        f.underflow();
    } else if store_it {
        f.set_c1(up);
        if flags != 0 {
            f.raise(flags);
        }
    } else {
        // Nothing stored: no rounding happened (no PE, C1 clear).
        f.set_c1(false);
        f.raise(flags & !fsw::PE);
    }
    if pop && store_it {
        f.pop();
    }
    note(c, i, Some((seg, ea)));
    Ok(())
}

/// FXCH ST(i).
pub fn fxch(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c, true)?;
    let n = (0..i.op_count()).filter_map(|k| st_index(i.op_register(k))).max().unwrap_or(1);
    let mut f = Fpu(&mut c.cpu.fpu);
    let (e0, en) = (f.empty(0), f.empty(n));
    if e0 || en {
        if !f.underflow() {
            note(c, i, None);
            return Ok(());
        }
        let a = if e0 { INDEFINITE } else { f.get(0) };
        let b = if en { INDEFINITE } else { f.get(n) };
        f.set(0, b);
        f.set(n, a);
    } else {
        let (a, b) = (f.get(0), f.get(n));
        f.set(0, b);
        f.set(n, a);
        f.set_c1(false);
    }
    note(c, i, None);
    Ok(())
}

/// FCMOVcc ST(0), ST(i).
pub fn fcmov(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use Mnemonic::*;
    check(c, true)?;
    let n = st_index(i.op_register(1)).ok_or(Exception::UD)?;
    let fl = c.get_rflags();
    let (cf, zf, pf) = (fl & 1 != 0, fl & 0x40 != 0, fl & 4 != 0);
    let cond = match i.mnemonic() {
        Fcmovb => cf,
        Fcmove => zf,
        Fcmovbe => cf || zf,
        Fcmovu => pf,
        Fcmovnb => !cf,
        Fcmovne => !zf,
        Fcmovnbe => !cf && !zf,
        _ => !pf,
    };
    let mut f = Fpu(&mut c.cpu.fpu);
    if f.empty(0) || f.empty(n) {
        if f.underflow() {
            f.set(0, INDEFINITE);
        }
    } else {
        f.set_c1(false);
        if cond {
            let v = f.get(n);
            f.set(0, v);
        }
    }
    note(c, i, None);
    Ok(())
}

/// FCHS and FABS.
pub fn sign_op(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c, true)?;
    let mut f = Fpu(&mut c.cpu.fpu);
    if f.empty(0) {
        if f.underflow() {
            f.set(0, INDEFINITE);
        }
    } else {
        let v = f.get(0);
        let r = if i.mnemonic() == Mnemonic::Fchs { v ^ (1 << 79) } else { v & !(1 << 79) };
        f.set(0, r);
        f.set_c1(false);
    }
    note(c, i, None);
    Ok(())
}

/// The two-operand arithmetic: every form of FADD/FSUB/FSUBR/FMUL/FDIV/FDIVR.
pub fn binary(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use Mnemonic::*;
    check(c, true)?;
    let m = i.mnemonic();
    let (op, reverse) = match m {
        Fadd | Faddp | Fiadd => (Arith::Add, false),
        Fsub | Fsubp | Fisub => (Arith::Sub, false),
        Fsubr | Fsubrp | Fisubr => (Arith::Sub, true),
        Fmul | Fmulp | Fimul => (Arith::Mul, false),
        Fdiv | Fdivp | Fidiv => (Arith::Div, false),
        _ => (Arith::Div, true),
    };
    let pop = matches!(m, Faddp | Fsubp | Fsubrp | Fmulp | Fdivp | Fdivrp);
    // dst and src as ST indexes, or a memory source.
    let mut data = None;
    let (dst, src_val, src_empty, flags) = if i.op_count() > 0 && i.op_kind(0) == OpKind::Memory {
        let size = mem_size(i);
        let (raw, seg, ea) = read_mem(c, i, size)?;
        data = Some((seg, ea));
        let (v, fl) = if matches!(m, Fiadd | Fisub | Fisubr | Fimul | Fidiv | Fidivr) {
            let bits = 8 * size as u32;
            (from_int(((raw as u64) << (64 - bits)) as i64 >> (64 - bits)), 0)
        } else {
            from_mem_real(raw, size)
        };
        (0, v, false, fl)
    } else {
        let regs: Vec<usize> = (0..i.op_count()).filter_map(|k| st_index(i.op_register(k))).collect();
        let (d, s) = match regs.as_slice() {
            [d, s] => (*d, *s),
            [s] => (0, *s),
            _ => (1, 0),
        };
        let f = Fpu(&mut c.cpu.fpu);
        (d, f.get(s), f.empty(s), 0)
    };
    let mut f = Fpu(&mut c.cpu.fpu);
    let dst_val = f.get(dst);
    if f.empty(dst) || src_empty {
        if f.underflow() {
            f.set(dst, INDEFINITE);
            if pop {
                f.pop();
            }
        }
        note(c, i, data);
        return Ok(());
    }
    // A signaling NaN loaded from m32/m64 was quieted with IE already.
    let (a, b) = if reverse { (src_val, dst_val) } else { (dst_val, src_val) };
    f.set_c1(false);
    if let Some(r) = arith(&mut f, op, a, b, flags & fsw::DE != 0) {
        f.set(dst, r);
        if pop {
            f.pop();
        }
    }
    note(c, i, data);
    Ok(())
}

/// ST(0) and its class for an operation that replaces it, or the response when there is
/// nothing to compute (`Err`: the value to store, None when nothing is): an empty register is
/// a stack underflow (masked: the indefinite), an unsupported operand IE (the indefinite), a
/// NaN comes back quieted (IE for a signaling one). C1 is cleared.
fn st0_operand(f: &mut Fpu<'_>) -> std::result::Result<(u128, Class), Option<u128>> {
    if f.empty(0) {
        return Err(f.underflow().then_some(INDEFINITE));
    }
    f.set_c1(false);
    let v = f.get(0);
    match classify(v) {
        Class::Unsupported => Err(f.raise(fsw::IE).then_some(INDEFINITE)),
        Class::QNan => Err(Some(quiet(v))),
        Class::SNan => Err(f.raise(fsw::IE).then_some(quiet(v))),
        cl => Ok((v, cl)),
    }
}

/// FSQRT and FRNDINT on ST(0).
pub fn unary(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c, true)?;
    let mut f = Fpu(&mut c.cpu.fpu);
    let (v, cl) = match st0_operand(&mut f) {
        Ok(x) => x,
        Err(r) => {
            if let Some(r) = r {
                f.set(0, r);
            }
            note(c, i, None);
            return Ok(());
        }
    };
    let r = match cl {
        Class::Zero => Some(v),
        Class::Inf if i.mnemonic() == Mnemonic::Frndint || !sign_of(v) => Some(v),
        _ if i.mnemonic() == Mnemonic::Fsqrt && sign_of(v) => f.raise(fsw::IE).then_some(INDEFINITE),
        _ => {
            if cl == Class::Denormal && !f.raise(fsw::DE) {
                None
            } else if i.mnemonic() == Mnemonic::Frndint {
                let r = to_x87(v).round_to_integral(f.round());
                let inexact = r.status.contains(Status::INEXACT);
                f.set_c1(inexact && r.value.abs() > to_x87(v).abs());
                if inexact {
                    // PE unmasked still stores the result.
                    f.raise(fsw::PE);
                }
                Some(canon(r.value.to_bits()))
            } else {
                let (w, inexact) = sticky(sqrt_wide(v));
                Some(deliver(&mut f, w, inexact, true))
            }
        }
    };
    if let Some(r) = r {
        f.set(0, r);
    }
    note(c, i, None);
    Ok(())
}

/// √v (v positive, finite, nonzero) truncated to the wide format with the inexact status.
fn sqrt_wide(v: u128) -> StatusAnd<Wide> {
    let exp = ((v >> 64) as i32 & 0x7fff).max(1) - 16383 - 63;
    let mut sig = v as u64 as u128;
    let mut e = exp;
    // Normalise the significand to bit 63 (denormals).
    let lz = (sig as u64).leading_zeros();
    sig <<= lz;
    e -= lz as i32;
    // value = sig * 2^e: scale to a 127-128-bit radicand with an even exponent, take the
    // 64-bit root and its remainder, then three more root bits digit by digit (67 in all).
    let k = if (e - 63) & 1 == 0 { 63 } else { 64 };
    let rad = sig << k;
    let mut r = isqrt(rad);
    let mut rem = rad - r * r;
    for _ in 0..3 {
        rem *= 4;
        r *= 2;
        if rem > 2 * r {
            rem -= 2 * r + 1;
            r += 1;
        }
    }
    let inexact = rem != 0;
    let w = Wide::from_u128(r).value.scalbn((e - k) / 2 - 3);
    // r has 67 bits, exactly representable; it is truncated, so the wide value is too.
    let mut st = Status::OK;
    if inexact {
        st |= Status::INEXACT;
    }
    StatusAnd { status: st, value: w }
}

/// ⌊√n⌋.
fn isqrt(n: u128) -> u128 {
    if n == 0 {
        return 0;
    }
    let mut x = 1u128 << (128 - n.leading_zeros()).div_ceil(2);
    loop {
        let y = (x + n / x) / 2;
        if y >= x {
            return x;
        }
        x = y;
    }
}

/// The compares: FCOM/FCOMP/FCOMPP, FUCOM/FUCOMP/FUCOMPP, FICOM/FICOMP, FTST, FCOMI/FCOMIP,
/// FUCOMI/FUCOMIP.
pub fn compare(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use Mnemonic::*;
    check(c, true)?;
    let m = i.mnemonic();
    let pops = match m {
        Fcomp | Fucomp | Ficomp | Fcomip | Fucomip => 1,
        Fcompp | Fucompp => 2,
        _ => 0,
    };
    let unordered_ok = matches!(m, Fucom | Fucomp | Fucompp | Fucomi | Fucomip);
    let mut data = None;
    let (b, b_empty, mut flags) = if m == Ftst {
        (0u128, false, 0)
    } else if i.op_count() > 0 && i.op_kind(i.op_count() - 1) == OpKind::Memory {
        let size = mem_size(i);
        let (raw, seg, ea) = read_mem(c, i, size)?;
        data = Some((seg, ea));
        if matches!(m, Ficom | Ficomp) {
            let bits = 8 * size as u32;
            (from_int(((raw as u64) << (64 - bits)) as i64 >> (64 - bits)), false, 0)
        } else {
            let (v, fl) = from_mem_real(raw, size);
            // The NaN rule below raises IE for SNaNs itself.
            (v, false, fl & !fsw::IE)
        }
    } else {
        let n = (0..i.op_count()).filter_map(|k| st_index(i.op_register(k))).max().unwrap_or(1);
        let f = Fpu(&mut c.cpu.fpu);
        (f.get(n), f.empty(n), 0)
    };
    let mut f = Fpu(&mut c.cpu.fpu);
    let a = f.get(0);
    let comi = matches!(m, Fcomi | Fcomip | Fucomi | Fucomip);
    // (C3, C2, C0) or (ZF, PF, CF).
    let mut no_pop = false;
    let res: Option<(bool, bool, bool)> = if f.empty(0) || b_empty {
        f.underflow().then_some((true, true, true))
    } else {
        let (ca, cb) = (classify(a), classify(b));
        if ca == Class::Denormal || cb == Class::Denormal {
            flags |= fsw::DE;
        }
        if is_nan_class(ca) || is_nan_class(cb) || ca == Class::Unsupported || cb == Class::Unsupported {
            let snan = ca == Class::SNan || cb == Class::SNan || ca == Class::Unsupported || cb == Class::Unsupported;
            let ie = if snan || !unordered_ok { fsw::IE } else { 0 };
            // Unordered, even with IE unmasked (then nothing is popped).
            if !f.raise(ie) {
                no_pop = true;
            }
            Some((true, true, true))
        } else {
            // An unmasked denormal still sets the condition codes (the host does), but
            // nothing is popped.
            if flags != 0 && !f.raise(flags) {
                no_pop = true;
            }
            let (x, y) = (to_x87(a), to_x87(b));
            Some(match x.partial_cmp(&y) {
                Some(std::cmp::Ordering::Greater) => (false, false, false),
                Some(std::cmp::Ordering::Less) => (false, false, true),
                _ => (true, false, false),
            })
        }
    };
    let f = Fpu(&mut c.cpu.fpu);
    let unmasked = f.0.fsw & fsw::ES != 0 && res.is_none();
    let mut f = f;
    if let Some((z, p, cf)) = res {
        if comi {
            let v = u64::from(z) << 6 | u64::from(p) << 2 | u64::from(cf);
            f.set_c1(false);
            c.set_rflags(0x8d5, v);
        } else {
            let w = &mut f.0.fsw;
            *w &= !(fsw::C0 | fsw::C1 | fsw::C2 | fsw::C3);
            *w |= if z { fsw::C3 } else { 0 } | if p { fsw::C2 } else { 0 } | if cf { fsw::C0 } else { 0 };
        }
    }
    if !unmasked && !no_pop {
        let mut f = Fpu(&mut c.cpu.fpu);
        for _ in 0..pops {
            f.pop();
        }
    }
    note(c, i, data);
    Ok(())
}

/// FXAM: classifies ST(0) into C3, C2, C0 with its sign in C1.
pub fn fxam(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c, true)?;
    let f = Fpu(&mut c.cpu.fpu);
    let v = f.get(0);
    let (c3, c2, c0) = if f.empty(0) {
        (true, false, true)
    } else {
        match classify(v) {
            Class::Unsupported => (false, false, false),
            Class::QNan | Class::SNan => (false, false, true),
            Class::Normal => (false, true, false),
            Class::Inf => (false, true, true),
            Class::Zero => (true, false, false),
            Class::Denormal => (true, true, false),
        }
    };
    let w = &mut c.cpu.fpu.fsw;
    *w &= !(fsw::C0 | fsw::C1 | fsw::C2 | fsw::C3);
    *w |= if c3 { fsw::C3 } else { 0 }
        | if c2 { fsw::C2 } else { 0 }
        | if c0 { fsw::C0 } else { 0 }
        | if sign_of(v) { fsw::C1 } else { 0 };
    note(c, i, None);
    Ok(())
}

/// A finite nonzero 80-bit value as (sign, 64-bit significand, unbiased exponent of the
/// significand's lowest bit).
fn unpack(v: u128) -> (bool, u64, i32) {
    let exp = ((v >> 64) as i32 & 0x7fff).max(1);
    (sign_of(v), v as u64, exp - 16383 - 63)
}

/// FPREM, FPREM1 (ST(0) = remainder of ST(0) / ST(1), quotient bits in C0/C3/C1, C2 for a
/// partial remainder) and FSCALE (ST(0) · 2^trunc(ST(1))).
pub fn two_st(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c, true)?;
    let m = i.mnemonic();
    let mut f = Fpu(&mut c.cpu.fpu);
    if f.empty(0) || f.empty(1) {
        if f.underflow() {
            f.set(0, INDEFINITE);
        }
        note(c, i, None);
        return Ok(());
    }
    let (a, b) = (f.get(0), f.get(1));
    let (ca, cb) = (classify(a), classify(b));
    f.set_c1(false);
    let r = if ca == Class::Unsupported || cb == Class::Unsupported {
        f.raise(fsw::IE).then_some(INDEFINITE)
    } else if is_nan_class(ca) || is_nan_class(cb) {
        let (r, ie) = nan_result(a, b);
        f.raise(ie).then_some(r)
    } else if m == Mnemonic::Fscale {
        fscale(&mut f, a, b, ca, cb)
    } else {
        fprem(&mut f, a, b, ca, cb, m == Mnemonic::Fprem1).and_then(|r| tiny_remainder(&mut f, r))
    };
    if let Some(r) = r {
        f.set(0, r);
    }
    note(c, i, None);
    Ok(())
}

fn fscale(f: &mut Fpu<'_>, a: u128, b: u128, ca: Class, cb: Class) -> Option<u128> {
    match (ca, cb) {
        (Class::Zero, Class::Inf) if !sign_of(b) => return f.raise(fsw::IE).then_some(INDEFINITE),
        (Class::Inf, Class::Inf) if sign_of(b) => return f.raise(fsw::IE).then_some(INDEFINITE),
        _ => {}
    }
    if (ca == Class::Denormal || cb == Class::Denormal) && !f.raise(fsw::DE) {
        return None;
    }
    match (ca, cb) {
        (Class::Zero | Class::Inf, _) => return Some(canon(a)),
        (_, Class::Inf) if sign_of(b) => return Some(a & (1 << 79)),
        (_, Class::Inf) => return Some((a & (1 << 79)) | 0x7fff_8000_0000_0000_0000),
        _ => {}
    }
    let n = to_x87(b).round_to_integral(Round::TowardZero).value;
    let mut exact = false;
    let n = n.to_i128_r(64, Round::TowardZero, &mut exact).value.clamp(-70000, 70000) as i32;
    let (sign, m, e) = unpack(a);
    // Exact in Q's range; the precision control applies to the basic operations and FSQRT
    // only.
    let v = Q::from_u128(u128::from(m)).value.scalbn(e + n);
    Some(deliver(f, if sign { -v } else { v }, false, false))
}

fn fprem(f: &mut Fpu<'_>, a: u128, b: u128, ca: Class, cb: Class, ieee: bool) -> Option<u128> {
    if ca == Class::Inf || cb == Class::Zero {
        return f.raise(fsw::IE).then_some(INDEFINITE);
    }
    if (ca == Class::Denormal || cb == Class::Denormal) && !f.raise(fsw::DE) {
        return None;
    }
    let set_q = |f: &mut Fpu<'_>, q: u64, partial: bool| {
        let w = &mut f.0.fsw;
        *w &= !(fsw::C0 | fsw::C1 | fsw::C2 | fsw::C3);
        if partial {
            *w |= fsw::C2;
        } else {
            *w |= if q & 4 != 0 { fsw::C0 } else { 0 }
                | if q & 2 != 0 { fsw::C3 } else { 0 }
                | if q & 1 != 0 { fsw::C1 } else { 0 };
        }
    };
    if ca == Class::Zero || cb == Class::Inf {
        set_q(f, 0, false);
        return Some(canon(a));
    }
    let (sa, ma, ea) = unpack(a);
    let (_, mb, eb) = unpack(b);
    // Normalise both significands (denormals).
    let (la, lb) = (ma.leading_zeros() as i32, mb.leading_zeros() as i32);
    let (ma, ea) = (u128::from(ma) << la, ea - la);
    let (mb, eb) = (u128::from(mb) << lb, eb - lb);
    let d = ea - eb;
    if d >= 64 {
        // Partial remainder: reduce by 2^(d-n) · ST(1) · QQ with n = 32 + (d - 64) % 32.
        let n = 32 + (d - 64) % 32;
        let shift = (d - n) as u32;
        // QQ = trunc(a / b / 2^(d-n)) and a - QQ·b·2^(d-n), in units of 2^(eb+shift).
        let num = ma << n;
        let qq = num / mb;
        let r = num - qq * mb;
        set_q(f, 0, true);
        return Some(pack_rem(sa, r, eb + shift as i32));
    }
    if d < -1 || (d == -1 && !ieee) {
        set_q(f, 0, false);
        return Some(canon(a));
    }
    let (num, den) = if d >= 0 { (ma << d, mb) } else { (ma, mb << 1) };
    let mut q = num / den;
    let mut r = num - q * den;
    let mut neg = false;
    if ieee && (2 * r > den || (2 * r == den && q & 1 != 0)) {
        q += 1;
        r = den - r;
        neg = true;
    }
    set_q(f, q as u64, false);
    let e = if d >= 0 { eb } else { eb - 1 };
    Some(pack_rem(sa != neg, r, e))
}

/// A denormal remainder is exact: no flag with UE masked; unmasked, UE and the value with
/// its exponent re-biased, as `deliver` gives them (C1 keeps its quotient bit).
fn tiny_remainder(f: &mut Fpu<'_>, r: u128) -> Option<u128> {
    if classify(r) != Class::Denormal {
        return Some(r);
    }
    let c1 = f.0.fsw & fsw::C1;
    let mut lost = false;
    let bits = deliver(f, to_x87(r).convert(&mut lost).value, false, false);
    f.0.fsw = (f.0.fsw & !fsw::C1) | c1;
    Some(bits)
}

/// An exact remainder `±r · 2^e` (r < 2^64; zero keeps the dividend's sign). Remainders are
/// exact: no rounding, the precision control does not apply.
fn pack_rem(sign: bool, r: u128, e: i32) -> u128 {
    if r == 0 {
        return if sign { 1 << 79 } else { 0 };
    }
    let v = X87::from_u128(r).value.scalbn(e);
    (if sign { -v } else { v }).to_bits()
}

/// FXTRACT: ST(0) is replaced by its unbiased exponent and the significand (exponent 0,
/// same sign) is pushed: ST(1) = exponent, ST(0) = significand.
pub fn fxtract(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c, true)?;
    let mut f = Fpu(&mut c.cpu.fpu);
    if f.empty(0) {
        if f.underflow() {
            f.set(0, INDEFINITE);
            f.push(INDEFINITE);
        }
        note(c, i, None);
        return Ok(());
    }
    if !f.empty(7) {
        if f.overflow() {
            f.set(0, INDEFINITE);
            f.push(INDEFINITE);
        }
        note(c, i, None);
        return Ok(());
    }
    f.set_c1(false);
    let v = f.get(0);
    let cl = classify(v);
    let res = match cl {
        Class::Unsupported => f.raise(fsw::IE).then_some((INDEFINITE, INDEFINITE)),
        Class::QNan | Class::SNan => {
            let ie = if cl == Class::SNan { fsw::IE } else { 0 };
            f.raise(ie).then_some((quiet(v), quiet(v)))
        }
        Class::Zero => f.raise(fsw::ZE).then_some((0xffff_8000_0000_0000_0000, v)),
        Class::Inf => Some((0x7fff_8000_0000_0000_0000, v)),
        _ => {
            if cl == Class::Denormal && !f.raise(fsw::DE) {
                None
            } else {
                let (sign, m, e) = unpack(v);
                let lz = m.leading_zeros() as i32;
                let exp = e + 63 - lz;
                let sig = (u128::from(sign) << 79) | (0x3fff << 64) | u128::from(m << lz);
                Some((from_int(i64::from(exp)), sig))
            }
        }
    };
    if let Some((e, s)) = res {
        f.set(0, e);
        f.push(s);
    }
    note(c, i, None);
    Ok(())
}

/// FBLD m80bcd: 18 packed BCD digits and a sign byte.
pub fn fbld(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c, true)?;
    let (raw, seg, ea) = read_mem(c, i, 10)?;
    let digits = (0..18).rev().fold(0u64, |acc, k| acc * 10 + ((raw >> (4 * k)) & 0xf) as u64);
    let mut v = from_int(digits as i64);
    if raw >> 79 & 1 != 0 {
        v |= 1 << 79;
    }
    Fpu(&mut c.cpu.fpu).push_checked(v);
    note(c, i, Some((seg, ea)));
    Ok(())
}

/// FBSTP m80bcd: ST(0) rounded to an integer, stored as packed BCD, and popped. Out of range
/// (|x| ≥ 10^18), NaN, ∞: IE and the BCD indefinite.
pub fn fbstp(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c, true)?;
    let seg = op::mem_seg(i);
    let ea = op::ea(c, i);
    let aw = op::addr_width(i, c.mode64());
    let f = Fpu(&mut c.cpu.fpu);
    let empty = f.empty(0);
    let v = f.get(0);
    let round = f.round();
    const BCD_INDEFINITE: u128 = 0xffff_c000_0000_0000_0000;
    let (bits, flags, up) = if empty {
        (BCD_INDEFINITE, fsw::IE | fsw::SF, false)
    } else {
        let (n, fl, up) = to_int(v, 64, round);
        let mag = (n as i64).unsigned_abs();
        if fl & fsw::IE != 0 || mag >= 1_000_000_000_000_000_000 {
            (BCD_INDEFINITE, fsw::IE, false)
        } else {
            let mut bcd = 0u128;
            let mut x = mag;
            for k in 0..18 {
                bcd |= u128::from(x % 10) << (4 * k);
                x /= 10;
            }
            if sign_of(v) {
                bcd |= 1 << 79;
            }
            (bcd, fl, up)
        }
    };
    let store_it = flags & fsw::IE == 0 || Fpu(&mut c.cpu.fpu).masked(fsw::IE);
    if store_it {
        write_mem(c, seg, ea, aw, 10, bits)?;
    }
    let mut f = Fpu(&mut c.cpu.fpu);
    if empty {
        f.underflow();
    } else {
        f.set_c1(up);
        if flags != 0 {
            f.raise(flags);
        }
    }
    if store_it {
        f.pop();
    }
    note(c, i, Some((seg, ea)));
    Ok(())
}

fn q_of(v: u128) -> Q {
    let mut lost = false;
    to_x87(v).convert(&mut lost).value
}

fn q_int(n: i64) -> Q {
    Q::from_i128(i128::from(n)).value
}

/// atanh(z) = z + z³/3 + z⁵/5 + ... for |z| ≤ 1/3, in 113-bit arithmetic.
fn atanh_q(z: Q) -> Q {
    let z2 = (z * z).value;
    let mut term = z;
    let mut sum = z;
    for k in 1..48 {
        term = (term * z2).value;
        sum = (sum + (term / q_int(2 * k + 1)).value).value;
    }
    sum
}

/// ln 2 = 2·atanh(1/3).
fn ln2_q() -> Q {
    (q_int(2) * atanh_q((q_int(1) / q_int(3)).value)).value
}

/// e^y - 1 for |y| ≤ 1 by its series.
fn expm1_q(y: Q) -> Q {
    let mut term = y;
    let mut sum = y;
    for k in 2..45 {
        term = ((term * y).value / q_int(k)).value;
        sum = (sum + term).value;
    }
    sum
}

/// log2(x) for a finite positive x (80-bit): e + 2·atanh((m-1)/(m+1))/ln 2 with m in
/// [√½, √2) (exact for powers of two).
fn log2_q(v: u128) -> Q {
    let (_, m, e) = unpack(v);
    let lz = m.leading_zeros() as i32;
    let m = m << lz;
    let mut e = i64::from(e - lz + 63);
    // m as a Quad in [1, 2).
    let mut mq = Q::from_u128(u128::from(m)).value.scalbn(-63);
    if m > 0xb504_f333_f9de_6484 {
        mq = (mq / q_int(2)).value;
        e += 1;
    }
    let z = ((mq - q_int(1)).value / (mq + q_int(1)).value).value;
    let frac = ((q_int(2) * atanh_q(z)).value / ln2_q()).value;
    (q_int(e) + frac).value
}

/// A transcendental's 113-bit result (inexact: a series), rounded by the rounding control
/// alone.
fn deliver_q(f: &mut Fpu<'_>, q: Q, inexact: bool) -> u128 {
    deliver(f, q, inexact, false)
}

/// F2XM1: ST(0) = 2^ST(0) - 1 (for -1 ≤ ST(0) ≤ 1).
pub fn f2xm1(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c, true)?;
    let mut f = Fpu(&mut c.cpu.fpu);
    let r = match st0_operand(&mut f) {
        Err(r) => r,
        Ok((v, cl)) => f2xm1_of(&mut f, v, cl),
    };
    if let Some(r) = r {
        f.set(0, r);
    }
    note(c, i, None);
    Ok(())
}

fn f2xm1_of(f: &mut Fpu<'_>, v: u128, cl: Class) -> Option<u128> {
    match cl {
        Class::Zero => Some(v),
        Class::Inf if sign_of(v) => Some(0xbfff_8000_0000_0000_0000),
        Class::Inf => Some(v),
        _ => {
            if cl == Class::Denormal && !f.raise(fsw::DE) {
                None
            } else {
                Some(deliver_q(f, expm1_q((q_of(v) * ln2_q()).value), true))
            }
        }
    }
}

/// FYL2X: ST(1) = ST(1)·log2(ST(0)), FYL2XP1: ST(1) = ST(1)·log2(ST(0) + 1); then pop.
pub fn fyl2x(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c, true)?;
    let p1 = i.mnemonic() == Mnemonic::Fyl2xp1;
    let mut f = Fpu(&mut c.cpu.fpu);
    if f.empty(0) || f.empty(1) {
        if f.underflow() {
            f.set(1, INDEFINITE);
            f.pop();
        }
        note(c, i, None);
        return Ok(());
    }
    f.set_c1(false);
    let (x, y) = (f.get(0), f.get(1));
    let (cx, cy) = (classify(x), classify(y));
    let inf = |neg: bool| 0x7fff_8000_0000_0000_0000u128 | if neg { 1 << 79 } else { 0 };
    let r = if cx == Class::Unsupported || cy == Class::Unsupported {
        f.raise(fsw::IE).then_some(INDEFINITE)
    } else if is_nan_class(cx) || is_nan_class(cy) {
        let (r, ie) = nan_result(x, y);
        f.raise(ie).then_some(r)
    } else if p1 {
        // log2(1 + x): x = ±0 gives y·x's zero; the rest by the series (|x| < 1 - √½).
        if cx == Class::Inf || cy == Class::Inf {
            f.raise(fsw::IE).then_some(INDEFINITE)
        } else if (cx == Class::Denormal || cy == Class::Denormal) && !f.raise(fsw::DE) {
            None
        } else if cx == Class::Zero || cy == Class::Zero {
            Some(if sign_of(x) != sign_of(y) { 1 << 79 } else { 0 })
        } else {
            let xq = q_of(x);
            let l = ((q_int(2) * atanh_q((xq / (q_int(2) + xq).value).value)).value / ln2_q()).value;
            let p = q_of(y).mul_r(l, f.round()).value;
            Some(deliver_q(&mut f, p, true))
        }
    } else {
        let x_neg = sign_of(x) && cx != Class::Zero;
        let one = x == 0x3fff_8000_0000_0000_0000;
        let below_one = !one && (cx == Class::Zero || (cx != Class::Inf && (x >> 64) & 0x7fff < 0x3fff));
        match (cx, cy) {
            _ if x_neg => f.raise(fsw::IE).then_some(INDEFINITE),
            (Class::Zero, Class::Zero) | (Class::Inf, Class::Zero) => f.raise(fsw::IE).then_some(INDEFINITE),
            (_, Class::Inf) if one => f.raise(fsw::IE).then_some(INDEFINITE),
            (_, Class::Inf) => Some(inf(sign_of(y) == below_one)),
            // Zero divide ranks before the denormal operand.
            (Class::Zero, _) => f.raise(fsw::ZE).then_some(inf(!sign_of(y))),
            (Class::Inf, _) => Some(inf(sign_of(y))),
            _ => {
                if (cx == Class::Denormal || cy == Class::Denormal) && !f.raise(fsw::DE) {
                    None
                } else if cy == Class::Zero {
                    Some(if sign_of(y) != below_one { 1 << 79 } else { 0 })
                } else {
                    let l = log2_q(x);
                    let p = q_of(y).mul_r(l, f.round());
                    let exact = x & ((1 << 63) - 1) == 0 && !p.status.contains(Status::INEXACT);
                    Some(deliver_q(&mut f, p.value, !exact))
                }
            }
        }
    };
    if let Some(r) = r {
        f.set(1, r);
        f.pop();
    }
    note(c, i, None);
    Ok(())
}

/// sin(r) and cos(r) for |r| ≤ π/4 by their series.
fn sin_cos_q(r: Q) -> (Q, Q) {
    let r2 = (r * r).value;
    let (mut st, mut s) = (r, r);
    let (mut ct, mut c) = (q_int(1), q_int(1));
    for k in 1..30 {
        st = ((-(st * r2).value) / q_int((2 * k) * (2 * k + 1))).value;
        s = (s + st).value;
        ct = ((-(ct * r2).value) / q_int((2 * k - 1) * (2 * k))).value;
        c = (c + ct).value;
    }
    (s, c)
}

/// x reduced by the x87's own 66-bit π/2 (as the hardware does, so large arguments come out
/// as the host's): (r, quadrant) with |r| ≤ π/4 (about). |x| < 2^63.
fn reduce_q(x: Q) -> (Q, u64) {
    // π/2 = 0xC90FDAA22168C234C · 2^-67 (the 66-bit approximation of FPREM's reduction).
    let half_pi = Q::from_u128(0xc_90fd_aa22_168c_234c).value.scalbn(-67);
    let mut r = x;
    let mut quad = 0u64;
    for _ in 0..4 {
        let e = r.ilogb();
        let s = (e - 40).max(0);
        let unit = half_pi.scalbn(s);
        let k = if s == 0 {
            (r / unit).value.round_to_integral(Round::NearestTiesToEven).value
        } else {
            (r / unit).value.round_to_integral(Round::TowardZero).value
        };
        let mut exact = false;
        let ki = k.to_i128_r(64, Round::TowardZero, &mut exact).value;
        if s <= 1 {
            quad = quad.wrapping_add((ki << s) as u64);
        }
        r = (r - (k * unit).value).value;
        if s == 0 {
            break;
        }
    }
    (r, quad & 3)
}

/// FSIN, FCOS, FSINCOS, FPTAN: |ST(0)| ≥ 2^63 sets C2 and leaves it alone.
pub fn trig(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use Mnemonic::*;
    check(c, true)?;
    let m = i.mnemonic();
    let pushes = matches!(m, Fsincos | Fptan);
    let mut f = Fpu(&mut c.cpu.fpu);
    if f.empty(0) || (pushes && !f.empty(7)) {
        let masked = if f.empty(0) { f.underflow() } else { f.overflow() };
        if masked {
            f.set(0, INDEFINITE);
            if pushes {
                f.push(INDEFINITE);
            }
        }
        note(c, i, None);
        return Ok(());
    }
    f.0.fsw &= !(fsw::C1 | fsw::C2);
    let v = f.get(0);
    let cl = classify(v);
    // (ST(0), pushed) results.
    let res: Option<(u128, Option<u128>)> = match cl {
        Class::Unsupported | Class::Inf => f.raise(fsw::IE).then_some((INDEFINITE, pushes.then_some(INDEFINITE))),
        Class::QNan | Class::SNan => {
            let ie = if cl == Class::SNan { fsw::IE } else { 0 };
            f.raise(ie).then_some((quiet(v), pushes.then_some(quiet(v))))
        }
        _ if (v >> 64) & 0x7fff >= 0x3fff + 63 => {
            f.0.fsw |= fsw::C2;
            note(c, i, None);
            return Ok(());
        }
        _ => {
            if cl == Class::Denormal && !f.raise(fsw::DE) {
                None
            } else if cl == Class::Zero {
                let one = 0x3fff_8000_0000_0000_0000;
                Some(match m {
                    Fsin => (v, None),
                    Fcos => (one, None),
                    Fsincos => (one, Some(v)),
                    _ => (v, Some(one)),
                })
            } else {
                let (r, q) = reduce_q(q_of(v));
                let (s0, c0) = sin_cos_q(r);
                let (sin, cos) = match q {
                    0 => (s0, c0),
                    1 => (c0, -s0),
                    2 => (-s0, -c0),
                    _ => (-c0, s0),
                };
                Some(match m {
                    Fsin => (deliver_q(&mut f, sin, true), None),
                    Fcos => (deliver_q(&mut f, cos, true), None),
                    Fsincos => {
                        let sv = deliver_q(&mut f, sin, true);
                        (sv, Some(deliver_q(&mut f, cos, true)))
                    }
                    _ => {
                        let t = deliver_q(&mut f, (sin / cos).value, true);
                        (t, Some(0x3fff_8000_0000_0000_0000))
                    }
                })
            }
        }
    };
    if let Some((a, b)) = res {
        f.set(0, a);
        if let Some(b) = b {
            f.push(b);
        }
    }
    note(c, i, None);
    Ok(())
}

/// atan(u) for |u| ≤ 1/8 by its series.
fn atan_small_q(u: Q) -> Q {
    let u2 = (u * u).value;
    let (mut t, mut s) = (u, u);
    for k in 1..32 {
        t = -(t * u2).value;
        s = (s + (t / q_int(2 * k + 1)).value).value;
    }
    s
}

/// atan(t) for 0 ≤ t ≤ 1: atan(k/8) (a sum of small arctangents) + atan((t - k/8)/(1 + t·k/8)).
fn atan_unit_q(t: Q) -> Q {
    let k = (t * q_int(8)).value.round_to_integral(Round::NearestTiesToEven).value;
    let mut exact = false;
    let kn = k.to_i128_r(8, Round::TowardZero, &mut exact).value as i64;
    let mut sum = q_int(0);
    for j in 1..=kn {
        sum = (sum + atan_small_q((q_int(8) / q_int(64 + j * (j - 1))).value)).value;
    }
    let c = (k / q_int(8)).value;
    let u = ((t - c).value / (q_int(1) + (t * c).value).value).value;
    (sum + atan_small_q(u)).value
}

/// π in 113-bit arithmetic.
fn pi_q() -> Q {
    (q_int(4) * atan_unit_q(q_int(1))).value
}

/// FPATAN: ST(1) = atan2(ST(1), ST(0)), then pop.
pub fn fpatan(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c, true)?;
    let mut f = Fpu(&mut c.cpu.fpu);
    if f.empty(0) || f.empty(1) {
        if f.underflow() {
            f.set(1, INDEFINITE);
            f.pop();
        }
        note(c, i, None);
        return Ok(());
    }
    f.set_c1(false);
    let (x, y) = (f.get(0), f.get(1));
    let (cx, cy) = (classify(x), classify(y));
    let r = if cx == Class::Unsupported || cy == Class::Unsupported {
        f.raise(fsw::IE).then_some(INDEFINITE)
    } else if is_nan_class(cx) || is_nan_class(cy) {
        let (r, ie) = nan_result(x, y);
        f.raise(ie).then_some(r)
    } else if (cx == Class::Denormal || cy == Class::Denormal) && !f.raise(fsw::DE) {
        None
    } else {
        let (sx, sy) = (sign_of(x), sign_of(y));
        let pi = pi_q();
        let half = (pi / q_int(2)).value;
        let signed = |q: Q| if sy { -q } else { q };
        let mag: Option<Q> = match (cx, cy) {
            (_, Class::Zero) if !sx => None,
            (_, Class::Zero) => Some(pi),
            (Class::Zero, _) => Some(half),
            (Class::Inf, Class::Inf) => {
                let quarter = (pi / q_int(4)).value;
                Some(if sx { (quarter * q_int(3)).value } else { quarter })
            }
            (_, Class::Inf) => Some(half),
            (Class::Inf, _) if !sx => None,
            (Class::Inf, _) => Some(pi),
            _ => {
                let (ax, ay) = (q_of(x).abs(), q_of(y).abs());
                let a =
                    if ay <= ax { atan_unit_q((ay / ax).value) } else { (half - atan_unit_q((ax / ay).value)).value };
                Some(if sx { (pi - a).value } else { a })
            }
        };
        Some(match mag {
            None => {
                if sy {
                    1 << 79
                } else {
                    0
                }
            }
            Some(q) => deliver_q(&mut f, signed(q), true),
        })
    };
    if let Some(r) = r {
        f.set(1, r);
        f.pop();
    }
    note(c, i, None);
    Ok(())
}

/// The x87 environment image (FSTENV/FLDENV, the first part of FSAVE/FRSTOR): 14 bytes for
/// 16-bit operands, 28 for 32-bit (SDM vol. 1, figures 8-9 to 8-12), in the protected-mode
/// layout (selectors and offsets) or, in real and virtual-8086 mode, the real-mode layout
/// (20- or 32-bit linear pointers split with FOP).
fn env_image(f: &FpuState, wide: bool, real: bool) -> Vec<u8> {
    let tw = full_tag_word(f);
    let fop = u32::from(f.fop & 0x7ff);
    let (ip, dp) = (f.fip as u32, f.fdp as u32);
    let words: [u32; 7] = if real {
        [
            u32::from(f.fcw),
            u32::from(f.fsw),
            u32::from(tw),
            ip & 0xffff,
            ((ip >> 16) << 12) | fop,
            dp & 0xffff,
            (dp >> 16) << 12,
        ]
    } else {
        [u32::from(f.fcw), u32::from(f.fsw), u32::from(tw), ip, u32::from(f.fcs) | (fop << 16), dp, u32::from(f.fds)]
    };
    let mut out = Vec::with_capacity(28);
    for (k, w) in words.iter().enumerate() {
        if wide {
            // The unused upper halves of the first three and the selector fields read as ones.
            let hi = match (k, real) {
                (0..=2, _) | (6, false) => 0xffff_0000,
                _ => 0,
            };
            out.extend_from_slice(&(w | hi).to_le_bytes());
        } else {
            out.extend_from_slice(&(*w as u16).to_le_bytes());
        }
    }
    out
}

/// Loads an environment image (the inverse of `env_image`).
fn load_env(f: &mut FpuState, img: &[u8], wide: bool, real: bool) {
    let word = |k: usize| -> u32 {
        if wide {
            u32::from_le_bytes([img[4 * k], img[4 * k + 1], img[4 * k + 2], img[4 * k + 3]])
        } else {
            u32::from(u16::from_le_bytes([img[2 * k], img[2 * k + 1]]))
        }
    };
    f.fcw = word(0) as u16 | 0x40;
    f.fsw = word(1) as u16;
    f.ftw = abridged_tag(word(2) as u16);
    if real {
        f.fip = u64::from((word(3) & 0xffff) | ((word(4) >> 12) << 16));
        f.fop = (word(4) & 0x7ff) as u16;
        f.fdp = u64::from((word(5) & 0xffff) | ((word(6) >> 12) << 16));
        f.fcs = 0;
        f.fds = 0;
    } else {
        f.fip = u64::from(word(3));
        f.fcs = word(4) as u16;
        f.fop = if wide { ((word(4) >> 16) & 0x7ff) as u16 } else { 0 };
        f.fdp = u64::from(word(5));
        f.fds = word(6) as u16;
    }
    // ES (and B) follow the loaded flags and masks.
    if f.fsw & !f.fcw & 0x3f != 0 {
        f.fsw |= fsw::ES | fsw::B;
    } else {
        f.fsw &= !(fsw::ES | fsw::B);
    }
}

/// FNSTENV/FLDENV and FNSAVE/FRSTOR (FSTENV/FSAVE are FWAIT first). Stores check every page
/// before writing; loads read everything before changing anything.
pub fn env(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use Mnemonic::*;
    let m = i.mnemonic();
    check(c, matches!(m, Fstenv | Fsave | Fldenv | Frstor))?;
    let size = mem_size(i);
    let wide = matches!(size, 28 | 108);
    let env_len = if wide { 28 } else { 14 };
    let real = !c.cpu.protected() || c.cpu.v86();
    let seg = op::mem_seg(i);
    let ea = op::ea(c, i);
    let aw = op::addr_width(i, c.mode64());
    let with_regs = matches!(m, Fnsave | Fsave | Frstor);
    let total = env_len + if with_regs { 80 } else { 0 };
    if matches!(m, Fldenv | Frstor) {
        let mut img = vec![0u8; total];
        for (k, b) in img.iter_mut().enumerate() {
            *b = mem::read(c.cpu, c.bus, seg, ea.wrapping_add(k as u64) & aw.mask(), Width::W8)? as u8;
        }
        let mut f = c.cpu.fpu;
        load_env(&mut f, &img, wide, real);
        if with_regs {
            let top = usize::from((f.fsw >> 11) & 7);
            for k in 0..8 {
                let mut r = [0u8; 10];
                r.copy_from_slice(&img[env_len + 10 * k..env_len + 10 * k + 10]);
                f.st[(top + k) & 7] = r;
            }
        }
        c.cpu.fpu = f;
        crate::sem::mmx::ferr_follows_es(c);
        return Ok(());
    }
    let mut img = env_image(&c.cpu.fpu, wide, real);
    if with_regs {
        let f = &c.cpu.fpu;
        let top = usize::from((f.fsw >> 11) & 7);
        for k in 0..8 {
            img.extend_from_slice(&f.st[(top + k) & 7]);
        }
    }
    for k in (0..total).step_by(8).chain(std::iter::once(total - 1)) {
        let lin = mem::seg_linear(c.cpu, seg, ea.wrapping_add(k as u64) & aw.mask(), 1, mem::AccessKind::Write)?;
        mem::translate(c.cpu, c.bus, lin, mem::AccessKind::Write)?;
    }
    for (k, b) in img.iter().enumerate() {
        mem::write(c.cpu, c.bus, seg, ea.wrapping_add(k as u64) & aw.mask(), Width::W8, u64::from(*b))?;
    }
    if with_regs {
        c.cpu.fpu = FpuState::default();
    } else {
        c.cpu.fpu.fcw |= 0x3f;
    }
    crate::sem::mmx::ferr_follows_es(c);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::CpuBus;
    use crate::state::CpuState;

    /// 64 KiB of RAM, FERR# (its level and how often it rose) and IGNNE#.
    struct Bus {
        ram: Vec<u8>,
        ferr: u32,
        ferr_level: bool,
        ignne: bool,
    }

    impl Bus {
        fn new() -> Self {
            Bus { ram: vec![0; 0x10000], ferr: 0, ferr_level: false, ignne: false }
        }
    }

    impl softmmu::PhysBus for Bus {
        fn read_phys(&mut self, addr: u64, size: u8) -> u64 {
            (0..u64::from(size)).fold(0, |acc, k| {
                acc | u64::from(self.ram.get((addr + k) as usize).copied().unwrap_or(0xff)) << (8 * k)
            })
        }
        fn write_phys(&mut self, addr: u64, size: u8, val: u64) {
            for k in 0..u64::from(size) {
                if let Some(b) = self.ram.get_mut((addr + k) as usize) {
                    *b = (val >> (8 * k)) as u8;
                }
            }
        }
    }

    impl CpuBus for Bus {
        fn io_read(&mut self, _port: u16, _size: u8) -> u32 {
            u32::MAX
        }
        fn io_write(&mut self, _port: u16, _size: u8, _val: u32) {}
        fn now_ns(&mut self) -> u64 {
            0
        }
        fn set_ferr(&mut self, asserted: bool) {
            if asserted && !self.ferr_level {
                self.ferr += 1;
            }
            self.ferr_level = asserted;
        }
        fn ignne(&mut self) -> bool {
            self.ignne
        }
    }

    /// Runs the 16-bit real-mode instruction `bytes` on `cpu`: its exception vector, if any.
    fn run(cpu: &mut CpuState, bus: &mut Bus, bytes: &[u8]) -> Option<u8> {
        let mut d = iced_x86::Decoder::new(16, bytes, iced_x86::DecoderOptions::NONE);
        let insn = Insn::new(d.decode(), 16);
        let mut c = Concrete { cpu, bus };
        crate::sem::execute(&mut c, &insn).err().map(|e| e.vector)
    }

    const FADD: &[u8] = &[0xd8, 0xc1];
    const FNINIT: &[u8] = &[0xdb, 0xe3];
    const FNSTSW_AX: &[u8] = &[0xdf, 0xe0];
    const FNCLEX: &[u8] = &[0xdb, 0xe2];
    const WAIT: &[u8] = &[0x9b];
    const PADDB: &[u8] = &[0x0f, 0xfc, 0xc1];

    #[test]
    fn nm_ud_and_mf_conditions() {
        let mut bus = Bus::new();
        // CR0.EM or CR0.TS: #NM for x87 instructions, #UD / #NM for MMX.
        for (bit, x87, mmx) in [(cr0::EM, Some(7), Some(6)), (cr0::TS, Some(7), Some(7))] {
            let mut cpu = CpuState::new();
            cpu.cr0 |= bit;
            assert_eq!(run(&mut cpu, &mut bus, FADD), x87);
            assert_eq!(run(&mut cpu, &mut bus, FNINIT), x87);
            assert_eq!(run(&mut cpu, &mut bus, PADDB), mmx);
            assert_eq!(cpu.fpu, FpuState::default(), "nothing changed");
        }
        // WAIT: #NM only with both MP and TS.
        let mut cpu = CpuState::new();
        cpu.cr0 |= cr0::TS;
        assert_eq!(run(&mut cpu, &mut bus, WAIT), None);
        cpu.cr0 |= cr0::MP;
        assert_eq!(run(&mut cpu, &mut bus, WAIT), Some(7));
        // A pending unmasked exception with CR0.NE: #MF at waiting instructions only.
        let mut cpu = CpuState::new();
        cpu.cr0 |= cr0::NE;
        cpu.fpu.fcw = 0x037e; // IE unmasked
        assert_eq!(run(&mut cpu, &mut bus, FADD), None, "stack underflow, unmasked");
        assert_eq!(cpu.fpu.fsw & (fsw::ES | fsw::IE | fsw::SF), fsw::ES | fsw::IE | fsw::SF);
        assert_eq!(cpu.fpu.ftw, 0, "no result stored");
        assert_eq!(run(&mut cpu, &mut bus, FADD), Some(16));
        assert_eq!(run(&mut cpu, &mut bus, WAIT), Some(16));
        assert_eq!(run(&mut cpu, &mut bus, PADDB), Some(16));
        assert_eq!(run(&mut cpu, &mut bus, FNSTSW_AX), None, "no-wait forms do not fault");
        assert_eq!(cpu.reg(crate::state::Gpr::Rax, Width::W16), u64::from(cpu.fpu.fsw));
        assert_eq!(run(&mut cpu, &mut bus, FNINIT), None);
        assert_eq!(run(&mut cpu, &mut bus, FADD), None, "FNINIT cleared it");
    }

    /// Without CR0.NE, the PC/AT way as the SDM describes it (vol. 1, D.2.1; the host runs
    /// with CR0.NE and cannot show it): a waiting instruction that meets a pending exception
    /// asserts FERR# and freezes (no change, RIP at it, the CPU waits for an interrupt) until
    /// IGNNE# lets it go on; clearing the exception negates FERR#; a no-wait instruction
    /// pulses FERR# and goes on.
    #[test]
    fn ferr_freezes_waiting_instructions_until_ignne_or_the_exception_is_cleared() {
        let mut bus = Bus::new();
        let mut cpu = CpuState::new();
        cpu.fpu.fcw = 0x037e; // IE unmasked
        assert_eq!(run(&mut cpu, &mut bus, FADD), None, "stack underflow, unmasked");
        assert_eq!(bus.ferr, 0, "FERR# waits for the next waiting instruction");
        let (fpu, rip) = (cpu.fpu, cpu.rip);
        for insn in [WAIT, FADD, PADDB] {
            assert_eq!(run(&mut cpu, &mut bus, insn), Some(Exception::FREEZE.vector));
            assert_eq!((cpu.fpu, cpu.rip), (fpu, rip), "{insn:02x?} did not start");
        }
        assert_eq!((bus.ferr, bus.ferr_level), (1, true), "FERR# rose once and stays asserted");
        let mut halted = cpu.clone();
        crate::interrupt::raise(&mut halted, &mut bus, Exception::FREEZE);
        assert!(halted.halted, "frozen: waiting for an interrupt");
        assert_eq!(halted.rip, rip);
        // The IRQ13 handler's write to port 0xF0 asserts IGNNE#: waiting instructions go on.
        bus.ignne = true;
        assert_eq!(run(&mut cpu, &mut bus, WAIT), None);
        assert_eq!(run(&mut cpu, &mut bus, FNSTSW_AX), None);
        // FNCLEX clears the exception: FERR# goes away.
        assert_eq!(run(&mut cpu, &mut bus, FNCLEX), None);
        assert!(!bus.ferr_level);
        bus.ignne = false;
        assert_eq!(run(&mut cpu, &mut bus, WAIT), None, "nothing pending");
        // A new exception: FERR# rises again. A no-wait instruction only pulses it.
        assert_eq!(run(&mut cpu, &mut bus, FADD), None);
        assert_eq!(run(&mut cpu, &mut bus, FNSTSW_AX), None);
        assert_eq!((bus.ferr, bus.ferr_level), (2, false), "FNSTSW pulsed FERR#");
        assert_eq!(run(&mut cpu, &mut bus, WAIT), Some(Exception::FREEZE.vector));
        assert_eq!((bus.ferr, bus.ferr_level), (3, true));
        // FNINIT negates it too.
        assert_eq!(run(&mut cpu, &mut bus, FNINIT), None);
        assert!(!bus.ferr_level);
        assert_eq!(run(&mut cpu, &mut bus, WAIT), None);
    }

    /// FOP for encodings the host (64-bit code, an assembler's choices) cannot show: 16-bit
    /// and 32-bit addressing, redundant register-form aliases. Expected values are the
    /// instruction bytes themselves (SDM vol. 1, 8.1.8: low three bits of the first opcode
    /// byte, then the ModR/M byte).
    #[test]
    fn fop_is_the_opcode_and_modrm_byte_in_every_addressing_form() {
        let cases: &[(u32, &[u8])] = &[
            (16, &[0xdd, 0x07]),                               // fld qword [bx]
            (16, &[0xd8, 0x46, 0x02]),                         // fadd dword [bp+2]
            (16, &[0xdc, 0x06, 0x34, 0x12]),                   // fadd qword [0x1234]
            (16, &[0xde, 0x80, 0x00, 0x01]),                   // fiadd word [bx+si+0x100]
            (16, &[0xdb, 0x2a]),                               // fld tword [bp+si]
            (16, &[0xd9, 0xc9]),                               // fxch st(1)
            (16, &[0xde, 0xe9]),                               // fsubp
            (16, &[0xdc, 0xe3]),                               // dc e3: st(3) = st(0) - st(3)
            (16, &[0xdc, 0xd3]),                               // fcom st(3), the DC alias
            (16, &[0xdf, 0xc9]),                               // fxch st(1), the DF alias
            (32, &[0xd9, 0x04, 0x24]),                         // fld dword [esp]
            (32, &[0xd9, 0x05, 0x78, 0x56, 0x34, 0x12]),       // fld dword [0x12345678]
            (32, &[0xdd, 0x44, 0x88, 0x08]),                   // fld qword [eax+ecx*4+8]
            (32, &[0xd8, 0x45, 0x00]),                         // fadd dword [ebp+0]
            (32, &[0xda, 0xb0, 0x00, 0x01, 0x00, 0x00]),       // fidiv dword [eax+0x100]
            (32, &[0x67, 0xdd, 0x1f]),                         // fstp qword [bx] (16-bit addressing)
            (64, &[0xd9, 0x04, 0x25, 0x00, 0x10, 0x00, 0x00]), // fld dword [0x1000]
            (64, &[0xd9, 0x05, 0x00, 0x00, 0x00, 0x00]),       // fld dword [rip]
            (64, &[0x41, 0xdd, 0x04, 0x24]),                   // fld qword [r12]
            (64, &[0x41, 0xd8, 0x45, 0x00]),                   // fadd dword [r13+0]
            (64, &[0x67, 0xd9, 0x00]),                         // fld dword [eax]
            (64, &[0x67, 0xd9, 0x05, 0, 0, 0, 0]),             // fld dword [eip]
        ];
        for &(bits, bytes) in cases {
            let mut d = iced_x86::Decoder::new(bits, bytes, iced_x86::DecoderOptions::NONE);
            let insn = Insn::new(d.decode(), bits);
            assert_eq!(insn.len(), bytes.len(), "{bytes:02x?}");
            let at = bytes.iter().position(|b| (0xd8..=0xdf).contains(b)).unwrap_or(0);
            let want = (u16::from(bytes[at] & 7) << 8) | u16::from(bytes[at + 1]);
            assert_eq!(fop(&insn), want, "{bits}-bit {bytes:02x?}");
        }
    }

    #[test]
    fn tag_word_round_trips_through_the_abridged_form() {
        let mut f = FpuState { ftw: 0b1010_0111, ..FpuState::default() };
        f.st[0] = bits_reg(0x3fff_8000_0000_0000_0000); // valid
        f.st[1] = bits_reg(0); // zero
        f.st[2] = bits_reg(0x7fff_c000_0000_0000_0000); // special (NaN)
        f.st[5] = bits_reg(0x0000_0000_0000_0000_0001); // special (denormal)
        f.st[7] = bits_reg(0x4000_0000_0000_0000_0000); // special (unnormal)
        let tw = full_tag_word(&f);
        assert_eq!(tw, 0b10_11_10_11_11_10_01_00);
        assert_eq!(abridged_tag(tw), f.ftw);
        assert_eq!(full_tag_word(&FpuState::default()), 0xffff);
    }

    #[test]
    fn environment_images_round_trip_in_all_four_layouts() {
        let mut f = FpuState {
            fcw: 0x0b7a,
            fsw: 0xb8a5, // IE pending (unmasked), so ES and B
            ftw: 0b0110_0001,
            fop: 0x5d9,
            fip: 0x000c_1234,
            fcs: 0x1b,
            fdp: 0x000a_5678,
            fds: 0x23,
            ..FpuState::default()
        };
        f.st[0] = bits_reg(0x3fff_8000_0000_0000_0000);
        for (wide, real) in [(false, false), (false, true), (true, false), (true, true)] {
            let img = env_image(&f, wide, real);
            assert_eq!(img.len(), if wide { 28 } else { 14 });
            assert_eq!(u16::from_le_bytes([img[0], img[1]]), f.fcw);
            let tw_at = if wide { 8 } else { 4 };
            assert_eq!(u16::from_le_bytes([img[tw_at], img[tw_at + 1]]), full_tag_word(&f));
            let mut g = FpuState { st: f.st, ..FpuState::default() };
            load_env(&mut g, &img, wide, real);
            assert_eq!((g.fcw, g.fsw, g.ftw), (f.fcw, f.fsw, f.ftw), "wide={wide} real={real}");
            // 16-bit layouts keep 16-bit (protected) or 20-bit (real) pointers.
            let ip_mask = match (wide, real) {
                (false, false) => 0xffff,
                (false, true) => 0xf_ffff,
                _ => 0xffff_ffff,
            };
            assert_eq!(g.fip, f.fip & ip_mask);
            assert_eq!(g.fdp, f.fdp & ip_mask);
            if real {
                assert_eq!(g.fop, f.fop);
            } else {
                assert_eq!((g.fcs, g.fds), (f.fcs, f.fds));
            }
        }
    }

    #[test]
    fn stack_overflow_and_underflow_set_ie_sf_and_c1() {
        let mut s = FpuState::default();
        let mut f = Fpu(&mut s);
        for _ in 0..8 {
            f.push_checked(0x3fff_8000_0000_0000_0000);
        }
        assert_eq!(f.0.fsw & 0x7f, 0);
        f.push_checked(0);
        assert_eq!(f.0.fsw & (fsw::IE | fsw::SF | fsw::C1), fsw::IE | fsw::SF | fsw::C1);
        assert_eq!(f.get(0), INDEFINITE, "masked overflow pushes the indefinite");
        let mut s = FpuState::default();
        let mut f = Fpu(&mut s);
        assert!(f.underflow());
        assert_eq!(f.0.fsw & (fsw::IE | fsw::SF | fsw::C1 | fsw::ES), fsw::IE | fsw::SF);
        let mut s = FpuState { fcw: 0x037e, ..FpuState::default() };
        assert!(!Fpu(&mut s).underflow(), "IE unmasked");
        assert_eq!(s.fsw & (fsw::ES | fsw::B), fsw::ES | fsw::B);
    }

    #[test]
    fn classification_and_arithmetic_basics() {
        assert_eq!(classify(0x4000_0000_0000_0000_0000), Class::Unsupported);
        assert_eq!(classify(0x0000_8000_0000_0000_0000), Class::Denormal);
        assert_eq!(classify(0x7fff_8000_0000_0000_0001), Class::SNan);
        let mut s = FpuState::default();
        let mut f = Fpu(&mut s);
        let one = 0x3fff_8000_0000_0000_0000;
        assert_eq!(arith(&mut f, Arith::Add, one, one, false), Some(0x4000_8000_0000_0000_0000));
        // 1/3 at PC=24 rounds to 24 bits.
        f.0.fcw = 0x007f;
        let three = 0x4000_c000_0000_0000_0000;
        assert_eq!(arith(&mut f, Arith::Div, one, three, false), Some(0x3ffd_aaaa_ab00_0000_0000));
        assert_eq!(isqrt(17), 4);
    }
}
