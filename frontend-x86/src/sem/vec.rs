//! The SSE/SSE2 instructions whose semantics are exact as vector operations, written once over
//! [`Emit`]: the 128-bit moves (MOVDQA/MOVDQU/MOVAPS/MOVUPS/MOVAPD/MOVUPD), the bitwise
//! operations (PAND/PANDN/POR/PXOR and their PS/PD forms), the lane-wise integer arithmetic
//! PADD/PSUB (B/W/D/Q), PADDS/PADDUS/PSUBS/PSUBUS (B/W), PCMPEQ/PCMPGT (B/W/D), PMAXSW/PMINSW/
//! PMAXUB/PMINUB, PAVGB/PAVGW and PMULLW, the interleaves PUNPCKL/H (BW/WD/DQ/QDQ) and
//! UNPCKL/HPS/PD (data movement only), and with the immediate as a constant PSHUFD/PSHUFLW/
//! PSHUFHW and the shifts PSLL/PSRL (W/D/Q) and PSRA (W/D) by an immediate (their XMM forms; the
//! MMX ones are `mmx`'s). The interpreter runs them on `u128` ([`crate::emit::eval_vec`]), the
//! JIT as Cranelift vector instructions. Every other SSE instruction is a helper (`sse`,
//! `sse_fp`, `sse_int`), which reads and writes its operands through the same functions here:
//! floating point stays there (MXCSR rounding, flags, DAZ/FTZ are not what a host vector
//! instruction does), and so do the integer operations with no exact Cranelift counterpart
//! (PMULH*, PMULUDQ, PMADDWD, PSADBW, PACK*, shifts by a register count, PSLLDQ/PSRLDQ).

use iced_x86::{Mnemonic, OpKind};

use crate::emit::{Alu, Cr, Emit, Lanes, VecOp};
use crate::exception::{Exception, Result};
use crate::insn::Insn;
use crate::operand as op;
use crate::sem::Op;
use crate::state::{cr0, cr4, SegReg, Width};

/// The vector operation of a two-operand packed instruction, if it is one of them.
pub fn op_of(m: Mnemonic) -> Option<VecOp> {
    use Mnemonic::*;
    Some(match m {
        Pxor | Xorps | Xorpd => VecOp::Xor,
        Pand | Andps | Andpd => VecOp::And,
        Por | Orps | Orpd => VecOp::Or,
        Pandn | Andnps | Andnpd => VecOp::AndNot,
        Paddb => VecOp::Add(Lanes::B),
        Paddw => VecOp::Add(Lanes::W),
        Paddd => VecOp::Add(Lanes::D),
        Paddq => VecOp::Add(Lanes::Q),
        Psubb => VecOp::Sub(Lanes::B),
        Psubw => VecOp::Sub(Lanes::W),
        Psubd => VecOp::Sub(Lanes::D),
        Psubq => VecOp::Sub(Lanes::Q),
        Pcmpeqb => VecOp::CmpEq(Lanes::B),
        Pcmpeqw => VecOp::CmpEq(Lanes::W),
        Pcmpeqd => VecOp::CmpEq(Lanes::D),
        Paddsb => VecOp::AddSatS(Lanes::B),
        Paddsw => VecOp::AddSatS(Lanes::W),
        Paddusb => VecOp::AddSatU(Lanes::B),
        Paddusw => VecOp::AddSatU(Lanes::W),
        Psubsb => VecOp::SubSatS(Lanes::B),
        Psubsw => VecOp::SubSatS(Lanes::W),
        Psubusb => VecOp::SubSatU(Lanes::B),
        Psubusw => VecOp::SubSatU(Lanes::W),
        Pcmpgtb => VecOp::CmpGt(Lanes::B),
        Pcmpgtw => VecOp::CmpGt(Lanes::W),
        Pcmpgtd => VecOp::CmpGt(Lanes::D),
        Pmaxsw => VecOp::MaxS(Lanes::W),
        Pminsw => VecOp::MinS(Lanes::W),
        Pmaxub => VecOp::MaxU(Lanes::B),
        Pminub => VecOp::MinU(Lanes::B),
        Pavgb => VecOp::AvgU(Lanes::B),
        Pavgw => VecOp::AvgU(Lanes::W),
        Pmullw => VecOp::MulLo(Lanes::W),
        Punpcklbw => VecOp::UnpackLo(Lanes::B),
        Punpcklwd => VecOp::UnpackLo(Lanes::W),
        Punpckldq | Unpcklps => VecOp::UnpackLo(Lanes::D),
        Punpcklqdq | Unpcklpd => VecOp::UnpackLo(Lanes::Q),
        Punpckhbw => VecOp::UnpackHi(Lanes::B),
        Punpckhwd => VecOp::UnpackHi(Lanes::W),
        Punpckhdq | Unpckhps => VecOp::UnpackHi(Lanes::D),
        Punpckhqdq | Unpckhpd => VecOp::UnpackHi(Lanes::Q),
        _ => return None,
    })
}

/// The vector operation of a packed instruction with an immediate (PSHUFD/PSHUFLW/PSHUFHW,
/// PSLL/PSRL/PSRA W/D/Q by an immediate), if it is one of them.
pub fn imm_op_of(m: Mnemonic, imm: u8) -> Option<VecOp> {
    use Mnemonic::*;
    Some(match m {
        Pshufd => VecOp::ShufD(imm),
        Pshuflw => VecOp::ShufLoW(imm),
        Pshufhw => VecOp::ShufHiW(imm),
        Psllw => VecOp::ShlImm(Lanes::W, imm),
        Pslld => VecOp::ShlImm(Lanes::D, imm),
        Psllq => VecOp::ShlImm(Lanes::Q, imm),
        Psrlw => VecOp::ShrImm(Lanes::W, imm),
        Psrld => VecOp::ShrImm(Lanes::D, imm),
        Psrlq => VecOp::ShrImm(Lanes::Q, imm),
        Psraw => VecOp::SarImm(Lanes::W, imm),
        Psrad => VecOp::SarImm(Lanes::D, imm),
        _ => return None,
    })
}

/// Whether `i` is a packed instruction with an immediate that [`imm`] runs: an XMM destination
/// (the MMX forms are `mmx`'s), for PSHUFD/PSHUFLW/PSHUFHW an XMM or memory source.
fn is_imm_form(i: &Insn) -> bool {
    use Mnemonic::*;
    let n = i.op_count();
    if !(2..=3).contains(&n)
        || i.op_kind(n - 1) != OpKind::Immediate8
        || i.op_kind(0) != OpKind::Register
        || !i.op_register(0).is_xmm()
    {
        return false;
    }
    match i.mnemonic() {
        Pshufd | Pshuflw | Pshufhw => n == 3 && (i.op_kind(1) == OpKind::Memory || i.op_register(1).is_xmm()),
        m => n == 2 && imm_op_of(m, 0).is_some(),
    }
}

/// What `i` resolves to when it is one of this module's instructions (XMM forms only: the MMX
/// forms of the same mnemonics are `mmx`'s).
pub fn resolve(i: &Insn) -> Option<Op> {
    use Mnemonic::*;
    if is_imm_form(i) {
        return Some(Op::VecImm(i.mnemonic()));
    }
    let xmm_dst = i.op_count() == 2 && (i.op_kind(0) == OpKind::Memory || i.op_register(0).is_xmm());
    let xmm_src = i.op_count() == 2 && (i.op_kind(1) == OpKind::Memory || i.op_register(1).is_xmm());
    if !(xmm_dst && xmm_src) {
        return None;
    }
    match i.mnemonic() {
        Movaps | Movups | Movapd | Movupd | Movdqa | Movdqu => Some(Op::VecMov),
        m if i.op_kind(0) == OpKind::Register => op_of(m).map(Op::VecBinop),
        _ => None,
    }
}

/// #UD without CR4.OSFXSR or with CR0.EM, #NM with CR0.TS (SDM vol. 3, 13.1). Read at run
/// time: a task switch sets TS under code the JIT has already compiled.
#[inline]
pub fn check<E: Emit>(e: &mut E) -> Result<()> {
    let cr0 = e.get_cr(Cr::Cr0);
    let cr4 = e.get_cr(Cr::Cr4);
    let em_ts = e.imm(cr0::EM | cr0::TS);
    let em_ts = e.alu(Alu::And, cr0, em_ts, Width::W64);
    let fxsr = e.imm(cr4::OSFXSR);
    let has_fxsr = e.alu(Alu::And, cr4, fxsr, Width::W64);
    let no_fxsr = e.alu(Alu::Xor, has_fxsr, fxsr, Width::W64);
    // One test on the usual path; which exception is sorted out only when there is one.
    let bad = e.alu(Alu::Or, em_ts, no_fxsr, Width::W64);
    e.if_then(bad, |e| {
        let em = e.imm(cr0::EM);
        let em = e.alu(Alu::And, cr0, em, Width::W64);
        let ud = e.alu(Alu::Or, em, no_fxsr, Width::W64);
        e.if_then(ud, |_| Err(Exception::UD))?;
        Err(Exception::NM)
    })
}

/// The XMM register of register operand `n`.
#[inline]
pub(crate) fn xmm(i: &Insn, n: u32) -> Result<usize> {
    let r = i.op_register(n);
    match r.number() {
        x if r.is_xmm() && x < 16 => Ok(x),
        _ => Err(Exception::UD),
    }
}

/// The memory operand's segment, offset and address size, with the 16-byte alignment check
/// (#GP(0)) when `aligned`.
#[inline]
pub(crate) fn mem_operand<E: Emit>(e: &mut E, i: &Insn, aligned: bool) -> Result<(SegReg, E::V, Width)> {
    let seg = op::mem_seg(i);
    let ea = op::ea(e, i);
    if aligned {
        let m = e.imm(15);
        let low = e.alu(Alu::And, ea, m, Width::W64);
        e.if_then(low, |_| Err(Exception::gp(0)))?;
    }
    Ok((seg, ea, op::addr_width(i, e.mode64())))
}

/// Reads operand `n` as 128 bits (an XMM register or 16 bytes of memory, aligned or not).
#[inline]
pub(crate) fn read<E: Emit>(e: &mut E, i: &Insn, n: u32, aligned: bool) -> Result<E::X> {
    match i.op_kind(n) {
        OpKind::Register => Ok(e.get_xmm(xmm(i, n)?)),
        OpKind::Memory => {
            let (seg, ea, aw) = mem_operand(e, i, aligned)?;
            e.load_x(seg, ea, aw)
        }
        _ => Err(Exception::UD),
    }
}

/// Writes operand `n` (an XMM register or 16 bytes of memory, aligned or not).
#[inline]
pub(crate) fn write<E: Emit>(e: &mut E, i: &Insn, n: u32, aligned: bool, v: E::X) -> Result<()> {
    match i.op_kind(n) {
        OpKind::Register => {
            let x = xmm(i, n)?;
            e.set_xmm(x, v);
            Ok(())
        }
        OpKind::Memory => {
            let (seg, ea, aw) = mem_operand(e, i, aligned)?;
            e.store_x(seg, ea, aw, v)
        }
        _ => Err(Exception::UD),
    }
}

/// MOVAPS/MOVAPD/MOVDQA (aligned) and MOVUPS/MOVUPD/MOVDQU.
#[inline]
pub fn mov<E: Emit>(e: &mut E, i: &Insn) -> Result<()> {
    check(e)?;
    let aligned = matches!(i.mnemonic(), Mnemonic::Movaps | Mnemonic::Movapd | Mnemonic::Movdqa);
    let v = read(e, i, 1, aligned)?;
    write(e, i, 0, aligned, v)
}

/// dst = dst `op` src, with the legacy-SSE alignment rule for a memory source.
#[inline]
pub fn binop<E: Emit>(e: &mut E, i: &Insn, op: VecOp) -> Result<()> {
    check(e)?;
    let b = read(e, i, 1, true)?;
    let a = read(e, i, 0, true)?;
    let r = e.vec(op, a, b);
    write(e, i, 0, true, r)
}

/// PSHUFD/PSHUFLW/PSHUFHW xmm, xmm/m128, imm8 (dst = shuffle of src) and the shifts of an XMM
/// register by an immediate: one vector operation with the immediate as a constant.
#[inline]
pub fn imm<E: Emit>(e: &mut E, i: &Insn, m: Mnemonic) -> Result<()> {
    check(e)?;
    let op = imm_op_of(m, i.immediate8()).ok_or(Exception::UD)?;
    let src = if matches!(op, VecOp::ShufD(_) | VecOp::ShufLoW(_) | VecOp::ShufHiW(_)) { 1 } else { 0 };
    let v = read(e, i, src, true)?;
    let r = e.vec(op, v, v);
    write(e, i, 0, true, r)
}
