//! Project tasks: `cargo xtask demo` builds a tiny firmware image and runs it on cranebox.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// A 64 KiB firmware image: at the reset vector a far jump to F000:E000, which prints a
/// greeting on the debug console (port 0xE9) and halts with interrupts off.
fn hello_rom() -> Vec<u8> {
    let mut rom = vec![0xffu8; 0x10000];
    #[rustfmt::skip]
    let code: &[u8] = &[
        0xfa,                   // cli
        0x31, 0xc0,             // xor ax, ax
        0x8e, 0xd0,             // mov ss, ax
        0xbc, 0x00, 0x7c,       // mov sp, 0x7c00
        0x0e,                   // push cs
        0x1f,                   // pop ds
        0xbe, 0x20, 0xe0,       // mov si, msg
        0xba, 0xe9, 0x00,       // mov dx, 0xe9
        0xac,                   // next: lodsb
        0x84, 0xc0,             // test al, al
        0x74, 0x03,             // jz done
        0xee,                   // out dx, al
        0xeb, 0xf8,             // jmp next
        0xfa,                   // done: cli
        0xf4,                   // hlt
        0xeb, 0xfd,             // jmp $-1 (back to hlt after an NMI)
    ];
    rom[0xe000..0xe000 + code.len()].copy_from_slice(code);
    let msg = b"Hello from cranebox!\n\0";
    rom[0xe020..0xe020 + msg.len()].copy_from_slice(msg);
    // The reset vector: jmp far f000:e000.
    rom[0xfff0..0xfff5].copy_from_slice(&[0xea, 0x00, 0xe0, 0x00, 0xf0]);
    rom
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn demo() -> Result<()> {
    let dir = root().join("guests/cache");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let rom = dir.join("hello.rom");
    std::fs::write(&rom, hello_rom()).with_context(|| format!("cannot write {}", rom.display()))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root())
        .args(["run", "--release", "-q", "-p", "cranebox", "--", "--bios"])
        .arg(&rom)
        .args(["--debugcon", "stdio", "--stats"])
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cranebox exited with {status}");
    }
    Ok(())
}

fn main() -> Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("demo") => demo(),
        Some(other) => bail!("unknown task {other}; tasks: demo"),
        None => bail!("usage: cargo xtask demo"),
    }
}
