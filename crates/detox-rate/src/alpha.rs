//! Krippendorff's alpha for reliability data with missing values, at the nominal, ordinal and
//! interval levels, from the coincidence matrix as Krippendorff defines it ("Computing
//! Krippendorff's Alpha-Reliability", 2011, sections C–E): pairable values are those of units
//! coded by at least two coders; `o_ck` sums `1 / (m_u - 1)` over the ordered pairs of each
//! unit; `alpha = 1 - D_o / D_e` with `D_o = Σ o_ck δ²_ck / n` and
//! `D_e = Σ n_c n_k δ²_ck / (n (n - 1))`.
//!
//! Checked against the published example (3 coders × 15 units: 0.691358 nominal, 0.810845
//! interval) and against the `krippendorff` Python package (`scripts/krippendorff_reference.py`).

use detox_core::rng::SplitMix64;
use serde::Serialize;

/// The level of measurement: which difference function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// δ² = 0 if equal, else 1.
    Nominal,
    /// δ²_ck = (Σ_{g between c and k} n_g − (n_c + n_k) / 2)².
    Ordinal,
    /// δ² = (c − k)².
    Interval,
}

/// Alpha for `units`, each the values its coders gave (integers on an ordered scale; units
/// with fewer than two values are not pairable and are left out). `None` when there are fewer
/// than two pairable values or no expected disagreement (every value the same).
pub fn alpha(units: &[Vec<i64>], level: Level) -> Option<f64> {
    let mut values: Vec<i64> = units
        .iter()
        .filter(|u| u.len() >= 2)
        .flatten()
        .copied()
        .collect();
    values.sort_unstable();
    values.dedup();
    let v = values.len();
    if v == 0 {
        return None;
    }
    let index = |x: i64| values.binary_search(&x).unwrap_or(0);
    // The coincidence matrix.
    let mut o = vec![0.0f64; v * v];
    for u in units.iter().filter(|u| u.len() >= 2) {
        let w = 1.0 / (u.len() - 1) as f64;
        for (i, &a) in u.iter().enumerate() {
            for (j, &b) in u.iter().enumerate() {
                if i != j {
                    o[index(a) * v + index(b)] += w;
                }
            }
        }
    }
    let nc: Vec<f64> = (0..v).map(|c| (0..v).map(|k| o[c * v + k]).sum()).collect();
    let n: f64 = nc.iter().sum();
    if n < 2.0 {
        return None;
    }
    let delta = |c: usize, k: usize| -> f64 {
        match level {
            Level::Nominal => f64::from(u8::from(c != k)),
            Level::Interval => {
                let d = (values[c] - values[k]) as f64;
                d * d
            }
            Level::Ordinal => {
                let (lo, hi) = (c.min(k), c.max(k));
                let s: f64 = nc[lo..=hi].iter().sum::<f64>() - (nc[c] + nc[k]) / 2.0;
                s * s
            }
        }
    };
    let mut d_o = 0.0;
    let mut d_e = 0.0;
    for c in 0..v {
        for k in 0..v {
            let d = delta(c, k);
            d_o += o[c * v + k] * d;
            d_e += nc[c] * nc[k] * d;
        }
    }
    d_o /= n;
    d_e /= n * (n - 1.0);
    (d_e > 0.0).then(|| 1.0 - d_o / d_e)
}

/// Alpha with a 95% interval from `resamples` bootstrap draws of units (with replacement);
/// draws with no alpha are skipped. The interval is `None` with no resamples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AlphaEstimate {
    /// The level.
    pub level: Level,
    /// Alpha on the data.
    pub alpha: Option<f64>,
    /// The 2.5th and 97.5th percentiles of the bootstrap draws.
    pub ci95: Option<[f64; 2]>,
}

/// Alpha and its bootstrap interval.
pub fn estimate(units: &[Vec<i64>], level: Level, resamples: usize, seed: u64) -> AlphaEstimate {
    let pairable: Vec<&Vec<i64>> = units.iter().filter(|u| u.len() >= 2).collect();
    let mut rng = SplitMix64::new(seed);
    let mut draws: Vec<f64> = Vec::with_capacity(resamples);
    if !pairable.is_empty() {
        let mut sample: Vec<Vec<i64>> = Vec::with_capacity(pairable.len());
        for _ in 0..resamples {
            sample.clear();
            for _ in 0..pairable.len() {
                sample.push(pairable[rng.below(pairable.len())].clone());
            }
            if let Some(a) = alpha(&sample, level) {
                draws.push(a);
            }
        }
    }
    draws.sort_by(f64::total_cmp);
    let pct =
        |q: f64| draws[((q * (draws.len() - 1) as f64).round() as usize).min(draws.len() - 1)];
    AlphaEstimate {
        level,
        alpha: alpha(units, level),
        ci95: (!draws.is_empty()).then(|| [pct(0.025), pct(0.975)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Krippendorff's example: 3 coders (rows), 15 units (columns), 0 for a missing value.
    #[rustfmt::skip]
    pub(crate) fn example() -> Vec<Vec<i64>> {
        let coders: [[i64; 15]; 3] = [
            [0, 0, 0, 0, 0, 3, 4, 1, 2, 1, 1, 3, 3, 0, 3],
            [1, 0, 2, 1, 3, 3, 4, 3, 0, 0, 0, 0, 0, 0, 0],
            [0, 0, 2, 1, 3, 4, 4, 0, 2, 1, 1, 3, 3, 0, 4],
        ];
        (0..15)
            .map(|u| coders.iter().map(|c| c[u]).filter(|&v| v != 0).collect())
            .collect()
    }

    #[test]
    fn the_published_example() {
        let u = example();
        let nominal = alpha(&u, Level::Nominal).unwrap();
        let interval = alpha(&u, Level::Interval).unwrap();
        assert!((nominal - 0.691358).abs() < 5e-7, "{nominal}");
        assert!((interval - 0.810845).abs() < 5e-7, "{interval}");
        // The `krippendorff` package (scripts/krippendorff_reference.py).
        let ordinal = alpha(&u, Level::Ordinal).unwrap();
        assert!((ordinal - 0.806721).abs() < 5e-7, "{ordinal}");
    }

    #[test]
    fn perfect_agreement_is_one_and_no_variation_is_undefined() {
        let u = vec![vec![1, 1], vec![2, 2, 2], vec![3]];
        for l in [Level::Nominal, Level::Ordinal, Level::Interval] {
            assert!((alpha(&u, l).unwrap() - 1.0).abs() < 1e-12);
        }
        assert!(alpha(&[vec![2, 2], vec![2, 2]], Level::Nominal).is_none());
        assert!(alpha(&[vec![1]], Level::Nominal).is_none());
    }

    #[test]
    fn the_bootstrap_interval_holds_the_estimate() {
        let e = estimate(&example(), Level::Interval, 500, 3);
        let [lo, hi] = e.ci95.unwrap();
        let a = e.alpha.unwrap();
        assert!(lo <= a && a <= hi && lo < hi, "{lo} {a} {hi}");
        assert_eq!(e, estimate(&example(), Level::Interval, 500, 3), "seeded");
    }
}
