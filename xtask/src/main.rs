//! Project tasks: `cargo xtask demo` builds a tiny firmware image and runs it on cranebox;
//! `cargo xtask bench-guest [SCALE]` builds the bare-metal multiboot benchmark kernel
//! (guests/bench) with the host gcc and times it on cranebox and, when installed, on
//! qemu-system-x86_64 (TCG), checking that both print the same checksum.

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

/// Builds guests/bench/bench.c into guests/cache/bench/bench.elf.
fn build_bench() -> Result<PathBuf> {
    let src = root().join("guests/bench");
    let out_dir = root().join("guests/cache/bench");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let elf = out_dir.join("bench.elf");
    let status = Command::new("gcc")
        .args(["-m32", "-march=i686", "-ffreestanding", "-nostdlib", "-fno-pic", "-fno-pie", "-no-pie", "-static"])
        .args(["-O2", "-fno-stack-protector", "-Wl,--build-id=none", "-Wl,-z,max-page-size=0x1000"])
        .args(["-Wl,--no-warn-rwx-segments", "-T"])
        .arg(src.join("bench.ld"))
        .arg(src.join("bench.c"))
        .arg("-o")
        .arg(&elf)
        .status()
        .context("cannot run gcc (apt-get install gcc)")?;
    if !status.success() {
        bail!("gcc failed ({status}); a 32-bit build needs gcc -m32 (apt-get install gcc-multilib)");
    }
    Ok(elf)
}

/// One timed run: wall-clock seconds and the checksum line.
fn timed(cmd: &mut Command) -> Result<(f64, String)> {
    let t = std::time::Instant::now();
    let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    let secs = t.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.starts_with("bench checksum")).map(str::to_string);
    // isa-debug-exit with 0 gives status 1.
    match (out.status.code(), line) {
        (Some(1), Some(line)) => Ok((secs, line)),
        (code, _) => bail!("{cmd:?} ended with {code:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr)),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench_guest(scale: &str) -> Result<()> {
    const RUNS: usize = 3;
    let elf = build_bench()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root())
        .args(["build", "--release", "-q", "-p", "cranebox"])
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building cranebox failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let cranebox = target.join("release/cranebox");
    let append = format!("scale={scale}");
    let mut times = Vec::new();
    let mut sum = String::new();
    for _ in 0..RUNS {
        let (t, line) = timed(Command::new(&cranebox).arg("--kernel").arg(&elf).args([
            "--append",
            &append,
            "--debugcon",
            "stdio",
            "--accel",
            "interp",
        ]))?;
        times.push(t);
        sum = line;
    }
    let ours = median(times);
    println!("cranebox (interp): median {ours:.3} s of {RUNS}; {sum}");
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    if qemu.is_err() {
        println!("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86): no comparison");
        return Ok(());
    }
    let mut times = Vec::new();
    let mut qsum = String::new();
    for _ in 0..RUNS {
        let (t, line) = timed(
            Command::new("qemu-system-x86_64")
                .args(["-accel", "tcg", "-kernel"])
                .arg(&elf)
                .args(["-append", &append, "-debugcon", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=4"])
                .args(["-display", "none", "-nodefaults"]),
        )?;
        times.push(t);
        qsum = line;
    }
    let theirs = median(times);
    println!("qemu-system-x86_64 (tcg): median {theirs:.3} s of {RUNS}; {qsum}");
    println!("cranebox / qemu: {:.2}x the time", ours / theirs);
    if qsum != sum {
        bail!("the checksums differ: cranebox says {sum:?}, QEMU {qsum:?}");
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("demo") => demo(),
        Some("bench-guest") => bench_guest(args.get(2).map_or("20", String::as_str)),
        Some(other) => bail!("unknown task {other}; tasks: demo, bench-guest [SCALE]"),
        None => bail!("usage: cargo xtask demo | bench-guest [SCALE]"),
    }
}
