//! The machine's side of the CPU bus: the physical address map (softmmu's `PhysMap`) and the
//! I/O port map.

use devices::debug::{DebugCon, DebugExit};
use devices::PortDevice;
use frontend_x86::CpuBus;
use softmmu::{all_ones, AccessBytes, PageBacking, PhysBus, PhysMap};

/// Memory and ports of the PC, as the CPU reaches them.
#[derive(Debug)]
pub struct PcBus {
    /// The physical address map: RAM, firmware, MMIO, holes.
    pub mem: PhysMap,
    /// The port 0xE9 debug console, if configured.
    pub debugcon: Option<DebugCon>,
    /// isa-debug-exit at port 0xF4.
    pub debug_exit: DebugExit,
    /// Virtual time of the current run slice, handed to devices (design principle 10).
    pub now_ns: u64,
}

impl PcBus {
    /// A bus over the address map `mem`.
    pub fn new(mem: PhysMap, debugcon: Option<DebugCon>, debug_exit: DebugExit) -> Self {
        PcBus { mem, debugcon, debug_exit, now_ns: 0 }
    }
}

impl PhysBus for PcBus {
    #[inline]
    fn read_phys(&mut self, addr: u64, size: AccessBytes) -> u64 {
        self.mem.read_phys(addr, size)
    }

    #[inline]
    fn write_phys(&mut self, addr: u64, size: AccessBytes, val: u64) {
        self.mem.write_phys(addr, size, val);
    }

    fn page_backing(&self, paddr: u64) -> PageBacking {
        self.mem.page_backing(paddr)
    }
}

impl CpuBus for PcBus {
    fn io_read(&mut self, port: u16, size: u8) -> u32 {
        match port {
            0xe9 => match &mut self.debugcon {
                Some(d) => d.port_read(0, size, self.now_ns),
                None => all_ones(size) as u32,
            },
            0xf4 => self.debug_exit.port_read(0, size, self.now_ns),
            _ => all_ones(size) as u32,
        }
    }

    fn io_write(&mut self, port: u16, size: u8, val: u32) {
        match port {
            0xe9 => {
                if let Some(d) = &mut self.debugcon {
                    d.port_write(0, size, val, self.now_ns);
                }
            }
            0xf4 => self.debug_exit.port_write(0, size, val, self.now_ns),
            _ => {}
        }
    }

    fn now_ns(&mut self) -> u64 {
        self.now_ns
    }

    // No interrupt controller is wired in yet (the platform issue): intr/inta/take_nmi keep
    // the trait's defaults, the lines stay low.
}
