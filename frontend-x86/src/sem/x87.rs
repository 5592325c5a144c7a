//! The x87 floating-point unit (issue 5): not implemented yet, so every x87 instruction is #UD
//! (CPUID does not report an FPU).

use crate::insn::Insn;
use crate::sem::Op;

/// The x87 instruction `i` resolves to, or None when it is not one.
pub fn resolve(_i: &Insn) -> Option<Op> {
    None
}
