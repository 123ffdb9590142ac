//! Helpers shared by the parity tests: fixture paths and the expected outputs of
//! `scripts/make_lm_fixtures.py`.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};

/// A file under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A fixture's expected outputs (`NAME-expected.json`).
pub fn expected(name: &str) -> Value {
    let p = fixture(&format!("{name}-expected.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// A JSON array of token ids.
pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The largest absolute difference between logits rows and their expected JSON rows.
pub fn worst_diff(got: &[Vec<f32>], want: &Value) -> f32 {
    let mut worst = 0f32;
    for (g, w) in got.iter().zip(want.as_array().unwrap()) {
        for (a, b) in g.iter().zip(w.as_array().unwrap()) {
            worst = worst.max((a - b.as_f64().unwrap() as f32).abs());
        }
    }
    worst
}
