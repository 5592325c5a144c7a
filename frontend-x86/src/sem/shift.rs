//! Shifts and rotates (SHL/SAL, SHR, SAR, ROL, ROR, RCL, RCR, SHLD, SHRD): helpers, because
//! their flag rules depend on the run-time count.

use crate::insn::Insn;
use iced_x86::Mnemonic;

use crate::concrete::Concrete;
use crate::exception::{Exception, Result};
use crate::flags::{szp, AF, CF, OF, PF, SF, ZF};
use crate::operand as op;
use crate::state::Width;

fn bit(v: u64, n: u32) -> bool {
    n < 64 && (v >> n) & 1 != 0
}

/// The count operand, masked to 5 bits (6 for 64-bit operands) as every CPU since the 286 does.
fn count(c: &mut Concrete<'_>, i: &Insn, n: u32, w: Width) -> Result<u32> {
    let raw = if i.op_count() > n { op::read(c, i, n, Width::W8)? } else { 1 };
    Ok((raw & if w == Width::W64 { 0x3f } else { 0x1f }) as u32)
}

/// SHL, SHR, SAR, ROL, ROR, RCL, RCR.
pub fn shift(c: &mut Concrete<'_>, i: &Insn, m: Mnemonic) -> Result<()> {
    let w = op::op_width(i, 0);
    let bits = w.bits();
    let dst = op::loc(c, i, 0)?;
    let a = op::load_loc(c, dst, w)?;
    let n = count(c, i, 1, w)?;
    if n == 0 {
        // No flags change, but a 32-bit register destination is still written, which clears
        // bits 63..32 in 64-bit mode.
        return if matches!(dst, op::Loc::Reg(_)) { op::store_loc(c, dst, w, a) } else { Ok(()) };
    }
    let f = c.cpu.flags.get();
    let cf_in = f & CF != 0;
    let msb = |v: u64| v & w.sign() != 0;
    // (result, CF, OF, whether SF/ZF/PF/AF are updated)
    let (r, cf, of, arith) = match m {
        Mnemonic::Shl | Mnemonic::Sal => {
            let r = if n >= bits { 0 } else { (a << n) & w.mask() };
            let cf = n <= bits && bit(a, bits - n);
            (r, cf, msb(r) != cf, true)
        }
        Mnemonic::Shr => {
            let r = if n >= bits { 0 } else { a >> n };
            // OF as the last one-bit step leaves it: the SDM defines it only for a count of
            // one (the original sign); for larger counts this is what CPUs produce.
            (r, bit(a, n - 1), msb(a >> (n - 1)) != msb(r), true)
        }
        Mnemonic::Sar => {
            let s = w.sext(a) as i64;
            let r = (s >> n.min(63)) as u64 & w.mask();
            (r, (s >> (n - 1).min(63)) & 1 != 0, false, true)
        }
        Mnemonic::Rol => {
            let k = n % bits;
            let r = if k == 0 { a } else { ((a << k) | (a >> (bits - k))) & w.mask() };
            let cf = r & 1 != 0;
            (r, cf, msb(r) != cf, false)
        }
        Mnemonic::Ror => {
            let k = n % bits;
            let r = if k == 0 { a } else { ((a >> k) | (a << (bits - k))) & w.mask() };
            (r, msb(r), msb(r) != bit(r, bits - 2), false)
        }
        Mnemonic::Rcl | Mnemonic::Rcr => {
            let k = n % (bits + 1);
            let mut v = u128::from(a) | (u128::from(cf_in) << bits);
            let span = bits + 1;
            let full = (1u128 << span) - 1;
            if k != 0 {
                v = if m == Mnemonic::Rcl {
                    ((v << k) | (v >> (span - k))) & full
                } else {
                    ((v >> k) | (v << (span - k))) & full
                };
            }
            let r = v as u64 & w.mask();
            let cf = (v >> bits) & 1 != 0;
            let of = if m == Mnemonic::Rcl { msb(r) != cf } else { msb(r) != bit(r, bits - 2) };
            (r, cf, of, false)
        }
        _ => return Err(Exception::UD),
    };
    op::store_loc(c, dst, w, r)?;
    let mut nf = f & !(CF | OF);
    if cf {
        nf |= CF;
    }
    if of {
        nf |= OF;
    }
    if arith {
        nf = (nf & !(SF | ZF | PF | AF)) | szp(r, w);
    }
    c.cpu.flags.set(nf);
    Ok(())
}

/// SHLD and SHRD: shift the destination, filling from the source register.
pub fn shld_shrd(c: &mut Concrete<'_>, i: &Insn, left: bool) -> Result<()> {
    let w = op::op_width(i, 0);
    let bits = w.bits();
    let dst = op::loc(c, i, 0)?;
    let a = op::load_loc(c, dst, w)?;
    let b = op::read(c, i, 1, w)?;
    let n = count(c, i, 2, w)?;
    if n == 0 {
        // No flags change, but a 32-bit register destination is still written, which clears
        // bits 63..32 in 64-bit mode.
        return if matches!(dst, op::Loc::Reg(_)) { op::store_loc(c, dst, w, a) } else { Ok(()) };
    }
    let (r, cf) = if bits == 64 {
        // The count is below 64 here (masked to 6 bits and not zero).
        if left {
            ((a << n) | (b >> (64 - n)), bit(a, 64 - n))
        } else {
            ((a >> n) | (b << (64 - n)), bit(a, n - 1))
        }
    } else {
        // The operands as one pattern dst:src:dst (at most 96 bits). For 32-bit operands the
        // count is below the width; for 16-bit ones a count above 16 is undefined by the SDM
        // and the pattern gives what Intel CPUs produce.
        let x = (u128::from(a) << (2 * bits)) | (u128::from(b) << bits) | u128::from(a);
        if left {
            ((x >> (2 * bits - n)) as u64 & w.mask(), (x >> (3 * bits - n)) & 1 != 0)
        } else {
            ((x >> n) as u64 & w.mask(), (x >> (n - 1)) & 1 != 0)
        }
    };
    op::store_loc(c, dst, w, r)?;
    let f = c.cpu.flags.get();
    let mut nf = f & !(CF | OF | SF | ZF | PF | AF);
    if cf {
        nf |= CF;
    }
    if (r ^ a) & w.sign() != 0 {
        nf |= OF;
    }
    nf |= szp(r, w);
    c.cpu.flags.set(nf);
    Ok(())
}
