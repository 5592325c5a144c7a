//! Project tasks: `cargo xtask demo` builds a tiny firmware image and runs it on cranebox.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn demo() -> Result<()> {
    let dir = root().join("guests/cache");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let rom = dir.join("hello.rom");
    std::fs::write(&rom, bios::demo::hello_rom()).with_context(|| format!("cannot write {}", rom.display()))?;
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
