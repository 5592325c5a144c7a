//! cranebox's firmware and direct loaders.
//!
//! [`rom`], cranebox's own BIOS ROM (POST, IVT/BDA, INT 10h/13h/15h/16h/1Ah, INT 19h into a
//! kernel), assembled in Rust; [`demo`], a 64 KiB image that greets through the debug console;
//! [`linux`], the Linux boot protocol loader behind `--kernel` (16-bit entry through the ROM,
//! or 32-bit entry without firmware), with the [`e820`] memory map; [`multiboot`], the
//! multiboot v1 loader; the [`acpi`] and [`mptable`] tables.

pub mod acpi;
pub mod demo;
pub mod e820;
pub mod linux;
pub mod mptable;
pub mod multiboot;
pub mod rom;
