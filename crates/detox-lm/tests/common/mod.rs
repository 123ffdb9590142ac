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

/// The largest absolute difference between logits rows and their expected JSON rows;
/// infinity when a value is NaN/inf or the shapes differ (so every `< tol` check fails).
pub fn worst_diff(got: &[Vec<f32>], want: &Value) -> f32 {
    detox_core::compare::max_abs_diff_rows(got, &detox_core::testing::json_matrix(want))
}

/// One row of token ids as a [1, L] tensor.
pub fn row(ids: &[u32]) -> candle_core::Tensor {
    candle_core::Tensor::new(ids, &candle_core::Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
}

/// Logits at every position of `ids` in one pass from an empty cache.
pub fn full_logits(m: &dyn detox_lm::CausalLm, ids: &[u32]) -> Vec<Vec<f32>> {
    m.forward(&row(ids), &mut m.new_cache(), true)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
}

/// Every fixture sequence's logits, at every position, within 1e-4 of transformers'.
pub fn assert_logits_match(m: &dyn detox_lm::CausalLm, e: &Value) {
    for (seq, want) in e["sequences"]
        .as_array()
        .unwrap()
        .iter()
        .zip(e["logits"].as_array().unwrap())
    {
        let s = ids(seq);
        let got = full_logits(m, &s);
        assert_eq!(got.len(), s.len());
        let worst = worst_diff(&got, want);
        assert!(worst < 1e-4, "max |logit diff| {worst} on {s:?}");
    }
}

/// Prefilling `seq[..split]` and then feeding one token at a time ends with the same logits as
/// one full pass; and greedy decoding of 3 rows sharing the prompt's cache reproduces
/// transformers' greedy continuation of `sequences[0]`.
pub fn assert_cached_and_greedy_match(
    m: &dyn detox_lm::CausalLm,
    e: &Value,
    seq: &[u32],
    split: usize,
) {
    let mut cache = m.new_cache();
    let mut last = m.forward(&row(&seq[..split]), &mut cache, false).unwrap();
    for &t in &seq[split..] {
        last = m.forward(&row(&[t]), &mut cache, false).unwrap();
    }
    let full = m.forward(&row(seq), &mut m.new_cache(), false).unwrap();
    let d = (last - full)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(d < 1e-4, "{d}");
    let greedy = ids(&e["greedy"]);
    let prompt = ids(&e["sequences"][0]);
    let params = detox_lm::sampling::SamplingParams {
        temperature: 0.0,
        ..Default::default()
    };
    let out = detox_lm::generate(m, &prompt, 3, 8, &[], &params, 0).unwrap();
    for r in &out {
        assert_eq!(r.as_slice(), &greedy[prompt.len()..], "greedy continuation");
    }
}
