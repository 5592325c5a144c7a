//! Near control transfers and the stack: straight-line semantics for both tiers.

use iced_x86::{Code, OpKind};

use crate::emit::{Alu, Cmp, Emit};
use crate::exception::{Exception, Result};
use crate::insn::Insn;
use crate::operand::{self as op, reg};
use crate::state::{Gpr, SegReg, Width};

/// The operand size of a near branch, which truncates the new instruction pointer.
fn branch_width(i: &Insn) -> Width {
    match i.op_kind(0) {
        OpKind::NearBranch16 => Width::W16,
        OpKind::NearBranch32 => Width::W32,
        OpKind::NearBranch64 => Width::W64,
        _ => op::op_width(i, 0),
    }
}

/// Pushes `v` (`w` wide) on the stack.
pub fn push<E: Emit>(e: &mut E, v: E::V, w: Width) -> Result<()> {
    let sw = e.stack_width();
    let sp = e.get_reg(reg(Gpr::Rsp, sw));
    let n = e.imm(u64::from(w.bytes()));
    let nsp = e.alu(Alu::Sub, sp, n, sw);
    e.store(SegReg::Ss, nsp, v, w)?;
    e.set_reg(reg(Gpr::Rsp, sw), nsp);
    Ok(())
}

/// Pops a `w`-wide value off the stack.
pub fn pop<E: Emit>(e: &mut E, w: Width) -> Result<E::V> {
    let sw = e.stack_width();
    let sp = e.get_reg(reg(Gpr::Rsp, sw));
    let v = e.load(SegReg::Ss, sp, w)?;
    let n = e.imm(u64::from(w.bytes()));
    let nsp = e.alu(Alu::Add, sp, n, sw);
    e.set_reg(reg(Gpr::Rsp, sw), nsp);
    Ok(v)
}

/// The operand size of a push or pop, from how far it moves the stack pointer.
pub fn stack_op_width(i: &Insn) -> Width {
    Width::from_bytes(i.stack_pointer_increment().unsigned_abs()).unwrap_or(Width::W64)
}

/// PUSH r/m, imm, or a segment register.
pub fn push_insn<E: Emit>(e: &mut E, i: &Insn) -> Result<()> {
    let w = stack_op_width(i);
    if i.op_kind(0) == OpKind::Register && op::seg_ref(i.op_register(0)).is_some() {
        // A segment register pushed with a wider operand size moves the stack pointer by the
        // operand size but writes only 16 bits, as current Intel CPUs do.
        let v = op::read(e, i, 0, Width::W16)?;
        let sw = e.stack_width();
        let sp = e.get_reg(reg(Gpr::Rsp, sw));
        let n = e.imm(u64::from(w.bytes()));
        let nsp = e.alu(Alu::Sub, sp, n, sw);
        e.store(SegReg::Ss, nsp, v, Width::W16)?;
        e.set_reg(reg(Gpr::Rsp, sw), nsp);
        return Ok(());
    }
    // PUSH SP pushes the value from before the decrement (286 and later).
    let v = op::read(e, i, 0, w)?;
    push(e, v, w)
}

/// POP r/m (segment registers are a helper). A memory destination addressed through the
/// stack pointer uses its value after the pop, as the SDM specifies.
pub fn pop_insn<E: Emit>(e: &mut E, i: &Insn) -> Result<()> {
    let w = stack_op_width(i);
    let sw = e.stack_width();
    let sp = e.get_reg(reg(Gpr::Rsp, sw));
    let v = e.load(SegReg::Ss, sp, w)?;
    let n = e.imm(u64::from(w.bytes()));
    let nsp = e.alu(Alu::Add, sp, n, sw);
    e.set_reg(reg(Gpr::Rsp, sw), nsp);
    if i.op_kind(0) == OpKind::Memory {
        // The address with the popped stack pointer, the store with the old one in place: a
        // faulting store leaves RSP as it was (in both tiers: the JIT cannot undo a register
        // write when the fault happens at run time).
        let a = op::ea(e, i);
        e.set_reg(reg(Gpr::Rsp, sw), sp);
        e.store(op::mem_seg(i), a, v, w)?;
        e.set_reg(reg(Gpr::Rsp, sw), nsp);
        return Ok(());
    }
    op::write(e, i, 0, w, v)
}

/// JMP near (direct or indirect).
pub fn jmp<E: Emit>(e: &mut E, i: &Insn) -> Result<()> {
    let t = near_target(e, i)?;
    e.jump(t)
}

fn near_target<E: Emit>(e: &mut E, i: &Insn) -> Result<E::V> {
    let w = branch_width(i);
    match i.op_kind(0) {
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
            Ok(e.imm(i.near_branch_target() & w.mask()))
        }
        _ => op::read(e, i, 0, w),
    }
}

/// CALL near (direct or indirect).
pub fn call<E: Emit>(e: &mut E, i: &Insn) -> Result<()> {
    let w = stack_op_width(i);
    let t = near_target(e, i)?;
    let ret = e.next_ip();
    push(e, ret, w)?;
    e.jump(t)
}

/// RET near, with an optional immediate to release parameters.
pub fn ret<E: Emit>(e: &mut E, i: &Insn) -> Result<()> {
    let w = if e.mode64() {
        if i.code() == Code::Retnw || i.code() == Code::Retnw_imm16 {
            Width::W16
        } else {
            Width::W64
        }
    } else {
        match i.code() {
            Code::Retnw | Code::Retnw_imm16 => Width::W16,
            _ => Width::W32,
        }
    };
    let t = pop(e, w)?;
    if i.op_count() == 1 {
        let sw = e.stack_width();
        let sp = e.get_reg(reg(Gpr::Rsp, sw));
        let n = e.imm(u64::from(i.immediate16()));
        let nsp = e.alu(Alu::Add, sp, n, sw);
        e.set_reg(reg(Gpr::Rsp, sw), nsp);
    }
    e.jump(t)
}

/// Jcc.
pub fn jcc<E: Emit>(e: &mut E, i: &Insn) -> Result<()> {
    let c = e.cond(i.condition_code() as u8 - 1);
    let t = near_target(e, i)?;
    let n = e.next_ip();
    let to = e.select(c, t, n);
    e.jump(to)
}

/// The counter width of LOOPcc/JCXZ (the address size).
fn counter_width(i: &Insn) -> Result<Width> {
    let c = i.code() as u32;
    let k = if (Code::Loopne_rel8_16_CX as u32..=Code::Loop_rel8_64_RCX as u32).contains(&c) {
        (c - Code::Loopne_rel8_16_CX as u32) % 7
    } else if (Code::Jcxz_rel8_16 as u32..=Code::Jrcxz_rel8_64 as u32).contains(&c) {
        c - Code::Jcxz_rel8_16 as u32
    } else {
        return Err(Exception::UD);
    };
    Ok(match k {
        0 | 1 => Width::W16,
        2..=4 => Width::W32,
        _ => Width::W64,
    })
}

/// LOOP, LOOPE, LOOPNE: decrement the counter (flags untouched) and branch.
pub fn loop_insn<E: Emit>(e: &mut E, i: &Insn, zf_cond: Option<bool>) -> Result<()> {
    let cw = counter_width(i)?;
    let cx = e.get_reg(reg(Gpr::Rcx, cw));
    let one = e.imm(1);
    let ncx = e.alu(Alu::Sub, cx, one, cw);
    e.set_reg(reg(Gpr::Rcx, cw), ncx);
    let zero = e.imm(0);
    let mut c = e.cmp(Cmp::Ne, ncx, zero);
    if let Some(want_zf) = zf_cond {
        // Condition code 4 is E (ZF = 1), 5 is NE.
        let z = e.cond(if want_zf { 4 } else { 5 });
        c = e.alu(Alu::And, c, z, Width::W64);
    }
    let t = near_target(e, i)?;
    let n = e.next_ip();
    let to = e.select(c, t, n);
    e.jump(to)
}

/// JCXZ/JECXZ/JRCXZ.
pub fn jcxz<E: Emit>(e: &mut E, i: &Insn) -> Result<()> {
    let cw = counter_width(i)?;
    let cx = e.get_reg(reg(Gpr::Rcx, cw));
    let zero = e.imm(0);
    let c = e.cmp(Cmp::Eq, cx, zero);
    let t = near_target(e, i)?;
    let n = e.next_ip();
    let to = e.select(c, t, n);
    e.jump(to)
}

/// LEAVE: the stack pointer from the frame pointer, then pop the frame pointer.
pub fn leave<E: Emit>(e: &mut E, i: &Insn) -> Result<()> {
    let w = match i.code() {
        Code::Leavew => Width::W16,
        Code::Leaved => Width::W32,
        _ => Width::W64,
    };
    let sw = e.stack_width();
    let bp = e.get_reg(reg(Gpr::Rbp, sw));
    let v = e.load(SegReg::Ss, bp, w)?;
    let n = e.imm(u64::from(w.bytes()));
    let nsp = e.alu(Alu::Add, bp, n, sw);
    e.set_reg(reg(Gpr::Rsp, sw), nsp);
    e.set_reg(reg(Gpr::Rbp, w), v);
    Ok(())
}
