//! Hardware task switches (SDM vol. 3, 7.3): through JMP/CALL to a TSS or task gate, an
//! interrupt or exception through a task gate, and IRET with NT set. 16- and 32-bit TSSs.
//! Long mode has no task switching (the callers refuse it).

use crate::bus::CpuBus;
use crate::desc::{self, sel_code, sys_type, Descriptor};
use crate::exception::{Exception, Result};
use crate::flags::{NT, VM};
use crate::mem;
use crate::state::{attr, cr0, CpuState, Gpr, SegReg, Segment, Width};

/// What started the switch: it decides the busy bits, the back link and NT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// JMP: the old task is left (not busy), no link.
    Jmp,
    /// CALL, or an interrupt/exception through a task gate: the new task links back.
    Call,
    /// IRET with NT: back to the task in the link field.
    Iret,
}

/// Offsets in a TSS of each kind.
struct Layout {
    ip: u64,
    flags: u64,
    regs: u64,
    segs: u64,
    ldt: u64,
    w: Width,
    min_limit: u32,
}

const TSS32: Layout =
    Layout { ip: 0x20, flags: 0x24, regs: 0x28, segs: 0x48, ldt: 0x60, w: Width::W32, min_limit: 0x67 };
const TSS16: Layout =
    Layout { ip: 0x0e, flags: 0x10, regs: 0x12, segs: 0x22, ldt: 0x2a, w: Width::W16, min_limit: 0x2b };

fn layout(typ: u8) -> &'static Layout {
    if matches!(typ, sys_type::TSS16_AVAIL | sys_type::TSS16_BUSY) {
        &TSS16
    } else {
        &TSS32
    }
}

/// The segment registers in TSS order: ES, CS, SS, DS (FS, GS in a 32-bit TSS).
const SEG_ORDER: [SegReg; 6] = [SegReg::Es, SegReg::Cs, SegReg::Ss, SegReg::Ds, SegReg::Fs, SegReg::Gs];

fn set_busy(cpu: &mut CpuState, bus: &mut dyn CpuBus, sel: u16, busy: bool) -> Result<()> {
    let at = desc::locate(cpu, sel, false)?;
    let b = mem::sys_read(cpu, bus, at + 5, Width::W8)?;
    let nb = if busy { b | 2 } else { b & !2 };
    mem::sys_write(cpu, bus, at + 5, Width::W8, nb)
}

/// Switches to the task whose TSS descriptor is `new` (selector `sel`). `return_rip` is
/// saved as the old task's EIP. `error` is pushed on the new task's stack (an exception
/// with an error code through a task gate).
pub fn switch(
    cpu: &mut CpuState,
    bus: &mut dyn CpuBus,
    sel: u16,
    new: Descriptor,
    reason: Reason,
    return_rip: u64,
    error: Option<u32>,
) -> Result<()> {
    let err = sel_code(sel);
    let typ = new.typ();
    let busy = matches!(typ, sys_type::TSS_BUSY | sys_type::TSS16_BUSY);
    if new.is_code_data() || !matches!(typ, 1 | 3 | 9 | 11) || sel & 4 != 0 {
        return Err(Exception::gp(err));
    }
    if !new.present() {
        return Err(Exception::np(err));
    }
    if busy != (reason == Reason::Iret) {
        return Err(Exception::gp(err));
    }
    let nl = layout(typ);
    if new.limit() < nl.min_limit {
        return Err(Exception::ts(err));
    }
    let old = cpu.tr;
    let ol = layout((old.attr & 0xf) as u8);
    if old.limit < ol.min_limit {
        return Err(Exception::ts(sel_code(old.selector)));
    }
    let nbase = new.base();

    // Read the whole new state first: a fault here leaves the old task untouched.
    let n = u64::from(nl.w.bytes());
    let new_ip = mem::sys_read(cpu, bus, nbase + nl.ip, nl.w)?;
    let mut new_flags = mem::sys_read(cpu, bus, nbase + nl.flags, nl.w)?;
    let mut new_regs = [0u64; 8];
    for (k, r) in new_regs.iter_mut().enumerate() {
        *r = mem::sys_read(cpu, bus, nbase + nl.regs + n * k as u64, nl.w)?;
    }
    let nsegs = if nl.w == Width::W32 { 6 } else { 4 };
    let seg_stride = if nl.w == Width::W32 { 4 } else { 2 };
    let mut new_sels = [0u16; 6];
    for (k, s) in new_sels.iter_mut().enumerate().take(nsegs) {
        *s = mem::sys_read(cpu, bus, nbase + nl.segs + seg_stride * k as u64, Width::W16)? as u16;
    }
    let new_ldt = mem::sys_read(cpu, bus, nbase + nl.ldt, Width::W16)? as u16;
    let new_cr3 = if nl.w == Width::W32 { Some(mem::sys_read(cpu, bus, nbase + 0x1c, Width::W32)?) } else { None };

    // Save the old task.
    let obase = old.base;
    let on = u64::from(ol.w.bytes());
    let mut old_flags = cpu.flags.get();
    if reason == Reason::Iret {
        old_flags &= !NT;
    }
    mem::sys_write(cpu, bus, obase + ol.ip, ol.w, return_rip)?;
    mem::sys_write(cpu, bus, obase + ol.flags, ol.w, old_flags)?;
    for k in 0..8 {
        let v = cpu.gpr[k];
        mem::sys_write(cpu, bus, obase + ol.regs + on * k as u64, ol.w, v)?;
    }
    let ostride = if ol.w == Width::W32 { 4 } else { 2 };
    let osegs = if ol.w == Width::W32 { 6 } else { 4 };
    for (k, s) in SEG_ORDER.iter().enumerate().take(osegs) {
        let v = u64::from(cpu.seg[*s as usize].selector);
        mem::sys_write(cpu, bus, obase + ol.segs + ostride * k as u64, Width::W16, v)?;
    }
    if reason != Reason::Call {
        set_busy(cpu, bus, old.selector, false)?;
    }
    if reason == Reason::Call {
        mem::sys_write(cpu, bus, nbase, Width::W16, u64::from(old.selector))?;
        new_flags |= NT;
    }
    if reason != Reason::Iret {
        set_busy(cpu, bus, sel, true)?;
    }

    // The switch is committed: TR, CR0.TS, then the new state. Faults from here on belong
    // to the new task.
    let mut tr = new.segment(sel);
    tr.attr |= 2;
    cpu.tr = tr;
    cpu.cr0 |= cr0::TS;
    if let Some(c3) = new_cr3 {
        if cpu.cr0 & cr0::PG != 0 {
            let (c0, c4, e) = (cpu.cr0, cpu.cr4, cpu.efer);
            crate::sem::privileged::commit_paging(cpu, bus, c0, c4, e, Some(c3)).map_err(|_| Exception::ts(err))?;
        }
    }
    let keep = if nl.w == Width::W16 { !0xffffu64 } else { 0 };
    cpu.flags.set((cpu.flags.get() & keep) | new_flags);
    for (k, v) in new_regs.iter().enumerate() {
        cpu.set_reg(crate::operand::gpr(k), nl.w, *v);
    }
    cpu.rip = new_ip;
    cpu.next_rip = new_ip;
    // Selectors first, as the CPU does, so a fault below reports against the new task.
    for (k, s) in SEG_ORDER.iter().enumerate().take(nsegs) {
        cpu.seg[*s as usize].selector = new_sels[k];
    }
    load_new_segments(cpu, bus, &new_sels[..nsegs], new_ldt)?;
    if let Some(code) = error {
        let sw = cpu.stack_width();
        let sp = cpu.gpr[Gpr::Rsp as usize].wrapping_sub(u64::from(nl.w.bytes())) & sw.mask();
        mem::write(cpu, bus, SegReg::Ss, sp, nl.w, u64::from(code))?;
        cpu.set_reg(Gpr::Rsp, sw, sp);
    }
    Ok(())
}

fn load_new_segments(cpu: &mut CpuState, bus: &mut dyn CpuBus, sels: &[u16], ldt: u16) -> Result<()> {
    // The LDT first: the other selectors may point into it.
    if ldt & 0xfffc == 0 {
        cpu.ldtr = Segment { selector: ldt, base: 0, limit: 0, attr: 0 };
    } else {
        let d = desc::fetch(cpu, bus, ldt & !4).map_err(|_| Exception::ts(sel_code(ldt)))?;
        if ldt & 4 != 0 || d.is_code_data() || d.typ() != sys_type::LDT {
            return Err(Exception::ts(sel_code(ldt)));
        }
        if !d.present() {
            return Err(Exception::ts(sel_code(ldt)));
        }
        cpu.ldtr = d.segment(ldt);
    }
    if cpu.flags.raw_bits() & VM != 0 {
        for (k, s) in SEG_ORDER.iter().enumerate().take(sels.len()) {
            let sel = sels[k];
            let mut a = attr::P | attr::S | attr::RW | attr::ACCESSED | (3 << attr::DPL_SHIFT);
            if *s == SegReg::Cs {
                a |= attr::CODE;
            }
            cpu.seg[*s as usize] = Segment { selector: sel, base: u64::from(sel) << 4, limit: 0xffff, attr: a };
        }
        cpu.cpl = 3;
        return Ok(());
    }
    // CS decides the new CPL; then SS and the data segments are checked against it.
    let cs_sel = sels[1];
    let ts = |s: u16| Exception::ts(sel_code(s));
    if cs_sel & 0xfffc == 0 {
        return Err(ts(cs_sel));
    }
    let mut d = desc::fetch(cpu, bus, cs_sel).map_err(|_| ts(cs_sel))?;
    let rpl = (cs_sel & 3) as u8;
    let conforming = d.attr() & attr::DC != 0;
    if !d.is_code() || (conforming && d.dpl() > rpl) || (!conforming && d.dpl() != rpl) {
        return Err(ts(cs_sel));
    }
    if !d.present() {
        return Err(Exception::np(sel_code(cs_sel)));
    }
    desc::set_accessed(cpu, bus, cs_sel, &mut d)?;
    desc::set_cs(cpu, d.segment(cs_sel));
    for (k, s) in SEG_ORDER.iter().enumerate().take(sels.len()) {
        if *s == SegReg::Cs {
            continue;
        }
        desc::load_data_seg(cpu, bus, *s, sels[k]).map_err(|e| match e.vector {
            crate::exception::vector::GP => ts(sels[k]),
            _ => e,
        })?;
    }
    Ok(())
}
