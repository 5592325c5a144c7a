//! What compiled code calls: the `extern "C"` entry points into the Rust side (memory accesses
//! through the softmmu, helpers, flag evaluation), and the per-call context they share.
//!
//! Every entry point returns a status instead of unwinding: a guest exception is stored in the
//! [`Runtime`] and the compiled unit leaves through its exit path with the state written back
//! (design principle 3). Nothing here may panic on guest input: the helpers are the same ones
//! the interpreter runs.

use frontend_x86::emit::Helper;
use frontend_x86::insn::Insn;
use frontend_x86::{mem, Concrete, CpuBus, CpuState, Exception, SegReg, Width};

/// The unit went on normally (or, from a helper or store, continue with the next instruction).
pub const CONTINUE: u32 = 0;
/// A guest exception is pending in [`Runtime::exception`]; RIP is at the faulting instruction.
pub const FAULT: u32 = 1;
/// Leave the unit after this instruction: control went elsewhere (a helper changed RIP, halted
/// the CPU) or code was written.
pub const LEAVE: u32 = 2;
/// Leave the unit before this instruction, which the interpreter must run: its store would
/// write decoded code (nothing was written; RIP is at the instruction).
pub const REDO: u32 = 3;

/// The per-call context of a compiled unit.
pub struct Runtime<'a> {
    /// The machine.
    pub bus: &'a mut dyn CpuBus,
    /// The exception a helper or memory access raised.
    pub exception: Option<Exception>,
    /// Status of the last [`jit_load`]: [`CONTINUE`] or [`FAULT`].
    pub status: u32,
    /// Instructions the unit ran (including one that faulted), written at every exit.
    pub icount: u64,
    /// The CPU's TLB tables by `MmuMode` index, for the inline lookups.
    pub tlb: [*const softmmu::tlb::FastEntry; 3],
    /// Instructions the unit may run: a looping unit starts another pass only if it fits.
    pub budget: u64,
    /// Which of the unit's link slots its exit went through ([`NO_LINK`]: none): the exec
    /// loop can then call the unit linked there without looking the block up.
    pub link: u32,
    /// Instructions the exec loop's run retired before this call of the unit.
    pub retired_before: u64,
    /// Instructions this call retired before the one calling into the runtime, stored by the
    /// unit before each call that may reach the bus (not kept current otherwise): with
    /// `retired_before`, the machine's clock for that instruction ([`CpuBus::set_retired`]).
    pub retired: u64,
    /// The run's instruction limit as the bus last gave it ([`CpuBus::run_limit`]), for the
    /// exec loop.
    pub run_limit: u64,
}

/// [`Runtime::link`] when the exit is not a linkable one.
pub const NO_LINK: u32 = u32::MAX;

impl<'a> Runtime<'a> {
    /// The context for running a unit on `cpu` with `bus`.
    pub fn new(cpu: &CpuState, bus: &'a mut dyn CpuBus, budget: u64) -> Self {
        let tlb = softmmu::MmuMode::ALL.map(|m| cpu.tlb.0.table_ptr(m));
        Runtime {
            bus,
            exception: None,
            status: CONTINUE,
            icount: 0,
            tlb,
            budget,
            link: NO_LINK,
            retired_before: 0,
            retired: 0,
            run_limit: u64::MAX,
        }
    }

    /// Before a call that may reach a device: the machine's clock to the calling instruction.
    fn clock_in(&mut self) {
        self.bus.set_retired(self.retired_before + self.retired);
    }

    /// A store through `write` (false: refused, the bytes hold decoded code) at the calling
    /// instruction's time, as the status compiled code expects: [`CONTINUE`], [`REDO`] or
    /// [`FAULT`] with the exception kept.
    fn store(&mut self, write: impl FnOnce(&mut dyn CpuBus) -> frontend_x86::exception::Result<bool>) -> u32 {
        self.clock_in();
        let r = write(&mut *self.bus);
        self.clock_out();
        match r {
            Ok(true) => CONTINUE,
            Ok(false) => REDO,
            Err(e) => {
                self.exception = Some(e);
                FAULT
            }
        }
    }

    /// After it: the device access may have asked the run to end early (a timer due sooner);
    /// the unit leaves at its next block boundary without room.
    fn clock_out(&mut self) {
        self.run_limit = self.bus.run_limit();
        self.budget = self.budget.min(self.run_limit.saturating_sub(self.retired_before));
    }
}

impl std::fmt::Debug for Runtime<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("exception", &self.exception)
            .field("status", &self.status)
            .field("icount", &self.icount)
            .finish_non_exhaustive()
    }
}

/// Offset of [`Runtime::status`].
pub const RT_STATUS: usize = std::mem::offset_of!(Runtime<'static>, status);
/// Offset of [`Runtime::icount`].
pub const RT_ICOUNT: usize = std::mem::offset_of!(Runtime<'static>, icount);
/// Offset of [`Runtime::budget`].
pub const RT_BUDGET: usize = std::mem::offset_of!(Runtime<'static>, budget);
/// Offset of [`Runtime::link`].
pub const RT_LINK: usize = std::mem::offset_of!(Runtime<'static>, link);
/// Offset of [`Runtime::retired`].
pub const RT_RETIRED: usize = std::mem::offset_of!(Runtime<'static>, retired);
/// Offset of [`Runtime::tlb`].
pub const RT_TLB: usize = std::mem::offset_of!(Runtime<'static>, tlb);

const SEGS: [SegReg; 6] = [SegReg::Es, SegReg::Cs, SegReg::Ss, SegReg::Ds, SegReg::Fs, SegReg::Gs];
const WIDTHS: [Width; 4] = [Width::W8, Width::W16, Width::W32, Width::W64];

/// Packs a segment and width into the `segw` argument of [`jit_load`]/[`jit_store`].
pub fn pack_segw(seg: SegReg, w: Width) -> u32 {
    (seg as u32) | ((w as u32) << 8)
}

fn unpack_segw(segw: u32) -> (SegReg, Width) {
    (SEGS[(segw as usize & 0xff) % 6], WIDTHS[(segw as usize >> 8) & 3])
}

/// A memory read through segmentation and the TLB.
///
/// # Safety
/// `rt` and `cpu` are the pointers the compiled unit was called with: live, exclusive, and
/// not otherwise borrowed during the call.
pub unsafe extern "C" fn jit_load(rt: *mut Runtime<'_>, cpu: *mut CpuState, segw: u32, ea: u64) -> u64 {
    // SAFETY: the caller's contract.
    let (rt, cpu) = unsafe { (&mut *rt, &mut *cpu) };
    let (seg, w) = unpack_segw(segw);
    rt.clock_in();
    let r = mem::read(cpu, rt.bus, seg, ea, w);
    rt.clock_out();
    match r {
        Ok(v) => {
            rt.status = CONTINUE;
            v
        }
        Err(e) => {
            rt.exception = Some(e);
            rt.status = FAULT;
            0
        }
    }
}

/// A memory write through segmentation and the TLB. [`REDO`], without writing, when the
/// bytes are on a page holding decoded code: the interpreter runs that instruction, and the
/// blocks it overwrites are dropped before anything runs them.
///
/// # Safety
/// As [`jit_load`].
pub unsafe extern "C" fn jit_store(rt: *mut Runtime<'_>, cpu: *mut CpuState, segw: u32, ea: u64, v: u64) -> u32 {
    // SAFETY: the caller's contract.
    let (rt, cpu) = unsafe { (&mut *rt, &mut *cpu) };
    let (seg, w) = unpack_segw(segw);
    rt.store(|bus| mem::write_unless_code(cpu, bus, seg, ea, w, v))
}

/// A 16-byte write (SSE) through segmentation and the TLB, of `lo` at `ea` and `hi` at
/// `ea + 8` wrapping at the address size packed in `segw`: every check is made before any byte
/// is written; [`REDO`], without writing, when a byte is on a page holding decoded code.
///
/// # Safety
/// As [`jit_load`].
pub unsafe extern "C" fn jit_store128(
    rt: *mut Runtime<'_>,
    cpu: *mut CpuState,
    segw: u32,
    ea: u64,
    lo: u64,
    hi: u64,
) -> u32 {
    // SAFETY: the caller's contract.
    let (rt, cpu) = unsafe { (&mut *rt, &mut *cpu) };
    let (seg, aw) = unpack_segw(segw);
    let v = u128::from(lo) | (u128::from(hi) << 64);
    rt.store(|bus| frontend_x86::sem::sse::store128_unless_code(cpu, bus, seg, ea, aw, v))
}

/// Runs instruction `insn`'s helper `f` (a [`Helper`] as an address) with RIP at the
/// instruction and `next` after it.
///
/// # Safety
/// As [`jit_load`]; `insn` points to an instruction the compiled unit keeps alive, and `f` is a
/// [`Helper`] converted with `as usize`.
pub unsafe extern "C" fn jit_helper(
    rt: *mut Runtime<'_>,
    cpu: *mut CpuState,
    insn: *const Insn,
    f: usize,
    next: u64,
) -> u32 {
    // SAFETY: the caller's contract.
    let (rt, cpu, insn) = unsafe { (&mut *rt, &mut *cpu, &*insn) };
    // SAFETY: `f` came from a `Helper` fn pointer (same size, same ABI) at compile time.
    let f: Helper = unsafe { std::mem::transmute::<usize, Helper>(f) };
    cpu.rip = insn.ip();
    cpu.next_rip = next;
    rt.clock_in();
    let r = {
        let mut c = Concrete::new(cpu, rt.bus);
        f(&mut c, insn)
    };
    rt.clock_out();
    match r {
        Ok(()) if cpu.next_rip != next || cpu.halted || cpu.shutdown || cpu.code.has_writes() => LEAVE,
        Ok(()) => CONTINUE,
        Err(e) => {
            rt.exception = Some(e);
            FAULT
        }
    }
}

/// Records an exception the unit raises itself (a branch past the CS limit, an instruction
/// that is #UD whatever its operands).
///
/// # Safety
/// As [`jit_load`].
pub unsafe extern "C" fn jit_raise(rt: *mut Runtime<'_>, vector: u32, code: u64) {
    // SAFETY: the caller's contract.
    let rt = unsafe { &mut *rt };
    let vector = vector as u8;
    rt.exception =
        Some(if code >> 32 != 0 { Exception::new(vector) } else { Exception::with_code(vector, code as u32) });
}

/// Condition code `cc` from the CPU's flags (used when the unit does not know the pending
/// flag operation itself).
///
/// # Safety
/// `cpu` is live and exclusive for the call.
pub unsafe extern "C" fn jit_cond(cpu: *mut CpuState, cc: u32) -> u64 {
    // SAFETY: the caller's contract.
    let cpu = unsafe { &*cpu };
    u64::from(cpu.flags.cond(cc as u8))
}

/// The carry flag.
///
/// # Safety
/// As [`jit_cond`].
pub unsafe extern "C" fn jit_carry(cpu: *mut CpuState) -> u64 {
    // SAFETY: the caller's contract.
    let cpu = unsafe { &*cpu };
    u64::from(cpu.flags.cf())
}

/// The whole RFLAGS value.
///
/// # Safety
/// As [`jit_cond`].
pub unsafe extern "C" fn jit_rflags(cpu: *mut CpuState) -> u64 {
    // SAFETY: the caller's contract.
    let cpu = unsafe { &*cpu };
    cpu.flags.get()
}

/// Sets the RFLAGS bits in `mask` from `v`.
///
/// # Safety
/// As [`jit_cond`].
pub unsafe extern "C" fn jit_set_rflags(cpu: *mut CpuState, mask: u64, v: u64) {
    // SAFETY: the caller's contract.
    let cpu = unsafe { &mut *cpu };
    cpu.flags.set_masked(mask, v);
}
