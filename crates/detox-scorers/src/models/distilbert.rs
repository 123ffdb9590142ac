//! DistilBERT (`DistilBertForSequenceClassification`): no token types, attention projections
//! named `q_lin`/`k_lin`/`v_lin`/`out_lin`, and a `pre_classifier` + ReLU head on `[CLS]`.

use super::bert::head_labels;
use super::config::HfConfig;
use super::layers::{Block, LayerNorm, Linear, SelfAttention};
use super::{base_weights, Arch, Embeddings, EncoderClassifier, Head, Weights};
use candle_core::Result;

/// Loads a DistilBERT checkpoint.
pub fn load(c: &HfConfig, weights: &Weights) -> Result<EncoderClassifier> {
    let hidden = c.usize_any(&["dim", "hidden_size"])?;
    let layers = c.usize_any(&["n_layers", "num_hidden_layers"])?;
    let heads = c.usize_any(&["n_heads", "num_attention_heads"])?;
    let inter = c.usize_any(&["hidden_dim", "intermediate_size"])?;
    let vocab = c.usize_any(&["vocab_size"])?;
    let positions = c.usize_any(&["max_position_embeddings"])?;
    let eps = 1e-12;
    let act = c.act()?;
    let w = base_weights(
        weights,
        Arch::DistilBert,
        "embeddings.word_embeddings.weight",
    );
    let embeddings = Embeddings::new(
        w.get("embeddings.word_embeddings.weight", (vocab, hidden))?,
        w.get("embeddings.position_embeddings.weight", (positions, hidden))?,
        None,
        LayerNorm::load(&w, "embeddings.LayerNorm", hidden, eps)?,
        None,
    );
    let blocks = (0..layers)
        .map(|i| {
            let p = format!("transformer.layer.{i}");
            let lin =
                |name: &str, i_dim, o_dim| Linear::load(&w, &format!("{p}.{name}"), i_dim, o_dim);
            Ok(Block {
                attn: SelfAttention::new(
                    lin("attention.q_lin", hidden, hidden)?,
                    lin("attention.k_lin", hidden, hidden)?,
                    lin("attention.v_lin", hidden, hidden)?,
                    lin("attention.out_lin", hidden, hidden)?,
                    hidden,
                    heads,
                )?,
                ln1: LayerNorm::load(&w, &format!("{p}.sa_layer_norm"), hidden, eps)?,
                ff1: lin("ffn.lin1", hidden, inter)?,
                ff2: lin("ffn.lin2", inter, hidden)?,
                ln2: LayerNorm::load(&w, &format!("{p}.output_layer_norm"), hidden, eps)?,
                act,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let root = weights.with_prefix("");
    let (head, num_labels) = if root.contains("classifier.weight") {
        let n = head_labels(&root, "classifier")?;
        let head = Head::PreClassifier {
            pre: Linear::load(&root, "pre_classifier", hidden, hidden)?,
            classifier: Linear::load(&root, "classifier", hidden, n)?,
        };
        (Some(head), n)
    } else {
        (None, 0)
    };
    let pad = c.usize("pad_token_id").unwrap_or(0) as u32;
    Ok(EncoderClassifier::assemble(
        Arch::DistilBert,
        embeddings,
        blocks,
        head,
        num_labels,
        hidden,
        positions,
        pad,
    ))
}
