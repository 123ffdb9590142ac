//! Whole-file jobs every stage needs: content hashes for provenance (`run.json`, model
//! manifests) and atomic writes (a temporary sibling renamed into place, so a reader or a
//! rerun after `kill -9` sees the old file or the new one, never half of one).
//!
//! These are the workspace's only copies: the hub, the trainer, the eval run and the binary
//! all call them.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let p = dir.path().join("metrics.json");
//! detox_io::files::write_atomic(&p, b"{}").unwrap();
//! assert_eq!(std::fs::read(&p).unwrap(), b"{}");
//! assert_eq!(detox_io::files::sha256_file(&p).unwrap(), detox_io::files::sha256_bytes(b"{}"));
//! ```

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// A file operation that failed, with the path it failed on.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {error}", path.display())]
pub struct FileError {
    /// What was being done (`cannot read`, `cannot write`, ...).
    pub action: &'static str,
    /// The file.
    pub path: PathBuf,
    /// The cause (part of the message, so not also a `source`).
    pub error: std::io::Error,
}

impl FileError {
    fn new<'a>(
        action: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> FileError + 'a {
        move |error| FileError {
            action,
            path: path.to_path_buf(),
            error,
        }
    }
}

/// sha256 of some bytes, lower-case hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// sha256 of a file's contents, lower-case hex, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> Result<String, FileError> {
    let mut f = std::fs::File::open(path).map_err(FileError::new("cannot read", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(FileError::new("cannot read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The temporary sibling an atomic write of `path` goes through: hidden, and named for this
/// process so two processes never share one.
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `bytes` to `path` atomically: a temporary sibling, flushed to disk, renamed over
/// `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let mut w = AtomicFile::create(path)?;
    w.write_all(bytes)
        .map_err(FileError::new("cannot write", &w.tmp))?;
    w.commit()
}

/// A file written in pieces that appears at its path only when [`AtomicFile::commit`] is
/// called; dropped uncommitted, it leaves nothing behind.
#[derive(Debug)]
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl AtomicFile {
    /// Starts writing `path` (through a temporary sibling).
    pub fn create(path: &Path) -> Result<Self, FileError> {
        let tmp = temp_sibling(path);
        let file = std::fs::File::create(&tmp).map_err(FileError::new("cannot write", &tmp))?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            file: Some(std::io::BufWriter::new(file)),
        })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes, syncs and renames the file into place.
    pub fn commit(mut self) -> Result<(), FileError> {
        if let Some(w) = self.file.take() {
            let f = w
                .into_inner()
                .map_err(|e| FileError::new("cannot write", &self.tmp)(e.into_error()))?;
            f.sync_all()
                .map_err(FileError::new("cannot write", &self.tmp))?;
        }
        std::fs::rename(&self.tmp, &self.path).map_err(FileError::new("cannot write", &self.path))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.file.as_mut() {
            Some(f) => f.write(buf),
            None => Err(std::io::Error::other("file already committed")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_file_appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.jsonl");
        std::fs::write(&p, "old\n").unwrap();
        let mut w = AtomicFile::create(&p).unwrap();
        w.write_all(b"new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old\n");
        w.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new\n");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
    }

    #[test]
    fn dropped_atomic_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.jsonl");
        {
            let mut w = AtomicFile::create(&p).unwrap();
            w.write_all(b"partial").unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn hashes_agree_and_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_bytes(b"abc"), sha256_file(&p).unwrap());
        let e = sha256_file(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
