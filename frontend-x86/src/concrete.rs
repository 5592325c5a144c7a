//! The emitter on concrete values: the interpreter tier's half of principle 1, and the context
//! every helper runs in.

use crate::bus::CpuBus;
use crate::emit::{Alu, Cmp, Cr, Emit, Helper, RegRef, VecOp};
use crate::exception::Result;
use crate::flags::FlagOp;
use crate::mem;
use crate::state::{CpuState, SegReg, Width};

/// Semantics evaluated on concrete values against one CPU and its bus.
pub struct Concrete<'a> {
    /// The CPU being run.
    pub cpu: &'a mut CpuState,
    /// The machine around it.
    pub bus: &'a mut dyn CpuBus,
}

impl std::fmt::Debug for Concrete<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Concrete").field("rip", &self.cpu.rip).finish_non_exhaustive()
    }
}

impl<'a> Concrete<'a> {
    /// An emitter over `cpu` and `bus`.
    pub fn new(cpu: &'a mut CpuState, bus: &'a mut dyn CpuBus) -> Self {
        Concrete { cpu, bus }
    }
}

impl Emit for Concrete<'_> {
    type V = u64;
    type X = u128;

    #[inline]
    fn imm(&mut self, x: u64) -> u64 {
        x
    }

    #[inline]
    fn get_reg(&mut self, r: RegRef) -> u64 {
        let full = self.cpu.gpr[r.gpr as usize];
        if r.high8 {
            (full >> 8) & 0xff
        } else {
            full & r.width.mask()
        }
    }

    #[inline]
    fn set_reg(&mut self, r: RegRef, v: u64) {
        if r.high8 {
            let slot = &mut self.cpu.gpr[r.gpr as usize];
            *slot = (*slot & !0xff00) | ((v & 0xff) << 8);
        } else {
            self.cpu.set_reg(r.gpr, r.width, v);
        }
    }

    #[inline]
    fn get_sreg(&mut self, s: SegReg) -> u64 {
        u64::from(self.cpu.seg[s as usize].selector)
    }

    #[inline]
    fn alu(&mut self, op: Alu, a: u64, b: u64, w: Width) -> u64 {
        crate::emit::eval_alu(op, a, b, w)
    }

    #[inline]
    fn sext(&mut self, a: u64, from: Width) -> u64 {
        from.sext(a)
    }

    #[inline]
    fn cmp(&mut self, c: Cmp, a: u64, b: u64) -> u64 {
        u64::from(match c {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Ult => a < b,
            Cmp::Ugt => a > b,
        })
    }

    #[inline]
    fn select(&mut self, c: u64, a: u64, b: u64) -> u64 {
        if c != 0 {
            a
        } else {
            b
        }
    }

    #[inline]
    fn set_flags(&mut self, op: FlagOp, w: Width, a: u64, b: u64, r: u64) {
        self.cpu.flags.set_lazy(op, w, a, b, r);
    }

    #[inline]
    fn cond(&mut self, cc: u8) -> u64 {
        u64::from(self.cpu.flags.cond(cc))
    }

    #[inline]
    fn carry(&mut self) -> u64 {
        u64::from(self.cpu.flags.cf())
    }

    #[inline]
    fn get_rflags(&mut self) -> u64 {
        self.cpu.flags.get()
    }

    #[inline]
    fn set_rflags(&mut self, mask: u64, v: u64) {
        self.cpu.flags.set_masked(mask, v);
    }

    #[inline]
    fn get_cr(&mut self, cr: Cr) -> u64 {
        match cr {
            Cr::Cr0 => self.cpu.cr0,
            Cr::Cr4 => self.cpu.cr4,
        }
    }

    #[inline]
    fn get_xmm(&mut self, n: usize) -> u128 {
        // n < 16 by construction (`sem::vec::xmm`); the mask keeps a slip from panicking.
        self.cpu.xmm[n & 15]
    }

    #[inline]
    fn set_xmm(&mut self, n: usize, v: u128) {
        self.cpu.xmm[n & 15] = v;
    }

    #[inline]
    fn vec(&mut self, op: VecOp, a: u128, b: u128) -> u128 {
        crate::emit::eval_vec(op, a, b)
    }

    #[inline]
    fn load_x(&mut self, seg: SegReg, ea: u64, aw: Width) -> Result<u128> {
        crate::sem::sse::load128(self, seg, ea, aw)
    }

    #[inline]
    fn store_x(&mut self, seg: SegReg, ea: u64, aw: Width, v: u128) -> Result<()> {
        crate::sem::sse::store128(self, seg, ea, aw, v)
    }

    #[inline]
    fn load(&mut self, seg: SegReg, ea: u64, w: Width) -> Result<u64> {
        mem::read(self.cpu, self.bus, seg, ea, w)
    }

    #[inline]
    fn store(&mut self, seg: SegReg, ea: u64, v: u64, w: Width) -> Result<()> {
        mem::write(self.cpu, self.bus, seg, ea, w, v)
    }

    #[inline]
    fn next_ip(&mut self) -> u64 {
        self.cpu.next_rip
    }

    #[inline]
    fn jump(&mut self, target: u64) -> Result<()> {
        if target != self.cpu.next_rip && !self.cpu.mode64() {
            let cs = &self.cpu.seg[crate::state::SegReg::Cs as usize];
            if target > u64::from(cs.limit) {
                return Err(crate::exception::Exception::gp(0));
            }
        }
        self.cpu.next_rip = target;
        Ok(())
    }

    #[inline]
    fn if_then(&mut self, c: u64, then: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        if c != 0 {
            then(self)
        } else {
            Ok(())
        }
    }

    #[inline]
    fn helper(&mut self, h: Helper, insn: &crate::insn::Insn) -> Result<()> {
        h(self, insn)
    }

    #[inline]
    fn stack_width(&self) -> Width {
        self.cpu.stack_width()
    }

    #[inline]
    fn mode64(&self) -> bool {
        self.cpu.mode64()
    }
}
