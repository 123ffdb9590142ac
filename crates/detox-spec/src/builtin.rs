//! The built-in scorers' weights, embedded in every binary that links this crate.

/// The built-in encoder head's spec (the encoder is pulled; see `models/default/README.md`).
pub(crate) const HEAD_SPEC_TEXT: &str = include_str!("../../../models/default/detox-head.json");
/// The built-in encoder head's weights.
pub(crate) const HEAD_WEIGHTS_BYTES: &[u8] =
    include_bytes!("../../../models/default/head.safetensors");
/// The built-in n-gram model's spec (`--scorer fast`).
pub(crate) const FAST_SPEC_TEXT: &str = include_str!("../../../models/fast/detox-ngram.json");
/// The built-in n-gram model's weights.
pub(crate) const FAST_WEIGHTS_BYTES: &[u8] =
    include_bytes!("../../../models/fast/ngram.safetensors");
/// The built-in ensemble's spec (`--scorer default`): its members and the calibration of their
/// mean as a whole (written by `detox train --recipe shared --model default --out models`).
pub(crate) const ENSEMBLE_SPEC_TEXT: &str = include_str!("../../../models/ensemble.json");
