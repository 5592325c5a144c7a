//! Compiled regions that span calls: a direct near call to the region's first block (a
//! function calling itself) stays in the unit, and the RET that follows goes on at a return
//! site in the region when the address it pops is one, else leaves the unit. Each program runs
//! under the interpreter and under the JIT (blocks compiled after 10 interpreted runs, so
//! regions take in the blocks seen so far), in slices as the machine runs them, and must end in
//! the same state, memory and instruction count. Also: flags a loop hands from round to round
//! in the unit's variables reach an exception handler as the interpreter's do.

use cranebox_tests::{gdt_idt_cpu, SparseBus};
use frontend_x86::{CpuState, Gpr};
use iced_x86::code_asm::*;
use translator::{Exit, Interpreter};

const CODE: u64 = 0x10000;
const HANDLER: u64 = 0x3000;
const STACK_TOP: u64 = 0x90000;
/// Where a patched return goes (on the code's page, reached only by that RET).
const ELSEWHERE: u64 = CODE + 0x800;

/// A 32-bit machine with `code` at `CODE` (every exception handler HLTs).
fn machine(code: &[u8]) -> (CpuState, SparseBus) {
    let mut bus = SparseBus::new(32);
    let mut cpu = gdt_idt_cpu(&mut bus, false, |_| HANDLER);
    bus.put(HANDLER, &[0xf4]);
    bus.put(CODE, code);
    cpu.rip = CODE;
    cpu.gpr[Gpr::Rsp as usize] = STACK_TOP;
    (cpu, bus)
}

/// Runs to HLT in slices of `slice` instructions; returns the count, exit and CPU/bus.
fn run(tier: &mut Interpreter, code: &[u8], slice: u64) -> (u64, Exit, CpuState, SparseBus) {
    let (mut cpu, mut bus) = machine(code);
    let mut total = 0;
    // The programs take well under a million instructions.
    while total < 2_000_000 {
        let (n, exit) = tier.run(&mut cpu, &mut bus, slice);
        total += n;
        if exit != Exit::Budget {
            return (total, exit, cpu, bus);
        }
    }
    panic!("the program did not halt in {total} instructions");
}

/// Interpreter vs JIT on `code`; returns the JIT's final state and its tier.
fn both(code: &[u8], slice: u64) -> (CpuState, Interpreter) {
    let mut interp = Interpreter::new();
    let (na, ea, a, abus) = run(&mut interp, code, slice);
    let mut jit = Interpreter::with_jit(10).expect("this host has a Cranelift backend");
    let (nb, eb, b, bbus) = run(&mut jit, code, slice);
    assert_eq!((na, ea), (nb, eb), "instruction count / exit (slice {slice})");
    assert_eq!(a.gpr, b.gpr, "registers (slice {slice})");
    assert_eq!((a.rip, a.flags.get()), (b.rip, b.flags.get()), "RIP and flags (slice {slice})");
    assert!(abus.mem == bbus.mem, "memory differs (slice {slice})");
    assert!(jit.stats.compiled_instructions * 10 > nb * 9, "most of it ran compiled (slice {slice})");
    (b, jit)
}

/// fib(n) by the two recursive calls, result in EAX; also counts the calls in [0x80000].
/// fib(4) runs first, so that when the function's entry turns hot (the JIT's threshold is
/// 10 entries) every block of it has run and its region takes them all in.
fn fib_program(n: u32, patch_return: bool) -> Vec<u8> {
    let asm = || -> Result<Vec<u8>, IcedError> {
        let mut a = CodeAssembler::new(32)?;
        let mut fib = a.create_label();
        let mut base = a.create_label();
        a.mov(ecx, 4)?;
        a.call(fib)?;
        a.mov(ecx, n)?;
        a.call(fib)?;
        a.hlt()?;
        // fib(ecx) -> eax, keeps ebx.
        a.set_label(&mut fib)?;
        a.add(dword_ptr(0x80000), 1)?;
        a.cmp(ecx, 2)?;
        a.jb(base)?;
        a.push(ebx)?;
        a.push(ecx)?;
        a.dec(ecx)?;
        a.call(fib)?;
        a.mov(ebx, eax)?;
        a.pop(ecx)?;
        a.push(ecx)?;
        a.sub(ecx, 2)?;
        a.call(fib)?;
        a.add(eax, ebx)?;
        a.pop(ecx)?;
        a.pop(ebx)?;
        if patch_return {
            // Every call with ECX = 5 returns to `elsewhere` instead: a RET whose target is
            // no return site of the region.
            let mut keep = a.create_label();
            a.cmp(ecx, 5)?;
            a.jne(keep)?;
            a.mov(edx, dword_ptr(esp))?;
            a.mov(dword_ptr(0x80004), edx)?;
            a.mov(dword_ptr(esp), ELSEWHERE as u32)?;
            a.set_label(&mut keep)?;
        }
        a.ret()?;
        a.set_label(&mut base)?;
        a.mov(eax, ecx)?;
        a.ret()?;
        let mut code = a.assemble(CODE)?;
        // Adds 1000 to the result and returns where the call would have.
        let mut b = CodeAssembler::new(32)?;
        b.add(eax, 1000)?;
        b.add(dword_ptr(0x80008), 1)?;
        b.jmp(dword_ptr(0x80004))?;
        assert!(code.len() <= (ELSEWHERE - CODE) as usize);
        code.resize((ELSEWHERE - CODE) as usize, 0xf4);
        code.extend(b.assemble(ELSEWHERE)?);
        Ok(code)
    };
    asm().expect("the test program assembles")
}

fn fib(n: u32) -> u32 {
    if n < 2 {
        n
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

#[test]
fn recursion_stays_in_the_unit_and_matches_the_interpreter() {
    let code = fib_program(16, false);
    for slice in [1_000_000, 997, 61] {
        let (cpu, jit) = both(&code, slice);
        assert_eq!(cpu.gpr[Gpr::Rax as usize], u64::from(fib(16)), "fib(16) (slice {slice})");
        if slice == 1_000_000 {
            // fib(16) makes 3193 calls, each with its RET: had they left the unit, each would
            // come back through a link slot.
            assert!(jit.stats.chained < 200, "{} units entered through links", jit.stats.chained);
        }
    }
}

#[test]
fn a_ret_to_no_return_site_leaves_the_unit_correctly() {
    let code = fib_program(12, true);
    let (cpu, _) = both(&code, 1_000_000);
    // fib(12) with every fib(5) worth 1000 more: fib(12) calls fib(5) fib(8) = 21 times.
    assert_eq!(cpu.gpr[Gpr::Rax as usize], u64::from(fib(12) + 21 * 1000));
    both(&code, 113);
}

/// A loop whose first block faults (#GP: past ES.limit) after many rounds, before it
/// overwrites the flags: the unit hands the loop's flags from one round to the next in
/// variables instead of the CPU state, and the fault must still push the flags of the last
/// round's compare (with `inc_first`, an INC keeps the compare's CF: the carry-in comes from
/// the handed flags).
fn faulting_loop(inc_first: bool) -> Vec<u8> {
    let asm = || -> Result<Vec<u8>, IcedError> {
        let mut a = CodeAssembler::new(32)?;
        let mut head = a.create_label();
        a.xor(esi, esi)?;
        a.xor(edi, edi)?;
        a.set_label(&mut head)?;
        if inc_first {
            a.inc(edi)?;
        }
        a.mov(eax, dword_ptr(esi).es())?;
        a.add(eax, 1)?;
        a.mov(dword_ptr(esi + 0x40000), eax)?;
        a.add(esi, 4)?;
        // CF = 1 and ZF = 0 while the loop goes on: not what XOR left in the CPU state.
        a.cmp(esi, 0x10000)?;
        a.jb(head)?;
        a.hlt()?;
        a.assemble(CODE)
    };
    asm().expect("the test program assembles")
}

#[test]
fn flags_handed_between_blocks_reach_a_fault_handler() {
    for inc_first in [false, true] {
        let code = faulting_loop(inc_first);
        for slice in [1_000_000, 997, 61] {
            let run_with = |tier: &mut Interpreter| {
                let (mut cpu, mut bus) = machine(&code);
                // ES ends at 0x7ff: the 513th round's load faults.
                cpu.seg[frontend_x86::SegReg::Es as usize].limit = 0x7ff;
                let mut total = 0;
                loop {
                    let (n, exit) = tier.run(&mut cpu, &mut bus, slice);
                    total += n;
                    if exit != Exit::Budget || total > 100_000 {
                        return (total, exit, cpu, bus);
                    }
                }
            };
            let (na, ea, a, abus) = run_with(&mut Interpreter::new());
            let mut jit = Interpreter::with_jit(10).expect("this host has a Cranelift backend");
            let (nb, eb, b, bbus) = run_with(&mut jit);
            assert_eq!((na, ea), (nb, eb), "instruction count / exit (slice {slice}, inc {inc_first})");
            assert_eq!(a.rip, HANDLER + 1, "the #GP handler's HLT ran");
            assert_eq!(a.gpr, b.gpr, "registers (slice {slice}, inc {inc_first})");
            // The pushed EFLAGS: CF from the last compare (INC keeps it), ZF clear.
            let pushed = abus.get(a.gpr[Gpr::Rsp as usize] + 12, 4);
            assert_eq!(pushed & 0x41, 1, "pushed EFLAGS {pushed:#x} (interpreter)");
            assert_eq!(
                (a.flags.get(), bbus.get(b.gpr[Gpr::Rsp as usize] + 12, 4)),
                (b.flags.get(), pushed),
                "flags (slice {slice}, inc {inc_first})"
            );
            assert!(abus.mem == bbus.mem, "memory differs (slice {slice}, inc {inc_first})");
            assert!(jit.stats.compiled_instructions * 2 > nb, "most of it ran compiled (slice {slice})");
        }
    }
}
