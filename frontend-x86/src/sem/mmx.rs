//! MMX (issue 5): MOVD/MOVQ with MMX registers, every MMX arithmetic, logic, compare, pack,
//! unpack and shift instruction, EMMS, the SSE-era additions on MMX registers (PSHUFW,
//! PINSRW/PEXTRW, PMOVMSKB, PAVGB/PAVGW, PMINUB/PMAXUB/PMINSW/PMAXSW, PSADBW, PMULHUW,
//! MASKMOVQ, MOVNTQ) and SSE2's PADDQ/PSUBQ/PMULUDQ on MMX registers (MOVQ2DQ/MOVDQ2Q are in `sse_int`).
//!
//! MMn aliases the low 64 bits of physical x87 register n. Every instruction but EMMS enters
//! MMX state (TOP = 0, all tags valid); EMMS empties every tag. Faults (SDM vol. 3, 12.5):
//! #UD with CR0.EM, #NM with CR0.TS, #MF for a pending unmasked x87 exception (FSW.ES) with
//! CR0.NE, or FERR# (`CpuBus::set_ferr`) and a freeze without it (`pending_x87`). Every memory access is done before any state
//! changes, so a fault leaves everything as it was.

use super::sse::{sat_s, sx};
use iced_x86::{Mnemonic, OpKind, Register};

use crate::concrete::Concrete;
use crate::emit::Emit;
use crate::exception::{vector, Exception, Result};
use crate::insn::Insn;
use crate::mem;
use crate::operand as op;
use crate::sem::{sse, Op};
use crate::state::{cr0, Width};

/// FSW.ES: an unmasked x87 exception is pending.
const FSW_ES: u16 = 0x80;

/// The MMX instruction `i` resolves to, or None when it is not one.
pub fn resolve(i: &Insn) -> Option<Op> {
    use Mnemonic::*;
    let mm0 = i.op_register(0).is_mm();
    let mm1 = i.op_count() > 1 && i.op_register(1).is_mm();
    let mm = mm0 || mm1;
    Some(match i.mnemonic() {
        Emms => Op::Helper(emms),
        Movd | Movq if mm => Op::Helper(movd_movq),
        Movntq => Op::Helper(movd_movq),
        Maskmovq => Op::Helper(maskmovq),
        Pshufw => Op::Helper(pshufw),
        Pinsrw if mm0 => Op::Helper(pinsrw),
        Pextrw if mm1 => Op::Helper(pextrw),
        Pmovmskb if mm1 => Op::Helper(pmovmskb),
        Psllw | Pslld | Psllq | Psrlw | Psrld | Psrlq | Psraw | Psrad
            if mm0 && i.op_kind(i.op_count() - 1) == OpKind::Immediate8 =>
        {
            Op::Helper(shift_imm)
        }
        Pxor | Pand | Por | Pandn | Paddb | Paddw | Paddd | Paddq | Psubb | Psubw | Psubd | Psubq | Pcmpeqb
        | Pcmpeqw | Pcmpeqd | Pcmpgtb | Pcmpgtw | Pcmpgtd | Paddsb | Paddsw | Psubsb | Psubsw | Paddusb | Paddusw
        | Psubusb | Psubusw | Pmullw | Pmulhw | Pmulhuw | Pmuludq | Pmaddwd | Pavgb | Pavgw | Pminub | Pmaxub
        | Pminsw | Pmaxsw | Psadbw | Punpcklbw | Punpckhbw | Punpcklwd | Punpckhwd | Punpckldq | Punpckhdq
        | Packsswb | Packssdw | Packuswb | Psllw | Pslld | Psllq | Psrlw | Psrld | Psrlq | Psraw | Psrad
            if mm0 =>
        {
            Op::Helper(packed)
        }
        _ => return None,
    })
}

/// The checks every MMX instruction makes first: #UD with CR0.EM, #NM with CR0.TS, then a
/// pending unmasked x87 exception: #MF with CR0.NE, else FERR# and a freeze (`pending_x87`).
pub fn check(c: &mut Concrete<'_>) -> Result<()> {
    if c.cpu.cr0 & cr0::EM != 0 {
        return Err(Exception::UD);
    }
    if c.cpu.cr0 & cr0::TS != 0 {
        return Err(Exception::NM);
    }
    pending_x87(c)
}

/// A pending unmasked x87 exception at a waiting instruction: #MF with CR0.NE. Without it,
/// the PC/AT way (SDM vol. 1, D.1 and D.2.1): FERR# is asserted (IRQ13 on a PC) and, unless
/// IGNNE# is asserted, the CPU freezes before the instruction until an interrupt; after it the
/// instruction starts again (its handler has cleared the exception or asserted IGNNE#).
pub fn pending_x87(c: &mut Concrete<'_>) -> Result<()> {
    if c.cpu.fpu.fsw & FSW_ES == 0 {
        ferr_follows_es(c);
        return Ok(());
    }
    if c.cpu.cr0 & cr0::NE != 0 {
        return Err(Exception::new(vector::MF));
    }
    if !c.cpu.ferr {
        c.cpu.ferr = true;
        c.bus.set_ferr(true);
    }
    if c.bus.ignne() {
        Ok(())
    } else {
        Err(Exception::FREEZE)
    }
}

/// A no-wait x87 instruction with an unmasked exception pending and CR0.NE clear asserts
/// FERR# briefly (SDM vol. 1, D.2.1.3): enough to latch IRQ13, and it goes on.
pub fn no_wait_x87(c: &mut Concrete<'_>) {
    if c.cpu.fpu.fsw & FSW_ES != 0 && c.cpu.cr0 & cr0::NE == 0 && !c.cpu.ferr {
        c.bus.set_ferr(true);
        c.bus.set_ferr(false);
    }
}

/// FERR# goes away with the exception: after anything that may clear FSW.ES (FNCLEX, FNINIT,
/// FLDCW, FLDENV/FRSTOR, FNSAVE, FXRSTOR, XRSTOR).
pub fn ferr_follows_es(c: &mut Concrete<'_>) {
    if c.cpu.ferr && c.cpu.fpu.fsw & FSW_ES == 0 {
        c.cpu.ferr = false;
        c.bus.set_ferr(false);
    }
}

/// The SSE-family instructions with an MMX register operand (CVTPI2PS/CVTPI2PD from an MMX
/// register, CVT(T)PS2PI, CVT(T)PD2PI, MOVQ2DQ, MOVDQ2Q) make the x87-to-MMX transition and so
/// first wait for a pending x87 exception (SDM vol. 2, each instruction's description); their
/// memory-source forms do not (the host agrees).
pub fn before_transition(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    if (0..i.op_count()).any(|k| i.op_kind(k) == OpKind::Register && i.op_register(k).is_mm()) {
        pending_x87(c)?;
    }
    Ok(())
}

fn mm_index(r: Register) -> Option<usize> {
    r.is_mm().then(|| r.number())
}

/// Reads operand `n` as 64 bits: an MMX register or a quadword of memory.
fn read_q(c: &mut Concrete<'_>, i: &Insn, n: u32) -> Result<u64> {
    match i.op_kind(n) {
        OpKind::Register => mm_index(i.op_register(n)).map(|x| c.cpu.fpu.mm(x)).ok_or(Exception::UD),
        OpKind::Memory => {
            let ea = op::ea(c, i);
            mem::read(c.cpu, c.bus, op::mem_seg(i), ea, Width::W64)
        }
        _ => Err(Exception::UD),
    }
}

/// The destination MMX register of operand `n`.
fn dst_mm(i: &Insn, n: u32) -> Result<usize> {
    if i.op_kind(n) != OpKind::Register {
        return Err(Exception::UD);
    }
    mm_index(i.op_register(n)).ok_or(Exception::UD)
}

/// Enters MMX state and writes MMn.
fn put(c: &mut Concrete<'_>, n: usize, v: u64) {
    c.cpu.fpu.enter_mmx();
    c.cpu.fpu.set_mm(n, v);
}

/// EMMS: every x87 tag empty.
pub fn emms(c: &mut Concrete<'_>, _i: &Insn) -> Result<()> {
    check(c)?;
    c.cpu.fpu.ftw = 0;
    Ok(())
}

/// MOVD/MOVQ between MMX registers, general registers and memory, and MOVNTQ.
pub fn movd_movq(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c)?;
    let w = if i.mnemonic() == Mnemonic::Movd { Width::W32 } else { Width::W64 };
    if let Some(d) = mm_index(i.op_register(0)).filter(|_| i.op_kind(0) == OpKind::Register) {
        let v = match i.op_kind(1) {
            OpKind::Register if i.op_register(1).is_mm() => c.cpu.fpu.mm(i.op_register(1).number()),
            _ => op::read(c, i, 1, w)?,
        };
        put(c, d, v);
        return Ok(());
    }
    let s = dst_mm(i, 1)?;
    let v = c.cpu.fpu.mm(s) & w.mask();
    op::write(c, i, 0, w, v)?;
    c.cpu.fpu.enter_mmx();
    Ok(())
}

/// Applies `f` lane by lane to `a` and `b` split into `bits`-bit lanes: the SSE lane walk
/// on the low 64 bits (the high lanes it computes from zeros are dropped).
fn lanes(a: u64, b: u64, bits: u32, f: impl Fn(u64, u64) -> u64) -> u64 {
    sse::lanes(u128::from(a), u128::from(b), bits, f) as u64
}

/// PUNPCKL/H on 64-bit registers: SSE's interleave.
fn interleave(a: u64, b: u64, bits: u32, high: bool) -> u64 {
    sse::interleave(u128::from(a), u128::from(b), bits, high, 64) as u64
}

/// PACKSS/PACKUS on 64-bit registers: SSE's pack.
fn pack(a: u64, b: u64, from: u32, f: impl Fn(u64) -> u64) -> u64 {
    sse::pack(u128::from(a), u128::from(b), from, 64, f) as u64
}

/// PSLL/PSRL/PSRA: SSE's shift on the low lanes (the high ones are zero and dropped).
fn shift_by(m: Mnemonic, a: u64, count: u64) -> u64 {
    sse::shift_by(m, u128::from(a), count) as u64
}

/// The two-operand packed instructions: mm = mm op mm/m64.
pub fn packed(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use Mnemonic::*;
    check(c)?;
    let d = dst_mm(i, 0)?;
    let b = read_q(c, i, 1)?;
    let a = c.cpu.fpu.mm(d);
    let eq = |x: u64, y: u64| if x == y { u64::MAX } else { 0 };
    let gt = |bits: u32| move |x: u64, y: u64| if sx(x, bits) > sx(y, bits) { u64::MAX } else { 0 };
    let r = match i.mnemonic() {
        Pxor => a ^ b,
        Pand => a & b,
        Por => a | b,
        Pandn => !a & b,
        Paddb => lanes(a, b, 8, u64::wrapping_add),
        Paddw => lanes(a, b, 16, u64::wrapping_add),
        Paddd => lanes(a, b, 32, u64::wrapping_add),
        Paddq => a.wrapping_add(b),
        Psubb => lanes(a, b, 8, u64::wrapping_sub),
        Psubw => lanes(a, b, 16, u64::wrapping_sub),
        Psubd => lanes(a, b, 32, u64::wrapping_sub),
        Psubq => a.wrapping_sub(b),
        Pcmpeqb => lanes(a, b, 8, eq),
        Pcmpeqw => lanes(a, b, 16, eq),
        Pcmpeqd => lanes(a, b, 32, eq),
        Pcmpgtb => lanes(a, b, 8, gt(8)),
        Pcmpgtw => lanes(a, b, 16, gt(16)),
        Pcmpgtd => lanes(a, b, 32, gt(32)),
        Paddsb => lanes(a, b, 8, |x, y| sat_s(sx(x, 8) + sx(y, 8), 8)),
        Paddsw => lanes(a, b, 16, |x, y| sat_s(sx(x, 16) + sx(y, 16), 16)),
        Psubsb => lanes(a, b, 8, |x, y| sat_s(sx(x, 8) - sx(y, 8), 8)),
        Psubsw => lanes(a, b, 16, |x, y| sat_s(sx(x, 16) - sx(y, 16), 16)),
        Paddusb => lanes(a, b, 8, |x, y| (x + y).min(0xff)),
        Paddusw => lanes(a, b, 16, |x, y| (x + y).min(0xffff)),
        Psubusb => lanes(a, b, 8, u64::saturating_sub),
        Psubusw => lanes(a, b, 16, u64::saturating_sub),
        Pmullw => lanes(a, b, 16, |x, y| (sx(x, 16) * sx(y, 16)) as u64),
        Pmulhw => lanes(a, b, 16, |x, y| ((sx(x, 16) * sx(y, 16)) >> 16) as u64),
        Pmulhuw => lanes(a, b, 16, |x, y| (x * y) >> 16),
        Pmuludq => (a & 0xffff_ffff) * (b & 0xffff_ffff),
        Pmaddwd => lanes(a, b, 32, |x, y| {
            let lo = sx(x & 0xffff, 16) * sx(y & 0xffff, 16);
            let hi = sx(x >> 16, 16) * sx(y >> 16, 16);
            lo.wrapping_add(hi) as u64
        }),
        Pavgb => lanes(a, b, 8, |x, y| (x + y + 1) >> 1),
        Pavgw => lanes(a, b, 16, |x, y| (x + y + 1) >> 1),
        Pminub => lanes(a, b, 8, u64::min),
        Pmaxub => lanes(a, b, 8, u64::max),
        Pminsw => lanes(a, b, 16, |x, y| if sx(x, 16) < sx(y, 16) { x } else { y }),
        Pmaxsw => lanes(a, b, 16, |x, y| if sx(x, 16) > sx(y, 16) { x } else { y }),
        Psadbw => (0..8).map(|k| u64::from(((a >> (8 * k)) as u8).abs_diff((b >> (8 * k)) as u8))).sum(),
        Punpcklbw => interleave(a, b, 8, false),
        Punpckhbw => interleave(a, b, 8, true),
        Punpcklwd => interleave(a, b, 16, false),
        Punpckhwd => interleave(a, b, 16, true),
        Punpckldq => interleave(a, b, 32, false),
        Punpckhdq => interleave(a, b, 32, true),
        Packsswb => pack(a, b, 16, |v| sat_s(sx(v, 16), 8)),
        Packssdw => pack(a, b, 32, |v| sat_s(sx(v, 32), 16)),
        Packuswb => pack(a, b, 16, |v| sx(v, 16).clamp(0, 0xff) as u64),
        m @ (Psllw | Pslld | Psllq | Psrlw | Psrld | Psrlq | Psraw | Psrad) => shift_by(m, a, b),
        _ => return Err(Exception::UD),
    };
    put(c, d, r);
    Ok(())
}

/// PSLL/PSRL/PSRA mm, imm8.
pub fn shift_imm(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c)?;
    let d = dst_mm(i, 0)?;
    let r = shift_by(i.mnemonic(), c.cpu.fpu.mm(d), u64::from(i.immediate8()));
    put(c, d, r);
    Ok(())
}

/// PSHUFW mm, mm/m64, imm8.
pub fn pshufw(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c)?;
    let d = dst_mm(i, 0)?;
    let a = read_q(c, i, 1)?;
    let sel = u64::from(i.immediate8());
    let r = (0..4).fold(0u64, |acc, k| acc | (((a >> (16 * ((sel >> (2 * k)) & 3))) & 0xffff) << (16 * k)));
    put(c, d, r);
    Ok(())
}

/// PINSRW mm, r32/m16, imm8.
pub fn pinsrw(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c)?;
    let d = dst_mm(i, 0)?;
    let v = op::read(c, i, 1, Width::W16)? & 0xffff;
    let sh = 16 * (u64::from(i.immediate8()) & 3);
    let r = (c.cpu.fpu.mm(d) & !(0xffff << sh)) | (v << sh);
    put(c, d, r);
    Ok(())
}

/// PEXTRW r32/r64, mm, imm8 (zero-extended).
pub fn pextrw(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c)?;
    let s = dst_mm(i, 1)?;
    let v = (c.cpu.fpu.mm(s) >> (16 * (u64::from(i.immediate8()) & 3))) & 0xffff;
    let w = op::op_width(i, 0);
    op::write(c, i, 0, w, v)?;
    c.cpu.fpu.enter_mmx();
    Ok(())
}

/// PMOVMSKB r32/r64, mm: the sign bit of each byte.
pub fn pmovmskb(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c)?;
    let v = c.cpu.fpu.mm(dst_mm(i, 1)?);
    let m = (0..8).fold(0u64, |acc, k| acc | (((v >> (8 * k + 7)) & 1) << k));
    let w = op::op_width(i, 0);
    op::write(c, i, 0, w, m)?;
    c.cpu.fpu.enter_mmx();
    Ok(())
}

/// MASKMOVQ mm1, mm2: the bytes of mm1 whose mask byte in mm2 has its top bit set are stored
/// at DS:rDI (segment overridable). Every selected byte's address is checked before any is
/// written.
pub fn maskmovq(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check(c)?;
    // iced-x86 lists the implicit [rDI] as operand 0.
    let (v, m) = (c.cpu.fpu.mm(dst_mm(i, 1)?), c.cpu.fpu.mm(dst_mm(i, 2)?));
    let seg = op::mem_seg(i);
    let aw = op::addr_width(i, c.mode64());
    let base = c.cpu.reg(crate::state::Gpr::Rdi, aw);
    let picked: Vec<u64> = (0..8u64).filter(|k| (m >> (8 * k + 7)) & 1 != 0).collect();
    for &k in &picked {
        let off = base.wrapping_add(k) & aw.mask();
        let lin = mem::seg_linear(c.cpu, seg, off, 1, mem::AccessKind::Write)?;
        mem::translate(c.cpu, c.bus, lin, mem::AccessKind::Write)?;
    }
    for &k in &picked {
        let off = base.wrapping_add(k) & aw.mask();
        mem::write(c.cpu, c.bus, seg, off, Width::W8, (v >> (8 * k)) & 0xff)?;
    }
    c.cpu.fpu.enter_mmx();
    Ok(())
}
