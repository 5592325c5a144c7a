//! Guest memory for cranebox.
//!
//! This crate sits at the bottom of the emulator: it owns guest RAM (one anonymous `memmap2`
//! mapping), the physical address map, and (as it grows) the page walkers and the software TLB.
//! It knows nothing about CPUs or devices beyond the [`PhysBus`] trait through which both reach
//! physical memory.
//!
//! Guest RAM is never handed out as a Rust slice across a call (design principle 8): the guest
//! or a DMA device may change it at any time, so every access is a raw-pointer copy.

mod ram;

pub use ram::{GuestRam, RamError};

/// The width of one physical access, in bytes: 1, 2, 4 or 8.
pub type AccessBytes = u8;

/// Physical memory as a CPU or a DMA engine sees it.
///
/// Accesses are at most 8 bytes wide and never cross a 4 KiB page boundary: the CPU splits
/// page-crossing accesses after it has checked both pages, so an implementation can dispatch
/// each access to one region.
pub trait PhysBus {
    /// Reads `size` bytes (1, 2, 4 or 8) at physical address `addr`, little-endian.
    /// Addresses with nothing mapped read as all ones.
    fn read_phys(&mut self, addr: u64, size: AccessBytes) -> u64;
    /// Writes the low `size` bytes of `val` at physical address `addr`, little-endian.
    /// Writes to holes and ROM are ignored.
    fn write_phys(&mut self, addr: u64, size: AccessBytes, val: u64);
}

/// All ones in the low `size` bytes: what an unmapped read returns.
pub fn all_ones(size: AccessBytes) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (u32::from(size) * 8)) - 1
    }
}
