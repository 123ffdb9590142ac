//! Labelled texts: a generic reader (JSONL/CSV with label columns) and the `shared` recipe that
//! maps the public datasets in `../shared/data` onto Perspective's attributes.

use crate::TrainError;
use detox_io::{lookup, Format, InputReader};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Perspective's attributes, in the order the built-in scorer outputs them.
pub const PERSPECTIVE_ATTRIBUTES: [&str; 8] = [
    "toxicity",
    "severe_toxicity",
    "identity_attack",
    "insult",
    "profanity",
    "threat",
    "sexually_explicit",
    "flirtation",
];

/// Auxiliary targets of the `shared` recipe: each non-Perspective dataset keeps its own
/// definition in its own output, so the shared hidden layer learns from every dataset while
/// Perspective's attributes are fitted to Perspective's own scores. They are not exported.
pub const AUX_ATTRIBUTES: [&str; 5] = [
    "aux_davidson_offensive",
    "aux_davidson_hate",
    "aux_hatexplain_toxic",
    "aux_hatexplain_hate",
    "aux_toxigen_hate",
];

/// All targets of the `shared` recipe: Perspective's attributes, then the auxiliary ones.
pub fn shared_attributes() -> Vec<String> {
    PERSPECTIVE_ATTRIBUTES
        .iter()
        .chain(AUX_ATTRIBUTES.iter())
        .map(|s| s.to_string())
        .collect()
}

/// The position of a `shared` recipe target.
pub fn shared_index(name: &str) -> Option<usize> {
    shared_attributes().iter().position(|a| a == name)
}

/// One training example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The text.
    pub text: String,
    /// One target per attribute in [0, 1]; `None` where the source says nothing.
    pub targets: Vec<Option<f32>>,
    /// The dataset it came from (`rtp`, `davidson`, ...).
    pub source: String,
    /// A stable key for the train/dev split (examples sharing a key share a split).
    pub key: String,
    /// Whether the targets are Perspective scores (used for calibration).
    pub perspective: bool,
}

/// Which split an example belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Used for fitting.
    Train,
    /// Held out for metrics (one in ten keys, by hash).
    Dev,
}

/// The deterministic split of a (source, key): sha256 of both, one in ten is dev.
pub fn split_of(source: &str, key: &str) -> Split {
    let h = Sha256::digest(format!("{source}\u{0}{key}").as_bytes());
    if h[0] % 10 == 0 {
        Split::Dev
    } else {
        Split::Train
    }
}

impl Example {
    /// This example's split.
    pub fn split(&self) -> Split {
        split_of(&self.source, &self.key)
    }
}

fn target(v: &Value) -> Option<f32> {
    match v {
        Value::Number(n) => n.as_f64().map(|x| x as f32),
        Value::Bool(b) => Some(f32::from(u8::from(*b))),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" => Some(1.0),
            "false" | "no" => Some(0.0),
            t => t.parse::<f32>().ok(),
        },
        _ => None,
    }
}

/// Reads a labelled JSONL/CSV/TSV file: `text_field` holds the text, each of `labels` names a
/// column (dotted paths allowed in JSONL) holding a target in [0, 1] (numbers, booleans or
/// their strings). Lines with a bad text are errors; missing or unparsable labels are `None`.
pub fn read_labelled(
    path: &Path,
    text_field: &str,
    labels: &[String],
    source: &str,
) -> Result<Vec<Example>, TrainError> {
    let f = std::fs::File::open(path).map_err(|e| TrainError::Io(path.display().to_string(), e))?;
    let format = Format::detect(Some(path), b"{");
    let name = path.display().to_string();
    let reader = InputReader::new(f, format, text_field, &name)
        .map_err(|e| TrainError::Data(e.to_string()))?;
    let mut out = Vec::new();
    for row in reader {
        let row = row.map_err(|e| TrainError::Data(e.to_string()))?;
        let item = row.map_err(|e| TrainError::Data(format!("{name}: {}", e.message)))?;
        let mut targets = Vec::with_capacity(labels.len());
        for l in labels {
            let t = lookup(&item.record, l).and_then(target);
            if let Some(t) = t {
                if !(0.0..=1.0).contains(&t) {
                    return Err(TrainError::Data(format!(
                        "{name}: line {}: label `{l}` is {t}, outside [0, 1]",
                        item.line
                    )));
                }
            }
            targets.push(t);
        }
        out.push(Example {
            key: format!("{}", item.line),
            text: item.text,
            targets,
            source: source.to_string(),
            perspective: false,
        });
    }
    Ok(out)
}

pub(crate) fn targets_for(pairs: &[(&str, f32)]) -> Vec<Option<f32>> {
    shared_attributes()
        .iter()
        .map(|a| pairs.iter().find(|(k, _)| k == a).map(|(_, v)| *v))
        .collect()
}

fn open(data: &Path, rel: &str) -> Result<std::fs::File, TrainError> {
    let p = data.join(rel);
    std::fs::File::open(&p).map_err(|e| TrainError::Io(p.display().to_string(), e))
}

/// The RealToxicityPrompts files of `rtp-subset`, the RTP rows training uses.
pub const RTP_FILES: [&str; 2] = ["rtp-subset/toxic.jsonl", "rtp-subset/nontoxic.jsonl"];

/// RealToxicityPrompts rows: prompt and continuation texts with their 8 Perspective scores.
pub fn read_rtp(data: &Path) -> Result<Vec<Example>, TrainError> {
    read_rtp_files(data, &RTP_FILES, "rtp")
}

/// RealToxicityPrompts rows of `files` (relative to `data`, RTP's original schema) as examples
/// of `source`: prompt and continuation texts with their 8 Perspective scores, keyed by the
/// row's `filename` so a prompt and its continuation share a split.
pub fn read_rtp_files(
    data: &Path,
    files: &[&str],
    source: &str,
) -> Result<Vec<Example>, TrainError> {
    use std::io::BufRead;
    let mut out = Vec::new();
    for &file in files {
        let r = std::io::BufReader::new(open(data, file)?);
        for (i, line) in r.lines().enumerate() {
            let line = line.map_err(|e| TrainError::Io(file.into(), e))?;
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(&line)
                .map_err(|e| TrainError::Data(format!("{file}: line {}: {e}", i + 1)))?;
            let key = v
                .get("filename")
                .and_then(|f| f.as_str())
                .map(String::from)
                .unwrap_or_else(|| format!("{file}:{i}"));
            for part in ["prompt", "continuation"] {
                let Some(obj) = v.get(part) else { continue };
                let Some(text) = obj.get("text").and_then(|t| t.as_str()) else {
                    continue;
                };
                let targets = shared_attributes()
                    .iter()
                    .map(|a| {
                        obj.get(a.as_str())
                            .and_then(|x| x.as_f64())
                            .map(|x| x as f32)
                    })
                    .collect();
                out.push(Example {
                    text: text.to_string(),
                    targets,
                    source: source.into(),
                    key: key.clone(),
                    perspective: true,
                });
            }
        }
    }
    Ok(out)
}

fn csv_rows(data: &Path, rel: &str) -> Result<(Vec<String>, Vec<csv::StringRecord>), TrainError> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(open(data, rel)?);
    let headers: Vec<String> = r
        .headers()
        .map_err(|e| TrainError::Data(format!("{rel}: {e}")))?
        .iter()
        .map(String::from)
        .collect();
    let rows = r
        .records()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrainError::Data(format!("{rel}: {e}")))?;
    Ok((headers, rows))
}

fn col(headers: &[String], name: &str, rel: &str) -> Result<usize, TrainError> {
    headers
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| TrainError::Data(format!("{rel}: no column `{name}`")))
}

/// Davidson et al.: annotator counts of hate / offensive / neither per tweet.
/// toxicity = share of annotators who saw hate or offence; identity_attack = share who saw hate.
pub fn read_davidson(data: &Path) -> Result<Vec<Example>, TrainError> {
    let rel = "davidson-hate-offensive/labeled_data.csv";
    let (h, rows) = csv_rows(data, rel)?;
    let (c_count, c_hate, c_off, c_text) = (
        col(&h, "count", rel)?,
        col(&h, "hate_speech", rel)?,
        col(&h, "offensive_language", rel)?,
        col(&h, "tweet", rel)?,
    );
    let mut out = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let num = |c: usize| r.get(c).and_then(|v| v.parse::<f32>().ok());
        let (Some(n), Some(hate), Some(off), Some(text)) =
            (num(c_count), num(c_hate), num(c_off), r.get(c_text))
        else {
            continue;
        };
        if n <= 0.0 {
            continue;
        }
        out.push(Example {
            text: text.to_string(),
            targets: targets_for(&[
                ("aux_davidson_offensive", (hate + off) / n),
                ("aux_davidson_hate", hate / n),
                ("toxicity", (hate + off) / n),
                ("identity_attack", hate / n),
            ]),
            source: "davidson".into(),
            key: r.get(0).map(String::from).unwrap_or_else(|| i.to_string()),
            perspective: false,
        });
    }
    Ok(out)
}

/// HateXplain majority labels: 0 normal, 1 hate, 2 offensive (3, no majority, is skipped).
pub fn read_hatexplain(data: &Path) -> Result<Vec<Example>, TrainError> {
    let rel = "hatexplain/train_val.csv";
    let (h, rows) = csv_rows(data, rel)?;
    let (c_text, c_cat) = (col(&h, "text", rel)?, col(&h, "category", rel)?);
    let mut out = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let (Some(text), Some(cat)) = (r.get(c_text), r.get(c_cat)) else {
            continue;
        };
        let (tox, ia) = match cat.trim() {
            "0" => (0.0, 0.0),
            "1" => (1.0, 1.0),
            "2" => (1.0, 0.0),
            _ => continue,
        };
        out.push(Example {
            text: text.trim().to_string(),
            targets: targets_for(&[
                ("aux_hatexplain_toxic", tox),
                ("aux_hatexplain_hate", ia),
                ("toxicity", tox),
                ("identity_attack", ia),
            ]),
            source: "hatexplain".into(),
            key: r.get(0).map(String::from).unwrap_or_else(|| i.to_string()),
            perspective: false,
        });
    }
    Ok(out)
}

/// ToxiGen prompt sentences: `hate_*` files are toxic identity attacks, `neutral_*` files are
/// benign statements about the same groups (deduplicated within each file).
pub fn read_toxigen(data: &Path) -> Result<Vec<Example>, TrainError> {
    let dir = data.join("toxigen-prompts/prompts");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| TrainError::Io(dir.display().to_string(), e))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
        .filter(|n| n.ends_with(".txt"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for name in names {
        let hate = name.starts_with("hate_");
        let text = std::fs::read_to_string(dir.join(&name))
            .map_err(|e| TrainError::Io(name.clone(), e))?;
        for line in text.lines() {
            for item in line.split("\\n") {
                let s = item.trim().trim_start_matches('-').trim();
                if s.is_empty() || !seen.insert((hate, s.to_string())) {
                    continue;
                }
                let v = if hate { 1.0 } else { 0.0 };
                out.push(Example {
                    text: s.to_string(),
                    targets: targets_for(&[
                        ("aux_toxigen_hate", v),
                        ("toxicity", v),
                        ("identity_attack", v),
                    ]),
                    source: "toxigen".into(),
                    key: s.to_string(),
                    perspective: false,
                });
            }
        }
    }
    Ok(out)
}

/// The 101 labelled Jigsaw 2018 comments (Detoxify's `original` labels).
pub fn read_jigsaw_sample(data: &Path) -> Result<Vec<Example>, TrainError> {
    let rel = "jigsaw-toxic-comment-test-sample/test_examples.csv";
    let (h, rows) = csv_rows(data, rel)?;
    let c_text = col(&h, "comment_text", rel)?;
    let map = [
        ("toxic", "toxicity"),
        ("severe_toxic", "severe_toxicity"),
        ("obscene", "profanity"),
        ("threat", "threat"),
        ("insult", "insult"),
        ("identity_hate", "identity_attack"),
    ];
    let cols: Vec<(usize, &str)> = map
        .iter()
        .map(|(c, a)| col(&h, c, rel).map(|i| (i, *a)))
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let Some(text) = r.get(c_text) else { continue };
        let pairs: Vec<(&str, f32)> = cols
            .iter()
            .filter_map(|(c, a)| {
                r.get(*c)
                    .and_then(|v| v.parse::<f32>().ok())
                    .map(|v| (*a, v))
            })
            .collect();
        out.push(Example {
            text: text.to_string(),
            targets: targets_for(&pairs),
            source: "jigsaw-sample".into(),
            key: i.to_string(),
            perspective: false,
        });
    }
    Ok(out)
}

/// Every dataset the shared README allows a committed model to be trained on, plus this
/// project's own identity counter-examples ([`crate::identity`]).
pub fn read_shared(data: &Path) -> Result<Vec<Example>, TrainError> {
    let mut all = read_rtp(data)?;
    all.extend(read_davidson(data)?);
    all.extend(read_hatexplain(data)?);
    all.extend(read_toxigen(data)?);
    all.extend(read_jigsaw_sample(data)?);
    all.extend(crate::identity::identity_examples());
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stable_and_about_a_tenth() {
        assert_eq!(split_of("rtp", "a"), split_of("rtp", "a"));
        let dev = (0..10_000)
            .filter(|i| split_of("x", &i.to_string()) == Split::Dev)
            .count();
        assert!((800..1200).contains(&dev), "{dev}");
    }

    #[test]
    fn generic_reader_takes_numbers_bools_and_strings() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        std::fs::write(
            &p,
            "{\"text\":\"a\",\"tox\":0.25,\"ins\":true}\n{\"text\":\"b\",\"tox\":\"1\"}\n",
        )
        .unwrap();
        let ex = read_labelled(&p, "text", &["tox".into(), "ins".into()], "mine").unwrap();
        assert_eq!(ex[0].targets, vec![Some(0.25), Some(1.0)]);
        assert_eq!(ex[1].targets, vec![Some(1.0), None]);
        std::fs::write(&p, "{\"text\":\"a\",\"tox\":3}\n").unwrap();
        let err = read_labelled(&p, "text", &["tox".into()], "mine").unwrap_err();
        assert!(err.to_string().contains("outside [0, 1]"), "{err}");
    }
}
