//! Integer arithmetic and logic, data movement, flag instructions: straight-line semantics for
//! both tiers.

use crate::insn::Insn;
use iced_x86::Mnemonic;

use crate::emit::{Alu, Emit};
use crate::exception::{Exception, Result};
use crate::flags::{self, FlagOp};
use crate::operand::{self as op, reg};
use crate::state::{Gpr, Width};

/// ADD, OR, ADC, SBB, AND, SUB, XOR, CMP, TEST: `op0 = op0 <op> op1` with flags.
pub fn binop<E: Emit>(e: &mut E, i: &Insn, m: Mnemonic) -> Result<()> {
    let w = op::op_width(i, 0);
    let dst = op::loc(e, i, 0)?;
    let a = op::load_loc(e, dst, w)?;
    let b = op::read(e, i, 1, w)?;
    let (r, fop, write) = match m {
        Mnemonic::Add => (e.alu(Alu::Add, a, b, w), FlagOp::Add, true),
        Mnemonic::Sub => (e.alu(Alu::Sub, a, b, w), FlagOp::Sub, true),
        Mnemonic::Cmp => (e.alu(Alu::Sub, a, b, w), FlagOp::Sub, false),
        Mnemonic::And => (e.alu(Alu::And, a, b, w), FlagOp::Logic, true),
        Mnemonic::Test => (e.alu(Alu::And, a, b, w), FlagOp::Logic, false),
        Mnemonic::Or => (e.alu(Alu::Or, a, b, w), FlagOp::Logic, true),
        Mnemonic::Xor => (e.alu(Alu::Xor, a, b, w), FlagOp::Logic, true),
        Mnemonic::Adc => {
            let c = e.carry();
            let s = e.alu(Alu::Add, a, b, w);
            (e.alu(Alu::Add, s, c, w), FlagOp::Adc, true)
        }
        Mnemonic::Sbb => {
            let c = e.carry();
            let s = e.alu(Alu::Sub, a, b, w);
            (e.alu(Alu::Sub, s, c, w), FlagOp::Sbb, true)
        }
        _ => return Err(Exception::UD),
    };
    if write {
        op::store_loc(e, dst, w, r)?;
    }
    e.set_flags(fop, w, a, b, r);
    Ok(())
}

/// INC, DEC, NOT, NEG.
pub fn unop<E: Emit>(e: &mut E, i: &Insn, m: Mnemonic) -> Result<()> {
    let w = op::op_width(i, 0);
    let dst = op::loc(e, i, 0)?;
    let a = op::load_loc(e, dst, w)?;
    let one = e.imm(1);
    match m {
        Mnemonic::Inc | Mnemonic::Dec => {
            // CF passes through; when nothing reads it afterwards it need not be known.
            let c = if e.live_flags() & flags::CF == 0 { e.imm(0) } else { e.carry_in() };
            let (r, fop) = if m == Mnemonic::Inc {
                (e.alu(Alu::Add, a, one, w), FlagOp::Inc)
            } else {
                (e.alu(Alu::Sub, a, one, w), FlagOp::Dec)
            };
            op::store_loc(e, dst, w, r)?;
            e.set_flags(fop, w, a, c, r);
        }
        Mnemonic::Not => {
            let ones = e.imm(w.mask());
            let r = e.alu(Alu::Xor, a, ones, w);
            op::store_loc(e, dst, w, r)?;
        }
        Mnemonic::Neg => {
            let zero = e.imm(0);
            let r = e.alu(Alu::Sub, zero, a, w);
            op::store_loc(e, dst, w, r)?;
            e.set_flags(FlagOp::Sub, w, zero, a, r);
        }
        _ => return Err(Exception::UD),
    }
    Ok(())
}

/// MOV between general registers, memory and immediates (segment registers are elsewhere).
pub fn mov<E: Emit>(e: &mut E, i: &Insn) -> Result<()> {
    let w = op::op_width(i, 0);
    let v = op::read(e, i, 1, w)?;
    op::write(e, i, 0, w, v)
}

/// MOVZX, MOVSX, MOVSXD.
pub fn movx<E: Emit>(e: &mut E, i: &Insn, signed: bool) -> Result<()> {
    let w = op::op_width(i, 0);
    let sw = op::op_width(i, 1);
    let v = op::read(e, i, 1, sw)?;
    let v = if signed { e.sext(v, sw) } else { v };
    op::write(e, i, 0, w, v)
}

/// LEA: the effective address, truncated to the operand size.
pub fn lea<E: Emit>(e: &mut E, i: &Insn) -> Result<()> {
    let w = op::op_width(i, 0);
    let a = op::ea(e, i);
    op::write(e, i, 0, w, a)
}

/// XCHG (XCHG with memory is locked on hardware; one CPU here, so it is a plain swap).
pub fn xchg<E: Emit>(e: &mut E, i: &Insn) -> Result<()> {
    let w = op::op_width(i, 0);
    let l0 = op::loc(e, i, 0)?;
    let l1 = op::loc(e, i, 1)?;
    let a = op::load_loc(e, l0, w)?;
    let b = op::load_loc(e, l1, w)?;
    // Memory first, so a faulting store leaves the registers untouched.
    if let op::Loc::Mem(..) = l1 {
        op::store_loc(e, l1, w, a)?;
        op::store_loc(e, l0, w, b)
    } else {
        op::store_loc(e, l0, w, b)?;
        op::store_loc(e, l1, w, a)
    }
}

/// CBW/CWDE/CDQE: sign-extend the low half of the accumulator into the whole.
pub fn cbw<E: Emit>(e: &mut E, to: Width) -> Result<()> {
    let from = match to {
        Width::W16 => Width::W8,
        Width::W32 => Width::W16,
        _ => Width::W32,
    };
    let v = e.get_reg(reg(Gpr::Rax, from));
    let v = e.sext(v, from);
    e.set_reg(reg(Gpr::Rax, to), v);
    Ok(())
}

/// CWD/CDQ/CQO: fill the data register with the accumulator's sign.
pub fn cwd<E: Emit>(e: &mut E, w: Width) -> Result<()> {
    let v = e.get_reg(reg(Gpr::Rax, w));
    let sh = e.imm(u64::from(w.bits() - 1));
    let s = e.alu(Alu::Sar, v, sh, w);
    e.set_reg(reg(Gpr::Rdx, w), s);
    Ok(())
}

/// SETcc.
pub fn setcc<E: Emit>(e: &mut E, i: &Insn) -> Result<()> {
    let c = e.cond(i.condition_code() as u8 - 1);
    op::write(e, i, 0, Width::W8, c)
}

/// CMOVcc: the destination is written (and a 32-bit one zero-extended) even when the
/// condition is false; the source is always read, so a memory source can fault either way.
pub fn cmovcc<E: Emit>(e: &mut E, i: &Insn) -> Result<()> {
    let w = op::op_width(i, 0);
    let src = op::read(e, i, 1, w)?;
    let old = op::read(e, i, 0, w)?;
    let c = e.cond(i.condition_code() as u8 - 1);
    let v = e.select(c, src, old);
    op::write(e, i, 0, w, v)
}

/// LAHF: AH = SF:ZF:0:AF:0:PF:1:CF.
pub fn lahf<E: Emit>(e: &mut E) -> Result<()> {
    let f = e.get_rflags();
    let m = e.imm(0xd5);
    let v = e.alu(Alu::And, f, m, Width::W8);
    let two = e.imm(2);
    let v = e.alu(Alu::Or, v, two, Width::W8);
    e.set_reg(crate::emit::RegRef { gpr: Gpr::Rax, width: Width::W8, high8: true }, v);
    Ok(())
}

/// SAHF: SF, ZF, AF, PF, CF from AH.
pub fn sahf<E: Emit>(e: &mut E) -> Result<()> {
    let ah = e.get_reg(crate::emit::RegRef { gpr: Gpr::Rax, width: Width::W8, high8: true });
    e.set_rflags(flags::SF | flags::ZF | flags::AF | flags::PF | flags::CF, ah);
    Ok(())
}

/// CLC, STC, CMC, CLD, STD.
pub fn flag_op<E: Emit>(e: &mut E, m: Mnemonic) -> Result<()> {
    let (mask, v) = match m {
        Mnemonic::Clc => (flags::CF, e.imm(0)),
        Mnemonic::Stc => (flags::CF, e.imm(flags::CF)),
        Mnemonic::Cmc => {
            let c = e.carry();
            let one = e.imm(1);
            (flags::CF, e.alu(Alu::Xor, c, one, Width::W64))
        }
        Mnemonic::Cld => (flags::DF, e.imm(0)),
        Mnemonic::Std => (flags::DF, e.imm(flags::DF)),
        _ => return Err(Exception::UD),
    };
    e.set_rflags(mask, v);
    Ok(())
}

/// SALC (undocumented, 16/32-bit modes): AL = CF ? 0xFF : 0.
pub fn salc<E: Emit>(e: &mut E) -> Result<()> {
    let c = e.carry();
    let zero = e.imm(0);
    let v = e.alu(Alu::Sub, zero, c, Width::W8);
    e.set_reg(reg(Gpr::Rax, Width::W8), v);
    Ok(())
}

/// XLAT: AL = [seg:(E/R)BX + AL].
pub fn xlat<E: Emit>(e: &mut E, i: &Insn) -> Result<()> {
    let aw = op::addr_width(i, e.mode64());
    let bx = e.get_reg(reg(Gpr::Rbx, aw));
    let al = e.get_reg(reg(Gpr::Rax, Width::W8));
    let a = e.alu(Alu::Add, bx, al, aw);
    let v = e.load(op::mem_seg(i), a, Width::W8)?;
    e.set_reg(reg(Gpr::Rax, Width::W8), v);
    Ok(())
}

/// SHL/SHR/SAR by a count fixed at decode time and not zero: straight-line, with lazy flags.
/// (Counts from CL are [`shift_cl`]; the rotates through carry are helpers.)
pub fn shift_imm<E: Emit>(e: &mut E, i: &Insn, m: Mnemonic) -> Result<()> {
    let w = op::op_width(i, 0);
    let n = crate::sem::fixed_shift_count(i).ok_or(Exception::UD)?;
    let dst = op::loc(e, i, 0)?;
    let a = op::load_loc(e, dst, w)?;
    let nv = e.imm(n);
    let (alu, fop) = match m {
        Mnemonic::Shl => (Alu::Shl, FlagOp::Shl),
        Mnemonic::Shr => (Alu::Shr, FlagOp::Shr),
        Mnemonic::Sar => (Alu::Sar, FlagOp::Sar),
        _ => return Err(Exception::UD),
    };
    let r = e.alu(alu, a, nv, w);
    op::store_loc(e, dst, w, r)?;
    e.set_flags(fop, w, a, nv, r);
    Ok(())
}

/// SHL/SHR/SAR of a register by CL: the count is masked to 5 bits (6 for 64-bit operands);
/// a zero count changes no flags (a 32-bit destination is still written, clearing bits
/// 63..32). Memory destinations stay a helper.
pub fn shift_cl<E: Emit>(e: &mut E, i: &Insn, m: Mnemonic) -> Result<()> {
    let w = op::op_width(i, 0);
    let dst = op::loc(e, i, 0)?;
    let a = op::load_loc(e, dst, w)?;
    let cl = e.get_reg(reg(Gpr::Rcx, Width::W8));
    let mask = e.imm(if w == Width::W64 { 0x3f } else { 0x1f });
    let n = e.alu(Alu::And, cl, mask, Width::W8);
    let (alu, fop) = match m {
        Mnemonic::Shl => (Alu::Shl, FlagOp::Shl),
        Mnemonic::Shr => (Alu::Shr, FlagOp::Shr),
        Mnemonic::Sar => (Alu::Sar, FlagOp::Sar),
        _ => return Err(Exception::UD),
    };
    let r = e.alu(alu, a, n, w);
    op::store_loc(e, dst, w, r)?;
    if !e.flags_dead() {
        let zero = e.imm(0);
        let nz = e.cmp(crate::emit::Cmp::Ne, n, zero);
        e.if_then(nz, |e| {
            e.set_flags(fop, w, a, n, r);
            Ok(())
        })?;
    }
    Ok(())
}

/// ROL/ROR by a count fixed at decode time (not zero after masking): CF and OF from the
/// result, the other flags unchanged. When nothing reads the flags they are not computed.
pub fn rotate_imm<E: Emit>(e: &mut E, i: &Insn, m: Mnemonic) -> Result<()> {
    let w = op::op_width(i, 0);
    let bits = u64::from(w.bits());
    let n = crate::sem::fixed_shift_count(i).ok_or(Exception::UD)?;
    let dst = op::loc(e, i, 0)?;
    let a = op::load_loc(e, dst, w)?;
    let k = n % bits;
    let r = if k == 0 {
        a
    } else {
        let left = if m == Mnemonic::Rol { k } else { bits - k };
        let (l, rt) = (e.imm(left), e.imm(bits - left));
        let hi = e.alu(Alu::Shl, a, l, w);
        let lo = e.alu(Alu::Shr, a, rt, w);
        e.alu(Alu::Or, hi, lo, w)
    };
    op::store_loc(e, dst, w, r)?;
    if !e.flags_dead() {
        // ROL: CF = bit 0, OF = MSB ^ CF; ROR: CF = MSB, OF = MSB ^ the bit below it.
        let one = e.imm(1);
        let top = e.imm(bits - 1);
        let msb = e.alu(Alu::Shr, r, top, w);
        let (cf, other) = if m == Mnemonic::Rol {
            let low = e.alu(Alu::And, r, one, Width::W64);
            (low, low)
        } else {
            let below = e.imm(bits - 2);
            let b = e.alu(Alu::Shr, r, below, w);
            (msb, e.alu(Alu::And, b, one, Width::W64))
        };
        let of = e.alu(Alu::Xor, msb, other, Width::W64);
        let eleven = e.imm(11);
        let of = e.alu(Alu::Shl, of, eleven, Width::W64);
        let v = e.alu(Alu::Or, cf, of, Width::W64);
        e.set_rflags(flags::CF | flags::OF, v);
    }
    Ok(())
}

/// IMUL in its two- and three-operand forms: the truncated signed product into a register;
/// CF = OF = whether it did not fit.
pub fn imul<E: Emit>(e: &mut E, i: &Insn) -> Result<()> {
    let w = op::op_width(i, 0);
    let (a, b) = if i.op_count() == 2 {
        (op::read(e, i, 0, w)?, op::read(e, i, 1, w)?)
    } else {
        (op::read(e, i, 1, w)?, op::read(e, i, 2, w)?)
    };
    // The product's low `w` bits do not depend on how the operands are extended.
    let lo = e.alu(Alu::Mul, a, b, w);
    if e.flags_dead() {
        return op::write(e, i, 0, w, lo);
    }
    let (sa, sb) = (e.sext(a, w), e.sext(b, w));
    let overflow = if w == Width::W64 {
        let hi = e.alu(Alu::SMulHi, sa, sb, Width::W64);
        let s = e.imm(63);
        let sign = e.alu(Alu::Sar, lo, s, Width::W64);
        e.cmp(crate::emit::Cmp::Ne, hi, sign)
    } else {
        // Operands of at most 32 bits: the 64-bit product is exact.
        let full = e.alu(Alu::Mul, sa, sb, Width::W64);
        let slo = e.sext(lo, w);
        e.cmp(crate::emit::Cmp::Ne, slo, full)
    };
    op::write(e, i, 0, w, lo)?;
    e.set_flags(FlagOp::Mul, w, lo, overflow, lo);
    Ok(())
}
