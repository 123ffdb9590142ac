//! Training detox scorers.
//!
//! `detox train` turns labelled texts into a [`detox_scorers::HeadScorer`] folder: texts are
//! embedded once with a registry encoder (mean pooling; vectors cached on disk so an
//! interrupted run resumes where it stopped), a small head is fitted with candle's autograd
//! ([`fit`]), and each attribute is calibrated with isotonic regression onto the Perspective
//! scores of RealToxicityPrompts texts, so that 0.5 means what it means to Perspective users.
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
    /// Dev examples.
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

/// Trains a head on `examples` and writes the scorer folder `out` (atomically).
pub fn train(
    examples: &[Example],
    opts: &TrainOptions,
    out: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<TrainReport, TrainError> {
    check_targets(examples, opts.attributes.len())?;
    if opts.fine_tune.layers > 0 && opts.pooling != detox_scorers::Pooling::Mean {
        return Err(TrainError::Data(
            "fine-tuning supports mean pooling only".into(),
        ));
    }
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
    let emb: Vec<&Vec<f32>> = examples
        .iter()
        .map(|e| {
            cache
                .get(&e.text)
                .ok_or_else(|| TrainError::Data("embedding missing after embedding".into()))
        })
        .collect::<Result<_, _>>()?;

    let train_idx: Vec<usize> = (0..examples.len())
        .filter(|&i| examples[i].split() == Split::Train)
        .collect();
    let x: Vec<Vec<f32>> = train_idx.iter().map(|&i| emb[i].clone()).collect();
    let y: Vec<Vec<Option<f32>>> = train_idx
        .iter()
        .map(|&i| examples[i].targets.clone())
        .collect();
    let w = target_weights(examples, &train_idx, opts);
    let epochs = opts.fit.epochs;
    let FittedHead {
        tensors,
        final_loss,
    } = fit::fit(&x, &y, &w, &opts.fit, &mut |epoch, loss| {
        progress(Progress::Epoch {
            epoch,
            epochs,
            loss,
        })
    })?;
    // Optionally, fine-tune the encoder's top blocks with the head, then embed every text
    // again with the tuned encoder.
    let (tensors, final_loss, overrides, tuned_emb) = if opts.fine_tune.layers > 0 {
        let train_texts: Vec<&str> = train_idx
            .iter()
            .map(|&i| examples[i].text.as_str())
            .collect();
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
        let vectors = tuned_encoder.embed(&texts)?;
        (tuned.head, tuned.final_loss, tuned.layers, Some(vectors))
    } else {
        (tensors, final_loss, Vec::new(), None)
    };
    let emb: Vec<&Vec<f32>> = match &tuned_emb {
        Some(v) => v.iter().collect(),
        None => emb,
    };
    let mlp = Mlp::new(
        tensors["w1"].clone(),
        tensors["b1"].clone(),
        tensors.get("w2").cloned().zip(tensors.get("b2").cloned()),
    );
    let probs = head_probs(&mlp, &emb)?;

    // Calibration: a monotone map from the head's probability to the Perspective score,
    // fitted on the training split of Perspective-scored examples.
    let calibration = fit_calibration(examples, &probs, opts);
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
    let mut per_source: BTreeMap<&str, usize> = BTreeMap::new();
    for e in examples {
        *per_source.entry(e.source.as_str()).or_default() += 1;
    }
    let spec = HeadSpec {
        format: HEAD_FORMAT.into(),
        encoder: opts.encoder_name.clone(),
        encoder_sha256: Some(sha),
        pooling: opts.pooling.name().into(),
        max_tokens: encoder.max_tokens(),
        attributes: opts.exported.clone(),
        hidden: opts.fit.hidden,
        calibration,
        training: json!({
            "command": opts.command,
            "examples_per_source": per_source,
            "source_weights": opts.source_weights,
            "cross_weight": opts.cross_weight,
            "fit": opts.fit,
            "fine_tune": opts.fine_tune,
            "train_examples": report.train_examples,
            "dev_examples": report.dev_examples,
            "final_loss": final_loss,
            "dev_metrics": report.dev,
            "split": "sha256(source, key): first byte % 10 == 0 is dev",
            "identity_terms": identity_terms_trained(examples),
        }),
    };
    for (name, t) in overrides {
        tensors.insert(name, t);
    }
    write_head(out, &spec, &tensors)?;
    Ok(report)
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

/// Isotonic maps from probabilities to Perspective scores, fitted on the training split of
/// Perspective-scored examples (64 knots), for the exported attributes.
fn fit_calibration(
    examples: &[Example],
    probs: &[Vec<f32>],
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
            if e.perspective && e.split() == Split::Train {
                if let Some(t) = e.targets[a] {
                    xs.push(p[a] as f64);
                    ys.push(t as f64);
                }
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
    use detox_scorers::ngram::{NgramScorer, NgramSpec, NGRAM_FORMAT, NGRAM_SPEC, NGRAM_WEIGHTS};
    let k = opts.attributes.len();
    check_targets(examples, k)?;
    let train_idx: Vec<usize> = (0..examples.len())
        .filter(|&i| examples[i].split() == Split::Train)
        .collect();
    let texts: Vec<&str> = train_idx
        .iter()
        .map(|&i| examples[i].text.as_str())
        .collect();
    let y: Vec<Vec<Option<f32>>> = train_idx
        .iter()
        .map(|&i| examples[i].targets.clone())
        .collect();
    let w = target_weights(examples, &train_idx, opts);
    let epochs = cfg.epochs;
    let (weights, bias) = ngram_fit::fit_ngram(&texts, &y, &w, cfg, &mut |epoch, loss| {
        progress(Progress::Epoch {
            epoch,
            epochs,
            loss,
        })
    });
    let full = NgramSpec {
        format: NGRAM_FORMAT.into(),
        bits: cfg.bits,
        attributes: opts.attributes.clone(),
        calibration: BTreeMap::new(),
        training: serde_json::Value::Null,
    };
    let model = NgramScorer::new(full, weights.clone(), bias.clone(), "training")?;
    let probs: Vec<Vec<f32>> = examples
        .iter()
        .map(|e| {
            let mut z = model.logits(&e.text);
            detox_core::Activation::Sigmoid.apply(&mut z);
            z
        })
        .collect();
    let calibration = fit_calibration(examples, &probs, opts);
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
        calibration,
        training: json!({
            "command": opts.command,
            "config": cfg,
            "source_weights": opts.source_weights,
            "cross_weight": opts.cross_weight,
            "train_examples": report.train_examples,
            "dev_examples": report.dev_examples,
            "dev_metrics": report.dev,
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
    Ok(report)
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
/// into place).
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
        std::fs::remove_dir_all(out).map_err(|e| TrainError::Io(out.display().to_string(), e))?;
    }
    std::fs::rename(&tmp, out).map_err(|e| TrainError::Io(out.display().to_string(), e))?;
    Ok(())
}
