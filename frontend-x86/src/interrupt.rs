//! Exception and interrupt delivery (SDM vol. 3, chapter 6): through the IVT in real mode.
//! Protected- and long-mode delivery through the IDT come with the descriptor machinery.

use crate::bus::CpuBus;
use crate::exception::{vector, Exception, Result};
use crate::flags::{AC, IF, RF, TF};
use crate::mem;
use crate::state::{CpuState, Gpr, SegReg, Width};

/// Where an event comes from: it decides the return address and some privilege checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A fault or trap raised by an instruction (`return_rip` is given by the caller).
    Exception,
    /// INT n, INT3, INTO, INT1: software interrupts.
    Software,
    /// An external interrupt from the interrupt controller.
    External,
    /// A non-maskable interrupt.
    Nmi,
}

/// Delivers `vector` with CS:IP of the interrupted code at `return_rip`. On success the CPU is
/// at the handler; on failure nothing but stack memory has changed and the caller decides
/// (double fault, or a fault of the instruction that raised it).
pub fn deliver(
    cpu: &mut CpuState,
    bus: &mut dyn CpuBus,
    vec: u8,
    error_code: Option<u32>,
    return_rip: u64,
    kind: EventKind,
) -> Result<()> {
    if !cpu.protected() {
        return deliver_real(cpu, bus, vec, return_rip);
    }
    let _ = (error_code, kind);
    // Protected-mode delivery is not implemented yet; CR0.PE cannot be set (see MOV CR0), so
    // this is reached only by a machine built in protected mode by hand.
    Err(Exception::gp(0))
}

fn deliver_real(cpu: &mut CpuState, bus: &mut dyn CpuBus, vec: u8, return_rip: u64) -> Result<()> {
    let entry = u64::from(vec) * 4;
    if entry + 3 > u64::from(cpu.idtr.limit) {
        return Err(Exception::gp(0));
    }
    let ivt = cpu.idtr.base.wrapping_add(entry) & 0xffff_ffff;
    let new_ip = mem::read_linear(cpu, bus, ivt, Width::W16, mem::AccessKind::Read)?;
    let new_cs = mem::read_linear(cpu, bus, ivt + 2, Width::W16, mem::AccessKind::Read)? as u16;
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
    cpu.halted = false;
    Ok(())
}

/// Loads CS the way real and virtual-8086 mode do: base from the selector, limit and
/// attributes kept (which is what "unreal mode" relies on).
pub fn load_real_cs(cpu: &mut CpuState, sel: u16) {
    let cs = &mut cpu.seg[SegReg::Cs as usize];
    cs.selector = sel;
    cs.base = u64::from(sel) << 4;
}

/// Raises `exc` for the instruction at `cpu.rip`, escalating to a double fault and to a
/// triple fault (shutdown) by the rules of SDM vol. 3, table 6-5.
pub fn raise(cpu: &mut CpuState, bus: &mut dyn CpuBus, exc: Exception) {
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
        let df = Exception::with_code(vector::DF, 0);
        if deliver(cpu, bus, df.vector, if cpu.protected() { df.error_code } else { None }, rip, EventKind::Exception)
            .is_err()
        {
            cpu.shutdown = true;
        }
    } else {
        raise(cpu, bus, second);
    }
}
