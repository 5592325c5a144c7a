//! SYSRET into 64-bit user code, SYSCALL back into the kernel, and SYSENTER/SYSEXIT in 32-bit
//! protected mode: the selectors, CPL, RCX/R11 and RFLAGS masking the SDM specifies.

use cranebox_tests::{identity_2m, long_mode_cpu, protected_mode_cpu, SparseBus};
use frontend_x86::{CpuState, Gpr, SegReg, Width};
use iced_x86::code_asm::*;

const KERNEL: u64 = 0x8000;
const USER: u64 = 0x9000;
const RESULTS: u64 = 0x3000;

/// 64-bit kernel at CPL 0 with the first 2 MiB identity-mapped, user-accessible.
fn long_mode() -> (CpuState, SparseBus) {
    let mut bus = SparseBus::new(32);
    let mut cpu = long_mode_cpu(identity_2m(&mut bus, 0x20000));
    cpu.rip = KERNEL;
    (cpu, bus)
}

#[test]
fn sysret_to_64_bit_user_code_and_syscall_back() -> Result<(), IcedError> {
    let (mut cpu, mut bus) = long_mode();
    let mut k = CodeAssembler::new(64)?;
    let mut entry = k.create_label();
    // STAR: kernel CS 0x08 (SS 0x10); user base 0x10 -> 64-bit CS 0x23, SS 0x1b.
    k.mov(ecx, 0xc000_0081u32)?;
    k.mov(eax, 0u32)?;
    k.mov(edx, 0x0010_0008u32)?;
    k.wrmsr()?;
    k.mov(ecx, 0xc000_0082u32)?; // LSTAR
    k.mov(rax, 0x7fff_ffff_u64)?; // patched below with the entry address
    k.mov(edx, 0u32)?;
    k.wrmsr()?;
    k.mov(ecx, 0xc000_0084u32)?; // SFMASK: clear IF, DF, TF on entry
    k.mov(eax, 0x700u32)?;
    k.wrmsr()?;
    k.mov(ecx, 0xc000_0080u32)?; // EFER.SCE
    k.rdmsr()?;
    k.or(eax, 1)?;
    k.wrmsr()?;
    k.mov(rcx, USER)?;
    k.mov(r11, 0x202u64)?; // IF set in user mode
    k.sysretq()?;
    k.set_label(&mut entry)?;
    k.mov(qword_ptr(RESULTS), rcx)?;
    k.mov(qword_ptr(RESULTS + 8), r11)?;
    k.pushfq()?;
    k.pop(rax)?;
    k.mov(qword_ptr(RESULTS + 16), rax)?;
    k.hlt()?;
    let r = k.assemble_options(KERNEL, iced_x86::BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let entry_ip = r.label_ip(&entry)?;
    let mut code = r.inner.code_buffer;
    let pos = code.windows(8).position(|w| w == 0x7fff_ffffu64.to_le_bytes()).expect("placeholder");
    code[pos..pos + 8].copy_from_slice(&entry_ip.to_le_bytes());
    bus.put(KERNEL, &code);

    let mut u = CodeAssembler::new(64)?;
    u.mov(rbx, 0x5151u64)?;
    // SYSCALL does not switch stacks: the kernel entry pushes on this one.
    u.mov(rsp, 0x7000u64)?;
    u.std()?;
    u.syscall()?;
    let user = u.assemble(USER)?;
    let after_syscall = USER + user.len() as u64;
    bus.put(USER, &user);

    let (_, exit) = translator::run(&mut cpu, &mut bus, 1000);
    assert_eq!(exit, translator::Exit::Halted, "at {:x}", cpu.rip);
    assert_eq!(bus.get(RESULTS, 8), after_syscall, "RCX = the user RIP after SYSCALL");
    assert_eq!(bus.get(RESULTS + 8, 8) & 0x600, 0x600, "R11 = user RFLAGS (IF, DF)");
    assert_eq!(bus.get(RESULTS + 16, 8) & 0x700, 0, "SFMASK cleared IF, DF, TF in the kernel");
    assert_eq!(cpu.cpl, 0);
    assert_eq!(cpu.seg[SegReg::Cs as usize].selector, 0x08);
    assert_eq!(cpu.seg[SegReg::Ss as usize].selector, 0x10);
    assert_eq!(cpu.reg(Gpr::Rbx, Width::W64), 0x5151, "user code ran");
    Ok(())
}

#[test]
fn syscall_outside_64_bit_mode_or_without_sce_is_ud() {
    let (mut cpu, mut bus) = long_mode();
    // syscall with EFER.SCE clear: #UD, and no IDT: double fault, then shutdown.
    bus.put(KERNEL, &[0x0f, 0x05]);
    let (_, exit) = translator::run(&mut cpu, &mut bus, 10);
    assert_eq!(exit, translator::Exit::Shutdown);
    assert_eq!(cpu.rip, KERNEL);
}

#[test]
fn sysenter_and_sysexit_in_32_bit_protected_mode() -> Result<(), IcedError> {
    let mut bus = SparseBus::new(32);
    let mut cpu = protected_mode_cpu(0, 0, 0);
    cpu.rip = KERNEL;
    let mut k = CodeAssembler::new(32)?;
    let mut entry = k.create_label();
    k.mov(ecx, 0x174u32)?; // SYSENTER_CS = 0x08
    k.mov(eax, 0x08u32)?;
    k.xor(edx, edx)?;
    k.wrmsr()?;
    k.mov(ecx, 0x175u32)?; // SYSENTER_ESP
    k.mov(eax, 0x7000u32)?;
    k.wrmsr()?;
    k.mov(ecx, 0x176u32)?; // SYSENTER_EIP: patched
    k.mov(eax, 0x7fff_ffffu32)?;
    k.wrmsr()?;
    k.mov(edx, USER as u32)?; // SYSEXIT: EIP from EDX, ESP from ECX
    k.mov(ecx, 0x6000u32)?;
    k.sysexit()?;
    k.set_label(&mut entry)?;
    k.mov(dword_ptr(RESULTS as u32), esp)?;
    k.hlt()?;
    let r = k.assemble_options(KERNEL, iced_x86::BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let entry_ip = r.label_ip(&entry)? as u32;
    let mut code_bytes = r.inner.code_buffer;
    let pos = code_bytes.windows(4).position(|w| w == 0x7fff_ffffu32.to_le_bytes()).expect("placeholder");
    code_bytes[pos..pos + 4].copy_from_slice(&entry_ip.to_le_bytes());
    bus.put(KERNEL, &code_bytes);
    let mut u = CodeAssembler::new(32)?;
    u.mov(ebx, 0x4242u32)?;
    u.mov(dword_ptr(RESULTS as u32 + 8), esp)?;
    u.sysenter()?;
    bus.put(USER, &u.assemble(USER)?);

    let (_, exit) = translator::run(&mut cpu, &mut bus, 1000);
    assert_eq!(exit, translator::Exit::Halted, "at {:x}", cpu.rip);
    assert_eq!(bus.get(RESULTS + 8, 8) & 0xffff_ffff, 0x6000, "user ESP from ECX");
    assert_eq!(bus.get(RESULTS, 8) & 0xffff_ffff, 0x7000, "kernel ESP from SYSENTER_ESP");
    assert_eq!(cpu.reg(Gpr::Rbx, Width::W32), 0x4242);
    assert_eq!(cpu.cpl, 0);
    assert_eq!(cpu.seg[SegReg::Cs as usize].selector, 0x08);
    assert_eq!(cpu.seg[SegReg::Ss as usize].selector, 0x10);
    Ok(())
}
