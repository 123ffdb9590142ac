//! The causal language-model loss, as `transformers`' `ForCausalLMLoss` computes it for
//! `model(ids, labels=ids)`: cross-entropy of the logits at positions `0..l-1` against the
//! tokens at `1..l`, averaged over every predicted token of the batch.
//!
//! The cross-entropy is one fused operation with its own backward pass: per row,
//! `logsumexp(z) − z[target]` forward and `softmax(z) − onehot(target)` backward, written
//! straight into one buffer. Composed from candle's operations it made about ten temporaries
//! the size of the logits (`[tokens, vocabulary]`: 100 MB for 512 tokens of SmolLM2).

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

/// Per-row cross-entropy of f32 logits `[n, v]` against `targets` (`n` ids).
struct CrossEntropy {
    targets: Arc<Vec<u32>>,
}

fn rows<'a>(data: &'a [f32], layout: &Layout) -> Result<(&'a [f32], usize, usize)> {
    let (n, v) = layout.shape().dims2()?;
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok((&data[a..b], n, v)),
        None => candle_core::bail!("cross-entropy needs contiguous logits"),
    }
}

/// `(max, Σ exp(z − max))` of a row, the sum in f64.
fn max_and_sum(row: &[f32]) -> (f32, f64) {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let s = row.iter().map(|&z| ((z - m) as f64).exp()).sum::<f64>();
    (m, s)
}

impl CustomOp1 for CrossEntropy {
    fn name(&self) -> &'static str {
        "next-token-cross-entropy"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("cross-entropy needs f32 logits")
        };
        let (data, n, v) = rows(data, layout)?;
        if self.targets.len() != n {
            candle_core::bail!("{} targets for {n} rows", self.targets.len());
        }
        let out: Vec<f32> = (0..n)
            .into_par_iter()
            .map(|i| {
                let row = &data[i * v..(i + 1) * v];
                let (m, s) = max_and_sum(row);
                let t = self.targets[i] as usize;
                (m as f64 + s.ln() - row[t.min(v - 1)] as f64) as f32
            })
            .collect();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let g: Vec<f32> = grad_res.to_vec1()?;
        let (storage, layout) = arg.storage_and_layout();
        let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
            candle_core::bail!("cross-entropy needs f32 logits on the CPU")
        };
        let (data, n, v) = rows(data, layout)?;
        let mut out = vec![0f32; n * v];
        out.par_chunks_mut(v).enumerate().for_each(|(i, o)| {
            let row = &data[i * v..(i + 1) * v];
            let (m, s) = max_and_sum(row);
            let scale = g[i] as f64 / s;
            for (o, &z) in o.iter_mut().zip(row) {
                *o = (((z - m) as f64).exp() * scale) as f32;
            }
            o[(self.targets[i] as usize).min(v - 1)] -= g[i];
        });
        drop(storage);
        Ok(Some(Tensor::from_vec(out, (n, v), arg.device())?))
    }
}

/// The summed cross-entropy of next-token predictions and how many tokens it sums over
/// (`logits` `[b, l, vocab]`, `ids` `[b, l]`). Summing lets accumulated micro-batches be
/// averaged over all their tokens at once.
pub fn causal_lm_loss_sum(logits: &Tensor, ids: &Tensor) -> Result<(Tensor, usize)> {
    let (b, l, v) = logits.dims3()?;
    let pred = logits
        .narrow(1, 0, l - 1)?
        .contiguous()?
        .reshape((b * (l - 1), v))?;
    let targets: Vec<u32> = ids.narrow(1, 1, l - 1)?.flatten_all()?.to_vec1()?;
    if let Some(bad) = targets.iter().find(|&&t| t as usize >= v) {
        candle_core::bail!("token id {bad} is outside the vocabulary of {v}");
    }
    let per_row = pred.apply_op1(CrossEntropy {
        targets: Arc::new(targets),
    })?;
    Ok((per_row.sum_all()?, b * (l - 1)))
}

/// The mean next-token cross-entropy of a batch.
pub fn causal_lm_loss(logits: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (sum, n) = causal_lm_loss_sum(logits, ids)?;
    sum / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    #[test]
    fn the_fused_loss_and_its_gradient_equal_the_composed_ones() {
        let dev = Device::Cpu;
        let v: Vec<f32> = (0..2 * 5 * 7)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 3.0)
            .collect();
        let z = Var::from_tensor(&Tensor::from_vec(v, (2, 5, 7), &dev).unwrap()).unwrap();
        let ids = Tensor::from_vec(vec![1u32, 3, 6, 0, 2, 5, 5, 4, 1, 0], (2, 5), &dev).unwrap();
        let fused = causal_lm_loss(z.as_tensor(), &ids).unwrap();
        let pred = z
            .as_tensor()
            .narrow(1, 0, 4)
            .unwrap()
            .reshape((8, 7))
            .unwrap();
        let t = ids.narrow(1, 1, 4).unwrap().flatten_all().unwrap();
        let logp = candle_nn::ops::log_softmax(&pred, D::Minus1).unwrap();
        let composed = (logp
            .gather(&t.unsqueeze(1).unwrap(), 1)
            .unwrap()
            .sum_all()
            .unwrap()
            .neg()
            .unwrap()
            / 8.0)
            .unwrap();
        let (a, b) = (
            fused.to_scalar::<f32>().unwrap(),
            composed.to_scalar::<f32>().unwrap(),
        );
        assert!((a - b).abs() < 1e-6, "{a} {b}");
        let ga = fused
            .backward()
            .unwrap()
            .get(z.as_tensor())
            .unwrap()
            .clone();
        let gb = composed
            .backward()
            .unwrap()
            .get(z.as_tensor())
            .unwrap()
            .clone();
        let d = (ga - gb)
            .unwrap()
            .abs()
            .unwrap()
            .max_keepdim(0)
            .unwrap()
            .max_keepdim(1)
            .unwrap()
            .max_keepdim(2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        assert!(d < 1e-6, "{d}");
        let bad = Tensor::from_vec(vec![1u32, 9, 6, 0, 2, 5, 5, 4, 1, 0], (2, 5), &dev).unwrap();
        assert!(causal_lm_loss(z.as_tensor(), &bad).is_err());
    }
}
