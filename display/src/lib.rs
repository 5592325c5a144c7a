//! Turning the guest's VGA state into pixels: the text and mode 13h renderer, headless PNG
//! screenshots, and (with the `window` feature, on by default) a minifb window.
//!
//! The renderer is a pure function of the VGA's registers ([`devices::vga::VgaState`]) and a
//! copy of its 128 KiB memory window (0xA0000-0xBFFFF), so it needs no machine and no host:
//! - text modes (mode 3: 80x25 cells of 9x16 dots, 720x400): CP437 glyphs from [`font`], the
//!   attribute byte through the attribute controller's palette and the DAC, bit 7 as blink or
//!   bright background per the mode control register, the 9th column of line-graphics
//!   characters, the hardware cursor (blinking), the CRTC's start address and row offset;
//! - mode 13h (320x200, 256 colours, chain-4) through the DAC;
//! - anything else (the planar 16-colour modes, mode X, CGA modes) is
//!   [`DisplayError::UnsupportedMode`]: said plainly rather than drawn wrong.
//!
//! Modules: [`font`] the character generator, [`screenshot`] PNG output, `window` the minifb
//! window.

pub mod font;
pub mod screenshot;
#[cfg(feature = "window")]
pub mod window;

use devices::vga::{VgaState, VideoMode, WINDOW_LEN};

/// Errors from drawing the screen.
#[derive(Debug, thiserror::Error)]
pub enum DisplayError {
    /// The registers describe a mode this display cannot draw.
    #[error("unsupported VGA mode (planar or CGA graphics); only text modes and mode 13h are drawn")]
    UnsupportedMode,
    /// The memory window copy is not 128 KiB.
    #[error("the VGA memory window is {0} bytes, not 128 KiB")]
    WindowSize(usize),
    /// Writing a screenshot failed.
    #[error("cannot write the screenshot {path}: {reason}")]
    Screenshot {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The window could not be opened or updated.
    #[error("{0}")]
    Window(String),
}

/// A picture of the screen: `width` x `height` pixels, each 0x00RRGGBB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Pixels per line.
    pub width: usize,
    /// Lines.
    pub height: usize,
    /// Row-major pixels, 0x00RRGGBB (minifb's format).
    pub pixels: Vec<u32>,
}

/// Blinking, as the VGA derives it from vertical sync: the cursor toggles every 16 frames and
/// blinking characters every 32 (at 70 Hz: about 229 and 457 ms).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Blink {
    /// The cursor is shown.
    pub cursor_on: bool,
    /// Blinking characters are shown.
    pub chars_on: bool,
}

impl Blink {
    /// The blink phases `ms` milliseconds after some start.
    pub fn at_ms(ms: u64) -> Blink {
        let frame = ms * 70 / 1000;
        Blink { cursor_on: (frame / 16).is_multiple_of(2), chars_on: (frame / 32).is_multiple_of(2) }
    }

    /// Everything shown (for screenshots and tests).
    pub const STEADY: Blink = Blink { cursor_on: true, chars_on: true };
}

fn rgb(c: [u8; 3]) -> u32 {
    u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2])
}

/// The part of the window the graphics controller maps, and its size.
fn mapped<'a>(vga: &VgaState, window: &'a [u8]) -> &'a [u8] {
    let base = vga.memory_base();
    let len = match (vga.gc[6] >> 2) & 3 {
        0 => 0x2_0000,
        1 => 0x1_0000,
        _ => 0x8000,
    };
    &window[base..base + len]
}

/// The text cell `cell` (from the start of memory): its character and attribute.
fn cell_at(mem: &[u8], cell: usize) -> (u8, u8) {
    let off = (cell * 2) % mem.len();
    (mem[off], mem[(off + 1) % mem.len()])
}

/// Draws the screen the registers and memory describe.
pub fn render(vga: &VgaState, window: &[u8], blink: Blink) -> Result<Frame, DisplayError> {
    if window.len() != WINDOW_LEN {
        return Err(DisplayError::WindowSize(window.len()));
    }
    let mem = mapped(vga, window);
    match vga.mode() {
        VideoMode::Text { cols, rows, char_width, char_height } => {
            let (width, height) = (cols * char_width, rows * char_height);
            let mut pixels = vec![0u32; width * height];
            if !vga.screen_enabled() {
                return Ok(Frame { width, height, pixels });
            }
            let palette: Vec<u32> = (0..16).map(|c| rgb(vga.dac_rgb(vga.attribute_colour(c)))).collect();
            let start = vga.start_address();
            let stride = vga.row_stride().max(1);
            let cursor = vga.cursor().filter(|_| blink.cursor_on).and_then(|(cell, first, last)| {
                let rel = cell.checked_sub(start)?;
                let (row, col) = (rel / stride, rel % stride);
                (row < rows && col < cols).then_some((row, col, usize::from(first), usize::from(last)))
            });
            for row in 0..rows {
                for col in 0..cols {
                    let (ch, attr) = cell_at(mem, start + row * stride + col);
                    let mut fg = attr & 0x0f;
                    let mut bg = attr >> 4;
                    if vga.blink_enabled() {
                        bg &= 7;
                        if attr & 0x80 != 0 && !blink.chars_on {
                            fg = bg;
                        }
                    }
                    let (fg, bg) = (palette[usize::from(fg)], palette[usize::from(bg)]);
                    let graphics9 = vga.line_graphics() && (0xc0..=0xdf).contains(&ch);
                    for line in 0..char_height {
                        let bits = glyph_bits(ch, line, char_height, char_width, graphics9);
                        let on_cursor = cursor.is_some_and(|(r, c, first, last)| {
                            r == row && c == col && first <= last && (first..=last).contains(&line)
                        });
                        let y = row * char_height + line;
                        let out = &mut pixels[y * width + col * char_width..][..char_width];
                        for (x, px) in out.iter_mut().enumerate() {
                            *px = if on_cursor || bits >> x & 1 != 0 { fg } else { bg };
                        }
                    }
                }
            }
            Ok(Frame { width, height, pixels })
        }
        VideoMode::Chained256 { width, height } => {
            let start = vga.start_address() * 4;
            let stride = vga.row_stride();
            let dac: Vec<u32> = (0..=255u8).map(|i| rgb(vga.dac_rgb(i))).collect();
            let mut pixels = vec![0u32; width * height];
            if vga.screen_enabled() {
                for y in 0..height {
                    for x in 0..width {
                        let b = mem[(start + y * stride + x) % mem.len()];
                        pixels[y * width + x] = dac[usize::from(b)];
                    }
                }
            }
            Ok(Frame { width, height, pixels })
        }
        VideoMode::Unsupported => Err(DisplayError::UnsupportedMode),
    }
}

/// The dots of one line of a character cell, bit 0 leftmost, with the 9th column.
fn glyph_bits(ch: u8, line: usize, char_height: usize, char_width: usize, graphics9: bool) -> u16 {
    let row = u16::from(font::glyph_row(ch, line, char_height));
    if char_width == 9 && graphics9 {
        row | (row >> 7 & 1) << 8
    } else {
        row
    }
}

/// The text screen as lines of Unicode text (CP437 decoded, trailing blanks trimmed), or
/// `None` in a graphics mode. Tests and tools read the guest's console with it.
pub fn text_screen(vga: &VgaState, window: &[u8]) -> Option<String> {
    let VideoMode::Text { cols, rows, .. } = vga.mode() else { return None };
    if window.len() != WINDOW_LEN {
        return None;
    }
    let mem = mapped(vga, window);
    let start = vga.start_address();
    let stride = vga.row_stride().max(1);
    let mut out = String::new();
    for row in 0..rows {
        let line: String = (0..cols).map(|col| font::cp437_char(cell_at(mem, start + row * stride + col).0)).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_window(s: &[u8], attr: u8) -> Vec<u8> {
        let mut w = vec![0u8; WINDOW_LEN];
        for (i, &b) in s.iter().enumerate() {
            w[0x1_8000 + 2 * i] = b;
            w[0x1_8000 + 2 * i + 1] = attr;
        }
        w
    }

    #[test]
    fn mode3_text_renders_720x400_with_palette_colours() {
        let vga = VgaState::default();
        let w = text_window(b"A", 0x1e); // yellow on blue
        let f = render(&vga, &w, Blink::STEADY).expect("render");
        assert_eq!((f.width, f.height), (720, 400));
        let cell: Vec<u32> =
            (0..16).flat_map(|y| (0..9).map(move |x| (x, y))).map(|(x, y)| f.pixels[y * 720 + x]).collect();
        assert!(cell.contains(&0xffff55), "yellow dots");
        assert!(cell.contains(&0x0000aa), "blue background");
        assert_eq!(f.pixels[8], 0x0000aa, "9th column of a letter is background");
        // The next cell is attribute 0: black.
        assert_eq!(f.pixels[9 + 5 * 720], 0);
    }

    #[test]
    fn the_cursor_blinks_on_its_scan_lines() {
        let mut vga = VgaState::default();
        vga.crtc[0x0f] = 1; // cursor at cell 1
        let w = text_window(b"  ", 0x07);
        let on = render(&vga, &w, Blink::STEADY).expect("render");
        let off = render(&vga, &w, Blink { cursor_on: false, chars_on: true }).expect("render");
        let px = |f: &Frame, y: usize| f.pixels[y * 720 + 9 + 3];
        assert_eq!(px(&on, 13), 0xaaaaaa, "cursor line 13 in the foreground colour");
        assert_eq!(px(&on, 12), 0);
        assert_eq!(px(&off, 13), 0);
    }

    #[test]
    fn blinking_attribute_hides_the_character_and_keeps_a_dark_background() {
        let vga = VgaState::default();
        let w = text_window(&[0xdb], 0xcf); // blink, red background, white full block
        let on = render(&vga, &w, Blink::STEADY).expect("render");
        let off = render(&vga, &w, Blink { cursor_on: true, chars_on: false }).expect("render");
        assert_eq!(on.pixels[720 * 4 + 2], 0xffffff);
        assert_eq!(off.pixels[720 * 4 + 2], 0xaa0000, "background red, not bright red");
    }

    #[test]
    fn text_screen_follows_the_start_address() {
        let mut vga = VgaState::default();
        let mut w = text_window(b"first line", 7);
        let second = 80 * 2;
        for (i, b) in b"hello, world".iter().enumerate() {
            w[0x1_8000 + second + 2 * i] = *b;
        }
        let s = text_screen(&vga, &w).expect("text");
        assert_eq!(s.lines().next(), Some("first line"));
        assert_eq!(s.lines().count(), 25);
        vga.crtc[0x0d] = 80;
        assert_eq!(text_screen(&vga, &w).expect("text").lines().next(), Some("hello, world"));
    }

    #[test]
    fn mode_13h_draws_dac_colours_and_planar_modes_are_refused() {
        let mut vga = VgaState::default();
        vga.seq[4] = 0x0e;
        vga.gc[5] = 0x40;
        vga.gc[6] = 0x05;
        vga.crtc[0x09] = 0x41;
        vga.attr[0x10] = 0x41;
        vga.dac[9] = [0x3f, 0, 0x3f];
        let mut w = vec![0u8; WINDOW_LEN];
        w[320 * 2 + 5] = 9;
        let f = render(&vga, &w, Blink::STEADY).expect("render");
        assert_eq!((f.width, f.height), (320, 200));
        assert_eq!(f.pixels[320 * 2 + 5], 0xff00ff);
        assert_eq!(text_screen(&vga, &w), None);
        vga.seq[4] = 0x06;
        assert!(matches!(render(&vga, &w, Blink::STEADY), Err(DisplayError::UnsupportedMode)));
    }
}
