//! The generator's randomness: SplitMix64 and the few distributions workloads need.
//!
//! Integer-only on purpose (no `ln`, `powf` or float sampling), so a seed gives the same draws on
//! every platform and compiler. Must not be used by the routing core (it takes no randomness).

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, good enough for workload shapes, and the
/// same sequence everywhere.
#[derive(Debug, Clone)]
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64, salt: u64) -> Self {
        let mut r = Rng(seed ^ salt);
        r.next_u64();
        r
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (multiply-shift; the bias is below 2⁻³² for the ranges used here).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub(super) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub(super) fn chance(&mut self, permille: u32) -> bool {
        self.below(1000) < permille as u64
    }

    /// A 32-bit uniform fraction of 2³².
    pub(super) fn frac(&mut self) -> u64 {
        self.next_u64() >> 32
    }

    /// `lo..=hi` skewed towards `lo`: `lo + span·U₁·U₂` (density ∝ −ln x, mean `lo + span/4`),
    /// the long-tailed shape of prompt and output lengths.
    pub(super) fn skewed(&mut self, lo: u32, hi: u32) -> u32 {
        let prod = (self.frac() * self.frac()) >> 32;
        lo + (((hi - lo) as u64 * prod) >> 32) as u32
    }

    /// An Exp(1) sample in 32.32 fixed point by von Neumann's comparison method: a decreasing
    /// run `U₁ > U₂ > … > Uₙ` is accepted when `n` is odd (probability `e^-U₁`), else the
    /// integer part grows by one. Integer-only, so no `ln` whose last bit differs by platform.
    pub(super) fn exp_fixed(&mut self) -> u64 {
        let mut k = 0u64;
        loop {
            let first = self.frac();
            let (mut prev, mut n) = (first, 1u32);
            loop {
                let v = self.frac();
                if v >= prev {
                    break;
                }
                prev = v;
                n += 1;
            }
            if n % 2 == 1 {
                return (k << 32) | first;
            }
            k += 1;
        }
    }

    /// Index drawn from cumulative weights (`cdf` strictly increasing, last = total).
    pub(super) fn pick_cdf(&mut self, cdf: &[u64]) -> usize {
        let total = *cdf.last().expect("non-empty cdf");
        let u = self.below(total);
        cdf.partition_point(|&c| c <= u)
    }

    pub(super) fn pick_weighted<T: Copy>(&mut self, items: &[(T, u64)]) -> T {
        let total: u64 = items.iter().map(|(_, w)| w).sum();
        let mut u = self.below(total);
        for &(item, w) in items {
            if u < w {
                return item;
            }
            u -= w;
        }
        items[items.len() - 1].0
    }
}

/// Zipf (s = 1) weights `W/k` for ranks 1..=n, cumulated; integer so the draw is exact.
pub(super) fn zipf_cdf(n: usize) -> Vec<u64> {
    const W: u64 = 1 << 40;
    let mut acc = 0;
    (1..=n as u64)
        .map(|k| {
            acc += W / k;
            acc
        })
        .collect()
}

pub(super) fn weight_of(cdf: &[u64], i: usize) -> u64 {
    cdf[i] - if i == 0 { 0 } else { cdf[i - 1] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_reproducible_and_in_range() {
        let (mut a, mut b) = (Rng::new(3, 9), Rng::new(3, 9));
        for _ in 0..1_000 {
            assert_eq!(a.next_u64(), b.next_u64());
            assert!((5..=9).contains(&a.between(5, 9)));
            assert!(a.skewed(100, 8_000) <= 8_000);
            b.between(5, 9);
            b.skewed(100, 8_000);
        }
        assert_ne!(Rng::new(3, 9).next_u64(), Rng::new(4, 9).next_u64());
    }

    #[test]
    fn exponential_has_mean_one() {
        let mut rng = Rng::new(1, 2);
        let mean = (0..100_000).map(|_| rng.exp_fixed() as u128).sum::<u128>() / 100_000;
        let mean_milli = ((mean * 1000) >> 32) as i64;
        assert!((mean_milli - 1000).abs() < 15, "Exp(1) mean {mean_milli}‰");
    }

    #[test]
    fn zipf_ranks_get_harmonic_weights() {
        let cdf = zipf_cdf(4);
        assert_eq!(weight_of(&cdf, 0), 2 * weight_of(&cdf, 1));
        assert_eq!(weight_of(&cdf, 0), 4 * weight_of(&cdf, 3));
        let mut rng = Rng::new(5, 5);
        let mut counts = [0u32; 4];
        for _ in 0..25_000 {
            counts[rng.pick_cdf(&cdf)] += 1;
        }
        // Shares 12/25, 6/25, 4/25, 3/25.
        assert!(counts[0] > 11_500 && counts[0] < 12_500, "{counts:?}");
        assert!(counts[3] > 2_700 && counts[3] < 3_300, "{counts:?}");
    }
}
