//! The differentiable forward passes against detox-lm's inference path (itself checked against
//! PyTorch): logits at every position within 1e-4 on the tiny random fixtures, and gradients
//! that reach every parameter.

use candle_core::{Device, Tensor};
use common::max_diff;
use detox_finetune::loss::causal_lm_loss;
use detox_finetune::model::{Gpt2Train, LlamaTrain, Trainable};
use detox_lm::CausalLm;
use std::path::{Path, PathBuf};

mod common;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../detox-lm/tests/fixtures")
        .join(name)
}

fn ids(vocab: u32) -> Tensor {
    let rows: Vec<u32> = (0..2 * 11).map(|i| (i * 37 + 5) % vocab).collect();
    Tensor::from_vec(rows, (2, 11), &Device::Cpu).unwrap()
}

fn check(train: &dyn Trainable, infer: &dyn CausalLm, vocab: u32) {
    let ids = ids(vocab);
    let want = infer.forward(&ids, &mut infer.new_cache(), true).unwrap();
    let got = train.forward(&ids).unwrap();
    assert_eq!(got.dims(), want.dims());
    let d = max_diff(&got, &want);
    assert!(d < 1e-4, "logits differ by {d}");
    // Every parameter gets a gradient (the graph is not cut anywhere).
    let loss = causal_lm_loss(&got, &ids).unwrap();
    let grads = loss.backward().unwrap();
    for (name, v) in train.parameters() {
        let g = grads.get(v.as_tensor());
        assert!(g.is_some(), "no gradient for {name}");
        let n = g
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(n > 0.0 && n.is_finite(), "{name}: gradient sum {n}");
    }
}

#[test]
fn gpt2_matches_the_inference_path() {
    let dev = Device::Cpu;
    let dir = fixture("tiny-gpt2");
    let train = Gpt2Train::load(&dir, &dev).unwrap();
    let infer = detox_lm::gpt2::Gpt2::load(&dir, &dev).unwrap();
    check(&train, &infer, train.config.vocab as u32);
}

#[test]
fn llama_matches_the_inference_path_after_unpermuting_q_and_k() {
    let dev = Device::Cpu;
    for name in ["tiny-llama.gguf", "tiny-llama3.gguf"] {
        let path = fixture(name);
        let train = LlamaTrain::load_gguf(&path, &dev).unwrap();
        let infer =
            detox_lm::llama::Llama::load_with(&path, &dev, detox_lm::llama::WeightMode::F32)
                .unwrap();
        check(&train, &infer, train.config.vocab as u32);
    }
}

#[test]
fn other_llama_family_architectures_are_refused_by_name() {
    let e = LlamaTrain::load_gguf(&fixture("tiny-qwen2.gguf"), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("`qwen2`"), "{e}");
}

#[test]
fn a_llama_saved_as_a_hugging_face_folder_loads_back_with_the_same_logits() {
    let dev = Device::Cpu;
    let path = fixture("tiny-llama.gguf");
    let train = LlamaTrain::load_gguf(&path, &dev).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tensors: std::collections::HashMap<String, Tensor> =
        train.export().unwrap().into_iter().collect();
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        train.config_json().to_string(),
    )
    .unwrap();
    let back = detox_lm::llama::Llama::load_hf(dir.path(), &dev).unwrap();
    let gguf =
        detox_lm::llama::Llama::load_with(&path, &dev, detox_lm::llama::WeightMode::F32).unwrap();
    let ids = ids(train.config.vocab as u32);
    let a = back.forward(&ids, &mut back.new_cache(), true).unwrap();
    let b = gguf.forward(&ids, &mut gguf.new_cache(), true).unwrap();
    assert!(max_diff(&a, &b) < 1e-5, "{}", max_diff(&a, &b));
}
