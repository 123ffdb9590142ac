//! detox's GPT-2 against PyTorch `transformers` on a tiny random GPT-2 saved as safetensors
//! with a tiny byte-level BPE (fixtures made by `scripts/make_lm_fixtures.py`).

mod common;

use candle_core::{Device, Tensor};
use common::{fixture, ids};
use detox_lm::gpt2::Gpt2;
use detox_lm::local::LocalLm;
use detox_lm::sampling::SamplingParams;
use detox_lm::tokenizer::LmTokenizer;
use detox_lm::CausalLm;
use detox_lm::{GenerationRequest, LanguageModel};
use serde_json::Value;

fn expected() -> Value {
    common::expected("tiny-gpt2")
}

fn model() -> Gpt2 {
    Gpt2::load(&fixture("tiny-gpt2"), &Device::Cpu).unwrap()
}

fn row(s: &[u32]) -> Tensor {
    Tensor::new(s, &Device::Cpu).unwrap().unsqueeze(0).unwrap()
}

#[test]
fn logits_at_every_position_match_transformers() {
    let m = model();
    assert_eq!(
        (
            m.config.layers,
            m.config.heads,
            m.config.vocab,
            m.config.eos
        ),
        (2, 4, 320, Some(0))
    );
    let e = expected();
    for (seq, want) in e["sequences"]
        .as_array()
        .unwrap()
        .iter()
        .zip(e["logits"].as_array().unwrap())
    {
        let s = ids(seq);
        let mut cache = m.new_cache();
        let got = m
            .forward(&row(&s), &mut cache, true)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(got.len(), s.len());
        let worst = common::worst_diff(&got, want);
        assert!(worst < 1e-4, "max |logit diff| {worst} on {s:?}");
    }
}

#[test]
fn cached_decoding_matches_the_full_pass_and_greedy_matches_transformers() {
    let m = model();
    let e = expected();
    let seq = ids(&e["sequences"][1]);
    let mut cache = m.new_cache();
    let mut last = m.forward(&row(&seq[..7]), &mut cache, false).unwrap();
    for &t in &seq[7..] {
        last = m.forward(&row(&[t]), &mut cache, false).unwrap();
    }
    let full = m.forward(&row(&seq), &mut m.new_cache(), false).unwrap();
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
    let params = SamplingParams {
        temperature: 0.0,
        ..Default::default()
    };
    let out = detox_lm::generate(&m, &prompt, 3, 8, &[], &params, 0).unwrap();
    for r in &out {
        assert_eq!(r.as_slice(), &greedy[prompt.len()..], "greedy continuation");
    }
}

#[test]
fn tokenizer_from_vocab_and_merges_matches_transformers() {
    let e = expected();
    let tok = LmTokenizer::from_folder(&fixture("tiny-gpt2"), Some(0), Some(0)).unwrap();
    for (text, want) in e["texts"]
        .as_array()
        .unwrap()
        .iter()
        .zip(e["ids"].as_array().unwrap())
    {
        let text = text.as_str().unwrap();
        let got = tok.encode(text).unwrap();
        assert_eq!(got, ids(want), "ids of {text:?}");
        assert_eq!(tok.decode(&got).unwrap(), text, "round trip of {text:?}");
    }
    assert_eq!(tok.encode("<|endoftext|>").unwrap(), vec![0]);
}

#[test]
fn judge_perplexity_matches_dexperts_definition() {
    let e = expected();
    let lm = LocalLm::load(&fixture("tiny-gpt2"), &Device::Cpu).unwrap();
    assert_eq!(lm.identity()["kind"], "gpt2");
    let p = &e["perplexity"];
    let got = lm
        .perplexity(
            p["prompt"].as_str().unwrap(),
            &[p["continuation"].as_str().unwrap(), ""],
        )
        .unwrap();
    let want = p["value"].as_f64().unwrap();
    let g = got[0].unwrap();
    assert!((g - want).abs() / want < 1e-3, "{g} vs {want}");
    assert_eq!(got[1], None, "an empty continuation has no perplexity");
}

#[test]
fn local_model_samples_text_reproducibly_and_unprompted_starts_from_bos() {
    let lm = LocalLm::load(&fixture("tiny-gpt2"), &Device::Cpu).unwrap();
    let req = GenerationRequest {
        samples: 4,
        max_tokens: 6,
        params: SamplingParams {
            seed: 3,
            ..Default::default()
        },
        perplexity: true,
    };
    let a = lm.complete("The quick", 5, &req).unwrap();
    let b = lm.complete("The quick", 5, &req).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 4);
    assert!(a
        .iter()
        .all(|c| c.perplexity.is_some() || c.text.is_empty()));
    // An empty prompt starts from <|endoftext|>, as RTP's unprompted GPT-2 runs did.
    let u = lm.complete("", 0, &req).unwrap();
    assert_eq!(u.len(), 4);
    assert_eq!(lm.prompt_ids("", 6).unwrap(), vec![0]);
}
