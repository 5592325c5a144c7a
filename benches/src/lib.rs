//! Support for cranebox's benchmarks: a flat-RAM machine with no devices.

use frontend_x86::CpuBus;
use softmmu::{GuestRam, PhysBus, RamError};

/// RAM from physical address 0 and nothing else: ports read all ones.
#[derive(Debug)]
pub struct FlatBus {
    /// The guest RAM.
    pub ram: GuestRam,
}

impl FlatBus {
    /// A bus with `bytes` of RAM.
    pub fn new(bytes: u64) -> Result<Self, RamError> {
        Ok(FlatBus { ram: GuestRam::new(bytes)? })
    }
}

impl PhysBus for FlatBus {
    fn read_phys(&mut self, addr: u64, size: u8) -> u64 {
        self.ram.read(addr, size)
    }
    fn write_phys(&mut self, addr: u64, size: u8, val: u64) {
        self.ram.write(addr, size, val);
    }
}

impl CpuBus for FlatBus {
    fn io_read(&mut self, _port: u16, size: u8) -> u32 {
        if size >= 4 {
            u32::MAX
        } else {
            (1u32 << (u32::from(size) * 8)) - 1
        }
    }
    fn io_write(&mut self, _port: u16, _size: u8, _val: u32) {}
    fn now_ns(&mut self) -> u64 {
        0
    }
}
