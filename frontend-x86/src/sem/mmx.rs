//! MMX (issue 5): not implemented yet, so every MMX form is #UD (CPUID does not report MMX).

use crate::insn::Insn;
use crate::sem::Op;

/// The MMX instruction `i` resolves to, or None when it is not one.
pub fn resolve(_i: &Insn) -> Option<Op> {
    None
}
