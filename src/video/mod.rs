//! The video pipeline: files are demuxed into H.264 access units, decoded by a V4L2 stateless
//! decoder into NV12 dmabufs, and the player shows each picture at its time as a scene layer
//! (on a plane where the display allows it).

pub mod colour;
pub mod convert;
pub mod decode;
pub mod demux;
pub mod h264;
pub mod nv12_pool;
pub mod player;
pub mod soft;
pub mod v4l2;
pub mod worker;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use smithay::backend::allocator::dmabuf::Dmabuf;

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error(transparent)]
    Demux(#[from] demux::DemuxError),
    #[error("{0}")]
    NoDecoder(String),
    #[error("decoder {0}")]
    Decoder(String),
    #[error("stream: {0}")]
    Stream(String),
}

/// Wakes the compositor's loop for the player, and only when the player asked for it: it ran
/// out of pictures to show or of units to decode. A decoding or reading thread that produces
/// while the player has plenty costs the loop no wake-up; the player collects at its next
/// repaint.
#[derive(Clone)]
pub struct LoopWaker {
    ping: smithay::reexports::calloop::ping::Ping,
    wanted: Arc<std::sync::atomic::AtomicBool>,
}

impl LoopWaker {
    /// The waker and its event source (inserted by `watch_player`).
    pub fn new() -> std::io::Result<(LoopWaker, smithay::reexports::calloop::ping::PingSource)> {
        let (ping, source) = smithay::reexports::calloop::ping::make_ping()?;
        Ok((LoopWaker { ping, wanted: Default::default() }, source))
    }

    /// The player is about to look for new work: a producer that delivers from now on wakes it.
    pub fn want(&self) {
        self.wanted.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The player has what it needs until its next repaint.
    pub fn unwant(&self) {
        self.wanted.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Called by producers after each delivery.
    pub fn wake(&self) {
        if self.wanted.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.ping.ping();
        }
    }
}

/// DMA_BUF_IOCTL_SYNC flags: CPU access to a dmabuf is bracketed by START and END, so caches are
/// kept right on SoCs where the CPU and the devices do not share them.
pub(crate) const DMA_BUF_SYNC_READ: u64 = 1;
pub(crate) const DMA_BUF_SYNC_WRITE: u64 = 2;
pub(crate) const DMA_BUF_SYNC_START: u64 = 0;
pub(crate) const DMA_BUF_SYNC_END: u64 = 4;

/// DMA_BUF_IOCTL_SYNC (_IOW('b', 0, struct dma_buf_sync)) on a dmabuf fd; failures are ignored
/// (the access itself still works, only cache upkeep is at stake).
pub(crate) fn dmabuf_sync(fd: std::os::fd::RawFd, flags: u64) {
    const DMA_BUF_IOCTL_SYNC: libc::c_ulong = 0x4008_6200;
    // SAFETY: the ioctl reads one u64 of flags.
    unsafe { libc::ioctl(fd, DMA_BUF_IOCTL_SYNC, &flags) };
}

/// One decoded picture, as the scene shows it. Clones share the picture; the decoder reuses its
/// buffer only when every clone is gone.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    /// The picture as a dmabuf (NV12, linear), when it lives in one.
    pub dmabuf: Option<Dmabuf>,
    /// The picture in memory (XRGB8888 rows, `visible.0 * 4` bytes each), when it does not.
    pub image: Option<Arc<Vec<u8>>>,
    /// The part of the buffer that is picture (1920x1080 of a 1920x1088 coded frame).
    pub visible: (u32, u32),
    pub pts: Duration,
    pub decoded_at: Instant,
    pub hold: Arc<FrameToken>,
    /// Its matrix and range, as its stream says (the player sets it for the item the picture
    /// belongs to; until then the convention for its height).
    pub colour: colour::Colour,
}

impl VideoFrame {
    /// A decoded picture in a decoder's buffer: the buffer stays out of the decoder while the
    /// frame (or a clone) lives; `waker` is written to when the last one goes.
    pub fn in_buffer(
        dmabuf: &Dmabuf,
        buffer: &Arc<()>,
        waker: Option<&UnixStream>,
        visible: (u32, u32),
        pts: Duration,
    ) -> VideoFrame {
        VideoFrame {
            dmabuf: Some(dmabuf.clone()),
            image: None,
            visible,
            pts,
            decoded_at: Instant::now(),
            hold: Arc::new(FrameToken { buffer: buffer.clone(), waker: waker.and_then(|w| w.try_clone().ok()) }),
            colour: colour::Colour::conventional(visible.1),
        }
    }

    /// Whether two frames are the same picture.
    pub fn same(&self, other: &VideoFrame) -> bool {
        Arc::ptr_eq(&self.hold, &other.hold)
    }
}

/// Keeps a decoder buffer out of the decoder while a frame made from it exists; when the last
/// clone of the frame goes, the decoder's thread is woken to queue the buffer again.
#[derive(Debug)]
pub struct FrameToken {
    pub buffer: Arc<()>,
    pub waker: Option<UnixStream>,
}

impl Drop for FrameToken {
    fn drop(&mut self) {
        if let Some(w) = &mut self.waker {
            let _ = w.write(&[1]);
        }
    }
}

/// The zero-copy audit: what the video path did, counted where it happens.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct VideoStats {
    pub frames_decoded: u64,
    pub frames_presented: u64,
    pub frames_dropped: u64,
    /// Of those, pictures dropped while the loop thread had waited for a CPU for a refresh or
    /// more since the picture before (the kernel's run delay): the machine held the loop back.
    pub frames_dropped_starved: u64,
    pub frames_composited: u64,
    /// Pictures whose frame reached the screen a vblank or more after the one it was made for
    /// (the repaint and its commit overran the time left before that vblank).
    pub vblanks_missed: u64,
    pub decode_errors: u64,
    pub dmabufs_exported: u64,
    pub framebuffers_created: u64,
    /// Bytes of decoded pictures copied by the CPU (0 on the V4L2 + plane path).
    pub cpu_copied_bytes: u64,
    /// CPU mappings made of decoded picture buffers (0 on the V4L2 path).
    pub frame_mappings: u64,
    /// Compressed bytes written into the decoder's bitstream buffers.
    pub bitstream_bytes: u64,
    pub v4l2_ioctls: u64,
    /// The video ladder: decoders that failed, stalled or vanished; of those, reopened, and
    /// replaced by software decoding; access units passed over to reach a keyframe after one.
    pub decoder_failures: u64,
    pub decoder_resets: u64,
    pub software_fallbacks: u64,
    pub units_skipped_to_keyframe: u64,
    /// Times the clock waited for an item's first picture (or the first after a reset) instead
    /// of dropping late pictures, and for how long in all.
    pub clock_holds: u64,
    /// Timestamps that jumped more than 10 s ahead of the picture before, re-based to follow it.
    pub timestamps_rebased: u64,
    pub clock_held_ms: u64,
    /// Times the video froze with the ladder run out (every item failed in every decoder, or
    /// none could be started): the systemd watchdog was held back each time.
    pub video_frozen: u64,
}

impl VideoStats {
    /// Add a retired decoder's counters (the ones a decoder keeps) to these.
    pub fn add(&mut self, other: &VideoStats) {
        self.frames_decoded += other.frames_decoded;
        self.decode_errors += other.decode_errors;
        self.dmabufs_exported += other.dmabufs_exported;
        self.bitstream_bytes += other.bitstream_bytes;
        self.v4l2_ioctls += other.v4l2_ioctls;
        self.cpu_copied_bytes += other.cpu_copied_bytes;
        self.frame_mappings += other.frame_mappings;
    }
}
