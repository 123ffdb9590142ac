//! `detox serve`.

use anyhow::{Context, Result};
use clap::Args;
use detox_server::{AppState, ServerConfig};
use detox_spec::{LoadOptions, DEFAULT_SCORER};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,

    /// The scorer (as in `detox score`).
    #[arg(long, default_value = DEFAULT_SCORER)]
    pub scorer: String,

    /// Accept only requests with this key (`?key=` or `Authorization: Bearer`); repeatable.
    #[arg(long = "api-key", env = "DETOX_API_KEY")]
    pub api_keys: Vec<String>,

    /// Requests that may wait for the model before new ones get 429.
    #[arg(long, default_value_t = 1024)]
    pub queue: usize,

    /// Estimated tokens scored in one model call.
    #[arg(long, default_value_t = 8192)]
    pub max_batch_tokens: usize,

    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body_bytes: usize,

    /// Seconds a request may wait for its scores (then 504).
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,

    /// Texts per forward pass inside a batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,

    /// Compute threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,

    #[command(flatten)]
    pub remote: crate::remote_args::RemoteArgs,
}

pub fn run(args: ServeArgs, offline: bool) -> Result<ExitCode> {
    let threads = detox_spec::configure_threads(args.threads);
    let scorer = detox_spec::load_scorer(
        &args.scorer,
        &LoadOptions::parallel(args.batch_size, threads, offline)
            .with_remote(args.remote.options()),
    )?;
    let scorer: Arc<dyn detox_core::Scorer> = Arc::from(scorer);
    let config = ServerConfig {
        queue: args.queue,
        max_batch_tokens: args.max_batch_tokens,
        max_body: args.max_body_bytes,
        timeout: Duration::from_secs(args.timeout_secs.max(1)),
        api_keys: args.api_keys.clone(),
        ..Default::default()
    };
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let addr = listener.local_addr()?;
        let id = scorer.info().id.clone();
        let state = AppState::new(scorer, config);
        eprintln!(
            "detox: listening on http://{addr} (scorer `{id}`{}); Ctrl-C or SIGTERM stops after the requests in flight",
            if args.api_keys.is_empty() { ", no API key required" } else { ", API key required" }
        );
        detox_server::serve(listener, state, detox_server::shutdown_signal()).await?;
        eprintln!("detox: stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The async runtime the servers (`serve`, `rate serve`) run on: two workers, since the
/// scoring and the database work happen off them.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
