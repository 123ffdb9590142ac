//! `detox train` end to end on a real (tiny) encoder: the BERT parity fixture.

use detox_core::compare::{max_abs_diff, max_abs_diff_rows};
use detox_core::metrics::{roc_auc, spearman};
use detox_core::Scorer;
use detox_scorers::HeadScorer;
use detox_train::data::{Example, Split};
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
        folds: 3,
        command: "test".into(),
    }
}

fn mean_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64
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

    // Same data, same seed: the same bytes; and the cache is reused, not grown. A file of
    // the old folder that training does not write survives the rewrite.
    std::fs::create_dir_all(dir.path().join("b")).unwrap();
    std::fs::write(dir.path().join("b/README.md"), "mine").unwrap();
    train(&ex, &options(&cache), &dir.path().join("b"), &mut |_| {}).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("b/README.md")).unwrap(),
        "mine"
    );
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
    let mae = mean_abs_diff(&scores, &targets);
    assert!(mae < 0.1, "calibrated MAE {mae}");
    assert!(spearman(&scores, &targets).unwrap() > 0.7);
}

#[test]
fn the_default_pair_is_written_and_calibrated_as_a_whole() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pair");
    let ex = examples();
    let mut folds = Vec::new();
    let cfg = detox_train::ngram_fit::NgramConfig {
        bits: 12,
        ..Default::default()
    };
    let report = detox_train::train_default(
        &ex,
        &options(&dir.path().join("cache")),
        &cfg,
        &out,
        &mut |p| {
            if let detox_train::Progress::Fold { fold, folds: n } = p {
                folds.push((fold, n));
            }
        },
    )
    .unwrap();
    // Three folds for each member.
    assert_eq!(folds, [(1, 3), (2, 3), (3, 3), (1, 3), (2, 3), (3, 3)]);
    assert!(report
        .ensemble_dev
        .iter()
        .all(|m| m.attribute == "toxicity"));
    assert!(!report.ensemble_dev.is_empty());
    let spec: detox_core::EnsembleSpec =
        serde_json::from_str(&std::fs::read_to_string(out.join("ensemble.json")).unwrap()).unwrap();
    assert_eq!(spec.members, ["default", "fast"]);
    assert_eq!(spec.format, detox_core::ENSEMBLE_FORMAT);
    let map = &spec.calibration["toxicity"];
    assert!(map.x.len() >= 2 && map.y.windows(2).all(|w| w[0] <= w[1]));
    let note = spec.training["calibration"]["fitted_on"].as_str().unwrap();
    assert!(
        note.contains("out-of-fold") && note.contains("3 folds"),
        "{note}"
    );

    // The members load, and their calibrated mean through the ensemble's map ranks and
    // scales like the targets.
    let head = HeadScorer::load(&out.join("default"), &encoder(), 8, 1).unwrap();
    let fast = detox_scorers::ngram::NgramScorer::load(&out.join("fast")).unwrap();
    assert!(fast.spec().calibration.contains_key("toxicity"));
    let ens = detox_core::Ensemble::new(vec![Box::new(head), Box::new(fast)])
        .unwrap()
        .with_calibration(&spec.calibration);
    let texts: Vec<&str> = ex.iter().map(|e| e.text.as_str()).collect();
    let scores: Vec<f64> = ens
        .score(&texts)
        .unwrap()
        .iter()
        .map(|s| s.values[0] as f64)
        .collect();
    let targets: Vec<f64> = ex.iter().map(|e| e.targets[0].unwrap() as f64).collect();
    let mae = mean_abs_diff(&scores, &targets);
    assert!(mae < 0.1, "calibrated MAE {mae}");
    assert!(spearman(&scores, &targets).unwrap() > 0.7);

    // Calibration as a whole needs cross-fitting.
    let mut opts = options(&dir.path().join("cache"));
    opts.folds = 1;
    let err = detox_train::train_default(&ex, &opts, &cfg, &dir.path().join("x"), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 2 folds"), "{err}");
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
    // Token positions only (padding rows differ by design); NaN or inf anywhere fails.
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    for (i, &n) in lengths.iter().enumerate() {
        ra.extend_from_slice(&a[i][..n]);
        rb.extend_from_slice(&b[i][..n]);
    }
    let worst = max_abs_diff_rows(&ra, &rb);
    assert!(worst < 1e-4, "max |diff| {worst}");
}

/// Mean binary cross-entropy of `scorer`'s first output against the first target of the
/// dev-split examples (soft targets).
fn dev_loss(scorer: &HeadScorer, ex: &[Example]) -> f64 {
    let dev: Vec<&Example> = ex.iter().filter(|e| e.split() == Split::Dev).collect();
    assert!(dev.len() >= 20, "{} dev examples", dev.len());
    let texts: Vec<&str> = dev.iter().map(|e| e.text.as_str()).collect();
    let scores = scorer.score(&texts).unwrap();
    let mut sum = 0.0;
    for (e, s) in dev.iter().zip(&scores) {
        let p = (s.values[0] as f64).clamp(1e-7, 1.0 - 1e-7);
        let y = e.targets[0].unwrap() as f64;
        sum -= y * p.ln() + (1.0 - y) * (1.0 - p).ln();
    }
    sum / dev.len() as f64
}

/// The encoder checkpoint's tensors by name.
fn encoder_tensors() -> std::collections::HashMap<String, candle_core::Tensor> {
    candle_core::safetensors::load(
        encoder().join("model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap()
}

fn flat(t: &candle_core::Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Trains on `examples()` with the head fitted for 3 epochs, then `tune` (uncalibrated, so
/// the scorer returns the head's probabilities); returns the folder's tensors and the scorer.
fn train_tuned(
    dir: &Path,
    name: &str,
    tune: detox_train::finetune::TuneConfig,
) -> (
    std::collections::HashMap<String, candle_core::Tensor>,
    HeadScorer,
    usize,
) {
    let mut opts = options(&dir.join("cache"));
    opts.fit.epochs = 3;
    opts.calibrate = false;
    opts.fine_tune = tune;
    let mut tune_events = 0;
    let out = dir.join(name);
    let report = train(&examples(), &opts, &out, &mut |p| {
        if matches!(p, detox_train::Progress::Tune { .. }) {
            tune_events += 1;
        }
    })
    .unwrap();
    assert!(report.final_loss.is_finite());
    let bytes = std::fs::read(out.join("head.safetensors")).unwrap();
    let ts = candle_core::safetensors::load_buffer(&bytes, &candle_core::Device::Cpu).unwrap();
    let scorer = HeadScorer::load(&out, &encoder(), 8, 1).unwrap();
    (ts, scorer, tune_events)
}

fn tune_config(lr: f64, head_lr: f64) -> detox_train::finetune::TuneConfig {
    detox_train::finetune::TuneConfig {
        layers: 1,
        epochs: 2,
        lr,
        head_lr,
        batch_size: 16,
        seed: 3,
        threads: 1,
    }
}

/// Fine-tunes the top block with learning rates `lr` (block) and `head_lr` (head) after the
/// same 3-epoch head fit as a frozen run, and measures what fine-tuning should change: the
/// largest |change| of the tuned block's weights against the encoder checkpoint, the dev loss
/// of the frozen head and of the tuned one, and the tuned scorer.
fn fine_tuning_effect(lr: f64, head_lr: f64) -> (f32, f64, f64, HeadScorer) {
    let dir = tempfile::tempdir().unwrap();
    let ex = examples();
    // The same head fit without fine-tuning: the starting point fine-tuning moves from.
    let (_, frozen, _) = train_tuned(
        dir.path(),
        "frozen",
        detox_train::finetune::TuneConfig::default(),
    );
    let (ts, tuned, events) = train_tuned(dir.path(), "tuned", tune_config(lr, head_lr));
    assert!(events > 0, "fine-tuning reported progress");
    // The tuned block travels in head.safetensors under the checkpoint's names.
    let mut names: Vec<&String> = ts.keys().filter(|k| k.contains("encoder.layer.")).collect();
    names.sort();
    assert_eq!(names.len(), 16, "{names:?}");
    assert!(
        names.iter().all(|n| n.contains("encoder.layer.1.")),
        "{names:?}"
    );
    let original = encoder_tensors();
    let mut moved = 0f32;
    for n in names {
        let d = max_abs_diff(&flat(&ts[n]), &flat(&original[n]));
        assert!(d.is_finite(), "{n}: NaN/inf or a shape change");
        if d > moved {
            moved = d;
        }
    }
    assert!(tuned.info().description.contains("fine-tuned"));
    let losses = (dev_loss(&frozen, &ex), dev_loss(&tuned, &ex));
    (moved, losses.0, losses.1, tuned)
}

#[test]
fn fine_tuning_the_top_block_moves_it_lowers_dev_loss_and_learns() {
    let (moved, frozen_loss, tuned_loss, scorer) = fine_tuning_effect(1e-3, 1e-3);
    assert!(moved > 1e-5, "the tuned block moved by at most {moved}");
    assert!(
        tuned_loss < frozen_loss,
        "dev loss {tuned_loss} not below the frozen head's {frozen_loss}"
    );
    // And the tuned scorer separates unseen variants: every bad text above every good one.
    let good = scorer.score(&["thank you 99", "great answer 7"]).unwrap();
    let bad = scorer
        .score(&["you are stupid 99", "worthless idiot 7"])
        .unwrap();
    for b in &bad {
        for g in &good {
            // `>` is false for NaN: a broken score fails here.
            assert!(b.values[0] > g.values[0], "bad {b:?} not above good {g:?}");
        }
    }
}

/// Cross-fitting fits heads on the frozen encoder, which do not stand for a fine-tuned head:
/// a fine-tuned head is calibrated on its own probabilities, and its folder says so; the
/// pair refuses fine-tuning.
#[test]
fn a_fine_tuned_head_is_calibrated_in_sample_not_on_frozen_folds() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(&dir.path().join("cache"));
    opts.fit.epochs = 3;
    opts.fine_tune = tune_config(1e-3, 1e-3);
    assert!(opts.folds >= 2 && opts.calibrate);
    let mut folds = 0;
    train(&examples(), &opts, &dir.path().join("t"), &mut |p| {
        if matches!(p, detox_train::Progress::Fold { .. }) {
            folds += 1;
        }
    })
    .unwrap();
    assert_eq!(folds, 0, "no frozen fold models for a fine-tuned head");
    let spec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("t/detox-head.json")).unwrap(),
    )
    .unwrap();
    let note = spec["training"]["calibration"]["fitted_on"]
        .as_str()
        .unwrap();
    assert!(note.contains("in-sample"), "{note}");
    assert!(spec["calibration"]["toxicity"].is_object());
    let cfg = detox_train::ngram_fit::NgramConfig {
        bits: 12,
        ..Default::default()
    };
    let err =
        detox_train::train_default(&examples(), &opts, &cfg, &dir.path().join("p"), &mut |_| {})
            .unwrap_err()
            .to_string();
    assert!(err.contains("without fine-tuning"), "{err}");
}

/// The checks above fail when fine-tuning changes nothing (learning rates 0).
#[test]
fn fine_tuning_with_zero_learning_rates_fails_those_checks() {
    let (moved, frozen_loss, tuned_loss, _) = fine_tuning_effect(0.0, 0.0);
    assert_eq!(moved, 0.0, "lr 0 leaves the block as it was");
    assert!(
        tuned_loss >= frozen_loss,
        "dev loss {tuned_loss} vs frozen {frozen_loss}"
    );
}
