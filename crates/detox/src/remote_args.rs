//! The flags of remote scorers (`--scorer perspective`, `openai-moderation`, `detox:URL`),
//! shared by every command that takes `--scorer`.

use clap::Args;
use detox_remote::{CacheChoice, RemoteOptions};
use std::path::PathBuf;
use std::time::Duration;

/// How remote scorers are reached, paced and cached (`Debug` hides the key).
#[derive(Clone, Args)]
#[command(
    next_help_heading = "Remote scorers (--scorer perspective[:URL], openai-moderation[:URL], detox:URL)"
)]
pub struct RemoteArgs {
    /// The API key (default: PERSPECTIVE_API_KEY, OPENAI_API_KEY or
    /// DETOX_API_KEY, by service).
    #[arg(long, value_name = "KEY")]
    pub scorer_api_key: Option<String>,

    /// Requests per second, across threads (default: 1 for Perspective, its
    /// default quota; no limit for the others; 0: no limit).
    #[arg(long)]
    pub qps: Option<f64>,

    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub scorer_concurrency: usize,

    /// Retries of a request that failed with 429, 5xx, a time-out or a dropped
    /// connection (with backoff, honouring Retry-After); a text still failing gets an error line.
    #[arg(long, default_value_t = 6)]
    pub scorer_retries: u32,

    /// Timeout of one request, in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub scorer_timeout: f64,

    /// The answers cache, a SQLite file (default: $DETOX_HOME/remote-cache.sqlite).
    #[arg(long, value_name = "FILE", conflicts_with = "no_cache")]
    pub cache: Option<PathBuf>,

    /// Ask the service for every text, and keep no answer.
    #[arg(long)]
    pub no_cache: bool,

    /// The attributes to ask for, in detox's names (default: RealToxicityPrompts'
    /// eight for Perspective, all of a detox server's).
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub scorer_attributes: Option<Vec<String>>,

    /// Perspective: the texts' languages, e.g. `en` (default: Perspective detects them, as
    /// RealToxicityPrompts let it; short or garbled generations may then be refused).
    #[arg(long, value_delimiter = ',', value_name = "LANG,...")]
    pub scorer_languages: Vec<String>,
}

impl std::fmt::Debug for RemoteArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.options().fmt(f)
    }
}

impl RemoteArgs {
    /// The library's options.
    pub fn options(&self) -> RemoteOptions {
        RemoteOptions {
            api_key: self.scorer_api_key.clone(),
            qps: self.qps,
            concurrency: self.scorer_concurrency.max(1),
            retry: detox_http::Retry {
                retries: self.scorer_retries,
                ..Default::default()
            },
            timeout: Duration::from_secs_f64(self.scorer_timeout.clamp(0.001, 86_400.0)),
            cache: match (&self.cache, self.no_cache) {
                (_, true) => CacheChoice::Off,
                (Some(p), false) => CacheChoice::File(p.clone()),
                (None, false) => CacheChoice::Default,
            },
            attributes: self.scorer_attributes.clone(),
            languages: self.scorer_languages.clone(),
        }
    }
}
