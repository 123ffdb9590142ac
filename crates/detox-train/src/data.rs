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
pub const AUX_ATTRIBUTES: [&str; 14] = [
    "aux_davidson_offensive",
    "aux_davidson_hate",
    "aux_hatexplain_toxic",
    "aux_hatexplain_hate",
    "aux_toxigen_hate",
    "aux_cat_toxic",
    "aux_spans_toxic",
    "aux_spans_insult",
    "aux_spans_profanity",
    "aux_spans_identity_attack",
    "aux_spans_threat",
    "aux_sbic_offensive",
    "aux_sbic_lewd",
    "aux_toxichat_offensive",
];

/// The year each Perspective-scored source of the `shared` recipe was scored in. Perspective's
/// model changed over the years (the same Wikipedia comments average about 0.12 in 2020 and
/// 0.08 in 2025), so scores of different years are different scales: calibration uses only
/// sources of [`CALIBRATION_YEAR`].
pub const PERSPECTIVE_YEARS: [(&str, u16); 3] =
    [("rtp", 2020), ("rtp-more", 2020), ("cat-large", 2020)];

/// The `shared` recipe's weight per source (others weigh 1). The Perspective-scored sources
/// carry Perspective's own scale (RTP all eight attributes, CAT-LARGE toxicity at the low end);
/// Davidson is large and mostly offensive tweets; the identity counter-examples carry
/// toxicity targets only (no own output): at 100 x the cross weight (0.1) each counts ten
/// times an RTP text (chosen on the identity templates: at 10, the weight of the model before
/// the larger data, neutral sentences naming *black* were flagged 57% of the time, at 100
/// 31%, for 0.001 of RTP dev Spearman).
pub const SHARED_SOURCE_WEIGHTS: [(&str, f32); 6] = [
    ("rtp", 10.0),
    ("rtp-more", 10.0),
    ("cat-large", 10.0),
    ("davidson", 0.5),
    ("jigsaw-sample", 2.0),
    ("identity-counterexamples", 100.0),
];

/// The year whose Perspective scale the built-in scorer is calibrated onto.
pub const CALIBRATION_YEAR: u16 = 2020;

/// The Perspective scoring year of a `shared` recipe source (`None`: not Perspective-scored).
pub fn perspective_year(source: &str) -> Option<u16> {
    PERSPECTIVE_YEARS
        .iter()
        .find(|(s, _)| *s == source)
        .map(|(_, y)| *y)
}

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Used for fitting (eight keys in ten).
    Train,
    /// Held out of fitting; hyper-parameters are chosen on it (one key in ten).
    Dev,
    /// Held out of fitting and of every choice; reported once at the end (one key in ten).
    Test,
}

fn key_hash(source: &str, key: &str) -> [u8; 32] {
    Sha256::digest(format!("{source}\u{0}{key}").as_bytes()).into()
}

/// The deterministic split of a (source, key): the first byte of sha256(source, NUL, key)
/// mod 10 is 0 for dev, 1 for test, anything else for train.
pub fn split_of(source: &str, key: &str) -> Split {
    match key_hash(source, key)[0] % 10 {
        0 => Split::Dev,
        1 => Split::Test,
        _ => Split::Train,
    }
}

/// The cross-fitting fold (0..`folds`) of a (source, key): the second byte of the same hash,
/// so examples sharing a key share a fold.
pub fn fold_of(source: &str, key: &str, folds: usize) -> usize {
    key_hash(source, key)[1] as usize % folds.max(1)
}

impl Example {
    /// This example's split.
    pub fn split(&self) -> Split {
        split_of(&self.source, &self.key)
    }

    /// This example's cross-fitting fold.
    pub fn fold(&self, folds: usize) -> usize {
        fold_of(&self.source, &self.key, folds)
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

/// Opens `rel` under the data folder; the error names the file.
pub(crate) fn open(data: &Path, rel: &str) -> Result<std::fs::File, TrainError> {
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

/// The position of column `name` among `headers` of `rel`; the error names file and column.
pub(crate) fn col(headers: &[String], name: &str, rel: &str) -> Result<usize, TrainError> {
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

/// The RealToxicityPrompts file of `rtp-more` (2,015 more toxic prompts, 2020 scores).
pub const RTP_MORE: &str = "rtp-more/toxic-2k.jsonl";

/// The `rtp-more` rows: prompt and continuation texts with their 8 Perspective scores (2020).
pub fn read_rtp_more(data: &Path) -> Result<Vec<Example>, TrainError> {
    read_rtp_files(data, &[RTP_MORE], "rtp-more")
}

/// The CAT-LARGE file (Wikipedia talk comments without their parents).
pub const CAT_LARGE: &str = "cat-large/gn.csv";

/// CAT-LARGE: Wikipedia talk comments with Perspective's TOXICITY scored in 2020 (`api`: a
/// soft `toxicity` target on Perspective's scale) and a human majority label (`label` 1:
/// toxic), which trains its own output `aux_cat_toxic`. Keyed by the comment `id`.
pub fn read_cat_large(data: &Path) -> Result<Vec<Example>, TrainError> {
    let (h, rows) = csv_rows(data, CAT_LARGE)?;
    let (c_id, c_text, c_label, c_api) = (
        col(&h, "id", CAT_LARGE)?,
        col(&h, "text", CAT_LARGE)?,
        col(&h, "label", CAT_LARGE)?,
        col(&h, "api", CAT_LARGE)?,
    );
    let mut out = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let Some(text) = r.get(c_text) else { continue };
        let api = r.get(c_api).and_then(|v| v.trim().parse::<f32>().ok());
        let label = match r.get(c_label).map(str::trim) {
            Some("1") => Some(1.0),
            Some("0") => Some(0.0),
            _ => None,
        };
        if api.is_none() && label.is_none() {
            continue;
        }
        let mut pairs = Vec::new();
        if let Some(a) = api {
            if !(0.0..=1.0).contains(&a) {
                return Err(TrainError::Data(format!(
                    "{CAT_LARGE}: line {}: field `api` is {a}, outside [0, 1]",
                    i + 2
                )));
            }
            pairs.push(("toxicity", a));
        }
        if let Some(l) = label {
            pairs.push(("aux_cat_toxic", l));
        }
        out.push(Example {
            text: text.to_string(),
            targets: targets_for(&pairs),
            source: "cat-large".into(),
            key: r
                .get(c_id)
                .map(String::from)
                .unwrap_or_else(|| i.to_string()),
            perspective: api.is_some(),
        });
    }
    Ok(out)
}

/// The Toxic Spans files: posts, one row per rater, and the raters' typed spans.
pub const TOXIC_SPANS: [&str; 3] = [
    "toxic-spans/comments.csv",
    "toxic-spans/annotations.csv",
    "toxic-spans/spans.csv",
];

/// The span types of Toxic Spans and the attribute each gives a rater fraction for
/// (`Other toxicity` counts only towards toxic).
const SPAN_TYPES: [(&str, &str); 4] = [
    ("Insult", "insult"),
    ("Profane/Obscene", "profanity"),
    ("Identity based Attack", "identity_attack"),
    ("Threat", "threat"),
];

/// Toxic Spans: per post, the share of its raters who marked a span of each type (insult,
/// profanity, identity_attack, threat), and the share who found it toxic at all (a span of
/// any type, or `all toxic` without `not toxic`). The two flags are unreliable alone: 21,185
/// rater rows set both and mark no span (read as not toxic). The fractions train their own
/// outputs (`aux_spans_*`) and Perspective's attributes of the same names at the cross weight.
/// Keyed by `comment_id`; posts in `comments.csv` order, posts without raters skipped.
pub fn read_toxic_spans(data: &Path) -> Result<Vec<Example>, TrainError> {
    let [posts_rel, ann_rel, spans_rel] = TOXIC_SPANS;
    let (h, spans) = csv_rows(data, spans_rel)?;
    let (c_ann, c_type) = (
        col(&h, "annotation", spans_rel)?,
        col(&h, "type", spans_rel)?,
    );
    // annotation id -> bit set of span types (bit 4: any span at all).
    let mut marked: std::collections::HashMap<String, u8> = std::collections::HashMap::new();
    for r in &spans {
        let Some(a) = r.get(c_ann) else { continue };
        let ty = r.get(c_type).unwrap_or("").trim();
        let mut bits = 1 << 4;
        if let Some(j) = SPAN_TYPES.iter().position(|(t, _)| *t == ty) {
            bits |= 1 << j;
        }
        *marked.entry(a.to_string()).or_default() |= bits;
    }
    let (h, anns) = csv_rows(data, ann_rel)?;
    let (c_a, c_post, c_all, c_not) = (
        col(&h, "annotation", ann_rel)?,
        col(&h, "comment_id", ann_rel)?,
        col(&h, "all toxic", ann_rel)?,
        col(&h, "not toxic", ann_rel)?,
    );
    // comment id -> (raters, toxic raters, raters per span type).
    let mut per_post: std::collections::HashMap<String, (f32, f32, [f32; 4])> =
        std::collections::HashMap::new();
    for r in &anns {
        let (Some(a), Some(post)) = (r.get(c_a), r.get(c_post)) else {
            continue;
        };
        let flag = |c: usize| r.get(c).map(|v| v.trim().eq_ignore_ascii_case("true")) == Some(true);
        let bits = marked.get(a).copied().unwrap_or(0);
        let toxic = bits != 0 || (flag(c_all) && !flag(c_not));
        let e = per_post.entry(post.to_string()).or_default();
        e.0 += 1.0;
        e.1 += f32::from(u8::from(toxic));
        for (j, n) in e.2.iter_mut().enumerate() {
            *n += f32::from(bits >> j & 1);
        }
    }
    let (h, posts) = csv_rows(data, posts_rel)?;
    let (c_id, c_text) = (
        col(&h, "comment_id", posts_rel)?,
        col(&h, "comment_text", posts_rel)?,
    );
    let mut out = Vec::new();
    for r in &posts {
        let (Some(id), Some(text)) = (r.get(c_id), r.get(c_text)) else {
            continue;
        };
        let Some(&(n, toxic, types)) = per_post.get(id) else {
            continue;
        };
        let mut pairs = vec![("aux_spans_toxic", toxic / n), ("toxicity", toxic / n)];
        let aux = [
            "aux_spans_insult",
            "aux_spans_profanity",
            "aux_spans_identity_attack",
            "aux_spans_threat",
        ];
        for (j, (_, attr)) in SPAN_TYPES.iter().enumerate() {
            pairs.push((aux[j], types[j] / n));
            pairs.push((attr, types[j] / n));
        }
        out.push(Example {
            text: text.to_string(),
            targets: targets_for(&pairs),
            source: "toxic-spans".into(),
            key: id.to_string(),
            perspective: false,
        });
    }
    Ok(out)
}

/// The Social Bias Frames dev file.
pub const SBIC: &str = "sbic-dev/SBFv2.dev.csv";

/// Social Bias Frames dev posts: one row per rater; the mean of a post's raters'
/// `offensiveYN` (0, 0.5 or 1; blanks ignored) and `sexYN` (lewd) train their own outputs, and
/// offensiveness trains `toxicity` at the cross weight. Posts in first-seen order, keyed by
/// their text; posts without an offensiveness rating are left out.
pub fn read_sbic(data: &Path) -> Result<Vec<Example>, TrainError> {
    let (h, rows) = csv_rows(data, SBIC)?;
    let (c_post, c_off, c_sex) = (
        col(&h, "post", SBIC)?,
        col(&h, "offensiveYN", SBIC)?,
        col(&h, "sexYN", SBIC)?,
    );
    let mut order: Vec<String> = Vec::new();
    // post -> (offensive sum, raters, lewd sum, lewd raters)
    let mut sums: std::collections::HashMap<String, (f32, f32, f32, f32)> =
        std::collections::HashMap::new();
    for r in &rows {
        let Some(post) = r.get(c_post) else { continue };
        let e = sums.entry(post.to_string()).or_insert_with(|| {
            order.push(post.to_string());
            (0.0, 0.0, 0.0, 0.0)
        });
        let num = |c: usize| r.get(c).and_then(|v| v.trim().parse::<f32>().ok());
        if let Some(v) = num(c_off) {
            e.0 += v;
            e.1 += 1.0;
        }
        if let Some(v) = num(c_sex) {
            e.2 += v;
            e.3 += 1.0;
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|post| {
            let (off, n, lewd, nl) = sums[&post];
            if n == 0.0 {
                return None;
            }
            let mut pairs = vec![("aux_sbic_offensive", off / n), ("toxicity", off / n)];
            if nl > 0.0 {
                pairs.push(("aux_sbic_lewd", lewd / nl));
            }
            Some(Example {
                targets: targets_for(&pairs),
                key: post.clone(),
                text: post,
                source: "sbic".into(),
                perspective: false,
            })
        })
        .collect())
}

/// The ToxiChat file.
pub const TOXICHAT: &str = "toxichat/train.jsonl";

/// ToxiChat threads, each labelled `Offensive` / `Safe` per turn by people (`offense_label`):
/// the two final language-model responses (DialoGPT, GPT-3) and, with `turns`, the Reddit
/// turns before them. Keyed by thread (its line), so a thread's texts share a split. The label
/// trains its own output and `toxicity` at the cross weight. Texts are trimmed.
pub fn read_toxichat(data: &Path, turns: bool) -> Result<Vec<Example>, TrainError> {
    use std::io::BufRead;
    let r = std::io::BufReader::new(open(data, TOXICHAT)?);
    let mut out = Vec::new();
    for (i, line) in r.lines().enumerate() {
        let line = line.map_err(|e| TrainError::Io(TOXICHAT.into(), e))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| TrainError::Data(format!("{TOXICHAT}: line {}: {e}", i + 1)))?;
        let mut items: Vec<&Value> = Vec::new();
        if turns {
            if let Some(t) = v.get("reddit_thread").and_then(|t| t.as_array()) {
                items.extend(t.iter());
            }
        }
        for part in ["final_dgpt_response", "final_gpt3_response"] {
            items.extend(v.get(part));
        }
        for obj in items {
            let (Some(text), Some(label)) = (
                obj.get("text").and_then(|t| t.as_str()),
                obj.get("offense_label").and_then(|t| t.as_str()),
            ) else {
                continue;
            };
            let y = match label {
                "Offensive" => 1.0,
                "Safe" => 0.0,
                _ => continue,
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            out.push(Example {
                text: text.to_string(),
                targets: targets_for(&[("aux_toxichat_offensive", y), ("toxicity", y)]),
                source: "toxichat".into(),
                key: format!("thread {}", i + 1),
                perspective: false,
            });
        }
    }
    Ok(out)
}

/// Every dataset the shared README allows a committed model to be trained on, plus this
/// project's own identity counter-examples ([`crate::identity`]).
pub fn read_shared(data: &Path) -> Result<Vec<Example>, TrainError> {
    let mut all = read_rtp(data)?;
    all.extend(read_rtp_more(data)?);
    all.extend(read_cat_large(data)?);
    all.extend(read_toxic_spans(data)?);
    all.extend(read_sbic(data)?);
    all.extend(read_toxichat(data, true)?);
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
    fn splits_are_stable_a_tenth_dev_a_tenth_test_and_folds_even() {
        assert_eq!(split_of("rtp", "a"), split_of("rtp", "a"));
        let count = |s: Split| {
            (0..10_000)
                .filter(|i| split_of("x", &i.to_string()) == s)
                .count()
        };
        let (dev, test) = (count(Split::Dev), count(Split::Test));
        assert!((800..1200).contains(&dev), "{dev}");
        assert!((800..1200).contains(&test), "{test}");
        assert_eq!(dev + test + count(Split::Train), 10_000);
        let mut folds = [0usize; 5];
        for i in 0..10_000 {
            folds[fold_of("x", &i.to_string(), 5)] += 1;
        }
        assert!(
            folds.iter().all(|&n| (1_800..2_200).contains(&n)),
            "{folds:?}"
        );
        assert_eq!(perspective_year("cat-large"), Some(2020));
        assert_eq!(perspective_year("davidson"), None);
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
