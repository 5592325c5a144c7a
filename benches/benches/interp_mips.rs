//! The execution tiers' speed in guest MIPS on an integer loop (loads, stores, ALU, a
//! rotate, a conditional branch and LOOP), in real mode: the interpreter, and the JIT (default
//! threshold), with the ratio; then a two-block loop and an SSE2 loop (the vector path). Run: `cargo bench -p cranebox-benches --bench interp_mips`.
//! With `CRANEBOX_BENCH_INTERP_ONCE=1`, one interpreter run only (for counting host
//! instructions: `valgrind --tool=cachegrind --cache-sim=no`, on a machine too busy to time).

use std::time::Instant;

use cranebox_benches::FlatBus;
use frontend_x86::{CpuState, SegReg, Segment};

/// 16-bit code at 1000:0000. Outer LOOP over CX, inner loop of 64 iterations summing and
/// rewriting a table at DS:1000.
const PROGRAM: &[u8] = &[
    0xb9, 0x00, 0x20, // mov cx, 0x2000
    0xbe, 0x00, 0x10, // outer: mov si, 0x1000
    0xbf, 0x40, 0x00, // mov di, 64
    0x31, 0xdb, // xor bx, bx
    0x8b, 0x04, // inner: mov ax, [si]
    0x01, 0xc3, // add bx, ax
    0x81, 0xf3, 0x5a, 0x5a, // xor bx, 0x5a5a
    0xd1, 0xc3, // rol bx, 1
    0x89, 0x1c, // mov [si], bx
    0x83, 0xc6, 0x02, // add si, 2
    0x4f, // dec di
    0x75, 0xee, // jnz inner
    0xe2, 0xe4, // loop outer
    0xf4, // hlt
];

/// A loop whose body is two blocks joined by a JMP (so a unit cannot loop on itself): what
/// leaving and re-entering compiled code costs.
const TWO_BLOCKS: &[u8] = &[
    0xb9, 0x00, 0x00, // mov cx, 0 (65536 iterations)
    0x01, 0xd8, // a: add ax, bx
    0x31, 0xc3, // xor bx, ax
    0xeb, 0x00, // jmp b (the next instruction, but a block end)
    0x43, // b: inc bx
    0xe2, 0xf7, // loop a
    0xf4, // hlt
];

/// SSE2 integer work on XMM registers and memory (aligned and unaligned), 16 x 65536 passes.
const SSE_LOOP: &[u8] = &[
    0xba, 0x10, 0x00, // mov dx, 16
    0xb9, 0x00, 0x00, // outer: mov cx, 0
    0x66, 0x0f, 0x6f, 0x04, // top: movdqa xmm0, [si]
    0x66, 0x0f, 0xfe, 0xc8, // paddd xmm1, xmm0
    0x66, 0x0f, 0xef, 0xd1, // pxor xmm2, xmm1
    0x66, 0x0f, 0x74, 0xda, // pcmpeqb xmm3, xmm2
    0x66, 0x0f, 0xfb, 0x4c, 0x10, // psubq xmm1, [si+0x10]
    0xf3, 0x0f, 0x7f, 0x4c, 0x21, // movdqu [si+0x21], xmm1
    0x66, 0x0f, 0xdb, 0xc3, // pand xmm0, xmm3
    0xe2, 0xe0, // loop top
    0x4a, // dec dx
    0x75, 0xda, // jnz outer
    0xf4, // hlt
];

fn run_once(program: &[u8], jit: bool) -> Result<(u64, f64), String> {
    let mut bus = FlatBus::new(1 << 20).map_err(|e| e.to_string())?;
    bus.ram.write_bytes(0x10000, program);
    let mut cpu = CpuState::new();
    cpu.seg[SegReg::Cs as usize] = Segment::real_mode_code(0x1000);
    cpu.seg[SegReg::Ds as usize] = Segment::real_mode(0x2000);
    cpu.cr4 |= frontend_x86::state::cr4::OSFXSR;
    cpu.rip = 0;
    let t = Instant::now();
    let mut tier = if jit {
        translator::Interpreter::with_jit(translator::interp::DEFAULT_THRESHOLD).map_err(|e| e.to_string())?
    } else {
        translator::Interpreter::new()
    };
    let (n, exit) = tier.run(&mut cpu, &mut bus, u64::MAX);
    let secs = t.elapsed().as_secs_f64();
    if exit != translator::Exit::Halted {
        return Err(format!("the workload did not finish: {exit:?}"));
    }
    Ok((n, secs))
}

fn median_mips(program: &[u8], jit: bool) -> (u64, Vec<f64>) {
    let mut mips = Vec::new();
    let mut count = 0;
    for _ in 0..5 {
        match run_once(program, jit) {
            Ok((n, secs)) => {
                count = n;
                mips.push(n as f64 / secs / 1e6);
            }
            Err(e) => {
                eprintln!("interp_mips: {e}");
                std::process::exit(1);
            }
        }
    }
    mips.sort_by(|a, b| a.total_cmp(b));
    (count, mips)
}

fn main() {
    if std::env::var_os("CRANEBOX_BENCH_INTERP_ONCE").is_some() {
        // One interpreter run, nothing else: for instruction counts under valgrind.
        match run_once(PROGRAM, false) {
            Ok((n, secs)) => println!("interp_mips: interp once: {n} guest instructions in {secs:.3} s"),
            Err(e) => eprintln!("interp_mips: {e}"),
        }
        return;
    }
    let (count, interp) = median_mips(PROGRAM, false);
    let (_, jit) = median_mips(PROGRAM, true);
    for (name, m) in [("interp", &interp), ("jit", &jit)] {
        println!(
            "interp_mips: {name}: {count} guest instructions per run, median {:.1} MIPS (min {:.1}, max {:.1}) over {} runs",
            m[m.len() / 2],
            m[0],
            m[m.len() - 1],
            m.len()
        );
    }
    println!("interp_mips: jit / interp = {:.1}x", jit[jit.len() / 2] / interp[interp.len() / 2]);
    let (n2, two_i) = median_mips(TWO_BLOCKS, false);
    let (_, two_j) = median_mips(TWO_BLOCKS, true);
    println!(
        "interp_mips: two-block loop ({n2} instructions): interp {:.1} MIPS, jit {:.1} MIPS",
        two_i[two_i.len() / 2],
        two_j[two_j.len() / 2]
    );
    let (n3, sse_i) = median_mips(SSE_LOOP, false);
    let (_, sse_j) = median_mips(SSE_LOOP, true);
    println!(
        "interp_mips: SSE2 loop ({n3} instructions): interp {:.1} MIPS, jit {:.1} MIPS",
        sse_i[sse_i.len() / 2],
        sse_j[sse_j.len() / 2]
    );
}
