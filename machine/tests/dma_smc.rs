//! A write by a device (DMA through the address map) to a page holding decoded code
//! invalidates that code: the next run executes the new bytes.

mod common;

use common::Capture;
use frontend_x86::Segment;
use machine::{Machine, MachineConfig};
use softmmu::PhysBus;

#[test]
fn dma_into_a_code_page_invalidates_its_decoded_blocks() {
    let out = Capture::default();
    let config = MachineConfig {
        debugcon: Some(Box::new(out.clone())),
        ..MachineConfig::new(16 << 20, bios::demo::hello_rom())
    };
    let mut m = Machine::new(config).expect("machine");
    // A loop in RAM at 0000:7000: mov al, 'A'; out 0xe9, al; jmp back.
    let code = [0xb0, b'A', 0xe6, 0xe9, 0xeb, 0xfa];
    m.bus.mem.load(0x7000, &code).expect("load");
    m.cpu.seg[1] = Segment::real_mode_code(0);
    m.cpu.rip = 0x7000;
    let _ = m.run(300);
    assert!(out.text().ends_with('A'));
    assert!(m.interp.stats.blocks_decoded >= 1);
    // A device writes the immediate: the loop must now print 'B'.
    m.bus.write_bytes(0x7001, b"B");
    let _ = m.run(600);
    let text = out.text();
    assert!(text.ends_with('B'), "{text}");
    assert_eq!(text.matches('B').count(), 100, "every iteration after the write sees it");
}
