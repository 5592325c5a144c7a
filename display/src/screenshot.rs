//! Headless screenshots: a [`Frame`] as an 8-bit RGB PNG (the `png` crate).

use std::io::BufWriter;
use std::path::Path;

use crate::{DisplayError, Frame};

/// Encodes `frame` as PNG bytes.
pub fn encode_png(frame: &Frame) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, frame.width as u32, frame.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header()?;
        let data: Vec<u8> = frame.pixels.iter().flat_map(|p| [(p >> 16) as u8, (p >> 8) as u8, *p as u8]).collect();
        w.write_image_data(&data)?;
    }
    Ok(out)
}

/// Writes `frame` to `path` as a PNG.
pub fn write_png(frame: &Frame, path: &Path) -> Result<(), DisplayError> {
    let err = |reason: String| DisplayError::Screenshot { path: path.display().to_string(), reason };
    let bytes = encode_png(frame).map_err(|e| err(e.to_string()))?;
    let file = std::fs::File::create(path).map_err(|e| err(e.to_string()))?;
    let mut w = BufWriter::new(file);
    std::io::Write::write_all(&mut w, &bytes).map_err(|e| err(e.to_string()))?;
    std::io::Write::flush(&mut w).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trips() {
        let frame = Frame { width: 3, height: 2, pixels: vec![0xff0000, 0x00ff00, 0x0000ff, 0, 0xffffff, 0x123456] };
        let bytes = encode_png(&frame).expect("encode");
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = dec.read_info().expect("header");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut buf).expect("frame");
        assert_eq!((info.width, info.height), (3, 2));
        assert_eq!(&buf[..6], &[0xff, 0, 0, 0, 0xff, 0]);
        assert_eq!(&buf[15..18], &[0x12, 0x34, 0x56]);
    }
}
