//! Trap-and-emulate helpers (design principle 2): flags with IF/IOPL, interrupts, port I/O,
//! HLT, segment loads and far transfers, and the stack-frame instructions. Each ends the
//! block it is in.

use iced_x86::{Code, Mnemonic, OpKind};

use crate::concrete::Concrete;
use crate::desc;
use crate::emit::Emit;
use crate::exception::{Exception, Result};
use crate::flags::{self, AC, DF, ID, IF, IOPL, NT, OF, RF, TF, VIF, VIP, VM};
use crate::insn::Insn;
use crate::interrupt::{self, EventKind};
use crate::operand as op;
use crate::sem::control::{pop, push, stack_op_width};
use crate::state::{Gpr, SegReg, Width};

/// The I/O permission check of IN/OUT/INS/OUTS (SDM vol. 1, 19.5): always allowed in real
/// mode and when CPL <= IOPL outside virtual-8086 mode; otherwise every bit of the access in
/// the TSS I/O permission bitmap must be clear.
pub fn check_io(c: &mut Concrete<'_>, port: u16, w: Width) -> Result<()> {
    let cpu = &c.cpu;
    if !cpu.protected() {
        return Ok(());
    }
    let iopl = ((cpu.flags.raw_bits() & IOPL) >> 12) as u8;
    if !cpu.v86() && cpu.cpl <= iopl {
        return Ok(());
    }
    let tr = cpu.tr;
    let typ = (tr.attr & 0xf) as u8;
    if !matches!(typ, desc::sys_type::TSS_AVAIL | desc::sys_type::TSS_BUSY) || tr.limit < 0x67 {
        return Err(Exception::gp(0));
    }
    let map = crate::mem::sys_read(c.cpu, c.bus, tr.base + 0x66, Width::W16)?;
    let byte = map + u64::from(port / 8);
    if byte + 1 > u64::from(tr.limit) {
        return Err(Exception::gp(0));
    }
    let bits = crate::mem::sys_read(c.cpu, c.bus, tr.base + byte, Width::W16)?;
    let mask = ((1u64 << w.bytes()) - 1) << (port % 8);
    if bits & mask != 0 {
        return Err(Exception::gp(0));
    }
    Ok(())
}

fn iopl(c: &Concrete<'_>) -> u8 {
    ((c.cpu.flags.raw_bits() & IOPL) >> 12) as u8
}

/// IN AL/AX/EAX, imm8 or DX.
pub fn in_(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    let w = op::op_width(i, 0);
    let port =
        if i.op_kind(1) == OpKind::Register { c.cpu.reg(Gpr::Rdx, Width::W16) as u16 } else { i.immediate8() as u16 };
    check_io(c, port, w)?;
    let v = c.bus.io_read(port, w.bytes());
    c.cpu.set_reg(Gpr::Rax, w, u64::from(v));
    Ok(())
}

/// OUT imm8 or DX, AL/AX/EAX.
pub fn out(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    let w = op::op_width(i, 1);
    let port =
        if i.op_kind(0) == OpKind::Register { c.cpu.reg(Gpr::Rdx, Width::W16) as u16 } else { i.immediate8() as u16 };
    check_io(c, port, w)?;
    let v = c.cpu.reg(Gpr::Rax, w);
    c.bus.io_write(port, w.bytes(), v as u32);
    Ok(())
}

/// PUSHF/PUSHFD/PUSHFQ: the image has VM and RF clear.
pub fn pushf(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    if c.cpu.v86() && iopl(c) < 3 {
        return Err(Exception::gp(0));
    }
    let w = stack_op_width(i);
    let f = c.cpu.flags.get() & !(VM | RF);
    push(c, f, w)
}

/// POPF/POPFD/POPFQ with the privilege rules for IOPL and IF.
pub fn popf(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    if c.cpu.v86() && iopl(c) < 3 {
        return Err(Exception::gp(0));
    }
    let w = stack_op_width(i);
    let v = pop(c, w)?;
    let mut mask = flags::ARITH | TF | DF | OF | NT | AC | ID;
    if !c.cpu.protected() || c.cpu.cpl == 0 {
        mask |= IOPL | IF;
    } else if c.cpu.cpl <= iopl(c) {
        mask |= IF;
    }
    if c.cpu.v86() {
        mask &= !IOPL;
    }
    if w == Width::W16 {
        mask &= 0xffff;
    }
    // VM, VIF, VIP keep their values; RF is cleared.
    let cur = c.cpu.flags.get();
    c.cpu.flags.set(((cur & !mask) | (v & mask)) & !RF);
    let _ = (VIF, VIP);
    Ok(())
}

/// CLI and STI; STI blocks interrupts for one instruction when it sets IF.
pub fn cli_sti(c: &mut Concrete<'_>, set: bool) -> Result<()> {
    if c.cpu.protected() && iopl(c) < if c.cpu.v86() { 3 } else { c.cpu.cpl } {
        return Err(Exception::gp(0));
    }
    let was = c.cpu.flags.raw_bits() & IF != 0;
    c.cpu.flags.set_flag(IF, set);
    if set && !was {
        c.cpu.interrupt_shadow = true;
    }
    Ok(())
}

/// HLT: privileged; the CPU sleeps until an interrupt.
pub fn hlt(c: &mut Concrete<'_>, _i: &Insn) -> Result<()> {
    if c.cpu.protected() && c.cpu.cpl != 0 {
        return Err(Exception::gp(0));
    }
    c.cpu.halted = true;
    Ok(())
}

/// INT n, INT3, INTO, INT1.
pub fn int(c: &mut Concrete<'_>, i: &Insn, m: Mnemonic) -> Result<()> {
    let vec = match m {
        Mnemonic::Int => i.immediate8(),
        Mnemonic::Int3 => 3,
        Mnemonic::Int1 => 1,
        Mnemonic::Into => {
            if c.cpu.flags.get() & OF == 0 {
                return Ok(());
            }
            4
        }
        _ => return Err(Exception::UD),
    };
    if m == Mnemonic::Int && c.cpu.v86() && iopl(c) < 3 {
        return Err(Exception::gp(0));
    }
    let ret = c.cpu.next_rip;
    // INT1 (ICEBP) is delivered like a hardware debug trap: no gate DPL check.
    let kind = if m == Mnemonic::Int1 { EventKind::Exception } else { EventKind::Software };
    interrupt::deliver(c.cpu, c.bus, vec, None, ret, kind)
}

/// IRET/IRETD/IRETQ. Real mode pops IP, CS and FLAGS.
pub fn iret(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    let w = match i.code() {
        Code::Iretw => Width::W16,
        Code::Iretd => Width::W32,
        _ => Width::W64,
    };
    if c.cpu.protected() {
        return crate::sem::far::iret(c, w);
    }
    let sp = c.cpu.reg(Gpr::Rsp, Width::W16);
    let n = u64::from(w.bytes());
    let ip = crate::mem::read(c.cpu, c.bus, SegReg::Ss, sp, w)?;
    let cs = crate::mem::read(c.cpu, c.bus, SegReg::Ss, (sp + n) & 0xffff, w)? as u16;
    let fl = crate::mem::read(c.cpu, c.bus, SegReg::Ss, (sp + 2 * n) & 0xffff, w)?;
    if ip > 0xffff {
        return Err(Exception::gp(0));
    }
    c.cpu.set_reg(Gpr::Rsp, Width::W16, (sp + 3 * n) & 0xffff);
    let mask = if w == Width::W16 { 0xffff } else { flags::ALL & !(VM | VIF | VIP) };
    let cur = c.cpu.flags.get();
    c.cpu.flags.set((cur & !mask) | (fl & mask));
    interrupt::load_real_cs(c.cpu, cs);
    c.cpu.nmi_blocked = false;
    c.cpu.next_rip = ip;
    Ok(())
}

/// Loads a data or stack segment register (MOV, POP, LDS/LES/LSS/LFS/LGS).
pub fn load_seg(c: &mut Concrete<'_>, seg: SegReg, sel: u16) -> Result<()> {
    if seg == SegReg::Cs {
        return Err(Exception::UD);
    }
    if c.cpu.protected() && !c.cpu.v86() {
        desc::load_data_seg(c.cpu, c.bus, seg, sel)?;
        if seg == SegReg::Ss {
            c.cpu.interrupt_shadow = true;
        }
        return Ok(());
    }
    let s = &mut c.cpu.seg[seg as usize];
    s.selector = sel;
    s.base = u64::from(sel) << 4;
    if seg == SegReg::Ss {
        c.cpu.interrupt_shadow = true;
    }
    Ok(())
}

/// MOV Sreg, r/m16.
pub fn mov_sreg(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    let seg = op::seg_ref(i.op_register(0)).ok_or(Exception::UD)?;
    let v = op::read(c, i, 1, Width::W16)?;
    load_seg(c, seg, v as u16)
}

/// POP Sreg.
pub fn pop_sreg(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    let seg = op::seg_ref(i.op_register(0)).ok_or(Exception::UD)?;
    let w = stack_op_width(i);
    let sw = c.stack_width();
    let sp = c.cpu.reg(Gpr::Rsp, sw);
    let v = crate::mem::read(c.cpu, c.bus, SegReg::Ss, sp, Width::W16)?;
    load_seg(c, seg, v as u16)?;
    c.cpu.set_reg(Gpr::Rsp, sw, sp.wrapping_add(u64::from(w.bytes())));
    Ok(())
}

/// LDS, LES, LSS, LFS, LGS: a far pointer from memory.
pub fn load_far_ptr(c: &mut Concrete<'_>, i: &Insn, seg: SegReg) -> Result<()> {
    if i.op_kind(1) != OpKind::Memory {
        return Err(Exception::UD);
    }
    let w = op::op_width(i, 0);
    let a = op::ea(c, i);
    let s = op::mem_seg(i);
    let off = crate::mem::read(c.cpu, c.bus, s, a, w)?;
    let sel = crate::mem::read(
        c.cpu,
        c.bus,
        s,
        (a + u64::from(w.bytes())) & op::addr_width(i, c.cpu.mode64()).mask(),
        Width::W16,
    )?;
    load_seg(c, seg, sel as u16)?;
    op::write(c, i, 0, w, off)
}

/// Far JMP/CALL: direct (ptr16:16/32) or indirect (m16:16/32/64). Real and virtual-8086 mode.
pub fn far_transfer(c: &mut Concrete<'_>, i: &Insn, call: bool) -> Result<()> {
    let (sel, off, w) = match i.op_kind(0) {
        OpKind::FarBranch16 => (i.far_branch_selector(), u64::from(i.far_branch16()), Width::W16),
        OpKind::FarBranch32 => (i.far_branch_selector(), u64::from(i.far_branch32()), Width::W32),
        OpKind::Memory => {
            let w = Width::from_bytes(i.memory_size().size() as u32 - 2).ok_or(Exception::UD)?;
            let a = op::ea(c, i);
            let s = op::mem_seg(i);
            let off = crate::mem::read(c.cpu, c.bus, s, a, w)?;
            let aw = op::addr_width(i, c.cpu.mode64());
            let sel = crate::mem::read(c.cpu, c.bus, s, (a + u64::from(w.bytes())) & aw.mask(), Width::W16)?;
            (sel as u16, off, w)
        }
        _ => return Err(Exception::UD),
    };
    if c.cpu.protected() && !c.cpu.v86() {
        return crate::sem::far::jmp_call(c, sel, off & w.mask(), w, call);
    }
    if off > 0xffff && !c.cpu.protected() && c.cpu.seg[SegReg::Cs as usize].limit <= 0xffff {
        return Err(Exception::gp(0));
    }
    if call {
        let cs = u64::from(c.cpu.seg[SegReg::Cs as usize].selector);
        let ret = c.cpu.next_rip;
        let sw = c.stack_width();
        let sp = c.cpu.reg(Gpr::Rsp, sw);
        let n = u64::from(w.bytes());
        // Both pushes are checked before either register changes.
        crate::mem::write(c.cpu, c.bus, SegReg::Ss, sp.wrapping_sub(n) & sw.mask(), w, cs)?;
        crate::mem::write(c.cpu, c.bus, SegReg::Ss, sp.wrapping_sub(2 * n) & sw.mask(), w, ret)?;
        c.cpu.set_reg(Gpr::Rsp, sw, sp.wrapping_sub(2 * n));
    }
    interrupt::load_real_cs(c.cpu, sel);
    c.cpu.next_rip = off & w.mask();
    Ok(())
}

/// RETF with an optional immediate. Real and virtual-8086 mode.
pub fn ret_far(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    let w = match i.code() {
        Code::Retfw | Code::Retfw_imm16 => Width::W16,
        Code::Retfd | Code::Retfd_imm16 => Width::W32,
        _ => Width::W64,
    };
    if c.cpu.protected() && !c.cpu.v86() {
        let imm = if i.op_count() == 1 { u64::from(i.immediate16()) } else { 0 };
        return crate::sem::far::retf(c, w, imm);
    }
    let sw = c.stack_width();
    let sp = c.cpu.reg(Gpr::Rsp, sw);
    let n = u64::from(w.bytes());
    let ip = crate::mem::read(c.cpu, c.bus, SegReg::Ss, sp, w)?;
    let cs = crate::mem::read(c.cpu, c.bus, SegReg::Ss, sp.wrapping_add(n) & sw.mask(), Width::W16)?;
    if ip > u64::from(c.cpu.seg[SegReg::Cs as usize].limit.max(0xffff)) {
        return Err(Exception::gp(0));
    }
    let imm = if i.op_count() == 1 { u64::from(i.immediate16()) } else { 0 };
    c.cpu.set_reg(Gpr::Rsp, sw, sp.wrapping_add(2 * n + imm));
    interrupt::load_real_cs(c.cpu, cs as u16);
    c.cpu.next_rip = ip;
    Ok(())
}

/// PUSHA/PUSHAD.
pub fn pusha(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    let w = if i.code() == Code::Pushaw { Width::W16 } else { Width::W32 };
    let sw = c.stack_width();
    let sp = c.cpu.reg(Gpr::Rsp, sw);
    let n = u64::from(w.bytes());
    for k in 0..8u64 {
        let v = if k == 4 { sp } else { c.cpu.reg(op::gpr(k as usize), w) };
        crate::mem::write(c.cpu, c.bus, SegReg::Ss, sp.wrapping_sub((k + 1) * n) & sw.mask(), w, v)?;
    }
    c.cpu.set_reg(Gpr::Rsp, sw, sp.wrapping_sub(8 * n));
    Ok(())
}

/// POPA/POPAD (the stored SP is skipped).
pub fn popa(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    let w = if i.code() == Code::Popaw { Width::W16 } else { Width::W32 };
    let sw = c.stack_width();
    let sp = c.cpu.reg(Gpr::Rsp, sw);
    let n = u64::from(w.bytes());
    let mut vals = [0u64; 8];
    for (k, v) in vals.iter_mut().enumerate() {
        *v = crate::mem::read(c.cpu, c.bus, SegReg::Ss, sp.wrapping_add(k as u64 * n) & sw.mask(), w)?;
    }
    for (k, v) in vals.iter().enumerate() {
        if k != 3 {
            c.cpu.set_reg(op::gpr(7 - k), w, *v);
        }
    }
    c.cpu.set_reg(Gpr::Rsp, sw, sp.wrapping_add(8 * n));
    Ok(())
}

/// BOUND: #BR unless lower <= index <= upper (signed).
pub fn bound(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    if i.op_kind(1) != OpKind::Memory {
        return Err(Exception::UD);
    }
    let w = op::op_width(i, 0);
    let idx = w.sext(op::read(c, i, 0, w)?) as i64;
    let a = op::ea(c, i);
    let s = op::mem_seg(i);
    let aw = op::addr_width(i, c.cpu.mode64());
    let lo = w.sext(crate::mem::read(c.cpu, c.bus, s, a, w)?) as i64;
    let hi = w.sext(crate::mem::read(c.cpu, c.bus, s, (a + u64::from(w.bytes())) & aw.mask(), w)?) as i64;
    if idx < lo || idx > hi {
        return Err(Exception::BR);
    }
    Ok(())
}

/// ENTER imm16, imm8: a stack frame with `level` (mod 32) nested frame pointers.
pub fn enter(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    let w = stack_op_width(i);
    let size = u64::from(i.immediate16());
    let level = u64::from(i.immediate8_2nd() & 31);
    let sw = c.stack_width();
    let n = u64::from(w.bytes());
    let sp = c.cpu.reg(Gpr::Rsp, sw);
    let mut bp = c.cpu.reg(Gpr::Rbp, sw);
    let mut tsp = sp.wrapping_sub(n) & sw.mask();
    let old_bp = c.cpu.reg(Gpr::Rbp, w);
    crate::mem::write(c.cpu, c.bus, SegReg::Ss, tsp, w, old_bp)?;
    let frame = tsp;
    if level > 0 {
        for _ in 1..level {
            bp = bp.wrapping_sub(n) & sw.mask();
            let v = crate::mem::read(c.cpu, c.bus, SegReg::Ss, bp, w)?;
            tsp = tsp.wrapping_sub(n) & sw.mask();
            crate::mem::write(c.cpu, c.bus, SegReg::Ss, tsp, w, v)?;
        }
        tsp = tsp.wrapping_sub(n) & sw.mask();
        crate::mem::write(c.cpu, c.bus, SegReg::Ss, tsp, w, frame)?;
    }
    let new_sp = tsp.wrapping_sub(size) & sw.mask();
    // The new stack top must be writable, as the SDM's pseudocode checks.
    crate::mem::seg_linear(c.cpu, SegReg::Ss, new_sp, 1, crate::mem::AccessKind::Write)?;
    c.cpu.set_reg(Gpr::Rbp, w, frame);
    c.cpu.set_reg(Gpr::Rsp, sw, new_sp);
    Ok(())
}

/// WAIT/FWAIT: #NM when CR0.MP and CR0.TS are both set, then a pending x87 exception.
pub fn wait(c: &mut Concrete<'_>, _i: &Insn) -> Result<()> {
    use crate::state::cr0;
    if c.cpu.cr0 & (cr0::MP | cr0::TS) == (cr0::MP | cr0::TS) {
        return Err(Exception::NM);
    }
    // A pending unmasked x87 exception: #MF with CR0.NE, else FERR# (IRQ13 on a PC) and a
    // freeze until IGNNE# or an interrupt.
    crate::sem::mmx::pending_x87(c)
}
