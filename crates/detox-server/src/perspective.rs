//! `POST /v1alpha1/comments:analyze`, as Perspective documents it.

use crate::text::{detect_language, sentences};
use crate::{parse_json, AppState, ServeError};
use axum::body::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Perspective's longest comment, in UTF-8 bytes.
pub const MAX_COMMENT_BYTES: usize = 20_480;

/// Attributes Perspective serves (production and experimental); others are unknown names.
const KNOWN: [&str; 24] = [
    "TOXICITY",
    "SEVERE_TOXICITY",
    "IDENTITY_ATTACK",
    "INSULT",
    "PROFANITY",
    "THREAT",
    "SEXUALLY_EXPLICIT",
    "FLIRTATION",
    "TOXICITY_EXPERIMENTAL",
    "SEVERE_TOXICITY_EXPERIMENTAL",
    "IDENTITY_ATTACK_EXPERIMENTAL",
    "INSULT_EXPERIMENTAL",
    "PROFANITY_EXPERIMENTAL",
    "THREAT_EXPERIMENTAL",
    "ATTACK_ON_AUTHOR",
    "ATTACK_ON_COMMENTER",
    "INCOHERENT",
    "INFLAMMATORY",
    "LIKELY_TO_REJECT",
    "OBSCENE",
    "SPAM",
    "UNSUBSTANTIAL",
    "AFFINITY_EXPERIMENTAL",
    "COMPASSION_EXPERIMENTAL",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Comment {
    #[serde(default)]
    text: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AttributeRequest {
    #[serde(default)]
    score_type: Option<String>,
    #[serde(default)]
    score_threshold: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnalyzeRequest {
    #[serde(default)]
    comment: Option<Comment>,
    #[serde(default)]
    requested_attributes: Option<BTreeMap<String, Option<AttributeRequest>>>,
    #[serde(default)]
    languages: Option<Vec<String>>,
    #[serde(default)]
    span_annotations: Option<bool>,
    #[serde(default)]
    do_not_store: Option<bool>,
    #[serde(default)]
    client_token: Option<String>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    context: Option<Value>,
    #[serde(default)]
    community_id: Option<String>,
    #[serde(default)]
    drop_unsupported_attributes: Option<bool>,
}

fn bad(msg: impl Into<String>, kind: &'static str) -> ServeError {
    ServeError::BadRequest(msg.into(), kind)
}

fn score_value(v: f32) -> Value {
    json!({"value": v, "type": "PROBABILITY"})
}

/// Handles one analyze request.
pub(crate) async fn analyze(state: &AppState, body: &Bytes) -> Result<Value, ServeError> {
    let req: AnalyzeRequest = parse_json(body)?;
    // Accepted for compatibility; detox never stores comments.
    let _ = (
        &req.do_not_store,
        &req.session_id,
        &req.context,
        &req.community_id,
    );
    let comment = req
        .comment
        .ok_or_else(|| bad("Comment must be specified.", "COMMENT_EMPTY"))?;
    if let Some(kind) = comment.kind.as_deref() {
        if kind != "PLAIN_TEXT" {
            return Err(bad(
                format!("Comment type {kind} is not supported; use PLAIN_TEXT."),
                "COMMENT_TYPE_NOT_SUPPORTED",
            ));
        }
    }
    let text = comment.text.unwrap_or_default();
    if text.is_empty() {
        return Err(bad("Comment text was empty.", "COMMENT_EMPTY"));
    }
    if text.len() > MAX_COMMENT_BYTES {
        return Err(bad(
            format!(
                "Comment text too long: {} bytes, the limit is {MAX_COMMENT_BYTES}.",
                text.len()
            ),
            "COMMENT_TOO_LONG",
        ));
    }
    let requested = req.requested_attributes.unwrap_or_default();
    if requested.is_empty() {
        return Err(bad(
            "Requested attributes must be non-empty.",
            "NO_REQUESTED_ATTRIBUTES",
        ));
    }

    let detected = detect_language(&text).to_string();
    let languages = match req.languages.filter(|l| !l.is_empty()) {
        Some(l) => l,
        None => vec![detected.clone()],
    };
    let supported = &state.config.languages;
    let lang_ok = languages.iter().any(|l| {
        let base = l.split(['-', '_']).next().unwrap_or(l).to_ascii_lowercase();
        supported.contains(&base)
    });

    let info = state.scorer.info();
    let drop = req.drop_unsupported_attributes.unwrap_or(false);
    let mut wanted: Vec<(String, usize, Option<f64>)> = Vec::new();
    for (name, opts) in &requested {
        let opts = opts.as_ref();
        if let Some(t) = opts.and_then(|o| o.score_type.as_deref()) {
            if t != "PROBABILITY" {
                return Err(bad(
                    format!("Attribute {name}: score type {t} is not supported; use PROBABILITY."),
                    "INVALID_SCORE_TYPE",
                ));
            }
        }
        let threshold = opts.and_then(|o| o.score_threshold);
        if let Some(t) = threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(bad(
                    format!("Attribute {name}: scoreThreshold {t} is outside [0, 1]."),
                    "INVALID_SCORE_THRESHOLD",
                ));
            }
        }
        let idx = info
            .attributes
            .iter()
            .position(|a| a.to_ascii_uppercase() == *name);
        match idx {
            Some(i) if lang_ok => wanted.push((name.clone(), i, threshold)),
            _ if drop => {}
            Some(_) => {
                return Err(bad(
                    format!(
                        "Attribute {name} does not support request languages: {}",
                        languages.join(",")
                    ),
                    "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE",
                ))
            }
            None if KNOWN.contains(&name.as_str()) => {
                return Err(bad(
                    format!(
                        "Attribute {name} is not supported by this server's scorer `{}` (it has: {}); set dropUnsupportedAttributes to skip it.",
                        info.id,
                        info.attributes.iter().map(|a| a.to_ascii_uppercase()).collect::<Vec<_>>().join(", ")
                    ),
                    "ATTRIBUTE_NOT_SUPPORTED",
                ))
            }
            None => {
                return Err(bad(format!("Unknown attribute: {name}"), "UNKNOWN_ATTRIBUTE"))
            }
        }
    }
    if !lang_ok && !drop {
        // Reached only when no attribute was requested that exists: keep Perspective's error.
        return Err(bad(
            format!(
                "No requested attribute supports languages: {}",
                languages.join(",")
            ),
            "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE",
        ));
    }

    let spans = if req.span_annotations.unwrap_or(false) {
        sentences(&text)
    } else {
        Vec::new()
    };
    let mut texts = vec![text.clone()];
    texts.extend(spans.iter().map(|s| s.text.clone()));
    let scores = if wanted.is_empty() {
        Vec::new()
    } else {
        state.score(texts).await?
    };

    let total_utf16 = text.encode_utf16().count();
    let mut attribute_scores = Map::new();
    for (name, i, threshold) in &wanted {
        let summary = scores[0].values[*i];
        if threshold.is_some_and(|t| (summary as f64) < t) {
            continue;
        }
        let span_scores: Vec<Value> = if spans.is_empty() {
            vec![json!({"begin": 0, "end": total_utf16, "score": score_value(summary)})]
        } else {
            spans
                .iter()
                .zip(&scores[1..])
                .filter(|(_, s)| threshold.is_none_or(|t| s.values[*i] as f64 >= t))
                .map(|(sp, s)| json!({"begin": sp.begin, "end": sp.end, "score": score_value(s.values[*i])}))
                .collect()
        };
        attribute_scores.insert(
            name.clone(),
            json!({"spanScores": span_scores, "summaryScore": score_value(summary)}),
        );
    }
    let mut out = json!({
        "attributeScores": attribute_scores,
        "languages": languages,
        "detectedLanguages": [detected],
    });
    if let Some(t) = req.client_token {
        out["clientToken"] = Value::String(t);
    }
    Ok(out)
}
