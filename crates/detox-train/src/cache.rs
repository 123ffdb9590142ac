//! An append-only embedding cache: training re-runs (and runs resumed after Ctrl-C or a crash)
//! skip every text already embedded with the same encoder and token limit.
//!
//! Layout: one file per (encoder, token limit) of fixed-size records `[sha256(text): 32 bytes]
//! [dim x f32 little-endian]`, flushed after every chunk. A torn record at the end (a crash in
//! the middle of a write) is ignored and overwritten.

use crate::TrainError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The cache of one encoder configuration.
pub struct EmbeddingCache {
    path: PathBuf,
    dim: usize,
    map: HashMap<[u8; 32], Vec<f32>>,
    file: File,
}

/// The cache key of a text.
pub fn text_key(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl EmbeddingCache {
    /// Opens (or creates) the cache file `dir/emb-{tag}.bin` for vectors of `dim` floats.
    pub fn open(dir: &Path, tag: &str, dim: usize) -> Result<Self, TrainError> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::Io(dir.display().to_string(), e))?;
        let path = dir.join(format!("emb-{tag}.bin"));
        let io = |e| TrainError::Io(path.display().to_string(), e);
        let mut file = OpenOptions::new()
            .read(true)
            .append(false)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let rec = 32 + 4 * dim;
        let whole = bytes.len() / rec * rec;
        let mut map = HashMap::new();
        for r in bytes[..whole].chunks_exact(rec) {
            let mut key = [0u8; 32];
            key.copy_from_slice(&r[..32]);
            let v = r[32..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            map.insert(key, v);
        }
        // Drop a torn tail so appends stay aligned.
        file.set_len(whole as u64).map_err(io)?;
        file.seek(SeekFrom::End(0)).map_err(io)?;
        Ok(Self {
            path,
            dim,
            map,
            file,
        })
    }

    /// How many vectors are cached.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The vector of a text, if cached.
    pub fn get(&self, text: &str) -> Option<&Vec<f32>> {
        self.map.get(&text_key(text))
    }

    /// Adds vectors and flushes them to disk.
    pub fn insert_all(&mut self, items: Vec<(String, Vec<f32>)>) -> Result<(), TrainError> {
        let mut buf = Vec::with_capacity(items.len() * (32 + 4 * self.dim));
        for (text, v) in items {
            if v.len() != self.dim {
                return Err(TrainError::Data(format!(
                    "embedding of {} floats, cache holds {}",
                    v.len(),
                    self.dim
                )));
            }
            let key = text_key(&text);
            if self.map.contains_key(&key) {
                continue;
            }
            buf.extend_from_slice(&key);
            for x in &v {
                buf.extend_from_slice(&x.to_le_bytes());
            }
            self.map.insert(key, v);
        }
        let io = |e| TrainError::Io(self.path.display().to_string(), e);
        self.file.write_all(&buf).map_err(io)?;
        self.file.flush().map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut c = EmbeddingCache::open(dir.path(), "t", 3).unwrap();
            c.insert_all(vec![
                ("a".into(), vec![1.0, 2.0, 3.0]),
                ("b".into(), vec![4.0, 5.0, 6.0]),
            ])
            .unwrap();
        }
        // Simulate a crash in the middle of a record.
        let p = dir.path().join("emb-t.bin");
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[7u8; 20]).unwrap();
        drop(f);
        let mut c = EmbeddingCache::open(dir.path(), "t", 3).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("b").unwrap(), &vec![4.0, 5.0, 6.0]);
        c.insert_all(vec![("c".into(), vec![0.5, 0.5, 0.5])])
            .unwrap();
        let c = EmbeddingCache::open(dir.path(), "t", 3).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("c").unwrap(), &vec![0.5, 0.5, 0.5]);
        assert!(c.get("zzz").is_none());
    }
}
