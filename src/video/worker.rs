//! The decoder runs on its own thread: some drivers decode inside the ioctl that queues a
//! request (visl does, in the caller's context), and a 1080p picture can take tens of
//! milliseconds there. The compositor's loop only exchanges messages with it and never waits.
//!
//! The thread sleeps in `poll` on the video device and a wake-up socket; it is woken by new
//! work, by the driver finishing pictures, and by frames being released by the display.

use std::collections::VecDeque;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use smithay::backend::allocator::dmabuf::Dmabuf;

use super::demux::Codec;
use super::soft::SoftwareDecoder;
use super::v4l2::{self, HwDecoder, StatefulDecoder, StatelessDecoder};
use super::{VideoError, VideoFrame, VideoStats};

enum Command {
    Decode {
        data: Vec<u8>,
        pts: Duration,
    },
    /// End of a clip: output everything the DPB holds.
    Drain,
    Stop,
}

/// What the decoding thread reports.
pub enum Event {
    Frame(VideoFrame),
    /// Decoder buffers the display may import ahead of use.
    Buffers(Vec<Dmabuf>),
    /// An access unit that produced no picture, with the reason.
    Skipped(String),
    /// The decoder failed; the thread has stopped.
    Failed(String),
}

pub struct DecoderThread {
    name: String,
    codec: Codec,
    commands: Sender<Command>,
    waker: UnixStream,
    events: Receiver<Event>,
    stats: Arc<Mutex<VideoStats>>,
    thread: Option<JoinHandle<()>>,
}

impl DecoderThread {
    /// Start decoding a stream of `codec`: on the first V4L2 stateless decoder that takes it,
    /// else the first stateful one, else (H.264) in software with OpenH264
    /// (`VITRINE_DECODER=software` forces that). `scanout`: the display shows dmabufs on planes,
    /// so the software decoder writes its pictures into dmabufs.
    pub fn start(codec: Codec, scanout: bool) -> Result<Self, VideoError> {
        let forced_software = std::env::var("VITRINE_DECODER").is_ok_and(|v| v == "software");
        let (stateless, stateful) = match codec {
            Codec::H264 => (v4l2::PIX_FMT_H264_SLICE, v4l2::PIX_FMT_H264),
            Codec::Fwht => (0, v4l2::PIX_FMT_FWHT),
        };
        let find = |fourcc: u32| if forced_software || fourcc == 0 { Vec::new() } else { v4l2::find_decoders(fourcc) };
        let decoder: Box<dyn HwDecoder> = match (find(stateless), find(stateful)) {
            (nodes, _) if !nodes.is_empty() => Box::new(StatelessDecoder::open(&nodes)?),
            (_, nodes) if !nodes.is_empty() => Box::new(StatefulDecoder::open(&nodes, stateful)?),
            _ if codec == Codec::H264 => return Self::start_software(scanout, forced_software),
            _ => return Err(VideoError::NoDecoder(format!("no V4L2 decoder takes {} streams", codec.name()))),
        };
        let mut thread = Self::start_v4l2(decoder)?;
        thread.codec = codec;
        Ok(thread)
    }

    /// The coding this decoder decodes.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    fn start_software(scanout: bool, forced: bool) -> Result<Self, VideoError> {
        let decoder = SoftwareDecoder::new(scanout)?;
        let name = decoder.name();
        tracing::warn!(
            target: "video",
            reason = if forced { "VITRINE_DECODER=software" } else { "no /dev/video* node takes S264 or H264" },
            decoder = %name,
            "no V4L2 decoder: decoding in software, every picture is copied"
        );
        let (wake_tx, _wake_rx) = UnixStream::pair().map_err(|e| VideoError::Decoder(format!("socketpair: {e}")))?;
        Self::spawn(name, wake_tx, move |commands, events, stats| run_software(decoder, commands, events, stats))
    }

    fn start_v4l2(mut decoder: Box<dyn HwDecoder>) -> Result<Self, VideoError> {
        let name = decoder.name();
        let (wake_tx, wake_rx) = UnixStream::pair().map_err(|e| VideoError::Decoder(format!("socketpair: {e}")))?;
        let _ = wake_rx.set_nonblocking(true);
        let release_waker = wake_tx.try_clone().map_err(|e| VideoError::Decoder(format!("dup: {e}")))?;
        decoder.set_waker(release_waker);
        Self::spawn(name, wake_tx, move |commands, events, stats| run(decoder, commands, wake_rx, events, stats))
    }

    /// The decoding thread running `body` with the command and event channels and the shared
    /// counters; `waker` wakes it when a command is sent.
    fn spawn<F>(name: String, waker: UnixStream, body: F) -> Result<Self, VideoError>
    where
        F: FnOnce(Receiver<Command>, Sender<Event>, Arc<Mutex<VideoStats>>) + Send + 'static,
    {
        let (commands, command_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let stats = Arc::new(Mutex::new(VideoStats::default()));
        let shared = stats.clone();
        let thread = std::thread::Builder::new()
            .name("vitrine-decoder".into())
            .spawn(move || body(command_rx, event_tx, shared))
            .map_err(|e| VideoError::Decoder(format!("cannot start the decoding thread: {e}")))?;
        Ok(Self { name, codec: Codec::H264, commands, waker, events, stats, thread: Some(thread) })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn send(&mut self, c: Command) {
        let _ = self.commands.send(c);
        let _ = std::io::Write::write(&mut self.waker, &[1]);
    }

    pub fn decode(&mut self, data: Vec<u8>, pts: Duration) {
        self.send(Command::Decode { data, pts });
    }

    pub fn drain(&mut self) {
        self.send(Command::Drain);
    }

    pub fn try_event(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    pub fn stats(&self) -> VideoStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for DecoderThread {
    fn drop(&mut self) {
        self.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    mut dec: Box<dyn HwDecoder>,
    commands: Receiver<Command>,
    mut wake: UnixStream,
    events: Sender<Event>,
    stats: Arc<Mutex<VideoStats>>,
) {
    let mut pending: VecDeque<(Vec<u8>, Duration)> = VecDeque::new();
    let mut drain_after: Vec<usize> = Vec::new();
    loop {
        loop {
            match commands.try_recv() {
                Ok(Command::Decode { data, pts }) => pending.push_back((data, pts)),
                // Drain once every picture sent before it is submitted.
                Ok(Command::Drain) => drain_after.push(pending.len()),
                Ok(Command::Stop) | Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => break,
            }
        }
        let fail = |e: VideoError| {
            let _ = events.send(Event::Failed(e.to_string()));
        };
        if let Err(e) = dec.pump() {
            return fail(e);
        }
        loop {
            if drain_after.first() == Some(&0) {
                drain_after.remove(0);
                dec.drain();
                continue;
            }
            let Some((data, pts)) = pending.front() else { break };
            match dec.submit(data, *pts) {
                Ok(true) => {}
                Ok(false) => break,
                Err(VideoError::Stream(e)) => {
                    let _ = events.send(Event::Skipped(e));
                }
                Err(e) => return fail(e),
            }
            pending.pop_front();
            for d in &mut drain_after {
                *d -= 1;
            }
        }
        if let Err(e) = dec.pump() {
            return fail(e);
        }
        let fresh = dec.take_new_buffers();
        if !fresh.is_empty() {
            let _ = events.send(Event::Buffers(fresh));
        }
        while let Some(frame) = dec.take_frame() {
            if events.send(Event::Frame(frame)).is_err() {
                return;
            }
        }
        if let Ok(mut s) = stats.lock() {
            *s = dec.stats();
        }
        // Sleep until the driver finishes something, work arrives or a frame is released.
        // The device is only waited on while the driver has pictures: an idle m2m device polls
        // as an error (no buffers queued) and would never let the thread sleep.
        let mut fds = [
            libc::pollfd { fd: wake.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 },
            // POLLPRI: driver events (a stateful decoder's SOURCE_CHANGE).
            libc::pollfd { fd: dec.fd().as_raw_fd(), events: libc::POLLIN | libc::POLLOUT | libc::POLLPRI, revents: 0 },
        ];
        let n = if dec.busy() { 2 } else { 1 };
        // SAFETY: `n` valid pollfd entries.
        unsafe { libc::poll(fds.as_mut_ptr(), n, 200) };
        if fds[1].revents & libc::POLLERR != 0 {
            // Not a state to spin in: give the driver a moment.
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut buf = [0u8; 64];
        while matches!(wake.read(&mut buf), Ok(n) if n > 0) {}
    }
}

fn run_software(
    mut dec: SoftwareDecoder,
    commands: Receiver<Command>,
    events: Sender<Event>,
    stats: Arc<Mutex<VideoStats>>,
) {
    // Access units in and pictures (or skips) out since the last drain: what a drain does not
    // bring out is reported, so the player never waits for it.
    let (mut units_in, mut out) = (0usize, 0usize);
    while let Ok(command) = commands.recv() {
        let frames: Vec<VideoFrame> = match command {
            Command::Decode { data, pts } => {
                units_in += 1;
                match dec.decode(&data, pts) {
                    Ok(frame) => frame.into_iter().collect(),
                    Err(e) => {
                        out += 1;
                        let _ = events.send(Event::Skipped(e.to_string()));
                        Vec::new()
                    }
                }
            }
            Command::Drain => {
                let frames = dec.drain();
                for _ in (out + frames.len())..units_in {
                    let _ = events.send(Event::Skipped("the decoder gave no picture for it".into()));
                }
                (units_in, out) = (0, 0);
                if let Ok(mut s) = stats.lock() {
                    *s = dec.stats.clone();
                }
                if !send_frames(&events, frames) {
                    return;
                }
                continue;
            }
            Command::Stop => return,
        };
        out += frames.len();
        if !send_frames(&events, frames) {
            return;
        }
        if let Ok(mut s) = stats.lock() {
            *s = dec.stats.clone();
        }
    }
}

/// Hand pictures to the player; false when it is gone.
fn send_frames(events: &Sender<Event>, frames: Vec<VideoFrame>) -> bool {
    frames.into_iter().all(|f| events.send(Event::Frame(f)).is_ok())
}
