//! `vitrine decode`: the video path without the display. Files go through the same reading
//! threads, decoder and player as when they are shown, each picture is taken at its
//! presentation time (or as soon as it is decoded, unpaced) and released at once. What it
//! costs is the decoding floor the display path is measured against, and on a new board it
//! answers "does this decoder keep up with this file" before anything is on a screen.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use smithay::reexports::calloop::timer::{TimeoutAction, Timer};
use smithay::reexports::calloop::EventLoop;

use super::player::{Player, VideoReport};
use super::LoopWaker;

#[derive(Debug, Serialize)]
pub struct DecodeReport {
    pub decoder: Option<String>,
    pub paced: bool,
    pub wall_ms: f64,
    #[serde(flatten)]
    pub audit: VideoReport,
    pub errors: Vec<String>,
}

impl DecodeReport {
    /// 0 when every item played, 1 otherwise (as `--exit-when-done`).
    pub fn code(&self) -> i32 {
        if self.errors.is_empty() {
            0
        } else {
            1
        }
    }

    pub fn human(&self) -> String {
        let c = &self.audit.counters;
        let mut out = format!(
            "decoder: {}\npictures: {} decoded, {} taken, {} late, {} decode errors\n",
            self.decoder.as_deref().unwrap_or("none"),
            c.frames_decoded,
            c.frames_presented,
            c.frames_dropped,
            c.decode_errors
        );
        out += &format!(
            "copies: {} bytes, {} mappings; {} dmabufs exported\n",
            c.cpu_copied_bytes, c.frame_mappings, c.dmabufs_exported
        );
        if let Some(ms) = self.audit.cpu_ms_per_frame {
            out += &format!(
                "cpu: {ms:.2} ms a picture ({:.0} ms in {:.0} ms)\n",
                self.audit.cpu_ms.unwrap_or(0.0),
                self.wall_ms
            );
        }
        for e in &self.errors {
            out += &format!("error: {e}\n");
        }
        out
    }
}

struct Decoding {
    player: Player,
    paced: bool,
    done: bool,
}

/// Decode `files` and report.
pub fn run(files: Vec<PathBuf>, paced: bool) -> Result<DecodeReport, String> {
    crate::process::block_signals();
    let mut event_loop: EventLoop<'static, Decoding> = EventLoop::try_new().map_err(|e| e.to_string())?;
    let (waker, source) = LoopWaker::new().map_err(|e| e.to_string())?;
    let mut player = Player::new(files, false);
    player.set_scanout(true);
    player.set_waker(waker);
    let mut state = Decoding { player, paced, done: false };
    let handle = event_loop.handle();
    handle.insert_source(source, |_, _, d| take(d)).map_err(|e| e.to_string())?;
    // A first look, then the decoder's threads wake the loop whenever the player waits for them.
    handle
        .insert_source(Timer::immediate(), |_, _, d| {
            take(d);
            TimeoutAction::Drop
        })
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut next_wake: Option<Instant> = None;
    while !state.done {
        let timeout = next_wake.map(|t| t.saturating_duration_since(Instant::now()));
        event_loop.dispatch(timeout, &mut state).map_err(|e| e.to_string())?;
        take(&mut state);
        next_wake = if state.paced { state.player.next_due() } else { None };
    }
    let status = state.player.status();
    Ok(DecodeReport {
        decoder: status.decoder,
        paced,
        wall_ms: started.elapsed().as_secs_f64() * 1000.0,
        audit: state.player.report(),
        errors: state.player.errors().recent(),
    })
}

/// Take every picture that is due (all decoded ones when unpaced) and let it go.
fn take(d: &mut Decoding) {
    loop {
        let now = Instant::now();
        let due = d.player.next_due();
        if d.paced && due.is_some_and(|t| t > now) {
            break;
        }
        // Paced: the picture due by now (earlier ones not taken in time count as late).
        // Unpaced: the next picture, whenever it is due.
        let target = if d.paced { now } else { due.unwrap_or(now) };
        let frame = d.player.frame_for(target, Duration::from_millis(1));
        match frame {
            Some(frame) if d.player.has_unpresented() => d.player.presented(&frame, now),
            _ => break,
        }
    }
    if d.player.finished() && !d.player.has_unpresented() {
        d.done = true;
    }
}
