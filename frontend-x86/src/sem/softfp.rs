//! IEEE 754 binary32/binary64 arithmetic in portable integer Rust, with the x86 SSE rules:
//! MXCSR rounding control, flush-to-zero, denormals-are-zero, the six exception flags, tininess
//! detected after rounding, the first source's NaN propagated (quieted), and the default NaN
//! (negative QNaN). No host floating point is used, so every host computes the same bits.

/// MXCSR exception flags and controls.
pub mod mx {
    /// Invalid operation.
    pub const IE: u32 = 1 << 0;
    /// Denormal operand.
    pub const DE: u32 = 1 << 1;
    /// Divide by zero.
    pub const ZE: u32 = 1 << 2;
    /// Overflow.
    pub const OE: u32 = 1 << 3;
    /// Underflow.
    pub const UE: u32 = 1 << 4;
    /// Precision (inexact).
    pub const PE: u32 = 1 << 5;
    /// The six flags.
    pub const FLAGS: u32 = 0x3f;
    /// Denormals are zero.
    pub const DAZ: u32 = 1 << 6;
    /// The exception masks start here (bit 7 masks IE, ...).
    pub const MASK_SHIFT: u32 = 7;
    /// Flush to zero.
    pub const FTZ: u32 = 1 << 15;
    /// The pre-computation exceptions.
    pub const PRE: u32 = IE | DE | ZE;
}

/// A binary floating-point format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fmt {
    /// Exponent field width.
    pub exp_bits: u32,
    /// Fraction field width (the significand has one more bit).
    pub frac_bits: u32,
}

/// binary32.
pub const F32: Fmt = Fmt { exp_bits: 8, frac_bits: 23 };
/// binary64.
pub const F64: Fmt = Fmt { exp_bits: 11, frac_bits: 52 };

impl Fmt {
    /// The width in bits.
    pub const fn bits(self) -> u32 {
        1 + self.exp_bits + self.frac_bits
    }
    fn bias(self) -> i32 {
        (1 << (self.exp_bits - 1)) - 1
    }
    fn emax_field(self) -> u64 {
        (1 << self.exp_bits) - 1
    }
    /// The sign bit.
    pub const fn sign_bit(self) -> u64 {
        1 << (self.exp_bits + self.frac_bits)
    }
    fn frac_mask(self) -> u64 {
        (1 << self.frac_bits) - 1
    }
    fn quiet_bit(self) -> u64 {
        1 << (self.frac_bits - 1)
    }
    fn exp_field(self, v: u64) -> u64 {
        (v >> self.frac_bits) & self.emax_field()
    }
    /// The default NaN: negative, quiet, zero payload.
    pub fn default_nan(self) -> u64 {
        self.sign_bit() | (self.emax_field() << self.frac_bits) | self.quiet_bit()
    }
    /// Positive infinity.
    pub fn inf(self) -> u64 {
        self.emax_field() << self.frac_bits
    }
    /// The largest finite value.
    fn max_finite(self) -> u64 {
        self.inf() - 1
    }
    /// True for any NaN.
    pub fn is_nan(self, v: u64) -> bool {
        self.exp_field(v) == self.emax_field() && v & self.frac_mask() != 0
    }
    /// True for a signalling NaN.
    pub fn is_snan(self, v: u64) -> bool {
        self.is_nan(v) && v & self.quiet_bit() == 0
    }
    /// True for a denormal (nonzero with a zero exponent field).
    pub fn is_denormal(self, v: u64) -> bool {
        self.exp_field(v) == 0 && v & self.frac_mask() != 0
    }
    /// True for ±0.
    pub fn is_zero(self, v: u64) -> bool {
        v & !self.sign_bit() == 0
    }
    /// True for ±inf.
    pub fn is_inf(self, v: u64) -> bool {
        v & !self.sign_bit() == self.inf()
    }
    /// `v` with the quiet bit set.
    pub fn quiet(self, v: u64) -> u64 {
        v | self.quiet_bit()
    }
    fn sign(self, v: u64) -> bool {
        v & self.sign_bit() != 0
    }
    fn zero(self, neg: bool) -> u64 {
        if neg {
            self.sign_bit()
        } else {
            0
        }
    }
    /// A finite nonzero value as (sign, exponent of the significand's LSB, significand).
    fn parts(self, v: u64) -> (bool, i32, u64) {
        let e = self.exp_field(v) as i32;
        let f = v & self.frac_mask();
        let (e, m) = if e == 0 { (1, f) } else { (e, f | (1 << self.frac_bits)) };
        (self.sign(v), e - self.bias() - self.frac_bits as i32, m)
    }
}

/// The rounding state of one instruction: MXCSR's controls in, the flags raised out.
#[derive(Clone, Copy, Debug)]
pub struct Env {
    /// Rounding control: 0 nearest, 1 down, 2 up, 3 toward zero.
    pub rc: u32,
    /// Flush tiny results to zero (only with underflow masked).
    pub ftz: bool,
    /// Treat denormal operands as zero.
    pub daz: bool,
    /// Underflow masked.
    pub um: bool,
    /// Overflow masked.
    pub om: bool,
    /// Flags raised so far.
    pub flags: u32,
}

impl Env {
    /// The environment MXCSR describes.
    pub fn new(mxcsr: u32) -> Env {
        Env {
            rc: (mxcsr >> 13) & 3,
            ftz: mxcsr & mx::FTZ != 0,
            daz: mxcsr & mx::DAZ != 0,
            um: mxcsr & mx::UE << mx::MASK_SHIFT != 0,
            om: mxcsr & mx::OE << mx::MASK_SHIFT != 0,
            flags: 0,
        }
    }
    /// An operand as the operation sees it: a denormal is ±0 under DAZ, else it flags DE.
    pub fn operand(&mut self, f: Fmt, v: u64) -> u64 {
        if f.is_denormal(v) {
            if self.daz {
                return v & f.sign_bit();
            }
            self.flags |= mx::DE;
        }
        v
    }
    /// Like `operand`, without raising DE (instructions that do not report it).
    pub fn operand_quiet(&self, f: Fmt, v: u64) -> u64 {
        if self.daz && f.is_denormal(v) {
            v & f.sign_bit()
        } else {
            v
        }
    }
}

/// Runs one lane's operation: within a lane, invalid and divide-by-zero take precedence over
/// the denormal-operand flag (SDM vol. 1, 11.5.2.1), so DE is dropped when either is raised.
pub fn lane(env: &mut Env, f: impl FnOnce(&mut Env) -> u64) -> u64 {
    let before = env.flags;
    env.flags = 0;
    let r = f(env);
    if env.flags & (mx::IE | mx::ZE) != 0 {
        env.flags &= !mx::DE;
    }
    env.flags |= before;
    r
}

/// Rounds `q`, an integer with `half` (the next bit) and `lower` (anything below), per `rc` for a
/// value of sign `neg`. Returns the rounded integer and whether it was inexact.
fn round_int(q: u128, half: bool, lower: bool, rc: u32, neg: bool) -> (u128, bool) {
    let inexact = half || lower;
    let up = match rc {
        0 => half && (lower || q & 1 != 0),
        1 => neg && inexact,
        2 => !neg && inexact,
        _ => false,
    };
    (q + u128::from(up), inexact)
}

/// `m` (exact, plus `sticky` below it) keeping its top `keep` bits (counted from bit 127).
fn round_keep(m: u128, sticky: bool, keep: i32, rc: u32, neg: bool) -> (u128, bool) {
    if keep <= 0 {
        let half = keep == 0 && m >> 127 != 0;
        let lower = if keep == 0 { m << 1 != 0 || sticky } else { m != 0 || sticky };
        return round_int(0, half, lower, rc, neg);
    }
    if keep >= 128 {
        return round_int(m, false, sticky, rc, neg);
    }
    let shift = 128 - keep as u32;
    let q = m >> shift;
    let half = (m >> (shift - 1)) & 1 != 0;
    let lower = m & ((1u128 << (shift - 1)) - 1) != 0 || sticky;
    round_int(q, half, lower, rc, neg)
}

/// Rounds the exact value (-1)^neg * m * 2^e (plus `sticky` below m's LSB) to format `f`,
/// raising OE/UE/PE as SSE does.
pub fn round_pack(f: Fmt, env: &mut Env, neg: bool, e: i32, m: u128, sticky: bool) -> u64 {
    if m == 0 {
        // Only reached with sticky clear in practice; an exact zero.
        return f.zero(neg);
    }
    let lz = m.leading_zeros();
    let m = m << lz;
    // The value is 1.xxx * 2^big_e.
    let big_e = e - lz as i32 + 127;
    let p = f.frac_bits as i32 + 1;
    let emin = 1 - f.bias();
    let emax = f.bias();
    // Round with an unbounded exponent first: that decides overflow and tininess.
    let (mut q, inexact) = round_keep(m, sticky, p, env.rc, neg);
    let mut re = big_e;
    if q >> p != 0 {
        q >>= 1;
        re += 1;
    }
    if re > emax {
        env.flags |= mx::OE;
        if env.om || inexact {
            env.flags |= mx::PE;
        }
        let to_inf = match env.rc {
            0 => true,
            1 => neg,
            2 => !neg,
            _ => false,
        };
        let mag = if to_inf { f.inf() } else { f.max_finite() };
        return mag | f.zero(neg);
    }
    if re < emin {
        // Tiny after rounding.
        if !env.um {
            env.flags |= mx::UE;
            if inexact {
                env.flags |= mx::PE;
            }
            return f.zero(neg);
        }
        if env.ftz {
            env.flags |= mx::UE | mx::PE;
            return f.zero(neg);
        }
        let keep = p - (emin - big_e);
        let (q2, inexact2) = round_keep(m, sticky, keep, env.rc, neg);
        if inexact2 {
            env.flags |= mx::UE | mx::PE;
        }
        return q2 as u64 | f.zero(neg);
    }
    if inexact {
        env.flags |= mx::PE;
    }
    let field = (re + f.bias()) as u64;
    (field << f.frac_bits) | (q as u64 & f.frac_mask()) | f.zero(neg)
}

/// The NaN result of a two-operand operation when either operand is a NaN: the first NaN,
/// quieted; IE when either is signalling.
fn nan2(f: Fmt, env: &mut Env, a: u64, b: u64) -> Option<u64> {
    if !f.is_nan(a) && !f.is_nan(b) {
        return None;
    }
    if f.is_snan(a) || f.is_snan(b) {
        env.flags |= mx::IE;
    }
    Some(f.quiet(if f.is_nan(a) { a } else { b }))
}

/// The operand-class preamble of an arithmetic operation: NaNs first, then DE/DAZ.
fn prep2(f: Fmt, env: &mut Env, a: u64, b: u64) -> Result<(u64, u64), u64> {
    if let Some(n) = nan2(f, env, a, b) {
        return Err(n);
    }
    let a = env.operand(f, a);
    let b = env.operand(f, b);
    Ok((a, b))
}

/// a + b.
pub fn add(f: Fmt, env: &mut Env, a: u64, b: u64) -> u64 {
    let (a, b) = match prep2(f, env, a, b) {
        Ok(v) => v,
        Err(n) => return n,
    };
    add_core(f, env, a, b)
}

/// a - b.
pub fn sub(f: Fmt, env: &mut Env, a: u64, b: u64) -> u64 {
    let (a, b) = match prep2(f, env, a, b) {
        Ok(v) => v,
        Err(n) => return n,
    };
    add_core(f, env, a, b ^ f.sign_bit())
}

fn add_core(f: Fmt, env: &mut Env, a: u64, b: u64) -> u64 {
    let (ia, ib) = (f.is_inf(a), f.is_inf(b));
    if ia || ib {
        if ia && ib && f.sign(a) != f.sign(b) {
            env.flags |= mx::IE;
            return f.default_nan();
        }
        return if ia { a } else { b };
    }
    let (za, zb) = (f.is_zero(a), f.is_zero(b));
    if za && zb {
        let neg = if f.sign(a) == f.sign(b) { f.sign(a) } else { env.rc == 1 };
        return f.zero(neg);
    }
    if za || zb {
        let (s, e, m) = f.parts(if za { b } else { a });
        return round_pack(f, env, s, e, u128::from(m), false);
    }
    let (sa, ea, ma) = f.parts(a);
    let (sb, eb, mb) = f.parts(b);
    // The larger exponent first; the other is aligned to it with a jammed sticky bit.
    let ((s1, e1, m1), (s2, e2, m2)) =
        if ea >= eb { ((sa, ea, ma), (sb, eb, mb)) } else { ((sb, eb, mb), (sa, ea, ma)) };
    const G: u32 = 70;
    let x = u128::from(m1) << G;
    let d = (e1 - e2) as u32;
    let y0 = u128::from(m2) << G;
    let y = if d >= 128 { u128::from(y0 != 0) } else { (y0 >> d) | u128::from(y0 & ((1u128 << d) - 1) != 0) };
    let e = e1 - G as i32;
    if s1 == s2 {
        return round_pack(f, env, s1, e, x + y, false);
    }
    if x == y {
        return f.zero(env.rc == 1);
    }
    if x > y {
        round_pack(f, env, s1, e, x - y, false)
    } else {
        round_pack(f, env, s2, e, y - x, false)
    }
}

/// a * b.
pub fn mul(f: Fmt, env: &mut Env, a: u64, b: u64) -> u64 {
    let (a, b) = match prep2(f, env, a, b) {
        Ok(v) => v,
        Err(n) => return n,
    };
    let neg = f.sign(a) != f.sign(b);
    let (ia, ib, za, zb) = (f.is_inf(a), f.is_inf(b), f.is_zero(a), f.is_zero(b));
    if (ia && zb) || (ib && za) {
        env.flags |= mx::IE;
        return f.default_nan();
    }
    if ia || ib {
        return f.inf() | f.zero(neg);
    }
    if za || zb {
        return f.zero(neg);
    }
    let (_, ea, ma) = f.parts(a);
    let (_, eb, mb) = f.parts(b);
    round_pack(f, env, neg, ea + eb, u128::from(ma) * u128::from(mb), false)
}

/// a / b.
pub fn div(f: Fmt, env: &mut Env, a: u64, b: u64) -> u64 {
    let (a, b) = match prep2(f, env, a, b) {
        Ok(v) => v,
        Err(n) => return n,
    };
    let neg = f.sign(a) != f.sign(b);
    let (ia, ib, za, zb) = (f.is_inf(a), f.is_inf(b), f.is_zero(a), f.is_zero(b));
    if (ia && ib) || (za && zb) {
        env.flags |= mx::IE;
        return f.default_nan();
    }
    if ia || zb {
        if zb && !ia {
            env.flags |= mx::ZE;
        }
        return f.inf() | f.zero(neg);
    }
    if za || ib {
        return f.zero(neg);
    }
    let (_, ea, ma) = f.parts(a);
    let (_, eb, mb) = f.parts(b);
    let (la, lb) = (ma.leading_zeros(), mb.leading_zeros());
    let (ma, mb) = (ma << la, mb << lb);
    let num = u128::from(ma) << 64;
    let q = num / u128::from(mb);
    let r = num % u128::from(mb);
    round_pack(f, env, neg, ea - la as i32 - (eb - lb as i32) - 64, q, r != 0)
}

fn isqrt(n: u128) -> u128 {
    // Bit-by-bit integer square root (floor).
    let mut x = n;
    let mut r = 0u128;
    let mut bit = 1u128 << 126;
    while bit > n {
        bit >>= 2;
    }
    while bit != 0 {
        if x >= r + bit {
            x -= r + bit;
            r = (r >> 1) + bit;
        } else {
            r >>= 1;
        }
        bit >>= 2;
    }
    r
}

/// The square root of a.
pub fn sqrt(f: Fmt, env: &mut Env, a: u64) -> u64 {
    if f.is_nan(a) {
        if f.is_snan(a) {
            env.flags |= mx::IE;
        }
        return f.quiet(a);
    }
    let a = env.operand(f, a);
    if f.is_zero(a) {
        return a;
    }
    if f.sign(a) {
        env.flags |= mx::IE;
        return f.default_nan();
    }
    if f.is_inf(a) {
        return a;
    }
    let (_, e, m) = f.parts(a);
    let lz = m.leading_zeros() as i32;
    // m * 2^e = (m << s) * 2^(e - s) with e - s even and m << s just under 2^126.
    let mut s = 62 + lz;
    if (e - s) & 1 != 0 {
        s -= 1;
    }
    let n = u128::from(m) << s;
    let r = isqrt(n);
    round_pack(f, env, false, (e - s) / 2, r, r * r != n)
}

/// MINPS/MAXPS semantics: the second operand when either is a NaN or both are zero; IE on any
/// NaN.
pub fn min_max(f: Fmt, env: &mut Env, a: u64, b: u64, max: bool) -> u64 {
    // DAZ applies even to the operand returned beside a NaN.
    let (qa, qb) = (env.operand_quiet(f, a), env.operand_quiet(f, b));
    if f.is_nan(a) || f.is_nan(b) {
        env.flags |= mx::IE;
        return qb;
    }
    let a = env.operand(f, a);
    let b = env.operand(f, b);
    debug_assert_eq!((a, b), (qa, qb));
    match cmp(f, a, b) {
        Some(std::cmp::Ordering::Less) => {
            if max {
                b
            } else {
                a
            }
        }
        Some(std::cmp::Ordering::Greater) => {
            if max {
                a
            } else {
                b
            }
        }
        _ => b,
    }
}

/// The ordering of two non-NaN values (None when either is a NaN).
pub fn cmp(f: Fmt, a: u64, b: u64) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering::*;
    if f.is_nan(a) || f.is_nan(b) {
        return None;
    }
    if f.is_zero(a) && f.is_zero(b) {
        return Some(Equal);
    }
    let key = |v: u64| -> i128 {
        let mag = i128::from(v & !f.sign_bit());
        if f.sign(v) {
            -mag
        } else {
            mag
        }
    };
    Some(key(a).cmp(&key(b)))
}

/// A CMPPS-style comparison with predicate `pred` (0-7): all ones or zero.
pub fn compare(f: Fmt, env: &mut Env, a: u64, b: u64, pred: u8) -> bool {
    use std::cmp::Ordering::*;
    let signalling = matches!(pred & 7, 1 | 2 | 5 | 6);
    if f.is_snan(a) || f.is_snan(b) || (signalling && (f.is_nan(a) || f.is_nan(b))) {
        env.flags |= mx::IE;
    }
    let (a, b) = if f.is_nan(a) || f.is_nan(b) { (a, b) } else { (env.operand(f, a), env.operand(f, b)) };
    let o = cmp(f, a, b);
    match pred & 7 {
        0 => o == Some(Equal),
        1 => o == Some(Less),
        2 => matches!(o, Some(Less | Equal)),
        3 => o.is_none(),
        4 => o != Some(Equal),
        5 => o != Some(Less),
        6 => !matches!(o, Some(Less | Equal)),
        _ => o.is_some(),
    }
}

/// Converts a signed integer to format `f`.
pub fn from_int(f: Fmt, env: &mut Env, v: i64) -> u64 {
    if v == 0 {
        return 0;
    }
    round_pack(f, env, v < 0, 0, u128::from(v.unsigned_abs()), false)
}

/// Converts to a signed integer of `bits` (32 or 64), rounding per `rc` (or truncating): the
/// integer indefinite value and IE for NaNs and out-of-range values.
pub fn to_int(f: Fmt, env: &mut Env, v: u64, bits: u32, rc: u32) -> u64 {
    let indefinite = 1u64 << (bits - 1);
    if f.is_nan(v) || f.is_inf(v) {
        env.flags |= mx::IE;
        return indefinite;
    }
    let v = env.operand_quiet(f, v);
    if f.is_zero(v) {
        return 0;
    }
    let (neg, e, m) = f.parts(v);
    // The integer part and the rounding bits of m * 2^e.
    let (q, half, lower) = if e >= 0 {
        if e > 64 {
            env.flags |= mx::IE;
            return indefinite;
        }
        (u128::from(m) << e, false, false)
    } else {
        let s = (-e) as u32;
        if s >= 128 {
            (0, false, true)
        } else {
            let mm = u128::from(m);
            let q = mm >> s;
            let half = (mm >> (s - 1)) & 1 != 0;
            let lower = mm & ((1u128 << (s - 1)) - 1) != 0;
            (q, half, lower)
        }
    };
    let (q, inexact) = round_int(q, half, lower, rc, neg);
    let limit = if neg { 1u128 << (bits - 1) } else { (1u128 << (bits - 1)) - 1 };
    if q > limit {
        env.flags |= mx::IE;
        return indefinite;
    }
    if inexact {
        env.flags |= mx::PE;
    }
    let r = if neg { (q as u64).wrapping_neg() } else { q as u64 };
    if bits == 64 {
        r
    } else {
        r & 0xffff_ffff
    }
}

/// Converts between formats (widening is exact; narrowing rounds).
pub fn convert(from: Fmt, to: Fmt, env: &mut Env, v: u64) -> u64 {
    if from.is_nan(v) {
        if from.is_snan(v) {
            env.flags |= mx::IE;
        }
        let payload = (v & from.frac_mask()) as u128;
        let p = if to.frac_bits >= from.frac_bits {
            (payload << (to.frac_bits - from.frac_bits)) as u64
        } else {
            (payload >> (from.frac_bits - to.frac_bits)) as u64
        };
        return to.quiet(to.inf() | p) | to.zero(from.sign(v));
    }
    let v = env.operand(from, v);
    let neg = from.sign(v);
    if from.is_inf(v) {
        return to.inf() | to.zero(neg);
    }
    if from.is_zero(v) {
        return to.zero(neg);
    }
    let (_, e, m) = from.parts(v);
    round_pack(to, env, neg, e, u128::from(m), false)
}

/// Rounds to an integral value in the same format (ROUNDPS): IE on SNaN, PE when inexact.
pub fn round_integral(f: Fmt, env: &mut Env, v: u64, rc: u32) -> u64 {
    if f.is_nan(v) {
        if f.is_snan(v) {
            env.flags |= mx::IE;
        }
        return f.quiet(v);
    }
    let v = env.operand_quiet(f, v);
    if f.is_inf(v) || f.is_zero(v) {
        return v;
    }
    let (neg, e, m) = f.parts(v);
    if e >= 0 {
        return v;
    }
    let s = (-e) as u32;
    let mm = u128::from(m);
    let (q, half, lower) = if s >= 128 {
        (0, false, true)
    } else {
        (mm >> s, (mm >> (s - 1)) & 1 != 0, mm & ((1u128 << (s - 1)) - 1) != 0)
    };
    let (q, inexact) = round_int(q, half, lower, rc, neg);
    if inexact {
        env.flags |= mx::PE;
    }
    if q == 0 {
        return f.zero(neg);
    }
    // An integer below 2^p: exact in the format.
    let mut e2 = Env { rc: 0, ftz: false, daz: false, um: true, om: true, flags: 0 };
    round_pack(f, &mut e2, neg, 0, q, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env::new(0x1f80)
    }

    #[test]
    fn simple_arithmetic_is_exact_where_it_should_be() {
        let mut e = env();
        assert_eq!(add(F32, &mut e, 1.5f32.to_bits().into(), 2.25f32.to_bits().into()), 3.75f32.to_bits().into());
        assert_eq!(mul(F64, &mut e, 3.0f64.to_bits(), (-0.5f64).to_bits()), (-1.5f64).to_bits());
        assert_eq!(div(F64, &mut e, 1.0f64.to_bits(), 4.0f64.to_bits()), 0.25f64.to_bits());
        assert_eq!(sqrt(F64, &mut e, 2.0f64.to_bits()), 2.0f64.sqrt().to_bits());
        assert_eq!(e.flags, mx::PE);
    }

    #[test]
    fn division_matches_host_rounding_to_nearest() {
        let mut x = 0x1234_5678_9abc_def1u64;
        for _ in 0..10000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (a, b) = (x & 0x7fef_ffff_ffff_ffff, x.rotate_left(23) & 0x7fef_ffff_ffff_ffff);
            let mut e = env();
            let r = div(F64, &mut e, a, b);
            assert_eq!(r, (f64::from_bits(a) / f64::from_bits(b)).to_bits(), "{a:#x}/{b:#x}");
            let r = add(F64, &mut e, a, b ^ (x & (1 << 63)));
            assert_eq!(r, (f64::from_bits(a) + f64::from_bits(b ^ (x & (1 << 63)))).to_bits());
            let r = sqrt(F64, &mut e, a);
            assert_eq!(r, f64::from_bits(a).sqrt().to_bits());
        }
    }

    #[test]
    fn invalid_operations_give_the_default_nan() {
        let mut e = env();
        assert_eq!(sub(F32, &mut e, F32.inf(), F32.inf()), 0xffc0_0000);
        assert_eq!(e.flags, mx::IE);
        assert_eq!(to_int(F64, &mut e, F64.default_nan(), 32, 0), 0x8000_0000);
    }
}
