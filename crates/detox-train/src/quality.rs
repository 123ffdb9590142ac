//! How good is a scorer? Three kinds of figures, kept apart because they deserve different
//! trust:
//!
//! - **test sets never used for training or for any model choice**: more RealToxicityPrompts
//!   rows (`rtp-more`, Spearman with Perspective), CAT-LARGE (Wikipedia comments with
//!   Perspective's 2020 score and a human label), OLID, ToxiChat's language-model responses and
//!   the Social Bias Frames dev posts (ROC-AUC of their human labels);
//! - **dev splits**: the one-in-ten hash split `detox train` holds out of the training sets
//!   (RTP, HateXplain, Davidson). Hyper-parameters were chosen on these, so they flatter;
//! - **identity templates** (Dixon et al.'s audit, never trained on), with the false-positive
//!   rate reported separately for the terms the identity counter-examples
//!   ([`crate::identity::TERMS`]) name and for the audit terms they never name.
//!
//! A data set whose files are missing under the data folder is reported as skipped; a file
//! that is there but unreadable is an error.

use crate::data::{read_davidson, read_hatexplain, read_rtp_files, Example, Split, RTP_FILES};
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

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct QualityReport {
    /// The scorer's id.
    pub scorer: String,
    /// The attribute used as "toxic".
    pub attribute: String,
    /// The threshold for false positives.
    pub threshold: f64,
    /// RealToxicityPrompts rows never used for training or choices (`rtp-more`).
    pub test_rtp: Option<RtpQuality>,
    /// Labelled sets never used for training or choices.
    pub test: Vec<SetQuality>,
    /// RTP dev split (used for model choices).
    pub dev_rtp: Option<RtpQuality>,
    /// HateXplain and Davidson dev splits (used for model choices).
    pub dev: Vec<SetQuality>,
    /// Identity bias on the templates.
    pub bias: Option<BiasQuality>,
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

fn dev(examples: Vec<Example>) -> Vec<Example> {
    examples
        .into_iter()
        .filter(|e| e.split() == Split::Dev)
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
    Ok(SetQuality {
        name: name.to_string(),
        what: what.to_string(),
        n: rows.len(),
        positives: labels.iter().filter(|&&l| l).count(),
        auc: roc_auc(&s, &labels),
        perspective_spearman: spearman(&ps, &pt),
    })
}

/// Dev examples of a training set as labelled texts: `target` >= 0.5 is toxic.
fn dev_labelled(ex: &[Example], target: &str) -> Result<Vec<Labelled>, TrainError> {
    let t = crate::data::shared_index(target)
        .ok_or_else(|| TrainError::Data(format!("no target `{target}`")))?;
    Ok(ex
        .iter()
        .map(|e| Labelled {
            text: e.text.clone(),
            label: e.targets[t].unwrap_or(0.0) >= 0.5,
            perspective: None,
        })
        .collect())
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
        let (mut s, mut t) = (Vec::new(), Vec::new());
        for (e, sc) in rtp.iter().zip(&all) {
            if let Some(y) = e.targets[a] {
                s.push(sc.values[j] as f64);
                t.push(y as f64);
            }
        }
        if let Some(r) = spearman(&s, &t) {
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

fn open(data: &Path, rel: &str) -> Result<std::fs::File, TrainError> {
    let p = data.join(rel);
    std::fs::File::open(&p).map_err(|e| TrainError::Io(p.display().to_string(), e))
}

fn headers(r: &mut csv::Reader<std::fs::File>, rel: &str) -> Result<Vec<String>, TrainError> {
    Ok(r.headers()
        .map_err(|e| TrainError::Data(format!("{rel}: {e}")))?
        .iter()
        .map(String::from)
        .collect())
}

fn col(h: &[String], name: &str, rel: &str) -> Result<usize, TrainError> {
    h.iter()
        .position(|c| c == name)
        .ok_or_else(|| TrainError::Data(format!("{rel}: no column `{name}`")))
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

const TOXICHAT: &str = "toxichat/train.jsonl";

/// ToxiChat's two final language-model responses per thread (DialoGPT, GPT-3), each labelled
/// `Offensive` or `Safe` by people (`offense_label`); the Reddit turns before them are left
/// out (this set stands for the register of model output).
fn read_toxichat(data: &Path) -> Result<Vec<Labelled>, TrainError> {
    use std::io::BufRead;
    let r = std::io::BufReader::new(open(data, TOXICHAT)?);
    let mut out = Vec::new();
    for (i, line) in r.lines().enumerate() {
        let line = line.map_err(|e| TrainError::Io(TOXICHAT.into(), e))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| TrainError::Data(format!("{TOXICHAT}: line {}: {e}", i + 1)))?;
        for part in ["final_dgpt_response", "final_gpt3_response"] {
            let Some(obj) = v.get(part) else { continue };
            let (Some(text), Some(label)) = (
                obj.get("text").and_then(|t| t.as_str()),
                obj.get("offense_label").and_then(|t| t.as_str()),
            ) else {
                continue;
            };
            let label = match label {
                "Offensive" => true,
                "Safe" => false,
                _ => continue,
            };
            out.push(Labelled {
                text: text.trim().to_string(),
                label,
                perspective: None,
            });
        }
    }
    Ok(out)
}

const SBIC: &str = "sbic-dev/SBFv2.dev.csv";

/// Social Bias Frames dev posts: one row per rater; a post is offensive when the mean of its
/// raters' `offensiveYN` (0, 0.5 or 1; blanks ignored) is at least 0.5. Posts in first-seen
/// order; posts without a rating are left out.
fn read_sbic(data: &Path) -> Result<Vec<Labelled>, TrainError> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(open(data, SBIC)?);
    let h = headers(&mut r, SBIC)?;
    let (c_post, c_off) = (col(&h, "post", SBIC)?, col(&h, "offensiveYN", SBIC)?);
    let mut order: Vec<String> = Vec::new();
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| TrainError::Data(format!("{SBIC}: {e}")))?;
        let Some(post) = rec.get(c_post) else {
            continue;
        };
        let e = sums.entry(post.to_string()).or_insert_with(|| {
            order.push(post.to_string());
            (0.0, 0)
        });
        if let Some(v) = rec.get(c_off).and_then(|v| v.trim().parse::<f64>().ok()) {
            e.0 += v;
            e.1 += 1;
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|post| {
            let (sum, n) = sums[&post];
            (n > 0).then(|| Labelled {
                label: sum / n as f64 >= 0.5,
                text: post,
                perspective: None,
            })
        })
        .collect())
}

const CAT_LARGE: &str = "cat-large/gn.csv";

/// CAT-LARGE: Wikipedia talk comments with a human majority label (`label` 1: toxic) and
/// Perspective's TOXICITY scored in 2020 (`api`).
fn read_cat_large(data: &Path) -> Result<Vec<Labelled>, TrainError> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(open(data, CAT_LARGE)?);
    let h = headers(&mut r, CAT_LARGE)?;
    let (c_text, c_label, c_api) = (
        col(&h, "text", CAT_LARGE)?,
        col(&h, "label", CAT_LARGE)?,
        col(&h, "api", CAT_LARGE)?,
    );
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| TrainError::Data(format!("{CAT_LARGE}: {e}")))?;
        let (Some(text), Some(label)) = (rec.get(c_text), rec.get(c_label)) else {
            continue;
        };
        let label = match label.trim() {
            "1" => true,
            "0" => false,
            _ => continue,
        };
        out.push(Labelled {
            text: text.to_string(),
            label,
            perspective: rec.get(c_api).and_then(|v| v.trim().parse::<f64>().ok()),
        });
    }
    Ok(out)
}

/// The RealToxicityPrompts file of `rtp-more`.
const RTP_MORE: &str = "rtp-more/toxic-2k.jsonl";

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

/// Measures `scorer` (its `attribute` as the toxicity score) on the test sets, the dev
/// splits and the identity templates under `data`; data sets whose files are missing are
/// listed in [`QualityReport::skipped`]. `progress(stage, done, total)` reports work.
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

    // Test sets: never trained on, never consulted for a choice.
    let test_rtp = match missing(data, "rtp-more", &[RTP_MORE]) {
        Some(s) => {
            skipped.push(s);
            None
        }
        None => Some(rtp_quality(
            scorer,
            "rtp-more",
            &read_rtp_files(data, &[RTP_MORE], "rtp-more")?,
            attr,
            progress,
        )?),
    };
    type Reader = fn(&Path) -> Result<Vec<Labelled>, TrainError>;
    let sets: [(&str, &str, &str, Reader); 4] = [
        (
            "cat-large",
            CAT_LARGE,
            "Wikipedia talk comments, human majority label toxic vs not",
            read_cat_large,
        ),
        (
            "olid",
            OLID,
            "tweets, OffensEval subtask A: offensive vs not",
            read_olid,
        ),
        (
            "toxichat",
            TOXICHAT,
            "DialoGPT and GPT-3 replies to Reddit threads: offensive vs safe",
            read_toxichat,
        ),
        (
            "sbic-dev",
            SBIC,
            "posts, mean rater offensiveness >= 0.5 vs below",
            read_sbic,
        ),
    ];
    let mut test = Vec::new();
    for (name, file, what, read) in sets {
        if let Some(s) = missing(data, name, &[file]) {
            skipped.push(s);
            continue;
        }
        test.push(set_quality(
            scorer,
            name,
            what,
            &read(data)?,
            attr,
            progress,
        )?);
    }

    // Dev splits of the training sets: hyper-parameters were chosen on these.
    let dev_rtp = match missing(data, "rtp-subset", &RTP_FILES) {
        Some(s) => {
            skipped.push(s);
            None
        }
        None => Some(rtp_quality(
            scorer,
            "rtp-subset dev",
            &dev(read_rtp_files(data, &RTP_FILES, "rtp")?),
            attr,
            progress,
        )?),
    };
    let mut dev_sets = Vec::new();
    if let Some(s) = missing(data, "hatexplain", &["hatexplain/train_val.csv"]) {
        skipped.push(s);
    } else {
        let rows = dev_labelled(&dev(read_hatexplain(data)?), "aux_hatexplain_toxic")?;
        dev_sets.push(set_quality(
            scorer,
            "hatexplain dev",
            "posts, majority hate or offensive vs normal",
            &rows,
            attr,
            progress,
        )?);
    }
    if let Some(s) = missing(
        data,
        "davidson-hate-offensive",
        &["davidson-hate-offensive/labeled_data.csv"],
    ) {
        skipped.push(s);
    } else {
        let rows = dev_labelled(&dev(read_davidson(data)?), "aux_davidson_offensive")?;
        dev_sets.push(set_quality(
            scorer,
            "davidson dev",
            "tweets, majority hate or offensive vs neither",
            &rows,
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

    Ok(QualityReport {
        scorer: info.id.clone(),
        attribute: attribute.to_string(),
        threshold,
        test_rtp,
        test,
        dev_rtp,
        dev: dev_sets,
        bias,
        skipped,
    })
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
        s.push_str("TEST: never used for training or model choices\n");
        if let Some(r) = &self.test_rtp {
            render_rtp(&mut s, r);
        }
        for q in &self.test {
            render_set(&mut s, q);
        }
        s.push_str("DEV: held out of training but used for model choices (optimistic)\n");
        if let Some(r) = &self.dev_rtp {
            render_rtp(&mut s, r);
        }
        for q in &self.dev {
            render_set(&mut s, q);
        }
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
