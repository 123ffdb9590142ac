//! `detox train` end to end on a real (tiny) encoder: the BERT parity fixture.

use detox_core::metrics::{roc_auc, spearman};
use detox_core::Scorer;
use detox_scorers::HeadScorer;
use detox_train::data::Example;
use detox_train::fit::FitConfig;
use detox_train::{train, TrainOptions};
use std::path::{Path, PathBuf};

fn encoder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../detox-scorers/tests/fixtures/bert")
}

const GOOD: [&str; 6] = [
    "thank you",
    "wonderful work",
    "have a nice day",
    "great answer",
    "i like it",
    "welcome friend",
];
const BAD: [&str; 6] = [
    "shut up idiot",
    "you are stupid",
    "go away troll",
    "worthless idiot",
    "stupid troll",
    "idiot idiot",
];

fn examples() -> Vec<Example> {
    let mut out = Vec::new();
    for i in 0..40 {
        for (j, t) in GOOD.iter().enumerate() {
            // Perspective-like soft scores, low for the good texts.
            out.push(Example {
                text: format!("{t} {i}"),
                targets: vec![Some(0.05 + 0.01 * j as f32), None],
                source: "soft".into(),
                key: format!("g{i}-{j}"),
                perspective: true,
            });
        }
        for (j, t) in BAD.iter().enumerate() {
            out.push(Example {
                text: format!("{t} {i}"),
                targets: vec![Some(0.8 + 0.02 * j as f32), Some(1.0)],
                source: "soft".into(),
                key: format!("b{i}-{j}"),
                perspective: true,
            });
        }
    }
    out
}

fn options(cache: &Path) -> TrainOptions {
    TrainOptions {
        encoder_name: encoder().display().to_string(),
        encoder_dir: encoder(),
        max_tokens: 32,
        pooling: detox_scorers::Pooling::Mean,
        batch_size: 16,
        parallel: 1,
        cache_dir: cache.to_path_buf(),
        attributes: vec!["toxicity".into(), "aux".into()],
        exported: vec!["toxicity".into()],
        source_weights: Default::default(),
        cross_weight: 1.0,
        fit: FitConfig {
            hidden: 16,
            epochs: 30,
            lr: 1e-2,
            weight_decay: 1e-4,
            batch_size: 32,
            seed: 5,
        },
        fine_tune: Default::default(),
        calibrate: true,
        command: "test".into(),
    }
}

#[test]
fn trains_calibrates_exports_and_reproduces() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let ex = examples();
    let mut events = 0;
    let report = train(&ex, &options(&cache), &dir.path().join("a"), &mut |_| {
        events += 1
    })
    .unwrap();
    assert!(events > 30, "progress reported");
    assert!(report.dev_examples > 0 && report.train_examples > report.dev_examples);
    let cache_len = std::fs::metadata(
        std::fs::read_dir(&cache)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap()
    .len();

    // Same data, same seed: the same bytes; and the cache is reused, not grown.
    train(&ex, &options(&cache), &dir.path().join("b"), &mut |_| {}).unwrap();
    let a = std::fs::read(dir.path().join("a/head.safetensors")).unwrap();
    let b = std::fs::read(dir.path().join("b/head.safetensors")).unwrap();
    assert_eq!(a, b, "training is reproducible");
    let cache_len2 = std::fs::metadata(
        std::fs::read_dir(&cache)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap()
    .len();
    assert_eq!(
        cache_len, cache_len2,
        "embeddings come from the cache the second time"
    );

    // The written folder loads as a scorer with only the exported attribute, calibrated.
    let scorer = HeadScorer::load(&dir.path().join("a"), &encoder(), 8, 1).unwrap();
    assert_eq!(scorer.info().attributes, vec!["toxicity"]);
    assert!(scorer.spec().calibration.contains_key("toxicity"));
    assert!(!scorer.spec().calibration.contains_key("aux"));
    let texts: Vec<String> = ex.iter().map(|e| e.text.clone()).collect();
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let scores: Vec<f64> = scorer
        .score(&refs)
        .unwrap()
        .iter()
        .map(|s| s.values[0] as f64)
        .collect();
    let labels: Vec<bool> = ex.iter().map(|e| e.targets[0].unwrap() > 0.5).collect();
    assert!(roc_auc(&scores, &labels).unwrap() > 0.95);
    // Calibrated onto the soft scale: scores land near the targets' range.
    let targets: Vec<f64> = ex.iter().map(|e| e.targets[0].unwrap() as f64).collect();
    let mae = scores
        .iter()
        .zip(&targets)
        .map(|(s, t)| (s - t).abs())
        .sum::<f64>()
        / scores.len() as f64;
    assert!(mae < 0.1, "calibrated MAE {mae}");
    assert!(spearman(&scores, &targets).unwrap() > 0.7);
}

#[test]
fn rejects_targets_that_do_not_match_the_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let mut ex = examples();
    ex[3].targets.pop();
    let err = train(
        &ex,
        &options(&dir.path().join("c")),
        &dir.path().join("o"),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("1 targets for 2 attributes"), "{err}");
}

#[test]
fn differentiable_top_blocks_equal_the_inference_kernels() {
    let enc = detox_scorers::SentenceEncoder::from_hf_dir(&encoder(), 8, Some(32)).unwrap();
    let texts = ["shut up idiot", "have a nice day my friend", "ok"];
    let (full, lengths) = enc.lower_states(&texts, 0).unwrap();
    let (mine, l2) =
        detox_train::finetune::top_blocks_forward(&enc, &encoder(), &texts, enc.num_layers())
            .unwrap();
    assert_eq!(lengths, l2);
    let (a, b) = (
        full.to_vec3::<f32>().unwrap(),
        mine.to_vec3::<f32>().unwrap(),
    );
    let mut worst = 0f32;
    for (i, &n) in lengths.iter().enumerate() {
        for t in 0..n {
            for (x, y) in a[i][t].iter().zip(&b[i][t]) {
                worst = worst.max((x - y).abs());
            }
        }
    }
    assert!(worst < 1e-4, "max |diff| {worst}");
}

#[test]
fn fine_tuning_the_top_block_is_saved_loaded_and_learns() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let ex = examples();
    let mut opts = options(&cache);
    opts.fit.epochs = 3;
    opts.fine_tune = detox_train::finetune::TuneConfig {
        layers: 1,
        epochs: 2,
        lr: 1e-3,
        head_lr: 1e-3,
        batch_size: 16,
        seed: 3,
        threads: 1,
    };
    let mut tune_events = 0;
    let out = dir.path().join("tuned");
    let report = train(&ex, &opts, &out, &mut |p| {
        if matches!(p, detox_train::Progress::Tune { .. }) {
            tune_events += 1;
        }
    })
    .unwrap();
    assert!(tune_events > 0);
    assert!(report.final_loss.is_finite());
    // The tuned block travels in head.safetensors under the checkpoint's names.
    let bytes = std::fs::read(out.join("head.safetensors")).unwrap();
    let ts = candle_core::safetensors::load_buffer(&bytes, &candle_core::Device::Cpu).unwrap();
    let tuned: Vec<&String> = ts.keys().filter(|k| k.contains("encoder.layer.")).collect();
    assert_eq!(tuned.len(), 16, "{tuned:?}");
    let scorer = HeadScorer::load(&out, &encoder(), 8, 1).unwrap();
    assert!(scorer.info().description.contains("fine-tuned"));
    let good: Vec<&str> = vec!["thank you 99", "great answer 7"];
    let bad: Vec<&str> = vec!["you are stupid 99", "worthless idiot 7"];
    let g = scorer.score(&good).unwrap();
    let b = scorer.score(&bad).unwrap();
    let (gm, bm) = (
        g.iter().map(|s| s.values[0]).fold(0f32, f32::max),
        b.iter().map(|s| s.values[0]).fold(1f32, f32::min),
    );
    assert!(bm > gm, "bad {bm} above good {gm}");
}
