//! The whole path from reset to guest output: the demo firmware runs from the reset vector,
//! prints through the debug console and halts.

mod common;

use common::Capture;
use machine::{Machine, MachineConfig, Outcome};

#[test]
fn demo_firmware_boots_from_the_reset_vector_and_prints() {
    let out = Capture::default();
    let config = MachineConfig {
        debugcon: Some(Box::new(out.clone())),
        ..MachineConfig::new(16 << 20, bios::demo::hello_rom())
    };
    let mut m = Machine::new(config).expect("machine");
    assert_eq!(m.run(1_000_000), Outcome::HaltedForever);
    assert_eq!(out.text(), "Hello from cranebox!\n");
}

#[test]
fn firmware_of_a_size_a_pc_cannot_map_is_refused() {
    let config = MachineConfig::new(16 << 20, vec![0; 1000]);
    assert!(Machine::new(config).is_err());
}
