//! Debian 12's own kernels (linux-image-amd64 and linux-image-686) boot on cranebox with a
//! busybox initramfs (`cargo xtask guest`), under the interpreter and under the JIT: /init
//! prints `uname -a`, /proc/cpuinfo, an arithmetic loop's result and the md5 of a file in the
//! initramfs (checked against the host's), then powers off through ACPI S5 and cranebox
//! exits 0. The kernel log must show none of the fallbacks a real PC would not cause.
//!
//! The images are fetched by `cargo xtask guest [amd64|i386]` into `guests/cache` (`.ci/run`
//! does it); without them these tests say so and pass.

use std::process::Command;

/// What the kernel prints when it falls back from something a real PC has: none may appear.
const FORBIDDEN: &[&str] = &[
    "APIC disabled",
    "TSC unstable",
    "marked unstable",
    "Fast TSC calibration failed",
    // pit_calibrate_tsc gave up on the PIT: time did not move between the reads of its loop.
    "Unable to calibrate against PIT",
    "unchecked MSR access error",
    // IA32_MISC_ENABLE without fast strings, which firmware on a real PC leaves enabled.
    "Disabled fast string operations",
    // No MTRRs (the firmware enables them on a PC), so no PAT either.
    "MTRRs disabled",
    "ACPI Error",
    "Kernel panic",
    "invalid opcode",
];

mod common;

use common::{cache, kernel};

fn boot(arch: &str, accel: &str) {
    let (Some(k), initrd, md5) =
        (kernel(arch), cache().join(format!("{arch}-initramfs.cpio")), cache().join(arch).join("testfile.md5"))
    else {
        println!("SKIPPED: no {arch} guest in guests/cache (run `cargo xtask guest {arch}`)");
        return;
    };
    if !initrd.exists() || !md5.exists() {
        println!("SKIPPED: no {arch} initramfs in guests/cache (run `cargo xtask guest {arch}`)");
        return;
    }
    let want_md5 = std::fs::read_to_string(&md5).expect("testfile.md5").trim().to_string();
    let log = std::env::temp_dir().join(format!("cranebox-linux-{arch}-{accel}-{}.txt", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_cranebox"))
        .arg("--kernel")
        .arg(&k)
        .arg("--initrd")
        .arg(&initrd)
        .args([
            "--append",
            "console=ttyS0 cranebox.test=1",
            "-m",
            "256M",
            "--accel",
            accel,
            "--max-instructions",
            "40000000000",
        ])
        .arg("--serial")
        .arg(format!("file:{}", log.display()))
        .output()
        .expect("run cranebox");
    let serial = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let tail: String = serial.chars().rev().take(3000).collect::<Vec<_>>().into_iter().rev().collect();
    assert!(
        out.status.success(),
        "{arch}/{accel}: cranebox exited with {:?}: {}\n--- serial tail ---\n{tail}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "cranebox-guest: init started".to_string(),
        "Linux (none) 6.1.".to_string(),
        "vendor_id\t: GenuineIntel".to_string(),
        // The TSC's frequency as CPUID leaf 0x15 reports it (1 GHz, virtual nanoseconds), so
        // no calibration against the PIT (machine/tests/exact_time.rs runs Linux's PIT
        // calibration loop itself).
        "tsc: Detected 1000.000 MHz processor".to_string(),
        "cranebox-guest: sum of squares 333833500".to_string(),
        format!("cranebox-guest: md5 {want_md5}  /etc/testfile"),
        "cranebox-guest: done".to_string(),
        "reboot: Power down".to_string(),
    ] {
        assert!(serial.contains(&want), "{arch}/{accel}: no {want:?} on the serial console\n--- tail ---\n{tail}");
    }
    for bad in FORBIDDEN {
        let lines: Vec<&str> = serial.lines().filter(|l| l.contains(bad)).collect();
        assert!(lines.is_empty(), "{arch}/{accel}: the kernel log has {bad:?}: {lines:?}");
    }
}

#[test]
fn debian_amd64_kernel_boots_to_init_and_powers_off_interpreted() {
    boot("amd64", "interp");
}

#[test]
fn debian_amd64_kernel_boots_to_init_and_powers_off_compiled() {
    boot("amd64", "jit");
}

#[test]
fn debian_i386_kernel_boots_to_init_and_powers_off_interpreted() {
    boot("i386", "interp");
}

#[test]
fn debian_i386_kernel_boots_to_init_and_powers_off_compiled() {
    boot("i386", "jit");
}
