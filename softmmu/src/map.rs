//! The physical address map: which region answers each physical address.
//!
//! Regions are RAM (a window onto the one [`GuestRam`] mapping), ROM (a shared read-only image),
//! MMIO (dispatched to an [`MmioHandler`] with the offset from the region's base) and explicit
//! holes. Regions may overlap: the one with the highest priority wins, and among equal
//! priorities the one added last. That is how a PC works: the legacy VGA window and the BIOS
//! alias sit on top of the RAM below 1 MiB, and the machine can later remove an overlay (as the
//! chipset's PAM registers do) to let the RAM underneath show through. Every change of the map
//! is flattened into a sorted list of non-overlapping segments, so a lookup is one binary search.
//!
//! Addresses nothing answers are holes: reads return all ones and writes are dropped.
//!
//! The A20 gate applies to CPU accesses (`read_phys`, `write_phys`, `page_backing`, including
//! the page walker's reads): when it is disabled, bit 20 of the address is forced to 0. DMA
//! (`read_bytes`, `write_bytes`) does not see it, as bus masters do not on a PC.
//!
//! Any change that moves what an address means (adding or removing a region, toggling A20) bumps
//! [`PhysMap::generation`]: host pointers handed out by `page_backing` and cached in TLBs are
//! stale from then on, and every CPU must flush its TLB before its next access.

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::{all_ones, AccessBytes, GuestRam, PageBacking, PhysBus, RamError, PAGE_MASK, PAGE_SIZE};

/// Priority of RAM regions: everything else overlays them.
pub const PRIORITY_RAM: i32 = 0;
/// Priority of ROM regions (the firmware and its alias): above RAM.
pub const PRIORITY_ROM: i32 = 10;
/// The usual priority of MMIO regions: above RAM and ROM.
pub const PRIORITY_MMIO: i32 = 20;

const FOUR_GIB: u64 = 1 << 32;
const ONE_MIB: u64 = 1 << 20;
/// The largest firmware image mapped below 4 GiB (the flash window of a PC chipset).
pub const MAX_FIRMWARE: u64 = 16 << 20;
/// How much of the firmware's end a PC aliases just below 1 MiB (0xE0000-0xFFFFF).
pub const ISA_BIOS_WINDOW: u64 = 128 << 10;

/// Errors from building or changing the address map.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// Guest RAM could not be created.
    #[error(transparent)]
    Ram(#[from] RamError),
    /// A region is empty or wraps around the end of the address space.
    #[error("region at {base:#x} of {len:#x} bytes is empty or runs past the end of the address space")]
    BadRange {
        /// Where the region starts.
        base: u64,
        /// Its length.
        len: u64,
    },
    /// A RAM region reaches past the end of guest RAM.
    #[error("RAM region reaches {end:#x} bytes into guest RAM, which has {ram:#x}")]
    RamOutOfRange {
        /// The end of the region as an offset into guest RAM.
        end: u64,
        /// The size of guest RAM.
        ram: u64,
    },
    /// A ROM region reaches past the end of its image.
    #[error("ROM region reaches {end:#x} bytes into an image of {image:#x} bytes")]
    RomOutOfRange {
        /// The end of the region as an offset into the image.
        end: u64,
        /// The size of the image.
        image: u64,
    },
    /// The MMIO handler id was not issued by this map.
    #[error("no MMIO handler with id {0}")]
    UnknownMmio(usize),
    /// The region id is not (or no longer) in this map.
    #[error("no region with id {0}")]
    UnknownRegion(usize),
    /// The firmware image has a size the PC cannot map.
    #[error("firmware image is {0} bytes; it must be a non-zero multiple of 4 KiB and at most 16 MiB")]
    FirmwareSize(u64),
    /// More RAM than the PC layout can place below the 40-bit physical address limit.
    #[error("{ram} bytes of guest memory is more than the {max} bytes this machine can map")]
    TooMuchRam {
        /// The requested size.
        ram: u64,
        /// The most this machine maps.
        max: u64,
    },
    /// A loader tried to place data where there is no writable RAM.
    #[error("physical address {0:#x} is not writable RAM")]
    NotRam(u64),
}

/// A device's registers as the address map reaches them.
///
/// `offset` is relative to the base of the region the access hit, `size` is 1, 2, 4 or 8, and
/// the access never leaves the region. `now_ns` is the machine's virtual time (design
/// principle 10), as set with [`PhysMap::set_time`].
pub trait MmioHandler: Send {
    /// Reads `size` bytes at `offset`, little-endian.
    fn read(&mut self, offset: u64, size: AccessBytes, now_ns: u64) -> u64;
    /// Writes the low `size` bytes of `val` at `offset`.
    fn write(&mut self, offset: u64, size: AccessBytes, val: u64, now_ns: u64);
}

/// Names an MMIO handler registered with [`PhysMap::add_mmio_handler`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MmioId(usize);

/// Names a region added with [`PhysMap::add_region`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegionId(usize);

/// What a region of the physical address space is.
#[derive(Clone)]
pub enum RegionKind {
    /// Guest RAM starting at `offset` into the [`GuestRam`] mapping. Read-only RAM (`writable`
    /// false) drops writes, as RAM does when a chipset makes a shadowed BIOS read-only.
    Ram {
        /// Offset into guest RAM of the region's first byte.
        offset: u64,
        /// Whether writes reach the RAM.
        writable: bool,
    },
    /// A read-only image starting at `offset` into `image`; writes are dropped.
    Rom {
        /// The image, shared between aliases.
        image: Arc<[u8]>,
        /// Offset into the image of the region's first byte.
        offset: u64,
    },
    /// A device's registers.
    Mmio(MmioId),
    /// Nothing: hides lower-priority regions (reads all ones, writes dropped).
    Hole,
}

impl fmt::Debug for RegionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegionKind::Ram { offset, writable } => write!(f, "Ram {{ offset: {offset:#x}, writable: {writable} }}"),
            RegionKind::Rom { image, offset } => {
                write!(f, "Rom {{ image: {} bytes, offset: {offset:#x} }}", image.len())
            }
            RegionKind::Mmio(id) => write!(f, "Mmio({})", id.0),
            RegionKind::Hole => write!(f, "Hole"),
        }
    }
}

/// Where the PC puts guest RAM, as QEMU's `pc` (i440FX) machine does.
///
/// RAM starts at address 0. Up to 3.5 GiB (0xE000_0000) it all sits below 4 GiB, leaving
/// 0xE000_0000-0xFFFF_FFFF for the PCI hole (device BARs, the IOAPIC at 0xFEC0_0000, the local
/// APIC at 0xFEE0_0000, the firmware flash just below 4 GiB). With 3.5 GiB or more, QEMU moves
/// the split down to a gigabyte boundary: 3 GiB (0xC000_0000) stays below 4 GiB and the rest
/// continues at 4 GiB (0x1_0000_0000).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcLayout {
    /// Bytes of RAM at 0..below_4g (guest RAM offsets 0..below_4g).
    pub below_4g: u64,
    /// Bytes of RAM at 4 GiB..4 GiB + above_4g (guest RAM offsets below_4g..).
    pub above_4g: u64,
}

impl PcLayout {
    /// RAM sizes below this fit entirely below the PCI hole.
    pub const MAX_BELOW_4G: u64 = 0xE000_0000;
    /// Where RAM is split when it does not all fit below the PCI hole.
    pub const SPLIT_BELOW_4G: u64 = 0xC000_0000;
    /// Where the RAM above the PCI hole starts.
    pub const HIGH_RAM_BASE: u64 = FOUR_GIB;
    /// The most RAM the layout maps: high RAM must end within 40 physical address bits.
    pub const MAX_RAM: u64 = (1 << 40) - FOUR_GIB + Self::SPLIT_BELOW_4G;

    /// The layout for `ram` bytes of guest RAM.
    pub fn for_ram(ram: u64) -> Self {
        if ram >= Self::MAX_BELOW_4G {
            PcLayout { below_4g: Self::SPLIT_BELOW_4G, above_4g: ram - Self::SPLIT_BELOW_4G }
        } else {
            PcLayout { below_4g: ram, above_4g: 0 }
        }
    }
}

/// The two ROM regions of a PC firmware image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirmwareRegions {
    /// The whole image, ending at 4 GiB.
    pub high: RegionId,
    /// Its last 128 KiB (or the whole image if smaller), ending at 1 MiB.
    pub isa: RegionId,
}

#[derive(Clone, Debug)]
struct Region {
    base: u64,
    len: u64,
    kind: RegionKind,
    priority: i32,
    /// Insertion order: breaks priority ties in favour of the newest region.
    order: u64,
}

/// A stretch of the address space answered by one region.
#[derive(Clone, Copy, Debug)]
struct Segment {
    start: u64,
    /// Exclusive.
    end: u64,
    region: usize,
}

/// Where one access lands, resolved from the segment list.
#[derive(Clone, Copy, Debug)]
enum Place {
    Ram { offset: u64, writable: bool },
    Rom { region: usize, offset: u64 },
    Mmio { handler: usize, offset: u64 },
}

enum Lookup {
    In(Place),
    Hole,
    /// The access straddles a segment boundary: do it a byte at a time.
    Split,
}

/// The physical address space of a machine: guest RAM, ROMs, MMIO and holes, and the A20 gate.
pub struct PhysMap {
    ram: GuestRam,
    regions: Vec<Option<Region>>,
    next_order: u64,
    flat: Vec<Segment>,
    handlers: Vec<Box<dyn MmioHandler>>,
    a20: bool,
    /// One bit per page of guest RAM: the page holds translated code.
    code: Vec<u64>,
    /// Code pages written since the translator last looked (physical page addresses).
    code_writes: Vec<u64>,
    generation: u64,
    now_ns: u64,
}

impl fmt::Debug for PhysMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhysMap")
            .field("ram_bytes", &self.ram.len())
            .field("regions", &self.regions.iter().flatten().collect::<Vec<_>>())
            .field("mmio_handlers", &self.handlers.len())
            .field("a20", &self.a20)
            .field("generation", &self.generation)
            .finish()
    }
}

impl PhysMap {
    /// An empty map over `ram`: every address is a hole until regions are added. A20 is enabled.
    pub fn new(ram: GuestRam) -> Self {
        let pages = ram.len() / PAGE_SIZE;
        PhysMap {
            ram,
            regions: Vec::new(),
            next_order: 0,
            flat: Vec::new(),
            handlers: Vec::new(),
            a20: true,
            code: vec![0; pages.div_ceil(64) as usize],
            code_writes: Vec::new(),
            generation: 0,
            now_ns: 0,
        }
    }

    /// A PC's map: `ram_bytes` of zeroed RAM placed as [`PcLayout`] says. Firmware and devices
    /// are added by the machine.
    pub fn pc(ram_bytes: u64) -> Result<Self, MapError> {
        if ram_bytes > PcLayout::MAX_RAM {
            return Err(MapError::TooMuchRam { ram: ram_bytes, max: PcLayout::MAX_RAM });
        }
        let layout = PcLayout::for_ram(ram_bytes);
        let mut map = PhysMap::new(GuestRam::new(ram_bytes)?);
        map.add_region(0, layout.below_4g, RegionKind::Ram { offset: 0, writable: true }, PRIORITY_RAM)?;
        if layout.above_4g > 0 {
            map.add_region(
                PcLayout::HIGH_RAM_BASE,
                layout.above_4g,
                RegionKind::Ram { offset: layout.below_4g, writable: true },
                PRIORITY_RAM,
            )?;
        }
        Ok(map)
    }

    /// Guest RAM itself.
    pub fn ram(&self) -> &GuestRam {
        &self.ram
    }

    /// Counts changes of what addresses mean; a TLB filled under an older generation is stale.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Sets the virtual time handed to MMIO handlers.
    pub fn set_time(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
    }

    /// Whether the A20 gate lets bit 20 of CPU addresses through.
    pub fn a20_enabled(&self) -> bool {
        self.a20
    }

    /// Opens or closes the A20 gate. A change bumps the generation: CPUs must flush their TLBs.
    pub fn set_a20(&mut self, enabled: bool) {
        if self.a20 != enabled {
            self.a20 = enabled;
            self.generation += 1;
        }
    }

    /// The address a CPU access to `addr` really reaches.
    #[inline]
    fn cpu_addr(&self, addr: u64) -> u64 {
        if self.a20 {
            addr
        } else {
            addr & !ONE_MIB
        }
    }

    /// Registers a device's MMIO handler; map it with [`RegionKind::Mmio`].
    pub fn add_mmio_handler(&mut self, handler: Box<dyn MmioHandler>) -> MmioId {
        self.handlers.push(handler);
        MmioId(self.handlers.len() - 1)
    }

    /// The handler registered as `id`, so the machine can reach the device's state.
    pub fn mmio_handler_mut(&mut self, id: MmioId) -> Option<&mut (dyn MmioHandler + 'static)> {
        self.handlers.get_mut(id.0).map(|h| h.as_mut())
    }

    /// Adds a region of `len` bytes at `base`. Where regions overlap, the highest `priority`
    /// wins, and among equal priorities the region added last.
    pub fn add_region(&mut self, base: u64, len: u64, kind: RegionKind, priority: i32) -> Result<RegionId, MapError> {
        if len == 0 || base.checked_add(len).is_none() {
            return Err(MapError::BadRange { base, len });
        }
        match &kind {
            RegionKind::Ram { offset, .. } => {
                let end = offset.checked_add(len).unwrap_or(u64::MAX);
                if end > self.ram.len() {
                    return Err(MapError::RamOutOfRange { end, ram: self.ram.len() });
                }
            }
            RegionKind::Rom { image, offset } => {
                let end = offset.checked_add(len).unwrap_or(u64::MAX);
                if end > image.len() as u64 {
                    return Err(MapError::RomOutOfRange { end, image: image.len() as u64 });
                }
            }
            RegionKind::Mmio(id) => {
                if id.0 >= self.handlers.len() {
                    return Err(MapError::UnknownMmio(id.0));
                }
            }
            RegionKind::Hole => {}
        }
        let order = self.next_order;
        self.next_order += 1;
        self.regions.push(Some(Region { base, len, kind, priority, order }));
        self.rebuild();
        Ok(RegionId(self.regions.len() - 1))
    }

    /// Removes a region; whatever it covered falls back to lower-priority regions or holes.
    pub fn remove_region(&mut self, id: RegionId) -> Result<(), MapError> {
        match self.regions.get_mut(id.0) {
            Some(slot @ Some(_)) => {
                *slot = None;
                self.rebuild();
                Ok(())
            }
            _ => Err(MapError::UnknownRegion(id.0)),
        }
    }

    /// Maps a PC firmware image read-only so that it ends at 4 GiB, and aliases its last 128 KiB
    /// (all of it, if smaller) so that it ends at 1 MiB (0xE0000-0xFFFFF for a 128 KiB window),
    /// where the CPU's first instructions and the real-mode BIOS entry points are found.
    pub fn map_firmware(&mut self, image: Vec<u8>) -> Result<FirmwareRegions, MapError> {
        let len = image.len() as u64;
        if len == 0 || !len.is_multiple_of(PAGE_SIZE) || len > MAX_FIRMWARE {
            return Err(MapError::FirmwareSize(len));
        }
        let image: Arc<[u8]> = image.into();
        let high =
            self.add_region(FOUR_GIB - len, len, RegionKind::Rom { image: image.clone(), offset: 0 }, PRIORITY_ROM)?;
        let isa_len = len.min(ISA_BIOS_WINDOW);
        let isa = self.add_region(
            ONE_MIB - isa_len,
            isa_len,
            RegionKind::Rom { image, offset: len - isa_len },
            PRIORITY_ROM,
        )?;
        Ok(FirmwareRegions { high, isa })
    }

    /// Recomputes the flat segment list after the regions changed.
    fn rebuild(&mut self) {
        let live: Vec<(usize, &Region)> =
            self.regions.iter().enumerate().filter_map(|(i, r)| r.as_ref().map(|r| (i, r))).collect();
        let mut edges: Vec<u64> = live.iter().flat_map(|(_, r)| [r.base, r.base + r.len]).collect();
        edges.sort_unstable();
        edges.dedup();
        let mut flat: Vec<Segment> = Vec::new();
        for w in edges.windows(2) {
            let (start, end) = (w[0], w[1]);
            let winner = live
                .iter()
                .filter(|(_, r)| r.base <= start && end <= r.base + r.len)
                .max_by_key(|(_, r)| (r.priority, r.order));
            let Some(&(index, region)) = winner else { continue };
            if matches!(region.kind, RegionKind::Hole) {
                continue;
            }
            match flat.last_mut() {
                Some(last) if last.region == index && last.end == start => last.end = end,
                _ => flat.push(Segment { start, end, region: index }),
            }
        }
        self.flat = flat;
        self.generation += 1;
    }

    /// The segment holding `addr`, if any.
    #[inline]
    fn segment(&self, addr: u64) -> Option<&Segment> {
        let i = self.flat.partition_point(|s| s.start <= addr);
        let s = self.flat.get(i.checked_sub(1)?)?;
        (addr < s.end).then_some(s)
    }

    /// The start of the first segment above `addr`, if any.
    fn next_segment_start(&self, addr: u64) -> Option<u64> {
        let i = self.flat.partition_point(|s| s.start <= addr);
        self.flat.get(i).map(|s| s.start)
    }

    /// Where byte `addr` of segment `seg` lands.
    fn place(&self, seg: &Segment, addr: u64) -> Option<Place> {
        let region = self.regions.get(seg.region)?.as_ref()?;
        let off = addr - region.base;
        Some(match &region.kind {
            RegionKind::Ram { offset, writable } => Place::Ram { offset: offset + off, writable: *writable },
            RegionKind::Rom { offset, .. } => Place::Rom { region: seg.region, offset: offset + off },
            RegionKind::Mmio(id) => Place::Mmio { handler: id.0, offset: off },
            RegionKind::Hole => return None,
        })
    }

    /// Resolves an access of `len` bytes at `addr` (already A20-masked).
    fn lookup(&self, addr: u64, len: u64) -> Lookup {
        let end = addr.checked_add(len);
        match self.segment(addr) {
            Some(seg) => match end {
                Some(e) if e <= seg.end => self.place(seg, addr).map_or(Lookup::Hole, Lookup::In),
                _ => Lookup::Split,
            },
            None => match (self.next_segment_start(addr), end) {
                (Some(next), Some(e)) if next >= e => Lookup::Hole,
                (None, _) => Lookup::Hole,
                _ => Lookup::Split,
            },
        }
    }

    fn rom_image(&self, region: usize) -> Option<&[u8]> {
        match &self.regions.get(region)?.as_ref()?.kind {
            RegionKind::Rom { image, .. } => Some(image),
            _ => None,
        }
    }

    fn read_at(&mut self, addr: u64, size: AccessBytes) -> u64 {
        match self.lookup(addr, u64::from(size)) {
            Lookup::In(Place::Ram { offset, .. }) => self.ram.read(offset, size),
            Lookup::In(Place::Rom { region, offset }) => {
                let image = self.rom_image(region).unwrap_or(&[]);
                (0..u64::from(size)).fold(0, |v, k| {
                    let byte = usize::try_from(offset + k).ok().and_then(|i| image.get(i)).copied().unwrap_or(0xff);
                    v | u64::from(byte) << (8 * k)
                })
            }
            Lookup::In(Place::Mmio { handler, offset }) => match self.handlers.get_mut(handler) {
                Some(h) => h.read(offset, size, self.now_ns) & all_ones(size),
                None => all_ones(size),
            },
            Lookup::Hole => all_ones(size),
            Lookup::Split => (0..u64::from(size)).fold(0, |v, k| v | self.read_at(addr.wrapping_add(k), 1) << (8 * k)),
        }
    }

    fn write_at(&mut self, addr: u64, size: AccessBytes, val: u64) {
        match self.lookup(addr, u64::from(size)) {
            Lookup::In(Place::Ram { offset, writable: true }) => {
                self.ram.write(offset, size, val);
                self.note_ram_write(offset, u64::from(size), addr);
            }
            Lookup::In(Place::Mmio { handler, offset }) => {
                let now = self.now_ns;
                if let Some(h) = self.handlers.get_mut(handler) {
                    h.write(offset, size, val & all_ones(size), now);
                }
            }
            Lookup::In(Place::Ram { writable: false, .. } | Place::Rom { .. }) | Lookup::Hole => {}
            Lookup::Split => {
                for k in 0..u64::from(size) {
                    self.write_at(addr.wrapping_add(k), 1, val >> (8 * k));
                }
            }
        }
    }

    /// Records writes to code pages among the RAM pages `ram_offset..ram_offset+len`, which the
    /// bus reached at physical `phys`.
    fn note_ram_write(&mut self, ram_offset: u64, len: u64, phys: u64) {
        if len == 0 {
            return;
        }
        let first = ram_offset / PAGE_SIZE;
        let last = (ram_offset + len - 1) / PAGE_SIZE;
        for page in first..=last {
            if self.code_bit(page) {
                self.set_code_bit(page, false);
                let page_phys = (phys & PAGE_MASK).wrapping_add((page - first) * PAGE_SIZE);
                self.code_writes.push(page_phys);
            }
        }
    }

    #[inline]
    fn code_bit(&self, ram_page: u64) -> bool {
        let word = (ram_page / 64) as usize;
        self.code.get(word).is_some_and(|w| w & (1 << (ram_page % 64)) != 0)
    }

    fn set_code_bit(&mut self, ram_page: u64, on: bool) {
        if let Some(w) = self.code.get_mut((ram_page / 64) as usize) {
            let bit = 1u64 << (ram_page % 64);
            if on {
                *w |= bit;
            } else {
                *w &= !bit;
            }
        }
    }

    /// The guest RAM offset a CPU access to `paddr` reaches, if it reaches RAM.
    fn cpu_ram_offset(&self, paddr: u64) -> Option<u64> {
        let addr = self.cpu_addr(paddr);
        match self.place(self.segment(addr)?, addr)? {
            Place::Ram { offset, .. } => Some(offset),
            _ => None,
        }
    }

    /// Whether the page holding CPU address `paddr` is marked as holding translated code.
    pub fn is_code_page(&self, paddr: u64) -> bool {
        self.cpu_ram_offset(paddr).is_some_and(|o| self.code_bit(o / PAGE_SIZE))
    }

    /// Copies `data` into RAM at physical `addr` for a loader; fails, writing nothing, unless
    /// every byte lands in writable RAM.
    pub fn load(&mut self, addr: u64, data: &[u8]) -> Result<(), MapError> {
        let mut done = 0u64;
        let total = data.len() as u64;
        while done < total {
            let cur = addr.checked_add(done).ok_or(MapError::NotRam(addr))?;
            let seg = self.segment(cur).ok_or(MapError::NotRam(cur))?;
            match self.place(seg, cur) {
                Some(Place::Ram { writable: true, .. }) => done += (seg.end - cur).min(total - done),
                _ => return Err(MapError::NotRam(cur)),
            }
        }
        self.write_bytes(addr, data);
        Ok(())
    }

    /// A host pointer to `len` bytes of RAM at physical `addr` (no A20), if they are all in one
    /// RAM region. For devices that stream to or from guest memory themselves: the memory may
    /// change under them at any time, so use raw-pointer copies, never slices (principle 8).
    /// Writes through it bypass code-page tracking; report them with
    /// [`PhysMap::note_dma_write`].
    pub fn ram_ptr(&self, addr: u64, len: u64) -> Option<NonNull<u8>> {
        let seg = self.segment(addr)?;
        if addr.checked_add(len)? > seg.end {
            return None;
        }
        match self.place(seg, addr)? {
            Place::Ram { offset, .. } => NonNull::new(self.ram.host_ptr(offset, len)?),
            _ => None,
        }
    }

    /// Tells the map that `len` bytes at physical `addr` were written behind its back (through
    /// [`PhysMap::ram_ptr`]), so writes to code pages are noticed.
    pub fn note_dma_write(&mut self, addr: u64, len: u64) {
        let mut done = 0;
        while done < len {
            let cur = addr.wrapping_add(done);
            let chunk = (PAGE_SIZE - (cur & !PAGE_MASK)).min(len - done);
            if let Some(seg) = self.segment(cur) {
                if let Some(Place::Ram { offset, .. }) = self.place(seg, cur) {
                    self.note_ram_write(offset, 1, cur);
                }
            }
            done += chunk;
        }
    }
}

impl PhysBus for PhysMap {
    #[inline]
    fn read_phys(&mut self, addr: u64, size: AccessBytes) -> u64 {
        self.read_at(self.cpu_addr(addr), size)
    }

    #[inline]
    fn write_phys(&mut self, addr: u64, size: AccessBytes, val: u64) {
        self.write_at(self.cpu_addr(addr), size, val);
    }

    fn page_backing(&self, paddr: u64) -> PageBacking {
        let page = self.cpu_addr(paddr) & PAGE_MASK;
        let bus = PageBacking::bus(page);
        let Some(seg) = self.segment(page) else { return bus };
        if page.checked_add(PAGE_SIZE).is_none_or(|end| end > seg.end) {
            return bus;
        }
        match self.place(seg, page) {
            Some(Place::Ram { offset, writable }) => {
                match self.ram.host_ptr(offset, PAGE_SIZE).and_then(NonNull::new) {
                    Some(host) => {
                        PageBacking { phys: page, host: Some(host), writable, code: self.code_bit(offset / PAGE_SIZE) }
                    }
                    None => bus,
                }
            }
            Some(Place::Rom { region, offset }) => {
                let host = usize::try_from(offset)
                    .ok()
                    .and_then(|o| self.rom_image(region)?.get(o..o + PAGE_SIZE as usize))
                    // The pointer is only ever read through: `writable` is false, so no TLB
                    // entry gives it a direct write path.
                    .and_then(|page_bytes| NonNull::new(page_bytes.as_ptr().cast_mut()));
                PageBacking { phys: page, host, writable: false, code: false }
            }
            _ => bus,
        }
    }

    fn read_bytes(&mut self, addr: u64, buf: &mut [u8]) {
        let mut done = 0usize;
        while done < buf.len() {
            let cur = addr.wrapping_add(done as u64);
            let left = (buf.len() - done) as u64;
            let Some(&seg) = self.segment(cur) else {
                let n = self.next_segment_start(cur).map_or(left, |next| (next - cur).min(left)) as usize;
                buf[done..done + n].fill(0xff);
                done += n;
                continue;
            };
            let n = (seg.end - cur).min(left) as usize;
            let out = &mut buf[done..done + n];
            match self.place(&seg, cur) {
                Some(Place::Ram { offset, .. }) => {
                    if !self.ram.read_bytes(offset, out) {
                        out.fill(0xff);
                    }
                }
                Some(Place::Rom { region, offset }) => {
                    let image = self.rom_image(region).unwrap_or(&[]);
                    for (k, b) in out.iter_mut().enumerate() {
                        *b = usize::try_from(offset).ok().and_then(|o| image.get(o + k)).copied().unwrap_or(0xff);
                    }
                }
                Some(Place::Mmio { handler, offset }) => {
                    let now = self.now_ns;
                    for (k, b) in out.iter_mut().enumerate() {
                        *b = match self.handlers.get_mut(handler) {
                            Some(h) => h.read(offset + k as u64, 1, now) as u8,
                            None => 0xff,
                        };
                    }
                }
                None => out.fill(0xff),
            }
            done += n;
        }
    }

    fn write_bytes(&mut self, addr: u64, data: &[u8]) {
        let mut done = 0usize;
        while done < data.len() {
            let cur = addr.wrapping_add(done as u64);
            let left = (data.len() - done) as u64;
            let Some(&seg) = self.segment(cur) else {
                done += self.next_segment_start(cur).map_or(left, |next| (next - cur).min(left)) as usize;
                continue;
            };
            let n = (seg.end - cur).min(left) as usize;
            let chunk = &data[done..done + n];
            match self.place(&seg, cur) {
                Some(Place::Ram { offset, writable: true }) => {
                    // The segment lies inside guest RAM (checked when the region was added),
                    // so the copy cannot fall short.
                    self.ram.write_bytes(offset, chunk);
                    self.note_ram_write(offset, n as u64, cur);
                }
                Some(Place::Mmio { handler, offset }) => {
                    let now = self.now_ns;
                    if let Some(h) = self.handlers.get_mut(handler) {
                        for (k, &b) in chunk.iter().enumerate() {
                            h.write(offset + k as u64, 1, u64::from(b), now);
                        }
                    }
                }
                _ => {}
            }
            done += n;
        }
    }

    fn set_code_page(&mut self, paddr: u64, code: bool) -> bool {
        match self.cpu_ram_offset(paddr) {
            Some(offset) => {
                self.set_code_bit(offset / PAGE_SIZE, code);
                true
            }
            None => false,
        }
    }

    fn take_code_write(&mut self) -> Option<u64> {
        self.code_writes.pop()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    /// Accesses seen by a [`Probe`]: ('r' or 'w', offset, size, value).
    type Log = Arc<Mutex<Vec<(char, u64, u8, u64)>>>;

    /// An MMIO device that records accesses and answers reads with offset + size.
    #[derive(Default)]
    struct Probe {
        log: Log,
    }

    impl MmioHandler for Probe {
        fn read(&mut self, offset: u64, size: AccessBytes, _now: u64) -> u64 {
            self.log.lock().expect("log").push(('r', offset, size, 0));
            0x1000 + offset + u64::from(size)
        }
        fn write(&mut self, offset: u64, size: AccessBytes, val: u64, now: u64) {
            self.log.lock().expect("log").push(('w', offset, size, val ^ (now << 32)));
        }
    }

    fn small_map(ram: u64) -> PhysMap {
        let mut map = PhysMap::new(GuestRam::new(ram).expect("ram"));
        map.add_region(0, ram, RegionKind::Ram { offset: 0, writable: true }, PRIORITY_RAM).expect("ram region");
        map
    }

    fn firmware(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i / 4096) as u8 ^ (i as u8)).collect()
    }

    #[test]
    fn pc_layout_splits_ram_as_qemu_pc_does() {
        assert_eq!(PcLayout::for_ram(512 * MIB), PcLayout { below_4g: 512 * MIB, above_4g: 0 });
        assert_eq!(PcLayout::for_ram(3 * GIB), PcLayout { below_4g: 3 * GIB, above_4g: 0 });
        assert_eq!(PcLayout::for_ram(0xDFFF_F000), PcLayout { below_4g: 0xDFFF_F000, above_4g: 0 });
        assert_eq!(PcLayout::for_ram(0xE000_0000), PcLayout { below_4g: 3 * GIB, above_4g: GIB / 2 });
        assert_eq!(PcLayout::for_ram(8 * GIB), PcLayout { below_4g: 3 * GIB, above_4g: 5 * GIB });
        assert!(matches!(PhysMap::pc(PcLayout::MAX_RAM + 4096), Err(MapError::TooMuchRam { .. })));
    }

    #[test]
    fn pc_map_has_ram_from_zero_and_holes_above_it() {
        let mut map = PhysMap::pc(2 * MIB).expect("map");
        map.write_phys(0x1234, 4, 0xdead_beef);
        assert_eq!(map.read_phys(0x1234, 4), 0xdead_beef);
        assert_eq!(map.read_phys(0x1236, 2), 0xdead);
        assert_eq!(map.read_phys(2 * MIB, 4), 0xffff_ffff);
        assert_eq!(map.read_phys(2 * MIB - 2, 4), 0xffff_0000, "half RAM, half hole");
        map.write_phys(2 * MIB, 8, 0);
        assert_eq!(map.read_phys(2 * MIB, 8), u64::MAX);
    }

    #[test]
    fn high_ram_continues_the_guest_ram_offsets() {
        // The real split is at 3 GiB; a small map with the same shape exercises the same path.
        let mut map = PhysMap::new(GuestRam::new(3 * MIB).expect("ram"));
        map.add_region(0, 2 * MIB, RegionKind::Ram { offset: 0, writable: true }, PRIORITY_RAM).expect("low");
        map.add_region(FOUR_GIB, MIB, RegionKind::Ram { offset: 2 * MIB, writable: true }, PRIORITY_RAM).expect("high");
        map.write_phys(FOUR_GIB + 8, 8, 0x0102_0304_0506_0708);
        assert_eq!(map.ram().read(2 * MIB + 8, 8), 0x0102_0304_0506_0708);
        assert_eq!(map.read_phys(2 * MIB, 1), 0xff, "the PCI hole reads all ones");
    }

    #[test]
    fn firmware_ends_at_4g_and_its_tail_is_aliased_below_1m_read_only() {
        let mut map = PhysMap::pc(2 * MIB).expect("map");
        let image = firmware(256 << 10);
        map.map_firmware(image.clone()).expect("firmware");
        let base = FOUR_GIB - image.len() as u64;
        assert_eq!(map.read_phys(base, 1), u64::from(image[0]));
        assert_eq!(
            map.read_phys(FOUR_GIB - 16, 8),
            u64::from_le_bytes(image[image.len() - 16..][..8].try_into().expect("8"))
        );
        // The last 128 KiB appear at 0xE0000..0x100000.
        let tail = image.len() - (128 << 10);
        assert_eq!(map.read_phys(0xe0000, 1), u64::from(image[tail]));
        assert_eq!(map.read_phys(0xffff0, 1), u64::from(image[image.len() - 16]));
        // Writes to ROM are dropped; the RAM below the alias is untouched and unseen.
        map.write_phys(0xffff0, 1, 0x55);
        map.write_phys(FOUR_GIB - 16, 1, 0x55);
        assert_eq!(map.read_phys(0xffff0, 1), u64::from(image[image.len() - 16]));
        assert_eq!(map.read_phys(FOUR_GIB - 16, 1), u64::from(image[image.len() - 16]));
        assert_eq!(map.ram().read(0xffff0, 1), 0);
        // Just below the alias is RAM again.
        map.write_phys(0xdfff0, 1, 0x77);
        assert_eq!(map.read_phys(0xdfff0, 1), 0x77);
    }

    #[test]
    fn a_small_firmware_is_aliased_whole_so_it_still_ends_at_1m() {
        let mut map = PhysMap::pc(2 * MIB).expect("map");
        let image = firmware(64 << 10);
        map.map_firmware(image.clone()).expect("firmware");
        assert_eq!(map.read_phys(0xf0000, 1), u64::from(image[0]));
        map.write_phys(0xe0000, 1, 0x12);
        assert_eq!(map.read_phys(0xe0000, 1), 0x12, "0xE0000 is still RAM");
    }

    #[test]
    fn bad_firmware_sizes_are_refused() {
        let mut map = PhysMap::pc(2 * MIB).expect("map");
        assert!(matches!(map.map_firmware(Vec::new()), Err(MapError::FirmwareSize(0))));
        assert!(matches!(map.map_firmware(vec![0; 1000]), Err(MapError::FirmwareSize(1000))));
        assert!(matches!(map.map_firmware(vec![0; 32 << 20]), Err(MapError::FirmwareSize(_))));
    }

    #[test]
    fn removing_the_isa_alias_reveals_the_ram_underneath() {
        let mut map = PhysMap::pc(2 * MIB).expect("map");
        let regions = map.map_firmware(firmware(128 << 10)).expect("firmware");
        let before = map.generation();
        map.remove_region(regions.isa).expect("remove");
        assert!(map.generation() > before);
        map.write_phys(0xf0000, 2, 0xabcd);
        assert_eq!(map.read_phys(0xf0000, 2), 0xabcd);
        assert!(matches!(map.remove_region(regions.isa), Err(MapError::UnknownRegion(_))));
    }

    #[test]
    fn mmio_regions_get_offsets_sizes_and_time() {
        let mut map = small_map(MIB);
        let probe = Probe::default();
        let log = probe.log.clone();
        let id = map.add_mmio_handler(Box::new(probe));
        map.add_region(0xa0000, 0x20000, RegionKind::Mmio(id), PRIORITY_MMIO).expect("vga");
        map.set_time(7);
        assert_eq!(map.read_phys(0xa0010, 2), 0x1012);
        map.write_phys(0xbfff8, 8, 0x55);
        assert_eq!(map.read_phys(0xc0000, 1), 0, "RAM resumes after the window");
        let log = log.lock().expect("log").clone();
        assert_eq!(log, vec![('r', 0x10, 2, 0), ('w', 0x1fff8, 8, 0x55 ^ (7 << 32))]);
    }

    #[test]
    fn an_unknown_mmio_id_is_refused() {
        let mut map = small_map(MIB);
        let mut other = small_map(MIB);
        let id = other.add_mmio_handler(Box::new(Probe::default()));
        assert!(matches!(map.add_region(0, 4096, RegionKind::Mmio(id), 5), Err(MapError::UnknownMmio(0))));
    }

    #[test]
    fn priorities_decide_overlaps_and_ties_go_to_the_newest() {
        let mut map = small_map(MIB);
        let rom: Arc<[u8]> = vec![0x11; 8192].into();
        let rom2: Arc<[u8]> = vec![0x22; 8192].into();
        map.add_region(0x2000, 0x2000, RegionKind::Rom { image: rom, offset: 0 }, PRIORITY_ROM).expect("rom");
        assert_eq!(map.read_phys(0x2000, 1), 0x11);
        let low = map.add_region(0x3000, 0x1000, RegionKind::Hole, PRIORITY_RAM).expect("low hole");
        assert_eq!(map.read_phys(0x3000, 1), 0x11, "a lower-priority hole is hidden");
        map.add_region(0x3000, 0x1000, RegionKind::Rom { image: rom2, offset: 0 }, PRIORITY_ROM).expect("rom2");
        assert_eq!(map.read_phys(0x3000, 1), 0x22, "the newest of equal priority wins");
        map.add_region(0x2000, 0x1000, RegionKind::Hole, PRIORITY_MMIO).expect("hole");
        assert_eq!(map.read_phys(0x2000, 4), 0xffff_ffff);
        map.remove_region(low).expect("remove");
        assert_eq!(map.read_phys(0x3000, 1), 0x22);
    }

    #[test]
    fn bad_regions_are_refused() {
        let mut map = small_map(MIB);
        assert!(matches!(map.add_region(0, 0, RegionKind::Hole, 0), Err(MapError::BadRange { .. })));
        assert!(matches!(map.add_region(u64::MAX, 2, RegionKind::Hole, 0), Err(MapError::BadRange { .. })));
        assert!(matches!(
            map.add_region(0, 4096, RegionKind::Ram { offset: MIB, writable: true }, 0),
            Err(MapError::RamOutOfRange { .. })
        ));
        let rom: Arc<[u8]> = vec![0; 4096].into();
        assert!(matches!(
            map.add_region(0, 8192, RegionKind::Rom { image: rom, offset: 0 }, 0),
            Err(MapError::RomOutOfRange { .. })
        ));
    }

    #[test]
    fn read_only_ram_drops_writes() {
        let mut map = small_map(MIB);
        map.write_phys(0xf0000, 4, 0x1234_5678);
        map.add_region(0xf0000, 0x10000, RegionKind::Ram { offset: 0xf0000, writable: false }, PRIORITY_ROM)
            .expect("shadow");
        map.write_phys(0xf0000, 4, 0);
        assert_eq!(map.read_phys(0xf0000, 4), 0x1234_5678);
        let b = map.page_backing(0xf0000);
        assert!(b.host.is_some() && !b.writable);
    }

    #[test]
    fn accesses_straddling_a_region_edge_are_split_per_byte() {
        let mut map = small_map(MIB);
        let rom: Arc<[u8]> = vec![0xaa; 0x10].into();
        map.add_region(0x1008, 0x4, RegionKind::Rom { image: rom, offset: 0 }, PRIORITY_ROM).expect("rom");
        map.write_phys(0x1004, 8, u64::MAX);
        assert_eq!(map.read_phys(0x1004, 8), 0xaaaa_aaaa_ffff_ffff);
        // A page shared by two regions is not handed out for direct access.
        assert_eq!(map.page_backing(0x1000).host, None);
        assert!(map.page_backing(0x2000).host.is_some());
    }

    #[test]
    fn the_a20_gate_folds_bit_20_for_the_cpu_but_not_for_dma() {
        let mut map = small_map(4 * MIB);
        map.write_phys(0x10_0010, 1, 0x42);
        map.write_phys(0x10, 1, 0x24);
        let g = map.generation();
        map.set_a20(false);
        assert!(map.generation() > g);
        assert!(!map.a20_enabled());
        assert_eq!(map.read_phys(0x10_0010, 1), 0x24);
        assert_eq!(map.read_phys(0x30_0010, 1), map.read_phys(0x20_0010, 1));
        assert_eq!(map.page_backing(0x10_0000).phys, 0);
        let mut buf = [0u8; 1];
        map.read_bytes(0x10_0010, &mut buf);
        assert_eq!(buf[0], 0x42, "DMA does not see the A20 gate");
        map.set_a20(true);
        assert_eq!(map.read_phys(0x10_0010, 1), 0x42);
    }

    #[test]
    fn page_backing_gives_ram_pages_a_host_pointer_and_mmio_none() {
        let mut map = small_map(MIB);
        let id = map.add_mmio_handler(Box::new(Probe::default()));
        map.add_region(0xa0000, 0x20000, RegionKind::Mmio(id), PRIORITY_MMIO).expect("mmio");
        let b = map.page_backing(0x5123);
        assert_eq!(b.phys, 0x5000);
        assert_eq!(b.host.map(|p| p.as_ptr()), map.ram().host_ptr(0x5000, 4096));
        assert!(b.writable && !b.code);
        assert_eq!(map.page_backing(0xa0000), PageBacking::bus(0xa0000));
        assert_eq!(map.page_backing(0x20_0000), PageBacking::bus(0x20_0000));
    }

    #[test]
    fn rom_pages_are_readable_directly_but_never_writable() {
        let mut map = PhysMap::pc(2 * MIB).expect("map");
        let image = firmware(128 << 10);
        map.map_firmware(image.clone()).expect("firmware");
        let b = map.page_backing(0xff000);
        assert!(!b.writable);
        let host = b.host.expect("ROM is direct for reads");
        // SAFETY: the pointer covers the whole 4 KiB page of the ROM image, which the map keeps
        // alive; this test only reads it.
        let first = unsafe { host.as_ptr().read() };
        assert_eq!(first, image[image.len() - 4096]);
    }

    #[test]
    fn writes_to_code_pages_are_reported_once_from_cpu_and_dma() {
        let mut map = small_map(MIB);
        assert!(map.set_code_page(0x3000, true));
        assert!(map.is_code_page(0x3fff));
        assert!(map.page_backing(0x3000).code);
        map.write_phys(0x2ff8, 8, 1);
        assert_eq!(map.take_code_write(), None, "another page");
        map.write_phys(0x3008, 2, 1);
        assert_eq!(map.take_code_write(), Some(0x3000));
        assert!(!map.is_code_page(0x3000), "a written page is no longer a code page");
        map.write_phys(0x3008, 2, 1);
        assert_eq!(map.take_code_write(), None);
        // DMA across two code pages.
        map.set_code_page(0x4000, true);
        map.set_code_page(0x5000, true);
        map.write_bytes(0x4ff0, &[0; 0x20]);
        let mut written = [map.take_code_write(), map.take_code_write()];
        written.sort();
        assert_eq!(written, [Some(0x4000), Some(0x5000)]);
        // Pages that are not RAM are not tracked.
        assert!(!map.set_code_page(0x20_0000, true));
        // Writes behind the map's back are reported by the device.
        map.set_code_page(0x6000, true);
        map.note_dma_write(0x5ff0, 0x20);
        assert_eq!(map.take_code_write(), Some(0x6000));
    }

    #[test]
    fn dma_crosses_ram_holes_rom_and_mmio() {
        let mut map = PhysMap::new(GuestRam::new(MIB).expect("ram"));
        map.add_region(0, 0x1000, RegionKind::Ram { offset: 0, writable: true }, PRIORITY_RAM).expect("ram");
        let rom: Arc<[u8]> = vec![0x5a; 0x1000].into();
        map.add_region(0x2000, 0x1000, RegionKind::Rom { image: rom, offset: 0 }, PRIORITY_ROM).expect("rom");
        let probe = Probe::default();
        let log = probe.log.clone();
        let id = map.add_mmio_handler(Box::new(probe));
        map.add_region(0x3000, 0x10, RegionKind::Mmio(id), PRIORITY_MMIO).expect("mmio");

        let data: Vec<u8> = (0..0x3002u32).map(|i| i as u8).collect();
        map.write_bytes(0, &data);
        let mut back = vec![0u8; 0x3002];
        map.read_bytes(0, &mut back);
        assert_eq!(back[..0x1000], data[..0x1000]);
        assert!(back[0x1000..0x2000].iter().all(|&b| b == 0xff), "hole");
        assert!(back[0x2000..0x3000].iter().all(|&b| b == 0x5a), "ROM is unchanged");
        assert_eq!(back[0x3000..], [0x01, 0x02], "MMIO answers offset + size per byte");
        let log = log.lock().expect("log").clone();
        assert_eq!(log[..2], [('w', 0, 1, 0), ('w', 1, 1, 1)]);
    }

    #[test]
    fn loaders_may_only_write_ram() {
        let mut map = PhysMap::pc(2 * MIB).expect("map");
        map.map_firmware(firmware(64 << 10)).expect("firmware");
        map.load(0x10_0000, &[1, 2, 3]).expect("RAM");
        assert_eq!(map.read_phys(0x10_0000, 4), 0x0003_0201);
        assert!(matches!(map.load(2 * MIB - 1, &[1, 2]), Err(MapError::NotRam(a)) if a == 2 * MIB));
        assert!(matches!(map.load(0xeffff, &[1, 2]), Err(MapError::NotRam(0xf0000))));
        assert_eq!(map.read_phys(0xeffff, 1), 0, "a failed load writes nothing");
    }

    #[test]
    fn ram_pointers_for_devices_stay_inside_one_region() {
        let map = PhysMap::pc(2 * MIB).expect("map");
        assert_eq!(map.ram_ptr(0x1000, 0x2000).map(|p| p.as_ptr()), map.ram().host_ptr(0x1000, 0x2000));
        assert!(map.ram_ptr(2 * MIB - 8, 16).is_none());
    }
}
