//! Human ratings of generations (`detox rate`): an item set drawn from eval runs (stratified
//! by score band so that high-scored continuations are well represented) or read from a file,
//! a local rating page served to raters by per-rater link tokens, every submission kept in a
//! SQLite file, and the statistics Welbl et al.'s second finding needs: Krippendorff's alpha
//! between people, and per method how often people agree with the scorer.

#![warn(missing_docs)]

pub mod alpha;
pub mod db;
pub mod items;
pub mod server;
pub mod stats;

pub use db::{Answer, Db, Item};

/// Why a rating command failed.
#[derive(Debug, thiserror::Error)]
pub enum RateError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] db::DbError),
    /// The items or the options are wrong.
    #[error("{0}")]
    Input(String),
    /// Output could not be written.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Opens the database and stores the item set the first time; later the sources must be the
/// same ones (or not given). Returns the database and how many items were added.
pub fn open_with_items(
    path: &std::path::Path,
    draw: Option<(Vec<Item>, items::Sources)>,
) -> Result<(Db, usize), RateError> {
    let db = Db::open(path)?;
    let have = db.items()?.len();
    let Some((items, sources)) = draw else {
        return Ok((db, 0));
    };
    let text = serde_json::to_string(&sources).map_err(|e| RateError::Input(e.to_string()))?;
    if have > 0 {
        let stored: Option<items::Sources> = db
            .meta("sources")?
            .and_then(|s| serde_json::from_str(&s).ok());
        if stored.as_ref() != Some(&sources) {
            return Err(RateError::Input(format!(
                "{} already holds {have} items drawn from other sources ({}); serve it without --runs/--items, or use another --db",
                path.display(),
                stored.map(|s| s.paths.join(", ")).unwrap_or_else(|| "unknown".into())
            )));
        }
        return Ok((db, 0));
    }
    db.add_items(&items, &text)?;
    Ok((db, items.len()))
}

/// Writes every submission as CSV or JSONL (one row per submission, oldest first, with whether
/// it is the rater's current answer), items' method, text and score joined in.
pub fn export(db: &Db, jsonl: bool, out: &mut dyn std::io::Write) -> Result<usize, RateError> {
    let items: std::collections::HashMap<i64, Item> =
        db.items()?.into_iter().map(|i| (i.id, i)).collect();
    let history = db.history()?;
    let rows: Vec<serde_json::Value> = history
        .iter()
        .map(|s| {
            let it = items.get(&s.item);
            serde_json::json!({
                "submission_id": s.id,
                "rater": s.rater,
                "item": s.item,
                "kind": s.kind,
                "answer": s.answer.map(|a| a.name()),
                "value": s.answer.and_then(|a| a.value()),
                "undoes": s.undoes,
                "current": s.current,
                "at": s.at,
                "method": it.map(|i| i.method.as_str()),
                "source": it.map(|i| i.source.as_str()),
                "score": it.and_then(|i| i.score),
                "context": it.and_then(|i| i.context.as_deref()),
                "text": it.map(|i| i.text.as_str()),
            })
        })
        .collect();
    if jsonl {
        for r in &rows {
            writeln!(out, "{r}")?;
        }
    } else {
        let mut w = csv::Writer::from_writer(out);
        let cols = [
            "submission_id",
            "rater",
            "item",
            "kind",
            "answer",
            "value",
            "undoes",
            "current",
            "at",
            "method",
            "source",
            "score",
            "context",
            "text",
        ];
        w.write_record(cols)
            .map_err(|e| RateError::Input(e.to_string()))?;
        for r in &rows {
            let rec: Vec<String> = cols
                .iter()
                .map(|c| match &r[*c] {
                    serde_json::Value::Null => String::new(),
                    serde_json::Value::String(s) => s.clone(),
                    v => v.to_string(),
                })
                .collect();
            w.write_record(&rec)
                .map_err(|e| RateError::Input(e.to_string()))?;
        }
        w.flush()?;
    }
    Ok(rows.len())
}
