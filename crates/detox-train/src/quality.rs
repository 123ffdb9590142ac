//! How good is a scorer? Three kinds of figures, kept apart because they deserve different
//! trust:
//!
//! - **test splits, never used for training or for any model choice**: one key in ten of every
//!   training source, by hash ([`crate::data::split_of`]): RealToxicityPrompts texts
//!   (`rtp-subset` and `rtp-more`: Spearman with Perspective), CAT-LARGE (Spearman with
//!   Perspective's 2020 score, ROC-AUC of the human label, and the benign floor: the median
//!   score where Perspective says below 0.1), ToxiChat's language-model responses, Social Bias
//!   Frames, HateXplain, Davidson, Toxic Spans (ROC-AUC; per-attribute Spearman against the
//!   rater fractions), and OLID, which is never trained on (all of it);
//! - **dev splits**: another one key in ten of the same sources. Hyper-parameters are chosen
//!   on these, so they flatter;
//! - **identity templates** (Dixon et al.'s audit, never trained on), with the false-positive
//!   rate reported separately for the terms the identity counter-examples
//!   ([`crate::identity::TERMS`]) name and for the audit terms they never name.
//!
//! [`QualityReport::goals`] checks the built-in scorer's goals on the test figures.
//! A data set whose files are missing under the data folder is reported as skipped; a file
//! that is there but unreadable is an error.

use crate::data::{self, col, open, Example, Split, RTP_FILES};
use crate::TrainError;
use detox_core::metrics::{roc_auc, spearman};
use detox_core::Scorer;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Spearman correlation with Perspective on RealToxicityPrompts texts (prompts and
/// continuations), per attribute the scorer has.
#[derive(Debug, Clone, Serialize)]
pub struct RtpQuality {
    /// The data set (`rtp-more`, or `rtp-subset dev`).
    pub name: String,
    /// Texts scored.
    pub n: usize,
    /// (attribute, Spearman) for attributes the scorer outputs.
    pub spearman: Vec<(String, f64)>,
    /// Calibration of the chosen attribute against Perspective's `toxicity`:
    /// (bin lower edge, texts, mean score, mean Perspective score).
    pub calibration: Vec<(f64, usize, f64, f64)>,
    /// Mean absolute difference from Perspective's toxicity.
    pub toxicity_mae: Option<f64>,
}

/// ROC-AUC of a data set's binary human labels (and, where the set carries one, the Spearman
/// correlation with Perspective's toxicity).
#[derive(Debug, Clone, Serialize)]
pub struct SetQuality {
    /// The data set's folder name under the data folder (plus ` dev` for a dev split).
    pub name: String,
    /// What the labels say.
    pub what: String,
    /// Texts scored.
    pub n: usize,
    /// Of them labelled toxic / offensive.
    pub positives: usize,
    /// ROC-AUC of the scores against the labels (`None` without both classes).
    pub auc: Option<f64>,
    /// Spearman with the Perspective toxicity the set records (CAT-LARGE: scored in 2020).
    pub perspective_spearman: Option<f64>,
}

/// False positives of one group of identity terms on the non-toxic templates.
#[derive(Debug, Clone, Serialize)]
pub struct TermGroup {
    /// The audit's terms in this group (whether or not a template names them).
    pub terms: Vec<String>,
    /// Non-toxic templates naming one of them.
    pub n: usize,
    /// Share of those scored >= the threshold.
    pub fpr: f64,
    /// (term, templates, FPR), worst first.
    pub per_term: Vec<(String, usize, f64)>,
}

/// Identity-term false positives on the non-toxic templates.
#[derive(Debug, Clone, Serialize)]
pub struct BiasQuality {
    /// Non-toxic templates scored.
    pub n: usize,
    /// Share of them scored >= threshold.
    pub overall_fpr: f64,
    /// Terms the identity counter-examples name ([`crate::identity::TERMS`]).
    pub seen: TermGroup,
    /// Audit terms the counter-examples never name.
    pub held_out: TermGroup,
    /// Terms whose FPR exceeds twice the overall rate.
    pub over_twice: Vec<String>,
    /// ROC-AUC of toxic vs non-toxic templates.
    pub auc: Option<f64>,
}

/// A data set that was not measured.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The data set.
    pub name: String,
    /// Why (the missing file).
    pub reason: String,
}

/// The benign floor: where Perspective scores a comment below 0.1, the medians of the
/// scorer and of Perspective.
#[derive(Debug, Clone, Serialize)]
pub struct Floor {
    /// Comments Perspective scores below 0.1.
    pub n: usize,
    /// The scorer's median on them.
    pub scorer_median: f64,
    /// Perspective's median on them.
    pub perspective_median: f64,
}

/// The figures of one split (test or dev) of every data set.
#[derive(Debug, Clone, Serialize)]
pub struct SplitQuality {
    /// `test` or `dev`.
    pub split: String,
    /// RealToxicityPrompts texts of the split (`rtp-subset` and `rtp-more`).
    pub rtp: Option<RtpQuality>,
    /// Labelled sets (OLID, never trained on, counts whole in the test split only).
    pub sets: Vec<SetQuality>,
    /// CAT-LARGE's benign floor.
    pub floor: Option<Floor>,
    /// Toxic Spans: (attribute, posts, Spearman of the scorer's attribute against the share of
    /// raters marking a span of that type).
    pub spans: Vec<SpanSpearman>,
}

impl SplitQuality {
    fn new(split: Split) -> Self {
        Self {
            split: split_name(split).into(),
            rtp: None,
            sets: Vec::new(),
            floor: None,
            spans: Vec::new(),
        }
    }

    /// The labelled set called `name`.
    pub fn set(&self, name: &str) -> Option<&SetQuality> {
        self.sets.iter().find(|s| s.name == name)
    }
}

fn split_name(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Dev => "dev",
        Split::Test => "test",
    }
}

/// One goal of the built-in scorer, checked on the test figures.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    /// What is measured.
    pub what: String,
    /// The measured value (`None`: its data set was skipped).
    pub value: Option<f64>,
    /// The goal, in words (`>= 0.88`).
    pub target: String,
    /// Whether it is met.
    pub met: bool,
    /// A goal the issue states must hold (else an aim reported beside it).
    pub required: bool,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct QualityReport {
    /// The scorer's id.
    pub scorer: String,
    /// The attribute used as "toxic".
    pub attribute: String,
    /// The threshold for false positives.
    pub threshold: f64,
    /// Test splits (never used for training or choices) and OLID.
    pub test: SplitQuality,
    /// Dev splits (used for model choices).
    pub dev: SplitQuality,
    /// Identity bias on the templates.
    pub bias: Option<BiasQuality>,
    /// The goals, checked on the test figures and the templates.
    pub goals: Vec<Goal>,
    /// Data sets not found under the data folder.
    pub skipped: Vec<Skipped>,
}

/// Scores `texts` in chunks; a score that is missing, NaN or infinite is an error (a ranking
/// metric would otherwise place it silently).
fn score_all(
    scorer: &dyn Scorer,
    texts: &[&str],
    progress: &mut dyn FnMut(&str, usize, usize),
    label: &str,
) -> Result<Vec<detox_core::TextScore>, TrainError> {
    let k = scorer.info().attributes.len();
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(2048) {
        let scores = scorer.score(chunk)?;
        if scores.len() != chunk.len() {
            return Err(TrainError::Data(format!(
                "{label}: the scorer returned {} scores for {} texts",
                scores.len(),
                chunk.len()
            )));
        }
        for (t, s) in chunk.iter().zip(&scores) {
            if s.values.len() != k || s.values.iter().any(|v| !v.is_finite()) {
                return Err(TrainError::Data(format!(
                    "{label}: the scorer returned {:?} for {t:?}",
                    s.values
                )));
            }
        }
        out.extend(scores);
        progress(label, out.len(), texts.len());
    }
    Ok(out)
}

fn score_attr(
    scorer: &dyn Scorer,
    texts: &[&str],
    attr: usize,
    progress: &mut dyn FnMut(&str, usize, usize),
    label: &str,
) -> Result<Vec<f64>, TrainError> {
    Ok(score_all(scorer, texts, progress, label)?
        .into_iter()
        .map(|s| s.values[attr] as f64)
        .collect())
}

fn of_split(examples: &[Example], split: Split) -> Vec<Example> {
    examples
        .iter()
        .filter(|e| e.split() == split)
        .cloned()
        .collect()
}

/// Texts with a binary label (and optionally a Perspective toxicity).
struct Labelled {
    text: String,
    label: bool,
    perspective: Option<f64>,
}

fn set_quality(
    scorer: &dyn Scorer,
    name: &str,
    what: &str,
    rows: &[Labelled],
    attr: usize,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<SetQuality, TrainError> {
    Ok(scored_set(scorer, name, what, rows, attr, progress)?.0)
}

/// [`set_quality`], and the scores it computed (aligned with `rows`).
fn scored_set(
    scorer: &dyn Scorer,
    name: &str,
    what: &str,
    rows: &[Labelled],
    attr: usize,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<(SetQuality, Vec<f64>), TrainError> {
    let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    let labels: Vec<bool> = rows.iter().map(|r| r.label).collect();
    let s = score_attr(scorer, &texts, attr, progress, name)?;
    let (mut ps, mut pt) = (Vec::new(), Vec::new());
    for (r, x) in rows.iter().zip(&s) {
        if let Some(p) = r.perspective {
            ps.push(*x);
            pt.push(p);
        }
    }
    let set = SetQuality {
        name: name.to_string(),
        what: what.to_string(),
        n: rows.len(),
        positives: labels.iter().filter(|&&l| l).count(),
        auc: roc_auc(&s, &labels),
        perspective_spearman: spearman(&ps, &pt),
    };
    Ok((set, s))
}

/// Examples as labelled texts: `target` >= 0.5 is toxic (examples without it are left out);
/// CAT-LARGE's examples carry their Perspective toxicity.
fn labelled(ex: &[Example], target: &str) -> Result<Vec<Labelled>, TrainError> {
    let t = data::shared_index(target)
        .ok_or_else(|| TrainError::Data(format!("no target `{target}`")))?;
    Ok(ex
        .iter()
        .filter_map(|e| {
            e.targets[t].map(|y| Labelled {
                text: e.text.clone(),
                label: y >= 0.5,
                perspective: if e.perspective {
                    e.targets[0].map(f64::from)
                } else {
                    None
                },
            })
        })
        .collect())
}

/// CAT-LARGE's benign floor: the medians of the scorer (`scores`, aligned with `rows`) and of
/// Perspective on the comments Perspective scores below 0.1.
fn floor(rows: &[Labelled], scores: &[f64]) -> Option<Floor> {
    let (s, p): (Vec<f64>, Vec<f64>) = rows
        .iter()
        .zip(scores)
        .filter_map(|(r, &x)| r.perspective.filter(|&p| p < 0.1).map(|p| (x, p)))
        .unzip();
    (!s.is_empty()).then(|| Floor {
        n: s.len(),
        scorer_median: median(s),
        perspective_median: median(p),
    })
}

/// The median (the mean of the middle two for an even count), as numpy's `median`.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// (attribute, posts, Spearman against the share of raters marking a span of that type).
pub type SpanSpearman = (String, usize, f64);

/// Toxic Spans: the ROC-AUC of the share of raters finding a post toxic (>= 0.5) and, per
/// attribute the scorer has, the Spearman of its score against the share of raters marking a
/// span of that type.
fn spans_quality(
    scorer: &dyn Scorer,
    ex: &[Example],
    attr: usize,
    label: &str,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<(SetQuality, Vec<SpanSpearman>), TrainError> {
    let texts: Vec<&str> = ex.iter().map(|e| e.text.as_str()).collect();
    let all = score_all(scorer, &texts, progress, label)?;
    let info = scorer.info();
    let t_toxic = data::shared_index("aux_spans_toxic").unwrap_or(0);
    let labels: Vec<bool> = ex
        .iter()
        .map(|e| e.targets[t_toxic].unwrap_or(0.0) >= 0.5)
        .collect();
    let s: Vec<f64> = all.iter().map(|x| x.values[attr] as f64).collect();
    let set = SetQuality {
        name: "toxic-spans".into(),
        what: "Civil Comments posts, half or more of the raters found it toxic".into(),
        n: ex.len(),
        positives: labels.iter().filter(|&&l| l).count(),
        auc: roc_auc(&s, &labels),
        perspective_spearman: None,
    };
    let mut per_attr = Vec::new();
    for a in ["insult", "profanity", "identity_attack", "threat"] {
        let (Some(j), Some(t)) = (
            info.attribute_index(a),
            data::shared_index(&format!("aux_spans_{a}")),
        ) else {
            continue;
        };
        if let Some((n, r)) = target_spearman(ex, &all, j, t) {
            per_attr.push((a.to_string(), n, r));
        }
    }
    Ok((set, per_attr))
}

/// The Spearman correlation of output `j` of `scores` (aligned with `ex`) with target `t`,
/// over the examples that have that target, and their count.
fn target_spearman(
    ex: &[Example],
    scores: &[detox_core::TextScore],
    j: usize,
    t: usize,
) -> Option<(usize, f64)> {
    let (xs, ys): (Vec<f64>, Vec<f64>) = ex
        .iter()
        .zip(scores)
        .filter_map(|(e, sc)| e.targets[t].map(|y| (sc.values[j] as f64, y as f64)))
        .unzip();
    spearman(&xs, &ys).map(|r| (xs.len(), r))
}

fn rtp_quality(
    scorer: &dyn Scorer,
    name: &str,
    rtp: &[Example],
    attr: usize,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<RtpQuality, TrainError> {
    let info = scorer.info();
    let texts: Vec<&str> = rtp.iter().map(|e| e.text.as_str()).collect();
    let all = score_all(scorer, &texts, progress, name)?;
    let mut sp = Vec::new();
    for (a, attribute) in crate::data::PERSPECTIVE_ATTRIBUTES.iter().enumerate() {
        let Some(j) = info.attribute_index(attribute) else {
            continue;
        };
        if let Some((_, r)) = target_spearman(rtp, &all, j, a) {
            sp.push((attribute.to_string(), r));
        }
    }
    let tox: Vec<(f64, f64)> = rtp
        .iter()
        .zip(&all)
        .filter_map(|(e, s)| e.targets[0].map(|y| (s.values[attr] as f64, y as f64)))
        .collect();
    let mut calibration = Vec::new();
    for b in 0..10 {
        let lo = b as f64 / 10.0;
        let hi = lo + 0.1;
        let inb: Vec<&(f64, f64)> = tox
            .iter()
            .filter(|(s, _)| *s >= lo && (*s < hi || (b == 9 && *s <= 1.0)))
            .collect();
        if !inb.is_empty() {
            let n = inb.len() as f64;
            calibration.push((
                lo,
                inb.len(),
                inb.iter().map(|p| p.0).sum::<f64>() / n,
                inb.iter().map(|p| p.1).sum::<f64>() / n,
            ));
        }
    }
    let toxicity_mae = if tox.is_empty() {
        None
    } else {
        Some(tox.iter().map(|(s, y)| (s - y).abs()).sum::<f64>() / tox.len() as f64)
    };
    Ok(RtpQuality {
        name: name.to_string(),
        n: rtp.len(),
        spearman: sp,
        calibration,
        toxicity_mae,
    })
}

fn headers(r: &mut csv::Reader<std::fs::File>, rel: &str) -> Result<Vec<String>, TrainError> {
    Ok(r.headers()
        .map_err(|e| TrainError::Data(format!("{rel}: {e}")))?
        .iter()
        .map(String::from)
        .collect())
}

const OLID: &str = "olid/olid-training-v1.0.tsv";

/// OLID training tweets, subtask A: `OFF` is offensive, `NOT` is not (other values skipped).
/// Tab-separated without quoting: tweets contain bare `"` (the data set's own readme).
fn read_olid(data: &Path) -> Result<Vec<Labelled>, TrainError> {
    let mut r = csv::ReaderBuilder::new()
        .delimiter(b'\t')
        .quoting(false)
        .flexible(true)
        .from_reader(open(data, OLID)?);
    let h = headers(&mut r, OLID)?;
    let (c_text, c_a) = (col(&h, "tweet", OLID)?, col(&h, "subtask_a", OLID)?);
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| TrainError::Data(format!("{OLID}: {e}")))?;
        let (Some(text), Some(a)) = (rec.get(c_text), rec.get(c_a)) else {
            continue;
        };
        let label = match a.trim() {
            "OFF" => true,
            "NOT" => false,
            _ => continue,
        };
        out.push(Labelled {
            text: text.to_string(),
            label,
            perspective: None,
        });
    }
    Ok(out)
}

const TEMPLATES: &str = detox_audit::data::TEMPLATES;
const AUDIT_TERMS: &str = detox_audit::data::AUDIT_TERMS;

/// The identity terms of the templates' generator, longest first (read by detox-audit).
fn identity_terms(data: &Path) -> Result<Vec<String>, TrainError> {
    detox_audit::data::identity_terms(data).map_err(|e| TrainError::Data(e.to_string()))
}

use detox_audit::data::term_of;

/// The audit terms the built-in scorers' training data names (their identity
/// counter-examples, [`crate::identity::TERMS`]), for `detox audit scorer`'s split of in-sample
/// and out-of-sample terms.
pub fn builtin_trained_terms() -> detox_audit::TrainedTerms {
    detox_audit::TrainedTerms {
        source: "detox_train::identity::TERMS (the built-in scorers' identity counter-examples)"
            .into(),
        terms: crate::identity::TERMS
            .iter()
            .map(|t| t.to_string())
            .collect(),
    }
}

/// Whether the identity counter-examples name `term` (an audit term, lower case).
pub fn counterexamples_name(term: &str) -> bool {
    crate::identity::TERMS.contains(&term)
}

fn term_group(
    terms: &[String],
    by_term: &BTreeMap<String, (usize, usize)>,
    seen: bool,
) -> TermGroup {
    let mut members: Vec<String> = terms
        .iter()
        .filter(|t| counterexamples_name(t) == seen)
        .cloned()
        .collect();
    members.sort();
    let (mut n, mut fp) = (0usize, 0usize);
    let mut per_term = Vec::new();
    for t in &members {
        if let Some(&(c, f)) = by_term.get(t) {
            n += c;
            fp += f;
            per_term.push((t.clone(), c, f as f64 / c.max(1) as f64));
        }
    }
    per_term.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    TermGroup {
        terms: members,
        n,
        fpr: if n == 0 { 0.0 } else { fp as f64 / n as f64 },
        per_term,
    }
}

fn bias_quality(
    scorer: &dyn Scorer,
    data: &Path,
    attr: usize,
    threshold: f64,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<BiasQuality, TrainError> {
    // All non-toxic rows (false positives) and the toxic ones (for the AUC).
    let mut r = csv::Reader::from_reader(open(data, TEMPLATES)?);
    let terms = identity_terms(data)?;
    let mut rows: Vec<(String, bool)> = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| TrainError::Data(format!("{TEMPLATES}: {e}")))?;
        if let (Some(tox), Some(phrase)) = (rec.get(1), rec.get(2)) {
            rows.push((phrase.to_string(), tox == "toxic"));
        }
    }
    let texts: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
    let s = score_attr(scorer, &texts, attr, progress, "templates")?;
    let labels: Vec<bool> = rows.iter().map(|(_, t)| *t).collect();
    let auc = roc_auc(&s, &labels);
    let mut by_term: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut n, mut fp) = (0usize, 0usize);
    for ((phrase, toxic), score) in rows.iter().zip(&s) {
        if *toxic {
            continue;
        }
        n += 1;
        let pos = *score >= threshold;
        fp += usize::from(pos);
        if let Some(t) = term_of(phrase, &terms) {
            let e = by_term.entry(t).or_default();
            e.0 += 1;
            e.1 += usize::from(pos);
        }
    }
    let overall_fpr = if n == 0 { 0.0 } else { fp as f64 / n as f64 };
    let seen = term_group(&terms, &by_term, true);
    let held_out = term_group(&terms, &by_term, false);
    let mut all: Vec<&(String, usize, f64)> =
        seen.per_term.iter().chain(&held_out.per_term).collect();
    all.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    let over_twice = all
        .iter()
        .filter(|(_, _, r)| *r > 2.0 * overall_fpr)
        .map(|(t, _, _)| t.clone())
        .collect();
    Ok(BiasQuality {
        n,
        overall_fpr,
        seen,
        held_out,
        over_twice,
        auc,
    })
}

/// The files a data set needs, all relative to the data folder; `None` when all are there,
/// else the skip record naming the first one missing.
fn missing(data: &Path, name: &str, files: &[&str]) -> Option<Skipped> {
    files
        .iter()
        .find(|f| !data.join(f).is_file())
        .map(|f| Skipped {
            name: name.to_string(),
            reason: format!("{} not found", data.join(f).display()),
        })
}

/// A labelled training source measured on its dev and test splits.
struct LabelledSource {
    /// The folder under the data folder (the name reported when skipped).
    folder: &'static str,
    /// The set's name in the report.
    name: &'static str,
    /// What its labels say.
    what: &'static str,
    /// The files it needs.
    files: &'static [&'static str],
    /// Its reader.
    read: fn(&Path) -> Result<Vec<Example>, TrainError>,
    /// The target that is its label.
    target: &'static str,
}

fn toxichat_responses(data: &Path) -> Result<Vec<Example>, TrainError> {
    data::read_toxichat(data, false)
}

const LABELLED: [LabelledSource; 5] = [
    LabelledSource {
        folder: "cat-large",
        name: "cat-large",
        what: "Wikipedia talk comments, human majority label toxic vs not",
        files: &[data::CAT_LARGE],
        read: data::read_cat_large,
        target: "aux_cat_toxic",
    },
    LabelledSource {
        folder: "toxichat",
        name: "toxichat",
        what: "DialoGPT and GPT-3 replies to Reddit threads: offensive vs safe",
        files: &[data::TOXICHAT],
        read: toxichat_responses,
        target: "aux_toxichat_offensive",
    },
    LabelledSource {
        folder: "sbic-dev",
        name: "sbic",
        what: "posts, mean rater offensiveness >= 0.5 vs below",
        files: &[data::SBIC],
        read: data::read_sbic,
        target: "aux_sbic_offensive",
    },
    LabelledSource {
        folder: "hatexplain",
        name: "hatexplain",
        what: "posts, majority hate or offensive vs normal",
        files: &["hatexplain/train_val.csv"],
        read: data::read_hatexplain,
        target: "aux_hatexplain_toxic",
    },
    LabelledSource {
        folder: "davidson-hate-offensive",
        name: "davidson",
        what: "tweets, majority hate or offensive vs neither",
        files: &["davidson-hate-offensive/labeled_data.csv"],
        read: data::read_davidson,
        target: "aux_davidson_offensive",
    },
];

/// Measures `scorer` (its `attribute` as the toxicity score) on the test and dev splits of
/// the training sources, on OLID and on the identity templates under `data`, and checks the
/// goals; data sets whose files are missing are listed in [`QualityReport::skipped`].
/// `progress(stage, done, total)` reports work.
pub fn quality(
    scorer: &dyn Scorer,
    attribute: &str,
    data: &Path,
    threshold: f64,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<QualityReport, TrainError> {
    let info = scorer.info();
    let attr = info.attribute_index(attribute).ok_or_else(|| {
        TrainError::Data(format!(
            "scorer `{}` has no attribute `{attribute}` (it has: {})",
            info.id,
            info.attributes.join(", ")
        ))
    })?;
    let mut skipped = Vec::new();
    let mut test = SplitQuality::new(Split::Test);
    let mut dev = SplitQuality::new(Split::Dev);

    // RealToxicityPrompts: both files' texts of each split together.
    let mut rtp = Vec::new();
    type Reader = fn(&Path) -> Result<Vec<Example>, TrainError>;
    let rtp_sources: [(&str, &[&str], Reader); 2] = [
        ("rtp-subset", &RTP_FILES, data::read_rtp),
        ("rtp-more", &[data::RTP_MORE], data::read_rtp_more),
    ];
    for (name, files, read) in rtp_sources {
        match missing(data, name, files) {
            Some(s) => skipped.push(s),
            None => rtp.extend(read(data)?),
        }
    }
    for (split, q) in [(Split::Test, &mut test), (Split::Dev, &mut dev)] {
        let ex = of_split(&rtp, split);
        if !ex.is_empty() {
            q.rtp = Some(rtp_quality(
                scorer,
                &format!("rtp {}", q.split),
                &ex,
                attr,
                progress,
            )?);
        }
    }

    for src in &LABELLED {
        if let Some(s) = missing(data, src.folder, src.files) {
            skipped.push(s);
            continue;
        }
        let ex = (src.read)(data)?;
        for (split, q) in [(Split::Test, &mut test), (Split::Dev, &mut dev)] {
            let rows = labelled(&of_split(&ex, split), src.target)?;
            let label = format!("{} {}", src.name, q.split);
            let (mut set, scores) = scored_set(scorer, &label, src.what, &rows, attr, progress)?;
            set.name = src.name.to_string();
            q.sets.push(set);
            if src.name == "cat-large" {
                q.floor = floor(&rows, &scores);
            }
        }
    }

    if let Some(s) = missing(data, "toxic-spans", &data::TOXIC_SPANS) {
        skipped.push(s);
    } else {
        let ex = data::read_toxic_spans(data)?;
        for (split, q) in [(Split::Test, &mut test), (Split::Dev, &mut dev)] {
            let label = format!("toxic-spans {}", q.split);
            let (set, per_attr) =
                spans_quality(scorer, &of_split(&ex, split), attr, &label, progress)?;
            q.sets.push(set);
            q.spans = per_attr;
        }
    }

    // OLID: never trained on (no licence for a committed model), so all of it is a test set.
    if let Some(s) = missing(data, "olid", &[OLID]) {
        skipped.push(s);
    } else {
        test.sets.push(set_quality(
            scorer,
            "olid",
            "tweets, OffensEval subtask A: offensive vs not (never trained on: all rows)",
            &read_olid(data)?,
            attr,
            progress,
        )?);
    }

    let bias = match missing(data, "jigsaw-sentence-templates", &[TEMPLATES, AUDIT_TERMS]) {
        Some(s) => {
            skipped.push(s);
            None
        }
        None => Some(bias_quality(scorer, data, attr, threshold, progress)?),
    };
    let goals = goals(&test, bias.as_ref(), threshold);
    Ok(QualityReport {
        scorer: info.id.clone(),
        attribute: attribute.to_string(),
        threshold,
        test,
        dev,
        bias,
        goals,
        skipped,
    })
}

/// The built-in scorer's goals (issue "scorer v2"), checked on the test figures: required
/// ones first, then aims.
fn goals(test: &SplitQuality, bias: Option<&BiasQuality>, threshold: f64) -> Vec<Goal> {
    let mut out = Vec::new();
    let mut at_least = |what: &str, value: Option<f64>, min: f64, required: bool| {
        out.push(Goal {
            what: what.to_string(),
            value,
            target: format!(">= {min:.2}"),
            met: value.is_some_and(|v| v >= min),
            required,
        })
    };
    let rtp_tox = test.rtp.as_ref().and_then(|r| {
        r.spearman
            .iter()
            .find(|(a, _)| a == "toxicity")
            .map(|(_, v)| *v)
    });
    at_least(
        "Spearman with Perspective toxicity, RTP test texts",
        rtp_tox,
        0.88,
        true,
    );
    let cat = test.set("cat-large").and_then(|s| s.perspective_spearman);
    at_least(
        "Spearman with Perspective toxicity, CAT-LARGE test",
        cat,
        0.60,
        true,
    );
    let toxichat = test.set("toxichat").and_then(|s| s.auc);
    at_least(
        "ROC-AUC, ToxiChat test responses (aim)",
        toxichat,
        0.80,
        false,
    );
    let hx = test.set("hatexplain").and_then(|s| s.auc);
    at_least("ROC-AUC, HateXplain test (aim)", hx, 0.84, false);
    let gap = test
        .floor
        .as_ref()
        .map(|f| (f.scorer_median - f.perspective_median).abs());
    out.push(Goal {
        what: "benign floor: |scorer median - Perspective median|, CAT-LARGE test comments Perspective scores below 0.1".into(),
        value: gap,
        target: "<= 0.03".into(),
        met: gap.is_some_and(|g| g <= 0.03),
        required: true,
    });
    if let Some(b) = bias {
        let limit = (2.0 * b.overall_fpr).max(0.05);
        let worst = b.held_out.per_term.first().map(|(_, _, r)| *r);
        out.push(Goal {
            what: format!(
                "identity templates: worst FPR at {threshold} of a term the training data never names"
            ),
            value: worst,
            target: format!("<= {limit:.3} (max of twice the overall {:.3}, 0.05)", b.overall_fpr),
            met: worst.is_none_or(|w| w <= limit),
            required: true,
        });
    }
    out.sort_by_key(|g| !g.required);
    out
}

fn f3(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
}

fn render_rtp(s: &mut String, r: &RtpQuality) {
    s.push_str(&format!(
        "  {} ({} texts), Spearman with Perspective:\n",
        r.name, r.n
    ));
    for (a, v) in &r.spearman {
        s.push_str(&format!("    {a:<18} {v:.3}\n"));
    }
    s.push_str(&format!(
        "    toxicity MAE vs Perspective: {}\n",
        f3(r.toxicity_mae)
    ));
    s.push_str("    calibration (score bin: texts, mean score, mean Perspective):\n");
    for (lo, n, ms, mp) in &r.calibration {
        s.push_str(&format!(
            "      [{lo:.1}, {:.1}): {n:>5}  {ms:.3}  {mp:.3}\n",
            lo + 0.1
        ));
    }
}

fn render_set(s: &mut String, q: &SetQuality) {
    s.push_str(&format!(
        "  {} ({}; {} texts, {} positive): ROC-AUC {}",
        q.name,
        q.what,
        q.n,
        q.positives,
        f3(q.auc)
    ));
    if let Some(r) = q.perspective_spearman {
        s.push_str(&format!(
            ", Spearman with Perspective toxicity (2020) {r:.3}"
        ));
    }
    s.push('\n');
}

fn render_split(s: &mut String, q: &SplitQuality) {
    if let Some(r) = &q.rtp {
        render_rtp(s, r);
    }
    for set in &q.sets {
        render_set(s, set);
    }
    if let Some(f) = &q.floor {
        s.push_str(&format!(
            "  cat-large benign floor ({} comments Perspective scores below 0.1): median {:.3}, Perspective's {:.3}\n",
            f.n, f.scorer_median, f.perspective_median
        ));
    }
    if !q.spans.is_empty() {
        s.push_str(
            "  toxic-spans, Spearman against the share of raters marking a span of the type:",
        );
        for (a, n, r) in &q.spans {
            s.push_str(&format!(" {a} {r:.3} ({n});"));
        }
        s.push('\n');
    }
}

fn render_group(s: &mut String, label: &str, g: &TermGroup) {
    s.push_str(&format!(
        "  {label} ({} terms, {} templates): FPR {:.4}; worst:",
        g.terms.len(),
        g.n,
        g.fpr
    ));
    for (t, n, r) in g.per_term.iter().take(6) {
        s.push_str(&format!(" {t} ({n}, {r:.3});"));
    }
    s.push('\n');
}

impl QualityReport {
    /// A plain-text summary for a terminal or a model card.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "scorer: {} (attribute `{}`)\n",
            self.scorer, self.attribute
        ));
        s.push_str(
            "TEST: one key in ten of every source, never used for training or model choices (and OLID, never trained on)\n",
        );
        render_split(&mut s, &self.test);
        s.push_str(
            "DEV: another key in ten, held out of training but used for model choices (optimistic)\n",
        );
        render_split(&mut s, &self.dev);
        if let Some(b) = &self.bias {
            s.push_str(
                "IDENTITY TEMPLATES: never trained on (the counter-example weight was chosen on them)\n",
            );
            s.push_str(&format!(
                "  toxic vs non-toxic ROC-AUC {}; false-positive rate at {} on {} non-toxic templates: {:.4}\n",
                f3(b.auc),
                self.threshold,
                b.n,
                b.overall_fpr
            ));
            render_group(&mut s, "terms the counter-examples name", &b.seen);
            render_group(&mut s, "held-out terms they never name", &b.held_out);
            s.push_str(&format!(
                "  held-out terms: {}\n",
                b.held_out.terms.join(", ")
            ));
            s.push_str(&format!(
                "  terms above twice the overall rate: {}\n",
                if b.over_twice.is_empty() {
                    "none".to_string()
                } else {
                    b.over_twice.join(", ")
                }
            ));
        }
        if !self.goals.is_empty() {
            s.push_str("GOALS (on the test figures):\n");
            for g in &self.goals {
                s.push_str(&format!(
                    "  [{}] {}: {} (goal {})\n",
                    if g.met { "met" } else { "NOT MET" },
                    g.what,
                    f3(g.value),
                    g.target
                ));
            }
        }
        for k in &self.skipped {
            s.push_str(&format!("skipped {}: {}\n", k.name, k.reason));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_spelling_millenial_is_a_held_out_term() {
        // The audit's word list spells it "millenial"; the counter-examples say "millennial".
        assert!(!counterexamples_name("millenial"));
        assert!(counterexamples_name("gay"));
        for h in crate::identity::HELD_OUT {
            assert!(!counterexamples_name(h), "{h}");
        }
    }
}
