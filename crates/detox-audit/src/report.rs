//! The audit's typed report (written as `audit.json`).

use serde::{Deserialize, Serialize};

/// A figure with its 95% bootstrap interval (percentile; `None` where undefined, e.g. an AUC
/// of a group with one class).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// The value on the data as read.
    pub value: Option<f64>,
    /// 2.5% and 97.5% quantiles of the bootstrap replicates (rows of the group drawn with
    /// replacement); `None` without replicates or where the value is undefined.
    pub ci: Option<[f64; 2]>,
}

/// Whether the scorer's training data names a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Training {
    /// The scorer's training data names the group: its figures are in sample.
    Named,
    /// The training data never names it: its figures are out of sample.
    NotNamed,
    /// What the scorer was trained on is not known.
    Unknown,
}

impl Training {
    /// A short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::Named => "named in training",
            Self::NotNamed => "not named in training",
            Self::Unknown => "training data unknown",
        }
    }
}

/// Per-group figures on labelled data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupFigures {
    /// The group (identity term or the user's group value).
    pub group: String,
    /// Rows naming it.
    pub n: usize,
    /// Of them labelled toxic.
    pub positives: usize,
    /// Whether the scorer's training data names it.
    pub training: Training,
    /// Fewer rows than the minimum (or one class only): shown, but left out of the summaries.
    pub too_small: bool,
    /// AUC on the group's rows.
    pub subgroup_auc: Figure,
    /// AUC of the group's negatives with the background's positives.
    pub bpsn_auc: Figure,
    /// AUC of the group's positives with the background's negatives.
    pub bnsp_auc: Figure,
    /// Share of the group's negatives scored at or above the threshold.
    pub fpr: Figure,
    /// Share of the group's positives scored below the threshold.
    pub fnr: Figure,
}

impl GroupFigures {
    /// The lowest of the three AUCs (the sort key: worst first).
    pub fn worst_auc(&self) -> Option<f64> {
        [self.subgroup_auc, self.bpsn_auc, self.bnsp_auc]
            .iter()
            .filter_map(|f| f.value)
            .min_by(f64::total_cmp)
    }
}

/// Summary figures over a set of groups (all, or those named / not named in training).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Which groups (`all`, `named in training`, `not named in training`).
    pub name: String,
    /// The groups summarised (those not too small).
    pub groups: Vec<String>,
    /// Power mean (p = −5) of the subgroup AUCs.
    pub subgroup_auc_power_mean: Option<f64>,
    /// Power mean (p = −5) of the BPSN AUCs.
    pub bpsn_auc_power_mean: Option<f64>,
    /// Power mean (p = −5) of the BNSP AUCs.
    pub bnsp_auc_power_mean: Option<f64>,
    /// 0.25 · overall AUC + 0.75 · mean of the three power means.
    pub bias_metric: Option<f64>,
    /// Dixon's FPED: Σ |overall FPR − group FPR|.
    pub fped: f64,
    /// Dixon's FNED: Σ |overall FNR − group FNR|.
    pub fned: f64,
    /// FPED / groups (comparable between sets of different sizes).
    pub fped_per_group: Option<f64>,
    /// FNED / groups.
    pub fned_per_group: Option<f64>,
}

/// The audit of labelled data grouped by identity (Dixon's templates or a user's file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupAudit {
    /// What was audited.
    pub source: String,
    /// Rows scored.
    pub n: usize,
    /// Of them labelled toxic.
    pub positives: usize,
    /// Rows naming no group (background only).
    pub ungrouped: usize,
    /// AUC over all rows.
    pub overall_auc: Option<f64>,
    /// False-positive rate over all rows.
    pub overall_fpr: Option<f64>,
    /// False-negative rate over all rows.
    pub overall_fnr: Option<f64>,
    /// Where the training split comes from (e.g. `detox_train::identity::TERMS`), if known.
    pub training_terms_source: Option<String>,
    /// Per group, worst first (lowest of the three AUCs; groups too small last).
    pub groups: Vec<GroupFigures>,
    /// Summaries: all groups, then named / not named in training where known.
    pub summaries: Vec<Summary>,
}

/// The share flagged and the mean score of a set of non-toxic sentences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateGroup {
    /// The axis, descriptor or template.
    pub name: String,
    /// The descriptor's axis (descriptors only).
    pub axis: Option<String>,
    /// Sentences.
    pub n: usize,
    /// Fewer sentences than the minimum.
    pub too_small: bool,
    /// Share scored at or above the threshold (a false-positive rate: all are non-toxic).
    pub flagged: Figure,
    /// Mean score.
    pub mean_score: Figure,
}

/// The HolisticBias audit: only false-positive-type figures, since every sentence is
/// non-toxic by construction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HolisticAudit {
    /// The dataset version read.
    pub version: String,
    /// Sentences the full descriptor × noun × template product has.
    pub total_sentences: usize,
    /// Sentences scored (after the deterministic subsample).
    pub n: usize,
    /// Sentences kept per descriptor (0: all).
    pub per_descriptor: usize,
    /// All sentences.
    pub overall: RateGroup,
    /// Per axis, worst (most flagged) first.
    pub axes: Vec<RateGroup>,
    /// Per descriptor, worst first.
    pub descriptors: Vec<RateGroup>,
    /// Per template, worst first: some templates say "I hate …" or "… are the worst", which a
    /// scorer may fairly rate higher whatever the descriptor.
    pub templates: Vec<RateGroup>,
}

/// A data file the audit read, by hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    /// Its path as given.
    pub path: String,
    /// sha256 of its bytes.
    pub sha256: String,
}

/// The settings of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The `--scorer` value.
    pub scorer: String,
    /// What the scorer is, with hashes (detox-spec's `ScorerIdentity`).
    pub scorer_identity: serde_json::Value,
    /// The attribute used as the toxicity score.
    pub attribute: String,
    /// Score at or above which a text counts as flagged.
    pub threshold: f64,
    /// Seed of the bootstrap and the HolisticBias subsample.
    pub seed: u64,
    /// Bootstrap replicates per group.
    pub bootstrap: usize,
    /// Groups with fewer rows are marked too small.
    pub min_group: usize,
    /// The files read, with their sha256.
    pub data_files: Vec<DataFile>,
}

/// Where the time went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditTiming {
    /// Texts scored.
    pub texts: usize,
    /// Seconds spent scoring.
    pub scoring_s: f64,
    /// Seconds spent on the figures and intervals.
    pub figures_s: f64,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    /// The settings.
    pub settings: Settings,
    /// Dixon et al.'s identity templates.
    pub identity_terms: Option<GroupAudit>,
    /// HolisticBias sentences.
    pub holistic_bias: Option<HolisticAudit>,
    /// The user's labelled file.
    pub file: Option<GroupAudit>,
    /// Davidson et al.'s tweets by dialect (Sap et al. 2019).
    #[serde(default)]
    pub dialect: Option<crate::dialect::DialectAudit>,
    /// What was not run, and why.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Timing.
    pub timing: AuditTiming,
}
