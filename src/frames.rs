//! Frames on demand: each output is repainted only when something is due, and at most once per
//! vblank.
//!
//! What makes a repaint due: a client committed (damage, or a frame callback it waits for), the
//! video's next picture wants the coming vblank, an output, the configuration, the schedule or the
//! pointer changed. Requests made while the loop dispatches are coalesced: the repaint runs once
//! the dispatch is done (an idle callback). An output with a real vblank (DRM) is repainted at
//! once and its commit lands on the next vblank; the page flip says when, and only then may the
//! next repaint run. Outputs without one (headless, nested) get a virtual vblank, armed only
//! while a repaint waits for it. A repaint that finds nothing changed commits nothing; the frame
//! callbacks clients wait for go out at the estimated vblank instead. A static scene costs no
//! wake-up at all.

use std::time::{Duration, Instant};

use smithay::output::Output;
use smithay::reexports::calloop::timer::{TimeoutAction, Timer};
use smithay::reexports::calloop::RegistrationToken;

use crate::state::{Core, State};

/// When an output's vblanks come: its exact refresh period and the last vblank seen.
#[derive(Debug, Clone, Copy)]
pub struct FrameClock {
    period: Duration,
    last: Option<Instant>,
}

impl FrameClock {
    /// A clock for a refresh rate in millihertz (59940 is 59.94 Hz, not 59).
    pub fn new(refresh_mhz: u32) -> FrameClock {
        let mhz = refresh_mhz.max(1000) as u64;
        FrameClock { period: Duration::from_nanos(1_000_000_000_000 / mhz), last: None }
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    /// A vblank happened at `at` (a page flip's kernel timestamp, or a virtual vblank).
    pub fn presented(&mut self, at: Instant) {
        self.last = Some(at);
    }

    pub fn last(&self) -> Option<Instant> {
        self.last
    }

    /// The first vblank after `t`, predicted from the last one (`t` itself when nothing was
    /// presented yet: the first frame goes out as soon as it can).
    pub fn next_vblank(&self, t: Instant) -> Instant {
        let Some(last) = self.last else { return t };
        if t < last {
            return last;
        }
        let n = (t - last).as_nanos() / self.period.as_nanos() + 1;
        last + self.period * n as u32
    }

    /// The vblank nearest `t`.
    pub fn nearest_vblank(&self, t: Instant) -> Instant {
        let Some(last) = self.last else { return t };
        if t <= last {
            return last;
        }
        let p = self.period.as_nanos();
        let n = ((t - last).as_nanos() + p / 2) / p;
        last + self.period * n as u32
    }
}

/// CLOCK_MONOTONIC now, the clock of page-flip timestamps, presentation feedback and `Instant`.
pub fn monotonic_now() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// An `Instant` as a CLOCK_MONOTONIC time (both are that clock on Linux).
pub fn monotonic(at: Instant) -> Duration {
    let (now, mono) = (Instant::now(), monotonic_now());
    if at <= now {
        mono.saturating_sub(now - at)
    } else {
        mono + (at - now)
    }
}

/// A CLOCK_MONOTONIC time (a page flip's timestamp) as an `Instant`.
pub fn instant_at(time: Duration) -> Instant {
    let (now, mono) = (Instant::now(), monotonic_now());
    if time <= mono {
        now.checked_sub(mono - time).unwrap_or(now)
    } else {
        now + (time - mono)
    }
}

/// What a backend's repaint of one output did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repaint {
    /// A commit is on its way to the screen; the backend reports its page flip.
    Committed,
    /// Shown at once (virtual vblank): frame callbacks and presentation are done.
    Presented,
    /// Nothing changed on screen: nothing was committed.
    Unchanged,
    /// Not shown at all (display off, VT away, an error already logged).
    Skipped,
}

/// An output's place in its frame cycle.
pub struct OutputFrames {
    pub output: Output,
    pub clock: FrameClock,
    /// The output has a real vblank (a page flip event per commit).
    real_vblank: bool,
    /// A repaint is wanted.
    queued: bool,
    /// A commit waits for its page flip.
    in_flight: bool,
    /// Virtual outputs: the repaint waits for this vblank. Real ones: the frame callbacks of a
    /// frame that changed nothing go out then.
    vblank_timer: Option<RegistrationToken>,
    /// The video's next picture wants a repaint then.
    video_timer: Option<(Instant, RegistrationToken)>,
    /// Since when a repaint has been wanted or a commit has waited for its flip (liveness).
    busy_since: Option<Instant>,
    /// Frames presented on this output.
    pub presented: u64,
}

impl OutputFrames {
    fn busy(&mut self, now: Instant) {
        self.busy_since.get_or_insert(now);
    }

    /// The output made progress (a repaint ran, a flip came): what it waits for now, it waits
    /// for from now on.
    fn progressed(&mut self, now: Instant) {
        self.busy_since = (self.queued || self.in_flight).then_some(now);
    }
}

/// The frame cycle of every output.
#[derive(Default)]
pub struct Frames {
    outputs: Vec<OutputFrames>,
    /// The idle callback that runs queued repaints is inserted (once per dispatch).
    idle_scheduled: bool,
    /// Repaints done, for `stats` (each one a scene built and looked at).
    pub repaints: u64,
}

impl Frames {
    pub fn add(&mut self, output: Output, refresh_mhz: u32, real_vblank: bool) {
        self.outputs.retain(|o| o.output != output);
        self.outputs.push(OutputFrames {
            output,
            clock: FrameClock::new(refresh_mhz),
            real_vblank,
            queued: false,
            in_flight: false,
            vblank_timer: None,
            video_timer: None,
            busy_since: None,
            presented: 0,
        });
    }

    pub fn get(&self, output: &Output) -> Option<&OutputFrames> {
        self.outputs.iter().find(|o| &o.output == output)
    }

    fn get_mut(&mut self, output: &Output) -> Option<&mut OutputFrames> {
        self.outputs.iter_mut().find(|o| &o.output == output)
    }

    /// The oldest repaint or flip still waited for, across outputs: an output whose display path
    /// hangs shows here.
    pub fn stalled_since(&self) -> Option<Instant> {
        self.outputs.iter().filter_map(|o| o.busy_since).min()
    }

    pub fn clock(&self, output: &Output) -> Option<FrameClock> {
        self.get(output).map(|o| o.clock)
    }
}

impl Core {
    /// Since when the display path has waited for a repaint or a page flip (the oldest output
    /// still waiting), for the watchdog.
    pub fn stalled_since(&self) -> Option<Instant> {
        self.frames.stalled_since()
    }

    /// Something on `output` changed: repaint it (once this dispatch is done, at most once per
    /// vblank).
    pub fn queue_redraw(&mut self, output: &Output) {
        let now = Instant::now();
        let Some(o) = self.frames.get_mut(output) else { return };
        o.queued = true;
        o.busy(now);
        self.schedule_idle();
    }

    pub fn queue_redraw_all(&mut self) {
        let outputs: Vec<Output> = self.outputs.clone();
        for o in &outputs {
            self.queue_redraw(o);
        }
    }

    fn schedule_idle(&mut self) {
        if std::mem::replace(&mut self.frames.idle_scheduled, true) {
            return;
        }
        self.loop_handle.insert_idle(|state| {
            state.core.frames.idle_scheduled = false;
            state.run_queued_repaints();
        });
    }

    /// The output's frame reached the screen at `at` (a page flip, a virtual vblank): the next
    /// repaint may run, and the video's next picture is scheduled.
    pub fn frame_done(&mut self, output: &Output, at: Instant) {
        let Some(o) = self.frames.get_mut(output) else { return };
        o.in_flight = false;
        o.clock.presented(at);
        o.presented += 1;
        o.progressed(Instant::now());
        let queued = o.queued;
        if queued {
            self.schedule_idle();
        }
        self.first_frame_shown();
        self.schedule_video();
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
    /// presentation time, the repaint runs half a period before that vblank, so its commit lands
    /// on it. Nothing is armed while the player has nothing to show next (it wakes the loop
    /// itself when a picture arrives).
    pub fn schedule_video(&mut self) {
        let Some(output) = self.video_output() else { return };
        let due = self.player.as_mut().and_then(|p| p.next_due());
        let now = Instant::now();
        let Some(o) = self.frames.get_mut(&output) else { return };
        let wake = due.map(|due| {
            let vblank = o.clock.nearest_vblank(due.max(now));
            vblank.checked_sub(o.clock.period() / 2).unwrap_or(vblank)
        });
        match wake {
            Some(wake) if wake <= now => {
                if let Some((_, token)) = o.video_timer.take() {
                    self.loop_handle.remove(token);
                }
                self.queue_redraw(&output);
            }
            Some(wake) => {
                if o.video_timer.is_some_and(|(at, _)| at == wake) {
                    return;
                }
                if let Some((_, token)) = o.video_timer.take() {
                    self.loop_handle.remove(token);
                }
                let target = output.clone();
                let token = self.loop_handle.insert_source(Timer::from_deadline(wake), move |_, _, state| {
                    if let Some(o) = state.core.frames.get_mut(&target) {
                        o.video_timer = None;
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
                if let Some((_, token)) = o.video_timer.take() {
                    self.loop_handle.remove(token);
                }
            }
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

impl State {
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
        let result = self.backend.repaint(&mut self.core, output, at);
        let Some(o) = self.core.frames.get_mut(output) else { return };
        match result {
            Repaint::Committed => o.in_flight = true,
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
        }
        if let Some(o) = self.core.frames.get_mut(output) {
            o.progressed(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_predicts_vblanks_from_the_last_one() {
        let mut clock = FrameClock::new(60_000);
        assert_eq!(clock.period(), Duration::from_nanos(16_666_666));
        let t0 = Instant::now();
        // Nothing presented yet: as soon as possible.
        assert_eq!(clock.next_vblank(t0), t0);
        clock.presented(t0);
        let p = clock.period();
        assert_eq!(clock.next_vblank(t0), t0 + p, "strictly after");
        assert_eq!(clock.next_vblank(t0 + p / 2), t0 + p);
        assert_eq!(clock.next_vblank(t0 + p * 3), t0 + p * 4);
        assert_eq!(clock.nearest_vblank(t0 + p * 2 + p / 3), t0 + p * 2);
        assert_eq!(clock.nearest_vblank(t0 + p * 2 + p * 2 / 3), t0 + p * 3);
    }

    #[test]
    fn instants_and_monotonic_times_agree() {
        let now = Instant::now();
        let mono = monotonic(now);
        let back = instant_at(mono);
        let diff = if back > now { back - now } else { now - back };
        assert!(diff < Duration::from_millis(1), "{diff:?}");
        assert!(monotonic(now + Duration::from_secs(1)) > mono + Duration::from_millis(999));
    }

    #[test]
    fn the_refresh_is_exact() {
        // 59.94 Hz is not 59 Hz nor 60 Hz.
        let ntsc = FrameClock::new(59_940);
        assert_eq!(ntsc.period().as_nanos(), 16_683_350);
        // 24 pictures a second on a 59.94 Hz display: picture k goes to the vblank nearest
        // k/24 s, so over one second 24 distinct vblanks are used, 2 or 3 periods apart.
        let mut clock = ntsc;
        let t0 = Instant::now();
        clock.presented(t0);
        let vblanks: Vec<Instant> =
            (0..24).map(|k| clock.nearest_vblank(t0 + Duration::from_secs_f64(k as f64 / 24.0))).collect();
        for pair in vblanks.windows(2) {
            let gap = (pair[1] - pair[0]).as_nanos() / ntsc.period().as_nanos();
            assert!(gap == 2 || gap == 3, "{gap}");
        }
        for (k, v) in vblanks.iter().enumerate() {
            let due = t0 + Duration::from_secs_f64(k as f64 / 24.0);
            let error = if *v > due { *v - due } else { due - *v };
            assert!(error <= ntsc.period() / 2, "picture {k}: {error:?}");
        }
    }
}
