//! Turning a `--scorer` value (a registry name, a path, `default`) into a loaded scorer.

use anyhow::{Context, Result};
use detox_core::Scorer;
use detox_hub::{Hub, PullOptions};
use detox_scorers::folder::read_model_folder;
use detox_scorers::head::{HEAD_SPEC, HEAD_WEIGHTS};
use detox_scorers::ngram::NGRAM_SPEC;
use detox_scorers::{
    load_scorer, read_checkpoint_meta, ClassifierOptions, HeadScorer, HeadSpec, NgramScorer,
};
use std::path::{Path, PathBuf};

/// The scorer every command uses when `--scorer` is not given.
pub const DEFAULT_SCORER: &str = "default";

/// Prints hub messages on stderr.
pub fn notify(msg: &str) {
    eprintln!("detox: {msg}");
}

/// Sets up compute threads for this process and returns how many there are: a rayon pool of
/// `threads` (default: all cores) that runs batches side by side, while candle's kernels run
/// single-threaded inside each batch (no nested pools fighting over the same cores).
pub fn set_threads(threads: Option<usize>) -> usize {
    let n = threads.filter(|&n| n > 0).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    // candle reads these on every matrix product / element-wise op; set them before any runs.
    std::env::set_var("RAYON_NUM_THREADS", "1");
    std::env::set_var("CANDLE_NUM_THREADS", "1");
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "0");
    }
    n
}

/// Resolves a scorer spec to a local path, pulling registry models unless offline.
pub fn resolve_path(spec: &str, offline: bool) -> Result<PathBuf> {
    let hub = Hub::from_env();
    let opts = PullOptions {
        offline,
        ..Default::default()
    };
    Ok(hub.resolve(spec, &opts, &notify)?)
}

/// For a Detoxify checkpoint without its base config beside it, finds the base model
/// (`bert-base-uncased`, ...) in the registry.
fn detoxify_base(path: &Path, offline: bool) -> Result<Option<PathBuf>> {
    let ckpt = if path.is_file() {
        path.to_path_buf()
    } else {
        return Ok(None);
    };
    if ckpt
        .parent()
        .map(|p| p.join("config.json").exists())
        .unwrap_or(false)
    {
        return Ok(None);
    }
    let meta = read_checkpoint_meta(&ckpt)?;
    let Some(model_type) = meta
        .pointer("/config/arch/args/model_type")
        .and_then(|v| v.as_str())
    else {
        return Ok(None);
    };
    let hub = Hub::from_env();
    if hub.entry(model_type).is_none() {
        return Ok(None);
    }
    let opts = PullOptions {
        offline,
        ..Default::default()
    };
    Ok(Some(hub.resolve(model_type, &opts, &notify)?))
}

/// The built-in scorer's head (the encoder is pulled; see `models/default/README.md`).
const BUILTIN_SPEC: &str = include_str!("../../../models/default/detox-head.json");
const BUILTIN_WEIGHTS: &[u8] = include_bytes!("../../../models/default/head.safetensors");

/// The built-in n-gram model (`--scorer fast`).
const BUILTIN_FAST_SPEC: &str = include_str!("../../../models/fast/detox-ngram.json");
const BUILTIN_FAST_WEIGHTS: &[u8] = include_bytes!("../../../models/fast/ngram.safetensors");

/// The built-in n-gram scorer's name.
pub const FAST_SCORER: &str = "fast";

/// The built-in encoder head alone.
pub const DEFAULT_HEAD_SCORER: &str = "default-head";

/// Loads a head scorer, resolving its encoder through the registry.
fn load_head(
    spec_text: &str,
    weights: &[u8],
    id: &str,
    opts: &ClassifierOptions,
    offline: bool,
) -> Result<Box<dyn Scorer>> {
    let head = HeadSpec::parse(spec_text, id)?;
    let encoder_dir = resolve_path(&head.encoder, offline)
        .with_context(|| format!("the encoder `{}` of scorer `{id}`", head.encoder))?;
    if let (Some(want), Ok(have)) = (
        &head.encoder_sha256,
        detox_train::weights_sha256(&encoder_dir),
    ) {
        if *want != have {
            tracing::warn!(
                "encoder {} differs from the one `{id}` was trained on (sha256 {have}, expected {want})",
                encoder_dir.display()
            );
        }
    }
    Ok(Box::new(HeadScorer::from_parts(
        spec_text,
        weights,
        &encoder_dir,
        id,
        opts.batch_size,
        opts.parallel_batches,
    )?))
}

/// Loads a scorer with batches of `batch_size` run side by side on `threads` cores.
pub fn load_parallel(
    spec: &str,
    batch_size: usize,
    threads: usize,
    offline: bool,
) -> Result<Box<dyn Scorer>> {
    load(
        spec,
        None,
        ClassifierOptions {
            batch_size,
            parallel_batches: threads,
            ..Default::default()
        },
        offline,
    )
}

/// Loads the scorer a spec names.
pub fn load(
    spec: &str,
    base: Option<&Path>,
    opts: ClassifierOptions,
    offline: bool,
) -> Result<Box<dyn Scorer>> {
    if spec.contains(',') {
        let members = spec
            .split(',')
            .map(|m| load(m.trim(), base, opts.clone(), offline))
            .collect::<Result<Vec<_>>>()?;
        return Ok(Box::new(detox_core::Ensemble::new(members)?));
    }
    if spec == DEFAULT_SCORER {
        // The built-in scorer: the mean of the encoder head and the n-gram model, whose errors
        // differ (context vs words); both are calibrated to Perspective's scale.
        let members = vec![
            load(DEFAULT_HEAD_SCORER, base, opts.clone(), offline)?,
            load(FAST_SCORER, base, opts, offline)?,
        ];
        return Ok(Box::new(
            detox_core::Ensemble::new(members)?.with_id(DEFAULT_SCORER),
        ));
    }
    if spec == DEFAULT_HEAD_SCORER {
        return load_head(
            BUILTIN_SPEC,
            BUILTIN_WEIGHTS,
            DEFAULT_HEAD_SCORER,
            &opts,
            offline,
        );
    }
    if spec == FAST_SCORER {
        return Ok(Box::new(NgramScorer::from_parts(
            BUILTIN_FAST_SPEC,
            BUILTIN_FAST_WEIGHTS,
            FAST_SCORER,
        )?));
    }
    let path = resolve_path(spec, offline)?;
    if path.join(NGRAM_SPEC).exists() {
        return Ok(Box::new(NgramScorer::load(&path)?));
    }
    if path.join(HEAD_SPEC).exists() {
        let (text, weights) = read_model_folder(&path, HEAD_SPEC, HEAD_WEIGHTS)?;
        return load_head(&text, &weights, &path.display().to_string(), &opts, offline);
    }
    let base = match base {
        Some(b) => Some(b.to_path_buf()),
        None => detoxify_base(&path, offline)?,
    };
    load_scorer(&path, base.as_deref(), opts)
        .with_context(|| format!("cannot load scorer `{spec}`"))
}

fn sha256_bytes(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(b))
}

/// What a scorer spec names, with file hashes, for run records (`run.json`): built-in weights
/// by the hash of their bytes and the pinned encoder, folders and files by each file's hash.
pub fn identity(spec: &str, offline: bool) -> Result<serde_json::Value> {
    use serde_json::{json, Value};
    if spec.contains(',') {
        return Ok(Value::Array(
            spec.split(',')
                .map(|m| identity(m.trim(), offline))
                .collect::<Result<_>>()?,
        ));
    }
    match spec {
        DEFAULT_SCORER => Ok(json!({
            "name": DEFAULT_SCORER,
            "members": [identity(DEFAULT_HEAD_SCORER, offline)?, identity(FAST_SCORER, offline)?],
        })),
        DEFAULT_HEAD_SCORER => {
            let head = HeadSpec::parse(BUILTIN_SPEC, DEFAULT_HEAD_SCORER)?;
            Ok(json!({
                "name": DEFAULT_HEAD_SCORER,
                "weights_sha256": sha256_bytes(BUILTIN_WEIGHTS),
                "encoder": head.encoder,
                "encoder_sha256": head.encoder_sha256,
            }))
        }
        FAST_SCORER => Ok(json!({
            "name": FAST_SCORER,
            "weights_sha256": sha256_bytes(BUILTIN_FAST_WEIGHTS),
        })),
        _ => {
            let path = resolve_path(spec, offline)?;
            let mut files = serde_json::Map::new();
            if path.is_dir() {
                let mut names: Vec<String> = std::fs::read_dir(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().is_file())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| !n.starts_with('.') && n != "detox-model.json")
                    .collect();
                names.sort();
                for n in names {
                    files.insert(
                        n.clone(),
                        Value::String(detox_hub::sha256_file(&path.join(&n))?),
                    );
                }
            } else {
                files.insert(
                    path.display().to_string(),
                    Value::String(detox_hub::sha256_file(&path)?),
                );
            }
            Ok(json!({"name": spec, "path": path.display().to_string(), "sha256": files}))
        }
    }
}
