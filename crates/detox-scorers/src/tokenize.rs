//! Tokenizers for encoder classifiers: `tokenizer.json` when the folder has one, else the
//! slow-tokenizer files (`vocab.txt` for BERT WordPiece, `vocab.json` + `merges.txt` for
//! RoBERTa byte-level BPE) rebuilt the way transformers' fast tokenizers build them.

use crate::LoadError;
use std::path::Path;
use tokenizers::models::bpe::BPE;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{AddedToken, Tokenizer, TruncationParams};

/// One tokenized text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, special tokens included, after truncation.
    pub ids: Vec<u32>,
    /// Whether truncation cut the text.
    pub truncated: bool,
}

/// A tokenizer that truncates to the model's maximum length.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    max_tokens: usize,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

fn tok_err(path: &Path, e: impl std::fmt::Display) -> LoadError {
    LoadError::Tokenizer {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Reads `tokenizer_config.json` if present.
pub fn tokenizer_config(dir: &Path) -> serde_json::Value {
    std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null)
}

impl TextTokenizer {
    /// Loads the tokenizer of a model folder; texts are cut to `max_tokens` tokens.
    pub fn from_dir(dir: &Path, max_tokens: usize) -> Result<Self, LoadError> {
        let json = dir.join("tokenizer.json");
        let inner = if json.exists() {
            Tokenizer::from_file(&json).map_err(|e| tok_err(&json, e))?
        } else if dir.join("vocab.txt").exists() {
            wordpiece_from_vocab(dir)?
        } else if dir.join("vocab.json").exists() && dir.join("merges.txt").exists() {
            bpe_from_files(dir)?
        } else {
            return Err(LoadError::Tokenizer {
                path: dir.display().to_string(),
                message:
                    "no tokenizer.json (nor vocab.txt, nor vocab.json + merges.txt); save one with \
                          `AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR)` in transformers"
                        .into(),
            });
        };
        Self::new(inner, max_tokens, &dir.display().to_string())
    }

    /// Wraps a tokenizer, replacing its padding and truncation settings with detox's;
    /// `source` names where it came from in errors.
    pub fn new(mut inner: Tokenizer, max_tokens: usize, source: &str) -> Result<Self, LoadError> {
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| LoadError::Tokenizer {
                path: source.to_string(),
                message: e.to_string(),
            })?;
        Ok(Self { inner, max_tokens })
    }

    /// The length limit.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The id of a token, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Tokenizes texts (in parallel), with special tokens, truncated.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Encoded>, String> {
        let encodings = self
            .inner
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| e.to_string())?;
        Ok(encodings
            .into_iter()
            .map(|e| Encoded {
                truncated: !e.get_overflowing().is_empty(),
                ids: e.get_ids().to_vec(),
            })
            .collect())
    }
}

fn wordpiece_from_vocab(dir: &Path) -> Result<Tokenizer, LoadError> {
    let vocab = dir.join("vocab.txt");
    let cfg = tokenizer_config(dir);
    let lower = cfg
        .get("do_lower_case")
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    let chinese = cfg
        .get("tokenize_chinese_chars")
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    let strip_accents = cfg.get("strip_accents").and_then(|v| v.as_bool());
    let tok_name = |key: &str, default: &str| {
        cfg.get(key)
            .and_then(|v| v.as_str())
            .unwrap_or(default)
            .to_string()
    };
    let (unk, sep, cls, pad, mask) = (
        tok_name("unk_token", "[UNK]"),
        tok_name("sep_token", "[SEP]"),
        tok_name("cls_token", "[CLS]"),
        tok_name("pad_token", "[PAD]"),
        tok_name("mask_token", "[MASK]"),
    );
    let vocab_str = vocab.to_string_lossy().to_string();
    let model = WordPiece::from_file(&vocab_str)
        .unk_token(unk.clone())
        .build()
        .map_err(|e| tok_err(&vocab, e))?;
    let mut tok = Tokenizer::new(model);
    tok.with_normalizer(Some(BertNormalizer::new(
        true,
        chinese,
        strip_accents,
        lower,
    )))
    .map_err(|e| tok_err(&vocab, e))?;
    tok.with_pre_tokenizer(Some(BertPreTokenizer));
    let id = |t: &str| {
        tok.token_to_id(t).ok_or_else(|| {
            tok_err(
                &vocab,
                format!("special token `{t}` is not in the vocabulary"),
            )
        })
    };
    let (sep_id, cls_id) = (id(&sep)?, id(&cls)?);
    tok.with_post_processor(Some(BertProcessing::new(
        (sep.clone(), sep_id),
        (cls.clone(), cls_id),
    )));
    tok.with_decoder(Some(tokenizers::decoders::wordpiece::WordPiece::default()));
    let specials: Vec<AddedToken> = [pad, unk, cls, sep, mask]
        .into_iter()
        .filter(|t| tok.token_to_id(t).is_some())
        .map(|t| AddedToken::from(t, true))
        .collect();
    tok.add_special_tokens(specials)
        .map_err(|e| tok_err(&vocab, e))?;
    Ok(tok)
}

fn bpe_from_files(dir: &Path) -> Result<Tokenizer, LoadError> {
    let vocab = dir.join("vocab.json");
    let merges = dir.join("merges.txt");
    let cfg = tokenizer_config(dir);
    let add_prefix_space = cfg
        .get("add_prefix_space")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let model = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
        .build()
        .map_err(|e| tok_err(&vocab, e))?;
    let mut tok = Tokenizer::new(model);
    tok.with_pre_tokenizer(Some(ByteLevel::new(add_prefix_space, true, true)));
    tok.with_decoder(Some(ByteLevel::default()));
    let id = |t: &str| {
        tok.token_to_id(t).ok_or_else(|| {
            tok_err(
                &vocab,
                format!("special token `{t}` is not in the vocabulary"),
            )
        })
    };
    let (sep_id, cls_id) = (id("</s>")?, id("<s>")?);
    tok.with_post_processor(Some(
        RobertaProcessing::new(("</s>".into(), sep_id), ("<s>".into(), cls_id))
            .trim_offsets(true)
            .add_prefix_space(add_prefix_space),
    ));
    let mut specials: Vec<AddedToken> = ["<s>", "<pad>", "</s>", "<unk>"]
        .into_iter()
        .filter(|t| tok.token_to_id(t).is_some())
        .map(|t| AddedToken::from(t, true))
        .collect();
    if tok.token_to_id("<mask>").is_some() {
        specials.push(AddedToken::from("<mask>", true).lstrip(true));
    }
    tok.add_special_tokens(specials)
        .map_err(|e| tok_err(&vocab, e))?;
    Ok(tok)
}
