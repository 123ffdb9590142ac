//! Test-time filtering (Welbl et al. 2021, "Challenges in Detoxifying Language Models", §3:
//! "test-time filtering"): each sample is scored by the run's scorer when it ends; a sample at
//! or above the threshold is sampled again from a fresh random stream, up to `tries` in all,
//! and the first try below the threshold is kept, else the least toxic try.
//!
//! Only the rejected rows decode again, from the prompt's session ([`PromptSession`]: a local
//! model keeps the prompt's prefill, and every decoding-time method's, across tries). Try `t`
//! of sample `s` draws from stream [`retry_stream`]`(s, t)`, so a sample's tries, and which one
//! is kept, depend on the seed, the prompt and the scores alone: the same whatever the thread
//! count or which other rows were rejected.
//!
//! The paper's own number of tries and threshold could not be confirmed from its text or code
//! (none was released): `threshold = 0.5` and `tries = 4` are detox's defaults. An empty
//! continuation has no toxicity score in RealToxicityPrompts and is accepted as it is.

use crate::error::EvalError;
use crate::records::{f32_as_written, PromptResult};
use detox_core::Scorer;
use detox_lm::decoding::MitigationSpec;
use detox_lm::{retry_stream, Completion, PromptSession};
use serde::{Deserialize, Serialize};

/// The filter's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestFilter {
    /// A try scoring this or more is rejected.
    pub threshold: f64,
    /// Tries per sample in all, the first included (at least 1).
    pub tries: usize,
}

impl TestFilter {
    /// The filter among `--mitigate`'s methods, if there is one (two are refused).
    pub fn from_specs(specs: &[MitigationSpec]) -> Result<Option<Self>, EvalError> {
        let mut found = None;
        for s in specs {
            if let MitigationSpec::TestFilter { threshold, tries } = s {
                if found.is_some() {
                    return Err(EvalError::Settings(
                        "--mitigate names test-filter twice; give it once".into(),
                    ));
                }
                found = Some(Self {
                    threshold: *threshold,
                    tries: (*tries).max(1),
                });
            }
        }
        Ok(found)
    }

    /// Its name and parameters, for `run.json`.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "method": "test-filter",
            "threshold": self.threshold,
            "tries": self.tries,
        })
    }

    /// Whether a try with this score (as written to `generations.jsonl`; `None`: an empty
    /// continuation) is kept.
    pub fn accepts(&self, score: Option<f64>) -> bool {
        score.is_none_or(|s| s < self.threshold)
    }
}

/// A sample the filter kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    /// The continuation.
    pub completion: Completion,
    /// The scorer's values for it (every attribute).
    pub scores: Vec<f32>,
    /// Tries it took (1: the first was kept).
    pub tries: usize,
}

/// The toxicity of a try as the metrics will read it: `None` for an empty continuation, else
/// the attribute's score as written.
fn toxicity(c: &Completion, scores: &[f32], attr: usize) -> Option<f64> {
    if c.text.trim().is_empty() {
        return None;
    }
    Some(scores.get(attr).map_or(f64::NAN, |&v| f32_as_written(v)))
}

/// Samples `k` continuations from `session` with the filter: each try scored with `scorer`
/// (attribute index `attr` decides), rejected rows sampled again together. `line` is the
/// prompt's, for errors.
pub fn sample_filtered(
    session: &mut dyn PromptSession,
    line: usize,
    k: usize,
    scorer: &dyn Scorer,
    attr: usize,
    filter: &TestFilter,
) -> Result<Vec<Kept>, EvalError> {
    let mut kept: Vec<Option<(Kept, Option<f64>)>> = vec![None; k];
    let mut pending: Vec<usize> = (0..k).collect();
    for attempt in 0..filter.tries.max(1) {
        if pending.is_empty() {
            break;
        }
        let streams: Vec<u64> = pending.iter().map(|&s| retry_stream(s, attempt)).collect();
        let got = session
            .sample(&streams)
            .map_err(|source| EvalError::Lm { line, source })?;
        if got.len() != pending.len() {
            return Err(EvalError::Settings(format!(
                "the model returned {} samples for {} streams",
                got.len(),
                pending.len()
            )));
        }
        let texts: Vec<&str> = got.iter().map(|c| c.text.as_str()).collect();
        let scores = scorer.score(&texts)?;
        if scores.len() != got.len() {
            return Err(EvalError::Settings(format!(
                "the scorer returned {} scores for {} texts",
                scores.len(),
                got.len()
            )));
        }
        let mut rejected = Vec::new();
        for ((&s, c), score) in pending.iter().zip(got).zip(scores) {
            let tox = toxicity(&c, &score.values, attr);
            // The least toxic try so far stays (the earlier one on a tie, or against NaN).
            let better = match &kept[s] {
                None => true,
                Some((_, best)) => matches!((tox, best), (Some(t), Some(b)) if t < *b),
            };
            if better {
                kept[s] = Some((
                    Kept {
                        completion: c,
                        scores: score.values,
                        tries: 0,
                    },
                    tox,
                ));
            }
            if let Some((k, _)) = kept[s].as_mut() {
                k.tries = attempt + 1;
            }
            if !filter.accepts(tox) {
                rejected.push(s);
            }
        }
        pending = rejected;
    }
    Ok(kept.into_iter().flatten().map(|(k, _)| k).collect())
}

/// What the filter did over a run, from the records as written (`metrics.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilterStats {
    /// The threshold.
    pub threshold: f64,
    /// Tries allowed per sample.
    pub tries: usize,
    /// Samples kept.
    pub samples: usize,
    /// Share of samples whose first try was kept (below the threshold, or empty).
    pub first_try_accepted: f64,
    /// Share of samples that ended below the threshold (or empty); the rest kept their least
    /// toxic try.
    pub accepted: f64,
    /// Extra samples decoded per kept sample: (tries decoded − samples) / samples. The
    /// filter's extra cost in generation is about this, plus scoring every try.
    pub extra_generations: f64,
}

impl FilterStats {
    /// The figures of `results` (each generation's `tries` and score of `attr`).
    pub fn of(filter: &TestFilter, results: &[PromptResult], attr: &str) -> Self {
        let (mut samples, mut first, mut accepted, mut decoded) = (0usize, 0usize, 0usize, 0usize);
        for g in results.iter().flat_map(|r| &r.generations) {
            let tries = g.tries.unwrap_or(1) as usize;
            let tox = (!g.is_empty()).then(|| g.score(attr).unwrap_or(f64::NAN));
            let ok = filter.accepts(tox);
            samples += 1;
            decoded += tries;
            accepted += ok as usize;
            first += (ok && tries == 1) as usize;
        }
        let share = |n: usize| {
            if samples == 0 {
                f64::NAN
            } else {
                n as f64 / samples as f64
            }
        };
        Self {
            threshold: filter.threshold,
            tries: filter.tries,
            samples,
            first_try_accepted: share(first),
            accepted: share(accepted),
            extra_generations: share(decoded.saturating_sub(samples)),
        }
    }
}
