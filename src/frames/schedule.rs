//! The frame cycle run on the compositor: repaints asked for and run, vblank timers, the video's
//! next picture, and the player's wake-ups.

use std::time::Instant;

use smithay::output::Output;
use smithay::reexports::calloop::timer::{TimeoutAction, Timer};

use super::Repaint;
use crate::state::{Core, State};

impl Core {
    /// For the watchdog: since when the display path has waited for a repaint or a page flip
    /// (the oldest output still waiting), or the video has been frozen with its ladder run out,
    /// whichever came first.
    pub fn stalled_since(&self) -> Option<Instant> {
        let video = self.player.as_ref().and_then(|p| p.frozen_since());
        [self.frames.stalled_since(), video].into_iter().flatten().min()
    }

    /// Something on `output` changed: repaint it (once this dispatch is done, at most once per
    /// vblank).
    pub fn queue_redraw(&mut self, output: &Output) {
        self.screencopy_output_changed(output);
        let now = Instant::now();
        let Some(o) = self.frames.get_mut(output) else { return };
        o.queued = true;
        o.busy(now);
        self.frames.repaints_pending = true;
    }

    pub fn queue_redraw_all(&mut self) {
        let outputs: Vec<Output> = self.outputs.clone();
        for o in &outputs {
            self.queue_redraw(o);
        }
    }

    /// The output's frame reached the screen at `at` (a page flip, a virtual vblank): the next
    /// repaint may run, and the video's next picture is scheduled.
    pub fn frame_done(&mut self, output: &Output, at: Instant) {
        let Some(o) = self.frames.get_mut(output) else { return };
        o.in_flight = false;
        o.in_flight_since = None;
        o.clock.presented(at);
        o.presented += 1;
        o.progressed(Instant::now());
        if o.queued {
            self.frames.repaints_pending = true;
        }
        self.first_frame_shown();
        self.schedule_video();
    }

    /// The backend will not report the flip of the frame in flight on `output` (a VT switch, the
    /// display turned off, its state rebuilt): the next repaint may run.
    pub fn frame_lost(&mut self, output: &Output) {
        let Some(o) = self.frames.get_mut(output) else { return };
        o.in_flight_since = None;
        if std::mem::take(&mut o.in_flight) {
            o.progressed(Instant::now());
            if o.queued {
                self.frames.repaints_pending = true;
            }
        }
    }

    /// The output went away: its timers go with it.
    pub fn frames_removed(&mut self, output: &Output) {
        if let Some(pos) = self.frames.outputs.iter().position(|o| &o.output == output) {
            let o = self.frames.outputs.remove(pos);
            for token in o.vblank_timer.into_iter().chain(o.video_timer.map(|(_, t)| t)) {
                self.loop_handle.remove(token);
            }
        }
    }

    /// The output whose vblanks pace the video (the first output).
    pub fn video_output(&self) -> Option<Output> {
        self.outputs.first().cloned()
    }

    /// Arrange a repaint for the video's next picture: when it is due at the vblank nearest its
    /// presentation time, the repaint runs in the refresh period before that vblank, so its
    /// commit lands on it. Nothing is armed while the player has nothing to show next (it wakes
    /// the loop itself when a picture arrives).
    pub fn schedule_video(&mut self) {
        let Some(output) = self.video_output() else {
            self.watch_for_stall();
            return;
        };
        let due = self.player.as_mut().and_then(|p| p.next_due());
        // After `next_due`: what it collected may have retired a failed decoder.
        self.watch_for_stall();
        let now = Instant::now();
        let Some(o) = self.frames.get_mut(&output) else { return };
        if o.in_flight {
            // The frame on its way may be the one the picture is in; its flip schedules again.
            return;
        }
        // The repaint runs a quarter period after the vblank before the target one: late
        // enough that the display has passed that vblank (a commit then cannot land early),
        // early enough to leave most of a period for the repaint and the commit.
        let wake = due.map(|due| {
            let vblank = o.clock.nearest_vblank(due.max(now));
            let period = o.clock.period();
            let wake = vblank.checked_sub(period - period / 4).unwrap_or(vblank);
            if wake <= now && o.last_unchanged {
                o.clock.next_vblank(now)
            } else {
                wake
            }
        });
        tracing::trace!(
            target: "frames",
            due_in_us = ?due.map(|d| d.saturating_duration_since(now).as_micros() as u64),
            wake_in_us = ?wake.map(|d| d.saturating_duration_since(now).as_micros() as u64),
            "video scheduled"
        );
        match wake {
            Some(wake) if wake <= now => {
                if let Some((at, token)) = o.video_timer.take() {
                    // A timer already due may have its event queued in this very dispatch:
                    // it is left to fire (a repaint asked for twice runs once).
                    if at > now {
                        self.loop_handle.remove(token);
                    }
                }
                self.queue_redraw(&output);
            }
            Some(wake) => {
                if o.video_timer.is_some_and(|(at, _)| at == wake) {
                    return;
                }
                if let Some((at, token)) = o.video_timer.take() {
                    // A timer already due may have its event queued in this very dispatch:
                    // it is left to fire (a repaint asked for twice runs once).
                    if at > now {
                        self.loop_handle.remove(token);
                    }
                }
                let target = output.clone();
                let token = self.loop_handle.insert_source(Timer::from_deadline(wake), move |_, _, state| {
                    if let Some(o) = state.core.frames.get_mut(&target) {
                        if o.video_timer.is_some_and(|(at, _)| at == wake) {
                            o.video_timer = None;
                        }
                        // Said when it costs the picture its vblank: the wake-up is three
                        // quarters of a refresh before it (see above; the soak reads it).
                        let late = Instant::now().saturating_duration_since(wake);
                        let period = o.clock.period();
                        if late >= period - period / 4 {
                            tracing::debug!(target: "frames", late_us = late.as_micros() as u64, "the video's wake-up came late");
                        }
                    }
                    state.core.queue_redraw(&target);
                    TimeoutAction::Drop
                });
                match token {
                    Ok(token) => {
                        if let Some(o) = self.frames.get_mut(&output) {
                            o.video_timer = Some((wake, token));
                        }
                    }
                    Err(err) => tracing::error!(%err, "cannot arm the video timer"),
                }
            }
            None => {
                if let Some((at, token)) = o.video_timer.take() {
                    // A timer already due may have its event queued in this very dispatch:
                    // it is left to fire (a repaint asked for twice runs once).
                    if at > now {
                        self.loop_handle.remove(token);
                    }
                }
            }
        }
    }

    /// Repaint `output` again in `after` (its last frame was refused): never sooner, so that a
    /// display that keeps refusing costs a few tries a second, not a busy loop.
    fn retry_repaint(&mut self, output: &Output, after: std::time::Duration) {
        let target = output.clone();
        let armed = self.loop_handle.insert_source(Timer::from_duration(after), move |_, _, state| {
            state.core.queue_redraw(&target);
            TimeoutAction::Drop
        });
        if let Err(err) = armed {
            tracing::error!(%err, "cannot arm the repaint retry");
        }
    }

    /// While the decoder has pictures to give back, a timer looks for it having stalled (see
    /// `Player::stall_deadline`). It moves itself to the latest deadline when it fires, and
    /// goes when there is nothing to watch: one wake-up every few seconds during playback,
    /// none when idle.
    fn watch_for_stall(&mut self) {
        if self.frames.stall_timer.is_some() {
            return;
        }
        let Some(at) = self.player.as_ref().and_then(|p| p.stall_deadline()) else { return };
        let armed = self.loop_handle.insert_source(Timer::from_deadline(at), |_, _, state| {
            let stalled = state.core.player.as_mut().is_some_and(|p| p.check_stall());
            let next = state.core.player.as_ref().and_then(|p| p.stall_deadline());
            if stalled {
                state.core.video_woken();
            }
            match next {
                Some(next) => {
                    TimeoutAction::ToInstant(next.max(Instant::now() + std::time::Duration::from_millis(100)))
                }
                None => {
                    state.core.frames.stall_timer = None;
                    TimeoutAction::Drop
                }
            }
        });
        match armed {
            Ok(token) => self.frames.stall_timer = Some(token),
            Err(err) => tracing::error!(%err, "cannot arm the decoder stall check"),
        }
    }

    /// Arm the vblank timer of `output` at its next (estimated or virtual) vblank.
    fn arm_vblank(&mut self, output: &Output) {
        let Some(o) = self.frames.get_mut(output) else { return };
        if o.vblank_timer.is_some() {
            return;
        }
        let at = o.clock.next_vblank(Instant::now());
        let target = output.clone();
        let token = self.loop_handle.insert_source(Timer::from_deadline(at), move |_, _, state| {
            state.vblank(&target, at);
            TimeoutAction::Drop
        });
        match token {
            Ok(token) => {
                if let Some(o) = self.frames.get_mut(output) {
                    o.vblank_timer = Some(token);
                }
            }
            Err(err) => tracing::error!(%err, "cannot arm the vblank timer"),
        }
    }
}

/// How long a commit may wait for its page flip before the display path is recovered.
pub const FLIP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

impl State {
    /// While commits wait for their flips, a timer looks for one that never came (a driver
    /// that lost the event, a display that stopped): that output is recovered like a refused
    /// commit (see the DRM backend's display ladder) and repainted. The timer moves itself to
    /// the next deadline and goes when nothing is in flight: during playback one wake-up a
    /// second, none when idle.
    fn watch_flips(&mut self) {
        if self.core.frames.flip_timer.is_some() {
            return;
        }
        let Some(oldest) = self.core.frames.oldest_in_flight() else { return };
        let armed = self.core.loop_handle.insert_source(Timer::from_deadline(oldest + FLIP_TIMEOUT), |_, _, state| {
            let now = Instant::now();
            for output in state.core.frames.flips_older_than(now - FLIP_TIMEOUT) {
                state.core.frames.flips_timed_out += 1;
                tracing::warn!(output = %output.name(), timeout_ms = FLIP_TIMEOUT.as_millis() as u64, "page flip not completed: recovering the output");
                state.backend.flip_timed_out(&output);
                state.core.frame_lost(&output);
                state.core.queue_redraw(&output);
            }
            match state.core.frames.oldest_in_flight() {
                Some(oldest) => TimeoutAction::ToInstant((oldest + FLIP_TIMEOUT).max(now + std::time::Duration::from_millis(10))),
                None => {
                    state.core.frames.flip_timer = None;
                    TimeoutAction::Drop
                }
            }
        });
        match armed {
            Ok(token) => self.core.frames.flip_timer = Some(token),
            Err(err) => tracing::error!(%err, "cannot arm the page flip timeout"),
        }
    }

    /// Run the repaints that were asked for during this dispatch.
    pub fn run_queued_repaints(&mut self) {
        let due: Vec<(Output, bool)> = self
            .core
            .frames
            .outputs
            .iter()
            .filter(|o| o.queued && !o.in_flight)
            .map(|o| (o.output.clone(), o.real_vblank))
            .collect();
        for (output, real) in due {
            if real {
                // A new frame carries the callbacks an unchanged one was holding.
                if let Some(token) = self.core.frames.get_mut(&output).and_then(|o| o.vblank_timer.take()) {
                    self.core.loop_handle.remove(token);
                }
                self.repaint_now(&output, Instant::now());
            } else {
                self.core.arm_vblank(&output);
            }
        }
    }

    /// A vblank timer fired: a virtual output repaints now; a real one sends the frame callbacks
    /// of the frame that changed nothing.
    fn vblank(&mut self, output: &Output, at: Instant) {
        let Some(o) = self.core.frames.get_mut(output) else { return };
        o.vblank_timer = None;
        // A timer that fired late (the loop was busy) is the vblank that just passed, not the
        // one it was armed for: frames are stamped with when they are shown.
        let now = Instant::now();
        let at = if now > at + o.clock.period() { o.clock.vblank_before(now) } else { at };
        if o.real_vblank {
            let (period, seq) = (o.clock.period(), o.presented);
            let scene = self.core.scene_for_output(output);
            crate::render::post_repaint(output, &scene, at, period, seq);
            return;
        }
        if o.queued {
            self.repaint_now(output, at);
        }
    }

    /// Repaint `output` now; `at` is the vblank a virtual output shows it at.
    fn repaint_now(&mut self, output: &Output, at: Instant) {
        let Some(o) = self.core.frames.get_mut(output) else { return };
        o.queued = false;
        let real = o.real_vblank;
        let (period, seq) = (o.clock.period(), o.presented);
        self.core.frames.repaints += 1;
        let began = Instant::now();
        let result = self.backend.repaint(&mut self.core, output, at);
        let took = began.elapsed();
        if took >= period {
            tracing::debug!(target: "frames", output = %output.name(), ?result, took_us = took.as_micros() as u64, "a repaint took a refresh or more");
        }
        tracing::trace!(target: "frames", output = %output.name(), ?result, took_us = began.elapsed().as_micros() as u64, next_vblank_in_us = self.core.frames.clock(output).map(|c| c.next_vblank(Instant::now()).saturating_duration_since(Instant::now()).as_micros() as u64), "repaint");
        let Some(o) = self.core.frames.get_mut(output) else { return };
        o.last_unchanged = result == Repaint::Unchanged;
        match result {
            Repaint::Committed => {
                o.in_flight = true;
                o.in_flight_since = Some(Instant::now());
                self.watch_flips();
            }
            Repaint::Presented => {
                self.core.frame_done(output, at);
                return;
            }
            Repaint::Unchanged if real => self.core.arm_vblank(output),
            Repaint::Unchanged => {
                let scene = self.core.scene_for_output(output);
                crate::render::post_repaint(output, &scene, at, period, seq);
            }
            Repaint::Skipped => {}
            Repaint::Failed(after) => self.core.retry_repaint(output, after),
        }
        if let Some(o) = self.core.frames.get_mut(output) {
            o.progressed(Instant::now());
        }
        if result == Repaint::Unchanged {
            // The video's picture may not have been due yet at this repaint: its wake-up again.
            self.core.schedule_video();
        }
    }
}

/// Wake the loop for the player (decoder and reader threads ping it when the player waits).
pub fn watch_player(core: &mut Core) -> Result<(), String> {
    let (waker, source) = crate::video::LoopWaker::new().map_err(|e| format!("cannot make the video wake-up: {e}"))?;
    core.loop_handle
        .insert_source(source, |_, _, state| state.core.video_woken())
        .map_err(|e| format!("cannot watch the video threads: {e}"))?;
    if let Some(player) = &mut core.player {
        player.set_waker(waker.clone());
        if !player.has_audio() {
            player.set_audio(crate::audio::Audio::start(&core.config.audio));
        }
    }
    core.video_waker = Some(waker);
    Ok(())
}

impl Core {
    /// The video threads delivered what the player waited for (or something changed its plan):
    /// feed the decoder, then arrange the next picture's repaint.
    pub fn video_woken(&mut self) {
        tracing::trace!(target: "frames", "video threads woke the loop");
        if let Some(player) = &mut self.player {
            player.pump();
        }
        self.schedule_video();
        self.check_video_done();
    }

    /// With `--exit-when-done`: exit once the playlist was played and its last picture shown.
    pub fn check_video_done(&mut self) {
        let Some(player) = &self.player else { return };
        if self.exit_when_done && self.exit_code.is_none() && player.finished() && !player.has_unpresented() {
            let code = if player.errors().is_empty() { 0 } else { 1 };
            tracing::info!(target: "video", errors = player.errors().total, "playlist done: exiting");
            self.quit(code);
        }
    }
}
