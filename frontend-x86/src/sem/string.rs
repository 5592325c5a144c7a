//! String instructions with REP/REPE/REPNE: a helper in both tiers.
//!
//! A repeated instruction runs a bounded number of iterations per execution and, if it is not
//! done, leaves the instruction pointer on itself, so interrupts are taken between iterations
//! as on hardware and a fault leaves the registers of the completed iterations.

use crate::insn::Insn;
use iced_x86::{Mnemonic, OpKind};

use crate::concrete::Concrete;
use crate::exception::{Exception, Result};
use crate::flags::{FlagOp, DF};
use crate::mem;
use crate::operand as op;
use crate::state::{Gpr, SegReg, Width};

/// Iterations of a REP instruction per execution before the CPU looks for interrupts again.
const REP_CHUNK: u32 = 4096;

fn addr_width(i: &Insn) -> Width {
    for n in 0..i.op_count() {
        match i.op_kind(n) {
            OpKind::MemorySegSI | OpKind::MemoryESDI => return Width::W16,
            OpKind::MemorySegESI | OpKind::MemoryESEDI => return Width::W32,
            OpKind::MemorySegRSI | OpKind::MemoryESRDI => return Width::W64,
            _ => {}
        }
    }
    Width::W16
}

fn elem_width(i: &Insn) -> Width {
    Width::from_bytes(i.memory_size().size() as u32).unwrap_or(Width::W8)
}

/// Port I/O for INS/OUTS, with the protected-mode permission check.
fn io_allowed(c: &mut Concrete<'_>, port: u16, w: Width) -> Result<()> {
    super::system::check_io(c, port, w)
}

/// MOVS, CMPS, STOS, LODS, SCAS, INS, OUTS.
pub fn string_op(c: &mut Concrete<'_>, i: &Insn, m: Mnemonic) -> Result<()> {
    let aw = addr_width(i);
    let w = elem_width(i);
    let src_seg = op::mem_seg(i);
    let compares = matches!(m, Mnemonic::Cmpsb | Mnemonic::Cmpsw | Mnemonic::Cmpsd | Mnemonic::Cmpsq)
        || matches!(m, Mnemonic::Scasb | Mnemonic::Scasw | Mnemonic::Scasd | Mnemonic::Scasq);
    let rep = i.has_rep_prefix() || i.has_repne_prefix();
    let step =
        if c.cpu.flags.raw_bits() & DF != 0 { (u64::from(w.bytes())).wrapping_neg() } else { u64::from(w.bytes()) };
    let kind = Kind::of(m).ok_or(Exception::UD)?;
    if matches!(kind, Kind::Ins | Kind::Outs) {
        let port = c.cpu.reg(Gpr::Rdx, Width::W16) as u16;
        io_allowed(c, port, w)?;
    }
    let mut budget = REP_CHUNK;
    loop {
        if rep && c.cpu.reg(Gpr::Rcx, aw) == 0 {
            return Ok(());
        }
        let si = c.cpu.reg(Gpr::Rsi, aw);
        let di = c.cpu.reg(Gpr::Rdi, aw);
        match kind {
            Kind::Movs => {
                let v = mem::read(c.cpu, c.bus, src_seg, si, w)?;
                mem::write(c.cpu, c.bus, SegReg::Es, di, w, v)?;
                c.cpu.set_reg(Gpr::Rsi, aw, si.wrapping_add(step));
                c.cpu.set_reg(Gpr::Rdi, aw, di.wrapping_add(step));
            }
            Kind::Cmps => {
                let a = mem::read(c.cpu, c.bus, src_seg, si, w)?;
                let b = mem::read(c.cpu, c.bus, SegReg::Es, di, w)?;
                c.cpu.flags.set_lazy(FlagOp::Sub, w, a, b, a.wrapping_sub(b));
                c.cpu.set_reg(Gpr::Rsi, aw, si.wrapping_add(step));
                c.cpu.set_reg(Gpr::Rdi, aw, di.wrapping_add(step));
            }
            Kind::Stos => {
                let v = c.cpu.reg(Gpr::Rax, w);
                mem::write(c.cpu, c.bus, SegReg::Es, di, w, v)?;
                c.cpu.set_reg(Gpr::Rdi, aw, di.wrapping_add(step));
            }
            Kind::Lods => {
                let v = mem::read(c.cpu, c.bus, src_seg, si, w)?;
                c.cpu.set_reg(Gpr::Rax, w, v);
                c.cpu.set_reg(Gpr::Rsi, aw, si.wrapping_add(step));
            }
            Kind::Scas => {
                let a = c.cpu.reg(Gpr::Rax, w);
                let b = mem::read(c.cpu, c.bus, SegReg::Es, di, w)?;
                c.cpu.flags.set_lazy(FlagOp::Sub, w, a, b, a.wrapping_sub(b));
                c.cpu.set_reg(Gpr::Rdi, aw, di.wrapping_add(step));
            }
            Kind::Ins => {
                // The destination is checked before the port is read, so a faulting INS does
                // not consume input.
                let lin = mem::seg_linear(c.cpu, SegReg::Es, di, w.bytes(), mem::AccessKind::Write)?;
                mem::translate(c.cpu, c.bus, lin, mem::AccessKind::Write)?;
                let port = c.cpu.reg(Gpr::Rdx, Width::W16) as u16;
                let v = u64::from(c.bus.io_read(port, w.bytes()));
                mem::write(c.cpu, c.bus, SegReg::Es, di, w, v)?;
                c.cpu.set_reg(Gpr::Rdi, aw, di.wrapping_add(step));
            }
            Kind::Outs => {
                let v = mem::read(c.cpu, c.bus, src_seg, si, w)?;
                let port = c.cpu.reg(Gpr::Rdx, Width::W16) as u16;
                c.bus.io_write(port, w.bytes(), v as u32);
                c.cpu.set_reg(Gpr::Rsi, aw, si.wrapping_add(step));
            }
        }
        if !rep {
            return Ok(());
        }
        let cx = c.cpu.reg(Gpr::Rcx, aw).wrapping_sub(1);
        c.cpu.set_reg(Gpr::Rcx, aw, cx);
        if compares {
            let zf = c.cpu.flags.zf();
            // REPE stops on a difference, REPNE on a match.
            if (i.has_rep_prefix() && !zf) || (i.has_repne_prefix() && zf) {
                return Ok(());
            }
        }
        if cx & aw.mask() == 0 {
            return Ok(());
        }
        budget -= 1;
        if budget == 0 {
            // Not done: run this instruction again after checking for interrupts.
            c.cpu.next_rip = c.cpu.rip;
            return Ok(());
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Movs,
    Cmps,
    Stos,
    Lods,
    Scas,
    Ins,
    Outs,
}

impl Kind {
    fn of(m: Mnemonic) -> Option<Kind> {
        use Mnemonic::*;
        Some(match m {
            Movsb | Movsw | Movsd | Movsq => Kind::Movs,
            Cmpsb | Cmpsw | Cmpsd | Cmpsq => Kind::Cmps,
            Stosb | Stosw | Stosd | Stosq => Kind::Stos,
            Lodsb | Lodsw | Lodsd | Lodsq => Kind::Lods,
            Scasb | Scasw | Scasd | Scasq => Kind::Scas,
            Insb | Insw | Insd => Kind::Ins,
            Outsb | Outsw | Outsd => Kind::Outs,
            _ => return None,
        })
    }
}
