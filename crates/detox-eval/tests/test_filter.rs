//! Test-time filtering with a stub model and a stub scorer whose scores are known for every
//! stream: kept samples are below the threshold whenever a try was, the kept try is the first
//! such one (else the least toxic), rejected samples take the spares in order, tries are
//! counted and recorded, the texts kept do not depend on how many spares were decoded ahead,
//! and the run's files are the same whatever the number of workers.

use detox_core::{Activation, ScoreError, Scorer, ScorerInfo, TextScore};
use detox_eval::metrics::Threshold;
use detox_eval::run::{self, EvalConfig, Models, PromptSource, Silent};
use detox_eval::test_filter::{sample_filtered, FilterStats, RejectionRate, TestFilter};
use detox_lm::sampling::SamplingParams;
use detox_lm::{
    spare_stream, Completion, GenerationRequest, LanguageModel, LmError, PromptSession,
};
use std::sync::Mutex;

/// A model whose sample for stream `s` of prompt `p` is the text `p<p> s<s>` (first samples)
/// or `p<p> spare<j>` (spares), and which records every batch of streams it is asked for.
struct Stub {
    workers: usize,
    asked: Mutex<Vec<(u64, Vec<u64>)>>,
}

struct StubSession<'a> {
    lm: &'a Stub,
    prompt: u64,
}

fn text(prompt: u64, stream: u64) -> String {
    if stream >> 32 == 0 {
        format!("p{prompt} s{stream}")
    } else {
        format!("p{prompt} spare{}", stream - spare_stream(0))
    }
}

impl PromptSession for StubSession<'_> {
    fn sample(&mut self, streams: &[u64]) -> Result<Vec<Completion>, LmError> {
        self.lm
            .asked
            .lock()
            .unwrap()
            .push((self.prompt, streams.to_vec()));
        Ok(streams
            .iter()
            .map(|s| Completion {
                text: text(self.prompt, *s),
                perplexity: None,
            })
            .collect())
    }
}

impl LanguageModel for Stub {
    fn identity(&self) -> serde_json::Value {
        serde_json::json!({"kind": "stub"})
    }

    fn concurrency(&self) -> usize {
        self.workers
    }

    fn open<'a>(
        &'a self,
        _prompt: &str,
        prompt_index: u64,
        _req: &GenerationRequest,
    ) -> Result<Box<dyn PromptSession + 'a>, LmError> {
        Ok(Box::new(StubSession {
            lm: self,
            prompt: prompt_index,
        }))
    }

    fn perplexity(&self, _: &str, c: &[&str]) -> Result<Vec<Option<f64>>, LmError> {
        Ok(vec![None; c.len()])
    }
}

/// The stub scorer's toxicity of a stub text: a fixed pseudo-random value per (prompt, sample,
/// try), in steps of 1/16 (exact in f32), so some samples pass on the first try, some later,
/// some never.
fn stub_score(text: &str) -> f32 {
    let mut h: u64 = 1469598103934665603;
    for b in text.bytes() {
        h = (h ^ b as u64).wrapping_mul(1099511628211);
    }
    (detox_core::rng::SplitMix64::new(h).next_u64() % 16) as f32 / 16.0
}

struct StubScorer(ScorerInfo);

impl Scorer for StubScorer {
    fn info(&self) -> &ScorerInfo {
        &self.0
    }

    fn score(&self, texts: &[&str]) -> Result<Vec<TextScore>, ScoreError> {
        Ok(texts
            .iter()
            .map(|t| TextScore {
                values: vec![0.25, stub_score(t)],
                tokens: 1,
                truncated: false,
            })
            .collect())
    }
}

fn scorer() -> StubScorer {
    StubScorer(ScorerInfo::new(
        "stub",
        vec!["insult".into(), "toxicity".into()],
        Activation::Sigmoid,
    ))
}

const FILTER: TestFilter = TestFilter {
    threshold: 0.5,
    tries: 3,
};

/// What the filter must keep, worked out here independently: sample s's tries are its own
/// stream, then the next spares in order; the first try below the threshold is kept, else the
/// least toxic (the earliest on a tie).
fn expected(prompt: u64, k: usize) -> Vec<(String, usize)> {
    let mut next = 0u64;
    (0..k as u64)
        .map(|s| {
            let mut tries = vec![text(prompt, s)];
            while tries.len() < FILTER.tries
                && (stub_score(tries.last().unwrap()) as f64) >= FILTER.threshold
            {
                tries.push(text(prompt, spare_stream(next as usize)));
                next += 1;
            }
            let first_ok = tries
                .iter()
                .position(|t| (stub_score(t) as f64) < FILTER.threshold);
            let kept = first_ok.unwrap_or_else(|| {
                let best = tries
                    .iter()
                    .map(|t| stub_score(t))
                    .fold(f32::INFINITY, f32::min);
                tries.iter().position(|t| stub_score(t) == best).unwrap()
            });
            (tries[kept].clone(), tries.len())
        })
        .collect()
}

#[test]
fn rejected_samples_take_the_spares_in_order_whatever_was_decoded_ahead() {
    let req = GenerationRequest {
        samples: 40,
        max_tokens: 5,
        params: SamplingParams::default(),
        perplexity: false,
    };
    let want = expected(7, 40);
    let used: usize = want.iter().map(|(_, n)| n - 1).sum();
    let never = want
        .iter()
        .filter(|(t, _)| (stub_score(t) as f64) >= FILTER.threshold)
        .count();
    let later = want
        .iter()
        .filter(|(t, n)| *n > 1 && (stub_score(t) as f64) < FILTER.threshold)
        .count();
    assert!(
        used > 5 && never > 0 && later > 0,
        "the stub should exercise retries"
    );
    // No spares ahead (a rate of 0), the default guess, and far too many (a rate of 90%).
    for (rejected, tries) in [(0, 1000), (0, 0), (900, 1000)] {
        let lm = Stub {
            workers: 1,
            asked: Mutex::new(Vec::new()),
        };
        let rate = RejectionRate::default();
        rate.add(tries, rejected);
        let mut session = lm.open("x", 7, &req).unwrap();
        let out = sample_filtered(session.as_mut(), 1, 40, &scorer(), 1, &FILTER, &rate).unwrap();
        let got: Vec<(String, usize)> = out
            .kept
            .iter()
            .map(|k| (k.completion.text.clone(), k.tries))
            .collect();
        assert_eq!(got, want, "rate {rejected}/{tries}");
        for k in &out.kept {
            assert_eq!(k.scores[0], 0.25, "every attribute's score is kept");
            assert_eq!(k.scores[1], stub_score(&k.completion.text));
        }
        // The first batch is the 40 samples and the spares decoded ahead; later batches are
        // the next spares, in order; every row decoded is counted.
        let asked = lm.asked.lock().unwrap();
        assert_eq!(asked[0].1[..40], (0..40).collect::<Vec<u64>>()[..]);
        let all: Vec<u64> = asked.iter().flat_map(|(_, s)| s.clone()).skip(40).collect();
        let spares: Vec<u64> = (0..all.len()).map(spare_stream).collect();
        assert_eq!(all, spares, "rate {rejected}/{tries}");
        assert!(all.len() >= used);
        assert_eq!(out.decoded, 40 + all.len());
        if tries == 1000 && rejected == 0 {
            assert_eq!(asked[0].1.len(), 40, "no spares ahead at a rate of 0");
        } else {
            assert!(asked[0].1.len() > 40, "spares ahead");
        }
        // After the prompt the rate holds its tries.
        assert!(rate.get() > 0.0);
    }
}

#[test]
fn the_filter_is_found_among_the_methods_once() {
    use detox_lm::decoding::MitigationSpec;
    let specs = MitigationSpec::parse_list("self-debias,test-filter:tries=2").unwrap();
    assert_eq!(
        TestFilter::from_specs(&specs).unwrap(),
        Some(TestFilter {
            threshold: 0.5,
            tries: 2
        })
    );
    assert_eq!(TestFilter::from_specs(&specs[..1]).unwrap(), None);
    let twice = MitigationSpec::parse_list("test-filter,test-filter").unwrap();
    let e = TestFilter::from_specs(&twice).unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");
}

fn config(out: &std::path::Path, prompts: &std::path::Path) -> EvalConfig {
    EvalConfig {
        prompts: PromptSource::File(prompts.to_path_buf()),
        field: "prompt.text".into(),
        subset: None,
        limit: None,
        model: "stub".into(),
        weights: "f32".into(),
        judge_model: None,
        perplexity: false,
        model_gives_perplexity: false,
        scorer: "stub".into(),
        request: GenerationRequest {
            samples: 6,
            max_tokens: 5,
            params: SamplingParams::default(),
            perplexity: false,
        },
        threshold: Threshold::default(),
        out: Some(out.to_path_buf()),
        test_filter: Some(FILTER),
        threads: 1,
    }
}

#[test]
fn a_filtered_run_records_tries_and_is_the_same_for_any_number_of_workers() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.jsonl");
    let lines: String = (0..9)
        .map(|i| format!("{{\"prompt\": {{\"text\": \"prompt {i}\", \"toxicity\": 0.{i}}}}}\n"))
        .collect();
    std::fs::write(&prompts, lines).unwrap();
    let scorer = scorer();
    let identity = serde_json::json!({"id": "stub"});
    let mut files = Vec::new();
    for workers in [1, 3] {
        let out = dir.path().join(format!("run{workers}"));
        let lm = Stub {
            workers,
            asked: Mutex::new(Vec::new()),
        };
        let models = Models {
            lm: &lm,
            judge: None,
            scorer: &scorer,
            scorer_identity: &identity,
        };
        let cfg = config(&out, &prompts);
        let prepared = run::prepare(&cfg, &scorer).unwrap();
        let outcome = run::run(&cfg, &prepared, &models, &Silent).unwrap();
        let stats = outcome.metrics.test_filter.clone().unwrap();
        // By hand from the records: every generation has its tries; kept ones below the
        // threshold are counted as accepted.
        let gens: Vec<_> = outcome
            .results
            .iter()
            .flat_map(|r| r.generations.iter())
            .collect();
        assert_eq!(gens.len(), 54);
        let tries: Vec<u32> = gens.iter().map(|g| g.tries.unwrap()).collect();
        let ok = |g: &detox_eval::records::Generation| g.score("toxicity").unwrap() < 0.5;
        let accepted = gens.iter().filter(|g| ok(g)).count();
        let first = gens.iter().filter(|g| ok(g) && g.tries == Some(1)).count();
        let decoded: u32 = tries.iter().sum();
        assert_eq!(stats.samples, 54);
        assert!((stats.accepted - accepted as f64 / 54.0).abs() < 1e-12);
        assert!((stats.first_try_accepted - first as f64 / 54.0).abs() < 1e-12);
        assert!((stats.extra_generations - (decoded as f64 - 54.0) / 54.0).abs() < 1e-12);
        assert!(
            stats.extra_generations > 0.0 && stats.accepted > stats.first_try_accepted,
            "{stats:?}"
        );
        // The filter's own figures, recomputed from the file as written.
        assert_eq!(
            FilterStats::of(&FILTER, &outcome.results, "toxicity"),
            stats
        );
        let run_json = std::fs::read_to_string(out.join("run.json")).unwrap();
        assert!(
            run_json.contains(r#""method": "test-filter""#),
            "{run_json}"
        );
        let timing: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("timing.json")).unwrap())
                .unwrap();
        assert_eq!(timing["generations"], 54);
        // Every row decoded, spares decoded ahead and not needed included.
        assert!(timing["sampled"].as_u64().unwrap() >= decoded as u64);
        files.push((
            std::fs::read_to_string(out.join("generations.jsonl")).unwrap(),
            std::fs::read_to_string(out.join("metrics.json")).unwrap(),
        ));
    }
    assert_eq!(files[0], files[1]);
}
