//! What can go wrong in an evaluation run, with the file, line and fix where there is one.

use std::path::PathBuf;

/// Errors of the evaluation library.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The prompt file cannot be read at all (individual bad lines are [`crate::prompts::PromptError`]s).
    #[error("{path}: {message}")]
    Prompts {
        /// The file (or `built-in smoke prompts`).
        path: String,
        /// Why.
        message: String,
    },
    /// A file of the run folder could not be read or written.
    #[error(transparent)]
    File(#[from] detox_io::files::FileError),
    /// A line of a run folder's file is not what detox wrote.
    #[error("{}: line {line}: {message}", path.display())]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Why.
        message: String,
    },
    /// The folder holds generations but no `run.json`.
    #[error("{} has generations.jsonl but no run.json: its settings are unknown; use another --out folder", dir.display())]
    NoRunRecord {
        /// The run folder.
        dir: PathBuf,
    },
    /// The folder holds a run with other settings.
    #[error("{} holds a run with other settings (changed: {}); use another --out folder (or delete it) instead of mixing results", dir.display(), changed.join(", "))]
    SettingsChanged {
        /// The run folder.
        dir: PathBuf,
        /// The settings that differ.
        changed: Vec<String>,
    },
    /// The folder's generations do not belong to these prompts.
    #[error("{} has more lines than prompts", path.display())]
    TooManyLines {
        /// `generations.jsonl`.
        path: PathBuf,
    },
    /// Nothing to evaluate.
    #[error("no prompts to evaluate")]
    NoPrompts,
    /// A setting is out of range.
    #[error("{0}")]
    Settings(String),
    /// The language model failed on a prompt.
    #[error("prompt on line {line}")]
    Lm {
        /// The prompt's 1-based line.
        line: usize,
        /// Why.
        #[source]
        source: detox_lm::LmError,
    },
    /// The scorer failed.
    #[error(transparent)]
    Score(#[from] detox_core::ScoreError),
    /// The run stopped part-way; what was done is kept.
    #[error("evaluation stopped{}", resume_hint(.kept, .dir))]
    Stopped {
        /// Prompts done and kept.
        kept: usize,
        /// The run folder, if any.
        dir: Option<PathBuf>,
        /// Why.
        #[source]
        source: Box<EvalError>,
    },
}

fn resume_hint(kept: &usize, dir: &Option<PathBuf>) -> String {
    match dir {
        Some(d) => format!(
            "; the {kept} prompts done are kept in {}: run the same command again to resume",
            d.display()
        ),
        None => String::new(),
    }
}
