//! cranebox's own BIOS ROM, assembled in Rust (iced-x86's `code_asm`) when a machine is built.
//!
//! The image is 128 KiB, mapped at 0xE0000-0xFFFFF (and at the top of 4 GiB):
//!
//! | Where | What |
//! |---|---|
//! | 0xE0000 | the ACPI tables ([`crate::acpi::build`] at this base; E820 reserves 0xE0000-0xFFFFF) |
//! | 0xF0000 | the RSDP, the MP floating pointer (0xF0040) and configuration table (0xF0100) |
//! | F000:1000 | the code ([`code`]): POST, the interrupt services, INT 19h, then data |
//! | F000:FFF0 | the reset vector (a far jump to POST), the date at FFF5, the model byte FCh at FFFE |
//!
//! Everything the ROM reports about the machine is known when the image is built, so it is
//! assembled into it: the E820 map ([`e820_map`], the same [`crate::e820::memory_map`] the
//! direct loaders use), the INT 15h E801h/88h sizes, the banner, and where INT 19h enters a
//! kernel that the loader placed in RAM (a real-mode entry, or a 32-bit protected-mode one
//! such as multiboot's, entered through the ROM's own flat GDT). No configuration device is needed.
//!
//! POST: A20 on, the 8259A pair at vectors 08h/70h (timer, keyboard and cascade unmasked),
//! PIT channel 0 at 18.2 Hz, the IVT (every vector at a default handler, IRQs at handlers that
//! send EOI), the BDA (COM1, equipment word, 639 KiB base memory, the keyboard ring, the video
//! fields of mode 3), a 1 KiB EBDA at 0x9FC00, COM1 at 115200 8N1, the screen cleared, the
//! banner on the screen, COM1 and port 0x402, then INT 19h.
//!
//! Services: INT 08h (tick count at 0x46C, midnight flag, INT 1Ch), INT 09h (IRQ1: scan code
//! set 1 to ASCII into the BDA ring, shift/ctrl/alt/caps state), INT 10h (text mode 3: 00h,
//! 01h-03h, 05h-0Ah, 0Eh, 0Fh, 12h BL=10h, 13h, 1Ah; VBE is not answered), INT 11h, INT 12h,
//! INT 13h (no disks: every call fails with CF=1, AH=01h), INT 15h (E820h, E801h, 87h, 88h, C0h,
//! 2400h-2403h, 86h in whole ticks; anything else CF=1, AH=86h, which is "no APM" for 5300h),
//! INT 16h (00h-02h, 05h, 10h-12h), INT 1Ah (00h/01h ticks, 02h/04h RTC time and date),
//! INT 18h/19h. With nothing to boot it prints "No bootable device." and halts with
//! interrupts on.

mod asm;
mod code;

use std::collections::BTreeMap;

use softmmu::PcLayout;
use thiserror::Error;

use crate::e820::{self, E820Entry};
use crate::linux::Entry;

/// Errors from building the ROM.
#[derive(Debug, Error)]
pub enum RomError {
    /// iced-x86 refused the code (a bug in the ROM's source).
    #[error("cannot assemble the BIOS ROM: {0}")]
    Assemble(#[from] iced_x86::IcedError),
    /// The code or a table does not fit where the layout puts it.
    #[error("the BIOS ROM's {0} does not fit in its place in the image")]
    Overflow(&'static str),
}

/// The image's size: it covers 0xE0000-0xFFFFF.
pub const ROM_SIZE: usize = 0x2_0000;
/// Where the image starts below 1 MiB.
pub const ROM_BASE: u64 = 0xe_0000;
/// Where the code starts in segment F000.
const CODE_OFFSET: u16 = 0x1000;
/// The fixed tail of the segment (reset vector, date, model).
const TAIL_OFFSET: u16 = 0xfff0;
/// The BIOS date at F000:FFF5.
const DATE: &[u8; 8] = b"11/23/26";
/// The model byte at F000:FFFE: an AT.
const MODEL: u8 = 0xfc;
/// The BIOS data area's segment.
const BDA_SEG: i32 = 0x40;
/// The EBDA's segment (1 KiB at 0x9FC00).
const EBDA_SEG: i32 = (e820::EBDA_BASE >> 4) as i32;

/// What the code is assembled with.
#[derive(Clone, Debug)]
struct RomPlan {
    e820: Vec<E820Entry>,
    equipment: u16,
    base_kib: u16,
    ext_kib: u16,
    e801_low_kib: u16,
    e801_high_64k: u16,
    banner: String,
    boot: Option<Entry>,
}

/// The memory map INT 15h E820h reports on a machine with `layout`'s RAM and this ROM.
pub fn e820_map(layout: PcLayout) -> Vec<E820Entry> {
    e820::memory_map(layout, ROM_SIZE as u64)
}

/// The ROM for a machine with `layout`'s RAM; INT 19h enters `boot` (a kernel the loader
/// has placed in RAM) or, without one, reports that nothing can boot.
pub fn build(layout: PcLayout, boot: Option<Entry>) -> Result<Vec<u8>, RomError> {
    const MIB: u64 = 1 << 20;
    let ext = layout.below_4g.saturating_sub(MIB) / 1024;
    let plan = RomPlan {
        e820: e820_map(layout),
        // FPU, 80x25 colour, a PS/2 mouse (POST adds the serial ports it finds).
        equipment: 0x0002 | 0x0020 | 0x0004,
        base_kib: (e820::EBDA_BASE >> 10) as u16,
        ext_kib: ext.min(0xffff) as u16,
        e801_low_kib: ext.min(15 * 1024) as u16,
        e801_high_64k: (layout.below_4g.saturating_sub(16 * MIB) >> 16).min(0xffff) as u16,
        banner: format!(
            "cranebox BIOS {} ({}), {} MiB RAM\r\n",
            env!("CARGO_PKG_VERSION"),
            String::from_utf8_lossy(DATE),
            (layout.below_4g + layout.above_4g) >> 20
        ),
        boot,
    };
    // Pass 1 places the labels; later passes use their offsets as immediates, which can
    // change an instruction's size (an imm8 form), so assemble until the layout is stable.
    let mut known = BTreeMap::new();
    let mut code = None;
    for _ in 0..4 {
        let mut a = asm::Asm::new(known.clone())?;
        code::emit(&mut a, &plan)?;
        let (bytes, labels) = a.finish(CODE_OFFSET)?;
        if labels == known {
            code = Some(bytes);
            break;
        }
        known = labels;
    }
    let code = code.ok_or(RomError::Overflow("code layout (it did not settle)"))?;
    let code_end = usize::from(CODE_OFFSET) + code.len();
    if code_end > usize::from(TAIL_OFFSET) {
        return Err(RomError::Overflow("code"));
    }

    let mut image = vec![0u8; ROM_SIZE];
    let f000 = 0x1_0000;
    let tables = crate::acpi::build(ROM_BASE);
    for (addr, bytes) in &tables.blobs {
        let at = addr.checked_sub(ROM_BASE).ok_or(Overflow("ACPI/MP tables"))? as usize;
        let end = at + bytes.len();
        let clear_of_code = end <= f000 + usize::from(CODE_OFFSET) && (at >= f000 || end <= f000);
        if !clear_of_code {
            return Err(RomError::Overflow("ACPI/MP tables"));
        }
        image[at..end].copy_from_slice(bytes);
    }
    image[f000 + usize::from(CODE_OFFSET)..f000 + code_end].copy_from_slice(&code);
    let post = known.get("post").copied().ok_or(RomError::Overflow("POST entry"))?;
    let tail = f000 + usize::from(TAIL_OFFSET);
    let [p0, p1] = post.to_le_bytes();
    image[tail..tail + 5].copy_from_slice(&[0xea, p0, p1, 0x00, 0xf0]);
    image[tail + 5..tail + 13].copy_from_slice(DATE);
    image[tail + 14] = MODEL;
    Ok(image)
}

use RomError::Overflow;

/// Scan codes below this have an entry in the key maps.
const KEYMAP_LEN: usize = 0x59;

/// Scan code set 1 to ASCII, no shift (0 for keys without a character).
const KEYMAP: [u8; KEYMAP_LEN] = keymap(false);
/// With shift.
const KEYMAP_SHIFT: [u8; KEYMAP_LEN] = keymap(true);

const fn keymap(shift: bool) -> [u8; KEYMAP_LEN] {
    let mut m = [0u8; KEYMAP_LEN];
    let rows: [(usize, &[u8], &[u8]); 4] = [
        (0x02, b"1234567890-=", b"!@#$%^&*()_+"),
        (0x10, b"qwertyuiop[]", b"QWERTYUIOP{}"),
        (0x1e, b"asdfghjkl;'`", b"ASDFGHJKL:\"~"),
        (0x2b, b"\\zxcvbnm,./", b"|ZXCVBNM<>?"),
    ];
    let mut r = 0;
    while r < rows.len() {
        let (start, plain, shifted) = rows[r];
        let keys = if shift { shifted } else { plain };
        let mut i = 0;
        while i < keys.len() {
            m[start + i] = keys[i];
            i += 1;
        }
        r += 1;
    }
    m[0x01] = 0x1b; // Esc
    m[0x0e] = 0x08; // Backspace
    m[0x0f] = if shift { 0 } else { 0x09 }; // Tab (Shift+Tab has no ASCII)
    m[0x1c] = 0x0d; // Enter
    m[0x37] = b'*'; // keypad
    m[0x39] = b' ';
    m[0x4a] = b'-'; // keypad
    m[0x4e] = b'+'; // keypad
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_has_the_reset_vector_date_model_and_tables() {
        let rom = build(PcLayout::for_ram(128 << 20), None).expect("rom");
        assert_eq!(rom.len(), ROM_SIZE);
        assert_eq!(rom[0x1fff0], 0xea, "far jump at the reset vector");
        assert_eq!(&rom[0x1fff3..0x1fff5], &[0x00, 0xf0]);
        let post = u16::from_le_bytes([rom[0x1fff1], rom[0x1fff2]]);
        assert!(post >= CODE_OFFSET);
        assert_eq!(&rom[0x1fff5..0x1fffd], DATE);
        assert_eq!(rom[0x1fffe], MODEL);
        assert_eq!(&rom[0x10000..0x10008], b"RSD PTR ");
        assert_eq!(&rom[0x10040..0x10044], b"_MP_");
        assert_eq!(&rom[0x0600..0x0604], b"RSDT");
    }

    #[test]
    fn the_map_reserves_the_rom_window() {
        let map = e820_map(PcLayout::for_ram(64 << 20));
        assert!(map.contains(&E820Entry { addr: 0xe_0000, size: 0x2_0000, kind: e820::E820_RESERVED }), "{map:x?}");
    }

    #[test]
    fn key_maps_give_letters_digits_and_controls() {
        assert_eq!(KEYMAP[0x1e], b'a');
        assert_eq!(KEYMAP_SHIFT[0x1e], b'A');
        assert_eq!(KEYMAP[0x02], b'1');
        assert_eq!(KEYMAP_SHIFT[0x02], b'!');
        assert_eq!(KEYMAP[0x1c], b'\r');
        assert_eq!(KEYMAP[0x35], b'/');
        assert_eq!(KEYMAP[0x39], b' ');
    }
}
