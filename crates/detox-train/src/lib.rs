//! Training detox scorers.
//!
//! `detox train` turns labelled texts into a [`detox_scorers::HeadScorer`] folder: texts are
//! embedded once with a registry encoder (mean pooling; vectors cached on disk so an
//! interrupted run resumes where it stopped), a small head is fitted with candle's autograd
//! ([`fit`]), and each attribute is calibrated with isotonic regression onto the Perspective
//! scores of one year ([`data::CALIBRATION_YEAR`]), fitted on out-of-fold probabilities, so
//! that 0.5 means what it means to Perspective users. [`train_default`] trains the built-in
//! pair (head and n-gram model) and calibrates their mean as a whole.
//! [`quality`] measures any scorer on test sets never used for training or choices, on the
//! dev splits, and on the identity-term templates.

pub mod cache;
pub mod data;
pub mod finetune;
pub mod fit;
pub mod identity;
pub mod ngram_fit;
pub mod quality;

use cache::EmbeddingCache;
use candle_core::{Device, Tensor};
use data::{Example, Split};
use detox_core::metrics::{roc_auc, spearman, Isotonic};
use detox_scorers::head::{HeadSpec, Mlp, HEAD_FORMAT, HEAD_SPEC, HEAD_WEIGHTS};
use detox_scorers::SentenceEncoder;
use fit::{FitConfig, FittedHead};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Why training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file could not be read or written.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The data is unusable.
    #[error("{0}")]
    Data(String),
    /// The encoder could not be loaded.
    #[error(transparent)]
    Load(#[from] detox_scorers::LoadError),
    /// Scoring or embedding failed.
    #[error(transparent)]
    Score(#[from] detox_core::ScoreError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A file could not be written atomically.
    #[error(transparent)]
    File(#[from] detox_io::files::FileError),
}

/// Everything `train` needs besides the data.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The encoder's registry name (recorded in the spec).
    pub encoder_name: String,
    /// The encoder's local folder.
    pub encoder_dir: PathBuf,
    /// Token limit for embedding.
    pub max_tokens: usize,
    /// How token states are pooled.
    pub pooling: detox_scorers::Pooling,
    /// Texts per forward pass.
    pub batch_size: usize,
    /// Batches run at once.
    pub parallel: usize,
    /// Where embeddings are cached.
    pub cache_dir: PathBuf,
    /// Target names, in order (the examples' targets follow it).
    pub attributes: Vec<String>,
    /// The targets the written scorer outputs (the others only shape the hidden layer).
    pub exported: Vec<String>,
    /// Weight of each example of a source (default 1).
    pub source_weights: BTreeMap<String, f32>,
    /// Weight of exported targets on examples that are not Perspective-scored (their labels
    /// say toxic or not, on another scale than Perspective's).
    pub cross_weight: f32,
    /// Head hyper-parameters.
    pub fit: FitConfig,
    /// Fine-tuning of the encoder's top blocks after the head is fitted (`layers` 0: none).
    pub fine_tune: finetune::TuneConfig,
    /// Calibrate attributes on examples marked `perspective`.
    pub calibrate: bool,
    /// Cross-fitting folds of the calibration (the isotonic maps are fitted on out-of-fold
    /// probabilities); 0 or 1: fitted on the final model's own training-split probabilities.
    pub folds: usize,
    /// The command line, for the spec's provenance.
    pub command: String,
}

/// Progress events of a training run.
#[derive(Debug, Clone)]
pub enum Progress {
    /// Embedding: done of total texts (cached ones count as done).
    Embedding {
        /// Texts with vectors.
        done: usize,
        /// All distinct texts.
        total: usize,
    },
    /// A fine-tuning step finished.
    Tune {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based step within the epoch.
        step: usize,
        /// Steps per epoch.
        steps: usize,
        /// Mean loss of the epoch so far.
        loss: f64,
    },
    /// Cross-fitting: a model for this fold of the calibration data is being fitted.
    Fold {
        /// 1-based fold.
        fold: usize,
        /// Of this many.
        folds: usize,
    },
    /// One epoch of the head finished.
    Epoch {
        /// 1-based epoch.
        epoch: usize,
        /// Of this many.
        epochs: usize,
        /// Mean training loss.
        loss: f64,
    },
}

/// Dev metrics of one (source, attribute).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DevMetric {
    /// Dataset.
    pub source: String,
    /// Attribute.
    pub attribute: String,
    /// Dev examples with a label.
    pub n: usize,
    /// ROC-AUC against targets >= 0.5 (binary sources).
    pub auc: Option<f64>,
    /// Spearman against soft targets (Perspective-scored sources).
    pub spearman: Option<f64>,
}

/// What a training run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    /// Training examples.
    pub train_examples: usize,
    /// Examples held out of fitting (the dev and test splits).
    pub dev_examples: usize,
    /// Final training loss.
    pub final_loss: f64,
    /// Dev metrics.
    pub dev: Vec<DevMetric>,
}

/// Embeds every distinct text (using and filling the cache) and returns a lookup.
pub fn embed_texts(
    encoder: &SentenceEncoder,
    cache: &mut EmbeddingCache,
    texts: &[&str],
    progress: &mut dyn FnMut(Progress),
) -> Result<(), TrainError> {
    let mut seen = std::collections::HashSet::new();
    let distinct: Vec<&str> = texts.iter().copied().filter(|t| seen.insert(*t)).collect();
    let missing: Vec<&str> = distinct
        .iter()
        .copied()
        .filter(|t| cache.get(t).is_none())
        .collect();
    let total = distinct.len();
    let mut done = total - missing.len();
    progress(Progress::Embedding { done, total });
    for chunk in missing.chunks(2048) {
        let vecs = encoder.embed(chunk)?;
        cache.insert_all(chunk.iter().map(|t| t.to_string()).zip(vecs).collect())?;
        done += chunk.len();
        progress(Progress::Embedding { done, total });
    }
    Ok(())
}

fn head_probs(mlp: &Mlp, xs: &[&Vec<f32>]) -> Result<Vec<Vec<f32>>, TrainError> {
    if xs.is_empty() {
        return Ok(Vec::new());
    }
    let d = xs[0].len();
    let flat: Vec<f32> = xs.iter().flat_map(|v| v.iter().copied()).collect();
    let x = Tensor::from_vec(flat, (xs.len(), d), &Device::Cpu)?;
    let mut p = mlp.logits(&x)?.to_vec2::<f32>()?;
    for row in &mut p {
        detox_core::Activation::Sigmoid.apply(row);
    }
    Ok(p)
}

/// Dev metrics of probabilities `p` (aligned with `examples`) on the dev split.
pub fn dev_metrics(examples: &[Example], p: &[Vec<f32>], attributes: &[String]) -> Vec<DevMetric> {
    let mut sources: Vec<&str> = examples.iter().map(|e| e.source.as_str()).collect();
    sources.sort();
    sources.dedup();
    let mut out = Vec::new();
    for src in sources {
        for (a, attr) in attributes.iter().enumerate() {
            let (mut s, mut t) = (Vec::new(), Vec::new());
            let mut perspective = false;
            for (e, pi) in examples.iter().zip(p) {
                if e.source != src || e.split() != Split::Dev {
                    continue;
                }
                if let Some(y) = e.targets.get(a).copied().flatten() {
                    s.push(pi[a] as f64);
                    t.push(y as f64);
                    perspective |= e.perspective;
                }
            }
            if s.len() < 10 {
                continue;
            }
            let labels: Vec<bool> = t.iter().map(|&y| y >= 0.5).collect();
            out.push(DevMetric {
                source: src.to_string(),
                attribute: attr.clone(),
                n: s.len(),
                auc: roc_auc(&s, &labels),
                spearman: if perspective { spearman(&s, &t) } else { None },
            });
        }
    }
    out
}

/// The indices of `examples` in `split`.
fn split_indices(examples: &[Example], split: Split) -> Vec<usize> {
    (0..examples.len())
        .filter(|&i| examples[i].split() == split)
        .collect()
}

/// Whether an example is a calibration target: a training-split text scored by Perspective in
/// [`data::CALIBRATION_YEAR`] (sources absent from [`data::PERSPECTIVE_YEARS`] count, so a
/// user's own Perspective-scored files calibrate too).
fn calibrates(e: &Example) -> bool {
    e.perspective
        && e.split() == Split::Train
        && data::perspective_year(&e.source).is_none_or(|y| y == data::CALIBRATION_YEAR)
}

/// Fits a model on the examples at the first indices and returns its probability rows for the
/// examples at the second.
type FitPredict<'a> = dyn FnMut(&[usize], &[usize]) -> Result<Vec<Vec<f32>>, TrainError> + 'a;

/// Out-of-fold probabilities of the calibration examples ([`calibrates`]): for each of
/// `folds` folds (by hash of source and key), a model fitted on the training examples of the
/// other folds predicts the fold's calibration examples. `fit_predict(fit, predict)` fits on
/// the indices `fit` and returns one probability row per index of `predict`.
fn out_of_fold(
    examples: &[Example],
    folds: usize,
    progress: &mut dyn FnMut(Progress),
    fit_predict: &mut FitPredict<'_>,
) -> Result<Vec<Option<Vec<f32>>>, TrainError> {
    let mut out = vec![None; examples.len()];
    for f in 0..folds {
        progress(Progress::Fold { fold: f + 1, folds });
        let (mut fit, mut predict) = (Vec::new(), Vec::new());
        for (i, e) in examples.iter().enumerate() {
            if e.split() != Split::Train {
                continue;
            }
            if e.fold(folds) != f {
                fit.push(i);
            } else if calibrates(e) {
                predict.push(i);
            }
        }
        let p = fit_predict(&fit, &predict)?;
        for (&i, row) in predict.iter().zip(p) {
            out[i] = Some(row);
        }
    }
    Ok(out)
}

/// The out-of-fold probabilities of [`out_of_fold`] when `opts` calibrates with at least two
/// folds; `None` (in-sample calibration, or none) otherwise.
fn cross_fit(
    examples: &[Example],
    opts: &TrainOptions,
    progress: &mut dyn FnMut(Progress),
    fit_predict: &mut FitPredict<'_>,
) -> Result<Option<Vec<Option<Vec<f32>>>>, TrainError> {
    if opts.calibrate && opts.folds >= 2 {
        out_of_fold(examples, opts.folds, progress, fit_predict).map(Some)
    } else {
        Ok(None)
    }
}

/// A trained member before it is written: its probabilities on every example, the
/// calibration fitted for it, and its out-of-fold probabilities (when cross-fitted).
struct Member {
    probs: Vec<Vec<f32>>,
    calibration: BTreeMap<String, Isotonic>,
    oof: Option<Vec<Option<Vec<f32>>>>,
    report: TrainReport,
}

/// The member's calibration: from the out-of-fold probabilities when `oof` is given
/// (cross-fitted: no example calibrates the model that was fitted on it), else from the final
/// model's own probabilities on its training split (in-sample).
fn member_calibration(
    examples: &[Example],
    probs: &[Vec<f32>],
    oof: Option<&[Option<Vec<f32>>]>,
    opts: &TrainOptions,
) -> BTreeMap<String, Isotonic> {
    let rows: Vec<Option<&[f32]>> = match oof {
        Some(o) => o.iter().map(|r| r.as_deref()).collect(),
        None => probs.iter().map(|r| Some(r.as_slice())).collect(),
    };
    fit_calibration(examples, &rows, opts)
}

/// Trains a head on `examples` and writes the scorer folder `out` (atomically).
pub fn train(
    examples: &[Example],
    opts: &TrainOptions,
    out: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<TrainReport, TrainError> {
    Ok(train_head_member(examples, opts, out, progress)?.report)
}

/// Embeds every text of `examples` (through the cache) and returns the encoder, the hash of
/// its weights and one vector per example.
fn embed_examples(
    examples: &[Example],
    opts: &TrainOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<(SentenceEncoder, String, Vec<Vec<f32>>), TrainError> {
    let encoder =
        SentenceEncoder::from_hf_dir(&opts.encoder_dir, opts.batch_size, Some(opts.max_tokens))?
            .with_parallel_batches(opts.parallel)
            .with_pooling(opts.pooling);
    let sha = detox_scorers::classifier::weights_sha256(&opts.encoder_dir)?;
    let mut cache = EmbeddingCache::open(
        &opts.cache_dir,
        &format!(
            "{}-{}-{}",
            &sha[..16],
            encoder.max_tokens(),
            opts.pooling.name().replace('+', "")
        ),
        encoder.dim(),
    )?;
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    embed_texts(&encoder, &mut cache, &texts, progress)?;
    let emb = examples
        .iter()
        .map(|e| {
            cache
                .get(&e.text)
                .cloned()
                .ok_or_else(|| TrainError::Data("embedding missing after embedding".into()))
        })
        .collect::<Result<_, _>>()?;
    Ok((encoder, sha, emb))
}

/// The targets and per-target weights of the examples at `idx`, as the fitters take them.
fn targets_and_weights(
    examples: &[Example],
    idx: &[usize],
    opts: &TrainOptions,
) -> (Vec<Vec<Option<f32>>>, Vec<Vec<f32>>) {
    let y = idx.iter().map(|&i| examples[i].targets.clone()).collect();
    (y, target_weights(examples, idx, opts))
}

/// Fits a head on the examples at `idx`.
fn fit_head(
    examples: &[Example],
    emb: &[Vec<f32>],
    idx: &[usize],
    opts: &TrainOptions,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<FittedHead, TrainError> {
    let x: Vec<Vec<f32>> = idx.iter().map(|&i| emb[i].clone()).collect();
    let (y, w) = targets_and_weights(examples, idx, opts);
    fit::fit(&x, &y, &w, &opts.fit, progress)
}

fn mlp_of(tensors: &HashMap<String, Tensor>) -> Mlp {
    Mlp::new(
        tensors["w1"].clone(),
        tensors["b1"].clone(),
        tensors.get("w2").cloned().zip(tensors.get("b2").cloned()),
    )
}

fn train_head_member(
    examples: &[Example],
    opts: &TrainOptions,
    out: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<Member, TrainError> {
    check_targets(examples, opts.attributes.len())?;
    if opts.fine_tune.layers > 0 && opts.pooling != detox_scorers::Pooling::Mean {
        return Err(TrainError::Data(
            "fine-tuning supports mean pooling only".into(),
        ));
    }
    let (encoder, sha, emb) = embed_examples(examples, opts, progress)?;
    let train_idx = split_indices(examples, Split::Train);
    // Cross-fitted calibration: heads fitted on the other folds predict each fold. Those heads
    // sit on the frozen encoder, so they stand for the final model only when it is not
    // fine-tuned; a fine-tuned head is calibrated on its own (in-sample) probabilities.
    let oof = if opts.fine_tune.layers > 0 {
        None
    } else {
        cross_fit(examples, opts, progress, &mut |fit, predict| {
            let h = fit_head(examples, &emb, fit, opts, &mut |_, _| {})?;
            let xs: Vec<&Vec<f32>> = predict.iter().map(|&i| &emb[i]).collect();
            head_probs(&mlp_of(&h.tensors), &xs)
        })?
    };
    let epochs = opts.fit.epochs;
    let FittedHead {
        tensors,
        final_loss,
    } = fit_head(examples, &emb, &train_idx, opts, &mut |epoch, loss| {
        progress(Progress::Epoch {
            epoch,
            epochs,
            loss,
        })
    })?;
    // Optionally, fine-tune the encoder's top blocks with the head, then embed every text
    // again with the tuned encoder.
    let (tensors, final_loss, overrides, emb) = if opts.fine_tune.layers > 0 {
        let train_texts: Vec<&str> = train_idx
            .iter()
            .map(|&i| examples[i].text.as_str())
            .collect();
        let (y, w) = targets_and_weights(examples, &train_idx, opts);
        let tuned = finetune::fine_tune(
            &encoder,
            &opts.encoder_dir,
            &train_texts,
            &y,
            &w,
            &tensors,
            &opts.fine_tune,
            &mut |epoch, step, steps, loss| {
                progress(Progress::Tune {
                    epoch,
                    step,
                    steps,
                    loss,
                })
            },
        )?;
        let tuned_encoder = SentenceEncoder::from_hf_dir_with(
            &opts.encoder_dir,
            opts.batch_size,
            Some(opts.max_tokens),
            &tuned.layers,
        )?
        .with_parallel_batches(opts.parallel)
        .with_pooling(opts.pooling);
        let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
        let vectors = tuned_encoder.embed(&texts)?;
        (tuned.head, tuned.final_loss, tuned.layers, vectors)
    } else {
        (tensors, final_loss, Vec::new(), emb)
    };
    let probs = head_probs(&mlp_of(&tensors), &emb.iter().collect::<Vec<_>>())?;

    // Calibration: a monotone map from the head's probability to the Perspective score.
    let calibration = member_calibration(examples, &probs, oof.as_deref(), opts);
    let dev = dev_metrics(examples, &probs, &opts.attributes);
    let keep: Vec<u32> = exported_indices(opts)?
        .into_iter()
        .map(|i| i as u32)
        .collect();
    let keep_t = Tensor::from_vec(keep.clone(), keep.len(), &Device::Cpu)?;
    let mut tensors = tensors;
    let (wname, bname) = if opts.fit.hidden == 0 {
        ("w1", "b1")
    } else {
        ("w2", "b2")
    };
    for name in [wname, bname] {
        let t = tensors[name].index_select(&keep_t, 0)?;
        tensors.insert(name.to_string(), t);
    }
    let report = TrainReport {
        train_examples: train_idx.len(),
        dev_examples: examples.len() - train_idx.len(),
        final_loss,
        dev,
    };
    let spec = HeadSpec {
        format: HEAD_FORMAT.into(),
        encoder: opts.encoder_name.clone(),
        encoder_sha256: Some(sha),
        pooling: opts.pooling.name().into(),
        max_tokens: encoder.max_tokens(),
        attributes: opts.exported.clone(),
        hidden: opts.fit.hidden,
        calibration: calibration.clone(),
        training: json!({
            "command": opts.command,
            "examples_per_source": examples_per_source(examples),
            "source_weights": opts.source_weights,
            "cross_weight": opts.cross_weight,
            "fit": opts.fit,
            "fine_tune": opts.fine_tune,
            "train_examples": report.train_examples,
            "dev_examples": report.dev_examples,
            "final_loss": final_loss,
            "dev_metrics": report.dev,
            "split": SPLIT_RULE,
            "calibration": calibration_note(opts, oof.is_some()),
            "identity_terms": identity_terms_trained(examples),
        }),
    };
    for (name, t) in overrides {
        tensors.insert(name, t);
    }
    write_head(out, &spec, &tensors)?;
    Ok(Member {
        probs,
        calibration,
        oof,
        report,
    })
}

/// How examples are split, as recorded in every trained folder.
const SPLIT_RULE: &str =
    "sha256(source, NUL, key): first byte % 10 == 0 is dev, == 1 is test, else train";

/// How the calibration was fitted (`cross_fitted`: on out-of-fold probabilities), as recorded
/// in every trained folder.
fn calibration_note(opts: &TrainOptions, cross_fitted: bool) -> serde_json::Value {
    json!({
        "method": "isotonic regression per attribute onto Perspective scores, 64 knots",
        "fitted_on": if !opts.calibrate {
            "nothing: calibration was turned off".to_string()
        } else if cross_fitted {
            format!("out-of-fold probabilities of the training split ({} folds by the second byte of the split hash)", opts.folds)
        } else {
            "the final model's probabilities on the training split (in-sample)".to_string()
        },
        "perspective_year": data::CALIBRATION_YEAR,
        "perspective_sources": data::PERSPECTIVE_YEARS
            .iter()
            .map(|(s, y)| json!({"source": s, "year": y}))
            .collect::<Vec<_>>(),
    })
}

fn examples_per_source(examples: &[Example]) -> BTreeMap<&str, usize> {
    let mut per_source: BTreeMap<&str, usize> = BTreeMap::new();
    for e in examples {
        *per_source.entry(e.source.as_str()).or_default() += 1;
    }
    per_source
}

/// Weights per training example and target: the source's weight, times `cross_weight` for
/// exported targets learnt from sources that are not Perspective-scored (when there are
/// auxiliary targets to carry those sources' own definitions).
fn target_weights(examples: &[Example], idx: &[usize], opts: &TrainOptions) -> Vec<Vec<f32>> {
    idx.iter()
        .map(|&i| {
            let e = &examples[i];
            let sw = *opts.source_weights.get(&e.source).unwrap_or(&1.0);
            opts.attributes
                .iter()
                .map(|a| {
                    if !e.perspective
                        && opts.exported.contains(a)
                        && opts.exported.len() < opts.attributes.len()
                    {
                        sw * opts.cross_weight
                    } else {
                        sw
                    }
                })
                .collect()
        })
        .collect()
}

/// Isotonic maps from probabilities to Perspective scores for the exported attributes, fitted
/// on the calibration examples ([`calibrates`]) that have a probability row (64 knots).
fn fit_calibration(
    examples: &[Example],
    probs: &[Option<&[f32]>],
    opts: &TrainOptions,
) -> BTreeMap<String, Isotonic> {
    let mut calibration = BTreeMap::new();
    if !opts.calibrate {
        return calibration;
    }
    for (a, attr) in opts.attributes.iter().enumerate() {
        if !opts.exported.contains(attr) {
            continue;
        }
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for (e, p) in examples.iter().zip(probs) {
            if let (true, Some(p), Some(t)) = (calibrates(e), p, e.targets[a]) {
                xs.push(p[a] as f64);
                ys.push(t as f64);
            }
        }
        if xs.len() >= 50 {
            if let Some(iso) = Isotonic::fit(&xs, &ys) {
                calibration.insert(attr.clone(), iso.thin(64));
            }
        }
    }
    calibration
}

/// The positions of the exported attributes among the targets.
fn exported_indices(opts: &TrainOptions) -> Result<Vec<usize>, TrainError> {
    opts.exported
        .iter()
        .map(|a| {
            opts.attributes.iter().position(|b| b == a).ok_or_else(|| {
                TrainError::Data(format!("exported attribute `{a}` is not a target"))
            })
        })
        .collect()
}

fn check_targets(examples: &[Example], k: usize) -> Result<(), TrainError> {
    if let Some(e) = examples.iter().find(|e| e.targets.len() != k) {
        return Err(TrainError::Data(format!(
            "example from {} has {} targets for {k} attributes",
            e.source,
            e.targets.len()
        )));
    }
    Ok(())
}

/// Trains the n-gram model on `examples` and writes its folder `out`.
pub fn train_ngram(
    examples: &[Example],
    opts: &TrainOptions,
    cfg: &ngram_fit::NgramConfig,
    out: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<TrainReport, TrainError> {
    Ok(train_ngram_member(examples, opts, cfg, out, progress)?.report)
}

/// Fits an n-gram model on the examples at `idx`: (weights, bias) over all targets.
fn fit_ngram_on(
    examples: &[Example],
    idx: &[usize],
    opts: &TrainOptions,
    cfg: &ngram_fit::NgramConfig,
    progress: &mut dyn FnMut(usize, f64),
) -> (Vec<f32>, Vec<f32>) {
    let texts: Vec<&str> = idx.iter().map(|&i| examples[i].text.as_str()).collect();
    let (y, w) = targets_and_weights(examples, idx, opts);
    ngram_fit::fit_ngram(&texts, &y, &w, cfg, progress)
}

/// An n-gram model over all targets, uncalibrated, for its probabilities.
fn ngram_model(
    opts: &TrainOptions,
    cfg: &ngram_fit::NgramConfig,
    weights: Vec<f32>,
    bias: Vec<f32>,
) -> Result<detox_scorers::ngram::NgramScorer, TrainError> {
    use detox_scorers::ngram::{NgramScorer, NgramSpec, NGRAM_FORMAT};
    let full = NgramSpec {
        format: NGRAM_FORMAT.into(),
        bits: cfg.bits,
        attributes: opts.attributes.clone(),
        calibration: BTreeMap::new(),
        training: serde_json::Value::Null,
    };
    Ok(NgramScorer::new(full, weights, bias, "training")?)
}

fn ngram_probs(
    model: &detox_scorers::ngram::NgramScorer,
    examples: &[Example],
    idx: &[usize],
) -> Vec<Vec<f32>> {
    idx.iter()
        .map(|&i| {
            let mut z = model.logits(&examples[i].text);
            detox_core::Activation::Sigmoid.apply(&mut z);
            z
        })
        .collect()
}

fn train_ngram_member(
    examples: &[Example],
    opts: &TrainOptions,
    cfg: &ngram_fit::NgramConfig,
    out: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<Member, TrainError> {
    use detox_scorers::ngram::{NgramSpec, NGRAM_FORMAT, NGRAM_SPEC, NGRAM_WEIGHTS};
    let k = opts.attributes.len();
    check_targets(examples, k)?;
    let train_idx = split_indices(examples, Split::Train);
    let oof = cross_fit(examples, opts, progress, &mut |fit, predict| {
        let (w, b) = fit_ngram_on(examples, fit, opts, cfg, &mut |_, _| {});
        Ok(ngram_probs(
            &ngram_model(opts, cfg, w, b)?,
            examples,
            predict,
        ))
    })?;
    let epochs = cfg.epochs;
    let (weights, bias) = fit_ngram_on(examples, &train_idx, opts, cfg, &mut |epoch, loss| {
        progress(Progress::Epoch {
            epoch,
            epochs,
            loss,
        })
    });
    let model = ngram_model(opts, cfg, weights.clone(), bias.clone())?;
    let all: Vec<usize> = (0..examples.len()).collect();
    let probs = ngram_probs(&model, examples, &all);
    let calibration = member_calibration(examples, &probs, oof.as_deref(), opts);
    let dev = dev_metrics(examples, &probs, &opts.attributes);
    let keep = exported_indices(opts)?;
    let kept_w: Vec<f32> = weights
        .chunks_exact(k)
        .flat_map(|row| keep.iter().map(move |&i| row[i]))
        .collect();
    let kept_b: Vec<f32> = keep.iter().map(|&i| bias[i]).collect();
    let report = TrainReport {
        train_examples: train_idx.len(),
        dev_examples: examples.len() - train_idx.len(),
        final_loss: f64::NAN,
        dev,
    };
    let spec = NgramSpec {
        format: NGRAM_FORMAT.into(),
        bits: cfg.bits,
        attributes: opts.exported.clone(),
        calibration: calibration.clone(),
        training: json!({
            "command": opts.command,
            "config": cfg,
            "examples_per_source": examples_per_source(examples),
            "source_weights": opts.source_weights,
            "cross_weight": opts.cross_weight,
            "train_examples": report.train_examples,
            "dev_examples": report.dev_examples,
            "dev_metrics": report.dev,
            "split": SPLIT_RULE,
            "calibration": calibration_note(opts, oof.is_some()),
            "identity_terms": identity_terms_trained(examples),
        }),
    };
    let mut tensors = HashMap::new();
    tensors.insert(
        "w".to_string(),
        Tensor::from_vec(kept_w, (1usize << cfg.bits, keep.len()), &Device::Cpu)?,
    );
    tensors.insert(
        "b".to_string(),
        Tensor::from_vec(kept_b, keep.len(), &Device::Cpu)?,
    );
    write_folder(
        out,
        NGRAM_SPEC,
        &serde_json::to_string_pretty(&spec).map_err(|e| TrainError::Data(e.to_string()))?,
        NGRAM_WEIGHTS,
        &tensors,
    )?;
    Ok(Member {
        probs,
        calibration,
        oof,
        report,
    })
}

/// The identity terms the training examples name through this project's counter-examples
/// ([`identity::TERMS`], when any example comes from them), recorded in the scorer folder's
/// `training.identity_terms` so `detox audit scorer` reports those terms apart.
fn identity_terms_trained(examples: &[Example]) -> Vec<&'static str> {
    if examples.iter().any(|e| e.source == identity::SOURCE) {
        identity::TERMS.to_vec()
    } else {
        Vec::new()
    }
}

/// Writes a head folder atomically (a temporary sibling renamed into place).
pub fn write_head(
    out: &Path,
    spec: &HeadSpec,
    tensors: &HashMap<String, Tensor>,
) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(spec).map_err(|e| TrainError::Data(e.to_string()))?;
    write_folder(out, HEAD_SPEC, &text, HEAD_WEIGHTS, tensors)
}

/// Writes `spec_name` and `weights_name` into `out` atomically (a temporary sibling renamed
/// into place); other files already in `out` are kept.
fn write_folder(
    out: &Path,
    spec_name: &str,
    spec_text: &str,
    weights_name: &str,
    tensors: &HashMap<String, Tensor>,
) -> Result<(), TrainError> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| TrainError::Io(parent.display().to_string(), e))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "head".into());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::Io(tmp.display().to_string(), e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::Io(tmp.display().to_string(), e))?;
    let sp = tmp.join(spec_name);
    std::fs::write(&sp, format!("{spec_text}\n"))
        .map_err(|e| TrainError::Io(sp.display().to_string(), e))?;
    candle_core::safetensors::save(tensors, tmp.join(weights_name))?;
    if out.exists() {
        // Files of the old folder that training does not write (a README, say) move over.
        let entries =
            std::fs::read_dir(out).map_err(|e| TrainError::Io(out.display().to_string(), e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            if entry.path().is_file() && !tmp.join(&name).exists() {
                std::fs::rename(entry.path(), tmp.join(&name))
                    .map_err(|e| TrainError::Io(entry.path().display().to_string(), e))?;
            }
        }
        std::fs::remove_dir_all(out).map_err(|e| TrainError::Io(out.display().to_string(), e))?;
    }
    std::fs::rename(&tmp, out).map_err(|e| TrainError::Io(out.display().to_string(), e))?;
    Ok(())
}

/// What `train_default` measured: each member's report and the calibrated ensemble's dev
/// metrics.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DefaultReport {
    /// The encoder head.
    pub head: TrainReport,
    /// The n-gram model.
    pub ngram: TrainReport,
    /// The ensemble (the calibrated mean of both) on the dev splits, exported attributes only.
    pub ensemble_dev: Vec<DevMetric>,
}

/// The member folders `train_default` writes under its output folder.
pub const DEFAULT_MEMBERS: [&str; 2] = ["default", "fast"];

/// Trains the built-in pair and calibrates their mean as a whole: an encoder head in
/// `out/default`, an n-gram model in `out/fast`, and `out/ensemble.json` (see
/// [`detox_core::EnsembleSpec`]), which makes `out` loadable as one scorer.
///
/// Calibration is cross-fitted (`opts.folds` >= 2 required): each member's isotonic map is
/// fitted on its out-of-fold probabilities of the calibration texts; the ensemble's map is then
/// fitted on the mean of the members' calibrated out-of-fold probabilities, so neither the
/// members' maps nor the ensemble's ever see a probability from a model fitted on that text.
pub fn train_default(
    examples: &[Example],
    opts: &TrainOptions,
    ngram_cfg: &ngram_fit::NgramConfig,
    out: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<DefaultReport, TrainError> {
    if opts.folds < 2 || !opts.calibrate {
        return Err(TrainError::Data(
            "the default pair is calibrated as a whole by cross-fitting: give at least 2 folds and keep calibration on".into(),
        ));
    }
    if opts.fine_tune.layers > 0 {
        return Err(TrainError::Data(
            "the default pair's calibration is cross-fitted on frozen-encoder heads: train it without fine-tuning".into(),
        ));
    }
    let head = train_head_member(examples, opts, &out.join(DEFAULT_MEMBERS[0]), progress)?;
    let ngram = train_ngram_member(
        examples,
        opts,
        ngram_cfg,
        &out.join(DEFAULT_MEMBERS[1]),
        progress,
    )?;
    let members = [&head, &ngram];
    let exported = exported_indices(opts)?;
    // The members' calibrated mean of an example's row (exported attributes, in opts order).
    let mean = |rows: [&[f32]; 2]| -> Vec<f32> {
        let mut v = rows[0].to_vec();
        for &a in &exported {
            let attr = &opts.attributes[a];
            let sum: f64 = members
                .iter()
                .zip(rows)
                .map(|(m, r)| match m.calibration.get(attr) {
                    Some(c) => c.apply(r[a] as f64),
                    None => r[a] as f64,
                })
                .sum();
            v[a] = (sum / members.len() as f64) as f32;
        }
        v
    };
    let (Some(oof_h), Some(oof_n)) = (&head.oof, &ngram.oof) else {
        return Err(TrainError::Data(
            "cross-fitting produced no out-of-fold rows".into(),
        ));
    };
    let oof_mean: Vec<Option<Vec<f32>>> = oof_h
        .iter()
        .zip(oof_n)
        .map(|(h, n)| match (h, n) {
            (Some(h), Some(n)) => Some(mean([h, n])),
            _ => None,
        })
        .collect();
    let rows: Vec<Option<&[f32]>> = oof_mean.iter().map(|r| r.as_deref()).collect();
    let calibration = fit_calibration(examples, &rows, opts);
    // Dev metrics of the calibrated ensemble of the final members.
    let final_rows: Vec<Vec<f32>> = head
        .probs
        .iter()
        .zip(&ngram.probs)
        .map(|(h, n)| {
            let mut v = mean([h, n]);
            for &a in &exported {
                if let Some(c) = calibration.get(&opts.attributes[a]) {
                    v[a] = c.apply(v[a] as f64) as f32;
                }
            }
            v
        })
        .collect();
    let ensemble_dev: Vec<DevMetric> = dev_metrics(examples, &final_rows, &opts.attributes)
        .into_iter()
        .filter(|m| opts.exported.contains(&m.attribute))
        .collect();
    let spec = detox_core::EnsembleSpec {
        format: detox_core::ENSEMBLE_FORMAT.into(),
        members: DEFAULT_MEMBERS.iter().map(|m| m.to_string()).collect(),
        calibration,
        training: json!({
            "command": opts.command,
            "combination": "mean of the members' calibrated probabilities, then the ensemble's own isotonic map per attribute",
            "calibration": calibration_note(opts, true),
            "split": SPLIT_RULE,
            "dev_metrics": ensemble_dev,
        }),
    };
    let text = serde_json::to_string_pretty(&spec).map_err(|e| TrainError::Data(e.to_string()))?;
    detox_io::files::write_atomic(
        &out.join(detox_core::ENSEMBLE_SPEC),
        format!("{text}\n").as_bytes(),
    )?;
    Ok(DefaultReport {
        head: head.report,
        ngram: ngram.report,
        ensemble_dev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(i: usize, perspective: bool) -> Example {
        Example {
            text: format!("text {i}"),
            targets: vec![Some(0.5)],
            source: "s".into(),
            key: i.to_string(),
            perspective,
        }
    }

    #[test]
    fn out_of_fold_rows_never_come_from_a_model_fitted_on_them() {
        let examples: Vec<Example> = (0..400).map(|i| example(i, i % 3 != 0)).collect();
        let mut calls = 0;
        let oof = out_of_fold(&examples, 4, &mut |_| {}, &mut |fit, predict| {
            calls += 1;
            for i in predict {
                assert!(!fit.contains(i), "{i} predicted by a model fitted on it");
                assert!(calibrates(&examples[*i]));
            }
            // Every training example is fitted on by all folds but its own.
            assert!(fit.iter().all(|&i| examples[i].split() == Split::Train));
            Ok(predict.iter().map(|&i| vec![i as f32]).collect())
        })
        .unwrap();
        assert_eq!(calls, 4);
        for (i, (e, row)) in examples.iter().zip(&oof).enumerate() {
            match row {
                Some(r) => assert_eq!(r, &vec![i as f32], "rows land on their examples"),
                None => assert!(!calibrates(e), "{i} calibrates but has no row"),
            }
        }
        assert!(oof.iter().filter(|r| r.is_some()).count() > 200);
    }
}
