//! Closed choices of the command line as types: clap lists their values in `--help` and
//! refuses anything else with the list of what is allowed.

use clap::ValueEnum;

/// `--format` of `detox score`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// From the file's extension, else its first byte.
    Auto,
    /// One JSON object per line.
    #[value(alias = "ndjson", alias = "json")]
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
    /// Tab-separated values with a header row.
    Tsv,
    /// One text per line.
    #[value(alias = "txt", alias = "text")]
    Lines,
}

impl From<FormatArg> for Option<detox_io::Format> {
    fn from(f: FormatArg) -> Self {
        use detox_io::Format;
        match f {
            FormatArg::Auto => None,
            FormatArg::Jsonl => Some(Format::Jsonl),
            FormatArg::Csv => Some(Format::Csv),
            FormatArg::Tsv => Some(Format::Tsv),
            FormatArg::Lines => Some(Format::Lines),
        }
    }
}

/// `--activation`: how logits become scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActivationArg {
    /// Independent sigmoids (multi-label models).
    Sigmoid,
    /// A softmax over the labels (single-label models).
    Softmax,
}

impl From<ActivationArg> for detox_core::Activation {
    fn from(a: ActivationArg) -> Self {
        match a {
            ActivationArg::Sigmoid => detox_core::Activation::Sigmoid,
            ActivationArg::Softmax => detox_core::Activation::Softmax,
        }
    }
}

/// `--weights` of local GGUF models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WeightsArg {
    /// Dequantize the matrices to f32 (fastest for batched sampling on CPU).
    F32,
    /// Keep the file's quantization (for models too large to hold in f32).
    AsStored,
}

impl WeightsArg {
    /// The name recorded in `run.json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::AsStored => "as-stored",
        }
    }
}

impl From<WeightsArg> for detox_lm::llama::WeightMode {
    fn from(w: WeightsArg) -> Self {
        match w {
            WeightsArg::F32 => Self::F32,
            WeightsArg::AsStored => Self::AsStored,
        }
    }
}

/// `--model` of `detox train`: what to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TrainModelArg {
    /// A head on encoder embeddings.
    Head,
    /// A linear model on hashed word and character n-grams (corpus-scale speed).
    Ngram,
    /// The built-in pair: a head in OUT/default, an n-gram model in OUT/fast, and
    /// OUT/ensemble.json calibrating their mean as a whole (`--scorer OUT` loads it).
    Default,
}

/// `--recipe` of `detox train`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecipeArg {
    /// The public data sets of `--data` mapped to Perspective's attributes.
    Shared,
}

/// `--pooling` of `detox train`: how token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PoolingArg {
    /// The mean over real tokens.
    Mean,
    /// The mean and the element-wise maximum, concatenated.
    #[value(name = "mean+max")]
    MeanMax,
}

impl From<PoolingArg> for detox_scorers::Pooling {
    fn from(p: PoolingArg) -> Self {
        match p {
            PoolingArg::Mean => Self::Mean,
            PoolingArg::MeanMax => Self::MeanMax,
        }
    }
}
