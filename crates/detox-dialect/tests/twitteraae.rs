//! The real TwitterAAE model from `../shared/data/twitteraae-model`: the authors' README
//! examples, and a fixture of tweets whose tokens come from the authors' own tokenizer and
//! whose proportions come from an independent Python implementation
//! (`scripts/make_dialect_fixture.py`).

use detox_core::testing::require;
use detox_dialect::twokenize::tokenize_raw_tweet;
use detox_dialect::DialectModel;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/twitteraae-model")
}

fn model() -> Option<DialectModel> {
    let dir = model_dir();
    if !require(
        "../shared/data/twitteraae-model",
        dir.join("model_vocab.txt").is_file(),
    ) {
        return None;
    }
    Some(DialectModel::load(&dir).unwrap())
}

/// Rounds to `digits` significant digits, as numpy prints an array.
fn sig(x: f64, digits: i32) -> f64 {
    let e = x.abs().log10().floor() as i32;
    let f = 10f64.powi(digits - 1 - e);
    (x * f).round() / f
}

#[test]
fn readme_examples() {
    let Some(m) = model() else { return };
    // README: predict(u"hello there".split()) -> [0.16603718, 0.27450171, 0.22886004, 0.33060107]
    let p = m.infer("hello there").unwrap();
    let want = [0.16603718, 0.27450171, 0.22886004, 0.33060107];
    for k in 0..4 {
        assert_eq!(sig(p[k], 8), want[k], "hello there: {p:?}");
    }
    // predict(u"af af af".split()) -> [8.42944382e-01, 1.32149345e-01, 1.11905398e-04, 2.47943681e-02]
    let p = m.infer("af af af").unwrap();
    let want = [
        8.42944382e-01,
        1.32149345e-01,
        1.11905398e-04,
        2.47943681e-02,
    ];
    for k in 0..4 {
        assert_eq!(sig(p[k], 9), want[k], "af af af: {p:?}");
    }
}

#[test]
fn fixture_matches_authors_tokenizer_and_python_inference() {
    let Some(m) = model() else { return };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aae-expected.jsonl");
    let data = std::fs::read_to_string(&path).unwrap();
    let mut declined = 0;
    let mut n = 0;
    for (i, line) in data.lines().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        let text = v["text"].as_str().unwrap();
        let want_tokens: Vec<&str> = v["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(
            tokenize_raw_tweet(text),
            want_tokens,
            "line {}: {text}",
            i + 1
        );
        let got = m.infer(text);
        match (&v["dialect"], got) {
            (Value::Null, None) => declined += 1,
            (Value::Array(want), Some(p)) => {
                for k in 0..4 {
                    let w = want[k].as_f64().unwrap();
                    assert!(
                        (p[k] - w).abs() < 1e-6,
                        "line {}: {text}: topic {k}: {} vs {w}",
                        i + 1,
                        p[k]
                    );
                }
            }
            (want, got) => panic!("line {}: {text}: want {want}, got {got:?}", i + 1),
        }
        n += 1;
    }
    assert!(n >= 40, "{n} texts");
    assert!(declined >= 2, "{declined} declined");
}

#[test]
fn loads_fast_and_whole() {
    let Some(_) = model() else { return };
    let t = Instant::now();
    let m = DialectModel::load(&model_dir()).unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(m.vocab_len(), 191_874);
    // The first and last rows of the files.
    assert_eq!(m.word_index("i"), Some(0));
    assert_eq!(m.word_index("OOV"), Some(191_873));
    eprintln!("loaded the TwitterAAE model in {secs:.3}s");
    assert!(secs < 5.0, "loading took {secs:.2}s");
}
