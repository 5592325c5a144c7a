//! XSAVE/XSAVEOPT/XRSTOR in the standard format and XGETBV/XSETBV (SDM vol. 1, chapter 13),
//! for the two state components this CPU has: x87 (0) and SSE (1). The area is the 512-byte
//! legacy region plus the 64-byte header: 576 bytes, as CPUID leaf 0xD reports.
//!
//! XSTATE_BV records a component as in use when it differs from its initial configuration
//! (XINUSE; MXCSR is not tracked). XSAVEOPT uses the init optimization (components in their
//! initial configuration are not written) but not the modified optimization, which is
//! optional.

use iced_x86::Mnemonic;

use crate::concrete::Concrete;
use crate::exception::{Exception, Result};
use crate::insn::Insn;
use crate::mem;
use crate::sem::sse::{img_dword, legacy_image, load_x87, load_xmm, mem_at, MXCSR_MASK};
use crate::state::{cr0, cr4, CpuState, FpuState, Gpr, Width};

/// The state components XCR0 may enable: x87 and SSE.
pub const XCR0_SUPPORTED: u64 = 0b11;
/// The size of the standard-format area for every supported component.
pub const AREA_SIZE: u32 = 576;

/// #UD without CR4.OSXSAVE.
fn check_osxsave(c: &Concrete<'_>) -> Result<()> {
    if c.cpu.cr4 & cr4::OSXSAVE == 0 {
        return Err(Exception::UD);
    }
    Ok(())
}

/// XGETBV (any CPL) and XSETBV (CPL 0): only XCR0 exists.
pub fn xgetbv_xsetbv(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    check_osxsave(c)?;
    let index = c.cpu.reg(Gpr::Rcx, Width::W32);
    if i.mnemonic() == Mnemonic::Xgetbv {
        if index != 0 {
            return Err(Exception::gp(0));
        }
        let v = c.cpu.xcr0;
        c.cpu.set_reg(Gpr::Rax, Width::W32, v & 0xffff_ffff);
        c.cpu.set_reg(Gpr::Rdx, Width::W32, v >> 32);
        return Ok(());
    }
    if c.cpu.protected() && (c.cpu.v86() || c.cpu.cpl != 0) {
        return Err(Exception::gp(0));
    }
    let v = c.cpu.reg(Gpr::Rdx, Width::W32) << 32 | c.cpu.reg(Gpr::Rax, Width::W32);
    if index != 0 || v & !XCR0_SUPPORTED != 0 || v & 1 == 0 {
        return Err(Exception::gp(0));
    }
    c.cpu.xcr0 = v;
    Ok(())
}

/// True when the x87 state is in its initial configuration (what FNINIT leaves, with the
/// pointers and registers zero).
fn x87_is_init(f: &FpuState) -> bool {
    f.fcw == 0x037f
        && f.fsw == 0
        && f.ftw == 0
        && f.fop == 0
        && f.fip == 0
        && f.fdp == 0
        && f.fcs == 0
        && f.fds == 0
        && f.st.iter().all(|r| r.iter().all(|&b| b == 0))
}

/// True when the SSE state (the XMM registers; MXCSR is not tracked) is initial.
fn sse_is_init(cpu: &CpuState, nxmm: usize) -> bool {
    cpu.xmm[..nxmm].iter().all(|&x| x == 0)
}

/// XSAVE/XSAVE64/XSAVEOPT/XSAVEOPT64 and XRSTOR/XRSTOR64: the requested-feature bitmap is
/// XCR0 AND EDX:EAX. The area must be 64-byte aligned; every fault comes before any change.
pub fn xsave_xrstor(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    use Mnemonic::*;
    check_osxsave(c)?;
    if c.cpu.cr0 & cr0::TS != 0 {
        return Err(Exception::NM);
    }
    let (seg, ea, aw) = mem_at(c, i, false)?;
    if ea & 63 != 0 {
        return Err(Exception::gp(0));
    }
    let m = i.mnemonic();
    let wide = matches!(m, Xsave64 | Xsaveopt64 | Xrstor64);
    let nxmm = if c.cpu.mode64() { 16 } else { 8 };
    let rfbm = c.cpu.xcr0 & (c.cpu.reg(Gpr::Rdx, Width::W32) << 32 | c.cpu.reg(Gpr::Rax, Width::W32));
    let at = |off: u64| ea.wrapping_add(off) & aw.mask();
    if matches!(m, Xsave | Xsave64 | Xsaveopt | Xsaveopt64) {
        // The header's XSTATE_BV is read, then rewritten: check every page written first.
        for off in [0, u64::from(AREA_SIZE) - 1] {
            let lin = mem::seg_linear(c.cpu, seg, at(off), 1, mem::AccessKind::Write)?;
            mem::translate(c.cpu, c.bus, lin, mem::AccessKind::Write)?;
        }
        let old_bv = mem::read(c.cpu, c.bus, seg, at(512), Width::W64)?;
        let img = legacy_image(c.cpu, wide, nxmm);
        let mut inuse = 0u64;
        if !x87_is_init(&c.cpu.fpu) {
            inuse |= 1;
        }
        if !sse_is_init(c.cpu, nxmm) {
            inuse |= 2;
        }
        // XSAVEOPT's init optimization: a component in its initial configuration is not
        // written (its XSTATE_BV bit says so). MXCSR is saved either way.
        let skip = if matches!(m, Xsaveopt | Xsaveopt64) { !inuse } else { 0 };
        let mut writes: Vec<(usize, usize)> = Vec::new();
        if rfbm & 1 != 0 && skip & 1 == 0 {
            writes.push((0, 24));
            writes.push((32, 160));
        }
        if rfbm & 2 != 0 {
            writes.push((24, 32));
            if skip & 2 == 0 {
                writes.push((160, 160 + 16 * nxmm));
            }
        }
        for (from, to) in writes {
            for o in (from..to).step_by(8) {
                let v = u64::from_le_bytes(img[o..o + 8].try_into().unwrap_or([0; 8]));
                mem::write(c.cpu, c.bus, seg, at(o as u64), Width::W64, v)?;
            }
        }
        let bv = (old_bv & !rfbm) | (inuse & rfbm);
        return mem::write(c.cpu, c.bus, seg, at(512), Width::W64, bv);
    }
    // XRSTOR: read the legacy region and the header, check, then load.
    let mut img = [0u8; 512];
    for k in 0..64u64 {
        let v = mem::read(c.cpu, c.bus, seg, at(8 * k), Width::W64)?;
        img[8 * k as usize..8 * k as usize + 8].copy_from_slice(&v.to_le_bytes());
    }
    let bv = mem::read(c.cpu, c.bus, seg, at(512), Width::W64)?;
    let comp = mem::read(c.cpu, c.bus, seg, at(520), Width::W64)?;
    let rsvd = mem::read(c.cpu, c.bus, seg, at(528), Width::W64)?;
    // Standard form: XSTATE_BV within XCR0, and header bytes 8-23 zero (no compaction).
    if bv & !c.cpu.xcr0 != 0 || comp != 0 || rsvd != 0 {
        return Err(Exception::gp(0));
    }
    let mx = img_dword(&img, 24);
    if rfbm & 2 != 0 && mx & !MXCSR_MASK != 0 {
        return Err(Exception::gp(0));
    }
    if rfbm & 1 != 0 {
        if bv & 1 != 0 {
            load_x87(c.cpu, &img, wide);
        } else {
            c.cpu.fpu =
                FpuState { fcw: 0x037f, fsw: 0, ftw: 0, fop: 0, fip: 0, fcs: 0, fdp: 0, fds: 0, st: [[0; 10]; 8] };
        }
    }
    if rfbm & 2 != 0 {
        c.cpu.mxcsr = mx;
        if bv & 2 != 0 {
            load_xmm(c.cpu, &img, nxmm);
        } else {
            c.cpu.xmm[..nxmm].fill(0);
        }
    }
    crate::sem::mmx::ferr_follows_es(c);
    Ok(())
}
