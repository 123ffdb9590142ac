//! Parity with PyTorch `transformers`: tiny random models and expected outputs made by
//! `scripts/make_fixtures.py` (committed under `tests/fixtures`).

use detox_core::{Activation, Scorer};
use detox_scorers::{load_scorer, ClassifierOptions, EncoderScorer, LoadError};
use serde_json::Value;
use std::path::{Path, PathBuf};

const TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn texts(e: &Value) -> Vec<String> {
    e["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn matrix(v: &Value) -> Vec<Vec<f32>> {
    detox_core::testing::json_matrix(v)
}

/// The largest |difference|; infinity for NaN/inf or mismatched shapes (so `<= tol` fails).
fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    detox_core::compare::max_abs_diff_rows(a, b)
}

fn check_hf(name: &str) {
    let e = expected(name);
    let texts = texts(&e);
    assert!(texts.len() >= 20);
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let want = matrix(&e["logits"]);
    // Odd batch sizes mix lengths inside a batch, so padding and masking are exercised.
    for batch_size in [1, 7, 64] {
        let scorer = EncoderScorer::from_hf_dir(
            &fixture(name),
            ClassifierOptions {
                batch_size,
                ..Default::default()
            },
        )
        .unwrap_or_else(|err| panic!("{name}: {err}"));
        let (logits, enc) = scorer.logits(&refs).unwrap();
        for (i, en) in enc.iter().enumerate() {
            let want_ids: Vec<u32> = e["input_ids"][i]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(
                en.ids, want_ids,
                "{name}: token ids of text {i} {:?}",
                texts[i]
            );
            assert_eq!(
                en.truncated,
                e["truncated"][i].as_bool().unwrap(),
                "{name}: truncation flag of text {i}"
            );
        }
        let d = max_diff(&logits, &want);
        eprintln!("{name} batch {batch_size}: max abs logit diff {d:.2e}");
        assert!(d < TOL, "{name} (batch {batch_size}): max |logit diff| {d}");
        let d_batched = max_diff(&logits, &matrix(&e["logits_batched"]));
        assert!(d_batched < TOL, "{name}: vs padded batch {d_batched}");
    }
}

#[test]
fn bert_matches_transformers() {
    check_hf("bert");
}

#[test]
fn bert_from_vocab_txt_and_pytorch_bin_matches_transformers() {
    check_hf("bert-vocab-only");
}

#[test]
fn roberta_matches_transformers() {
    check_hf("roberta");
}

#[test]
fn xlm_roberta_matches_transformers() {
    check_hf("xlm-roberta");
}

#[test]
fn distilbert_matches_transformers() {
    check_hf("distilbert");
}

#[test]
fn long_texts_are_truncated_and_counted() {
    let e = expected("bert");
    let scorer =
        EncoderScorer::from_hf_dir(&fixture("bert"), ClassifierOptions::default()).unwrap();
    let long = texts(&e).pop().unwrap();
    let out = scorer.score(&[long.as_str(), "short"]).unwrap();
    assert!(out[0].truncated);
    assert_eq!(out[0].tokens, 64);
    assert!(!out[1].truncated);
    assert_eq!(scorer.info().max_tokens, Some(64));
    // A user limit below the model's applies too.
    let scorer = EncoderScorer::from_hf_dir(
        &fixture("bert"),
        ClassifierOptions {
            max_length: Some(8),
            ..Default::default()
        },
    )
    .unwrap();
    let out = scorer
        .score(&["one two three four five six seven eight nine"])
        .unwrap();
    assert!(out[0].truncated);
    assert_eq!(out[0].tokens, 8);
}

#[test]
fn labels_and_activation_follow_the_config() {
    let bert = EncoderScorer::from_hf_dir(&fixture("bert"), ClassifierOptions::default()).unwrap();
    assert_eq!(bert.info().attributes, vec!["toxic", "insult", "threat"]);
    assert_eq!(bert.info().activation, Activation::Sigmoid);
    let roberta =
        EncoderScorer::from_hf_dir(&fixture("roberta"), ClassifierOptions::default()).unwrap();
    assert_eq!(roberta.info().attributes, vec!["neutral", "toxic"]);
    assert_eq!(roberta.info().activation, Activation::Softmax);
    let out = roberta.score(&["hello", "shut up"]).unwrap();
    for s in &out {
        assert!((s.values.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // Overriding the activation turns the multi-label BERT into a softmax.
    let forced = EncoderScorer::from_hf_dir(
        &fixture("bert"),
        ClassifierOptions {
            activation: Some(Activation::Softmax),
            ..Default::default()
        },
    )
    .unwrap();
    let s = forced.score(&["hello"]).unwrap();
    assert!((s[0].values.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    let sig = bert.score(&["hello"]).unwrap();
    assert!((sig[0].values.iter().sum::<f32>() - 1.0).abs() > 1e-3);
}

fn check_detoxify(dir: &str, ckpt: &str) {
    let e = expected(dir);
    let texts = texts(&e);
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let scorer = load_scorer(
        &fixture(dir).join(ckpt),
        None,
        ClassifierOptions {
            batch_size: 5,
            ..Default::default()
        },
    )
    .unwrap_or_else(|err| panic!("{dir}: {err}"));
    let labels: Vec<String> = e["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(scorer.info().attributes, labels);
    assert_eq!(scorer.info().activation, Activation::Sigmoid);
    let got: Vec<Vec<f32>> = scorer
        .score(&refs)
        .unwrap()
        .into_iter()
        .map(|s| s.values)
        .collect();
    let d = max_diff(&got, &matrix(&e["scores"]));
    assert!(d < TOL, "{dir}: max |score diff| {d}");
}

#[test]
fn detoxify_original_checkpoint_matches_transformers() {
    check_detoxify("detoxify-original", "original-tiny.ckpt");
    // A folder holding one checkpoint loads too.
    let s = load_scorer(
        &fixture("detoxify-original"),
        None,
        ClassifierOptions::default(),
    )
    .unwrap();
    assert_eq!(s.info().attributes[0], "toxicity");
    assert_eq!(s.info().attributes[5], "identity_attack");
}

#[test]
fn detoxify_unbiased_checkpoint_matches_transformers() {
    check_detoxify("detoxify-unbiased", "unbiased-tiny.ckpt");
}

#[test]
fn detoxify_without_base_config_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("original.ckpt");
    std::fs::copy(
        fixture("detoxify-original").join("original-tiny.ckpt"),
        &ckpt,
    )
    .unwrap();
    let err = load_scorer(&ckpt, None, ClassifierOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, LoadError::BaseModel { .. }));
    let msg = err.to_string();
    assert!(msg.contains("tiny-bert") && msg.contains("--base"), "{msg}");
    // Pointing --base at the folder with config.json and tokenizer.json fixes it.
    let s = load_scorer(
        &ckpt,
        Some(&fixture("detoxify-original")),
        ClassifierOptions::default(),
    )
    .unwrap();
    assert_eq!(s.info().attributes.len(), 6);
}

#[test]
fn bad_folders_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_scorer(dir.path(), None, ClassifierOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no config.json"), "{err}");

    // A folder with weights and config but no tokenizer.
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("bert").join(f), dir.path().join(f)).unwrap();
    }
    let err = load_scorer(dir.path(), None, ClassifierOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no tokenizer.json"), "{err}");

    // Corrupt weights.
    std::fs::write(dir.path().join("model.safetensors"), b"not safetensors").unwrap();
    std::fs::copy(
        fixture("bert").join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    assert!(load_scorer(dir.path(), None, ClassifierOptions::default()).is_err());

    // An unsupported architecture.
    let cfg = std::fs::read_to_string(fixture("bert").join("config.json"))
        .unwrap()
        .replace("\"model_type\": \"bert\"", "\"model_type\": \"gpt2\"");
    std::fs::copy(
        fixture("bert").join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    std::fs::write(dir.path().join("config.json"), cfg).unwrap();
    let err = load_scorer(dir.path(), None, ClassifierOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("model_type `gpt2` is not supported"), "{err}");
}

#[test]
fn parallel_batches_give_the_same_scores() {
    let e = expected("xlm-roberta");
    let texts = texts(&e);
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let one = EncoderScorer::from_hf_dir(&fixture("xlm-roberta"), ClassifierOptions::default())
        .unwrap()
        .score(&refs)
        .unwrap();
    let par = EncoderScorer::from_hf_dir(
        &fixture("xlm-roberta"),
        ClassifierOptions {
            batch_size: 3,
            parallel_batches: 2,
            ..Default::default()
        },
    )
    .unwrap()
    .score(&refs)
    .unwrap();
    for (a, b) in one.iter().zip(&par) {
        for (x, y) in a.values.iter().zip(&b.values) {
            assert!((x - y).abs() < 1e-5);
        }
    }
}

#[test]
fn mean_max_pooling_concatenates_the_mean_and_the_maximum() {
    use detox_scorers::{Pooling, SentenceEncoder};
    let mean = SentenceEncoder::from_hf_dir(&fixture("bert"), 4, None).unwrap();
    let both = SentenceEncoder::from_hf_dir(&fixture("bert"), 4, None)
        .unwrap()
        .with_pooling(Pooling::MeanMax);
    assert_eq!((mean.dim(), both.dim()), (32, 64));
    // Texts of different lengths in one batch: padding must not leak into the maximum.
    let texts = ["short", "a much longer text with many more tokens in it"];
    let m = mean.embed(&texts).unwrap();
    let b = both.embed(&texts).unwrap();
    let alone = both.embed(&["short"]).unwrap();
    for (x, y) in m[0].iter().zip(&b[0][..32]) {
        assert!((x - y).abs() < 1e-6);
    }
    for (x, y) in b[0].iter().zip(&alone[0]) {
        assert!((x - y).abs() < 1e-5, "padding changed the pooled vector");
    }
    assert!(b[0][32..].iter().zip(&b[0][..32]).all(|(mx, mn)| mx >= mn));
}
