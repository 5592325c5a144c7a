//! Segment descriptors: reading them from the GDT/LDT, and the protected-mode checks of every
//! segment-register load (SDM vol. 3, 3.4-3.5 and 5.5-5.8).

use crate::bus::CpuBus;
use crate::exception::{Exception, Result};
use crate::mem;
use crate::state::{attr, CpuState, SegReg, Segment, Width};

/// A descriptor as read from a table: the low eight bytes, and for 16-byte system
/// descriptors of long mode the high eight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    /// Bytes 0-7.
    pub lo: u64,
    /// Bytes 8-15 (long-mode system descriptors and gates), else zero.
    pub hi: u64,
}

/// System descriptor types (S = 0).
#[allow(missing_docs)]
pub mod sys_type {
    pub const TSS16_AVAIL: u8 = 1;
    pub const LDT: u8 = 2;
    pub const TSS16_BUSY: u8 = 3;
    pub const CALL_GATE16: u8 = 4;
    pub const TASK_GATE: u8 = 5;
    pub const INT_GATE16: u8 = 6;
    pub const TRAP_GATE16: u8 = 7;
    pub const TSS_AVAIL: u8 = 9;
    pub const TSS_BUSY: u8 = 11;
    pub const CALL_GATE: u8 = 12;
    pub const INT_GATE: u8 = 14;
    pub const TRAP_GATE: u8 = 15;
}

impl Descriptor {
    /// Attributes in the layout of [`Segment::attr`].
    #[inline]
    pub fn attr(&self) -> u16 {
        ((self.lo >> 40) & 0xf0ff) as u16
    }
    /// The type field (4 bits).
    #[inline]
    pub fn typ(&self) -> u8 {
        ((self.lo >> 40) & 0xf) as u8
    }
    /// A code or data descriptor (S set).
    #[inline]
    pub fn is_code_data(&self) -> bool {
        self.attr() & attr::S != 0
    }
    /// A code segment.
    #[inline]
    pub fn is_code(&self) -> bool {
        self.is_code_data() && self.attr() & attr::CODE != 0
    }
    /// The DPL.
    #[inline]
    pub fn dpl(&self) -> u8 {
        ((self.lo >> 45) & 3) as u8
    }
    /// Present.
    #[inline]
    pub fn present(&self) -> bool {
        self.attr() & attr::P != 0
    }
    /// The base address (with bits 32-63 for long-mode system descriptors).
    #[inline]
    pub fn base(&self) -> u64 {
        let b = ((self.lo >> 16) & 0xff_ffff) | ((self.lo >> 32) & 0xff00_0000);
        if self.is_code_data() {
            b
        } else {
            b | ((self.hi & 0xffff_ffff) << 32)
        }
    }
    /// The byte-granular limit.
    #[inline]
    pub fn limit(&self) -> u32 {
        let l = ((self.lo & 0xffff) | ((self.lo >> 32) & 0xf_0000)) as u32;
        if self.attr() & attr::G != 0 {
            (l << 12) | 0xfff
        } else {
            l
        }
    }
    /// The segment-register cache this descriptor loads.
    pub fn segment(&self, selector: u16) -> Segment {
        Segment { selector, base: self.base(), limit: self.limit(), attr: self.attr() }
    }
    /// A gate's target selector.
    #[inline]
    pub fn gate_selector(&self) -> u16 {
        (self.lo >> 16) as u16
    }
    /// A gate's target offset (64 bits in long mode).
    #[inline]
    pub fn gate_offset(&self) -> u64 {
        (self.lo & 0xffff) | ((self.lo >> 32) & 0xffff_0000) | ((self.hi & 0xffff_ffff) << 32)
    }
    /// A call gate's parameter count.
    #[inline]
    pub fn gate_params(&self) -> u8 {
        ((self.lo >> 32) & 0x1f) as u8
    }
    /// An interrupt gate's IST index (long mode).
    #[inline]
    pub fn gate_ist(&self) -> u8 {
        ((self.lo >> 32) & 7) as u8
    }
}

/// The error code for a selector: its index and table bit.
#[inline]
pub fn sel_code(sel: u16) -> u32 {
    u32::from(sel & 0xfffc)
}

/// Where the descriptor of `sel` lives (linear address), checked against the table limit.
/// `wide` asks for a 16-byte descriptor.
pub fn locate(cpu: &CpuState, sel: u16, wide: bool) -> Result<u64> {
    let (base, limit) = if sel & 4 != 0 {
        let l = &cpu.ldtr;
        if l.attr & attr::P == 0 || l.selector & 0xfffc == 0 {
            return Err(Exception::gp(sel_code(sel)));
        }
        (l.base, u64::from(l.limit))
    } else {
        (cpu.gdtr.base, u64::from(cpu.gdtr.limit))
    };
    let idx = u64::from(sel & !7);
    if idx + if wide { 15 } else { 7 } > limit {
        return Err(Exception::gp(sel_code(sel)));
    }
    Ok(base.wrapping_add(idx))
}

/// Reads the descriptor of `sel` (16 bytes for system descriptors in long mode).
pub fn fetch(cpu: &mut CpuState, bus: &mut dyn CpuBus, sel: u16) -> Result<Descriptor> {
    let at = locate(cpu, sel, false)?;
    let lo = mem::sys_read(cpu, bus, at, Width::W64)?;
    let d = Descriptor { lo, hi: 0 };
    if cpu.long_mode() && !d.is_code_data() && d.typ() != sys_type::TASK_GATE {
        locate(cpu, sel, true)?;
        let hi = mem::sys_read(cpu, bus, at + 8, Width::W64)?;
        return Ok(Descriptor { lo, hi });
    }
    Ok(d)
}

/// Sets the accessed bit of a code/data descriptor in its table, as a load does.
pub fn set_accessed(cpu: &mut CpuState, bus: &mut dyn CpuBus, sel: u16, d: &mut Descriptor) -> Result<()> {
    if d.lo & (1 << 40) == 0 {
        d.lo |= 1 << 40;
        let at = locate(cpu, sel, false)?;
        let b = (d.lo >> 40) & 0xff;
        mem::sys_write(cpu, bus, at + 5, Width::W8, b)?;
    }
    Ok(())
}

/// Loads DS, ES, FS, GS or SS in protected mode (not virtual-8086) with the checks of
/// MOV/POP/LxS (SDM vol. 2, MOV).
pub fn load_data_seg(cpu: &mut CpuState, bus: &mut dyn CpuBus, seg: SegReg, sel: u16) -> Result<()> {
    let rpl = (sel & 3) as u8;
    let cpl = cpu.cpl;
    if sel & 0xfffc == 0 {
        if seg == SegReg::Ss {
            // A null SS is allowed only in 64-bit mode below CPL 3, with RPL = CPL.
            if !(cpu.mode64() && cpl != 3 && rpl == cpl) {
                return Err(Exception::gp(0));
            }
            let s = &mut cpu.seg[SegReg::Ss as usize];
            s.selector = sel;
            s.attr = attr::S | attr::RW | ((u16::from(cpl)) << attr::DPL_SHIFT) | attr::DB;
            return Ok(());
        }
        let mode64 = cpu.mode64();
        let s = &mut cpu.seg[seg as usize];
        s.selector = sel;
        s.attr = 0; // unusable: any access faults (outside 64-bit mode)
        if !mode64 {
            s.base = 0;
            s.limit = 0;
        }
        return Ok(());
    }
    let mut d = fetch(cpu, bus, sel)?;
    let err = sel_code(sel);
    if seg == SegReg::Ss {
        if rpl != cpl || !d.is_code_data() || d.is_code() || d.attr() & attr::RW == 0 || d.dpl() != cpl {
            return Err(Exception::gp(err));
        }
        if !d.present() {
            return Err(Exception::ss(err));
        }
    } else {
        if !d.is_code_data() || (d.is_code() && d.attr() & attr::RW == 0) {
            return Err(Exception::gp(err));
        }
        let conforming_code = d.is_code() && d.attr() & attr::DC != 0;
        if !conforming_code && (rpl > d.dpl() || cpl > d.dpl()) {
            return Err(Exception::gp(err));
        }
        if !d.present() {
            return Err(Exception::np(err));
        }
    }
    set_accessed(cpu, bus, sel, &mut d)?;
    // In 64-bit mode too the base comes from the descriptor (32 bits); bases above 4 GiB are
    // set through the FS/GS base MSRs.
    cpu.seg[seg as usize] = d.segment(sel);
    Ok(())
}

/// Checks a code-segment descriptor as the target of a direct far JMP/CALL (not a gate) and
/// returns the segment to load into CS with RPL replaced by the CPL.
pub fn check_far_code(cpu: &mut CpuState, bus: &mut dyn CpuBus, sel: u16, d: &mut Descriptor) -> Result<Segment> {
    let err = sel_code(sel);
    let rpl = (sel & 3) as u8;
    let cpl = cpu.cpl;
    if !d.is_code() {
        return Err(Exception::gp(err));
    }
    if d.attr() & attr::DC != 0 {
        if d.dpl() > cpl {
            return Err(Exception::gp(err));
        }
    } else if rpl > cpl || d.dpl() != cpl {
        return Err(Exception::gp(err));
    }
    if !d.present() {
        return Err(Exception::np(err));
    }
    if cpu.long_mode() && d.attr() & attr::L != 0 && d.attr() & attr::DB != 0 {
        return Err(Exception::gp(err));
    }
    set_accessed(cpu, bus, sel, d)?;
    Ok(d.segment((sel & !3) | u16::from(cpl)))
}

/// Checks a new instruction pointer against the code segment it will run in: the limit
/// outside 64-bit code, canonical form inside it.
pub fn check_ip(cs: &Segment, long_mode: bool, ip: u64) -> Result<()> {
    let code64 = long_mode && cs.attr & attr::L != 0;
    let ok = if code64 { mem::is_canonical(ip) } else { ip <= u64::from(cs.limit) };
    if ok {
        Ok(())
    } else {
        Err(Exception::gp(0))
    }
}

/// Loads CS and updates the CPL from it.
pub fn set_cs(cpu: &mut CpuState, cs: Segment) {
    cpu.cpl = (cs.selector & 3) as u8;
    cpu.seg[SegReg::Cs as usize] = cs;
}

/// After a return to an outer privilege level, data segment registers the new level may not
/// use are nulled (SDM vol. 2, RET and IRET).
pub fn null_inaccessible_segs(cpu: &mut CpuState) {
    let cpl = cpu.cpl;
    for seg in [SegReg::Es, SegReg::Ds, SegReg::Fs, SegReg::Gs] {
        let s = &mut cpu.seg[seg as usize];
        let code = s.attr & attr::CODE != 0;
        let conforming = code && s.attr & attr::DC != 0;
        if s.attr & attr::P != 0 && !conforming && s.dpl() < cpl {
            s.selector = 0;
            s.attr = 0;
        }
    }
}
