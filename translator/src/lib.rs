//! Execution tiers over the x86 semantics of `frontend-x86`.
//!
//! Today this crate holds the interpreter tier and the exec loop (`interp`): it runs decoded
//! blocks from a cache (`cache`) that drops blocks whose pages are written, executes each
//! instruction's semantics on concrete values, delivers exceptions, and stops at HLT, a
//! shutdown, or when its instruction budget runs out. The Cranelift tier and block linking
//! (issue 4) will live here too.

pub mod cache;
pub mod interp;
pub mod jit;

pub use interp::{run, Exit, Interpreter, Stats};
