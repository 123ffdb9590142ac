//! `detox train` and `detox quality`.

use crate::choices::{PoolingArg, RecipeArg, TrainModelArg};
use anyhow::{Context, Result};
use clap::Args;
use detox_spec::{LoadOptions, DEFAULT_SCORER};
use detox_train::data::{read_labelled, read_shared, shared_attributes, PERSPECTIVE_ATTRIBUTES};
use detox_train::fit::FitConfig;
use detox_train::{Progress, TrainOptions};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Where to write the scorer folder (`detox score --scorer DIR` loads it).
    #[arg(long, short)]
    pub out: PathBuf,

    /// Train on the public datasets of `--data` mapped to Perspective's attributes
    /// (`shared`), instead of `--train` files.
    #[arg(long, value_enum)]
    pub recipe: Option<RecipeArg>,

    /// The data folder of `--recipe shared`.
    #[arg(long, default_value = "../shared/data")]
    pub data: PathBuf,

    /// Labelled JSONL/CSV/TSV files (repeatable): a text field plus label columns in [0, 1].
    #[arg(long = "train")]
    pub train: Vec<PathBuf>,

    /// The text field of `--train` files.
    #[arg(long, default_value = "text")]
    pub field: String,

    /// Label columns of `--train` files, comma-separated; they become the attributes.
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,

    /// What to train: `head` (a head on encoder embeddings), `ngram` (a linear model on hashed
    /// word and character n-grams, for corpus-scale speed), or `default` (both, with their
    /// mean calibrated as a whole: the built-in scorer's recipe).
    #[arg(long, value_enum, default_value_t = TrainModelArg::Head)]
    pub model: TrainModelArg,

    /// log2 of the hash buckets of an `ngram` model.
    #[arg(long, default_value_t = 18)]
    pub bits: u32,

    /// The encoder (a registry name or a local folder).
    #[arg(long, default_value = "all-minilm-l6-v2")]
    pub encoder: String,

    /// Hidden units of the head (0: linear).
    #[arg(long, default_value_t = 1024)]
    pub hidden: usize,

    /// Epochs over the training data (default: 20 for a head, 8 for an n-gram model).
    #[arg(long)]
    pub epochs: Option<usize>,

    /// Learning rate (default: AdamW 1e-3 for a head, AdaGrad 0.2 for an n-gram model).
    #[arg(long)]
    pub lr: Option<f64>,

    /// AdamW weight decay.
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,

    /// Seed of initial weights and shuffling.
    #[arg(long, default_value_t = 17)]
    pub seed: u64,

    /// Token limit for embedding.
    #[arg(long, default_value_t = 256)]
    pub max_length: usize,

    /// Pooling of token states.
    #[arg(long, value_enum, default_value_t = PoolingArg::Mean)]
    pub pooling: PoolingArg,

    /// Weight of a source's examples, e.g. `rtp=3` (repeatable).
    #[arg(long = "source-weight", value_parser = parse_weight)]
    pub source_weights: Vec<(String, f32)>,

    /// Weight of Perspective attributes learnt from datasets that are not Perspective-scored
    /// (recipe `shared`: HateXplain, Davidson, ToxiGen labels for toxicity / identity_attack).
    #[arg(long, default_value_t = 0.1)]
    pub cross_weight: f32,

    /// Skip calibration onto Perspective scores.
    #[arg(long)]
    pub no_calibration: bool,

    /// Cross-fitting folds of the calibration: the isotonic maps are fitted on out-of-fold
    /// probabilities (each fold predicted by models fitted on the others). 0 or 1: fitted on
    /// the final model's own training-split probabilities (`--model default` needs >= 2).
    #[arg(long, default_value_t = 5)]
    pub folds: usize,

    /// Embedding cache (default: $DETOX_HOME/train-cache); re-runs and resumed runs reuse it.
    #[arg(long)]
    pub cache: Option<PathBuf>,

    /// Texts per forward pass while embedding.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,

    /// After fitting the head, fine-tune the encoder's top N blocks with it (candle autograd;
    /// the tuned blocks are saved in the head's folder). 0: the encoder stays frozen.
    #[arg(long, default_value_t = 0)]
    pub fine_tune_layers: usize,

    /// Fine-tuning epochs.
    #[arg(long, default_value_t = 2)]
    pub fine_tune_epochs: usize,

    /// Fine-tuning learning rate of the encoder blocks (the head uses 5x this).
    #[arg(long, default_value_t = 2e-5)]
    pub fine_tune_lr: f64,

    /// Compute threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

fn parse_weight(s: &str) -> Result<(String, f32), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not SOURCE=WEIGHT"))?;
    let w: f32 = v.parse().map_err(|_| format!("`{v}` is not a number"))?;
    Ok((k.to_string(), w))
}

pub fn run_train(args: TrainArgs, offline: bool) -> Result<ExitCode> {
    let threads = detox_spec::configure_threads(args.threads);
    let (examples, attributes, exported) = match args.recipe {
        Some(RecipeArg::Shared) => (
            read_shared(&args.data).with_context(|| {
                format!("reading the shared datasets under {}", args.data.display())
            })?,
            shared_attributes(),
            PERSPECTIVE_ATTRIBUTES
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        ),
        None => {
            if args.train.is_empty() || args.labels.is_empty() {
                anyhow::bail!("give --recipe shared, or --train FILE with --labels COL[,COL...]");
            }
            let mut all = Vec::new();
            for f in &args.train {
                let src = f
                    .file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_else(|| "data".into());
                all.extend(read_labelled(f, &args.field, &args.labels, &src)?);
            }
            (all, args.labels.clone(), args.labels.clone())
        }
    };
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &examples {
        *counts.entry(e.source.as_str()).or_default() += 1;
    }
    eprintln!(
        "detox: {} examples ({}); attributes: {}",
        examples.len(),
        counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        exported.join(", ")
    );
    let ngram = args.model == TrainModelArg::Ngram;
    let encoder_dir = if ngram {
        std::path::PathBuf::new()
    } else {
        LoadOptions {
            offline,
            ..Default::default()
        }
        .resolve_path(&args.encoder)?
    };
    let mut source_weights: BTreeMap<String, f32> = BTreeMap::new();
    if args.recipe == Some(RecipeArg::Shared) {
        source_weights.extend(
            detox_train::data::SHARED_SOURCE_WEIGHTS
                .iter()
                .map(|(k, v)| (k.to_string(), *v)),
        );
    }
    for (k, v) in &args.source_weights {
        source_weights.insert(k.clone(), *v);
    }
    // The command as recorded in the folders: the program as `detox` (not the path it ran
    // from), so the documented command reproduces the files byte for byte.
    let command: Vec<String> = std::iter::once("detox".to_string())
        .chain(std::env::args().skip(1))
        .collect();
    let opts = TrainOptions {
        encoder_name: args.encoder.clone(),
        encoder_dir,
        max_tokens: args.max_length,
        pooling: args.pooling.into(),
        batch_size: args.batch_size,
        parallel: threads,
        cache_dir: args
            .cache
            .clone()
            .unwrap_or_else(|| detox_hub::default_home().join("train-cache")),
        attributes,
        exported,
        source_weights,
        cross_weight: args.cross_weight,
        fit: FitConfig {
            hidden: args.hidden,
            epochs: args.epochs.unwrap_or(20),
            lr: args.lr.unwrap_or(1e-3),
            weight_decay: args.weight_decay,
            batch_size: 256,
            seed: args.seed,
        },
        fine_tune: detox_train::finetune::TuneConfig {
            layers: args.fine_tune_layers,
            epochs: args.fine_tune_epochs,
            lr: args.fine_tune_lr,
            head_lr: args.fine_tune_lr * 5.0,
            batch_size: args.batch_size,
            seed: args.seed,
            threads,
        },
        calibrate: !args.no_calibration,
        folds: args.folds,
        command: command.join(" "),
    };
    let bar = crate::progress::bar(None, "{spinner} {msg} [{bar:30}] {pos}/{len} eta {eta}");
    let mut stage = "";
    let ngram_cfg = detox_train::ngram_fit::NgramConfig {
        bits: args.bits.clamp(8, 24),
        epochs: args.epochs.unwrap_or(8),
        lr: args.lr.unwrap_or(0.2) as f32,
        seed: args.seed,
    };
    let mut on_progress = |p: Progress| match p {
        Progress::Embedding { done, total } => {
            if stage != "embed" {
                stage = "embed";
                bar.set_message("embedding");
                bar.set_length(total as u64);
            }
            bar.set_position(done as u64);
        }
        Progress::Fold { fold, folds } => {
            stage = "fold";
            bar.set_message(format!(
                "cross-fitting the calibration, fold {fold} of {folds}"
            ));
            bar.set_length(folds as u64);
            bar.set_position(fold as u64 - 1);
            if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                eprintln!("detox: cross-fitting the calibration, fold {fold} of {folds}");
            }
        }
        Progress::Epoch {
            epoch,
            epochs,
            loss,
        } => {
            if stage != "fit" {
                stage = "fit";
                bar.set_length(epochs as u64);
            }
            bar.set_message(format!("fitting, loss {loss:.4}"));
            bar.set_position(epoch as u64);
        }
        Progress::Tune {
            epoch,
            step,
            steps,
            loss,
        } => {
            if stage != "tune" {
                stage = "tune";
                bar.set_length(steps as u64);
            }
            bar.set_message(format!("fine-tuning, epoch {epoch}, loss {loss:.4}"));
            bar.set_position(step as u64);
            // Without a terminal the bar is hidden: a line every tenth of an epoch instead.
            if !std::io::IsTerminal::is_terminal(&std::io::stderr())
                && (step % (steps / 10).max(1) == 0 || step == steps)
            {
                eprintln!("detox: fine-tuning epoch {epoch}: step {step}/{steps}, loss {loss:.4}");
            }
        }
    };
    match args.model {
        TrainModelArg::Ngram => {
            let r = detox_train::train_ngram(
                &examples,
                &opts,
                &ngram_cfg,
                &args.out,
                &mut on_progress,
            )?;
            bar.finish_and_clear();
            print_report("n-gram model", &r);
        }
        TrainModelArg::Head => {
            let r = detox_train::train(&examples, &opts, &args.out, &mut on_progress)?;
            bar.finish_and_clear();
            print_report("head", &r);
        }
        TrainModelArg::Default => {
            let r = detox_train::train_default(
                &examples,
                &opts,
                &ngram_cfg,
                &args.out,
                &mut on_progress,
            )?;
            bar.finish_and_clear();
            print_report("head (default/)", &r.head);
            print_report("n-gram model (fast/)", &r.ngram);
            println!("calibrated ensemble (ensemble.json), dev splits:");
            print_dev(&r.ensemble_dev);
        }
    }
    println!("wrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

fn print_report(what: &str, report: &detox_train::TrainReport) {
    println!(
        "{what}: trained on {} examples ({} held out for dev and test), final loss {:.4}",
        report.train_examples, report.dev_examples, report.final_loss
    );
    print_dev(&report.dev);
}

fn print_dev(dev: &[detox_train::DevMetric]) {
    println!(
        "{:<14} {:<26} {:>6} {:>8} {:>9}",
        "source", "attribute", "dev n", "ROC-AUC", "Spearman"
    );
    for m in dev {
        let f = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
        println!(
            "{:<14} {:<26} {:>6} {:>8} {:>9}",
            m.source,
            m.attribute,
            m.n,
            f(m.auc),
            f(m.spearman)
        );
    }
}

#[derive(Debug, Args)]
pub struct QualityArgs {
    /// The scorer to measure (as in `detox score`).
    #[arg(long, default_value = DEFAULT_SCORER)]
    pub scorer: String,

    /// The data folder (laid out like `../shared/data`); data sets missing from it are
    /// reported as skipped.
    #[arg(long, default_value = "../shared/data")]
    pub data: PathBuf,

    /// The attribute that means "toxic".
    #[arg(long, default_value = "toxicity")]
    pub attribute: String,

    /// Score at or above which a template counts as flagged.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,

    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,

    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,

    /// Compute threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,

    #[command(flatten)]
    pub remote: crate::remote_args::RemoteArgs,
}

pub fn run_quality(args: QualityArgs, offline: bool) -> Result<ExitCode> {
    let threads = detox_spec::configure_threads(args.threads);
    let scorer = detox_spec::load_scorer(
        &args.scorer,
        &LoadOptions::parallel(args.batch_size, threads, offline)
            .with_remote(args.remote.options()),
    )?;
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let report = detox_train::quality::quality(
        scorer.as_ref(),
        &args.attribute,
        &args.data,
        args.threshold,
        &mut |stage, done, total| {
            bar.set_message(stage.to_string());
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )
    .with_context(|| format!("measuring on {}", args.data.display()))?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(ExitCode::SUCCESS)
}
