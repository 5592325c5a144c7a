//! Support for cranebox's benchmarks: a flat-RAM machine with no devices.

use std::collections::HashSet;
use std::ptr::NonNull;

use frontend_x86::CpuBus;
use softmmu::{GuestRam, PageBacking, PhysBus, RamError};

/// RAM from physical address 0 and nothing else: ports read all ones. Pages are backed by
/// host memory for the TLB as on the PC machine, with the pages holding decoded code kept on
/// the slow write path.
#[derive(Debug)]
pub struct FlatBus {
    /// The guest RAM.
    pub ram: GuestRam,
    code: HashSet<u64>,
}

impl FlatBus {
    /// A bus with `bytes` of RAM.
    pub fn new(bytes: u64) -> Result<Self, RamError> {
        Ok(FlatBus { ram: GuestRam::new(bytes)?, code: HashSet::new() })
    }
}

impl PhysBus for FlatBus {
    fn read_phys(&mut self, addr: u64, size: u8) -> u64 {
        self.ram.read(addr, size)
    }
    fn write_phys(&mut self, addr: u64, size: u8, val: u64) {
        self.ram.write(addr, size, val);
    }

    fn page_backing(&self, paddr: u64) -> PageBacking {
        let page = paddr & !0xfff;
        match self.ram.host_ptr(page, 0x1000).and_then(NonNull::new) {
            Some(host) => PageBacking { phys: page, host: Some(host), writable: true, code: self.code.contains(&page) },
            None => PageBacking::bus(page),
        }
    }

    fn set_code_page(&mut self, paddr: u64, code: bool) -> bool {
        let page = paddr & !0xfff;
        if code {
            self.code.insert(page);
        } else {
            self.code.remove(&page);
        }
        true
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
