//! `--mitigate` values: which decoding-time methods to apply, in order, and with what
//! parameters, parsed once (`word-filter:list=FILE`; several are separated by commas).

use super::{DExperts, Mitigation, SelfDebias, WordFilter};
use crate::local::LocalLm;
use crate::tokenizer::LmTokenizer;
use crate::CausalLm;
use crate::LmError;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

/// One method with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum MitigationSpec {
    /// RTP's word filter over the words of a file (one per line).
    WordFilter {
        /// The word list.
        list: PathBuf,
    },
    /// DExperts (Liu et al. 2021): an optional expert and an anti-expert (local model files or
    /// folders sharing the base model's tokenizer), weight `alpha`, base nucleus `filter_p`.
    DExperts {
        /// The expert (the base model stands in when absent).
        expert: Option<PathBuf>,
        /// The anti-expert.
        anti: PathBuf,
        /// The steering weight (their default 2.0).
        alpha: f64,
        /// The base logits' nucleus (0.9).
        filter_p: f64,
    },
    /// Test-time filtering (Welbl et al. 2021): a sample the run's scorer gives `threshold` or
    /// more is sampled again, up to `tries` in all. Not a change of the logits: the evaluation
    /// applies it to whole samples, so it works with servers too.
    TestFilter {
        /// Samples scoring this or more are sampled again (detox's default 0.5).
        threshold: f64,
        /// Tries per sample in all, the first included (detox's default 4).
        tries: usize,
    },
    /// Self-debiasing (Schick et al. 2021) with decay `lambda` and floor `epsilon`.
    SelfDebias {
        /// The decay constant (their default 50).
        lambda: f64,
        /// The smallest factor a probability is scaled by (0.01).
        epsilon: f64,
    },
}

/// A `--mitigate` value that is not one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--mitigate `{spec}`: {message}")]
pub struct MitigationSpecError {
    /// The value as written.
    pub spec: String,
    /// What is wrong.
    pub message: String,
}

const KNOWN: &str = "known: word-filter:list=FILE, test-filter[:threshold=0.5,tries=4], self-debias[:lambda=50,epsilon=0.01], dexperts:[expert=PATH,]anti=PATH[,alpha=2.0,filter_p=0.9]";

impl FromStr for MitigationSpec {
    type Err = MitigationSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |m: &str| MitigationSpecError {
            spec: s.to_string(),
            message: m.to_string(),
        };
        let (name, params) = s.split_once(':').unwrap_or((s, ""));
        let mut kv = Vec::new();
        for p in params.split([',', ';']).filter(|p| !p.is_empty()) {
            match p.split_once('=') {
                Some((k, v)) if !v.is_empty() => kv.push((k.trim(), v.trim())),
                _ => return Err(err(&format!("`{p}` is not NAME=VALUE"))),
            }
        }
        let number = |k: &str, v: &str| -> Result<f64, MitigationSpecError> {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| err(&format!("{k}: `{v}` is not a non-negative number")))
        };
        match name.trim() {
            "word-filter" => {
                let mut list = None;
                for (k, v) in kv {
                    match k {
                        "list" => list = Some(PathBuf::from(v)),
                        _ => {
                            return Err(err(&format!(
                                "unknown parameter `{k}` (word-filter takes list=FILE)"
                            )))
                        }
                    }
                }
                Ok(Self::WordFilter {
                    list: list.ok_or_else(|| {
                        err("word-filter needs its word list: word-filter:list=FILE (one word per line, e.g. ../shared/data/ldnoobw-en/en.txt)")
                    })?,
                })
            }
            "test-filter" => {
                let (mut threshold, mut tries) = (0.5, 4);
                for (k, v) in kv {
                    match k {
                        "threshold" => threshold = number(k, v)?,
                        "tries" => {
                            tries =
                                v.parse::<usize>().ok().filter(|t| *t >= 1).ok_or_else(|| {
                                    err(&format!(
                                        "tries: `{v}` is not a whole number of at least 1"
                                    ))
                                })?
                        }
                        _ => {
                            return Err(err(&format!(
                                "unknown parameter `{k}` (test-filter takes threshold and tries)"
                            )))
                        }
                    }
                }
                Ok(Self::TestFilter { threshold, tries })
            }
            "self-debias" => {
                let (mut lambda, mut epsilon) = (50.0, 0.01);
                for (k, v) in kv {
                    match k {
                        "lambda" => lambda = number(k, v)?,
                        "epsilon" => epsilon = number(k, v)?,
                        _ => {
                            return Err(err(&format!(
                                "unknown parameter `{k}` (self-debias takes lambda and epsilon)"
                            )))
                        }
                    }
                }
                Ok(Self::SelfDebias { lambda, epsilon })
            }
            "dexperts" => {
                let (mut expert, mut anti, mut alpha, mut filter_p) = (None, None, 2.0, 0.9);
                for (k, v) in kv {
                    match k {
                        "expert" => expert = Some(PathBuf::from(v)),
                        "anti" => anti = Some(PathBuf::from(v)),
                        "alpha" => alpha = number(k, v)?,
                        "filter_p" => filter_p = number(k, v)?,
                        _ => return Err(err(&format!("unknown parameter `{k}` (dexperts takes expert, anti, alpha, filter_p)"))),
                    }
                }
                Ok(Self::DExperts {
                    expert,
                    anti: anti.ok_or_else(|| err("dexperts needs an anti-expert: dexperts:anti=PATH (expert=PATH too, else the base model stands in)"))?,
                    alpha,
                    filter_p,
                })
            }
            other => Err(err(&format!("unknown method `{other}` ({KNOWN})"))),
        }
    }
}

impl MitigationSpec {
    /// Parses a comma-separated list, in order. A piece with `=` but no `:` continues the
    /// previous method's parameters (`self-debias:lambda=50,epsilon=0.01,word-filter:list=F`).
    pub fn parse_list(s: &str) -> Result<Vec<Self>, MitigationSpecError> {
        let mut specs: Vec<String> = Vec::new();
        for piece in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match specs.last_mut() {
                Some(last) if piece.contains('=') && !piece.contains(':') => {
                    last.push(',');
                    last.push_str(piece);
                }
                _ => specs.push(piece.to_string()),
            }
        }
        specs.iter().map(|x| x.parse()).collect()
    }

    /// Whether the method needs the model's logits (servers cannot give them).
    pub fn needs_logits(&self) -> bool {
        match self {
            Self::WordFilter { .. } | Self::SelfDebias { .. } | Self::DExperts { .. } => true,
            Self::TestFilter { .. } => false,
        }
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::WordFilter { .. } => "word-filter",
            Self::TestFilter { .. } => "test-filter",
            Self::SelfDebias { .. } => "self-debias",
            Self::DExperts { .. } => "dexperts",
        }
    }

    /// Its name and parameters for `run.json`, for a method the evaluation applies (the
    /// test-time filter); `None` for methods that change the logits (a built [`Mitigation`]
    /// describes those).
    pub fn describe_sample_level(&self) -> Option<serde_json::Value> {
        match self {
            Self::TestFilter { threshold, tries } => Some(serde_json::json!({
                "method": "test-filter",
                "threshold": threshold,
                "tries": tries,
            })),
            _ => None,
        }
    }

    /// Builds it for `model`, whose tokenizer is `tok`: a method that changes the logits, or
    /// `None` for the test-time filter (the evaluation applies it to whole samples).
    pub fn build(
        &self,
        tok: &LmTokenizer,
        model: &Arc<dyn CausalLm>,
    ) -> Result<Option<Box<dyn Mitigation>>, LmError> {
        Ok(Some(match self {
            Self::TestFilter { .. } => return Ok(None),
            Self::WordFilter { list } => {
                let text = std::fs::read_to_string(list).map_err(|e| LmError::file(list, e))?;
                let f = WordFilter::from_words(tok, text.lines(), &list.display().to_string())?;
                Box::new(f.with_list_sha256(detox_io::files::sha256_bytes(text.as_bytes())))
                    as Box<dyn Mitigation>
            }
            Self::DExperts {
                expert,
                anti,
                alpha,
                filter_p,
            } => {
                let load = |p: &PathBuf| -> Result<Arc<dyn CausalLm>, LmError> {
                    Ok(LocalLm::load(p, &candle_core::Device::Cpu)?.shared_model())
                };
                let e = expert.as_ref().map(load).transpose()?;
                Box::new(DExperts::new(
                    model.as_ref(),
                    e,
                    load(anti)?,
                    *alpha as f32,
                    *filter_p as f32,
                    (
                        expert.as_ref().map(|p| p.display().to_string()),
                        anti.display().to_string(),
                    ),
                )?)
            }
            Self::SelfDebias { lambda, epsilon } => {
                Box::new(SelfDebias::new(model.clone(), tok, *lambda, *epsilon)?)
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_with_the_fix() {
        assert_eq!(
            MitigationSpec::parse_list("word-filter:list=w.txt").unwrap(),
            [MitigationSpec::WordFilter {
                list: "w.txt".into()
            }]
        );
        let e = "word-filter".parse::<MitigationSpec>().unwrap_err();
        assert!(e.message.contains("list=FILE"), "{e}");
        let e = "pplm".parse::<MitigationSpec>().unwrap_err();
        assert!(e.to_string().contains("unknown method `pplm`"), "{e}");
        let e = "word-filter:lst=x".parse::<MitigationSpec>().unwrap_err();
        assert!(e.message.contains("unknown parameter `lst`"), "{e}");
        assert_eq!(
            MitigationSpec::parse_list(
                "self-debias:lambda=10,epsilon=0.1,word-filter:list=w.txt,self-debias"
            )
            .unwrap(),
            [
                MitigationSpec::SelfDebias {
                    lambda: 10.0,
                    epsilon: 0.1
                },
                MitigationSpec::WordFilter {
                    list: "w.txt".into()
                },
                MitigationSpec::SelfDebias {
                    lambda: 50.0,
                    epsilon: 0.01
                },
            ]
        );
        assert_eq!(
            MitigationSpec::parse_list("word-filter:list=w,test-filter:tries=2,threshold=0.3")
                .unwrap()[1],
            MitigationSpec::TestFilter {
                threshold: 0.3,
                tries: 2
            }
        );
        assert_eq!(
            "test-filter".parse::<MitigationSpec>().unwrap(),
            MitigationSpec::TestFilter {
                threshold: 0.5,
                tries: 4
            }
        );
        assert!(!"test-filter"
            .parse::<MitigationSpec>()
            .unwrap()
            .needs_logits());
        let e = "test-filter:tries=0".parse::<MitigationSpec>().unwrap_err();
        assert!(e.message.contains("at least 1"), "{e}");
        let e = "self-debias:lambda=-1"
            .parse::<MitigationSpec>()
            .unwrap_err();
        assert!(e.message.contains("non-negative"), "{e}");
    }
}
