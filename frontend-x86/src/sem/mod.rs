//! Instruction semantics, written once for both tiers (design principle 1).

pub mod alu;
pub mod bcd;
pub mod bits;
pub mod control;
pub mod far;
pub mod mmx;
pub mod muldiv;
pub mod privileged;
pub mod shift;
pub mod softfp;
pub mod sse;
pub mod sse_fp;
pub mod sse_int;
pub mod string;
pub mod system;
pub mod task;
pub mod vec;
pub mod x87;
pub mod xsave;

use crate::insn::Insn;
use iced_x86::{Mnemonic, OpKind, Register};

use crate::concrete::Concrete;
use crate::emit::{Emit, Helper};
use crate::exception::{Exception, Result};
use crate::operand as op;
use crate::state::{SegReg, Width};

/// Whether an instruction must end its block and run as a trap-and-emulate system helper
/// (principle 2), or transfers control so the block ends anyway.
pub fn ends_block(i: &Insn) -> bool {
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
            | Stac
            | Clac
            | Wbinvd
            | Invd
            | Invpcid
            | Swapgs
            | Lar
            | Lsl
            | Verr
            | Verw
            | Arpl
    )
}

fn is_string_form(i: &Insn) -> bool {
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
fn touches(i: &Insn, is: fn(Register) -> bool) -> bool {
    (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Register && is(i.op_register(n)))
}

fn writes_sreg(i: &Insn) -> bool {
    i.op_count() > 0 && i.op_kind(0) == OpKind::Register && op::seg_ref(i.op_register(0)).is_some()
}

/// What an instruction does, resolved once when it is decoded so that running it is one
/// jump: straight-line semantics generic over [`Emit`], or a helper.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// ADD/OR/ADC/SBB/AND/SUB/XOR/CMP/TEST.
    Binop(Mnemonic),
    /// INC/DEC/NOT/NEG.
    Unop(Mnemonic),
    /// MOV between general registers, memory and immediates.
    Mov,
    /// MOVZX (false) or MOVSX/MOVSXD (true).
    Movx(bool),
    /// LEA.
    Lea,
    /// XCHG.
    Xchg,
    /// NOP, PAUSE.
    Nop,
    /// CBW/CWDE/CDQE to this width.
    Cbw(Width),
    /// CWD/CDQ/CQO at this width.
    Cwd(Width),
    /// LAHF.
    Lahf,
    /// SAHF.
    Sahf,
    /// CLC/STC/CMC/CLD/STD.
    FlagOp(Mnemonic),
    /// SALC.
    Salc,
    /// XLAT.
    Xlat,
    /// SETcc.
    Setcc,
    /// CMOVcc.
    Cmovcc,
    /// PUSH.
    Push,
    /// POP to a general register or memory.
    Pop,
    /// Near JMP.
    Jmp,
    /// Near CALL.
    Call,
    /// Near RET.
    Ret,
    /// Jcc.
    Jcc,
    /// LOOP (None), LOOPE (Some(true)), LOOPNE (Some(false)).
    Loop(Option<bool>),
    /// JCXZ/JECXZ/JRCXZ.
    Jcxz,
    /// LEAVE.
    Leave,
    /// SHL/SAL (Shl), SHR, SAR by a count fixed at decode time (an immediate or the implicit
    /// 1) that is not zero after masking.
    ShiftImm(Mnemonic),
    /// SHL/SHR/SAR of a general register by CL.
    ShiftCl(Mnemonic),
    /// ROL/ROR by a count fixed at decode time that is not zero after masking.
    RotImm(Mnemonic),
    /// IMUL in its two- and three-operand forms.
    Imul,
    /// MOVDQA/MOVDQU/MOVAPS/MOVUPS/MOVAPD/MOVUPD on XMM registers and memory.
    VecMov,
    /// A two-operand packed instruction that is one vector operation (see [`vec`]).
    VecBinop(crate::emit::VecOp),
    /// A packed instruction with an immediate that is one vector operation (see [`vec::imm`]).
    VecImm(Mnemonic),
    /// Run out of line: complex or sensitive.
    Helper(Helper),
    /// #UD.
    Ud,
}

/// Resolves what `i` does (see [`Op`]).
pub fn resolve(i: &Insn) -> Op {
    use Mnemonic::*;
    let m = i.mnemonic();
    if i.has_lock_prefix() && !lockable(i) {
        return Op::Ud;
    }
    match m {
        Add | Or | Adc | Sbb | And | Sub | Xor | Cmp | Test => Op::Binop(m),
        Inc | Dec | Not | Neg => Op::Unop(m),
        Mov if writes_sreg(i) => Op::Helper(system::mov_sreg),
        Mov if touches(i, Register::is_cr) => Op::Helper(privileged::mov_cr),
        Mov if touches(i, Register::is_dr) => Op::Helper(privileged::mov_dr),
        Mov => Op::Mov,
        Movzx => Op::Movx(false),
        Movsx | Movsxd => Op::Movx(true),
        Lea if i.op_kind(1) != OpKind::Memory => Op::Ud,
        Lea => Op::Lea,
        Xchg => Op::Xchg,
        // ENDBR32/64 and the CET shadow-stack reads execute as the hint NOPs they are encoded
        // in (0F 1E) on a CPU without CET, which this one is (CPUID reports no CET).
        Nop | Pause | Endbr32 | Endbr64 | Rdsspd | Rdsspq => Op::Nop,
        Cbw => Op::Cbw(Width::W16),
        Cwde => Op::Cbw(Width::W32),
        Cdqe => Op::Cbw(Width::W64),
        Cwd => Op::Cwd(Width::W16),
        Cdq => Op::Cwd(Width::W32),
        Cqo => Op::Cwd(Width::W64),
        Lahf => Op::Lahf,
        Sahf => Op::Sahf,
        Clc | Stc | Cmc | Cld | Std => Op::FlagOp(m),
        Salc => Op::Salc,
        Xlatb => Op::Xlat,
        Seto | Setno | Setb | Setae | Sete | Setne | Setbe | Seta | Sets | Setns | Setp | Setnp | Setl | Setge
        | Setle | Setg => Op::Setcc,
        Cmovo | Cmovno | Cmovb | Cmovae | Cmove | Cmovne | Cmovbe | Cmova | Cmovs | Cmovns | Cmovp | Cmovnp | Cmovl
        | Cmovge | Cmovle | Cmovg => Op::Cmovcc,

        Push => Op::Push,
        Pop if writes_sreg(i) => Op::Helper(system::pop_sreg),
        Pop => Op::Pop,
        Jmp if i.op_kind(0) == OpKind::FarBranch16 || i.op_kind(0) == OpKind::FarBranch32 => {
            Op::Helper(|c, i| system::far_transfer(c, i, false))
        }
        Jmp if is_far_mem(i) => Op::Helper(|c, i| system::far_transfer(c, i, false)),
        Jmp => Op::Jmp,
        Call if i.op_kind(0) == OpKind::FarBranch16 || i.op_kind(0) == OpKind::FarBranch32 => {
            Op::Helper(|c, i| system::far_transfer(c, i, true))
        }
        Call if is_far_mem(i) => Op::Helper(|c, i| system::far_transfer(c, i, true)),
        Call => Op::Call,
        Ret => Op::Ret,
        Retf => Op::Helper(system::ret_far),
        Jo | Jno | Jb | Jae | Je | Jne | Jbe | Ja | Js | Jns | Jp | Jnp | Jl | Jge | Jle | Jg => Op::Jcc,
        Loop => Op::Loop(None),
        Loope => Op::Loop(Some(true)),
        Loopne => Op::Loop(Some(false)),
        Jcxz | Jecxz | Jrcxz => Op::Jcxz,
        Leave => Op::Leave,
        Enter => Op::Helper(system::enter),
        Pusha | Pushad => Op::Helper(system::pusha),
        Popa | Popad => Op::Helper(system::popa),
        Bound => Op::Helper(system::bound),

        Mul => Op::Helper(muldiv::mul),
        Imul if i.op_count() >= 2 => Op::Imul,
        Imul => Op::Helper(muldiv::imul),
        Div => Op::Helper(|c, i| muldiv::div(c, i, false)),
        Idiv => Op::Helper(|c, i| muldiv::div(c, i, true)),
        Shl | Sal | Shr | Sar if fixed_shift_count(i).is_some() => Op::ShiftImm(if m == Sal { Shl } else { m }),
        Rol | Ror if fixed_shift_count(i).is_some() => Op::RotImm(m),
        Shl | Sal | Shr | Sar
            if i.op_count() == 2 && i.op_kind(0) == OpKind::Register && i.op_kind(1) == OpKind::Register =>
        {
            Op::ShiftCl(if m == Sal { Shl } else { m })
        }
        Rol | Ror | Rcl | Rcr | Shl | Sal | Shr | Sar => Op::Helper(shift_helper),
        Shld => Op::Helper(|c, i| shift::shld_shrd(c, i, true)),
        Shrd => Op::Helper(|c, i| shift::shld_shrd(c, i, false)),
        Bt | Bts | Btr | Btc => Op::Helper(|c, i| bits::bt(c, i, i.mnemonic())),
        // Without BMI1/LZCNT (not reported by CPUID), F3 0F BC/BD run as BSF/BSR, as on the
        // CPUs before them: compilers emit TZCNT where either result is acceptable.
        Bsf | Tzcnt => Op::Helper(|c, i| bits::bsf_bsr(c, i, false)),
        Lzcnt => Op::Helper(|c, i| bits::bsf_bsr(c, i, true)),
        Bsr => Op::Helper(|c, i| bits::bsf_bsr(c, i, true)),
        Bswap => Op::Helper(bits::bswap),
        Xadd => Op::Helper(bits::xadd),
        Cmpxchg => Op::Helper(bits::cmpxchg),
        Daa => Op::Helper(|c, _| bcd::daa_das(c, false)),
        Das => Op::Helper(|c, _| bcd::daa_das(c, true)),
        Aaa => Op::Helper(|c, _| bcd::aaa_aas(c, false)),
        Aas => Op::Helper(|c, _| bcd::aaa_aas(c, true)),
        Aam => Op::Helper(bcd::aam),
        Aad => Op::Helper(bcd::aad),

        Movsb | Movsw | Movsq | Cmpsb | Cmpsw | Cmpsq | Stosb | Stosw | Stosd | Stosq | Lodsb | Lodsw | Lodsd
        | Lodsq | Scasb | Scasw | Scasd | Scasq | Insb | Insw | Insd | Outsb | Outsw | Outsd => {
            Op::Helper(string_helper)
        }
        Movsd | Cmpsd if is_string_form(i) => Op::Helper(string_helper),

        Pushf | Pushfd | Pushfq => Op::Helper(system::pushf),
        Popf | Popfd | Popfq => Op::Helper(system::popf),
        Cli => Op::Helper(|c, _| system::cli_sti(c, false)),
        Sti => Op::Helper(|c, _| system::cli_sti(c, true)),
        Hlt => Op::Helper(system::hlt),
        In => Op::Helper(system::in_),
        Out => Op::Helper(system::out),
        Int | Int3 | Into | Int1 => Op::Helper(int_helper),
        Iret | Iretd | Iretq => Op::Helper(system::iret),
        Lds => Op::Helper(|c, i| system::load_far_ptr(c, i, SegReg::Ds)),
        Les => Op::Helper(|c, i| system::load_far_ptr(c, i, SegReg::Es)),
        Lss => Op::Helper(|c, i| system::load_far_ptr(c, i, SegReg::Ss)),
        Lfs => Op::Helper(|c, i| system::load_far_ptr(c, i, SegReg::Fs)),
        Lgs => Op::Helper(|c, i| system::load_far_ptr(c, i, SegReg::Gs)),
        Wait => Op::Helper(system::wait),
        Cmpxchg8b | Cmpxchg16b => Op::Helper(bits::cmpxchg8b16b),
        Lgdt | Lidt => Op::Helper(privileged::lgdt_lidt),
        Sgdt | Sidt => Op::Helper(privileged::sgdt_sidt),
        Lldt => Op::Helper(privileged::lldt),
        Ltr => Op::Helper(privileged::ltr),
        Sldt | Str => Op::Helper(privileged::sldt_str),
        Smsw => Op::Helper(privileged::smsw),
        Lmsw => Op::Helper(privileged::lmsw),
        Clts => Op::Helper(privileged::clts),
        Rdmsr | Wrmsr => Op::Helper(privileged::rdmsr_wrmsr),
        Cpuid => Op::Helper(privileged::cpuid_insn),
        Rdtsc => Op::Helper(privileged::rdtsc),
        Invlpg => Op::Helper(privileged::invlpg),
        Stac | Clac => Op::Helper(privileged::stac_clac),
        Wbinvd | Invd => Op::Helper(privileged::wbinvd),
        Prefetchnta | Prefetcht0 | Prefetcht1 | Prefetcht2 | Prefetchw => Op::Nop,
        Invpcid => Op::Helper(privileged::invpcid),
        Syscall => Op::Helper(privileged::syscall),
        Sysret | Sysretq => Op::Helper(privileged::sysret),
        Sysenter => Op::Helper(privileged::sysenter),
        Sysexit | Sysexitq => Op::Helper(privileged::sysexit),
        Swapgs => Op::Helper(privileged::swapgs),
        Lar | Lsl | Verr | Verw => Op::Helper(privileged::lar_lsl_verr_verw),
        Arpl => Op::Helper(privileged::arpl),
        Ud0 | Ud1 | Ud2 => Op::Ud,
        // The vector operations, then the x87, MMX and SSE families each resolve their own
        // mnemonics.
        _ => vec::resolve(i)
            .or_else(|| sse::resolve(i))
            .or_else(|| x87::resolve(i))
            .or_else(|| mmx::resolve(i))
            .unwrap_or(Op::Ud),
    }
}

/// Runs a resolved instruction.
#[inline]
pub fn execute_op<E: Emit>(e: &mut E, op: Op, i: &Insn) -> Result<()> {
    match op {
        Op::Binop(m) => alu::binop(e, i, m),
        Op::Unop(m) => alu::unop(e, i, m),
        Op::Mov => alu::mov(e, i),
        Op::Movx(signed) => alu::movx(e, i, signed),
        Op::Lea => alu::lea(e, i),
        Op::Xchg => alu::xchg(e, i),
        Op::Nop => Ok(()),
        Op::Cbw(w) => alu::cbw(e, w),
        Op::Cwd(w) => alu::cwd(e, w),
        Op::Lahf => alu::lahf(e),
        Op::Sahf => alu::sahf(e),
        Op::FlagOp(m) => alu::flag_op(e, m),
        Op::Salc => alu::salc(e),
        Op::Xlat => alu::xlat(e, i),
        Op::Setcc => alu::setcc(e, i),
        Op::Cmovcc => alu::cmovcc(e, i),
        Op::Push => control::push_insn(e, i),
        Op::Pop => control::pop_insn(e, i),
        Op::Jmp => control::jmp(e, i),
        Op::Call => control::call(e, i),
        Op::Ret => control::ret(e, i),
        Op::Jcc => control::jcc(e, i),
        Op::Loop(z) => control::loop_insn(e, i, z),
        Op::Jcxz => control::jcxz(e, i),
        Op::Leave => control::leave(e, i),
        Op::ShiftImm(m) => alu::shift_imm(e, i, m),
        Op::ShiftCl(m) => alu::shift_cl(e, i, m),
        Op::RotImm(m) => alu::rotate_imm(e, i, m),
        Op::Imul => alu::imul(e, i),
        Op::VecMov => vec::mov(e, i),
        Op::VecBinop(op) => vec::binop(e, i, op),
        Op::VecImm(m) => vec::imm(e, i, m),
        Op::Helper(h) => e.helper(h, i),
        Op::Ud => Err(Exception::UD),
    }
}

/// The function that runs `op` on concrete values, with its parameters fixed: the
/// interpreter calls it directly, one indirect call per instruction instead of matching on the
/// `Op` each time (7% faster on benches/interp_mips). It dispatches exactly as
/// [`execute_op`], which stays the generic entry for other emitters (the JIT).
pub fn concrete_fn(op: Op) -> Helper {
    use Mnemonic as M;
    match op {
        Op::Binop(m) => match m {
            M::Add => |c, i| alu::binop(c, i, M::Add),
            M::Or => |c, i| alu::binop(c, i, M::Or),
            M::Adc => |c, i| alu::binop(c, i, M::Adc),
            M::Sbb => |c, i| alu::binop(c, i, M::Sbb),
            M::And => |c, i| alu::binop(c, i, M::And),
            M::Sub => |c, i| alu::binop(c, i, M::Sub),
            M::Xor => |c, i| alu::binop(c, i, M::Xor),
            M::Cmp => |c, i| alu::binop(c, i, M::Cmp),
            M::Test => |c, i| alu::binop(c, i, M::Test),
            _ => |_, _| Err(Exception::UD),
        },
        Op::Unop(m) => match m {
            M::Inc => |c, i| alu::unop(c, i, M::Inc),
            M::Dec => |c, i| alu::unop(c, i, M::Dec),
            M::Not => |c, i| alu::unop(c, i, M::Not),
            M::Neg => |c, i| alu::unop(c, i, M::Neg),
            _ => |_, _| Err(Exception::UD),
        },
        Op::Mov => |c, i| alu::mov(c, i),
        Op::Movx(false) => |c, i| alu::movx(c, i, false),
        Op::Movx(true) => |c, i| alu::movx(c, i, true),
        Op::Lea => |c, i| alu::lea(c, i),
        Op::Xchg => |c, i| alu::xchg(c, i),
        Op::Nop => |_, _| Ok(()),
        Op::Cbw(w) => match w {
            Width::W16 => |c, _| alu::cbw(c, Width::W16),
            Width::W32 => |c, _| alu::cbw(c, Width::W32),
            _ => |c, _| alu::cbw(c, Width::W64),
        },
        Op::Cwd(w) => match w {
            Width::W16 => |c, _| alu::cwd(c, Width::W16),
            Width::W32 => |c, _| alu::cwd(c, Width::W32),
            _ => |c, _| alu::cwd(c, Width::W64),
        },
        Op::Lahf => |c, _| alu::lahf(c),
        Op::Sahf => |c, _| alu::sahf(c),
        Op::FlagOp(m) => match m {
            M::Clc => |c, _| alu::flag_op(c, M::Clc),
            M::Stc => |c, _| alu::flag_op(c, M::Stc),
            M::Cmc => |c, _| alu::flag_op(c, M::Cmc),
            M::Cld => |c, _| alu::flag_op(c, M::Cld),
            M::Std => |c, _| alu::flag_op(c, M::Std),
            _ => |_, _| Err(Exception::UD),
        },
        Op::Salc => |c, _| alu::salc(c),
        Op::Xlat => |c, i| alu::xlat(c, i),
        Op::Setcc => |c, i| alu::setcc(c, i),
        Op::Cmovcc => |c, i| alu::cmovcc(c, i),
        Op::Push => |c, i| control::push_insn(c, i),
        Op::Pop => |c, i| control::pop_insn(c, i),
        Op::Jmp => |c, i| control::jmp(c, i),
        Op::Call => |c, i| control::call(c, i),
        Op::Ret => |c, i| control::ret(c, i),
        Op::Jcc => |c, i| control::jcc(c, i),
        Op::Loop(None) => |c, i| control::loop_insn(c, i, None),
        Op::Loop(Some(true)) => |c, i| control::loop_insn(c, i, Some(true)),
        Op::Loop(Some(false)) => |c, i| control::loop_insn(c, i, Some(false)),
        Op::Jcxz => |c, i| control::jcxz(c, i),
        Op::Leave => |c, i| control::leave(c, i),
        Op::ShiftImm(m) => match m {
            M::Shl => |c, i| alu::shift_imm(c, i, M::Shl),
            M::Shr => |c, i| alu::shift_imm(c, i, M::Shr),
            M::Sar => |c, i| alu::shift_imm(c, i, M::Sar),
            _ => |_, _| Err(Exception::UD),
        },
        Op::ShiftCl(m) => match m {
            M::Shl => |c, i| alu::shift_cl(c, i, M::Shl),
            M::Shr => |c, i| alu::shift_cl(c, i, M::Shr),
            M::Sar => |c, i| alu::shift_cl(c, i, M::Sar),
            _ => |_, _| Err(Exception::UD),
        },
        Op::RotImm(m) => match m {
            M::Rol => |c, i| alu::rotate_imm(c, i, M::Rol),
            M::Ror => |c, i| alu::rotate_imm(c, i, M::Ror),
            _ => |_, _| Err(Exception::UD),
        },
        Op::Imul => |c, i| alu::imul(c, i),
        Op::VecMov => |c, i| vec::mov(c, i),
        Op::VecBinop(op) => vec_binop_fn(op),
        Op::VecImm(m) => vec_imm_fn(m),
        Op::Helper(h) => h,
        Op::Ud => |_, _| Err(Exception::UD),
    }
}

/// [`concrete_fn`] for [`Op::VecBinop`]: one function per operation, so that each is
/// compiled for its operation.
fn vec_binop_fn(op: crate::emit::VecOp) -> Helper {
    use crate::emit::{Lanes, VecOp as V};
    macro_rules! each {
        ($($p:pat => $v:expr),* $(,)?) => {
            match op {
                $($p => |c, i| vec::binop(c, i, $v),)*
                // Not made by `vec::op_of`: the operation is found again at run time.
                _ => |c, i| match vec::op_of(i.mnemonic()) {
                    Some(op) => vec::binop(c, i, op),
                    None => Err(Exception::UD),
                },
            }
        };
    }
    each! {
        V::And => V::And,
        V::Or => V::Or,
        V::Xor => V::Xor,
        V::AndNot => V::AndNot,
        V::Add(Lanes::B) => V::Add(Lanes::B),
        V::Add(Lanes::W) => V::Add(Lanes::W),
        V::Add(Lanes::D) => V::Add(Lanes::D),
        V::Add(Lanes::Q) => V::Add(Lanes::Q),
        V::Sub(Lanes::B) => V::Sub(Lanes::B),
        V::Sub(Lanes::W) => V::Sub(Lanes::W),
        V::Sub(Lanes::D) => V::Sub(Lanes::D),
        V::Sub(Lanes::Q) => V::Sub(Lanes::Q),
        V::CmpEq(Lanes::B) => V::CmpEq(Lanes::B),
        V::CmpEq(Lanes::W) => V::CmpEq(Lanes::W),
        V::CmpEq(Lanes::D) => V::CmpEq(Lanes::D),
        V::CmpEq(Lanes::Q) => V::CmpEq(Lanes::Q),
        V::AddSatS(Lanes::B) => V::AddSatS(Lanes::B),
        V::AddSatS(Lanes::W) => V::AddSatS(Lanes::W),
        V::AddSatU(Lanes::B) => V::AddSatU(Lanes::B),
        V::AddSatU(Lanes::W) => V::AddSatU(Lanes::W),
        V::SubSatS(Lanes::B) => V::SubSatS(Lanes::B),
        V::SubSatS(Lanes::W) => V::SubSatS(Lanes::W),
        V::SubSatU(Lanes::B) => V::SubSatU(Lanes::B),
        V::SubSatU(Lanes::W) => V::SubSatU(Lanes::W),
        V::CmpGt(Lanes::B) => V::CmpGt(Lanes::B),
        V::CmpGt(Lanes::W) => V::CmpGt(Lanes::W),
        V::CmpGt(Lanes::D) => V::CmpGt(Lanes::D),
        V::MaxS(Lanes::W) => V::MaxS(Lanes::W),
        V::MinS(Lanes::W) => V::MinS(Lanes::W),
        V::MaxU(Lanes::B) => V::MaxU(Lanes::B),
        V::MinU(Lanes::B) => V::MinU(Lanes::B),
        V::AvgU(Lanes::B) => V::AvgU(Lanes::B),
        V::AvgU(Lanes::W) => V::AvgU(Lanes::W),
        V::MulLo(Lanes::W) => V::MulLo(Lanes::W),
        V::UnpackLo(Lanes::B) => V::UnpackLo(Lanes::B),
        V::UnpackLo(Lanes::W) => V::UnpackLo(Lanes::W),
        V::UnpackLo(Lanes::D) => V::UnpackLo(Lanes::D),
        V::UnpackLo(Lanes::Q) => V::UnpackLo(Lanes::Q),
        V::UnpackHi(Lanes::B) => V::UnpackHi(Lanes::B),
        V::UnpackHi(Lanes::W) => V::UnpackHi(Lanes::W),
        V::UnpackHi(Lanes::D) => V::UnpackHi(Lanes::D),
        V::UnpackHi(Lanes::Q) => V::UnpackHi(Lanes::Q),
    }
}

/// [`concrete_fn`] for [`Op::VecImm`]: one function per mnemonic (the immediate is read at
/// run time).
fn vec_imm_fn(m: Mnemonic) -> Helper {
    use Mnemonic as M;
    macro_rules! each {
        ($($m:ident),* $(,)?) => {
            match m {
                $(M::$m => |c, i| vec::imm(c, i, M::$m),)*
                _ => |_, _| Err(Exception::UD),
            }
        };
    }
    each!(Pshufd, Pshuflw, Pshufhw, Psllw, Pslld, Psllq, Psrlw, Psrld, Psrlq, Psraw, Psrad)
}

/// Executes one decoded instruction. The executor has set `rip` to the instruction and
/// `next_rip` to the one after it; on error nothing architectural has changed except what a
/// partially completed REP instruction leaves, and the exception is to be delivered.
pub fn execute<E: Emit>(e: &mut E, i: &Insn) -> Result<()> {
    execute_op(e, resolve(i), i)
}

/// The masked count of a shift whose count operand is an immediate (or the implicit 1 of
/// the D0/D1 forms), when it is not zero.
pub fn fixed_shift_count(i: &Insn) -> Option<u64> {
    let w = op::op_width(i, 0);
    let raw = match i.op_count() {
        1 => 1,
        2 if matches!(i.op_kind(1), OpKind::Immediate8) => u64::from(i.immediate8()),
        _ => return None,
    };
    let n = raw & if w == Width::W64 { 0x3f } else { 0x1f };
    (n != 0).then_some(n)
}

fn is_far_mem(i: &Insn) -> bool {
    use iced_x86::MemorySize as M;
    i.op_kind(0) == OpKind::Memory && matches!(i.memory_size(), M::SegPtr16 | M::SegPtr32 | M::SegPtr64)
}

fn shift_helper(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    shift::shift(c, i, i.mnemonic())
}

fn string_helper(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    string::string_op(c, i, i.mnemonic())
}

fn int_helper(c: &mut Concrete<'_>, i: &Insn) -> Result<()> {
    system::int(c, i, i.mnemonic())
}

/// LOCK is allowed only on read-modify-write instructions with a memory destination.
fn lockable(i: &Insn) -> bool {
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
