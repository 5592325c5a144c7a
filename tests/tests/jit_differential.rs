//! The JIT tier against the interpreter tier: random instruction streams in real, 32-bit
//! protected and 64-bit long mode run under both (the JIT forced to compile every block before
//! its first run) and must end in the same CPU state, memory, port accesses and instruction
//! count. The streams are random bytes kept where iced-x86 decodes them to a valid instruction
//! whose memory displacement is small and whose branch target stays in the program, so they
//! cover the whole integer ISA, helpers, loops and faults (delivered to handlers that HLT).

use cranebox_tests::{gdt_idt_cpu, Rng, SparseBus};
use frontend_x86::{CpuState, Gpr, SegReg, Segment, Width};
use iced_x86::{Decoder, DecoderOptions, OpKind};
use translator::{Exit, Interpreter};

const CODE: u64 = 0x10000;
const HANDLER: u64 = 0x3000;
const BUDGET: u64 = 1200;

#[derive(Clone, Copy, Debug)]
enum Mode {
    Real,
    Protected,
    Long,
}

impl Mode {
    fn bits(self) -> u32 {
        match self {
            Mode::Real => 16,
            Mode::Protected => 32,
            Mode::Long => 64,
        }
    }
}

/// Random valid instructions filling about `len` bytes at offset `ip0`, then HLT.
fn program(rng: &mut Rng, bits: u32, ip0: u64, len: u64) -> Vec<u8> {
    let mut code = Vec::new();
    let mut tries = 0;
    while (code.len() as u64) < len && tries < 10_000 {
        tries += 1;
        let mut bytes = [0u8; 15];
        for b in bytes.iter_mut() {
            *b = rng.next_u64() as u8;
        }
        // Bias toward the common one-byte ALU/MOV/branch opcodes now and then.
        if rng.next_u64().is_multiple_of(2) {
            const COMMON: [u8; 16] =
                [0x01, 0x03, 0x29, 0x2b, 0x31, 0x39, 0x3b, 0x85, 0x89, 0x8b, 0x8d, 0xff, 0x75, 0x74, 0x7c, 0xe2];
            bytes[0] = COMMON[(rng.next_u64() % 16) as usize];
        }
        let ip = ip0 + code.len() as u64;
        let mut d = Decoder::with_ip(bits, &bytes, ip, DecoderOptions::NONE);
        let insn = d.decode();
        if insn.is_invalid() {
            continue;
        }
        let has_mem = (0..insn.op_count()).any(|n| insn.op_kind(n) == OpKind::Memory);
        if has_mem && bits != 16 {
            let disp = insn.memory_displacement64() as i64;
            if insn.is_ip_rel_memory_operand() || !(-0x800..0x800).contains(&disp) {
                continue;
            }
        }
        if (0..insn.op_count())
            .any(|n| matches!(insn.op_kind(n), OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64))
        {
            let t = insn.near_branch_target();
            if t < ip0 || t >= ip0 + len {
                continue;
            }
        }
        code.extend_from_slice(&bytes[..insn.len()]);
    }
    code.push(0xf4);
    code
}

fn machine(rng: &mut Rng, mode: Mode) -> (CpuState, SparseBus) {
    let mut bus = SparseBus::new(32);
    // HLT wherever a wild branch or return is likely to land (low memory, the stack page,
    // the rest of the code page), so a program that runs away ends soon instead of running
    // long blocks of zero bytes.
    if !matches!(mode, Mode::Real) {
        bus.put(0, &[0xf4; 0x400]);
    }
    bus.put(0x400, &[0xf4; 0xc00]);
    bus.put(0x4000, &[0xf4; 0xc000]);
    // ...except the stack: popped return addresses are then 0, which holds HLT.
    bus.put(0x8000, &[0; 0x2000]);
    bus.put(CODE, &[0xf4; 0x10000]);
    bus.put(0x30000, &[0xf4; 0x10000]);
    bus.put(HANDLER, &[0xf4]);
    let mut cpu = match mode {
        Mode::Real => {
            let mut cpu = CpuState::new();
            // Every IVT entry points at the HLT handler (0000:3000).
            for v in 0..256u64 {
                bus.put(v * 4, &[0x00, 0x30, 0x00, 0x00]);
            }
            cpu.idtr.limit = 0x3ff;
            cpu.seg = [Segment::real_mode(0x2000); 6];
            cpu.seg[SegReg::Cs as usize] = Segment::real_mode_code((CODE >> 4) as u16);
            cpu.rip = 0;
            cpu
        }
        Mode::Protected | Mode::Long => {
            let long = matches!(mode, Mode::Long);
            let mut cpu = gdt_idt_cpu(&mut bus, long, |_| HANDLER);
            // SSE on, so the vector helpers run too.
            cpu.cr4 |= frontend_x86::state::cr4::OSFXSR | frontend_x86::state::cr4::OSXMMEXCPT;
            cpu.rip = CODE;
            cpu
        }
    };
    for g in 0..16 {
        let v = rng.next_u64();
        let v = if rng.next_u64().is_multiple_of(4) { v } else { v & 0xf_ffff };
        cpu.gpr[g] = v;
    }
    cpu.set_reg(Gpr::Rsp, Width::W64, 0x9000);
    // Short REP counts and loops.
    cpu.gpr[Gpr::Rcx as usize] &= 0x3f;
    cpu.flags.set(rng.next_u64() & 0x0cd5);
    // Data for the memory operands to read.
    for k in 0..0x400u64 {
        bus.mem.insert(0x20000 + k * 97 % 0x10000, rng.next_u64() as u8);
    }
    let code = program(rng, mode.bits(), cpu.rip, 96);
    let at = cpu.seg[SegReg::Cs as usize].base + cpu.rip;
    bus.put(at, &code);
    (cpu, bus)
}

fn summary(cpu: &CpuState) -> String {
    format!(
        "gpr {:x?}\nrip {:#x} flags {:#x} halted {} shutdown {}\nseg {:x?}\ncr0 {:#x} cr2 {:#x} cr3 {:#x} cr4 {:#x} efer {:#x}\nxmm {:x?} mxcsr {:#x} fpu {:x?}",
        cpu.gpr,
        cpu.rip,
        cpu.flags.get(),
        cpu.halted,
        cpu.shutdown,
        cpu.seg,
        cpu.cr0,
        cpu.cr2,
        cpu.cr3,
        cpu.cr4,
        cpu.efer,
        cpu.xmm,
        cpu.mxcsr,
        cpu.fpu
    )
}

/// Runs a program to HLT, shutdown or the budget with `tier`, which starts empty: its
/// cache is flushed (the next program's code is at the same addresses).
fn run(tier: &mut Interpreter, cpu: &mut CpuState, bus: &mut SparseBus) -> (u64, Exit) {
    tier.flush(cpu);
    let mut total = 0;
    // In several slices, as the machine runs it, so units are re-entered with other state.
    for _ in 0..4 {
        let (n, exit) = tier.run(cpu, bus, BUDGET / 4);
        total += n;
        if exit != Exit::Budget {
            return (total, exit);
        }
    }
    (total, Exit::Budget)
}

fn differential(mode: Mode, seed: u64, programs: usize) {
    let mut rng = Rng(seed);
    let mut interp = Interpreter::new();
    let mut jit = match Interpreter::with_jit(0) {
        Ok(t) => t,
        Err(e) => panic!("the JIT does not start on this host: {e}"),
    };
    // Every third program also runs with the compile thread: units then arrive while the
    // program runs (or after its blocks were dropped by the next program's flush).
    let mut background = match Interpreter::with_background_jit(0) {
        Ok(t) => t,
        Err(e) => panic!("the background JIT does not start on this host: {e}"),
    };
    let mut halted = 0;
    let mut insns = 0;
    for p in 0..programs {
        let (cpu0, bus0) = machine(&mut rng, mode);
        let (mut a, mut abus) = (cpu0.clone(), SparseBus { mem: bus0.mem.clone(), ..SparseBus::new(32) });
        let (mut b, mut bbus) = (cpu0.clone(), SparseBus { mem: bus0.mem.clone(), ..SparseBus::new(32) });
        let ra = run(&mut interp, &mut a, &mut abus);
        let rb = run(&mut jit, &mut b, &mut bbus);
        let code = {
            let at = cpu0.seg[SegReg::Cs as usize].base + cpu0.rip;
            (0..64).map(|k| format!("{:02x}", bus0.mem.get(&(at + k)).copied().unwrap_or(0))).collect::<String>()
        };
        let (sa, sb) = (summary(&a), summary(&b));
        assert_eq!(sa, sb, "{mode:?} program {p} (code {code}): interpreter vs JIT state");
        assert_eq!(ra, rb, "{mode:?} program {p} (code {code}): instruction count / exit");
        assert!(abus.mem == bbus.mem, "{mode:?} program {p} (code {code}): memory differs");
        assert_eq!(abus.io_log, bbus.io_log, "{mode:?} program {p} (code {code}): port accesses differ");
        if p % 3 == 0 {
            let (mut c, mut cbus) = (cpu0.clone(), SparseBus { mem: bus0.mem.clone(), ..SparseBus::new(32) });
            let rc = run(&mut background, &mut c, &mut cbus);
            assert_eq!(sa, summary(&c), "{mode:?} program {p} (code {code}): interpreter vs background JIT state");
            assert_eq!(ra, rc, "{mode:?} program {p} (code {code}): background JIT instruction count / exit");
            assert!(abus.mem == cbus.mem, "{mode:?} program {p} (code {code}): background JIT memory differs");
            assert_eq!(abus.io_log, cbus.io_log, "{mode:?} program {p} (code {code}): background JIT ports differ");
        }
        halted += usize::from(a.halted);
        insns += ra.0;
    }
    if let Some(st) = jit.jit_stats() {
        eprintln!(
            "{mode:?}: {programs} programs, {insns} instructions, {} units compiled in {} ms (median {} us)",
            st.units,
            st.total_compile_ns() / 1_000_000,
            st.median_compile_ns() / 1000
        );
    }
    // The harness must actually run code: most programs end in a HLT (their own or a
    // handler's) after some instructions.
    assert!(halted > programs / 2, "{mode:?}: only {halted} of {programs} programs halted");
    assert!(insns > programs as u64 * 5, "{mode:?}: only {insns} instructions in {programs} programs");
}

#[test]
fn jit_matches_interpreter_in_real_mode() {
    differential(Mode::Real, 0x1234_5678_9abc_def1, 1000);
}

#[test]
fn jit_matches_interpreter_in_protected_mode() {
    differential(Mode::Protected, 0x0fed_cba9_8765_4321, 1000);
}

#[test]
fn jit_matches_interpreter_in_long_mode() {
    differential(Mode::Long, 0x5555_aaaa_3333_cccc, 1000);
}

/// Compiled code checks fixed branch targets against CS.limit at its entry, not at each
/// branch: a unit compiled with a large limit and entered again after the limit shrank must
/// still raise #GP at the branch, exactly where the interpreter does.
#[test]
fn branch_past_a_lowered_cs_limit_faults_in_compiled_code() {
    let mut ends = Vec::new();
    for jit in [false, true] {
        let mut rng = Rng(7);
        let (mut cpu, mut bus) = machine(&mut rng, Mode::Protected);
        // mov ecx, 5; l: dec ecx; jnz l; jmp CODE+0x200 (HLT there, as everywhere around).
        let mut code = vec![0xb9, 5, 0, 0, 0, 0x49, 0x75, 0xfd, 0xe9];
        code.extend_from_slice(&(0x200i32 - 13).to_le_bytes());
        bus.put(CODE, &code);
        let mut tier =
            if jit { Interpreter::with_jit(0).expect("this host has a Cranelift backend") } else { Interpreter::new() };
        let (_, exit) = tier.run(&mut cpu, &mut bus, 100);
        assert_eq!((exit, cpu.rip), (Exit::Halted, CODE + 0x201), "jit {jit}: the first pass reaches the HLT");
        if jit {
            assert!(tier.stats.compiled_instructions > 0, "the loop ran compiled");
        }
        // Again, with the same cache, under a limit that ends before the jump's target.
        cpu.halted = false;
        cpu.rip = CODE;
        cpu.seg[SegReg::Cs as usize].limit = (CODE + 0x100) as u32;
        let (_, exit) = tier.run(&mut cpu, &mut bus, 100);
        assert_eq!(tier.stats.exceptions, 1, "jit {jit}: #GP at the jump");
        ends.push((exit, summary(&cpu)));
    }
    assert_eq!(ends[0], ends[1]);
    assert_eq!(ends[0].0, Exit::Halted);
}
