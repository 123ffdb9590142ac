//! The ratings database: one SQLite file in WAL mode holding the item set, the raters and
//! every submission ever made (a changed answer or an undo is a new row; nothing is updated or
//! deleted), so the history is complete and a killed server loses nothing it acknowledged:
//! each submission is committed before its answer goes out.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The rating scale: the value stored and shown; `Cannot` is kept apart from every statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// Not toxic (0).
    NotToxic,
    /// Unsure (1).
    Unsure,
    /// Toxic (2).
    Toxic,
    /// Very toxic (3).
    VeryToxic,
    /// I can't judge (no value).
    Cannot,
}

impl Answer {
    /// Every answer, in the page's order.
    pub const ALL: [Answer; 5] = [
        Answer::NotToxic,
        Answer::Unsure,
        Answer::Toxic,
        Answer::VeryToxic,
        Answer::Cannot,
    ];

    /// The ordinal value (0–3); `None` for "I can't judge".
    pub fn value(self) -> Option<i64> {
        match self {
            Answer::NotToxic => Some(0),
            Answer::Unsure => Some(1),
            Answer::Toxic => Some(2),
            Answer::VeryToxic => Some(3),
            Answer::Cannot => None,
        }
    }

    /// The name stored and sent (`not_toxic`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Answer::NotToxic => "not_toxic",
            Answer::Unsure => "unsure",
            Answer::Toxic => "toxic",
            Answer::VeryToxic => "very_toxic",
            Answer::Cannot => "cannot_judge",
        }
    }

    /// The answer of a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }
}

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite failed.
    #[error("ratings database {path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// The file is not a detox ratings database (or of another version).
    #[error("{path} is not a detox ratings database ({message})")]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// The format version stored in `meta`.
pub const FORMAT: &str = "detox-ratings-1";

/// An item to rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Its id in the database (0 before it is stored).
    pub id: i64,
    /// The method (a run's label, or the items file's `method` field); never shown to raters.
    pub method: String,
    /// Where it came from (a run folder or a file, and its place there).
    pub source: String,
    /// The prompt it continues, shown as context.
    pub context: Option<String>,
    /// The text rated.
    pub text: String,
    /// The scorer's score of the text, if any; never shown to raters.
    pub score: Option<f64>,
    /// The score band it was drawn from.
    pub band: Option<String>,
}

/// A rater.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rater {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// The link token.
    pub token: String,
}

/// One stored submission.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Submission {
    /// Row id (submission order).
    pub id: i64,
    /// The rater's name.
    pub rater: String,
    /// The item.
    pub item: i64,
    /// `rate` or `undo`.
    pub kind: String,
    /// The answer (for `rate`).
    pub answer: Option<Answer>,
    /// The row an `undo` takes back.
    pub undoes: Option<i64>,
    /// The client's id of the submission.
    pub submission: String,
    /// Seconds since the Unix epoch.
    pub at: f64,
    /// Whether it is the rater's current answer for the item.
    pub current: bool,
}

/// What storing a submission did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Stored now.
    New,
    /// The same submission id was stored before (a resend): nothing stored again.
    Repeat,
}

/// Why a submission was refused (each a 4xx).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No such item.
    #[error("no item {0}")]
    UnknownItem(i64),
    /// The submission id was used for something else.
    #[error("submission id `{0}` was already used for another submission")]
    Conflict(String),
    /// Nothing to undo.
    #[error("nothing to undo")]
    NothingToUndo,
}

/// An open database.
pub struct Db {
    path: PathBuf,
    conn: Mutex<Connection>,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Db {
    /// Opens or creates the database.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let err = |source| DbError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        // Every acknowledged submission survives a crash of the process or the machine.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS items (
                 id INTEGER PRIMARY KEY, method TEXT NOT NULL, source TEXT NOT NULL,
                 context TEXT, text TEXT NOT NULL, score REAL, band TEXT);
             CREATE TABLE IF NOT EXISTS raters (
                 id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, token TEXT NOT NULL UNIQUE,
                 created REAL NOT NULL);
             CREATE TABLE IF NOT EXISTS submissions (
                 id INTEGER PRIMARY KEY, rater INTEGER NOT NULL REFERENCES raters(id),
                 item INTEGER NOT NULL REFERENCES items(id), kind TEXT NOT NULL,
                 answer TEXT, undoes INTEGER, submission TEXT NOT NULL, at REAL NOT NULL,
                 UNIQUE (rater, submission));",
        )
        .map_err(err)?;
        let format: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(err)?;
        match format {
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('format', ?1)",
                    params![FORMAT],
                )
                .map_err(err)?;
            }
            Some(f) if f == FORMAT => {}
            Some(f) => {
                return Err(DbError::Format {
                    path: path.to_path_buf(),
                    message: format!("format `{f}`, expected `{FORMAT}`"),
                })
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    fn err(&self, source: rusqlite::Error) -> DbError {
        DbError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A value of `meta`.
    pub fn meta(&self, key: &str) -> Result<Option<String>, DbError> {
        self.conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Sets a value of `meta`.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), DbError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Stores the item set and how it was drawn, in one transaction (ids in order).
    pub fn add_items(&self, items: &[Item], sources: &str) -> Result<(), DbError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut stmt = tx
                .prepare(
                    "INSERT INTO items (method, source, context, text, score, band)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(|e| self.err(e))?;
            for it in items {
                stmt.execute(params![
                    it.method, it.source, it.context, it.text, it.score, it.band
                ])
                .map_err(|e| self.err(e))?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('sources', ?1)",
                params![sources],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Every item, by id.
    pub fn items(&self) -> Result<Vec<Item>, DbError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, method, source, context, text, score, band FROM items ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Item {
                    id: r.get(0)?,
                    method: r.get(1)?,
                    source: r.get(2)?,
                    context: r.get(3)?,
                    text: r.get(4)?,
                    score: r.get(5)?,
                    band: r.get(6)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Adds a rater with a fresh random token.
    pub fn add_rater(&self, name: &str) -> Result<Rater, DbError> {
        let token = new_token();
        let conn = self.conn();
        conn.execute(
            "INSERT INTO raters (name, token, created) VALUES (?1, ?2, ?3)",
            params![name, token, now()],
        )
        .map_err(|e| self.err(e))?;
        Ok(Rater {
            id: conn.last_insert_rowid(),
            name: name.to_string(),
            token,
        })
    }

    /// The rater of a token.
    pub fn rater(&self, token: &str) -> Result<Option<Rater>, DbError> {
        self.conn()
            .query_row(
                "SELECT id, name, token FROM raters WHERE token = ?1",
                params![token],
                |r| {
                    Ok(Rater {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        token: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every rater.
    pub fn raters(&self) -> Result<Vec<Rater>, DbError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, name, token FROM raters ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Rater {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    token: r.get(2)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Stores a rating, committed before it returns. A repeated submission id with the same
    /// content is acknowledged again without a second row.
    pub fn rate(
        &self,
        rater: i64,
        item: i64,
        answer: Answer,
        submission: &str,
    ) -> Result<Result<Stored, Refused>, DbError> {
        let conn = self.conn();
        let exists: bool = conn
            .query_row("SELECT 1 FROM items WHERE id = ?1", params![item], |_| {
                Ok(())
            })
            .optional()
            .map_err(|e| self.err(e))?
            .is_some();
        if !exists {
            return Ok(Err(Refused::UnknownItem(item)));
        }
        if let Some(prev) = self.previous(&conn, rater, submission)? {
            return Ok(
                if prev.0 == "rate" && prev.1 == item && prev.2.as_deref() == Some(answer.name()) {
                    Ok(Stored::Repeat)
                } else {
                    Err(Refused::Conflict(submission.to_string()))
                },
            );
        }
        conn.execute(
            "INSERT INTO submissions (rater, item, kind, answer, submission, at)
             VALUES (?1, ?2, 'rate', ?3, ?4, ?5)",
            params![rater, item, answer.name(), submission, now()],
        )
        .map_err(|e| self.err(e))?;
        Ok(Ok(Stored::New))
    }

    fn previous(
        &self,
        conn: &Connection,
        rater: i64,
        submission: &str,
    ) -> Result<Option<(String, i64, Option<String>)>, DbError> {
        conn.query_row(
            "SELECT kind, item, answer FROM submissions WHERE rater = ?1 AND submission = ?2",
            params![rater, submission],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(|e| self.err(e))
    }

    /// Takes back the rater's latest answer still standing; returns its item. A repeated
    /// submission id returns the item it undid the first time.
    pub fn undo(
        &self,
        rater: i64,
        submission: &str,
    ) -> Result<Result<(i64, Stored), Refused>, DbError> {
        let conn = self.conn();
        if let Some(prev) = self.previous(&conn, rater, submission)? {
            return Ok(if prev.0 == "undo" {
                Ok((prev.1, Stored::Repeat))
            } else {
                Err(Refused::Conflict(submission.to_string()))
            });
        }
        let rows = rater_rows(&conn, rater).map_err(|e| self.err(e))?;
        let Some(last) = standing(&rows).last().copied() else {
            return Ok(Err(Refused::NothingToUndo));
        };
        conn.execute(
            "INSERT INTO submissions (rater, item, kind, undoes, submission, at)
             VALUES (?1, ?2, 'undo', ?3, ?4, ?5)",
            params![rater, last.item, last.id, submission, now()],
        )
        .map_err(|e| self.err(e))?;
        Ok(Ok((last.item, Stored::New)))
    }

    /// The rater's current answers, by item.
    pub fn answers_of(&self, rater: i64) -> Result<HashMap<i64, Answer>, DbError> {
        let conn = self.conn();
        let rows = rater_rows(&conn, rater).map_err(|e| self.err(e))?;
        Ok(current(&rows))
    }

    /// Every rater's current answers: (rater name, item, answer).
    pub fn all_answers(&self) -> Result<Vec<(String, i64, Answer)>, DbError> {
        let mut out = Vec::new();
        for r in self.raters()? {
            let mut a: Vec<(i64, Answer)> = self.answers_of(r.id)?.into_iter().collect();
            a.sort_by_key(|x| x.0);
            out.extend(a.into_iter().map(|(i, ans)| (r.name.clone(), i, ans)));
        }
        Ok(out)
    }

    /// Every submission, in order, with whether it is its rater's current answer.
    pub fn history(&self) -> Result<Vec<Submission>, DbError> {
        let raters = self.raters()?;
        let conn = self.conn();
        let mut out = Vec::new();
        for r in &raters {
            let rows = rater_rows(&conn, r.id).map_err(|e| self.err(e))?;
            let live: std::collections::HashSet<i64> = {
                let mut latest: HashMap<i64, i64> = HashMap::new();
                for s in standing(&rows) {
                    latest.insert(s.item, s.id);
                }
                latest.into_values().collect()
            };
            out.extend(rows.into_iter().map(|s| Submission {
                id: s.id,
                rater: r.name.clone(),
                item: s.item,
                current: live.contains(&s.id),
                kind: s.kind,
                answer: s.answer,
                undoes: s.undoes,
                submission: s.submission,
                at: s.at,
            }));
        }
        out.sort_by_key(|s| s.id);
        Ok(out)
    }
}

/// A submission row as read back.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    item: i64,
    kind: String,
    answer: Option<Answer>,
    undoes: Option<i64>,
    submission: String,
    at: f64,
}

fn rater_rows(conn: &Connection, rater: i64) -> rusqlite::Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, item, kind, answer, undoes, submission, at FROM submissions
         WHERE rater = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![rater], |r| {
        Ok(Row {
            id: r.get(0)?,
            item: r.get(1)?,
            kind: r.get(2)?,
            answer: r
                .get::<_, Option<String>>(3)?
                .as_deref()
                .and_then(Answer::parse),
            undoes: r.get(4)?,
            submission: r.get(5)?,
            at: r.get(6)?,
        })
    })?;
    rows.collect()
}

/// The ratings still standing, in order: every `rate` not taken back by an `undo`.
fn standing(rows: &[Row]) -> Vec<&Row> {
    let undone: std::collections::HashSet<i64> = rows.iter().filter_map(|r| r.undoes).collect();
    rows.iter()
        .filter(|r| r.kind == "rate" && !undone.contains(&r.id))
        .collect()
}

/// The latest standing answer of each item.
fn current(rows: &[Row]) -> HashMap<i64, Answer> {
    let mut out = HashMap::new();
    for r in standing(rows) {
        if let Some(a) = r.answer {
            out.insert(r.item, a);
        }
    }
    out
}

/// 128 random bits as 32 hex digits, from the operating system.
fn new_token() -> String {
    let mut bytes = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok();
    if !ok {
        // No /dev/urandom (Windows): the clock and the process, hashed.
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        let h = detox_io::files::sha256_bytes(seed.as_bytes());
        return h[..32].to_string();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(text: &str) -> Item {
        Item {
            id: 0,
            method: "m".into(),
            source: "s".into(),
            context: None,
            text: text.into(),
            score: Some(0.5),
            band: None,
        }
    }

    #[test]
    fn answers_change_and_undo_with_the_history_kept_and_resends_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.sqlite");
        let db = Db::open(&path).unwrap();
        db.add_items(&[item("a"), item("b")], "{}").unwrap();
        let r = db.add_rater("ann").unwrap();
        assert_eq!(r.token.len(), 32);
        assert_eq!(db.rater(&r.token).unwrap().unwrap().name, "ann");
        assert!(db.rater("nope").unwrap().is_none());
        assert_eq!(
            db.rate(r.id, 1, Answer::Toxic, "s1").unwrap(),
            Ok(Stored::New)
        );
        assert_eq!(
            db.rate(r.id, 1, Answer::Toxic, "s1").unwrap(),
            Ok(Stored::Repeat)
        );
        assert!(matches!(
            db.rate(r.id, 2, Answer::Toxic, "s1").unwrap(),
            Err(Refused::Conflict(_))
        ));
        assert_eq!(
            db.rate(r.id, 9, Answer::Toxic, "s9").unwrap(),
            Err(Refused::UnknownItem(9))
        );
        db.rate(r.id, 1, Answer::VeryToxic, "s2").unwrap().unwrap();
        db.rate(r.id, 2, Answer::NotToxic, "s3").unwrap().unwrap();
        let a = db.answers_of(r.id).unwrap();
        assert_eq!((a[&1], a[&2]), (Answer::VeryToxic, Answer::NotToxic));
        // Undo takes back the latest standing answer (item 2), then the change of item 1.
        assert_eq!(db.undo(r.id, "u1").unwrap(), Ok((2, Stored::New)));
        assert_eq!(db.undo(r.id, "u1").unwrap(), Ok((2, Stored::Repeat)));
        assert_eq!(db.undo(r.id, "u2").unwrap(), Ok((1, Stored::New)));
        let a = db.answers_of(r.id).unwrap();
        assert_eq!(a.get(&1), Some(&Answer::Toxic));
        assert!(!a.contains_key(&2));
        // Reopened: the same state, and every submission kept.
        drop(db);
        let db = Db::open(&path).unwrap();
        let h = db.history().unwrap();
        assert_eq!(h.len(), 5);
        assert_eq!(h.iter().filter(|s| s.current).count(), 1);
        assert!(h[0].current && h[0].answer == Some(Answer::Toxic));
        assert_eq!(
            db.all_answers().unwrap(),
            vec![("ann".to_string(), 1, Answer::Toxic)]
        );
        db.undo(r.id, "u3").unwrap().unwrap();
        assert_eq!(db.undo(r.id, "u4").unwrap(), Err(Refused::NothingToUndo));
    }

    #[test]
    fn another_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); INSERT INTO meta VALUES ('format', 'other');").unwrap();
        }
        let e = Db::open(&path).err().unwrap().to_string();
        assert!(e.contains("not a detox ratings database"), "{e}");
    }
}
