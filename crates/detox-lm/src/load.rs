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
