//! Remote scorers against a loopback server that misbehaves on purpose
//! (`detox_http::testing`): 429s with `Retry-After`, 5xx, slow answers, dropped connections,
//! refused keys, the client-side rate limit, and the SQLite cache. No test leaves loopback.

use detox_core::Scorer;
use detox_http::testing::{Act, Seen, Server};
use detox_http::Retry;
use detox_remote::cache::Cache;
use detox_remote::{CacheChoice, RemoteOptions, RemoteScorer, RemoteSpec};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A Perspective answer: TOXICITY = the text's length / 100, the other attributes half that.
fn perspective(seen: &Seen) -> Act {
    let text = seen.body["comment"]["text"].as_str().unwrap_or_default();
    let v = (text.len() as f64 / 100.0).min(1.0);
    let mut scores = serde_json::Map::new();
    for (name, _) in seen.body["requestedAttributes"].as_object().unwrap() {
        let x = if name == "TOXICITY" { v } else { v / 2.0 };
        scores.insert(
            name.clone(),
            json!({"summaryScore": {"value": x, "type": "PROBABILITY"}}),
        );
    }
    Act::ok(json!({"attributeScores": scores}))
}

fn text_of(seen: &Seen) -> &str {
    seen.body["comment"]["text"].as_str().unwrap_or_default()
}

fn options(retries: u32) -> RemoteOptions {
    RemoteOptions {
        api_key: Some("secret-key".into()),
        qps: Some(0.0),
        concurrency: 2,
        retry: Retry {
            retries,
            backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
        },
        timeout: Duration::from_secs(10),
        cache: CacheChoice::Off,
        attributes: Some(vec!["toxicity".into(), "insult".into()]),
        languages: Vec::new(),
    }
}

fn scorer(server: &Server, opts: &RemoteOptions) -> RemoteScorer {
    let spec = RemoteSpec::parse(&format!("perspective:{}", server.base))
        .unwrap()
        .unwrap();
    RemoteScorer::connect(&spec, opts).unwrap()
}

#[test]
fn scores_come_back_in_order_with_the_key_in_the_query_and_duplicates_asked_once() {
    let server = Server::start(|s, _| perspective(s));
    let s = scorer(&server, &options(0));
    assert_eq!(s.info().attributes, ["toxicity", "insult"]);
    let texts = ["a".repeat(10), "b".repeat(40), "a".repeat(10), "  ".into()];
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let out = s.score(&refs).unwrap();
    assert_eq!(out[0].values, vec![0.1, 0.05]);
    assert_eq!(out[1].values, vec![0.4, 0.2]);
    assert_eq!(out[2].values, out[0].values);
    // Whitespace is not sent: no score.
    assert!(out[3].values.iter().all(|v| v.is_nan()));
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "each distinct non-empty text once");
    for r in &seen {
        assert!(
            r.path
                .starts_with("/v1alpha1/comments:analyze?key=secret-key"),
            "{}",
            r.path
        );
        assert_eq!(r.body["doNotStore"], true);
        assert!(r.body["requestedAttributes"]["INSULT"].is_object());
    }
}

#[test]
fn a_429_with_retry_after_is_waited_out() {
    let server = Server::start(|s, n| {
        if n == 0 {
            Act::Reply(
                429,
                Some("1".into()),
                json!({"error": {"message": "quota"}}).to_string(),
            )
        } else {
            perspective(s)
        }
    });
    let s = scorer(&server, &options(3));
    let t = Instant::now();
    let out = s.score(&["hello"]).unwrap();
    assert_eq!(out[0].values[0], 0.05);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let gap = (seen[1].at - seen[0].at).as_secs_f64();
    assert!(gap >= 0.95, "Retry-After: 1 was honoured: {gap}");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn errors_5xx_slow_answers_and_dropped_connections_are_retried() {
    let server = Server::start(|s, n| match n {
        0 => Act::status(500, "boom"),
        1 => Act::status(503, "busy"),
        2 => Act::Drop,
        3 => Act::Slow(Duration::from_secs(3), Box::new(perspective(s))),
        _ => perspective(s),
    });
    let mut opts = options(5);
    opts.concurrency = 1;
    opts.timeout = Duration::from_millis(500);
    let s = scorer(&server, &opts);
    let t = Instant::now();
    let out = s.score(&["hello"]).unwrap();
    assert_eq!(out[0].values[0], 0.05);
    assert_eq!(server.count(), 5);
    // The slow answer was cut at the client's timeout, not waited for.
    assert!(
        t.elapsed() < Duration::from_millis(2900),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn a_text_that_keeps_failing_gets_its_own_error_and_the_others_their_scores() {
    let server = Server::start(|s, _| {
        if text_of(s).contains("doomed") {
            Act::status(503, "the model is overloaded")
        } else {
            perspective(s)
        }
    });
    let s = scorer(&server, &options(2));
    let out = s.score_each(&["fine", "doomed text", "also fine"]).unwrap();
    assert_eq!(out[0].as_ref().unwrap().values[0], 0.04);
    assert_eq!(out[2].as_ref().unwrap().values[0], 0.09);
    let e = out[1].as_ref().unwrap_err().to_string();
    assert!(
        e.contains("503") && e.contains("overloaded") && e.contains("gave up after 2 retries"),
        "{e}"
    );
    assert!(!e.contains("secret-key"), "the key never appears: {e}");
    // Three tries for the doomed text, one each for the others.
    assert_eq!(server.count(), 5);
    // The batch call fails as a whole, naming the cause.
    assert!(s.score(&["doomed"]).is_err());
    // A 400 about the text is that text's error at once, without retries.
    let server = Server::start(|s, _| {
        if text_of(s).len() > 20 {
            Act::status(400, "Comment text too long.")
        } else {
            perspective(s)
        }
    });
    let s = scorer(&server, &options(3));
    let out = s.score_each(&["short", &"x".repeat(30)]).unwrap();
    assert!(out[0].is_ok());
    assert!(out[1]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("too long"));
    assert_eq!(server.count(), 2);
}

#[test]
fn a_refused_key_stops_the_whole_batch() {
    let server = Server::start(|_, _| Act::status(403, "API key not valid."));
    let s = scorer(&server, &options(3));
    let e = s.score_each(&["a", "b", "c"]).unwrap_err().to_string();
    assert!(
        e.contains("refused") && e.contains("PERSPECTIVE_API_KEY"),
        "{e}"
    );
    assert!(
        server.count() <= 2,
        "no retries and no more texts: {}",
        server.count()
    );
}

#[test]
fn the_rate_limit_spaces_requests_across_concurrent_workers() {
    let server = Server::start(|s, _| perspective(s));
    let mut opts = options(0);
    opts.qps = Some(10.0);
    opts.concurrency = 4;
    let s = scorer(&server, &opts);
    let texts: Vec<String> = (0..6).map(|i| format!("text {i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    s.score(&refs).unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 6);
    let span = (seen[5].at - seen[0].at).as_secs_f64();
    assert!(
        span >= 0.45,
        "six requests at 10 per second span 0.5 s: {span}"
    );
}

#[test]
fn answers_are_cached_so_a_rerun_asks_only_for_what_failed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.sqlite");
    let flaky = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let f = flaky.clone();
    let server = Server::start(move |s, _| {
        if text_of(s).contains("unlucky") && f.load(std::sync::atomic::Ordering::SeqCst) {
            Act::status(502, "bad gateway")
        } else {
            perspective(s)
        }
    });
    let mut opts = options(0);
    opts.cache = CacheChoice::File(path.clone());
    let texts = ["one", "two", "unlucky"];
    let first = scorer(&server, &opts).score_each(&texts).unwrap();
    assert!(first[2].is_err());
    assert_eq!(server.count(), 3);
    // Committed as they arrived: the two answers are in the file.
    assert_eq!(Cache::open(&path).unwrap().len().unwrap(), 2);
    flaky.store(false, std::sync::atomic::Ordering::SeqCst);
    let again = scorer(&server, &opts);
    let second = again.score_each(&texts).unwrap();
    assert_eq!(server.count(), 4, "only the failed text is asked again");
    assert_eq!(again.cached(), 2);
    assert_eq!(
        second[0].as_ref().unwrap().values,
        first[0].as_ref().unwrap().values
    );
    assert!(second[2].is_ok());
    // Another attribute set is another answer; --no-cache asks for everything.
    let mut other = opts.clone();
    other.attributes = Some(vec!["toxicity".into()]);
    scorer(&server, &other).score(&["one"]).unwrap();
    assert_eq!(server.count(), 5);
    let mut off = opts.clone();
    off.cache = CacheChoice::Off;
    scorer(&server, &off).score(&["one", "two"]).unwrap();
    assert_eq!(server.count(), 7);
}

#[test]
fn openai_and_detox_servers_are_asked_in_groups_with_a_bearer_key() {
    let server = Server::start(|s, _| {
        if s.method == "GET" {
            return Act::ok(
                json!({"status": "ok", "scorer": "fast", "attributes": ["toxicity", "threat"]}),
            );
        }
        let n = s.body["input"]
            .as_array()
            .or(s.body["texts"].as_array())
            .map_or(0, Vec::len);
        if s.path.ends_with("/moderations") {
            let r: Vec<Value> = (0..n)
                .map(
                    |i| json!({"category_scores": {"harassment": 0.1 * i as f64, "violence": 0.5}}),
                )
                .collect();
            Act::ok(json!({"results": r}))
        } else {
            let r: Vec<Value> = (0..n)
                .map(|i| json!({"scores": {"toxicity": 0.1 * i as f64, "threat": 0.25}}))
                .collect();
            Act::ok(json!({"results": r}))
        }
    });
    let mut opts = options(0);
    opts.attributes = None;
    let texts: Vec<String> = (0..40).map(|i| format!("text {i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let spec = RemoteSpec::parse(&format!("openai-moderation:{}/v1", server.base))
        .unwrap()
        .unwrap();
    let s = RemoteScorer::connect(&spec, &opts).unwrap();
    let out = s.score(&refs).unwrap();
    assert_eq!(out.len(), 40);
    // toxicity = the largest category, insult = harassment, threat = max(violence, ...).
    assert_eq!(out[1].values[..4], [0.5, 0.0, 0.1, 0.5]);
    assert_eq!(server.count(), 2, "32 + 8 texts");
    let seen = server.seen();
    assert_eq!(seen[0].auth.as_deref(), Some("Bearer secret-key"));
    let mut sizes: Vec<usize> = seen
        .iter()
        .map(|r| r.body["input"].as_array().unwrap().len())
        .collect();
    sizes.sort();
    assert_eq!(sizes, [8, 32]);

    let spec = RemoteSpec::parse(&format!("detox:{}", server.base))
        .unwrap()
        .unwrap();
    let s = RemoteScorer::connect(&spec, &opts).unwrap();
    assert_eq!(s.info().attributes, ["toxicity", "threat"]);
    assert!(s.info().description.contains("`fast`"));
    let out = s.score(&refs[..3]).unwrap();
    assert_eq!(out[2].values, vec![0.2, 0.25]);
    let mut bad = opts.clone();
    bad.attributes = Some(vec!["insult".into()]);
    let e = RemoteScorer::connect(&spec, &bad).unwrap_err().to_string();
    assert!(
        e.contains("no attribute `insult`") && e.contains("toxicity, threat"),
        "{e}"
    );
}
