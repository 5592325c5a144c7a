//! Execution tiers over the x86 semantics of `frontend-x86`.
//!
//! Today this crate holds the interpreter tier and the exec loop: it fetches and decodes the
//! instruction at CS:RIP, runs its semantics on concrete values, delivers exceptions, and
//! stops at HLT, a shutdown, or when its instruction budget runs out. The Cranelift tier, the
//! code cache and block linking (issue 4) will live here too.

pub mod interp;

pub use interp::{run, Exit};
