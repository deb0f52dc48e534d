//! The decoder runs on its own thread: some drivers decode inside the ioctl that queues a
//! request (visl does, in the caller's context), and a 1080p picture can take tens of
//! milliseconds there. The compositor's loop only exchanges messages with it and never waits.
//!
//! The thread finds and opens its device itself (discovery opens every /dev/video* node), then
//! sleeps in `poll` on the video device and a wake-up socket; it is woken by new work, by the
//! driver finishing pictures, and by frames being released by the display. What it delivers
//! wakes the compositor's loop only when the player waits for it (`LoopWaker`).

use std::collections::VecDeque;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smithay::backend::allocator::dmabuf::Dmabuf;

use super::demux::Codec;
use super::soft::SoftwareDecoder;
use super::v4l2::{self, HwDecoder, StatefulDecoder, StatelessDecoder};
use super::{LoopWaker, VideoError, VideoFrame, VideoStats};

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
    /// The device was found and opened: the decoder's name.
    Opened(String),
    /// The decoder failed (or none takes the coding); the thread has stopped.
    Failed(VideoError),
}

pub struct DecoderThread {
    name: Arc<Mutex<String>>,
    codec: Codec,
    commands: Sender<Command>,
    /// Wakes the thread when a command is sent (its poll also waits on the device).
    waker: Arc<Mutex<Option<UnixStream>>>,
    events: Receiver<Event>,
    stats: Arc<Mutex<VideoStats>>,
}

/// What the thread needs to tell the player things.
struct Outbox {
    events: Sender<Event>,
    loop_waker: Option<LoopWaker>,
}

impl Outbox {
    fn send(&self, event: Event) -> bool {
        let sent = self.events.send(event).is_ok();
        if let Some(w) = &self.loop_waker {
            w.wake();
        }
        sent
    }
}

impl DecoderThread {
    /// Start decoding a stream of `codec`: on the first V4L2 stateless decoder that takes it,
    /// else the first stateful one, else (H.264) in software with OpenH264
    /// (`VITRINE_DECODER=software` forces that). `scanout`: the display shows dmabufs on planes,
    /// so the software decoder writes its pictures into dmabufs. The device is looked for and
    /// opened on the new thread; `Event::Opened` or `Event::Failed` says how that went.
    /// `software`: decode in software whatever devices there are (the video ladder's fallback).
    pub fn start(
        codec: Codec,
        scanout: bool,
        software: bool,
        loop_waker: Option<LoopWaker>,
    ) -> Result<Self, VideoError> {
        let (commands, command_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let stats = Arc::new(Mutex::new(VideoStats::default()));
        let name = Arc::new(Mutex::new("opening".to_string()));
        let waker = Arc::new(Mutex::new(None));
        let (shared_stats, shared_name, shared_waker) = (stats.clone(), name.clone(), waker.clone());
        std::thread::Builder::new()
            .name("vitrine-decoder".into())
            .spawn(move || {
                crate::process::lower_thread_priority(crate::process::WORKER_NICE);
                let out = Outbox { events: event_tx, loop_waker };
                open_and_run(codec, scanout, software, command_rx, out, shared_stats, shared_name, shared_waker);
                // The decoder and its buffers are gone: the allocator gives what they used back
                // to the system (a decoder reset or a software fallback must not leave its
                // memory behind in a long run).
                // SAFETY: malloc_trim only walks the allocator's own free lists.
                unsafe { libc::malloc_trim(0) };
            })
            .map_err(|e| VideoError::Decoder(format!("cannot start the decoding thread: {e}")))?;
        Ok(Self { name, codec, commands, waker, events, stats })
    }

    /// The coding this decoder decodes.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The decoder's name ("opening" until the device is open).
    pub fn name(&self) -> String {
        self.name.lock().map(|n| n.clone()).unwrap_or_default()
    }

    fn send(&mut self, c: Command) {
        let _ = self.commands.send(c);
        if let Ok(mut waker) = self.waker.lock() {
            if let Some(w) = waker.as_mut() {
                let _ = std::io::Write::write(w, &[1]);
            }
        }
    }

    pub fn decode(&mut self, data: Vec<u8>, pts: Duration) {
        self.send(Command::Decode { data, pts });
    }

    pub fn drain(&mut self) {
        self.send(Command::Drain);
    }

    /// What the thread reported, if anything. A thread that ended without saying why (it
    /// panicked) reports a failure.
    pub fn try_event(&self) -> Option<Event> {
        match self.events.try_recv() {
            Ok(event) => Some(event),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                Some(Event::Failed(VideoError::Decoder("the decoding thread stopped".into())))
            }
        }
    }

    pub fn stats(&self) -> VideoStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for DecoderThread {
    /// The thread is told to stop and left to finish on its own: joining it here would make the
    /// compositor's loop wait for a driver.
    fn drop(&mut self) {
        self.send(Command::Stop);
    }
}

/// The decoding thread: find and open the device, then decode until told to stop.
#[allow(clippy::too_many_arguments)]
fn open_and_run(
    codec: Codec,
    scanout: bool,
    software: bool,
    commands: Receiver<Command>,
    out: Outbox,
    stats: Arc<Mutex<VideoStats>>,
    name: Arc<Mutex<String>>,
    waker_slot: Arc<Mutex<Option<UnixStream>>>,
) {
    let forced = std::env::var("VITRINE_DECODER").ok();
    // VITRINE_DECODER=v4l2: hardware only, even for the ladder's software step (a board that
    // cannot decode the playlist in software in time).
    let hardware_only = forced.as_deref() == Some("v4l2");
    let forced_software = !hardware_only && (software || forced.as_deref() == Some("software"));
    let (stateless, stateful) = match codec {
        Codec::H264 => (v4l2::PIX_FMT_H264_SLICE, v4l2::PIX_FMT_H264),
        Codec::Fwht => (0, v4l2::PIX_FMT_FWHT),
    };
    let find = |fourcc: u32| if forced_software || fourcc == 0 { Vec::new() } else { v4l2::find_decoders(fourcc) };
    let opened: Result<Box<dyn HwDecoder>, VideoError> = match (find(stateless), find(stateful)) {
        (nodes, _) if !nodes.is_empty() => StatelessDecoder::open(&nodes).map(|d| Box::new(d) as Box<dyn HwDecoder>),
        (_, nodes) if !nodes.is_empty() => {
            StatefulDecoder::open(&nodes, stateful).map(|d| Box::new(d) as Box<dyn HwDecoder>)
        }
        // A device that is gone is a decoder failure here, for the ladder, not a stream
        // nothing can decode.
        _ if hardware_only => Err(VideoError::Decoder(format!(
            "no V4L2 decoder takes {} streams, and VITRINE_DECODER=v4l2 rules out software decoding",
            codec.name()
        ))),
        _ if codec == Codec::H264 => {
            let decoder = match SoftwareDecoder::new(scanout) {
                Ok(d) => d,
                Err(e) => {
                    out.send(Event::Failed(e));
                    return;
                }
            };
            let decoder_name = decoder.name();
            tracing::warn!(
                target: "video",
                reason = if software {
                    "the V4L2 decoder failed twice on this item"
                } else if forced_software {
                    "VITRINE_DECODER=software"
                } else {
                    "no /dev/video* node takes S264 or H264"
                },
                decoder = %decoder_name,
                "no V4L2 decoder: decoding in software, every picture is copied"
            );
            if let Ok(mut n) = name.lock() {
                *n = decoder_name.clone();
            }
            out.send(Event::Opened(decoder_name));
            return run_software(decoder, commands, out, stats);
        }
        _ => Err(VideoError::NoDecoder(format!("no V4L2 decoder here takes {} streams", codec.name()))),
    };
    let mut decoder = match opened {
        Ok(d) => d,
        Err(e) => {
            out.send(Event::Failed(e));
            return;
        }
    };
    let (wake_tx, wake_rx) = match UnixStream::pair() {
        Ok(pair) => pair,
        Err(e) => {
            out.send(Event::Failed(VideoError::Decoder(format!("socketpair: {e}"))));
            return;
        }
    };
    let _ = wake_rx.set_nonblocking(true);
    let _ = wake_tx.set_nonblocking(true);
    match wake_tx.try_clone() {
        Ok(release_waker) => decoder.set_waker(release_waker),
        Err(e) => {
            out.send(Event::Failed(VideoError::Decoder(format!("dup: {e}"))));
            return;
        }
    }
    if let Ok(mut slot) = waker_slot.lock() {
        *slot = Some(wake_tx);
    }
    let decoder_name = decoder.name();
    if let Ok(mut n) = name.lock() {
        *n = decoder_name.clone();
    }
    out.send(Event::Opened(decoder_name));
    run(decoder, commands, wake_rx, out, stats)
}

fn run(
    mut dec: Box<dyn HwDecoder>,
    commands: Receiver<Command>,
    mut wake: UnixStream,
    out: Outbox,
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
            out.send(Event::Failed(e));
        };
        // Submit what the decoder takes, collect what it finished, and again while that made
        // room (the driver may finish a picture inside the ioctl that queues it).
        loop {
            if let Err(e) = dec.pump() {
                return fail(e);
            }
            let mut submitted = 0;
            loop {
                if drain_after.first() == Some(&0) {
                    drain_after.remove(0);
                    dec.drain();
                    continue;
                }
                let Some((data, pts)) = pending.front() else { break };
                match dec.submit(data, *pts) {
                    Ok(true) => submitted += 1,
                    Ok(false) => break,
                    Err(VideoError::Stream(e)) => {
                        out.send(Event::Skipped(e));
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
                out.send(Event::Buffers(fresh));
            }
            while let Some(frame) = dec.take_frame() {
                if !out.send(Event::Frame(frame)) {
                    return;
                }
            }
            if submitted == 0 || pending.is_empty() {
                break;
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
        tracing::trace!(target: "video", pending = pending.len(), busy = dec.busy(), "decoder thread sleeps");
        // Idle, the thread sleeps until it is given work; busy, it looks again after a while
        // even if the driver says nothing.
        let timeout = if dec.busy() { 200 } else { -1 };
        // SAFETY: `n` valid pollfd entries.
        unsafe { libc::poll(fds.as_mut_ptr(), n, timeout) };
        if fds[1].revents & libc::POLLERR != 0 {
            // Not a state to spin in: give the driver a moment.
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut buf = [0u8; 64];
        while matches!(wake.read(&mut buf), Ok(n) if n > 0) {}
    }
}

fn run_software(mut dec: SoftwareDecoder, commands: Receiver<Command>, out: Outbox, stats: Arc<Mutex<VideoStats>>) {
    // Access units in and pictures (or skips) out since the last drain: what a drain does not
    // bring out is reported, so the player never waits for it.
    let (mut units_in, mut given) = (0usize, 0usize);
    while let Ok(command) = commands.recv() {
        let frames: Vec<VideoFrame> = match command {
            Command::Decode { data, pts } => {
                units_in += 1;
                match dec.decode(&data, pts) {
                    Ok(frame) => frame.into_iter().collect(),
                    Err(e) => {
                        given += 1;
                        out.send(Event::Skipped(e.to_string()));
                        Vec::new()
                    }
                }
            }
            Command::Drain => {
                let frames = dec.drain();
                for _ in (given + frames.len())..units_in {
                    out.send(Event::Skipped("the decoder gave no picture for it".into()));
                }
                (units_in, given) = (0, 0);
                if let Ok(mut s) = stats.lock() {
                    *s = dec.stats.clone();
                }
                if !send_frames(&out, frames) {
                    return;
                }
                continue;
            }
            Command::Stop => return,
        };
        given += frames.len();
        if !send_frames(&out, frames) {
            return;
        }
        if let Ok(mut s) = stats.lock() {
            *s = dec.stats.clone();
        }
    }
}

/// Hand pictures to the player; false when it is gone.
fn send_frames(out: &Outbox, frames: Vec<VideoFrame>) -> bool {
    frames.into_iter().all(|f| out.send(Event::Frame(f)))
}
