//! Statistics used to judge scorers and calibrate them: rank correlation, ROC-AUC and
//! isotonic regression (a monotone map from raw scores to a target scale).

/// Average ranks (1-based), ties sharing the mean of their positions.
pub fn ranks(xs: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..xs.len()).collect();
    idx.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut r = vec![0.0; xs.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && xs[idx[j + 1]] == xs[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Pearson correlation; `None` when either side is constant or the lengths differ.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 {
        return None;
    }
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    Some(sxy / (sxx * syy).sqrt())
}

/// Spearman rank correlation (Pearson on average ranks).
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    pearson(&ranks(x), &ranks(y))
}

/// ROC-AUC of `scores` for binary `labels` (the Mann-Whitney statistic, ties counted half);
/// `None` without both classes.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let pos = labels.iter().filter(|&&l| l).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 || scores.len() != labels.len() {
        return None;
    }
    let r = ranks(scores);
    let sum_pos: f64 = r
        .iter()
        .zip(labels)
        .filter(|(_, &l)| l)
        .map(|(r, _)| r)
        .sum();
    Some((sum_pos - (pos * (pos + 1)) as f64 / 2.0) / (pos as f64 * neg as f64))
}

/// A monotone non-decreasing piecewise-linear map, fitted by isotonic regression.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Isotonic {
    /// Knot positions (raw scores), increasing.
    pub x: Vec<f64>,
    /// Values at the knots, non-decreasing.
    pub y: Vec<f64>,
}

impl Isotonic {
    /// Fits `y ~ f(x)` with f non-decreasing (pool-adjacent-violators), then keeps one knot
    /// per block (at its mean x) for linear interpolation.
    pub fn fit(x: &[f64], y: &[f64]) -> Option<Self> {
        if x.len() != y.len() || x.is_empty() {
            return None;
        }
        let mut idx: Vec<usize> = (0..x.len()).collect();
        idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
        // Blocks of (sum_x, sum_y, count).
        let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
        for &i in &idx {
            blocks.push((x[i], y[i], 1.0));
            while blocks.len() >= 2 {
                let n = blocks.len();
                let (a, b) = (blocks[n - 2], blocks[n - 1]);
                if a.1 / a.2 > b.1 / b.2 {
                    blocks[n - 2] = (a.0 + b.0, a.1 + b.1, a.2 + b.2);
                    blocks.pop();
                } else {
                    break;
                }
            }
        }
        let xs: Vec<f64> = blocks.iter().map(|b| b.0 / b.2).collect();
        let ys: Vec<f64> = blocks.iter().map(|b| b.1 / b.2).collect();
        Some(Self { x: xs, y: ys })
    }

    /// Applies the map (clamped to the end values outside the knots).
    pub fn apply(&self, v: f64) -> f64 {
        let n = self.x.len();
        if n == 0 {
            return v;
        }
        if v <= self.x[0] {
            return self.y[0];
        }
        if v >= self.x[n - 1] {
            return self.y[n - 1];
        }
        let j = self.x.partition_point(|&k| k <= v);
        let (x0, x1, y0, y1) = (self.x[j - 1], self.x[j], self.y[j - 1], self.y[j]);
        if x1 == x0 {
            return y1;
        }
        y0 + (y1 - y0) * (v - x0) / (x1 - x0)
    }

    /// Reduces the knots to at most `max` (evenly spaced in rank), keeping the ends.
    pub fn thin(&self, max: usize) -> Self {
        let n = self.x.len();
        if n <= max || max < 2 {
            return self.clone();
        }
        let keep: Vec<usize> = (0..max).map(|i| i * (n - 1) / (max - 1)).collect();
        Self {
            x: keep.iter().map(|&i| self.x[i]).collect(),
            y: keep.iter().map(|&i| self.y[i]).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties() {
        assert_eq!(ranks(&[10.0, 20.0, 10.0, 30.0]), vec![1.5, 3.0, 1.5, 4.0]);
    }

    #[test]
    fn spearman_is_one_for_monotone_and_minus_one_for_reversed() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [1.0, 4.0, 9.0, 16.0, 100.0];
        assert!((spearman(&x, &y).unwrap() - 1.0).abs() < 1e-12);
        let r: Vec<f64> = y.iter().rev().copied().collect();
        assert!((spearman(&x, &r).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(spearman(&x, &[1.0; 5]), None);
    }

    #[test]
    fn auc_matches_the_pairwise_definition() {
        let s = [0.1, 0.4, 0.35, 0.8, 0.4];
        let l = [false, false, true, true, true];
        // Pairs (pos, neg): (0.35>0.1) (0.35<0.4) (0.8>both) (0.4>0.1) (0.4=0.4 half) -> 4.5/6
        assert!((roc_auc(&s, &l).unwrap() - 4.5 / 6.0).abs() < 1e-12);
        assert_eq!(roc_auc(&s, &[true; 5]), None);
    }

    #[test]
    fn isotonic_is_monotone_and_fits_means() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let y = [0.0, 0.2, 0.1, 0.5, 0.4, 1.0];
        let f = Isotonic::fit(&x, &y).unwrap();
        assert!(f.y.windows(2).all(|w| w[0] <= w[1]));
        assert!((f.apply(2.5) - 0.15).abs() < 1e-12, "{f:?}");
        assert_eq!(f.apply(-10.0), 0.0);
        assert_eq!(f.apply(10.0), 1.0);
        let t = f.thin(2);
        assert_eq!(t.x.len(), 2);
    }
}
