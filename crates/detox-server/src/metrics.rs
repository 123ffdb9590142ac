//! Prometheus text metrics: requests by route and status, a latency histogram, batch sizes and
//! queue depth. Plain atomics: no registry crate needed for four series.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, buckets: &[f64], v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; buckets.len()];
        }
        for (c, b) in self.counts.iter_mut().zip(buckets) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, buckets: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in buckets.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            out.push_str(&format!("{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}\n"));
        }
        out.push_str(&format!(
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}\n",
            self.count
        ));
        let l = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        out.push_str(&format!(
            "{name}_sum{l} {}\n{name}_count{l} {}\n",
            self.sum, self.count
        ));
    }
}

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    batches: Mutex<Histogram>,
    batch_seconds: Mutex<Histogram>,
    texts: AtomicU64,
    /// Jobs waiting in the queue.
    pub queue_depth: AtomicI64,
}

impl Metrics {
    /// Records a finished request.
    pub fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route.to_string(), status)).or_default() += 1;
        }
        if let Ok(mut m) = self.latency.lock() {
            m.entry(route.to_string())
                .or_default()
                .observe(&LATENCY_BUCKETS, seconds);
        }
    }

    /// Records how long one model call took.
    pub fn observe_batch_seconds(&self, seconds: f64) {
        if let Ok(mut h) = self.batch_seconds.lock() {
            h.observe(&LATENCY_BUCKETS, seconds);
        }
    }

    /// Records a scored batch.
    pub fn observe_batch(&self, texts: usize) {
        self.texts.fetch_add(texts as u64, Ordering::Relaxed);
        if let Ok(mut h) = self.batches.lock() {
            h.observe(&BATCH_BUCKETS, texts as f64);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP detox_requests_total Requests by route and HTTP status.\n# TYPE detox_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((route, status), n) in m.iter() {
                out.push_str(&format!(
                    "detox_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}\n"
                ));
            }
        }
        out.push_str("# HELP detox_request_duration_seconds Request latency.\n# TYPE detox_request_duration_seconds histogram\n");
        if let Ok(m) = self.latency.lock() {
            for (route, h) in m.iter() {
                h.render(
                    &mut out,
                    "detox_request_duration_seconds",
                    &format!("route=\"{route}\""),
                    &LATENCY_BUCKETS,
                );
            }
        }
        out.push_str("# HELP detox_batch_size Texts scored per model call.\n# TYPE detox_batch_size histogram\n");
        if let Ok(h) = self.batches.lock() {
            h.render(&mut out, "detox_batch_size", "", &BATCH_BUCKETS);
        }
        out.push_str("# HELP detox_batch_duration_seconds Time of one model call.\n# TYPE detox_batch_duration_seconds histogram\n");
        if let Ok(h) = self.batch_seconds.lock() {
            h.render(
                &mut out,
                "detox_batch_duration_seconds",
                "",
                &LATENCY_BUCKETS,
            );
        }
        out.push_str(&format!(
            "# HELP detox_texts_scored_total Texts scored.\n# TYPE detox_texts_scored_total counter\ndetox_texts_scored_total {}\n",
            self.texts.load(Ordering::Relaxed)
        ));
        out.push_str(&format!(
            "# HELP detox_queue_depth Requests waiting to be scored.\n# TYPE detox_queue_depth gauge\ndetox_queue_depth {}\n",
            self.queue_depth.load(Ordering::Relaxed).max(0)
        ));
        out
    }
}
