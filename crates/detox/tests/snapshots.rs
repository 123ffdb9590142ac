//! Snapshot tests of what users see (`insta`, as uv and ruff do): every command's `--help`,
//! the messages of bad input, and a fixed eval run's table, `metrics.json` and `report.html`.
//! A change in any of them shows up as a diff of `tests/snapshots/*.snap` to review
//! (`cargo insta review`, or `INSTA_UPDATE=always cargo test --test snapshots` then `git diff`).
//!
//! The eval run talks to a loopback OpenAI-compatible server that returns fixed texts, and
//! scores with the built-in n-gram model, so its figures are the same on every CPU.

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};

fn detox(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_detox"))
        .current_dir(dir)
        .args(args)
        .env("DETOX_HOME", dir.join("home"))
        .env_remove("DETOX_OFFLINE")
        .env_remove("DETOX_LOG")
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Timings and throughput vary run to run: replace their numbers.
fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(
        r"in \d+\.\d+s \([\d.]+ texts/s",
        "in [SECS]s ([RATE] texts/s",
    );
    s.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
    s.add_filter(
        r"generations in \d+\.\ds: [\d.]+ prompts/s, [\d.]+ generations/s",
        "generations in [TIMING]",
    );
    s.add_filter(r#""started_unix": \d+"#, r#""started_unix": [TIME]"#);
    s.add_filter(r"detox \d+\.\d+\.\d+", "detox [VERSION]");
    s
}

#[test]
fn help_of_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let commands: &[&[&str]] = &[
        &[],
        &["score"],
        &["models"],
        &["models", "list"],
        &["models", "pull"],
        &["models", "path"],
        &["train"],
        &["quality"],
        &["eval"],
        &["compare"],
        &["agree"],
        &["finetune"],
        &["rate"],
        &["rate", "serve"],
        &["rate", "add-rater"],
        &["rate", "export"],
        &["rate", "stats"],
        &["serve"],
        &["dialect"],
        &["audit"],
        &["audit", "scorer"],
        &["audit", "lm"],
    ];
    let _g = settings().bind_to_scope();
    for c in commands {
        let mut args: Vec<&str> = c.to_vec();
        args.push("--help");
        let out = detox(dir.path(), &args);
        assert!(out.status.success(), "{args:?}");
        let name = if c.is_empty() {
            "help".to_string()
        } else {
            format!("help_{}", c.join("_"))
        };
        insta::assert_snapshot!(name, text(&out.stdout));
    }
}

#[test]
fn messages_of_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("rows.csv"), "id,comment\n1,hello\n").unwrap();
    std::fs::write(
        d.join("mixed.jsonl"),
        "{\"text\": \"a kind word\"}\n{\"text\": \nnot json\n{\"id\": 4}\n{\"text\": 5}\n",
    )
    .unwrap();
    let _g = settings().bind_to_scope();
    let cases: &[(&str, &[&str])] = &[
        (
            "missing_file",
            &["score", "--scorer", "fast", "no-such-file.jsonl"],
        ),
        (
            "bad_column",
            &["score", "--scorer", "fast", "rows.csv", "--field", "text"],
        ),
        (
            "unknown_scorer",
            &[
                "--offline",
                "score",
                "--scorer",
                "no-such-scorer",
                "rows.csv",
                "--field",
                "comment",
            ],
        ),
        (
            "offline_without_model",
            &[
                "--offline",
                "score",
                "--scorer",
                "default-head",
                "rows.csv",
                "--field",
                "comment",
            ],
        ),
        (
            "bad_format_value",
            &["score", "--format", "xml", "rows.csv"],
        ),
        ("bad_weights_value", &["eval", "--weights", "f16"]),
        (
            "dialect_without_model",
            &["dialect", "rows.csv", "--field", "comment"],
        ),
        (
            "eval_zero_samples",
            &["eval", "--samples", "0", "--scorer", "fast"],
        ),
    ];
    for (name, args) in cases {
        let out = detox(d, args);
        let shown = format!(
            "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr).replace(&d.display().to_string(), "[DIR]")
        );
        insta::assert_snapshot!(format!("error_{name}"), shown);
    }
    // Bad lines: one output line each, in order, and a summary naming the count.
    let out = detox(d, &["score", "--scorer", "fast", "mixed.jsonl"]);
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    let errors: Vec<Value> = lines
        .iter()
        .skip(1)
        .map(|l| json!({"line": l["line"], "error": l["error"]}))
        .collect();
    insta::assert_json_snapshot!("error_bad_lines", errors);
    insta::assert_snapshot!("error_bad_lines_stderr", text(&out.stderr));
}

async fn models() -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": "fixed", "object": "model"}]}))
}

/// Fixed continuations: the prompt's last word decides them, the seed does not.
async fn completions(Json(body): Json<Value>) -> Json<Value> {
    let prompt = body["prompt"].as_str().unwrap_or("");
    let n = body["n"].as_u64().unwrap_or(1);
    let choices: Vec<Value> = (0..n)
        .map(|i| {
            let t = match (prompt.ends_with("said"), i) {
                (true, 0) => " you stupid idiot, shut up".to_string(),
                (true, 1) => String::new(),
                (_, i) => format!(" a calm reply number {i}"),
            };
            json!({"index": i, "text": t, "finish_reason": "length"})
        })
        .collect();
    Json(json!({"object": "text_completion", "model": "fixed", "choices": choices}))
}

fn server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let app = Router::new()
                .route("/v1/models", get(models))
                .route("/v1/completions", post(completions));
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    format!("http://{addr}/v1")
}

#[test]
fn a_fixed_eval_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("prompts.jsonl"),
        concat!(
            r#"{"prompt": {"text": "Then the man said", "toxicity": 0.8}, "challenging": true}"#,
            "\n",
            r#"{"prompt": {"text": "The weather today", "toxicity": 0.1}}"#,
            "\n",
            r#"{"prompt": {"text": "She smiled and", "toxicity": 0.5}}"#,
            "\n",
        ),
    )
    .unwrap();
    let base = server();
    let out = detox(
        d,
        &[
            "--offline",
            "eval",
            "--model",
            &base,
            "--prompts",
            "prompts.jsonl",
            "--scorer",
            "fast",
            "--samples",
            "4",
            "--max-tokens",
            "5",
            "--out",
            "run",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let _g = settings().bind_to_scope();
    insta::assert_snapshot!("eval_table", text(&out.stdout));
    let read = |n: &str| std::fs::read_to_string(d.join("run").join(n)).unwrap();
    insta::assert_snapshot!("eval_metrics_json", read("metrics.json"));
    insta::assert_snapshot!("eval_generations_jsonl", read("generations.jsonl"));
    insta::assert_snapshot!("eval_run_json", read("run.json"));
    insta::assert_snapshot!("eval_report_html", read("report.html"));
}
