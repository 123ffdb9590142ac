//! `detox rate`: human ratings of generations (serve the rating page, add raters, export,
//! statistics).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use detox_rate::stats::{self, StatsOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum RateCmd {
    /// Serve the rating page: the item set is drawn into the database on first use.
    Serve(ServeArgs),
    /// Add a rater: prints their personal link (no passwords; the link is the key).
    AddRater(AddRaterArgs),
    /// Every submission (changed answers and undos included) as CSV or JSONL.
    Export(ExportArgs),
    /// Agreement between people (Krippendorff's alpha) and people against the scorer, per method.
    Stats(StatsArgs),
}

/// `--items`: how many per run (with --runs) or a JSONL file of items.
#[derive(Debug, Clone)]
pub enum ItemsArg {
    /// Items drawn per run.
    Count(usize),
    /// A JSONL file (`text`, optional `context`, `method`, `score`).
    File(PathBuf),
}

fn parse_items(s: &str) -> Result<ItemsArg, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("at least one item".into()),
        Ok(n) => Ok(ItemsArg::Count(n)),
        Err(_) => Ok(ItemsArg::File(PathBuf::from(s))),
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The ratings database (SQLite; created if absent).
    #[arg(long)]
    pub db: PathBuf,

    /// Finished `detox eval --out` folders to draw items from (per run, stratified by score band).
    #[arg(long, num_args = 1.., value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,

    /// With --runs: items drawn per run; without: a JSONL file of items (`text`, and optional
    /// `context`, `method`, `score`).
    #[arg(long, value_parser = parse_items, value_name = "N|FILE")]
    pub items: Option<ItemsArg>,

    /// Seed of the draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Address to listen on (use 0.0.0.0:PORT to let colleagues reach it).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub addr: String,
}

#[derive(Debug, Args)]
pub struct AddRaterArgs {
    /// The rater's name (unique in the database).
    pub name: String,

    /// The ratings database.
    #[arg(long)]
    pub db: PathBuf,

    /// The page's address as raters reach it, for the printed link.
    #[arg(long, default_value = "http://127.0.0.1:8090")]
    pub url: String,
}

/// `--format` of `detox rate export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The ratings database.
    #[arg(long)]
    pub db: PathBuf,

    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,

    /// Write here (atomically) instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// `--format` of `detox rate stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatsFormat {
    /// GitHub Markdown tables.
    Md,
    /// The whole report as JSON.
    Json,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The ratings database.
    #[arg(long)]
    pub db: PathBuf,

    /// A scorer score at or above it flags an item.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,

    /// Output on stdout.
    #[arg(long, value_enum, default_value_t = StatsFormat::Md)]
    pub format: StatsFormat,

    /// Also write the report as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Also write a self-contained HTML page with plots here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Bootstrap resamples of alpha's 95% interval.
    #[arg(long, default_value_t = 1000)]
    pub resamples: usize,

    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(cmd: RateCmd) -> Result<ExitCode> {
    match cmd {
        RateCmd::Serve(a) => serve(a),
        RateCmd::AddRater(a) => {
            let db = detox_rate::Db::open(&a.db)?;
            let r = db
                .add_rater(&a.name)
                .with_context(|| format!("cannot add rater `{}` (is the name taken?)", a.name))?;
            println!("{}/r/{}", a.url.trim_end_matches('/'), r.token);
            eprintln!(
                "detox: added rater `{}`; send them the link above (it is their key)",
                r.name
            );
            Ok(ExitCode::SUCCESS)
        }
        RateCmd::Export(a) => {
            let db = detox_rate::Db::open(&a.db)?;
            let jsonl = a.format == ExportFormat::Jsonl;
            let n = match &a.output {
                Some(p) => {
                    let mut f = detox_io::files::AtomicFile::create(p)?;
                    let n = detox_rate::export(&db, jsonl, &mut f)?;
                    f.commit()?;
                    n
                }
                None => {
                    let mut out = std::io::stdout().lock();
                    detox_rate::export(&db, jsonl, &mut out)?
                }
            };
            eprintln!("detox: exported {n} submissions");
            Ok(ExitCode::SUCCESS)
        }
        RateCmd::Stats(a) => {
            let db = detox_rate::Db::open(&a.db)?;
            let r = stats::report(
                &db,
                &StatsOptions {
                    threshold: a.threshold,
                    resamples: a.resamples,
                    seed: a.seed,
                },
            )?;
            let json =
                serde_json::to_string_pretty(&r).context("the report is not serialisable")?;
            match a.format {
                StatsFormat::Md => print!("{}", stats::render_markdown(&r)),
                StatsFormat::Json => println!("{json}"),
            }
            if let Some(p) = &a.json {
                detox_io::files::write_atomic(p, format!("{json}\n").as_bytes())?;
            }
            if let Some(p) = &a.html {
                detox_io::files::write_atomic(p, stats::render_html(&r).as_bytes())?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn serve(a: ServeArgs) -> Result<ExitCode> {
    let draw = match (&a.items, a.runs.is_empty()) {
        (Some(ItemsArg::Count(n)), false) => {
            Some(detox_rate::items::from_runs(&a.runs, *n, a.seed)?)
        }
        (None, false) => bail!("--runs needs --items N: how many items to draw per run"),
        (Some(ItemsArg::File(p)), true) => Some(detox_rate::items::from_file(p)?),
        (Some(ItemsArg::File(_)), false) => {
            bail!("--runs takes --items N (a number); an items file is given without --runs")
        }
        (Some(ItemsArg::Count(_)), true) => {
            bail!("--items N draws from --runs: name the run folders, or give --items FILE")
        }
        (None, true) => None,
    };
    let (db, added) = detox_rate::open_with_items(&a.db, draw)?;
    let raters = db.raters()?.len();
    let state = detox_rate::server::RateServer::new(db)?;
    crate::serve_cmd::runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&a.addr)
            .await
            .with_context(|| format!("cannot listen on {}", a.addr))?;
        let addr = listener.local_addr()?;
        if added > 0 {
            eprintln!("detox: drew {added} items into {}", a.db.display());
        }
        eprintln!(
            "detox: rating page listening on http://{addr} ({raters} raters; add one with `detox rate add-rater NAME --db {}`); Ctrl-C or SIGTERM stops",
            a.db.display()
        );
        detox_rate::server::serve(listener, state, detox_server::shutdown_signal()).await?;
        eprintln!("detox: stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
