//! MUL, IMUL, DIV, IDIV: helpers in both tiers.

use crate::insn::Insn;

use crate::concrete::Concrete;
use crate::exception::{Exception, Result};
use crate::flags;
use crate::operand as op;
use crate::state::{Gpr, Width};

/// Flags after a multiply: CF = OF = `overflow`. SF, ZF, AF and PF are undefined by the SDM;
/// they are set from the low half of the result here, and masked by every oracle.
fn mul_flags(c: &mut Concrete<'_>, w: Width, lo: u64, overflow: bool) {
    let mut f = flags::szp(lo, w);
    if overflow {
        f |= flags::CF | flags::OF;
    }
    c.cpu.flags.set_masked(flags::ARITH, f);
}

/// Splits a double-width product into the accumulator pair.
fn set_pair(c: &mut Concrete<'_>, w: Width, prod: u128) {
    if w == Width::W8 {
        c.cpu.set_reg(Gpr::Rax, Width::W16, prod as u64);
    } else {
        c.cpu.set_reg(Gpr::Rax, w, prod as u64);
        c.cpu.set_reg(Gpr::Rdx, w, (prod >> w.bits()) as u64);
    }
}

/// MUL r/m: unsigned accumulator * operand into the accumulator pair.
pub fn mul(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    let w = op::op_width(i, 0);
    let b = op::read(c, i, 0, w)?;
    let a = c.cpu.reg(Gpr::Rax, w);
    let prod = u128::from(a) * u128::from(b);
    set_pair(c, w, prod);
    mul_flags(c, w, prod as u64, (prod >> w.bits()) != 0);
    Ok(())
}

/// IMUL r/m (one operand): signed accumulator * operand into the accumulator pair. The two-
/// and three-operand forms are straight-line semantics ([`super::alu::imul`]).
pub fn imul(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    let w = op::op_width(i, 0);
    let a = c.cpu.reg(Gpr::Rax, w);
    let b = op::read(c, i, 0, w)?;
    let prod = i128::from(w.sext(a) as i64) * i128::from(w.sext(b) as i64);
    let lo = prod as u64 & w.mask();
    let overflow = i128::from(w.sext(lo) as i64) != prod;
    set_pair(c, w, prod as u128);
    mul_flags(c, w, lo, overflow);
    Ok(())
}

/// DIV and IDIV: #DE on division by zero or a quotient that does not fit.
pub fn div(c: &mut Concrete<'_>, i: &Insn, signed: bool) -> Result<()> {
    let w = op::op_width(i, 0);
    let d = op::read(c, i, 0, w)?;
    if d == 0 {
        return Err(Exception::DE);
    }
    let n: u128 = if w == Width::W8 {
        u128::from(c.cpu.reg(Gpr::Rax, Width::W16))
    } else {
        (u128::from(c.cpu.reg(Gpr::Rdx, w)) << w.bits()) | u128::from(c.cpu.reg(Gpr::Rax, w))
    };
    let (q, r) = if signed {
        let bits = 2 * w.bits();
        let n = ((n << (128 - bits)) as i128) >> (128 - bits);
        let d = i128::from(w.sext(d) as i64);
        let q = n.checked_div(d).ok_or(Exception::DE)?;
        let r = n.checked_rem(d).ok_or(Exception::DE)?;
        let min = -(1i128 << (w.bits() - 1));
        let max = (1i128 << (w.bits() - 1)) - 1;
        if q < min || q > max {
            return Err(Exception::DE);
        }
        (q as u64 & w.mask(), r as u64 & w.mask())
    } else {
        let d = u128::from(d);
        let q = n / d;
        if q > u128::from(w.mask()) {
            return Err(Exception::DE);
        }
        (q as u64, (n % d) as u64)
    };
    if w == Width::W8 {
        c.cpu.set_reg(Gpr::Rax, Width::W16, q | (r << 8));
    } else {
        c.cpu.set_reg(Gpr::Rax, w, q);
        c.cpu.set_reg(Gpr::Rdx, w, r);
    }
    Ok(())
}
