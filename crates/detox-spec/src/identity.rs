//! A scorer's identity for run records: what it is and the hashes of the bytes it ran on.

use crate::{builtin, LoadOptions, ScorerSpec, SpecError};
use crate::{DEFAULT_HEAD_SCORER, DEFAULT_SCORER, FAST_SCORER};
use detox_io::files::{sha256_bytes, sha256_file, FileError};
use detox_scorers::HeadSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a scorer spec names, as `run.json` records it (field order is the file's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ScorerIdentity {
    /// An ensemble written as `a,b`: its members in order.
    Ensemble(Vec<ScorerIdentity>),
    /// `default`: its two members.
    Default {
        /// `default`.
        name: String,
        /// The head and the n-gram model.
        members: Vec<ScorerIdentity>,
        /// sha256 of the embedded `ensemble.json` (the calibration of the members' mean).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ensemble_sha256: Option<String>,
    },
    /// The built-in head.
    Head {
        /// `default-head`.
        name: String,
        /// sha256 of the embedded head weights.
        weights_sha256: String,
        /// The encoder's registry name.
        encoder: String,
        /// sha256 of the encoder weights the head was trained on.
        encoder_sha256: Option<String>,
    },
    /// A model folder or file: each file's hash.
    Files(FilesIdentity),
    /// A remote service: its spec and the address asked (what it runs is the service's).
    Remote {
        /// The spec as written (`perspective`, `detox:http://...`).
        remote: String,
        /// The scoring route's address.
        endpoint: String,
    },
    /// The built-in n-gram model.
    Builtin {
        /// `fast`.
        name: String,
        /// sha256 of the embedded weights.
        weights_sha256: String,
    },
}

/// A scorer loaded from files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilesIdentity {
    /// The spec as written.
    pub name: String,
    /// The resolved path.
    pub path: String,
    /// sha256 of each file (by name in a folder; by path for a single file).
    pub sha256: BTreeMap<String, String>,
}

pub(crate) fn identity(spec: &ScorerSpec, opts: &LoadOptions) -> Result<ScorerIdentity, SpecError> {
    Ok(match spec {
        ScorerSpec::Ensemble(m) => ScorerIdentity::Ensemble(
            m.iter()
                .map(|s| identity(s, opts))
                .collect::<Result<_, _>>()?,
        ),
        ScorerSpec::Default => ScorerIdentity::Default {
            name: DEFAULT_SCORER.into(),
            members: vec![
                identity(&ScorerSpec::DefaultHead, opts)?,
                identity(&ScorerSpec::Fast, opts)?,
            ],
            ensemble_sha256: Some(sha256_bytes(builtin::ENSEMBLE_SPEC_TEXT.as_bytes())),
        },
        ScorerSpec::DefaultHead => {
            let head = HeadSpec::parse(builtin::HEAD_SPEC_TEXT, DEFAULT_HEAD_SCORER).map_err(
                |source| SpecError::Load {
                    spec: DEFAULT_HEAD_SCORER.into(),
                    source,
                },
            )?;
            ScorerIdentity::Head {
                name: DEFAULT_HEAD_SCORER.into(),
                weights_sha256: sha256_bytes(builtin::HEAD_WEIGHTS_BYTES),
                encoder: head.encoder,
                encoder_sha256: head.encoder_sha256,
            }
        }
        ScorerSpec::Fast => ScorerIdentity::Builtin {
            name: FAST_SCORER.into(),
            weights_sha256: sha256_bytes(builtin::FAST_WEIGHTS_BYTES),
        },
        ScorerSpec::Remote(r) => ScorerIdentity::Remote {
            remote: r.to_string(),
            endpoint: r.endpoint(),
        },
        ScorerSpec::Named(name) => {
            let path = opts.resolve_path(name)?;
            let mut files = BTreeMap::new();
            if path.is_dir() {
                let mut names = folder_files(&path)?;
                // An ensemble folder's member folders count too (`member/file`).
                if let Ok(text) = std::fs::read_to_string(path.join(detox_core::ENSEMBLE_SPEC)) {
                    if let Ok(spec) = serde_json::from_str::<detox_core::EnsembleSpec>(&text) {
                        for m in spec.members {
                            let inner = folder_files(&path.join(&m))?;
                            names.extend(inner.into_iter().map(|n| format!("{m}/{n}")));
                        }
                    }
                }
                names.sort();
                for n in names {
                    let h = sha256_file(&path.join(&n))?;
                    files.insert(n, h);
                }
            } else {
                files.insert(path.display().to_string(), sha256_file(&path)?);
            }
            ScorerIdentity::Files(FilesIdentity {
                name: name.clone(),
                path: path.display().to_string(),
                sha256: files,
            })
        }
    })
}

/// The files of a model folder that identify it: every plain file but hidden ones and the
/// hub's manifest (`detox-model.json`, written by the pull, not part of the model).
fn folder_files(dir: &std::path::Path) -> Result<Vec<String>, FileError> {
    Ok(std::fs::read_dir(dir)
        .map_err(|error| FileError {
            action: "cannot read",
            path: dir.to_path_buf(),
            error,
        })?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.') && n != detox_hub::cache::MANIFEST)
        .collect())
}
