//! cranebox's firmware and direct loaders.
//!
//! Today: [`demo`], a 64 KiB image that greets through the debug console. Planned here
//! (issue 6): cranebox's own BIOS ROM (POST, IVT/BDA, E820, INT 10h/15h/16h/1Ah, ACPI and MP
//! tables) and the Linux boot protocol and multiboot loaders behind `--kernel`.

pub mod demo;
