//! Language models for `detox eval`.
//!
//! [`llama::Llama`] runs llama-family GGUF models in candle with a caller-owned KV cache, so
//! the k samples of a prompt share its prefill; [`generate`] decodes them in lockstep with
//! [`sampling`]'s per-sample random streams. Checked against PyTorch `transformers` on a tiny
//! random llama (`tests/llama.rs`, fixtures from `scripts/make_lm_fixtures.py`).

pub mod llama;
pub mod sampling;
pub mod tokenizer;

use candle_core::{Result, Tensor};
use llama::Llama;
use sampling::{sample, SampleRng, SamplingParams};

/// Samples `k` continuations of `prompt` (token ids), at most `max_new` tokens each, stopping a
/// sample at `eos`. The prompt is prefilled once; its cache is shared by the k samples, which
/// decode as one batch. `prompt_index` keys the random streams (with the seed).
pub fn generate(
    model: &Llama,
    prompt: &[u32],
    k: usize,
    max_new: usize,
    eos: Option<u32>,
    params: &SamplingParams,
    prompt_index: u64,
) -> Result<Vec<Vec<u32>>> {
    if prompt.is_empty() {
        candle_core::bail!("an empty prompt needs a BOS token to start from");
    }
    let mut rngs: Vec<SampleRng> = (0..k)
        .map(|s| SampleRng::new(params.seed, prompt_index, s as u64))
        .collect();
    let mut cache = model.new_cache();
    let ids = Tensor::new(prompt, model_device(model))?.unsqueeze(0)?;
    let first = model.forward(&ids, &mut cache, false)?.to_vec2::<f32>()?;
    let mut cache = cache.repeat(k)?;
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); k];
    let mut done = vec![false; k];
    let mut next: Vec<u32> = rngs
        .iter_mut()
        .map(|r| sample(&first[0], params, r))
        .collect();
    for step in 0..max_new {
        for (i, &t) in next.iter().enumerate() {
            if done[i] {
                continue;
            }
            if Some(t) == eos {
                done[i] = true;
            } else {
                out[i].push(t);
            }
        }
        if step + 1 == max_new || done.iter().all(|d| *d) {
            break;
        }
        let ids = Tensor::new(next.as_slice(), model_device(model))?.unsqueeze(1)?;
        let logits = model.forward(&ids, &mut cache, false)?.to_vec2::<f32>()?;
        next = logits
            .iter()
            .zip(rngs.iter_mut())
            .map(|(row, r)| sample(row, params, r))
            .collect();
    }
    Ok(out)
}

fn model_device(model: &Llama) -> &candle_core::Device {
    model.device()
}

/// Conditional perplexity of each continuation given the prompt, as DExperts reports it:
/// `exp` of the mean negative log-likelihood of the continuation's tokens (`None` for an empty
/// continuation). The prompt is prefilled once and the continuations scored as one padded
/// batch on its cache (padding after a sequence cannot affect it: attention is causal).
pub fn continuation_perplexity(
    model: &Llama,
    prompt: &[u32],
    continuations: &[Vec<u32>],
) -> Result<Vec<Option<f64>>> {
    if prompt.is_empty() {
        candle_core::bail!("perplexity needs a non-empty prompt (use the BOS token)");
    }
    let longest = continuations.iter().map(|c| c.len()).max().unwrap_or(0);
    if longest == 0 {
        return Ok(vec![None; continuations.len()]);
    }
    let device = model.device();
    let mut cache = model.new_cache();
    let ids = Tensor::new(prompt, device)?.unsqueeze(0)?;
    let first = candle_nn::ops::log_softmax(&model.forward(&ids, &mut cache, false)?, 1)?
        .squeeze(0)?
        .to_vec1::<f32>()?;
    let k = continuations.len();
    let mut cache = cache.repeat(k)?;
    let padded: Vec<u32> = continuations
        .iter()
        .flat_map(|c| c.iter().copied().chain(std::iter::repeat(0)).take(longest))
        .collect();
    let ids = Tensor::from_vec(padded, (k, longest), device)?;
    let logp = candle_nn::ops::log_softmax(&model.forward(&ids, &mut cache, true)?, 2)?;
    let mut out = Vec::with_capacity(k);
    for (i, c) in continuations.iter().enumerate() {
        if c.is_empty() {
            out.push(None);
            continue;
        }
        let mut nll = -(first[c[0] as usize] as f64);
        if c.len() > 1 {
            let rows = logp.get(i)?.narrow(0, 0, c.len() - 1)?;
            let next = Tensor::new(&c[1..], device)?.unsqueeze(1)?;
            let picked = rows.gather(&next, 1)?.squeeze(1)?.to_vec1::<f32>()?;
            nll -= picked.iter().map(|&x| x as f64).sum::<f64>();
        }
        out.push(Some((nll / c.len() as f64).exp()));
    }
    Ok(out)
}
