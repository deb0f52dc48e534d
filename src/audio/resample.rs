//! The drift correction: interleaved stereo played a little faster or slower (a few thousand
//! parts per million at most) by linear interpolation, so that sound follows the display's
//! clock without a jump. At speed 1 the samples pass through unchanged.

pub struct Drift {
    /// Where the next output frame is, in frames, counted from the frame before the block (the
    /// last one of the previous block: `prev`).
    at: f64,
    prev: [f32; 2],
}

impl Default for Drift {
    fn default() -> Self {
        Drift { at: 1.0, prev: [0.0; 2] }
    }
}

impl Drift {
    /// Start again (after a cut or silence: the next block does not follow the last).
    pub fn reset(&mut self) {
        *self = Drift::default();
    }

    /// `input` played at `speed` (1.0: as is; 1.001: a thousandth faster, fewer frames out).
    pub fn process(&mut self, input: &[f32], speed: f64) -> Vec<f32> {
        let frames = input.len() / 2;
        if frames == 0 {
            return Vec::new();
        }
        let frame = |i: usize| -> [f32; 2] {
            if i == 0 {
                self.prev
            } else {
                [input[2 * (i - 1)], input[2 * (i - 1) + 1]]
            }
        };
        let mut out = Vec::with_capacity(((frames as f64 / speed) as usize + 2) * 2);
        // Frames 0..=frames exist (0 is `prev`): an output frame at `at` needs the one after it.
        while self.at < frames as f64 {
            let i = self.at.floor() as usize;
            let f = (self.at - i as f64) as f32;
            let (a, b) = (frame(i), frame(i + 1));
            if f == 0.0 {
                out.extend_from_slice(&a);
            } else {
                out.push(a[0] + (b[0] - a[0]) * f);
                out.push(a[1] + (b[1] - a[1]) * f);
            }
            self.at += speed;
        }
        // The whole input passes except an output frame at exactly `frames` (the last frame):
        // it is the next block's frame 0.
        self.at -= frames as f64;
        self.prev = frame(frames);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(from: usize, n: usize) -> Vec<f32> {
        (from..from + n).flat_map(|i| [i as f32, -(i as f32)]).collect()
    }

    #[test]
    fn at_speed_one_blocks_pass_unchanged_and_in_order() {
        let mut d = Drift::default();
        let mut out = d.process(&ramp(0, 1024), 1.0);
        out.extend(d.process(&ramp(1024, 1024), 1.0));
        // The last frame is held for the next block (it may interpolate towards it).
        assert_eq!(out, ramp(0, 2047));
    }

    #[test]
    fn a_faster_speed_makes_fewer_frames_and_keeps_the_line_straight() {
        let mut d = Drift::default();
        let speed = 1.005;
        let mut out = Vec::new();
        for b in 0..100 {
            out.extend(d.process(&ramp(b * 1000, 1000), speed));
        }
        let frames = out.len() / 2;
        let expected = 100_000.0 / speed;
        assert!((frames as f64 - expected).abs() <= 2.0, "{frames} frames, {expected} expected");
        // A ramp resampled is a ramp with steps of `speed`, across block seams too.
        for (k, pair) in out.chunks(2).enumerate() {
            let want = k as f64 * speed;
            assert!((pair[0] as f64 - want).abs() < 0.01, "frame {k}: {} (want {want})", pair[0]);
            assert_eq!(pair[1], -pair[0]);
        }
    }

    #[test]
    fn a_slower_speed_makes_more_frames() {
        let mut d = Drift::default();
        let mut total = 0;
        for b in 0..50 {
            total += d.process(&ramp(b * 960, 960), 0.995).len() / 2;
        }
        let expected = 48_000.0 / 0.995;
        assert!((total as f64 - expected).abs() <= 2.0, "{total} vs {expected}");
    }
}
