//! Far control transfers in protected and long mode: JMP/CALL to code segments and through
//! call gates, RETF and IRET with privilege-level changes and the return to virtual-8086
//! mode (SDM vol. 2, CALL/JMP/RET/IRET; vol. 3, 5.8). Transfers to a TSS or task gate, and
//! IRET with NT, switch tasks (`sem::task`).

use crate::concrete::Concrete;
use crate::desc::{self, sel_code, sys_type, Descriptor};
use crate::exception::{Exception, Result};
use crate::flags::{self, AC, DF, ID, IF, IOPL, NT, OF, RF, TF, VIF, VIP, VM};
use crate::interrupt;
use crate::mem;
use crate::sem::task;
use crate::state::{attr, CpuState, Gpr, SegReg, Segment, Width};

/// Reads `n` stack slots of width `w` at SS:`sp` upwards without changing anything.
fn read_stack(c: &mut Concrete<'_>, sp: u64, w: Width, n: usize) -> Result<Vec<u64>> {
    let sw = c.cpu.stack_width();
    let mut out = Vec::with_capacity(n);
    for k in 0..n as u64 {
        let at = sp.wrapping_add(k * u64::from(w.bytes())) & sw.mask();
        out.push(mem::read(c.cpu, c.bus, SegReg::Ss, at, w)?);
    }
    Ok(out)
}

/// Pushes return CS:IP on the current stack (both checked before RSP moves).
fn push_return(c: &mut Concrete<'_>, w: Width) -> Result<()> {
    let cs = u64::from(c.cpu.seg[SegReg::Cs as usize].selector);
    let ret = c.cpu.next_rip;
    let sw = c.cpu.stack_width();
    let sp = c.cpu.gpr[Gpr::Rsp as usize];
    let n = u64::from(w.bytes());
    mem::write(c.cpu, c.bus, SegReg::Ss, sp.wrapping_sub(n) & sw.mask(), w, cs)?;
    mem::write(c.cpu, c.bus, SegReg::Ss, sp.wrapping_sub(2 * n) & sw.mask(), w, ret)?;
    c.cpu.set_reg(Gpr::Rsp, sw, sp.wrapping_sub(2 * n));
    Ok(())
}

/// Far JMP or CALL to `sel`:`off` in protected or long mode. `w` is the operand size.
pub fn jmp_call(c: &mut Concrete<'_>, sel: u16, off: u64, w: Width, call: bool) -> Result<()> {
    if sel & 0xfffc == 0 {
        return Err(Exception::gp(0));
    }
    let mut d = desc::fetch(c.cpu, c.bus, sel)?;
    if d.is_code_data() {
        let cs = desc::check_far_code(c.cpu, c.bus, sel, &mut d)?;
        desc::check_ip(&cs, c.cpu.long_mode(), off)?;
        if call {
            push_return(c, w)?;
        }
        desc::set_cs(c.cpu, cs);
        c.cpu.next_rip = off;
        return Ok(());
    }
    let long = c.cpu.long_mode();
    match d.typ() {
        sys_type::CALL_GATE => {}
        sys_type::CALL_GATE16 if !long => {}
        sys_type::TSS16_AVAIL | sys_type::TSS_AVAIL if !long => {
            let rpl = (sel & 3) as u8;
            if d.dpl() < c.cpu.cpl || d.dpl() < rpl {
                return Err(Exception::gp(sel_code(sel)));
            }
            let reason = if call { task::Reason::Call } else { task::Reason::Jmp };
            let ret = c.cpu.next_rip;
            return task::switch(c.cpu, c.bus, sel, d, reason, ret, None);
        }
        sys_type::TASK_GATE if !long => {
            let rpl = (sel & 3) as u8;
            if d.dpl() < c.cpu.cpl || d.dpl() < rpl {
                return Err(Exception::gp(sel_code(sel)));
            }
            if !d.present() {
                return Err(Exception::np(sel_code(sel)));
            }
            let tss_sel = d.gate_selector();
            let tss = desc::fetch(c.cpu, c.bus, tss_sel)?;
            let reason = if call { task::Reason::Call } else { task::Reason::Jmp };
            let ret = c.cpu.next_rip;
            return task::switch(c.cpu, c.bus, tss_sel, tss, reason, ret, None);
        }
        _ => return Err(Exception::gp(sel_code(sel))),
    }
    through_gate(c, sel, d, call)
}

fn through_gate(c: &mut Concrete<'_>, gate_sel: u16, gate: Descriptor, call: bool) -> Result<()> {
    let cpl = c.cpu.cpl;
    let rpl = (gate_sel & 3) as u8;
    if gate.dpl() < cpl || gate.dpl() < rpl {
        return Err(Exception::gp(sel_code(gate_sel)));
    }
    if !gate.present() {
        return Err(Exception::np(sel_code(gate_sel)));
    }
    let long = c.cpu.long_mode();
    let sel = gate.gate_selector();
    if sel & 0xfffc == 0 {
        return Err(Exception::gp(0));
    }
    let mut d = desc::fetch(c.cpu, c.bus, sel)?;
    let err = sel_code(sel);
    if !d.is_code() || d.dpl() > cpl {
        return Err(Exception::gp(err));
    }
    if long && (d.attr() & attr::L == 0 || d.attr() & attr::DB != 0) {
        return Err(Exception::gp(err));
    }
    if !d.present() {
        return Err(Exception::np(err));
    }
    let gw = if long {
        Width::W64
    } else if gate.typ() == sys_type::CALL_GATE {
        Width::W32
    } else {
        Width::W16
    };
    let off = gate.gate_offset() & gw.mask();
    let conforming = d.attr() & attr::DC != 0;
    let inner = call && !conforming && d.dpl() < cpl;
    if !call && !conforming && d.dpl() != cpl {
        return Err(Exception::gp(err));
    }
    let new_cpl = if inner { d.dpl() } else { cpl };
    let cs = d.segment((sel & !3) | u16::from(new_cpl));
    desc::check_ip(&cs, long, off)?;
    desc::set_accessed(c.cpu, c.bus, sel, &mut d)?;
    if !call {
        desc::set_cs(c.cpu, cs);
        c.cpu.next_rip = off;
        return Ok(());
    }
    let ret_cs = u64::from(c.cpu.seg[SegReg::Cs as usize].selector);
    let ret_ip = c.cpu.next_rip;
    if !inner {
        push_return(c, gw)?;
        desc::set_cs(c.cpu, cs);
        c.cpu.next_rip = off;
        return Ok(());
    }
    let old_ss = c.cpu.seg[SegReg::Ss as usize];
    let old_sp = c.cpu.gpr[Gpr::Rsp as usize];
    if long {
        let sp = interrupt::tss64_stack(c.cpu, c.bus, new_cpl, 0)?;
        let at =
            interrupt::push_frame64(c.cpu, c.bus, sp, &[u64::from(old_ss.selector), old_sp, ret_cs, ret_ip], new_cpl)?;
        let ss = &mut c.cpu.seg[SegReg::Ss as usize];
        ss.selector = u16::from(new_cpl);
        ss.attr = attr::S | attr::RW | attr::DB | (u16::from(new_cpl) << attr::DPL_SHIFT);
        c.cpu.gpr[Gpr::Rsp as usize] = at;
    } else {
        let (ss_sel, sp) = interrupt::tss_stack(c.cpu, c.bus, new_cpl)?;
        let ss = interrupt::inner_stack_segment(c.cpu, c.bus, ss_sel, new_cpl)?;
        let params = read_stack(c, old_sp, gw, usize::from(gate.gate_params()))?;
        let mut frame = vec![u64::from(old_ss.selector), old_sp & gw.mask()];
        frame.extend(params.iter().rev());
        frame.extend_from_slice(&[ret_cs, ret_ip]);
        let new_sp = interrupt::push_frame(c.cpu, c.bus, ss, sp, gw, &frame, new_cpl)?;
        c.cpu.seg[SegReg::Ss as usize] = ss;
        let sw = if ss.attr & attr::DB != 0 { Width::W32 } else { Width::W16 };
        c.cpu.set_reg(Gpr::Rsp, sw, new_sp);
    }
    desc::set_cs(c.cpu, cs);
    c.cpu.next_rip = off;
    Ok(())
}

/// Checks the code segment a RETF or IRET returns to: RPL >= CPL, a present code segment
/// whose DPL fits the RPL.
fn check_return_cs(c: &mut Concrete<'_>, sel: u16) -> Result<Descriptor> {
    let err = sel_code(sel);
    if sel & 0xfffc == 0 {
        return Err(Exception::gp(0));
    }
    let rpl = (sel & 3) as u8;
    if rpl < c.cpu.cpl {
        return Err(Exception::gp(err));
    }
    let mut d = desc::fetch(c.cpu, c.bus, sel)?;
    if !d.is_code() {
        return Err(Exception::gp(err));
    }
    let conforming = d.attr() & attr::DC != 0;
    if (conforming && d.dpl() > rpl) || (!conforming && d.dpl() != rpl) {
        return Err(Exception::gp(err));
    }
    if !d.present() {
        return Err(Exception::np(err));
    }
    if c.cpu.long_mode() && d.attr() & attr::L != 0 && d.attr() & attr::DB != 0 {
        return Err(Exception::gp(err));
    }
    desc::set_accessed(c.cpu, c.bus, sel, &mut d)?;
    Ok(d)
}

/// Checks the stack segment of a return to an outer level (`rpl`). A null SS is allowed
/// only for a return to 64-bit code below CPL 3.
fn check_return_ss(c: &mut Concrete<'_>, sel: u16, rpl: u8, to64: bool) -> Result<Segment> {
    if sel & 0xfffc == 0 {
        if to64 && rpl != 3 && (sel & 3) as u8 == rpl {
            return Ok(Segment {
                selector: sel,
                base: 0,
                limit: 0,
                attr: attr::S | attr::RW | attr::DB | (u16::from(rpl) << attr::DPL_SHIFT),
            });
        }
        return Err(Exception::gp(0));
    }
    let err = sel_code(sel);
    let mut d = desc::fetch(c.cpu, c.bus, sel)?;
    if (sel & 3) as u8 != rpl || !d.is_code_data() || d.is_code() || d.attr() & attr::RW == 0 || d.dpl() != rpl {
        return Err(Exception::gp(err));
    }
    if !d.present() {
        return Err(Exception::ss(err));
    }
    desc::set_accessed(c.cpu, c.bus, sel, &mut d)?;
    Ok(d.segment(sel))
}

/// RETF in protected or long mode, with `imm` bytes of parameters to release.
pub fn retf(c: &mut Concrete<'_>, w: Width, imm: u64) -> Result<()> {
    let sp = c.cpu.gpr[Gpr::Rsp as usize];
    let v = read_stack(c, sp, w, 2)?;
    let (ip, sel) = (v[0], v[1] as u16);
    let d = check_return_cs(c, sel)?;
    let rpl = (sel & 3) as u8;
    let cs = d.segment(sel);
    let to64 = c.cpu.long_mode() && cs.attr & attr::L != 0;
    desc::check_ip(&cs, c.cpu.long_mode(), ip)?;
    let sw = c.cpu.stack_width();
    let n = u64::from(w.bytes());
    if rpl == c.cpu.cpl {
        desc::set_cs(c.cpu, cs);
        c.cpu.set_reg(Gpr::Rsp, sw, sp.wrapping_add(2 * n + imm));
        c.cpu.next_rip = ip;
        return Ok(());
    }
    let outer = read_stack(c, sp.wrapping_add(2 * n + imm), w, 2)?;
    let ss = check_return_ss(c, outer[1] as u16, rpl, to64)?;
    desc::set_cs(c.cpu, cs);
    c.cpu.seg[SegReg::Ss as usize] = ss;
    // CS and SS are the new ones: the stack width follows them.
    let nsw = c.cpu.stack_width();
    c.cpu.set_reg(Gpr::Rsp, nsw, outer[0].wrapping_add(imm));
    desc::null_inaccessible_segs(c.cpu);
    c.cpu.next_rip = ip;
    Ok(())
}

/// The flags IRET may change at the current privilege (SDM vol. 2, IRET).
fn iret_flag_mask(cpu: &CpuState, w: Width) -> u64 {
    let iopl = ((cpu.flags.raw_bits() & IOPL) >> 12) as u8;
    let mut m = flags::ARITH | TF | DF | OF | NT | RF | AC | ID;
    if cpu.cpl == 0 {
        m |= IOPL | IF | VIF | VIP;
    } else if cpu.cpl <= iopl {
        m |= IF;
    }
    if w == Width::W16 {
        m &= 0xffff;
    }
    m
}

/// A virtual-8086 mode segment: base selector*16, 64 KiB, DPL 3.
fn v86_seg(sel: u16, code: bool) -> Segment {
    let mut a = attr::P | attr::S | attr::RW | attr::ACCESSED | (3 << attr::DPL_SHIFT);
    if code {
        a |= attr::CODE;
    }
    Segment { selector: sel, base: u64::from(sel) << 4, limit: 0xffff, attr: a }
}

/// IRET/IRETD/IRETQ in protected, virtual-8086 and long mode.
pub fn iret(c: &mut Concrete<'_>, w: Width) -> Result<()> {
    let r = iret_inner(c, w);
    if r.is_ok() {
        // IRET ends NMI blocking (SDM vol. 3, 6.7.1).
        c.cpu.nmi_blocked = false;
    }
    r
}

fn iret_inner(c: &mut Concrete<'_>, w: Width) -> Result<()> {
    let sp = c.cpu.gpr[Gpr::Rsp as usize];
    let sw = c.cpu.stack_width();
    let n = u64::from(w.bytes());
    if c.cpu.v86() {
        let iopl = ((c.cpu.flags.raw_bits() & IOPL) >> 12) as u8;
        if iopl < 3 {
            return Err(Exception::gp(0));
        }
        let v = read_stack(c, sp, w, 3)?;
        if v[0] > 0xffff {
            return Err(Exception::gp(0));
        }
        let mask = (flags::ARITH | TF | DF | OF | NT | RF | AC | ID | IF) & if w == Width::W16 { 0xffff } else { !0 };
        let cur = c.cpu.flags.get();
        c.cpu.flags.set((cur & !mask) | (v[2] & mask));
        interrupt::load_real_cs(c.cpu, v[1] as u16);
        c.cpu.set_reg(Gpr::Rsp, sw, sp.wrapping_add(3 * n));
        c.cpu.next_rip = v[0];
        return Ok(());
    }
    let long = c.cpu.long_mode();
    if c.cpu.flags.raw_bits() & NT != 0 {
        if long {
            return Err(Exception::gp(0));
        }
        // Back to the task this one was called from.
        let tr = c.cpu.tr;
        let link = mem::sys_read(c.cpu, c.bus, tr.base, Width::W16)? as u16;
        if link & 4 != 0 {
            return Err(Exception::ts(sel_code(link)));
        }
        let d = desc::fetch(c.cpu, c.bus, link).map_err(|_| Exception::ts(sel_code(link)))?;
        let ret = c.cpu.next_rip;
        return task::switch(c.cpu, c.bus, link, d, task::Reason::Iret, ret, None);
    }
    let v = read_stack(c, sp, w, 3)?;
    let (ip, sel, fl) = (v[0], v[1] as u16, v[2]);
    if !long && w == Width::W32 && fl & VM != 0 && c.cpu.cpl == 0 {
        // Back to virtual-8086 mode: ESP, SS, ES, DS, FS, GS follow on the stack.
        let rest = read_stack(c, sp.wrapping_add(3 * n), Width::W32, 6)?;
        c.cpu.flags.set(fl & (flags::ALL & !RF));
        c.cpu.seg[SegReg::Cs as usize] = v86_seg(sel, true);
        for (s, val) in [
            (SegReg::Ss, rest[1]),
            (SegReg::Es, rest[2]),
            (SegReg::Ds, rest[3]),
            (SegReg::Fs, rest[4]),
            (SegReg::Gs, rest[5]),
        ] {
            c.cpu.seg[s as usize] = v86_seg(val as u16, false);
        }
        c.cpu.cpl = 3;
        c.cpu.gpr[Gpr::Rsp as usize] = rest[0] & 0xffff_ffff;
        c.cpu.next_rip = ip & 0xffff;
        return Ok(());
    }
    let d = check_return_cs(c, sel)?;
    let rpl = (sel & 3) as u8;
    let cs = d.segment(sel);
    let to64 = long && cs.attr & attr::L != 0;
    let ip = if to64 { ip } else { ip & 0xffff_ffff };
    desc::check_ip(&cs, long, ip)?;
    let mask = iret_flag_mask(c.cpu, w);
    // 64-bit mode always pops SS:RSP; otherwise only on a return to an outer level.
    let pops_stack = c.cpu.mode64() || rpl > c.cpu.cpl;
    let outer = if pops_stack { Some(read_stack(c, sp.wrapping_add(3 * n), w, 2)?) } else { None };
    let ss = match &outer {
        Some(o) => Some(check_return_ss(c, o[1] as u16, rpl, to64)?),
        None => None,
    };
    let cur = c.cpu.flags.get();
    c.cpu.flags.set((cur & !mask) | (fl & mask));
    let outward = rpl > c.cpu.cpl;
    desc::set_cs(c.cpu, cs);
    match (outer, ss) {
        (Some(o), Some(ss)) => {
            c.cpu.seg[SegReg::Ss as usize] = ss;
            let nsw = c.cpu.stack_width();
            c.cpu.set_reg(Gpr::Rsp, nsw, o[0]);
        }
        _ => c.cpu.set_reg(Gpr::Rsp, sw, sp.wrapping_add(3 * n)),
    }
    if outward {
        desc::null_inaccessible_segs(c.cpu);
    }
    c.cpu.next_rip = ip;
    Ok(())
}
