//! Random bytes as code: whatever the guest runs, the emulator must not panic or hang, and
//! every fault must end up as a guest exception (or, when delivery itself fails, a shutdown).
//! The cargo-fuzz target in `fuzz/` does the same with coverage guidance; this is its
//! deterministic, always-on sibling.

use cranebox_tests::{Rng, SparseBus};
use frontend_x86::{CpuState, Gpr, SegReg, Segment, Width};

fn real_mode_cpu(rng: &mut Rng) -> CpuState {
    let mut cpu = CpuState::new();
    for g in [Gpr::Rax, Gpr::Rbx, Gpr::Rcx, Gpr::Rdx, Gpr::Rsp, Gpr::Rbp, Gpr::Rsi, Gpr::Rdi] {
        cpu.set_reg(g, Width::W16, rng.next_u64());
    }
    // Keep REP counts short so a program is many instructions rather than one long loop.
    cpu.set_reg(Gpr::Rcx, Width::W16, rng.next_u64() & 0x3f);
    for s in [SegReg::Ds, SegReg::Es, SegReg::Ss] {
        cpu.seg[s as usize] = Segment::real_mode(rng.next_u64() as u16);
    }
    cpu.seg[SegReg::Cs as usize] = Segment::real_mode_code(0x1000);
    cpu.rip = 0;
    cpu.flags.set(rng.next_u64() & 0x0cd5);
    cpu.idtr.limit = 0x3ff;
    cpu
}

#[test]
fn random_real_mode_code_never_panics_and_faults_become_guest_exceptions() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut exceptions = 0u64;
    let mut halts = 0u64;
    for _ in 0..3000 {
        let mut cpu = real_mode_cpu(&mut rng);
        let mut bus = SparseBus::new(21);
        for k in 0..64u64 {
            bus.mem.insert(0x10000 + k, rng.next_u64() as u8);
        }
        // An IVT whose handlers all point at a HLT, so a delivered exception ends the run.
        for v in 0..256u64 {
            bus.mem.insert(v * 4, 0);
            bus.mem.insert(v * 4 + 1, 0);
            bus.mem.insert(v * 4 + 2, 0x00);
            bus.mem.insert(v * 4 + 3, 0x20);
        }
        bus.mem.insert(0x20000, 0xf4);
        for _ in 0..200 {
            if cpu.halted || cpu.shutdown {
                break;
            }
            if translator::interp::step(&mut cpu, &mut bus).is_some() {
                exceptions += 1;
            }
        }
        halts += u64::from(cpu.halted);
    }
    // The programs are random: most of them fault or reach a HLT; if none did, the harness
    // would not be exercising delivery at all.
    assert!(exceptions > 500, "only {exceptions} exceptions in 3000 random programs");
    assert!(halts > 500, "only {halts} of 3000 random programs reached HLT");
}

/// One instruction through the generic dispatch (`sem::execute`, what other emitters use),
/// delivering exceptions and single-step traps as the interpreter does.
fn step_generic(cpu: &mut CpuState, bus: &mut SparseBus) {
    use frontend_x86::{decode, insn::Insn, interrupt, sem, Concrete};
    cpu.interrupt_shadow = false;
    let single_step = cpu.flags.raw_bits() & frontend_x86::flags::TF != 0;
    match decode::decode_one(cpu, bus) {
        Ok(raw) => {
            let insn = Insn::new(raw, cpu.code_bits());
            cpu.next_rip = decode::next_ip(cpu, &insn);
            let r = sem::execute(&mut Concrete::new(cpu, bus), &insn);
            match r {
                Ok(()) => {
                    cpu.rip = cpu.next_rip;
                    if single_step {
                        let rip = cpu.rip;
                        if let Err(e) = interrupt::deliver(cpu, bus, 1, None, rip, interrupt::EventKind::Exception) {
                            interrupt::raise(cpu, bus, e);
                        }
                    }
                }
                Err(e) => interrupt::raise(cpu, bus, e),
            }
        }
        Err(e) => interrupt::raise(cpu, bus, e),
    }
}

#[test]
fn the_interpreters_function_table_dispatches_like_the_generic_semantics() {
    let mut rng = Rng(0x0dd_ba11);
    for _ in 0..2000 {
        let mut cpu = real_mode_cpu(&mut rng);
        let mut bus = SparseBus::new(21);
        for k in 0..64u64 {
            bus.mem.insert(0x10000 + k, rng.next_u64() as u8);
        }
        for v in 0..256u64 {
            bus.put(v * 4, &[0, 0, 0x00, 0x20]);
        }
        bus.mem.insert(0x20000, 0xf4);
        let (mut cpu2, mut bus2) = (cpu.clone(), SparseBus { mem: bus.mem.clone(), ..SparseBus::new(21) });
        for _ in 0..100 {
            if cpu.halted || cpu.shutdown {
                break;
            }
            let _ = translator::interp::step(&mut cpu, &mut bus);
            step_generic(&mut cpu2, &mut bus2);
            assert_eq!((cpu.gpr, cpu.rip, cpu.flags.get()), (cpu2.gpr, cpu2.rip, cpu2.flags.get()));
        }
        assert_eq!(bus.mem, bus2.mem);
    }
}

/// Found by `cargo fuzz`: a 32-bit-operand LOOPNE in real mode jumped past the 64 KiB CS
/// limit, and decoding at EIP > 0xFFFF in 16-bit code underflowed. The branch must raise
/// #GP(0) at itself, and decoding there must not panic.
#[test]
fn a_branch_past_the_cs_limit_is_gp_and_decoding_above_64k_does_not_panic() {
    let mut cpu = CpuState::new();
    cpu.seg[SegReg::Cs as usize] = Segment::real_mode_code(0x1000);
    cpu.rip = 0;
    cpu.set_reg(Gpr::Rcx, Width::W32, 5);
    let mut bus = SparseBus::new(21);
    bus.put(0x10000, &[0x66, 0xe9, 0x00, 0x00, 0x01, 0x00]); // jmp dword +0x10000
    let e = translator::interp::step(&mut cpu, &mut bus);
    assert_eq!(e, Some(frontend_x86::Exception::gp(0)));
    let mut fresh = CpuState::new();
    fresh.seg[SegReg::Cs as usize] = Segment::real_mode_code(0x1000);
    fresh.seg[SegReg::Cs as usize].limit = 0xf_ffff;
    fresh.rip = 0x1_0005;
    let _ = frontend_x86::decode::decode_block(&mut fresh, &mut bus);
}
