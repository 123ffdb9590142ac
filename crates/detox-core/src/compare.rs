//! Numerical comparison for parity tests, where NaN and infinity are failures.
//!
//! `a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)` passes a model that
//! outputs NaN: `f32::max` ignores NaN operands. [`max_abs_diff`] returns infinity instead
//! whenever a value on either side is not finite or the lengths differ, so every
//! `max_abs_diff(..) <= tol` check fails on broken output.
//!
//! ```
//! use detox_core::compare::max_abs_diff;
//! assert_eq!(max_abs_diff(&[1.0, 2.0], &[1.0, 2.5]), 0.5);
//! assert_eq!(max_abs_diff(&[1.0, f32::NAN], &[1.0, 2.0]), f32::INFINITY);
//! assert_eq!(max_abs_diff(&[1.0], &[1.0, 2.0]), f32::INFINITY);
//! ```

/// The largest |a_i - b_i|; infinity when the lengths differ or any value is NaN or infinite.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    let mut m = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        if !x.is_finite() || !y.is_finite() {
            return f32::INFINITY;
        }
        let d = (x - y).abs();
        if d > m {
            m = d;
        }
    }
    m
}

/// [`max_abs_diff`] for f64 values.
pub fn max_abs_diff_f64(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    let mut m = 0.0f64;
    for (x, y) in a.iter().zip(b) {
        if !x.is_finite() || !y.is_finite() {
            return f64::INFINITY;
        }
        let d = (x - y).abs();
        if d > m {
            m = d;
        }
    }
    m
}

/// [`max_abs_diff`] over rows (e.g. a batch of logit vectors); infinity when the row counts
/// or any row lengths differ.
pub fn max_abs_diff_rows<A: AsRef<[f32]>, B: AsRef<[f32]>>(a: &[A], b: &[B]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| max_abs_diff(x.as_ref(), y.as_ref()))
        .fold(0.0, |m, d| if d > m || d.is_nan() { d } else { m })
}

/// Panics with `what` and the difference unless every value is finite and within `tol`.
pub fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    let d = max_abs_diff(a, b);
    assert!(
        d <= tol,
        "{what}: max |difference| {d} exceeds {tol} (infinity: lengths differ or a value is NaN/inf)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_and_inf_are_failures() {
        assert_eq!(max_abs_diff(&[f32::NAN], &[f32::NAN]), f32::INFINITY);
        assert_eq!(max_abs_diff(&[0.0], &[f32::INFINITY]), f32::INFINITY);
        assert_eq!(max_abs_diff_f64(&[f64::NAN], &[0.0]), f64::INFINITY);
        assert_eq!(
            max_abs_diff_rows(&[vec![0.0f32], vec![f32::NAN]], &[vec![0.0f32], vec![0.0]]),
            f32::INFINITY
        );
        assert_eq!(
            max_abs_diff_rows(&[vec![0.0f32]], &[vec![0.0f32], vec![0.0]]),
            f32::INFINITY
        );
        assert_eq!(
            max_abs_diff_rows(&[vec![0.0f32, 1.0]], &[vec![0.0f32, 1.25]]),
            0.25
        );
    }

    #[test]
    #[should_panic(expected = "logits")]
    fn assert_close_panics_on_nan() {
        assert_close(&[f32::NAN], &[0.0], 1e-4, "logits");
    }
}
