//! The command line as a user meets it: the demo firmware runs, and bad input gets one clear
//! line and a non-zero status.

use std::path::PathBuf;
use std::process::{Command, Output};

fn cranebox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cranebox")).args(args).output().expect("run cranebox")
}

fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cranebox-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}

#[test]
fn the_demo_firmware_prints_through_the_debug_console() {
    let rom = scratch("hello.rom", &bios::demo::hello_rom());
    let out = cranebox(&["--bios", rom.to_str().expect("utf-8 path"), "--debugcon", "stdio"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Hello from cranebox!\n");
}

#[test]
fn bad_input_gets_one_clear_line_and_a_failure_status() {
    let rom = scratch("ok.rom", &bios::demo::hello_rom());
    let rom = rom.to_str().expect("utf-8 path");
    let short = scratch("short.rom", &[0x90; 1000]);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--bios", "/nonexistent/bios.bin"], "cannot read firmware /nonexistent/bios.bin"),
        (vec!["--bios", rom, "-m", "12X"], "unknown suffix"),
        (vec!["--bios", rom, "-m", "0"], "-m 0"),
        (vec!["--bios", short.to_str().expect("utf-8 path")], "1000 bytes"),
        (vec!["--bios", rom, "--accel", "jit"], "--accel jit"),
        (vec!["--bios", rom, "--debugcon", "tcp:1234"], "--debugcon tcp:1234"),
    ];
    for (args, want) in cases {
        let out = cranebox(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
}
