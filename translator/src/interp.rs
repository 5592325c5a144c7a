//! The interpreter tier: one instruction at a time, on concrete values.

use frontend_x86::decode;
use frontend_x86::flags::TF;
use frontend_x86::interrupt::{self, EventKind};
use frontend_x86::{exception::vector, sem, Concrete, CpuBus, CpuState, Exception};

/// Why the exec loop returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The CPU executed HLT and is waiting for an interrupt.
    Halted,
    /// A triple fault: the machine must reset or power off.
    Shutdown,
    /// The instruction budget ran out.
    Budget,
}

/// Runs `cpu` for at most `budget` instructions. Returns how many completed and why it
/// stopped. Exceptions are delivered to the guest; nothing the guest does makes this fail.
pub fn run(cpu: &mut CpuState, bus: &mut dyn CpuBus, budget: u64) -> (u64, Exit) {
    let mut done = 0;
    while done < budget {
        if cpu.shutdown {
            return (done, Exit::Shutdown);
        }
        if cpu.halted {
            return (done, Exit::Halted);
        }
        let _ = step(cpu, bus);
        done += 1;
    }
    (done, if cpu.shutdown { Exit::Shutdown } else { Exit::Budget })
}

/// Executes one instruction, or delivers the exception it raises and returns it.
pub fn step(cpu: &mut CpuState, bus: &mut dyn CpuBus) -> Option<Exception> {
    cpu.interrupt_shadow = false;
    let single_step = cpu.flags.raw_bits() & TF != 0;
    let insn = match decode::decode_one(cpu, bus) {
        Ok(i) => i,
        Err(e) => {
            interrupt::raise(cpu, bus, e);
            return Some(e);
        }
    };
    cpu.next_rip = decode::next_ip(cpu, &insn);
    let r = {
        let mut c = Concrete::new(cpu, bus);
        sem::execute(&mut c, &insn)
    };
    match r {
        Ok(()) => {
            cpu.rip = cpu.next_rip;
            if single_step {
                // A single-step trap after the instruction completes (SDM vol. 3, 17.3.1.4).
                let rip = cpu.rip;
                if let Err(e) = interrupt::deliver(cpu, bus, vector::DB, None, rip, EventKind::Exception) {
                    interrupt::raise(cpu, bus, e);
                }
            }
            None
        }
        Err(e) => {
            interrupt::raise(cpu, bus, e);
            Some(e)
        }
    }
}
