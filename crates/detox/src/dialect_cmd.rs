//! `detox dialect`: TwitterAAE dialect proportions, one JSONL line per input line.

use crate::choices::FormatArg;
use crate::score_cmd::Sink;
use anyhow::{Context, Result};
use clap::Args;
use detox_dialect::stream::{dialect_rows, Tally};
use detox_dialect::{resolve_model_dir, DialectModel};
use detox_io::{Format, InputReader};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct DialectArgs {
    /// Input file (JSONL, CSV, TSV or text lines); `-` or nothing reads stdin.
    pub input: Option<PathBuf>,

    /// The field (JSONL, dotted paths allowed: `prompt.text`) or column (CSV/TSV) holding the text.
    #[arg(long, default_value = "text")]
    pub field: String,

    /// Input format: auto (from the extension, else the first byte).
    #[arg(long, value_enum, ignore_case = true, default_value_t = FormatArg::Auto)]
    pub format: FormatArg,

    /// Folder with the TwitterAAE model_vocab.txt and model_count_table.txt
    /// (default: ../shared/data/twitteraae-model).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,

    /// Write JSONL here (atomically: a temporary file renamed at the end) instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,

    /// Exit 0 even when some lines could not be read (they still get an "error" line).
    #[arg(long)]
    pub allow_errors: bool,
}

pub fn run(args: DialectArgs) -> Result<ExitCode> {
    let (reader, name): (Box<dyn Read>, String) = match &args.input {
        Some(p) if p.as_os_str() != "-" => {
            let f = File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
            (Box::new(f), p.display().to_string())
        }
        _ => (Box::new(std::io::stdin()), "stdin".to_string()),
    };
    let mut buffered = BufReader::with_capacity(1 << 16, reader);
    let format = match Option::<Format>::from(args.format) {
        Some(f) => f,
        None => {
            let head = buffered.fill_buf().context("cannot read input")?;
            Format::detect(args.input.as_deref().filter(|p| p.as_os_str() != "-"), head)
        }
    };
    let rows = InputReader::new(buffered, format, &args.field, &name)?;

    let t_load = Instant::now();
    let dir = resolve_model_dir(args.model.as_deref())?;
    let model = DialectModel::load(&dir)?;
    tracing::info!(
        "loaded the TwitterAAE model ({} words) from {} in {:.2}s",
        model.vocab_len(),
        dir.display(),
        t_load.elapsed().as_secs_f64()
    );

    let mut sink = Sink::open(args.output.as_deref())?;
    let t0 = Instant::now();
    let tally: Tally = dialect_rows(rows, &model, &mut sink, &mut |_| {})?;
    sink.finish()?;
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "detox: dialect of {} texts in {:.2}s ({:.0} texts/s); {} declined (too few known words); {} errors",
        tally.inferred + tally.declined,
        secs,
        (tally.inferred + tally.declined) as f64 / secs.max(1e-9),
        tally.declined,
        tally.errors
    );
    Ok(crate::score_cmd::exit_for_errors(
        tally.errors,
        args.allow_errors,
        "read",
    ))
}
