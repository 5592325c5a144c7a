//! Debug ports for test guests: the 0xE9 debug console and QEMU's isa-debug-exit.

use std::io::Write;

use crate::PortDevice;

/// QEMU's `-debugcon`: every byte written to the port goes to a sink; reads return 0xE9, which
/// is how guests (SeaBIOS among them) detect the port.
pub struct DebugCon {
    sink: Box<dyn Write + Send>,
}

impl std::fmt::Debug for DebugCon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DebugCon").finish_non_exhaustive()
    }
}

impl DebugCon {
    /// A debug console writing to `sink`.
    pub fn new(sink: Box<dyn Write + Send>) -> Self {
        DebugCon { sink }
    }
}

impl PortDevice for DebugCon {
    fn port_read(&mut self, _offset: u16, _size: u8, _now_ns: u64) -> u32 {
        0xe9
    }

    fn port_write(&mut self, _offset: u16, _size: u8, val: u32, _now_ns: u64) {
        // A guest writing faster than the host can print must not stop the machine: a failed
        // write loses the byte, as a disconnected console would.
        let byte = [val as u8];
        if self.sink.write_all(&byte).is_err() {
            crate::warn_once!("debugcon: the output sink refused a byte");
        }
        if byte[0] == b'\n' {
            let _ = self.sink.flush();
        }
    }
}

/// QEMU's isa-debug-exit: a write of `v` asks the machine to exit with status `v * 2 + 1`.
#[derive(Debug, Default)]
pub struct DebugExit {
    requested: Option<i32>,
}

impl DebugExit {
    /// A fresh port with no exit requested.
    pub fn new() -> Self {
        Self::default()
    }

    /// The exit status the guest asked for, if it wrote to the port.
    pub fn requested(&self) -> Option<i32> {
        self.requested
    }
}

impl PortDevice for DebugExit {
    fn port_read(&mut self, _offset: u16, _size: u8, _now_ns: u64) -> u32 {
        u32::MAX
    }

    fn port_write(&mut self, _offset: u16, size: u8, val: u32, _now_ns: u64) {
        let mask = if size >= 4 { u32::MAX } else { (1u32 << (u32::from(size) * 8)) - 1 };
        // QEMU computes (val << 1) | 1 in 32 bits; the process status keeps the low byte.
        self.requested = Some((((val & mask) << 1) | 1) as i32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_sink::Shared;

    #[test]
    fn debugcon_passes_bytes_through_and_identifies_itself() {
        let out = Shared::default();
        let mut con = DebugCon::new(Box::new(out.clone()));
        for b in b"hi\n" {
            con.port_write(0, 1, u32::from(*b), 0);
        }
        assert_eq!(con.port_read(0, 1, 0), 0xe9);
        assert_eq!(&*out.0.lock().expect("lock"), b"hi\n");
    }

    #[test]
    fn debug_exit_status_is_value_times_two_plus_one() {
        let mut port = DebugExit::new();
        assert_eq!(port.requested(), None);
        port.port_write(0, 1, 0x10, 0);
        assert_eq!(port.requested(), Some(0x21));
        port.port_write(0, 1, 0x1ff, 0);
        assert_eq!(port.requested(), Some(0x1ff));
    }
}
