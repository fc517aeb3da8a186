//! Small, exact statistics the diagnostic and the gate share: nearest-rank percentiles, time
//! buckets, burstiness.
//!
//! Percentiles use the nearest-rank method (the smallest value with at least p % of the values
//! at or below it), so every reported percentile is an observed value and easy to recompute.

/// Nearest-rank percentile of an ascending slice; 0 when empty. `pct` in 1..=100.
pub fn percentile(sorted: &[u64], pct: u32) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len() as u64;
    let rank = (pct.clamp(1, 100) as u64 * n).div_ceil(100).max(1);
    sorted[(rank - 1) as usize]
}

/// Fixed-width time buckets from `start`: bucket `k` covers `[start + k·width, start + (k+1)·width)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    pub start: i64,
    pub width: i64,
    pub count: usize,
}

impl Buckets {
    /// Enough buckets to cover `[start, end]` (at least one).
    pub fn covering(start: i64, end: i64, width: i64) -> Self {
        let width = width.max(1);
        let count = ((end - start).max(0) / width + 1) as usize;
        Buckets {
            start,
            width,
            count,
        }
    }

    /// Bucket of an instant, clamped into range.
    pub fn index(&self, t: i64) -> usize {
        (((t - self.start).max(0) / self.width) as usize).min(self.count - 1)
    }

    /// End of the last bucket.
    pub fn end(&self) -> i64 {
        self.start + self.width * self.count as i64
    }

    /// Adds the overlap of `[from, to)` with each bucket to `acc` (e.g. busy slot-ms per bucket).
    pub fn spread(&self, from: i64, to: i64, acc: &mut [u64]) {
        let (mut t, to) = (from.max(self.start), to.min(self.end()));
        while t < to {
            let k = self.index(t);
            let bucket_end = self.start + self.width * (k as i64 + 1);
            let until = bucket_end.min(to);
            acc[k] += (until - t) as u64;
            t = until;
        }
    }
}

/// Mean, peak, peak/mean and coefficient of variation (population standard deviation / mean)
/// of a series; ratios are 0 when the mean is 0.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Burstiness {
    pub mean: f64,
    pub peak: u64,
    pub peak_to_mean: f64,
    pub cv: f64,
}

pub fn burstiness(values: &[u64]) -> Burstiness {
    if values.is_empty() {
        return Burstiness {
            mean: 0.0,
            peak: 0,
            peak_to_mean: 0.0,
            cv: 0.0,
        };
    }
    let n = values.len() as f64;
    let sum: u128 = values.iter().map(|&v| v as u128).sum();
    let mean = sum as f64 / n;
    let peak = values.iter().copied().max().unwrap_or(0);
    let var = values
        .iter()
        .map(|&v| (v as f64 - mean) * (v as f64 - mean))
        .sum::<f64>()
        / n;
    let (peak_to_mean, cv) = if mean > 0.0 {
        (peak as f64 / mean, var.sqrt() / mean)
    } else {
        (0.0, 0.0)
    };
    Burstiness {
        mean,
        peak,
        peak_to_mean,
        cv,
    }
}

/// Rounds to `digits` decimals, so reports print short, stable numbers.
pub fn round_to(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=20).collect();
        assert_eq!(percentile(&v, 50), 10);
        assert_eq!(percentile(&v, 95), 19);
        assert_eq!(percentile(&v, 100), 20);
        assert_eq!(percentile(&[7], 95), 7);
        assert_eq!(percentile(&[], 50), 0);
        assert_eq!(percentile(&[1, 2, 3], 50), 2);
    }

    #[test]
    fn buckets_cover_the_window_and_spread_intervals() {
        let b = Buckets::covering(1_000, 1_000 + 120_000, 60_000);
        assert_eq!(b.count, 3);
        assert_eq!(
            (
                b.index(1_000),
                b.index(60_999),
                b.index(61_000),
                b.index(999_999)
            ),
            (0, 0, 1, 2)
        );
        let mut acc = vec![0; 3];
        b.spread(50_000, 71_000, &mut acc);
        b.spread(180_000, 999_999, &mut acc);
        assert_eq!(acc, vec![11_000, 10_000, 1_000]);
    }

    #[test]
    fn burstiness_of_a_flat_and_a_spiky_series() {
        let flat = burstiness(&[5, 5, 5, 5]);
        assert_eq!(
            (flat.mean, flat.peak, flat.peak_to_mean, flat.cv),
            (5.0, 5, 1.0, 0.0)
        );
        let spiky = burstiness(&[0, 0, 0, 40]);
        assert_eq!(
            (spiky.mean, spiky.peak, spiky.peak_to_mean),
            (10.0, 40, 4.0)
        );
        // σ = sqrt((3·100 + 900)/4) = sqrt(300); cv = σ/10.
        assert!((spiky.cv - 300f64.sqrt() / 10.0).abs() < 1e-12);
        assert_eq!(burstiness(&[]).peak, 0);
    }
}
