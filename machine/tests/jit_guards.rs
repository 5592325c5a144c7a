//! Compiled code takes flat data segments as constants and checks, once at its entry, that
//! they still are: run again after a segment changed, it must read where the interpreter
//! reads. (The TLB's direct paths, which the PC machine's RAM gives, are what skip the
//! segment arithmetic; the sparse test buses always take the softmmu's slow path.)

mod common;

use common::Capture;
use frontend_x86::state::{attr, cr0};
use frontend_x86::{SegReg, Segment};
use machine::{Machine, MachineConfig};

fn flat(selector: u16, code: bool) -> Segment {
    let kind = if code { attr::CODE } else { 0 };
    Segment { selector, base: 0, limit: 0xffff_ffff, attr: attr::P | attr::S | attr::RW | attr::DB | attr::G | kind }
}

fn run(jit: bool) -> String {
    let out = Capture::default();
    let config = MachineConfig {
        debugcon: Some(Box::new(out.clone())),
        ..MachineConfig::new(16 << 20, bios::demo::hello_rom())
    };
    let mut m = Machine::new(config).expect("machine");
    if jit {
        m.interp = translator::Interpreter::with_jit(0).expect("the JIT starts on this host");
    }
    // mov eax, [0x9000]; out 0xe9, al; hlt
    m.bus.mem.load(0x7000, &[0xa1, 0x00, 0x90, 0x00, 0x00, 0xe6, 0xe9, 0xf4]).expect("load");
    m.bus.mem.load(0x9000, b"A").expect("load");
    m.bus.mem.load(0x9040, b"B").expect("load");
    m.cpu.cr0 |= cr0::PE;
    m.cpu.seg = [flat(0x10, false); 6];
    m.cpu.seg[SegReg::Cs as usize] = flat(0x08, true);
    for pass in 0..3 {
        if pass == 1 {
            // DS moves: no longer flat, so the unit's entry check must fail.
            m.cpu.seg[SegReg::Ds as usize].base = 0x40;
        }
        m.cpu.halted = false;
        m.cpu.rip = 0x7000;
        let _ = m.run(100);
    }
    if jit {
        assert!(m.interp.stats.compiled_instructions > 0, "the program ran compiled");
    }
    out.text()
}

#[test]
fn a_segment_moved_after_compilation_is_honoured() {
    assert_eq!(run(false), "ABB");
    assert_eq!(run(true), "ABB");
}
