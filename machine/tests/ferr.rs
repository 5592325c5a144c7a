//! The PC/AT x87 error path with CR0.NE clear (SDM vol. 1, appendix D), as a DOS-era guest
//! drives it: an unmasked exception freezes the next waiting x87 instruction, FERR# raises
//! IRQ13 (INT 75h), the handler writes port 0xF0 (which clears the request and asserts
//! IGNNE#) and returns to the frozen instruction, which then runs. The host runs with CR0.NE
//! set and cannot be the oracle here: this follows the SDM's description.

use iced_x86::code_asm::*;

use machine::{Machine, MachineConfig, Outcome};

mod common;

const COUNT: u64 = 0x500;
const FLAG: u64 = 0x502;
const SEEN: u64 = 0x504;
const CW: u64 = 0x508;

fn ferr_rom() -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(16)?;
    let mut handler = a.create_label();
    a.cli()?;
    a.xor(ax, ax)?;
    a.mov(ds, ax)?;
    a.mov(ss, ax)?;
    a.mov(sp, 0x7000u32)?;
    a.mov(word_ptr(0x75 * 4), 0x7fffu32)?; // handler offset, patched below
    a.mov(word_ptr(0x75 * 4 + 2), 0xf000u32)?;
    // 8259A pair as a PC BIOS leaves it (vectors 08h and 70h), IRQ2 and IRQ13 unmasked.
    for (port, val) in [
        (0x20, 0x11),
        (0xa0, 0x11),
        (0x21, 0x08),
        (0xa1, 0x70),
        (0x21, 4),
        (0xa1, 2),
        (0x21, 1),
        (0xa1, 1),
        (0x21, 0xfb),
        (0xa1, 0xdf),
    ] {
        a.mov(al, val as u32)?;
        a.out(port as u32, al)?;
    }
    a.mov(word_ptr(COUNT), 0u32)?;
    a.mov(word_ptr(SEEN), 0u32)?;
    a.mov(word_ptr(CW), 0x037bu32)?; // ZE unmasked
    a.sti()?;
    a.fninit()?;
    a.fldcw(word_ptr(CW))?;
    for _ in 0..2 {
        // A zero divide leaves an exception pending; the next waiting instruction (FLD1)
        // freezes until the handler has run.
        a.fld1()?;
        a.fldz()?;
        a.fdivp(st1, st0)?;
        a.mov(word_ptr(FLAG), 1u32)?;
        a.fld1()?;
        a.mov(word_ptr(FLAG), 2u32)?;
        // The handler left the exception pending (IGNNE# let FLD1 go on): clear it, which
        // negates FERR# and IGNNE#, so the next exception freezes again.
        a.fnclex()?;
        a.fstp(st0)?;
        a.fstp(st0)?;
    }
    a.mov(ax, word_ptr(COUNT))?;
    a.shl(ax, 4)?;
    a.or(ax, word_ptr(SEEN))?;
    a.mov(dx, 0xf4u32)?;
    a.out(dx, al)?;
    a.hlt()?;
    a.set_label(&mut handler)?;
    a.push(ax)?;
    a.mov(al, 0u32)?;
    a.out(0xf0u32, al)?; // clears IRQ13, asserts IGNNE#
    a.mov(al, 0x20u32)?;
    a.out(0xa0u32, al)?;
    a.out(0x20u32, al)?;
    // SEEN counts the runs that found FLAG = 1: the handler ran before the frozen FLD1.
    let mut skip = a.create_label();
    a.cmp(word_ptr(FLAG), 1u32)?;
    a.jne(skip)?;
    a.inc(word_ptr(SEEN))?;
    a.set_label(&mut skip)?;
    a.inc(word_ptr(COUNT))?;
    a.pop(ax)?;
    a.iret()?;
    common::rom_with_handler(&mut a, &handler)
}

#[test]
fn an_unmasked_x87_exception_freezes_the_next_waiting_instruction_until_irq13_is_handled() -> Result<(), IcedError> {
    let mut m = Machine::new(MachineConfig::new(16 << 20, ferr_rom()?)).expect("machine");
    let outcome = m.run(1_000_000);
    // Two exceptions, two IRQ13s, each handled while its FLD1 was frozen: 0x22, as the
    // isa-debug-exit status 0x22 * 2 + 1.
    assert_eq!(outcome, Outcome::DebugExit { status: 0x45 });
    Ok(())
}
