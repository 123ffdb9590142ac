//! What more than one of the `detox` binary's test files needs.

// Each test file uses only some of these.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A `detox` server process on loopback (`serve`, `rate serve`), killed when dropped.
pub struct Listening {
    /// The process.
    pub child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Listening {
    /// Spawns `cmd` (a server told to listen on `127.0.0.1:0`), waits for its
    /// `listening on http://ADDR` line on stderr, and keeps draining stderr so the server never
    /// blocks on a full pipe.
    pub fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let addr = loop {
            line.clear();
            assert!(
                err.read_line(&mut line).unwrap() > 0,
                "server exited before listening: {line}"
            );
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = err.read_to_string(&mut sink);
        });
        Self {
            child,
            base: format!("http://{addr}"),
            addr,
        }
    }
}

/// SmolLM2 in the model cache, if pulled (skipped locally when not; a failure when CI is set).
pub fn cached_smollm2() -> Option<PathBuf> {
    let out = Command::new(env!("CARGO_BIN_EXE_detox"))
        .args(["--offline", "models", "path", "smollm2"])
        .output()
        .ok()?;
    if !detox_core::testing::require(
        "smollm2 in the model cache (`detox models pull smollm2`)",
        out.status.success(),
    ) {
        return None;
    }
    Some(PathBuf::from(String::from_utf8(out.stdout).ok()?.trim()))
}
