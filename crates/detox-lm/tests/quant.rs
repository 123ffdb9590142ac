//! Quantized GGUF files (Q4_0, Q4_1, Q8_0) against llama.cpp, in both weight modes, on tiny
//! random llamas written by `scripts/make_lm_fixtures.py --quant` (64 wide, two blocks, every
//! matrix including the tied token embedding quantized, norms f32).
//!
//! The fixture holds two references per file: the logits llama.cpp (`llama-cpp-python`, f32 KV
//! cache) computes, and those of transformers on the *dequantized* weights. They differ by
//! 0.24 (Q4_0), 0.28 (Q4_1) and 0.27 (Q8_0) at most, with logits up to 21: llama.cpp rounds
//! the activations entering every quantized product to 8-bit blocks of 32 (`ggml_vec_dot_q4_0_q8_0`,
//! `_q4_1_q8_1`, `_q8_0_q8_0` in ggml-cpu's quants.c; Q8_1 also keeps each block's sum as f16).
//! The script shows that this rounding is the whole gap: transformers with every linear
//! layer's input rounded that way matches llama.cpp to 6e-6 (`measured` in the fixture), and
//! llama.cpp on the same dequantized weights stored as f32 matches the float reference to
//! 1.5e-5. Hence the tolerances (measured with `cargo test -p detox-lm --test quant -- --nocapture`):
//! - `WeightMode::F32` dequantizes and multiplies in f32, as the float reference does:
//!   within [`F32_VS_FLOAT`] of it, and as far from llama.cpp as the float reference is
//!   (the fixture's measured gap, within [`F32_VS_FLOAT`]).
//! - `WeightMode::AsStored` runs candle's `QMatMul`, which rounds activations the same way
//!   (`BlockQ8_0` / `BlockQ8_1` in candle-core 0.11's `quantized/k_quants.rs`): Q4_0 and Q8_0
//!   within [`AS_STORED_VS_LLAMA_CPP`] of llama.cpp (measured 1.9e-6 and 9.5e-7). For Q4_1,
//!   candle keeps each Q8_1 block's sum as `f16(sum) * f16(d)` where ggml keeps `f16(d * sum)`
//!   (d unrounded): a difference in candle, not detox, that moves the logits by 0.23. The
//!   script measures what that rounding alone does (`llama_cpp_vs_same_with_candle_q8_1_sums`:
//!   the float reference with candle's sums, against llama.cpp), and the as-stored mode must
//!   be that far from llama.cpp, within [`AS_STORED_VS_LLAMA_CPP`] (measured 6e-7 apart).

mod common;

use candle_core::quantized::{gguf_file, GgmlDType};
use candle_core::Device;
use common::{fixture, full_logits, ids};
use detox_core::compare::max_abs_diff_rows;
use detox_lm::llama::WeightMode;
use detox_lm::local::LocalLm;
use detox_lm::sampling::SamplingParams;
use serde_json::Value;

/// f32 mode against transformers on the dequantized weights (the bound the f32 fixtures use;
/// measured at most 8.6e-6).
const F32_VS_FLOAT: f32 = 1e-4;
/// As-stored mode against llama.cpp, beyond the difference candle's Q8_1 sums make (measured
/// at most 3.8e-6).
const AS_STORED_VS_LLAMA_CPP: f32 = 1e-4;

const QUANTS: [(&str, GgmlDType); 3] = [
    ("Q4_0", GgmlDType::Q4_0),
    ("Q4_1", GgmlDType::Q4_1),
    ("Q8_0", GgmlDType::Q8_0),
];

fn expected() -> Value {
    common::expected("tiny-llama-quant")
}

fn rows(v: &Value) -> Vec<Vec<f32>> {
    detox_core::testing::json_matrix(v)
}

fn load(q: &Value, mode: WeightMode) -> LocalLm {
    LocalLm::load_with(
        &fixture(q["file"].as_str().unwrap()),
        &Device::Cpu,
        mode,
        None,
    )
    .unwrap()
}

/// The largest difference, over every fixture sequence and position, between the model's
/// logits (one pass from an empty cache) and the fixture's `field`.
fn worst(lm: &LocalLm, e: &Value, q: &Value, field: &str) -> f32 {
    let mut worst = 0f32;
    for (seq, want) in e["sequences"]
        .as_array()
        .unwrap()
        .iter()
        .zip(q[field].as_array().unwrap())
    {
        let s = ids(seq);
        let got = full_logits(lm.model(), &s);
        assert_eq!(got.len(), s.len());
        let d = max_abs_diff_rows(&got, &rows(want));
        if d > worst || d.is_nan() {
            worst = d;
        }
    }
    worst
}

fn greedy(lm: &LocalLm, prompt: &[u32], n: usize) -> Vec<Vec<u32>> {
    let params = SamplingParams {
        temperature: 0.0,
        ..Default::default()
    };
    detox_lm::generate(lm.model(), prompt, 2, n, &[], &params, 0).unwrap()
}

/// How far llama.cpp is from the float reference with candle's Q8_1 block sums (zero but for
/// summation order where no Q8_1 is involved).
fn candle_q8_1_gap(q: &Value) -> f32 {
    q["measured"]["llama_cpp_vs_same_with_candle_q8_1_sums"]
        .as_f64()
        .unwrap() as f32
}

#[test]
fn fixtures_store_their_matrices_quantized_and_norms_f32() {
    let e = expected();
    for (name, dtype) in QUANTS {
        let path = fixture(e["quants"][name]["file"].as_str().unwrap());
        let c = gguf_file::Content::read(&mut std::fs::File::open(&path).unwrap()).unwrap();
        for (t, info) in &c.tensor_infos {
            let want = if t.ends_with("norm.weight") {
                GgmlDType::F32
            } else {
                dtype
            };
            assert_eq!(info.ggml_dtype, want, "{name}: {t}");
        }
        assert_eq!(c.tensor_infos.len(), 2 * 9 + 2, "{name}: tensor count");
    }
}

#[test]
fn f32_mode_matches_the_dequantized_float_reference() {
    let e = expected();
    for (name, _) in QUANTS {
        let q = &e["quants"][name];
        let lm = load(q, WeightMode::F32);
        let vs_float = worst(&lm, &e, q, "dequantized_float");
        let vs_cpp = worst(&lm, &e, q, "llama_cpp");
        let gap = q["measured"]["llama_cpp_vs_dequantized_float"]
            .as_f64()
            .unwrap() as f32;
        println!(
            "{name} f32: vs float {vs_float:e}, vs llama.cpp {vs_cpp} (float vs llama.cpp {gap})"
        );
        assert!(vs_float <= F32_VS_FLOAT, "{name} f32 vs float: {vs_float}");
        // As far from llama.cpp as the float reference: activation rounding, nothing else.
        assert!(
            (vs_cpp - gap).abs() <= F32_VS_FLOAT,
            "{name} f32 vs llama.cpp: {vs_cpp}, float reference vs llama.cpp: {gap}"
        );
    }
}

#[test]
fn as_stored_mode_matches_llama_cpp() {
    let e = expected();
    for (name, _) in QUANTS {
        let q = &e["quants"][name];
        let lm = load(q, WeightMode::AsStored);
        let vs_cpp = worst(&lm, &e, q, "llama_cpp");
        let vs_float = worst(&lm, &e, q, "dequantized_float");
        let predicted = candle_q8_1_gap(q);
        println!("{name} as stored: vs llama.cpp {vs_cpp:e} (predicted {predicted:e}), vs float {vs_float}");
        assert!(
            (vs_cpp - predicted).abs() <= AS_STORED_VS_LLAMA_CPP,
            "{name} as stored vs llama.cpp: {vs_cpp}, predicted from candle's Q8_1 sums: {predicted}"
        );
        if name != "Q4_1" {
            assert!(vs_cpp <= AS_STORED_VS_LLAMA_CPP, "{name}: {vs_cpp}");
        }
    }
}

#[test]
fn greedy_continuations_match_their_references() {
    // Each mode's greedy continuation against the reference it follows, where the fixture's
    // smallest top-1/top-2 margin on the way is over ten times that mode's distance to it
    // (not so for Q4_1 as stored, 0.23 from llama.cpp with a margin of 0.037). For Q4_1 the
    // activation rounding changes the greedy choice: llama.cpp continues with another token
    // than the float reference (and the f32 mode).
    let e = expected();
    let prompt = ids(&e["greedy_prompt"]);
    let mut compared = 0;
    for (name, _) in QUANTS {
        let q = &e["quants"][name];
        for (mode, field, tol) in [
            (
                WeightMode::AsStored,
                "greedy",
                AS_STORED_VS_LLAMA_CPP + candle_q8_1_gap(q),
            ),
            (WeightMode::F32, "dequantized_float_greedy", F32_VS_FLOAT),
        ] {
            let want = ids(&q[field]);
            let margin = q[format!("{field}_min_margin")].as_f64().unwrap() as f32;
            if margin <= 10.0 * tol {
                println!("{name} {mode:?}: greedy not compared (margin {margin}, distance {tol})");
                continue;
            }
            compared += 1;
            let n = want.len() - prompt.len();
            for row in greedy(&load(q, mode), &prompt, n) {
                assert_eq!(row, &want[prompt.len()..], "{name} {mode:?}");
            }
        }
    }
    assert_eq!(compared, 5, "greedy continuations compared");
}
