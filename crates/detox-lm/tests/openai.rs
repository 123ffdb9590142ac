//! The OpenAI-compatible client against a loopback server that misbehaves on purpose, one
//! scripted answer per `POST /completions`: `Retry-After`, growing backoff, dropped
//! connections, the per-request timeout, retries running out, servers that return fewer
//! choices than `n`, and errors that are not worth retrying.
//!
//! The server is `detox_http::testing`'s (plain `std::net`, a thread per connection, each
//! closed after its answer), so what the client sees is real HTTP over a real socket; it
//! records when each request arrived and what it asked for.

use detox_http::testing;
use detox_lm::openai::{OpenAiConfig, OpenAiLm};
use detox_lm::sampling::SamplingParams;
use detox_lm::{spare_stream, GenerationRequest, LanguageModel, LmError};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the server does with one `POST /completions`.
#[derive(Debug, Clone)]
enum Act {
    /// Answers with this status, an optional `Retry-After`, and a body.
    Status(u16, Option<&'static str>, &'static str),
    /// Reads the request and closes the connection without a word.
    Drop,
    /// Waits this long, then answers normally.
    Slow(Duration),
    /// Answers normally (at most `max_choices` choices, `n` at most).
    Ok,
}

/// The scripted server: [`detox_http::testing::Server`] answering `GET /v1/models` with one
/// model and each `POST /v1/completions` with the next act of the script.
struct Server {
    inner: testing::Server,
    base: String,
}

impl Server {
    /// Starts a server playing `script` (then [`Act::Ok`] for ever), returning at most
    /// `max_choices` choices an answer.
    fn start(script: Vec<Act>, max_choices: usize) -> Self {
        let script = Mutex::new(VecDeque::from(script));
        let inner = testing::Server::start(move |seen, _| {
            if seen.method == "GET" && seen.path == "/v1/models" {
                return testing::Act::ok(json!({"object": "list", "data": [{"id": "scripted"}]}));
            }
            assert!(
                seen.method == "POST" && seen.path == "/v1/completions",
                "{} {}",
                seen.method,
                seen.path
            );
            let act = script.lock().unwrap().pop_front().unwrap_or(Act::Ok);
            match act {
                Act::Status(code, after, text) => {
                    testing::Act::Reply(code, after.map(String::from), text.to_string())
                }
                Act::Drop => testing::Act::Drop,
                Act::Slow(d) => testing::Act::Slow(d, Box::new(complete(&seen.body, max_choices))),
                Act::Ok => complete(&seen.body, max_choices),
            }
        });
        Self {
            base: format!("{}/v1", inner.base),
            inner,
        }
    }

    /// The completion requests so far.
    fn seen(&self) -> Vec<testing::Seen> {
        self.inner
            .seen()
            .into_iter()
            .filter(|s| s.method == "POST")
            .collect()
    }

    /// Seconds between consecutive requests.
    fn gaps(&self) -> Vec<f64> {
        self.seen()
            .windows(2)
            .map(|w| (w[1].at - w[0].at).as_secs_f64())
            .collect()
    }

    fn client(&self, retries: u32, timeout: Duration, backoff: Duration) -> OpenAiLm {
        OpenAiLm::connect(OpenAiConfig {
            base_url: self.base.clone(),
            model: None,
            api_key: Some("sk-test".into()),
            concurrency: 1,
            retries,
            timeout,
            backoff,
        })
        .unwrap()
    }
}

/// A normal answer: `min(n, max_choices)` choices whose texts name the seed and index.
fn complete(body: &Value, max_choices: usize) -> testing::Act {
    let n = body["n"].as_u64().unwrap() as usize;
    let seed = body["seed"].as_u64().unwrap();
    let choices: Vec<Value> = (0..n.min(max_choices))
        .map(|i| json!({"index": i, "text": format!(" seed {seed} choice {i}")}))
        .collect();
    testing::Act::ok(json!({"object": "text_completion", "choices": choices}))
}

fn request(samples: usize) -> GenerationRequest {
    GenerationRequest {
        samples,
        max_tokens: 5,
        params: SamplingParams {
            seed: 7,
            ..Default::default()
        },
        perplexity: false,
    }
}

const FAST: Duration = Duration::from_millis(20);
const TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn a_429_with_retry_after_is_waited_out_then_succeeds() {
    let server = Server::start(vec![Act::Status(429, Some("1"), "{}")], 10);
    let lm = server.client(3, TIMEOUT, FAST);
    assert_eq!(lm.model_name(), "scripted", "the first listed model");
    let out = lm.complete("hello", 0, &request(2)).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(server.seen().len(), 2, "one refusal, one success");
    let gap = server.gaps()[0];
    println!("waited {gap:.3} s after a 429 with Retry-After: 1");
    // The backoff alone would be 10-30 ms; Retry-After asks for a second.
    assert!(
        (1.0..2.0).contains(&gap),
        "waited {gap:.3} s after Retry-After: 1"
    );
}

#[test]
fn backoff_after_503s_grows_then_succeeds() {
    let busy = Act::Status(503, None, "busy");
    let server = Server::start(vec![busy.clone(), busy.clone(), busy], 10);
    let backoff = Duration::from_millis(100);
    let lm = server.client(6, TIMEOUT, backoff);
    let out = lm.complete("hello", 0, &request(3)).unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(server.seen().len(), 4, "three refusals, one success");
    let g = server.gaps();
    println!("gaps after three 503s: {g:.3?} s");
    // Retry i waits backoff * 2^i * (0.5 .. 1.5): 50-150 ms, 100-300 ms, 200-600 ms.
    let b = backoff.as_secs_f64();
    for (i, gap) in g.iter().enumerate() {
        let base = b * 2f64.powi(i as i32);
        assert!(
            *gap >= 0.5 * base && *gap < 1.5 * base + 0.15,
            "retry {i}: waited {gap:.3} s, expected {:.3}..{:.3} s ({g:?})",
            0.5 * base,
            1.5 * base
        );
    }
    assert!(g[2] > g[0], "backoff grows: {g:?}");
}

#[test]
fn a_dropped_connection_is_retried() {
    let server = Server::start(vec![Act::Drop], 10);
    let lm = server.client(2, TIMEOUT, FAST);
    let out = lm.complete("hello", 0, &request(4)).unwrap();
    assert_eq!(out.len(), 4);
    assert_eq!(server.seen().len(), 2, "the dropped request was sent again");
    // The same request again: same prompt, same n, same seed.
    let s = server.seen();
    assert_eq!(s[0].body, s[1].body);
}

#[test]
fn a_slow_answer_times_out_after_the_timeout_not_the_servers_delay() {
    let timeout = Duration::from_millis(400);
    let server = Server::start(vec![Act::Slow(Duration::from_secs(5))], 10);
    let lm = server.client(0, timeout, FAST);
    let t = Instant::now();
    let err = lm.complete("hello", 0, &request(1)).unwrap_err();
    let took = t.elapsed().as_secs_f64();
    println!("gave up after {took:.3} s (timeout {timeout:?}, server delay 5 s): {err}");
    assert!(
        (0.35..1.5).contains(&took),
        "gave up after {took:.3} s with a {timeout:?} timeout"
    );
    let msg = err.to_string();
    assert!(msg.contains("/v1/completions"), "{msg}");
    assert!(msg.contains("timed out"), "{msg}");
    assert_eq!(msg.matches("/v1/completions").count(), 1, "{msg}");
    assert!(msg.contains("gave up after 0 retries"), "{msg}");
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn a_timed_out_request_is_retried() {
    let timeout = Duration::from_millis(400);
    let server = Server::start(vec![Act::Slow(Duration::from_secs(5))], 10);
    let lm = server.client(1, timeout, FAST);
    let t = Instant::now();
    let out = lm.complete("hello", 0, &request(2)).unwrap();
    let took = t.elapsed().as_secs_f64();
    println!("a timed-out try and a retry took {took:.3} s");
    assert_eq!(out.len(), 2);
    assert_eq!(server.seen().len(), 2);
    assert!(
        took < 2.0,
        "took {took:.3} s: the slow answer was not awaited"
    );
}

#[test]
fn running_out_of_retries_names_the_status_and_the_servers_message() {
    let busy = Act::Status(
        503,
        None,
        r#"{"error": {"message": "model is overloaded"}}"#,
    );
    let server = Server::start(vec![busy; 10], 10);
    let lm = server.client(2, TIMEOUT, FAST);
    let err = lm.complete("hello", 0, &request(1)).unwrap_err();
    assert_eq!(server.seen().len(), 3, "the first try and two retries");
    let LmError::Server { url, message } = &err else {
        panic!("expected a server error, got {err:?}")
    };
    assert_eq!(url, &format!("{}/completions", server.base));
    assert!(
        message.starts_with("HTTP 503: model is overloaded"),
        "{message}"
    );
    assert!(message.contains("gave up after 2 retries"), "{message}");
}

#[test]
fn fewer_choices_than_n_are_asked_for_again() {
    let server = Server::start(vec![], 2);
    let lm = server.client(0, TIMEOUT, FAST);
    let out = lm.complete("hello", 3, &request(5)).unwrap();
    assert_eq!(out.len(), 5);
    let seen = server.seen();
    let ns: Vec<u64> = seen.iter().map(|s| s.body["n"].as_u64().unwrap()).collect();
    assert_eq!(ns, [5, 3, 1], "each round asks for what is still missing");
    let seeds: Vec<u64> = seen
        .iter()
        .map(|s| s.body["seed"].as_u64().unwrap())
        .collect();
    assert!(
        seeds[0] != seeds[1] && seeds[1] != seeds[2] && seeds[0] != seeds[2],
        "each round has its own seed: {seeds:?}"
    );
    let texts: Vec<&str> = out.iter().map(|c| c.text.as_str()).collect();
    let mut unique = texts.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5, "no sample repeated: {texts:?}");
    for s in &seen {
        assert_eq!(s.body["model"], "scripted");
        assert_eq!(s.body["prompt"], "hello");
        assert_eq!(s.body["max_tokens"], 5);
        assert_eq!(s.auth.as_deref(), Some("Bearer sk-test"));
    }
    // The same prompt index and seed ask with the same seeds on a rerun.
    lm.complete("hello", 3, &request(5)).unwrap();
    let again: Vec<u64> = server.seen()[3..]
        .iter()
        .map(|s| s.body["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(again, seeds);
}

#[test]
fn a_4xx_is_reported_at_once_without_retrying() {
    let server = Server::start(
        vec![Act::Status(
            400,
            Some("0"),
            r#"{"error": {"message": "top_p must be in (0, 1]", "type": "invalid_request_error"}}"#,
        )],
        10,
    );
    let lm = server.client(5, TIMEOUT, Duration::from_millis(500));
    let t = Instant::now();
    let err = lm.complete("hello", 0, &request(1)).unwrap_err();
    assert!(t.elapsed() < Duration::from_millis(400), "no backoff slept");
    assert_eq!(server.seen().len(), 1, "not retried");
    let msg = err.to_string();
    assert!(msg.contains("HTTP 400: top_p must be in (0, 1]"), "{msg}");
    assert!(!msg.contains("retries"), "{msg}");
}

#[test]
fn no_server_at_the_address_is_a_clear_connection_error() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}/v1");
    let err = OpenAiLm::connect(OpenAiConfig {
        base_url: base.clone(),
        retries: 1,
        timeout: TIMEOUT,
        backoff: FAST,
        ..Default::default()
    })
    .err()
    .expect("nothing to connect to");
    let msg = err.to_string();
    println!("{msg}");
    assert!(
        msg.starts_with(&format!("{base}/models: Connection Failed: ")),
        "{msg}"
    );
    assert!(msg.contains("refused"), "{msg}");
    assert!(msg.ends_with("(gave up after 1 retries)"), "{msg}");
}

#[test]
fn a_named_model_connects_without_asking_for_the_model_list() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}/v1");
    let t = Instant::now();
    // With backoff 1 s and 3 retries, asking for /models here would take 7 s or more.
    let lm = OpenAiLm::connect(OpenAiConfig {
        base_url: base.clone(),
        model: Some("named".into()),
        retries: 3,
        timeout: TIMEOUT,
        backoff: Duration::from_secs(1),
        ..Default::default()
    })
    .unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(lm.model_name(), "named");
    // The dead server shows on the first completion, named by its address.
    let lm = OpenAiLm::connect(OpenAiConfig {
        base_url: base.clone(),
        model: Some("named".into()),
        retries: 0,
        timeout: TIMEOUT,
        backoff: FAST,
        ..Default::default()
    })
    .unwrap();
    let err = lm.complete("hi", 0, &request(1)).expect_err("no server");
    assert!(
        err.to_string()
            .starts_with(&format!("{base}/completions: ")),
        "{err}"
    );
}

#[test]
fn spares_are_asked_for_together_with_a_seed_of_their_own() {
    // The test-time filter's spares go in one request (n = their number), seeded apart from
    // the first samples and from other batches of spares, and the same again on a rerun.
    let server = Server::start(vec![], 10);
    let lm = server.client(2, TIMEOUT, FAST);
    let req = request(5);
    let mut session = lm.open("hello", 3, &req).unwrap();
    assert_eq!(session.sample(&[0, 1, 2, 3, 4]).unwrap().len(), 5);
    let spares = [spare_stream(0), spare_stream(1)];
    assert_eq!(session.sample(&spares).unwrap().len(), 2);
    let later = [spare_stream(2), spare_stream(3), spare_stream(4)];
    assert_eq!(session.sample(&later).unwrap().len(), 3);
    let mixed = [0, 1, spare_stream(5)];
    assert_eq!(session.sample(&mixed).unwrap().len(), 3);
    let again = lm.open("hello", 3, &req).unwrap().sample(&spares).unwrap();
    assert_eq!(again.len(), 2);
    let s = server.seen();
    let n: Vec<u64> = s.iter().map(|x| x.body["n"].as_u64().unwrap()).collect();
    assert_eq!(n, [5, 2, 3, 2, 1, 2], "first samples and spares apart");
    let seeds: Vec<u64> = s.iter().map(|x| x.body["seed"].as_u64().unwrap()).collect();
    assert_eq!(seeds[0], seeds[3], "the first samples are seeded as before");
    assert_eq!(
        seeds[1], seeds[5],
        "the same spares are seeded the same on a rerun"
    );
    let distinct: std::collections::BTreeSet<u64> = [seeds[0], seeds[1], seeds[2], seeds[4]]
        .into_iter()
        .collect();
    assert_eq!(
        distinct.len(),
        4,
        "each batch of spares has its own seed: {seeds:?}"
    );
}
