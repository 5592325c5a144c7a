//! cranebox's own BIOS ROM (bios::rom) on the PC machine: POST alone (banner on COM1, port
//! 0x402 and the screen, the IVT, the BDA, the timer tick), and a real-mode program entered
//! through INT 19h that calls the services (E820, INT 10h, 1Ah, 12h, 16h with a key typed
//! through the i8042) and checks what they return.

mod common;

use bios::linux::{BootPlan, Entry, RealModeEntry};
use common::Capture;
use iced_x86::code_asm::*;
use machine::{Machine, MachineConfig, Outcome};
use softmmu::{PcLayout, PhysBus};

const RAM: u64 = 64 << 20;

fn machine(boot: Option<(u64, Vec<u8>)>) -> (Machine, Capture, Capture) {
    let layout = PcLayout::for_ram(RAM);
    let entry = RealModeEntry { cs: 0, ip: 0x7c00, ds: 0, ss: 0, sp: 0x7c00 };
    let rom = bios::rom::build(layout, boot.as_ref().map(|_| entry)).expect("rom");
    let serial = Capture::default();
    let debug = Capture::default();
    let config = MachineConfig {
        serial: Some(Box::new(serial.clone())),
        debugcon: Some(Box::new(debug.clone())),
        debugcon_port: 0x402,
        kernel: boot.map(|(at, code)| BootPlan { blobs: vec![(at, code)], entry: Entry::RealMode(entry) }),
        rtc_start: 1_795_000_000, // 2026-11-18 ...
        ..MachineConfig::new(RAM, rom)
    };
    (Machine::new(config).expect("machine"), serial, debug)
}

fn read(m: &mut Machine, addr: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    m.bus.mem.read_bytes(addr, &mut b);
    b
}

fn u16_at(m: &mut Machine, addr: u64) -> u16 {
    let b = read(m, addr, 2);
    u16::from_le_bytes([b[0], b[1]])
}

fn u32_at(m: &mut Machine, addr: u64) -> u32 {
    let b = read(m, addr, 4);
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Runs until `ns` of guest time have passed.
fn run_for(m: &mut Machine, ns: u64) {
    while m.now_ns() < ns {
        let out = m.run(m.instructions + 10_000);
        assert_eq!(out, Outcome::InstructionLimit, "{out:?}");
    }
}

/// The characters of the text screen's row `row`.
fn screen_row(m: &mut Machine, row: u64) -> String {
    read(m, 0xb8000 + row * 160, 160).chunks(2).map(|c| c[0] as char).collect::<String>().trim_end().to_string()
}

#[test]
fn post_prints_the_banner_and_fills_the_ivt_and_bda() {
    let (mut m, serial, debug) = machine(None);
    // POST, then two seconds of guest time halted in the "No bootable device." loop.
    run_for(&mut m, 2_000_000_000);
    let want = format!("cranebox BIOS {}", env!("CARGO_PKG_VERSION"));
    for (name, text) in [("COM1", serial.text()), ("port 0x402", debug.text())] {
        assert!(text.starts_with(&want), "{name}: {text:?}");
        assert!(text.contains("64 MiB RAM\r\nNo bootable device.\r\n"), "{name}: {text:?}");
    }
    assert!(screen_row(&mut m, 0).starts_with(&want), "{:?}", screen_row(&mut m, 0));
    assert_eq!(screen_row(&mut m, 1), "No bootable device.");
    assert_eq!(read(&mut m, 0xb8001, 1), [0x07], "attribute");
    // The cursor on row 2, column 0, in the BDA.
    assert_eq!(u16_at(&mut m, 0x450), 0x0200);
    // IVT: everything in the ROM's segment; the IRQ0 vector differs from the default one.
    for v in [0x00u64, 0x08, 0x10, 0x13, 0x15, 0x16, 0x19, 0x1a, 0x70] {
        assert_eq!(u16_at(&mut m, v * 4 + 2), 0xf000, "vector {v:#x}");
    }
    assert_ne!(u16_at(&mut m, 0x08 * 4), u16_at(&mut m, 0x00 * 4));
    assert_ne!(u16_at(&mut m, 0x10 * 4), u16_at(&mut m, 0x00 * 4));
    // BDA.
    assert_eq!(u16_at(&mut m, 0x400), 0x3f8, "COM1");
    assert_eq!(u16_at(&mut m, 0x40e), 0x9fc0, "EBDA segment");
    assert_eq!(u16_at(&mut m, 0x413), 639, "base memory");
    assert_eq!(u16_at(&mut m, 0x410) & 0x30, 0x20, "80x25 colour");
    assert_eq!(u16_at(&mut m, 0x410) >> 9 & 7, 1, "one serial port");
    assert_eq!(read(&mut m, 0x449, 1), [3], "video mode");
    assert_eq!(u16_at(&mut m, 0x44a), 80, "columns");
    assert_eq!(read(&mut m, 0x484, 1), [24], "rows - 1");
    assert_eq!((u16_at(&mut m, 0x41a), u16_at(&mut m, 0x41c)), (0x1e, 0x1e), "empty keyboard buffer");
    assert_eq!(read(&mut m, 0x9fc00, 1), [1], "EBDA size");
    // About 18.2 ticks per second of guest time.
    let ticks = u32_at(&mut m, 0x46c);
    let secs = m.now_ns() as f64 / 1e9;
    let rate = f64::from(ticks) / secs;
    assert!((17.5..19.0).contains(&rate), "{ticks} ticks in {secs} s");
}
