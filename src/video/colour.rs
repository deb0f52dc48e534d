//! Which YCbCr → RGB conversion a decoded picture needs: its matrix (BT.601, BT.709, BT.2020)
//! and range (limited 16–235, or full 0–255), as its stream says in the SPS's VUI, else as its
//! container says (MP4's `colr` box, Matroska's Colour element), else the convention players
//! follow (BT.601 below 720 lines, BT.709 from 720, limited range). Planes are told with COLOR_ENCODING/COLOR_RANGE; the CPU conversion uses the
//! same numbers.

use h264_reader::nal::sps::VideoSignalType;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Matrix {
    Bt601,
    #[default]
    Bt709,
    Bt2020,
}

/// A picture's colour: matrix and range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Colour {
    pub matrix: Matrix,
    pub full_range: bool,
}

/// What a container says of its video's colour, in the VUI's code points (ISO/IEC 23091-2):
/// `None` where it says nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stated {
    pub matrix_coefficients: Option<u8>,
    pub full_range: Option<bool>,
}

/// The matrix a `matrix_coefficients` code point names, if vitrine converts it.
fn matrix_of(code: u8) -> Option<Matrix> {
    match code {
        1 => Some(Matrix::Bt709),
        // BT.470 System B/G and SMPTE 170M: the same matrix.
        5 | 6 => Some(Matrix::Bt601),
        9 | 10 => Some(Matrix::Bt2020),
        // Unspecified (2), and what vitrine does not convert (identity, YCgCo, ...).
        _ => None,
    }
}

/// YCbCr → RGB coefficients in 8.8 fixed point, with the luma and chroma offsets to take off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coefficients {
    pub y: i32,
    pub rv: i32,
    pub gu: i32,
    pub gv: i32,
    pub bu: i32,
    pub y_offset: i32,
}

impl Colour {
    /// How EGL samples a YUV image it is told nothing about (EGL_EXT_image_dma_buf_import's
    /// defaults).
    pub const EGL_DEFAULT: Colour = Colour { matrix: Matrix::Bt601, full_range: false };

    /// What players assume of a stream that says nothing: SD is BT.601, HD BT.709, limited range.
    pub fn conventional(height: u32) -> Colour {
        Colour { matrix: if height < 720 { Matrix::Bt601 } else { Matrix::Bt709 }, full_range: false }
    }

    /// The colour an H.264 stream of `height` lines states in its VUI (`signal`), else what its
    /// container states, else the convention.
    pub fn of_stream(signal: Option<&VideoSignalType>, container: Stated, height: u32) -> Colour {
        let default = Colour::conventional(height);
        let vui_matrix =
            signal.and_then(|s| s.colour_description.as_ref()).and_then(|c| matrix_of(c.matrix_coefficients));
        let matrix = vui_matrix.or_else(|| container.matrix_coefficients.and_then(matrix_of)).unwrap_or(default.matrix);
        let full_range = signal.map(|s| s.video_full_range_flag).or(container.full_range).unwrap_or(false);
        Colour { matrix, full_range }
    }

    /// "BT.709 limited", for logs and `msg planes`.
    pub fn describe(self) -> String {
        let matrix = match self.matrix {
            Matrix::Bt601 => "BT.601",
            Matrix::Bt709 => "BT.709",
            Matrix::Bt2020 => "BT.2020",
        };
        format!("{matrix} {}", if self.full_range { "full" } else { "limited" })
    }

    /// The plane property COLOR_ENCODING's enum name for this matrix.
    pub fn drm_encoding(self) -> &'static str {
        match self.matrix {
            Matrix::Bt601 => "ITU-R BT.601 YCbCr",
            Matrix::Bt709 => "ITU-R BT.709 YCbCr",
            Matrix::Bt2020 => "ITU-R BT.2020 YCbCr",
        }
    }

    /// The plane property COLOR_RANGE's enum name for this range.
    pub fn drm_range(self) -> &'static str {
        if self.full_range {
            "YCbCr full range"
        } else {
            "YCbCr limited range"
        }
    }

    /// Whether only a plane that can be told this colour (COLOR_ENCODING/COLOR_RANGE) may show
    /// it: a plane that cannot converts as BT.709 limited, right for such pictures only, and
    /// `fast` accepts its colours for the others.
    pub fn plane_must_be_told(self, policy: crate::config::ColourPolicy) -> bool {
        self != Colour::default() && policy == crate::config::ColourPolicy::Exact
    }

    /// The conversion's factors in floating point: luma scale, then Cr→R, Cb→G, Cr→G, Cb→B
    /// (from the matrix's Kr and Kb, scaled for the range).
    fn factors(self) -> [f64; 5] {
        let (kr, kb) = match self.matrix {
            Matrix::Bt601 => (0.299, 0.114),
            Matrix::Bt709 => (0.2126, 0.0722),
            Matrix::Bt2020 => (0.2627, 0.0593),
        };
        let kg = 1.0 - kr - kb;
        let (luma, chroma) = if self.full_range { (1.0, 1.0) } else { (255.0 / 219.0, 255.0 / 224.0) };
        [
            luma,
            2.0 * (1.0 - kr) * chroma,
            -2.0 * kb * (1.0 - kb) / kg * chroma,
            -2.0 * kr * (1.0 - kr) / kg * chroma,
            2.0 * (1.0 - kb) * chroma,
        ]
    }

    /// The conversion's coefficients in 8.8 fixed point, for the CPU.
    pub fn coefficients(self) -> Coefficients {
        let fixed = |v: f64| (v * 256.0).round() as i32;
        let [y, rv, gu, gv, bu] = self.factors();
        Coefficients {
            y: fixed(y),
            rv: fixed(rv),
            gu: fixed(gu),
            gv: fixed(gv),
            bu: fixed(bu),
            y_offset: if self.full_range { 0 } else { 16 },
        }
    }

    /// The conversion for a shader: a 3x3 matrix (column-major) applied to (Y, Cb, Cr) in 0..1
    /// once `offsets` are taken off.
    pub fn gl_conversion(self) -> ([f32; 9], [f32; 3]) {
        let [y, rv, gu, gv, bu] = self.factors().map(|f| f as f32);
        let luma_offset = if self.full_range { 0.0 } else { 16.0 / 255.0 };
        ([y, y, y, 0.0, gu, bu, rv, gv, 0.0], [luma_offset, 128.0 / 255.0, 128.0 / 255.0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use h264_reader::nal::sps::{ColourDescription, VideoFormat};

    fn signal(matrix: Option<u8>, full: bool) -> VideoSignalType {
        VideoSignalType {
            video_format: VideoFormat::Unspecified,
            video_full_range_flag: full,
            colour_description: matrix.map(|m| ColourDescription {
                colour_primaries: 2,
                transfer_characteristics: 2,
                matrix_coefficients: m,
            }),
        }
    }

    #[test]
    fn the_stream_says_which_matrix_and_range_else_the_convention_by_height() {
        let c = |m, full, h| Colour::of_stream(Some(&signal(m, full)), Stated::default(), h);
        assert_eq!(c(Some(1), false, 480), Colour { matrix: Matrix::Bt709, full_range: false });
        assert_eq!(c(Some(6), true, 1080), Colour { matrix: Matrix::Bt601, full_range: true });
        assert_eq!(c(Some(9), false, 2160), Colour { matrix: Matrix::Bt2020, full_range: false });
        // Unspecified matrix: by height; the range flag still counts.
        assert_eq!(c(Some(2), true, 480), Colour { matrix: Matrix::Bt601, full_range: true });
        assert_eq!(c(None, false, 720), Colour { matrix: Matrix::Bt709, full_range: false });
        // No VUI signal at all.
        assert_eq!(
            Colour::of_stream(None, Stated::default(), 576),
            Colour { matrix: Matrix::Bt601, full_range: false }
        );
        assert_eq!(Colour::of_stream(None, Stated::default(), 1080), Colour::default());
    }

    #[test]
    fn the_container_speaks_where_the_stream_is_silent() {
        let full_601 = Stated { matrix_coefficients: Some(6), full_range: Some(true) };
        // Silent stream: the container's matrix and range.
        assert_eq!(Colour::of_stream(None, full_601, 1080), Colour { matrix: Matrix::Bt601, full_range: true });
        // A VUI with a range but no matrix: its range, the container's matrix.
        assert_eq!(
            Colour::of_stream(Some(&signal(None, false)), full_601, 1080),
            Colour { matrix: Matrix::Bt601, full_range: false }
        );
        // The stream's own matrix wins; an unspecified one (2) does not.
        assert_eq!(Colour::of_stream(Some(&signal(Some(9), false)), full_601, 1080).matrix, Matrix::Bt2020);
        assert_eq!(Colour::of_stream(Some(&signal(Some(2), false)), full_601, 1080).matrix, Matrix::Bt601);
        // A container matrix vitrine does not convert (YCgCo, 8) leaves the convention.
        let ycgco = Stated { matrix_coefficients: Some(8), full_range: None };
        assert_eq!(Colour::of_stream(None, ycgco, 480), Colour { matrix: Matrix::Bt601, full_range: false });
    }

    #[test]
    fn only_pictures_a_fixed_bt709_plane_gets_wrong_need_the_colour_properties() {
        use crate::config::ColourPolicy::{Exact, Fast};
        let sd = Colour { matrix: Matrix::Bt601, full_range: false };
        assert!(!Colour::default().plane_must_be_told(Exact));
        assert!(sd.plane_must_be_told(Exact));
        assert!(Colour { matrix: Matrix::Bt709, full_range: true }.plane_must_be_told(Exact));
        assert!(!sd.plane_must_be_told(Fast));
    }

    #[test]
    fn the_shader_matrix_gives_the_cpu_conversions_colours() {
        // Y 100, Cb 90, Cr 200 through the shader's arithmetic, against the fixed-point one.
        for matrix in [Matrix::Bt601, Matrix::Bt709, Matrix::Bt2020] {
            for full_range in [false, true] {
                let colour = Colour { matrix, full_range };
                let (m, off) = colour.gl_conversion();
                let yuv = [100.0 / 255.0 - off[0], 90.0 / 255.0 - off[1], 200.0 / 255.0 - off[2]];
                let rgb: Vec<f32> =
                    (0..3).map(|row| (0..3).map(|col| m[col * 3 + row] * yuv[col]).sum::<f32>() * 255.0).collect();
                let c = colour.coefficients();
                let (y, u, v) = ((100 - c.y_offset) * c.y, 90 - 128, 200 - 128);
                let cpu = [
                    (y + c.rv * v) as f32 / 256.0,
                    (y + c.gu * u + c.gv * v) as f32 / 256.0,
                    (y + c.bu * u) as f32 / 256.0,
                ];
                for (gl, cpu) in rgb.iter().zip(cpu) {
                    assert!((gl - cpu).abs() < 1.0, "{}: shader {rgb:?}, CPU {cpu}", colour.describe());
                }
            }
        }
    }

    #[test]
    fn coefficients_are_the_standard_ones() {
        // BT.709 limited, the numbers every conversion table has (×256).
        let c = Colour::default().coefficients();
        assert_eq!((c.y, c.rv, c.gu, c.gv, c.bu, c.y_offset), (298, 459, -55, -136, 541, 16));
        let c = Colour { matrix: Matrix::Bt601, full_range: false }.coefficients();
        assert_eq!((c.rv, c.gu, c.gv, c.bu), (409, -100, -208, 516));
        let c = Colour { matrix: Matrix::Bt601, full_range: true }.coefficients();
        assert_eq!((c.y, c.rv, c.bu, c.y_offset), (256, 359, 454, 0));
    }
}
