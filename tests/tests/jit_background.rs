//! The JIT with its compile thread: hot blocks go on running interpreted while Cranelift
//! works, and their units are installed when they come back, unless the block was dropped
//! (its code rewritten) meanwhile. Either way the guest sees exactly what the interpreter
//! gives it.

use cranebox_tests::SparseBus;
use frontend_x86::{CpuState, Gpr, SegReg, Segment, Width};
use translator::{Exit, Interpreter};

#[rustfmt::skip]
const LOOP: [u8; 14] = [
    0xb9, 0xe8, 0x03,       // mov cx, 1000
    0x31, 0xdb,             // xor bx, bx
    0x83, 0xc3, 0x03,       // l: add bx, 3   (the immediate is at 7)
    0xd1, 0xc3,             // rol bx, 1
    0x49,                   // dec cx
    0x75, 0xf8,             // jnz l
    0xf4,                   // hlt
];

fn machine() -> (CpuState, SparseBus) {
    let mut bus = SparseBus::new(20);
    bus.put(0x1000, &LOOP);
    let mut cpu = CpuState::new();
    cpu.seg[SegReg::Cs as usize] = Segment::real_mode_code(0x100);
    cpu.seg[SegReg::Ds as usize] = Segment::real_mode(0x100);
    cpu.rip = 0;
    (cpu, bus)
}

/// Runs the loop for `first` instructions, lets `between` act on the machine and the tier
/// (with the compile thread's queue drained after it), then runs to the HLT. Returns BX, the
/// instruction count and the tier's statistics.
fn run(
    mut tier: Interpreter,
    first: u64,
    between: impl Fn(&mut Interpreter, &mut CpuState, &mut SparseBus),
) -> (u64, u64, translator::Stats) {
    let (mut cpu, mut bus) = machine();
    let (n1, exit) = tier.run(&mut cpu, &mut bus, first);
    assert_eq!(exit, Exit::Budget);
    between(&mut tier, &mut cpu, &mut bus);
    tier.finish_compiles();
    let (n2, exit) = tier.run(&mut cpu, &mut bus, 100_000);
    assert_eq!(exit, Exit::Halted);
    (cpu.reg(Gpr::Rbx, Width::W16), n1 + n2, tier.stats)
}

#[test]
fn units_from_the_compile_thread_run_and_match_the_interpreter() {
    let (bx, n, _) = run(Interpreter::new(), 50, |_, _, _| {});
    let bg = Interpreter::with_background_jit(3).expect("the JIT starts on this host");
    let (bx_bg, n_bg, stats) = run(bg, 50, |_, _, _| {});
    assert_eq!((bx_bg, n_bg), (bx, n));
    // BX = rol(BX + 3, 1) a thousand times, worked out by hand (Python).
    assert_eq!(bx, 74);
    // After the queue was drained, the loop ran compiled.
    assert!(stats.compiled_instructions > 3000, "{stats:?}");
}

#[test]
fn a_unit_for_a_block_rewritten_while_it_compiles_is_not_run() {
    // The loop's body turns hot and goes to the compile thread; then a device rewrites its
    // immediate (add bx, 3 -> add bx, 5) before the unit is installed.
    let rewrite = |tier: &mut Interpreter, cpu: &mut CpuState, bus: &mut SparseBus| {
        bus.put(0x1007, &[5]);
        tier.invalidate_page(cpu, 0x1007 >> 12);
    };
    let (bx, n, _) = run(Interpreter::new(), 50, rewrite);
    let bg = Interpreter::with_background_jit(3).expect("the JIT starts on this host");
    let (bx_bg, n_bg, stats) = run(bg, 50, rewrite);
    assert_eq!((bx_bg, n_bg), (bx, n));
    assert!(stats.blocks_invalidated > 0);
    // Twelve rounds of add 3 (2 + 12 x 4 = 50 instructions), then add 5.
    assert_eq!(bx, 17910);
}
