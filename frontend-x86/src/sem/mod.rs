//! Instruction semantics, written once for both tiers (design principle 1).

pub mod alu;
pub mod bcd;
pub mod bits;
pub mod control;
pub mod far;
pub mod muldiv;
pub mod privileged;
pub mod shift;
pub mod string;
pub mod system;

use iced_x86::{Instruction, Mnemonic, OpKind, Register};

use crate::concrete::Concrete;
use crate::emit::Emit;
use crate::exception::{Exception, Result};
use crate::operand as op;
use crate::state::{SegReg, Width};

/// Whether an instruction must end its block and run as a trap-and-emulate system helper
/// (principle 2), or transfers control so the block ends anyway.
pub fn ends_block(i: &Instruction) -> bool {
    use iced_x86::FlowControl as F;
    if !matches!(i.flow_control(), F::Next) {
        return true;
    }
    is_sensitive(i.mnemonic())
        || (matches!(i.mnemonic(), Mnemonic::Mov | Mnemonic::Pop) && writes_sreg(i))
        || (i.mnemonic() == Mnemonic::Mov && (touches(i, Register::is_cr) || touches(i, Register::is_dr)))
}

/// Sensitive instructions: their effect depends on privilege or changes the machine's mode.
/// Segment-register loads count too: they change the mode bits a block is keyed by.
pub fn is_sensitive(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Popf | Popfd
            | Popfq
            | Pushf
            | Pushfd
            | Pushfq
            | Cli
            | Sti
            | In
            | Out
            | Insb
            | Insw
            | Insd
            | Outsb
            | Outsw
            | Outsd
            | Hlt
            | Lds
            | Les
            | Lss
            | Lfs
            | Lgs
            | Wait
            | Lgdt
            | Lidt
            | Lldt
            | Ltr
            | Sgdt
            | Sidt
            | Sldt
            | Str
            | Smsw
            | Lmsw
            | Clts
            | Rdmsr
            | Wrmsr
            | Cpuid
            | Rdtsc
            | Invlpg
            | Swapgs
            | Lar
            | Lsl
            | Verr
            | Verw
            | Arpl
    )
}

fn is_string_form(i: &Instruction) -> bool {
    (0..i.op_count()).any(|n| {
        matches!(
            i.op_kind(n),
            OpKind::MemorySegSI
                | OpKind::MemorySegESI
                | OpKind::MemorySegRSI
                | OpKind::MemoryESDI
                | OpKind::MemoryESEDI
                | OpKind::MemoryESRDI
        )
    })
}

/// Whether a register operand of `i` is of the class `is` picks (control or debug registers).
fn touches(i: &Instruction, is: fn(Register) -> bool) -> bool {
    (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Register && is(i.op_register(n)))
}

fn writes_sreg(i: &Instruction) -> bool {
    i.op_count() > 0 && i.op_kind(0) == OpKind::Register && op::seg_ref(i.op_register(0)).is_some()
}

/// Executes one decoded instruction. The executor has set `rip` to the instruction and
/// `next_rip` to the one after it; on error nothing architectural has changed except what a
/// partially completed REP instruction leaves, and the exception is to be delivered.
pub fn execute<E: Emit>(e: &mut E, i: &Instruction) -> Result<()> {
    use Mnemonic::*;
    let m = i.mnemonic();
    if i.has_lock_prefix() && !lockable(i) {
        return Err(Exception::UD);
    }
    match m {
        Add | Or | Adc | Sbb | And | Sub | Xor | Cmp | Test => alu::binop(e, i, m),
        Inc | Dec | Not | Neg => alu::unop(e, i, m),
        Mov if writes_sreg(i) => e.helper(system::mov_sreg, i),
        Mov if touches(i, Register::is_cr) => e.helper(privileged::mov_cr, i),
        Mov if touches(i, Register::is_dr) => e.helper(privileged::mov_dr, i),
        Mov => alu::mov(e, i),
        Movzx => alu::movx(e, i, false),
        Movsx | Movsxd => alu::movx(e, i, true),
        Lea => {
            if i.op_kind(1) != OpKind::Memory {
                return Err(Exception::UD);
            }
            alu::lea(e, i)
        }
        Xchg => alu::xchg(e, i),
        Nop | Pause => Ok(()),
        Cbw => alu::cbw(e, Width::W16),
        Cwde => alu::cbw(e, Width::W32),
        Cdqe => alu::cbw(e, Width::W64),
        Cwd => alu::cwd(e, Width::W16),
        Cdq => alu::cwd(e, Width::W32),
        Cqo => alu::cwd(e, Width::W64),
        Lahf => alu::lahf(e),
        Sahf => alu::sahf(e),
        Clc | Stc | Cmc | Cld | Std => alu::flag_op(e, m),
        Salc => alu::salc(e),
        Xlatb => alu::xlat(e, i),
        Seto | Setno | Setb | Setae | Sete | Setne | Setbe | Seta | Sets | Setns | Setp | Setnp | Setl | Setge
        | Setle | Setg => alu::setcc(e, i),
        Cmovo | Cmovno | Cmovb | Cmovae | Cmove | Cmovne | Cmovbe | Cmova | Cmovs | Cmovns | Cmovp | Cmovnp | Cmovl
        | Cmovge | Cmovle | Cmovg => alu::cmovcc(e, i),

        Push => control::push_insn(e, i),
        Pop if writes_sreg(i) => e.helper(system::pop_sreg, i),
        Pop => control::pop_insn(e, i),
        Jmp if i.op_kind(0) == OpKind::FarBranch16 || i.op_kind(0) == OpKind::FarBranch32 => {
            e.helper(|c, i| system::far_transfer(c, i, false), i)
        }
        Jmp if is_far_mem(i) => e.helper(|c, i| system::far_transfer(c, i, false), i),
        Jmp => control::jmp(e, i),
        Call if i.op_kind(0) == OpKind::FarBranch16 || i.op_kind(0) == OpKind::FarBranch32 => {
            e.helper(|c, i| system::far_transfer(c, i, true), i)
        }
        Call if is_far_mem(i) => e.helper(|c, i| system::far_transfer(c, i, true), i),
        Call => control::call(e, i),
        Ret => control::ret(e, i),
        Retf => e.helper(system::ret_far, i),
        Jo | Jno | Jb | Jae | Je | Jne | Jbe | Ja | Js | Jns | Jp | Jnp | Jl | Jge | Jle | Jg => control::jcc(e, i),
        Loop => control::loop_insn(e, i, None),
        Loope => control::loop_insn(e, i, Some(true)),
        Loopne => control::loop_insn(e, i, Some(false)),
        Jcxz | Jecxz | Jrcxz => control::jcxz(e, i),
        Leave => control::leave(e, i),
        Enter => e.helper(system::enter, i),
        Pusha | Pushad => e.helper(system::pusha, i),
        Popa | Popad => e.helper(system::popa, i),
        Bound => e.helper(system::bound, i),

        Mul => e.helper(muldiv::mul, i),
        Imul => e.helper(muldiv::imul, i),
        Div => e.helper(|c, i| muldiv::div(c, i, false), i),
        Idiv => e.helper(|c, i| muldiv::div(c, i, true), i),
        Rol | Ror | Rcl | Rcr | Shl | Sal | Shr | Sar => e.helper(shift_helper, i),
        Shld => e.helper(|c, i| shift::shld_shrd(c, i, true), i),
        Shrd => e.helper(|c, i| shift::shld_shrd(c, i, false), i),
        Bt | Bts | Btr | Btc => e.helper(|c, i| bits::bt(c, i, i.mnemonic()), i),
        Bsf => e.helper(|c, i| bits::bsf_bsr(c, i, false), i),
        Bsr => e.helper(|c, i| bits::bsf_bsr(c, i, true), i),
        Bswap => e.helper(bits::bswap, i),
        Xadd => e.helper(bits::xadd, i),
        Cmpxchg => e.helper(bits::cmpxchg, i),
        Daa => e.helper(|c, _| bcd::daa_das(c, false), i),
        Das => e.helper(|c, _| bcd::daa_das(c, true), i),
        Aaa => e.helper(|c, _| bcd::aaa_aas(c, false), i),
        Aas => e.helper(|c, _| bcd::aaa_aas(c, true), i),
        Aam => e.helper(bcd::aam, i),
        Aad => e.helper(bcd::aad, i),

        Movsb | Movsw | Movsq | Cmpsb | Cmpsw | Cmpsq | Stosb | Stosw | Stosd | Stosq | Lodsb | Lodsw | Lodsd
        | Lodsq | Scasb | Scasw | Scasd | Scasq | Insb | Insw | Insd | Outsb | Outsw | Outsd => {
            e.helper(string_helper, i)
        }
        Movsd | Cmpsd if is_string_form(i) => e.helper(string_helper, i),

        Pushf | Pushfd | Pushfq => e.helper(system::pushf, i),
        Popf | Popfd | Popfq => e.helper(system::popf, i),
        Cli => e.helper(|c, _| system::cli_sti(c, false), i),
        Sti => e.helper(|c, _| system::cli_sti(c, true), i),
        Hlt => e.helper(system::hlt, i),
        In => e.helper(system::in_, i),
        Out => e.helper(system::out, i),
        Int | Int3 | Into | Int1 => e.helper(int_helper, i),
        Iret | Iretd | Iretq => e.helper(system::iret, i),
        Lds => e.helper(|c, i| system::load_far_ptr(c, i, SegReg::Ds), i),
        Les => e.helper(|c, i| system::load_far_ptr(c, i, SegReg::Es), i),
        Lss => e.helper(|c, i| system::load_far_ptr(c, i, SegReg::Ss), i),
        Lfs => e.helper(|c, i| system::load_far_ptr(c, i, SegReg::Fs), i),
        Lgs => e.helper(|c, i| system::load_far_ptr(c, i, SegReg::Gs), i),
        Wait => e.helper(system::wait, i),
        Cmpxchg8b | Cmpxchg16b => e.helper(bits::cmpxchg8b16b, i),
        Lgdt | Lidt => e.helper(privileged::lgdt_lidt, i),
        Sgdt | Sidt => e.helper(privileged::sgdt_sidt, i),
        Lldt => e.helper(privileged::lldt, i),
        Ltr => e.helper(privileged::ltr, i),
        Sldt | Str => e.helper(privileged::sldt_str, i),
        Smsw => e.helper(privileged::smsw, i),
        Lmsw => e.helper(privileged::lmsw, i),
        Clts => e.helper(privileged::clts, i),
        Rdmsr | Wrmsr => e.helper(privileged::rdmsr_wrmsr, i),
        Cpuid => e.helper(privileged::cpuid_insn, i),
        Rdtsc => e.helper(privileged::rdtsc, i),
        Invlpg => e.helper(privileged::invlpg, i),
        Syscall => e.helper(privileged::syscall, i),
        Sysret => e.helper(privileged::sysret, i),
        Sysenter => e.helper(privileged::sysenter, i),
        Sysexit => e.helper(privileged::sysexit, i),
        Swapgs => e.helper(privileged::swapgs, i),
        Lar | Lsl | Verr | Verw => e.helper(privileged::lar_lsl_verr_verw, i),
        Arpl => e.helper(privileged::arpl, i),
        Ud0 | Ud1 | Ud2 => Err(Exception::UD),
        _ => Err(Exception::UD),
    }
}

fn is_far_mem(i: &Instruction) -> bool {
    use iced_x86::MemorySize as M;
    i.op_kind(0) == OpKind::Memory && matches!(i.memory_size(), M::SegPtr16 | M::SegPtr32 | M::SegPtr64)
}

fn shift_helper(c: &mut Concrete<'_>, i: &Instruction) -> Result<()> {
    shift::shift(c, i, i.mnemonic())
}

fn string_helper(c: &mut Concrete<'_>, i: &Instruction) -> Result<()> {
    string::string_op(c, i, i.mnemonic())
}

fn int_helper(c: &mut Concrete<'_>, i: &Instruction) -> Result<()> {
    system::int(c, i, i.mnemonic())
}

/// LOCK is allowed only on read-modify-write instructions with a memory destination.
fn lockable(i: &Instruction) -> bool {
    use Mnemonic::*;
    i.op_count() > 0
        && i.op_kind(0) == OpKind::Memory
        && matches!(
            i.mnemonic(),
            Add | Adc
                | And
                | Btc
                | Btr
                | Bts
                | Cmpxchg
                | Cmpxchg8b
                | Cmpxchg16b
                | Dec
                | Inc
                | Neg
                | Not
                | Or
                | Sbb
                | Sub
                | Xor
                | Xadd
                | Xchg
        )
}
