//! What trained scorer folders share: reading the spec and weights files, checking tensor
//! shapes, and applying per-attribute calibration.

use crate::LoadError;
use candle_core::{DType, Tensor};
use detox_core::metrics::Isotonic;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Reads a model folder's spec (text) and weights (bytes).
pub fn read_model_folder(
    dir: &Path,
    spec: &str,
    weights: &str,
) -> Result<(String, Vec<u8>), LoadError> {
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |error| LoadError::Io { path, error }
    };
    let sp = dir.join(spec);
    let text = std::fs::read_to_string(&sp).map_err(io(&sp))?;
    let wp = dir.join(weights);
    let bytes = std::fs::read(&wp).map_err(io(&wp))?;
    Ok((text, bytes))
}

/// A tensor of a safetensors map, as f32, checked against the expected shape.
pub fn tensor_with_shape(
    ts: &HashMap<String, Tensor>,
    name: &str,
    shape: &[usize],
    source: &str,
) -> Result<Tensor, LoadError> {
    let t = ts
        .get(name)
        .ok_or_else(|| LoadError::Config(format!("{source}: missing tensor `{name}`")))?
        .to_dtype(DType::F32)?;
    if t.dims() != shape {
        return Err(LoadError::Config(format!(
            "{source}: `{name}` has shape {:?}, expected {shape:?}",
            t.dims()
        )));
    }
    Ok(t)
}

/// Per-attribute monotone maps onto a target scale, in output order.
#[derive(Debug, Clone)]
pub struct Calibration(Vec<Option<Isotonic>>);

impl Calibration {
    /// The maps of `attributes` found in a spec's calibration table.
    pub fn new(attributes: &[String], table: &BTreeMap<String, Isotonic>) -> Self {
        Self(attributes.iter().map(|a| table.get(a).cloned()).collect())
    }

    /// Maps probabilities in place (clamped to [0, 1]).
    pub fn apply(&self, values: &mut [f32]) {
        for (v, cal) in values.iter_mut().zip(&self.0) {
            if let Some(c) = cal {
                *v = c.apply(*v as f64).clamp(0.0, 1.0) as f32;
            }
        }
    }
}
