//! `detox audit lm` as one run: the LM loss by group ([`crate::lm`]), coverage of BOLD's
//! groups ([`crate::coverage`]) and who gets flagged ([`crate::flagged`]), for two sides (a
//! model without and with its decoding-time methods, or two models), with the settings, the
//! models' identities and the data files' sha256s; the terminal table, `audit.json` and a
//! self-contained `audit.html`.

use crate::coverage::{self, Coverage, CoveragePrompt, Sample};
use crate::flagged::{self, Scored, WhoGetsFlagged};
use crate::lm::{self, GroupData, LossAudit};
use crate::report::DataFile;
use crate::terms::Terms;
use crate::AuditError;
use detox_core::Scorer;
use detox_eval::test_filter::TestFilter;
use detox_lm::{GenerationRequest, LanguageModel};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One side of the comparison.
#[derive(Clone, Copy)]
pub struct Side<'a> {
    /// What it is, for the report (`smollm2`, `smollm2 + self-debias`).
    pub label: &'a str,
    /// The language model (it samples with the methods it was loaded with).
    pub lm: &'a dyn LanguageModel,
    /// Whether its loss is the one under its methods.
    pub mitigated: bool,
    /// RealToxicityPrompts' test-time filter on its generations (`--mitigate test-filter`):
    /// it rejects whole samples after scoring, so it changes coverage and who gets flagged but
    /// not any text's loss.
    pub test_filter: Option<TestFilter>,
}

/// Coverage generations: how many and how.
#[derive(Debug, Clone)]
pub struct CoverageOptions {
    /// BOLD prompts per group, drawn with the seed.
    pub prompts_per_group: usize,
    /// Samples per prompt, new tokens, sampling parameters.
    pub request: GenerationRequest,
}

/// What `detox audit lm` runs.
pub struct LmPlan<'a> {
    /// A folder laid out like `../shared/data`.
    pub data: PathBuf,
    /// The texts of the loss audit.
    pub groups: GroupData,
    /// Bootstrap replicates.
    pub bootstrap: usize,
    /// Seed of every draw.
    pub seed: u64,
    /// Groups with fewer paired texts (and sides with fewer flagged samples) are marked.
    pub min_group: usize,
    /// Flagged: toxicity at or above this.
    pub threshold: f64,
    /// The scorer of the generations, with its spec and identity; `None` skips coverage and
    /// who-gets-flagged.
    pub scorer: Option<(&'a dyn Scorer, String, Value)>,
    /// Coverage generations (`None`: none).
    pub coverage: Option<CoverageOptions>,
    /// `detox eval` run folders (base, other) for who gets flagged; else the coverage
    /// generations are used.
    pub runs: Option<(PathBuf, PathBuf)>,
}

/// The settings `audit.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmSettings {
    /// The base side.
    pub base: String,
    /// Its model's identity.
    pub base_identity: Value,
    /// The other side.
    pub other: String,
    /// Its model's identity.
    pub other_identity: Value,
    /// The other side's decoding-time methods with their parameters.
    pub mitigations: Vec<Value>,
    /// The scorer of the generations.
    pub scorer: Option<String>,
    /// Its identity.
    pub scorer_identity: Option<Value>,
    /// Flagged: toxicity at or above this.
    pub threshold: f64,
    /// Seed.
    pub seed: u64,
    /// Bootstrap replicates.
    pub bootstrap: usize,
    /// Minimum texts per group (and flagged samples per side).
    pub min_group: usize,
    /// Loss texts per group at most.
    pub per_group: usize,
    /// HolisticBias sentences per descriptor.
    pub per_descriptor: usize,
    /// Coverage: BOLD prompts per group (0: no coverage).
    pub coverage_prompts: usize,
    /// Coverage: samples per prompt.
    pub coverage_samples: usize,
    /// Coverage: new tokens per sample.
    pub max_tokens: usize,
    /// Coverage: temperature.
    pub temperature: f64,
    /// Coverage: nucleus mass.
    pub top_p: f64,
    /// The run folders of who gets flagged, where given.
    pub runs: Vec<String>,
    /// The files read, with their sha256.
    pub data_files: Vec<DataFile>,
}

/// Where the time went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmTiming {
    /// Texts whose loss was computed (per side).
    pub loss_texts: usize,
    /// Seconds on the losses.
    pub loss_s: f64,
    /// Samples generated and scored (both sides).
    pub samples: usize,
    /// Seconds on generating and scoring.
    pub generation_s: f64,
}

/// The whole `detox audit lm` report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmAudit {
    /// The settings.
    pub settings: LmSettings,
    /// LM loss by group.
    pub loss: LossAudit,
    /// Coverage of BOLD's groups.
    pub coverage: Option<Coverage>,
    /// Who gets flagged.
    pub flagged: Option<WhoGetsFlagged>,
    /// What was not run, and why.
    pub notes: Vec<String>,
    /// Timing.
    pub timing: LmTiming,
}

/// The data files the audit reads under `data` that exist, with their sha256s.
fn data_files(data: &Path) -> Result<Vec<DataFile>, AuditError> {
    let mut paths: Vec<PathBuf> = ["descriptors.json", "nouns.json", "sentence_templates.json"]
        .iter()
        .map(|f| data.join(crate::data::HOLISTIC_BIAS).join(f))
        .collect();
    // Missing files are left out here; reading the groups reports them.
    paths.extend(
        lm::toxigen_files(data)
            .unwrap_or_default()
            .into_iter()
            .map(|(_, p)| p),
    );
    paths.extend(
        coverage::BOLD_DOMAINS
            .iter()
            .map(|d| data.join("bold").join(format!("{d}_prompt.json"))),
    );
    paths.push(data.join(crate::dialect::DAVIDSON));
    let model = data.join(crate::dialect::TWITTERAAE);
    paths.push(model.join(detox_dialect::model::VOCAB_FILE));
    paths.push(model.join(detox_dialect::model::COUNT_TABLE_FILE));
    paths.push(data.join(crate::data::AUDIT_TERMS));
    paths
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| crate::run::sha(&p))
        .collect()
}

/// The samples of an eval run folder, with their toxicity (the run's `toxicity` attribute,
/// else its first).
fn run_samples(dir: &Path) -> Result<(String, Vec<(String, f64)>), AuditError> {
    let run = detox_eval::compare::load_run(dir).map_err(|e| AuditError::Input(e.to_string()))?;
    let label = detox_eval::compare::run_label(&run.protocol);
    let samples = run
        .results
        .iter()
        .flat_map(|r| r.generations.iter())
        .map(|g| {
            let t = g
                .score("toxicity")
                .or_else(|| g.scores.first().map(|s| s.1))
                .unwrap_or(f64::NAN);
            (g.text.clone(), t)
        })
        .collect();
    Ok((label, samples))
}

/// Both sides' samples of every coverage prompt.
type Generated = (Vec<Vec<Sample>>, Vec<Vec<Sample>>);

/// Runs the audit. `progress(stage, done, total)` hears each stage's progress.
pub fn lm_audit(
    plan: &LmPlan,
    base: Side,
    other: Side,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<LmAudit, AuditError> {
    let data = &plan.data;
    let data_files = data_files(data)?;
    let mut notes = Vec::new();

    // LM loss by group.
    // The other side samples from the base's distribution (the test-time filter alone): its
    // losses are the base's, computed once.
    let same = other.mitigated && other.lm.mitigations().is_empty();
    if other.test_filter.is_some() {
        notes.push(if !same {
            "test-filter rejects whole samples after scoring and leaves every text's loss as it was: the LM loss shows the other methods only".to_string()
        } else {
            "test-filter rejects whole samples after scoring and leaves every text's loss as it was: the LM loss is the same on both sides by construction".to_string()
        });
    }
    let groups = lm::all_groups(data, &plan.groups)?;
    let t = Instant::now();
    let b = lm::side(base.lm, base.mitigated);
    let o = lm::side(other.lm, other.mitigated);
    let loss = lm::loss_audit(
        &groups,
        (base.label, other.label),
        &b,
        (!same).then_some(&o as &lm::LossFn),
        plan.bootstrap,
        plan.seed,
        plan.min_group,
        &mut |d, n| progress("LM loss", d, n),
    )?;
    let loss_s = t.elapsed().as_secs_f64();

    // Coverage of BOLD's groups.
    let t = Instant::now();
    let mut generated: Option<Generated> = None;
    let mut cov = None;
    let mut samples = 0;
    match (&plan.coverage, &plan.scorer) {
        (Some(c), Some((scorer, _, _))) if c.prompts_per_group > 0 => {
            let bold = coverage::read_bold(data)?;
            let prompts: Vec<CoveragePrompt> =
                coverage::coverage_prompts(&bold, c.prompts_per_group, plan.seed);
            let terms: BTreeMap<String, Terms> = bold
                .iter()
                .map(|g| (g.group.clone(), coverage::group_terms(g)))
                .collect();
            let n = prompts.len();
            let mut gen = |side: &Side, stage: &str| {
                coverage::generate(
                    side.lm,
                    *scorer,
                    side.test_filter.as_ref(),
                    &prompts,
                    &c.request,
                    &mut |d| progress(stage, d, n),
                )
            };
            let bs = gen(&base, "generating (base)")?;
            let os = gen(&other, "generating (other)")?;
            samples = bs.iter().chain(&os).map(Vec::len).sum();
            cov = Some(coverage::coverage(
                &prompts,
                &bs,
                &os,
                &terms,
                &c.request,
                c.prompts_per_group,
                plan.threshold,
                plan.bootstrap,
                plan.seed,
            )?);
            generated = Some((bs, os));
        }
        (Some(c), None) if c.prompts_per_group > 0 => {
            notes.push("coverage needs a scorer for the generations' toxicity".into())
        }
        _ => {}
    }
    let generation_s = t.elapsed().as_secs_f64();

    // Who gets flagged.
    let identity =
        || -> Result<Terms, AuditError> { Ok(Terms::new(crate::data::identity_terms(data)?)) };
    let flagged = match (&plan.runs, &generated) {
        (Some((a, b)), _) => {
            let (la, sa) = run_samples(a)?;
            let (lb, sb) = run_samples(b)?;
            fn scored(s: &[(String, f64)]) -> Vec<Scored<'_>> {
                s.iter()
                    .map(|(text, toxicity)| Scored {
                        text,
                        toxicity: *toxicity,
                    })
                    .collect()
            }
            let (xa, xb) = (scored(&sa), scored(&sb));
            Some(flagged::who_gets_flagged(
                &format!("detox eval runs {} and {}", a.display(), b.display()),
                (&la, &lb),
                &xa,
                &xb,
                &identity()?,
                plan.threshold,
                plan.min_group,
            ))
        }
        (None, Some((bs, os))) => {
            fn flat(s: &[Vec<Sample>]) -> Vec<Scored<'_>> {
                s.iter()
                    .flatten()
                    .map(|x| Scored {
                        text: &x.text,
                        toxicity: x.toxicity,
                    })
                    .collect()
            }
            Some(flagged::who_gets_flagged(
                "this audit's coverage generations (BOLD prompts); give --runs BASE OTHER for detox eval runs on RealToxicityPrompts",
                (base.label, other.label),
                &flat(bs),
                &flat(os),
                &identity()?,
                plan.threshold,
                plan.min_group,
            ))
        }
        (None, None) => None,
    };

    let request = plan.coverage.as_ref().map(|c| &c.request);
    let loss_texts = loss.overall.texts;
    Ok(LmAudit {
        settings: LmSettings {
            base: base.label.into(),
            base_identity: base.lm.identity(),
            other: other.label.into(),
            other_identity: other.lm.identity(),
            mitigations: {
                let mut m = if other.mitigated {
                    other.lm.mitigations()
                } else {
                    Vec::new()
                };
                m.extend(other.test_filter.as_ref().map(TestFilter::describe));
                m
            },
            scorer: plan.scorer.as_ref().map(|s| s.1.clone()),
            scorer_identity: plan.scorer.as_ref().map(|s| s.2.clone()),
            threshold: plan.threshold,
            seed: plan.seed,
            bootstrap: plan.bootstrap,
            min_group: plan.min_group,
            per_group: plan.groups.per_group,
            per_descriptor: plan.groups.per_descriptor,
            coverage_prompts: plan.coverage.as_ref().map_or(0, |c| c.prompts_per_group),
            coverage_samples: request.map_or(0, |r| r.samples),
            max_tokens: request.map_or(0, |r| r.max_tokens),
            temperature: request.map_or(0.0, |r| r.params.temperature as f64),
            top_p: request.map_or(0.0, |r| r.params.top_p as f64),
            runs: plan
                .runs
                .iter()
                .flat_map(|(a, b)| [a.display().to_string(), b.display().to_string()])
                .collect(),
            data_files,
        },
        loss,
        coverage: cov,
        flagged,
        notes,
        timing: LmTiming {
            loss_texts,
            loss_s,
            samples,
            generation_s,
        },
    })
}
