//! Three AdamW steps against PyTorch on the tiny random GPT-2 and llama, with and without LoRA,
//! with clipping and the warm-up-then-cosine schedule: every step's loss, learning rate and
//! gradient norm, and every parameter after the steps (LoRA merged), within 1e-5. Fixtures by
//! `scripts/make_finetune_fixtures.py`.

use candle_core::{DType, Device, Tensor};
use common::max_diff;
use detox_finetune::model::{add_lora, no_decay, trainable, Gpt2Train, LlamaTrain, Trainable};
use detox_finetune::optim::{cosine_factor, AdamW, AdamWConfig};
use detox_finetune::step::step;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod common;

fn here(dir: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(name)
}

fn run(case: &str) {
    let dev = Device::Cpu;
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(here("tests/fixtures", &format!("{case}.json"))).unwrap(),
    )
    .unwrap();
    let s = &spec["settings"];
    let lora = spec["lora"].as_bool().unwrap();
    let mut model: Box<dyn Trainable> = if case.starts_with("gpt2") {
        Box::new(Gpt2Train::load(&here("../detox-lm/tests/fixtures", "tiny-gpt2"), &dev).unwrap())
    } else {
        Box::new(
            LlamaTrain::load_gguf(&here("../detox-lm/tests/fixtures", "tiny-llama.gguf"), &dev)
                .unwrap(),
        )
    };
    if lora {
        let init = candle_core::safetensors::load(
            here("tests/fixtures", &format!("{case}-lora-init.safetensors")),
            &dev,
        )
        .unwrap();
        add_lora(
            model.as_mut(),
            s["lora_rank"].as_u64().unwrap() as usize,
            s["lora_alpha"].as_f64().unwrap(),
            &mut |name, _, _| Ok(init[&format!("{name}.lora_A")].clone()),
        )
        .unwrap();
    }
    let vars = trainable(model.as_ref());
    let params: Vec<_> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.clone(), lora || !no_decay(n)))
        .collect();
    let betas = s["betas"].as_array().unwrap();
    let mut opt = AdamW::new(
        params,
        AdamWConfig {
            betas: (betas[0].as_f64().unwrap(), betas[1].as_f64().unwrap()),
            eps: s["eps"].as_f64().unwrap(),
            weight_decay: s["weight_decay"].as_f64().unwrap(),
        },
    )
    .unwrap();
    let only_vars: Vec<_> = vars.iter().map(|(_, v)| v.clone()).collect();
    let (warmup, total) = (
        s["warmup_steps"].as_u64().unwrap() as usize,
        s["total_steps"].as_u64().unwrap() as usize,
    );
    let lr0 = s["lr"].as_f64().unwrap();
    for (i, (batch, want)) in spec["batches"]
        .as_array()
        .unwrap()
        .iter()
        .zip(spec["steps"].as_array().unwrap())
        .enumerate()
    {
        let rows: Vec<Vec<u32>> = serde_json::from_value(batch.clone()).unwrap();
        let (b, l) = (rows.len(), rows[0].len());
        let ids = Tensor::from_vec(rows.concat(), (b, l), &dev).unwrap();
        let lr = lr0 * cosine_factor(i, warmup, total);
        assert!(
            (lr - want["lr"].as_f64().unwrap()).abs() < 1e-12,
            "step {i}: lr {lr}"
        );
        let st = step(
            model.as_ref(),
            &mut opt,
            &only_vars,
            &[ids],
            lr,
            s["max_grad_norm"].as_f64(),
        )
        .unwrap();
        let (wl, wn) = (
            want["loss"].as_f64().unwrap(),
            want["grad_norm"].as_f64().unwrap(),
        );
        assert!(
            (st.loss - wl).abs() < 1e-5,
            "{case} step {i}: loss {} vs {wl}",
            st.loss
        );
        assert!(
            (st.grad_norm - wn).abs() < 1e-4 * wn.max(1.0),
            "{case} step {i}: norm {} vs {wn}",
            st.grad_norm
        );
    }
    let after = candle_core::safetensors::load(
        here("tests/fixtures", &format!("{case}-after.safetensors")),
        &dev,
    )
    .unwrap();
    let got: HashMap<String, Tensor> = model.export().unwrap().into_iter().collect();
    assert_eq!(
        got.len(),
        after.len(),
        "{case}: {:?}",
        got.keys().collect::<Vec<_>>()
    );
    let mut worst = (0.0f32, String::new());
    for (name, want) in &after {
        let have = got.get(name).unwrap_or_else(|| panic!("{case}: no {name}"));
        let d = max_diff(have, &want.to_dtype(DType::F32).unwrap());
        if d > worst.0 {
            worst = (d, name.clone());
        }
    }
    assert!(worst.0 < 1e-5, "{case}: {} differs by {}", worst.1, worst.0);
}

#[test]
fn gpt2_full_fine_tuning_matches_pytorch() {
    run("gpt2-full");
}

#[test]
fn gpt2_lora_matches_pytorch() {
    run("gpt2-lora");
}

#[test]
fn llama_full_fine_tuning_matches_pytorch() {
    run("llama-full");
}

#[test]
fn llama_lora_matches_pytorch() {
    run("llama-lora");
}
