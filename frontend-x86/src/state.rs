//! The architectural state of one x86-64 CPU.

use crate::flags::LazyFlags;

/// Register or operand width (`repr(u8)`: compiled code stores it into lazy flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Width {
    /// 8 bits.
    W8,
    /// 16 bits.
    W16,
    /// 32 bits.
    W32,
    /// 64 bits.
    W64,
}

impl Width {
    /// Size in bytes.
    #[inline]
    pub const fn bytes(self) -> u8 {
        match self {
            Width::W8 => 1,
            Width::W16 => 2,
            Width::W32 => 4,
            Width::W64 => 8,
        }
    }
    /// Size in bits.
    #[inline]
    pub const fn bits(self) -> u32 {
        self.bytes() as u32 * 8
    }
    /// All ones in the width.
    #[inline]
    pub const fn mask(self) -> u64 {
        match self {
            Width::W8 => 0xff,
            Width::W16 => 0xffff,
            Width::W32 => 0xffff_ffff,
            Width::W64 => u64::MAX,
        }
    }
    /// The sign bit of the width.
    #[inline]
    pub const fn sign(self) -> u64 {
        1u64 << (self.bits() - 1)
    }
    /// The width of `n` bytes (1, 2, 4 or 8).
    #[inline]
    pub const fn from_bytes(n: u32) -> Option<Width> {
        match n {
            1 => Some(Width::W8),
            2 => Some(Width::W16),
            4 => Some(Width::W32),
            8 => Some(Width::W64),
            _ => None,
        }
    }
    /// Sign-extends the low bits of `v` from this width to 64 bits.
    #[inline]
    pub const fn sext(self, v: u64) -> u64 {
        let sh = 64 - self.bits();
        (((v << sh) as i64) >> sh) as u64
    }
}

/// The six segment registers, in the encoding order of the ISA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SegReg {
    /// ES.
    Es = 0,
    /// CS.
    Cs = 1,
    /// SS.
    Ss = 2,
    /// DS.
    Ds = 3,
    /// FS.
    Fs = 4,
    /// GS.
    Gs = 5,
}

impl SegReg {
    /// All six, in encoding order.
    pub const ALL: [SegReg; 6] = [SegReg::Es, SegReg::Cs, SegReg::Ss, SegReg::Ds, SegReg::Fs, SegReg::Gs];
}

/// A segment register with its hidden descriptor cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// The visible selector.
    pub selector: u16,
    /// Linear base address.
    pub base: u64,
    /// Byte-granular limit (already scaled by G).
    pub limit: u32,
    /// Descriptor attributes in the layout of bits 40..56 of a descriptor: type (0-3), S (4),
    /// DPL (5-6), P (7), AVL (12), L (13), D/B (14), G (15).
    pub attr: u16,
}

/// Segment attribute bits, in the layout of [`Segment::attr`].
pub mod attr {
    /// Accessed (for code/data) or the low type bit.
    pub const ACCESSED: u16 = 1 << 0;
    /// Writable (data) / readable (code).
    pub const RW: u16 = 1 << 1;
    /// Expand-down (data) / conforming (code).
    pub const DC: u16 = 1 << 2;
    /// Code segment (when S is set).
    pub const CODE: u16 = 1 << 3;
    /// Code or data rather than system.
    pub const S: u16 = 1 << 4;
    /// Shift of the DPL field.
    pub const DPL_SHIFT: u16 = 5;
    /// Present.
    pub const P: u16 = 1 << 7;
    /// 64-bit code segment.
    pub const L: u16 = 1 << 13;
    /// Default operation size 32 bits / big stack.
    pub const DB: u16 = 1 << 14;
    /// Granularity.
    pub const G: u16 = 1 << 15;
}

impl Segment {
    /// A real-mode segment: base = selector * 16, 64 KiB limit, writable data attributes.
    pub fn real_mode(selector: u16) -> Segment {
        Segment {
            selector,
            base: u64::from(selector) << 4,
            limit: 0xffff,
            attr: attr::P | attr::S | attr::RW | attr::ACCESSED,
        }
    }
    /// A real-mode code segment (what CS holds in real mode): as [`Segment::real_mode`] with
    /// the code type, so that the cache is valid when CR0.PE is set before the far jump.
    pub fn real_mode_code(selector: u16) -> Segment {
        Segment { attr: attr::P | attr::S | attr::CODE | attr::RW | attr::ACCESSED, ..Segment::real_mode(selector) }
    }
    /// The descriptor privilege level.
    #[inline]
    pub fn dpl(&self) -> u8 {
        ((self.attr >> attr::DPL_SHIFT) & 3) as u8
    }
}

/// A descriptor-table register (GDTR, IDTR).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DescTable {
    /// Linear base address.
    pub base: u64,
    /// Limit in bytes.
    pub limit: u16,
}

/// The general-purpose registers in encoding order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum Gpr {
    Rax = 0,
    Rcx,
    Rdx,
    Rbx,
    Rsp,
    Rbp,
    Rsi,
    Rdi,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

/// CR0 bits (the paging ones are softmmu's, re-exported).
pub mod cr0 {
    pub use softmmu::paging::cr0::{PE, PG, WP};
    /// Monitor coprocessor.
    pub const MP: u64 = 1 << 1;
    /// Emulation (no x87).
    pub const EM: u64 = 1 << 2;
    /// Task switched.
    pub const TS: u64 = 1 << 3;
    /// Extension type (always 1 on 486+).
    pub const ET: u64 = 1 << 4;
    /// Numeric error reporting.
    pub const NE: u64 = 1 << 5;
    /// Alignment mask.
    pub const AM: u64 = 1 << 18;
    /// Not write-through.
    pub const NW: u64 = 1 << 29;
    /// Cache disable.
    pub const CD: u64 = 1 << 30;
}

/// CR4 bits (the paging ones are softmmu's, re-exported).
pub mod cr4 {
    pub use softmmu::paging::cr4::{PAE, PCIDE, PGE, PSE, SMAP, SMEP};
    /// Time stamp disable: RDTSC is privileged.
    pub const TSD: u64 = 1 << 2;
    /// Debugging extensions: DR4/DR5 are #UD.
    pub const DE: u64 = 1 << 3;
    /// FXSAVE/FXRSTOR and SSE enabled by the OS.
    pub const OSFXSR: u64 = 1 << 9;
    /// Unmasked SIMD exceptions as #XM.
    pub const OSXMMEXCPT: u64 = 1 << 10;
    /// XSAVE/XRSTOR/XGETBV/XSETBV enabled by the OS.
    pub const OSXSAVE: u64 = 1 << 18;
    /// Every bit this CPU accepts.
    pub const SUPPORTED: u64 = TSD | DE | PSE | PAE | PGE | OSFXSR | OSXMMEXCPT | PCIDE | OSXSAVE | SMEP | SMAP;
}

/// EFER bits (the paging ones are softmmu's, re-exported).
pub mod efer {
    pub use softmmu::paging::efer::{LMA, LME, NXE};
    /// SYSCALL enable.
    pub const SCE: u64 = 1 << 0;
}

/// Model-specific registers an OS needs, beyond those with their own fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Msrs {
    /// Added to the virtual cycle count to form the TSC the guest reads.
    pub tsc_offset: u64,
    pub apic_base: u64,
    pub pat: u64,
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub tsc_aux: u64,
    pub misc_enable: u64,
    pub mtrr_def_type: u64,
    /// The fixed-range MTRRs: 64K_00000, 16K_80000, 16K_A0000, 4K_C0000..4K_F8000. On the
    /// heap, as `mtrr_var`: 216 bytes more inside `CpuState` moved the fields compiled code
    /// uses and made the i386 Linux boot 7% slower (measured, same instruction count).
    pub mtrr_fixed: Box<[u64; 11]>,
    /// The variable-range MTRRs: PHYSBASE0, PHYSMASK0, ..., PHYSMASK7.
    pub mtrr_var: Box<[u64; 16]>,
}

/// The whole architectural state of one CPU.
#[derive(Clone, Debug)]
pub struct CpuState {
    /// RAX..R15 in encoding order.
    pub gpr: [u64; 16],
    /// The instruction pointer (an offset in CS) of the instruction being executed.
    pub rip: u64,
    /// Where execution continues after the current instruction: the semantics and system
    /// helpers set it when they transfer control; the executor moves it into `rip` when the
    /// instruction completes.
    pub next_rip: u64,
    /// RFLAGS, with the arithmetic flags possibly still lazy.
    pub flags: LazyFlags,
    /// ES, CS, SS, DS, FS, GS.
    pub seg: [Segment; 6],
    /// LDTR with its cache.
    pub ldtr: Segment,
    /// TR with its cache.
    pub tr: Segment,
    /// GDTR.
    pub gdtr: DescTable,
    /// IDTR.
    pub idtr: DescTable,
    /// CR0.
    pub cr0: u64,
    /// CR2 (page-fault address).
    pub cr2: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// CR8 (task priority).
    pub cr8: u64,
    /// EFER.
    pub efer: u64,
    /// Other MSRs.
    pub msr: Msrs,
    /// DR0-DR7 (DR4/DR5 alias DR6/DR7 and are not stored separately).
    pub dr: [u64; 8],
    /// Current privilege level.
    pub cpl: u8,
    /// The CPU is halted until an interrupt.
    pub halted: bool,
    /// Interrupts are blocked for one instruction (after STI, MOV SS, POP SS).
    pub interrupt_shadow: bool,
    /// A triple fault happened: the machine must reset or shut down.
    pub shutdown: bool,
    /// An NMI is being handled (blocks further NMIs until IRET).
    pub nmi_blocked: bool,
    /// Physical pages holding code the execution tiers cached; stores check it.
    pub code: crate::codemap::CodePages,
    /// The software TLB.
    pub tlb: TlbCache,
    /// The PAE page-directory-pointer entries, loaded with CR3 in PAE (not long) mode.
    pub pdptes: [u64; 4],
    /// XMM0-XMM15.
    pub xmm: [u128; 16],
    /// MXCSR.
    pub mxcsr: u32,
    /// XCR0, the state components XSAVE manages (XSETBV); bit 0 (x87) is always set.
    pub xcr0: u64,
    /// The x87 state as FXSAVE stores it (the x87 instructions are issue 5).
    pub fpu: FpuState,
    /// The x87's FERR# output is asserted (`CpuBus::set_ferr`).
    pub ferr: bool,
}

/// The x87 registers, in the form FXSAVE/FXRSTOR move them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FpuState {
    /// Control word.
    pub fcw: u16,
    /// Status word.
    pub fsw: u16,
    /// Abridged tag word: bit i set when ST(i)'s physical register i is valid.
    pub ftw: u8,
    /// Last opcode.
    pub fop: u16,
    /// Last instruction pointer and its selector.
    pub fip: u64,
    /// Last instruction's CS.
    pub fcs: u16,
    /// Last data pointer.
    pub fdp: u64,
    /// Last data pointer's selector.
    pub fds: u16,
    /// R0-R7, 80 bits each (also MM0-MM7 in their low 64 bits).
    pub st: [[u8; 10]; 8],
}

impl Default for FpuState {
    /// The state FNINIT leaves.
    fn default() -> Self {
        FpuState { fcw: 0x037f, fsw: 0, ftw: 0, fop: 0, fip: 0, fcs: 0, fdp: 0, fds: 0, st: [[0; 10]; 8] }
    }
}

impl FpuState {
    /// Every MMX instruction but EMMS enters MMX state: TOS = 0 and all eight tags valid
    /// (SDM vol. 1, 9.5.1).
    pub fn enter_mmx(&mut self) {
        self.fsw &= !0x3800;
        self.ftw = 0xff;
    }

    /// MMn: the low 64 bits of physical register n (n < 8).
    pub fn mm(&self, n: usize) -> u64 {
        let r = &self.st[n & 7];
        u64::from_le_bytes([r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]])
    }

    /// Writes MMn; the register's exponent and sign (bits 64-79) become all ones.
    pub fn set_mm(&mut self, n: usize, v: u64) {
        let r = &mut self.st[n & 7];
        r[..8].copy_from_slice(&v.to_le_bytes());
        r[8] = 0xff;
        r[9] = 0xff;
    }
}

/// The CPU's TLB. Cloning a CPU state gives it an empty TLB: a TLB is a cache.
#[derive(Debug, Default)]
pub struct TlbCache(pub softmmu::Tlb);

impl Clone for TlbCache {
    fn clone(&self) -> Self {
        TlbCache::default()
    }
}

impl Default for CpuState {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuState {
    /// The state after RESET (Intel SDM vol. 3, table 9-1): real mode, CS=F000 with base
    /// FFFF0000, IP=FFF0, so the first fetch is at physical FFFFFFF0.
    pub fn new() -> Self {
        let mut seg = [Segment::real_mode(0); 6];
        seg[SegReg::Cs as usize] = Segment { base: 0xffff_0000, ..Segment::real_mode_code(0xf000) };
        let mut gpr = [0u64; 16];
        // EDX holds the processor signature after reset.
        gpr[Gpr::Rdx as usize] = crate::cpuid::SIGNATURE as u64;
        CpuState {
            gpr,
            rip: 0xfff0,
            next_rip: 0xfff0,
            flags: LazyFlags::new(0x2),
            seg,
            ldtr: Segment { selector: 0, base: 0, limit: 0xffff, attr: attr::P | 2 },
            tr: Segment { selector: 0, base: 0, limit: 0xffff, attr: attr::P | 11 },
            gdtr: DescTable { base: 0, limit: 0xffff },
            idtr: DescTable { base: 0, limit: 0xffff },
            cr0: cr0::ET | cr0::NW | cr0::CD,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            cr8: 0,
            efer: 0,
            msr: Msrs {
                apic_base: 0xfee0_0000 | (1 << 11) | (1 << 8),
                pat: 0x0007_0406_0007_0406,
                misc_enable: crate::sem::privileged::MISC_ENABLE_RESET,
                ..Msrs::default()
            },
            dr: [0, 0, 0, 0, 0, 0, 0xffff_0ff0, 0x400],
            cpl: 0,
            halted: false,
            interrupt_shadow: false,
            shutdown: false,
            nmi_blocked: false,
            code: crate::codemap::CodePages::default(),
            tlb: TlbCache::default(),
            pdptes: [0; 4],
            xmm: [0; 16],
            mxcsr: 0x1f80,
            ferr: false,
            xcr0: 1,
            fpu: FpuState::default(),
        }
    }

    /// The paging controls as the page walker takes them.
    #[inline]
    pub fn paging_control(&self) -> softmmu::PagingControl {
        let mut c = softmmu::PagingControl::new(self.cr0, self.cr3, self.cr4, self.efer);
        c.pdptes = self.pdptes;
        c
    }

    /// Protected mode is on (CR0.PE).
    #[inline]
    pub fn protected(&self) -> bool {
        self.cr0 & cr0::PE != 0
    }

    /// Virtual-8086 mode (EFLAGS.VM in protected mode).
    #[inline]
    pub fn v86(&self) -> bool {
        self.protected() && self.flags.raw_bits() & crate::flags::VM != 0
    }

    /// Long mode is active (EFER.LMA).
    #[inline]
    pub fn long_mode(&self) -> bool {
        self.efer & efer::LMA != 0
    }

    /// 64-bit sub-mode: long mode with CS.L set.
    #[inline]
    pub fn mode64(&self) -> bool {
        self.long_mode() && self.seg[SegReg::Cs as usize].attr & attr::L != 0
    }

    /// The code bitness for decoding: 16, 32 or 64.
    #[inline]
    pub fn code_bits(&self) -> u32 {
        if self.mode64() {
            64
        } else if self.protected() && !self.v86() && self.seg[SegReg::Cs as usize].attr & attr::DB != 0 {
            32
        } else {
            16
        }
    }

    /// The stack-pointer width: 64 in 64-bit mode, else from SS.B.
    #[inline]
    pub fn stack_width(&self) -> crate::Width {
        if self.mode64() {
            crate::Width::W64
        } else if self.seg[SegReg::Ss as usize].attr & attr::DB != 0 && self.protected() {
            crate::Width::W32
        } else {
            crate::Width::W16
        }
    }

    /// Reads a general register at a width (low bits).
    #[inline]
    pub fn reg(&self, r: Gpr, w: Width) -> u64 {
        self.gpr[r as usize] & w.mask()
    }

    /// Writes a general register at a width with the ISA's merge rules: 8 and 16-bit writes
    /// keep the upper bits, 32-bit writes zero the upper half.
    #[inline]
    pub fn set_reg(&mut self, r: Gpr, w: Width, v: u64) {
        let slot = &mut self.gpr[r as usize];
        *slot = match w {
            Width::W8 => (*slot & !0xff) | (v & 0xff),
            Width::W16 => (*slot & !0xffff) | (v & 0xffff),
            Width::W32 => v & 0xffff_ffff,
            Width::W64 => v,
        };
    }
}
