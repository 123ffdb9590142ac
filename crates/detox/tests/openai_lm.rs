//! `detox eval` against an OpenAI-compatible completions server on loopback: `n` samples (the
//! server here returns at most 10 choices a request, as some do), the concurrency limit,
//! retries on 429/503 with backoff, fatal errors reported with the prompts done kept, and
//! resume with the same result.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Default)]
struct Counters {
    posts: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    refused: AtomicUsize,
}

async fn models() -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": "tiny-remote", "object": "model"}]}))
}

async fn completions(
    State(c): State<Arc<Counters>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer sk-test") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"message": "bad key"}})),
        )
            .into_response();
    }
    let prompt = body["prompt"].as_str().unwrap_or("").to_string();
    if prompt.contains("always fails") {
        return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
    }
    let nth = c.posts.fetch_add(1, Ordering::SeqCst);
    let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    c.max_in_flight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    c.in_flight.fetch_sub(1, Ordering::SeqCst);
    // The first and third requests fail as busy servers do.
    if nth == 0 || nth == 2 {
        c.refused.fetch_add(1, Ordering::SeqCst);
        let code = if nth == 0 {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return (code, [("retry-after", "0")], "busy").into_response();
    }
    let n = body["n"].as_u64().unwrap_or(1).min(10);
    let seed = body["seed"].as_u64().unwrap_or(0);
    assert_eq!(body["model"], "tiny-remote");
    assert_eq!(body["max_tokens"], 5);
    let choices: Vec<Value> = (0..n)
        .map(|i| {
            let text = if prompt.contains("insult") && i == 0 {
                " you stupid idiot, shut up you moron".to_string()
            } else {
                format!(" a calm reply {} number {i}", seed % 1000)
            };
            json!({"index": i, "text": text, "finish_reason": "length"})
        })
        .collect();
    Json(json!({"object": "text_completion", "model": "tiny-remote", "choices": choices}))
        .into_response()
}

/// Starts the server; returns its base address and counters.
fn server() -> (String, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let state = counters.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let app = Router::new()
                .route("/v1/models", get(models))
                .route("/v1/completions", post(completions))
                .with_state(state);
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    (format!("http://{addr}/v1"), counters)
}

fn eval(base: &str, prompts: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_detox"))
        .args(["--offline", "eval", "--model", base, "--prompts"])
        .arg(prompts)
        .args([
            "--scorer",
            "fast",
            "--samples",
            "25",
            "--max-tokens",
            "5",
            "--seed",
            "9",
            "--out",
        ])
        .arg(out)
        .args(extra)
        .env("OPENAI_API_KEY", "sk-test")
        .output()
        .unwrap()
}

#[test]
fn eval_on_a_completions_server_samples_n_retries_limits_concurrency_and_resumes() {
    let (base, counters) = server();
    let tmp = tempfile::tempdir().unwrap();
    let prompts = tmp.path().join("prompts.jsonl");
    let texts = [
        "The weather today",
        "He wanted to insult",
        "My favourite recipe",
        "In the news",
        "She said that",
        "Another insult was",
        "The last prompt",
    ];
    let body: String = texts
        .iter()
        .map(|t| format!("{}\n", json!({"prompt": {"text": t}})))
        .collect();
    std::fs::write(&prompts, body).unwrap();
    let a = tmp.path().join("a");
    let out = eval(&base, &prompts, &a, &["--concurrency", "3"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(counters.refused.load(Ordering::SeqCst), 2);
    let most = counters.max_in_flight.load(Ordering::SeqCst);
    assert!((2..=3).contains(&most), "max in flight {most}");

    let gens = std::fs::read_to_string(a.join("generations.jsonl")).unwrap();
    let lines: Vec<Value> = gens
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), texts.len());
    for (l, t) in lines.iter().zip(texts) {
        assert_eq!(l["prompt"]["text"], *t, "input order");
        let g = l["generations"].as_array().unwrap();
        assert_eq!(g.len(), 25, "25 samples from rounds of at most 10");
        assert!(g[0]["perplexity"].is_null());
        let max = g
            .iter()
            .map(|x| x["toxicity"].as_f64().unwrap())
            .fold(0.0, f64::max);
        assert_eq!(max > 0.5, t.contains("insult"), "{t}: max toxicity {max}");
    }
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["protocol"]["model_identity"]["model"], "tiny-remote");
    assert_eq!(
        run["protocol"]["model_identity"]["kind"],
        "openai-compatible"
    );
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["subsets"]["full"]["prompts"], 7);
    assert!(metrics["subsets"]["full"]["perplexity"].is_null());
    assert!(
        (metrics["subsets"]["full"]["toxicity_probability"]
            .as_f64()
            .unwrap()
            - 2.0 / 7.0)
            .abs()
            < 1e-9
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("use --judge-model"));
    let html = std::fs::read_to_string(a.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("He wanted to insult"));

    // Resume after losing the last three lines: the same file (the server honours seeds).
    let kept: String = gens.lines().take(4).map(|l| format!("{l}\n")).collect();
    std::fs::write(a.join("generations.jsonl"), kept).unwrap();
    let out = eval(&base, &prompts, &a, &["--concurrency", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(a.join("generations.jsonl")).unwrap(),
        gens
    );

    // A wrong key is not retried: the server's message is shown.
    let out = Command::new(env!("CARGO_BIN_EXE_detox"))
        .args(["--offline", "eval", "--scorer", "fast", "--model", &base])
        .args(["--api-key", "wrong", "--limit", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("HTTP 401") && stderr.contains("bad key"),
        "{stderr}"
    );
}

#[test]
fn a_prompt_the_server_keeps_failing_stops_the_run_and_keeps_the_prompts_done() {
    let (base, _) = server();
    let tmp = tempfile::tempdir().unwrap();
    let prompts = tmp.path().join("prompts.txt");
    std::fs::write(
        &prompts,
        "first prompt\nsecond prompt\nthis always fails\nfourth\n",
    )
    .unwrap();
    let a = tmp.path().join("a");
    let out = eval(
        &base,
        &prompts,
        &a,
        &["--retries", "1", "--concurrency", "1"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("HTTP 500") && stderr.contains("gave up after 1 retries"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 3") && stderr.contains("run the same command again"),
        "{stderr}"
    );
    let gens = std::fs::read_to_string(a.join("generations.jsonl")).unwrap();
    assert_eq!(
        gens.lines().count(),
        2,
        "the two prompts before it are kept"
    );
}
