//! RoBERTa and XLM-RoBERTa (`*ForSequenceClassification`): BERT's blocks, positions counted
//! from `padding_idx + 1` (pads at `padding_idx`), and a `classifier.dense` + `out_proj` head.

use super::bert::{head_labels, load_blocks, load_embeddings, Dims};
use super::config::HfConfig;
use super::layers::Linear;
use super::{base_weights, Arch, EncoderClassifier, Head, Weights};
use candle_core::Result;

/// Loads a RoBERTa-family checkpoint.
pub fn load(c: &HfConfig, weights: &Weights, arch: Arch) -> Result<EncoderClassifier> {
    c.check_absolute_positions()?;
    let d = Dims::from_config(c)?;
    let pad = c.usize("pad_token_id").unwrap_or(1);
    // Usable positions: the table minus the `padding_idx + 1` offset.
    let max_tokens = d.positions.checked_sub(pad + 1).ok_or_else(|| {
        candle_core::Error::Msg(format!(
            "{}: max_position_embeddings {} is too small for pad_token_id {pad}",
            c.source(),
            d.positions
        ))
    })?;
    let w = base_weights(weights, arch, "embeddings.word_embeddings.weight");
    let embeddings = load_embeddings(&w, &d, Some(pad as u32))?;
    let blocks = load_blocks(c, &w, &d)?;
    let root = weights.with_prefix("");
    let (head, num_labels) = if root.contains("classifier.out_proj.weight") {
        let n = head_labels(&root, "classifier.out_proj")?;
        let head = Head::Roberta {
            dense: Linear::load(&root, "classifier.dense", d.hidden, d.hidden)?,
            out_proj: Linear::load(&root, "classifier.out_proj", d.hidden, n)?,
        };
        (Some(head), n)
    } else {
        (None, 0)
    };
    Ok(EncoderClassifier::assemble(
        arch, embeddings, blocks, head, num_labels, d.hidden, max_tokens, pad as u32,
    ))
}
