//! `detox compare`: finished eval runs side by side, with each run's difference from the first
//! (the baseline) estimated by a paired bootstrap over the prompts both runs share.
//!
//! [`load_run`] reads a run folder (`run.json`, `generations.jsonl`, `metrics.json`, and where
//! present `timing.json` and `metrics.json`'s `test_filter`); [`compare`] checks that the runs
//! measure the same thing (same prompts, subset, limit, samples, scorer and threshold; sampling
//! settings may differ and are listed) and builds a [`Comparison`]: per subset, each run's
//! figures as its `metrics.json` holds them and, per run after the first, the paired
//! differences. [`render_table`], [`render_markdown`] and [`render_html`] show it; the
//! [`Comparison`] itself serialises as the JSON output.
//!
//! The paired bootstrap: draw prompt indices with replacement (the same indices for both runs),
//! compute the metric of the run minus the metric of the baseline on the draw, and take the 2.5%
//! and 97.5% percentiles over the draws ([`crate::metrics::bootstrap_ci`] over pairs, so one draw
//! moves both runs together). The metrics are those of [`crate::metrics::subset_metrics`]: the
//! per-prompt maximum over the prompt's scored (non-empty) samples, toxic when it meets the
//! run's threshold, and the share of toxic samples.

use crate::error::EvalError;
use crate::folder::{read_complete, RunRecord, GENERATIONS_FILE, METRICS_FILE, RUN_FILE};
use crate::metrics::{bootstrap_ci, SubsetMetrics, Threshold};
use crate::prompts::{load_prompts, Prompt, Subset};
use crate::records::PromptResult;
use crate::report::{
    axes, drawable, escape, interval, num, opt, page_start, px, unit_ticks_y, Frame, MISSING,
};
use crate::run::{MetricsFile, PromptToxicity, Protocol, UNPROMPTED};
use crate::test_filter::FilterStats;
use crate::timing::{Timing, TIMING_FILE};
use detox_io::files::FileError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::fmt::{self, Write};
use std::path::{Path, PathBuf};

/// The order subsets are shown in; others follow by name.
const SUBSET_ORDER: [&str; 5] = ["full", "toxic", "nontoxic", "challenging", UNPROMPTED];

/// What goes wrong reading or comparing runs.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// No folder was named.
    #[error("nothing to compare: name at least one run folder")]
    NoRuns,
    /// A file a finished run has is not there.
    #[error("{}: {file} is missing (not a finished detox eval --out folder)", dir.display())]
    Missing {
        /// The run folder.
        dir: PathBuf,
        /// The file.
        file: &'static str,
    },
    /// A file is not what `detox eval` writes.
    #[error("{}: {message}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The run has fewer prompts done than it was started with.
    #[error("{}: unfinished: {done} of {} prompts in {GENERATIONS_FILE}; run the same detox eval again to finish it", dir.display(), total.map_or_else(|| "its".to_string(), |t| t.to_string()))]
    Unfinished {
        /// The run folder.
        dir: PathBuf,
        /// Prompts done.
        done: usize,
        /// Prompts of the run, where known.
        total: Option<usize>,
    },
    /// A run measures something else than the baseline.
    #[error("{} is not comparable with the baseline {}: {}; use --force to compare anyway", dir.display(), baseline.display(), list(differences))]
    NotComparable {
        /// The run folder.
        dir: PathBuf,
        /// The baseline's folder.
        baseline: PathBuf,
        /// The settings that differ.
        differences: Vec<SettingDifference>,
    },
    /// A run folder's file could not be read.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// A file could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
}

fn list(d: &[SettingDifference]) -> String {
    d.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One finished run folder, read.
#[derive(Debug, Clone)]
pub struct LoadedRun {
    /// The folder.
    pub dir: PathBuf,
    /// `run.json`'s settings.
    pub protocol: Protocol,
    /// `metrics.json`.
    pub metrics: MetricsFile,
    /// `timing.json`, if any.
    pub timing: Option<Timing>,
    /// `generations.jsonl`, in prompt order.
    pub results: Vec<PromptResult>,
}

fn read_json<T: DeserializeOwned>(
    dir: &Path,
    file: &'static str,
    what: &str,
) -> Result<T, CompareError> {
    let path = dir.join(file);
    if !path.exists() {
        return Err(CompareError::Missing {
            dir: dir.to_path_buf(),
            file,
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|error| FileError {
        action: "cannot read",
        path: path.clone(),
        error,
    })?;
    serde_json::from_str(&text).map_err(|e| CompareError::Malformed {
        path,
        message: format!("not {what}: {e}"),
    })
}

/// The prompts a run was started with, where they can be counted without its models: the
/// unprompted groups, or the prompt file (unchanged since the run) with its subset and limit
/// when the subset needs no scorer.
fn expected_prompts(p: &Protocol) -> Option<usize> {
    if let Some(n) = p.unprompted {
        return Some(n.div_ceil(p.samples.max(1)));
    }
    let path = match &p.prompts_sha256 {
        Some(hash) => {
            let path = PathBuf::from(&p.prompts);
            (detox_io::files::sha256_file(&path).ok()? == *hash).then_some(path)
        }
        None => None,
    };
    let subset = match &p.subset {
        Some(s) => Some(Subset::parse(s)?),
        None => None,
    };
    if matches!(subset, Some(Subset::Toxic | Subset::Nontoxic))
        && p.prompt_toxicity != PromptToxicity::File
    {
        return None;
    }
    let (mut prompts, _) = load_prompts(path.as_deref(), &p.field).ok()?;
    if let Some(s) = subset {
        prompts.retain(|x| s.contains(x, x.toxicity));
    }
    if let Some(n) = p.limit {
        prompts.truncate(n);
    }
    Some(prompts.len())
}

/// Reads a finished run folder: `run.json`, `generations.jsonl` and `metrics.json` must be
/// there and hold every prompt; `timing.json` and the test-filter figures are read where
/// present.
pub fn load_run(dir: &Path) -> Result<LoadedRun, CompareError> {
    if !dir.is_dir() {
        return Err(CompareError::Malformed {
            path: dir.to_path_buf(),
            message: "not a folder".into(),
        });
    }
    let run: RunRecord<Protocol> = read_json(dir, RUN_FILE, "the run.json detox eval writes")?;
    let protocol = run.protocol;
    let gens = dir.join(GENERATIONS_FILE);
    if !gens.exists() {
        return Err(CompareError::Missing {
            dir: dir.to_path_buf(),
            file: GENERATIONS_FILE,
        });
    }
    let (results, _) = read_complete(&gens)?;
    if !dir.join(METRICS_FILE).exists() {
        // metrics.json is written once every prompt is done.
        let total = expected_prompts(&protocol);
        if total.is_none_or(|t| results.len() < t) {
            return Err(CompareError::Unfinished {
                dir: dir.to_path_buf(),
                done: results.len(),
                total,
            });
        }
    }
    let value: Value = read_json(dir, METRICS_FILE, "JSON")?;
    let malformed = |e: serde_json::Error| CompareError::Malformed {
        path: dir.join(METRICS_FILE),
        message: format!("not the metrics.json detox eval writes: {e}"),
    };
    let metrics = MetricsFile::deserialize(&value).map_err(malformed)?;
    let total = metrics
        .subsets
        .get("full")
        .or_else(|| metrics.subsets.get(UNPROMPTED))
        .map(|m| m.prompts)
        .unwrap_or_else(|| {
            metrics
                .subsets
                .values()
                .map(|m| m.prompts)
                .max()
                .unwrap_or(0)
        });
    if results.len() < total {
        return Err(CompareError::Unfinished {
            dir: dir.to_path_buf(),
            done: results.len(),
            total: Some(total),
        });
    }
    if results.len() > total {
        return Err(CompareError::Malformed {
            path: gens,
            message: format!(
                "{} lines, but metrics.json counts {total} prompts",
                results.len()
            ),
        });
    }
    let timing = if dir.join(TIMING_FILE).exists() {
        Some(read_json(
            dir,
            TIMING_FILE,
            "the timing.json detox eval writes",
        )?)
    } else {
        None
    };
    Ok(LoadedRun {
        dir: dir.to_path_buf(),
        protocol,
        metrics,
        timing,
        results,
    })
}

/// A setting on which a run differs from the baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingDifference {
    /// The setting (`run.json`'s name).
    pub setting: String,
    /// The baseline's value.
    pub baseline: String,
    /// The run's value.
    pub run: String,
}

impl fmt::Display for SettingDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} differs ({} in the baseline, {} here)",
            self.setting, self.baseline, self.run
        )
    }
}

fn show<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        Ok(n @ Value::Number(_)) => param_value(&n).unwrap_or_else(|| n.to_string()),
        Ok(Value::Null) => "none".into(),
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

fn prompt_source(p: &Protocol) -> (String, String) {
    match &p.prompts_sha256 {
        Some(h) => (
            format!("sha256:{h}"),
            format!("{} (sha256 {})", p.prompts, h.get(..12).unwrap_or(h)),
        ),
        None => (p.prompts.clone(), p.prompts.clone()),
    }
}

/// The settings that decide what a run measures, where `run` differs from `base`: the prompts
/// (file hash, or the built-in set / unprompted), field, subset, limit, unprompted count,
/// samples, scorer and its identity, threshold and strictness.
pub fn protocol_differences(base: &Protocol, run: &Protocol) -> Vec<SettingDifference> {
    let (ka, sa) = prompt_source(base);
    let (kb, sb) = prompt_source(run);
    let mut out = differing(vec![("prompts", ka, kb)]);
    if let Some(d) = out.first_mut() {
        // Compared by hash; shown by name and hash.
        (d.baseline, d.run) = (sa, sb);
    }
    out.extend(differing(vec![
        ("field", show(&base.field), show(&run.field)),
        ("subset", show(&base.subset), show(&run.subset)),
        ("limit", show(&base.limit), show(&run.limit)),
        ("unprompted", show(&base.unprompted), show(&run.unprompted)),
        ("samples", show(&base.samples), show(&run.samples)),
        ("scorer", show(&base.scorer), show(&run.scorer)),
        (
            "scorer_identity",
            show(&base.scorer_identity),
            show(&run.scorer_identity),
        ),
        ("threshold", show(&base.threshold), show(&run.threshold)),
        ("strict", show(&base.strict), show(&run.strict)),
    ]));
    out
}

/// The settings whose two values (as shown: distinct values never show alike) differ.
fn differing(pairs: Vec<(&str, String, String)>) -> Vec<SettingDifference> {
    pairs
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(s, a, b)| SettingDifference {
            setting: s.into(),
            baseline: a,
            run: b,
        })
        .collect()
}

/// Sampling and perplexity settings where `run` differs from `base`: allowed (they are what a
/// comparison may vary) but listed in the notes.
pub fn sampling_differences(base: &Protocol, run: &Protocol) -> Vec<SettingDifference> {
    differing(vec![
        (
            "temperature",
            show(&base.temperature),
            show(&run.temperature),
        ),
        ("top_p", show(&base.top_p), show(&run.top_p)),
        ("top_k", show(&base.top_k), show(&run.top_k)),
        ("max_tokens", show(&base.max_tokens), show(&run.max_tokens)),
        ("seed", show(&base.seed), show(&run.seed)),
        (
            "judge_model",
            show(&base.judge_model),
            show(&run.judge_model),
        ),
        ("perplexity", show(&base.perplexity), show(&run.perplexity)),
    ])
}

/// Counts the methods record about themselves, not settings, left out of labels.
const DESCRIPTIVE_KEYS: [&str; 3] = ["prefixes", "words", "token_sequences"];

fn looks_like_path(s: &str) -> bool {
    s.contains('/') || s.contains('\\')
}

fn param_value(v: &Value) -> Option<String> {
    match v {
        // f32 settings are recorded as f64: show them in their f32 form (0.9, not 0.8999...).
        Value::Number(n) => n.as_f64().map(|x| {
            if n.is_f64() && f64::from(x as f32) == x {
                format!("{}", x as f32)
            } else if n.is_f64() {
                format!("{x}")
            } else {
                n.to_string()
            }
        }),
        Value::String(s) if !looks_like_path(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A mitigation as a label: `self-debias(lambda=50, epsilon=0.01)`; parameters that are paths,
/// hashes or counts are left out.
pub fn mitigation_label(m: &Value) -> String {
    let method = m["method"].as_str().unwrap_or("mitigation");
    let params: Vec<String> = m
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| {
            k.as_str() != "method"
                && !k.ends_with("sha256")
                && !DESCRIPTIVE_KEYS.contains(&k.as_str())
        })
        .filter_map(|(k, v)| param_value(v).map(|v| format!("{k}={v}")))
        .collect();
    if params.is_empty() {
        method.to_string()
    } else {
        format!("{method}({})", params.join(", "))
    }
}

/// A run's label: the model (a file or folder by its name) and its mitigations, e.g.
/// `smollm2 + self-debias(lambda=50, epsilon=0.01)`.
pub fn run_label(p: &Protocol) -> String {
    let m = p.model.trim_end_matches(['/', '\\']);
    let model = if m.starts_with("http://") || m.starts_with("https://") || !looks_like_path(m) {
        m.to_string()
    } else {
        Path::new(m)
            .file_name()
            .map_or_else(|| m.to_string(), |n| n.to_string_lossy().into_owned())
    };
    std::iter::once(model)
        .chain(p.mitigate.iter().map(mitigation_label))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Labels for the runs, equal ones told apart by their folder's name (or whole path).
fn labels(runs: &[LoadedRun]) -> Vec<String> {
    let base: Vec<String> = runs.iter().map(|r| run_label(&r.protocol)).collect();
    let count = |l: &String, v: &[String]| v.iter().filter(|x| *x == l).count();
    let named: Vec<String> = runs
        .iter()
        .zip(&base)
        .map(|(r, l)| {
            if count(l, &base) > 1 {
                let name = r.dir.file_name().map_or_else(
                    || r.dir.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                format!("{l} ({name})")
            } else {
                l.clone()
            }
        })
        .collect();
    runs.iter()
        .zip(&base)
        .zip(&named)
        .map(|((r, l), n)| {
            if count(n, &named) > 1 {
                format!("{l} ({})", r.dir.display())
            } else {
                n.clone()
            }
        })
        .collect()
}

/// The attribute the run's metrics use: `toxicity`, else the scorer's first attribute (as
/// `crate::run::Attributes::of` picks it), read off the generations' score names, which are in
/// the scorer's order. `tries` is the test filter's count, not a score.
fn metric_attribute(results: &[PromptResult]) -> Option<String> {
    let g = results.iter().find_map(|r| r.generations.first())?;
    let names: Vec<&str> = g
        .scores
        .iter()
        .map(|(a, _)| a.as_str())
        .filter(|a| *a != "tries")
        .collect();
    names
        .iter()
        .find(|a| **a == "toxicity")
        .or_else(|| names.first())
        .map(|a| a.to_string())
}

/// One prompt of one run, as the metrics see it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PromptStat {
    /// The maximum over the scored samples (`None`: none scored).
    max: Option<f64>,
    /// Whether that maximum is toxic.
    any_toxic: bool,
    /// Toxic scored samples.
    toxic: usize,
    /// Scored samples.
    scored: usize,
}

fn prompt_stats(results: &[PromptResult], attr: Option<&str>, t: Threshold) -> Vec<PromptStat> {
    results
        .iter()
        .map(|r| {
            let scores: Vec<f64> = attr
                .map(|a| r.scored(a).into_iter().map(|(s, _)| s).collect())
                .unwrap_or_default();
            // subset_metrics: the maximum folded from -inf, kept when finite.
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let max = max.is_finite().then_some(max);
            PromptStat {
                max,
                any_toxic: max.is_some_and(|m| t.toxic(m)),
                toxic: scores.iter().filter(|&&s| t.toxic(s)).count(),
                scored: scores.len(),
            }
        })
        .collect()
}

/// For each baseline prompt, the index of the same prompt (equal record) in `run`.
fn match_prompts(base: &[PromptResult], run: &[PromptResult]) -> Vec<Option<usize>> {
    if base.len() == run.len() && base.iter().zip(run).all(|(a, b)| a.record == b.record) {
        return (0..base.len()).map(Some).collect();
    }
    let key = |r: &PromptResult| serde_json::to_string(&r.record).unwrap_or_default();
    let mut by_key: HashMap<String, VecDeque<usize>> = HashMap::new();
    for (i, r) in run.iter().enumerate() {
        by_key.entry(key(r)).or_default().push_back(i);
    }
    base.iter()
        .map(|r| by_key.get_mut(&key(r)).and_then(VecDeque::pop_front))
        .collect()
}

/// A difference with its 95% paired-bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// Run minus baseline over all paired prompts.
    pub difference: f64,
    /// 95% percentile interval over the resamples.
    pub ci95: [f64; 2],
}

/// A run's paired difference from the baseline on one subset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedDifference {
    /// Prompts paired.
    pub prompts: usize,
    /// Prompts of the subset left out: no scored sample in one of the runs, or (with `--force`)
    /// not in the other run.
    pub left_out: usize,
    /// Expected maximum toxicity, run minus baseline.
    pub expected_max_toxicity: Estimate,
    /// Toxicity probability, run minus baseline.
    pub toxicity_probability: Estimate,
    /// Toxic fraction, run minus baseline.
    pub toxic_fraction: Estimate,
}

#[derive(Debug, Clone, Copy)]
struct Pair {
    base: PromptStat,
    run: PromptStat,
}

fn mean_by(d: &[&Pair], f: impl Fn(&Pair) -> f64) -> f64 {
    if d.is_empty() {
        f64::NAN
    } else {
        d.iter().map(|p| f(p)).sum::<f64>() / d.len() as f64
    }
}

fn fraction(d: &[&Pair], side: impl Fn(&Pair) -> PromptStat) -> f64 {
    let (t, n) = d.iter().fold((0usize, 0usize), |(t, n), p| {
        let s = side(p);
        (t + s.toxic, n + s.scored)
    });
    if n == 0 {
        f64::NAN
    } else {
        t as f64 / n as f64
    }
}

fn emt_diff(d: &[&Pair]) -> f64 {
    mean_by(d, |p| p.run.max.unwrap_or(f64::NAN)) - mean_by(d, |p| p.base.max.unwrap_or(f64::NAN))
}

fn tp_diff(d: &[&Pair]) -> f64 {
    mean_by(d, |p| f64::from(u8::from(p.run.any_toxic)))
        - mean_by(d, |p| f64::from(u8::from(p.base.any_toxic)))
}

fn tf_diff(d: &[&Pair]) -> f64 {
    fraction(d, |p| p.run) - fraction(d, |p| p.base)
}

/// The paired bootstrap: every statistic from the same draws of prompt indices (one seed).
fn paired_difference(
    pairs: &[Pair],
    left_out: usize,
    resamples: usize,
    seed: u64,
) -> PairedDifference {
    let all: Vec<&Pair> = pairs.iter().collect();
    let est = |f: fn(&[&Pair]) -> f64| Estimate {
        difference: f(&all),
        ci95: bootstrap_ci(pairs, f, resamples, seed),
    };
    PairedDifference {
        prompts: pairs.len(),
        left_out,
        expected_max_toxicity: est(emt_diff),
        toxicity_probability: est(tp_diff),
        toxic_fraction: est(tf_diff),
    }
}

/// How to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompareOptions {
    /// Compare runs whose settings differ (the differences go into the notes).
    pub force: bool,
    /// Bootstrap resamples of the intervals.
    pub resamples: usize,
    /// The bootstrap's seed.
    pub seed: u64,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            force: false,
            resamples: crate::run::RESAMPLES,
            seed: 0,
        }
    }
}

/// One run, as the comparison shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// Model and mitigations (made unique).
    pub label: String,
    /// The run folder.
    pub dir: String,
    /// The model as named.
    pub model: String,
    /// The mitigations with their parameters, as `run.json` records them.
    pub mitigate: Vec<Value>,
    /// The attribute the metrics use.
    pub attribute: Option<String>,
    /// Prompts of the run.
    pub prompts: usize,
    /// Samples per prompt.
    pub samples: usize,
    /// Kept samples per second of generation (from `timing.json`).
    pub generations_per_second: Option<f64>,
    /// Time per sample relative to the baseline: the baseline's generations/s divided by this
    /// run's (`None` when either has no `timing.json`).
    pub cost: Option<f64>,
    /// `timing.json`, if any.
    pub timing: Option<Timing>,
    /// The test filter's figures, if any.
    pub test_filter: Option<FilterStats>,
}

/// One run's line in a subset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubsetRow {
    /// Index into [`Comparison::runs`].
    pub run: usize,
    /// The run's figures as its `metrics.json` holds them (`None`: the run has no such subset).
    pub figures: Option<SubsetMetrics>,
    /// The paired difference from the baseline (`None` for the baseline and where none can be
    /// computed; the notes say why).
    pub difference: Option<PairedDifference>,
}

/// One subset across the runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubsetComparison {
    /// The subset's name.
    pub subset: String,
    /// One row per run, in the order given.
    pub rows: Vec<SubsetRow>,
}

/// Runs side by side: what `--format json` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Index of the baseline in `runs` (the first run).
    pub baseline: usize,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Bootstrap seed.
    pub seed: u64,
    /// The runs, in the order given.
    pub runs: Vec<RunSummary>,
    /// The subsets, in the protocol's order.
    pub subsets: Vec<SubsetComparison>,
    /// How the figures were obtained and what differs.
    pub notes: Vec<String>,
}

fn ordered_subsets(runs: &[LoadedRun]) -> Vec<String> {
    let mut names: Vec<String> = SUBSET_ORDER
        .iter()
        .filter(|n| runs.iter().any(|r| r.metrics.subsets.contains_key(**n)))
        .map(|n| n.to_string())
        .collect();
    let mut others: Vec<String> = runs
        .iter()
        .flat_map(|r| r.metrics.subsets.keys())
        .filter(|k| !SUBSET_ORDER.contains(&k.as_str()))
        .cloned()
        .collect();
    others.sort();
    others.dedup();
    names.extend(others);
    names
}

fn threshold_of(r: &LoadedRun) -> Threshold {
    Threshold {
        value: r.protocol.threshold,
        strict: r.protocol.strict,
    }
}

/// Compares `runs` (the first is the baseline). Runs whose protocol differs from the
/// baseline's are refused unless `options.force`.
pub fn compare(runs: &[LoadedRun], options: &CompareOptions) -> Result<Comparison, CompareError> {
    let base = runs.first().ok_or(CompareError::NoRuns)?;
    let labels = labels(runs);
    let mut notes = Vec::new();
    for (j, r) in runs.iter().enumerate().skip(1) {
        let differences = protocol_differences(&base.protocol, &r.protocol);
        if !differences.is_empty() {
            if !options.force {
                return Err(CompareError::NotComparable {
                    dir: r.dir.clone(),
                    baseline: base.dir.clone(),
                    differences,
                });
            }
            notes.push(format!(
                "Compared with --force: [{}] {}: {}.",
                j + 1,
                labels[j],
                list(&differences)
            ));
        }
        let sampling = sampling_differences(&base.protocol, &r.protocol);
        if !sampling.is_empty() {
            notes.push(format!("[{}] {}: {}.", j + 1, labels[j], list(&sampling)));
        }
    }
    let base_gps = base.timing.as_ref().and_then(Timing::generations_per_sec);
    let summaries: Vec<RunSummary> = runs
        .iter()
        .zip(&labels)
        .map(|(r, label)| {
            let gps = r.timing.as_ref().and_then(Timing::generations_per_sec);
            RunSummary {
                label: label.clone(),
                dir: r.dir.display().to_string(),
                model: r.protocol.model.clone(),
                mitigate: r.protocol.mitigate.clone(),
                attribute: metric_attribute(&r.results),
                prompts: r.results.len(),
                samples: r.protocol.samples,
                generations_per_second: gps,
                cost: match (base_gps, gps) {
                    (Some(b), Some(g)) if g > 0.0 => Some(b / g),
                    _ => None,
                },
                timing: r.timing.clone(),
                test_filter: r.metrics.test_filter.clone(),
            }
        })
        .collect();
    if runs.iter().any(|r| r.timing.is_none()) && runs.len() > 1 {
        let without: Vec<String> = runs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.timing.is_none())
            .map(|(j, _)| format!("[{}]", j + 1))
            .collect();
        notes.push(format!(
            "No {TIMING_FILE} in {}: no speed or cost for {}.",
            without.join(", "),
            if base.timing.is_none() {
                "any run"
            } else {
                "those runs"
            }
        ));
    }
    let stats: Vec<Vec<PromptStat>> = runs
        .iter()
        .zip(&summaries)
        .map(|(r, s)| prompt_stats(&r.results, s.attribute.as_deref(), threshold_of(r)))
        .collect();
    let base_prompts: Vec<Prompt> = base
        .results
        .iter()
        .enumerate()
        .map(|(i, r)| Prompt::from_record(i + 1, r.record.clone(), &base.protocol.field))
        .collect();
    let matches: Vec<Vec<Option<usize>>> = runs
        .iter()
        .map(|r| match_prompts(&base.results, &r.results))
        .collect();
    for (j, m) in matches.iter().enumerate().skip(1) {
        let missing = m.iter().filter(|x| x.is_none()).count();
        if missing > 0 {
            notes.push(format!(
                "[{}]: {missing} of the baseline's prompts are not among its prompts and are left out of its differences.",
                j + 1
            ));
        }
    }
    let unprompted = runs.iter().any(|r| r.protocol.unprompted.is_some());
    if unprompted && runs.len() > 1 {
        notes.push(
            "Unprompted runs have no shared prompts to pair: figures only, no paired differences."
                .into(),
        );
    }
    let scorer_split = runs.iter().any(|r| {
        matches!(
            r.metrics.prompt_toxicity,
            PromptToxicity::Scorer | PromptToxicity::Mixed
        )
    });
    let mut subsets = Vec::new();
    for name in ordered_subsets(runs) {
        let subset = Subset::parse(&name);
        let split_unknown =
            matches!(subset, Some(Subset::Toxic | Subset::Nontoxic)) && scorer_split;
        if split_unknown && runs.len() > 1 {
            notes.push(format!(
                "{name}: prompt toxicity came from the scorer for some prompts, and generations.jsonl does not keep it, so which prompts are {name} is unknown here: figures only, no paired differences."
            ));
        }
        let mut rows = Vec::new();
        for (j, r) in runs.iter().enumerate() {
            let figures = r.metrics.subsets.get(&name).cloned();
            let difference = match subset {
                Some(s) if j > 0 && !unprompted && !split_unknown => {
                    let mut pairs = Vec::new();
                    let mut left_out = 0usize;
                    for (i, p) in base_prompts.iter().enumerate() {
                        if !s.contains(p, p.toxicity) {
                            continue;
                        }
                        match matches[j][i].map(|k| (stats[0][i], stats[j][k])) {
                            Some((b, x)) if b.max.is_some() && x.max.is_some() => {
                                pairs.push(Pair { base: b, run: x })
                            }
                            _ => left_out += 1,
                        }
                    }
                    if left_out > 0 {
                        notes.push(format!(
                            "{name}: {left_out} prompt(s) left out of the pairing of [{}] with [1] (no scored sample in one of the runs, or not in both).",
                            j + 1
                        ));
                    }
                    (!pairs.is_empty()).then(|| {
                        paired_difference(&pairs, left_out, options.resamples, options.seed)
                    })
                }
                _ => None,
            };
            rows.push(SubsetRow {
                run: j,
                figures,
                difference,
            });
        }
        subsets.push(SubsetComparison { subset: name, rows });
    }
    if runs.len() > 1 && !unprompted {
        notes.push(format!(
            "Δ: run minus baseline [1] over the prompts both runs have, with a 95% paired bootstrap interval ({} resamples of prompts, seed {}).",
            options.resamples, options.seed
        ));
    }
    Ok(Comparison {
        baseline: 0,
        resamples: options.resamples,
        seed: options.seed,
        runs: summaries,
        subsets,
        notes,
    })
}

fn signed(x: f64) -> String {
    if x.is_finite() {
        format!("{x:+.3}")
    } else {
        MISSING.to_string()
    }
}

fn signed_interval(c: [f64; 2]) -> String {
    if c[0].is_finite() && c[1].is_finite() {
        format!("[{:+.3}, {:+.3}]", c[0], c[1])
    } else {
        MISSING.to_string()
    }
}

fn speed(s: &RunSummary) -> String {
    opt(s.generations_per_second, 2)
}

fn cost(s: &RunSummary) -> String {
    s.cost
        .map_or_else(|| MISSING.to_string(), |c| format!("{}x", num(c, 2)))
}

fn test_filter_text(t: &Option<FilterStats>) -> String {
    match t {
        Some(t) => format!(
            "accepted {:.1}%, first try {:.1}%, +{} tries/sample",
            t.accepted * 100.0,
            t.first_try_accepted * 100.0,
            num(t.extra_generations, 2)
        ),
        None => MISSING.to_string(),
    }
}

/// The terminal table: the runs, then one block per subset with each run's figures and, under
/// each run after the first, its paired difference from the baseline.
pub fn render_table(c: &Comparison) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_table(&mut out, c);
    out
}

fn write_table(out: &mut String, c: &Comparison) -> fmt::Result {
    writeln!(out, "Runs (baseline: [1])")?;
    writeln!(
        out,
        "{:<5} {:<46} {:>8} {:>7}  test filter",
        "run", "label", "gen/s", "cost"
    )?;
    for (j, r) in c.runs.iter().enumerate() {
        writeln!(
            out,
            "{:<5} {:<46} {:>8} {:>7}  {}",
            format!("[{}]", j + 1),
            r.label,
            speed(r),
            cost(r),
            test_filter_text(&r.test_filter)
        )?;
        writeln!(out, "{:<5} {}", "", r.dir)?;
    }
    for s in &c.subsets {
        writeln!(out)?;
        writeln!(out, "{}", s.subset)?;
        writeln!(
            out,
            "{:<7} {:>7} {:>8} {:<18} {:>8} {:<18} {:>8} {:>9} {:>6} {:>6} {:>6}",
            "run",
            "prompts",
            "exp.max",
            "  95% CI",
            "tox.prob",
            "  95% CI",
            "toxic fr",
            "ppl",
            "dist-1",
            "dist-2",
            "dist-3"
        )?;
        for row in &s.rows {
            let label = format!("[{}]", row.run + 1);
            match &row.figures {
                Some(m) => writeln!(
                    out,
                    "{:<7} {:>7} {:>8} {:<18} {:>8} {:<18} {:>8} {:>9} {:>6} {:>6} {:>6}",
                    label,
                    m.prompts,
                    num(m.expected_max_toxicity, 3),
                    format!("  {}", interval(m.expected_max_toxicity_ci95, 3)),
                    num(m.toxicity_probability, 3),
                    format!("  {}", interval(m.toxicity_probability_ci95, 3)),
                    num(m.toxic_fraction, 3),
                    opt(m.perplexity, 2),
                    opt(m.dist_1, 3),
                    opt(m.dist_2, 3),
                    opt(m.dist_3, 3)
                )?,
                None => writeln!(out, "{label:<7} (no {} subset)", s.subset)?,
            }
            if let Some(d) = &row.difference {
                writeln!(
                    out,
                    "{:<7} {:>7} {:>8} {:<18} {:>8} {:<18} {:>8} {}",
                    format!("  Δ[{}]", row.run + 1),
                    d.prompts,
                    signed(d.expected_max_toxicity.difference),
                    format!("  {}", signed_interval(d.expected_max_toxicity.ci95)),
                    signed(d.toxicity_probability.difference),
                    format!("  {}", signed_interval(d.toxicity_probability.ci95)),
                    signed(d.toxic_fraction.difference),
                    signed_interval(d.toxic_fraction.ci95)
                )?;
            }
        }
    }
    if !c.notes.is_empty() {
        writeln!(out)?;
    }
    for n in &c.notes {
        writeln!(out, "note: {n}")?;
    }
    Ok(())
}

/// Escapes text for a markdown table cell.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// GitHub-flavoured markdown: a table of the runs, a table per subset, the notes.
pub fn render_markdown(c: &Comparison) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_markdown(&mut out, c);
    out
}

fn figure_cells(m: &Option<SubsetMetrics>) -> [String; 8] {
    match m {
        Some(m) => [
            m.prompts.to_string(),
            format!(
                "{} {}",
                num(m.expected_max_toxicity, 3),
                interval(m.expected_max_toxicity_ci95, 3)
            ),
            format!(
                "{} {}",
                num(m.toxicity_probability, 3),
                interval(m.toxicity_probability_ci95, 3)
            ),
            num(m.toxic_fraction, 3),
            opt(m.perplexity, 2),
            opt(m.dist_1, 3),
            opt(m.dist_2, 3),
            opt(m.dist_3, 3),
        ],
        None => std::array::from_fn(|_| MISSING.to_string()),
    }
}

fn difference_cells(d: &Option<PairedDifference>) -> [String; 3] {
    match d {
        Some(d) => [
            &d.expected_max_toxicity,
            &d.toxicity_probability,
            &d.toxic_fraction,
        ]
        .map(|e| format!("{} {}", signed(e.difference), signed_interval(e.ci95))),
        None => std::array::from_fn(|_| MISSING.to_string()),
    }
}

const SUBSET_HEADERS: [&str; 13] = [
    "Run",
    "Prompts",
    "Exp. max toxicity [95% CI]",
    "Δ [95% CI]",
    "Toxicity prob. [95% CI]",
    "Δ [95% CI]",
    "Toxic fraction",
    "Δ [95% CI]",
    "Perplexity",
    "dist-1",
    "dist-2",
    "dist-3",
    "Paired",
];

fn subset_cells(c: &Comparison, row: &SubsetRow) -> Vec<String> {
    let f = figure_cells(&row.figures);
    let d = difference_cells(&row.difference);
    vec![
        format!("[{}] {}", row.run + 1, c.runs[row.run].label),
        f[0].clone(),
        f[1].clone(),
        d[0].clone(),
        f[2].clone(),
        d[1].clone(),
        f[3].clone(),
        d[2].clone(),
        f[4].clone(),
        f[5].clone(),
        f[6].clone(),
        f[7].clone(),
        row.difference
            .as_ref()
            .map_or_else(|| MISSING.to_string(), |d| d.prompts.to_string()),
    ]
}

fn run_cells(j: usize, r: &RunSummary) -> Vec<String> {
    vec![
        format!("[{}]", j + 1),
        r.label.clone(),
        speed(r),
        cost(r),
        test_filter_text(&r.test_filter),
        r.dir.clone(),
    ]
}

const RUN_HEADERS: [&str; 6] = [
    "Run",
    "Label",
    "Generations/s",
    "Cost",
    "Test filter",
    "Folder",
];

fn write_markdown(out: &mut String, c: &Comparison) -> fmt::Result {
    let row = |out: &mut String, cells: &[String]| -> fmt::Result {
        let cells: Vec<String> = cells.iter().map(|x| md_cell(x)).collect();
        writeln!(out, "| {} |", cells.join(" | "))
    };
    let header = |out: &mut String, h: &[&str]| -> fmt::Result {
        writeln!(out, "| {} |", h.join(" | "))?;
        writeln!(out, "|{}", "---|".repeat(h.len()))
    };
    writeln!(out, "## Runs")?;
    writeln!(out)?;
    header(out, &RUN_HEADERS)?;
    for (j, r) in c.runs.iter().enumerate() {
        row(out, &run_cells(j, r))?;
    }
    for s in &c.subsets {
        writeln!(out)?;
        writeln!(out, "## {}", md_cell(&s.subset))?;
        writeln!(out)?;
        header(out, &SUBSET_HEADERS)?;
        for r in &s.rows {
            row(out, &subset_cells(c, r))?;
        }
    }
    if !c.notes.is_empty() {
        writeln!(out)?;
        for n in &c.notes {
            writeln!(out, "- {}", md_cell(n))?;
        }
    }
    Ok(())
}

/// The colour of a subset's points.
fn subset_colour(name: &str) -> &'static str {
    match name {
        "toxic" => "#c0392b",
        "nontoxic" => "#2471a3",
        "challenging" => "#8e44ad",
        UNPROMPTED => "#1e8449",
        _ => "#4d4d4d",
    }
}

/// A subset's marker attributes: filled dots, except the challenging prompts, a ring around
/// the dot (they are often the same prompts as the toxic subset, and would hide its points).
fn subset_marker(name: &str, r: f64) -> String {
    let c = subset_colour(name);
    if name == "challenging" {
        format!(
            "r=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"",
            px(r + 2.5)
        )
    } else {
        format!("r=\"{}\" fill=\"{c}\"", px(r))
    }
}

const PLOT: Frame = Frame {
    w: 640.0,
    h: 440.0,
    left: 60.0,
    right: 150.0,
    top: 16.0,
    bottom: 46.0,
};

/// A "nice" tick step for a range of width `span` (about five ticks).
fn tick_step(span: f64) -> f64 {
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// One point of the scatter: (run, subset, perplexity, expected maximum toxicity).
type Point<'a> = (usize, &'a str, f64, f64);

fn plot_points(c: &Comparison) -> (Vec<Point<'_>>, Vec<usize>) {
    let mut points = Vec::new();
    let mut missing = Vec::new();
    for j in 0..c.runs.len() {
        let mut any = false;
        for s in &c.subsets {
            let Some(m) = s
                .rows
                .iter()
                .find(|r| r.run == j)
                .and_then(|r| r.figures.as_ref())
            else {
                continue;
            };
            if let Some(p) = m.perplexity.filter(|p| p.is_finite()) {
                if drawable(m.expected_max_toxicity) {
                    points.push((j, s.subset.as_str(), p, m.expected_max_toxicity));
                    any = true;
                }
            }
        }
        if !any {
            missing.push(j);
        }
    }
    (points, missing)
}

fn write_scatter(out: &mut String, c: &Comparison) -> fmt::Result {
    writeln!(out, "<h2>Expected maximum toxicity against perplexity</h2>")?;
    let (points, missing) = plot_points(c);
    if points.is_empty() {
        writeln!(
            out,
            "<p class=\"muted\">No run has a perplexity, so there is nothing to plot.</p>"
        )?;
    } else {
        let lo = points.iter().map(|p| p.2).fold(f64::INFINITY, f64::min);
        let hi = points.iter().map(|p| p.2).fold(f64::NEG_INFINITY, f64::max);
        let span = if hi > lo {
            hi - lo
        } else {
            lo.abs().max(1.0) * 0.2
        };
        let step = tick_step(span);
        let x_lo = ((lo - span * 0.05) / step).floor() * step;
        let x_hi = ((hi + span * 0.05) / step).ceil() * step;
        let x_hi = if x_hi > x_lo { x_hi } else { x_lo + step };
        let unit = |v: f64| (v - x_lo) / (x_hi - x_lo);
        let f = PLOT;
        writeln!(out, "<figure>")?;
        writeln!(
            out,
            "<svg class=\"compare-scatter\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" role=\"img\" font-family=\"system-ui, sans-serif\" aria-label=\"Expected maximum toxicity against perplexity\">",
            f.w, f.h, f.w, f.h
        )?;
        unit_ticks_y(out, &f)?;
        let ticks = ((x_hi - x_lo) / step).round() as usize;
        for i in 0..=ticks {
            let v = x_lo + i as f64 * step;
            let x = px(f.x(unit(v)));
            writeln!(
                out,
                "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#333\"/>",
                px(f.y0()),
                px(f.y0() + 5.0)
            )?;
            writeln!(
                out,
                "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\" font-size=\"12\">{}</text>",
                px(f.y0() + 19.0),
                num(v, if step < 1.0 { 2 } else { 0 })
            )?;
        }
        axes(
            out,
            &f,
            "perplexity of the continuations",
            "expected maximum toxicity",
        )?;
        writeln!(out, "<g class=\"points\" data-points=\"{}\">", points.len())?;
        for (j, subset, x, y) in &points {
            let (cx, cy) = (f.x(unit(*x)), f.y(*y));
            writeln!(
                out,
                "<circle class=\"point\" data-run=\"{}\" data-subset=\"{}\" cx=\"{}\" cy=\"{}\" {}><title>[{}] {} · {}: perplexity {}, expected max. toxicity {}</title></circle>",
                j + 1,
                escape(subset),
                px(cx),
                px(cy),
                subset_marker(subset, 4.5),
                j + 1,
                escape(&c.runs[*j].label),
                escape(subset),
                num(*x, 2),
                num(*y, 3)
            )?;
            writeln!(
                out,
                "<text x=\"{}\" y=\"{}\" font-size=\"11\">[{}]</text>",
                px(cx + 6.0),
                px(cy - 5.0),
                j + 1
            )?;
        }
        writeln!(out, "</g>")?;
        let lx = f.x1() + 16.0;
        let mut shown: Vec<&str> = Vec::new();
        for p in &points {
            if !shown.contains(&p.1) {
                shown.push(p.1);
            }
        }
        for (i, s) in shown.iter().enumerate() {
            let y = f.top + 8.0 + i as f64 * 22.0;
            writeln!(
                out,
                "<circle cx=\"{}\" cy=\"{}\" {}/>",
                px(lx + 6.0),
                px(y + 6.0),
                subset_marker(s, 5.0)
            )?;
            writeln!(
                out,
                "<text x=\"{}\" y=\"{}\" font-size=\"12\">{}</text>",
                px(lx + 18.0),
                px(y + 10.0),
                escape(s)
            )?;
        }
        writeln!(out, "</svg>")?;
        write!(
            out,
            "<figcaption>One point per run and subset, coloured by subset and labelled by run: "
        )?;
        let names: Vec<String> = c
            .runs
            .iter()
            .enumerate()
            .map(|(j, r)| format!("[{}] {}", j + 1, escape(&r.label)))
            .collect();
        write!(out, "{}.", names.join("; "))?;
        writeln!(out, "</figcaption>")?;
        writeln!(out, "</figure>")?;
    }
    if !missing.is_empty() {
        let names: Vec<String> = missing
            .iter()
            .map(|&j| format!("[{}] {}", j + 1, escape(&c.runs[j].label)))
            .collect();
        writeln!(
            out,
            "<p class=\"muted not-plotted\">Not plotted (no perplexity): {}.</p>",
            names.join("; ")
        )?;
    }
    Ok(())
}

/// A table (scrolling sideways when wider than the page); the columns in `text` are left
/// aligned, the rest are figures.
fn html_table(
    out: &mut String,
    headers: &[&str],
    rows: &[Vec<String>],
    text: &[usize],
) -> fmt::Result {
    writeln!(out, "<div class=\"wide\"><table>")?;
    write!(out, "<thead><tr>")?;
    for h in headers {
        write!(out, "<th>{}</th>", escape(h))?;
    }
    writeln!(out, "</tr></thead>")?;
    writeln!(out, "<tbody>")?;
    for r in rows {
        write!(out, "<tr>")?;
        for (i, cell) in r.iter().enumerate() {
            let class = if text.contains(&i) {
                ""
            } else {
                " class=\"n\""
            };
            write!(out, "<td{class}>{}</td>", escape(cell))?;
        }
        writeln!(out, "</tr>")?;
    }
    writeln!(out, "</tbody>")?;
    writeln!(out, "</table></div>")
}

/// A standalone HTML page: the notes, the tables and an SVG scatter of expected maximum
/// toxicity against perplexity (one point per run and subset). Same input, same bytes.
pub fn render_html(c: &Comparison) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_html(&mut out, c);
    out
}

fn write_html(out: &mut String, c: &Comparison) -> fmt::Result {
    page_start(
        out,
        "detox compare",
        "body{max-width:1400px}.wide{overflow-x:auto}",
    )?;
    if !c.notes.is_empty() {
        writeln!(out, "<ul class=\"notes\">")?;
        for n in &c.notes {
            writeln!(out, "<li>{}</li>", escape(n))?;
        }
        writeln!(out, "</ul>")?;
    }
    writeln!(out, "<h2>Runs</h2>")?;
    let rows: Vec<Vec<String>> = c
        .runs
        .iter()
        .enumerate()
        .map(|(j, r)| run_cells(j, r))
        .collect();
    html_table(out, &RUN_HEADERS, &rows, &[0, 1, 4, 5])?;
    for s in &c.subsets {
        writeln!(out, "<h2>{}</h2>", escape(&s.subset))?;
        // Runs by number here: the runs table above gives their labels.
        let rows: Vec<Vec<String>> = s
            .rows
            .iter()
            .map(|r| {
                let mut cells = subset_cells(c, r);
                cells[0] = format!("[{}]", r.run + 1);
                cells
            })
            .collect();
        html_table(out, &SUBSET_HEADERS, &rows, &[0])?;
    }
    write_scatter(out, c)?;
    writeln!(out, "</body>")?;
    writeln!(out, "</html>")
}

/// Writes the HTML page atomically.
pub fn write_html_file(path: &Path, c: &Comparison) -> Result<(), CompareError> {
    Ok(detox_io::files::write_atomic(
        path,
        render_html(c).as_bytes(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folder::RunFolder;
    use crate::prompts::read_prompts;
    use crate::records::Generation;
    use crate::run::prompted_metrics;
    use detox_core::rng::SplitMix64;
    use serde_json::json;

    const N: usize = 24;
    const K: usize = 3;

    fn protocol() -> Protocol {
        Protocol {
            prompts: "prompts.jsonl".into(),
            prompts_sha256: Some("ab".repeat(32)),
            field: "prompt.text".into(),
            subset: None,
            limit: None,
            unprompted: None,
            prompt_toxicity: PromptToxicity::File,
            model: "smollm2".into(),
            model_identity: json!({"kind": "test"}),
            mitigate: Vec::new(),
            weights: "f32".into(),
            judge_model: None,
            judge_identity: None,
            perplexity: true,
            scorer: "tox".into(),
            scorer_description: "a test scorer".into(),
            scorer_identity: json!({"sha256": "cd"}),
            samples: K,
            temperature: 1.0,
            top_p: f64::from(0.9f32),
            top_k: 0,
            max_tokens: 20,
            seed: 0,
            threshold: 0.5,
            strict: false,
            detox_version: "test".into(),
        }
    }

    /// N prompts, alternately toxic and not (file scores), every third one challenging.
    fn prompts() -> Vec<Prompt> {
        let text: String = (0..N)
            .map(|i| {
                format!(
                    "{}\n",
                    json!({"prompt": {"text": format!("prompt {i}"), "toxicity": if i % 2 == 0 { 0.8 } else { 0.1 }}, "challenging": i % 3 == 0})
                )
            })
            .collect();
        read_prompts(text.as_bytes(), detox_io::Format::Jsonl, "prompt.text", "t")
            .unwrap()
            .0
    }

    /// Seeded scores; `shift` moves every score (clamped to [0, 1]).
    fn scores(seed: u64, shift: f64) -> Vec<Vec<f64>> {
        let mut rng = SplitMix64::new(seed);
        (0..N)
            .map(|_| {
                (0..K)
                    .map(|_| (rng.unit() * 0.9 + shift).clamp(0.0, 1.0))
                    .collect()
            })
            .collect()
    }

    /// Writes a finished run folder with the library's own types and metrics.
    fn write_run(
        dir: &Path,
        p: &Protocol,
        scores: &[Vec<f64>],
        ppl: Option<f64>,
        timing: Option<Timing>,
    ) -> PathBuf {
        let prompts = prompts();
        let (folder, _) = RunFolder::open(dir, p, prompts.len()).unwrap();
        let mut a = folder.appender().unwrap();
        let attrs = vec!["toxicity".to_string(), "insult".to_string()];
        for (pr, s) in prompts.iter().zip(scores) {
            let generations = s
                .iter()
                .enumerate()
                .map(|(k, &v)| {
                    // An empty continuation has no score in the metrics.
                    let text = if k == 1 && pr.line == 5 {
                        "  "
                    } else {
                        " words"
                    };
                    Generation::new(text.into(), &attrs, &[v as f32, 0.0], ppl)
                })
                .collect();
            a.append(&PromptResult {
                record: pr.record.clone(),
                generations,
            })
            .unwrap();
        }
        let results = folder.results().unwrap();
        let threshold = Threshold {
            value: p.threshold,
            strict: p.strict,
        };
        let metrics = MetricsFile {
            threshold: p.threshold,
            strict: p.strict,
            samples_per_prompt: p.samples,
            prompt_toxicity: p.prompt_toxicity,
            subsets: prompted_metrics(&prompts, &results, "toxicity", threshold, 1),
            test_filter: None,
            notes: Vec::new(),
        };
        folder.write_json(METRICS_FILE, &metrics).unwrap();
        if let Some(t) = timing {
            folder.write_json(TIMING_FILE, &t).unwrap();
        }
        dir.to_path_buf()
    }

    fn timing(seconds: f64) -> Timing {
        Timing {
            seconds,
            prompts: N,
            generations: N * K,
            sampled: N * K,
            cpu: "test cpu".into(),
            avx512: false,
            threads: 2,
        }
    }

    fn load(dirs: &[&Path]) -> Vec<LoadedRun> {
        dirs.iter().map(|d| load_run(d).unwrap()).collect()
    }

    fn two_runs(tmp: &Path) -> Vec<LoadedRun> {
        let mut p2 = protocol();
        p2.mitigate =
            vec![json!({"method": "self-debias", "lambda": 50.0, "epsilon": 0.01, "prefixes": 6})];
        let a = write_run(
            &tmp.join("a"),
            &protocol(),
            &scores(1, 0.0),
            Some(20.0),
            Some(timing(10.0)),
        );
        let b = write_run(
            &tmp.join("b"),
            &p2,
            &scores(2, -0.2),
            Some(25.0),
            Some(timing(40.0)),
        );
        load(&[&a, &b])
    }

    #[test]
    fn paired_point_estimate_is_the_difference_of_the_metrics() {
        let tmp = tempfile::tempdir().unwrap();
        let runs = two_runs(tmp.path());
        let c = compare(&runs, &CompareOptions::default()).unwrap();
        let names: Vec<&str> = c.subsets.iter().map(|s| s.subset.as_str()).collect();
        assert_eq!(names, ["full", "toxic", "nontoxic", "challenging"]);
        for s in &c.subsets {
            let base = &runs[0].metrics.subsets[&s.subset];
            let run = &runs[1].metrics.subsets[&s.subset];
            assert!(s.rows[0].difference.is_none());
            let d = s.rows[1].difference.as_ref().unwrap();
            assert_eq!(d.prompts, base.prompts, "{}", s.subset);
            let pairs = [
                (
                    &d.expected_max_toxicity,
                    run.expected_max_toxicity - base.expected_max_toxicity,
                ),
                (
                    &d.toxicity_probability,
                    run.toxicity_probability - base.toxicity_probability,
                ),
                (&d.toxic_fraction, run.toxic_fraction - base.toxic_fraction),
            ];
            for (e, want) in pairs {
                assert!(
                    (e.difference - want).abs() < 1e-12,
                    "{}: {e:?} vs {want}",
                    s.subset
                );
                assert!(
                    e.ci95[0] <= e.difference && e.difference <= e.ci95[1],
                    "{e:?}"
                );
                assert!(e.ci95[0] < e.ci95[1], "a real interval: {e:?}");
            }
        }
        // The run is shifted down by 0.2: clearly less toxic.
        let full = c.subsets[0].rows[1].difference.as_ref().unwrap();
        assert!(full.expected_max_toxicity.ci95[1] < 0.0, "{full:?}");
        // Seeded: the same seed gives the same intervals, another seed others.
        assert_eq!(c, compare(&runs, &CompareOptions::default()).unwrap());
        let other = compare(
            &runs,
            &CompareOptions {
                seed: 7,
                ..CompareOptions::default()
            },
        )
        .unwrap();
        let o = other.subsets[0].rows[1].difference.as_ref().unwrap();
        assert_eq!(
            o.expected_max_toxicity.difference,
            full.expected_max_toxicity.difference
        );
        assert_ne!(
            o.expected_max_toxicity.ci95,
            full.expected_max_toxicity.ci95
        );
    }

    #[test]
    fn identical_runs_differ_by_exactly_zero() {
        let tmp = tempfile::tempdir().unwrap();
        let a = write_run(
            &tmp.path().join("a"),
            &protocol(),
            &scores(3, 0.0),
            None,
            None,
        );
        let b = write_run(
            &tmp.path().join("b"),
            &protocol(),
            &scores(3, 0.0),
            None,
            None,
        );
        let c = compare(&load(&[&a, &b]), &CompareOptions::default()).unwrap();
        for s in &c.subsets {
            let d = s.rows[1].difference.as_ref().unwrap();
            for e in [
                &d.expected_max_toxicity,
                &d.toxicity_probability,
                &d.toxic_fraction,
            ] {
                assert_eq!((e.difference, e.ci95), (0.0, [0.0, 0.0]), "{}", s.subset);
            }
        }
        // Equal labels are told apart by folder name.
        assert_eq!(c.runs[0].label, "smollm2 (a)");
        assert_eq!(c.runs[1].label, "smollm2 (b)");
    }

    #[test]
    fn a_different_protocol_is_refused_by_name_unless_forced() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p2 = protocol();
        p2.limit = Some(N);
        p2.temperature = 0.7;
        let a = write_run(
            &tmp.path().join("a"),
            &protocol(),
            &scores(1, 0.0),
            None,
            None,
        );
        let b = write_run(&tmp.path().join("b"), &p2, &scores(2, 0.0), None, None);
        let runs = load(&[&a, &b]);
        let e = compare(&runs, &CompareOptions::default()).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(&e, CompareError::NotComparable { differences, .. } if differences.len() == 1 && differences[0].setting == "limit"),
            "{msg}"
        );
        assert!(
            msg.contains("limit differs (none in the baseline, 24 here)"),
            "{msg}"
        );
        assert!(msg.contains("--force"), "{msg}");
        let c = compare(
            &runs,
            &CompareOptions {
                force: true,
                ..CompareOptions::default()
            },
        )
        .unwrap();
        assert!(
            c.notes
                .iter()
                .any(|n| n.contains("--force") && n.contains("limit")),
            "{:?}",
            c.notes
        );
        // Sampling settings may differ, and are listed.
        assert!(
            c.notes
                .iter()
                .any(|n| n.contains("temperature differs (1 in the baseline, 0.7 here)")),
            "{:?}",
            c.notes
        );
        // Other refusals: the prompt file's hash, the scorer's identity.
        let mut p3 = protocol();
        p3.prompts_sha256 = Some("ef".repeat(32));
        p3.scorer_identity = json!({"sha256": "other"});
        let d = protocol_differences(&protocol(), &p3);
        let names: Vec<&str> = d.iter().map(|x| x.setting.as_str()).collect();
        assert_eq!(names, ["prompts", "scorer_identity"]);
        assert!(protocol_differences(&protocol(), &protocol()).is_empty());
    }

    #[test]
    fn cost_comes_from_timing_json() {
        let tmp = tempfile::tempdir().unwrap();
        let mut runs = two_runs(tmp.path());
        let c = compare(&runs, &CompareOptions::default()).unwrap();
        assert_eq!(
            c.runs[0].generations_per_second,
            Some((N * K) as f64 / 10.0)
        );
        assert_eq!(c.runs[0].cost, Some(1.0));
        assert_eq!(c.runs[1].cost, Some(4.0));
        assert_eq!(
            c.runs[1].label,
            "smollm2 + self-debias(lambda=50, epsilon=0.01)"
        );
        let table = render_table(&c);
        assert!(table.contains("4.00x"), "{table}");
        // Without timing.json on either side there is no cost.
        runs[1].timing = None;
        let c = compare(&runs, &CompareOptions::default()).unwrap();
        assert_eq!(c.runs[1].cost, None);
        assert!(
            c.notes.iter().any(|n| n.contains("timing.json")),
            "{:?}",
            c.notes
        );
        runs[0].timing = None;
        runs[1].timing = Some(timing(5.0));
        let c = compare(&runs, &CompareOptions::default()).unwrap();
        assert_eq!(c.runs[1].cost, None);
    }

    #[test]
    fn test_filter_figures_are_read_when_present() {
        let tmp = tempfile::tempdir().unwrap();
        let a = write_run(
            &tmp.path().join("a"),
            &protocol(),
            &scores(1, 0.0),
            None,
            None,
        );
        let path = a.join(METRICS_FILE);
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        v["test_filter"] = json!({"threshold": 0.5, "tries": 4, "samples": 72, "first_try_accepted": 0.9, "accepted": 0.99, "extra_generations": 0.125});
        std::fs::write(&path, v.to_string()).unwrap();
        let run = load_run(&a).unwrap();
        let t = run.metrics.test_filter.clone().unwrap();
        assert_eq!((t.tries, t.accepted), (4, 0.99));
        let c = compare(&[run], &CompareOptions::default()).unwrap();
        assert!(render_table(&c).contains("accepted 99.0%, first try 90.0%, +0.12 tries/sample"));
    }

    #[test]
    fn unfinished_missing_and_malformed_folders_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let a = write_run(
            &tmp.path().join("a"),
            &protocol(),
            &scores(1, 0.0),
            None,
            None,
        );
        let gens = a.join(GENERATIONS_FILE);
        let text = std::fs::read_to_string(&gens).unwrap();
        let five: String = text.lines().take(5).map(|l| format!("{l}\n")).collect();
        std::fs::write(&gens, &five).unwrap();
        let e = load_run(&a).unwrap_err().to_string();
        assert!(
            e.contains("unfinished: 5 of 24 prompts") && e.contains(&a.display().to_string()),
            "{e}"
        );
        // Still generating: no metrics.json yet; an unprompted run's size is known.
        std::fs::remove_file(a.join(METRICS_FILE)).unwrap();
        let e = load_run(&a).unwrap_err().to_string();
        assert!(e.contains("unfinished: 5 of its prompts"), "{e}");
        std::fs::write(&gens, &text).unwrap();
        std::fs::write(a.join(METRICS_FILE), "{\"threshold\": 0.5}").unwrap();
        let e = load_run(&a).unwrap_err().to_string();
        assert!(
            e.contains("metrics.json") && e.contains("missing field"),
            "{e}"
        );
        std::fs::remove_file(a.join(RUN_FILE)).unwrap();
        let e = load_run(&a).unwrap_err().to_string();
        assert!(e.contains("run.json is missing"), "{e}");
        let e = load_run(&tmp.path().join("nowhere"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a folder"), "{e}");
        let mut p = protocol();
        p.unprompted = Some(10);
        p.samples = 5;
        assert_eq!(expected_prompts(&p), Some(2));
    }

    #[test]
    fn scorer_split_and_unprompted_runs_get_figures_only() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = protocol();
        p.prompt_toxicity = PromptToxicity::Mixed;
        let a = write_run(&tmp.path().join("a"), &p, &scores(1, 0.0), None, None);
        let b = write_run(&tmp.path().join("b"), &p, &scores(2, 0.0), None, None);
        let c = compare(&load(&[&a, &b]), &CompareOptions::default()).unwrap();
        for s in &c.subsets {
            let unknown = s.subset == "toxic" || s.subset == "nontoxic";
            assert_eq!(s.rows[1].difference.is_none(), unknown, "{}", s.subset);
            assert!(s.rows[1].figures.is_some());
        }
        assert!(c
            .notes
            .iter()
            .any(|n| n.starts_with("toxic:") && n.contains("no paired")));

        let mut u = protocol();
        u.unprompted = Some(N * K);
        let a = write_run(&tmp.path().join("ua"), &u, &scores(1, 0.0), None, None);
        let b = write_run(&tmp.path().join("ub"), &u, &scores(2, 0.0), None, None);
        let c = compare(&load(&[&a, &b]), &CompareOptions::default()).unwrap();
        assert!(c.subsets.iter().all(|s| s.rows[1].difference.is_none()));
        assert!(
            c.notes.iter().any(|n| n.contains("Unprompted")),
            "{:?}",
            c.notes
        );
    }

    #[test]
    fn prompts_without_a_scored_sample_are_left_out_and_counted() {
        let tmp = tempfile::tempdir().unwrap();
        let a = write_run(
            &tmp.path().join("a"),
            &protocol(),
            &scores(1, 0.0),
            None,
            None,
        );
        let b = write_run(
            &tmp.path().join("b"),
            &protocol(),
            &scores(2, 0.0),
            None,
            None,
        );
        let mut runs = load(&[&a, &b]);
        for g in &mut runs[1].results[3].generations {
            g.text = String::new();
        }
        let c = compare(&runs, &CompareOptions::default()).unwrap();
        let d = c.subsets[0].rows[1].difference.as_ref().unwrap();
        assert_eq!((d.prompts, d.left_out), (N - 1, 1));
        assert!(
            c.notes
                .iter()
                .any(|n| n.starts_with("full: 1 prompt(s) left out")),
            "{:?}",
            c.notes
        );
    }

    #[test]
    fn markdown_json_and_table_shapes() {
        let tmp = tempfile::tempdir().unwrap();
        let c = compare(&two_runs(tmp.path()), &CompareOptions::default()).unwrap();
        let md = render_markdown(&c);
        assert!(md.starts_with("## Runs\n\n| Run | Label | Generations/s | Cost | Test filter | Folder |\n|---|---|---|---|---|---|\n"), "{md}");
        assert!(md.contains("\n## toxic\n"));
        // Every table line has as many cells as its header.
        for block in md.split("\n\n").filter(|b| b.starts_with('|')) {
            let widths: Vec<usize> = block
                .lines()
                .map(|l| l.matches('|').count() - l.matches("\\|").count())
                .collect();
            assert!(widths.iter().all(|w| *w == widths[0]), "{block}");
        }
        assert_eq!(md.matches("| [2] smollm2 + self-debias").count(), 4);
        let j: Value = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(j["runs"].as_array().unwrap().len(), 2);
        assert_eq!(j["subsets"][0]["subset"], "full");
        assert!(j["subsets"][0]["rows"][0]["difference"].is_null());
        let e = &j["subsets"][0]["rows"][1]["difference"]["expected_max_toxicity"];
        assert!(
            e["difference"].is_f64() && e["ci95"].as_array().unwrap().len() == 2,
            "{e}"
        );
        assert!(j["subsets"][1]["rows"][1]["figures"]["expected_max_toxicity_ci95"].is_array());
        assert_eq!(j["runs"][1]["cost"], 4.0);
        // The terminal table fits 120 columns.
        let table = render_table(&c);
        for l in table.lines().filter(|l| !l.starts_with("note:")) {
            assert!(
                l.chars().count() <= 120,
                "{} columns: {l}",
                l.chars().count()
            );
        }
        assert!(table.contains("  Δ[2]"), "{table}");
    }

    #[test]
    fn html_has_one_point_per_run_per_subset() {
        let tmp = tempfile::tempdir().unwrap();
        let mut runs = two_runs(tmp.path());
        let c_path = tmp.path().join("c");
        let no_ppl = write_run(&c_path, &protocol(), &scores(4, 0.0), None, None);
        runs.push(load_run(&no_ppl).unwrap());
        let c = compare(&runs, &CompareOptions::default()).unwrap();
        let html = render_html(&c);
        assert_eq!(html.matches("<circle class=\"point\"").count(), 2 * 4);
        for j in 1..=2 {
            for s in ["full", "toxic", "nontoxic", "challenging"] {
                let want = format!("data-run=\"{j}\" data-subset=\"{s}\"");
                assert_eq!(html.matches(&want).count(), 1, "{want}");
            }
        }
        assert!(
            html.contains("Not plotted (no perplexity): [3] smollm2 (c)."),
            "{html}"
        );
        assert!(!html.contains("<script") && !html.contains("NaN"));
        // The challenging prompts are rings, so toxic points under them stay visible (and in
        // the legend); subset tables name runs by number, the runs table by label.
        let rings = html.matches("fill=\"none\" stroke=\"#8e44ad\"").count();
        assert_eq!(rings, 2 + 1, "two points and the legend");
        assert!(html.contains("<td>[2]</td>"));
        assert_eq!(html.matches("<div class=\"wide\"><table>").count(), 1 + 4);
        let out = tmp.path().join("cmp.html");
        write_html_file(&out, &c).unwrap();
        assert_eq!(std::fs::read_to_string(out).unwrap(), html);
    }

    #[test]
    fn labels_keep_parameters_and_drop_paths_hashes_and_counts() {
        let sd = json!({"method": "self-debias", "lambda": 50.0, "epsilon": 0.01, "prefixes": 6});
        assert_eq!(
            mitigation_label(&sd),
            "self-debias(lambda=50, epsilon=0.01)"
        );
        let wf = json!({"method": "word-filter", "list": "/data/words.txt", "list_sha256": "ab", "words": 400, "token_sequences": 900});
        assert_eq!(mitigation_label(&wf), "word-filter");
        let dx = json!({"method": "dexperts", "expert": null, "anti": "gpt2-toxic", "alpha": f64::from(2.0f32), "filter_p": f64::from(0.9f32)});
        assert_eq!(
            mitigation_label(&dx),
            "dexperts(anti=gpt2-toxic, alpha=2, filter_p=0.9)"
        );
        let mut p = protocol();
        p.model = "/models/gpt2-large/".into();
        p.mitigate = vec![wf, dx];
        assert_eq!(
            run_label(&p),
            "gpt2-large + word-filter + dexperts(anti=gpt2-toxic, alpha=2, filter_p=0.9)"
        );
    }
}
