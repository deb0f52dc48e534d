//! A plain RGBA8 image with PNG input and output, for screenshots and tests.

use std::io::BufWriter;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbaImage {
    pub width: u32,
    pub height: u32,
    /// Row-major RGBA, 4 bytes per pixel, no padding.
    pub data: Vec<u8>,
}

impl RgbaImage {
    pub fn from_raw(width: u32, height: u32, data: Vec<u8>) -> Option<Self> {
        (data.len() == width as usize * height as usize * 4).then_some(RgbaImage { width, height, data })
    }

    pub fn pixel(&self, x: u32, y: u32) -> [u8; 4] {
        let i = (y as usize * self.width as usize + x as usize) * 4;
        [self.data[i], self.data[i + 1], self.data[i + 2], self.data[i + 3]]
    }

    pub fn save_png(&self, path: &Path) -> Result<(), String> {
        let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        self.write_png(file).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Encode as PNG into `out`.
    pub fn write_png(&self, out: impl std::io::Write) -> Result<(), String> {
        let mut encoder = png::Encoder::new(BufWriter::new(out), self.width, self.height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
        writer.write_image_data(&self.data).map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())
    }

    /// Read an 8-bit RGB or RGBA PNG.
    pub fn load_png(path: &Path) -> Result<Self, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().map_err(|e| format!("{}: {e}", path.display()))?;
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).map_err(|e| format!("{}: {e}", path.display()))?;
        buf.truncate(info.buffer_size());
        let data = match info.color_type {
            png::ColorType::Rgba => buf,
            png::ColorType::Rgb => buf.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
            png::ColorType::GrayscaleAlpha => buf.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0], p[1]]).collect(),
            png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g, 255]).collect(),
            other => return Err(format!("{}: unsupported PNG colour type {other:?}", path.display())),
        };
        RgbaImage::from_raw(info.width, info.height, data).ok_or_else(|| format!("{}: truncated PNG", path.display()))
    }

    /// Fraction of pixels in `rect` (x, y, w, h) whose RGB differs from `color` by more than `tolerance`.
    pub fn fraction_differing(&self, rect: (u32, u32, u32, u32), color: [u8; 3], tolerance: u8) -> f64 {
        let (x0, y0, w, h) = rect;
        let mut differ = 0u64;
        let mut total = 0u64;
        for y in y0..(y0 + h).min(self.height) {
            for x in x0..(x0 + w).min(self.width) {
                let p = self.pixel(x, y);
                total += 1;
                if (0..3).any(|c| p[c].abs_diff(color[c]) > tolerance) {
                    differ += 1;
                }
            }
        }
        if total == 0 {
            0.0
        } else {
            differ as f64 / total as f64
        }
    }

    /// Number of distinct RGB colours in the image (a measure of "something was drawn").
    pub fn distinct_colors(&self) -> usize {
        let mut seen = std::collections::HashSet::new();
        for p in self.data.chunks_exact(4) {
            seen.insert([p[0], p[1], p[2]]);
        }
        seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trip() {
        let img = RgbaImage::from_raw(2, 2, vec![1, 2, 3, 255, 4, 5, 6, 255, 7, 8, 9, 255, 10, 11, 12, 255]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        img.save_png(&path).unwrap();
        assert_eq!(RgbaImage::load_png(&path).unwrap(), img);
        assert_eq!(img.pixel(0, 0), [1, 2, 3, 255]);
        assert_eq!(img.pixel(1, 1), [10, 11, 12, 255]);
        assert_eq!(img.fraction_differing((0, 0, 2, 2), [7, 8, 9], 0), 0.75);
        assert_eq!(img.distinct_colors(), 4);
    }
}
