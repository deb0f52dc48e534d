//! The sound thread: items' audio tracks decoded in turn and written to the ALSA device, each
//! block at the time the video's clock says (see the module above).

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alsa::pcm::{Access, Format, HwParams, PCM};
use alsa::{Direction, ValueOr};

use super::resample::Drift;
use super::track::{self, AudioTrack, Block, Opened};
use super::{Command, ItemStart, Shared};

/// An error of sound and picture beyond this is put right at once (silence, or samples cut),
/// not by playing faster or slower: a start, a clock that jumped (a hold, a pause).
const JUMP: f64 = 0.060;
/// The most the playing speed is changed to follow the display's clock: ±0.5 %.
const MAX_PPM: f64 = 5000.0;
/// An offset is taken out over about this long (seconds) by the speed change.
const CATCH_UP: f64 = 2.0;
/// How long after a start the device's delay is first trusted, and how far off the start may be
/// then before it is put right at once.
const SETTLE: f64 = 0.03;
const SETTLE_TOLERANCE: f64 = 0.003;
/// For this long after a start, an error beyond `EARLY_TOLERANCE` is still put right at once: a
/// start on a loaded machine can leave tens of milliseconds that one correction does not take
/// out (seen under TCG: 49 ms at the first reading, 28 ms after it), which playing faster would
/// take seconds to.
const EARLY: f64 = 1.0;
const EARLY_TOLERANCE: f64 = 0.010;
/// The fade where the waveform is cut or starts from silence.
const FADE: f64 = 0.004;
/// How often a missing or failed device is tried again.
const RETRY: Duration = Duration::from_secs(2);
/// Items queued ahead at most (the player reads one ahead).
const MAX_ITEMS: usize = 8;
/// Files whose sound problems were said (each once).
const MAX_WARNED: usize = 1024;

pub struct Settings {
    pub device: String,
    pub latency: Duration,
    pub volume: u8,
}

struct Item {
    start: ItemStart,
    track: Option<Box<AudioTrack>>,
    opened: bool,
    /// This file's sound problems are said (the first time it is played).
    say: bool,
    /// Blocks given out so far.
    blocks: u64,
}

struct Device {
    pcm: PCM,
    rate: u32,
    /// When the first frame written since the device (re)started plays, for devices that tell
    /// no delay (a file); `None` until something is written.
    started: Option<Instant>,
    written: u64,
    /// The device reports no delay after a write: it has no clock of its own (ALSA's file or
    /// null plugins), and the written frames are the clock.
    clockless: bool,
    /// The start was checked against the device's delay (see `SETTLE`).
    settled: bool,
    /// Paused in place (the video is paused): what it holds plays on when the video resumes.
    paused: bool,
}

enum Wait {
    /// For the next command.
    Block,
    /// For the next command, or this long.
    For(Duration),
    /// Not at all: there is sound to write.
    Run,
}

enum Wrote {
    All,
    Underrun,
    Failed(String),
}

struct Sound {
    settings: Settings,
    shared: Arc<Mutex<Shared>>,
    items: VecDeque<Item>,
    clock: Option<Instant>,
    /// The next block, its `at` on the timeline.
    pending: Option<Block>,
    device: Option<Device>,
    retry_at: Option<Instant>,
    /// The device's failure was said (said again only once it worked in between).
    failure_said: bool,
    drift: Drift,
    ppm: f64,
    /// All there was to play was played (and the device drained): nothing to do until a command.
    idle: bool,
    /// The next block is too early to write before this (the device would hold more than its
    /// latency): nothing to do until then, or a command.
    wake_at: Option<Instant>,
    fade_in: usize,
    gain: f32,
    warned: std::collections::HashSet<std::path::PathBuf>,
}

pub(super) fn run(commands: Receiver<Command>, shared: Arc<Mutex<Shared>>, settings: Settings) {
    let gain = settings.volume as f32 / 100.0;
    let mut sound = Sound {
        settings,
        shared,
        items: VecDeque::new(),
        clock: None,
        pending: None,
        device: None,
        retry_at: None,
        failure_said: false,
        drift: Drift::default(),
        ppm: 0.0,
        idle: false,
        wake_at: None,
        fade_in: 0,
        gain,
        warned: Default::default(),
    };
    loop {
        let first = match sound.wait() {
            Wait::Block => match commands.recv() {
                Ok(c) => Some(c),
                Err(_) => return,
            },
            Wait::For(wait) => match commands.recv_timeout(wait) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            },
            Wait::Run => match commands.try_recv() {
                Ok(c) => Some(c),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return,
            },
        };
        let mut next = first;
        while let Some(command) = next {
            if !sound.take(command) {
                return;
            }
            next = commands.try_recv().ok();
        }
        sound.step();
    }
}

/// Seconds from `b` to `a` (negative when `a` is earlier).
fn secs_between(a: Instant, b: Instant) -> f64 {
    if a >= b {
        (a - b).as_secs_f64()
    } else {
        -(b - a).as_secs_f64()
    }
}

impl Sound {
    fn with_shared(&self, f: impl FnOnce(&mut Shared)) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
    }

    /// What the thread waits for before its next step: nothing to play (or paused, or not
    /// started, with the device open) waits for a command and nothing else, so that a silent
    /// vitrine's sound thread never wakes.
    fn wait(&self) -> Wait {
        if self.device.is_none() && (self.pending.is_some() || !self.items.is_empty()) {
            if let Some(at) = self.retry_at {
                // Blocks whose time passed meanwhile are let go once the device is back.
                return Wait::For(at.saturating_duration_since(Instant::now()));
            }
        }
        if let Some(at) = self.wake_at.filter(|_| self.clock.is_some()) {
            return Wait::For(at.saturating_duration_since(Instant::now()));
        }
        let nothing = self.pending.is_none() && self.items.is_empty();
        if self.clock.is_none() || (nothing && self.idle) {
            Wait::Block
        } else {
            Wait::Run
        }
    }

    /// A command; `false` to stop.
    fn take(&mut self, command: Command) -> bool {
        self.idle = false;
        self.wake_at = None;
        match command {
            Command::Stop => return false,
            Command::Item(start) => {
                if self.items.len() >= MAX_ITEMS {
                    self.items.pop_front();
                }
                self.items.push_back(Item { start, track: None, opened: false, say: false, blocks: 0 });
            }
            Command::Clock(clock) => {
                if clock.is_some() {
                    self.resume_device();
                } else if !self.pause_device() {
                    // Paused (or stopped) on a device that cannot pause: what it holds is
                    // dropped; on resuming, the next block is put at its time again.
                    self.restart_device();
                }
                self.clock = clock;
                let state = if clock.is_some() { "playing" } else { "paused" };
                self.with_shared(|s| s.state = state);
            }
            Command::Flush => {
                self.items.clear();
                self.pending = None;
                self.restart_device();
            }
            Command::Volume { percent, muted } => {
                self.gain = if muted { 0.0 } else { percent.min(100) as f32 / 100.0 };
            }
        }
        true
    }

    /// The device, playing, paused where it is (when its driver can), so that nothing it
    /// holds is lost: `false` when it cannot be.
    fn pause_device(&mut self) -> bool {
        let Some(dev) = self.device.as_mut().filter(|d| d.started.is_some() && !d.clockless) else {
            return false;
        };
        if dev.paused {
            return true;
        }
        let can = dev.pcm.hw_params_current().is_ok_and(|p| p.can_pause());
        dev.paused = can && dev.pcm.pause(true).is_ok();
        dev.paused
    }

    /// A device paused in place plays on; its position is checked again shortly after (see
    /// `SETTLE`), so that the few milliseconds between the picture's pause and the sound's are
    /// put right at once.
    fn resume_device(&mut self) {
        let Some(dev) = self.device.as_mut().filter(|d| d.paused) else { return };
        dev.paused = false;
        if dev.pcm.pause(false).is_ok() {
            dev.started = Some(Instant::now());
            dev.settled = false;
        } else {
            self.restart_device();
        }
    }

    /// The device stops playing what it holds; the next write starts it again, aligned.
    fn restart_device(&mut self) {
        if let Some(dev) = &mut self.device {
            let _ = dev.pcm.drop();
            let _ = dev.pcm.prepare();
            dev.started = None;
            dev.written = 0;
            dev.paused = false;
        }
        self.drift.reset();
        self.ppm = 0.0;
    }

    /// The next block of the items queued, placed on the timeline: an item's priming (before
    /// its first picture) is cut, and so is what runs past the next item's start.
    fn next_block(&mut self) -> Option<Block> {
        loop {
            if !self.items.front()?.opened {
                let (path, first_pts) = {
                    let item = self.items.front_mut()?;
                    item.opened = true;
                    (item.start.path.clone(), item.start.first_pts)
                };
                // Said once a file (a looping list plays it again and again).
                let first_time = self.warned.len() < MAX_WARNED && self.warned.insert(path.clone());
                if let Some(item) = self.items.front_mut() {
                    item.say = first_time;
                }
                let (codec, silent_because, track) = match track::open(&path, first_pts) {
                    Ok(Opened::Track(t)) => (Some(t.codec.clone()), None, Some(t)),
                    Ok(Opened::NoAudio) => (Some("none".to_string()), None, None),
                    Ok(Opened::Unsupported(why)) => {
                        if first_time {
                            tracing::warn!(target: "audio", file = %path.display(), %why, "this item's sound is not decoded: it plays in silence");
                        }
                        (None, Some(why), None)
                    }
                    Err(e) => {
                        let why = e.to_string();
                        if first_time {
                            tracing::warn!(target: "audio", file = %path.display(), %why, "cannot read this item's sound: it plays in silence");
                        }
                        (None, Some(why), None)
                    }
                };
                let silent = track.is_none();
                self.with_shared(|s| {
                    s.codec = codec;
                    s.silent_because = silent_because;
                    if silent {
                        s.items_silent += 1;
                    }
                });
                self.items.front_mut()?.track = track;
            }
            let base = self.items.front()?.start.base.as_secs_f64();
            let next_base = self.items.get(1).map(|i| i.start.base.as_secs_f64());
            let item = self.items.front_mut()?;
            let mut ended = 0;
            let block = match item.track.as_mut().map(|t| t.next_block()) {
                Some(Ok(Some(block))) => Some(block),
                Some(Ok(None)) | None => None,
                Some(Err(why)) => {
                    // Counted every time, said the first.
                    ended = 1;
                    if item.say {
                        tracing::warn!(target: "audio", file = %item.start.path.display(), %why, "this item's sound ends here");
                    }
                    None
                }
            };
            let Some(mut block) = block else {
                let errors = item.track.as_ref().map(|t| t.decode_errors).unwrap_or(0) + ended;
                self.with_shared(|s| s.decode_errors += errors);
                self.items.pop_front();
                continue;
            };
            block.at += base;
            // Priming: the part before the item's first picture.
            if block.at < base {
                let cut = (((base - block.at) * block.rate as f64).round() as usize).min(block.frames());
                block.samples.drain(..cut * 2);
                block.at = base;
            }
            // Past the next item's start: cut there, with a fade out.
            if let Some(next) = next_base {
                let keep = ((next - block.at) * block.rate as f64).round().max(0.0) as usize;
                if keep < block.frames() {
                    block.samples.truncate(keep * 2);
                    fade_out(&mut block.samples, block.rate);
                    // The rest of this item's sound is not heard: it is not decoded either.
                    if let Some(item) = self.items.front_mut() {
                        item.track = None;
                    }
                }
            }
            if block.frames() > 0 {
                if let Some(item) = self.items.front_mut() {
                    block.first = item.blocks == 0;
                    item.blocks += 1;
                }
                return Some(block);
            }
        }
    }

    fn step(&mut self) {
        self.wake_at = None;
        if self.pending.is_none() {
            self.pending = self.next_block();
        }
        let Some(start) = self.clock else {
            // Not started yet (or paused): the item's sound is read and the device opened now,
            // so that neither delays the first sample once the first picture is up.
            if let Some(rate) = self.pending.as_ref().map(|b| b.rate) {
                if self.device.as_ref().map(|d| d.rate) != Some(rate) {
                    self.open_device(rate);
                }
            }
            return;
        };
        let Some(rate) = self.pending.as_ref().map(|b| b.rate) else {
            // Nothing more to play for now: a device with a clock plays out what it holds and
            // stops (rather than running dry, an underrun); the next item's first block starts it
            // again at its time. A device without one keeps its count of frames: that count is
            // its clock, and the next item is put after the silence it is owed.
            if let Some(dev) = self.device.as_mut().filter(|d| d.started.is_some() && !d.clockless) {
                let _ = dev.pcm.drain();
                let _ = dev.pcm.prepare();
                dev.started = None;
                dev.written = 0;
            }
            self.with_shared(|s| s.state = "idle");
            self.idle = true;
            return;
        };
        if self.device.as_ref().map(|d| d.rate) != Some(rate) && !self.open_device(rate) {
            // No device: the blocks whose time passed go, so that sound starts in step when it
            // comes back.
            let now = Instant::now();
            if let Some(b) = &self.pending {
                let end = start + Duration::from_secs_f64((b.at + b.frames() as f64 / rate as f64).max(0.0));
                if end <= now {
                    self.pending = None;
                }
            }
            return;
        }
        let Some((started, clockless, written, settled)) =
            self.device.as_ref().map(|d| (d.started, d.clockless, d.written, d.settled))
        else {
            return;
        };
        let Some(mut block) = self.pending.take() else { return };
        let due = start + Duration::from_secs_f64(block.at.max(0.0));
        let latency = self.settings.latency.as_secs_f64();
        let rate_f = rate as f64;
        let mut silence = 0usize;
        let mut cut = 0usize;
        match started {
            None => {
                let now = Instant::now();
                let lead = secs_between(due, now);
                if lead > latency {
                    // Too early to start: the device would hold more than its buffer.
                    self.pending = Some(block);
                    self.wake_at = Some(now + Duration::from_secs_f64(lead - latency));
                    return;
                }
                if lead > 0.0 {
                    silence = (lead * rate_f).round() as usize;
                } else {
                    cut = (-lead * rate_f).round() as usize;
                    if cut >= block.frames() {
                        // All of it is past: the device starts with a block still to come.
                        self.with_shared(|s| s.frames_cut += block.frames() as u64);
                        return;
                    }
                }
                // The device starts with a few periods' worth (the rest of a block cut short at
                // a late start would run dry before the next write: an underrun).
                let least = (latency / 2.0 * rate_f) as usize;
                while block.frames().saturating_sub(cut) < least {
                    match self.next_block() {
                        Some(next) if !next.first && next.rate == block.rate => block.samples.extend(next.samples),
                        other => {
                            self.pending = other;
                            break;
                        }
                    }
                }
                self.fade_in = (FADE * rate_f) as usize;
                self.drift.reset();
                if let Some(d) = self.device.as_mut() {
                    d.started = Some(now);
                    d.written = 0;
                    d.settled = false;
                }
            }
            Some(t0) => {
                let delay = if clockless { None } else { self.device.as_ref().and_then(|d| d.pcm.delay().ok()) };
                let now = Instant::now();
                let heard = match delay {
                    Some(delay) => now + Duration::from_secs_f64(delay.max(0) as f64 / rate_f),
                    None if clockless => t0 + Duration::from_secs_f64(written as f64 / rate_f),
                    None => now,
                };
                if clockless {
                    // Nothing holds the writer back: it keeps to the clock itself.
                    let ahead = secs_between(heard, now);
                    if ahead > latency {
                        self.pending = Some(block);
                        self.wake_at = Some(now + Duration::from_secs_f64(ahead - latency));
                        return;
                    }
                }
                let err = secs_between(heard, due);
                let since_start = secs_between(now, t0);
                if since_start < 1.0 {
                    tracing::debug!(target: "audio", err_ms = err * 1000.0, delay = ?delay, since_start_ms = since_start * 1000.0, "sound after a start");
                }
                self.with_shared(|s| {
                    if let Some(o) = &mut s.offsets {
                        o.push(err.abs() * 1000.0);
                    }
                    s.last_offset_ms = Some(err * 1000.0);
                });
                // One frame's difference is rounding, not a gap.
                let seam = block.first && err.abs() * rate_f > 1.0;
                // The first reading of the device's delay after a start (once it has played a
                // little): what the start could not know (the device's own latency) is put right
                // at once rather than over seconds.
                let settling = !settled && !clockless && since_start >= SETTLE;
                if settling {
                    if let Some(d) = self.device.as_mut() {
                        d.settled = true;
                    }
                }
                let settle = (settling && err.abs() > SETTLE_TOLERANCE)
                    || (settled && !clockless && since_start < EARLY && err.abs() > EARLY_TOLERANCE);
                if settle {
                    tracing::debug!(target: "audio", err_ms = err * 1000.0, "sound settled after its start");
                }
                if seam || settle || err.abs() > JUMP {
                    if err > 0.0 {
                        cut = (err * rate_f).round() as usize;
                    } else {
                        silence = (-err * rate_f).round() as usize;
                    }
                    self.fade_in = (FADE * rate_f) as usize;
                    self.drift.reset();
                    if !seam && !settle {
                        self.ppm = 0.0;
                        self.with_shared(|s| s.jumps += 1);
                        tracing::debug!(target: "audio", err_ms = err * 1000.0, "sound and picture apart: put right at once");
                    }
                } else if !clockless {
                    let target = (err / CATCH_UP * 1e6).clamp(-MAX_PPM, MAX_PPM);
                    self.ppm += (target - self.ppm) * 0.1;
                }
            }
        }
        if cut > 0 {
            let cut = cut.min(block.frames());
            block.samples.drain(..cut * 2);
            self.with_shared(|s| s.frames_cut += cut as u64);
        }
        let ppm = self.ppm;
        self.with_shared(|s| s.resample_ppm = ppm);
        let samples = self.drift.process(&block.samples, 1.0 + ppm * 1e-6);
        if silence > 0 {
            self.with_shared(|s| s.silence_frames += silence as u64);
            if !self.write_i16(&vec![0; silence * 2]) {
                return;
            }
        }
        self.write(&samples);
    }

    /// Open the device for `rate`; false when it cannot be (tried again after `RETRY`).
    fn open_device(&mut self, rate: u32) -> bool {
        let now = Instant::now();
        if self.retry_at.is_some_and(|at| at > now) {
            return false;
        }
        self.device = None;
        // alsa-lib's own complaints go to a buffer of this thread, not to stderr.
        let complaints = alsa::Output::local_error_handler().ok();
        match open_pcm(&self.settings.device, rate, self.settings.latency) {
            Ok(pcm) => {
                tracing::info!(target: "audio", device = %self.settings.device, rate, "sound device opened");
                self.device = Some(Device {
                    pcm,
                    rate,
                    started: None,
                    written: 0,
                    clockless: false,
                    settled: false,
                    paused: false,
                });
                self.retry_at = None;
                self.failure_said = false;
                self.with_shared(|s| {
                    s.device_opens += 1;
                    s.state = "playing";
                });
                true
            }
            Err(why) => {
                let detail = complaints.map(|c| c.borrow().to_string()).unwrap_or_default();
                if !self.failure_said {
                    tracing::warn!(target: "audio", device = %self.settings.device, %why, detail = detail.trim(), "no sound device: the video plays on, sound is tried again every 2 s");
                    self.failure_said = true;
                } else {
                    tracing::debug!(target: "audio", device = %self.settings.device, %why, "sound device still missing");
                }
                self.retry_at = Some(now + RETRY);
                self.with_shared(|s| {
                    s.device_failures += 1;
                    s.state = "waiting for the device";
                });
                false
            }
        }
    }

    /// Write interleaved stereo to the device, with the volume and any fade-in. An underrun is
    /// counted and the device started again at the next block; a device that failed is closed
    /// (and tried again later). Returns whether everything was written.
    fn write(&mut self, samples: &[f32]) -> bool {
        let gain = self.gain;
        let mut fade_total = (FADE * self.device.as_ref().map(|d| d.rate).unwrap_or(48_000) as f64) as usize;
        fade_total = fade_total.max(1);
        let mut out: Vec<i16> = Vec::with_capacity(samples.len());
        for (k, pair) in samples.chunks(2).enumerate() {
            let mut g = gain;
            if self.fade_in > 0 && k < self.fade_in {
                g *= 1.0 - (self.fade_in - k) as f32 / fade_total as f32;
            }
            for &s in pair {
                out.push(((s * g).clamp(-1.0, 1.0) * 32767.0).round() as i16);
            }
        }
        self.fade_in = self.fade_in.saturating_sub(samples.len() / 2);
        self.write_i16(&out)
    }

    /// Write samples as they are (see `write`).
    fn write_i16(&mut self, out: &[i16]) -> bool {
        let Some(dev) = self.device.as_mut() else { return false };
        let outcome = match dev.pcm.io_i16() {
            Err(e) => Wrote::Failed(e.to_string()),
            Ok(io) => {
                let mut at = 0;
                let mut outcome = Wrote::All;
                while at < out.len() {
                    match io.writei(&out[at..]) {
                        Ok(frames) => {
                            at += frames * 2;
                            dev.written += frames as u64;
                        }
                        Err(e) if e.errno() == libc::EPIPE || e.errno() == libc::ESTRPIPE => {
                            let _ = dev.pcm.try_recover(e, true);
                            outcome = Wrote::Underrun;
                            break;
                        }
                        Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
                        Err(e) => {
                            outcome = Wrote::Failed(e.to_string());
                            break;
                        }
                    }
                }
                outcome
            }
        };
        match outcome {
            Wrote::All => {
                let frames = (out.len() / 2) as u64;
                if !dev.clockless && frames > 0 && matches!(dev.pcm.delay(), Ok(0)) {
                    dev.clockless = true;
                    tracing::info!(target: "audio", device = %self.settings.device, "the sound device tells no delay: it is fed at the video's pace");
                }
                self.with_shared(|s| {
                    s.frames_written += frames;
                    s.state = "playing";
                });
                true
            }
            Wrote::Underrun => {
                dev.started = None;
                dev.written = 0;
                self.drift.reset();
                self.with_shared(|s| s.underruns += 1);
                tracing::debug!(target: "audio", "sound underrun: started again at the next block");
                false
            }
            Wrote::Failed(why) => {
                self.lost(&why);
                false
            }
        }
    }

    /// The device failed while playing (unplugged, removed): closed, tried again later.
    fn lost(&mut self, why: &str) {
        tracing::warn!(target: "audio", device = %self.settings.device, %why, "the sound device failed: the video plays on, sound is tried again every 2 s");
        self.device = None;
        self.failure_said = true;
        self.retry_at = Some(Instant::now() + RETRY);
        self.with_shared(|s| {
            s.device_failures += 1;
            s.state = "waiting for the device";
        });
    }
}

/// Fade the end of a block out over `FADE` (a fade in runs across writes: see `write`).
fn fade_out(samples: &mut [f32], rate: u32) {
    let frames = samples.len() / 2;
    let n = ((FADE * rate as f64) as usize).min(frames).max(1);
    for k in 0..n.min(frames) {
        let g = k as f32 / n as f32;
        let frame = frames - 1 - k;
        samples[2 * frame] *= g;
        samples[2 * frame + 1] *= g;
    }
}

/// An ALSA PCM for interleaved 16-bit stereo at `rate` (converted by ALSA's plug layer where the
/// device wants something else), with a buffer of about `latency`.
fn open_pcm(name: &str, rate: u32, latency: Duration) -> Result<PCM, String> {
    let pcm = PCM::new(name, Direction::Playback, false).map_err(|e| format!("cannot open '{name}': {e}"))?;
    {
        let hwp = HwParams::any(&pcm).map_err(|e| e.to_string())?;
        hwp.set_access(Access::RWInterleaved).map_err(|e| format!("interleaved access: {e}"))?;
        hwp.set_format(Format::s16()).map_err(|e| format!("16-bit samples: {e}"))?;
        hwp.set_channels(2).map_err(|e| format!("two channels: {e}"))?;
        let _ = hwp.set_rate_resample(true);
        hwp.set_rate(rate, ValueOr::Nearest).map_err(|e| format!("{rate} Hz: {e}"))?;
        let us = latency.as_micros() as u32;
        hwp.set_buffer_time_near(us, ValueOr::Nearest).map_err(|e| format!("a buffer of {us} µs: {e}"))?;
        hwp.set_period_time_near(us / 4, ValueOr::Nearest).map_err(|e| format!("periods of {} µs: {e}", us / 4))?;
        pcm.hw_params(&hwp).map_err(|e| format!("hardware parameters: {e}"))?;
    }
    {
        let swp = pcm.sw_params_current().map_err(|e| e.to_string())?;
        // Playing starts with the first write: its silence puts the first sample at its time.
        swp.set_start_threshold(1).map_err(|e| format!("start threshold: {e}"))?;
        pcm.sw_params(&swp).map_err(|e| format!("software parameters: {e}"))?;
    }
    let actual = pcm.hw_params_current().and_then(|h| h.get_rate()).map_err(|e| e.to_string())?;
    if actual != rate {
        return Err(format!("the device plays {actual} Hz, not {rate} Hz"));
    }
    Ok(pcm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fades_go_to_silence_at_the_cut() {
        let mut s = vec![1.0f32; 2 * 1000];
        fade_out(&mut s, 48_000);
        assert_eq!(s[2 * 999], 0.0);
        // 4 ms at 48 kHz: the last 192 frames.
        assert!(s[2 * 807] == 1.0 && s[2 * 808] < 1.0);
    }

    #[test]
    fn signed_seconds_between_instants() {
        let a = Instant::now();
        let b = a + Duration::from_millis(250);
        assert!((secs_between(b, a) - 0.25).abs() < 1e-9);
        assert!((secs_between(a, b) + 0.25).abs() < 1e-9);
    }
}
