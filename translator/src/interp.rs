//! The interpreter tier: decoded blocks from a cache, each instruction's semantics run on
//! concrete values.

use std::rc::Rc;

use frontend_x86::decode;
use frontend_x86::flags::TF;
use frontend_x86::interrupt::{self, EventKind};
use frontend_x86::mem::{self, AccessKind};
use frontend_x86::{exception::vector, sem, Concrete, CpuBus, CpuState, Exception, SegReg};

use crate::cache::{BlockCache, BlockKey, Entry};
use crate::jit::runtime::{Runtime, CONTINUE, FAULT, LEAVE, NO_LINK, REDO};
use crate::jit::{Jit, JitError, JitStats};

/// Why the exec loop returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The CPU executed HLT and is waiting for an interrupt.
    Halted,
    /// A triple fault: the machine must reset or power off.
    Shutdown,
    /// The instruction budget ran out.
    Budget,
}

/// Execution statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Guest instructions completed or faulted.
    pub instructions: u64,
    /// Blocks decoded (cache misses).
    pub blocks_decoded: u64,
    /// Blocks dropped because their code was written.
    pub blocks_invalidated: u64,
    /// Exceptions raised by instructions (and delivered to the guest).
    pub exceptions: u64,
    /// External interrupts and NMIs delivered.
    pub interrupts: u64,
    /// Of `instructions`, those run by compiled code.
    pub compiled_instructions: u64,
    /// Compiled units entered through a link slot, without a block lookup.
    pub chained: u64,
}

/// The exec loop: decoded blocks from a cache, run by the interpreter tier until they turn
/// hot and then, when the JIT tier is on, as compiled code.
#[derive(Debug, Default)]
pub struct Interpreter {
    // The cache owns the compiled units: it must be dropped before the JIT frees their code.
    cache: BlockCache,
    jit: Option<Jit>,
    /// Interpreted entries after which a block is compiled.
    threshold: u32,
    /// What it has done so far.
    pub stats: Stats,
    /// Blocks whose compiled code found the CPU other than it was compiled for (segment
    /// caches, CS.limit): they are compiled again without static segments.
    unstable: std::collections::HashSet<BlockKey, std::hash::BuildHasherDefault<crate::cache::KeyHasher>>,
    /// Blocks whose units are on the JIT's compile thread, by ticket: the region's entries,
    /// first the one it is for. The others are marked queued too, so that while they wait
    /// they are not compiled again on their own.
    compiling: std::collections::HashMap<u64, Vec<std::rc::Weak<Entry>>>,
}

/// Interpreted entries of a block before it is compiled, by default. Measured on the Debian
/// amd64 boot (user time): 50 -> 11.8 s, 300 -> 10.0 s, 1000 -> 9.4 s, 3000 -> 9.7 s; 99.3% of
/// the instructions still run compiled at 1000.
pub const DEFAULT_THRESHOLD: u32 = 1000;

impl Interpreter {
    /// An interpreter with an empty cache and no JIT tier.
    pub fn new() -> Self {
        Self::default()
    }

    /// An exec loop with the Cranelift tier: a block is compiled once it has been entered
    /// `threshold` times (0 compiles every block before its first run).
    pub fn with_jit(threshold: u32) -> Result<Self, JitError> {
        Ok(Interpreter { jit: Some(Jit::new()?), threshold, ..Self::default() })
    }

    /// Like [`Interpreter::with_jit`], with Cranelift's code generation on a thread of its own:
    /// a hot block goes on running interpreted until its unit is ready. What runs is the same
    /// either way (both tiers are exact and a unit only runs when the budget has room for
    /// it); only the host time differs.
    pub fn with_background_jit(threshold: u32) -> Result<Self, JitError> {
        Ok(Interpreter { jit: Some(Jit::background()?), threshold, ..Self::default() })
    }

    /// Block lookups and the share the direct-mapped jump cache answered.
    pub fn jump_cache(&self) -> (u64, u64) {
        (self.cache.lookups, self.cache.fast_hits)
    }

    /// The JIT tier's statistics, when it is on.
    pub fn jit_stats(&self) -> Option<&JitStats> {
        self.jit.as_ref().map(|j| &j.stats)
    }

    /// Drops what was decoded from physical page `page`: the machine calls this when a
    /// device writes guest memory by DMA.
    pub fn invalidate_page(&mut self, cpu: &mut CpuState, page: u64) {
        if cpu.code.contains(page) {
            cpu.code.note_write(page);
        }
        self.drain_code_writes(cpu);
    }

    /// Drops every decoded block and cached translation (the address map or the A20 gate
    /// changed under them). The statistics stay.
    pub fn flush(&mut self, cpu: &mut CpuState) {
        self.cache.clear();
        cpu.code.clear();
        cpu.tlb.0.flush_all();
    }

    fn drain_code_writes(&mut self, cpu: &mut CpuState) {
        for p in cpu.code.take_written() {
            let before = self.cache.len();
            self.cache.invalidate_page(p);
            self.stats.blocks_invalidated += (before - self.cache.len()) as u64;
        }
    }

    fn block_at(&mut self, cpu: &mut CpuState, bus: &mut dyn CpuBus) -> Result<Rc<Entry>, Exception> {
        let linear = cpu.seg[SegReg::Cs as usize].base.wrapping_add(cpu.rip);
        let mode = mem::mmu_mode(cpu);
        // The TLB's answer first (what `translate` tries first, without building its
        // arguments): this runs once per block.
        let page = match cpu.tlb.0.probe(mode, softmmu::AccessOp::Fetch, linear) {
            Some(t) => t.phys >> 12,
            None => mem::translate(cpu, bus, linear & !0xfff, AccessKind::Exec)? >> 12,
        };
        let stack32 = if cpu.stack_width() == frontend_x86::Width::W32 { 128 } else { 0 };
        let tlb = mode.index() as u8;
        let key = BlockKey { linear, page, bits: cpu.code_bits() as u8 | stack32 | tlb };
        if let Some(b) = self.cache.get(&key) {
            return Ok(b);
        }
        let entry = Rc::new(Entry::new(decode::decode_block(cpu, bus)?, key));
        self.stats.blocks_decoded += 1;
        if !self.cache.insert(key, entry.clone()) {
            cpu.code.clear();
        }
        for p in &entry.block.pages {
            if !cpu.code.contains(*p) {
                // Cached direct write paths to the page must go through the slow path now, which
                // notices the write (later fills see the bus's code flag).
                cpu.tlb.0.mark_code_page(*p << 12);
            }
            cpu.code.mark(*p);
            // Also on the bus, which reports writes by DMA (and by anything else) to it.
            bus.set_code_page(*p << 12, true);
        }
        Ok(entry)
    }

    /// The compiled unit for `entry`, compiling it now if it has turned hot. None when the
    /// JIT is off, the block is still cold, or it cannot be compiled.
    fn unit_for(&mut self, entry: &Rc<Entry>, cpu: &mut CpuState) -> Option<crate::jit::UnitFn> {
        let jit = self.jit.as_mut()?;
        if let Some(u) = entry.unit.get() {
            return Some(u.entry);
        }
        if entry.failed.get() {
            return None;
        }
        if entry.queued.get() {
            self.install_compiled();
            return entry.unit.get().map(|u| u.entry);
        }
        let hits = entry.hits.get().saturating_add(1);
        entry.hits.set(hits);
        if hits <= self.threshold {
            return None;
        }
        if jit.full() {
            // Bounded code memory: drop every unit (with the blocks that own them) and start
            // a new generation. This entry is gone from the cache too; it runs interpreted
            // once more and is found afresh next time.
            self.cache.clear();
            cpu.code.clear();
            self.compiling.clear();
            if let Err(e) = jit.new_generation() {
                log::error!("JIT disabled: {e}");
                self.jit = None;
            }
            return None;
        }
        let entries = region(entry, cpu, &mut self.cache);
        let region: Vec<_> = entries.iter().map(|e| e.block.clone()).collect();
        let jit = self.jit.as_mut()?;
        let static_segs = !self.unstable.contains(&entry.key);
        if jit.is_background() {
            match jit.submit(&region, cpu, static_segs) {
                Ok(Some(ticket)) => {
                    let waiting = entries
                        .iter()
                        .filter(|e| e.unit.get().is_none() && !e.queued.get() || Rc::ptr_eq(e, entry))
                        .map(|e| {
                            e.queued.set(true);
                            Rc::downgrade(e)
                        })
                        .collect();
                    self.compiling.insert(ticket, waiting);
                }
                // The queue is full: asked again on a later entry.
                Ok(None) => {}
                Err(e) => {
                    let at = entry.block.insns.first().map_or(0, |i| i.ip());
                    log::warn!("block at {at:#x} stays interpreted: {e}");
                    jit.stats.failures += 1;
                    entry.failed.set(true);
                }
            }
            return None;
        }
        match jit.compile(&region, cpu, static_segs) {
            Ok(u) => {
                let f = u.entry;
                // The cell was empty: checked above.
                let _ = entry.unit.set(u);
                Some(f)
            }
            Err(e) => {
                let at = entry.block.insns.first().map_or(0, |i| i.ip());
                log::warn!("block at {at:#x} stays interpreted: {e}");
                jit.stats.failures += 1;
                entry.failed.set(true);
                None
            }
        }
    }

    /// Installs the units the compile thread has finished, for blocks still cached as they
    /// were when submitted (a block dropped meanwhile, its page written, loses its unit).
    fn install_compiled(&mut self) {
        self.install(false);
    }

    /// Waits for the compile thread to finish every unit queued so far and installs them
    /// (for tests and measurements that want the compiled state now).
    pub fn finish_compiles(&mut self) {
        self.install(true);
    }

    fn install(&mut self, wait: bool) {
        let Some(jit) = self.jit.as_mut() else { return };
        while let Some(ready) = jit.ready(wait) {
            let waiting = self.compiling.remove(&ready.ticket).unwrap_or_default();
            for e in waiting.iter().filter_map(std::rc::Weak::upgrade) {
                e.queued.set(false);
            }
            let entry = waiting.first().and_then(std::rc::Weak::upgrade);
            let Some(entry) = entry.filter(|e| self.cache.holds(e)) else {
                jit.discard(ready);
                continue;
            };
            match jit.install(ready) {
                Ok(u) => {
                    // The cell was empty: a queued entry is not compiled any other way.
                    let _ = entry.unit.set(u);
                }
                Err(e) => {
                    let at = entry.block.insns.first().map_or(0, |i| i.ip());
                    log::warn!("block at {at:#x} stays interpreted: {e}");
                    jit.stats.failures += 1;
                    entry.failed.set(true);
                }
            }
        }
        if jit.queued() == 0 {
            self.compiling.clear();
        }
    }

    /// Runs `cpu` for at most `budget` instructions. Returns how many ran and why it stopped.
    /// Exceptions are delivered to the guest; nothing the guest does makes this fail.
    pub fn run(&mut self, cpu: &mut CpuState, bus: &mut dyn CpuBus, mut budget: u64) -> (u64, Exit) {
        let mut done = 0;
        // Whether an interrupt may have become deliverable since the last look. Within a run,
        // no device output changes by itself (the machine ends a run at the next device
        // deadline, or earlier through `run_limit`), so only the CPU can change that: by a
        // helper (I/O, STI/POPF/IRET, ...), which ends its block, or by taking an exception.
        let mut poll = true;
        // The unit and link slot the last compiled exit left through, to fill with the entry
        // the next lookup finds.
        let mut link_from: Option<(Rc<Entry>, u32)> = None;
        // The block just interpreted, when nothing since needs the exec loop's attention: its
        // successor slots may name the next block without a lookup.
        let mut prev: Option<Rc<Entry>> = None;
        self.install_compiled();
        while done < budget {
            if cpu.shutdown {
                break;
            }
            // The machine's clock is at this instruction; a device access may have asked the
            // run to end early (a timer due before the budget runs out). Looked at between
            // blocks, as compiled code does (`jit_store` and the others lower its budget).
            bus.set_retired(done);
            budget = budget.min(bus.run_limit());
            if done >= budget {
                break;
            }
            if poll || cpu.halted {
                prev = None;
                if bus.exit_requested() {
                    break;
                }
                // Code pages the bus saw written by someone other than this CPU's stores (DMA
                // between runs or during an I/O helper).
                while let Some(pa) = bus.take_code_write() {
                    self.invalidate_page(cpu, pa >> 12);
                }
                if bus.take_map_change() {
                    // Shadow RAM or a region moved under cached code and translations.
                    self.flush(cpu);
                }
                if interrupt::take_pending(cpu, bus) {
                    self.stats.interrupts += 1;
                }
                poll = cpu.interrupt_shadow;
            }
            if cpu.halted {
                self.stats.instructions += done;
                return (done, Exit::Halted);
            }
            let linear = cpu.seg[SegReg::Cs as usize].base.wrapping_add(cpu.rip);
            // The entry the block interpreted last remembered for this address, else a lookup
            // (which it then remembers).
            let last = prev.take();
            let entry = match last.as_ref().and_then(|p| p.successor(linear, cpu)) {
                Some(b) => b,
                None => match self.block_at(cpu, bus) {
                    Ok(b) => {
                        if let Some(p) = last {
                            p.set_successor(&b);
                        }
                        b
                    }
                    Err(e) => {
                        interrupt::raise(cpu, bus, e);
                        self.stats.exceptions += 1;
                        done += 1;
                        poll = true;
                        continue;
                    }
                },
            };
            let block = &entry.block;
            poll |= entry.ends_in_helper;
            // TF only changes in helpers, which end blocks: it holds for the whole block.
            let single_step = cpu.flags.raw_bits() & TF != 0;
            cpu.interrupt_shadow = false;
            // A unit runs whole (up to its first exit): only when the budget has room for all
            // of it, so both tiers stop at exactly the same instruction.
            if !single_step && budget - done >= entry.len {
                if let Some((from, slot)) = link_from.take() {
                    link(&from, slot, &entry);
                }
                if let Some(f) = self.unit_for(&entry, cpu) {
                    let (mut cur, mut f) = (entry.clone(), f);
                    let mut rt = Runtime::new(cpu, &mut *bus, budget - done);
                    loop {
                        rt.budget = budget - done;
                        if poll {
                            // An interrupt shadow ends after this block (the interpreter looks
                            // for interrupts there): the unit must not go on into another
                            // block of its region.
                            rt.budget = rt.budget.min(cur.len);
                        }
                        rt.retired_before = done;
                        rt.icount = 0;
                        rt.link = NO_LINK;
                        // SAFETY: `f` is a unit of the current generation (older ones were
                        // dropped with the cache); it gets exclusive pointers to the CPU and
                        // the runtime for the duration of the call, as its entry points require.
                        let status = unsafe { f(cpu as *mut CpuState, &mut rt) };
                        let (n, slot) = (rt.icount, rt.link);
                        // A device access may have asked the run to end early.
                        budget = budget.min(rt.run_limit);
                        done += n;
                        self.stats.compiled_instructions += n;
                        if status == CONTINUE && slot != NO_LINK && !poll && !cpu.code.has_writes() {
                            // Left through a fixed branch to its own page, with nothing for
                            // the exec loop to look at (no helper ran, no interrupt shadow
                            // ended: the interpreter looks for interrupts after the block
                            // following STI, and so must this): go on through the link slot, or
                            // have the next lookup fill it.
                            let linear = cpu.seg[SegReg::Cs as usize].base.wrapping_add(cpu.rip);
                            match linked(&cur, slot, linear, cpu) {
                                Some(next) if budget.saturating_sub(done) >= next.len => {
                                    if let Some(u) = next.unit.get() {
                                        f = u.entry;
                                        cur = next;
                                        self.stats.chained += 1;
                                        continue;
                                    }
                                }
                                Some(_) => {}
                                None => link_from = Some((cur, slot)),
                            }
                            break;
                        }
                        if status == FAULT {
                            if let Some(e) = rt.exception.take() {
                                interrupt::raise(cpu, &mut *rt.bus, e);
                            }
                            self.stats.exceptions += 1;
                            poll = true;
                        } else if status == LEAVE {
                            // A helper ran last: it may have made an interrupt deliverable.
                            poll = true;
                        } else if status == REDO {
                            // Its store would write decoded code (or the CPU is no longer what
                            // the unit was compiled for): the interpreter runs that
                            // instruction, then the blocks it overwrote are dropped.
                            poll = true;
                            if n == 0 && self.unstable.insert(cur.key) {
                                // Compiled for another CPU state: compile it again, once,
                                // without static segments.
                                self.cache.remove(&cur.key);
                            }
                            let k = n as usize;
                            let b = &cur.block;
                            if let (Some(insn), Some(f), Some(next)) = (b.insns.get(k), b.fns.get(k), b.next_ips.get(k))
                            {
                                rt.bus.set_retired(done);
                                done += 1;
                                if execute(cpu, &mut *rt.bus, insn, *f, *next).is_err() {
                                    self.stats.exceptions += 1;
                                }
                            }
                        }
                        if cpu.code.has_writes() {
                            self.drain_code_writes(cpu);
                        }
                        break;
                    }
                    continue;
                }
            }
            if single_step {
                for ((insn, f), next) in block.insns.iter().zip(&block.fns).zip(&block.next_ips) {
                    bus.set_retired(done);
                    done += 1;
                    if execute(cpu, bus, insn, *f, *next).is_err() {
                        self.stats.exceptions += 1;
                        poll = true;
                        break;
                    }
                    if cpu.halted || cpu.shutdown || done >= budget || cpu.code.has_writes() || cpu.rip != *next {
                        break;
                    }
                }
            } else {
                // The interpreter's inner loop: straight through the block while control falls
                // through (`next_ips[k]` is where instruction k + 1 starts).
                for (((insn, f), &next), &quiet) in
                    block.insns.iter().zip(&block.fns).zip(&block.next_ips).zip(entry.quiet.iter())
                {
                    cpu.next_rip = next;
                    if !quiet {
                        bus.set_retired(done);
                    }
                    let r = {
                        let mut c = Concrete::new(cpu, bus);
                        f(&mut c, insn)
                    };
                    done += 1;
                    if let Err(e) = r {
                        // Delivering the exception reads memory: at this instruction's time.
                        bus.set_retired(done - 1);
                        interrupt::raise(cpu, bus, e);
                        self.stats.exceptions += 1;
                        poll = true;
                        break;
                    }
                    cpu.rip = cpu.next_rip;
                    if cpu.rip != next || done >= budget || cpu.halted || cpu.shutdown || cpu.code.has_writes() {
                        break;
                    }
                }
            }
            if cpu.code.has_writes() {
                self.drain_code_writes(cpu);
            } else if !poll {
                prev = Some(entry);
            }
        }
        self.stats.instructions += done;
        (
            done,
            if cpu.shutdown {
                Exit::Shutdown
            } else if cpu.halted {
                Exit::Halted
            } else {
                Exit::Budget
            },
        )
    }
}

/// The entry `from`'s unit has linked at `slot`, if it is still cached and is for the block
/// at `linear` (an indirect branch's slot holds the last target it went to).
fn linked(from: &Entry, slot: u32, linear: u64, cpu: &CpuState) -> Option<Rc<Entry>> {
    from.unit.get()?.links.get(slot as usize)?.get(from, linear, cpu)
}

/// Links `from`'s exit `slot` to `to`, found by the lookup after that exit, when `to` is
/// compiled code for the same mode (whether its page is still mapped the same way is checked
/// each time the link is used: [`same_translation`]).
fn link(from: &Entry, slot: u32, to: &Rc<Entry>) {
    let (Some(u), Some(_)) = (from.unit.get(), to.unit.get()) else { return };
    let Some(&target) = u.link_targets.get(slot as usize) else { return };
    // The lookup after the exit is for the slot's target unless an interrupt came between.
    let start = from.key.linear.wrapping_sub(from.block.insns.first().map_or(0, |i| i.ip()));
    let same_page = from.key.linear >> 12 == to.key.linear >> 12;
    if (target != crate::jit::emit::DYNAMIC && start.wrapping_add(target) != to.key.linear)
        || (same_page && from.key.page != to.key.page)
        || from.key.bits != to.key.bits
    {
        return;
    }
    if let Some(cell) = u.links.get(slot as usize) {
        cell.set(to);
    }
}

/// Blocks in a compiled region at most. 32 rather than 16: the benchmark's quicksort (a
/// recursive function of about 25 blocks) then fits in one unit: bench-guest 400 CPU time
/// 0.88-0.90 s vs 1.10-1.13 s with the recursion change below; the i386 Linux boot about
/// the same (8.0-8.2 s vs 7.8-8.1 s, within this machine's noise) with +15-25% compile time.
const REGION_BLOCKS: usize = 32;

/// The region compiled for a hot block: the block, then the blocks its direct branches and
/// fall-throughs reach on the same page (so that their bytes and translation are those of
/// the first block's page, which the cache entry is invalidated with) that have run before
/// (cached: paths never taken are not compiled), up to [`REGION_BLOCKS`], and where a block
/// calls the first one (recursion), the block its call returns to. Branches between them
/// stay inside compiled code: loops, if/else, calls to a block of the region and RETs to a
/// return site in it ([`crate::jit::region_successors`]).
fn region(first: &Rc<Entry>, cpu: &CpuState, cache: &mut BlockCache) -> Vec<Rc<Entry>> {
    let mut entries = vec![first.clone()];
    let (Some(i0), [_]) = (first.block.insns.first(), first.block.pages.as_slice()) else { return entries };
    let cs_base = cpu.seg[SegReg::Cs as usize].base;
    let lin_page = cs_base.wrapping_add(i0.ip()) >> 12;
    let mut k = 0;
    while k < entries.len() && entries.len() < REGION_BLOCKS {
        let block = &entries[k].block;
        // After a recursive call (to the region's first block, a function's entry), the code
        // that goes on after it: its RET then stays in the unit.
        let recursive = crate::jit::call_target(block) == Some(i0.ip());
        let after_call = if recursive { crate::jit::return_site(block) } else { None };
        for ip in crate::jit::successors(block).into_iter().chain(after_call) {
            let linear = cs_base.wrapping_add(ip);
            if entries.len() >= REGION_BLOCKS
                || linear >> 12 != lin_page
                || entries.iter().any(|e| e.block.insns.first().map(|i| i.ip()) == Some(ip))
            {
                continue;
            }
            let key = BlockKey { linear, ..first.key };
            if let Some(e) = cache.get(&key) {
                if e.block.pages == first.block.pages {
                    entries.push(e);
                }
            }
        }
        k += 1;
    }
    entries
}

/// Runs `cpu` for at most `budget` instructions with a fresh interpreter (for callers that
/// run a CPU once; a machine keeps its [`Interpreter`] and with it the block cache).
pub fn run(cpu: &mut CpuState, bus: &mut dyn CpuBus, budget: u64) -> (u64, Exit) {
    Interpreter::new().run(cpu, bus, budget)
}

/// Executes a decoded instruction at `cpu.rip`, delivering the exception it raises (and the
/// single-step trap after it). Returns the exception, if any.
#[inline]
fn execute(
    cpu: &mut CpuState,
    bus: &mut dyn CpuBus,
    insn: &frontend_x86::insn::Insn,
    f: frontend_x86::emit::Helper,
    next_ip: u64,
) -> Result<(), Exception> {
    cpu.interrupt_shadow = false;
    let single_step = cpu.flags.raw_bits() & TF != 0;
    cpu.next_rip = next_ip;
    let r = {
        let mut c = Concrete::new(cpu, bus);
        f(&mut c, insn)
    };
    match r {
        Ok(()) => {
            cpu.rip = cpu.next_rip;
            if single_step {
                // A single-step trap after the instruction completes (SDM vol. 3, 17.3.1.4).
                let rip = cpu.rip;
                if let Err(e) = interrupt::deliver(cpu, bus, vector::DB, None, rip, EventKind::Exception) {
                    interrupt::raise(cpu, bus, e);
                }
            }
            Ok(())
        }
        Err(e) => {
            interrupt::raise(cpu, bus, e);
            Err(e)
        }
    }
}

/// Executes one instruction without the cache (decoding it afresh), or delivers the exception
/// it raises and returns it. For harnesses that watch each instruction.
pub fn step(cpu: &mut CpuState, bus: &mut dyn CpuBus) -> Option<Exception> {
    match decode::decode_one(cpu, bus) {
        Ok(raw) => {
            let insn = frontend_x86::insn::Insn::new(raw, cpu.code_bits());
            let next = decode::next_ip(cpu, &insn);
            execute(cpu, bus, &insn, sem::concrete_fn(sem::resolve(&insn)), next).err()
        }
        Err(e) => {
            interrupt::raise(cpu, bus, e);
            Some(e)
        }
    }
}
