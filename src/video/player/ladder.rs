//! The video ladder: a decoder that fails, vanishes or stalls is replaced (opened again, then
//! software decoding, then the item is skipped), and its counters stay in the audit.

use std::time::{Duration, Instant};

use super::*;

/// While the video is frozen with the ladder run out, how often an item is tried again.
const FROZEN_RETRY: Duration = Duration::from_secs(10);

/// A step of the ladder, as an error; at debug level once the video is frozen (said once then,
/// and the list is retried every FROZEN_RETRY for as long as it takes).
macro_rules! ladder_log {
    ($player:expr, $($arg:tt)*) => {
        if $player.frozen_since.is_none() {
            tracing::error!(target: "video", $($arg)*);
        } else {
            tracing::debug!(target: "video", $($arg)*);
        }
    };
}

impl Player {
    /// The decoder goes; its counters stay in the audit.
    pub(super) fn retire_decoder(&mut self) {
        if let Some(dec) = self.decoder.take() {
            self.retired.add(&dec.stats());
        }
        self.outstanding = 0;
        self.discard = 0;
    }

    /// The video ladder: a decoder that failed, stalled or vanished is reopened (its device
    /// looked for again); failing again, the item is decoded in software; failing a third time,
    /// the item is skipped and the playlist goes on. Pictures in flight are lost: decoding
    /// starts again at the next keyframe, the last picture stays on screen meanwhile.
    pub(super) fn decoder_failed(&mut self, why: VideoError) {
        let name = self.decoder.as_ref().map(|d| d.name()).unwrap_or_default();
        let lost = self.outstanding;
        self.retire_decoder();
        self.stats.decoder_failures += 1;
        self.failures_on_item += 1;
        self.degraded = true;
        let file = self.clips.front().map(|c| c.path.clone());
        let shown = file.as_ref().map(|f| f.display().to_string()).unwrap_or_default();
        self.errors.push(format!("{shown}: video decoder {name} failed: {why}"));
        match self.failures_on_item {
            1 => {
                self.stats.decoder_resets += 1;
                ladder_log!(self, file = %shown, decoder = %name, %why, lost, "video decoder failed: opening it again");
            }
            2 => {
                self.stats.software_fallbacks += 1;
                self.force_software = true;
                ladder_log!(self, file = %shown, decoder = %name, %why, lost, "video decoder failed again: decoding this item in software");
            }
            _ => {
                ladder_log!(self, file = %shown, decoder = %name, %why, "video decoder failed on this item three times: skipping it");
                if let Some(clip) = self.clips.pop_front() {
                    self.items_skipped_by_ladder(clip);
                }
                return;
            }
        }
        if let Some(clip) = self.clips.front_mut() {
            clip.resync = true;
        }
    }

    fn items_skipped_by_ladder(&mut self, clip: Clip) {
        self.failed_in_row += 1;
        self.ladder_skips_in_row += 1;
        self.ladder_skipped_at = Some(Instant::now());
        if self.ladder_skips_in_row >= self.items.len().max(1) {
            self.frozen("every playlist item failed in every decoder");
            self.retry_at = Some(Instant::now() + FROZEN_RETRY);
        }
        self.failures_on_item = 0;
        self.force_software = false;
        if let Some(end) = clip.end() {
            self.timeline_end = end;
        }
        self.errors.push(format!("skipping playlist item: {}: the decoder failed three times", clip.path.display()));
    }

    /// The video should play and does not, and the ladder has run out: said once, and the
    /// watchdog is no longer fed (`frozen_since`). The playlist goes on being tried: a decoder
    /// that comes back ends it.
    pub(super) fn frozen(&mut self, why: &str) {
        if self.frozen_since.is_none() {
            self.frozen_since = Some(Instant::now());
            self.stats.video_frozen += 1;
            tracing::error!(target: "video", why, "the video is frozen and the ladder has run out: the systemd watchdog is no longer fed");
        }
    }

    /// A picture decoded at `decoded_at` reached the screen: the ladder's run of skipped items
    /// ends, unless the picture was decoded before the last skip (one still in the queue).
    pub(super) fn thawed(&mut self, decoded_at: Instant) {
        if self.ladder_skipped_at.is_some_and(|t| decoded_at <= t) {
            return;
        }
        self.ladder_skips_in_row = 0;
        self.retry_at = None;
        if self.frozen_since.take().is_some() {
            tracing::info!(target: "video", "the video plays again: the systemd watchdog is fed again");
        }
    }

    /// Since when the video has been frozen with the ladder run out (for the watchdog).
    pub fn frozen_since(&self) -> Option<Instant> {
        self.frozen_since
    }

    /// How long a decoder with work may say nothing before it counts as stalled: a few frame
    /// durations, and never less than three seconds (a software decoder under load, a slow
    /// device opening).
    fn stall_after(&self) -> Duration {
        let frame = self.clips.front().map(|c| c.frame_time).unwrap_or(Duration::from_millis(40));
        (frame * 16).max(Duration::from_secs(3))
    }

    /// When the decoder counts as stalled if it says nothing until then: while a picture is
    /// wanted (none left to show), the decoder owes some and the reading thread is not behind.
    /// The time runs from the decoder's last word or the last picture taken from the queue (each
    /// gives a capture buffer back: a decoder with none free has had nothing to do), whichever
    /// is later.
    pub fn stall_deadline(&self) -> Option<Instant> {
        if let Some(at) = self.retry_at.filter(|_| !self.finished) {
            return Some(at);
        }
        if self.decoder_wanted() {
            // A failure was collected outside a pump (the next picture's time was being
            // worked out): nothing is on its way to wake the loop, so the check does it.
            return Some(self.last_event);
        }
        if self.finished
            || self.paused_at.is_some()
            || self.decoder.is_none()
            || self.outstanding == 0
            || !self.queue.is_empty()
        {
            return None;
        }
        let reader_behind = self.clips.front().is_some_and(|c| c.units.is_empty() && !c.fully_read());
        (!reader_behind).then(|| self.last_event + self.stall_after())
    }

    /// The decoder was retired (it failed, or the ladder skipped its item) and there are items
    /// to decode: the next pump opens another.
    fn decoder_wanted(&self) -> bool {
        self.decoder.is_none()
            && !self.finished
            && self.paused_at.is_none()
            && self.retry_at.is_none()
            && !self.clips.is_empty()
    }

    /// Past the stall deadline: the decoder is treated as failed (the ladder). Returns whether it
    /// was.
    pub fn check_stall(&mut self) -> bool {
        if self.retry_at.is_some_and(|at| at <= Instant::now()) {
            // Frozen: time for the next try.
            self.pump();
            return true;
        }
        self.collect();
        if self.decoder_wanted() {
            self.pump();
            return true;
        }
        match self.stall_deadline() {
            Some(at) if at <= Instant::now() => {
                let why = format!(
                    "no picture for {} ms with {} access units outstanding",
                    self.last_event.elapsed().as_millis(),
                    self.outstanding
                );
                self.decoder_failed(VideoError::Decoder(format!("stalled: {why}")));
                self.pump();
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clip of `path` with units read and none sent.
    fn clip(path: &str) -> Clip {
        Clip {
            path: path.into(),
            codec: Codec::H264,
            units: VecDeque::new(),
            incoming: None,
            sent: 0,
            base: None,
            first_pts: Duration::ZERO,
            last_pts: Duration::ZERO,
            frame_time: Duration::from_millis(40),
            fps: 25.0,
            resync: false,
            colour: Default::default(),
        }
    }

    /// A decoder failure collected while the next picture's time is worked out (not in a pump)
    /// leaves no decoder and nothing on its way to wake the loop: the stall check must still be
    /// due, at once, or the video stays frozen for good (seen in the VM: visl unbound while
    /// its last pictures were being shown).
    #[test]
    fn a_retired_decoder_with_work_left_makes_the_stall_check_due_at_once() {
        let mut player = Player::new(vec!["a.mp4".into(), "b.mp4".into()], true);
        player.clips.push_back(clip("a.mp4"));
        player.start = Some(Instant::now());
        player.last_event = Instant::now() - Duration::from_millis(5);
        player.decoder_failed(VideoError::Decoder("DQBUF OUTPUT: No such device".into()));
        assert!(player.decoder.is_none());
        let due = player.stall_deadline().expect("a stall check is due");
        assert!(due <= Instant::now());

        // The ladder's third failure skips the item: the next one needs a decoder too.
        player.clips.push_back(clip("b.mp4"));
        player.failures_on_item = 2;
        player.decoder_failed(VideoError::Decoder("again".into()));
        assert_eq!(player.clips.len(), 1);
        assert!(player.stall_deadline().is_some_and(|at| at <= Instant::now()));

        // Paused, or with nothing left to decode, nothing is due.
        player.paused_at = Some(Instant::now());
        assert_eq!(player.stall_deadline(), None);
        player.paused_at = None;
        player.clips.clear();
        assert_eq!(player.stall_deadline(), None);
    }
}
