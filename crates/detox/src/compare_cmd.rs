//! `detox compare`: finished eval runs side by side, with paired differences from the first.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use detox_eval::compare::{self, CompareOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// `--format` of `detox compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompareFormat {
    /// A table for the terminal: the runs, then one block per subset.
    Table,
    /// GitHub markdown tables.
    Md,
    /// The whole comparison as one JSON object.
    Json,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Finished `detox eval --out` folders; the first is the baseline the others are compared
    /// with.
    #[arg(required = true, value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,

    /// Output on stdout.
    #[arg(long, value_enum, default_value_t = CompareFormat::Table)]
    pub format: CompareFormat,

    /// Also write a standalone HTML page (tables and a plot of expected maximum toxicity
    /// against perplexity).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Compare runs whose prompts, subset, limit, samples, scorer or threshold differ (the
    /// differences are listed in the notes).
    #[arg(long)]
    pub force: bool,

    /// Bootstrap resamples of the paired differences' 95% intervals.
    #[arg(long, default_value_t = 1000)]
    pub resamples: usize,

    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: CompareArgs) -> Result<ExitCode> {
    let runs = args
        .runs
        .iter()
        .map(|d| compare::load_run(d))
        .collect::<Result<Vec<_>, _>>()?;
    let options = CompareOptions {
        force: args.force,
        resamples: args.resamples,
        seed: args.seed,
    };
    let c = compare::compare(&runs, &options)?;
    let text = match args.format {
        CompareFormat::Table => compare::render_table(&c),
        CompareFormat::Md => compare::render_markdown(&c),
        CompareFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&c).context("the comparison is not serialisable")?
        ),
    };
    print!("{text}");
    if let Some(path) = &args.html {
        compare::write_html_file(path, &c)?;
    }
    Ok(ExitCode::SUCCESS)
}
