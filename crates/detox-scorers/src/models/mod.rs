//! BERT-family encoders and their sequence-classification heads, one file per architecture.
//!
//! Every architecture here is a stack of post-norm transformer [`layers::Block`]s over
//! word + position (+ token type) embeddings; they differ in names, in how positions are
//! counted and in the head. Each file maps its checkpoint's names onto the shared
//! [`EncoderClassifier`]; adding a family is one new file and one line in [`load_encoder`].

pub mod bert;
pub mod config;
pub mod cpu_kernels;
pub mod distilbert;
pub mod layers;
pub mod roberta;
pub mod weights;

use candle_core::{Device, Result, Tensor};
use config::HfConfig;
use layers::{first_token, ids_tensor, Block, LayerNorm, Linear};
pub use weights::Weights;

/// The encoder families detox implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// BERT (and MiniLM, which is a BERT).
    Bert,
    /// RoBERTa (positions start after the padding index).
    Roberta,
    /// XLM-RoBERTa (a RoBERTa with another vocabulary) and CamemBERT.
    XlmRoberta,
    /// DistilBERT (no token types, pre-classifier head).
    DistilBert,
}

impl Arch {
    /// From a config's `model_type`.
    pub fn from_model_type(t: &str) -> Option<Self> {
        match t {
            "bert" => Some(Self::Bert),
            "roberta" => Some(Self::Roberta),
            "xlm-roberta" | "camembert" => Some(Self::XlmRoberta),
            "distilbert" => Some(Self::DistilBert),
            _ => None,
        }
    }

    /// The name prefix of the base model inside a `*ForSequenceClassification` checkpoint.
    pub fn base_prefix(self) -> &'static str {
        match self {
            Arch::Bert => "bert.",
            Arch::Roberta | Arch::XlmRoberta => "roberta.",
            Arch::DistilBert => "distilbert.",
        }
    }

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Bert => "bert",
            Arch::Roberta => "roberta",
            Arch::XlmRoberta => "xlm-roberta",
            Arch::DistilBert => "distilbert",
        }
    }
}

/// Word, position and token-type embeddings followed by layer norm.
#[derive(Debug, Clone)]
pub struct Embeddings {
    word: Tensor,
    position: Tensor,
    token_type: Option<Tensor>,
    ln: LayerNorm,
    /// RoBERTa counts positions from `padding_idx + 1`; pads sit at `padding_idx`.
    padding_idx: Option<u32>,
}

impl Embeddings {
    /// Builds embeddings from their parts.
    pub fn new(
        word: Tensor,
        position: Tensor,
        token_type: Option<Tensor>,
        ln: LayerNorm,
        padding_idx: Option<u32>,
    ) -> Self {
        Self {
            word,
            position,
            token_type,
            ln,
            padding_idx,
        }
    }

    /// Embeds `ids` [B, L] given the 0/1 `lengths` of each row.
    pub fn forward(&self, ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let h = self.word.dim(1)?;
        let x = self.word.index_select(&ids.flatten_all()?, 0)?;
        let positions: Vec<u32> = match self.padding_idx {
            None => (0..b).flat_map(|_| 0..l as u32).collect(),
            Some(p) => lengths
                .iter()
                .flat_map(|&n| (0..l).map(move |i| if i < n { p + 1 + i as u32 } else { p }))
                .collect(),
        };
        let pos = Tensor::from_vec(positions, b * l, ids.device())?;
        let x = (x + self.position.index_select(&pos, 0)?)?;
        let x = match &self.token_type {
            Some(tt) => x.broadcast_add(tt)?,
            None => x,
        };
        self.ln.forward(&x.reshape((b, l, h))?)
    }
}

/// A task head over the encoder's hidden states.
#[derive(Debug, Clone)]
pub enum Head {
    /// BERT: pooler (dense + tanh on the first token), then a linear classifier.
    Pooler {
        /// `bert.pooler.dense`.
        pooler: Linear,
        /// `classifier`.
        classifier: Linear,
    },
    /// RoBERTa: dense + tanh on `<s>`, then `out_proj`.
    Roberta {
        /// `classifier.dense`.
        dense: Linear,
        /// `classifier.out_proj`.
        out_proj: Linear,
    },
    /// DistilBERT: `pre_classifier` + ReLU on `[CLS]`, then `classifier`.
    PreClassifier {
        /// `pre_classifier`.
        pre: Linear,
        /// `classifier`.
        classifier: Linear,
    },
}

impl Head {
    /// Logits [B, labels] from hidden states [B, L, H].
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let cls = first_token(hidden)?;
        match self {
            Head::Pooler { pooler, classifier } => {
                classifier.forward(&pooler.forward(&cls)?.tanh()?)
            }
            Head::Roberta { dense, out_proj } => out_proj.forward(&dense.forward(&cls)?.tanh()?),
            Head::PreClassifier { pre, classifier } => {
                classifier.forward(&pre.forward(&cls)?.relu()?)
            }
        }
    }
}

/// A BERT-family encoder with an optional classification head.
#[derive(Debug, Clone)]
pub struct EncoderClassifier {
    /// Which family.
    pub arch: Arch,
    /// Embeddings.
    pub embeddings: Embeddings,
    /// Transformer blocks.
    pub blocks: Vec<Block>,
    /// The classification head, when the checkpoint has one.
    pub head: Option<Head>,
    /// Number of labels of the head (0 without a head).
    pub num_labels: usize,
    /// Hidden size.
    pub hidden: usize,
    /// The most tokens (special tokens included) one input may have.
    pub max_tokens: usize,
    /// The id used for padding.
    pub pad_id: u32,
    device: Device,
}

impl EncoderClassifier {
    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Hidden states [B, L, H] of right-padded `rows` (each already of the same length) whose
    /// real lengths are `lengths`.
    pub fn encode(&self, rows: &[Vec<u32>], lengths: &[usize]) -> Result<Tensor> {
        let ids = ids_tensor(rows, &self.device)?;
        let mut x = self.embeddings.forward(&ids, lengths)?;
        for block in &self.blocks {
            x = block.forward(&x, lengths)?;
        }
        Ok(x)
    }

    /// Hidden states [B, L, H] after the embeddings and the first `blocks` transformer blocks
    /// (the frozen part of a model whose top blocks are being fine-tuned).
    pub fn encode_lower(
        &self,
        rows: &[Vec<u32>],
        lengths: &[usize],
        blocks: usize,
    ) -> Result<Tensor> {
        let ids = ids_tensor(rows, &self.device)?;
        let mut x = self.embeddings.forward(&ids, lengths)?;
        for block in self.blocks.iter().take(blocks) {
            x = block.forward(&x, lengths)?;
        }
        Ok(x)
    }

    /// Logits [B, labels] of right-padded rows.
    pub fn classify(&self, rows: &[Vec<u32>], lengths: &[usize]) -> Result<Tensor> {
        let head = self.head.as_ref().ok_or_else(|| {
            candle_core::Error::Msg("this checkpoint has no classification head".into())
        })?;
        let ids = ids_tensor(rows, &self.device)?;
        let mut x = self.embeddings.forward(&ids, lengths)?;
        let Some((last, lower)) = self.blocks.split_last() else {
            return head.forward(&x);
        };
        for block in lower {
            x = block.forward(&x, lengths)?;
        }
        // The head reads only the first token: the last block computes only that row.
        head.forward(&last.forward_first(&x, lengths)?)
    }
}

/// Loads the encoder (and head, when present) that `config` describes from `weights`.
pub fn load_encoder(
    config: &HfConfig,
    weights: &Weights,
    device: &Device,
) -> Result<EncoderClassifier> {
    let arch = config.arch()?;
    let mut model = match arch {
        Arch::Bert => bert::load(config, weights)?,
        Arch::Roberta | Arch::XlmRoberta => roberta::load(config, weights, arch)?,
        Arch::DistilBert => distilbert::load(config, weights)?,
    };
    model.device = device.clone();
    Ok(model)
}

/// Finds the prefix under which a checkpoint stores the base model: `bert.` inside a
/// `BertForSequenceClassification`, nothing for a bare `BertModel`.
pub(crate) fn base_weights(weights: &Weights, arch: Arch, probe: &str) -> Weights {
    let prefix = arch.base_prefix();
    if weights.contains_raw(&format!("{prefix}{probe}")) {
        weights.with_prefix(prefix)
    } else {
        weights.with_prefix("")
    }
}

impl EncoderClassifier {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn assemble(
        arch: Arch,
        embeddings: Embeddings,
        blocks: Vec<Block>,
        head: Option<Head>,
        num_labels: usize,
        hidden: usize,
        max_tokens: usize,
        pad_id: u32,
    ) -> Self {
        Self {
            arch,
            embeddings,
            blocks,
            head,
            num_labels,
            hidden,
            max_tokens,
            pad_id,
            device: Device::Cpu,
        }
    }
}
