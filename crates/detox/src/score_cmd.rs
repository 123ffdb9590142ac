//! `detox score`: texts in, one JSONL line per input record out.

use crate::choices::{ActivationArg, FormatArg};
use anyhow::{Context, Result};
use clap::Args;
use detox_io::files::AtomicFile;
use detox_io::stream::{score_rows, Chunking, Tally};
use detox_io::{Format, InputReader};
use detox_spec::{LoadOptions, DEFAULT_SCORER};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Input file (JSONL, CSV, TSV or text lines); `-` or nothing reads stdin.
    pub input: Option<PathBuf>,

    /// The field (JSONL, dotted paths allowed: `prompt.text`) or column (CSV/TSV) holding the text.
    #[arg(long, default_value = "text")]
    pub field: String,

    /// Input format: auto (from the extension, else the first byte).
    #[arg(long, value_enum, ignore_case = true, default_value_t = FormatArg::Auto)]
    pub format: FormatArg,

    /// Write JSONL here (atomically: a temporary file renamed at the end) instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,

    /// The scorer: a registry name (`detox models list`), a Hugging Face classifier folder,
    /// a Detoxify .ckpt, or a remote service: `perspective[:URL]`, `openai-moderation[:URL]`,
    /// `detox:URL` (another detox server).
    #[arg(long, default_value = DEFAULT_SCORER)]
    pub scorer: String,

    /// Folder with the base config.json and tokenizer of a Detoxify checkpoint.
    #[arg(long)]
    pub base: Option<PathBuf>,

    /// Texts per forward pass (sorted by length to cut padding).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,

    /// Compute threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Cut texts to this many tokens (default and maximum: the model's limit).
    #[arg(long)]
    pub max_length: Option<usize>,

    /// Override how logits become scores: sigmoid (multi-label) or softmax.
    #[arg(long, value_enum)]
    pub activation: Option<ActivationArg>,

    /// Exit 0 even when some lines could not be scored (they still get an "error" line).
    #[arg(long)]
    pub allow_errors: bool,

    #[command(flatten)]
    pub remote: crate::remote_args::RemoteArgs,
}

/// Where JSONL output goes: stdout, or a file written atomically.
pub(crate) enum Sink {
    Stdout(BufWriter<std::io::Stdout>),
    File(AtomicFile),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Stdout(w) => w.write(buf),
            Sink::File(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(w) => w.flush(),
            Sink::File(w) => w.flush(),
        }
    }
}

impl Sink {
    pub(crate) fn open(output: Option<&Path>) -> Result<Self> {
        Ok(match output {
            None => Sink::Stdout(BufWriter::new(std::io::stdout())),
            Some(dest) => Sink::File(AtomicFile::create(dest)?),
        })
    }

    pub(crate) fn finish(self) -> Result<()> {
        match self {
            Sink::Stdout(mut w) => {
                w.flush()?;
                Ok(())
            }
            Sink::File(w) => Ok(w.commit()?),
        }
    }
}

pub fn run(args: ScoreArgs, offline: bool) -> Result<ExitCode> {
    let threads = detox_spec::configure_threads(args.threads);
    // Batches run side by side, one per core, each with single-threaded kernels: on the
    // short texts toxicity scoring sees, that beats splitting each matrix product.
    let mut opts = LoadOptions::parallel(args.batch_size.max(1), threads, offline)
        .with_activation(args.activation.map(Into::into))
        .with_remote(args.remote.options());
    opts.classifier.max_length = args.max_length;
    opts.base = args.base.clone();

    // Open the input before loading the model, so a typo fails fast.
    let stdin_name = "stdin";
    let (reader, name, total_bytes): (Box<dyn Read>, String, Option<u64>) = match &args.input {
        Some(p) if p.as_os_str() != "-" => {
            let f = File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
            let len = f.metadata().ok().map(|m| m.len());
            (Box::new(f), p.display().to_string(), len)
        }
        _ => (Box::new(std::io::stdin()), stdin_name.to_string(), None),
    };
    let mut buffered = BufReader::with_capacity(1 << 16, reader);
    let format = match Option::<Format>::from(args.format) {
        Some(f) => f,
        None => {
            let head = buffered.fill_buf().context("cannot read input")?;
            Format::detect(args.input.as_deref().filter(|p| p.as_os_str() != "-"), head)
        }
    };
    let counting = CountingReader {
        inner: buffered,
        count: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)),
    };
    let bytes_read = counting.count.clone();
    let rows = InputReader::new(counting, format, &args.field, &name)?;

    let t_load = Instant::now();
    let spec: detox_spec::ScorerSpec = args.scorer.parse()?;
    let scorer = spec.load(&opts)?;
    tracing::info!(
        "loaded {} in {:.2}s: {}",
        scorer.info().id,
        t_load.elapsed().as_secs_f64(),
        scorer.info().description
    );

    let mut sink = Sink::open(args.output.as_deref())?;
    let bar = match total_bytes {
        Some(n) => crate::progress::bar(
            Some(n),
            "{spinner} scoring [{bar:30}] {percent}% {msg} eta {eta}",
        ),
        None => {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{spinner} scoring {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b
        }
    };
    let t0 = Instant::now();
    // A remote service answers a text a second or so: small first chunks, so progress shows
    // (chunks still grow while they take under 4 s).
    let chunking = if spec.is_remote() {
        Chunking {
            first: 32,
            max: 1024,
        }
    } else {
        Chunking::for_batches(args.batch_size, threads)
    };
    let tally = score_rows(
        rows,
        scorer.as_ref(),
        &mut sink,
        chunking,
        &mut |tally: &Tally| {
            let secs = t0.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "{} texts, {:.0}/s",
                tally.scored + tally.errors,
                tally.scored as f64 / secs
            ));
            bar.set_position(bytes_read.load(std::sync::atomic::Ordering::Relaxed));
        },
    )?;
    bar.finish_and_clear();
    sink.finish()?;
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "detox: scored {} texts in {:.2}s ({:.1} texts/s, {} tokens); {} truncated to {} tokens; {} errors",
        tally.scored,
        secs,
        tally.scored as f64 / secs.max(1e-9),
        tally.tokens,
        tally.truncated,
        scorer
            .info()
            .max_tokens
            .map(|m| m.to_string())
            .unwrap_or_else(|| "-".into()),
        tally.errors
    );
    Ok(exit_for_errors(tally.errors, args.allow_errors, "scored"))
}

/// Exit status 1, with a message, when input lines could not be `what` (they have an
/// `"error"` line in the output) and `--allow-errors` was not given; else success.
pub(crate) fn exit_for_errors(errors: usize, allow_errors: bool, what: &str) -> ExitCode {
    if errors > 0 && !allow_errors {
        eprintln!(
            "detox: {errors} lines could not be {what} (see their \"error\" field); pass --allow-errors to exit 0"
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// Counts bytes read, for the progress bar.
struct CountingReader<R> {
    inner: R,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}
