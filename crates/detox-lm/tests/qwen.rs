//! Qwen2 (Q/K/V biases, rotate-half rotary embeddings) and Qwen3 (per-head Q/K RMS norms,
//! explicit head size) GGUF files against PyTorch `transformers`, and the `qwen2`
//! pre-tokenizer against llama.cpp (`llama-cpp-python`), on tiny random models written by
//! `scripts/make_lm_fixtures.py --qwen`.

mod common;

use candle_core::{Device, Tensor};
use common::{fixture, ids};
use detox_lm::llama::{Llama, WeightMode};
use detox_lm::tokenizer::LmTokenizer;
use detox_lm::CausalLm;
use serde_json::Value;

fn expected(kind: &str) -> Value {
    common::expected(&format!("tiny-{kind}"))
}

fn check_logits(kind: &str) {
    let e = expected(kind);
    for mode in [WeightMode::AsStored, WeightMode::F32] {
        let m =
            Llama::load_with(&fixture(&format!("tiny-{kind}.gguf")), &Device::Cpu, mode).unwrap();
        for (seq, want) in e["sequences"]
            .as_array()
            .unwrap()
            .iter()
            .zip(e["logits"].as_array().unwrap())
        {
            let s = ids(seq);
            // Prefill all but the last two tokens, then one at a time: every position checked.
            let mut cache = m.new_cache();
            let split = s.len().saturating_sub(2).max(1);
            let head = Tensor::new(&s[..split], &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let mut got = m
                .forward(&head, &mut cache, true)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            for &t in &s[split..] {
                let x = Tensor::new(&[t], &Device::Cpu)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap();
                got.push(
                    m.forward(&x, &mut cache, false)
                        .unwrap()
                        .squeeze(0)
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap(),
                );
            }
            let worst = common::worst_diff(&got, want);
            assert_eq!(got.len(), s.len());
            assert!(
                worst < 1e-4,
                "{kind} {mode:?}: max |logit diff| {worst} on {s:?}"
            );
        }
    }
}

fn check_tokens(kind: &str) {
    let e = expected(kind);
    let Some(texts) = e["texts"].as_array() else {
        panic!("the fixture lacks llama.cpp's ids: rerun the script with llama-cpp-python");
    };
    let tok = LmTokenizer::from_gguf(&fixture(&format!("tiny-{kind}.gguf"))).unwrap();
    for (t, want) in texts.iter().zip(e["ids"].as_array().unwrap()) {
        let t = t.as_str().unwrap();
        assert_eq!(tok.encode(t).unwrap(), ids(want), "{kind}: ids of {t:?}");
    }
}

#[test]
fn qwen2_logits_match_transformers() {
    check_logits("qwen2");
}

#[test]
fn qwen3_logits_match_transformers() {
    check_logits("qwen3");
}

#[test]
fn qwen2_pre_tokenizer_matches_llama_cpp() {
    check_tokens("qwen2");
    check_tokens("qwen3");
}

#[test]
fn qwen_gguf_files_sample_through_the_language_model_interface() {
    use detox_lm::local::LocalLm;
    use detox_lm::{GenerationRequest, LanguageModel};
    for kind in ["qwen2", "qwen3"] {
        let lm = LocalLm::load(&fixture(&format!("tiny-{kind}.gguf")), &Device::Cpu).unwrap();
        let req = GenerationRequest {
            samples: 3,
            max_tokens: 5,
            params: Default::default(),
            perplexity: true,
        };
        let out = lm.complete("Hello world", 1, &req).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out, lm.complete("Hello world", 1, &req).unwrap());
        assert_eq!(lm.identity()["kind"], "gguf");
    }
}

#[test]
fn a_tokenizer_json_can_replace_the_gguf_tokenizer() {
    // `replacement-tokenizer.json` is another vocabulary than the GGUF's (written by
    // `scripts/make_lm_fixtures.py --replacement-tokenizer`): every test text gets other ids
    // from it, so the model can only give the Python `tokenizers` ids when it really
    // tokenizes with the replacement.
    use detox_lm::local::LocalLm;
    use detox_lm::{GenerationRequest, LanguageModel};
    let gguf = fixture("tiny-qwen2.gguf");
    let json = fixture("replacement-tokenizer.json");
    let own = LmTokenizer::from_gguf(&gguf).unwrap();
    let lm = LocalLm::load_with(&gguf, &Device::Cpu, WeightMode::F32, Some(&json)).unwrap();
    let e = common::expected("replacement-tokenizer");
    let texts = e["texts"].as_array().unwrap();
    assert_eq!(texts.len(), 8);
    for (t, want) in texts.iter().zip(e["ids"].as_array().unwrap()) {
        let t = t.as_str().unwrap();
        let want = ids(want);
        assert_ne!(own.encode(t).unwrap(), want, "the GGUF's own ids of {t:?}");
        assert_eq!(lm.tokenizer().encode(t).unwrap(), want, "ids of {t:?}");
        // The prompt the model is fed (no BOS for this file) is tokenized the same way.
        assert_eq!(lm.prompt_ids(t, 0).unwrap(), want, "prompt ids of {t:?}");
    }
    // The special ids stay the model's; the replacement's own `<|endoftext|>` is another id.
    assert_eq!(lm.tokenizer().stop, own.stop);
    assert_ne!(
        lm.tokenizer().inner.token_to_id("<|endoftext|>"),
        own.inner.token_to_id("<|endoftext|>")
    );
    let identity = lm.identity();
    assert_eq!(identity["tokenizer"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(
        identity["tokenizer"]["path"].as_str().unwrap(),
        json.display().to_string()
    );
    let req = GenerationRequest {
        samples: 2,
        max_tokens: 4,
        params: Default::default(),
        perplexity: true,
    };
    assert_eq!(lm.complete("Hello world", 0, &req).unwrap().len(), 2);
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.json");
    assert!(LocalLm::load_with(&gguf, &Device::Cpu, WeightMode::F32, Some(&missing)).is_err());
}

#[test]
fn llama3_rope_scaling_and_llama_bpe_pre_tokenizer_match() {
    // Llama 3.1's `rope_freqs.weight` divisors against transformers' llama3 rotary scaling,
    // and the `llama-bpe` split (digits in runs of three) against llama.cpp.
    check_logits("llama3");
    check_tokens("llama3");
    let tok = LmTokenizer::from_gguf(&fixture("tiny-llama3.gguf")).unwrap();
    assert!(tok.add_bos);
    assert!(tok.stop.contains(&tok.eos.unwrap()));
}

#[test]
fn every_end_of_generation_token_stops_sampling() {
    // SmolLM2-style files: EOS is <|im_end|>, but <|endoftext|> ends a generation too.
    let tok = LmTokenizer::from_gguf(&fixture("tiny-qwen2.gguf")).unwrap();
    let eot = tok.inner.token_to_id("<|endoftext|>").unwrap();
    assert!(tok.stop.contains(&eot), "{:?}", tok.stop);
}
