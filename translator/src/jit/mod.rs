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

use std::rc::Rc;
use std::time::Instant;

use cranelift_codegen::ir::{types, AbiParam, UserFuncName};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Module};

use frontend_x86::decode::Block;
use frontend_x86::{sem, CpuState};

use runtime::Runtime;

/// A compiled unit's entry point.
pub type UnitFn = unsafe extern "C" fn(*mut CpuState, *mut Runtime<'_>) -> u32;

/// A compiled unit: its entry and the decoded block its code points into (helpers get
/// pointers to the block's instructions, so the block lives as long as the code). Not `Clone`:
/// the exec loop's cache is the only owner, and it is emptied before the code memory is freed.
#[derive(Debug)]
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

/// The compiler and its code memory.
pub struct Jit {
    module: Option<JITModule>,
    ctx: Context,
    fctx: FunctionBuilderContext,
    generation: u64,
    /// Code bytes in the current generation.
    bytes: usize,
    /// What it has done.
    pub stats: JitStats,
}

impl std::fmt::Debug for Jit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jit").field("generation", &self.generation).field("stats", &self.stats).finish_non_exhaustive()
    }
}

fn new_module() -> Result<JITModule, JitError> {
    let mut flags = settings::builder();
    flags.set("use_colocated_libcalls", "false")?;
    flags.set("is_pic", "false")?;
    // Cranelift's optimizer costs ~45% of compile time and bought nothing measurable on
    // benches/interp_mips (170 MIPS either way; benches/jit_compile: 300 vs 590 us for a
    // 9-instruction unit): the units are short and their code is already what the semantics
    // say. CRANEBOX_JIT_OPT / CRANEBOX_JIT_RA override for experiments.
    flags.set("opt_level", &std::env::var("CRANEBOX_JIT_OPT").unwrap_or_else(|_| "none".into()))?;
    flags.set("regalloc_algorithm", &std::env::var("CRANEBOX_JIT_RA").unwrap_or_else(|_| "backtracking".into()))?;
    // Principle 5: the verifier only in debug builds.
    flags.set(
        "enable_verifier",
        if cfg!(debug_assertions) && std::env::var_os("CRANEBOX_JIT_NO_VERIFY").is_none() { "true" } else { "false" },
    )?;
    let isa = cranelift_native::builder().map_err(|e| JitError::Host(e.to_string()))?;
    let isa = isa.finish(settings::Flags::new(flags))?;
    Ok(JITModule::new(JITBuilder::with_isa(isa, default_libcall_names())))
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
    let direct = (0..last.op_count()).any(|n| {
        matches!(
            last.op_kind(n),
            iced_x86::OpKind::NearBranch16 | iced_x86::OpKind::NearBranch32 | iced_x86::OpKind::NearBranch64
        )
    });
    match last.flow_control() {
        F::Next => vec![*next],
        F::UnconditionalBranch if direct => vec![last.near_branch_target()],
        F::ConditionalBranch if direct => vec![last.near_branch_target(), *next],
        _ => Vec::new(),
    }
}

impl Drop for Jit {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: units are only reachable through the exec loop's cache, which is
            // declared before the JIT in `Interpreter` and so dropped first: no code of this
            // module is referenced or running.
            unsafe { m.free_memory() };
        }
    }
}

impl Jit {
    /// A compiler for the host.
    pub fn new() -> Result<Self, JitError> {
        let module = new_module()?;
        let ctx = module.make_context();
        Ok(Jit {
            module: Some(module),
            ctx,
            fctx: FunctionBuilderContext::new(),
            generation: 0,
            bytes: 0,
            stats: JitStats::default(),
        })
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

    /// Frees all code and starts a new generation. Every [`Unit`] handed out before is dead.
    pub fn new_generation(&mut self) -> Result<(), JitError> {
        if let Some(old) = self.module.take() {
            // SAFETY: the caller has dropped every unit of this generation (the exec loop
            // clears its cache first), so no code in this module is referenced or running.
            unsafe { old.free_memory() };
        }
        self.module = Some(new_module()?);
        self.generation += 1;
        self.bytes = 0;
        self.stats.generations_dropped += 1;
        Ok(())
    }

    /// Compiles the region `blocks` (entered at the first; see [`successors`]), decoded for
    /// `cpu`'s current mode.
    ///
    /// With `static_segs`, flat data segments (and in 64-bit mode FS and GS) are taken as
    /// constants, checked once at the unit's entry; the exec loop turns it off for blocks
    /// whose entry check failed.
    pub fn compile(&mut self, blocks: &[Rc<Block>], cpu: &CpuState, static_segs: bool) -> Result<Unit, JitError> {
        let start = Instant::now();
        let Some(block) = blocks.first() else { return Err(JitError::Host("empty region".into())) };
        let link_targets;
        let module = match self.module.as_mut() {
            Some(m) => m,
            None => return Err(JitError::Host("no code module".into())),
        };
        let ptr = module.target_config().pointer_type();
        self.ctx.func.signature.params.clear();
        self.ctx.func.signature.returns.clear();
        self.ctx.func.signature.params.push(AbiParam::new(ptr));
        self.ctx.func.signature.params.push(AbiParam::new(ptr));
        self.ctx.func.signature.returns.push(AbiParam::new(types::I32));
        let call_conv = module.isa().default_call_conv();
        let frontend_config = module.target_config();
        let id = module.declare_anonymous_function(&self.ctx.func.signature)?;
        self.ctx.func.name = UserFuncName::user(0, id.as_u32());
        {
            let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
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
            e.enter(labels[0]);
            for (bi, blk) in blocks.iter().enumerate() {
                e.start_block(labels[bi]);
                let mut ended = false;
                let dead = emit::flag_liveness(&blk.insns, &blk.ops);
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
                    let succ: Vec<_> = successors(blk)
                        .into_iter()
                        .filter_map(|ip| {
                            let s = starts.iter().position(|&x| x == ip)?;
                            Some((ip, labels[s], blocks[s].insns.len() as u64))
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
        let built = Instant::now();
        self.stats.build_ns += (built - start).as_nanos() as u64;
        if std::env::var_os("CRANEBOX_JIT_DUMP").is_some() {
            eprintln!("{}", self.ctx.func.display());
        }
        let disasm = std::env::var_os("CRANEBOX_JIT_DISASM").is_some();
        self.ctx.set_disasm(disasm);
        module.define_function(id, &mut self.ctx)?;
        if disasm {
            if let Some(v) = self.ctx.compiled_code().and_then(|c| c.vcode.as_ref()) {
                eprintln!("unit at {:#x}:\n{v}", block.insns.first().map_or(0, |i| i.ip()));
            }
        }
        let size = self.ctx.compiled_code().map_or(0, |c| c.code_buffer().len());
        module.clear_context(&mut self.ctx);
        let generated = Instant::now();
        self.stats.codegen_ns += (generated - built).as_nanos() as u64;
        module.finalize_definitions()?;
        self.stats.finalize_ns += generated.elapsed().as_nanos() as u64;
        let code = module.get_finalized_function(id);
        self.bytes += size;
        if std::env::var_os("CRANEBOX_PERF_MAP").is_some() {
            // perf's JIT symbol map: `perf report` then names units by guest address.
            use std::io::Write;
            let path = format!("/tmp/perf-{}.map", std::process::id());
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
                let at = block.insns.first().map_or(0, |i| i.ip());
                let _ = writeln!(f, "{:x} {:x} guest_{at:x}", code as usize, size);
            }
        }
        // SAFETY: `code` is the finalized function just defined with the signature
        // `(ptr, ptr) -> i32` in the host's default calling convention, which is `extern "C"`
        // on every host Cranelift supports.
        let entry = unsafe { std::mem::transmute::<*const u8, UnitFn>(code) };
        self.stats.units += 1;
        let insns: usize = blocks.iter().map(|b| b.insns.len()).sum();
        self.stats.insns_compiled += insns as u64;
        self.stats.compile_ns.push(start.elapsed().as_nanos() as u64);
        if std::env::var_os("CRANEBOX_JIT_SLOW").is_some() && start.elapsed().as_millis() > 5 {
            eprintln!("slow unit: {} insns, {} code bytes, {:?}", block.insns.len(), size, start.elapsed());
            for i in &block.insns {
                eprintln!("  {:x} {}", i.ip(), i.mnemonic() as u32);
            }
        }
        let links = link_targets.iter().map(|_| crate::cache::Link::default()).collect();
        Ok(Unit {
            entry,
            generation: self.generation,
            insns,
            links,
            link_targets: link_targets.into_boxed_slice(),
            _blocks: blocks.to_vec(),
        })
    }
}
