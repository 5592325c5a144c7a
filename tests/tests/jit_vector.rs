//! The vector path (`sem::vec`: the 128-bit moves, PAND/POR/PXOR/PANDN and their PS/PD
//! forms, PADD/PSUB/PCMPEQ) under the interpreter and the JIT: a loop over aligned, unaligned
//! and page-crossing loads and stores (the JIT's inline TLB path and its slow path) must end
//! in the same state and memory in both tiers, and the faults must be the same and precise: a
//! misaligned MOVDQA (load or store) is #GP(0) at its RIP with nothing written, CR0.TS set
//! after the code was compiled is #NM, CR4.OSFXSR clear or CR0.EM set is #UD.

use cranebox_tests::{gdt_idt_cpu, Rng, SparseBus};
use frontend_x86::state::{cr0, cr4};
use frontend_x86::CpuState;
use iced_x86::code_asm::*;
use iced_x86::{Decoder, DecoderOptions, Mnemonic};
use translator::{Exit, Interpreter};

const CODE: u64 = 0x10000;
const DATA: u64 = 0x20000;
/// Vector v's handler is a HLT at HANDLERS + v.
const HANDLERS: u64 = 0x3000;
const STACK: u64 = 0x9000;

/// How the program ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tail {
    /// MOVDQA xmm0, [di+8]: #GP.
    MisalignedLoad,
    /// MOVDQA [di+0x108], xmm1: #GP, nothing written.
    MisalignedStore,
}

/// The body: three passes of vector work on DATA, then the faulting tail and HLT.
macro_rules! body {
    ($a:ident, $di:ident, $edi:ident, $cx:ident, $tail:expr) => {{
        $a.mov($edi, DATA as u32)?;
        $a.mov($cx, 3u32)?;
        let mut top = $a.create_label();
        $a.set_label(&mut top)?;
        $a.movdqa(xmm0, xmmword_ptr($di))?;
        $a.movdqu(xmm1, xmmword_ptr($di + 3))?;
        $a.movups(xmm2, xmmword_ptr($di + 0x11))?;
        $a.movaps(xmm3, xmmword_ptr($di + 0x20))?;
        $a.movapd(xmm4, xmmword_ptr($di + 0x30))?;
        $a.movupd(xmm5, xmmword_ptr($di + 0x35))?;
        $a.paddb(xmm0, xmm1)?;
        $a.paddw(xmm1, xmmword_ptr($di + 0x40))?;
        $a.paddd(xmm2, xmm3)?;
        $a.paddq(xmm3, xmmword_ptr($di + 0x50))?;
        $a.psubb(xmm4, xmm0)?;
        $a.psubw(xmm5, xmmword_ptr($di + 0x60))?;
        $a.psubd(xmm0, xmm2)?;
        $a.psubq(xmm1, xmm5)?;
        $a.pcmpeqb(xmm6, xmm6)?;
        $a.pcmpeqw(xmm2, xmmword_ptr($di + 0x70))?;
        $a.pcmpeqd(xmm7, xmm3)?;
        $a.pcmpeqb(xmm7, xmm0)?;
        $a.pxor(xmm0, xmm6)?;
        $a.por(xmm1, xmmword_ptr($di + 0x80))?;
        $a.pand(xmm2, xmm4)?;
        $a.pandn(xmm3, xmm5)?;
        $a.xorps(xmm4, xmm1)?;
        $a.orps(xmm5, xmmword_ptr($di + 0x90))?;
        $a.andps(xmm6, xmm2)?;
        $a.andnps(xmm7, xmmword_ptr($di + 0xa0))?;
        $a.xorpd(xmm0, xmm3)?;
        $a.orpd(xmm1, xmm4)?;
        $a.andpd(xmm2, xmmword_ptr($di + 0xb0))?;
        $a.andnpd(xmm3, xmm6)?;
        $a.movdqa(xmmword_ptr($di + 0x100), xmm0)?;
        $a.movdqu(xmmword_ptr($di + 0x107), xmm1)?;
        // Across the page boundary at DATA + 0x1000: the slow paths.
        $a.movups(xmmword_ptr($di + 0xff9), xmm2)?;
        $a.movdqu(xmm7, xmmword_ptr($di + 0xffa))?;
        $a.movaps(xmmword_ptr($di + 0x120), xmm3)?;
        $a.movapd(xmmword_ptr($di + 0x130), xmm4)?;
        $a.movupd(xmmword_ptr($di + 0x13d), xmm5)?;
        $a.movdqa(xmm6, xmm7)?;
        $a.movaps(xmm5, xmm0)?;
        // The next pass reads what this one stored.
        $a.movdqa(xmmword_ptr($di), xmm6)?;
        $a.movdqu(xmmword_ptr($di + 0x33), xmm5)?;
        $a.dec($cx)?;
        $a.jnz(top)?;
        match $tail {
            Tail::MisalignedLoad => $a.movdqa(xmm0, xmmword_ptr($di + 8))?,
            Tail::MisalignedStore => $a.movdqa(xmmword_ptr($di + 0x108), xmm1)?,
        }
        $a.hlt()?;
    }};
}

fn program(bits: u32, tail: Tail) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(bits)?;
    if bits == 64 {
        body!(a, rdi, edi, ecx, tail);
    } else {
        body!(a, edi, edi, ecx, tail);
    }
    a.assemble(CODE)
}

/// The offset of the program's last MOVDQA (the faulting tail).
fn tail_ip(code: &[u8], bits: u32) -> u64 {
    let mut d = Decoder::with_ip(bits, code, CODE, DecoderOptions::NONE);
    let mut at = 0;
    for i in &mut d {
        if i.mnemonic() == Mnemonic::Movdqa {
            at = i.ip();
        }
    }
    at
}

fn machine(bits: u32, tail: Tail) -> (CpuState, SparseBus, u64) {
    let code = program(bits, tail).expect("the test program assembles");
    let (cpu, bus) = machine_with(bits, &code, 0x5eed_0000 + u64::from(bits));
    (cpu, bus, tail_ip(&code, bits))
}

/// A machine in `bits`-bit mode with `code` at CODE, random data at DATA (0x2000 bytes, a
/// page boundary in the middle) and random XMM registers from `seed`; RDI = DATA.
fn machine_with(bits: u32, code: &[u8], seed: u64) -> (CpuState, SparseBus) {
    let mut bus = SparseBus::new(32);
    let long = bits == 64;
    bus.put(HANDLERS, &[0xf4; 256]);
    let mut cpu = gdt_idt_cpu(&mut bus, long, |v| HANDLERS + v);
    cpu.cr4 |= cr4::OSFXSR;
    cpu.gpr[4] = STACK;
    let mut rng = Rng(seed);
    for k in 0..0x2000u64 {
        bus.mem.insert(DATA + k, rng.next_u64() as u8);
    }
    for k in 0..cpu.xmm.len() {
        cpu.xmm[k] = u128::from(rng.next_u64()) | u128::from(rng.next_u64()) << 64;
        // Now and then the previous register with one bit changed: equal lanes for the
        // compares, minimums and maximums.
        if k > 0 && rng.next_u64().is_multiple_of(4) {
            cpu.xmm[k] = cpu.xmm[k - 1] ^ 1u128 << (rng.next_u64() % 128);
        }
    }
    bus.put(CODE, code);
    cpu.rip = CODE;
    cpu.gpr[7] = DATA;
    (cpu, bus)
}

fn summary(cpu: &CpuState) -> String {
    format!(
        "gpr {:x?}\nrip {:#x} flags {:#x} halted {}\ncr0 {:#x} cr4 {:#x}\nxmm {:x?}",
        cpu.gpr,
        cpu.rip,
        cpu.flags.get(),
        cpu.halted,
        cpu.cr0,
        cpu.cr4,
        cpu.xmm
    )
}

/// The vector a program ended in (its handler's HLT) and the RIP the exception frame holds.
fn fault(cpu: &CpuState, bus: &SparseBus, bits: u32, has_code: bool) -> (u64, u64) {
    let vector = cpu.rip.wrapping_sub(HANDLERS + 1);
    let slot = if bits == 64 { 8 } else { 4 };
    let frame = cpu.gpr[4] + if has_code { slot } else { 0 };
    (vector, bus.get(frame, slot))
}

/// Runs to the end under `tier` (which keeps its cache).
fn run(tier: &mut Interpreter, cpu: &mut CpuState, bus: &mut SparseBus) -> Exit {
    let (_, exit) = tier.run(cpu, bus, 10_000);
    exit
}

fn tiers() -> [Interpreter; 2] {
    [Interpreter::new(), Interpreter::with_jit(0).expect("this host has a Cranelift backend")]
}

/// Both tiers end each scenario alike, and as expected.
fn scenario(bits: u32) {
    for tail in [Tail::MisalignedLoad, Tail::MisalignedStore] {
        let mut ends = Vec::new();
        for (k, mut tier) in tiers().into_iter().enumerate() {
            let (mut cpu, mut bus, at) = machine(bits, tail);
            assert_eq!(run(&mut tier, &mut cpu, &mut bus), Exit::Halted);
            assert_eq!(fault(&cpu, &bus, bits, true), (13, at), "{bits}-bit {tail:?} tier {k}: #GP at the MOVDQA");
            assert_eq!(bus.get(cpu.gpr[4], 4), 0, "{bits}-bit {tail:?} tier {k}: error code 0");
            // The last pass stored XMM1 at DATA+0x107 and left it as it was: the faulting
            // store at DATA+0x108 wrote nothing over it.
            let stored: Vec<u8> = (0..16).map(|j| bus.get(DATA + 0x107 + j, 1) as u8).collect();
            assert_eq!(stored, cpu.xmm[1].to_le_bytes(), "{bits}-bit {tail:?} tier {k}: memory at the store");
            if k == 1 {
                assert!(tier.stats.compiled_instructions > 100, "{bits}-bit {tail:?}: the loop ran compiled");
            }
            let first = (summary(&cpu), bus.mem.clone());

            // Again from the start with the same cache (the code stays compiled), under each of
            // the conditions that fault at the first vector instruction.
            let mut again = Vec::new();
            for (what, set0, clear4, vector) in
                [("TS", cr0::TS, 0, 7), ("EM", cr0::EM, 0, 6), ("no OSFXSR", 0, cr4::OSFXSR, 6)]
            {
                let (mut c, mut b, _) = machine(bits, tail);
                c.cr0 |= set0;
                c.cr4 &= !clear4;
                let n0 = tier.stats.compiled_instructions;
                assert_eq!(run(&mut tier, &mut c, &mut b), Exit::Halted);
                // The MOV EDI and MOV ECX before it ran, the MOVDQA at `top` faulted.
                let top = CODE + 10;
                assert_eq!(fault(&c, &b, bits, false), (vector, top), "{bits}-bit {what} tier {k}");
                assert_eq!(c.gpr[1] & 0xffff_ffff, 3, "{what}: ECX loaded before the fault");
                if k == 1 {
                    assert!(tier.stats.compiled_instructions > n0, "{what}: the entry ran compiled");
                }
                again.push((summary(&c), b.mem));
            }
            ends.push((first, again));
        }
        let (a, b) = (&ends[0], &ends[1]);
        assert_eq!(a.0 .0, b.0 .0, "{bits}-bit {tail:?}: interpreter vs JIT state");
        assert!(a.0 .1 == b.0 .1, "{bits}-bit {tail:?}: interpreter vs JIT memory");
        for (x, y) in a.1.iter().zip(&b.1) {
            assert_eq!(x.0, y.0, "{bits}-bit {tail:?}: fault at entry, state");
            assert!(x.1 == y.1, "{bits}-bit {tail:?}: fault at entry, memory");
        }
    }
}

#[test]
fn vector_ops_match_in_protected_mode() {
    scenario(32);
}

#[test]
fn vector_ops_match_in_long_mode() {
    scenario(64);
}

/// (mandatory prefix, opcode after 0F): the inline vector operations (`sem::vec`) and,
/// mixed in, some that stay helpers, so both kinds meet in one compiled unit.
const VECTOR_OPS: &[(Option<u8>, u8)] = &[
    (Some(0x66), 0x6f), // MOVDQA
    (Some(0xf3), 0x6f), // MOVDQU
    (None, 0x28),       // MOVAPS
    (None, 0x10),       // MOVUPS
    (Some(0x66), 0x28), // MOVAPD
    (Some(0x66), 0x10), // MOVUPD
    (Some(0x66), 0x7f), // MOVDQA
    (Some(0xf3), 0x7f), // MOVDQU
    (None, 0x29),       // MOVAPS
    (None, 0x11),       // MOVUPS
    (Some(0x66), 0x29), // MOVAPD
    (Some(0x66), 0x11), // MOVUPD
    (Some(0x66), 0xfc), // PADDB
    (Some(0x66), 0xfd), // PADDW
    (Some(0x66), 0xfe), // PADDD
    (Some(0x66), 0xd4), // PADDQ
    (Some(0x66), 0xf8), // PSUBB
    (Some(0x66), 0xf9), // PSUBW
    (Some(0x66), 0xfa), // PSUBD
    (Some(0x66), 0xfb), // PSUBQ
    (Some(0x66), 0x74), // PCMPEQB
    (Some(0x66), 0x75), // PCMPEQW
    (Some(0x66), 0x76), // PCMPEQD
    (Some(0x66), 0xef), // PXOR
    (Some(0x66), 0xeb), // POR
    (Some(0x66), 0xdb), // PAND
    (Some(0x66), 0xdf), // PANDN
    (None, 0x57),       // XORPS
    (None, 0x56),       // ORPS
    (None, 0x54),       // ANDPS
    (None, 0x55),       // ANDNPS
    (Some(0x66), 0x57), // XORPD
    (Some(0x66), 0x56), // ORPD
    (Some(0x66), 0x54), // ANDPD
    (Some(0x66), 0x55), // ANDNPD
    (Some(0x66), 0xec), // PADDSB
    (Some(0x66), 0xed), // PADDSW
    (Some(0x66), 0xdc), // PADDUSB
    (Some(0x66), 0xdd), // PADDUSW
    (Some(0x66), 0xe8), // PSUBSB
    (Some(0x66), 0xe9), // PSUBSW
    (Some(0x66), 0xd8), // PSUBUSB
    (Some(0x66), 0xd9), // PSUBUSW
    (Some(0x66), 0x64), // PCMPGTB
    (Some(0x66), 0x65), // PCMPGTW
    (Some(0x66), 0x66), // PCMPGTD
    (Some(0x66), 0xee), // PMAXSW
    (Some(0x66), 0xea), // PMINSW
    (Some(0x66), 0xde), // PMAXUB
    (Some(0x66), 0xda), // PMINUB
    (Some(0x66), 0xe0), // PAVGB
    (Some(0x66), 0xe3), // PAVGW
    (Some(0x66), 0xd5), // PMULLW
    (Some(0x66), 0x60), // PUNPCKLBW
    (Some(0x66), 0x61), // PUNPCKLWD
    (Some(0x66), 0x62), // PUNPCKLDQ
    (Some(0x66), 0x6c), // PUNPCKLQDQ
    (Some(0x66), 0x68), // PUNPCKHBW
    (Some(0x66), 0x69), // PUNPCKHWD
    (Some(0x66), 0x6a), // PUNPCKHDQ
    (Some(0x66), 0x6d), // PUNPCKHQDQ
    (None, 0x14),       // UNPCKLPS
    (None, 0x15),       // UNPCKHPS
    (Some(0x66), 0x14), // UNPCKLPD
    (Some(0x66), 0x15), // UNPCKHPD
    // Helpers.
    (Some(0x66), 0xf4), // PMULUDQ
    (Some(0x66), 0xe5), // PMULHW
    (Some(0x66), 0x63), // PACKSSWB
    (Some(0x66), 0xd1), // PSRLW xmm, xmm/m128
    (None, 0x58),       // ADDPS
];

/// Packed operations with an imm8: (mandatory prefix, opcode after 0F, `Some(n)` for the
/// shift groups 0F 71/72/73 /n (an XMM register only), `None` for PSHUFD/PSHUFLW/PSHUFHW
/// (xmm, xmm/m128, imm8)). All inline but the last two.
const IMM_OPS: &[(u8, u8, Option<u8>)] = &[
    (0x66, 0x70, None),    // PSHUFD
    (0xf2, 0x70, None),    // PSHUFLW
    (0xf3, 0x70, None),    // PSHUFHW
    (0x66, 0x71, Some(2)), // PSRLW
    (0x66, 0x71, Some(4)), // PSRAW
    (0x66, 0x71, Some(6)), // PSLLW
    (0x66, 0x72, Some(2)), // PSRLD
    (0x66, 0x72, Some(4)), // PSRAD
    (0x66, 0x72, Some(6)), // PSLLD
    (0x66, 0x73, Some(2)), // PSRLQ
    (0x66, 0x73, Some(6)), // PSLLQ
    // Helpers.
    (0x66, 0x73, Some(3)), // PSRLDQ
    (0x66, 0x73, Some(7)), // PSLLDQ
];

/// An instruction of [`IMM_OPS`] on random XMM registers (or memory at [EDI/RDI + disp32] for
/// the shuffles) with a count or selector biased toward the lane widths.
fn imm_instruction(rng: &mut Rng, bits: u32, code: &mut Vec<u8>) {
    let (prefix, op, group) = IMM_OPS[(rng.next_u64() % IMM_OPS.len() as u64) as usize];
    code.push(prefix);
    let memory = group.is_none() && rng.next_u64().is_multiple_of(3);
    let reg = group.unwrap_or((rng.next_u64() % 8) as u8);
    let rm = if memory { 7 } else { (rng.next_u64() % 8) as u8 };
    if bits == 64 {
        // REX.R only where the reg field names a register, REX.B only for a register rm.
        let r = if group.is_none() { rng.next_u64() % 2 } else { 0 };
        let b = if memory { 0 } else { rng.next_u64() % 2 };
        if r | b != 0 {
            code.push(0x40 | (r as u8) << 2 | b as u8);
        }
    }
    code.extend_from_slice(&[0x0f, op]);
    if memory {
        code.push(0x80 | reg << 3 | rm);
        code.extend_from_slice(&((rng.next_u64() % 0x1f0) as u32 * 16).to_le_bytes());
    } else {
        code.push(0xc0 | reg << 3 | rm);
    }
    let imm = match rng.next_u64() % 4 {
        0 => rng.next_u64() as u8,
        1 => [15, 16, 17, 31, 32, 33, 63, 64, 65][(rng.next_u64() % 9) as usize],
        _ => (rng.next_u64() % 16) as u8,
    };
    code.push(imm);
}

/// A random stream of vector instructions on XMM registers and on memory at [EDI/RDI +
/// disp32] inside DATA (mostly 16-byte aligned, sometimes not: #GP for the aligned forms),
/// with now and then a step of EDI, then HLT.
fn random_vector_program(rng: &mut Rng, bits: u32) -> Vec<u8> {
    let mut code = Vec::new();
    let n = 4 + rng.next_u64() % 40;
    for _ in 0..n {
        if rng.next_u64().is_multiple_of(10) {
            // ADD EDI, imm8 (multiple of 8): moves the base, may misalign it.
            code.extend_from_slice(&[0x83, 0xc7, (rng.next_u64() % 4) as u8 * 8]);
            continue;
        }
        if rng.next_u64().is_multiple_of(5) {
            imm_instruction(rng, bits, &mut code);
            continue;
        }
        let (prefix, op) = VECTOR_OPS[(rng.next_u64() % VECTOR_OPS.len() as u64) as usize];
        let reg = (rng.next_u64() % 8) as u8;
        let memory = rng.next_u64().is_multiple_of(2);
        let rm = if memory { 7 } else { (rng.next_u64() % 8) as u8 };
        if let Some(p) = prefix {
            code.push(p);
        }
        if bits == 64 {
            // REX.R / REX.B reach XMM8-15 (B only for a register operand: [R15] is not DATA).
            let r = rng.next_u64() % 2;
            let b = if memory { 0 } else { rng.next_u64() % 2 };
            if r | b != 0 {
                code.push(0x40 | (r as u8) << 2 | b as u8);
            }
        }
        code.extend_from_slice(&[0x0f, op]);
        if memory {
            let disp: u32 = if rng.next_u64().is_multiple_of(8) {
                (rng.next_u64() % 0x1f00) as u32
            } else {
                (rng.next_u64() % 0x1f0) as u32 * 16
            };
            code.push(0x80 | reg << 3 | rm);
            code.extend_from_slice(&disp.to_le_bytes());
        } else {
            code.push(0xc0 | reg << 3 | rm);
        }
    }
    code.push(0xf4);
    code
}

/// Random streams of vector instructions (inline operations and helpers, registers and
/// memory, aligned and misaligned, page-crossing) end in the same state, memory and
/// instruction count under the interpreter and the JIT.
fn random_streams(bits: u32) {
    let mut rng = Rng(0x7ec7_0000 + u64::from(bits));
    let mut compiled = 0;
    let mut faults = 0;
    for p in 0..300 {
        let code = random_vector_program(&mut rng, bits);
        let seed = rng.next_u64();
        let mut ends = Vec::new();
        for (k, mut tier) in tiers().into_iter().enumerate() {
            let (mut cpu, mut bus) = machine_with(bits, &code, seed);
            let (n, exit) = tier.run(&mut cpu, &mut bus, 10_000);
            if k == 1 {
                compiled += tier.stats.compiled_instructions;
                // A vector operation the host's Cranelift backend cannot lower would leave
                // its unit interpreted and the comparison empty.
                let failures = tier.jit_stats().map_or(0, |s| s.failures);
                assert_eq!(failures, 0, "{bits}-bit program {p} ({code:02x?}): a unit failed to compile");
            }
            if cpu.rip != CODE + code.len() as u64 {
                faults += 1;
            }
            ends.push((summary(&cpu), bus.mem, n, exit));
        }
        let (a, b) = (&ends[0], &ends[1]);
        assert_eq!(a.0, b.0, "{bits}-bit program {p} ({code:02x?}): interpreter vs JIT state");
        assert!(a.1 == b.1, "{bits}-bit program {p} ({code:02x?}): interpreter vs JIT memory");
        assert_eq!((a.2, a.3), (b.2, b.3), "{bits}-bit program {p}: instruction count / exit");
    }
    assert!(compiled > 1500, "{bits}-bit: only {compiled} instructions ran compiled");
    // Both ways of ending are covered: the HLT after the stream, and a fault's handler.
    assert!((30..570).contains(&faults), "{bits}-bit: {faults} of 600 runs ended in a fault");
}

#[test]
fn random_vector_streams_match_in_protected_mode() {
    random_streams(32);
}

#[test]
fn random_vector_streams_match_in_long_mode() {
    random_streams(64);
}
