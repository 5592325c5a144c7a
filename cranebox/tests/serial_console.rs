//! `--serial stdio` is a two-way console: Debian's amd64 kernel boots to the initramfs's
//! interactive busybox shell (no `cranebox.test=1` on its command line), commands written into
//! cranebox's stdin reach the shell through COM1's receiver, their output comes back on stdout,
//! and `poweroff -f` ends cranebox with status 0.
//!
//! The guest comes from `cargo xtask guest amd64` (guests/cache); without it this test says so
//! and passes.

use std::io::Write;
use std::process::{Command, Stdio};

mod common;

use common::{cache, kernel};

#[test]
fn shell_commands_typed_on_stdin_run_in_the_guest() {
    let initrd = cache().join("amd64-initramfs.cpio");
    let Some(k) = kernel("amd64").filter(|_| initrd.exists()) else {
        println!("SKIPPED: no amd64 guest in guests/cache (run `cargo xtask guest amd64`)");
        return;
    };
    // An initramfs built before /init had its interactive mode runs the tests and powers off.
    let cpio = std::fs::read(&initrd).unwrap_or_default();
    if !cpio.windows(b"cranebox.test=1".len()).any(|w| w == b"cranebox.test=1") {
        println!(
            "SKIPPED: guests/cache/amd64-initramfs.cpio predates the interactive /init (run `cargo xtask guest amd64`)"
        );
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_cranebox"))
        .arg("--kernel")
        .arg(&k)
        .arg("--initrd")
        .arg(&initrd)
        .args(["--append", "console=ttyS0 panic=-1", "-m", "256M", "--accel", "jit", "--no-reboot"])
        .args(["--serial", "stdio", "--max-instructions", "40000000000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cranebox");
    // Typed ahead, long before the guest reads: the host side must hold it until then. The
    // arithmetic is done by the guest's shell; its echo of the command line cannot match.
    let script = "echo cranebox-$((6*7))-ok\nuname -m\npoweroff -f\n";
    child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("write the commands");
    let out = child.wait_with_output().expect("wait for cranebox");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tail: String = stdout.chars().rev().take(3000).collect::<Vec<_>>().into_iter().rev().collect();
    assert!(
        out.status.success(),
        "cranebox exited with {:?}: {}\n--- serial tail ---\n{tail}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("cranebox-guest: busybox shell"), "the interactive shell did not start\n{tail}");
    assert!(stdout.contains("cranebox-42-ok"), "the guest did not run the typed command\n{tail}");
    assert!(stdout.contains("\nx86_64"), "the guest did not run the second command\n{tail}");
    assert!(stdout.contains("reboot: Power down"), "no power-off\n{tail}");
}
