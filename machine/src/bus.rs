//! The machine's side of the CPU bus: the physical address map (softmmu's `PhysMap`), the ISA
//! chipset on the I/O ports, and the interrupt lines from the devices to the CPU.
//!
//! Every ISA IRQ line goes to both the 8259A pair and the IO-APIC, as on a real PC: ISA IRQ0
//! (the PIT) on IO-APIC pin 2, every other ISA IRQ n on pin n (QEMU's pc, and the MADT's
//! interrupt source override for IRQ0). The local APIC stands between both and the CPU: its
//! own interrupts (timer, IPIs, IO-APIC messages) come first; the 8259A's INTR reaches the CPU
//! through LINT0 in ExtINT mode (virtual wire), or directly when the APIC is globally
//! disabled. The local APIC's window (0xFEE00000 unless moved by IA32_APIC_BASE) and the
//! IO-APIC's (0xFEC00000) are decoded here, ahead of the address map.
//!
//! The ACPI PM block sits at 0x600-0x60B with the SCI on ISA IRQ 9 and GPE0 at 0xAFE0 (see
//! `devices::acpi` for the FADT values).

use devices::acpi::{AcpiPm, GPE0_BASE, GPE0_LEN, PM_BASE, PM_LEN, SCI_IRQ};
use devices::apic::{LocalApic, APIC_WINDOW};
use devices::debug::{DebugCon, DebugExit};
use devices::hpet::{Hpet, HpetRoute, HPET_BASE, HPET_WINDOW, TIMERS};
use devices::i8042::I8042;
use devices::ioapic::{IoApic, IoApicMessage};
use devices::pic::Pic;
use devices::pit::Pit;
use devices::port92::Port92;
use devices::post::PostCode;
use devices::rtc::Rtc;
use devices::uart::Uart;
use devices::vga::Vga;
use devices::{MmioDevice, PortDevice, SystemRequest, Timed};
use frontend_x86::CpuBus;
use softmmu::{all_ones, AccessBytes, PageBacking, PhysBus, PhysMap};

/// COM1's base port and IRQ.
const COM1: u16 = 0x3f8;
/// COM2's ports.
const COM2: u16 = 0x2f8;
/// COM2's ISA interrupt.
const COM2_IRQ: u8 = 3;
const COM1_IRQ: u8 = 4;
/// The IO-APIC's MMIO base.
pub const IOAPIC_BASE: u64 = 0xfec0_0000;

/// The interrupt controllers' and the HPET's MMIO windows, decoded ahead of the address map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Window {
    Apic,
    IoApic,
    Hpet,
}

/// Memory, ports and interrupt routing of the PC, as the CPU reaches them.
#[derive(Debug)]
pub struct PcBus {
    /// The physical address map: RAM, firmware, MMIO, holes.
    pub mem: PhysMap,
    /// The 8259A pair.
    pub pic: Pic,
    /// The 8254 and port 0x61.
    pub pit: Pit,
    /// The MC146818 RTC and CMOS.
    pub rtc: Rtc,
    /// The keyboard controller.
    pub kbc: I8042,
    /// COM1, if the machine has a serial port.
    pub com1: Option<Uart>,
    /// COM2 (0x2F8, IRQ 3), when the machine has a second serial port.
    pub com2: Option<Uart>,
    /// System control port A.
    pub port92: Port92,
    /// Port 0x80.
    pub post: PostCode,
    /// PCI configuration space and the i440FX's shadow-RAM control.
    pub pci: crate::pci::PciHost,
    /// The debug console, if configured.
    pub debugcon: Option<DebugCon>,
    /// Its port: 0xE9 by default; SeaBIOS writes its log to 0x402 (QEMU:
    /// `-global isa-debugcon.iobase=0x402`).
    pub debugcon_port: u16,
    /// isa-debug-exit at port 0xF4.
    pub debug_exit: DebugExit,
    /// Virtual time the devices have been brought to (design principle 10): the start of
    /// the current run slice, then the time of the last device access within it.
    pub now_ns: u64,
    /// Virtual time at the start of the current run slice ([`PcBus::advance`]).
    slice_start: u64,
    /// Instructions of the slice retired before the one reaching the bus
    /// ([`CpuBus::set_retired`]): that instruction's time is `slice_start + retired`.
    retired: u64,
    /// Where a device access asked the slice to end, in instructions from its start
    /// ([`CpuBus::run_limit`]).
    limit: u64,
    /// Reset, A20 and power-off requests from the chipset, for the machine.
    pub requests: Vec<SystemRequest>,
    /// The CPU's local APIC.
    pub apic: LocalApic,
    /// The IO-APIC.
    pub ioapic: IoApic,
    /// The ACPI PM block.
    pub acpi: AcpiPm,
    /// The HPET.
    pub hpet: Hpet,
    /// The VGA's registers (its memory window is RAM).
    pub vga: Vga,
    /// An NMI from the IO-APIC waits for the CPU.
    nmi: bool,
    /// The x87's FERR# output (CR0.NE clear).
    ferr: bool,
    /// The coprocessor-error latch (SDM vol. 1, figure D-1, flip-flop 1): set by FERR#'s rise,
    /// cleared by a write to port 0xF0; it drives IRQ13.
    fp_irq: bool,
    /// IGNNE# to the CPU (flip-flop 2): set by a write to port 0xF0 while FERR# is asserted,
    /// cleared when FERR# goes away.
    ignne: bool,
    /// PIRQA-D, one bit each, set while asserted.
    pirq_levels: u8,
    /// The local APIC's window moved: cached translations must go.
    apic_moved: bool,
}

impl PcBus {
    /// A bus over the address map `mem` with the ISA chipset. `rtc` is the clock already set to
    /// the start date and the memory size.
    pub fn new(mem: PhysMap, rtc: Rtc, com1: Option<Uart>, debugcon: Option<DebugCon>) -> Self {
        PcBus {
            mem,
            pic: Pic::new(),
            pit: Pit::new(),
            rtc,
            kbc: I8042::new(),
            com1,
            com2: None,
            port92: Port92::new(),
            post: PostCode::new(),
            pci: crate::pci::PciHost::new(),
            debugcon,
            debugcon_port: 0xe9,
            debug_exit: DebugExit::new(),
            now_ns: 0,
            slice_start: 0,
            retired: 0,
            limit: u64::MAX,
            requests: Vec::new(),
            apic: LocalApic::new(),
            ioapic: IoApic::new(),
            acpi: AcpiPm::new(),
            hpet: Hpet::new(),
            vga: Vga::new(),
            nmi: false,
            ferr: false,
            fp_irq: false,
            ignne: false,
            pirq_levels: 0,
            apic_moved: false,
        }
    }

    /// A copy of the VGA's 128 KiB memory window (0xA0000-0xBFFFF), for the display.
    pub fn vga_window(&mut self) -> Vec<u8> {
        let mut buf = vec![0u8; devices::vga::WINDOW_LEN];
        self.mem.read_bytes(devices::vga::WINDOW_BASE, &mut buf);
        buf
    }

    /// Whether an interrupt waits for the CPU (the INTR line, as the CPU sees it).
    pub fn interrupt_pending(&self) -> bool {
        self.apic.has_interrupt() || (self.apic.accepts_pic() && self.pic.has_interrupt())
    }

    /// Drives ISA IRQ `irq` on both the 8259A and the IO-APIC.
    fn set_isa_irq(&mut self, irq: u8, level: bool) {
        self.pic.set_irq(irq, level || self.pirq_to(irq));
        self.ioapic.set_irq(if irq == 0 { 2 } else { irq }, level);
    }

    /// Drives PCI interrupt PIRQA-D (`pirq` 0-3, asserted = `true`): IO-APIC pins 16-19, and
    /// the ISA IRQ the PIIX3's PIRQ route registers pick on the 8259A path. The 8259A input
    /// is the OR of the ISA device's line and the PIRQs routed to it.
    pub fn set_pirq(&mut self, pirq: u8, level: bool) {
        let Some(bit) = 1u8.checked_shl(u32::from(pirq)).filter(|_| pirq < 4) else { return };
        if level {
            self.pirq_levels |= bit;
        } else {
            self.pirq_levels &= !bit;
        }
        self.ioapic.set_irq(16 + pirq, level);
        self.sync_irqs();
    }

    /// The 8259A input for ISA IRQ `irq`: the device's line ORed with the PIRQs routed there.
    fn pirq_to(&self, irq: u8) -> bool {
        (0..4).any(|p| self.pirq_levels & (1 << p) != 0 && self.pci.pirq_route(p) == Some(irq))
    }

    /// Passes level-triggered EOIs back to the IO-APIC and its messages on to the local APIC.
    fn route_apic(&mut self) {
        while let Some(v) = self.apic.take_eoi_broadcast() {
            self.ioapic.eoi(v);
        }
        while let Some(m) = self.ioapic.take_message() {
            match m {
                IoApicMessage::Fixed { vector, level } => self.apic.accept(vector, level),
                IoApicMessage::Nmi => self.nmi = true,
            }
        }
    }

    /// The APIC, IO-APIC or HPET window `addr` falls in, and the offset in it.
    fn window(&self, addr: u64) -> Option<(Window, u64)> {
        let base = self.apic.mmio_base();
        if self.apic.hw_enabled() && (base..base + APIC_WINDOW).contains(&addr) {
            return Some((Window::Apic, addr - base));
        }
        if (IOAPIC_BASE..IOAPIC_BASE + 0x1000).contains(&addr) {
            return Some((Window::IoApic, addr - IOAPIC_BASE));
        }
        if (HPET_BASE..HPET_BASE + HPET_WINDOW).contains(&addr) {
            return Some((Window::Hpet, addr - HPET_BASE));
        }
        None
    }

    /// Hands the HPET's outputs on; returns the extra IRQ0 edges and IRQ8 level it drives.
    fn sync_hpet(&mut self) -> (u32, bool) {
        let (mut irq0, mut irq8) = (0, false);
        for n in 0..TIMERS {
            let edges = self.hpet.take_edges(n);
            let level = self.hpet.level(n);
            match self.hpet.route(n) {
                Some(HpetRoute::Isa(0)) => irq0 += edges + u32::from(level),
                Some(HpetRoute::Isa(irq)) => {
                    if edges > 0 {
                        self.set_isa_irq(irq, false);
                        self.set_isa_irq(irq, true);
                    }
                    irq8 |= level;
                }
                Some(HpetRoute::IoApic(pin)) => {
                    if edges > 0 {
                        self.ioapic.set_irq(pin, true);
                        self.ioapic.set_irq(pin, false);
                    }
                    if self.hpet.level_triggered(n) {
                        self.ioapic.set_irq(pin, level);
                    }
                }
                None => {}
            }
        }
        (irq0, irq8)
    }

    /// Starts a run slice at `now_ns`: brings the timers up to it and the interrupt lines up
    /// to date. Within the slice, time moves with the exec loop's count of retired
    /// instructions ([`CpuBus::set_retired`], one nanosecond each): every device access and
    /// TSC read sees the time of its own instruction.
    pub fn advance(&mut self, now_ns: u64) {
        self.slice_start = now_ns;
        self.retired = 0;
        self.limit = u64::MAX;
        self.sync_to(now_ns);
    }

    /// The virtual time of the instruction reaching the bus.
    fn clock(&self) -> u64 {
        self.slice_start.saturating_add(self.retired)
    }

    /// Before a device access: the devices move on to the accessing instruction's time (they
    /// stood still since the last access; nothing of theirs is due before the slice's end,
    /// which the machine chose at the next deadline).
    fn catch_up(&mut self) {
        let t = self.clock();
        if t > self.now_ns {
            self.sync_to(t);
        }
    }

    /// After a device access: if it armed a timer (or anything else with a deadline) that is
    /// due before the slice would end, the slice ends there, so the interrupt comes on time.
    fn note_deadline(&mut self) {
        if let Some(d) = self.next_deadline(self.now_ns) {
            self.limit = self.limit.min(d.saturating_sub(self.slice_start));
        }
    }

    /// Brings the timers up to `now_ns` and the interrupt lines up to date.
    fn sync_to(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
        self.mem.set_time(now_ns);
        self.pit.advance(now_ns);
        self.rtc.advance(now_ns);
        self.kbc.advance(now_ns);
        self.apic.advance(now_ns);
        self.acpi.advance(now_ns);
        self.hpet.advance(now_ns);
        for u in self.com1.iter_mut().chain(self.com2.iter_mut()) {
            u.advance(now_ns);
        }
        self.sync_irqs();
    }

    /// The earliest time after `now_ns` at which a device output may change on its own.
    pub fn next_deadline(&self, now_ns: u64) -> Option<u64> {
        let mut d: Option<u64> = None;
        let mut take = |x: Option<u64>| {
            if let Some(x) = x {
                d = Some(d.map_or(x, |d| d.min(x)));
            }
        };
        take(self.pit.next_deadline(now_ns));
        take(self.rtc.next_deadline(now_ns));
        take(self.kbc.next_deadline(now_ns));
        take(self.apic.next_deadline(now_ns));
        take(self.acpi.next_deadline(now_ns));
        take(self.hpet.next_deadline(now_ns));
        for u in self.com1.iter().chain(self.com2.iter()) {
            take(u.next_deadline(now_ns));
        }
        d
    }

    /// A machine reset (the CPU's RESET line): the chipset back to its power-on state; RAM,
    /// the RTC's clock and CMOS keep their contents.
    pub fn reset(&mut self) {
        self.pic.reset();
        self.pit.reset();
        self.rtc.reset();
        self.kbc.reset();
        self.port92.reset();
        self.apic.reset();
        self.ioapic.reset();
        self.acpi.reset();
        self.hpet.reset();
        self.vga.reset();
        self.nmi = false;
        self.ferr = false;
        self.fp_irq = false;
        self.ignne = false;
        self.pirq_levels = 0;
        self.apic_moved = true;
        for u in self.com1.iter_mut().chain(self.com2.iter_mut()) {
            u.reset();
        }
        self.pci.reset(&mut self.mem);
        self.mem.set_a20(true);
        self.requests.clear();
    }

    /// Hands the devices' interrupt outputs to the PIC and the IO-APIC: IRQ0 from the PIT's
    /// rising edges, the others as levels (edge-triggered inputs latch the rise).
    fn sync_irqs(&mut self) {
        let now = self.now_ns;
        let (hpet_irq0, hpet_irq8) = self.sync_hpet();
        // Legacy replacement disconnects the PIT's and the RTC's lines.
        let legacy = self.hpet.legacy();
        let pit_edges = self.pit.irq0_edges(now);
        let irq0 = if legacy { u64::from(hpet_irq0) } else { pit_edges };
        for _ in 0..irq0.min(1) {
            self.set_isa_irq(0, false);
            self.set_isa_irq(0, true);
        }
        self.set_isa_irq(1, self.kbc.irq1_level());
        if let Some(u) = &self.com1 {
            let l = u.irq_level();
            self.set_isa_irq(COM1_IRQ, l);
        }
        if let Some(u) = &self.com2 {
            let l = u.irq_level();
            self.set_isa_irq(COM2_IRQ, l);
        }
        let irq8 = if legacy { hpet_irq8 } else { self.rtc.irq_level() };
        self.set_isa_irq(8, irq8);
        self.set_isa_irq(SCI_IRQ, self.acpi.sci_level());
        self.set_isa_irq(12, self.kbc.irq12_level());
        self.set_isa_irq(13, self.fp_irq);
        self.route_apic();
        if let Some(r) = self.acpi.take_request() {
            self.requests.push(r);
        }
        while let Some(r) = self.kbc.take_request() {
            self.requests.push(r);
        }
        while let Some(r) = self.port92.take_request() {
            self.requests.push(r);
        }
    }

    /// The device at `port` and the offset it sees.
    fn port_device(&mut self, port: u16) -> Option<(&mut dyn PortDevice, u16)> {
        if port == self.debugcon_port {
            return Some((self.debugcon.as_mut()? as &mut dyn PortDevice, 0));
        }
        Some(match port {
            0x20 | 0x21 | 0xa0 | 0xa1 | 0x4d0 | 0x4d1 => (&mut self.pic as &mut dyn PortDevice, port),
            0x40..=0x43 | 0x61 => (&mut self.pit, port),
            0x70 | 0x71 => (&mut self.rtc, port),
            0x60 | 0x64 => (&mut self.kbc, port),
            0x92 => (&mut self.port92, 0),
            0x80 => (&mut self.post, 0),
            0xf4 => (&mut self.debug_exit, 0),
            p if (PM_BASE..PM_BASE + PM_LEN).contains(&p) || (GPE0_BASE..GPE0_BASE + GPE0_LEN).contains(&p) => {
                (&mut self.acpi, p)
            }
            devices::vga::PORT_FIRST..=devices::vga::PORT_LAST => (&mut self.vga, port),
            COM1..=0x3ff => (self.com1.as_mut()? as &mut dyn PortDevice, port - COM1),
            COM2..=0x2ff => (self.com2.as_mut()? as &mut dyn PortDevice, port - COM2),
            _ => return None,
        })
    }
}

impl PhysBus for PcBus {
    #[inline]
    fn read_phys(&mut self, addr: u64, size: AccessBytes) -> u64 {
        let Some((w, off)) = self.window(addr) else { return self.mem.read_phys(addr, size) };
        self.catch_up();
        let now = self.now_ns;
        let v = match w {
            Window::Apic => self.apic.mmio_read(off, size, now),
            Window::IoApic => self.ioapic.mmio_read(off, size, now),
            Window::Hpet => self.hpet.mmio_read(off, size, now),
        };
        self.note_deadline();
        v
    }

    #[inline]
    fn write_phys(&mut self, addr: u64, size: AccessBytes, val: u64) {
        let Some((w, off)) = self.window(addr) else { return self.mem.write_phys(addr, size, val) };
        self.catch_up();
        let now = self.now_ns;
        let pending = self.interrupt_pending();
        match w {
            Window::Apic => self.apic.mmio_write(off, size, val, now),
            Window::IoApic => self.ioapic.mmio_write(off, size, val, now),
            Window::Hpet => self.hpet.mmio_write(off, size, val, now),
        }
        self.sync_irqs();
        self.note_deadline();
        if !pending && self.interrupt_pending() {
            // A self-IPI, an EOI that uncovered a waiting interrupt, a timer that expired
            // already: compiled code does not look for interrupts after a store, so the run
            // ends with this block and the exec loop looks.
            self.limit = self.limit.min(self.retired);
        }
    }

    fn page_backing(&self, paddr: u64) -> PageBacking {
        if self.window(paddr & !0xfff).is_some() {
            return PageBacking::bus(paddr);
        }
        self.mem.page_backing(paddr)
    }

    fn read_bytes(&mut self, addr: u64, buf: &mut [u8]) {
        self.mem.read_bytes(addr, buf);
    }

    fn write_bytes(&mut self, addr: u64, data: &[u8]) {
        self.mem.write_bytes(addr, data);
    }

    fn set_code_page(&mut self, paddr: u64, code: bool) -> bool {
        self.mem.set_code_page(paddr, code)
    }

    fn take_code_write(&mut self) -> Option<u64> {
        self.mem.take_code_write()
    }
}

impl CpuBus for PcBus {
    fn io_read(&mut self, port: u16, size: u8) -> u32 {
        if (0xcf8..=0xcff).contains(&port) {
            return self.pci.read(port, size);
        }
        self.catch_up();
        let now = self.now_ns;
        let v = match self.port_device(port) {
            Some((d, off)) => d.port_read(off, size, now),
            None => all_ones(size) as u32,
        };
        self.sync_irqs();
        self.note_deadline();
        v
    }

    fn io_write(&mut self, port: u16, size: u8, val: u32) {
        // The PIIX3 reset control register: setting bit 2 (with bit 1 for a hard reset)
        // resets the machine.
        if port == 0xcf9 && size == 1 {
            if val & 0x04 != 0 {
                self.requests.push(SystemRequest::Reset);
            }
            return;
        }
        if (0xcf8..=0xcff).contains(&port) {
            self.pci.write(port, size, val, &mut self.mem);
            return;
        }
        if port == 0xf0 {
            // The PC/AT coprocessor-error port: a write clears IRQ13's latch and, while FERR#
            // is asserted, asserts IGNNE# so the handler's x87 instructions run.
            self.fp_irq = false;
            self.ignne = self.ferr;
            self.sync_irqs();
            return;
        }
        self.catch_up();
        let now = self.now_ns;
        if let Some((d, off)) = self.port_device(port) {
            d.port_write(off, size, val, now);
        }
        self.sync_irqs();
        self.note_deadline();
    }

    fn now_ns(&mut self) -> u64 {
        self.clock()
    }

    fn set_retired(&mut self, retired: u64) {
        self.retired = retired;
    }

    fn run_limit(&mut self) -> u64 {
        self.limit
    }

    fn intr(&mut self) -> bool {
        self.interrupt_pending()
    }

    fn exit_requested(&mut self) -> bool {
        !self.requests.is_empty() || self.debug_exit.requested().is_some()
    }

    fn take_map_change(&mut self) -> bool {
        std::mem::take(&mut self.pci.map_changed) | std::mem::take(&mut self.apic_moved)
    }

    fn inta(&mut self) -> Option<u8> {
        if self.apic.has_interrupt() {
            return Some(self.apic.acknowledge());
        }
        if !self.apic.accepts_pic() {
            return None;
        }
        let v = self.pic.acknowledge();
        self.sync_irqs();
        Some(v)
    }

    fn take_nmi(&mut self) -> bool {
        std::mem::take(&mut self.nmi)
    }

    fn set_ferr(&mut self, asserted: bool) {
        if asserted && !self.ferr {
            self.fp_irq = true;
        }
        if !asserted {
            self.ignne = false;
        }
        self.ferr = asserted;
        self.sync_irqs();
    }

    fn ignne(&mut self) -> bool {
        self.ignne
    }

    fn set_apic_base(&mut self, value: u64) {
        self.apic.set_base_msr(value);
        self.apic_moved = true;
    }

    fn tpr(&mut self) -> Option<u8> {
        self.apic.hw_enabled().then(|| self.apic.tpr())
    }

    fn set_tpr(&mut self, tpr: u8) {
        self.apic.set_tpr(tpr);
    }

    fn tsc_deadline_ns(&mut self) -> Option<u64> {
        self.apic.hw_enabled().then(|| self.apic.tsc_deadline())
    }

    fn set_tsc_deadline_ns(&mut self, at_ns: u64) {
        self.catch_up();
        self.apic.set_tsc_deadline(at_ns, self.now_ns);
        self.note_deadline();
    }
}
