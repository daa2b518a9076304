//! Medians and percentiles: each case's per-round figures, and a histogram of its individual
//! operations (or batches) pooled over every round, for the tail.

/// Buckets per doubling: the histogram's resolution is 2^(1/64), about 1.1 %.
const PER_OCTAVE: f64 = 64.0;
/// Buckets from 1 ns to 2^42 ns (about 73 minutes).
const BUCKETS: usize = 42 * PER_OCTAVE as usize;

/// A log-bucketed histogram of durations, in nanoseconds.
#[derive(Debug, Clone)]
pub struct Hist {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Hist {
    fn default() -> Hist {
        Hist {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

impl Hist {
    /// Counts one duration of `ns` nanoseconds.
    pub fn add(&mut self, ns: f64) {
        self.add_n(ns, 1);
    }

    /// Counts `n` durations of `ns` nanoseconds each.
    pub fn add_n(&mut self, ns: f64, n: u64) {
        let i = if ns <= 1.0 {
            0
        } else {
            ((ns.log2() * PER_OCTAVE) as usize).min(BUCKETS - 1)
        };
        self.counts[i] += n;
        self.total += n;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    /// The `q`-quantile (0 to 1) in nanoseconds: the middle of its bucket; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let want = ((self.total as f64 * q).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Some(((i as f64 + 0.5) / PER_OCTAVE).exp2());
            }
        }
        None
    }
}

/// The median of `v` (the upper one of an even count); `None` when empty.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_land_within_a_bucket() {
        let mut h = Hist::default();
        for ns in 1..=1000 {
            h.add(ns as f64);
        }
        let p50 = h.quantile(0.5).unwrap();
        let p99 = h.quantile(0.99).unwrap();
        assert!((p50 / 500.0 - 1.0).abs() < 0.02, "{p50}");
        assert!((p99 / 990.0 - 1.0).abs() < 0.02, "{p99}");
        assert_eq!(Hist::default().quantile(0.5), None);
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(3.0));
        assert_eq!(median(&[]), None);
    }
}
