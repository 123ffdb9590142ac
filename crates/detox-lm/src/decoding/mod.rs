//! The decoding seam: methods that change a model's next-token distribution while it
//! decodes (decoding-time detoxification: a word filter, self-debiasing, DExperts, ...).
//!
//! A method is one type implementing [`Mitigation`]. For each generation it starts a
//! [`MitigationState`], which at every step sees the rows' next-token logits and each row's
//! tokens so far (prompt and generated), changes the logits in place, and then hears which
//! token each row took (so a method that runs models of its own, such as an expert or a
//! prefixed copy of the prompt, advances their caches). Methods apply in the order given.
//!
//! The same composition serves all three uses the evaluation needs: sampling
//! ([`generate_mitigated`]), and the log-likelihood of a given continuation under the
//! mitigated distribution ([`mitigated_tail_nll`], from which DExperts-style perplexity and the
//! side-effect audits' LM loss follow). With no method, both give exactly what
//! [`crate::generate`] and [`crate::tail_nll`] give.

pub mod dexperts;
pub mod self_debias;
pub mod spec;
pub mod word_filter;

pub use dexperts::DExperts;
pub use self_debias::SelfDebias;
pub use spec::{MitigationSpec, MitigationSpecError};
pub use word_filter::WordFilter;

use crate::cache::KvCache;
use crate::sampling::{sample, SampleRng, SamplingParams};
use crate::CausalLm;
use candle_core::{Result, Tensor};

/// A decoding-time method.
pub trait Mitigation: Send + Sync {
    /// Its name and parameters, for `run.json`.
    fn describe(&self) -> serde_json::Value;

    /// Starts a generation of `rows` rows after `prompt` (token ids, BOS included).
    fn start<'a>(&'a self, prompt: &[u32], rows: usize) -> Result<Box<dyn MitigationState + 'a>>;
}

/// One generation's state of a method.
pub trait MitigationState: Send {
    /// Changes each row's next-token logits in place; `history[i]` is row i's tokens so far
    /// (prompt, then generated).
    fn adjust(&mut self, logits: &mut [Vec<f32>], history: &[Vec<u32>]) -> Result<()>;

    /// Row i took `tokens[i]`.
    fn advance(&mut self, _tokens: &[u32]) -> Result<()> {
        Ok(())
    }
}

/// The states of several methods, applied in order.
struct States<'a>(Vec<Box<dyn MitigationState + 'a>>);

impl<'a> States<'a> {
    fn start(methods: &'a [&'a dyn Mitigation], prompt: &[u32], rows: usize) -> Result<Self> {
        Ok(Self(
            methods
                .iter()
                .map(|m| m.start(prompt, rows))
                .collect::<Result<_>>()?,
        ))
    }

    fn adjust(&mut self, logits: &mut [Vec<f32>], history: &[Vec<u32>]) -> Result<()> {
        for s in &mut self.0 {
            s.adjust(logits, history)?;
        }
        Ok(())
    }

    fn advance(&mut self, tokens: &[u32]) -> Result<()> {
        for s in &mut self.0 {
            s.advance(tokens)?;
        }
        Ok(())
    }
}

/// One model's rows after a shared prompt: the prompt is prefilled once, its cache repeated
/// for the rows, and each step runs the rows' chosen tokens. The sampled model and every model
/// a method runs beside it (prefixed prompts, experts) step this way.
pub(crate) struct Rows {
    cache: KvCache,
    /// The rows' next-token logits.
    pub(crate) logits: Vec<Vec<f32>>,
}

impl Rows {
    /// Prefills `prompt` once for `rows` rows.
    pub(crate) fn prefill(model: &dyn CausalLm, prompt: &[u32], rows: usize) -> Result<Self> {
        let mut cache = model.new_cache();
        let ids = Tensor::new(prompt, model.device())?.unsqueeze(0)?;
        let first = model.forward(&ids, &mut cache, false)?.to_vec2::<f32>()?;
        Ok(Self {
            cache: cache.repeat(rows)?,
            logits: vec![first[0].clone(); rows],
        })
    }

    /// Row i takes `tokens[i]`: one step of the model.
    pub(crate) fn step(&mut self, model: &dyn CausalLm, tokens: &[u32]) -> Result<()> {
        let ids = Tensor::new(tokens, model.device())?.unsqueeze(1)?;
        self.logits = model
            .forward(&ids, &mut self.cache, false)?
            .to_vec2::<f32>()?;
        Ok(())
    }
}

/// A row's probabilities (f32, as the model's logits).
pub(crate) fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = row.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.into_iter().map(|x| x / sum).collect()
}

/// Rows decoding in lockstep after one prompt, with the methods' states seeing every step.
struct Lockstep<'a> {
    model: &'a dyn CausalLm,
    rows: Rows,
    states: States<'a>,
    history: Vec<Vec<u32>>,
}

impl<'a> Lockstep<'a> {
    fn start(
        model: &'a dyn CausalLm,
        methods: &'a [&'a dyn Mitigation],
        prompt: &[u32],
        rows: usize,
    ) -> Result<Self> {
        let states = States::start(methods, prompt, rows)?;
        Ok(Self {
            model,
            rows: Rows::prefill(model, prompt, rows)?,
            states,
            history: vec![prompt.to_vec(); rows],
        })
    }

    /// The rows' next-token logits, as the methods change them.
    fn adjusted(&mut self) -> Result<&[Vec<f32>]> {
        self.states.adjust(&mut self.rows.logits, &self.history)?;
        Ok(&self.rows.logits)
    }

    /// Row i takes `next[i]`: the methods hear it and the model runs one step.
    fn push(&mut self, next: &[u32]) -> Result<()> {
        self.states.advance(next)?;
        for (h, &t) in self.history.iter_mut().zip(next) {
            h.push(t);
        }
        self.rows.step(self.model, next)
    }
}

/// [`crate::generate`] with `methods` changing the logits at every step: `k` continuations of
/// `prompt`, at most `max_new` tokens each, a sample stopping at any id in `stop`. The prompt
/// is prefilled once and its cache shared by the k rows; `prompt_index` keys the random
/// streams with the seed, so a row's text does not depend on the batch layout.
#[allow(clippy::too_many_arguments)]
pub fn generate_mitigated(
    model: &dyn CausalLm,
    methods: &[&dyn Mitigation],
    prompt: &[u32],
    k: usize,
    max_new: usize,
    stop: &[u32],
    params: &SamplingParams,
    prompt_index: u64,
) -> Result<Vec<Vec<u32>>> {
    if prompt.is_empty() {
        candle_core::bail!("an empty prompt needs a BOS token to start from");
    }
    let mut rngs: Vec<SampleRng> = (0..k)
        .map(|s| SampleRng::new(params.seed, prompt_index, s as u64))
        .collect();
    let mut rows = Lockstep::start(model, methods, prompt, k)?;
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); k];
    let mut done = vec![false; k];
    for step in 0..max_new {
        let next: Vec<u32> = rows
            .adjusted()?
            .iter()
            .zip(rngs.iter_mut())
            .map(|(row, r)| sample(row, params, r))
            .collect();
        for (i, &t) in next.iter().enumerate() {
            if done[i] {
                continue;
            }
            if stop.contains(&t) {
                done[i] = true;
            } else {
                out[i].push(t);
            }
        }
        if step + 1 == max_new || done.iter().all(|d| *d) {
            break;
        }
        rows.push(&next)?;
    }
    Ok(out)
}

fn log_softmax_at(row: &[f32], token: u32) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    row.get(token as usize)
        .map(|&x| x as f64 - max - sum.ln())
        .unwrap_or(f64::NEG_INFINITY)
}

/// The negative log-likelihood (natural log, summed over tokens) of each of `tails` after
/// `prefix` under the mitigated distribution: the tails are forced one token at a time,
/// `methods` change the logits at each step exactly as while sampling, and each forced token
/// is scored by the log-softmax of the changed logits (a token a method bans costs infinity).
/// Temperature and top-p are not part of it, as in [`crate::tail_nll`].
pub fn mitigated_tail_nll(
    model: &dyn CausalLm,
    methods: &[&dyn Mitigation],
    prefix: &[u32],
    tails: &[Vec<u32>],
) -> Result<Vec<f64>> {
    if prefix.is_empty() {
        candle_core::bail!("scoring needs a non-empty prefix (use the BOS token)");
    }
    let k = tails.len();
    let longest = tails.iter().map(|t| t.len()).max().unwrap_or(0);
    if longest == 0 {
        return Ok(vec![0.0; k]);
    }
    let mut rows = Lockstep::start(model, methods, prefix, k)?;
    let mut nll = vec![0.0f64; k];
    for step in 0..longest {
        let logits = rows.adjusted()?;
        for (i, t) in tails.iter().enumerate() {
            if let Some(&tok) = t.get(step) {
                nll[i] -= log_softmax_at(&logits[i], tok);
            }
        }
        if step + 1 == longest {
            break;
        }
        // Rows whose tail has ended are fed a padding token (0): attention is causal, so what
        // follows a sequence cannot change it, and its score is no longer read.
        let next: Vec<u32> = tails
            .iter()
            .map(|t| t.get(step).copied().unwrap_or(0))
            .collect();
        rows.push(&next)?;
    }
    Ok(nll)
}
