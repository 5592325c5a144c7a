//! Guest memory for cranebox.
//!
//! This crate sits at the bottom of the emulator. It knows nothing about CPUs or devices beyond
//! the [`PhysBus`] trait through which both reach physical memory, and the [`MmioHandler`] trait
//! through which the map reaches a device. Its modules:
//!
//! - [`ram`]: [`GuestRam`], guest RAM as one anonymous `memmap2` mapping.
//! - [`size`]: [`parse_mem_size`], memory sizes as QEMU's `-m` reads them.
//! - [`map`]: [`PhysMap`], the physical address map (RAM, ROM, MMIO, holes, the A20 gate, the PC
//!   layout with its PCI hole and firmware windows, code-page tracking, bulk DMA access).
//! - [`paging`]: the page walkers for every paging mode (32-bit with PSE/PSE-36, PAE, 4-level),
//!   with the exact page-fault error codes and Accessed/Dirty write-back.
//! - [`tlb`]: [`Tlb`], the per-CPU software TLB that shadows the guest page tables, with the
//!   architectural flush rules (MOV CR3, PCID, INVLPG, INVPCID, control-register changes).
//!
//! Guest RAM is never handed out as a Rust slice across a call (design principle 8): the guest
//! or a DMA device may change it at any time, so every access is a raw-pointer copy.

pub mod map;
pub mod paging;
pub mod ram;
pub mod size;
pub mod tlb;

use std::ptr::NonNull;

pub use map::{MapError, MmioHandler, MmioId, PcLayout, PhysMap, RegionId, RegionKind};
pub use paging::{Access, AccessOp, MmuMode, PageFault, PageSize, PagingControl, Perms, Privilege, Translation};
pub use ram::{GuestRam, RamError};
pub use size::{parse_mem_size, SizeError};
pub use tlb::{InvpcidKind, Target, Tlb, CR3_NO_FLUSH};

/// The width of one physical access, in bytes: 1, 2, 4 or 8.
pub type AccessBytes = u8;

/// The size of the pages the TLB and the code-page tracking work in.
pub const PAGE_SIZE: u64 = 4096;
/// Clears the offset within a 4 KiB page.
pub const PAGE_MASK: u64 = !(PAGE_SIZE - 1);

/// Physical memory as a CPU or a DMA engine sees it.
///
/// Accesses are at most 8 bytes wide and never cross a 4 KiB page boundary: the CPU splits
/// page-crossing accesses after it has checked both pages, so an implementation can dispatch
/// each access to one region.
///
/// Only `read_phys` and `write_phys` are required. The other methods have defaults that are
/// correct for any bus (every access goes through `read_phys`/`write_phys`, nothing is tracked);
/// [`PhysMap`] overrides them to give the CPU direct RAM access and code-page tracking.
pub trait PhysBus {
    /// Reads `size` bytes (1, 2, 4 or 8) at physical address `addr`, little-endian.
    /// Addresses with nothing mapped read as all ones.
    fn read_phys(&mut self, addr: u64, size: AccessBytes) -> u64;
    /// Writes the low `size` bytes of `val` at physical address `addr`, little-endian.
    /// Writes to holes and ROM are ignored.
    fn write_phys(&mut self, addr: u64, size: AccessBytes, val: u64);

    /// What backs the 4 KiB physical page holding `paddr`, for a TLB fill. The default sends
    /// every access through `read_phys`/`write_phys`.
    fn page_backing(&self, paddr: u64) -> PageBacking {
        PageBacking::bus(paddr)
    }

    /// Copies `buf.len()` bytes starting at physical `addr` into `buf`, as a DMA engine reads:
    /// any length, across regions, holes reading all ones. Not subject to the A20 gate (a CPU
    /// pin, which bus masters do not see).
    fn read_bytes(&mut self, addr: u64, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.read_phys(addr.wrapping_add(i as u64), 1) as u8;
        }
    }

    /// Copies `data` to physical `addr`, as a DMA engine writes: any length, across regions,
    /// writes to holes and ROM dropped. Not subject to the A20 gate.
    fn write_bytes(&mut self, addr: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            self.write_phys(addr.wrapping_add(i as u64), 1, u64::from(b));
        }
    }

    /// Marks (or unmarks) the physical page holding `paddr` as holding translated code, so that
    /// writes to it (CPU stores through the bus, DMA) are reported by
    /// [`take_code_write`](PhysBus::take_code_write) and TLB fills give it no direct write path.
    /// Returns false if this bus does not track the page (the default: nothing is tracked).
    fn set_code_page(&mut self, paddr: u64, code: bool) -> bool {
        let _ = (paddr, code);
        false
    }

    /// The physical page address (A20 applied) of a code page that was written since the last
    /// call, if any. A written page stops being a code page: the translator invalidates its
    /// blocks and marks the page again when it translates from it again.
    fn take_code_write(&mut self) -> Option<u64> {
        None
    }
}

/// What backs one 4 KiB physical page, as a TLB fill needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageBacking {
    /// The physical page address the CPU really reaches (the A20 gate applied).
    pub phys: u64,
    /// The host address of the first byte of the page when the whole page is plain memory the
    /// CPU may read directly; `None` when every access must go through the bus (MMIO, holes,
    /// a page shared by several regions). Valid until the address map changes.
    pub host: Option<NonNull<u8>>,
    /// Direct writes through `host` are allowed (RAM, not ROM or read-only RAM).
    pub writable: bool,
    /// The page holds translated code: writes must go through the bus so they are noticed.
    pub code: bool,
}

impl PageBacking {
    /// A page every access to which goes through the bus.
    pub fn bus(paddr: u64) -> Self {
        PageBacking { phys: paddr & PAGE_MASK, host: None, writable: false, code: false }
    }
}

/// All ones in the low `size` bytes: what an unmapped read returns.
pub fn all_ones(size: AccessBytes) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (u32::from(size) * 8)) - 1
    }
}
