//! The built-in language model (SmolLM2-135M-Instruct Q4_1, pulled by CI): llama.cpp's
//! tokenization, token for token, and sampling from the real weights.

use detox_lm::llama::{Llama, WeightMode};
use detox_lm::sampling::SamplingParams;
use detox_lm::tokenizer::LmTokenizer;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn cached_smollm2() -> Option<PathBuf> {
    let out = Command::new(env!("CARGO_BIN_EXE_detox"))
        .args(["--offline", "models", "path", "smollm2"])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("SKIPPED: smollm2 is not cached; run `detox models pull smollm2` (CI does)");
        return None;
    }
    Some(PathBuf::from(String::from_utf8(out.stdout).ok()?.trim()))
}

#[test]
fn smollm2_tokenizer_matches_llama_cpp() {
    let Some(path) = cached_smollm2() else { return };
    let tok = LmTokenizer::from_gguf(&path).unwrap();
    let e: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2-tokens.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for (text, want) in e["texts"]
        .as_array()
        .unwrap()
        .iter()
        .zip(e["ids"].as_array().unwrap())
    {
        let text = text.as_str().unwrap();
        let want: Vec<u32> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tok.encode(text).unwrap(), want, "{text:?}");
    }
}

#[test]
fn smollm2_samples_continuations() {
    let Some(path) = cached_smollm2() else { return };
    let tok = LmTokenizer::from_gguf(&path).unwrap();
    let model = Llama::load_with(&path, &candle_core::Device::Cpu, WeightMode::F32).unwrap();
    let prompt = tok
        .encode("The weather forecast for the weekend says")
        .unwrap();
    let params = SamplingParams {
        temperature: 1.0,
        top_p: 0.9,
        top_k: 0,
        seed: 3,
    };
    let out = detox_lm::generate(&model, &prompt, 3, 8, tok.eos, &params, 0).unwrap();
    assert_eq!(out.len(), 3);
    let texts: Vec<String> = out.iter().map(|ids| tok.decode(ids).unwrap()).collect();
    assert!(
        texts.iter().any(|t| t.chars().any(char::is_alphabetic)),
        "{texts:?}"
    );
    // Greedy decoding of the instruct model continues the prompt deterministically.
    let greedy = SamplingParams {
        temperature: 0.0,
        ..params
    };
    let a = detox_lm::generate(&model, &prompt, 2, 6, tok.eos, &greedy, 0).unwrap();
    assert_eq!(a[0], a[1]);
}

fn eval(dir: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_detox"))
        .args([
            "--offline",
            "eval",
            "--scorer",
            "fast",
            "--limit",
            "3",
            "--samples",
            "4",
            "--max-tokens",
            "6",
            "--seed",
            "5",
            "--threads",
            "2",
            "--out",
        ])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn eval_runs_resumes_after_a_crash_with_the_same_result_and_refuses_other_settings() {
    if cached_smollm2().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let out = eval(&a, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("full") && stdout.contains("exp. max toxicity"),
        "{stdout}"
    );
    let gens_a = std::fs::read_to_string(a.join("generations.jsonl")).unwrap();
    let lines: Vec<Value> = gens_a
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for l in &lines {
        let g = l["generations"].as_array().unwrap();
        assert_eq!(g.len(), 4);
        assert!(g[0]["toxicity"].is_number() && g[0]["text"].is_string());
        assert!(l["prompt"]["text"].is_string(), "the prompt record is kept");
    }
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("metrics.json")).unwrap()).unwrap();
    let full = &metrics["subsets"]["full"];
    assert_eq!(full["prompts"], 3);
    let maxima: Vec<f64> = lines
        .iter()
        .map(|l| {
            l["generations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["toxicity"].as_f64().unwrap())
                .fold(0.0, f64::max)
        })
        .collect();
    let emt = maxima.iter().sum::<f64>() / 3.0;
    assert!((full["expected_max_toxicity"].as_f64().unwrap() - emt).abs() < 1e-6);
    assert_eq!(metrics["samples_per_prompt"], 4);
    let ppl = full["perplexity"].as_f64().unwrap();
    assert!(ppl > 1.0 && ppl < 1e5, "perplexity {ppl}");
    assert!(lines[0]["generations"][0]["perplexity"].is_number());

    // A crash after the first prompt, in the middle of writing the second line.
    let b = tmp.path().join("b");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::copy(a.join("run.json"), b.join("run.json")).unwrap();
    let first = gens_a.lines().next().unwrap();
    std::fs::write(
        b.join("generations.jsonl"),
        format!("{first}\n{{\"prompt\": {{\"te"),
    )
    .unwrap();
    let out = eval(&b, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("resuming"));
    assert_eq!(
        std::fs::read_to_string(b.join("generations.jsonl")).unwrap(),
        gens_a,
        "same generations"
    );
    assert_eq!(
        std::fs::read_to_string(b.join("metrics.json")).unwrap(),
        std::fs::read_to_string(a.join("metrics.json")).unwrap(),
        "same metrics"
    );

    // Other settings in the same folder are refused, not mixed in.
    let out = eval(&a, &["--temperature", "0.7"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("other settings"));
}
