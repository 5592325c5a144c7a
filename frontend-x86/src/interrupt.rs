//! Exception and interrupt delivery (SDM vol. 3, chapter 6): through the IVT in real mode,
//! the IDT in protected mode (with privilege-level stack switches and from virtual-8086 mode)
//! and the 64-bit IDT in long mode (with IST), and double/triple-fault escalation.

use crate::bus::CpuBus;
use crate::desc::{self, sel_code, sys_type, Descriptor};
use crate::exception::{vector, Exception, Result};
use crate::flags::{AC, IF, NT, RF, TF, VM};
use crate::mem;
use crate::state::{attr, CpuState, Gpr, SegReg, Segment, Width};

/// Where an event comes from: it decides the return address and some privilege checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A fault or trap raised by an instruction (`return_rip` is given by the caller).
    Exception,
    /// INT n, INT3, INTO: software interrupts, checked against the gate's DPL.
    Software,
    /// An external interrupt from the interrupt controller.
    External,
    /// A non-maskable interrupt.
    Nmi,
}

/// Delivers `vec` with the interrupted code's CS:IP at `return_rip`. On success the CPU is at
/// the handler; on failure no register has changed (stack memory may have) and the caller
/// decides: a double fault, or a fault of the instruction that raised it.
pub fn deliver(
    cpu: &mut CpuState,
    bus: &mut dyn CpuBus,
    vec: u8,
    error_code: Option<u32>,
    return_rip: u64,
    kind: EventKind,
) -> Result<()> {
    let r = if !cpu.protected() {
        deliver_real(cpu, bus, vec, return_rip)
    } else if cpu.long_mode() {
        deliver_long(cpu, bus, vec, error_code, return_rip, kind)
    } else {
        deliver_protected(cpu, bus, vec, error_code, return_rip, kind)
    };
    if r.is_ok() {
        cpu.halted = false;
        if kind == EventKind::Nmi {
            cpu.nmi_blocked = true;
        }
    }
    r
}

fn deliver_real(cpu: &mut CpuState, bus: &mut dyn CpuBus, vec: u8, return_rip: u64) -> Result<()> {
    let entry = u64::from(vec) * 4;
    if entry + 3 > u64::from(cpu.idtr.limit) {
        return Err(Exception::gp(0));
    }
    let ivt = cpu.idtr.base.wrapping_add(entry) & 0xffff_ffff;
    let new_ip = mem::sys_read(cpu, bus, ivt, Width::W16)?;
    let new_cs = mem::sys_read(cpu, bus, ivt + 2, Width::W16)? as u16;
    let flags = cpu.flags.get();
    let cs = u64::from(cpu.seg[SegReg::Cs as usize].selector);
    let sp = cpu.reg(Gpr::Rsp, Width::W16);
    let sp1 = sp.wrapping_sub(2) & 0xffff;
    let sp2 = sp.wrapping_sub(4) & 0xffff;
    let sp3 = sp.wrapping_sub(6) & 0xffff;
    mem::write(cpu, bus, SegReg::Ss, sp1, Width::W16, flags & 0xffff)?;
    mem::write(cpu, bus, SegReg::Ss, sp2, Width::W16, cs)?;
    mem::write(cpu, bus, SegReg::Ss, sp3, Width::W16, return_rip & 0xffff)?;
    cpu.set_reg(Gpr::Rsp, Width::W16, sp3);
    cpu.flags.set(flags & !(IF | TF | AC | RF));
    load_real_cs(cpu, new_cs);
    cpu.rip = new_ip;
    cpu.next_rip = new_ip;
    Ok(())
}

/// Loads CS the way real and virtual-8086 mode do: base from the selector, limit and
/// attributes kept (which is what "unreal mode" relies on).
pub fn load_real_cs(cpu: &mut CpuState, sel: u16) {
    let cs = &mut cpu.seg[SegReg::Cs as usize];
    cs.selector = sel;
    cs.base = u64::from(sel) << 4;
}

/// The inner-level stack pointer for privilege level `dpl` from the current TSS: (SS, ESP)
/// from a 16- or 32-bit TSS.
pub fn tss_stack(cpu: &mut CpuState, bus: &mut dyn CpuBus, dpl: u8) -> Result<(u16, u64)> {
    let tr = cpu.tr;
    let ts = Exception::ts(sel_code(tr.selector));
    let typ = (tr.attr & 0xf) as u8;
    let (sp_off, ss_off, w) = match typ {
        sys_type::TSS16_AVAIL | sys_type::TSS16_BUSY => (2 + 4 * u64::from(dpl), 4 + 4 * u64::from(dpl), Width::W16),
        sys_type::TSS_AVAIL | sys_type::TSS_BUSY => (4 + 8 * u64::from(dpl), 8 + 8 * u64::from(dpl), Width::W32),
        _ => return Err(ts),
    };
    if ss_off + 1 > u64::from(tr.limit) {
        return Err(ts);
    }
    let sp = mem::sys_read(cpu, bus, tr.base + sp_off, w)?;
    let ss = mem::sys_read(cpu, bus, tr.base + ss_off, Width::W16)? as u16;
    Ok((ss, sp))
}

/// RSPn (for a privilege change to `dpl`) or ISTn from the 64-bit TSS.
pub fn tss64_stack(cpu: &mut CpuState, bus: &mut dyn CpuBus, dpl: u8, ist: u8) -> Result<u64> {
    let tr = cpu.tr;
    let off = if ist != 0 { 0x24 + 8 * u64::from(ist - 1) } else { 4 + 8 * u64::from(dpl) };
    if off + 7 > u64::from(tr.limit) {
        return Err(Exception::ts(sel_code(tr.selector)));
    }
    mem::sys_read(cpu, bus, tr.base + off, Width::W64)
}

/// Checks and loads a stack segment for an inner privilege level, as interrupt delivery and
/// call gates do; errors are #TS(selector) as the SDM specifies.
pub fn inner_stack_segment(cpu: &mut CpuState, bus: &mut dyn CpuBus, ss: u16, dpl: u8) -> Result<Segment> {
    let ts = Exception::ts(sel_code(ss));
    if ss & 0xfffc == 0 || (ss & 3) as u8 != dpl {
        return Err(ts);
    }
    let mut d = desc::fetch(cpu, bus, ss).map_err(|_| ts)?;
    if !d.is_code_data() || d.is_code() || d.attr() & attr::RW == 0 || d.dpl() != dpl {
        return Err(ts);
    }
    if !d.present() {
        return Err(Exception::ss(sel_code(ss)));
    }
    desc::set_accessed(cpu, bus, ss, &mut d)?;
    Ok(d.segment(ss))
}

/// Pushes `vals` (each `w` wide, first pushed first) on a legacy-mode stack `ss`:`sp`,
/// without changing any register; returns the new stack pointer. The writes are made at
/// privilege `cpl` (the new one: a ring 3 -> 0 transfer writes the ring-0 stack with
/// supervisor accesses). A fault leaves the registers as they were.
pub fn push_frame(
    cpu: &mut CpuState,
    bus: &mut dyn CpuBus,
    ss: Segment,
    sp: u64,
    w: Width,
    vals: &[u64],
    cpl: u8,
) -> Result<u64> {
    let saved = cpu.seg[SegReg::Ss as usize];
    let saved_cpl = cpu.cpl;
    cpu.cpl = cpl;
    cpu.seg[SegReg::Ss as usize] = ss;
    let sw = if ss.attr & attr::DB != 0 { Width::W32 } else { Width::W16 };
    let n = u64::from(w.bytes());
    let mut at = sp;
    let mut r = Ok(());
    for v in vals {
        at = at.wrapping_sub(n) & sw.mask();
        r = mem::write(cpu, bus, SegReg::Ss, at, w, *v);
        if r.is_err() {
            break;
        }
    }
    cpu.seg[SegReg::Ss as usize] = saved;
    cpu.cpl = saved_cpl;
    r.map(|_| at)
}

/// What an IDT entry leads to.
enum Gate {
    /// An interrupt or trap gate, its code segment, and the EXT bit for error codes.
    Handler(Descriptor, Descriptor, u32),
    /// A task gate (legacy protected mode only).
    Task(Descriptor),
}

/// Reads and checks the IDT gate for `vec` (once) and, for interrupt and trap gates, the code
/// segment it leads to.
fn read_gate(cpu: &mut CpuState, bus: &mut dyn CpuBus, vec: u8, kind: EventKind, long: bool) -> Result<Gate> {
    let ext = u32::from(kind != EventKind::Software);
    let idt_err = u32::from(vec) * 8 + 2 + ext;
    let size = if long { 16 } else { 8 };
    let off = u64::from(vec) * size;
    if off + size - 1 > u64::from(cpu.idtr.limit) {
        return Err(Exception::gp(idt_err));
    }
    let at = cpu.idtr.base.wrapping_add(off);
    let lo = mem::sys_read(cpu, bus, at, Width::W64)?;
    let hi = if long { mem::sys_read(cpu, bus, at + 8, Width::W64)? } else { 0 };
    let gate = Descriptor { lo, hi };
    let ok_type = if long {
        matches!(gate.typ(), sys_type::INT_GATE | sys_type::TRAP_GATE)
    } else {
        matches!(
            gate.typ(),
            sys_type::INT_GATE
                | sys_type::TRAP_GATE
                | sys_type::INT_GATE16
                | sys_type::TRAP_GATE16
                | sys_type::TASK_GATE
        )
    };
    if gate.is_code_data() || !ok_type {
        return Err(Exception::gp(idt_err));
    }
    if kind == EventKind::Software && gate.dpl() < cpu.cpl {
        return Err(Exception::gp(idt_err));
    }
    if !gate.present() {
        return Err(Exception::np(idt_err));
    }
    if gate.typ() == sys_type::TASK_GATE {
        return Ok(Gate::Task(gate));
    }
    let sel = gate.gate_selector();
    if sel & 0xfffc == 0 {
        return Err(Exception::gp(ext));
    }
    let cs = desc::fetch(cpu, bus, sel).map_err(|_| Exception::gp(sel_code(sel) | ext))?;
    if !cs.is_code() || cs.dpl() > cpu.cpl {
        return Err(Exception::gp(sel_code(sel) | ext));
    }
    if long && (cs.attr() & attr::L == 0 || cs.attr() & attr::DB != 0) {
        return Err(Exception::gp(sel_code(sel) | ext));
    }
    if !cs.present() {
        return Err(Exception::np(sel_code(sel) | ext));
    }
    Ok(Gate::Handler(gate, cs, ext))
}

fn deliver_protected(
    cpu: &mut CpuState,
    bus: &mut dyn CpuBus,
    vec: u8,
    error_code: Option<u32>,
    return_rip: u64,
    kind: EventKind,
) -> Result<()> {
    let (gate, mut cs_desc, ext) = match read_gate(cpu, bus, vec, kind, false)? {
        Gate::Handler(gate, cs, ext) => (gate, cs, ext),
        Gate::Task(gate) => {
            let sel = gate.gate_selector();
            let tss = desc::fetch(cpu, bus, sel)?;
            return crate::sem::task::switch(
                cpu,
                bus,
                sel,
                tss,
                crate::sem::task::Reason::Call,
                return_rip,
                error_code,
            );
        }
    };
    let sel = gate.gate_selector();
    let gate32 = gate.typ() >= sys_type::INT_GATE;
    let w = if gate32 { Width::W32 } else { Width::W16 };
    let conforming = cs_desc.attr() & attr::DC != 0;
    let v86 = cpu.v86();
    let old_cpl = cpu.cpl;
    let new_cpl = if conforming { old_cpl } else { cs_desc.dpl() };
    let flags = cpu.flags.get();
    let old_cs = u64::from(cpu.seg[SegReg::Cs as usize].selector);
    let old_ss = cpu.seg[SegReg::Ss as usize];
    let old_sp = cpu.gpr[Gpr::Rsp as usize];
    let mut frame: Vec<u64> = Vec::with_capacity(10);
    let (stack_seg, stack_sp) = if new_cpl < old_cpl {
        if v86 && new_cpl != 0 {
            return Err(Exception::gp(sel_code(sel) | ext));
        }
        let (ss, sp) = tss_stack(cpu, bus, new_cpl)?;
        let ss_seg = inner_stack_segment(cpu, bus, ss, new_cpl)?;
        if v86 {
            for s in [SegReg::Gs, SegReg::Fs, SegReg::Ds, SegReg::Es] {
                frame.push(u64::from(cpu.seg[s as usize].selector));
            }
        }
        frame.push(u64::from(old_ss.selector));
        frame.push(old_sp & if old_ss.attr & attr::DB != 0 { 0xffff_ffff } else { 0xffff });
        (ss_seg, sp)
    } else {
        if v86 {
            return Err(Exception::gp(sel_code(sel) | ext));
        }
        (old_ss, old_sp)
    };
    frame.extend_from_slice(&[flags, old_cs, return_rip]);
    if let Some(code) = error_code {
        frame.push(u64::from(code));
    }
    let target = if gate32 { gate.gate_offset() & 0xffff_ffff } else { gate.gate_offset() & 0xffff };
    let new_cs = cs_desc.segment((sel & !3) | u16::from(new_cpl));
    desc::check_ip(&new_cs, false, target)?;
    let new_sp = push_frame(cpu, bus, stack_seg, stack_sp, w, &frame, new_cpl)?;
    desc::set_accessed(cpu, bus, sel, &mut cs_desc)?;

    // Everything is checked and written: commit.
    if new_cpl < old_cpl {
        cpu.seg[SegReg::Ss as usize] = stack_seg;
        if v86 {
            for s in [SegReg::Gs, SegReg::Fs, SegReg::Ds, SegReg::Es] {
                cpu.seg[s as usize] = Segment { selector: 0, base: 0, limit: 0, attr: 0 };
            }
        }
    }
    let sw = if cpu.seg[SegReg::Ss as usize].attr & attr::DB != 0 { Width::W32 } else { Width::W16 };
    cpu.set_reg(Gpr::Rsp, sw, new_sp);
    desc::set_cs(cpu, new_cs);
    let mut nf = flags & !(TF | NT | RF | VM);
    if gate.typ() == sys_type::INT_GATE || gate.typ() == sys_type::INT_GATE16 {
        nf &= !IF;
    }
    cpu.flags.set(nf);
    cpu.rip = target;
    cpu.next_rip = target;
    Ok(())
}

fn deliver_long(
    cpu: &mut CpuState,
    bus: &mut dyn CpuBus,
    vec: u8,
    error_code: Option<u32>,
    return_rip: u64,
    kind: EventKind,
) -> Result<()> {
    let Gate::Handler(gate, mut cs_desc, _ext) = read_gate(cpu, bus, vec, kind, true)? else {
        // Long mode has no task gates: read_gate refused the type.
        return Err(Exception::gp(u32::from(vec) * 16 + 2));
    };
    let sel = gate.gate_selector();
    let old_cpl = cpu.cpl;
    let new_cpl = if cs_desc.attr() & attr::DC != 0 { old_cpl } else { cs_desc.dpl() };
    let flags = cpu.flags.get();
    let old_ss = u64::from(cpu.seg[SegReg::Ss as usize].selector);
    let old_sp = cpu.gpr[Gpr::Rsp as usize];
    let ist = gate.gate_ist();
    let sp = if ist != 0 || new_cpl < old_cpl { tss64_stack(cpu, bus, new_cpl, ist)? } else { old_sp };
    let sp = sp & !0xf;
    let mut frame = vec![old_ss, old_sp, flags, u64::from(cpu.seg[SegReg::Cs as usize].selector), return_rip];
    if let Some(code) = error_code {
        frame.push(u64::from(code));
    }
    let target = gate.gate_offset();
    if !mem::is_canonical(target) {
        return Err(Exception::gp(0));
    }
    // The frame is written in 64-bit form whatever the interrupted mode was, with the new
    // privilege's accesses (supervisor writes to the ring-0 stack).
    let at = push_frame64(cpu, bus, sp, &frame, new_cpl)?;
    desc::set_accessed(cpu, bus, sel, &mut cs_desc)?;
    if new_cpl < old_cpl {
        // SS becomes a null selector with RPL = the new CPL.
        let ss = &mut cpu.seg[SegReg::Ss as usize];
        ss.selector = u16::from(new_cpl);
        ss.base = 0;
        ss.limit = 0;
        ss.attr = attr::S | attr::RW | attr::DB | (u16::from(new_cpl) << attr::DPL_SHIFT);
    }
    desc::set_cs(cpu, cs_desc.segment((sel & !3) | u16::from(new_cpl)));
    cpu.gpr[Gpr::Rsp as usize] = at;
    let mut nf = flags & !(TF | NT | RF | VM);
    if gate.typ() == sys_type::INT_GATE {
        nf &= !IF;
    }
    cpu.flags.set(nf);
    cpu.rip = target;
    cpu.next_rip = target;
    Ok(())
}

/// Pushes `vals` (first pushed first) as 64-bit values below `sp`, at privilege `cpl`;
/// returns the new stack pointer. A fault leaves the registers as they were.
pub fn push_frame64(cpu: &mut CpuState, bus: &mut dyn CpuBus, sp: u64, vals: &[u64], cpl: u8) -> Result<u64> {
    let saved_cpl = cpu.cpl;
    cpu.cpl = cpl;
    let mut at = sp;
    let mut r = Ok(());
    for v in vals {
        at = at.wrapping_sub(8);
        if !mem::is_canonical(at) {
            r = Err(Exception::ss(0));
            break;
        }
        r = mem::write_linear(cpu, bus, at, Width::W64, *v);
        if r.is_err() {
            break;
        }
    }
    cpu.cpl = saved_cpl;
    r.map(|_| at)
}

/// Takes a pending NMI or external interrupt if the CPU accepts one now (between
/// instructions: NMI unless one is being handled, INTR when IF is set and no STI/MOV SS
/// shadow is active). Returns whether an event was delivered; a halted CPU wakes.
pub fn take_pending(cpu: &mut CpuState, bus: &mut dyn CpuBus) -> bool {
    if cpu.interrupt_shadow {
        return false;
    }
    if !cpu.nmi_blocked && bus.take_nmi() {
        event(cpu, bus, vector::NMI, EventKind::Nmi);
        return true;
    }
    if cpu.flags.raw_bits() & IF != 0 && bus.intr() {
        if let Some(v) = bus.inta() {
            event(cpu, bus, v, EventKind::External);
            return true;
        }
    }
    false
}

/// Delivers an external event at the current instruction boundary.
fn event(cpu: &mut CpuState, bus: &mut dyn CpuBus, vec: u8, kind: EventKind) {
    let rip = cpu.rip;
    if let Err(e) = deliver(cpu, bus, vec, None, rip, kind) {
        raise(cpu, bus, e);
    }
    cpu.halted = false;
}

/// Raises `exc` for the instruction at `cpu.rip`, escalating to a double fault and to a
/// triple fault (shutdown) by the rules of SDM vol. 3, table 6-5.
pub fn raise(cpu: &mut CpuState, bus: &mut dyn CpuBus, exc: Exception) {
    if exc == Exception::FREEZE {
        cpu.halted = true;
        return;
    }
    let rip = cpu.rip;
    let Err(second) = deliver(cpu, bus, exc.vector, exc.error_code, rip, EventKind::Exception) else {
        return;
    };
    if exc.vector == vector::DF {
        cpu.shutdown = true;
        return;
    }
    let double = (exc.is_contributory() && second.is_contributory())
        || (exc.vector == vector::PF && (second.is_contributory() || second.vector == vector::PF));
    if double || !cpu.protected() {
        // In real mode a fault while delivering through the IVT is a double fault too: the
        // IVT entry or the stack is unusable.
        let code = if cpu.protected() { Some(0) } else { None };
        if deliver(cpu, bus, vector::DF, code, rip, EventKind::Exception).is_err() {
            cpu.shutdown = true;
        }
    } else {
        raise(cpu, bus, second);
    }
}
