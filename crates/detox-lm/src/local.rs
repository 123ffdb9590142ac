//! A local model with its tokenizer, behind [`LanguageModel`]: a GGUF file (llama family) or a
//! Hugging Face GPT-2 folder.

use crate::decoding::{Mitigation, MitigationSpec, PreparedPrompt};
use crate::gpt2::Gpt2;
use crate::llama::{Llama, WeightMode};
use crate::loss::{text_losses, TextLoss};
use crate::model::{Completion, GenerationRequest, LanguageModel, LmError, PromptSession};
use crate::tokenizer::{GgufSpecials, LmTokenizer};
use crate::{tail_nll, CausalLm};
use candle_core::Device;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// A local causal LM and its tokenizer.
pub struct LocalLm {
    model: Arc<dyn CausalLm>,
    tok: LmTokenizer,
    identity: Value,
    concurrency: usize,
    mitigations: Vec<Box<dyn Mitigation>>,
}

fn sha256(path: &Path) -> Result<String, LmError> {
    detox_io::files::sha256_file(path).map_err(|e| LmError::file(path, e.error))
}

fn is_gguf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map(|_| &magic == b"GGUF")
        .unwrap_or(false)
}

impl LocalLm {
    /// Loads a GGUF file (llama family; matrices dequantized to f32, the fastest for batched
    /// sampling on CPU) or a Hugging Face GPT-2 folder (safetensors).
    pub fn load(path: &Path, device: &Device) -> Result<Self, LmError> {
        Self::load_with(path, device, WeightMode::F32, None)
    }

    /// As [`LocalLm::load`], holding GGUF weights as `mode` says, with the tokenizer of a
    /// Hugging Face `tokenizer.json` instead of the model's own when `tokenizer` is given (the
    /// special ids still come from the model; needed for GGUF files with a SentencePiece
    /// vocabulary).
    pub fn load_with(
        path: &Path,
        device: &Device,
        mode: WeightMode,
        tokenizer: Option<&Path>,
    ) -> Result<Self, LmError> {
        let mut lm = Self::load_model(path, device, mode, tokenizer)?;
        if let Some(t) = tokenizer {
            lm.identity["tokenizer"] =
                json!({"path": t.display().to_string(), "sha256": sha256(t)?});
        }
        Ok(lm)
    }

    fn load_model(
        path: &Path,
        device: &Device,
        mode: WeightMode,
        tokenizer: Option<&Path>,
    ) -> Result<Self, LmError> {
        if path.is_dir() {
            let config = path.join("config.json");
            let text = std::fs::read_to_string(&config).map_err(|e| {
                LmError::file(
                    &config,
                    format!("{e} (a model folder needs a Hugging Face config.json)"),
                )
            })?;
            let c: Value = serde_json::from_str(&text).map_err(|e| LmError::file(&config, e))?;
            let kind = c["model_type"].as_str().unwrap_or("").to_string();
            let id = |k: &str| c[k].as_u64().map(|v| v as u32);
            let (model, bos, eos): (Arc<dyn CausalLm>, _, _) = match kind.as_str() {
                "gpt2" => {
                    let m = Gpt2::load(path, device)?;
                    let (b, e) = (m.config.bos, m.config.eos);
                    (Arc::new(m), b, e)
                }
                "llama" => (
                    Arc::new(Llama::load_hf(path, device)?),
                    id("bos_token_id"),
                    id("eos_token_id"),
                ),
                _ => {
                    return Err(LmError::Unsupported(format!(
                        "{}: model_type `{kind}`: safetensors folders are supported for gpt2 and llama; use a GGUF file for other llama-family models",
                        config.display()
                    )))
                }
            };
            let tok = match tokenizer {
                Some(t) => LmTokenizer::from_json(t, bos, eos, false)?,
                None => LmTokenizer::from_folder(path, bos, eos)?,
            };
            let mut files = serde_json::Map::new();
            let mut names: Vec<_> = std::fs::read_dir(path)
                .map_err(|e| LmError::file(path, e))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.ends_with(".safetensors") || n == "config.json")
                .collect();
            names.sort();
            for n in names {
                files.insert(n.clone(), Value::String(sha256(&path.join(&n))?));
            }
            return Ok(Self {
                model,
                tok,
                identity: json!({"kind": kind, "path": path.display().to_string(), "sha256": files}),
                concurrency: 1,
                mitigations: Vec::new(),
            });
        }
        if !is_gguf(path) {
            return Err(LmError::file(path, "not a GGUF file nor a model folder"));
        }
        let model = Llama::load_with(path, device, mode)?;
        let tok = match tokenizer {
            Some(t) => {
                let sp = GgufSpecials::from_gguf(path)?;
                let mut tok = LmTokenizer::from_json(t, sp.bos, sp.eos, sp.add_bos)?;
                tok.stop = sp.stop;
                tok
            }
            None => LmTokenizer::from_gguf(path)?,
        };
        Ok(Self {
            model: Arc::new(model),
            tok,
            identity: json!({"kind": "gguf", "path": path.display().to_string(), "sha256": sha256(path)?}),
            concurrency: 1,
            mitigations: Vec::new(),
        })
    }

    /// Lets the evaluation run `n` prompts side by side (one core each: on CPU two
    /// single-threaded decoders beat one decoder on two threads by about 1.5x).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Samples with these decoding-time methods, applied in order (perplexity stays the
    /// unmitigated model's: DExperts' convention of fluency by an outside judge). The
    /// test-time filter is not the model's to apply (the evaluation does, on whole samples)
    /// and is passed over here.
    pub fn with_mitigations(mut self, specs: &[MitigationSpec]) -> Result<Self, LmError> {
        self.mitigations = specs
            .iter()
            .filter_map(|s| s.build(&self.tok, &self.model).transpose())
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// The model, to share with methods that run it beside the sampled rows.
    pub fn shared_model(&self) -> Arc<dyn CausalLm> {
        self.model.clone()
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &LmTokenizer {
        &self.tok
    }

    /// The model.
    pub fn model(&self) -> &dyn CausalLm {
        self.model.as_ref()
    }

    /// A text's ids with BOS first where the tokenizer asks for it, or where the text is empty
    /// (when the model has a BOS).
    fn encode_with_bos(&self, text: &str) -> Result<Vec<u32>, LmError> {
        let mut ids = self.tok.encode(text)?;
        if self.tok.add_bos || ids.is_empty() {
            ids.splice(0..0, self.tok.bos);
        }
        Ok(ids)
    }

    /// The prompt's ids as the model is fed them: BOS first where the tokenizer asks for it,
    /// BOS alone for an empty prompt, the last tokens kept when it would not leave room for
    /// `room` new ones.
    pub fn prompt_ids(&self, prompt: &str, room: usize) -> Result<Vec<u32>, LmError> {
        let mut ids = self.encode_with_bos(prompt)?;
        if ids.is_empty() {
            return Err(LmError::Unsupported(
                "an empty prompt needs a BOS token, and this model has none".into(),
            ));
        }
        let limit = self.model.context().saturating_sub(room).max(1);
        if ids.len() > limit {
            tracing::warn!(
                "prompt of {} tokens cut to its last {limit} to leave room for {room} new ones",
                ids.len()
            );
            ids.drain(..ids.len() - limit);
        }
        Ok(ids)
    }
}

/// A prompt prefilled on a local model (and on whatever its methods run beside it).
struct LocalSession<'a> {
    lm: &'a LocalLm,
    prepared: PreparedPrompt<'a>,
    req: GenerationRequest,
    prompt_index: u64,
    /// The tokens each stream sampled, for [`PromptSession::perplexity`].
    sampled: HashMap<u64, Vec<u32>>,
}

impl PromptSession for LocalSession<'_> {
    fn sample(&mut self, streams: &[u64]) -> Result<Vec<Completion>, LmError> {
        let req = &self.req;
        let samples = self.prepared.sample(
            streams,
            req.max_tokens,
            &self.lm.tok.stop,
            &req.params,
            self.prompt_index,
        )?;
        // Conditional perplexity as DExperts reports it: exp of the mean NLL of the
        // continuation's tokens under the unmitigated model, on the prompt's cache.
        let ppl = if req.perplexity {
            crate::perplexities(&self.prepared.base_nll(&samples)?, &samples)
        } else {
            vec![None; samples.len()]
        };
        let out = samples
            .iter()
            .zip(ppl)
            .map(|(s, p)| {
                Ok(Completion {
                    text: self.lm.tok.decode(s)?,
                    perplexity: p,
                })
            })
            .collect();
        // Kept (moved, not copied) for a later `perplexity` of some of them.
        self.sampled.extend(streams.iter().copied().zip(samples));
        out
    }

    fn perplexity(&mut self, streams: &[u64]) -> Result<Vec<Option<f64>>, LmError> {
        let tails: Vec<Vec<u32>> = streams
            .iter()
            .map(|s| self.sampled.get(s).cloned().unwrap_or_default())
            .collect();
        Ok(crate::perplexities(
            &self.prepared.base_nll(&tails)?,
            &tails,
        ))
    }
}

impl LanguageModel for LocalLm {
    fn identity(&self) -> Value {
        self.identity.clone()
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn mitigations(&self) -> Vec<Value> {
        self.mitigations.iter().map(|m| m.describe()).collect()
    }

    fn open<'a>(
        &'a self,
        prompt: &str,
        prompt_index: u64,
        req: &GenerationRequest,
    ) -> Result<Box<dyn PromptSession + 'a>, LmError> {
        let ids = self.prompt_ids(prompt, req.max_tokens)?;
        let methods: Vec<&dyn Mitigation> = self.mitigations.iter().map(|m| m.as_ref()).collect();
        Ok(Box::new(LocalSession {
            lm: self,
            prepared: PreparedPrompt::new(self.model.as_ref(), &methods, &ids)?,
            req: req.clone(),
            prompt_index,
            sampled: HashMap::new(),
        }))
    }

    fn losses(&self, texts: &[&str], mitigated: bool) -> Result<Vec<TextLoss>, LmError> {
        let methods: Vec<&dyn Mitigation> = if mitigated {
            self.mitigations.iter().map(|m| m.as_ref()).collect()
        } else {
            Vec::new()
        };
        text_losses(self.model.as_ref(), &self.tok, &methods, texts)
    }

    fn perplexity(
        &self,
        prompt: &str,
        continuations: &[&str],
    ) -> Result<Vec<Option<f64>>, LmError> {
        let context = self.model.context();
        let mut p = self.encode_with_bos(prompt)?;
        let mut fulls: Vec<Vec<u32>> = continuations
            .iter()
            .map(|c| self.encode_with_bos(&format!("{prompt}{c}")))
            .collect::<Result<_, _>>()?;
        // Condition on the longest prefix the prompt shares with every full text (BPE may merge
        // across the boundary); DExperts' difference of losses takes care of the rest. With no
        // shared token at all (an empty prompt, or a merge at the very first token), start
        // every sequence from BOS.
        let shared = |p: &[u32], fulls: &[Vec<u32>]| {
            fulls.iter().fold(p.len(), |m, f| {
                m.min(p.iter().zip(f).take_while(|(a, b)| a == b).count())
            })
        };
        let mut common = shared(&p, &fulls);
        if common == 0 {
            let Some(bos) = self.tok.bos else {
                return Ok(vec![None; continuations.len()]);
            };
            if p.first() != Some(&bos) {
                p.insert(0, bos);
            }
            for f in &mut fulls {
                if f.first() != Some(&bos) {
                    f.insert(0, bos);
                }
            }
            common = shared(&p, &fulls);
        }
        // Texts longer than the judge's context get no perplexity (not a cut one).
        let fits: Vec<bool> = fulls.iter().map(|f| f.len() <= context).collect();
        if common == 0 || p.len() > context {
            return Ok(vec![None; continuations.len()]);
        }
        let mut tails: Vec<Vec<u32>> = vec![p[common..].to_vec()];
        tails.extend(fulls.iter().zip(&fits).map(|(f, ok)| {
            if *ok {
                f[common..].to_vec()
            } else {
                Vec::new()
            }
        }));
        let nll = tail_nll(self.model.as_ref(), &p[..common], &tails)?;
        Ok(fulls
            .iter()
            .zip(&fits)
            .zip(&nll[1..])
            .map(|((f, ok), n)| {
                let new = f.len() as f64 - p.len() as f64;
                (*ok && new > 0.0).then(|| ((n - nll[0]) / new).exp())
            })
            .collect())
    }
}
