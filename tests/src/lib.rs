//! Shared support for cranebox's integration tests and conformance harnesses.

use std::collections::HashMap;
use std::path::PathBuf;

use frontend_x86::state::{attr, cr0, efer};
use frontend_x86::{CpuBus, CpuState, SegReg, Segment};
use softmmu::PhysBus;

/// Where the shared conformance data lives: `$CRANEBOX_CONFORMANCE`, else `shared/conformance`
/// beside the repository.
pub fn conformance_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("CRANEBOX_CONFORMANCE") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance")
}

/// A machine with sparse memory and no devices: every port reads all ones and ignores writes.
/// `addr_mask` models the CPU's address lines (24 on a 286).
#[derive(Debug, Default)]
pub struct SparseBus {
    /// Bytes written or preset; absent bytes read as zero.
    pub mem: HashMap<u64, u8>,
    /// Physical addresses are ANDed with this.
    pub addr_mask: u64,
    /// Every port access, in order: (port, size, value, is_write).
    pub io_log: Vec<(u16, u8, u32, bool)>,
    /// The virtual time the bus reports; tests set it.
    pub time_ns: u64,
    /// Vectors of pending external interrupts, taken first to last.
    pub irqs: Vec<u8>,
    /// A pending NMI.
    pub nmi: bool,
}

impl SparseBus {
    /// Stores `bytes` at physical address `at`.
    pub fn put(&mut self, at: u64, bytes: &[u8]) {
        for (k, b) in bytes.iter().enumerate() {
            self.mem.insert(at + k as u64, *b);
        }
    }

    /// Reads `n` (at most 8) bytes at physical address `at`, little-endian; absent bytes are 0.
    pub fn get(&self, at: u64, n: u64) -> u64 {
        (0..n.min(8)).fold(0, |v, k| v | u64::from(self.mem.get(&(at + k)).copied().unwrap_or(0)) << (8 * k))
    }

    /// An empty bus with `bits` address lines.
    pub fn new(bits: u32) -> Self {
        SparseBus {
            mem: HashMap::new(),
            addr_mask: (1u64 << bits) - 1,
            io_log: Vec::new(),
            time_ns: 0,
            irqs: Vec::new(),
            nmi: false,
        }
    }
}

impl PhysBus for SparseBus {
    fn read_phys(&mut self, addr: u64, size: u8) -> u64 {
        let mut v = 0u64;
        for k in 0..u64::from(size) {
            let b = self.mem.get(&((addr + k) & self.addr_mask)).copied().unwrap_or(0);
            v |= u64::from(b) << (8 * k);
        }
        v
    }

    fn write_phys(&mut self, addr: u64, size: u8, val: u64) {
        for k in 0..u64::from(size) {
            self.mem.insert((addr + k) & self.addr_mask, (val >> (8 * k)) as u8);
        }
    }
}

impl CpuBus for SparseBus {
    fn io_read(&mut self, port: u16, size: u8) -> u32 {
        let v = if size >= 4 { u32::MAX } else { (1u32 << (u32::from(size) * 8)) - 1 };
        self.io_log.push((port, size, v, false));
        v
    }

    fn io_write(&mut self, port: u16, size: u8, val: u32) {
        self.io_log.push((port, size, val, true));
    }

    fn now_ns(&mut self) -> u64 {
        self.time_ns
    }

    fn intr(&mut self) -> bool {
        !self.irqs.is_empty()
    }

    fn inta(&mut self) -> Option<u8> {
        if self.irqs.is_empty() {
            None
        } else {
            Some(self.irqs.remove(0))
        }
    }

    fn take_nmi(&mut self) -> bool {
        std::mem::take(&mut self.nmi)
    }
}

/// xorshift64*: a fixed, dependency-free generator so that failures reproduce from the seed.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A flat 4 GiB segment cache for test fixtures: 32-bit code (or 64-bit when `long`), or
/// writable data, with the DPL from the selector's RPL.
pub fn flat_segment(selector: u16, code: bool, long: bool) -> Segment {
    let dpl = (selector & 3) << attr::DPL_SHIFT;
    let a = if code && long {
        attr::P | attr::S | attr::CODE | attr::RW | attr::ACCESSED | attr::L | attr::G
    } else if code {
        attr::P | attr::S | attr::CODE | attr::RW | attr::ACCESSED | attr::DB | attr::G
    } else {
        attr::P | attr::S | attr::RW | attr::ACCESSED | attr::DB | attr::G
    };
    Segment { selector, base: 0, limit: 0xffff_ffff, attr: a | dpl }
}

/// A CPU in 32-bit protected mode at CPL 0: flat code 0x08 in CS, flat data 0x10 in the
/// others, the GDT at `gdt` with `gdt_limit`, the IDT at `idt` (limit 0x7ff).
pub fn protected_mode_cpu(gdt: u64, gdt_limit: u16, idt: u64) -> CpuState {
    let mut cpu = CpuState::new();
    cpu.cr0 |= cr0::PE;
    cpu.gdtr.base = gdt;
    cpu.gdtr.limit = gdt_limit;
    cpu.idtr.base = idt;
    cpu.idtr.limit = 0x7ff;
    let data = flat_segment(0x10, false, false);
    cpu.seg = [data; 6];
    cpu.seg[SegReg::Cs as usize] = flat_segment(0x08, true, false);
    cpu
}

/// 4-level page tables at `at` (PML4), `at + 0x1000` (PDPT) and `at + 0x2000` (PD) mapping the
/// first 2 MiB to themselves, writable and user-accessible (one 2 MiB page). Returns CR3.
pub fn identity_2m(bus: &mut SparseBus, at: u64) -> u64 {
    bus.put(at, &(at + 0x1007).to_le_bytes());
    bus.put(at + 0x1000, &(at + 0x2007).to_le_bytes());
    bus.put(at + 0x2000, &0x87u64.to_le_bytes());
    at
}

/// A CPU in 64-bit mode at CPL 0 with paging on (4-level tables at `cr3`), flat 64-bit code
/// 0x08 and data 0x10, no GDT or IDT.
pub fn long_mode_cpu(cr3: u64) -> CpuState {
    let mut cpu = CpuState::new();
    cpu.cr0 |= cr0::PE | cr0::PG;
    cpu.cr3 = cr3;
    cpu.cr4 |= frontend_x86::state::cr4::PAE;
    cpu.efer |= efer::LME | efer::LMA;
    cpu.seg = [flat_segment(0x10, false, false); 6];
    cpu.seg[SegReg::Cs as usize] = flat_segment(0x08, true, true);
    cpu
}

/// A CPU at CPL 0 in 32-bit protected mode, or in 64-bit mode when `long`, on `bus`: a GDT at
/// 0x1000 (null, flat code 0x08, flat data 0x10), an IDT at 0x2000 whose 256 interrupt gates
/// lead through selector 0x08 to `handler(vector)`, SS flat data; in 64-bit mode the first
/// 2 MiB identity-mapped (supervisor, one large page) by tables at 0x40000.
pub fn gdt_idt_cpu(bus: &mut SparseBus, long: bool, handler: impl Fn(u64) -> u64) -> CpuState {
    let code_desc: u64 = if long { 0x00af_9a00_0000_ffff } else { 0x00cf_9a00_0000_ffff };
    bus.put(0x1000, &[0; 8]);
    bus.put(0x1008, &code_desc.to_le_bytes());
    bus.put(0x1010, &0x00cf_9200_0000_ffffu64.to_le_bytes());
    for v in 0..256u64 {
        let h = handler(v);
        let lo: u64 = (h & 0xffff) | (0x08 << 16) | (0x8e00u64 << 32) | ((h >> 16) << 48);
        if long {
            bus.put(0x2000 + v * 16, &lo.to_le_bytes());
            bus.put(0x2008 + v * 16, &0u64.to_le_bytes());
        } else {
            bus.put(0x2000 + v * 8, &lo.to_le_bytes());
        }
    }
    let mut cpu = if long {
        bus.put(0x40000, &0x41003u64.to_le_bytes());
        bus.put(0x41000, &0x42003u64.to_le_bytes());
        bus.put(0x42000, &0x83u64.to_le_bytes());
        let mut cpu = long_mode_cpu(0x40000);
        cpu.gdtr.base = 0x1000;
        cpu.gdtr.limit = 0x17;
        cpu.idtr.base = 0x2000;
        cpu.idtr.limit = 0xfff;
        cpu
    } else {
        protected_mode_cpu(0x1000, 0x17, 0x2000)
    };
    cpu.seg[SegReg::Ss as usize] = flat_segment(0x10, false, false);
    cpu
}
