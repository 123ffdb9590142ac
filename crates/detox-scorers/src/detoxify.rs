//! Detoxify checkpoints: a PyTorch Lightning `.ckpt` holding `state_dict` (a transformers
//! `*ForSequenceClassification` state) and `config` (Detoxify's training config, which names the
//! base model and the class names). Scores are independent sigmoids, as Detoxify computes them,
//! with Detoxify's label renames (`toxic` -> `toxicity`, `severe_toxic` -> `severe_toxicity`,
//! `identity_hate` -> `identity_attack`).
//!
//! The checkpoint holds neither the base model's `config.json` nor its tokenizer (Detoxify fetches
//! them from the hub by the name in `config.arch.args.model_type`). detox reads them from the
//! checkpoint's own folder, or from a folder the caller passes (e.g. `detox models pull
//! bert-base-uncased`).

use crate::classifier::{ClassifierOptions, EncoderScorer};
use crate::models::config::HfConfig;
use crate::models::{load_encoder, Arch, Weights};
use crate::LoadError;
use candle_core::pickle::{Object, Stack};
use candle_core::Device;
use detox_core::Activation;
use serde_json::{Map, Value};
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// What a Detoxify checkpoint says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct DetoxifyMeta {
    /// `config.arch.args.model_type`: the base model (`bert-base-uncased`, `roberta-base`, ...).
    pub model_type: String,
    /// `config.arch.args.model_name`: the transformers class.
    pub model_name: String,
    /// Class names after Detoxify's renames.
    pub classes: Vec<String>,
}

fn pickle_to_json(obj: Object) -> Value {
    match obj {
        Object::Int(i) => Value::from(i),
        Object::Long(i) => Value::from(i),
        Object::Float(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Object::Unicode(s) => Value::String(s),
        Object::Bool(b) => Value::Bool(b),
        Object::None => Value::Null,
        Object::Tuple(v) | Object::List(v) => {
            Value::Array(v.into_iter().map(pickle_to_json).collect())
        }
        Object::Dict(kv) => {
            let mut m = Map::new();
            for (k, v) in kv {
                let key = match k {
                    Object::Unicode(s) => s,
                    Object::Int(i) => i.to_string(),
                    Object::Long(i) => i.to_string(),
                    _ => continue,
                };
                m.insert(key, pickle_to_json(v));
            }
            Value::Object(m)
        }
        _ => Value::Null,
    }
}

/// Reads the non-tensor part of a PyTorch zip checkpoint (`data.pkl`) as JSON.
pub fn read_checkpoint_meta(path: &Path) -> Result<Value, LoadError> {
    let err = |m: String| LoadError::Checkpoint {
        path: path.display().to_string(),
        message: m,
    };
    let f = std::fs::File::open(path).map_err(|e| LoadError::Io {
        path: path.display().to_string(),
        error: e,
    })?;
    let mut zip = zip::ZipArchive::new(BufReader::new(f))
        .map_err(|e| err(format!("not a PyTorch zip checkpoint: {e}")))?;
    let name = (0..zip.len())
        .filter_map(|i| {
            zip.name_for_index(i)
                .and_then(|r| r.ok())
                .map(|s| s.to_string())
        })
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| err("no data.pkl inside".into()))?;
    let entry = zip.by_name(&name).map_err(|e| err(e.to_string()))?;
    let mut reader = BufReader::new(entry);
    let mut stack = Stack::empty();
    stack
        .read_loop(&mut reader)
        .map_err(|e| err(format!("cannot unpickle: {e}")))?;
    let obj = stack
        .finalize()
        .map_err(|e| err(format!("cannot unpickle: {e}")))?;
    Ok(pickle_to_json(obj))
}

/// Detoxify's renames of Jigsaw class names.
pub fn detoxify_label(name: &str) -> String {
    match name {
        "toxic" => "toxicity".into(),
        "identity_hate" => "identity_attack".into(),
        "severe_toxic" => "severe_toxicity".into(),
        other => other.into(),
    }
}

/// Parses the Detoxify fields of a checkpoint's metadata.
pub fn detoxify_meta(meta: &Value, path: &Path) -> Result<DetoxifyMeta, LoadError> {
    let err = |m: &str| LoadError::Checkpoint {
        path: path.display().to_string(),
        message: m.to_string(),
    };
    let config = meta
        .get("config")
        .ok_or_else(|| err("no `config` entry (not a Detoxify checkpoint?)"))?;
    if meta.get("state_dict").is_none() {
        return Err(err("no `state_dict` entry"));
    }
    let args = config
        .pointer("/arch/args")
        .ok_or_else(|| err("no `config.arch.args`"))?;
    let s = |k: &str| {
        args.get(k)
            .and_then(|v| v.as_str())
            .map(String::from)
            .ok_or_else(|| err(&format!("no `config.arch.args.{k}`")))
    };
    let classes: Vec<String> = config
        .pointer("/dataset/args/classes")
        .and_then(|v| v.as_array())
        .ok_or_else(|| err("no `config.dataset.args.classes`"))?
        .iter()
        .map(|v| v.as_str().map(detoxify_label))
        .collect::<Option<_>>()
        .ok_or_else(|| err("`config.dataset.args.classes` is not a list of strings"))?;
    Ok(DetoxifyMeta {
        model_type: s("model_type")?,
        model_name: s("model_name")?,
        classes,
    })
}

/// Loads a Detoxify checkpoint. `base_dir` holds the base model's `config.json` and
/// tokenizer; `None` looks beside the checkpoint.
pub fn load_detoxify(
    ckpt: &Path,
    base_dir: Option<&Path>,
    opts: ClassifierOptions,
) -> Result<EncoderScorer, LoadError> {
    let meta = read_checkpoint_meta(ckpt)?;
    let dm = detoxify_meta(&meta, ckpt)?;
    let arch = match dm.model_name.as_str() {
        "BertForSequenceClassification" => Arch::Bert,
        "RobertaForSequenceClassification" => Arch::Roberta,
        "XLMRobertaForSequenceClassification" => Arch::XlmRoberta,
        "DistilBertForSequenceClassification" => Arch::DistilBert,
        other => {
            return Err(LoadError::Unsupported(format!(
                "{}: Detoxify model class `{other}` is not supported",
                ckpt.display()
            )))
        }
    };
    let base: PathBuf = match base_dir {
        Some(d) => d.to_path_buf(),
        None => ckpt.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let config_path = base.join("config.json");
    if !config_path.exists() {
        return Err(LoadError::BaseModel {
            ckpt: ckpt.display().to_string(),
            model_type: dm.model_type.clone(),
            dir: base.display().to_string(),
        });
    }
    let config = HfConfig::from_file(&config_path)?;
    let config_arch = config.arch()?;
    let compatible = config_arch == arch
        || matches!(
            (config_arch, arch),
            (Arch::XlmRoberta, Arch::Roberta) | (Arch::Roberta, Arch::XlmRoberta)
        );
    if !compatible {
        return Err(LoadError::Config(format!(
            "{}: model_type `{}` does not match the checkpoint's {}",
            config_path.display(),
            config_arch.name(),
            dm.model_name
        )));
    }
    let weights = Weights::load(ckpt, Some("state_dict"), &Device::Cpu)?.strip_prefix("model.");
    let model = load_encoder(&config, &weights, &Device::Cpu)?;
    if model.head.is_none() {
        return Err(LoadError::NoHead {
            path: ckpt.display().to_string(),
        });
    }
    let activation = opts.activation.unwrap_or(Activation::Sigmoid);
    let description = format!(
        "Detoxify checkpoint ({} on {}, {} classes)",
        dm.model_name,
        dm.model_type,
        dm.classes.len()
    );
    EncoderScorer::from_parts(
        model,
        &base,
        dm.classes,
        activation,
        &ckpt.display().to_string(),
        description,
        opts,
    )
}
