//! The playback clock: which picture goes to which vblank, when the next one is due, and how
//! far from its time each one reached the screen.

use std::time::{Duration, Instant};

use super::*;

impl Player {
    /// The frame to show at the vblank at `vblank`: the latest one due before the middle of the
    /// refresh after it, so each picture goes to the vblank nearest its time. Earlier due frames
    /// that were never shown are dropped and counted.
    pub fn frame_for(&mut self, vblank: Instant, refresh: Duration) -> Option<VideoFrame> {
        self.pump();
        if self.paused_at.is_some() {
            return self.current.clone();
        }
        let deadline = vblank + refresh / 2;
        let now = Instant::now();
        let asked_before = self.last_asked.replace(now).map(|t| now.saturating_duration_since(t));
        if self.start.is_none() {
            // Preroll: the clock starts once the decoder is a few pictures ahead (or has nothing
            // more to give), so a slow start does not make the first pictures late.
            let ready = self.queue.len() >= PREROLL || (!self.queue.is_empty() && self.decoder_idle());
            // The first picture goes up at once; the clock starts when it is on screen (see
            // `presented`), so the one-off cost of showing it makes nothing late.
            if ready && !self.shown_new {
                if let Some(first) = self.queue.pop_front() {
                    self.current = Some(first);
                    self.shown_new = true;
                }
            }
            return self.current.clone();
        }
        self.wait_for_late_start(vblank, refresh);
        let Some(start) = self.start else { return self.current.clone() };
        let mut chosen = None;
        let mut dropped = 0;
        while let Some(f) = self.queue.front() {
            if start + f.pts >= deadline {
                break;
            }
            let f = self.queue.pop_front()?;
            if let Some(prev) = chosen.replace(f) {
                dropped += 1;
                tracing::debug!(
                    target: "video",
                    pts_ms = prev.pts.as_millis() as u64,
                    late_ms = deadline.saturating_duration_since(start + prev.pts).as_millis() as u64,
                    clock_ms = deadline.saturating_duration_since(start).as_millis() as u64,
                    decoded_before_due_ms = (start + prev.pts).saturating_duration_since(prev.decoded_at).as_millis() as u64,
                    // How long since the display last asked for a picture, and how far ahead of
                    // its vblank it asks now: where the lateness came from (see the soak).
                    asked_before_ms = asked_before.map(|d| d.as_millis() as u64),
                    vblank_in_us = vblank.saturating_duration_since(now).as_micros() as u64,
                    "late picture dropped"
                );
            }
        }
        if chosen.is_some() {
            // The kernel's run delay of this thread since the last picture chosen: a refresh or
            // more of it, and the pictures missed meanwhile are the machine's lateness.
            let delay = self.run_delay.get_or_insert_with(RunDelay::of_this_thread).total();
            let waited = delay.zip(self.delay_at_pick).map(|(now, then)| now.saturating_sub(then));
            self.delay_at_pick = delay;
            self.stats.frames_dropped += dropped;
            if dropped > 0 && waited.is_some_and(|w| w >= refresh) {
                self.stats.frames_dropped_starved += dropped;
                tracing::debug!(target: "video", dropped, waited_ms = waited.unwrap_or_default().as_millis() as u64, "the loop waited for a CPU: pictures dropped");
            }
        }
        // A late start moved the clock: the sound follows.
        self.sync_audio();
        if let Some(f) = chosen {
            self.current = Some(f);
            self.shown_new = true;
            self.aimed_at = Some((vblank, refresh));
            self.last_event = Instant::now();
            // Pictures left the queue (shown or dropped): the decoder has room for more now, not
            // at the next wake-up (which may wait for it).
            self.pump();
        }
        self.current.clone()
    }

    /// The next picture starts an item (or follows a decoder reset) and is late for `vblank`:
    /// the clock moves so that it is due now, rather than dropping it and what follows.
    fn wait_for_late_start(&mut self, vblank: Instant, refresh: Duration) {
        let (Some(start), Some(front)) = (self.start, self.queue.front().map(|f| f.pts)) else { return };
        let mut from = None;
        while self.rebase.front().is_some_and(|&r| r <= front) {
            from = self.rebase.pop_front();
        }
        if from.is_none() {
            return;
        }
        let due = start + front;
        if due + refresh / 2 < vblank {
            let late = vblank - due;
            self.start = Some(start + late);
            self.stats.clock_holds += 1;
            self.stats.clock_held_ms += late.as_millis() as u64;
            tracing::debug!(target: "video", pts_ms = front.as_millis() as u64, late_ms = late.as_millis() as u64, "a start came late: the clock waits for it");
        }
    }

    /// When the next picture wants to be on screen: its presentation time, or now for the first
    /// picture once the preroll is there. `None` while paused or while nothing is decoded yet
    /// (the decoding thread wakes the loop when a picture comes).
    pub fn next_due(&mut self) -> Option<Instant> {
        if self.paused_at.is_some() || self.finished {
            return None;
        }
        // A picture chosen for a frame that did not reach the screen (a commit refused, a
        // frame that sets the mode) is still to be shown.
        if self.shown_new {
            return Some(Instant::now());
        }
        match self.start {
            None => {
                let ready = self.queue.len() >= PREROLL || (!self.queue.is_empty() && self.decoder_idle());
                ready.then(Instant::now)
            }
            Some(start) => {
                if let Some(f) = self.queue.front() {
                    return Some(start + f.pts);
                }
                // Not decoded yet: when it should be due, the decoder has normally delivered it
                // (the repaint then collects it).
                if let Some(t) = self.expected_due().filter(|&t| t > Instant::now()) {
                    return Some(t);
                }
                // Past that, the decoder's delivery wakes the loop: asked for before looking
                // once more, so that a picture delivered since the last pump (while the player
                // did not want one: a slow repaint sits between the two) is not left waiting.
                if let Some(w) = &self.waker {
                    w.want();
                }
                self.collect();
                self.queue.front().map(|f| start + f.pts)
            }
        }
    }

    /// When the picture after the current one should be due, from the clip's frame rate.
    pub(super) fn expected_due(&self) -> Option<Instant> {
        let start = self.start?;
        let current = self.current.as_ref()?;
        let frame_time = self.clips.front().map(|c| c.frame_time).unwrap_or(Duration::from_millis(40));
        Some(start + current.pts + frame_time)
    }

    /// The display showed `frame` (the flip completed, or the frame was rendered).
    pub fn presented(&mut self, frame: &VideoFrame, at: Instant) {
        if !self.shown_new {
            return;
        }
        if self.start.is_none() {
            self.start = Some(at.checked_sub(frame.pts).unwrap_or(at));
            self.cpu_at_start = Some(process_cpu_time());
            self.wakeups_at_start.get_or_insert_with(thread_wakeups);
            self.first_frame_after.get_or_insert(at.saturating_duration_since(self.created));
            tracing::debug!(target: "video", pts_ms = frame.pts.as_millis() as u64, "playback clock started");
            self.sync_audio();
        }
        self.shown_new = false;
        self.stats.frames_presented += 1;
        self.thawed(frame.decoded_at);
        self.latencies.push(at.saturating_duration_since(frame.decoded_at).as_secs_f64() * 1000.0);
        if let Some(start) = self.start {
            let due = start + frame.pts;
            let error = if at > due { at - due } else { due - at };
            self.present_errors.push(error.as_secs_f64() * 1000.0);
            match self.aimed_at.take() {
                Some((target, period)) if at > target + period / 2 => self.stats.vblanks_missed += 1,
                Some(_) => self.on_target_errors.push(error.as_secs_f64() * 1000.0),
                None => {}
            }
            tracing::trace!(
                target: "pacing",
                pts_us = frame.pts.as_micros() as u64,
                error_us = error.as_micros() as u64,
                // CLOCK_MONOTONIC, as the kernel stamped the flip (what sound is timed against).
                flip_us = crate::clock::monotonic(at).as_micros() as u64,
                "picture presented"
            );
        }
    }
}
