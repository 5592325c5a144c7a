//! External interrupts and NMI through the machine-facing API (`CpuBus::intr/inta/take_nmi`):
//! taken only when IF is set and after the STI shadow, waking HLT, with NMIs blocked until
//! IRET.

use cranebox_tests::SparseBus;
use frontend_x86::{CpuState, Gpr, SegReg, Segment, Width};

/// Real mode at 0100:0000 with an IVT whose vectors 0x02 (NMI) and 0x20 point at handlers
/// that count into BX and CX.
fn machine(code: &[u8]) -> (CpuState, SparseBus) {
    let mut bus = SparseBus::new(20);
    bus.put(0x1000, code);
    bus.put(0x20 * 4, &[0x00, 0x06, 0x00, 0x00]); // INT 20h -> 0000:0600
    bus.put(0x02 * 4, &[0x00, 0x07, 0x00, 0x00]); // NMI     -> 0000:0700
    bus.put(0x600, &[0x43, 0xcf]); // inc bx; iret
    bus.put(0x700, &[0x41, 0xcf]); // inc cx; iret
    let mut cpu = CpuState::new();
    cpu.seg[SegReg::Cs as usize] = Segment::real_mode_code(0x100);
    cpu.seg[SegReg::Ss as usize] = Segment::real_mode(0x200);
    cpu.set_reg(Gpr::Rsp, Width::W16, 0x1000);
    cpu.rip = 0;
    (cpu, bus)
}

#[test]
fn a_pending_interrupt_waits_while_if_is_clear() {
    let (mut cpu, mut bus) = machine(&[0xfa, 0xf4]); // cli; hlt
    bus.irqs.push(0x20);
    let mut interp = translator::Interpreter::new();
    assert_eq!(interp.run(&mut cpu, &mut bus, 100).1, translator::Exit::Halted);
    assert_eq!(interp.run(&mut cpu, &mut bus, 100).1, translator::Exit::Halted);
    assert_eq!(cpu.reg(Gpr::Rbx, Width::W16), 0);
    assert_eq!(bus.irqs, vec![0x20], "the request is still pending");
}

#[test]
fn sti_hlt_sleeps_until_the_interrupt_and_returns_after_the_hlt() {
    let (mut cpu, mut bus) = machine(&[0xfb, 0xf4, 0xf4]); // sti; hlt; hlt
    bus.irqs.push(0x20);
    let mut interp = translator::Interpreter::new();
    // The STI shadow covers the HLT: the CPU halts first, then the pending interrupt wakes
    // it, and the handler returns to the instruction after that HLT.
    assert_eq!(interp.run(&mut cpu, &mut bus, 100).1, translator::Exit::Halted);
    assert_eq!(cpu.reg(Gpr::Rbx, Width::W16), 1, "the handler ran once");
    assert_eq!(cpu.rip, 3, "back after the first HLT, halted at the second");
    assert_eq!(interp.stats.interrupts, 1);
    assert_eq!(cpu.reg(Gpr::Rsp, Width::W16), 0x1000, "IRET popped the frame");
}

#[test]
fn nmi_is_taken_with_if_clear_and_blocks_nested_nmis_until_iret() {
    // cli; hlt; hlt
    let (mut cpu, mut bus) = machine(&[0xfa, 0xf4, 0xf4]);
    let mut interp = translator::Interpreter::new();
    assert_eq!(interp.run(&mut cpu, &mut bus, 100).1, translator::Exit::Halted);
    bus.nmi = true;
    assert_eq!(interp.run(&mut cpu, &mut bus, 100).1, translator::Exit::Halted);
    assert_eq!(cpu.reg(Gpr::Rcx, Width::W16), 1);
    assert!(!cpu.nmi_blocked, "IRET unblocked NMIs");
    // While an NMI handler runs, a second NMI waits.
    cpu.nmi_blocked = true;
    bus.nmi = true;
    cpu.halted = false;
    let _ = interp.run(&mut cpu, &mut bus, 1);
    assert_eq!(cpu.reg(Gpr::Rcx, Width::W16), 1);
}
