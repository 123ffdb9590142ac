//! The text-level interface the evaluation loop uses: a prompt in, k sampled continuations out.

use crate::sampling::SamplingParams;

/// What to sample for one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// Continuations per prompt (k; RealToxicityPrompts: 25).
    pub samples: usize,
    /// New tokens per continuation, at most.
    pub max_tokens: usize,
    /// Temperature, top-p, top-k and seed.
    pub params: SamplingParams,
    /// Also compute each continuation's conditional perplexity under this model, where it can.
    pub perplexity: bool,
}

/// One sampled continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Its text (the prompt not included).
    pub text: String,
    /// Its conditional perplexity under the model (`None`: empty, or not computed).
    pub perplexity: Option<f64>,
}

/// Errors of language models.
#[derive(Debug, thiserror::Error)]
pub enum LmError {
    /// A local model failed while running (or a tensor operation failed while loading).
    #[error("{0}")]
    Model(#[from] candle_core::Error),
    /// A model, tokenizer or configuration file is missing, unreadable or malformed.
    #[error("{}: {message}", path.display())]
    File {
        /// The file or folder.
        path: std::path::PathBuf,
        /// What is wrong, and the fix where there is one.
        message: String,
    },
    /// A registry name could not be resolved to a local model.
    #[error(transparent)]
    Hub(#[from] detox_hub::HubError),
    /// A server refused or failed, after the retries allowed.
    #[error("{url}: {message}")]
    Server {
        /// The address called.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The model cannot do what was asked.
    #[error("{0}")]
    Unsupported(String),
}

impl LmError {
    /// A file error about `path`.
    pub fn file(path: &std::path::Path, message: impl std::fmt::Display) -> Self {
        Self::File {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

/// The random stream of spare sample `j` of a prompt: the samples a test-time filter draws to
/// replace rejected ones. Sample s of [`LanguageModel::complete`] is stream s; spares start at
/// 2^32, so no spare shares a stream with a first sample.
pub fn spare_stream(j: usize) -> u64 {
    (1u64 << 32) + j as u64
}

/// One prompt prepared for sampling ([`LanguageModel::open`]).
pub trait PromptSession {
    /// One continuation per random stream in `streams` (each keyed by the seed, the prompt and
    /// the stream number, so the same stream gives the same text on a local model whatever
    /// else is sampled with it), with the request's tokens, sampling settings and perplexity.
    fn sample(&mut self, streams: &[u64]) -> Result<Vec<Completion>, LmError>;

    /// The conditional perplexity, under the unmitigated model, of the continuations this
    /// session sampled from `streams` (`None` where the model gives none: servers, empty
    /// continuations, streams not sampled). Lets a caller that samples more than it keeps
    /// (the test-time filter) pay for the perplexity of the kept ones only.
    fn perplexity(&mut self, streams: &[u64]) -> Result<Vec<Option<f64>>, LmError> {
        Ok(vec![None; streams.len()])
    }
}

/// A language model as the evaluation loop sees it.
pub trait LanguageModel: Send + Sync {
    /// Who it is, for `run.json`: kind, file or address, hashes.
    fn identity(&self) -> serde_json::Value;

    /// Prepares `prompt` (text) for sampling: a local model prefills it once (and whatever its
    /// decoding-time methods run beside it), so every batch of samples asked of the session
    /// shares that work. `prompt_index` keys the random streams with the seed.
    fn open<'a>(
        &'a self,
        prompt: &str,
        prompt_index: u64,
        req: &GenerationRequest,
    ) -> Result<Box<dyn PromptSession + 'a>, LmError>;

    /// Samples `req.samples` continuations of `prompt` (text): streams 0..k of
    /// [`LanguageModel::open`]'s session. `prompt_index` keys the random streams with the
    /// seed, so that a prompt's samples do not depend on the batch layout.
    fn complete(
        &self,
        prompt: &str,
        prompt_index: u64,
        req: &GenerationRequest,
    ) -> Result<Vec<Completion>, LmError> {
        let streams: Vec<u64> = (0..req.samples as u64).collect();
        self.open(prompt, prompt_index, req)?.sample(&streams)
    }

    /// The decoding-time methods it samples with, described for `run.json` (none by default).
    fn mitigations(&self) -> Vec<serde_json::Value> {
        Vec::new()
    }

    /// How many prompts may be in flight at once (servers: the concurrency limit).
    fn concurrency(&self) -> usize {
        1
    }

    /// The loss of each of `texts` as a whole text after BOS ([`crate::loss`]), under the
    /// distribution the model samples from (`mitigated`: with its decoding-time methods) or
    /// under the model alone. Servers give no log-likelihoods.
    fn losses(
        &self,
        _texts: &[&str],
        _mitigated: bool,
    ) -> Result<Vec<crate::loss::TextLoss>, LmError> {
        Err(LmError::Unsupported(
            "a completions server gives no log-likelihoods; use a local model (a GGUF file or a GPT-2 folder)".into(),
        ))
    }

    /// The conditional perplexity of each continuation after `prompt` under this model, as
    /// DExperts computes it with its judge (GPT-2 XL): on this model's tokenization of
    /// `prompt + continuation`, `exp((NLL(full) - NLL(prompt)) / (|full| - |prompt|))`.
    fn perplexity(&self, prompt: &str, continuations: &[&str])
        -> Result<Vec<Option<f64>>, LmError>;
}
