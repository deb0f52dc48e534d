//! Bounded records for long runs: a rolling window of measurements with percentiles, and a count
//! of errors with the last few messages. Months of pictures never grow either.

use std::collections::VecDeque;

/// The last `capacity` values of a measurement.
#[derive(Debug, Clone)]
pub struct Rolling {
    values: VecDeque<f64>,
    capacity: usize,
}

impl Rolling {
    pub fn new(capacity: usize) -> Rolling {
        Rolling { values: VecDeque::with_capacity(capacity.min(4096)), capacity: capacity.max(1) }
    }

    pub fn push(&mut self, value: f64) {
        if self.values.len() == self.capacity {
            self.values.pop_front();
        }
        self.values.push_back(value);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The `p` quantile (0..=1) of the values in the window, nearest rank.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        self.percentiles(&[p]).pop().flatten()
    }

    /// Several quantiles with one sort.
    pub fn percentiles(&self, ps: &[f64]) -> Vec<Option<f64>> {
        if self.values.is_empty() {
            return ps.iter().map(|_| None).collect();
        }
        let mut sorted: Vec<f64> = self.values.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        ps.iter().map(|p| Some(sorted[((sorted.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize])).collect()
    }

    pub fn max(&self) -> Option<f64> {
        self.values.iter().copied().reduce(f64::max)
    }
}

/// How many errors there were, and the last few of them.
#[derive(Debug, Clone, Default)]
pub struct Errors {
    pub total: u64,
    last: VecDeque<String>,
}

impl Errors {
    /// Messages kept.
    pub const KEPT: usize = 16;

    pub fn push(&mut self, message: String) {
        self.total += 1;
        if self.last.len() == Self::KEPT {
            self.last.pop_front();
        }
        self.last.push_back(message);
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub fn recent(&self) -> Vec<String> {
        self.last.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_error_lists_stay_bounded() {
        let mut w = Rolling::new(100);
        for i in 0..1_000_000 {
            w.push(i as f64);
        }
        assert_eq!(w.len(), 100);
        assert_eq!(w.percentile(0.0), Some(999_900.0));
        assert_eq!(w.percentile(1.0), Some(999_999.0));
        assert_eq!(w.percentiles(&[0.5, 0.99]), vec![Some(999_950.0), Some(999_998.0)]);
        assert_eq!(Rolling::new(4).percentile(0.5), None);
        let mut e = Errors::default();
        for i in 0..1000 {
            e.push(format!("error {i}"));
        }
        assert_eq!(e.total, 1000);
        assert_eq!(e.recent().len(), Errors::KEPT);
        assert_eq!(e.recent().last().map(String::as_str), Some("error 999"));
    }
}
