//! Random bytes as guest code and state, decoded and run by the interpreter and the JIT in real mode,
//! 32-bit protected mode and 64-bit long mode (with real page tables): no input may panic or
//! hang the emulator. The first byte picks the mode, the next 32 the registers, the rest is
//! code.
#![no_main]

use std::collections::HashMap;

use frontend_x86::state::{attr, cr0, efer};
use frontend_x86::{CpuBus, CpuState, Gpr, SegReg, Segment, Width};
use libfuzzer_sys::fuzz_target;
use softmmu::PhysBus;

/// Sparse memory; bytes never written read as 0xF4 (HLT), so a wild jump ends the run soon
/// instead of compiling long runs of zero bytes.
struct Bus(HashMap<u64, u8>);

impl Bus {
    fn put(&mut self, at: u64, bytes: &[u8]) {
        for (k, b) in bytes.iter().enumerate() {
            self.0.insert(at + k as u64, *b);
        }
    }
}

impl PhysBus for Bus {
    fn read_phys(&mut self, addr: u64, size: u8) -> u64 {
        (0..u64::from(size)).fold(0, |v, k| v | u64::from(*self.0.get(&((addr + k) & 0x3f_ffff)).unwrap_or(&0xf4)) << (8 * k))
    }
    fn write_phys(&mut self, addr: u64, size: u8, val: u64) {
        for k in 0..u64::from(size) {
            self.0.insert((addr + k) & 0x3f_ffff, (val >> (8 * k)) as u8);
        }
    }
}

impl CpuBus for Bus {
    fn io_read(&mut self, _port: u16, _size: u8) -> u32 {
        u32::MAX
    }
    fn io_write(&mut self, _port: u16, _size: u8, _val: u32) {}
    fn now_ns(&mut self) -> u64 {
        0
    }
}

const CODE: u64 = 0x10000;

fuzz_target!(|data: &[u8]| {
    if data.len() < 34 {
        return;
    }
    let mode = data[0] % 3;
    let (state, code) = data[1..].split_at(32);
    let mut cpu = CpuState::new();
    let mut bus = Bus(HashMap::new());
    let word = |k: usize| u64::from(u32::from_le_bytes([state[4 * k], state[4 * k + 1], state[4 * k + 2], state[4 * k + 3]]));
    for (k, g) in [Gpr::Rax, Gpr::Rbx, Gpr::Rcx, Gpr::Rdx, Gpr::Rsp, Gpr::Rbp, Gpr::Rsi, Gpr::Rdi].into_iter().enumerate() {
        cpu.set_reg(g, Width::W32, word(k));
    }
    // Short REP counts: a run is then many instructions rather than a few huge string loops.
    cpu.set_reg(Gpr::Rcx, Width::W32, word(2) & 0xff);
    // Flat code and data descriptors (and a 64-bit code one) for the protected modes.
    bus.put(0x500 + 8, &0x00cf_9a00_0000_ffffu64.to_le_bytes());
    bus.put(0x500 + 16, &0x00cf_9200_0000_ffffu64.to_le_bytes());
    bus.put(0x500 + 24, &0x00af_9a00_0000_ffffu64.to_le_bytes());
    bus.put(CODE, code);
    match mode {
        0 => {
            cpu.seg[SegReg::Cs as usize] = Segment::real_mode_code((CODE >> 4) as u16);
            cpu.rip = 0;
            cpu.idtr.limit = 0x3ff;
        }
        _ => {
            cpu.cr0 |= cr0::PE;
            cpu.gdtr.base = 0x500;
            cpu.gdtr.limit = 31;
            cpu.idtr.base = 0x1000;
            cpu.idtr.limit = 0xfff;
            let data_seg = Segment { selector: 0x10, base: 0, limit: 0xffff_ffff, attr: 0xc093 };
            let code_seg = if mode == 1 {
                Segment { selector: 0x08, base: 0, limit: 0xffff_ffff, attr: 0xc09b }
            } else {
                // Identity-map the first 2 MiB with one large page and enter long mode.
                bus.put(0x20000, &0x21003u64.to_le_bytes());
                bus.put(0x21000, &0x22003u64.to_le_bytes());
                bus.put(0x22000, &0x83u64.to_le_bytes());
                cpu.cr3 = 0x20000;
                cpu.cr4 |= 1 << 5;
                cpu.efer |= efer::LME | efer::LMA;
                cpu.cr0 |= cr0::PG;
                Segment { selector: 0x18, base: 0, limit: 0xffff_ffff, attr: attr::P | attr::S | attr::CODE | attr::RW | attr::L }
            };
            cpu.seg = [data_seg, code_seg, data_seg, data_seg, data_seg, data_seg];
            cpu.rip = CODE;
        }
    }
    // The same program under the interpreter and under the JIT forced to compile every
    // block: neither may crash, and they must end the same way.
    let (mut jcpu, mut jbus) = (cpu.clone(), Bus(bus.0.clone()));
    let a = translator::run(&mut cpu, &mut bus, 500);
    let b = JIT.with(|j| {
        let mut j = j.borrow_mut();
        j.flush(&mut jcpu);
        j.run(&mut jcpu, &mut jbus, 500)
    });
    assert_eq!(a, b, "instruction count / exit");
    assert_eq!(cpu.gpr, jcpu.gpr, "registers");
    assert_eq!((cpu.rip, cpu.flags.get()), (jcpu.rip, jcpu.flags.get()), "rip, flags");
    assert!(bus.0 == jbus.0, "memory");
});

thread_local! {
    static JIT: std::cell::RefCell<translator::Interpreter> =
        std::cell::RefCell::new(translator::Interpreter::with_jit(0).expect("the JIT starts on this host"));
}
