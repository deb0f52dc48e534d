//! What the player reports: `vitrine msg status`, and the audit (`stats`, `--stats`).

use std::time::Duration;

use serde::Serialize;

use super::*;

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
pub(super) fn thread_wakeups() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    usage.ru_nvcsw as u64
}

/// CPU time this process used so far (every thread).
pub(super) fn process_cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

impl Player {
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
}
