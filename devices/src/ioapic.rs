//! The 82093AA IO-APIC at 0xFEC00000: IOREGSEL at offset 0x00, IOWIN at 0x10; ID, version
//! 0x11 with 24 pins, and the redirection table.
//!
//! Wiring, as QEMU's pc: ISA IRQ0 (the PIT) comes in on pin 2 (the MADT's interrupt source
//! override), every other ISA IRQ n on pin n, PCI PIRQA-D on pins 16-19. With one CPU every
//! message goes to its local APIC whatever the destination field says; the machine drains
//! [`IoApic::take_message`] into it.

use crate::{warn_once, MmioDevice};

/// Number of input pins.
pub const PINS: usize = 24;
/// The MMIO window's size.
pub const IOAPIC_WINDOW: u64 = 0x20;

const MASKED: u64 = 1 << 16;
const LEVEL: u64 = 1 << 15;
const REMOTE_IRR: u64 = 1 << 14;
const DELIVERY_STATUS: u64 = 1 << 12;

/// A message from the IO-APIC to the local APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoApicMessage {
    /// A fixed or lowest-priority interrupt.
    Fixed {
        /// The vector.
        vector: u8,
        /// Level-triggered (the EOI must come back).
        level: bool,
    },
    /// An NMI.
    Nmi,
}

/// The guest-visible state of the IO-APIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoApicState {
    /// IOREGSEL.
    pub regsel: u8,
    /// The ID register's bits 27:24.
    pub id: u8,
    /// The redirection table.
    pub redir: [u64; PINS],
    /// The input pins, one bit per pin, set while asserted.
    pub pins: u32,
}

/// The IO-APIC.
#[derive(Clone, Debug)]
pub struct IoApic {
    s: IoApicState,
    out: Vec<IoApicMessage>,
}

impl Default for IoApic {
    fn default() -> Self {
        Self::new()
    }
}

impl IoApic {
    /// All entries masked, as at reset.
    pub fn new() -> Self {
        IoApic { s: IoApicState { regsel: 0, id: 0, redir: [MASKED; PINS], pins: 0 }, out: Vec::new() }
    }

    /// Back to the reset state.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// The guest-visible state.
    pub fn state(&self) -> IoApicState {
        self.s.clone()
    }

    /// Takes back a state from [`IoApic::state`].
    pub fn restore(&mut self, s: IoApicState) {
        self.s = s;
        self.out.clear();
    }

    /// The next message for the local APIC.
    pub fn take_message(&mut self) -> Option<IoApicMessage> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.remove(0))
        }
    }

    /// Whether `pin` is asserted. The machine hands in logical levels (asserted = `true`),
    /// as QEMU does, so the polarity bit is stored for the guest but not applied: PCI's
    /// active-low lines arrive already inverted.
    fn asserted(&self, pin: usize) -> bool {
        self.s.pins & (1 << pin) != 0
    }

    /// Asserts (`true`) or deasserts input `pin`.
    pub fn set_irq(&mut self, pin: u8, level: bool) {
        let pin = usize::from(pin);
        if pin >= PINS {
            return;
        }
        let was = self.asserted(pin);
        if level {
            self.s.pins |= 1 << pin;
        } else {
            self.s.pins &= !(1 << pin);
        }
        let now = self.asserted(pin);
        let e = self.s.redir[pin];
        if e & LEVEL != 0 {
            self.service(pin);
        } else if now && !was {
            self.deliver(pin);
        }
    }

    /// Delivers a level-triggered pin that is asserted and not waiting for an EOI.
    fn service(&mut self, pin: usize) {
        let e = self.s.redir[pin];
        if e & LEVEL != 0 && e & REMOTE_IRR == 0 && self.asserted(pin) {
            self.deliver(pin);
        }
    }

    fn deliver(&mut self, pin: usize) {
        let e = self.s.redir[pin];
        if e & MASKED != 0 || self.out.len() >= 64 {
            return;
        }
        let level = e & LEVEL != 0;
        let msg = match (e >> 8) & 7 {
            0 | 1 => IoApicMessage::Fixed { vector: e as u8, level },
            4 => IoApicMessage::Nmi,
            // ExtINT: the 8259A's own path (LINT0) delivers it.
            7 => return,
            m => {
                warn_once!("the guest routed an IO-APIC pin with delivery mode {m}, which is not modelled");
                return;
            }
        };
        if level && matches!(msg, IoApicMessage::Fixed { .. }) {
            self.s.redir[pin] |= REMOTE_IRR;
        }
        self.out.push(msg);
    }

    /// The local APIC's EOI broadcast for a level-triggered `vector`: entries with that
    /// vector drop their remote IRR and, still asserted, deliver again.
    pub fn eoi(&mut self, vector: u8) {
        for pin in 0..PINS {
            let e = self.s.redir[pin];
            if e as u8 == vector && e & REMOTE_IRR != 0 {
                self.s.redir[pin] &= !REMOTE_IRR;
                self.service(pin);
            }
        }
    }

    fn read_reg(&self) -> u32 {
        match self.s.regsel {
            0 => u32::from(self.s.id) << 24,
            1 => 0x0011 | ((PINS as u32 - 1) << 16),
            2 => u32::from(self.s.id) << 24,
            r @ 0x10..=0x3f => {
                let e = self.s.redir[usize::from(r - 0x10) / 2];
                if r & 1 == 0 {
                    e as u32
                } else {
                    (e >> 32) as u32
                }
            }
            _ => u32::MAX,
        }
    }

    fn write_reg(&mut self, v: u32) {
        match self.s.regsel {
            0 => self.s.id = ((v >> 24) & 0xf) as u8,
            r @ 0x10..=0x3f => {
                let pin = usize::from(r - 0x10) / 2;
                let e = &mut self.s.redir[pin];
                if r & 1 == 0 {
                    // Remote IRR and delivery status are read-only.
                    let keep = *e & (REMOTE_IRR | DELIVERY_STATUS | 0xffff_ffff_0000_0000);
                    *e = keep | (u64::from(v) & !(REMOTE_IRR | DELIVERY_STATUS));
                    if *e & LEVEL == 0 {
                        *e &= !REMOTE_IRR;
                    }
                } else {
                    *e = (*e & 0xffff_ffff) | (u64::from(v & 0xff00_0000) << 32);
                }
                // Unmasking an asserted level-triggered pin delivers it.
                self.service(pin);
            }
            _ => {}
        }
    }
}

impl MmioDevice for IoApic {
    fn mmio_read(&mut self, offset: u64, size: u8, _now_ns: u64) -> u64 {
        let v = match offset & !3 {
            0x00 => u32::from(self.s.regsel),
            0x10 => self.read_reg(),
            _ => u32::MAX,
        };
        let shift = 8 * (offset & 3);
        let mask = if size >= 4 { u64::from(u32::MAX) } else { (1u64 << (8 * u64::from(size))) - 1 };
        (u64::from(v) >> shift) & mask
    }

    fn mmio_write(&mut self, offset: u64, size: u8, val: u64, _now_ns: u64) {
        match offset {
            0x00 => self.s.regsel = val as u8,
            0x10 if size >= 4 => self.write_reg(val as u32),
            _ => warn_once!("the guest wrote the IO-APIC at {offset:#x} with a {size}-byte access, which is ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(io: &mut IoApic, pin: u8, lo: u32) {
        io.mmio_write(0, 4, u64::from(0x10 + 2 * pin), 0);
        io.mmio_write(0x10, 4, u64::from(lo), 0);
    }

    #[test]
    fn version_reports_24_pins() {
        let mut io = IoApic::new();
        io.mmio_write(0, 1, 1, 0);
        assert_eq!(io.mmio_read(0x10, 4, 0), 0x0017_0011);
    }

    #[test]
    fn edge_pin_delivers_on_rising_edges_only() {
        let mut io = IoApic::new();
        program(&mut io, 2, 0x30);
        io.set_irq(2, true);
        io.set_irq(2, true);
        assert_eq!(io.take_message(), Some(IoApicMessage::Fixed { vector: 0x30, level: false }));
        assert_eq!(io.take_message(), None);
        io.set_irq(2, false);
        io.set_irq(2, true);
        assert!(io.take_message().is_some());
    }

    #[test]
    fn masked_pins_deliver_nothing() {
        let mut io = IoApic::new();
        io.set_irq(4, true);
        assert_eq!(io.take_message(), None);
    }

    #[test]
    fn level_pin_waits_for_eoi_through_remote_irr() {
        let mut io = IoApic::new();
        program(&mut io, 9, 0x8000 | 0x49);
        io.set_irq(9, true);
        assert_eq!(io.take_message(), Some(IoApicMessage::Fixed { vector: 0x49, level: true }));
        io.mmio_write(0, 4, 0x10 + 18, 0);
        assert_ne!(io.mmio_read(0x10, 4, 0) & REMOTE_IRR, 0);
        io.set_irq(9, true);
        assert_eq!(io.take_message(), None);
        io.eoi(0x49);
        assert!(io.take_message().is_some(), "still asserted after the EOI: delivered again");
        io.set_irq(9, false);
        io.eoi(0x49);
        assert_eq!(io.take_message(), None);
    }

    #[test]
    fn active_low_entries_take_logical_levels() {
        let mut io = IoApic::new();
        program(&mut io, 16, 0xa000 | 0x60);
        assert_eq!(io.take_message(), None, "an idle PCI line is not asserted");
        io.set_irq(16, true);
        assert!(io.take_message().is_some());
    }
}
