//! The request queue: concurrent requests wait in a bounded queue and are scored together in
//! batches capped by a token budget (estimated from text length), the way
//! text-embeddings-inference's router does, so throughput under load stays near offline
//! throughput. A full queue refuses at once (the handlers answer 429 with `Retry-After`).

use crate::metrics::Metrics;
use detox_core::{Scorer, TextScore};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Why a job was not scored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueError {
    /// The queue is full; retry later.
    Full,
    /// The worker stopped (shutting down).
    Closed,
    /// The scorer failed on the batch holding this job.
    Scorer(String),
    /// The scorer failed on a text of this job alone (a remote scorer's service gave up on
    /// it); the other jobs of the batch are answered.
    Text(String),
}

struct Job {
    texts: Vec<String>,
    tokens: usize,
    reply: oneshot::Sender<Result<Vec<TextScore>, QueueError>>,
    queued: Instant,
}

/// A handle to the batching worker.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
}

/// Rough token count of a text (about four bytes a token for English, at least one).
pub fn estimate_tokens(text: &str) -> usize {
    text.len() / 4 + 2
}

impl Batcher {
    /// Starts the worker. `queue` bounds waiting jobs; `max_batch_tokens` caps the estimated
    /// tokens scored in one call (a single larger job is still scored, alone).
    pub fn start(
        scorer: Arc<dyn Scorer>,
        queue: usize,
        max_batch_tokens: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<Job>(queue.max(1));
        // How long a batch may wait for more requests, and for how long a quiet queue counts
        // as drained.
        let window = std::time::Duration::from_millis(4);
        let gap = std::time::Duration::from_micros(500);
        let m = metrics.clone();
        tokio::spawn(async move {
            let mut carry: Option<Job> = None;
            // Waiting for company only pays when requests come concurrently.
            let mut last_jobs = 1usize;
            loop {
                let first = match carry.take() {
                    Some(j) => j,
                    None => match rx.recv().await {
                        Some(j) => j,
                        None => break,
                    },
                };
                m.queue_depth.fetch_sub(1, Ordering::Relaxed);
                let mut jobs = vec![first];
                let mut tokens = jobs[0].tokens;
                // Take whatever else is waiting, up to the token budget. Under load, clients
                // whose answers just went out are sending their next request: wait a moment
                // (at most `window` in all) so they join this batch instead of the next.
                let deadline = tokio::time::Instant::now()
                    + if last_jobs > 1 {
                        window
                    } else {
                        std::time::Duration::ZERO
                    };
                while tokens < max_batch_tokens {
                    let next = match rx.try_recv() {
                        Ok(j) => Some(j),
                        Err(mpsc::error::TryRecvError::Disconnected) => None,
                        Err(mpsc::error::TryRecvError::Empty) => {
                            let now = tokio::time::Instant::now();
                            if now >= deadline {
                                None
                            } else {
                                let quiet = (deadline - now).min(gap);
                                tokio::time::timeout(quiet, rx.recv()).await.ok().flatten()
                            }
                        }
                    };
                    let Some(j) = next else { break };
                    m.queue_depth.fetch_sub(1, Ordering::Relaxed);
                    if tokens + j.tokens > max_batch_tokens {
                        carry = Some(j);
                        m.queue_depth.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    tokens += j.tokens;
                    jobs.push(j);
                }
                // Jobs whose caller gave up (timeout, disconnect) are dropped unscored.
                last_jobs = jobs.len();
                jobs.retain(|j| !j.reply.is_closed());
                if jobs.is_empty() {
                    continue;
                }
                let texts: Vec<String> =
                    jobs.iter().flat_map(|j| j.texts.iter().cloned()).collect();
                m.observe_batch(texts.len());
                let wait = jobs
                    .iter()
                    .map(|j| j.queued.elapsed())
                    .max()
                    .unwrap_or_default();
                tracing::debug!(
                    "batch of {} texts from {} requests (waited {:?})",
                    texts.len(),
                    jobs.len(),
                    wait
                );
                let s = scorer.clone();
                let t0 = Instant::now();
                let result = tokio::task::spawn_blocking(move || {
                    let refs: Vec<&str> = texts.iter().map(|t| t.as_str()).collect();
                    s.score_each(&refs)
                })
                .await;
                m.observe_batch_seconds(t0.elapsed().as_secs_f64());
                match result {
                    Ok(Ok(scores)) => {
                        let mut it = scores.into_iter();
                        for j in jobs {
                            let mine: Result<Vec<TextScore>, _> =
                                it.by_ref().take(j.texts.len()).collect();
                            let _ = j
                                .reply
                                .send(mine.map_err(|e| QueueError::Text(e.to_string())));
                        }
                    }
                    Ok(Err(e)) => {
                        for j in jobs {
                            let _ = j.reply.send(Err(QueueError::Scorer(e.to_string())));
                        }
                    }
                    Err(e) => {
                        for j in jobs {
                            let _ = j
                                .reply
                                .send(Err(QueueError::Scorer(format!("scorer panicked: {e}"))));
                        }
                    }
                }
            }
        });
        Self { tx, metrics }
    }

    /// Queues texts and waits for their scores.
    pub async fn score(&self, texts: Vec<String>) -> Result<Vec<TextScore>, QueueError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let tokens = texts.iter().map(|t| estimate_tokens(t)).sum();
        let (reply, rx) = oneshot::channel();
        let job = Job {
            texts,
            tokens,
            reply,
            queued: Instant::now(),
        };
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.tx.try_send(job) {
            self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => QueueError::Full,
                mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
            });
        }
        rx.await.unwrap_or(Err(QueueError::Closed))
    }
}
