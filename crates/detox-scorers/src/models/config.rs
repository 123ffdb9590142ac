//! A Hugging Face `config.json`, read leniently: the field names differ between families
//! (`hidden_size` vs `dim`), and older files lack fields newer transformers fill in.

use super::layers::Act;
use super::Arch;
use candle_core::Result;
use serde_json::Value;
use std::path::Path;

/// A parsed `config.json`.
#[derive(Debug, Clone)]
pub struct HfConfig {
    value: Value,
    source: String,
}

impl HfConfig {
    /// Reads and parses a config file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| candle_core::Error::Msg(format!("{}: {e}", path.display())))?;
        Self::from_str(&text, &path.display().to_string())
    }

    /// Parses config JSON text; `source` names it in errors.
    pub fn from_str(text: &str, source: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| candle_core::Error::Msg(format!("{source}: invalid JSON: {e}")))?;
        if !value.is_object() {
            candle_core::bail!("{source}: expected a JSON object");
        }
        Ok(Self {
            value,
            source: source.to_string(),
        })
    }

    /// Wraps an already-parsed value.
    pub fn from_value(value: Value, source: &str) -> Self {
        Self {
            value,
            source: source.to_string(),
        }
    }

    /// Where the config came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The raw JSON.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// A string field.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.value.get(key).and_then(|v| v.as_str())
    }

    /// An unsigned integer field.
    pub fn usize(&self, key: &str) -> Option<usize> {
        self.value
            .get(key)
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
    }

    /// The first of several integer fields that is present, or an error naming the first.
    pub fn usize_any(&self, keys: &[&str]) -> Result<usize> {
        keys.iter().find_map(|k| self.usize(k)).ok_or_else(|| {
            candle_core::Error::Msg(format!("{}: missing field `{}`", self.source, keys[0]))
        })
    }

    /// A float field.
    pub fn f64(&self, key: &str) -> Option<f64> {
        self.value.get(key).and_then(|v| v.as_f64())
    }

    /// The architecture from `model_type`.
    pub fn arch(&self) -> Result<Arch> {
        let t = self.str("model_type").ok_or_else(|| {
            candle_core::Error::Msg(format!("{}: missing field `model_type`", self.source))
        })?;
        Arch::from_model_type(t).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "{}: model_type `{t}` is not supported (supported: bert, roberta, xlm-roberta, camembert, distilbert)",
                self.source
            ))
        })
    }

    /// The feed-forward activation.
    pub fn act(&self) -> Result<Act> {
        let name = self
            .str("hidden_act")
            .or_else(|| self.str("activation"))
            .unwrap_or("gelu");
        Act::parse(name).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "{}: activation `{name}` is not supported",
                self.source
            ))
        })
    }

    /// Fails unless positions are absolute (relative position types are another model).
    pub fn check_absolute_positions(&self) -> Result<()> {
        match self.str("position_embedding_type") {
            None | Some("absolute") => Ok(()),
            Some(other) => candle_core::bail!(
                "{}: position_embedding_type `{other}` is not supported (only `absolute`)",
                self.source
            ),
        }
    }

    /// Label names by index from `id2label`, if present and complete for `n` labels.
    pub fn labels(&self, n: usize) -> Option<Vec<String>> {
        let map = self.value.get("id2label")?.as_object()?;
        (0..n)
            .map(|i| {
                map.get(&i.to_string())
                    .and_then(|v| v.as_str())
                    .map(String::from)
            })
            .collect()
    }

    /// `problem_type`, if set.
    pub fn problem_type(&self) -> Option<&str> {
        self.str("problem_type")
    }
}
