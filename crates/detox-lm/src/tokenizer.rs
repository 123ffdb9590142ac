//! Language-model tokenizers: rebuilt from GGUF metadata as llama.cpp tokenizes, or read from
//! a Hugging Face folder (`tokenizer.json`, or GPT-2's `vocab.json` + `merges.txt`).
//!
//! GPT-2-style byte-level BPE vocabularies (`tokenizer.ggml.model = "gpt2"`) become a
//! `tokenizers::Tokenizer` with the pre-tokenizer llama.cpp uses for the file's
//! `tokenizer.ggml.pre`: for `smollm`, digits are split one by one and then byte-level
//! splitting applies without a prefix space (candle's generic GGUF tokenizer adds a prefix
//! space there, which gives other ids after special tokens). Control tokens (type 3) are special.

use crate::LmError;
use candle_core::quantized::gguf_file;
use std::path::Path;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::SplitDelimiterBehavior;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

/// The split pattern of llama.cpp's `qwen2` pre-tokenizer.
const QWEN2_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The split pattern of llama.cpp's `llama-bpe` (Llama 3) pre-tokenizer.
const LLAMA3_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A tokenizer with its special ids.
pub struct LmTokenizer {
    /// The tokenizer (no special tokens added on encode).
    pub inner: Tokenizer,
    /// Beginning-of-sequence id.
    pub bos: Option<u32>,
    /// End-of-sequence id.
    pub eos: Option<u32>,
    /// Every id that ends a generation (EOS, end-of-turn, and control tokens such as
    /// `<|endoftext|>`, `<|im_end|>`, `<|eot_id|>`), as llama.cpp stops on any of them.
    pub stop: Vec<u32>,
    /// Whether a prompt starts with BOS (GGUF `tokenizer.ggml.add_bos_token`).
    pub add_bos: bool,
}

fn err(m: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(m.to_string())
}

/// Names of control tokens that end a generation (llama.cpp's end-of-generation list).
const STOP_NAMES: &[&str] = &[
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<|end_of_text|>",
    "<end_of_turn>",
    "</s>",
];

/// The special ids of a GGUF file: BOS, EOS, every stop id, and whether prompts start with BOS.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufSpecials {
    /// Beginning-of-sequence id.
    pub bos: Option<u32>,
    /// End-of-sequence id.
    pub eos: Option<u32>,
    /// Ids that end a generation.
    pub stop: Vec<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: bool,
}

impl GgufSpecials {
    fn read(c: &gguf_file::Content) -> Self {
        let get = |k: &str| c.metadata.get(k);
        let id = |k: &str| get(k).and_then(|v| v.to_u32().ok());
        let bos = id("tokenizer.ggml.bos_token_id");
        let eos = id("tokenizer.ggml.eos_token_id");
        let mut stop: Vec<u32> = [
            eos,
            id("tokenizer.ggml.eot_token_id"),
            id("tokenizer.ggml.eom_token_id"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if let Some(tokens) = get("tokenizer.ggml.tokens").and_then(|v| v.to_vec().ok()) {
            for (i, t) in tokens.iter().enumerate() {
                if let Ok(t) = t.to_string() {
                    if STOP_NAMES.contains(&t.as_str()) && Some(i as u32) != bos {
                        stop.push(i as u32);
                    }
                }
            }
        }
        stop.sort_unstable();
        stop.dedup();
        Self {
            bos,
            eos,
            stop,
            add_bos: get("tokenizer.ggml.add_bos_token")
                .and_then(|v| v.to_bool().ok())
                .unwrap_or(false),
        }
    }

    /// Reads them from a GGUF file.
    pub fn from_gguf(path: &Path) -> std::result::Result<Self, LmError> {
        let mut f = std::fs::File::open(path).map_err(|e| LmError::file(path, e))?;
        let c = gguf_file::Content::read(&mut f)
            .map_err(|e| LmError::file(path, format!("not a GGUF file: {e}")))?;
        Ok(Self::read(&c))
    }
}

/// A pre-tokenizer that splits by llama.cpp's regex, then maps bytes as GPT-2 does.
fn regex_then_bytes(pattern: &str) -> candle_core::Result<PreTokenizerWrapper> {
    let split = Split::new(
        SplitPattern::Regex(pattern.into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(err)?;
    Ok(Sequence::new(vec![
        split.into(),
        ByteLevel::new(false, true, false).into(),
    ])
    .into())
}

impl LmTokenizer {
    /// Reads the tokenizer of a GGUF file.
    pub fn from_gguf(path: &Path) -> std::result::Result<Self, LmError> {
        let mut f = std::fs::File::open(path).map_err(|e| LmError::file(path, e))?;
        let c = gguf_file::Content::read(&mut f)
            .map_err(|e| LmError::file(path, format!("not a GGUF file: {e}")))?;
        let get = |k: &str| c.metadata.get(k);
        let model = get("tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        if model != "gpt2" {
            return Err(LmError::Unsupported(format!(
                "{}: tokenizer model `{model}` (SentencePiece for `llama`) is not supported: give the model's tokenizer.json with --tokenizer",
                path.display()
            )));
        }
        let pre = get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        let tokens: Vec<String> = get("tokenizer.ggml.tokens")
            .ok_or_else(|| LmError::file(path, "GGUF has no tokenizer.ggml.tokens"))?
            .to_vec()?
            .iter()
            .map(|v| v.to_string().cloned())
            .collect::<candle_core::Result<_>>()?;
        let merges: Vec<(String, String)> = get("tokenizer.ggml.merges")
            .ok_or_else(|| LmError::file(path, "GGUF has no tokenizer.ggml.merges"))?
            .to_vec()?
            .iter()
            .map(|v| {
                let s = v.to_string()?;
                s.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| LmError::file(path, format!("bad merge `{s}`")))
            })
            .collect::<std::result::Result<_, LmError>>()?;
        let types: Vec<i32> = get("tokenizer.ggml.token_type")
            .and_then(|v| v.to_vec().ok())
            .map(|v| v.iter().map(|x| x.to_i32().unwrap_or(1)).collect())
            .unwrap_or_default();
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| LmError::file(path, e))?;
        let mut tok = Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, true, true);
        let pre_tok: PreTokenizerWrapper = match pre.as_str() {
            "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
            "qwen2" => {
                // llama.cpp's LLAMA_VOCAB_PRE_TYPE_QWEN2 (Qwen2/2.5/3): one digit at a time.
                regex_then_bytes(QWEN2_PATTERN)?
            }
            "llama-bpe" | "llama3" => {
                // llama.cpp's LLAMA_VOCAB_PRE_TYPE_LLAMA3: digits in runs of up to three.
                regex_then_bytes(LLAMA3_PATTERN)?
            }
            "gpt2" | "default" | "" => byte_level.into(),
            other => {
                tracing::warn!(
                    "{}: pre-tokenizer `{other}` is not known to detox; splitting as GPT-2 does (ids may differ from llama.cpp's)",
                    path.display()
                );
                byte_level.into()
            }
        };
        tok.with_pre_tokenizer(Some(pre_tok));
        tok.with_decoder(Some(ByteLevel::default()));
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(types.iter())
            .filter(|(_, t)| **t == 3)
            .map(|(s, _)| AddedToken::from(s.clone(), true))
            .collect();
        tok.add_special_tokens(specials)
            .map_err(|e| LmError::file(path, e))?;
        let sp = GgufSpecials::read(&c);
        Ok(Self {
            inner: tok,
            bos: sp.bos,
            eos: sp.eos,
            stop: sp.stop,
            add_bos: sp.add_bos,
        })
    }

    /// Reads a Hugging Face `tokenizer.json` with the given special ids.
    pub fn from_json(
        path: &Path,
        bos: Option<u32>,
        eos: Option<u32>,
        add_bos: bool,
    ) -> std::result::Result<Self, LmError> {
        let inner = Tokenizer::from_file(path).map_err(|e| LmError::file(path, e))?;
        Ok(Self {
            inner,
            bos,
            eos,
            stop: eos.into_iter().collect(),
            add_bos,
        })
    }

    /// Reads the tokenizer of a Hugging Face folder: `tokenizer.json`, else byte-level BPE
    /// from `vocab.json` + `merges.txt` (GPT-2's files). `bos`/`eos` come from the model's
    /// configuration.
    pub fn from_folder(
        dir: &Path,
        bos: Option<u32>,
        eos: Option<u32>,
    ) -> std::result::Result<Self, LmError> {
        let json = dir.join("tokenizer.json");
        let inner = if json.exists() {
            Tokenizer::from_file(&json).map_err(|e| LmError::file(&json, e))?
        } else {
            let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
            if !vocab.exists() || !merges.exists() {
                return Err(LmError::file(
                    dir,
                    "no tokenizer.json, nor vocab.json + merges.txt",
                ));
            }
            let bpe = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
                .build()
                .map_err(|e| LmError::file(&vocab, e))?;
            let mut tok = Tokenizer::new(bpe);
            tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
            tok.with_decoder(Some(ByteLevel::default()));
            // GPT-2's one special token, when the vocabulary has it.
            if tok.token_to_id("<|endoftext|>").is_some() {
                tok.add_special_tokens(vec![AddedToken::from("<|endoftext|>", true)])
                    .map_err(|e| LmError::file(&vocab, e))?;
            }
            tok
        };
        // `tokenizer_config.json`'s `add_bos_token` (written by `detox finetune` from a GGUF
        // file's `tokenizer.ggml.add_bos_token`, and by `transformers` for llama tokenizers).
        let add_bos = std::fs::read_to_string(dir.join("tokenizer_config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["add_bos_token"].as_bool())
            .unwrap_or(false);
        Ok(Self {
            inner,
            bos,
            eos,
            stop: eos.into_iter().collect(),
            add_bos,
        })
    }

    /// Token ids of a text (special-token text such as `<|im_start|>` maps to its id).
    pub fn encode(&self, text: &str) -> candle_core::Result<Vec<u32>> {
        Ok(self
            .inner
            .encode(text, false)
            .map_err(err)?
            .get_ids()
            .to_vec())
    }

    /// Text of token ids (special tokens skipped).
    pub fn decode(&self, ids: &[u32]) -> candle_core::Result<String> {
        self.inner.decode(ids, true).map_err(err)
    }
}
