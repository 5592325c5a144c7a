//! Virtual time is exact at every point the guest looks at it: the TSC, the PIT's counter and
//! OUT2 (port 0x61) move with each instruction inside a run slice, not in slice-sized jumps,
//! and a timer armed in the middle of a slice interrupts on time. The same under the
//! interpreter and the JIT (compiling every block), to the nanosecond.

use frontend_x86::state::cr0;
use frontend_x86::{SegReg, Segment};
use iced_x86::code_asm::*;
use machine::{Machine, MachineConfig, Outcome};
use softmmu::PhysBus;

const CODE: u64 = 0x7000;
const HANDLER: u64 = 0x7800;
const GDT: u64 = 0x1000;
const IDT: u64 = 0x2000;
const STACK: u64 = 0x6000;
const OUT: u64 = 0x8000;
const APIC: u64 = 0xfee0_0000;
/// The APIC timer's vector.
const VECTOR: u64 = 0x40;

/// A machine in flat 32-bit protected mode with interrupts off, `code` at [`CODE`], `handler`
/// at [`HANDLER`] behind IDT vector [`VECTOR`], under the JIT (every block compiled) or the
/// interpreter.
fn machine(code: &[u8], handler: &[u8], jit: bool) -> Machine {
    let mut m = Machine::new(MachineConfig::new(16 << 20, bios::demo::hello_rom())).expect("machine");
    if jit {
        m.interp = translator::Interpreter::with_jit(0).expect("the JIT starts on this host");
    }
    let gdt: [u64; 3] = [0, 0x00cf_9a00_0000_ffff, 0x00cf_9200_0000_ffff];
    let gdt: Vec<u8> = gdt.iter().flat_map(|d| d.to_le_bytes()).collect();
    m.bus.mem.load(GDT, &gdt).expect("load");
    // A 32-bit interrupt gate to HANDLER through selector 0x08.
    let gate = (HANDLER & 0xffff) | (0x08 << 16) | (0x8e00 << 32) | ((HANDLER >> 16) << 48);
    m.bus.mem.load(IDT + 8 * VECTOR, &gate.to_le_bytes()).expect("load");
    m.bus.mem.load(CODE, code).expect("load");
    m.bus.mem.load(HANDLER, handler).expect("load");
    let cpu = &mut m.cpu;
    cpu.cr0 |= cr0::PE;
    cpu.gdtr.base = GDT;
    cpu.gdtr.limit = 23;
    cpu.idtr.base = IDT;
    cpu.idtr.limit = 0x7ff;
    let flat = |selector: u16, kind: u16| {
        use frontend_x86::state::attr;
        Segment {
            selector,
            base: 0,
            limit: 0xffff_ffff,
            attr: attr::P | attr::S | attr::RW | attr::ACCESSED | attr::DB | attr::G | kind,
        }
    };
    cpu.seg = [flat(0x10, 0); 6];
    cpu.seg[SegReg::Cs as usize] = flat(0x08, frontend_x86::state::attr::CODE);
    cpu.gpr[frontend_x86::Gpr::Rsp as usize] = STACK;
    cpu.rip = CODE;
    cpu.next_rip = CODE;
    m
}

fn dword(m: &mut Machine, addr: u64) -> u32 {
    let mut b = [0u8; 4];
    m.bus.mem.read_bytes(addr, &mut b);
    u32::from_le_bytes(b)
}

/// Latches PIT channel 2 and reads its count into `hi:lo`.
fn read_ch2(a: &mut CodeAssembler, lo: AsmRegister8, hi: AsmRegister8) -> Result<(), IcedError> {
    a.mov(al, 0x80u32)?;
    a.out(0x43u32, al)?;
    a.in_(al, 0x42u32)?;
    a.mov(lo, al)?;
    a.in_(al, 0x42u32)?;
    a.mov(hi, al)?;
    Ok(())
}

/// Instructions a loop of `dec ecx; jnz` runs `n` times.
const fn loop_len(n: u32) -> u32 {
    2 * n
}

/// The TSC around a counted loop, the PIT's channel 2 counter around another, and Linux's
/// `pit_calibrate_tsc` loop (poll OUT2 on port 0x61 until a 1 ms count runs out, noting the
/// largest TSC step between two polls).
fn probes() -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(32)?;
    let (mut l1, mut l2, mut l3, mut skip) = (a.create_label(), a.create_label(), a.create_label(), a.create_label());
    // 1. rdtsc; mov esi, eax; mov ecx, 1000; the loop; rdtsc: 3 + 2000 instructions apart.
    a.rdtsc()?;
    a.mov(esi, eax)?;
    a.mov(ecx, 1000u32)?;
    a.set_label(&mut l1)?;
    a.dec(ecx)?;
    a.jnz(l1)?;
    a.rdtsc()?;
    a.sub(eax, esi)?;
    a.mov(dword_ptr(OUT), eax)?;
    // 2. Channel 2 gated on, mode 0, count 0xFFFF; its count before and after 10000
    // instructions.
    a.in_(al, 0x61u32)?;
    a.and(al, 0xfcu32)?;
    a.or(al, 1u32)?;
    a.out(0x61u32, al)?;
    a.mov(al, 0xb0u32)?;
    a.out(0x43u32, al)?;
    a.mov(al, 0xffu32)?;
    a.out(0x42u32, al)?;
    a.out(0x42u32, al)?;
    read_ch2(&mut a, bl, bh)?;
    a.mov(ecx, 5000u32)?;
    a.set_label(&mut l2)?;
    a.dec(ecx)?;
    a.jnz(l2)?;
    read_ch2(&mut a, dl, dh)?;
    a.movzx(ebx, bx)?;
    a.movzx(edx, dx)?;
    a.sub(ebx, edx)?;
    a.mov(dword_ptr(OUT + 4), ebx)?;
    // 3. Channel 2 for 1 ms (1193 ticks), polled through port 0x61 bit 5 as Linux does.
    a.mov(al, 0xb0u32)?;
    a.out(0x43u32, al)?;
    a.mov(al, 1193u32 & 0xff)?;
    a.out(0x42u32, al)?;
    a.mov(al, 1193u32 >> 8)?;
    a.out(0x42u32, al)?;
    a.rdtsc()?;
    a.mov(esi, eax)?;
    a.mov(edi, eax)?;
    a.xor(ebp, ebp)?;
    a.xor(ecx, ecx)?;
    a.set_label(&mut l3)?;
    a.inc(ecx)?;
    a.rdtsc()?;
    a.mov(edx, eax)?;
    a.sub(edx, edi)?;
    a.mov(edi, eax)?;
    a.cmp(edx, ebp)?;
    a.jbe(skip)?;
    a.mov(ebp, edx)?;
    a.set_label(&mut skip)?;
    a.in_(al, 0x61u32)?;
    a.test(al, 0x20u32)?;
    a.jz(l3)?;
    a.sub(edi, esi)?;
    a.mov(dword_ptr(OUT + 8), edi)?;
    a.mov(dword_ptr(OUT + 12), ebp)?;
    a.mov(dword_ptr(OUT + 16), ecx)?;
    a.hlt()?;
    a.assemble(CODE)
}

fn run_probes(jit: bool) -> [u32; 5] {
    let code = probes().expect("assembles");
    let mut m = machine(&code, &[0xcf], jit);
    assert_eq!(m.run(10_000_000), Outcome::HaltedForever);
    if jit {
        assert!(m.interp.stats.compiled_instructions > 0, "the probes ran compiled");
    }
    std::array::from_fn(|k| dword(&mut m, OUT + 4 * k as u64))
}

#[test]
fn tsc_and_pit_move_with_every_instruction() {
    let interp = run_probes(false);
    let [tsc, pit, total, step, polls] = interp;
    assert_eq!(tsc, 3 + loop_len(1000), "TSC ticks around the loop");
    // 10015 instructions at 1.193182 MHz.
    assert!((11..=12).contains(&pit), "the PIT counted {pit} ticks in 10 us");
    // Linux rejects a calibration run whose TSC moved more than 10000 between two polls.
    assert!(step < 100, "the TSC jumped by {step} between two polls of port 0x61");
    assert!((999_000..=1_001_000).contains(&total), "1193 PIT ticks took {total} TSC ticks");
    assert!(polls > 10_000, "{polls} polls");
    // The same instruction sees the same time in both tiers.
    assert_eq!(run_probes(true), interp, "interpreter vs JIT");
}

/// Arms the APIC timer (one-shot, divide by 1, 5000 ticks) and spins without a helper in the
/// loop until its interrupt comes: TSC at arming and in the handler, and the spins.
fn apic_program() -> Result<(Vec<u8>, Vec<u8>), IcedError> {
    let mut a = CodeAssembler::new(32)?;
    let mut spin = a.create_label();
    a.mov(dword_ptr(APIC + 0xf0), 0x1ffu32)?; // SVR: software enable
    a.mov(dword_ptr(APIC + 0x3e0), 0xbu32)?; // divide by 1
    a.mov(dword_ptr(APIC + 0x320), VECTOR as u32)?; // LVT timer: one-shot
    a.sti()?;
    a.xor(ecx, ecx)?;
    a.rdtsc()?;
    a.mov(dword_ptr(OUT), eax)?;
    a.mov(dword_ptr(APIC + 0x380), 5000u32)?; // initial count
    a.set_label(&mut spin)?;
    a.inc(ecx)?;
    a.cmp(dword_ptr(OUT + 8), 0u32)?;
    a.je(spin)?;
    a.mov(dword_ptr(OUT + 12), ecx)?;
    a.cli()?;
    a.hlt()?;
    let code = a.assemble(CODE)?;
    let mut h = CodeAssembler::new(32)?;
    h.rdtsc()?;
    h.mov(dword_ptr(OUT + 4), eax)?;
    h.mov(dword_ptr(OUT + 8), 1u32)?;
    h.mov(dword_ptr(APIC + 0xb0), 0u32)?; // EOI
    h.iretd()?;
    Ok((code, h.assemble(HANDLER)?))
}

fn run_apic(jit: bool) -> [u32; 4] {
    let (code, handler) = apic_program().expect("assembles");
    let mut m = machine(&code, &handler, jit);
    assert_eq!(m.run(10_000_000), Outcome::HaltedForever);
    std::array::from_fn(|k| dword(&mut m, OUT + 4 * k as u64))
}

#[test]
fn a_timer_armed_mid_slice_interrupts_on_time() {
    let interp = run_apic(false);
    let [armed, fired, _, spins] = interp;
    let late = fired.wrapping_sub(armed);
    // 5000 ns after the store, give or take the rdtsc..store gap and one spin.
    assert!((5000..5010).contains(&late), "the interrupt came {late} ns after arming");
    assert!((1600..1700).contains(&spins), "{spins} spins");
    assert_eq!(run_apic(true), interp, "interpreter vs JIT");
}

/// Sends itself an IPI through the APIC's ICR (a store, which compiled code does not follow
/// with a look for interrupts) on the third pass of a loop whose first two passes store to
/// RAM instead, so the exit after the store is linked by then: TSC before the store and in
/// the handler.
fn ipi_program() -> Result<(Vec<u8>, Vec<u8>), IcedError> {
    let mut a = CodeAssembler::new(32)?;
    let (mut again, mut next, mut last) = (a.create_label(), a.create_label(), a.create_label());
    a.mov(dword_ptr(APIC + 0xf0), 0x1ffu32)?; // SVR: software enable
    a.sti()?;
    a.xor(esi, esi)?;
    a.mov(edi, (APIC + 0x300) as u32)?; // ICR
    a.set_label(&mut again)?;
    a.inc(esi)?;
    a.mov(ebx, (OUT + 12) as u32)?;
    a.cmp(esi, 3u32)?;
    a.cmove(ebx, edi)?;
    a.rdtsc()?;
    a.mov(dword_ptr(OUT), eax)?;
    a.mov(dword_ptr(ebx), 0x4_0000 | VECTOR as u32)?; // ICR: fixed, to self
    a.add(ecx, 1u32)?;
    a.jmp(next)?;
    a.set_label(&mut next)?;
    a.add(edx, 1u32)?;
    a.jmp(last)?;
    a.set_label(&mut last)?;
    a.cmp(dword_ptr(OUT + 8), 1u32)?;
    a.jb(again)?;
    a.cli()?;
    a.hlt()?;
    let code = a.assemble(CODE)?;
    let mut h = CodeAssembler::new(32)?;
    h.push(eax)?;
    h.push(edx)?;
    h.rdtsc()?;
    h.mov(dword_ptr(OUT + 4), eax)?;
    h.inc(dword_ptr(OUT + 8))?;
    h.mov(dword_ptr(APIC + 0xb0), 0u32)?; // EOI
    h.pop(edx)?;
    h.pop(eax)?;
    h.iretd()?;
    Ok((code, h.assemble(HANDLER)?))
}

fn run_ipi(jit: bool) -> [u32; 3] {
    let (code, handler) = ipi_program().expect("assembles");
    let mut m = machine(&code, &handler, jit);
    assert_eq!(m.run(10_000_000), Outcome::HaltedForever);
    std::array::from_fn(|k| dword(&mut m, OUT + 4 * k as u64))
}

#[test]
fn a_self_ipi_from_a_store_is_taken_after_its_block() {
    let interp = run_ipi(false);
    let [sent, taken, count] = interp;
    assert_eq!(count, 1);
    // rdtsc, the store to OUT, the ICR store, add, jmp; then the handler's push, push, rdtsc.
    assert_eq!(taken.wrapping_sub(sent), 7, "the IPI was taken late");
    assert_eq!(run_ipi(true), interp, "interpreter vs JIT");
}

/// STI's interrupt shadow over a compiled block that chains to the next unit or goes on into
/// the next block of its region: a self-IPI sent with interrupts off on the sixth pass of a
/// loop (the earlier passes compiled and linked the blocks after STI) is taken after the block
/// that follows STI, as the interpreter takes it, not wherever compiled code happens to stop.
fn sti_program() -> Result<(Vec<u8>, Vec<u8>), IcedError> {
    let mut a = CodeAssembler::new(32)?;
    let (mut again, mut skip, mut a1, mut a2) =
        (a.create_label(), a.create_label(), a.create_label(), a.create_label());
    a.mov(dword_ptr(APIC + 0xf0), 0x1ffu32)?; // SVR: software enable
    a.xor(esi, esi)?;
    a.xor(edx, edx)?;
    a.set_label(&mut again)?;
    a.cli()?;
    a.inc(esi)?;
    a.cmp(esi, 6u32)?;
    a.jne(skip)?;
    a.mov(dword_ptr(APIC + 0x300), 0x4_0000 | VECTOR as u32)?; // ICR: fixed, to self
    a.set_label(&mut skip)?;
    a.sti()?;
    a.nop()?;
    a.jmp(a1)?;
    a.set_label(&mut a1)?;
    a.inc(edx)?;
    a.jmp(a2)?;
    a.set_label(&mut a2)?;
    a.inc(edx)?;
    a.cmp(esi, 7u32)?;
    a.jb(again)?;
    a.cli()?;
    a.hlt()?;
    let code = a.assemble(CODE)?;
    let mut h = CodeAssembler::new(32)?;
    h.mov(dword_ptr(OUT), esi)?;
    h.mov(dword_ptr(OUT + 4), edx)?;
    h.mov(dword_ptr(APIC + 0xb0), 0u32)?; // EOI
    h.iretd()?;
    Ok((code, h.assemble(HANDLER)?))
}

#[test]
fn an_interrupt_waiting_for_sti_comes_after_the_next_block_in_both_tiers() {
    let run = |threshold: Option<u32>| {
        let (code, handler) = sti_program().expect("assembles");
        let mut m = machine(&code, &handler, false);
        if let Some(t) = threshold {
            // 0: every block compiled alone at once; 2: compiled with the blocks after it.
            m.interp = translator::Interpreter::with_jit(t).expect("the JIT starts on this host");
        }
        assert_eq!(m.run(10_000_000), Outcome::HaltedForever);
        [dword(&mut m, OUT), dword(&mut m, OUT + 4)]
    };
    // Taken on the sixth pass, before the first INC EDX of that pass.
    assert_eq!(run(None), [6, 10], "interpreter");
    assert_eq!(run(Some(0)), [6, 10], "JIT, units chained");
    assert_eq!(run(Some(2)), [6, 10], "JIT, regions");
}
