//! The PC: wires memory, devices and a CPU backend together and runs them.
//!
//! Today's machine runs a firmware image on softmmu's PC address map (RAM below and above
//! the PCI hole, the image read-only so it ends at 4 GiB with its last 128 KiB aliased below
//! 1 MiB), the ISA chipset (8259A pair, 8254, RTC/CMOS, i8042, COM1, port 0x92, POST, the
//! debug console at 0xE9 and QEMU's isa-debug-exit at 0xF4), the local APIC, the IO-APIC, the
//! ACPI PM block (S5 ends the run with [`Outcome::PowerOff`]), and the interpreter tier.
//!
//! Host input (a terminal on COM1, the display window's keyboard) arrives as [`HostEvent`]s
//! over a channel the run loop drains between slices; the display window is refreshed by a
//! pump the run loop calls between slices ([`Machine::set_pump`]).
//!
//! Time is virtual and deterministic (design principle 10): one nanosecond per guest
//! instruction, exact at every instruction (a TSC read or a device access in the middle of a
//! run slice sees the time of its own instruction, under either tier), and a halted CPU skips
//! to the next timer deadline. The chipset (PIC, PIT, RTC, UART, ...) and the direct kernel loaders join
//! it in the platform issue.

mod bus;
pub mod pci;

use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

use bios::linux::{BootPlan, Entry, BOOT_CS, BOOT_DS};
use devices::debug::DebugCon;
use devices::i8042::Key;
use devices::rtc::Rtc;
use devices::uart::Uart;
use devices::SystemRequest;
use frontend_x86::state::{attr, cr0};
use frontend_x86::{CpuState, SegReg, Segment};
use softmmu::{MapError, PcLayout, PhysMap};

pub use bus::PcBus;

/// Errors from building or running a machine.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// The memory map could not be built (RAM size, firmware image).
    #[error(transparent)]
    Map(#[from] MapError),
    /// A kernel to be entered by the firmware, but no firmware.
    #[error("the kernel is to be started by the BIOS, but the machine has no firmware")]
    NoFirmware,
}

/// Input from the host's side of the machine (a terminal, a window), sent over a channel the
/// run loop drains between slices (devices never touch the host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostEvent {
    /// A byte arriving on COM1's line.
    Serial(u8),
    /// A key of the PS/2 keyboard went down (`pressed`) or up.
    Key {
        /// The key, by its set 1 make code.
        key: Key,
        /// Down or up.
        pressed: bool,
    },
    /// The user asked to end the run (the terminal's Ctrl-A X, the window closed).
    Quit,
}

/// The longest a halted CPU waits for host input, in host time, before it looks at its timers
/// again.
const HOST_WAIT: Duration = Duration::from_millis(10);

/// Work the run loop does for the host between slices, at most once per `every` of host
/// time: the display window's refresh.
struct Pump {
    every: Duration,
    last: Instant,
    work: Box<dyn FnMut(&mut PcBus)>,
}

impl std::fmt::Debug for Pump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pump").field("every", &self.every).finish_non_exhaustive()
    }
}

/// How the machine is put together.
pub struct MachineConfig {
    /// Guest RAM in bytes.
    pub ram_bytes: u64,
    /// The firmware image, mapped so it ends at 4 GiB.
    pub bios: Vec<u8>,
    /// Where the port 0xE9 debug console writes, if anywhere.
    pub debugcon: Option<Box<dyn Write + Send>>,
    /// The debug console's port (0xE9 unless set).
    pub debugcon_port: u16,
    /// Where COM1 transmits, if the machine has a serial port.
    pub serial: Option<Box<dyn Write + Send>>,
    /// Where COM2 transmits, if the machine has a second serial port (output only: host
    /// input goes to COM1).
    pub serial2: Option<Box<dyn Write + Send>>,
    /// What the RTC reads at power-on, in seconds since the Unix epoch.
    pub rtc_start: i64,
    /// A kernel (QEMU's -kernel): its bytes are placed in RAM at power-on and after every
    /// reset. With a 32-bit entry the CPU starts there (`bios` may then be empty); with a
    /// real-mode entry the firmware (cranebox's ROM, built for that entry) runs first.
    pub kernel: Option<BootPlan>,
}

impl MachineConfig {
    /// `ram_bytes` of RAM and the firmware `bios`; no debug console or serial port, the debug
    /// console's port at 0xE9 if one is added, the RTC at the Unix epoch.
    pub fn new(ram_bytes: u64, bios: Vec<u8>) -> Self {
        MachineConfig {
            ram_bytes,
            bios,
            debugcon: None,
            debugcon_port: 0xe9,
            serial: None,
            serial2: None,
            rtc_start: 0,
            kernel: None,
        }
    }
}

impl std::fmt::Debug for MachineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineConfig")
            .field("ram_bytes", &self.ram_bytes)
            .field("bios_bytes", &self.bios.len())
            .field("debugcon", &self.debugcon.is_some())
            .field("debugcon_port", &self.debugcon_port)
            .field("serial", &self.serial.is_some())
            .field("serial2", &self.serial2.is_some())
            .field("rtc_start", &self.rtc_start)
            .field("kernel", &self.kernel)
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
    /// The CPU halted with interrupts enabled and no timer or device will ever interrupt it.
    HaltedNoInterrupts,
    /// A triple fault.
    TripleFault,
    /// The guest powered the machine off (ACPI S5).
    PowerOff,
    /// The guest asked for a reset and [`Machine::no_reboot`] is set (QEMU's -no-reboot).
    Reset,
    /// The instruction limit given to [`Machine::run`] was reached.
    InstructionLimit,
    /// The host asked to stop ([`HostEvent::Quit`]).
    Quit,
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
    /// Virtual nanoseconds spent halted (skipped to the next timer deadline).
    pub skipped_ns: u64,
    /// Resets the guest asked for (keyboard controller, port 0x92, 0xCF9).
    pub resets: u64,
    /// A guest reset ends the run ([`Outcome::Reset`]) instead of restarting the machine.
    pub no_reboot: bool,
    /// The directly booted kernel, started again on every reset.
    kernel: Option<BootPlan>,
    /// Host input, while its sender is alive.
    host: Option<Receiver<HostEvent>>,
    /// Bytes from the host waiting for room in COM1's receiver.
    serial_backlog: VecDeque<u8>,
    /// Keys from the host waiting for room in the keyboard's buffer.
    key_backlog: VecDeque<(Key, bool)>,
    /// The host asked to stop.
    quit: bool,
    /// Host work between slices (the display window), if any.
    pump: Option<Pump>,
}

impl Machine {
    /// Builds a machine from `config`.
    pub fn new(config: MachineConfig) -> Result<Self, MachineError> {
        let mut mem = PhysMap::pc(config.ram_bytes)?;
        // A direct kernel boot needs no firmware; without it 0xE0000-0xFFFFF stays RAM.
        let direct = config.kernel.as_ref().is_some_and(|k| matches!(k.entry, Entry::Protected32(_)));
        if !direct && config.bios.is_empty() && config.kernel.is_some() {
            return Err(MachineError::NoFirmware);
        }
        if !direct || !config.bios.is_empty() {
            mem.map_firmware(config.bios)?;
        }
        let layout = PcLayout::for_ram(config.ram_bytes);
        let mut rtc = Rtc::new(config.rtc_start);
        rtc.set_memory_layout(layout.below_4g, layout.above_4g);
        let debugcon = config.debugcon.map(DebugCon::new);
        let com1 = config.serial.map(Uart::new);
        let mut bus = PcBus::new(mem, rtc, com1, debugcon);
        bus.com2 = config.serial2.map(Uart::new);
        bus.debugcon_port = config.debugcon_port;
        let mut m = Machine {
            cpu: CpuState::new(),
            bus,
            instructions: 0,
            interp: translator::Interpreter::new(),
            skipped_ns: 0,
            resets: 0,
            no_reboot: false,
            kernel: config.kernel,
            host: None,
            serial_backlog: VecDeque::new(),
            key_backlog: VecDeque::new(),
            quit: false,
            pump: None,
        };
        m.start_kernel()?;
        Ok(m)
    }

    /// Places the kernel's pieces in RAM and, for a 32-bit entry, puts the CPU there: flat
    /// protected mode, paging and interrupts off (Linux boot protocol, multiboot).
    fn start_kernel(&mut self) -> Result<(), MachineError> {
        let Some(plan) = &self.kernel else { return Ok(()) };
        for (addr, bytes) in &plan.blobs {
            self.bus.mem.load(*addr, bytes)?;
        }
        // A real-mode entry is the ROM's to take (INT 19h); the CPU starts at the reset vector.
        let Entry::Protected32(e) = plan.entry else { return Ok(()) };
        let flat = |selector: u16, code: bool| {
            let kind = if code { attr::CODE } else { 0 };
            Segment {
                selector,
                base: 0,
                limit: 0xffff_ffff,
                attr: attr::P | attr::S | attr::RW | attr::ACCESSED | attr::DB | attr::G | kind,
            }
        };
        let cpu = &mut self.cpu;
        cpu.cr0 |= cr0::PE;
        cpu.gdtr.base = u64::from(e.gdt_base);
        cpu.gdtr.limit = e.gdt_limit;
        cpu.seg = [flat(BOOT_DS, false); 6];
        cpu.seg[SegReg::Cs as usize] = flat(BOOT_CS, true);
        cpu.gpr = [0; 16];
        cpu.gpr[frontend_x86::Gpr::Rax as usize] = u64::from(e.eax);
        cpu.gpr[frontend_x86::Gpr::Rbx as usize] = u64::from(e.ebx);
        cpu.gpr[frontend_x86::Gpr::Rsi as usize] = u64::from(e.esi);
        cpu.rip = u64::from(e.eip);
        cpu.next_rip = cpu.rip;
        self.interp.flush(&mut self.cpu);
        Ok(())
    }

    /// A warm reset, as the reset line does it: the CPU starts again at the reset vector, the
    /// chipset returns to its power-on state, RAM keeps its contents.
    pub fn reset(&mut self) {
        self.cpu = CpuState::new();
        self.interp.flush(&mut self.cpu);
        self.bus.reset();
        self.resets += 1;
        // Like QEMU's -kernel, a reset boots the same kernel again.
        if let Err(e) = self.start_kernel() {
            log::error!("cannot restart the kernel after a reset: {e}");
        }
    }

    /// Connects host input: serial bytes, keys and quit requests arrive on `events`. While it
    /// is connected, a halted CPU waits for it in host time (at most the time to its next
    /// timer event) rather than skipping ahead at once, so an idle interactive guest keeps
    /// real time and reacts to typing.
    pub fn connect_host(&mut self, events: Receiver<HostEvent>) {
        self.host = Some(events);
    }

    /// Has the run loop call `work` with the bus between slices, at most once per `every` of
    /// host time (a halted CPU waits at most 10 ms for host input, so it keeps being called).
    /// The display window refreshes this way on the thread that runs the machine.
    pub fn set_pump(&mut self, every: Duration, work: Box<dyn FnMut(&mut PcBus)>) {
        self.pump = Some(Pump { every, last: Instant::now(), work });
    }

    /// Runs the pump if it is due.
    fn run_pump(&mut self) {
        if let Some(p) = &mut self.pump {
            if p.last.elapsed() >= p.every {
                p.last = Instant::now();
                (p.work)(&mut self.bus);
            }
        }
    }

    /// Takes in one host event.
    fn host_event(&mut self, event: HostEvent) {
        match event {
            HostEvent::Serial(b) => self.serial_backlog.push_back(b),
            HostEvent::Key { key, pressed } => self.key_backlog.push_back((key, pressed)),
            HostEvent::Quit => self.quit = true,
        }
    }

    /// Drains the host channel without blocking and hands what the devices can take to them.
    fn poll_host(&mut self) {
        while let Some(rx) = &self.host {
            match rx.try_recv() {
                Ok(e) => self.host_event(e),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.host = None,
            }
        }
        self.feed_devices();
    }

    /// Moves backlogged host input into the devices as far as they have room: the host side
    /// holds what the guest has not drained yet, so nothing typed is lost to an overrun.
    /// Bytes for a COM1 whose guest never raises RTS wait for ever.
    fn feed_devices(&mut self) {
        let now = self.now_ns();
        match &mut self.bus.com1 {
            // RTS/CTS hardware flow control (the host's CTS is the guest's RTS on a null-modem
            // line): the host sends while the guest asserts RTS. Drivers raise it once the
            // port is open and set up (Linux when a process opens the tty, GRUB at init), so
            // bytes typed early wait instead of being flushed when the driver initialises the
            // FIFO. DTR is not enough: Linux raises DTR when it registers the console, before
            // the open that clears the FIFO and discards a byte from RBR.
            Some(u) if u.modem_outputs() & 0x02 != 0 => {
                let n = u.rx_room().min(self.serial_backlog.len());
                for b in self.serial_backlog.drain(..n) {
                    u.push_input(b, now);
                }
            }
            Some(_) => {}
            None => self.serial_backlog.clear(),
        }
        // A key is at most 8 bytes (Pause in set 2).
        while self.bus.kbc.keyboard_room() >= 8 {
            let Some((key, pressed)) = self.key_backlog.pop_front() else { break };
            self.bus.kbc.key_event(key, pressed, now);
        }
    }

    /// The CPU is halted and its next timer event is `skip_ns` away (or never): waits for host
    /// input for at most that long in host time and moves virtual time on by the time waited.
    /// Returns false when nothing can wake the CPU any more.
    fn idle(&mut self, skip_ns: Option<u64>) -> bool {
        let Some(rx) = &self.host else {
            return match skip_ns {
                Some(ns) => {
                    self.skipped_ns += ns;
                    true
                }
                None => false,
            };
        };
        let wait = skip_ns.map_or(HOST_WAIT, |ns| Duration::from_nanos(ns).min(HOST_WAIT));
        let t = Instant::now();
        let got = rx.recv_timeout(wait);
        let waited = (t.elapsed().as_nanos() as u64).max(1);
        match got {
            Ok(e) => {
                self.host_event(e);
                self.skipped_ns += skip_ns.map_or(waited, |ns| waited.min(ns));
                self.feed_devices();
            }
            Err(RecvTimeoutError::Timeout) => self.skipped_ns += skip_ns.map_or(waited, |ns| waited.min(ns).max(1)),
            Err(RecvTimeoutError::Disconnected) => {
                self.host = None;
                self.feed_devices();
            }
        }
        true
    }

    /// Virtual time: one nanosecond per guest instruction.
    pub fn now_ns(&self) -> u64 {
        self.instructions + self.skipped_ns
    }

    /// Runs until the guest stops (or `limit` instructions have run).
    pub fn run(&mut self, limit: u64) -> Outcome {
        const SLICE: u64 = 100_000;
        loop {
            let left = limit.saturating_sub(self.instructions);
            if left == 0 {
                return Outcome::InstructionLimit;
            }
            self.run_pump();
            self.poll_host();
            if self.quit {
                return Outcome::Quit;
            }
            let now = self.now_ns();
            self.bus.advance(now);
            // Run up to the next timer deadline, so its interrupt is taken on time.
            let until_deadline = self.bus.next_deadline(now).map_or(u64::MAX, |d| d.saturating_sub(now).max(1));
            let slice = left.min(SLICE).min(until_deadline);
            let (n, exit) = self.interp.run(&mut self.cpu, &mut self.bus, slice);
            self.instructions += n;
            if let Some(status) = self.bus.debug_exit.requested() {
                return Outcome::DebugExit { status };
            }
            for r in std::mem::take(&mut self.bus.requests) {
                match r {
                    SystemRequest::Reset if self.no_reboot => return Outcome::Reset,
                    SystemRequest::Reset => self.reset(),
                    SystemRequest::PowerOff => return Outcome::PowerOff,
                    SystemRequest::A20(on) => {
                        self.bus.mem.set_a20(on);
                        // Cached translations and decoded blocks assumed the old gate.
                        self.interp.flush(&mut self.cpu);
                    }
                }
            }
            match exit {
                translator::Exit::Shutdown => return Outcome::TripleFault,
                translator::Exit::Halted => {
                    let if_set = self.cpu.flags.raw_bits() & frontend_x86::flags::IF != 0;
                    if !if_set {
                        return Outcome::HaltedForever;
                    }
                    let now = self.now_ns();
                    self.bus.advance(now);
                    if self.bus.interrupt_pending() {
                        continue;
                    }
                    // Sleep until the next timer event or host input.
                    let skip = self.bus.next_deadline(now).map(|d| d.saturating_sub(now).max(1));
                    if !self.idle(skip) {
                        return Outcome::HaltedNoInterrupts;
                    }
                }
                translator::Exit::Budget => {}
            }
        }
    }
}
