//! The port 0x80 POST code latch.
//!
//! Firmware writes its progress codes here, and Linux writes here as an I/O delay. Reads return
//! the last code written, as the port reads on most chipsets that decode it (and as a POST card
//! would show it). The latch is for diagnostics: the machine can show [`PostCode::last`] when a
//! guest hangs in its firmware.

use crate::{read_bytes, PortDevice};

/// The port this device decodes. Any offset reaches the latch.
pub const PORT: u16 = 0x80;

/// The guest-visible state of the POST code port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostCodeState {
    /// The last code written.
    pub last: u8,
    /// Writes seen since power-on (wrapping).
    pub writes: u64,
}

/// The POST code latch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostCode {
    state: PostCodeState,
}

impl PostCode {
    /// A latch holding 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the guest-visible state.
    pub fn state(&self) -> PostCodeState {
        self.state.clone()
    }

    /// Replaces the guest-visible state (snapshot restore).
    pub fn restore(&mut self, state: PostCodeState) {
        self.state = state;
    }

    /// The last code written.
    pub fn last(&self) -> u8 {
        self.state.last
    }
}

impl PortDevice for PostCode {
    fn port_read(&mut self, offset: u16, size: u8, _now_ns: u64) -> u32 {
        read_bytes(offset, size, |_| self.state.last)
    }

    fn port_write(&mut self, _offset: u16, _size: u8, val: u32, _now_ns: u64) {
        // Linux's io_delay writes here constantly: no logging.
        self.state.last = val as u8;
        self.state.writes = self.state.writes.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_return_the_last_code() {
        let mut p = PostCode::new();
        assert_eq!(p.port_read(0, 1, 0), 0);
        p.port_write(0, 1, 0x1234, 0);
        assert_eq!(p.last(), 0x34);
        assert_eq!(p.port_read(0, 1, 0), 0x34);
        assert_eq!(p.port_read(0, 2, 0), 0x3434);
        assert_eq!(p.state().writes, 1);
    }
}
