//! Frames on demand: each output is repainted only when something is due, and at most once per
//! vblank.
//!
//! What makes a repaint due: a client committed (damage, or a frame callback it waits for), the
//! video's next picture wants the coming vblank, an output, the configuration, the schedule or the
//! pointer changed. Requests made while the loop dispatches are coalesced: the repaint runs once
//! the dispatch is done (`State::run_deferred`, at the end of each turn of the loop). An output with a real vblank (DRM) is repainted at
//! once and its commit lands on the next vblank; the page flip says when, and only then may the
//! next repaint run. Outputs without one (headless, nested) get a virtual vblank, armed only
//! while a repaint waits for it. A repaint that finds nothing changed commits nothing; the frame
//! callbacks clients wait for go out at the estimated vblank instead. A static scene costs no
//! wake-up at all.

use std::time::{Duration, Instant};

use smithay::output::Output;
use smithay::reexports::calloop::RegistrationToken;

mod schedule;
pub use schedule::watch_player;

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

    /// The last vblank at or before `t` (`t` itself when nothing was presented yet).
    pub fn vblank_before(&self, t: Instant) -> Instant {
        let Some(last) = self.last else { return t };
        if t <= last {
            return last;
        }
        let n = (t - last).as_nanos() / self.period.as_nanos();
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

pub use crate::clock::{instant_at, monotonic, monotonic_now};

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
    /// The display refused the frame: the backend changed its approach (see the DRM backend's
    /// display ladder); the repaint is tried again after this long.
    Failed(std::time::Duration),
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
    /// Since when (for the flip timeout).
    in_flight_since: Option<Instant>,
    /// Virtual outputs: the repaint waits for this vblank. Real ones: the frame callbacks of a
    /// frame that changed nothing go out then.
    vblank_timer: Option<RegistrationToken>,
    /// The video's next picture wants a repaint then.
    video_timer: Option<(Instant, RegistrationToken)>,
    /// Since when a repaint has been wanted or a commit has waited for its flip (liveness).
    busy_since: Option<Instant>,
    /// Frames presented on this output.
    pub presented: u64,
    /// The last repaint changed nothing: a video wake-up due at once waits for the next vblank
    /// instead (a picture that cannot be shown must not spin the loop).
    last_unchanged: bool,
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
    /// Repaints were asked for during this turn of the loop: they run at its end.
    repaints_pending: bool,
    /// Repaints done, for `stats` (each one a scene built and looked at).
    pub repaints: u64,
    /// The timer that looks for a stalled decoder, while one has work.
    pub stall_timer: Option<smithay::reexports::calloop::RegistrationToken>,
    /// The timer that looks for page flips that never came, while commits are in flight.
    pub flip_timer: Option<smithay::reexports::calloop::RegistrationToken>,
    /// Page flips given up on.
    pub flips_timed_out: u64,
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
            last_unchanged: false,
            in_flight_since: None,
        });
    }

    /// The output's mode changed: its vblanks come at the new rate, from its next frame on.
    pub fn set_refresh(&mut self, output: &Output, refresh_mhz: u32) {
        if let Some(o) = self.get_mut(output) {
            if o.clock.period() != FrameClock::new(refresh_mhz).period() {
                o.clock = FrameClock::new(refresh_mhz);
            }
        }
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

    /// The oldest commit still waiting for its flip.
    pub fn oldest_in_flight(&self) -> Option<Instant> {
        self.outputs.iter().filter(|o| o.in_flight).filter_map(|o| o.in_flight_since).min()
    }

    /// Outputs whose commit has waited for its flip since before `before`.
    pub fn flips_older_than(&self, before: Instant) -> Vec<Output> {
        self.outputs
            .iter()
            .filter(|o| o.in_flight && o.in_flight_since.is_some_and(|t| t <= before))
            .map(|o| o.output.clone())
            .collect()
    }

    pub fn clock(&self, output: &Output) -> Option<FrameClock> {
        self.get(output).map(|o| o.clock)
    }

    pub fn repaints_pending(&self) -> bool {
        self.repaints_pending
    }

    pub fn take_repaints_pending(&mut self) -> bool {
        std::mem::take(&mut self.repaints_pending)
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
