//! The TwitterAAE demographic dialect model in Rust.
//!
//! Blodgett, Green and O'Connor ("Demographic Dialectal Variation in Social Media: A Case
//! Study of African-American English", EMNLP 2016) fitted a mixed-membership model of
//! tweets whose four topics align with the African-American, Hispanic, Asian and White
//! populations of the U.S. census blocks the tweets came from. Given a text, the model
//! infers what *proportion of its words* come from each dialect-associated topic. These are
//! not the author's race, and the authors validated only the African-American and White
//! proportions.
//!
//! - [`twokenize`]: the tweet tokenizer the model was estimated with (own implementation of
//!   the rules of the authors' `code/twokenize.py`).
//! - [`model`]: [`DialectModel::load`] reads the model's two files (MIT licence, slanglab);
//!   [`DialectModel::infer`] returns the proportions or `None` when it declines.
//! - [`stream`]: one JSONL output line per input line, for `detox dialect`.
//! - [`audit`]: a scorer dialect audit after Sap et al. (2019): correlation of scores with
//!   the AAE proportion and false-positive rates on AAE- vs White-dominant texts.
//!
//! ```no_run
//! use detox_dialect::DialectModel;
//! let model = DialectModel::load("../shared/data/twitteraae-model".as_ref())?;
//! let p = model.infer("hello there").unwrap();
//! assert!((p[0] - 0.166).abs() < 1e-3);
//! # Ok::<(), detox_dialect::ModelError>(())
//! ```

#![warn(missing_docs)]

pub mod audit;
mod entities;
pub mod model;
pub mod stream;
pub mod twokenize;

pub use model::{resolve_model_dir, DialectModel, ModelError, DEFAULT_MODEL_DIR, TOPICS};
