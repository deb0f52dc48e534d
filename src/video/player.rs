//! The player: a playlist of files, decoded ahead, each picture shown at the vblank nearest its
//! presentation time. Late pictures are dropped and counted. The next item is opened and
//! decoded while the current one plays, so the switch happens from one vblank to the next.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::demux::{self, AccessUnit, Codec, DemuxError, Loaded};
use super::worker::{DecoderThread, Event};
use super::{LoopWaker, VideoError, VideoFrame, VideoStats};
use crate::process::RunDelay;

mod clock;
mod ladder;
mod load;
mod report;

use load::Reading;
use report::{process_cpu_time, thread_wakeups};
pub use report::{PlayerStatus, VideoReport};

/// Decoded pictures waiting for display before the clock starts.
const PREROLL: usize = 3;
/// A presentation time this far past the latest sent is a jump in the file's timing, not a gap
/// to wait out.
const PTS_JUMP: Duration = Duration::from_secs(10);
/// Access units sent to the decoding thread and pictures decoded but not yet shown, at most.
const SEND_AHEAD: usize = 12;
/// Access units looked at to find a clip's first presentation time (B-frames come out of order).
const PTS_WINDOW: usize = 8;
/// Pictures whose latency and presentation error the audit's percentiles are over.
const WINDOW: usize = 4096;

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
    /// Its pictures' matrix and range.
    colour: crate::video::colour::Colour,
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
    /// Where each item sent to the decoder starts on the timeline, with its pictures' colour.
    colours: VecDeque<(Duration, crate::video::colour::Colour)>,
    /// When the decoder last reported anything: a decoder with work that says nothing for
    /// `stall_after` has stalled.
    last_event: Instant,
    /// The loop thread's run delay, read when a picture is chosen (see `frame_for`).
    run_delay: Option<RunDelay>,
    delay_at_pick: Option<Duration>,
    /// When the display last asked for a picture (`frame_for`): a drop says how long before.
    last_asked: Option<Instant>,
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
    /// The sound thread (`[audio] enabled`), told each item's place and the clock.
    audio: Option<crate::audio::Audio>,
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
            colours: VecDeque::new(),
            last_event: Instant::now(),
            run_delay: None,
            delay_at_pick: None,
            last_asked: None,
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
            audio: None,
        }
    }

    /// Play sound through `audio` (replacing any before; `None`: no sound). The items already
    /// placed on the timeline and the clock are told to it.
    pub fn set_audio(&mut self, audio: Option<crate::audio::Audio>) {
        self.audio = audio;
        self.place_audio_items(0);
        self.sync_audio();
    }

    /// Tell the sound thread where the items from the `skip`th on are on the timeline (those
    /// already placed).
    fn place_audio_items(&self, skip: usize) {
        let Some(a) = &self.audio else { return };
        for clip in self.clips.iter().skip(skip) {
            if let Some(base) = clip.base {
                a.item(&clip.path, base, clip.first_pts);
            }
        }
    }

    /// Whether sound is played.
    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    /// The sound thread, for volume changes.
    pub fn audio_mut(&mut self) -> Option<&mut crate::audio::Audio> {
        self.audio.as_mut()
    }

    /// The sound's place and counters, for `status` and `stats`.
    pub fn audio(&self) -> Option<&crate::audio::Audio> {
        self.audio.as_ref()
    }

    /// Tell the sound thread the clock as it is now: where the timeline's zero is due, or
    /// nothing while paused or not started.
    pub(super) fn sync_audio(&mut self) {
        let clock = if self.paused_at.is_some() { None } else { self.start };
        if let Some(a) = &mut self.audio {
            a.clock(clock);
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
        self.colours.clear();
        if let Some(a) = &mut self.audio {
            a.flush();
        }
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
        self.sync_audio();
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
        self.sync_audio();
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
        // The sound of the item skipped goes; the items after it are placed again.
        if let Some(a) = &mut self.audio {
            a.flush();
        }
        self.place_audio_items(1);
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
                        let mut frame = frame;
                        // The item the picture belongs to: the last to start at or before it.
                        while self.colours.get(1).is_some_and(|(start, _)| *start <= frame.pts) {
                            self.colours.pop_front();
                        }
                        if let Some((_, colour)) = self.colours.front() {
                            frame.colour = *colour;
                        }
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
                if let Some(a) = &self.audio {
                    a.item(&clip.path, self.timeline_end, clip.first_pts);
                }
                self.rebase.push_back(self.timeline_end);
                self.colours.push_back((self.timeline_end, clip.colour));
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

    /// The errors met so far (bad items, decode failures), for status and exit codes.
    pub fn errors(&self) -> &crate::window::Errors {
        &self.errors
    }
}
