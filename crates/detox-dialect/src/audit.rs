//! A dialect audit of a toxicity scorer, after Sap, Card, Gabriel, Choi and Smith, "The Risk
//! of Racial Bias in Hate Speech Detection" (ACL 2019).
//!
//! Sap et al. inferred each tweet's African-American English (AAE) proportion with the
//! TwitterAAE model, then (section 3) correlated it with the labels and classifier outputs
//! on Davidson et al.'s tweets and (section 4) compared false-positive rates on tweets
//! annotated as not offensive between AAE and White-aligned tweets. [`audit`] computes:
//!
//! - the Pearson correlation between the AAE proportion and the score over all texts with
//!   proportions;
//! - the false-positive rate (score ≥ threshold) among texts labelled "neither" (not
//!   offensive), separately for AAE-dominant and White-dominant texts ([`dominant_group`]),
//!   and the ratio AAE / White;
//! - 95% (or other level) percentile bootstrap intervals for each figure.

use crate::model::{AA, WHITE};
use detox_core::rng::SplitMix64;

/// Which dialect a text's proportions lean to, by [`dominant_group`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// African-American English dominates.
    Aae,
    /// White-aligned English dominates.
    White,
}

/// The dominant group of proportions (aa, hispanic, asian, white), or `None`.
///
/// Rule: AAE-dominant when `aa > white` and `aa >= min_share`; White-dominant when
/// `white > aa` and `white >= min_share`; neither otherwise. With `min_share = 0.5` a
/// group must hold a majority of the text's words (the proportions sum to 1), so a text
/// dominated by the Hispanic or Asian topics, or split evenly, is left out; only the AA and
/// White topics were validated by the model's authors, so the comparison uses those two.
/// Blodgett et al. (2016, section 4) used a stricter 0.8 to build high-precision
/// AA- and White-aligned corpora; pass 0.8 to follow them.
pub fn dominant_group(p: &[f64; 4], min_share: f64) -> Option<Group> {
    let (aa, white) = (p[AA], p[WHITE]);
    if aa > white && aa >= min_share {
        Some(Group::Aae)
    } else if white > aa && white >= min_share {
        Some(Group::White)
    } else {
        None
    }
}

/// One audited text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuditItem {
    /// Its dialect proportions; `None` where the model declined (left out of every figure).
    pub proportions: Option<[f64; 4]>,
    /// The scorer's score.
    pub score: f64,
    /// Whether the gold label says the text is not offensive (Davidson: class 2, "neither").
    pub neither: bool,
}

/// Reads a Davidson et al. `class` value: `0` hate speech and `1` offensive give `false`,
/// `2` neither gives `true` (the data set's SOURCE/README). `None` for anything else.
pub fn davidson_neither(class: &str) -> Option<bool> {
    match class.trim() {
        "0" | "1" => Some(false),
        "2" => Some(true),
        _ => None,
    }
}

/// Settings of [`audit`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuditOptions {
    /// A score at or above this counts as flagged.
    pub threshold: f64,
    /// The share a group needs to dominate ([`dominant_group`]).
    pub min_share: f64,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Confidence level of the intervals.
    pub level: f64,
    /// Seed of the resampling.
    pub seed: u64,
}

impl Default for AuditOptions {
    /// Threshold 0.5, majority rule, 1,000 resamples, 95% intervals, seed 0.
    fn default() -> Self {
        Self {
            threshold: 0.5,
            min_share: 0.5,
            resamples: 1000,
            level: 0.95,
            seed: 0,
        }
    }
}

/// A figure with its percentile bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Estimate {
    /// The figure on the data as given.
    pub value: f64,
    /// Lower end of the interval.
    pub low: f64,
    /// Upper end of the interval.
    pub high: f64,
}

/// A false-positive rate: flagged "neither" texts of one group.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rate {
    /// "Neither" texts of the group.
    pub n: usize,
    /// Of which flagged.
    pub flagged: usize,
    /// `flagged / n`, with its interval; `None` when `n` is 0.
    pub rate: Option<Estimate>,
}

/// The audit's figures.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditReport {
    /// Texts with proportions.
    pub n: usize,
    /// Texts the model declined (left out).
    pub declined: usize,
    /// Pearson correlation of the AAE proportion with the score; `None` when either is
    /// constant or fewer than two texts.
    pub pearson_aa_score: Option<Estimate>,
    /// False-positive rate on AAE-dominant "neither" texts.
    pub fpr_aae: Rate,
    /// False-positive rate on White-dominant "neither" texts.
    pub fpr_white: Rate,
    /// `fpr_aae / fpr_white`; `None` when a rate is missing or the White rate is 0.
    pub fpr_ratio: Option<Estimate>,
}

/// Why an audit could not run.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuditError {
    /// A setting is out of range.
    #[error("invalid audit setting: {0}")]
    Setting(String),
    /// A score is not a finite number.
    #[error("item {index}: score {score} is not a finite number")]
    Score {
        /// 0-based index of the item.
        index: usize,
        /// The score.
        score: f64,
    },
}

/// Pearson's correlation coefficient of paired values; `None` for fewer than two pairs or a
/// constant side. Two-pass (means first) for accuracy.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len().min(y.len());
    if n < 2 {
        return None;
    }
    let mx = x[..n].iter().sum::<f64>() / n as f64;
    let my = y[..n].iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x[..n].iter().zip(&y[..n]) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    Some(sxy / (sxx * syy).sqrt())
}

/// The `q` quantile of sorted values by linear interpolation between closest ranks
/// (numpy's default `linear` method).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The percentile interval of bootstrap replicates around `value`; replicates that are not
/// finite (a resample with a constant side or a zero denominator) are dropped.
fn interval(value: f64, mut reps: Vec<f64>, level: f64) -> Estimate {
    reps.retain(|r| r.is_finite());
    if reps.is_empty() {
        return Estimate {
            value,
            low: value,
            high: value,
        };
    }
    reps.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    Estimate {
        value,
        low: quantile(&reps, tail),
        high: quantile(&reps, 1.0 - tail),
    }
}

/// Flagged count in a resample (with replacement) of `flags`.
fn resample_flagged(flags: &[bool], rng: &mut SplitMix64) -> usize {
    (0..flags.len())
        .filter(|_| flags[rng.below(flags.len())])
        .count()
}

/// Runs the audit (see the module documentation). The correlation is resampled over texts;
/// the two rates are resampled within their groups (a stratified bootstrap, so each
/// replicate keeps the groups' sizes), and the ratio from the same replicates.
pub fn audit(items: &[AuditItem], opts: &AuditOptions) -> Result<AuditReport, AuditError> {
    if !(opts.level > 0.0 && opts.level < 1.0) {
        return Err(AuditError::Setting(format!(
            "level {} must be in (0, 1)",
            opts.level
        )));
    }
    if !(opts.min_share >= 0.0 && opts.min_share <= 1.0) {
        return Err(AuditError::Setting(format!(
            "min_share {} must be in [0, 1]",
            opts.min_share
        )));
    }
    if let Some((index, it)) = items
        .iter()
        .enumerate()
        .find(|(_, it)| !it.score.is_finite())
    {
        return Err(AuditError::Score {
            index,
            score: it.score,
        });
    }
    let known: Vec<(&[f64; 4], &AuditItem)> = items
        .iter()
        .filter_map(|it| it.proportions.as_ref().map(|p| (p, it)))
        .collect();
    let aa: Vec<f64> = known.iter().map(|(p, _)| p[AA]).collect();
    let scores: Vec<f64> = known.iter().map(|(_, it)| it.score).collect();
    let mut flags_aae = Vec::new();
    let mut flags_white = Vec::new();
    for (p, it) in &known {
        if !it.neither {
            continue;
        }
        let flagged = it.score >= opts.threshold;
        match dominant_group(p, opts.min_share) {
            Some(Group::Aae) => flags_aae.push(flagged),
            Some(Group::White) => flags_white.push(flagged),
            None => {}
        }
    }

    let mut rng = SplitMix64::new(opts.seed);
    let n = known.len();
    let pearson_aa_score = pearson(&aa, &scores).map(|value| {
        let mut xs = vec![0.0; n];
        let mut ys = vec![0.0; n];
        let reps = (0..opts.resamples)
            .map(|_| {
                for j in 0..n {
                    let k = rng.below(n);
                    xs[j] = aa[k];
                    ys[j] = scores[k];
                }
                pearson(&xs, &ys).unwrap_or(f64::NAN)
            })
            .collect();
        interval(value, reps, opts.level)
    });

    let rate_of = |flagged: usize, n: usize| flagged as f64 / n as f64;
    let (na, nw) = (flags_aae.len(), flags_white.len());
    let (fa, fw) = (
        flags_aae.iter().filter(|f| **f).count(),
        flags_white.iter().filter(|f| **f).count(),
    );
    let mut reps_a = Vec::with_capacity(opts.resamples);
    let mut reps_w = Vec::with_capacity(opts.resamples);
    let mut reps_ratio = Vec::with_capacity(opts.resamples);
    if na > 0 && nw > 0 {
        for _ in 0..opts.resamples {
            let a = rate_of(resample_flagged(&flags_aae, &mut rng), na);
            let w = rate_of(resample_flagged(&flags_white, &mut rng), nw);
            reps_a.push(a);
            reps_w.push(w);
            reps_ratio.push(a / w);
        }
    } else {
        for _ in 0..opts.resamples {
            if na > 0 {
                reps_a.push(rate_of(resample_flagged(&flags_aae, &mut rng), na));
            }
            if nw > 0 {
                reps_w.push(rate_of(resample_flagged(&flags_white, &mut rng), nw));
            }
        }
    }
    let fpr_aae = Rate {
        n: na,
        flagged: fa,
        rate: (na > 0).then(|| interval(rate_of(fa, na), reps_a, opts.level)),
    };
    let fpr_white = Rate {
        n: nw,
        flagged: fw,
        rate: (nw > 0).then(|| interval(rate_of(fw, nw), reps_w, opts.level)),
    };
    let fpr_ratio = (na > 0 && nw > 0 && fw > 0)
        .then(|| interval(rate_of(fa, na) / rate_of(fw, nw), reps_ratio, opts.level));
    Ok(AuditReport {
        n,
        declined: items.len() - n,
        pearson_aa_score,
        fpr_aae,
        fpr_white,
        fpr_ratio,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(aa: f64, white: f64, score: f64, neither: bool) -> AuditItem {
        let rest = (1.0 - aa - white) / 2.0;
        AuditItem {
            proportions: Some([aa, rest, rest, white]),
            score,
            neither,
        }
    }

    #[test]
    fn dominance_rule() {
        assert_eq!(dominant_group(&[0.6, 0.1, 0.1, 0.2], 0.5), Some(Group::Aae));
        assert_eq!(dominant_group(&[0.5, 0.0, 0.0, 0.5], 0.5), None, "a tie");
        assert_eq!(dominant_group(&[0.45, 0.1, 0.0, 0.45], 0.4), None);
        assert_eq!(
            dominant_group(&[0.4, 0.3, 0.0, 0.3], 0.5),
            None,
            "no majority"
        );
        assert_eq!(
            dominant_group(&[0.2, 0.1, 0.1, 0.6], 0.5),
            Some(Group::White)
        );
        assert_eq!(dominant_group(&[0.1, 0.1, 0.1, 0.7], 0.8), None);
    }

    #[test]
    fn pearson_by_hand() {
        // x = 1,2,3; y = 2,4,7: means 2, 13/3; dx = -1,0,1; dy = -7/3,-1/3,8/3;
        // sxy = 7/3 + 8/3 = 5; sxx = 2; syy = (49+1+64)/9 = 114/9; r = 5 / sqrt(2*114/9).
        let r = pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 7.0]).unwrap();
        assert!((r - 5.0 / (228.0f64 / 9.0).sqrt()).abs() < 1e-12, "{r}");
        assert_eq!(pearson(&[1.0, 1.0], &[2.0, 3.0]), None);
        assert_eq!(pearson(&[1.0], &[2.0]), None);
    }

    #[test]
    fn quantiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert!((quantile(&v, 0.1) - 1.4).abs() < 1e-12);
        assert_eq!(quantile(&v, 1.0), 5.0);
    }

    #[test]
    fn rates_and_ratio_by_hand() {
        let items = vec![
            // AAE-dominant, neither: 2 of 4 flagged (0.5 and 0.9 at threshold 0.5).
            item(0.8, 0.1, 0.9, true),
            item(0.7, 0.2, 0.5, true),
            item(0.6, 0.3, 0.2, true),
            item(0.9, 0.05, 0.1, true),
            // AAE-dominant but offensive: not in the rates.
            item(0.9, 0.05, 0.99, false),
            // White-dominant, neither: 1 of 5 flagged.
            item(0.1, 0.8, 0.6, true),
            item(0.1, 0.7, 0.4, true),
            item(0.2, 0.7, 0.3, true),
            item(0.0, 0.9, 0.0, true),
            item(0.3, 0.6, 0.49, true),
            // Neither group (Hispanic-dominant) and declined.
            item(0.2, 0.2, 0.8, true),
            AuditItem {
                proportions: None,
                score: 1.0,
                neither: true,
            },
        ];
        let opts = AuditOptions {
            resamples: 500,
            ..AuditOptions::default()
        };
        let r = audit(&items, &opts).unwrap();
        assert_eq!((r.n, r.declined), (11, 1));
        assert_eq!((r.fpr_aae.n, r.fpr_aae.flagged), (4, 2));
        assert_eq!((r.fpr_white.n, r.fpr_white.flagged), (5, 1));
        let a = r.fpr_aae.rate.unwrap();
        let w = r.fpr_white.rate.unwrap();
        assert_eq!(a.value, 0.5);
        assert_eq!(w.value, 0.2);
        let ratio = r.fpr_ratio.unwrap();
        assert!((ratio.value - 2.5).abs() < 1e-12);
        for e in [a, w, ratio] {
            assert!(e.low <= e.value && e.value <= e.high, "{e:?}");
            assert!(e.low < e.high, "{e:?}");
        }
        // Rates of 4 and 5 draws can only be multiples of 1/4 and 1/5.
        assert!((a.low * 4.0).fract().abs() < 1e-9 || a.low == 0.0, "{a:?}");
        let aa: Vec<f64> = items
            .iter()
            .filter_map(|i| i.proportions.map(|p| p[AA]))
            .collect();
        let s: Vec<f64> = items
            .iter()
            .filter(|i| i.proportions.is_some())
            .map(|i| i.score)
            .collect();
        let pr = r.pearson_aa_score.unwrap();
        assert!((pr.value - pearson(&aa, &s).unwrap()).abs() < 1e-15);
        assert!(pr.low < pr.value && pr.value < pr.high, "{pr:?}");
        // Same seed, same intervals.
        assert_eq!(audit(&items, &opts).unwrap(), r);
    }

    #[test]
    fn no_white_positives_gives_no_ratio() {
        let items = vec![item(0.8, 0.1, 0.9, true), item(0.1, 0.8, 0.1, true)];
        let r = audit(&items, &AuditOptions::default()).unwrap();
        assert_eq!(r.fpr_white.rate.unwrap().value, 0.0);
        assert_eq!(r.fpr_ratio, None);
        let bad = [AuditItem {
            proportions: None,
            score: f64::NAN,
            neither: true,
        }];
        assert!(matches!(
            audit(&bad, &AuditOptions::default()),
            Err(AuditError::Score { index: 0, .. })
        ));
    }

    #[test]
    fn davidson_classes() {
        assert_eq!(davidson_neither("2"), Some(true));
        assert_eq!(davidson_neither("1"), Some(false));
        assert_eq!(davidson_neither("0"), Some(false));
        assert_eq!(davidson_neither("3"), None);
    }
}
