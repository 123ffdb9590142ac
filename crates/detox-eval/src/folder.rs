//! The run folder: `run.json` (the settings), `generations.jsonl` (one line per prompt, in
//! prompt order, appended as prompts finish), `metrics.json` and `report.html`.
//!
//! A run killed at any moment (even `kill -9`) resumes from its complete lines: a line torn by
//! the kill (no newline yet) is dropped and the file rewritten atomically to the lines before
//! it, byte for byte, so the finished run is identical to an uninterrupted one. A folder that
//! holds a run with other settings is refused, naming the settings that changed.

use crate::error::EvalError;
use crate::records::PromptResult;
use detox_io::files::{write_atomic, FileError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `run.json`.
pub const RUN_FILE: &str = "run.json";
/// `generations.jsonl`.
pub const GENERATIONS_FILE: &str = "generations.jsonl";
/// `metrics.json`.
pub const METRICS_FILE: &str = "metrics.json";
/// `report.html`.
pub const REPORT_FILE: &str = "report.html";

/// What `run.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord<P> {
    /// The settings; a resumed run must have the same.
    pub protocol: P,
    /// When the run started (seconds since the Unix epoch).
    pub started_unix: u64,
}

/// An open run folder.
#[derive(Debug)]
pub struct RunFolder {
    dir: PathBuf,
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |error| FileError {
        action: "cannot read",
        path: path.to_path_buf(),
        error,
    }
}

impl RunFolder {
    /// Opens `dir` (creating it) for a run with `protocol` over `prompts` prompts, and returns
    /// the prompts already done there. A new folder gets `run.json`; an existing one must hold
    /// the same protocol.
    pub fn open<P: Serialize>(
        dir: &Path,
        protocol: &P,
        prompts: usize,
    ) -> Result<(Self, Vec<PromptResult>), EvalError> {
        std::fs::create_dir_all(dir).map_err(|error| FileError {
            action: "cannot create",
            path: dir.to_path_buf(),
            error,
        })?;
        let folder = Self {
            dir: dir.to_path_buf(),
        };
        let run_path = folder.path(RUN_FILE);
        let gens_path = folder.path(GENERATIONS_FILE);
        let protocol = serde_json::to_value(protocol)
            .map_err(|e| EvalError::Settings(format!("settings are not serialisable: {e}")))?;
        if !run_path.exists()
            && std::fs::metadata(&gens_path)
                .map(|m| m.len() > 0)
                .unwrap_or(false)
        {
            return Err(EvalError::NoRunRecord {
                dir: dir.to_path_buf(),
            });
        }
        if run_path.exists() {
            let text = std::fs::read_to_string(&run_path).map_err(read_err(&run_path))?;
            let old: Value = serde_json::from_str(&text).map_err(|e| EvalError::BadLine {
                path: run_path.clone(),
                line: e.line(),
                message: format!("not JSON: {e}"),
            })?;
            if old.get("protocol") != Some(&protocol) {
                // Keys on either side: a setting added or dropped is a change too.
                let empty = serde_json::Map::new();
                let new_map = protocol.as_object().unwrap_or(&empty);
                let old_map = old["protocol"].as_object().unwrap_or(&empty);
                let mut changed: Vec<String> = new_map
                    .keys()
                    .chain(old_map.keys().filter(|k| !new_map.contains_key(*k)))
                    .filter(|k| new_map.get(*k) != old_map.get(*k))
                    .cloned()
                    .collect();
                if changed.is_empty() {
                    changed.push("protocol".into());
                }
                return Err(EvalError::SettingsChanged {
                    dir: dir.to_path_buf(),
                    changed,
                });
            }
        } else {
            let started_unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let record = RunRecord {
                protocol,
                started_unix,
            };
            folder.write_json(RUN_FILE, &record)?;
        }
        let (previous, text) = read_complete(&gens_path)?;
        if previous.len() > prompts {
            return Err(EvalError::TooManyLines { path: gens_path });
        }
        // A line torn by a crash is dropped: the complete lines are written back byte for byte.
        // An intact file (a fresh run, or one stopped between lines) is left as it is.
        let on_disk = std::fs::metadata(&gens_path).map(|m| m.len()).unwrap_or(0);
        if on_disk != text.len() as u64 {
            write_atomic(&gens_path, text.as_bytes())?;
        }
        Ok((folder, previous))
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file of the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Opens `generations.jsonl` for appending lines.
    pub fn appender(&self) -> Result<Appender, EvalError> {
        let path = self.path(GENERATIONS_FILE);
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|error| FileError {
                action: "cannot write",
                path: path.clone(),
                error,
            })?;
        Ok(Appender { file, path })
    }

    /// The prompts done, as written.
    pub fn results(&self) -> Result<Vec<PromptResult>, EvalError> {
        Ok(read_complete(&self.path(GENERATIONS_FILE))?.0)
    }

    /// Replaces `generations.jsonl` with these results, atomically (a temporary file renamed).
    pub fn rewrite_results(&self, results: &[PromptResult]) -> Result<(), EvalError> {
        let mut text = String::new();
        for r in results {
            text.push_str(&r.to_line());
            text.push('\n');
        }
        Ok(write_atomic(&self.path(GENERATIONS_FILE), text.as_bytes())?)
    }

    /// Writes a file of the folder atomically as pretty JSON.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), EvalError> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| EvalError::Settings(format!("{name} is not serialisable: {e}")))?;
        Ok(write_atomic(&self.path(name), text.as_bytes())?)
    }

    /// Writes a text file of the folder atomically.
    pub fn write_text(&self, name: &str, text: &str) -> Result<(), EvalError> {
        Ok(write_atomic(&self.path(name), text.as_bytes())?)
    }
}

/// Appends whole lines to `generations.jsonl`, each flushed before the next prompt.
#[derive(Debug)]
pub struct Appender {
    file: std::fs::File,
    path: PathBuf,
}

impl Appender {
    /// Appends one prompt's line (one write, so a kill leaves at most one torn line).
    pub fn append(&mut self, result: &PromptResult) -> Result<(), EvalError> {
        let mut buf = result.to_line().into_bytes();
        buf.push(b'\n');
        self.file
            .write_all(&buf)
            .and_then(|_| self.file.flush())
            .map_err(|error| {
                EvalError::File(FileError {
                    action: "cannot write",
                    path: self.path.clone(),
                    error,
                })
            })
    }
}

/// Reads the complete lines of a generations file: the results and their exact text. A last
/// line without its newline was torn by a crash and is dropped; a complete line that does not
/// parse is an error naming it (the file was changed by hand).
pub fn read_complete(path: &Path) -> Result<(Vec<PromptResult>, String), EvalError> {
    if !path.exists() {
        return Ok((Vec::new(), String::new()));
    }
    let bytes = std::fs::read(path).map_err(read_err(path))?;
    let mut out = Vec::new();
    let mut end = 0usize;
    for (i, piece) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        if piece.last() != Some(&b'\n') {
            break;
        }
        let line_no = i + 1;
        let body = &piece[..piece.len() - 1];
        let parsed = std::str::from_utf8(body)
            .map_err(|e| e.to_string())
            .and_then(|s| serde_json::from_str::<PromptResult>(s).map_err(|e| e.to_string()));
        match parsed {
            Ok(r) => {
                out.push(r);
                end += piece.len();
            }
            Err(message) => {
                return Err(EvalError::BadLine {
                    path: path.to_path_buf(),
                    line: line_no,
                    message,
                })
            }
        }
    }
    // Every byte up to `end` is complete UTF-8 lines.
    let text = String::from_utf8_lossy(&bytes[..end]).into_owned();
    Ok((out, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LINE: &str =
        r#"{"prompt":{"text":"a"},"generations":[{"text":" b","toxicity":0.5,"perplexity":null}]}"#;

    #[test]
    fn a_torn_last_line_is_dropped_and_complete_ones_kept_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(GENERATIONS_FILE);
        std::fs::write(&p, format!("{LINE}\n{LINE}\n{{\"prompt\":{{\"te")).unwrap();
        let (rs, text) = read_complete(&p).unwrap();
        assert_eq!(rs.len(), 2);
        assert_eq!(text, format!("{LINE}\n{LINE}\n"));
    }

    #[test]
    fn a_broken_complete_line_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(GENERATIONS_FILE);
        std::fs::write(&p, format!("{LINE}\nnot json\n{LINE}\n")).unwrap();
        let e = read_complete(&p).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn settings_are_recorded_and_a_change_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let p1 = json!({"model": "a", "seed": 1});
        let (f, done) = RunFolder::open(&run, &p1, 3).unwrap();
        assert!(done.is_empty());
        f.appender()
            .unwrap()
            .append(&serde_json::from_str(LINE).unwrap())
            .unwrap();
        let (_, done) = RunFolder::open(&run, &p1, 3).unwrap();
        assert_eq!(done.len(), 1);
        let e = RunFolder::open(&run, &json!({"model": "a", "seed": 2}), 3).unwrap_err();
        assert!(
            matches!(&e, EvalError::SettingsChanged { changed, .. } if changed == &["seed"]),
            "{e}"
        );
        let e = RunFolder::open(&run, &json!({"model": "a"}), 3).unwrap_err();
        assert!(
            matches!(&e, EvalError::SettingsChanged { changed, .. } if changed == &["seed"]),
            "a dropped setting is named: {e}"
        );
        let e = RunFolder::open(&run, &json!({"model": "a", "seed": 1, "mitigate": []}), 3)
            .unwrap_err();
        assert!(
            matches!(&e, EvalError::SettingsChanged { changed, .. } if changed == &["mitigate"]),
            "an added setting is named: {e}"
        );
        let e = RunFolder::open(&run, &p1, 0).unwrap_err();
        assert!(matches!(e, EvalError::TooManyLines { .. }), "{e}");
    }

    #[test]
    fn generations_without_run_json_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(GENERATIONS_FILE), format!("{LINE}\n")).unwrap();
        let e = RunFolder::open(dir.path(), &json!({}), 3).unwrap_err();
        assert!(e.to_string().contains("no run.json"), "{e}");
    }
}
