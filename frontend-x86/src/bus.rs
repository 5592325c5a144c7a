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
