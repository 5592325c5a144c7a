//! cranebox's own BIOS ROM (bios::rom) on the PC machine: POST alone (banner on COM1, port
//! 0x402 and the screen, the IVT, the BDA, the timer tick), and a real-mode program entered
//! through INT 19h that calls the services (E820, INT 10h, 1Ah, 12h, 16h with a key typed
//! through the i8042) and checks what they return.

mod common;

use bios::e820::E820Entry;
use bios::linux::{BootPlan, Entry, RealModeEntry};
use common::Capture;
use devices::i8042::Key;
use iced_x86::code_asm::*;
use iced_x86::IcedError;
use machine::{Machine, MachineConfig, Outcome};
use softmmu::{PcLayout, PhysBus};

const RAM: u64 = 64 << 20;

fn machine(boot: Option<(u64, Vec<u8>)>) -> (Machine, Capture, Capture) {
    machine_with(boot, None)
}

fn machine_with(boot: Option<(u64, Vec<u8>)>, com2: Option<Capture>) -> (Machine, Capture, Capture) {
    let layout = PcLayout::for_ram(RAM);
    let entry = RealModeEntry { cs: 0, ip: 0x7c00, ds: 0, ss: 0, sp: 0x7c00 };
    let rom = bios::rom::build(layout, boot.as_ref().map(|_| Entry::RealMode(entry))).expect("rom");
    let serial = Capture::default();
    let debug = Capture::default();
    let config = MachineConfig {
        serial: Some(Box::new(serial.clone())),
        serial2: com2.map(|c| Box::new(c) as Box<dyn std::io::Write + Send>),
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
    assert_ne!(u16_at(&mut m, 0x08 * 4), u16_at(&mut m, 0));
    assert_ne!(u16_at(&mut m, 0x10 * 4), u16_at(&mut m, 0));
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

/// Where the test program keeps its results.
const OUT: u64 = 0x7000;
/// Where it asks for the E820 entries.
const E820_BUF: u64 = 0x8000;
/// The GDT INT 15h 87h is given.
const MOVE_GDT: u64 = 0x8800;

/// A real-mode program for 0000:7C00 that calls the BIOS services and stores what they
/// return at [`OUT`]; it sets byte OUT+0x40 when it waits for two keys, and leaves through
/// isa-debug-exit.
fn services_program() -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(16)?;
    let o = |off: u32| OUT as u32 + off;
    // INT 15h E820h until EBX comes back 0; the count at OUT, a bad signature at OUT+2.
    a.xor(ebx, ebx)?;
    a.mov(di, E820_BUF as i32)?;
    a.mov(word_ptr(o(0)), 0)?;
    let mut next = a.create_label();
    let mut done = a.create_label();
    a.set_label(&mut next)?;
    a.mov(eax, 0xe820)?;
    a.mov(edx, 0x534d_4150)?;
    a.mov(ecx, 20)?;
    a.int(0x15)?;
    a.jc(done)?;
    a.cmp(eax, 0x534d_4150)?;
    a.setne(byte_ptr(o(2)))?;
    a.inc(word_ptr(o(0)))?;
    a.add(di, 20)?;
    a.test(ebx, ebx)?;
    a.jnz(next)?;
    a.set_label(&mut done)?;
    // INT 10h: cursor to row 5 column 10, "Hi" by teletype, the cursor and mode read back.
    a.mov(ah, 0x02)?;
    a.xor(bh, bh)?;
    a.mov(dx, 0x050a)?;
    a.int(0x10)?;
    for c in [b'H', b'i'] {
        a.mov(ax, 0x0e00 | i32::from(c))?;
        a.int(0x10)?;
    }
    a.mov(ah, 0x03)?;
    a.int(0x10)?;
    a.mov(word_ptr(o(4)), dx)?;
    a.mov(ah, 0x0f)?;
    a.int(0x10)?;
    a.mov(word_ptr(o(6)), ax)?;
    // 09h: "XXX" in white on blue after "Hi"; 13h: "OK" in yellow on green at row 7 with
    // the cursor moved; 06h: the whole screen up one line.
    a.mov(ax, 0x0900 | i32::from(b'X'))?;
    a.mov(bx, 0x001f)?;
    a.mov(cx, 3)?;
    a.int(0x10)?;
    a.mov(word_ptr(0x7100), i32::from(u16::from_le_bytes(*b"OK")))?;
    a.xor(ax, ax)?;
    a.mov(es, ax)?;
    a.mov(bp, 0x7100)?;
    a.mov(ax, 0x1301)?;
    a.mov(bx, 0x002e)?;
    a.mov(cx, 2)?;
    a.mov(dx, 0x0700)?;
    a.int(0x10)?;
    a.mov(ah, 0x03)?;
    a.xor(bh, bh)?;
    a.int(0x10)?;
    a.mov(word_ptr(o(8)), dx)?;
    a.mov(ax, 0x0601)?;
    a.mov(bh, 0x07)?;
    a.xor(cx, cx)?;
    a.mov(dx, 0x184f)?;
    a.int(0x10)?;
    // INT 12h, INT 11h.
    a.int(0x12)?;
    a.mov(word_ptr(o(0x0a)), ax)?;
    a.int(0x11)?;
    a.mov(word_ptr(o(0x0c)), ax)?;
    // INT 1Ah: ticks, RTC time (with CF), RTC date.
    a.mov(ah, 0x00)?;
    a.int(0x1a)?;
    a.mov(word_ptr(o(0x10)), dx)?;
    a.mov(word_ptr(o(0x12)), cx)?;
    a.mov(ah, 0x02)?;
    a.stc()?;
    a.int(0x1a)?;
    a.mov(word_ptr(o(0x14)), cx)?;
    a.mov(word_ptr(o(0x16)), dx)?;
    a.setc(byte_ptr(o(0x18)))?;
    a.mov(ah, 0x04)?;
    a.int(0x1a)?;
    a.mov(word_ptr(o(0x1a)), cx)?;
    a.mov(word_ptr(o(0x1c)), dx)?;
    // INT 15h: E801h, 88h, C0h, APM 5300h, A20 status, and EDD (INT 13h 41h).
    a.mov(ax, 0xe801)?;
    a.int(0x15)?;
    a.mov(word_ptr(o(0x20)), ax)?;
    a.mov(word_ptr(o(0x22)), bx)?;
    a.mov(ah, 0x88)?;
    a.int(0x15)?;
    a.mov(word_ptr(o(0x24)), ax)?;
    a.mov(ah, 0xc0)?;
    a.int(0x15)?;
    a.mov(al, byte_ptr(bx + 2).es())?; // the model byte
    a.mov(byte_ptr(o(0x26)), al)?;
    a.xor(ax, ax)?;
    a.mov(es, ax)?;
    a.mov(ax, 0x5300)?;
    a.xor(bx, bx)?;
    a.int(0x15)?;
    a.mov(byte_ptr(o(0x2a)), ah)?;
    a.setc(byte_ptr(o(0x2b)))?;
    a.mov(ax, 0x2402)?;
    a.int(0x15)?;
    a.mov(byte_ptr(o(0x2c)), al)?;
    a.mov(ah, 0x41)?;
    a.mov(bx, 0x55aa)?;
    a.mov(dl, 0x80)?;
    a.int(0x13)?;
    a.setc(byte_ptr(o(0x2e)))?;
    // INT 15h 86h: 0.2 s, in ticks read around it.
    a.mov(eax, dword_ptr(0x46c))?;
    a.mov(dword_ptr(o(0x38)), eax)?;
    a.mov(ah, 0x86)?;
    a.mov(cx, 0x0003)?;
    a.mov(dx, 0x0d40)?; // 200000 us
    a.int(0x15)?;
    a.mov(eax, dword_ptr(0x46c))?;
    a.mov(dword_ptr(o(0x3c)), eax)?;
    // INT 15h 87h: 256 words of a pattern at 9000h moved to 0123_0000h (above 16 MiB: the
    // descriptor's base bits 31-24 count) through a GDT at MOVE_GDT.
    a.xor(ax, ax)?;
    a.mov(es, ax)?;
    a.mov(di, MOVE_GDT as i32)?;
    a.mov(cx, 24)?;
    a.rep().stosw()?;
    a.mov(di, 0x9000)?;
    a.mov(cx, 0x100)?;
    a.mov(ax, 0x1234)?;
    let mut fill = a.create_label();
    a.set_label(&mut fill)?;
    a.stosw()?;
    a.add(ax, 0x0101)?;
    a.loop_(fill)?;
    a.mov(word_ptr(MOVE_GDT as u32 + 0x10), 0xffff)?;
    a.mov(dword_ptr(MOVE_GDT as u32 + 0x12), 0x9300_9000u32 as i32)?;
    a.mov(word_ptr(MOVE_GDT as u32 + 0x18), 0xffff)?;
    a.mov(dword_ptr(MOVE_GDT as u32 + 0x1a), 0x9323_0000u32 as i32)?;
    a.mov(byte_ptr(MOVE_GDT as u32 + 0x1f), 0x01)?;
    a.mov(si, MOVE_GDT as i32)?;
    a.mov(cx, 0x100)?;
    a.mov(ah, 0x87)?;
    a.int(0x15)?;
    a.mov(byte_ptr(o(0x48)), ah)?;
    a.setc(byte_ptr(o(0x49)))?;
    a.mov(word_ptr(o(0x4a)), ss)?;
    a.mov(ax, 0x2402)?;
    a.int(0x15)?;
    a.mov(byte_ptr(o(0x4c)), al)?;
    // INT 16h: two keys typed through the i8042, a keystroke pushed with 05h.
    a.mov(byte_ptr(o(0x40)), 1)?;
    a.mov(ah, 0x00)?;
    a.int(0x16)?;
    a.mov(word_ptr(o(0x30)), ax)?;
    a.mov(ah, 0x10)?;
    a.int(0x16)?;
    a.mov(word_ptr(o(0x32)), ax)?;
    a.mov(ah, 0x00)?;
    a.int(0x16)?;
    a.mov(word_ptr(o(0x44)), ax)?;
    a.mov(ah, 0x01)?;
    a.int(0x16)?;
    a.setz(byte_ptr(o(0x34)))?; // empty
    a.mov(ah, 0x05)?;
    a.mov(cx, 0x3062)?; // 'b'
    a.int(0x16)?;
    a.mov(ah, 0x11)?;
    a.int(0x16)?;
    a.mov(word_ptr(o(0x36)), ax)?;
    a.setz(byte_ptr(o(0x35)))?;
    // 02h: the shift state, until the Shift key's release has come in.
    let mut shift = a.create_label();
    let mut up = a.create_label();
    a.mov(byte_ptr(o(0x42)), 0)?;
    a.set_label(&mut shift)?;
    a.mov(ah, 0x02)?;
    a.int(0x16)?;
    a.test(al, 0x03)?;
    a.jz(up)?;
    a.mov(byte_ptr(o(0x42)), al)?;
    a.sti()?;
    a.hlt()?;
    a.jmp(shift)?;
    a.set_label(&mut up)?;
    a.mov(al, 0)?;
    a.out(0xf4, al)?;
    a.hlt()?;
    a.assemble(0x7c00)
}

fn u64_at(m: &mut Machine, addr: u64) -> u64 {
    u64::from(u32_at(m, addr)) | (u64::from(u32_at(m, addr + 4)) << 32)
}

#[test]
fn a_real_mode_program_gets_e820_video_clock_memory_and_keys_from_the_bios() -> Result<(), IcedError> {
    let (mut m, _, _) = machine(Some((0x7c00, services_program()?)));
    // Up to the key wait.
    while read(&mut m, OUT + 0x40, 1)[0] == 0 {
        let out = m.run(m.instructions + 10_000);
        assert_eq!(out, Outcome::InstructionLimit, "{out:?} before the key wait");
        assert!(m.instructions < 50_000_000, "the program did not reach the key wait");
    }
    let now = m.now_ns();
    let keys = [(0x1e, true), (0x1e, false), (0x2a, true), (0x1e, true), (0x1e, false), (0x2a, false)];
    // Then Up, a grey key (E0 48), with Shift held.
    let up = [(0x2a, true), (0xe048, true), (0xe048, false), (0x2a, false)];
    for (code, down) in keys.into_iter().chain(up) {
        m.bus.kbc.key_event(Key(code), down, now);
    }
    let out = m.run(m.instructions + 50_000_000);
    assert_eq!(out, Outcome::DebugExit { status: 1 });

    // E820: exactly bios::rom::e820_map, in order.
    let want = bios::rom::e820_map(PcLayout::for_ram(RAM));
    let n = usize::from(u16_at(&mut m, OUT));
    assert_eq!(read(&mut m, OUT + 2, 1), [0], "E820 returned EAX != 'SMAP'");
    let got: Vec<E820Entry> = (0..n as u64)
        .map(|i| {
            let at = E820_BUF + i * 20;
            E820Entry { addr: u64_at(&mut m, at), size: u64_at(&mut m, at + 8), kind: u32_at(&mut m, at + 16) }
        })
        .collect();
    assert_eq!(got, want);
    // INT 10h.
    // After the scroll, row 5's "HiXXX" is on row 4 and row 7's "OK" on row 6.
    assert_eq!(screen_row(&mut m, 4), "          HiXXX");
    assert_eq!(read(&mut m, 0xb8000 + 4 * 160 + 12 * 2, 6), [b'X', 0x1f, b'X', 0x1f, b'X', 0x1f]);
    assert_eq!(read(&mut m, 0xb8000 + 4 * 160 + 11 * 2, 2), [b'i', 0x07]);
    assert_eq!(screen_row(&mut m, 5), "");
    assert_eq!(read(&mut m, 0xb8000 + 6 * 160, 4), [b'O', 0x2e, b'K', 0x2e]);
    assert_eq!(screen_row(&mut m, 24), "", "a blank line scrolled in");
    assert_eq!(read(&mut m, 0xb8000 + 24 * 160, 2), [b' ', 0x07]);
    assert_eq!(u16_at(&mut m, OUT + 8), 0x0702, "cursor after 13h with AL bit 0");
    assert_eq!(u16_at(&mut m, OUT + 4), 0x050c, "cursor after \"Hi\"");
    assert_eq!(u16_at(&mut m, OUT + 6), 0x5003, "80 columns, mode 3");
    // INT 12h/11h.
    assert_eq!(u16_at(&mut m, OUT + 0x0a), 639);
    assert_eq!(u16_at(&mut m, OUT + 0x0c), u16_at(&mut m, 0x410));
    // INT 1Ah: ticks counted since POST, the RTC at 2026-11-18 11:06:40 plus a moment.
    let ticks = u32::from(u16_at(&mut m, OUT + 0x10)) | u32::from(u16_at(&mut m, OUT + 0x12)) << 16;
    assert!(ticks < 10, "{ticks} ticks at the start");
    assert_eq!(u16_at(&mut m, OUT + 0x14), 0x1106, "hours, minutes");
    assert_eq!(read(&mut m, OUT + 0x17, 1)[0] & 0xf0, 0x40, "seconds");
    assert_eq!(read(&mut m, OUT + 0x18, 1), [0], "CF after AH=02h");
    assert_eq!(u16_at(&mut m, OUT + 0x1a), 0x2026, "century, year");
    assert_eq!(u16_at(&mut m, OUT + 0x1c), 0x1118, "month, day");
    // INT 15h.
    assert_eq!(u16_at(&mut m, OUT + 0x20), 15 * 1024, "E801h: KiB from 1 to 16 MiB");
    assert_eq!(u16_at(&mut m, OUT + 0x22), 48 * 16, "E801h: 64 KiB blocks above 16 MiB");
    assert_eq!(u16_at(&mut m, OUT + 0x24), 63 * 1024, "88h");
    assert_eq!(read(&mut m, OUT + 0x26, 1), [0xfc], "C0h model byte");
    assert_eq!(read(&mut m, OUT + 0x2a, 2), [0x86, 1], "APM: not supported, CF=1");
    assert_eq!(read(&mut m, OUT + 0x2c, 1), [1], "A20 on");
    assert_eq!(read(&mut m, OUT + 0x2e, 1), [1], "no EDD disks: CF=1");
    assert_eq!(read(&mut m, OUT + 0x48, 2), [0, 0], "87h: AH=0, CF=0");
    let pattern: Vec<u8> = (0..0x100u16).flat_map(|k| 0x1234u16.wrapping_add(k * 0x0101).to_le_bytes()).collect();
    assert_eq!(read(&mut m, 0x9000, 0x200), pattern, "87h: the source as written");
    assert_eq!(read(&mut m, 0x0123_0000, 0x200), pattern, "87h: the moved words");
    assert_eq!(read(&mut m, 0x0123_0200, 2), [0, 0], "87h: nothing past CX words");
    assert_eq!(u16_at(&mut m, OUT + 0x4a), 0, "87h: SS back as before");
    assert_eq!(read(&mut m, OUT + 0x4c, 1), [1], "87h: A20 still on");
    let waited = u32_at(&mut m, OUT + 0x3c) - u32_at(&mut m, OUT + 0x38);
    assert!((3..=5).contains(&waited), "86h for 0.2 s took {waited} ticks");
    // INT 16h: 'a', then Shift+'a' through 10h, Shift+Up through 00h, then empty, then the pushed 'b' seen by 11h.
    assert_eq!(u16_at(&mut m, OUT + 0x30), 0x1e61);
    assert_eq!(u16_at(&mut m, OUT + 0x32), 0x1e41);
    assert_eq!(u16_at(&mut m, OUT + 0x44), 0x4800, "Up through 00h: scan code, ASCII 0");
    assert_eq!(read(&mut m, OUT + 0x34, 2), [1, 0], "ZF: empty, then a key");
    assert_eq!(u16_at(&mut m, OUT + 0x36), 0x3062);
    assert_eq!(read(&mut m, OUT + 0x42, 1), [0x02], "left Shift seen down, then up");
    Ok(())
}

#[test]
fn a_guest_reset_runs_post_again_and_boots_the_same_program() -> Result<(), IcedError> {
    // Counts its boots at 0x7000 (RAM survives a reset); resets through 0xCF9 on the first.
    let mut a = CodeAssembler::new(16)?;
    let mut second = a.create_label();
    a.inc(byte_ptr(0x7000))?;
    a.cmp(byte_ptr(0x7000), 2)?;
    a.je(second)?;
    a.mov(dx, 0xcf9)?;
    a.mov(al, 6)?;
    a.out(dx, al)?;
    a.hlt()?;
    a.set_label(&mut second)?;
    a.mov(al, 0)?;
    a.out(0xf4, al)?;
    let (mut m, serial, _) = machine(Some((0x7c00, a.assemble(0x7c00)?)));
    let out = m.run(50_000_000);
    assert_eq!(out, Outcome::DebugExit { status: 1 });
    assert_eq!(m.resets, 1);
    assert_eq!(serial.text().matches("cranebox BIOS").count(), 2, "{}", serial.text());
    Ok(())
}

#[test]
fn post_finds_the_serial_ports_and_sets_the_mtrrs_and_com2_transmits() -> Result<(), IcedError> {
    // After POST: 'C' out of COM2 (THR at 0x2F8), then exit.
    let mut a = CodeAssembler::new(16)?;
    a.mov(dx, 0x2f8)?;
    a.mov(al, b'C' as i32)?;
    a.out(dx, al)?;
    a.mov(al, 0)?;
    a.out(0xf4, al)?;
    a.hlt()?;
    let program = a.assemble(0x7c00)?;
    for with_com2 in [false, true] {
        let com2 = Capture::default();
        let (mut m, _, _) = machine_with(Some((0x7c00, program.clone())), with_com2.then(|| com2.clone()));
        assert_eq!(m.run(10_000_000), Outcome::DebugExit { status: 1 });
        let (ports, equipment) = (read(&mut m, 0x400, 4), u16_at(&mut m, 0x410));
        // POST also enabled the MTRRs: write-back by default, the fixed ranges, the PCI
        // window uncached.
        assert_eq!(m.cpu.msr.mtrr_def_type, 0xc06);
        assert_eq!(m.cpu.msr.mtrr_fixed[2], 0, "A0000-BFFFF uncached");
        assert_eq!(m.cpu.msr.mtrr_var[..2], [0xe000_0000, 0xff_e000_0800]);
        if with_com2 {
            assert_eq!(ports, [0xf8, 0x03, 0xf8, 0x02], "COM1 and COM2 in the BDA");
            assert_eq!((equipment >> 9) & 7, 2, "two serial ports in the equipment word");
            assert_eq!(com2.text(), "C");
        } else {
            assert_eq!(ports, [0xf8, 0x03, 0, 0], "COM1 only");
            assert_eq!((equipment >> 9) & 7, 1);
        }
    }
    Ok(())
}
