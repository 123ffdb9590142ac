//! `detox`: measure and reduce the toxicity of language models.
//!
//! The binary only parses arguments and wires the library crates together:
//! `detox-io` reads inputs, `detox-hub` finds models, `detox-scorers` scores,
//! `detox-dialect` infers dialect proportions, `detox-audit` audits scorers for bias.

mod agree_cmd;
mod audit_cmd;
mod choices;
mod compare_cmd;
mod dialect_cmd;
mod eval_cmd;
mod finetune_cmd;
mod models_cmd;
mod progress;
mod rate_cmd;
mod remote_args;
mod score_cmd;
mod serve_cmd;
mod train_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Measure and reduce the toxicity of language models, locally.
#[derive(Debug, Parser)]
#[command(name = "detox", version, about, long_about = None)]
struct Cli {
    /// Never download: use cached models and local paths only (also DETOX_OFFLINE=1).
    #[arg(long, global = true, env = "DETOX_OFFLINE", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false)]
    offline: bool,

    /// Log verbosity for diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn", env = "DETOX_LOG")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Score texts: JSONL, CSV/TSV or plain lines in, JSONL with per-attribute scores out.
    Score(score_cmd::ScoreArgs),
    /// List, pull and locate the models detox knows by name.
    #[command(subcommand)]
    Models(models_cmd::ModelsCmd),
    /// Train a scorer: a head on a registry encoder, calibrated to Perspective's scale.
    Train(train_cmd::TrainArgs),
    /// Measure a scorer on held-out dev splits and identity-term templates.
    Quality(train_cmd::QualityArgs),
    /// Run the RealToxicityPrompts protocol on a local GGUF language model.
    Eval(eval_cmd::EvalArgs),
    /// Train a language model on chosen text (full or LoRA): DAPT, DExperts' experts, filtered-data models.
    Finetune(finetune_cmd::FinetuneArgs),
    /// Compare finished eval runs: figures side by side, paired differences from the first run.
    Compare(compare_cmd::CompareArgs),
    /// How far two scorers agree on the same texts (e.g. Perspective and detox's own).
    Agree(agree_cmd::AgreeArgs),
    /// Dialect proportions (TwitterAAE: African-American, Hispanic, Asian, White English) per text.
    Dialect(dialect_cmd::DialectArgs),
    /// Bias audits: `audit scorer` measures a scorer's identity-term bias.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCmd),
    /// Human ratings: a local rating page, raters' links, export and agreement statistics.
    #[command(subcommand)]
    Rate(rate_cmd::RateCmd),
    /// Serve scores over HTTP: Perspective's comments:analyze, OpenAI's /v1/moderations, /v1/score.
    Serve(serve_cmd::ServeArgs),
    /// The CPU and the instruction set detox's kernels use on it (lower it with DETOX_CPU=avx2).
    Cpu,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    // A bad DETOX_CPU is an error before any work starts, not a silent fallback.
    if let Err(e) = detox_kernels::cpu::init() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Score(args) => score_cmd::run(args, cli.offline),
        Command::Models(cmd) => models_cmd::run(cmd, cli.offline),
        Command::Train(args) => train_cmd::run_train(args, cli.offline),
        Command::Quality(args) => train_cmd::run_quality(args, cli.offline),
        Command::Serve(args) => serve_cmd::run(args, cli.offline),
        Command::Rate(cmd) => rate_cmd::run(cmd),
        Command::Eval(args) => eval_cmd::run(args, cli.offline),
        Command::Compare(args) => compare_cmd::run(args),
        Command::Finetune(args) => finetune_cmd::run(args, cli.offline),
        Command::Agree(args) => agree_cmd::run(args, cli.offline),
        Command::Dialect(args) => dialect_cmd::run(args),
        Command::Audit(cmd) => audit_cmd::run(cmd, cli.offline),
        Command::Cpu => {
            println!("{}", detox_kernels::cpu::describe());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
