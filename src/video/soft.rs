//! The software fallback where no V4L2 decoder exists (developer laptops, nested testing, CI):
//! OpenH264 decodes on the decoding thread and every picture is converted to RGBA in memory,
//! then composited. This path copies every picture, and says so: `cpu_copied_bytes` and
//! `frame_mappings` count it, and the status names it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openh264::decoder::{DecodedYUV, Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;
use openh264::OpenH264API;

use super::{FrameToken, VideoError, VideoFrame, VideoStats};

/// Pictures in memory; an image is reused once no frame refers to it any more.
pub struct SoftwareDecoder {
    decoder: Decoder,
    /// Presentation times of pictures sent and not yet output (OpenH264 outputs in
    /// presentation order, so the smallest is the next one's).
    pending: BinaryHeap<Reverse<Duration>>,
    pool: Vec<Arc<Vec<u8>>>,
    pub stats: VideoStats,
}

impl SoftwareDecoder {
    pub fn new() -> Result<Self, VideoError> {
        let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
        let decoder = Decoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| VideoError::Decoder(format!("OpenH264: {e}")))?;
        Ok(Self { decoder, pending: BinaryHeap::new(), pool: Vec::new(), stats: VideoStats::default() })
    }

    pub fn name(&self) -> String {
        "software (OpenH264, pictures copied to memory)".into()
    }

    /// Decode one access unit; returns the picture that became ready, if any.
    pub fn decode(&mut self, au: &[u8], pts: Duration) -> Result<Option<VideoFrame>, VideoError> {
        self.pending.push(Reverse(pts));
        self.stats.bitstream_bytes += au.len() as u64;
        let Self { decoder, pending, pool, stats } = self;
        match decoder.decode(au) {
            Ok(Some(yuv)) => Ok(Some(picture(&yuv, pending, pool, stats))),
            Ok(None) => Ok(None),
            Err(e) => {
                pending.pop();
                Err(VideoError::Stream(format!("OpenH264: {e}")))
            }
        }
    }

    /// Everything still inside the decoder (end of a clip).
    pub fn drain(&mut self) -> Vec<VideoFrame> {
        let Self { decoder, pending, pool, stats } = self;
        let frames = match decoder.flush_remaining() {
            Ok(frames) => frames.iter().map(|yuv| picture(yuv, pending, pool, stats)).collect(),
            Err(e) => {
                tracing::warn!(target: "video", %e, "OpenH264 flush failed");
                Vec::new()
            }
        };
        pending.clear();
        frames
    }
}

/// Convert a decoded picture into a pooled RGBA image (the copy this path is counted for).
fn picture(
    yuv: &DecodedYUV<'_>,
    pending: &mut BinaryHeap<Reverse<Duration>>,
    pool: &mut Vec<Arc<Vec<u8>>>,
    stats: &mut VideoStats,
) -> VideoFrame {
    let (w, h) = yuv.dimensions();
    let len = w * h * 4;
    let reusable = pool.iter().position(|a| Arc::strong_count(a) == 1 && a.len() == len);
    let mut image = match reusable {
        Some(i) => pool.swap_remove(i),
        None => Arc::new(vec![0; len]),
    };
    if let Some(buf) = Arc::get_mut(&mut image) {
        yuv.write_rgba8(buf);
    }
    stats.frames_decoded += 1;
    stats.cpu_copied_bytes += len as u64;
    stats.frame_mappings += 1;
    pool.push(image.clone());
    let pts = pending.pop().map(|Reverse(p)| p).unwrap_or_default();
    VideoFrame {
        dmabuf: None,
        image: Some(image),
        visible: (w as u32, h as u32),
        pts,
        decoded_at: Instant::now(),
        hold: Arc::new(FrameToken { buffer: Arc::new(()), waker: None }),
    }
}
