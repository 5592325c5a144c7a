//! SSE/SSE2/SSE3/SSE4.1 floating point and the SSE3/SSSE3/SSE4.x integer instructions against
//! the host CPU: each runs natively (inline assembly, with MXCSR loaded by LDMXCSR) and on the
//! interpreter on random operands biased toward special values (NaNs with payloads, denormals,
//! infinities, zeros, values near the rounding and integer-overflow boundaries), under every
//! rounding mode with FTZ and DAZ on and off. XMM0, MXCSR afterwards, RAX and (where the
//! instruction defines them) the arithmetic flags must agree. Then unmasked exceptions: #XM or
//! #UD with the destination unchanged. x86-64 hosts only.
#![cfg(target_arch = "x86_64")]

mod common;

use std::arch::asm;

use cranebox_tests::{Rng, SparseBus};
use frontend_x86::state::cr4;
use frontend_x86::{CpuState, Gpr, Width};
use iced_x86::code_asm::*;

/// Inputs and outputs of one run: XMM0, XMM1, MXCSR, RAX, RFLAGS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct State {
    x0: u128,
    x1: u128,
    mxcsr: u32,
    rax: u64,
    flags: u64,
    rdx: u64,
}

type Host = fn(State) -> State;
type Emu = fn(&mut CodeAssembler) -> Result<(), IcedError>;

macro_rules! host {
    ($text:expr) => {{
        fn run(s: State) -> State {
            let (a, b) = (s.x0.to_le_bytes(), s.x1.to_le_bytes());
            let mut r = [0u8; 16];
            let mut save = 0u32;
            let mx_in = s.mxcsr;
            let mut mx_out = 0u32;
            let mut acc = s.rax;
            let mut d_reg = s.rdx;
            let flags: u64;
            // SAFETY: the template reads and writes only the local arrays and integers named
            // as operands; it restores the host MXCSR it saved before returning, and XMM0,
            // XMM1 and RAX are declared clobbered or in/out.
            unsafe {
                asm!(
                    "stmxcsr [{save}]",
                    "ldmxcsr [{mxi}]",
                    "movdqu xmm0, [{a}]",
                    "movdqu xmm1, [{b}]",
                    $text,
                    "pushfq",
                    "pop {fl}",
                    "movdqu [{r}], xmm0",
                    "stmxcsr [{mxo}]",
                    "ldmxcsr [{save}]",
                    save = in(reg) &mut save,
                    mxi = in(reg) &mx_in,
                    mxo = in(reg) &mut mx_out,
                    a = in(reg) a.as_ptr(),
                    b = in(reg) b.as_ptr(),
                    r = in(reg) r.as_mut_ptr(),
                    fl = out(reg) flags,
                    inout("rax") acc,
                    inout("rdx") d_reg,
                    out("xmm0") _,
                    out("xmm1") _,
                );
            }
            State { x0: u128::from_le_bytes(r), x1: s.x1, mxcsr: mx_out, rax: acc, flags, rdx: d_reg }
        }
        run as Host
    }};
}

/// One instruction: its text, lane width (32 or 64, for the operand generator), whether it
/// defines the arithmetic flags, and the two implementations.
type Case = (&'static str, u32, bool, Host, Emu);

macro_rules! c {
    ($text:expr, $lane:expr, $m:ident) => {
        ($text, $lane, false, host!($text), (|a: &mut CodeAssembler| a.$m(xmm0, xmm1)) as Emu)
    };
    ($text:expr, $lane:expr, $m:ident, $imm:expr) => {
        ($text, $lane, false, host!($text), (|a: &mut CodeAssembler| a.$m(xmm0, xmm1, $imm)) as Emu)
    };
}

macro_rules! custom {
    ($text:expr, $lane:expr, $flags:expr, |$a:ident| $body:expr) => {
        ($text, $lane, $flags, host!($text), (|$a: &mut CodeAssembler| $body) as Emu)
    };
}

fn machine(code: &[u8]) -> (CpuState, SparseBus) {
    let (mut cpu, bus) = common::machine(code);
    cpu.cr4 |= cr4::OSFXSR | cr4::OSXMMEXCPT;
    (cpu, bus)
}

fn assemble(f: Emu) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    f(&mut a)?;
    a.hlt()?;
    a.assemble(0x8000)
}

/// A float of `bits` (32 or 64) biased toward the interesting cases.
fn special(rng: &mut Rng, bits: u32) -> u64 {
    let (eb, fb) = if bits == 32 { (8u32, 23u32) } else { (11, 52) };
    let emax = (1u64 << eb) - 1;
    let bias = emax >> 1;
    let frac = rng.next_u64() & ((1u64 << fb) - 1);
    let sign = (rng.next_u64() & 1) << (bits - 1);
    let exp = match rng.next_u64() % 16 {
        0 => 0,                               // zero or denormal
        1 => emax,                            // inf or NaN
        2 => 1 + rng.next_u64() % 3,          // near the denormal boundary
        3 => emax - 1 - rng.next_u64() % 3,   // near overflow
        4 => bias + 29 + rng.next_u64() % 4,  // near 2^31 for conversions
        5 => bias + 61 + rng.next_u64() % 4,  // near 2^63
        6 => bias + rng.next_u64() % 24,      // small integers with fractions
        7 => bias - 1 + rng.next_u64() % 2,   // near 0.5 and 1
        _ => bias - 20 + rng.next_u64() % 40, // ordinary
    };
    let frac = match rng.next_u64() % 8 {
        0 => 0,
        1 => frac & !((1 << (fb / 2)) - 1),    // trailing zeros: exact results, ties
        2 => (1 << (fb - 1)) | (frac & 0xff),  // quiet NaN with a payload when exp = emax
        3 => frac & ((1 << (fb - 1)) - 1) | 1, // signalling NaN with a payload
        _ => frac,
    };
    sign | exp << fb | frac
}

fn operand(rng: &mut Rng, bits: u32) -> u128 {
    (0..128 / bits).fold(0u128, |acc, k| acc | u128::from(special(rng, bits)) << (bits * k))
}

fn random_mxcsr(rng: &mut Rng) -> u32 {
    let r = rng.next_u64();
    0x1f80 | ((r as u32 & 3) << 13) | (((r >> 2) as u32 & 1) << 15) | (((r >> 3) as u32 & 1) << 6)
}

fn run_emu(code: &[u8], s: State) -> (CpuState, Option<u8>) {
    let (mut cpu, mut bus) = machine(code);
    cpu.xmm[0] = s.x0;
    cpu.xmm[1] = s.x1;
    cpu.mxcsr = s.mxcsr;
    cpu.set_reg(Gpr::Rax, Width::W64, s.rax);
    cpu.set_reg(Gpr::Rdx, Width::W64, s.rdx);
    // Step up to the final HLT; the first fault stops the run.
    let hlt = 0x8000 + code.len() as u64 - 1;
    while cpu.rip != hlt {
        if let Some(e) = translator::interp::step(&mut cpu, &mut bus) {
            return (cpu, Some(e.vector));
        }
    }
    (cpu, None)
}

/// `CRANEBOX_ORACLE_SCALE=n` runs n times the iterations with other seeds (for soak runs).
fn scale() -> u64 {
    std::env::var("CRANEBOX_ORACLE_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1)
}

fn check_cases(cases: &[Case], iterations: usize, seed: u64) -> Result<(), IcedError> {
    let iterations = iterations * scale() as usize;
    let mut rng = Rng(seed.wrapping_mul(scale()));
    for &(name, lane, with_flags, host, emu) in cases {
        let code = assemble(emu)?;
        for _ in 0..iterations {
            let s = State {
                x0: operand(&mut rng, lane),
                x1: operand(&mut rng, lane),
                mxcsr: random_mxcsr(&mut rng),
                rax: if rng.next_u64() & 1 == 0 { rng.next_u64() } else { rng.next_u64() as i32 as u64 },
                flags: 0,
                rdx: 0,
            };
            let want = host(s);
            let (cpu, fault) = run_emu(&code, s);
            let ctx = format!("{name}: x0={:#034x} x1={:#034x} mxcsr={:#x} rax={:#x}", s.x0, s.x1, s.mxcsr, s.rax);
            assert_eq!(fault, None, "{ctx}");
            assert_eq!(cpu.xmm[0], want.x0, "{ctx}: xmm0");
            assert_eq!(cpu.mxcsr, want.mxcsr, "{ctx}: mxcsr");
            assert_eq!(cpu.reg(Gpr::Rax, Width::W64), want.rax, "{ctx}: rax");
            if with_flags {
                assert_eq!(cpu.flags.get() & 0x8d5, want.flags & 0x8d5, "{ctx}: flags");
            }
        }
    }
    Ok(())
}

#[test]
fn arithmetic_matches_the_host_in_every_rounding_mode() -> Result<(), IcedError> {
    let cases: [Case; 34] = [
        c!("addps xmm0, xmm1", 32, addps),
        c!("addss xmm0, xmm1", 32, addss),
        c!("addpd xmm0, xmm1", 64, addpd),
        c!("addsd xmm0, xmm1", 64, addsd),
        c!("subps xmm0, xmm1", 32, subps),
        c!("subss xmm0, xmm1", 32, subss),
        c!("subpd xmm0, xmm1", 64, subpd),
        c!("subsd xmm0, xmm1", 64, subsd),
        c!("mulps xmm0, xmm1", 32, mulps),
        c!("mulss xmm0, xmm1", 32, mulss),
        c!("mulpd xmm0, xmm1", 64, mulpd),
        c!("mulsd xmm0, xmm1", 64, mulsd),
        c!("divps xmm0, xmm1", 32, divps),
        c!("divss xmm0, xmm1", 32, divss),
        c!("divpd xmm0, xmm1", 64, divpd),
        c!("divsd xmm0, xmm1", 64, divsd),
        c!("minps xmm0, xmm1", 32, minps),
        c!("minss xmm0, xmm1", 32, minss),
        c!("minpd xmm0, xmm1", 64, minpd),
        c!("minsd xmm0, xmm1", 64, minsd),
        c!("maxps xmm0, xmm1", 32, maxps),
        c!("maxss xmm0, xmm1", 32, maxss),
        c!("maxpd xmm0, xmm1", 64, maxpd),
        c!("maxsd xmm0, xmm1", 64, maxsd),
        c!("sqrtps xmm0, xmm1", 32, sqrtps),
        c!("sqrtss xmm0, xmm1", 32, sqrtss),
        c!("sqrtpd xmm0, xmm1", 64, sqrtpd),
        c!("sqrtsd xmm0, xmm1", 64, sqrtsd),
        c!("addsubps xmm0, xmm1", 32, addsubps),
        c!("addsubpd xmm0, xmm1", 64, addsubpd),
        c!("haddps xmm0, xmm1", 32, haddps),
        c!("haddpd xmm0, xmm1", 64, haddpd),
        c!("hsubps xmm0, xmm1", 32, hsubps),
        c!("hsubpd xmm0, xmm1", 64, hsubpd),
    ];
    check_cases(&cases, 3000, 0xf10a7)
}

#[test]
fn compares_match_the_host_for_every_predicate() -> Result<(), IcedError> {
    let cases: [Case; 36] = [
        c!("cmpps xmm0, xmm1, 0", 32, cmpps, 0),
        c!("cmpps xmm0, xmm1, 1", 32, cmpps, 1),
        c!("cmpps xmm0, xmm1, 2", 32, cmpps, 2),
        c!("cmpps xmm0, xmm1, 3", 32, cmpps, 3),
        c!("cmpps xmm0, xmm1, 4", 32, cmpps, 4),
        c!("cmpps xmm0, xmm1, 5", 32, cmpps, 5),
        c!("cmpps xmm0, xmm1, 6", 32, cmpps, 6),
        c!("cmpps xmm0, xmm1, 7", 32, cmpps, 7),
        c!("cmpss xmm0, xmm1, 0", 32, cmpss, 0),
        c!("cmpss xmm0, xmm1, 1", 32, cmpss, 1),
        c!("cmpss xmm0, xmm1, 2", 32, cmpss, 2),
        c!("cmpss xmm0, xmm1, 3", 32, cmpss, 3),
        c!("cmpss xmm0, xmm1, 4", 32, cmpss, 4),
        c!("cmpss xmm0, xmm1, 5", 32, cmpss, 5),
        c!("cmpss xmm0, xmm1, 6", 32, cmpss, 6),
        c!("cmpss xmm0, xmm1, 7", 32, cmpss, 7),
        c!("cmppd xmm0, xmm1, 0", 64, cmppd, 0),
        c!("cmppd xmm0, xmm1, 1", 64, cmppd, 1),
        c!("cmppd xmm0, xmm1, 2", 64, cmppd, 2),
        c!("cmppd xmm0, xmm1, 3", 64, cmppd, 3),
        c!("cmppd xmm0, xmm1, 4", 64, cmppd, 4),
        c!("cmppd xmm0, xmm1, 5", 64, cmppd, 5),
        c!("cmppd xmm0, xmm1, 6", 64, cmppd, 6),
        c!("cmppd xmm0, xmm1, 7", 64, cmppd, 7),
        c!("cmpsd xmm0, xmm1, 0", 64, cmpsd_3, 0),
        c!("cmpsd xmm0, xmm1, 1", 64, cmpsd_3, 1),
        c!("cmpsd xmm0, xmm1, 2", 64, cmpsd_3, 2),
        c!("cmpsd xmm0, xmm1, 3", 64, cmpsd_3, 3),
        c!("cmpsd xmm0, xmm1, 4", 64, cmpsd_3, 4),
        c!("cmpsd xmm0, xmm1, 5", 64, cmpsd_3, 5),
        c!("cmpsd xmm0, xmm1, 6", 64, cmpsd_3, 6),
        c!("cmpsd xmm0, xmm1, 7", 64, cmpsd_3, 7),
        custom!("comiss xmm0, xmm1", 32, true, |a| a.comiss(xmm0, xmm1)),
        custom!("ucomiss xmm0, xmm1", 32, true, |a| a.ucomiss(xmm0, xmm1)),
        custom!("comisd xmm0, xmm1", 64, true, |a| a.comisd(xmm0, xmm1)),
        custom!("ucomisd xmm0, xmm1", 64, true, |a| a.ucomisd(xmm0, xmm1)),
    ];
    check_cases(&cases, 1500, 0xc0de)
}

#[test]
fn conversions_match_the_host() -> Result<(), IcedError> {
    let cases: [Case; 22] = [
        custom!("cvtsi2ss xmm0, eax", 32, false, |a| a.cvtsi2ss(xmm0, eax)),
        custom!("cvtsi2ss xmm0, rax", 32, false, |a| a.cvtsi2ss(xmm0, rax)),
        custom!("cvtsi2sd xmm0, eax", 64, false, |a| a.cvtsi2sd(xmm0, eax)),
        custom!("cvtsi2sd xmm0, rax", 64, false, |a| a.cvtsi2sd(xmm0, rax)),
        custom!("cvtss2si eax, xmm1", 32, false, |a| a.cvtss2si(eax, xmm1)),
        custom!("cvtss2si rax, xmm1", 32, false, |a| a.cvtss2si(rax, xmm1)),
        custom!("cvttss2si eax, xmm1", 32, false, |a| a.cvttss2si(eax, xmm1)),
        custom!("cvttss2si rax, xmm1", 32, false, |a| a.cvttss2si(rax, xmm1)),
        custom!("cvtsd2si eax, xmm1", 64, false, |a| a.cvtsd2si(eax, xmm1)),
        custom!("cvtsd2si rax, xmm1", 64, false, |a| a.cvtsd2si(rax, xmm1)),
        custom!("cvttsd2si eax, xmm1", 64, false, |a| a.cvttsd2si(eax, xmm1)),
        custom!("cvttsd2si rax, xmm1", 64, false, |a| a.cvttsd2si(rax, xmm1)),
        c!("cvtss2sd xmm0, xmm1", 32, cvtss2sd),
        c!("cvtsd2ss xmm0, xmm1", 64, cvtsd2ss),
        c!("cvtps2pd xmm0, xmm1", 32, cvtps2pd),
        c!("cvtpd2ps xmm0, xmm1", 64, cvtpd2ps),
        c!("cvtdq2ps xmm0, xmm1", 32, cvtdq2ps),
        c!("cvtps2dq xmm0, xmm1", 32, cvtps2dq),
        c!("cvttps2dq xmm0, xmm1", 32, cvttps2dq),
        c!("cvtdq2pd xmm0, xmm1", 32, cvtdq2pd),
        c!("cvtpd2dq xmm0, xmm1", 64, cvtpd2dq),
        c!("cvttpd2dq xmm0, xmm1", 64, cvttpd2dq),
    ];
    check_cases(&cases, 2000, 0xc047)
}

#[test]
fn sse4_rounding_and_dot_products_match_the_host() -> Result<(), IcedError> {
    let cases: [Case; 16] = [
        c!("roundps xmm0, xmm1, 0", 32, roundps, 0),
        c!("roundps xmm0, xmm1, 1", 32, roundps, 1),
        c!("roundps xmm0, xmm1, 10", 32, roundps, 10),
        c!("roundps xmm0, xmm1, 4", 32, roundps, 4),
        c!("roundpd xmm0, xmm1, 3", 64, roundpd, 3),
        c!("roundpd xmm0, xmm1, 12", 64, roundpd, 12),
        c!("roundss xmm0, xmm1, 2", 32, roundss, 2),
        c!("roundsd xmm0, xmm1, 0", 64, roundsd, 0),
        c!("dpps xmm0, xmm1, 0xff", 32, dpps, 0xff),
        c!("dpps xmm0, xmm1, 0x35", 32, dpps, 0x35),
        c!("dpps xmm0, xmm1, 0xc2", 32, dpps, 0xc2),
        c!("dppd xmm0, xmm1, 0x33", 64, dppd, 0x33),
        c!("dppd xmm0, xmm1, 0x12", 64, dppd, 0x12),
        c!("movshdup xmm0, xmm1", 32, movshdup),
        c!("movsldup xmm0, xmm1", 32, movsldup),
        c!("movddup xmm0, xmm1", 64, movddup),
    ];
    check_cases(&cases, 1500, 0x5e41)
}

#[test]
fn reciprocal_approximations_are_within_the_documented_error() -> Result<(), IcedError> {
    // RCP/RSQRT are implementation specific: cranebox returns the correctly rounded value;
    // the host's table may differ by up to 1.5 * 2^-12 relative error.
    let cases: [Case; 2] = [c!("rcpps xmm0, xmm1", 32, rcpps), c!("rsqrtps xmm0, xmm1", 32, rsqrtps)];
    let mut rng = Rng(0x4c9);
    for (name, _, _, host, emu) in cases {
        let code = assemble(emu)?;
        for _ in 0..2000 {
            let s = State { x0: 0, x1: operand(&mut rng, 32), mxcsr: 0x1f80, rax: 0, flags: 0, rdx: 0 };
            let want = host(s);
            let (cpu, _) = run_emu(&code, s);
            for k in 0..4 {
                let (g, w) = ((cpu.xmm[0] >> (32 * k)) as u32, (want.x0 >> (32 * k)) as u32);
                let (gf, wf) = (f32::from_bits(g), f32::from_bits(w));
                if wf.is_nan() || wf.is_infinite() || wf == 0.0 || w & 0x7f80_0000 == 0 {
                    // Special results agree exactly (up to tiny results near the flush
                    // boundary).
                    // (The host may flush a result of about 2^-126 that cranebox rounds to the
                    // smallest normal.)
                    let tiny = w & 0x7fff_ffff == 0 && g & 0x7fff_ffff <= 0x0080_0000;
                    if !tiny && (w & 0x7f80_0000 != 0 || w & 0x7fff_ffff == 0) {
                        assert_eq!(g, w, "{name} lane {k} of {:#x}", s.x1);
                    }
                    continue;
                }
                let rel = ((gf - wf) / wf).abs();
                assert!(rel <= 1.5 / 4096.0, "{name} lane {k} of {:#x}: {gf} vs {wf}", s.x1);
            }
            assert_eq!(cpu.mxcsr, want.mxcsr, "{name}: no flags");
        }
    }
    Ok(())
}

#[test]
fn integer_sse3_to_sse42_match_the_host() -> Result<(), IcedError> {
    let cases: [Case; 58] = [
        c!("pabsb xmm0, xmm1", 32, pabsb),
        c!("pabsw xmm0, xmm1", 32, pabsw),
        c!("pabsd xmm0, xmm1", 32, pabsd),
        c!("psignb xmm0, xmm1", 32, psignb),
        c!("psignw xmm0, xmm1", 32, psignw),
        c!("psignd xmm0, xmm1", 32, psignd),
        c!("phaddw xmm0, xmm1", 32, phaddw),
        c!("phaddd xmm0, xmm1", 32, phaddd),
        c!("phaddsw xmm0, xmm1", 32, phaddsw),
        c!("phsubw xmm0, xmm1", 32, phsubw),
        c!("phsubd xmm0, xmm1", 32, phsubd),
        c!("phsubsw xmm0, xmm1", 32, phsubsw),
        c!("pmaddubsw xmm0, xmm1", 32, pmaddubsw),
        c!("pmulhrsw xmm0, xmm1", 32, pmulhrsw),
        c!("pshufb xmm0, xmm1", 32, pshufb),
        c!("palignr xmm0, xmm1, 0", 32, palignr, 0),
        c!("palignr xmm0, xmm1, 5", 32, palignr, 5),
        c!("palignr xmm0, xmm1, 19", 32, palignr, 19),
        c!("palignr xmm0, xmm1, 40", 32, palignr, 40),
        c!("blendps xmm0, xmm1, 5", 32, blendps, 5),
        c!("blendpd xmm0, xmm1, 2", 64, blendpd, 2),
        c!("pblendw xmm0, xmm1, 0x9c", 32, pblendw, 0x9c),
        custom!("blendvps xmm1, xmm0\n movdqa xmm0, xmm1", 32, false, |a| {
            a.blendvps(xmm1, xmm0)?;
            a.movdqa(xmm0, xmm1)
        }),
        custom!("blendvpd xmm1, xmm0\n movdqa xmm0, xmm1", 64, false, |a| {
            a.blendvpd(xmm1, xmm0)?;
            a.movdqa(xmm0, xmm1)
        }),
        custom!("pblendvb xmm1, xmm0\n movdqa xmm0, xmm1", 32, false, |a| {
            a.pblendvb(xmm1, xmm0)?;
            a.movdqa(xmm0, xmm1)
        }),
        c!("mpsadbw xmm0, xmm1, 0", 32, mpsadbw, 0),
        c!("mpsadbw xmm0, xmm1, 7", 32, mpsadbw, 7),
        c!("packusdw xmm0, xmm1", 32, packusdw),
        c!("pcmpeqq xmm0, xmm1", 64, pcmpeqq),
        c!("pcmpgtq xmm0, xmm1", 64, pcmpgtq),
        c!("phminposuw xmm0, xmm1", 32, phminposuw),
        c!("pmaxsb xmm0, xmm1", 32, pmaxsb),
        c!("pmaxsd xmm0, xmm1", 32, pmaxsd),
        c!("pminsb xmm0, xmm1", 32, pminsb),
        c!("pminsd xmm0, xmm1", 32, pminsd),
        c!("pmaxuw xmm0, xmm1", 32, pmaxuw),
        c!("pmaxud xmm0, xmm1", 32, pmaxud),
        c!("pminuw xmm0, xmm1", 32, pminuw),
        c!("pminud xmm0, xmm1", 32, pminud),
        c!("pmuldq xmm0, xmm1", 32, pmuldq),
        c!("pmulld xmm0, xmm1", 32, pmulld),
        c!("pmovsxbw xmm0, xmm1", 32, pmovsxbw),
        c!("pmovsxbd xmm0, xmm1", 32, pmovsxbd),
        c!("pmovsxbq xmm0, xmm1", 32, pmovsxbq),
        c!("pmovsxwd xmm0, xmm1", 32, pmovsxwd),
        c!("pmovsxwq xmm0, xmm1", 32, pmovsxwq),
        c!("pmovsxdq xmm0, xmm1", 32, pmovsxdq),
        c!("pmovzxbw xmm0, xmm1", 32, pmovzxbw),
        c!("pmovzxbd xmm0, xmm1", 32, pmovzxbd),
        c!("pmovzxbq xmm0, xmm1", 32, pmovzxbq),
        c!("pmovzxwd xmm0, xmm1", 32, pmovzxwd),
        c!("pmovzxwq xmm0, xmm1", 32, pmovzxwq),
        c!("pmovzxdq xmm0, xmm1", 32, pmovzxdq),
        c!("insertps xmm0, xmm1, 0x9a", 32, insertps, 0x9a),
        c!("insertps xmm0, xmm1, 0x40", 32, insertps, 0x40),
        custom!("ptest xmm0, xmm1", 32, true, |a| a.ptest(xmm0, xmm1)),
        custom!("popcnt rax, rax", 32, true, |a| a.popcnt(rax, rax)),
        custom!("crc32 eax, eax", 32, false, |a| a.crc32(eax, eax)),
    ];
    check_cases(&cases, 500, 0x1a7e)?;
    let more: [Case; 18] = [
        custom!("crc32 rax, rax", 32, false, |a| a.crc32(rax, rax)),
        custom!("crc32 eax, al", 32, false, |a| a.crc32(eax, al)),
        custom!("crc32 eax, ax", 32, false, |a| a.crc32(eax, ax)),
        custom!("popcnt ax, ax", 32, true, |a| a.popcnt(ax, ax)),
        custom!("pextrb eax, xmm1, 13", 32, false, |a| a.pextrb(eax, xmm1, 13)),
        custom!("pextrw eax, xmm1, 5", 32, false, |a| a.pextrw(eax, xmm1, 5)),
        custom!("pextrd eax, xmm1, 2", 32, false, |a| a.pextrd(eax, xmm1, 2)),
        custom!("pextrq rax, xmm1, 1", 32, false, |a| a.pextrq(rax, xmm1, 1)),
        custom!("extractps eax, xmm1, 3", 32, false, |a| a.extractps(eax, xmm1, 3)),
        custom!("pinsrb xmm0, eax, 9", 32, false, |a| a.pinsrb(xmm0, eax, 9)),
        custom!("pinsrw xmm0, eax, 6", 32, false, |a| a.pinsrw(xmm0, eax, 6)),
        custom!("pinsrd xmm0, eax, 1", 32, false, |a| a.pinsrd(xmm0, eax, 1)),
        custom!("pinsrq xmm0, rax, 1", 32, false, |a| a.pinsrq(xmm0, rax, 1)),
        c!("pmuludq xmm0, xmm1", 32, pmuludq),
        c!("pclmulqdq xmm0, xmm1, 0x00", 32, pclmulqdq, 0x00),
        c!("pclmulqdq xmm0, xmm1, 0x01", 32, pclmulqdq, 0x01),
        c!("pclmulqdq xmm0, xmm1, 0x10", 32, pclmulqdq, 0x10),
        c!("pclmulqdq xmm0, xmm1, 0x11", 32, pclmulqdq, 0x11),
    ];
    check_cases(&more, 500, 0x1a7f)
}

/// Strings for PCMPxSTRx: characters from a small alphabet (so matches happen), with a NUL
/// now and then.
fn string_operand(rng: &mut Rng) -> u128 {
    (0..16).fold(0u128, |acc, k| {
        let r = rng.next_u64();
        let byte = match r % 9 {
            0 => 0,
            1 => 0xff,
            2 => 0x80,
            _ => b'a' + (r >> 8) as u8 % 4,
        };
        acc | u128::from(byte) << (8 * k)
    })
}

macro_rules! pcmpstr_cases {
    ($($imm:literal),*) => {
        [$(
            custom!(concat!("pcmpestri xmm0, xmm1, ", $imm, "\n mov eax, ecx"), 8, true, |a| { a.pcmpestri(xmm0, xmm1, $imm)?; a.mov(eax, ecx) }),
            custom!(concat!("pcmpistri xmm0, xmm1, ", $imm, "\n mov eax, ecx"), 8, true, |a| { a.pcmpistri(xmm0, xmm1, $imm)?; a.mov(eax, ecx) }),
            custom!(concat!("pcmpestrm xmm0, xmm1, ", $imm), 8, true, |a| a.pcmpestrm(xmm0, xmm1, $imm)),
            custom!(concat!("pcmpistrm xmm0, xmm1, ", $imm), 8, true, |a| a.pcmpistrm(xmm0, xmm1, $imm)),
        )*]
    };
}

#[test]
fn string_compares_match_the_host_in_every_mode() -> Result<(), IcedError> {
    // Every format (bits 0-1), aggregation (2-3), polarity (4-5) and output choice (6).
    let cases: [Case; 256] = pcmpstr_cases!(
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11,
        0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x30, 0x31, 0x32, 0x33,
        0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x40, 0x45, 0x4a, 0x4f, 0x50, 0x55,
        0x5a, 0x5f, 0x60, 0x65, 0x6a, 0x6f, 0x70, 0x75, 0x7a, 0x7f
    );
    let mut rng = Rng(0x57c);
    for &(name, _, _, host, emu) in &cases {
        let code = assemble(emu)?;
        for _ in 0..200 * scale() {
            let r = rng.next_u64();
            let len = |v: u64| match v % 4 {
                0 => v as i64 as u64,
                _ => (((v >> 8) % 40) as i64 - 20) as u64,
            };
            let s = State {
                x0: string_operand(&mut rng),
                x1: string_operand(&mut rng),
                mxcsr: 0x1f80,
                rax: len(r),
                flags: 0,
                rdx: 0,
            };
            let s = State { rdx: len(r.rotate_left(32)), ..s };
            let want = host(s);
            let (mut cpu, mut bus) = machine(&code);
            cpu.xmm[0] = s.x0;
            cpu.xmm[1] = s.x1;
            cpu.set_reg(Gpr::Rax, Width::W64, s.rax);
            cpu.set_reg(Gpr::Rdx, Width::W64, s.rdx);
            let (_, exit) = translator::run(&mut cpu, &mut bus, 4);
            let ctx = format!("{name}: {:#034x} {:#034x} rax={:#x} rdx={:#x}", s.x0, s.x1, s.rax, s.rdx);
            assert_eq!(exit, translator::Exit::Halted, "{ctx}");
            assert_eq!(cpu.xmm[0], want.x0, "{ctx}: xmm0");
            assert_eq!(cpu.reg(Gpr::Rax, Width::W64), want.rax, "{ctx}: rax");
            assert_eq!(cpu.flags.get() & 0x8d5, want.flags & 0x8d5, "{ctx}: flags");
        }
    }
    Ok(())
}

#[test]
fn unmasked_exceptions_fault_and_leave_the_destination_alone() -> Result<(), IcedError> {
    let cases: [Case; 6] = [
        c!("addps xmm0, xmm1", 32, addps),
        c!("divsd xmm0, xmm1", 64, divsd),
        c!("mulpd xmm0, xmm1", 64, mulpd),
        c!("sqrtps xmm0, xmm1", 32, sqrtps),
        c!("cvtsd2ss xmm0, xmm1", 64, cvtsd2ss),
        custom!("cvttss2si eax, xmm1", 32, false, |a| a.cvttss2si(eax, xmm1)),
    ];
    let mut rng = Rng(0xe8c);
    let mut faults = 0;
    for (name, lane, _, host, emu) in cases {
        let code = assemble(emu)?;
        for _ in 0..1500 {
            let s = State {
                x0: operand(&mut rng, lane),
                x1: operand(&mut rng, lane),
                mxcsr: 0x1f80 | (random_mxcsr(&mut rng) & 0x6000),
                rax: 0x1234,
                flags: 0,
                rdx: 0,
            };
            let raised = host(s).mxcsr & 0x3f;
            for bit in 0..6 {
                if raised & (1 << bit) == 0 {
                    continue;
                }
                let unmasked = State { mxcsr: s.mxcsr & !(0x80 << bit), ..s };
                let (cpu, fault) = run_emu(&code, unmasked);
                assert_eq!(fault, Some(19), "{name}: {s:x?} with flag {bit} unmasked");
                assert_eq!((cpu.xmm[0], cpu.reg(Gpr::Rax, Width::W64)), (s.x0, s.rax), "{name}: destination");
                assert_ne!(cpu.mxcsr & (1 << bit), 0, "{name}: the flag is recorded");
                if bit < 3 {
                    // A pre-computation exception: only pre-computation flags.
                    assert_eq!(cpu.mxcsr & 0x38, 0, "{name}: {s:x?} no post-computation flags");
                }
                faults += 1;
            }
        }
    }
    assert!(faults > 100, "the operand mix raises exceptions");
    // Without CR4.OSXMMEXCPT the same is #UD.
    let code = assemble(|a| a.divss(xmm0, xmm1))?;
    let s = State { x0: 0x3f80_0000, x1: 0, mxcsr: 0x1f80 & !0x200, rax: 0, flags: 0, rdx: 0 };
    let (mut cpu, mut bus) = machine(&code);
    cpu.cr4 &= !cr4::OSXMMEXCPT;
    cpu.xmm[0] = s.x0;
    cpu.mxcsr = s.mxcsr;
    assert_eq!(translator::interp::step(&mut cpu, &mut bus).map(|e| e.vector), Some(6));
    assert_eq!(cpu.xmm[0], s.x0);
    assert_eq!(cpu.mxcsr, s.mxcsr | 4);
    Ok(())
}

#[test]
fn packed_memory_operands_must_be_aligned_and_scalar_ones_need_not() -> Result<(), IcedError> {
    let code = assemble(|a| a.addps(xmm0, xmmword_ptr(0x3004u64)))?;
    let (mut cpu, mut bus) = machine(&code);
    assert_eq!(translator::interp::step(&mut cpu, &mut bus).map(|e| e.vector), Some(13));
    let code = assemble(|a| a.addss(xmm0, dword_ptr(0x3004u64)))?;
    let (mut cpu, mut bus) = machine(&code);
    bus.put(0x3004, &1.5f32.to_bits().to_le_bytes());
    cpu.xmm[0] = 0x1111_2222_3333_4444_5555_6666_3f80_0000;
    assert_eq!(translator::interp::step(&mut cpu, &mut bus).map(|e| e.vector), None);
    assert_eq!(cpu.xmm[0], 0x1111_2222_3333_4444_5555_6666_0000_0000 | u128::from(2.5f32.to_bits()));
    Ok(())
}

/// FXSAVE on the host and on the interpreter after the same FXRSTOR image agree byte for
/// byte over the defined area (0-415; 416-511 are reserved or available to software).
#[test]
fn fxsave_image_matches_the_host() -> Result<(), IcedError> {
    let mut rng = Rng(0xf5);
    for _ in 0..20 {
        let mut img = [0u8; 512];
        for b in img.iter_mut() {
            *b = rng.next_u64() as u8;
        }
        img[0..2].copy_from_slice(&0x037fu16.to_le_bytes()); // FCW: all masked
        img[2..4].copy_from_slice(&0u16.to_le_bytes()); // FSW: no pending exception
        img[5] = 0;
        img[6..8].copy_from_slice(&(rng.next_u64() as u16 & 0x7ff).to_le_bytes());
        img[24..28].copy_from_slice(&(random_mxcsr(&mut rng) | 0x3f).to_le_bytes());
        img[28..32].copy_from_slice(&0u32.to_le_bytes());
        for k in 0..8 {
            // The reserved bytes of each register slot.
            img[42 + 16 * k..48 + 16 * k].fill(0);
        }
        let mut host = [0u8; 512];
        let mut save = [0u8; 512];
        #[repr(align(16))]
        struct A([u8; 512]);
        let (src, mut dst, mut keep) = (A(img), A([0; 512]), A([0; 512]));
        // SAFETY: FXSAVE/FXRSTOR on 16-byte-aligned local 512-byte buffers; the host's own
        // x87/SSE state is saved first and restored last.
        unsafe {
            asm!(
                "fxsave64 [{keep}]",
                "fxrstor64 [{src}]",
                "fxsave64 [{dst}]",
                "fxrstor64 [{keep}]",
                keep = in(reg) keep.0.as_mut_ptr(),
                src = in(reg) src.0.as_ptr(),
                dst = in(reg) dst.0.as_mut_ptr(),
            );
        }
        host.copy_from_slice(&dst.0);
        save.copy_from_slice(&keep.0);
        let code = {
            let mut a = CodeAssembler::new(64)?;
            a.fxrstor64(zmmword_ptr(0x4000u64))?;
            a.fxsave64(zmmword_ptr(0x5000u64))?;
            a.hlt()?;
            a.assemble(0x8000)?
        };
        let (mut cpu, mut bus) = machine(&code);
        bus.put(0x4000, &img);
        let (_, exit) = translator::run(&mut cpu, &mut bus, 4);
        assert_eq!(exit, translator::Exit::Halted);
        for off in 0..416u64 {
            // FOP, FIP/FCS and FDP/FDS (bytes 6-23): AMD hosts store them only while an x87
            // exception is pending (FSW.ES), and Intel ones keep the last x87 instruction's; the
            // image loaded here has none, so they are left out.
            if (6..24).contains(&off) {
                continue;
            }
            // MXCSR_MASK: AMD hosts add bit 17 (their misaligned-exception mask, MM); cranebox
            // reports Intel's 0xffff.
            if off == 30 {
                assert_eq!(bus.get(0x5000 + off, 1) as u8, host[off as usize] & !2, "MXCSR_MASK");
                continue;
            }
            assert_eq!(bus.get(0x5000 + off, 1) as u8, host[off as usize], "byte {off}");
        }
        let _ = save;
    }
    Ok(())
}

#[repr(align(64))]
struct Area([u8; 576]);

/// XRSTOR then XSAVE of the same image on the host and on the interpreter (RFBM = x87|SSE):
/// the saved areas agree byte for byte (FOP/FIP/FDP and MXCSR_MASK treated as for FXSAVE),
/// including XSTATE_BV and the bytes XSAVE leaves alone; an image with XSTATE_BV = 0 puts
/// both components in their initial configuration.
#[test]
fn xsave_area_matches_the_host() -> Result<(), IcedError> {
    let mut rng = Rng(0x5a7e);
    for round in 0..40 {
        let mut img = [0u8; 576];
        for b in img.iter_mut() {
            *b = rng.next_u64() as u8;
        }
        img[0..2].copy_from_slice(&(0x037f | (rng.next_u64() as u16 & 0x0f00)).to_le_bytes());
        img[2..4].copy_from_slice(&(rng.next_u64() as u16 & 0x7f00).to_le_bytes());
        img[5] = 0;
        img[6..8].copy_from_slice(&(rng.next_u64() as u16 & 0x7ff).to_le_bytes());
        img[24..28].copy_from_slice(&random_mxcsr(&mut rng).to_le_bytes());
        for k in 0..8 {
            img[42 + 16 * k..48 + 16 * k].fill(0);
        }
        let bv = [3u64, 0, 1, 2][round % 4];
        img[512..576].fill(0);
        img[512..520].copy_from_slice(&bv.to_le_bytes());
        let src = Area(img);
        let mut dst = Area([0xcc; 576]);
        let mut opt = Area([0xcc; 576]);
        let mut keep = Area([0; 576]);
        // SAFETY: FXSAVE64/XRSTOR64/XSAVE64/XSAVEOPT64/FXRSTOR64 on 64-byte-aligned local buffers of 576
        // bytes with RFBM = 3 (x87 and SSE, which the host's XCR0 enables); the host's own
        // x87/SSE state is saved first and restored last. EAX and EDX are declared clobbered.
        unsafe {
            asm!(
                "fxsave64 [{keep}]",
                "xrstor64 [{src}]",
                "xsave64 [{dst}]",
                "xsaveopt64 [{opt}]",
                "fxrstor64 [{keep}]",
                keep = in(reg) keep.0.as_mut_ptr(),
                src = in(reg) src.0.as_ptr(),
                dst = in(reg) dst.0.as_mut_ptr(),
                opt = in(reg) opt.0.as_mut_ptr(),
                inout("eax") 3u32 => _,
                inout("edx") 0u32 => _,
            );
        }
        let code = {
            let mut a = CodeAssembler::new(64)?;
            a.xor(ecx, ecx)?;
            a.mov(eax, 3u32)?;
            a.xor(edx, edx)?;
            a.xsetbv()?;
            a.xrstor64(zmmword_ptr(0x4000u64))?;
            a.xsave64(zmmword_ptr(0x5000u64))?;
            a.xsaveopt64(zmmword_ptr(0x6000u64))?;
            a.hlt()?;
            a.assemble(0x8000)?
        };
        let (mut cpu, mut bus) = machine(&code);
        cpu.cr4 |= cr4::OSXSAVE;
        bus.put(0x4000, &img);
        bus.put(0x5000, &[0xcc; 576]);
        bus.put(0x6000, &[0xcc; 576]);
        let (_, exit) = translator::run(&mut cpu, &mut bus, 10);
        assert_eq!(exit, translator::Exit::Halted);
        assert_eq!(cpu.xcr0, 3);
        let host = dst.0;
        for off in 0..576u64 {
            // As for FXSAVE: FOP/FIP/FDP only while an exception is pending on AMD hosts,
            // and AMD's MXCSR_MASK has its MM bit.
            if (6..24).contains(&off) && bv & 1 != 0 {
                continue;
            }
            let mut want = host[off as usize];
            if off == 30 {
                want &= !2;
            }
            assert_eq!(bus.get(0x5000 + off, 1) as u8, want, "round {round} (XSTATE_BV {bv}): byte {off}");
            let mut want = opt.0[off as usize];
            if off == 30 {
                want &= !2;
            }
            assert_eq!(bus.get(0x6000 + off, 1) as u8, want, "round {round} (XSTATE_BV {bv}): XSAVEOPT byte {off}");
        }
    }
    Ok(())
}

#[test]
fn xsave_family_faults() -> Result<(), IcedError> {
    let step = |f: Emu, setup: &dyn Fn(&mut CpuState)| -> Result<(Option<u8>, CpuState), IcedError> {
        let code = assemble(f)?;
        let (mut cpu, mut bus) = machine(&code);
        // User-accessible pages, so the CPL 3 case reaches the instruction.
        cranebox_tests::identity_2m(&mut bus, 0x20000);
        cpu.cr4 |= cr4::OSXSAVE;
        setup(&mut cpu);
        let e = translator::interp::step(&mut cpu, &mut bus).map(|e| e.vector);
        Ok((e, cpu))
    };
    // Without CR4.OSXSAVE: #UD.
    let (e, _) = step(|a| a.xgetbv(), &|c| c.cr4 &= !cr4::OSXSAVE)?;
    assert_eq!(e, Some(6));
    // XGETBV of XCR0 works; of XCR1: #GP.
    let (e, cpu) = step(|a| a.xgetbv(), &|c| c.set_reg(Gpr::Rcx, Width::W64, 0))?;
    assert_eq!((e, cpu.reg(Gpr::Rax, Width::W64), cpu.reg(Gpr::Rdx, Width::W64)), (None, 1, 0));
    let (e, _) = step(|a| a.xgetbv(), &|c| c.set_reg(Gpr::Rcx, Width::W64, 1))?;
    assert_eq!(e, Some(13));
    // XSETBV: x87 must stay on, unsupported components and CPL 3 are #GP.
    for (lo, hi, cpl, want) in
        [(3, 0, 0, None), (2, 0, 0, Some(13)), (7, 0, 0, Some(13)), (1, 1, 0, Some(13)), (3, 0, 3, Some(13))]
    {
        let (e, cpu) = step(|a| a.xsetbv(), &|c| {
            c.set_reg(Gpr::Rcx, Width::W64, 0);
            c.set_reg(Gpr::Rax, Width::W64, lo);
            c.set_reg(Gpr::Rdx, Width::W64, hi);
            c.cpl = cpl;
        })?;
        assert_eq!(e, want, "XSETBV {hi:#x}:{lo:#x} at CPL {cpl}");
        if want.is_some() {
            assert_eq!(cpu.xcr0, 1);
        }
    }
    // XSAVE to an area that is not 64-byte aligned: #GP; with CR0.TS: #NM.
    let (e, _) = step(|a| a.xsave64(zmmword_ptr(0x5010u64)), &|_| {})?;
    assert_eq!(e, Some(13));
    let (e, _) = step(|a| a.xsave64(zmmword_ptr(0x5000u64)), &|c| c.cr0 |= frontend_x86::state::cr0::TS)?;
    assert_eq!(e, Some(7));
    // XRSTOR of a compacted header (XCOMP_BV bit 63): #GP, nothing loaded.
    let code = assemble(|a| a.xrstor64(zmmword_ptr(0x4000u64)))?;
    let (mut cpu, mut bus) = machine(&code);
    cpu.cr4 |= cr4::OSXSAVE;
    cpu.set_reg(Gpr::Rax, Width::W64, 3);
    let mut img = [0u8; 576];
    img[512] = 1;
    img[527] = 0x80;
    bus.put(0x4000, &img);
    cpu.xmm[0] = 5;
    assert_eq!(translator::interp::step(&mut cpu, &mut bus).map(|e| e.vector), Some(13));
    assert_eq!(cpu.xmm[0], 5);
    Ok(())
}

type HostMm = fn(u128, u128, u64, u32) -> (u128, u64, u32);

macro_rules! host_mm {
    ($text:expr) => {{
        fn run(a: u128, b: u128, m: u64, mx: u32) -> (u128, u64, u32) {
            let (a, b) = (a.to_le_bytes(), b.to_le_bytes());
            let mut r = [0u8; 16];
            let mut mm_out = 0u64;
            let (mut save, mut mx_out) = (0u32, 0u32);
            // SAFETY: reads and writes only the local buffers named as operands; MM0, XMM0
            // and XMM1 are declared clobbered, EMMS leaves the x87 tags empty again, and the
            // host MXCSR is restored.
            unsafe {
                asm!(
                    "stmxcsr [{save}]",
                    "ldmxcsr [{mxi}]",
                    "movdqu xmm0, [{a}]",
                    "movdqu xmm1, [{b}]",
                    "movq mm0, [{m}]",
                    $text,
                    "movdqu [{r}], xmm0",
                    "movq [{mo}], mm0",
                    "emms",
                    "stmxcsr [{mxo}]",
                    "ldmxcsr [{save}]",
                    save = in(reg) &mut save,
                    mxi = in(reg) &mx,
                    mxo = in(reg) &mut mx_out,
                    a = in(reg) a.as_ptr(),
                    b = in(reg) b.as_ptr(),
                    m = in(reg) &m,
                    r = in(reg) r.as_mut_ptr(),
                    mo = in(reg) &mut mm_out,
                    out("xmm0") _,
                    out("xmm1") _,
                    out("mm0") _,
                );
            }
            (u128::from_le_bytes(r), mm_out, mx_out)
        }
        run as HostMm
    }};
}

#[test]
fn conversions_and_moves_with_mmx_registers_match_the_host() -> Result<(), IcedError> {
    let cases: [(&str, u32, HostMm, Emu); 8] = [
        ("cvtpi2ps", 32, host_mm!("cvtpi2ps xmm0, mm0"), |a| a.cvtpi2ps(xmm0, mm0)),
        ("cvtpi2pd", 32, host_mm!("cvtpi2pd xmm0, mm0"), |a| a.cvtpi2pd(xmm0, mm0)),
        ("cvtps2pi", 32, host_mm!("cvtps2pi mm0, xmm1"), |a| a.cvtps2pi(mm0, xmm1)),
        ("cvttps2pi", 32, host_mm!("cvttps2pi mm0, xmm1"), |a| a.cvttps2pi(mm0, xmm1)),
        ("cvtpd2pi", 64, host_mm!("cvtpd2pi mm0, xmm1"), |a| a.cvtpd2pi(mm0, xmm1)),
        ("cvttpd2pi", 64, host_mm!("cvttpd2pi mm0, xmm1"), |a| a.cvttpd2pi(mm0, xmm1)),
        ("movq2dq", 32, host_mm!("movq2dq xmm0, mm0"), |a| a.movq2dq(xmm0, mm0)),
        ("movdq2q", 32, host_mm!("movdq2q mm0, xmm1"), |a| a.movdq2q(mm0, xmm1)),
    ];
    let mut rng = Rng(0x3a3);
    for (name, lane, host, emu) in cases {
        let code = assemble(emu)?;
        for _ in 0..500 * scale() {
            let (a, b) = (operand(&mut rng, lane), operand(&mut rng, lane));
            let m = rng.next_u64();
            let mx = random_mxcsr(&mut rng);
            let (wx, wm, wmx) = host(a, b, m, mx);
            let (mut cpu, mut bus) = machine(&code);
            cpu.xmm[0] = a;
            cpu.xmm[1] = b;
            cpu.fpu.set_mm(0, m);
            cpu.mxcsr = mx;
            let (_, exit) = translator::run(&mut cpu, &mut bus, 4);
            assert_eq!(exit, translator::Exit::Halted, "{name}");
            let ctx = format!("{name}: {a:#034x} {b:#034x} mm0={m:#x} mxcsr={mx:#x}");
            assert_eq!(cpu.xmm[0], wx, "{ctx}: xmm0");
            assert_eq!(cpu.fpu.mm(0), wm, "{ctx}: mm0");
            assert_eq!(cpu.mxcsr, wmx, "{ctx}: mxcsr");
        }
    }
    Ok(())
}

#[test]
fn non_temporal_and_masked_stores_write_what_the_host_writes() -> Result<(), IcedError> {
    let mut rng = Rng(0x7e7);
    for _ in 0..200 {
        let (data, mask) = (operand(&mut rng, 32), rng.next_u64() as u128 | (rng.next_u64() as u128) << 64);
        let fill = rng.next_u64();
        #[repr(align(16))]
        struct Aligned([u64; 8]);
        let mut buf = Aligned([fill; 8]);
        let host = &mut buf.0;
        let (db, mb) = (data.to_le_bytes(), mask.to_le_bytes());
        // SAFETY: every store goes to the 16-byte-aligned 64-byte local array `host`
        // (MASKMOVDQU through RDI); XMM0 and XMM1 are declared clobbered.
        unsafe {
            asm!(
                "movdqu xmm0, [{d}]",
                "movdqu xmm1, [{m}]",
                "movntdq [{p}], xmm0",
                "movntps [{p} + 16], xmm1",
                "movnti [{p} + 40], {g}",
                "maskmovdqu xmm0, xmm1",
                d = in(reg) db.as_ptr(),
                m = in(reg) mb.as_ptr(),
                p = in(reg) host.as_mut_ptr(),
                g = in(reg) fill.rotate_left(7),
                in("rdi") host.as_mut_ptr().wrapping_add(6) as *mut u8 as usize - 3,
                out("xmm0") _,
                out("xmm1") _,
            );
        }
        let mut a = CodeAssembler::new(64)?;
        a.movntdq(xmmword_ptr(0x3000u64), xmm0)?;
        a.movntps(xmmword_ptr(0x3010u64), xmm1)?;
        a.movnti(qword_ptr(0x3028u64), rbx)?;
        a.maskmovdqu(xmm0, xmm1)?;
        a.sfence()?;
        a.lfence()?;
        a.mfence()?;
        a.clflush(byte_ptr(0x3000u64))?;
        a.hlt()?;
        let (mut cpu, mut bus) = machine(&a.assemble(0x8000)?);
        for k in 0..8u64 {
            bus.put(0x3000 + 8 * k, &fill.to_le_bytes());
        }
        cpu.xmm[0] = data;
        cpu.xmm[1] = mask;
        cpu.set_reg(Gpr::Rbx, Width::W64, fill.rotate_left(7));
        cpu.set_reg(Gpr::Rdi, Width::W64, 0x3000 + 48 - 3);
        let (_, exit) = translator::run(&mut cpu, &mut bus, 20);
        assert_eq!(exit, translator::Exit::Halted);
        for (k, want) in host.iter().enumerate() {
            assert_eq!(bus.get(0x3000 + 8 * k as u64, 8), *want, "qword {k}");
        }
    }
    Ok(())
}

#[test]
fn lahf_and_sahf_work_in_64_bit_mode() -> Result<(), IcedError> {
    let mut a = CodeAssembler::new(64)?;
    a.mov(ah, 0xd7u32)?;
    a.sahf()?;
    a.mov(eax, 0u32)?;
    a.lahf()?;
    a.hlt()?;
    let (mut cpu, mut bus) = machine(&a.assemble(0x8000)?);
    let (_, exit) = translator::run(&mut cpu, &mut bus, 10);
    assert_eq!(exit, translator::Exit::Halted);
    assert_eq!(cpu.reg(Gpr::Rax, Width::W64), 0xd7 << 8);
    Ok(())
}

/// SIGFPE handler for the trapping runs: resumes at the address the template left in R11 and
/// sets R10 to say the instruction trapped. The signal frame's MXCSR (with the flags the
/// exception raised) is what the interrupted code sees again.
extern "C" fn resume_after_fpe(_sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid ucontext_t for an SA_SIGINFO handler; only two saved
    // general registers of the interrupted thread are changed.
    unsafe {
        let uc = ctx.cast::<libc::ucontext_t>();
        let g = &mut (*uc).uc_mcontext.gregs;
        g[libc::REG_RIP as usize] = g[libc::REG_R11 as usize];
        g[libc::REG_R10 as usize] = 1;
    }
}

fn install_fpe_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction with a handler of the SA_SIGINFO signature; installing
        // it for SIGFPE affects only the trapping runs below (nothing else here traps).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = resume_after_fpe as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGFPE, &sa, std::ptr::null_mut()), 0);
        }
    });
}

type HostTrap = fn(u128, u128, u32) -> (u128, u32, bool);

macro_rules! host_trap {
    ($text:expr) => {{
        fn run(a: u128, b: u128, mx: u32) -> (u128, u32, bool) {
            let (a, b) = (a.to_le_bytes(), b.to_le_bytes());
            let mut r = [0u8; 16];
            let (mut save, mut mx_out) = (0u32, 0u32);
            let trapped: u64;
            // SAFETY: reads and writes only the local buffers named as operands; when the
            // instruction raises an unmasked SIMD exception the SIGFPE handler resumes at
            // label 2 with R10 = 1. The host MXCSR is restored; XMM0, XMM1 and R11 are
            // declared clobbered.
            unsafe {
                asm!(
                    "stmxcsr [{save}]",
                    "movdqu xmm0, [{a}]",
                    "movdqu xmm1, [{b}]",
                    "lea r11, [rip + 2f]",
                    "xor r10d, r10d",
                    "ldmxcsr [{mxi}]",
                    $text,
                    "2:",
                    "stmxcsr [{mxo}]",
                    "ldmxcsr [{save}]",
                    "movdqu [{r}], xmm0",
                    save = in(reg) &mut save,
                    mxi = in(reg) &mx,
                    mxo = in(reg) &mut mx_out,
                    a = in(reg) a.as_ptr(),
                    b = in(reg) b.as_ptr(),
                    r = in(reg) r.as_mut_ptr(),
                    out("r10") trapped,
                    out("r11") _,
                    out("xmm0") _,
                    out("xmm1") _,
                );
            }
            (u128::from_le_bytes(r), mx_out, trapped != 0)
        }
        run as HostTrap
    }};
}

/// Unmasked exceptions against the host: the host traps (SIGFPE), the interpreter raises
/// #XM; both leave XMM0 alone and record the same MXCSR flags (pre-computation exceptions
/// stop every lane; overflow and underflow with their masks clear, FTZ not applied, PE as the
/// SDM describes).
#[test]
fn unmasked_exceptions_match_the_host() -> Result<(), IcedError> {
    install_fpe_handler();
    let cases: [(&str, u32, HostTrap, Emu); 24] = [
        ("addps", 32, host_trap!("addps xmm0, xmm1"), |a| a.addps(xmm0, xmm1)),
        ("subsd", 64, host_trap!("subsd xmm0, xmm1"), |a| a.subsd(xmm0, xmm1)),
        ("mulps", 32, host_trap!("mulps xmm0, xmm1"), |a| a.mulps(xmm0, xmm1)),
        ("mulpd", 64, host_trap!("mulpd xmm0, xmm1"), |a| a.mulpd(xmm0, xmm1)),
        ("divps", 32, host_trap!("divps xmm0, xmm1"), |a| a.divps(xmm0, xmm1)),
        ("divsd", 64, host_trap!("divsd xmm0, xmm1"), |a| a.divsd(xmm0, xmm1)),
        ("sqrtps", 32, host_trap!("sqrtps xmm0, xmm1"), |a| a.sqrtps(xmm0, xmm1)),
        ("maxpd", 64, host_trap!("maxpd xmm0, xmm1"), |a| a.maxpd(xmm0, xmm1)),
        ("cmpps lt", 32, host_trap!("cmpps xmm0, xmm1, 1"), |a| a.cmpps(xmm0, xmm1, 1)),
        ("cvtsd2ss", 64, host_trap!("cvtsd2ss xmm0, xmm1"), |a| a.cvtsd2ss(xmm0, xmm1)),
        ("cvtps2dq", 32, host_trap!("cvtps2dq xmm0, xmm1"), |a| a.cvtps2dq(xmm0, xmm1)),
        ("cvtpd2ps", 64, host_trap!("cvtpd2ps xmm0, xmm1"), |a| a.cvtpd2ps(xmm0, xmm1)),
        ("roundpd", 64, host_trap!("roundpd xmm0, xmm1, 4"), |a| a.roundpd(xmm0, xmm1, 4)),
        ("dpps", 32, host_trap!("dpps xmm0, xmm1, 0xff"), |a| a.dpps(xmm0, xmm1, 0xff)),
        ("dppd", 64, host_trap!("dppd xmm0, xmm1, 0x31"), |a| a.dppd(xmm0, xmm1, 0x31)),
        ("haddps", 32, host_trap!("haddps xmm0, xmm1"), |a| a.haddps(xmm0, xmm1)),
        ("addsubpd", 64, host_trap!("addsubpd xmm0, xmm1"), |a| a.addsubpd(xmm0, xmm1)),
        ("minss", 32, host_trap!("minss xmm0, xmm1"), |a| a.minss(xmm0, xmm1)),
        ("sqrtsd", 64, host_trap!("sqrtsd xmm0, xmm1"), |a| a.sqrtsd(xmm0, xmm1)),
        ("cmpsd unord", 64, host_trap!("cmpsd xmm0, xmm1, 3"), |a| a.cmpsd_3(xmm0, xmm1, 3)),
        ("cvtss2sd", 32, host_trap!("cvtss2sd xmm0, xmm1"), |a| a.cvtss2sd(xmm0, xmm1)),
        ("cvttpd2dq", 64, host_trap!("cvttpd2dq xmm0, xmm1"), |a| a.cvttpd2dq(xmm0, xmm1)),
        ("cvtdq2ps", 32, host_trap!("cvtdq2ps xmm0, xmm1"), |a| a.cvtdq2ps(xmm0, xmm1)),
        ("roundss", 32, host_trap!("roundss xmm0, xmm1, 0"), |a| a.roundss(xmm0, xmm1, 0)),
    ];
    let mut rng = Rng(0x7a9);
    let mut traps = 0;
    for (name, lane, host, emu) in cases {
        let code = assemble(emu)?;
        for _ in 0..1000 * scale() {
            let (a, b) = (operand(&mut rng, lane), operand(&mut rng, lane));
            // Random controls and a random set of masks cleared.
            let mx = random_mxcsr(&mut rng) & !((rng.next_u64() as u32 & 0x3f) << 7);
            let (wx, wmx, trapped) = host(a, b, mx);
            let s = State { x0: a, x1: b, mxcsr: mx, rax: 0, flags: 0, rdx: 0 };
            let (cpu, fault) = run_emu(&code, s);
            let ctx = format!("{name}: {a:#034x} {b:#034x} mxcsr={mx:#x}");
            assert_eq!(fault, trapped.then_some(19), "{ctx}: #XM");
            assert_eq!(cpu.mxcsr, wmx, "{ctx}: mxcsr");
            assert_eq!(cpu.xmm[0], wx, "{ctx}: xmm0");
            traps += usize::from(trapped);
        }
    }
    assert!(traps > 1000, "only {traps} runs trapped");
    Ok(())
}

type HostTrapGpr = fn(u128, u128, u32) -> (u64, u64, u32, bool);

macro_rules! host_trap_gpr {
    ($text:expr) => {{
        fn run(a: u128, b: u128, mx: u32) -> (u64, u64, u32, bool) {
            let (a, b) = (a.to_le_bytes(), b.to_le_bytes());
            let (mut save, mut mx_out) = (0u32, 0u32);
            let trapped: u64;
            let flags: u64;
            let mut acc = 0x5555_5555_5555_5555u64;
            // SAFETY: as in `host_trap!`; RAX is in/out and the flags are read with PUSHFQ
            // after the instruction (or after the resumed trap).
            unsafe {
                asm!(
                    "stmxcsr [{save}]",
                    "movdqu xmm0, [{a}]",
                    "movdqu xmm1, [{b}]",
                    "lea r11, [rip + 2f]",
                    "xor r10d, r10d",
                    "ldmxcsr [{mxi}]",
                    "test al, 0",
                    $text,
                    "2:",
                    "pushfq",
                    "pop {fl}",
                    "stmxcsr [{mxo}]",
                    "ldmxcsr [{save}]",
                    save = in(reg) &mut save,
                    mxi = in(reg) &mx,
                    mxo = in(reg) &mut mx_out,
                    a = in(reg) a.as_ptr(),
                    b = in(reg) b.as_ptr(),
                    fl = out(reg) flags,
                    inout("rax") acc,
                    out("r10") trapped,
                    out("r11") _,
                    out("xmm0") _,
                    out("xmm1") _,
                );
            }
            (acc, flags, mx_out, trapped != 0)
        }
        run as HostTrapGpr
    }};
}

/// The same for instructions that write a general register or the flags: on a trap RAX and
/// the flags stay as they were.
#[test]
fn unmasked_exceptions_in_integer_conversions_and_comis_match_the_host() -> Result<(), IcedError> {
    install_fpe_handler();
    let cases: [(&str, u32, HostTrapGpr, Emu); 6] = [
        ("cvtsd2si eax", 64, host_trap_gpr!("cvtsd2si eax, xmm1"), |a| a.cvtsd2si(eax, xmm1)),
        ("cvttss2si rax", 32, host_trap_gpr!("cvttss2si rax, xmm1"), |a| a.cvttss2si(rax, xmm1)),
        ("cvtss2si eax", 32, host_trap_gpr!("cvtss2si eax, xmm1"), |a| a.cvtss2si(eax, xmm1)),
        ("cvttsd2si rax", 64, host_trap_gpr!("cvttsd2si rax, xmm1"), |a| a.cvttsd2si(rax, xmm1)),
        ("comiss", 32, host_trap_gpr!("comiss xmm0, xmm1"), |a| a.comiss(xmm0, xmm1)),
        ("ucomisd", 64, host_trap_gpr!("ucomisd xmm0, xmm1"), |a| a.ucomisd(xmm0, xmm1)),
    ];
    let mut rng = Rng(0x7aa);
    let mut traps = 0;
    for (name, lane, host, emu) in cases {
        // The emulator starts from the same flags as the host template (TEST AL, 0: ZF|PF).
        let code = assemble(emu)?;
        for _ in 0..1000 * scale() {
            let (a, b) = (operand(&mut rng, lane), operand(&mut rng, lane));
            let mx = random_mxcsr(&mut rng) & !((rng.next_u64() as u32 & 0x3f) << 7);
            let (want_rax, want_flags, want_mx, trapped) = host(a, b, mx);
            let (mut cpu, mut bus) = machine(&code);
            cpu.xmm[0] = a;
            cpu.xmm[1] = b;
            cpu.mxcsr = mx;
            cpu.set_reg(Gpr::Rax, Width::W64, 0x5555_5555_5555_5555);
            cpu.flags.set_masked(0x8d5, 0x44);
            let fault = translator::interp::step(&mut cpu, &mut bus).map(|e| e.vector);
            let ctx = format!("{name}: {a:#034x} {b:#034x} mxcsr={mx:#x}");
            assert_eq!(fault, trapped.then_some(19), "{ctx}: #XM");
            assert_eq!(cpu.mxcsr, want_mx, "{ctx}: mxcsr");
            assert_eq!(cpu.reg(Gpr::Rax, Width::W64), want_rax, "{ctx}: rax");
            assert_eq!(cpu.flags.get() & 0x8d5, want_flags & 0x8d5, "{ctx}: flags");
            traps += usize::from(trapped);
        }
    }
    assert!(traps > 300, "only {traps} runs trapped");
    Ok(())
}

/// Legacy-SSE alignment rules for the newer instructions: m128 operands must be 16-byte
/// aligned (#GP(0)) except for LDDQU and the SSE4.2 string compares; narrower operands
/// (PMOVZX m64, MOVDDUP m64, INSERTPS m32) never need alignment.
#[test]
fn sse3_to_sse42_memory_alignment_rules() -> Result<(), IcedError> {
    let cases: [(&str, Emu, Option<u8>); 9] = [
        ("ptest", |a| a.ptest(xmm0, xmmword_ptr(0x3004u64)), Some(13)),
        ("pshufb", |a| a.pshufb(xmm0, xmmword_ptr(0x3004u64)), Some(13)),
        ("haddps", |a| a.haddps(xmm0, xmmword_ptr(0x3004u64)), Some(13)),
        ("roundps", |a| a.roundps(xmm0, xmmword_ptr(0x3004u64), 0), Some(13)),
        ("lddqu", |a| a.lddqu(xmm0, xmmword_ptr(0x3004u64)), None),
        ("pcmpistri", |a| a.pcmpistri(xmm0, xmmword_ptr(0x3004u64), 0), None),
        ("pmovzxbw", |a| a.pmovzxbw(xmm0, qword_ptr(0x3004u64)), None),
        ("movddup", |a| a.movddup(xmm0, qword_ptr(0x3004u64)), None),
        ("insertps", |a| a.insertps(xmm0, dword_ptr(0x3004u64), 0x10), None),
    ];
    for (name, emu, want) in cases {
        let code = assemble(emu)?;
        let (mut cpu, mut bus) = machine(&code);
        bus.put(0x3000, &[0x11; 32]);
        cpu.xmm[0] = 7;
        let e = translator::interp::step(&mut cpu, &mut bus).map(|e| e.vector);
        assert_eq!(e, want, "{name}");
        if want.is_some() {
            assert_eq!(cpu.xmm[0], 7, "{name}: nothing written");
        }
    }
    Ok(())
}

type HostPending = fn(u64) -> bool;

macro_rules! host_pending {
    ($text:literal) => {{
        fn run(m: u64) -> bool {
            #[repr(align(16))]
            struct M([u8; 16]);
            let m = M(u128::from(m).to_le_bytes());
            let cw = 0x037bu16; // ZE unmasked
            let trapped: u64;
            // SAFETY: reads the local control word and the 16-byte aligned local `m`; a zero
            // divide with ZE unmasked leaves an x87 exception pending, and when the instruction
            // waits for it (#MF, SIGFPE) the handler resumes at label 2 with R10 = 1. FNINIT
            // (which does not wait) then leaves the x87 stack empty and EMMS clears the MMX
            // state, as the Rust ABI expects; XMM0, R10, R11 and the x87/MMX registers are
            // declared clobbered.
            unsafe {
                asm!(
                    "lea r11, [rip + 2f]",
                    "xor r10d, r10d",
                    "/* {m} */",
                    "fninit",
                    "fldcw word ptr [{cw}]",
                    "fld1",
                    "fldz",
                    "fdivp st(1), st(0)",
                    $text,
                    "2:",
                    "fninit",
                    "emms",
                    cw = in(reg) &cw,
                    m = in(reg) m.0.as_ptr(),
                    out("r10") trapped,
                    out("r11") _,
                    out("xmm0") _,
                    out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
                    out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
                );
            }
            trapped != 0
        }
        run as HostPending
    }};
}

/// The SSE instructions on MMX registers wait for a pending unmasked x87 exception before
/// their x87-to-MMX transition (#MF with CR0.NE, as Linux runs the host); the forms with a
/// memory source and no MMX register do not. Against the host, with nothing changed by a
/// faulting instruction.
#[test]
fn pending_x87_exceptions_before_the_mmx_transition_match_the_host() -> Result<(), IcedError> {
    install_fpe_handler();
    let cases: [(&str, HostPending, Emu); 12] = [
        ("cvtpi2ps xmm0, mm0", host_pending!("cvtpi2ps xmm0, mm0"), |a| a.cvtpi2ps(xmm0, mm0)),
        ("cvtpi2ps xmm0, m64", host_pending!("cvtpi2ps xmm0, qword ptr [{m}]"), |a| {
            a.cvtpi2ps(xmm0, qword_ptr(0x3000u64))
        }),
        ("cvtpi2pd xmm0, mm0", host_pending!("cvtpi2pd xmm0, mm0"), |a| a.cvtpi2pd(xmm0, mm0)),
        ("cvtpi2pd xmm0, m64", host_pending!("cvtpi2pd xmm0, qword ptr [{m}]"), |a| {
            a.cvtpi2pd(xmm0, qword_ptr(0x3000u64))
        }),
        ("cvtps2pi mm0, xmm0", host_pending!("cvtps2pi mm0, xmm0"), |a| a.cvtps2pi(mm0, xmm0)),
        ("cvtps2pi mm0, m64", host_pending!("cvtps2pi mm0, qword ptr [{m}]"), |a| {
            a.cvtps2pi(mm0, qword_ptr(0x3000u64))
        }),
        ("cvttps2pi mm0, xmm0", host_pending!("cvttps2pi mm0, xmm0"), |a| a.cvttps2pi(mm0, xmm0)),
        ("cvtpd2pi mm0, m128", host_pending!("cvtpd2pi mm0, xmmword ptr [{m}]"), |a| {
            a.cvtpd2pi(mm0, xmmword_ptr(0x3000u64))
        }),
        ("cvttpd2pi mm0, xmm0", host_pending!("cvttpd2pi mm0, xmm0"), |a| a.cvttpd2pi(mm0, xmm0)),
        ("movq2dq xmm0, mm0", host_pending!("movq2dq xmm0, mm0"), |a| a.movq2dq(xmm0, mm0)),
        ("movdq2q mm0, xmm0", host_pending!("movdq2q mm0, xmm0"), |a| a.movdq2q(mm0, xmm0)),
        ("cvtsi2sd xmm0, m64 (no MMX)", host_pending!("cvtsi2sd xmm0, qword ptr [{m}]"), |a| {
            a.cvtsi2sd(xmm0, qword_ptr(0x3000u64))
        }),
    ];
    for (name, host, emu) in cases {
        let m = 0x4000_0000_3f80_0000u64;
        let trapped = host(m);
        let mut a = CodeAssembler::new(64)?;
        a.fninit()?;
        a.fldcw(word_ptr(0x3100u64))?;
        a.fld1()?;
        a.fldz()?;
        a.fdivp(st1, st0)?;
        emu(&mut a)?;
        a.hlt()?;
        let (mut cpu, mut bus) = machine(&a.assemble(0x8000)?);
        cpu.cr0 |= frontend_x86::state::cr0::NE;
        bus.put(0x3000, &m.to_le_bytes());
        bus.put(0x3100, &0x037bu16.to_le_bytes());
        for _ in 0..5 {
            assert_eq!(translator::interp::step(&mut cpu, &mut bus).map(|e| e.vector), None, "{name}: prologue");
        }
        assert_eq!(cpu.fpu.fsw & 0x80, 0x80, "{name}: an exception is pending");
        let before = cpu.clone();
        let fault = translator::interp::step(&mut cpu, &mut bus).map(|e| e.vector);
        assert_eq!(fault, trapped.then_some(16), "{name}: #MF as the host");
        if trapped {
            assert_eq!(cpu.fpu, before.fpu, "{name}: no transition");
            assert_eq!(cpu.xmm[0], before.xmm[0], "{name}: XMM0 alone");
        }
    }
    Ok(())
}
