//! Scorer specs: what `--scorer` names, parsed once into a typed [`ScorerSpec`] that both
//! loads the scorer and records its identity for run records.
//!
//! A spec is one of the built-in scorers (`default`, `default-head`, `fast`, embedded in the
//! binary), a comma-separated ensemble (the mean of its members), or a registry name / local
//! path (a Hugging Face classifier folder, a Detoxify `.ckpt`, a `detox train` head or n-gram
//! folder), pulled on first use unless offline, or a remote service (`perspective[:URL]`,
//! `openai-moderation[:URL]`, `detox:URL`; see [`detox_remote`]). Every consumer (the command line, the server,
//! corpus filters, the rating page) builds a scorer with one call:
//!
//! ```no_run
//! let scorer = detox_spec::load_scorer("default", &detox_spec::LoadOptions::default())?;
//! let scores = scorer.score(&["you are wonderful"])?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Parsing needs no file system; [`ScorerSpec::identity`] hashes the files a spec names.

mod builtin;
mod identity;
mod threads;

pub use identity::{FilesIdentity, ScorerIdentity};
pub use threads::configure_threads;

use detox_core::{Activation, Scorer};
use detox_hub::{Hub, HubError, PullOptions};
use detox_remote::{RemoteOptions, RemoteScorer, RemoteSpec};
use detox_scorers::folder::read_model_folder;
use detox_scorers::head::{HEAD_SPEC, HEAD_WEIGHTS};
use detox_scorers::ngram::NGRAM_SPEC;
use detox_scorers::{
    load_scorer as load_local, read_checkpoint_meta, ClassifierOptions, HeadScorer, HeadSpec,
    LoadError, NgramScorer,
};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// The scorer every command uses when `--scorer` is not given.
pub const DEFAULT_SCORER: &str = "default";
/// The built-in encoder head alone.
pub const DEFAULT_HEAD_SCORER: &str = "default-head";
/// The built-in n-gram scorer.
pub const FAST_SCORER: &str = "fast";

/// Why a scorer spec could not be parsed, loaded or identified.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The spec is empty or has an empty ensemble member.
    #[error("scorer spec `{0}` is empty or has an empty member (expected e.g. `default`, `fast`, a registry name, a path, or `a,b`)")]
    Empty(String),
    /// A registry name could not be resolved (unknown, offline and not cached, pull failed).
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The scorer's files could not be loaded.
    #[error("cannot load scorer `{spec}`")]
    Load {
        /// The spec as written.
        spec: String,
        /// Why.
        #[source]
        source: LoadError,
    },
    /// A head scorer's encoder could not be resolved.
    #[error("the encoder `{encoder}` of scorer `{id}`")]
    Encoder {
        /// The head scorer.
        id: String,
        /// Its encoder's registry name or path.
        encoder: String,
        /// Why.
        #[source]
        source: HubError,
    },
    /// An ensemble could not be built (members disagree).
    #[error("scorer `{spec}`")]
    Ensemble {
        /// The spec as written.
        spec: String,
        /// Why.
        #[source]
        source: detox_core::ScoreError,
    },
    /// A file could not be read or hashed.
    #[error(transparent)]
    File(#[from] detox_io::files::FileError),
    /// A remote scorer's spec is wrong or it could not be set up.
    #[error(transparent)]
    Remote(#[from] detox_remote::RemoteError),
}

/// A parsed `--scorer` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScorerSpec {
    /// `default`: the mean of the built-in encoder head and n-gram model.
    Default,
    /// `default-head`: the built-in head on the pulled MiniLM encoder.
    DefaultHead,
    /// `fast`: the built-in n-gram model.
    Fast,
    /// `a,b,...`: the mean of the members' scores.
    Ensemble(Vec<ScorerSpec>),
    /// A registry name or a local path.
    Named(String),
    /// A remote service.
    Remote(RemoteSpec),
}

impl FromStr for ScorerSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        if s.contains(',') {
            let members = s
                .split(',')
                .map(|m| match m.trim() {
                    "" => Err(SpecError::Empty(s.to_string())),
                    m => m.parse(),
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Self::Ensemble(members));
        }
        Ok(match s.trim() {
            "" => return Err(SpecError::Empty(s.to_string())),
            DEFAULT_SCORER => Self::Default,
            DEFAULT_HEAD_SCORER => Self::DefaultHead,
            FAST_SCORER => Self::Fast,
            other => match RemoteSpec::parse(other) {
                Some(remote) => Self::Remote(remote?),
                None => Self::Named(other.to_string()),
            },
        })
    }
}

impl fmt::Display for ScorerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str(DEFAULT_SCORER),
            Self::DefaultHead => f.write_str(DEFAULT_HEAD_SCORER),
            Self::Fast => f.write_str(FAST_SCORER),
            Self::Named(n) => f.write_str(n),
            Self::Remote(r) => write!(f, "{r}"),
            Self::Ensemble(m) => {
                for (i, s) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{s}")?;
                }
                Ok(())
            }
        }
    }
}

/// Hears what the hub pulls, from where and to where.
pub type Notify = Arc<dyn Fn(&str) + Send + Sync>;

/// Prints hub messages on stderr as `detox: ...` (the command line's progress messages).
pub fn notify_stderr() -> Notify {
    Arc::new(|m: &str| eprintln!("detox: {m}"))
}

/// How to load a scorer.
#[derive(Clone)]
pub struct LoadOptions {
    /// Texts per forward pass, run side by side (encoder classifiers and heads).
    pub classifier: ClassifierOptions,
    /// A Detoxify checkpoint's base config and tokenizer folder (`--base`).
    pub base: Option<PathBuf>,
    /// Never download.
    pub offline: bool,
    /// Where pull messages go.
    pub notify: Notify,
    /// The registry and cache (default: `Hub::from_env()`).
    pub hub: Hub,
    /// Remote scorers' key, pace, retries and cache.
    pub remote: RemoteOptions,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            classifier: ClassifierOptions::default(),
            base: None,
            offline: false,
            notify: notify_stderr(),
            hub: Hub::from_env(),
            remote: RemoteOptions::default(),
        }
    }
}

impl fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadOptions")
            .field("classifier", &self.classifier)
            .field("base", &self.base)
            .field("offline", &self.offline)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl LoadOptions {
    /// Batches of `batch_size` texts, `threads` of them side by side.
    pub fn parallel(batch_size: usize, threads: usize, offline: bool) -> Self {
        Self {
            classifier: ClassifierOptions {
                batch_size,
                parallel_batches: threads,
                ..Default::default()
            },
            offline,
            ..Default::default()
        }
    }

    /// Remote scorers' options.
    pub fn with_remote(mut self, remote: RemoteOptions) -> Self {
        self.remote = remote;
        self
    }

    /// Overrides the activation (`--activation`).
    pub fn with_activation(mut self, a: Option<Activation>) -> Self {
        self.classifier.activation = a;
        self
    }

    fn pull_options(&self) -> PullOptions {
        PullOptions {
            offline: self.offline,
            ..Default::default()
        }
    }

    /// Resolves a registry name or path to a local path, pulling unless offline.
    pub fn resolve_path(&self, name: &str) -> Result<PathBuf, HubError> {
        self.hub
            .resolve(name, &self.pull_options(), self.notify.as_ref())
    }
}

/// Parses `spec` and loads it: the one call a library needs to score with `--scorer`'s value.
pub fn load_scorer(spec: &str, opts: &LoadOptions) -> Result<Box<dyn Scorer>, SpecError> {
    spec.parse::<ScorerSpec>()?.load(opts)
}

impl ScorerSpec {
    /// Whether the spec names only built-in scorers (`default`, `default-head`, `fast`, or an
    /// ensemble of them): scorers trained on `detox-train`'s shared data, identity
    /// counter-examples included.
    pub fn is_builtin(&self) -> bool {
        match self {
            Self::Default | Self::DefaultHead | Self::Fast => true,
            Self::Ensemble(m) => m.iter().all(Self::is_builtin),
            Self::Named(_) | Self::Remote(_) => false,
        }
    }

    /// Whether the spec has a remote member (whose texts may fail one by one).
    pub fn is_remote(&self) -> bool {
        match self {
            Self::Remote(_) => true,
            Self::Ensemble(m) => m.iter().any(Self::is_remote),
            _ => false,
        }
    }

    /// Loads the scorer.
    pub fn load(&self, opts: &LoadOptions) -> Result<Box<dyn Scorer>, SpecError> {
        match self {
            Self::Ensemble(members) => {
                let loaded = members
                    .iter()
                    .map(|m| m.load(opts))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Box::new(detox_core::Ensemble::new(loaded).map_err(
                    |source| SpecError::Ensemble {
                        spec: self.to_string(),
                        source,
                    },
                )?))
            }
            Self::Default => {
                // The mean of the encoder head and the n-gram model, whose errors differ
                // (context vs words), calibrated as a whole onto Perspective's scale.
                ensemble_from_parts(
                    builtin::ENSEMBLE_SPEC_TEXT,
                    DEFAULT_SCORER,
                    &mut |m| match m {
                        "default" => Self::DefaultHead.load(opts),
                        "fast" => Self::Fast.load(opts),
                        other => Err(SpecError::Load {
                            spec: DEFAULT_SCORER.into(),
                            source: detox_scorers::LoadError::Config(format!(
                                "the built-in ensemble names an unknown member `{other}`"
                            )),
                        }),
                    },
                )
            }
            Self::DefaultHead => load_head(
                builtin::HEAD_SPEC_TEXT,
                builtin::HEAD_WEIGHTS_BYTES,
                DEFAULT_HEAD_SCORER,
                opts,
            ),
            Self::Fast => Ok(Box::new(
                NgramScorer::from_parts(
                    builtin::FAST_SPEC_TEXT,
                    builtin::FAST_WEIGHTS_BYTES,
                    FAST_SCORER,
                )
                .map_err(|source| SpecError::Load {
                    spec: FAST_SCORER.into(),
                    source,
                })?,
            )),
            Self::Remote(remote) => Ok(Box::new(RemoteScorer::connect(remote, &opts.remote)?)),
            Self::Named(name) => {
                let load_err = |source| SpecError::Load {
                    spec: name.clone(),
                    source,
                };
                let path = opts.resolve_path(name)?;
                if path.join(detox_core::ENSEMBLE_SPEC).exists() {
                    return load_ensemble_folder(&path, opts);
                }
                if path.join(NGRAM_SPEC).exists() {
                    return Ok(Box::new(NgramScorer::load(&path).map_err(load_err)?));
                }
                if path.join(HEAD_SPEC).exists() {
                    let (text, weights) =
                        read_model_folder(&path, HEAD_SPEC, HEAD_WEIGHTS).map_err(load_err)?;
                    return load_head(&text, &weights, &path.display().to_string(), opts);
                }
                let base = match &opts.base {
                    Some(b) => Some(b.clone()),
                    None => detoxify_base(&path, opts)?,
                };
                load_local(&path, base.as_deref(), opts.classifier.clone()).map_err(load_err)
            }
        }
    }

    /// What the spec names, with file hashes, for run records (`run.json`): built-in weights
    /// by the hash of their bytes and the pinned encoder, folders and files by each file's
    /// hash. Registry names are resolved (pulled unless offline).
    pub fn identity(&self, opts: &LoadOptions) -> Result<ScorerIdentity, SpecError> {
        identity::identity(self, opts)
    }
}

/// Loads a folder holding `ensemble.json` (written by `detox train --model default`): its
/// member folders, averaged and calibrated as a whole.
fn load_ensemble_folder(
    path: &std::path::Path,
    opts: &LoadOptions,
) -> Result<Box<dyn Scorer>, SpecError> {
    let id = path.display().to_string();
    let file = path.join(detox_core::ENSEMBLE_SPEC);
    let text = std::fs::read_to_string(&file).map_err(|error| SpecError::Load {
        spec: id.clone(),
        source: detox_scorers::LoadError::Io {
            path: file.display().to_string(),
            error,
        },
    })?;
    let here = path.canonicalize().ok();
    ensemble_from_parts(&text, &id, &mut |member| {
        let dir = path.join(member);
        // A member that is the folder itself would load forever.
        if member.trim().is_empty() || dir.canonicalize().ok() == here {
            return Err(SpecError::Load {
                spec: id.clone(),
                source: detox_scorers::LoadError::Config(format!(
                    "{}: member `{member}` is the ensemble's own folder",
                    detox_core::ENSEMBLE_SPEC
                )),
            });
        }
        ScorerSpec::Named(dir.display().to_string()).load(opts)
    })
}

/// Loads an ensemble member by its folder name.
type MemberLoader<'a> = dyn FnMut(&str) -> Result<Box<dyn Scorer>, SpecError> + 'a;

/// An ensemble from its `ensemble.json` text, loading each member with `load`.
fn ensemble_from_parts(
    text: &str,
    id: &str,
    load: &mut MemberLoader<'_>,
) -> Result<Box<dyn Scorer>, SpecError> {
    let bad = |message: String| SpecError::Load {
        spec: id.to_string(),
        source: detox_scorers::LoadError::Checkpoint {
            path: detox_core::ENSEMBLE_SPEC.to_string(),
            message,
        },
    };
    let spec: detox_core::EnsembleSpec =
        serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    if spec.format != detox_core::ENSEMBLE_FORMAT {
        return Err(bad(format!(
            "format `{}`, expected `{}`",
            spec.format,
            detox_core::ENSEMBLE_FORMAT
        )));
    }
    let members = spec
        .members
        .iter()
        .map(|m| load(m))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Box::new(
        detox_core::Ensemble::new(members)
            .map_err(|source| SpecError::Ensemble {
                spec: id.to_string(),
                source,
            })?
            .with_id(id)
            .with_calibration(&spec.calibration),
    ))
}

/// Loads a head scorer, resolving its encoder through the registry.
fn load_head(
    spec_text: &str,
    weights: &[u8],
    id: &str,
    opts: &LoadOptions,
) -> Result<Box<dyn Scorer>, SpecError> {
    let load_err = |source| SpecError::Load {
        spec: id.to_string(),
        source,
    };
    let head = HeadSpec::parse(spec_text, id).map_err(load_err)?;
    let encoder_dir = opts
        .resolve_path(&head.encoder)
        .map_err(|source| SpecError::Encoder {
            id: id.to_string(),
            encoder: head.encoder.clone(),
            source,
        })?;
    if let (Some(want), Ok(have)) = (
        &head.encoder_sha256,
        detox_scorers::classifier::weights_sha256(&encoder_dir),
    ) {
        if *want != have {
            tracing::warn!(
                "encoder {} differs from the one `{id}` was trained on (sha256 {have}, expected {want})",
                encoder_dir.display()
            );
        }
    }
    Ok(Box::new(
        HeadScorer::from_parts(
            spec_text,
            weights,
            &encoder_dir,
            id,
            opts.classifier.batch_size,
            opts.classifier.parallel_batches,
        )
        .map_err(load_err)?,
    ))
}

/// For a Detoxify checkpoint without its base config beside it, finds the base model
/// (`bert-base-uncased`, ...) in the registry.
fn detoxify_base(path: &Path, opts: &LoadOptions) -> Result<Option<PathBuf>, SpecError> {
    if !path.is_file() {
        return Ok(None);
    }
    if path
        .parent()
        .map(|p| p.join("config.json").exists())
        .unwrap_or(false)
    {
        return Ok(None);
    }
    let meta = read_checkpoint_meta(path).map_err(|source| SpecError::Load {
        spec: path.display().to_string(),
        source,
    })?;
    let Some(model_type) = meta
        .pointer("/config/arch/args/model_type")
        .and_then(|v| v.as_str())
    else {
        return Ok(None);
    };
    if opts.hub.entry(model_type).is_none() {
        return Ok(None);
    }
    Ok(Some(opts.resolve_path(model_type)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ensemble_folder_is_identified_by_its_members_files_too() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(detox_core::ENSEMBLE_SPEC),
            format!(
                "{{\"format\": \"{}\", \"members\": [\"a\"]}}",
                detox_core::ENSEMBLE_FORMAT
            ),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/w.bin"), b"weights").unwrap();
        std::fs::write(dir.path().join("a/.hidden"), b"x").unwrap();
        let id = ScorerSpec::Named(dir.path().display().to_string())
            .identity(&LoadOptions::default())
            .unwrap();
        let ScorerIdentity::Files(f) = id else {
            panic!("{id:?}")
        };
        let names: Vec<&String> = f.sha256.keys().collect();
        assert_eq!(names, ["a/w.bin", detox_core::ENSEMBLE_SPEC]);
    }

    #[test]
    fn an_ensemble_folder_naming_itself_is_an_error_not_a_loop() {
        let dir = tempfile::tempdir().unwrap();
        for member in [".", ""] {
            std::fs::write(
                dir.path().join(detox_core::ENSEMBLE_SPEC),
                format!(
                    "{{\"format\": \"{}\", \"members\": [\"{member}\"]}}",
                    detox_core::ENSEMBLE_FORMAT
                ),
            )
            .unwrap();
            let err = ScorerSpec::Named(dir.path().display().to_string())
                .load(&LoadOptions::default())
                .err()
                .expect("an error");
            assert!(
                err.to_string().contains("own folder") || format!("{err:?}").contains("own folder"),
                "{err:?}"
            );
        }
        std::fs::write(
            dir.path().join(detox_core::ENSEMBLE_SPEC),
            "{\"format\": \"x\", \"members\": []}",
        )
        .unwrap();
        let err = ScorerSpec::Named(dir.path().display().to_string())
            .load(&LoadOptions::default())
            .err()
            .expect("an error");
        assert!(format!("{err:?}").contains("format `x`"), "{err:?}");
    }

    #[test]
    fn parses_and_prints_back() {
        for s in [
            "default",
            "default-head",
            "fast",
            "./my-model",
            "default,fast",
            "a,b,c",
        ] {
            assert_eq!(s.parse::<ScorerSpec>().unwrap().to_string(), s);
        }
        assert_eq!(
            "default".parse::<ScorerSpec>().unwrap(),
            ScorerSpec::Default
        );
        assert_eq!(
            "fast, default-head".parse::<ScorerSpec>().unwrap(),
            ScorerSpec::Ensemble(vec![ScorerSpec::Fast, ScorerSpec::DefaultHead])
        );
        assert!(matches!("".parse::<ScorerSpec>(), Err(SpecError::Empty(_))));
        assert!(matches!(
            "fast,".parse::<ScorerSpec>(),
            Err(SpecError::Empty(_))
        ));
    }

    #[test]
    fn fast_loads_without_files_and_scores() {
        let s = load_scorer("fast", &LoadOptions::default()).unwrap();
        assert_eq!(s.info().id, "fast");
        let out = s.score(&["have a nice day", "you stupid idiot"]).unwrap();
        let t = s.info().attribute_index("toxicity").unwrap();
        assert!(out[1].values[t] > out[0].values[t] + 0.2, "{out:?}");
    }

    #[test]
    fn unknown_name_offline_is_a_hub_error() {
        let home = tempfile::tempdir().unwrap();
        let opts = LoadOptions {
            offline: true,
            hub: Hub::new(home.path(), Vec::new()),
            ..Default::default()
        };
        let e = load_scorer("no-such-scorer", &opts).err().unwrap();
        assert!(matches!(e, SpecError::Hub(_)), "{e}");
        assert!(e.to_string().contains("no-such-scorer"), "{e}");
    }

    #[test]
    fn identity_of_builtins_hashes_embedded_bytes() {
        let id = ScorerSpec::Fast.identity(&LoadOptions::default()).unwrap();
        let v = serde_json::to_value(&id).unwrap();
        assert_eq!(v["name"], "fast");
        assert_eq!(
            v["weights_sha256"],
            detox_io::files::sha256_bytes(builtin::FAST_WEIGHTS_BYTES)
        );
    }
}
