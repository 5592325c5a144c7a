//! System instructions (trap-and-emulate, design principle 2): descriptor-table registers,
//! control and debug registers, MSRs, CPUID, the TSC, SYSCALL/SYSRET, SYSENTER/SYSEXIT,
//! SWAPGS, and the selector-inspection instructions.

use iced_x86::{Code, Mnemonic, OpKind, Register};

use crate::bus::CpuBus;
use crate::concrete::Concrete;
use crate::cpuid;
use crate::desc::{self, sel_code, sys_type};
use crate::emit::Emit;
use crate::exception::{Exception, Result};
use crate::flags::{self, IF, RF, VM, ZF};
use crate::insn::Insn;
use crate::mem;
use crate::operand as op;
use crate::state::{attr, cr0, cr4, efer, CpuState, Gpr, SegReg, Segment, Width};

/// #GP(0) unless CPL is 0 (real mode counts as CPL 0; virtual-8086 mode is CPL 3).
fn require_cpl0(cpu: &CpuState) -> Result<()> {
    if cpu.protected() && (cpu.v86() || cpu.cpl != 0) {
        Err(Exception::gp(0))
    } else {
        Ok(())
    }
}

/// #UD in real and virtual-8086 mode.
fn require_protected(cpu: &CpuState) -> Result<()> {
    if !cpu.protected() || cpu.v86() {
        Err(Exception::UD)
    } else {
        Ok(())
    }
}

/// LGDT, LIDT.
pub fn lgdt_lidt(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    require_cpl0(c.cpu)?;
    if i.op_kind(0) != OpKind::Memory {
        return Err(Exception::UD);
    }
    let seg = op::mem_seg(i);
    let aw = op::addr_width(i, c.mode64());
    let ea = op::ea(c, i);
    let limit = mem::read(c.cpu, c.bus, seg, ea, Width::W16)? as u16;
    let bw = if c.mode64() { Width::W64 } else { Width::W32 };
    let mut base = mem::read(c.cpu, c.bus, seg, ea.wrapping_add(2) & aw.mask(), bw)?;
    if matches!(i.code(), Code::Lgdt_m1632_16 | Code::Lidt_m1632_16) {
        // A 16-bit operand size loads a 24-bit base.
        base &= 0xff_ffff;
    }
    if c.mode64() && !mem::is_canonical(base) {
        return Err(Exception::gp(0));
    }
    let t = if i.mnemonic() == Mnemonic::Lgdt { &mut c.cpu.gdtr } else { &mut c.cpu.idtr };
    t.base = base;
    t.limit = limit;
    Ok(())
}

/// SGDT, SIDT (unprivileged without CR4.UMIP, which this CPU does not offer).
pub fn sgdt_sidt(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    if i.op_kind(0) != OpKind::Memory {
        return Err(Exception::UD);
    }
    let t = if i.mnemonic() == Mnemonic::Sgdt { c.cpu.gdtr } else { c.cpu.idtr };
    let seg = op::mem_seg(i);
    let aw = op::addr_width(i, c.mode64());
    let ea = op::ea(c, i);
    let bw = if c.mode64() { Width::W64 } else { Width::W32 };
    let base_ea = ea.wrapping_add(2) & aw.mask();
    mem::seg_linear(c.cpu, seg, base_ea, bw.bytes(), mem::AccessKind::Write)?;
    mem::write(c.cpu, c.bus, seg, ea, Width::W16, u64::from(t.limit))?;
    mem::write(c.cpu, c.bus, seg, base_ea, bw, t.base)
}

/// LLDT.
pub fn lldt(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    require_protected(c.cpu)?;
    require_cpl0(c.cpu)?;
    let sel = op::read(c, i, 0, Width::W16)? as u16;
    if sel & 0xfffc == 0 {
        c.cpu.ldtr = Segment { selector: sel, base: 0, limit: 0, attr: 0 };
        return Ok(());
    }
    if sel & 4 != 0 {
        return Err(Exception::gp(sel_code(sel)));
    }
    let d = desc::fetch(c.cpu, c.bus, sel)?;
    if d.is_code_data() || d.typ() != sys_type::LDT {
        return Err(Exception::gp(sel_code(sel)));
    }
    if !d.present() {
        return Err(Exception::np(sel_code(sel)));
    }
    if c.cpu.long_mode() && !mem::is_canonical(d.base()) {
        return Err(Exception::gp(sel_code(sel)));
    }
    c.cpu.ldtr = d.segment(sel);
    Ok(())
}

/// LTR: loads an available TSS and marks it busy.
pub fn ltr(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    require_protected(c.cpu)?;
    require_cpl0(c.cpu)?;
    let sel = op::read(c, i, 0, Width::W16)? as u16;
    if sel & 0xfffc == 0 || sel & 4 != 0 {
        return Err(Exception::gp(sel_code(sel)));
    }
    let d = desc::fetch(c.cpu, c.bus, sel)?;
    let ok = !d.is_code_data()
        && (d.typ() == sys_type::TSS_AVAIL || (!c.cpu.long_mode() && d.typ() == sys_type::TSS16_AVAIL));
    if !ok {
        return Err(Exception::gp(sel_code(sel)));
    }
    if !d.present() {
        return Err(Exception::np(sel_code(sel)));
    }
    let at = desc::locate(c.cpu, sel, false)?;
    let busy = ((d.lo >> 40) & 0xff) | 2;
    mem::sys_write(c.cpu, c.bus, at + 5, Width::W8, busy)?;
    let mut seg = d.segment(sel);
    seg.attr |= 2;
    c.cpu.tr = seg;
    Ok(())
}

/// SLDT, STR: the selector, zero-extended into a register or 16 bits to memory.
pub fn sldt_str(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    require_protected(c.cpu)?;
    let sel = if i.mnemonic() == Mnemonic::Sldt { c.cpu.ldtr.selector } else { c.cpu.tr.selector };
    let w = if i.op_kind(0) == OpKind::Memory { Width::W16 } else { op::op_width(i, 0) };
    op::write(c, i, 0, w, u64::from(sel))
}

/// SMSW: the low bits of CR0 (all of it to a wide register).
pub fn smsw(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    let w = if i.op_kind(0) == OpKind::Memory { Width::W16 } else { op::op_width(i, 0) };
    op::write(c, i, 0, w, c.cpu.cr0)
}

/// LMSW: PE, MP, EM, TS from the operand; PE can be set but not cleared.
pub fn lmsw(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    require_cpl0(c.cpu)?;
    let v = op::read(c, i, 0, Width::W16)?;
    let keep_pe = c.cpu.cr0 & cr0::PE;
    let new = (c.cpu.cr0 & !0xe) | (v & 0xf) | keep_pe;
    write_cr0(c.cpu, c.bus, new)
}

/// CLTS.
pub fn clts(c: &mut Concrete<'_>, _i: &Insn) -> Result<()> {
    require_cpl0(c.cpu)?;
    c.cpu.cr0 &= !cr0::TS;
    Ok(())
}

/// Checks a CR0 value and works out the EFER.LMA it implies: entering or leaving long mode as
/// EFER.LME and CR4.PAE direct (SDM vol. 3, 9.8.5). Returns the new (CR0, EFER).
fn check_cr0(cpu: &CpuState, v: u64) -> Result<(u64, u64)> {
    if v >> 32 != 0 {
        return Err(Exception::gp(0));
    }
    let v = v | cr0::ET;
    if v & cr0::PG != 0 && v & cr0::PE == 0 {
        return Err(Exception::gp(0));
    }
    if v & cr0::NW != 0 && v & cr0::CD == 0 {
        return Err(Exception::gp(0));
    }
    let mut efer = cpu.efer;
    let was_pg = cpu.cr0 & cr0::PG != 0;
    let pg = v & cr0::PG != 0;
    if pg && !was_pg && efer & efer::LME != 0 {
        if cpu.cr4 & cr4::PAE == 0 {
            return Err(Exception::gp(0));
        }
        efer |= efer::LMA;
    }
    if !pg && was_pg && cpu.long_mode() {
        if cpu.mode64() {
            return Err(Exception::gp(0));
        }
        efer &= !efer::LMA;
    }
    Ok((v, efer))
}

/// Commits new paging controls after their own checks: loads the PAE PDPTEs when legacy PAE
/// paging needs them (#GP(0), and nothing changed, if they are invalid), tells the TLB what
/// changed, and applies a CR3 write (with bit 63 for PCIDs) if there was one.
pub fn commit_paging(
    cpu: &mut CpuState,
    bus: &mut dyn CpuBus,
    new_cr0: u64,
    new_cr4: u64,
    new_efer: u64,
    cr3_write: Option<u64>,
) -> Result<()> {
    let new_cr3 = cr3_write.map_or(cpu.cr3, |v| v & !softmmu::CR3_NO_FLUSH);
    let pae_legacy = |cr0: u64, cr4: u64, efer: u64| cr0 & cr0::PG != 0 && cr4 & cr4::PAE != 0 && efer & efer::LMA == 0;
    let was = pae_legacy(cpu.cr0, cpu.cr4, cpu.efer);
    let now = pae_legacy(new_cr0, new_cr4, new_efer);
    let paging_bits = (cpu.cr0 ^ new_cr0) & (cr0::PG | cr0::CD | cr0::NW) != 0
        || (cpu.cr4 ^ new_cr4) & (cr4::PAE | cr4::PSE | cr4::PGE | cr4::SMEP) != 0;
    let pdptes = if now && (!was || cr3_write.is_some() || paging_bits) {
        softmmu::paging::load_pdptes(bus, new_cr3, softmmu::paging::DEFAULT_MAXPHYADDR).map_err(|_| Exception::gp(0))?
    } else {
        cpu.pdptes
    };
    let old = cpu.paging_control();
    cpu.cr0 = new_cr0;
    cpu.cr4 = new_cr4;
    cpu.efer = new_efer;
    cpu.cr3 = new_cr3;
    cpu.pdptes = pdptes;
    let new = cpu.paging_control();
    if let Some(v) = cr3_write {
        cpu.tlb.0.write_cr3(v, new_cr4 & cr4::PCIDE != 0);
    }
    cpu.tlb.0.control_changed(&old, &new);
    Ok(())
}

/// Writes CR0 with the architectural checks and their effects on paging and long mode.
pub fn write_cr0(cpu: &mut CpuState, bus: &mut dyn CpuBus, v: u64) -> Result<()> {
    let (cr0, efer) = check_cr0(cpu, v)?;
    let cr4 = cpu.cr4;
    commit_paging(cpu, bus, cr0, cr4, efer, None)
}

/// MOV to or from CR0, CR2, CR3, CR4, CR8.
pub fn mov_cr(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    require_cpl0(c.cpu)?;
    let w = if c.mode64() { Width::W64 } else { Width::W32 };
    let to_cr = i.op_kind(0) == OpKind::Register && i.op_register(0).is_cr();
    if to_cr {
        let v = op::read(c, i, 1, w)?;
        let cpu = &mut *c.cpu;
        let (cr0, cr4, efer) = (cpu.cr0, cpu.cr4, cpu.efer);
        match i.op_register(0) {
            Register::CR0 => write_cr0(cpu, c.bus, v)?,
            Register::CR2 => cpu.cr2 = v,
            Register::CR3 => {
                let maxphy = (1u64 << softmmu::paging::DEFAULT_MAXPHYADDR) - 1;
                let pcide = cr4 & cr4::PCIDE != 0;
                let reserved = if pcide { !maxphy & !softmmu::CR3_NO_FLUSH } else { !maxphy };
                if cpu.long_mode() && v & reserved != 0 {
                    return Err(Exception::gp(0));
                }
                commit_paging(cpu, c.bus, cr0, cr4, efer, Some(v))?;
            }
            Register::CR4 => {
                if v & !cr4::SUPPORTED != 0 || (cpu.long_mode() && v & cr4::PAE == 0) {
                    return Err(Exception::gp(0));
                }
                // PCIDs need long mode and PCID 0 in CR3 when they are turned on.
                if v & cr4::PCIDE != 0 && cr4 & cr4::PCIDE == 0 && (!cpu.long_mode() || cpu.cr3 & 0xfff != 0) {
                    return Err(Exception::gp(0));
                }
                commit_paging(cpu, c.bus, cr0, v, efer, None)?;
            }
            Register::CR8 => {
                if v & !0xf != 0 {
                    return Err(Exception::gp(0));
                }
                cpu.cr8 = v;
                c.bus.set_tpr((v << 4) as u8);
            }
            _ => return Err(Exception::UD),
        }
        Ok(())
    } else {
        let v = match i.op_register(1) {
            Register::CR0 => c.cpu.cr0,
            Register::CR2 => c.cpu.cr2,
            Register::CR3 => c.cpu.cr3,
            Register::CR4 => c.cpu.cr4,
            Register::CR8 => c.bus.tpr().map_or(c.cpu.cr8, |t| u64::from(t >> 4)),
            _ => return Err(Exception::UD),
        };
        op::write(c, i, 0, w, v)
    }
}

/// MOV to or from DR0-DR7 (DR4/DR5 alias DR6/DR7 unless CR4.DE, which makes them #UD).
pub fn mov_dr(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    require_cpl0(c.cpu)?;
    let w = if c.mode64() { Width::W64 } else { Width::W32 };
    let to_dr = i.op_register(0).is_dr();
    let r = if to_dr { i.op_register(0) } else { i.op_register(1) };
    let mut n = r.number();
    if n == 4 || n == 5 {
        if c.cpu.cr4 & cr4::DE != 0 {
            return Err(Exception::UD);
        }
        n += 2;
    }
    if n > 7 {
        return Err(Exception::UD);
    }
    if to_dr {
        let v = op::read(c, i, 1, w)?;
        if n >= 6 && v >> 32 != 0 {
            return Err(Exception::gp(0));
        }
        c.cpu.dr[n] = match n {
            6 => v | 0xffff_0ff0,
            7 => (v | 0x400) & !0x0000_d000,
            _ => v,
        };
        Ok(())
    } else {
        let v = c.cpu.dr[n];
        op::write(c, i, 0, w, v)
    }
}

/// MSR numbers this CPU implements.
#[allow(missing_docs)]
pub mod msr {
    pub const TSC: u32 = 0x10;
    pub const TSC_DEADLINE: u32 = 0x6e0;
    pub const APIC_BASE: u32 = 0x1b;
    pub const SYSENTER_CS: u32 = 0x174;
    pub const SYSENTER_ESP: u32 = 0x175;
    pub const SYSENTER_EIP: u32 = 0x176;
    pub const MISC_ENABLE: u32 = 0x1a0;
    /// IA32_BIOS_SIGN_ID: the loaded microcode revision (bits 63:32), read after writing 0
    /// and executing CPUID. No microcode: revision 0.
    pub const BIOS_SIGN_ID: u32 = 0x8b;
    /// IA32_PLATFORM_ID (read-only): platform bits 52:50 are 0.
    pub const PLATFORM_ID: u32 = 0x17;
    pub const EFER: u32 = 0xc000_0080;
    pub const STAR: u32 = 0xc000_0081;
    pub const LSTAR: u32 = 0xc000_0082;
    pub const CSTAR: u32 = 0xc000_0083;
    pub const SFMASK: u32 = 0xc000_0084;
    pub const FS_BASE: u32 = 0xc000_0100;
    pub const GS_BASE: u32 = 0xc000_0101;
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
    /// IA32_MTRRCAP (read-only).
    pub const MTRRCAP: u32 = 0xfe;
    /// IA32_MTRR_PHYSBASE0; PHYSMASKn and the other pairs follow.
    pub const MTRR_PHYS_BASE0: u32 = 0x200;
    pub const MTRR_PHYS_MASK7: u32 = 0x20f;
    pub const MTRR_FIX64K_00000: u32 = 0x250;
    pub const MTRR_FIX16K_80000: u32 = 0x258;
    pub const MTRR_FIX16K_A0000: u32 = 0x259;
    pub const MTRR_FIX4K_C0000: u32 = 0x268;
    pub const MTRR_FIX4K_F8000: u32 = 0x26f;
    pub const PAT: u32 = 0x277;
    pub const MTRR_DEF_TYPE: u32 = 0x2ff;
}

/// IA32_MTRRCAP: eight variable ranges, the fixed ranges, write-combining; no SMRR. Memory
/// types change nothing in an emulator, so the MTRRs are registers an OS reads back (with
/// the SDM's reserved-bit and type checks), as firmware programmed them.
pub const MTRRCAP: u64 = 8 | (1 << 8) | (1 << 10);

/// The index of a fixed-range MTRR in `Msrs::mtrr_fixed`.
fn mtrr_fixed_index(n: u32) -> Option<usize> {
    match n {
        msr::MTRR_FIX64K_00000 => Some(0),
        msr::MTRR_FIX16K_80000 => Some(1),
        msr::MTRR_FIX16K_A0000 => Some(2),
        msr::MTRR_FIX4K_C0000..=msr::MTRR_FIX4K_F8000 => Some(3 + (n - msr::MTRR_FIX4K_C0000) as usize),
        _ => None,
    }
}

/// Whether `t` is a memory type an MTRR may hold (UC, WC, WT, WP, WB), or with `pat` one
/// the PAT may hold (also UC-).
fn valid_memory_type(t: u64, pat: bool) -> bool {
    matches!(t, 0 | 1 | 4 | 5 | 6) || (pat && t == 7)
}

/// IA32_MISC_ENABLE at power-on: fast string operations enabled (bit 0, as firmware leaves
/// it; REP MOVS/STOS run the same either way here), branch trace storage (bit 11) and PEBS
/// (bit 12) unavailable.
pub const MISC_ENABLE_RESET: u64 = 1 | (1 << 11) | (1 << 12);
/// The bits of IA32_MISC_ENABLE software cannot change here.
const MISC_ENABLE_READ_ONLY: u64 = (1 << 11) | (1 << 12);

/// The TSC as the guest sees it: virtual nanoseconds (a 1 GHz TSC) plus the offset a WRMSR
/// to it set.
pub fn read_tsc(c: &mut Concrete<'_>) -> u64 {
    c.bus.now_ns().wrapping_add(c.cpu.msr.tsc_offset)
}

/// Reads MSR `n`; `None` for an MSR this CPU does not have.
pub fn read_msr(c: &mut Concrete<'_>, n: u32) -> Option<u64> {
    let m = &c.cpu.msr;
    Some(match n {
        msr::TSC => return Some(read_tsc(c)),
        msr::APIC_BASE => m.apic_base,
        msr::TSC_DEADLINE => {
            let off = m.tsc_offset;
            return c.bus.tsc_deadline_ns().map(|ns| if ns == 0 { 0 } else { ns.wrapping_add(off) });
        }
        msr::SYSENTER_CS => m.sysenter_cs,
        msr::SYSENTER_ESP => m.sysenter_esp,
        msr::SYSENTER_EIP => m.sysenter_eip,
        msr::MISC_ENABLE => m.misc_enable,
        msr::BIOS_SIGN_ID | msr::PLATFORM_ID => 0,
        msr::EFER => c.cpu.efer,
        msr::STAR => m.star,
        msr::LSTAR => m.lstar,
        msr::CSTAR => m.cstar,
        msr::SFMASK => m.sfmask,
        msr::FS_BASE => c.cpu.seg[SegReg::Fs as usize].base,
        msr::GS_BASE => c.cpu.seg[SegReg::Gs as usize].base,
        msr::KERNEL_GS_BASE => m.kernel_gs_base,
        msr::MTRRCAP => MTRRCAP,
        msr::MTRR_DEF_TYPE => m.mtrr_def_type,
        msr::PAT => m.pat,
        msr::MTRR_PHYS_BASE0..=msr::MTRR_PHYS_MASK7 => m.mtrr_var[(n - msr::MTRR_PHYS_BASE0) as usize],
        _ => m.mtrr_fixed[mtrr_fixed_index(n)?],
    })
}

/// Writes MSR `n`; `Err(#GP(0))` for an MSR this CPU does not have or a reserved value.
pub fn write_msr(c: &mut Concrete<'_>, n: u32, v: u64) -> Result<()> {
    let gp = Err(Exception::gp(0));
    let canonical = |v: u64| if mem::is_canonical(v) { Ok(v) } else { Err(Exception::gp(0)) };
    match n {
        msr::TSC => {
            let now = c.bus.now_ns();
            c.cpu.msr.tsc_offset = v.wrapping_sub(now);
        }
        msr::APIC_BASE => {
            // Reserved bits: above MAXPHYADDR, 0-7, 9 and 10 (no x2APIC).
            if v & !(0x000f_ffff_ffff_f000 | (1 << 11) | (1 << 8)) != 0 {
                return gp;
            }
            c.cpu.msr.apic_base = v;
            c.bus.set_apic_base(v);
        }
        msr::TSC_DEADLINE => {
            if c.bus.tsc_deadline_ns().is_none() {
                return gp;
            }
            // The deadline is a TSC value; the APIC timer counts virtual time.
            let now = c.bus.now_ns();
            let tsc_now = now.wrapping_add(c.cpu.msr.tsc_offset);
            let at = if v == 0 {
                0
            } else if v <= tsc_now {
                now.max(1)
            } else {
                now.saturating_add(v - tsc_now)
            };
            c.bus.set_tsc_deadline_ns(at);
        }
        msr::SYSENTER_CS => c.cpu.msr.sysenter_cs = v & 0xffff,
        msr::SYSENTER_ESP => c.cpu.msr.sysenter_esp = canonical(v)?,
        msr::SYSENTER_EIP => c.cpu.msr.sysenter_eip = canonical(v)?,
        msr::MISC_ENABLE => {
            c.cpu.msr.misc_enable = (v & !MISC_ENABLE_READ_ONLY) | (MISC_ENABLE_RESET & MISC_ENABLE_READ_ONLY)
        }
        // Writing it is how software asks for the revision; there is nothing to update.
        msr::BIOS_SIGN_ID => {}
        msr::EFER => {
            let allowed = efer::SCE | efer::LME | efer::LMA | efer::NXE;
            if v & !allowed != 0 {
                return gp;
            }
            if (v ^ c.cpu.efer) & efer::LME != 0 && c.cpu.cr0 & cr0::PG != 0 {
                return gp;
            }
            // LMA is read-only: it follows CR0.PG and LME.
            let new = (v & !efer::LMA) | (c.cpu.efer & efer::LMA);
            let (cr0, cr4) = (c.cpu.cr0, c.cpu.cr4);
            commit_paging(c.cpu, c.bus, cr0, cr4, new, None)?;
        }
        msr::STAR => c.cpu.msr.star = v,
        msr::LSTAR => c.cpu.msr.lstar = canonical(v)?,
        msr::CSTAR => c.cpu.msr.cstar = canonical(v)?,
        msr::SFMASK => c.cpu.msr.sfmask = v & 0xffff_ffff,
        msr::FS_BASE => c.cpu.seg[SegReg::Fs as usize].base = canonical(v)?,
        msr::GS_BASE => c.cpu.seg[SegReg::Gs as usize].base = canonical(v)?,
        msr::KERNEL_GS_BASE => c.cpu.msr.kernel_gs_base = canonical(v)?,
        msr::MTRR_DEF_TYPE => {
            // Type (7:0), FE (10), E (11).
            if v & !0xcff != 0 || !valid_memory_type(v & 0xff, false) {
                return gp;
            }
            c.cpu.msr.mtrr_def_type = v;
        }
        msr::PAT => {
            if (0..8).any(|k| !valid_memory_type((v >> (8 * k)) & 0xff, true)) {
                return gp;
            }
            c.cpu.msr.pat = v;
        }
        msr::MTRR_PHYS_BASE0..=msr::MTRR_PHYS_MASK7 => {
            let k = (n - msr::MTRR_PHYS_BASE0) as usize;
            let above = !((1u64 << softmmu::paging::DEFAULT_MAXPHYADDR) - 1);
            // PHYSBASE: type (7:0) and the base; PHYSMASK: V (11) and the mask.
            let base = k.is_multiple_of(2);
            let reserved = if base { above | 0xf00 } else { above | 0x7ff };
            if v & reserved != 0 || (base && !valid_memory_type(v & 0xff, false)) {
                return gp;
            }
            c.cpu.msr.mtrr_var[k] = v;
        }
        _ => match mtrr_fixed_index(n) {
            Some(k) if (0..8).all(|b| valid_memory_type((v >> (8 * b)) & 0xff, false)) => c.cpu.msr.mtrr_fixed[k] = v,
            Some(_) => return gp,
            None => {
                log_unknown_msr(n);
                return gp;
            }
        },
    }
    Ok(())
}

fn log_unknown_msr(n: u32) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static LOGGED: AtomicU32 = AtomicU32::new(0);
    if LOGGED.fetch_add(1, Ordering::Relaxed) < 16 {
        log::warn!("the guest accessed MSR {n:#x}, which this CPU does not have (#GP)");
    }
}

/// RDMSR, WRMSR.
pub fn rdmsr_wrmsr(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    require_cpl0(c.cpu)?;
    let n = c.cpu.reg(Gpr::Rcx, Width::W32) as u32;
    if i.mnemonic() == Mnemonic::Rdmsr {
        let Some(v) = read_msr(c, n) else {
            log_unknown_msr(n);
            return Err(Exception::gp(0));
        };
        c.cpu.set_reg(Gpr::Rax, Width::W32, v & 0xffff_ffff);
        c.cpu.set_reg(Gpr::Rdx, Width::W32, v >> 32);
        Ok(())
    } else {
        let v = (c.cpu.reg(Gpr::Rdx, Width::W32) << 32) | c.cpu.reg(Gpr::Rax, Width::W32);
        write_msr(c, n, v)
    }
}

/// CPUID.
pub fn cpuid_insn(c: &mut Concrete<'_>, _i: &Insn) -> Result<()> {
    let leaf = c.cpu.reg(Gpr::Rax, Width::W32) as u32;
    let sub = c.cpu.reg(Gpr::Rcx, Width::W32) as u32;
    let (a, b, mut cx, d) = cpuid::cpuid(leaf, sub);
    if leaf == 1 && c.cpu.cr4 & cr4::OSXSAVE != 0 {
        cx |= cpuid::ecx1::OSXSAVE;
    }
    c.cpu.set_reg(Gpr::Rax, Width::W32, u64::from(a));
    c.cpu.set_reg(Gpr::Rbx, Width::W32, u64::from(b));
    c.cpu.set_reg(Gpr::Rcx, Width::W32, u64::from(cx));
    c.cpu.set_reg(Gpr::Rdx, Width::W32, u64::from(d));
    Ok(())
}

/// RDTSC: #GP(0) above CPL 0 when CR4.TSD is set.
pub fn rdtsc(c: &mut Concrete<'_>, _i: &Insn) -> Result<()> {
    if c.cpu.cr4 & cr4::TSD != 0 && c.cpu.protected() && (c.cpu.cpl != 0 || c.cpu.v86()) {
        return Err(Exception::gp(0));
    }
    let t = read_tsc(c);
    c.cpu.set_reg(Gpr::Rax, Width::W32, t & 0xffff_ffff);
    c.cpu.set_reg(Gpr::Rdx, Width::W32, t >> 32);
    Ok(())
}

/// INVLPG: drops the TLB's translation of the operand's linear address (no memory access, no
/// fault for a bad address).
pub fn invlpg(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    require_cpl0(c.cpu)?;
    if i.op_kind(0) != OpKind::Memory {
        return Err(Exception::UD);
    }
    let ea = op::ea(c, i);
    let seg = op::mem_seg(i);
    let base = if c.cpu.mode64() && !matches!(seg, SegReg::Fs | SegReg::Gs) { 0 } else { c.cpu.seg[seg as usize].base };
    let lin = base.wrapping_add(ea);
    let lin = if c.cpu.mode64() { lin } else { lin & 0xffff_ffff };
    c.cpu.tlb.0.invlpg(lin);
    Ok(())
}

/// INVPCID type, [m128]: drops TLB entries by PCID and address (SDM vol. 2, INVPCID).
pub fn invpcid(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    if c.cpu.protected() && (c.cpu.cpl != 0 || c.cpu.v86()) {
        return Err(Exception::gp(0));
    }
    if !c.cpu.protected() {
        return Err(Exception::UD);
    }
    let w = if c.mode64() { Width::W64 } else { Width::W32 };
    let typ = op::read(c, i, 0, w)?;
    if i.op_kind(1) != OpKind::Memory {
        return Err(Exception::UD);
    }
    let seg = op::mem_seg(i);
    let aw = op::addr_width(i, c.mode64());
    let ea = op::ea(c, i);
    let pcid_field = mem::read(c.cpu, c.bus, seg, ea, Width::W64)?;
    let lin = mem::read(c.cpu, c.bus, seg, ea.wrapping_add(8) & aw.mask(), Width::W64)?;
    let kind = softmmu::InvpcidKind::from_type(typ).ok_or(Exception::gp(0))?;
    if pcid_field > 0xfff {
        return Err(Exception::gp(0));
    }
    let pcid = pcid_field as u16;
    let pcide = c.cpu.cr4 & cr4::PCIDE != 0;
    match kind {
        softmmu::InvpcidKind::Address if !mem::is_canonical(lin) => return Err(Exception::gp(0)),
        softmmu::InvpcidKind::Address | softmmu::InvpcidKind::SingleContext if !pcide && pcid != 0 => {
            return Err(Exception::gp(0))
        }
        _ => {}
    }
    c.cpu.tlb.0.invpcid(kind, pcid, lin);
    Ok(())
}

/// WBINVD and INVD: there are no caches to write back or drop; the privilege check stands.
pub fn wbinvd(c: &mut Concrete<'_>, _i: &Insn) -> Result<()> {
    require_cpl0(c.cpu)
}

/// STAC and CLAC: set or clear EFLAGS.AC (the SMAP override) at CPL 0.
pub fn stac_clac(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    if c.cpu.protected() && (c.cpu.cpl != 0 || c.cpu.v86()) {
        return Err(Exception::UD);
    }
    c.cpu.flags.set_flag(flags::AC, i.mnemonic() == Mnemonic::Stac);
    Ok(())
}

/// A flat 4 GiB segment as SYSCALL/SYSENTER and their returns load.
fn flat(selector: u16, code: bool, dpl: u8, long: bool) -> Segment {
    let mut a = attr::P | attr::S | attr::G | attr::ACCESSED | attr::RW | (u16::from(dpl) << attr::DPL_SHIFT);
    if code {
        a |= attr::CODE;
        a |= if long { attr::L } else { attr::DB };
    } else {
        a |= attr::DB;
    }
    Segment { selector, base: 0, limit: 0xffff_ffff, attr: a }
}

/// SYSCALL (64-bit mode with EFER.SCE, as on Intel CPUs).
pub fn syscall(c: &mut Concrete<'_>, _i: &Insn) -> Result<()> {
    if !c.cpu.mode64() || c.cpu.efer & efer::SCE == 0 {
        return Err(Exception::UD);
    }
    let cpu = &mut *c.cpu;
    let sel = ((cpu.msr.star >> 32) & 0xfffc) as u16;
    let rflags = cpu.flags.get();
    cpu.gpr[Gpr::Rcx as usize] = cpu.next_rip;
    cpu.gpr[Gpr::R11 as usize] = rflags & !RF;
    cpu.flags.set(rflags & !(cpu.msr.sfmask | RF));
    desc::set_cs(cpu, flat(sel, true, 0, true));
    cpu.seg[SegReg::Ss as usize] = flat(sel + 8, false, 0, false);
    cpu.next_rip = cpu.msr.lstar;
    Ok(())
}

/// SYSRET to 64-bit (REX.W) or compatibility-mode user code.
pub fn sysret(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    if !c.cpu.mode64() || c.cpu.efer & efer::SCE == 0 {
        return Err(Exception::UD);
    }
    if c.cpu.cpl != 0 {
        return Err(Exception::gp(0));
    }
    let cpu = &mut *c.cpu;
    let to64 = i.code() == Code::Sysretq;
    let rcx = cpu.gpr[Gpr::Rcx as usize];
    if to64 && !mem::is_canonical(rcx) {
        return Err(Exception::gp(0));
    }
    let base = ((cpu.msr.star >> 48) & 0xffff) as u16;
    let cs = if to64 { base.wrapping_add(16) } else { base } | 3;
    cpu.flags.set((cpu.gpr[Gpr::R11 as usize] & 0x3c_7fd7) | flags::FIXED1);
    desc::set_cs(cpu, flat(cs, true, 3, to64));
    cpu.seg[SegReg::Ss as usize] = flat(base.wrapping_add(8) | 3, false, 3, false);
    cpu.next_rip = if to64 { rcx } else { rcx & 0xffff_ffff };
    Ok(())
}

/// SYSENTER: to CPL 0 flat segments from SYSENTER_CS.
pub fn sysenter(c: &mut Concrete<'_>, _i: &Insn) -> Result<()> {
    let cpu = &mut *c.cpu;
    if !cpu.protected() || cpu.msr.sysenter_cs & 0xfffc == 0 {
        return Err(Exception::gp(0));
    }
    let sel = (cpu.msr.sysenter_cs & 0xfffc) as u16;
    let long = cpu.long_mode();
    let f = cpu.flags.get();
    cpu.flags.set(f & !(VM | IF | RF));
    desc::set_cs(cpu, flat(sel, true, 0, long));
    cpu.seg[SegReg::Ss as usize] = flat(sel + 8, false, 0, false);
    cpu.gpr[Gpr::Rsp as usize] = if long { cpu.msr.sysenter_esp } else { cpu.msr.sysenter_esp & 0xffff_ffff };
    cpu.next_rip = if long { cpu.msr.sysenter_eip } else { cpu.msr.sysenter_eip & 0xffff_ffff };
    Ok(())
}

/// SYSEXIT: back to CPL 3 (64-bit with REX.W).
pub fn sysexit(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    let cpu = &mut *c.cpu;
    if !cpu.protected() || cpu.v86() || cpu.cpl != 0 || cpu.msr.sysenter_cs & 0xfffc == 0 {
        return Err(Exception::gp(0));
    }
    let to64 = i.code() == Code::Sysexitq;
    let base = (cpu.msr.sysenter_cs & 0xfffc) as u16;
    let (cs, ss) = if to64 { (base + 32, base + 40) } else { (base + 16, base + 24) };
    let rdx = cpu.gpr[Gpr::Rdx as usize];
    let rcx = cpu.gpr[Gpr::Rcx as usize];
    if to64 && (!mem::is_canonical(rdx) || !mem::is_canonical(rcx)) {
        return Err(Exception::gp(0));
    }
    desc::set_cs(cpu, flat(cs | 3, true, 3, to64));
    cpu.seg[SegReg::Ss as usize] = flat(ss | 3, false, 3, false);
    cpu.gpr[Gpr::Rsp as usize] = if to64 { rcx } else { rcx & 0xffff_ffff };
    cpu.next_rip = if to64 { rdx } else { rdx & 0xffff_ffff };
    Ok(())
}

/// SWAPGS (64-bit mode, CPL 0).
pub fn swapgs(c: &mut Concrete<'_>, _i: &Insn) -> Result<()> {
    if !c.cpu.mode64() {
        return Err(Exception::UD);
    }
    if c.cpu.cpl != 0 {
        return Err(Exception::gp(0));
    }
    let gs = &mut c.cpu.seg[SegReg::Gs as usize].base;
    std::mem::swap(gs, &mut c.cpu.msr.kernel_gs_base);
    Ok(())
}

/// Whether the descriptor of `sel` is visible to LAR/LSL/VERR/VERW at the current CPL.
fn inspect(c: &mut Concrete<'_>, sel: u16) -> Option<desc::Descriptor> {
    if sel & 0xfffc == 0 {
        return None;
    }
    let d = desc::fetch(c.cpu, c.bus, sel).ok()?;
    let conforming_code = d.is_code() && d.attr() & attr::DC != 0;
    let rpl = (sel & 3) as u8;
    if !conforming_code && (d.dpl() < c.cpu.cpl || d.dpl() < rpl) {
        return None;
    }
    Some(d)
}

/// LAR, LSL, VERR, VERW: ZF tells whether the selector passed.
pub fn lar_lsl_verr_verw(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    require_protected(c.cpu)?;
    let m = i.mnemonic();
    let src = if matches!(m, Mnemonic::Lar | Mnemonic::Lsl) { 1 } else { 0 };
    let sel = op::read(c, i, src, Width::W16)? as u16;
    let long = c.cpu.long_mode();
    let d = inspect(c, sel).filter(|d| {
        if d.is_code_data() {
            return match m {
                Mnemonic::Verr => !d.is_code() || d.attr() & attr::RW != 0,
                Mnemonic::Verw => !d.is_code() && d.attr() & attr::RW != 0,
                _ => true,
            };
        }
        let t = d.typ();
        match m {
            Mnemonic::Lar if long => {
                matches!(t, sys_type::LDT | sys_type::TSS_AVAIL | sys_type::TSS_BUSY | sys_type::CALL_GATE)
            }
            Mnemonic::Lar => {
                t != 0
                    && t != 8
                    && t != 10
                    && t != 13
                    && t != sys_type::INT_GATE
                    && t != sys_type::TRAP_GATE
                    && t != sys_type::INT_GATE16
                    && t != sys_type::TRAP_GATE16
            }
            Mnemonic::Lsl if long => matches!(t, sys_type::LDT | sys_type::TSS_AVAIL | sys_type::TSS_BUSY),
            Mnemonic::Lsl => matches!(t, 1 | 2 | 3 | 9 | 11),
            _ => false,
        }
    });
    let Some(d) = d else {
        c.cpu.flags.set_flag(ZF, false);
        return Ok(());
    };
    match m {
        Mnemonic::Lar => {
            let w = op::op_width(i, 0);
            op::write(c, i, 0, w, d.lo >> 32 & 0x00f0_ff00)?;
        }
        Mnemonic::Lsl => {
            let w = op::op_width(i, 0);
            op::write(c, i, 0, w, u64::from(d.limit()))?;
        }
        _ => {}
    }
    c.cpu.flags.set_flag(ZF, true);
    Ok(())
}

/// ARPL (outside 64-bit mode, where the opcode is MOVSXD): raise the destination RPL.
pub fn arpl(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    require_protected(c.cpu)?;
    let dst = op::loc(c, i, 0)?;
    let d = op::load_loc(c, dst, Width::W16)?;
    let s = op::read(c, i, 1, Width::W16)?;
    if d & 3 < s & 3 {
        op::store_loc(c, dst, Width::W16, (d & !3) | (s & 3))?;
        c.cpu.flags.set_flag(ZF, true);
    } else {
        c.cpu.flags.set_flag(ZF, false);
    }
    Ok(())
}
