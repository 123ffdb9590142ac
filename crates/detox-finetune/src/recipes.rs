//! The training sets of the published mitigations, made from the user's data before training:
//!
//! - **dapt** (Gehman et al. 2020, domain-adaptive pretraining): the least toxic share of a
//!   corpus as a scorer sees it (RealToxicityPrompts kept the bottom 2% of OpenWebText by
//!   toxicity);
//! - **experts** (Liu et al. 2021, DExperts): from a labelled file, the expert's texts (toxicity
//!   0, DExperts' non-toxic Jigsaw comments) and the anti-expert's (toxicity ≥ 0.5);
//! - **filtered** (Welbl et al. 2021, training-set filtering): the documents a scorer puts
//!   below the threshold, and beside them an unfiltered sample of the same corpus with the
//!   same token count, so that the comparison of the two models is fair.

use crate::FinetuneError;
use detox_core::rng::SplitMix64;
use detox_core::Scorer;
use std::path::{Path, PathBuf};

/// A labelled text.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    /// The text.
    pub text: String,
    /// Its toxicity label in [0, 1].
    pub toxicity: f64,
}

/// Reads `text_field` and `label_field` (a number in [0, 1], or true/false) of every JSONL line;
/// a line without them is an error naming it.
pub fn read_labelled(
    path: &Path,
    text_field: &str,
    label_field: &str,
) -> Result<Vec<Labelled>, FinetuneError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| FinetuneError::Data(format!("cannot read {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad =
            |m: String| FinetuneError::Data(format!("{}: line {}: {m}", path.display(), i + 1));
        let v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let t = detox_io::lookup(&v, text_field)
            .and_then(|x| x.as_str())
            .ok_or_else(|| bad(format!("no text in field `{text_field}`")))?;
        let l = detox_io::lookup(&v, label_field)
            .and_then(|x| {
                x.as_f64()
                    .or_else(|| x.as_bool().map(|b| f64::from(u8::from(b))))
            })
            .filter(|x| (0.0..=1.0).contains(x))
            .ok_or_else(|| {
                bad(format!(
                    "field `{label_field}` is not a number in [0, 1] or a boolean"
                ))
            })?;
        out.push(Labelled {
            text: t.to_string(),
            toxicity: l,
        });
    }
    Ok(out)
}

/// DExperts' split: the expert's texts (toxicity ≤ `expert_max`, DExperts: exactly 0) and the
/// anti-expert's (toxicity ≥ `anti_min`, DExperts: 0.5).
pub fn split_experts(
    rows: &[Labelled],
    expert_max: f64,
    anti_min: f64,
) -> (Vec<String>, Vec<String>) {
    let expert = rows
        .iter()
        .filter(|r| r.toxicity <= expert_max)
        .map(|r| r.text.clone())
        .collect();
    let anti = rows
        .iter()
        .filter(|r| r.toxicity >= anti_min)
        .map(|r| r.text.clone())
        .collect();
    (expert, anti)
}

/// The `toxicity` of every document by `scorer` (in batches of `batch`), or an error naming the
/// scorer when it has no such attribute.
pub fn toxicity(
    docs: &[String],
    scorer: &dyn Scorer,
    batch: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<f64>, FinetuneError> {
    let idx = scorer.info().attribute_index("toxicity").ok_or_else(|| {
        FinetuneError::Settings(format!(
            "scorer `{}` has no `toxicity` attribute",
            scorer.info().id
        ))
    })?;
    let mut out = Vec::with_capacity(docs.len());
    for chunk in docs.chunks(batch.max(1)) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let scores = scorer
            .score(&refs)
            .map_err(|e| FinetuneError::Settings(format!("scoring the corpus: {e}")))?;
        out.extend(scores.iter().map(|s| s.values[idx] as f64));
        progress(out.len());
    }
    Ok(out)
}

/// The least toxic `share` of the documents (ties kept in corpus order), in corpus order.
pub fn least_toxic(docs: &[String], tox: &[f64], share: f64) -> Vec<String> {
    let n = ((docs.len() as f64 * share).ceil() as usize).clamp(1, docs.len().max(1));
    let mut order: Vec<usize> = (0..docs.len()).collect();
    order.sort_by(|&a, &b| tox[a].total_cmp(&tox[b]).then(a.cmp(&b)));
    let mut keep: Vec<usize> = order.into_iter().take(n).collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| docs[i].clone()).collect()
}

/// Welbl et al.'s filtered set (documents scored below `threshold`) and an unfiltered sample
/// of the whole corpus (seeded) with at least as many tokens, by `count` tokens.
pub fn filtered_and_matched(
    docs: &[String],
    tox: &[f64],
    threshold: f64,
    seed: u64,
    count: &dyn Fn(&str) -> Result<usize, FinetuneError>,
) -> Result<(Vec<String>, Vec<String>), FinetuneError> {
    let kept: Vec<String> = docs
        .iter()
        .zip(tox)
        .filter(|(_, t)| **t < threshold)
        .map(|(d, _)| d.clone())
        .collect();
    let mut want = 0usize;
    for d in &kept {
        want += count(d)?;
    }
    let mut order: Vec<usize> = (0..docs.len()).collect();
    SplitMix64::new(seed ^ 0xF117).shuffle(&mut order);
    let mut have = 0usize;
    let mut sample = Vec::new();
    for i in order {
        if have >= want {
            break;
        }
        have += count(&docs[i])?;
        sample.push(i);
    }
    sample.sort_unstable();
    Ok((kept, sample.into_iter().map(|i| docs[i].clone()).collect()))
}

/// Writes documents as JSONL `{"text": ...}` (atomically), the training file of a recipe.
pub fn write_docs(path: &Path, docs: &[String]) -> Result<PathBuf, FinetuneError> {
    let mut s = String::new();
    for d in docs {
        s.push_str(&serde_json::json!({ "text": d }).to_string());
        s.push('\n');
    }
    detox_io::files::write_atomic(path, s.as_bytes()).map_err(|e| FinetuneError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_recipe_picks_what_its_paper_did() {
        let rows = vec![
            Labelled {
                text: "a".into(),
                toxicity: 0.0,
            },
            Labelled {
                text: "b".into(),
                toxicity: 0.2,
            },
            Labelled {
                text: "c".into(),
                toxicity: 0.5,
            },
            Labelled {
                text: "d".into(),
                toxicity: 1.0,
            },
        ];
        assert_eq!(
            split_experts(&rows, 0.0, 0.5),
            (
                vec!["a".to_string()],
                vec!["c".to_string(), "d".to_string()]
            )
        );
        let docs: Vec<String> = ["x", "y", "z", "w"].iter().map(|s| s.to_string()).collect();
        let tox = [0.9, 0.1, 0.5, 0.05];
        assert_eq!(
            least_toxic(&docs, &tox, 0.5),
            vec!["y".to_string(), "w".to_string()]
        );
        assert_eq!(least_toxic(&docs, &tox, 0.01), vec!["w".to_string()]);
        let count = |s: &str| -> Result<usize, FinetuneError> { Ok(s.len() * 10) };
        let (kept, matched) = filtered_and_matched(&docs, &tox, 0.5, 3, &count).unwrap();
        assert_eq!(kept, vec!["y".to_string(), "w".to_string()]);
        assert_eq!(
            matched.len(),
            2,
            "as many tokens as the filtered set: {matched:?}"
        );
    }

    #[test]
    fn a_bad_label_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.jsonl");
        std::fs::write(
            &p,
            "{\"text\": \"a\", \"toxicity\": 0.0}\n{\"text\": \"b\", \"toxicity\": 7}\n",
        )
        .unwrap();
        let e = read_labelled(&p, "text", "toxicity")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("[0, 1]"), "{e}");
        std::fs::write(&p, "{\"text\": \"a\", \"toxic\": true}\n").unwrap();
        assert_eq!(read_labelled(&p, "text", "toxic").unwrap()[0].toxicity, 1.0);
    }
}
