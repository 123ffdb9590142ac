//! `detox agree`: how far two scorers agree on the same texts.

use crate::progress::StageBar;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use detox_eval::agree::{self, AgreeOptions, Side};
use detox_spec::LoadOptions;
use std::path::PathBuf;
use std::process::ExitCode;

/// `--format` of `detox agree`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AgreeFormat {
    /// GitHub Markdown tables.
    Md,
    /// The whole comparison as one JSON object.
    Json,
}

#[derive(Debug, Args)]
pub struct AgreeArgs {
    /// Two scored inputs (run folders of `detox eval`, or files `detox score` wrote) holding
    /// the same texts; or one input (scored or not) with --scorer.
    #[arg(required = true, num_args = 1..=2, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// Score the one input's texts with this scorer (as in `detox score`): once to compare it
    /// with the input's own scores, twice to compare two scorers.
    #[arg(long, value_name = "SPEC")]
    pub scorer: Vec<String>,

    /// The field (JSONL, dotted paths allowed) or column holding the text of a file.
    #[arg(long, default_value = "text")]
    pub field: String,

    /// Scores at or above it are flagged (RealToxicityPrompts: 0.5).
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,

    /// Texts listed among the largest disagreements.
    #[arg(long, default_value_t = 10)]
    pub top: usize,

    /// Output on stdout.
    #[arg(long, value_enum, default_value_t = AgreeFormat::Md)]
    pub format: AgreeFormat,

    /// Also write the comparison as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Texts per scoring call.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,

    /// Compute threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,

    #[command(flatten)]
    pub remote: crate::remote_args::RemoteArgs,
}

pub fn run(args: AgreeArgs, offline: bool) -> Result<ExitCode> {
    let threads = detox_spec::configure_threads(args.threads);
    let opts = LoadOptions::parallel(args.batch_size.max(1), threads, offline)
        .with_remote(args.remote.options());
    let bar = StageBar::new("{spinner} {msg} [{bar:30}] {pos}/{len} eta {eta}");
    let scored = |side: &Side, spec: &str| -> Result<Side> {
        let spec: detox_spec::ScorerSpec = spec.parse()?;
        let scorer = spec.load(&opts)?;
        let total = side.samples.len();
        let stage = format!("scoring with {spec}");
        // A remote service answers about a text a second: small steps, so progress shows.
        let step = if spec.is_remote() {
            32
        } else {
            args.batch_size * 8
        };
        let out = agree::rescore(side, scorer.as_ref(), step, &mut |done| {
            bar.update(&stage, done, total)
        })?;
        Ok(out)
    };
    let (a, b) = match (args.inputs.as_slice(), args.scorer.as_slice()) {
        ([a, b], []) => (Side::read(a, &args.field)?, Side::read(b, &args.field)?),
        ([input], [x]) => {
            let own = Side::read(input, &args.field).with_context(|| {
                "with one --scorer, the input's own scores are side A; name a second --scorer to score it twice"
            })?;
            let b = scored(&own, x)?;
            (own, b)
        }
        ([input], [x, y]) => {
            let texts = Side::texts(input, &args.field)?;
            (scored(&texts, x)?, scored(&texts, y)?)
        }
        ([_, _], _) => {
            bail!("two inputs are compared as they are scored: drop --scorer, or give one input")
        }
        (_, _) => bail!("give two scored inputs, or one input with one or two --scorer"),
    };
    bar.finish();
    let g = agree::agree(
        &a,
        &b,
        &AgreeOptions {
            threshold: args.threshold,
            top: args.top,
            ..Default::default()
        },
    )?;
    let json = serde_json::to_string_pretty(&g).context("the comparison is not serialisable")?;
    match args.format {
        AgreeFormat::Md => print!("{}", agree::render_markdown(&g)),
        AgreeFormat::Json => println!("{json}"),
    }
    if let Some(path) = &args.json {
        detox_io::files::write_atomic(path, format!("{json}\n").as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}
