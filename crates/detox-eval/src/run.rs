//! An evaluation run: prompts in, `generations.jsonl`, `metrics.json` and `report.html` out.
//!
//! The caller (the `detox eval` command, a benchmark, an audit) builds the language model(s)
//! and the scorer and hands them over with an [`EvalConfig`]; [`prepare`] reads and selects
//! the prompts (scoring their toxicity where the file has none) and [`run`] generates, scores,
//! writes and measures:
//!
//! - prompts run on [`LanguageModel::concurrency`] workers (server requests in flight, or local
//!   prompts side by side on the cores) while the calling thread scores each prompt's samples
//!   and writes its line, in prompt order, so the file is the same whatever the thread count;
//! - with a run folder, each line is appended as soon as its prompt is done and a rerun of the
//!   same settings resumes after the last complete line ([`crate::folder`]);
//! - metrics are computed from the records as written, so a resumed run and an uninterrupted
//!   one give the same `metrics.json`.

use crate::error::EvalError;
use crate::folder::{RunFolder, METRICS_FILE, REPORT_FILE};
use crate::metrics::{
    bootstrap_unprompted, subset_metrics, PromptSamples, SubsetMetrics, Threshold,
};
use crate::prompts::{load_prompts, Prompt, PromptError, Subset};
use crate::records::{Generation, PromptResult};
use crate::report::{render, ReportInput, ReportPrompt};
use crate::test_filter::{sample_filtered, FilterStats, RejectionRate, TestFilter};
use crate::timing::Timing;
use detox_core::Scorer;
use detox_lm::{Completion, GenerationRequest, LanguageModel};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// Draws of RealToxicityPrompts' unprompted bootstrap.
pub const UNPROMPTED_DRAWS: usize = 1000;

/// The name of the unprompted mode's one group of figures (`metrics.json`, the report).
pub const UNPROMPTED: &str = "unprompted";

/// Bootstrap resamples of the 95% intervals.
pub const RESAMPLES: usize = 1000;

/// DExperts averages only perplexities below this ("for sanity"; `eval/evaluate_generations.py`,
/// `conditional_perplexity`: `if ppl < 1e4`).
pub const PERPLEXITY_CAP: f64 = 1e4;

/// Where the prompts come from.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptSource {
    /// The built-in smoke set.
    Smoke,
    /// A prompt file (RTP JSONL, JSONL with a field, text lines, CSV/TSV).
    File(PathBuf),
    /// RTP's unprompted mode: this many generations from the empty prompt, in groups of k.
    Unprompted(usize),
}

/// What to evaluate and how (everything but the models themselves).
#[derive(Debug, Clone)]
pub struct EvalConfig {
    /// The prompts.
    pub prompts: PromptSource,
    /// The prompt field of JSONL files (dotted paths allowed).
    pub field: String,
    /// Keep only this subset.
    pub subset: Option<Subset>,
    /// Keep only the first N prompts (after the subset).
    pub limit: Option<usize>,
    /// The language model as the user named it (a label for `run.json` and the report).
    pub model: String,
    /// The weight mode's name (`f32`, `as-stored`).
    pub weights: String,
    /// The judge model as named, if perplexity comes from one.
    pub judge_model: Option<String>,
    /// Whether perplexity is computed at all.
    pub perplexity: bool,
    /// Whether the evaluated model can give perplexities (local models can, servers cannot).
    pub model_gives_perplexity: bool,
    /// The scorer spec as written.
    pub scorer: String,
    /// Samples per prompt, tokens, sampling parameters.
    pub request: GenerationRequest,
    /// The toxicity threshold.
    pub threshold: Threshold,
    /// The run folder, if any.
    pub out: Option<PathBuf>,
    /// Test-time filtering of whole samples with the run's scorer (`--mitigate test-filter`).
    pub test_filter: Option<TestFilter>,
    /// Compute threads, recorded with the timing (`timing.json`).
    pub threads: usize,
}

impl EvalConfig {
    /// Refuses settings no run can use (checked again by [`prepare`]; call it early to fail
    /// before loading models).
    pub fn validate(&self) -> Result<(), EvalError> {
        if self.request.samples == 0 {
            return Err(EvalError::Settings("--samples must be at least 1".into()));
        }
        if self.prompts == PromptSource::Unprompted(0) {
            return Err(EvalError::Settings(
                "--unprompted needs at least one generation".into(),
            ));
        }
        Ok(())
    }

    /// Whether the evaluated model computes perplexity itself (no judge, not disabled).
    pub fn own_perplexity(&self) -> bool {
        self.perplexity && self.judge_model.is_none() && self.model_gives_perplexity
    }
}

/// Where the prompts' own toxicity comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PromptToxicity {
    /// The file's Perspective scores (RTP's `prompt.toxicity`).
    #[serde(rename = "file")]
    File,
    /// The scorer (the file has none).
    #[serde(rename = "scorer")]
    Scorer,
    /// The file's where present, the scorer's for the rest.
    #[serde(rename = "file+scorer")]
    Mixed,
    /// None (unprompted).
    #[serde(rename = "none")]
    Absent,
}

impl PromptToxicity {
    /// Its name in `run.json` and `metrics.json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Scorer => "scorer",
            Self::Mixed => "file+scorer",
            Self::Absent => "none",
        }
    }
}

/// The scorer's attribute the metrics use, and all its attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Attributes {
    /// Every attribute, in the scorer's order.
    pub all: Vec<String>,
    /// The index of `toxicity` (else 0).
    pub toxicity: usize,
}

impl Attributes {
    /// Reads them off a scorer; says which attribute stands in when there is no `toxicity`.
    pub fn of(scorer: &dyn Scorer) -> Result<(Self, Option<String>), EvalError> {
        let info = scorer.info();
        if info.attributes.is_empty() {
            return Err(EvalError::Settings(format!(
                "scorer {} has no attributes",
                info.id
            )));
        }
        Ok(match info.attribute_index("toxicity") {
            Some(i) => (
                Self {
                    all: info.attributes.clone(),
                    toxicity: i,
                },
                None,
            ),
            None => (
                Self {
                    all: info.attributes.clone(),
                    toxicity: 0,
                },
                Some(format!(
                    "scorer {} has no `toxicity` attribute; the metrics use `{}`",
                    info.id, info.attributes[0]
                )),
            ),
        })
    }

    /// The name of the attribute the metrics use.
    pub fn name(&self) -> &str {
        &self.all[self.toxicity]
    }
}

/// The prompts selected for a run.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The prompts, in order.
    pub prompts: Vec<Prompt>,
    /// Lines of the prompt file that could not be used.
    pub skipped: Vec<PromptError>,
    /// Where prompt toxicity came from.
    pub toxicity: PromptToxicity,
    /// The scorer's attributes.
    pub attributes: Attributes,
    /// Said about the scorer (e.g. no `toxicity` attribute).
    pub warnings: Vec<String>,
}

/// Fills in each prompt's toxicity with the scorer's where the file has none (the record as
/// read stays as it was) and says where the values came from.
fn fill_prompt_toxicity(
    prompts: &mut [Prompt],
    scorer: &dyn Scorer,
    attr: usize,
) -> Result<PromptToxicity, EvalError> {
    let missing: Vec<usize> = (0..prompts.len())
        .filter(|&i| prompts[i].toxicity.is_none())
        .collect();
    if missing.is_empty() {
        return Ok(PromptToxicity::File);
    }
    let texts: Vec<&str> = missing.iter().map(|&i| prompts[i].text.as_str()).collect();
    let scores = scorer.score(&texts)?;
    for (&i, s) in missing.iter().zip(&scores) {
        prompts[i].toxicity = s.values.get(attr).map(|&v| v as f64);
    }
    Ok(if missing.len() == prompts.len() {
        PromptToxicity::Scorer
    } else {
        PromptToxicity::Mixed
    })
}

/// The prompts of the unprompted mode: groups of k generations from the empty prompt.
pub fn unprompted_groups(n: usize, k: usize) -> Vec<Prompt> {
    (0..n.div_ceil(k.max(1)))
        .map(|i| {
            let mut record = Map::new();
            record.insert("prompt".into(), json!({"text": ""}));
            Prompt {
                line: i + 1,
                record,
                text: String::new(),
                toxicity: None,
                challenging: false,
            }
        })
        .collect()
}

/// Reads and selects the prompts: the subset (prompt toxicity from the file's Perspective
/// scores, else from the scorer; a subset selection needs it for every prompt, otherwise only
/// the prompts kept are scored), then the limit.
pub fn prepare(config: &EvalConfig, scorer: &dyn Scorer) -> Result<Prepared, EvalError> {
    config.validate()?;
    let (mut prompts, skipped) = match &config.prompts {
        PromptSource::Unprompted(n) => (unprompted_groups(*n, config.request.samples), Vec::new()),
        PromptSource::Smoke => load_prompts(None, &config.field)?,
        PromptSource::File(p) => load_prompts(Some(p), &config.field)?,
    };
    let (attributes, warning) = Attributes::of(scorer)?;
    let unprompted = matches!(config.prompts, PromptSource::Unprompted(_));
    let needs_all = matches!(config.subset, Some(Subset::Toxic | Subset::Nontoxic));
    let mut toxicity = PromptToxicity::Absent;
    if !unprompted && needs_all {
        toxicity = fill_prompt_toxicity(&mut prompts, scorer, attributes.toxicity)?;
    }
    if let Some(s) = config.subset {
        prompts.retain(|p| s.contains(p, p.toxicity));
    }
    if let Some(n) = config.limit {
        prompts.truncate(n);
    }
    if prompts.is_empty() {
        return Err(EvalError::NoPrompts);
    }
    if !unprompted && !needs_all {
        toxicity = fill_prompt_toxicity(&mut prompts, scorer, attributes.toxicity)?;
    }
    Ok(Prepared {
        prompts,
        skipped,
        toxicity,
        attributes,
        warnings: warning.into_iter().collect(),
    })
}

/// The models of a run.
#[derive(Clone, Copy)]
pub struct Models<'a> {
    /// The evaluated model.
    pub lm: &'a dyn LanguageModel,
    /// The perplexity judge, if any.
    pub judge: Option<&'a dyn LanguageModel>,
    /// The scorer.
    pub scorer: &'a dyn Scorer,
    /// The scorer's identity for `run.json` (`detox_spec::ScorerSpec::identity`).
    pub scorer_identity: &'a Value,
}

/// The settings `run.json` records; a resumed run must have the same (field order is the
/// file's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Protocol {
    /// The prompt file, `built-in smoke set` or `unprompted`.
    pub prompts: String,
    /// sha256 of the prompt file.
    pub prompts_sha256: Option<String>,
    /// The prompt field.
    pub field: String,
    /// The subset kept.
    pub subset: Option<String>,
    /// The prompt limit.
    pub limit: Option<usize>,
    /// Unprompted generations.
    pub unprompted: Option<usize>,
    /// Where prompt toxicity came from.
    pub prompt_toxicity: PromptToxicity,
    /// The model as named.
    pub model: String,
    /// The model's identity (kind, file or address, hashes).
    pub model_identity: Value,
    /// Decoding-time methods, in the order applied, with their parameters (absent: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mitigate: Vec<Value>,
    /// The weight mode.
    pub weights: String,
    /// The judge as named.
    pub judge_model: Option<String>,
    /// The judge's identity.
    pub judge_identity: Option<Value>,
    /// Whether perplexity was computed.
    pub perplexity: bool,
    /// The scorer's id.
    pub scorer: String,
    /// The scorer's description.
    pub scorer_description: String,
    /// The scorer's identity (files and hashes).
    pub scorer_identity: Value,
    /// Samples per prompt.
    pub samples: usize,
    /// Temperature (the f32 setting, recorded as f64).
    pub temperature: f64,
    /// Nucleus mass (the f32 setting, recorded as f64).
    pub top_p: f64,
    /// Top-k (0: off).
    pub top_k: usize,
    /// New tokens per sample.
    pub max_tokens: usize,
    /// The seed.
    pub seed: u64,
    /// The toxicity threshold.
    pub threshold: f64,
    /// `>` instead of `>=`.
    pub strict: bool,
    /// The detox version that made the run.
    pub detox_version: String,
}

impl Protocol {
    /// The settings of `config` run with `models` on `prepared`.
    pub fn new(
        config: &EvalConfig,
        prepared: &Prepared,
        models: &Models,
    ) -> Result<Self, EvalError> {
        let r = &config.request;
        Ok(Self {
            prompts: match &config.prompts {
                PromptSource::Unprompted(_) => "unprompted".into(),
                PromptSource::File(p) => p.display().to_string(),
                PromptSource::Smoke => "built-in smoke set".into(),
            },
            prompts_sha256: match &config.prompts {
                PromptSource::File(p) => Some(detox_io::files::sha256_file(p)?),
                _ => None,
            },
            field: config.field.clone(),
            subset: config.subset.map(|s| s.name().to_string()),
            limit: config.limit,
            unprompted: match config.prompts {
                PromptSource::Unprompted(n) => Some(n),
                _ => None,
            },
            prompt_toxicity: prepared.toxicity,
            model: config.model.clone(),
            model_identity: models.lm.identity(),
            mitigate: models
                .lm
                .mitigations()
                .into_iter()
                .chain(config.test_filter.map(|f| f.describe()))
                .collect(),
            weights: config.weights.clone(),
            judge_model: config.judge_model.clone(),
            judge_identity: models.judge.map(|j| j.identity()),
            perplexity: config.perplexity,
            scorer: models.scorer.info().id.clone(),
            scorer_description: models.scorer.info().description.clone(),
            scorer_identity: models.scorer_identity.clone(),
            samples: r.samples,
            temperature: r.params.temperature as f64,
            top_p: r.params.top_p as f64,
            top_k: r.params.top_k,
            max_tokens: r.max_tokens,
            seed: r.params.seed,
            threshold: config.threshold.value,
            strict: config.threshold.strict,
            detox_version: env!("CARGO_PKG_VERSION").to_string(),
        })
    }
}

/// The notes a run's table, `metrics.json` and report carry.
pub fn notes(
    config: &EvalConfig,
    prepared: &Prepared,
    scorer_id: &str,
    mitigations: &[Value],
) -> Vec<String> {
    let mut notes = Vec::new();
    match prepared.toxicity {
        PromptToxicity::Scorer => notes.push(format!(
            "The prompt file has no Perspective scores: prompt toxicity (toxic/nontoxic subsets) is the scorer's ({scorer_id})."
        )),
        PromptToxicity::Mixed => notes.push(format!(
            "Prompt toxicity is the file's where present and the scorer's ({scorer_id}) elsewhere."
        )),
        _ => {}
    }
    if !mitigations.is_empty() {
        let names: Vec<&str> = mitigations
            .iter()
            .filter_map(|m| m["method"].as_str())
            .collect();
        notes.push(format!(
            "Mitigated: {} applied at decoding time, in that order; perplexity is the unmitigated model's unless a judge is given.",
            names.join(", ")
        ));
    }
    if let Some(f) = &config.test_filter {
        notes.push(format!(
            "Test-time filter: a sample scoring {} or more was sampled again, up to {} tries in all; the first try below the threshold was kept, else the least toxic (tries per sample in generations.jsonl).",
            f.threshold, f.tries
        ));
    }
    if !config.perplexity {
        notes.push("Perplexity was not computed (--no-perplexity).".into());
    } else if let Some(j) = &config.judge_model {
        notes.push(format!(
            "Perplexity: conditional perplexity of the continuations under the judge model {j}."
        ));
    } else if !config.model_gives_perplexity {
        notes.push(
            "Perplexity was not computed: a completions server gives none (use --judge-model)."
                .into(),
        );
    } else {
        notes.push(
            "Perplexity: conditional perplexity of the continuations under the evaluated model."
                .into(),
        );
    }
    if let PromptSource::Unprompted(n) = config.prompts {
        let k = config.request.samples;
        notes.push(format!(
            "Unprompted: {} generations from the empty prompt in {} groups of {}; bootstrap figures are RTP's ({} draws of {}).",
            prepared.prompts.len() * k,
            prepared.prompts.len(),
            k,
            UNPROMPTED_DRAWS,
            k
        ));
        if n % k != 0 {
            notes.push(format!(
                "--unprompted {n} was rounded up to a multiple of --samples."
            ));
        }
    }
    notes
}

/// What `metrics.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsFile {
    /// The toxicity threshold.
    pub threshold: f64,
    /// `>` instead of `>=`.
    pub strict: bool,
    /// Samples per prompt.
    pub samples_per_prompt: usize,
    /// Where prompt toxicity came from.
    pub prompt_toxicity: PromptToxicity,
    /// Metrics by subset name.
    pub subsets: BTreeMap<String, SubsetMetrics>,
    /// What the test-time filter did (absent without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_filter: Option<FilterStats>,
    /// Notes on how the figures were obtained.
    pub notes: Vec<String>,
}

/// Hears how a run goes (the command line draws a progress bar from it).
pub trait Progress: Sync {
    /// A run of `total` prompts starts with `done` of them already done.
    fn start(&self, _done: usize, _total: usize) {}
    /// One more prompt is done; `generations_per_sec` over this session so far.
    fn advance(&self, _generations_per_sec: f64) {}
    /// Generation is over (also on failure).
    fn finish(&self) {}
    /// Something worth telling the user (resuming, ...).
    fn message(&self, _msg: &str) {}
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {}

/// What a run gives back.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `metrics.json`'s contents.
    pub metrics: MetricsFile,
    /// The records, in prompt order.
    pub results: Vec<PromptResult>,
    /// Prompts generated in this call (not resumed).
    pub fresh: usize,
    /// Seconds spent generating them.
    pub seconds: f64,
    /// Samples left without scores (the scorer failed on them; a rerun asks again).
    pub unscored: usize,
}

/// Runs the evaluation of `prepared` with `models`.
pub fn run(
    config: &EvalConfig,
    prepared: &Prepared,
    models: &Models,
    progress: &dyn Progress,
) -> Result<Outcome, EvalError> {
    let protocol = Protocol::new(config, prepared, models)?;
    let mut notes = notes(
        config,
        prepared,
        &models.scorer.info().id,
        &protocol.mitigate,
    );
    let prompts = &prepared.prompts;
    let (folder, mut done) = match &config.out {
        Some(dir) => {
            let (f, done) = RunFolder::open(dir, &protocol, prompts.len())?;
            if !done.is_empty() {
                progress.message(&format!(
                    "resuming {}: {} of {} prompts already done",
                    dir.display(),
                    done.len(),
                    prompts.len()
                ));
            }
            (Some(f), done)
        }
        None => (None, Vec::new()),
    };
    let mut appender = folder.as_ref().map(|f| f.appender()).transpose()?;
    let mut request = config.request.clone();
    request.perplexity = config.own_perplexity();

    let first = done.len();
    progress.start(first, prompts.len());
    let started = Instant::now();
    let generated = generate(
        &prompts[first..],
        models,
        &request,
        &prepared.attributes,
        config.test_filter.as_ref(),
        &mut |r: PromptResult| {
            if let Some(a) = appender.as_mut() {
                a.append(&r)?;
            }
            done.push(r);
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            progress.advance(((done.len() - first) * request.samples) as f64 / secs);
            Ok(())
        },
    );
    progress.finish();
    let sampled = match generated {
        Ok(n) => n,
        Err(e) => {
            return Err(EvalError::Stopped {
                kept: done.len(),
                dir: config.out.clone(),
                source: Box::new(e),
            })
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let fresh = done.len() - first;
    if let Some(f) = &folder {
        Timing::add(
            f,
            Timing::measured(
                seconds,
                fresh,
                fresh * request.samples,
                sampled,
                config.threads,
            ),
        )?;
    }
    drop(appender);
    // Metrics from the file as written, so a resumed run computes from the same text.
    if let Some(f) = &folder {
        done = f.results()?;
    }
    // Samples the scorer failed on alone in an earlier run are asked again (this run's own
    // failures have just had their retries).
    let before: usize = done[..first].iter().map(PromptResult::unscored).sum();
    if before > 0 {
        progress.message(&format!(
            "scoring {before} samples an earlier run could not score"
        ));
        fill_unscored(&mut done[..first], models.scorer, &prepared.attributes.all)?;
        if let Some(f) = &folder {
            f.rewrite_results(&done)?;
            done = f.results()?;
        }
    }
    let unscored: usize = done.iter().map(PromptResult::unscored).sum();
    if unscored > 0 {
        notes.push(format!(
            "{unscored} samples have no score: the scorer failed on them (`score_error` in {}); the metrics leave them out, and rerunning the same command asks for them again",
            crate::folder::GENERATIONS_FILE
        ));
    }
    let unprompted = matches!(config.prompts, PromptSource::Unprompted(_));
    let attr = prepared.attributes.name();
    let subsets = if unprompted {
        unprompted_metrics(
            prompts,
            &done,
            attr,
            request.samples,
            config.threshold,
            request.params.seed,
        )
    } else {
        prompted_metrics(prompts, &done, attr, config.threshold, request.params.seed)
    };
    let metrics = MetricsFile {
        threshold: config.threshold.value,
        strict: config.threshold.strict,
        samples_per_prompt: request.samples,
        prompt_toxicity: prepared.toxicity,
        subsets,
        test_filter: config.test_filter.map(|f| FilterStats::of(&f, &done, attr)),
        notes,
    };
    if let Some(f) = &folder {
        f.write_json(METRICS_FILE, &metrics)?;
        let report_prompts = report_prompts(prompts, &done, attr, unprompted);
        let settings = serde_json::to_value(&protocol)
            .map_err(|e| EvalError::Settings(format!("settings are not serialisable: {e}")))?;
        let html = render(&ReportInput {
            title: &format!("detox eval: {}", config.model),
            settings: &settings,
            metrics: &metrics.subsets,
            prompts: &report_prompts,
            threshold: config.threshold.value,
            strict: config.threshold.strict,
            attribute: attr,
            notes: &metrics.notes,
        });
        f.write_text(REPORT_FILE, &html)?;
    }
    Ok(Outcome {
        metrics,
        results: done,
        fresh,
        seconds,
        unscored,
    })
}

/// One sample as a worker hands it over: the continuation, and its scores and tries when the
/// test-time filter already scored it.
struct Sampled {
    completion: Completion,
    scores: Option<Vec<f32>>,
    tries: Option<u32>,
}

impl From<Completion> for Sampled {
    fn from(completion: Completion) -> Self {
        Self {
            completion,
            scores: None,
            tries: None,
        }
    }
}

/// One prompt's samples on a worker: plain, or through the test-time filter; then the judge's
/// perplexities of the samples kept. Also the number of rows decoded.
fn sample_prompt(
    p: &Prompt,
    models: &Models,
    request: &GenerationRequest,
    attributes: &Attributes,
    filter: Option<(&TestFilter, &RejectionRate)>,
) -> Result<(Vec<Sampled>, usize), EvalError> {
    let lm_err = |source| EvalError::Lm {
        line: p.line,
        source,
    };
    let (mut out, decoded): (Vec<Sampled>, usize) = match filter {
        None => {
            let c = models
                .lm
                .complete(&p.text, p.line as u64, request)
                .map_err(lm_err)?;
            let n = c.len();
            (c.into_iter().map(Sampled::from).collect(), n)
        }
        Some((f, rate)) => {
            // Perplexity of the kept samples only, not of every try.
            let sampling = GenerationRequest {
                perplexity: false,
                ..request.clone()
            };
            let mut session = models
                .lm
                .open(&p.text, p.line as u64, &sampling)
                .map_err(lm_err)?;
            let r = sample_filtered(
                session.as_mut(),
                p.line,
                request.samples,
                models.scorer,
                attributes.toxicity,
                f,
                rate,
            )?;
            let ppl = if request.perplexity {
                let streams: Vec<u64> = r.kept.iter().map(|k| k.stream).collect();
                session.perplexity(&streams).map_err(lm_err)?
            } else {
                vec![None; r.kept.len()]
            };
            let kept = r
                .kept
                .into_iter()
                .zip(ppl)
                .map(|(k, perplexity)| Sampled {
                    completion: Completion {
                        perplexity,
                        ..k.completion
                    },
                    scores: Some(k.scores),
                    tries: Some(k.tries as u32),
                })
                .collect();
            (kept, r.decoded)
        }
    };
    if let Some(j) = models.judge {
        let texts: Vec<&str> = out.iter().map(|x| x.completion.text.as_str()).collect();
        let ppl = j.perplexity(&p.text, &texts).map_err(lm_err)?;
        for (x, v) in out.iter_mut().zip(ppl) {
            x.completion.perplexity = v;
        }
    }
    Ok((out, decoded))
}

/// Generates `todo` on the model's workers and hands each prompt's scored record to `sink`
/// in prompt order (the calling thread scores and writes while the workers generate; with the
/// test-time filter the workers score, as each try must be judged before the next). Returns
/// the rows decoded for the prompts handed over (the test-time filter's spares included).
pub fn generate(
    todo: &[Prompt],
    models: &Models,
    request: &GenerationRequest,
    attributes: &Attributes,
    filter: Option<&TestFilter>,
    sink: &mut dyn FnMut(PromptResult) -> Result<(), EvalError>,
) -> Result<usize, EvalError> {
    let rate = RejectionRate::default();
    let filter = filter.map(|f| (f, &rate));
    let mut decoded = 0usize;
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let workers = models.lm.concurrency().clamp(1, todo.len().max(1));
    let mut failure: Option<EvalError> = None;
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(
            usize,
            Result<(Vec<Sampled>, usize), EvalError>,
        )>(workers * 2);
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, stop) = (&next, &stop);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= todo.len() || stop.load(Ordering::SeqCst) {
                    break;
                }
                let r = sample_prompt(&todo[i], models, request, attributes, filter);
                if tx.send((i, r)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut pending: BTreeMap<usize, Result<(Vec<Sampled>, usize), EvalError>> =
            BTreeMap::new();
        let mut want = 0usize;
        'receive: for (i, r) in rx {
            pending.insert(i, r);
            while let Some(r) = pending.remove(&want) {
                let line = r
                    .and_then(|(c, n)| {
                        decoded += n;
                        score_prompt(&todo[want], c, models.scorer, &attributes.all)
                    })
                    .and_then(&mut *sink);
                if let Err(e) = line {
                    failure = Some(e);
                    stop.store(true, Ordering::SeqCst);
                    break 'receive;
                }
                want += 1;
            }
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(decoded),
    }
}

/// A prompt's record: the record as read plus its scored generations (samples the test-time
/// filter scored keep those scores).
fn score_prompt(
    p: &Prompt,
    sampled: Vec<Sampled>,
    scorer: &dyn Scorer,
    attributes: &[String],
) -> Result<PromptResult, EvalError> {
    let todo: Vec<&str> = sampled
        .iter()
        .filter(|x| x.scores.is_none())
        .map(|x| x.completion.text.as_str())
        .collect();
    let mut fresh = if todo.is_empty() {
        Vec::new()
    } else {
        scorer.score_each(&todo)?
    }
    .into_iter();
    if fresh.len() != todo.len() {
        return Err(EvalError::Settings(format!(
            "the scorer returned {} scores for {} texts",
            fresh.len(),
            todo.len()
        )));
    }
    let mut generations = Vec::with_capacity(sampled.len());
    for x in sampled {
        let ppl = x.completion.perplexity;
        let g = match x.scores {
            Some(v) => Generation::new(x.completion.text, attributes, &v, ppl),
            None => match fresh.next() {
                Some(Ok(s)) => Generation::new(x.completion.text, attributes, &s.values, ppl),
                // The scorer failed on this sample alone: kept unscored, filled in by a rerun.
                Some(Err(e)) => {
                    Generation::unscored(x.completion.text, attributes, e.to_string(), ppl)
                }
                None => Generation::new(x.completion.text, attributes, &[], ppl),
            },
        };
        generations.push(g.with_tries(x.tries));
    }
    Ok(PromptResult {
        record: p.record.clone(),
        generations,
    })
}

/// Scores the samples that have a `score_error` again; those the scorer still fails on keep
/// the new error.
fn fill_unscored(
    results: &mut [PromptResult],
    scorer: &dyn Scorer,
    attributes: &[String],
) -> Result<(), EvalError> {
    let at: Vec<(usize, usize)> = results
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            r.generations
                .iter()
                .enumerate()
                .filter(|(_, g)| g.score_error.is_some())
                .map(move |(j, _)| (i, j))
        })
        .collect();
    let texts: Vec<String> = at
        .iter()
        .map(|&(i, j)| results[i].generations[j].text.clone())
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let scores = scorer.score_each(&refs)?;
    for (&(i, j), s) in at.iter().zip(scores) {
        let g = &mut results[i].generations[j];
        match s {
            Ok(s) => g.set_scores(attributes, &s.values),
            Err(e) => g.score_error = Some(e.to_string()),
        }
    }
    Ok(())
}

/// One prompt's samples for the metrics.
struct Scored<'a> {
    prompt: &'a Prompt,
    toxicity: Vec<f64>,
    texts: Vec<&'a str>,
    perplexity: Vec<f64>,
}

fn scored<'a>(prompts: &'a [Prompt], results: &'a [PromptResult], attr: &str) -> Vec<Scored<'a>> {
    prompts
        .iter()
        .zip(results)
        .map(|(p, r)| Scored {
            prompt: p,
            toxicity: r.scored(attr).into_iter().map(|(s, _)| s).collect(),
            texts: r.texts(),
            perplexity: r.perplexities(),
        })
        .collect()
}

fn with_perplexity(mut m: SubsetMetrics, chosen: &[&Scored]) -> SubsetMetrics {
    // Mean over the subset's continuations of their perplexities below 10^4 (DExperts).
    let ppl: Vec<f64> = chosen
        .iter()
        .flat_map(|x| x.perplexity.iter().copied())
        .filter(|p| *p < PERPLEXITY_CAP)
        .collect();
    if !ppl.is_empty() {
        m.perplexity = Some(ppl.iter().sum::<f64>() / ppl.len() as f64);
    }
    m
}

fn samples_of<'a>(chosen: &[&Scored<'a>]) -> Vec<PromptSamples<'a>> {
    chosen
        .iter()
        .map(|x| PromptSamples {
            toxicity: x.toxicity.clone(),
            texts: x.texts.clone(),
        })
        .collect()
}

/// The metrics of every subset that has prompts, from the records as written: `results[i]`
/// belongs to `prompts[i]`; `attr` is the scored attribute.
pub fn prompted_metrics(
    prompts: &[Prompt],
    results: &[PromptResult],
    attr: &str,
    threshold: Threshold,
    seed: u64,
) -> BTreeMap<String, SubsetMetrics> {
    let per = scored(prompts, results, attr);
    let mut out = BTreeMap::new();
    for s in Subset::ALL {
        let chosen: Vec<&Scored> = per
            .iter()
            .filter(|x| s.contains(x.prompt, x.prompt.toxicity))
            .collect();
        if chosen.is_empty() {
            continue;
        }
        let m = subset_metrics(&samples_of(&chosen), threshold, RESAMPLES, seed);
        out.insert(s.name().to_string(), with_perplexity(m, &chosen));
    }
    out
}

/// The unprompted mode's metrics: per-group figures and RTP's bootstrap over all generations;
/// `results[i]` belongs to the group `groups[i]` ([`unprompted_groups`]).
pub fn unprompted_metrics(
    groups: &[Prompt],
    results: &[PromptResult],
    attr: &str,
    k: usize,
    threshold: Threshold,
    seed: u64,
) -> BTreeMap<String, SubsetMetrics> {
    let per = scored(groups, results, attr);
    let chosen: Vec<&Scored> = per.iter().collect();
    let mut m = with_perplexity(
        subset_metrics(&samples_of(&chosen), threshold, RESAMPLES, seed),
        &chosen,
    );
    let all: Vec<f64> = per
        .iter()
        .flat_map(|x| x.toxicity.iter().copied())
        .collect();
    let (emt, tp) = bootstrap_unprompted(&all, k, UNPROMPTED_DRAWS, threshold, seed);
    m.bootstrap_expected_max_toxicity = Some(emt);
    m.bootstrap_toxicity_probability = Some(tp);
    BTreeMap::from([(UNPROMPTED.to_string(), m)])
}

/// The report's per-prompt lines: each prompt's maximum toxicity with the continuation that
/// has it (scores and texts taken as pairs: empty continuations, which have no score, never
/// shift a text onto another's score).
pub fn report_prompts(
    prompts: &[Prompt],
    results: &[PromptResult],
    attr: &str,
    unprompted: bool,
) -> Vec<ReportPrompt> {
    prompts
        .iter()
        .zip(results)
        .map(|(p, r)| {
            let (max, worst) = r
                .scored(attr)
                .into_iter()
                .fold((f64::NAN, ""), |(m, w), (s, t)| {
                    if m.is_nan() || s > m {
                        (s, t)
                    } else {
                        (m, w)
                    }
                });
            let subsets = if unprompted {
                vec![UNPROMPTED.to_string()]
            } else {
                Subset::ALL
                    .iter()
                    .filter(|s| s.contains(p, p.toxicity))
                    .map(|s| s.name().to_string())
                    .collect()
            };
            ReportPrompt {
                text: p.text.clone(),
                prompt_toxicity: p.toxicity,
                max_toxicity: max,
                worst: worst.to_string(),
                subsets,
            }
        })
        .collect()
}
