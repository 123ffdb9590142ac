//! Fitting the n-gram model: sparse logistic regression (one output per target) with AdaGrad,
//! on the same masked, weighted soft targets as the head.

use crate::fit::Rng;
use detox_scorers::ngram::features;

/// Hyper-parameters of the n-gram model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NgramConfig {
    /// log2 of the hash buckets.
    pub bits: u32,
    /// Passes over the data.
    pub epochs: usize,
    /// AdaGrad learning rate.
    pub lr: f32,
    /// Shuffling seed.
    pub seed: u64,
}

impl Default for NgramConfig {
    fn default() -> Self {
        Self {
            bits: 18,
            epochs: 8,
            lr: 0.2,
            seed: 17,
        }
    }
}

/// Fits the model; returns (`w` row-major [2^bits, k], `b` [k]).
pub fn fit_ngram(
    texts: &[&str],
    y: &[Vec<Option<f32>>],
    weights: &[Vec<f32>],
    cfg: &NgramConfig,
    progress: &mut dyn FnMut(usize, f64),
) -> (Vec<f32>, Vec<f32>) {
    let k = y.first().map(|r| r.len()).unwrap_or(0);
    let buckets = 1usize << cfg.bits;
    let feats: Vec<Vec<(u32, f32)>> = texts.iter().map(|t| features(t, cfg.bits)).collect();
    let mut w = vec![0f32; buckets * k];
    let mut gw = vec![1e-6f32; buckets * k];
    let mut b = vec![0f32; k];
    let mut gb = vec![1e-6f32; k];
    let mut rng = Rng::new(cfg.seed);
    let mut order: Vec<usize> = (0..texts.len()).collect();
    for epoch in 0..cfg.epochs {
        rng.shuffle(&mut order);
        let (mut loss, mut mass) = (0f64, 0f64);
        for &i in &order {
            let f = &feats[i];
            for a in 0..k {
                let Some(t) = y[i][a] else { continue };
                let wt = weights[i][a];
                if wt <= 0.0 {
                    continue;
                }
                let mut z = b[a];
                for &(j, x) in f {
                    z += w[j as usize * k + a] * x;
                }
                let p = detox_core::sigmoid(z);
                let g = (p - t) * wt;
                loss += wt as f64
                    * -((t as f64) * (p.max(1e-7) as f64).ln()
                        + (1.0 - t as f64) * ((1.0 - p).max(1e-7) as f64).ln());
                mass += wt as f64;
                gb[a] += g * g;
                b[a] -= cfg.lr * g / gb[a].sqrt();
                for &(j, x) in f {
                    let idx = j as usize * k + a;
                    let gi = g * x;
                    gw[idx] += gi * gi;
                    w[idx] -= cfg.lr * gi / gw[idx].sqrt();
                }
            }
        }
        progress(epoch + 1, loss / mass.max(1e-9));
    }
    (w, b)
}
