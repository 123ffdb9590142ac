//! One call from a `--model` value to a [`LanguageModel`]: a server address, a local GGUF file
//! or GPT-2 folder, or a registry name (pulled on first use unless offline).

use crate::decoding::MitigationSpec;
use crate::llama::WeightMode;
use crate::local::LocalLm;
use crate::openai::{is_url, OpenAiConfig, OpenAiLm};
use crate::{LanguageModel, LmError};
use detox_hub::{Hub, PullOptions};
use std::path::PathBuf;

/// How to load a language model.
#[derive(Debug, Clone)]
pub struct LmOptions {
    /// Local models: a `tokenizer.json` instead of the model's own.
    pub tokenizer: Option<PathBuf>,
    /// Local GGUF models: how weights are held.
    pub weights: WeightMode,
    /// Local models: prompts decoded side by side.
    pub threads: usize,
    /// Servers: everything but the address (taken from the spec).
    pub server: OpenAiConfig,
    /// Never download registry models.
    pub offline: bool,
    /// Decoding-time methods, applied in order (local models only).
    pub mitigations: Vec<MitigationSpec>,
}

impl Default for LmOptions {
    fn default() -> Self {
        Self {
            tokenizer: None,
            weights: WeightMode::F32,
            threads: 1,
            server: OpenAiConfig::default(),
            offline: false,
            mitigations: Vec::new(),
        }
    }
}

/// Loads what `spec` names: `http(s)://...` is an OpenAI-compatible server; anything else a
/// local path or a registry name, resolved through `hub` (pull messages go to `notify`).
pub fn load_language_model(
    spec: &str,
    opts: &LmOptions,
    hub: &Hub,
    notify: &dyn Fn(&str),
) -> Result<Box<dyn LanguageModel>, LmError> {
    if is_url(spec) {
        if let Some(m) = opts.mitigations.iter().find(|m| m.needs_logits()) {
            return Err(LmError::Unsupported(format!(
                "--mitigate {} changes the model's next-token logits, which a completions server does not give; use a local model (a GGUF file or a GPT-2 folder)",
                m.name()
            )));
        }
        let lm = OpenAiLm::connect(OpenAiConfig {
            base_url: spec.to_string(),
            ..opts.server.clone()
        })?;
        return Ok(Box::new(lm));
    }
    let pull = PullOptions {
        offline: opts.offline,
        ..Default::default()
    };
    let path = hub.resolve(spec, &pull, notify)?;
    let lm = LocalLm::load_with(
        &path,
        &candle_core::Device::Cpu,
        opts.weights,
        opts.tokenizer.as_deref(),
    )?
    .with_concurrency(opts.threads)
    .with_mitigations(&opts.mitigations)?;
    Ok(Box::new(lm))
}

/// Reads the safetensors weights of a folder (`model.safetensors` or the shards that
/// `model.safetensors.index.json` names), as f32.
pub fn read_weights(
    dir: &std::path::Path,
    device: &candle_core::Device,
) -> Result<std::collections::HashMap<String, candle_core::Tensor>, LmError> {
    let single = dir.join("model.safetensors");
    let files: Vec<std::path::PathBuf> = if single.exists() {
        vec![single]
    } else {
        let index = dir.join("model.safetensors.index.json");
        let text = std::fs::read_to_string(&index).map_err(|_| {
            LmError::file(
                dir,
                "no model.safetensors (or model.safetensors.index.json); convert other formats with `transformers` (save_pretrained writes safetensors)",
            )
        })?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| LmError::file(&index, e))?;
        let mut names: Vec<String> = v["weight_map"]
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.dedup();
        names.into_iter().map(|n| dir.join(n)).collect()
    };
    let mut out = std::collections::HashMap::new();
    for f in files {
        for (k, t) in
            candle_core::safetensors::load(&f, device).map_err(|e| LmError::file(&f, e))?
        {
            out.insert(k, t.to_dtype(candle_core::DType::F32)?);
        }
    }
    Ok(out)
}
