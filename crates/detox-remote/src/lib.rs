//! Remote scorers behind [`detox_core::Scorer`]: Google's Perspective API, OpenAI's moderation
//! endpoint and another `detox serve`, so every command that takes `--scorer` (score, eval,
//! audit, serve as a proxy) can use them unchanged.
//!
//! | spec | service | key |
//! |---|---|---|
//! | `perspective[:URL]` | `comments:analyze`, one text per request | `PERSPECTIVE_API_KEY` |
//! | `openai-moderation[:URL]` | `/v1/moderations`, up to 32 texts per request | `OPENAI_API_KEY` |
//! | `detox:URL` | another detox server's `/v1/score`, up to 32 texts per request | `DETOX_API_KEY` |
//!
//! Requests are spaced by a client-side rate limit (`qps`; Perspective's default quota is one
//! query per second), run `concurrency` at a time, and retried with backoff on 429, 5xx, time-outs
//! and dropped connections, never sooner than `Retry-After` ([`detox_http::Retry`]). A text the
//! service still fails on is that text's error ([`Scorer::score_each`]), reported on its own
//! output line, never scored 0 or dropped; a refused key or a wrong address (401, 403, 404)
//! stops the run at once. Answers are kept in a SQLite [`cache`], so a rerun asks only for
//! what is missing. Texts that are empty or only whitespace are not sent (Perspective refuses
//! empty comments) and get no score (`null`), as RealToxicityPrompts gives empty generations.

#![warn(missing_docs)]

pub mod cache;
pub mod protocol;

use cache::{Cache, CacheError};
use detox_core::{Activation, ScoreError, Scorer, ScorerInfo, TextScore};
use detox_http::{HttpError, RateLimit, Retry};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A remote service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Perspective's `comments:analyze`.
    Perspective,
    /// OpenAI's `/v1/moderations`.
    OpenAiModeration,
    /// Another `detox serve`'s `/v1/score`.
    Detox,
}

impl Backend {
    /// The spec's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Perspective => "perspective",
            Self::OpenAiModeration => "openai-moderation",
            Self::Detox => "detox",
        }
    }

    /// The environment variable the key is read from.
    pub fn key_env(self) -> &'static str {
        match self {
            Self::Perspective => "PERSPECTIVE_API_KEY",
            Self::OpenAiModeration => "OPENAI_API_KEY",
            Self::Detox => "DETOX_API_KEY",
        }
    }

    /// Requests per second when `qps` is not set: Perspective's default quota (1); no limit
    /// for the others (their 429s are honoured).
    pub fn default_qps(self) -> f64 {
        match self {
            Self::Perspective => 1.0,
            Self::OpenAiModeration | Self::Detox => 0.0,
        }
    }

    /// Texts per request.
    pub fn group_size(self) -> usize {
        match self {
            Self::Perspective => 1,
            Self::OpenAiModeration | Self::Detox => protocol::MAX_GROUP,
        }
    }
}

/// A parsed remote scorer spec: `perspective[:URL]`, `openai-moderation[:URL]`, `detox:URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    /// The service.
    pub backend: Backend,
    /// The address given after the colon (`None`: the public service).
    pub url: Option<String>,
}

impl fmt::Display for RemoteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.url {
            Some(u) => write!(f, "{}:{u}", self.backend.name()),
            None => f.write_str(self.backend.name()),
        }
    }
}

impl RemoteSpec {
    /// Parses `s`; `None` when it names no remote scorer (a registry name or a path).
    pub fn parse(s: &str) -> Option<Result<Self, RemoteError>> {
        let s = s.trim();
        let (name, url) = match s.split_once(':') {
            Some((n, u)) => (n, Some(u.trim())),
            None => (s, None),
        };
        let backend = match name {
            "perspective" => Backend::Perspective,
            "openai-moderation" => Backend::OpenAiModeration,
            "detox" => Backend::Detox,
            _ => return None,
        };
        Some(match url {
            None if backend == Backend::Detox => Err(RemoteError::Spec(format!(
                "`{s}`: a detox server needs its address, e.g. detox:http://127.0.0.1:8080"
            ))),
            Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                Err(RemoteError::Spec(format!(
                    "`{s}`: the address must start with http:// or https://"
                )))
            }
            url => Ok(Self {
                backend,
                url: url.map(|u| u.trim_end_matches('/').to_string()),
            }),
        })
    }

    /// The address of the scoring route.
    pub fn endpoint(&self) -> String {
        match (self.backend, self.url.as_deref()) {
            (Backend::Perspective, None) => protocol::PERSPECTIVE_URL.into(),
            (Backend::Perspective, Some(u)) if u.ends_with("comments:analyze") => u.into(),
            (Backend::Perspective, Some(u)) => format!("{u}/v1alpha1/comments:analyze"),
            (Backend::OpenAiModeration, None) => protocol::OPENAI_URL.into(),
            (Backend::OpenAiModeration, Some(u)) if u.ends_with("/moderations") => u.into(),
            (Backend::OpenAiModeration, Some(u)) if u.ends_with("/v1") => {
                format!("{u}/moderations")
            }
            (Backend::OpenAiModeration, Some(u)) => format!("{u}/v1/moderations"),
            (Backend::Detox, u) => format!("{}/v1/score", u.unwrap_or_default()),
        }
    }

    /// Whether the spec names the public service (which needs a key).
    fn is_public(&self) -> bool {
        match self.backend {
            Backend::Perspective => self
                .url
                .as_deref()
                .is_none_or(|u| u.contains("googleapis.com")),
            Backend::OpenAiModeration => self
                .url
                .as_deref()
                .is_none_or(|u| u.contains("api.openai.com")),
            Backend::Detox => false,
        }
    }
}

/// Where answers are cached.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CacheChoice {
    /// `$DETOX_HOME/remote-cache.sqlite`.
    #[default]
    Default,
    /// This file.
    File(PathBuf),
    /// No cache (`--no-cache`).
    Off,
}

impl CacheChoice {
    /// The file, if any.
    pub fn path(&self) -> Option<PathBuf> {
        match self {
            Self::Default => Some(detox_hub::cache::default_home().join(cache::DEFAULT_CACHE_FILE)),
            Self::File(p) => Some(p.clone()),
            Self::Off => None,
        }
    }
}

/// How to reach and pace a remote scorer (its `Debug` never shows the key).
#[derive(Clone)]
pub struct RemoteOptions {
    /// The key (default: the backend's environment variable).
    pub api_key: Option<String>,
    /// Requests per second (default: [`Backend::default_qps`]; 0: no limit).
    pub qps: Option<f64>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Retries and backoff.
    pub retry: Retry,
    /// Timeout of one request.
    pub timeout: Duration,
    /// The answer cache.
    pub cache: CacheChoice,
    /// The attributes asked for, in detox's names (default: RealToxicityPrompts' eight for
    /// Perspective, all of a detox server's; OpenAI's are fixed).
    pub attributes: Option<Vec<String>>,
    /// Perspective: the texts' languages (empty: Perspective detects them, as RTP let it).
    pub languages: Vec<String>,
}

impl fmt::Debug for RemoteOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteOptions")
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("qps", &self.qps)
            .field("concurrency", &self.concurrency)
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .field("cache", &self.cache)
            .field("attributes", &self.attributes)
            .field("languages", &self.languages)
            .finish()
    }
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            api_key: None,
            qps: None,
            concurrency: 4,
            retry: Retry::default(),
            timeout: Duration::from_secs(30),
            cache: CacheChoice::Default,
            attributes: None,
            languages: Vec::new(),
        }
    }
}

/// Why a remote scorer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The spec or the options are wrong.
    #[error("{0}")]
    Spec(String),
    /// The server could not be asked what it scores.
    #[error("cannot reach the scorer: {0}")]
    Connect(#[from] HttpError),
    /// The cache could not be opened.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// A scorer that asks a remote service.
pub struct RemoteScorer {
    info: ScorerInfo,
    spec: RemoteSpec,
    endpoint: String,
    /// What the cache keys answers by: the service, its address and (for a detox server) the
    /// scorer it runs.
    scope: String,
    agent: ureq::Agent,
    key: Option<String>,
    limit: RateLimit,
    retry: Retry,
    languages: Vec<String>,
    concurrency: usize,
    cache: Option<Cache>,
    cached: AtomicU64,
}

impl fmt::Debug for RemoteScorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteScorer")
            .field("spec", &self.spec)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// One distinct text's values, or why the service gave none.
type Answer = Result<Vec<f32>, String>;

/// A group's failure: the texts' own (reported per text), or the whole run's.
enum GroupFailure {
    Texts(String),
    Run(String),
}

impl RemoteScorer {
    /// Sets the scorer up: the key, the attributes (a detox server is asked for its own at
    /// `/healthz`), the rate limit and the cache.
    pub fn connect(spec: &RemoteSpec, opts: &RemoteOptions) -> Result<Self, RemoteError> {
        let key = opts
            .api_key
            .clone()
            .or_else(|| std::env::var(spec.backend.key_env()).ok())
            .filter(|k| !k.trim().is_empty());
        if key.is_none() && spec.is_public() {
            return Err(RemoteError::Spec(format!(
                "{} needs an API key: set {} or pass --scorer-api-key",
                spec.backend.name(),
                spec.backend.key_env()
            )));
        }
        let concurrency = opts.concurrency.max(1);
        let agent = ureq::AgentBuilder::new()
            .timeout(opts.timeout)
            .max_idle_connections_per_host(concurrency)
            .build();
        let endpoint = spec.endpoint();
        let wanted = |all: &[String]| -> Result<Vec<String>, RemoteError> {
            match &opts.attributes {
                None => Ok(all.to_vec()),
                Some(list) => list
                    .iter()
                    .map(|a| {
                        if all.contains(a) {
                            Ok(a.clone())
                        } else {
                            Err(RemoteError::Spec(format!(
                                "{spec} has no attribute `{a}` (it has: {})",
                                all.join(", ")
                            )))
                        }
                    })
                    .collect(),
            }
        };
        let names = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (attributes, scope, description) = match spec.backend {
            Backend::Perspective => {
                let attrs = match &opts.attributes {
                    Some(list) if !list.is_empty() => list.clone(),
                    _ => names(&protocol::RTP_ATTRIBUTES),
                };
                (
                    attrs,
                    format!("perspective {endpoint} {}", opts.languages.join(",")),
                    format!("Perspective API at {endpoint}"),
                )
            }
            Backend::OpenAiModeration => (
                wanted(&names(&protocol::OPENAI_ATTRIBUTES))?,
                format!("openai-moderation {endpoint} {}", protocol::OPENAI_MODEL),
                format!(
                    "OpenAI moderation ({}) at {endpoint}, categories mapped to detox attributes",
                    protocol::OPENAI_MODEL
                ),
            ),
            Backend::Detox => {
                let base = spec.url.clone().unwrap_or_default();
                let url = format!("{base}/healthz");
                let health = opts.retry.call_json(&url, 0, || {
                    let r = agent.get(&url);
                    let r = match &key {
                        Some(k) => r.set("Authorization", &format!("Bearer {k}")),
                        None => r,
                    };
                    r.call().map_err(Box::new)
                })?;
                let all: Vec<String> = health["attributes"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                if all.is_empty() {
                    return Err(RemoteError::Spec(format!(
                        "{url} lists no attributes; is it a detox server?"
                    )));
                }
                let server_scorer = health["scorer"].as_str().unwrap_or("?").to_string();
                (
                    wanted(&all)?,
                    format!("detox {endpoint} {server_scorer}"),
                    format!("detox server at {base} running `{server_scorer}`"),
                )
            }
        };
        let cache = opts.cache.path().map(|p| Cache::open(&p)).transpose()?;
        let mut info = ScorerInfo::new(spec.to_string(), attributes, Activation::Sigmoid);
        info.description = description;
        Ok(Self {
            info,
            spec: spec.clone(),
            endpoint,
            scope,
            agent,
            key,
            limit: RateLimit::per_second(opts.qps.unwrap_or(spec.backend.default_qps())),
            retry: opts.retry,
            languages: opts.languages.clone(),
            concurrency,
            cache,
            cached: AtomicU64::new(0),
        })
    }

    /// Texts answered from the cache so far.
    pub fn cached(&self) -> u64 {
        self.cached.load(Ordering::Relaxed)
    }

    /// Sends one body with the rate limit and the retry policy.
    fn send(&self, body: &Value, key: u64) -> Result<Value, HttpError> {
        let text = body.to_string();
        let url = match (&self.key, self.spec.backend) {
            (Some(k), Backend::Perspective) => format!("{}?key={k}", self.endpoint),
            _ => self.endpoint.clone(),
        };
        self.retry
            .call_json(&self.endpoint, key, || {
                self.limit.wait();
                let r = self
                    .agent
                    .post(&url)
                    .set("Content-Type", "application/json");
                let r = match (&self.key, self.spec.backend) {
                    (Some(k), Backend::OpenAiModeration | Backend::Detox) => {
                        r.set("Authorization", &format!("Bearer {k}"))
                    }
                    _ => r,
                };
                r.send_string(&text).map_err(Box::new)
            })
            // The key never appears in a message.
            .map_err(|mut e| {
                if let Some(k) = &self.key {
                    e.message = e.message.replace(k.as_str(), "***");
                }
                e
            })
    }

    /// Scores one request's texts.
    fn score_group(&self, texts: &[&str], key: u64) -> Result<Vec<Vec<f32>>, GroupFailure> {
        let attrs = &self.info.attributes;
        let body = match self.spec.backend {
            Backend::Perspective => protocol::perspective_body(texts[0], attrs, &self.languages),
            Backend::OpenAiModeration => protocol::openai_body(texts),
            Backend::Detox => protocol::detox_body(texts, attrs),
        };
        let answer = self.send(&body, key).map_err(|e| match e.status {
            Some(401 | 403) => GroupFailure::Run(format!(
                "{} refused the request ({}); check the key ({} or --scorer-api-key)",
                self.endpoint,
                e.message,
                self.spec.backend.key_env()
            )),
            Some(404 | 405) => GroupFailure::Run(format!(
                "{} is not a {} endpoint ({})",
                self.endpoint,
                self.spec.backend.name(),
                e.message
            )),
            _ => GroupFailure::Texts(e.message),
        })?;
        match self.spec.backend {
            Backend::Perspective => protocol::perspective_scores(&answer, attrs).map(|v| vec![v]),
            Backend::OpenAiModeration => protocol::openai_scores(&answer, texts.len()),
            Backend::Detox => protocol::detox_scores(&answer, attrs, texts.len()),
        }
        .map_err(GroupFailure::Texts)
    }

    /// Answers for distinct non-empty texts: the cache, then the service for the rest.
    fn answers(&self, texts: &[&str]) -> Result<Vec<Answer>, ScoreError> {
        let attrs = &self.info.attributes;
        let keys: Vec<String> = texts
            .iter()
            .map(|t| cache::key(&self.scope, attrs, t))
            .collect();
        let mut out: Vec<Option<Answer>> = match &self.cache {
            Some(c) => match c.get_many(&keys, attrs.len()) {
                Ok(v) => v.into_iter().map(|o| o.map(Ok)).collect(),
                Err(e) => {
                    tracing::warn!("{e}; asking the service for every text");
                    vec![None; texts.len()]
                }
            },
            None => vec![None; texts.len()],
        };
        let hits = out.iter().filter(|o| o.is_some()).count();
        self.cached.fetch_add(hits as u64, Ordering::Relaxed);
        let todo: Vec<usize> = (0..texts.len()).filter(|&i| out[i].is_none()).collect();
        let groups: Vec<&[usize]> = todo.chunks(self.spec.backend.group_size()).collect();
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let fatal: Mutex<Option<String>> = Mutex::new(None);
        let done: Mutex<Vec<(usize, Answer)>> = Mutex::new(Vec::new());
        let cache_failed = AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..self.concurrency.min(groups.len()) {
                s.spawn(|| loop {
                    let g = next.fetch_add(1, Ordering::Relaxed);
                    if g >= groups.len() || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let idx = groups[g];
                    let group: Vec<&str> = idx.iter().map(|&i| texts[i]).collect();
                    let key = keys[idx[0]]
                        .bytes()
                        .take(8)
                        .fold(0u64, |h, b| h << 8 | b as u64);
                    let result = self.score_group(&group, key);
                    // The answers are committed to the cache first, outside the lock the
                    // other workers hand their results in under.
                    if let (Ok(values), Some(c)) = (&result, &self.cache) {
                        let entries: Vec<(String, Vec<f32>)> = idx
                            .iter()
                            .zip(values)
                            .map(|(&i, v)| (keys[i].clone(), v.clone()))
                            .collect();
                        if let Err(e) = c.put_many(&self.scope, attrs, &entries) {
                            if !cache_failed.swap(true, Ordering::Relaxed) {
                                tracing::warn!("{e}; answers are not being cached");
                            }
                        }
                    }
                    let mut d = done.lock().unwrap_or_else(|p| p.into_inner());
                    match result {
                        Ok(values) => {
                            d.extend(idx.iter().copied().zip(values.into_iter().map(Ok)));
                        }
                        Err(GroupFailure::Texts(m)) => {
                            d.extend(idx.iter().map(|&i| (i, Err(m.clone()))));
                        }
                        Err(GroupFailure::Run(m)) => {
                            stop.store(true, Ordering::Relaxed);
                            fatal
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(m);
                        }
                    }
                });
            }
        });
        if let Some(m) = fatal.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(ScoreError::Other(m));
        }
        for (i, r) in done.into_inner().unwrap_or_else(|p| p.into_inner()) {
            out[i] = Some(r);
        }
        tracing::debug!(
            "{}: {} texts, {hits} from the cache, {} asked",
            self.info.id,
            texts.len(),
            todo.len()
        );
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err("not scored".into())))
            .collect())
    }
}

impl Scorer for RemoteScorer {
    fn info(&self) -> &ScorerInfo {
        &self.info
    }

    fn score(&self, texts: &[&str]) -> Result<Vec<TextScore>, ScoreError> {
        detox_core::all_or_first_error(self.score_each(texts))
    }

    fn score_each(&self, texts: &[&str]) -> Result<Vec<Result<TextScore, ScoreError>>, ScoreError> {
        // Each distinct non-empty text is asked once.
        let mut first: HashMap<&str, usize> = HashMap::new();
        let mut distinct: Vec<&str> = Vec::new();
        let slot: Vec<Option<usize>> = texts
            .iter()
            .map(|t| {
                (!t.trim().is_empty()).then(|| {
                    *first.entry(t).or_insert_with(|| {
                        distinct.push(t);
                        distinct.len() - 1
                    })
                })
            })
            .collect();
        let answers = self.answers(&distinct)?;
        let k = self.info.attributes.len();
        Ok(slot
            .into_iter()
            .map(|s| match s {
                None => Ok(TextScore {
                    values: vec![f32::NAN; k],
                    tokens: 0,
                    truncated: false,
                }),
                Some(i) => match &answers[i] {
                    Ok(values) => Ok(TextScore {
                        values: values.clone(),
                        tokens: 0,
                        truncated: false,
                    }),
                    Err(m) => Err(ScoreError::Other(format!("{}: {m}", self.info.id))),
                },
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_name_their_endpoints() {
        let p = |s: &str| RemoteSpec::parse(s).map(|r| r.map(|x| x.endpoint()));
        assert!(p("default").is_none());
        assert!(p("./model").is_none());
        assert_eq!(
            p("perspective").unwrap().unwrap(),
            protocol::PERSPECTIVE_URL
        );
        assert_eq!(
            p("perspective:http://127.0.0.1:9/").unwrap().unwrap(),
            "http://127.0.0.1:9/v1alpha1/comments:analyze"
        );
        assert_eq!(
            p("openai-moderation:http://h/v1").unwrap().unwrap(),
            "http://h/v1/moderations"
        );
        assert_eq!(
            p("openai-moderation:http://h").unwrap().unwrap(),
            "http://h/v1/moderations"
        );
        assert_eq!(
            p("detox:http://h:8").unwrap().unwrap(),
            "http://h:8/v1/score"
        );
        assert!(p("detox")
            .unwrap()
            .unwrap_err()
            .to_string()
            .contains("address"));
        assert!(p("perspective:ftp://x")
            .unwrap()
            .unwrap_err()
            .to_string()
            .contains("http://"));
        let s = RemoteSpec::parse("perspective:http://h").unwrap().unwrap();
        assert_eq!(s.to_string(), "perspective:http://h");
    }

    #[test]
    fn options_never_show_the_key() {
        let o = RemoteOptions {
            api_key: Some("sk-very-secret".into()),
            ..Default::default()
        };
        let shown = format!("{o:?}");
        assert!(
            !shown.contains("sk-very-secret") && shown.contains("***"),
            "{shown}"
        );
    }

    #[test]
    fn the_public_services_need_a_key() {
        let spec = RemoteSpec::parse("perspective").unwrap().unwrap();
        // Only when the variable is unset here (a developer may have one).
        if std::env::var("PERSPECTIVE_API_KEY").is_err() {
            let e = RemoteScorer::connect(&spec, &RemoteOptions::default()).unwrap_err();
            assert!(e.to_string().contains("PERSPECTIVE_API_KEY"), "{e}");
        }
    }
}
