//! The VGA text console, headless: Debian's amd64 kernel booted with `console=ttyS0
//! console=tty0` finds an 80x25 colour VGA in boot_params.screen_info, draws its log and the
//! initramfs's output (its /dev/console is then tty0) in text memory at 0xB8000, and cranebox
//! writes the final screen with `--screen-text` and `--screenshot`: the text must hold the
//! init's last lines, and the PNG must show them, glyph by glyph, in the font the display
//! crate draws with.
//!
//! The guest comes from `cargo xtask guest amd64` (guests/cache); without it this test says so
//! and passes.

use std::path::Path;
use std::process::Command;

mod common;

use common::{cache, kernel};

/// Decodes a PNG into (width, height, RGB bytes).
fn decode(path: &Path) -> (usize, usize, Vec<u8>) {
    let file = std::fs::File::open(path).expect("open the screenshot");
    let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("PNG data");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, buf)
}

#[test]
fn linux_draws_its_console_on_the_vga_text_screen() {
    let initrd = cache().join("amd64-initramfs.cpio");
    let Some(k) = kernel("amd64").filter(|_| initrd.exists()) else {
        println!("SKIPPED: no amd64 guest in guests/cache (run `cargo xtask guest amd64`)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("cranebox-vga-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (serial, shot, text) = (dir.join("serial.txt"), dir.join("screen.png"), dir.join("screen.txt"));
    let out = Command::new(env!("CARGO_BIN_EXE_cranebox"))
        .arg("--kernel")
        .arg(&k)
        .arg("--initrd")
        .arg(&initrd)
        .args(["--append", "console=ttyS0 console=tty0 cranebox.test=1", "-m", "256M", "--accel", "jit"])
        .args(["--max-instructions", "40000000000", "--display", "none"])
        .arg("--serial")
        .arg(format!("file:{}", serial.display()))
        .arg("--screenshot")
        .arg(&shot)
        .arg("--screen-text")
        .arg(&text)
        .output()
        .expect("run cranebox");
    let serial = std::fs::read_to_string(&serial).unwrap_or_default();
    let screen = std::fs::read_to_string(&text).unwrap_or_default();
    assert!(
        out.status.success(),
        "cranebox exited with {:?}: {}\n--- screen ---\n{screen}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(serial.contains("Linux version"), "no kernel log on the serial console");
    assert!(serial.contains("Console: colour VGA+ 80x25"), "vgacon did not take the VGA\n{serial}");
    let lines: Vec<&str> = screen.lines().collect();
    assert_eq!(lines.len(), 25, "25 rows\n{screen}");
    let done = "cranebox-guest: done";
    let row = lines.iter().position(|l| *l == done).unwrap_or_else(|| panic!("no {done:?} on the screen\n{screen}"));
    assert!(screen.contains("cranebox-guest: sum of squares 333833500"), "{screen}");

    // The screenshot shows that row: each 9x16 cell has light grey dots exactly where the
    // font's glyph has them, on black.
    let (w, h, rgb) = decode(&shot);
    assert_eq!((w, h), (720, 400));
    for (col, ch) in done.bytes().enumerate() {
        for line in 0..16 {
            let bits = display::font::glyph_row(ch, line, 16);
            for x in 0..9 {
                let p = ((row * 16 + line) * w + col * 9 + x) * 3;
                let want: [u8; 3] = if x < 8 && bits >> x & 1 != 0 { [0xaa; 3] } else { [0; 3] };
                assert_eq!(rgb[p..p + 3], want, "row {row} column {col} ({:?}) line {line} dot {x}", ch as char);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
