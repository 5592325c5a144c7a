//! The SSE register file, MXCSR, FXSAVE/FXRSTOR, the SSE/SSE2 moves and packed integer and
//! logic instructions, and `resolve`, which maps every SSE-family mnemonic (SSE to SSE4.2,
//! XSAVE) to its helper here or in `sse_fp`, `sse_int` and `xsave`. MMX-register forms are
//! left to `mmx::resolve`.

use iced_x86::{Mnemonic, OpKind, Register};

use crate::bus::CpuBus;
use crate::concrete::Concrete;
use crate::emit::Emit;
use crate::exception::{Exception, Result};
use crate::insn::Insn;
use crate::mem;
use crate::operand as op;
use crate::sem::{sse_fp, sse_int, vec, xsave, Op};
use crate::state::{cr0, CpuState, SegReg, Width};

/// MXCSR bits this CPU accepts (DAZ included, as FXSAVE reports on current CPUs): a write
/// of any other bit is #GP(0).
pub const MXCSR_MASK: u32 = 0xffff;

/// The SSE-family instruction `i` resolves to, or None when it is not one (or is an MMX form).
pub fn resolve(i: &Insn) -> Option<Op> {
    use Mnemonic::*;
    Some(match i.mnemonic() {
        Movss | Movsd => Op::Helper(scalar_move),
        Movlps | Movlpd | Movhps | Movhpd | Movlhps | Movhlps => Op::Helper(half_move),
        Shufps | Shufpd => Op::Helper(shuf),
        Movmskps | Movmskpd => Op::Helper(movmsk),
        Movd | Movq if !i.op_register(0).is_mm() && !i.op_register(1).is_mm() => Op::Helper(movd_movq),
        // PSHUFD/PSHUFLW/PSHUFHW, the shifts by an immediate, the compares, saturating and
        // averaging arithmetic, PMULLW, min/max and the interleaves are `vec`'s (resolved
        // before this).
        Pslldq | Psrldq if !i.op_register(0).is_mm() && i.op_kind(i.op_count() - 1) == OpKind::Immediate8 => {
            Op::Helper(packed_imm)
        }
        Pmulhw | Pmulhuw | Pmuludq | Pmaddwd | Psadbw | Packsswb | Packssdw | Packuswb | Psllw | Pslld | Psllq
        | Psrlw | Psrld | Psrlq | Psraw | Psrad
            if !i.op_register(0).is_mm() =>
        {
            Op::Helper(packed)
        }
        Pmovmskb if i.op_register(1).is_xmm() => Op::Helper(pmovmskb),
        Addps | Addss | Addpd | Addsd | Subps | Subss | Subpd | Subsd | Mulps | Mulss | Mulpd | Mulsd | Divps
        | Divss | Divpd | Divsd | Minps | Minss | Minpd | Minsd | Maxps | Maxss | Maxpd | Maxsd | Sqrtps | Sqrtss
        | Sqrtpd | Sqrtsd | Cmpps | Cmpss | Cmppd | Cmpsd | Addsubps | Addsubpd | Haddps | Haddpd | Hsubps | Hsubpd => {
            Op::Helper(sse_fp::arith)
        }
        Comiss | Ucomiss | Comisd | Ucomisd => Op::Helper(sse_fp::comis),
        Cvtsi2ss | Cvtsi2sd | Cvtss2si | Cvttss2si | Cvtsd2si | Cvttsd2si | Cvtss2sd | Cvtsd2ss | Cvtps2pd
        | Cvtdq2pd | Cvtpd2ps | Cvtpd2dq | Cvttpd2dq | Cvtdq2ps | Cvtps2dq | Cvttps2dq | Cvtpi2ps | Cvtpi2pd
        | Cvtps2pi | Cvttps2pi | Cvtpd2pi | Cvttpd2pi => Op::Helper(sse_fp::convert),
        Rcpps | Rcpss | Rsqrtps | Rsqrtss => Op::Helper(sse_fp::approx),
        Roundps | Roundpd | Roundss | Roundsd => Op::Helper(sse_fp::round),
        Dpps | Dppd => Op::Helper(sse_fp::dot),
        Pabsb | Pabsw | Pabsd | Psignb | Psignw | Psignd | Phaddw | Phaddd | Phaddsw | Phsubw | Phsubd | Phsubsw
        | Pmaddubsw | Pmulhrsw | Pshufb | Palignr
            if !i.op_register(0).is_mm() =>
        {
            Op::Helper(sse_int::binary)
        }
        Movshdup | Movsldup | Lddqu | Movntdqa | Blendps | Blendpd | Pblendw | Blendvps | Blendvpd | Pblendvb
        | Mpsadbw | Packusdw | Pcmpeqq | Pcmpgtq | Phminposuw | Pmaxsb | Pmaxsd | Pminsb | Pminsd | Pmaxuw | Pmaxud
        | Pminuw | Pminud | Pmuldq | Pmulld => Op::Helper(sse_int::binary),
        Movddup | Pmovsxbw | Pmovsxbd | Pmovsxbq | Pmovsxwd | Pmovsxwq | Pmovsxdq | Pmovzxbw | Pmovzxbd | Pmovzxbq
        | Pmovzxwd | Pmovzxwq | Pmovzxdq => Op::Helper(sse_int::widen),
        Pextrw if !i.op_register(1).is_xmm() => return None,
        Pinsrw if !i.op_register(0).is_xmm() => return None,
        Pextrb | Pextrw | Pextrd | Pextrq | Extractps => Op::Helper(sse_int::extract),
        Pinsrb | Pinsrw | Pinsrd | Pinsrq | Insertps => Op::Helper(sse_int::insert),
        Ptest => Op::Helper(sse_int::ptest),
        Movq2dq | Movdq2q => Op::Helper(sse_int::mmx_xmm),
        Movntps | Movntpd | Movntdq | Movnti => Op::Helper(sse_int::movnt),
        Maskmovdqu => Op::Helper(sse_int::maskmovdqu),
        Lfence | Sfence | Mfence => Op::Nop,
        Clflush => Op::Helper(sse_int::clflush),
        Crc32 => Op::Helper(sse_int::crc32),
        Pclmulqdq => Op::Helper(sse_int::pclmulqdq),
        Pcmpestri | Pcmpestrm | Pcmpistri | Pcmpistrm => Op::Helper(sse_int::pcmpstr),
        Popcnt => Op::Helper(sse_int::popcnt),
        Ldmxcsr | Stmxcsr => Op::Helper(mxcsr),
        Fxsave | Fxsave64 | Fxrstor | Fxrstor64 => Op::Helper(fxsave_fxrstor),
        Xsave | Xsave64 | Xsaveopt | Xsaveopt64 | Xrstor | Xrstor64 => Op::Helper(xsave::xsave_xrstor),
        Xgetbv | Xsetbv => Op::Helper(xsave::xgetbv_xsetbv),
        _ => return None,
    })
}

pub use crate::sem::vec::check;

pub(crate) fn xmm_index(r: Register) -> Option<usize> {
    r.is_xmm().then(|| r.number())
}

/// The memory operand's segment and offset, with the 16-byte alignment check when `aligned`.
pub(crate) fn mem_at(c: &mut Concrete<'_>, i: &Insn, aligned: bool) -> Result<(SegReg, u64, Width)> {
    vec::mem_operand(c, i, aligned)
}

pub(crate) fn load128(c: &mut Concrete<'_>, seg: SegReg, ea: u64, aw: Width) -> Result<u128> {
    // Both halves are checked before either is used: a fault leaves nothing changed.
    let lo = mem::read(c.cpu, c.bus, seg, ea, Width::W64)?;
    let hi = mem::read(c.cpu, c.bus, seg, ea.wrapping_add(8) & aw.mask(), Width::W64)?;
    Ok(u128::from(lo) | (u128::from(hi) << 64))
}

/// The checks of a 16-byte store at `seg:ea` (8-byte halves at `ea` and `ea + 8`, wrapping
/// at the address size `aw`), made before anything is written: the segment and the pages of
/// the high half, then of the low half (each page translated once). Gives the physical page
/// numbers touched (unused slots repeat the first).
fn store128_pages(cpu: &mut CpuState, bus: &mut dyn CpuBus, seg: SegReg, ea: u64, aw: Width) -> Result<[u64; 4]> {
    let hi_ea = ea.wrapping_add(8) & aw.mask();
    let mut lin_pages = [u64::MAX; 4];
    let mut pages = [0; 4];
    let mut n = 0;
    for off in [hi_ea, ea] {
        let lin = mem::seg_linear(cpu, seg, off, 8, mem::AccessKind::Write)?;
        for at in [lin, mem::wrap_lin(cpu, lin.wrapping_add(7))] {
            if !lin_pages[..n].contains(&(at >> 12)) {
                pages[n] = mem::translate(cpu, bus, at, mem::AccessKind::Write)? >> 12;
                lin_pages[n] = at >> 12;
                n += 1;
            }
        }
    }
    for k in n..4 {
        pages[k] = pages[0];
    }
    Ok(pages)
}

fn store128_halves(cpu: &mut CpuState, bus: &mut dyn CpuBus, seg: SegReg, ea: u64, aw: Width, v: u128) -> Result<()> {
    mem::write(cpu, bus, seg, ea, Width::W64, v as u64)?;
    mem::write(cpu, bus, seg, ea.wrapping_add(8) & aw.mask(), Width::W64, (v >> 64) as u64)
}

/// Writes 16 bytes at `seg:ea`; a fault writes nothing.
pub(crate) fn store128(c: &mut Concrete<'_>, seg: SegReg, ea: u64, aw: Width, v: u128) -> Result<()> {
    store128_pages(c.cpu, c.bus, seg, ea, aw)?;
    store128_halves(c.cpu, c.bus, seg, ea, aw, v)
}

/// [`store128`] for compiled code: `Ok(false)`, writing nothing, when a byte is on a page
/// holding decoded code (the interpreter then runs the instruction).
pub fn store128_unless_code(
    cpu: &mut CpuState,
    bus: &mut dyn CpuBus,
    seg: SegReg,
    ea: u64,
    aw: Width,
    v: u128,
) -> Result<bool> {
    let pages = store128_pages(cpu, bus, seg, ea, aw)?;
    if pages.iter().any(|&p| cpu.code.contains(p)) {
        return Ok(false);
    }
    store128_halves(cpu, bus, seg, ea, aw, v)?;
    Ok(true)
}

/// Reads operand `n` as 128 bits (an XMM register or 16 bytes of memory).
pub(crate) fn read_x(c: &mut Concrete<'_>, i: &Insn, n: u32, aligned: bool) -> Result<u128> {
    vec::read(c, i, n, aligned)
}

/// Writes operand `n` as 128 bits (an XMM register or 16 bytes of memory).
pub(crate) fn write_x(c: &mut Concrete<'_>, i: &Insn, n: u32, aligned: bool, v: u128) -> Result<()> {
    vec::write(c, i, n, aligned, v)
}

/// MOVD/MOVQ between XMM registers, general registers and memory. Into an XMM register the
/// upper bits are zeroed.
pub fn movd_movq(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c)?;
    let to_xmm = i.op_kind(0) == OpKind::Register && i.op_register(0).is_xmm();
    if to_xmm {
        let v = match i.op_kind(1) {
            OpKind::Register if i.op_register(1).is_xmm() => c.cpu.xmm[i.op_register(1).number()] as u64,
            _ => {
                let w = if i.mnemonic() == Mnemonic::Movd { Width::W32 } else { Width::W64 };
                op::read(c, i, 1, w)?
            }
        };
        c.cpu.xmm[i.op_register(0).number()] = u128::from(v);
        Ok(())
    } else {
        let src = xmm_index(i.op_register(1)).ok_or(Exception::UD)?;
        let w = if i.mnemonic() == Mnemonic::Movd { Width::W32 } else { Width::W64 };
        let v = c.cpu.xmm[src] as u64 & w.mask();
        op::write(c, i, 0, w, v)
    }
}

/// Applies `f` lane by lane to `a` and `b` split into `bits`-bit lanes.
pub(crate) fn lanes(a: u128, b: u128, bits: u32, f: impl Fn(u64, u64) -> u64) -> u128 {
    let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
    (0..128 / bits).fold(0u128, |acc, k| {
        let sh = k * bits;
        let x = (a >> sh) as u64 & mask;
        let y = (b >> sh) as u64 & mask;
        acc | (u128::from(f(x, y) & mask) << sh)
    })
}

/// Two-operand packed integer instructions (the ones not exact as vector operations: those are
/// `vec`'s): dst = dst op src.
pub fn packed(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use Mnemonic::*;
    check(c)?;
    let b = read_x(c, i, 1, true)?;
    let a = read_x(c, i, 0, true)?;
    let r = match i.mnemonic() {
        Pmulhw => lanes(a, b, 16, |x, y| ((sx(x, 16) * sx(y, 16)) >> 16) as u64),
        Pmulhuw => lanes(a, b, 16, |x, y| (x * y) >> 16),
        Pmuludq => lanes(a, b, 64, |x, y| (x & 0xffff_ffff) * (y & 0xffff_ffff)),
        Pmaddwd => lanes(a, b, 32, |x, y| {
            let lo = sx(x & 0xffff, 16) * sx(y & 0xffff, 16);
            let hi = sx(x >> 16, 16) * sx(y >> 16, 16);
            lo.wrapping_add(hi) as u64
        }),
        Psadbw => {
            let sad = |half: u32| {
                (0..8)
                    .map(|k| ((a >> (64 * half + 8 * k)) as u8).abs_diff((b >> (64 * half + 8 * k)) as u8) as u128)
                    .sum::<u128>()
            };
            sad(0) | (sad(1) << 64)
        }
        Packsswb => pack(a, b, 16, 128, |v| sat_s(sx(v, 16), 8)),
        Packssdw => pack(a, b, 32, 128, |v| sat_s(sx(v, 32), 16)),
        Packuswb => pack(a, b, 16, 128, |v| sx(v, 16).clamp(0, 0xff) as u64),
        Psllw | Pslld | Psllq | Psrlw | Psrld | Psrlq | Psraw | Psrad => shift_by(i.mnemonic(), a, b as u64),
        _ => return Err(Exception::UD),
    };
    write_x(c, i, 0, true, r)
}

/// Sign-extends the low `bits` of `v`.
pub(crate) fn sx(v: u64, bits: u32) -> i64 {
    ((v << (64 - bits)) as i64) >> (64 - bits)
}

/// Signed saturation of `v` to `bits`.
pub(crate) fn sat_s(v: i64, bits: u32) -> u64 {
    let max = (1i64 << (bits - 1)) - 1;
    v.clamp(-max - 1, max) as u64
}

/// PUNPCKL/H: the low (or high) halves' lanes of `a` and `b` (registers of `width` bits: 128,
/// or 64 for MMX), interleaved a, b, a, b...
pub(crate) fn interleave(a: u128, b: u128, bits: u32, high: bool, width: u32) -> u128 {
    let n = width / 2 / bits;
    let mask = if bits == 64 { u128::from(u64::MAX) } else { (1u128 << bits) - 1 };
    let base = if high { width / 2 } else { 0 };
    (0..n).fold(0u128, |acc, k| {
        let x = (a >> (base + k * bits)) & mask;
        let y = (b >> (base + k * bits)) & mask;
        acc | (x << (2 * k * bits)) | (y << ((2 * k + 1) * bits))
    })
}

/// PACKSS/PACKUS: `a`'s then `b`'s `from`-bit lanes (registers of `width` bits), each narrowed
/// by `f` to half the width.
pub(crate) fn pack(a: u128, b: u128, from: u32, width: u32, f: impl Fn(u64) -> u64) -> u128 {
    let to = from / 2;
    let n = width / from;
    let mask = (1u64 << from) - 1;
    let out_mask = (1u128 << to) - 1;
    (0..2 * n).fold(0u128, |acc, k| {
        let src = if k < n { a } else { b };
        let v = (src >> ((k % n) * from)) as u64 & mask;
        acc | ((u128::from(f(v)) & out_mask) << (k * to))
    })
}

/// PSLL/PSRL/PSRA by a count (from an XMM register, memory or an immediate): counts past the
/// lane width give zero (or all sign bits for PSRA).
pub(crate) fn shift_by(m: Mnemonic, a: u128, count: u64) -> u128 {
    use Mnemonic::*;
    let bits = match m {
        Psllw | Psrlw | Psraw => 16,
        Pslld | Psrld | Psrad => 32,
        _ => 64,
    };
    lanes(a, 0, bits, |x, _| match m {
        Psllw | Pslld | Psllq => {
            if count >= u64::from(bits) {
                0
            } else {
                x << count
            }
        }
        Psrlw | Psrld | Psrlq => {
            if count >= u64::from(bits) {
                0
            } else {
                x >> count
            }
        }
        _ => (sx(x, bits) >> count.min(u64::from(bits) - 1)) as u64,
    })
}

/// PSLLDQ/PSRLDQ (the other XMM shifts by an immediate and PSHUFD/LW/HW are `vec`'s).
pub fn packed_imm(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use Mnemonic::*;
    check(c)?;
    let m = i.mnemonic();
    let imm = u64::from(i.immediate8());
    let a = read_x(c, i, 0, true)?;
    let r = match m {
        Pslldq => {
            if imm > 15 {
                0
            } else {
                a << (8 * imm)
            }
        }
        Psrldq => {
            if imm > 15 {
                0
            } else {
                a >> (8 * imm)
            }
        }
        _ => return Err(Exception::UD),
    };
    write_x(c, i, 0, true, r)
}

/// PMOVMSKB r32/r64, xmm: the sign bit of each byte.
pub fn pmovmskb(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c)?;
    let v = read_x(c, i, 1, true)?;
    let m = (0..16).fold(0u64, |acc, k| acc | (((v >> (8 * k + 7)) & 1) as u64) << k);
    let w = op::op_width(i, 0);
    op::write(c, i, 0, w, m)
}

/// LDMXCSR and STMXCSR.
pub fn mxcsr(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c)?;
    if i.mnemonic() == Mnemonic::Ldmxcsr {
        let v = op::read(c, i, 0, Width::W32)? as u32;
        if v & !MXCSR_MASK != 0 {
            return Err(Exception::gp(0));
        }
        c.cpu.mxcsr = v;
        Ok(())
    } else {
        let v = u64::from(c.cpu.mxcsr);
        op::write(c, i, 0, Width::W32, v)
    }
}

/// The 512-byte legacy (FXSAVE) image of the x87 and SSE state: SDM vol. 1, table 10-2.
/// `wide` selects the REX.W layout (64-bit FIP/FDP); XMM8-15 only when `nxmm` is 16.
pub(crate) fn legacy_image(cpu: &crate::state::CpuState, wide: bool, nxmm: usize) -> [u8; 512] {
    let f = cpu.fpu;
    let mut img = [0u8; 512];
    img[0..2].copy_from_slice(&f.fcw.to_le_bytes());
    img[2..4].copy_from_slice(&f.fsw.to_le_bytes());
    img[4] = f.ftw;
    img[6..8].copy_from_slice(&f.fop.to_le_bytes());
    if wide {
        img[8..16].copy_from_slice(&f.fip.to_le_bytes());
        img[16..24].copy_from_slice(&f.fdp.to_le_bytes());
    } else {
        img[8..12].copy_from_slice(&(f.fip as u32).to_le_bytes());
        img[12..14].copy_from_slice(&f.fcs.to_le_bytes());
        img[16..20].copy_from_slice(&(f.fdp as u32).to_le_bytes());
        img[20..22].copy_from_slice(&f.fds.to_le_bytes());
    }
    img[24..28].copy_from_slice(&cpu.mxcsr.to_le_bytes());
    img[28..32].copy_from_slice(&MXCSR_MASK.to_le_bytes());
    for (k, st) in f.st.iter().enumerate() {
        img[32 + 16 * k..42 + 16 * k].copy_from_slice(st);
    }
    for k in 0..nxmm {
        img[160 + 16 * k..176 + 16 * k].copy_from_slice(&cpu.xmm[k].to_le_bytes());
    }
    img
}

pub(crate) fn img_word(img: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([img[o], img[o + 1]])
}

pub(crate) fn img_dword(img: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([img[o], img[o + 1], img[o + 2], img[o + 3]])
}

/// The x87 part (bytes 0-23 and 32-159) of a legacy image, as FXRSTOR loads it.
pub(crate) fn load_x87(cpu: &mut crate::state::CpuState, img: &[u8; 512], wide: bool) {
    let mut f = cpu.fpu;
    f.fcw = img_word(img, 0);
    f.fsw = img_word(img, 2);
    f.ftw = img[4];
    f.fop = img_word(img, 6) & 0x7ff;
    if wide {
        f.fip = u64::from(img_dword(img, 8)) | u64::from(img_dword(img, 12)) << 32;
        f.fdp = u64::from(img_dword(img, 16)) | u64::from(img_dword(img, 20)) << 32;
    } else {
        f.fip = u64::from(img_dword(img, 8));
        f.fcs = img_word(img, 12);
        f.fdp = u64::from(img_dword(img, 16));
        f.fds = img_word(img, 20);
    }
    for (k, st) in f.st.iter_mut().enumerate() {
        st.copy_from_slice(&img[32 + 16 * k..42 + 16 * k]);
    }
    cpu.fpu = f;
}

/// The XMM registers of a legacy image.
pub(crate) fn load_xmm(cpu: &mut crate::state::CpuState, img: &[u8; 512], nxmm: usize) {
    for k in 0..nxmm {
        let b: [u8; 16] = img[160 + 16 * k..176 + 16 * k].try_into().unwrap_or([0; 16]);
        cpu.xmm[k] = u128::from_le_bytes(b);
    }
}

/// FXSAVE and FXRSTOR (and their REX.W forms with 64-bit FIP/FDP): the 512-byte image of
/// SDM vol. 1, table 10-2. XMM8-15 only in 64-bit mode.
pub fn fxsave_fxrstor(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    if c.cpu.cr0 & cr0::EM != 0 {
        return Err(Exception::UD);
    }
    if c.cpu.cr0 & cr0::TS != 0 {
        return Err(Exception::NM);
    }
    let (seg, ea, aw) = mem_at(c, i, true)?;
    let wide = matches!(i.mnemonic(), Mnemonic::Fxsave64 | Mnemonic::Fxrstor64);
    let nxmm = if c.mode64() { 16 } else { 8 };
    let at = |off: u64| ea.wrapping_add(off) & aw.mask();
    if matches!(i.mnemonic(), Mnemonic::Fxsave | Mnemonic::Fxsave64) {
        // The 512 bytes span at most two pages: check both ends first, so a fault writes
        // nothing.
        for off in [0, 511] {
            let lin = mem::seg_linear(c.cpu, seg, at(off), 1, mem::AccessKind::Write)?;
            mem::translate(c.cpu, c.bus, lin, mem::AccessKind::Write)?;
        }
        let img = legacy_image(c.cpu, wide, nxmm);
        // Bytes 416-511 are not written by the CPU: only the defined part is stored.
        let defined = 160 + 16 * nxmm;
        for (k, chunk) in img[..defined].chunks(8).enumerate() {
            let v = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            mem::write(c.cpu, c.bus, seg, at(8 * k as u64), Width::W64, v)?;
        }
        Ok(())
    } else {
        let mut img = [0u8; 512];
        for k in 0..64u64 {
            let v = mem::read(c.cpu, c.bus, seg, at(8 * k), Width::W64)?;
            img[8 * k as usize..8 * k as usize + 8].copy_from_slice(&v.to_le_bytes());
        }
        let mx = img_dword(&img, 24);
        if mx & !MXCSR_MASK != 0 {
            return Err(Exception::gp(0));
        }
        load_x87(c.cpu, &img, wide);
        c.cpu.mxcsr = mx;
        load_xmm(c.cpu, &img, nxmm);
        crate::sem::mmx::ferr_follows_es(c);
        Ok(())
    }
}

/// Reads the low `w` bits of operand `n`: an XMM register's low lane or memory of that size.
pub(crate) fn read_low(c: &mut Concrete<'_>, i: &Insn, n: u32, w: Width) -> Result<(u64, bool)> {
    match i.op_kind(n) {
        OpKind::Register => {
            let x = xmm_index(i.op_register(n)).ok_or(Exception::UD)?;
            Ok((c.cpu.xmm[x] as u64 & w.mask(), false))
        }
        OpKind::Memory => Ok((op::read(c, i, n, w)?, true)),
        _ => Err(Exception::UD),
    }
}

/// MOVSS and MOVSD (the SSE2 scalar move): register to register replaces the low lane,
/// memory to register zeroes the rest, register to memory stores the low lane.
pub fn scalar_move(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c)?;
    let w = if i.mnemonic() == Mnemonic::Movss { Width::W32 } else { Width::W64 };
    if i.op_kind(0) == OpKind::Memory {
        let (v, _) = read_low(c, i, 1, w)?;
        return op::write(c, i, 0, w, v);
    }
    let d = xmm_index(i.op_register(0)).ok_or(Exception::UD)?;
    let (v, from_mem) = read_low(c, i, 1, w)?;
    let keep = if from_mem { 0 } else { c.cpu.xmm[d] & !u128::from(w.mask()) };
    c.cpu.xmm[d] = keep | u128::from(v);
    Ok(())
}

/// MOVLPS/MOVLPD, MOVHPS/MOVHPD (64-bit halves to and from memory), MOVLHPS and MOVHLPS.
pub fn half_move(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use Mnemonic::*;
    check(c)?;
    let m = i.mnemonic();
    let high = matches!(m, Movhps | Movhpd);
    const LO: u128 = u64::MAX as u128;
    if i.op_kind(0) == OpKind::Memory {
        let s = xmm_index(i.op_register(1)).ok_or(Exception::UD)?;
        let v = if high { (c.cpu.xmm[s] >> 64) as u64 } else { c.cpu.xmm[s] as u64 };
        return op::write(c, i, 0, Width::W64, v);
    }
    let d = xmm_index(i.op_register(0)).ok_or(Exception::UD)?;
    let src = match m {
        Movlhps | Movhlps => {
            let s = xmm_index(i.op_register(1)).ok_or(Exception::UD)?;
            let v = c.cpu.xmm[s];
            if m == Movlhps {
                v as u64
            } else {
                (v >> 64) as u64
            }
        }
        _ => op::read(c, i, 1, Width::W64)?,
    };
    let cur = c.cpu.xmm[d];
    c.cpu.xmm[d] =
        if high || m == Movlhps { (cur & LO) | (u128::from(src) << 64) } else { (cur & !LO) | u128::from(src) };
    Ok(())
}

/// SHUFPS and SHUFPD: the low result lanes from the destination, the high ones from the
/// source, each picked by the immediate.
pub fn shuf(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c)?;
    let imm = u64::from(i.immediate8());
    let b = read_x(c, i, 1, true)?;
    let a = read_x(c, i, 0, true)?;
    let r = if i.mnemonic() == Mnemonic::Shufps {
        let lane = |v: u128, k: u64| (v >> (32 * k)) & 0xffff_ffff;
        lane(a, imm & 3) | lane(a, (imm >> 2) & 3) << 32 | lane(b, (imm >> 4) & 3) << 64 | lane(b, (imm >> 6) & 3) << 96
    } else {
        let lane = |v: u128, k: u64| (v >> (64 * k)) & u128::from(u64::MAX);
        lane(a, imm & 1) | lane(b, (imm >> 1) & 1) << 64
    };
    write_x(c, i, 0, true, r)
}

/// MOVMSKPS and MOVMSKPD: the sign bits of the lanes into a general register.
pub fn movmsk(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c)?;
    let v = read_x(c, i, 1, true)?;
    let (n, bits) = if i.mnemonic() == Mnemonic::Movmskps { (4, 32) } else { (2, 64) };
    let m = (0..n).fold(0u64, |acc, k| acc | (((v >> (bits * k + bits - 1)) & 1) as u64) << k);
    let w = op::op_width(i, 0);
    op::write(c, i, 0, w, m)
}
