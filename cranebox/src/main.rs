//! The cranebox command line: build a PC from options and run it.
//!
//! Option names follow QEMU's where QEMU has one (`-m`, `--bios` for `-bios`, `--debugcon` for
//! `-debugcon`, `--accel` for `-accel`); the README lists them side by side.

mod console;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use machine::{HostEvent, Machine, MachineConfig, Outcome};

/// A full-system x86 PC emulator.
#[derive(Debug, Parser)]
#[command(name = "cranebox", version, about)]
struct Cli {
    /// Firmware image to run (QEMU: -bios). It is mapped so it ends at 4 GiB, with its last
    /// 128 KiB also below 1 MiB, and the CPU starts at the reset vector. Without this option
    /// cranebox's own BIOS runs; `none` runs no firmware and starts a --kernel at its 32-bit
    /// entry point.
    #[arg(long, value_name = "FILE|none")]
    bios: Option<PathBuf>,

    /// Boot this Linux bzImage or multiboot kernel (QEMU: -kernel). With cranebox's BIOS a
    /// bzImage enters through its real-mode setup code from INT 19h; a multiboot kernel, or
    /// any kernel with --bios FILE or --bios none, starts at its 32-bit entry point.
    #[arg(long, value_name = "FILE")]
    kernel: Option<PathBuf>,

    /// Initial ramdisk for --kernel (QEMU: -initrd); for a multiboot kernel, a comma-separated
    /// list of modules, each "FILE [ARGS]".
    #[arg(long, value_name = "FILE", requires = "kernel")]
    initrd: Option<PathBuf>,

    /// Kernel command line for --kernel (QEMU: -append).
    #[arg(long, value_name = "CMDLINE", default_value = "", requires = "kernel")]
    append: String,

    /// Guest memory: a number of MiB, or with a suffix (512M, 2G) as QEMU's -m.
    #[arg(short = 'm', long = "memory", value_name = "SIZE", default_value = "128M")]
    memory: String,

    /// Where port 0xE9 output goes (QEMU: -debugcon): stdio, file:PATH or none.
    #[arg(long, value_name = "DEST", default_value = "stdio")]
    debugcon: String,

    /// The debug console's I/O port (QEMU: -global isa-debugcon.iobase=PORT); SeaBIOS logs
    /// to 0x402.
    #[arg(long, value_name = "PORT", default_value = "0xe9", value_parser = parse_port)]
    debugcon_port: u16,

    /// COM1's other end (QEMU: -serial): stdio (output to stdout, input from stdin; on a
    /// terminal in raw mode, Ctrl-A X quits), file:PATH (output only) or none. Given twice,
    /// the second is COM2's (file:PATH or none), as QEMU's second -serial.
    #[arg(long, value_name = "DEST", action = clap::ArgAction::Append)]
    serial: Vec<String>,

    /// The guest's screen (QEMU: -display): none (headless) or window (a window showing the
    /// VGA screen, whose keyboard is the guest's PS/2 keyboard; closing it quits).
    #[arg(long, value_enum, default_value_t = DisplayKind::None)]
    display: DisplayKind,

    /// At exit, write the VGA screen to this file as a PNG (text modes and mode 13h).
    #[arg(long, value_name = "PATH")]
    screenshot: Option<PathBuf>,

    /// At exit, write the VGA text screen to this file as UTF-8 text, one line per row.
    #[arg(long, value_name = "PATH")]
    screen_text: Option<PathBuf>,

    /// Execution engine (QEMU: -accel): interp, or jit (the interpreter for cold code,
    /// Cranelift for hot blocks).
    #[arg(long, value_enum, default_value_t = Accel::Interp)]
    accel: Accel,

    /// With --accel jit: times a block runs interpreted before it is compiled (0 compiles
    /// every block before its first run).
    #[arg(long, value_name = "N", default_value_t = translator::interp::DEFAULT_THRESHOLD)]
    jit_threshold: u32,

    /// With --accel jit: where Cranelift compiles hot blocks: on a thread of its own while the
    /// block goes on running interpreted (background), or on the CPU's thread before it runs
    /// again (inline). The guest runs the same either way; only host time differs.
    #[arg(long, value_enum, value_name = "WHERE", default_value_t = JitCompile::Background)]
    jit_compile: JitCompile,

    /// The RTC's time at power-on (QEMU: -rtc base=): `utc` (the host's clock, default) or a
    /// fixed `YYYY-MM-DDTHH:MM:SS` (UTC), which with virtual time makes runs repeatable.
    #[arg(long, value_name = "utc|DATETIME", default_value = "utc")]
    rtc_base: String,

    /// Stop after this many guest instructions (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_instructions: u64,

    /// Exit instead of rebooting when the guest resets (QEMU: -no-reboot): with a kernel's
    /// `panic=-1`, a guest panic then ends cranebox with a non-zero status.
    #[arg(long)]
    no_reboot: bool,

    /// Print execution statistics at exit.
    #[arg(long)]
    stats: bool,
}

/// Where the RTC starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RtcBase {
    /// The host's clock.
    Utc,
    /// Seconds since 1970-01-01T00:00:00 UTC.
    Fixed(i64),
}

/// Parses `--rtc-base`: `utc`, or `YYYY-MM-DDTHH:MM:SS` (as QEMU's `-rtc base=`).
fn parse_rtc_base(s: &str) -> Result<RtcBase, String> {
    if s == "utc" {
        return Ok(RtcBase::Utc);
    }
    let bad = || format!("`{s}` is neither `utc` nor a date and time as YYYY-MM-DDTHH:MM:SS");
    let (date, time) = s.split_once('T').ok_or_else(bad)?;
    let num = |t: &str| t.parse::<i64>().map_err(|_| bad());
    let d: Vec<_> = date.split('-').map(num).collect::<Result<_, _>>()?;
    let t: Vec<_> = time.split(':').map(num).collect::<Result<_, _>>()?;
    let ([y, m, day], [hh, mm, ss]) = (d.as_slice(), t.as_slice()) else { return Err(bad()) };
    if !(1970..=9999).contains(y)
        || !(1..=12).contains(m)
        || !(1..=31).contains(day)
        || *hh > 23
        || *mm > 59
        || *ss > 59
    {
        return Err(bad());
    }
    // Days since 1970-01-01 in the proleptic Gregorian calendar (March-based years).
    let (y, m) = if *m <= 2 { (y - 1, m + 9) } else { (*y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(RtcBase::Fixed(days * 86_400 + hh * 3600 + mm * 60 + ss))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum JitCompile {
    /// On a compile thread.
    Background,
    /// On the CPU's thread.
    Inline,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Accel {
    /// The interpreter tier.
    Interp,
    /// The Cranelift JIT tier over the interpreter.
    Jit,
    /// KVM (not built yet).
    Kvm,
    /// KVM when usable, else the JIT (not built yet).
    Auto,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DisplayKind {
    /// No display: headless (the VGA still runs; --screenshot can capture it).
    None,
    /// A window (minifb).
    Window,
}

/// Opens the display window and has the run loop refresh it at about 60 Hz, sending its keys
/// (and a quit when it is closed) to the machine over `events`.
#[cfg(feature = "window")]
fn open_window(m: &mut Machine, events: crossbeam_channel::Sender<HostEvent>) -> Result<()> {
    use display::{Blink, Frame};
    let mut win = display::window::Window::open("cranebox").context("--display window: cannot open a window")?;
    let start = std::time::Instant::now();
    let mut warned = false;
    let mut blank = Frame { width: 720, height: 400, pixels: vec![0; 720 * 400] };
    m.set_pump(
        std::time::Duration::from_millis(16),
        Box::new(move |bus| {
            if !win.is_open() {
                let _ = events.send(HostEvent::Quit);
                return;
            }
            for (key, pressed) in win.take_keys() {
                let _ = events.send(HostEvent::Key { key, pressed });
            }
            let mem = bus.vga_window();
            let blink = Blink::at_ms(start.elapsed().as_millis() as u64);
            let shown = match display::render(bus.vga.state_ref(), &mem, blink) {
                Ok(frame) => {
                    warned = false;
                    win.show(&frame)
                }
                Err(e) => {
                    if !warned {
                        eprintln!("cranebox: {e}");
                        warned = true;
                    }
                    blank.pixels.fill(0);
                    win.show(&blank)
                }
            };
            if let Err(e) = shown {
                eprintln!("cranebox: {e}");
                let _ = events.send(HostEvent::Quit);
            }
        }),
    );
    Ok(())
}

#[cfg(not(feature = "window"))]
fn open_window(_: &mut Machine, _: crossbeam_channel::Sender<HostEvent>) -> Result<()> {
    bail!("--display window: this cranebox was built without the window feature")
}

/// Writes the final screen as `--screenshot` and `--screen-text` ask.
fn save_screen(m: &mut Machine, png: Option<&Path>, text: Option<&Path>) -> Result<()> {
    let mem = m.bus.vga_window();
    let vga = m.bus.vga.state_ref();
    if let Some(path) = png {
        let frame = display::render(vga, &mem, display::Blink::STEADY)
            .with_context(|| format!("--screenshot {}", path.display()))?;
        display::screenshot::write_png(&frame, path)?;
    }
    if let Some(path) = text {
        let screen = display::text_screen(vga, &mem)
            .with_context(|| format!("--screen-text {}: the VGA is in a graphics mode", path.display()))?;
        std::fs::write(path, screen).with_context(|| format!("--screen-text: cannot write {}", path.display()))?;
    }
    Ok(())
}

/// An I/O port number, decimal or 0x-prefixed hexadecimal.
fn parse_port(s: &str) -> std::result::Result<u16, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u16::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("{s} is not an I/O port (0-65535, or 0x0-0xffff)"))
}

fn sink(option: &str, spec: &str) -> Result<Option<Box<dyn Write + Send>>> {
    Ok(match spec {
        "none" => None,
        "stdio" => Some(Box::new(std::io::stdout())),
        _ => match spec.strip_prefix("file:") {
            Some(path) => Some(Box::new(
                std::fs::File::create(path).with_context(|| format!("--{option}: cannot create {path}"))?,
            )),
            None => bail!("--{option} {spec}: expected stdio, file:PATH or none"),
        },
    })
}

/// Reads a kernel (and initrd) and prepares the direct boot.
fn load_kernel(
    path: &Path,
    initrd: Option<&Path>,
    cmdline: &str,
    ram_bytes: u64,
    firmware_len: u64,
    real_mode: bool,
) -> Result<bios::linux::BootPlan> {
    let image = std::fs::read(path).with_context(|| format!("cannot read kernel {}", path.display()))?;
    let layout = softmmu::PcLayout::for_ram(ram_bytes);
    if !bios::linux::is_bzimage(&image) && bios::multiboot::find_header(&image).is_some() {
        // As QEMU does: --initrd lists modules, "FILE ARGS,FILE ARGS", each seen with its string.
        let mut modules = Vec::new();
        for spec in initrd.map(|p| p.to_string_lossy().into_owned()).iter().flat_map(|s| s.split(',')) {
            let file = spec.split(' ').next().unwrap_or(spec);
            let data = std::fs::read(file).with_context(|| format!("cannot read multiboot module {file}"))?;
            modules.push(bios::multiboot::Module { data, cmdline: spec.to_string() });
        }
        let line = format!("{} {cmdline}", path.display());
        return bios::multiboot::load(&image, layout, line.trim_end(), &modules, firmware_len)
            .with_context(|| format!("kernel {}", path.display()));
    }
    if !bios::linux::is_bzimage(&image) && image.len() >= 0x400 {
        bail!("kernel {}: is neither a Linux bzImage nor a multiboot kernel", path.display());
    }
    let initrd = match initrd {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("cannot read initrd {}", p.display()))?),
        None => None,
    };
    // Without firmware, cranebox builds the ACPI tables itself, at the top of low RAM (its
    // BIOS ROM holds its own).
    let acpi = (firmware_len == 0 && layout.below_4g > 2 * bios::acpi::ACPI_AREA)
        .then(|| bios::acpi::build(layout.below_4g - bios::acpi::ACPI_AREA));
    let opts = bios::linux::LinuxOptions {
        initrd: initrd.as_deref(),
        cmdline,
        firmware_len,
        rsdp_addr: acpi.as_ref().map_or(0, |a| a.rsdp_addr),
        top_reserved: if acpi.is_some() { bios::acpi::ACPI_AREA } else { 0 },
        real_mode,
    };
    let mut plan = bios::linux::load(&image, layout, &opts).with_context(|| format!("kernel {}", path.display()))?;
    if let Some(acpi) = acpi {
        plan.blobs.extend(acpi.blobs);
    }
    Ok(plan)
}

fn run(cli: Cli) -> Result<ExitCode> {
    if matches!(cli.accel, Accel::Kvm | Accel::Auto) {
        let name = cli.accel.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
        bail!("--accel {name}: KVM is not implemented yet; use --accel interp or --accel jit");
    }
    let ram_bytes = softmmu::parse_mem_size(&cli.memory).with_context(|| format!("-m {}", cli.memory))?;
    // None: cranebox's own ROM, built once the kernel's entry is known.
    let file_bios = match &cli.bios {
        Some(p) if p.as_os_str() == "none" => {
            if cli.kernel.is_none() {
                bail!("--bios none: nothing to run without --kernel FILE");
            }
            Some(Vec::new())
        }
        Some(p) => Some(std::fs::read(p).with_context(|| format!("cannot read firmware {}", p.display()))?),
        None => None,
    };
    let firmware_len = file_bios.as_ref().map_or(bios::rom::ROM_SIZE, Vec::len) as u64;
    let mut kernel = match &cli.kernel {
        Some(path) => {
            Some(load_kernel(path, cli.initrd.as_deref(), &cli.append, ram_bytes, firmware_len, file_bios.is_none())?)
        }
        None => None,
    };
    let bios = match file_bios {
        Some(image) => image,
        None => {
            // The ROM enters the kernel after POST: a real-mode entry (Linux's setup code) or a
            // 32-bit one (multiboot), which the machine then leaves to the firmware.
            let entry = kernel.as_ref().map(|k| k.entry);
            if let Some(k) = kernel.as_mut() {
                if matches!(k.entry, bios::linux::Entry::Protected32(_)) {
                    k.entry = bios::linux::Entry::Firmware;
                }
            }
            bios::rom::build(softmmu::PcLayout::for_ram(ram_bytes), entry)?
        }
    };
    let (com1, com2) = match cli.serial.as_slice() {
        [] => ("none", None),
        [a] => (a.as_str(), None),
        [a, b] => (a.as_str(), Some(b.as_str())),
        _ => bail!("--serial: at most two (COM1 and COM2)"),
    };
    let rtc_base = parse_rtc_base(&cli.rtc_base).map_err(|e| anyhow::anyhow!("--rtc-base: {e}"))?;
    let rtc_start = match rtc_base {
        RtcBase::Fixed(secs) => secs,
        RtcBase::Utc => {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
        }
    };
    let config = MachineConfig {
        ram_bytes,
        bios,
        debugcon: sink("debugcon", &cli.debugcon)?,
        debugcon_port: cli.debugcon_port,
        serial: sink("serial", com1)?,
        serial2: match com2 {
            Some("stdio") => bail!("--serial stdio: only COM1 (the first --serial) can be the terminal"),
            Some(spec) => sink("serial", spec)?,
            None => None,
        },
        rtc_start,
        kernel,
    };
    let mut m = Machine::new(config).context("cannot build the machine")?;
    m.no_reboot = cli.no_reboot;
    if cli.accel == Accel::Jit {
        m.interp = match cli.jit_compile {
            JitCompile::Background => translator::Interpreter::with_background_jit(cli.jit_threshold),
            JitCompile::Inline => translator::Interpreter::with_jit(cli.jit_threshold),
        }
        .context("--accel jit")?;
    }
    // Restores the terminal when run() ends, whichever way.
    let mut _raw = None;
    if com1 == "stdio" || cli.display == DisplayKind::Window {
        let (tx, rx) = crossbeam_channel::unbounded();
        if cli.display == DisplayKind::Window {
            open_window(&mut m, tx.clone())?;
        }
        if com1 == "stdio" {
            _raw = console::connect_stdin(tx).context("--serial stdio: cannot connect the terminal")?;
        }
        m.connect_host(rx);
    }
    let limit = if cli.max_instructions == 0 { u64::MAX } else { cli.max_instructions };
    let t = std::time::Instant::now();
    let outcome = m.run(limit);
    let _ = std::io::stdout().flush();
    console::restore();
    if outcome == Outcome::Quit {
        eprintln!("\ncranebox: terminated");
    }
    save_screen(&mut m, cli.screenshot.as_deref(), cli.screen_text.as_deref())?;
    if cli.stats {
        let secs = t.elapsed().as_secs_f64();
        let st = m.interp.stats;
        let compiled = 100.0 * st.compiled_instructions as f64 / (st.instructions.max(1)) as f64;
        eprintln!(
            "cranebox: {} guest instructions in {:.3} s ({:.3} s of CPU time on the CPU's thread; {:.1} MIPS), {:.1}% run compiled; {} blocks decoded, {} invalidated by writes to code",
            m.instructions,
            secs,
            thread_cpu_secs(),
            m.instructions as f64 / secs.max(1e-9) / 1e6,
            compiled,
            st.blocks_decoded,
            st.blocks_invalidated
        );
        let (lookups, hits) = m.interp.jump_cache();
        eprintln!(
            "cranebox: {} compiled units entered through links; jump cache {:.1}% of {} block lookups; TLB {} fills ({:.3} per 1000 instructions)",
            st.chained,
            100.0 * hits as f64 / lookups.max(1) as f64,
            lookups,
            m.cpu.tlb.0.fills,
            1000.0 * m.cpu.tlb.0.fills as f64 / m.instructions.max(1) as f64
        );
        if let Some(j) = m.interp.jit_stats() {
            eprintln!(
                "cranebox: jit: {} blocks compiled ({} instructions), compile time {:.1} ms total, {:.1} us median per block, {} failed, {} code generations dropped",
                j.units,
                j.insns_compiled,
                j.total_compile_ns() as f64 / 1e6,
                j.median_compile_ns() as f64 / 1e3,
                j.failures,
                j.generations_dropped
            );
            eprintln!(
                "cranebox: jit: of the compile time {:.0}% building CLIF, {:.0}% Cranelift, {:.0}% finalizing",
                100.0 * j.build_ns as f64 / j.total_compile_ns().max(1) as f64,
                100.0 * j.codegen_ns as f64 / j.total_compile_ns().max(1) as f64,
                100.0 * j.finalize_ns as f64 / j.total_compile_ns().max(1) as f64
            );
        }
    }
    Ok(match outcome {
        Outcome::DebugExit { status } => ExitCode::from((status & 0xff) as u8),
        Outcome::PowerOff => ExitCode::SUCCESS,
        Outcome::Quit => ExitCode::SUCCESS,
        Outcome::HaltedForever => {
            eprintln!(
                "cranebox: the guest halted with interrupts disabled at {:04x}:{:x}; nothing can wake it",
                m.cpu.seg[1].selector, m.cpu.rip
            );
            ExitCode::SUCCESS
        }
        Outcome::HaltedNoInterrupts => {
            eprintln!(
                "cranebox: the guest halted waiting for an interrupt, and this machine has no interrupt sources yet"
            );
            ExitCode::SUCCESS
        }
        Outcome::TripleFault => {
            eprintln!("cranebox: triple fault at {:04x}:{:x}", m.cpu.seg[1].selector, m.cpu.rip);
            ExitCode::from(2)
        }
        Outcome::Reset => {
            eprintln!(
                "cranebox: the guest reset the machine (--no-reboot); a kernel booted with panic=-1 does this when it panics"
            );
            ExitCode::from(3)
        }
        Outcome::InstructionLimit => {
            eprintln!(
                "cranebox: stopped after {} instructions (--max-instructions) at {:04x}:{:x}",
                m.instructions, m.cpu.seg[1].selector, m.cpu.rip
            );
            if std::env::var_os("CRANEBOX_DUMP_STATE").is_some() {
                eprintln!(
                    "cranebox: gpr {:x?} flags {:#x} cr0 {:#x} cr3 {:#x} cr4 {:#x}",
                    m.cpu.gpr,
                    m.cpu.flags.get(),
                    m.cpu.cr0,
                    m.cpu.cr3,
                    m.cpu.cr4
                );
            }
            ExitCode::SUCCESS
        }
    })
}

/// CPU time the calling thread has used, in seconds (NaN where the host cannot say).
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through the valid pointer it is given.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r == 0 {
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    } else {
        f64::NAN
    }
}

fn main() -> ExitCode {
    let result = run(Cli::parse());
    console::restore();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cranebox: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_rtc_base, RtcBase};

    #[test]
    fn rtc_base_dates_are_seconds_since_the_epoch() {
        // Expected values from Python's calendar.timegm.
        for (s, secs) in [
            ("1970-01-01T00:00:00", 0),
            ("2000-02-29T23:59:59", 951_868_799),
            ("2006-06-17T16:01:21", 1_150_560_081),
            ("2026-11-23T12:00:00", 1_795_435_200),
        ] {
            assert_eq!(parse_rtc_base(s), Ok(RtcBase::Fixed(secs)), "{s}");
        }
        assert_eq!(parse_rtc_base("utc"), Ok(RtcBase::Utc));
        for bad in ["", "2006-06-17", "2006-13-01T00:00:00", "2006-06-17T24:00:00", "yesterday", "1969-12-31T23:59:59"]
        {
            assert!(parse_rtc_base(bad).is_err(), "{bad}");
        }
    }
}
