//! Memory access on concrete values: segmentation checks, linear-to-physical translation, and
//! page-split accesses. The interpreter uses these directly; the JIT calls them on a TLB miss.

use softmmu::{Access, AccessOp};

use crate::bus::CpuBus;
use crate::exception::{vector, Exception, Result};
use crate::flags;
use crate::state::{attr, cr0, CpuState, SegReg, Width};

/// The kind of a memory access, for segment and page protection checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessKind {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Exec,
    /// A read by the CPU itself (descriptor tables, IDT, TSS): an implicit supervisor access.
    SysRead,
    /// A write by the CPU itself (accessed/busy bits, TSS on a task switch).
    SysWrite,
}

#[inline]
fn seg_fault(seg: SegReg) -> Exception {
    if seg == SegReg::Ss {
        Exception::ss(0)
    } else {
        Exception::gp(0)
    }
}

/// A 64-bit linear address is canonical when bits 63..47 are all equal.
#[inline]
pub fn is_canonical(lin: u64) -> bool {
    ((lin as i64) << 16 >> 16) as u64 == lin
}

/// Checks an access of `size` bytes at `seg:off` against the segment's type and limit and
/// returns the linear address (SDM vol. 3, 5.3 and 5.4).
#[inline]
pub fn seg_linear(cpu: &CpuState, seg: SegReg, off: u64, size: u8, kind: AccessKind) -> Result<u64> {
    let s = &cpu.seg[seg as usize];
    if cpu.mode64() {
        let base = if matches!(seg, SegReg::Fs | SegReg::Gs) { s.base } else { 0 };
        let lin = base.wrapping_add(off);
        if !is_canonical(lin) {
            return Err(seg_fault(seg));
        }
        return Ok(lin);
    }
    let last = off.wrapping_add(u64::from(size) - 1);
    if cpu.protected() && !cpu.v86() {
        if s.attr & attr::P == 0 {
            // A null or unusable segment register.
            return Err(seg_fault(seg));
        }
        let code = s.attr & attr::CODE != 0;
        let ok = match kind {
            AccessKind::Read | AccessKind::SysRead => !code || s.attr & attr::RW != 0,
            AccessKind::Write | AccessKind::SysWrite => !code && s.attr & attr::RW != 0,
            AccessKind::Exec => code,
        };
        if !ok {
            return Err(seg_fault(seg));
        }
        if !code && s.attr & attr::DC != 0 {
            // Expand-down: valid offsets are limit+1 ..= top.
            let top: u64 = if s.attr & attr::DB != 0 { 0xffff_ffff } else { 0xffff };
            if off <= u64::from(s.limit) || last > top || last < off {
                return Err(seg_fault(seg));
            }
            return Ok(s.base.wrapping_add(off) & 0xffff_ffff);
        }
    }
    if last > u64::from(s.limit) || last < off {
        return Err(seg_fault(seg));
    }
    Ok(s.base.wrapping_add(off) & 0xffff_ffff)
}

/// Translates a linear address to a physical one for an access of `kind`: the identity with
/// paging off, else through the TLB and, on a miss, the page walk (which sets A/D bits). A
/// page fault sets CR2 and becomes #PF with the walk's error code.
/// The TLB table explicit (non-system) accesses use in `cpu`'s current state: the JIT
/// compiles its inline lookups for it.
pub fn mmu_mode(cpu: &CpuState) -> softmmu::MmuMode {
    Access::new(AccessOp::Read, cpu.cpl, cpu.flags.raw_bits() & flags::AC != 0).mmu_mode(cpu.cr4)
}

#[inline]
pub fn translate(cpu: &mut CpuState, bus: &mut dyn CpuBus, lin: u64, kind: AccessKind) -> Result<u64> {
    let op = match kind {
        AccessKind::Read | AccessKind::SysRead => AccessOp::Read,
        AccessKind::Write | AccessKind::SysWrite => AccessOp::Write,
        AccessKind::Exec => AccessOp::Fetch,
    };
    let access = if matches!(kind, AccessKind::SysRead | AccessKind::SysWrite) {
        Access::implicit(op)
    } else {
        Access::new(op, cpu.cpl, cpu.flags.raw_bits() & flags::AC != 0)
    };
    if cpu.cr0 & cr0::PG == 0 {
        // Identity, but cached like a translation so compiled code finds the host page.
        return Ok(cpu.tlb.0.translate_flat(bus, access.mmu_mode(cpu.cr4), op, lin).phys);
    }
    let ctl = cpu.paging_control();
    match cpu.tlb.0.translate(bus, &ctl, lin, access) {
        Ok(t) => Ok(t.phys),
        Err(pf) => {
            cpu.cr2 = pf.address;
            Err(Exception::with_code(vector::PF, pf.error_code))
        }
    }
}

/// Reads `w` bytes of guest RAM at host address `p`, little-endian.
///
/// # Safety
/// `p..p + w.bytes()` is mapped guest RAM.
#[inline]
unsafe fn read_host(p: *const u8, w: Width) -> u64 {
    // SAFETY: the caller's contract; unaligned reads of plain bytes.
    unsafe {
        match w {
            Width::W8 => u64::from(p.read()),
            Width::W16 => u64::from(u16::from_le(p.cast::<u16>().read_unaligned())),
            Width::W32 => u64::from(u32::from_le(p.cast::<u32>().read_unaligned())),
            Width::W64 => u64::from_le(p.cast::<u64>().read_unaligned()),
        }
    }
}

/// Writes the low `w` bytes of `v` to guest RAM at host address `p`, little-endian.
///
/// # Safety
/// `p..p + w.bytes()` is mapped, writable guest RAM.
#[inline]
unsafe fn write_host(p: *mut u8, w: Width, v: u64) {
    // SAFETY: the caller's contract; unaligned writes of plain bytes.
    unsafe {
        match w {
            Width::W8 => p.write(v as u8),
            Width::W16 => p.cast::<u16>().write_unaligned((v as u16).to_le()),
            Width::W32 => p.cast::<u32>().write_unaligned((v as u32).to_le()),
            Width::W64 => p.cast::<u64>().write_unaligned(v.to_le()),
        }
    }
}

/// Reads `w` bytes at linear address `lin`, checking every page touched before reading.
pub fn read_linear(cpu: &mut CpuState, bus: &mut dyn CpuBus, lin: u64, w: Width, kind: AccessKind) -> Result<u64> {
    let n = u64::from(w.bytes());
    if kind == AccessKind::Read {
        if let Some(p) = cpu.tlb.0.lookup(mmu_mode(cpu), AccessOp::Read, lin, n) {
            // SAFETY: the TLB holds direct pointers only to whole pages of guest RAM mapped for
            // as long as the address map is unchanged (a change flushes the TLB), and the
            // lookup checked that all `n` bytes lie in that page.
            return Ok(unsafe { read_host(p.as_ptr(), w) });
        }
    }
    if (lin & 0xfff) + n <= 0x1000 {
        let pa = translate(cpu, bus, lin, kind)?;
        return Ok(bus.read_phys(pa, w.bytes()));
    }
    let first = 0x1000 - (lin & 0xfff);
    let pa0 = translate(cpu, bus, lin, kind)?;
    let pa1 = translate(cpu, bus, wrap_lin(cpu, lin.wrapping_add(first)), kind)?;
    let mut v = 0u64;
    for i in 0..n {
        let pa = if i < first { pa0 + i } else { pa1 + (i - first) };
        v |= bus.read_phys(pa, 1) << (8 * i);
    }
    Ok(v)
}

/// Writes `w` bytes at linear address `lin`; both pages of a split write are checked before
/// any byte is written.
pub fn write_linear(cpu: &mut CpuState, bus: &mut dyn CpuBus, lin: u64, w: Width, v: u64) -> Result<()> {
    write_linear_as(cpu, bus, lin, w, v, AccessKind::Write)
}

fn write_linear_as(
    cpu: &mut CpuState,
    bus: &mut dyn CpuBus,
    lin: u64,
    w: Width,
    v: u64,
    kind: AccessKind,
) -> Result<()> {
    let n = u64::from(w.bytes());
    if kind == AccessKind::Write {
        // A direct write tag is never given to a page holding decoded code or ROM.
        if let Some(p) = cpu.tlb.0.lookup(mmu_mode(cpu), AccessOp::Write, lin, n) {
            // SAFETY: as in `read_linear`; the page is writable RAM.
            unsafe { write_host(p.as_ptr(), w, v) };
            return Ok(());
        }
    }
    if (lin & 0xfff) + n <= 0x1000 {
        let pa = translate(cpu, bus, lin, kind)?;
        note_code_write(cpu, pa);
        bus.write_phys(pa, w.bytes(), v);
        return Ok(());
    }
    let first = 0x1000 - (lin & 0xfff);
    let pa0 = translate(cpu, bus, lin, kind)?;
    let pa1 = translate(cpu, bus, wrap_lin(cpu, lin.wrapping_add(first)), kind)?;
    note_code_write(cpu, pa0);
    note_code_write(cpu, pa1);
    for i in 0..n {
        let pa = if i < first { pa0 + i } else { pa1 + (i - first) };
        bus.write_phys(pa, 1, v >> (8 * i));
    }
    Ok(())
}

/// A store to a page holding decoded code: tell the execution tiers.
#[inline]
fn note_code_write(cpu: &mut CpuState, pa: u64) {
    if cpu.code.contains(pa >> 12) {
        cpu.code.note_write(pa >> 12);
    }
}

/// Linear addresses wrap at 4 GiB outside 64-bit mode.
#[inline]
pub(crate) fn wrap_lin(cpu: &CpuState, lin: u64) -> u64 {
    if cpu.mode64() {
        lin
    } else {
        lin & 0xffff_ffff
    }
}

/// Reads `seg:off` with segmentation and paging checks.
#[inline]
pub fn read(cpu: &mut CpuState, bus: &mut dyn CpuBus, seg: SegReg, off: u64, w: Width) -> Result<u64> {
    let lin = seg_linear(cpu, seg, off, w.bytes(), AccessKind::Read)?;
    read_linear(cpu, bus, lin, w, AccessKind::Read)
}

/// Writes `seg:off` with segmentation and paging checks.
/// As [`write`], but when the bytes lie on a page holding decoded code nothing is written and
/// the result is `Ok(false)` (after every check, so a fault still comes first). Compiled code
/// uses it to hand such stores to the interpreter.
pub fn write_unless_code(
    cpu: &mut CpuState,
    bus: &mut dyn CpuBus,
    seg: SegReg,
    off: u64,
    w: Width,
    v: u64,
) -> Result<bool> {
    let lin = seg_linear(cpu, seg, off, w.bytes(), AccessKind::Write)?;
    let n = u64::from(w.bytes());
    let pa0 = translate(cpu, bus, lin, AccessKind::Write)?;
    let last = wrap_lin(cpu, lin.wrapping_add(n - 1));
    let pa1 = if last >> 12 != lin >> 12 { translate(cpu, bus, last & !0xfff, AccessKind::Write)? } else { pa0 };
    if cpu.code.contains(pa0 >> 12) || cpu.code.contains(pa1 >> 12) {
        return Ok(false);
    }
    write_linear(cpu, bus, lin, w, v)?;
    Ok(true)
}

#[inline]
pub fn write(cpu: &mut CpuState, bus: &mut dyn CpuBus, seg: SegReg, off: u64, w: Width, v: u64) -> Result<()> {
    let lin = seg_linear(cpu, seg, off, w.bytes(), AccessKind::Write)?;
    write_linear(cpu, bus, lin, w, v)
}

/// Reads for the CPU's own use (descriptor tables, the TSS, the IDT): supervisor accesses
/// whatever the CPL, as SDM vol. 3, 4.6 calls implicit supervisor-mode accesses.
pub fn sys_read(cpu: &mut CpuState, bus: &mut dyn CpuBus, lin: u64, w: Width) -> Result<u64> {
    read_linear(cpu, bus, lin, w, AccessKind::SysRead)
}

/// Writes for the CPU's own use (accessed and busy bits, the TSS on a task switch).
pub fn sys_write(cpu: &mut CpuState, bus: &mut dyn CpuBus, lin: u64, w: Width, v: u64) -> Result<()> {
    write_linear_as(cpu, bus, lin, w, v, AccessKind::SysWrite)
}
