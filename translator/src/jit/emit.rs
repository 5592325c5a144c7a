//! The emitter on Cranelift values: the JIT tier's half of principle 1. The same generic
//! semantics that `Concrete` runs append CLIF here.
//!
//! Guest registers are SSA values: loaded from the CPU state on first use in a guest block
//! (and again after a helper call), reused while the value dominates, and stored back only
//! when dirty, at the block's end or where the state must be whole: before a helper, a branch
//! inside an instruction, and on a slow path or exit that may leave the unit. The pending flag operation of the unit (which operation, width,
//! operands, result) is tracked at compile time, so a condition after CMP/SUB/ADD/TEST/INC/DEC
//! becomes one compare that Cranelift fuses with the branch. Memory goes through
//! [`super::runtime`] calls; a fault branches to an exit that writes the state back with RIP
//! at the faulting instruction.

use std::collections::HashMap;

use cranelift_codegen::ir::condcodes::{CondCode, IntCC};
use cranelift_codegen::ir::{
    types, AbiParam, Block, BlockArg, InstBuilder, InstructionData, MemFlagsData, SigRef, Signature, Value, ValueDef,
};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::{FunctionBuilder, Variable};

use frontend_x86::emit::{Alu, Cmp, Cr, Emit, Helper, Lanes, RegRef, VecOp};
use frontend_x86::flags::{FlagOp, LazyFlags};
use frontend_x86::insn::Insn;
use frontend_x86::state::Segment;
use frontend_x86::{sem, CpuState, Exception, Gpr, SegReg, Width};

use softmmu::tlb::{FAST_ADDEND_OFFSET, FAST_ENTRY_SHIFT, FAST_READ_OFFSET, FAST_WRITE_OFFSET, TLB_ENTRIES};

use super::runtime::{self, CONTINUE, FAULT, REDO, RT_BUDGET, RT_ICOUNT, RT_LINK, RT_RETIRED, RT_STATUS, RT_TLB};

const I64: types::Type = types::I64;
const I32: types::Type = types::I32;
const I8: types::Type = types::I8;
/// The type an XMM value has between operations (lane-wise operations bitcast it).
const X128: types::Type = types::I8X16;

fn trusted() -> MemFlagsData {
    MemFlagsData::trusted()
}

const OFF_GPR: i32 = std::mem::offset_of!(CpuState, gpr) as i32;
const OFF_RIP: i32 = std::mem::offset_of!(CpuState, rip) as i32;
const OFF_NEXT_RIP: i32 = std::mem::offset_of!(CpuState, next_rip) as i32;
const OFF_FLAGS: i32 = std::mem::offset_of!(CpuState, flags) as i32;
const OFF_SEG: i32 = std::mem::offset_of!(CpuState, seg) as i32;
const OFF_CR0: i32 = std::mem::offset_of!(CpuState, cr0) as i32;
const OFF_CR4: i32 = std::mem::offset_of!(CpuState, cr4) as i32;
const OFF_XMM: i32 = std::mem::offset_of!(CpuState, xmm) as i32;
const SEG_SIZE: i32 = std::mem::size_of::<Segment>() as i32;
const OFF_SEG_SELECTOR: i32 = std::mem::offset_of!(Segment, selector) as i32;
const OFF_SEG_LIMIT: i32 = std::mem::offset_of!(Segment, limit) as i32;
const OFF_SEG_BASE: i32 = std::mem::offset_of!(Segment, base) as i32;
const OFF_SEG_ATTR: i32 = std::mem::offset_of!(Segment, attr) as i32;

/// Guest memory through a host pointer: never traps (the TLB only holds mapped RAM),
/// unaligned, little-endian like the guest.
fn guest_mem() -> MemFlagsData {
    MemFlagsData::new().with_notrap().with_endianness(cranelift_codegen::ir::Endianness::Little)
}

/// The XMM registers in the CPU state: never trapping; no alignment promised (the field is
/// 16-byte aligned, but an unaligned vector access costs nothing on current hosts).
fn state_vec() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// For bitcasts between vector types of different lane counts, which need a byte order.
fn lanes_le() -> MemFlagsData {
    MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little)
}

fn lanes_ty(l: Lanes) -> types::Type {
    match l {
        Lanes::B => types::I8X16,
        Lanes::W => types::I16X8,
        Lanes::D => types::I32X4,
        Lanes::Q => types::I64X2,
    }
}

/// An XMM value of all zeros.
fn vec_zero(b: &mut FunctionBuilder<'_>) -> Value {
    let zero = b.func.dfg.constants.insert(vec![0u8; 16].into());
    b.ins().vconst(X128, zero)
}

/// `shift` of each `l` lane of the XMM value `x` by the constant `n` (below the lane width).
fn vec_shift(
    b: &mut FunctionBuilder<'_>,
    l: Lanes,
    x: Value,
    n: u8,
    shift: fn(&mut FunctionBuilder<'_>, Value, Value) -> Value,
) -> Value {
    let t = lanes_ty(l);
    let v = b.ins().bitcast(t, lanes_le(), x);
    let c = b.ins().iconst(I32, i64::from(n));
    let r = shift(b, v, c);
    b.ins().bitcast(X128, lanes_le(), r)
}

/// The runtime entry points' signatures, imported once per function.
#[derive(Clone, Copy, Debug)]
pub struct Sigs {
    load: SigRef,
    store: SigRef,
    store128: SigRef,
    helper: SigRef,
    raise: SigRef,
    cond: SigRef,
    carry: SigRef,
    rflags: SigRef,
    set_rflags: SigRef,
}

impl Sigs {
    /// Imports the signatures into the function being built.
    pub fn import(b: &mut FunctionBuilder<'_>, cc: CallConv) -> Self {
        let mut sig = |params: &[types::Type], ret: Option<types::Type>| {
            let mut s = Signature::new(cc);
            s.params.extend(params.iter().map(|t| AbiParam::new(*t)));
            s.returns.extend(ret.map(AbiParam::new));
            b.import_signature(s)
        };
        Sigs {
            load: sig(&[I64, I64, I32, I64], Some(I64)),
            store: sig(&[I64, I64, I32, I64, I64], Some(I32)),
            store128: sig(&[I64, I64, I32, I64, I64, I64], Some(I32)),
            helper: sig(&[I64, I64, I64, I64, I64], Some(I32)),
            raise: sig(&[I64, I32, I64], None),
            cond: sig(&[I64, I32], Some(I64)),
            carry: sig(&[I64], Some(I64)),
            rflags: sig(&[I64], Some(I64)),
            set_rflags: sig(&[I64, I64, I64], None),
        }
    }
}

/// A segment's descriptor cache as a unit was compiled for it: memory accesses use the
/// base and limit as constants, and the unit's entry checks they are still the CPU's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegStatic {
    /// The base.
    pub base: u64,
    /// The limit.
    pub limit: u32,
    /// The attributes, masked to what the inline checks look at.
    pub attr: u16,
    /// A present, writable, expand-up data segment (the inline path's only kind).
    pub data_rw: bool,
}

impl SegStatic {
    /// The attribute bits the inline access checks depend on.
    pub const ATTR_MASK: u16 = frontend_x86::state::attr::P
        | frontend_x86::state::attr::S
        | frontend_x86::state::attr::CODE
        | frontend_x86::state::attr::RW
        | frontend_x86::state::attr::DC;

    /// What `s` gives the unit.
    pub fn of(s: &Segment) -> Self {
        use frontend_x86::state::attr;
        let a = s.attr & Self::ATTR_MASK;
        SegStatic { base: s.base, limit: s.limit, attr: a, data_rw: a == attr::P | attr::S | attr::RW }
    }
}

/// The target of an indirect branch's link slot.
pub const DYNAMIC: u64 = u64::MAX;

/// How the current instruction left control, when the unit knows at compile time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Branch {
    /// It went on to the next instruction.
    None,
    /// To a fixed offset.
    Static(u64),
    /// To the first offset when the I8 truth value is set, else to the second.
    Cond(Value, u64, u64),
    /// Only the `next_rip` variable knows.
    Dynamic,
}

/// The unit's knowledge of the pending flag operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flags {
    /// The CPU state's lazy flags are authoritative.
    InCpu,
    /// The unit set them: the operation and width are known, the operands are in variables.
    Pending(FlagOp, Width),
    /// An INC or DEC whose carry-in (the `b` operand: CF, which they keep) is still the CPU
    /// state's CF, not yet computed: only a path that needs CF (a reader, a store of the
    /// flags on a slow path or exit) computes it. The CPU state then holds either the lazy
    /// flags from before the INC/DEC or those a slow path stored since, with the same CF.
    CarryInCpu(FlagOp, Width),
    /// At the start of a block entered with its predecessor's flags in the `prior`
    /// variables instead of the CPU state (see [`FlagsIn::Prior`]): they are stored only by
    /// a path that leaves (a slow path, a fault, an exit) before the block overwrites them.
    Prior,
    /// As `CarryInCpu`, with the carry-in the CF of the `prior` variables' flags.
    CarryInPrior(FlagOp, Width),
}

/// How one of the region's blocks takes the flags at its start (from [`flag_liveness`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagsIn {
    /// It overwrites them all before anything can read or expose them: an edge to it leaves
    /// a pending operation where it is (stored only on the way out of the unit).
    Dead,
    /// Nothing reads them before they are all overwritten, but a memory access may fault
    /// first: an edge to it hands them over in variables, stored only by a slow path.
    Prior,
    /// In the CPU state.
    Cpu,
}

impl FlagsIn {
    /// From the flags live and read at a block's start (see [`flag_liveness`]).
    pub fn of(live: u64, read: u64) -> Self {
        match (live, read) {
            (0, _) => FlagsIn::Dead,
            (_, 0) => FlagsIn::Prior,
            _ => FlagsIn::Cpu,
        }
    }
}

/// A Cranelift emitter for one compiled unit.
#[allow(missing_debug_implementations)] // holds a FunctionBuilder, which has no Debug
pub struct ClifEmit<'a, 'f> {
    b: &'a mut FunctionBuilder<'f>,
    cpu: Value,
    rt: Value,
    sigs: Sigs,
    /// The general registers' values as known at the current point: each was defined in a
    /// CLIF block that dominates it. An unknown one is loaded from the CPU state when read.
    regs: [Option<Value>; 16],
    /// Those of `regs` not yet stored to the CPU state (bit per register).
    dirty: u16,
    /// The XMM registers' values as known, as `regs` (also written through).
    xmm: [Option<Value>; 16],
    flags: Flags,
    fa: Variable,
    /// The lazy flags handed from block to block ([`Flags::Prior`]): operation, width (both
    /// I8, as the CPU state's bytes), `a`, `b`, `r`.
    prior: [Variable; 5],
    fb: Variable,
    fr: Variable,
    /// The exit every fault and early leave branches to, with (status, RIP, instruction
    /// count), after storing the registers and flags.
    exit_block: Option<Block>,
    /// Where the current instruction continues.
    next_rip: Variable,
    /// The current instruction: index in the unit, offset, next offset.
    k: usize,
    ip: u64,
    next: u64,
    mode64: bool,
    stack_width: Width,
    /// The TLB table (`MmuMode` index) this unit's data accesses use.
    tlb_mode: usize,
    /// Instructions run by the blocks of the region completed before the current one.
    iters: Variable,
    /// Whether the current instruction's flag results are dead ([`Emit::flags_dead`]).
    dead_flags: bool,
    /// The flags live after it ([`Emit::live_flags`]).
    live_flags: u64,
    /// The flags some later instruction reads ([`FlagLive::read`]).
    read_flags: u64,
    /// [`Emit::carry_in`] left CF in the CPU state for the current instruction's flags.
    carry_in_cpu: bool,
    /// Values known at compile time.
    consts: HashMap<Value, u64>,
    /// Values known to be zero-extended from a width.
    masked: HashMap<Value, Width>,
    /// Selects between two constants: (I8 condition, if set, if clear).
    selects: HashMap<Value, (Value, u64, u64)>,
    /// The I8 truth values behind 0/1 values.
    truths: HashMap<Value, Value>,
    /// How the current instruction branched.
    branch: Branch,
    /// CS.limit when the unit was compiled (outside 64-bit mode).
    cs_limit: u64,
    /// The highest fixed branch target whose CS-limit check was done at compile time: the
    /// unit's entry checks that CS.limit still covers it.
    max_target: Option<u64>,
    /// The block between the register loads and the first label, filled by [`Self::close`]
    /// with the CS-limit guard.
    guard: Option<(Block, Block)>,
    /// The targets of the unit's link slots, by slot.
    links: Vec<u64>,
    /// The block being ended ends in a helper.
    after_helper: bool,
    /// See [`UnitMode::seg_static`].
    seg_static: [Option<SegStatic>; 6],
    /// The segments whose static values the unit's code used (bit per `SegReg`).
    seg_used: u8,
}

fn width_ty(w: Width) -> types::Type {
    match w {
        Width::W8 => types::I8,
        Width::W16 => types::I16,
        Width::W32 => types::I32,
        Width::W64 => types::I64,
    }
}

/// What a unit is compiled for: fixed for its whole life (part of its cache key).
#[derive(Clone, Copy, Debug)]
pub struct UnitMode {
    /// 64-bit code.
    pub mode64: bool,
    /// The stack-pointer width.
    pub stack_width: Width,
    /// The TLB table (`MmuMode` index) its data accesses use.
    pub tlb_mode: usize,
    /// CS.limit at compile time: fixed branch targets within it are not checked at run time;
    /// the unit's entry checks the limit instead.
    pub cs_limit: u64,
    /// Segments whose base and limit the unit may take as constants (by `SegReg`), with the
    /// values: outside 64-bit mode the flat ones, in 64-bit mode FS and GS.
    pub seg_static: [Option<SegStatic>; 6],
}

impl<'a, 'f> ClifEmit<'a, 'f> {
    /// An emitter positioned in the entry block of a function `(cpu, rt) -> status`.
    pub fn new(b: &'a mut FunctionBuilder<'f>, cpu: Value, rt: Value, sigs: Sigs, mode: UnitMode) -> Self {
        let UnitMode { mode64, stack_width, tlb_mode, cs_limit, seg_static } = mode;
        let fa = b.declare_var(I64);
        let fb = b.declare_var(I64);
        let fr = b.declare_var(I64);
        let next_rip = b.declare_var(I64);
        let zero = b.ins().iconst(I64, 0);
        for v in [fa, fb, fr, next_rip] {
            b.def_var(v, zero);
        }
        let prior = [I8, I8, I64, I64, I64].map(|t| b.declare_var(t));

        let regs = [None; 16];
        let iters = b.declare_var(I64);
        b.def_var(iters, zero);
        ClifEmit {
            b,
            cpu,
            rt,
            sigs,
            regs,
            dirty: 0,
            xmm: [None; 16],
            flags: Flags::InCpu,
            fa,
            prior,
            fb,
            fr,
            exit_block: None,
            next_rip,
            k: 0,
            ip: 0,
            next: 0,
            mode64,
            stack_width,
            tlb_mode,
            iters,
            dead_flags: false,
            live_flags: frontend_x86::flags::ARITH,
            read_flags: frontend_x86::flags::ARITH,
            carry_in_cpu: false,
            consts: HashMap::new(),
            masked: HashMap::new(),
            selects: HashMap::new(),
            truths: HashMap::new(),
            branch: Branch::None,
            cs_limit,
            max_target: None,
            guard: None,
            links: Vec::new(),
            after_helper: false,
            seg_static,
            seg_used: 0,
        }
    }

    /// Starts instruction `k` at offset `ip`, followed by `next`, with its flag liveness
    /// (see [`flag_liveness`]).
    pub fn begin(&mut self, k: usize, ip: u64, next: u64, live: FlagLive) {
        self.k = k;
        self.dead_flags = live.dead;
        self.live_flags = live.after;
        self.read_flags = live.read;
        self.carry_in_cpu = false;
        self.branch = Branch::None;
        self.ip = ip;
        self.next = next;
        let n = self.b.ins().iconst(I64, next as i64);
        self.b.def_var(self.next_rip, n);
    }

    /// A label for the start of one of the region's blocks.
    pub fn label(&mut self) -> Block {
        self.b.create_block()
    }

    /// From the entry (after the register loads), continues at `label`, which takes the
    /// flags as `flags_in` says.
    pub fn enter(&mut self, label: Block, flags_in: FlagsIn) {
        if flags_in == FlagsIn::Prior {
            self.flags_to_prior();
        }
        let guard = self.b.create_block();
        self.b.ins().jump(guard, &[]);
        self.guard = Some((guard, label));
    }

    /// Emits the block at `label` next, which takes the flags as `flags_in` says (every edge
    /// to it must have said the same).
    pub fn start_block(&mut self, label: Block, flags_in: FlagsIn) {
        self.b.switch_to_block(label);
        self.flags = if flags_in == FlagsIn::Prior { Flags::Prior } else { Flags::InCpu };
        // The previous block stored its registers, or left with an exception.
        self.dirty = 0;
        self.regs = [None; 16];
        self.xmm = [None; 16];
    }

    /// Ends a block of `len` instructions that went on at the `next_rip` variable: to one of
    /// the region's blocks (`succ`) when control went there and the budget has room for all
    /// of it (nothing else can need the CPU within a run: devices stand still, and interrupts
    /// only become deliverable through helpers, which leave the unit), else out of the unit,
    /// storing a pending flag operation. An edge to a block that overwrites the flags before
    /// anything can see them stores them only on its way out ([`FlagsIn`]).
    ///
    /// A block that ends in a helper leaves with [`LEAVE`](runtime::LEAVE) (it has no
    /// successors in the region): the exec loop must look for interrupts the helper may have
    /// made deliverable.
    pub fn end_block(&mut self, len: u64, succ: &[Succ], after_helper: bool) {
        self.after_helper = after_helper;
        // Whichever way control goes, the next block starts from the CPU state.
        self.flush_regs();
        let base = self.b.use_var(self.iters);
        let n = self.b.ins().iadd_imm_s(base, len as i64);
        let count = Count { base, len: len as i64, n };
        let branch = match self.branch {
            Branch::None => Branch::Static(self.next),
            b => b,
        };
        match branch {
            Branch::Static(t) => self.edge(t, count, succ),
            Branch::Cond(c, t, f) => {
                // The flags are stored on each path as it needs (after the branch, which
                // then fuses with the compare that makes `c`).
                let flags = self.flags;
                let (tb, fb) = (self.b.create_block(), self.b.create_block());
                self.b.ins().brif(c, tb, &[], fb, &[]);
                self.b.seal_block(tb);
                self.b.seal_block(fb);
                self.b.switch_to_block(tb);
                self.edge(t, count, succ);
                self.flags = flags;
                self.b.switch_to_block(fb);
                self.edge(f, count, succ);
            }
            _ => self.dynamic_end(count, succ),
        }
    }

    /// Control goes to the fixed offset `t` after `n` instructions: to the region's block
    /// there when the budget has room for it, else out of the unit (with the flags stored).
    fn edge(&mut self, t: u64, count: Count, succ: &[Succ]) {
        let n = count.n;
        if let Some(&Succ { label, len: slen, flags_in, .. }) = succ.iter().find(|s| s.at == t) {
            self.flags_for(flags_in);
            let budget = self.b.ins().load(I64, trusted(), self.rt, RT_BUDGET as i32);
            let after = self.b.ins().iadd_imm_s(count.base, count.len + slen as i64);
            let room = self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, after, budget);
            let (take, out) = (self.b.create_block(), self.b.create_block());
            self.b.ins().brif(room, take, &[], out, &[]);
            self.b.seal_block(take);
            self.b.seal_block(out);
            self.b.switch_to_block(take);
            self.b.def_var(self.iters, n);
            self.b.ins().jump(label, &[]);
            self.b.switch_to_block(out);
        }
        self.flags_to_cpu();
        let rip = self.b.ins().iconst(I64, t as i64);
        self.b.ins().store(trusted(), rip, self.cpu, OFF_RIP);
        self.b.ins().store(trusted(), n, self.rt, RT_ICOUNT as i32);
        if self.after_helper {
            let s = self.b.ins().iconst(I32, i64::from(runtime::LEAVE));
            self.b.ins().return_(&[s]);
            return;
        }
        {
            // Linkable: the exec loop checks the rest (another page's translation each time).
            let slot = self.link_slot(t);
            let k = self.b.ins().iconst(I32, slot);
            self.b.ins().store(trusted(), k, self.rt, RT_LINK as i32);
        }
        let s = self.b.ins().iconst(I32, i64::from(CONTINUE));
        self.b.ins().return_(&[s]);
    }

    /// The targets of the unit's link slots, by slot.
    pub fn links(&self) -> &[u64] {
        &self.links
    }

    /// The link slot for `target` ([`DYNAMIC`]: an indirect branch's).
    fn link_slot(&mut self, target: u64) -> i64 {
        let slot = match self.links.iter().position(|&x| x == target && x != DYNAMIC) {
            Some(k) => k,
            None => {
                self.links.push(target);
                self.links.len() - 1
            }
        };
        slot as i64
    }

    /// The end of a block that went on at the `next_rip` variable (an indirect branch).
    fn dynamic_end(&mut self, count: Count, succ: &[Succ]) {
        let n = count.n;
        if !succ.is_empty() {
            if succ.iter().any(|s| s.flags_in == FlagsIn::Cpu) {
                self.flags_to_cpu();
            }
            if succ.iter().any(|s| s.flags_in == FlagsIn::Prior) {
                self.flags_to_prior();
            }
            let rip = self.b.use_var(self.next_rip);
            let budget = self.b.ins().load(I64, trusted(), self.rt, RT_BUDGET as i32);
            for &Succ { at: start, label, len: slen, .. } in succ {
                let here = self.b.ins().icmp_imm_s(IntCC::Equal, rip, start as i64);
                let after = self.b.ins().iadd_imm_s(count.base, count.len + slen as i64);
                let room = self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, after, budget);
                let go = self.b.ins().band(here, room);
                let take = self.b.create_block();
                let other = self.b.create_block();
                self.b.ins().brif(go, take, &[], other, &[]);
                self.b.seal_block(take);
                self.b.seal_block(other);
                self.b.switch_to_block(take);
                self.b.def_var(self.iters, n);
                self.b.ins().jump(label, &[]);
                self.b.switch_to_block(other);
            }
        }
        self.flags_to_cpu();
        let rip = self.b.use_var(self.next_rip);
        self.b.ins().store(trusted(), rip, self.cpu, OFF_RIP);
        self.b.ins().store(trusted(), n, self.rt, RT_ICOUNT as i32);
        let status = if self.after_helper { runtime::LEAVE } else { CONTINUE };
        if !self.after_helper {
            // The exec loop may go on at the unit it found for this branch last time, if the
            // target is the same.
            let slot = self.link_slot(DYNAMIC);
            let k = self.b.ins().iconst(I32, slot);
            self.b.ins().store(trusted(), k, self.rt, RT_LINK as i32);
        }
        let s = self.b.ins().iconst(I32, i64::from(status));
        self.b.ins().return_(&[s]);
    }

    /// Leaves with exception `e` at the current instruction. Ends the current block.
    pub fn raise_now(&mut self, e: Exception) {
        self.sync_stores();
        let f = self.fn_addr(runtime::jit_raise as *const () as usize);
        let v = self.b.ins().iconst(I32, i64::from(e.vector));
        let code = self.b.ins().iconst(I64, e.error_code.map_or(1 << 32, i64::from));
        self.b.ins().call_indirect(self.sigs.raise, f, &[self.rt, v, code]);
        let exit = self.exit_block();
        let args = self.exit_args(i64::from(FAULT), None);
        self.b.ins().jump(exit, &args);
    }

    fn exit_block(&mut self) -> Block {
        if let Some(b) = self.exit_block {
            return b;
        }
        let b = self.b.create_block();
        self.b.set_cold_block(b);
        self.b.append_block_param(b, I32);
        self.b.append_block_param(b, I64);
        self.b.append_block_param(b, I64);
        self.exit_block = Some(b);
        b
    }

    /// Arguments for the shared exit: `status`, RIP (the current instruction unless given),
    /// and the count up to and including the current instruction.
    /// Instructions run when leaving at the current instruction: those of earlier loop
    /// iterations plus `k + 1` (or `k` when `counted` is false).
    fn count_here(&mut self, counted: bool) -> Value {
        let here = self.k as i64 + i64::from(counted);
        let base = self.b.use_var(self.iters);
        self.b.ins().iadd_imm_s(base, here)
    }

    fn exit_args(&mut self, status: i64, rip: Option<Value>) -> [BlockArg; 3] {
        let s = self.b.ins().iconst(I32, status);
        let rip = rip.unwrap_or_else(|| self.b.ins().iconst(I64, self.ip as i64));
        let n = self.count_here(true);
        [BlockArg::Value(s), BlockArg::Value(rip), BlockArg::Value(n)]
    }

    /// Branches to the shared exit with `status` and `rip` when `cond` is non-zero.
    fn exit_if(&mut self, cond: Value, status: Value, rip: Value) {
        let exit = self.exit_block();
        let n = self.count_here(true);
        let cont = self.b.create_block();
        let args = [BlockArg::Value(status), BlockArg::Value(rip), BlockArg::Value(n)];
        self.b.ins().brif(cond, exit, &args, cont, &[]);
        self.b.seal_block(cont);
        self.b.switch_to_block(cont);
    }

    /// Emits the shared exit, if anything branches to it: everything that branches there has
    /// stored the registers and flags first ([`Self::sync_stores`]), so it only sets RIP and
    /// the count. Call once, after the last instruction.
    pub fn close(&mut self) {
        if let Some((guard, label)) = self.guard.take() {
            self.b.switch_to_block(guard);
            // What the unit assumed of the CPU when it was compiled: fixed branch targets
            // within CS.limit, the static segments' caches unchanged. If not, the first
            // instruction goes to the interpreter (and the exec loop recompiles the block).
            let mut conds = Vec::new();
            if let Some(t) = self.max_target {
                let off = OFF_SEG + SEG_SIZE * SegReg::Cs as i32 + OFF_SEG_LIMIT;
                let limit = self.b.ins().load(I32, trusted(), self.cpu, off);
                let limit = self.b.ins().uextend(I64, limit);
                conds.push(self.b.ins().icmp_imm_u(IntCC::UnsignedGreaterThanOrEqual, limit, t as i64));
            }
            for seg in 0..6 {
                let Some(st) = self.seg_static[seg].filter(|_| self.seg_used & (1 << seg) != 0) else { continue };
                let off = OFF_SEG + SEG_SIZE * seg as i32;
                let base = self.b.ins().load(I64, trusted(), self.cpu, off + OFF_SEG_BASE);
                conds.push(self.b.ins().icmp_imm_s(IntCC::Equal, base, st.base as i64));
                if !self.mode64 {
                    let (lo, hi) = (OFF_SEG_LIMIT.min(OFF_SEG_ATTR), (OFF_SEG_LIMIT + 4).max(OFF_SEG_ATTR + 2));
                    if cfg!(target_endian = "little") && hi - lo <= 8 {
                        // Limit and attributes in one 64-bit word of the segment cache.
                        let (ls, as_) = (8 * (OFF_SEG_LIMIT - lo) as u32, 8 * (OFF_SEG_ATTR - lo) as u32);
                        let mask = (0xffff_ffffu64 << ls) | (u64::from(SegStatic::ATTR_MASK) << as_);
                        let want = (u64::from(st.limit) << ls) | (u64::from(st.attr) << as_);
                        let v = self.b.ins().load(I64, trusted(), self.cpu, off + lo);
                        let v = self.b.ins().band_imm_s(v, mask as i64);
                        conds.push(self.b.ins().icmp_imm_s(IntCC::Equal, v, want as i64));
                    } else {
                        let limit = self.b.ins().load(I32, trusted(), self.cpu, off + OFF_SEG_LIMIT);
                        conds.push(self.b.ins().icmp_imm_s(IntCC::Equal, limit, i64::from(st.limit as i32)));
                        let a = self.b.ins().load(types::I16, trusted(), self.cpu, off + OFF_SEG_ATTR);
                        let a = self.b.ins().band_imm_s(a, i64::from(SegStatic::ATTR_MASK));
                        conds.push(self.b.ins().icmp_imm_s(IntCC::Equal, a, i64::from(st.attr)));
                    }
                }
            }
            match conds.split_first() {
                Some((&first, rest)) => {
                    let ok = rest.iter().fold(first, |acc, &c| self.b.ins().band(acc, c));
                    let bail = self.b.create_block();
                    self.b.ins().brif(ok, label, &[], bail, &[]);
                    self.b.seal_block(bail);
                    self.b.switch_to_block(bail);
                    let zero = self.b.ins().iconst(I64, 0);
                    self.b.ins().store(trusted(), zero, self.rt, RT_ICOUNT as i32);
                    let s = self.b.ins().iconst(I32, i64::from(REDO));
                    self.b.ins().return_(&[s]);
                }
                None => {
                    self.b.ins().jump(label, &[]);
                }
            }
        }
        let Some(exit) = self.exit_block else { return };
        self.b.switch_to_block(exit);
        let (status, rip, n) = {
            let p = self.b.block_params(exit);
            (p[0], p[1], p[2])
        };
        self.b.ins().store(trusted(), rip, self.cpu, OFF_RIP);
        self.b.ins().store(trusted(), n, self.rt, RT_ICOUNT as i32);
        self.b.ins().return_(&[status]);
    }

    fn fn_addr(&mut self, f: usize) -> Value {
        self.b.ins().iconst(I64, f as i64)
    }

    fn store_flags(&mut self) {
        let (op, w, carry) = match self.flags {
            Flags::InCpu => return,
            Flags::Pending(op, w) => (op, w, None),
            Flags::CarryInCpu(op, w) => (op, w, Some(self.cpu_carry())),
            Flags::Prior => return self.store_prior(),
            Flags::CarryInPrior(op, w) => {
                self.store_prior();
                (op, w, Some(self.cpu_carry()))
            }
        };
        {
            let o = LazyFlags::OFFSETS;
            let opv = self.b.ins().iconst(I8, op as i64);
            self.b.ins().store(trusted(), opv, self.cpu, OFF_FLAGS + o.op as i32);
            let wv = self.b.ins().iconst(I8, w as i64);
            self.b.ins().store(trusted(), wv, self.cpu, OFF_FLAGS + o.w as i32);
            for (var, off) in [(self.fa, o.a), (self.fb, o.b), (self.fr, o.r)] {
                let v = match carry {
                    Some(c) if var == self.fb => c,
                    _ => self.b.use_var(var),
                };
                self.b.ins().store(trusted(), v, self.cpu, OFF_FLAGS + off as i32);
            }
        }
    }

    /// Stores the `prior` variables' flags in the CPU state.
    fn store_prior(&mut self) {
        for (&var, off) in self.prior.iter().zip(Self::prior_offsets()) {
            let v = self.b.use_var(var);
            self.b.ins().store(trusted(), v, self.cpu, OFF_FLAGS + off as i32);
        }
    }

    /// Where the CPU state keeps what the `prior` variables hold.
    fn prior_offsets() -> [usize; 5] {
        let o = LazyFlags::OFFSETS;
        [o.op, o.w, o.a, o.b, o.r]
    }

    /// Loads the `prior` variables from the CPU state.
    fn load_prior(&mut self) {
        for (var, off) in self.prior.into_iter().zip(Self::prior_offsets()) {
            let ty = if off == LazyFlags::OFFSETS.op || off == LazyFlags::OFFSETS.w { I8 } else { I64 };
            let v = self.b.ins().load(ty, trusted(), self.cpu, OFF_FLAGS + off as i32);
            self.b.def_var(var, v);
        }
    }

    /// Puts the flags in the `prior` variables, for an edge to a block that takes them there
    /// (the unit's own knowledge stays as it is, for the paths that leave instead).
    fn flags_to_prior(&mut self) {
        let (op, w, carry) = match self.flags {
            Flags::Prior => return,
            Flags::InCpu => return self.load_prior(),
            Flags::Pending(op, w) => (op, w, None),
            Flags::CarryInCpu(op, w) => (op, w, Some(self.cpu_carry())),
            Flags::CarryInPrior(op, w) => {
                // The carry-in from the prior flags (through the CPU state: rare).
                self.store_prior();
                (op, w, Some(self.cpu_carry()))
            }
        };
        let opv = self.b.ins().iconst(I8, op as i64);
        let wv = self.b.ins().iconst(I8, w as i64);
        let a = self.b.use_var(self.fa);
        let bv = match carry {
            Some(c) => c,
            None => self.b.use_var(self.fb),
        };
        let r = self.b.use_var(self.fr);
        for (var, v) in self.prior.into_iter().zip([opv, wv, a, bv, r]) {
            self.b.def_var(var, v);
        }
    }

    /// Hands the flags over as a block that takes them as `flags_in` needs.
    fn flags_for(&mut self, flags_in: FlagsIn) {
        match flags_in {
            FlagsIn::Dead => {}
            FlagsIn::Prior => self.flags_to_prior(),
            FlagsIn::Cpu => self.flags_to_cpu(),
        }
    }

    /// CF of the lazy flags in the CPU state, as 1 or 0 (inline after CMP/SUB and INC/DEC).
    fn cpu_carry(&mut self) -> Value {
        let cpu = self.cpu;
        self.cpu_flags_inline(&[(FlagOp::Sub, 2), (FlagOp::Inc, 2), (FlagOp::Dec, 2)], |e| {
            e.call1(e.sigs.carry, runtime::jit_carry as *const () as usize, &[cpu])
        })
    }

    /// Stores what the CPU state lacks (a pending flag operation, dirty registers) without
    /// changing what the unit holds: before anything that may leave the unit. On a path of
    /// its own (a slow path, an exit) the registers stay dirty for the others.
    fn sync_stores(&mut self) {
        // Registers first: computing a carry for the flags may call out, and a register
        // value live across a call costs a callee-saved host register or a stack slot.
        self.spill_regs();
        self.store_flags();
    }

    /// Stores the dirty registers (they stay dirty).
    fn spill_regs(&mut self) {
        for n in 0..16 {
            if self.dirty & (1 << n) != 0 {
                if let Some(v) = self.regs[n] {
                    self.b.ins().store(trusted(), v, self.cpu, OFF_GPR + 8 * n as i32);
                }
            }
        }
    }

    /// Stores the dirty registers: from here on the CPU state has them all.
    fn flush_regs(&mut self) {
        self.spill_regs();
        self.dirty = 0;
    }

    /// Hands a pending flag operation to the CPU state, which is then authoritative.
    fn flags_to_cpu(&mut self) {
        if self.flags != Flags::InCpu {
            self.store_flags();
            self.flags = Flags::InCpu;
        }
    }

    /// Hands everything to the CPU state (before a call that reads or changes it).
    fn sync_out(&mut self) {
        self.flags_to_cpu();
        self.flush_regs();
    }

    /// Forgets the registers' values (after a call that may have changed them): the next
    /// reads load them from the CPU state.
    fn sync_in(&mut self) {
        debug_assert_eq!(self.dirty, 0, "registers stored before the call");
        self.regs = [None; 16];
        self.xmm = [None; 16];
    }

    fn mask(&mut self, v: Value, w: Width) -> Value {
        if w == Width::W64 {
            return v;
        }
        if let Some(&c) = self.consts.get(&v) {
            return self.imm(c & w.mask());
        }
        if matches!(self.masked.get(&v), Some(m) if m.bits() <= w.bits()) {
            return v;
        }
        let r = if w == Width::W32 {
            // A 32-bit move rather than an AND with a constant from memory.
            let t = self.b.ins().ireduce(I32, v);
            self.b.ins().uextend(I64, t)
        } else {
            self.b.ins().band_imm_s(v, w.mask() as i64)
        };
        self.masked.insert(r, w);
        r
    }

    /// The low 32 bits of `v` (whose value is `c` when a constant) as an I32.
    fn low32(&mut self, v: Value, c: Option<u64>) -> Value {
        match c {
            Some(c) => self.b.ins().iconst(I32, i64::from(c as u32 as i32)),
            None => self.b.ins().ireduce(I32, v),
        }
    }

    fn bool64(&mut self, c: Value) -> Value {
        let v = self.b.ins().uextend(I64, c);
        self.masked.insert(v, Width::W8);
        self.truths.insert(v, c);
        v
    }

    /// Sign-extends a `w`-wide value held in 64 bits, as a 64-bit value.
    fn sx(&mut self, v: Value, w: Width) -> Value {
        if let (Some(&c), false) = (self.consts.get(&v), w == Width::W64) {
            let sign = 1u64 << (w.bits() - 1);
            return self.imm(((c & w.mask()) ^ sign).wrapping_sub(sign));
        }
        match w {
            Width::W64 => v,
            _ => {
                let t = self.b.ins().ireduce(width_ty(w), v);
                self.b.ins().sextend(I64, t)
            }
        }
    }

    fn zf(&mut self, r: Value) -> Value {
        self.b.ins().icmp_imm_s(IntCC::Equal, r, 0)
    }

    fn sf(&mut self, r: Value, sign: i64) -> Value {
        let t = self.b.ins().band_imm_s(r, sign);
        self.b.ins().icmp_imm_s(IntCC::NotEqual, t, 0)
    }

    /// OF of a pending operation, or None when only the CPU state knows it.
    fn of(&mut self, op: FlagOp, a: Value, bv: Value, r: Value, sign: i64) -> Option<Value> {
        Some(match op {
            FlagOp::Add | FlagOp::Adc | FlagOp::Sub | FlagOp::Sbb => {
                // Add: (a ^ r) & (b ^ r); subtract: (a ^ b) & (a ^ r); in the sign bit.
                let add = matches!(op, FlagOp::Add | FlagOp::Adc);
                let x = if add { self.b.ins().bxor(a, r) } else { self.b.ins().bxor(a, bv) };
                let y = if add { self.b.ins().bxor(bv, r) } else { self.b.ins().bxor(a, r) };
                let t = self.b.ins().band(x, y);
                self.sf(t, sign)
            }
            FlagOp::Logic => self.b.ins().iconst(I8, 0),
            FlagOp::Inc => self.b.ins().icmp_imm_s(IntCC::Equal, r, sign),
            FlagOp::Dec => self.b.ins().icmp_imm_s(IntCC::Equal, a, sign),
            FlagOp::Sar => self.b.ins().iconst(I8, 0),
            FlagOp::Mul => self.b.ins().icmp_imm_s(IntCC::NotEqual, bv, 0),
            FlagOp::None | FlagOp::Shl | FlagOp::Shr => return None,
        })
    }

    /// CF of a pending operation, or None when only the CPU state knows it.
    fn cf(&mut self, op: FlagOp, a: Value, bv: Value, r: Value) -> Option<Value> {
        Some(match op {
            FlagOp::Add => self.b.ins().icmp(IntCC::UnsignedLessThan, r, a),
            FlagOp::Sub => self.b.ins().icmp(IntCC::UnsignedLessThan, a, bv),
            FlagOp::Logic => self.b.ins().iconst(I8, 0),
            FlagOp::Inc | FlagOp::Dec | FlagOp::Mul => self.b.ins().icmp_imm_s(IntCC::NotEqual, bv, 0),
            FlagOp::Adc | FlagOp::Sbb | FlagOp::None | FlagOp::Shl | FlagOp::Shr | FlagOp::Sar => return None,
        })
    }

    /// Condition `cc` of the pending operation as an I8 truth value, or None when the unit
    /// does not know it inline (the CPU state's lazy flags must answer).
    fn pending_cond(&mut self, cc: u8) -> Option<Value> {
        if let Flags::CarryInCpu(op, w) | Flags::CarryInPrior(op, w) = self.flags {
            if matches!(cc >> 1, 1 | 3) {
                // CF is wanted here: the carry-in from the CPU state (where the prior flags
                // go first), from now on known.
                if matches!(self.flags, Flags::CarryInPrior(..)) {
                    self.store_prior();
                }
                let c = self.cpu_carry();
                self.b.def_var(self.fb, c);
                self.flags = Flags::Pending(op, w);
            }
        }
        let (Flags::Pending(op, w) | Flags::CarryInCpu(op, w) | Flags::CarryInPrior(op, w)) = self.flags else {
            return None;
        };
        let a = self.b.use_var(self.fa);
        let bv = self.b.use_var(self.fb);
        let r = self.b.use_var(self.fr);
        let sign = w.sign() as i64;
        let v = match (cc >> 1, op) {
            (1, FlagOp::Sub) => self.b.ins().icmp(IntCC::UnsignedLessThan, a, bv),
            (3, FlagOp::Sub) => self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, a, bv),
            (6, FlagOp::Sub) => {
                let (x, y) = (self.sx(a, w), self.sx(bv, w));
                self.b.ins().icmp(IntCC::SignedLessThan, x, y)
            }
            (7, FlagOp::Sub) => {
                let (x, y) = (self.sx(a, w), self.sx(bv, w));
                self.b.ins().icmp(IntCC::SignedLessThanOrEqual, x, y)
            }
            // E/NE after a compare: of its operands (a CMP and a branch on the host).
            (2, FlagOp::Sub) => self.b.ins().icmp(IntCC::Equal, a, bv),
            (0, _) => self.of(op, a, bv, r, sign)?,
            (1, _) => self.cf(op, a, bv, r)?,
            (2, _) => self.zf(r),
            (3, _) => {
                let c = self.cf(op, a, bv, r)?;
                let z = self.zf(r);
                self.b.ins().bor(c, z)
            }
            (4, _) => self.sf(r, sign),
            (5, _) => {
                let lo = self.b.ins().band_imm_s(r, 0xff);
                let p = self.b.ins().popcnt(lo);
                let odd = self.b.ins().band_imm_s(p, 1);
                self.b.ins().icmp_imm_s(IntCC::Equal, odd, 0)
            }
            (6, _) => {
                let o = self.of(op, a, bv, r, sign)?;
                let s = self.sf(r, sign);
                self.b.ins().bxor(s, o)
            }
            _ => {
                let o = self.of(op, a, bv, r, sign)?;
                let s = self.sf(r, sign);
                let l = self.b.ins().bxor(s, o);
                let z = self.zf(r);
                self.b.ins().bor(l, z)
            }
        };
        Some(if cc & 1 != 0 { self.not(v) } else { v })
    }

    /// The negation of truth value `v`: the complementary compare when `v` is a compare (so
    /// that a branch on it still fuses with the compare), else `v ^ 1`.
    fn not(&mut self, v: Value) -> Value {
        let dfg = &self.b.func.dfg;
        if let ValueDef::Result(inst, 0) = dfg.value_def(v) {
            if let InstructionData::IntCompare { cond, args, .. } = dfg.insts[inst] {
                return self.b.ins().icmp(cond.complement(), args[0], args[1]);
            }
        }
        self.b.ins().bxor_imm_s(v, 1)
    }

    /// Condition codes of the lazy flags in the CPU state computed inline when the pending
    /// operation there is one of `cases` (operation, condition code), else by `slow`.
    fn cpu_flags_inline(&mut self, cases: &[(FlagOp, u8)], slow: impl FnOnce(&mut Self) -> Value) -> Value {
        let o = LazyFlags::OFFSETS;
        let op = self.b.ins().load(I8, trusted(), self.cpu, OFF_FLAGS + o.op as i32);
        let merge = self.b.create_block();
        let result = self.b.append_block_param(merge, I64);
        for &(fop, cc) in cases {
            let is = self.b.ins().icmp_imm_s(IntCC::Equal, op, fop as i64);
            let (yes, no) = (self.b.create_block(), self.b.create_block());
            self.b.ins().brif(is, yes, &[], no, &[]);
            self.b.seal_block(yes);
            self.b.seal_block(no);
            self.b.switch_to_block(yes);
            let a = self.b.ins().load(I64, trusted(), self.cpu, OFF_FLAGS + o.a as i32);
            let bv = self.b.ins().load(I64, trusted(), self.cpu, OFF_FLAGS + o.b as i32);
            let r = self.b.ins().load(I64, trusted(), self.cpu, OFF_FLAGS + o.r as i32);
            let v = match (fop, cc >> 1) {
                (FlagOp::Sub, 1) => self.b.ins().icmp(IntCC::UnsignedLessThan, a, bv),
                (FlagOp::Sub, 2) => self.b.ins().icmp(IntCC::Equal, a, bv),
                (FlagOp::Sub, 3) => self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, a, bv),
                (FlagOp::Inc | FlagOp::Dec, 1) => self.b.ins().icmp_imm_s(IntCC::NotEqual, bv, 0),
                // Only the pairs above are asked for.
                _ => self.b.ins().icmp_imm_s(IntCC::Equal, r, 0),
            };
            let v = if cc & 1 != 0 { self.b.ins().bxor_imm_s(v, 1) } else { v };
            let v = self.b.ins().uextend(I64, v);
            self.b.ins().jump(merge, &[BlockArg::Value(v)]);
            self.b.switch_to_block(no);
        }
        let v = slow(self);
        self.b.ins().jump(merge, &[BlockArg::Value(v)]);
        self.b.seal_block(merge);
        self.b.switch_to_block(merge);
        self.masked.insert(result, Width::W8);
        result
    }

    /// The inline half of a data access of `size` bytes at `seg:ea`: whether the segment
    /// allows it without further checks (a present, writable, expand-up data segment and the
    /// access within its limit; always in 64-bit mode) and the TLB has a direct translation
    /// for it (one page, RAM, writes not to code), and the host address.
    fn fast_access(&mut self, seg: SegReg, ea: Value, size: u64, write: bool) -> (Value, Value) {
        let seg_off = OFF_SEG + SEG_SIZE * seg as i32;
        let fixed = self.seg_static[seg as usize];
        let (seg_ok, lin) = if self.mode64 {
            let lin = if matches!(seg, SegReg::Fs | SegReg::Gs) {
                match fixed {
                    // The base as the unit was compiled; the entry guard checks it.
                    Some(st) => {
                        self.seg_used |= 1 << seg as usize;
                        if st.base == 0 {
                            ea
                        } else {
                            self.b.ins().iadd_imm_s(ea, st.base as i64)
                        }
                    }
                    None => {
                        let base = self.b.ins().load(I64, trusted(), self.cpu, seg_off + OFF_SEG_BASE);
                        self.b.ins().iadd(ea, base)
                    }
                }
            } else {
                ea
            };
            // A non-canonical address never matches a TLB tag: it takes the slow path,
            // which raises the fault.
            (None, lin)
        } else if let Some(st) = fixed.filter(|st| st.data_rw) {
            // A present, writable, expand-up data segment whose base and limit were fixed when
            // the unit was compiled (the entry guard checks they still are).
            self.seg_used |= 1 << seg as usize;
            let ok = if st.limit == 0xffff_ffff {
                // Past 4 GiB, the last byte's page never matches a TLB tag: the slow path
                // takes it (and applies the limit).
                None
            } else {
                let last = self.b.ins().iadd_imm_s(ea, size as i64 - 1);
                Some(self.b.ins().icmp_imm_u(IntCC::UnsignedLessThanOrEqual, last, i64::from(st.limit)))
            };
            let lin = if st.base == 0 { ea } else { self.b.ins().iadd_imm_s(ea, st.base as i64) };
            (ok, self.mask(lin, Width::W32))
        } else {
            use frontend_x86::state::attr;
            let attr_v = self.b.ins().load(types::I16, trusted(), self.cpu, seg_off + OFF_SEG_ATTR);
            let mask = i64::from(attr::P | attr::S | attr::CODE | attr::RW | attr::DC);
            let want = i64::from(attr::P | attr::S | attr::RW);
            let a = self.b.ins().band_imm_s(attr_v, mask);
            let a_ok = self.b.ins().icmp_imm_s(IntCC::Equal, a, want);
            let limit = self.b.ins().load(I32, trusted(), self.cpu, seg_off + OFF_SEG_LIMIT);
            let limit = self.b.ins().uextend(I64, limit);
            let last = self.b.ins().iadd_imm_s(ea, size as i64 - 1);
            let l_ok = self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, last, limit);
            let ok = self.b.ins().band(a_ok, l_ok);
            let base = self.b.ins().load(I64, trusted(), self.cpu, seg_off + OFF_SEG_BASE);
            let lin = self.b.ins().iadd(base, ea);
            let lin = self.mask(lin, Width::W32);
            (Some(ok), lin)
        };
        let table = self.b.ins().load(I64, trusted(), self.rt, RT_TLB as i32 + 8 * self.tlb_mode as i32);
        let idx = self.b.ins().ushr_imm_u(lin, 12);
        let idx = self.b.ins().band_imm_s(idx, TLB_ENTRIES as i64 - 1);
        let off = self.b.ins().ishl_imm_u(idx, i64::from(FAST_ENTRY_SHIFT));
        let entry = self.b.ins().iadd(table, off);
        let tag_off = if write { FAST_WRITE_OFFSET } else { FAST_READ_OFFSET };
        let tag = self.b.ins().load(I64, trusted(), entry, tag_off as i32);
        let last = self.b.ins().iadd_imm_s(lin, size as i64 - 1);
        let want = self.b.ins().band_imm_s(last, !0xfff);
        let hit = self.b.ins().icmp(IntCC::Equal, tag, want);
        let addend = self.b.ins().load(I64, trusted(), entry, FAST_ADDEND_OFFSET as i32);
        let host = self.b.ins().iadd(lin, addend);
        let ok = match seg_ok {
            Some(s) => self.b.ins().band(s, hit),
            None => hit,
        };
        (ok, host)
    }

    /// A data read through the softmmu (every check); leaves the unit on a fault.
    fn load_slow(&mut self, seg: SegReg, ea: Value, w: Width) -> Value {
        self.sync_stores();
        self.store_retired();
        let segw = self.b.ins().iconst(I32, i64::from(runtime::pack_segw(seg, w)));
        let (rt, cpu) = (self.rt, self.cpu);
        let v = self.call1(self.sigs.load, runtime::jit_load as *const () as usize, &[rt, cpu, segw, ea]);
        let status = self.b.ins().load(I32, trusted(), self.rt, RT_STATUS as i32);
        let rip = self.b.ins().iconst(I64, self.ip as i64);
        self.exit_if(status, status, rip);
        v
    }

    /// A data write through the softmmu; leaves the unit on a fault, and before the
    /// instruction (for the interpreter to run it) when it would write decoded code.
    fn store_slow(&mut self, seg: SegReg, ea: Value, v: Value, w: Width) {
        self.sync_stores();
        self.store_retired();
        let segw = self.b.ins().iconst(I32, i64::from(runtime::pack_segw(seg, w)));
        let (rt, cpu) = (self.rt, self.cpu);
        let status = self.call1(self.sigs.store, runtime::jit_store as *const () as usize, &[rt, cpu, segw, ea, v]);
        self.store_status(status);
    }

    /// After a store through the softmmu: leaves on [`FAULT`] or [`REDO`].
    fn store_status(&mut self, status: Value) {
        // FAULT counts the instruction, REDO leaves it to the interpreter: RIP is here for both.
        let exit = self.exit_block();
        let cont = self.b.create_block();
        let rip = self.b.ins().iconst(I64, self.ip as i64);
        let is_redo = self.b.ins().icmp_imm_s(IntCC::Equal, status, i64::from(REDO));
        let is_redo = self.b.ins().uextend(I64, is_redo);
        let n = self.count_here(true);
        let n = self.b.ins().isub(n, is_redo);
        let args = [BlockArg::Value(status), BlockArg::Value(rip), BlockArg::Value(n)];
        self.b.ins().brif(status, exit, &args, cont, &[]);
        self.b.seal_block(cont);
        self.b.switch_to_block(cont);
    }

    /// Before a call into the runtime that may reach the bus: the instructions this call of
    /// the unit retired before the current one, for the machine's clock (only slow paths and
    /// helpers pay for it).
    fn store_retired(&mut self) {
        let n = self.count_here(false);
        self.b.ins().store(trusted(), n, self.rt, RT_RETIRED as i32);
    }

    /// The inline half of a 16-byte access at `seg:ea`, as [`Self::fast_access`]; with an
    /// address size that wraps before the linear address does (16 bits; 32 bits in 64-bit
    /// mode), only when the 16 bytes do not wrap, so that the two halves are contiguous.
    fn fast_access128(&mut self, seg: SegReg, ea: Value, aw: Width, write: bool) -> (Value, Value) {
        let (ok, host) = self.fast_access(seg, ea, 16, write);
        let wraps_first = aw == Width::W16 || (aw == Width::W32 && self.mode64);
        if !wraps_first {
            return (ok, host);
        }
        let fits = self.b.ins().icmp_imm_u(IntCC::UnsignedLessThanOrEqual, ea, (aw.mask() - 15) as i64);
        (self.b.ins().band(ok, fits), host)
    }

    /// A memory access's two paths: `fast` (the inline TLB hit) when `ok` is set, else `slow`
    /// (the softmmu call); both give the access's results, of types `tys`.
    fn hit_or_miss<const N: usize>(
        &mut self,
        ok: Value,
        tys: [types::Type; N],
        fast: impl FnOnce(&mut Self) -> [Value; N],
        slow: impl FnOnce(&mut Self) -> [Value; N],
    ) -> [Value; N] {
        let fast_b = self.b.create_block();
        let slow_b = self.b.create_block();
        let merge = self.b.create_block();
        let results = tys.map(|t| self.b.append_block_param(merge, t));
        // The registers the unit holds reach the merge as block parameters: the fast path
        // passes its values, the slow path reloads them from the CPU state after its call
        // (it stored the dirty ones before). So no register value lives across the call,
        // which would cost a callee-saved host register or a stack slot on the hot path.
        let carried: Vec<(bool, usize, Value)> = (self.regs.iter().enumerate().map(|(n, v)| (false, n, *v)))
            .chain(self.xmm.iter().enumerate().map(|(n, v)| (true, n, *v)))
            .filter_map(|(x, n, v)| Some((x, n, v?)))
            .filter(|(_, _, v)| !self.consts.contains_key(v))
            .collect();
        let params: Vec<Value> =
            carried.iter().map(|&(x, _, _)| self.b.append_block_param(merge, if x { X128 } else { I64 })).collect();
        self.b.ins().brif(ok, fast_b, &[], slow_b, &[]);
        self.b.seal_block(fast_b);
        self.b.seal_block(slow_b);
        // Laid out after the hot code.
        self.b.set_cold_block(slow_b);
        self.b.switch_to_block(fast_b);
        let mut v: Vec<BlockArg> = fast(self).into_iter().map(BlockArg::Value).collect();
        v.extend(carried.iter().map(|&(_, _, r)| BlockArg::Value(r)));
        self.b.ins().jump(merge, &v);
        self.b.switch_to_block(slow_b);
        let mut v: Vec<BlockArg> = slow(self).into_iter().map(BlockArg::Value).collect();
        for &(x, n, _) in &carried {
            let r = if x {
                self.b.ins().load(X128, state_vec(), self.cpu, OFF_XMM + 16 * n as i32)
            } else {
                self.b.ins().load(I64, trusted(), self.cpu, OFF_GPR + 8 * n as i32)
            };
            v.push(BlockArg::Value(r));
        }
        // The pending flag operation's operands likewise (the slow path stored them).
        let o = LazyFlags::OFFSETS;
        let reload = match self.flags {
            Flags::InCpu | Flags::Prior => &[][..],
            Flags::Pending(..) => &[(self.fa, o.a), (self.fb, o.b), (self.fr, o.r)][..],
            // `fb` is not the unit's to use here: CF is still the CPU state's (or the prior
            // flags').
            Flags::CarryInCpu(..) | Flags::CarryInPrior(..) => &[(self.fa, o.a), (self.fr, o.r)][..],
        };
        for &(var, off) in reload {
            let r = self.b.ins().load(I64, trusted(), self.cpu, OFF_FLAGS + off as i32);
            self.b.def_var(var, r);
        }
        if matches!(self.flags, Flags::Prior | Flags::CarryInPrior(..)) {
            // The slow path stored the prior flags, or (CarryInPrior) the INC/DEC's with the
            // prior CF as its carry-in: either has the CF the prior flags are kept for.
            self.load_prior();
        }
        self.b.ins().jump(merge, &v);
        self.b.seal_block(merge);
        self.b.switch_to_block(merge);
        for (&(x, n, old), &p) in carried.iter().zip(&params) {
            if x {
                self.xmm[n] = Some(p);
            } else {
                if let Some(&w) = self.masked.get(&old) {
                    self.masked.insert(p, w);
                }
                self.regs[n] = Some(p);
            }
        }
        results
    }

    /// The offset of the high half of a 16-byte access at `ea`.
    fn hi_ea(&mut self, ea: Value, aw: Width) -> Value {
        let hi = self.b.ins().iadd_imm_s(ea, 8);
        self.mask(hi, aw)
    }

    fn call1(&mut self, sig: SigRef, f: usize, args: &[Value]) -> Value {
        let f = self.fn_addr(f);
        let call = self.b.ins().call_indirect(sig, f, args);
        self.b.inst_results(call)[0]
    }

    fn reg_value(&mut self, gpr: Gpr) -> Value {
        let n = gpr as usize;
        match self.regs[n] {
            Some(v) => v,
            None => {
                let v = self.b.ins().load(I64, trusted(), self.cpu, OFF_GPR + 8 * n as i32);
                self.regs[n] = Some(v);
                v
            }
        }
    }

    /// #GP(0) at the branch when `target` is past CS.limit (and is not the next
    /// instruction, whose fetch faults by itself).
    fn limit_check(&mut self, target: Value) {
        let off = OFF_SEG + SEG_SIZE * SegReg::Cs as i32 + OFF_SEG_LIMIT;
        let limit = self.b.ins().load(I32, trusted(), self.cpu, off);
        let limit = self.b.ins().uextend(I64, limit);
        let past = self.b.ins().icmp(IntCC::UnsignedGreaterThan, target, limit);
        let moved = self.b.ins().icmp_imm_s(IntCC::NotEqual, target, self.next as i64);
        let bad = self.b.ins().band(past, moved);
        let fault = self.b.create_block();
        let cont = self.b.create_block();
        self.b.ins().brif(bad, fault, &[], cont, &[]);
        self.b.seal_block(fault);
        self.b.switch_to_block(fault);
        self.raise_now(Exception::gp(0));
        self.b.seal_block(cont);
        self.b.switch_to_block(cont);
    }

    fn set_reg_value(&mut self, gpr: Gpr, v: Value) {
        // Stored when the block ends or something needs the CPU state whole; no value lives
        // across the unit's blocks (this keeps units small and quick to compile: compile time
        // is what the JIT is short of; variables across a region's loops were measured slower,
        // as Cranelift keeps them on the stack across the slow paths' calls).
        let n = gpr as usize;
        self.regs[n] = Some(v);
        self.dirty |= 1 << n;
    }
}

impl Emit for ClifEmit<'_, '_> {
    type V = Value;
    type X = Value;

    fn imm(&mut self, x: u64) -> Value {
        let v = self.b.ins().iconst(I64, x as i64);
        self.consts.insert(v, x);
        v
    }

    fn get_reg(&mut self, r: RegRef) -> Value {
        let full = self.reg_value(r.gpr);
        if r.high8 {
            let s = self.b.ins().ushr_imm_u(full, 8);
            let v = self.b.ins().band_imm_s(s, 0xff);
            self.masked.insert(v, Width::W8);
            v
        } else {
            self.mask(full, r.width)
        }
    }

    fn set_reg(&mut self, r: RegRef, v: Value) {
        let new = if r.high8 {
            let old = self.reg_value(r.gpr);
            let kept = self.b.ins().band_imm_s(old, !0xff00);
            let lo = self.b.ins().band_imm_s(v, 0xff);
            let sh = self.b.ins().ishl_imm_u(lo, 8);
            self.b.ins().bor(kept, sh)
        } else {
            match r.width {
                Width::W8 | Width::W16 => {
                    let m = r.width.mask() as i64;
                    let old = self.reg_value(r.gpr);
                    let kept = self.b.ins().band_imm_s(old, !m);
                    let lo = self.b.ins().band_imm_s(v, m);
                    self.b.ins().bor(kept, lo)
                }
                Width::W32 => self.mask(v, Width::W32),
                Width::W64 => v,
            }
        };
        self.set_reg_value(r.gpr, new);
    }

    fn get_sreg(&mut self, s: SegReg) -> Value {
        let off = OFF_SEG + SEG_SIZE * s as i32 + OFF_SEG_SELECTOR;
        let v = self.b.ins().load(types::I16, trusted(), self.cpu, off);
        self.b.ins().uextend(I64, v)
    }

    fn alu(&mut self, op: Alu, a: Value, bv: Value, w: Width) -> Value {
        let (ca, cb) = (self.consts.get(&a).copied(), self.consts.get(&bv).copied());
        if let (Some(x), Some(y)) = (ca, cb) {
            return self.imm(frontend_x86::emit::eval_alu(op, x, y, w));
        }
        // Identities: what is left is at most a mask (effective addresses add a zero
        // displacement and AND with the address-size mask).
        match (op, ca, cb) {
            (Alu::Add | Alu::Or | Alu::Xor, Some(0), _) => return self.mask(bv, w),
            (Alu::Add | Alu::Sub | Alu::Or | Alu::Xor | Alu::Shl | Alu::Shr | Alu::Sar, _, Some(0)) => {
                return self.mask(a, w)
            }
            (Alu::And, _, Some(m)) | (Alu::And, Some(m), _)
                if m & w.mask() == w.mask() || m == 0xffff_ffff || m == 0xffff =>
            {
                let v = if cb.is_some() { a } else { bv };
                let narrow = match m & w.mask() {
                    0xffff => Width::W16,
                    0xffff_ffff => Width::W32,
                    _ => w,
                };
                let narrow = if narrow.bits() < w.bits() { narrow } else { w };
                return self.mask(v, narrow);
            }
            _ => {}
        }
        // 32-bit arithmetic in 32 bits, zero-extended: the host's 32-bit operations clear
        // the upper half themselves (x86-64, AArch64), where a mask afterwards would cost an
        // instruction.
        let narrow = w == Width::W32 && matches!(op, Alu::Add | Alu::Sub | Alu::And | Alu::Or | Alu::Xor | Alu::Mul);
        let (a, bv) = if narrow { (self.low32(a, ca), self.low32(bv, cb)) } else { (a, bv) };
        let r = match op {
            Alu::Add => self.b.ins().iadd(a, bv),
            Alu::Sub => self.b.ins().isub(a, bv),
            Alu::And => self.b.ins().band(a, bv),
            Alu::Or => self.b.ins().bor(a, bv),
            Alu::Xor => self.b.ins().bxor(a, bv),
            // Cranelift takes shift amounts modulo 64, as the Rust wrapping shifts do.
            Alu::Shl => self.b.ins().ishl(a, bv),
            Alu::Shr => {
                // A right shift of a `w`-bit value stays within `w` bits.
                let am = self.mask(a, w);
                let r = self.b.ins().ushr(am, bv);
                self.masked.insert(r, w);
                r
            }
            Alu::Sar => {
                let s = self.sx(a, w);
                self.b.ins().sshr(s, bv)
            }
            Alu::Mul => self.b.ins().imul(a, bv),
            Alu::SMulHi => self.b.ins().smulhi(a, bv),
        };
        if narrow {
            let v = self.b.ins().uextend(I64, r);
            self.masked.insert(v, Width::W32);
            return v;
        }
        self.mask(r, w)
    }

    fn sext(&mut self, a: Value, from: Width) -> Value {
        self.sx(a, from)
    }

    fn cmp(&mut self, c: Cmp, a: Value, bv: Value) -> Value {
        let cc = match c {
            Cmp::Eq => IntCC::Equal,
            Cmp::Ne => IntCC::NotEqual,
            Cmp::Ult => IntCC::UnsignedLessThan,
            Cmp::Ugt => IntCC::UnsignedGreaterThan,
        };
        let t = self.b.ins().icmp(cc, a, bv);
        self.bool64(t)
    }

    fn select(&mut self, c: Value, a: Value, bv: Value) -> Value {
        let truth = self.truths.get(&c).copied();
        let (x, y) = (self.consts.get(&a).copied(), self.consts.get(&bv).copied());
        let v = self.b.ins().select(c, a, bv);
        if let (Some(t), Some(x), Some(y)) = (truth, x, y) {
            self.selects.insert(v, (t, x, y));
        }
        v
    }

    fn set_flags(&mut self, op: FlagOp, w: Width, a: Value, bv: Value, r: Value) {
        if self.dead_flags {
            // Overwritten before anything can read them: the pending operation before this
            // instruction still answers for the flags this one does not write.
            return;
        }
        let (a, bv, r) = (self.mask(a, w), self.mask(bv, w), self.mask(r, w));
        self.b.def_var(self.fa, a);
        self.b.def_var(self.fb, bv);
        self.b.def_var(self.fr, r);
        let carry_in_cpu = std::mem::take(&mut self.carry_in_cpu) && matches!(op, FlagOp::Inc | FlagOp::Dec);
        self.flags = match (carry_in_cpu, self.flags) {
            (true, Flags::Prior | Flags::CarryInPrior(..)) => Flags::CarryInPrior(op, w),
            (true, _) => Flags::CarryInCpu(op, w),
            (false, _) => Flags::Pending(op, w),
        };
    }

    fn cond(&mut self, cc: u8) -> Value {
        if let Some(c) = self.pending_cond(cc) {
            return self.bool64(c);
        }
        self.flags_to_cpu();
        if matches!(cc >> 1, 1..=3) {
            // B/AE, E/NE, BE/A after a CMP/SUB the CPU state holds (a block's first
            // condition, after a region edge): a compare of its operands, inline.
            let cpu = self.cpu;
            return self.cpu_flags_inline(&[(FlagOp::Sub, cc)], |e| {
                let ccv = e.b.ins().iconst(I32, i64::from(cc));
                e.call1(e.sigs.cond, runtime::jit_cond as *const () as usize, &[cpu, ccv])
            });
        }
        let ccv = self.b.ins().iconst(I32, i64::from(cc));
        let cpu = self.cpu;
        self.call1(self.sigs.cond, runtime::jit_cond as *const () as usize, &[cpu, ccv])
    }

    fn carry(&mut self) -> Value {
        if let Some(c) = self.pending_cond(2) {
            return self.bool64(c);
        }
        self.flags_to_cpu();
        // CF after a CMP/SUB or an INC/DEC (which keep CF in the lazy `b`) from the CPU state
        // inline: INC/DEC and ADC/SBB at a block's start need it.
        self.cpu_carry()
    }

    fn carry_in(&mut self) -> Value {
        if self.read_flags & frontend_x86::flags::CF == 0
            && matches!(self.flags, Flags::InCpu | Flags::CarryInCpu(..) | Flags::Prior | Flags::CarryInPrior(..))
        {
            // Nothing reads this instruction's CF (it may only be seen if a later access
            // faults): left in the CPU state until a path needs it.
            self.carry_in_cpu = true;
            return self.imm(0);
        }
        self.carry()
    }

    fn get_rflags(&mut self) -> Value {
        self.flags_to_cpu();
        let cpu = self.cpu;
        self.call1(self.sigs.rflags, runtime::jit_rflags as *const () as usize, &[cpu])
    }

    fn set_rflags(&mut self, mask: u64, v: Value) {
        self.flags_to_cpu();
        let f = self.fn_addr(runtime::jit_set_rflags as *const () as usize);
        let m = self.b.ins().iconst(I64, mask as i64);
        let cpu = self.cpu;
        self.b.ins().call_indirect(self.sigs.set_rflags, f, &[cpu, m, v]);
    }

    fn get_cr(&mut self, cr: Cr) -> Value {
        let off = match cr {
            Cr::Cr0 => OFF_CR0,
            Cr::Cr4 => OFF_CR4,
        };
        self.b.ins().load(I64, trusted(), self.cpu, off)
    }

    fn get_xmm(&mut self, n: usize) -> Value {
        let n = n & 15;
        match self.xmm[n] {
            Some(v) => v,
            None => {
                let v = self.b.ins().load(X128, state_vec(), self.cpu, OFF_XMM + 16 * n as i32);
                self.xmm[n] = Some(v);
                v
            }
        }
    }

    fn set_xmm(&mut self, n: usize, v: Value) {
        let n = n & 15;
        self.b.ins().store(state_vec(), v, self.cpu, OFF_XMM + 16 * n as i32);
        self.xmm[n] = Some(v);
    }

    fn vec(&mut self, op: VecOp, a: Value, bv: Value) -> Value {
        let lanewise = |e: &mut Self, l: Lanes, f: fn(&mut Self, Value, Value) -> Value| {
            let t = lanes_ty(l);
            let x = e.b.ins().bitcast(t, lanes_le(), a);
            let y = e.b.ins().bitcast(t, lanes_le(), bv);
            let r = f(e, x, y);
            e.b.ins().bitcast(X128, lanes_le(), r)
        };
        match op {
            VecOp::And => self.b.ins().band(a, bv),
            VecOp::Or => self.b.ins().bor(a, bv),
            VecOp::Xor => self.b.ins().bxor(a, bv),
            // band_not(x, y) is x & !y.
            VecOp::AndNot => self.b.ins().band_not(bv, a),
            VecOp::Add(l) => lanewise(self, l, |e, x, y| e.b.ins().iadd(x, y)),
            VecOp::Sub(l) => lanewise(self, l, |e, x, y| e.b.ins().isub(x, y)),
            // A vector compare gives all ones or zero per lane, as PCMPEQ does.
            VecOp::CmpEq(l) => lanewise(self, l, |e, x, y| e.b.ins().icmp(IntCC::Equal, x, y)),
            // `sem::vec` makes these only at the lane widths SSE2 has, which both hosts'
            // Cranelift backends lower (x86-64: B/W for the saturating ops and the average;
            // a width without a lowering would fail the unit's compile, not panic, and leave
            // it interpreted).
            VecOp::AddSatS(l) => lanewise(self, l, |e, x, y| e.b.ins().sadd_sat(x, y)),
            VecOp::AddSatU(l) => lanewise(self, l, |e, x, y| e.b.ins().uadd_sat(x, y)),
            VecOp::SubSatS(l) => lanewise(self, l, |e, x, y| e.b.ins().ssub_sat(x, y)),
            VecOp::SubSatU(l) => lanewise(self, l, |e, x, y| e.b.ins().usub_sat(x, y)),
            VecOp::CmpGt(l) => lanewise(self, l, |e, x, y| e.b.ins().icmp(IntCC::SignedGreaterThan, x, y)),
            VecOp::MaxS(l) => lanewise(self, l, |e, x, y| e.b.ins().smax(x, y)),
            VecOp::MinS(l) => lanewise(self, l, |e, x, y| e.b.ins().smin(x, y)),
            VecOp::MaxU(l) => lanewise(self, l, |e, x, y| e.b.ins().umax(x, y)),
            VecOp::MinU(l) => lanewise(self, l, |e, x, y| e.b.ins().umin(x, y)),
            // Cranelift's avg_round is the unsigned (a + b + 1) >> 1 of PAVGB/PAVGW.
            VecOp::AvgU(l) => lanewise(self, l, |e, x, y| e.b.ins().avg_round(x, y)),
            VecOp::MulLo(l) => lanewise(self, l, |e, x, y| e.b.ins().imul(x, y)),
            VecOp::UnpackLo(_) | VecOp::UnpackHi(_) | VecOp::ShufD(_) | VecOp::ShufLoW(_) | VecOp::ShufHiW(_) => {
                match op.byte_sources() {
                    Some(m) => {
                        let m = self.b.func.dfg.immediates.push(m.to_vec().into());
                        self.b.ins().shuffle(a, bv, m)
                    }
                    None => bv,
                }
            }
            // Cranelift masks a vector shift's count by the lane width: the counts from the
            // width on are settled here, the count being a constant.
            VecOp::ShlImm(l, n) | VecOp::ShrImm(l, n) if u32::from(n) >= l.bits() => vec_zero(self.b),
            VecOp::ShlImm(l, n) => vec_shift(self.b, l, bv, n, |b, x, c| b.ins().ishl(x, c)),
            VecOp::ShrImm(l, n) => vec_shift(self.b, l, bv, n, |b, x, c| b.ins().ushr(x, c)),
            VecOp::SarImm(l, n) => {
                let n = u32::from(n).min(l.bits() - 1) as u8;
                vec_shift(self.b, l, bv, n, |b, x, c| b.ins().sshr(x, c))
            }
        }
    }

    fn load_x(&mut self, seg: SegReg, ea: Value, aw: Width) -> frontend_x86::exception::Result<Value> {
        let (ok, host) = self.fast_access128(seg, ea, aw, false);
        let fast = |e: &mut Self| [e.b.ins().load(X128, guest_mem(), host, 0)];
        let slow = |e: &mut Self| {
            // The two 8-byte reads the interpreter makes, each leaving on a fault.
            let lo = e.load_slow(seg, ea, Width::W64);
            let hi_ea = e.hi_ea(ea, aw);
            let hi = e.load_slow(seg, hi_ea, Width::W64);
            let v = e.b.ins().scalar_to_vector(types::I64X2, lo);
            let v = e.b.ins().insertlane(v, hi, 1);
            [e.b.ins().bitcast(X128, lanes_le(), v)]
        };
        let [v] = self.hit_or_miss(ok, [X128], fast, slow);
        Ok(v)
    }

    fn store_x(&mut self, seg: SegReg, ea: Value, aw: Width, v: Value) -> frontend_x86::exception::Result<()> {
        let (ok, host) = self.fast_access128(seg, ea, aw, true);
        let fast = |e: &mut Self| {
            e.b.ins().store(guest_mem(), v, host, 0);
            []
        };
        let slow = |e: &mut Self| {
            e.sync_stores();
            e.store_retired();
            let q = e.b.ins().bitcast(types::I64X2, lanes_le(), v);
            let lo = e.b.ins().extractlane(q, 0);
            let hi = e.b.ins().extractlane(q, 1);
            let segw = e.b.ins().iconst(I32, i64::from(runtime::pack_segw(seg, aw)));
            let (rt, cpu) = (e.rt, e.cpu);
            let f = runtime::jit_store128 as *const () as usize;
            let status = e.call1(e.sigs.store128, f, &[rt, cpu, segw, ea, lo, hi]);
            e.store_status(status);
            []
        };
        self.hit_or_miss(ok, [], fast, slow);
        Ok(())
    }

    fn load(&mut self, seg: SegReg, ea: Value, w: Width) -> frontend_x86::exception::Result<Value> {
        let (ok, host) = self.fast_access(seg, ea, u64::from(w.bytes()), false);
        let fast = |e: &mut Self| {
            let v = e.b.ins().load(width_ty(w), guest_mem(), host, 0);
            [if w == Width::W64 { v } else { e.b.ins().uextend(I64, v) }]
        };
        let slow = |e: &mut Self| [e.load_slow(seg, ea, w)];
        let [result] = self.hit_or_miss(ok, [I64], fast, slow);
        self.masked.insert(result, w);
        Ok(result)
    }

    fn store(&mut self, seg: SegReg, ea: Value, v: Value, w: Width) -> frontend_x86::exception::Result<()> {
        let (ok, host) = self.fast_access(seg, ea, u64::from(w.bytes()), true);
        let fast = |e: &mut Self| {
            let narrow = if w == Width::W64 { v } else { e.b.ins().ireduce(width_ty(w), v) };
            e.b.ins().store(guest_mem(), narrow, host, 0);
            []
        };
        let slow = |e: &mut Self| {
            e.store_slow(seg, ea, v, w);
            []
        };
        self.hit_or_miss(ok, [], fast, slow);
        Ok(())
    }
    fn next_ip(&mut self) -> Value {
        self.imm(self.next)
    }

    fn jump(&mut self, target: Value) -> frontend_x86::exception::Result<()> {
        let branch = if let Some(&t) = self.consts.get(&target) {
            Branch::Static(t)
        } else if let Some(&(c, t, f)) = self.selects.get(&target) {
            Branch::Cond(c, t, f)
        } else {
            Branch::Dynamic
        };
        let fixed = match branch {
            Branch::Static(t) | Branch::Cond(_, t, _) => Some(t),
            _ => None,
        };
        if !self.mode64 {
            match fixed {
                // Within CS.limit as the unit was compiled: the entry guard re-checks it.
                Some(t) if t <= self.cs_limit => {
                    self.max_target = Some(self.max_target.map_or(t, |m| m.max(t)));
                }
                _ => self.limit_check(target),
            }
        }
        self.branch = branch;
        self.b.def_var(self.next_rip, target);
        Ok(())
    }

    fn if_then(
        &mut self,
        c: Value,
        then: impl FnOnce(&mut Self) -> frontend_x86::exception::Result<()>,
    ) -> frontend_x86::exception::Result<()> {
        // Both paths start, and the `then` path ends, with the registers stored: the merge
        // then needs no agreement on which are dirty.
        self.flush_regs();
        let then_b = self.b.create_block();
        let else_b = self.b.create_block();
        let merge = self.b.create_block();
        self.b.ins().brif(c, then_b, &[], else_b, &[]);
        self.b.seal_block(then_b);
        self.b.seal_block(else_b);
        let flags0 = self.flags;
        let regs0 = self.regs;
        let xmm0 = self.xmm;
        self.b.switch_to_block(then_b);
        let then_flags = match then(self) {
            Ok(()) => {
                if self.flags != flags0 {
                    // The two paths disagree on the pending operation: both hand it to the
                    // CPU state.
                    self.flags_to_cpu();
                }
                self.flush_regs();
                self.b.ins().jump(merge, &[]);
                Some(self.flags)
            }
            Err(e) => {
                self.flags = flags0;
                self.raise_now(e);
                // The `else` path starts as the branch did: with the registers stored.
                self.dirty = 0;
                None
            }
        };
        // After the merge, what the branch defined does not dominate: registers it wrote
        // are loaded again when read.
        let then_regs = self.regs;
        self.regs = std::array::from_fn(|n| if then_regs[n] == regs0[n] { regs0[n] } else { None });
        let then_xmm = self.xmm;
        self.xmm = std::array::from_fn(|n| if then_xmm[n] == xmm0[n] { xmm0[n] } else { None });
        self.b.switch_to_block(else_b);
        self.flags = flags0;
        if then_flags == Some(Flags::InCpu) && flags0 != Flags::InCpu {
            self.flags_to_cpu();
        }
        self.b.ins().jump(merge, &[]);
        self.b.seal_block(merge);
        self.b.switch_to_block(merge);
        Ok(())
    }

    fn helper(&mut self, h: Helper, insn: &Insn) -> frontend_x86::exception::Result<()> {
        self.sync_out();
        self.store_retired();
        let (rt, cpu) = (self.rt, self.cpu);
        let ip = self.b.ins().iconst(I64, insn as *const Insn as i64);
        let f = self.b.ins().iconst(I64, h as usize as i64);
        let next = self.b.ins().iconst(I64, self.next as i64);
        let status = self.call1(self.sigs.helper, runtime::jit_helper as *const () as usize, &[rt, cpu, ip, f, next]);
        // The helper may have changed any register.
        self.sync_in();
        // FAULT leaves at this instruction, LEAVE where the helper sent control.
        let is_fault = self.b.ins().icmp_imm_s(IntCC::Equal, status, i64::from(FAULT));
        let here = self.b.ins().iconst(I64, self.ip as i64);
        let there = self.b.ins().load(I64, trusted(), self.cpu, OFF_NEXT_RIP);
        let rip = self.b.ins().select(is_fault, here, there);
        self.exit_if(status, status, rip);
        Ok(())
    }

    fn stack_width(&self) -> Width {
        self.stack_width
    }

    fn mode64(&self) -> bool {
        self.mode64
    }

    fn flags_dead(&self) -> bool {
        self.dead_flags
    }

    fn live_flags(&self) -> u64 {
        self.live_flags
    }
}

/// The instruction count at a block's end: `n` = `base` (the `iters` variable) + `len`.
#[derive(Clone, Copy, Debug)]
struct Count {
    base: Value,
    len: i64,
    n: Value,
}

/// One of the region's blocks, where a block being ended may go.
#[derive(Clone, Copy, Debug)]
pub struct Succ {
    /// Its start.
    pub at: u64,
    pub label: Block,
    /// Its length in instructions.
    pub len: u64,
    /// How it takes the flags.
    pub flags_in: FlagsIn,
}

/// What [`flag_liveness`] says of one instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagLive {
    /// Nothing reads any flag it writes.
    pub dead: bool,
    /// The arithmetic flags (RFLAGS bit positions) live after it.
    pub after: u64,
    /// Those of them a later instruction reads (or that leave the block with it), leaving
    /// out those only live because a later memory access might fault: its slow path stores
    /// the flags whole, so a value needed only there can be computed there.
    pub read: u64,
}

/// iced-x86's arithmetic flag bits as RFLAGS bits.
fn rflags_of(iced: u32) -> u64 {
    use frontend_x86::flags as f;
    use iced_x86::RflagsBits as R;
    [(R::CF, f::CF), (R::PF, f::PF), (R::AF, f::AF), (R::ZF, f::ZF), (R::SF, f::SF), (R::OF, f::OF)]
        .iter()
        .filter(|(i, _)| iced & i != 0)
        .fold(0, |acc, (_, x)| acc | x)
}

/// For each instruction of a block, whether the arithmetic flags it writes are dead: a later
/// instruction of the block writes them all before any instruction reads them, and no
/// instruction in between can fault or leave (an exception handler or the code after the
/// block sees the flags). At the end of the block every flag is live. Only instructions
/// whose semantics this crate resolves to straight-line code count as writers; a helper or
/// anything that touches memory or branches exposes every flag. Also says which flags are
/// live and read (as [`FlagLive`] says) at the block's start (RFLAGS bit positions).
pub fn flag_liveness(insns: &[Insn], ops: &[sem::Op]) -> (Vec<FlagLive>, FlagsIn) {
    use iced_x86::RflagsBits as R;
    const ARITH: u32 = R::CF | R::PF | R::AF | R::ZF | R::SF | R::OF;
    let mut live = ARITH;
    let mut read = ARITH;
    let all = frontend_x86::flags::ARITH;
    let mut out = vec![FlagLive { dead: false, after: all, read: all }; insns.len()];
    for (k, (i, op)) in insns.iter().zip(ops).enumerate().rev() {
        let writes = match op {
            sem::Op::Binop(_)
            | sem::Op::Unop(_)
            | sem::Op::ShiftImm(_)
            | sem::Op::RotImm(_)
            | sem::Op::Imul
            | sem::Op::FlagOp(_)
            | sem::Op::Sahf => i.rflags_modified() & ARITH,
            // A count of zero leaves the flags: nothing is surely written.
            sem::Op::ShiftCl(_) => 0,
            _ => 0,
        };
        // Only straight-line register operations can keep the flags hidden: anything else may
        // fault or leave.
        let exposes = !register_only(i, op) || i.flow_control() != iced_x86::FlowControl::Next;
        // An inline operation whose only exposure is its memory access (a fault from the
        // slow path, which stores the flags first).
        let inline = inline_op(op) && i.flow_control() == iced_x86::FlowControl::Next;
        out[k] = FlagLive { dead: writes != 0 && writes & live == 0, after: rflags_of(live), read: rflags_of(read) };
        live = if exposes { ARITH } else { (live & !writes) | (i.rflags_read() & ARITH) };
        read = if inline { (read & !writes) | (i.rflags_read() & ARITH) } else { ARITH };
    }
    (out, FlagsIn::of(rflags_of(live), rflags_of(read)))
}

/// Whether `i` (resolved to `op`) is a straight-line operation on registers only: no memory
/// (the stack operations, LEAVE and XLAT touch memory without a memory operand), no helper
/// (which can do anything), so nothing outside the CPU (the bus, a device, an exception
/// handler reading memory) can see it happen.
pub fn register_only(i: &Insn, op: &sem::Op) -> bool {
    inline_op(op) && !touches_memory(i)
}

/// Whether `op` is one of the straight-line operations compiled inline (no helper), whose
/// memory accesses, if any, go through the inline TLB path with a slow path.
fn inline_op(op: &sem::Op) -> bool {
    matches!(
        op,
        sem::Op::Binop(_)
            | sem::Op::Unop(_)
            | sem::Op::Mov
            | sem::Op::Movx(_)
            | sem::Op::Lea
            | sem::Op::Xchg
            | sem::Op::Nop
            | sem::Op::Cbw(_)
            | sem::Op::Cwd(_)
            | sem::Op::Lahf
            | sem::Op::Sahf
            | sem::Op::FlagOp(_)
            | sem::Op::Salc
            | sem::Op::Setcc
            | sem::Op::Cmovcc
            | sem::Op::ShiftImm(_)
            | sem::Op::ShiftCl(_)
            | sem::Op::RotImm(_)
            | sem::Op::Imul
    )
}

/// Whether `i` reads or writes memory (LEA and NOP forms only compute an address).
fn touches_memory(i: &Insn) -> bool {
    use iced_x86::{Mnemonic as M, OpKind};
    if i.stack_pointer_increment() != 0 {
        return true;
    }
    (0..i.op_count()).any(|n| {
        matches!(
            i.op_kind(n),
            OpKind::Memory
                | OpKind::MemorySegSI
                | OpKind::MemorySegESI
                | OpKind::MemorySegRSI
                | OpKind::MemorySegDI
                | OpKind::MemorySegEDI
                | OpKind::MemorySegRDI
                | OpKind::MemoryESDI
                | OpKind::MemoryESEDI
                | OpKind::MemoryESRDI
        )
    }) && !matches!(i.mnemonic(), M::Lea | M::Nop)
}
