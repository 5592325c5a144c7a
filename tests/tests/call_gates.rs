//! A far CALL from ring 3 through a 32-bit call gate into ring 0: the stack switch from the
//! TSS, the parameters copied across, RETF with an immediate back to ring 3; then port I/O at
//! CPL 3 with IOPL 0 decided by the TSS I/O permission bitmap.

use cranebox_tests::{flat_segment, protected_mode_cpu, SparseBus};
use frontend_x86::state::attr;
use frontend_x86::{Gpr, SegReg, Segment, Width};
use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;

const GDT: u64 = 0x500;
const IDT: u64 = 0x1800;
const TSS: u64 = 0x1000;
const KERNEL: u64 = 0x8000;
const USER: u64 = 0x9800;
const RESULTS: u64 = 0x3000;

#[test]
fn call_gate_with_parameters_and_the_io_permission_bitmap() -> Result<(), IcedError> {
    let mut bus = SparseBus::new(32);
    // Kernel side: the gate's target records its stack, returns with RETF 8; the #GP handler
    // records the fault and halts.
    let mut k = CodeAssembler::new(32)?;
    let mut gp = k.create_label();
    k.push(0x10u32)?;
    k.pop(ds)?;
    for n in 0..6u32 {
        k.mov(eax, dword_ptr(esp + 4 * n))?;
        k.mov(dword_ptr(RESULTS as u32 + 4 * n), eax)?;
    }
    k.mov(dword_ptr(RESULTS as u32 + 0x18), esp)?;
    k.push(0x23u32)?;
    k.pop(ds)?;
    k.retf_1(8)?;
    k.set_label(&mut gp)?;
    k.push(0x10u32)?;
    k.pop(ds)?;
    k.pop(eax)?;
    k.mov(dword_ptr(RESULTS as u32 + 0x20), eax)?;
    k.mov(eax, dword_ptr(esp))?;
    k.mov(dword_ptr(RESULTS as u32 + 0x24), eax)?;
    k.hlt()?;
    let r = k.assemble_options(KERNEL, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let gp_ip = r.label_ip(&gp)?;
    bus.put(KERNEL, &r.inner.code_buffer);

    // User side: two parameters, CALL FAR through the gate, then port I/O.
    let mut u = CodeAssembler::new(32)?;
    let mut denied = u.create_label();
    let mut back = u.create_label();
    u.push(0x1111u32)?;
    u.push(0x2222u32)?;
    u.db(&[0x9a, 0, 0, 0, 0, 0x33, 0x00])?; // call 0x33:0 (the gate, RPL 3)
    u.set_label(&mut back)?;
    u.mov(dword_ptr(RESULTS as u32 + 0x1c), esp)?;
    u.mov(al, 0x5au32)?;
    u.out(0x80u32, al)?; // allowed by the bitmap
    u.set_label(&mut denied)?;
    u.out(0x81u32, al)?; // denied: #GP(0)
    u.hlt()?;
    let r = u.assemble_options(USER, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let denied_ip = r.label_ip(&denied)?;
    let after_call = r.label_ip(&back)?;
    bus.put(USER, &r.inner.code_buffer);

    let gdt = [
        0u64,
        0x00cf_9a00_0000_ffff,               // 0x08 ring-0 code
        0x00cf_9200_0000_ffff,               // 0x10 ring-0 data
        0x00cf_fa00_0000_ffff,               // 0x18 ring-3 code
        0x00cf_f200_0000_ffff,               // 0x20 ring-3 data
        0x0000_8900_0000_0089 | (TSS << 16), // 0x28 TSS, limit 0x89 (bitmap for ports 0-255)
        // 0x30 32-bit call gate, DPL 3, 2 parameters, to 0x08:KERNEL.
        (KERNEL & 0xffff) | (0x08 << 16) | (2 << 32) | (0xec << 40) | ((KERNEL >> 16) << 48),
    ];
    for (n, d) in gdt.iter().enumerate() {
        bus.put(GDT + 8 * n as u64, &d.to_le_bytes());
    }
    let gate = (gp_ip & 0xffff) | (0x08 << 16) | (0x8e << 40) | ((gp_ip >> 16) << 48);
    bus.put(IDT + 13 * 8, &gate.to_le_bytes());
    bus.put(TSS + 4, &0x9000u32.to_le_bytes());
    bus.put(TSS + 8, &0x10u16.to_le_bytes());
    bus.put(TSS + 0x66, &0x68u16.to_le_bytes());
    bus.put(TSS + 0x68 + 0x10, &[0x02]); // ports 0x80-0x87: only 0x81 denied

    let mut cpu = protected_mode_cpu(GDT, (gdt.len() * 8 - 1) as u16, IDT);
    // Start in ring 3.
    cpu.seg = [flat_segment(0x23, false, false); 6];
    cpu.seg[SegReg::Cs as usize] = flat_segment(0x1b, true, false);
    cpu.cpl = 3;
    cpu.tr = Segment { selector: 0x28, base: TSS, limit: 0x89, attr: attr::P | 0xb };
    cpu.rip = USER;
    cpu.set_reg(Gpr::Rsp, Width::W32, 0xa000);

    let (_, exit) = translator::run(&mut cpu, &mut bus, 1000);
    assert_eq!(exit, translator::Exit::Halted, "at {:x}", cpu.rip);
    // The ring-0 stack: EIP, CS, the two parameters (in their order), ESP, SS of the caller.
    assert_eq!(bus.get(RESULTS, 4), after_call);
    assert_eq!(bus.get(RESULTS + 4, 4), 0x1b);
    assert_eq!(bus.get(RESULTS + 8, 4), 0x2222);
    assert_eq!(bus.get(RESULTS + 12, 4), 0x1111);
    assert_eq!(bus.get(RESULTS + 16, 4), 0xa000 - 8, "the caller's ESP after its pushes");
    assert_eq!(bus.get(RESULTS + 20, 4), 0x23);
    assert_eq!(bus.get(RESULTS + 0x18, 4), 0x9000 - 24, "six dwords on the TSS stack");
    // RETF 8 released the parameters on the ring-3 stack too.
    assert_eq!(bus.get(RESULTS + 0x1c, 4), 0xa000);
    // OUT 0x80 went through; OUT 0x81 raised #GP(0) at the OUT.
    assert!(bus.io_log.iter().any(|&(p, _, v, w)| p == 0x80 && v == 0x5a && w));
    assert!(!bus.io_log.iter().any(|&(p, _, _, w)| p == 0x81 && w));
    assert_eq!(bus.get(RESULTS + 0x20, 4), 0, "#GP error code");
    assert_eq!(bus.get(RESULTS + 0x24, 4), denied_ip);
    assert_eq!(cpu.cpl, 0);
    Ok(())
}
