//! What the host-oracle tests share: a test machine in long mode with code at 0x8000, and the
//! host side of a two-operand SIMD instruction in inline assembly.
#![allow(dead_code)]

use cranebox_tests::{long_mode_cpu, SparseBus};
use frontend_x86::CpuState;

/// A 64-bit machine with the first 2 MiB identity-mapped (page tables at 0x20000) and `code`
/// at 0x8000, where RIP points.
pub fn machine(code: &[u8]) -> (CpuState, SparseBus) {
    let mut bus = SparseBus::new(32);
    bus.put(0x20000, &0x21003u64.to_le_bytes());
    bus.put(0x21000, &0x22003u64.to_le_bytes());
    bus.put(0x22000, &0x83u64.to_le_bytes());
    bus.put(0x8000, code);
    let mut cpu = long_mode_cpu(0x20000);
    cpu.rip = 0x8000;
    (cpu, bus)
}

/// A host function `fn($ty, $ty) -> $ty` that loads its operands into `$r0` and `$r1` with
/// `$load` (a move of `$ty`'s size between a register and memory), runs `$text`, stores `$r0`
/// the same way, then runs `$tail` (EMMS for MMX registers).
#[macro_export]
macro_rules! host_binary {
    ($ty:ty, $load:literal, $r0:tt, $r1:tt, $tail:literal, $text:literal) => {{
        fn run(a: $ty, b: $ty) -> $ty {
            let (a, b) = (a.to_le_bytes(), b.to_le_bytes());
            let mut r = (0 as $ty).to_le_bytes();
            // SAFETY: the template reads `a` and `b` and writes `r`, local arrays of the
            // operand's size; `$r0` and `$r1` are declared clobbered, and `$tail` (EMMS after
            // MMX code) leaves the x87 stack empty, as the Rust ABI expects.
            unsafe {
                ::std::arch::asm!(
                    concat!($load, " ", $r0, ", [{a}]"),
                    concat!($load, " ", $r1, ", [{b}]"),
                    $text,
                    concat!($load, " [{r}], ", $r0),
                    $tail,
                    a = in(reg) a.as_ptr(),
                    b = in(reg) b.as_ptr(),
                    r = in(reg) r.as_mut_ptr(),
                    out($r0) _,
                    out($r1) _,
                );
            }
            <$ty>::from_le_bytes(r)
        }
        run as fn($ty, $ty) -> $ty
    }};
}
