//! `--mitigate` values: which decoding-time methods to apply, in order, and with what
//! parameters, parsed once (`word-filter:list=FILE`; several are separated by commas).

use super::{Mitigation, WordFilter};
use crate::tokenizer::LmTokenizer;
use crate::LmError;
use std::path::PathBuf;
use std::str::FromStr;

/// One method with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MitigationSpec {
    /// RTP's word filter over the words of a file (one per line).
    WordFilter {
        /// The word list.
        list: PathBuf,
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

impl FromStr for MitigationSpec {
    type Err = MitigationSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |m: &str| MitigationSpecError {
            spec: s.to_string(),
            message: m.to_string(),
        };
        let (name, params) = s.split_once(':').unwrap_or((s, ""));
        let mut list = None;
        for p in params.split(';').filter(|p| !p.is_empty()) {
            match p.split_once('=') {
                Some(("list", v)) if !v.is_empty() => list = Some(PathBuf::from(v)),
                _ => {
                    return Err(err(&format!(
                        "unknown parameter `{p}` (word-filter takes list=FILE)"
                    )))
                }
            }
        }
        match name.trim() {
            "word-filter" => Ok(Self::WordFilter {
                list: list.ok_or_else(|| {
                    err("word-filter needs its word list: word-filter:list=FILE (one word per line, e.g. ../shared/data/ldnoobw-en/en.txt)")
                })?,
            }),
            other => Err(err(&format!("unknown method `{other}` (known: word-filter)"))),
        }
    }
}

impl MitigationSpec {
    /// Parses a comma-separated list, in order.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, MitigationSpecError> {
        s.split(',')
            .filter(|x| !x.trim().is_empty())
            .map(|x| x.trim().parse())
            .collect()
    }

    /// Whether the method needs the model's logits (servers cannot give them).
    pub fn needs_logits(&self) -> bool {
        match self {
            Self::WordFilter { .. } => true,
        }
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::WordFilter { .. } => "word-filter",
        }
    }

    /// Builds it for a model with tokenizer `tok`.
    pub fn build(&self, tok: &LmTokenizer) -> Result<Box<dyn Mitigation>, LmError> {
        match self {
            Self::WordFilter { list } => {
                let text = std::fs::read_to_string(list).map_err(|e| LmError::file(list, e))?;
                let f = WordFilter::from_words(tok, text.lines(), &list.display().to_string())?;
                Ok(Box::new(f.with_list_sha256(detox_io::files::sha256_bytes(
                    text.as_bytes(),
                ))))
            }
        }
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
        assert!(e.message.contains("unknown parameter `lst=x`"), "{e}");
    }
}
