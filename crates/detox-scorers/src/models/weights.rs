//! Loading checkpoint tensors (safetensors, `pytorch_model.bin`, Lightning `.ckpt`) into one
//! name -> tensor map, with the renames transformers applies on load.

use candle_core::{DType, Device, Result, Shape, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// All tensors of a checkpoint, in f32 on one device, by name.
#[derive(Debug, Clone)]
pub struct Weights {
    tensors: HashMap<String, Tensor>,
    prefix: String,
    source: String,
}

impl Weights {
    /// Wraps a map of tensors, converting them to f32 and renaming old LayerNorm names
    /// (`gamma`/`beta`) the way transformers does.
    pub fn from_map(
        tensors: impl IntoIterator<Item = (String, Tensor)>,
        device: &Device,
        source: &str,
    ) -> Result<Self> {
        let mut map = HashMap::new();
        for (name, t) in tensors {
            let name = if let Some(p) = name.strip_suffix(".gamma") {
                format!("{p}.weight")
            } else if let Some(p) = name.strip_suffix(".beta") {
                format!("{p}.bias")
            } else {
                name
            };
            let t = if t.dtype() == DType::F32 {
                t.to_device(device)?
            } else if t.dtype().is_float() {
                t.to_dtype(DType::F32)?.to_device(device)?
            } else {
                // Integer buffers (position_ids) are never read; keep them as they are.
                t.to_device(device)?
            };
            map.insert(name, t);
        }
        Ok(Self {
            tensors: map,
            prefix: String::new(),
            source: source.to_string(),
        })
    }

    /// Reads `model.safetensors` or a PyTorch pickle (`pytorch_model.bin`); `key` selects a
    /// sub-dictionary of the pickle (`state_dict` in Lightning checkpoints).
    pub fn load(path: &Path, key: Option<&str>, device: &Device) -> Result<Self> {
        let source = path.display().to_string();
        let is_safetensors = path
            .extension()
            .map(|e| e == "safetensors")
            .unwrap_or(false);
        let tensors: Vec<(String, Tensor)> = if is_safetensors {
            candle_core::safetensors::load(path, &Device::Cpu)?
                .into_iter()
                .collect()
        } else {
            candle_core::pickle::read_all_with_key(path, key)?
        };
        if tensors.is_empty() {
            candle_core::bail!("{source}: no tensors found");
        }
        Self::from_map(tensors, device, &source)
    }

    /// Replaces (or adds) a tensor by its full name, converted to f32 on the device of the
    /// others: fine-tuned layers override the checkpoint's.
    pub fn insert(&mut self, name: &str, t: Tensor) -> Result<()> {
        let device = self
            .tensors
            .values()
            .next()
            .map(|x| x.device().clone())
            .unwrap_or(Device::Cpu);
        self.tensors.insert(
            name.to_string(),
            t.to_dtype(DType::F32)?.to_device(&device)?,
        );
        Ok(())
    }

    /// Where the weights came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether a tensor exists (after the prefix).
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(&self.full(name))
    }

    /// Whether a tensor exists, ignoring the prefix.
    pub fn contains_raw(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// All names.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }

    /// Strips a common leading prefix from every name (e.g. Lightning's `model.`).
    pub fn strip_prefix(mut self, prefix: &str) -> Self {
        if !prefix.is_empty() && self.tensors.keys().all(|k| k.starts_with(prefix)) {
            self.tensors = self
                .tensors
                .into_iter()
                .map(|(k, v)| (k[prefix.len()..].to_string(), v))
                .collect();
        }
        self
    }

    /// A view whose names are looked up under `prefix` (`"bert."`, or `""`).
    pub fn with_prefix(&self, prefix: &str) -> Self {
        Self {
            tensors: self.tensors.clone(),
            prefix: prefix.to_string(),
            source: self.source.clone(),
        }
    }

    fn full(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    /// A tensor by name, checked against an expected shape.
    pub fn get(&self, name: &str, shape: impl Into<Shape>) -> Result<Tensor> {
        let full = self.full(name);
        let shape = shape.into();
        let t = self.tensors.get(&full).ok_or_else(|| {
            candle_core::Error::Msg(format!("{}: missing tensor `{full}`", self.source))
        })?;
        if t.shape() != &shape {
            candle_core::bail!(
                "{}: tensor `{full}` has shape {:?}, expected {:?}",
                self.source,
                t.shape(),
                shape
            );
        }
        Ok(t.clone())
    }

    /// A tensor by name, whatever its shape.
    pub fn get_any(&self, name: &str) -> Result<Tensor> {
        let full = self.full(name);
        self.tensors.get(&full).cloned().ok_or_else(|| {
            candle_core::Error::Msg(format!("{}: missing tensor `{full}`", self.source))
        })
    }
}
