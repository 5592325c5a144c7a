//! System control port A (port 0x92, "fast A20 and reset"), as on PIIX/ICH chipsets.
//!
//! Bit 1 drives the chipset's fast A20 gate (the CPU's A20 line is the OR of it and the
//! keyboard controller's A20 output); a 0-to-1 transition of bit 0 pulses the CPU's reset
//! line. Both reach the machine as [`SystemRequest`]s it takes with [`Port92::take_request`].
//! The other bits (the password lock at bit 3, the disk activity LEDs at bits 6-7) are plain
//! storage. Reads return the register, including bit 0 as last written.

use crate::{read_bytes, PortDevice, SystemRequest};

/// The port this device decodes. Any offset reaches the one register.
pub const PORT: u16 = 0x92;

const FAST_RESET: u8 = 0x01;
const FAST_A20: u8 = 0x02;

/// The guest-visible state of port 0x92.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Port92State {
    /// The register as written.
    pub value: u8,
    /// An A20 change not yet taken by the machine (the latest level).
    pub a20_change: Option<bool>,
    /// A reset not yet taken by the machine.
    pub reset_pending: bool,
}

/// System control port A.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Port92 {
    state: Port92State,
}

impl Port92 {
    /// The port in its reset state: A20 gate off, no reset.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the guest-visible state.
    pub fn state(&self) -> Port92State {
        self.state.clone()
    }

    /// Replaces the guest-visible state (snapshot restore).
    pub fn restore(&mut self, state: Port92State) {
        self.state = state;
    }

    /// Resets the register (machine reset).
    pub fn reset(&mut self) {
        self.state = Port92State::default();
    }

    /// The fast A20 gate output.
    pub fn a20(&self) -> bool {
        self.state.value & FAST_A20 != 0
    }

    /// The next request for the machine: an A20 change first, then a reset.
    pub fn take_request(&mut self) -> Option<SystemRequest> {
        if let Some(level) = self.state.a20_change.take() {
            return Some(SystemRequest::A20(level));
        }
        std::mem::take(&mut self.state.reset_pending).then_some(SystemRequest::Reset)
    }

    fn write(&mut self, val: u8) {
        let old = self.state.value;
        self.state.value = val;
        if (old ^ val) & FAST_A20 != 0 {
            self.state.a20_change = Some(val & FAST_A20 != 0);
        }
        if old & FAST_RESET == 0 && val & FAST_RESET != 0 {
            self.state.reset_pending = true;
        }
    }
}

impl PortDevice for Port92 {
    fn port_read(&mut self, offset: u16, size: u8, _now_ns: u64) -> u32 {
        read_bytes(offset, size, |_| self.state.value)
    }

    fn port_write(&mut self, _offset: u16, _size: u8, val: u32, _now_ns: u64) {
        self.write(val as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_a20_is_an_event_and_reads_back() {
        let mut p = Port92::new();
        assert!(!p.a20());
        p.port_write(0, 1, 0x02, 0);
        assert!(p.a20());
        assert_eq!(p.port_read(0, 1, 0), 0x02);
        assert_eq!(p.take_request(), Some(SystemRequest::A20(true)));
        assert_eq!(p.take_request(), None);
        p.port_write(0, 1, 0x02, 0);
        assert_eq!(p.take_request(), None, "no change, no event");
        p.port_write(0, 1, 0x00, 0);
        assert_eq!(p.take_request(), Some(SystemRequest::A20(false)));
    }

    #[test]
    fn reset_on_rising_bit0_only() {
        let mut p = Port92::new();
        p.port_write(0, 1, 0x03, 0);
        assert_eq!(p.take_request(), Some(SystemRequest::A20(true)));
        assert_eq!(p.take_request(), Some(SystemRequest::Reset));
        p.port_write(0, 1, 0x03, 0);
        assert_eq!(p.take_request(), None, "bit 0 already set: no new pulse");
        p.port_write(0, 1, 0x02, 0);
        p.port_write(0, 1, 0x03, 0);
        assert_eq!(p.take_request(), Some(SystemRequest::Reset));
        p.reset();
        assert_eq!(p.port_read(0, 1, 0), 0);
    }
}
