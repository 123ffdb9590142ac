//! The HTTP policy every remote part of detox shares (language-model servers, remote
//! scorers): a request that fails with 429, 408, 5xx, a timeout or a dropped connection is
//! tried again after an exponential backoff with jitter, never sooner than the server's
//! `Retry-After`; any other failure is final at once. A [`RateLimit`] spaces requests out
//! across threads (Perspective's default quota is one query per second).
//!
//! ```no_run
//! use detox_http::{Retry, RateLimit};
//! use std::time::Duration;
//! let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build();
//! let limit = RateLimit::per_second(1.0);
//! let url = "http://127.0.0.1:8080/healthz";
//! let answer = Retry::default().call_json(url, 0, || {
//!     limit.wait();
//!     agent.get(url).call().map_err(Box::new)
//! })?;
//! # Ok::<(), detox_http::HttpError>(())
//! ```

#![warn(missing_docs)]

#[cfg(feature = "testing")]
pub mod testing;

use detox_core::rng::SplitMix64;
use serde_json::Value;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest `Retry-After` honoured; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// A request that failed for good.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{url}: {message}")]
pub struct HttpError {
    /// The address called.
    pub url: String,
    /// The HTTP status of the last answer, if the server answered.
    pub status: Option<u16>,
    /// What went wrong (with the server's own message where it gave one), and after how many
    /// retries it was given up.
    pub message: String,
}

/// How one try failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Worth trying again, after at least the server's `Retry-After` when it sent one.
    Retry {
        /// The status, if the server answered.
        status: Option<u16>,
        /// What went wrong.
        message: String,
        /// The server's `Retry-After`, in seconds (HTTP dates are not read).
        after: Option<Duration>,
    },
    /// Not worth trying again (a client error, a malformed address, an answer not JSON).
    Fatal {
        /// The status, if the server answered.
        status: Option<u16>,
        /// What went wrong.
        message: String,
    },
}

/// Whether an answer with this status is worth trying again.
pub fn is_retryable(status: u16) -> bool {
    status == 429 || status == 408 || status >= 500
}

/// The server's message in an error body: Google's and OpenAI's `{"error": {"message"}}`,
/// `{"error": "..."}`, `{"message"}`, else the body's first 300 characters.
pub fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v["error"]["message"]
                .as_str()
                .or(v["error"].as_str())
                .or(v["message"].as_str())
                .map(String::from)
        })
        .unwrap_or_else(|| body.chars().take(300).collect())
}

/// Sorts a failed try into worth retrying or final.
pub fn classify(e: ureq::Error) -> Failure {
    match e {
        ureq::Error::Status(code, resp) => {
            let after = resp
                .header("Retry-After")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s).min(MAX_RETRY_AFTER));
            let body = resp.into_string().unwrap_or_default();
            let message = format!("HTTP {code}: {}", error_message(&body));
            if is_retryable(code) {
                Failure::Retry {
                    status: Some(code),
                    message,
                    after,
                }
            } else {
                Failure::Fatal {
                    status: Some(code),
                    message,
                }
            }
        }
        ureq::Error::Transport(t) => {
            // ureq's own text repeats the address (which the error adds) and the kind: keep
            // the kind and the innermost cause.
            let mut inner: Option<&dyn std::error::Error> = std::error::Error::source(&t);
            while let Some(next) = inner.and_then(|e| e.source()) {
                inner = Some(next);
            }
            let cause = inner
                .map(|s| s.to_string())
                .or_else(|| t.message().map(String::from))
                .unwrap_or_default();
            let message = if cause.is_empty() {
                t.kind().to_string()
            } else {
                format!("{}: {cause}", t.kind())
            };
            match t.kind() {
                // A malformed address will not get better by waiting.
                ureq::ErrorKind::InvalidUrl
                | ureq::ErrorKind::UnknownScheme
                | ureq::ErrorKind::InsecureRequestHttpsOnly => Failure::Fatal {
                    status: None,
                    message,
                },
                _ => Failure::Retry {
                    status: None,
                    message,
                    after: None,
                },
            }
        }
    }
}

/// The retry schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    /// Tries after the first before giving up.
    pub retries: u32,
    /// The first backoff; doubled at each retry, times a jitter in [0.5, 1.5).
    pub backoff: Duration,
    /// The longest backoff (a `Retry-After` may ask for longer, up to [`MAX_RETRY_AFTER`]).
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            retries: 6,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl Retry {
    /// The wait before retry number `attempt` (0-based): the backoff with jitter, or the
    /// server's `after` when that is longer.
    pub fn wait(&self, attempt: u32, after: Option<Duration>, jitter: &mut SplitMix64) -> Duration {
        let base = self.backoff.as_secs_f64() * 2f64.powi(attempt.min(30) as i32);
        let wait = (base * (0.5 + jitter.unit())).min(self.max_backoff.as_secs_f64());
        let wait = Duration::from_secs_f64(wait.max(0.0));
        after.map_or(wait, |a| a.max(wait))
    }

    /// Runs `send` until it gives an answer, a final failure, or the retries run out, and
    /// parses the answer as JSON. `key` varies the jitter between requests (with the clock),
    /// so requests refused together do not all come back at the same instant.
    pub fn call_json(
        &self,
        url: &str,
        key: u64,
        send: impl Fn() -> Result<ureq::Response, Box<ureq::Error>>,
    ) -> Result<Value, HttpError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
        let mut jitter = SplitMix64::new(0x5eed ^ nanos ^ key.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut attempt = 0u32;
        loop {
            let failure = match send() {
                Ok(resp) => {
                    let status = resp.status();
                    match resp.into_string() {
                        Ok(body) => match serde_json::from_str::<Value>(&body) {
                            Ok(v) => return Ok(v),
                            Err(e) => Failure::Fatal {
                                status: Some(status),
                                message: format!("answer is not JSON: {e}"),
                            },
                        },
                        Err(e) => Failure::Retry {
                            status: Some(status),
                            message: format!("reading the answer: {e}"),
                            after: None,
                        },
                    }
                }
                Err(e) => classify(*e),
            };
            match failure {
                Failure::Fatal { status, message } => {
                    return Err(HttpError {
                        url: url.to_string(),
                        status,
                        message,
                    })
                }
                Failure::Retry {
                    status,
                    message,
                    after,
                } => {
                    if attempt >= self.retries {
                        return Err(HttpError {
                            url: url.to_string(),
                            status,
                            message: format!("{message} (gave up after {attempt} retries)"),
                        });
                    }
                    let wait = self.wait(attempt, after, &mut jitter);
                    tracing::warn!("{url}: {message}; retrying in {:.1} s", wait.as_secs_f64());
                    std::thread::sleep(wait);
                    attempt += 1;
                }
            }
        }
    }
}

/// A client-side rate limit shared by threads: at most `qps` requests start per second, spaced
/// evenly (a request waits for its slot; slots are given out in the order asked).
#[derive(Debug)]
pub struct RateLimit {
    interval: Option<Duration>,
    next: Mutex<Option<Instant>>,
}

impl RateLimit {
    /// At most `qps` requests a second; 0, negative or not finite: no limit.
    pub fn per_second(qps: f64) -> Self {
        let interval = (qps.is_finite() && qps > 0.0).then(|| Duration::from_secs_f64(1.0 / qps));
        Self {
            interval,
            next: Mutex::new(None),
        }
    }

    /// No limit.
    pub fn none() -> Self {
        Self::per_second(0.0)
    }

    /// The spacing between requests, if limited.
    pub fn interval(&self) -> Option<Duration> {
        self.interval
    }

    /// Waits for the next free slot.
    pub fn wait(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + interval);
            slot
        };
        let now = Instant::now();
        if slot > now {
            std::thread::sleep(slot - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_spaces_requests_across_threads() {
        let limit = RateLimit::per_second(20.0);
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..3 {
                        limit.wait();
                    }
                });
            }
        });
        // Nine slots 50 ms apart: the last starts 400 ms after the first.
        let secs = t.elapsed().as_secs_f64();
        assert!(secs >= 0.39, "{secs}");
        assert!(RateLimit::per_second(0.0).interval().is_none());
        assert!(RateLimit::per_second(f64::NAN).interval().is_none());
    }

    #[test]
    fn waits_double_with_jitter_and_honour_a_longer_retry_after() {
        let r = Retry {
            retries: 3,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        let mut j = SplitMix64::new(1);
        for attempt in 0..6 {
            let w = r.wait(attempt, None, &mut j).as_secs_f64();
            let base = 0.1 * 2f64.powi(attempt as i32);
            assert!(
                w >= (base * 0.5).min(1.0) - 1e-9 && w <= (base * 1.5).min(1.0),
                "{attempt}: {w}"
            );
        }
        let w = r.wait(0, Some(Duration::from_secs(2)), &mut j);
        assert_eq!(w, Duration::from_secs(2));
        let w = r.wait(3, Some(Duration::from_millis(1)), &mut j);
        assert!(w > Duration::from_millis(1));
    }

    #[test]
    fn server_messages_are_read_from_the_usual_error_shapes() {
        assert_eq!(error_message(r#"{"error": {"message": "quota"}}"#), "quota");
        assert_eq!(error_message(r#"{"error": "bad key"}"#), "bad key");
        assert_eq!(error_message(r#"{"message": "no"}"#), "no");
        assert_eq!(error_message("plain text"), "plain text");
        assert!(is_retryable(429) && is_retryable(503) && is_retryable(408));
        assert!(!is_retryable(400) && !is_retryable(403) && !is_retryable(404));
    }
}
