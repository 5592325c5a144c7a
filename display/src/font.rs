//! The character generator: code page 437 in 8x8 and 8x16 cells.
//!
//! The glyphs come from the `font8x8` crate (a public-domain 8x8 font, MIT-licensed crate),
//! looked up by the Unicode character each CP437 code stands for; the 16-line cells of the VGA's
//! text modes repeat each of the 8 rows twice. Codes the font has no glyph for show as a hollow
//! box. (The VGA's own font lives in plane 2, which this VGA does not model: a guest's loaded
//! font is not used.)

use std::sync::OnceLock;

use font8x8::UnicodeFonts;

/// Code page 437: the Unicode character each code shows on a PC.
#[rustfmt::skip]
const CP437: [char; 256] = [
    ' ', '☺', '☻', '♥', '♦', '♣', '♠', '•', '◘', '○', '◙', '♂', '♀', '♪', '♫', '☼',
    '►', '◄', '↕', '‼', '¶', '§', '▬', '↨', '↑', '↓', '→', '←', '∟', '↔', '▲', '▼',
    ' ', '!', '"', '#', '$', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?',
    '@', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O',
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', '[', '\\', ']', '^', '_',
    '`', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', '{', '|', '}', '~', '⌂',
    'Ç', 'ü', 'é', 'â', 'ä', 'à', 'å', 'ç', 'ê', 'ë', 'è', 'ï', 'î', 'ì', 'Ä', 'Å',
    'É', 'æ', 'Æ', 'ô', 'ö', 'ò', 'û', 'ù', 'ÿ', 'Ö', 'Ü', '¢', '£', '¥', '₧', 'ƒ',
    'á', 'í', 'ó', 'ú', 'ñ', 'Ñ', 'ª', 'º', '¿', '⌐', '¬', '½', '¼', '¡', '«', '»',
    '░', '▒', '▓', '│', '┤', '╡', '╢', '╖', '╕', '╣', '║', '╗', '╝', '╜', '╛', '┐',
    '└', '┴', '┬', '├', '─', '┼', '╞', '╟', '╚', '╔', '╩', '╦', '╠', '═', '╬', '╧',
    '╨', '╤', '╥', '╙', '╘', '╒', '╓', '╫', '╪', '┘', '┌', '█', '▄', '▌', '▐', '▀',
    'α', 'ß', 'Γ', 'π', 'Σ', 'σ', 'µ', 'τ', 'Φ', 'Θ', 'Ω', 'δ', '∞', 'φ', 'ε', '∩',
    '≡', '±', '≥', '≤', '⌠', '⌡', '÷', '≈', '°', '∙', '·', '√', 'ⁿ', '²', '■', ' ',
];

/// A hollow box for characters the font lacks.
const MISSING: [u8; 8] = [0x00, 0x7e, 0x42, 0x42, 0x42, 0x42, 0x7e, 0x00];

/// The Unicode character CP437 code `code` shows.
pub fn cp437_char(code: u8) -> char {
    CP437[usize::from(code)]
}

fn lookup(c: char) -> Option<[u8; 8]> {
    font8x8::BASIC_FONTS
        .get(c)
        .or_else(|| font8x8::LATIN_FONTS.get(c))
        .or_else(|| font8x8::BOX_FONTS.get(c))
        .or_else(|| font8x8::BLOCK_FONTS.get(c))
        .or_else(|| font8x8::GREEK_FONTS.get(c))
        .or_else(|| font8x8::MISC_FONTS.get(c))
}

/// The 8x8 glyphs of all 256 codes; bit 0 of a row is its leftmost dot.
pub fn glyphs8() -> &'static [[u8; 8]; 256] {
    static TABLE: OnceLock<[[u8; 8]; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [[0u8; 8]; 256];
        for (code, g) in t.iter_mut().enumerate() {
            let c = CP437[code];
            *g = if c == ' ' { [0; 8] } else { lookup(c).unwrap_or(MISSING) };
        }
        t
    })
}

/// Row `line` (0-based) of code `code`'s glyph in a cell `height` lines tall: the 8x8 glyph as
/// it is for cells up to 8 lines, each row doubled for taller cells (16 in mode 3); lines past
/// the glyph are blank.
pub fn glyph_row(code: u8, line: usize, height: usize) -> u8 {
    let g = &glyphs8()[usize::from(code)];
    let row = if height <= 8 { line } else { line / 2 };
    g.get(row).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_box_drawing_and_blocks_have_glyphs() {
        for code in [b'A', b'z', b'0', 0xc4, 0xdb, 0xb0, 0xe1, 0x82] {
            assert_ne!(glyphs8()[usize::from(code)], [0; 8], "code {code:#x} ({})", cp437_char(code));
            assert_ne!(glyphs8()[usize::from(code)], MISSING, "code {code:#x} ({})", cp437_char(code));
        }
        assert_eq!(glyphs8()[0x20], [0; 8]);
        assert_eq!(glyphs8()[0xdb], [0xff; 8], "full block");
    }

    #[test]
    fn sixteen_line_cells_double_the_rows() {
        let g = glyphs8()[usize::from(b'A')];
        for line in 0..16 {
            assert_eq!(glyph_row(b'A', line, 16), g[line / 2]);
        }
        assert_eq!(glyph_row(b'A', 3, 8), g[3]);
        assert_eq!(glyph_row(b'A', 9, 8), 0);
    }
}
