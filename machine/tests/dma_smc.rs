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

/// A CPU store to a code page whose direct (host-pointer) write path was already cached in
/// the TLB before the page held code: the store must still be noticed, under both tiers.
fn store_after_the_page_was_cached(jit: bool) -> String {
    let out = Capture::default();
    let config = MachineConfig {
        debugcon: Some(Box::new(out.clone())),
        ..MachineConfig::new(16 << 20, bios::demo::hello_rom())
    };
    let mut m = Machine::new(config).expect("machine");
    if jit {
        m.interp = translator::Interpreter::with_jit(0).expect("the JIT starts on this host");
    }
    #[rustfmt::skip]
    let code = [
        0xc6, 0x06, 0x00, 0x71, 0x90,   // 7000: mov byte [7100], 0x90   (caches a write path to the page)
        0xbb, 0x03, 0x00,               //       mov bx, 3
        0xe8, 0xf9, 0x00,               // 7008: call 7104 (the printing routine)
        0xc6, 0x06, 0x05, 0x71, b'B',   // 700b: mov byte [7105], 'B'  (rewrites its immediate)
        0x4b,                           //       dec bx
        0x75, 0xf5,                     //       jnz 7008
        0xf4,                           //       hlt
    ];
    m.bus.mem.load(0x7000, &code).expect("load");
    // 7104: mov al, 'A'; out 0xe9, al; ret
    m.bus.mem.load(0x7104, &[0xb0, b'A', 0xe6, 0xe9, 0xc3]).expect("load");
    m.cpu.seg[1] = Segment::real_mode_code(0);
    m.cpu.rip = 0x7000;
    m.cpu.set_reg(frontend_x86::Gpr::Rsp, frontend_x86::Width::W16, 0x6000);
    let _ = m.run(10_000);
    out.text()
}

#[test]
fn a_store_through_a_cached_write_path_still_invalidates_code() {
    assert_eq!(store_after_the_page_was_cached(false), "ABB");
    assert_eq!(store_after_the_page_was_cached(true), "ABB");
}
