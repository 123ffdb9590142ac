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
use crate::{log_softmax_at, CausalLm};
use candle_core::{Result, Tensor};

/// A decoding-time method.
pub trait Mitigation: Send + Sync {
    /// Its name and parameters, for `run.json`.
    fn describe(&self) -> serde_json::Value;

    /// Prepares a prompt (token ids, BOS included) once: whatever the method runs beside the
    /// sampled model (an expert, a prefixed copy of the prompt) is prefilled here, and every
    /// batch of rows after this prompt (the k samples, then any re-sampled rows) starts from it.
    fn prepare<'a>(&'a self, prompt: &[u32]) -> Result<Box<dyn PreparedMitigation<'a> + 'a>>;
}

/// A method prepared for one prompt.
pub trait PreparedMitigation<'a>: Send + Sync {
    /// Starts a generation of `rows` rows after the prompt.
    fn start(&self, rows: usize) -> Result<Box<dyn MitigationState + 'a>>;

    /// Starts a teacher-forced pass (the log-likelihood of given text): row i takes
    /// `tails[i][step]` at each step, then the padding token 0 once its tail has ended. A
    /// method that runs models beside the sampled one can run them over the whole tails in one
    /// batched forward pass here ([`Prefill::forced`]) instead of one pass per step; its state
    /// must then change the logits exactly as the stepped state would. By default the stepped
    /// state ([`Self::start`]).
    fn start_forced(&self, tails: &[Vec<u32>]) -> Result<Box<dyn MitigationState + 'a>> {
        self.start(tails.len())
    }
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

impl States<'_> {
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

/// One model's state after a prompt: its cache and next-token logits for a single row. Rows
/// that continue the prompt start from copies of it ([`Prefill::rows`]), so a prompt is
/// prefilled once however many batches of rows follow it.
pub(crate) struct Prefill {
    pub(crate) cache: KvCache,
    pub(crate) logits: Vec<f32>,
}

impl Prefill {
    /// Runs `prompt` through `model` once.
    pub(crate) fn new(model: &dyn CausalLm, prompt: &[u32]) -> Result<Self> {
        let mut cache = model.new_cache();
        let ids = Tensor::new(prompt, model.device())?.unsqueeze(0)?;
        let mut first = model.forward(&ids, &mut cache, false)?.to_vec2::<f32>()?;
        Ok(Self {
            cache,
            logits: first.pop().unwrap_or_default(),
        })
    }

    /// `n` rows continuing the prompt.
    pub(crate) fn rows(&self, n: usize) -> Result<Rows> {
        Ok(Rows {
            next: Next::Stepped(self.cache.repeat(n)?),
            logits: vec![self.logits.clone(); n],
        })
    }

    /// Rows continuing the prompt with known `tails` (padded with token 0 to the longest): the
    /// logits of every position come from one forward pass over the padded tails, and each
    /// [`Rows::step`] only moves to the next position (checking that the rows took their
    /// tails' tokens). Attention is causal, so the padding after a tail cannot change it.
    pub(crate) fn forced(&self, model: &dyn CausalLm, tails: &[Vec<u32>]) -> Result<Rows> {
        let k = tails.len();
        let longest = tails.iter().map(Vec::len).max().unwrap_or(0);
        let padded = pad(tails, longest);
        // The last position's logits are never read (nothing follows it).
        let ahead = if longest > 1 {
            let ids = Tensor::from_vec(
                padded
                    .iter()
                    .flat_map(|t| t[..longest - 1].iter().copied())
                    .collect::<Vec<u32>>(),
                (k, longest - 1),
                model.device(),
            )?;
            let mut cache = self.cache.repeat(k)?;
            Some(model.forward(&ids, &mut cache, true)?)
        } else {
            None
        };
        Ok(Rows {
            next: Next::Forced {
                logits: ahead,
                tails: padded,
                position: 0,
            },
            logits: vec![self.logits.clone(); k],
        })
    }
}

/// `tails` padded with token 0 to `len`.
fn pad(tails: &[Vec<u32>], len: usize) -> Vec<Vec<u32>> {
    tails
        .iter()
        .map(|t| {
            t.iter()
                .copied()
                .chain(std::iter::repeat(0))
                .take(len)
                .collect()
        })
        .collect()
}

/// Where a [`Rows`]' next logits come from.
enum Next {
    /// One model step per token, on this cache.
    Stepped(KvCache),
    /// Teacher-forced: every position's logits computed at once ([B, L, vocab]), the tokens
    /// the rows must take, and the position the rows are at.
    Forced {
        logits: Option<Tensor>,
        tails: Vec<Vec<u32>>,
        position: usize,
    },
}

/// One model's rows after a shared prompt ([`Prefill::rows`]): each step runs the rows'
/// chosen tokens. The sampled model and every model a method runs beside it (prefixed
/// prompts, experts) step this way.
pub(crate) struct Rows {
    next: Next,
    /// The rows' next-token logits.
    pub(crate) logits: Vec<Vec<f32>>,
}

impl Rows {
    /// Row i takes `tokens[i]`: one step of the model (or, for forced rows, the next
    /// position's precomputed logits).
    pub(crate) fn step(&mut self, model: &dyn CausalLm, tokens: &[u32]) -> Result<()> {
        match &mut self.next {
            Next::Stepped(cache) => {
                let ids = Tensor::new(tokens, model.device())?.unsqueeze(1)?;
                self.logits = model.forward(&ids, cache, false)?.to_vec2::<f32>()?;
            }
            Next::Forced {
                logits,
                tails,
                position,
            } => {
                let expected: Vec<u32> = tails.iter().map(|t| t[*position]).collect();
                if tokens != expected.as_slice() {
                    candle_core::bail!(
                        "forced rows took {tokens:?} at position {position}, their tails hold {expected:?}"
                    );
                }
                let all = logits.as_ref().ok_or_else(|| {
                    candle_core::Error::Msg("forced rows stepped past their tails".into())
                })?;
                self.logits = all.narrow(1, *position, 1)?.squeeze(1)?.to_vec2::<f32>()?;
                *position += 1;
            }
        }
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

/// A prompt prepared for decoding: the model's prefill and every method's, done once. The k
/// samples, any rows sampled again later (test-time filtering) and the log-likelihood of given
/// continuations all start from it.
pub struct PreparedPrompt<'a> {
    model: &'a dyn CausalLm,
    prompt: Vec<u32>,
    base: Prefill,
    methods: Vec<Box<dyn PreparedMitigation<'a> + 'a>>,
}

impl<'a> PreparedPrompt<'a> {
    /// Prefills `prompt` (token ids, BOS included) for `model` and prepares `methods` for it.
    pub fn new(
        model: &'a dyn CausalLm,
        methods: &[&'a dyn Mitigation],
        prompt: &[u32],
    ) -> Result<Self> {
        if prompt.is_empty() {
            candle_core::bail!("an empty prompt needs a BOS token to start from");
        }
        Ok(Self {
            model,
            prompt: prompt.to_vec(),
            base: Prefill::new(model, prompt)?,
            methods: methods
                .iter()
                .map(|m| m.prepare(prompt))
                .collect::<Result<_>>()?,
        })
    }

    /// The prompt's ids.
    pub fn prompt(&self) -> &[u32] {
        &self.prompt
    }

    fn lockstep(&self, rows: usize) -> Result<Lockstep<'a>> {
        Ok(Lockstep {
            model: self.model,
            rows: self.base.rows(rows)?,
            states: States(
                self.methods
                    .iter()
                    .map(|m| m.start(rows))
                    .collect::<Result<_>>()?,
            ),
            history: vec![self.prompt.clone(); rows],
        })
    }

    /// Rows forced through `tails`: the model and every method's side models run each over the
    /// whole tails at once ([`PreparedMitigation::start_forced`]).
    fn lockstep_forced(&self, tails: &[Vec<u32>]) -> Result<Lockstep<'a>> {
        Ok(Lockstep {
            model: self.model,
            rows: self.base.forced(self.model, tails)?,
            states: States(
                self.methods
                    .iter()
                    .map(|m| m.start_forced(tails))
                    .collect::<Result<_>>()?,
            ),
            history: vec![self.prompt.clone(); tails.len()],
        })
    }

    /// One continuation per random stream in `streams`, at most `max_new` tokens each, a
    /// sample stopping at any id in `stop` (not included); the rows decode as one batch, the
    /// methods changing the logits at every step. Stream `s` is keyed by (seed, `prompt_index`,
    /// `s`), so a row's text depends on its stream alone, not on the batch it decodes in.
    pub fn sample(
        &self,
        streams: &[u64],
        max_new: usize,
        stop: &[u32],
        params: &SamplingParams,
        prompt_index: u64,
    ) -> Result<Vec<Vec<u32>>> {
        let k = streams.len();
        let mut out: Vec<Vec<u32>> = vec![Vec::new(); k];
        if k == 0 || max_new == 0 {
            return Ok(out);
        }
        let mut rngs: Vec<SampleRng> = streams
            .iter()
            .map(|&s| SampleRng::new(params.seed, prompt_index, s))
            .collect();
        let mut rows = self.lockstep(k)?;
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

    /// The negative log-likelihood of each of `tails` after the prompt under the mitigated
    /// distribution ([`mitigated_tail_nll`]). The tails are known, so the model and the
    /// methods' side models each run over them in one batched forward pass, and only the
    /// methods' changes to the logits go position by position; the result is
    /// [`Self::mitigated_nll_stepwise`]'s up to floating-point summation order.
    pub fn mitigated_nll(&self, tails: &[Vec<u32>]) -> Result<Vec<f64>> {
        if tails.iter().all(Vec::is_empty) {
            return Ok(vec![0.0; tails.len()]);
        }
        self.forced_nll(self.lockstep_forced(tails)?, tails)
    }

    /// [`Self::mitigated_nll`] the way sampling runs: one model step (and one step of every
    /// side model) per token. Slower; the reference the batched path is checked against.
    pub fn mitigated_nll_stepwise(&self, tails: &[Vec<u32>]) -> Result<Vec<f64>> {
        if tails.iter().all(Vec::is_empty) {
            return Ok(vec![0.0; tails.len()]);
        }
        self.forced_nll(self.lockstep(tails.len())?, tails)
    }

    /// Walks `rows` through `tails`, scoring each forced token by the log-softmax of the
    /// methods' changed logits.
    fn forced_nll(&self, mut rows: Lockstep<'a>, tails: &[Vec<u32>]) -> Result<Vec<f64>> {
        let longest = tails.iter().map(|t| t.len()).max().unwrap_or(0);
        let mut nll = vec![0.0f64; tails.len()];
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
            // Rows whose tail has ended are fed a padding token (0): attention is causal, so
            // what follows a sequence cannot change it, and its score is no longer read.
            let next: Vec<u32> = tails
                .iter()
                .map(|t| t.get(step).copied().unwrap_or(0))
                .collect();
            rows.push(&next)?;
        }
        Ok(nll)
    }

    /// The negative log-likelihood of each of `tails` after the prompt under the unmitigated
    /// model ([`crate::tail_nll`]), on the prompt's cache.
    pub fn base_nll(&self, tails: &[Vec<u32>]) -> Result<Vec<f64>> {
        crate::tail_nll_after(self.model, &self.base.cache, &self.base.logits, tails)
    }
}

/// Rows decoding in lockstep after one prompt, with the methods' states seeing every step.
struct Lockstep<'a> {
    model: &'a dyn CausalLm,
    rows: Rows,
    states: States<'a>,
    history: Vec<Vec<u32>>,
}

impl Lockstep<'_> {
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
/// `prompt` (streams 0..k of [`PreparedPrompt::sample`]).
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
    let streams: Vec<u64> = (0..k as u64).collect();
    PreparedPrompt::new(model, methods, prompt)?.sample(
        &streams,
        max_new,
        stop,
        params,
        prompt_index,
    )
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
    PreparedPrompt::new(model, methods, prefix)?.mitigated_nll(tails)
}
