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
        (vec!["--bios", rom, "--accel", "kvm"], "--accel kvm"),
        (vec!["--bios", rom, "--debugcon", "tcp:1234"], "--debugcon tcp:1234"),
        (vec!["--bios", rom, "--rtc-base", "2006-13-01T00:00:00"], "YYYY-MM-DDTHH:MM:SS"),
        (vec!["--bios", rom, "--serial", "none", "--serial", "none", "--serial", "none"], "at most two"),
        (vec!["--bios", rom, "--serial", "none", "--serial", "stdio"], "only COM1"),
    ];
    fails_with_one_line(cases);
}

/// A minimal bzImage (protocol 2.15, 4 setup sectors) whose 32-bit entry runs `code`.
fn tiny_bzimage(code: &[u8]) -> Vec<u8> {
    let mut img = vec![0u8; 5 * 512];
    img[0x1f1] = 4;
    img[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
    img[0x200..0x202].copy_from_slice(&[0xeb, 0x66]);
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    img[0x211] = 1; // LOADED_HIGH
    img[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    img[0x238..0x23c].copy_from_slice(&255u32.to_le_bytes());
    img[0x258..0x260].copy_from_slice(&0x10_0000u64.to_le_bytes());
    img[0x260..0x264].copy_from_slice(&0x10_0000u32.to_le_bytes());
    img.extend_from_slice(code);
    img
}

#[test]
fn a_direct_booted_kernel_starts_in_protected_mode_with_esi_at_boot_params() {
    #[rustfmt::skip]
    let code = [
        0x66, 0xba, 0xe9, 0x00,             // mov dx, 0xe9
        0x8a, 0x86, 0x02, 0x02, 0x00, 0x00, // mov al, [esi+0x202]  ('H' of "HdrS")
        0xee,                               // out dx, al
        0x8b, 0x0d, 0x28, 0x02, 0x01, 0x00, // mov ecx, [0x10228]   (cmd_line_ptr)
        0x8a, 0x01,                         // mov al, [ecx]
        0xee,                               // out dx, al
        0xb0, 0x10,                         // mov al, 0x10
        0xe6, 0xf4,                         // out 0xf4, al         (exit status 0x21)
    ];
    let k = scratch("tiny.bzimage", &tiny_bzimage(&code));
    let out = cranebox(&[
        "--bios",
        "none",
        "--kernel",
        k.to_str().expect("utf-8 path"),
        "--append",
        "Zed",
        "--debugcon",
        "stdio",
    ]);
    assert_eq!(out.status.code(), Some(0x21), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HZ");
}

#[test]
fn with_the_builtin_bios_a_bzimage_enters_its_setup_code_in_real_mode() {
    #[rustfmt::skip]
    let setup = [
        0xba, 0xe9, 0x00,       // mov dx, 0xe9
        0xa0, 0x10, 0x02,       // mov al, [0x210]      (type_of_loader, DS = the setup segment)
        0x3c, 0xb0,             // cmp al, 0xb0
        0x75, 0x18,             // jne fail
        0xb8, 0x00, 0x20,       // mov ax, 0x2000
        0x8e, 0xc0,             // mov es, ax
        0x26, 0xa0, 0x00, 0x00, // mov al, es:[0]       (the command line at 0x20000)
        0xee,                   // out dx, al
        0xcd, 0x12,             // int 0x12             (base memory from the BIOS)
        0x3d, 0x7f, 0x02,       // cmp ax, 639
        0x75, 0x07,             // jne fail
        0xb0, 0x52,             // mov al, 'R'
        0xee,                   // out dx, al
        0xb0, 0x10,             // mov al, 0x10
        0xe6, 0xf4,             // out 0xf4, al         (exit status 0x21)
        // fail:
        0xb0, 0x03,             // mov al, 3
        0xe6, 0xf4,             // out 0xf4, al
    ];
    let mut img = tiny_bzimage(&[0xf4]);
    img[0x268..0x268 + setup.len()].copy_from_slice(&setup);
    let k = scratch("setup.bzimage", &img);
    let out = cranebox(&["--kernel", k.to_str().expect("utf-8 path"), "--append", "Zed", "--debugcon", "stdio"]);
    assert_eq!(out.status.code(), Some(0x21), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ZR");
}

#[test]
fn with_nothing_to_boot_the_bios_says_so_and_waits() {
    let out = cranebox(&["--serial", "stdio", "--max-instructions", "3000000"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("cranebox BIOS ") && text.ends_with("No bootable device.\r\n"), "{text:?}");
}

#[test]
fn bad_kernels_get_one_clear_line_and_a_failure_status() {
    let good = tiny_bzimage(&[0xf4]);
    let k = scratch("k.bzimage", &good);
    let k = k.to_str().expect("utf-8 path");
    let truncated = scratch("trunc.bzimage", &good[..0x230]);
    let no_payload = scratch("nopayload.bzimage", &good[..5 * 512]);
    let text = scratch("notes.txt", &b"just some text\n".repeat(100));
    let big = scratch("big.initrd", &vec![0u8; 40 << 20]);
    let long = "x".repeat(300);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--bios", "none"], "nothing to run without --kernel FILE"),
        (vec!["--kernel", "/nonexistent/vmlinuz"], "cannot read kernel /nonexistent/vmlinuz"),
        (vec!["--kernel", truncated.to_str().expect("utf-8 path")], "is truncated"),
        (vec!["--kernel", no_payload.to_str().expect("utf-8 path")], "is truncated"),
        (vec!["--kernel", text.to_str().expect("utf-8 path")], "is neither a Linux bzImage nor a multiboot kernel"),
        (vec!["--kernel", k, "-m", "32M", "--initrd", big.to_str().expect("utf-8 path")], "initrd of 41943040 bytes"),
        (vec!["--kernel", k, "--initrd", "/nonexistent/initrd"], "cannot read initrd /nonexistent/initrd"),
        (vec!["--kernel", k, "--append", &long], "command line is 300 bytes"),
        (vec!["--kernel", k, "-m", "2000G"], "more than the"),
    ];
    fails_with_one_line(cases);
}

/// A multiboot kernel by the header's address fields, loaded at 1 MiB, running `code`.
fn kludge_multiboot(code: &[u8]) -> Vec<u8> {
    let (magic, flags) = (0x1bad_b002u32, 0x0001_0002u32);
    let load = 0x10_0000u32;
    let words = [magic, flags, 0u32.wrapping_sub(magic.wrapping_add(flags)), load, load, 0, 0, load + 32];
    let mut img: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    img.extend_from_slice(code);
    img
}

/// 32-bit code for a multiboot kernel: with the bootloader's magic in EAX, `body` runs with
/// DX = 0xE9 (the debug console), then the kernel exits with status 0; else with 3.
fn magic_checked(body: &[u8]) -> Vec<u8> {
    let exit = [0xb0, 0x00, 0xe6, 0xf4, 0xf4]; // mov al, 0; out 0xf4, al; hlt
    let mut code = vec![
        0x66,
        0xba,
        0xe9,
        0x00, // mov dx, 0xe9
        0x3d,
        0x02,
        0xb0,
        0xad,
        0x2b, // cmp eax, 0x2badb002
        0x75,
        (body.len() + exit.len()) as u8, // jne fail
    ];
    code.extend_from_slice(body);
    code.extend_from_slice(&exit);
    code.extend_from_slice(&[0xb0, 0x03, 0xe6, 0xf4]); // fail: mov al, 3; out 0xf4, al
    code
}

#[test]
fn a_multiboot_kernel_gets_the_magic_and_its_modules() {
    #[rustfmt::skip]
    let body = [
        0x8b, 0x4b, 0x18,                   // mov ecx, [ebx+24]   (mods_addr)
        0x8b, 0x09,                         // mov ecx, [ecx]      (mod_start)
        0x8a, 0x01,                         // mov al, [ecx]
        0xee,                               // out dx, al
    ];
    let k = scratch("mb.bin", &kludge_multiboot(&magic_checked(&body)));
    let m = scratch("mod.txt", b"Module!");
    let modules = format!("{} some args", m.display());
    let out = cranebox(&["--kernel", k.to_str().expect("utf-8 path"), "--initrd", &modules, "--debugcon", "stdio"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "M");
}

#[test]
fn a_multiboot_kernel_starts_after_the_bios_post_unless_there_is_no_bios() {
    // Prints the high byte of INT 10h's segment in the IVT.
    let body = [0xa0, 0x43, 0x00, 0x00, 0x00, 0xee]; // mov al, [0x43]; out dx, al
    let k = scratch("mb-post.bin", &kludge_multiboot(&magic_checked(&body)));
    let k = k.to_str().expect("utf-8 path");
    // With cranebox's BIOS: POST has filled the IVT (INT 10h at F000:xxxx) when the kernel
    // starts, as QEMU's -kernel runs a multiboot kernel from an option ROM after SeaBIOS.
    let out = cranebox(&["--kernel", k, "--debugcon", "stdio", "--screen-text", "/dev/stdout"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.first(), Some(&0xf0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cranebox BIOS"));
    // Without firmware the CPU starts at the kernel's entry: no IVT.
    let out = cranebox(&["--kernel", k, "--bios", "none", "--debugcon", "stdio"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, [0]);
}

#[test]
fn the_benchmark_kernel_runs_and_prints_its_checksum() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/bench");
    let dir = std::env::temp_dir().join(format!("cranebox-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let elf = dir.join("bench.elf");
    let built = Command::new("gcc")
        .args(["-m32", "-march=i686", "-ffreestanding", "-nostdlib", "-fno-pic", "-fno-pie", "-no-pie", "-static"])
        .args(["-O2", "-fno-stack-protector", "-Wl,--build-id=none", "-Wl,-z,max-page-size=0x1000", "-T"])
        .arg(root.join("bench.ld"))
        .arg(root.join("bench.c"))
        .arg("-o")
        .arg(&elf)
        .output();
    match built {
        Ok(o) if o.status.success() => {}
        _ => {
            eprintln!("skipped: gcc -m32 cannot build guests/bench/bench.c here");
            return;
        }
    }
    let out = cranebox(&["--kernel", elf.to_str().expect("utf-8 path"), "--append", "scale=1", "--debugcon", "stdio"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("bench checksum ") && text.trim_end().len() == 23, "{text}");
}

#[test]
fn a_guest_reset_boots_the_same_kernel_again() {
    #[rustfmt::skip]
    let code = [
        0x66, 0xba, 0xe9, 0x00,                   // mov dx, 0xe9
        0xa0, 0x00, 0x70, 0x00, 0x00,             // mov al, [0x7000]    (boots so far; RAM survives a reset)
        0x04, 0x41,                               // add al, 'A'
        0xee,                                     // out dx, al
        0x80, 0x3d, 0x00, 0x70, 0x00, 0x00, 0x00, // cmp byte [0x7000], 0
        0x75, 0x0e,                               // jne done
        0xfe, 0x05, 0x00, 0x70, 0x00, 0x00,       // inc byte [0x7000]
        0x66, 0xba, 0xf9, 0x0c,                   // mov dx, 0xcf9
        0xb0, 0x06,                               // mov al, 6           (hard reset)
        0xee,                                     // out dx, al
        0xf4,                                     // hlt
        // done:
        0xb0, 0x00,                               // mov al, 0
        0xe6, 0xf4,                               // out 0xf4, al
    ];
    let k = scratch("reset.bzimage", &tiny_bzimage(&code));
    let out = cranebox(&["--bios", "none", "--kernel", k.to_str().expect("utf-8 path"), "--debugcon", "stdio"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "AB");
    // With --no-reboot (QEMU's -no-reboot) the reset ends the run instead, with a message
    // and a failure status.
    let out = cranebox(&[
        "--bios",
        "none",
        "--kernel",
        k.to_str().expect("utf-8 path"),
        "--debugcon",
        "stdio",
        "--no-reboot",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "A");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-reboot"));
}

#[test]
fn text_written_at_b8000_is_on_the_screen_text_and_screenshot() {
    #[rustfmt::skip]
    let code = [
        0x66, 0xc7, 0x05, 0x00, 0x80, 0x0b, 0x00, b'H', 0x1f, // mov word [0xb8000], 0x1f48 ('H' white on blue)
        0x66, 0xc7, 0x05, 0xa2, 0x80, 0x0b, 0x00, b'i', 0x07, // mov word [0xb80a2], 'i' (row 1, column 1)
        0xb0, 0x00,                                           // mov al, 0
        0xe6, 0xf4,                                           // out 0xf4, al
    ];
    let k = scratch("text.bzimage", &tiny_bzimage(&code));
    let dir = std::env::temp_dir().join(format!("cranebox-cli-{}", std::process::id()));
    let (png_path, txt_path) = (dir.join("screen.png"), dir.join("screen.txt"));
    let out = cranebox(&[
        "--bios",
        "none",
        "--kernel",
        k.to_str().expect("utf-8 path"),
        "--screenshot",
        png_path.to_str().expect("utf-8 path"),
        "--screen-text",
        txt_path.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&txt_path).expect("screen text");
    assert!(text.starts_with("H\n i\n"), "{text:?}");
    let png = std::fs::read(&png_path).expect("screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[16..24], &[0, 0, 2, 0xd0, 0, 0, 1, 0x90], "720x400");
}

#[test]
fn display_and_screenshot_errors_get_one_clear_line() {
    let rom = scratch("disp.rom", &bios::demo::hello_rom());
    let rom = rom.to_str().expect("utf-8 path");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--bios", rom, "--screenshot", "/nonexistent/dir/s.png"],
            "cannot write the screenshot /nonexistent/dir/s.png",
        ),
        (vec!["--bios", rom, "--display", "window"], "--display window"),
    ];
    for (args, want) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_cranebox"))
            .args(&args)
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .output()
            .expect("run cranebox");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
}

/// Each option list makes cranebox fail with one line of error that contains its text.
fn fails_with_one_line(cases: Vec<(Vec<&str>, &str)>) {
    for (args, want) in cases {
        let out = cranebox(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
}
