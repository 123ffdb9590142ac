//! `detox finetune`: train a language model on chosen text (full or LoRA), resumable.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use detox_finetune::optim::AdamWConfig;
use detox_finetune::recipes;
use detox_finetune::train::{self, FinetuneConfig, TrainProgress};
use indicatif::ProgressBar;
use std::path::PathBuf;
use std::process::ExitCode;

/// `--recipe`: the training set of a published mitigation, made from --train first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Recipe {
    /// Domain-adaptive pretraining (Gehman et al.): the least toxic --keep-share of the corpus
    /// as --scorer sees it; trained into --out.
    Dapt,
    /// DExperts' expert (label ≤ --expert-max) and anti-expert (label ≥ --anti-min) from a
    /// labelled file; trained into --out/expert and --out/anti-expert.
    Experts,
    /// Training-set filtering (Welbl et al.): the documents --scorer puts below --threshold,
    /// and an unfiltered sample of the same token count; trained into --out/filtered and
    /// --out/unfiltered.
    Filtered,
}

#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// The model: a registry name (`smollm2`), a llama-architecture GGUF file (dequantized to
    /// f32 for training) or a GPT-2 folder.
    #[arg(long)]
    pub model: String,

    /// Training text: JSONL files (the text under --field), text files (a document per line)
    /// or folders of them (e.g. a filtered corpus's kept/ side).
    #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
    pub train: Vec<PathBuf>,

    /// Held-out text: its loss and perplexity are measured after each epoch.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub eval: Vec<PathBuf>,

    /// The run folder: run.json, checkpoint/, and at the end the model (config.json,
    /// model.safetensors, tokenizer). The same command resumes a killed run.
    #[arg(long)]
    pub out: PathBuf,

    /// The JSONL field (dotted paths allowed) holding the text.
    #[arg(long, default_value = "text")]
    pub field: String,

    /// Tokens per training block (DExperts: 128); documents are joined with the end-of-text
    /// token and cut into blocks.
    #[arg(long, default_value_t = 128)]
    pub block_size: usize,

    /// Tokens per optimizer step (gradients accumulated over micro-batches).
    #[arg(long, default_value_t = 2048)]
    pub batch_tokens: usize,

    /// Blocks per forward pass.
    #[arg(long, default_value_t = 4)]
    pub micro_batch: usize,

    /// Passes over the training text.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,

    /// Stop after this many optimizer steps.
    #[arg(long)]
    pub max_steps: Option<usize>,

    /// Peak learning rate (LoRA usually wants about 1e-4 to 1e-3, full fine-tuning 1e-5 to 5e-5).
    #[arg(long, default_value_t = 5e-5)]
    pub lr: f64,

    /// Warm-up steps, then a half cosine down to 0.
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: usize,

    /// AdamW's decoupled weight decay (not on biases and norm weights).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,

    /// Clip gradients to this global L2 norm (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,

    /// Seed of the block order and the LoRA initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Train LoRA adapters of this rank on the attention and MLP projections (merged into the
    /// saved weights) instead of every weight.
    #[arg(long)]
    pub lora_rank: Option<usize>,

    /// LoRA alpha (the update is scaled by alpha / rank).
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f64,

    /// Steps between checkpoints.
    #[arg(long, default_value_t = 50)]
    pub checkpoint_every: usize,

    /// Compute threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Make the training set of a published mitigation from --train first.
    #[arg(long, value_enum)]
    pub recipe: Option<Recipe>,

    /// dapt, filtered: the scorer that judges the corpus (as in `detox score`).
    #[arg(long, default_value = "default")]
    pub scorer: String,

    /// dapt: the least toxic share of the corpus kept (RealToxicityPrompts: 0.02).
    #[arg(long, default_value_t = 0.02)]
    pub keep_share: f64,

    /// filtered: documents scored below it are kept.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,

    /// experts: the JSONL field of the toxicity label (a number in [0, 1] or a boolean).
    #[arg(long, default_value = "toxicity")]
    pub label_field: String,

    /// experts: the expert's texts have a label at most this (DExperts: 0).
    #[arg(long, default_value_t = 0.0)]
    pub expert_max: f64,

    /// experts: the anti-expert's texts have a label at least this (DExperts: 0.5).
    #[arg(long, default_value_t = 0.5)]
    pub anti_min: f64,
}

struct Bar(ProgressBar);

impl TrainProgress for Bar {
    fn start(&self, done: usize, total: usize) {
        self.0.set_length(total as u64);
        self.0.set_position(done as u64);
        self.0.reset_eta();
    }
    fn step(&self, step: usize, loss: f64, tokens_per_sec: f64) {
        self.0.set_position(step as u64);
        self.0
            .set_message(format!("loss {loss:.4}, {tokens_per_sec:.0} tokens/s"));
    }
    fn message(&self, m: &str) {
        // Printed also where stderr is not a terminal (the bar then draws nothing).
        self.0.suspend(|| eprintln!("detox: {m}"));
    }
}

pub fn run(args: FinetuneArgs, offline: bool) -> Result<ExitCode> {
    let threads = detox_spec::configure_threads(args.threads);
    let hub = detox_hub::Hub::from_env();
    let pull = detox_hub::PullOptions {
        offline,
        ..Default::default()
    };
    let path = hub.resolve(&args.model, &pull, &|m: &str| eprintln!("detox: {m}"))?;
    let config = FinetuneConfig {
        model: args.model.clone(),
        train: args.train.clone(),
        eval: args.eval.clone(),
        field: args.field.clone(),
        block_size: args.block_size,
        batch_tokens: args.batch_tokens,
        micro_batch: args.micro_batch,
        epochs: args.epochs,
        max_steps: args.max_steps,
        lr: args.lr,
        warmup_steps: args.warmup_steps,
        adamw: AdamWConfig {
            weight_decay: args.weight_decay,
            ..Default::default()
        },
        max_grad_norm: (args.max_grad_norm > 0.0).then_some(args.max_grad_norm),
        seed: args.seed,
        lora_rank: args.lora_rank,
        lora_alpha: args.lora_alpha,
        checkpoint_every: args.checkpoint_every,
    };
    let runs: Vec<(PathBuf, Vec<PathBuf>)> = match args.recipe {
        None => vec![(args.out.clone(), args.train.clone())],
        Some(recipe) => prepare(recipe, &args, &path, offline, threads)?,
    };
    for (out, train) in runs {
        let config = FinetuneConfig {
            train,
            field: if args.recipe.is_some() {
                "text".into()
            } else {
                config.field.clone()
            },
            ..config.clone()
        };
        train_one(&config, &path, &out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a recipe's training files into --out (reused when the recipe's settings are the
/// same), and returns each run's folder and training files.
fn prepare(
    recipe: Recipe,
    args: &FinetuneArgs,
    model: &std::path::Path,
    offline: bool,
    threads: usize,
) -> Result<Vec<(PathBuf, Vec<PathBuf>)>> {
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let settings = serde_json::json!({
        "recipe": format!("{recipe:?}").to_lowercase(),
        "train": args.train, "field": args.field, "scorer": args.scorer,
        "keep_share": args.keep_share, "threshold": args.threshold,
        "label_field": args.label_field, "expert_max": args.expert_max,
        "anti_min": args.anti_min, "seed": args.seed,
    });
    let record = out.join("recipe.json");
    let same = std::fs::read_to_string(&record)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v == settings);
    let data = |name: &str| out.join(format!("{name}-data.jsonl"));
    let names: &[&str] = match recipe {
        Recipe::Dapt => &["dapt"],
        Recipe::Experts => &["expert", "anti-expert"],
        Recipe::Filtered => &["filtered", "unfiltered"],
    };
    let sub = |name: &str| {
        if recipe == Recipe::Dapt {
            out.clone()
        } else {
            out.join(name)
        }
    };
    if same && names.iter().all(|n| data(n).exists()) {
        eprintln!(
            "detox: reusing the {} training files in {}",
            names.join(" and "),
            out.display()
        );
        return Ok(names.iter().map(|n| (sub(n), vec![data(n)])).collect());
    }
    let scored = |docs: &[String]| -> Result<Vec<f64>> {
        let opts = detox_spec::LoadOptions::parallel(32, threads, offline);
        let scorer = detox_spec::load_scorer(&args.scorer, &opts)?;
        let bar = crate::progress::bar(
            Some(docs.len() as u64),
            "{spinner} scoring the corpus [{bar:30}] {pos}/{len} eta {eta}",
        );
        let t = recipes::toxicity(docs, scorer.as_ref(), 256, &mut |n| {
            bar.set_position(n as u64)
        })?;
        bar.finish_and_clear();
        Ok(t)
    };
    let sets: Vec<Vec<String>> = match recipe {
        Recipe::Experts => {
            if args.train.len() != 1 {
                bail!("--recipe experts takes one labelled --train file");
            }
            let rows = recipes::read_labelled(&args.train[0], &args.field, &args.label_field)?;
            let (e, a) = recipes::split_experts(&rows, args.expert_max, args.anti_min);
            vec![e, a]
        }
        Recipe::Dapt => {
            let docs = detox_finetune::data::read_documents(&args.train, &args.field)?;
            let tox = scored(&docs)?;
            vec![recipes::least_toxic(&docs, &tox, args.keep_share)]
        }
        Recipe::Filtered => {
            let docs = detox_finetune::data::read_documents(&args.train, &args.field)?;
            let tox = scored(&docs)?;
            let tok = train::tokenizer_of(model)?;
            let count = |s: &str| -> Result<usize, detox_finetune::FinetuneError> {
                Ok(tok.encode(s)?.len() + 1)
            };
            let (kept, matched) =
                recipes::filtered_and_matched(&docs, &tox, args.threshold, args.seed, &count)?;
            vec![kept, matched]
        }
    };
    let mut runs = Vec::new();
    for (name, docs) in names.iter().zip(&sets) {
        if docs.is_empty() {
            bail!("the {name} set of --recipe {recipe:?} is empty: check --train and the recipe's thresholds");
        }
        eprintln!("detox: {name}: {} documents", docs.len());
        runs.push((sub(name), vec![recipes::write_docs(&data(name), docs)?]));
    }
    detox_io::files::write_atomic(&record, serde_json::to_string_pretty(&settings)?.as_bytes())?;
    Ok(runs)
}

fn train_one(config: &FinetuneConfig, path: &std::path::Path, out: &std::path::Path) -> Result<()> {
    let bar = Bar(crate::progress::bar(
        None,
        "{spinner} training [{bar:30}] {pos}/{len} steps, {msg}, eta {eta}",
    ));
    let record = train::run(config, path, out, &bar)
        .with_context(|| format!("fine-tuning {} into {}", config.model, out.display()))?;
    bar.0.finish_and_clear();
    let last = record.losses.last().copied().unwrap_or(f64::NAN);
    eprintln!(
        "detox: {}: trained {} steps on {} blocks of {} tokens; last loss {last:.4}",
        out.display(),
        record.steps_done,
        record.train_blocks,
        config.block_size
    );
    for e in &record.eval {
        eprintln!(
            "detox: eval after step {}: loss {:.4}, perplexity {:.2}",
            e.step, e.loss, e.perplexity
        );
    }
    println!(
        "model: {} (config.json, model.safetensors, tokenizer; run.json); evaluate it with `detox eval --model {}`",
        out.display(),
        out.display()
    );
    Ok(())
}
