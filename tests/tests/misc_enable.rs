//! IA32_MISC_ENABLE as firmware leaves it on a real PC: fast string operations enabled
//! (Linux disables its REP-string preference and says so when bit 0 is clear), branch trace
//! storage and PEBS unavailable (read-only).

use cranebox_tests::{long_mode_cpu, SparseBus};
use iced_x86::code_asm::*;

#[test]
fn misc_enable_has_fast_strings_at_power_on_and_keeps_its_read_only_bits() -> Result<(), IcedError> {
    let mut bus = SparseBus::new(32);
    bus.put(0x20000, &0x21007u64.to_le_bytes());
    bus.put(0x21000, &0x22007u64.to_le_bytes());
    bus.put(0x22000, &0x87u64.to_le_bytes());
    let mut cpu = long_mode_cpu(0x20000);
    cpu.rip = 0x8000;
    let mut a = CodeAssembler::new(64)?;
    a.mov(ecx, 0x1a0u32)?;
    a.rdmsr()?;
    a.mov(dword_ptr(0x3000u64), eax)?;
    a.xor(eax, eax)?;
    a.xor(edx, edx)?;
    a.wrmsr()?;
    a.rdmsr()?;
    a.mov(dword_ptr(0x3004u64), eax)?;
    a.hlt()?;
    bus.put(0x8000, &a.assemble(0x8000)?);
    let (_, exit) = translator::interp::run(&mut cpu, &mut bus, 100);
    assert_eq!(exit, translator::Exit::Halted);
    let word =
        |at: u64| u32::from_le_bytes(std::array::from_fn(|k| bus.mem.get(&(at + k as u64)).copied().unwrap_or(0)));
    assert_eq!(word(0x3000), 0x1801, "fast strings, no BTS, no PEBS");
    assert_eq!(word(0x3004), 0x1800, "bit 0 cleared by software, bits 11 and 12 stay");
    Ok(())
}
