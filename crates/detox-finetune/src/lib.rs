//! Training language models for detox (`detox finetune`): differentiable forward passes of
//! GPT-2 and the llama family in candle ([`model`]), LoRA adapters ([`linear`]), AdamW, gradient
//! clipping and the warm-up-then-cosine schedule with PyTorch's and `transformers`' semantics
//! ([`optim`]), and the causal language-model loss ([`loss`]).

#![warn(missing_docs)]

pub mod data;
pub mod linear;
pub mod loss;
pub mod model;
pub mod optim;
pub mod recipes;
pub mod step;
pub mod train;

/// Why training failed.
#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    /// The model could not be read.
    #[error(transparent)]
    Model(#[from] detox_lm::LmError),
    /// The training data could not be read.
    #[error("{0}")]
    Data(String),
    /// The settings are wrong, or a run folder holds another run.
    #[error("{0}")]
    Settings(String),
    /// A file of the run could not be written or read.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        message: String,
    },
    /// The loss stopped being a number.
    #[error("the loss became {value} at step {step}; stopped, the last good checkpoint (step {kept}) is kept: lower --lr or raise --max-grad-norm's clipping")]
    Diverged {
        /// The step.
        step: usize,
        /// The loss.
        value: f64,
        /// The step of the checkpoint kept.
        kept: usize,
    },
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] candle_core::Error),
}
