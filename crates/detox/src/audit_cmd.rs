//! `detox audit`: bias audits. `detox audit scorer` measures a toxicity scorer's identity-term
//! and dialect bias, `detox audit lm` the LM loss by group; detox-audit computes both and
//! writes their reports.

use crate::progress::StageBar;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use detox_audit::{AuditData, AuditOptions, AuditPlan};
use detox_lm::decoding::MitigationSpec;
use detox_lm::{load_language_model, LanguageModel, LmOptions};
use detox_spec::{LoadOptions, ScorerSpec, DEFAULT_SCORER};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Identity-term bias of a toxicity scorer: Borkan et al.'s AUCs, Dixon's FPED/FNED and
    /// HolisticBias false positives, per group with bootstrap intervals.
    Scorer(ScorerArgs),
    /// What detoxification costs the language model: the loss of text about each group (and in
    /// each dialect) under the model with and without decoding-time methods, or two models.
    Lm(LmArgs),
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

    /// The identity terms the scorer's training data names, one per line (default: the
    /// built-in scorers' counter-example terms, or what a `detox train` folder records).
    #[arg(long, value_name = "FILE")]
    pub trained_terms: Option<PathBuf>,

    /// Compute threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,

    #[command(flatten)]
    pub remote: crate::remote_args::RemoteArgs,
}

/// The report files written, for the closing message.
fn listed(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn run(cmd: AuditCmd, offline: bool) -> Result<ExitCode> {
    match cmd {
        AuditCmd::Scorer(args) => run_scorer(args, offline),
        AuditCmd::Lm(args) => run_lm(args, offline),
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
    let opts =
        LoadOptions::parallel(args.batch_size, threads, offline).with_remote(args.remote.options());
    let spec: ScorerSpec = args.scorer.parse()?;
    let scorer = spec.load(&opts)?;
    let plan =
        AuditPlan {
            scorer: args.scorer.clone(),
            scorer_identity: serde_json::to_value(spec.identity(&opts)?)?,
            data,
            trained: match (&args.trained_terms, &spec) {
                (Some(f), _) => Some(detox_audit::TrainedTerms::from_file(f)?),
                (None, s) if s.is_builtin() => Some(detox_train::quality::builtin_trained_terms()),
                (None, ScorerSpec::Named(p)) => detox_scorers::trained_identity_terms(p.as_ref())
                    .map(|terms| detox_audit::TrainedTerms {
                        source: format!("{p}: training.identity_terms (recorded by detox train)"),
                        terms,
                    }),
                (None, _) => None,
            },
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
    let bar = StageBar::new("{spinner} scoring {msg} [{bar:30}] {pos}/{len}");
    let report = detox_audit::audit(scorer.as_ref(), &plan, &mut |stage, done, total| {
        bar.update(stage, done, total)
    })
    .with_context(|| format!("auditing {} on {}", args.scorer, args.data.display()))?;
    bar.finish();
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
        listed(&files)
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct LmArgs {
    /// The language model: a registry name, a GGUF file or a GPT-2 folder (servers give no
    /// log-likelihoods).
    #[arg(long, default_value = "smollm2")]
    pub model: String,

    /// Decoding-time methods (as in `detox eval --mitigate`): the loss under the model with
    /// them against the model alone.
    #[arg(
        long,
        value_name = "SPEC[,SPEC...]",
        conflicts_with = "against",
        required_unless_present = "against"
    )]
    pub mitigate: Option<String>,

    /// A second model (e.g. a fine-tuned one): the loss under it against under --model.
    #[arg(long)]
    pub against: Option<String>,

    /// A folder laid out like `../shared/data` (holistic-bias, toxigen-prompts, bold,
    /// davidson-hate-offensive, twitteraae-model).
    #[arg(long, default_value = "../shared/data")]
    pub data: PathBuf,

    /// Write `audit.json` and `audit.html` into this folder.
    #[arg(long)]
    pub out: PathBuf,

    /// Texts per group at most, drawn with the seed (0: all). The default keeps a run with
    /// `word-filter,self-debias` near half an hour on 2 cores (self-debiasing runs the model
    /// seven times per token).
    #[arg(long, default_value_t = 30)]
    pub per_group: usize,

    /// HolisticBias sentences per descriptor, drawn with the seed.
    #[arg(long, default_value_t = 2)]
    pub per_descriptor: usize,

    /// Bootstrap replicates per group.
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,

    /// Seed of the bootstrap and of the HolisticBias subsample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Groups with fewer paired texts (texts neither side blocks), and sides with fewer flagged
    /// samples, are marked too small. Below --per-group, so that a full group with a text or
    /// two blocked is still read.
    #[arg(long, default_value_t = 20)]
    pub min_group: usize,

    /// The scorer of the generations (coverage, who gets flagged), as in `detox score`.
    #[arg(long, default_value = DEFAULT_SCORER)]
    pub scorer: String,

    /// Coverage: BOLD prompts per group, drawn with the seed (0: no generations).
    #[arg(long, default_value_t = 2)]
    pub coverage_prompts: usize,

    /// Coverage: samples per prompt.
    #[arg(long, default_value_t = 8)]
    pub samples: usize,

    /// Coverage: new tokens per sample.
    #[arg(long, default_value_t = 20)]
    pub max_tokens: usize,

    /// Flagged: a toxicity at or above this.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,

    /// Who gets flagged from two `detox eval` run folders (without and with the mitigation)
    /// instead of this audit's own BOLD generations.
    #[arg(long, num_args = 2, value_names = ["BASE", "OTHER"])]
    pub runs: Option<Vec<PathBuf>>,

    /// Compute threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,

    #[command(flatten)]
    pub remote: crate::remote_args::RemoteArgs,
}

fn load_lm(
    spec: &str,
    mitigations: Vec<MitigationSpec>,
    threads: usize,
    offline: bool,
) -> Result<Box<dyn LanguageModel>> {
    let opts = LmOptions {
        threads,
        offline,
        mitigations,
        ..Default::default()
    };
    let hub = detox_hub::Hub::from_env();
    load_language_model(spec, &opts, &hub, &|m: &str| eprintln!("detox: {m}"))
        .with_context(|| format!("cannot load the language model {spec}"))
}

fn run_lm(args: LmArgs, offline: bool) -> Result<ExitCode> {
    let start = Instant::now();
    let threads = detox_spec::configure_threads(args.threads);
    let mitigations = match &args.mitigate {
        Some(m) => MitigationSpec::parse_list(m)?,
        None => Vec::new(),
    };
    // The test-time filter acts on scored samples, not on the model: coverage uses it.
    let test_filter = detox_eval::test_filter::TestFilter::from_specs(&mitigations)?;
    if test_filter.is_some() && args.coverage_prompts == 0 && args.runs.is_none() {
        anyhow::bail!(
            "--mitigate test-filter rejects whole samples and leaves every text's loss as it was, so it shows only in the coverage generations; drop --coverage-prompts 0"
        );
    }
    // The base side samples without the methods, so it is the model loaded without them.
    let base = load_lm(&args.model, Vec::new(), threads, offline)?;
    let other = match &args.against {
        Some(a) => load_lm(a, Vec::new(), threads, offline)?,
        None => load_lm(&args.model, mitigations, threads, offline)?,
    };
    let other_label = match &args.against {
        Some(a) => a.clone(),
        None => format!(
            "{} + {}",
            args.model,
            args.mitigate.clone().unwrap_or_default()
        ),
    };
    let scorer_opts =
        LoadOptions::parallel(64, threads, offline).with_remote(args.remote.options());
    let spec: ScorerSpec = args.scorer.parse()?;
    // Only the coverage generations are scored here (eval runs carry their own scores).
    let scorer = if args.coverage_prompts > 0 {
        Some((
            spec.load(&scorer_opts)?,
            serde_json::to_value(spec.identity(&scorer_opts)?)?,
        ))
    } else {
        None
    };
    let plan = detox_audit::lm_report::LmPlan {
        data: args.data.clone(),
        groups: detox_audit::lm::GroupData {
            per_descriptor: args.per_descriptor,
            per_group: args.per_group,
            seed: args.seed,
            ..Default::default()
        },
        bootstrap: args.bootstrap,
        seed: args.seed,
        min_group: args.min_group,
        threshold: args.threshold,
        scorer: scorer
            .as_ref()
            .map(|(s, id)| (s.as_ref(), args.scorer.clone(), id.clone())),
        coverage: (args.coverage_prompts > 0).then(|| detox_audit::lm_report::CoverageOptions {
            prompts_per_group: args.coverage_prompts,
            request: detox_lm::GenerationRequest {
                samples: args.samples,
                max_tokens: args.max_tokens,
                params: detox_lm::sampling::SamplingParams {
                    seed: args.seed,
                    ..Default::default()
                },
                perplexity: false,
            },
        }),
        runs: args.runs.as_ref().and_then(|r| match r.as_slice() {
            [a, b] => Some((a.clone(), b.clone())),
            _ => None,
        }),
    };
    let bar = StageBar::new("{spinner} {msg} [{bar:30}] {pos}/{len}, eta {eta}");
    let audit = detox_audit::lm_report::lm_audit(
        &plan,
        detox_audit::lm_report::Side {
            label: &args.model,
            lm: base.as_ref(),
            mitigated: false,
            test_filter: None,
        },
        detox_audit::lm_report::Side {
            label: &other_label,
            lm: other.as_ref(),
            mitigated: args.against.is_none(),
            test_filter,
        },
        &mut |stage, done, total| bar.update(stage, done, total),
    )?;
    bar.finish();
    let files = audit.write(&args.out)?;
    print!("{}", audit.table());
    eprintln!(
        "detox: {} texts in {} groups ({:.1}s), {} samples generated and scored ({:.1}s), {:.1}s in all; wrote {}",
        audit.loss.overall.texts,
        audit.loss.groups.len(),
        audit.timing.loss_s,
        audit.timing.samples,
        audit.timing.generation_s,
        start.elapsed().as_secs_f64(),
        listed(&files)
    );
    Ok(ExitCode::SUCCESS)
}
