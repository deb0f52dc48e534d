//! A V4L2 stateful decoder (the Raspberry Pi / Venus / vicodec class): the driver parses the
//! bitstream itself. vitrine queues whole coded pictures into MMAP OUTPUT buffers; the driver
//! tells the picture size with a SOURCE_CHANGE event, vitrine then sets NV12 on the CAPTURE queue
//! and exports its buffers once as dmabufs. A new size mid-stream repeats that; a drain
//! (DECODER_CMD STOP) ends with a buffer flagged LAST, after which START resumes decoding.
//!
//! Nothing blocks, like the stateless decoder: `submit`, `pump`, `take_frame`. Pictures come out
//! of a stateful decoder in display order already.

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use smithay::backend::allocator::dmabuf::Dmabuf;
use v4l2r::bindings;
use v4l2r::ioctl as v;

use super::queues::{self, OutputBuffer, Queues};
use super::{ioctl, DecoderNode, PIX_FMT_NV12};
use crate::video::{VideoError, VideoFrame, VideoStats};

const OUTPUT_BUFFERS: usize = 4;
/// CAPTURE buffers beyond what the driver needs: waiting for display, on screen, flipping to.
const CAPTURE_SLACK: usize = 4;
/// Room for one coded picture in a bitstream buffer.
const OUTPUT_SIZE: u32 = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CaptureState {
    Free,
    Queued,
    Decoded { id: u64 },
}

struct Capture {
    dmabuf: Dmabuf,
    state: CaptureState,
    /// Frames handed out hold a clone; while one exists the buffer stays out of the driver.
    hold: Arc<()>,
}

pub struct StatefulDecoder {
    node: DecoderNode,
    video: File,
    q: Queues,
    outputs: Vec<OutputBuffer>,
    output_streaming: bool,
    captures: Vec<Capture>,
    visible: (u32, u32),
    next_id: u64,
    /// Pictures submitted and not yet handed out: id and pts, in decode (= display) order.
    submitted: VecDeque<(u64, Duration)>,
    /// Decoded pictures waiting to be handed out: capture index and id.
    decoded: VecDeque<(usize, u64)>,
    /// A drain was asked for and its LAST buffer has not come back yet.
    draining: bool,
    fresh: Vec<Dmabuf>,
    waker: Option<std::os::unix::net::UnixStream>,
    pub stats: VideoStats,
}

fn err(node: &DecoderNode, what: impl std::fmt::Display) -> VideoError {
    VideoError::Decoder(format!("{} ({}): {what}", node.video.display(), node.driver))
}

impl StatefulDecoder {
    /// Open the first of `nodes` for a stream in `coded` (a fourcc such as H264 or FWHT).
    pub fn open(nodes: &[DecoderNode], coded: u32) -> Result<Self, VideoError> {
        let node = nodes.first().cloned().ok_or_else(|| VideoError::NoDecoder("no stateful V4L2 decoder".into()))?;
        let video = super::open_rw(&node.video).map_err(|e| err(&node, format!("open: {e}")))?;
        let q = Queues::new(node.mplane);
        for event in [v::EventType::SourceChange(0), v::EventType::Eos] {
            v::subscribe_event(&video, event, v::SubscribeEventFlags::empty())
                .map_err(|e| err(&node, format!("VIDIOC_SUBSCRIBE_EVENT: {e}")))?;
        }
        let mut fmt = bindings::v4l2_format { type_: q.output as u32, ..Default::default() };
        // SAFETY: writing the union member of this queue type.
        unsafe {
            if q.mplane {
                let mp = &mut fmt.fmt.pix_mp;
                (mp.pixelformat, mp.width, mp.height, mp.num_planes) = (coded, 1920, 1080, 1);
                mp.plane_fmt[0].sizeimage = OUTPUT_SIZE;
            } else {
                let p = &mut fmt.fmt.pix;
                (p.pixelformat, p.width, p.height, p.sizeimage) = (coded, 1920, 1080, OUTPUT_SIZE);
            }
        }
        // SAFETY: VIDIOC_S_FMT takes a v4l2_format.
        unsafe { ioctl(&video, super::VIDIOC_S_FMT, &mut fmt) }
            .map_err(|e| err(&node, format!("S_FMT OUTPUT: {e}")))?;
        let (outputs, _) = queues::alloc_outputs(&video, &q, OUTPUT_BUFFERS).map_err(|e| err(&node, e))?;
        Ok(StatefulDecoder {
            node,
            video,
            q,
            outputs,
            output_streaming: false,
            captures: Vec::new(),
            visible: (0, 0),
            next_id: 1,
            submitted: VecDeque::new(),
            decoded: VecDeque::new(),
            draining: false,
            fresh: Vec::new(),
            waker: None,
            stats: VideoStats { v4l2_ioctls: 4 + 2 * OUTPUT_BUFFERS as u64, ..Default::default() },
        })
    }

    pub fn name(&self) -> String {
        format!("v4l2-stateful {} ({})", self.node.driver, self.node.video.display())
    }

    /// Queue one coded picture. `Ok(false)`: no bitstream buffer is free (or a drain is still
    /// running); try again after `pump`.
    pub fn submit(&mut self, data: &[u8], pts: Duration) -> Result<bool, VideoError> {
        if self.draining {
            return Ok(false);
        }
        let Some(slot) = self.outputs.iter().position(|o| !o.busy) else { return Ok(false) };
        self.outputs[slot].write(data).map_err(VideoError::Stream)?;
        let id = self.next_id;
        self.next_id += 1;
        queues::queue_output(&self.video, &self.q, slot, data.len(), id, None, 0)
            .map_err(|e| err(&self.node, format!("QBUF OUTPUT: {e}")))?;
        self.outputs[slot].busy = true;
        self.stats.bitstream_bytes += data.len() as u64;
        self.stats.v4l2_ioctls += 1;
        if !self.output_streaming {
            v::streamon(&self.video, self.q.output).map_err(|e| err(&self.node, format!("STREAMON OUTPUT: {e}")))?;
            self.output_streaming = true;
            self.stats.v4l2_ioctls += 1;
        }
        self.submitted.push_back((id, pts));
        Ok(true)
    }

    /// End of a clip: the driver decodes what it holds and marks the last picture.
    pub fn drain(&mut self) {
        if !self.output_streaming || self.draining {
            return;
        }
        self.stats.v4l2_ioctls += 1;
        match v::decoder_cmd::<_, ()>(&self.video, v::DecoderCmd::stop()) {
            Ok(()) => self.draining = true,
            // A driver without the command decodes every complete picture anyway.
            Err(e) => tracing::debug!(target: "video", %e, "DECODER_CMD STOP not supported: no drain"),
        }
    }

    /// The picture size changed (or is first known): CAPTURE is set up again for it.
    fn reconfigure(&mut self) -> Result<(), VideoError> {
        let node = self.node.clone();
        if !self.captures.is_empty() {
            let _ = v::streamoff(&self.video, self.q.capture);
            self.captures.clear();
            self.decoded.clear();
            let _ = v::reqbufs::<()>(
                &self.video,
                self.q.capture,
                v4l2r::memory::MemoryType::Mmap,
                0,
                v::MemoryConsistency::empty(),
            );
            self.stats.v4l2_ioctls += 2;
        }
        let (mut fmt, _) =
            queues::capture_format(&self.video, &self.q).map_err(|e| err(&node, format!("G_FMT CAPTURE: {e}")))?;
        // Keep the coded size the driver chose; ask for NV12, which planes scan out.
        if self.q.mplane {
            fmt.fmt.pix_mp.pixelformat = PIX_FMT_NV12;
        } else {
            fmt.fmt.pix.pixelformat = PIX_FMT_NV12;
        }
        // SAFETY: VIDIOC_S_FMT takes a v4l2_format.
        unsafe { ioctl(&self.video, super::VIDIOC_S_FMT, &mut fmt) }
            .map_err(|e| err(&node, format!("S_FMT CAPTURE: {e}")))?;
        // SAFETY: reading the union member of this queue type.
        let got = unsafe {
            if self.q.mplane {
                fmt.fmt.pix_mp.pixelformat
            } else {
                fmt.fmt.pix.pixelformat
            }
        };
        if got != PIX_FMT_NV12 {
            return Err(err(
                &node,
                format!("the decoder offers {} pictures, not NV12 (which planes scan out)", crate::fourcc::name(got)),
            ));
        }
        let format = queues::describe_capture(&fmt, &self.q);
        let visible =
            v::g_selection::<bindings::v4l2_rect>(&self.video, v::SelectionType::Capture, v::SelectionTarget::Compose)
                .map(|r| (r.width, r.height))
                .unwrap_or((format.width, format.height));
        let min = v::g_ctrl(&self.video, bindings::V4L2_CID_MIN_BUFFERS_FOR_CAPTURE).unwrap_or(2).max(1) as usize;
        let dmabufs = queues::export_captures(&self.video, &self.q, &format, min + CAPTURE_SLACK, min + 1)
            .map_err(|e| err(&node, e))?;
        self.stats.v4l2_ioctls += 5 + dmabufs.len() as u64;
        self.stats.dmabufs_exported += dmabufs.len() as u64;
        self.fresh.extend(dmabufs.iter().cloned());
        self.captures = dmabufs
            .into_iter()
            .map(|dmabuf| Capture { dmabuf, state: CaptureState::Free, hold: Arc::new(()) })
            .collect();
        self.visible = visible;
        self.queue_free_captures()?;
        v::streamon(&self.video, self.q.capture).map_err(|e| err(&node, format!("STREAMON CAPTURE: {e}")))?;
        self.stats.v4l2_ioctls += 1;
        tracing::info!(
            target: "video",
            decoder = %self.name(),
            coded = ?(format.width, format.height),
            visible = ?visible,
            capture_buffers = self.captures.len(),
            "stateful decoder configured: NV12 capture buffers exported as dmabufs"
        );
        Ok(())
    }

    fn queue_free_captures(&mut self) -> Result<(), VideoError> {
        for i in 0..self.captures.len() {
            let c = &self.captures[i];
            let reusable = match c.state {
                CaptureState::Free => true,
                CaptureState::Decoded { id } => {
                    Arc::strong_count(&c.hold) == 1 && !self.decoded.iter().any(|d| d.1 == id)
                }
                CaptureState::Queued => false,
            };
            if !reusable {
                continue;
            }
            queues::queue_capture(&self.video, &self.q, i)
                .map_err(|e| err(&self.node, format!("QBUF CAPTURE {i}: {e}")))?;
            self.captures[i].state = CaptureState::Queued;
            self.stats.v4l2_ioctls += 1;
        }
        Ok(())
    }

    /// Collect what the driver finished and answer its events (never blocks).
    pub fn pump(&mut self) -> Result<(), VideoError> {
        while self.outputs.iter().any(|o| o.busy) {
            self.stats.v4l2_ioctls += 1;
            match queues::dequeue(&self.video, &self.q, self.q.output) {
                Ok(d) => {
                    if let Some(o) = self.outputs.get_mut(d.index) {
                        o.busy = false;
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break,
                Err(e) => return Err(err(&self.node, format!("DQBUF OUTPUT: {e}"))),
            }
        }
        let mut size_changed = false;
        loop {
            match v::dqevent::<bindings::v4l2_event>(&self.video) {
                Ok(event) if event.type_ == bindings::V4L2_EVENT_SOURCE_CHANGE => size_changed = true,
                Ok(_) => {}
                Err(_) => break,
            }
            self.stats.v4l2_ioctls += 1;
        }
        // Pictures decoded before a size change are still valid: take them first.
        self.dequeue_captures()?;
        if size_changed {
            self.reconfigure()?;
        }
        self.queue_free_captures()
    }

    fn dequeue_captures(&mut self) -> Result<(), VideoError> {
        while self.captures.iter().any(|c| c.state == CaptureState::Queued) {
            self.stats.v4l2_ioctls += 1;
            match queues::dequeue(&self.video, &self.q, self.q.capture) {
                Ok(d) => {
                    let Some(c) = self.captures.get_mut(d.index) else { continue };
                    if d.bytesused > 0 {
                        if d.error() {
                            self.stats.decode_errors += 1;
                            tracing::warn!(target: "video", picture = d.id, "the decoder flagged a picture as corrupt");
                        }
                        c.state = CaptureState::Decoded { id: d.id };
                        self.decoded.push_back((d.index, d.id));
                        self.stats.frames_decoded += 1;
                    } else {
                        c.state = CaptureState::Free;
                    }
                    if d.last() && self.draining {
                        // The drain is complete: decoding resumes for the next clip.
                        self.draining = false;
                        self.stats.v4l2_ioctls += 1;
                        if let Err(e) = v::decoder_cmd::<_, ()>(&self.video, v::DecoderCmd::start()) {
                            tracing::debug!(target: "video", %e, "DECODER_CMD START after the drain");
                            let _ = v::streamoff(&self.video, self.q.capture);
                            let _ = v::streamon(&self.video, self.q.capture);
                            for c in &mut self.captures {
                                if c.state == CaptureState::Queued {
                                    c.state = CaptureState::Free;
                                }
                            }
                        }
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break,
                // After LAST, until the decoder is restarted or reconfigured.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => break,
                Err(e) => return Err(err(&self.node, format!("DQBUF CAPTURE: {e}"))),
            }
        }
        Ok(())
    }

    /// The next decoded picture.
    pub fn take_frame(&mut self) -> Option<VideoFrame> {
        let (index, id) = self.decoded.pop_front()?;
        // Pictures the driver dropped (never decoded) are forgotten with the ones before this.
        let mut pts = Duration::ZERO;
        while let Some((sid, spts)) = self.submitted.pop_front() {
            if sid == id {
                pts = spts;
                break;
            }
        }
        let c = &self.captures[index];
        Some(VideoFrame::in_buffer(&c.dmabuf, &c.hold, self.waker.as_ref(), self.visible, pts))
    }

    pub fn set_waker(&mut self, waker: std::os::unix::net::UnixStream) {
        self.waker = Some(waker);
    }

    pub fn take_new_buffers(&mut self) -> Vec<Dmabuf> {
        std::mem::take(&mut self.fresh)
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.video.as_fd()
    }

    /// Whether the driver has work to finish (or an event to send): bitstream queued, pictures
    /// submitted that it has not handed back, a drain, a capture queue it has still to size.
    pub fn busy(&self) -> bool {
        self.outputs.iter().any(|o| o.busy)
            || self.draining
            || (self.output_streaming && self.captures.is_empty())
            || self.submitted.len() > self.decoded.len()
    }
}

impl Drop for StatefulDecoder {
    fn drop(&mut self) {
        let _ = v::streamoff(&self.video, self.q.output);
        let _ = v::streamoff(&self.video, self.q.capture);
        queues::unmap(&mut self.outputs);
    }
}
