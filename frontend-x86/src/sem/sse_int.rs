//! The rest of the integer side of SSE2 (PINSRW/PEXTRW on XMM, MOVQ2DQ/MOVDQ2Q, the
//! non-temporal stores, MASKMOVDQU, the fences and CLFLUSH), SSE3's moves, SSSE3 and SSE4.1's
//! integer instructions, and SSE4.2's PCMPGTQ, CRC32 and POPCNT. Lane arithmetic is on u128
//! values; memory operands are read in full before anything is written.

use iced_x86::{Mnemonic, OpKind};

use crate::concrete::Concrete;
use crate::exception::{Exception, Result};
use crate::flags;
use crate::insn::Insn;
use crate::mem;
use crate::operand as op;
use crate::sem::sse::{check, lanes, mem_at, read_low, read_x, sat_s, sx, write_x, xmm_index};
use crate::state::{Gpr, SegReg, Width};

fn bytes(v: u128) -> [u8; 16] {
    v.to_le_bytes()
}

fn from_bytes(b: [u8; 16]) -> u128 {
    u128::from_le_bytes(b)
}

fn dest(i: &Insn) -> Result<usize> {
    xmm_index(i.op_register(0)).ok_or(Exception::UD)
}

/// Lane `k` of `bits` bits.
fn get(v: u128, bits: u32, k: u32) -> u64 {
    ((v >> (bits * k)) as u64) & (u64::MAX >> (64 - bits))
}

fn put(v: u128, bits: u32, k: u32, x: u64) -> u128 {
    let mask = u128::from(u64::MAX >> (64 - bits)) << (bits * k);
    (v & !mask) | ((u128::from(x) << (bits * k)) & mask)
}

/// Builds a 128-bit value from `128 / bits` lanes computed by `f`.
fn build(bits: u32, f: impl Fn(u32) -> u64) -> u128 {
    (0..128 / bits).fold(0u128, |acc, k| put(acc, bits, k, f(k)))
}

/// Two-operand instructions dst = f(dst, src) with a 128-bit (aligned) source.
pub fn binary(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use Mnemonic::*;
    check(c)?;
    let m = i.mnemonic();
    let b = read_x(c, i, 1, !matches!(m, Lddqu))?;
    let d = dest(i)?;
    let a = c.cpu.xmm[d];
    let imm = if i.op_count() > 2 && i.op_kind(2) == OpKind::Immediate8 { u32::from(i.immediate8()) } else { 0 };
    let x0 = c.cpu.xmm[0];
    let abs = |bits: u32| lanes(b, 0, bits, |x, _| sx(x, bits).unsigned_abs());
    let sign = |bits: u32| {
        lanes(a, b, bits, |x, y| match sx(y, bits).signum() {
            -1 => x.wrapping_neg(),
            0 => 0,
            _ => x,
        })
    };
    // Horizontal pairs: the low half of the result from `a`, the high half from `b`.
    let horiz = |bits: u32, f: &dyn Fn(u64, u64) -> u64| {
        let n = 128 / bits;
        build(bits, |k| {
            let src = if k < n / 2 { a } else { b };
            let j = 2 * (k % (n / 2));
            f(get(src, bits, j), get(src, bits, j + 1))
        })
    };
    let smin = |bits: u32| lanes(a, b, bits, |x, y| if sx(x, bits) < sx(y, bits) { x } else { y });
    let smax = |bits: u32| lanes(a, b, bits, |x, y| if sx(x, bits) > sx(y, bits) { x } else { y });
    let r = match m {
        Movshdup => build(32, |k| get(b, 32, k | 1)),
        Movsldup => build(32, |k| get(b, 32, k & !1)),
        Lddqu | Movntdqa => b,
        Pabsb => abs(8),
        Pabsw => abs(16),
        Pabsd => abs(32),
        Psignb => sign(8),
        Psignw => sign(16),
        Psignd => sign(32),
        Phaddw => horiz(16, &|x, y| x.wrapping_add(y)),
        Phaddd => horiz(32, &|x, y| x.wrapping_add(y)),
        Phaddsw => horiz(16, &|x, y| sat_s(sx(x, 16) + sx(y, 16), 16)),
        Phsubw => horiz(16, &|x, y| x.wrapping_sub(y)),
        Phsubd => horiz(32, &|x, y| x.wrapping_sub(y)),
        Phsubsw => horiz(16, &|x, y| sat_s(sx(x, 16) - sx(y, 16), 16)),
        Pmaddubsw => lanes(a, b, 16, |x, y| {
            let p = |s: u32| i64::from((x >> s) as u8) * i64::from((y >> s) as u8 as i8);
            sat_s(p(0) + p(8), 16)
        }),
        Pmulhrsw => lanes(a, b, 16, |x, y| ((((sx(x, 16) * sx(y, 16)) >> 14) + 1) >> 1) as u64),
        Pshufb => {
            let (ab, bb) = (bytes(a), bytes(b));
            from_bytes(std::array::from_fn(|k| if bb[k] & 0x80 != 0 { 0 } else { ab[usize::from(bb[k] & 15)] }))
        }
        Palignr => {
            let (ab, bb) = (bytes(a), bytes(b));
            from_bytes(std::array::from_fn(|k| {
                let j = k + imm as usize;
                match j {
                    0..=15 => bb[j],
                    16..=31 => ab[j - 16],
                    _ => 0,
                }
            }))
        }
        Blendps => build(32, |k| get(if imm & (1 << k) != 0 { b } else { a }, 32, k)),
        Blendpd => build(64, |k| get(if imm & (1 << k) != 0 { b } else { a }, 64, k)),
        Pblendw => build(16, |k| get(if imm & (1 << k) != 0 { b } else { a }, 16, k)),
        Blendvps => build(32, |k| get(if get(x0, 32, k) >> 31 != 0 { b } else { a }, 32, k)),
        Blendvpd => build(64, |k| get(if get(x0, 64, k) >> 63 != 0 { b } else { a }, 64, k)),
        Pblendvb => build(8, |k| get(if get(x0, 8, k) >> 7 != 0 { b } else { a }, 8, k)),
        Mpsadbw => {
            let (ab, bb) = (bytes(a), bytes(b));
            let (o1, o2) = (((imm >> 2) & 1) as usize * 4, (imm & 3) as usize * 4);
            build(16, |k| (0..4).map(|j| u64::from(ab[o1 + k as usize + j].abs_diff(bb[o2 + j]))).sum())
        }
        Packusdw => build(16, |k| {
            let src = if k < 4 { a } else { b };
            sx(get(src, 32, k % 4), 32).clamp(0, 0xffff) as u64
        }),
        Pcmpeqq => lanes(a, b, 64, |x, y| if x == y { u64::MAX } else { 0 }),
        Pcmpgtq => lanes(a, b, 64, |x, y| if (x as i64) > (y as i64) { u64::MAX } else { 0 }),
        Phminposuw => {
            let (idx, min) = (0..8).map(|k| (k, get(b, 16, k))).min_by_key(|&(k, v)| (v, k)).unwrap_or((0, 0));
            u128::from(min) | u128::from(idx) << 16
        }
        Pmaxsb => smax(8),
        Pmaxsd => smax(32),
        Pminsb => smin(8),
        Pminsd => smin(32),
        Pmaxuw => lanes(a, b, 16, u64::max),
        Pmaxud => lanes(a, b, 32, u64::max),
        Pminuw => lanes(a, b, 16, u64::min),
        Pminud => lanes(a, b, 32, u64::min),
        Pmuldq => lanes(a, b, 64, |x, y| (sx(x, 32) * sx(y, 32)) as u64),
        Pmulld => lanes(a, b, 32, |x, y| x.wrapping_mul(y)),
        _ => return Err(Exception::UD),
    };
    c.cpu.xmm[d] = r;
    Ok(())
}

/// MOVDDUP and PMOVSX/PMOVZX: a source narrower than 128 bits (low bits of an XMM register or
/// unaligned memory of that size).
pub fn widen(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use Mnemonic::*;
    check(c)?;
    let m = i.mnemonic();
    let (from, to) = match m {
        Movddup => (64, 128),
        Pmovsxbw | Pmovzxbw => (8, 16),
        Pmovsxbd | Pmovzxbd => (8, 32),
        Pmovsxbq | Pmovzxbq => (8, 64),
        Pmovsxwd | Pmovzxwd => (16, 32),
        Pmovsxwq | Pmovzxwq => (16, 64),
        _ => (32, 64),
    };
    let src_bits = from * (128 / to);
    let w = match src_bits {
        16 => Width::W16,
        32 => Width::W32,
        _ => Width::W64,
    };
    let v = read_low(c, i, 1, w)?.0;
    let d = dest(i)?;
    let signed = matches!(m, Pmovsxbw | Pmovsxbd | Pmovsxbq | Pmovsxwd | Pmovsxwq | Pmovsxdq);
    let r = if m == Movddup {
        u128::from(v) | u128::from(v) << 64
    } else {
        build(to, |k| {
            let x = (v >> (from * k)) & (u64::MAX >> (64 - from));
            if signed {
                sx(x, from) as u64
            } else {
                x
            }
        })
    };
    c.cpu.xmm[d] = r;
    Ok(())
}

/// PEXTRB/PEXTRW/PEXTRD/PEXTRQ and EXTRACTPS: a lane to a general register (zero-extended) or
/// memory.
pub fn extract(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use Mnemonic::*;
    check(c)?;
    let m = i.mnemonic();
    let s = xmm_index(i.op_register(1)).ok_or(Exception::UD)?;
    let imm = u32::from(i.immediate8());
    let (bits, w) = match m {
        Pextrb => (8, Width::W8),
        Pextrw => (16, Width::W16),
        Pextrd | Extractps => (32, Width::W32),
        _ => (64, Width::W64),
    };
    let k = imm & (128 / bits - 1);
    let v = get(c.cpu.xmm[s], bits, k);
    if i.op_kind(0) == OpKind::Register {
        let rw = op::op_width(i, 0);
        op::write(c, i, 0, rw, v)
    } else {
        op::write(c, i, 0, w, v)
    }
}

/// PINSRB/PINSRW/PINSRD/PINSRQ and INSERTPS.
pub fn insert(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use Mnemonic::*;
    check(c)?;
    let m = i.mnemonic();
    let d = dest(i)?;
    let imm = u32::from(i.immediate8());
    if m == Insertps {
        let (v, dst_lane) = if i.op_kind(1) == OpKind::Register {
            let s = xmm_index(i.op_register(1)).ok_or(Exception::UD)?;
            (get(c.cpu.xmm[s], 32, imm >> 6), (imm >> 4) & 3)
        } else {
            (op::read(c, i, 1, Width::W32)?, (imm >> 4) & 3)
        };
        let mut r = put(c.cpu.xmm[d], 32, dst_lane, v);
        for k in 0..4 {
            if imm & (1 << k) != 0 {
                r = put(r, 32, k, 0);
            }
        }
        c.cpu.xmm[d] = r;
        return Ok(());
    }
    let (bits, w) = match m {
        Pinsrb => (8, Width::W8),
        Pinsrw => (16, Width::W16),
        Pinsrd => (32, Width::W32),
        _ => (64, Width::W64),
    };
    // A register source supplies its low bits (PINSRB/PINSRW name a 32-bit register).
    let v =
        if i.op_kind(1) == OpKind::Register { op::read(c, i, 1, op::op_width(i, 1))? } else { op::read(c, i, 1, w)? };
    let k = imm & (128 / bits - 1);
    c.cpu.xmm[d] = put(c.cpu.xmm[d], bits, k, v);
    Ok(())
}

/// PTEST: ZF when dst AND src is zero, CF when src AND NOT dst is zero.
pub fn ptest(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c)?;
    let b = read_x(c, i, 1, true)?;
    let a = c.cpu.xmm[dest(i)?];
    let mut v = 0;
    if a & b == 0 {
        v |= flags::ZF;
    }
    if !a & b == 0 {
        v |= flags::CF;
    }
    c.cpu.flags.set_masked(flags::ARITH, v);
    Ok(())
}

/// MOVQ2DQ and MOVDQ2Q: between an MMX register and the low half of an XMM register.
pub fn mmx_xmm(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c)?;
    crate::sem::mmx::before_transition(c, i)?;
    let (r0, r1) = (i.op_register(0), i.op_register(1));
    if i.mnemonic() == Mnemonic::Movq2dq {
        let d = xmm_index(r0).ok_or(Exception::UD)?;
        c.cpu.fpu.enter_mmx();
        c.cpu.xmm[d] = u128::from(c.cpu.fpu.mm(r1.number()));
    } else {
        let s = xmm_index(r1).ok_or(Exception::UD)?;
        let v = c.cpu.xmm[s] as u64;
        c.cpu.fpu.enter_mmx();
        c.cpu.fpu.set_mm(r0.number(), v);
    }
    Ok(())
}

/// MOVNTPS/MOVNTPD/MOVNTDQ (aligned 128-bit stores) and MOVNTI (a general register store):
/// the non-temporal hint has no effect here.
pub fn movnt(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    if i.mnemonic() == Mnemonic::Movnti {
        let w = op::op_width(i, 1);
        let v = op::read(c, i, 1, w)?;
        return op::write(c, i, 0, w, v);
    }
    check(c)?;
    let s = xmm_index(i.op_register(1)).ok_or(Exception::UD)?;
    let v = c.cpu.xmm[s];
    write_x(c, i, 0, true, v)
}

/// MASKMOVDQU: the bytes of the first register whose mask byte has its top bit set, to
/// DS:rDI (segment overridable). Every selected byte is checked before any is written.
pub fn maskmovdqu(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c)?;
    let (rs, rm) = (i.op_register(1), i.op_register(2));
    let (s, mk) = match (xmm_index(rs), xmm_index(rm)) {
        (Some(s), Some(mk)) => (s, mk),
        _ => return Err(Exception::UD),
    };
    let aw = op::addr_width(i, c.cpu.mode64());
    let seg = match i.segment_prefix() {
        iced_x86::Register::None => SegReg::Ds,
        r => op::seg_ref(r).unwrap_or(SegReg::Ds),
    };
    let base = c.cpu.reg(Gpr::Rdi, aw);
    let (data, mask) = (bytes(c.cpu.xmm[s]), bytes(c.cpu.xmm[mk]));
    for pass in 0..2 {
        for k in 0..16 {
            if mask[k] & 0x80 == 0 {
                continue;
            }
            let ea = base.wrapping_add(k as u64) & aw.mask();
            if pass == 0 {
                let lin = mem::seg_linear(c.cpu, seg, ea, 1, mem::AccessKind::Write)?;
                mem::translate(c.cpu, c.bus, lin, mem::AccessKind::Write)?;
            } else {
                mem::write(c.cpu, c.bus, seg, ea, Width::W8, u64::from(data[k]))?;
            }
        }
    }
    Ok(())
}

/// CLFLUSH: no cache to flush, but the address is checked like a read.
pub fn clflush(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    let (seg, ea, _) = mem_at(c, i, false)?;
    let lin = mem::seg_linear(c.cpu, seg, ea, 1, mem::AccessKind::Read)?;
    mem::translate(c.cpu, c.bus, lin, mem::AccessKind::Read)?;
    Ok(())
}

/// The carry-less product of two 64-bit values.
pub fn clmul(a: u64, b: u64) -> u128 {
    (0..64).filter(|k| b >> k & 1 != 0).fold(0u128, |acc, k| acc ^ (u128::from(a) << k))
}

/// PCLMULQDQ: imm8 bit 0 picks the destination's quadword, bit 4 the source's.
pub fn pclmulqdq(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c)?;
    let b = read_x(c, i, 1, true)?;
    let d = dest(i)?;
    let imm = i.immediate8();
    let x = (c.cpu.xmm[d] >> (64 * u32::from(imm & 1))) as u64;
    let y = (b >> (64 * u32::from((imm >> 4) & 1))) as u64;
    c.cpu.xmm[d] = clmul(x, y);
    Ok(())
}

/// The reflected CRC-32C (Castagnoli) polynomial CRC32 uses.
const CRC32C: u32 = 0x82f6_3b78;

/// CRC-32C of the low `bytes` bytes of `v`, continuing from `crc` (no inversion, as CRC32).
pub fn crc32c(mut crc: u32, v: u64, bytes: u32) -> u32 {
    for k in 0..bytes {
        crc ^= u32::from((v >> (8 * k)) as u8);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ CRC32C } else { crc >> 1 };
        }
    }
    crc
}

/// CRC32 r32/r64, r/m8/16/32/64 (SSE4.2). Not gated by CR4.OSFXSR.
pub fn crc32(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    let w = op::op_width(i, 1);
    let v = op::read(c, i, 1, w)?;
    let acc = op::read(c, i, 0, Width::W32)? as u32;
    let r = crc32c(acc, v, w.bits() / 8);
    let dw = op::op_width(i, 0);
    op::write(c, i, 0, dw, u64::from(r))
}

/// POPCNT: ZF when the source is zero, the other arithmetic flags cleared.
pub fn popcnt(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    let w = op::op_width(i, 0);
    let v = op::read(c, i, 1, w)?;
    op::write(c, i, 0, w, u64::from(v.count_ones()))?;
    c.cpu.flags.set_masked(flags::ARITH, if v == 0 { flags::ZF } else { 0 });
    Ok(())
}

/// The element-wise core of PCMPxSTRx (SDM vol. 2, 4.1): IntRes2 for `a` (the first operand,
/// `la` valid elements) against `b` (`lb` valid) under control byte `imm`, with `n` elements.
pub fn pcmpstr_core(a: u128, b: u128, la: usize, lb: usize, imm: u8) -> (u32, usize) {
    let words = imm & 1 != 0;
    let signed = imm & 2 != 0;
    let n = if words { 8 } else { 16 };
    let bits = if words { 16 } else { 8 };
    let elem = |v: u128, k: usize| -> i64 {
        let x = get(v, bits, k as u32);
        if signed {
            sx(x, bits)
        } else {
            x as i64
        }
    };
    let agg = (imm >> 2) & 3;
    // BoolRes[i][j]: a[i] against b[j], with the validity overrides of table 4-7.
    let bool_res = |i: usize, j: usize| -> bool {
        let (va, vb) = (i < la, j < lb);
        match (va, vb) {
            (true, true) => match agg {
                1 => {
                    if i.is_multiple_of(2) {
                        elem(b, j) >= elem(a, i)
                    } else {
                        elem(b, j) <= elem(a, i)
                    }
                }
                _ => elem(a, i) == elem(b, j),
            },
            (false, false) => agg >= 2,
            (false, true) => agg == 3,
            (true, false) => false,
        }
    };
    let mut res1 = 0u32;
    for j in 0..n {
        let bit = match agg {
            0 => (0..n).any(|i| bool_res(i, j)),
            1 => (0..n).step_by(2).any(|i| bool_res(i, j) && bool_res(i + 1, j)),
            2 => bool_res(j, j),
            _ => (0..n - j).all(|i| bool_res(i, j + i)),
        };
        res1 |= u32::from(bit) << j;
    }
    let all = (1u32 << n) - 1;
    let valid2 = (1u32 << lb) - 1;
    let res2 = match (imm >> 4) & 3 {
        1 => !res1 & all,
        3 => (res1 ^ valid2) & all,
        _ => res1,
    };
    (res2, n)
}

/// PCMPESTRI/PCMPESTRM/PCMPISTRI/PCMPISTRM (SSE4.2): explicit lengths from EAX/EDX (RAX/RDX
/// with REX.W), or implicit ones (the first zero element); the index to ECX or the mask to
/// XMM0; CF, ZF, SF, OF from the result and lengths, AF and PF cleared.
pub fn pcmpstr(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use Mnemonic::*;
    check(c)?;
    let m = i.mnemonic();
    let imm = i.immediate8();
    let b = read_x(c, i, 1, false)?;
    let a = c.cpu.xmm[dest(i)?];
    let words = imm & 1 != 0;
    let (n, bits) = if words { (8usize, 16) } else { (16, 8) };
    let (la, lb) = if matches!(m, Pcmpestri | Pcmpestrm) {
        let len = |g: Gpr| -> usize {
            let wide = matches!(
                i.raw().code(),
                iced_x86::Code::Pcmpestri64_xmm_xmmm128_imm8 | iced_x86::Code::Pcmpestrm64_xmm_xmmm128_imm8
            );
            let v =
                if wide { c.cpu.reg(g, Width::W64) as i64 } else { i64::from(c.cpu.reg(g, Width::W32) as u32 as i32) };
            v.unsigned_abs().min(n as u64) as usize
        };
        (len(Gpr::Rax), len(Gpr::Rdx))
    } else {
        let len = |v: u128| (0..n).find(|&k| get(v, bits, k as u32) == 0).unwrap_or(n);
        (len(a), len(b))
    };
    let (res2, n) = pcmpstr_core(a, b, la, lb, imm);
    let mut f = 0;
    if res2 != 0 {
        f |= flags::CF;
    }
    if lb < n {
        f |= flags::ZF;
    }
    if la < n {
        f |= flags::SF;
    }
    if res2 & 1 != 0 {
        f |= flags::OF;
    }
    if matches!(m, Pcmpestri | Pcmpistri) {
        let idx = if res2 == 0 {
            n as u32
        } else if imm & 0x40 != 0 {
            31 - res2.leading_zeros()
        } else {
            res2.trailing_zeros()
        };
        c.cpu.set_reg(Gpr::Rcx, Width::W32, u64::from(idx));
    } else {
        c.cpu.xmm[0] = if imm & 0x40 != 0 {
            build(bits, |k| if res2 & (1 << k) != 0 { u64::MAX } else { 0 })
        } else {
            u128::from(res2)
        };
    }
    c.cpu.flags.set_masked(flags::ARITH, f);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_of_the_check_string() {
        // The standard check value of CRC-32C for "123456789" (with the usual inversions).
        let crc = b"123456789".iter().fold(!0u32, |acc, &b| crc32c(acc, u64::from(b), 1));
        assert_eq!(!crc, 0xe306_9283);
    }
}
