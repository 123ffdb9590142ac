//! `detox eval`: the RealToxicityPrompts protocol on a local model (GGUF, GPT-2 safetensors) or
//! any OpenAI-compatible completions server.

use crate::choices::WeightsArg;
use crate::progress::{self, Tenths};
use anyhow::{Context, Result};
use clap::Args;
use detox_eval::metrics::Threshold;
use detox_eval::prompts::Subset;
use detox_eval::run::{self, EvalConfig, Models, Progress, PromptSource};
use detox_eval::table::{render_table, TableHeading};
use detox_eval::test_filter::TestFilter;
use detox_lm::decoding::MitigationSpec;
use detox_lm::openai::{is_url, OpenAiConfig};
use detox_lm::sampling::SamplingParams;
use detox_lm::{load_language_model, GenerationRequest, LanguageModel, LmOptions};
use detox_spec::{LoadOptions, DEFAULT_SCORER};
use indicatif::ProgressBar;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Prompt file (RTP JSONL, JSONL with --field, or text lines); default: the built-in smoke set.
    #[arg(long)]
    pub prompts: Option<PathBuf>,

    /// The prompt field of JSONL files (dotted paths allowed).
    #[arg(long, default_value = "prompt.text")]
    pub field: String,

    /// Unprompted mode (RTP): N generations from the empty prompt (BOS), in groups of --samples;
    /// reports RTP's bootstrap of the expected maximum over --samples draws.
    #[arg(long, value_name = "N", conflicts_with_all = ["prompts", "subset"])]
    pub unprompted: Option<usize>,

    /// The language model: a registry name, a GGUF file, a Hugging Face GPT-2 folder, or the
    /// address of an OpenAI-compatible server (`http://host:port/v1`).
    #[arg(long, default_value = "smollm2")]
    pub model: String,

    /// Local models: a Hugging Face `tokenizer.json` to use instead of the one in the GGUF
    /// metadata or model folder.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,

    /// Local GGUF models: `f32` dequantizes the matrices (fastest for batched sampling on CPU;
    /// 4 bytes a weight) or `as-stored` keeps the file's quantization (for models too large
    /// to hold in f32).
    #[arg(long, value_enum, default_value_t = WeightsArg::F32)]
    pub weights: WeightsArg,

    /// Decoding-time mitigation, applied in the order given: `word-filter:list=FILE`
    /// (RealToxicityPrompts' word filter over a word list, one word per line),
    /// `self-debias[:lambda=50,epsilon=0.01]` (Schick et al.'s self-debiasing with their six
    /// prefixes), `dexperts:[expert=PATH,]anti=PATH[,alpha=2.0,filter_p=0.9]` (Liu et al.'s
    /// DExperts; experts share the model's tokenizer): local models only;
    /// `test-filter[:threshold=0.5,tries=4]` (Welbl et al.'s test-time filtering with the run's
    /// scorer: a sample at or above the threshold is sampled again; servers too; applied to
    /// whole samples, after the others). Recorded in run.json; a run folder refuses another
    /// value.
    #[arg(long, value_name = "SPEC[,SPEC...]", value_parser = parse_mitigations)]
    pub mitigate: Option<Mitigations>,

    /// Server models: the `model` field to send (default: the first one the server lists).
    #[arg(long)]
    pub model_name: Option<String>,

    /// Server models: bearer token.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Server models: prompts in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,

    /// Server models: retries of a request that failed with 429, 5xx or a dropped connection.
    #[arg(long, default_value_t = 6)]
    pub retries: u32,

    /// Server models: timeout of one request, in seconds.
    #[arg(long, default_value_t = 120.0)]
    pub request_timeout: f64,

    /// Compute perplexity with this local model instead of the evaluated one (DExperts used
    /// GPT-2 XL): a registry name, GGUF file or GPT-2 folder.
    #[arg(long)]
    pub judge_model: Option<String>,

    /// Skip perplexity.
    #[arg(long)]
    pub no_perplexity: bool,

    /// The scorer (as in `detox score`).
    #[arg(long, default_value = DEFAULT_SCORER)]
    pub scorer: String,

    /// Samples per prompt (RTP: 25).
    #[arg(long, default_value_t = 25)]
    pub samples: usize,

    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,

    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f32,

    /// Top-k sampling (0: off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,

    /// New tokens per sample.
    #[arg(long, default_value_t = 20)]
    pub max_tokens: usize,

    /// Seed: the same seed gives the same text for the same prompt and sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Use only the first N prompts (after --subset).
    #[arg(long)]
    pub limit: Option<usize>,

    /// Keep only these prompts (prompt toxicity from the file's Perspective scores, else from
    /// the scorer).
    #[arg(long, value_enum)]
    pub subset: Option<Subset>,

    /// Toxicity threshold.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,

    /// Count a sample as toxic only above the threshold (the RTP notebook's `>`).
    #[arg(long)]
    pub strict: bool,

    /// Run folder: run.json, generations.jsonl, metrics.json, report.html; an interrupted run
    /// resumes.
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Compute threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,

    #[command(flatten)]
    pub remote: crate::remote_args::RemoteArgs,
}

/// `--mitigate`'s methods, in order (one value holding a list, as clap needs it).
#[derive(Debug, Clone)]
pub struct Mitigations(Vec<MitigationSpec>);

fn parse_mitigations(s: &str) -> Result<Mitigations, String> {
    MitigationSpec::parse_list(s)
        .map(Mitigations)
        .map_err(|e| e.message)
}

/// The progress bar on stderr.
/// The generation bar; without a terminal (where indicatif draws nothing), a line at every
/// tenth of the prompts instead.
struct Bar {
    bar: ProgressBar,
    tenths: Tenths,
}

impl Progress for Bar {
    fn start(&self, done: usize, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
        self.bar.reset_eta();
        self.tenths.reset(done as u64, total as u64);
    }

    fn advance(&self, generations_per_sec: f64) {
        self.bar
            .set_message(format!("{generations_per_sec:.1} generations/s"));
        self.bar.inc(1);
        let (done, total) = (self.bar.position(), self.bar.length().unwrap_or(0));
        if self.tenths.passed(done, total) {
            eprintln!(
                "detox: generating: {done}/{total} prompts, {generations_per_sec:.1} generations/s"
            );
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn message(&self, msg: &str) {
        self.bar.suspend(|| eprintln!("detox: {msg}"));
    }
}

fn load_lm(
    spec: &str,
    tokenizer: Option<PathBuf>,
    mitigations: Vec<MitigationSpec>,
    args: &EvalArgs,
    threads: usize,
    offline: bool,
) -> Result<Box<dyn LanguageModel>> {
    let opts = LmOptions {
        tokenizer,
        weights: args.weights.into(),
        threads,
        server: OpenAiConfig {
            model: args.model_name.clone(),
            api_key: args.api_key.clone(),
            concurrency: args.concurrency,
            retries: args.retries,
            timeout: Duration::from_secs_f64(args.request_timeout.max(0.001)),
            ..Default::default()
        },
        offline,
        mitigations,
    };
    let hub = detox_hub::Hub::from_env();
    load_language_model(spec, &opts, &hub, &|m: &str| eprintln!("detox: {m}")).with_context(|| {
        if is_url(spec) {
            format!("cannot use the server at {spec}")
        } else {
            format!("cannot load the language model {spec}")
        }
    })
}

pub fn run(args: EvalArgs, offline: bool) -> Result<ExitCode> {
    let threads = detox_spec::configure_threads(args.threads);
    let config = EvalConfig {
        prompts: match (&args.prompts, args.unprompted) {
            (_, Some(n)) => PromptSource::Unprompted(n),
            (Some(p), None) => PromptSource::File(p.clone()),
            (None, None) => PromptSource::Smoke,
        },
        field: args.field.clone(),
        subset: args.subset,
        limit: args.limit,
        model: args.model.clone(),
        weights: args.weights.name().to_string(),
        judge_model: args.judge_model.clone(),
        perplexity: !args.no_perplexity,
        model_gives_perplexity: !is_url(&args.model),
        scorer: args.scorer.clone(),
        request: GenerationRequest {
            samples: args.samples,
            max_tokens: args.max_tokens,
            params: SamplingParams {
                temperature: args.temperature,
                top_p: args.top_p,
                top_k: args.top_k,
                seed: args.seed,
            },
            perplexity: false,
        },
        threshold: Threshold {
            value: args.threshold,
            strict: args.strict,
        },
        out: args.out.clone(),
        test_filter: TestFilter::from_specs(
            args.mitigate
                .as_ref()
                .map(|m| m.0.as_slice())
                .unwrap_or_default(),
        )?,
        threads,
    };
    config.validate()?;
    let scorer_opts =
        LoadOptions::parallel(32, threads, offline).with_remote(args.remote.options());
    let scorer_spec: detox_spec::ScorerSpec = args.scorer.parse()?;
    let scorer = scorer_spec.load(&scorer_opts)?;
    let prepared = run::prepare(&config, scorer.as_ref())?;
    for e in &prepared.skipped {
        eprintln!("detox: skipped prompt: {}", e.message);
    }
    for w in &prepared.warnings {
        eprintln!("detox: {w}");
    }
    let lm = load_lm(
        &args.model,
        args.tokenizer.clone(),
        args.mitigate.clone().map(|m| m.0).unwrap_or_default(),
        &args,
        threads,
        offline,
    )?;
    let judge: Option<Box<dyn LanguageModel>> = match &args.judge_model {
        Some(j) if is_url(j) => {
            anyhow::bail!("--judge-model must be a local model (a server gives no perplexities)")
        }
        Some(j) if !args.no_perplexity => {
            Some(load_lm(j, None, Vec::new(), &args, threads, offline)?)
        }
        _ => None,
    };
    let scorer_identity = serde_json::to_value(scorer_spec.identity(&scorer_opts)?)?;
    let models = Models {
        lm: lm.as_ref(),
        judge: judge.as_deref(),
        scorer: scorer.as_ref(),
        scorer_identity: &scorer_identity,
    };
    let bar = progress::bar(
        Some(prepared.prompts.len() as u64),
        "{spinner} generating [{bar:30}] {pos}/{len} prompts, {per_sec}, {msg} eta {eta}",
    );
    let outcome = run::run(
        &config,
        &prepared,
        &models,
        &Bar {
            bar,
            tenths: Tenths::new(),
        },
    )?;
    if outcome.fresh > 0 {
        let secs = outcome.seconds;
        eprintln!(
            "detox: {} prompts, {} generations in {:.1}s: {:.2} prompts/s, {:.1} generations/s",
            outcome.fresh,
            outcome.fresh * args.samples,
            secs,
            outcome.fresh as f64 / secs,
            (outcome.fresh * args.samples) as f64 / secs
        );
    }
    print!(
        "{}",
        render_table(
            &TableHeading {
                prompts: prepared.prompts.len(),
                samples: args.samples,
                model: &args.model,
                scorer: &scorer.info().id,
                attribute: prepared.attributes.name(),
                threshold: args.threshold,
                strict: args.strict,
            },
            &outcome.metrics.subsets,
            outcome.metrics.test_filter.as_ref(),
            &outcome.metrics.notes,
        )
    );
    if let Some(dir) = &args.out {
        println!(
            "run folder: {} (run.json, generations.jsonl, metrics.json, report.html)",
            dir.display()
        );
    }
    if outcome.unscored > 0 {
        eprintln!(
            "detox: {} samples could not be scored (their `score_error` says why); rerun the same command to ask for them again",
            outcome.unscored
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
