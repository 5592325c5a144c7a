//! Model-specific registers an OS configures at boot. IA32_MISC_ENABLE as firmware leaves
//! it on a real PC: fast string operations enabled (Linux disables its REP-string preference
//! and says so when bit 0 is clear), branch trace storage and PEBS unavailable (read-only).
//! The MTRRs and the PAT with the SDM's checks (vol. 3, 12.11 and 12.12).

use cranebox_tests::{identity_2m, long_mode_cpu, SparseBus};
use frontend_x86::{CpuState, Gpr, Width};
use iced_x86::code_asm::*;

/// A 64-bit kernel at 0x8000 with the first 2 MiB identity-mapped.
fn machine() -> (CpuState, SparseBus) {
    let mut bus = SparseBus::new(32);
    let mut cpu = long_mode_cpu(identity_2m(&mut bus, 0x20000));
    cpu.rip = 0x8000;
    (cpu, bus)
}

/// WRMSR `msr` with `v`: whether it raised #GP (the IDT is empty, so the exception is counted
/// and the CPU shuts down or halts; the interpreter's statistics tell).
fn wrmsr_faults(msr: u32, v: u64) -> Result<bool, IcedError> {
    let (mut cpu, mut bus) = machine();
    let mut a = CodeAssembler::new(64)?;
    a.mov(ecx, msr)?;
    a.mov(eax, v as u32)?;
    a.mov(edx, (v >> 32) as u32)?;
    a.wrmsr()?;
    a.hlt()?;
    bus.put(0x8000, &a.assemble(0x8000)?);
    let mut tier = translator::Interpreter::new();
    tier.run(&mut cpu, &mut bus, 100);
    Ok(tier.stats.exceptions > 0)
}

#[test]
fn mtrrs_and_pat_take_valid_values_and_refuse_reserved_ones() -> Result<(), IcedError> {
    // MTRRCAP: 8 variable ranges, fixed ranges, WC.
    let (mut cpu, mut bus) = machine();
    let mut a = CodeAssembler::new(64)?;
    a.mov(ecx, 0xfeu32)?;
    a.rdmsr()?;
    a.hlt()?;
    bus.put(0x8000, &a.assemble(0x8000)?);
    translator::interp::run(&mut cpu, &mut bus, 100);
    assert_eq!(cpu.reg(Gpr::Rax, Width::W32), 0x508);
    for (msr, v, faults) in [
        (0x2ff, 0xc06, false),                 // enabled, fixed enabled, WB
        (0x2ff, 0xc02, true),                  // type 2 is reserved
        (0x2ff, 0x1006, true),                 // bit 12 reserved
        (0x277, 0x0007_0406_0007_0406, false), // the PAT's power-on value
        (0x277, 0x0007_0406_0007_0402, true),  // type 2
        (0x277, 0x0007_0406_0007_0408, true),  // type 8
        (0x200, 0xe000_0000, false),           // PHYSBASE0: UC
        (0x200, 0xe000_0100, true),            // bits 11:8 reserved
        (0x201, 0xff_e000_0800, false),        // PHYSMASK0: 512 MiB, valid
        (0x201, 0x100_e000_0800, true),        // past MAXPHYADDR (40 bits)
        (0x201, 0xff_e000_0001, true),         // bits 10:0 reserved
        (0x250, 0x0606_0606_0606_0606, false),
        (0x26f, 0x0505_0505_0505_0505, false),
        (0x268, 0x0505_0505_0505_0503, true), // type 3
        (0x25a, 0, true),                     // not an MTRR
    ] {
        assert_eq!(wrmsr_faults(msr, v)?, faults, "WRMSR {msr:#x} <- {v:#x}");
    }
    Ok(())
}

#[test]
fn misc_enable_has_fast_strings_at_power_on_and_keeps_its_read_only_bits() -> Result<(), IcedError> {
    let (mut cpu, mut bus) = machine();
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
