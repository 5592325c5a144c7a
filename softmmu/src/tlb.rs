//! The software TLB: one per CPU, shadowing the guest page tables.
//!
//! # Layout
//!
//! Three direct-mapped tables of [`TLB_ENTRIES`] entries, one per [`MmuMode`] (user,
//! supervisor, supervisor under SMAP), indexed by bits of the linear page number. Splitting by
//! mode means an entry's tags already encode the access rights for that privilege class, so the
//! hit path is: pick the table for the current mode (fixed per translated block), index it with
//! the linear address, compare one tag, add the addend:
//!
//! ```text
//! entry = table[mode][(lin >> 12) & (TLB_ENTRIES - 1)]
//! if entry.read == (lin + size - 1) & !0xfff { host = lin + entry.addend }   // else: slow path
//! ```
//!
//! Each [`FastEntry`] holds one tag per access kind (read, write, fetch) and the host addend
//! (host address of the page minus its linear address). A tag is the linear page address when
//! that access may go straight to host memory; otherwise it carries [`TAG_INVALID`] (no
//! translation for that access: walk) or [`TAG_SLOW`] (translated, but the access must go
//! through the bus: MMIO, holes, ROM or read-only RAM for writes, pages holding translated code
//! for writes). Either flag makes the compare fail, so the hit path has no other test. Comparing
//! against the page of the access's *last* byte also sends page-crossing accesses to the slow
//! path, which splits them.
//!
//! The write tag is only set when the page's Dirty flag is already 1: the first write to a
//! clean page misses and walks, so the walk sets D exactly when the hardware would.
//!
//! # Large pages
//!
//! A 2 MiB, 4 MiB or 1 GiB page is cached as 4 KiB entries, filled one by one as they are used.
//! Each entry remembers the size of the page it came from, and the TLB keeps the smallest
//! aligned region covering every large page cached since the last full flush. INVLPG (or a page
//! fault) at an address outside that region only needs to look at one slot per mode; inside it,
//! every entry is checked and all 4 KiB pieces of the large page containing the address go.
//!
//! # PCIDs
//!
//! Entries are tagged with the PCID current when they were filled. Entries of other PCIDs stay
//! in the table but their fast tags are parked as invalid, so they cannot hit; switching to a
//! PCID with MOV CR3 and the no-flush bit brings its surviving entries back. Global entries hit
//! under every PCID.
//!
//! # Flushes
//!
//! The flush operations follow SDM vol. 3A 4.10.4: MOV CR3 ([`Tlb::write_cr3`]), INVLPG
//! ([`Tlb::invlpg`]), INVPCID ([`Tlb::invpcid`]) and MOV CR0/CR4/WRMSR EFER
//! ([`Tlb::control_changed`]). The processor may always drop more than it must; this TLB drops
//! more only where its cached access decisions depend on state the hardware's TLB does not
//! cache (CR0.WP, CR4.SMEP, EFER.NXE): see `control_changed`.
//!
//! Host addresses in the TLB come from the address map's `page_backing`; when the map changes
//! (its generation moves) or the A20 gate toggles, the CPU must call [`Tlb::flush_all`].

use std::ptr::NonNull;

use crate::paging::{cr0, cr4, efer, walk, Access, AccessOp, MmuMode, PageFault, PageSize, PagingControl, Translation};
use crate::{PageBacking, PhysBus, PAGE_MASK};

/// log2 of the entries per mode.
pub const TLB_BITS: u32 = 12;
/// Entries per mode (direct-mapped).
pub const TLB_ENTRIES: usize = 1 << TLB_BITS;

/// Tag flag: translated, but this access goes through the bus.
pub const TAG_SLOW: u64 = 1 << 0;
/// Tag flag: no translation cached for this access.
pub const TAG_INVALID: u64 = 1 << 1;

/// MOV CR3 bit 63 with CR4.PCIDE=1: keep the new PCID's cached translations.
pub const CR3_NO_FLUSH: u64 = 1 << 63;

/// What the hit path reads: one tag per access kind and the host addend. 32 bytes, so the JIT
/// indexes a table with a shift.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastEntry {
    /// Tag for data reads.
    pub read: u64,
    /// Tag for data writes.
    pub write: u64,
    /// Tag for instruction fetches.
    pub fetch: u64,
    /// Host address minus linear address, wrapping (meaningful for direct tags only).
    pub addend: u64,
}

impl FastEntry {
    const EMPTY: FastEntry = FastEntry { read: TAG_INVALID, write: TAG_INVALID, fetch: TAG_INVALID, addend: 0 };

    /// The tag for `op`.
    #[inline]
    pub fn tag(&self, op: AccessOp) -> u64 {
        match op {
            AccessOp::Read => self.read,
            AccessOp::Write => self.write,
            AccessOp::Fetch => self.fetch,
        }
    }

    fn set_tags(&mut self, tags: [u64; 3]) {
        [self.read, self.write, self.fetch] = tags;
    }
}

/// log2 of `size_of::<FastEntry>()`, for the JIT's index arithmetic.
pub const FAST_ENTRY_SHIFT: u32 = 5;
/// Byte offset of [`FastEntry::read`].
pub const FAST_READ_OFFSET: usize = std::mem::offset_of!(FastEntry, read);
/// Byte offset of [`FastEntry::write`].
pub const FAST_WRITE_OFFSET: usize = std::mem::offset_of!(FastEntry, write);
/// Byte offset of [`FastEntry::fetch`].
pub const FAST_FETCH_OFFSET: usize = std::mem::offset_of!(FastEntry, fetch);
/// Byte offset of [`FastEntry::addend`].
pub const FAST_ADDEND_OFFSET: usize = std::mem::offset_of!(FastEntry, addend);
const _: () = assert!(std::mem::size_of::<FastEntry>() == 1 << FAST_ENTRY_SHIFT);

/// Everything else about an entry: what the slow path and the flushes need.
#[derive(Clone, Copy, Debug)]
struct SideEntry {
    valid: bool,
    /// The 4 KiB linear page this entry translates.
    lin_page: u64,
    /// The fast tags this entry has while its PCID is current (or it is global).
    tags: [u64; 3],
    /// The physical page (A20 applied).
    phys: u64,
    /// Clears the offset within the page the translation came from (4 KiB to 1 GiB).
    page_mask: u64,
    pcid: u16,
    global: bool,
}

impl SideEntry {
    const EMPTY: SideEntry = SideEntry {
        valid: false,
        lin_page: 0,
        tags: [TAG_INVALID; 3],
        phys: 0,
        page_mask: PAGE_MASK,
        pcid: 0,
        global: false,
    };

    /// Whether this entry caches part of the translation of linear page `page`.
    fn covers(&self, page: u64) -> bool {
        self.valid && page & self.page_mask == self.lin_page & self.page_mask
    }
}

/// Where an access goes after translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// The physical address (A20 applied).
    pub phys: u64,
    /// The host address of the byte, valid to the end of its 4 KiB page, when the access may
    /// use host memory directly; `None` when it must go through the bus at `phys`.
    pub host: Option<NonNull<u8>>,
}

/// The INVPCID invalidation types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvpcidKind {
    /// Type 0: one linear address in one PCID, global translations excepted.
    Address,
    /// Type 1: every non-global translation of one PCID.
    SingleContext,
    /// Type 2: everything, global translations included, every PCID.
    AllIncludingGlobal,
    /// Type 3: every non-global translation of every PCID.
    AllExceptGlobal,
}

impl InvpcidKind {
    /// The kind for INVPCID's register operand; `None` (the CPU raises #GP(0)) above 3.
    pub fn from_type(t: u64) -> Option<Self> {
        Some(match t {
            0 => InvpcidKind::Address,
            1 => InvpcidKind::SingleContext,
            2 => InvpcidKind::AllIncludingGlobal,
            3 => InvpcidKind::AllExceptGlobal,
            _ => return None,
        })
    }
}

/// A CPU's software TLB.
pub struct Tlb {
    /// `MmuMode::COUNT` tables of `TLB_ENTRIES`, mode-major. Boxed so its address is stable
    /// for generated code.
    fast: Box<[FastEntry]>,
    /// Parallel to `fast`.
    side: Box<[SideEntry]>,
    /// The PCID whose entries are active.
    pcid: u16,
    /// (base, mask): an aligned region covering every large page cached since the last full
    /// flush.
    large: Option<(u64, u64)>,
    /// Entries filled so far (every miss that found a translation), for statistics.
    pub fills: u64,
    /// Moves whenever a cached translation is filled, dropped or hidden: a user that saw a
    /// translation at one value may rely on it while the value is unchanged.
    pub generation: u64,
    /// Indices of the entries that may be valid (a superset, possibly with repeats): flushes
    /// and scans visit these instead of every entry (4096 per mode).
    live: Vec<u32>,
}

impl std::fmt::Debug for Tlb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tlb")
            .field("valid_entries", &self.side.iter().filter(|s| s.valid).count())
            .field("pcid", &self.pcid)
            .field("large", &self.large)
            .finish()
    }
}

impl Default for Tlb {
    fn default() -> Self {
        Self::new()
    }
}

const OPS: [AccessOp; 3] = [AccessOp::Read, AccessOp::Write, AccessOp::Fetch];

/// Numbers the TLBs made, for their generations.
static NEXT_TLB: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

#[inline]
fn slot(mode: MmuMode, lin: u64) -> usize {
    mode.index() * TLB_ENTRIES + ((lin >> 12) as usize & (TLB_ENTRIES - 1))
}

impl Tlb {
    /// An empty TLB, current PCID 0.
    pub fn new() -> Self {
        let n = MmuMode::COUNT * TLB_ENTRIES;
        Tlb {
            fast: vec![FastEntry::EMPTY; n].into_boxed_slice(),
            side: vec![SideEntry::EMPTY; n].into_boxed_slice(),
            pcid: 0,
            large: None,
            fills: 0,
            // Distinct between TLBs, so a value seen on one never matches another's.
            generation: NEXT_TLB.fetch_add(1, std::sync::atomic::Ordering::Relaxed) << 40,
            live: Vec::new(),
        }
    }

    /// The first entry of the table for `mode` (each table has [`TLB_ENTRIES`] entries), for
    /// generated code. Stable for the TLB's lifetime.
    pub fn table_ptr(&self, mode: MmuMode) -> *const FastEntry {
        self.fast[mode.index() * TLB_ENTRIES..].as_ptr()
    }

    /// The PCID whose translations are active.
    pub fn pcid(&self) -> u16 {
        self.pcid
    }

    /// The hit path: the host address for a `size`-byte access of `op` at `lin`, if the TLB
    /// holds a direct translation and the access stays in one page.
    #[inline]
    pub fn lookup(&self, mode: MmuMode, op: AccessOp, lin: u64, size: u64) -> Option<NonNull<u8>> {
        let e = &self.fast[slot(mode, lin)];
        if e.tag(op) == lin.wrapping_add(size.saturating_sub(1)) & PAGE_MASK {
            NonNull::new(std::ptr::with_exposed_provenance_mut(lin.wrapping_add(e.addend) as usize))
        } else {
            None
        }
    }

    /// The slow path's first step: where `op` at `lin` goes, if the TLB has a translation for
    /// it (direct or through the bus). `None` means walk.
    pub fn probe(&self, mode: MmuMode, op: AccessOp, lin: u64) -> Option<Target> {
        let i = slot(mode, lin);
        let e = &self.fast[i];
        let tag = e.tag(op);
        if tag & TAG_INVALID != 0 || tag & PAGE_MASK != lin & PAGE_MASK {
            return None;
        }
        let phys = self.side[i].phys | (lin & !PAGE_MASK);
        let host = if tag & TAG_SLOW != 0 {
            None
        } else {
            NonNull::new(std::ptr::with_exposed_provenance_mut(lin.wrapping_add(e.addend) as usize))
        };
        Some(Target { phys, host })
    }

    /// Translates `lin` for `access`: from the TLB if it can, else by walking the page tables
    /// (setting A/D) and filling the TLB. A page fault also drops any cached translation of
    /// the address, as the hardware does.
    pub fn translate<B: PhysBus + ?Sized>(
        &mut self,
        bus: &mut B,
        ctl: &PagingControl,
        lin: u64,
        access: Access,
    ) -> Result<Target, PageFault> {
        let mode = access.mmu_mode(ctl.cr4);
        if let Some(t) = self.probe(mode, access.op, lin) {
            return Ok(t);
        }
        match walk(bus, ctl, lin, access) {
            Ok(t) => {
                let backing = bus.page_backing(t.paddr);
                self.fill(mode, lin, &t, &backing, ctl);
                // The walk allowed this access, so the fill made its tag valid.
                Ok(self
                    .probe(mode, access.op, lin)
                    .unwrap_or(Target { phys: backing.phys | (lin & !PAGE_MASK), host: None }))
            }
            Err(fault) => {
                self.invlpg(lin);
                Err(fault)
            }
        }
    }

    /// With paging off (linear = physical): the target of `op` at `lin`, from the TLB or by
    /// caching the identity translation of its page with every access allowed. Such entries
    /// are non-global and go at the next flush; turning paging on flushes everything.
    pub fn translate_flat<B: PhysBus + ?Sized>(
        &mut self,
        bus: &mut B,
        mode: MmuMode,
        op: AccessOp,
        lin: u64,
    ) -> Target {
        if let Some(t) = self.probe(mode, op, lin) {
            return t;
        }
        let page = lin & PAGE_MASK;
        let backing = bus.page_backing(page);
        let direct =
            |op: AccessOp| backing.host.is_some() && !(op == AccessOp::Write && (!backing.writable || backing.code));
        let tags = OPS.map(|op| page | if direct(op) { 0 } else { TAG_SLOW });
        let addend = backing.host.map_or(0, |h| (h.as_ptr().expose_provenance() as u64).wrapping_sub(page));
        let i = slot(mode, lin);
        self.fills += 1;
        self.note_live(i);
        self.fast[i] = FastEntry { read: tags[0], write: tags[1], fetch: tags[2], addend };
        self.side[i] = SideEntry {
            valid: true,
            lin_page: page,
            tags,
            phys: backing.phys,
            page_mask: PAGE_MASK,
            pcid: self.pcid,
            global: false,
        };
        self.probe(mode, op, lin).unwrap_or(Target { phys: backing.phys | (lin & !PAGE_MASK), host: None })
    }

    /// Caches translation `t` of `lin` for `mode`, backed by `backing` (from the bus's
    /// `page_backing(t.paddr)`). Each access kind gets a tag only if `t`'s rights allow it in
    /// this mode under `ctl`; writes also need the Dirty flag already set.
    pub fn fill(&mut self, mode: MmuMode, lin: u64, t: &Translation, backing: &PageBacking, ctl: &PagingControl) {
        let page = lin & PAGE_MASK;
        let mut tags = [TAG_INVALID; 3];
        for (tag, op) in tags.iter_mut().zip(OPS) {
            if !t.perms.allows(mode, op, ctl) || (op == AccessOp::Write && !t.perms.dirty) {
                continue;
            }
            let slow = backing.host.is_none() || (op == AccessOp::Write && (!backing.writable || backing.code));
            *tag = page | if slow { TAG_SLOW } else { 0 };
        }
        let addend = backing.host.map_or(0, |h| (h.as_ptr().expose_provenance() as u64).wrapping_sub(page));
        let page_mask = !(t.size.bytes() - 1);
        let i = slot(mode, lin);
        self.fills += 1;
        self.note_live(i);
        self.fast[i] = FastEntry { read: tags[0], write: tags[1], fetch: tags[2], addend };
        self.side[i] = SideEntry {
            valid: true,
            lin_page: page,
            tags,
            phys: backing.phys,
            page_mask,
            pcid: self.pcid,
            global: t.perms.global,
        };
        if t.size != PageSize::Size4K {
            self.note_large_page(page & page_mask, page_mask);
        }
    }

    /// Widens the large-page region to cover the page at `base` with `mask`.
    fn note_large_page(&mut self, base: u64, mask: u64) {
        self.large = Some(match self.large {
            None => (base, mask),
            Some((b, m)) => {
                let mut m = m & mask;
                while b & m != base & m {
                    m <<= 1;
                }
                (b & m, m)
            }
        });
    }

    fn in_large_region(&self, page: u64) -> bool {
        self.large.is_some_and(|(b, m)| page & m == b)
    }

    fn clear(&mut self, i: usize) {
        self.generation += 1;
        self.fast[i] = FastEntry::EMPTY;
        self.side[i] = SideEntry::EMPTY;
    }

    /// Entry `i` is about to be filled.
    fn note_live(&mut self, i: usize) {
        self.generation += 1;
        if !self.side[i].valid {
            if self.live.len() >= 2 * self.side.len() {
                // Slots emptied one by one (INVLPG) and filled again: drop the repeats.
                let side = &self.side;
                self.live.retain(|&k| side[k as usize].valid);
                self.live.sort_unstable();
                self.live.dedup();
            }
            self.live.push(i as u32);
        }
    }

    /// Drops every entry `pred` picks.
    fn drop_where(&mut self, pred: impl Fn(&SideEntry) -> bool) {
        let mut live = std::mem::take(&mut self.live);
        live.retain(|&k| {
            let i = k as usize;
            if self.side[i].valid && pred(&self.side[i]) {
                self.clear(i);
            }
            self.side[i].valid
        });
        self.live = live;
    }

    /// Drops the entries caching the translation of linear `lin` that `pred` picks: one slot
    /// per mode, or a scan when `lin` may lie in a cached large page.
    fn drop_address(&mut self, lin: u64, pred: impl Fn(&SideEntry) -> bool) {
        let page = lin & PAGE_MASK;
        if self.in_large_region(page) {
            self.drop_where(|s| s.covers(page) && pred(s));
        } else {
            for mode in MmuMode::ALL {
                let i = slot(mode, page);
                if self.side[i].covers(page) && pred(&self.side[i]) {
                    self.clear(i);
                }
            }
        }
    }

    /// Drops everything, global translations and every PCID included.
    pub fn flush_all(&mut self) {
        self.generation += 1;
        for k in std::mem::take(&mut self.live) {
            self.clear(k as usize);
        }
        self.large = None;
    }

    /// Drops every non-global translation of every PCID.
    pub fn flush_non_global(&mut self) {
        self.drop_where(|s| !s.global);
    }

    /// Drops every non-global translation of `pcid`.
    fn flush_pcid(&mut self, pcid: u16) {
        self.drop_where(|s| !s.global && s.pcid == pcid);
    }

    /// MOV to CR3 (or a task switch loading CR3) with the value the instruction wrote,
    /// including bit 63. Without PCIDs every non-global translation goes. With CR4.PCIDE=1
    /// the new PCID's non-global translations go unless bit 63 is set; other PCIDs' are kept,
    /// and the new PCID becomes current.
    pub fn write_cr3(&mut self, value: u64, pcide: bool) {
        if !pcide {
            self.flush_non_global();
            self.switch_pcid(0);
            return;
        }
        let pcid = (value & 0xfff) as u16;
        if value & CR3_NO_FLUSH == 0 {
            self.flush_pcid(pcid);
        }
        self.switch_pcid(pcid);
    }

    /// Makes `pcid` current: its entries and global ones can hit, others are parked.
    fn switch_pcid(&mut self, pcid: u16) {
        if pcid == self.pcid {
            return;
        }
        self.pcid = pcid;
        self.generation += 1;
        for &k in &self.live {
            let (fast, side) = (&mut self.fast[k as usize], &self.side[k as usize]);
            if side.valid {
                let active = side.global || side.pcid == pcid;
                fast.set_tags(if active { side.tags } else { [TAG_INVALID; 3] });
            }
        }
    }

    /// INVLPG: drops the translation of `lin`'s page (all of it, for a large page) for the
    /// current PCID, and global translations of it whatever their PCID.
    pub fn invlpg(&mut self, lin: u64) {
        let pcid = self.pcid;
        self.drop_address(lin, |s| s.global || s.pcid == pcid);
    }

    /// INVPCID of `kind` for `pcid` (and `lin` for type 0). The CPU has already checked the
    /// operands (#GP for a type above 3, a PCID other than 0 with CR4.PCIDE=0, a non-canonical
    /// address).
    pub fn invpcid(&mut self, kind: InvpcidKind, pcid: u16, lin: u64) {
        match kind {
            InvpcidKind::Address => self.drop_address(lin, |s| !s.global && s.pcid == pcid),
            InvpcidKind::SingleContext => self.flush_pcid(pcid),
            InvpcidKind::AllIncludingGlobal => self.flush_all(),
            InvpcidKind::AllExceptGlobal => self.flush_non_global(),
        }
    }

    /// Call after MOV to CR0 or CR4 or a write to EFER, with the control state before and
    /// after (CR3 is `write_cr3`'s business). Returns true if the whole TLB was flushed.
    ///
    /// The hardware flushes everything when CR0.PG or CR4.PGE changes or CR4.PCIDE goes from
    /// 1 to 0, and the current PCID when CR4.PAE changes or CR4.SMEP goes from 0 to 1. This
    /// TLB also flushes when CR4.PSE, CR4.SMEP (either way), CR0.WP, EFER.NXE, EFER.LME or
    /// EFER.LMA change, because its tags hold access decisions made under the old values
    /// (page size interpretation, supervisor writes, supervisor fetches, NX and reserved
    /// bits). CR4.SMAP needs nothing: SMAP chooses between the supervisor tables, it does not
    /// change what either holds.
    pub fn control_changed(&mut self, old: &PagingControl, new: &PagingControl) -> bool {
        let d0 = old.cr0 ^ new.cr0;
        let d4 = old.cr4 ^ new.cr4;
        let de = old.efer ^ new.efer;
        let full = d0 & (cr0::PG | cr0::WP) != 0
            || d4 & (cr4::PGE | cr4::PAE | cr4::PSE | cr4::SMEP) != 0
            || (d4 & cr4::PCIDE != 0 && new.cr4 & cr4::PCIDE == 0)
            || de & (efer::NXE | efer::LME | efer::LMA) != 0;
        if full {
            self.flush_all();
        }
        self.switch_pcid(new.pcid());
        full
    }

    /// The physical page holding `phys` now holds translated code: cached direct write paths
    /// to it become slow so writes reach the bus (which reports them). Later fills see the
    /// page's `code` flag in its backing.
    pub fn mark_code_page(&mut self, phys: u64) {
        let page = phys & PAGE_MASK;
        for &k in &self.live {
            let (fast, side) = (&mut self.fast[k as usize], &mut self.side[k as usize]);
            if side.valid && side.phys == page && side.tags[1] & TAG_INVALID == 0 {
                side.tags[1] |= TAG_SLOW;
                if fast.write & TAG_INVALID == 0 {
                    fast.write |= TAG_SLOW;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::{RegionKind, PRIORITY_MMIO, PRIORITY_RAM, PRIORITY_ROM};
    use crate::paging::pte::{A, D, G, P, PS, RW, US};
    use crate::paging::{pf_error, Privilege};
    use crate::{GuestRam, MmioHandler, PhysMap};

    const PML4: u64 = 0x1000;
    const PDPT: u64 = 0x2000;
    const PD: u64 = 0x3000;
    const PT: u64 = 0x4000;
    const MMIO_BASE: u64 = 0x8000_0000;

    const RD: Access = Access { op: AccessOp::Read, privilege: Privilege::Supervisor, ac: false };
    const WR: Access = Access { op: AccessOp::Write, privilege: Privilege::Supervisor, ac: false };
    const URD: Access = Access { op: AccessOp::Read, privilege: Privilege::User, ac: false };
    const SUP: MmuMode = MmuMode::Supervisor;

    struct Zero;
    impl MmioHandler for Zero {
        fn read(&mut self, _: u64, _: u8, _: u64) -> u64 {
            0
        }
        fn write(&mut self, _: u64, _: u8, _: u64, _: u64) {}
    }

    /// 4 MiB of RAM; 4-level tables mapping linear 0..2 MiB through PT and 2..4 MiB as one
    /// 2 MiB page onto the same physical addresses; MMIO at 0x8000_0000.
    fn setup() -> (PhysMap, PagingControl) {
        let mut map = PhysMap::new(GuestRam::new(4 << 20).expect("ram"));
        map.add_region(0, 4 << 20, RegionKind::Ram { offset: 0, writable: true }, PRIORITY_RAM).expect("ram");
        let id = map.add_mmio_handler(Box::new(Zero));
        map.add_region(MMIO_BASE, 0x1000, RegionKind::Mmio(id), PRIORITY_MMIO).expect("mmio");
        let rom: std::sync::Arc<[u8]> = vec![0x90; 0x1000].into();
        map.add_region(0x30_0000, 0x1000, RegionKind::Rom { image: rom, offset: 0 }, PRIORITY_ROM).expect("rom");
        map.write_phys(PML4, 8, PDPT | P | RW | US);
        map.write_phys(PDPT, 8, PD | P | RW | US);
        map.write_phys(PD, 8, PT | P | RW | US);
        map.write_phys(PD + 8, 8, 0x20_0000 | P | RW | US | PS | A | D);
        let ctl = PagingControl::new(
            cr0::PG | cr0::PE | cr0::WP,
            PML4,
            cr4::PAE | cr4::PGE,
            efer::LME | efer::LMA | efer::NXE,
        );
        (map, ctl)
    }

    /// Maps linear page `lin` (below 2 MiB) to physical `phys` with `flags`.
    fn map_page(map: &mut PhysMap, lin: u64, phys: u64, flags: u64) {
        map.write_phys(PT + ((lin >> 12) & 0x1ff) * 8, 8, phys | flags);
    }

    fn host_of(map: &PhysMap, phys: u64) -> Option<NonNull<u8>> {
        map.ram().host_ptr(phys, 1).and_then(NonNull::new)
    }

    #[test]
    fn a_fill_makes_the_hit_path_a_compare_and_an_add() {
        let (mut map, ctl) = setup();
        map_page(&mut map, 0x5000, 0x8000, P | RW | US | A | D);
        let mut tlb = Tlb::new();
        assert_eq!(tlb.lookup(SUP, AccessOp::Read, 0x5123, 4), None);
        let t = tlb.translate(&mut map, &ctl, 0x5123, RD).expect("translates");
        assert_eq!(t, Target { phys: 0x8123, host: host_of(&map, 0x8123) });
        assert_eq!(tlb.lookup(SUP, AccessOp::Read, 0x5123, 4), host_of(&map, 0x8123));
        assert_eq!(tlb.lookup(SUP, AccessOp::Write, 0x5ff8, 8), host_of(&map, 0x8ff8), "D is set: writes hit");
        assert_eq!(tlb.lookup(SUP, AccessOp::Fetch, 0x5000, 1), host_of(&map, 0x8000));
        assert_eq!(tlb.lookup(SUP, AccessOp::Read, 0x5ffe, 4), None, "page-crossing accesses miss");
        assert_eq!(tlb.lookup(SUP, AccessOp::Read, 0x5123 + (TLB_ENTRIES as u64) * 4096, 1), None, "tag mismatch");
        // The hit path and the slow path's probe agree.
        assert_eq!(tlb.probe(SUP, AccessOp::Write, 0x5ff8), Some(Target { phys: 0x8ff8, host: host_of(&map, 0x8ff8) }));
    }

    #[test]
    fn the_first_write_to_a_clean_page_walks_and_sets_dirty() {
        let (mut map, ctl) = setup();
        map_page(&mut map, 0x5000, 0x8000, P | RW);
        let mut tlb = Tlb::new();
        tlb.translate(&mut map, &ctl, 0x5000, RD).expect("read");
        assert_eq!(map.read_phys(PT + 5 * 8, 8), 0x8000 | P | RW | A);
        assert_eq!(tlb.lookup(SUP, AccessOp::Write, 0x5000, 1), None, "no write path while D=0");
        tlb.translate(&mut map, &ctl, 0x5000, WR).expect("write");
        assert_eq!(map.read_phys(PT + 5 * 8, 8), 0x8000 | P | RW | A | D);
        assert!(tlb.lookup(SUP, AccessOp::Write, 0x5000, 1).is_some());
    }

    #[test]
    fn modes_have_separate_rights() {
        let (mut map, ctl) = setup();
        map_page(&mut map, 0x5000, 0x8000, P | RW | A | D);
        let mut tlb = Tlb::new();
        tlb.translate(&mut map, &ctl, 0x5000, RD).expect("supervisor read");
        assert_eq!(tlb.lookup(MmuMode::User, AccessOp::Read, 0x5000, 1), None);
        let fault = tlb.translate(&mut map, &ctl, 0x5000, URD).expect_err("user read of a supervisor page");
        assert_eq!(fault, PageFault { error_code: pf_error::P | pf_error::U, address: 0x5000 });
        // The fault dropped the supervisor entry too, as the hardware's does.
        assert_eq!(tlb.lookup(SUP, AccessOp::Read, 0x5000, 1), None);
        // A user page under SMAP: the SMAP table refuses data, the plain supervisor one allows it.
        map_page(&mut map, 0x6000, 0x9000, P | RW | US | A | D);
        let smap = PagingControl { cr4: ctl.cr4 | cr4::SMAP, ..ctl };
        assert!(tlb.translate(&mut map, &smap, 0x6000, RD).is_err());
        let ac = Access::new(AccessOp::Read, 0, true);
        assert!(tlb.translate(&mut map, &smap, 0x6000, ac).is_ok());
        assert!(tlb.lookup(SUP, AccessOp::Read, 0x6000, 1).is_some());
        assert_eq!(tlb.lookup(MmuMode::SupervisorSmap, AccessOp::Read, 0x6000, 1), None);
    }

    #[test]
    fn mmio_and_rom_pages_take_the_bus_where_they_must() {
        let (mut map, ctl) = setup();
        map_page(&mut map, 0x5000, MMIO_BASE, P | RW | A | D);
        map_page(&mut map, 0x7000, 0x30_0000, P | RW | A | D);
        let mut tlb = Tlb::new();
        let t = tlb.translate(&mut map, &ctl, 0x5010, WR).expect("mmio");
        assert_eq!(t, Target { phys: MMIO_BASE + 0x10, host: None });
        assert_eq!(tlb.lookup(SUP, AccessOp::Read, 0x5010, 4), None);
        assert_eq!(tlb.probe(SUP, AccessOp::Read, 0x5010), Some(Target { phys: MMIO_BASE + 0x10, host: None }));
        // ROM: reads and fetches direct, writes through the bus (which drops them).
        tlb.translate(&mut map, &ctl, 0x7000, RD).expect("rom");
        assert!(tlb.lookup(SUP, AccessOp::Read, 0x7000, 1).is_some());
        assert!(tlb.lookup(SUP, AccessOp::Fetch, 0x7000, 1).is_some());
        assert_eq!(tlb.lookup(SUP, AccessOp::Write, 0x7000, 1), None);
        assert_eq!(tlb.translate(&mut map, &ctl, 0x7004, WR), Ok(Target { phys: 0x30_0004, host: None }));
    }

    #[test]
    fn mov_cr3_without_pcids_keeps_only_global_pages() {
        let (mut map, ctl) = setup();
        map_page(&mut map, 0x5000, 0x8000, P | RW | A | D | G);
        map_page(&mut map, 0x6000, 0x9000, P | RW | A | D);
        let mut tlb = Tlb::new();
        tlb.translate(&mut map, &ctl, 0x5000, RD).expect("global");
        tlb.translate(&mut map, &ctl, 0x6000, RD).expect("local");
        tlb.write_cr3(PML4, false);
        assert!(tlb.lookup(SUP, AccessOp::Read, 0x5000, 1).is_some(), "global survives");
        assert!(tlb.lookup(SUP, AccessOp::Read, 0x6000, 1).is_none(), "non-global goes");
        // G without CR4.PGE is not global.
        let no_pge = PagingControl { cr4: ctl.cr4 & !cr4::PGE, ..ctl };
        tlb.flush_all();
        tlb.translate(&mut map, &no_pge, 0x5000, RD).expect("not global");
        tlb.write_cr3(PML4, false);
        assert!(tlb.lookup(SUP, AccessOp::Read, 0x5000, 1).is_none());
    }

    #[test]
    fn pcids_keep_their_entries_across_switches_unless_flushed() {
        let (mut map, ctl) = setup();
        map_page(&mut map, 0x5000, 0x8000, P | RW | A | D);
        map_page(&mut map, 0x6000, 0x9000, P | RW | A | D | G);
        map_page(&mut map, 0x7000, 0xa000, P | RW | A | D);
        let pcid = |n: u64| PagingControl { cr3: PML4 | n, cr4: ctl.cr4 | cr4::PCIDE, ..ctl };
        let mut tlb = Tlb::new();
        tlb.write_cr3(PML4 | 1, true);
        tlb.translate(&mut map, &pcid(1), 0x5000, RD).expect("pcid 1");
        tlb.translate(&mut map, &pcid(1), 0x6000, RD).expect("global");
        // Switch to PCID 2 without flushing: PCID 1's entry is parked, the global one hits.
        tlb.write_cr3(PML4 | 2 | CR3_NO_FLUSH, true);
        assert_eq!(tlb.pcid(), 2);
        assert!(tlb.lookup(SUP, AccessOp::Read, 0x5000, 1).is_none());
        assert!(tlb.lookup(SUP, AccessOp::Read, 0x6000, 1).is_some());
        tlb.translate(&mut map, &pcid(2), 0x7000, RD).expect("pcid 2");
        // Back to PCID 1 without flushing: its entry is back; PCID 2's is parked.
        tlb.write_cr3(PML4 | 1 | CR3_NO_FLUSH, true);
        assert!(tlb.lookup(SUP, AccessOp::Read, 0x5000, 1).is_some());
        assert!(tlb.lookup(SUP, AccessOp::Read, 0x7000, 1).is_none());
        // Reloading PCID 1 with a flush drops its entries but keeps PCID 2's and the global one.
        tlb.write_cr3(PML4 | 1, true);
        assert!(tlb.lookup(SUP, AccessOp::Read, 0x5000, 1).is_none());
        assert!(tlb.lookup(SUP, AccessOp::Read, 0x6000, 1).is_some());
        tlb.write_cr3(PML4 | 2 | CR3_NO_FLUSH, true);
        assert!(tlb.lookup(SUP, AccessOp::Read, 0x7000, 1).is_some());
    }

    #[test]
    fn invpcid_types_drop_what_they_name() {
        let (mut map, ctl) = setup();
        map_page(&mut map, 0x5000, 0x8000, P | RW | A | D);
        map_page(&mut map, 0x6000, 0x9000, P | RW | A | D | G);
        map_page(&mut map, 0x7000, 0xa000, P | RW | A | D);
        let c1 = PagingControl { cr3: PML4 | 1, cr4: ctl.cr4 | cr4::PCIDE, ..ctl };
        let hits = |tlb: &Tlb, lin| tlb.lookup(SUP, AccessOp::Read, lin, 1).is_some();
        let fill = |tlb: &mut Tlb, map: &mut PhysMap| {
            tlb.flush_all();
            tlb.write_cr3(PML4 | 1, true);
            for lin in [0x5000, 0x6000, 0x7000] {
                tlb.translate(map, &c1, lin, RD).expect("fill");
            }
        };
        let mut tlb = Tlb::new();

        fill(&mut tlb, &mut map);
        tlb.invpcid(InvpcidKind::Address, 1, 0x5abc);
        assert!(!hits(&tlb, 0x5000) && hits(&tlb, 0x6000) && hits(&tlb, 0x7000));
        tlb.invpcid(InvpcidKind::Address, 1, 0x6000);
        assert!(hits(&tlb, 0x6000), "type 0 keeps global translations");
        tlb.invpcid(InvpcidKind::Address, 2, 0x7000);
        assert!(hits(&tlb, 0x7000), "type 0 for another PCID");

        fill(&mut tlb, &mut map);
        tlb.invpcid(InvpcidKind::SingleContext, 2, 0);
        assert!(hits(&tlb, 0x5000) && hits(&tlb, 0x7000));
        tlb.invpcid(InvpcidKind::SingleContext, 1, 0);
        assert!(!hits(&tlb, 0x5000) && hits(&tlb, 0x6000) && !hits(&tlb, 0x7000));

        fill(&mut tlb, &mut map);
        tlb.invpcid(InvpcidKind::AllExceptGlobal, 0, 0);
        assert!(!hits(&tlb, 0x5000) && hits(&tlb, 0x6000) && !hits(&tlb, 0x7000));

        fill(&mut tlb, &mut map);
        tlb.invpcid(InvpcidKind::AllIncludingGlobal, 0, 0);
        assert!(!hits(&tlb, 0x5000) && !hits(&tlb, 0x6000) && !hits(&tlb, 0x7000));

        assert_eq!(InvpcidKind::from_type(3), Some(InvpcidKind::AllExceptGlobal));
        assert_eq!(InvpcidKind::from_type(4), None);
    }

    #[test]
    fn invlpg_drops_one_page_in_every_mode_global_included() {
        let (mut map, ctl) = setup();
        map_page(&mut map, 0x5000, 0x8000, P | RW | US | A | D | G);
        map_page(&mut map, 0x6000, 0x9000, P | RW | US | A | D);
        let mut tlb = Tlb::new();
        for lin in [0x5000, 0x6000] {
            tlb.translate(&mut map, &ctl, lin, RD).expect("sup");
            tlb.translate(&mut map, &ctl, lin, URD).expect("user");
        }
        tlb.invlpg(0x5fff);
        for mode in [SUP, MmuMode::User] {
            assert!(tlb.lookup(mode, AccessOp::Read, 0x5000, 1).is_none());
            assert!(tlb.lookup(mode, AccessOp::Read, 0x6000, 1).is_some());
        }
    }

    #[test]
    fn invlpg_anywhere_in_a_large_page_drops_all_of_its_pieces() {
        let (mut map, ctl) = setup();
        map_page(&mut map, 0x5000, 0x8000, P | RW | A | D);
        let mut tlb = Tlb::new();
        for lin in [0x20_0000, 0x20_6000, 0x3f_f000, 0x5000] {
            tlb.translate(&mut map, &ctl, lin, RD).expect("fill");
        }
        assert_eq!(tlb.probe(SUP, AccessOp::Read, 0x20_6004).map(|t| t.phys), Some(0x20_6004));
        // 0x21_0000 was never used, but it lies in the same 2 MiB page.
        tlb.invlpg(0x21_0000);
        for lin in [0x20_0000, 0x20_6000, 0x3f_f000] {
            assert!(tlb.lookup(SUP, AccessOp::Read, lin, 1).is_none(), "{lin:#x}");
        }
        assert!(tlb.lookup(SUP, AccessOp::Read, 0x5000, 1).is_some(), "a 4K page elsewhere stays");
        // A page fault anywhere in a large page drops all of it, too.
        tlb.translate(&mut map, &ctl, 0x20_0000, RD).expect("fill");
        map.write_phys(PD + 8, 8, 0);
        let fault = tlb.translate(&mut map, &ctl, 0x30_1000, RD);
        assert_eq!(fault, Err(PageFault { error_code: 0, address: 0x30_1000 }));
        assert!(tlb.lookup(SUP, AccessOp::Read, 0x20_0000, 1).is_none());
    }

    #[test]
    fn control_register_changes_flush_what_they_must() {
        let (mut map, ctl) = setup();
        map_page(&mut map, 0x5000, 0x8000, P | RW | A | D | G);
        let mut tlb = Tlb::new();
        let refill = |tlb: &mut Tlb, map: &mut PhysMap| {
            tlb.translate(map, &ctl, 0x5000, RD).expect("fill");
        };
        let changed = |tlb: &mut Tlb, new: PagingControl| tlb.control_changed(&ctl, &new);
        let with = |cr0: u64, cr4: u64, efer: u64| PagingControl { cr0, cr4, efer, ..ctl };

        for (new, flush) in [
            (with(ctl.cr0 & !cr0::WP, ctl.cr4, ctl.efer), true),
            (with(ctl.cr0 & !cr0::PG, ctl.cr4, ctl.efer), true),
            (with(ctl.cr0, ctl.cr4 & !cr4::PGE, ctl.efer), true),
            (with(ctl.cr0, ctl.cr4 | cr4::SMEP, ctl.efer), true),
            (with(ctl.cr0, ctl.cr4 | cr4::PSE, ctl.efer), true),
            (with(ctl.cr0, ctl.cr4 & !cr4::PAE, ctl.efer), true),
            (with(ctl.cr0, ctl.cr4, ctl.efer & !efer::NXE), true),
            (with(ctl.cr0, ctl.cr4 | cr4::SMAP, ctl.efer), false),
            (with(ctl.cr0, ctl.cr4 | cr4::PCIDE, ctl.efer), false),
            (with(ctl.cr0 | 1 << 3, ctl.cr4, ctl.efer), false),
        ] {
            refill(&mut tlb, &mut map);
            assert_eq!(changed(&mut tlb, new), flush, "{new:x?}");
            assert_eq!(tlb.lookup(SUP, AccessOp::Read, 0x5000, 1).is_none(), flush, "{new:x?}");
        }
        // PCIDE 1 -> 0 flushes everything, global pages of every PCID included.
        let pcid_on = with(ctl.cr0, ctl.cr4 | cr4::PCIDE, ctl.efer);
        refill(&mut tlb, &mut map);
        assert!(tlb.control_changed(&pcid_on, &ctl));
        assert!(tlb.lookup(SUP, AccessOp::Read, 0x5000, 1).is_none());
    }

    #[test]
    fn marking_a_code_page_demotes_its_write_paths() {
        let (mut map, ctl) = setup();
        map_page(&mut map, 0x5000, 0x8000, P | RW | A | D);
        map_page(&mut map, 0x6000, 0x8000, P | RW | A | D); // an alias of the same frame
        let mut tlb = Tlb::new();
        tlb.translate(&mut map, &ctl, 0x5000, WR).expect("fill");
        tlb.translate(&mut map, &ctl, 0x6000, WR).expect("fill");
        assert!(map.set_code_page(0x8000, true));
        tlb.mark_code_page(0x8000);
        for lin in [0x5008, 0x6008] {
            assert_eq!(tlb.lookup(SUP, AccessOp::Write, lin, 1), None);
            assert!(tlb.lookup(SUP, AccessOp::Read, lin, 1).is_some(), "reads stay direct");
            assert_eq!(tlb.translate(&mut map, &ctl, lin, WR), Ok(Target { phys: 0x8008, host: None }));
        }
        // The store goes through the bus, which reports it.
        map.write_phys(0x8008, 1, 0xcc);
        assert_eq!(map.take_code_write(), Some(0x8000));
        // Fills made while the page holds code get no direct write path either.
        map.set_code_page(0x8000, true);
        tlb.flush_all();
        tlb.translate(&mut map, &ctl, 0x5000, RD).expect("fill");
        assert_eq!(tlb.lookup(SUP, AccessOp::Write, 0x5000, 1), None);
        assert!(tlb.probe(SUP, AccessOp::Write, 0x5000).is_some_and(|t| t.host.is_none()));
        // Parked (other-PCID) entries are demoted too, so they come back slow.
        tlb.flush_all();
        map.set_code_page(0x8000, false);
        tlb.translate(&mut map, &ctl, 0x5000, WR).expect("fill");
        tlb.write_cr3(PML4 | 3 | CR3_NO_FLUSH, true);
        tlb.mark_code_page(0x8000);
        tlb.write_cr3(PML4 | CR3_NO_FLUSH, true);
        assert_eq!(tlb.lookup(SUP, AccessOp::Write, 0x5000, 1), None);
        assert!(tlb.lookup(SUP, AccessOp::Read, 0x5000, 1).is_some());
    }

    #[test]
    fn with_paging_off_every_mode_maps_linear_to_physical() {
        let (mut map, _) = setup();
        let ctl = PagingControl::new(cr0::PE, 0, 0, 0);
        let mut tlb = Tlb::new();
        let t = tlb.translate(&mut map, &ctl, 0x1234, Access::new(AccessOp::Write, 3, false)).expect("identity");
        assert_eq!(t, Target { phys: 0x1234, host: host_of(&map, 0x1234) });
        assert!(tlb.lookup(MmuMode::User, AccessOp::Fetch, 0x1000, 1).is_some());
    }

    #[test]
    fn the_hit_path_layout_is_what_generated_code_expects() {
        assert_eq!((FAST_READ_OFFSET, FAST_WRITE_OFFSET, FAST_FETCH_OFFSET, FAST_ADDEND_OFFSET), (0, 8, 16, 24));
        let tlb = Tlb::new();
        let user = tlb.table_ptr(MmuMode::User);
        let sup = tlb.table_ptr(MmuMode::Supervisor);
        assert_eq!(sup as usize - user as usize, TLB_ENTRIES << FAST_ENTRY_SHIFT);
    }
}
