//! The two queues of a V4L2 memory-to-memory decoder, as vitrine's decoders use them: bitstream
//! (OUTPUT) buffers mapped once and written by the CPU, picture (CAPTURE) buffers exported once
//! as NV12 dmabufs. Multi-planar drivers (hantro, visl) and single-planar ones (vicodec by
//! default) are both handled; a picture's identity travels in the buffer timestamp.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};

use smithay::backend::allocator::dmabuf::{Dmabuf, DmabufFlags};
use smithay::backend::allocator::{Fourcc, Modifier};
use v4l2r::bindings;
use v4l2r::ioctl as v;
use v4l2r::memory::MemoryType;
use v4l2r::QueueType;

use super::ioctl;

/// Which queue types a device uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queues {
    pub output: QueueType,
    pub capture: QueueType,
    pub mplane: bool,
}

impl Queues {
    pub fn new(mplane: bool) -> Queues {
        if mplane {
            Queues { output: QueueType::VideoOutputMplane, capture: QueueType::VideoCaptureMplane, mplane }
        } else {
            Queues { output: QueueType::VideoOutput, capture: QueueType::VideoCapture, mplane }
        }
    }
}

/// A bitstream buffer, mapped for the life of the decoder configuration.
pub struct OutputBuffer {
    map: *mut u8,
    pub len: usize,
    pub busy: bool,
}

// SAFETY: the mapping is only touched through `&mut` of the decoder that owns it, by one thread
// at a time.
unsafe impl Send for OutputBuffer {}

impl OutputBuffer {
    /// Copy `data` into the buffer.
    pub fn write(&mut self, data: &[u8]) -> Result<(), String> {
        if data.len() > self.len {
            return Err(format!("{} bytes do not fit the {}-byte bitstream buffer", data.len(), self.len));
        }
        // SAFETY: `map` is a live mapping of `len` bytes and data.len() <= len.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.map, data.len()) };
        Ok(())
    }
}

/// Unmap bitstream buffers.
pub fn unmap(outputs: &mut Vec<OutputBuffer>) {
    for o in outputs.drain(..) {
        // SAFETY: unmapping what `alloc_outputs` mapped.
        unsafe { libc::munmap(o.map as *mut libc::c_void, o.len) };
    }
}

/// A v4l2_buffer for `queue`, with room for its planes in `planes`.
fn buffer(q: &Queues, queue: QueueType, index: u32, planes: &mut [bindings::v4l2_plane; 2]) -> bindings::v4l2_buffer {
    let mut buf =
        bindings::v4l2_buffer { index, type_: queue as u32, memory: MemoryType::Mmap as u32, ..Default::default() };
    if q.mplane {
        buf.length = if queue == q.output { 1 } else { 2 };
        buf.m.planes = planes.as_mut_ptr();
    }
    buf
}

/// Request `count` bitstream buffers and map each of them. Also returns the queue's
/// `V4L2_BUF_CAP_*` capabilities.
pub fn alloc_outputs(video: &File, q: &Queues, count: usize) -> Result<(Vec<OutputBuffer>, u32), String> {
    let granted: bindings::v4l2_requestbuffers =
        v::reqbufs(video, q.output, MemoryType::Mmap, count as u32, v::MemoryConsistency::empty())
            .map_err(|e| format!("REQBUFS OUTPUT: {e}"))?;
    let n = granted.count as usize;
    let mut out = Vec::new();
    for index in 0..n {
        let mut planes = [bindings::v4l2_plane::default(); 2];
        let mut buf = buffer(q, q.output, index as u32, &mut planes);
        // SAFETY: VIDIOC_QUERYBUF takes a v4l2_buffer (whose planes, when multi-planar, point at
        // `planes`).
        if let Err(e) = unsafe { ioctl(video, super::VIDIOC_QUERYBUF, &mut buf) } {
            unmap(&mut out);
            return Err(format!("QUERYBUF: {e}"));
        }
        // SAFETY: reading the union member the driver filled for this queue type.
        let (len, offset) = unsafe {
            if q.mplane {
                (planes[0].length as usize, planes[0].m.mem_offset)
            } else {
                (buf.length as usize, buf.m.offset)
            }
        };
        // SAFETY: mapping the buffer the driver just described; unmapped by `unmap`.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                video.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if map == libc::MAP_FAILED {
            unmap(&mut out);
            return Err(format!("mmap of bitstream buffer: {}", std::io::Error::last_os_error()));
        }
        out.push(OutputBuffer { map: map as *mut u8, len, busy: false });
    }
    Ok((out, granted.capabilities))
}

fn id_timestamp(id: u64) -> bindings::timeval {
    bindings::timeval { tv_sec: (id / 1_000_000) as _, tv_usec: (id % 1_000_000) as _ }
}

/// Queue bitstream buffer `index` holding `bytes` bytes of picture `id` (in a media request, for
/// stateless decoders), with extra `V4L2_BUF_FLAG_*` `flags`.
pub fn queue_output(
    video: &File,
    q: &Queues,
    index: usize,
    bytes: usize,
    id: u64,
    request: Option<i32>,
    flags: u32,
) -> std::io::Result<()> {
    let mut planes = [bindings::v4l2_plane { bytesused: bytes as u32, ..Default::default() }; 2];
    let mut buf = buffer(q, q.output, index as u32, &mut planes);
    buf.timestamp = id_timestamp(id);
    buf.flags |= flags;
    if !q.mplane {
        buf.bytesused = bytes as u32;
    }
    if let Some(fd) = request {
        buf.flags |= bindings::V4L2_BUF_FLAG_REQUEST_FD;
        buf.__bindgen_anon_1.request_fd = fd;
    }
    // SAFETY: as in `alloc_outputs`.
    unsafe { ioctl(video, super::VIDIOC_QBUF, &mut buf) }
}

/// Queue picture buffer `index`.
pub fn queue_capture(video: &File, q: &Queues, index: usize) -> std::io::Result<()> {
    let mut planes = [bindings::v4l2_plane::default(); 2];
    let mut buf = buffer(q, q.capture, index as u32, &mut planes);
    // SAFETY: as in `alloc_outputs`.
    unsafe { ioctl(video, super::VIDIOC_QBUF, &mut buf) }
}

/// A buffer back from the driver.
#[derive(Debug, Clone, Copy)]
pub struct Dequeued {
    pub index: usize,
    /// The picture id from the timestamp.
    pub id: u64,
    pub flags: u32,
    pub bytesused: u32,
}

impl Dequeued {
    pub fn error(&self) -> bool {
        self.flags & bindings::V4L2_BUF_FLAG_ERROR != 0
    }

    pub fn last(&self) -> bool {
        self.flags & bindings::V4L2_BUF_FLAG_LAST != 0
    }
}

/// Take a finished buffer off `queue` (never blocks: the device is non-blocking).
pub fn dequeue(video: &File, q: &Queues, queue: QueueType) -> std::io::Result<Dequeued> {
    let mut planes = [bindings::v4l2_plane::default(); 2];
    let mut buf = buffer(q, queue, 0, &mut planes);
    // SAFETY: as in `alloc_outputs`.
    unsafe { ioctl(video, super::VIDIOC_DQBUF, &mut buf) }?;
    let bytesused = if q.mplane { planes[0].bytesused } else { buf.bytesused };
    Ok(Dequeued {
        index: buf.index as usize,
        id: buf.timestamp.tv_sec as u64 * 1_000_000 + buf.timestamp.tv_usec as u64,
        flags: buf.flags,
        bytesused,
    })
}

/// The CAPTURE format: coded size and per-plane pitches.
#[derive(Debug, Clone, Copy)]
pub struct CaptureFormat {
    pub width: u32,
    pub height: u32,
    /// 1 for NV12 in one buffer, 2 for NV12M (separate luma and chroma buffers).
    pub planes: u32,
    pub pitches: [u32; 2],
}

/// Read the CAPTURE format the driver has set.
pub fn capture_format(video: &File, q: &Queues) -> std::io::Result<(bindings::v4l2_format, CaptureFormat)> {
    let mut fmt = bindings::v4l2_format { type_: q.capture as u32, ..Default::default() };
    // SAFETY: VIDIOC_G_FMT takes a v4l2_format.
    unsafe { ioctl(video, super::VIDIOC_G_FMT, &mut fmt) }?;
    Ok((fmt, describe_capture(&fmt, q)))
}

/// The coded size and pitches of a CAPTURE v4l2_format.
pub fn describe_capture(fmt: &bindings::v4l2_format, q: &Queues) -> CaptureFormat {
    // SAFETY: reading the union member of this queue type.
    unsafe {
        if q.mplane {
            let mp = &fmt.fmt.pix_mp;
            CaptureFormat {
                width: mp.width,
                height: mp.height,
                planes: (mp.num_planes as u32).clamp(1, 2),
                pitches: [mp.plane_fmt[0].bytesperline, mp.plane_fmt[1].bytesperline],
            }
        } else {
            let p = &fmt.fmt.pix;
            CaptureFormat { width: p.width, height: p.height, planes: 1, pitches: [p.bytesperline, p.bytesperline] }
        }
    }
}

/// Request picture buffers and export each once as an NV12 dmabuf. Fewer than `min` is an error.
pub fn export_captures(
    video: &File,
    q: &Queues,
    format: &CaptureFormat,
    count: usize,
    min: usize,
) -> Result<Vec<Dmabuf>, String> {
    let n: usize = v::reqbufs(video, q.capture, MemoryType::Mmap, count as u32, v::MemoryConsistency::empty())
        .map_err(|e| format!("REQBUFS CAPTURE: {e}"))?;
    if n < min {
        return Err(format!("the device gives {n} capture buffers, the stream needs {min}"));
    }
    let export = |index: usize, plane: usize| -> Result<OwnedFd, String> {
        v::expbuf(video, q.capture, index, plane, v::ExpbufFlags::RDWR | v::ExpbufFlags::CLOEXEC)
            .map_err(|e| format!("EXPBUF: {e}"))
    };
    let mut out = Vec::new();
    for index in 0..n {
        let mut builder = Dmabuf::builder(
            (format.width as i32, format.height as i32),
            Fourcc::Nv12,
            Modifier::Linear,
            DmabufFlags::empty(),
        );
        if format.planes >= 2 {
            for plane in 0..2 {
                builder.add_plane(export(index, plane)?, plane as u32, 0, format.pitches[plane]);
            }
        } else {
            // One buffer: chroma right after the luma of the coded height.
            let fd = export(index, 0)?;
            let dup = fd.try_clone().map_err(|e| format!("dup: {e}"))?;
            builder.add_plane(fd, 0, 0, format.pitches[0]);
            builder.add_plane(dup, 1, format.pitches[0] * format.height, format.pitches[0]);
        }
        out.push(builder.build().ok_or("cannot describe the capture dmabuf")?);
    }
    Ok(out)
}
