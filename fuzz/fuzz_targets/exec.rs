//! Random bytes as guest code and state, decoded and run by the interpreter: no input may
//! panic or hang the emulator. The first bytes pick the register state, the rest is code.
#![no_main]

use std::collections::HashMap;

use frontend_x86::{CpuBus, CpuState, Gpr, SegReg, Segment, Width};
use libfuzzer_sys::fuzz_target;
use softmmu::PhysBus;

struct Bus(HashMap<u64, u8>);

impl PhysBus for Bus {
    fn read_phys(&mut self, addr: u64, size: u8) -> u64 {
        (0..u64::from(size)).fold(0, |v, k| v | u64::from(*self.0.get(&((addr + k) & 0x1f_ffff)).unwrap_or(&0)) << (8 * k))
    }
    fn write_phys(&mut self, addr: u64, size: u8, val: u64) {
        for k in 0..u64::from(size) {
            self.0.insert((addr + k) & 0x1f_ffff, (val >> (8 * k)) as u8);
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
    fn intr(&mut self) -> bool {
        false
    }
    fn inta(&mut self) -> Option<u8> {
        None
    }
    fn take_nmi(&mut self) -> bool {
        false
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 20 {
        return;
    }
    let (state, code) = data.split_at(20);
    let mut cpu = CpuState::new();
    let word = |k: usize| u64::from(u16::from_le_bytes([state[2 * k], state[2 * k + 1]]));
    for (k, g) in [Gpr::Rax, Gpr::Rbx, Gpr::Rcx, Gpr::Rdx, Gpr::Rsp, Gpr::Rbp, Gpr::Rsi, Gpr::Rdi].into_iter().enumerate() {
        cpu.set_reg(g, Width::W16, word(k));
    }
    cpu.seg[SegReg::Ds as usize] = Segment::real_mode(word(8) as u16);
    cpu.seg[SegReg::Ss as usize] = Segment::real_mode(word(9) as u16);
    cpu.seg[SegReg::Cs as usize] = Segment::real_mode_code(0x1000);
    cpu.rip = 0;
    cpu.idtr.limit = 0x3ff;
    let mut bus = Bus(HashMap::new());
    for (k, b) in code.iter().enumerate() {
        bus.0.insert(0x10000 + k as u64, *b);
    }
    let _ = translator::run(&mut cpu, &mut bus, 2000);
});
