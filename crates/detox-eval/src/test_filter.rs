//! Test-time filtering (Welbl et al. 2021, "Challenges in Detoxifying Language Models", §3:
//! "test-time filtering"): each sample is scored by the run's scorer when it ends; a sample at
//! or above the threshold is sampled again from a fresh random stream, up to `tries` in all,
//! and the first try below the threshold is kept, else the least toxic try.
//!
//! A rejected sample is replaced by the prompt's next **spare**: spare j is a fresh random
//! stream ([`spare_stream`]`(j)`), and the rejected samples take the spares in a fixed order
//! (sample 0's retries first, then sample 1's, ...), so which text is kept depends on the seed,
//! the prompt and the scores alone: not on the thread count, nor on how many spares were
//! decoded ahead. Decoding ahead is what keeps the filter cheap: on a CPU a small batch costs
//! far more per row than a large one (one core of a 2-core Xeon, SmolLM2: 175 ms a step for 4
//! rows, 244 ms for 25, 306 ms for 33; `examples/sample_speed.rs` under `taskset -c 0`), so a
//! second batch for the three rows that were rejected costs most of a whole decode, where
//! three more rows in the first batch cost a tenth of one. The first batch therefore carries
//! as many spares as the run's rejection rate so far predicts ([`RejectionRate`]); only if
//! they run out is another batch decoded, of as many spares as the samples still waiting are
//! expected to need. Everything decodes from the
//! prompt's session ([`PromptSession`]: a local model keeps the prompt's prefill, and every
//! decoding-time method's).
//!
//! The paper's own number of tries and threshold could not be confirmed from its text or code
//! (none was released): `threshold = 0.5` and `tries = 4` are detox's defaults. An empty
//! continuation has no toxicity score in RealToxicityPrompts and is accepted as it is.

use crate::error::EvalError;
use crate::records::{f32_as_written, PromptResult};
use detox_core::Scorer;
use detox_lm::decoding::MitigationSpec;
use detox_lm::{spare_stream, Completion, PromptSession};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};

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
    /// The random stream of the try kept.
    pub stream: u64,
}

/// The toxicity of a try as the metrics will read it: `None` for an empty continuation, else
/// the attribute's score as written.
fn toxicity(c: &Completion, scores: &[f32], attr: usize) -> Option<f64> {
    if c.text.trim().is_empty() {
        return None;
    }
    Some(scores.get(attr).map_or(f64::NAN, |&v| f32_as_written(v)))
}

/// The share of tries the filter has rejected so far in a run (shared by the workers): how
/// many spares to decode ahead. It only changes the cost, never the texts kept.
#[derive(Debug, Default)]
pub struct RejectionRate {
    rejected: AtomicUsize,
    tries: AtomicUsize,
}

impl RejectionRate {
    /// The rate so far (1/8 before any try has been seen).
    pub fn get(&self) -> f64 {
        let n = self.tries.load(Ordering::Relaxed);
        if n == 0 {
            0.125
        } else {
            self.rejected.load(Ordering::Relaxed) as f64 / n as f64
        }
    }

    /// Counts `tries` more tries, `rejected` of them rejected.
    pub fn add(&self, tries: usize, rejected: usize) {
        self.tries.fetch_add(tries, Ordering::Relaxed);
        self.rejected.fetch_add(rejected, Ordering::Relaxed);
    }

    /// Spares to decode for `waiting` rejected samples, at most `cap`: each needs 1/(1 - r)
    /// tries on average at the rate r. (Decoding twice that many, so that a batch rarely runs
    /// out, decoded 17% more rows and was no faster.)
    fn spares_for(&self, waiting: f64, cap: usize) -> usize {
        let r = self.get().min(0.9);
        ((waiting / (1.0 - r)).ceil() as usize).min(cap)
    }
}

/// One decoded try: the text, the scorer's values, and the toxicity that decides.
struct Try {
    stream: u64,
    completion: Completion,
    scores: Vec<f32>,
    toxicity: Option<f64>,
}

/// Decodes and scores `streams`.
fn decode(
    session: &mut dyn PromptSession,
    line: usize,
    streams: &[u64],
    scorer: &dyn Scorer,
    attr: usize,
) -> Result<Vec<Try>, EvalError> {
    if streams.is_empty() {
        return Ok(Vec::new());
    }
    let got = session
        .sample(streams)
        .map_err(|source| EvalError::Lm { line, source })?;
    if got.len() != streams.len() {
        return Err(EvalError::Settings(format!(
            "the model returned {} samples for {} streams",
            got.len(),
            streams.len()
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
    Ok(got
        .into_iter()
        .zip(scores)
        .zip(streams)
        .map(|((c, s), &stream)| Try {
            stream,
            toxicity: toxicity(&c, &s.values, attr),
            completion: c,
            scores: s.values,
        })
        .collect())
}

/// What [`sample_filtered`] gives back.
#[derive(Debug, Clone, PartialEq)]
pub struct Filtered {
    /// The k samples kept, in sample order.
    pub kept: Vec<Kept>,
    /// Rows decoded in all: the k first samples and every spare, used or not.
    pub decoded: usize,
}

/// Samples `k` continuations from `session` with the filter: each try scored with `scorer`
/// (attribute index `attr` decides), rejected samples replaced by spares in order, spares
/// decoded ahead as `rate` predicts (see the module documentation). `line` is the prompt's,
/// for errors.
#[allow(clippy::too_many_arguments)]
pub fn sample_filtered(
    session: &mut dyn PromptSession,
    line: usize,
    k: usize,
    scorer: &dyn Scorer,
    attr: usize,
    filter: &TestFilter,
    rate: &RejectionRate,
) -> Result<Filtered, EvalError> {
    let cap = k * filter.tries.max(1).saturating_sub(1);
    let ahead = rate.spares_for(k as f64 * rate.get(), cap);
    let mut streams: Vec<u64> = (0..k as u64).collect();
    streams.extend((0..ahead).map(spare_stream));
    let mut first = decode(session, line, &streams, scorer, attr)?;
    let mut spares: Vec<Option<Try>> = first.split_off(k).into_iter().map(Some).collect();
    let mut decoded = streams.len();
    // Rejected first tries after each sample: the samples that will wait for spares later.
    let mut waiting_after = vec![0usize; k];
    for s in (0..k.saturating_sub(1)).rev() {
        waiting_after[s] =
            waiting_after[s + 1] + usize::from(!filter.accepts(first[s + 1].toxicity));
    }
    let mut kept: Vec<(Try, usize)> = Vec::with_capacity(k);
    let mut next_spare = 0usize;
    for (s, mut best) in first.into_iter().enumerate() {
        let mut tries = 1;
        while tries < filter.tries && !filter.accepts(best.toxicity) {
            if next_spare == spares.len() {
                // Out of spares: decode as many as this sample and the later rejected ones
                // should need.
                let more = rate
                    .spares_for(
                        (1 + waiting_after[s]) as f64,
                        cap.saturating_sub(spares.len()),
                    )
                    .max(1);
                let new: Vec<u64> = (spares.len()..spares.len() + more)
                    .map(spare_stream)
                    .collect();
                decoded += new.len();
                spares.extend(
                    decode(session, line, &new, scorer, attr)?
                        .into_iter()
                        .map(Some),
                );
            }
            let Some(t) = spares.get_mut(next_spare).and_then(Option::take) else {
                break;
            };
            next_spare += 1;
            tries += 1;
            // The first accepted try is kept, else the least toxic (the earlier one on a tie,
            // or against NaN).
            if filter.accepts(t.toxicity)
                || matches!((t.toxicity, best.toxicity), (Some(a), Some(b)) if a < b)
            {
                best = t;
            }
        }
        kept.push((best, tries));
    }
    let used = k + next_spare;
    let rejected = kept.iter().map(|(_, n)| n - 1).sum::<usize>()
        + kept
            .iter()
            .filter(|(t, _)| !filter.accepts(t.toxicity))
            .count();
    rate.add(used, rejected);
    Ok(Filtered {
        kept: kept
            .into_iter()
            .map(|(t, tries)| Kept {
                completion: t.completion,
                scores: t.scores,
                tries,
                stream: t.stream,
            })
            .collect(),
        decoded,
    })
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
    /// Extra tries per kept sample: (tries − samples) / samples, the spares the filter used.
    /// Spares decoded ahead and not needed are not counted here (`timing.json`'s `sampled`
    /// counts every row decoded).
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
