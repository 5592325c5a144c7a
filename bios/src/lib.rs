//! cranebox's firmware and direct loaders.
//!
//! Today: [`demo`], a 64 KiB image that greets through the debug console; [`linux`], the
//! Linux boot protocol loader behind `--kernel`, with the [`e820`] memory map it hands the
//! kernel; [`multiboot`], the multiboot v1 loader. Planned here (issue 6): cranebox's own BIOS
//! ROM (POST, IVT/BDA, INT 10h/15h/16h/1Ah), ACPI and MP tables.

pub mod acpi;
pub mod demo;
pub mod e820;
pub mod linux;
pub mod mptable;
pub mod multiboot;
pub mod rom;
