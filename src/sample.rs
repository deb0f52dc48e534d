//! The sample clip of the first run (`vitrine sample-clip`): colour bars with a white square
//! crossing them and a bar growing along the bottom, made with the OpenH264 encoder vitrine
//! links, as a raw H.264 (Annex-B) stream vitrine plays like any file. Nothing is downloaded and
//! nothing is kept in the repository.

use std::io::Write;
use std::path::Path;

use openh264::encoder::{BitRate, Encoder, EncoderConfig, FrameRate};
use openh264::formats::YUVBuffer;
use openh264::OpenH264API;

/// The bars' colours as (Y, U, V), BT.601 limited range: white, yellow, cyan, green, magenta,
/// red, blue, black.
const BARS: [(u8, u8, u8); 8] = [
    (180, 128, 128),
    (162, 44, 142),
    (131, 156, 44),
    (112, 72, 58),
    (84, 184, 198),
    (65, 100, 212),
    (35, 212, 114),
    (16, 128, 128),
];

/// Write `seconds` of `width`x`height` (even sizes) at `fps` to `path`.
pub fn write(path: &Path, (width, height): (u32, u32), seconds: u32, fps: u32) -> Result<u32, String> {
    if width < 64 || height < 64 || width % 2 != 0 || height % 2 != 0 || width > 3840 || height > 2160 {
        return Err(format!("{width}x{height}: the size must be even, from 64x64 to 3840x2160"));
    }
    if !(1..=60).contains(&fps) || !(1..=600).contains(&seconds) {
        return Err("1 to 60 pictures a second, 1 to 600 seconds".into());
    }
    let config = EncoderConfig::new()
        .max_frame_rate(FrameRate::from_hz(fps as f32))
        .bitrate(BitRate::from_bps((width * height * fps / 8).max(200_000)));
    let mut encoder =
        Encoder::with_api_config(OpenH264API::from_source(), config).map_err(|e| format!("the H.264 encoder: {e}"))?;
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let frames = seconds * fps;
    let (w, h) = (width as usize, height as usize);
    let mut yuv = vec![0u8; w * h * 3 / 2];
    for n in 0..frames {
        draw(&mut yuv, (w, h), n as f64 / frames as f64);
        let picture = YUVBuffer::from_vec(yuv.clone(), w, h);
        let coded = encoder.encode(&picture).map_err(|e| format!("the H.264 encoder, picture {n}: {e}"))?;
        out.write_all(&coded.to_vec()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    out.flush().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(frames)
}

/// One picture, `t` of the way through the clip (0..1), into I420 `yuv`.
fn draw(yuv: &mut [u8], (w, h): (usize, usize), t: f64) {
    let (luma, chroma) = yuv.split_at_mut(w * h);
    let (u_plane, v_plane) = chroma.split_at_mut(w * h / 4);
    let square = h / 4;
    let sx = ((w - square) as f64 * t) as usize;
    let sy = h / 2 - square / 2;
    let bar_top = h - h / 12;
    let progress = (w as f64 * t) as usize;
    let colour = |x: usize, y: usize| -> (u8, u8, u8) {
        if y >= bar_top {
            return if x <= progress { BARS[0] } else { BARS[7] };
        }
        if (sx..sx + square).contains(&x) && (sy..sy + square).contains(&y) {
            return (235, 128, 128);
        }
        BARS[(x * BARS.len() / w).min(BARS.len() - 1)]
    };
    for y in 0..h {
        for x in 0..w {
            luma[y * w + x] = colour(x, y).0;
        }
    }
    for y in 0..h / 2 {
        for x in 0..w / 2 {
            let (_, u, v) = colour(x * 2, y * 2);
            u_plane[y * (w / 2) + x] = u;
            v_plane[y * (w / 2) + x] = v;
        }
    }
}
