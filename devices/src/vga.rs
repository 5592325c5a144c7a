//! The VGA's register file: miscellaneous output, sequencer, CRT controller, graphics
//! controller, attribute controller and DAC, at their ISA ports 0x3B0-0x3DF (the port itself is
//! the offset the machine hands in).
//!
//! The 128 KiB legacy window at 0xA0000-0xBFFFF is plain guest RAM in this machine: a guest
//! writing text at 0xB8000 (the BIOS, Linux's vgacon) or pixels at 0xA0000 in mode 13h (chain-4)
//! touches RAM at full speed, and the display reads the window from there. What needs the
//! VGA's memory logic (the planar modes with their latches, write modes, plane masks) is not
//! modelled: the renderer refuses those modes instead of drawing garbage.
//!
//! At power-on the registers hold what a VGA BIOS leaves after setting mode 3 (80x25 colour
//! text, 9x16 cells, the cursor on scan lines 13-14), because a directly booted kernel finds
//! the card that way (QEMU's -kernel runs SeaVGABIOS first). The DAC starts with the EGA
//! palette in its first 64 entries.
//!
//! Input status 1 (0x3DA) shows the retrace a 640x400 70 Hz (31.5 kHz) monitor timing would
//! give at the access's virtual time: bit 3 during vertical retrace, bit 0 during horizontal
//! and vertical blanking. Reading it resets the attribute controller's index/data flip-flop.

use crate::PortDevice;

/// The first and last ports the VGA decodes.
pub const PORT_FIRST: u16 = 0x3b0;
/// The last port.
pub const PORT_LAST: u16 = 0x3df;
/// The legacy memory window's base.
pub const WINDOW_BASE: u64 = 0xa_0000;
/// The legacy memory window's length.
pub const WINDOW_LEN: usize = 0x2_0000;

/// Sequencer registers.
pub const SEQ_COUNT: usize = 5;
/// CRT controller registers.
pub const CRTC_COUNT: usize = 25;
/// Graphics controller registers.
pub const GC_COUNT: usize = 9;
/// Attribute controller registers.
pub const ATTR_COUNT: usize = 21;

/// A frame of the 70 Hz text timing: 449 lines of 31.778 us.
const LINE_NS: u64 = 31_778;
const LINES_PER_FRAME: u64 = 449;
const FRAME_NS: u64 = LINE_NS * LINES_PER_FRAME;
/// Visible lines, and where vertical retrace starts and ends.
const VISIBLE_LINES: u64 = 400;
const VRETRACE: std::ops::Range<u64> = 412..414;
/// The visible part of a line (640 of 800 dots).
const VISIBLE_LINE_NS: u64 = LINE_NS * 640 / 800;

/// What a VGA BIOS leaves in the registers after setting mode 3.
pub mod mode3 {
    /// Miscellaneous output: colour I/O at 0x3Dx, RAM enabled, 28 MHz clock, sync polarity
    /// for 400 lines.
    pub const MISC: u8 = 0x67;
    /// Sequencer: no reset, 9-dot characters, planes 0 and 1, font in plane 2 at 0, odd/even.
    pub const SEQ: [u8; super::SEQ_COUNT] = [0x03, 0x00, 0x03, 0x00, 0x02];
    /// CRT controller: 80 columns, 400 lines of 16-line characters, cursor on lines 13-14.
    pub const CRTC: [u8; super::CRTC_COUNT] = [
        0x5f, 0x4f, 0x50, 0x82, 0x55, 0x81, 0xbf, 0x1f, 0x00, 0x4f, 0x0d, 0x0e, 0x00, 0x00, 0x00, 0x00, 0x9c, 0x8e,
        0x8f, 0x28, 0x1f, 0x96, 0xb9, 0xa3, 0xff,
    ];
    /// Graphics controller: odd/even, text, memory at 0xB8000.
    pub const GC: [u8; super::GC_COUNT] = [0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0e, 0x00, 0xff];
    /// Attribute controller: the EGA palette, text with line graphics and blinking.
    pub const ATTR: [u8; super::ATTR_COUNT] = [
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x0c, 0x00,
        0x0f, 0x08, 0x00,
    ];
}

/// The 6-bit DAC value of EGA colour `i` (0-63, bits rgbRGB): 2/3 intensity for RGB, 1/3 for rgb.
fn ega_dac(i: u8) -> [u8; 3] {
    let c = |hi: u8, lo: u8| 0x2a * ((i >> hi) & 1) + 0x15 * ((i >> lo) & 1);
    [c(2, 5), c(1, 4), c(0, 3)]
}

/// The guest-visible state of the VGA registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VgaState {
    /// Miscellaneous output register.
    pub misc: u8,
    /// Feature control register.
    pub feature: u8,
    /// Sequencer index.
    pub seq_index: u8,
    /// Sequencer registers.
    pub seq: [u8; SEQ_COUNT],
    /// CRT controller index.
    pub crtc_index: u8,
    /// CRT controller registers.
    pub crtc: [u8; CRTC_COUNT],
    /// Graphics controller index.
    pub gc_index: u8,
    /// Graphics controller registers.
    pub gc: [u8; GC_COUNT],
    /// Attribute controller index, with the palette address source bit (0x20).
    pub attr_index: u8,
    /// Attribute controller registers.
    pub attr: [u8; ATTR_COUNT],
    /// The attribute flip-flop: the next write to 0x3C0 is data (`true`) or an index.
    pub attr_data_next: bool,
    /// DAC entries, 6 bits per component.
    pub dac: [[u8; 3]; 256],
    /// DAC pixel mask (0x3C6).
    pub dac_mask: u8,
    /// DAC read index (0x3C7).
    pub dac_read_index: u8,
    /// DAC write index (0x3C8).
    pub dac_write_index: u8,
    /// Which component (0-2) the next data access touches.
    pub dac_component: u8,
    /// The last index write was for reading (0x3C7) rather than writing (0x3C8).
    pub dac_reading: bool,
    /// The components written so far for the entry at the write index.
    pub dac_latch: [u8; 3],
}

impl Default for VgaState {
    fn default() -> Self {
        let mut dac = [[0u8; 3]; 256];
        for (i, e) in dac.iter_mut().enumerate().take(64) {
            *e = ega_dac(i as u8);
        }
        VgaState {
            misc: mode3::MISC,
            feature: 0,
            seq_index: 0,
            seq: mode3::SEQ,
            crtc_index: 0,
            crtc: mode3::CRTC,
            gc_index: 0,
            gc: mode3::GC,
            attr_index: 0x20,
            attr: mode3::ATTR,
            attr_data_next: false,
            dac,
            dac_mask: 0xff,
            dac_read_index: 0,
            dac_write_index: 0,
            dac_component: 0,
            dac_reading: false,
            dac_latch: [0; 3],
        }
    }
}

/// What the registers say the screen shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoMode {
    /// Alphanumeric: `cols` x `rows` cells of `char_width` x `char_height` dots.
    Text {
        /// Characters per row.
        cols: usize,
        /// Rows.
        rows: usize,
        /// Dots per character cell horizontally (8 or 9).
        char_width: usize,
        /// Scan lines per character row.
        char_height: usize,
    },
    /// 256 colours, one byte a pixel, chain-4 (mode 13h).
    Chained256 {
        /// Pixels per line.
        width: usize,
        /// Lines.
        height: usize,
    },
    /// A planar or CGA-compatible graphics mode, which this VGA does not draw.
    Unsupported,
}

impl VgaState {
    /// The vertical display end, in scan lines.
    fn display_lines(&self) -> usize {
        let c = &self.crtc;
        let vde = usize::from(c[0x12]) | (usize::from(c[0x07] >> 1 & 1) << 8) | (usize::from(c[0x07] >> 6 & 1) << 9);
        vde + 1
    }

    /// Scan lines per character row (or per pixel row in graphics modes), with double scan.
    fn scan_lines_per_row(&self) -> usize {
        let max = usize::from(self.crtc[0x09] & 0x1f) + 1;
        if self.crtc[0x09] & 0x80 != 0 {
            max * 2
        } else {
            max
        }
    }

    /// The mode the registers describe.
    pub fn mode(&self) -> VideoMode {
        let graphics = self.gc[6] & 1 != 0 || self.attr[0x10] & 1 != 0;
        let cols = usize::from(self.crtc[0x01]) + 1;
        if !graphics {
            let char_height = usize::from(self.crtc[0x09] & 0x1f) + 1;
            return VideoMode::Text {
                cols,
                rows: (self.display_lines() / char_height).max(1),
                char_width: if self.seq[1] & 1 != 0 { 8 } else { 9 },
                char_height,
            };
        }
        let chain4 = self.seq[4] & 0x08 != 0;
        let shift256 = self.gc[5] & 0x40 != 0;
        if chain4 && shift256 {
            return VideoMode::Chained256 {
                width: cols * 4,
                height: (self.display_lines() / self.scan_lines_per_row()).max(1),
            };
        }
        VideoMode::Unsupported
    }

    /// Where the mapped memory starts, as an offset into the 128 KiB window (GR6 bits 3:2).
    pub fn memory_base(&self) -> usize {
        match (self.gc[6] >> 2) & 3 {
            0 | 1 => 0,
            2 => 0x1_0000,
            _ => 0x1_8000,
        }
    }

    /// The display start address (CR0C:CR0D), in character cells or bytes.
    pub fn start_address(&self) -> usize {
        usize::from(self.crtc[0x0c]) << 8 | usize::from(self.crtc[0x0d])
    }

    /// The distance between rows (CR13 in words: two cells or bytes each, four in chain-4).
    pub fn row_stride(&self) -> usize {
        let words = usize::from(self.crtc[0x13]) * 2;
        if self.seq[4] & 0x08 != 0 {
            words * 4
        } else {
            words
        }
    }

    /// The text cursor: its cell (from the start of memory) and its first and last scan
    /// lines, or `None` when it is switched off.
    pub fn cursor(&self) -> Option<(usize, u8, u8)> {
        if self.crtc[0x0a] & 0x20 != 0 {
            return None;
        }
        let cell = usize::from(self.crtc[0x0e]) << 8 | usize::from(self.crtc[0x0f]);
        Some((cell, self.crtc[0x0a] & 0x1f, self.crtc[0x0b] & 0x1f))
    }

    /// The 8-bit RGB colour of DAC entry `index` after the pixel mask.
    pub fn dac_rgb(&self, index: u8) -> [u8; 3] {
        let e = self.dac[usize::from(index & self.dac_mask)];
        // 6 bits to 8: repeat the top bits in the bottom.
        e.map(|c| (c & 0x3f) << 2 | (c & 0x3f) >> 4)
    }

    /// The DAC index of text attribute colour `c` (0-15) through the palette registers and
    /// the colour select register, as the attribute controller forms it.
    pub fn attribute_colour(&self, c: u8) -> u8 {
        let p = self.attr[usize::from(c & 0x0f)] & 0x3f;
        let select = self.attr[0x14];
        if self.attr[0x10] & 0x80 != 0 {
            (select & 0x0f) << 4 | (p & 0x0f)
        } else {
            (select & 0x0c) << 4 | p
        }
    }

    /// Attribute bit 7 blinks the character (mode control bit 3) instead of brightening the
    /// background.
    pub fn blink_enabled(&self) -> bool {
        self.attr[0x10] & 0x08 != 0
    }

    /// Line-graphics characters 0xC0-0xDF repeat their 8th column in the 9th (mode control
    /// bit 2).
    pub fn line_graphics(&self) -> bool {
        self.attr[0x10] & 0x04 != 0
    }

    /// The screen is on: the sequencer's screen-off bit is clear and the attribute controller
    /// drives the palette (PAS set).
    pub fn screen_enabled(&self) -> bool {
        self.seq[1] & 0x20 == 0 && self.attr_index & 0x20 != 0
    }

    /// Input status 1 at `now_ns`: bit 3 vertical retrace, bit 0 display disabled (blanking).
    fn input_status1(&self, now_ns: u64) -> u8 {
        let in_frame = now_ns % FRAME_NS;
        let line = in_frame / LINE_NS;
        let in_line = in_frame % LINE_NS;
        let vretrace = VRETRACE.contains(&line);
        let blank = line >= VISIBLE_LINES || in_line >= VISIBLE_LINE_NS;
        u8::from(vretrace) << 3 | u8::from(blank)
    }
}

/// The VGA's registers.
#[derive(Clone, Debug, Default)]
pub struct Vga {
    state: VgaState,
}

impl Vga {
    /// A VGA as a BIOS leaves it in mode 3.
    pub fn new() -> Self {
        Vga::default()
    }

    /// A copy of the guest-visible state.
    pub fn state(&self) -> VgaState {
        self.state.clone()
    }

    /// A view of the state (for the renderer, without a copy).
    pub fn state_ref(&self) -> &VgaState {
        &self.state
    }

    /// Replaces the state (snapshot restore).
    pub fn restore(&mut self, state: VgaState) {
        self.state = state;
    }

    /// The registers back to their power-on values.
    pub fn reset(&mut self) {
        self.state = VgaState::default();
    }

    /// Whether the CRTC is at 0x3Dx (colour) rather than 0x3Bx (mono), per misc bit 0.
    fn colour_io(&self) -> bool {
        self.state.misc & 1 != 0
    }

    /// Whether `port` is the other emulation's CRTC/status port, which the card ignores.
    fn wrong_emulation(&self, port: u16) -> bool {
        let mono = (0x3b0..=0x3bf).contains(&port);
        let colour = (0x3d0..=0x3df).contains(&port);
        (mono && self.colour_io()) || (colour && !self.colour_io())
    }

    fn read(&mut self, port: u16, now_ns: u64) -> u8 {
        if self.wrong_emulation(port) {
            return 0xff;
        }
        let s = &mut self.state;
        match port {
            0x3c0 => s.attr_index,
            0x3c1 => s.attr.get(usize::from(s.attr_index & 0x1f)).copied().unwrap_or(0),
            // Input status 0: the switch sense bit; no CRT interrupt.
            0x3c2 => 0x10,
            0x3c3 => 1,
            0x3c4 => s.seq_index,
            0x3c5 => s.seq.get(usize::from(s.seq_index)).copied().unwrap_or(0),
            0x3c6 => s.dac_mask,
            0x3c7 => {
                if s.dac_reading {
                    0x03
                } else {
                    0x00
                }
            }
            0x3c8 => s.dac_write_index,
            0x3c9 => {
                let v = s.dac[usize::from(s.dac_read_index)][usize::from(s.dac_component)];
                s.dac_component += 1;
                if s.dac_component == 3 {
                    s.dac_component = 0;
                    s.dac_read_index = s.dac_read_index.wrapping_add(1);
                }
                v
            }
            0x3ca => s.feature,
            0x3cc => s.misc,
            0x3ce => s.gc_index,
            0x3cf => s.gc.get(usize::from(s.gc_index)).copied().unwrap_or(0),
            0x3b4 | 0x3d4 => s.crtc_index,
            0x3b5 | 0x3d5 => s.crtc.get(usize::from(s.crtc_index)).copied().unwrap_or(0),
            0x3ba | 0x3da => {
                s.attr_data_next = false;
                s.input_status1(now_ns)
            }
            _ => 0xff,
        }
    }

    fn write(&mut self, port: u16, val: u8) {
        if self.wrong_emulation(port) {
            return;
        }
        let s = &mut self.state;
        match port {
            0x3c0 => {
                if s.attr_data_next {
                    let i = usize::from(s.attr_index & 0x1f);
                    // The palette registers are written only while PAS is clear.
                    if i < ATTR_COUNT && (i >= 16 || s.attr_index & 0x20 == 0) {
                        s.attr[i] = val;
                    }
                } else {
                    s.attr_index = val & 0x3f;
                }
                s.attr_data_next = !s.attr_data_next;
            }
            0x3c2 => s.misc = val,
            0x3c4 => s.seq_index = val & 0x07,
            0x3c5 => {
                if let Some(r) = s.seq.get_mut(usize::from(s.seq_index)) {
                    *r = val;
                }
            }
            0x3c6 => s.dac_mask = val,
            0x3c7 => {
                s.dac_read_index = val;
                s.dac_component = 0;
                s.dac_reading = true;
            }
            0x3c8 => {
                s.dac_write_index = val;
                s.dac_component = 0;
                s.dac_reading = false;
            }
            0x3c9 => {
                s.dac_latch[usize::from(s.dac_component)] = val & 0x3f;
                s.dac_component += 1;
                if s.dac_component == 3 {
                    s.dac[usize::from(s.dac_write_index)] = s.dac_latch;
                    s.dac_component = 0;
                    s.dac_write_index = s.dac_write_index.wrapping_add(1);
                }
            }
            0x3ce => s.gc_index = val & 0x0f,
            0x3cf => {
                if let Some(r) = s.gc.get_mut(usize::from(s.gc_index)) {
                    *r = val;
                }
            }
            0x3b4 | 0x3d4 => s.crtc_index = val & 0x3f,
            0x3b5 | 0x3d5 => {
                let i = usize::from(s.crtc_index);
                // CR11 bit 7 protects CR00-CR07, except CR07's line compare bit 4.
                let protected = s.crtc[0x11] & 0x80 != 0;
                match i {
                    0..=6 if protected => {}
                    7 if protected => s.crtc[7] = (s.crtc[7] & !0x10) | (val & 0x10),
                    _ => {
                        if let Some(r) = s.crtc.get_mut(i) {
                            *r = val;
                        }
                    }
                }
            }
            0x3ba | 0x3da => s.feature = val,
            _ => {}
        }
    }
}

impl PortDevice for Vga {
    fn port_read(&mut self, port: u16, size: u8, now_ns: u64) -> u32 {
        crate::read_bytes(port, size, |p| self.read(p, now_ns))
    }

    fn port_write(&mut self, port: u16, size: u8, val: u32, _now_ns: u64) {
        crate::write_bytes(port, size, val, |p, b| self.write(p, b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(v: &mut Vga, port: u16) -> u8 {
        v.port_read(port, 1, 0) as u8
    }

    fn w(v: &mut Vga, port: u16, val: u8) {
        v.port_write(port, 1, u32::from(val), 0);
    }

    #[test]
    fn power_on_is_mode_3_text() {
        let v = Vga::new();
        assert_eq!(v.state.mode(), VideoMode::Text { cols: 80, rows: 25, char_width: 9, char_height: 16 });
        assert_eq!(v.state.memory_base(), 0x1_8000);
        assert_eq!(v.state.row_stride(), 80);
        assert_eq!(v.state.cursor(), Some((0, 13, 14)));
        assert!(v.state.screen_enabled());
        assert_eq!(v.state.dac_rgb(v.state.attribute_colour(1)), [0, 0, 0xaa], "blue");
        assert_eq!(v.state.dac_rgb(v.state.attribute_colour(6)), [0xaa, 0x55, 0], "brown");
        assert_eq!(v.state.dac_rgb(v.state.attribute_colour(15)), [0xff, 0xff, 0xff]);
    }

    #[test]
    fn misc_output_reads_back_at_3cc_and_selects_the_crtc_ports() {
        let mut v = Vga::new();
        assert_eq!(r(&mut v, 0x3cc), 0x67);
        w(&mut v, 0x3d4, 0x0e);
        w(&mut v, 0x3d5, 0x12);
        assert_eq!(r(&mut v, 0x3d5), 0x12);
        assert_eq!(r(&mut v, 0x3b5), 0xff, "mono CRTC ports are dead in colour mode");
        w(&mut v, 0x3c2, 0x66);
        assert_eq!(r(&mut v, 0x3b5), 0x12);
        assert_eq!(r(&mut v, 0x3d5), 0xff);
    }

    #[test]
    fn crtc_cursor_and_start_address() {
        let mut v = Vga::new();
        for (i, val) in [(0x0a, 0x06), (0x0b, 0x07), (0x0c, 0x01), (0x0d, 0x40), (0x0e, 0x02), (0x0f, 0x03)] {
            w(&mut v, 0x3d4, i);
            w(&mut v, 0x3d5, val);
        }
        assert_eq!(v.state.cursor(), Some((0x203, 6, 7)));
        assert_eq!(v.state.start_address(), 0x140);
        w(&mut v, 0x3d4, 0x0a);
        w(&mut v, 0x3d5, 0x20);
        assert_eq!(v.state.cursor(), None, "cursor disable bit");
    }

    #[test]
    fn crtc_write_protect_keeps_the_timing_registers() {
        let mut v = Vga::new();
        w(&mut v, 0x3d4, 0x01);
        w(&mut v, 0x3d5, 0x27);
        assert_eq!(r(&mut v, 0x3d5), 0x4f, "CR11 bit 7 is set in mode 3");
        w(&mut v, 0x3d4, 0x11);
        w(&mut v, 0x3d5, 0x0e);
        w(&mut v, 0x3d4, 0x01);
        w(&mut v, 0x3d5, 0x27);
        assert_eq!(r(&mut v, 0x3d5), 0x27);
    }

    #[test]
    fn attribute_flip_flop_is_reset_by_reading_input_status_1() {
        let mut v = Vga::new();
        r(&mut v, 0x3da);
        w(&mut v, 0x3c0, 0x01); // index 1, PAS clear: palette writable, screen off
        assert!(!v.state.screen_enabled());
        w(&mut v, 0x3c0, 0x3f);
        assert_eq!(v.state.attr[1], 0x3f);
        w(&mut v, 0x3c0, 0x02); // an index again
        r(&mut v, 0x3da);
        w(&mut v, 0x3c0, 0x03); // after the reset: an index, not data for register 2
        assert_eq!(v.state.attr[2], 0x02);
        assert_eq!(r(&mut v, 0x3c0), 0x03);
        w(&mut v, 0x3c0, 0x15);
        assert_eq!(v.state.attr[3], 0x15);
        r(&mut v, 0x3da);
        w(&mut v, 0x3c0, 0x20);
        assert!(v.state.screen_enabled(), "PAS set again");
        w(&mut v, 0x3c0, 0x00);
        assert_eq!(v.state.attr[0], 0x00, "palette registers are locked while PAS is set");
        assert_eq!(r(&mut v, 0x3c1), 0x00);
    }

    #[test]
    fn dac_write_and_read_back_auto_increment() {
        let mut v = Vga::new();
        w(&mut v, 0x3c8, 0x10);
        for c in [1, 2, 3, 4, 5, 0xff] {
            w(&mut v, 0x3c9, c);
        }
        assert_eq!(r(&mut v, 0x3c8), 0x12);
        assert_eq!(v.state.dac[0x11], [4, 5, 0x3f], "6 bits");
        w(&mut v, 0x3c7, 0x10);
        assert_eq!(r(&mut v, 0x3c7), 0x03, "DAC state: reading");
        let got: Vec<u8> = (0..6).map(|_| r(&mut v, 0x3c9)).collect();
        assert_eq!(got, [1, 2, 3, 4, 5, 0x3f]);
        w(&mut v, 0x3c6, 0x0f);
        assert_eq!(r(&mut v, 0x3c6), 0x0f);
    }

    #[test]
    fn retrace_bits_toggle_with_time() {
        let mut v = Vga::new();
        let at = |v: &mut Vga, ns: u64| v.port_read(0x3da, 1, ns) as u8;
        assert_eq!(at(&mut v, 0), 0, "top left: displaying");
        assert_eq!(at(&mut v, VISIBLE_LINE_NS + 10), 1, "horizontal blanking");
        assert_eq!(at(&mut v, 412 * LINE_NS + 5), 0x09, "vertical retrace");
        assert_eq!(at(&mut v, 420 * LINE_NS), 0x01, "vertical blanking after retrace");
        assert_eq!(at(&mut v, FRAME_NS + 5), 0, "next frame");
    }

    #[test]
    fn mode_13h_registers_are_chained_256_colours() {
        let mut v = Vga::new();
        w(&mut v, 0x3c4, 0x04);
        w(&mut v, 0x3c5, 0x0e);
        w(&mut v, 0x3ce, 0x05);
        w(&mut v, 0x3cf, 0x40);
        w(&mut v, 0x3ce, 0x06);
        w(&mut v, 0x3cf, 0x05);
        w(&mut v, 0x3d4, 0x09);
        w(&mut v, 0x3d5, 0x41);
        assert_eq!(v.state.mode(), VideoMode::Chained256 { width: 320, height: 200 });
        assert_eq!(v.state.memory_base(), 0);
        assert_eq!(v.state.row_stride(), 320);
        w(&mut v, 0x3c4, 0x04);
        w(&mut v, 0x3c5, 0x06);
        assert_eq!(v.state.mode(), VideoMode::Unsupported, "planar 256 colours (mode X)");
    }
}
