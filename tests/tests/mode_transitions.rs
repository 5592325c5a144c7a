//! A guest that does what a boot loader does: starts in real mode, takes an exception through
//! the IVT, enters 32-bit protected mode with a GDT/IDT/TSS, takes a #GP with an error code,
//! drops to ring 3 with IRET, comes back through a DPL-3 trap gate with a stack switch from
//! the TSS, and faults in ring 3 (CLI with IOPL 0). Handlers record what the CPU pushed; the
//! test checks every frame against the SDM.

use cranebox_tests::SparseBus;
use frontend_x86::{CpuState, Gpr, SegReg, Width};
use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;

const GDT: u64 = 0x500;
const IDT: u64 = 0x600;
const TSS: u64 = 0x1000;
const RESULTS: u64 = 0x3000;
const GDTR: u64 = 0x3100;
const IDTR: u64 = 0x3108;
const REAL_CODE: u64 = 0x7c00;
const PM_CODE: u64 = 0x8000;
const RING0_STACK: u32 = 0x9000;
const RING3_STACK: u32 = 0xa000;

/// A code/data descriptor: flat 4 GiB, 32-bit, with the given access byte.
fn seg_desc(access: u64) -> u64 {
    0x00cf_0000_0000_ffff | (access << 40)
}

/// A 32-bit interrupt/trap gate.
fn gate(offset: u64, sel: u64, type_attr: u64) -> u64 {
    (offset & 0xffff) | (sel << 16) | (type_attr << 40) | ((offset >> 16) << 48)
}

fn real_mode_code() -> Result<(Vec<u8>, u64), IcedError> {
    let mut a = CodeAssembler::new(16)?;
    let mut ud_handler = a.create_label();
    let mut faulting = a.create_label();
    a.cli()?;
    a.xor(ax, ax)?;
    a.mov(ds, ax)?;
    a.mov(ss, ax)?;
    a.mov(sp, 0x7000u32)?;
    a.mov(word_ptr(6 * 4), 0u32)?; // patched below with the handler offset
    a.mov(word_ptr(6 * 4 + 2), 0u32)?;
    a.set_label(&mut faulting)?;
    a.ud2()?;
    a.mov(word_ptr(RESULTS), ax)?;
    a.lgdt(word_ptr(GDTR))?;
    a.mov(eax, cr0)?;
    a.or(eax, 1)?;
    a.mov(cr0, eax)?;
    // jmp dword 0x08:PM_CODE
    a.db(&[0x66, 0xea])?;
    a.db(&(PM_CODE as u32).to_le_bytes())?;
    a.db(&[0x08, 0x00])?;
    a.set_label(&mut ud_handler)?;
    a.mov(ax, 0x5252u32)?;
    a.mov(bp, sp)?;
    a.mov(bx, word_ptr(bp))?;
    a.mov(word_ptr(RESULTS + 2), bx)?;
    a.mov(bx, word_ptr(bp + 2))?;
    a.mov(word_ptr(RESULTS + 4), bx)?;
    a.mov(bx, word_ptr(bp + 4))?;
    a.mov(word_ptr(RESULTS + 6), bx)?;
    a.add(word_ptr(bp), 2)?;
    a.iret()?;
    let r = a.assemble_options(REAL_CODE, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let handler = r.label_ip(&ud_handler)?;
    let ud = r.label_ip(&faulting)?;
    let mut code = r.inner.code_buffer;
    // Patch the IVT store: `mov word [0x18], imm16` is C7 06 18 00 lo hi.
    let pos = code.windows(4).position(|w| w == [0xc7, 0x06, 0x18, 0x00]).expect("ivt store");
    code[pos + 4..pos + 6].copy_from_slice(&(handler as u16).to_le_bytes());
    Ok((code, ud))
}

struct Pm {
    code: Vec<u8>,
    gp_handler: u64,
    int80_handler: u64,
    mov_ds: u64,
    after_int80: u64,
}

/// Assembled twice: the first pass finds where the ring-3 code lands, the second pushes that
/// address (a 32-bit immediate either way, so nothing moves).
fn protected_mode_code(user_ip: u32) -> Result<(Pm, u64), IcedError> {
    let mut a = CodeAssembler::new(32)?;
    let mut gp = a.create_label();
    let mut int80 = a.create_label();
    let mut mov_ds = a.create_label();
    let mut user = a.create_label();
    let mut after_int80 = a.create_label();
    let mut from_user = a.create_label();
    a.mov(ax, 0x10u32)?;
    a.mov(ds, ax)?;
    a.mov(es, ax)?;
    a.mov(ss, ax)?;
    a.mov(esp, RING0_STACK)?;
    a.lidt(dword_ptr(IDTR as u32))?;
    a.mov(ax, 0x28u32)?;
    a.ltr(ax)?;
    a.mov(ax, 0x1230u32)?;
    a.set_label(&mut mov_ds)?;
    // `mov ds, ax` in its two-byte form (the handler skips two bytes): GDT index 0x246 is
    // past the limit, so #GP(0x1230).
    a.db(&[0x8e, 0xd8])?;
    // To ring 3: SS, ESP, EFLAGS, CS, EIP for IRETD.
    a.push(0x23u32)?;
    a.push(RING3_STACK)?;
    a.pushfd()?;
    a.push(0x1bu32)?;
    a.push(user_ip)?;
    a.iretd()?;

    a.set_label(&mut user)?;
    a.mov(eax, 0x1111u32)?;
    a.int(0x80)?;
    a.set_label(&mut after_int80)?;
    a.cli()?; // IOPL 0 at CPL 3: #GP(0)
    a.hlt()?;

    // #GP handler (interrupt gate, ring 0).
    a.set_label(&mut gp)?;
    // The return to ring 3 nulled DS (its DPL 0 is below CPL 3): reload it.
    a.push(0x10u32)?;
    a.pop(ds)?;
    a.pop(eax)?; // error code
    a.mov(ecx, dword_ptr(esp + 4))?; // CS
    a.test(ecx, 3)?;
    a.jnz(from_user)?;
    a.mov(dword_ptr(RESULTS as u32 + 0x10), eax)?;
    a.mov(edx, dword_ptr(esp))?;
    a.mov(dword_ptr(RESULTS as u32 + 0x14), edx)?;
    a.mov(dword_ptr(RESULTS as u32 + 0x18), ecx)?;
    a.add(dword_ptr(esp), 2)?; // skip `mov ds, ax`
    a.iretd()?;
    a.set_label(&mut from_user)?;
    a.mov(dword_ptr(RESULTS as u32 + 0x30), eax)?;
    a.mov(edx, dword_ptr(esp))?;
    a.mov(dword_ptr(RESULTS as u32 + 0x34), edx)?;
    a.mov(dword_ptr(RESULTS as u32 + 0x38), ecx)?;
    a.mov(edx, dword_ptr(esp + 12))?;
    a.mov(dword_ptr(RESULTS as u32 + 0x3c), edx)?;
    a.hlt()?;

    // INT 0x80 handler (trap gate, DPL 3, ring 0): record the frame.
    a.set_label(&mut int80)?;
    a.push(0x10u32)?;
    a.pop(ds)?;
    for k in 0..5u32 {
        a.mov(edx, dword_ptr(esp + 4 * k))?;
        a.mov(dword_ptr(RESULTS as u32 + 0x50 + 4 * k), edx)?;
    }
    a.mov(dword_ptr(RESULTS as u32 + 0x64), esp)?;
    a.mov(ebx, 0x2222u32)?;
    a.iretd()?;

    let r = a.assemble_options(PM_CODE, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let user_at = r.label_ip(&user)?;
    Ok((
        Pm {
            gp_handler: r.label_ip(&gp)?,
            int80_handler: r.label_ip(&int80)?,
            mov_ds: r.label_ip(&mov_ds)?,
            after_int80: r.label_ip(&after_int80)?,
            code: r.inner.code_buffer,
        },
        user_at,
    ))
}

#[test]
fn real_to_protected_to_ring3_and_back_with_exact_exception_frames() -> Result<(), IcedError> {
    let mut bus = SparseBus::new(32);
    let (real, ud_ip) = real_mode_code()?;
    let (_, user_at) = protected_mode_code(0x7fff_ffff)?;
    let (pm, again) = protected_mode_code(user_at as u32)?;
    assert_eq!(again, user_at);
    bus.put(REAL_CODE, &real);
    bus.put(PM_CODE, &pm.code);

    let gdt = [
        0,
        seg_desc(0x9a),                      // 0x08 ring-0 code
        seg_desc(0x92),                      // 0x10 ring-0 data
        seg_desc(0xfa),                      // 0x18 ring-3 code
        seg_desc(0xf2),                      // 0x20 ring-3 data
        0x0000_8900_0000_0067 | (TSS << 16), // 0x28 32-bit TSS, limit 0x67
    ];
    for (k, d) in gdt.iter().enumerate() {
        bus.put(GDT + 8 * k as u64, &d.to_le_bytes());
    }
    bus.put(GDTR, &[(gdt.len() * 8 - 1) as u8, 0]);
    bus.put(GDTR + 2, &(GDT as u32).to_le_bytes());
    bus.put(IDT + 13 * 8, &gate(pm.gp_handler, 0x08, 0x8e).to_le_bytes());
    bus.put(IDT + 0x80 * 8, &gate(pm.int80_handler, 0x08, 0xef).to_le_bytes());
    bus.put(IDTR, &[0xff, 0x07]);
    bus.put(IDTR + 2, &(IDT as u32).to_le_bytes());
    bus.put(TSS + 4, &RING0_STACK.to_le_bytes()); // ESP0
    bus.put(TSS + 8, &[0x10, 0]); // SS0
    bus.put(TSS + 0x66, &[0x68, 0]); // no I/O bitmap

    let mut cpu = CpuState::new();
    cpu.seg[SegReg::Cs as usize] = frontend_x86::Segment::real_mode_code(0);
    cpu.rip = REAL_CODE;
    cpu.idtr.limit = 0x3ff;
    let (_, exit) = translator::run(&mut cpu, &mut bus, 10_000);
    assert_eq!(exit, translator::Exit::Halted, "cpu at {:x}:{:x}", cpu.seg[1].selector, cpu.rip);

    // Real mode #UD: IP of the faulting UD2, CS 0.
    assert_eq!(bus.get(RESULTS, 2), 0x5252);
    assert_eq!(bus.get(RESULTS + 2, 2), ud_ip);
    assert_eq!(bus.get(RESULTS + 4, 2), 0, "CS");
    // FLAGS as `mov word [0x1a], imm` left them after `xor ax, ax` (ZF, PF, bit 1).
    assert_eq!(bus.get(RESULTS + 6, 2), 0x46, "FLAGS");
    // Protected mode #GP from a selector past the GDT limit: error code = selector index.
    assert_eq!(bus.get(RESULTS + 0x10, 4), 0x1230);
    assert_eq!(bus.get(RESULTS + 0x14, 4), pm.mov_ds);
    assert_eq!(bus.get(RESULTS + 0x18, 4), 0x08);
    // INT 0x80 from ring 3: EIP, CS, EFLAGS, ESP, SS on the ring-0 stack from the TSS.
    assert_eq!(bus.get(RESULTS + 0x50, 4), pm.after_int80);
    assert_eq!(bus.get(RESULTS + 0x54, 4), 0x1b);
    assert_eq!(bus.get(RESULTS + 0x58, 4) & 0x3000, 0, "IOPL 0");
    assert_eq!(bus.get(RESULTS + 0x5c, 4), u64::from(RING3_STACK));
    assert_eq!(bus.get(RESULTS + 0x60, 4), 0x23);
    assert_eq!(bus.get(RESULTS + 0x64, 4), u64::from(RING0_STACK) - 20);
    // CLI at CPL 3 with IOPL 0: #GP(0) from ring 3, with the user ESP on the frame.
    assert_eq!(bus.get(RESULTS + 0x30, 4), 0);
    assert_eq!(bus.get(RESULTS + 0x34, 4), pm.after_int80, "the CLI right after INT 0x80");
    assert_eq!(bus.get(RESULTS + 0x38, 4), 0x1b);
    assert_eq!(bus.get(RESULTS + 0x3c, 4), u64::from(RING3_STACK));
    // The CPU ends in ring 0 on the TSS stack; the user code's registers survived the trip.
    assert_eq!(cpu.cpl, 0);
    assert_eq!(cpu.reg(Gpr::Rax, Width::W32), 0);
    assert_eq!(cpu.reg(Gpr::Rbx, Width::W32), 0x2222);
    assert_eq!(cpu.seg[SegReg::Ss as usize].selector, 0x10);
    Ok(())
}

const PML4: u64 = 0x10000;
const IDT64: u64 = 0x14000;
const IDTR64: u64 = 0x3200;
const LM_CODE: u64 = 0x8800;

/// Real mode -> 32-bit protected mode -> PAE + 4-level tables, EFER.LME, CR0.PG -> 64-bit
/// code, as a boot loader enters long mode; then a #PF in 64-bit mode through a 64-bit IDT
/// gate, with the frame, error code and CR2 recorded by the handler.
#[test]
fn real_to_long_mode_and_a_page_fault_with_its_64_bit_frame() -> Result<(), IcedError> {
    let mut bus = SparseBus::new(32);
    // Real mode: load the GDT, set PE, jump to 32-bit code.
    let mut a = CodeAssembler::new(16)?;
    a.cli()?;
    a.xor(ax, ax)?;
    a.mov(ds, ax)?;
    a.lgdt(word_ptr(GDTR))?;
    a.mov(eax, cr0)?;
    a.or(eax, 1)?;
    a.mov(cr0, eax)?;
    a.db(&[0x66, 0xea])?;
    a.db(&(PM_CODE as u32).to_le_bytes())?;
    a.db(&[0x08, 0x00])?;
    bus.put(REAL_CODE, &a.assemble(REAL_CODE)?);

    // 32-bit: PAE, CR3, EFER.LME, PG, far jump to the 64-bit code segment.
    let mut a = CodeAssembler::new(32)?;
    a.mov(ax, 0x10u32)?;
    a.mov(ds, ax)?;
    a.mov(ss, ax)?;
    a.mov(esp, RING0_STACK)?;
    a.mov(eax, cr4)?;
    a.or(eax, 0x20)?;
    a.mov(cr4, eax)?;
    a.mov(eax, PML4 as u32)?;
    a.mov(cr3, eax)?;
    a.mov(ecx, 0xc000_0080u32)?;
    a.rdmsr()?;
    a.or(eax, 0x100)?;
    a.wrmsr()?;
    a.mov(eax, cr0)?;
    a.or(eax, 0x8000_0000u32 as i32)?;
    a.mov(cr0, eax)?;
    a.db(&[0xea])?;
    a.db(&(LM_CODE as u32).to_le_bytes())?;
    a.db(&[0x38, 0x00])?;
    bus.put(PM_CODE, &a.assemble(PM_CODE)?);

    // 64-bit: the IDT, then a write to an unmapped page.
    let mut a = CodeAssembler::new(64)?;
    let mut fault = a.create_label();
    let mut handler = a.create_label();
    a.lidt(qword_ptr(IDTR64))?;
    a.mov(rsp, 0x9008u64)?;
    a.mov(rax, 0x4000_0000u64)?;
    a.mov(ecx, 0x1234u32)?;
    a.set_label(&mut fault)?;
    a.mov(dword_ptr(rax), ecx)?;
    a.hlt()?;
    a.set_label(&mut handler)?;
    for (k, off) in [0u64, 8, 16, 24, 32, 40].iter().enumerate() {
        a.mov(rdx, qword_ptr(rsp + *off as i32))?;
        a.mov(qword_ptr(RESULTS + 8 * k as u64), rdx)?;
    }
    a.mov(rdx, cr2)?;
    a.mov(qword_ptr(RESULTS + 0x30), rdx)?;
    a.mov(qword_ptr(RESULTS + 0x38), rsp)?;
    a.hlt()?;
    let r = a.assemble_options(LM_CODE, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let fault_ip = r.label_ip(&fault)?;
    let handler_ip = r.label_ip(&handler)?;
    bus.put(LM_CODE, &r.inner.code_buffer);

    let gdt = [
        0,
        seg_desc(0x9a), // 0x08 32-bit code
        seg_desc(0x92), // 0x10 data
        0,
        0,
        0,
        0,
        0x00af_9a00_0000_ffff, // 0x38 64-bit code
    ];
    for (k, d) in gdt.iter().enumerate() {
        bus.put(GDT + 8 * k as u64, &d.to_le_bytes());
    }
    bus.put(GDTR, &[(gdt.len() * 8 - 1) as u8, 0]);
    bus.put(GDTR + 2, &(GDT as u32).to_le_bytes());
    // Identity map of the first 2 MiB with one large page; nothing else is mapped.
    bus.put(PML4, &(0x11000u64 | 3).to_le_bytes());
    bus.put(0x11000, &(0x12000u64 | 3).to_le_bytes());
    bus.put(0x12000, &0x83u64.to_le_bytes());
    // 64-bit interrupt gate for #PF.
    let lo = (handler_ip & 0xffff) | (0x38 << 16) | (0x8e << 40) | ((handler_ip >> 16 & 0xffff) << 48);
    bus.put(IDT64 + 14 * 16, &lo.to_le_bytes());
    bus.put(IDT64 + 14 * 16 + 8, &(handler_ip >> 32).to_le_bytes());
    bus.put(IDTR64, &[0xff, 0x0f]);
    bus.put(IDTR64 + 2, &IDT64.to_le_bytes());

    let mut cpu = CpuState::new();
    cpu.seg[SegReg::Cs as usize] = frontend_x86::Segment::real_mode_code(0);
    cpu.rip = REAL_CODE;
    let (_, exit) = translator::run(&mut cpu, &mut bus, 10_000);
    assert_eq!(exit, translator::Exit::Halted, "cpu at {:x}:{:x}", cpu.seg[1].selector, cpu.rip);
    assert!(cpu.mode64(), "in 64-bit mode");
    assert_eq!(cpu.rip, LM_CODE + r.inner.code_buffer.len() as u64, "halted at the handler's end");

    // The 64-bit frame: error code, RIP, CS, RFLAGS, RSP, SS.
    assert_eq!(bus.get(RESULTS, 8), 0x2, "#PF error code: write to a non-present page");
    assert_eq!(bus.get(RESULTS + 8, 8), fault_ip, "RIP of the faulting store");
    assert_eq!(bus.get(RESULTS + 16, 8), 0x38);
    assert_eq!(bus.get(RESULTS + 24, 8) & 0x2, 0x2, "RFLAGS");
    assert_eq!(bus.get(RESULTS + 32, 8), 0x9008, "the interrupted RSP");
    assert_eq!(bus.get(RESULTS + 40, 8), 0x10, "the interrupted SS");
    assert_eq!(bus.get(RESULTS + 0x30, 8), 0x4000_0000, "CR2");
    assert_eq!(bus.get(RESULTS + 0x38, 8), 0x9000 - 48, "the frame starts 16-byte aligned");
    // The walk set Accessed on every level and Dirty on the large page (stack writes).
    assert_eq!(bus.get(PML4, 8) & 0x20, 0x20);
    assert_eq!(bus.get(0x11000, 8) & 0x20, 0x20);
    assert_eq!(bus.get(0x12000, 8), 0x83 | 0x20 | 0x40);
    Ok(())
}
