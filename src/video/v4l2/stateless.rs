//! A V4L2 stateless H.264 decoder (hantro, rkvdec, cedrus, visl, …): bitstream into MMAP OUTPUT
//! buffers, one media request per picture (frame-based) or per slice (slice-based) carrying the
//! controls `h264_controls` builds, decoded NV12 pictures in CAPTURE buffers exported once as
//! dmabufs.
//!
//! Nothing here blocks: `submit` queues a picture when an OUTPUT buffer and a CAPTURE buffer are
//! free, `pump` collects what the driver finished, and `take_frame` hands pictures out in display
//! order. A CAPTURE buffer is queued again only when the DPB no longer needs it and no one holds
//! the frame made from it (the display keeps it until the next flip has completed).

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::Duration;

use h264_reader::nal::sps::SeqParameterSet;
use smithay::backend::allocator::dmabuf::Dmabuf;
use v4l2r::bindings;
use v4l2r::controls::AsV4l2ControlSlice;
use v4l2r::ioctl::{self as v, CtrlWhich, Request};
use v4l2r::memory::MemoryType;
use v4l2r::QueueType;

use super::h264_controls::{decode_params, pps_control, pred_weights, scaling_control, slice_params, sps_control};
use super::queues::{self, OutputBuffer, Queues};
use super::{ioctl, DecoderNode, PIX_FMT_H264_SLICE, PIX_FMT_NV12};
use crate::video::h264::reflist::ref_lists;
use crate::video::h264::{AccessUnitParser, Dpb};
use crate::video::{VideoError, VideoFrame, VideoStats};

const OUTPUT: QueueType = QueueType::VideoOutputMplane;
const CAPTURE: QueueType = QueueType::VideoCaptureMplane;
/// Stateless decoders are multi-planar (hantro, rkvdec, cedrus, visl).
const QUEUES: Queues = Queues { output: OUTPUT, capture: CAPTURE, mplane: true };
const OUTPUT_BUFFERS: usize = 4;
/// In slice-based mode each slice takes a bitstream buffer (and a request) of its own.
const SLICE_OUTPUT_BUFFERS: usize = 16;
/// CAPTURE buffers beyond the DPB: the picture being decoded, two waiting for display, the one
/// on screen and the one being flipped to.
const CAPTURE_SLACK: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CaptureState {
    /// Ours, not queued.
    Free,
    Queued,
    /// Holds the decoded picture `id`.
    Decoded {
        id: u64,
        error: bool,
    },
}

struct CaptureBuffer {
    dmabuf: Dmabuf,
    state: CaptureState,
    /// Frames handed out hold a clone; while one exists the buffer stays out of the driver.
    hold: Arc<()>,
}

/// How the driver takes the bitstream (V4L2_CID_STATELESS_H264_DECODE_MODE / START_CODE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every slice of a picture in one buffer, Annex-B start codes (hantro, rkvdec).
    Frame,
    /// One slice per buffer and request with its slice parameters, reference lists and
    /// prediction weights (cedrus); `start_codes`: the slice keeps its Annex-B start code;
    /// `hold`: the CAPTURE buffer can be held across the requests of a picture.
    Slice { start_codes: bool, hold: bool },
}

/// A picture submitted and not yet handed out.
struct Pending {
    id: u64,
    pts: Duration,
}

/// The stream parameters V4L2 was set up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    coded: (u32, u32),
    max_refs: u32,
}

pub struct StatelessDecoder {
    node: DecoderNode,
    video: File,
    media: File,
    q: Queues,
    outputs: Vec<OutputBuffer>,
    /// One media request per bitstream buffer.
    requests: Vec<Request>,
    captures: Vec<CaptureBuffer>,
    geometry: Option<Geometry>,
    mode: Mode,
    visible: (u32, u32),
    parser: AccessUnitParser,
    dpb: Dpb,
    next_id: u64,
    /// Submitted pictures by id with their pts.
    submitted: Vec<Pending>,
    /// Pictures the DPB released for display, in display order.
    display: VecDeque<u64>,
    /// Capture buffers the display has not been told about yet.
    fresh: Vec<Dmabuf>,
    /// Written to when a frame handed out is released (wakes the decoding thread).
    waker: Option<std::os::unix::net::UnixStream>,
    pub stats: VideoStats,
}

impl std::fmt::Debug for StatelessDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StatelessDecoder({} {})", self.node.driver, self.node.video.display())
    }
}

fn err(node: &DecoderNode, what: impl std::fmt::Display) -> VideoError {
    VideoError::Decoder(format!("{} ({}): {what}", node.video.display(), node.driver))
}

fn ctrl<T>(id: u32, payload: &mut T) -> bindings::v4l2_ext_control {
    let mut c = bindings::v4l2_ext_control { id, size: std::mem::size_of::<T>() as u32, ..Default::default() };
    c.__bindgen_anon_1.ptr = payload as *mut T as *mut libc::c_void;
    c
}

struct Controls<'a>(&'a mut [bindings::v4l2_ext_control]);
impl AsV4l2ControlSlice for Controls<'_> {
    fn as_v4l2_control_slice(&mut self) -> &mut [bindings::v4l2_ext_control] {
        self.0
    }
}

const DECODE_MODE_FRAME: i64 =
    bindings::v4l2_stateless_h264_decode_mode_V4L2_STATELESS_H264_DECODE_MODE_FRAME_BASED as i64;
const DECODE_MODE_SLICE: i64 =
    bindings::v4l2_stateless_h264_decode_mode_V4L2_STATELESS_H264_DECODE_MODE_SLICE_BASED as i64;
const START_CODE_ANNEX_B: i64 = bindings::v4l2_stateless_h264_start_code_V4L2_STATELESS_H264_START_CODE_ANNEX_B as i64;
const START_CODE_NONE: i64 = bindings::v4l2_stateless_h264_start_code_V4L2_STATELESS_H264_START_CODE_NONE as i64;

/// The mode to decode in, from the ranges the driver offers for the decode-mode and start-code
/// controls (`None`: no such control, i.e. frame-based with start codes) and a forced choice.
fn pick_mode(modes: Option<(i64, i64)>, codes: Option<(i64, i64)>, forced: Option<&str>) -> Result<Mode, String> {
    let offers = |range: Option<(i64, i64)>, v: i64, absent: bool| range.map_or(absent, |(a, b)| (a..=b).contains(&v));
    let frame = offers(modes, DECODE_MODE_FRAME, true);
    let slice = offers(modes, DECODE_MODE_SLICE, false);
    let annex_b = offers(codes, START_CODE_ANNEX_B, true);
    let bare = offers(codes, START_CODE_NONE, false);
    let want_slice = match forced {
        Some("slice") if slice => true,
        Some("frame") if frame => false,
        Some(m @ ("slice" | "frame")) => {
            return Err(format!("VITRINE_H264_DECODE_MODE={m}: the driver does not offer it"))
        }
        Some(other) => return Err(format!("VITRINE_H264_DECODE_MODE={other}: expected \"slice\" or \"frame\"")),
        None => !frame,
    };
    if !want_slice {
        if !annex_b {
            return Err("frame-based decoding needs Annex-B start codes, which the driver does not take".into());
        }
        return Ok(Mode::Frame);
    }
    if !slice {
        return Err("the driver offers neither frame-based nor slice-based decoding".into());
    }
    if !annex_b && !bare {
        return Err("the driver takes slices neither with nor without start codes".into());
    }
    Ok(Mode::Slice { start_codes: annex_b, hold: false })
}

impl StatelessDecoder {
    /// Open the first stateless H.264 decoder that accepts the stream's first SPS.
    pub fn open(nodes: &[DecoderNode]) -> Result<Self, VideoError> {
        let node = nodes.first().ok_or_else(|| VideoError::NoDecoder("no V4L2 stateless H.264 decoder".into()))?;
        let open = |p: &std::path::Path| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(p)
                .map_err(|e| err(node, format!("cannot open {}: {e}", p.display())))
        };
        use std::os::unix::fs::OpenOptionsExt;
        let video = open(&node.video)?;
        let media_path = node.media.as_ref().ok_or_else(|| err(node, "no media controller device for requests"))?;
        let media = open(media_path)?;
        let mut dec = Self {
            node: node.clone(),
            video,
            media,
            q: QUEUES,
            outputs: Vec::new(),
            requests: Vec::new(),
            captures: Vec::new(),
            geometry: None,
            mode: Mode::Frame,
            visible: (0, 0),
            parser: AccessUnitParser::new(),
            dpb: Dpb::new(),
            next_id: 1,
            submitted: Vec::new(),
            display: VecDeque::new(),
            fresh: Vec::new(),
            waker: None,
            stats: VideoStats::default(),
        };
        dec.choose_modes()?;
        Ok(dec)
    }

    pub fn name(&self) -> String {
        format!("v4l2-stateless {} ({})", self.node.driver, self.node.video.display())
    }

    /// The decode mode and start codes: frame-based with Annex-B start codes where the driver
    /// offers it (hantro, rkvdec; visl offers both), slice-based otherwise (cedrus).
    /// `VITRINE_H264_DECODE_MODE=slice|frame` picks one of those the driver offers.
    fn choose_modes(&mut self) -> Result<(), VideoError> {
        let query = |id: u32| -> Option<(i64, i64)> {
            let mut q = bindings::v4l2_query_ext_ctrl { id, ..Default::default() };
            // SAFETY: VIDIOC_QUERY_EXT_CTRL takes a v4l2_query_ext_ctrl.
            unsafe { ioctl(&self.video, super::VIDIOC_QUERY_EXT_CTRL, &mut q) }.ok().map(|_| (q.minimum, q.maximum))
        };
        self.stats.v4l2_ioctls += 2;
        let modes = query(bindings::V4L2_CID_STATELESS_H264_DECODE_MODE);
        let codes = query(bindings::V4L2_CID_STATELESS_H264_START_CODE);
        let forced = std::env::var("VITRINE_H264_DECODE_MODE").ok();
        self.mode = pick_mode(modes, codes, forced.as_deref()).map_err(|e| err(&self.node, e))?;
        let (mode, code) = match self.mode {
            Mode::Frame => (DECODE_MODE_FRAME, START_CODE_ANNEX_B),
            Mode::Slice { start_codes, .. } => {
                (DECODE_MODE_SLICE, if start_codes { START_CODE_ANNEX_B } else { START_CODE_NONE })
            }
        };
        for (id, value) in [
            (bindings::V4L2_CID_STATELESS_H264_DECODE_MODE, mode as i32),
            (bindings::V4L2_CID_STATELESS_H264_START_CODE, code as i32),
        ] {
            self.stats.v4l2_ioctls += 1;
            if let Err(e) = v::s_ctrl(&self.video, id, value) {
                tracing::debug!(target: "video", control = id, %e, "decoder control not set");
            }
        }
        tracing::info!(target: "video", decoder = %self.name(), mode = ?self.mode, "stateless decode mode");
        Ok(())
    }

    /// Set the queues up for a stream (again when its size or reference count changes, once
    /// the pictures of the previous setup are all out). `Ok(false)`: not yet.
    fn configure(&mut self, sps: &SeqParameterSet) -> Result<bool, VideoError> {
        let coded = ((sps.pic_width_in_mbs_minus1 + 1) * 16, (sps.pic_height_in_map_units_minus1 + 1) * 16);
        let geometry = Geometry { coded, max_refs: sps.max_num_ref_frames };
        if self.geometry == Some(geometry) {
            return Ok(true);
        }
        if self.geometry.is_some() {
            if !self.submitted.is_empty() || !self.display.is_empty() {
                return Ok(false);
            }
            tracing::info!(target: "video", from = ?self.geometry, to = ?geometry, "stream changed: reallocating the capture queue");
            self.teardown();
        }
        let node = self.node.clone();
        // OUTPUT: the coded format, then the SPS so the driver knows the CAPTURE format.
        let mut fmt = bindings::v4l2_format { type_: OUTPUT as u32, ..Default::default() };
        // SAFETY: writing the pix_mp member of the union the OUTPUT_MPLANE type selects.
        unsafe {
            let mp = &mut fmt.fmt.pix_mp;
            mp.width = coded.0;
            mp.height = coded.1;
            mp.pixelformat = PIX_FMT_H264_SLICE;
            mp.num_planes = 1;
            mp.plane_fmt[0].sizeimage = (coded.0 * coded.1 * 3 / 4).max(1 << 20);
        }
        // SAFETY: VIDIOC_S_FMT takes a v4l2_format.
        unsafe { ioctl(&self.video, super::VIDIOC_S_FMT, &mut fmt) }
            .map_err(|e| err(&node, format!("S_FMT S264: {e}")))?;
        let mut sps_ctrl = sps_control(sps);
        let mut c = [ctrl(bindings::V4L2_CID_STATELESS_H264_SPS, &mut sps_ctrl)];
        v::s_ext_ctrls(&self.video, CtrlWhich::Current, Controls(&mut c))
            .map_err(|e| err(&node, format!("SPS control: {e}")))?;
        let mut cfmt = bindings::v4l2_format { type_: CAPTURE as u32, ..Default::default() };
        // SAFETY: VIDIOC_G_FMT takes a v4l2_format.
        unsafe { ioctl(&self.video, super::VIDIOC_G_FMT, &mut cfmt) }.map_err(|e| err(&node, format!("G_FMT: {e}")))?;
        // SAFETY: the CAPTURE_MPLANE type selects pix_mp.
        let mp = unsafe { cfmt.fmt.pix_mp };
        if mp.pixelformat != PIX_FMT_NV12 {
            // Ask for NV12; refuse formats the display cannot take.
            cfmt.fmt.pix_mp.pixelformat = PIX_FMT_NV12;
            // SAFETY: VIDIOC_S_FMT takes a v4l2_format.
            unsafe { ioctl(&self.video, super::VIDIOC_S_FMT, &mut cfmt) }
                .map_err(|e| err(&node, format!("S_FMT NV12: {e}")))?;
        }
        // SAFETY: as above.
        let mp = unsafe { cfmt.fmt.pix_mp };
        if mp.pixelformat != PIX_FMT_NV12 {
            return Err(err(
                &node,
                format!("decodes only into {} (vitrine shows linear NV12)", crate::fourcc::name(mp.pixelformat)),
            ));
        }
        let visible =
            v::g_selection::<bindings::v4l2_rect>(&self.video, v::SelectionType::Capture, v::SelectionTarget::Compose)
                .map(|r| (r.width, r.height))
                .unwrap_or_else(|_| {
                    let (w, h) = sps.pixel_dimensions().unwrap_or((mp.width, mp.height));
                    (w, h)
                });
        self.visible = visible;
        self.stats.v4l2_ioctls += 5;

        // OUTPUT buffers, mapped once, each with its own request.
        let count = if self.mode == Mode::Frame { OUTPUT_BUFFERS } else { SLICE_OUTPUT_BUFFERS };
        let (outputs, caps) = queues::alloc_outputs(&self.video, &self.q, count).map_err(|e| err(&node, e))?;
        self.outputs = outputs;
        if let Mode::Slice { start_codes, .. } = self.mode {
            let hold = caps & bindings::V4L2_BUF_CAP_SUPPORTS_M2M_HOLD_CAPTURE_BUF != 0;
            self.mode = Mode::Slice { start_codes, hold };
        }
        for _ in 0..self.outputs.len() {
            let request =
                Request::alloc(&self.media).map_err(|e| err(&node, format!("MEDIA_IOC_REQUEST_ALLOC: {e}")))?;
            self.requests.push(request);
        }

        // CAPTURE buffers, exported once as dmabufs.
        // Sized from the stream: its DPB (max_num_ref_frames, max_dec_frame_buffering, the
        // level; at most 16) plus room for the pictures on their way to the screen. Fewer than
        // the DPB and the picture being decoded would stall the decoder: refused with the reason.
        let dpb = crate::video::h264::dpb::dpb_size(sps).0;
        let want = dpb + CAPTURE_SLACK;
        let format = queues::describe_capture(&cfmt, &self.q);
        let dmabufs = queues::export_captures(&self.video, &self.q, &format, want, dpb + 1).map_err(|e| {
            err(&node, format!("{e} (a DPB of {dpb} pictures, max_num_ref_frames {})", sps.max_num_ref_frames))
        })?;
        let (n, stride) = (dmabufs.len(), format.pitches[0]);
        self.stats.dmabufs_exported += n as u64;
        self.fresh.extend(dmabufs.iter().cloned());
        self.captures = dmabufs
            .into_iter()
            .map(|dmabuf| CaptureBuffer { dmabuf, state: CaptureState::Free, hold: Arc::new(()) })
            .collect();
        self.stats.v4l2_ioctls += 2 + 2 * n as u64;
        v::streamon(&self.video, OUTPUT).map_err(|e| err(&node, format!("STREAMON OUTPUT: {e}")))?;
        v::streamon(&self.video, CAPTURE).map_err(|e| err(&node, format!("STREAMON CAPTURE: {e}")))?;
        self.stats.v4l2_ioctls += 2;
        self.geometry = Some(geometry);
        self.dpb = Dpb::new();
        tracing::info!(
            target: "video",
            decoder = %self.name(),
            coded = ?coded,
            visible = ?self.visible,
            capture_buffers = n,
            stride,
            mode = ?self.mode,
            "decoder configured: NV12 capture buffers exported as dmabufs"
        );
        Ok(true)
    }

    fn teardown(&mut self) {
        let _ = v::streamoff(&self.video, OUTPUT);
        let _ = v::streamoff(&self.video, CAPTURE);
        queues::unmap(&mut self.outputs);
        self.requests.clear();
        self.captures.clear();
        let _ = v::reqbufs::<()>(&self.video, OUTPUT, MemoryType::Mmap, 0, v::MemoryConsistency::empty());
        let _ = v::reqbufs::<()>(&self.video, CAPTURE, MemoryType::Mmap, 0, v::MemoryConsistency::empty());
        self.geometry = None;
        self.submitted.clear();
        self.display.clear();
    }

    /// The video device, for waiting on its events.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.video.as_fd()
    }

    /// Whether another picture can be submitted now.
    pub fn can_submit(&self) -> bool {
        self.geometry.is_none()
            || (self.outputs.iter().any(|o| !o.busy)
                && self.captures.iter().any(|c| c.state == CaptureState::Queued || self.reusable(c)))
    }

    fn reusable(&self, c: &CaptureBuffer) -> bool {
        match c.state {
            CaptureState::Free => true,
            CaptureState::Decoded { id, .. } => {
                Arc::strong_count(&c.hold) == 1 && !self.dpb.holds(id) && !self.display.contains(&id)
            }
            CaptureState::Queued => false,
        }
    }

    fn queue_free_captures(&mut self) -> Result<(), VideoError> {
        for i in 0..self.captures.len() {
            if !self.reusable(&self.captures[i]) {
                continue;
            }
            self.stats.v4l2_ioctls += 1;
            queues::queue_capture(&self.video, &self.q, i)
                .map_err(|e| err(&self.node, format!("QBUF CAPTURE {i}: {e}")))?;
            self.captures[i].state = CaptureState::Queued;
        }
        Ok(())
    }

    /// Queue one access unit for decoding. `Ok(false)`: the decoder is full, try again after
    /// `pump`.
    pub fn submit(&mut self, au: &[u8], pts: Duration) -> Result<bool, VideoError> {
        let pic = self.parser.parse(au).map_err(|e| VideoError::Stream(e.to_string()))?;
        if !self.configure(&pic.sps)? {
            return Ok(false);
        }
        self.queue_free_captures()?;
        if !self.captures.iter().any(|c| c.state == CaptureState::Queued) {
            tracing::trace!(
                target: "video",
                held = self.captures.iter().filter(|c| Arc::strong_count(&c.hold) > 1).count(),
                in_dpb = self.captures.iter().filter(|c| matches!(c.state, CaptureState::Decoded { id, .. } if self.dpb.holds(id))).count(),
                to_display = self.display.len(),
                "no capture buffer free"
            );
            return Ok(false);
        }
        // A bitstream buffer for the picture, or for each of its slices.
        let buffers = match self.mode {
            Mode::Frame => 1,
            Mode::Slice { hold, .. } => {
                let n = pic.slices.len();
                if n > self.outputs.len() {
                    return Err(VideoError::Stream(format!(
                        "a picture of {n} slices: slice-based decoding here takes at most {} per picture",
                        self.outputs.len()
                    )));
                }
                if n > 1 && !hold {
                    return Err(err(
                        &self.node,
                        format!("a picture of {n} slices, and the driver cannot hold a picture buffer across slices"),
                    ));
                }
                n
            }
        };
        let free: Vec<usize> =
            self.outputs.iter().enumerate().filter(|(_, o)| !o.busy).map(|(i, _)| i).take(buffers).collect();
        if free.len() < buffers {
            return Ok(false);
        }
        let id = self.next_id;
        self.next_id += 1;
        let (current, released) = self.dpb.begin(&pic, id);
        self.display.extend(released.iter().map(|o| o.id));

        let mut sps = sps_control(&pic.sps);
        let mut pps = pps_control(&pic.pps);
        let mut scaling = scaling_control(&pic.sps, &pic.pps);
        let mut params = decode_params(&pic, &self.dpb, &current);
        // The controls point at these payloads, which outlive every request made below.
        let picture_controls = [
            ctrl(bindings::V4L2_CID_STATELESS_H264_SPS, &mut sps),
            ctrl(bindings::V4L2_CID_STATELESS_H264_PPS, &mut pps),
            ctrl(bindings::V4L2_CID_STATELESS_H264_SCALING_MATRIX, &mut scaling),
            ctrl(bindings::V4L2_CID_STATELESS_H264_DECODE_PARAMS, &mut params),
        ];
        match self.mode {
            Mode::Frame => {
                let mut c = picture_controls;
                self.queue_bitstream(free[0], &pic.slice_data, id, &mut c, 0)?;
            }
            Mode::Slice { start_codes, .. } => {
                for (i, slice) in pic.slices.iter().enumerate() {
                    let from = if start_codes { slice.nal.start - 3 } else { slice.nal.start };
                    let data = &pic.slice_data[from..slice.nal.end];
                    let (l0, l1) = ref_lists(self.dpb.entries(), &current, slice, &pic.pps, pic.max_frame_num());
                    let mut sp = slice_params(slice, &pic.pps, &l0, &l1);
                    let mut pw = pred_weights(slice, &pic.pps);
                    let [a, b, c, d] = picture_controls;
                    let mut c = [
                        a,
                        b,
                        c,
                        d,
                        ctrl(bindings::V4L2_CID_STATELESS_H264_SLICE_PARAMS, &mut sp),
                        ctrl(bindings::V4L2_CID_STATELESS_H264_PRED_WEIGHTS, &mut pw),
                    ];
                    // The picture buffer stays with the driver until the last slice is decoded.
                    let last = i + 1 == pic.slices.len();
                    let flags = if last { 0 } else { bindings::V4L2_BUF_FLAG_M2M_HOLD_CAPTURE_BUF };
                    self.queue_bitstream(free[i], data, id, &mut c, flags)?;
                }
            }
        }
        self.submitted.push(Pending { id, pts });
        let released = self.dpb.finish(&pic, current);
        self.display.extend(released.iter().map(|o| o.id));
        Ok(true)
    }

    /// Bitstream into OUTPUT buffer `slot`, the controls into its request, both queued.
    fn queue_bitstream(
        &mut self,
        slot: usize,
        data: &[u8],
        id: u64,
        controls: &mut [bindings::v4l2_ext_control],
        flags: u32,
    ) -> Result<(), VideoError> {
        self.outputs[slot].write(data).map_err(|e| VideoError::Stream(format!("picture {id}: {e}")))?;
        self.stats.bitstream_bytes += data.len() as u64;
        let request = &self.requests[slot];
        let request_fd = request.as_raw_fd();
        v::s_ext_ctrls(&self.video, CtrlWhich::Request(request_fd), Controls(controls))
            .map_err(|e| err(&self.node, format!("controls of picture {id}: {e}")))?;
        queues::queue_output(&self.video, &self.q, slot, data.len(), id, Some(request_fd), flags)
            .map_err(|e| err(&self.node, format!("QBUF OUTPUT: {e}")))?;
        request.queue().map_err(|e| err(&self.node, format!("MEDIA_REQUEST_IOC_QUEUE: {e}")))?;
        self.outputs[slot].busy = true;
        self.stats.v4l2_ioctls += 3;
        Ok(())
    }

    /// End of stream: every picture still in the DPB goes to display.
    pub fn drain(&mut self) {
        let rest = self.dpb.flush();
        self.display.extend(rest.iter().map(|o| o.id));
    }

    /// Collect finished work from the driver (never blocks).
    pub fn pump(&mut self) -> Result<(), VideoError> {
        // Only ask for what can be done: an idle queue would just answer EAGAIN.
        while self.busy() {
            self.stats.v4l2_ioctls += 1;
            match queues::dequeue(&self.video, &self.q, OUTPUT) {
                Ok(d) => {
                    if let (Some(o), Some(r)) = (self.outputs.get_mut(d.index), self.requests.get(d.index)) {
                        o.busy = false;
                        let _ = r.reinit();
                        self.stats.v4l2_ioctls += 1;
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && self.geometry.is_none() => break,
                Err(e) => return Err(err(&self.node, format!("DQBUF OUTPUT: {e}"))),
            }
        }
        while self.captures.iter().any(|c| c.state == CaptureState::Queued) && !self.submitted.is_empty() {
            self.stats.v4l2_ioctls += 1;
            match queues::dequeue(&self.video, &self.q, CAPTURE) {
                Ok(d) => {
                    let (id, error) = (d.id, d.error());
                    if error {
                        self.stats.decode_errors += 1;
                        tracing::warn!(target: "video", picture = id, "the decoder flagged a picture as corrupt");
                    }
                    if let Some(c) = self.captures.get_mut(d.index) {
                        c.state = CaptureState::Decoded { id, error };
                        self.stats.frames_decoded += 1;
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && self.geometry.is_none() => break,
                Err(e) => return Err(err(&self.node, format!("DQBUF CAPTURE: {e}"))),
            }
        }
        self.queue_free_captures()
    }

    /// The next picture in display order, once it is decoded.
    pub fn take_frame(&mut self) -> Option<VideoFrame> {
        let id = *self.display.front()?;
        let index =
            self.captures.iter().position(|c| matches!(c.state, CaptureState::Decoded { id: i, .. } if i == id));
        let Some(index) = index else {
            // Not decoded yet; or never will be (a picture the driver lost): skip it once the
            // decoder has moved past it.
            let stuck = !self.submitted.iter().any(|p| p.id == id);
            if stuck {
                self.display.pop_front();
            }
            return None;
        };
        self.display.pop_front();
        let pts =
            self.submitted.iter().position(|p| p.id == id).map(|i| self.submitted.remove(i).pts).unwrap_or_default();
        let c = &self.captures[index];
        Some(VideoFrame::in_buffer(&c.dmabuf, &c.hold, self.waker.as_ref(), self.visible, pts))
    }

    /// Wake this stream's reader when a frame handed out is released.
    pub fn set_waker(&mut self, waker: std::os::unix::net::UnixStream) {
        self.waker = Some(waker);
    }

    /// Capture buffers exported since the last call.
    pub fn take_new_buffers(&mut self) -> Vec<Dmabuf> {
        std::mem::take(&mut self.fresh)
    }

    /// Whether the driver has pictures to finish.
    /// Whether the driver has work of ours: bitstream buffers queued, or submitted pictures whose
    /// capture buffer it has not handed back yet (the decoding thread then waits on the device).
    pub fn busy(&self) -> bool {
        let decoded =
            |id: u64| self.captures.iter().any(|c| matches!(c.state, CaptureState::Decoded { id: i, .. } if i == id));
        self.outputs.iter().any(|o| o.busy) || self.submitted.iter().any(|p| !decoded(p.id))
    }

    /// Pictures submitted and not yet handed out.
    pub fn in_flight(&self) -> usize {
        self.submitted.len()
    }
}

impl Drop for StatelessDecoder {
    fn drop(&mut self) {
        self.teardown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Option<(i64, i64)> = Some((DECODE_MODE_SLICE, DECODE_MODE_FRAME));
    const SLICE_ONLY: Option<(i64, i64)> = Some((DECODE_MODE_SLICE, DECODE_MODE_SLICE));
    const FRAME_ONLY: Option<(i64, i64)> = Some((DECODE_MODE_FRAME, DECODE_MODE_FRAME));
    const ANY_CODE: Option<(i64, i64)> = Some((START_CODE_NONE, START_CODE_ANNEX_B));
    const NO_CODE: Option<(i64, i64)> = Some((START_CODE_NONE, START_CODE_NONE));

    #[test]
    fn frame_based_where_offered_slice_based_otherwise() {
        // hantro / rkvdec, visl, drivers without the controls.
        assert_eq!(pick_mode(FRAME_ONLY, Some((START_CODE_ANNEX_B, START_CODE_ANNEX_B)), None), Ok(Mode::Frame));
        assert_eq!(pick_mode(BOTH, ANY_CODE, None), Ok(Mode::Frame));
        assert_eq!(pick_mode(None, None, None), Ok(Mode::Frame));
        // cedrus: slices without start codes.
        assert_eq!(pick_mode(SLICE_ONLY, NO_CODE, None), Ok(Mode::Slice { start_codes: false, hold: false }));
        assert_eq!(pick_mode(BOTH, ANY_CODE, Some("slice")), Ok(Mode::Slice { start_codes: true, hold: false }));
    }

    #[test]
    fn impossible_choices_are_named() {
        assert!(pick_mode(SLICE_ONLY, NO_CODE, Some("frame")).unwrap_err().contains("does not offer"));
        assert!(pick_mode(FRAME_ONLY, ANY_CODE, Some("slice")).unwrap_err().contains("does not offer"));
        assert!(pick_mode(BOTH, ANY_CODE, Some("fast")).unwrap_err().contains("expected"));
        assert!(pick_mode(FRAME_ONLY, NO_CODE, None).unwrap_err().contains("Annex-B"));
    }
}
