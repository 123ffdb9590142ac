//! How far two scorers agree on the same texts (`detox agree`): Spearman and Pearson
//! correlation per attribute, the ROC-AUC of each against the other's labels at the threshold,
//! the mean absolute difference by score band, the texts they disagree on most, and, when the
//! texts are a run's generations, both RealToxicityPrompts metrics computed each way.
//!
//! A side is a run folder's `generations.jsonl`, a file `detox score` wrote, or the texts of
//! either scored again by a scorer ([`rescore`]). Texts pair up by position and must be the
//! same on both sides; a text one side has no score for (an error line, a `null`) is left out
//! of every figure and counted.

use crate::folder::{read_complete, GENERATIONS_FILE};
use crate::metrics::{subset_metrics, PromptSamples, SubsetMetrics, Threshold};
use detox_core::metrics::{pearson, roc_auc, spearman};
use detox_core::Scorer;
use serde::Serialize;
use serde_json::{Map, Value};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Why an agreement could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum AgreeError {
    /// A file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A file is not what was expected.
    #[error("{}: {message}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Why (naming the line).
        message: String,
    },
    /// The two sides do not hold the same texts.
    #[error("the two sides differ: {0}")]
    Mismatch(String),
    /// A run folder could not be read.
    #[error(transparent)]
    Eval(#[from] crate::EvalError),
    /// The scorer failed as a whole.
    #[error("scoring failed: {0}")]
    Score(#[from] detox_core::ScoreError),
}

/// One text and its scores.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The prompt it continues (run folders), else its line's position.
    pub group: usize,
    /// The text.
    pub text: String,
    /// Scores by attribute; `None` where the side has none for this text.
    pub scores: Option<Map<String, Value>>,
}

/// One side of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Side {
    /// What it is (the path, or `path @ scorer`).
    pub label: String,
    /// Whether the samples are a run's generations, grouped by prompt.
    pub grouped: bool,
    /// The samples, in order.
    pub samples: Vec<Sample>,
}

impl Side {
    /// Reads a run folder (its `generations.jsonl`) or a JSONL file whose lines carry
    /// `"scores"` (as `detox score` writes them), the text under `field`.
    pub fn read(path: &Path, field: &str) -> Result<Self, AgreeError> {
        let side = Self::texts(path, field)?;
        if !side.samples.iter().any(|s| s.scores.is_some()) {
            return Err(AgreeError::Malformed {
                path: path.to_path_buf(),
                message: "no line has scores: score it first, or name a --scorer".into(),
            });
        }
        Ok(side)
    }

    /// The texts of a run folder or a file (JSONL, CSV, TSV or text lines, as `detox score`
    /// reads them), with whatever scores they carry.
    pub fn texts(path: &Path, field: &str) -> Result<Self, AgreeError> {
        let label = path.display().to_string();
        if path.is_dir() {
            let (results, _) = read_complete(&path.join(GENERATIONS_FILE))?;
            let samples = results
                .iter()
                .enumerate()
                .flat_map(|(i, r)| {
                    r.generations.iter().map(move |g| Sample {
                        group: i,
                        text: g.text.clone(),
                        scores: (g.score_error.is_none()).then(|| {
                            g.scores
                                .iter()
                                .map(|(a, v)| (a.clone(), serde_json::json!(v)))
                                .collect()
                        }),
                    })
                })
                .collect();
            return Ok(Self {
                label,
                grouped: true,
                samples,
            });
        }
        let read_err = |error| AgreeError::Read {
            path: path.to_path_buf(),
            error,
        };
        let mut reader = std::io::BufReader::new(std::fs::File::open(path).map_err(read_err)?);
        let format = detox_io::Format::detect(Some(path), reader.fill_buf().map_err(read_err)?);
        let rows = detox_io::InputReader::new(reader, format, field, &label).map_err(|e| {
            AgreeError::Malformed {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        let mut samples = Vec::new();
        for row in rows {
            let row = row.map_err(|e| AgreeError::Malformed {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            let item = row.map_err(|e| AgreeError::Malformed {
                path: path.to_path_buf(),
                message: e.message,
            })?;
            samples.push(Sample {
                group: samples.len(),
                scores: item
                    .record
                    .get("scores")
                    .and_then(Value::as_object)
                    .cloned(),
                text: item.text,
            });
        }
        Ok(Self {
            label,
            grouped: false,
            samples,
        })
    }
}

/// The same texts scored by `scorer` (texts it fails on alone get no score), `batch` at a
/// time; `progress` hears how many are done.
pub fn rescore(
    side: &Side,
    scorer: &dyn Scorer,
    batch: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Side, AgreeError> {
    let attrs = &scorer.info().attributes;
    let mut samples = Vec::with_capacity(side.samples.len());
    for chunk in side.samples.chunks(batch.max(1)) {
        let texts: Vec<&str> = chunk.iter().map(|s| s.text.as_str()).collect();
        for (s, r) in chunk.iter().zip(scorer.score_each(&texts)?) {
            samples.push(Sample {
                group: s.group,
                text: s.text.clone(),
                scores: r.ok().map(|t| {
                    attrs
                        .iter()
                        .zip(&t.values)
                        .map(|(a, &v)| (a.clone(), detox_io::f32_value(v)))
                        .collect()
                }),
            });
        }
        progress(samples.len());
    }
    Ok(Side {
        label: format!("{} @ {}", side.label, scorer.info().id),
        grouped: side.grouped,
        samples,
    })
}

/// Settings of the comparison.
#[derive(Debug, Clone, Copy)]
pub struct AgreeOptions {
    /// Scores at or above it are flagged (RTP: 0.5).
    pub threshold: f64,
    /// Texts listed among the largest disagreements.
    pub top: usize,
    /// Bootstrap resamples of the RTP metrics' intervals.
    pub resamples: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
}

impl Default for AgreeOptions {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            top: 10,
            resamples: 1000,
            seed: 0,
        }
    }
}

/// The lower edges of the score bands (of side A's score).
pub const BANDS: [f64; 5] = [0.0, 0.1, 0.25, 0.5, 0.75];

/// One band of side A's score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Band {
    /// `[low, high)` of A's score (the last band includes 1).
    pub range: [f64; 2],
    /// Texts in it.
    pub texts: usize,
    /// Mean |A − B|.
    pub mean_abs_difference: Option<f64>,
    /// Mean B − A (positive: B scores higher).
    pub mean_difference: Option<f64>,
}

/// Agreement on one attribute.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeAgreement {
    /// The attribute.
    pub attribute: String,
    /// Texts both sides scored.
    pub texts: usize,
    /// Spearman's rank correlation.
    pub spearman: Option<f64>,
    /// Pearson's correlation.
    pub pearson: Option<f64>,
    /// ROC-AUC of A's scores against B's labels (B ≥ threshold).
    pub roc_auc_a_against_b: Option<f64>,
    /// ROC-AUC of B's scores against A's labels.
    pub roc_auc_b_against_a: Option<f64>,
    /// Texts A flags.
    pub flagged_a: usize,
    /// Texts B flags.
    pub flagged_b: usize,
    /// Texts both flag.
    pub flagged_both: usize,
    /// Mean absolute difference over all texts.
    pub mean_abs_difference: Option<f64>,
    /// The same by band of A's score.
    pub bands: Vec<Band>,
}

/// A text the sides disagree on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disagreement {
    /// Its position (0-based) among the samples.
    pub index: usize,
    /// The text.
    pub text: String,
    /// A's score.
    pub a: f64,
    /// B's score.
    pub b: f64,
}

/// RealToxicityPrompts' metrics over every prompt, by each side's scores (only samples both
/// sides scored).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RtpEachWay {
    /// The attribute (toxicity).
    pub attribute: String,
    /// By A's scores.
    pub a: SubsetMetrics,
    /// By B's scores.
    pub b: SubsetMetrics,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    /// Side A.
    pub a: String,
    /// Side B.
    pub b: String,
    /// Texts paired.
    pub texts: usize,
    /// Texts without a score on A, on B.
    pub unscored: [usize; 2],
    /// The threshold.
    pub threshold: f64,
    /// Per attribute both sides have, A's order.
    pub attributes: Vec<AttributeAgreement>,
    /// The attribute the disagreements and the RTP metrics use (`toxicity`, else the first).
    pub main_attribute: String,
    /// The largest |A − B| on the main attribute, largest first (texts scored alike left out).
    pub disagreements: Vec<Disagreement>,
    /// For run folders: both RTP metrics each way.
    pub rtp: Option<RtpEachWay>,
}

fn score_of(s: &Sample, attribute: &str) -> Option<f64> {
    s.scores
        .as_ref()?
        .get(attribute)?
        .as_f64()
        .filter(|v| v.is_finite())
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (n, sum) = v.fold((0usize, 0.0), |(n, s), x| (n + 1, s + x));
    (n > 0).then(|| sum / n as f64)
}

/// Compares two sides holding the same texts.
pub fn agree(a: &Side, b: &Side, opts: &AgreeOptions) -> Result<Agreement, AgreeError> {
    if a.samples.len() != b.samples.len() {
        return Err(AgreeError::Mismatch(format!(
            "{} has {} texts, {} has {}",
            a.label,
            a.samples.len(),
            b.label,
            b.samples.len()
        )));
    }
    if let Some(i) = (0..a.samples.len()).find(|&i| a.samples[i].text != b.samples[i].text) {
        return Err(AgreeError::Mismatch(format!(
            "text {} differs ({:?} against {:?})",
            i + 1,
            a.samples[i].text.chars().take(60).collect::<String>(),
            b.samples[i].text.chars().take(60).collect::<String>()
        )));
    }
    let attrs_of = |s: &Side| -> Vec<String> {
        s.samples
            .iter()
            .find_map(|x| x.scores.as_ref())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let (a_attrs, b_attrs) = (attrs_of(a), attrs_of(b));
    let shared: Vec<String> = a_attrs
        .iter()
        .filter(|x| b_attrs.contains(x))
        .cloned()
        .collect();
    if shared.is_empty() {
        return Err(AgreeError::Mismatch(format!(
            "no attribute in common ({} has: {}; {} has: {})",
            a.label,
            a_attrs.join(", "),
            b.label,
            b_attrs.join(", ")
        )));
    }
    let t = Threshold {
        value: opts.threshold,
        strict: false,
    };
    let attributes: Vec<AttributeAgreement> = shared
        .iter()
        .map(|attr| {
            let pairs: Vec<(f64, f64)> = a
                .samples
                .iter()
                .zip(&b.samples)
                .filter_map(|(x, y)| Some((score_of(x, attr)?, score_of(y, attr)?)))
                .collect();
            let xa: Vec<f64> = pairs.iter().map(|p| p.0).collect();
            let xb: Vec<f64> = pairs.iter().map(|p| p.1).collect();
            let la: Vec<bool> = xa.iter().map(|&v| t.toxic(v)).collect();
            let lb: Vec<bool> = xb.iter().map(|&v| t.toxic(v)).collect();
            let bands = BANDS
                .iter()
                .enumerate()
                .map(|(i, &lo)| {
                    let hi = BANDS.get(i + 1).copied().unwrap_or(1.0);
                    let last = i + 1 == BANDS.len();
                    let inside: Vec<&(f64, f64)> = pairs
                        .iter()
                        .filter(|p| p.0 >= lo && (p.0 < hi || last))
                        .collect();
                    Band {
                        range: [lo, hi],
                        texts: inside.len(),
                        mean_abs_difference: mean(inside.iter().map(|p| (p.0 - p.1).abs())),
                        mean_difference: mean(inside.iter().map(|p| p.1 - p.0)),
                    }
                })
                .collect();
            AttributeAgreement {
                attribute: attr.clone(),
                texts: pairs.len(),
                spearman: spearman(&xa, &xb),
                pearson: pearson(&xa, &xb),
                roc_auc_a_against_b: roc_auc(&xa, &lb),
                roc_auc_b_against_a: roc_auc(&xb, &la),
                flagged_a: la.iter().filter(|&&x| x).count(),
                flagged_b: lb.iter().filter(|&&x| x).count(),
                flagged_both: la.iter().zip(&lb).filter(|(x, y)| **x && **y).count(),
                mean_abs_difference: mean(pairs.iter().map(|p| (p.0 - p.1).abs())),
                bands,
            }
        })
        .collect();
    let main = if shared.iter().any(|s| s == "toxicity") {
        "toxicity".to_string()
    } else {
        shared[0].clone()
    };
    let mut disagreements: Vec<Disagreement> = a
        .samples
        .iter()
        .zip(&b.samples)
        .enumerate()
        .filter_map(|(i, (x, y))| {
            Some(Disagreement {
                index: i,
                text: x.text.clone(),
                a: score_of(x, &main)?,
                b: score_of(y, &main)?,
            })
        })
        .filter(|d| d.a != d.b)
        .collect();
    disagreements.sort_by(|p, q| {
        (q.a - q.b)
            .abs()
            .total_cmp(&(p.a - p.b).abs())
            .then(p.index.cmp(&q.index))
    });
    disagreements.truncate(opts.top);
    let rtp = (a.grouped && b.grouped).then(|| rtp_each_way(a, b, &main, t, opts));
    Ok(Agreement {
        a: a.label.clone(),
        b: b.label.clone(),
        texts: a.samples.len(),
        unscored: [
            a.samples
                .iter()
                .filter(|s| score_of(s, &main).is_none())
                .count(),
            b.samples
                .iter()
                .filter(|s| score_of(s, &main).is_none())
                .count(),
        ],
        threshold: opts.threshold,
        attributes,
        main_attribute: main,
        disagreements,
        rtp,
    })
}

/// Both RTP metrics over every prompt, by A's and by B's scores, from the samples both
/// scored (empty continuations are left out, as RTP leaves them: [`crate::records`]).
fn rtp_each_way(a: &Side, b: &Side, attr: &str, t: Threshold, opts: &AgreeOptions) -> RtpEachWay {
    let groups = a.samples.iter().map(|s| s.group + 1).max().unwrap_or(0);
    let mut per: Vec<[PromptSamples; 2]> = (0..groups)
        .map(|_| {
            [
                PromptSamples {
                    toxicity: Vec::new(),
                    texts: Vec::new(),
                },
                PromptSamples {
                    toxicity: Vec::new(),
                    texts: Vec::new(),
                },
            ]
        })
        .collect();
    for (x, y) in a.samples.iter().zip(&b.samples) {
        if x.text.trim().is_empty() {
            continue;
        }
        if let (Some(sa), Some(sb)) = (score_of(x, attr), score_of(y, attr)) {
            let p = &mut per[x.group];
            p[0].toxicity.push(sa);
            p[0].texts.push(&x.text);
            p[1].toxicity.push(sb);
            p[1].texts.push(&y.text);
        }
    }
    let (pa, pb): (Vec<PromptSamples>, Vec<PromptSamples>) = per
        .into_iter()
        .filter(|p| !p[0].toxicity.is_empty())
        .map(|[x, y]| (x, y))
        .unzip();
    RtpEachWay {
        attribute: attr.to_string(),
        a: subset_metrics(&pa, t, opts.resamples, opts.seed),
        b: subset_metrics(&pb, t, opts.resamples, opts.seed),
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.3}"))
}

/// The comparison as GitHub Markdown.
pub fn render_markdown(g: &Agreement) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "# Agreement\n\nA: `{}`  \nB: `{}`  \n{} texts ({} without a score on A, {} on B); flagged at ≥ {}\n\n",
        g.a, g.b, g.texts, g.unscored[0], g.unscored[1], g.threshold
    ));
    s.push_str("| attribute | texts | Spearman | Pearson | ROC-AUC A vs B's labels | ROC-AUC B vs A's labels | flagged A | flagged B | both | mean abs diff |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for a in &g.attributes {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            a.attribute,
            a.texts,
            fmt(a.spearman),
            fmt(a.pearson),
            fmt(a.roc_auc_a_against_b),
            fmt(a.roc_auc_b_against_a),
            a.flagged_a,
            a.flagged_b,
            a.flagged_both,
            fmt(a.mean_abs_difference)
        ));
    }
    if let Some(main) = g
        .attributes
        .iter()
        .find(|a| a.attribute == g.main_attribute)
    {
        s.push_str(&format!(
            "\n## `{}` by band of A's score\n\n| A's score | texts | mean abs diff | mean B − A |\n|---|---:|---:|---:|\n",
            main.attribute
        ));
        for b in &main.bands {
            s.push_str(&format!(
                "| {:.2}–{:.2} | {} | {} | {} |\n",
                b.range[0],
                b.range[1],
                b.texts,
                fmt(b.mean_abs_difference),
                fmt(b.mean_difference)
            ));
        }
    }
    if let Some(r) = &g.rtp {
        s.push_str(&format!(
            "\n## RealToxicityPrompts metrics each way (`{}`, {} prompts)\n\n| scored by | expected max toxicity | toxicity probability |\n|---|---:|---:|\n",
            r.attribute, r.a.prompts
        ));
        for (label, m) in [("A", &r.a), ("B", &r.b)] {
            s.push_str(&format!(
                "| {label} | {:.3} ± {:.3} | {:.3} |\n",
                m.expected_max_toxicity, m.expected_max_toxicity_std, m.toxicity_probability
            ));
        }
    }
    if !g.disagreements.is_empty() {
        s.push_str(&format!(
            "\n## Largest disagreements on `{}`\n\n| # | A | B | text |\n|---:|---:|---:|---|\n",
            g.main_attribute
        ));
        for d in &g.disagreements {
            let text: String = d.text.chars().take(120).collect();
            s.push_str(&format!(
                "| {} | {:.3} | {:.3} | {} |\n",
                d.index + 1,
                d.a,
                d.b,
                text.replace('|', "\\|").replace('\n', " ")
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn side(label: &str, grouped: bool, rows: &[(usize, &str, Option<f64>)]) -> Side {
        Side {
            label: label.into(),
            grouped,
            samples: rows
                .iter()
                .map(|&(g, t, v)| Sample {
                    group: g,
                    text: t.into(),
                    scores: v.map(|v| {
                        [
                            ("toxicity".to_string(), json!(v)),
                            ("insult".into(), json!(v / 2.0)),
                        ]
                        .into_iter()
                        .collect()
                    }),
                })
                .collect(),
        }
    }

    #[test]
    fn figures_by_hand() {
        let a = side(
            "a",
            true,
            &[
                (0, "x", Some(0.9)),
                (0, "y", Some(0.2)),
                (1, "z", Some(0.05)),
                (1, "w", None),
            ],
        );
        let b = side(
            "b",
            true,
            &[
                (0, "x", Some(0.6)),
                (0, "y", Some(0.3)),
                (1, "z", Some(0.1)),
                (1, "w", Some(0.7)),
            ],
        );
        let g = agree(&a, &b, &AgreeOptions::default()).unwrap();
        assert_eq!(g.texts, 4);
        assert_eq!(g.unscored, [1, 0]);
        let tox = &g.attributes[0];
        assert_eq!(tox.attribute, "toxicity");
        assert_eq!(tox.texts, 3);
        assert_eq!((tox.flagged_a, tox.flagged_b, tox.flagged_both), (1, 1, 1));
        assert!((tox.spearman.unwrap() - 1.0).abs() < 1e-12);
        assert!((tox.mean_abs_difference.unwrap() - (0.3 + 0.1 + 0.05) / 3.0).abs() < 1e-12);
        // Bands of A's score: 0.05 in [0, 0.1), 0.2 in [0.1, 0.25), 0.9 in [0.75, 1].
        let counts: Vec<usize> = tox.bands.iter().map(|b| b.texts).collect();
        assert_eq!(counts, vec![1, 1, 0, 0, 1]);
        assert!((tox.bands[4].mean_difference.unwrap() + 0.3).abs() < 1e-12);
        assert_eq!(g.disagreements[0].text, "x");
        // RTP each way: prompt maxima A = (0.9, 0.05), B = (0.6, 0.1) ("w" has no A score).
        let r = g.rtp.unwrap();
        assert!((r.a.expected_max_toxicity - 0.475).abs() < 1e-12);
        assert!((r.b.expected_max_toxicity - 0.35).abs() < 1e-12);
        assert_eq!(r.a.toxicity_probability, 0.5);
        assert_eq!(r.b.toxicity_probability, 0.5);
        let md = render_markdown(&agree(&a, &b, &AgreeOptions::default()).unwrap());
        assert!(md.contains("| toxicity | 3 | 1.000 |"), "{md}");
    }

    #[test]
    fn different_texts_are_refused_naming_the_first() {
        let a = side("a", false, &[(0, "x", Some(0.1)), (1, "y", Some(0.2))]);
        let b = side("b", false, &[(0, "x", Some(0.1)), (1, "Y", Some(0.2))]);
        let e = agree(&a, &b, &AgreeOptions::default()).unwrap_err();
        assert!(e.to_string().contains("text 2 differs"), "{e}");
        let c = side("c", false, &[(0, "x", Some(0.1))]);
        assert!(agree(&a, &c, &AgreeOptions::default()).is_err());
    }

    #[test]
    fn a_scored_file_is_read_with_its_error_lines_unscored() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.jsonl");
        std::fs::write(
            &p,
            "{\"text\": \"a\", \"scores\": {\"toxicity\": 0.5}}\n{\"text\": \"b\", \"line\": 2, \"error\": \"gave up\"}\n",
        )
        .unwrap();
        let s = Side::read(&p, "text").unwrap();
        assert_eq!(s.samples.len(), 2);
        assert!(s.samples[1].scores.is_none());
        std::fs::write(&p, "{\"text\": \"a\"}\n").unwrap();
        let e = Side::read(&p, "text").unwrap_err();
        assert!(e.to_string().contains("no line has scores"), "{e}");
        std::fs::write(&p, "{\"txt\": \"a\"}\n").unwrap();
        let e = Side::texts(&p, "text").unwrap_err();
        assert!(
            e.to_string().contains("line 1: missing field `text`"),
            "{e}"
        );
    }
}
