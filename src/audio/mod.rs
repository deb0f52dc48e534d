//! Sound: the audio track of the item on screen, decoded (AAC-LC) and played through ALSA on a
//! thread of its own, following the video's clock.
//!
//! The display is the master clock. The player tells the sound thread each item's place on the
//! playlist's timeline (when its first picture is due) and the clock's start (the instant the
//! timeline's zero is due, moved by holds and pauses). The thread works out when each block of
//! samples is due, when the device will play the next sample it is given (its delay), and
//! corrects the difference: at a start or after a jump, with silence or by cutting samples (with
//! a short fade); while playing, by playing a little faster or slower (within ±0.5 %). A device
//! that is missing or vanishes never stops the video: sound is tried again every few seconds.

mod output;
mod resample;
pub mod track;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::AudioConfig;
use crate::window::Rolling;

/// The A/V offsets kept for `stats` (one a block: about 11 s of 48 kHz AAC).
const OFFSET_WINDOW: usize = 512;

/// Where an item's sound goes on the playlist's timeline.
#[derive(Debug, Clone)]
pub struct ItemStart {
    pub path: PathBuf,
    /// When on the timeline the item's first picture is due.
    pub base: Duration,
    /// That picture's presentation time in the file.
    pub first_pts: Duration,
}

enum Command {
    Item(ItemStart),
    /// The instant the timeline's zero is due; `None`: paused or not started.
    Clock(Option<Instant>),
    /// Everything queued is dropped (next item, another playlist).
    Flush,
    Volume {
        percent: u8,
        muted: bool,
    },
    Stop,
}

/// What the sound thread reports, for `status` and `stats`.
#[derive(Debug, Default)]
struct Shared {
    device: String,
    /// "playing", "waiting for the device", "idle", "paused".
    state: &'static str,
    /// The current item's audio codec; "none" for an item without sound.
    codec: Option<String>,
    /// Why the current item plays in silence, when it has sound vitrine does not decode.
    silent_because: Option<String>,
    underruns: u64,
    device_failures: u64,
    device_opens: u64,
    items_silent: u64,
    decode_errors: u64,
    frames_written: u64,
    silence_frames: u64,
    frames_cut: u64,
    jumps: u64,
    resample_ppm: f64,
    /// Sound minus picture, in ms (positive: the sound is late).
    offsets: Option<Rolling>,
    last_offset_ms: Option<f64>,
}

/// The sound thread's handle, owned by the video player.
pub struct Audio {
    commands: Sender<Command>,
    shared: Arc<Mutex<Shared>>,
    clock_sent: Option<Option<Instant>>,
    volume: u8,
    muted: bool,
}

impl Audio {
    /// Start the sound thread for `[audio]`; `None` when sound is off.
    pub fn start(config: &AudioConfig) -> Option<Audio> {
        if !config.enabled {
            return None;
        }
        let (commands, rx) = mpsc::channel();
        let shared = Arc::new(Mutex::new(Shared {
            device: config.device.clone(),
            state: "idle",
            offsets: Some(Rolling::new(OFFSET_WINDOW)),
            ..Default::default()
        }));
        let settings = output::Settings {
            device: config.device.clone(),
            latency: Duration::from_millis(config.latency_ms as u64),
            volume: config.volume,
        };
        let thread_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("vitrine-sound".into())
            .spawn(move || output::run(rx, thread_shared, settings));
        if let Err(e) = spawned {
            tracing::error!(target: "audio", error = %e, "cannot start the sound thread: playing without sound");
            return None;
        }
        Some(Audio { commands, shared, clock_sent: None, volume: config.volume, muted: false })
    }

    /// The item whose first picture is due at `base` on the timeline.
    pub fn item(&self, path: &Path, base: Duration, first_pts: Duration) {
        let _ = self.commands.send(Command::Item(ItemStart { path: path.to_path_buf(), base, first_pts }));
    }

    /// The playback clock as the player has it now (sent when it changed).
    pub fn clock(&mut self, start: Option<Instant>) {
        if self.clock_sent != Some(start) {
            self.clock_sent = Some(start);
            let _ = self.commands.send(Command::Clock(start));
        }
    }

    /// Drop what is queued: the items played next start afresh.
    pub fn flush(&mut self) {
        let _ = self.commands.send(Command::Flush);
        self.clock(None);
    }

    /// Volume in percent.
    pub fn set_volume(&mut self, percent: u8) {
        self.volume = percent.min(100);
        self.send_volume();
    }

    pub fn set_muted(&mut self, muted: bool) {
        self.muted = muted;
        self.send_volume();
    }

    fn send_volume(&self) {
        let _ = self.commands.send(Command::Volume { percent: self.volume, muted: self.muted });
    }

    /// For `msg status`: device, state, codec, volume and the current A/V offset.
    pub fn status(&self) -> serde_json::Value {
        let s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        serde_json::json!({
            "device": s.device,
            "state": s.state,
            "codec": s.codec,
            "silent_because": s.silent_because,
            "volume": self.volume,
            "muted": self.muted,
            "av_offset_ms": s.last_offset_ms,
        })
    }

    /// For `msg stats`.
    pub fn stats(&self) -> serde_json::Value {
        let s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let (p50, p99) = match &s.offsets {
            Some(o) => {
                let p = o.percentiles(&[0.5, 0.99]);
                (p[0], p[1])
            }
            None => (None, None),
        };
        serde_json::json!({
            "audio_underruns": s.underruns,
            "audio_device_failures": s.device_failures,
            "audio_device_opens": s.device_opens,
            "audio_items_silent": s.items_silent,
            "audio_decode_errors": s.decode_errors,
            "audio_frames_written": s.frames_written,
            "audio_silence_frames": s.silence_frames,
            "audio_frames_cut": s.frames_cut,
            "audio_jumps": s.jumps,
            "audio_resample_ppm": s.resample_ppm,
            "av_offset_ms_p50": p50,
            "av_offset_ms_p99": p99,
        })
    }
}

impl Drop for Audio {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
    }
}
