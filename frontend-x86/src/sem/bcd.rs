//! The BCD adjustments DAA, DAS, AAA, AAS, AAM, AAD (#UD in 64-bit mode): helpers.

use crate::insn::Insn;

use crate::concrete::Concrete;
use crate::exception::{Exception, Result};
use crate::flags::{self, AF, CF, OF};
use crate::state::{Gpr, Width};

fn szp(v: u8) -> u64 {
    flags::szp(u64::from(v), Width::W8)
}

fn al(c: &Concrete<'_>) -> u8 {
    c.cpu.gpr[Gpr::Rax as usize] as u8
}

fn set_al(c: &mut Concrete<'_>, v: u8) {
    c.cpu.set_reg(Gpr::Rax, Width::W8, u64::from(v));
}

/// DAA and DAS, as the SDM's pseudocode defines them. OF is undefined; it is set here from
/// the signed overflow of the adjustment, as Intel CPUs do.
pub fn daa_das(c: &mut Concrete<'_>, sub: bool) -> Result<()> {
    let f = c.cpu.flags.get();
    let old_al = al(c);
    let old_cf = f & CF != 0;
    let mut v = old_al;
    let mut cf = false;
    let mut af = false;
    if v & 0xf > 9 || f & AF != 0 {
        v = if sub { v.wrapping_sub(6) } else { v.wrapping_add(6) };
        cf = old_cf || if sub { old_al < 6 } else { old_al > 0xf9 };
        af = true;
    }
    if old_al > 0x99 || old_cf {
        v = if sub { v.wrapping_sub(0x60) } else { v.wrapping_add(0x60) };
        cf = true;
    }
    set_al(c, v);
    let mut nf = szp(v);
    if cf {
        nf |= CF;
    }
    if af {
        nf |= AF;
    }
    let overflow = if sub { (old_al ^ v) & old_al & 0x80 != 0 } else { (old_al ^ v) & v & 0x80 != 0 };
    if overflow {
        nf |= OF;
    }
    c.cpu.flags.set_masked(flags::ARITH, nf);
    Ok(())
}

/// AAA and AAS. SF, ZF, PF and OF are undefined; they follow the final AL here.
pub fn aaa_aas(c: &mut Concrete<'_>, sub: bool) -> Result<()> {
    let f = c.cpu.flags.get();
    let ax = c.cpu.reg(Gpr::Rax, Width::W16) as u16;
    let mut nf = 0;
    let new_ax = if (ax & 0xf) > 9 || f & AF != 0 {
        nf |= AF | CF;
        if sub {
            let lo = (ax as u8).wrapping_sub(6);
            let hi = ((ax >> 8) as u8).wrapping_sub(1).wrapping_sub(u8::from((ax as u8) < 6));
            (u16::from(hi) << 8) | u16::from(lo)
        } else {
            ax.wrapping_add(0x106)
        }
    } else {
        ax
    };
    let new_ax = new_ax & 0xff0f;
    c.cpu.set_reg(Gpr::Rax, Width::W16, u64::from(new_ax));
    nf |= szp(new_ax as u8);
    c.cpu.flags.set_masked(flags::ARITH, nf);
    Ok(())
}

/// AAM imm8: AH = AL / imm, AL = AL % imm; #DE when imm is 0.
pub fn aam(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    let base = i.immediate8();
    if base == 0 {
        return Err(Exception::DE);
    }
    let a = al(c);
    let v = (u16::from(a / base) << 8) | u16::from(a % base);
    c.cpu.set_reg(Gpr::Rax, Width::W16, u64::from(v));
    c.cpu.flags.set_masked(flags::ARITH, szp(v as u8));
    Ok(())
}

/// AAD imm8: AL = AH * imm + AL, AH = 0. Flags as for the 8-bit addition it performs.
pub fn aad(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    let base = i.immediate8();
    let ax = c.cpu.reg(Gpr::Rax, Width::W16);
    let a = u64::from((ax >> 8) as u8).wrapping_mul(u64::from(base)) & 0xff;
    let b = ax & 0xff;
    let r = (a + b) & 0xff;
    c.cpu.set_reg(Gpr::Rax, Width::W16, r);
    c.cpu.flags.set_lazy(flags::FlagOp::Add, Width::W8, a, b, r);
    Ok(())
}
