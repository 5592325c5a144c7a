//! The machine's side of the CPU bus: the physical address map and the I/O port map.

use devices::debug::{DebugCon, DebugExit};
use devices::PortDevice;
use frontend_x86::CpuBus;
use softmmu::{all_ones, GuestRam, PhysBus};

/// Memory and ports of the PC, as the CPU reaches them.
#[derive(Debug)]
pub struct PcBus {
    ram: GuestRam,
    bios: Vec<u8>,
    /// The port 0xE9 debug console, if configured.
    pub debugcon: Option<DebugCon>,
    /// isa-debug-exit at port 0xF4.
    pub debug_exit: DebugExit,
    /// Virtual time of the current run slice, handed to devices (design principle 10).
    pub now_ns: u64,
}

const FOUR_GIB: u64 = 1 << 32;
/// The legacy BIOS window below 1 MiB that aliases the end of the firmware image.
const ISA_BIOS: std::ops::Range<u64> = 0xe0000..0x100000;

impl PcBus {
    /// A bus over `ram` with `bios` ending at 4 GiB.
    pub fn new(ram: GuestRam, bios: Vec<u8>, debugcon: Option<DebugCon>, debug_exit: DebugExit) -> Self {
        PcBus { ram, bios, debugcon, debug_exit, now_ns: 0 }
    }

    /// The offset in the firmware image that physical `addr` reads, if it is firmware.
    fn bios_offset(&self, addr: u64) -> Option<usize> {
        let len = self.bios.len() as u64;
        if (FOUR_GIB - len..FOUR_GIB).contains(&addr) {
            return Some((addr - (FOUR_GIB - len)) as usize);
        }
        if ISA_BIOS.contains(&addr) {
            let window = ISA_BIOS.end - ISA_BIOS.start;
            let start = ISA_BIOS.end - window.min(len);
            if addr >= start {
                return Some((len - (ISA_BIOS.end - addr)) as usize);
            }
        }
        None
    }
}

impl PhysBus for PcBus {
    fn read_phys(&mut self, addr: u64, size: u8) -> u64 {
        if let Some(off) = self.bios_offset(addr) {
            let mut v = 0u64;
            for k in 0..usize::from(size) {
                v |= u64::from(self.bios.get(off + k).copied().unwrap_or(0xff)) << (8 * k);
            }
            return v;
        }
        if addr + u64::from(size) <= self.ram.len() {
            return self.ram.read(addr, size);
        }
        all_ones(size)
    }

    fn write_phys(&mut self, addr: u64, size: u8, val: u64) {
        if self.bios_offset(addr).is_some() {
            return;
        }
        if addr + u64::from(size) <= self.ram.len() {
            self.ram.write(addr, size, val);
        }
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

    // No interrupt controller is wired in yet (the platform issue): the lines stay low.
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
