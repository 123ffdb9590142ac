//! BERT (`BertForSequenceClassification`, and bare `BertModel` checkpoints such as MiniLM).
//!
//! Names: `bert.embeddings.*`, `bert.encoder.layer.N.attention.self.{query,key,value}`,
//! `...attention.output.{dense,LayerNorm}`, `...intermediate.dense`, `...output.{dense,LayerNorm}`,
//! `bert.pooler.dense`, `classifier`. Positions count from 0; token type 0 throughout.

use super::config::HfConfig;
use super::layers::{Block, LayerNorm, Linear, SelfAttention};
use super::{base_weights, Arch, Embeddings, EncoderClassifier, Head, Weights};
use candle_core::Result;

/// Shapes shared by BERT and RoBERTa configs.
pub(crate) struct Dims {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub inter: usize,
    pub vocab: usize,
    pub positions: usize,
    pub eps: f64,
}

impl Dims {
    pub(crate) fn from_config(c: &HfConfig) -> Result<Self> {
        Ok(Self {
            hidden: c.usize_any(&["hidden_size"])?,
            layers: c.usize_any(&["num_hidden_layers"])?,
            heads: c.usize_any(&["num_attention_heads"])?,
            inter: c.usize_any(&["intermediate_size"])?,
            vocab: c.usize_any(&["vocab_size"])?,
            positions: c.usize_any(&["max_position_embeddings"])?,
            eps: c.f64("layer_norm_eps").unwrap_or(1e-12),
        })
    }
}

/// Loads the BERT-layout encoder blocks under `w` (`encoder.layer.N.*`).
pub(crate) fn load_blocks(c: &HfConfig, w: &Weights, d: &Dims) -> Result<Vec<Block>> {
    let act = c.act()?;
    (0..d.layers)
        .map(|i| {
            let p = format!("encoder.layer.{i}");
            let lin =
                |name: &str, i_dim, o_dim| Linear::load(w, &format!("{p}.{name}"), i_dim, o_dim);
            Ok(Block {
                attn: SelfAttention::new(
                    lin("attention.self.query", d.hidden, d.hidden)?,
                    lin("attention.self.key", d.hidden, d.hidden)?,
                    lin("attention.self.value", d.hidden, d.hidden)?,
                    lin("attention.output.dense", d.hidden, d.hidden)?,
                    d.hidden,
                    d.heads,
                )?,
                ln1: LayerNorm::load(
                    w,
                    &format!("{p}.attention.output.LayerNorm"),
                    d.hidden,
                    d.eps,
                )?,
                ff1: lin("intermediate.dense", d.hidden, d.inter)?,
                ff2: lin("output.dense", d.inter, d.hidden)?,
                ln2: LayerNorm::load(w, &format!("{p}.output.LayerNorm"), d.hidden, d.eps)?,
                act,
            })
        })
        .collect()
}

/// Loads the embeddings under `w` (`embeddings.*`), with RoBERTa's offset when given.
pub(crate) fn load_embeddings(
    w: &Weights,
    d: &Dims,
    padding_idx: Option<u32>,
) -> Result<Embeddings> {
    let word = w.get("embeddings.word_embeddings.weight", (d.vocab, d.hidden))?;
    let position = w.get(
        "embeddings.position_embeddings.weight",
        (d.positions, d.hidden),
    )?;
    let token_type = if w.contains("embeddings.token_type_embeddings.weight") {
        Some(
            w.get_any("embeddings.token_type_embeddings.weight")?
                .get(0)?,
        )
    } else {
        None
    };
    let ln = LayerNorm::load(w, "embeddings.LayerNorm", d.hidden, d.eps)?;
    Ok(Embeddings::new(word, position, token_type, ln, padding_idx))
}

/// Number of labels of a linear classifier `name`, from its weight.
pub(crate) fn head_labels(w: &Weights, name: &str) -> Result<usize> {
    w.get_any(&format!("{name}.weight"))?.dim(0)
}

/// Loads a BERT checkpoint.
pub fn load(c: &HfConfig, weights: &Weights) -> Result<EncoderClassifier> {
    c.check_absolute_positions()?;
    let d = Dims::from_config(c)?;
    let w = base_weights(weights, Arch::Bert, "embeddings.word_embeddings.weight");
    let embeddings = load_embeddings(&w, &d, None)?;
    let blocks = load_blocks(c, &w, &d)?;
    let root = weights.with_prefix("");
    let (head, num_labels) = if root.contains("classifier.weight") {
        let n = head_labels(&root, "classifier")?;
        let head = Head::Pooler {
            pooler: Linear::load(&w, "pooler.dense", d.hidden, d.hidden)?,
            classifier: Linear::load(&root, "classifier", d.hidden, n)?,
        };
        (Some(head), n)
    } else {
        (None, 0)
    };
    let pad = c.usize("pad_token_id").unwrap_or(0) as u32;
    Ok(EncoderClassifier::assemble(
        Arch::Bert,
        embeddings,
        blocks,
        head,
        num_labels,
        d.hidden,
        d.positions,
        pad,
    ))
}
