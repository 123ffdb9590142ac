//! Training text as blocks of token ids: documents read from JSONL (`--field`), text lines or a
//! folder of `.jsonl` files (the `kept/` side of a filtered corpus), each tokenized with an
//! end-of-text token after it, concatenated, and cut into blocks of `block_size` tokens (the
//! remainder dropped), as `transformers`' language-modeling examples (`group_texts`) and
//! DExperts' fine-tuning do.

use crate::FinetuneError;
use detox_core::rng::SplitMix64;
use std::path::{Path, PathBuf};

/// A read input file and its hash (for `run.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourceFile {
    /// The file.
    pub path: String,
    /// Its sha256.
    pub sha256: String,
    /// Documents read from it.
    pub documents: usize,
}

/// Blocks of token ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocks {
    /// Each block, `block_size` ids.
    pub blocks: Vec<Vec<u32>>,
    /// Tokens before cutting (documents and separators).
    pub tokens: usize,
    /// The files read.
    pub sources: Vec<SourceFile>,
}

/// The files an input names: itself, or a folder's `.jsonl`, `.txt` files, sorted.
fn expand(input: &Path) -> Result<Vec<PathBuf>, FinetuneError> {
    if !input.is_dir() {
        return Ok(vec![input.to_path_buf()]);
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(input)
        .map_err(|e| FinetuneError::Data(format!("cannot read {}: {e}", input.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("jsonl" | "txt" | "ndjson")
                )
        })
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(FinetuneError::Data(format!(
            "{} holds no .jsonl or .txt file",
            input.display()
        )));
    }
    Ok(out)
}

/// The documents of every file `inputs` name (see [`read_blocks`]).
pub fn read_documents(inputs: &[PathBuf], field: &str) -> Result<Vec<String>, FinetuneError> {
    let mut out = Vec::new();
    for input in inputs {
        for file in expand(input)? {
            out.extend(documents(&file, field)?);
        }
    }
    Ok(out)
}

/// The documents of one file: JSONL records' `field` (dotted paths allowed; a line that is
/// not an object with a string there is an error naming it), or one document per non-empty
/// line of other files.
fn documents(path: &Path, field: &str) -> Result<Vec<String>, FinetuneError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| FinetuneError::Data(format!("cannot read {}: {e}", path.display())))?;
    let jsonl = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("jsonl" | "ndjson" | "json")
    );
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if !jsonl {
            out.push(line.to_string());
            continue;
        }
        let bad =
            |m: String| FinetuneError::Data(format!("{}: line {}: {m}", path.display(), i + 1));
        let v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let doc = detox_io::lookup(&v, field)
            .and_then(|x| x.as_str())
            .ok_or_else(|| bad(format!("no text in field `{field}`")))?;
        if !doc.trim().is_empty() {
            out.push(doc.to_string());
        }
    }
    Ok(out)
}

/// Reads `inputs`, tokenizes each document with `encode`, appends `eos` after each, and cuts
/// the stream into blocks of `block_size`.
pub fn read_blocks(
    inputs: &[PathBuf],
    field: &str,
    block_size: usize,
    eos: Option<u32>,
    encode: &dyn Fn(&str) -> Result<Vec<u32>, FinetuneError>,
) -> Result<Blocks, FinetuneError> {
    let mut stream: Vec<u32> = Vec::new();
    let mut sources = Vec::new();
    for input in inputs {
        for file in expand(input)? {
            let docs = documents(&file, field)?;
            for d in &docs {
                stream.extend(encode(d)?);
                stream.extend(eos);
            }
            sources.push(SourceFile {
                path: file.display().to_string(),
                sha256: detox_io::files::sha256_file(&file)
                    .map_err(|e| FinetuneError::Data(e.to_string()))?,
                documents: docs.len(),
            });
        }
    }
    let tokens = stream.len();
    let blocks = stream
        .chunks_exact(block_size.max(2))
        .map(<[u32]>::to_vec)
        .collect();
    Ok(Blocks {
        blocks,
        tokens,
        sources,
    })
}

/// The order of the blocks in `epoch`: a seeded shuffle, the same on every run.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    SplitMix64::new(seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .shuffle(&mut order);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_joined_with_eos_and_cut_into_whole_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl");
        std::fs::write(&a, "{\"text\": \"ab\"}\n\n{\"text\": \"cde\"}\n").unwrap();
        let b = dir.path().join("b.txt");
        std::fs::write(&b, "fg\n").unwrap();
        let enc = |s: &str| -> Result<Vec<u32>, FinetuneError> {
            Ok(s.bytes().map(|c| c as u32).collect())
        };
        let out = read_blocks(&[a.clone(), b], "text", 4, Some(0), &enc).unwrap();
        // ab<eos> cde<eos> fg<eos> = 10 tokens: two blocks of 4, 2 dropped.
        assert_eq!(out.tokens, 10);
        assert_eq!(
            out.blocks,
            vec![vec![97, 98, 0, 99], vec![100, 101, 0, 102]]
        );
        assert_eq!(out.sources[0].documents, 2);
        std::fs::write(&a, "{\"text\": \"ab\"}\n{\"body\": 1}\n").unwrap();
        let e = read_blocks(&[a], "text", 4, Some(0), &enc)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("`text`"), "{e}");
        let order = epoch_order(10, 1, 0);
        assert_eq!(order, epoch_order(10, 1, 0));
        assert_ne!(order, epoch_order(10, 1, 1));
    }
}
