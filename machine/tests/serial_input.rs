//! Host input reaches the guest through COM1's receiver: a firmware that echoes what it reads
//! gets every byte typed ahead, even far more than the 16-byte FIFO holds, and nothing before
//! it raises RTS (RTS/CTS flow control); a quit request ends the run.

use iced_x86::code_asm::*;
mod common;

use common::Capture;
use crossbeam_channel::unbounded;
use machine::{HostEvent, Machine, MachineConfig, Outcome};

/// Turns the FIFOs on (trigger 14) and writes `mcr` to MCR after `delay` loop turns, then
/// echoes each received byte until a newline, then exits through isa-debug-exit with 0x21.
fn echo_rom(delay: u32, mcr: u32) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(16)?;
    let mut spin = a.create_label();
    let mut poll = a.create_label();
    a.cli()?;
    a.mov(ecx, delay)?;
    a.set_label(&mut spin)?;
    a.dec(ecx)?;
    a.jnz(spin)?;
    a.mov(dx, 0x3fau32)?;
    a.mov(al, 0xc7u32)?; // FIFO on, both cleared, trigger 14
    a.out(dx, al)?;
    a.mov(dx, 0x3fcu32)?;
    a.mov(al, mcr)?;
    a.out(dx, al)?;
    a.set_label(&mut poll)?;
    a.mov(dx, 0x3fdu32)?;
    a.in_(al, dx)?;
    a.test(al, 1u32)?;
    a.jz(poll)?;
    a.mov(dx, 0x3f8u32)?;
    a.in_(al, dx)?;
    a.out(dx, al)?;
    a.cmp(al, 0x0au32)?;
    a.jne(poll)?;
    a.mov(al, 0x10u32)?;
    a.out(0xf4u32, al)?;
    a.hlt()?;
    Ok(common::rom_at_e000(&a.assemble(0xe000)?))
}

#[test]
fn bytes_typed_ahead_all_reach_a_polling_guest() -> Result<(), IcedError> {
    let serial = Capture::default();
    let config = MachineConfig {
        serial: Some(Box::new(serial.clone())),
        ..MachineConfig::new(16 << 20, echo_rom(200_000, 0x0b)?)
    };
    let mut m = Machine::new(config).expect("machine");
    let (tx, rx) = unbounded();
    m.connect_host(rx);
    let line: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).chain([b'\n']).collect();
    for &b in &line {
        tx.send(HostEvent::Serial(b)).expect("send");
    }
    drop(tx);
    assert_eq!(m.run(50_000_000), Outcome::DebugExit { status: 0x21 });
    assert_eq!(serial.text().as_bytes(), &line[..], "every byte, in order, none lost to an overrun");
    Ok(())
}

#[test]
fn quit_from_the_host_ends_the_run() -> Result<(), IcedError> {
    let config = MachineConfig {
        serial: Some(Box::new(Capture::default())),
        ..MachineConfig::new(16 << 20, echo_rom(10, 0x0b)?)
    };
    let mut m = Machine::new(config).expect("machine");
    let (tx, rx) = unbounded();
    m.connect_host(rx);
    tx.send(HostEvent::Quit).expect("send");
    assert_eq!(m.run(50_000_000), Outcome::Quit);
    Ok(())
}

/// Runs the echo firmware with `mcr` and the line "hi\n" typed ahead.
fn echo_with_mcr(mcr: u32) -> Result<(Outcome, String), IcedError> {
    let serial = Capture::default();
    let config =
        MachineConfig { serial: Some(Box::new(serial.clone())), ..MachineConfig::new(16 << 20, echo_rom(10, mcr)?) };
    let mut m = Machine::new(config).expect("machine");
    let (tx, rx) = unbounded();
    m.connect_host(rx);
    for &b in b"hi\n" {
        tx.send(HostEvent::Serial(b)).expect("send");
    }
    drop(tx);
    let outcome = m.run(2_000_000);
    Ok((outcome, serial.text()))
}

#[test]
fn input_waits_until_the_guest_raises_rts() -> Result<(), IcedError> {
    assert_eq!(echo_with_mcr(0x0a)?, (Outcome::DebugExit { status: 0x21 }, "hi\n".to_string()), "RTS alone");
    assert_eq!(echo_with_mcr(0x09)?, (Outcome::InstructionLimit, String::new()), "DTR alone: nothing is sent");
    assert_eq!(echo_with_mcr(0x08)?, (Outcome::InstructionLimit, String::new()), "neither: nothing is sent");
    Ok(())
}
