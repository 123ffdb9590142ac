//! Fitting a head on fixed embeddings with candle's autograd: standardised inputs, one hidden
//! ReLU layer (or none), masked binary cross-entropy on soft targets, AdamW, seeded.

use crate::TrainError;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use std::collections::HashMap;

/// Hyper-parameters.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FitConfig {
    /// Hidden units (0: a linear head).
    pub hidden: usize,
    /// Passes over the training data.
    pub epochs: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Examples per step.
    pub batch_size: usize,
    /// Seed of the initial weights and the shuffling.
    pub seed: u64,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            hidden: 1024,
            epochs: 20,
            lr: 1e-3,
            weight_decay: 1e-4,
            batch_size: 256,
            seed: 17,
        }
    }
}

/// The generator of initial weights and shuffles.
pub use detox_core::rng::SplitMix64 as Rng;

/// The trained head, with input standardisation folded into the first layer.
#[derive(Debug, Clone)]
pub struct FittedHead {
    /// Tensors `w1`, `b1` (and `w2`, `b2` with a hidden layer).
    pub tensors: HashMap<String, Tensor>,
    /// Mean training loss of the last epoch.
    pub final_loss: f64,
}

fn uniform(rng: &mut Rng, shape: (usize, usize), bound: f64) -> Result<Tensor, TrainError> {
    let n = shape.0 * shape.1;
    let v: Vec<f32> = (0..n)
        .map(|_| ((rng.unit() * 2.0 - 1.0) * bound) as f32)
        .collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

/// Fits the head. `x`: embeddings; `y`: targets per attribute (`None` = unlabelled);
/// `w`: weights per example and attribute. `progress(epoch, loss)` is called after every epoch.
pub fn fit(
    x: &[Vec<f32>],
    y: &[Vec<Option<f32>>],
    w: &[Vec<f32>],
    cfg: &FitConfig,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<FittedHead, TrainError> {
    let n = x.len();
    if n == 0 || y.len() != n || w.len() != n {
        return Err(TrainError::Data("no training examples".into()));
    }
    let d = x[0].len();
    let k = y[0].len();
    // Standardise features (statistics from the training data).
    let mut mean = vec![0f64; d];
    for r in x {
        for (m, v) in mean.iter_mut().zip(r) {
            *m += *v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut var = vec![0f64; d];
    for r in x {
        for ((s, v), m) in var.iter_mut().zip(r).zip(&mean) {
            *s += (*v as f64 - m).powi(2);
        }
    }
    let std: Vec<f64> = var
        .iter()
        .map(|s| (s / n as f64).sqrt().max(1e-6))
        .collect();
    let xs: Vec<f32> = x
        .iter()
        .flat_map(|r| {
            r.iter()
                .zip(&mean)
                .zip(&std)
                .map(|((v, m), s)| ((*v as f64 - m) / s) as f32)
        })
        .collect();
    let xs = Tensor::from_vec(xs, (n, d), &Device::Cpu)?;
    let ys: Vec<f32> = y
        .iter()
        .flat_map(|r| r.iter().map(|t| t.unwrap_or(0.0)))
        .collect();
    let ms: Vec<f32> = y
        .iter()
        .zip(w)
        .flat_map(|(r, wi)| {
            r.iter()
                .zip(wi)
                .map(|(t, w)| if t.is_some() { *w } else { 0.0 })
        })
        .collect();
    let ys = Tensor::from_vec(ys, (n, k), &Device::Cpu)?;
    let ms = Tensor::from_vec(ms, (n, k), &Device::Cpu)?;

    let mut rng = Rng::new(cfg.seed);
    let first_out = if cfg.hidden == 0 { k } else { cfg.hidden };
    let w1 = Var::from_tensor(&uniform(&mut rng, (first_out, d), 1.0 / (d as f64).sqrt())?)?;
    let b1 = Var::from_tensor(&Tensor::zeros(first_out, DType::F32, &Device::Cpu)?)?;
    let second = if cfg.hidden == 0 {
        None
    } else {
        let h = cfg.hidden;
        Some((
            Var::from_tensor(&uniform(&mut rng, (k, h), 1.0 / (h as f64).sqrt())?)?,
            Var::from_tensor(&Tensor::zeros(k, DType::F32, &Device::Cpu)?)?,
        ))
    };
    let mut vars = vec![w1.clone(), b1.clone()];
    if let Some((a, b)) = &second {
        vars.push(a.clone());
        vars.push(b.clone());
    }
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        },
    )?;
    let forward = |xb: &Tensor| -> candle_core::Result<Tensor> {
        let h = xb
            .matmul(&w1.as_tensor().t()?)?
            .broadcast_add(b1.as_tensor())?;
        match &second {
            None => Ok(h),
            Some((w2, b2)) => h
                .relu()?
                .matmul(&w2.as_tensor().t()?)?
                .broadcast_add(b2.as_tensor()),
        }
    };
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut last = 0.0;
    for epoch in 0..cfg.epochs {
        rng.shuffle(&mut order);
        let (mut total, mut steps) = (0.0, 0usize);
        for chunk in order.chunks(cfg.batch_size.max(1)) {
            let idx = Tensor::from_vec(chunk.to_vec(), chunk.len(), &Device::Cpu)?;
            let (xb, yb, mb) = (
                xs.index_select(&idx, 0)?,
                ys.index_select(&idx, 0)?,
                ms.index_select(&idx, 0)?,
            );
            let z = forward(&xb)?;
            // Binary cross-entropy with logits, stable form: max(z,0) - z*y + log(1 + e^-|z|).
            let bce = ((z.relu()? - (&z * &yb)?)? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
            let denom = mb.sum_all()?.to_scalar::<f32>()?.max(1e-6) as f64;
            let loss = ((bce * &mb)?.sum_all()? / denom)?;
            opt.backward_step(&loss)?;
            total += loss.to_scalar::<f32>()? as f64;
            steps += 1;
        }
        last = total / steps.max(1) as f64;
        progress(epoch + 1, last);
    }
    // Fold the standardisation into the first layer: W (x - m) / s + b = (W / s) x + (b - W m / s).
    let inv_std = Tensor::from_vec(
        std.iter().map(|s| (1.0 / s) as f32).collect::<Vec<_>>(),
        d,
        &Device::Cpu,
    )?;
    let mean_t = Tensor::from_vec(
        mean.iter().map(|m| *m as f32).collect::<Vec<_>>(),
        (d, 1),
        &Device::Cpu,
    )?;
    let w1f = w1.as_tensor().broadcast_mul(&inv_std)?;
    let b1f = (b1.as_tensor() - w1f.matmul(&mean_t)?.squeeze(1)?)?;
    let mut tensors = HashMap::new();
    tensors.insert("w1".to_string(), w1f);
    tensors.insert("b1".to_string(), b1f);
    if let Some((w2, b2)) = second {
        tensors.insert("w2".to_string(), w2.as_tensor().clone());
        tensors.insert("b2".to_string(), b2.as_tensor().clone());
    }
    Ok(FittedHead {
        tensors,
        final_loss: last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_separable_problem_reproducibly_with_masked_labels() {
        let mut rng = Rng::new(3);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..400 {
            let a = rng.unit() as f32 * 2.0 - 1.0;
            let b = rng.unit() as f32 * 2.0 - 1.0;
            x.push(vec![a * 0.1 + 5.0, b * 0.1 - 3.0, 0.5]);
            // Attribute 0 follows a; attribute 1 is unlabelled on odd rows.
            y.push(vec![
                Some(f32::from(u8::from(a > 0.0))),
                if i % 2 == 0 {
                    Some(f32::from(u8::from(b > 0.0)))
                } else {
                    None
                },
            ]);
        }
        let w = vec![vec![1.0, 1.0]; 400];
        let cfg = FitConfig {
            hidden: 8,
            epochs: 60,
            lr: 1e-2,
            batch_size: 32,
            ..Default::default()
        };
        let a = fit(&x, &y, &w, &cfg, &mut |_, _| {}).unwrap();
        let b = fit(&x, &y, &w, &cfg, &mut |_, _| {}).unwrap();
        assert_eq!(a.final_loss, b.final_loss, "same seed, same result");
        assert!(a.final_loss < 0.2, "loss {}", a.final_loss);
        // The folded head works on raw (unstandardised) inputs.
        let spec_k = 2;
        let t = |n: &str| a.tensors[n].clone();
        let xin = Tensor::new(
            &[[0.08f32 + 5.0, -3.0, 0.5], [-0.08 + 5.0, -3.0, 0.5]],
            &Device::Cpu,
        )
        .unwrap();
        let h = xin
            .matmul(&t("w1").t().unwrap())
            .unwrap()
            .broadcast_add(&t("b1"))
            .unwrap()
            .relu()
            .unwrap();
        let z = h
            .matmul(&t("w2").t().unwrap())
            .unwrap()
            .broadcast_add(&t("b2"))
            .unwrap();
        let z = z.to_vec2::<f32>().unwrap();
        assert_eq!(z[0].len(), spec_k);
        assert!(z[0][0] > 0.0 && z[1][0] < 0.0, "{z:?}");
    }
}
