//! Any OpenAI-compatible completions server (vLLM, llama.cpp's server, TGI, Ollama) behind
//! [`LanguageModel`]: `POST {base}/completions` with `n` samples, a limit on requests in flight,
//! retries with exponential backoff on 429, 5xx and dropped connections (honouring
//! `Retry-After`), and a timeout per request.
//!
//! A server that returns fewer than `n` choices (some ignore `n`) is asked again for the rest.
//! Each request carries a seed derived from (seed, prompt, request number): servers that honour
//! `seed` give the same text for the same prompt on a rerun.

use crate::model::{Completion, GenerationRequest, LanguageModel, LmError, PromptSession};
use crate::sampling::SampleRng;
use serde_json::{json, Value};
use std::time::Duration;

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Base address, up to and including `/v1` (e.g. `http://127.0.0.1:8000/v1`).
    pub base_url: String,
    /// The `model` field; `None`: the first model the server lists at `GET {base}/models`.
    pub model: Option<String>,
    /// Bearer token (`OPENAI_API_KEY`).
    pub api_key: Option<String>,
    /// Prompts in flight at once.
    pub concurrency: usize,
    /// Retries of a failed request (429, 5xx, connection errors) before giving up.
    pub retries: u32,
    /// Timeout of one request.
    pub timeout: Duration,
    /// First backoff; doubled at each retry (with jitter), at most 30 s.
    pub backoff: Duration,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            model: None,
            api_key: None,
            concurrency: 8,
            retries: 6,
            timeout: Duration::from_secs(120),
            backoff: Duration::from_millis(500),
        }
    }
}

/// A client of an OpenAI-compatible server.
pub struct OpenAiLm {
    config: OpenAiConfig,
    model: String,
    agent: ureq::Agent,
}

/// Whether an address names a server rather than a file.
pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

impl OpenAiLm {
    /// Connects: without a model name, asks `GET {base}/models` and picks the first one.
    pub fn connect(mut config: OpenAiConfig) -> Result<Self, LmError> {
        config.base_url = config.base_url.trim_end_matches('/').to_string();
        config.concurrency = config.concurrency.max(1);
        let agent = ureq::AgentBuilder::new()
            .timeout(config.timeout)
            .max_idle_connections_per_host(config.concurrency)
            .build();
        let mut me = Self {
            model: config.model.clone().unwrap_or_default(),
            config,
            agent,
        };
        // With a model named, nothing needs the list (some servers have none), so a dead
        // server fails on the first completion instead of after a whole retry schedule here.
        if me.config.model.is_none() {
            let url = format!("{}/models", me.config.base_url);
            let listed = me.call(|| me.request("GET", &url).call().map_err(Box::new), &url, 0)?;
            me.model = listed["data"][0]["id"]
                .as_str()
                .ok_or_else(|| LmError::Server {
                    url: url.clone(),
                    message: "lists no model; name one with --model-name".into(),
                })?
                .to_string();
        }
        Ok(me)
    }

    /// The model name sent with each request.
    pub fn model_name(&self) -> &str {
        &self.model
    }

    fn request(&self, method: &str, url: &str) -> ureq::Request {
        let r = self.agent.request(method, url);
        match &self.config.api_key {
            Some(k) => r.set("Authorization", &format!("Bearer {k}")),
            None => r,
        }
    }

    /// `n` continuations of `prompt` for the streams starting at `first`, in as many requests
    /// as the server needs (some return fewer choices than `n`).
    fn request_samples(
        &self,
        prompt: &str,
        prompt_index: u64,
        req: &GenerationRequest,
        n: usize,
        first: u64,
    ) -> Result<Vec<Completion>, LmError> {
        let url = format!("{}/completions", self.config.base_url);
        let mut out: Vec<Completion> = Vec::with_capacity(n);
        let mut round = 0u64;
        while out.len() < n {
            let want = n - out.len();
            let seed = SampleRng::new(
                req.params.seed,
                prompt_index,
                1_000_000 + (first << 20) + round,
            )
            .next_u64()
                >> 33;
            let mut body = json!({
                "model": self.model,
                "prompt": prompt,
                "n": want,
                "max_tokens": req.max_tokens,
                "temperature": req.params.temperature,
                "top_p": req.params.top_p,
                "seed": seed,
            });
            if req.params.top_k > 0 {
                body["top_k"] = json!(req.params.top_k);
            }
            let text = body.to_string();
            let v = self.call(
                || {
                    self.request("POST", &url)
                        .set("Content-Type", "application/json")
                        .send_string(&text)
                        .map_err(Box::new)
                },
                &url,
                prompt_index,
            )?;
            let mut choices: Vec<(u64, String)> = v["choices"]
                .as_array()
                .ok_or_else(|| LmError::Server {
                    url: url.clone(),
                    message: format!(
                        "answer has no `choices`: {}",
                        v.to_string().chars().take(300).collect::<String>()
                    ),
                })?
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    (
                        c["index"].as_u64().unwrap_or(i as u64),
                        c["text"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            if choices.is_empty() {
                return Err(LmError::Server {
                    url,
                    message: "answer has no choices".into(),
                });
            }
            choices.sort_by_key(|c| c.0);
            out.extend(choices.into_iter().take(want).map(|(_, t)| Completion {
                text: t,
                perplexity: None,
            }));
            round += 1;
        }
        Ok(out)
    }

    /// Runs a request with the retry policy ([`detox_http::Retry`]) and parses the JSON answer.
    fn call(
        &self,
        send: impl Fn() -> Result<ureq::Response, Box<ureq::Error>>,
        url: &str,
        key: u64,
    ) -> Result<Value, LmError> {
        detox_http::Retry {
            retries: self.config.retries,
            backoff: self.config.backoff,
            ..Default::default()
        }
        .call_json(url, key, send)
        .map_err(|e| LmError::Server {
            url: e.url,
            message: e.message,
        })
    }
}

/// A prompt on a server: nothing to prefill; each batch of samples is one or more requests.
struct ServerSession<'a> {
    lm: &'a OpenAiLm,
    prompt: String,
    prompt_index: u64,
    req: GenerationRequest,
}

impl PromptSession for ServerSession<'_> {
    /// A server samples `n` continuations from one seed, not one stream per row: the first
    /// samples (streams below 2^32) are asked for together, and so are the spares
    /// ([`crate::spare_stream`]), each request seeded by (seed, prompt, the group's first
    /// stream, request number), so a server that honours `seed` gives the same texts on a rerun.
    fn sample(&mut self, streams: &[u64]) -> Result<Vec<Completion>, LmError> {
        let mut out: Vec<Option<Completion>> = vec![None; streams.len()];
        for spare in [false, true] {
            let rows: Vec<usize> = (0..streams.len())
                .filter(|&i| (streams[i] >> 32 > 0) == spare)
                .collect();
            let Some(first) = rows.iter().map(|&i| streams[i]).min() else {
                continue;
            };
            let got = self.lm.request_samples(
                &self.prompt,
                self.prompt_index,
                &self.req,
                rows.len(),
                first,
            )?;
            for (i, c) in rows.into_iter().zip(got) {
                out[i] = Some(c);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}

impl LanguageModel for OpenAiLm {
    fn identity(&self) -> Value {
        json!({"kind": "openai-compatible", "url": self.config.base_url, "model": self.model})
    }

    fn concurrency(&self) -> usize {
        self.config.concurrency
    }

    fn open<'a>(
        &'a self,
        prompt: &str,
        prompt_index: u64,
        req: &GenerationRequest,
    ) -> Result<Box<dyn PromptSession + 'a>, LmError> {
        Ok(Box::new(ServerSession {
            lm: self,
            prompt: prompt.to_string(),
            prompt_index,
            req: req.clone(),
        }))
    }

    fn perplexity(
        &self,
        _prompt: &str,
        _continuations: &[&str],
    ) -> Result<Vec<Option<f64>>, LmError> {
        Err(LmError::Unsupported(
            "a completions server does not give perplexities; use --judge-model".into(),
        ))
    }
}
