//! The audit's inputs: Dixon et al.'s identity templates, HolisticBias sentences built from
//! its descriptors, nouns and templates, and a user's labelled file.

use crate::AuditError;
use detox_core::rng::SplitMix64;
use detox_io::{lookup, Format, InputReader};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Dixon et al.'s templates, relative to the data folder.
pub const TEMPLATES: &str = "jigsaw-sentence-templates/en_sentence_templates.csv";
/// The 50 identity terms of the templates' generator, relative to the data folder.
pub const AUDIT_TERMS: &str = "jigsaw-sentence-templates/bias_madlibs_data/adjectives_people.txt";
/// The HolisticBias v1.1 folder, relative to the data folder.
pub const HOLISTIC_BIAS: &str = "holistic-bias/v1.1";

/// A text with a binary label and the group it names (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledText {
    /// The text to score.
    pub text: String,
    /// Labelled toxic.
    pub label: bool,
    /// The group (identity term, or the user's group field); `None`: background only.
    pub group: Option<String>,
}

fn read(path: &Path) -> Result<String, AuditError> {
    std::fs::read_to_string(path).map_err(|source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The identity terms of the templates' generator (`bias_madlibs_data/adjectives_people.txt`
/// under `data`), lower case, longest first, so that [`term_of`] finds "african american"
/// before "american".
pub fn identity_terms(data: &Path) -> Result<Vec<String>, AuditError> {
    let text = read(&data.join(AUDIT_TERMS))?;
    let mut terms: Vec<String> = text
        .lines()
        .map(|l| l.trim().to_lowercase())
        .filter(|l| !l.is_empty())
        .collect();
    terms.sort_by_key(|t| std::cmp::Reverse(t.len()));
    terms.dedup();
    Ok(terms)
}

/// The first of `terms` (give them longest first) that `phrase` contains as whole words
/// (case-insensitive; hyphens stay inside words).
pub fn term_of(phrase: &str, terms: &[String]) -> Option<String> {
    let words: Vec<String> = phrase
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric() && c != '-')
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect();
    let joined = format!(" {} ", words.join(" "));
    terms
        .iter()
        .find(|t| joined.contains(&format!(" {t} ")))
        .cloned()
}

/// Dixon et al.'s templates (`en_sentence_templates.csv`: `template,toxicity,phrase`), each
/// phrase labelled toxic when `toxicity` is `toxic` and grouped by the identity term it names.
/// A row whose `toxicity` is neither `toxic` nor `nontoxic` is an error naming its line.
pub fn read_templates(data: &Path) -> Result<(Vec<String>, Vec<LabelledText>), AuditError> {
    let terms = identity_terms(data)?;
    let path = data.join(TEMPLATES);
    let bad = |line: u64, message: String| AuditError::Data {
        path: path.clone(),
        line: line as usize,
        message,
    };
    let mut r = csv::Reader::from_path(&path).map_err(|e| AuditError::Data {
        path: path.clone(),
        line: 1,
        message: e.to_string(),
    })?;
    let headers = r.headers().map_err(|e| bad(1, e.to_string()))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| bad(1, format!("no column `{name}` (columns: {headers:?})")))
    };
    let (c_tox, c_phrase) = (col("toxicity")?, col("phrase")?);
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| bad(e.position().map_or(0, |p| p.line()), e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line());
        let phrase = rec.get(c_phrase).unwrap_or_default();
        let label = match rec.get(c_tox).unwrap_or_default() {
            "toxic" => true,
            "nontoxic" => false,
            other => {
                return Err(bad(
                    line,
                    format!("column `toxicity` is {other:?}, not `toxic` or `nontoxic`"),
                ))
            }
        };
        rows.push(LabelledText {
            text: phrase.to_string(),
            label,
            group: term_of(phrase, &terms),
        });
    }
    Ok((terms, rows))
}

/// How a user's labelled file is read.
#[derive(Debug, Clone)]
pub struct FileSpec {
    /// The file (JSONL, CSV or TSV, by extension or first byte).
    pub path: PathBuf,
    /// The field holding the text.
    pub field: String,
    /// The field holding the label: a boolean, a number (toxic when >= 0.5), or one of
    /// `true`/`false`, `yes`/`no`, `toxic`/`nontoxic`/`non-toxic` and numbers as text.
    pub label: String,
    /// The field naming the row's group; missing, null or empty: the row is background only.
    pub group: String,
}

fn parse_label(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|x| x >= 0.5),
        Value::String(s) => {
            let s = s.trim().to_lowercase();
            match s.as_str() {
                "true" | "yes" | "toxic" => Some(true),
                "false" | "no" | "nontoxic" | "non-toxic" => Some(false),
                _ => s.parse::<f64>().ok().map(|x| x >= 0.5),
            }
        }
        _ => None,
    }
}

fn group_value(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    }
}

/// Reads a user's labelled file. A row without the text or label field, or with a label that
/// is not a yes/no value, is an error naming the file, line and field; so is a file in which
/// no row names a group.
pub fn read_labelled_file(spec: &FileSpec) -> Result<Vec<LabelledText>, AuditError> {
    let path = &spec.path;
    let file = std::fs::File::open(path).map_err(|source| AuditError::Io {
        path: path.clone(),
        source,
    })?;
    let head = {
        use std::io::Read;
        let mut buf = [0u8; 64];
        let n = std::fs::File::open(path)
            .and_then(|mut f| f.read(&mut buf))
            .unwrap_or(0);
        buf[..n].to_vec()
    };
    let format = Format::detect(Some(path), &head);
    if format == Format::Lines {
        return Err(AuditError::Data {
            path: path.clone(),
            line: 1,
            message: "plain text lines have no label or group: give a JSONL, CSV or TSV file"
                .into(),
        });
    }
    let name = path.display().to_string();
    let reader = InputReader::new(file, format, &spec.field, &name).map_err(|e| {
        AuditError::Input(format!(
            "{e} (name the text field with --field, the label with --label)"
        ))
    })?;
    let mut out = Vec::new();
    for row in reader {
        let row = row.map_err(|e| AuditError::Input(e.to_string()))?;
        let item = row.map_err(|e| AuditError::Data {
            path: path.clone(),
            line: e.line,
            message: format!("{} (name the text field with --field)", e.message),
        })?;
        let label = match lookup(&item.record, &spec.label) {
            None => {
                return Err(AuditError::Data {
                    path: path.clone(),
                    line: item.line,
                    message: format!(
                        "missing label field `{}` (name the label with --label)",
                        spec.label
                    ),
                })
            }
            Some(v) => parse_label(v).ok_or_else(|| AuditError::Data {
                path: path.clone(),
                line: item.line,
                message: format!(
                    "label field `{}` is {v}, not a yes/no value (true/false, 1/0, toxic/nontoxic)",
                    spec.label
                ),
            })?,
        };
        out.push(LabelledText {
            text: item.text,
            label,
            group: group_value(lookup(&item.record, &spec.group)),
        });
    }
    if out.is_empty() {
        return Err(AuditError::Data {
            path: path.clone(),
            line: 1,
            message: "no rows".into(),
        });
    }
    if out.iter().all(|r| r.group.is_none()) {
        return Err(AuditError::Data {
            path: path.clone(),
            line: 1,
            message: format!(
                "no row has a group in field `{}` (name the group field with --group)",
                spec.group
            ),
        });
    }
    Ok(out)
}

/// One HolisticBias sentence: descriptor + noun in a template; non-toxic by construction.
#[derive(Debug, Clone, PartialEq)]
pub struct HolisticSentence {
    /// The sentence.
    pub text: String,
    /// The descriptor's axis (`ability`, `race_ethnicity`, ...).
    pub axis: String,
    /// The descriptor as written in `descriptors.json`.
    pub descriptor: String,
    /// The template.
    pub template: String,
}

/// A HolisticBias descriptor.
#[derive(Debug, Clone)]
struct Descriptor {
    axis: String,
    text: String,
    gender: Option<String>,
    article: Option<String>,
}

fn json_file(path: &Path) -> Result<Value, AuditError> {
    serde_json::from_str(&read(path)?).map_err(|e| AuditError::Data {
        path: path.to_path_buf(),
        line: e.line(),
        message: e.to_string(),
    })
}

fn malformed(path: &Path, what: &str) -> AuditError {
    AuditError::Data {
        path: path.to_path_buf(),
        line: 0,
        message: format!("unexpected layout: {what}"),
    }
}

fn descriptors(path: &Path) -> Result<Vec<Descriptor>, AuditError> {
    let v = json_file(path)?;
    let axes = v
        .as_object()
        .ok_or_else(|| malformed(path, "not an object of axes"))?;
    let mut out = Vec::new();
    for (axis, buckets) in axes {
        let lists: Vec<&Value> = match buckets {
            Value::Object(m) => m.values().collect(),
            Value::Array(_) => vec![buckets],
            _ => return Err(malformed(path, &format!("axis {axis}"))),
        };
        for list in lists {
            let list = list
                .as_array()
                .ok_or_else(|| malformed(path, &format!("axis {axis}: not a list")))?;
            for d in list {
                let (text, gender, article) = match d {
                    Value::String(s) => (s.clone(), None, None),
                    Value::Object(m) => (
                        m.get("descriptor")
                            .and_then(Value::as_str)
                            .ok_or_else(|| malformed(path, &format!("axis {axis}: {d}")))?
                            .to_string(),
                        m.get("gender").and_then(Value::as_str).map(String::from),
                        m.get("article").and_then(Value::as_str).map(String::from),
                    ),
                    _ => return Err(malformed(path, &format!("axis {axis}: {d}"))),
                };
                out.push(Descriptor {
                    axis: axis.clone(),
                    text,
                    gender,
                    article,
                });
            }
        }
    }
    Ok(out)
}

/// (gender, singular, plural) nouns.
fn nouns(path: &Path) -> Result<Vec<(String, String, String)>, AuditError> {
    let v = json_file(path)?;
    let genders = v
        .as_object()
        .ok_or_else(|| malformed(path, "not an object of genders"))?;
    let mut out = Vec::new();
    for (g, list) in genders {
        for pair in list.as_array().into_iter().flatten() {
            match pair.as_array().map(|p| (p.first(), p.get(1))) {
                Some((Some(Value::String(s)), Some(Value::String(p)))) => {
                    out.push((g.clone(), s.clone(), p.clone()))
                }
                _ => return Err(malformed(path, &format!("noun {pair}"))),
            }
        }
    }
    Ok(out)
}

fn article_for(word: &str) -> &'static str {
    match word.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// The HolisticBias v1.1 sentences (descriptor × noun × template, as the dataset's
/// `generate_sentences.py` pairs them: a descriptor with a gender takes only nouns of that
/// gender and the neutral ones; `{noun_phrase}` is "a/an descriptor noun", and
/// `{plural_noun_phrase}` "descriptor nouns"), subsampled deterministically: for each
/// descriptor, `per_descriptor` of its (noun, template) pairs drawn without replacement by a
/// generator seeded with `seed` (all of them when `per_descriptor` is 0 or larger than the
/// pairs). Returns the sentences and the total before subsampling.
pub fn holistic_sentences(
    data: &Path,
    per_descriptor: usize,
    seed: u64,
) -> Result<(Vec<HolisticSentence>, usize), AuditError> {
    let dir = data.join(HOLISTIC_BIAS);
    let descs = descriptors(&dir.join("descriptors.json"))?;
    let nouns = nouns(&dir.join("nouns.json"))?;
    let tpath = dir.join("sentence_templates.json");
    let templates: Vec<String> = json_file(&tpath)?
        .as_object()
        .ok_or_else(|| malformed(&tpath, "not an object of templates"))?
        .keys()
        .cloned()
        .collect();
    let mut rng = SplitMix64::new(seed);
    let (mut out, mut total) = (Vec::new(), 0usize);
    for d in &descs {
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        for (ni, (g, _, _)) in nouns.iter().enumerate() {
            if let Some(dg) = &d.gender {
                if g != dg && g != "neutral" {
                    continue;
                }
            }
            pairs.extend((0..templates.len()).map(|ti| (ni, ti)));
        }
        total += pairs.len();
        rng.shuffle(&mut pairs);
        if per_descriptor > 0 && pairs.len() > per_descriptor {
            pairs.truncate(per_descriptor);
            pairs.sort_unstable();
        }
        for (ni, ti) in pairs {
            let (_, sing, plural) = &nouns[ni];
            let article = d
                .article
                .clone()
                .unwrap_or_else(|| article_for(&d.text).to_string());
            let t = &templates[ti];
            let text = t
                .replace("{noun_phrase}", &format!("{article} {} {sing}", d.text))
                .replace("{plural_noun_phrase}", &format!("{} {plural}", d.text));
            out.push(HolisticSentence {
                text,
                axis: d.axis.clone(),
                descriptor: d.text.clone(),
                template: t.clone(),
            });
        }
    }
    Ok((out, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_longest_identity_term_as_whole_words() {
        let terms = vec![
            "african american".to_string(),
            "american".into(),
            "gay".into(),
        ];
        assert_eq!(
            term_of("Being African American is fine", &terms).as_deref(),
            Some("african american")
        );
        assert_eq!(
            term_of("You are a gay person.", &terms).as_deref(),
            Some("gay")
        );
        assert_eq!(term_of("gaylord is a name", &terms), None);
    }

    #[test]
    fn identity_terms_come_longest_first_so_the_longer_term_wins() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(AUDIT_TERMS);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "American\ngay\nAfrican American\n\n").unwrap();
        let terms = identity_terms(dir.path()).unwrap();
        assert_eq!(terms, ["african american", "american", "gay"]);
        assert_eq!(
            term_of("my African American friend", &terms).as_deref(),
            Some("african american")
        );
    }

    #[test]
    fn labels_parse_from_common_spellings() {
        use serde_json::json;
        assert_eq!(parse_label(&json!(true)), Some(true));
        assert_eq!(parse_label(&json!(0.7)), Some(true));
        assert_eq!(parse_label(&json!("0")), Some(false));
        assert_eq!(parse_label(&json!("Toxic")), Some(true));
        assert_eq!(parse_label(&json!("non-toxic")), Some(false));
        assert_eq!(parse_label(&json!("maybe")), None);
        assert_eq!(parse_label(&json!(null)), None);
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_labelled_file_names_missing_fields_and_lines() {
        let dir = tempfile::tempdir().unwrap();
        let spec = |path: PathBuf| FileSpec {
            path,
            field: "text".into(),
            label: "toxic".into(),
            group: "group".into(),
        };
        let p = write(
            dir.path(),
            "a.jsonl",
            "{\"text\":\"hi\",\"toxic\":0,\"group\":\"g\"}\n{\"text\":\"yo\",\"group\":\"g\"}\n",
        );
        let e = read_labelled_file(&spec(p)).unwrap_err().to_string();
        assert!(
            e.contains("line 2") && e.contains("`toxic`") && e.contains("--label"),
            "{e}"
        );
        let p = write(dir.path(), "b.csv", "text,toxic\nhi,1\n");
        let e = read_labelled_file(&spec(p)).unwrap_err().to_string();
        assert!(e.contains("--group"), "{e}");
        let p = write(dir.path(), "c.csv", "body,toxic,group\nhi,1,g\n");
        let e = read_labelled_file(&spec(p)).unwrap_err().to_string();
        assert!(e.contains("no column `text`"), "{e}");
        let p = write(dir.path(), "d.csv", "text,toxic,group\nhi,1,g\nho,no,\n");
        let rows = read_labelled_file(&spec(p)).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].group.as_deref(), Some("g"));
        assert!(rows[0].label && !rows[1].label && rows[1].group.is_none());
    }

    #[test]
    fn holistic_sentences_pair_gendered_descriptors_and_subsample_deterministically() {
        let dir = tempfile::tempdir().unwrap();
        let hb = dir.path().join(HOLISTIC_BIAS);
        std::fs::create_dir_all(&hb).unwrap();
        write(
            &hb,
            "descriptors.json",
            r#"{"age": {"old": ["elderly"]}, "gender_and_sex": {"binary": [{"descriptor": "female", "gender": "female"}]}}"#,
        );
        write(
            &hb,
            "nouns.json",
            r#"{"female": [["woman", "women"]], "male": [["man", "men"]], "neutral": [["person", "people"]]}"#,
        );
        write(
            &hb,
            "sentence_templates.json",
            r#"{"I'm {noun_phrase}.": {}, "I like {plural_noun_phrase}.": {}}"#,
        );
        let (all, total) = holistic_sentences(dir.path(), 0, 1).unwrap();
        // elderly: 3 nouns x 2 templates; female: woman + person x 2.
        assert_eq!(total, 10);
        assert_eq!(all.len(), 10);
        let texts: Vec<&str> = all.iter().map(|s| s.text.as_str()).collect();
        assert!(texts.contains(&"I'm an elderly man."));
        assert!(texts.contains(&"I like female people."));
        assert!(!texts.iter().any(|t| t.contains("female man")));
        let (a, _) = holistic_sentences(dir.path(), 3, 7).unwrap();
        let (b, _) = holistic_sentences(dir.path(), 3, 7).unwrap();
        assert_eq!(a.len(), 6);
        assert_eq!(a, b);
    }
}
