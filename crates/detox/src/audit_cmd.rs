//! `detox audit`: bias audits. `detox audit scorer` measures a toxicity scorer's identity-term
//! bias with detox-audit and writes its reports.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use detox_audit::{AuditData, AuditOptions, AuditPlan};
use detox_spec::{LoadOptions, ScorerSpec, DEFAULT_SCORER};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Identity-term bias of a toxicity scorer: Borkan et al.'s AUCs, Dixon's FPED/FNED and
    /// HolisticBias false positives, per group with bootstrap intervals.
    Scorer(ScorerArgs),
}

#[derive(Debug, Args)]
pub struct ScorerArgs {
    /// The scorer to audit (as in `detox score`).
    #[arg(long, default_value = DEFAULT_SCORER)]
    pub scorer: String,

    /// A folder laid out like `../shared/data` (Dixon's identity templates and HolisticBias),
    /// or a labelled JSONL/CSV/TSV file (then name --label and --group).
    #[arg(long, default_value = "../shared/data")]
    pub data: PathBuf,

    /// Write `audit.json` and `audit.html` into this folder.
    #[arg(long)]
    pub out: PathBuf,

    /// A labelled file's text field.
    #[arg(long, default_value = "text")]
    pub field: String,

    /// A labelled file's label field (true/false, 1/0, toxic/nontoxic, or a score >= 0.5).
    #[arg(long)]
    pub label: Option<String>,

    /// A labelled file's group field (rows without one are background only).
    #[arg(long)]
    pub group: Option<String>,

    /// The attribute that means "toxic".
    #[arg(long, default_value = "toxicity")]
    pub attribute: String,

    /// Score at or above which a text counts as flagged.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,

    /// Seed of the bootstrap and of the HolisticBias subsample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Bootstrap replicates per group (0: no intervals).
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,

    /// Groups with fewer rows (or one class only) are marked too small and left out of the
    /// summaries.
    #[arg(long, default_value_t = 30)]
    pub min_group: usize,

    /// HolisticBias sentences per descriptor, drawn with the seed (0: all, about 485,000).
    #[arg(long, default_value_t = 32)]
    pub per_descriptor: usize,

    /// Texts per forward pass.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,

    /// Compute threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(cmd: AuditCmd, offline: bool) -> Result<ExitCode> {
    match cmd {
        AuditCmd::Scorer(args) => run_scorer(args, offline),
    }
}

fn run_scorer(args: ScorerArgs, offline: bool) -> Result<ExitCode> {
    let start = Instant::now();
    let data = AuditData::from_path(
        &args.data,
        &args.field,
        args.label.as_deref(),
        args.group.as_deref(),
    )?;
    let threads = detox_spec::configure_threads(args.threads);
    let opts = LoadOptions::parallel(args.batch_size, threads, offline);
    let spec: ScorerSpec = args.scorer.parse()?;
    let scorer = spec.load(&opts)?;
    let plan = AuditPlan {
        scorer: args.scorer.clone(),
        scorer_identity: serde_json::to_value(spec.identity(&opts)?)?,
        data,
        trained: spec
            .is_builtin()
            .then(detox_train::quality::builtin_trained_terms),
        options: AuditOptions {
            attribute: args.attribute,
            threshold: args.threshold,
            seed: args.seed,
            bootstrap: args.bootstrap,
            min_group: args.min_group,
            per_descriptor: args.per_descriptor,
            ..Default::default()
        },
    };
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} scoring {msg} [{bar:30}] {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let report = detox_audit::audit(scorer.as_ref(), &plan, &mut |stage, done, total| {
        bar.set_message(stage.to_string());
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .with_context(|| format!("auditing {} on {}", args.scorer, args.data.display()))?;
    bar.finish_and_clear();
    let files = detox_audit::write_reports(&report, &args.out)?;
    print!("{}", detox_audit::render::table(&report));
    let t = &report.timing;
    eprintln!(
        "detox: scored {} texts in {:.1}s ({:.0} texts/s), figures in {:.1}s, {:.1}s in all; wrote {}",
        t.texts,
        t.scoring_s,
        t.texts as f64 / t.scoring_s.max(1e-9),
        t.figures_s,
        start.elapsed().as_secs_f64(),
        files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
