//! V4L2 video decoders: finding them, and the few ioctls v4l2r has no plain-struct wrapper for.
//!
//! Structures come from v4l2r's bindings (generated from the kernel's uAPI headers); media
//! requests, extended controls, REQBUFS, EXPBUF, STREAMON and G_SELECTION go through v4l2r's
//! ioctl wrappers.

pub mod h264_controls;
pub mod queues;
pub mod stateful;
pub mod stateless;

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use v4l2r::bindings;
use v4l2r::QueueType;

pub use stateful::StatefulDecoder;
pub use stateless::StatelessDecoder;

use super::{VideoError, VideoFrame, VideoStats};
use smithay::backend::allocator::dmabuf::Dmabuf;

/// What the decoding thread needs of a V4L2 decoder, stateless or stateful. Nothing blocks.
pub trait HwDecoder: Send {
    fn name(&self) -> String;
    /// Written to when a frame handed out is released (wakes the decoding thread).
    fn set_waker(&mut self, waker: std::os::unix::net::UnixStream);
    /// Queue one access unit; `Ok(false)`: full, try again after `pump`.
    fn submit(&mut self, au: &[u8], pts: Duration) -> Result<bool, VideoError>;
    /// End of a clip: bring out every picture still held.
    fn drain(&mut self);
    /// Collect finished work (and answer driver events).
    fn pump(&mut self) -> Result<(), VideoError>;
    /// The next picture in display order.
    fn take_frame(&mut self) -> Option<VideoFrame>;
    /// Picture buffers exported since the last call.
    fn take_new_buffers(&mut self) -> Vec<Dmabuf>;
    fn stats(&self) -> VideoStats;
    /// The device, to wait on.
    fn fd(&self) -> BorrowedFd<'_>;
    /// Whether the driver has work to finish (only then is the device waited on).
    fn busy(&self) -> bool;
}

macro_rules! hw_decoder {
    ($t:ty) => {
        impl HwDecoder for $t {
            fn name(&self) -> String {
                <$t>::name(self)
            }
            fn set_waker(&mut self, waker: std::os::unix::net::UnixStream) {
                <$t>::set_waker(self, waker)
            }
            fn submit(&mut self, au: &[u8], pts: Duration) -> Result<bool, VideoError> {
                <$t>::submit(self, au, pts)
            }
            fn drain(&mut self) {
                <$t>::drain(self)
            }
            fn pump(&mut self) -> Result<(), VideoError> {
                <$t>::pump(self)
            }
            fn take_frame(&mut self) -> Option<VideoFrame> {
                <$t>::take_frame(self)
            }
            fn take_new_buffers(&mut self) -> Vec<Dmabuf> {
                <$t>::take_new_buffers(self)
            }
            fn stats(&self) -> VideoStats {
                self.stats.clone()
            }
            fn fd(&self) -> BorrowedFd<'_> {
                <$t>::fd(self)
            }
            fn busy(&self) -> bool {
                <$t>::busy(self)
            }
        }
    };
}
hw_decoder!(StatelessDecoder);
hw_decoder!(StatefulDecoder);

/// `_IOWR('V', nr, T)`.
const fn iowr<T>(nr: u32) -> libc::c_ulong {
    ((3u32 << 30) | ((std::mem::size_of::<T>() as u32) << 16) | ((b'V' as u32) << 8) | nr) as libc::c_ulong
}

pub(crate) const VIDIOC_G_FMT: libc::c_ulong = iowr::<bindings::v4l2_format>(4);
pub(crate) const VIDIOC_S_FMT: libc::c_ulong = iowr::<bindings::v4l2_format>(5);
pub(crate) const VIDIOC_QUERYBUF: libc::c_ulong = iowr::<bindings::v4l2_buffer>(9);
pub(crate) const VIDIOC_QBUF: libc::c_ulong = iowr::<bindings::v4l2_buffer>(15);
pub(crate) const VIDIOC_DQBUF: libc::c_ulong = iowr::<bindings::v4l2_buffer>(17);
pub(crate) const VIDIOC_QUERY_EXT_CTRL: libc::c_ulong = iowr::<bindings::v4l2_query_ext_ctrl>(103);

/// One ioctl on a V4L2 node with a plain structure; the errno on failure.
///
/// # Safety
/// `request` must be an ioctl whose argument is a `T`.
pub(crate) unsafe fn ioctl<T>(fd: &impl AsRawFd, request: libc::c_ulong, arg: &mut T) -> Result<(), std::io::Error> {
    loop {
        if libc::ioctl(fd.as_raw_fd(), request, arg as *mut T) >= 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

pub use crate::fourcc::fourcc;

pub const PIX_FMT_H264_SLICE: u32 = fourcc(b"S264");
pub const PIX_FMT_H264: u32 = fourcc(b"H264");
pub const PIX_FMT_FWHT: u32 = fourcc(b"FWHT");
pub const PIX_FMT_NV12: u32 = fourcc(b"NV12");

/// A video node and the media controller device its requests go through.
#[derive(Debug, Clone)]
pub struct DecoderNode {
    pub video: PathBuf,
    pub media: Option<PathBuf>,
    pub driver: String,
    pub card: String,
    /// Multi-planar queues (else single-planar).
    pub mplane: bool,
}

pub(crate) fn open_rw(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(path)
}

/// Whether a node's OUTPUT queue (of type `queue`) takes `fourcc`.
fn takes(file: &File, queue: QueueType, fourcc: u32) -> bool {
    (0..64)
        .map_while(|i| v4l2r::ioctl::enum_fmt::<bindings::v4l2_fmtdesc>(file, queue, i).ok())
        .any(|d| d.pixelformat == fourcc)
}

/// The media device of a video node, from sysfs (`/sys/class/video4linux/videoN/device/mediaM`).
fn media_of(video: &Path) -> Option<PathBuf> {
    let name = video.file_name()?.to_str()?;
    let dir = std::fs::read_dir(format!("/sys/class/video4linux/{name}/device")).ok()?;
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .find(|n| n.starts_with("media"))
        .map(|n| PathBuf::from("/dev").join(n))
}

/// Every memory-to-memory decoder whose OUTPUT queue takes `fourcc`, in node order.
/// `VITRINE_V4L2_DEVICE` names one node to use instead of scanning.
pub fn find_decoders(fourcc: u32) -> Vec<DecoderNode> {
    let mut nodes: Vec<PathBuf> = match std::env::var_os("VITRINE_V4L2_DEVICE") {
        Some(p) => vec![PathBuf::from(p)],
        None => std::fs::read_dir("/dev")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("video")))
                    .collect()
            })
            .unwrap_or_default(),
    };
    nodes.sort_by_key(|p| {
        p.file_name().and_then(|n| n.to_str()).and_then(|n| n.trim_start_matches("video").parse::<u32>().ok())
    });
    let mut out = Vec::new();
    for video in nodes {
        let Ok(file) = open_rw(&video) else { continue };
        let Ok(cap) = v4l2r::ioctl::querycap::<bindings::v4l2_capability>(&file) else { continue };
        let caps =
            if cap.capabilities & bindings::V4L2_CAP_DEVICE_CAPS != 0 { cap.device_caps } else { cap.capabilities };
        let mplane = caps & bindings::V4L2_CAP_VIDEO_M2M_MPLANE != 0;
        if !mplane && caps & bindings::V4L2_CAP_VIDEO_M2M == 0 {
            continue;
        }
        let queue = if mplane { QueueType::VideoOutputMplane } else { QueueType::VideoOutput };
        if !takes(&file, queue, fourcc) {
            continue;
        }
        let text = |b: &[u8]| String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap_or_default()).into_owned();
        out.push(DecoderNode {
            media: media_of(&video),
            video,
            driver: text(&cap.driver),
            card: text(&cap.card),
            mplane,
        });
    }
    out
}
