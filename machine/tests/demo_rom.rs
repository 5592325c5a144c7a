//! The whole path from reset to guest output: the demo firmware runs from the reset vector,
//! prints through the debug console and halts.

use std::io::Write;
use std::sync::{Arc, Mutex};

use machine::{Machine, MachineConfig, Outcome};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn demo_firmware_boots_from_the_reset_vector_and_prints() {
    let out = Capture::default();
    let config = MachineConfig {
        ram_bytes: 16 << 20,
        bios: bios::demo::hello_rom(),
        debugcon: Some(Box::new(out.clone())),
        debugcon_port: 0xe9,
        serial: None,
        rtc_start: 0,
    };
    let mut m = Machine::new(config).expect("machine");
    assert_eq!(m.run(1_000_000), Outcome::HaltedForever);
    assert_eq!(String::from_utf8_lossy(&out.0.lock().expect("lock")), "Hello from cranebox!\n");
}

#[test]
fn firmware_of_a_size_a_pc_cannot_map_is_refused() {
    let config = MachineConfig {
        ram_bytes: 16 << 20,
        bios: vec![0; 1000],
        debugcon: None,
        debugcon_port: 0xe9,
        serial: None,
        rtc_start: 0,
    };
    assert!(Machine::new(config).is_err());
}
