//! The CPU's view of the machine: physical memory and I/O ports.

pub use softmmu::PhysBus;

/// Everything a CPU reaches outside itself. The machine implements it; tests implement it with
/// plain maps, so the CPU can be tested alone.
pub trait CpuBus: PhysBus {
    /// Reads `size` bytes (1, 2 or 4) from I/O port `port`. Nothing there reads all ones.
    fn io_read(&mut self, port: u16, size: u8) -> u32;
    /// Writes the low `size` bytes of `val` to I/O port `port`.
    fn io_write(&mut self, port: u16, size: u8, val: u32);
    /// The machine's virtual time in nanoseconds (design principle 10): the TSC is derived
    /// from it.
    fn now_ns(&mut self) -> u64;
    /// The exec loop's count of instructions retired in the current run (one call of the
    /// exec loop) before the instruction about to reach the bus: the machine's clock moves
    /// within a run by it, so a device access or a TSC read sees the time of its own
    /// instruction. Called before anything that may reach a device (every interpreted
    /// instruction, compiled code's calls into the runtime); the count starts at 0 with each
    /// run. The default has no clock to move.
    fn set_retired(&mut self, _retired: u64) {}
    /// The instruction count (from the start of the current run, as in
    /// [`CpuBus::set_retired`]) at which the machine wants the run to end: a device access
    /// armed a timer that expires before the run's budget would. The exec loop lowers its
    /// budget to it at block boundaries (so both tiers stop on the same instruction): the run
    /// ends there, or at the end of the block that asked if that is already later.
    /// `u64::MAX` (the default) when nothing asks.
    fn run_limit(&mut self) -> u64 {
        u64::MAX
    }
    /// The INTR line: the interrupt controller has a maskable interrupt for this CPU. The
    /// default is a machine with no interrupt controller.
    fn intr(&mut self) -> bool {
        false
    }
    /// The interrupt-acknowledge cycle: the vector of the interrupt being taken, or `None` if
    /// the request went away.
    fn inta(&mut self) -> Option<u8> {
        None
    }
    /// Whether the physical address map changed since the last call (shadow RAM switched,
    /// a region moved): decoded code and cached translations must be dropped. The default is
    /// a fixed map.
    fn take_map_change(&mut self) -> bool {
        false
    }
    /// The machine wants the CPU to stop at the next block boundary (a reset or power-off
    /// request, an exit port written). The default never asks.
    fn exit_requested(&mut self) -> bool {
        false
    }
    /// Takes a pending NMI (an edge: it is consumed). The default has no NMI source.
    fn take_nmi(&mut self) -> bool {
        false
    }
    /// A WRMSR to IA32_APIC_BASE (the CPU keeps the value too): the machine moves, enables
    /// or disables its local APIC. The default has no APIC.
    fn set_apic_base(&mut self, _value: u64) {}
    /// The local APIC's task-priority register, which CR8 reads as bits 7:4; `None` when the
    /// machine has no APIC (CR8 is then a plain register).
    fn tpr(&mut self) -> Option<u8> {
        None
    }
    /// Writes the local APIC's task-priority register (MOV to CR8 writes `cr8 << 4`).
    fn set_tpr(&mut self, _tpr: u8) {}
    /// IA32_TSC_DEADLINE as a virtual time in nanoseconds (0: disarmed); `None` when there is
    /// no APIC timer (the MSR is then absent).
    fn tsc_deadline_ns(&mut self) -> Option<u64> {
        None
    }
    /// Arms the APIC timer's TSC deadline at virtual time `at_ns` (0 disarms it).
    fn set_tsc_deadline_ns(&mut self, _at_ns: u64) {}
    /// The x87's FERR# output changed (SDM vol. 1, appendix D): asserted when a waiting x87 or
    /// MMX instruction meets a pending unmasked exception with CR0.NE clear, negated when the
    /// exception flags are cleared (FNCLEX, FNINIT, FNSAVE, a restored state without ES). On a
    /// PC its rise latches IRQ13 and its fall releases IGNNE#. The default has no such line.
    fn set_ferr(&mut self, _asserted: bool) {}
    /// The IGNNE# input: while asserted, a waiting instruction goes on despite a pending x87
    /// exception instead of freezing. A PC asserts it when port 0xF0 is written while FERR#
    /// is asserted. The default never asserts it.
    fn ignne(&mut self) -> bool {
        false
    }
}
