//! The x86 guest ISA for cranebox.
//!
//! This crate holds the architectural CPU state ([`CpuState`]), instruction decoding with
//! iced-x86 ([`decode`]), the semantics of every instruction written once against the
//! [`Emit`] abstraction ([`sem`]), and the system helpers: exception and interrupt delivery,
//! segment loads, far transfers. It knows nothing of the execution tiers, which live in the
//! `translator` crate, or of devices: it reaches the machine only through [`CpuBus`].
//!
//! Module map:
//! - `state`: registers, segment caches, control registers, MSRs.
//! - `flags`: RFLAGS with lazily computed arithmetic flags.
//! - `emit`: the emitter trait both tiers implement; `concrete`: its concrete-value half.
//! - `operand`: registers, effective addresses and memory operands in terms of `Emit`.
//! - `mem`: segmentation checks, translation, page-split accesses.
//! - `decode`: fetching and decoding guest code, one instruction or a block.
//! - `codemap`: which physical pages hold decoded code (self-modifying code detection).
//! - `desc`: segment descriptors and the checks of segment-register loads.
//! - `sem`: the instruction semantics, with the helpers for complex and sensitive ones.
//! - `interrupt`: exception/interrupt delivery and double/triple-fault escalation.
//! - `exception`: the exception type every fallible operation returns.

pub mod bus;
pub mod codemap;
pub mod concrete;
pub mod cpuid;
pub mod decode;
pub mod desc;
pub mod emit;
pub mod exception;
pub mod flags;
pub mod insn;
pub mod interrupt;
pub mod mem;
pub mod operand;
pub mod sem;
pub mod state;

pub use bus::CpuBus;
pub use concrete::Concrete;
pub use emit::Emit;
pub use exception::Exception;
pub use state::{CpuState, Gpr, SegReg, Segment, Width};
