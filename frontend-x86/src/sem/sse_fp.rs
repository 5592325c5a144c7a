//! SSE/SSE2/SSE3/SSE4.1 floating point: arithmetic, compares, COMIS/UCOMIS, conversions,
//! RCP/RSQRT, ROUND, DPPS/DPPD, through the portable `softfp` core. Every lane is computed
//! first; MXCSR and the destination change only when no unmasked exception is raised
//! (SDM vol. 1, 11.5.2: pre-computation exceptions stop the operation in all lanes).

use iced_x86::{Mnemonic, OpKind};

use crate::concrete::Concrete;
use crate::exception::{vector, Exception, Result};
use crate::flags;
use crate::insn::Insn;
use crate::operand as op;
use crate::sem::mmx;
use crate::sem::softfp::{self, mx, Env, Fmt, F32, F64};
use crate::sem::sse::{check, read_low, read_x, xmm_index};
use crate::state::{cr4, Width};

/// #XM with CR4.OSXMMEXCPT, else #UD.
fn simd_exception(c: &Concrete<'_>) -> Exception {
    if c.cpu.cr4 & cr4::OSXMMEXCPT != 0 {
        Exception::new(vector::XM)
    } else {
        Exception::UD
    }
}

/// Records the flags `env` raised in MXCSR, or faults when one is unmasked. With an unmasked
/// pre-computation exception only the pre-computation flags are recorded.
pub(crate) fn commit(c: &mut Concrete<'_>, env: &Env) -> Result<()> {
    let masks = (c.cpu.mxcsr >> mx::MASK_SHIFT) & mx::FLAGS;
    let pre = env.flags & mx::PRE;
    if pre & !masks != 0 {
        c.cpu.mxcsr |= pre;
        return Err(simd_exception(c));
    }
    c.cpu.mxcsr |= env.flags;
    if env.flags & !masks != 0 {
        return Err(simd_exception(c));
    }
    Ok(())
}

fn lane(v: u128, f: Fmt, k: u32) -> u64 {
    let bits = f.bits();
    ((v >> (bits * k)) as u64) & (u64::MAX >> (64 - bits))
}

fn set_lane(v: u128, f: Fmt, k: u32, x: u64) -> u128 {
    let bits = f.bits();
    let mask = (u128::from(u64::MAX >> (64 - bits))) << (bits * k);
    (v & !mask) | ((u128::from(x) << (bits * k)) & mask)
}

/// The format and packedness of an SSE FP mnemonic.
fn shape(m: Mnemonic) -> (Fmt, bool) {
    use Mnemonic::*;
    match m {
        Addps | Subps | Mulps | Divps | Minps | Maxps | Sqrtps | Cmpps | Addsubps | Haddps | Hsubps | Roundps => {
            (F32, true)
        }
        Addss | Subss | Mulss | Divss | Minss | Maxss | Sqrtss | Cmpss | Roundss => (F32, false),
        Addpd | Subpd | Mulpd | Divpd | Minpd | Maxpd | Sqrtpd | Cmppd | Addsubpd | Haddpd | Hsubpd | Roundpd => {
            (F64, true)
        }
        _ => (F64, false),
    }
}

/// The second source: 128 bits (aligned) for packed forms, the low lane for scalar ones.
fn source(c: &mut Concrete<'_>, i: &Insn, f: Fmt, packed: bool) -> Result<u128> {
    if packed {
        read_x(c, i, 1, true)
    } else {
        let w = if f == F32 { Width::W32 } else { Width::W64 };
        Ok(u128::from(read_low(c, i, 1, w)?.0))
    }
}

fn dest(i: &Insn) -> Result<usize> {
    xmm_index(i.op_register(0)).ok_or(Exception::UD)
}

/// ADD/SUB/MUL/DIV/MIN/MAX/SQRT/CMP in PS/SS/PD/SD forms, ADDSUB and the horizontal ops.
pub fn arith(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use Mnemonic::*;
    check(c)?;
    let m = i.mnemonic();
    let (f, packed) = shape(m);
    let d = dest(i)?;
    let b = source(c, i, f, packed)?;
    let a = c.cpu.xmm[d];
    let mut env = Env::new(c.cpu.mxcsr);
    let n = if packed { 128 / f.bits() } else { 1 };
    let mut r = a;
    let e = &mut env;
    match m {
        Haddps | Haddpd | Hsubps | Hsubpd => {
            let sub = matches!(m, Hsubps | Hsubpd);
            for k in 0..n {
                let src = if k < n / 2 { a } else { b };
                let j = 2 * (k % (n / 2));
                let (x, y) = (lane(src, f, j), lane(src, f, j + 1));
                let z = softfp::lane(e, |e| if sub { softfp::sub(f, e, x, y) } else { softfp::add(f, e, x, y) });
                r = set_lane(r, f, k, z);
            }
        }
        _ => {
            let pred = i.immediate8();
            for k in 0..n {
                let (x, y) = (lane(a, f, k), lane(b, f, k));
                let z = softfp::lane(e, |e| match m {
                    Addps | Addss | Addpd | Addsd => softfp::add(f, e, x, y),
                    Subps | Subss | Subpd | Subsd => softfp::sub(f, e, x, y),
                    Addsubps | Addsubpd => {
                        if k % 2 == 0 {
                            softfp::sub(f, e, x, y)
                        } else {
                            softfp::add(f, e, x, y)
                        }
                    }
                    Mulps | Mulss | Mulpd | Mulsd => softfp::mul(f, e, x, y),
                    Divps | Divss | Divpd | Divsd => softfp::div(f, e, x, y),
                    Minps | Minss | Minpd | Minsd => softfp::min_max(f, e, x, y, false),
                    Maxps | Maxss | Maxpd | Maxsd => softfp::min_max(f, e, x, y, true),
                    Sqrtps | Sqrtss | Sqrtpd | Sqrtsd => softfp::sqrt(f, e, y),
                    Cmpps | Cmpss | Cmppd | Cmpsd if softfp::compare(f, e, x, y, pred) => u64::MAX,
                    _ => 0,
                });
                r = set_lane(r, f, k, z);
            }
        }
    }
    commit(c, &env)?;
    c.cpu.xmm[d] = r;
    Ok(())
}

/// COMISS/UCOMISS/COMISD/UCOMISD: ZF, PF, CF from the comparison; OF, SF, AF cleared.
pub fn comis(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use std::cmp::Ordering::*;
    check(c)?;
    let m = i.mnemonic();
    let f = if matches!(m, Mnemonic::Comiss | Mnemonic::Ucomiss) { F32 } else { F64 };
    let d = dest(i)?;
    let b = source(c, i, f, false)? as u64;
    let a = lane(c.cpu.xmm[d], f, 0);
    let mut env = Env::new(c.cpu.mxcsr);
    let ordered_only = matches!(m, Mnemonic::Comiss | Mnemonic::Comisd);
    if f.is_snan(a) || f.is_snan(b) || (ordered_only && (f.is_nan(a) || f.is_nan(b))) {
        env.flags |= mx::IE;
    }
    let (a, b) = if f.is_nan(a) || f.is_nan(b) { (a, b) } else { (env.operand(f, a), env.operand(f, b)) };
    let v = match softfp::cmp(f, a, b) {
        None => flags::ZF | flags::PF | flags::CF,
        Some(Greater) => 0,
        Some(Less) => flags::CF,
        Some(Equal) => flags::ZF,
    };
    commit(c, &env)?;
    c.cpu.flags.set_masked(flags::ARITH, v);
    Ok(())
}

/// The rounding control MXCSR selects.
fn mx_rc(c: &Concrete<'_>) -> u32 {
    (c.cpu.mxcsr >> 13) & 3
}

/// Reads an MMX register operand or 64 bits of memory.
fn read_mm_or_m64(c: &mut Concrete<'_>, i: &Insn, n: u32) -> Result<(u64, bool)> {
    match i.op_kind(n) {
        OpKind::Register if i.op_register(n).is_mm() => Ok((c.cpu.fpu.mm(i.op_register(n).number()), true)),
        OpKind::Memory => Ok((op::read(c, i, n, Width::W64)?, false)),
        _ => Err(Exception::UD),
    }
}

/// Every CVT* form (SDM vol. 2): integer and float conversions between XMM registers, general
/// registers, MMX registers and memory. Out-of-range or NaN to integer gives the integer
/// indefinite value.
pub fn convert(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use Mnemonic::*;
    check(c)?;
    mmx::before_transition(c, i)?;
    let m = i.mnemonic();
    let mut env = Env::new(c.cpu.mxcsr);
    let rc = mx_rc(c);
    let e = &mut env;
    match m {
        Cvtsi2ss | Cvtsi2sd => {
            let w = op::op_width(i, 1);
            let v = op::read(c, i, 1, w)?;
            let v = if w == Width::W64 { v as i64 } else { i64::from(v as u32 as i32) };
            let f = if m == Cvtsi2ss { F32 } else { F64 };
            let z = softfp::from_int(f, e, v);
            let d = dest(i)?;
            commit(c, &env)?;
            c.cpu.xmm[d] = set_lane(c.cpu.xmm[d], f, 0, z);
        }
        Cvtss2si | Cvttss2si | Cvtsd2si | Cvttsd2si => {
            let f = if matches!(m, Cvtss2si | Cvttss2si) { F32 } else { F64 };
            let w = op::op_width(i, 0);
            let v = source(c, i, f, false)? as u64;
            let rc = if matches!(m, Cvttss2si | Cvttsd2si) { 3 } else { rc };
            let bits = if w == Width::W64 { 64 } else { 32 };
            let z = softfp::to_int(f, e, v, bits, rc);
            commit(c, &env)?;
            op::write(c, i, 0, w, z)?;
        }
        Cvtss2sd | Cvtsd2ss => {
            let (from, to) = if m == Cvtss2sd { (F32, F64) } else { (F64, F32) };
            let v = source(c, i, from, false)? as u64;
            let z = softfp::convert(from, to, e, v);
            let d = dest(i)?;
            commit(c, &env)?;
            c.cpu.xmm[d] = set_lane(c.cpu.xmm[d], to, 0, z);
        }
        Cvtps2pd | Cvtdq2pd => {
            // The low 64 bits of an XMM register or memory.
            let v = u128::from(read_low(c, i, 1, Width::W64)?.0);
            let mut r = 0u128;
            for k in 0..2 {
                let z = if m == Cvtps2pd {
                    softfp::convert(F32, F64, e, lane(v, F32, k))
                } else {
                    softfp::from_int(F64, e, i64::from(lane(v, F32, k) as u32 as i32))
                };
                r = set_lane(r, F64, k, z);
            }
            let d = dest(i)?;
            commit(c, &env)?;
            c.cpu.xmm[d] = r;
        }
        Cvtpd2ps | Cvtpd2dq | Cvttpd2dq => {
            let v = read_x(c, i, 1, true)?;
            let mut r = 0u128;
            for k in 0..2 {
                let x = lane(v, F64, k);
                let z = match m {
                    Cvtpd2ps => softfp::convert(F64, F32, e, x),
                    Cvtpd2dq => softfp::to_int(F64, e, x, 32, rc),
                    _ => softfp::to_int(F64, e, x, 32, 3),
                };
                r = set_lane(r, F32, k, z);
            }
            let d = dest(i)?;
            commit(c, &env)?;
            c.cpu.xmm[d] = r;
        }
        Cvtdq2ps | Cvtps2dq | Cvttps2dq => {
            let v = read_x(c, i, 1, true)?;
            let mut r = 0u128;
            for k in 0..4 {
                let x = lane(v, F32, k);
                let z = match m {
                    Cvtdq2ps => softfp::from_int(F32, e, i64::from(x as u32 as i32)),
                    Cvtps2dq => softfp::to_int(F32, e, x, 32, rc),
                    _ => softfp::to_int(F32, e, x, 32, 3),
                };
                r = set_lane(r, F32, k, z);
            }
            let d = dest(i)?;
            commit(c, &env)?;
            c.cpu.xmm[d] = r;
        }
        Cvtpi2ps | Cvtpi2pd => {
            let (v, from_mm) = read_mm_or_m64(c, i, 1)?;
            let d = dest(i)?;
            let v = u128::from(v);
            let r = if m == Cvtpi2ps {
                let mut r = c.cpu.xmm[d];
                for k in 0..2 {
                    r = set_lane(r, F32, k, softfp::from_int(F32, e, i64::from(lane(v, F32, k) as u32 as i32)));
                }
                r
            } else {
                let mut r = 0;
                for k in 0..2 {
                    r = set_lane(r, F64, k, softfp::from_int(F64, e, i64::from(lane(v, F32, k) as u32 as i32)));
                }
                r
            };
            commit(c, &env)?;
            if from_mm {
                c.cpu.fpu.enter_mmx();
            }
            c.cpu.xmm[d] = r;
        }
        Cvtps2pi | Cvttps2pi | Cvtpd2pi | Cvttpd2pi => {
            let dst = i.op_register(0);
            if !dst.is_mm() {
                return Err(Exception::UD);
            }
            let (f, v) = if matches!(m, Cvtps2pi | Cvttps2pi) {
                (F32, u128::from(read_low(c, i, 1, Width::W64)?.0))
            } else {
                (F64, read_x(c, i, 1, true)?)
            };
            let rc = if matches!(m, Cvttps2pi | Cvttpd2pi) { 3 } else { rc };
            let mut r = 0u64;
            for k in 0..2 {
                r |= softfp::to_int(f, e, lane(v, f, k), 32, rc) << (32 * k);
            }
            commit(c, &env)?;
            c.cpu.fpu.enter_mmx();
            c.cpu.fpu.set_mm(dst.number(), r);
        }
        _ => return Err(Exception::UD),
    }
    Ok(())
}

/// RCPPS/RCPSS/RSQRTPS/RSQRTSS: approximations (relative error at most 1.5 * 2^-12, SDM).
/// These compute the correctly rounded single-precision value, which is within that bound
/// but not bit-identical to any Intel table. Denormal inputs count as zero, tiny results
/// are flushed, and no MXCSR flag is raised.
pub fn approx(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use Mnemonic::*;
    check(c)?;
    let m = i.mnemonic();
    let packed = matches!(m, Rcpps | Rsqrtps);
    let d = dest(i)?;
    let b = source(c, i, F32, packed)?;
    let mut r = c.cpu.xmm[d];
    let one = 0x3f80_0000u64;
    for k in 0..if packed { 4 } else { 1 } {
        let x = lane(b, F32, k);
        let x = if F32.is_denormal(x) { x & F32.sign_bit() } else { x };
        // Round to nearest with FTZ and every exception masked: the flags are discarded.
        let mut e = Env { rc: 0, ftz: true, daz: true, um: true, om: true, flags: 0 };
        let z = if matches!(m, Rcpps | Rcpss) {
            softfp::div(F32, &mut e, one, x)
        } else if F32.is_nan(x) {
            F32.quiet(x)
        } else if F32.is_zero(x) {
            F32.inf() | (x & F32.sign_bit())
        } else {
            let s = softfp::sqrt(F32, &mut e, x);
            softfp::div(F32, &mut e, one, s)
        };
        r = set_lane(r, F32, k, z);
    }
    c.cpu.xmm[d] = r;
    Ok(())
}

/// ROUNDPS/ROUNDPD/ROUNDSS/ROUNDSD (SSE4.1): imm8[1:0] rounding, imm8[2] use MXCSR.RC,
/// imm8[3] suppress the precision exception.
pub fn round(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c)?;
    let m = i.mnemonic();
    let (f, packed) = shape(m);
    let d = dest(i)?;
    let b = source(c, i, f, packed)?;
    let imm = u32::from(i.immediate8());
    let rc = if imm & 4 != 0 { mx_rc(c) } else { imm & 3 };
    let mut env = Env::new(c.cpu.mxcsr);
    let mut r = c.cpu.xmm[d];
    for k in 0..if packed { 128 / f.bits() } else { 1 } {
        r = set_lane(r, f, k, softfp::round_integral(f, &mut env, lane(b, f, k), rc));
    }
    if imm & 8 != 0 {
        env.flags &= !mx::PE;
    }
    commit(c, &env)?;
    c.cpu.xmm[d] = r;
    Ok(())
}

/// DPPS/DPPD (SSE4.1): products of the lanes selected by imm8[7:4] (others +0), summed
/// pairwise, broadcast to the lanes selected by imm8[3:0].
pub fn dot(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c)?;
    let f = if i.mnemonic() == Mnemonic::Dpps { F32 } else { F64 };
    let n = 128 / f.bits();
    let d = dest(i)?;
    let b = read_x(c, i, 1, true)?;
    let a = c.cpu.xmm[d];
    let imm = u32::from(i.immediate8());
    let mut env = Env::new(c.cpu.mxcsr);
    let e = &mut env;
    let t: Vec<u64> = (0..n)
        .map(|k| {
            if imm & (0x10 << k) != 0 {
                softfp::lane(e, |e| softfp::mul(f, e, lane(a, f, k), lane(b, f, k)))
            } else {
                0
            }
        })
        .collect();
    // Each stage (the products, then each level of sums) completes before the next starts:
    // its flags are recorded, and an unmasked exception in one stops the instruction there.
    commit(c, &env)?;
    env.flags = 0;
    let e = &mut env;
    let sum = if n == 4 {
        let s1 = softfp::lane(e, |e| softfp::add(f, e, t[0], t[1]));
        let s2 = softfp::lane(e, |e| softfp::add(f, e, t[2], t[3]));
        commit(c, &env)?;
        env.flags = 0;
        softfp::lane(&mut env, |e| softfp::add(f, e, s1, s2))
    } else {
        softfp::lane(e, |e| softfp::add(f, e, t[0], t[1]))
    };
    let mut r = 0u128;
    for k in 0..n {
        if imm & (1 << k) != 0 {
            r = set_lane(r, f, k, sum);
        }
    }
    commit(c, &env)?;
    c.cpu.xmm[d] = r;
    Ok(())
}
