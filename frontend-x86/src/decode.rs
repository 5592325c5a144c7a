//! Fetching and decoding guest code with iced-x86: one instruction, or a block that ends at a
//! control transfer, a sensitive instruction, or the end of a page.

use iced_x86::{Decoder, DecoderOptions, Instruction};

use crate::bus::CpuBus;
use crate::exception::{Exception, Result};
use crate::insn::Insn;
use crate::mem::{self, AccessKind};
use crate::state::{CpuState, SegReg, Width};

/// The longest instruction the architecture allows.
pub const MAX_INSN_LEN: usize = 15;

/// Fetches up to 15 bytes at CS:`ip` for decoding. Bytes past the CS limit or on a page that
/// cannot be fetched are not fetched; the returned count says how many were.
fn fetch(
    cpu: &mut CpuState,
    bus: &mut dyn CpuBus,
    ip: u64,
    buf: &mut [u8; MAX_INSN_LEN],
) -> (usize, Option<Exception>) {
    let bits = cpu.code_bits();
    for (k, slot) in buf.iter_mut().enumerate() {
        // 16-bit code wraps IP at 64 KiB; an EIP already above that (set by a 32-bit branch
        // into a segment with a larger limit) does not wrap.
        let off = if bits == 16 && ip <= 0xffff { (ip + k as u64) & 0xffff } else { ip.wrapping_add(k as u64) };
        let off = if bits == 32 { off & 0xffff_ffff } else { off };
        let byte = mem::seg_linear(cpu, SegReg::Cs, off, 1, AccessKind::Exec)
            .and_then(|lin| mem::read_linear(cpu, bus, lin, Width::W8, AccessKind::Exec));
        match byte {
            Ok(b) => *slot = b as u8,
            Err(e) => return (k, Some(e)),
        }
    }
    (MAX_INSN_LEN, None)
}

/// Decodes the instruction at CS:RIP. A fetch fault is reported only if the instruction
/// actually needs the byte that could not be fetched; 16 or more bytes of prefixes is #GP(0).
pub fn decode_one(cpu: &mut CpuState, bus: &mut dyn CpuBus) -> Result<Instruction> {
    let ip = cpu.rip;
    let mut buf = [0u8; MAX_INSN_LEN];
    let (n, fault) = fetch(cpu, bus, ip, &mut buf);
    let bits = cpu.code_bits();
    let mut d = Decoder::with_ip(bits, &buf[..n], ip, DecoderOptions::NONE);
    let insn = d.decode();
    if insn.is_invalid() {
        return Err(match (d.last_error(), fault) {
            (iced_x86::DecoderError::NoMoreBytes, Some(f)) => f,
            (iced_x86::DecoderError::NoMoreBytes, None) => Exception::gp(0),
            _ => Exception::UD,
        });
    }
    Ok(insn)
}

/// The offset of the instruction after `insn`, wrapped to the code size.
#[inline]
pub fn next_ip(cpu: &CpuState, insn: &Instruction) -> u64 {
    let n = insn.ip().wrapping_add(insn.len() as u64);
    match cpu.code_bits() {
        16 => n & 0xffff,
        32 => n & 0xffff_ffff,
        _ => n,
    }
}

/// Instructions per block at most.
pub const MAX_BLOCK_INSNS: usize = 64;

/// A straight run of decoded guest instructions: it ends at a control transfer, a sensitive
/// instruction (which runs as a system helper), or where the next instruction would start on
/// another page.
#[derive(Clone, Debug)]
pub struct Block {
    /// The instructions, in order; the first is at the block's start.
    pub insns: Vec<Insn>,
    /// What each instruction does, resolved at decode time.
    pub ops: Vec<crate::sem::Op>,
    /// The same as functions on concrete values, for the interpreter.
    pub fns: Vec<crate::emit::Helper>,
    /// The offset of the instruction after each one, wrapped to the code size.
    pub next_ips: Vec<u64>,
    /// The physical pages the block's bytes came from (one or two).
    pub pages: Vec<u64>,
    /// The last instruction runs as a helper (sensitive instructions all do): after it the
    /// exec loop looks for interrupts again.
    pub ends_in_helper: bool,
}

/// Decodes the block at CS:RIP. Fails only if the first instruction cannot be fetched or
/// decoded (with the exception that instruction raises); a later bad instruction ends the
/// block before it, to fault when it is reached.
pub fn decode_block(cpu: &mut CpuState, bus: &mut dyn CpuBus) -> Result<Block> {
    let bits = cpu.code_bits();
    let first = Insn::new(decode_one(cpu, bus)?, bits);
    let start = cpu.rip;
    let start_lin = cpu.seg[SegReg::Cs as usize].base.wrapping_add(start);
    let page_left = 0x1000 - (start_lin & 0xfff);
    let first_page = mem::translate(cpu, bus, start_lin & !0xfff, AccessKind::Exec)? >> 12;
    let mut pages = vec![first_page];
    let mut insns = vec![first.clone()];
    let mut off = first.len() as u64;
    let wrap_limit = if bits == 16 { 0x1_0000u64.saturating_sub(start).max(1) } else { u64::MAX };
    // Bytes of the rest of the page (and one instruction's worth past it), fetched in chunks.
    let mut buf: Vec<u8> = Vec::new();
    let want_total = (page_left + MAX_INSN_LEN as u64).min(wrap_limit);
    while !crate::sem::ends_block(insns.last().unwrap_or(&first)) && off < page_left && insns.len() < MAX_BLOCK_INSNS {
        while (buf.len() as u64) < (off + MAX_INSN_LEN as u64).min(want_total) {
            let at = buf.len() as u64;
            let ip = start + at;
            let byte = mem::seg_linear(cpu, SegReg::Cs, ip, 1, AccessKind::Exec)
                .and_then(|lin| mem::read_linear(cpu, bus, lin, Width::W8, AccessKind::Exec));
            match byte {
                Ok(b) => buf.push(b as u8),
                Err(_) => break,
            }
        }
        if (buf.len() as u64) <= off {
            break;
        }
        let mut d = Decoder::with_ip(bits, &buf[off as usize..], start + off, DecoderOptions::NONE);
        let insn = d.decode();
        if insn.is_invalid() {
            break;
        }
        off += insn.len() as u64;
        insns.push(Insn::new(insn, bits));
    }
    // The last instruction may straddle into the next page.
    let end_lin = start_lin.wrapping_add(off - 1);
    if end_lin >> 12 != start_lin >> 12 {
        let p = mem::translate(cpu, bus, end_lin & !0xfff, AccessKind::Exec)? >> 12;
        pages.push(p);
    }
    let ops: Vec<crate::sem::Op> = insns.iter().map(crate::sem::resolve).collect();
    let next_ips = insns.iter().map(|i| next_ip(cpu, i)).collect();
    let ends_in_helper = matches!(ops.last(), Some(crate::sem::Op::Helper(_)));
    let fns = ops.iter().map(|op| crate::sem::concrete_fn(*op)).collect();
    Ok(Block { insns, ops, fns, next_ips, pages, ends_in_helper })
}
