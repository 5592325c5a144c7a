//! A decoded instruction with its operands resolved once, at decode time: register
//! references, immediates, widths and the memory operand's address parts. The semantics read
//! operands from here instead of asking iced-x86 each time the instruction runs; everything
//! else of the instruction is reached through `Deref` to the iced-x86 [`Instruction`].

use std::ops::Deref;

use iced_x86::{Instruction, OpKind, Register};

use crate::emit::RegRef;
use crate::operand::{reg_ref, seg_ref};
use crate::state::{SegReg, Width};

/// One operand, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opd {
    /// A general register.
    Reg(RegRef),
    /// A segment register.
    Seg(SegReg),
    /// The memory operand ([`Insn::mem`]).
    Mem,
    /// An immediate, as the decoder sign-extended it.
    Imm(u64),
    /// Anything else (branch targets, string operands, control registers...): the semantics
    /// that use it ask the iced-x86 instruction.
    Other,
}

/// The parts of a memory operand's effective address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemOpd {
    /// The segment after overrides.
    pub seg: SegReg,
    /// Base register, if any (not RIP: RIP-relative addresses are folded into `disp`).
    pub base: Option<RegRef>,
    /// Index register and log2 of its scale, if any.
    pub index: Option<(RegRef, u32)>,
    /// The displacement (or, for IP-relative operands, the absolute offset).
    pub disp: u64,
    /// The address size, which truncates the effective address.
    pub addr: Width,
}

/// A decoded instruction with its operands resolved.
#[derive(Clone, Debug)]
pub struct Insn {
    raw: Instruction,
    /// Operands 0-3 (as many as `op_count()`; the rest are `Other`).
    pub opd: [Opd; 4],
    /// Each operand's width (see [`crate::operand::op_width`]).
    pub width: [Width; 4],
    /// The memory operand, if the instruction has one.
    pub mem: Option<MemOpd>,
}

impl Deref for Insn {
    type Target = Instruction;
    #[inline]
    fn deref(&self) -> &Instruction {
        &self.raw
    }
}

impl Insn {
    /// Resolves the operands of `raw`, decoded as `bits`-bit code.
    pub fn new(raw: Instruction, bits: u32) -> Insn {
        let mut opd = [Opd::Other; 4];
        let mut width = [Width::W64; 4];
        let n = raw.op_count().min(4);
        for k in 0..n {
            width[k as usize] = crate::operand::op_width_raw(&raw, k);
            opd[k as usize] = match raw.op_kind(k) {
                OpKind::Register => {
                    let r = raw.op_register(k);
                    match (reg_ref(r), seg_ref(r)) {
                        (Some(rr), _) => Opd::Reg(rr),
                        (None, Some(s)) => Opd::Seg(s),
                        _ => Opd::Other,
                    }
                }
                OpKind::Memory => Opd::Mem,
                OpKind::Immediate8
                | OpKind::Immediate8_2nd
                | OpKind::Immediate16
                | OpKind::Immediate32
                | OpKind::Immediate64
                | OpKind::Immediate8to16
                | OpKind::Immediate8to32
                | OpKind::Immediate8to64
                | OpKind::Immediate32to64 => Opd::Imm(raw.immediate(k)),
                _ => Opd::Other,
            };
        }
        let mem = (0..n).any(|k| raw.op_kind(k) == OpKind::Memory).then(|| {
            let addr = crate::operand::addr_width_raw(&raw, bits == 64);
            let base = raw.memory_base();
            let ip_rel = base == Register::RIP || base == Register::EIP;
            MemOpd {
                seg: seg_ref(raw.memory_segment()).unwrap_or(SegReg::Ds),
                base: if ip_rel { None } else { reg_ref(base) },
                index: reg_ref(raw.memory_index()).map(|r| (r, raw.memory_index_scale().trailing_zeros())),
                disp: if ip_rel { raw.memory_displacement64() & addr.mask() } else { raw.memory_displacement64() },
                addr,
            }
        });
        Insn { raw, opd, width, mem }
    }

    /// The iced-x86 instruction.
    #[inline]
    pub fn raw(&self) -> &Instruction {
        &self.raw
    }
}
