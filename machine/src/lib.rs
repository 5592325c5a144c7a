//! The PC: wires memory, devices and a CPU backend together and runs them.
//!
//! Today's machine is the minimum that runs a firmware image: softmmu's PC address map (RAM
//! below and above the PCI hole, the image read-only so it ends at 4 GiB with its last 128 KiB
//! aliased below 1 MiB), the debug console at port 0xE9 and QEMU's isa-debug-exit at 0xF4, and
//! the interpreter tier. The chipset (PIC, PIT, RTC, UART, ...) and the direct kernel loaders join
//! it in the platform issue.

mod bus;

use std::io::Write;

use devices::debug::{DebugCon, DebugExit};
use frontend_x86::CpuState;
use softmmu::{MapError, PhysMap};

pub use bus::PcBus;

/// Errors from building or running a machine.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// The memory map could not be built (RAM size, firmware image).
    #[error(transparent)]
    Map(#[from] MapError),
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

impl Machine {
    /// Builds a machine from `config`.
    pub fn new(config: MachineConfig) -> Result<Self, MachineError> {
        let mut mem = PhysMap::pc(config.ram_bytes)?;
        mem.map_firmware(config.bios)?;
        let debugcon = config.debugcon.map(DebugCon::new);
        let bus = PcBus::new(mem, debugcon, DebugExit::new());
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
            self.bus.mem.set_time(self.instructions);
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
