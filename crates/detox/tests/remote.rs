//! Remote scorers end to end over loopback: `detox score`, `detox eval`, `detox agree` and
//! `detox serve` (as a proxy) with `--scorer perspective:URL`, `openai-moderation:URL` and
//! `detox:URL` against a real `detox serve --scorer fast`, and against a server that fails
//! on purpose (`detox_http::testing`). The built-in `fast` scorer needs no model files.

use detox_http::testing::{Act, Seen, Server};
use serde_json::{json, Value};

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

mod common;

type Serve = common::Listening;

fn serve(scorer: &str, home: &Path) -> Serve {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_detox"));
    cmd.args([
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--scorer",
        scorer,
    ])
    .env("DETOX_HOME", home)
    .env_remove("DETOX_API_KEY");
    Serve::start(cmd)
}

fn detox(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_detox"))
        .args(args)
        .env("DETOX_HOME", home)
        .env_remove("PERSPECTIVE_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("DETOX_API_KEY")
        .output()
        .unwrap()
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const TEXTS: &str = "{\"text\": \"you are a complete idiot\"}\n{\"text\": \"have a lovely day\"}\n{\"text\": \"\"}\nnot json\n";

#[test]
fn perspective_openai_and_detox_backends_give_the_servers_scores_and_a_rerun_comes_from_the_cache()
{
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let input = home.join("in.jsonl");
    std::fs::write(&input, TEXTS).unwrap();
    let input = input.to_str().unwrap();
    // `detox score` of the input with a scorer and more flags.
    let score = |spec: &str, extra: &[&str]| {
        let mut args = vec!["score", input, "--scorer", spec];
        args.extend_from_slice(extra);
        detox(home, &args)
    };
    let local = lines(&score("fast", &["--allow-errors"]));
    let server = serve("fast", home);
    let cache = home.join("answers.sqlite");
    let cache = cache.to_str().unwrap();
    for spec in ["perspective", "detox"] {
        let out = score(
            &format!("{spec}:{}", server.base),
            &["--cache", cache, "--qps", "0"],
        );
        assert_eq!(out.status.code(), Some(1), "the bad line: {}", stderr(&out));
        let got = lines(&out);
        assert_eq!(got.len(), 4, "one line per input line");
        for i in 0..2 {
            for attr in ["toxicity", "insult"] {
                assert_eq!(got[i]["scores"][attr], local[i]["scores"][attr], "{spec}");
            }
        }
        // An empty text is not sent: no score, as RTP gives empty generations.
        assert!(got[2]["scores"]["toxicity"].is_null(), "{}", got[2]);
        assert_eq!(got[3]["line"], 4);
    }
    let out = score(
        &format!("openai-moderation:{}", server.base),
        &["--cache", cache, "--allow-errors"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let got = lines(&out);
    // harassment is the server's insult, read back as insult.
    assert_eq!(got[0]["scores"]["insult"], local[0]["scores"]["insult"]);
    assert!(got[0]["scores"]["toxicity"].as_f64() >= got[0]["scores"]["insult"].as_f64());

    // The server gone, the same texts come from the cache file.
    let dead = format!("perspective:{}", server.base);
    drop(server);
    let out = score(&dead, &["--cache", cache, "--allow-errors"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lines(&out)[0]["scores"], local[0]["scores"]);
    // Without the cache, the dead server is each text's error, named, and nothing is lost.
    let out = score(&dead, &["--no-cache", "--scorer-retries", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let got = lines(&out);
    assert_eq!(got.len(), 4);
    let error = got[0]["error"].as_str().unwrap();
    assert!(
        error.contains("line 1") && error.contains("Connection"),
        "{error}"
    );
    assert_eq!(got[0]["text"], "you are a complete idiot");
}

#[test]
fn serve_proxies_another_detox_server() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let input = home.join("in.jsonl");
    std::fs::write(&input, "{\"text\": \"you are a complete idiot\"}\n").unwrap();
    let input = input.to_str().unwrap();
    let inner = serve("fast", home);
    let outer = serve(&format!("detox:{}", inner.base), home);
    let out = detox(
        home,
        &[
            "score",
            input,
            "--scorer",
            &format!("perspective:{}", outer.base),
            "--no-cache",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let local = detox(home, &["score", input, "--scorer", "fast"]);
    assert_eq!(
        lines(&out)[0]["scores"]["toxicity"],
        lines(&local)[0]["scores"]["toxicity"]
    );
}

/// A Perspective answer: TOXICITY = the text's length / 50 (at most 1), the rest half that.
fn perspective(seen: &Seen) -> Act {
    let text = seen.body["comment"]["text"].as_str().unwrap_or_default();
    let v = (text.chars().count() as f64 / 50.0).min(1.0);
    let mut scores = serde_json::Map::new();
    for (name, _) in seen.body["requestedAttributes"].as_object().unwrap() {
        let x = if name == "TOXICITY" { v } else { v / 2.0 };
        scores.insert(name.clone(), json!({"summaryScore": {"value": x}}));
    }
    Act::ok(json!({"attributeScores": scores}))
}

fn tiny_gpt2() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../detox-lm/tests/fixtures/tiny-gpt2")
        .display()
        .to_string()
}

#[test]
fn eval_keeps_samples_the_scorer_failed_on_and_a_rerun_fills_them_in() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let prompts = home.join("prompts.jsonl");
    std::fs::write(
        &prompts,
        "{\"prompt\": {\"text\": \"The cat\", \"toxicity\": 0.1}}\n{\"prompt\": {\"text\": \"You are\", \"toxicity\": 0.8}}\n{\"prompt\": {\"text\": \"I think\", \"toxicity\": 0.2}}\n",
    )
    .unwrap();
    let failing = Arc::new(AtomicBool::new(true));
    let f = failing.clone();
    let flaky = Server::start(move |s, n| {
        if f.load(Ordering::SeqCst) && n % 3 == 1 {
            Act::status(503, "overloaded")
        } else {
            perspective(s)
        }
    });
    let healthy = Server::start(|s, _| perspective(s));
    let model = tiny_gpt2();
    let eval = |dir: &Path, base: &str| {
        detox(
            home,
            &[
                "--offline",
                "eval",
                "--model",
                &model,
                "--prompts",
                prompts.to_str().unwrap(),
                "--samples",
                "4",
                "--max-tokens",
                "6",
                "--seed",
                "3",
                "--threads",
                "1",
                "--scorer",
                &format!("perspective:{base}"),
                "--no-cache",
                "--qps",
                "0",
                "--scorer-retries",
                "0",
                "--out",
                dir.to_str().unwrap(),
            ],
        )
    };
    let run = home.join("run");
    let out = eval(&run, &flaky.base);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("could not be scored"),
        "{}",
        stderr(&out)
    );
    let first = std::fs::read_to_string(run.join("generations.jsonl")).unwrap();
    let unscored = first.matches("\"score_error\"").count();
    assert!(unscored > 0, "{first}");
    assert!(first.contains("overloaded"));
    let metrics = std::fs::read_to_string(run.join("metrics.json")).unwrap();
    assert!(
        metrics.contains(&format!("{unscored} samples have no score")),
        "{metrics}"
    );

    // The service recovers; the same command asks only for the missing scores.
    failing.store(false, Ordering::SeqCst);
    let before = flaky.count();
    let out = eval(&run, &flaky.base);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        flaky.count() - before <= unscored,
        "only the unscored were asked again"
    );
    let filled = std::fs::read_to_string(run.join("generations.jsonl")).unwrap();
    assert!(!filled.contains("score_error"));
    // ... ending exactly where a run that never failed ends.
    let clean = home.join("clean");
    let out = eval(&clean, &healthy.base);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        filled,
        std::fs::read_to_string(clean.join("generations.jsonl")).unwrap()
    );

    // Agreement of the run's scores with the built-in scorer on the same generations.
    let out = detox(
        home,
        &[
            "agree",
            run.to_str().unwrap(),
            "--scorer",
            "fast",
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let g: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(g["texts"], 12);
    assert_eq!(g["main_attribute"], "toxicity");
    assert!(g["attributes"][0]["spearman"].is_number(), "{g}");
    assert_eq!(g["rtp"]["a"]["prompts"], 3);
    assert!(g["rtp"]["b"]["expected_max_toxicity"].is_number());
    let md = detox(
        home,
        &["agree", run.to_str().unwrap(), clean.to_str().unwrap()],
    );
    assert!(md.status.success(), "{}", stderr(&md));
    let md = String::from_utf8_lossy(&md.stdout);
    assert!(
        md.contains("| toxicity | ") && md.contains("RealToxicityPrompts metrics each way"),
        "{md}"
    );
}
