//! `detox rate` end to end: a real server process over loopback, a real SQLite file, and a real
//! browser (headless Chromium through chromedriver's WebDriver API) rating with the keyboard.
//! The browser test skips with a message where Chromium or chromedriver is missing (and fails
//! in CI, whose `.ci/run` installs them).

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

fn detox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_detox"))
        .args(args)
        .output()
        .unwrap()
}

fn serve(db: &Path, extra: &[&str]) -> common::Listening {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_detox"));
    cmd.args(["rate", "serve", "--addr", "127.0.0.1:0", "--db"])
        .arg(db)
        .args(extra);
    common::Listening::start(cmd)
}

const ITEMS: usize = 8;

fn items_file(dir: &Path) -> PathBuf {
    let p = dir.join("items.jsonl");
    let mut s = String::new();
    for i in 0..ITEMS {
        s.push_str(&format!(
            "{}\n",
            json!({"context": format!("Prompt number {i} says"), "text": format!(" continuation {i}"), "method": if i % 2 == 0 { "base" } else { "sd" }, "score": i as f64 / ITEMS as f64})
        ));
    }
    std::fs::write(&p, s).unwrap();
    p
}

fn add_rater(db: &Path, name: &str, base: &str) -> (String, String) {
    let out = detox(&[
        "rate",
        "add-rater",
        name,
        "--db",
        db.to_str().unwrap(),
        "--url",
        base,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let token = link.rsplit('/').next().unwrap().to_string();
    (link, token)
}

/// A response's JSON body (`Null` when it has none).
fn body(r: ureq::Response) -> Value {
    r.into_string()
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

fn post(url: &str, body_text: &str) -> (u16, Value) {
    match ureq::post(url)
        .set("Content-Type", "application/json")
        .send_string(body_text)
    {
        Ok(r) => (r.status(), body(r)),
        Err(ureq::Error::Status(code, r)) => (code, body(r)),
        Err(e) => panic!("{url}: {e}"),
    }
}

fn export(db: &Path) -> Vec<Value> {
    let out = detox(&[
        "rate",
        "export",
        "--db",
        db.to_str().unwrap(),
        "--format",
        "jsonl",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn bad_submissions_get_4xx_resends_are_stored_once_and_a_killed_server_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("ratings.sqlite");
    let items = items_file(tmp.path());
    let server = serve(&db, &["--items", items.to_str().unwrap()]);
    let (_, token) = add_rater(&db, "ann", &server.base);
    let (_, other) = add_rater(&db, "bob", &server.base);
    let api = |t: &str, p: &str| format!("{}/api/{t}{p}", server.base);

    // The state hides method and score.
    let state = body(ureq::get(&api(&token, "/state")).call().unwrap());
    assert_eq!(state["items"].as_array().unwrap().len(), ITEMS);
    let shown = state.to_string();
    assert!(
        !shown.contains("\"method\"") && !shown.contains("\"score\"") && !shown.contains("base")
    );
    // An unknown token: 403 on the page and the API.
    let page = ureq::get(&format!("{}/r/nope", server.base)).call();
    assert!(matches!(page, Err(ureq::Error::Status(403, _))));
    assert_eq!(
        post(
            &api("nope", "/rate"),
            r#"{"item":1,"answer":"toxic","submission":"x"}"#
        )
        .0,
        403
    );
    // Malformed, off the scale, unknown item, too large: 4xx with a message.
    for (body, code, says) in [
        ("not json", 400, "expected"),
        (
            r#"{"item":1,"answer":"purple","submission":"a"}"#,
            400,
            "not on the scale",
        ),
        (r#"{"item":1,"answer":"toxic"}"#, 400, "submission"),
        (
            r#"{"item":999,"answer":"toxic","submission":"b"}"#,
            404,
            "no item 999",
        ),
        (
            r#"{"item":1,"answer":"toxic","submission":"","extra":1}"#,
            400,
            "unknown field",
        ),
    ] {
        let (c, v) = post(&api(&token, "/rate"), body);
        assert_eq!(c, code, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{body}: {v}");
    }
    // A body over the limit is refused: a 413, or (when the server answers and closes before
    // the client has sent it all) a connection the server cut; either way nothing is stored.
    let big = format!(
        r#"{{"item":1,"answer":"toxic","submission":"big{}"}}"#,
        "x".repeat(40_000)
    );
    match ureq::post(&api(&token, "/rate")).send_string(&big) {
        Err(ureq::Error::Status(code, _)) => assert_eq!(code, 413),
        Err(ureq::Error::Transport(_)) => {}
        Ok(r) => panic!("a {}-byte body was accepted: {}", big.len(), r.status()),
    }
    assert_eq!(
        post(&api(&token, "/undo"), r#"{"submission":"u0"}"#).0,
        409,
        "nothing to undo"
    );
    // A resend is stored once; the same id for something else is a conflict.
    let ok = r#"{"item":1,"answer":"toxic","submission":"s1"}"#;
    assert_eq!(post(&api(&token, "/rate"), ok).1["stored"], true);
    assert_eq!(post(&api(&token, "/rate"), ok).1["stored"], false);
    assert_eq!(
        post(
            &api(&token, "/rate"),
            r#"{"item":2,"answer":"toxic","submission":"s1"}"#
        )
        .0,
        409
    );
    assert_eq!(export(&db).len(), 1);
    // Two raters at once.
    std::thread::scope(|s| {
        for (t, who) in [(&token, "a"), (&other, "b")] {
            let url = api(t, "/rate");
            s.spawn(move || {
                for i in 2..=ITEMS {
                    let body =
                        format!(r#"{{"item":{i},"answer":"not_toxic","submission":"{who}{i}"}}"#);
                    assert_eq!(post(&url, &body).0, 200);
                }
            });
        }
    });
    assert_eq!(export(&db).len(), 1 + 2 * (ITEMS - 1));
    // Killed without warning right after an acknowledged rating: nothing lost.
    assert_eq!(
        post(
            &api(&other, "/rate"),
            r#"{"item":1,"answer":"very_toxic","submission":"last"}"#
        )
        .0,
        200
    );
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let rows = export(&db);
    assert_eq!(rows.len(), 2 + 2 * (ITEMS - 1));
    assert!(rows
        .iter()
        .any(|r| r["rater"] == "bob" && r["item"] == 1 && r["answer"] == "very_toxic"));
    // Restarted on the same database (no item options): the same state.
    let again = serve(&db, &[]);
    let state = body(
        ureq::get(&format!("{}/api/{token}/state", again.base))
            .call()
            .unwrap(),
    );
    assert_eq!(state["answers"].as_object().unwrap().len(), ITEMS);
    // Another draw on the same database is refused.
    let out = detox(&[
        "rate",
        "serve",
        "--db",
        db.to_str().unwrap(),
        "--items",
        tmp.path().join("ratings.sqlite").to_str().unwrap(),
        "--addr",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    // Statistics and CSV export.
    let html = tmp.path().join("stats.html");
    let out = detox(&[
        "rate",
        "stats",
        "--db",
        db.to_str().unwrap(),
        "--format",
        "json",
        "--resamples",
        "100",
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(&html).unwrap().contains("<svg"));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["raters"], 2);
    assert_eq!(r["items_rated_twice"], ITEMS);
    assert_eq!(r["methods"][0]["method"], "base");
    let csv = detox(&["rate", "export", "--db", db.to_str().unwrap()]);
    let csv = String::from_utf8(csv.stdout).unwrap();
    assert!(
        csv.starts_with("submission_id,rater,item,kind,answer,value"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 1 + 2 + 2 * (ITEMS - 1));
}

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

/// A WebDriver session on a chromedriver process.
struct Browser {
    driver: Child,
    url: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&self.url).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    fn start(chromium: &Path, driver: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1000,800"]
        }}}});
        let v = body(
            ureq::post(&format!("{base}/session"))
                .send_string(&caps.to_string())
                .unwrap(),
        );
        let id = v["value"]["sessionId"].as_str().unwrap().to_string();
        Browser {
            driver: child,
            url: format!("{base}/session/{id}"),
        }
    }

    fn cmd(&self, path: &str, json: Value) -> Value {
        let v = body(
            ureq::post(&format!("{}{path}", self.url))
                .send_string(&json.to_string())
                .unwrap(),
        );
        v["value"].clone()
    }

    fn js(&self, script: &str) -> Value {
        self.cmd("/execute/sync", json!({"script": script, "args": []}))
    }

    fn key(&self, k: &str) {
        self.cmd(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": k}, {"type": "keyUp", "value": k}]}]}),
        );
    }

    /// Waits until `script` returns `want`.
    fn until(&self, script: &str, want: &Value) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.js(script);
            if &got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{script}: {got} (waiting for {want})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

const PROGRESS: &str = "return document.getElementById('progress-text').textContent";
const SHOWN: &str = "return document.getElementById('rating').hidden ? null : document.getElementById('continuation').textContent";

#[test]
fn a_rater_rates_five_items_with_the_keyboard_in_a_real_browser_reloads_and_undoes() {
    let chromium = on_path(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = on_path(&["chromedriver"]);
    if !detox_core::testing::require(
        "Chromium and chromedriver (`apt-get install chromium chromium-driver`)",
        chromium.is_some() && driver.is_some(),
    ) {
        return;
    }
    let (chromium, driver) = (chromium.unwrap(), driver.unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("ratings.sqlite");
    let items = items_file(tmp.path());
    let server = serve(&db, &["--items", items.to_str().unwrap()]);
    let (link, _) = add_rater(&db, "ann", &server.base);
    let b = Browser::start(&chromium, &driver);
    b.cmd("/url", json!({"url": link}));
    // The content warning comes first; Enter on its focused button starts.
    b.until(
        "return document.getElementById('warning').hidden",
        &json!(false),
    );
    b.until("return document.activeElement.id", &json!("start"));
    b.key("\u{E007}");
    b.until(PROGRESS, &json!(format!("0 of {ITEMS} rated")));
    let keys = ["1", "3", "4", "2", "5"];
    let answers = ["not_toxic", "toxic", "very_toxic", "unsure", "cannot_judge"];
    let mut rated: Vec<String> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let text = b.js(SHOWN).as_str().unwrap().to_string();
        assert!(!rated.contains(&text), "a new item each time");
        b.key(k);
        b.until(PROGRESS, &json!(format!("{} of {ITEMS} rated", i + 1)));
        rated.push(text);
    }
    // Arrows move between items without rating.
    let here = b.js(SHOWN);
    b.key("\u{E012}");
    b.until(SHOWN, &json!(rated[4]));
    b.key("\u{E014}");
    b.until(SHOWN, &here);
    // Reloaded: the progress is kept, no warning, and the next open item is shown.
    b.cmd("/refresh", json!({}));
    b.until(PROGRESS, &json!(format!("5 of {ITEMS} rated")));
    assert_eq!(
        b.js("return document.getElementById('warning').hidden"),
        json!(true)
    );
    assert!(!rated.contains(&b.js(SHOWN).as_str().unwrap().to_string()));
    // u takes back the last answer and shows its item.
    b.key("u");
    b.until(PROGRESS, &json!(format!("4 of {ITEMS} rated")));
    b.until(SHOWN, &json!(rated[4]));
    // The database holds what was pressed, the undo, and the history.
    let rows = export(&db);
    assert_eq!(rows.len(), 6);
    for (text, answer) in rated.iter().zip(answers) {
        let row = rows
            .iter()
            .find(|r| r["kind"] == "rate" && r["text"].as_str() == Some(text.as_str()))
            .unwrap_or_else(|| panic!("{text} in {rows:?}"));
        assert_eq!(row["answer"], answer, "{text}");
        assert_eq!(row["current"], answer != "cannot_judge", "{text}");
    }
    assert_eq!(rows[5]["kind"], "undo");
    // A phone-sized window still shows the whole scale.
    b.cmd("/window/rect", json!({"width": 390, "height": 844}));
    let fits = b.js("const r = document.querySelector('.choices').getBoundingClientRect(); return r.right <= window.innerWidth && r.left >= 0");
    assert_eq!(fits, json!(true));
}
