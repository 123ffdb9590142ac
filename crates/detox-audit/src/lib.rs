//! Bias audits of toxicity scorers (`detox audit scorer`) and of language models (`detox audit lm`).
//!
//! - [`data`]: Dixon et al. 2018's identity templates (`en_sentence_templates.csv`, each row's
//!   identity term found by [`data::term_of`]), HolisticBias v1.1 sentences built from its
//!   descriptors, nouns and templates, and a user's labelled file with a group field;
//! - [`metrics`]: Mann–Whitney AUC with ties, Borkan et al.'s subgroup/BPSN/BNSP AUCs,
//!   false-positive and false-negative rates, Dixon's FPED/FNED, the power mean and the
//!   Jigsaw competition's final bias metric, each naming the reference code it follows;
//! - [`run`]: scoring (sorted by length, in chunks) and every figure with a seeded 95%
//!   bootstrap interval; groups the scorer's training data names are reported apart from
//!   those it does not, so an in-sample figure never passes for a general one;
//! - [`dialect`]: Sap et al. 2019's dialect audit on Davidson et al.'s tweets (the TwitterAAE
//!   model of `detox-dialect`);
//! - [`lm`]: `detox audit lm`, the LM loss of text about each group (and in each dialect)
//!   under a model with and without its decoding-time methods, or under two models;
//!   [`coverage`]: how often generations from BOLD's prompts stay on their group;
//!   [`flagged`]: which identity terms the flagged generations mention; [`lm_report`] runs
//!   the three and [`lm_render`] renders them; [`terms`] finds terms in text;
//! - [`report`]: the typed report (`audit.json`); [`render`]: the terminal table and the
//!   self-contained HTML page.
#![warn(missing_docs)]

pub mod coverage;
pub mod data;
pub mod dialect;
pub mod flagged;
pub mod lm;
pub mod lm_render;
pub mod lm_report;
pub mod metrics;
pub mod render;
pub mod report;
pub mod run;
pub mod terms;

pub use report::AuditReport;
pub use run::{audit, write_reports, AuditData, AuditOptions, AuditPlan, TrainedTerms};

use std::path::PathBuf;

/// Why an audit failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A data file the audit needs is missing.
    #[error("{} not found (give --data a folder laid out like ../shared/data, or a labelled file with --field, --label and --group)", .0.display())]
    Missing(PathBuf),
    /// A data file is malformed.
    #[error("{}: line {line}: {message}", path.display())]
    Data {
        /// The file.
        path: PathBuf,
        /// 1-based line (0: the file as a whole).
        line: usize,
        /// What is wrong, naming the field and the fix.
        message: String,
    },
    /// The input reader failed (its message names the file and line).
    #[error("{0}")]
    Input(String),
    /// The scorer has no such attribute.
    #[error("scorer {scorer} has no attribute `{attribute}` (it has: {has}); choose one with --attribute")]
    Attribute {
        /// The attribute asked for.
        attribute: String,
        /// The scorer's id.
        scorer: String,
        /// Its attributes.
        has: String,
    },
    /// The scorer failed.
    #[error(transparent)]
    Score(#[from] detox_core::ScoreError),
    /// The scorer broke its contract.
    #[error("the scorer {0}")]
    Scorer(String),
    /// The arguments do not fit the data.
    #[error("{0}")]
    Usage(String),
    /// An output could not be written.
    #[error("{0}")]
    Output(String),
}
