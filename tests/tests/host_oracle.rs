//! User-level integer instructions in 64-bit mode, checked against the host CPU as the oracle:
//! each case runs natively (inline assembly) and on the interpreter with the same random
//! operands and flags, and the results and flags must agree under the instruction's
//! defined-flags mask. x86-64 hosts only.
#![cfg(target_arch = "x86_64")]

use std::arch::asm;

use iced_x86::code_asm::*;

use cranebox_tests::{Rng, SparseBus};
use frontend_x86::flags::{AF, ARITH, CF, OF, PF, SF, ZF};
use frontend_x86::state::{attr, cr0, efer};
use frontend_x86::{CpuState, Gpr, SegReg, Width};

/// Registers an instruction reads and writes: RAX and RDX as operands, CL as a count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Regs {
    rax: u64,
    rdx: u64,
    rcx: u64,
    flags: u64,
}

/// How the flags an instruction leaves are defined (SDM vol. 2, each instruction's "Flags
/// Affected").
#[derive(Clone, Copy, Debug)]
enum Defined {
    /// All six arithmetic flags.
    All,
    /// All but AF (logic ops).
    NoAf,
    /// Only CF and OF (multiplies).
    CfOf,
    /// Shifts: none changed for a zero count; AF undefined, OF only for a count of one.
    Shift,
    /// Rotates: only CF and OF may change; OF only for a count of one.
    Rotate,
    /// A shift by an immediate count (not CL).
    ShiftImm(u64),
    /// A rotate by an immediate count (not CL).
    RotateImm(u64),
    /// Only CF (bit tests).
    Cf,
    /// Only ZF (bit scans).
    Zf,
}

impl Defined {
    fn mask(self, width: Width, count: u64) -> u64 {
        let c = count & if width == Width::W64 { 63 } else { 31 };
        match self {
            Defined::All => ARITH,
            Defined::NoAf => ARITH & !AF,
            Defined::CfOf => CF | OF,
            Defined::Shift if c == 0 => ARITH,
            Defined::Shift if c == 1 => ARITH & !AF,
            Defined::Shift => ARITH & !(AF | OF),
            Defined::Rotate if c == 1 => ARITH,
            Defined::Rotate => ARITH & !OF,
            Defined::ShiftImm(n) => Defined::Shift.mask(width, n),
            Defined::RotateImm(n) => Defined::Rotate.mask(width, n),
            Defined::Cf => CF,
            Defined::Zf => ZF,
        }
    }
}

type HostFn = fn(Regs) -> Regs;

macro_rules! host {
    ($text:literal) => {{
        fn run(r: Regs) -> Regs {
            let (mut a, mut d, mut c, mut f) = (r.rax, r.rdx, r.rcx, r.flags);
            // SAFETY: the template only touches RAX, RDX, RCX and RFLAGS, all declared as
            // operands; the stack is used for pushfq/popfq only and left balanced.
            unsafe {
                asm!(
                    "push {f}",
                    "popfq",
                    $text,
                    "pushfq",
                    "pop {f}",
                    f = inout(reg) f,
                    inout("rax") a,
                    inout("rdx") d,
                    inout("rcx") c,
                );
            }
            Regs { rax: a, rdx: d, rcx: c, flags: f }
        }
        run as HostFn
    }};
}

struct Case {
    name: &'static str,
    width: Width,
    bytes: Vec<u8>,
    host: HostFn,
    defined: Defined,
}

macro_rules! case {
    ($name:literal, $w:ident, [$($b:expr),*], $def:ident) => {
        Case { name: $name, width: Width::$w, bytes: vec![$($b),*], host: host!($name), defined: Defined::$def }
    };
}

/// A case whose encoding comes from iced-x86's assembler rather than by hand.
macro_rules! casm {
    ($name:literal, $w:ident, |$a:ident| $emit:expr, $def:expr) => {
        Case { name: $name, width: Width::$w, bytes: assemble(|$a| $emit), host: host!($name), defined: $def }
    };
}

fn assemble(f: impl FnOnce(&mut iced_x86::code_asm::CodeAssembler) -> Result<(), iced_x86::IcedError>) -> Vec<u8> {
    let mut a = iced_x86::code_asm::CodeAssembler::new(64).expect("assembler");
    f(&mut a).expect("encodable");
    a.assemble(0x1000).expect("assembles")
}

/// The encoding of each case is written out by hand: operand register RAX (r/m) and RDX (reg).
fn cases() -> Vec<Case> {
    vec![
        case!("add al, dl", W8, [0x00, 0xd0], All),
        case!("add ax, dx", W16, [0x66, 0x01, 0xd0], All),
        case!("add eax, edx", W32, [0x01, 0xd0], All),
        case!("add rax, rdx", W64, [0x48, 0x01, 0xd0], All),
        case!("adc al, dl", W8, [0x10, 0xd0], All),
        case!("adc eax, edx", W32, [0x11, 0xd0], All),
        case!("adc rax, rdx", W64, [0x48, 0x11, 0xd0], All),
        case!("sub al, dl", W8, [0x28, 0xd0], All),
        case!("sub ax, dx", W16, [0x66, 0x29, 0xd0], All),
        case!("sub rax, rdx", W64, [0x48, 0x29, 0xd0], All),
        case!("sbb al, dl", W8, [0x18, 0xd0], All),
        case!("sbb ax, dx", W16, [0x66, 0x19, 0xd0], All),
        case!("sbb rax, rdx", W64, [0x48, 0x19, 0xd0], All),
        case!("cmp eax, edx", W32, [0x39, 0xd0], All),
        case!("and rax, rdx", W64, [0x48, 0x21, 0xd0], NoAf),
        case!("or eax, edx", W32, [0x09, 0xd0], NoAf),
        case!("xor ax, dx", W16, [0x66, 0x31, 0xd0], NoAf),
        case!("test al, dl", W8, [0x84, 0xd0], NoAf),
        case!("inc eax", W32, [0xff, 0xc0], All),
        case!("dec ax", W16, [0x66, 0xff, 0xc8], All),
        case!("inc al", W8, [0xfe, 0xc0], All),
        case!("neg rax", W64, [0x48, 0xf7, 0xd8], All),
        case!("not eax", W32, [0xf7, 0xd0], All),
        case!("mul rdx", W64, [0x48, 0xf7, 0xe2], CfOf),
        case!("mul edx", W32, [0xf7, 0xe2], CfOf),
        case!("mul dl", W8, [0xf6, 0xe2], CfOf),
        case!("imul rdx", W64, [0x48, 0xf7, 0xea], CfOf),
        case!("imul dx", W16, [0x66, 0xf7, 0xea], CfOf),
        case!("imul eax, edx", W32, [0x0f, 0xaf, 0xc2], CfOf),
        case!("imul rax, rdx", W64, [0x48, 0x0f, 0xaf, 0xc2], CfOf),
        case!("shl eax, cl", W32, [0xd3, 0xe0], Shift),
        case!("shl al, cl", W8, [0xd2, 0xe0], Shift),
        case!("shr rax, cl", W64, [0x48, 0xd3, 0xe8], Shift),
        case!("shr ax, cl", W16, [0x66, 0xd3, 0xe8], Shift),
        case!("sar eax, cl", W32, [0xd3, 0xf8], Shift),
        case!("sar al, cl", W8, [0xd2, 0xf8], Shift),
        case!("rol rax, cl", W64, [0x48, 0xd3, 0xc0], Rotate),
        case!("ror ax, cl", W16, [0x66, 0xd3, 0xc8], Rotate),
        case!("rcl eax, cl", W32, [0xd3, 0xd0], Rotate),
        case!("rcr al, cl", W8, [0xd2, 0xd8], Rotate),
        case!("rcl ax, cl", W16, [0x66, 0xd3, 0xd0], Rotate),
        case!("shld eax, edx, cl", W32, [0x0f, 0xa5, 0xd0], Shift),
        case!("shrd rax, rdx, cl", W64, [0x48, 0x0f, 0xad, 0xd0], Shift),
        case!("bswap eax", W32, [0x0f, 0xc8], All),
        case!("bswap rax", W64, [0x48, 0x0f, 0xc8], All),
        case!("bt eax, edx", W32, [0x0f, 0xa3, 0xd0], Cf),
        case!("bts rax, rdx", W64, [0x48, 0x0f, 0xab, 0xd0], Cf),
        case!("btr ax, dx", W16, [0x66, 0x0f, 0xb3, 0xd0], Cf),
        case!("btc eax, edx", W32, [0x0f, 0xbb, 0xd0], Cf),
        case!("bsf eax, edx", W32, [0x0f, 0xbc, 0xc2], Zf),
        case!("bsr rax, rdx", W64, [0x48, 0x0f, 0xbd, 0xc2], Zf),
        case!("xadd eax, edx", W32, [0x0f, 0xc1, 0xd0], All),
        case!("cmpxchg edx, ecx", W32, [0x0f, 0xb1, 0xca], All),
        case!("cmpxchg dl, cl", W8, [0x0f, 0xb0, 0xca], All),
        casm!("adc ax, dx", W16, |a| a.adc(ax, dx), Defined::All),
        casm!("sbb eax, edx", W32, |a| a.sbb(eax, edx), Defined::All),
        casm!("cmp al, dl", W8, |a| a.cmp(al, dl), Defined::All),
        casm!("test rax, rdx", W64, |a| a.test(rax, rdx), Defined::NoAf),
        casm!("or dx, ax", W16, |a| a.or(dx, ax), Defined::NoAf),
        casm!("and al, 0x5a", W8, |a| a.and(al, 0x5a), Defined::NoAf),
        casm!("sub rax, -3", W64, |a| a.sub(rax, -3), Defined::All),
        casm!("add edx, 0x7fffffff", W32, |a| a.add(edx, 0x7fff_ffff), Defined::All),
        casm!("neg dl", W8, |a| a.neg(dl), Defined::All),
        casm!("not dx", W16, |a| a.not(dx), Defined::All),
        casm!("inc rdx", W64, |a| a.inc(rdx), Defined::All),
        casm!("dec dl", W8, |a| a.dec(dl), Defined::All),
        casm!("rol dl, cl", W8, |a| a.rol(dl, cl), Defined::Rotate),
        casm!("ror edx, cl", W32, |a| a.ror(edx, cl), Defined::Rotate),
        casm!("rcl rdx, cl", W64, |a| a.rcl(rdx, cl), Defined::Rotate),
        casm!("rcr dx, cl", W16, |a| a.rcr(dx, cl), Defined::Rotate),
        casm!("sar dx, cl", W16, |a| a.sar(dx, cl), Defined::Shift),
        casm!("shl rdx, cl", W64, |a| a.shl(rdx, cl), Defined::Shift),
        casm!("shr dl, cl", W8, |a| a.shr(dl, cl), Defined::Shift),
        casm!("shl eax, 1", W32, |a| a.shl(eax, 1), Defined::ShiftImm(1)),
        casm!("shl rdx, 13", W64, |a| a.shl(rdx, 13), Defined::ShiftImm(13)),
        casm!("shl al, 9", W8, |a| a.shl(al, 9), Defined::ShiftImm(9)),
        casm!("shl dx, 16", W16, |a| a.shl(dx, 16), Defined::ShiftImm(16)),
        casm!("shr eax, 1", W32, |a| a.shr(eax, 1), Defined::ShiftImm(1)),
        casm!("shr rax, 63", W64, |a| a.shr(rax, 63), Defined::ShiftImm(63)),
        casm!("shr dl, 3", W8, |a| a.shr(dl, 3), Defined::ShiftImm(3)),
        casm!("sar edx, 31", W32, |a| a.sar(edx, 31), Defined::ShiftImm(31)),
        casm!("sar ax, 1", W16, |a| a.sar(ax, 1), Defined::ShiftImm(1)),
        casm!("sar al, 12", W8, |a| a.sar(al, 12), Defined::ShiftImm(12)),
        casm!("rcr al, 1", W8, |a| a.rcr(al, 1), Defined::RotateImm(1)),
        casm!("rol edx, 7", W32, |a| a.rol(edx, 7), Defined::RotateImm(7)),
        casm!("rol al, 1", W8, |a| a.rol(al, 1), Defined::RotateImm(1)),
        casm!("rol dl, 8", W8, |a| a.rol(dl, 8), Defined::RotateImm(8)),
        casm!("rol dx, 17", W16, |a| a.rol(dx, 17), Defined::RotateImm(17)),
        casm!("ror rax, 1", W64, |a| a.ror(rax, 1), Defined::RotateImm(1)),
        casm!("ror rdx, 45", W64, |a| a.ror(rdx, 45), Defined::RotateImm(45)),
        casm!("ror ax, 3", W16, |a| a.ror(ax, 3), Defined::RotateImm(3)),
        casm!("ror dl, 1", W8, |a| a.ror(dl, 1), Defined::RotateImm(1)),
        casm!("sar eax, cl", W32, |a| a.sar(eax, cl), Defined::Shift),
        casm!("shrd edx, eax, cl", W32, |a| a.shrd(edx, eax, cl), Defined::Shift),
        casm!("shld rax, rdx, 7", W64, |a| a.shld(rax, rdx, 7), Defined::ShiftImm(7)),
        casm!("imul ax, dx, 0x1234", W16, |a| a.imul_3(ax, dx, 0x1234), Defined::CfOf),
        casm!("imul rdx, rax, -7", W64, |a| a.imul_3(rdx, rax, -7), Defined::CfOf),
        casm!("imul edx, eax, 0x1000193", W32, |a| a.imul_3(edx, eax, 0x1000193), Defined::CfOf),
        casm!("imul rdx, rax", W64, |a| a.imul_2(rdx, rax), Defined::CfOf),
        casm!("imul dx, ax", W16, |a| a.imul_2(dx, ax), Defined::CfOf),
        casm!("mul ax", W16, |a| a.mul(ax), Defined::CfOf),
        casm!("bt eax, 5", W32, |a| a.bt(eax, 5), Defined::Cf),
        casm!("bts dx, ax", W16, |a| a.bts(dx, ax), Defined::Cf),
        casm!("btc rdx, rax", W64, |a| a.btc(rdx, rax), Defined::Cf),
        casm!("bsf dx, ax", W16, |a| a.bsf(dx, ax), Defined::Zf),
        casm!("bsr edx, eax", W32, |a| a.bsr(edx, eax), Defined::Zf),
        casm!("xadd dl, al", W8, |a| a.xadd(dl, al), Defined::All),
        casm!("cmpxchg rdx, rcx", W64, |a| a.cmpxchg(rdx, rcx), Defined::All),
        casm!("movsx rax, dl", W64, |a| a.movsx(rax, dl), Defined::All),
        casm!("movzx edx, al", W32, |a| a.movzx(edx, al), Defined::All),
        casm!("movsxd rdx, eax", W64, |a| a.movsxd(rdx, eax), Defined::All),
        casm!("cmovbe dx, ax", W16, |a| a.cmovbe(dx, ax), Defined::All),
        casm!("setl dl", W8, |a| a.setl(dl), Defined::All),
        casm!("lea rax, [rdx + rcx*8 - 5]", W64, |a| a.lea(rax, qword_ptr(rdx + rcx * 8 - 5)), Defined::All),
        casm!("bswap rdx", W64, |a| a.bswap(rdx), Defined::All),
        casm!("xchg dl, al", W8, |a| a.xchg(dl, al), Defined::All),
        casm!("cbw", W16, |a| a.cbw(), Defined::All),
        casm!("cwd", W16, |a| a.cwd(), Defined::All),
        casm!("cdq", W32, |a| a.cdq(), Defined::All),
        casm!("lahf", W8, |a| a.lahf(), Defined::All),
        casm!("sahf", W8, |a| a.sahf(), Defined::All),
        casm!("cmc", W8, |a| a.cmc(), Defined::All),
        case!("movsx eax, dl", W32, [0x0f, 0xbe, 0xc2], All),
        case!("movzx rax, dx", W64, [0x48, 0x0f, 0xb7, 0xc2], All),
        case!("cmovl rax, rdx", W64, [0x48, 0x0f, 0x4c, 0xc2], All),
        case!("setbe al", W8, [0x0f, 0x96, 0xc0], All),
        case!("xchg eax, edx", W32, [0x92], All),
        case!("cqo", W64, [0x48, 0x99], All),
        case!("cwde", W32, [0x98], All),
        case!("lea eax, [rax + rdx*4 + 0x12345678]", W32, [0x8d, 0x84, 0x90, 0x78, 0x56, 0x34, 0x12], All),
    ]
}

/// A 64-bit CPU state: long mode active with a 64-bit code segment. Paging is off in this
/// fixture, which hardware forbids in long mode but which the user-level instructions under
/// test cannot observe.
fn long_mode_cpu(r: Regs) -> CpuState {
    let mut cpu = CpuState::new();
    cpu.cr0 |= cr0::PE;
    cpu.efer |= efer::LME | efer::LMA;
    let code = &mut cpu.seg[SegReg::Cs as usize];
    code.selector = 8;
    code.base = 0;
    code.attr = attr::P | attr::S | attr::CODE | attr::RW | attr::L;
    cpu.rip = 0x1000;
    cpu.set_reg(Gpr::Rax, Width::W64, r.rax);
    cpu.set_reg(Gpr::Rdx, Width::W64, r.rdx);
    cpu.set_reg(Gpr::Rcx, Width::W64, r.rcx);
    cpu.flags.set(r.flags);
    cpu
}

/// Operands with the edges over-represented: 0, 1, all ones, sign bits, small values.
fn operand(rng: &mut Rng) -> u64 {
    match rng.next_u64() % 8 {
        0 => 0,
        1 => u64::MAX,
        2 => 1u64 << (rng.next_u64() % 64),
        3 => (1u64 << (8 << (rng.next_u64() % 4)).min(63)).wrapping_sub(1),
        4 => rng.next_u64() % 16,
        _ => rng.next_u64(),
    }
}

#[test]
fn integer_instructions_match_the_host_cpu() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases() {
        for _ in 0..3000 {
            let input = Regs {
                rax: operand(&mut rng),
                rdx: operand(&mut rng),
                rcx: rng.next_u64() % 80,
                flags: (rng.next_u64() & (ARITH & (CF | PF | AF | ZF | SF | OF))) | 2,
            };
            let want = (case.host)(input);
            let mut cpu = long_mode_cpu(input);
            let mut bus = SparseBus::new(32);
            for (k, b) in case.bytes.iter().chain([0xf4u8].iter()).enumerate() {
                bus.mem.insert(0x1000 + k as u64, *b);
            }
            let (_, exit) = translator::run(&mut cpu, &mut bus, 4);
            let got = Regs {
                rax: cpu.reg(Gpr::Rax, Width::W64),
                rdx: cpu.reg(Gpr::Rdx, Width::W64),
                rcx: cpu.reg(Gpr::Rcx, Width::W64),
                flags: cpu.flags.get(),
            };
            let mask = case.defined.mask(case.width, input.rcx);
            let same = exit == translator::Exit::Halted
                && got.rax == want.rax
                && got.rdx == want.rdx
                && got.rcx == want.rcx
                && got.flags & mask == want.flags & mask;
            checked += 1;
            if !same && failures.len() < 20 {
                failures.push(format!("{}: in {input:x?}\n   host {want:x?}\n   emu  {got:x?} ({exit:?})", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} disagree with the host:\n{}", failures.len(), failures.join("\n"));
}
