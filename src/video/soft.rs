//! The software fallback where no V4L2 decoder exists (developer laptops, nested testing, CI):
//! OpenH264 decodes on the decoding thread. Where the display can scan pictures out (DRM) each
//! picture is written once as NV12 into a dmabuf made from memory (/dev/udmabuf) that a plane
//! shows; elsewhere it is converted to RGBA in memory and composited. Either way this path copies
//! every picture, and says so: `cpu_copied_bytes` and `frame_mappings` count it, and the status
//! names it.

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
    /// NV12 dmabufs for the pictures, when the display can scan them out.
    nv12: Option<super::nv12_pool::Nv12Pool>,
    /// Presentation times of pictures sent and not yet output (OpenH264 outputs in
    /// presentation order, so the smallest is the next one's).
    pending: BinaryHeap<Reverse<Duration>>,
    pool: Vec<Arc<Vec<u8>>>,
    pub stats: VideoStats,
}

impl SoftwareDecoder {
    /// With `dmabufs`, pictures go into NV12 dmabufs (if /dev/udmabuf can make them).
    pub fn new(dmabufs: bool) -> Result<Self, VideoError> {
        let decoder = open_openh264()?;
        let nv12 = if dmabufs {
            match super::nv12_pool::Nv12Pool::open() {
                Ok(pool) => Some(pool),
                Err(err) => {
                    tracing::info!(target: "video", %err, "no dmabufs from memory: pictures are composited from RGBA");
                    None
                }
            }
        } else {
            None
        };
        Ok(Self { decoder, nv12, pending: BinaryHeap::new(), pool: Vec::new(), stats: VideoStats::default() })
    }

    pub fn name(&self) -> String {
        if self.nv12.is_some() {
            "software (OpenH264, pictures copied into NV12 dmabufs)".into()
        } else {
            "software (OpenH264, pictures copied to memory)".into()
        }
    }

    /// Decode one access unit; returns the picture that became ready, if any.
    pub fn decode(&mut self, au: &[u8], pts: Duration) -> Result<Option<VideoFrame>, VideoError> {
        self.pending.push(Reverse(pts));
        self.stats.bitstream_bytes += au.len() as u64;
        let Self { decoder, nv12, pending, pool, stats } = self;
        match decoder.decode(au) {
            Ok(Some(yuv)) => Ok(Some(picture(&yuv, nv12, pending, pool, stats))),
            Ok(None) => Ok(None),
            Err(e) => {
                pending.pop();
                Err(VideoError::Stream(format!("OpenH264: {e}")))
            }
        }
    }

    /// Everything still inside the decoder (end of a clip).
    pub fn drain(&mut self) -> Vec<VideoFrame> {
        let Self { decoder, nv12, pending, pool, stats } = self;
        let frames = match decoder.flush_remaining() {
            Ok(frames) => frames.iter().map(|yuv| picture(yuv, nv12, pending, pool, stats)).collect(),
            Err(e) => {
                tracing::warn!(target: "video", %e, "OpenH264 flush failed");
                Vec::new()
            }
        };
        pending.clear();
        // A flushed OpenH264 decoder has ended its stream: it refuses the next clip's pictures
        // ("no parameter sets") although they carry them. The next clip gets a fresh one.
        match open_openh264() {
            Ok(fresh) => *decoder = fresh,
            Err(e) => tracing::error!(target: "video", %e, "cannot reopen the software decoder after a clip"),
        }
        frames
    }
}

fn open_openh264() -> Result<Decoder, VideoError> {
    let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
    Decoder::with_api_config(OpenH264API::from_source(), config)
        .map_err(|e| VideoError::Decoder(format!("OpenH264: {e}")))
}

/// Copy a decoded picture into an NV12 dmabuf, or else convert it into a pooled RGBA image
/// (the copy this path is counted for).
fn picture(
    yuv: &DecodedYUV<'_>,
    nv12: &mut Option<super::nv12_pool::Nv12Pool>,
    pending: &mut BinaryHeap<Reverse<Duration>>,
    pool: &mut Vec<Arc<Vec<u8>>>,
    stats: &mut VideoStats,
) -> VideoFrame {
    let (w, h) = yuv.dimensions();
    if let Some(nv12_pool) = nv12 {
        let size = (w as u32, h as u32);
        match nv12_pool.write(size, [yuv.y(), yuv.u(), yuv.v()], yuv.strides()) {
            Ok(written) => {
                stats.frames_decoded += 1;
                stats.cpu_copied_bytes += super::nv12_pool::Nv12Pool::picture_bytes(size);
                if written.new_buffer {
                    // Mapped once, for as long as the buffer lives.
                    stats.frame_mappings += 1;
                    stats.dmabufs_exported += 1;
                }
                let pts = pending.pop().map(|Reverse(p)| p).unwrap_or_default();
                return VideoFrame {
                    dmabuf: Some(written.dmabuf),
                    image: None,
                    visible: size,
                    pts,
                    decoded_at: Instant::now(),
                    hold: Arc::new(FrameToken { buffer: written.token, waker: None }),
                    colour: crate::video::colour::Colour::conventional(size.1),
                };
            }
            Err(err) => {
                tracing::warn!(target: "video", %err, "no NV12 dmabuf for this picture: it is composited from RGBA");
            }
        }
    }
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
        colour: crate::video::colour::Colour::conventional(h as u32),
    }
}
