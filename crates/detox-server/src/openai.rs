//! `POST /v1/moderations`, in OpenAI's shape.
//!
//! detox attributes map onto OpenAI's categories as follows (a category whose attribute the
//! scorer lacks, and every category without a mapping, scores 0):
//!
//! | OpenAI category | detox score |
//! |---|---|
//! | `harassment` | `insult` |
//! | `harassment/threatening` | `threat` |
//! | `hate` | `identity_attack` |
//! | `hate/threatening` | min(`identity_attack`, `threat`) |
//! | `violence` | `threat` |
//! | `sexual` | `sexually_explicit` |
//! | `illicit`, `illicit/violent`, `self-harm`, `self-harm/intent`, `self-harm/instructions`, `sexual/minors`, `violence/graphic` | 0 (no detox attribute measures them) |
//!
//! A category is flagged at a score of 0.5 or more; a result is flagged when any category is.

use crate::{parse_json, AppState, ServeError};
use axum::body::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// OpenAI's moderation categories, in the order its API lists them.
pub const CATEGORIES: [&str; 13] = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

/// How a category is computed from detox attributes.
fn category_score(cat: &str, get: &dyn Fn(&str) -> Option<f32>) -> f32 {
    let v = |a: &str| get(a).unwrap_or(0.0);
    match cat {
        "harassment" => v("insult"),
        "harassment/threatening" => v("threat"),
        "hate" => v("identity_attack"),
        "hate/threatening" => v("identity_attack").min(v("threat")),
        "violence" => v("threat"),
        "sexual" => v("sexually_explicit"),
        _ => 0.0,
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Part {
    Text(String),
    Typed {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        text: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<Part>),
}

#[derive(Deserialize)]
struct ModerationRequest {
    input: Input,
    #[serde(default)]
    model: Option<String>,
}

/// A short random-looking id, unique per process run.
fn moderation_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!(
        "modr-{:x}{:04x}",
        t ^ (n.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        n & 0xffff
    )
}

/// Handles one moderation request.
pub(crate) async fn moderations(state: &AppState, body: &Bytes) -> Result<Value, ServeError> {
    let req: ModerationRequest = parse_json(body).map_err(|e| match e {
        ServeError::BadRequest(m, _) => ServeError::BadRequest(
            format!("{m} (expected {{\"input\": string | [string] | [{{\"type\": \"text\", \"text\": string}}], \"model\"?: string}})"),
            "invalid_value",
        ),
        other => other,
    })?;
    let texts: Vec<String> = match req.input {
        Input::One(s) => vec![s],
        Input::Many(parts) => {
            let mut v = Vec::with_capacity(parts.len());
            for (i, p) in parts.into_iter().enumerate() {
                match p {
                    Part::Text(s) => v.push(s),
                    Part::Typed { kind, text } if kind == "text" => v.push(text.ok_or_else(|| {
                        ServeError::BadRequest(format!("input[{i}]: a text part needs `text`"), "invalid_value")
                    })?),
                    Part::Typed { kind, .. } => {
                        return Err(ServeError::BadRequest(
                            format!("input[{i}]: `{kind}` inputs are not supported; detox moderates text only"),
                            "invalid_value",
                        ))
                    }
                }
            }
            v
        }
    };
    if texts.len() > state.config.max_texts {
        return Err(ServeError::BadRequest(
            format!(
                "{} inputs in one request; the limit is {}",
                texts.len(),
                state.config.max_texts
            ),
            "invalid_value",
        ));
    }
    let info = state.scorer.info();
    let scores = state.score(texts).await?;
    let results: Vec<Value> = scores
        .iter()
        .map(|s| {
            let get = |a: &str| info.attribute_index(a).map(|i| s.values[i]);
            let mut categories = Map::new();
            let mut cat_scores = Map::new();
            let mut applied = Map::new();
            let mut flagged = false;
            for c in CATEGORIES {
                let v = category_score(c, &get);
                let f = v >= 0.5;
                flagged |= f;
                categories.insert(c.to_string(), Value::Bool(f));
                cat_scores.insert(c.to_string(), json!(v));
                applied.insert(c.to_string(), json!(["text"]));
            }
            json!({
                "flagged": flagged,
                "categories": categories,
                "category_scores": cat_scores,
                "category_applied_input_types": applied,
            })
        })
        .collect();
    Ok(json!({
        "id": moderation_id(),
        "model": req.model.unwrap_or_else(|| format!("detox:{}", info.id)),
        "results": results,
    }))
}
