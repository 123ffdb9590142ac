//! Who gets flagged (Welbl et al. 2021, §6: after strong filtering, the samples the classifier
//! still flags are dominated by identity mentions; "gay" appears in 30.2% of them against 4.1%
//! for the standard model): among the generations the scorer flags (toxicity at or above the
//! threshold), the share that mention each identity term, on both sides, beside the share
//! among all generations (a term over-represented among flagged samples is one the scorer
//! flags for its own sake).
//!
//! The terms are Dixon et al.'s 50 identity adjectives (`adjectives_people.txt` of the
//! templates' generator), found as whole words ([`crate::terms`]). Shares carry Wilson 95%
//! score intervals (Wilson 1927; the interval `statsmodels.stats.proportion.proportion_confint`
//! gives with `method="wilson"`).

use crate::terms::Terms;
use serde::{Deserialize, Serialize};

/// A count out of a total, with its Wilson 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Share {
    /// How many.
    pub count: usize,
    /// Out of.
    pub of: usize,
    /// `count / of` (NaN when `of` is 0).
    pub value: f64,
    /// Wilson 95% interval.
    pub ci95: [f64; 2],
}

impl Share {
    /// `count` of `of` with its Wilson interval (z = 1.959964).
    pub fn new(count: usize, of: usize) -> Self {
        if of == 0 {
            return Self {
                count,
                of,
                value: f64::NAN,
                ci95: [f64::NAN; 2],
            };
        }
        let (n, p) = (of as f64, count as f64 / of as f64);
        let z = 1.959_963_984_540_054_f64;
        let z2 = z * z;
        let denom = 1.0 + z2 / n;
        let centre = (p + z2 / (2.0 * n)) / denom;
        let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
        Self {
            count,
            of,
            value: p,
            ci95: [(centre - half).max(0.0), (centre + half).min(1.0)],
        }
    }
}

/// One side's generations, scored.
#[derive(Debug, Clone, Copy)]
pub struct Scored<'a> {
    /// The text.
    pub text: &'a str,
    /// Its toxicity.
    pub toxicity: f64,
}

/// One identity term on both sides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TermShare {
    /// The term.
    pub term: String,
    /// Share of the base side's flagged samples that mention it.
    pub flagged_base: Share,
    /// Share of the other side's flagged samples that mention it.
    pub flagged_other: Share,
    /// Share of all the base side's samples that mention it.
    pub all_base: Share,
    /// Share of all the other side's samples that mention it.
    pub all_other: Share,
}

/// The who-gets-flagged figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhoGetsFlagged {
    /// Where the generations come from (`detox eval` run folders, or this audit's coverage
    /// generations).
    pub source: String,
    /// The base side.
    pub base: String,
    /// The other side.
    pub other: String,
    /// Flagged: toxicity at or above this.
    pub threshold: f64,
    /// Flagged samples that mention any identity term, per side.
    pub any_flagged: [Share; 2],
    /// All samples that mention any identity term, per side.
    pub any_all: [Share; 2],
    /// Terms mentioned at least once among either side's flagged samples, the largest share
    /// on the other side first.
    pub terms: Vec<TermShare>,
    /// Fewer flagged samples than the minimum on a side: its shares are shown, not trusted.
    pub too_few: bool,
    /// The minimum.
    pub min_flagged: usize,
}

/// Per sample, the terms it mentions; and the flagged ones.
fn mentions(samples: &[Scored], terms: &Terms, threshold: f64) -> (Vec<Vec<usize>>, Vec<bool>) {
    (
        samples.iter().map(|s| terms.found(s.text)).collect(),
        samples.iter().map(|s| s.toxicity >= threshold).collect(),
    )
}

fn count(found: &[Vec<usize>], keep: &[bool], hit: impl Fn(&[usize]) -> bool) -> Share {
    let of = keep.iter().filter(|k| **k).count();
    let c = found
        .iter()
        .zip(keep)
        .filter(|(f, k)| **k && hit(f))
        .count();
    Share::new(c, of)
}

/// The figures for two sides' generations.
pub fn who_gets_flagged(
    source: &str,
    labels: (&str, &str),
    base: &[Scored],
    other: &[Scored],
    terms: &Terms,
    threshold: f64,
    min_flagged: usize,
) -> WhoGetsFlagged {
    let (fb, kb) = mentions(base, terms, threshold);
    let (fo, ko) = mentions(other, terms, threshold);
    let all_b = vec![true; base.len()];
    let all_o = vec![true; other.len()];
    let any = |f: &[usize]| !f.is_empty();
    let mut rows: Vec<TermShare> = terms
        .as_slice()
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let has = |f: &[usize]| f.contains(&i);
            TermShare {
                term: t.clone(),
                flagged_base: count(&fb, &kb, has),
                flagged_other: count(&fo, &ko, has),
                all_base: count(&fb, &all_b, has),
                all_other: count(&fo, &all_o, has),
            }
        })
        .filter(|r| r.flagged_base.count + r.flagged_other.count > 0)
        .collect();
    let key = |s: &Share| if s.value.is_finite() { s.value } else { 0.0 };
    rows.sort_by(|a, b| {
        key(&b.flagged_other)
            .total_cmp(&key(&a.flagged_other))
            .then_with(|| key(&b.flagged_base).total_cmp(&key(&a.flagged_base)))
            .then_with(|| a.term.cmp(&b.term))
    });
    let flagged = [
        kb.iter().filter(|k| **k).count(),
        ko.iter().filter(|k| **k).count(),
    ];
    WhoGetsFlagged {
        source: source.into(),
        base: labels.0.into(),
        other: labels.1.into(),
        threshold,
        any_flagged: [count(&fb, &kb, any), count(&fo, &ko, any)],
        any_all: [count(&fb, &all_b, any), count(&fo, &all_o, any)],
        terms: rows,
        too_few: flagged.iter().any(|&n| n < min_flagged),
        min_flagged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_statsmodels() {
        // statsmodels.stats.proportion.proportion_confint(3, 10, method="wilson")
        // = (0.10779126740630104, 0.6032218525388546)
        let s = Share::new(3, 10);
        assert!(
            (s.ci95[0] - 0.107_791_267_406_301_04).abs() < 1e-12,
            "{s:?}"
        );
        assert!((s.ci95[1] - 0.603_221_852_538_854_6).abs() < 1e-12, "{s:?}");
        assert_eq!(Share::new(0, 5).ci95[0], 0.0);
        assert!(Share::new(0, 0).value.is_nan());
    }

    #[test]
    fn shares_are_among_flagged_samples_per_side() {
        let terms = Terms::new(["gay", "muslim", "black"]);
        let sc = |text, toxicity| Scored { text, toxicity };
        let base = [
            sc("you idiot", 0.9),
            sc("gay people idiot", 0.8),
            sc("a gay man", 0.1),
            sc("muslim friends", 0.2),
        ];
        let other = [
            sc("gay", 0.7),
            sc("a gay wedding", 0.6),
            sc("a black cat", 0.1),
            sc("fine", 0.0),
        ];
        let w = who_gets_flagged("test", ("m", "m + x"), &base, &other, &terms, 0.5, 3);
        let gay = &w.terms[0];
        assert_eq!(gay.term, "gay");
        assert_eq!((gay.flagged_base.count, gay.flagged_base.of), (1, 2));
        assert_eq!((gay.flagged_other.count, gay.flagged_other.of), (2, 2));
        assert_eq!((gay.all_base.count, gay.all_base.of), (2, 4));
        assert_eq!(w.terms.len(), 1, "muslim and black are never flagged");
        assert_eq!(w.any_flagged[1].count, 2);
        assert_eq!(w.any_all[0].count, 3);
        assert!(w.too_few, "2 flagged samples per side are fewer than 3");
    }
}
