//! A guest-requested reset (PIIX3 reset control register at 0xCF9) restarts the CPU at the
//! reset vector with the chipset at power-on state, while RAM and the battery-backed CMOS keep
//! their contents: the firmware counts its boots in CMOS.

mod common;

use common::Capture;
use iced_x86::code_asm::*;
use machine::{Machine, MachineConfig, Outcome};

fn counting_rom() -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(16)?;
    let mut done = a.create_label();
    a.cli()?;
    a.mov(al, 0x40u32)?;
    a.out(0x70u32, al)?;
    a.in_(al, 0x71u32)?;
    a.inc(al)?;
    a.mov(bl, al)?;
    a.mov(al, 0x40u32)?;
    a.out(0x70u32, al)?;
    a.mov(al, bl)?;
    a.out(0x71u32, al)?;
    a.cmp(bl, 3)?;
    a.jae(done)?;
    a.mov(dx, 0xcf9u32)?;
    a.mov(al, 0x06u32)?;
    a.out(dx, al)?; // hard reset
    a.hlt()?;
    a.set_label(&mut done)?;
    a.mov(al, bl)?;
    a.add(al, b'0' as u32)?;
    a.out(0xe9u32, al)?;
    a.mov(al, bl)?;
    a.out(0xf4u32, al)?;
    a.hlt()?;
    Ok(common::rom_at_e000(&a.assemble(0xe000)?))
}

#[test]
fn reset_through_0xcf9_restarts_the_firmware_and_keeps_cmos() -> Result<(), IcedError> {
    let out = Capture::default();
    let config =
        MachineConfig { debugcon: Some(Box::new(out.clone())), ..MachineConfig::new(16 << 20, counting_rom()?) };
    let mut m = Machine::new(config).expect("machine");
    assert_eq!(m.run(100_000), Outcome::DebugExit { status: 7 });
    assert_eq!(m.resets, 2);
    assert_eq!(out.text(), "3");
    Ok(())
}
