//! A 32-bit guest that turns on paging, takes page faults and maps the missing pages in its
//! #PF handler (demand paging), and rewrites its own code in a loop through a second linear
//! mapping of the code's physical page. The cached interpreter must end exactly where the
//! uncached single-step path does; both must match what the program computes.

use cranebox_tests::{long_mode_cpu, protected_mode_cpu, SparseBus};
use frontend_x86::state::cr0;
use frontend_x86::{CpuState, Gpr, Width};
use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;

const GDT: u64 = 0x500;
const IDT: u64 = 0x2000;
const PD: u64 = 0x20000;
const PT_LOW: u64 = 0x21000;
const PT_HIGH: u64 = 0x22000;
const CODE: u64 = 0x9000;
const RESULTS: u64 = 0x3000;
const FAULTS: u64 = 0x3100;
/// Linear window for demand-paged data, and the alias of the code page inside it.
const DATA: u64 = 0x4000_0000;
const CODE_ALIAS: u64 = 0x4000_1000;

fn program(patch_alias: u32) -> Result<(Vec<u8>, u64, u64), IcedError> {
    let mut a = CodeAssembler::new(32)?;
    let mut lp = a.create_label();
    let mut patch = a.create_label();
    let mut pf = a.create_label();
    let mut not_code = a.create_label();
    let mut mapped = a.create_label();
    a.mov(eax, PD as u32)?;
    a.mov(cr3, eax)?;
    a.mov(eax, cr0)?;
    a.or(eax, 0x8000_0000u32 as i32)?;
    a.mov(cr0, eax)?;
    // Demand paging: both stores fault once, the handler maps the page, the store retries.
    a.mov(dword_ptr(DATA as u32), 0x1111_1111u32)?;
    a.mov(dword_ptr(DATA as u32 + 0x3004), 0x2222_2222u32)?;
    a.mov(eax, dword_ptr(DATA as u32))?;
    a.mov(dword_ptr(RESULTS as u32), eax)?;
    // Self-modifying loop: write the next immediate of `add ebx, imm32` through the alias.
    a.xor(ebx, ebx)?;
    a.mov(ecx, 1u32)?;
    a.set_label(&mut lp)?;
    a.mov(dword_ptr(patch_alias), ecx)?;
    a.set_label(&mut patch)?;
    a.add(ebx, 0x7fff_ffff)?;
    a.inc(ecx)?;
    a.cmp(ecx, 6)?;
    a.jne(lp)?;
    a.mov(dword_ptr(RESULTS as u32 + 4), ebx)?;
    a.hlt()?;

    // #PF handler: map the faulting page (the code alias onto the code's page, anything else
    // onto fresh memory at 0x30000 + index * 4 KiB), count, return to retry.
    a.set_label(&mut pf)?;
    a.push(eax)?;
    a.push(ecx)?;
    a.push(edx)?;
    a.mov(eax, cr2)?;
    a.mov(ecx, eax)?;
    a.shr(ecx, 12)?;
    a.and(ecx, 0x3ff)?;
    a.mov(edx, eax)?;
    a.shr(edx, 12)?;
    a.cmp(edx, (CODE_ALIAS >> 12) as u32)?;
    a.jne(not_code)?;
    a.mov(edx, (CODE | 3) as u32)?;
    a.jmp(mapped)?;
    a.set_label(&mut not_code)?;
    a.mov(edx, ecx)?;
    a.shl(edx, 12)?;
    a.add(edx, 0x30003)?;
    a.set_label(&mut mapped)?;
    a.mov(dword_ptr(ecx * 4 + PT_HIGH as u32), edx)?;
    a.inc(dword_ptr(FAULTS as u32))?;
    a.pop(edx)?;
    a.pop(ecx)?;
    a.pop(eax)?;
    a.add(esp, 4)?;
    a.iretd()?;
    let r = a.assemble_options(CODE, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    Ok((r.inner.code_buffer.clone(), r.label_ip(&patch)?, r.label_ip(&pf)?))
}

fn machine() -> Result<(CpuState, SparseBus), IcedError> {
    // Two passes: the store's address depends on where `patch` lands (a disp32 either way).
    let (_, patch, _) = program(0x7fff_ffff)?;
    let alias = (CODE_ALIAS + (patch - CODE) + 2) as u32;
    let (code, patch2, pf) = program(alias)?;
    assert_eq!(patch, patch2);
    let mut bus = SparseBus::new(32);
    bus.put(CODE, &code);
    bus.put(GDT + 8, &0x00cf_9a00_0000_ffffu64.to_le_bytes());
    bus.put(GDT + 16, &0x00cf_9200_0000_ffffu64.to_le_bytes());
    let gate = (pf & 0xffff) | (0x08 << 16) | (0x8e << 40) | ((pf >> 16) << 48);
    bus.put(IDT + 14 * 8, &gate.to_le_bytes());
    // The first MiB identity-mapped; the window at 1 GiB has a page table with nothing in it.
    bus.put(PD, &((PT_LOW | 3) as u32).to_le_bytes());
    bus.put(PD + 4 * (DATA >> 22), &((PT_HIGH | 3) as u32).to_le_bytes());
    for k in 0..256u64 {
        bus.put(PT_LOW + 4 * k, &((k << 12 | 3) as u32).to_le_bytes());
    }
    let mut cpu = protected_mode_cpu(GDT, 23, IDT);
    cpu.rip = CODE;
    cpu.set_reg(Gpr::Rsp, Width::W32, 0x8000);
    Ok((cpu, bus))
}

#[test]
fn demand_paging_and_self_modifying_code_through_an_alias() -> Result<(), IcedError> {
    let (mut cpu, mut bus) = machine()?;
    let mut interp = translator::Interpreter::new();
    let (_, exit) = interp.run(&mut cpu, &mut bus, 100_000);
    assert_eq!(exit, translator::Exit::Halted, "at {:x}", cpu.rip);

    assert_eq!(bus.get(RESULTS, 4), 0x1111_1111, "the faulting store was retried");
    assert_eq!(bus.get(0x30000, 4), 0x1111_1111, "on the page the handler mapped");
    assert_eq!(bus.get(0x33004, 4), 0x2222_2222);
    assert_eq!(bus.get(RESULTS + 4, 4), 15, "each iteration ran the immediate it had just written");
    assert_eq!(bus.get(FAULTS, 4), 3, "one fault per unmapped page");
    // The walk set Accessed and Dirty on the PTE of the written page.
    assert_eq!(bus.get(PT_HIGH, 4), 0x30000 | 3 | 0x20 | 0x40);
    assert!(interp.stats.blocks_invalidated >= 5, "{:?}", interp.stats);

    // The uncached path, one instruction at a time, ends in the same state.
    let (mut reference, mut rbus) = machine()?;
    for _ in 0..100_000 {
        if reference.halted {
            break;
        }
        let _ = translator::interp::step(&mut reference, &mut rbus);
    }
    assert!(reference.halted);
    assert_eq!(cpu.gpr, reference.gpr);
    assert_eq!(cpu.cr2, reference.cr2);
    assert_eq!(bus.mem, rbus.mem);

    // And the JIT tier, compiling every block before it runs: the same end state, with the
    // faults taken from compiled code and the rewritten immediates seen.
    let (mut jcpu, mut jbus) = machine()?;
    let mut jit = translator::Interpreter::with_jit(0).expect("the JIT starts on this host");
    let (_, exit) = jit.run(&mut jcpu, &mut jbus, 100_000);
    assert_eq!(exit, translator::Exit::Halted, "JIT at {:x}", jcpu.rip);
    assert_eq!(jcpu.gpr, cpu.gpr);
    assert_eq!(jcpu.cr2, cpu.cr2);
    assert_eq!(jbus.mem, bus.mem);
    assert!(jit.stats.compiled_instructions > 0, "{:?}", jit.stats);
    Ok(())
}

/// A write that straddles into a non-present page faults on the second page with nothing
/// written to the first (SDM vol. 3, 4.10: both pages are checked first).
#[test]
fn a_page_crossing_write_that_faults_on_the_second_page_leaves_the_first_unchanged() {
    let mut bus = SparseBus::new(32);
    bus.put(PD, &((PT_LOW | 3) as u32).to_le_bytes());
    bus.put(PT_LOW + 4, &(0x1000u32 | 3).to_le_bytes()); // page 1 present, page 2 not
    bus.put(0x1ffe, &[0x11, 0x22]);
    let mut cpu = CpuState::new();
    cpu.cr0 |= cr0::PE | cr0::PG;
    cpu.cr3 = PD;
    let e = frontend_x86::mem::write_linear(&mut cpu, &mut bus, 0x1ffe, Width::W32, 0xaabb_ccdd);
    assert_eq!(e, Err(frontend_x86::Exception::with_code(14, 2)));
    assert_eq!(cpu.cr2, 0x2000);
    assert_eq!(bus.get(0x1ffe, 2), 0x2211, "no byte of the first page written");
}

/// INVPCID type 0 drops exactly one stale translation; until then the TLB keeps using it, as
/// hardware may.
#[test]
fn invpcid_drops_a_stale_translation() -> Result<(), IcedError> {
    const X: u64 = 0x4000_0000;
    let mut bus = SparseBus::new(32);
    // 4-level: first 2 MiB identity (large page), X mapped by a 4 KiB PTE at 0x23000.
    bus.put(0x20000, &0x21003u64.to_le_bytes());
    bus.put(0x21000, &0x22003u64.to_le_bytes());
    bus.put(0x21000 + 8, &0x24003u64.to_le_bytes());
    bus.put(0x22000, &0x83u64.to_le_bytes());
    bus.put(0x24000, &0x23003u64.to_le_bytes());
    bus.put(0x23000, &0x5_0003u64.to_le_bytes());
    bus.put(0x5_0000, &0xaaaa_aaaau32.to_le_bytes());
    bus.put(0x6_0000, &0xbbbb_bbbbu32.to_le_bytes());
    let mut a = CodeAssembler::new(64)?;
    a.mov(eax, dword_ptr(X))?;
    a.mov(qword_ptr(0x23000u64), 0x6_0003)?;
    a.mov(ebx, dword_ptr(X))?;
    a.mov(qword_ptr(0x3000u64), 0)?;
    a.mov(rcx, X)?;
    a.mov(qword_ptr(0x3008u64), rcx)?;
    a.xor(ecx, ecx)?;
    a.invpcid(rcx, xmmword_ptr(0x3000u64))?;
    a.mov(edx, dword_ptr(X))?;
    a.hlt()?;
    bus.put(0x8000, &a.assemble(0x8000)?);
    let mut cpu = long_mode_cpu(0x20000);
    cpu.cr4 |= frontend_x86::state::cr4::PCIDE;
    cpu.rip = 0x8000;
    let (_, exit) = translator::run(&mut cpu, &mut bus, 100);
    assert_eq!(exit, translator::Exit::Halted, "at {:x}", cpu.rip);
    assert_eq!(cpu.reg(Gpr::Rax, Width::W32), 0xaaaa_aaaa);
    assert_eq!(cpu.reg(Gpr::Rbx, Width::W32), 0xaaaa_aaaa, "the stale translation is still cached");
    assert_eq!(cpu.reg(Gpr::Rdx, Width::W32), 0xbbbb_bbbb, "INVPCID dropped it");
    Ok(())
}
