//! The ISA chipset as a guest drives it: firmware programs the 8259A pair and the 8254, takes
//! timer interrupts while halted, writes to COM1, and exits through isa-debug-exit. Virtual
//! time advances by the timer's period per tick.

use iced_x86::code_asm::*;
mod common;

use common::Capture;
use machine::{Machine, MachineConfig, Outcome};

const TICKS: u32 = 5;
const COUNTER: u64 = 0x500;

fn timer_rom() -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(16)?;
    let mut handler = a.create_label();
    let mut wait = a.create_label();
    a.cli()?;
    a.xor(ax, ax)?;
    a.mov(ds, ax)?;
    a.mov(ss, ax)?;
    a.mov(sp, 0x7000u32)?;
    a.mov(word_ptr(0x20 * 4), 0x7fffu32)?; // handler offset, patched below
    a.mov(word_ptr(0x20 * 4 + 2), 0xf000u32)?;
    // 8259A: ICW1 edge + ICW4, ICW2 vectors 0x20/0x28, ICW3 cascade on IRQ2, ICW4 8086 mode.
    for (port, val) in [
        (0x20, 0x11),
        (0xa0, 0x11),
        (0x21, 0x20),
        (0xa1, 0x28),
        (0x21, 4),
        (0xa1, 2),
        (0x21, 1),
        (0xa1, 1),
        (0x21, 0xfe),
        (0xa1, 0xff),
    ] {
        a.mov(al, val as u32)?;
        a.out(port as u32, al)?;
    }
    // 8254 channel 0, mode 2, divisor 11932: 100 Hz.
    a.mov(al, 0x34u32)?;
    a.out(0x43u32, al)?;
    a.mov(al, 0x9cu32)?;
    a.out(0x40u32, al)?;
    a.mov(al, 0x2eu32)?;
    a.out(0x40u32, al)?;
    a.mov(word_ptr(COUNTER), 0u32)?;
    a.sti()?;
    a.set_label(&mut wait)?;
    a.hlt()?;
    a.cmp(word_ptr(COUNTER), TICKS)?;
    a.jb(wait)?;
    a.cli()?;
    a.mov(dx, 0x3f8u32)?;
    for c in b"ok\n" {
        a.mov(al, u32::from(*c))?;
        a.out(dx, al)?;
    }
    a.mov(ax, word_ptr(COUNTER))?;
    a.mov(dx, 0xf4u32)?;
    a.out(dx, al)?;
    a.hlt()?;
    a.set_label(&mut handler)?;
    a.push(ax)?;
    a.inc(word_ptr(COUNTER))?;
    a.mov(al, 0x20u32)?;
    a.out(0x20u32, al)?; // EOI
    a.pop(ax)?;
    a.iret()?;
    common::rom_with_handler(&mut a, &handler)
}

#[test]
fn timer_interrupts_wake_hlt_and_virtual_time_follows_the_pit() -> Result<(), IcedError> {
    let serial = Capture::default();
    let config = MachineConfig { serial: Some(Box::new(serial.clone())), ..MachineConfig::new(16 << 20, timer_rom()?) };
    let mut m = Machine::new(config).expect("machine");
    let outcome = m.run(10_000_000);
    assert_eq!(outcome, Outcome::DebugExit { status: (TICKS * 2 + 1) as i32 });
    assert_eq!(serial.text(), "ok\n");
    // Five ticks of a 100 Hz timer: about 50 ms of virtual time, almost all of it halted.
    let ms = m.now_ns() / 1_000_000;
    assert!((45..=60).contains(&ms), "{ms} ms of virtual time");
    assert_eq!(m.interp.stats.interrupts, u64::from(TICKS));
    assert!(m.instructions < 10_000, "the CPU slept through the waits: {}", m.instructions);
    Ok(())
}
