//! `detox serve` over loopback: a real server process, real HTTP, real clients.

use detox_core::Scorer;
use detox_scorers::{load_scorer, ClassifierOptions};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

mod common;
use std::process::{Command, Stdio};
use std::time::Duration;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../detox-scorers/tests/fixtures")
        .join(name)
}

fn ckpt() -> PathBuf {
    fixture("detoxify-unbiased").join("unbiased-tiny.ckpt")
}

type Server = common::Listening;

fn start(extra: &[&str], scorer: &Path) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_detox"));
    cmd.args([
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--threads",
        "2",
        "--scorer",
    ])
    .arg(scorer)
    .args(extra)
    .env_remove("DETOX_API_KEY");
    Server::start(cmd)
}

/// One HTTP/1.1 request on a fresh connection; returns (status, headers, body).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, raw[split + 4..].to_vec())
}

fn post_json(srv: &Server, path: &str, body: &Value) -> (u16, Value) {
    let (status, _, b) = http(
        &srv.addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    (status, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

fn local_scores(text: &str) -> Vec<f32> {
    let s = load_scorer(&ckpt(), None, ClassifierOptions::default()).unwrap();
    s.score(&[text]).unwrap().remove(0).values
}

#[test]
fn perspective_analyze_matches_offline_scores_with_spans_and_errors() {
    let srv = start(&[], &ckpt());
    let text = "You are great. 😀 You are an idiot!";
    let (status, r) = post_json(
        &srv,
        "/v1alpha1/comments:analyze?key=anything",
        &json!({
            "comment": {"text": text, "type": "PLAIN_TEXT"},
            "requestedAttributes": {"TOXICITY": {}, "INSULT": {"scoreType": "PROBABILITY"}},
            "languages": ["en"],
            "doNotStore": true,
            "clientToken": "tok-123",
            "spanAnnotations": true,
        }),
    );
    assert_eq!(status, 200, "{r}");
    let want = local_scores(text);
    let got = r["attributeScores"]["TOXICITY"]["summaryScore"]["value"]
        .as_f64()
        .unwrap();
    assert!((got - want[0] as f64).abs() < 1e-6, "{got} vs {}", want[0]);
    assert_eq!(
        r["attributeScores"]["TOXICITY"]["summaryScore"]["type"],
        "PROBABILITY"
    );
    let spans = r["attributeScores"]["INSULT"]["spanScores"]
        .as_array()
        .unwrap();
    assert_eq!(spans.len(), 2);
    assert_eq!(
        (spans[0]["begin"].as_u64(), spans[0]["end"].as_u64()),
        (Some(0), Some(14))
    );
    // The emoji counts two UTF-16 units.
    assert_eq!(spans[1]["begin"], 15);
    assert_eq!(spans[1]["end"], text.encode_utf16().count());
    let second = local_scores("😀 You are an idiot!");
    let v = spans[1]["score"]["value"].as_f64().unwrap();
    assert!(
        (v - second[4] as f64).abs() < 1e-6,
        "insult is the 5th label"
    );
    assert_eq!(r["clientToken"], "tok-123");
    assert_eq!(r["languages"], json!(["en"]));
    assert_eq!(r["detectedLanguages"], json!(["en"]));

    // A threshold above the score drops the attribute, as Perspective does.
    let (_, r) = post_json(
        &srv,
        "/v1alpha1/comments:analyze",
        &json!({"comment": {"text": "hello"}, "requestedAttributes": {"TOXICITY": {"scoreThreshold": 1.0}}}),
    );
    assert_eq!(r["attributeScores"], json!({}));

    let err = |body: Value| {
        let (status, r) = post_json(&srv, "/v1alpha1/comments:analyze", &body);
        (
            status,
            r["error"]["details"][0]["errorType"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            r,
        )
    };
    let attrs = json!({"TOXICITY": {}});
    let (s, kind, r) = err(json!({"comment": {"text": ""}, "requestedAttributes": attrs}));
    assert_eq!((s, kind.as_str()), (400, "COMMENT_EMPTY"), "{r}");
    assert_eq!(r["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(r["error"]["code"], 400);
    let (s, kind, _) =
        err(json!({"comment": {"text": "x".repeat(20_481)}, "requestedAttributes": attrs}));
    assert_eq!((s, kind.as_str()), (400, "COMMENT_TOO_LONG"));
    let (s, kind, _) =
        err(json!({"comment": {"text": "x".repeat(20_480)}, "requestedAttributes": attrs}));
    assert_eq!((s, kind.as_str()), (200, ""), "20,480 bytes is allowed");
    let (s, kind, _) = err(json!({"comment": {"text": "hi"}, "requestedAttributes": {}}));
    assert_eq!((s, kind.as_str()), (400, "NO_REQUESTED_ATTRIBUTES"));
    let (s, kind, _) = err(json!({"comment": {"text": "hi"}, "requestedAttributes": {"NOPE": {}}}));
    assert_eq!((s, kind.as_str()), (400, "UNKNOWN_ATTRIBUTE"));
    let (s, kind, r) = err(
        json!({"comment": {"text": "hi"}, "requestedAttributes": {"FLIRTATION": {}, "TOXICITY": {}}}),
    );
    assert_eq!((s, kind.as_str()), (400, "ATTRIBUTE_NOT_SUPPORTED"), "{r}");
    let (s, _, r) = err(
        json!({"comment": {"text": "hi"}, "requestedAttributes": {"FLIRTATION": {}, "TOXICITY": {}}, "dropUnsupportedAttributes": true}),
    );
    assert_eq!(s, 200);
    assert!(
        r["attributeScores"]["TOXICITY"].is_object()
            && r["attributeScores"].get("FLIRTATION").is_none()
    );
    let (s, kind, _) = err(
        json!({"comment": {"text": "hallo"}, "requestedAttributes": attrs, "languages": ["de"]}),
    );
    assert_eq!(
        (s, kind.as_str()),
        (400, "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE")
    );
    let (s, kind, r) =
        err(json!({"comment": {"text": "你是个笨蛋"}, "requestedAttributes": attrs}));
    assert_eq!(
        (s, kind.as_str()),
        (400, "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE"),
        "{r}"
    );
}

#[test]
fn moderations_score_and_native_routes() {
    let srv = start(&[], &ckpt());
    let (s, r) = post_json(
        &srv,
        "/v1/moderations",
        &json!({"input": "shut up, you idiot!", "model": "omni-moderation-latest"}),
    );
    assert_eq!(s, 200, "{r}");
    assert!(r["id"].as_str().unwrap().starts_with("modr-"));
    assert_eq!(r["model"], "omni-moderation-latest");
    let res = &r["results"][0];
    let want = local_scores("shut up, you idiot!");
    let harassment = res["category_scores"]["harassment"].as_f64().unwrap();
    assert!(
        (harassment - want[4] as f64).abs() < 1e-6,
        "harassment is insult"
    );
    assert_eq!(
        res["category_scores"]["self-harm"], 0.0,
        "unmapped categories score 0"
    );
    assert_eq!(res["categories"].as_object().unwrap().len(), 13);
    assert_eq!(res["category_applied_input_types"]["hate"], json!(["text"]));
    assert_eq!(
        res["flagged"],
        json!(res["categories"]
            .as_object()
            .unwrap()
            .values()
            .any(|v| v == true))
    );

    let (s, r) = post_json(
        &srv,
        "/v1/moderations",
        &json!({"input": ["a", {"type": "text", "text": "b"}]}),
    );
    assert_eq!((s, r["results"].as_array().unwrap().len()), (200, 2), "{r}");
    let (s, r) = post_json(
        &srv,
        "/v1/moderations",
        &json!({"input": [{"type": "image_url", "image_url": {"url": "x"}}]}),
    );
    assert_eq!(s, 400);
    assert_eq!(r["error"]["type"], "invalid_request_error");
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("image_url"));

    let (s, r) = post_json(
        &srv,
        "/v1/score",
        &json!({"texts": ["hello", "you idiot"], "attributes": ["toxicity", "insult"]}),
    );
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["results"][1]["scores"].as_object().unwrap().len(), 2);
    let t = r["results"][1]["scores"]["toxicity"].as_f64().unwrap();
    assert!((t - local_scores("you idiot")[0] as f64).abs() < 1e-6);
    let (s, r) = post_json(
        &srv,
        "/v1/score",
        &json!({"texts": ["a"], "attributes": ["nope"]}),
    );
    assert_eq!(s, 400);
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown attribute `nope`"));

    let (s, _, b) = http(&srv.addr, "GET", "/healthz", &[], b"");
    assert_eq!(s, 200);
    assert_eq!(serde_json::from_slice::<Value>(&b).unwrap()["status"], "ok");
    let (s, _, b) = http(&srv.addr, "GET", "/metrics", &[], b"");
    let m = String::from_utf8(b).unwrap();
    assert_eq!(s, 200);
    assert!(
        m.contains("detox_requests_total{route=\"moderations\",status=\"200\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("detox_request_duration_seconds_bucket{route=\"score\""),
        "{m}"
    );
    assert!(m.contains("detox_batch_size_count"), "{m}");
    assert!(m.contains("detox_queue_depth 0"), "{m}");
}

#[test]
fn bad_requests_get_4xx_with_a_message_and_the_server_survives() {
    let srv = start(&["--max-body-bytes", "65536"], &ckpt());
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        (
            "POST",
            "/v1alpha1/comments:analyze",
            b"{not json".to_vec(),
            400,
        ),
        (
            "POST",
            "/v1alpha1/comments:analyze",
            br#"{"comment": {"text": 5}, "requestedAttributes": {"TOXICITY": {}}}"#.to_vec(),
            400,
        ),
        (
            "POST",
            "/v1alpha1/comments:analyze",
            br#"{"comment": "text", "requestedAttributes": {"TOXICITY": {}}}"#.to_vec(),
            400,
        ),
        ("POST", "/v1/moderations", br#"{"input": 42}"#.to_vec(), 400),
        ("POST", "/v1/moderations", b"".to_vec(), 400),
        (
            "POST",
            "/v1/score",
            br#"{"texts": "not a list"}"#.to_vec(),
            400,
        ),
        ("POST", "/v1/score", vec![b'a'; 200_000], 413),
        ("POST", "/v1/nope", b"{}".to_vec(), 404),
        ("GET", "/", b"".to_vec(), 404),
    ];
    for (method, path, body, want) in cases {
        let (status, _, b) = http(
            &srv.addr,
            method,
            path,
            &[("Content-Type", "application/json")],
            &body,
        );
        assert_eq!(
            status,
            want,
            "{method} {path}: {}",
            String::from_utf8_lossy(&b)
        );
        let v: Value = serde_json::from_slice(&b).unwrap_or_else(|_| {
            panic!("{method} {path}: not JSON: {}", String::from_utf8_lossy(&b))
        });
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
    }
    let (status, _, _) = http(&srv.addr, "GET", "/v1/moderations", &[], b"");
    assert_eq!(status, 405);
    let (status, _, _) = http(&srv.addr, "GET", "/healthz", &[], b"");
    assert_eq!(status, 200, "still serving");
}

#[test]
fn api_keys_are_checked_on_query_and_bearer() {
    let srv = start(&["--api-key", "sekret"], &ckpt());
    let body =
        json!({"comment": {"text": "hi"}, "requestedAttributes": {"TOXICITY": {}}}).to_string();
    let (s, _, b) = http(
        &srv.addr,
        "POST",
        "/v1alpha1/comments:analyze",
        &[],
        body.as_bytes(),
    );
    assert_eq!(s, 401);
    assert_eq!(
        serde_json::from_slice::<Value>(&b).unwrap()["error"]["status"],
        "UNAUTHENTICATED"
    );
    let (s, _, _) = http(
        &srv.addr,
        "POST",
        "/v1alpha1/comments:analyze?key=wrong",
        &[],
        body.as_bytes(),
    );
    assert_eq!(s, 401);
    let (s, _, _) = http(
        &srv.addr,
        "POST",
        "/v1alpha1/comments:analyze?key=sekret",
        &[],
        body.as_bytes(),
    );
    assert_eq!(s, 200);
    let m = json!({"input": "hi"}).to_string();
    let (s, _, b) = http(
        &srv.addr,
        "POST",
        "/v1/moderations",
        &[("Authorization", "Bearer nope")],
        m.as_bytes(),
    );
    assert_eq!(s, 401);
    assert_eq!(
        serde_json::from_slice::<Value>(&b).unwrap()["error"]["code"],
        "invalid_api_key"
    );
    let (s, _, _) = http(
        &srv.addr,
        "POST",
        "/v1/moderations",
        &[("Authorization", "Bearer sekret")],
        m.as_bytes(),
    );
    assert_eq!(s, 200);
}

#[test]
fn sigterm_finishes_requests_in_flight_then_exits() {
    let mut srv = start(&[], &ckpt());
    let texts: Vec<String> = (0..500)
        .map(|i| format!("text number {i} is here"))
        .collect();
    let body = json!({"texts": texts}).to_string();
    // The request is in flight (headers and half the body sent) when the signal arrives.
    let mut s = TcpStream::connect(&srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST /v1/score HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    s.write_all(first).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pid = srv.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused or closed once shutdown began...
    let late = TcpStream::connect(&srv.addr).map(|mut c| {
        let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = Vec::new();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = c.read_to_end(&mut buf);
        buf
    });
    assert!(
        late.map(|b| b.is_empty()).unwrap_or(true),
        "no new requests after SIGTERM"
    );
    // ...while the request in flight completes.
    s.write_all(rest).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..text.len().min(300)]
    );
    let json_start = text.find("\r\n\r\n").unwrap() + 4;
    let v: Value = serde_json::from_str(&text[json_start..]).unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 500);
    let code = srv.child.wait().unwrap();
    assert!(code.success(), "exit {code:?}");
}

fn python_with(module: &str) -> Option<String> {
    let python = std::env::var("DETOX_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    detox_core::testing::require(
        &format!(
            "Python package `{module}` for `{python}` (set DETOX_TEST_PYTHON; .ci/run installs it)"
        ),
        ok,
    )
    .then_some(python)
}

fn client(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

#[test]
fn the_official_openai_client_and_a_perspective_client_work_unchanged() {
    let srv = start(&["--api-key", "k1"], &ckpt());
    let python = python_with("json").expect("python3 is required");
    let out = Command::new(&python)
        .arg(client("perspective_client.py"))
        .args([&srv.base, "k1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = local_scores("friendly greetings from python")[0] as f64;
    assert!((v["toxicity"].as_f64().unwrap() - want).abs() < 1e-6);
    assert_eq!(v["type"], "PROBABILITY");

    let Some(python) = python_with("openai") else {
        return;
    };
    let out = Command::new(&python)
        .arg(client("openai_moderation.py"))
        .args([&srv.base, "k1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model"], "omni-moderation-latest");
    assert_eq!(
        (v["n_one"].as_u64(), v["n_many"].as_u64()),
        (Some(1), Some(2))
    );
    let h = v["harassment"].as_array().unwrap();
    assert!((h[1].as_f64().unwrap() - local_scores("you worthless troll")[4] as f64).abs() < 1e-6);
    assert_eq!(v["applied"], json!(["text"]));
}
