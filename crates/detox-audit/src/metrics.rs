//! The bias metrics, as the reference code defines them.
//!
//! - **AUC** is the Mann–Whitney statistic: the share of (negative, positive) pairs in which
//!   the positive scores higher, a tie counting half (what `sklearn.metrics.roc_auc_score`
//!   computes). Undefined (`None`) without both classes.
//! - **Subgroup, BPSN and BNSP AUC** follow Borkan et al. 2019 as coded in
//!   conversationai/unintended-ml-bias-analysis, `unintended_ml_bias/model_bias_analysis.py`,
//!   functions `compute_subgroup_auc`, `compute_bpsn_auc` and `compute_bnsp_auc`: the AUC on
//!   the subgroup's rows; on the subgroup's negatives with the background's positives; on the
//!   subgroup's positives with the background's negatives (background: every row outside the
//!   subgroup).
//! - **Power mean and the final bias metric** follow the Jigsaw Unintended Bias in Toxicity
//!   Classification competition's evaluation (Borkan's "benchmark kernel",
//!   `power_mean` and `get_final_metric`): `M_p = (mean x^p)^(1/p)` with `p = -5`, and
//!   `0.25 · overall AUC + 0.75 · mean(M_p(subgroup), M_p(BPSN), M_p(BNSP))`.
//! - **FPED / FNED** follow Dixon et al. 2018 (§5, "Error rate equality difference"):
//!   `Σ_t |FPR − FPR_t|` and `Σ_t |FNR − FNR_t|` over the terms `t`.
//!
//! Every AUC here is computed with per-row weights ([`weighted_auc`]) so that a bootstrap
//! replicate (rows drawn with replacement = integer weights) needs no copying or re-sorting.

/// A scored row: its score and whether it is labelled toxic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// The scorer's score.
    pub score: f64,
    /// The human (or template) label: toxic.
    pub label: bool,
}

/// Mann–Whitney AUC of `rows` already sorted by score (ascending), each row counted
/// `weights[i]` times (`None` weights: once each). Ties count half. `None` when either class
/// has zero total weight.
pub fn weighted_auc(sorted: &[Scored], weights: Option<&[f64]>) -> Option<f64> {
    let w = |i: usize| weights.map_or(1.0, |w| w[i]);
    let (mut pairs, mut neg_below, mut pos_total) = (0.0, 0.0, 0.0);
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        let (mut pos, mut neg) = (0.0, 0.0);
        while j < sorted.len() && sorted[j].score == sorted[i].score {
            if sorted[j].label {
                pos += w(j);
            } else {
                neg += w(j);
            }
            j += 1;
        }
        pairs += pos * (neg_below + 0.5 * neg);
        neg_below += neg;
        pos_total += pos;
        i = j;
    }
    if pos_total == 0.0 || neg_below == 0.0 {
        return None;
    }
    Some(pairs / (pos_total * neg_below))
}

/// Sorts rows by score (ascending; NaN last) for [`weighted_auc`].
pub fn sort_by_score(rows: &mut [Scored]) {
    rows.sort_by(|a, b| a.score.total_cmp(&b.score));
}

/// Mann–Whitney AUC of scored rows in any order (`None` without both classes).
pub fn auc(rows: &[Scored]) -> Option<f64> {
    let mut v = rows.to_vec();
    sort_by_score(&mut v);
    weighted_auc(&v, None)
}

/// Subgroup AUC (`compute_subgroup_auc`): the AUC on the rows `in_group` marks.
pub fn subgroup_auc(rows: &[Scored], in_group: &[bool]) -> Option<f64> {
    let v: Vec<Scored> = rows
        .iter()
        .zip(in_group)
        .filter(|(_, &g)| g)
        .map(|(r, _)| *r)
        .collect();
    auc(&v)
}

/// BPSN AUC (`compute_bpsn_auc`): the subgroup's negatives with the background's positives.
pub fn bpsn_auc(rows: &[Scored], in_group: &[bool]) -> Option<f64> {
    let v: Vec<Scored> = rows
        .iter()
        .zip(in_group)
        .filter(|(r, &g)| (g && !r.label) || (!g && r.label))
        .map(|(r, _)| *r)
        .collect();
    auc(&v)
}

/// BNSP AUC (`compute_bnsp_auc`): the subgroup's positives with the background's negatives.
pub fn bnsp_auc(rows: &[Scored], in_group: &[bool]) -> Option<f64> {
    let v: Vec<Scored> = rows
        .iter()
        .zip(in_group)
        .filter(|(r, &g)| (g && r.label) || (!g && !r.label))
        .map(|(r, _)| *r)
        .collect();
    auc(&v)
}

/// False-positive rate at `threshold`: the share of negatives scored `>= threshold`
/// (`None` without negatives).
pub fn fpr(rows: &[Scored], threshold: f64) -> Option<f64> {
    rate(rows.iter().filter(|r| !r.label), |r| r.score >= threshold)
}

/// False-negative rate at `threshold`: the share of positives scored `< threshold`
/// (`None` without positives).
pub fn fnr(rows: &[Scored], threshold: f64) -> Option<f64> {
    rate(rows.iter().filter(|r| r.label), |r| r.score < threshold)
}

fn rate<'a>(rows: impl Iterator<Item = &'a Scored>, hit: impl Fn(&Scored) -> bool) -> Option<f64> {
    let (mut n, mut k) = (0usize, 0usize);
    for r in rows {
        n += 1;
        k += usize::from(hit(r));
    }
    (n > 0).then(|| k as f64 / n as f64)
}

/// Dixon et al.'s equality difference: `Σ_t |overall − rate_t|` over the per-term rates that
/// are defined (FPED with false-positive rates, FNED with false-negative rates).
pub fn equality_difference(overall: f64, per_term: &[Option<f64>]) -> f64 {
    per_term.iter().flatten().map(|r| (overall - r).abs()).sum()
}

/// The generalised mean `(Σ x^p / n)^(1/p)` (`power_mean` of the competition's evaluation);
/// `None` for an empty list. With `p < 0` a zero gives 0.
pub fn power_mean(xs: &[f64], p: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let total: f64 = xs.iter().map(|x| x.powf(p)).sum();
    Some((total / xs.len() as f64).powf(1.0 / p))
}

/// The power the competition used.
pub const POWER: f64 = -5.0;
/// The weight of the overall AUC in the final metric.
pub const OVERALL_MODEL_WEIGHT: f64 = 0.25;

/// `get_final_metric`: `0.25 · overall AUC + 0.75 · mean of the three power means (p = −5)`
/// of the per-group subgroup, BPSN and BNSP AUCs. `None` when any list is empty.
pub fn final_bias_metric(
    overall_auc: f64,
    subgroup: &[f64],
    bpsn: &[f64],
    bnsp: &[f64],
) -> Option<f64> {
    let bias =
        (power_mean(subgroup, POWER)? + power_mean(bpsn, POWER)? + power_mean(bnsp, POWER)?) / 3.0;
    Some(OVERALL_MODEL_WEIGHT * overall_auc + (1.0 - OVERALL_MODEL_WEIGHT) * bias)
}

/// Linear-interpolated quantile (`q` in [0, 1]) of sorted values; `None` when empty.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

/// The 2.5% and 97.5% quantiles of bootstrap replicates: a 95% percentile interval (`None`
/// without any).
pub fn percentile_interval(mut reps: Vec<f64>) -> Option<[f64; 2]> {
    reps.sort_by(f64::total_cmp);
    Some([quantile(&reps, 0.025)?, quantile(&reps, 0.975)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[(f64, bool)]) -> Vec<Scored> {
        v.iter()
            .map(|&(score, label)| Scored { score, label })
            .collect()
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn auc_counts_ties_half_and_needs_both_classes() {
        // Pairs (neg, pos): negs {0.1, 0.5}, pos {0.5, 0.9}:
        // (0.1,0.5)=1 (0.1,0.9)=1 (0.5,0.5)=0.5 (0.5,0.9)=1 -> 3.5/4.
        let r = rows(&[(0.5, false), (0.9, true), (0.1, false), (0.5, true)]);
        assert!(close(auc(&r), 0.875));
        // Agrees with detox-core's rank-sum AUC.
        let s: Vec<f64> = r.iter().map(|x| x.score).collect();
        let l: Vec<bool> = r.iter().map(|x| x.label).collect();
        assert!(close(
            auc(&r),
            detox_core::metrics::roc_auc(&s, &l).unwrap()
        ));
        // All tied: 0.5.
        assert!(close(auc(&rows(&[(0.3, true), (0.3, false)])), 0.5));
        assert_eq!(auc(&rows(&[(0.3, true), (0.4, true)])), None);
        assert_eq!(auc(&[]), None);
    }

    #[test]
    fn weights_count_rows_repeatedly() {
        let mut r = rows(&[(0.1, false), (0.2, true), (0.3, false)]);
        sort_by_score(&mut r);
        // Unweighted: pos 0.2 beats neg 0.1 only -> 1/2.
        assert!(close(weighted_auc(&r, None), 0.5));
        // Neg 0.1 twice, neg 0.3 once: 2/3.
        assert!(close(weighted_auc(&r, Some(&[2.0, 1.0, 1.0])), 2.0 / 3.0));
        // A class weighted zero is absent.
        assert_eq!(weighted_auc(&r, Some(&[1.0, 0.0, 1.0])), None);
    }

    #[test]
    fn subgroup_bpsn_bnsp_on_a_hand_computed_example() {
        // Group rows: neg 0.6, pos 0.7. Background: neg 0.2, pos 0.5, pos 0.9.
        let r = rows(&[
            (0.6, false),
            (0.7, true),
            (0.2, false),
            (0.5, true),
            (0.9, true),
        ]);
        let g = [true, true, false, false, false];
        assert!(close(subgroup_auc(&r, &g), 1.0));
        // BPSN: group neg 0.6 vs background pos {0.5, 0.9}: 1 of 2.
        assert!(close(bpsn_auc(&r, &g), 0.5));
        // BNSP: group pos 0.7 vs background neg 0.2: 1.
        assert!(close(bnsp_auc(&r, &g), 1.0));
        // An empty group has no AUCs.
        let none = [false; 5];
        assert_eq!(subgroup_auc(&r, &none), None);
        assert_eq!(bnsp_auc(&r, &none), None);
    }

    #[test]
    fn rates_and_equality_differences() {
        let r = rows(&[(0.6, false), (0.4, false), (0.5, true), (0.2, true)]);
        assert!(close(fpr(&r, 0.5), 0.5)); // 0.6 flagged of two negatives
        assert!(close(fnr(&r, 0.5), 0.5)); // 0.2 missed of two positives
        assert_eq!(fpr(&rows(&[(0.9, true)]), 0.5), None);
        // |0.1-0.3| + |0.1-0.1| + |0.1-0.0| = 0.3; an undefined rate adds nothing.
        let d = equality_difference(0.1, &[Some(0.3), Some(0.1), Some(0.0), None]);
        assert!((d - 0.3).abs() < 1e-12);
    }

    #[test]
    fn power_mean_and_final_metric() {
        // p = 1 is the arithmetic mean; p = -1 the harmonic mean.
        assert!(close(power_mean(&[1.0, 3.0], 1.0), 2.0));
        assert!(close(power_mean(&[1.0, 4.0], -1.0), 1.6));
        // p = -5 of {0.5, 1}: ((32 + 1)/2)^(-1/5).
        assert!(close(power_mean(&[0.5, 1.0], -5.0), 16.5f64.powf(-0.2)));
        assert_eq!(power_mean(&[], -5.0), None);
        // Identical AUCs: power mean is that AUC; 0.25*0.9 + 0.75*0.8 = 0.825.
        let m = final_bias_metric(0.9, &[0.8, 0.8], &[0.8], &[0.8]);
        assert!(close(m, 0.825));
        assert_eq!(final_bias_metric(0.9, &[], &[0.8], &[0.8]), None);
    }

    #[test]
    fn quantiles_interpolate() {
        assert!(close(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), 3.0));
        assert!(close(quantile(&[0.0, 10.0], 0.25), 2.5));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
