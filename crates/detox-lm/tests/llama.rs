//! The GGUF llama code against PyTorch `transformers` on a tiny random llama
//! (fixtures made by `scripts/make_lm_fixtures.py`).

mod common;

use candle_core::{Device, Tensor};
use common::{fixture, ids};
use detox_lm::llama::{Llama, WeightMode};
use detox_lm::sampling::SamplingParams;
use detox_lm::CausalLm;
use serde_json::Value;

fn expected() -> Value {
    common::expected("tiny-llama")
}

fn model() -> Llama {
    Llama::load(&fixture("tiny-llama.gguf"), &Device::Cpu).unwrap()
}

#[test]
fn logits_at_every_position_match_transformers() {
    let m = model();
    assert_eq!(
        (
            m.config.layers,
            m.config.heads,
            m.config.kv_heads,
            m.config.vocab
        ),
        (2, 4, 2, 96)
    );
    common::assert_logits_match(&m, &expected());
}

#[test]
fn f32_weight_mode_gives_the_same_logits() {
    // WeightMode::F32 runs the dense (W x^T)^T product instead of candle's QMatMul.
    let dense =
        Llama::load_with(&fixture("tiny-llama.gguf"), &Device::Cpu, WeightMode::F32).unwrap();
    let e = expected();
    for (seq, want) in e["sequences"]
        .as_array()
        .unwrap()
        .iter()
        .zip(e["logits"].as_array().unwrap())
    {
        let s = ids(seq);
        let x = Tensor::new(s.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap()
            .repeat((3, 1))
            .unwrap();
        let got = dense
            .forward(&x, &mut dense.new_cache(), true)
            .unwrap()
            .to_vec3::<f32>()
            .unwrap();
        for row in &got {
            for (g, w) in row.iter().zip(want.as_array().unwrap()) {
                for (a, b) in g.iter().zip(w.as_array().unwrap()) {
                    assert!((a - b.as_f64().unwrap() as f32).abs() < 1e-4);
                }
            }
        }
    }
}

#[test]
fn cached_decoding_matches_the_full_forward_and_greedy_generation() {
    let m = model();
    let e = expected();
    let seq = ids(&e["sequences"][2]);
    // Prefill half, then one token at a time.
    common::assert_cached_and_greedy_match(&m, &e, &seq, 5);
}

#[test]
fn sampling_is_reproducible_per_prompt_and_sample_whatever_k() {
    let m = model();
    let prompt = ids(&expected()["sequences"][1]);
    let p = SamplingParams {
        temperature: 1.0,
        top_p: 0.9,
        top_k: 0,
        seed: 42,
    };
    let five = detox_lm::generate(&m, &prompt, 5, 10, &[2], &p, 7).unwrap();
    let two = detox_lm::generate(&m, &prompt, 2, 10, &[2], &p, 7).unwrap();
    assert_eq!(
        &five[..2],
        &two[..],
        "sample i does not depend on how many are drawn"
    );
    assert!(
        five.iter().any(|s| s != &five[0]),
        "samples differ from each other"
    );
    let other = detox_lm::generate(&m, &prompt, 2, 10, &[2], &p, 8).unwrap();
    assert_ne!(other, two, "another prompt index draws other samples");
    assert!(five.iter().all(|s| !s.contains(&2) && s.len() <= 10));
}

#[test]
fn batched_conditional_perplexity_equals_one_full_pass_per_continuation() {
    let m = model();
    let prompt = ids(&expected()["sequences"][0]);
    let conts = vec![
        vec![10u32, 20, 30, 40],
        vec![7u32],
        vec![],
        vec![90u32, 91, 92, 93, 94, 95],
    ];
    let got = detox_lm::continuation_perplexity(&m, &prompt, &conts).unwrap();
    assert_eq!(got[2], None);
    for (c, g) in conts.iter().zip(&got) {
        if c.is_empty() {
            continue;
        }
        // Reference: the whole sequence in one pass, log-probabilities of the continuation.
        let full: Vec<u32> = prompt.iter().chain(c).copied().collect();
        let mut cache = m.new_cache();
        let x = Tensor::new(full.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits = m.forward(&x, &mut cache, true).unwrap().squeeze(0).unwrap();
        let logp = candle_nn::ops::log_softmax(&logits, 1)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let nll: f64 = c
            .iter()
            .enumerate()
            .map(|(t, &tok)| -(logp[prompt.len() - 1 + t][tok as usize] as f64))
            .sum();
        let want = (nll / c.len() as f64).exp();
        let g = g.unwrap();
        assert!((g - want).abs() / want < 1e-4, "{g} vs {want}");
    }
}
