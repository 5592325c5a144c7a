//! Compiled units link to the units their exits lead to, also on other pages; a link to
//! another page is only followed while the TLB still maps that page to the physical page the
//! linked code came from. A guest that remaps the page it calls into must run the new code.

use cranebox_tests::{protected_mode_cpu, SparseBus};
use frontend_x86::state::cr0;
use frontend_x86::{CpuState, Gpr, Width};
use translator::{Exit, Interpreter};

const PD: u64 = 0x20000;
const PT: u64 = 0x21000;

fn machine() -> (CpuState, SparseBus) {
    let mut bus = SparseBus::new(32);
    // 0x4000: mov ecx, 3; l: call 0x5000; dec ecx; jnz l; hlt
    bus.put(0x4000, &[0xb9, 3, 0, 0, 0, 0xe8, 0xf6, 0x0f, 0, 0, 0x49, 0x75, 0xf8, 0xf4]);
    // The two pages linear 0x5000 is mapped to: mov eax, 1 (or 2); ret
    bus.put(0x5000, &[0xb8, 1, 0, 0, 0, 0xc3]);
    bus.put(0x6000, &[0xb8, 2, 0, 0, 0, 0xc3]);
    bus.put(PD, &(PT | 7).to_le_bytes());
    for page in 0..0x40u64 {
        bus.put(PT + 8 * page / 2, &((page << 12) | 3).to_le_bytes()[..4]);
    }
    let mut cpu = protected_mode_cpu(0x500, 0x17, 0x2000);
    cpu.cr3 = PD;
    cpu.cr0 |= cr0::PG;
    cpu.rip = 0x4000;
    cpu.set_reg(Gpr::Rsp, Width::W32, 0x9000);
    (cpu, bus)
}

fn run(jit: bool) -> (u64, u64) {
    let (mut cpu, mut bus) = machine();
    let mut tier =
        if jit { Interpreter::with_jit(0).expect("this host has a Cranelift backend") } else { Interpreter::new() };
    assert_eq!(tier.run(&mut cpu, &mut bus, 1000).1, Exit::Halted);
    let first = cpu.gpr[Gpr::Rax as usize];
    // The guest points linear 0x5000 at physical 0x6000 and flushes its TLB.
    bus.put(PT + 4 * 5, &0x6003u32.to_le_bytes());
    cpu.tlb.0.flush_all();
    cpu.halted = false;
    cpu.rip = 0x4000;
    assert_eq!(tier.run(&mut cpu, &mut bus, 1000).1, Exit::Halted);
    if jit {
        assert!(tier.stats.chained > 0, "the units were linked");
    }
    (first, cpu.gpr[Gpr::Rax as usize])
}

#[test]
fn a_remapped_page_is_not_reached_through_a_stale_link() {
    assert_eq!(run(false), (1, 2));
    assert_eq!(run(true), (1, 2));
}
