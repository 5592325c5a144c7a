//! The MMX instructions against the host CPU: each runs natively on random 64-bit operands
//! (inline assembly) and on the interpreter, and MM0 must agree. Plus the moves to and from
//! general registers and memory, PEXTRW/PINSRW/PMOVMSKB/MASKMOVQ, EMMS and the MMX state
//! transition (TOP = 0, tags), and the #UD/#NM/#MF conditions. x86-64 hosts only.
#![cfg(target_arch = "x86_64")]

mod common;

use std::arch::asm;

use cranebox_tests::{Rng, SparseBus};
use frontend_x86::state::{cr0, cr4};
use frontend_x86::{CpuState, Gpr, Width};
use iced_x86::code_asm::*;

macro_rules! host {
    ($text:literal) => {
        host_binary!(u64, "movq", "mm0", "mm1", "emms", $text)
    };
}

type Emu = fn(&mut CodeAssembler) -> Result<(), IcedError>;

macro_rules! case {
    ($text:literal, $m:ident) => {
        ($text, host!($text), (|a: &mut CodeAssembler| a.$m(mm0, mm1)) as Emu)
    };
}

macro_rules! case_imm {
    ($text:literal, $m:ident, $imm:expr) => {
        ($text, host!($text), (|a: &mut CodeAssembler| a.$m(mm0, mm1, $imm)) as Emu)
    };
}

macro_rules! case_imm0 {
    ($text:literal, $m:ident, $imm:expr) => {
        ($text, host!($text), (|a: &mut CodeAssembler| a.$m(mm0, $imm)) as Emu)
    };
}

fn machine(code: &[u8]) -> (CpuState, SparseBus) {
    let (mut cpu, bus) = common::machine(code);
    cpu.cr0 |= cr0::NE;
    (cpu, bus)
}

fn assemble(f: Emu) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    f(&mut a)?;
    a.hlt()?;
    a.assemble(0x8000)
}

fn random64(rng: &mut Rng) -> u64 {
    let v = rng.next_u64();
    // Small values now and then, so shifts by a register count see in-range counts.
    if rng.next_u64().is_multiple_of(3) {
        return v & 0x3f;
    }
    // Equal lanes now and then, so the compares see both outcomes.
    if rng.next_u64().is_multiple_of(4) {
        v & 0x00ff_00ff_0000_ffff
    } else {
        v
    }
}

#[test]
fn packed_instructions_match_the_host() -> Result<(), IcedError> {
    let cases = [
        case!("pxor mm0, mm1", pxor),
        case!("pand mm0, mm1", pand),
        case!("por mm0, mm1", por),
        case!("pandn mm0, mm1", pandn),
        case!("movq mm0, mm1", movq),
        case!("paddb mm0, mm1", paddb),
        case!("paddw mm0, mm1", paddw),
        case!("paddd mm0, mm1", paddd),
        case!("paddq mm0, mm1", paddq),
        case!("psubb mm0, mm1", psubb),
        case!("psubw mm0, mm1", psubw),
        case!("psubd mm0, mm1", psubd),
        case!("psubq mm0, mm1", psubq),
        case!("pcmpeqb mm0, mm1", pcmpeqb),
        case!("pcmpeqw mm0, mm1", pcmpeqw),
        case!("pcmpeqd mm0, mm1", pcmpeqd),
        case!("pcmpgtb mm0, mm1", pcmpgtb),
        case!("pcmpgtw mm0, mm1", pcmpgtw),
        case!("pcmpgtd mm0, mm1", pcmpgtd),
        case!("paddsb mm0, mm1", paddsb),
        case!("paddsw mm0, mm1", paddsw),
        case!("psubsb mm0, mm1", psubsb),
        case!("psubsw mm0, mm1", psubsw),
        case!("paddusb mm0, mm1", paddusb),
        case!("paddusw mm0, mm1", paddusw),
        case!("psubusb mm0, mm1", psubusb),
        case!("psubusw mm0, mm1", psubusw),
        case!("pmullw mm0, mm1", pmullw),
        case!("pmulhw mm0, mm1", pmulhw),
        case!("pmulhuw mm0, mm1", pmulhuw),
        case!("pmuludq mm0, mm1", pmuludq),
        case!("pmaddwd mm0, mm1", pmaddwd),
        case!("pavgb mm0, mm1", pavgb),
        case!("pavgw mm0, mm1", pavgw),
        case!("pminub mm0, mm1", pminub),
        case!("pmaxub mm0, mm1", pmaxub),
        case!("pminsw mm0, mm1", pminsw),
        case!("pmaxsw mm0, mm1", pmaxsw),
        case!("psadbw mm0, mm1", psadbw),
        case!("punpcklbw mm0, mm1", punpcklbw),
        case!("punpckhbw mm0, mm1", punpckhbw),
        case!("punpcklwd mm0, mm1", punpcklwd),
        case!("punpckhwd mm0, mm1", punpckhwd),
        case!("punpckldq mm0, mm1", punpckldq),
        case!("punpckhdq mm0, mm1", punpckhdq),
        case!("packsswb mm0, mm1", packsswb),
        case!("packssdw mm0, mm1", packssdw),
        case!("packuswb mm0, mm1", packuswb),
        case!("psllw mm0, mm1", psllw),
        case!("pslld mm0, mm1", pslld),
        case!("psllq mm0, mm1", psllq),
        case!("psrlw mm0, mm1", psrlw),
        case!("psrld mm0, mm1", psrld),
        case!("psrlq mm0, mm1", psrlq),
        case!("psraw mm0, mm1", psraw),
        case!("psrad mm0, mm1", psrad),
        case_imm!("pshufw mm0, mm1, 0x1b", pshufw, 0x1b),
        case_imm!("pshufw mm0, mm1, 0xe4", pshufw, 0xe4),
        case_imm!("pshufw mm0, mm1, 0x72", pshufw, 0x72),
        case_imm0!("psllw mm0, 3", psllw, 3),
        case_imm0!("pslld mm0, 31", pslld, 31),
        case_imm0!("psllq mm0, 40", psllq, 40),
        case_imm0!("psrlw mm0, 17", psrlw, 17),
        case_imm0!("psrld mm0, 7", psrld, 7),
        case_imm0!("psrlq mm0, 63", psrlq, 63),
        case_imm0!("psrad mm0, 5", psrad, 5),
        case_imm0!("psraw mm0, 200", psraw, 200),
        case_imm0!("psraw mm0, 15", psraw, 15),
    ];
    let mut rng = Rng(0x4d4d_5800_5eed_0001);
    for (name, host, emu) in cases {
        let code = assemble(emu)?;
        for _ in 0..500 {
            let (a, b) = (random64(&mut rng), random64(&mut rng));
            let (mut cpu, mut bus) = machine(&code);
            cpu.fpu.set_mm(0, a);
            cpu.fpu.set_mm(1, b);
            cpu.fpu.fsw = 0x2800; // TOP = 5: the instruction sets it to 0
            let (_, exit) = translator::run(&mut cpu, &mut bus, 4);
            assert_eq!(exit, translator::Exit::Halted, "{name}");
            assert_eq!(cpu.fpu.mm(0), host(a, b), "{name} with {a:#018x}, {b:#018x}");
            assert_eq!(cpu.fpu.mm(1), b, "{name} left its source alone");
            assert_eq!(cpu.fpu.st[0][8..], [0xff, 0xff], "{name}: exponent and sign all ones");
            assert_eq!((cpu.fpu.fsw, cpu.fpu.ftw), (0, 0xff), "{name}: TOP = 0, all tags valid");
        }
    }
    Ok(())
}

#[test]
fn memory_operands_and_general_register_forms_match_the_host() -> Result<(), IcedError> {
    let mut rng = Rng(23);
    for _ in 0..300 {
        let (a, m) = (random64(&mut rng), rng.next_u64());
        let (ab, mb) = (a.to_le_bytes(), m.to_le_bytes());
        let mut out = [[0u8; 8]; 4];
        let mut stored = [0u8; 8];
        let (mut movd, mut movq, mut mask, mut ext): (u64, u64, u64, u64);
        // SAFETY: reads two 8-byte local arrays and writes five; MM0-MM3 are declared
        // clobbered, EMMS leaves the x87 stack empty, and four results go to declared outputs.
        unsafe {
            asm!(
                "movq mm0, [{a}]",
                "movd {d:e}, mm0",
                "movq {q}, mm0",
                "pmovmskb {k:e}, mm0",
                "pextrw {x:e}, mm0, 2",
                "movq mm1, mm0",
                "paddb mm1, [{m}]",
                "movq [{o0}], mm1",
                "movq mm2, mm0",
                "pinsrw mm2, word ptr [{m}], 3",
                "movq [{o1}], mm2",
                "movd mm3, dword ptr [{m}]",
                "movq [{o2}], mm3",
                "pshufw mm3, [{m}], 0x4e",
                "movq [{o3}], mm3",
                "movntq [{s}], mm0",
                "emms",
                a = in(reg) ab.as_ptr(),
                m = in(reg) mb.as_ptr(),
                o0 = in(reg) out[0].as_mut_ptr(),
                o1 = in(reg) out[1].as_mut_ptr(),
                o2 = in(reg) out[2].as_mut_ptr(),
                o3 = in(reg) out[3].as_mut_ptr(),
                s = in(reg) stored.as_mut_ptr(),
                d = out(reg) movd,
                q = out(reg) movq,
                k = out(reg) mask,
                x = out(reg) ext,
                out("mm0") _, out("mm1") _, out("mm2") _, out("mm3") _,
            );
        }
        let mut asm = CodeAssembler::new(64)?;
        asm.movd(eax, mm0)?;
        asm.movq(rbx, mm0)?;
        asm.pmovmskb(ecx, mm0)?;
        asm.pextrw(edx, mm0, 2)?;
        asm.movq(mm1, mm0)?;
        asm.paddb(mm1, qword_ptr(0x3000u64))?;
        asm.movq(mm2, mm0)?;
        asm.pinsrw(mm2, word_ptr(0x3000u64), 3)?;
        asm.movd(mm3, dword_ptr(0x3000u64))?;
        asm.movq(mm4, mm3)?;
        asm.pshufw(mm3, qword_ptr(0x3000u64), 0x4e)?;
        asm.movntq(qword_ptr(0x3100u64), mm0)?;
        asm.movq(mm5, rbx)?;
        asm.movd(mm6, eax)?;
        asm.hlt()?;
        let (mut cpu, mut bus) = machine(&asm.assemble(0x8000)?);
        bus.put(0x3000, &mb);
        cpu.fpu.set_mm(0, a);
        cpu.fpu.set_mm(6, u64::MAX);
        let (_, exit) = translator::run(&mut cpu, &mut bus, 40);
        assert_eq!(exit, translator::Exit::Halted);
        assert_eq!(cpu.reg(Gpr::Rax, Width::W64), movd & 0xffff_ffff);
        assert_eq!(cpu.reg(Gpr::Rbx, Width::W64), movq);
        assert_eq!(cpu.reg(Gpr::Rcx, Width::W64), mask & 0xffff_ffff);
        assert_eq!(cpu.reg(Gpr::Rdx, Width::W64), ext & 0xffff_ffff);
        assert_eq!(cpu.fpu.mm(1), u64::from_le_bytes(out[0]), "paddb mm, m64");
        assert_eq!(cpu.fpu.mm(2), u64::from_le_bytes(out[1]), "pinsrw mm, m16");
        assert_eq!(cpu.fpu.mm(4), u64::from_le_bytes(out[2]), "movd mm, m32");
        assert_eq!(cpu.fpu.mm(3), u64::from_le_bytes(out[3]), "pshufw mm, m64");
        assert_eq!(bus.get(0x3100, 8), u64::from_le_bytes(stored), "movntq");
        assert_eq!(cpu.fpu.mm(5), a, "movq mm, r64");
        assert_eq!(cpu.fpu.mm(6), a & 0xffff_ffff, "movd mm, r32 zero-extends");
    }
    Ok(())
}

#[test]
fn maskmovq_matches_the_host() -> Result<(), IcedError> {
    let mut rng = Rng(31);
    for _ in 0..300 {
        let (a, m, old) = (rng.next_u64(), rng.next_u64(), rng.next_u64());
        let (ab, mb) = (a.to_le_bytes(), m.to_le_bytes());
        let mut dst = old.to_le_bytes();
        // SAFETY: reads two 8-byte local arrays and writes the selected bytes of the 8-byte
        // local array at RDI; MM0/MM1 are declared clobbered and EMMS empties the x87 stack.
        unsafe {
            asm!(
                "movq mm0, [{a}]",
                "movq mm1, [{m}]",
                "maskmovq mm0, mm1",
                "emms",
                a = in(reg) ab.as_ptr(),
                m = in(reg) mb.as_ptr(),
                in("rdi") dst.as_mut_ptr(),
                out("mm0") _, out("mm1") _,
            );
        }
        let mut asm = CodeAssembler::new(64)?;
        asm.maskmovq(mm0, mm1)?;
        asm.hlt()?;
        let (mut cpu, mut bus) = machine(&asm.assemble(0x8000)?);
        bus.put(0x3000, &old.to_le_bytes());
        cpu.fpu.set_mm(0, a);
        cpu.fpu.set_mm(1, m);
        cpu.set_reg(Gpr::Rdi, Width::W64, 0x3000);
        let (_, exit) = translator::run(&mut cpu, &mut bus, 4);
        assert_eq!(exit, translator::Exit::Halted);
        assert_eq!(bus.get(0x3000, 8), u64::from_le_bytes(dst), "maskmovq {a:#x} {m:#x}");
    }
    Ok(())
}

#[test]
fn emms_empties_the_tags_and_faults_are_ud_nm_mf() -> Result<(), IcedError> {
    let mut a = CodeAssembler::new(64)?;
    a.paddb(mm0, mm1)?;
    a.emms()?;
    a.hlt()?;
    let code = a.assemble(0x8000)?;
    let (mut cpu, mut bus) = machine(&code);
    let (_, exit) = translator::run(&mut cpu, &mut bus, 4);
    assert_eq!(exit, translator::Exit::Halted);
    assert_eq!(cpu.fpu.ftw, 0, "EMMS empties every tag");
    // CR0.EM: #UD; CR0.TS: #NM; a pending unmasked x87 exception with CR0.NE: #MF. None of
    // them changes the MMX state.
    for (setup, vector) in [
        ((|c: &mut CpuState| c.cr0 |= cr0::EM) as fn(&mut CpuState), 6),
        (|c: &mut CpuState| c.cr0 |= cr0::TS, 7),
        (|c: &mut CpuState| c.fpu.fsw |= 0x80, 16),
    ] {
        let (mut cpu, mut bus) = machine(&code);
        cpu.fpu.fsw |= 0x1800;
        setup(&mut cpu);
        let fpu = cpu.fpu;
        assert_eq!(translator::interp::step(&mut cpu, &mut bus).map(|e| e.vector), Some(vector));
        assert_eq!(cpu.fpu, fpu);
    }
    // MOVQ2DQ needs CR4.OSFXSR.
    let mut a = CodeAssembler::new(64)?;
    a.movq2dq(xmm0, mm1)?;
    a.hlt()?;
    let code = a.assemble(0x8000)?;
    let (mut cpu, mut bus) = machine(&code);
    assert_eq!(translator::interp::step(&mut cpu, &mut bus).map(|e| e.vector), Some(6));
    let (mut cpu, mut bus) = machine(&code);
    cpu.cr4 |= cr4::OSFXSR;
    cpu.fpu.set_mm(1, 0x1234_5678_9abc_def0);
    cpu.xmm[0] = u128::MAX;
    let (_, exit) = translator::run(&mut cpu, &mut bus, 4);
    assert_eq!(exit, translator::Exit::Halted);
    assert_eq!(cpu.xmm[0], 0x1234_5678_9abc_def0);
    Ok(())
}
