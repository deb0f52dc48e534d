//! CLOCK_MONOTONIC: the clock of page-flip timestamps, presentation feedback, ALSA and `Instant`.

use std::time::{Duration, Instant};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_and_monotonic_times_agree() {
        let now = Instant::now();
        let mono = monotonic(now);
        let back = instant_at(mono);
        let diff = if back > now { back - now } else { now - back };
        assert!(diff < Duration::from_millis(1), "{diff:?}");
        assert!(monotonic(now + Duration::from_secs(1)) > mono + Duration::from_millis(999));
    }
}
