//! Bit and exchange instructions: BT/BTS/BTR/BTC, BSF/BSR, BSWAP, XADD, CMPXCHG. Helpers.

use crate::insn::Insn;
use iced_x86::{Mnemonic, OpKind};

use crate::concrete::Concrete;
use crate::emit::Emit;
use crate::exception::{Exception, Result};
use crate::flags::{FlagOp, CF, ZF};
use crate::operand::{self as op, Loc};
use crate::state::{Gpr, Width};

/// BT, BTS, BTR, BTC. With a register bit offset and a memory operand the offset is signed
/// and may address any bit relative to the operand's address.
pub fn bt(c: &mut Concrete<'_>, i: &Insn, m: Mnemonic) -> Result<()> {
    let w = op::op_width(i, 0);
    let bits = u64::from(w.bits());
    let dst = op::loc(c, i, 0)?;
    let (loc, bit) = match (dst, i.op_kind(1)) {
        (Loc::Mem(seg, ea), OpKind::Register) => {
            let off = w.sext(op::read(c, i, 1, w)?) as i64;
            let aw = op::addr_width(i, c.mode64());
            let delta = (off >> bits.trailing_zeros()) * i64::from(w.bytes());
            (Loc::Mem(seg, ea.wrapping_add(delta as u64) & aw.mask()), (off as u64) & (bits - 1))
        }
        (l, _) => (l, op::read(c, i, 1, w)? & (bits - 1)),
    };
    let v = op::load_loc(c, loc, w)?;
    let set = (v >> bit) & 1 != 0;
    let nv = match m {
        Mnemonic::Bt => None,
        Mnemonic::Bts => Some(v | (1 << bit)),
        Mnemonic::Btr => Some(v & !(1 << bit)),
        Mnemonic::Btc => Some(v ^ (1 << bit)),
        _ => return Err(Exception::UD),
    };
    if let Some(nv) = nv {
        op::store_loc(c, loc, w, nv)?;
    }
    c.cpu.flags.set_flag(CF, set);
    Ok(())
}

/// BSF and BSR: ZF set and the destination unchanged when the source is zero.
pub fn bsf_bsr(c: &mut Concrete<'_>, i: &Insn, reverse: bool) -> Result<()> {
    let w = op::op_width(i, 0);
    let src = op::read(c, i, 1, w)?;
    if src == 0 {
        c.cpu.flags.set_flag(ZF, true);
        return Ok(());
    }
    let idx = if reverse { 63 - u64::from(src.leading_zeros()) } else { u64::from(src.trailing_zeros()) };
    op::write(c, i, 0, w, idx)?;
    c.cpu.flags.set_flag(ZF, false);
    Ok(())
}

/// BSWAP r32/r64 (BSWAP of a 16-bit register is undefined; it gives zero, as Intel CPUs do).
pub fn bswap(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    let w = op::op_width(i, 0);
    let v = op::read(c, i, 0, w)?;
    let r = match w {
        Width::W64 => v.swap_bytes(),
        Width::W32 => u64::from((v as u32).swap_bytes()),
        _ => 0,
    };
    op::write(c, i, 0, w, r)
}

/// XADD: the sum goes to the destination, the old destination to the source.
pub fn xadd(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    let w = op::op_width(i, 0);
    let dst = op::loc(c, i, 0)?;
    let a = op::load_loc(c, dst, w)?;
    let b = op::read(c, i, 1, w)?;
    let r = a.wrapping_add(b) & w.mask();
    op::store_loc(c, dst, w, r)?;
    op::write(c, i, 1, w, a)?;
    c.cpu.flags.set_lazy(FlagOp::Add, w, a, b, r);
    Ok(())
}

/// CMPXCHG: compare the accumulator with the destination; equal stores the source, else the
/// accumulator is loaded. A memory destination is always written (with its own value on a
/// mismatch), as the SDM specifies.
pub fn cmpxchg(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    let w = op::op_width(i, 0);
    let dst = op::loc(c, i, 0)?;
    let d = op::load_loc(c, dst, w)?;
    let acc = c.cpu.reg(Gpr::Rax, w);
    let src = op::read(c, i, 1, w)?;
    if acc == d {
        op::store_loc(c, dst, w, src)?;
    } else {
        if let Loc::Mem(..) = dst {
            op::store_loc(c, dst, w, d)?;
        }
        c.cpu.set_reg(Gpr::Rax, w, d);
    }
    c.cpu.flags.set_lazy(FlagOp::Sub, w, acc, d, acc.wrapping_sub(d));
    Ok(())
}

/// CMPXCHG8B m64 / CMPXCHG16B m128: compare EDX:EAX (RDX:RAX) with memory; equal stores
/// ECX:EBX (RCX:RBX), else loads memory into EDX:EAX. Only ZF changes. CMPXCHG16B needs a
/// 16-byte aligned operand (#GP(0)).
pub fn cmpxchg8b16b(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    if i.op_kind(0) != OpKind::Memory {
        return Err(Exception::UD);
    }
    let wide = i.mnemonic() == Mnemonic::Cmpxchg16b;
    let w = if wide { Width::W64 } else { Width::W32 };
    let seg = op::mem_seg(i);
    let aw = op::addr_width(i, c.mode64());
    let ea = op::ea(c, i);
    if wide && ea & 15 != 0 {
        return Err(Exception::gp(0));
    }
    let hi_ea = ea.wrapping_add(u64::from(w.bytes())) & aw.mask();
    let lo = crate::mem::read(c.cpu, c.bus, seg, ea, w)?;
    let hi = crate::mem::read(c.cpu, c.bus, seg, hi_ea, w)?;
    let (eax, edx) = (c.cpu.reg(Gpr::Rax, w), c.cpu.reg(Gpr::Rdx, w));
    let equal = lo == eax && hi == edx;
    let (nlo, nhi) = if equal { (c.cpu.reg(Gpr::Rbx, w), c.cpu.reg(Gpr::Rcx, w)) } else { (lo, hi) };
    // The destination is written either way (the old value on a mismatch), both halves checked
    // before either is.
    crate::mem::seg_linear(c.cpu, seg, hi_ea, w.bytes(), crate::mem::AccessKind::Write)?;
    crate::mem::write(c.cpu, c.bus, seg, ea, w, nlo)?;
    crate::mem::write(c.cpu, c.bus, seg, hi_ea, w, nhi)?;
    if !equal {
        c.cpu.set_reg(Gpr::Rax, w, lo);
        c.cpu.set_reg(Gpr::Rdx, w, hi);
    }
    c.cpu.flags.set_flag(ZF, equal);
    Ok(())
}
