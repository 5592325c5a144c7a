//! Page walks for every x86 paging mode (Intel SDM vol. 3A, chapter 4).
//!
//! [`walk`] translates one linear address for one access the way the hardware's page-miss
//! handler does: it reads the paging-structure entries through a [`PhysBus`], checks each for
//! presence and reserved bits, combines the access rights of every level, checks them against
//! the access (CR0.WP, U/S, R/W, NX, SMEP, SMAP with RFLAGS.AC), and only then writes back the
//! Accessed flags of every entry it used and, for a write, the Dirty flag of the entry that maps
//! the page. A walk that faults writes nothing and returns a [`PageFault`] with the error code
//! the hardware would push and the address it would put in CR2.
//!
//! Modes:
//! - 32-bit paging (CR4.PAE=0): 4 KiB pages, and 4 MiB pages when CR4.PSE=1, with PSE-36
//!   (physical bits 39:32 in PDE bits 20:13, limited by MAXPHYADDR, at most 40 bits).
//! - PAE paging (CR4.PAE=1, EFER.LMA=0): 4 KiB and 2 MiB pages, NX when EFER.NXE=1. The four
//!   PDPTEs are not read during the walk: as on hardware they are loaded into the CPU when CR3
//!   is loaded in PAE mode (MOV CR3, or a MOV CR0/CR4 that enters PAE paging). The CPU calls
//!   [`load_pdptes`] then, raises #GP(0) if it fails, keeps the result in
//!   [`PagingControl::pdptes`], and the walk uses those cached values, so a guest that rewrites
//!   its PDPT without reloading CR3 keeps the old ones, as hardware does.
//! - 4-level paging (EFER.LMA=1): 4 KiB, 2 MiB and 1 GiB pages. The CPU has already refused a
//!   non-canonical address with #GP/#SS; the walk uses bits 47:0. With CR4.PCIDE=1, CR3 bits
//!   11:0 are the PCID and are not part of the table address.
//!
//! Protection keys, 5-level paging and shadow stacks are not implemented (their CR4 bits are
//! never set, because CPUID does not offer them).

use crate::PhysBus;

/// CR0 bits that paging depends on.
pub mod cr0 {
    /// Protection enable.
    pub const PE: u64 = 1 << 0;
    /// Write protect: supervisor writes honour R/W.
    pub const WP: u64 = 1 << 16;
    /// Paging.
    pub const PG: u64 = 1 << 31;
}

/// CR4 bits that paging depends on.
pub mod cr4 {
    /// Page size extensions: 4 MiB pages in 32-bit paging.
    pub const PSE: u64 = 1 << 4;
    /// Physical address extension.
    pub const PAE: u64 = 1 << 5;
    /// Page global enable.
    pub const PGE: u64 = 1 << 7;
    /// Process-context identifiers.
    pub const PCIDE: u64 = 1 << 17;
    /// Supervisor-mode execution prevention.
    pub const SMEP: u64 = 1 << 20;
    /// Supervisor-mode access prevention.
    pub const SMAP: u64 = 1 << 21;
}

/// IA32_EFER bits that paging depends on.
pub mod efer {
    /// Long mode enable.
    pub const LME: u64 = 1 << 8;
    /// Long mode active.
    pub const LMA: u64 = 1 << 10;
    /// Execute-disable enable.
    pub const NXE: u64 = 1 << 11;
}

/// Bits of paging-structure entries.
pub mod pte {
    /// Present.
    pub const P: u64 = 1 << 0;
    /// Read/write.
    pub const RW: u64 = 1 << 1;
    /// User/supervisor.
    pub const US: u64 = 1 << 2;
    /// Page-level write-through.
    pub const PWT: u64 = 1 << 3;
    /// Page-level cache disable.
    pub const PCD: u64 = 1 << 4;
    /// Accessed.
    pub const A: u64 = 1 << 5;
    /// Dirty (entries that map a page).
    pub const D: u64 = 1 << 6;
    /// Page size (in PDEs and PDPTEs), PAT in PTEs.
    pub const PS: u64 = 1 << 7;
    /// Global (entries that map a page).
    pub const G: u64 = 1 << 8;
    /// Execute-disable (PAE and 4-level entries).
    pub const XD: u64 = 1 << 63;
}

/// Bits of the page-fault error code.
pub mod pf_error {
    /// The fault was a protection violation (0: a not-present page).
    pub const P: u32 = 1 << 0;
    /// The access was a write.
    pub const W: u32 = 1 << 1;
    /// The access was a user-mode access.
    pub const U: u32 = 1 << 2;
    /// A reserved bit was set in a paging-structure entry.
    pub const RSVD: u32 = 1 << 3;
    /// The access was an instruction fetch (reported only with SMEP or PAE+NXE).
    pub const ID: u32 = 1 << 4;
}

/// The physical-address width assumed when none is given (also QEMU's default `phys-bits`).
pub const DEFAULT_MAXPHYADDR: u8 = 40;

/// Errors from loading the PAE PDPTEs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PagingError {
    /// A present PDPTE has reserved bits set; the MOV that loaded CR3 raises #GP(0).
    #[error("PDPTE {index} ({value:#x}) has reserved bits set")]
    ReservedPdpte {
        /// Which of the four PDPTEs.
        index: usize,
        /// Its value.
        value: u64,
    },
}

/// The control state a page walk depends on: plain register values, as the CPU holds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagingControl {
    /// CR0.
    pub cr0: u64,
    /// CR3 (bit 63, the no-flush hint of MOV CR3, is not part of the register).
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// The PDPTEs the CPU loaded when CR3 was last loaded in PAE mode (see [`load_pdptes`]).
    pub pdptes: [u64; 4],
    /// The CPU's physical-address width (CPUID.80000008H:EAX bits 7:0), 36 to 52.
    pub maxphyaddr: u8,
}

impl PagingControl {
    /// Control state with no PDPTEs loaded and [`DEFAULT_MAXPHYADDR`].
    pub fn new(cr0: u64, cr3: u64, cr4: u64, efer: u64) -> Self {
        PagingControl { cr0, cr3, cr4, efer, pdptes: [0; 4], maxphyaddr: DEFAULT_MAXPHYADDR }
    }

    /// The paging mode these registers select.
    pub fn mode(&self) -> PagingMode {
        if self.cr0 & cr0::PG == 0 {
            PagingMode::Off
        } else if self.cr4 & cr4::PAE == 0 {
            PagingMode::Bits32
        } else if self.efer & efer::LMA != 0 {
            PagingMode::Level4
        } else {
            PagingMode::Pae
        }
    }

    /// The current PCID: CR3 bits 11:0 with CR4.PCIDE=1, else 0.
    pub fn pcid(&self) -> u16 {
        if self.cr4 & cr4::PCIDE != 0 {
            (self.cr3 & 0xfff) as u16
        } else {
            0
        }
    }

    /// Whether execute-disable is in force (PAE or 4-level paging with EFER.NXE=1).
    fn nx_enabled(&self) -> bool {
        self.cr4 & cr4::PAE != 0 && self.efer & efer::NXE != 0
    }

    /// MAXPHYADDR clamped to what the architecture allows.
    fn phys_bits(&self) -> u32 {
        u32::from(self.maxphyaddr).clamp(32, 52)
    }
}

/// Which page-table format is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingMode {
    /// CR0.PG=0: linear addresses are physical.
    Off,
    /// 32-bit paging.
    Bits32,
    /// PAE paging.
    Pae,
    /// 4-level paging (IA-32e mode).
    Level4,
}

/// What an access does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessOp {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Fetch,
}

/// Who makes an access, as paging sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privilege {
    /// An explicit access at CPL 3.
    User,
    /// An explicit access at CPL 0, 1 or 2.
    Supervisor,
    /// An implicit supervisor-mode access, whatever the CPL: descriptor tables, the TSS, the
    /// IDT, and other system structures. SMAP applies to these regardless of RFLAGS.AC.
    Implicit,
}

/// One access to translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Read, write or fetch.
    pub op: AccessOp,
    /// User, supervisor or implicit supervisor.
    pub privilege: Privilege,
    /// RFLAGS.AC, which lifts SMAP for explicit supervisor accesses.
    pub ac: bool,
}

impl Access {
    /// An explicit access at privilege level `cpl` with RFLAGS.AC = `ac`.
    pub fn new(op: AccessOp, cpl: u8, ac: bool) -> Self {
        let privilege = if cpl == 3 { Privilege::User } else { Privilege::Supervisor };
        Access { op, privilege, ac }
    }

    /// An implicit supervisor-mode access (a descriptor-table or TSS read, for example).
    pub fn implicit(op: AccessOp) -> Self {
        Access { op, privilege: Privilege::Implicit, ac: false }
    }

    /// The TLB's view of this access's privilege under `cr4`.
    pub fn mmu_mode(&self, cr4: u64) -> MmuMode {
        match self.privilege {
            Privilege::User => MmuMode::User,
            Privilege::Supervisor if self.ac => MmuMode::Supervisor,
            _ if cr4 & cr4::SMAP != 0 => MmuMode::SupervisorSmap,
            _ => MmuMode::Supervisor,
        }
    }
}

/// The privilege classes whose access rights differ, one TLB table each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MmuMode {
    /// CPL 3 explicit accesses.
    User = 0,
    /// Supervisor accesses that may read and write user pages (SMAP off, or AC=1 explicit).
    Supervisor = 1,
    /// Supervisor accesses that SMAP keeps off user pages (CR4.SMAP=1 with AC=0 or implicit).
    SupervisorSmap = 2,
}

impl MmuMode {
    /// How many modes there are.
    pub const COUNT: usize = 3;
    /// Every mode, in index order.
    pub const ALL: [MmuMode; 3] = [MmuMode::User, MmuMode::Supervisor, MmuMode::SupervisorSmap];

    /// The mode's table index.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The size of the page a translation came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    /// 4 KiB.
    Size4K,
    /// 2 MiB (PAE and 4-level PDEs).
    Size2M,
    /// 4 MiB (32-bit PDEs with PSE).
    Size4M,
    /// 1 GiB (4-level PDPTEs).
    Size1G,
}

impl PageSize {
    /// The page size in bytes.
    pub fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
            PageSize::Size4M => 1 << 22,
            PageSize::Size1G => 1 << 30,
        }
    }
}

/// The access rights of a translation, combined over every level of the walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perms {
    /// R/W was 1 at every level.
    pub writable: bool,
    /// U/S was 1 at every level (a user-mode address).
    pub user: bool,
    /// No level had XD=1 with execute-disable in force.
    pub executable: bool,
    /// The page is global (G=1 in the entry that maps it, and CR4.PGE=1).
    pub global: bool,
    /// The entry that maps the page has D=1 (after this walk's own update).
    pub dirty: bool,
}

impl Perms {
    /// The rights of every address when paging is off.
    pub const UNPAGED: Perms = Perms { writable: true, user: true, executable: true, global: false, dirty: true };

    /// Whether an access of `op` in `mode` may use a translation with these rights under `ctl`
    /// (SDM 4.6). Dirty is not considered: a write to a clean page is allowed and sets D.
    pub fn allows(&self, mode: MmuMode, op: AccessOp, ctl: &PagingControl) -> bool {
        if ctl.cr0 & cr0::PG == 0 {
            return true;
        }
        let wp = ctl.cr0 & cr0::WP != 0;
        match (op, mode) {
            (AccessOp::Fetch, MmuMode::User) => self.user && self.executable,
            (AccessOp::Fetch, _) => self.executable && !(self.user && ctl.cr4 & cr4::SMEP != 0),
            (AccessOp::Read, MmuMode::User) => self.user,
            (AccessOp::Read, MmuMode::Supervisor) => true,
            (AccessOp::Read, MmuMode::SupervisorSmap) => !self.user,
            (AccessOp::Write, MmuMode::User) => self.user && self.writable,
            (AccessOp::Write, MmuMode::Supervisor) => self.writable || !wp,
            (AccessOp::Write, MmuMode::SupervisorSmap) => !self.user && (self.writable || !wp),
        }
    }
}

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The physical address of the linear address translated.
    pub paddr: u64,
    /// The size of the page it lies in.
    pub size: PageSize,
    /// The combined access rights.
    pub perms: Perms,
}

/// A page fault: the vector 14 exception the access raises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFault {
    /// The error code pushed on the stack (bits of [`pf_error`]).
    pub error_code: u32,
    /// The linear address that goes into CR2.
    pub address: u64,
}

/// Why a walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    NotPresent,
    Reserved,
}

/// What a walk found before the rights check.
#[derive(Debug, Default)]
struct Leaf {
    /// (physical address, value) of each entry used, top level first; PAE PDPTEs are not
    /// included (they live in the CPU and have no Accessed flag).
    entries: [(u64, u64); 4],
    count: usize,
    /// The page's physical base address.
    frame: u64,
    size: Option<PageSize>,
    no_write: bool,
    no_user: bool,
    no_exec: bool,
}

impl Leaf {
    fn push(&mut self, addr: u64, value: u64) {
        if let Some(slot) = self.entries.get_mut(self.count) {
            *slot = (addr, value);
            self.count += 1;
        }
        self.no_write |= value & pte::RW == 0;
        self.no_user |= value & pte::US == 0;
    }

    fn last(&self) -> u64 {
        self.count.checked_sub(1).and_then(|i| self.entries.get(i)).map_or(0, |e| e.1)
    }
}

/// The mask of bits `lo..=hi` (empty if `lo > hi`).
const fn bits(lo: u32, hi: u32) -> u64 {
    if lo > hi || hi > 63 {
        0
    } else {
        (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
    }
}

/// Reserved bits of a present PAE PDPTE: 2:1, 8:5 and 63:MAXPHYADDR (no XD in a PDPTE).
fn pae_pdpte_reserved(m: u32) -> u64 {
    bits(1, 2) | bits(5, 8) | bits(m, 63)
}

/// Loads the four PAE PDPTEs from the page-directory-pointer table CR3 points at, as the CPU
/// does when CR3 is loaded in PAE mode. Fails if a present PDPTE has reserved bits set, in which
/// case the instruction that loaded CR3 raises #GP(0) and changes nothing.
pub fn load_pdptes<B: PhysBus + ?Sized>(bus: &mut B, cr3: u64, maxphyaddr: u8) -> Result<[u64; 4], PagingError> {
    let m = u32::from(maxphyaddr).clamp(32, 52);
    let base = cr3 & 0xffff_ffe0;
    let mut out = [0u64; 4];
    for (index, slot) in out.iter_mut().enumerate() {
        let value = bus.read_phys(base + 8 * index as u64, 8);
        if value & pte::P != 0 && value & pae_pdpte_reserved(m) != 0 {
            return Err(PagingError::ReservedPdpte { index, value });
        }
        *slot = value;
    }
    Ok(out)
}

/// Translates linear address `lin` for `access` under `ctl`, writing back Accessed and Dirty
/// flags as the hardware does, or returns the page fault the access raises.
pub fn walk<B: PhysBus + ?Sized>(
    bus: &mut B,
    ctl: &PagingControl,
    lin: u64,
    access: Access,
) -> Result<Translation, PageFault> {
    let fault = |stop: Option<Stop>| PageFault { error_code: error_code(ctl, access, stop), address: lin };
    let mut leaf = Leaf::default();
    let found = match ctl.mode() {
        PagingMode::Off => {
            return Ok(Translation { paddr: lin & 0xffff_ffff, size: PageSize::Size4K, perms: Perms::UNPAGED });
        }
        PagingMode::Bits32 => walk32(bus, ctl, lin, &mut leaf),
        PagingMode::Pae => walk_pae(bus, ctl, lin, &mut leaf),
        PagingMode::Level4 => walk_4level(bus, ctl, lin, &mut leaf),
    };
    found.map_err(|stop| fault(Some(stop)))?;
    let size = leaf.size.unwrap_or(PageSize::Size4K);
    let last = leaf.last();
    let mut perms = Perms {
        writable: !leaf.no_write,
        user: !leaf.no_user,
        executable: !leaf.no_exec,
        global: last & pte::G != 0 && ctl.cr4 & cr4::PGE != 0,
        dirty: last & pte::D != 0,
    };
    if !perms.allows(access.mmu_mode(ctl.cr4), access.op, ctl) {
        return Err(fault(None));
    }

    // The access is allowed: now, and only now, set A in every entry used and D in the one
    // that maps the page for a write. Only the low byte is written so a concurrent update of
    // the rest of the entry by another CPU is not undone.
    let is_write = access.op == AccessOp::Write;
    for (i, &(addr, value)) in leaf.entries[..leaf.count].iter().enumerate() {
        let mut new = value | pte::A;
        if is_write && i + 1 == leaf.count {
            new |= pte::D;
        }
        if new != value {
            bus.write_phys(addr, 1, new & 0xff);
        }
    }
    perms.dirty |= is_write;
    Ok(Translation { paddr: leaf.frame | (lin & (size.bytes() - 1)), size, perms })
}

/// The error code for a fault: `stop` is why the walk stopped, or `None` for a rights
/// violation on a present translation.
fn error_code(ctl: &PagingControl, access: Access, stop: Option<Stop>) -> u32 {
    let mut code = 0;
    if stop != Some(Stop::NotPresent) {
        code |= pf_error::P;
    }
    if stop == Some(Stop::Reserved) {
        code |= pf_error::RSVD;
    }
    if access.op == AccessOp::Write {
        code |= pf_error::W;
    }
    if access.privilege == Privilege::User {
        code |= pf_error::U;
    }
    if access.op == AccessOp::Fetch && (ctl.cr4 & cr4::SMEP != 0 || ctl.nx_enabled()) {
        code |= pf_error::ID;
    }
    code
}

/// 32-bit paging: a page directory and page tables of 4-byte entries.
fn walk32<B: PhysBus + ?Sized>(bus: &mut B, ctl: &PagingControl, lin: u64, leaf: &mut Leaf) -> Result<(), Stop> {
    let pde_addr = (ctl.cr3 & 0xffff_f000) + ((lin >> 22) & 0x3ff) * 4;
    let pde = bus.read_phys(pde_addr, 4);
    if pde & pte::P == 0 {
        return Err(Stop::NotPresent);
    }
    if ctl.cr4 & cr4::PSE != 0 && pde & pte::PS != 0 {
        // A 4 MiB page. PSE-36 puts physical bits 39:32 in PDE bits 20:13 (as many as
        // MAXPHYADDR allows, at most 40 bits); the rest of 21:13 is reserved.
        let m = ctl.phys_bits().min(40);
        if pde & bits(m - 19, 21) != 0 {
            return Err(Stop::Reserved);
        }
        leaf.push(pde_addr, pde);
        leaf.frame = (pde & 0xffc0_0000) | ((pde >> 13) & 0xff) << 32;
        leaf.size = Some(PageSize::Size4M);
        return Ok(());
    }
    leaf.push(pde_addr, pde);
    let pte_addr = (pde & 0xffff_f000) + ((lin >> 12) & 0x3ff) * 4;
    let entry = bus.read_phys(pte_addr, 4);
    if entry & pte::P == 0 {
        return Err(Stop::NotPresent);
    }
    leaf.push(pte_addr, entry);
    leaf.frame = entry & 0xffff_f000;
    leaf.size = Some(PageSize::Size4K);
    Ok(())
}

/// PAE paging: the cached PDPTE, then a page directory and page tables of 8-byte entries.
fn walk_pae<B: PhysBus + ?Sized>(bus: &mut B, ctl: &PagingControl, lin: u64, leaf: &mut Leaf) -> Result<(), Stop> {
    let m = ctl.phys_bits();
    let pdpte = ctl.pdptes[((lin >> 30) & 3) as usize];
    if pdpte & pte::P == 0 {
        return Err(Stop::NotPresent);
    }
    // load_pdptes refused these already; checked again in case the CPU bypassed it.
    if pdpte & pae_pdpte_reserved(m) != 0 {
        return Err(Stop::Reserved);
    }
    // In PAE paging, bits 62:MAXPHYADDR of PDEs and PTEs are reserved (they are ignored in
    // 4-level paging).
    walk_levels(bus, ctl, pdpte & bits(12, m - 1), lin, 2, bits(m, 62), leaf)
}

/// 4-level paging: PML4, PDPT, page directory and page tables of 8-byte entries.
fn walk_4level<B: PhysBus + ?Sized>(bus: &mut B, ctl: &PagingControl, lin: u64, leaf: &mut Leaf) -> Result<(), Stop> {
    let m = ctl.phys_bits();
    walk_levels(bus, ctl, ctl.cr3 & bits(12, m - 1), lin, 4, bits(m, 51), leaf)
}

/// Walks the 8-byte-entry levels `top..=1` (level 1 maps 4 KiB pages, 2 maps 2 MiB, 3 maps
/// 1 GiB, 4 is the PML4) starting at the table at physical `table`. `high_reserved` are the
/// reserved address bits above MAXPHYADDR in this mode.
fn walk_levels<B: PhysBus + ?Sized>(
    bus: &mut B,
    ctl: &PagingControl,
    mut table: u64,
    lin: u64,
    top: u32,
    high_reserved: u64,
    leaf: &mut Leaf,
) -> Result<(), Stop> {
    let m = ctl.phys_bits();
    let addr_mask = bits(12, m - 1);
    let nx = ctl.nx_enabled();
    let xd_reserved = if nx { 0 } else { pte::XD };
    for level in (1..=top).rev() {
        let shift = 12 + 9 * (level - 1);
        let addr = table + ((lin >> shift) & 0x1ff) * 8;
        let entry = bus.read_phys(addr, 8);
        if entry & pte::P == 0 {
            return Err(Stop::NotPresent);
        }
        let mut reserved = high_reserved | xd_reserved;
        let maps_page = match level {
            1 => true,
            2 | 3 => entry & pte::PS != 0,
            _ => {
                // PS must be 0 in a PML4E.
                reserved |= pte::PS;
                false
            }
        };
        if maps_page && level > 1 {
            // Between the PAT bit (12) and the frame address of a large page.
            reserved |= bits(13, shift - 1);
        }
        if entry & reserved != 0 {
            return Err(Stop::Reserved);
        }
        leaf.push(addr, entry);
        leaf.no_exec |= nx && entry & pte::XD != 0;
        if maps_page {
            leaf.frame = entry & addr_mask & !((1u64 << shift) - 1);
            leaf.size = Some(match level {
                1 => PageSize::Size4K,
                2 => PageSize::Size2M,
                _ => PageSize::Size1G,
            });
            return Ok(());
        }
        table = entry & addr_mask;
    }
    // Level 1 always maps a page, so the loop returns before getting here.
    Err(Stop::NotPresent)
}

#[cfg(test)]
pub(crate) mod test_mem {
    use std::collections::HashMap;

    use crate::PhysBus;

    /// Sparse physical memory for paging tests: zero where never written; records writes.
    #[derive(Debug, Default)]
    pub struct Mem {
        bytes: HashMap<u64, u8>,
        pub writes: Vec<(u64, u8, u64)>,
    }

    impl Mem {
        pub fn set(&mut self, addr: u64, size: u8, val: u64) {
            for k in 0..u64::from(size) {
                self.bytes.insert(addr + k, (val >> (8 * k)) as u8);
            }
        }
        pub fn get(&self, addr: u64, size: u8) -> u64 {
            (0..u64::from(size))
                .fold(0, |v, k| v | u64::from(self.bytes.get(&(addr + k)).copied().unwrap_or(0)) << (8 * k))
        }
    }

    impl PhysBus for Mem {
        fn read_phys(&mut self, addr: u64, size: u8) -> u64 {
            self.get(addr, size)
        }
        fn write_phys(&mut self, addr: u64, size: u8, val: u64) {
            self.writes.push((addr, size, val));
            self.set(addr, size, val);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_mem::Mem;
    use super::*;
    use pf_error as e;
    use pte::{A, D, G, P, PS, RW, US, XD};

    const PG: u64 = cr0::PG | cr0::PE;
    const WP: u64 = cr0::WP;
    const RD: Access = Access { op: AccessOp::Read, privilege: Privilege::Supervisor, ac: false };
    const WR: Access = Access { op: AccessOp::Write, privilege: Privilege::Supervisor, ac: false };
    const EX: Access = Access { op: AccessOp::Fetch, privilege: Privilege::Supervisor, ac: false };
    const URD: Access = Access { op: AccessOp::Read, privilege: Privilege::User, ac: false };
    const UWR: Access = Access { op: AccessOp::Write, privilege: Privilege::User, ac: false };
    const UEX: Access = Access { op: AccessOp::Fetch, privilege: Privilege::User, ac: false };

    fn code(r: Result<Translation, PageFault>) -> u32 {
        r.expect_err("expected a page fault").error_code
    }

    // ---- 32-bit paging ----

    const PD32: u64 = 0x1000;
    const PT32: u64 = 0x2000;

    /// Maps linear 0x0040_3000 (PDE 1, PTE 3) to 0x0012_3000 with the given flags.
    fn mem32(pde: u64, pte_flags: u64) -> Mem {
        let mut m = Mem::default();
        m.set(PD32 + 4, 4, PT32 | pde);
        m.set(PT32 + 3 * 4, 4, 0x0012_3000 | pte_flags);
        m
    }

    fn ctl32(cr0: u64, cr4: u64) -> PagingControl {
        PagingControl::new(PG | cr0, PD32, cr4, 0)
    }

    #[test]
    fn bits32_translates_a_4k_page_and_sets_accessed() {
        let mut m = mem32(P | RW | US, P | RW | US);
        let t = walk(&mut m, &ctl32(0, 0), 0x0040_3abc, RD).expect("translates");
        assert_eq!(t.paddr, 0x0012_3abc);
        assert_eq!(t.size, PageSize::Size4K);
        assert_eq!(t.perms, Perms { writable: true, user: true, executable: true, global: false, dirty: false });
        assert_eq!(m.get(PD32 + 4, 4), PT32 | P | RW | US | A);
        assert_eq!(m.get(PT32 + 12, 4), 0x0012_3000 | P | RW | US | A, "a read does not set D");
        // Only the upper bits of a 64-bit linear address are ignored in 32-bit paging.
        assert_eq!(walk(&mut m, &ctl32(0, 0), 0xffff_ffff_0040_3000, RD).map(|t| t.paddr), Ok(0x0012_3000));
    }

    #[test]
    fn bits32_write_sets_dirty_on_the_pte_only() {
        let mut m = mem32(P | RW, P | RW);
        let t = walk(&mut m, &ctl32(WP, 0), 0x0040_3000, WR).expect("translates");
        assert!(t.perms.dirty);
        assert_eq!(m.get(PD32 + 4, 4), PT32 | P | RW | A, "D is not set in a PDE that maps a table");
        assert_eq!(m.get(PT32 + 12, 4), 0x0012_3000 | P | RW | A | D);
        // A second write finds A and D set and writes nothing.
        m.writes.clear();
        walk(&mut m, &ctl32(WP, 0), 0x0040_3000, WR).expect("translates");
        assert!(m.writes.is_empty());
    }

    #[test]
    fn bits32_not_present_faults_carry_w_and_u_and_set_nothing() {
        let mut m = mem32(P | RW | US, RW | US);
        let ctl = ctl32(0, 0);
        assert_eq!(walk(&mut m, &ctl, 0x0040_3123, RD), Err(PageFault { error_code: 0, address: 0x0040_3123 }));
        assert_eq!(code(walk(&mut m, &ctl, 0x0040_3000, WR)), e::W);
        assert_eq!(code(walk(&mut m, &ctl, 0x0040_3000, URD)), e::U);
        assert_eq!(code(walk(&mut m, &ctl, 0x0040_3000, UWR)), e::U | e::W);
        assert_eq!(code(walk(&mut m, &ctl, 0x0080_0000, UWR)), e::U | e::W, "PDE 2 is not present");
        assert_eq!(code(walk(&mut m, &ctl, 0x0040_3000, UEX)), e::U, "no I/D without SMEP or NX");
        assert!(m.writes.is_empty(), "a faulting walk sets no Accessed flags");
    }

    #[test]
    fn bits32_user_and_write_rights_combine_across_levels() {
        // PDE supervisor, PTE user: a supervisor page.
        let mut m = mem32(P | RW, P | RW | US);
        let ctl = ctl32(WP, 0);
        assert_eq!(code(walk(&mut m, &ctl, 0x0040_3000, URD)), e::P | e::U);
        assert_eq!(code(walk(&mut m, &ctl, 0x0040_3000, UWR)), e::P | e::U | e::W);
        assert_eq!(code(walk(&mut m, &ctl, 0x0040_3000, UEX)), e::P | e::U);
        assert!(m.writes.is_empty());
        // PDE read-only, PTE writable: read-only for the user.
        let mut m = mem32(P | US, P | RW | US);
        assert!(walk(&mut m, &ctl, 0x0040_3000, URD).is_ok());
        assert_eq!(code(walk(&mut m, &ctl, 0x0040_3000, UWR)), e::P | e::U | e::W);
    }

    #[test]
    fn cr0_wp_decides_supervisor_writes_to_read_only_pages() {
        let mut m = mem32(P | US, P | US);
        assert_eq!(code(walk(&mut m, &ctl32(WP, 0), 0x0040_3000, WR)), e::P | e::W);
        let t = walk(&mut m, &ctl32(0, 0), 0x0040_3000, WR).expect("WP=0 lets the supervisor write");
        assert!(!t.perms.writable && t.perms.dirty);
        assert_eq!(m.get(PT32 + 12, 4) & (A | D), A | D);
        // The user is refused whatever WP says.
        assert_eq!(code(walk(&mut m, &ctl32(0, 0), 0x0040_3000, UWR)), e::P | e::U | e::W);
    }

    #[test]
    fn bits32_4m_pages_need_pse_and_carry_pse36_bits() {
        // PDE 1 maps a 4 MiB page at physical 0x12_0040_0000 (bits 39:32 = 0x12 in 20:13).
        let pde = 0x0040_0000 | (0x12 << 13) | P | RW | PS | G;
        let mut m = Mem::default();
        m.set(PD32 + 4, 4, pde);
        let t = walk(&mut m, &ctl32(0, cr4::PSE | cr4::PGE), 0x0055_5555, WR).expect("4M page");
        assert_eq!(t.paddr, 0x12_0055_5555);
        assert_eq!(t.size, PageSize::Size4M);
        assert!(t.perms.global && t.perms.dirty);
        assert_eq!(m.get(PD32 + 4, 4), pde | A | D, "D is set in a PDE that maps a page");
        // Without PGE the G bit means nothing.
        let t = walk(&mut m, &ctl32(0, cr4::PSE), 0x0055_5555, RD).expect("4M page");
        assert!(!t.perms.global);
        // Without PSE the PS bit is ignored and the PDE points at a page table (at 0x0040_0000
        // plus the low bits, which are then address bits).
        let mut m = Mem::default();
        m.set(PD32 + 4, 4, 0x0040_0000 | P | RW | PS);
        m.set(0x0040_0000 + 4 * 0x155, 4, 0x0077_7000 | P);
        let t = walk(&mut m, &ctl32(0, 0), 0x0055_5555, RD).expect("4K page");
        assert_eq!((t.paddr, t.size), (0x0077_7555, PageSize::Size4K));
    }

    #[test]
    fn bits32_4m_reserved_bits_depend_on_maxphyaddr() {
        let mut m = Mem::default();
        m.set(PD32 + 4, 4, 0x0040_0000 | (1 << 21) | P | PS);
        let ctl = ctl32(0, cr4::PSE);
        assert_eq!(code(walk(&mut m, &ctl, 0x0040_0000, RD)), e::P | e::RSVD);
        assert_eq!(code(walk(&mut m, &ctl, 0x0040_0000, UWR)), e::P | e::RSVD | e::W | e::U);
        // Bit 16 is physical bit 35: fine with 40 bits, reserved with 36 (bits 21:17).
        m.set(PD32 + 4, 4, 0x0040_0000 | (1 << 16) | P | PS);
        assert_eq!(walk(&mut m, &ctl, 0x0040_0000, RD).map(|t| t.paddr), Ok(0x8_0040_0000));
        m.set(PD32 + 4, 4, 0x0040_0000 | (1 << 17) | P | PS);
        m.writes.clear();
        let narrow = PagingControl { maxphyaddr: 36, ..ctl };
        assert_eq!(code(walk(&mut m, &narrow, 0x0040_0000, RD)), e::P | e::RSVD);
        assert!(m.writes.is_empty(), "a faulting walk sets no Accessed flag");
    }

    #[test]
    fn bits32_4k_global_needs_pge() {
        let mut m = mem32(P | RW, P | RW | G);
        assert!(walk(&mut m, &ctl32(0, cr4::PGE), 0x0040_3000, RD).expect("ok").perms.global);
        assert!(!walk(&mut m, &ctl32(0, 0), 0x0040_3000, RD).expect("ok").perms.global);
        let mut m = mem32(P | RW | G, P | RW);
        assert!(
            !walk(&mut m, &ctl32(0, cr4::PGE), 0x0040_3000, RD).expect("ok").perms.global,
            "G in a PDE that maps a table is ignored"
        );
    }

    #[test]
    fn smep_refuses_supervisor_fetches_from_user_pages_with_id() {
        let mut m = mem32(P | RW | US, P | RW | US);
        assert!(walk(&mut m, &ctl32(0, 0), 0x0040_3000, EX).is_ok());
        assert_eq!(code(walk(&mut m, &ctl32(0, cr4::SMEP), 0x0040_3000, EX)), e::P | e::ID);
        assert!(walk(&mut m, &ctl32(0, cr4::SMEP), 0x0040_3000, UEX).is_ok(), "the user still may");
        assert!(walk(&mut m, &ctl32(0, cr4::SMEP), 0x0040_3000, RD).is_ok(), "SMEP is about fetches");
        // With SMEP, I/D is reported on any fetch fault, even a not-present one.
        let mut m = mem32(P | RW | US, 0);
        assert_eq!(code(walk(&mut m, &ctl32(0, cr4::SMEP), 0x0040_3000, UEX)), e::U | e::ID);
    }

    #[test]
    fn smap_keeps_supervisor_data_off_user_pages_unless_ac_explicit() {
        let mut m = mem32(P | RW | US, P | RW | US);
        let smap = ctl32(WP, cr4::SMAP);
        assert_eq!(code(walk(&mut m, &smap, 0x0040_3000, RD)), e::P);
        assert_eq!(code(walk(&mut m, &smap, 0x0040_3000, WR)), e::P | e::W);
        let ac_read = Access::new(AccessOp::Read, 0, true);
        let ac_write = Access::new(AccessOp::Write, 0, true);
        assert!(walk(&mut m, &smap, 0x0040_3000, ac_read).is_ok());
        assert!(walk(&mut m, &smap, 0x0040_3000, ac_write).is_ok());
        // Implicit supervisor accesses ignore AC, and are supervisor accesses at any CPL (U=0).
        assert_eq!(code(walk(&mut m, &smap, 0x0040_3000, Access::implicit(AccessOp::Read))), e::P);
        assert_eq!(code(walk(&mut m, &smap, 0x0040_3000, Access::implicit(AccessOp::Write))), e::P | e::W);
        assert!(walk(&mut m, &ctl32(WP, 0), 0x0040_3000, Access::implicit(AccessOp::Read)).is_ok());
        // User accesses and supervisor fetches are not SMAP's business.
        assert!(walk(&mut m, &smap, 0x0040_3000, URD).is_ok());
        assert!(walk(&mut m, &smap, 0x0040_3000, EX).is_ok());
        // Supervisor pages are unaffected.
        let mut m = mem32(P | RW, P | RW);
        assert!(walk(&mut m, &smap, 0x0040_3000, RD).is_ok());
        // AC=1 lifts SMAP, not WP.
        let mut m = mem32(P | US, P | US);
        assert_eq!(code(walk(&mut m, &smap, 0x0040_3000, ac_write)), e::P | e::W);
        assert!(walk(&mut m, &ctl32(0, cr4::SMAP), 0x0040_3000, ac_write).is_ok());
    }

    #[test]
    fn paging_off_is_the_identity() {
        let mut m = Mem::default();
        let ctl = PagingControl::new(cr0::PE, 0, cr4::SMAP | cr4::SMEP, 0);
        let t = walk(&mut m, &ctl, 0x1234_5678, UWR).expect("identity");
        assert_eq!((t.paddr, t.perms), (0x1234_5678, Perms::UNPAGED));
        assert!(walk(&mut m, &ctl, 0x1234_5678, EX).is_ok());
        assert!(m.writes.is_empty());
    }

    // ---- PAE paging ----

    const PDPT: u64 = 0x1000;
    const PD: u64 = 0x2000;
    const PT: u64 = 0x3000;

    /// PDPTE 1 -> PD; PDE 2 -> PT; PTE 3 -> 0x5_6789_A000: linear 0x4040_3000.
    fn mem_pae(pde: u64, leaf: u64) -> Mem {
        let mut m = Mem::default();
        m.set(PDPT + 8, 8, PD | P);
        m.set(PD + 2 * 8, 8, PT | pde);
        m.set(PT + 3 * 8, 8, 0x5_6789_a000 | leaf);
        m
    }

    fn ctl_pae(m: &mut Mem, cr0: u64, cr4: u64, efer: u64) -> PagingControl {
        let mut ctl = PagingControl::new(PG | cr0, PDPT, cr4::PAE | cr4, efer);
        ctl.pdptes = load_pdptes(m, PDPT, ctl.maxphyaddr).expect("PDPTEs");
        ctl
    }

    #[test]
    fn pae_translates_4k_pages_above_4g() {
        let mut m = mem_pae(P | RW | US, P | RW | US);
        let ctl = ctl_pae(&mut m, 0, 0, 0);
        let t = walk(&mut m, &ctl, 0x4040_3abc, UWR).expect("translates");
        assert_eq!((t.paddr, t.size), (0x5_6789_aabc, PageSize::Size4K));
        assert_eq!(m.get(PDPT + 8, 8), PD | P, "PDPTEs have no Accessed flag to set");
        assert_eq!(m.get(PD + 16, 8), PT | P | RW | US | A);
        assert_eq!(m.get(PT + 24, 8), 0x5_6789_a000 | P | RW | US | A | D);
    }

    #[test]
    fn pae_2m_pages_ignore_pse_and_set_dirty_on_the_pde() {
        let mut m = Mem::default();
        m.set(PDPT + 8, 8, PD | P);
        let pde = 0x7_0020_0000 | P | RW | PS | G | (1 << 12);
        m.set(PD + 2 * 8, 8, pde);
        let ctl = ctl_pae(&mut m, 0, cr4::PGE, 0);
        let t = walk(&mut m, &ctl, 0x4045_6789, WR).expect("2M page");
        assert_eq!((t.paddr, t.size), (0x7_0025_6789, PageSize::Size2M), "bit 12 is PAT, not address");
        assert!(t.perms.global);
        assert_eq!(m.get(PD + 16, 8), pde | A | D);
        m.set(PD + 2 * 8, 8, pde | (1 << 13));
        assert_eq!(code(walk(&mut m, &ctl, 0x4045_6789, RD)), e::P | e::RSVD);
    }

    #[test]
    fn pae_pdptes_are_cached_at_cr3_load() {
        let mut m = mem_pae(P | RW, P | RW);
        let ctl = ctl_pae(&mut m, 0, 0, 0);
        // Clearing the PDPTE in memory does not affect the walk until CR3 is reloaded.
        m.set(PDPT + 8, 8, 0);
        assert!(walk(&mut m, &ctl, 0x4040_3000, RD).is_ok());
        let reloaded = ctl_pae(&mut m, 0, 0, 0);
        assert_eq!(walk(&mut m, &reloaded, 0x4040_3000, WR), Err(PageFault { error_code: e::W, address: 0x4040_3000 }));
    }

    #[test]
    fn pae_pdpte_reserved_bits_fail_the_load() {
        let mut m = Mem::default();
        for (bit, bad) in [(1, true), (2, true), (3, false), (5, true), (8, true), (9, false), (40, true), (63, true)] {
            m.set(PDPT + 16, 8, PD | P | 1 << bit);
            let r = load_pdptes(&mut m, PDPT, 40);
            assert_eq!(r.is_err(), bad, "bit {bit}");
        }
        // Not-present PDPTEs are not checked.
        m.set(PDPT + 16, 8, 1 << 63);
        assert!(load_pdptes(&mut m, PDPT, 40).is_ok());
        // A reserved bit that reached the walk anyway is a reserved-bit fault.
        let mut ctl = PagingControl::new(PG, PDPT, cr4::PAE, 0);
        ctl.pdptes[0] = PD | P | 1 << 63;
        assert_eq!(code(walk(&mut m, &ctl, 0x1000, RD)), e::P | e::RSVD);
    }

    #[test]
    fn pae_reserved_bits_in_pdes_and_ptes() {
        for (pde_extra, pte_extra, nxe) in [(1 << 40, 0, 0), (0, 1 << 52, 0), (0, 1 << 62, 0), (XD, 0, 0), (0, XD, 0)] {
            let mut m = mem_pae(P | RW | pde_extra, P | RW | pte_extra);
            let ctl = ctl_pae(&mut m, 0, 0, nxe);
            assert_eq!(code(walk(&mut m, &ctl, 0x4040_3000, UWR)), e::P | e::RSVD | e::W | e::U);
            assert!(m.writes.is_empty(), "a reserved-bit fault writes nothing");
        }
        // With NXE, XD is a right, not a reserved bit.
        let mut m = mem_pae(P | RW, P | RW | XD);
        let ctl = ctl_pae(&mut m, 0, 0, efer::NXE);
        assert!(walk(&mut m, &ctl, 0x4040_3000, RD).is_ok());
    }

    #[test]
    fn pae_nx_refuses_fetches_with_id() {
        let mut m = mem_pae(P | RW | US | XD, P | RW | US);
        let ctl = ctl_pae(&mut m, 0, 0, efer::NXE);
        let t = walk(&mut m, &ctl, 0x4040_3000, RD).expect("data is fine");
        assert!(!t.perms.executable);
        assert_eq!(code(walk(&mut m, &ctl, 0x4040_3000, EX)), e::P | e::ID);
        assert_eq!(code(walk(&mut m, &ctl, 0x4040_3000, UEX)), e::P | e::ID | e::U);
        // I/D on a not-present fetch with NXE, without SMEP.
        let mut m = mem_pae(P | RW, 0);
        let ctl = ctl_pae(&mut m, 0, 0, efer::NXE);
        assert_eq!(code(walk(&mut m, &ctl, 0x4040_3000, EX)), e::ID);
        // And none without NXE.
        let ctl = ctl_pae(&mut m, 0, 0, 0);
        assert_eq!(code(walk(&mut m, &ctl, 0x4040_3000, EX)), 0);
    }

    // ---- 4-level paging ----

    const PML4: u64 = 0x1000;
    const PDPT4: u64 = 0x2000;
    const PD4: u64 = 0x3000;
    const PT4: u64 = 0x4000;
    /// An upper-half address: PML4 index 0x1ff, PDPT 0x1fe, PD 3, PT 4.
    const HI: u64 = 0xffff_ffff_8060_4567;

    fn ctl64(cr0: u64, cr4: u64, efer: u64) -> PagingControl {
        PagingControl::new(PG | cr0, PML4, cr4::PAE | cr4, efer::LME | efer::LMA | efer)
    }

    /// Maps HI through all four levels with the given flags, to frame 0x12_3456_7000.
    fn mem64(flags: [u64; 4]) -> Mem {
        let mut m = Mem::default();
        m.set(PML4 + 0x1ff * 8, 8, PDPT4 | flags[0]);
        m.set(PDPT4 + 0x1fe * 8, 8, PD4 | flags[1]);
        m.set(PD4 + 3 * 8, 8, PT4 | flags[2]);
        m.set(PT4 + 4 * 8, 8, 0x12_3456_7000 | flags[3]);
        m
    }

    const UALL: u64 = P | RW | US;

    #[test]
    fn level4_translates_4k_and_sets_accessed_on_every_level_and_dirty_on_the_leaf() {
        let mut m = mem64([UALL; 4]);
        let t = walk(&mut m, &ctl64(WP, 0, 0), HI, UWR).expect("translates");
        assert_eq!((t.paddr, t.size), (0x12_3456_7567, PageSize::Size4K));
        assert_eq!(m.get(PML4 + 0x1ff * 8, 8), PDPT4 | UALL | A);
        assert_eq!(m.get(PDPT4 + 0x1fe * 8, 8), PD4 | UALL | A);
        assert_eq!(m.get(PD4 + 24, 8), PT4 | UALL | A);
        assert_eq!(m.get(PT4 + 32, 8), 0x12_3456_7000 | UALL | A | D);
        // The write-back touches only the low byte of each entry.
        assert!(m.writes.iter().all(|&(_, size, _)| size == 1));
        assert_eq!(m.writes.len(), 4);
    }

    #[test]
    fn level4_2m_and_1g_pages() {
        let mut m = Mem::default();
        m.set(PML4 + 0x1ff * 8, 8, PDPT4 | UALL);
        m.set(PDPT4 + 0x1fe * 8, 8, 0x40_4000_0000 | UALL | PS | G);
        let ctl = ctl64(0, cr4::PGE, 0);
        let t = walk(&mut m, &ctl, HI, RD).expect("1G page");
        assert_eq!((t.paddr, t.size), (0x40_4060_4567, PageSize::Size1G));
        assert!(t.perms.global && !t.perms.dirty);
        m.set(PDPT4 + 0x1fe * 8, 8, PD4 | UALL);
        m.set(PD4 + 3 * 8, 8, 0x9_8760_0000 | UALL | PS);
        let t = walk(&mut m, &ctl, HI, WR).expect("2M page");
        assert_eq!((t.paddr, t.size), (0x9_8760_4567, PageSize::Size2M));
        assert_eq!(m.get(PD4 + 24, 8), 0x9_8760_0000 | UALL | PS | A | D);
    }

    #[test]
    fn level4_reserved_bits_per_level() {
        let cases: [(usize, u64); 7] = [
            (0, PS),      // PS in a PML4E
            (0, 1 << 45), // address bits above MAXPHYADDR
            (1, 1 << 51), // bit 51 is still reserved (52 is not)
            (2, 1 << 40),
            (3, 1 << 47),
            (3, XD),           // XD without NXE
            (1, PS | 1 << 29), // 1 GiB page: bits 29:13 reserved
        ];
        for (level, bit) in cases {
            let mut flags = [UALL; 4];
            flags[level] |= bit;
            let mut m = mem64(flags);
            let r = walk(&mut m, &ctl64(0, 0, 0), HI, URD);
            assert_eq!(code(r), e::P | e::RSVD | e::U, "level {level} bit {bit:#x}");
            assert!(m.writes.is_empty());
        }
        // 2 MiB page: bits 20:13 reserved.
        let mut m = mem64([UALL, UALL, UALL | PS | 1 << 13, UALL]);
        assert_eq!(code(walk(&mut m, &ctl64(0, 0, 0), HI, WR)), e::P | e::RSVD | e::W);
        // Bits 62:52 are ignored in 4-level paging.
        let mut m = mem64([UALL | 1 << 52, UALL | 1 << 62, UALL, UALL | 0x7f << 52]);
        assert!(walk(&mut m, &ctl64(0, 0, 0), HI, RD).is_ok());
        // A narrower MAXPHYADDR reserves more.
        let mut m = mem64([UALL, UALL, UALL | 1 << 38, UALL]);
        let narrow = PagingControl { maxphyaddr: 36, ..ctl64(0, 0, 0) };
        assert_eq!(code(walk(&mut m, &narrow, HI, RD)), e::P | e::RSVD);
    }

    #[test]
    fn level4_not_present_at_each_level() {
        for level in 0..4 {
            let mut flags = [UALL; 4];
            flags[level] &= !P;
            let mut m = mem64(flags);
            let ctl = ctl64(0, cr4::SMEP, efer::NXE);
            assert_eq!(walk(&mut m, &ctl, HI, UEX), Err(PageFault { error_code: e::U | e::ID, address: HI }));
            assert!(m.writes.is_empty());
        }
    }

    #[test]
    fn level4_rights_combine_over_all_levels() {
        // U/S clear only in the PML4E makes a supervisor page.
        let mut m = mem64([P | RW, UALL, UALL, UALL]);
        let ctl = ctl64(WP, cr4::SMEP | cr4::SMAP, efer::NXE);
        assert_eq!(code(walk(&mut m, &ctl, HI, URD)), e::P | e::U);
        assert!(walk(&mut m, &ctl, HI, RD).is_ok(), "SMAP does not apply to supervisor pages");
        assert!(walk(&mut m, &ctl, HI, EX).is_ok(), "SMEP does not apply to supervisor pages");
        // R/W clear only in the PDPTE.
        let mut m = mem64([UALL, P | US, UALL, UALL]);
        assert_eq!(code(walk(&mut m, &ctl, HI, UWR)), e::P | e::W | e::U);
        assert_eq!(code(walk(&mut m, &ctl, HI, Access::new(AccessOp::Write, 0, true))), e::P | e::W);
        // XD only in the PDE.
        let mut m = mem64([UALL, UALL, UALL | XD, UALL]);
        assert_eq!(code(walk(&mut m, &ctl, HI, UEX)), e::P | e::ID | e::U);
        assert!(!walk(&mut m, &ctl, HI, URD).expect("reads are fine").perms.executable);
        // A user page under SMEP and SMAP.
        let mut m = mem64([UALL; 4]);
        assert_eq!(code(walk(&mut m, &ctl, HI, EX)), e::P | e::ID);
        assert_eq!(code(walk(&mut m, &ctl, HI, RD)), e::P);
        assert!(walk(&mut m, &ctl, HI, Access::new(AccessOp::Read, 0, true)).is_ok());
        assert!(walk(&mut m, &ctl, HI, UEX).is_ok());
    }

    #[test]
    fn level4_pcid_bits_are_not_part_of_the_table_address() {
        let mut m = mem64([UALL; 4]);
        let mut ctl = ctl64(0, cr4::PCIDE, 0);
        ctl.cr3 = PML4 | 0x123;
        assert_eq!(ctl.pcid(), 0x123);
        assert_eq!(walk(&mut m, &ctl, HI, RD).map(|t| t.paddr), Ok(0x12_3456_7567));
        ctl.cr4 &= !cr4::PCIDE;
        assert_eq!(ctl.pcid(), 0);
    }

    #[test]
    fn access_privilege_maps_to_mmu_modes() {
        let smap = cr4::SMAP;
        assert_eq!(Access::new(AccessOp::Read, 3, true).mmu_mode(smap), MmuMode::User);
        assert_eq!(Access::new(AccessOp::Read, 0, true).mmu_mode(smap), MmuMode::Supervisor);
        assert_eq!(Access::new(AccessOp::Read, 2, false).mmu_mode(smap), MmuMode::SupervisorSmap);
        assert_eq!(Access::new(AccessOp::Read, 0, false).mmu_mode(0), MmuMode::Supervisor);
        assert_eq!(Access::implicit(AccessOp::Read).mmu_mode(smap), MmuMode::SupervisorSmap);
        assert_eq!(Access::implicit(AccessOp::Read).mmu_mode(0), MmuMode::Supervisor);
    }
}
