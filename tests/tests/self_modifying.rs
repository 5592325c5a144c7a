//! Self-modifying code under the cached interpreter: a store into the block being executed
//! changes the instructions after it, and a loop that rewrites its own immediate sees every
//! new value. The uncached single-step path is the reference.

use cranebox_tests::SparseBus;
use frontend_x86::{CpuState, Gpr, SegReg, Segment, Width};

fn machine(code: &[u8]) -> (CpuState, SparseBus) {
    let mut bus = SparseBus::new(20);
    for (k, b) in code.iter().enumerate() {
        bus.mem.insert(0x1000 + k as u64, *b);
    }
    let mut cpu = CpuState::new();
    cpu.seg[SegReg::Cs as usize] = Segment::real_mode_code(0x100);
    cpu.seg[SegReg::Ds as usize] = Segment::real_mode(0x100);
    cpu.rip = 0;
    (cpu, bus)
}

/// Runs to HLT with the block cache, and again one uncached instruction at a time; both must
/// end the same way. Returns the cached run's CPU and the interpreter's stats.
fn run_both(code: &[u8]) -> (CpuState, translator::Stats) {
    let (mut cpu, mut bus) = machine(code);
    let mut interp = translator::Interpreter::new();
    let (_, exit) = interp.run(&mut cpu, &mut bus, 10_000);
    assert_eq!(exit, translator::Exit::Halted);
    let (mut reference, mut rbus) = machine(code);
    for _ in 0..10_000 {
        if reference.halted {
            break;
        }
        assert!(translator::interp::step(&mut reference, &mut rbus).is_none());
    }
    assert_eq!(cpu.gpr, reference.gpr, "cached and uncached runs differ");
    assert_eq!(bus.mem, rbus.mem);
    // The JIT tier, compiling every block before it runs, ends the same way.
    let (mut jcpu, mut jbus) = machine(code);
    let mut jit = translator::Interpreter::with_jit(0).expect("the JIT starts on this host");
    let (_, exit) = jit.run(&mut jcpu, &mut jbus, 10_000);
    assert_eq!(exit, translator::Exit::Halted);
    assert_eq!(jcpu.gpr, cpu.gpr, "interpreter and JIT differ");
    assert_eq!(jbus.mem, bus.mem);
    assert!(jit.stats.compiled_instructions > 0);
    // And with the compile thread, whose units arrive while the code runs and changes.
    let (mut bcpu, mut bbus) = machine(code);
    let mut bg = translator::Interpreter::with_background_jit(0).expect("the JIT starts on this host");
    let (_, exit) = bg.run(&mut bcpu, &mut bbus, 10_000);
    assert_eq!(exit, translator::Exit::Halted);
    assert_eq!(bcpu.gpr, cpu.gpr, "interpreter and background JIT differ");
    assert_eq!(bbus.mem, bus.mem);
    (cpu, interp.stats)
}

#[test]
fn a_store_into_the_running_block_changes_the_next_instruction() {
    #[rustfmt::skip]
    let code = [
        0xc6, 0x06, 0x06, 0x00, 0x42, // mov byte [6], 0x42   (the immediate of the next insn)
        0xb0, 0x00,                   // mov al, 0  -> mov al, 0x42
        0xf4,                         // hlt
    ];
    let (cpu, stats) = run_both(&code);
    assert_eq!(cpu.reg(Gpr::Rax, Width::W8), 0x42);
    assert!(stats.blocks_invalidated >= 1);
}

#[test]
fn a_loop_that_rewrites_its_own_immediate_sees_each_new_value() {
    #[rustfmt::skip]
    let code = [
        0xb9, 0x0a, 0x00,       // mov cx, 10
        0x31, 0xdb,             // xor bx, bx
        0x83, 0xc3, 0x01,       // loop: add bx, 1   (immediate at 7)
        0xfe, 0x06, 0x07, 0x00, // inc byte [7]
        0x49,                   // dec cx
        0x75, 0xf6,             // jnz loop
        0xf4,                   // hlt
    ];
    let (cpu, stats) = run_both(&code);
    assert_eq!(cpu.reg(Gpr::Rbx, Width::W16), (1..=10).sum::<u64>());
    assert!(stats.blocks_decoded >= 10, "each rewrite must force a fresh decode");
}

#[test]
fn unmodified_loops_are_decoded_once() {
    #[rustfmt::skip]
    let code = [
        0xb9, 0xe8, 0x03, // mov cx, 1000
        0x43,             // l: inc bx
        0xe2, 0xfd,       // loop l
        0xf4,             // hlt
    ];
    let (cpu, stats) = run_both(&code);
    assert_eq!(cpu.reg(Gpr::Rbx, Width::W16), 1000);
    assert!(stats.blocks_decoded <= 4, "{} blocks decoded", stats.blocks_decoded);
}
