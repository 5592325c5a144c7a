//! The Cranelift tier: hot decoded blocks compiled to host code over the same semantics the
//! interpreter runs (design principles 1, 3, 5).
//!
//! A compiled unit is a function `(cpu, rt) -> status` built by running each instruction's
//! generic semantics with [`emit::ClifEmit`]. Helpers (complex and sensitive instructions) are
//! called out of line through [`runtime`]; memory goes through the softmmu with every check;
//! a guest exception leaves the unit with the state written back and RIP at the instruction.
//! Code memory is reclaimed a whole generation at a time: when it passes its bound, every
//! unit is dropped and the module freed.

pub mod emit;
pub mod runtime;

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{types, AbiParam, UserFuncName};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Module, ModuleReloc};

use frontend_x86::decode::Block;
use frontend_x86::{sem, CpuState};

use runtime::Runtime;

/// A compiled unit's entry point.
pub type UnitFn = unsafe extern "C" fn(*mut CpuState, *mut Runtime<'_>) -> u32;

/// A compiled unit: its entry and the decoded block its code points into (helpers get
/// pointers to the block's instructions, so the block lives as long as the code). Not `Clone`:
/// the exec loop's cache is the only owner, and it is emptied before the code memory is freed.
#[derive(Debug)]
#[repr(C)] // the entry point first (see `cache::Entry`)
pub struct Unit {
    /// The entry point; valid while the [`Jit`] that made it is alive and in the same
    /// generation.
    pub(crate) entry: UnitFn,
    /// The generation of code memory it lives in.
    pub generation: u64,
    /// Guest instructions in it.
    pub insns: usize,
    /// Its link slots: the cached entry each linkable exit was found to lead to (same page,
    /// same mode), so the exec loop can go on there without a lookup. Weak: an entry dropped
    /// from the cache (its page written) is never run through a link.
    pub links: Box<[crate::cache::Link]>,
    /// The offset each link slot leads to ([`emit::DYNAMIC`] for an indirect branch's slot,
    /// which remembers the last target on the unit's page).
    pub link_targets: Box<[u64]>,
    _blocks: Vec<Rc<Block>>,
}

/// Why a block could not be compiled. The block then stays interpreted.
#[derive(Debug, thiserror::Error)]
pub enum JitError {
    /// The host has no Cranelift backend.
    #[error("this host is not supported by Cranelift: {0}")]
    Host(String),
    /// Cranelift rejected a setting.
    #[error("Cranelift setting: {0}")]
    Setting(#[from] settings::SetError),
    /// Cranelift failed to build the ISA.
    #[error("Cranelift ISA: {0}")]
    Isa(#[from] cranelift_codegen::CodegenError),
    /// Cranelift failed to compile or link a unit.
    #[error("Cranelift module: {0}")]
    Module(Box<cranelift_module::ModuleError>),
}

impl From<cranelift_module::ModuleError> for JitError {
    fn from(e: cranelift_module::ModuleError) -> Self {
        JitError::Module(Box::new(e))
    }
}

/// Compilation statistics.
#[derive(Clone, Debug, Default)]
pub struct JitStats {
    /// Units compiled.
    pub units: u64,
    /// Guest instructions in them.
    pub insns_compiled: u64,
    /// Compile time of each unit, in nanoseconds (for the median).
    pub compile_ns: Vec<u64>,
    /// Units that failed to compile (they stay interpreted).
    pub failures: u64,
    /// Code generations discarded to bound code memory.
    pub generations_dropped: u64,
    /// Of the compile time: building CLIF, Cranelift's code generation, and making code
    /// executable (nanoseconds).
    pub build_ns: u64,
    /// Cranelift's code generation (nanoseconds).
    pub codegen_ns: u64,
    /// Finalizing (linking, memory protection) (nanoseconds).
    pub finalize_ns: u64,
}

impl JitStats {
    /// Total compile time in nanoseconds.
    pub fn total_compile_ns(&self) -> u64 {
        self.compile_ns.iter().sum()
    }

    /// Median compile time per unit in nanoseconds (0 when nothing was compiled).
    pub fn median_compile_ns(&self) -> u64 {
        let mut v = self.compile_ns.clone();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    }
}

/// Code memory one generation may use before all of it is discarded.
const GENERATION_BYTES: usize = 64 << 20;

/// Units waiting for the compile thread at most: past this, hot blocks wait their turn
/// interpreted (they ask again on a later entry).
const MAX_QUEUED: usize = 256;

/// A unit being compiled: what its code will need once Cranelift is done with it.
struct Built {
    id: FuncId,
    generation: u64,
    link_targets: Vec<u64>,
    insns: usize,
    blocks: Vec<Rc<Block>>,
    /// The guest address it starts at (for diagnostics).
    at: u64,
    /// Time spent on it on the CPU's thread so far (building CLIF), in nanoseconds.
    build_ns: u64,
    /// Whether Cranelift optimizes it ([`OptPolicy`]).
    optimize: bool,
}

/// Which units Cranelift's optimizer (`opt_level=speed`) works on. It costs about a third
/// more compile time per unit; in a loop's unit it pays (bench-guest: 7% less time), in
/// straight-line code it measured nothing. `CRANEBOX_JIT_OPT=none|speed|loops` overrides
/// for experiments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OptPolicy {
    None,
    All,
    /// Units whose region has a back edge (a loop).
    Loops,
}

impl OptPolicy {
    fn from_env() -> Self {
        match std::env::var("CRANEBOX_JIT_OPT").as_deref() {
            Ok("none") => OptPolicy::None,
            Ok("speed") => OptPolicy::All,
            _ => OptPolicy::Loops,
        }
    }
}

/// A function for the compile thread.
struct Job {
    ticket: u64,
    ctx: Box<Context>,
    optimize: bool,
}

/// What the compile thread hands back: the context with its compiled code, or the error.
struct Done {
    ticket: u64,
    ctx: Box<Context>,
    result: Result<(), cranelift_codegen::CodegenError>,
    codegen_ns: u64,
}

/// The compile thread: Cranelift's code generation (nine tenths of a unit's compile time)
/// off the CPU's thread, which meanwhile goes on interpreting the block.
struct Worker {
    jobs: Option<crossbeam_channel::Sender<Job>>,
    done: crossbeam_channel::Receiver<Done>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    fn start(isas: Isas) -> Result<Self, JitError> {
        let (jobs, job_rx) = crossbeam_channel::unbounded::<Job>();
        let (done_tx, done) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("cranebox-jit".into())
            .spawn(move || {
                for Job { ticket, mut ctx, optimize } in job_rx {
                    let t = Instant::now();
                    let isa = isas.pick(optimize);
                    let result = ctx.compile(isa, &mut ControlPlane::default()).map(|_| ()).map_err(|e| e.inner);
                    let codegen_ns = t.elapsed().as_nanos() as u64;
                    if done_tx.send(Done { ticket, ctx, result, codegen_ns }).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| JitError::Host(format!("cannot start the compile thread: {e}")))?;
        Ok(Worker { jobs: Some(jobs), done, thread: Some(thread) })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the job channel ends the thread after the job at hand.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The compiler and its code memory.
pub struct Jit {
    module: Option<JITModule>,
    isa: OwnedTargetIsa,
    isas: Isas,
    policy: OptPolicy,
    fctx: FunctionBuilderContext,
    generation: u64,
    /// Code bytes in the current generation.
    bytes: usize,
    /// The compile thread, when units are compiled in the background.
    worker: Option<Worker>,
    /// Units handed to the compile thread, by ticket.
    queued: HashMap<u64, Built>,
    next_ticket: u64,
    /// Cleared contexts (back from the compile thread or an inline compile), for reuse.
    spare: Vec<Box<Context>>,
    /// What it has done.
    pub stats: JitStats,
}

impl std::fmt::Debug for Jit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jit")
            .field("generation", &self.generation)
            .field("background", &self.worker.is_some())
            .field("queued", &self.queued.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The host's code generator without and with Cranelift's optimizer.
#[derive(Clone)]
struct Isas {
    plain: OwnedTargetIsa,
    optimizing: OwnedTargetIsa,
}

impl Isas {
    fn new() -> Result<Self, JitError> {
        Ok(Isas { plain: new_isa("none")?, optimizing: new_isa("speed")? })
    }

    fn pick(&self, optimize: bool) -> &dyn cranelift_codegen::isa::TargetIsa {
        if optimize {
            &*self.optimizing
        } else {
            &*self.plain
        }
    }
}

fn new_isa(opt_level: &str) -> Result<OwnedTargetIsa, JitError> {
    let mut flags = settings::builder();
    flags.set("use_colocated_libcalls", "false")?;
    flags.set("is_pic", "false")?;
    // See OptPolicy. CRANEBOX_JIT_RA overrides the register allocator for experiments.
    flags.set("opt_level", opt_level)?;
    flags.set("regalloc_algorithm", &std::env::var("CRANEBOX_JIT_RA").unwrap_or_else(|_| "backtracking".into()))?;
    // Principle 5: the verifier only in debug builds.
    flags.set(
        "enable_verifier",
        if cfg!(debug_assertions) && std::env::var_os("CRANEBOX_JIT_NO_VERIFY").is_none() { "true" } else { "false" },
    )?;
    let isa = cranelift_native::builder().map_err(|e| JitError::Host(e.to_string()))?;
    Ok(isa.finish(settings::Flags::new(flags))?)
}

/// Whether a block of the region (in the order compiled, entry first) may go on at itself
/// or at one before it: a loop, or recursion.
fn has_loop(blocks: &[Rc<Block>]) -> bool {
    let starts: Vec<u64> = blocks.iter().map(|b| b.insns.first().map_or(u64::MAX, |i| i.ip())).collect();
    blocks.iter().enumerate().any(|(k, b)| successors(b).iter().any(|ip| starts[..=k].contains(ip)))
}

/// Where control may go after `block` without leaving the exec loop's view: the target of
/// a direct near branch ending it, and the next instruction when that branch is conditional
/// or the block just stopped (page end, length limit). None after a helper, which may have
/// changed the mode or made an interrupt deliverable: the exec loop must look.
pub fn successors(block: &Block) -> Vec<u64> {
    use iced_x86::FlowControl as F;
    let (Some(last), Some(next)) = (block.insns.last(), block.next_ips.last()) else { return Vec::new() };
    if block.ends_in_helper {
        return Vec::new();
    }
    let direct = near_direct(last);
    match last.flow_control() {
        F::Next => vec![*next],
        F::UnconditionalBranch if direct => vec![last.near_branch_target()],
        F::ConditionalBranch if direct => vec![last.near_branch_target(), *next],
        _ => Vec::new(),
    }
}

/// Whether `i` branches to a fixed near target.
fn near_direct(i: &frontend_x86::insn::Insn) -> bool {
    (0..i.op_count()).any(|n| {
        matches!(
            i.op_kind(n),
            iced_x86::OpKind::NearBranch16 | iced_x86::OpKind::NearBranch32 | iced_x86::OpKind::NearBranch64
        )
    })
}

/// The target of a block ending in a direct near call.
pub fn call_target(block: &Block) -> Option<u64> {
    let last = block.insns.last()?;
    (!block.ends_in_helper && near_direct(last) && last.flow_control() == iced_x86::FlowControl::Call)
        .then(|| last.near_branch_target())
}

/// Where a block ending in a direct near call returns to (the instruction after the call).
pub fn return_site(block: &Block) -> Option<u64> {
    call_target(block)?;
    block.next_ips.last().copied()
}

/// Where control may go after `block` within a region whose calls return to `returns`: its
/// [`successors`]; for a direct near call, its target (a recursive call stays in the unit
/// when the region holds the function's entry); for a near RET, those return sites (the
/// recursive call's RET returns without leaving the unit when the address it pops is one).
pub fn region_successors(block: &Block, returns: &[u64]) -> Vec<u64> {
    if let Some(t) = call_target(block) {
        return vec![t];
    }
    let near_ret = !block.ends_in_helper && block.insns.last().is_some_and(|i| i.mnemonic() == iced_x86::Mnemonic::Ret);
    if near_ret {
        returns.to_vec()
    } else {
        successors(block)
    }
}

impl Drop for Jit {
    fn drop(&mut self) {
        // The compile thread holds no code memory, only contexts: stop it first.
        self.worker = None;
        if let Some(m) = self.module.take() {
            // SAFETY: units are only reachable through the exec loop's cache, which is
            // declared before the JIT in `Interpreter` and so dropped first: no code of this
            // module is referenced or running.
            unsafe { m.free_memory() };
        }
    }
}

/// A unit the compile thread has finished, to install or drop ([`Jit::install`],
/// [`Jit::discard`]).
pub struct Ready {
    /// The ticket [`Jit::submit`] gave for it.
    pub ticket: u64,
    done: Done,
}

impl std::fmt::Debug for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ready").field("ticket", &self.ticket).finish_non_exhaustive()
    }
}

impl Jit {
    /// A compiler for the host, compiling on the caller's thread.
    pub fn new() -> Result<Self, JitError> {
        let isas = Isas::new()?;
        let isa = isas.plain.clone();
        Ok(Jit {
            module: Some(JITModule::new(JITBuilder::with_isa(isa.clone(), default_libcall_names()))),
            isa,
            isas,
            policy: OptPolicy::from_env(),
            fctx: FunctionBuilderContext::new(),
            generation: 0,
            bytes: 0,
            worker: None,
            queued: HashMap::new(),
            next_ticket: 0,
            spare: Vec::new(),
            stats: JitStats::default(),
        })
    }

    /// A compiler whose code generation runs on a thread of its own ([`Jit::submit`]).
    pub fn background() -> Result<Self, JitError> {
        let mut jit = Jit::new()?;
        jit.worker = Some(Worker::start(jit.isas.clone())?);
        Ok(jit)
    }

    /// Whether units are compiled on the compile thread.
    pub fn is_background(&self) -> bool {
        self.worker.is_some()
    }

    /// The current code generation: units of older generations must not be called.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the current generation is full: the caller drops every unit it holds and calls
    /// [`Jit::new_generation`].
    pub fn full(&self) -> bool {
        self.bytes >= GENERATION_BYTES
    }

    /// Frees all code and starts a new generation. Every [`Unit`] handed out before is dead,
    /// and units still on the compile thread are dropped when they come back.
    pub fn new_generation(&mut self) -> Result<(), JitError> {
        if let Some(old) = self.module.take() {
            // SAFETY: the caller has dropped every unit of this generation (the exec loop
            // clears its cache first), so no code in this module is referenced or running.
            unsafe { old.free_memory() };
        }
        self.module = Some(JITModule::new(JITBuilder::with_isa(self.isa.clone(), default_libcall_names())));
        self.generation += 1;
        self.bytes = 0;
        self.queued.clear();
        self.stats.generations_dropped += 1;
        Ok(())
    }

    /// Compiles the region `blocks` (entered at the first; see [`successors`]), decoded for
    /// `cpu`'s current mode, on this thread.
    ///
    /// With `static_segs`, flat data segments (and in 64-bit mode FS and GS) are taken as
    /// constants, checked once at the unit's entry; the exec loop turns it off for blocks
    /// whose entry check failed.
    pub fn compile(&mut self, blocks: &[Rc<Block>], cpu: &CpuState, static_segs: bool) -> Result<Unit, JitError> {
        let mut ctx = self.context();
        let r = self.compile_in(&mut ctx, blocks, cpu, static_segs);
        self.recycle(ctx);
        r
    }

    fn compile_in(
        &mut self,
        ctx: &mut Context,
        blocks: &[Rc<Block>],
        cpu: &CpuState,
        static_segs: bool,
    ) -> Result<Unit, JitError> {
        let built = self.build(ctx, blocks, cpu, static_segs)?;
        let t = Instant::now();
        ctx.compile(self.isas.pick(built.optimize), &mut ControlPlane::default()).map_err(|e| e.inner)?;
        let codegen_ns = t.elapsed().as_nanos() as u64;
        self.define(built, ctx, codegen_ns)
    }

    /// Like [`Jit::compile`], but the code generation runs on the compile thread: returns a
    /// ticket the unit comes back with through [`Jit::ready`], or None when the queue is full
    /// (ask again later). An error without a compile thread ([`Jit::background`]).
    pub fn submit(&mut self, blocks: &[Rc<Block>], cpu: &CpuState, static_segs: bool) -> Result<Option<u64>, JitError> {
        let Some(worker) = &self.worker else { return Err(JitError::Host("no compile thread".into())) };
        if self.queued.len() >= MAX_QUEUED {
            return Ok(None);
        }
        let Some(jobs) = worker.jobs.clone() else { return Err(JitError::Host("no compile thread".into())) };
        let mut ctx = self.context();
        let built = match self.build(&mut ctx, blocks, cpu, static_segs) {
            Ok(b) => b,
            Err(e) => {
                self.recycle(ctx);
                return Err(e);
            }
        };
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        if jobs.send(Job { ticket, ctx, optimize: built.optimize }).is_err() {
            self.worker = None;
            return Err(JitError::Host("the compile thread has stopped".into()));
        }
        self.queued.insert(ticket, built);
        Ok(Some(ticket))
    }

    /// A unit the compile thread has finished, if any (of the current generation). With
    /// `wait`, waits for the next one while any is queued.
    pub fn ready(&mut self, wait: bool) -> Option<Ready> {
        loop {
            let worker = self.worker.as_ref()?;
            let got = if wait && !self.queued.is_empty() {
                worker.done.recv().map_err(|_| crossbeam_channel::TryRecvError::Disconnected)
            } else {
                worker.done.try_recv()
            };
            let done = match got {
                Ok(d) => d,
                Err(crossbeam_channel::TryRecvError::Empty) => return None,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    log::error!("the JIT's compile thread has stopped; {} units stay interpreted", self.queued.len());
                    self.worker = None;
                    return None;
                }
            };
            if self.queued.contains_key(&done.ticket) {
                return Some(Ready { ticket: done.ticket, done });
            }
            // Of a generation since dropped.
            self.recycle(done.ctx);
        }
    }

    /// Installs a finished unit in code memory.
    pub fn install(&mut self, ready: Ready) -> Result<Unit, JitError> {
        let Done { ticket, mut ctx, result, codegen_ns } = ready.done;
        let built = self.queued.remove(&ticket);
        let r = match (built, result) {
            (Some(built), Ok(())) => self.define(built, &mut ctx, codegen_ns),
            (_, Err(e)) => Err(e.into()),
            (None, Ok(())) => Err(JitError::Host("unit of a dropped generation".into())),
        };
        self.recycle(ctx);
        r
    }

    /// Drops a finished unit whose block is gone.
    pub fn discard(&mut self, ready: Ready) {
        self.queued.remove(&ready.ticket);
        self.recycle(ready.done.ctx);
    }

    /// Tickets still on the compile thread.
    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// A cleared context: one back from an earlier unit, or a new one.
    fn context(&mut self) -> Box<Context> {
        self.spare.pop().unwrap_or_else(|| Box::new(Context::new()))
    }

    fn recycle(&mut self, mut ctx: Box<Context>) {
        ctx.clear();
        if self.spare.len() < 8 {
            self.spare.push(ctx);
        }
    }

    /// Builds the CLIF of the region `blocks` into `ctx` (see [`Jit::compile`]).
    fn build(
        &mut self,
        ctx: &mut Context,
        blocks: &[Rc<Block>],
        cpu: &CpuState,
        static_segs: bool,
    ) -> Result<Built, JitError> {
        let start = Instant::now();
        let Some(block) = blocks.first() else { return Err(JitError::Host("empty region".into())) };
        let optimize = match self.policy {
            OptPolicy::None => false,
            OptPolicy::All => true,
            OptPolicy::Loops => has_loop(blocks),
        };
        let link_targets;
        let module = match self.module.as_mut() {
            Some(m) => m,
            None => return Err(JitError::Host("no code module".into())),
        };
        let ptr = module.target_config().pointer_type();
        ctx.func.signature.params.clear();
        ctx.func.signature.returns.clear();
        ctx.func.signature.call_conv = self.isa.default_call_conv();
        ctx.func.signature.params.push(AbiParam::new(ptr));
        ctx.func.signature.params.push(AbiParam::new(ptr));
        ctx.func.signature.returns.push(AbiParam::new(types::I32));
        let call_conv = self.isa.default_call_conv();
        let frontend_config = module.target_config();
        let id = module.declare_anonymous_function(&ctx.func.signature)?;
        ctx.func.name = UserFuncName::user(0, id.as_u32());
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut self.fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            b.seal_block(entry);
            let (cpu_v, rt_v) = (b.block_params(entry)[0], b.block_params(entry)[1]);
            let sigs = emit::Sigs::import(&mut b, call_conv);
            let mode = emit::UnitMode {
                mode64: cpu.mode64(),
                stack_width: cpu.stack_width(),
                tlb_mode: frontend_x86::mem::mmu_mode(cpu).index(),
                cs_limit: u64::from(cpu.seg[frontend_x86::SegReg::Cs as usize].limit),
                seg_static: std::array::from_fn(|s| {
                    let seg = &cpu.seg[s];
                    let st = emit::SegStatic::of(seg);
                    let wanted = if cpu.mode64() {
                        s == frontend_x86::SegReg::Fs as usize || s == frontend_x86::SegReg::Gs as usize
                    } else {
                        st.data_rw && seg.base == 0 && seg.limit == 0xffff_ffff
                    };
                    (static_segs && wanted).then_some(st)
                }),
            };
            let mut e = emit::ClifEmit::new(&mut b, cpu_v, rt_v, sigs, mode);
            let labels: Vec<_> = blocks.iter().map(|_| e.label()).collect();
            let starts: Vec<u64> = blocks.iter().map(|b| b.insns.first().map_or(u64::MAX, |i| i.ip())).collect();
            let returns: Vec<u64> = blocks.iter().filter_map(|b| return_site(b)).collect();
            let liveness: Vec<_> = blocks.iter().map(|b| emit::flag_liveness(&b.insns, &b.ops)).collect();
            e.enter(labels[0], liveness[0].1);
            for (bi, blk) in blocks.iter().enumerate() {
                e.start_block(labels[bi], liveness[bi].1);
                let mut ended = false;
                let dead = &liveness[bi].0;
                for (k, ((insn, op), next)) in blk.insns.iter().zip(&blk.ops).zip(&blk.next_ips).enumerate() {
                    e.begin(k, insn.ip(), *next, dead[k]);
                    if let Err(ex) = sem::execute_op(&mut e, *op, insn) {
                        // Faults whatever its operands (#UD and the like): leave with it.
                        e.raise_now(ex);
                        ended = true;
                        break;
                    }
                }
                if !ended {
                    let succ: Vec<_> = region_successors(blk, &returns)
                        .into_iter()
                        .filter_map(|ip| {
                            let s = starts.iter().position(|&x| x == ip)?;
                            Some(emit::Succ {
                                at: ip,
                                label: labels[s],
                                len: blocks[s].insns.len() as u64,
                                flags_in: liveness[s].1,
                            })
                        })
                        .collect();
                    e.end_block(blk.insns.len() as u64, &succ, blk.ends_in_helper);
                }
            }
            e.close();
            link_targets = e.links().to_vec();
            b.seal_all_blocks();
            b.finalize(frontend_config);
        }
        if let Ok(show) = std::env::var("CRANEBOX_JIT_SHOW") {
            if u64::from_str_radix(&show, 16).ok() == block.insns.first().map(|i| i.ip()) {
                for b in blocks {
                    eprintln!("--");
                    for i in &b.insns {
                        eprintln!(
                            "{:x} {:?} {:?} {:?} {:?} {:?} {:x}",
                            i.ip(),
                            i.mnemonic(),
                            i.op0_kind(),
                            i.op1_kind(),
                            i.memory_base(),
                            i.memory_index(),
                            i.memory_displacement64()
                        );
                    }
                }
            }
        }
        if std::env::var_os("CRANEBOX_JIT_DUMP").is_some() {
            eprintln!("{}", ctx.func.display());
        }
        ctx.set_disasm(std::env::var_os("CRANEBOX_JIT_DISASM").is_some());
        let build_ns = start.elapsed().as_nanos() as u64;
        self.stats.build_ns += build_ns;
        Ok(Built {
            id,
            generation: self.generation,
            link_targets,
            insns: blocks.iter().map(|b| b.insns.len()).sum(),
            blocks: blocks.to_vec(),
            at: block.insns.first().map_or(0, |i| i.ip()),
            build_ns,
            optimize,
        })
    }

    /// Puts the code Cranelift generated into `ctx` into code memory as `built`'s unit.
    fn define(&mut self, built: Built, ctx: &mut Context, codegen_ns: u64) -> Result<Unit, JitError> {
        let start = Instant::now();
        if built.generation != self.generation {
            return Err(JitError::Host("unit of a dropped generation".into()));
        }
        let module = match self.module.as_mut() {
            Some(m) => m,
            None => return Err(JitError::Host("no code module".into())),
        };
        let Some(code) = ctx.compiled_code() else { return Err(JitError::Host("no code generated".into())) };
        if let Some(v) = code.vcode.as_ref() {
            eprintln!("unit at {:#x}:\n{v}", built.at);
        }
        let relocs: Vec<_> =
            code.buffer.relocs().iter().map(|r| ModuleReloc::from_mach_reloc(r, &ctx.func, built.id)).collect();
        let size = code.code_buffer().len();
        module.define_function_bytes(built.id, u64::from(code.buffer.alignment), code.code_buffer(), &relocs)?;
        module.finalize_definitions()?;
        let code = module.get_finalized_function(built.id);
        self.bytes += size;
        if std::env::var_os("CRANEBOX_PERF_MAP").is_some() {
            // perf's JIT symbol map: `perf report` then names units by guest address.
            use std::io::Write;
            let path = format!("/tmp/perf-{}.map", std::process::id());
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
                let _ = writeln!(f, "{:x} {:x} guest_{:x}", code as usize, size, built.at);
            }
        }
        // SAFETY: `code` is the finalized function just defined with the signature
        // `(ptr, ptr) -> i32` in the host's default calling convention, which is `extern "C"`
        // on every host Cranelift supports.
        let entry = unsafe { std::mem::transmute::<*const u8, UnitFn>(code) };
        let finalize_ns = start.elapsed().as_nanos() as u64;
        self.stats.codegen_ns += codegen_ns;
        self.stats.finalize_ns += finalize_ns;
        self.stats.units += 1;
        self.stats.insns_compiled += built.insns as u64;
        let total = built.build_ns + codegen_ns + finalize_ns;
        self.stats.compile_ns.push(total);
        if std::env::var_os("CRANEBOX_JIT_SLOW").is_some() && total > 5_000_000 {
            eprintln!("slow unit at {:#x}: {} insns, {} code bytes, {} us", built.at, built.insns, size, total / 1000);
        }
        let links = built.link_targets.iter().map(|_| crate::cache::Link::default()).collect();
        Ok(Unit {
            entry,
            generation: self.generation,
            insns: built.insns,
            links,
            link_targets: built.link_targets.into_boxed_slice(),
            _blocks: built.blocks,
        })
    }
}
