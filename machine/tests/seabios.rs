//! Debian's SeaBIOS (the seabios package's bios.bin) runs on cranebox to its boot messages:
//! POST, PCI enumeration through the i440FX/PIIX3, shadow RAM through the PAM registers, the
//! e820 map, the boot menu prompt, the boot attempt that finds no disk, and the reboot through
//! the reset control register. Its log goes to
//! port 0x402 as under QEMU.
//!
//! The image comes from `$CRANEBOX_SEABIOS`, `guests/cache/seabios/usr/share/seabios/bios.bin`
//! (which `.ci/run` fills with `apt-get download seabios`), or `/usr/share/seabios/bios.bin`;
//! without one the test says so and skips.

use std::path::PathBuf;

mod common;

use common::Capture;
use machine::{Machine, MachineConfig};

fn seabios() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::env::var_os("CRANEBOX_SEABIOS")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            root.join("guests/cache/seabios/usr/share/seabios/bios.bin"),
            PathBuf::from("/usr/share/seabios/bios.bin"),
        ])
        .find(|p| p.is_file())
}

#[test]
fn debian_seabios_runs_to_its_boot_messages() {
    let Some(path) = seabios() else {
        println!("SKIPPED: no SeaBIOS image (set CRANEBOX_SEABIOS or run .ci/run to fetch Debian's seabios)");
        return;
    };
    let bios = std::fs::read(&path).expect("read the SeaBIOS image");
    let log = Capture::default();
    let config = MachineConfig {
        debugcon: Some(Box::new(log.clone())),
        debugcon_port: 0x402,
        ..MachineConfig::new(128 << 20, bios)
    };
    let mut m = Machine::new(config).expect("machine");
    let _ = m.run(30_000_000);
    let text = log.text();
    for want in [
        "SeaBIOS (version",
        "RamSize: 0x08000000 [cmos]",
        "Found 2 PCI devices",
        "e820 map has",
        "Press ESC for boot menu.",
        "No bootable device.",
    ] {
        assert!(text.contains(want), "SeaBIOS log lacks {want:?}:\n{text}");
    }
    // With nothing to boot it reboots through the reset control register and starts again
    // (it prints its banner twice per boot).
    assert!(m.resets >= 1, "no reset after 'Attempting a hard reboot'");
    assert!(text.matches("SeaBIOS (version").count() >= 3, "{text}");
}
