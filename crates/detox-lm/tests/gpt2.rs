//! detox's GPT-2 against PyTorch `transformers` on a tiny random GPT-2 saved as safetensors
//! with a tiny byte-level BPE (fixtures made by `scripts/make_lm_fixtures.py`).

mod common;

use candle_core::Device;
use common::{fixture, ids};
use detox_lm::gpt2::Gpt2;
use detox_lm::local::LocalLm;
use detox_lm::sampling::SamplingParams;
use detox_lm::tokenizer::LmTokenizer;
use detox_lm::{GenerationRequest, LanguageModel};
use serde_json::Value;

fn expected() -> Value {
    common::expected("tiny-gpt2")
}

fn model() -> Gpt2 {
    Gpt2::load(&fixture("tiny-gpt2"), &Device::Cpu).unwrap()
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
    common::assert_logits_match(&m, &expected());
}

#[test]
fn cached_decoding_matches_the_full_pass_and_greedy_matches_transformers() {
    let m = model();
    let e = expected();
    let seq = ids(&e["sequences"][1]);
    common::assert_cached_and_greedy_match(&m, &e, &seq, 7);
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
