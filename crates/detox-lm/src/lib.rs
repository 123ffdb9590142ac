//! Language models for `detox eval`.
//!
//! Two levels:
//! - [`CausalLm`]: a local model that maps token ids to logits with a caller-owned
//!   [`cache::KvCache`], so the k samples of a prompt share its prefill ([`generate`] decodes
//!   them in lockstep with [`sampling`]'s per-sample random streams). Model files:
//!   [`llama`] (GGUF llama family) and [`gpt2`] (Hugging Face safetensors), each checked
//!   against PyTorch `transformers` on a tiny random model (`tests/`, fixtures from
//!   `scripts/make_lm_fixtures.py`).
//! - [`LanguageModel`]: text in, sampled continuations out, for the evaluation loop:
//!   [`local::LocalLm`] (a `CausalLm` with its tokenizer) or [`openai::OpenAiLm`] (any
//!   OpenAI-compatible completions server).

pub mod cache;
pub mod decoding;
pub mod dense;
pub mod gpt2;
pub mod llama;
pub mod load;
pub mod local;
pub mod loss;
pub mod model;
pub mod openai;
pub mod sampling;
pub mod tokenizer;

pub use load::{load_language_model, LmOptions};
pub use model::{
    spare_stream, Completion, GenerationRequest, LanguageModel, LmError, PromptSession,
};

use cache::KvCache;
use candle_core::{Device, Result, Tensor};
use sampling::SamplingParams;

/// A local causal language model: token ids in, next-token logits out.
pub trait CausalLm: Send + Sync {
    /// Runs `ids` [B, L] (all rows at the same positions, after the cached ones) and returns
    /// logits: [B, L, vocab] when `all` is set, else [B, vocab] for the last position.
    fn forward(&self, ids: &Tensor, cache: &mut KvCache, all: bool) -> Result<Tensor>;
    /// An empty cache.
    fn new_cache(&self) -> KvCache;
    /// The device the weights live on.
    fn device(&self) -> &Device;
    /// The longest sequence the model takes.
    fn context(&self) -> usize;
}

/// Samples `k` continuations of `prompt` (token ids), at most `max_new` tokens each, stopping a
/// sample at any id in `stop` (not included). The prompt is prefilled once; its cache is shared
/// by the k samples, which decode as one batch. `prompt_index` keys the random streams (with
/// the seed).
pub fn generate(
    model: &dyn CausalLm,
    prompt: &[u32],
    k: usize,
    max_new: usize,
    stop: &[u32],
    params: &SamplingParams,
    prompt_index: u64,
) -> Result<Vec<Vec<u32>>> {
    decoding::generate_mitigated(model, &[], prompt, k, max_new, stop, params, prompt_index)
}

/// The negative log-likelihood (natural log, summed over tokens) of each of `tails` following
/// `prefix`. The prefix is prefilled once and the tails scored as one padded batch on its cache
/// (padding after a sequence cannot affect it: attention is causal). An empty tail has NLL 0.
pub fn tail_nll(model: &dyn CausalLm, prefix: &[u32], tails: &[Vec<u32>]) -> Result<Vec<f64>> {
    if prefix.is_empty() {
        candle_core::bail!("scoring needs a non-empty prefix (use the BOS token)");
    }
    if tails.iter().all(|t| t.is_empty()) {
        return Ok(vec![0.0; tails.len()]);
    }
    let p = decoding::Prefill::new(model, prefix)?;
    tail_nll_after(model, &p.cache, &p.logits, tails)
}

/// [`tail_nll`] on a prefix already run: its single-row `cache` and the next-token `logits`
/// after it.
pub(crate) fn tail_nll_after(
    model: &dyn CausalLm,
    cache: &KvCache,
    logits: &[f32],
    tails: &[Vec<u32>],
) -> Result<Vec<f64>> {
    let longest = tails.iter().map(|c| c.len()).max().unwrap_or(0);
    if longest == 0 {
        return Ok(vec![0.0; tails.len()]);
    }
    let device = model.device();
    let k = tails.len();
    let mut cache = cache.repeat(k)?;
    // The last position's logits are never read (nothing follows it).
    let inner = longest - 1;
    let logits_all = if inner > 0 {
        let padded: Vec<u32> = tails
            .iter()
            .flat_map(|c| c.iter().copied().chain(std::iter::repeat(0)).take(inner))
            .collect();
        let ids = Tensor::from_vec(padded, (k, inner), device)?;
        model
            .forward(&ids, &mut cache, true)?
            .flatten_all()?
            .to_vec1::<f32>()?
    } else {
        Vec::new()
    };
    let vocab = logits.len();
    let mut out = Vec::with_capacity(k);
    for (i, c) in tails.iter().enumerate() {
        let mut nll = 0.0f64;
        for (j, &tok) in c.iter().enumerate() {
            // Position j is predicted by the prompt's last logits (j = 0) or by the tail's
            // token j - 1.
            let row = if j == 0 {
                logits
            } else {
                let at = (i * inner + j - 1) * vocab;
                &logits_all[at..at + vocab]
            };
            nll -= log_softmax_at(row, tok);
        }
        out.push(nll);
    }
    Ok(out)
}

/// `log softmax(row)[token]`, accumulated in f64 (negative infinity for a token outside the
/// row).
pub(crate) fn log_softmax_at(row: &[f32], token: u32) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&x| ((x - max) as f64).exp()).sum();
    row.get(token as usize)
        .map(|&x| (x - max) as f64 - sum.ln())
        .unwrap_or(f64::NEG_INFINITY)
}

/// Conditional perplexity of each continuation given the prompt, as DExperts reports it:
/// `exp` of the mean negative log-likelihood of the continuation's tokens (`None` for an empty
/// continuation), computed on the prompt's cache in one batch.
pub fn continuation_perplexity(
    model: &dyn CausalLm,
    prompt: &[u32],
    continuations: &[Vec<u32>],
) -> Result<Vec<Option<f64>>> {
    Ok(perplexities(
        &tail_nll(model, prompt, continuations)?,
        continuations,
    ))
}

/// `exp(nll / tokens)` of each continuation (`None` for an empty one).
pub(crate) fn perplexities(nll: &[f64], continuations: &[Vec<u32>]) -> Vec<Option<f64>> {
    continuations
        .iter()
        .zip(nll)
        .map(|(c, n)| (!c.is_empty()).then(|| (n / c.len() as f64).exp()))
        .collect()
}
