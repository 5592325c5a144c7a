//! Hardware task switches in 32-bit protected mode: CALL to a TSS, an interrupt through a task
//! gate, and IRET with NT back to the caller. Checked against the SDM (vol. 3, 7.3): the old
//! state saved in its TSS, the back link, NT, busy bits, CR0.TS.

use cranebox_tests::{protected_mode_cpu, SparseBus};
use frontend_x86::state::{attr, cr0};
use frontend_x86::{CpuState, Gpr, SegReg, Segment, Width};

const GDT: u64 = 0x500;
const TSS_A: u64 = 0x1000;
const TSS_B: u64 = 0x1100;
const IDT: u64 = 0x2000;
const CODE_A: u64 = 0x8000;
const CODE_B: u64 = 0x9000;

fn tss_desc(base: u64, busy: bool) -> u64 {
    let typ: u64 = if busy { 0x8b } else { 0x89 };
    0x67 | ((base & 0xff_ffff) << 16) | (typ << 40) | ((base >> 24) << 56)
}

/// Task A runs at CPL 0 with TR = 0x28 (busy). Task B's TSS (0x30) starts at CODE_B with
/// EAX = 0xB0B0 and its own stack. IDT vector 0x40 is a task gate to B.
fn setup(code_a: &[u8]) -> (CpuState, SparseBus) {
    let mut bus = SparseBus::new(32);
    let gdt = [
        0u64,
        0x00cf_9a00_0000_ffff, // 0x08 code
        0x00cf_9200_0000_ffff, // 0x10 data
        0,
        0,
        tss_desc(TSS_A, true),  // 0x28
        tss_desc(TSS_B, false), // 0x30
    ];
    for (k, d) in gdt.iter().enumerate() {
        bus.put(GDT + 8 * k as u64, &d.to_le_bytes());
    }
    // Task B's initial state.
    bus.put(TSS_B + 0x20, &(CODE_B as u32).to_le_bytes()); // EIP
    bus.put(TSS_B + 0x24, &2u32.to_le_bytes()); // EFLAGS
    bus.put(TSS_B + 0x28, &0xb0b0u32.to_le_bytes()); // EAX
    bus.put(TSS_B + 0x38, &0xb000u32.to_le_bytes()); // ESP
    for (k, sel) in [0x10u16, 0x08, 0x10, 0x10, 0x10, 0x10].iter().enumerate() {
        bus.put(TSS_B + 0x48 + 4 * k as u64, &sel.to_le_bytes());
    }
    // IDT entry 0x40: task gate to TSS B, DPL 0.
    let gate: u64 = (0x30 << 16) | (0x85 << 40);
    bus.put(IDT + 0x40 * 8, &gate.to_le_bytes());
    // Task B: ebx = eax; ecx = eflags; iretd; (a second run of B continues after the iretd).
    bus.put(CODE_B, &[0x89, 0xc3, 0x9c, 0x59, 0xcf, 0xf4]);
    bus.put(CODE_A, code_a);

    let mut cpu = protected_mode_cpu(GDT, (gdt.len() * 8 - 1) as u16, IDT);
    cpu.tr = Segment { selector: 0x28, base: TSS_A, limit: 0x67, attr: attr::P | 0xb };
    cpu.rip = CODE_A;
    cpu.set_reg(Gpr::Rsp, Width::W32, 0xa000);
    cpu.set_reg(Gpr::Rax, Width::W32, 0xaaaa);
    cpu.set_reg(Gpr::Rbx, Width::W32, 0xa1);
    (cpu, bus)
}

fn check_round_trip(cpu: &CpuState, bus: &SparseBus, return_to: u64) {
    // Back in task A, after the CALL/INT, with A's registers (reloaded from TSS A).
    assert!(cpu.halted);
    assert_eq!(cpu.tr.selector, 0x28);
    assert_eq!(cpu.rip, return_to + 1, "halted at the HLT after the switch");
    assert_eq!(cpu.reg(Gpr::Rax, Width::W32), 0xaaaa);
    assert_eq!(cpu.reg(Gpr::Rbx, Width::W32), 0xa1);
    assert_eq!(cpu.flags.get() & 0x4000, 0, "NT clear in the calling task");
    assert_ne!(cpu.cr0 & cr0::TS, 0, "a task switch sets CR0.TS");
    // Task B's state was saved in its TSS by the IRET: EBX = its EAX, ECX = its EFLAGS with NT.
    assert_eq!(bus.get(TSS_B + 0x34, 4), 0xb0b0, "B's EBX");
    assert_ne!(bus.get(TSS_B + 0x2c, 4) & 0x4000, 0, "B ran nested (NT set)");
    assert_eq!(bus.get(TSS_B, 2), 0x28, "back link to A");
    assert_eq!(bus.get(TSS_B + 0x20, 4), CODE_B + 5, "B's EIP saved after its IRETD");
    // Busy bits: A busy again, B free.
    assert_eq!(bus.get(GDT + 0x28 + 5, 1) & 2, 2);
    assert_eq!(bus.get(GDT + 0x30 + 5, 1) & 2, 0);
    // A's EIP was saved as the return address when it called B.
    assert_eq!(bus.get(TSS_A + 0x20, 4), return_to);
}

#[test]
fn call_to_a_tss_and_iret_back() {
    // call 0x30:0 ; hlt
    let (mut cpu, mut bus) = setup(&[0x9a, 0, 0, 0, 0, 0x30, 0x00, 0xf4]);
    let (_, exit) = translator::run(&mut cpu, &mut bus, 1000);
    assert_eq!(exit, translator::Exit::Halted, "at {:x}", cpu.rip);
    check_round_trip(&cpu, &bus, CODE_A + 7);
    assert_eq!(cpu.seg[SegReg::Cs as usize].selector, 0x08);
}

#[test]
fn interrupt_through_a_task_gate_and_iret_back() {
    // int 0x40 ; hlt
    let (mut cpu, mut bus) = setup(&[0xcd, 0x40, 0xf4]);
    let (_, exit) = translator::run(&mut cpu, &mut bus, 1000);
    assert_eq!(exit, translator::Exit::Halted, "at {:x}", cpu.rip);
    check_round_trip(&cpu, &bus, CODE_A + 2);
}

#[test]
fn calling_a_busy_task_is_a_general_protection_fault() {
    // call 0x28:0 (task A itself, busy) with no IDT entry for #GP: the fault escalates to a
    // double fault and, with no handler for that either, to shutdown.
    let (mut cpu, mut bus) = setup(&[0x9a, 0, 0, 0, 0, 0x28, 0x00, 0xf4]);
    let (_, exit) = translator::run(&mut cpu, &mut bus, 1000);
    assert_eq!(exit, translator::Exit::Shutdown);
    assert_eq!(cpu.tr.selector, 0x28, "no switch happened");
}
