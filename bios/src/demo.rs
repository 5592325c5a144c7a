//! A demonstration firmware image for `cargo xtask demo` and the machine's smoke test.

/// A 64 KiB firmware image: at the reset vector a far jump to F000:E000, which prints a
/// greeting on the debug console (port 0xE9) and halts with interrupts off.
pub fn hello_rom() -> Vec<u8> {
    let mut rom = vec![0xffu8; 0x10000];
    #[rustfmt::skip]
    let code: &[u8] = &[
        0xfa,                   // cli
        0x31, 0xc0,             // xor ax, ax
        0x8e, 0xd0,             // mov ss, ax
        0xbc, 0x00, 0x7c,       // mov sp, 0x7c00
        0x0e,                   // push cs
        0x1f,                   // pop ds
        0xbe, 0x20, 0xe0,       // mov si, msg
        0xba, 0xe9, 0x00,       // mov dx, 0xe9
        0xac,                   // next: lodsb
        0x84, 0xc0,             // test al, al
        0x74, 0x03,             // jz done
        0xee,                   // out dx, al
        0xeb, 0xf8,             // jmp next
        0xfa,                   // done: cli
        0xf4,                   // hlt
        0xeb, 0xfd,             // jmp $-1 (back to hlt after an NMI)
    ];
    rom[0xe000..0xe000 + code.len()].copy_from_slice(code);
    let msg = b"Hello from cranebox!\n\0";
    rom[0xe020..0xe020 + msg.len()].copy_from_slice(msg);
    // The reset vector: jmp far f000:e000.
    rom[0xfff0..0xfff5].copy_from_slice(&[0xea, 0x00, 0xe0, 0x00, 0xf0]);
    rom
}
