//! A loopback HTTP server that misbehaves on purpose, for the tests of detox's remote parts
//! (feature `testing`): each request is read whole and handed to a function that decides what
//! the server does, so a test can script 429s with `Retry-After`, 5xx, dropped connections and
//! slow answers over a real socket. Plain `std::net`, a thread per connection, each closed
//! after its answer; every request is recorded with when it arrived.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When it arrived (after its body was read).
    pub at: Instant,
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path with its query (`/v1/score?key=...`).
    pub path: String,
    /// The `Authorization` header, if any.
    pub auth: Option<String>,
    /// The body, parsed as JSON (`Null` when it is not).
    pub body: Value,
}

/// What the server does with a request.
#[derive(Debug, Clone)]
pub enum Act {
    /// Answers with this status, an optional `Retry-After` value, and a body.
    Reply(u16, Option<String>, String),
    /// Closes the connection without a word.
    Drop,
    /// Waits, then does the inner act.
    Slow(Duration, Box<Act>),
}

impl Act {
    /// A 200 with this JSON body.
    pub fn ok(body: Value) -> Self {
        Self::Reply(200, None, body.to_string())
    }

    /// An error status with a Google/OpenAI-shaped message.
    pub fn status(code: u16, message: &str) -> Self {
        Self::Reply(
            code,
            None,
            serde_json::json!({"error": {"message": message}}).to_string(),
        )
    }
}

/// The function that decides: the request, and how many requests came before it.
pub type Handler = dyn Fn(&Seen, usize) -> Act + Send + Sync;

/// A running server (it lives until the test process ends).
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// Starts a server that answers every request as `handler` says.
    pub fn start(handler: impl Fn(&Seen, usize) -> Act + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let handler: Arc<Handler> = Arc::new(handler);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (log, handler) = (log.clone(), handler.clone());
                std::thread::spawn(move || answer(stream, &log, handler.as_ref()));
            }
        });
        Self {
            base: format!("http://{addr}"),
            seen,
        }
    }

    /// The requests so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many requests came.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn respond(stream: &mut TcpStream, status: u16, retry_after: Option<&str>, body: &str) {
    let extra = retry_after
        .map(|a| format!("Retry-After: {a}\r\n"))
        .unwrap_or_default();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

fn act(stream: &mut TcpStream, a: Act) {
    match a {
        Act::Reply(code, after, body) => respond(stream, code, after.as_deref(), &body),
        Act::Drop => {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        Act::Slow(d, inner) => {
            std::thread::sleep(d);
            act(stream, *inner);
        }
    }
}

fn answer(mut stream: TcpStream, log: &Mutex<Vec<Seen>>, handler: &Handler) {
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut len = 0usize;
    let mut auth = None;
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
            break;
        }
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("authorization:") {
            auth = Some(l["authorization:".len()..].trim().to_string());
        }
    }
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let seen = Seen {
        at: Instant::now(),
        method,
        path,
        auth,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let n = {
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        log.push(seen.clone());
        log.len() - 1
    };
    act(&mut stream, handler(&seen, n));
}
