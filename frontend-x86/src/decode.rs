//! Fetching and decoding guest code with iced-x86: one instruction, or a block that ends at a
//! control transfer, a sensitive instruction, or the end of a page.

use iced_x86::{Decoder, DecoderOptions, Instruction};

use crate::bus::CpuBus;
use crate::exception::{Exception, Result};
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
        let off = if bits == 16 { (ip + k as u64) & 0xffff } else { ip.wrapping_add(k as u64) };
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
