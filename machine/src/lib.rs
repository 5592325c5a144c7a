//! The PC: wires memory, devices and a CPU backend together and runs them.
//!
//! Today's machine is the minimum that runs a firmware image: RAM from address 0, the image
//! mapped read-only so it ends at 4 GiB with its last 128 KiB aliased below 1 MiB (as a PC
//! does), the debug console at port 0xE9 and QEMU's isa-debug-exit at 0xF4, and the
//! interpreter tier. The chipset (PIC, PIT, RTC, UART, ...) and the direct kernel loaders join
//! it in the platform issue.

mod bus;

use std::io::Write;

use devices::debug::{DebugCon, DebugExit};
use frontend_x86::CpuState;
use softmmu::{GuestRam, RamError};

pub use bus::PcBus;

/// Errors from building or running a machine.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// Guest RAM could not be created.
    #[error(transparent)]
    Ram(#[from] RamError),
    /// The firmware image has a size a PC cannot map.
    #[error("firmware image is {0} bytes; it must be a non-zero multiple of 64 KiB and at most 16 MiB")]
    BiosSize(usize),
    /// Guest RAM would overlap the firmware or the memory-mapped devices below 4 GiB.
    #[error("{0} bytes of guest memory is more than the {1} bytes this machine maps below 4 GiB")]
    TooMuchRam(u64, u64),
}

/// How the machine is put together.
pub struct MachineConfig {
    /// Guest RAM in bytes.
    pub ram_bytes: u64,
    /// The firmware image, mapped so it ends at 4 GiB.
    pub bios: Vec<u8>,
    /// Where the port 0xE9 debug console writes, if anywhere.
    pub debugcon: Option<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for MachineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineConfig")
            .field("ram_bytes", &self.ram_bytes)
            .field("bios_bytes", &self.bios.len())
            .field("debugcon", &self.debugcon.is_some())
            .finish()
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The guest wrote `value` to isa-debug-exit; the process should exit with `status`.
    DebugExit {
        /// The exit status QEMU would give: value * 2 + 1.
        status: i32,
    },
    /// The CPU halted with interrupts disabled and nothing can wake it.
    HaltedForever,
    /// The CPU halted with interrupts enabled, but this machine has no interrupt source yet.
    HaltedNoInterrupts,
    /// A triple fault.
    TripleFault,
    /// The instruction limit given to [`Machine::run`] was reached.
    InstructionLimit,
}

/// A PC with one CPU.
#[derive(Debug)]
pub struct Machine {
    /// The CPU.
    pub cpu: CpuState,
    /// Memory and devices.
    pub bus: PcBus,
    /// Guest instructions executed so far.
    pub instructions: u64,
    /// The execution tier and its decoded-block cache.
    pub interp: translator::Interpreter,
}

/// The highest RAM address below 4 GiB: the PCI hole and the firmware start here (QEMU's pc
/// machine keeps low RAM below 3.5 GiB when the guest has more).
pub const LOW_RAM_LIMIT: u64 = 0xe000_0000;

impl Machine {
    /// Builds a machine from `config`.
    pub fn new(config: MachineConfig) -> Result<Self, MachineError> {
        let len = config.bios.len();
        if len == 0 || !len.is_multiple_of(0x10000) || len > 16 << 20 {
            return Err(MachineError::BiosSize(len));
        }
        if config.ram_bytes > LOW_RAM_LIMIT {
            return Err(MachineError::TooMuchRam(config.ram_bytes, LOW_RAM_LIMIT));
        }
        let ram = GuestRam::new(config.ram_bytes)?;
        let debugcon = config.debugcon.map(DebugCon::new);
        let bus = PcBus::new(ram, config.bios, debugcon, DebugExit::new());
        Ok(Machine { cpu: CpuState::new(), bus, instructions: 0, interp: translator::Interpreter::new() })
    }

    /// Runs until the guest stops (or `limit` instructions have run).
    pub fn run(&mut self, limit: u64) -> Outcome {
        const SLICE: u64 = 100_000;
        loop {
            let left = limit.saturating_sub(self.instructions);
            if left == 0 {
                return Outcome::InstructionLimit;
            }
            // Deterministic virtual time until the machine has a clock: one nanosecond per
            // guest instruction.
            self.bus.now_ns = self.instructions;
            let (n, exit) = self.interp.run(&mut self.cpu, &mut self.bus, left.min(SLICE));
            self.instructions += n;
            if let Some(status) = self.bus.debug_exit.requested() {
                return Outcome::DebugExit { status };
            }
            match exit {
                translator::Exit::Shutdown => return Outcome::TripleFault,
                translator::Exit::Halted => {
                    let if_set = self.cpu.flags.raw_bits() & frontend_x86::flags::IF != 0;
                    return if if_set { Outcome::HaltedNoInterrupts } else { Outcome::HaltedForever };
                }
                translator::Exit::Budget => {}
            }
        }
    }
}
