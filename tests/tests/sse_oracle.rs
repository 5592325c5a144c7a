//! The SSE2 instructions implemented so far, against the host CPU: each runs natively on
//! random 128-bit operands (inline assembly) and on the interpreter, and XMM0 must agree.
//! Plus MOVD/MOVQ/PMOVMSKB into general registers, alignment faults, and FXSAVE/FXRSTOR
//! round trips. x86-64 hosts only.
#![cfg(target_arch = "x86_64")]

mod common;

use std::arch::asm;

use cranebox_tests::{Rng, SparseBus};
use frontend_x86::state::cr4;
use frontend_x86::{CpuState, Gpr, Width};
use iced_x86::code_asm::*;

macro_rules! host {
    ($text:literal) => {
        host_binary!(u128, "movdqu", "xmm0", "xmm1", "/* */", $text)
    };
}

type Emu = fn(&mut CodeAssembler) -> Result<(), IcedError>;

macro_rules! case {
    ($text:literal, $m:ident) => {
        ($text, host!($text), (|a: &mut CodeAssembler| a.$m(xmm0, xmm1)) as Emu)
    };
}

macro_rules! case_imm {
    ($text:literal, $m:ident, $imm:expr) => {
        ($text, host!($text), (|a: &mut CodeAssembler| a.$m(xmm0, xmm1, $imm)) as Emu)
    };
}

macro_rules! case_imm0 {
    ($text:literal, $m:ident, $imm:expr) => {
        ($text, host!($text), (|a: &mut CodeAssembler| a.$m(xmm0, $imm)) as Emu)
    };
}

fn machine(code: &[u8]) -> (CpuState, SparseBus) {
    let (mut cpu, bus) = common::machine(code);
    cpu.cr4 |= cr4::OSFXSR;
    (cpu, bus)
}

fn assemble(f: Emu) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    f(&mut a)?;
    a.hlt()?;
    a.assemble(0x8000)
}

fn random128(rng: &mut Rng) -> u128 {
    let v = u128::from(rng.next_u64()) | u128::from(rng.next_u64()) << 64;
    // Small values now and then, so shifts by a register count see in-range counts.
    if rng.next_u64().is_multiple_of(3) {
        return v & 0x3f;
    }
    // Equal lanes now and then, so the compares see both outcomes.
    if rng.next_u64().is_multiple_of(4) {
        v & 0x00ff_00ff_0000_ffff_0000_0000_ffff_00ff
    } else {
        v
    }
}

#[test]
fn packed_integer_and_logic_instructions_match_the_host() -> Result<(), IcedError> {
    let cases = [
        case!("pxor xmm0, xmm1", pxor),
        case!("pand xmm0, xmm1", pand),
        case!("por xmm0, xmm1", por),
        case!("pandn xmm0, xmm1", pandn),
        case!("xorps xmm0, xmm1", xorps),
        case!("andnpd xmm0, xmm1", andnpd),
        case!("paddb xmm0, xmm1", paddb),
        case!("paddw xmm0, xmm1", paddw),
        case!("paddd xmm0, xmm1", paddd),
        case!("paddq xmm0, xmm1", paddq),
        case!("psubb xmm0, xmm1", psubb),
        case!("psubw xmm0, xmm1", psubw),
        case!("psubd xmm0, xmm1", psubd),
        case!("psubq xmm0, xmm1", psubq),
        case!("pcmpeqb xmm0, xmm1", pcmpeqb),
        case!("pcmpeqw xmm0, xmm1", pcmpeqw),
        case!("pcmpeqd xmm0, xmm1", pcmpeqd),
        case!("movdqa xmm0, xmm1", movdqa),
        case!("pcmpgtb xmm0, xmm1", pcmpgtb),
        case!("pcmpgtw xmm0, xmm1", pcmpgtw),
        case!("pcmpgtd xmm0, xmm1", pcmpgtd),
        case!("paddsb xmm0, xmm1", paddsb),
        case!("paddsw xmm0, xmm1", paddsw),
        case!("psubsb xmm0, xmm1", psubsb),
        case!("psubsw xmm0, xmm1", psubsw),
        case!("paddusb xmm0, xmm1", paddusb),
        case!("paddusw xmm0, xmm1", paddusw),
        case!("psubusb xmm0, xmm1", psubusb),
        case!("psubusw xmm0, xmm1", psubusw),
        case!("pmullw xmm0, xmm1", pmullw),
        case!("pmulhw xmm0, xmm1", pmulhw),
        case!("pmulhuw xmm0, xmm1", pmulhuw),
        case!("pmuludq xmm0, xmm1", pmuludq),
        case!("pmaddwd xmm0, xmm1", pmaddwd),
        case!("pavgb xmm0, xmm1", pavgb),
        case!("pavgw xmm0, xmm1", pavgw),
        case!("pminub xmm0, xmm1", pminub),
        case!("pmaxub xmm0, xmm1", pmaxub),
        case!("pminsw xmm0, xmm1", pminsw),
        case!("pmaxsw xmm0, xmm1", pmaxsw),
        case!("psadbw xmm0, xmm1", psadbw),
        case!("punpcklbw xmm0, xmm1", punpcklbw),
        case!("punpckhbw xmm0, xmm1", punpckhbw),
        case!("punpcklwd xmm0, xmm1", punpcklwd),
        case!("punpckhwd xmm0, xmm1", punpckhwd),
        case!("punpckldq xmm0, xmm1", punpckldq),
        case!("punpckhdq xmm0, xmm1", punpckhdq),
        case!("punpcklqdq xmm0, xmm1", punpcklqdq),
        case!("punpckhqdq xmm0, xmm1", punpckhqdq),
        case!("packsswb xmm0, xmm1", packsswb),
        case!("packssdw xmm0, xmm1", packssdw),
        case!("packuswb xmm0, xmm1", packuswb),
        case!("psllw xmm0, xmm1", psllw),
        case!("pslld xmm0, xmm1", pslld),
        case!("psllq xmm0, xmm1", psllq),
        case!("psrlw xmm0, xmm1", psrlw),
        case!("psrld xmm0, xmm1", psrld),
        case!("psrlq xmm0, xmm1", psrlq),
        case!("psraw xmm0, xmm1", psraw),
        case!("psrad xmm0, xmm1", psrad),
        case_imm!("pshufd xmm0, xmm1, 0x1b", pshufd, 0x1b),
        case_imm!("pshufd xmm0, xmm1, 0xe4", pshufd, 0xe4),
        case_imm!("pshuflw xmm0, xmm1, 0x72", pshuflw, 0x72),
        case_imm!("pshufhw xmm0, xmm1, 0x8d", pshufhw, 0x8d),
        case_imm0!("psllw xmm0, 3", psllw, 3),
        case_imm0!("pslld xmm0, 31", pslld, 31),
        case_imm0!("psllq xmm0, 40", psllq, 40),
        case_imm0!("psrlw xmm0, 17", psrlw, 17),
        case_imm0!("psrad xmm0, 5", psrad, 5),
        case_imm0!("psraw xmm0, 200", psraw, 200),
        case_imm0!("psllw xmm0, 0", psllw, 0),
        case_imm0!("psllw xmm0, 16", psllw, 16),
        case_imm0!("pslld xmm0, 32", pslld, 32),
        case_imm0!("psllq xmm0, 63", psllq, 63),
        case_imm0!("psllq xmm0, 64", psllq, 64),
        case_imm0!("psrlw xmm0, 15", psrlw, 15),
        case_imm0!("psrld xmm0, 7", psrld, 7),
        case_imm0!("psrld xmm0, 255", psrld, 255),
        case_imm0!("psrlq xmm0, 1", psrlq, 1),
        case_imm0!("psrlq xmm0, 64", psrlq, 64),
        case_imm0!("psraw xmm0, 15", psraw, 15),
        case_imm0!("psraw xmm0, 16", psraw, 16),
        case_imm0!("psrad xmm0, 31", psrad, 31),
        case_imm0!("psrad xmm0, 32", psrad, 32),
        case_imm!("pshufd xmm0, xmm1, 0x00", pshufd, 0x00),
        case_imm!("pshufd xmm0, xmm1, 0xb1", pshufd, 0xb1),
        case_imm!("pshuflw xmm0, xmm1, 0xe4", pshuflw, 0xe4),
        case_imm!("pshuflw xmm0, xmm1, 0x1b", pshuflw, 0x1b),
        case_imm!("pshufhw xmm0, xmm1, 0xff", pshufhw, 0xff),
        case_imm!("pshufhw xmm0, xmm1, 0x1b", pshufhw, 0x1b),
        case_imm0!("pslldq xmm0, 3", pslldq, 3),
        case_imm0!("psrldq xmm0, 9", psrldq, 9),
        case_imm0!("psrldq xmm0, 16", psrldq, 16),
        case!("unpcklps xmm0, xmm1", unpcklps),
        case!("unpckhps xmm0, xmm1", unpckhps),
        case!("unpcklpd xmm0, xmm1", unpcklpd),
        case!("unpckhpd xmm0, xmm1", unpckhpd),
        case!("movss xmm0, xmm1", movss),
        case!("movsd xmm0, xmm1", movsd_2),
        case!("movlhps xmm0, xmm1", movlhps),
        case!("movhlps xmm0, xmm1", movhlps),
        case_imm!("shufps xmm0, xmm1, 0x1b", shufps, 0x1b),
        case_imm!("shufps xmm0, xmm1, 0xd8", shufps, 0xd8),
        case_imm!("shufpd xmm0, xmm1, 2", shufpd, 2),
        case_imm!("shufpd xmm0, xmm1, 1", shufpd, 1),
    ];
    let mut rng = Rng(0x5eed_5eed_5eed_5eed);
    for (name, host, emu) in cases {
        let code = assemble(emu)?;
        for _ in 0..500 {
            let (a, b) = (random128(&mut rng), random128(&mut rng));
            let (mut cpu, mut bus) = machine(&code);
            cpu.xmm[0] = a;
            cpu.xmm[1] = b;
            let (_, exit) = translator::run(&mut cpu, &mut bus, 4);
            assert_eq!(exit, translator::Exit::Halted, "{name}");
            assert_eq!(cpu.xmm[0], host(a, b), "{name} with {a:#034x}, {b:#034x}");
            assert_eq!(cpu.xmm[1], b, "{name} left its source alone");
        }
    }
    Ok(())
}

#[test]
fn moves_to_general_registers_and_pmovmskb_match_the_host() -> Result<(), IcedError> {
    let mut rng = Rng(7);
    for _ in 0..500 {
        let a = random128(&mut rng);
        let bytes = a.to_le_bytes();
        let (mut movd, mut movq, mut mask): (u64, u64, u64);
        // SAFETY: reads 16 bytes from a local array into XMM0 (declared clobbered) and moves
        // results into three declared outputs.
        unsafe {
            asm!(
                "movdqu xmm0, [{p}]",
                "movd {d:e}, xmm0",
                "movq {q}, xmm0",
                "pmovmskb {m:e}, xmm0",
                p = in(reg) bytes.as_ptr(),
                d = out(reg) movd,
                q = out(reg) movq,
                m = out(reg) mask,
                out("xmm0") _,
            );
        }
        let mut asm = CodeAssembler::new(64)?;
        asm.movd(eax, xmm0)?;
        asm.movq(rbx, xmm0)?;
        asm.pmovmskb(ecx, xmm0)?;
        asm.movd(xmm2, eax)?;
        asm.hlt()?;
        let (mut cpu, mut bus) = machine(&asm.assemble(0x8000)?);
        cpu.xmm[0] = a;
        cpu.xmm[2] = u128::MAX;
        let _ = translator::run(&mut cpu, &mut bus, 8);
        assert_eq!(cpu.reg(Gpr::Rax, Width::W64), movd & 0xffff_ffff);
        assert_eq!(cpu.reg(Gpr::Rbx, Width::W64), movq);
        assert_eq!(cpu.reg(Gpr::Rcx, Width::W64), mask & 0xffff_ffff);
        assert_eq!(cpu.xmm[2], u128::from(movd & 0xffff_ffff), "MOVD into XMM zeroes the rest");
    }
    Ok(())
}

#[test]
fn misaligned_movdqa_is_gp_and_sse_without_osfxsr_is_ud() -> Result<(), IcedError> {
    let mut a = CodeAssembler::new(64)?;
    a.movdqa(xmm0, xmmword_ptr(0x3008u64))?;
    a.hlt()?;
    let code = a.assemble(0x8000)?;
    let (mut cpu, mut bus) = machine(&code);
    assert_eq!(translator::interp::step(&mut cpu, &mut bus).map(|e| e.vector), Some(13));
    let (mut cpu, mut bus) = machine(&code);
    cpu.cr4 &= !cr4::OSFXSR;
    assert_eq!(translator::interp::step(&mut cpu, &mut bus).map(|e| e.vector), Some(6));
    Ok(())
}

#[test]
fn fxrstor_then_fxsave_round_trips_and_reserved_mxcsr_bits_fault() -> Result<(), IcedError> {
    let mut a = CodeAssembler::new(64)?;
    a.fxrstor(zmmword_ptr(0x4000u64))?;
    a.fxsave(zmmword_ptr(0x5000u64))?;
    a.hlt()?;
    let code = a.assemble(0x8000)?;
    let (mut cpu, mut bus) = machine(&code);
    let mut img = [0u8; 512];
    img[0..2].copy_from_slice(&0x027fu16.to_le_bytes()); // FCW
    img[4] = 0xa5; // abridged tag
    img[24..28].copy_from_slice(&0x1fa0u32.to_le_bytes()); // MXCSR
    for k in 0..16 {
        img[160 + 16 * k..176 + 16 * k]
            .copy_from_slice(&((k as u128 + 1) * 0x0101_0101_0101_0101_0101_0101_0101_0101).to_le_bytes());
    }
    bus.put(0x4000, &img);
    let (_, exit) = translator::run(&mut cpu, &mut bus, 4);
    assert_eq!(exit, translator::Exit::Halted);
    assert_eq!(cpu.mxcsr, 0x1fa0);
    assert_eq!(cpu.xmm[15], 16 * 0x0101_0101_0101_0101_0101_0101_0101_0101);
    for off in [0u64, 4, 24] {
        assert_eq!(bus.get(0x5000 + off, 4) & 0xffff, bus.get(0x4000 + off, 4) & 0xffff, "offset {off}");
    }
    assert_eq!(bus.get(0x5000 + 28, 4), u64::from(frontend_x86::sem::sse::MXCSR_MASK), "MXCSR_MASK");
    for k in 0..32u64 {
        assert_eq!(bus.get(0x5000 + 160 + 8 * k, 8), bus.get(0x4000 + 160 + 8 * k, 8));
    }
    // A reserved MXCSR bit in the image: #GP(0), and nothing loaded.
    let (mut cpu, mut bus) = machine(&code);
    img[24..28].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    bus.put(0x4000, &img);
    assert_eq!(translator::interp::step(&mut cpu, &mut bus).map(|e| e.error_code), Some(Some(0)));
    assert_eq!(cpu.mxcsr, 0x1f80);
    Ok(())
}

#[test]
fn scalar_and_half_moves_through_memory_and_movmsk_match_the_host() -> Result<(), IcedError> {
    let mut rng = Rng(99);
    for _ in 0..300 {
        let (a, m) = (random128(&mut rng), random128(&mut rng));
        let (ab, mb) = (a.to_le_bytes(), m.to_le_bytes());
        let mut out = [[0u8; 16]; 4];
        let (mut mskps, mut mskpd): (u64, u64);
        // SAFETY: reads 16-byte local arrays, writes four 16-byte local arrays; XMM0-XMM3 are
        // declared clobbered.
        unsafe {
            asm!(
                "movdqu xmm0, [{a}]",
                "movdqu xmm1, xmm0",
                "movss xmm1, dword ptr [{m}]",
                "movdqu [{o0}], xmm1",
                "movdqu xmm2, xmm0",
                "movhps xmm2, qword ptr [{m}]",
                "movdqu [{o1}], xmm2",
                "movdqu xmm3, xmm0",
                "movlpd xmm3, qword ptr [{m}]",
                "movdqu [{o2}], xmm3",
                "movsd xmm3, qword ptr [{m}]",
                "movdqu [{o3}], xmm3",
                "movmskps {p:e}, xmm0",
                "movmskpd {d:e}, xmm0",
                a = in(reg) ab.as_ptr(),
                m = in(reg) mb.as_ptr(),
                o0 = in(reg) out[0].as_mut_ptr(),
                o1 = in(reg) out[1].as_mut_ptr(),
                o2 = in(reg) out[2].as_mut_ptr(),
                o3 = in(reg) out[3].as_mut_ptr(),
                p = out(reg) mskps,
                d = out(reg) mskpd,
                out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            );
        }
        let mut asm = CodeAssembler::new(64)?;
        asm.movdqa(xmm1, xmm0)?;
        asm.movss(xmm1, dword_ptr(0x3000u64))?;
        asm.movdqa(xmm2, xmm0)?;
        asm.movhps(xmm2, qword_ptr(0x3000u64))?;
        asm.movdqa(xmm3, xmm0)?;
        asm.movlpd(xmm3, qword_ptr(0x3000u64))?;
        asm.movdqa(xmm4, xmm3)?;
        asm.movsd_2(xmm4, qword_ptr(0x3000u64))?;
        asm.movmskps(eax, xmm0)?;
        asm.movmskpd(edx, xmm0)?;
        asm.hlt()?;
        let (mut cpu, mut bus) = machine(&asm.assemble(0x8000)?);
        bus.put(0x3000, &mb);
        cpu.xmm[0] = a;
        let (_, exit) = translator::run(&mut cpu, &mut bus, 20);
        assert_eq!(exit, translator::Exit::Halted);
        assert_eq!(cpu.xmm[1], u128::from_le_bytes(out[0]), "movss xmm, m32");
        assert_eq!(cpu.xmm[2], u128::from_le_bytes(out[1]), "movhps xmm, m64");
        assert_eq!(cpu.xmm[3], u128::from_le_bytes(out[2]), "movlpd xmm, m64");
        assert_eq!(cpu.xmm[4], u128::from_le_bytes(out[3]), "movsd xmm, m64");
        assert_eq!(cpu.reg(Gpr::Rax, Width::W64), mskps);
        assert_eq!(cpu.reg(Gpr::Rdx, Width::W64), mskpd);
    }
    Ok(())
}
