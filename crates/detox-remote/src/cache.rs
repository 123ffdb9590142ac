//! The answer cache: a SQLite file (WAL mode) keyed by the scorer, the attribute set and the
//! text's hash. Each answer is committed as soon as it arrives, so a killed run loses no
//! answer it paid for, and rescoring the same texts asks nothing. Several processes may share
//! one file (SQLite's locking, with a busy timeout).

use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The cache file under `$DETOX_HOME` when `--cache` is not given.
pub const DEFAULT_CACHE_FILE: &str = "remote-cache.sqlite";

/// Why the cache could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// SQLite failed on the file.
    #[error("response cache {path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file's folder could not be made.
    #[error("cannot create the folder of response cache {path}: {source}")]
    Folder {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// An open cache.
pub struct Cache {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("path", &self.path).finish()
    }
}

/// The key of one answer: sha256 of the scorer's identity, its attributes and the text, each
/// length-prefixed so no two different triples share a key.
pub fn key(scorer: &str, attributes: &[String], text: &str) -> String {
    let mut bytes = Vec::with_capacity(scorer.len() + text.len() + 64);
    let mut push = |s: &str| {
        bytes.extend_from_slice(&(s.len() as u64).to_le_bytes());
        bytes.extend_from_slice(s.as_bytes());
    };
    push(scorer);
    push(&attributes.join(","));
    push(text);
    detox_io::files::sha256_bytes(&bytes)
}

impl Cache {
    /// Opens (creating) the cache file and its parent folder.
    pub fn open(path: &Path) -> Result<Self, CacheError> {
        let err = |source| CacheError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| CacheError::Folder {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS answers (
                key TEXT PRIMARY KEY,
                scorer TEXT NOT NULL,
                attributes TEXT NOT NULL,
                scores TEXT NOT NULL,
                created INTEGER NOT NULL
            )",
        )
        .map_err(err)?;
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> CacheError {
        CacheError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The cached values of each key (`None`: not cached, or stored with another length).
    pub fn get_many(
        &self,
        keys: &[String],
        len: usize,
    ) -> Result<Vec<Option<Vec<f32>>>, CacheError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn
            .prepare_cached("SELECT scores FROM answers WHERE key = ?1")
            .map_err(|e| self.err(e))?;
        keys.iter()
            .map(|k| {
                let text: Option<String> = stmt
                    .query_row(params![k], |r| r.get(0))
                    .optional()
                    .map_err(|e| self.err(e))?;
                Ok(text
                    .and_then(|t| serde_json::from_str::<Vec<Option<f32>>>(&t).ok())
                    .filter(|v| v.len() == len)
                    .map(|v| v.into_iter().map(|x| x.unwrap_or(f32::NAN)).collect()))
            })
            .collect()
    }

    /// Stores answers, committed before returning.
    pub fn put_many(
        &self,
        scorer: &str,
        attributes: &[String],
        entries: &[(String, Vec<f32>)],
    ) -> Result<(), CacheError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let attrs = attributes.join(",");
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO answers (key, scorer, attributes, scores, created)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(|e| self.err(e))?;
            for (k, values) in entries {
                let scores: Vec<Option<f32>> =
                    values.iter().map(|v| v.is_finite().then_some(*v)).collect();
                let text = serde_json::to_string(&scores).unwrap_or_else(|_| "[]".into());
                stmt.execute(params![k, scorer, attrs, text, now])
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// How many answers the file holds.
    pub fn len(&self) -> Result<usize, CacheError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row("SELECT COUNT(*) FROM answers", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(|e| self.err(e))
    }

    /// Whether the file holds no answer.
    pub fn is_empty(&self) -> Result<bool, CacheError> {
        Ok(self.len()? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_survive_reopening_and_keys_separate_scorers_and_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cache.sqlite");
        let attrs = vec!["toxicity".to_string(), "insult".to_string()];
        let k = key("perspective:http://x", &attrs, "hello");
        assert_ne!(k, key("perspective:http://y", &attrs, "hello"));
        assert_ne!(k, key("perspective:http://x", &attrs[..1], "hello"));
        assert_ne!(k, key("perspective:http://x", &attrs, "hello "));
        {
            let c = Cache::open(&path).unwrap();
            c.put_many("p", &attrs, &[(k.clone(), vec![0.25, f32::NAN])])
                .unwrap();
        }
        let c = Cache::open(&path).unwrap();
        assert_eq!(c.len().unwrap(), 1);
        let got = c.get_many(&[k.clone(), "nope".into()], 2).unwrap();
        let v = got[0].as_ref().unwrap();
        assert_eq!(v[0], 0.25);
        assert!(v[1].is_nan());
        assert!(got[1].is_none());
        // Stored with two values: not an answer for a three-attribute request.
        assert!(c.get_many(&[k], 3).unwrap()[0].is_none());
    }
}
