//! The player: a playlist of files, decoded ahead, each picture shown at the vblank nearest its
//! presentation time. Late pictures are dropped and counted. The next item is opened and
//! decoded while the current one plays, so the switch happens from one vblank to the next.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use std::sync::mpsc::{Receiver, TryRecvError};

use super::demux::{self, AccessUnit, Codec, DemuxError, Loaded};
use super::worker::{DecoderThread, Event};
use super::{LoopWaker, VideoError, VideoFrame, VideoStats};
use crate::process::RunDelay;

mod clock;
mod ladder;

/// Decoded pictures waiting for display before the clock starts.
const PREROLL: usize = 3;
/// A presentation time this far past the latest sent is a jump in the file's timing, not a gap
/// to wait out.
const PTS_JUMP: Duration = Duration::from_secs(10);
/// Access units sent to the decoding thread and pictures decoded but not yet shown, at most.
const SEND_AHEAD: usize = 12;
/// Parts of a file the reading thread may have read ahead and not yet handed over (a bound on
/// memory: a long clip is never held whole).
const READ_AHEAD: usize = 48;
/// Access units looked at to find a clip's first presentation time (B-frames come out of order).
const PTS_WINDOW: usize = 8;
/// Pictures whose latency and presentation error the audit's percentiles are over.
const WINDOW: usize = 4096;

/// What the reading thread sends: the file's parts, or why it cannot be played at all.
type Reading = Receiver<Result<Loaded, DemuxError>>;

struct Clip {
    path: PathBuf,
    codec: Codec,
    /// Access units read and not yet sent to the decoder.
    units: VecDeque<AccessUnit>,
    /// The file's reading thread, until it has read everything.
    incoming: Option<Reading>,
    /// Access units sent to the decoder.
    sent: usize,
    /// Where the clip starts on the playlist's timeline (set when its first unit is sent).
    base: Option<Duration>,
    /// The clip's first pts (timestamps are made relative to it).
    first_pts: Duration,
    /// The latest pts sent.
    last_pts: Duration,
    frame_time: Duration,
    fps: f64,
    /// Units are skipped up to the next keyframe (the decoder was reset).
    resync: bool,
}

impl Clip {
    fn fully_read(&self) -> bool {
        self.incoming.is_none()
    }

    /// Where the clip ends on the timeline, once all of it was sent.
    fn end(&self) -> Option<Duration> {
        let base = self.base?;
        Some(base + self.last_pts.saturating_sub(self.first_pts) + self.frame_time)
    }
}

/// What `vitrine msg status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct PlayerStatus {
    pub file: Option<String>,
    pub position_s: f64,
    pub fps: f64,
    pub decoder: Option<String>,
    /// "zero-copy: V4L2 dmabuf on a plane", or what copies.
    pub path: String,
    pub paused: bool,
    pub finished: bool,
    /// Errors so far (items skipped, pictures that failed), and the last few of them.
    pub error_count: u64,
    pub errors: Vec<String>,
}

/// The audit as `stats` and `--stats` report it.
#[derive(Debug, Clone, Serialize)]
pub struct VideoReport {
    #[serde(flatten)]
    pub counters: VideoStats,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// How far from its presentation time each picture reached the screen (|flip - due|, the
    /// last 4096 pictures): at most half a refresh period when every picture makes the vblank
    /// nearest its time.
    pub present_error_p50_ms: Option<f64>,
    pub present_error_p99_ms: Option<f64>,
    pub present_error_max_ms: Option<f64>,
    /// The same, of the pictures whose frame made the vblank it was made for (the others are
    /// counted in `vblanks_missed`).
    pub on_target_error_p99_ms: Option<f64>,
    pub on_target_error_max_ms: Option<f64>,
    /// CPU time (user + system, all of vitrine's threads) from the first picture on screen.
    pub cpu_ms: Option<f64>,
    pub cpu_ms_per_frame: Option<f64>,
    /// From the player's creation (at start-up) to the first picture on screen.
    pub first_frame_ms: Option<f64>,
    /// Wake-ups of the compositor's loop thread from the first picture on screen, and per
    /// picture presented.
    pub loop_wakeups: Option<u64>,
    pub loop_wakeups_per_frame: Option<f64>,
}

/// Voluntary context switches of the calling thread: how often it slept and was woken. The
/// player runs on the compositor's loop thread, so this counts the loop's wake-ups.
fn thread_wakeups() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    usage.ru_nvcsw as u64
}

/// CPU time this process used so far (every thread).
fn process_cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

pub struct Player {
    items: Vec<PathBuf>,
    looping: bool,
    next_item: usize,
    clips: VecDeque<Clip>,
    decoder: Option<DecoderThread>,
    /// Access units sent to the decoder that have not come back as a picture or a skip.
    outstanding: usize,
    /// Decoder buffers the display has not imported yet.
    fresh: Vec<smithay::backend::allocator::dmabuf::Dmabuf>,
    queue: VecDeque<VideoFrame>,
    current: Option<VideoFrame>,
    /// The instant the timeline's zero was shown at.
    start: Option<Instant>,
    timeline_end: Duration,
    paused_at: Option<Instant>,
    pub stats: VideoStats,
    /// Decode-to-scanout latencies and presentation errors of the last pictures (ms).
    latencies: crate::window::Rolling,
    present_errors: crate::window::Rolling,
    /// The same, of the pictures whose frame made the vblank it was made for: what the choice
    /// of vblank is worth, apart from repaints that overran.
    on_target_errors: crate::window::Rolling,
    /// The vblank the picture being shown was chosen for, and the refresh period then.
    aimed_at: Option<(Instant, Duration)>,
    errors: crate::window::Errors,
    finished: bool,
    /// Set when the display path last changed the frame it shows.
    shown_new: bool,
    /// Pictures still to come from a replaced playlist, dropped on arrival.
    discard: usize,
    /// The counters of decoders used before the current one (replaced, failed, reset).
    retired: VideoStats,
    /// The video ladder on the current item: decoder failures so far (1: reopened, 2: software
    /// decoding, 3: the item is skipped).
    failures_on_item: u32,
    /// Decode in software whatever devices there are (the ladder's second step), until the item
    /// ends; then the devices are looked for again.
    force_software: bool,
    /// A decoder failed and what took over may be a fallback: devices are looked for again at
    /// each new item until a V4L2 decoder opens.
    degraded: bool,
    /// Presentation times from which the clock may wait: an item's first picture, the first
    /// after a decoder reset. Arriving late, such a picture moves the clock instead of being
    /// dropped with the ones after it (a new item's decoder set-up, a reset, is a hold of the
    /// last picture, not a skip).
    rebase: VecDeque<Duration>,
    /// When the decoder last reported anything: a decoder with work that says nothing for
    /// `stall_after` has stalled.
    last_event: Instant,
    /// The loop thread's run delay, read when a picture is chosen (see `frame_for`).
    run_delay: Option<RunDelay>,
    delay_at_pick: Option<Duration>,
    /// The playlist item being read, if any.
    loader: Option<(PathBuf, Reading)>,
    /// Items that failed one after the other (a looping list of bad items stops).
    failed_in_row: usize,
    /// Items the video ladder skipped (every decoder failed on them) since a picture was last
    /// shown.
    ladder_skips_in_row: usize,
    /// When the ladder last skipped an item (pictures decoded before it do not end the run).
    ladder_skipped_at: Option<Instant>,
    /// Since when the video that should play does not, with the ladder run out: every item of
    /// the playlist skipped by it, or no decoder could be started. The watchdog is not fed
    /// meanwhile (a restart of the process may bring the decoder back).
    frozen_since: Option<Instant>,
    /// While frozen: the next item is not tried before this (each try opens decoders and reads
    /// a file; a list that fails at once must not spin).
    retry_at: Option<Instant>,
    /// The process's CPU time when the first picture was shown, and the loop's wake-ups then.
    cpu_at_start: Option<Duration>,
    wakeups_at_start: Option<u64>,
    created: Instant,
    first_frame_after: Option<Duration>,
    /// Items opened so far (a looping list logs each once).
    opened: Vec<PathBuf>,
    /// The display scans dmabufs out (DRM): software decoding writes into dmabufs.
    scanout: bool,
    /// Wakes the compositor's loop when the threads deliver what the player waits for.
    waker: Option<LoopWaker>,
}

impl Player {
    pub fn new(items: Vec<PathBuf>, looping: bool) -> Self {
        Self {
            items,
            looping,
            next_item: 0,
            clips: VecDeque::new(),
            decoder: None,
            outstanding: 0,
            fresh: Vec::new(),
            queue: VecDeque::new(),
            current: None,
            start: None,
            timeline_end: Duration::ZERO,
            paused_at: None,
            stats: VideoStats::default(),
            latencies: crate::window::Rolling::new(WINDOW),
            present_errors: crate::window::Rolling::new(WINDOW),
            on_target_errors: crate::window::Rolling::new(WINDOW),
            aimed_at: None,
            errors: Default::default(),
            finished: false,
            shown_new: false,
            discard: 0,
            retired: VideoStats::default(),
            failures_on_item: 0,
            force_software: false,
            degraded: false,
            rebase: VecDeque::new(),
            last_event: Instant::now(),
            run_delay: None,
            delay_at_pick: None,
            loader: None,
            failed_in_row: 0,
            ladder_skips_in_row: 0,
            ladder_skipped_at: None,
            frozen_since: None,
            retry_at: None,
            cpu_at_start: None,
            wakeups_at_start: None,
            created: Instant::now(),
            first_frame_after: None,
            opened: Vec::new(),
            scanout: false,
            waker: None,
        }
    }

    /// The loop's wake-up for the reading and decoding threads.
    pub fn set_waker(&mut self, waker: LoopWaker) {
        self.waker = Some(waker);
    }

    /// Tell the player the display scans dmabufs out on planes (set before playing starts).
    pub fn set_scanout(&mut self, scanout: bool) {
        self.scanout = scanout;
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Everything played and the last picture presented.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Replace the playlist with one file, played now.
    pub fn play_now(&mut self, path: PathBuf) {
        self.items = vec![path];
        self.looping = false;
        self.next_item = 0;
        self.clips.clear();
        self.queue.clear();
        self.start = None;
        self.timeline_end = Duration::ZERO;
        self.finished = false;
        self.loader = None;
        self.failed_in_row = 0;
        self.rebase.clear();
        if let Some(d) = &mut self.decoder {
            // What was sent still comes back; it is dropped on arrival by `discard`.
            d.drain();
            self.discard = self.outstanding;
        }
    }

    pub fn pause(&mut self) {
        if self.paused_at.is_none() {
            self.paused_at = Some(Instant::now());
        }
    }

    pub fn resume(&mut self) {
        if let Some(at) = self.paused_at.take() {
            // Paused, the decoder had nothing to do: the stall check starts again now.
            self.last_event = Instant::now();
            let paused = at.elapsed();
            if let Some(start) = &mut self.start {
                *start += paused;
            }
            // Latency is decode-to-scanout of playing time, not time spent paused.
            for f in &mut self.queue {
                f.decoded_at += paused;
            }
        }
    }

    /// Skip to the next playlist item.
    pub fn next(&mut self) {
        if let Some(clip) = self.clips.front_mut() {
            // What was read is dropped and the reading thread stops (its channel closes).
            clip.units.clear();
            clip.incoming = None;
        }
        self.queue.clear();
        self.start = None;
    }

    fn record_error(&mut self, err: String) {
        self.record_file_error(None, err);
    }

    /// An error about a playlist item, with the file as its own log field (journald FILE=).
    fn record_file_error(&mut self, file: Option<&std::path::Path>, err: String) {
        match file {
            Some(file) => tracing::error!(target: "video", file = %file.display(), "{err}"),
            None => tracing::error!(target: "video", "{err}"),
        }
        self.errors.push(err);
    }

    /// Start reading the next playlist item on a thread of its own (file reads and index
    /// parsing are not work for the compositor's loop). Returns false at the end of the list.
    fn start_load(&mut self) -> bool {
        if self.loader.is_some() || self.items.is_empty() {
            return self.loader.is_some();
        }

        if self.next_item >= self.items.len() {
            // Looping over a list whose every item failed would spin: stop instead.
            if !self.looping || self.failed_in_row >= self.items.len() {
                return false;
            }
            self.next_item = 0;
        }
        let path = self.items[self.next_item].clone();
        self.next_item += 1;
        // Bounded: the thread reads ahead at most READ_AHEAD parts, then waits for the player.
        let (tx, rx) = std::sync::mpsc::sync_channel(READ_AHEAD);
        let file = path.clone();
        let waker = self.waker.clone();
        let spawned = std::thread::Builder::new().name("vitrine-demux".into()).spawn(move || {
            crate::process::lower_thread_priority(crate::process::WORKER_NICE);
            let wake = || {
                if let Some(w) = &waker {
                    w.wake();
                }
            };
            // A closed channel (the item was skipped or replaced) stops the reading.
            let result = demux::stream(&file, &mut |part| {
                let sent = tx.send(Ok(part)).is_ok();
                wake();
                sent
            });
            if let Err(e) = result {
                let _ = tx.send(Err(e));
                wake();
            }
        });
        match spawned {
            Ok(_) => {
                self.loader = Some((path, rx));
                true
            }
            Err(e) => {
                self.record_error(format!("cannot start reading the next item: {e}"));
                false
            }
        }
    }

    /// Skip the item being read: it cannot be played.
    fn reject_item(&mut self, path: &std::path::Path, why: String) {
        self.loader = None;
        self.failed_in_row += 1;
        self.record_file_error(Some(path), format!("skipping playlist item: {why}"));
    }

    /// Once the item being read has its stream described, it joins the clip queue (or is
    /// reported and skipped when nothing here can play it).
    fn poll_load(&mut self) {
        let Some((path, rx)) = &self.loader else { return };
        let path = path.clone();
        let info = match rx.try_recv() {
            Ok(Ok(Loaded::Header(info))) => info,
            Ok(Ok(_)) => return self.reject_item(&path, format!("{}: no stream description", path.display())),
            Ok(Err(e)) => return self.reject_item(&path, e.to_string()),
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => {
                return self.reject_item(&path, format!("{}: reading stopped", path.display()));
            }
        };
        let Some((_, rx)) = self.loader.take() else { return };
        let fps = info.fps.unwrap_or(25.0);
        // A looping playlist opens its items again and again: said once, then at debug level.
        let again = self.looping && self.opened.contains(&path);
        if !again {
            self.opened.push(path.clone());
        }
        let size = (info.width, info.height);
        if again {
            tracing::debug!(target: "video", file = %path.display(), ?size, fps, "playlist item opened again");
        } else {
            tracing::info!(target: "video", file = %path.display(), ?size, fps, "playlist item opened");
        }
        self.clips.push_back(Clip {
            path,
            codec: info.codec,
            units: VecDeque::new(),
            incoming: Some(rx),
            sent: 0,
            base: None,
            first_pts: Duration::ZERO,
            last_pts: Duration::ZERO,
            frame_time: Duration::from_secs_f64(1.0 / fps),
            fps,
            resync: false,
        });
    }

    /// Move what the front clip's reading thread has read into the clip, up to READ_AHEAD
    /// units. A damaged file is reported (its valid part plays); an unreadable one is skipped.
    fn receive_units(&mut self) {
        let Some(clip) = self.clips.front_mut() else { return };
        let mut damage = None;
        while clip.units.len() < READ_AHEAD {
            let Some(rx) = &clip.incoming else { break };
            match rx.try_recv() {
                Ok(Ok(Loaded::Unit(unit))) => clip.units.push_back(unit),
                Ok(Ok(Loaded::Header(_))) => {}
                // Damage ends the file; so does an error (a container reader that gave up
                // midway) or the thread stopping.
                Ok(Ok(Loaded::Damage(e)) | Err(e)) => {
                    damage = Some(e);
                    clip.incoming = None;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => clip.incoming = None,
            }
        }
        let path = clip.path.clone();
        let read = clip.sent + clip.units.len();
        if clip.fully_read() && read == 0 {
            self.clips.pop_front();
            self.failed_in_row += 1;
            let why = damage.map(|e| format!(" ({e})")).unwrap_or_default();
            let err = format!("skipping playlist item: {}: no picture to play{why}", path.display());
            self.record_file_error(Some(&path), err);
        } else if let Some(e) = damage {
            self.record_file_error(Some(&path), format!("{e}; playing the {read} valid pictures"));
        }
    }

    fn ensure_decoder(&mut self, codec: super::demux::Codec) -> Result<(), VideoError> {
        if self.decoder.as_ref().is_some_and(|d| d.codec() == codec) {
            return Ok(());
        }
        // The thread finds and opens the device itself: opening every /dev/video* node is not
        // work for the compositor's loop.
        self.decoder = Some(DecoderThread::start(codec, self.scanout, self.force_software, self.waker.clone())?);
        self.last_event = Instant::now();
        Ok(())
    }

    /// Take what the decoding thread reported.
    fn collect(&mut self) {
        let Some(dec) = self.decoder.as_mut() else { return };
        let dec_codec = dec.codec();
        let mut failed = None;
        while let Some(event) = dec.try_event() {
            self.last_event = Instant::now();
            match event {
                Event::Frame(frame) => {
                    self.outstanding = self.outstanding.saturating_sub(1);
                    if self.discard > 0 {
                        self.discard -= 1;
                    } else {
                        self.queue.push_back(frame);
                    }
                }
                Event::Buffers(b) => self.fresh.extend(b),
                Event::Opened(name) => {
                    if !name.starts_with("software") {
                        self.degraded = false;
                    }
                    tracing::info!(target: "video", decoder = %name, "video decoder opened")
                }
                Event::Skipped(why) => {
                    self.outstanding = self.outstanding.saturating_sub(1);
                    self.discard = self.discard.saturating_sub(1);
                    let file = self.clips.front().map(|c| c.path.display().to_string()).unwrap_or_default();
                    self.errors.push(format!("{file}: picture skipped: {why}"));
                    tracing::error!(target: "video", file, %why, "picture skipped");
                }
                Event::Failed(why) => {
                    failed = Some(why);
                    break;
                }
            }
        }
        match failed {
            // Nothing here decodes this item's coding: it is named and skipped, the next one
            // plays.
            Some(VideoError::NoDecoder(why)) => {
                self.retire_decoder();
                let codec = dec_codec;
                while self.clips.front().is_some_and(|c| c.codec == codec) {
                    if let Some(clip) = self.clips.pop_front() {
                        self.failed_in_row += 1;
                        let err = format!("skipping playlist item: {}: {why}", clip.path.display());
                        self.record_file_error(Some(&clip.path), err);
                    }
                }
            }
            Some(why) => self.decoder_failed(why),
            None => {}
        }
    }

    /// Keep the decoder fed and collect what it finished. Never blocks. While the player waits
    /// for something (pictures to show, units to send), the threads wake the loop when it comes.
    pub fn pump(&mut self) {
        if self.finished || self.items.is_empty() {
            return;
        }
        // Said before looking, so that nothing delivered meanwhile goes unnoticed.
        if let Some(w) = &self.waker {
            w.want();
        }
        self.feed();
        tracing::trace!(
            target: "video",
            queue = self.queue.len(),
            outstanding = self.outstanding,
            units = self.clips.front().map(|c| c.units.len()),
            starving = self.starving(),
            "pumped"
        );
        if !self.starving() {
            if let Some(w) = &self.waker {
                w.unwant();
            }
        }
    }

    /// Whether the player waits for the threads: no picture to show next, a preroll not done,
    /// a decoder with room but no units read, an item being opened.
    fn starving(&self) -> bool {
        if self.finished || self.paused_at.is_some() {
            return false;
        }
        let room = self.outstanding + self.queue.len() < SEND_AHEAD;
        let unread = self.clips.front().is_some_and(|c| c.units.is_empty() && !c.fully_read());
        // An empty queue is a want once the next picture is nearly due. Right after a picture
        // went up, the next one is still most of a frame away: the repaint that shows it
        // collects it, and a decoder delivering meanwhile needs not wake the loop.
        let half_frame = self.clips.front().map(|c| c.frame_time / 2).unwrap_or(Duration::from_millis(20));
        let overdue = self.expected_due().is_none_or(|t| t <= Instant::now() + half_frame);
        (self.queue.is_empty() && overdue)
            || (self.start.is_none() && self.queue.len() < PREROLL)
            || (room && unread)
            || self.loader.is_some()
    }

    fn feed(&mut self) {
        self.collect();
        self.poll_load();
        // One item is read ahead of the one being decoded, for a gapless switch.
        let more = self.clips.len() >= 2 || self.start_load();
        if !more && self.clips.is_empty() {
            if self.queue.is_empty() && self.decoder_idle() {
                self.end_of_playlist();
            }
            return;
        }
        let Some(codec) = self.clips.front().map(|c| c.codec) else { return };
        if self.decoder.as_ref().is_some_and(|d| d.codec() != codec) {
            // The next item needs another decoder: once this one has given back everything.
            if !self.decoder_idle() {
                return;
            }
            self.retire_decoder();
        }
        let new_item = self.clips.front().is_some_and(|c| c.sent == 0);
        if self.degraded && new_item && self.failures_on_item == 0 && self.decoder.is_some() {
            // Since a failure the items play on a fallback: each new one looks for the devices
            // again (a device that came back is used), once the last one's pictures are out.
            if !self.decoder_idle() {
                return;
            }
            self.force_software = false;
            self.retire_decoder();
        }
        // Frozen, the ladder run out: the next item is tried FROZEN_RETRY after the last (the
        // stall timer wakes the player for it).
        if let Some(at) = self.retry_at {
            if Instant::now() < at {
                return;
            }
            self.retry_at = None;
        }
        match self.ensure_decoder(codec) {
            Ok(()) => {}
            // Nothing here decodes this item: it is named and skipped, the next one plays.
            Err(e @ VideoError::NoDecoder(_)) => {
                if let Some(clip) = self.clips.pop_front() {
                    let err = format!("skipping playlist item: {}: {e}", clip.path.display());
                    self.record_file_error(Some(&clip.path), err);
                }
                return;
            }
            // The decoder itself failed: nothing more can be played.
            Err(e) => {
                self.record_error(e.to_string());
                self.finished = true;
                self.frozen("no decoder could be started");
                return;
            }
        }
        // Pictures decoded and not yet shown count too: a decoder faster than the display (the
        // software one) must not run further ahead than its buffers allow.
        while self.outstanding + self.queue.len() < SEND_AHEAD {
            self.receive_units();
            let Some(dec) = self.decoder.as_mut() else { return };
            let Some(clip) = self.clips.front_mut() else { return };
            if clip.codec != dec.codec() {
                // The next item needs another decoder: switched at a later pump, once idle.
                return;
            }
            if clip.units.is_empty() {
                if !clip.fully_read() {
                    // The reading thread is behind: more comes at a later pump.
                    return;
                }
                // The clip is all sent: its DPB is flushed and the next item follows at once.
                dec.drain();
                if let Some(end) = clip.end() {
                    self.timeline_end = end;
                }
                self.clips.pop_front();
                // The ladder starts again with the next item.
                self.failures_on_item = 0;
                if self.degraded {
                    // Not on to the next item with this decoder: see above.
                    return;
                }
                continue;
            }
            if clip.base.is_none() {
                // The first presentation time is the smallest of the first few units (a stream
                // with B-frames does not present its first unit first).
                if clip.units.len() < PTS_WINDOW && !clip.fully_read() {
                    return;
                }
                clip.first_pts = clip.units.iter().take(PTS_WINDOW).map(|u| u.pts).min().unwrap_or_default();
                clip.base = Some(self.timeline_end);
                self.rebase.push_back(self.timeline_end);
                self.failed_in_row = 0;
            }
            let mut resumed = false;
            if clip.resync {
                // After a decoder reset: from the next keyframe on (what depends on pictures
                // the old decoder held cannot be decoded).
                if !clip.units.front().is_some_and(|u| u.keyframe) {
                    clip.units.pop_front();
                    clip.sent += 1;
                    self.stats.units_skipped_to_keyframe += 1;
                    continue;
                }
                clip.resync = false;
                resumed = true;
            }
            let Some(unit) = clip.units.pop_front() else { return };
            // Timestamps are the file's word: a jump far ahead of what was sent (a picture due
            // in hours, or years) is logged and re-based to follow on, never waited out.
            if clip.sent > 0 && unit.pts > clip.last_pts + PTS_JUMP {
                let to = clip.last_pts + clip.frame_time;
                if self.stats.timestamps_rebased == 0 {
                    tracing::warn!(
                        target: "video",
                        file = %clip.path.display(),
                        from_ms = clip.last_pts.as_millis() as u64,
                        to_ms = unit.pts.as_millis() as u64,
                        "a timestamp jumps ahead: the pictures from it follow on instead"
                    );
                }
                self.stats.timestamps_rebased += 1;
                // The clip's origin moves by the jump: this unit comes one frame after the last.
                clip.first_pts += unit.pts - to;
                clip.last_pts += unit.pts - to;
            }
            let base = clip.base.unwrap_or(self.timeline_end);
            let pts = base + unit.pts.saturating_sub(clip.first_pts);
            if resumed {
                self.rebase.push_back(pts);
            }
            clip.last_pts = clip.last_pts.max(unit.pts);
            dec.decode(unit.data, pts);
            clip.sent += 1;
            self.outstanding += 1;
        }
    }

    fn decoder_idle(&self) -> bool {
        self.outstanding == 0
    }

    fn end_of_playlist(&mut self) {
        if !self.finished {
            self.finished = true;
            tracing::info!(target: "video", "playlist finished");
        }
    }

    /// Decoder buffers made since the last call, for the display to import ahead of use.
    pub fn take_new_buffers(&mut self) -> Vec<smithay::backend::allocator::dmabuf::Dmabuf> {
        std::mem::take(&mut self.fresh)
    }

    /// The picture being shown.
    pub fn current(&self) -> Option<&VideoFrame> {
        self.current.as_ref()
    }

    /// Whether a new frame was chosen and not yet reported presented.
    pub fn has_unpresented(&self) -> bool {
        self.shown_new
    }

    pub fn status(&self) -> PlayerStatus {
        let clip = self.clips.front();
        let position = match (self.start, &self.current) {
            (Some(_), Some(f)) => f.pts.as_secs_f64(),
            _ => 0.0,
        };
        let decoder = self.decoder.as_ref().map(|d| d.name().to_string());
        let path = match &decoder {
            Some(d) if d.starts_with("software") && d.contains("dmabufs") => {
                "copies: software decoding, every picture copied into an NV12 dmabuf a plane shows".to_string()
            }
            Some(d) if d.starts_with("software") => {
                "copies: software decoding, every picture converted in memory and composited".to_string()
            }
            Some(_) if self.stats.frames_composited == 0 => "zero-copy: V4L2 dmabuf on a plane".to_string(),
            Some(_) => format!("V4L2 dmabuf, {} pictures composited (copied)", self.stats.frames_composited),
            None => "none".to_string(),
        };
        PlayerStatus {
            file: clip.map(|c| c.path.display().to_string()),
            position_s: position,
            fps: clip.map(|c| c.fps).unwrap_or(0.0),
            decoder,
            path,
            paused: self.paused_at.is_some(),
            finished: self.finished,
            error_count: self.errors.total,
            errors: self.errors.recent(),
        }
    }

    /// The audit: decoder counters plus what the player and the display counted.
    pub fn report(&self) -> VideoReport {
        let mut c = self.stats.clone();
        let mut decoders = self.retired.clone();
        if let Some(d) = &self.decoder {
            decoders.add(&d.stats());
        }
        {
            let s = &decoders;
            c.frames_decoded = s.frames_decoded;
            c.decode_errors = s.decode_errors;
            c.dmabufs_exported = s.dmabufs_exported;
            c.bitstream_bytes = s.bitstream_bytes;
            c.v4l2_ioctls = s.v4l2_ioctls;
            c.cpu_copied_bytes += s.cpu_copied_bytes;
            c.frame_mappings += s.frame_mappings;
        }
        let latency = self.latencies.percentiles(&[0.5, 0.99]);
        let error = self.present_errors.percentiles(&[0.5, 0.99]);
        let cpu = self.cpu_at_start.map(|at| process_cpu_time().saturating_sub(at).as_secs_f64() * 1000.0);
        let per_frame = cpu.filter(|_| c.frames_presented > 0).map(|ms| ms / c.frames_presented as f64);
        let wakeups = self.wakeups_at_start.map(|at| thread_wakeups().saturating_sub(at));
        let wakeups_per_frame =
            wakeups.filter(|_| c.frames_presented > 0).map(|w| w as f64 / c.frames_presented as f64);
        VideoReport {
            counters: c,
            latency_p50_ms: latency[0],
            latency_p99_ms: latency[1],
            present_error_p50_ms: error[0],
            present_error_p99_ms: error[1],
            present_error_max_ms: self.present_errors.max(),
            on_target_error_p99_ms: self.on_target_errors.percentiles(&[0.99])[0],
            on_target_error_max_ms: self.on_target_errors.max(),
            cpu_ms: cpu,
            cpu_ms_per_frame: per_frame,
            first_frame_ms: self.first_frame_after.map(|d| d.as_secs_f64() * 1000.0),
            loop_wakeups: wakeups,
            loop_wakeups_per_frame: wakeups_per_frame,
        }
    }

    /// The errors met so far (bad items, decode failures), for status and exit codes.
    pub fn errors(&self) -> &crate::window::Errors {
        &self.errors
    }
}
