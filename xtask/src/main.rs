//! Project tasks: `cargo xtask demo` builds a tiny firmware image and runs it on cranebox;
//! `cargo xtask bench-guest [SCALE]` builds the bare-metal multiboot benchmark kernel
//! (guests/bench) with the host gcc and times it on cranebox and, when installed, on
//! qemu-system-x86_64 (TCG), checking that both print the same checksum; `cargo xtask guest`
//! fetches Debian's amd64 kernel and busybox-static with apt-get and builds a busybox
//! initramfs; `cargo xtask run` does that once and boots it on cranebox.

mod cpio;

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
    let mut medians = Vec::new();
    let mut sum = String::new();
    for accel in ["interp", "jit"] {
        let mut times = Vec::new();
        for _ in 0..RUNS {
            let (t, line) = timed(Command::new(&cranebox).arg("--kernel").arg(&elf).args([
                "--append",
                &append,
                "--debugcon",
                "stdio",
                "--accel",
                accel,
            ]))?;
            times.push(t);
            if !sum.is_empty() && line != sum {
                bail!("cranebox --accel {accel} printed {line:?}, the other tier {sum:?}");
            }
            sum = line;
        }
        let m = median(times);
        println!("cranebox (--accel {accel}): median {m:.3} s of {RUNS}; {sum}");
        medians.push(m);
    }
    let (interp, ours) = (medians[0], medians[1]);
    println!("cranebox interp / jit: the JIT is {:.1}x faster", interp / ours);
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
    println!("cranebox (jit) / qemu (tcg): {:.2}x the time", ours / theirs);
    if qsum != sum {
        bail!("the checksums differ: cranebox says {sum:?}, QEMU {qsum:?}");
    }
    Ok(())
}

/// Boots Debian's kernel with the busybox initramfs to its power-off on cranebox (--accel
/// jit) and on qemu-system-x86_64 -accel tcg, several runs each, and prints the medians and
/// the ratio (wall time to power-off; both must print the guest's "done" line).
fn bench_linux(arch: &str) -> Result<()> {
    const RUNS: usize = 3;
    let g = guest(arch)?;
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
    let log = std::env::temp_dir().join(format!("cranebox-bench-linux-{}.txt", std::process::id()));
    let serial = format!("file:{}", log.display());
    let boot = |cmd: &mut Command| -> Result<f64> {
        let _ = std::fs::remove_file(&log);
        let t = std::time::Instant::now();
        let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
        let secs = t.elapsed().as_secs_f64();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if !out.status.success() || !text.contains("cranebox-guest: done") {
            bail!(
                "{cmd:?} ended with {:?} without the guest's done line: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(secs)
    };
    let mut ours = Vec::new();
    for _ in 0..RUNS {
        ours.push(boot(
            Command::new(&cranebox).arg("--kernel").arg(&g.vmlinuz).arg("--initrd").arg(&g.initramfs).args([
                "--append",
                "console=ttyS0 cranebox.test=1",
                "-m",
                "256M",
                "--accel",
                "jit",
                "--no-reboot",
                "--serial",
                &serial,
            ]),
        )?);
    }
    let ours = median(ours);
    println!("cranebox (--accel jit): median {ours:.2} s of {RUNS} to power-off ({arch})");
    let mut theirs = Vec::new();
    for _ in 0..RUNS {
        theirs.push(boot(
            Command::new("qemu-system-x86_64")
                .args(["-accel", "tcg", "-kernel"])
                .arg(&g.vmlinuz)
                .arg("-initrd")
                .arg(&g.initramfs)
                .args([
                    "-append",
                    "console=ttyS0 cranebox.test=1",
                    "-m",
                    "256M",
                    "-nographic",
                    "-no-reboot",
                    "-monitor",
                    "none",
                ])
                .args(["-serial", &serial]),
        )?);
    }
    let theirs = median(theirs);
    println!("qemu-system-x86_64 (tcg): median {theirs:.2} s of {RUNS} to power-off ({arch})");
    println!("cranebox / qemu: {:.2}x the time", ours / theirs);
    let _ = std::fs::remove_file(&log);
    Ok(())
}

/// Runs a command, failing with its name and stderr.
fn sh(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim_end());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The .deb of `package` in `debs`, downloading it with apt-get if it is not there yet.
fn fetch_deb(debs: &Path, package: &str) -> Result<PathBuf> {
    let find = || -> Result<Option<PathBuf>> {
        let prefix = format!("{}_", package.split(':').next().unwrap_or(package));
        let arch = package.split(':').nth(1).unwrap_or("amd64");
        for e in std::fs::read_dir(debs).with_context(|| format!("cannot read {}", debs.display()))? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && (name.ends_with(&format!("_{arch}.deb")) || name.ends_with("_all.deb")) {
                return Ok(Some(debs.join(name)));
            }
        }
        Ok(None)
    };
    if let Some(p) = find()? {
        return Ok(p);
    }
    sh(Command::new("apt-get").current_dir(debs).args(["download", "-q", package]))?;
    find()?.with_context(|| format!("apt-get download {package} left no .deb in {}", debs.display()))
}

/// The package that really holds the kernel behind a meta-package (linux-image-amd64).
fn kernel_package(meta: &str) -> Result<String> {
    let deps = sh(Command::new("apt-cache").args(["depends", meta]))?;
    deps.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|d| d.starts_with("linux-image-"))
        .map(str::to_string)
        .with_context(|| format!("apt-cache depends {meta} names no linux-image package"))
}

/// The applets /init uses, linked to /bin/busybox (the interactive shell installs the rest).
const APPLETS: &[&str] = &[
    "sh", "mount", "uname", "cat", "md5sum", "poweroff", "echo", "seq", "expr", "ls", "mkdir", "sleep", "dmesg",
    "grep", "setsid", "cttyhack",
];

/// The guest's /init. With `cranebox.test=1` on the kernel command line it runs the test
/// commands the boot tests check and powers off; otherwise it starts an interactive shell on
/// the console (a session with the console as its controlling terminal, so Ctrl-C and job
/// control work) and powers off when the shell exits.
const INIT: &str = r#"#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
if grep -q 'cranebox.test=1' /proc/cmdline; then
    echo "cranebox-guest: init started"
    uname -a
    cat /proc/cpuinfo
    n=0
    for i in $(seq 1 1000); do n=$((n + i * i)); done
    echo "cranebox-guest: sum of squares $n"
    echo "cranebox-guest: md5 $(md5sum /etc/testfile)"
    echo "cranebox-guest: done"
    poweroff -f
fi
/bin/busybox --install -s
echo "cranebox-guest: busybox shell; 'exit' or 'poweroff -f' powers off"
setsid cttyhack sh
poweroff -f
"#;

/// A guest built by `cargo xtask guest`.
struct Guest {
    vmlinuz: PathBuf,
    initramfs: PathBuf,
}

/// Makes sure dpkg knows the i386 architecture (and apt has its package lists).
fn ensure_i386() -> Result<()> {
    let archs = sh(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    if archs.lines().any(|a| a.trim() == "i386") {
        return Ok(());
    }
    sh(Command::new("dpkg").args(["--add-architecture", "i386"]))
        .context("the i386 guest needs `dpkg --add-architecture i386` (as root)")?;
    // A mirror in mid-sync can fail one index; what did download is usable, and a package
    // that is really missing fails clearly at `apt-get download`.
    if let Err(e) = sh(Command::new("apt-get").args(["update", "-q"])) {
        eprintln!("warning: apt-get update after adding i386 reported errors ({e:#}); using the lists it has");
    }
    Ok(())
}

/// Fetches and unpacks the guest for `arch` (amd64 or i386) and builds its initramfs; cached
/// in guests/cache.
fn guest(arch: &str) -> Result<Guest> {
    let (meta, busybox_pkg) = match arch {
        "amd64" => ("linux-image-amd64", "busybox-static"),
        "i386" => {
            ensure_i386()?;
            ("linux-image-686:i386", "busybox-static:i386")
        }
        _ => bail!("no guest for architecture {arch}; try amd64 or i386"),
    };
    let cache = root().join("guests/cache");
    let debs = cache.join("debs");
    let tree = cache.join(arch);
    std::fs::create_dir_all(&debs).with_context(|| format!("cannot create {}", debs.display()))?;
    let kpkg = kernel_package(meta)?;
    let kname = kpkg.split(':').next().unwrap_or(&kpkg).to_string();
    let version = kname.trim_start_matches("linux-image-");
    let vmlinuz = tree.join(format!("boot/vmlinuz-{version}"));
    let busybox = tree.join("bin/busybox");
    let kpkg = if arch == "i386" && !kpkg.contains(':') { format!("{kpkg}:i386") } else { kpkg };
    for (pkg, want) in [(kpkg.as_str(), &vmlinuz), (busybox_pkg, &busybox)] {
        if !want.exists() {
            let deb = fetch_deb(&debs, pkg)?;
            sh(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
        }
    }
    let testfile: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let tf = tree.join("testfile");
    std::fs::write(&tf, &testfile).with_context(|| format!("cannot write {}", tf.display()))?;
    let md5 = sh(Command::new("md5sum").arg(&tf))?;
    let md5 = md5.split_whitespace().next().unwrap_or_default().to_string();
    std::fs::write(tree.join("testfile.md5"), &md5).context("cannot write testfile.md5")?;

    let mut c = cpio::Cpio::new();
    for d in ["bin", "dev", "etc", "proc", "sys", "sbin", "usr", "usr/bin", "usr/sbin", "root", "tmp"] {
        c.dir(d);
    }
    c.char_dev("dev/console", 5, 1);
    c.char_dev("dev/ttyS0", 4, 64);
    // The VGA console's terminals, for a shell on console=tty0 (cttyhack opens the active one).
    c.char_dev("dev/tty", 5, 0);
    c.char_dev("dev/tty0", 4, 0);
    c.char_dev("dev/tty1", 4, 1);
    let bb = std::fs::read(&busybox).with_context(|| format!("cannot read {}", busybox.display()))?;
    c.file("bin/busybox", 0o755, &bb);
    for a in APPLETS {
        c.symlink(&format!("bin/{a}"), "busybox");
    }
    c.file("etc/testfile", 0o644, &testfile);
    c.file("init", 0o755, INIT.as_bytes());
    let initramfs = cache.join(format!("{arch}-initramfs.cpio"));
    std::fs::write(&initramfs, c.finish()).with_context(|| format!("cannot write {}", initramfs.display()))?;
    println!("guest: {} and {} (testfile md5 {md5})", vmlinuz.display(), initramfs.display());
    Ok(Guest { vmlinuz, initramfs })
}

/// Boots a guest on cranebox.
fn run_guest(arch: &str) -> Result<()> {
    let g = guest(arch)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root())
        .args(["run", "--release", "-q", "-p", "cranebox", "--", "--kernel"])
        .arg(&g.vmlinuz)
        .arg("--initrd")
        .arg(&g.initramfs)
        .args(["--append", "console=ttyS0 panic=-1 quiet", "--serial", "stdio", "-m", "256M"])
        .args(["--accel", "jit", "--no-reboot", "--stats"])
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cranebox exited with {status}");
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("demo") => demo(),
        Some("bench-guest") => bench_guest(args.get(2).map_or("400", String::as_str)),
        Some("bench-linux") => bench_linux(args.get(2).map_or("amd64", String::as_str)),
        Some("guest") => guest(args.get(2).map_or("amd64", String::as_str)).map(|_| ()),
        Some("run") => run_guest(args.get(2).map_or("amd64", String::as_str)),
        Some(other) => {
            bail!("unknown task {other}; tasks: demo, guest [amd64|i386], run [amd64|i386], bench-guest [SCALE], bench-linux [amd64|i386]")
        }
        None => bail!("usage: cargo xtask demo | guest [amd64|i386] | run [amd64|i386] | bench-guest [SCALE] | bench-linux [amd64|i386]"),
    }
}
