//! The interpreter tier: decoded blocks from a cache, each instruction's semantics run on
//! concrete values.

use std::rc::Rc;

use frontend_x86::decode;
use frontend_x86::flags::TF;
use frontend_x86::interrupt::{self, EventKind};
use frontend_x86::mem::{self, AccessKind};
use frontend_x86::{exception::vector, sem, Concrete, CpuBus, CpuState, Exception, SegReg};

use crate::cache::{BlockCache, BlockKey};

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
}

/// The interpreter tier with its decoded-block cache.
#[derive(Debug, Default)]
pub struct Interpreter {
    cache: BlockCache,
    /// What it has done so far.
    pub stats: Stats,
}

impl Interpreter {
    /// An interpreter with an empty cache.
    pub fn new() -> Self {
        Self::default()
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

    fn block_at(&mut self, cpu: &mut CpuState, bus: &mut dyn CpuBus) -> Result<Rc<decode::Block>, Exception> {
        let linear = cpu.seg[SegReg::Cs as usize].base.wrapping_add(cpu.rip);
        let page = mem::translate(cpu, bus, linear & !0xfff, AccessKind::Exec)? >> 12;
        let key = BlockKey { linear, page, bits: cpu.code_bits() as u8 };
        if let Some(b) = self.cache.get(&key) {
            return Ok(b);
        }
        let block = Rc::new(decode::decode_block(cpu, bus)?);
        self.stats.blocks_decoded += 1;
        if !self.cache.insert(key, block.clone()) {
            cpu.code.clear();
        }
        for p in &block.pages {
            cpu.code.mark(*p);
            // Also on the bus, which reports writes by DMA (and by anything else) to it.
            bus.set_code_page(*p << 12, true);
        }
        Ok(block)
    }

    /// Runs `cpu` for at most `budget` instructions. Returns how many ran and why it stopped.
    /// Exceptions are delivered to the guest; nothing the guest does makes this fail.
    pub fn run(&mut self, cpu: &mut CpuState, bus: &mut dyn CpuBus, budget: u64) -> (u64, Exit) {
        let mut done = 0;
        // Whether an interrupt may have become deliverable since the last look. Within a run,
        // time stands still for the devices, so only the CPU can change that: by a helper (I/O,
        // STI/POPF/IRET, ...), which ends its block, or by taking an exception.
        let mut poll = true;
        while done < budget {
            if cpu.shutdown {
                break;
            }
            if poll || cpu.halted {
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
            let block = match self.block_at(cpu, bus) {
                Ok(b) => b,
                Err(e) => {
                    interrupt::raise(cpu, bus, e);
                    self.stats.exceptions += 1;
                    done += 1;
                    poll = true;
                    continue;
                }
            };
            poll |= block.ends_in_helper;
            // TF only changes in helpers, which end blocks: it holds for the whole block.
            let single_step = cpu.flags.raw_bits() & TF != 0;
            cpu.interrupt_shadow = false;
            for (k, ((insn, f), next)) in block.insns.iter().zip(&block.fns).zip(&block.next_ips).enumerate() {
                let r = if single_step {
                    execute(cpu, bus, insn, *f, *next)
                } else {
                    cpu.next_rip = *next;
                    let r = {
                        let mut c = Concrete::new(cpu, bus);
                        f(&mut c, insn)
                    };
                    match r {
                        Ok(()) => {
                            cpu.rip = cpu.next_rip;
                            Ok(())
                        }
                        Err(e) => {
                            interrupt::raise(cpu, bus, e);
                            Err(e)
                        }
                    }
                };
                done += 1;
                if r.is_err() {
                    self.stats.exceptions += 1;
                    poll = true;
                    break;
                }
                if cpu.halted || cpu.shutdown || done >= budget {
                    break;
                }
                if cpu.code.has_writes() {
                    // This block or another may have been overwritten: decode afresh.
                    self.drain_code_writes(cpu);
                    break;
                }
                match block.insns.get(k + 1) {
                    Some(next) if next.ip() == cpu.rip => {}
                    _ => break,
                }
            }
            if cpu.code.has_writes() {
                self.drain_code_writes(cpu);
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
