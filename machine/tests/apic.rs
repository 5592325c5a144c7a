//! The platform interrupt controllers and timers as a guest drives them, in 32-bit protected
//! mode: the local APIC timer in periodic, one-shot and TSC-deadline modes waking HLT, the PIT
//! routed through the IO-APIC (ISA IRQ0 on pin 2), then the HPET's timer 0 on the same line in
//! legacy replacement, the ACPI PM timer's rate against the TSC,
//! and power-off through PM1a_CNT (S5).

use iced_x86::code_asm::*;

use machine::{Machine, MachineConfig, Outcome};
use softmmu::PhysBus;

const APIC_TICKS: u64 = 0x500;
const PIT_TICKS: u64 = 0x504;
const PM_START: u64 = 0x510;
const PM_END: u64 = 0x514;
const TSC_START: u64 = 0x518;
const TSC_END: u64 = 0x51c;
const HPET_START: u64 = 0x520;
const HPET_END: u64 = 0x524;
const APIC: u64 = 0xfee0_0000;
const HPET: u64 = 0xfed0_0000;
const IOAPIC: u64 = 0xfec0_0000;

const MAIN32: u64 = 0xf1000;
const TIMER_HANDLER: u64 = 0xf2000;
const PIT_HANDLER: u64 = 0xf2100;
const SPURIOUS_HANDLER: u64 = 0xf2200;
const GDT: u64 = 0xff800;

fn place(rom: &mut [u8], at: u64, code: &[u8]) {
    let off = (at - 0xf0000) as usize;
    rom[off..off + code.len()].copy_from_slice(code);
}

/// Waits with interrupts on until the dword at `counter` reaches `n`.
fn wait_for(a: &mut CodeAssembler, counter: u64, n: u32) -> Result<(), IcedError> {
    let mut again = a.create_label();
    a.set_label(&mut again)?;
    a.sti()?;
    a.hlt()?;
    a.cli()?;
    a.cmp(dword_ptr(counter), n)?;
    a.jb(again)?;
    Ok(())
}

fn handler(counter: u64) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(32)?;
    a.inc(dword_ptr(counter))?;
    a.mov(dword_ptr(APIC + 0xb0), 0u32)?; // EOI
    a.iretd()?;
    a.assemble(0)
}

fn platform_rom() -> Result<Vec<u8>, IcedError> {
    let mut rom = vec![0xffu8; 0x10000];
    // Real-mode stub: load the GDT, enter protected mode, jump to MAIN32.
    let mut a = CodeAssembler::new(16)?;
    a.cli()?;
    a.mov(ax, cs)?;
    a.mov(ds, ax)?;
    a.lgdt(ptr(GDT + 0x18 - 0xf0000))?;
    a.mov(eax, cr0)?;
    a.or(eax, 1)?;
    a.mov(cr0, eax)?;
    let mut stub = a.assemble(0xe000)?;
    stub.extend_from_slice(&[0x66, 0xea]);
    stub.extend_from_slice(&(MAIN32 as u32).to_le_bytes());
    stub.extend_from_slice(&8u16.to_le_bytes());
    place(&mut rom, 0xfe000, &stub);
    place(&mut rom, 0xffff0, &[0xea, 0x00, 0xe0, 0x00, 0xf0]);
    // GDT: null, flat 32-bit code (0x08), flat data (0x10); its descriptor after it.
    let mut gdt = Vec::new();
    for d in [0u64, 0x00cf_9a00_0000_ffff, 0x00cf_9200_0000_ffff] {
        gdt.extend_from_slice(&d.to_le_bytes());
    }
    gdt.extend_from_slice(&23u16.to_le_bytes());
    gdt.extend_from_slice(&(GDT as u32).to_le_bytes());
    place(&mut rom, GDT, &gdt);

    place(&mut rom, TIMER_HANDLER, &handler(APIC_TICKS)?);
    place(&mut rom, PIT_HANDLER, &handler(PIT_TICKS)?);
    let mut s = CodeAssembler::new(32)?;
    s.iretd()?;
    place(&mut rom, SPURIOUS_HANDLER, &s.assemble(0)?);

    let mut a = CodeAssembler::new(32)?;
    a.mov(ax, 0x10u32)?;
    a.mov(ds, ax)?;
    a.mov(es, ax)?;
    a.mov(ss, ax)?;
    a.mov(esp, 0x7000u32)?;
    // IDT at 0x1000 with the three handlers.
    for (v, h) in [(0x40u64, TIMER_HANDLER), (0x30, PIT_HANDLER), (0xff, SPURIOUS_HANDLER)] {
        a.mov(dword_ptr(0x1000 + v * 8), (8u32 << 16) | (h as u32 & 0xffff))?;
        a.mov(dword_ptr(0x1000 + v * 8 + 4), (h as u32 & 0xffff_0000) | 0x8e00)?;
    }
    a.mov(word_ptr(0x900u64), 0x7ffu32)?;
    a.mov(dword_ptr(0x902u64), 0x1000u32)?;
    a.lidt(ptr(0x900u64))?;
    a.mov(dword_ptr(APIC_TICKS), 0u32)?;
    a.mov(dword_ptr(PIT_TICKS), 0u32)?;
    // APIC on (spurious vector 0xFF), LINT0 masked: the 8259A is out of the way.
    a.mov(dword_ptr(APIC + 0xf0), 0x1ffu32)?;
    a.mov(dword_ptr(APIC + 0x350), 0x1_0000u32)?;
    // Periodic timer, divide by 1, every 100 us: five ticks.
    a.mov(dword_ptr(APIC + 0x3e0), 0xbu32)?;
    a.mov(dword_ptr(APIC + 0x320), (1u32 << 17) | 0x40)?;
    a.mov(dword_ptr(APIC + 0x380), 100_000u32)?;
    wait_for(&mut a, APIC_TICKS, 5)?;
    a.mov(dword_ptr(APIC + 0x380), 0u32)?;
    // One-shot, divide by 16, 50 us.
    a.mov(dword_ptr(APIC + 0x3e0), 0x3u32)?;
    a.mov(dword_ptr(APIC + 0x320), 0x40u32)?;
    a.mov(dword_ptr(APIC + 0x380), 3125u32)?;
    wait_for(&mut a, APIC_TICKS, 6)?;
    // TSC deadline 100 us from now.
    a.mov(dword_ptr(APIC + 0x320), (2u32 << 17) | 0x40)?;
    a.rdtsc()?;
    a.add(eax, 100_000)?;
    a.adc(edx, 0)?;
    a.mov(ecx, 0x6e0u32)?;
    a.wrmsr()?;
    wait_for(&mut a, APIC_TICKS, 7)?;
    // The PIT at 1 kHz through IO-APIC pin 2, vector 0x30, edge, unmasked.
    a.mov(dword_ptr(IOAPIC), 0x14u32)?;
    a.mov(dword_ptr(IOAPIC + 0x10), 0x30u32)?;
    a.mov(dword_ptr(IOAPIC), 0x15u32)?;
    a.mov(dword_ptr(IOAPIC + 0x10), 0u32)?;
    a.mov(al, 0x34u32)?;
    a.out(0x43u32, al)?;
    a.mov(al, 0xa9u32)?; // 1193 = 0x04a9
    a.out(0x40u32, al)?;
    a.mov(al, 0x04u32)?;
    a.out(0x40u32, al)?;
    wait_for(&mut a, PIT_TICKS, 3)?;
    // HPET timer 0 in legacy replacement, periodic every 200 us, 32-bit as Linux sets it up:
    // IRQ0 again, now from the HPET (the PIT is disconnected).
    a.rdtsc()?;
    a.mov(dword_ptr(HPET_START), eax)?;
    a.mov(dword_ptr(HPET + 0x100), 0x14cu32)?;
    a.mov(dword_ptr(HPET + 0x108), 20_000u32)?;
    a.mov(dword_ptr(HPET + 0x108), 20_000u32)?;
    a.mov(dword_ptr(HPET + 0x10), 3u32)?;
    wait_for(&mut a, PIT_TICKS, 6)?;
    a.mov(dword_ptr(HPET + 0x10), 0u32)?;
    a.rdtsc()?;
    a.mov(dword_ptr(HPET_END), eax)?;
    a.mov(dword_ptr(IOAPIC), 0x14u32)?;
    a.mov(dword_ptr(IOAPIC + 0x10), 0x1_0030u32)?;
    // The PM timer against the TSC over a busy loop.
    a.mov(dx, 0x608u32)?;
    a.in_(eax, dx)?;
    a.mov(dword_ptr(PM_START), eax)?;
    a.rdtsc()?;
    a.mov(dword_ptr(TSC_START), eax)?;
    a.mov(ecx, 200_000u32)?;
    let mut spin = a.create_label();
    a.set_label(&mut spin)?;
    a.dec(ecx)?;
    a.jnz(spin)?;
    a.mov(dx, 0x608u32)?;
    a.in_(eax, dx)?;
    a.mov(dword_ptr(PM_END), eax)?;
    a.rdtsc()?;
    a.mov(dword_ptr(TSC_END), eax)?;
    // S5: SLP_TYP 0 with SLP_EN.
    a.mov(dx, 0x604u32)?;
    a.mov(ax, 0x2000u32)?;
    a.out(dx, ax)?;
    a.hlt()?;
    let main = a.assemble(MAIN32)?;
    place(&mut rom, MAIN32, &main);
    Ok(rom)
}

fn dword(m: &mut Machine, addr: u64) -> u32 {
    let mut b = [0u8; 4];
    m.bus.mem.read_bytes(addr, &mut b);
    u32::from_le_bytes(b)
}

#[test]
fn apic_timer_modes_ioapic_routing_pm_timer_and_power_off() -> Result<(), IcedError> {
    let mut m = Machine::new(MachineConfig::new(16 << 20, platform_rom()?)).expect("machine");
    let outcome = m.run(50_000_000);
    assert_eq!(outcome, Outcome::PowerOff);
    assert_eq!(dword(&mut m, APIC_TICKS), 7);
    assert_eq!(dword(&mut m, PIT_TICKS), 6);
    let hpet_us = dword(&mut m, HPET_END).wrapping_sub(dword(&mut m, HPET_START)) / 1000;
    assert!((550..=700).contains(&hpet_us), "three HPET periods took {hpet_us} us");
    let pm = dword(&mut m, PM_END).wrapping_sub(dword(&mut m, PM_START)) & 0xff_ffff;
    let tsc = dword(&mut m, TSC_END).wrapping_sub(dword(&mut m, TSC_START));
    let hz = u64::from(pm) * 1_000_000_000 / u64::from(tsc);
    assert!((3_570_000..=3_590_000).contains(&hz), "PM timer at {hz} Hz over {tsc} TSC ticks");
    // Five 100 us periods, 50 us, 100 us, three 1 ms PIT periods, three 200 us HPET periods,
    // mostly halted.
    let us = m.now_ns() / 1000;
    assert!((3_500..=5_000).contains(&us), "{us} us of virtual time");
    Ok(())
}

#[test]
fn triple_fault_still_ends_the_run_as_a_fault() -> Result<(), IcedError> {
    let mut a = CodeAssembler::new(16)?;
    a.xor(ax, ax)?;
    a.mov(ds, ax)?;
    a.mov(word_ptr(0x900u64), 0u32)?;
    a.mov(dword_ptr(0x902u64), 0u32)?;
    a.lidt(ptr(0x900u64))?;
    a.int3()?;
    let code = a.assemble(0xe000)?;
    let mut rom = vec![0xffu8; 0x10000];
    place(&mut rom, 0xfe000, &code);
    place(&mut rom, 0xffff0, &[0xea, 0x00, 0xe0, 0x00, 0xf0]);
    let mut m = Machine::new(MachineConfig::new(16 << 20, rom)).expect("machine");
    assert_eq!(m.run(1_000_000), Outcome::TripleFault);
    Ok(())
}

/// 64-bit code: CR8 and the APIC's TPR are one register, the APIC window moves with
/// IA32_APIC_BASE, the TPR holds back a lower-class interrupt, and IA32_TSC_DEADLINE reads
/// back in TSC units.
#[test]
fn cr8_is_the_tpr_and_the_apic_window_moves() -> Result<(), IcedError> {
    use frontend_x86::state::{attr, cr0, cr4, efer};
    use frontend_x86::{SegReg, Segment};
    const NEW_BASE: u64 = 0x10_0000;
    const OUT: u64 = 0x3000;
    let mut m = Machine::new(MachineConfig::new(16 << 20, vec![0xf4; 0x10000])).expect("machine");
    // Identity map of the first 2 MiB.
    m.bus.mem.write_bytes(0x20000, &0x21007u64.to_le_bytes());
    m.bus.mem.write_bytes(0x21000, &0x22007u64.to_le_bytes());
    m.bus.mem.write_bytes(0x22000, &0x87u64.to_le_bytes());
    let mut a = CodeAssembler::new(64)?;
    a.mov(ecx, 0x1bu32)?;
    a.mov(eax, (NEW_BASE | 0x900) as u32)?;
    a.xor(edx, edx)?;
    a.wrmsr()?;
    a.mov(dword_ptr(NEW_BASE + 0xf0), 0x1ffu32)?;
    a.mov(eax, 5u32)?;
    a.mov(cr8, rax)?;
    a.mov(ebx, dword_ptr(NEW_BASE + 0x80))?;
    a.mov(qword_ptr(OUT), rbx)?;
    a.mov(dword_ptr(NEW_BASE + 0x80), 0x90u32)?;
    a.mov(rdx, cr8)?;
    a.mov(qword_ptr(OUT + 8), rdx)?;
    // A self-IPI in class 8, below the TPR's class 9.
    a.mov(dword_ptr(NEW_BASE + 0x300), 0x4_0085u32)?;
    a.mov(dword_ptr(NEW_BASE + 0x320), 0x4_0040u32)?;
    a.mov(ecx, 0x6e0u32)?;
    a.mov(eax, 0x7fff_ffffu32)?;
    a.xor(edx, edx)?;
    a.wrmsr()?;
    a.rdmsr()?;
    a.mov(dword_ptr(OUT + 16), eax)?;
    a.hlt()?;
    let code = a.assemble(0x8000)?;
    m.bus.mem.write_bytes(0x8000, &code);
    m.cpu.cr0 |= cr0::PE | cr0::PG;
    m.cpu.cr3 = 0x20000;
    m.cpu.cr4 |= cr4::PAE;
    m.cpu.efer |= efer::LME | efer::LMA;
    let data = Segment {
        selector: 0x10,
        base: 0,
        limit: 0xffff_ffff,
        attr: attr::P | attr::S | attr::RW | attr::ACCESSED | attr::DB | attr::G,
    };
    m.cpu.seg = [data; 6];
    m.cpu.seg[SegReg::Cs as usize] = Segment {
        selector: 0x08,
        base: 0,
        limit: 0xffff_ffff,
        attr: attr::P | attr::S | attr::CODE | attr::RW | attr::ACCESSED | attr::L | attr::G,
    };
    m.cpu.rip = 0x8000;
    m.interp.flush(&mut m.cpu);
    let (_, exit) = m.interp.run(&mut m.cpu, &mut m.bus, 1000);
    assert_eq!(exit, translator::Exit::Halted);
    let q = |m: &mut Machine, at: u64| {
        let mut b = [0u8; 8];
        m.bus.mem.read_bytes(at, &mut b);
        u64::from_le_bytes(b)
    };
    assert_eq!(q(&mut m, OUT), 0x50, "CR8 = 5 is TPR 0x50");
    assert_eq!(q(&mut m, OUT + 8), 9, "TPR 0x90 is CR8 = 9");
    assert_eq!(q(&mut m, OUT + 16) & 0xffff_ffff, 0x7fff_ffff);
    assert_eq!(m.bus.apic.mmio_base(), NEW_BASE);
    assert!(!m.bus.interrupt_pending(), "the TPR holds back vector 0x85");
    m.bus.apic.set_tpr(0x70);
    assert!(m.bus.interrupt_pending());
    Ok(())
}
