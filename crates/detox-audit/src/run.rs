//! The audit run: score the texts, then compute every figure with its bootstrap interval.

use crate::data::{self, FileSpec, LabelledText};
use crate::metrics::{self, Scored};
use crate::report::*;
use crate::AuditError;
use detox_core::rng::SplitMix64;
use detox_core::Scorer;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Figures' settings.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// The attribute used as the toxicity score.
    pub attribute: String,
    /// Score at or above which a text counts as flagged.
    pub threshold: f64,
    /// Seed of the bootstrap and the HolisticBias subsample.
    pub seed: u64,
    /// Bootstrap replicates per group (0: no intervals).
    pub bootstrap: usize,
    /// Groups with fewer rows are marked too small (and left out of the summaries).
    pub min_group: usize,
    /// HolisticBias sentences kept per descriptor (0: all).
    pub per_descriptor: usize,
    /// Texts handed to the scorer at once.
    pub chunk: usize,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            attribute: "toxicity".into(),
            threshold: 0.5,
            seed: 0,
            bootstrap: 1000,
            min_group: 30,
            per_descriptor: 32,
            chunk: 4096,
        }
    }
}

/// The identity terms a scorer's training data names.
#[derive(Debug, Clone)]
pub struct TrainedTerms {
    /// Where the list comes from (for the report).
    pub source: String,
    /// The terms, lower case.
    pub terms: Vec<String>,
}

impl TrainedTerms {
    /// A list of terms, one per line (blank lines and `#` comments skipped), lower-cased.
    pub fn from_file(path: &Path) -> Result<Self, AuditError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let terms: Vec<String> = text
            .lines()
            .map(|l| l.trim().to_lowercase())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        if terms.is_empty() {
            return Err(AuditError::Data {
                path: path.to_path_buf(),
                line: 0,
                message: "no terms (one identity term per line)".into(),
            });
        }
        Ok(Self {
            source: path.display().to_string(),
            terms,
        })
    }
}

/// What to audit.
#[derive(Debug, Clone)]
pub enum AuditData {
    /// A folder laid out like `../shared/data`: Dixon's templates and HolisticBias.
    Folder(PathBuf),
    /// A user's labelled file.
    File(FileSpec),
}

impl AuditData {
    /// What `--data PATH` means: a folder is audited with Dixon's templates and
    /// HolisticBias; a file is a user's labelled file, whose `label` and `group` fields must
    /// then be named (an error says so).
    pub fn from_path(
        path: &Path,
        field: &str,
        label: Option<&str>,
        group: Option<&str>,
    ) -> Result<Self, AuditError> {
        if path.is_dir() {
            if label.is_some() || group.is_some() {
                return Err(AuditError::Usage(format!(
                    "{} is a folder (Dixon's templates and HolisticBias); --label and --group apply to a labelled file given as --data FILE",
                    path.display()
                )));
            }
            return Ok(Self::Folder(path.to_path_buf()));
        }
        if !path.exists() {
            return Err(AuditError::Missing(path.to_path_buf()));
        }
        match (label, group) {
            (Some(l), Some(g)) => Ok(Self::File(FileSpec {
                path: path.to_path_buf(),
                field: field.to_string(),
                label: l.to_string(),
                group: g.to_string(),
            })),
            _ => Err(AuditError::Usage(format!(
                "{} is a file: name its label field with --label and its group field with --group (and its text field with --field, default `text`)",
                path.display()
            ))),
        }
    }
}

/// Writes `audit.json` and `audit.html` into `dir` (created if needed; each file written
/// atomically), returning their paths.
pub fn write_reports(report: &AuditReport, dir: &Path) -> Result<Vec<PathBuf>, AuditError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| AuditError::Output(format!("{}: {e}", dir.display())))?;
    let json =
        serde_json::to_string_pretty(report).map_err(|e| AuditError::Output(e.to_string()))?;
    let files = [
        (dir.join("audit.json"), json + "\n"),
        (dir.join("audit.html"), crate::render::html(report)),
    ];
    for (p, text) in &files {
        detox_io::files::write_atomic(p, text.as_bytes())
            .map_err(|e| AuditError::Output(e.to_string()))?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

/// Everything a run needs besides the scorer.
#[derive(Debug, Clone)]
pub struct AuditPlan {
    /// The `--scorer` value (recorded).
    pub scorer: String,
    /// The scorer's identity with hashes (recorded).
    pub scorer_identity: serde_json::Value,
    /// The data.
    pub data: AuditData,
    /// The terms the scorer's training data names, where known.
    pub trained: Option<TrainedTerms>,
    /// The figures' settings.
    pub options: AuditOptions,
}

/// `path` with its sha256, for a report's list of the files read.
pub(crate) fn sha(path: &Path) -> Result<DataFile, AuditError> {
    Ok(DataFile {
        path: path.display().to_string(),
        sha256: detox_io::files::sha256_file(path).map_err(|e| AuditError::Input(e.to_string()))?,
    })
}

/// Scores `texts` (sorted by length, so batches pad little, and handed over `chunk` at a
/// time), returning the attribute's score per text in input order. A missing or non-finite
/// score is an error.
pub fn score_texts(
    scorer: &dyn Scorer,
    texts: &[&str],
    attr: usize,
    chunk: usize,
    progress: &mut dyn FnMut(&str, usize, usize),
    stage: &str,
) -> Result<Vec<f64>, AuditError> {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| texts[i].len());
    let mut out = vec![0.0; texts.len()];
    let mut done = 0;
    for ids in order.chunks(chunk.max(1)) {
        let batch: Vec<&str> = ids.iter().map(|&i| texts[i]).collect();
        let scores = scorer.score(&batch)?;
        if scores.len() != batch.len() {
            return Err(AuditError::Scorer(format!(
                "returned {} scores for {} texts",
                scores.len(),
                batch.len()
            )));
        }
        for (&i, s) in ids.iter().zip(&scores) {
            match s.values.get(attr) {
                Some(v) if v.is_finite() => out[i] = *v as f64,
                _ => {
                    return Err(AuditError::Scorer(format!(
                        "returned {:?} for {:?}",
                        s.values, texts[i]
                    )))
                }
            }
        }
        done += ids.len();
        progress(stage, done, texts.len());
    }
    Ok(out)
}

/// FNV-1a, to give each group its own bootstrap stream.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Counts of `sorted` values greater than and equal to `x`.
fn above(sorted: &[f64], x: f64) -> f64 {
    let lo = sorted.partition_point(|v| *v < x);
    let hi = sorted.partition_point(|v| *v <= x);
    (sorted.len() - hi) as f64 + 0.5 * (hi - lo) as f64
}

/// Counts of `sorted` values below `x`, ties half.
fn below(sorted: &[f64], x: f64) -> f64 {
    let lo = sorted.partition_point(|v| *v < x);
    let hi = sorted.partition_point(|v| *v <= x);
    lo as f64 + 0.5 * (hi - lo) as f64
}

/// A group's rows, sorted by score, each with its BPSN (negatives) or BNSP (positives) pair
/// count against the fixed background.
struct Local {
    rows: Vec<Scored>,
    versus_background: Vec<f64>,
    background_pos: f64,
    background_neg: f64,
    threshold: f64,
}

impl Local {
    /// Subgroup AUC, BPSN AUC, BNSP AUC, FPR, FNR with each row counted `w[i]` times.
    fn figures(&self, w: Option<&[f64]>) -> [Option<f64>; 5] {
        let wt = |i: usize| w.map_or(1.0, |w| w[i]);
        let (mut wn, mut wp, mut bpsn, mut bnsp, mut fp, mut fneg) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        for (i, r) in self.rows.iter().enumerate() {
            let x = wt(i);
            if r.label {
                wp += x;
                bnsp += x * self.versus_background[i];
                fneg += x * f64::from(u8::from(r.score < self.threshold));
            } else {
                wn += x;
                bpsn += x * self.versus_background[i];
                fp += x * f64::from(u8::from(r.score >= self.threshold));
            }
        }
        let div = |a: f64, b: f64| (b > 0.0).then(|| a / b);
        [
            metrics::weighted_auc(&self.rows, w),
            div(bpsn, wn * self.background_pos),
            div(bnsp, wp * self.background_neg),
            div(fp, wn),
            div(fneg, wp),
        ]
    }
}

/// Draws `n` rows with replacement as per-row counts.
fn resample(rng: &mut SplitMix64, n: usize, w: &mut [f64]) {
    w.iter_mut().for_each(|x| *x = 0.0);
    for _ in 0..n {
        w[rng.below(n)] += 1.0;
    }
}

/// The per-group audit of labelled rows. `groups` lists groups to report even when no row
/// names them (Dixon's 50 terms); groups found in the rows are added.
///
/// Intervals resample the group's own rows (the background, far larger, is held fixed), as
/// [`metrics`]' weighted forms allow without copying.
pub fn group_audit(
    source: &str,
    rows: &[LabelledText],
    scores: &[f64],
    groups: &[String],
    trained: Option<&TrainedTerms>,
    opts: &AuditOptions,
) -> GroupAudit {
    let scored: Vec<Scored> = rows
        .iter()
        .zip(scores)
        .map(|(r, &score)| Scored {
            score,
            label: r.label,
        })
        .collect();
    let mut pos_all: Vec<f64> = scored.iter().filter(|r| r.label).map(|r| r.score).collect();
    let mut neg_all: Vec<f64> = scored
        .iter()
        .filter(|r| !r.label)
        .map(|r| r.score)
        .collect();
    pos_all.sort_by(f64::total_cmp);
    neg_all.sort_by(f64::total_cmp);
    let overall_fpr = metrics::fpr(&scored, opts.threshold);
    let overall_fnr = metrics::fnr(&scored, opts.threshold);
    let overall_auc = metrics::auc(&scored);

    let mut members: BTreeMap<String, Vec<usize>> =
        groups.iter().map(|g| (g.clone(), Vec::new())).collect();
    for (i, r) in rows.iter().enumerate() {
        if let Some(g) = &r.group {
            members.entry(g.clone()).or_default().push(i);
        }
    }
    let mut out = Vec::new();
    for (g, idx) in &members {
        let mut local: Vec<Scored> = idx.iter().map(|&i| scored[i]).collect();
        metrics::sort_by_score(&mut local);
        let mut p_t: Vec<f64> = local.iter().filter(|r| r.label).map(|r| r.score).collect();
        let mut n_t: Vec<f64> = local.iter().filter(|r| !r.label).map(|r| r.score).collect();
        p_t.sort_by(f64::total_cmp);
        n_t.sort_by(f64::total_cmp);
        let versus_background = local
            .iter()
            .map(|r| {
                if r.label {
                    below(&neg_all, r.score) - below(&n_t, r.score)
                } else {
                    above(&pos_all, r.score) - above(&p_t, r.score)
                }
            })
            .collect();
        let l = Local {
            rows: local,
            versus_background,
            background_pos: (pos_all.len() - p_t.len()) as f64,
            background_neg: (neg_all.len() - n_t.len()) as f64,
            threshold: opts.threshold,
        };
        let point = l.figures(None);
        let n = l.rows.len();
        let mut reps: [Vec<f64>; 5] = Default::default();
        if n > 0 {
            let mut rng = SplitMix64::new(opts.seed ^ fnv(g));
            let mut w = vec![0.0; n];
            for _ in 0..opts.bootstrap {
                resample(&mut rng, n, &mut w);
                for (k, v) in l.figures(Some(&w)).into_iter().enumerate() {
                    if let Some(v) = v {
                        reps[k].push(v);
                    }
                }
            }
        }
        let mut figs = point.into_iter().zip(reps).map(|(value, r)| Figure {
            value,
            ci: value.and_then(|_| metrics::percentile_interval(r)),
        });
        let mut next = || {
            figs.next().unwrap_or(Figure {
                value: None,
                ci: None,
            })
        };
        let positives = p_t.len();
        let training = match trained {
            None => Training::Unknown,
            Some(t) if t.terms.iter().any(|x| x.eq_ignore_ascii_case(g)) => Training::Named,
            Some(_) => Training::NotNamed,
        };
        out.push(GroupFigures {
            group: g.clone(),
            n,
            positives,
            training,
            too_small: n < opts.min_group || positives == 0 || positives == n,
            subgroup_auc: next(),
            bpsn_auc: next(),
            bnsp_auc: next(),
            fpr: next(),
            fnr: next(),
        });
    }
    out.sort_by(|a, b| {
        a.too_small
            .cmp(&b.too_small)
            .then_with(|| match (a.worst_auc(), b.worst_auc()) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
            .then_with(|| a.group.cmp(&b.group))
    });
    let mut summaries = vec![summary(
        "all",
        &out,
        |_| true,
        overall_auc,
        overall_fpr,
        overall_fnr,
    )];
    if trained.is_some() {
        for t in [Training::Named, Training::NotNamed] {
            summaries.push(summary(
                t.label(),
                &out,
                |g| g.training == t,
                overall_auc,
                overall_fpr,
                overall_fnr,
            ));
        }
    }
    GroupAudit {
        source: source.to_string(),
        n: rows.len(),
        positives: pos_all.len(),
        ungrouped: rows.iter().filter(|r| r.group.is_none()).count(),
        overall_auc,
        overall_fpr,
        overall_fnr,
        training_terms_source: trained.map(|t| t.source.clone()),
        groups: out,
        summaries,
    }
}

/// Summary figures over the groups `keep` selects, leaving out those too small.
fn summary(
    name: &str,
    groups: &[GroupFigures],
    keep: impl Fn(&GroupFigures) -> bool,
    overall_auc: Option<f64>,
    overall_fpr: Option<f64>,
    overall_fnr: Option<f64>,
) -> Summary {
    let chosen: Vec<&GroupFigures> = groups.iter().filter(|g| keep(g) && !g.too_small).collect();
    let vals = |f: fn(&GroupFigures) -> Figure| -> Vec<f64> {
        chosen.iter().filter_map(|g| f(g).value).collect()
    };
    let (sub, bpsn, bnsp) = (
        vals(|g| g.subgroup_auc),
        vals(|g| g.bpsn_auc),
        vals(|g| g.bnsp_auc),
    );
    let fpr: Vec<Option<f64>> = chosen.iter().map(|g| g.fpr.value).collect();
    let fnr: Vec<Option<f64>> = chosen.iter().map(|g| g.fnr.value).collect();
    let fped = overall_fpr.map_or(0.0, |o| metrics::equality_difference(o, &fpr));
    let fned = overall_fnr.map_or(0.0, |o| metrics::equality_difference(o, &fnr));
    let k = chosen.len() as f64;
    Summary {
        name: name.to_string(),
        groups: chosen.iter().map(|g| g.group.clone()).collect(),
        subgroup_auc_power_mean: metrics::power_mean(&sub, metrics::POWER),
        bpsn_auc_power_mean: metrics::power_mean(&bpsn, metrics::POWER),
        bnsp_auc_power_mean: metrics::power_mean(&bnsp, metrics::POWER),
        bias_metric: overall_auc.and_then(|o| metrics::final_bias_metric(o, &sub, &bpsn, &bnsp)),
        fped,
        fned,
        fped_per_group: (k > 0.0).then(|| fped / k),
        fned_per_group: (k > 0.0).then(|| fned / k),
    }
}

/// Share flagged and mean score of non-toxic sentences, with intervals from resampling them.
pub fn rate_group(
    name: &str,
    axis: Option<&str>,
    scores: &[f64],
    opts: &AuditOptions,
) -> RateGroup {
    let n = scores.len();
    let stats = |w: Option<&[f64]>| -> (Option<f64>, Option<f64>) {
        let (mut total, mut flagged, mut sum) = (0.0, 0.0, 0.0);
        for (i, s) in scores.iter().enumerate() {
            let x = w.map_or(1.0, |w| w[i]);
            total += x;
            sum += x * s;
            if *s >= opts.threshold {
                flagged += x;
            }
        }
        if total == 0.0 {
            (None, None)
        } else {
            (Some(flagged / total), Some(sum / total))
        }
    };
    let (f, m) = stats(None);
    let (mut rf, mut rm) = (Vec::new(), Vec::new());
    if n > 0 {
        let mut rng = SplitMix64::new(opts.seed ^ fnv(name) ^ axis.map_or(0, fnv));
        let mut w = vec![0.0; n];
        for _ in 0..opts.bootstrap {
            resample(&mut rng, n, &mut w);
            if let (Some(a), Some(b)) = stats(Some(&w)) {
                rf.push(a);
                rm.push(b);
            }
        }
    }
    RateGroup {
        name: name.to_string(),
        axis: axis.map(String::from),
        n,
        too_small: n < opts.min_group,
        flagged: Figure {
            value: f,
            ci: f.and_then(|_| metrics::percentile_interval(rf)),
        },
        mean_score: Figure {
            value: m,
            ci: m.and_then(|_| metrics::percentile_interval(rm)),
        },
    }
}

fn by_rate(groups: &mut [RateGroup]) {
    groups.sort_by(|a, b| {
        let k = |g: &RateGroup| {
            (
                g.flagged.value.unwrap_or(0.0),
                g.mean_score.value.unwrap_or(0.0),
            )
        };
        let (x, y) = (k(a), k(b));
        y.0.total_cmp(&x.0)
            .then(y.1.total_cmp(&x.1))
            .then_with(|| a.name.cmp(&b.name))
    });
}

/// The HolisticBias audit from scored sentences.
pub fn holistic_audit(
    sentences: &[data::HolisticSentence],
    scores: &[f64],
    total: usize,
    opts: &AuditOptions,
) -> HolisticAudit {
    let mut axes: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut descs: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    let mut temps: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (s, &x) in sentences.iter().zip(scores) {
        axes.entry(&s.axis).or_default().push(x);
        descs.entry((&s.axis, &s.descriptor)).or_default().push(x);
        temps.entry(&s.template).or_default().push(x);
    }
    let mut a: Vec<RateGroup> = axes
        .iter()
        .map(|(k, v)| rate_group(k, None, v, opts))
        .collect();
    let mut d: Vec<RateGroup> = descs
        .iter()
        .map(|((ax, k), v)| rate_group(k, Some(ax), v, opts))
        .collect();
    let mut t: Vec<RateGroup> = temps
        .iter()
        .map(|(k, v)| rate_group(k, None, v, opts))
        .collect();
    by_rate(&mut a);
    by_rate(&mut d);
    by_rate(&mut t);
    HolisticAudit {
        version: "v1.1".into(),
        total_sentences: total,
        n: sentences.len(),
        per_descriptor: opts.per_descriptor,
        overall: rate_group("all", None, scores, opts),
        axes: a,
        descriptors: d,
        templates: t,
    }
}

/// Runs the audit: reads the data, scores it with `scorer`, computes every figure.
/// `progress(stage, done, total)` hears the scoring.
pub fn audit(
    scorer: &dyn Scorer,
    plan: &AuditPlan,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<AuditReport, AuditError> {
    let opts = &plan.options;
    let info = scorer.info();
    let attr = info
        .attribute_index(&opts.attribute)
        .ok_or_else(|| AuditError::Attribute {
            attribute: opts.attribute.clone(),
            scorer: info.id.clone(),
            has: info.attributes.join(", "),
        })?;
    let mut files = Vec::new();
    let (mut scoring, mut figures) = (0.0, 0.0);
    let mut texts_scored = 0;
    let (mut identity_terms, mut holistic, mut file, mut dialect) = (None, None, None, None);
    let mut notes = Vec::new();
    match &plan.data {
        AuditData::Folder(dir) => {
            for f in [data::TEMPLATES, data::AUDIT_TERMS] {
                let p = dir.join(f);
                if !p.is_file() {
                    return Err(AuditError::Missing(p));
                }
                files.push(sha(&p)?);
            }
            for f in ["descriptors.json", "nouns.json", "sentence_templates.json"] {
                let p = dir.join(data::HOLISTIC_BIAS).join(f);
                if !p.is_file() {
                    return Err(AuditError::Missing(p));
                }
                files.push(sha(&p)?);
            }
            let (terms, rows) = data::read_templates(dir)?;
            let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
            let t = Instant::now();
            let s = score_texts(scorer, &texts, attr, opts.chunk, progress, "templates")?;
            scoring += t.elapsed().as_secs_f64();
            texts_scored += texts.len();
            let t = Instant::now();
            let mut sorted_terms = terms.clone();
            sorted_terms.sort();
            identity_terms = Some(group_audit(
                "Dixon et al. 2018 identity templates (en_sentence_templates.csv)",
                &rows,
                &s,
                &sorted_terms,
                plan.trained.as_ref(),
                opts,
            ));
            figures += t.elapsed().as_secs_f64();

            let (sentences, total) = data::holistic_sentences(dir, opts.per_descriptor, opts.seed)?;
            let texts: Vec<&str> = sentences.iter().map(|r| r.text.as_str()).collect();
            let t = Instant::now();
            let s = score_texts(scorer, &texts, attr, opts.chunk, progress, "holistic-bias")?;
            scoring += t.elapsed().as_secs_f64();
            texts_scored += texts.len();
            let t = Instant::now();
            holistic = Some(holistic_audit(&sentences, &s, total, opts));
            figures += t.elapsed().as_secs_f64();

            let tweets = dir.join(crate::dialect::DAVIDSON);
            let model = dir.join(crate::dialect::TWITTERAAE);
            if tweets.is_file() && model.is_dir() {
                files.push(sha(&tweets)?);
                let t = Instant::now();
                let d = crate::dialect::dialect_audit(
                    scorer,
                    attr,
                    dir,
                    &detox_dialect::audit::AuditOptions {
                        threshold: opts.threshold,
                        resamples: opts.bootstrap,
                        seed: opts.seed,
                        ..Default::default()
                    },
                    opts.chunk,
                    progress,
                )?;
                scoring += t.elapsed().as_secs_f64();
                texts_scored += d.figures.n + d.figures.declined;
                dialect = Some(d);
            } else {
                notes.push(format!(
                    "Dialect audit not run: it needs {} and {}.",
                    tweets.display(),
                    model.display()
                ));
            }
        }
        AuditData::File(spec) => {
            files.push(sha(&spec.path)?);
            let rows = data::read_labelled_file(spec)?;
            let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
            let t = Instant::now();
            let s = score_texts(scorer, &texts, attr, opts.chunk, progress, "file")?;
            scoring += t.elapsed().as_secs_f64();
            texts_scored += texts.len();
            let t = Instant::now();
            file = Some(group_audit(
                &spec.path.display().to_string(),
                &rows,
                &s,
                &[],
                plan.trained.as_ref(),
                opts,
            ));
            figures += t.elapsed().as_secs_f64();
        }
    }
    Ok(AuditReport {
        settings: Settings {
            scorer: plan.scorer.clone(),
            scorer_identity: plan.scorer_identity.clone(),
            attribute: opts.attribute.clone(),
            threshold: opts.threshold,
            seed: opts.seed,
            bootstrap: opts.bootstrap,
            min_group: opts.min_group,
            data_files: files,
        },
        identity_terms,
        holistic_bias: holistic,
        file,
        dialect,
        notes,
        timing: AuditTiming {
            texts: texts_scored,
            scoring_s: scoring,
            figures_s: figures,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lt(text: &str, label: bool, group: Option<&str>) -> LabelledText {
        LabelledText {
            text: text.into(),
            label,
            group: group.map(String::from),
        }
    }

    #[test]
    fn group_figures_match_the_direct_definitions_and_sort_worst_first() {
        // Group a: neg 0.6, pos 0.7; group b: neg 0.2, pos 0.5; background pos 0.9, neg 0.1.
        let rows = vec![
            lt("a-", false, Some("a")),
            lt("a+", true, Some("a")),
            lt("b-", false, Some("b")),
            lt("b+", true, Some("b")),
            lt("x+", true, None),
            lt("x-", false, None),
        ];
        let scores = [0.6, 0.7, 0.2, 0.5, 0.9, 0.1];
        let opts = AuditOptions {
            min_group: 1,
            bootstrap: 50,
            ..Default::default()
        };
        let trained = TrainedTerms {
            source: "test".into(),
            terms: vec!["a".into()],
        };
        let ga = group_audit("t", &rows, &scores, &["c".into()], Some(&trained), &opts);
        let scored: Vec<Scored> = rows
            .iter()
            .zip(scores)
            .map(|(r, score)| Scored {
                score,
                label: r.label,
            })
            .collect();
        for g in ["a", "b"] {
            let mask: Vec<bool> = rows.iter().map(|r| r.group.as_deref() == Some(g)).collect();
            let f = ga.groups.iter().find(|x| x.group == g).unwrap();
            assert_eq!(f.subgroup_auc.value, metrics::subgroup_auc(&scored, &mask));
            assert_eq!(f.bpsn_auc.value, metrics::bpsn_auc(&scored, &mask), "{g}");
            assert_eq!(f.bnsp_auc.value, metrics::bnsp_auc(&scored, &mask), "{g}");
        }
        // a: BPSN = neg 0.6 vs background pos {0.5, 0.9} = 0.5; b: all AUCs 1.
        assert_eq!(ga.groups[0].group, "a");
        assert_eq!(ga.groups[0].bpsn_auc.value, Some(0.5));
        assert_eq!(ga.groups[0].training, Training::Named);
        assert_eq!(ga.groups[1].group, "b");
        assert_eq!(ga.groups[1].training, Training::NotNamed);
        // c: named by no row, shown last, marked too small.
        assert_eq!(ga.groups[2].group, "c");
        assert!(ga.groups[2].too_small && ga.groups[2].subgroup_auc.value.is_none());
        // Summaries: all, named, not named; c left out of them.
        assert_eq!(ga.summaries.len(), 3);
        assert_eq!(ga.summaries[0].groups, vec!["a", "b"]);
        assert_eq!(ga.summaries[1].groups, vec!["a"]);
        // Overall FPR: 0.6 flagged of 3 negatives; a's FPR 1, b's 0: FPED = 2/3 + 1/3.
        assert!((ga.summaries[0].fped - 1.0).abs() < 1e-12);
        // Intervals contain their values.
        let f = ga.groups[0].bpsn_auc;
        let [lo, hi] = f.ci.unwrap();
        assert!(lo <= 0.5 && 0.5 <= hi);
    }

    #[test]
    fn bootstrap_is_deterministic_for_a_seed_and_varies_with_it() {
        let scores: Vec<f64> = (0..200).map(|i| ((i * 37) % 101) as f64 / 100.0).collect();
        let opts = AuditOptions::default();
        let a = rate_group("g", None, &scores, &opts);
        let b = rate_group("g", None, &scores, &opts);
        assert_eq!(a, b);
        let c = rate_group(
            "g",
            None,
            &scores,
            &AuditOptions {
                seed: 9,
                ..opts.clone()
            },
        );
        assert_ne!(a.flagged.ci, c.flagged.ci);
        let [lo, hi] = a.flagged.ci.unwrap();
        let v = a.flagged.value.unwrap();
        assert!(lo < v && v < hi, "{lo} {v} {hi}");
    }
}
