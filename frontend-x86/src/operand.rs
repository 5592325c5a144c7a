//! Operand access shared by every instruction's semantics: registers, effective addresses,
//! memory operands and immediates, in terms of [`Emit`].

use crate::insn::{Insn, Opd};
use iced_x86::{OpKind, Register};

use crate::emit::{Alu, Emit, RegRef};
use crate::exception::{Exception, Result};
use crate::state::{Gpr, SegReg, Width};

const GPRS: [Gpr; 16] = [
    Gpr::Rax,
    Gpr::Rcx,
    Gpr::Rdx,
    Gpr::Rbx,
    Gpr::Rsp,
    Gpr::Rbp,
    Gpr::Rsi,
    Gpr::Rdi,
    Gpr::R8,
    Gpr::R9,
    Gpr::R10,
    Gpr::R11,
    Gpr::R12,
    Gpr::R13,
    Gpr::R14,
    Gpr::R15,
];

/// The general register with encoding number `n` (0-15).
#[inline]
pub fn gpr(n: usize) -> Gpr {
    GPRS[n & 15]
}

/// A general register operand as a [`RegRef`], or `None` for any other register.
#[inline]
pub fn reg_ref(r: Register) -> Option<RegRef> {
    let width = if r.is_gpr8() {
        Width::W8
    } else if r.is_gpr16() {
        Width::W16
    } else if r.is_gpr32() {
        Width::W32
    } else if r.is_gpr64() {
        Width::W64
    } else {
        return None;
    };
    let high8 = matches!(r, Register::AH | Register::CH | Register::DH | Register::BH);
    Some(RegRef { gpr: gpr(r.full_register().number()), width, high8 })
}

/// A segment register operand.
#[inline]
pub fn seg_ref(r: Register) -> Option<SegReg> {
    Some(match r {
        Register::ES => SegReg::Es,
        Register::CS => SegReg::Cs,
        Register::SS => SegReg::Ss,
        Register::DS => SegReg::Ds,
        Register::FS => SegReg::Fs,
        Register::GS => SegReg::Gs,
        _ => return None,
    })
}

/// A general register of a given width.
#[inline]
pub const fn reg(gpr: Gpr, width: Width) -> RegRef {
    RegRef { gpr, width, high8: false }
}

/// The width of operand `n` (resolved at decode time).
#[inline]
pub fn op_width(i: &Insn, n: u32) -> Width {
    i.width[(n & 3) as usize]
}

/// The width of operand `n` of a raw instruction: a register's size, a memory operand's size,
/// or for an immediate the width of operand 0.
pub fn op_width_raw(i: &iced_x86::Instruction, n: u32) -> Width {
    match i.op_kind(n) {
        OpKind::Register => reg_width(i.op_register(n)),
        OpKind::Immediate8 | OpKind::Immediate8_2nd => Width::W8,
        OpKind::Immediate16 => Width::W16,
        OpKind::Immediate32 => Width::W32,
        OpKind::Immediate64 => Width::W64,
        OpKind::Immediate8to16 | OpKind::Immediate8to32 | OpKind::Immediate8to64 | OpKind::Immediate32to64 => {
            if n == 0 {
                Width::W64
            } else {
                op_width_raw(i, 0)
            }
        }
        _ => Width::from_bytes(i.memory_size().size() as u32).unwrap_or(Width::W64),
    }
}

/// The width of a register (segment registers count as 16 bits).
#[inline]
pub fn reg_width(r: Register) -> Width {
    Width::from_bytes(r.size() as u32).unwrap_or(Width::W64)
}

/// The address size of the memory operand (16, 32 or 64 bits).
#[inline]
pub fn addr_width(i: &Insn, code64: bool) -> Width {
    match &i.mem {
        Some(m) => m.addr,
        None => addr_width_raw(i, code64),
    }
}

/// The address size of a raw instruction's memory operand.
pub fn addr_width_raw(i: &iced_x86::Instruction, code64: bool) -> Width {
    for r in [i.memory_base(), i.memory_index()] {
        if r == Register::None {
            continue;
        }
        if r == Register::RIP {
            return Width::W64;
        }
        if r == Register::EIP {
            return Width::W32;
        }
        return reg_width(r);
    }
    match i.memory_displ_size() {
        2 => Width::W16,
        8 => Width::W64,
        _ if code64 => Width::W64,
        _ => Width::W32,
    }
}

/// The segment a memory operand uses, after overrides.
#[inline]
pub fn mem_seg(i: &Insn) -> SegReg {
    match &i.mem {
        Some(m) => m.seg,
        None => seg_ref(i.memory_segment()).unwrap_or(SegReg::Ds),
    }
}

/// The effective address (offset in the segment) of the memory operand, truncated to the
/// address size.
#[inline]
pub fn ea<E: Emit>(e: &mut E, i: &Insn) -> E::V {
    let Some(m) = i.mem else {
        return e.imm(0);
    };
    let mut a = e.imm(m.disp);
    if let Some(b) = m.base {
        let v = e.get_reg(b);
        a = e.alu(Alu::Add, a, v, Width::W64);
    }
    if let Some((x, shift)) = m.index {
        let v = e.get_reg(x);
        let v = if shift > 0 {
            let sh = e.imm(u64::from(shift));
            e.alu(Alu::Shl, v, sh, Width::W64)
        } else {
            v
        };
        a = e.alu(Alu::Add, a, v, Width::W64);
    }
    let mask = e.imm(m.addr.mask());
    e.alu(Alu::And, a, mask, Width::W64)
}

/// Reads operand `n` at width `w` (immediates are sign-extended by the decoder and truncated
/// here).
#[inline]
pub fn read<E: Emit>(e: &mut E, i: &Insn, n: u32, w: Width) -> Result<E::V> {
    match i.opd[(n & 3) as usize] {
        Opd::Reg(r) => Ok(e.get_reg(r)),
        Opd::Seg(s) => Ok(e.get_sreg(s)),
        Opd::Mem => {
            let a = ea(e, i);
            e.load(mem_seg(i), a, w)
        }
        Opd::Imm(v) => Ok(e.imm(v & w.mask())),
        Opd::Other => Err(Exception::UD),
    }
}

/// Writes operand `n` (a general register or memory) at width `w`.
#[inline]
pub fn write<E: Emit>(e: &mut E, i: &Insn, n: u32, w: Width, v: E::V) -> Result<()> {
    match i.opd[(n & 3) as usize] {
        Opd::Reg(r) => {
            e.set_reg(r, v);
            Ok(())
        }
        Opd::Mem => {
            let a = ea(e, i);
            e.store(mem_seg(i), a, v, w)
        }
        _ => Err(Exception::UD),
    }
}

/// For read-modify-write instructions: the operand's location, resolved once so the address
/// is computed (and its registers read) before the result is written.
#[derive(Clone, Copy, Debug)]
pub enum Loc<V> {
    /// A general register.
    Reg(RegRef),
    /// Memory at segment:offset.
    Mem(SegReg, V),
}

/// Resolves operand `n` to a location.
#[inline]
pub fn loc<E: Emit>(e: &mut E, i: &Insn, n: u32) -> Result<Loc<E::V>> {
    match i.opd[(n & 3) as usize] {
        Opd::Reg(r) => Ok(Loc::Reg(r)),
        Opd::Mem => {
            let a = ea(e, i);
            Ok(Loc::Mem(mem_seg(i), a))
        }
        _ => Err(Exception::UD),
    }
}

/// Reads a resolved location.
#[inline]
pub fn load_loc<E: Emit>(e: &mut E, l: Loc<E::V>, w: Width) -> Result<E::V> {
    match l {
        Loc::Reg(r) => Ok(e.get_reg(r)),
        Loc::Mem(s, a) => e.load(s, a, w),
    }
}

/// Writes a resolved location.
#[inline]
pub fn store_loc<E: Emit>(e: &mut E, l: Loc<E::V>, w: Width, v: E::V) -> Result<()> {
    match l {
        Loc::Reg(r) => {
            e.set_reg(r, v);
            Ok(())
        }
        Loc::Mem(s, a) => e.store(s, a, v, w),
    }
}
