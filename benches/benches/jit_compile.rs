//! The JIT tier's compile time per unit, for blocks of typical shapes (what bounds how early
//! blocks can be compiled). Run: `cargo bench -p cranebox-benches --bench jit_compile`.

use std::rc::Rc;
use std::time::Instant;

use cranebox_benches::FlatBus;
use frontend_x86::{decode, CpuState, SegReg, Segment};
use translator::jit::Jit;

/// (name, 16-bit real-mode code ending in a block end).
const BLOCKS: &[(&str, &[u8])] = &[
    ("jmp $ (1 insn)", &[0xeb, 0xfe]),
    ("4 ALU + jnz", &[0x01, 0xd8, 0x31, 0xc9, 0x83, 0xc0, 0x01, 0x39, 0xd8, 0x75, 0xf5]),
    ("load, add, store + loop", &[0x8b, 0x04, 0x01, 0xc3, 0x89, 0x1c, 0x83, 0xc6, 0x02, 0xe2, 0xf5]),
    ("push/pop/call-free 8 insns", &[0x50, 0x53, 0x01, 0xd8, 0x5b, 0x58, 0x40, 0x48, 0x43, 0x75, 0xf5]),
];

fn main() {
    let mut jit = match Jit::new() {
        Ok(j) => j,
        Err(e) => {
            eprintln!("jit_compile: {e}");
            std::process::exit(1);
        }
    };
    for (name, code) in BLOCKS {
        let mut bus = match FlatBus::new(1 << 20) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("jit_compile: {e}");
                std::process::exit(1);
            }
        };
        bus.ram.write_bytes(0x10000, code);
        let mut cpu = CpuState::new();
        cpu.seg[SegReg::Cs as usize] = Segment::real_mode_code(0x1000);
        cpu.rip = 0;
        let block = match decode::decode_block(&mut cpu, &mut bus) {
            Ok(b) => Rc::new(b),
            Err(e) => {
                eprintln!("jit_compile: {name}: {e:?}");
                std::process::exit(1);
            }
        };
        let mut times = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            if let Err(e) = jit.compile(std::slice::from_ref(&block), &cpu, true) {
                eprintln!("jit_compile: {name}: {e}");
                std::process::exit(1);
            }
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!(
            "jit_compile: {name}: {} guest instructions, median {:.1} us per unit (min {:.1})",
            block.insns.len(),
            times[times.len() / 2],
            times[0]
        );
    }
    let s = &jit.stats;
    println!(
        "jit_compile: of the time {:.0}% building CLIF, {:.0}% Cranelift, {:.0}% finalizing",
        100.0 * s.build_ns as f64 / s.total_compile_ns().max(1) as f64,
        100.0 * s.codegen_ns as f64 / s.total_compile_ns().max(1) as f64,
        100.0 * s.finalize_ns as f64 / s.total_compile_ns().max(1) as f64
    );
}
