//! The dialect part of `detox audit scorer` (Sap, Card, Gabriel, Choi and Smith, "The Risk of
//! Racial Bias in Hate Speech Detection", ACL 2019): Davidson et al.'s tweets, each given its
//! African-American English proportion by the TwitterAAE model ([`detox_dialect`]), scored by
//! the scorer; then [`detox_dialect::audit::audit`]: the correlation of score with the AAE
//! proportion, and the false-positive rates on tweets annotated as neither hateful nor
//! offensive, AAE-dominant against White-dominant, with their ratio.

use crate::run::score_texts;
use crate::AuditError;
use detox_core::Scorer;
use detox_dialect::audit::{audit, davidson_neither, AuditItem, AuditOptions, AuditReport};
use detox_dialect::DialectModel;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Davidson et al.'s labelled tweets, under a data folder.
pub const DAVIDSON: &str = "davidson-hate-offensive/labeled_data.csv";
/// The TwitterAAE model, under a data folder.
pub const TWITTERAAE: &str = "twitteraae-model";

/// The dialect section of a scorer audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DialectAudit {
    /// Where the tweets came from.
    pub source: String,
    /// The rule that makes a tweet AAE- or White-dominant.
    pub rule: String,
    /// The figures.
    pub figures: AuditReport,
}

/// One labelled tweet: its text and whether it is annotated "neither" (not offensive).
#[derive(Debug, Clone, PartialEq)]
pub struct Tweet {
    /// The tweet as written in the file.
    pub text: String,
    /// Davidson's class 2.
    pub neither: bool,
}

/// Reads `labeled_data.csv` (columns `class` and `tweet`; a row whose class is not 0, 1 or 2
/// is refused, naming its line).
pub fn read_davidson(path: &Path) -> Result<Vec<Tweet>, AuditError> {
    let mut r = csv::Reader::from_path(path).map_err(|e| AuditError::Data {
        path: path.to_path_buf(),
        line: 0,
        message: e.to_string(),
    })?;
    let headers = r
        .headers()
        .map_err(|e| AuditError::Data {
            path: path.to_path_buf(),
            line: 1,
            message: e.to_string(),
        })?
        .clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| AuditError::Data {
                path: path.to_path_buf(),
                line: 1,
                message: format!("no `{name}` column (Davidson et al.'s labeled_data.csv has `class` and `tweet`)"),
            })
    };
    let (class, tweet) = (col("class")?, col("tweet")?);
    let mut out = Vec::new();
    for row in r.records() {
        let row = row.map_err(|e| AuditError::Data {
            path: path.to_path_buf(),
            line: e.position().map_or(0, |p| p.line() as usize),
            message: e.to_string(),
        })?;
        let line = row.position().map_or(0, |p| p.line() as usize);
        let c = row.get(class).unwrap_or("");
        let neither = davidson_neither(c).ok_or_else(|| AuditError::Data {
            path: path.to_path_buf(),
            line,
            message: format!("field `class` is `{c}`, not 0, 1 or 2"),
        })?;
        out.push(Tweet {
            text: row.get(tweet).unwrap_or("").to_string(),
            neither,
        });
    }
    Ok(out)
}

/// Runs the dialect audit of `scorer` (attribute index `attr`) on the Davidson tweets under
/// `data`, with the TwitterAAE model under `data`. `progress` hears the scoring.
pub fn dialect_audit(
    scorer: &dyn Scorer,
    attr: usize,
    data: &Path,
    opts: &AuditOptions,
    chunk: usize,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<DialectAudit, AuditError> {
    let model =
        DialectModel::load(&data.join(TWITTERAAE)).map_err(|e| AuditError::Input(e.to_string()))?;
    let tweets = read_davidson(&data.join(DAVIDSON))?;
    let texts: Vec<&str> = tweets.iter().map(|t| t.text.as_str()).collect();
    let scores = score_texts(scorer, &texts, attr, chunk, progress, "davidson")?;
    let items: Vec<AuditItem> = tweets
        .iter()
        .zip(&scores)
        .map(|(t, &score)| AuditItem {
            proportions: model.infer(&t.text),
            score,
            neither: t.neither,
        })
        .collect();
    let figures = audit(&items, opts).map_err(|e| AuditError::Input(e.to_string()))?;
    Ok(DialectAudit {
        source: DAVIDSON.into(),
        rule: format!(
            "AAE-dominant: the African-American proportion is above the White one and at least {}; White-dominant: the reverse",
            opts.min_share
        ),
        figures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn davidson_rows_are_read_and_a_bad_class_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.csv");
        std::fs::write(
            &p,
            ",count,hate_speech,offensive_language,neither,class,tweet\n0,3,0,0,3,2,\"a tweet, with a comma\"\n1,3,0,3,0,1,rude\n",
        )
        .unwrap();
        let t = read_davidson(&p).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].text, "a tweet, with a comma");
        assert!(t[0].neither && !t[1].neither);
        std::fs::write(&p, "class,tweet\n2,ok\n7,bad\n").unwrap();
        let e = read_davidson(&p).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("`class` is `7`"), "{e}");
        std::fs::write(&p, "label,tweet\n2,ok\n").unwrap();
        let e = read_davidson(&p).unwrap_err().to_string();
        assert!(e.contains("no `class` column"), "{e}");
    }
}
