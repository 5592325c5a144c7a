//! Guest RAM: one anonymous mapping, accessed only through raw pointers.

use std::ptr::NonNull;

use memmap2::MmapMut;

/// Errors from creating guest RAM.
#[derive(Debug, thiserror::Error)]
pub enum RamError {
    /// The size is zero or not a whole number of 4 KiB pages.
    #[error("guest memory size {0} bytes is not a positive multiple of 4 KiB")]
    BadSize(u64),
    /// The host refused the mapping.
    #[error("the host cannot provide {size} bytes of guest memory: {source}")]
    Map {
        /// The requested size.
        size: u64,
        /// What the host said.
        source: std::io::Error,
    },
}

/// Guest RAM: `len` bytes starting at guest physical address 0 of the RAM's own space.
///
/// Where the RAM sits in the physical address map is the map's business; offsets here are
/// relative to the start of the mapping.
#[derive(Debug)]
pub struct GuestRam {
    /// Owns the mapping; every access goes through `base`.
    _map: MmapMut,
    base: NonNull<u8>,
    len: u64,
}

// SAFETY: the mapping is plain anonymous memory owned by this struct; it has no thread
// affinity. Concurrent access from several vCPUs is the guest's business, as on hardware: every
// access goes through raw-pointer reads and writes, never through Rust references.
unsafe impl Send for GuestRam {}
// SAFETY: see the `Send` impl: shared access only ever happens through raw pointers.
unsafe impl Sync for GuestRam {}

impl GuestRam {
    /// Maps `len` bytes of zeroed guest RAM.
    pub fn new(len: u64) -> Result<Self, RamError> {
        if len == 0 || !len.is_multiple_of(4096) {
            return Err(RamError::BadSize(len));
        }
        let size = usize::try_from(len).map_err(|_| RamError::Map {
            size: len,
            source: std::io::Error::other("larger than the host address space"),
        })?;
        let mut map = MmapMut::map_anon(size).map_err(|source| RamError::Map { size: len, source })?;
        let base = NonNull::new(map.as_mut_ptr())
            .ok_or(RamError::Map { size: len, source: std::io::Error::other("null mapping") })?;
        Ok(GuestRam { _map: map, base, len })
    }

    /// The size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always false: RAM has at least one page.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The host address of byte `offset`, if `offset..offset+size` lies inside the RAM.
    #[inline]
    pub fn host_ptr(&self, offset: u64, size: u64) -> Option<*mut u8> {
        let end = offset.checked_add(size)?;
        if end > self.len {
            return None;
        }
        // SAFETY: offset + size <= len, so the result stays inside the mapping.
        Some(unsafe { self.base.as_ptr().add(offset as usize) })
    }

    /// Reads `size` (1..=8) bytes at `offset`, little-endian; all ones outside the RAM.
    #[inline]
    pub fn read(&self, offset: u64, size: u8) -> u64 {
        match self.host_ptr(offset, u64::from(size)) {
            Some(p) => {
                // SAFETY: `p..p+size` is inside the mapping (checked by host_ptr); these are
                // raw reads of plain bytes that tolerate misalignment, never a reference.
                unsafe {
                    match size {
                        1 => u64::from(p.read_volatile()),
                        2 => u64::from(u16::from_le(p.cast::<u16>().read_unaligned())),
                        4 => u64::from(u32::from_le(p.cast::<u32>().read_unaligned())),
                        8 => u64::from_le(p.cast::<u64>().read_unaligned()),
                        _ => {
                            let mut buf = [0u8; 8];
                            std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), usize::from(size.min(8)));
                            u64::from_le_bytes(buf)
                        }
                    }
                }
            }
            None => crate::all_ones(size),
        }
    }

    /// Writes the low `size` (1..=8) bytes of `val` at `offset`; ignored outside the RAM.
    #[inline]
    pub fn write(&self, offset: u64, size: u8, val: u64) {
        if let Some(p) = self.host_ptr(offset, u64::from(size)) {
            // SAFETY: `p..p+size` is inside the mapping (checked by host_ptr); these are raw
            // writes of plain bytes that tolerate misalignment, never through a reference.
            unsafe {
                match size {
                    1 => p.write_volatile(val as u8),
                    2 => p.cast::<u16>().write_unaligned((val as u16).to_le()),
                    4 => p.cast::<u32>().write_unaligned((val as u32).to_le()),
                    8 => p.cast::<u64>().write_unaligned(val.to_le()),
                    _ => {
                        let buf = val.to_le_bytes();
                        std::ptr::copy_nonoverlapping(buf.as_ptr(), p, usize::from(size.min(8)));
                    }
                }
            }
        }
    }

    /// Copies `data` into RAM at `offset`; false (and nothing written) if it does not fit.
    pub fn write_bytes(&self, offset: u64, data: &[u8]) -> bool {
        match self.host_ptr(offset, data.len() as u64) {
            Some(p) => {
                // SAFETY: the destination range is inside the mapping (checked by host_ptr) and
                // cannot overlap `data`, which is host memory outside the guest mapping.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
                true
            }
            None => false,
        }
    }

    /// Copies RAM at `offset` into `out`; false (and `out` untouched) if out of range.
    pub fn read_bytes(&self, offset: u64, out: &mut [u8]) -> bool {
        match self.host_ptr(offset, out.len() as u64) {
            Some(p) => {
                // SAFETY: the source range is inside the mapping and `out` is a distinct host
                // buffer.
                unsafe { std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), out.len()) };
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_sizes_that_are_not_whole_pages() {
        assert!(matches!(GuestRam::new(0), Err(RamError::BadSize(0))));
        assert!(matches!(GuestRam::new(4095), Err(RamError::BadSize(4095))));
    }

    #[test]
    fn reads_back_what_was_written_little_endian() {
        let ram = GuestRam::new(8192).expect("map 8 KiB");
        ram.write(10, 4, 0x1122_3344);
        assert_eq!(ram.read(10, 1), 0x44);
        assert_eq!(ram.read(10, 2), 0x3344);
        assert_eq!(ram.read(10, 4), 0x1122_3344);
        assert_eq!(ram.read(8190, 2), 0);
    }

    #[test]
    fn out_of_range_reads_all_ones_and_writes_are_dropped() {
        let ram = GuestRam::new(4096).expect("map 4 KiB");
        assert_eq!(ram.read(4095, 2), 0xffff);
        ram.write(4095, 2, 0xabcd);
        assert_eq!(ram.read(4095, 1), 0);
        assert!(!ram.write_bytes(4090, &[0; 8]));
    }
}
