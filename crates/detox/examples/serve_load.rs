//! A bounded load benchmark of `detox serve` over loopback.
//!
//! Starts `detox serve` on a free loopback port, scores the same texts offline with
//! `detox score` for the baseline, then sends every text once as a Perspective
//! `comments:analyze` request (one comment a request, keep-alive connections) at concurrency
//! 1, 8 and 64, and prints texts/s, the ratio to offline throughput, p50/p99 latency and errors.
//! It sends a fixed number of requests and stops by itself.
//!
//! ```text
//! cargo build --release && cargo run --release --example serve_load -- \
//!     [--detox target/release/detox] [--texts bench/out/corpus.jsonl] [--scorer default] [--threads 2]
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as TokioBufReader};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

async fn request(
    reader: &mut TokioBufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    body: &str,
) -> std::io::Result<u16> {
    let req = format!(
        "POST /v1alpha1/comments:analyze HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    writer.write_all(req.as_bytes()).await?;
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut len = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line).await?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut buf = vec![0u8; len];
    reader.read_exact(&mut buf).await?;
    Ok(status)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let detox = arg("--detox", "target/release/detox");
    let texts_path = arg("--texts", "bench/out/corpus.jsonl");
    let scorer = arg("--scorer", "default");
    let threads = arg("--threads", "2");
    let texts: Vec<String> = std::fs::read_to_string(&texts_path)
        .map_err(|e| format!("{texts_path}: {e} (run bench/score.py once, or pass --texts)"))?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(String::from))
        .filter(|t| !t.is_empty())
        .collect();

    // Offline baseline on the same texts.
    let offline = Command::new(&detox)
        .args([
            "score",
            &texts_path,
            "--scorer",
            &scorer,
            "--threads",
            &threads,
            "--batch-size",
            "32",
            "-o",
            "/dev/null",
        ])
        .output()?;
    let err = String::from_utf8_lossy(&offline.stderr);
    let offline_tps: f64 = err
        .split("texts in ")
        .nth(1)
        .and_then(|s| s.split('(').nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no throughput line from detox score: {err}"))?;

    let mut child = Command::new(&detox)
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--scorer",
            &scorer,
            "--threads",
            &threads,
        ])
        .stderr(Stdio::piped())
        .spawn()?;
    let mut err = BufReader::new(child.stderr.take().ok_or("no stderr")?);
    let mut line = String::new();
    let addr = loop {
        line.clear();
        if err.read_line(&mut line)? == 0 {
            return Err("server exited".into());
        }
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
    };
    std::thread::spawn(move || for _ in err.lines() {});

    let bodies: Vec<String> = texts
        .iter()
        .map(|t| {
            serde_json::json!({"comment": {"text": t}, "requestedAttributes": {"TOXICITY": {}}})
                .to_string()
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    println!(
        "serve load: {} texts, one per request, scorer `{scorer}`, {threads} threads; offline `detox score`: {offline_tps:.1} texts/s",
        texts.len()
    );
    println!(
        "{:>11} {:>10} {:>8} {:>9} {:>9} {:>7}",
        "concurrency", "texts/s", "ratio", "p50 ms", "p99 ms", "errors"
    );
    let levels: Vec<usize> = arg("--concurrency", "1,8,64")
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    for conc in levels {
        let bodies = bodies.clone();
        let addr = addr.clone();
        let (lat, errors, secs) = rt.block_on(async move {
            let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let bodies = std::sync::Arc::new(bodies);
            let t0 = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..conc {
                let (next, bodies, addr) = (next.clone(), bodies.clone(), addr.clone());
                tasks.push(tokio::spawn(async move {
                    let stream = tokio::net::TcpStream::connect(&addr)
                        .await
                        .expect("connect");
                    stream.set_nodelay(true).ok();
                    let (r, mut w) = stream.into_split();
                    let mut r = TokioBufReader::new(r);
                    let mut lat = Vec::new();
                    let mut errors = 0usize;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= bodies.len() {
                            break;
                        }
                        let t = Instant::now();
                        match tokio::time::timeout(
                            Duration::from_secs(60),
                            request(&mut r, &mut w, &bodies[i]),
                        )
                        .await
                        {
                            Ok(Ok(200)) => lat.push(t.elapsed().as_secs_f64()),
                            _ => errors += 1,
                        }
                    }
                    (lat, errors)
                }));
            }
            let mut lat = Vec::new();
            let mut errors = 0;
            for t in tasks {
                let (l, e) = t.await.expect("task");
                lat.extend(l);
                errors += e;
            }
            (lat, errors, t0.elapsed().as_secs_f64())
        });
        let mut lat = lat;
        lat.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0)
                * 1e3
        };
        let tps = lat.len() as f64 / secs;
        println!(
            "{conc:>11} {tps:>10.1} {:>8.2} {:>9.1} {:>9.1} {errors:>7}",
            tps / offline_tps,
            pct(0.5),
            pct(0.99)
        );
    }
    // Mean texts per model call, from the server's own metrics.
    let metrics = rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(&addr).await?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    })?;
    let get = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    println!(
        "model calls: {}, mean texts per call: {:.1}, mean model time per call: {:.1} ms, model busy {:.1} s",
        get("detox_batch_size_count"),
        get("detox_batch_size_sum") / get("detox_batch_size_count").max(1.0),
        1e3 * get("detox_batch_duration_seconds_sum") / get("detox_batch_duration_seconds_count").max(1.0),
        get("detox_batch_duration_seconds_sum"),
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    Ok(())
}
