//! Virtual-8086 mode: IRET from a 32-bit kernel into a V86 task, real-mode addressing inside
//! it, INT n through the protected-mode IDT with the V86 frame (segment registers pushed,
//! then nulled), IRET back into V86, and a privileged instruction there raising #GP(0).

use cranebox_tests::{protected_mode_cpu, SparseBus};
use frontend_x86::state::attr;
use frontend_x86::{Gpr, SegReg, Segment, Width};
use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;

const GDT: u64 = 0x500;
const IDT: u64 = 0x1000;
const TSS: u64 = 0x1800;
const KERNEL: u64 = 0x8000;
const RESULTS: u64 = 0x3000;
const V86_CS: u16 = 0x2000;
const V86_DS: u16 = 0x2100;

fn gate(offset: u64, dpl: u64) -> u64 {
    (offset & 0xffff) | (0x08 << 16) | ((0x8e | dpl << 5) << 40) | ((offset >> 16) << 48)
}

#[test]
fn v86_task_int_through_the_idt_and_gp_on_hlt() -> Result<(), IcedError> {
    let mut bus = SparseBus::new(32);
    let mut k = CodeAssembler::new(32)?;
    let mut int21 = k.create_label();
    let mut gp = k.create_label();
    // The IRET frame into V86 mode: GS, FS, DS, ES, SS, ESP, EFLAGS (VM, IOPL 3), CS, EIP.
    for v in [0x2200u32, 0x2300, u32::from(V86_DS), 0x2400, 0x2500, 0xfffe, 0x0002_3002, u32::from(V86_CS), 0] {
        k.push(v)?;
    }
    k.iretd()?;
    // INT 21h from V86: record the 9-dword frame, then return into V86.
    k.set_label(&mut int21)?;
    k.push(0x10u32)?;
    k.pop(ds)?;
    for n in 0..9u32 {
        k.mov(eax, dword_ptr(esp + 4 * n))?;
        k.mov(dword_ptr(RESULTS as u32 + 4 * n), eax)?;
    }
    k.mov(eax, 0u32)?;
    k.mov(ax, ds)?;
    k.iretd()?;
    // #GP from V86 (the HLT): record error code and EIP, stop in the kernel.
    k.set_label(&mut gp)?;
    k.push(0x10u32)?;
    k.pop(ds)?;
    k.mov(eax, dword_ptr(esp))?;
    k.mov(dword_ptr(RESULTS as u32 + 0x40), eax)?;
    k.mov(eax, dword_ptr(esp + 4))?;
    k.mov(dword_ptr(RESULTS as u32 + 0x44), eax)?;
    k.mov(eax, dword_ptr(esp + 12))?;
    k.mov(dword_ptr(RESULTS as u32 + 0x48), eax)?;
    k.hlt()?;
    let r = k.assemble_options(KERNEL, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    bus.put(KERNEL, &r.inner.code_buffer);
    bus.put(IDT + 0x21 * 8, &gate(r.label_ip(&int21)?, 3).to_le_bytes());
    bus.put(IDT + 13 * 8, &gate(r.label_ip(&gp)?, 0).to_le_bytes());

    // V86 code at 2000:0000: read DS:10, write it to DS:20, INT 21h, HLT.
    let mut v = CodeAssembler::new(16)?;
    v.mov(ax, word_ptr(0x10))?;
    v.mov(word_ptr(0x20), ax)?;
    v.int(0x21)?;
    let hlt_at = v.assemble(0)?.len() as u64;
    v.hlt()?;
    bus.put(u64::from(V86_CS) << 4, &v.assemble(0)?);
    bus.put((u64::from(V86_DS) << 4) + 0x10, &[0xef, 0xbe]);

    bus.put(GDT + 8, &0x00cf_9a00_0000_ffffu64.to_le_bytes());
    bus.put(GDT + 16, &0x00cf_9200_0000_ffffu64.to_le_bytes());
    bus.put(TSS + 4, &0x9000u32.to_le_bytes());
    bus.put(TSS + 8, &0x10u16.to_le_bytes());
    bus.put(TSS + 0x66, &0x68u16.to_le_bytes());

    let mut cpu = protected_mode_cpu(GDT, 23, IDT);
    cpu.tr = Segment { selector: 0x28, base: TSS, limit: 0x67, attr: attr::P | 0xb };
    cpu.rip = KERNEL;
    cpu.set_reg(Gpr::Rsp, Width::W32, 0x9000);

    let (_, exit) = translator::run(&mut cpu, &mut bus, 1000);
    assert_eq!(exit, translator::Exit::Halted, "at {:x}", cpu.rip);
    // Real-mode addressing inside V86.
    assert_eq!(bus.get((u64::from(V86_DS) << 4) + 0x20, 2), 0xbeef);
    // The INT 21h frame: EIP, CS, EFLAGS, ESP, SS, ES, DS, FS, GS.
    assert_eq!(bus.get(RESULTS, 4), hlt_at, "EIP after INT 21h");
    assert_eq!(bus.get(RESULTS + 4, 4), u64::from(V86_CS));
    assert_ne!(bus.get(RESULTS + 8, 4) & (1 << 17), 0, "VM in the pushed EFLAGS");
    assert_eq!(bus.get(RESULTS + 12, 4), 0xfffe);
    assert_eq!(bus.get(RESULTS + 16, 4), 0x2500);
    assert_eq!(bus.get(RESULTS + 20, 4), 0x2400, "ES");
    assert_eq!(bus.get(RESULTS + 24, 4), u64::from(V86_DS), "DS");
    assert_eq!(bus.get(RESULTS + 28, 4), 0x2300, "FS");
    assert_eq!(bus.get(RESULTS + 32, 4), 0x2200, "GS");
    // HLT in V86 (CPL 3): #GP(0) with the V86 CS:EIP of the HLT.
    assert_eq!(bus.get(RESULTS + 0x40, 4), 0, "error code");
    assert_eq!(bus.get(RESULTS + 0x44, 4), hlt_at);
    assert_eq!(bus.get(RESULTS + 0x48, 4) & (1 << 17), 1 << 17);
    assert!(!cpu.v86());
    assert_eq!(cpu.cpl, 0);
    assert_eq!(cpu.seg[SegReg::Ss as usize].selector, 0x10, "ring-0 stack from the TSS");
    Ok(())
}
