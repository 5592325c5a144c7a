//! Shared by the machine tests (each test crate uses part of it).
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use iced_x86::code_asm::{CodeAssembler, CodeLabel, IcedError};
use iced_x86::BlockEncoderOptions;

/// A 64 KiB firmware image: `code` (assembled at F000:E000) at offset 0xE000 and a far jump
/// to it at the reset vector.
pub fn rom_at_e000(code: &[u8]) -> Vec<u8> {
    let mut rom = vec![0xffu8; 0x10000];
    rom[0xe000..0xe000 + code.len()].copy_from_slice(code);
    rom[0xfff0..0xfff5].copy_from_slice(&[0xea, 0x00, 0xe0, 0x00, 0xf0]);
    rom
}

/// Assembles `a` at F000:E000 as a ROM, with the first word 0x7FFF (an interrupt vector's
/// offset, written before the handler's label is known) replaced by `handler`'s offset.
pub fn rom_with_handler(a: &mut CodeAssembler, handler: &CodeLabel) -> Result<Vec<u8>, IcedError> {
    let r = a.assemble_options(0xe000, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let handler_ip = r.label_ip(handler)? as u16;
    let mut code = r.inner.code_buffer;
    let pos = code.windows(2).position(|w| w == 0x7fffu16.to_le_bytes()).expect("placeholder");
    code[pos..pos + 2].copy_from_slice(&handler_ip.to_le_bytes());
    Ok(rom_at_e000(&code))
}

/// An output sink (debug console, serial port) whose bytes a test can read back.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        self.0.lock().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
