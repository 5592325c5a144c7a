//! The decoded-block cache: blocks keyed by where they start (linear and physical address)
//! and the code size they were decoded for, dropped when their pages are written.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::{Rc, Weak};

use frontend_x86::decode::Block;

use crate::jit::Unit;

/// A cached block: the decoded instructions, how often it ran, and its compiled code once it
/// turned hot.
///
/// `repr(C)`, the fields the exec loop reads going from unit to unit first (key, length,
/// ends-in-helper, the unit's entry point): beside the `Rc`'s counts, in the allocation's
/// first cache line or two.
#[derive(Debug)]
#[repr(C)]
pub struct Entry {
    /// What it is found by.
    pub key: BlockKey,
    /// The block's instruction count and whether it ends in a helper, copied here: the exec
    /// loop going from unit to unit reads only the entry, not the decoded block.
    pub len: u64,
    /// See [`Entry::len`].
    pub ends_in_helper: bool,
    /// Its compiled unit.
    pub unit: OnceCell<Unit>,
    /// The decoded block.
    pub block: Rc<Block>,
    /// For each instruction, whether it works on registers only and so cannot reach the bus
    /// ([`crate::jit::emit::register_only`]): the interpreter tells the bus the time only
    /// before the others.
    pub quiet: Box<[bool]>,
    /// Times it was entered while interpreted.
    pub hits: Cell<u32>,
    /// Compiling it failed: it stays interpreted.
    pub failed: Cell<bool>,
    /// Its unit is on the compile thread: it runs interpreted until the unit is installed.
    pub queued: Cell<bool>,
    /// The blocks the exec loop went on to after interpreting this one (fall-through, other),
    /// in the same mode: found again without a lookup while cached (and mapped).
    succ: [Link; 2],
}

/// A remembered next entry: held weakly (an entry dropped from the cache is never reached
/// through a link), with the TLB generation at which its page's translation was last seen to
/// be the one its code came from.
#[derive(Debug, Default)]
pub struct Link {
    to: RefCell<Weak<Entry>>,
    checked: Cell<u64>,
}

impl Link {
    /// The entry, if still cached and for the block at `linear` as `cpu` translates it now
    /// (`from`: the entry the link belongs to, whose own translation is current).
    pub fn get(&self, from: &Entry, linear: u64, cpu: &frontend_x86::CpuState) -> Option<Rc<Entry>> {
        let to = self.to.borrow().upgrade()?;
        if to.key.linear != linear {
            return None;
        }
        if to.key.linear >> 12 == from.key.linear >> 12 {
            return (to.key.page == from.key.page).then_some(to);
        }
        let generation = cpu.tlb.0.generation;
        if self.checked.get() != generation {
            if !same_translation(from, &to, cpu) {
                return None;
            }
            self.checked.set(generation);
        }
        Some(to)
    }

    /// Remembers `to`.
    pub fn set(&self, to: &Rc<Entry>) {
        *self.to.borrow_mut() = Rc::downgrade(to);
        self.checked.set(u64::MAX);
    }
}

/// Whether `to`, found through `from`, is for the code the CPU would fetch now: on `from`'s
/// linear page it is (the same page has the same translation as `from`, whose own lookup
/// checked it); on another page the TLB must still map it to `to`'s physical page.
fn same_translation(from: &Entry, to: &Entry, cpu: &frontend_x86::CpuState) -> bool {
    if to.key.linear >> 12 == from.key.linear >> 12 {
        return to.key.page == from.key.page;
    }
    let mode = softmmu::MmuMode::ALL[usize::from(to.key.bits & 3)];
    cpu.tlb.0.probe(mode, softmmu::AccessOp::Fetch, to.key.linear).is_some_and(|t| t.phys >> 12 == to.key.page)
}

impl Entry {
    /// An entry for a freshly decoded block.
    pub fn new(block: Block, key: BlockKey) -> Self {
        let quiet = block.insns.iter().zip(&block.ops).map(|(i, op)| crate::jit::emit::register_only(i, op)).collect();
        Entry {
            len: block.insns.len() as u64,
            ends_in_helper: block.ends_in_helper,
            block: Rc::new(block),
            quiet,
            hits: Cell::new(0),
            unit: OnceCell::new(),
            failed: Cell::new(false),
            queued: Cell::new(false),
            key,
            succ: [Link::default(), Link::default()],
        }
    }

    /// The linear address control falls through to at the block's end.
    fn fall_through(&self) -> u64 {
        let first = self.block.insns.first().map_or(0, |i| i.ip());
        let end = self.block.next_ips.last().copied().unwrap_or(first);
        self.key.linear.wrapping_add(end.wrapping_sub(first))
    }

    /// The successor remembered for the block at `linear`, if still cached and mapped.
    pub fn successor(&self, linear: u64, cpu: &frontend_x86::CpuState) -> Option<Rc<Entry>> {
        let slot = usize::from(linear != self.fall_through());
        self.succ[slot].get(self, linear, cpu)
    }

    /// Remembers `next` as where control went after this block, in the same mode (on another
    /// page, the user checks the translation each time).
    pub fn set_successor(&self, next: &Rc<Entry>) {
        let same_page = next.key.linear >> 12 == self.key.linear >> 12;
        if next.key.bits == self.key.bits && (!same_page || next.key.page == self.key.page) {
            let slot = usize::from(next.key.linear != self.fall_through());
            self.succ[slot].set(next);
        }
    }
}

/// What a cached block is found by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockKey {
    /// Linear address of the first instruction (CS base + RIP).
    pub linear: u64,
    /// Physical page of the first instruction.
    pub page: u64,
    /// Code size (16, 32 or 64), plus 128 when the stack is 32-bit (SS.B, outside 64-bit
    /// mode), plus the TLB table (`MmuMode` index, 0-2) data accesses use: compiled code
    /// depends on all three.
    pub bits: u8,
}

/// Blocks this many or more are thrown away together rather than grown further.
const MAX_BLOCKS: usize = 1 << 16;
/// Entries of the direct-mapped lookup in front of the map.
const FAST_ENTRIES: usize = 4096;

/// A multiply-rotate hasher for the small integer keys here: the default SipHash showed up
/// as a tenth of the interpreter's time.
#[derive(Debug, Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// Decoded blocks and, per physical page, the blocks decoded from it.
#[derive(Debug, Default)]
pub struct BlockCache {
    blocks: FastMap<BlockKey, Rc<Entry>>,
    by_page: FastMap<u64, Vec<BlockKey>>,
    /// A direct-mapped copy of recently used entries, indexed by the linear address: the
    /// jump cache.
    fast: Vec<Option<(BlockKey, Rc<Entry>)>>,
    /// Lookups, and those the jump cache answered.
    pub lookups: u64,
    /// Lookups the jump cache answered.
    pub fast_hits: u64,
}

#[inline]
fn slot(key: &BlockKey) -> usize {
    ((key.linear ^ (key.linear >> 12)) as usize) & (FAST_ENTRIES - 1)
}

impl BlockCache {
    /// The block at `key`, if cached.
    #[inline]
    pub fn get(&mut self, key: &BlockKey) -> Option<Rc<Entry>> {
        if self.fast.is_empty() {
            self.fast = vec![None; FAST_ENTRIES];
        }
        let s = slot(key);
        self.lookups += 1;
        if let Some((k, b)) = &self.fast[s] {
            if k == key {
                self.fast_hits += 1;
                return Some(b.clone());
            }
        }
        let b = self.blocks.get(key).cloned()?;
        self.fast[s] = Some((*key, b.clone()));
        Some(b)
    }

    /// Caches `block`; returns false when the cache was full and had to be emptied first
    /// (the caller must then forget its code-page marks too).
    pub fn insert(&mut self, key: BlockKey, block: Rc<Entry>) -> bool {
        let fresh = self.blocks.len() < MAX_BLOCKS;
        if !fresh {
            self.clear();
        }
        for p in &block.block.pages {
            self.by_page.entry(*p).or_default().push(key);
        }
        self.blocks.insert(key, block);
        fresh
    }

    /// Whether `entry` is what the cache holds for its key (not dropped or replaced since).
    pub fn holds(&self, entry: &Rc<Entry>) -> bool {
        self.blocks.get(&entry.key).is_some_and(|e| Rc::ptr_eq(e, entry))
    }

    /// Drops the block at `key`.
    pub fn remove(&mut self, key: &BlockKey) {
        self.blocks.remove(key);
        let s = slot(key);
        if matches!(&self.fast.get(s), Some(Some((fk, _))) if fk == key) {
            self.fast[s] = None;
        }
    }

    /// Drops every block decoded from physical page `page`.
    pub fn invalidate_page(&mut self, page: u64) {
        if let Some(keys) = self.by_page.remove(&page) {
            for k in keys {
                self.blocks.remove(&k);
                let s = slot(&k);
                if matches!(&self.fast.get(s), Some(Some((fk, _))) if *fk == k) {
                    self.fast[s] = None;
                }
            }
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.blocks.clear();
        self.by_page.clear();
        self.fast.iter_mut().for_each(|e| *e = None);
    }

    /// How many blocks are cached.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}
